//! The change feed of the embedded store: every message acked, in seq order, to the
//! fan-out. It stands in for DynamoDB Streams; what was not fanned out before a crash is
//! in the outbox table and comes back through [`ChangeFeed::pending`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use chat_shared::ports::{ChangeFeed, FeedItem, StoreResult};

use crate::errors::err;
use crate::rows::{MESSAGE_COLUMNS, message_at};
use crate::store::SqliteStore;
use crate::writer::Job;

/// Where committed messages go: the change feed's sender, once subscribed.
pub(crate) type FeedSlot = Arc<Mutex<Option<mpsc::UnboundedSender<FeedItem>>>>;

#[async_trait]
impl ChangeFeed for SqliteStore {
    fn subscribe(&self) -> mpsc::UnboundedReceiver<FeedItem> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.feed.lock().expect("feed lock") = Some(tx);
        rx
    }

    /// Messages acked but never fanned out (outbox rows), oldest first.
    async fn pending(&self) -> StoreResult<Vec<FeedItem>> {
        self.settle_for(None).await.map_err(err("read outbox"))?;
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT o.id, {MESSAGE_COLUMNS} FROM outbox o JOIN messages m
                 ON m.conversation_id = o.conversation_id AND m.seq = o.seq ORDER BY o.id"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok(FeedItem {
                    position: r.get(0)?,
                    message: Arc::new(message_at(r, 1)?),
                })
            })?;
            rows.collect()
        })
        .await
        .map_err(err("read outbox"))
    }

    /// The outbox rows of the items are deleted, or never written.
    async fn acknowledge(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.ask(|reply| Job::FannedOut(ids, reply))
            .await
            .map_err(err("ack outbox"))
    }

    fn close(&self) {
        self.inner.feed.lock().expect("feed lock").take();
    }
}
