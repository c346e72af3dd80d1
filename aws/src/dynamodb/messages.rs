//! Entries: the append (in `append`), reads in their current state, idempotency and
//! retention.

use async_trait::async_trait;

use chat_shared::ids::{ConversationId, Millis, Seq, UserId};
use chat_shared::ports::{
    AppendOutcome, MessageQuery, MessageRecord, MessageStore, NewMessage, StoreResult,
};

use super::DynamoStore;
use super::client::sdk;
use super::codec::{conv_pk, entry_key, get_n, idem_sk, key, message_from, n, s};

impl DynamoStore {
    /// Entries of a query in ascending seq order and whether more exist, `mine` unset.
    async fn entries(
        &self,
        conversation: &ConversationId,
        q: MessageQuery,
    ) -> StoreResult<(Vec<MessageRecord>, bool)> {
        let lo = q.after.map_or(1, |a| a.saturating_add(1));
        let hi = q.before.map_or(i64::MAX as u64, |b| b.saturating_sub(1));
        if lo > hi || q.limit == 0 {
            return Ok((Vec::new(), false));
        }
        let want = q.limit as usize + 1;
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .key_condition_expression("conversationId = :c AND seq BETWEEN :lo AND :hi")
                .expression_attribute_values(":c", s(conversation.as_str()))
                .expression_attribute_values(":lo", n(lo))
                .expression_attribute_values(":hi", n(hi))
                .scan_index_forward(!q.newest)
                .consistent_read(true)
                .limit((want - out.len()).min(1000) as i32)
                .set_exclusive_start_key(start);
            if q.min_timestamp > i64::MIN {
                req = req
                    .filter_expression("#ts >= :min")
                    .expression_attribute_names("#ts", "timestamp")
                    .expression_attribute_values(":min", n(q.min_timestamp));
            }
            let resp = req.send().await.map_err(sdk("query messages"))?;
            for item in resp.items.unwrap_or_default() {
                out.push(message_from(&item)?);
            }
            start = resp.last_evaluated_key;
            if start.is_none() || out.len() >= want {
                break;
            }
        }
        let more = out.len() > q.limit as usize;
        out.truncate(q.limit as usize);
        if q.newest {
            out.reverse();
        }
        Ok((out, more))
    }
}

#[async_trait]
impl MessageStore for DynamoStore {
    async fn append_message(&self, m: &NewMessage) -> StoreResult<AppendOutcome> {
        self.append(m).await
    }

    async fn find_by_client_id(
        &self,
        conversation: &ConversationId,
        sender: &UserId,
        client_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>> {
        let cid = conversation.as_str();
        let Some(idem) = self
            .get(
                &self.tables.main,
                key(conv_pk(cid), &idem_sk(sender.as_str(), client_message_id)),
            )
            .await?
        else {
            return Ok(None);
        };
        let seq: Seq = get_n(&idem, "seq")?;
        self.get(&self.tables.messages, entry_key(cid, seq))
            .await?
            .map(|i| message_from(&i))
            .transpose()
    }

    /// One Query for the entries; the summaries are on the message items. When a
    /// message of the page has reactions, one more bounded Query reads the viewer's own
    /// in the page's seq range (`mine`).
    async fn messages(
        &self,
        conversation: &ConversationId,
        viewer: &UserId,
        q: MessageQuery,
    ) -> StoreResult<(Vec<MessageRecord>, bool)> {
        let (mut entries, more) = self.entries(conversation, q).await?;
        let reacted = || {
            entries
                .iter()
                .filter(|m| !m.state.reactions.is_empty())
                .map(|m| m.seq)
        };
        if let (Some(lo), Some(hi)) = (reacted().min(), reacted().max()) {
            let mine = self
                .own_reactions(conversation.as_str(), viewer, lo, hi)
                .await?;
            for m in &mut entries {
                for r in &mut m.state.reactions {
                    r.mine = mine.contains(&(m.seq, r.emoji.clone()));
                }
            }
        }
        Ok((entries, more))
    }

    /// Newest first, a few entries a request: the last message is nearly always the
    /// last entry, behind at most a few reactions, edits or system entries.
    async fn last_message(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<MessageRecord>> {
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .key_condition_expression("conversationId = :c")
                .filter_expression(
                    "(attribute_not_exists(#kind) OR #kind = :message) AND #ts >= :min",
                )
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_names("#ts", "timestamp")
                .expression_attribute_values(":c", s(conversation.as_str()))
                .expression_attribute_values(":message", s("message"))
                .expression_attribute_values(":min", n(min_timestamp))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(8)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("query the last message"))?;
            if let Some(item) = resp.items.unwrap_or_default().first() {
                return message_from(item).map(Some);
            }
            start = resp.last_evaluated_key;
            if start.is_none() {
                return Ok(None);
            }
        }
    }

    async fn reactors(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        emoji: &str,
        after: Option<&UserId>,
        limit: u32,
    ) -> StoreResult<Vec<UserId>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .reactor_items(
                conversation.as_str(),
                seq,
                emoji,
                after,
                Some(limit as usize),
            )
            .await?
            .into_iter()
            .map(|(user, _)| user)
            .collect())
    }

    async fn first_retained_seq(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<Seq>> {
        let (entries, _) = self
            .entries(
                conversation,
                MessageQuery {
                    after: None,
                    before: None,
                    limit: 1,
                    newest: false,
                    min_timestamp,
                },
            )
            .await?;
        Ok(entries.first().map(|m| m.seq))
    }

    /// DynamoDB deletes expired items itself (TTL on `expiresAt`); reads filter them out
    /// meanwhile. Nothing to do here.
    async fn expire_messages(&self, _before: Millis) -> StoreResult<u64> {
        Ok(0)
    }
}
