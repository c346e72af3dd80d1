//! The API Gateway Management API adapter of the [`ConnectionGateway`] port.
//!
//! `GoneException` (410) means exactly that connection is gone: the service then deletes
//! that connection and nothing else. `LimitExceededException` is retried with jittered
//! exponential backoff. Frames over the API's payload limit are refused before posting.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;
use chat_shared::ports::{CloseReason, ConnectionGateway, GatewayError};

/// PostToConnection accepts at most 128 KiB.
pub const MAX_POST_BYTES: usize = 128 * 1024;
/// Connections posted to at once by one invocation. A message to a group of 1,000 with
/// 10 connections each is 10,000 posts; each one in flight holds an HTTPS connection (a
/// file descriptor; a sandbox has 1,024) and counts against the account's Management
/// API rate. At ~20 ms a post, 128 at a time deliver the 10,000 in about 1.6 s, well
/// within the fan-out's 60 s timeout.
pub const MAX_POSTS_IN_FLIGHT: usize = 128;
/// Attempts for a throttled post.
const MAX_ATTEMPTS: u32 = 5;

/// A frame over [`MAX_POST_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("frame of {0} bytes exceeds the 128 KiB PostToConnection limit")]
pub struct FrameTooLarge(pub usize);

/// Posts to WebSocket connections through the Management API of one stage.
#[derive(Clone, Debug)]
pub struct ApiGatewayGateway {
    client: Client,
}

/// The Management API endpoint of a stage: `CHAT_APIGW_ENDPOINT` when configured
/// (emulators, custom domains), else `https://{domain}/{stage}` from the event.
pub fn management_endpoint(configured: Option<&str>, domain: &str, stage: &str) -> String {
    match configured {
        Some(e) if !e.is_empty() => e.trim_end_matches('/').to_owned(),
        _ => format!("https://{domain}/{stage}"),
    }
}

impl ApiGatewayGateway {
    /// A gateway over a client already pointed at the stage's endpoint.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// A gateway for `endpoint` with the shared SDK configuration.
    pub fn for_endpoint(sdk: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let conf = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build();
        Self::new(Client::from_conf(conf))
    }
}

fn jitter(attempt: u32) -> Duration {
    let base = 20u64 << attempt.min(5);
    Duration::from_millis(base + rand::random::<u64>() % base)
}

/// Runs `f` on every item, at most `limit` at once; the items for which it failed, in
/// no particular order.
async fn bounded<T, E, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Vec<(T, E)>
where
    T: Clone,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(items)
        .map(|item| {
            let run = f(item.clone());
            async move { run.await.err().map(|e| (item, e)) }
        })
        .buffer_unordered(limit)
        .filter_map(std::future::ready)
        .collect()
        .await
}

#[async_trait]
impl ConnectionGateway for ApiGatewayGateway {
    /// Each connection's frames in order, [`MAX_POSTS_IN_FLIGHT`] connections at a time.
    /// Posts that failed other than by the connection being gone are counted
    /// ([`FAILED_POSTS_METRIC`](crate::metrics::FAILED_POSTS_METRIC)).
    async fn post_batches(&self, posts: &[(&str, &[Bytes])]) -> Vec<(usize, GatewayError)> {
        let failed = bounded(
            (0..posts.len()).collect(),
            MAX_POSTS_IN_FLIGHT,
            |i| async move {
                let (id, frames) = posts[i];
                for frame in frames {
                    self.post(id, frame.clone()).await?;
                }
                Ok::<(), GatewayError>(())
            },
        )
        .await;
        let not_gone = failed
            .iter()
            .filter(|(_, e)| !matches!(e, GatewayError::Gone))
            .count();
        if not_gone > 0 {
            crate::metrics::emit(crate::metrics::FAILED_POSTS_METRIC, not_gone);
        }
        failed
    }

    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), GatewayError> {
        if frame.len() > MAX_POST_BYTES {
            return Err(GatewayError::Other(Box::new(FrameTooLarge(frame.len()))));
        }
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .post_to_connection()
                .connection_id(connection_id)
                .data(Blob::new(frame.to_vec()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            match err.as_service_error() {
                Some(PostToConnectionError::GoneException(_)) => return Err(GatewayError::Gone),
                Some(PostToConnectionError::LimitExceededException(_))
                    if attempt + 1 < MAX_ATTEMPTS =>
                {
                    attempt += 1;
                    tokio::time::sleep(jitter(attempt)).await;
                }
                _ => return Err(GatewayError::Other(Box::new(err))),
            }
        }
    }

    /// DeleteConnection: API Gateway closes the socket without a reason clients see.
    async fn close(&self, connection_id: &str, _: CloseReason) -> Result<(), GatewayError> {
        match self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteConnectionError::GoneException(_))
                ) =>
            {
                Err(GatewayError::Gone)
            }
            Err(e) => Err(GatewayError::Other(Box::new(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn posts_run_at_most_the_bound_at_once_and_every_failure_is_answered() {
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let failed = bounded((0..1000).collect(), 16, |i: usize| {
            let (now, most) = (&now, &most);
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                if i % 100 == 7 { Err(i) } else { Ok(()) }
            }
        })
        .await;
        assert_eq!(most.load(Ordering::SeqCst), 16, "never more than the bound");
        let mut failed: Vec<usize> = failed
            .into_iter()
            .map(|(i, e)| {
                assert_eq!(i, e);
                i
            })
            .collect();
        failed.sort_unstable();
        assert_eq!(failed, (0..10).map(|k| k * 100 + 7).collect::<Vec<_>>());
    }

    #[test]
    fn the_endpoint_comes_from_configuration_before_the_event() {
        assert_eq!(
            management_endpoint(None, "abc.execute-api.eu-west-1.amazonaws.com", "prod"),
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
        );
        assert_eq!(
            management_endpoint(
                Some("http://127.0.0.1:4566/_aws/execute-api/abc/prod/"),
                "x",
                "y"
            ),
            "http://127.0.0.1:4566/_aws/execute-api/abc/prod"
        );
        assert_eq!(management_endpoint(Some(""), "d", "s"), "https://d/s");
    }

    #[tokio::test]
    async fn frames_over_the_post_limit_are_refused_before_any_request() {
        let conf = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(aws_sdk_apigatewaymanagement::config::BehaviorVersion::latest())
            .region(aws_sdk_apigatewaymanagement::config::Region::new(
                "us-east-1",
            ))
            // Nothing listens here: a request would fail with a connection error instead.
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let gateway = ApiGatewayGateway::new(Client::from_conf(conf));
        let err = gateway
            .post("c1", Bytes::from(vec![b'x'; MAX_POST_BYTES + 1]))
            .await
            .unwrap_err();
        let GatewayError::Other(e) = err else {
            panic!("not gone")
        };
        assert!(e.downcast_ref::<FrameTooLarge>().is_some());
    }
}
