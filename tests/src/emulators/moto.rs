//! [`MotoServer`]: moto's server mode, for SNS (and Secrets Manager, the Management API).

use super::*;

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
