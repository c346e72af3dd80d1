//! The Lambda glue: typed configuration, the adapters built once per process, and one
//! handler per kind of event (WebSocket route, HTTP API, DynamoDB stream). Each turns
//! its event into a call of a shared handler from `chat_shared::handlers`; the binaries
//! under `functions/` only wire these to `lambda_runtime`.
//!
//! Events are decoded leniently (every field optional): emulators omit fields AWS sends.
//!
//! # Layout
//! - `config`: [`LambdaConfig`]; `stage`: the [`StageGateway`]; [`Deps`] here.
//! - One file per kind of event: `ws` (WebSocket routes), `http` (the HTTP API),
//!   `stream` (the DynamoDB stream's fan-out), `replay` (the dead-letter replay),
//!   `sweep` (the schedule that closes silent connections).

mod config;
mod http;
mod replay;
mod stage;
mod stream;
mod sweep;
mod ws;

pub use crate::metrics::{FAILED_METRIC, FAILED_POSTS_METRIC, SKIPPED_METRIC};
pub use config::LambdaConfig;
pub(crate) use config::optional;
pub use http::handle_http;
pub use replay::{
    DeadLetter, FailedAgain, ReplayDeps, ReplayError, Replayed, StreamBatchInfo,
    handle_dead_letter, replay, stream_image, stream_record,
};
pub use stage::{EndpointUnknown, StageGateway};
pub use stream::{
    BadImage, BatchItemFailure, BatchResponse, StreamChange, StreamEvent, StreamRecord,
    handle_stream, image_to_item,
};
pub use sweep::{SweepEvent, SweepReport, handle_sweep};
pub use ws::{ONE_WAY_ROUTES, WsContext, WsEvent, WsResponse, handle_ws};

use std::sync::Arc;

use tracing::error;

use chat_jwks::HttpKeySet;
use chat_shared::auth::{KeySet, SecretSet, TokenVerifier};
use chat_shared::config::TokenConfig;
use chat_shared::ports::SystemClock;
use chat_shared::service::{AttachmentPorts, Ports};
use chat_shared::{Chat, ChatError};

use crate::dynamodb::DynamoStore;
use crate::s3::S3Blobs;
use crate::secrets::ManagedSecret;
use crate::sns::SnsPush;

/// The adapters and the service, built once per Lambda process.
pub struct Deps {
    pub chat: Chat,
    pub gateway: Arc<StageGateway>,
    /// The store the service runs on, for what only the glue reads (the sweeper's
    /// users with connections).
    pub store: Arc<DynamoStore>,
    /// How long a connection may stay silent before the sweeper closes it.
    pub idle_timeout: std::time::Duration,
}

impl Deps {
    /// Loads the AWS configuration (region, credentials, endpoints from the environment)
    /// and builds the DynamoDB, API Gateway Management, SNS and (with a bucket) S3
    /// adapters; installs the metrics recorder (flush it after each event:
    /// [`crate::metrics::flushed`]).
    pub async fn new(config: LambdaConfig) -> Self {
        crate::metrics::install();
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        Self::with_clients(config, dynamodb, sns, sdk)
    }

    /// The same from given clients (tests point each at its emulator); `sdk` configures
    /// the Management API client.
    pub fn with_clients(
        config: LambdaConfig,
        dynamodb: aws_sdk_dynamodb::Client,
        sns: aws_sdk_sns::Client,
        sdk: aws_config::SdkConfig,
    ) -> Self {
        let store = DynamoStore::new(dynamodb, config.tables);
        let push = SnsPush::new(sns, config.push_apps);
        let attachments = config.attachment_bucket.map(|bucket| AttachmentPorts {
            store: Arc::new(store.clone()),
            blobs: Arc::new(S3Blobs::new(s3_client(&sdk), bucket)),
        });
        let secrets = config.secret_arn.map(|arn| {
            let client = aws_sdk_secretsmanager::Client::new(&sdk);
            SecretSet::from_source(Arc::new(ManagedSecret::new(client, arn)))
        });
        let tokens = token_verifier(&config.tokens, secrets);
        let gateway = Arc::new(StageGateway::new(sdk, config.apigw_endpoint));
        let store = Arc::new(store);
        let idle_timeout = config.idle_timeout;
        let chat = Chat::new(
            Ports {
                store: store.clone(),
                gateway: gateway.clone(),
                push: Arc::new(push),
                clock: Arc::new(SystemClock),
                attachments,
                direct: Some(store.clone()),
            },
            config.limits,
            tokens,
        );
        Self {
            chat,
            gateway,
            store,
            idle_timeout,
        }
    }
}

/// The verifier of `tokens` or of `secrets` held by Secrets Manager, each read when a token
/// first needs it (only the functions that verify tokens read them, and only they may),
/// and its key set (if any), fetched over HTTPS when first needed.
///
/// # Panics
/// When there is neither a secret nor a key set ([`LambdaConfig::from_env`] refuses that),
/// or the HTTPS client cannot be built (no TLS roots: the function cannot work).
fn token_verifier(tokens: &TokenConfig, secrets: Option<Arc<SecretSet>>) -> TokenVerifier {
    let key_set = tokens.jwks_url.as_deref().map(|url| {
        let source = HttpKeySet::new(url).unwrap_or_else(|e| panic!("CHAT_JWT_JWKS_URL: {e}"));
        KeySet::new(Arc::new(source))
    });
    tokens
        .verifier(key_set, secrets)
        .expect("a secret or a key set (checked when the configuration was read)")
}

/// An S3 client of `sdk`'s configuration; with an endpoint set (an emulator), addressing
/// buckets by path, which a local endpoint needs.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

pub(crate) fn log_failure(e: &ChatError) {
    if let ChatError::Store(inner) = e {
        error!(error = %inner, source = ?std::error::Error::source(inner), "request failed");
    }
}
