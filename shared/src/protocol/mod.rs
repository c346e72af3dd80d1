//! The wire format (docs/protocol.md): client frames with their validation, server frames,
//! and the JSON objects shared by WebSocket and HTTP. The entries of a log and the
//! actions that append them are in `entry`.

use serde::Serialize;
use serde_json::Value;

use crate::error::{ChatError, ErrorCode};
use crate::ids::{AttachmentId, ConversationId, Millis, Seq, UserId};
use crate::json::{JsonObject, JsonValue, Loose, LooseObject};

mod content;
mod entry;

pub use content::*;
use entry::appended_kind;
pub use entry::*;

/// Largest WebSocket frame a client may send (API Gateway's limit).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// Largest frame the local server reads at all; bigger ones close the socket (1009).
pub const MAX_READ_FRAME_BYTES: usize = 1024 * 1024;
/// Largest HTTP request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Largest `requestId`.
pub const MAX_REQUEST_ID_CHARS: usize = 64;
/// Largest answer of a list, history or sync: one that would be larger ends early with
/// `hasMore: true` (or a next cursor) at an item boundary. Well under the 6 MB that API
/// Gateway and Lambda allow.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Message text limits, in Unicode scalar values.
pub const MAX_TEXT_CHARS: usize = 4000;
/// How long a typing state lasts unless renewed.
pub const TYPING_EXPIRES_MS: i64 = 5000;
/// How often clients heartbeat while in the foreground.
pub const HEARTBEAT_INTERVAL_MS: i64 = 60_000;
/// A connection is live while its last frame is younger than this (2.5 heartbeats).
pub const LIVENESS_MS: i64 = HEARTBEAT_INTERVAL_MS * 5 / 2;

fn invalid(msg: &str) -> ChatError {
    ChatError::Invalid(msg.to_owned())
}

/// What a client frame asks for.
#[derive(Debug, Clone)]
pub enum Action {
    Append(AppendRequest),
    Read {
        conversation_id: ConversationId,
        up_to_seq: Seq,
    },
    Delivered {
        conversation_id: ConversationId,
        up_to_seq: Seq,
    },
    Typing {
        conversation_id: ConversationId,
        is_typing: bool,
    },
    Heartbeat,
}

/// A parsed client frame.
#[derive(Debug, Clone)]
pub struct ClientFrame {
    pub request_id: Option<String>,
    pub action: Action,
}

/// A frame that could not be parsed, with what is needed to answer it.
#[derive(Debug)]
pub struct FrameError {
    pub request_id: Option<String>,
    pub client_message_id: Option<String>,
    pub error: ChatError,
}

/// Reads a field of an object (an HTTP body or a WebSocket frame): required or
/// optional, with a type check.
pub(crate) struct Fields<'a, O>(pub &'a O);

