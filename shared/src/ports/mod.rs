//! The capabilities the core needs from the outside world, one trait each: the store,
//! the connection gateway (sockets), the push sender and the clock. Every trait has real
//! adapters (SQLite and in-process here; DynamoDB, API Gateway and SNS on AWS).

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::StoreError;
use crate::ids::{ConversationId, DeviceId, Millis, Seq, UserId};
use crate::protocol::{Content, Positions};

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Direct (exactly two members, idempotent per pair) or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    Direct,
    Group,
}

impl ConversationKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
        }
    }

    /// Parses the stored/wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(ConversationKind::Direct),
            "group" => Some(ConversationKind::Group),
            _ => None,
        }
    }
}

/// A conversation's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub created_at: Millis,
    /// The sequence counter: the seq of the newest message (0 before the first).
    pub last_seq: Seq,
    /// Time of the newest message, or of creation.
    pub last_message_at: Millis,
    pub member_count: u64,
}

/// A member's role in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A membership: role, receipt positions and settings of one user in one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub role: Role,
    pub joined_at: Millis,
    pub delivered_up_to: Seq,
    pub read_up_to: Seq,
    pub muted: bool,
}

impl MemberRecord {
    /// The member's receipt positions.
    pub fn positions(&self) -> Positions {
        Positions {
            delivered_up_to: self.delivered_up_to,
            read_up_to: self.read_up_to,
        }
    }
}

/// A stored message. Also the record the change feed (outbox / DynamoDB stream) carries
/// to the fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub conversation_id: ConversationId,
    pub seq: Seq,
    pub message_id: String,
    pub sender_id: UserId,
    pub client_message_id: String,
    pub content: Content,
    pub reply_to: Option<Seq>,
    pub timestamp: Millis,
    /// The connection that sent it, which gets the ack instead of `message.new`.
    pub origin_connection: Option<String>,
}

/// A message to append; the store assigns `seq` and the final timestamp.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub message_id: String,
    pub sender_id: UserId,
    pub client_message_id: String,
    pub content: Content,
    pub reply_to: Option<Seq>,
    pub now: Millis,
    pub origin_connection: Option<String>,
    /// Messages older than this are expired (for the record's `expiresAt` on stores with TTL).
    pub expires_at: Option<Millis>,
    /// The conversation's `(lastSeq, lastMessageAt)` as the caller last read them: a store
    /// that must read the counter before writing may try these first (a stale hint only
    /// costs a retry).
    pub hint: Option<(Seq, Millis)>,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new message with the next seq, now durable.
    Stored(MessageRecord),
    /// The same (conversation, sender, clientMessageId) was stored before: the original.
    Duplicate(MessageRecord),
    /// The sender is not (or no longer) a member.
    NotMember,
}

/// A new conversation to create.
#[derive(Debug, Clone)]
pub struct NewConversation {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub now: Millis,
    /// In join order; the first is the creator. Groups: the creator is admin.
    pub members: Vec<UserId>,
}

/// What adding members did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddMembersOutcome {
    /// The users that were not members before and are now.
    Added(Vec<UserId>),
    /// The group would exceed `max` members.
    OverCap,
}

/// What removing a member did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedMember {
    /// The member promoted to admin because the last admin left, if any.
    pub promoted: Option<UserId>,
}

/// What a receipt update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptUpdate {
    /// The conversation as read by the update (saves the caller a read).
    pub conversation: ConversationRecord,
    pub positions: Positions,
    /// False when nothing moved (lower or equal values are accepted and ignored).
    pub changed: bool,
}

/// A live (or recently live) WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub connection_id: String,
    pub user_id: UserId,
    pub device_id: Option<DeviceId>,
    pub connected_at: Millis,
    /// Time of the last client frame (or of the connect): liveness.
    pub last_frame_at: Millis,
}

/// A push platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Apns,
    ApnsSandbox,
    Fcm,
}

impl Platform {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Apns => "apns",
            Platform::ApnsSandbox => "apns_sandbox",
            Platform::Fcm => "fcm",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "apns" => Some(Platform::Apns),
            "apns_sandbox" => Some(Platform::ApnsSandbox),
            "fcm" => Some(Platform::Fcm),
            _ => None,
        }
    }
}

/// A device registered for push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub platform: Platform,
    pub token: String,
    /// Platform endpoint handle (SNS endpoint ARN on AWS), if the sender made one.
    pub endpoint: Option<String>,
    pub updated_at: Millis,
}

/// One page position for the conversation list: (lastMessageAt, id) of the last item seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationCursor {
    pub last_message_at: Millis,
    pub conversation_id: ConversationId,
}

