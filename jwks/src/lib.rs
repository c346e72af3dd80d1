//! An identity provider's JSON Web Key Set over HTTPS: the adapter of the core's
//! [`KeySetSource`] port that both servers use for `CHAT_JWT_JWKS_URL`. One GET, no
//! redirects (the URL is configured exactly), a 200 and at most the size the core asks
//! for, read as it arrives so a huge answer is cut off rather than buffered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chat_shared::ports::KeySetSource;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Connecting may take this long; the core bounds the whole fetch.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The key set at one URL.
#[derive(Clone)]
pub struct HttpKeySet {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    url: http::Uri,
}

impl std::fmt::Debug for HttpKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpKeySet")
            .field("url", &self.url)
            .finish()
    }
}

impl HttpKeySet {
    /// A source for `url` (an https:// URL, or http:// on loopback: checked by
    /// [`chat_shared::config::TokenConfig`]), trusting the system's root certificates.
    pub fn new(url: &str) -> Result<Self, String> {
        let url: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("no usable root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            url,
        })
    }
}

#[async_trait]
impl KeySetSource for HttpKeySet {
    async fn fetch(&self, max_bytes: usize) -> Result<Vec<u8>, String> {
        let failed = |e: &dyn std::fmt::Display| format!("GET {}: {e}", self.url);
        let request = http::Request::get(&self.url)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("chat-server/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| failed(&e))?;
        let response = self.client.request(request).await.map_err(|e| failed(&e))?;
        if response.status() != http::StatusCode::OK {
            return Err(failed(&format!("status {}", response.status())));
        }
        let too_big = || failed(&format!("over {max_bytes} bytes"));
        let announced = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > max_bytes as u64) {
            return Err(too_big());
        }
        let mut body = response.into_body();
        let mut document = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| failed(&e))?;
            if let Some(chunk) = frame.data_ref() {
                if document.len() + chunk.len() > max_bytes {
                    return Err(too_big());
                }
                document.extend_from_slice(chunk);
            }
        }
        Ok(document)
    }
}
