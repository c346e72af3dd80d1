//! The Lambda cold-start proxy: each function (the `chat-lambda` binary of the release
//! profile, as `sam build` ships it, with the function's `CHAT_HANDLER`)
//! runs as a fresh process against a minimal local Lambda Runtime API, with the
//! environment Lambda and template.yaml give it and DynamoDB Local as its store, and we
//! time process spawn -> its first `next` request (init: configuration read, SDK clients
//! built) and spawn -> the first event's response posted (a real event, really handled).
//!
//! The same HTTP server also stands in for the API Gateway Management API
//! (`POST|GET|DELETE /{stage}/@connections/{id}`: always 200), so the functions that post
//! frames (fan-out, presence) do the whole round trip.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chat_shared::auth::TokenVerifier;
use chat_shared::ids::UserId;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The Runtime API version prefix of every path.
const API: &str = "/2018-06-01/runtime";

/// What a request to the local server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeRequest {
    /// `GET /2018-06-01/runtime/invocation/next`
    Next,
    /// `POST /2018-06-01/runtime/invocation/{id}/response`
    Response {
        request_id: String,
    },
    /// `POST /2018-06-01/runtime/invocation/{id}/error`
    Error {
        request_id: String,
    },
    /// `POST /2018-06-01/runtime/init/error`
    InitError,
    /// The Management API: `POST|GET|DELETE /{stage}/@connections/{id}`.
    Connection {
        method: String,
        connection_id: String,
    },
    Unknown,
}

/// Routes a request by method and path (the query string, if any, is ignored).
pub fn route(method: &str, path: &str) -> RuntimeRequest {
    let path = path.split('?').next().unwrap_or("");
    if let Some(rest) = path.strip_prefix(API) {
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        return match (method, parts.as_slice()) {
            ("GET", ["invocation", "next"]) => RuntimeRequest::Next,
            ("POST", ["invocation", id, "response"]) if !id.is_empty() => {
                RuntimeRequest::Response {
                    request_id: (*id).to_owned(),
                }
            }
            ("POST", ["invocation", id, "error"]) if !id.is_empty() => RuntimeRequest::Error {
                request_id: (*id).to_owned(),
            },
            ("POST", ["init", "error"]) => RuntimeRequest::InitError,
            _ => RuntimeRequest::Unknown,
        };
    }
    match path.split_once("/@connections/") {
        Some((_, id)) if !id.is_empty() && !id.contains('/') => RuntimeRequest::Connection {
            method: method.to_owned(),
            connection_id: id.to_owned(),
        },
        _ => RuntimeRequest::Unknown,
    }
}

/// The headers Lambda sends with an event on `next`.
pub fn event_headers(
    request_id: &str,
    deadline_epoch_ms: u128,
    function_arn: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("lambda-runtime-aws-request-id", request_id.into()),
        ("lambda-runtime-deadline-ms", deadline_epoch_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", function_arn.into()),
        (
            "lambda-runtime-trace-id",
            format!(
                "Root=1-{:08x}-{:0>24};Parent={:0>16};Sampled=0",
                deadline_epoch_ms / 1000 % 0x1_0000_0000,
                request_id
                    .replace('-', "")
                    .chars()
                    .take(24)
                    .collect::<String>(),
                "0"
            ),
        ),
    ]
}

/// What the function did, in order, as seen by the server.
#[derive(Debug, Clone)]
pub enum Mark {
    Next(Instant),
    Response {
        request_id: String,
        at: Instant,
        body: Bytes,
        error: bool,
    },
    InitError(Bytes),
}

struct ServerState {
    events: Mutex<VecDeque<(String, String)>>,
    marks: mpsc::UnboundedSender<Mark>,
    function_arn: Mutex<String>,
}

