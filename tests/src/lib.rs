//! Black-box harness for the protocol suites: it drives the real server binary over real
//! sockets, exactly as a mobile or web client would (see `docs/protocol.md`).
//!
//! # Layout
//! - [`TestServer`] / [`TestServerBuilder`]: spawn the server binary on `127.0.0.1:0` with
//!   a fresh SQLite file in a temp dir, read its `listening on ADDR` line, kill it on drop;
//!   [`TestServer::kill9`] and [`TestServer::restart`] for durability tests.
//! - [`jwt`]: mint valid HS256 tokens and every flavour of bad one; [`provider`]: an
//!   identity provider's keys and key set server, for RS256/ES256 tokens.
//! - [`node`]: the TypeScript SDK's npm packages, installed on first use.
//! - [`WsClient`]: a WebSocket client that keeps the frames it skipped in a buffer, so a
//!   test can wait for one frame type and still assert the others afterwards.
//! - [`Http`]: a thin reqwest wrapper answering `(status, json)`, plus the few calls most
//!   tests need (create a conversation, send, read history).
//! - Assertion helpers: [`assert_keys`], [`assert_ws_error`], [`assert_http_error`].

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

pub mod emulators;
pub mod jwt;
pub mod node;
pub mod provider;

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

// ---------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------

/// Starts a [`TestServer`] with environment overrides.
#[derive(Debug, Clone)]
pub struct TestServerBuilder {
    bin: PathBuf,
    /// `--listen`; `127.0.0.1:0` unless a test asks for another address.
    listen: String,
    /// `Some(value)` sets the variable, `None` removes it (e.g. to test a default).
    env: Vec<(String, Option<String>)>,
    /// Shell commands run before the server replaces the shell (`ulimit`, `umask`).
    setup: Option<String>,
}

impl TestServerBuilder {
    /// Sets an environment variable for the server, e.g. `CHAT_RATE_LIMIT_PER_MIN`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), Some(value.to_owned())));
        self
    }

    /// Leaves a variable unset, including the ones the harness sets by default
    /// (`CHAT_DEV_ENDPOINTS`).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.to_owned(), None));
        self
    }

    /// Starts the server from `sh -c "SETUP; exec SERVER"`, e.g. `ulimit -n 64`: it
    /// inherits the limits and umask the commands set (also after a restart).
    pub fn shell_setup(mut self, setup: &str) -> Self {
        self.setup = Some(setup.to_owned());
        self
    }

    /// Listens on `addr` (`--listen`) instead of `127.0.0.1:0`; clients still connect
    /// over loopback when it is an unspecified address such as `0.0.0.0:0`.
    pub fn listen(mut self, addr: &str) -> Self {
        addr.clone_into(&mut self.listen);
        self
    }

    fn launch(&self, env: Vec<(String, Option<String>)>) -> Launch {
        Launch {
            bin: self.bin.clone(),
            listen: self.listen.clone(),
            env,
            setup: self.setup.clone(),
        }
    }

    /// The harness defaults, then the test's own settings.
    fn full_env(&self) -> Vec<(String, Option<String>)> {
        let mut env = vec![
            ("CHAT_JWT_SECRET".to_owned(), Some(TEST_SECRET.to_owned())),
            ("CHAT_DEV_ENDPOINTS".to_owned(), Some("1".to_owned())),
        ];
        env.extend(self.env.iter().cloned());
        env
    }

    /// Spawns the server expecting it to refuse to start: waits for it to exit (failing
    /// the test if it prints `listening on` or still runs after the start timeout) and
    /// answers its exit status and stderr.
    pub fn start_refused(self) -> (std::process::ExitStatus, String) {
        let dir = tempfile::tempdir().expect("create a temp dir for the database");
        let mut command =
            server_command(&self.launch(self.full_env()), &dir.path().join("chat.db"));
        command.stderr(Stdio::piped());
        let output = run_with_timeout(command, START_TIMEOUT);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout.contains("listening on"),
            "the server started although it should have refused: {stdout}"
        );
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Spawns the server and waits until it listens.
    pub async fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("create a temp dir for the database");
        let db = dir.path().join("chat.db");
        let launch = self.launch(self.full_env());
        let (child, addr) = spawn_server(&launch, &db).await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client");
        let reach = reachable(addr);
        TestServer {
            launch,
            db,
            child: Some(child),
            addr,
            ws_base: format!("ws://{reach}/ws"),
            http_base: format!("http://{reach}"),
            secret: TEST_SECRET.to_owned(),
            http,
            _dir: Some(dir),
        }
    }
}

