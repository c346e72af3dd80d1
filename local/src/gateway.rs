//! The in-process connection gateway: each live socket has a bounded queue of outgoing
//! frames drained by its writer task. A client that stops reading fills its queue and
//! is disconnected rather than stalling delivery to anyone else; it recovers by sync.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chat_shared::ports::{CloseReason, ConnectionGateway, GatewayError};
use foldhash::HashMap;
use tokio::sync::{Notify, mpsc};

/// Frames a connection may have queued before it counts as a slow consumer.
pub const SEND_QUEUE_FRAMES: usize = 1024;
/// Bytes a connection may have queued before it counts as a slow consumer: 1024 frames
/// of 16 KB held 16 MB for a client that did not read. 4 MiB is still 256 of the largest
/// frames: a client that reads, but a burst behind, is not cut off (1 MiB closed a
/// reading client of a group sending the largest messages back to back).
pub const SEND_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// The gateway's handle on one socket.
#[derive(Clone)]
pub struct ConnectionHandle {
    frames: mpsc::Sender<Bytes>,
    /// Bytes in the queue, with [`SendQueue`].
    queued_bytes: Arc<AtomicUsize>,
    /// Notified to close the socket (slow consumer, shutdown, explicit close).
    pub close: Arc<Notify>,
    /// The WebSocket close code to send when `close` is notified.
    close_code: Arc<AtomicU16>,
}

/// Close codes the server sends (RFC 6455 section 7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    /// The token the socket was opened with expired: reconnect with a fresh one.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The user revoked their sessions (or removed this device): sign in again.
    pub const REVOKED: u16 = 4003;

    /// The reason sent with a close the server asked for.
    pub fn reason(code: u16) -> &'static str {
        match code {
            TOKEN_EXPIRED => "token expired",
            REVOKED => "session revoked",
            GOING_AWAY => "server shutting down",
            _ => "closed by server",
        }
    }
}

/// The receiving end of a socket's queue, for its writer.
pub struct SendQueue {
    frames: mpsc::Receiver<Bytes>,
    queued_bytes: Arc<AtomicUsize>,
}

impl SendQueue {
    /// The next frame; `None` once the gateway let go of the socket.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let frame = self.frames.recv().await?;
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let frame = self.frames.try_recv().ok()?;
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }
}

impl ConnectionHandle {
    /// Queues a frame (never waits). A queue over [`SEND_QUEUE_FRAMES`] or
    /// [`SEND_QUEUE_BYTES`] closes the socket: its client stopped reading.
    pub fn queue(&self, frame: Bytes) -> Result<(), GatewayError> {
        let len = frame.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        let sent = if before + len > SEND_QUEUE_BYTES {
            Err(mpsc::error::TrySendError::Full(frame))
        } else {
            self.frames.try_send(frame)
        };
        match sent {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                match e {
                    mpsc::error::TrySendError::Closed(_) => Err(GatewayError::Gone),
                    mpsc::error::TrySendError::Full(_) => {
                        // The session notices, closes the socket and runs $disconnect.
                        self.close_with(close_code::POLICY);
                        Err(GatewayError::Other(Box::new(QueueFull)))
                    }
                }
            }
        }
    }

    /// Asks the session to close its socket with `code`.
    pub fn close_with(&self, code: u16) {
        self.close_code.store(code, Ordering::SeqCst);
        self.close.notify_one();
    }

    /// The code the close was asked with.
    pub fn close_code(&self) -> u16 {
        self.close_code.load(Ordering::SeqCst)
    }
}

/// Live sockets of this process by connection id.
#[derive(Default)]
pub struct LocalGateway {
    connections: Mutex<HashMap<String, ConnectionHandle>>,
}

#[derive(Debug, thiserror::Error)]
#[error("send queue full: slow consumer disconnected")]
struct QueueFull;