impl<O: JsonObject> Fields<'_, O> {
    pub fn str(&self, name: &str) -> Result<&str, ChatError> {
        match self.0.get(name) {
            Some(v) => v
                .as_str()
                .ok_or_else(|| ChatError::Invalid(format!("{name} must be a string"))),
            None => Err(ChatError::Invalid(format!("{name} is required"))),
        }
    }

    pub fn seq(&self, name: &str) -> Result<Seq, ChatError> {
        match self.0.get(name) {
            Some(v) => seq_value(name, v),
            None => Err(ChatError::Invalid(format!("{name} is required"))),
        }
    }

    pub fn opt_seq(&self, name: &str) -> Result<Option<Seq>, ChatError> {
        match self.0.get(name) {
            Some(v) if !v.is_null() => seq_value(name, v).map(Some),
            _ => Ok(None),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, ChatError> {
        match self.0.get(name) {
            Some(v) => v
                .as_bool()
                .ok_or_else(|| ChatError::Invalid(format!("{name} must be a boolean"))),
            None => Err(ChatError::Invalid(format!("{name} is required"))),
        }
    }

    pub fn conversation_id(&self) -> Result<ConversationId, ChatError> {
        Ok(ConversationId::parse(self.str("conversationId")?)?)
    }
}

fn seq_value(name: &str, v: &impl JsonValue) -> Result<Seq, ChatError> {
    v.as_u64()
        .ok_or_else(|| ChatError::Invalid(format!("{name} must be an integer >= 0")))
}

/// A string member an error may echo: only one that could be a valid id.
fn echoable_id(obj: &LooseObject<'_>, name: &str) -> Option<String> {
    obj.get(name)
        .and_then(Loose::as_str)
        .filter(|s| s.chars().count() <= MAX_REQUEST_ID_CHARS)
        .map(str::to_owned)
}

impl ClientFrame {
    /// The `requestId` and (for a send) `clientMessageId` of a frame refused before
    /// validation, so its error can still carry them.
    pub fn answer_ids(text: &str) -> (Option<String>, Option<String>) {
        let Ok(Loose::Object(obj)) = serde_json::from_str::<Loose<'_>>(text) else {
            return (None, None);
        };
        let appends = obj
            .get("action")
            .and_then(Loose::as_str)
            .and_then(appended_kind)
            .is_some();
        (
            echoable_id(&obj, "requestId"),
            echoable_id(&obj, "clientMessageId").filter(|_| appends),
        )
    }

    /// Parses and validates one text frame.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let fail = |request_id: Option<String>, cmid: Option<String>, error| FrameError {
            request_id,
            client_message_id: cmid,
            error,
        };
        let value: Loose<'_> = serde_json::from_str(text)
            .map_err(|_| fail(None, None, invalid("frame is not valid JSON")))?;
        let Loose::Object(obj) = value else {
            return Err(fail(None, None, invalid("frame must be a JSON object")));
        };
        let request_id = match obj.get("requestId") {
            None => None,
            Some(v) if v.is_null() => None,
            Some(v) => match v.as_str() {
                Some(s) if s.chars().count() <= MAX_REQUEST_ID_CHARS => Some(s.to_owned()),
                _ => {
                    return Err(fail(
                        None,
                        None,
                        invalid("requestId must be a string of at most 64 characters"),
                    ));
                }
            },
        };
        let action = obj.get("action").and_then(Loose::as_str);
        let cmid = action
            .and_then(appended_kind)
            .and_then(|_| echoable_id(&obj, "clientMessageId"));
        Self::parse_action(action, &obj)
            .map(|action| ClientFrame {
                request_id: request_id.clone(),
                action,
            })
            .map_err(|error| fail(request_id, cmid, error))
    }

    fn parse_action(action: Option<&str>, obj: &impl JsonObject) -> Result<Action, ChatError> {
        let f = Fields(obj);
        if let Some(kind) = action.and_then(appended_kind) {
            return Ok(Action::Append(parse_append(
                obj,
                f.conversation_id()?,
                kind,
            )?));
        }
        Ok(match action {
            Some("read") => Action::Read {
                conversation_id: f.conversation_id()?,
                up_to_seq: f.seq("upToSeq")?,
            },
            Some("delivered") => Action::Delivered {
                conversation_id: f.conversation_id()?,
                up_to_seq: f.seq("upToSeq")?,
            },
            Some("typing") => Action::Typing {
                conversation_id: f.conversation_id()?,
                is_typing: f.bool("isTyping")?,
            },
            Some("heartbeat") => Action::Heartbeat,
            Some(other) => {
                return Err(ChatError::Invalid(format!(
                    "unknown action {:?}",
                    other.chars().take(32).collect::<String>()
                )));
            }
            None => return Err(invalid("action is required and must be a string")),
        })
    }
}

/// An entry as clients see it (history, sync, and `message.new` without `type`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub conversation_id: ConversationId,
    pub message_id: String,
    pub seq: Seq,
    /// `null` only for a `system` entry the server made.
    pub sender_id: Option<UserId>,
    pub client_message_id: String,
    pub kind: EntryKind,
    #[serde(flatten)]
    pub fields: EntryFields,
    pub timestamp: Millis,
}

/// The fields of an entry of each kind (PROTOCOL.md 8.1); a message's in its current
/// state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EntryFields {
    #[serde(rename_all = "camelCase")]
    Message {
        content: Option<Content>,
        reply_to: Option<Seq>,
        edited_at: Option<Millis>,
        deleted: bool,
        deleted_by: Option<UserId>,
        /// Absent only in a conversation's `lastMessage`.
        #[serde(skip_serializing_if = "Option::is_none")]
        reactions: Option<Vec<ReactionView>>,
    },
    #[serde(rename_all = "camelCase")]
    Edit {
        target_seq: Seq,
        content: Option<Content>,
    },
    #[serde(rename_all = "camelCase")]
    Delete { target_seq: Seq, deleted_by: UserId },
    #[serde(rename_all = "camelCase")]
    Reaction {
        target_seq: Seq,
        emoji: String,
        removed: bool,
    },
    #[serde(rename_all = "camelCase")]
    System {
        event: SystemEvent,
        user_ids: Vec<UserId>,
        actor_id: Option<UserId>,
        #[serde(flatten)]
        details: SystemDetails,
    },
}

