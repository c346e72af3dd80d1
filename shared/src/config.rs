//! Typed configuration, read once at start. Handlers never read the environment.

use std::env;

/// Limits and policies of the chat service (docs/protocol.md sections 3 and 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Sends per user per fixed 60 s window; 0 disables the limit.
    pub rate_limit_per_min: u32,
    /// Message retention in days; 0 keeps messages forever.
    pub retention_days: u32,
    /// Members a group may hold, creator included.
    pub max_group_members: u32,
    /// Receipt, typing and presence events fan out only in conversations this small.
    pub event_fanout_max_members: u32,
    /// Connections one user may hold open; a new one beyond it closes the user's oldest
    /// (so a phone reconnecting after network flaps is never locked out). 0 disables.
    pub max_connections_per_user: u32,
    /// How long after sending a message its sender may edit it, in seconds; 0 = always.
    pub edit_window_secs: u32,
    /// Largest attachment, in bytes.
    pub max_attachment_bytes: u32,
    /// Where the send path posts entries to members' connections itself (a server with
    /// [`crate::ports::DirectMarks`]: AWS), conversations this small get them without
    /// waiting for the change feed; 0 turns it off.
    pub direct_fanout_max_members: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate_limit_per_min: 100,
            retention_days: 365,
            max_group_members: 1000,
            event_fanout_max_members: 100,
            max_connections_per_user: 10,
            edit_window_secs: 0,
            max_attachment_bytes: 25 * 1024 * 1024,
            direct_fanout_max_members: 100,
        }
    }
}

/// A variable that is set but does not parse.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name} = {value:?}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl Limits {
    /// Reads `CHAT_RATE_LIMIT_PER_MIN`, `CHAT_RETENTION_DAYS`, `CHAT_MAX_GROUP_MEMBERS`,
    /// `CHAT_EVENT_FANOUT_MAX_MEMBERS`, `CHAT_MAX_CONNECTIONS_PER_USER` and
    /// `CHAT_EDIT_WINDOW_SECS`, `CHAT_MAX_ATTACHMENT_BYTES` and
    /// `CHAT_DIRECT_FANOUT_MAX_MEMBERS`, keeping the defaults for
    /// unset ones.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Limits::default();
        Ok(Self {
            rate_limit_per_min: env_u32("CHAT_RATE_LIMIT_PER_MIN", d.rate_limit_per_min)?,
            retention_days: env_u32("CHAT_RETENTION_DAYS", d.retention_days)?,
            max_group_members: env_u32("CHAT_MAX_GROUP_MEMBERS", d.max_group_members)?.max(1),
            event_fanout_max_members: env_u32(
                "CHAT_EVENT_FANOUT_MAX_MEMBERS",
                d.event_fanout_max_members,
            )?,
            max_connections_per_user: env_u32(
                "CHAT_MAX_CONNECTIONS_PER_USER",
                d.max_connections_per_user,
            )?,
            edit_window_secs: env_u32("CHAT_EDIT_WINDOW_SECS", d.edit_window_secs)?,
            max_attachment_bytes: env_u32("CHAT_MAX_ATTACHMENT_BYTES", d.max_attachment_bytes)?
                .max(1),
            direct_fanout_max_members: env_u32(
                "CHAT_DIRECT_FANOUT_MAX_MEMBERS",
                d.direct_fanout_max_members,
            )?,
        })
    }

    /// When an entry made at `now_ms` expires (`None` when kept forever).
    pub fn expires_at(&self, now_ms: i64) -> Option<i64> {
        (self.retention_days > 0).then(|| now_ms + i64::from(self.retention_days) * 86_400_000)
    }

    /// The oldest timestamp still retained at `now_ms` (`i64::MIN` when kept forever).
    pub fn retention_cutoff(&self, now_ms: i64) -> i64 {
        if self.retention_days == 0 {
            i64::MIN
        } else {
            now_ms - i64::from(self.retention_days) * 86_400_000
        }
    }
}