/// Which messages to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageQuery {
    /// Only seqs greater than this.
    pub after: Option<Seq>,
    /// Only seqs lower than this.
    pub before: Option<Seq>,
    /// At most this many.
    pub limit: u32,
    /// Take the newest of the range (history's default and `before`) rather than the oldest.
    pub newest: bool,
    /// Only messages with `timestamp >= min_timestamp` (retention).
    pub min_timestamp: Millis,
}

/// Everything the core stores. One conformance suite runs against every adapter.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Conversations and membership.

    /// Creates a group with its members (the first is admin).
    async fn create_group(&self, new: &NewConversation) -> StoreResult<ConversationRecord>;
    /// Creates the direct conversation of the pair, or returns the existing one
    /// (`false` when it existed). Exactly one per unordered pair, even under races.
    async fn create_direct(&self, new: &NewConversation)
    -> StoreResult<(ConversationRecord, bool)>;
    /// A conversation with the caller's membership: `None` when either is missing.
    async fn membership(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<(ConversationRecord, MemberRecord)>>;
    /// A conversation, whoever asks.
    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<ConversationRecord>>;
    /// Members in userId order, after `after` (the last user id of the previous page).
    async fn members(
        &self,
        conversation: &ConversationId,
        after: Option<&UserId>,
        limit: u32,
    ) -> StoreResult<Vec<MemberRecord>>;
    /// The user's conversations by (lastMessageAt desc, id asc), after the cursor.
    async fn user_conversations(
        &self,
        user: &UserId,
        after: Option<&ConversationCursor>,
        limit: u32,
    ) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>>;
    /// Adds users to a group (existing members are left alone) unless it would then
    /// hold more than `max` members.
    async fn add_members(
        &self,
        conversation: &ConversationId,
        users: &[UserId],
        now: Millis,
        max: u64,
    ) -> StoreResult<AddMembersOutcome>;
    /// Removes a member; promotes the longest-standing member when the last admin
    /// leaves. `None` when the user was not a member.
    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<RemovedMember>>;
    /// Sets the member's mute flag; false when not a member.
    async fn set_muted(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        muted: bool,
    ) -> StoreResult<bool>;
    /// Of `candidates`, the users who share at least one conversation with `user`.
    async fn users_sharing_conversation(
        &self,
        user: &UserId,
        candidates: &[UserId],
    ) -> StoreResult<Vec<UserId>>;
    /// Users sharing a conversation of at most `max_members` members with `user`.
    async fn contacts(&self, user: &UserId, max_members: u64) -> StoreResult<Vec<UserId>>;

    // Messages and receipts.

    /// Allocates the next seq and persists the message, the conversation's counter, the
    /// sender's positions and the change-feed record atomically. Idempotent per
    /// (conversation, sender, clientMessageId).
    async fn append_message(&self, message: &NewMessage) -> StoreResult<AppendOutcome>;
    /// The message a sender stored under a clientMessageId, if any.
    async fn find_by_client_id(
        &self,
        conversation: &ConversationId,
        sender: &UserId,
        client_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>>;
    /// Messages in ascending seq order, and whether more exist in the asked direction.
    async fn messages(
        &self,
        conversation: &ConversationId,
        query: MessageQuery,
    ) -> StoreResult<(Vec<MessageRecord>, bool)>;
    /// The lowest seq with `timestamp >= min_timestamp`, if any.
    async fn first_retained_seq(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<Seq>>;
    /// Moves a member's positions forward (clamped to lastSeq; read implies delivered).
    /// `None` when not a member.
    async fn update_receipts(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        delivered_up_to: Option<Seq>,
        read_up_to: Option<Seq>,
    ) -> StoreResult<Option<ReceiptUpdate>>;
    /// Sum of `lastSeq - readUpTo` over the user's conversations (the push badge).
    async fn total_unread(&self, user: &UserId) -> StoreResult<u64>;
    /// Whether every push of one message was sent already (see
    /// [`Store::record_pushes_sent`]): a redelivery of the change feed skips them.
    async fn pushes_sent(&self, conversation: &ConversationId, seq: Seq) -> StoreResult<bool>;
    /// Records that every push of one message was sent. Written after the pushes, so a
    /// process that dies in between sends them again when the feed is replayed: pushes
    /// are at least once, never lost (a repeat carries the same messageId).
    async fn record_pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        now: Millis,
    ) -> StoreResult<()>;
    /// Deletes messages older than `before`; returns how many.
    async fn expire_messages(&self, before: Millis) -> StoreResult<u64>;

    // Throttles.

    /// Counts one `isTyping: true` in the member's current window of `window_ms`;
    /// `Some(false)` when `max` were already counted, `None` when not a member.
    async fn typing_permit(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        now: Millis,
        window_ms: i64,
        max: u32,
    ) -> StoreResult<Option<bool>>;
    /// Counts one send in the user's fixed window starting at `window_start`; returns the
    /// count including this one.
    async fn count_send(&self, user: &UserId, window_start: Millis) -> StoreResult<u64>;

    // Connections and presence.

    /// Records a new connection.
    async fn put_connection(&self, connection: &ConnectionRecord) -> StoreResult<()>;
    /// A connection by id.
    async fn connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>>;
    /// Marks a client frame on `user`'s connection (liveness).
    async fn touch_connection(
        &self,
        connection_id: &str,
        user: &UserId,
        now: Millis,
    ) -> StoreResult<()>;
    /// Deletes a connection; returns it when it existed.
    async fn delete_connection(&self, connection_id: &str)
    -> StoreResult<Option<ConnectionRecord>>;
    /// All connections of these users.
    async fn connections_of(&self, users: &[UserId]) -> StoreResult<Vec<ConnectionRecord>>;
    /// Records when a user was last seen (their last frame or close).
    async fn set_last_seen(&self, user: &UserId, at: Millis) -> StoreResult<()>;
    /// Last-seen times of these users (users never seen are left out).
    async fn last_seen(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, Millis)>>;

    // Devices.

    /// Registers or updates a device; a token held by another user's device moves to
    /// this one (that device is removed).
    async fn put_device(&self, device: &DeviceRecord) -> StoreResult<()>;
    /// Removes a device; false when it did not exist.
    async fn delete_device(&self, user: &UserId, device: &DeviceId) -> StoreResult<bool>;
    /// All devices of these users.
    async fn devices_of(&self, users: &[UserId]) -> StoreResult<Vec<DeviceRecord>>;
}

/// Why a post to a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The connection no longer exists (API Gateway 410, or a closed local socket).
    #[error("connection is gone")]
    Gone,
    /// Anything else; the connection may still exist.
    #[error("gateway: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Delivers frames to WebSocket connections.
#[async_trait]
pub trait ConnectionGateway: Send + Sync + 'static {
    /// Sends one text frame (JSON) to a connection.
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), GatewayError>;
    /// Sends one frame to many connections and answers with the posts that failed, by
    /// index into `connection_ids`. By default the posts run concurrently, one by one;
    /// a gateway that can reach every connection at once (the local one) does it in one go.
    async fn post_many(
        &self,
        connection_ids: &[&str],
        frame: &Bytes,
    ) -> Vec<(usize, GatewayError)> {
        let posts: Vec<(&str, &[Bytes])> = connection_ids
            .iter()
            .map(|id| (*id, std::slice::from_ref(frame)))
            .collect();
        self.post_batches(&posts).await
    }
    /// Sends each connection its frames, in order, and answers with the connections
    /// whose posts failed (by index into `posts`, with the first failure: the frames
    /// after it were not sent). By default connections are posted to concurrently, each
    /// one's frames one after another; the local gateway queues them all in one go.
    async fn post_batches(&self, posts: &[(&str, &[Bytes])]) -> Vec<(usize, GatewayError)> {
        let posts = posts.iter().map(|(id, frames)| async move {
            for frame in *frames {
                self.post(id, frame.clone()).await?;
            }
            Ok::<(), GatewayError>(())
        });
        futures_util::future::join_all(posts)
            .await
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.err().map(|e| (i, e)))
            .collect()
    }
    /// Closes a connection.
    async fn close(&self, connection_id: &str) -> Result<(), GatewayError>;
}

/// A push notification for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushNotification {
    pub title: String,
    pub body: String,
    pub conversation_id: ConversationId,
    pub seq: Seq,
    pub message_id: String,
    pub badge: u64,
    pub timestamp: Millis,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The platform says this device's endpoint is disabled or gone: remove the device.
    #[error("push endpoint is disabled or gone")]
    EndpointGone,
    #[error("push: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Sends push notifications to offline devices.
#[async_trait]
pub trait PushSender: Send + Sync + 'static {
    /// Prepares a device for pushes (SNS: creates or updates its platform endpoint) and
    /// returns the endpoint handle to store with it. Senders without endpoints keep none.
    async fn register(&self, device: &DeviceRecord) -> Result<Option<String>, PushError> {
        let _ = device;
        Ok(None)
    }

    /// Pushes one notification to one device.
    async fn push(
        &self,
        device: &DeviceRecord,
        notification: &PushNotification,
    ) -> Result<(), PushError>;
}

/// The time, injectable for tests.
pub trait Clock: Send + Sync + 'static {
    /// Unix milliseconds now.
    fn now_ms(&self) -> Millis;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis)
    }
}
