//! The typing throttle and the send-rate windows.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use chat_shared::ids::{ConversationId, Millis, UserId};
use chat_shared::ports::{StoreResult, ThrottleStore};

use super::DynamoStore;
use super::client::{condition_held, sdk};
use super::codec::{conv_pk, get_n, key, member_sk, n, user_pk};

/// Rate-window items outlive their window by this much.
const RATE_WINDOW_TTL_SECS: i64 = 180;

#[async_trait]
impl ThrottleStore for DynamoStore {
    async fn typing_permit(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        now: Millis,
        window_ms: i64,
        max: u32,
        shown_until: Millis,
    ) -> StoreResult<Option<bool>> {
        let member_key = key(conv_pk(conversation.as_str()), &member_sk(user.as_str()));
        // A new window, when the last one is over...
        let fresh = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(member_key.clone()))
            .update_expression("SET typingWindow = :now, typingCount = :one, typingUntil = :until")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(typingWindow) OR typingWindow <= :cut)")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cut", n(now - window_ms))
            .expression_attribute_values(":until", n(shown_until))
            .send()
            .await;
        if condition_held(fresh, "typing throttle")?.is_some() {
            return Ok(Some(true));
        }
        // ...else one more in the current window, while under the cap.
        let more = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(member_key.clone()))
            .update_expression("ADD typingCount :one SET typingUntil = :until")
            .condition_expression(
                "attribute_exists(pk) AND typingWindow > :cut AND typingCount < :max",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cut", n(now - window_ms))
            .expression_attribute_values(":max", n(max))
            .expression_attribute_values(":until", n(shown_until))
            .send()
            .await;
        match condition_held(more, "typing throttle")? {
            Some(_) => Ok(Some(true)),
            None => Ok(self
                .get(&self.tables.main, member_key)
                .await?
                .map(|_| false)),
        }
    }

    async fn typing_stop(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        now: Millis,
    ) -> StoreResult<Option<bool>> {
        let member_key = key(conv_pk(conversation.as_str()), &member_sk(user.as_str()));
        let stop = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(member_key.clone()))
            .update_expression("REMOVE typingUntil")
            .condition_expression("attribute_exists(pk) AND typingUntil > :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        if condition_held(stop, "typing stop")?.is_some() {
            return Ok(Some(true));
        }
        // Not seen typing, or not a member: the flood path, one read.
        Ok(self
            .get(&self.tables.main, member_key)
            .await?
            .map(|_| false))
    }

    async fn count_send(&self, user: &UserId, window_start: Millis) -> StoreResult<u64> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(
                user_pk(user.as_str()),
                &format!("rate#{window_start}"),
            )))
            .update_expression("ADD #c :one SET expiresAt = :exp")
            .expression_attribute_names("#c", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", n(window_start / 1000 + RATE_WINDOW_TTL_SECS))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk("count send"))?;
        get_n(&out.attributes.unwrap_or_default(), "count")
    }
}