/// `CHAT_IDLE_TIMEOUT_SECS`: how long a connection may stay silent (no client frame)
/// before the server closes it, 1 s up to the liveness window (150 s, the default). The
/// local server's sessions time out by it; on AWS the sweeper closes by it.
pub fn idle_timeout() -> Result<std::time::Duration, ConfigError> {
    let max = (crate::protocol::LIVENESS_MS / 1000) as u32;
    let secs = env_u32("CHAT_IDLE_TIMEOUT_SECS", max)?;
    if !(1..=max).contains(&secs) {
        return Err(ConfigError {
            name: "CHAT_IDLE_TIMEOUT_SECS",
            value: secs.to_string(),
            reason: "expected 1 to 150 seconds",
        });
    }
    Ok(std::time::Duration::from_secs(u64::from(secs)))
}

/// Reads an unsigned integer variable, `default` when unset or empty.
pub fn env_u32(name: &'static str, default: u32) -> Result<u32, ConfigError> {
    match env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(default),
        Ok(v) => v.trim().parse().map_err(|_| ConfigError {
            name,
            value: v,
            reason: "expected a non-negative integer",
        }),
        Err(_) => Ok(default),
    }
}

/// Reads a boolean flag (`1`/`true`/`yes`/`on`), false when unset.
pub fn env_flag(name: &'static str) -> Result<bool, ConfigError> {
    match env::var(name) {
        Err(_) => Ok(false),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" => Ok(false),
            "1" | "true" | "yes" | "on" => Ok(true),
            _ => Err(ConfigError {
                name,
                value: v,
                reason: "expected 1 or 0",
            }),
        },
    }
}

/// Who signs the tokens the server accepts: `CHAT_JWT_SECRET` (HS256, ours) with
/// `CHAT_JWT_PREVIOUS_SECRET` while it is rotated, and/or an identity provider's keys at
/// `CHAT_JWT_JWKS_URL` (RS256, ES256), with `CHAT_JWT_ISSUER`, `CHAT_JWT_AUDIENCE` and
/// `CHAT_JWT_USER_CLAIM` (default `sub`). At least one of a secret and a key set is
/// required (the binaries decide what happens without either); an issuer and an
/// audience are required with a key set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenConfig {
    pub secret: Option<String>,
    pub previous_secret: Option<String>,
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub user_claim: Option<String>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field(
                "previous_secret",
                &self.previous_secret.as_ref().map(|_| "<set>"),
            )
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("user_claim", &self.user_claim)
            .finish()
    }
}

