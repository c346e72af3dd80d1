//! The connection gateway port: frames to WebSocket connections.

use async_trait::async_trait;
use bytes::Bytes;

/// Why a post to a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The connection no longer exists (API Gateway 410, or a closed local socket).
    #[error("connection is gone")]
    Gone,
    /// Anything else; the connection may still exist.
    #[error("gateway: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Delivers frames to WebSocket connections.
#[async_trait]
pub trait ConnectionGateway: Send + Sync + 'static {
    /// Sends one text frame (JSON) to a connection.
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), GatewayError>;
    /// Sends one frame to many connections and answers with the posts that failed, by
    /// index into `connection_ids`. By default the posts run concurrently, one by one;
    /// a gateway that can reach every connection at once (the local one) does it in one go.
    async fn post_many(
        &self,
        connection_ids: &[&str],
        frame: &Bytes,
    ) -> Vec<(usize, GatewayError)> {
        let posts: Vec<(&str, &[Bytes])> = connection_ids
            .iter()
            .map(|id| (*id, std::slice::from_ref(frame)))
            .collect();
        self.post_batches(&posts).await
    }
    /// Sends each connection its frames, in order, and answers with the connections
    /// whose posts failed (by index into `posts`, with the first failure: the frames
    /// after it were not sent). By default connections are posted to concurrently, each
    /// one's frames one after another; the local gateway queues them all in one go.
    async fn post_batches(&self, posts: &[(&str, &[Bytes])]) -> Vec<(usize, GatewayError)> {
        let posts = posts.iter().map(|(id, frames)| async move {
            for frame in *frames {
                self.post(id, frame.clone()).await?;
            }
            Ok::<(), GatewayError>(())
        });
        futures_util::future::join_all(posts)
            .await
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.err().map(|e| (i, e)))
            .collect()
    }
    /// Closes a connection.
    async fn close(&self, connection_id: &str, reason: CloseReason) -> Result<(), GatewayError>;
}

/// Why the server closes a connection. A socket the server holds carries it as the
/// close code (docs/protocol.md, "Staying connected"); API Gateway's DeleteConnection
/// cannot say why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The user opened a connection beyond `max_connections_per_user`: their oldest goes.
    Replaced,
    /// The token the connection was opened with expired.
    TokenExpired,
    /// No client frame came for the idle timeout (a half-open socket, an app gone).
    Silent,
    /// The user revoked their sessions, or removed this device.
    Revoked,
}
