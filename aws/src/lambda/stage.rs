//! The connection gateway of a stage, whose Management API endpoint a function may
//! learn only from its first WebSocket event.

use std::sync::OnceLock;

use async_trait::async_trait;
use bytes::Bytes;

use chat_shared::ports::{CloseReason, ConnectionGateway, GatewayError};

use crate::apigw::{ApiGatewayGateway, management_endpoint};

/// The connection gateway of a stage, whose endpoint may only be known from the first
/// WebSocket event (`https://{domain}/{stage}`) unless configured.
pub struct StageGateway {
    sdk: aws_config::SdkConfig,
    configured: Option<String>,
    inner: OnceLock<ApiGatewayGateway>,
}

/// No event has told the gateway its endpoint yet, and none is configured.
#[derive(Debug, thiserror::Error)]
#[error("the API Gateway Management endpoint is unknown: set CHAT_APIGW_ENDPOINT")]
pub struct EndpointUnknown;

impl StageGateway {
    pub(crate) fn new(sdk: aws_config::SdkConfig, configured: Option<String>) -> Self {
        let gateway = Self {
            sdk,
            configured,
            inner: OnceLock::new(),
        };
        if let Some(endpoint) = gateway.configured.clone() {
            let _ = gateway
                .inner
                .set(ApiGatewayGateway::for_endpoint(&gateway.sdk, &endpoint));
        }
        gateway
    }

    /// Learns the endpoint from an event's domain and stage (first event wins).
    pub fn observe(&self, domain: Option<&str>, stage: Option<&str>) {
        if let (Some(domain), Some(stage)) = (domain, stage) {
            self.inner.get_or_init(|| {
                let endpoint = management_endpoint(self.configured.as_deref(), domain, stage);
                ApiGatewayGateway::for_endpoint(&self.sdk, &endpoint)
            });
        }
    }

    pub(crate) fn get(&self) -> Result<&ApiGatewayGateway, GatewayError> {
        self.inner
            .get()
            .ok_or_else(|| GatewayError::Other(Box::new(EndpointUnknown)))
    }
}

#[async_trait]
impl ConnectionGateway for StageGateway {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), GatewayError> {
        self.get()?.post(connection_id, frame).await
    }

    async fn close(&self, connection_id: &str, reason: CloseReason) -> Result<(), GatewayError> {
        self.get()?.close(connection_id, reason).await
    }
}
