//! Entries of a conversation's log (PROTOCOL.md 8.1): their kinds, what each carries,
//! and the appending actions (`send`, `edit`, `delete`, `react`) as clients send them.

use serde::Serialize;

use super::{Content, ContentFor, Fields, invalid};
use crate::error::ChatError;
use crate::ids::{ClientMessageId, ConversationId, Seq, UserId};
use crate::json::{JsonObject, JsonValue};

/// Longest reaction emoji, in bytes of UTF-8.
pub const MAX_EMOJI_BYTES: usize = 64;

/// What an entry of a conversation's log is (PROTOCOL.md 8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Message,
    Edit,
    Delete,
    Reaction,
    System,
}

impl EntryKind {
    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Message => "message",
            EntryKind::Edit => "edit",
            EntryKind::Delete => "delete",
            EntryKind::Reaction => "reaction",
            EntryKind::System => "system",
        }
    }

    /// Parses the wire (and stored) name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "message" => Some(EntryKind::Message),
            "edit" => Some(EntryKind::Edit),
            "delete" => Some(EntryKind::Delete),
            "reaction" => Some(EntryKind::Reaction),
            "system" => Some(EntryKind::System),
            _ => None,
        }
    }

    /// Whether a client may make an entry of this kind (the server makes `system` ones).
    pub fn made_by_clients(self) -> bool {
        self != EntryKind::System
    }
}

/// What a `system` entry records (PROTOCOL.md 8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvent {
    MemberAdded,
    MemberRemoved,
    MemberLeft,
    RoleChanged,
    DetailsChanged,
}

impl SystemEvent {
    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemEvent::MemberAdded => "member_added",
            SystemEvent::MemberRemoved => "member_removed",
            SystemEvent::MemberLeft => "member_left",
            SystemEvent::RoleChanged => "role_changed",
            SystemEvent::DetailsChanged => "details_changed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            SystemEvent::MemberAdded,
            SystemEvent::MemberRemoved,
            SystemEvent::MemberLeft,
            SystemEvent::RoleChanged,
            SystemEvent::DetailsChanged,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

/// A change of the conversation itself, as its `system` entry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemChange {
    pub event: SystemEvent,
    /// Whom it concerns.
    pub user_ids: Vec<UserId>,
    /// Who did it; `None` when the server did (the promotion after the last admin left).
    pub actor: Option<UserId>,
    /// `role_changed`: the new role (`admin` or `member`).
    pub role: Option<String>,
    /// `details_changed`: the name and avatar after the change.
    pub name: Option<String>,
    pub avatar: Option<String>,
}

impl SystemChange {
    /// The server's promotion of `user` to admin after the last admin left.
    pub fn promotion(user: UserId) -> Self {
        Self {
            event: SystemEvent::RoleChanged,
            user_ids: vec![user],
            actor: None,
            role: Some("admin".to_owned()),
            name: None,
            avatar: None,
        }
    }
}

/// An entry of a conversation's log: its kind and what that kind carries. Content is
/// `None` once erased (the message, or the message an edit edited, was deleted); a
/// client's entry always has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Message {
        content: Option<Content>,
        reply_to: Option<Seq>,
    },
    Edit {
        target_seq: Seq,
        content: Option<Content>,
    },
    Delete {
        target_seq: Seq,
    },
    Reaction {
        target_seq: Seq,
        emoji: String,
        removed: bool,
    },
    System(SystemChange),
}

impl Entry {
    pub fn kind(&self) -> EntryKind {
        match self {
            Entry::Message { .. } => EntryKind::Message,
            Entry::Edit { .. } => EntryKind::Edit,
            Entry::Delete { .. } => EntryKind::Delete,
            Entry::Reaction { .. } => EntryKind::Reaction,
            Entry::System(_) => EntryKind::System,
        }
    }

    /// The earlier message this entry changes, if it is one that does.
    pub fn target_seq(&self) -> Option<Seq> {
        match self {
            Entry::Message { .. } | Entry::System(_) => None,
            Entry::Edit { target_seq, .. }
            | Entry::Delete { target_seq }
            | Entry::Reaction { target_seq, .. } => Some(*target_seq),
        }
    }

