//! The Lambda glue: typed configuration, the adapters built once per process, and one
//! handler per kind of event (WebSocket route, HTTP API, DynamoDB stream). Each turns
//! its event into a call of a shared handler from `chat_shared::handlers`; the binaries
//! under `functions/` only wire these to `lambda_runtime`.
//!
//! Events are decoded leniently (every field optional): emulators omit fields AWS sends.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use chat_shared::Chat;
use chat_shared::ChatError;
use chat_shared::auth::TokenVerifier;
use chat_shared::config::{ConfigError, Limits};
use chat_shared::handlers::{self, ws::ConnectionContext};
use chat_shared::ports::{ConnectionGateway, GatewayError, SystemClock};
use chat_shared::protocol::ServerFrame;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, warn};

use crate::apigw::{ApiGatewayGateway, management_endpoint};
use crate::dynamodb::{DynamoStore, Item, message_from};
use crate::sns::{PlatformApplications, SnsPush};
use crate::tables::TableNames;

/// Everything a function reads from its environment, once, at start.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub tables: TableNames,
    pub jwt_secret: String,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub limits: Limits,
    /// `CHAT_APIGW_ENDPOINT`: the Management API endpoint, when it is not
    /// `https://{domain}/{stage}` of the event (emulators, custom domains, the fan-out).
    pub apigw_endpoint: Option<String>,
    pub push_apps: PlatformApplications,
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(ConfigError {
            name,
            value: String::new(),
            reason: "is required",
        }),
    }
}

fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl LambdaConfig {
    /// Reads `CHAT_TABLE_MAIN`, `CHAT_TABLE_MESSAGES`, `CHAT_TABLE_CONNECTIONS`,
    /// `CHAT_JWT_SECRET` (required), `CHAT_JWT_ISSUER`, `CHAT_JWT_AUDIENCE`,
    /// `CHAT_APIGW_ENDPOINT`, `CHAT_SNS_APNS_ARN`, `CHAT_SNS_APNS_SANDBOX_ARN`,
    /// `CHAT_SNS_FCM_ARN` and the limits of [`Limits::from_env`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            tables: TableNames {
                main: required("CHAT_TABLE_MAIN")?,
                messages: required("CHAT_TABLE_MESSAGES")?,
                connections: required("CHAT_TABLE_CONNECTIONS")?,
            },
            jwt_secret: required("CHAT_JWT_SECRET")?,
            jwt_issuer: optional("CHAT_JWT_ISSUER"),
            jwt_audience: optional("CHAT_JWT_AUDIENCE"),
            limits: Limits::from_env()?,
            apigw_endpoint: optional("CHAT_APIGW_ENDPOINT"),
            push_apps: PlatformApplications {
                apns: optional("CHAT_SNS_APNS_ARN"),
                apns_sandbox: optional("CHAT_SNS_APNS_SANDBOX_ARN"),
                fcm: optional("CHAT_SNS_FCM_ARN"),
            },
        })
    }
}

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
    fn new(sdk: aws_config::SdkConfig, configured: Option<String>) -> Self {
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

    fn get(&self) -> Result<&ApiGatewayGateway, GatewayError> {
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

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        self.get()?.close(connection_id).await
    }
}

/// The adapters and the service, built once per Lambda process.
pub struct Deps {
    pub chat: Chat,
    pub gateway: Arc<StageGateway>,
}

impl Deps {
    /// Loads the AWS configuration (region, credentials, endpoints from the environment)
    /// and builds the DynamoDB, API Gateway Management and SNS adapters.
    pub async fn new(config: LambdaConfig) -> Self {
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
        let gateway = Arc::new(StageGateway::new(sdk, config.apigw_endpoint));
        let chat = Chat {
            store: Arc::new(store),
            gateway: gateway.clone(),
            push: Arc::new(push),
            clock: Arc::new(SystemClock),
            limits: config.limits,
            tokens: TokenVerifier::new(config.jwt_secret, config.jwt_issuer, config.jwt_audience),
        };
        Self { chat, gateway }
    }
}

// ------------------------------------------------------------------ WebSocket routes

/// An API Gateway WebSocket proxy event, as much of it as the handlers need.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WsEvent {
    pub request_context: WsContext,
    pub query_string_parameters: Option<HashMap<String, String>>,
    pub headers: Option<HashMap<String, String>>,
    pub body: Option<String>,
    pub is_base64_encoded: bool,
}