impl LocalGateway {
    /// Registers a socket; returns the receiving end of its queue and its close signal.
    pub fn register(&self, connection_id: &str) -> (SendQueue, ConnectionHandle) {
        let (tx, rx) = mpsc::channel(SEND_QUEUE_FRAMES);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let queue = SendQueue {
            frames: rx,
            queued_bytes: queued_bytes.clone(),
        };
        let handle = ConnectionHandle {
            frames: tx,
            queued_bytes,
            close: Arc::new(Notify::new()),
            close_code: Arc::new(AtomicU16::new(close_code::NORMAL)),
        };
        self.lock().insert(connection_id.to_owned(), handle.clone());
        (queue, handle)
    }

    /// Forgets a socket.
    pub fn unregister(&self, connection_id: &str) {
        self.lock().remove(connection_id);
    }

    /// Asks every socket to close (shutdown).
    pub fn close_all(&self) {
        for handle in self.lock().values() {
            handle.close_with(close_code::GOING_AWAY);
        }
    }

    /// How many sockets are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ConnectionHandle>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, connection_id: &str) -> Option<ConnectionHandle> {
        self.lock().get(connection_id).cloned()
    }
}

#[async_trait]
impl ConnectionGateway for LocalGateway {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), GatewayError> {
        enqueue(self.lock().get(connection_id), frame)
    }

    /// Queues every socket's frames under one lock, without a future per socket: its
    /// writer then finds them all at once and sends them with one flush. `post_many` (a
    /// message to a group of 100 is 100 posts) comes here too.
    async fn post_batches(&self, posts: &[(&str, &[Bytes])]) -> Vec<(usize, GatewayError)> {
        let sockets = self.lock();
        posts
            .iter()
            .enumerate()
            .filter_map(|(i, (id, frames))| {
                let socket = sockets.get(*id);
                frames
                    .iter()
                    .find_map(|frame| enqueue(socket, frame.clone()).err())
                    .map(|e| (i, e))
            })
            .collect()
    }

    async fn close(&self, connection_id: &str, reason: CloseReason) -> Result<(), GatewayError> {
        let handle = self.handle(connection_id).ok_or(GatewayError::Gone)?;
        handle.close_with(match reason {
            CloseReason::Replaced => close_code::POLICY,
            CloseReason::TokenExpired => close_code::TOKEN_EXPIRED,
            CloseReason::Revoked => close_code::REVOKED,
            // The session's own idle timer closes silent sockets; this only mirrors it.
            CloseReason::Silent => close_code::NORMAL,
        });
        Ok(())
    }
}

/// Queues a frame on a socket's send queue (never waits: a full queue closes the socket).
fn enqueue(handle: Option<&ConnectionHandle>, frame: Bytes) -> Result<(), GatewayError> {
    handle.ok_or(GatewayError::Gone)?.queue(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_full_at_its_byte_bound_before_its_frame_bound() {
        let gateway = LocalGateway::default();
        let (mut queue, handle) = gateway.register("c1");
        let frame = Bytes::from(vec![b'x'; 16 * 1024]);
        let mut queued = 0;
        while handle.queue(frame.clone()).is_ok() {
            queued += 1;
        }
        assert_eq!(
            queued,
            SEND_QUEUE_BYTES / frame.len(),
            "16 KB frames in 4 MiB"
        );
        assert_eq!(
            handle.close_code(),
            close_code::POLICY,
            "the slow consumer is closed"
        );
        // What the writer takes out makes room again.
        assert!(queue.try_recv().is_some());
        assert!(handle.queue(frame).is_ok());
    }

    #[test]
    fn small_frames_are_bounded_by_count() {
        let gateway = LocalGateway::default();
        let (_queue, handle) = gateway.register("c1");
        let mut queued = 0;
        while handle.queue(Bytes::from_static(b"{}")).is_ok() {
            queued += 1;
        }
        assert_eq!(queued, SEND_QUEUE_FRAMES);
    }
}
