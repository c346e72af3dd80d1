//! The one error type of the core, and its mapping to the protocol's codes (docs/protocol.md §7).

use serde::Serialize;

use crate::ids::InvalidValue;

/// The protocol's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidMessage,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Internal,
    Unavailable,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMessage => "INVALID_MESSAGE",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidMessage => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// A failure of a store adapter. The source is kept for logs; clients only see `INTERNAL`.
#[derive(Debug, thiserror::Error)]
#[error("store: {context}")]
pub struct StoreError {
    pub context: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// Wraps an adapter error with what was being done.
    pub fn new(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            context,
            source: source.into(),
        }
    }
}

/// Everything a request can fail with. Mapped to a code only at the edge.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    Invalid(String),
    #[error("missing, invalid or expired token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(&'static str),
    #[error("rate limit exceeded")]
    RateLimited { retry_after_ms: i64 },
    #[error("internal error")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unavailable(&'static str),
}

impl ChatError {
    /// The protocol code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ChatError::Invalid(_) => ErrorCode::InvalidMessage,
            ChatError::Unauthorized => ErrorCode::Unauthorized,
            ChatError::Forbidden(_) => ErrorCode::Forbidden,
            ChatError::NotFound(_) => ErrorCode::NotFound,
            ChatError::Conflict(_) => ErrorCode::Conflict,
            ChatError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ChatError::RateLimited { .. } => ErrorCode::RateLimited,
            ChatError::Store(_) => ErrorCode::Internal,
            ChatError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// When to retry, for `RATE_LIMITED`.
    pub fn retry_after_ms(&self) -> Option<i64> {
        match self {
            ChatError::RateLimited { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        }
    }

    /// Shorthand for the common "no such conversation" answer (also given to non-members).
    pub fn no_conversation() -> Self {
        ChatError::NotFound("no such conversation")
    }
}

impl From<InvalidValue> for ChatError {
    fn from(e: InvalidValue) -> Self {
        ChatError::Invalid(e.0)
    }
}

/// Result of a core operation.
pub type ChatResult<T> = Result<T, ChatError>;