/// The request context of a [`WsEvent`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WsContext {
    pub connection_id: Option<String>,
    pub route_key: Option<String>,
    pub event_type: Option<String>,
    pub domain_name: Option<String>,
    pub stage: Option<String>,
}

/// The route response: its body goes back to the client as one frame (the ack of a
/// send saves a PostToConnection). On `$connect`, a non-2xx status refuses the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WsResponse {
    pub status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl WsResponse {
    fn status(status_code: u16) -> Self {
        Self {
            status_code,
            body: None,
        }
    }

    fn frame(frame: Option<ServerFrame>) -> Self {
        Self {
            status_code: 200,
            body: frame.map(|f| f.to_json()),
        }
    }
}

impl WsEvent {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref().and_then(|h| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        })
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query_string_parameters
            .as_ref()
            .and_then(|q| q.get(name))
            .map(String::as_str)
    }

    /// `$connect`, `$disconnect`, or a message route.
    fn route(&self) -> &str {
        let ctx = &self.request_context;
        match (ctx.event_type.as_deref(), ctx.route_key.as_deref()) {
            (Some("CONNECT"), _) | (_, Some("$connect")) => "$connect",
            (Some("DISCONNECT"), _) | (_, Some("$disconnect")) => "$disconnect",
            (_, Some(route)) => route,
            _ => "$default",
        }
    }
}

/// Handles any WebSocket route: `$connect` (token from the `token` query parameter or
/// the `Authorization` header), `$disconnect`, and every message route.
pub async fn handle_ws(deps: &Deps, event: WsEvent) -> WsResponse {
    let ctx = &event.request_context;
    deps.gateway
        .observe(ctx.domain_name.as_deref(), ctx.stage.as_deref());
    let Some(connection_id) = ctx.connection_id.as_deref() else {
        warn!("WebSocket event without a connectionId");
        return WsResponse::status(400);
    };
    match event.route() {
        "$connect" => {
            let request = handlers::ws::ConnectRequest {
                connection_id,
                token: event.query("token"),
                authorization: event.header("authorization"),
                device_id: event.query("deviceId"),
            };
            match handlers::ws::connect(&deps.chat, request).await {
                Ok(_) => WsResponse::status(200),
                Err(e) => {
                    log_failure(&e);
                    WsResponse::status(e.code().http_status())
                }
            }
        }
        "$disconnect" => {
            if let Err(e) = handlers::ws::disconnect(&deps.chat, connection_id).await {
                log_failure(&e);
            }
            WsResponse::status(200)
        }
        _ => WsResponse::frame(message(deps, connection_id, &event).await),
    }
}

async fn message(deps: &Deps, connection_id: &str, event: &WsEvent) -> Option<ServerFrame> {
    let connection = match deps.chat.store.connection(connection_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Some(ServerFrame::error(None, None, &ChatError::Unauthorized));
        }
        Err(e) => return Some(ServerFrame::error(None, None, &e.into())),
    };
    if event.is_base64_encoded {
        return Some(ServerFrame::error(
            None,
            None,
            &ChatError::Invalid("frames must be text (UTF-8 JSON)".into()),
        ));
    }
    let ctx = ConnectionContext::new(connection.connection_id, connection.user_id);
    handlers::ws::frame(&deps.chat, &ctx, event.body.as_deref().unwrap_or("")).await
}

fn log_failure(e: &ChatError) {
    if let ChatError::Store(inner) = e {
        error!(error = %inner, source = ?std::error::Error::source(inner), "request failed");
    }
}

// ------------------------------------------------------------------ HTTP API

/// Handles an HTTP API request through the shared router.
pub async fn handle_http(
    deps: &Deps,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let (parts, body) = request.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(t) => Bytes::from(t),
        lambda_http::Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    let response =
        handlers::http::handle(&deps.chat, http::Request::from_parts(parts, bytes)).await;
    let (parts, body) = response.into_parts();
    let body = match String::from_utf8(body.to_vec()) {
        Ok(text) if text.is_empty() => lambda_http::Body::Empty,
        Ok(text) => lambda_http::Body::Text(text),
        Err(e) => lambda_http::Body::Binary(e.into_bytes()),
    };
    lambda_http::Response::from_parts(parts, body)
}

