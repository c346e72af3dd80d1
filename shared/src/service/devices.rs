//! Devices registered for push.

use tracing::warn;

use crate::error::{ChatError, ChatResult};
use crate::ids::{DeviceId, UserId};
use crate::ports::{DeviceRecord, Platform};

use super::Chat;

impl Chat {
    /// Registers (or updates) a push device of the caller.
    pub async fn register_device(
        &self,
        caller: &UserId,
        device_id: DeviceId,
        platform: Platform,
        token: String,
    ) -> ChatResult<DeviceRecord> {
        let mut device = DeviceRecord {
            user_id: caller.clone(),
            device_id,
            platform,
            token,
            endpoint: None,
            updated_at: self.now(),
        };
        device.endpoint = self.push.register(&device).await.map_err(|e| {
            warn!(error = %e, "push registration failed");
            ChatError::Unavailable("the push service is unavailable; retry later")
        })?;
        self.store.put_device(&device).await?;
        Ok(device)
    }

    /// Removes a device of the caller: its push registration, and its open sockets
    /// (closed as revoked sessions). `NOT_FOUND` when it had neither.
    pub async fn delete_device(&self, caller: &UserId, device_id: &DeviceId) -> ChatResult<()> {
        let registered = self.store.delete_device(caller, device_id).await?;
        let connected = self.close_device_sessions(caller, device_id).await?;
        if registered || connected {
            Ok(())
        } else {
            Err(ChatError::NotFound("no such device"))
        }
    }
}
