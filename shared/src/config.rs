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
