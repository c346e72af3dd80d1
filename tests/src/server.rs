//! The server process a test talks to: [`TestServer`] (spawned on a free port with a
//! fresh SQLite file, or a remote deployment), its builder and start-up.

use super::*;

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
        Http::new(
            self.http.clone(),
            self.http_base.clone(),
            token,
            self.is_remote(),
        )
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
        ws.set_label(label);
        let ack = ws.request(json!({"action": "heartbeat"})).await;
        assert_eq!(
            ack["type"],
            "heartbeat.ack",
            "[{}] first heartbeat answered with {ack}",
            ws.label()
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
            // A deployment on AWS delivers at least once (docs/protocol.md section 3,
            // "Fan-out and order"): its clients drop repeats as an app does. The local
            // server delivers once, and its suites see every frame it sends.
            Ok(Ok((stream, _response))) => Ok(WsClient::new(stream, self.is_remote())),
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