/// One running server: a `chat-local` process with its own database (killed on drop), or
/// a deployment reached at its endpoints ([`TestServer::remote`]).
#[derive(Debug)]
pub struct TestServer {
    /// How the process is started (again after a restart); empty for a remote one.
    launch: Launch,
    db: PathBuf,
    child: Option<Child>,
    addr: SocketAddr,
    /// The WebSocket URL without query (`ws://ADDR/ws`, or a stage URL).
    ws_base: String,
    /// The HTTP API base URL (`http://ADDR`, or a deployed API's).
    http_base: String,
    /// The secret tokens are signed with.
    secret: String,
    http: reqwest::Client,
    /// Holds the database directory for the server's whole life (and across restarts).
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A builder for a server run from `bin` (tests pass `env!("CARGO_BIN_EXE_chat-local")`).
    pub fn builder(bin: impl AsRef<Path>) -> TestServerBuilder {
        TestServerBuilder {
            bin: bin.as_ref().to_path_buf(),
            listen: "127.0.0.1:0".to_owned(),
            env: Vec::new(),
            setup: None,
        }
    }

    /// Starts `bin` with the default test configuration.
    pub async fn start(bin: impl AsRef<Path>) -> TestServer {
        Self::builder(bin).start().await
    }

    /// A deployment already running elsewhere (e.g. the stack on a local AWS emulator):
    /// its WebSocket URL (no query), HTTP API base URL and token secret. Nothing is
    /// started or stopped; `kill9`/`restart` are not available.
    pub fn remote(ws_base: &str, http_base: &str, secret: &str) -> TestServer {
        TestServer {
            launch: Launch::default(),
            db: PathBuf::new(),
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ws_base: ws_base.trim_end_matches('/').to_owned(),
            http_base: http_base.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("build the HTTP client"),
            _dir: None,
        }
    }

    /// Whether this is a deployment reached by its endpoints rather than a local process.
    pub fn is_remote(&self) -> bool {
        self._dir.is_none()
    }

    /// The address the server currently listens on (it changes on [`Self::restart`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SQLite file, kept across restarts.
    pub fn db_path(&self) -> &Path {
        &self.db
    }

    /// `http://ADDR{path}` (the HTTP API base URL and `path`).
    pub fn http_url(&self, path: &str) -> String {
        format!("{}{path}", self.http_base)
    }

    /// `ws://ADDR/ws?{query}` (the WebSocket URL with `query`).
    pub fn ws_url(&self, query: &str) -> String {
        format!("{}?{query}", self.ws_base)
    }