// ------------------------------------------------------------------ DynamoDB stream

/// A DynamoDB stream batch, as much of it as the fan-out needs.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct StreamEvent {
    #[serde(rename = "Records")]
    pub records: Vec<StreamRecord>,
}

/// One stream record.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct StreamRecord {
    #[serde(rename = "eventName")]
    pub event_name: Option<String>,
    pub dynamodb: StreamChange,
}

/// The change of a stream record.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct StreamChange {
    #[serde(rename = "NewImage")]
    pub new_image: Option<Value>,
    #[serde(rename = "SequenceNumber")]
    pub sequence_number: Option<String>,
}

/// The partial batch response: the first record that failed (Lambda retries from it).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub batch_item_failures: Vec<BatchItemFailure>,
    /// The sequence numbers of the records skipped as poison (logged and counted, not
    /// sent back: Lambda reads only the failures).
    #[serde(skip)]
    pub skipped: Vec<String>,
}

/// One failed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    pub item_identifier: String,
}

/// A stream image that is not a message item.
#[derive(Debug, thiserror::Error)]
#[error("stream record image is not a message: {0}")]
pub struct BadImage(String);

/// Decodes a DynamoDB-JSON image (`{"seq":{"N":"1"},...}`) into an item.
pub fn image_to_item(image: &Value) -> Result<Item, BadImage> {
    let obj = image
        .as_object()
        .ok_or_else(|| BadImage("not an object".into()))?;
    obj.iter()
        .map(|(k, v)| Ok((k.clone(), attribute(v)?)))
        .collect()
}

fn attribute(v: &Value) -> Result<AttributeValue, BadImage> {
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| BadImage(format!("not a typed value: {v}")))?;
    let (tag, inner) = obj.iter().next().expect("one entry");
    let text = || {
        inner
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| BadImage(format!("{tag} is not a string")))
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text()?),
        "N" => AttributeValue::N(text()?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().unwrap_or(false)),
        "NULL" => AttributeValue::Null(true),
        "M" => AttributeValue::M(image_to_item(inner)?),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .ok_or_else(|| BadImage("L is not a list".into()))?
                .iter()
                .map(attribute)
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(BadImage(format!("unsupported type {other}"))),
    })
}

/// Why one stream record was not fanned out.
enum RecordError {
    /// The record can never be processed (no image, or an image that is not a message):
    /// retrying cannot help, so it is skipped.
    Poison(String),
    /// Processing failed for now (the store or a service): the batch resumes from it.
    Transient(String),
}

async fn fan_out_record(chat: &Chat, record: &StreamRecord) -> Result<(), RecordError> {
    let image = record.dynamodb.new_image.as_ref().ok_or_else(|| {
        RecordError::Poison("no NewImage (the stream must be NEW_IMAGE)".to_owned())
    })?;
    let item = image_to_item(image).map_err(|e| RecordError::Poison(e.to_string()))?;
    let message = message_from(&item).map_err(|e| RecordError::Poison(e.to_string()))?;
    chat.fan_out(&message).await.map_err(|e| {
        log_failure(&e);
        RecordError::Transient(e.to_string())
    })
}

/// Fans out a stream batch in order. Only `INSERT`s of message items matter (the trigger
/// filters to them; others are skipped).
///
/// A record that can never be processed (poison: no image, or not a message) is skipped
/// with an error log and the `FanoutSkippedRecords` metric: retrying it would only hold
/// the shard back, and its message, if any, is stored and reaches clients by sync.
///
/// On the first other failure, that record's sequence number is reported and the rest
/// of the batch is left for the retry: Lambda resumes from the lowest reported record,
/// so nothing is lost or reordered. A redelivered record re-posts its frames (clients
/// de-duplicate by seq) but never re-pushes. A record that keeps failing goes, after
/// the mapping's retries, to its `OnFailure` queue.
pub async fn handle_stream(chat: &Chat, event: StreamEvent) -> BatchResponse {
    let mut response = BatchResponse::default();
    for record in &event.records {
        if record.event_name.as_deref() != Some("INSERT") {
            continue;
        }
        let id = record.dynamodb.sequence_number.clone().unwrap_or_default();
        match fan_out_record(chat, record).await {
            Ok(()) => {}
            Err(RecordError::Poison(reason)) => {
                error!(sequence_number = %id, %reason, "poison stream record skipped, not fanned out");
                response.skipped.push(id);
            }
            Err(RecordError::Transient(reason)) => {
                error!(sequence_number = %id, %reason, "fan-out failed; the batch resumes from this record");
                response.batch_item_failures.push(BatchItemFailure {
                    item_identifier: id,
                });
                break;
            }
        }
    }
    if !response.skipped.is_empty() {
        println!("{}", skipped_metric(response.skipped.len()));
    }
    response
}

