//! The chat service: every operation of the protocol, over the ports. Handlers (WebSocket,
//! HTTP, fan-out) decode their input, call one method here and encode the result.
//!
//! # Layout
//! One `impl Chat` block per area: [`connections`](self) (connect, disconnect, posting
//! frames), `presence`, `conversations` (and members), `messages` (send, history),
//! `fanout` (stored messages to connections and pushes), `direct` (the send path's own
//! posts, ahead of the fan-out), `events` (receipts, typing),
//! `sync`, `devices`, `sessions` (tokens: authentication and revocation). The service's fields are private: callers go through its methods.

use std::sync::Arc;

use crate::auth::TokenVerifier;
use crate::config::Limits;
use crate::error::{ChatError, ChatResult};
use crate::ids::Millis;
use crate::ports::{
    AttachmentStore, BlobStore, Clock, ConnectionGateway, DirectMarks, PushSender, Store,
};

mod attachments;
mod budget;
mod connections;
mod conversations;
mod devices;
mod direct;
mod events;
mod fanout;
mod messages;
mod presence;
mod sessions;
mod sync;

pub use attachments::{AttachmentUpload, DownloadUrl, NewAttachment, Upload};
pub use conversations::{ConversationPage, CreateConversation, MemberPage, Mute};
pub use messages::{HistoryQuery, ReactorPage, message_view};
pub use presence::PendingPresence;
pub use sync::SyncCursor;

/// The adapters the service runs over: one per port.
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub gateway: Arc<dyn ConnectionGateway>,
    pub push: Arc<dyn PushSender>,
    pub clock: Arc<dyn Clock>,
    /// `None` on a server without attachments: it refuses attachment content and
    /// answers the attachment routes `UNAVAILABLE`.
    pub attachments: Option<AttachmentPorts>,
    /// `Some` where the change feed is a hop away (DynamoDB Streams): the send path then
    /// posts entries of small conversations itself (`Limits::direct_fanout_max_members`)
    /// and marks what it posted, and the fan-out posts the rest.
    pub direct: Option<Arc<dyn DirectMarks>>,
}

/// Attachments' records and their bytes.
#[derive(Clone)]
pub struct AttachmentPorts {
    pub store: Arc<dyn AttachmentStore>,
    pub blobs: Arc<dyn BlobStore>,
}

/// The service over its ports. Cheap to share behind an `Arc`.
pub struct Chat {
    store: Arc<dyn Store>,
    gateway: Arc<dyn ConnectionGateway>,
    push: Arc<dyn PushSender>,
    clock: Arc<dyn Clock>,
    attachments: Option<AttachmentPorts>,
    direct: Option<Arc<dyn DirectMarks>>,
    limits: Limits,
    tokens: TokenVerifier,
    revocations: sessions::Revocations,
}

impl Chat {
    /// The service over `ports`, with its limits and the verifier of its tokens.
    pub fn new(ports: Ports, limits: Limits, tokens: TokenVerifier) -> Self {
        let Ports {
            store,
            gateway,
            push,
            clock,
            attachments,
            direct,
        } = ports;
        Self {
            store,
            gateway,
            push,
            clock,
            attachments,
            direct,
            limits,
            tokens,
            revocations: sessions::Revocations::default(),
        }
    }

    /// The limits and policies the service enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The attachment ports, or `UNAVAILABLE` on a server without attachments.
    fn attachment_ports(&self) -> ChatResult<&AttachmentPorts> {
        self.attachments.as_ref().ok_or(ChatError::Unavailable(
            "attachments are not enabled on this server",
        ))
    }

    /// Now, by the service's clock.
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }
}
