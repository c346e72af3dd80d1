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

/// An attachment: `a_` and 32 lowercase hex digits, the server's own form and nothing
/// else, so an id can name a file (the local server's attachment files) as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AttachmentId(String);

impl AttachmentId {
    /// Validates the form (`a_` + 32 lowercase hex digits).
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        let hex = value.strip_prefix("a_").unwrap_or_default();
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(InvalidValue(
                "attachmentId is not a valid attachment id".into(),
            ));
        }
        Ok(Self(value))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AttachmentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

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
    fn attachment_ids_are_the_servers_form_only() {
        let id = format!("a_{}", "0123456789abcdef".repeat(2));
        assert!(AttachmentId::parse(id.as_str()).is_ok());
        for bad in [
            "",
            "a_",
            "a_0123",
            "a_0123456789ABCDEF0123456789abcdef",
            "b_0123456789abcdef0123456789abcdef",
            "a_0123456789abcdef0123456789abcde/",
            "a_../3456789abcdef0123456789abcdef",
            "a_0123456789abcdef0123456789abcdef0",
        ] {
            assert!(AttachmentId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_message_ids_count_characters_not_bytes() {
        assert!(ClientMessageId::parse("é".repeat(64)).is_ok());
        assert!(ClientMessageId::parse("x".repeat(65)).is_err());
        assert!(ClientMessageId::parse("").is_err());
    }
}
