//! The reference "limit" server: the thinnest WebSocket fan-out on our stack (tokio, axum,
//! tungstenite) with no auth, no persistence and no protocol beyond forwarding.
//!
//! A client joins one room at the handshake (`/ws?room=R`). Every text frame it sends is
//! forwarded unchanged to the other members of the room, and answered with a tiny
//! `message.ack`, the same shape of work our server's fan-out does minus everything else.
//! Each connection has a bounded queue and one writer task, as `chat-local` does.
//!
//! `POST /v1/sync?room=R` answers the room's recent frames (kept in memory, at most
//! [`KEPT_PER_ROOM`]) as one JSON array: the floor for the offline-sync scenarios.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::serve::ListenerExt;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Frames queued per connection before it counts as a slow consumer and is dropped.
const QUEUE: usize = 1024;
/// Frames a room remembers for `/v1/sync`.
pub const KEPT_PER_ROOM: usize = 2000;

#[derive(Default)]
struct Room {
    members: RwLock<Vec<(u64, mpsc::Sender<Message>)>>,
    recent: Mutex<VecDeque<Utf8Bytes>>,
}

#[derive(Default)]
struct Rooms {
    next_id: AtomicU64,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
}

impl Rooms {
    fn room(&self, name: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        rooms.entry(name.to_owned()).or_default().clone()
    }
}

#[derive(Deserialize)]
struct RoomQuery {
    room: String,
}

/// Serves the limit server on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let app = Router::new()
        .route("/ws", any(upgrade))
        .route("/v1/sync", post(sync))
        .with_state(Arc::new(Rooms::default()));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

async fn upgrade(
    State(rooms): State<Arc<Rooms>>,
    Query(q): Query<RoomQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let room = rooms.room(&q.room);
    let id = rooms.next_id.fetch_add(1, Ordering::Relaxed);
    // The same read buffer as chat-local's (4 KiB since round eight), so idle memory and
    // the zeroing tungstenite does before each read compare like for like.
    ws.read_buffer_size(4 * 1024)
        .on_upgrade(move |socket| session(socket, room, id))
}

/// Frames written to a socket with one flush at most (as chat-local).
const WRITE_BATCH: usize = 64;

async fn session(socket: WebSocket, room: Arc<Room>, id: u64) {
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    room.members
        .write()
        .expect("room lock")
        .push((id, tx.clone()));
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        // Like chat-local: a burst of queued frames goes out with one flush.
        while let Some(frame) = rx.recv().await {
            let mut next = Some(frame);
            let mut written = 0;
            while let Some(frame) = next {
                if sink.feed(frame).await.is_err() {
                    return;
                }
                written += 1;
                next = if written < WRITE_BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
    });
    let ack = Utf8Bytes::from_static(r#"{"type":"message.ack"}"#);
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else {
            continue;
        };
        {
            let members = room.members.read().expect("room lock");
            for (other, queue) in members.iter() {
                if *other != id {
                    // A full queue is a slow consumer: the frame is dropped (the load
                    // generator reports it as loss), as a bounded server must.
                    let _ = queue.try_send(Message::Text(text.clone()));
                }
            }
        }
        {
            let mut recent = room.recent.lock().expect("recent lock");
            if recent.len() == KEPT_PER_ROOM {
                recent.pop_front();
            }
            recent.push_back(text);
        }
        if tx.send(Message::Text(ack.clone())).await.is_err() {
            break;
        }
    }
    room.members
        .write()
        .expect("room lock")
        .retain(|(other, _)| *other != id);
    drop(tx);
    let _ = writer.await;
}

async fn sync(State(rooms): State<Arc<Rooms>>, Query(q): Query<RoomQuery>) -> Response {
    let room = rooms.room(&q.room);
    let recent = room.recent.lock().expect("recent lock");
    let mut body = Vec::with_capacity(recent.iter().map(|t| t.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, frame) in recent.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(frame.as_bytes());
    }
    body.push(b']');
    ([("content-type", "application/json")], body).into_response()
}