    /// A valid token for `user`, signed with the server's secret.
    pub fn token(&self, user: &str) -> String {
        jwt::sign_hs256(&self.secret, &jwt::header(), &jwt::claims(user))
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the server to exit; returns whether it
    /// exited successfully, or `None` if it was still running (it is then killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<bool> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status.success());
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (no shutdown hook runs) and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same database file (killing it first if it still
    /// runs). It gets a new port: clients must connect again.
    pub async fn restart(&mut self) {
        assert!(!self.is_remote(), "a remote deployment cannot be restarted");
        self.kill9();
        let (child, addr) = spawn_server(&self.launch, &self.db).await;
        self.child = Some(child);
        self.addr = addr;
        let reach = reachable(addr);
        self.ws_base = format!("ws://{reach}/ws");
        self.http_base = format!("http://{reach}");
    }

    /// An HTTP client authenticated as `user`.
    pub fn http(&self, user: &str) -> Http {
        self.http_with_token(Some(self.token(user)))
    }

    /// An HTTP client sending `token` as Bearer (or no Authorization header at all).
    pub fn http_with_token(&self, token: Option<String>) -> Http {
        Http {
            client: self.http.clone(),
            base: self.http_base.clone(),
            token,
        }
    }

    /// An HTTP client without credentials (for `/health`, `/dev/...` and 401 checks).
    pub fn http_anon(&self) -> Http {
        self.http_with_token(None)
    }

    /// Opens a WebSocket for `user` without `deviceId` and waits until the server answers
    /// a heartbeat (so the connection is registered for fan-out when this returns).
    pub async fn connect(&self, user: &str) -> WsClient {
        let query = format!("v=1&token={}", self.token(user));
        self.connect_ready(&query, None, user.to_owned()).await
    }

    /// Opens a WebSocket for `user` on `device`, ready for fan-out (see [`Self::connect`]).
    pub async fn connect_device(&self, user: &str, device: &str) -> WsClient {
        let query = format!("v=1&token={}&deviceId={device}", self.token(user));
        self.connect_ready(&query, None, format!("{user}/{device}"))
            .await
    }

    async fn connect_ready(&self, query: &str, bearer: Option<&str>, label: String) -> WsClient {
        let mut ws = match self.try_connect(query, bearer).await {
            Ok(ws) => ws,
            Err(e) => panic!("[{label}] WebSocket handshake refused: {e}"),
        };
        ws.label = label;
        let ack = ws.request(json!({"action": "heartbeat"})).await;
        assert_eq!(
            ack["type"], "heartbeat.ack",
            "[{}] first heartbeat answered with {ack}",
            ws.label
        );
        ws
    }

    /// Attempts a handshake on `/ws?{query}`, optionally with `Authorization: Bearer`.
    /// No heartbeat is sent: the caller gets the connection as the server opened it.
    pub async fn try_connect(
        &self,
        query: &str,
        bearer: Option<&str>,
    ) -> Result<WsClient, ConnectError> {
        let mut request = self
            .ws_url(query)
            .into_client_request()
            .expect("a valid WebSocket URL");
        if let Some(token) = bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .expect("a token is a valid header value");
            request.headers_mut().insert("Authorization", value);
        }
        let connecting = tokio_tungstenite::connect_async_with_config(request, None, true);
        match tokio::time::timeout(RECV_TIMEOUT, connecting).await {
            Err(_) => Err(ConnectError {
                status: None,
                detail: "handshake timed out".to_owned(),
            }),
            Ok(Err(tungstenite::Error::Http(response))) => Err(ConnectError {
                status: Some(response.status().as_u16()),
                detail: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            }),
            Ok(Err(e)) => Err(ConnectError {
                status: None,
                detail: e.to_string(),
            }),
            Ok(Ok((stream, _response))) => Ok(WsClient {
                label: "ws".to_owned(),
                stream,
                buffer: VecDeque::new(),
                ignored: Vec::new(),
                // A deployment on AWS delivers at least once (docs/protocol.md section 3,
                // "Fan-out and order"): its clients drop repeats as an app does. The local
                // server delivers once, and its suites see every frame it sends.
                seen_entries: self.is_remote().then(std::collections::HashSet::new),
                next_request: 0,
            }),
        }
    }

    /// Opens a WebSocket on `/ws?{query}`, optionally with `Authorization: Bearer`, ready
    /// for fan-out like [`Self::connect`] (failing the test if the handshake is refused).
    pub async fn connect_with(&self, query: &str, bearer: Option<&str>, label: &str) -> WsClient {
        self.connect_ready(query, bearer, label.to_owned()).await
    }

    /// Opens a WebSocket authenticated only by `Authorization: Bearer` (no `token` query).
    pub async fn connect_bearer(&self, user: &str, device: &str) -> WsClient {
        let query = format!("v=1&deviceId={device}");
        let token = self.token(user);
        self.connect_ready(&query, Some(&token), format!("{user}/{device}"))
            .await
    }

    /// `GET /dev/push-outbox`, the local server's record of pushes (oldest first).
    pub async fn push_outbox(&self) -> Vec<Value> {
        let (status, body) = self.http_anon().get("/dev/push-outbox").await;
        assert_eq!(status, 200, "GET /dev/push-outbox answered {body}");
        body["pushes"]
            .as_array()
            .unwrap_or_else(|| panic!("push outbox without `pushes` array: {body}"))
            .clone()
    }

    /// The server's clock now: the `serverTime` of a `POST /v1/sync` (the same clock
    /// that stamps messages, conversations and connections).
    pub async fn server_time(&self) -> i64 {
        let (status, body) = self
            .http("clock-reader")
            .post("/v1/sync", &json!({"conversations": []}))
            .await;
        assert_eq!(status, 200, "POST /v1/sync for the server time: {body}");
        body["serverTime"]
            .as_i64()
            .unwrap_or_else(|| panic!("sync without an integer serverTime: {body}"))
    }

    /// Returns once the server's clock reads later than `ms`, so whatever the test does
    /// next is stamped after it (the explicit form of "sleep a few milliseconds").
    pub async fn wait_for_clock_past(&self, ms: i64) {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let now = self.server_time().await;
            if now > ms {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server clock stayed at {now}, not past {ms}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Writes `head` (request line and headers, each ending in CRLF, without the empty
    /// line) and `body` on a fresh TCP connection, as they are: for requests a normal
    /// client will not make (a non-GET upgrade, a chunked body). Answers the status and
    /// the body (JSON as in [`Http::call`]), read by its `Content-Length`.
    pub async fn raw_request(&self, head: &str, body: &[u8]) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(reachable(self.addr))
            .await
            .expect("connect to the server");
        let mut request = format!("{head}Host: {}\r\n\r\n", reachable(self.addr)).into_bytes();
        request.extend_from_slice(body);
        // The server may answer (and close) before the whole body is read: a refused
        // write is fine, the answer is what counts.
        let _ = stream.write_all(&request).await;
        let mut received = Vec::new();
        let deadline = Instant::now() + RECV_TIMEOUT;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = find(&received, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).into_owned();
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| {
                        v.trim().parse::<usize>().expect("a Content-Length")
                    });
                if received.len() >= end + 4 + length {
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("no status line in {head:?}"));
                    return (status, body_value(&received[end + 4..end + 4 + length]));
                }
            }
            let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no full answer within {RECV_TIMEOUT:?}: {received:?}"))
                .expect("read the answer");
            assert!(
                read > 0,
                "the server closed before a full answer: {:?}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&buf[..read]);
        }
    }

