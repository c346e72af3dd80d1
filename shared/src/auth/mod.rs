//! JSON Web Tokens: HS256 with our own secrets, RS256 and ES256 with an identity
//! provider's keys (a JWKS: Cognito, Auth0, Firebase, any OIDC provider). Signatures are
//! checked by `jsonwebtoken`; what decides how a token is checked is ours:
//! - the algorithm is pinned by configuration, never by the token: HS256 only with a
//!   configured secret, and a provider key verifies only the algorithm of its type (RSA:
//!   RS256, EC P-256: ES256), so `alg: none`, an HS256 token signed with a public key, or
//!   a `kid` naming a key of the other type is refused;
//! - keys come only from configuration: `jku`, `x5u`, `jwk` and `x5c` headers are ignored;
//! - `exp` is required, `nbf`/`iss`/`aud` are enforced when present or configured.
//!
//! What another reader could understand differently is refused rather than guessed at:
//! a header with `crit` (we understand no extension, RFC 7515 section 4.1.11), a member
//! name given twice in the header or the claims (serde_json would keep the last copy,
//! other libraries the first), and an `exp`/`nbf`/`iat` that is not a whole number of
//! seconds within `i64` (a float, `2^64`).

mod cache;
mod jwt;
mod keys;
mod secrets;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::Value;

