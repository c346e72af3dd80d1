//! Domain values that validate on parse: past the edge, an id is always well-formed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused: the message becomes the `error.message` a client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn check_chars(
    what: &str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), InvalidValue> {
    if value.is_empty() || value.len() > max || !value.chars().all(allowed) {
        return Err(InvalidValue(format!(
            "{what} must be 1-{max} characters of the allowed set"
        )));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                check_chars($what, &value, $max, $allowed)?;
                Ok(Self(value))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A user: the `sub` claim of a token, 1-128 chars of `[A-Za-z0-9_.@-]`.
    UserId,
    "userId",
    128,
    |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')
);

string_id!(
    /// A device of a user, 1-64 chars of `[A-Za-z0-9_.-]`.
    DeviceId,
    "deviceId",
    64,
    |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
);

string_id!(
    /// A conversation id as clients send it. Unknown ids are simply not found, so
    /// the charset is the server's own (`c_` + hex) widened to what is safe in a path.
    ConversationId,
    "conversationId",
    128,
    |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
);

/// The client's idempotency key for a send: 1-64 chars (any text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    /// Validates the length (1-64 characters).
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        let n = value.chars().count();
        if n == 0 || n > 64 {
            return Err(InvalidValue(
                "clientMessageId must be 1-64 characters".into(),
            ));
        }
        Ok(Self(value))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A per-conversation sequence number; 1 is the first message, 0 means "none yet".
pub type Seq = u64;

/// Unix time in milliseconds, assigned by the server.
pub type Millis = i64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_protocol_charset() {
        assert!(UserId::parse("alice.b@example-1_x").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse("é").is_err());
        assert!(UserId::parse("a".repeat(128)).is_ok());
        assert!(UserId::parse("a".repeat(129)).is_err());
    }

    #[test]
    fn device_ids_refuse_at_sign_and_long_values() {
        assert!(DeviceId::parse("phone-1").is_ok());
        assert!(DeviceId::parse("a@b").is_err());
        assert!(DeviceId::parse("d".repeat(65)).is_err());
    }

    #[test]
    fn client_message_ids_count_characters_not_bytes() {
        assert!(ClientMessageId::parse("é".repeat(64)).is_ok());
        assert!(ClientMessageId::parse("x".repeat(65)).is_err());
        assert!(ClientMessageId::parse("").is_err());
    }
}
