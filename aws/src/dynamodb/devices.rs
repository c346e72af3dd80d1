//! Devices registered for push.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use chat_shared::ids::{DeviceId, UserId};
use chat_shared::ports::{DeviceRecord, DeviceStore, StoreResult};

use super::DynamoStore;
use super::client::sdk;
use super::codec::{device_entry, device_from, get_map, get_s, key, s, token_pk};

#[async_trait]
impl DeviceStore for DynamoStore {
    async fn put_device(&self, d: &DeviceRecord) -> StoreResult<()> {
        let claim_key = key(token_pk(d.platform, &d.token), "#token");
        if let Some(claim) = self.get(&self.tables.main, claim_key.clone()).await? {
            let (owner, device) = (get_s(&claim, "userId")?, get_s(&claim, "deviceId")?);
            if owner != d.user_id.as_str() || device != d.device_id.as_str() {
                self.remove_user_map_entry(owner, "devs", device).await?;
            }
        }
        let mut claim = claim_key;
        claim.insert("userId".into(), s(d.user_id.as_str()));
        claim.insert("deviceId".into(), s(d.device_id.as_str()));
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(claim))
            .send()
            .await
            .map_err(sdk("claim push token"))?;
        self.set_user_map_entry(
            d.user_id.as_str(),
            "devs",
            d.device_id.as_str(),
            device_entry(d),
            None,
        )
        .await
    }

    async fn delete_device(&self, user: &UserId, device: &DeviceId) -> StoreResult<bool> {
        Ok(self
            .remove_user_map_entry(user.as_str(), "devs", device.as_str())
            .await?
            .is_some())
    }

    async fn devices_of(&self, users: &[UserId]) -> StoreResult<Vec<DeviceRecord>> {
        let mut out = Vec::new();
        for (user, item) in self.user_items(users).await? {
            if let Some(devs) = get_map(&item, "devs") {
                for (id, entry) in devs {
                    if let AttributeValue::M(entry) = entry {
                        out.push(device_from(&user, id, entry)?);
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.user_id, &a.device_id).cmp(&(&b.user_id, &b.device_id)));
        Ok(out)
    }
}
