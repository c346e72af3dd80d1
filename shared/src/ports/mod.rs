//! The capabilities the core needs from the outside world, one trait each: the store
//! (split by area, see [`store`]), the change feed, the connection gateway (sockets), the
//! push sender, the blob store, the identity provider's keys and the clock. Every trait has real adapters (SQLite and in-process in
//! `chat-sqlite` and `chat-local`; DynamoDB, API Gateway and SNS in `chat-aws`).
//!
//! # Layout
//! - [`records`]: what the store takes and gives.
//! - [`store`]: the store, one trait per area, and the [`Store`] umbrella.
//! - [`feed`]: the change feed the fan-out reads (DynamoDB Streams on AWS).
//! - [`direct`]: how far the send path posted, for the feed's fan-out (AWS only).
//! - [`blobs`]: attachments' bytes.
//! - [`keys`]: an identity provider's public keys (JWKS).
//! - [`gateway`], [`push`], [`clock`]: sockets, push notifications, time.

mod blobs;
mod clock;
mod direct;
mod feed;
mod gateway;
mod keys;
mod push;
mod records;
pub mod store;

pub use blobs::{BlobError, BlobStore, BlobUse, UploadUrl};
pub use clock::{Clock, SystemClock};
pub use direct::DirectMarks;
pub use feed::{ChangeFeed, FeedItem};
pub use gateway::{CloseReason, ConnectionGateway, GatewayError};
pub use keys::{KeySetSource, SecretSource};
pub use push::{PushError, PushNotification, PushSender};
pub use records::*;
pub use store::{
    AttachmentStore, ConnectionStore, ConversationStore, DeviceStore, MessageStore,
    PRESENCE_SETTLE_STALE_MS, PushLedger, ReceiptStore, Store, ThrottleStore,
};
