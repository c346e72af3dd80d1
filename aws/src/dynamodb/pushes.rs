//! The record of messages whose pushes were sent.

use async_trait::async_trait;

use chat_shared::ids::{ConversationId, Millis, Seq};
use chat_shared::ports::{PushLedger, StoreResult};

use super::DynamoStore;
use super::client::sdk;
use super::codec::{conv_pk, key, n};

/// The record that a message's pushes were sent outlives any stream redelivery (24 h
/// retention) by a day.
const PUSH_CLAIM_TTL_SECS: i64 = 2 * 86_400;

#[async_trait]
impl PushLedger for DynamoStore {
    async fn pushes_sent(&self, conversation: &ConversationId, seq: Seq) -> StoreResult<bool> {
        let sent = key(conv_pk(conversation.as_str()), &format!("p#{seq}"));
        Ok(self.get(&self.tables.main, sent).await?.is_some())
    }

    async fn record_pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        now: Millis,
    ) -> StoreResult<()> {
        let mut item = key(conv_pk(conversation.as_str()), &format!("p#{seq}"));
        item.insert("expiresAt".into(), n(now / 1000 + PUSH_CLAIM_TTL_SECS));
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk("record pushes sent"))?;
        Ok(())
    }
}
