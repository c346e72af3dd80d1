//! The record of messages whose pushes were sent.

use async_trait::async_trait;

use aws_sdk_dynamodb::types::AttributeValue;

use chat_shared::ids::{ConversationId, Millis, Seq};
use chat_shared::ports::{PushLedger, PushedDevice, StoreResult};

use super::DynamoStore;
use super::client::condition_held;
use super::codec::{conv_pk, key, malformed, n, s};

/// The record that a message's pushes were sent outlives any stream redelivery (24 h
/// retention) by a day.
const PUSH_CLAIM_TTL_SECS: i64 = 2 * 86_400;

#[async_trait]
impl PushLedger for DynamoStore {
    async fn pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
    ) -> StoreResult<Option<Vec<PushedDevice>>> {
        let sent = key(conv_pk(conversation.as_str()), &format!("p#{seq}"));
        let Some(item) = self.get(&self.tables.main, sent).await? else {
            return Ok(None);
        };
        let devices = match item.get("devices") {
            Some(AttributeValue::L(devices)) => devices
                .iter()
                .filter_map(|d| d.as_s().ok())
                .map(|d| PushedDevice::decode(d).ok_or_else(|| malformed(d.clone())))
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        Ok(Some(devices))
    }

    async fn record_pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        now: Millis,
        devices: &[PushedDevice],
    ) -> StoreResult<()> {
        let mut item = key(conv_pk(conversation.as_str()), &format!("p#{seq}"));
        item.insert("expiresAt".into(), n(now / 1000 + PUSH_CLAIM_TTL_SECS));
        item.insert(
            "devices".into(),
            AttributeValue::L(devices.iter().map(|d| s(d.encode())).collect()),
        );
        // The first record stands: a replay that pushed again names the same users.
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        condition_held(put, "record pushes sent").map(drop)
    }
}
