//! The servers under test: `chat-local` (ours) and the limit server, each started as its
//! own process on 127.0.0.1 port 0 so its CPU and memory can be read apart from the
//! load generator's, or an already running one (the CI smoke test).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use chat_shared::auth::TokenVerifier;
use chat_shared::ids::UserId;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Which server an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `chat-local`: auth, SQLite persistence, the whole protocol.
    Ours,
    /// The reference fan-out in [`crate::limit`].
    Limit,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Limit => "limit",
        }
    }
}

/// How to reach a server and speak to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// The process to read CPU and memory from, when it is a separate one.
    pub pid: Option<u32>,
    secret: String,
    http: reqwest::Client,
}

/// A room of the load: a conversation (ours) or a room name (limit).
#[derive(Debug, Clone)]
pub struct Room {
    pub id: String,
    pub members: Vec<String>,
}

const TOKEN_TTL_SECS: i64 = 24 * 3600;

impl Endpoint {
    pub fn new(kind: Kind, addr: SocketAddr, pid: Option<u32>, secret: &str) -> Self {
        Self {
            kind,
            addr,
            pid,
            secret: secret.to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .expect("HTTP client"),
        }
    }

    /// A token for `user` (ours only; the limit server has no auth).
    pub fn token(&self, user: &str) -> String {
        let user = UserId::parse(user).expect("bench user ids are valid");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64;
        TokenVerifier::new(self.secret.as_bytes(), None, None).issue(&user, now, TOKEN_TTL_SECS)
    }

    /// The WebSocket URL for `user` in `room`.
    pub fn ws_url(&self, user: &str, room: &str, token: &str) -> String {
        match self.kind {
            Kind::Ours => format!("ws://{}/ws?v=1&token={token}&deviceId=bench", self.addr),
            Kind::Limit => format!("ws://{}/ws?room={room}&user={user}", self.addr),
        }
    }

    /// Creates the rooms: one conversation each, made by its first member (a direct one
    /// for two members, else a group), `concurrency` at a time.
    pub async fn create_rooms(
        &self,
        members: Vec<Vec<String>>,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Room>> {
        if self.kind == Kind::Limit {
            return Ok(members
                .into_iter()
                .enumerate()
                .map(|(i, members)| Room {
                    id: format!("r{i}"),
                    members,
                })
                .collect());
        }
        futures_util::stream::iter(members.into_iter().map(|members| async move {
            let body = if members.len() == 2 {
                json!({"type": "direct", "members": [members[1]]})
            } else {
                json!({"type": "group", "name": "bench", "members": members[1..]})
            };
            let created = self
                .post(&members[0], "/v1/conversations", &body)
                .await
                .context("create conversation")?;
            let id = created["conversationId"]
                .as_str()
                .context("conversation without id")?
                .to_owned();
            Ok::<_, anyhow::Error>(Room { id, members })
        }))
        .buffered(concurrency)
        .try_collect()
        .await
    }

    /// POSTs `body` as `user` and returns the JSON answer; non-2xx is an error.
    pub async fn post(&self, user: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("http://{}{path}", self.addr))
            .bearer_auth(self.token(user))
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "POST {path}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// GETs `path` as `user` and returns the JSON answer; non-2xx is an error.
    pub async fn get(&self, user: &str, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(self.token(user))
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "GET {path}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// Fetches everything `user` missed in `rooms` (each with the seq it has), paging
    /// `/v1/sync` until no conversation has more, and returns the number of messages.
    pub async fn sync(
        &self,
        user: &str,
        rooms: &[(String, u64)],
        page: u32,
    ) -> anyhow::Result<usize> {
        match self.kind {
            Kind::Limit => {
                let mut total = 0;
                for (room, _) in rooms {
                    let response = self
                        .http
                        .post(format!("http://{}/v1/sync?room={room}", self.addr))
                        .send()
                        .await?
                        .error_for_status()?;
                    let frames: Vec<Value> = response.json().await?;
                    total += frames.len();
                }
                Ok(total)
            }
            Kind::Ours => {
                let mut after: Vec<(String, u64)> = rooms.to_vec();
                let mut total = 0;
                loop {
                    let body = json!({
                        "conversations": after.iter()
                            .map(|(id, seq)| json!({"conversationId": id, "afterSeq": seq}))
                            .collect::<Vec<_>>(),
                        "limit": page,
                    });
                    let answer = self.post(user, "/v1/sync", &body).await?;
                    let mut more = Vec::new();
                    for c in answer["conversations"].as_array().context("sync answer")? {
                        let messages = c["messages"].as_array().context("sync messages")?;
                        total += messages.len();
                        if c["hasMore"] == true {
                            let last = messages
                                .last()
                                .and_then(|m| m["seq"].as_u64())
                                .context("hasMore without messages")?;
                            let id = c["conversationId"].as_str().context("id")?;
                            more.push((id.to_owned(), last));
                        }
                    }
                    if more.is_empty() {
                        return Ok(total);
                    }
                    after = more;
                }
            }
        }
    }
}

/// A server process started for a benchmark; killed on drop.
pub struct ServerProcess {
    child: Child,
    endpoint: Endpoint,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `chat-local` from `bin` with a fresh database, durability on (WAL with
    /// `synchronous=NORMAL`: an acked message survives kill -9) and the send rate limit
    /// off (the load sends far more than a person would).
    pub async fn ours(bin: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let secret = "bench-secret-bench-secret-bench-secret";
        let mut cmd = Command::new(bin);
        cmd.env("CHAT_LISTEN", "127.0.0.1:0")
            .env("CHAT_DB", dir.path().join("chat.db"))
            .env("CHAT_JWT_SECRET", secret)
            .env("CHAT_RATE_LIMIT_PER_MIN", "0")
            .env("CHAT_LOG", "warn");
        Self::spawn(cmd, Kind::Ours, secret, dir).await
    }

    /// Starts the limit server (`chat-bench limit-server`) from `bin`.
    pub async fn limit(bin: &Path) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(["limit-server", "--listen", "127.0.0.1:0"]);
        Self::spawn(cmd, Kind::Limit, "", tempfile::tempdir()?).await
    }

    async fn spawn(
        mut cmd: Command,
        kind: Kind,
        secret: &str,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {cmd:?}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Ok::<_, anyhow::Error>(addr.trim().parse::<SocketAddr>()?);
                }
            }
            bail!("server exited before listening")
        })
        .await
        .context("server did not print its address within 30 s")??;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let pid = child.id();
        Ok(Self {
            child,
            endpoint: Endpoint::new(kind, addr, pid, secret),
            _dir: dir,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The release binaries next to the running one (`target/release/`).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    ensure!(
        path.exists(),
        "{} not found: build it first (`cargo build --release -p chat-local -p chat-bench`)",
        path.display()
    );
    Ok(path)
}