    /// Returns once the server's clock has moved on from its reading at the call: what the
    /// test did before is stamped earlier than anything it does after.
    pub async fn tick(&self) {
        let now = self.server_time().await;
        self.wait_for_clock_past(now).await;
    }

    /// Polls the push outbox until `pred` holds for it, failing after [`RECV_TIMEOUT`]
    /// (pushes may be sent after the ack).
    pub async fn wait_for_pushes(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let pushes = self.push_outbox().await;
            if pred(&pushes) {
                return pushes;
            }
            if Instant::now() >= deadline {
                panic!("timed out waiting for pushes: {what}; outbox: {pushes:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Why a WebSocket handshake did not open a connection.
#[derive(Debug)]
pub struct ConnectError {
    /// The HTTP status the server refused the upgrade with, if it answered one.
    pub status: Option<u16>,
    /// The refusal body or the transport error, for failure messages.
    pub detail: String,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status}: {}", self.detail),
            None => write!(f, "{}", self.detail),
        }
    }
}

/// The index of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where a client reaches a server bound to `addr`: loopback for an unspecified address.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// The server command: `--listen`, `--db`, a clean `CHAT_*` environment plus `env`.
fn server_command(launch: &Launch, db: &Path) -> Command {
    let mut command = match &launch.setup {
        Some(setup) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("{setup}; exec \"$0\" \"$@\""))
                .arg(&launch.bin);
            sh
        }
        None => Command::new(&launch.bin),
    };
    command
        .arg("--listen")
        .arg(&launch.listen)
        .arg("--db")
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    remove_inherited_server_vars(&mut command);
    for (key, value) in &launch.env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
}

/// How a server process is started: its binary, `--listen`, environment and shell setup.
#[derive(Debug, Clone, Default)]
struct Launch {
    bin: PathBuf,
    listen: String,
    env: Vec<(String, Option<String>)>,
    setup: Option<String>,
}

/// Runs `command` to its end, killing it (and failing the test) after `timeout`.
fn run_with_timeout(mut command: Command, timeout: Duration) -> std::process::Output {
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => {
                return child
                    .wait_with_output()
                    .expect("read the output of an exited process");
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let output = child.wait_with_output();
                panic!("{command:?} still ran after {timeout:?}: {output:?}");
            }
        }
    }
}

async fn spawn_server(launch: &Launch, db: &Path) -> (Child, SocketAddr) {
    let mut command = server_command(launch, db);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", launch.bin.display()));
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || watch_stdout(stdout, tx));
    match tokio::time::timeout(START_TIMEOUT, rx).await {
        Ok(Ok(addr)) => (child, addr),
        Ok(Err(_)) => {
            let status = child.wait();
            panic!("the server exited before printing `listening on ADDR`: {status:?}")
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server printed no `listening on ADDR` line within {START_TIMEOUT:?}")
        }
    }
}

/// A command running `bin` (e.g. `chat-local token USER`) with none of the test
/// process's `CHAT_*` variables: only what the test sets.
pub fn clean_command(bin: impl AsRef<Path>) -> Command {
    let mut command = Command::new(bin.as_ref());
    remove_inherited_server_vars(&mut command);
    command
}

/// Removes from `command` every inherited variable whose name starts with `CHAT_`, so
/// the server sees only what the test sets.
fn remove_inherited_server_vars(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(SERVER_VAR_PREFIX) {
            command.env_remove(key);
        }
    }
}

