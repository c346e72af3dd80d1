//! The accept loop: HTTP/1.1 connections with a header-read timeout, under a cap on open
//! connections that idle ones give way to.
//!
//! A connection is *busy* while one of its requests is being handled and for the whole
//! life of a WebSocket it was upgraded to; otherwise it is *idle*: between keep-alive
//! requests, or still sending (or never sending) its request head or body. At the cap, a new
//! connection closes the oldest idle one, so sockets that never finish a request cannot
//! keep anybody out; when every connection is busy the new one is answered 503. A
//! request head must arrive within the header timeout of the connection becoming idle.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use chat_shared::config::{ConfigError, env_u32};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower_service::Service;
use tracing::{debug, warn};

/// File descriptors kept for everything but client sockets: the database and its WAL
/// (four connections each), the append logs, the runtime's own (23 in use when idle).
const RESERVED_FDS: u64 = 48;

/// How connections are limited (docs/protocol.md section 6).
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Open connections at most (`CHAT_MAX_CONNECTIONS`, lowered to what the file
    /// descriptor limit allows).
    pub max_connections: usize,
    /// A request head must arrive within this (`CHAT_HEADER_TIMEOUT_SECS`).
    pub header_timeout: Duration,
    /// A request body must arrive within this (`CHAT_REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
}

impl ListenLimits {
    pub fn from_env() -> Result<Self, ConfigError> {
        let secs = |name, default| {
            let secs = env_u32(name, default)?;
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError {
                    name,
                    value: secs.to_string(),
                    reason: "expected 1 to 3600 seconds",
                });
            }
            Ok(Duration::from_secs(u64::from(secs)))
        };
        let max_connections = env_u32("CHAT_MAX_CONNECTIONS", 10_000)?;
        if max_connections == 0 {
            return Err(ConfigError {
                name: "CHAT_MAX_CONNECTIONS",
                value: "0".into(),
                reason: "expected at least 1",
            });
        }
        Ok(Self {
            max_connections: max_connections as usize,
            header_timeout: secs("CHAT_HEADER_TIMEOUT_SECS", 10)?,
            request_timeout: secs("CHAT_REQUEST_TIMEOUT_SECS", 30)?,
        })
    }

    /// The cap the process can hold: the open-files limit is raised to its hard limit,
    /// and the cap lowered to fit under it with [`RESERVED_FDS`] to spare. Without that,
    /// sockets would run the process out of descriptors before the cap, and it could no
    /// longer accept, open a log file or answer `/health`.
    pub fn fitted_to_fd_limit(mut self) -> Self {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let raised = rustix::process::Rlimit {
                current: limit.maximum,
                ..limit
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                limit = raised;
            }
        }
        if let Some(fds) = limit.current {
            let fits = fds.saturating_sub(RESERVED_FDS).max(1) as usize;
            if fits < self.max_connections {
                warn!(
                    open_files = fds,
                    max_connections = fits,
                    "the open-files limit allows fewer connections than CHAT_MAX_CONNECTIONS"
                );
                self.max_connections = fits;
            }
        }
        self
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets
/// requests in progress finish (5 s at most) and returns. Upgraded WebSockets are not
/// waited for: the caller closes them.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenLimits,
    shutdown: impl Future<Output = ()>,
) {
    let registry = Arc::new(Registry::default());
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors (or a connection reset before accept): make room
                // by closing an idle connection, and try again shortly.
                warn!(error = %e, "accept failed");
                registry.evict_oldest_idle();
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if registry.len() >= limits.max_connections && !registry.evict_oldest_idle() {
            refuse(tcp);
            continue;
        }
        let slot = registry.open();
        tokio::spawn(connection(
            tcp,
            peer,
            slot,
            router.clone(),
            limits,
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    drop(stopping);
    // Every connection task holds a receiver: the channel closes when the last ends.
    if tokio::time::timeout(Duration::from_secs(5), stop.closed())
        .await
        .is_err()
    {
        warn!("connections still open after 5 s of shutdown: dropped");
    }
}

/// Answers a connection over the cap with 503 (if its socket takes it at once) and
/// closes it.
fn refuse(tcp: TcpStream) {
    debug!("connection refused: every connection is busy");
    let _ = tcp.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
    );
}

/// One connection, until it ends, is evicted, or the server stops.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    router: Router,
    limits: ListenLimits,
    mut stopping: watch::Receiver<bool>,
) {
    // Chat frames are small and latency-bound: never hold them back for Nagle.
    if let Err(e) = tcp.set_nodelay(true) {
        warn!(error = %e, "TCP_NODELAY not set");
    }
    let service_slot = slot.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // A request owed a body is busy only once the body is in (the route takes
        // `Busy` then): a connection that never sends it stays evictable.
        let busy =
            hyper::body::Body::is_end_stream(req.body()).then(|| Busy::new(service_slot.clone()));
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(service_slot.clone());
        let mut router = router.clone();
        async move {
            let response = router.call(req.map(Body::new)).await;
            drop(busy);
            response
        }
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "connection ended");
            }
        }
        () = slot.evicted.notified() => {
            debug!(%peer, "idle connection closed to make room at the connection cap");
        }
        _ = stopping.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    slots: Mutex<BTreeMap<u64, Weak<Slot>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn len(&self) -> usize {
        self.slots.lock().expect("registry lock").len()
    }

    fn open(self: &Arc<Self>) -> Arc<Slot> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id,
            busy: AtomicUsize::new(0),
            evicted: Notify::new(),
            registry: Arc::downgrade(self),
        });
        self.slots
            .lock()
            .expect("registry lock")
            .insert(id, Arc::downgrade(&slot));
        slot
    }

    /// Closes the oldest idle connection; `false` when every one is busy. The evicted
    /// one stops counting at once.
    fn evict_oldest_idle(&self) -> bool {
        // Slots looked at are dropped only after the lock is released: dropping the last
        // reference to one takes the lock to unregister it.
        let mut looked_at = Vec::new();
        let mut slots = self.slots.lock().expect("registry lock");
        let mut chosen = None;
        for (id, slot) in slots.iter() {
            let Some(slot) = slot.upgrade() else { continue };
            if slot.busy.load(Ordering::Acquire) == 0 {
                chosen = Some((*id, slot));
                break;
            }
            looked_at.push(slot);
        }
        if let Some((id, slot)) = &chosen {
            slots.remove(id);
            slot.evicted.notify_one();
        }
        drop(slots);
        drop(looked_at);
        chosen.is_some()
    }
}

/// A connection's place under the cap, held by its task and, once upgraded, by its
/// WebSocket session (through [`Busy`]).
pub struct Slot {
    id: u64,
    busy: AtomicUsize,
    evicted: Notify,
    registry: Weak<Registry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry
                .slots
                .lock()
                .expect("registry lock")
                .remove(&self.id);
        }
    }
}

/// Keeps a connection busy (never evicted) while held.
pub struct Busy(Arc<Slot>);

impl Busy {
    pub fn new(slot: Arc<Slot>) -> Self {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Self(slot)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}
