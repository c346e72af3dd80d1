//! Messages: appends go to the sequencer; reads bring what they read up to the messages
//! in flight or wait for them.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use chat_shared::ids::{ConversationId, Millis, Seq, UserId};
use chat_shared::ports::{
    AppendOutcome, MessageQuery, MessageRecord, MessageStore, NewMessage, REACTORS_SHOWN,
    ReactionSummary, StoreResult,
};
use chat_shared::protocol::Entry;

use crate::errors::err;
use crate::in_flight::find_original;
use crate::rows::{MESSAGE_COLUMNS, message_at, user_at};
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
        viewer: &UserId,
        q: MessageQuery,
    ) -> StoreResult<(Vec<MessageRecord>, bool)> {
        self.settle_for(Some(conversation))
            .await
            .map_err(err("read messages"))?;
        let (conversation, viewer) = (conversation.clone(), viewer.clone());
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let order = if q.newest { "DESC" } else { "ASC" };
            let mut stmt = tx.prepare_cached(&format!(
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
            drop(stmt);
            let more = messages.len() > q.limit as usize;
            messages.truncate(q.limit as usize);
            if q.newest {
                messages.reverse();
            }
            add_reactions(&tx, conversation.as_str(), &viewer, &mut messages)?;
            tx.finish()?;
            Ok((messages, more))
        })
        .await
        .map_err(err("read messages"))
    }

    async fn last_message(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<MessageRecord>> {
        self.settle_for(Some(conversation))
            .await
            .map_err(err("read the last message"))?;
        self.lookup(|c| {
            c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.conversation_id = ?1 AND m.kind = 'message' AND m.timestamp >= ?2
                 ORDER BY m.seq DESC LIMIT 1"
            ))?
            .query_row(params![conversation.as_str(), min_timestamp], |r| {
                message_at(r, 0)
            })
            .optional()
        })
        .map_err(err("read the last message"))
    }

    async fn reactors(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        emoji: &str,
        after: Option<&UserId>,
        limit: u32,
    ) -> StoreResult<Vec<UserId>> {
        self.settle_for(Some(conversation))
            .await
            .map_err(err("read reactors"))?;
        let (conversation, emoji) = (conversation.clone(), emoji.to_owned());
        let after = after.map_or_else(String::new, |u| u.as_str().to_owned());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT user_id FROM reactions
                 WHERE conversation_id = ?1 AND target_seq = ?2 AND emoji = ?3 AND user_id > ?4
                 ORDER BY user_id LIMIT ?5",
            )?
            .query_map(
                params![conversation.as_str(), seq, emoji, after, limit],
                |r| user_at(r, 0),
            )?
            .collect()
        })
        .await
        .map_err(err("read reactors"))
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
            tx.execute(
                "DELETE FROM reactions WHERE EXISTS (
                     SELECT 1 FROM messages m WHERE m.conversation_id = reactions.conversation_id
                       AND m.seq = reactions.target_seq AND m.timestamp < ?1)",
                [before],
            )?;
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

/// Fills in the reactions of the messages of a page, as `viewer` sees them: one query
/// for the whole page's seq range.
fn add_reactions(
    c: &Connection,
    conversation: &str,
    viewer: &UserId,
    messages: &mut [MessageRecord],
) -> rusqlite::Result<()> {
    let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
        return Ok(());
    };
    let (lo, hi) = (first.seq, last.seq);
    let mut stmt = c.prepare_cached(
        "SELECT target_seq, emoji, user_id FROM reactions
         WHERE conversation_id = ?1 AND target_seq BETWEEN ?2 AND ?3 ORDER BY target_seq, seq",
    )?;
    let rows = stmt.query_map(params![conversation, lo, hi], |r| {
        Ok((r.get::<_, Seq>(0)?, r.get::<_, String>(1)?, user_at(r, 2)?))
    })?;
    let mut by_target: std::collections::HashMap<Seq, Vec<ReactionSummary>> = Default::default();
    for row in rows {
        let (target, emoji, user) = row?;
        let summaries = by_target.entry(target).or_default();
        let summary = match summaries.iter_mut().position(|s| s.emoji == emoji) {
            Some(i) => &mut summaries[i],
            None => {
                summaries.push(ReactionSummary {
                    emoji,
                    count: 0,
                    user_ids: Vec::new(),
                    mine: false,
                });
                summaries.last_mut().expect("just pushed")
            }
        };
        summary.count += 1;
        summary.mine |= &user == viewer;
        if summary.user_ids.len() < REACTORS_SHOWN {
            summary.user_ids.push(user);
        }
    }
    for m in messages.iter_mut() {
        if matches!(m.entry, Entry::Message { .. })
            && let Some(reactions) = by_target.remove(&m.seq)
        {
            m.state.reactions = reactions;
        }
    }
    Ok(())
}