    /// The content it carries (a message's or an edit's), unless erased.
    pub fn content(&self) -> Option<&Content> {
        match self {
            Entry::Message { content, .. } | Entry::Edit { content, .. } => content.as_ref(),
            Entry::Delete { .. } | Entry::Reaction { .. } | Entry::System(_) => None,
        }
    }

    /// Whether it is a `message` entry: only those move `lastMessageAt` and the sender's
    /// positions, count as unread and are pushed.
    pub fn is_message(&self) -> bool {
        matches!(self, Entry::Message { .. })
    }
}

/// A validated action that appends an entry (`send`, `edit`, `delete`, `react`), from a
/// WebSocket frame or an HTTP body.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub conversation_id: ConversationId,
    pub client_message_id: ClientMessageId,
    pub entry: Entry,
}

impl AppendRequest {
    /// A `send` of a text message.
    pub fn text(
        conversation_id: ConversationId,
        client_message_id: ClientMessageId,
        text: impl Into<String>,
    ) -> Self {
        Self {
            conversation_id,
            client_message_id,
            entry: Entry::Message {
                content: Some(Content::text(text)),
                reply_to: None,
            },
        }
    }
}

/// Parses the body of an appending action of kind `kind`: shared by the WebSocket
/// frames and `POST .../messages`.
pub(crate) fn parse_append<O: JsonObject>(
    fields: &O,
    conversation_id: ConversationId,
    kind: EntryKind,
) -> Result<AppendRequest, ChatError> {
    let f = Fields(fields);
    let client_message_id = ClientMessageId::parse(f.str("clientMessageId")?)?;
    let content = |purpose| {
        Content::parse(
            fields
                .get("content")
                .ok_or_else(|| invalid("content is required"))?,
            purpose,
        )
    };
    // 0 is a seq no message has: the store answers it NOT_FOUND like any other.
    let target_seq = || f.seq("targetSeq");
    let entry = match kind {
        EntryKind::Message => {
            let content = content(ContentFor::Send)?;
            let reply_to = f.opt_seq("replyTo")?;
            if reply_to == Some(0) {
                return Err(invalid("replyTo must be a seq >= 1"));
            }
            Entry::Message {
                content: Some(content),
                reply_to,
            }
        }
        EntryKind::Edit => Entry::Edit {
            target_seq: target_seq()?,
            content: Some(content(ContentFor::Edit)?),
        },
        EntryKind::Delete => Entry::Delete {
            target_seq: target_seq()?,
        },
        EntryKind::System => return Err(invalid("system entries are made by the server")),
        EntryKind::Reaction => Entry::Reaction {
            target_seq: target_seq()?,
            emoji: emoji(f.str("emoji")?)?,
            removed: match fields.get("removed") {
                Some(v) if !v.is_null() => f.bool("removed")?,
                _ => false,
            },
        },
    };
    Ok(AppendRequest {
        conversation_id,
        client_message_id,
        entry,
    })
}

/// Validates a reaction emoji: 1-64 bytes of UTF-8 with no control character (Cc) and
/// no separator (Zs, Zl, Zp). It is kept byte for byte: no normalization.
pub(crate) fn emoji(s: &str) -> Result<String, ChatError> {
    if s.is_empty() || s.len() > MAX_EMOJI_BYTES {
        return Err(invalid("emoji must be 1-64 bytes"));
    }
    let separator = |c: char| {
        matches!(
            c,
            ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
                ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
        )
    };
    if s.chars().any(|c| c.is_control() || separator(c)) {
        return Err(invalid(
            "emoji must not contain control or separator characters",
        ));
    }
    Ok(s.to_owned())
}

/// The kind of entry a WebSocket action appends, if it appends one.
pub(super) fn appended_kind(action: &str) -> Option<EntryKind> {
    match action {
        "send" => Some(EntryKind::Message),
        "edit" => Some(EntryKind::Edit),
        "delete" => Some(EntryKind::Delete),
        "react" => Some(EntryKind::Reaction),
        _ => None,
    }
}
