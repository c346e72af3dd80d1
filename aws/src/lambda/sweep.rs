//! The sweeper: invoked every minute by a schedule, it closes the connections no client
//! frame came on for the idle timeout (`CHAT_IDLE_TIMEOUT_SECS`, 150 s by default) and
//! those whose token expired. On AWS no process holds the sockets: without it a phone
//! that drops off without closing stays "online", and is not pushed to, until API
//! Gateway's own idle timeout (10 minutes). With it, contacts see `offline` at most
//! about 3.5 minutes after the last frame (150 s, plus up to a minute to the next run).
//!
//! It reads only users who have connections (the sparse index `online`, see
//! `dynamodb/sweep.rs`), never a Scan.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::info;

use chat_shared::ChatError;
use chat_shared::handlers::ws::TOUCH_EVERY_MS;
use chat_shared::ids::UserId;

use super::Deps;
use chat_shared::ports::ConnectionStore;

use crate::dynamodb::ONLINE_SHARDS;

/// The shortest idle window the sweeper closes by: the recorded last frame lags the
/// real one by up to [`TOUCH_EVERY_MS`] (frames within it write no liveness), so a
/// shorter window would close connections that framed a moment ago.
const MIN_IDLE: Duration = Duration::from_millis(2 * TOUCH_EVERY_MS as u64);

/// The event: a schedule's (whose fields are not read), or one invoked by hand, which
/// may narrow the sweep to some users and a shorter idle window (an operator ending a
/// user's silent sessions now; the end-to-end suite).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SweepEvent {
    /// Seconds of silence that close a connection: only ever narrower than configured,
    /// and never under 30 s.
    pub idle_secs: Option<u64>,
    /// Only these users' connections.
    pub users: Option<Vec<String>>,
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Connections looked at.
    pub connections: usize,
    /// Connections closed: silent, or their token expired.
    pub closed: usize,
    /// Users taken off the index of users with connections.
    pub unlisted: usize,
}

/// Sweeps every shard of the users with connections (or the users the event names),
/// closing the connections silent for the idle timeout or longer (the event may narrow
/// it).
pub async fn handle_sweep(deps: &Deps, event: SweepEvent) -> Result<SweepReport, ChatError> {
    let configured = deps.idle_timeout.max(MIN_IDLE);
    let idle = event.idle_secs.map_or(configured, |secs| {
        configured.min(Duration::from_secs(secs).max(MIN_IDLE))
    });
    let idle_ms = idle.as_millis() as i64;
    let mut report = SweepReport::default();
    if let Some(users) = event.users {
        let users: Vec<UserId> = users
            .iter()
            .map(UserId::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| ChatError::Invalid(e.0))?;
        let connections = deps.store.connections_of(&users).await?;
        report.connections = connections.len();
        report.closed = deps.chat.close_silent(&connections, idle_ms).await?;
    } else {
        for shard in 0..ONLINE_SHARDS {
            let mut start = None;
            loop {
                let page = deps.store.online_page(shard, start).await?;
                report.connections += page.connections.len();
                report.closed += deps.chat.close_silent(&page.connections, idle_ms).await?;
                deps.store.unlist_offline(&page.empty).await?;
                report.unlisted += page.empty.len();
                start = page.next;
                if start.is_none() {
                    break;
                }
            }
        }
    }
    info!(
        connections = report.connections,
        closed = report.closed,
        unlisted = report.unlisted,
        idle_secs = idle.as_secs(),
        "sweep done"
    );
    Ok(report)
}