/// What a `system` entry carries for its event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SystemDetails {
    /// `member_added`, `member_removed`, `member_left`: no more.
    None {},
    /// `role_changed`: the new role.
    Role { role: String },
    /// `details_changed`: both, as they are after the change.
    Details {
        name: Option<String>,
        avatar: Option<String>,
    },
}

/// The reactions of one emoji on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionView {
    pub emoji: String,
    pub count: u64,
    /// The first (at most 3) who reacted so.
    pub user_ids: Vec<UserId>,
    /// Whether the caller reacted so.
    pub mine: bool,
}

/// A member entry of a conversation object or the members list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub user_id: UserId,
    pub role: &'static str,
    pub delivered_up_to: Seq,
    pub read_up_to: Seq,
}

/// A conversation as one member sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    pub conversation_id: ConversationId,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: Option<String>,
    pub created_at: Millis,
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub last_message_at: Millis,
    pub member_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberView>>,
    pub muted: bool,
    /// When the caller's mute ends; `null` when not muted or muted until unmuted.
    pub muted_until: Option<Millis>,
    /// The newest `message` entry in its current state, without reactions.
    pub last_message: Option<MessageView>,
    /// The group's picture (an image attachment).
    pub avatar: Option<AttachmentId>,
    pub unread_count: u64,
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    pub conversation_id: ConversationId,
    pub client_message_id: String,
    pub message_id: String,
    pub seq: Seq,
    pub kind: EntryKind,
    pub timestamp: Millis,
    pub duplicate: bool,
}

/// A member's receipt positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Positions {
    pub delivered_up_to: Seq,
    pub read_up_to: Seq,
}

/// Frames the server sends.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum ServerFrame {
    #[serde(rename = "message.ack")]
    Ack {
        #[serde(rename = "requestId")]
        request_id: Option<String>,
        #[serde(flatten)]
        ack: Ack,
    },
    #[serde(rename = "message.new")]
    MessageNew(MessageView),
    #[serde(rename = "receipt", rename_all = "camelCase")]
    Receipt {
        conversation_id: ConversationId,
        user_id: UserId,
        delivered_up_to: Seq,
        read_up_to: Seq,
        timestamp: Millis,
    },
    #[serde(rename = "typing", rename_all = "camelCase")]
    Typing {
        conversation_id: ConversationId,
        user_id: UserId,
        is_typing: bool,
        expires_in_ms: i64,
    },
    #[serde(rename = "presence", rename_all = "camelCase")]
    Presence {
        user_id: UserId,
        status: PresenceStatus,
        last_seen: Option<Millis>,
        at: Millis,
    },
    #[serde(rename = "conversation.new")]
    ConversationNew { conversation: ConversationView },
    #[serde(rename = "conversation.updated")]
    ConversationUpdated { conversation: ConversationView },
    #[serde(rename = "conversation.removed", rename_all = "camelCase")]
    ConversationRemoved { conversation_id: ConversationId },
    #[serde(rename = "heartbeat.ack", rename_all = "camelCase")]
    HeartbeatAck {
        request_id: Option<String>,
        server_time: Millis,
        heartbeat_interval_ms: i64,
    },
    #[serde(rename = "ok", rename_all = "camelCase")]
    Ok { request_id: Option<String> },
    #[serde(rename = "error", rename_all = "camelCase")]
    Error {
        request_id: Option<String>,
        client_message_id: Option<String>,
        code: ErrorCode,
        message: String,
        retry_after_ms: Option<i64>,
    },
}