/// Reads the server's stdout: reports the address of the `listening on ADDR` line, then
/// keeps draining (forwarding anything else to stderr) so the server never blocks on a
/// full pipe.
fn watch_stdout(stdout: ChildStdout, tx: tokio::sync::oneshot::Sender<SocketAddr>) {
    let mut tx = Some(tx);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match (addr, tx.take()) {
            (Some(addr), Some(tx)) => {
                let _ = tx.send(addr);
            }
            (_, unused) => {
                tx = unused;
                eprintln!("[server stdout] {line}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------------------

/// Why a `try_` receive returned without a frame.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing matching arrived in time.
    Timeout,
    /// The connection is closed or broken.
    Closed(String),
}

/// A protocol client over one WebSocket connection.
///
/// Every frame read from the socket that a call did not ask for goes to a buffer that
/// later calls search first, so events can be asserted in any order. `presence` frames
/// arrive asynchronously: [`WsClient::recv`] never returns them (they stay buffered for
/// `recv_type("presence")`).
pub struct WsClient {
    label: String,
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    buffer: VecDeque<Value>,
    /// Frame types dropped on read, for load tests that would otherwise buffer thousands.
    ignored: Vec<String>,
    /// With a deployment that may deliver an entry twice, the `(conversationId, seq)` of
    /// each `message.new` read: a repeat is dropped, as a client drops it by seq.
    seen_entries: Option<std::collections::HashSet<(String, u64)>>,
    next_request: u64,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("label", &self.label)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

fn frame_type(frame: &Value) -> &str {
    frame["type"].as_str().unwrap_or("")
}

impl WsClient {
    /// The `user/device` name used in failure messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Renames the client in failure messages.
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.label = label.into();
    }

    /// Drops frames of `frame_type` as they are read instead of buffering them.
    pub fn ignore_type(&mut self, frame_type: &str) {
        self.ignored.push(frame_type.to_owned());
        self.buffer.retain(|f| self::frame_type(f) != frame_type);
    }

    /// A fresh `requestId`, unique on this connection.
    pub fn next_request_id(&mut self) -> String {
        self.next_request += 1;
        format!("req-{}", self.next_request)
    }

    /// Sends one text frame as is (for malformed input).
    pub async fn send_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if let Err(e) = self.try_send_text(text).await {
            panic!("[{}] cannot send a frame: {e}", self.label);
        }
    }

    /// Sends one text frame, reporting a broken connection instead of panicking.
    pub async fn try_send_text(&mut self, text: impl Into<String>) -> Result<(), String> {
        let text: String = text.into();
        self.stream
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends one binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        if let Err(e) = self.stream.send(Message::binary(bytes)).await {
            panic!("[{}] cannot send a binary frame: {e}", self.label);
        }
    }

    /// Sends `value` serialized as one text frame.
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(value.to_string()).await;
    }

    /// Sends `value`, reporting a broken connection instead of panicking.
    pub async fn try_send_json(&mut self, value: &Value) -> Result<(), String> {
        self.try_send_text(value.to_string()).await
    }

    /// Reads the next JSON frame from the socket (not the buffer) before `deadline`.
    async fn read_frame(&mut self, deadline: Instant) -> Result<Value, RecvError> {
        loop {
            let next = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Err(RecvError::Timeout),
                Ok(next) => next,
            };
            let text = match next {
                None => return Err(RecvError::Closed("end of stream".to_owned())),
                Some(Err(e)) => return Err(RecvError::Closed(e.to_string())),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(RecvError::Closed(format!("close frame {frame:?}")));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    panic!("[{}] unexpected binary frame: {bytes:?}", self.label)
                }
                Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
            };
            let value: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("[{}] non-JSON frame ({e}): {text}", self.label));
            if self.ignored.iter().any(|t| t == frame_type(&value)) {
                continue;
            }
            if let Some(seen) = &mut self.seen_entries
                && frame_type(&value) == "message.new"
                && let (Some(conversation), Some(seq)) =
                    (value["conversationId"].as_str(), value["seq"].as_u64())
                && !seen.insert((conversation.to_owned(), seq))
            {
                continue;
            }
            return Ok(value);
        }
    }

    /// Reads (and drops) frames until the server's close frame; returns its code, or
    /// `None` when the stream ended without one or nothing came within `timeout`.
    pub async fn recv_close(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) | Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Sends a text frame whose payload is `bytes` as they are, valid UTF-8 or not.
    pub async fn send_raw_text(&mut self, bytes: Vec<u8>) {
        use tokio_tungstenite::tungstenite::protocol::frame::{
            Frame,
            coding::{Data, OpCode},
        };
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.stream
            .send(Message::Frame(frame))
            .await
            .unwrap_or_else(|e| panic!("[{}] send failed: {e}", self.label));
    }

    /// The first frame (buffer first, then socket) matching `pred` within `timeout`; the
    /// frames read meanwhile stay buffered.
    pub async fn try_recv_where(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, RecvError> {
        if let Some(i) = self.buffer.iter().position(&pred) {
            return Ok(self.buffer.remove(i).expect("index is in range"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let frame = self.read_frame(deadline).await?;
            if pred(&frame) {
                return Ok(frame);
            }
            self.buffer.push_back(frame);
        }
    }

    /// Like [`Self::try_recv_where`], failing the test with `what` on timeout or close.
    pub async fn recv_where_within(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        match self.try_recv_where(timeout, pred).await {
            Ok(frame) => frame,
            Err(RecvError::Timeout) => panic!(
                "[{}] timed out after {timeout:?} waiting for {what}; buffered frames: {:#?}",
                self.label, self.buffer
            ),
            Err(RecvError::Closed(why)) => panic!(
                "[{}] connection closed ({why}) while waiting for {what}; buffered frames: {:#?}",
                self.label, self.buffer
            ),
        }
    }

    /// The first frame matching `pred` within [`RECV_TIMEOUT`].
    pub async fn recv_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.recv_where_within(what, RECV_TIMEOUT, pred).await
    }

    /// The next frame that is not `presence`.
    pub async fn recv(&mut self) -> Value {
        self.recv_where("any non-presence frame", |f| frame_type(f) != "presence")
            .await
    }

    /// The first frame of type `frame_type` (others stay buffered).
    pub async fn recv_type(&mut self, frame_type: &str) -> Value {
        let what = format!("a `{frame_type}` frame");
        self.recv_where(&what, |f| self::frame_type(f) == frame_type)
            .await
    }

    /// The first frame answering `request_id`.
    pub async fn recv_response(&mut self, request_id: &str) -> Value {
        let what = format!("the answer to requestId {request_id:?}");
        self.recv_where(&what, |f| f["requestId"] == request_id)
            .await
    }

    /// Sends `action` (an object) with a fresh `requestId` unless it has one, and returns
    /// the frame answering it.
    pub async fn request(&mut self, mut action: Value) -> Value {
        let id = match action.get("requestId").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let id = self.next_request_id();
                action["requestId"] = json!(id);
                id
            }
        };
        self.send_json(&action).await;
        self.recv_response(&id).await
    }

    /// Removes and returns every buffered frame of `frame_type`, then everything of that
    /// type that arrives within `wait`.
    pub async fn drain_type(&mut self, frame_type: &str, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        while let Ok(frame) = self.read_frame(deadline).await {
            self.buffer.push_back(frame);
        }
        let (taken, kept): (VecDeque<Value>, VecDeque<Value>) = self
            .buffer
            .drain(..)
            .partition(|f| self::frame_type(f) == frame_type);
        self.buffer = kept;
        taken.into()
    }

    /// The buffered frames (for assertions and failure messages).
    pub fn buffered(&self) -> &VecDeque<Value> {
        &self.buffer
    }

    /// Asserts no frame matching `pred` is buffered or arrives within `wait`.
    pub async fn expect_none(&mut self, what: &str, wait: Duration, pred: impl Fn(&Value) -> bool) {
        if let Some(frame) = self.buffer.iter().find(|f| pred(f)) {
            panic!("[{}] expected no {what}, but got {frame}", self.label);
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.read_frame(deadline).await {
                Ok(frame) if pred(&frame) => {
                    panic!("[{}] expected no {what}, but got {frame}", self.label)
                }
                Ok(frame) => self.buffer.push_back(frame),
                Err(_) => return,
            }
        }
    }

    /// Asserts no frame of `frame_type` is buffered or arrives within `wait`.
    pub async fn expect_silence(&mut self, frame_type: &str, wait: Duration) {
        let what = format!("`{frame_type}` frame");
        self.expect_none(&what, wait, |f| self::frame_type(f) == frame_type)
            .await;
    }

    /// Asserts nothing but `presence` is buffered or arrives within `wait`.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        self.expect_none("frame", wait, |f| frame_type(f) != "presence")
            .await;
    }

    /// Sends a heartbeat with a `requestId` and asserts the `heartbeat.ack`: proves the
    /// connection is still open and usable.
    pub async fn heartbeat(&mut self) -> Value {
        let ack = self.request(json!({"action": "heartbeat"})).await;
        assert_eq!(
            ack["type"], "heartbeat.ack",
            "[{}] heartbeat answered {ack}",
            self.label
        );
        ack
    }

    /// Sends a text message and returns its `message.ack` (failing on any other answer).
    pub async fn send_message(
        &mut self,
        conversation_id: &str,
        client_message_id: &str,
        text: &str,
    ) -> Value {
        let ack = self
            .request(send_action(conversation_id, client_message_id, text))
            .await;
        assert_eq!(
            ack["type"], "message.ack",
            "[{}] send {client_message_id:?} answered {ack}",
            self.label
        );
        ack
    }

    /// A `read` or `delivered` action answered `ok`.
    pub async fn receipt(&mut self, action: &str, conversation_id: &str, up_to_seq: i64) -> Value {
        let answer = self
            .request(
                json!({"action": action, "conversationId": conversation_id, "upToSeq": up_to_seq}),
            )
            .await;
        assert_eq!(
            answer["type"], "ok",
            "[{}] {action} answered {answer}",
            self.label
        );
        answer
    }

    /// Closes the connection with a close handshake and waits for the server's close.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        let deadline = Instant::now() + RECV_TIMEOUT;
        while self.read_frame(deadline).await.is_ok() {}
    }
}

