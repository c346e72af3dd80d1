//! The embedded server: axum serves `/ws`, the HTTP API and `/health` over the shared
//! handlers; a fan-out task drains the store's change feed; a sweeper expires messages.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Extension, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use bytes::Bytes;
use chat_shared::auth::Verified;
use chat_shared::handlers::{self, ws::ConnectionContext};
use chat_shared::ids::Millis;
use chat_shared::ports::{ChangeFeed, FeedItem};
use chat_shared::protocol::{MAX_BODY_BYTES, MAX_READ_FRAME_BYTES, ServerFrame};
use chat_shared::service::PendingPresence;
use chat_shared::{Chat, ChatError, domain};
use chat_sqlite::SqliteStore;
use futures_util::{SinkExt, StreamExt};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::blobs::{self, LocalBlobs};
use crate::gateway::{LocalGateway, SendQueue, close_code};
use crate::listener::{self, Busy, ListenLimits, Slot};

/// Everything the routes share.
pub struct App {
    pub chat: Chat,
    pub store: SqliteStore,
    /// Attachment files and their URLs (`None`: attachments off).
    pub blobs: Option<Arc<LocalBlobs>>,
    pub gateway: Arc<LocalGateway>,
    /// Serve `GET /dev/push-outbox` (to loopback callers only).
    pub dev_endpoints: bool,
    /// With the development secret: the web app's sign-in (`POST /dev/login`, loopback
    /// callers only) issues tokens with it.
    pub dev_login: Option<chat_shared::auth::TokenVerifier>,
    /// A socket with no client frame for this long is closed (`CHAT_IDLE_TIMEOUT_SECS`;
    /// at most the liveness window, so an open socket is always a live connection).
    pub idle_timeout: Duration,
    /// The connection cap and the request timeouts.
    pub listen: ListenLimits,
    /// The metrics `/metrics` renders.
    pub metrics: PrometheusHandle,
    /// Serve `/metrics` to any caller (`CHAT_METRICS_PUBLIC`), not loopback only.
    pub metrics_public: bool,
}

/// Payload of the server's pings: their pongs prove the socket, not the app, is alive, so
/// they do not count as client frames.
const PING_PAYLOAD: &[u8] = b"chat-local";

/// Bytes read from a socket at a time. tungstenite's default (128 KiB, allocated and
/// zeroed per connection) made an idle connection cost ~140 KB; chat frames are small,
/// and a larger frame is simply read in several chunks. tungstenite zeroes this much
/// before every read, too: 4 KiB rather than 8 took 2.4% off the server's instructions
/// per 1:1 message, and 4.2 KB off each idle connection (perf-history.md, round eight).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How much of an oversized request body is read (and dropped) before the 413.
const DRAIN_OVERSIZED_BYTES: usize = 4 * 1024 * 1024;

/// How often expired messages and unused attachments are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Feed items fanned out between two hand-offs to the outbox cleaner, and outbox rows
/// it deletes per write at most.
const FEED_BATCH: usize = 256;
/// Fanned-out outbox rows are deleted at most this often (or every `FEED_BATCH`
/// rows): one write per interval rather than one per message at low rates. Rows still
/// there when the process dies are fanned out again at the next start; clients drop the
/// repeated frames by seq, and pushes already sent are recorded, so none goes twice.
const FEED_ACK_EVERY: Duration = Duration::from_millis(100);

/// Serves until `shutdown` resolves, then closes every socket and finishes the fan-out
/// of what was already committed.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    app.store.clear_connections().await?;
    // Replay what an earlier process committed but did not fan out, then follow the feed.
    let pending = app.store.pending().await?;
    let feed = app.store.subscribe();
    if !pending.is_empty() {
        info!(
            count = pending.len(),
            "replaying messages not fanned out before restart"
        );
    }
    let fanout = tokio::spawn(fan_out_feed(app.clone(), pending, feed));
    let sweeper = tokio::spawn(sweep(app.clone()));

    let router = Router::new()
        .route("/ws", any(ws_upgrade))
        .route("/dev/push-outbox", any(push_outbox))
        .route("/metrics", any(metrics))
        .route("/", get(crate::web::index))
        .route("/app/{*path}", get(crate::web::asset))
        .route("/dev/login", post(crate::web::dev_login))
        .route(blobs::ROUTE, put(blobs::upload).get(blobs::download))
        // A method a route does not have is 404, as under /v1 (not axum's empty 405).
        .method_not_allowed_fallback(no_such_route)
        .fallback(http_api)
        .with_state(app.clone());
    listener::serve(listener, router, app.listen, shutdown).await;
    info!("shutting down: closing sockets");
    app.gateway.close_all();
    sweeper.abort();
    // Sessions end as their sockets close; give them a moment to run $disconnect.
    for _ in 0..50 {
        if app.gateway.len() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.store.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), fanout).await;
    // Acked messages go into the database with what the fan-out noted, so the next
    // start has nothing to replay.
    if let Err(e) = app.store.settle().await {
        warn!(error = %e, "could not apply the last acked messages; the next start will");
    }
    Ok(())
}

