//! Black-box harness for the protocol suites: it drives the real server binary over real
//! sockets, exactly as a mobile or web client would (see `docs/protocol.md`).
//!
//! # Layout
//! - [`TestServer`] / [`TestServerBuilder`] (`server.rs`): spawn the server binary on `127.0.0.1:0` with
//!   a fresh SQLite file in a temp dir, read its `listening on ADDR` line, kill it on drop;
//!   [`TestServer::kill9`] and [`TestServer::restart`] for durability tests.
//! - [`jwt`]: mint valid HS256 tokens and every flavour of bad one; [`provider`]: an
//!   identity provider's keys and key set server, for RS256/ES256 tokens.
//! - [`node`]: the TypeScript SDK's npm packages, installed on first use.
//! - [`WsClient`] (`ws.rs`): a WebSocket client that keeps the frames it skipped in a buffer, so a
//!   test can wait for one frame type and still assert the others afterwards.
//! - [`Http`] (`http.rs`): a thin reqwest wrapper answering `(status, json)`, plus the few calls most
//!   tests need (create a conversation, send, read history).
//! - [`schema`]: `docs/asyncapi.yaml` and `docs/openapi.yaml` compiled; [`WsClient`] and
//!   [`Http`] check every frame and body against them.
//! - Assertion helpers (`assertions.rs`): [`assert_keys`], [`assert_ws_error`], [`assert_http_error`].

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod assertions;
pub mod emulators;
mod http;
pub mod jwt;
pub mod node;
pub mod provider;
pub mod schema;
mod server;
mod ws;

pub use assertions::*;
pub use http::*;
pub use server::*;
pub use ws::*;

/// The HTTP method type [`Http::call`] and [`Http::raw`] take.
pub use reqwest::Method;

/// The secret every test server is started with (`CHAT_JWT_SECRET`).
pub const TEST_SECRET: &str = "chat-tests-secret-4f9a1c0e7b2d48e6a3c5f1d9b7e2a6c4";

/// How long [`WsClient::recv`] and friends wait before failing the test.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the server gets to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The prefix of every variable the server reads. A test server starts with none of the
/// test process's own (a developer's `CHAT_JWT_ISSUER`, `CHAT_SQLITE_SYNC`, `CHAT_LOG`...
/// would change what a test sees): only what the harness and the test set.
const SERVER_VAR_PREFIX: &str = "CHAT_";

/// Unix time in milliseconds, the unit of every protocol timestamp.
pub fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit in i64")
}

/// Unix time in seconds, the unit of JWT claims.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// `name` made unique to this process and call (`name-PID-NANOS-N`): for user ids, tokens
/// and resource names in suites that share a deployment or an emulator.
pub fn unique(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{}-{nanos}-{n}", std::process::id())
}
