//! Messages: appends go to the sequencer; reads bring what they read up to the messages
//! in flight or wait for them.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use chat_shared::ids::{ConversationId, Millis, Seq, UserId};
use chat_shared::ports::{
    AppendOutcome, MessageQuery, MessageRecord, MessageStore, NewMessage, StoreResult,
};

use crate::errors::err;
use crate::in_flight::find_original;
use crate::rows::{MESSAGE_COLUMNS, message_at};
use crate::sequencer::Append;
use crate::store::SqliteStore;
use crate::threads::ask;

#[async_trait]
impl MessageStore for SqliteStore {
    async fn append_message(&self, message: &NewMessage) -> StoreResult<AppendOutcome> {
        let append = |reply| Append {
            message: message.clone(),
            reply,
        };
        ask(&self.inner.appends, append, "the sequencer is gone")
            .await
            .map_err(err("append message"))
    }

    async fn find_by_client_id(
        &self,
        conversation: &ConversationId,
        sender: &UserId,
        client_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>> {
        let (cid, sender) = (conversation.as_str(), sender.as_str());
        self.lookup(|c| find_original(c, &self.inner.in_flight, cid, sender, client_message_id))
            .map_err(err("find message"))
    }

    async fn messages(
        &self,
        conversation: &ConversationId,
        q: MessageQuery,
    ) -> StoreResult<(Vec<MessageRecord>, bool)> {
        self.settle_for(Some(conversation))
            .await
            .map_err(err("read messages"))?;
        let conversation = conversation.clone();
        self.read(move |c| {
            let order = if q.newest { "DESC" } else { "ASC" };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.conversation_id = ?1 AND m.seq > ?2 AND m.seq < ?3 AND m.timestamp >= ?4
                 ORDER BY m.seq {order} LIMIT ?5"
            ))?;
            let after = q.after.map_or(0, |s| s as i64);
            let before = q.before.map_or(i64::MAX, |s| s.min(i64::MAX as u64) as i64);
            let rows = stmt.query_map(
                params![
                    conversation.as_str(),
                    after,
                    before,
                    q.min_timestamp,
                    i64::from(q.limit) + 1
                ],
                |r| message_at(r, 0),
            )?;
            let mut messages = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let more = messages.len() > q.limit as usize;
            messages.truncate(q.limit as usize);
            if q.newest {
                messages.reverse();
            }
            Ok((messages, more))
        })
        .await
        .map_err(err("read messages"))
    }

    async fn first_retained_seq(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<Seq>> {
        self.settle_for(Some(conversation))
            .await
            .map_err(err("read first seq"))?;
        self.lookup(|c| {
            c.prepare_cached(
                "SELECT seq FROM messages WHERE conversation_id = ?1 AND timestamp >= ?2
                 ORDER BY seq LIMIT 1",
            )?
            .query_row(params![conversation.as_str(), min_timestamp], |r| r.get(0))
            .optional()
        })
        .map_err(err("read first seq"))
    }

    async fn expire_messages(&self, before: Millis) -> StoreResult<u64> {
        self.write(move |tx| {
            tx.execute("DELETE FROM push_claims WHERE claimed_at < ?1", [before])?;
            Ok(tx.execute(
                "DELETE FROM messages WHERE timestamp < ?1
                 AND NOT EXISTS (SELECT 1 FROM outbox o
                                 WHERE o.conversation_id = messages.conversation_id
                                   AND o.seq = messages.seq)",
                [before],
            )? as u64)
        })
        .await
        .map_err(err("expire messages"))
    }
}