/// Fans out the change feed in commit order, handing what it fanned out to a cleaner
/// that deletes the outbox rows.
async fn fan_out_feed(
    app: Arc<App>,
    pending: Vec<FeedItem>,
    mut feed: mpsc::UnboundedReceiver<FeedItem>,
) {
    let (fanned_out, done) = mpsc::unbounded_channel();
    let cleaner = tokio::spawn(delete_fanned_out(app.clone(), done));
    let mut batch = pending;
    loop {
        if batch.is_empty() {
            match feed.recv().await {
                Some(item) => batch.push(item),
                None => break,
            }
        }
        while batch.len() < FEED_BATCH {
            match feed.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let n = match handlers::fanout::handle_batch(&app.chat, &batch, |item| &*item.message).await
        {
            Ok(()) => batch.len(),
            Err((failed, e)) => {
                warn!(error = %e, "fan-out failed; retrying from that message");
                tokio::time::sleep(Duration::from_millis(200)).await;
                failed
            }
        };
        let ids: Vec<i64> = batch.drain(..n).map(|item| item.position).collect();
        if !ids.is_empty() {
            let _ = fanned_out.send(ids);
        }
    }
    drop(fanned_out);
    let _ = cleaner.await;
}

/// Deletes the outbox rows of messages fanned out, in batches, until the fan-out ends.
///
/// A delete waits for a commit (up to a few milliseconds under load), so it runs here
/// rather than in the fan-out: there, every message committed meanwhile waited too, one
/// batch in every `FEED_BATCH` messages.
async fn delete_fanned_out(app: Arc<App>, mut fanned_out: mpsc::UnboundedReceiver<Vec<i64>>) {
    let mut done: Vec<i64> = Vec::new();
    let mut deleted_at = tokio::time::Instant::now();
    loop {
        let next = if done.is_empty() {
            fanned_out.recv().await
        } else {
            match tokio::time::timeout_at(deleted_at + FEED_ACK_EVERY, fanned_out.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    delete_outbox_rows(&app, &mut done).await;
                    deleted_at = tokio::time::Instant::now();
                    continue;
                }
            }
        };
        let Some(ids) = next else {
            delete_outbox_rows(&app, &mut done).await;
            return;
        };
        done.extend(ids);
        if done.len() >= FEED_BATCH || deleted_at.elapsed() >= FEED_ACK_EVERY {
            delete_outbox_rows(&app, &mut done).await;
            deleted_at = tokio::time::Instant::now();
        }
    }
}

async fn delete_outbox_rows(app: &App, done: &mut Vec<i64>) {
    if done.is_empty() {
        return;
    }
    if let Err(e) = app.store.acknowledge(std::mem::take(done)).await {
        warn!(error = %e, "could not delete fanned-out outbox rows; they will be replayed");
    }
}

