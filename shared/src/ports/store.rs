//! The store port, split by area: one trait per part of the data the core keeps, and
//! [`Store`], the umbrella every adapter implements in full, so the service holds one
//! `Arc<dyn Store>`. One conformance suite runs against every adapter.

use async_trait::async_trait;

use super::{
    AddMembersOutcome, AppendOutcome, AttachmentRecord, Change, ConnectionRecord,
    ConversationCursor, ConversationRecord, DetailsChange, DetailsOutcome, DeviceRecord,
    MemberRecord, MessageQuery, MessageRecord, NewConversation, NewMessage, PresenceClaim,
    PushedDevice, ReceiptUpdate, RemovedMember, Role, RoleOutcome, StoreResult,
};
use crate::ids::{AttachmentId, ConversationId, DeviceId, Millis, Seq, UserId};
use crate::protocol::PresenceStatus;

/// Conversations and their members.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
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
    /// The user's conversations by (the later of lastMessageAt and their joining, desc;
    /// id asc), after the cursor.
    async fn user_conversations(
        &self,
        user: &UserId,
        after: Option<&ConversationCursor>,
        limit: u32,
    ) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>>;
    /// Adds users to a group (existing members are left alone) unless it would then
    /// hold more than `max` members, and appends one `member_added` entry naming the
    /// users added (none when nobody was), made by `by`: the change and its entry are
    /// atomic (both or neither, also across a crash). The added members' positions start
    /// at that entry.
    async fn add_members(
        &self,
        conversation: &ConversationId,
        users: &[UserId],
        max: u64,
        by: &Change,
    ) -> StoreResult<AddMembersOutcome>;
    /// Removes a member and appends its `member_left` entry (when `by` is that member)
    /// or `member_removed`; when the last admin leaves, promotes the longest-standing
    /// member and appends a `role_changed` entry the server made (no actor) after it.
    /// Atomic like [`ConversationStore::add_members`]. `None` (and no entry) when the
    /// user was not a member.
    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        by: &Change,
    ) -> StoreResult<Option<RemovedMember>>;
    /// Gives a member of a group `role` and appends a `role_changed` entry made by `by`
    /// (atomic like [`ConversationStore::add_members`]). Nothing changes, and no entry,
    /// when the member has that role already, or when it would demote the group's last
    /// admin.
    async fn set_role(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        role: Role,
        by: &Change,
    ) -> StoreResult<RoleOutcome>;
    /// Changes a group's name and avatar and appends a `details_changed` entry made by
    /// `by` with both as they are after it (atomic like
    /// [`ConversationStore::add_members`]); nothing, and no entry, when it has those
    /// details already. A new avatar is claimed (it must be `by`'s attachment of this
    /// conversation used by nothing, else [`DetailsOutcome::Refused`]); the one it
    /// replaces is released.
    async fn set_details(
        &self,
        conversation: &ConversationId,
        change: &DetailsChange,
        by: &Change,
    ) -> StoreResult<DetailsOutcome>;
    /// Mutes the conversation for the member until `until` (0 unmutes, `MUTED_FOREVER`
    /// until unmuted); false when not a member.
    async fn set_muted(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        until: Millis,
    ) -> StoreResult<bool>;
    /// Of `candidates`, the users who share at least one conversation with `user`.
    async fn users_sharing_conversation(
        &self,
        user: &UserId,
        candidates: &[UserId],
    ) -> StoreResult<Vec<UserId>>;
    /// Users sharing a conversation of at most `max_members` members with `user`.
    async fn contacts(&self, user: &UserId, max_members: u64) -> StoreResult<Vec<UserId>>;
}