use crate::ids::{Millis, UserId};
pub use cache::{Cached, EMPTY_RETRY_MS, FETCH_TIMEOUT, MAX_AGE_MS, REFRESH_INTERVAL_MS};
use jwt::Jwt;
pub use keys::{Key, KeySet, MAX_KEY_SET_BYTES};
pub use secrets::{Secret, SecretSet};

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Allowed clock skew for `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 30;

/// Why a token was refused (logged, never shown beyond "unauthorized").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm is not one this server is configured for")]
    WrongAlgorithm,
    #[error("token kid names no key of the provider's key set")]
    UnknownKey,
    #[error("token header has crit (no extension is understood)")]
    CriticalHeader,
    #[error("token header or claims name a member twice")]
    RepeatedMember,
    #[error("token exp, nbf or iat is not a whole number of seconds within i64")]
    BadDate,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has no exp claim")]
    MissingExpiry,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer or audience does not match")]
    WrongIssuerOrAudience,
    #[error("token subject is not a valid user id")]
    BadSubject,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    /// When the token stops being accepted: its `exp` plus the leeway, in milliseconds.
    /// A WebSocket opened with it is closed then.
    pub expires_at: Millis,
    /// Its `iat` in milliseconds, if it has one: a revocation refuses tokens issued
    /// before it.
    pub issued_at: Option<Millis>,
}

/// What the claims of a token must say: one set for our HS256 tokens, one for a
/// provider's (their issuers differ).
#[derive(Debug, Clone)]
struct ClaimRules {
    issuer: Option<String>,
    audience: Option<String>,
    /// The claim that names the user (`sub` unless configured).
    user_claim: String,
}

/// Verifies tokens: HS256 with its secrets (the first one also issues), and RS256/ES256
/// with a provider's key set when it has one, each kind with its own claim rules.
#[derive(Clone)]
pub struct TokenVerifier {
    secrets: Arc<SecretSet>,
    /// The claims of HS256 tokens.
    rules: ClaimRules,
    /// A provider's keys, and the claims of its tokens.
    provider: Option<(Arc<KeySet>, ClaimRules)>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("secrets", &self.secrets)
            .field("rules", &self.rules)
            .field("provider", &self.provider)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier of HS256 tokens signed with `secret`, with optional expected `iss`
    /// and `aud`.
    pub fn new(
        secret: impl Into<Vec<u8>>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        Self::from_secrets(SecretSet::configured([secret]), issuer, audience)
    }

    /// A verifier of HS256 tokens signed with one of `secrets` (the current one and the
    /// previous, configured or read from a store), with optional expected `iss` and `aud`.
    pub fn from_secrets(
        secrets: Arc<SecretSet>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        Self {
            secrets,
            rules: ClaimRules::new(issuer, audience),
            provider: None,
        }
    }

    /// A verifier of a provider's RS256/ES256 tokens only: `issuer` is required (a key
    /// set alone says nothing of whose tokens it signs).
    pub fn provider(key_set: Arc<KeySet>, issuer: String, audience: Option<String>) -> Self {
        Self::from_secrets(SecretSet::configured::<Vec<u8>>([]), None, None)
            .with_provider(key_set, issuer, audience)
    }

    /// Also accepts RS256/ES256 tokens signed with a key of `key_set`, issued by
    /// `issuer` (for `audience`). The HS256 tokens keep their own rules.
    pub fn with_provider(
        mut self,
        key_set: Arc<KeySet>,
        issuer: String,
        audience: Option<String>,
    ) -> Self {
        self.provider = Some((key_set, ClaimRules::new(Some(issuer), audience)));
        self
    }

    /// Names the user by `claim` instead of `sub`: in the provider's tokens when there is
    /// a provider, else in the HS256 ones.
    pub fn with_user_claim(mut self, claim: impl Into<String>) -> Self {
        match &mut self.provider {
            Some((_, rules)) => rules.user_claim = claim.into(),
            None => self.rules.user_claim = claim.into(),
        }
        self
    }

    /// The provider's key set, if tokens may come from one.
    pub fn key_set(&self) -> Option<&Arc<KeySet>> {
        self.provider.as_ref().map(|(key_set, _)| key_set)
    }

    /// Whether this verifier has a secret to [`issue`](Self::issue) tokens with.
    pub fn issues(&self) -> bool {
        self.secrets.first().is_some()
    }

    /// Checks a token at time `now_ms`: its user and until when it is accepted. Waits
    /// only when no cached key or secret verifies it and their source may be asked again
    /// (see [`KeySet`], [`SecretSet`]).
    pub async fn verify(&self, token: &str, now_ms: Millis) -> Result<Verified, TokenError> {
        let jwt = Jwt::parse(token)?;
        let (verified, rules) = match (jwt.alg(), &self.provider) {
            // An empty secret makes no key, and verifies nothing.
            (Some("HS256"), _) if self.secrets.may_have_keys() => {
                let verified = self
                    .secrets
                    .any(now_ms, |s| {
                        DecodingKey::from_secret(s)
                            .is_ok_and(|key| signature_verifies(&jwt, &key, Algorithm::HS256))
                    })
                    .await;
                (verified, &self.rules)
            }
            (Some(alg @ ("RS256" | "ES256")), Some((key_set, rules))) => {
                let alg = if alg == "RS256" {
                    Algorithm::RS256
                } else {
                    Algorithm::ES256
                };
                let key = key_set
                    .key(jwt.kid()?, now_ms)
                    .await
                    .ok_or(TokenError::UnknownKey)?;
                if alg != key.algorithm {
                    return Err(TokenError::WrongAlgorithm);
                }
                (
                    signature_verifies(&jwt, &key.decoding, key.algorithm),
                    rules,
                )
            }
            _ => return Err(TokenError::WrongAlgorithm),
        };
        if !verified {
            return Err(TokenError::BadSignature);
        }
        rules.check(&jwt.claims()?, now_ms)
    }

    /// Issues a token for `user` valid for `ttl_secs` from `now_ms`.
    ///
    /// # Panics
    /// Without a secret (a verifier made by [`provider`](Self::provider)): see
    /// [`issues`](Self::issues).
    pub fn issue(&self, user: &UserId, now_ms: Millis, ttl_secs: i64) -> String {
        let now = now_ms.div_euclid(1000);
        let mut claims =
            serde_json::json!({ "sub": user.as_str(), "iat": now, "exp": now + ttl_secs });
        if let Some(iss) = &self.rules.issuer {
            claims["iss"] = iss.as_str().into();
        }
        if let Some(aud) = &self.rules.audience {
            claims["aud"] = aud.as_str().into();
        }
        self.sign(
            br#"{"alg":"HS256","typ":"JWT"}"#,
            claims.to_string().as_bytes(),
        )
    }

    /// Signs any header and claims (raw JSON bytes, taken as they are) with the first
    /// secret into an HS256 token. [`issue`](Self::issue) signs well-formed claims with
    /// it; tests and the fuzzer use it to reach the claim checks of
    /// [`verify`](Self::verify) with hostile claims.
    ///
    /// # Panics
    /// Without a secret, as [`issue`](Self::issue).
    pub fn sign(&self, header: &[u8], claims: &[u8]) -> String {
        let secret = self
            .secrets
            .first()
            .expect("a verifier without a secret issues no token");
        let secret = &secret.0;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &EncodingKey::from_secret(secret).expect("a secret that is not empty"),
            Algorithm::HS256,
        )
        .expect("HMAC signs with a key of any length");
        format!("{signing_input}.{signature}")
    }
}

fn signature_verifies(jwt: &Jwt<'_>, key: &DecodingKey, algorithm: Algorithm) -> bool {
    jsonwebtoken::crypto::verify(jwt.signature, jwt.signing_input.as_bytes(), key, algorithm)
        .unwrap_or(false)
}

impl ClaimRules {
    fn new(issuer: Option<String>, audience: Option<String>) -> Self {
        Self {
            issuer,
            audience,
            user_claim: "sub".to_owned(),
        }
    }

    fn check(&self, claims: &Value, now_ms: Millis) -> Result<Verified, TokenError> {
        let now = now_ms.div_euclid(1000);
        // A date is an integer literal within i64: serde_json reads anything with a
        // fraction or an exponent, or beyond u64, as a float, which `as_i64` refuses.
        let date = |name: &str| -> Result<Option<i64>, TokenError> {
            claims
                .get(name)
                .map(|v| v.as_i64().ok_or(TokenError::BadDate))
                .transpose()
        };
        let exp = date("exp")?.ok_or(TokenError::MissingExpiry)?;
        let iat = date("iat")?;
        if now >= exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = date("nbf")?
            && now < nbf.saturating_sub(LEEWAY_SECS)
        {
            return Err(TokenError::NotYetValid);
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if let Some(iss) = &self.issuer
            && text("iss") != Some(iss)
        {
            return Err(TokenError::WrongIssuerOrAudience);
        }
        if let Some(aud) = &self.audience {
            let matches = match claims.get("aud") {
                Some(Value::String(s)) => s == aud,
                Some(Value::Array(list)) => list.iter().any(|v| v.as_str() == Some(aud)),
                // A Cognito access token names its app client in `client_id`, not `aud`.
                None => text("token_use") == Some("access") && text("client_id") == Some(aud),
                _ => false,
            };
            if !matches {
                return Err(TokenError::WrongIssuerOrAudience);
            }
        }
        let user = text(&self.user_claim)
            .and_then(|s| UserId::parse(s).ok())
            .ok_or(TokenError::BadSubject)?;
        Ok(Verified {
            user,
            expires_at: exp.saturating_add(LEEWAY_SECS).saturating_mul(1000),
            issued_at: iat.map(|iat| iat.saturating_mul(1000)),
        })
    }
}

/// Extracts a bearer token from an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The bearer token of a request's `Authorization` header, if it has one.
pub fn bearer_of(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_763_900_000_000;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new("secret", None, None)
    }

    fn signed(header: &str, claims: &str, secret: &str) -> String {
        TokenVerifier::new(secret, None, None).sign(header.as_bytes(), claims.as_bytes())
    }

    /// Verification of HS256 tokens never waits.
    trait Now {
        fn check(&self, token: &str, now: Millis) -> Result<Verified, TokenError>;
    }

    impl Now for TokenVerifier {
        fn check(&self, token: &str, now: Millis) -> Result<Verified, TokenError> {
            futures_util::FutureExt::now_or_never(self.verify(token, now))
                .expect("HS256 verification does not wait")
        }
    }

    const HS: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    #[test]
    fn issued_tokens_verify() {
        let alice = UserId::parse("alice").unwrap();
        let t = verifier().issue(&alice, NOW, 60);
        assert_eq!(verifier().check(&t, NOW).map(|v| v.user), Ok(alice));
    }

    #[test]
    fn hostile_tokens_are_refused() {
        let exp = NOW / 1000 + 100;
        let cases = [
            (
                signed(
                    r#"{"alg":"none"}"#,
                    &format!(r#"{{"sub":"a","exp":{exp}}}"#),
                    "secret",
                ),
                TokenError::WrongAlgorithm,
            ),
            (
                signed(
                    r#"{"alg":"HS512"}"#,
                    &format!(r#"{{"sub":"a","exp":{exp}}}"#),
                    "secret",
                ),
                TokenError::WrongAlgorithm,
            ),
            (
                signed(HS, &format!(r#"{{"sub":"a","exp":{exp}}}"#), "other"),
                TokenError::BadSignature,
            ),
            (
                signed(HS, r#"{"sub":"a"}"#, "secret"),
                TokenError::MissingExpiry,
            ),
            (
                signed(
                    HS,
                    &format!(r#"{{"sub":"a","exp":{}}}"#, NOW / 1000 - 100),
                    "secret",
                ),
                TokenError::Expired,
            ),
            (
                signed(
                    HS,
                    &format!(r#"{{"sub":"a","exp":{exp},"nbf":{}}}"#, NOW / 1000 + 100),
                    "secret",
                ),
                TokenError::NotYetValid,
            ),
            (
                signed(HS, &format!(r#"{{"sub":"a b","exp":{exp}}}"#), "secret"),
                TokenError::BadSubject,
            ),
            (
                signed(HS, &format!(r#"{{"exp":{exp}}}"#), "secret"),
                TokenError::BadSubject,
            ),
            ("a.b".to_owned(), TokenError::Malformed),
            ("x".repeat(MAX_TOKEN_BYTES + 1), TokenError::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(verifier().check(&token, NOW).map(|v| v.user), Err(want));
        }
    }

    #[test]
    fn a_crit_header_is_refused() {
        // GIVEN correctly signed, otherwise valid tokens whose header has `crit`
        let claims = format!(r#"{{"sub":"a","exp":{}}}"#, NOW / 1000 + 100);
        for header in [
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":["x"],"x":true}"#,
            r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":null}"#,
        ] {
            let token = signed(header, &claims, "secret");
            // WHEN it is verified THEN it is refused: we understand no extension
            assert_eq!(
                verifier().check(&token, NOW),
                Err(TokenError::CriticalHeader),
                "{header}"
            );
        }
    }

    #[test]
    fn repeated_member_names_are_refused() {
        // GIVEN correctly signed tokens that name a member twice, where either copy
        // alone would make a valid token
        let (past, future) = (NOW / 1000 - 100, NOW / 1000 + 100);
        let claims = format!(r#"{{"sub":"a","exp":{future}}}"#);
        let cases = [
            (
                r#"{"alg":"HS256","alg":"HS256"}"#.to_owned(),
                claims.clone(),
            ),
            (r#"{"alg":"none","alg":"HS256"}"#.to_owned(), claims.clone()),
            (
                HS.to_owned(),
                format!(r#"{{"sub":"mallory","sub":"a","exp":{future}}}"#),
            ),
            (
                HS.to_owned(),
                format!(r#"{{"sub":"a","exp":{past},"exp":{future}}}"#),
            ),
            (
                HS.to_owned(),
                format!(r#"{{"sub":"a","exp":{future},"x":{{"k":1,"k":2}}}}"#),
            ),
            (
                HS.to_owned(),
                format!(r#"{{"sub":"a","exp":{future},"x":[{{"k":1,"k":2}}]}}"#),
            ),
        ];
        for (header, claims) in cases {
            let token = signed(&header, &claims, "secret");
            // WHEN it is verified THEN it is refused, whichever copy a reader would take
            assert_eq!(
                verifier().check(&token, NOW),
                Err(TokenError::RepeatedMember),
                "{header} {claims}"
            );
        }
        // Equal names in different objects are not repeats.
        let token = signed(
            HS,
            &format!(r#"{{"sub":"a","exp":{future},"x":{{"sub":1}},"y":[{{"k":1}},{{"k":1}}]}}"#),
            "secret",
        );
        assert!(verifier().check(&token, NOW).is_ok());
    }

    #[test]
    fn dates_that_are_not_whole_seconds_in_i64_are_refused() {
        // GIVEN correctly signed tokens whose exp, nbf or iat is a float, out of the
        // range of i64, or not a number
        let future = NOW / 1000 + 100;
        let bad_dates = [
            "1.5e9",
            "1e10",
            "9999999999.5",
            &format!("{future}.0"),
            &format!("{future}.5"),
            "18446744073709551616",
            "18446744073709551615",
            "9223372036854775808",
            "-9223372036854775809",
            "-1e300",
            "-0.5",
            r#""9999999999""#,
            "null",
            "true",
            "[9999999999]",
        ];
        for date in bad_dates {
            for claims in [
                format!(r#"{{"sub":"a","exp":{date}}}"#),
                format!(r#"{{"sub":"a","exp":{future},"nbf":{date}}}"#),
                format!(r#"{{"sub":"a","exp":{future},"iat":{date}}}"#),
            ] {
                let token = signed(HS, &claims, "secret");
                // WHEN it is verified THEN it is refused as malformed
                assert_eq!(
                    verifier().check(&token, NOW),
                    Err(TokenError::BadDate),
                    "{claims}"
                );
            }
        }
        // Whole seconds at the edges of i64 are dates (long expired or far away).
        let ok = format!(
            r#"{{"sub":"a","exp":{},"nbf":{},"iat":-1}}"#,
            i64::MAX,
            i64::MIN
        );
        assert!(verifier().check(&signed(HS, &ok, "secret"), NOW).is_ok());
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let v = TokenVerifier::new("secret", Some("me".into()), Some("app".into()));
        let exp = NOW / 1000 + 100;
        let good = signed(
            HS,
            &format!(r#"{{"sub":"a","exp":{exp},"iss":"me","aud":["x","app"]}}"#),
            "secret",
        );
        assert!(v.check(&good, NOW).is_ok());
        let bad = signed(
            HS,
            &format!(r#"{{"sub":"a","exp":{exp},"iss":"me"}}"#),
            "secret",
        );
        assert_eq!(
            v.check(&bad, NOW).map(|v| v.user),
            Err(TokenError::WrongIssuerOrAudience)
        );
    }

    #[test]
    fn bearer_headers_parse() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}
