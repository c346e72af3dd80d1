//! What the core's integration tests share.

use async_trait::async_trait;
use bytes::Bytes;
use chat_shared::ports::{ConnectionGateway, GatewayError};

/// The gateway of a process with no socket open: every connection is gone.
pub struct NoSockets;

#[async_trait]
impl ConnectionGateway for NoSockets {
    async fn post(&self, _: &str, _: Bytes) -> Result<(), GatewayError> {
        Err(GatewayError::Gone)
    }
    async fn close(&self, _: &str) -> Result<(), GatewayError> {
        Err(GatewayError::Gone)
    }
}