/// Entries of conversations' logs (messages, edits, deletes, reactions): the append
/// that gives each its seq, reads, idempotency and retention.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Allocates the next seq and persists the entry, the conversation's counter, the
    /// change-feed record and what the entry changes atomically: a `message` moves
    /// `lastMessageAt`, the message count and the sender's positions (to its seq, and
    /// `readMessages` to the new count); an edit replaces its target's content; a delete
    /// erases its target's content and its edits' and drops its reactions; a reaction
    /// adds or removes one (user, emoji) of its target. Idempotent per (conversation,
    /// sender, clientMessageId), checked before anything else. An entry naming an
    /// earlier message (`targetSeq`, or a message's `replyTo`) must pass
    /// [`crate::domain::check_entry`] against that message as it is at this seq (else
    /// [`AppendOutcome::Refused`] and nothing stored). A `message` entry's attachments
    /// ([`crate::protocol::Content::attachment_ids`]) must be the sender's, of this
    /// conversation and used by nothing else: the append claims them for its seq, or is
    /// refused ([`super::Refusal::Invalid`]) with nothing stored.
    async fn append_message(&self, message: &NewMessage) -> StoreResult<AppendOutcome>;
    /// The entry a sender stored under a clientMessageId, if any, for the ack of a retry
    /// (which carries no content): its content may predate a later edit or delete for as
    /// long as the store keeps recent entries in memory.
    async fn find_by_client_id(
        &self,
        conversation: &ConversationId,
        sender: &UserId,
        client_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>>;
    /// Entries in ascending seq order, and whether more exist in the asked direction.
    /// Messages come in their current state ([`MessageRecord::state`]) as `viewer` sees
    /// them (`mine` in reactions), read with a bounded number of queries per call, never
    /// one per entry.
    async fn messages(
        &self,
        conversation: &ConversationId,
        viewer: &UserId,
        query: MessageQuery,
    ) -> StoreResult<(Vec<MessageRecord>, bool)>;
    /// The conversation's newest `message` entry with `timestamp >= min_timestamp`, in its
    /// current state (without reactions), if any.
    async fn last_message(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<MessageRecord>>;
    /// Who reacted with `emoji` to the message at `seq`, in userId order, after `after`.
    async fn reactors(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        emoji: &str,
        after: Option<&UserId>,
        limit: u32,
    ) -> StoreResult<Vec<UserId>>;
    /// The lowest seq with `timestamp >= min_timestamp`, if any.
    async fn first_retained_seq(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<Seq>>;
    /// Deletes entries older than `before`; returns how many.
    async fn expire_messages(&self, before: Millis) -> StoreResult<u64>;
}

/// Attachments' records (PROTOCOL.md 8.3; their bytes are the [`super::BlobStore`]'s).
/// Not part of [`Store`]: a server has attachments when it has both (see
/// `service::AttachmentPorts`).
/// A `message` entry uses the attachments its content names: the append claims them
/// ([`MessageStore::append_message`]).
#[async_trait]
pub trait AttachmentStore: Send + Sync + 'static {
    /// Records a new attachment, used by nothing yet.
    async fn create_attachment(&self, attachment: &AttachmentRecord) -> StoreResult<()>;
    /// The attachments of these ids that exist, each with what uses it, including the
    /// messages already acked (in any order).
    async fn attachments(&self, ids: &[AttachmentId]) -> StoreResult<Vec<AttachmentRecord>>;
    /// The attachments the message at `seq` uses (its attachment and thumbnail), also
    /// once the message is deleted, until they are forgotten.
    async fn message_attachments(
        &self,
        conversation: &ConversationId,
        seq: Seq,
    ) -> StoreResult<Vec<AttachmentId>>;
    /// Up to `limit` attachments whose bytes are to go: unused ones created before
    /// `unused_before`, and those of messages sent before `expired_before` (expired).
    async fn doomed_attachments(
        &self,
        unused_before: Millis,
        expired_before: Millis,
        limit: u32,
    ) -> StoreResult<Vec<AttachmentId>>;
    /// Forgets attachments whose bytes are deleted.
    async fn forget_attachments(&self, ids: &[AttachmentId]) -> StoreResult<()>;
}

/// Members' receipt positions and what follows from them.
#[async_trait]
pub trait ReceiptStore: Send + Sync + 'static {
    /// Moves a member's positions forward (clamped to lastSeq; read implies delivered),
    /// and `readMessages` to the message count at the new `readUpTo`. `None` when not a
    /// member.
    async fn update_receipts(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        delivered_up_to: Option<Seq>,
        read_up_to: Option<Seq>,
    ) -> StoreResult<Option<ReceiptUpdate>>;
    /// Sum of the user's unread counts ([`MemberRecord::unread`]) over their
    /// conversations (the push badge).
    async fn total_unread(&self, user: &UserId) -> StoreResult<u64>;
}

