//! The service's metrics, recorded through the `metrics` facade: the process installs
//! a recorder (the local server: Prometheus text at `/metrics`); without one, recording
//! does nothing. Names follow Prometheus' conventions (base units, `_total` counters).

use std::time::Duration;

use crate::error::ErrorCode;
use crate::ids::Millis;
use crate::protocol::EntryKind;

/// Histogram: from a client's append action to its ack (store write included), by `kind`.
pub const APPEND_SECONDS: &str = "chat_append_duration_seconds";
/// Histogram: from an entry's timestamp to its frames being posted, by `path`.
pub const FANOUT_LAG_SECONDS: &str = "chat_fanout_lag_seconds";
/// Counter: frames posted to connections by the fan-out.
pub const FRAMES_POSTED: &str = "chat_frames_posted_total";
/// Counter: posts to connections that were gone (API Gateway's 410; a closed socket).
pub const POSTS_GONE: &str = "chat_posts_gone_total";
/// Counter: pushes by `outcome` (`sent`, `gone`: the device was removed, `failed`).
pub const PUSHES: &str = "chat_pushes_total";
/// Counter: connections the server closed, by `reason` (`silent`, `token_expired`).
pub const CONNECTIONS_CLOSED: &str = "chat_connections_closed_total";
/// Counter: error answers to clients, by `code` (the protocol's).
pub const ERRORS: &str = "chat_errors_total";

/// The path a fan-out took: the change feed (the outbox locally, DynamoDB Streams on AWS).
pub const PATH_FEED: &str = "feed";
/// The path a fan-out took: the send path's own posts (direct delivery, AWS).
pub const PATH_DIRECT: &str = "direct";

pub(crate) fn append_took(kind: EntryKind, took: Duration) {
    metrics::histogram!(APPEND_SECONDS, "kind" => kind.as_str()).record(took.as_secs_f64());
}

pub(crate) fn fanned_out(path: &'static str, lag_ms: Millis) {
    metrics::histogram!(FANOUT_LAG_SECONDS, "path" => path).record(lag_ms.max(0) as f64 / 1000.0);
}

pub(crate) fn frames_posted(frames: usize) {
    metrics::counter!(FRAMES_POSTED).increment(frames as u64);
}

pub(crate) fn post_gone() {
    metrics::counter!(POSTS_GONE).increment(1);
}

pub(crate) fn connection_closed(reason: &'static str) {
    metrics::counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

pub(crate) fn pushed(outcome: &'static str) {
    metrics::counter!(PUSHES, "outcome" => outcome).increment(1);
}

/// Counts an error answer to a client.
pub fn error_answered(code: ErrorCode) {
    metrics::counter!(ERRORS, "code" => code.as_str()).increment(1);
}
