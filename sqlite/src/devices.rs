//! Devices registered for push.

use async_trait::async_trait;
use rusqlite::params;

use chat_shared::ids::{DeviceId, UserId};
use chat_shared::ports::{DeviceRecord, DeviceStore, StoreResult};

use crate::errors::err;
use crate::queries::{select_for_users, strings};
use crate::rows::device_at;
use crate::store::SqliteStore;

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn put_device(&self, device: &DeviceRecord) -> StoreResult<()> {
        let d = device.clone();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM devices WHERE platform = ?1 AND token = ?2
                 AND NOT (user_id = ?3 AND device_id = ?4)",
                params![d.platform.as_str(), d.token, d.user_id.as_str(), d.device_id.as_str()],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO devices (user_id, device_id, platform, token, endpoint, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    d.user_id.as_str(),
                    d.device_id.as_str(),
                    d.platform.as_str(),
                    d.token,
                    d.endpoint,
                    d.updated_at
                ],
            )?;
            Ok(())
        })
        .await
        .map_err(err("put device"))
    }

    async fn delete_device(&self, user: &UserId, device: &DeviceId) -> StoreResult<bool> {
        let (user, device) = (user.clone(), device.clone());
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
                params![user.as_str(), device.as_str()],
            )? == 1)
        })
        .await
        .map_err(err("delete device"))
    }

    async fn devices_of(&self, users: &[UserId]) -> StoreResult<Vec<DeviceRecord>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let users = strings(users);
        self.lookup(move |c| {
            select_for_users(
                c,
                "SELECT user_id, device_id, platform, token, endpoint, updated_at FROM devices WHERE user_id IN ({users}) ORDER BY user_id, device_id",
                &users,
                device_at,
            )
        })
        .map_err(err("read devices"))
    }
}
