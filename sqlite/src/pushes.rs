//! Pushes: the record of messages whose pushes were sent, and the local push outbox that
//! stands in for SNS (`GET /dev/push-outbox`).

use async_trait::async_trait;
use rusqlite::params;

use chat_shared::ids::{ConversationId, Millis, Seq};
use chat_shared::ports::{
    DeviceRecord, PushError, PushLedger, PushNotification, PushSender, StoreResult,
};

use crate::errors::err;
use crate::rows::conversation_id_at;
use crate::store::SqliteStore;

/// A push as recorded in the local outbox (`GET /dev/push-outbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxPush {
    pub user_id: String,
    pub device_id: String,
    pub platform: String,
    pub notification: PushNotification,
}

impl SqliteStore {
    /// The local push outbox, oldest first.
    pub async fn pushes(&self) -> StoreResult<Vec<OutboxPush>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT user_id, device_id, platform, title, body, conversation_id, seq,
                        message_id, badge, timestamp FROM push_outbox ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(OutboxPush {
                    user_id: r.get(0)?,
                    device_id: r.get(1)?,
                    platform: r.get(2)?,
                    notification: PushNotification {
                        title: r.get(3)?,
                        body: r.get(4)?,
                        conversation_id: conversation_id_at(r, 5)?,
                        seq: r.get(6)?,
                        message_id: r.get(7)?,
                        badge: r.get(8)?,
                        timestamp: r.get(9)?,
                    },
                })
            })?;
            rows.collect()
        })
        .await
        .map_err(err("read push outbox"))
    }
}

#[async_trait]
impl PushLedger for SqliteStore {
    async fn pushes_sent(&self, conversation: &ConversationId, seq: Seq) -> StoreResult<bool> {
        self.lookup(|c| {
            c.prepare_cached("SELECT 1 FROM push_claims WHERE conversation_id = ?1 AND seq = ?2")?
                .exists(params![conversation.as_str(), seq])
        })
        .map_err(err("read pushes sent"))
    }

    async fn record_pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        now: Millis,
    ) -> StoreResult<()> {
        let conversation = conversation.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO push_claims (conversation_id, seq, claimed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![conversation.as_str(), seq, now])?;
            Ok(())
        })
        .await
        .map_err(err("record pushes sent"))
    }
}

/// The local stand-in for SNS: pushes are recorded in the database's push outbox.
#[async_trait]
impl PushSender for SqliteStore {
    async fn push(&self, device: &DeviceRecord, n: &PushNotification) -> Result<(), PushError> {
        let (d, n) = (device.clone(), n.clone());
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO push_outbox (user_id, device_id, platform, title, body,
                     conversation_id, seq, message_id, badge, timestamp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                d.user_id.as_str(),
                d.device_id.as_str(),
                d.platform.as_str(),
                n.title,
                n.body,
                n.conversation_id.as_str(),
                n.seq,
                n.message_id,
                n.badge,
                n.timestamp
            ])?;
            Ok(())
        })
        .await
        .map_err(|e| PushError::Other(Box::new(e)))
    }
}