/// `{"action":"send", ...}` for a text message, without `requestId`.
pub fn send_action(conversation_id: &str, client_message_id: &str, text: &str) -> Value {
    json!({
        "action": "send",
        "conversationId": conversation_id,
        "clientMessageId": client_message_id,
        "content": {"type": "text", "text": text},
    })
}

// ---------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------

/// A reqwest client for one user (or none); every call answers `(status, json)` where
/// an empty body is `null` and a non-JSON body is a JSON string.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Http {
    /// Sends `method path` with an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.execute(request).await
    }

    /// Like [`Self::call`], reporting a server that cannot be reached (or that dies before
    /// answering) instead of panicking: for crash tests.
    pub async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.try_execute(request).await.map_err(|e| e.to_string())
    }

    async fn execute(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        self.try_execute(request)
            .await
            .expect("the HTTP request reaches the server and its body is readable")
    }

    async fn try_execute(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), reqwest::Error> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((status, body_value(&bytes)))
    }

    /// `method path` with an optional JSON body, keeping the response headers.
    pub async fn call_full(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> HttpResponse {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .expect("the HTTP request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("the body is readable");
        HttpResponse {
            status,
            headers,
            body: body_value(&bytes),
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// `method path` with raw bytes and a content type (malformed or oversized bodies).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: impl Into<Vec<u8>>,
        content_type: &str,
    ) -> (u16, Value) {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Content-Type", content_type)
            .body(body.into());
        self.execute(request).await
    }

    /// Creates (or finds) the direct conversation with `other`; answers the conversation.
    pub async fn create_direct(&self, other: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/conversations",
                &json!({"type": "direct", "members": [other]}),
            )
            .await;
        assert!(
            status == 200 || status == 201,
            "create direct with {other}: {status} {body}"
        );
        body
    }

    /// Creates a group; answers the conversation.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Value {
        let (status, body) = self
            .post(
                "/v1/conversations",
                &json!({"type": "group", "name": name, "members": members}),
            )
            .await;
        assert_eq!(status, 201, "create group {name:?}: {body}");
        body
    }

    /// `GET /v1/conversations/{id}`, asserting 200.
    pub async fn conversation(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/conversations/{id}")).await;
        assert_eq!(status, 200, "GET conversation {id}: {body}");
        body
    }

    /// `GET /v1/conversations/{id}/messages?{query}`, asserting 200.
    pub async fn messages(&self, id: &str, query: &str) -> Value {
        let (status, body) = self
            .get(&format!("/v1/conversations/{id}/messages?{query}"))
            .await;
        assert_eq!(status, 200, "GET messages {id}?{query}: {body}");
        body
    }

    /// `POST /v1/conversations/{id}/messages` with a text message.
    pub async fn send_message(
        &self,
        id: &str,
        client_message_id: &str,
        text: &str,
    ) -> (u16, Value) {
        self.post(
            &format!("/v1/conversations/{id}/messages"),
            &json!({
                "clientMessageId": client_message_id,
                "content": {"type": "text", "text": text},
                "replyTo": null,
            }),
        )
        .await
    }

    /// `POST /v1/conversations/{id}/members`.
    pub async fn add_members(&self, id: &str, users: &[&str]) -> (u16, Value) {
        self.post(
            &format!("/v1/conversations/{id}/members"),
            &json!({"userIds": users}),
        )
        .await
    }

    /// `DELETE /v1/conversations/{id}/members/{user}`.
    pub async fn remove_member(&self, id: &str, user: &str) -> (u16, Value) {
        self.delete(&format!("/v1/conversations/{id}/members/{user}"))
            .await
    }

    /// `POST /v1/devices`, asserting 201.
    pub async fn register_device(&self, device: &str, platform: &str, token: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/devices",
                &json!({"deviceId": device, "platform": platform, "token": token}),
            )
            .await;
        assert_eq!(status, 201, "register device {device}: {body}");
        body
    }
}

