//! Receipt positions and the unread count.

use async_trait::async_trait;

use chat_shared::StoreError;
use chat_shared::domain::advance_positions;
use chat_shared::ids::{ConversationId, Seq, UserId};
use chat_shared::ports::{
    ConversationRecord, ConversationStore, ReceiptStore, ReceiptUpdate, StoreResult,
};
use chat_shared::protocol::{EntryKind, Positions};

use super::DynamoStore;
use super::client::{MAX_ATTEMPTS, backoff, condition_held, sdk};
use super::codec::{MalformedItem, conv_pk, get_n, key, kind_of, member_sk, n, opt_n, s};

#[async_trait]
impl ReceiptStore for DynamoStore {
    async fn update_receipts(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        delivered_up_to: Option<Seq>,
        read_up_to: Option<Seq>,
    ) -> StoreResult<Option<ReceiptUpdate>> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((conv, me)) = self.membership(conversation, user).await? else {
                return Ok(None);
            };
            let before = (me.delivered_up_to, me.read_up_to);
            let after = advance_positions(before, conv.last_seq, delivered_up_to, read_up_to);
            let update = ReceiptUpdate {
                conversation: conv,
                positions: Positions {
                    delivered_up_to: after.0,
                    read_up_to: after.1,
                },
                changed: after != before,
            };
            if !update.changed {
                return Ok(Some(update));
            }
            let read_messages = if after.1 == before.1 {
                me.read_messages
            } else {
                self.message_count_at(&update.conversation, after.1).await?
            };
            let resp = self
                .client
                .update_item()
                .table_name(&self.tables.main)
                .set_key(Some(key(
                    conv_pk(conversation.as_str()),
                    &member_sk(user.as_str()),
                )))
                .update_expression("SET deliveredUpTo = :d, readUpTo = :r, readMessages = :m")
                .condition_expression("deliveredUpTo = :od AND readUpTo = :or")
                .expression_attribute_values(":m", n(read_messages))
                .expression_attribute_values(":d", n(after.0))
                .expression_attribute_values(":r", n(after.1))
                .expression_attribute_values(":od", n(before.0))
                .expression_attribute_values(":or", n(before.1))
                .send()
                .await;
            match condition_held(resp, "update receipts")? {
                Some(_) => return Ok(Some(update)),
                None => backoff(attempt).await,
            }
        }
        Err(StoreError::new(
            "update receipts",
            MalformedItem("too many concurrent updates".into()),
        ))
    }

    async fn total_unread(&self, user: &UserId) -> StoreResult<u64> {
        Ok(self
            .conversations_of(user.as_str())
            .await?
            .iter()
            .map(|(c, m)| m.unread(c))
            .sum())
    }
}

impl DynamoStore {
    /// How many `message` entries the conversation had through `seq`: its count at
    /// `lastSeq`, else the count stored on the entry at `seq`, else (that entry expired)
    /// the nearest later entry's count less itself. One read at most, none at the end
    /// of the log (where reading clients usually are).
    async fn message_count_at(&self, conv: &ConversationRecord, seq: Seq) -> StoreResult<u64> {
        if seq >= conv.last_seq {
            return Ok(conv.message_count);
        }
        if seq == 0 {
            return Ok(0);
        }
        let resp = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .key_condition_expression("conversationId = :c AND seq BETWEEN :lo AND :hi")
            .expression_attribute_values(":c", s(conv.id.as_str()))
            .expression_attribute_values(":lo", n(seq))
            .expression_attribute_values(":hi", n(conv.last_seq))
            .projection_expression("seq, kind, messageCount")
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(sdk("query message count"))?;
        let Some(item) = resp.items.unwrap_or_default().into_iter().next() else {
            return Ok(conv.message_count);
        };
        let count: u64 = match opt_n(&item, "messageCount")? {
            Some(c) => c,
            // Entries written before counts were kept: the best bound at hand.
            None => return Ok(conv.message_count),
        };
        let at: Seq = get_n(&item, "seq")?;
        let own = at > seq && kind_of(&item)? == EntryKind::Message;
        Ok(count - u64::from(own))
    }
}
