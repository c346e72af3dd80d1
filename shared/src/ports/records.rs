//! The records the store ports take and give.

use crate::error::StoreError;
use crate::ids::{AttachmentId, ConversationId, DeviceId, Millis, Seq, UserId};
use crate::protocol::{AttachmentInfo, Entry, Positions, SystemChange, SystemEvent};

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
    /// The sequence counter: the seq of the newest entry (0 before the first).
    pub last_seq: Seq,
    /// Time of the newest `message` entry, or of creation.
    pub last_message_at: Millis,
    /// How many `message` entries the log has had (expired ones too): with a member's
    /// [`MemberRecord::read_messages`], their unread count.
    pub message_count: u64,
    pub member_count: u64,
    /// A group's picture: an image attachment of the conversation.
    pub avatar: Option<AttachmentId>,
    /// How far the send path's direct delivery has posted (see [`DirectMarks`]); `None`
    /// in a store without direct delivery, or before its first mark.
    ///
    /// [`DirectMarks`]: super::DirectMarks
    pub posted: Option<Posted>,
}

/// The newest mark of [`super::DirectMarks::mark_posted`]: every entry up to `seq` was
/// posted to the live connections of the members, and `unreached` are the members
/// entry `seq` still owes a push (no live connection, not muted, not its sender).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Posted {
    pub seq: Seq,
    pub unreached: Vec<UserId>,
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
    /// How many `message` entries the log had up to `read_up_to`.
    pub read_messages: u64,
    /// Muted while `now < muted_until`: 0 when not muted, [`MUTED_FOREVER`] until unmuted.
    pub muted_until: Millis,
}

/// [`MemberRecord::muted_until`] of a mute with no end.
pub const MUTED_FOREVER: Millis = Millis::MAX;

impl MemberRecord {
    /// Whether the member has the conversation muted at `now` (no pushes).
    pub fn muted_at(&self, now: Millis) -> bool {
        now < self.muted_until
    }

    /// The end of the member's mute as clients see it: `None` when not muted at `now` or
    /// muted until unmuted.
    pub fn mute_ends(&self, now: Millis) -> Option<Millis> {
        (self.muted_at(now) && self.muted_until != MUTED_FOREVER).then_some(self.muted_until)
    }

    /// The member's unread count in `conversation`: the `message` entries after their
    /// `readUpTo` (theirs never are: a send moves the sender's `readUpTo` to it).
    pub fn unread(&self, conversation: &ConversationRecord) -> u64 {
        conversation
            .message_count
            .saturating_sub(self.read_messages)
    }

    /// The member's receipt positions.
    pub fn positions(&self) -> Positions {
        Positions {
            delivered_up_to: self.delivered_up_to,
            read_up_to: self.read_up_to,
        }
    }
}

/// A stored entry of a conversation's log (PROTOCOL.md 8.1): a message, or an edit,
/// delete or reaction of one. Also the record the change feed (outbox / DynamoDB stream)
/// carries to the fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub conversation_id: ConversationId,
    pub seq: Seq,
    pub message_id: String,
    pub sender_id: UserId,
    pub client_message_id: String,
    pub entry: Entry,
    pub timestamp: Millis,
    /// The connection that sent it, which gets the ack instead of `message.new`.
    pub origin_connection: Option<String>,
    /// A `message` entry's current state as reads return it (edits, delete, reactions
    /// folded in); the default on the change feed and for other kinds.
    pub state: MessageState,
}

/// What later entries made of a `message` entry. Its content, in
/// [`MessageRecord::entry`], is already the latest edit's (or erased).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageState {
    /// The time of its latest edit.
    pub edited_at: Option<Millis>,
    /// Who deleted it.
    pub deleted_by: Option<UserId>,
    /// Its reactions by emoji, in order of first reaction (the earliest reaction still
    /// there), emoji with no reactor left out.
    pub reactions: Vec<ReactionSummary>,
}

/// The reactions of one emoji on a message, as one reader sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionSummary {
    pub emoji: String,
    pub count: u64,
    /// The earliest (at most [`REACTORS_SHOWN`]) reactors still there.
    pub user_ids: Vec<UserId>,
    /// Whether the reader reacted so.
    pub mine: bool,
}

/// Reactors named in a [`ReactionSummary`].
pub const REACTORS_SHOWN: usize = 3;

/// An entry to append; the store assigns `seq` and the final timestamp.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub message_id: String,
    pub sender_id: UserId,
    pub client_message_id: String,
    pub entry: Entry,
    pub now: Millis,
    pub origin_connection: Option<String>,
    /// Entries older than this are expired (for the record's `expiresAt` on stores with TTL).
    pub expires_at: Option<Millis>,
    /// The conversation's counter as the caller last read it: a store that must read the
    /// counter before writing may try this first (a stale hint only costs a retry).
    pub hint: Option<CounterHint>,
    /// The rules an entry naming an earlier message (a target, or `replyTo`) is held to;
    /// the store checks them with [`crate::domain::check_entry`] against the target as
    /// it is when the entry is sequenced.
    pub rules: EntryRules,
}

/// A conversation's counter as last read (see [`NewMessage::hint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterHint {
    pub last_seq: Seq,
    pub last_message_at: Millis,
    pub message_count: u64,
}

impl CounterHint {
    /// The counter of a conversation as read.
    pub fn of(conversation: &ConversationRecord) -> Self {
        Self {
            last_seq: conversation.last_seq,
            last_message_at: conversation.last_message_at,
            message_count: conversation.message_count,
        }
    }
}

/// Policies [`crate::domain::check_entry`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRules {
    /// Entries older than this are expired: a target must not be.
    pub retained_since: Millis,
    /// How long after a message its sender may edit it; 0 = no limit.
    pub edit_window_ms: i64,
}