/// An HTTP answer with its headers (`Retry-After`, `Allow`...).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON (`null` when empty, a JSON string when not JSON).
    pub body: Value,
}

impl HttpResponse {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `(status, body)`, the shape the assertion helpers take.
    pub fn pair(&self) -> (u16, Value) {
        (self.status, self.body.clone())
    }
}

/// An empty body is `null`; a body that is not JSON is a JSON string.
fn body_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

// ---------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------

/// The pushes of the outbox addressed to `user`, in outbox order.
pub fn pushes_for<'a>(pushes: &'a [Value], user: &str) -> Vec<&'a Value> {
    pushes.iter().filter(|p| p["userId"] == user).collect()
}

/// Whether `frame` is a `presence` event about `user`.
pub fn is_presence_of(frame: &Value, user: &str) -> bool {
    frame["type"] == "presence" && frame["userId"] == user
}

/// Whether `frame` is a `presence` event saying `user` is `status` (`online`/`offline`).
pub fn is_presence_status(frame: &Value, user: &str, status: &str) -> bool {
    is_presence_of(frame, user) && frame["status"] == status
}

/// The `conversationId` of a conversation object.
pub fn conv_id(conversation: &Value) -> String {
    conversation["conversationId"]
        .as_str()
        .unwrap_or_else(|| panic!("no conversationId in {conversation}"))
        .to_owned()
}