/// Deletes expired messages periodically, and the attachments no message keeps (unused
/// for a day, or of expired messages).
async fn sweep(app: Arc<App>) {
    loop {
        match app.chat.expire_messages().await {
            Ok(0) => {}
            Ok(n) => info!(count = n, "expired messages deleted"),
            Err(e) => warn!(error = %e, "retention sweep failed"),
        }
        match app.chat.expire_attachments().await {
            Ok(0) => {}
            Ok(n) => info!(count = n, "unused or expired attachments deleted"),
            Err(e) => warn!(error = %e, "attachment sweep failed"),
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

pub(crate) fn error_response(e: &ChatError) -> Response {
    let resp = handlers::http::error_response(e);
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::from(body))
}

/// `GET /ws`: authenticates before upgrading (401 with no socket on failure).
async fn ws_upgrade(
    State(app): State<Arc<App>>,
    uri: http::Uri,
    headers: http::HeaderMap,
    slot: Option<Extension<Arc<Slot>>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query = handlers::http::parse_query(uri.query().unwrap_or(""));
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (token_param, device_param) = (param("token"), param("deviceId"));
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Authenticate first so a bad token is 401 whatever else is wrong.
    let token = token_param.or_else(|| authorization.and_then(chat_shared::auth::bearer));
    if let Err(e) = app.chat.authenticate_handshake(token).await {
        return error_response(&e);
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            return error_response(&ChatError::Invalid(format!(
                "expected a WebSocket upgrade: {rejection}"
            )));
        }
    };
    let connection_id = domain::random_uuid().simple().to_string();
    // Register the queue before $connect so nothing posted to the new connection is lost.
    let (frames, handle) = app.gateway.register(&connection_id);
    let connect = handlers::ws::connect(
        &app.chat,
        handlers::ws::ConnectRequest {
            connection_id: &connection_id,
            token: token_param,
            authorization,
            device_id: device_param,
        },
    )
    .await;
    let verified = match connect {
        Ok(connected) => {
            settle_in_background(&app, connected.pending_presence);
            connected.verified
        }
        Err(e) => {
            app.gateway.unregister(&connection_id);
            return error_response(&e);
        }
    };
    let failed_app = app.clone();
    let failed_id = connection_id.clone();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(MAX_READ_FRAME_BYTES)
        .max_frame_size(MAX_READ_FRAME_BYTES)
        .on_failed_upgrade(move |e| {
            debug!(error = %e, "websocket upgrade failed");
            tokio::spawn(async move { end_session(&failed_app, &failed_id).await });
        })
        .on_upgrade(move |socket| async move {
            // The socket's connection stays busy (never evicted) for the whole session.
            let _busy = slot.map(|Extension(slot)| Busy::new(slot));
            session(app, socket, connection_id, verified, frames, handle).await
        })
}

async fn end_session(app: &Arc<App>, connection_id: &str) {
    match handlers::ws::disconnect(&app.chat, connection_id).await {
        Ok(pending) => settle_in_background(app, pending),
        Err(e) => warn!(error = %e, "disconnect failed"),
    }
    app.gateway.unregister(connection_id);
}

/// Settles a presence change held back by the coalescing window, when it ends.
fn settle_in_background(app: &Arc<App>, pending: Option<PendingPresence>) {
    if let Some(pending) = pending {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = app.chat.settle_presence(pending).await {
                warn!(error = %e, "could not settle a presence change");
            }
        });
    }
}

/// Frames written to a socket with one flush at most.
const WRITE_BATCH: usize = 64;

/// Writes `first` and whatever else is already queued (up to `WRITE_BATCH` frames) with
/// one flush: a burst costs one `write` to the kernel, not one per frame, which was most
/// of the server's time fanning out to a group.
async fn write_queued(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    first: Bytes,
    frames: &mut SendQueue,
) -> Result<(), axum::Error> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(bytes) = next {
        if let Ok(text) = Utf8Bytes::try_from(bytes) {
            sink.feed(Message::Text(text)).await?;
        }
        written += 1;
        next = if written < WRITE_BATCH {
            frames.try_recv()
        } else {
            None
        };
    }
    sink.flush().await
}

