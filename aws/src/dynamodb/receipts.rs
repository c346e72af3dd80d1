//! Receipt positions and the unread count.

use async_trait::async_trait;

use chat_shared::StoreError;
use chat_shared::domain::advance_positions;
use chat_shared::ids::{ConversationId, Seq, UserId};
use chat_shared::ports::{ConversationStore, ReceiptStore, ReceiptUpdate, StoreResult};
use chat_shared::protocol::Positions;

use super::DynamoStore;
use super::client::{MAX_ATTEMPTS, backoff, condition_held};
use super::codec::{MalformedItem, conv_pk, key, member_sk, n};

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
            let resp = self
                .client
                .update_item()
                .table_name(&self.tables.main)
                .set_key(Some(key(
                    conv_pk(conversation.as_str()),
                    &member_sk(user.as_str()),
                )))
                .update_expression("SET deliveredUpTo = :d, readUpTo = :r")
                .condition_expression("deliveredUpTo = :od AND readUpTo = :or")
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
            .map(|(c, m)| c.last_seq.saturating_sub(m.read_up_to))
            .sum())
    }
}
