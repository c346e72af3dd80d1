//! Receipt positions and the unread count.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use chat_shared::domain::advance_positions;
use chat_shared::ids::{ConversationId, Seq, UserId};
use chat_shared::ports::{ReceiptStore, ReceiptUpdate, StoreResult};
use chat_shared::protocol::Positions;

use crate::errors::err;
use crate::queries::membership_tx;
use crate::store::SqliteStore;

/// The message count through `seq`: the count stored on the next entry, less that entry
/// itself if it is a message. `None` when no later entry is retained.
fn messages_through(
    tx: &Connection,
    conversation: &str,
    seq: Seq,
) -> rusqlite::Result<Option<u64>> {
    tx.prepare_cached(
        "SELECT message_no - (kind = 'message') FROM messages
         WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq LIMIT 1",
    )?
    .query_row(params![conversation, seq], |r| r.get(0))
    .optional()
}

#[async_trait]
impl ReceiptStore for SqliteStore {
    async fn update_receipts(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        delivered_up_to: Option<Seq>,
        read_up_to: Option<Seq>,
    ) -> StoreResult<Option<ReceiptUpdate>> {
        let (conversation, user) = (conversation.clone(), user.clone());
        let who = user.clone();
        self.write_noting_after(
            move |tx| {
                let Some((conv, me)) = membership_tx(tx, conversation.as_str(), user.as_str())?
                else {
                    return Ok(None);
                };
                let before = (me.delivered_up_to, me.read_up_to);
                let after = advance_positions(before, conv.last_seq, delivered_up_to, read_up_to);
                let read_messages = if after.1 == before.1 {
                    me.read_messages
                } else if after.1 >= conv.last_seq {
                    conv.message_count
                } else {
                    messages_through(tx, conversation.as_str(), after.1)?
                        .unwrap_or(conv.message_count)
                };
                if after != before {
                    tx.prepare_cached(
                        "UPDATE members SET delivered_up_to = ?3, read_up_to = ?4,
                             read_messages = MAX(read_messages, ?5)
                         WHERE conversation_id = ?1 AND user_id = ?2",
                    )?
                    .execute(params![
                        conversation.as_str(),
                        user.as_str(),
                        after.0,
                        after.1,
                        read_messages
                    ])?;
                }
                let update = ReceiptUpdate {
                    conversation: conv,
                    positions: Positions {
                        delivered_up_to: after.0,
                        read_up_to: after.1,
                    },
                    changed: after != before,
                };
                Ok(Some((update, read_messages)))
            },
            move |cache, update| {
                if let Some((u, read_messages)) = update.as_ref().filter(|(u, _)| u.changed) {
                    cache.positions_moved(
                        u.conversation.id.as_str(),
                        who.as_str(),
                        u.positions,
                        *read_messages,
                    );
                }
            },
            true,
        )
        .await
        .map(|update| update.map(|(u, _)| u))
        .map_err(err("update receipts"))
    }

    async fn total_unread(&self, user: &UserId) -> StoreResult<u64> {
        self.settle_for(None)
            .await
            .map_err(err("read unread total"))?;
        let user = user.clone();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT COALESCE(SUM(MAX(c.message_count - m.read_messages, 0)), 0) FROM members m
                 JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = ?1",
            )?
            .query_row([user.as_str()], |r| r.get(0))
        })
        .await
        .map_err(err("read unread total"))
    }
}