impl TokenConfig {
    /// Reads the variables above (empty counts as unset) and checks how they combine.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &str| env::var(name).ok().filter(|v| !v.trim().is_empty());
        let config = Self {
            secret: var("CHAT_JWT_SECRET"),
            previous_secret: var("CHAT_JWT_PREVIOUS_SECRET"),
            jwks_url: var("CHAT_JWT_JWKS_URL").map(|v| v.trim().to_owned()),
            issuer: var("CHAT_JWT_ISSUER"),
            audience: var("CHAT_JWT_AUDIENCE"),
            user_claim: var("CHAT_JWT_USER_CLAIM").map(|v| v.trim().to_owned()),
        };
        config.check()?;
        Ok(config)
    }

    /// How the variables must combine: an issuer and an audience with a key set, whose URL is HTTPS (or
    /// HTTP on loopback, for tests); a previous secret only beside a current one.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.jwks_url {
            if !jwks_url_is_safe(url) {
                return Err(ConfigError {
                    name: "CHAT_JWT_JWKS_URL",
                    value: url.clone(),
                    reason: "expected an https:// URL (http:// only on 127.0.0.1 or localhost)",
                });
            }
            if self.issuer.is_none() {
                return Err(ConfigError {
                    name: "CHAT_JWT_ISSUER",
                    value: String::new(),
                    reason: "is required with CHAT_JWT_JWKS_URL (the keys alone do not say whose tokens they sign)",
                });
            }
            if self.audience.is_none() {
                return Err(ConfigError {
                    name: "CHAT_JWT_AUDIENCE",
                    value: String::new(),
                    reason: "is required with CHAT_JWT_JWKS_URL (else a token the provider issued to any other app would be accepted)",
                });
            }
        }
        if self.previous_secret.is_some() && self.secret.is_none() {
            return Err(ConfigError {
                name: "CHAT_JWT_PREVIOUS_SECRET",
                value: "<set>".to_owned(),
                reason: "is accepted only beside CHAT_JWT_SECRET",
            });
        }
        Ok(())
    }

    /// The verifier these settings describe, with `key_set` for the JWKS URL (the
    /// binaries make it with their HTTP adapter) and `fallback` as the secrets when none is
    /// set (the local server's development secret, a function's secret store). `None`
    /// when nothing signs tokens.
    ///
    /// With a key set, the issuer, audience and user claim are the provider's, and our
    /// own HS256 tokens (when a secret is set too) are checked without them: the two
    /// issuers differ, and only we hold the secret.
    pub fn verifier(
        &self,
        key_set: Option<std::sync::Arc<crate::auth::KeySet>>,
        fallback: Option<std::sync::Arc<crate::auth::SecretSet>>,
    ) -> Option<crate::auth::TokenVerifier> {
        use crate::auth::{SecretSet, TokenVerifier};
        let secrets = match &self.secret {
            Some(secret) => Some(SecretSet::configured(
                std::iter::once(secret)
                    .chain(&self.previous_secret)
                    .cloned(),
            )),
            None => fallback,
        };
        let verifier = match (secrets, key_set, &self.issuer) {
            (Some(secrets), None, _) => {
                TokenVerifier::from_secrets(secrets, self.issuer.clone(), self.audience.clone())
            }
            (Some(secrets), Some(key_set), Some(issuer)) => TokenVerifier::from_secrets(
                secrets, None, None,
            )
            .with_provider(key_set, issuer.clone(), self.audience.clone()),
            (None, Some(key_set), Some(issuer)) => {
                TokenVerifier::provider(key_set, issuer.clone(), self.audience.clone())
            }
            // A key set without an issuer is refused by `check`.
            (_, Some(_), None) | (None, None, _) => return None,
        };
        Some(match &self.user_claim {
            Some(claim) => verifier.with_user_claim(claim.as_str()),
            None => verifier,
        })
    }
}

/// HTTPS anywhere; plain HTTP only to this machine.
fn jwks_url_is_safe(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("https://") {
        return !rest.is_empty();
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(ip, _)| ip),
        None => authority.split(':').next().unwrap_or_default(),
    };
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_set_is_fetched_over_https_or_from_this_machine() {
        for url in [
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc/.well-known/jwks.json",
            "http://127.0.0.1:8123/jwks.json",
            "http://localhost/jwks",
            "http://[::1]:9/k",
        ] {
            assert!(jwks_url_is_safe(url), "{url}");
        }
        for url in [
            "http://example.com/jwks.json",
            "http://localhost:80@evil.example/jwks",
            "http://127.0.0.1.evil.example/",
            "http://[::2]/",
            "ftp://127.0.0.1/",
            "https://",
            "jwks.json",
        ] {
            assert!(!jwks_url_is_safe(url), "{url}");
        }
    }

    #[test]
    fn a_key_set_needs_an_issuer_and_an_audience() {
        let config = TokenConfig {
            jwks_url: Some("https://issuer.example/jwks".into()),
            ..TokenConfig::default()
        };
        assert_eq!(config.check().unwrap_err().name, "CHAT_JWT_ISSUER");
        let config = TokenConfig {
            issuer: Some("https://issuer.example/".into()),
            ..config
        };
        assert_eq!(config.check().unwrap_err().name, "CHAT_JWT_AUDIENCE");
        let config = TokenConfig {
            audience: Some("my-app".into()),
            ..config
        };
        assert!(config.check().is_ok());
        let previous_alone = TokenConfig {
            previous_secret: Some("old".into()),
            ..TokenConfig::default()
        };
        assert_eq!(
            previous_alone.check().unwrap_err().name,
            "CHAT_JWT_PREVIOUS_SECRET"
        );
    }
}