impl ServerFrame {
    /// The `error` frame for a failure.
    pub fn error(
        request_id: Option<String>,
        client_message_id: Option<String>,
        err: &ChatError,
    ) -> Self {
        // Every error a client is answered over WebSocket is made here: counted here.
        crate::telemetry::error_answered(err.code());
        ServerFrame::Error {
            request_id,
            client_message_id,
            code: err.code(),
            message: err.to_string(),
            retry_after_ms: err.retry_after_ms(),
        }
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// Online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Offline,
}

impl PresenceStatus {
    /// As on the wire (and as the stores keep it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// The HTTP error body.
pub fn error_body(err: &ChatError) -> Value {
    // Every error a client is answered over HTTP is made here: counted here.
    crate::telemetry::error_answered(err.code());
    serde_json::json!({
        "error": {
            "code": err.code(),
            "message": err.to_string(),
            "retryAfterMs": err.retry_after_ms(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> FrameError {
        ClientFrame::parse(text).expect_err("frame should be refused")
    }

    #[test]
    fn a_valid_send_parses() {
        let f = ClientFrame::parse(
            r#"{"action":"send","requestId":"r1","conversationId":"c_1","clientMessageId":"m1","content":{"type":"text","text":"hi"},"replyTo":3}"#,
        )
        .unwrap();
        assert_eq!(f.request_id.as_deref(), Some("r1"));
        let Action::Append(s) = f.action else {
            panic!()
        };
        let Entry::Message { content, reply_to } = s.entry else {
            panic!()
        };
        assert_eq!(reply_to, Some(3));
        assert_eq!(content.unwrap().text, "hi");
    }

    #[test]
    fn errors_keep_the_request_and_client_message_ids() {
        let e = parse_err(
            r#"{"action":"send","requestId":"r1","conversationId":"c_1","clientMessageId":"m1","content":{"type":"image","text":"x"}}"#,
        );
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert_eq!(e.client_message_id.as_deref(), Some("m1"));
        assert_eq!(e.error.code(), ErrorCode::InvalidMessage);
    }

    #[test]
    fn errors_do_not_echo_an_overlong_client_message_id() {
        // GIVEN a send whose clientMessageId is over the 64-character limit
        let cmid = "x".repeat(65);
        let frame = format!(
            r#"{{"action":"send","requestId":"r1","conversationId":"c_1","clientMessageId":"{cmid}","content":{{"type":"text","text":"x"}}}}"#
        );
        // WHEN it is refused
        let e = parse_err(&frame);
        // THEN the error keeps the requestId but not the invalid id (found by fuzzing)
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert_eq!(e.client_message_id, None);
        assert_eq!(ClientFrame::answer_ids(&frame), (Some("r1".into()), None));
    }

    #[test]
    fn malformed_frames_are_invalid() {
        for text in [
            "not json",
            "[1,2]",
            "42",
            r#"{"requestId":"r"}"#,
            r#"{"action":"dance"}"#,
            r#"{"action":"read","conversationId":"c_1","upToSeq":-1}"#,
            r#"{"action":"read","conversationId":"c_1","upToSeq":1.5}"#,
            r#"{"action":"read","conversationId":"c_1","upToSeq":"3"}"#,
            r#"{"action":"typing","conversationId":"c_1","isTyping":"yes"}"#,
            r#"{"action":"heartbeat","requestId":7}"#,
        ] {
            assert_eq!(
                parse_err(text).error.code(),
                ErrorCode::InvalidMessage,
                "{text}"
            );
        }
    }

    #[test]
    fn text_length_counts_scalar_values() {
        let ok = format!(
            r#"{{"action":"send","conversationId":"c","clientMessageId":"m","content":{{"type":"text","text":"{}"}}}}"#,
            "😀".repeat(4000)
        );
        assert!(ClientFrame::parse(&ok).is_ok());
        let too_long = ok.replacen("😀", "😀😀", 1);
        assert!(ClientFrame::parse(&too_long).is_err());
    }

    #[test]
    fn error_frames_carry_every_field() {
        let f = ServerFrame::error(None, None, &ChatError::no_conversation()).to_json();
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "NOT_FOUND");
        assert!(v["requestId"].is_null() && v["retryAfterMs"].is_null());
        assert!(v.as_object().unwrap().contains_key("clientMessageId"));
    }
}

/// One conversation of a sync answer.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncedConversation {
    pub conversation_id: ConversationId,
    pub messages: Vec<MessageView>,
    pub has_more: bool,
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub delivered_up_to: Seq,
    pub read_up_to: Seq,
    pub unread_count: u64,
}

/// A sync answer.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResult {
    pub conversations: Vec<SyncedConversation>,
    pub new_conversations: Vec<ConversationView>,
    pub removed_conversation_ids: Vec<ConversationId>,
    pub server_time: Millis,
}

/// One user's presence.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceView {
    pub user_id: UserId,
    pub status: PresenceStatus,
    pub last_seen: Option<Millis>,
}