async fn handle(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    match route(method.as_str(), uri.path()) {
        RuntimeRequest::Next => {
            let _ = state.marks.send(Mark::Next(now));
            let event = state.events.lock().unwrap().pop_front();
            let Some((request_id, payload)) = event else {
                // No more events for this process: hold the poll until it is killed.
                std::future::pending::<()>().await;
                unreachable!()
            };
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
                + 10_000;
            let arn = state.function_arn.lock().unwrap().clone();
            let mut headers = HeaderMap::new();
            for (name, value) in event_headers(&request_id, deadline, &arn) {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
            (StatusCode::OK, headers, payload).into_response()
        }
        RuntimeRequest::Response { request_id } | RuntimeRequest::Error { request_id } => {
            let error = uri.path().ends_with("/error");
            let _ = state.marks.send(Mark::Response {
                request_id,
                at: now,
                body,
                error,
            });
            (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
        }
        RuntimeRequest::InitError => {
            let _ = state.marks.send(Mark::InitError(body));
            (StatusCode::ACCEPTED, "{\"status\":\"OK\"}").into_response()
        }
        RuntimeRequest::Connection { method, .. } if method == "GET" => (
            StatusCode::OK,
            "{\"connectedAt\":\"2026-11-24T10:00:00Z\",\"identity\":{\"sourceIp\":\"203.0.113.10\"}}",
        )
            .into_response(),
        RuntimeRequest::Connection { .. } => StatusCode::OK.into_response(),
        RuntimeRequest::Unknown => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The local Runtime API (and Management API) server.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    state: Arc<ServerState>,
    marks: mpsc::UnboundedReceiver<Mark>,
}

impl RuntimeApi {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(ServerState {
            events: Mutex::new(VecDeque::new()),
            marks: tx,
            function_arn: Mutex::new(String::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            marks: rx,
        })
    }

    fn prepare(&mut self, function: &str, events: Vec<(String, String)>) {
        while self.marks.try_recv().is_ok() {}
        *self.state.function_arn.lock().unwrap() =
            format!("arn:aws:lambda:us-east-1:123456789012:function:{function}");
        *self.state.events.lock().unwrap() = events.into();
    }

    async fn mark(&mut self, until: Instant) -> anyhow::Result<Mark> {
        match tokio::time::timeout_at(until.into(), self.marks.recv()).await {
            Ok(Some(mark)) => Ok(mark),
            Ok(None) => bail!("the runtime API server stopped"),
            Err(_) => bail!("timed out waiting for the function"),
        }
    }
}

/// One cold start.
#[derive(Debug, Clone)]
pub struct Run {
    /// Spawn -> first `next`.
    pub init: Duration,
    /// Spawn -> the first event's response posted.
    pub first_event: Duration,
    /// The second event, from its `next` to its response (the process warm).
    pub warm_event: Duration,
    /// What the first event was answered: the route response's status and frame type.
    pub answer: String,
    /// The first event's response as posted.
    pub first_body: Bytes,
}

/// The events of one run of a function: its measured first event and a second, warm one.
pub struct Events {
    pub first: Value,
    pub warm: Value,
}

/// Everything the functions need to find: the tables and the conversation to talk in.
pub struct Fixture {
    pub secret: String,
    pub conversation: Option<String>,
    pub run: usize,
}

const CONNECT: &str = include_str!("../../tests/fixtures/apigw-ws-connect.json");
const DISCONNECT: &str = include_str!("../../tests/fixtures/apigw-ws-disconnect.json");
const SEND: &str = include_str!("../../tests/fixtures/apigw-ws-send.json");
const STREAM: &str = include_str!("../../tests/fixtures/dynamodb-stream-insert.json");
/// alice's connection in the fixtures.
const ALICE_CONNECTION: &str = "BZ5XvdRdIAMCJuQ=";
const BOB_CONNECTION: &str = "bob-conn=";

fn token(secret: &str, user: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    TokenVerifier::new(secret, None, None).issue(&UserId::parse(user).unwrap(), now, 3600)
}

fn connect_event(secret: &str, user: &str, connection: &str) -> Value {
    let text = CONNECT
        .replace("__TOKEN__", &token(secret, user))
        .replace(ALICE_CONNECTION, connection);
    serde_json::from_str(&text).expect("the connect fixture is JSON")
}

/// A message route event on alice's connection carrying `body`.
fn frame_event(route: &str, body: Value) -> Value {
    let mut event: Value = serde_json::from_str(SEND).expect("the send fixture is JSON");
    event["requestContext"]["routeKey"] = route.into();
    event["body"] = body.to_string().into();
    event
}

fn http_event(secret: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "authorization": format!("Bearer {}", token(secret, "alice")),
            "content-type": "application/json",
            "host": "abcdef1234.execute-api.us-east-1.amazonaws.com"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": "chat-bench"
            },
            "requestId": "cold-http",
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795514400000u64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

/// How long to leave before a run of a function, where the run would otherwise time
/// something else than a start: a disconnect within a second of its user's last
/// presence change waits out the presence window before announcing `offline`
/// (docs/protocol.md, "Presence").
pub fn pause_before(function: &str) -> Duration {
    match function {
        "chat-disconnect" => Duration::from_millis(1_100),
        _ => Duration::ZERO,
    }
}

/// The first and warm events of `function`; `None` when it is not one we know.
pub fn events(function: &str, f: &Fixture) -> Option<Events> {
    let conversation = f.conversation.clone().unwrap_or_default();
    let id = |n: u32| format!("cold-{}-{n}", f.run);
    let send = |cmid: String| {
        let mut e: Value = serde_json::from_str(&SEND.replace("__CONVERSATION__", &conversation))
            .expect("the send fixture is JSON");
        let mut body: Value = serde_json::from_str(e["body"].as_str().unwrap_or("{}")).ok()?;
        body["clientMessageId"] = cmid.into();
        e["body"] = body.to_string().into();
        Some(e)
    };
    let on_conversation = |action: &str, extra: Value| {
        let mut body = json!({"action": action, "requestId": "r1", "conversationId": conversation});
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        frame_event(action, body)
    };
    let (first, warm) = match function {
        "chat-http" => (
            http_event(
                &f.secret,
                "POST",
                "/v1/conversations",
                Some(json!({"type": "direct", "members": ["bob"]})),
            ),
            http_event(&f.secret, "GET", "/v1/conversations", None),
        ),
        // alice on her fixture connection; the warm event puts bob online for the fan-out
        "chat-connect" => (
            connect_event(&f.secret, "alice", ALICE_CONNECTION),
            connect_event(&f.secret, "bob", BOB_CONNECTION),
        ),
        "chat-send" => (send(id(1))?, send(id(2))?),
        "chat-read" => (
            on_conversation("read", json!({"upToSeq": 1})),
            on_conversation("read", json!({"upToSeq": 1})),
        ),
        "chat-delivered" => (
            on_conversation("delivered", json!({"upToSeq": 1})),
            on_conversation("delivered", json!({"upToSeq": 1})),
        ),
        "chat-typing" => (
            on_conversation("typing", json!({"isTyping": true})),
            on_conversation("typing", json!({"isTyping": false})),
        ),
        "chat-heartbeat" => (
            frame_event(
                "heartbeat",
                json!({"action": "heartbeat", "requestId": "r1"}),
            ),
            frame_event(
                "heartbeat",
                json!({"action": "heartbeat", "requestId": "r2"}),
            ),
        ),
        "chat-default" => (
            frame_event("$default", json!({"action": "shout", "requestId": "r1"})),
            frame_event("$default", json!({"action": "shout", "requestId": "r2"})),
        ),
        "chat-fanout" => {
            let batch: Value =
                serde_json::from_str(&STREAM.replace("__CONVERSATION__", &conversation))
                    .expect("the stream fixture is JSON");
            // only the INSERT: the REMOVE is skipped anyway
            let mut one = batch.clone();
            one["Records"] = json!([batch["Records"][0].clone()]);
            (one.clone(), one)
        }
        // the fixture connection goes; the warm event brings it back for the next run,
        // as a user new to presence (announced at once, no window to wait out). The
        // runs are a presence window apart ([`pause_before`]).
        "chat-disconnect" => (
            serde_json::from_str(DISCONNECT).expect("the disconnect fixture is JSON"),
            connect_event(&f.secret, &format!("leaver-{}", f.run), ALICE_CONNECTION),
        ),
        // a dead letter of a stream that is not there: answered with an error
        "chat-replay" => {
            let letter = json!({"DDBStreamBatchInfo": {
                "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/none/stream/2026-11-24T10:00:00.000",
                "shardId": "shardId-00000001795514400000-00000000",
                "startSequenceNumber": "100",
                "endSequenceNumber": "100",
                "batchSize": 1
            }});
            (letter.clone(), letter)
        }
        _ => return None,
    };
    Some(Events { first, warm })
}

/// A short description of a response: the status and the frame's type or code.
pub fn answer(body: &[u8], error: bool) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return if error { "error".into() } else { "?".into() };
    };
    if error {
        let message: String = v["errorMessage"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(40)
            .collect();
        return format!("error: {message}");
    }
    // an HTTP API response: its status says it
    if v.get("headers").is_some() || v.get("multiValueHeaders").is_some() {
        return v["statusCode"]
            .as_u64()
            .map_or("?".into(), |s| s.to_string());
    }
    if let Some(failures) = v["batchItemFailures"].as_array() {
        return format!("{} batch failures", failures.len());
    }
    let status = v["statusCode"].as_u64().map(|s| s.to_string());
    let frame = v["body"]
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .map(|b| {
            let kind = b["type"].as_str().unwrap_or("");
            match b["code"].as_str() {
                Some(code) => format!("{kind} {code}"),
                None => kind.to_owned(),
            }
        });
    match (status, frame) {
        (Some(s), Some(f)) if !f.is_empty() => format!("{s} {f}"),
        (Some(s), _) => s,
        _ => "?".into(),
    }
}

/// Where the functions find their tables and emulators.
pub struct Environment {
    pub tables: [(String, String); 3],
    pub dynamodb_endpoint: String,
    pub secret: String,
    /// Settings beyond the template's defaults (`--env KEY=VALUE`), e.g. a key set.
    pub extra: Vec<(String, String)>,
}

/// The environment Lambda and template.yaml (its defaults) give a function.
fn function_env(function: &str, env: &Environment, runtime: SocketAddr) -> Vec<(String, String)> {
    let local = format!("http://{runtime}");
    let mut vars: Vec<(String, String)> = [
        // what Lambda sets
        ("AWS_LAMBDA_RUNTIME_API", runtime.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
        ("CHAT_HANDLER", handler_of(function).to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/24/[$LATEST]cold".into(),
        ),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_SESSION_TOKEN", "test".into()),
        ("_HANDLER", "bootstrap".into()),
        ("LAMBDA_TASK_ROOT", "/var/task".into()),
        ("TZ", ":UTC".into()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
        // the emulators in place of the AWS endpoints
        ("AWS_ENDPOINT_URL_DYNAMODB", env.dynamodb_endpoint.clone()),
        (
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
            env.dynamodb_endpoint.clone(),
        ),
        ("AWS_ENDPOINT_URL_SNS", local.clone()),
        // template.yaml's Globals, with its parameter defaults
        ("CHAT_JWT_SECRET", env.secret.clone()),
        ("CHAT_JWT_ISSUER", String::new()),
        ("CHAT_JWT_AUDIENCE", String::new()),
        ("CHAT_APIGW_ENDPOINT", format!("{local}/prod")),
        ("CHAT_SNS_APNS_ARN", String::new()),
        ("CHAT_SNS_APNS_SANDBOX_ARN", String::new()),
        ("CHAT_SNS_FCM_ARN", String::new()),
        ("CHAT_RATE_LIMIT_PER_MIN", "100".into()),
        ("CHAT_RETENTION_DAYS", "365".into()),
        ("CHAT_MAX_GROUP_MEMBERS", "1000".into()),
        ("CHAT_EVENT_FANOUT_MAX_MEMBERS", "100".into()),
        ("CHAT_MAX_CONNECTIONS_PER_USER", "10".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    vars.extend(env.tables.iter().cloned());
    vars.retain(|(k, _)| !env.extra.iter().any(|(key, _)| key == k));
    vars.extend(env.extra.iter().cloned());
    vars
}

/// Runs `function` (its `binary`) once: spawn, serve its two events, time them, kill it.
pub async fn run_once(
    api: &mut RuntimeApi,
    function: &str,
    binary: &Path,
    env: &Environment,
    events: Events,
    log: &Path,
) -> anyhow::Result<Run> {
    let function = function.to_owned();
    api.prepare(
        &function,
        vec![
            ("cold-1".into(), events.first.to_string()),
            ("cold-2".into(), events.warm.to_string()),
        ],
    );
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(function_env(&function, env, api.addr))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true);
    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("spawn {}", binary.display()))?;
    let until = spawned + Duration::from_secs(20);
    let result = async {
        let (mut init, mut first, mut warm_next, mut answer) = (None, None, None, None);
        let mut first_body = Bytes::new();
        loop {
            match api.mark(until).await? {
                Mark::Next(at) if init.is_none() => init = Some(at - spawned),
                Mark::Next(at) => warm_next = Some(at),
                Mark::Response {
                    request_id,
                    at,
                    body,
                    error,
                } if request_id == "cold-1" => {
                    first = Some(at - spawned);
                    answer = Some(self::answer(&body, error));
                    first_body = body;
                }
                Mark::Response { at, .. } => {
                    let (Some(init), Some(first), Some(next), Some(answer)) =
                        (init, first, warm_next, answer)
                    else {
                        bail!("responses out of order");
                    };
                    return Ok(Run {
                        init,
                        first_event: first,
                        warm_event: at - next,
                        answer,
                        first_body,
                    });
                }
                Mark::InitError(body) => {
                    bail!("init error: {}", String::from_utf8_lossy(&body))
                }
            }
        }
    }
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    result.with_context(|| format!("{function} (its output: {})", log.display()))
}

/// The functions to start, each with the binary that runs it: `dir`'s `chat-lambda`
/// (every function's), in [`order`].
pub fn function_binaries(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let binary = dir.join("chat-lambda");
    if !binary.is_file() {
        bail!(
            "no chat-lambda in {}: build it (`cargo build --release -p chat-functions`)",
            dir.display()
        );
    }
    Ok(FUNCTIONS
        .iter()
        .map(|name| ((*name).to_owned(), binary.clone()))
        .collect())
}

/// The `CHAT_HANDLER` of a function, as `template.yaml` sets it.
fn handler_of(function: &str) -> &'static str {
    match function {
        "chat-http" => "http",
        "chat-fanout" => "stream",
        "chat-replay" => "replay",
        _ => "websocket",
    }
}

/// The functions, in the order they run: the conversation exists before anything is
/// sent in it, alice and bob are connected before frames and the fan-out, disconnect
/// comes last.
const FUNCTIONS: [&str; 11] = [
    "chat-http",
    "chat-connect",
    "chat-send",
    "chat-read",
    "chat-delivered",
    "chat-typing",
    "chat-heartbeat",
    "chat-default",
    "chat-fanout",
    "chat-replay",
    "chat-disconnect",
];

/// Where a function comes in [`FUNCTIONS`].
pub fn order(name: &str) -> usize {
    FUNCTIONS
        .iter()
        .position(|n| *n == name)
        .unwrap_or(usize::MAX)
}

/// The conversation id in chat-http's answer to `POST /v1/conversations`.
pub fn conversation_of(http_response: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(http_response).ok()?;
    let body: Value = serde_json::from_str(v["body"].as_str()?).ok()?;
    body["conversationId"].as_str().map(str::to_owned)
}

/// The timings of every run of one function.
#[derive(Debug, Clone)]
pub struct FunctionResult {
    pub name: String,
    pub binary_bytes: u64,
    pub runs: Vec<Run>,
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

impl FunctionResult {
    pub fn init(&self, p: f64) -> Duration {
        percentile(self.runs.iter().map(|r| r.init).collect(), p)
    }
    pub fn first(&self, p: f64) -> Duration {
        percentile(self.runs.iter().map(|r| r.first_event).collect(), p)
    }
    pub fn warm(&self, p: f64) -> Duration {
        percentile(self.runs.iter().map(|r| r.warm_event).collect(), p)
    }
    pub fn answers(&self) -> String {
        let mut seen = BTreeMap::new();
        for r in &self.runs {
            *seen.entry(r.answer.clone()).or_insert(0) += 1;
        }
        seen.into_iter()
            .map(|(a, n)| {
                if n == self.runs.len() {
                    a
                } else {
                    format!("{a} ({n}x)")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An arm64 package: the bootstrap and its zip.
#[derive(Debug, Clone)]
pub struct Package {
    pub function: String,
    pub bootstrap_bytes: u64,
    pub zip_bytes: u64,
    pub built: SystemTime,
}

/// The size of `file` zipped alone as `bootstrap` (deflate), as `sam deploy` uploads it.
pub fn zip_size(file: &Path) -> anyhow::Result<u64> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import io,sys,zipfile\n\
             b=io.BytesIO()\n\
             z=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED)\n\
             z.write(sys.argv[1],'bootstrap')\n\
             z.close()\n\
             print(len(b.getvalue()))",
        )
        .arg(file)
        .output()
        .context("run python3 to zip")?;
    anyhow::ensure!(
        out.status.success(),
        "python3 failed to zip {}",
        file.display()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// The arm64 packages cargo-lambda left in `<target>/lambda/<function>/bootstrap` (what
/// `sam build` copies into `.aws-sam/build/*Function/`).
pub fn arm64_packages(build_dir: &Path) -> anyhow::Result<Vec<Package>> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(build_dir) else {
        return Ok(found);
    };
    for entry in entries {
        let dir = entry?.path();
        let bootstrap = dir.join("bootstrap");
        let Ok(meta) = std::fs::metadata(&bootstrap) else {
            continue;
        };
        found.push(Package {
            function: dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned(),
            bootstrap_bytes: meta.len(),
            zip_bytes: zip_size(&bootstrap)?,
            built: meta.modified()?,
        });
    }
    found.sort_by(|a, b| a.function.cmp(&b.function));
    Ok(found)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// The docs/bench-results.md section.
pub fn report(results: &[FunctionResult], packages: &[Package], notes: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Each function (`chat-lambda` of `cargo build --release -p chat-functions`, x86_64 \
         here) runs as a fresh process against a local Lambda Runtime API with the \
         environment Lambda and template.yaml give it, DynamoDB Local as its store and a \
         stub Management API. **init** = spawn -> its first `GET .../invocation/next` \
         (configuration read, AWS SDK clients built); **first event** = spawn -> the \
         response to a real event (handled end to end against DynamoDB Local) posted; \
         **warm** = a second event, `next` -> response. Each function first runs once \
         unmeasured (the page cache holds its binary, DynamoDB Local's JIT is warm). {notes}\n"
    );
    let runs = results.first().map_or(0, |r| r.runs.len());
    let _ = writeln!(
        out,
        "| function | init p50 / max, ms | first event p50 / max, ms | warm p50, ms | answered | binary (x86_64) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---:|");
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {} / {} | {} / {} | {} | {} | {} |",
            r.name,
            ms(r.init(50.0)),
            ms(r.init(100.0)),
            ms(r.first(50.0)),
            ms(r.first(100.0)),
            ms(r.warm(50.0)),
            r.answers(),
            mb(r.binary_bytes)
        );
    }
    let worst = results
        .iter()
        .map(|r| r.init(100.0))
        .max()
        .unwrap_or_default();
    let worst_p50 = results
        .iter()
        .map(|r| r.init(50.0))
        .max()
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n{runs} runs per function. Goal: init with SDK clients <= 60 ms: worst p50 {} ms \
         (**{}**), worst max {} ms ({}).\n",
        ms(worst_p50),
        if worst_p50 <= Duration::from_millis(60) {
            "met"
        } else {
            "missed"
        },
        ms(worst),
        if worst <= Duration::from_millis(60) {
            "within the goal too"
        } else {
            "over it: single slow starts on this shared, loaded machine"
        }
    );
    if packages.is_empty() {
        let _ = writeln!(
            out,
            "arm64 packages: none found under target/lambda (run `infra/build-arm64.sh` or \
             `cargo lambda build --release --arm64 -p chat-functions`)."
        );
    } else {
        let _ = writeln!(
            out,
            "arm64 packages as `sam build` makes them (`cargo lambda build --release --arm64`, \
             zig as the linker, release profile, stripped), each zipped alone with deflate \
             as uploaded:\n"
        );
        let _ = writeln!(out, "| function | bootstrap (arm64) | zip |");
        let _ = writeln!(out, "|---|---:|---:|");
        for p in packages {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                p.function,
                mb(p.bootstrap_bytes),
                mb(p.zip_bytes)
            );
        }
        let largest = packages.iter().map(|p| p.zip_bytes).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "\nGoal: each zip <= 5 MB: largest {}: **{}**.",
            mb(largest),
            if largest <= 5_000_000 {
                "met"
            } else {
                "missed"
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_api_paths_are_routed() {
        assert_eq!(
            route("GET", "/2018-06-01/runtime/invocation/next"),
            RuntimeRequest::Next
        );
        assert_eq!(
            route("POST", "/2018-06-01/runtime/invocation/abc-1/response"),
            RuntimeRequest::Response {
                request_id: "abc-1".into()
            }
        );
        assert_eq!(
            route("POST", "/2018-06-01/runtime/invocation/abc-1/error"),
            RuntimeRequest::Error {
                request_id: "abc-1".into()
            }
        );
        assert_eq!(
            route("POST", "/2018-06-01/runtime/init/error"),
            RuntimeRequest::InitError
        );
        assert_eq!(
            route("POST", "/prod/@connections/bob-conn%3D"),
            RuntimeRequest::Connection {
                method: "POST".into(),
                connection_id: "bob-conn%3D".into()
            }
        );
    }

    #[test]
    fn wrong_methods_and_paths_are_unknown() {
        for (method, path) in [
            ("POST", "/2018-06-01/runtime/invocation/next"),
            ("GET", "/2018-06-01/runtime/invocation/abc/response"),
            ("POST", "/2018-06-01/runtime/invocation//response"),
            ("POST", "/2018-06-01/runtime/invocation/abc/other"),
            ("GET", "/2018-06-01/runtime/init/error"),
            ("POST", "/prod/@connections/"),
            ("GET", "/"),
        ] {
            assert_eq!(
                route(method, path),
                RuntimeRequest::Unknown,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn the_event_headers_are_those_lambda_sends() {
        let headers: BTreeMap<_, _> = event_headers("req-1", 1_795_514_410_000, "arn:x")
            .into_iter()
            .collect();
        assert_eq!(headers["lambda-runtime-aws-request-id"], "req-1");
        assert_eq!(headers["lambda-runtime-deadline-ms"], "1795514410000");
        assert_eq!(headers["lambda-runtime-invoked-function-arn"], "arn:x");
        assert!(headers["lambda-runtime-trace-id"].starts_with("Root=1-"));
    }

    #[test]
    fn answers_are_summarised() {
        let ack = json!({"statusCode": 200, "body": "{\"type\":\"message.ack\",\"seq\":1}"});
        assert_eq!(answer(ack.to_string().as_bytes(), false), "200 message.ack");
        let err = json!({"statusCode": 200, "body": "{\"type\":\"error\",\"code\":\"NOT_FOUND\"}"});
        assert_eq!(
            answer(err.to_string().as_bytes(), false),
            "200 error NOT_FOUND"
        );
        assert_eq!(
            answer(br#"{"batchItemFailures":[]}"#, false),
            "0 batch failures"
        );
        assert_eq!(
            answer(
                br#"{"errorType":"x","errorMessage":"reading the stream failed"}"#,
                true
            ),
            "error: reading the stream failed"
        );
        let http = json!({"statusCode": 201, "headers": {}, "body": "{\"type\":\"direct\"}"});
        assert_eq!(answer(http.to_string().as_bytes(), false), "201");
        let created = json!({"statusCode": 201, "body": "{\"conversationId\":\"c_1\"}"});
        assert_eq!(
            conversation_of(created.to_string().as_bytes()).as_deref(),
            Some("c_1")
        );
    }

    #[test]
    fn every_function_has_events_and_a_place_in_the_order() {
        let f = Fixture {
            secret: "s".repeat(16),
            conversation: Some("c_1".into()),
            run: 3,
        };
        for name in FUNCTIONS {
            assert!(events(name, &f).is_some(), "{name}");
            assert!(order(name) < usize::MAX, "{name}");
        }
        let send = events("chat-send", &f).unwrap();
        let body: Value = serde_json::from_str(send.first["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["conversationId"], "c_1");
        assert_eq!(body["clientMessageId"], "cold-3-1");
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(percentile(v.clone(), 50.0), Duration::from_millis(10));
        assert_eq!(percentile(v, 100.0), Duration::from_millis(20));
    }
}