/// The name of the metric of skipped (poison) stream records, in the `Chat` namespace.
pub const SKIPPED_METRIC: &str = "FanoutSkippedRecords";

/// One CloudWatch embedded-metric-format log line counting skipped records (CloudWatch
/// turns it into the metric; no API call), by function name.
fn skipped_metric(count: usize) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let function = optional("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".to_owned());
    serde_json::json!({
        "_aws": {
            "Timestamp": now,
            "CloudWatchMetrics": [{
                "Namespace": "Chat",
                "Dimensions": [["FunctionName"]],
                "Metrics": [{ "Name": SKIPPED_METRIC, "Unit": "Count" }],
            }],
        },
        "FunctionName": function,
        SKIPPED_METRIC: count,
    })
    .to_string()
}

// ------------------------------------------------------------------ dead-letter replay

/// The record the fan-out's `OnFailure` queue gets for a batch Lambda gave up on: where
/// the records are in the stream, not the records (as much of it as the replay needs).
#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetter {
    #[serde(rename = "DDBStreamBatchInfo")]
    pub batch: StreamBatchInfo,
}

/// The stream range of a [`DeadLetter`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamBatchInfo {
    pub stream_arn: String,
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    #[serde(default)]
    pub batch_size: Option<usize>,
}

/// What a replay did: how many records it read back and the fan-out's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replayed {
    pub records: usize,
    pub batch_item_failures: Vec<BatchItemFailure>,
    pub skipped: Vec<String>,
}

/// A replay that could not read its records.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading the stream failed: {0}")]
    Stream(String),
    #[error("the stream no longer holds sequence number {0} (records are kept 24 h)")]
    Trimmed(String),
}

/// A replay that left a record failing: the dead letter must be kept.
#[derive(Debug, thiserror::Error)]
#[error("record {sequence_number} failed again ({records} read back): keep the message")]
pub struct FailedAgain {
    pub sequence_number: String,
    pub records: usize,
}

/// The replay function's adapters: the fan-out's, and a client of the stream.
pub struct ReplayDeps {
    pub deps: Deps,
    pub streams: aws_sdk_dynamodbstreams::Client,
}

impl ReplayDeps {
    /// As [`Deps::new`], plus the DynamoDB Streams client.
    pub async fn new(config: LambdaConfig) -> Self {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
        Self {
            deps: Deps::with_clients(config, dynamodb, sns, sdk),
            streams,
        }
    }
}

/// Handles one message of the fan-out's dead-letter queue: replays its range, and
/// fails if a record fails again (the operator keeps the message and retries later).
pub async fn handle_dead_letter(
    chat: &Chat,
    streams: &aws_sdk_dynamodbstreams::Client,
    letter: DeadLetter,
) -> Result<Replayed, Box<dyn std::error::Error + Send + Sync>> {
    let done = replay(chat, streams, &letter.batch).await?;
    if let Some(failed) = done.batch_item_failures.first() {
        return Err(Box::new(FailedAgain {
            sequence_number: failed.item_identifier.clone(),
            records: done.records,
        }));
    }
    tracing::info!(
        records = done.records,
        skipped = done.skipped.len(),
        "dead letter replayed"
    );
    Ok(done)
}

/// Orders decimal sequence numbers (of different lengths) by value.
fn sequence_key(s: &str) -> (usize, &str) {
    let digits = s.trim_start_matches('0');
    (digits.len(), digits)
}

