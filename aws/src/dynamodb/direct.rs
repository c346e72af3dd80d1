//! Direct delivery's mark: `postedSeq` (and `unreached`, the members owed the push of
//! that entry) on the conversation's counter item, which every send reads already (the
//! membership read) and so does the fan-out (the conversation). One UpdateItem per
//! entry delivered directly, conditional on moving the mark forward.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use chat_shared::ids::{ConversationId, Seq, UserId};
use chat_shared::ports::{DirectMarks, StoreResult};

use super::DynamoStore;
use super::client::condition_held;
use super::codec::{META, conv_pk, key, n};

#[async_trait]
impl DirectMarks for DynamoStore {
    async fn mark_posted(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        unreached: &[UserId],
    ) -> StoreResult<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(conv_pk(conversation.as_str()), META)))
            // Only forward, and never onto a conversation that is gone.
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(postedSeq) OR postedSeq < :seq)",
            )
            .expression_attribute_values(":seq", n(seq));
        let update = if unreached.is_empty() {
            update.update_expression("SET postedSeq = :seq REMOVE unreached")
        } else {
            let users = unreached.iter().map(|u| u.as_str().to_owned()).collect();
            update
                .update_expression("SET postedSeq = :seq, unreached = :users")
                .expression_attribute_values(":users", AttributeValue::Ss(users))
        };
        // A failed condition: a mark as far or further is there already.
        condition_held(update.send().await, "mark posted")?;
        Ok(())
    }
}