/// Asserts `value` is an object holding every key of `keys` (a `null` value counts).
pub fn assert_keys(value: &Value, keys: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {value}"));
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !object.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "missing keys {missing:?} in {value}");
}

/// Asserts an `error` frame with every field of docs/protocol.md, `code`, and `requestId`
/// (`None` = `null`).
pub fn assert_ws_error(frame: &Value, code: &str, request_id: Option<&str>) {
    assert_eq!(
        frame["type"], "error",
        "expected an error frame, got {frame}"
    );
    assert_keys(
        frame,
        &[
            "requestId",
            "clientMessageId",
            "code",
            "message",
            "retryAfterMs",
        ],
    );
    assert_eq!(frame["code"], code, "wrong error code in {frame}");
    assert_eq!(
        frame["requestId"],
        json!(request_id),
        "wrong requestId in {frame}"
    );
    assert!(
        frame["message"].is_string(),
        "error message is not a string: {frame}"
    );
}

/// Asserts an HTTP error: `status` and `{"error":{"code","message","retryAfterMs"}}`.
pub fn assert_http_error(response: &(u16, Value), status: u16, code: &str) {
    let (actual, body) = response;
    assert_eq!(
        *actual, status,
        "expected HTTP {status} {code}, got {actual} {body}"
    );
    let error = &body["error"];
    assert_keys(error, &["code", "message", "retryAfterMs"]);
    assert_eq!(error["code"], code, "wrong error code in {body}");
    assert!(
        error["message"].is_string(),
        "error message is not a string: {body}"
    );
}

/// Asserts a timestamp is Unix milliseconds taken between `since` and now (1 s slack).
pub fn assert_recent_ms(value: &Value, since_ms: i64) {
    let ts = value
        .as_i64()
        .unwrap_or_else(|| panic!("timestamp is not an integer: {value}"));
    assert!(
        ts >= since_ms - 1000 && ts <= now_ms() + 1000,
        "timestamp {ts} is not Unix ms around now (test started at {since_ms})"
    );
}

/// The `seq` values of a list of message objects or frames.
pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| {
            m["seq"]
                .as_i64()
                .unwrap_or_else(|| panic!("no integer seq in {m}"))
        })
        .collect()
}

/// Asserts every key of `expected` (an object) has that value in `actual`; other keys of
/// `actual` are ignored (clients ignore unknown fields).
pub fn assert_subset(actual: &Value, expected: &Value) {
    let expected = expected
        .as_object()
        .expect("the expected fields are an object");
    for (key, value) in expected {
        assert!(
            actual.get(key) == Some(value),
            "field {key:?}: expected {value}, got {} in {actual}",
            actual
                .get(key)
                .map_or("nothing".to_owned(), Value::to_string)
        );
    }
}

/// Percent-encodes `value` for a query string (opaque cursors may hold `+`, `/`, `=`).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
