//! Pushes: the record of messages whose pushes were sent, and the local push outbox that
//! stands in for SNS (`GET /dev/push-outbox`).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use chat_shared::StoreError;
use chat_shared::ids::{ConversationId, InvalidValue, Millis, Seq};
use chat_shared::ports::{
    DeviceRecord, PushError, PushLedger, PushNotification, PushSender, PushedDevice, StoreResult,
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
    async fn pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
    ) -> StoreResult<Option<Vec<PushedDevice>>> {
        let devices: Option<String> = self
            .lookup(|c| {
                c.prepare_cached(
                    "SELECT users FROM push_claims WHERE conversation_id = ?1 AND seq = ?2",
                )?
                .query_row(params![conversation.as_str(), seq], |r| r.get(0))
                .optional()
            })
            .map_err(err("read pushes sent"))?;
        devices
            .map(|d| {
                d.split(' ')
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        PushedDevice::decode(d).ok_or_else(|| {
                            StoreError::new("read pushes sent", InvalidValue(d.into()))
                        })
                    })
                    .collect()
            })
            .transpose()
    }

    async fn record_pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        now: Millis,
        devices: &[PushedDevice],
    ) -> StoreResult<()> {
        let conversation = conversation.clone();
        let users = devices
            .iter()
            .map(PushedDevice::encode)
            .collect::<Vec<_>>()
            .join(" ");
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO push_claims (conversation_id, seq, claimed_at, users)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )?
            .execute(params![conversation.as_str(), seq, now, users])?;
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