/// The record of which messages' pushes were sent and to whom, so a replayed feed does
/// not push again and a delete can replace the pushes of the message it deletes.
#[async_trait]
pub trait PushLedger: Send + Sync + 'static {
    /// The devices pushed one message, once all its pushes were sent (see
    /// [`PushLedger::record_pushes_sent`]), `None` before: a redelivery of the change feed
    /// skips them, a delete of the message replaces them on these devices.
    async fn pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
    ) -> StoreResult<Option<Vec<PushedDevice>>>;
    /// Records that every push of one message was sent, to `devices`. Written after the
    /// pushes, so a process that dies in between sends them again when the feed is
    /// replayed: pushes are at least once, never lost (a repeat carries the same
    /// messageId, the collapse key). The first record stands.
    async fn record_pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        now: Millis,
        devices: &[PushedDevice],
    ) -> StoreResult<()>;
}

/// Stateless throttles: typing and the send rate, counted in the store so every process
/// (and every Lambda) sees one count.
#[async_trait]
pub trait ThrottleStore: Send + Sync + 'static {
    /// Counts one `isTyping: true` in the member's current window of `window_ms` and
    /// notes the member as seen typing until `shown_until`; `Some(false)` (and nothing
    /// noted) when `max` were already counted, `None` when not a member.
    async fn typing_permit(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        now: Millis,
        window_ms: i64,
        max: u32,
        shown_until: Millis,
    ) -> StoreResult<Option<bool>>;
    /// Ends the member's typing state: `Some(true)` when the others were still seeing
    /// them typing at `now` (a relayed `true` not yet expired), `Some(false)` when not,
    /// `None` when not a member.
    async fn typing_stop(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        now: Millis,
    ) -> StoreResult<Option<bool>>;
    /// Counts one send in the user's fixed window starting at `window_start`; returns the
    /// count including this one.
    async fn count_send(&self, user: &UserId, window_start: Millis) -> StoreResult<u64>;
}

/// WebSocket connections, users' last-seen times (presence) and revoked sessions.
#[async_trait]
pub trait ConnectionStore: Send + Sync + 'static {
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
    /// Refuses `user`'s tokens issued before `before` from now on (their sessions are
    /// revoked). A revocation never moves the time back.
    async fn revoke_sessions(&self, user: &UserId, before: Millis) -> StoreResult<()>;
    /// Since when `user`'s tokens are refused, if their sessions were ever revoked. A
    /// strongly consistent read: it decides whether a token is accepted.
    async fn sessions_revoked_before(&self, user: &UserId) -> StoreResult<Option<Millis>>;
    /// Asks to announce that `user` is now `status`: [`PresenceClaim::Announce`] (and
    /// `status` recorded as announced at `now`, any claim to settle cleared) when the last
    /// announcement is at least `window_ms` old; else [`PresenceClaim::Defer`] to the one caller that gets to
    /// settle the change at the window's end (a claim to settle left unsettled for
    /// [`PRESENCE_SETTLE_STALE_MS`] is given to the next caller), and
    /// [`PresenceClaim::Skip`] to the others.
    async fn claim_presence(
        &self,
        user: &UserId,
        status: PresenceStatus,
        now: Millis,
        window_ms: i64,
    ) -> StoreResult<PresenceClaim>;
    /// Settles a deferred change: clears the claim to settle and, when `status` is not
    /// the last announced, records it as announced at `now` and answers `true` (the
    /// caller announces it).
    async fn settle_presence(
        &self,
        user: &UserId,
        status: PresenceStatus,
        now: Millis,
    ) -> StoreResult<bool>;
}

/// A claim to settle a presence change that nobody settled for this long (its holder
/// died) goes to the next caller.
pub const PRESENCE_SETTLE_STALE_MS: Millis = 10_000;

/// Devices registered for push.
#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    /// Registers or updates a device; a token held by another user's device moves to
    /// this one (that device is removed).
    async fn put_device(&self, device: &DeviceRecord) -> StoreResult<()>;
    /// Removes a device; false when it did not exist.
    async fn delete_device(&self, user: &UserId, device: &DeviceId) -> StoreResult<bool>;
    /// All devices of these users.
    async fn devices_of(&self, users: &[UserId]) -> StoreResult<Vec<DeviceRecord>>;
}

/// Everything the core stores: every area's trait. Adapters implement the areas; this
/// comes with them.
pub trait Store:
    ConversationStore
    + MessageStore
    + ReceiptStore
    + PushLedger
    + ThrottleStore
    + ConnectionStore
    + DeviceStore
{
}

impl<T> Store for T where
    T: ConversationStore
        + MessageStore
        + ReceiptStore
        + PushLedger
        + ThrottleStore
        + ConnectionStore
        + DeviceStore
{
}
