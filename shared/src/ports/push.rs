//! The push port: notifications to offline devices.

use async_trait::async_trait;

use super::DeviceRecord;
use crate::ids::{ConversationId, Millis, Seq};

/// A push notification for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushNotification {
    pub title: String,
    pub body: String,
    pub conversation_id: ConversationId,
    pub seq: Seq,
    pub message_id: String,
    pub badge: u64,
    pub timestamp: Millis,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The platform says this device's endpoint is disabled or gone: remove the device.
    #[error("push endpoint is disabled or gone")]
    EndpointGone,
    #[error("push: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Sends push notifications to offline devices.
#[async_trait]
pub trait PushSender: Send + Sync + 'static {
    /// Prepares a device for pushes (SNS: creates or updates its platform endpoint) and
    /// returns the endpoint handle to store with it. Senders without endpoints keep none.
    async fn register(&self, device: &DeviceRecord) -> Result<Option<String>, PushError> {
        let _ = device;
        Ok(None)
    }

    /// Pushes one notification to one device.
    async fn push(
        &self,
        device: &DeviceRecord,
        notification: &PushNotification,
    ) -> Result<(), PushError>;
}
