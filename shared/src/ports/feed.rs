//! The change feed port: the messages a store committed, in commit order, for the fan-out.
//!
//! On AWS the feed is DynamoDB Streams, which invokes the fan-out Lambda by itself (see
//! `chat-aws`), so nothing there implements this trait; the embedded store does, and
//! `chat-local` drains it into the same fan-out handler.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{MessageRecord, StoreResult};

/// A message committed and not yet fanned out, at its position in the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    /// Where the item stands in the feed: what [`ChangeFeed::acknowledge`] takes.
    pub position: i64,
    pub message: Arc<MessageRecord>,
}

/// Every message committed, in commit order, until each is acknowledged as fanned out.
/// A message committed is on the feed even if the process dies before its fan-out: the
/// next process finds it in [`ChangeFeed::pending`] (at least once, never lost).
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// Starts the feed: every message committed from now on, in commit order. Read
    /// [`ChangeFeed::pending`] first to get what an earlier process left.
    fn subscribe(&self) -> mpsc::UnboundedReceiver<FeedItem>;
    /// Messages committed but never acknowledged, oldest first.
    async fn pending(&self) -> StoreResult<Vec<FeedItem>>;
    /// Notes items as fanned out, by position: they are not replayed.
    async fn acknowledge(&self, positions: Vec<i64>) -> StoreResult<()>;
    /// Ends the feed: the subscriber sees the end once it drained what came before.
    fn close(&self);
}