/// One socket: a reader running the handlers frame by frame, a writer draining the queue.
async fn session(
    app: Arc<App>,
    socket: WebSocket,
    connection_id: String,
    verified: Verified,
    mut frames: SendQueue,
    handle: crate::gateway::ConnectionHandle,
) {
    debug!(connection.id = %connection_id, user.id = %verified.user, "connected");
    let (mut sink, mut stream) = socket.split();
    let (close_tx, mut close_rx) = tokio::sync::oneshot::channel::<CloseFrame>();
    // Pings make the kernel transmit, so a peer that forgot the connection answers with a
    // reset and the session ends at once instead of at the idle timeout.
    let mut pings = tokio::time::interval(app.idle_timeout / 3);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    pings.tick().await;
    let mut writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                // A close goes out at once, ahead of queued frames: the session is over.
                biased;
                close = &mut close_rx => {
                    if let Ok(frame) = close {
                        let _ = sink.send(Message::Close(Some(frame))).await;
                    }
                    let _ = sink.close().await;
                    return;
                }
                frame = frames.recv() => match frame {
                    Some(bytes) => {
                        if write_queued(&mut sink, bytes, &mut frames).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                _ = pings.tick() => {
                    if sink.send(Message::Ping(Bytes::from_static(PING_PAYLOAD))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let ctx = Arc::new(ConnectionContext::new(
        connection_id.clone(),
        verified.user,
        verified.expires_at,
    ));
    // Closed when the token expires: the client reconnects with a fresh one.
    let expiry = tokio::time::sleep(until(app.chat.now(), verified.expires_at));
    tokio::pin!(expiry);
    // One idle timer per session, moved on only when it fires: a timer armed afresh for
    // every frame was a timer-wheel insertion and removal per message.
    let mut last_frame = tokio::time::Instant::now();
    let idle = tokio::time::sleep_until(last_frame + app.idle_timeout);
    tokio::pin!(idle);
    let mut writer_done = false;
    let close = loop {
        let next = tokio::select! {
            _ = handle.close.notified() => {
                let code = handle.close_code();
                break close_frame(code, close_code::reason(code));
            }
            () = &mut expiry => {
                let code = close_code::TOKEN_EXPIRED;
                break close_frame(code, close_code::reason(code));
            }
            // The writer stops only when the socket cannot be written: the peer is gone.
            _ = &mut writer => {
                writer_done = true;
                break close_frame(close_code::NORMAL, "");
            }
            () = &mut idle => {
                let deadline = last_frame + app.idle_timeout;
                if deadline <= tokio::time::Instant::now() {
                    break close_frame(close_code::NORMAL, "heartbeat timeout");
                }
                idle.as_mut().reset(deadline);
                continue;
            }
            next = stream.next() => next,
        };
        let message = match next {
            None => break close_frame(close_code::NORMAL, ""),
            Some(Err(e)) => break read_error_close(e),
            Some(Ok(m)) => m,
        };
        if matches!(&message, Message::Pong(p) if p.as_ref() == PING_PAYLOAD) {
            continue;
        }
        // Every client frame counts for liveness.
        last_frame = tokio::time::Instant::now();
        touch_in_background(&app, &ctx);
        let reply = match message {
            Message::Text(text) => handlers::ws::frame(&app.chat, &ctx, text.as_str()).await,
            Message::Binary(_) => Some(ServerFrame::error(
                None,
                None,
                &ChatError::Invalid("frames must be text (UTF-8 JSON)".into()),
            )),
            Message::Ping(_) | Message::Pong(_) => None,
            Message::Close(_) => break close_frame(close_code::NORMAL, ""),
        };
        if let Some(reply) = reply
            && handle.queue(Bytes::from(reply.to_json())).is_err()
        {
            break close_frame(close_code::POLICY, "send queue full");
        }
    };
    let _ = close_tx.send(close);
    end_session(&app, &connection_id).await;
    drop(handle);
    // A peer that never reads can block the writer: give it a moment, then drop the socket.
    if !writer_done
        && tokio::time::timeout(Duration::from_secs(5), &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    debug!(connection.id = %connection_id, "disconnected");
}

/// Writes the connection's liveness when it is due, without holding up the frame that
/// made it due (the handler then finds it claimed; a failed write is given back, and the
/// next frame writes again).
///
/// The write waits for the writer thread's commit, and so behind whatever the writer is
/// committing: a second's acked messages took it 200 ms at 25,000 1:1 msg/s. Every
/// session touches every 15 s, and sessions that connected together touch together, so
/// whole waves of frames waited: the benchmark's failed steps had touches at p50 20 ms,
/// max 235 ms, and frames up to 261 ms (probes, removed).
fn touch_in_background(app: &Arc<App>, ctx: &Arc<ConnectionContext>) {
    let now = app.chat.now();
    if let Some(before) = ctx.claim_touch(now) {
        let (app, ctx) = (app.clone(), ctx.clone());
        tokio::spawn(async move { handlers::ws::write_touch(&app.chat, &ctx, now, before).await });
    }
}

/// How long from `now` until `at` (zero when it is past).
fn until(now: Millis, at: Millis) -> Duration {
    Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0))
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// The close for a frame the WebSocket layer could not read: too big, not UTF-8, or
/// not WebSocket at all.
fn read_error_close(e: axum::Error) -> CloseFrame {
    debug!(error = %e, "socket read failed");
    match e.into_inner().downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => {
            close_frame(close_code::TOO_BIG, "frame too large")
        }
        Some(tungstenite::Error::Utf8(_)) => {
            close_frame(close_code::INVALID_PAYLOAD, "text frame is not UTF-8")
        }
        _ => close_frame(close_code::PROTOCOL_ERROR, "unreadable frame"),
    }
}

/// Headers a reverse proxy adds (the standard one, and the common ones of nginx and
/// others): a request carrying any of them came from elsewhere.
const PROXY_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
];

/// Whether a request comes from this host and no proxy forwarded it (see
/// [`PROXY_HEADERS`]): behind a proxy on this host every request comes from loopback.
pub(crate) fn from_loopback(peer: SocketAddr, headers: &http::HeaderMap) -> bool {
    peer.ip().is_loopback() && !PROXY_HEADERS.iter().any(|name| headers.contains_key(*name))
}

/// `GET /dev/push-outbox`: the pushes that would have gone to APNs/FCM (loopback only).
/// A request a proxy forwarded (see [`PROXY_HEADERS`]) is not loopback's, even from a
/// proxy on this host.
async fn push_outbox(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: http::Method,
    headers: http::HeaderMap,
) -> Response {
    if !app.dev_endpoints || !from_loopback(peer, &headers) || method != http::Method::GET {
        return error_response(&ChatError::NotFound("no such route"));
    }
    match app.store.pushes().await {
        Ok(pushes) => {
            let pushes: Vec<_> = pushes
                .into_iter()
                .map(|p| {
                    json!({
                        "userId": p.user_id,
                        "deviceId": p.device_id,
                        "platform": p.platform,
                        "title": p.notification.title,
                        "body": p.notification.body,
                        "data": {
                            "conversationId": p.notification.conversation_id,
                            "seq": p.notification.seq,
                            "messageId": p.notification.message_id,
                        },
                        "badge": p.notification.badge,
                        "timestamp": p.notification.timestamp,
                    })
                })
                .collect();
            axum::Json(json!({ "pushes": pushes })).into_response()
        }
        Err(e) => error_response(&e.into()),
    }
}

/// `GET /metrics`: the service's metrics in Prometheus' text format, to loopback callers
/// not behind a proxy unless `CHAT_METRICS_PUBLIC` is on.
async fn metrics(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: http::Method,
    headers: http::HeaderMap,
) -> Response {
    let allowed = app.metrics_public || from_loopback(peer, &headers);
    if !allowed || method != http::Method::GET {
        return error_response(&ChatError::NotFound("no such route"));
    }
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

/// Everything else: the HTTP API, through the shared handler.
async fn no_such_route() -> Response {
    error_response(&ChatError::NotFound("no such route"))
}

async fn http_api(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // A body of a declared length is waited for only from a caller with a valid token
    // (one declared too big is refused first, as the shared handler does). A chunked
    // body must be read to be measured, so its 413 still comes before the token; its
    // connection, like any owed a body, is idle and gives way at the connection cap.
    if !HttpBody::is_end_stream(&body)
        && declared_length(&parts.headers).is_some_and(|n| n <= MAX_BODY_BYTES)
        && let Err(e) = app
            .chat
            .authenticate(chat_shared::auth::bearer_of(&parts.headers))
            .await
    {
        return error_response(&e);
    }
    let body = match tokio::time::timeout(app.listen.request_timeout, read_body(body)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return error_response(&e),
        Err(_) => return request_timeout(),
    };
    // The request is in: its connection is busy until it is answered.
    let _busy = parts.extensions.get::<Arc<Slot>>().cloned().map(Busy::new);
    let resp = handlers::http::handle(&app.chat, http::Request::from_parts(parts, body)).await;
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::from(body))
}

/// The body length `Content-Length` declares.
fn declared_length(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// 408 for a body that did not arrive in time; the connection is closed after it.
fn request_timeout() -> Response {
    let mut response = error_response(&ChatError::Invalid(
        "the request body did not arrive in time".into(),
    ));
    *response.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// Reads a request body of at most `MAX_BODY_BYTES`. A larger one is still read and
/// dropped up to `DRAIN_OVERSIZED_BYTES` before the 413 goes out: answering while the
/// client is still sending makes the close reset the connection, and the client sees
/// a broken pipe instead of the answer.
async fn read_body(body: Body) -> Result<Bytes, ChatError> {
    let mut chunks = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|_| ChatError::Invalid("the request body could not be read".into()))?;
        total += chunk.len();
        if total <= MAX_BODY_BYTES {
            kept.extend_from_slice(&chunk);
        } else if total > DRAIN_OVERSIZED_BYTES {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ChatError::PayloadTooLarge(
            "request bodies are limited to 256 KiB",
        ));
    }
    Ok(Bytes::from(kept))
}
