//! `chat-local`: the whole chat protocol in one process on a SQLite file.
//!
//! `chat-local [--listen ADDR] [--db PATH]` serves; `chat-local token USER` prints a token.
//! Configuration is docs/protocol.md section 6; see the README.

mod blobs;
mod gateway;
mod listener;
mod server;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_jwks::HttpKeySet;
use chat_shared::Chat;
use chat_shared::auth::{KeySet, SecretSet, TokenVerifier};
use chat_shared::config::{Limits, TokenConfig, env_flag};
use chat_shared::ids::UserId;
use chat_shared::ports::{Clock, SystemClock};
use chat_shared::service::{AttachmentPorts, Ports};
use chat_sqlite::{Durability, SqliteStore};
use clap::{Parser, Subcommand};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::blobs::LocalBlobs;
use crate::gateway::LocalGateway;
use crate::listener::ListenLimits;
use crate::server::App;

/// mimalloc rather than glibc's malloc: fanning out to a group allocates and frees a
/// frame, queue slots and socket buffers per delivery, and glibc's malloc was 13% of
/// the server's samples there (`_int_malloc`, `malloc_consolidate`, `_int_free`). With
/// mimalloc the server took 66% of a core at 300k deliveries/s to a group of 100 against
/// 75% (three runs each). 1:1 did not change (the writer bounds it); an idle connection
/// costs 17.6 KB instead of 16.0.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The development secret, accepted only while listening on loopback.
const DEV_SECRET: &str = "chat-local-development-secret";

#[derive(Parser)]
#[command(
    name = "chat-local",
    version,
    about = "Embedded chat server (WebSocket + HTTP on SQLite)"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "CHAT_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    listen: SocketAddr,
    /// SQLite database file (created if missing).
    #[arg(long, env = "CHAT_DB", default_value = "./chat.db", global = true)]
    db: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Print a token for USER valid for 24 h, signed with the configured secret.
    Token { user: String },
}

/// The verifier of [`TokenConfig`]: our secret and/or a provider's key set. With neither,
/// the development secret, and only on loopback (then `true`).
fn verifier(listen: &SocketAddr) -> anyhow::Result<(TokenVerifier, bool)> {
    let config = TokenConfig::from_env()?;
    let key_set = match &config.jwks_url {
        Some(url) => Some(KeySet::new(Arc::new(
            HttpKeySet::new(url).map_err(anyhow::Error::msg)?,
        ))),
        None => None,
    };
    let development = config.secret.is_none() && key_set.is_none();
    if development && !listen.ip().is_loopback() {
        bail!(
            "CHAT_JWT_SECRET or CHAT_JWT_JWKS_URL must be set when listening on a non-loopback address ({listen})"
        );
    }
    if development {
        warn!("CHAT_JWT_SECRET is not set: using the development secret (loopback only)");
    }
    config
        .verifier(
            key_set,
            development.then(|| SecretSet::configured([DEV_SECRET])),
        )
        .map(|verifier| (verifier, development))
        .context("no secret and no key set to verify tokens with")
}

/// Logs to stderr, filtered by `CHAT_LOG` (default `info`): lines for people, coloured
/// only when stderr is a terminal (a log file gets no escape codes), or with
/// `CHAT_LOG_FORMAT=json` one JSON object per line for log shippers.
fn init_logs() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CHAT_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("CHAT_LOG_FORMAT").as_deref().map(str::trim) {
        Ok("json") => logs.json().init(),
        Ok("" | "text") | Err(_) => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        Ok(other) => bail!("CHAT_LOG_FORMAT = {other:?}: expected text or json"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logs()?;
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token { user }) => {
            let user = UserId::parse(user).context("invalid user id")?;
            let (verifier, _) = verifier(&cli.listen)?;
            if !verifier.issues() {
                bail!("no CHAT_JWT_SECRET: tokens come from the identity provider");
            }
            let token = verifier.issue(&user, SystemClock.now_ms(), 24 * 3600);
            println!("{token}");
            Ok(())
        }
        None | Some(Command::Serve) => serve(cli).await,
    }
}

/// Installs the Prometheus recorder of the service's metrics (`chat_shared::telemetry`),
/// with buckets from a millisecond to ten seconds for its durations.
/// Its upkeep (folding recorded samples into the buckets) runs every 5 s, so memory stays
/// flat when nothing scrapes `/metrics`.
fn metrics_recorder() -> anyhow::Result<PrometheusHandle> {
    let seconds = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets(&seconds)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Where clients reach this server, for the attachment URLs it signs:
/// `CHAT_PUBLIC_URL` (behind a proxy, `https://chat.example.com`), else the address it
/// listens on (a wildcard address as loopback).
fn public_url(addr: SocketAddr) -> String {
    match std::env::var("CHAT_PUBLIC_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => {
            let mut addr = addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let limits = Limits::from_env()?;
    let (tokens, development) = verifier(&cli.listen)?;
    let dev_login = development.then(|| tokens.clone());
    if let Some(key_set) = tokens.key_set() {
        // Fetched now so the first client does not wait for it; a failure is logged
        // and the first token with a key asks again.
        key_set.load(SystemClock.now_ms()).await;
    }
    let idle_timeout = chat_shared::config::idle_timeout()?;
    let listen = ListenLimits::from_env()?.fitted_to_fd_limit();
    let durability = match std::env::var("CHAT_SQLITE_SYNC").as_deref() {
        Ok("full") => Durability::PowerLoss,
        _ => Durability::Process,
    };
    let store = SqliteStore::open(&cli.db, durability)
        .with_context(|| format!("opening database {}", cli.db.display()))?;
    let gateway = Arc::new(LocalGateway::default());
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr()?;
    let blobs = Arc::new(
        LocalBlobs::open(&cli.db, public_url(addr))
            .with_context(|| format!("opening the attachment directory of {}", cli.db.display()))?,
    );
    let app = Arc::new(App {
        chat: Chat::new(
            Ports {
                store: Arc::new(store.clone()),
                gateway: gateway.clone(),
                push: Arc::new(store.clone()),
                clock: Arc::new(SystemClock),
                attachments: Some(AttachmentPorts {
                    store: Arc::new(store.clone()),
                    blobs: blobs.clone(),
                }),
                direct: None,
            },
            limits,
            tokens,
        ),
        store,
        blobs: Some(blobs),
        gateway,
        dev_endpoints: env_flag("CHAT_DEV_ENDPOINTS")?,
        dev_login,
        metrics: metrics_recorder()?,
        metrics_public: env_flag("CHAT_METRICS_PUBLIC")?,
        idle_timeout,
        listen,
    });
    info!(%addr, db = %cli.db.display(), max_connections = listen.max_connections, "chat-local ready");
    // The one line on stdout: tests and scripts read the bound address from it.
    println!("listening on {addr}");
    server::run(listener, app, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