/// Reads the records of a dead-lettered range back from the stream (it keeps them 24 h)
/// and fans them out again, in order. Safe to repeat: frames are posted again (clients
/// drop them by seq), pushes never twice (their claims hold).
pub async fn replay(
    chat: &Chat,
    streams: &aws_sdk_dynamodbstreams::Client,
    info: &StreamBatchInfo,
) -> Result<Replayed, ReplayError> {
    use aws_sdk_dynamodbstreams::types::ShardIteratorType;
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(&info.stream_arn)
        .shard_id(&info.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .sequence_number(&info.start_sequence_number)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(s)
                if s.is_trimmed_data_access_exception() || s.is_resource_not_found_exception() =>
            {
                ReplayError::Trimmed(info.start_sequence_number.clone())
            }
            _ => ReplayError::Stream(format!("{e:?}")),
        })?;
    let end = sequence_key(&info.end_sequence_number);
    let mut records = Vec::new();
    let wanted = info.batch_size.unwrap_or(usize::MAX);
    let mut next = iterator.shard_iterator;
    // An open shard's pages can be empty before its last records: a few are allowed.
    let mut empty_pages = 0;
    'read: while let Some(it) = next.take() {
        let out = streams
            .get_records()
            .shard_iterator(it)
            .send()
            .await
            .map_err(|e| ReplayError::Stream(format!("{e:?}")))?;
        let page = out.records.unwrap_or_default();
        empty_pages = if page.is_empty() { empty_pages + 1 } else { 0 };
        if empty_pages == 3 {
            break;
        }
        for r in page {
            let record = stream_record(&r);
            let seq = record.dynamodb.sequence_number.clone().unwrap_or_default();
            if sequence_key(&seq) > end {
                break 'read;
            }
            records.push(record);
            if records.len() == wanted {
                break 'read;
            }
        }
        next = out.next_shard_iterator;
    }
    let count = records.len();
    let response = handle_stream(chat, StreamEvent { records }).await;
    Ok(Replayed {
        records: count,
        batch_item_failures: response.batch_item_failures,
        skipped: response.skipped,
    })
}

/// A record of the Streams API as Lambda hands it to the function.
pub fn stream_record(r: &aws_sdk_dynamodbstreams::types::Record) -> StreamRecord {
    let change = r.dynamodb.as_ref();
    StreamRecord {
        event_name: r.event_name.as_ref().map(|e| e.as_str().to_owned()),
        dynamodb: StreamChange {
            new_image: change.and_then(|c| c.new_image.as_ref()).map(stream_image),
            sequence_number: change.and_then(|c| c.sequence_number.clone()),
        },
    }
}

/// A Streams API image as DynamoDB JSON (`{"seq":{"N":"1"}}`).
pub fn stream_image(m: &HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), stream_value(v)))
            .collect(),
    )
}

fn stream_value(v: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as V;
    use serde_json::json;
    match v {
        V::S(s) => json!({ "S": s }),
        V::N(n) => json!({ "N": n }),
        V::Bool(b) => json!({ "BOOL": b }),
        V::Null(_) => json!({ "NULL": true }),
        V::M(m) => json!({ "M": stream_image(m) }),
        V::L(l) => json!({ "L": l.iter().map(stream_value).collect::<Vec<_>>() }),
        V::Ss(l) => json!({ "SS": l }),
        V::Ns(l) => json!({ "NS": l }),
        // Binary values (and any new type) have no use here: kept as a marker the
        // decoder rejects, so such an image is poison, not a panic.
        other => json!({ "UNSUPPORTED": format!("{other:?}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skipped_metric_is_one_embedded_metric_format_line() {
        let line = skipped_metric(3);
        assert!(!line.contains('\n'), "one log line");
        let v: Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Chat");
        assert_eq!(directive["Metrics"][0]["Name"], SKIPPED_METRIC);
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        // every dimension named is a member of the line, and so is the metric
        for name in directive["Dimensions"][0].as_array().unwrap() {
            assert!(v[name.as_str().unwrap()].is_string(), "{name}");
        }
        assert_eq!(v[SKIPPED_METRIC], 3);
    }

    #[test]
    fn sequence_numbers_are_ordered_by_value() {
        assert!(sequence_key("9") < sequence_key("10"));
        assert!(sequence_key("000100") == sequence_key("100"));
        assert!(sequence_key("4900000000000000000123") < sequence_key("50000000000000000000001"));
    }
}