/// A message an entry names, as [`crate::domain::check_entry`] needs it: read by the
/// store atomically with the append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub sender_id: UserId,
    pub timestamp: Millis,
    /// Its content's `type` (the same after edits).
    pub content_type: String,
    pub deleted: bool,
    /// How many edits it had.
    pub edits: u32,
    /// The emoji with at least one reactor.
    pub emoji: Vec<String>,
}

/// Why an entry was refused (see [`crate::domain::check_entry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The target is not a retained `message` entry of the conversation.
    NoTarget,
    /// The sender may not (not theirs, deleted, too late): `FORBIDDEN`.
    NotAllowed(&'static str),
    /// A cap is reached (edits, emoji): `CONFLICT`.
    TooMany(&'static str),
    /// The entry does not fit its target (another content type, a bad `replyTo`):
    /// `INVALID_MESSAGE`.
    Invalid(&'static str),
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
    /// The entry breaks a rule of its target; nothing was stored.
    Refused(Refusal),
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

/// Who changes a conversation (its members, roles or details), and when: the store
/// appends the change's `system` entry with it (PROTOCOL.md 8.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub actor: UserId,
    pub now: Millis,
    /// Entries older than this are expired (for `expiresAt` on stores with TTL).
    pub expires_at: Option<Millis>,
}

impl Change {
    /// The `system` entry recording `change`, ready to append: fresh ids (its
    /// clientMessageId marks it the server's), sent by the actor (or, for a change the
    /// server made, by the first user it concerns).
    pub fn entry(&self, conversation: &ConversationId, change: SystemChange) -> NewMessage {
        let sender = change
            .actor
            .clone()
            .or_else(|| change.user_ids.first().cloned())
            .unwrap_or_else(|| self.actor.clone());
        NewMessage {
            conversation_id: conversation.clone(),
            message_id: crate::domain::new_message_id(),
            sender_id: sender,
            client_message_id: format!("sys-{}", crate::domain::random_uuid().simple()),
            entry: Entry::System(change),
            now: self.now,
            origin_connection: None,
            expires_at: self.expires_at,
            hint: None,
            rules: EntryRules {
                retained_since: i64::MIN,
                edit_window_ms: 0,
            },
        }
    }

    /// The entry of a change by this actor: `event` concerning `users`.
    pub fn by_actor(&self, event: SystemEvent, users: Vec<UserId>) -> SystemChange {
        SystemChange {
            event,
            user_ids: users,
            actor: Some(self.actor.clone()),
            role: None,
            name: None,
            avatar: None,
        }
    }
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

/// What a role change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleOutcome {
    /// The member has the role now (`true` when it changed, with its entry appended).
    Set(MemberRecord, bool),
    /// The user is not a member.
    NotMember,
    /// It would leave the group without an admin: nothing changed.
    LastAdmin,
}

/// A change of a group's details: `None` leaves a field as it is; `avatar: Some(None)`
/// removes the picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailsChange {
    pub name: Option<String>,
    pub avatar: Option<Option<AttachmentId>>,
}

/// What a details change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailsOutcome {
    /// The group as it is now, and the avatar it no longer uses (released: unused from
    /// now, for the caller to delete).
    Set {
        conversation: ConversationRecord,
        released: Option<AttachmentId>,
    },
    /// The new avatar is not the actor's unused attachment of this conversation:
    /// nothing changed.
    Refused,
    NoConversation,
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
    /// When the token the connection was opened with stops being accepted: from then
    /// on the connection gets no frames and is closed.
    pub token_expires_at: Millis,
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

/// A device a push went to, as the push ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PushedDevice {
    pub user_id: UserId,
    pub device_id: DeviceId,
}

impl PushedDevice {
    /// `user/device` (neither id holds a `/` or a space).
    pub fn encode(&self) -> String {
        format!("{}/{}", self.user_id, self.device_id)
    }

    /// Reads what [`PushedDevice::encode`] wrote.
    pub fn decode(s: &str) -> Option<Self> {
        let (user, device) = s.split_once('/')?;
        Some(Self {
            user_id: UserId::parse(user).ok()?,
            device_id: DeviceId::parse(device).ok()?,
        })
    }
}

/// One page position for the conversation list: the order time (the later of
/// `lastMessageAt` and the caller's joining) and id of the last item seen.
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

/// What a presence change may do now (see `ConnectionStore::claim_presence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceClaim {
    /// Announce it now.
    Announce,
    /// Settle it at `until`, the end of the last announcement's window: announce the
    /// state then, if it is not the one announced.
    Defer { until: Millis },
    /// Another caller settles it.
    Skip,
}

/// An attachment (PROTOCOL.md 8.3): what its uploader declared, and what uses it. Its
/// bytes are the blob store's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRecord {
    pub id: AttachmentId,
    pub conversation_id: ConversationId,
    pub uploader: UserId,
    pub mime_type: String,
    /// The declared size, in bytes: the upload must be exactly this long.
    pub size: u64,
    pub file_name: Option<String>,
    pub created_at: Millis,
    /// `None` while no message or avatar uses it.
    pub used_by: Option<AttachmentUse>,
}

/// What keeps an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentUse {
    /// The message at this seq of its conversation (as its attachment or thumbnail).
    Message(Seq),
    /// Its conversation's avatar.
    Avatar,
}

impl AttachmentRecord {
    /// What messages show of it.
    pub fn info(&self) -> AttachmentInfo {
        AttachmentInfo {
            attachment_id: self.id.clone(),
            mime_type: self.mime_type.clone(),
            size: self.size,
            file_name: self.file_name.clone(),
        }
    }
}
