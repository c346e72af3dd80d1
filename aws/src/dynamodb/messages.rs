//! Messages: the send transaction, reads, idempotency and retention.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use chat_shared::StoreError;
use chat_shared::ids::{ConversationId, Millis, Seq, UserId};
use chat_shared::ports::{
    AppendOutcome, MessageQuery, MessageRecord, MessageStore, NewMessage, StoreResult,
};

use super::DynamoStore;
use super::client::{MAX_ATTEMPTS, backoff, cancellation_codes, is_transaction_conflict, put, sdk};
use super::codec::{
    META, MalformedItem, conv_pk, conversation_from, get_n, idem_sk, key, member_sk, message_from,
    message_item, n, s,
};

#[async_trait]
impl MessageStore for DynamoStore {
    async fn append_message(&self, m: &NewMessage) -> StoreResult<AppendOutcome> {
        let cid = m.conversation_id.as_str();
        let sender = m.sender_id.as_str();
        // No idempotency read up front: the transaction's condition on the idempotency
        // record detects a duplicate, and then (only then) the original is read.
        // The caller's view of the counter saves a read; a stale one fails the condition
        // and the next attempt reads the counter.
        let mut hint = m.hint;
        for attempt in 0..MAX_ATTEMPTS {
            let (last_seq, last_message_at) = match hint.take() {
                Some(h) => h,
                None => {
                    let Some(meta) = self.get(&self.tables.main, key(conv_pk(cid), META)).await?
                    else {
                        return Ok(AppendOutcome::NotMember);
                    };
                    let conv = conversation_from(&meta)?;
                    (conv.last_seq, conv.last_message_at)
                }
            };
            let seq = last_seq + 1;
            let timestamp = m.now.max(last_message_at);
            let mut idem = key(conv_pk(cid), &idem_sk(sender, &m.client_message_id));
            idem.insert("seq".into(), n(seq));
            if let Some(at) = m.expires_at {
                idem.insert("expiresAt".into(), n(at / 1000));
            }
            let actions = vec![
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.tables.main)
                            .set_key(Some(key(conv_pk(cid), META)))
                            .update_expression("SET lastSeq = :seq, lastMessageAt = :ts")
                            .condition_expression("lastSeq = :prev")
                            .expression_attribute_values(":seq", n(seq))
                            .expression_attribute_values(":ts", n(timestamp))
                            .expression_attribute_values(":prev", n(last_seq))
                            .build()
                            .expect("update has key and expression"),
                    )
                    .build(),
                put(
                    &self.tables.messages,
                    message_item(m, seq, timestamp),
                    Some("attribute_not_exists(conversationId)"),
                ),
                put(&self.tables.main, idem, Some("attribute_not_exists(pk)")),
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.tables.main)
                            .set_key(Some(key(conv_pk(cid), &member_sk(sender))))
                            .update_expression("SET deliveredUpTo = :seq, readUpTo = :seq")
                            .condition_expression("attribute_exists(pk)")
                            .expression_attribute_values(":seq", n(seq))
                            .build()
                            .expect("update has key and expression"),
                    )
                    .build(),
            ];
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await
            {
                Ok(_) => {
                    let item = message_item(m, seq, timestamp);
                    return Ok(AppendOutcome::Stored(message_from(&item)?));
                }
                Err(e) => {
                    let Some(codes) = cancellation_codes(&e) else {
                        return Err(sdk("append message")(e));
                    };
                    let failed =
                        |i: usize| codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
                    if failed(3) {
                        return Ok(AppendOutcome::NotMember);
                    }
                    if failed(2)
                        && let Some(original) = self
                            .find_by_client_id(
                                &m.conversation_id,
                                &m.sender_id,
                                &m.client_message_id,
                            )
                            .await?
                    {
                        return Ok(AppendOutcome::Duplicate(original));
                    }
                    // Lost the seq to a racing sender (or a transaction conflict): retry.
                    if failed(0) || is_transaction_conflict(&codes) {
                        backoff(attempt).await;
                        continue;
                    }
                    return Err(sdk("append message")(e));
                }
            }
        }
        Err(StoreError::new(
            "append message",
            MalformedItem("too many concurrent senders".into()),
        ))
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
        let message_key = HashMap::from([
            ("conversationId".to_owned(), s(cid)),
            ("seq".to_owned(), n(seq)),
        ]);
        self.get(&self.tables.messages, message_key)
            .await?
            .map(|i| message_from(&i))
            .transpose()
    }

    async fn messages(
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

    async fn first_retained_seq(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<Seq>> {
        let (messages, _) = self
            .messages(
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
        Ok(messages.first().map(|m| m.seq))
    }

    /// DynamoDB deletes expired items itself (TTL on `expiresAt`); reads filter them out
    /// meanwhile. Nothing to do here.
    async fn expire_messages(&self, _before: Millis) -> StoreResult<u64> {
        Ok(0)
    }
}
