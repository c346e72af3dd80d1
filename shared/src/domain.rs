//! Pure rules of the chat: no I/O, each one unit-tested.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ChatError;
use crate::ids::{AttachmentId, ConversationId, Millis, Seq, UserId};
use crate::ports::{
    ConversationCursor, ConversationKind, ConversationRecord, NewMessage, Refusal, Target,
};
use crate::protocol::{Content, Entry};

/// Length of a fixed rate-limit window.
pub const RATE_WINDOW_MS: Millis = 60_000;
/// Typing throttle: at most `TYPING_MAX_PER_WINDOW` `isTyping: true` per window.
pub const TYPING_WINDOW_MS: Millis = 1000;
/// See [`TYPING_WINDOW_MS`].
pub const TYPING_MAX_PER_WINDOW: u32 = 2;
/// Presence: at most one event per user per window; a change inside it is announced
/// at its end, if it still holds.
pub const PRESENCE_WINDOW_MS: Millis = 1000;
/// Conversation objects list their members up to this many.
pub const INLINE_MEMBERS_MAX: u64 = 100;
/// Longest push body, in characters.
pub const PUSH_BODY_MAX_CHARS: usize = 100;
/// The body of the push that replaces a deleted message's (PROTOCOL.md 8.5).
pub const DELETED_PUSH_BODY: &str = "Message deleted";
/// Edits one message may have.
pub const MAX_EDITS: u32 = 50;
/// Distinct emoji one message may carry.
pub const MAX_EMOJI: usize = 50;

/// The rules of an entry that names an earlier message (PROTOCOL.md 8.2): `target` is
/// the `message` entry it names (`targetSeq`, or a message's `replyTo`) as it is when the
/// entry is sequenced, `None` when there is no such entry. The sender is a member;
/// `sender_is_admin` when they are an admin of a group. Stores call this atomically with
/// the append, so two racing entries cannot both pass a rule only one may.
pub fn check_entry(
    new: &NewMessage,
    sender_is_admin: bool,
    target: Option<&Target>,
) -> Result<(), Refusal> {
    let target = target.filter(|t| t.timestamp >= new.rules.retained_since);
    let sender = &new.sender_id;
    match &new.entry {
        // The server's own, checked where it makes them.
        Entry::System(_) => Ok(()),
        Entry::Message { reply_to, .. } => match (reply_to, target) {
            (Some(_), None) => Err(Refusal::Invalid(
                "replyTo must be the seq of a message of this conversation",
            )),
            _ => Ok(()),
        },
        Entry::Edit { content, .. } => {
            let t = target.ok_or(Refusal::NoTarget)?;
            if &t.sender_id != sender {
                return Err(Refusal::NotAllowed("only its sender may edit a message"));
            }
            if t.deleted {
                return Err(Refusal::NotAllowed("the message is deleted"));
            }
            let window = new.rules.edit_window_ms;
            if window > 0 && new.now - t.timestamp > window {
                return Err(Refusal::NotAllowed("the time to edit this message is over"));
            }
            if content.as_ref().map(|c| c.kind.as_str()) != Some(t.content_type.as_str()) {
                return Err(Refusal::Invalid(
                    "an edit's content must have the message's content type",
                ));
            }
            if t.edits >= MAX_EDITS {
                return Err(Refusal::TooMany("a message is edited at most 50 times"));
            }
            Ok(())
        }
        Entry::Delete { .. } => {
            let t = target.ok_or(Refusal::NoTarget)?;
            if &t.sender_id != sender && !sender_is_admin {
                return Err(Refusal::NotAllowed(
                    "only its sender or a group admin may delete a message",
                ));
            }
            Ok(())
        }
        Entry::Reaction { emoji, removed, .. } => {
            let t = target.ok_or(Refusal::NoTarget)?;
            if t.deleted {
                return Err(Refusal::NotAllowed("the message is deleted"));
            }
            if !removed && t.emoji.len() >= MAX_EMOJI && !t.emoji.contains(emoji) {
                return Err(Refusal::TooMany(
                    "a message carries at most 50 different emoji",
                ));
            }
            Ok(())
        }
    }
}

/// The start of the fixed rate window holding `now`.
pub fn rate_window_start(now: Millis) -> Millis {
    now - now.rem_euclid(RATE_WINDOW_MS)
}

/// The `RATE_LIMITED` error for a send counted as number `count` in the window at
/// `window_start`, or `None` when it is allowed. A limit of 0 disables limiting.
pub fn rate_limit(count: u64, limit: u32, window_start: Millis, now: Millis) -> Option<ChatError> {
    (limit > 0 && count > u64::from(limit)).then(|| ChatError::RateLimited {
        retry_after_ms: (window_start + RATE_WINDOW_MS - now).max(1),
    })
}

/// New receipt positions: monotonic, clamped to `last_seq`, and read implies delivered.
pub fn advance_positions(
    current: (Seq, Seq),
    last_seq: Seq,
    delivered: Option<Seq>,
    read: Option<Seq>,
) -> (Seq, Seq) {
    let (mut delivered_up_to, mut read_up_to) = current;
    if let Some(r) = read {
        read_up_to = read_up_to.max(r.min(last_seq));
    }
    if let Some(d) = delivered {
        delivered_up_to = delivered_up_to.max(d.min(last_seq));
    }
    (delivered_up_to.max(read_up_to), read_up_to)
}

/// The push title: the sender, prefixed by the group name in groups.
pub fn push_title(conversation: &ConversationRecord, sender: &UserId) -> String {
    match (conversation.kind, &conversation.name) {
        (ConversationKind::Group, Some(name)) => format!("{name}: {sender}"),
        _ => sender.to_string(),
    }
}

/// The push body: the text cut to at most 100 characters at a character boundary.
pub fn push_body(text: &str) -> String {
    text.chars().take(PUSH_BODY_MAX_CHARS).collect()
}

/// The push body of a message: its text, or for an attachment without a caption a word
/// for its kind (PROTOCOL.md 8.3).
pub fn message_push_body(content: Option<&Content>) -> String {
    let Some(c) = content else {
        return String::new();
    };
    if !c.text.is_empty() || !c.is_attachment() {
        return push_body(&c.text);
    }
    let mime = c
        .media
        .as_ref()
        .map_or("", |m| m.attachment.mime_type.as_str());
    match mime.split('/').next() {
        Some("image") => "Photo",
        Some("video") => "Video",
        Some("audio") => "Audio",
        _ => "File",
    }
    .to_owned()
}

/// How long an upload URL is valid.
pub const UPLOAD_URL_MS: Millis = 15 * 60_000;
/// How long a download URL is valid.
pub const DOWNLOAD_URL_MS: Millis = 5 * 60_000;
/// An attachment no message or avatar uses is deleted this long after its creation.
pub const UNUSED_ATTACHMENT_MS: Millis = 24 * 3_600_000;
/// A send may use an attachment at most this long after its creation: an hour before
/// [`UNUSED_ATTACHMENT_MS`], so the bytes of a message just acked are never taken for
/// unused ones.
pub const ATTACHMENT_USABLE_MS: Millis = 23 * 3_600_000;
/// Largest thumbnail (`thumbnailId`), in bytes.
pub const MAX_THUMBNAIL_BYTES: u64 = 256 * 1024;
/// Attachments one `POST /v1/attachments/urls` may ask for.
pub const MAX_URL_BATCH: usize = 100;

/// Types served inline, with their type (PROTOCOL.md 8.3, step 5): raster images, MP4
/// video and audio, which a browser shows and never runs. Everything else is a download.
pub fn served_inline(mime_type: &str) -> bool {
    matches!(
        mime_type,
        "image/jpeg" | "image/png" | "image/gif" | "image/webp" | "image/heic" | "video/mp4"
    ) || mime_type.starts_with("audio/")
}

/// A raster image a browser shows inline (a thumbnail or an avatar must be one).
pub fn is_inline_image(mime_type: &str) -> bool {
    mime_type.starts_with("image/") && served_inline(mime_type)
}

/// The headers a download is served with: `Content-Type` and `Content-Disposition`
/// (with `X-Content-Type-Options: nosniff` always, which the caller adds). A type not
/// [`served_inline`] is sent as `application/octet-stream`, as an attachment; the file
/// name only ever as RFC 6266's `filename*` (percent-encoded UTF-8), so no byte of it can
/// end the header or add a parameter.
pub fn download_headers(mime_type: &str, file_name: Option<&str>) -> (String, String) {
    let (content_type, disposition) = if served_inline(mime_type) {
        (mime_type, "inline")
    } else {
        ("application/octet-stream", "attachment")
    };
    let disposition = match file_name {
        Some(name) => format!("{disposition}; filename*=UTF-8''{}", rfc5987(name)),
        None => disposition.to_owned(),
    };
    (content_type.to_owned(), disposition)
}

/// Percent-encodes all but RFC 5987's `attr-char`s.
fn rfc5987(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Validates an attachment's declared type: `type/subtype`, each an RFC 9110 token, at
/// most 255 characters; kept in lowercase (types compare case-insensitively).
pub fn mime_type(s: &str) -> Result<String, ChatError> {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match s.split_once('/') {
        Some((t, sub)) if s.len() <= 255 && token(t) && token(sub) => Ok(s.to_ascii_lowercase()),
        _ => Err(ChatError::Invalid(
            "mimeType must be type/subtype, at most 255 characters".into(),
        )),
    }
}

/// Validates an attachment's file name: 1-255 characters, no `/`, `\` or control
/// character. Metadata only: never a path.
pub fn file_name(s: &str) -> Result<String, ChatError> {
    let n = s.chars().count();
    if n == 0
        || n > 255
        || s.chars()
            .any(|c| matches!(c, '/' | '\\') || formats_text_around_it(c))
    {
        return Err(ChatError::Invalid(
            "fileName must be 1-255 characters without /, \\ or control characters".into(),
        ));
    }
    Ok(s.to_owned())
}

/// A fresh, unguessable attachment id.
pub fn new_attachment_id() -> AttachmentId {
    AttachmentId::parse(format!("a_{}", random_uuid().simple())).expect("generated ids are valid")
}

/// Validates a group name: 1-100 characters, not only whitespace, and none that
/// [`formats_text_around_it`]: the name is shown to every member and starts each push
/// title, where a line break, a terminal escape or a right-to-left override would
/// change how the text around it reads.
pub fn group_name(name: &str) -> Result<String, ChatError> {
    let n = name.chars().count();
    if n == 0 || n > 100 || name.trim().is_empty() {
        return Err(ChatError::Invalid("name must be 1-100 characters".into()));
    }
    if name.chars().any(formats_text_around_it) {
        return Err(ChatError::Invalid(
            "name must not contain control or bidirectional formatting characters".into(),
        ));
    }
    Ok(name.to_owned())
}

/// A control character (Unicode category Cc: C0, DEL and C1), a line or paragraph
/// separator (U+2028, U+2029: a line break in a push title), the invisible U+FEFF, or a
/// bidirectional embedding, override or isolate (U+202A-U+202E, U+2066-U+2069), which
/// reorders the text after it up to its terminator. The marks U+200E, U+200F and U+061C
/// and the zero-width joiners are allowed: they affect only their neighbours, and
/// right-to-left names and emoji sequences need them.
fn formats_text_around_it(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// A random (version 4) UUID, from the thread's cryptographically secure generator.
///
/// `Uuid::new_v4` without uuid's `fast-rng` feature makes a `getrandom` system call for
/// each id: about 1% of the embedded server's time under the 1:1 load, one per message.
/// The feature would bring in a second version of rand; the one we have does it.
pub fn random_uuid() -> uuid::Uuid {
    use rand::Rng;
    uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid()
}

/// A fresh, unguessable conversation id.
pub fn new_conversation_id() -> ConversationId {
    ConversationId::parse(format!("c_{}", random_uuid().simple())).expect("generated ids are valid")
}

/// A fresh message id.
pub fn new_message_id() -> String {
    format!("m_{}", random_uuid().simple())
}

/// Encodes a conversation-list cursor (opaque to clients).
pub fn encode_conversation_cursor(c: &ConversationCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", c.last_message_at, c.conversation_id))
}

/// Decodes a conversation-list cursor.
pub fn decode_conversation_cursor(s: &str) -> Result<ConversationCursor, ChatError> {
    let bad = || ChatError::Invalid("cursor is not valid".into());
    let raw =
        String::from_utf8(URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?).map_err(|_| bad())?;
    let (at, id) = raw.split_once(':').ok_or_else(bad)?;
    Ok(ConversationCursor {
        last_message_at: at.parse().map_err(|_| bad())?,
        conversation_id: ConversationId::parse(id).map_err(|_| bad())?,
    })
}

/// Encodes a member-list cursor (the last user id of the page).
pub fn encode_member_cursor(user: &UserId) -> String {
    URL_SAFE_NO_PAD.encode(user.as_str())
}

/// Decodes a member-list cursor.
pub fn decode_member_cursor(s: &str) -> Result<UserId, ChatError> {
    let bad = || ChatError::Invalid("cursor is not valid".into());
    let raw =
        String::from_utf8(URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?).map_err(|_| bad())?;
    UserId::parse(raw).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_version_4_uuids_and_do_not_repeat() {
        // GIVEN many ids from one thread
        let ids: std::collections::HashSet<uuid::Uuid> =
            (0..10_000).map(|_| random_uuid()).collect();
        // THEN none repeats, and each is a random (version 4, RFC 4122) UUID
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|u| u.get_version_num() == 4 && u.get_variant() == uuid::Variant::RFC4122)
        );
        let m = new_message_id();
        assert!(m.starts_with("m_") && m.len() == 34, "{m}");
    }

    #[test]
    fn positions_never_move_back_and_are_clamped() {
        // GIVEN positions (5, 3) in a conversation at seq 10
        // WHEN a lower delivered and a higher-than-last read arrive
        let p = advance_positions((5, 3), 10, Some(2), Some(99));
        // THEN read is clamped to 10 and delivered follows read
        assert_eq!(p, (10, 10));
        assert_eq!(advance_positions((5, 3), 10, Some(4), None), (5, 3));
        assert_eq!(advance_positions((5, 3), 10, None, Some(7)), (7, 7));
    }

    #[test]
    fn rate_windows_are_fixed_minutes() {
        assert_eq!(rate_window_start(125_000), 120_000);
        assert!(rate_limit(3, 3, 120_000, 125_000).is_none());
        let err = rate_limit(4, 3, 120_000, 125_000).unwrap();
        assert_eq!(err.retry_after_ms(), Some(55_000));
        assert!(rate_limit(1_000_000, 0, 0, 0).is_none());
    }

    #[test]
    fn push_body_cuts_at_character_boundaries() {
        let text = "é".repeat(150);
        assert_eq!(push_body(&text).chars().count(), 100);
        assert_eq!(push_body("hi"), "hi");
    }

    #[test]
    fn downloads_of_active_types_are_attachments_of_no_type() {
        for t in [
            "text/html",
            "image/svg+xml",
            "application/pdf",
            "text/plain",
            "video/webm",
        ] {
            let (ct, cd) = download_headers(t, None);
            assert_eq!(
                (ct.as_str(), cd.as_str()),
                ("application/octet-stream", "attachment")
            );
        }
        for t in [
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "image/heic",
            "video/mp4",
            "audio/ogg",
        ] {
            assert_eq!(
                download_headers(t, None),
                (t.to_owned(), "inline".to_owned())
            );
        }
        // A file name cannot end the header or add a parameter.
        let (_, cd) = download_headers("text/html", Some("a\"; filename=x.html é"));
        assert_eq!(
            cd,
            "attachment; filename*=UTF-8''a%22%3B%20filename%3Dx.html%20%C3%A9"
        );
    }

    #[test]
    fn attachment_metadata_is_validated() {
        assert_eq!(mime_type("Image/PNG").unwrap(), "image/png");
        for bad in [
            "image",
            "image/",
            "/png",
            "image/png; charset=x",
            "a b/c",
            &"a/".repeat(200),
        ] {
            assert!(mime_type(bad).is_err(), "{bad}");
        }
        assert!(file_name("photo 1.jpg").is_ok());
        for bad in [
            "",
            "../x",
            "a\\b",
            "a\nb",
            "x\u{202e}gpj.exe",
            &"n".repeat(256),
        ] {
            assert!(file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attachment_pushes_say_what_they_carry_without_a_caption() {
        let mut c: Content = serde_json::from_value(serde_json::json!({
            "type":"attachment","text":"","attachment":{"attachmentId":format!("a_{}", "0".repeat(32)),
            "mimeType":"image/png","size":1,"fileName":null},"width":null,"height":null,
            "durationMs":null,"preview":null,"thumbnailId":null})).unwrap();
        assert_eq!(message_push_body(Some(&c)), "Photo");
        c.media.as_mut().unwrap().attachment.mime_type = "application/zip".into();
        assert_eq!(message_push_body(Some(&c)), "File");
        c.text = "see this".into();
        assert_eq!(message_push_body(Some(&c)), "see this");
        assert_eq!(message_push_body(Some(&Content::text("hi"))), "hi");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = ConversationCursor {
            last_message_at: 17,
            conversation_id: ConversationId::parse("c_1").unwrap(),
        };
        assert_eq!(
            decode_conversation_cursor(&encode_conversation_cursor(&c)).unwrap(),
            c
        );
        assert!(decode_conversation_cursor("!!").is_err());
        let u = UserId::parse("bob").unwrap();
        assert_eq!(decode_member_cursor(&encode_member_cursor(&u)).unwrap(), u);
    }

    #[test]
    fn group_names_are_checked() {
        assert!(group_name("Team").is_ok());
        assert!(group_name("").is_err());
        assert!(group_name("   ").is_err());
        assert!(group_name(&"n".repeat(101)).is_err());
    }

    #[test]
    fn group_names_refuse_control_and_bidi_formatting_characters() {
        // GIVEN names with a control character or a bidi embedding, override or isolate
        let formatting = ('\0'..='\u{1f}')
            .chain('\u{7f}'..='\u{9f}')
            .chain('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{2028}', '\u{2029}', '\u{feff}']);
        for c in formatting {
            // WHEN validated THEN refused, wherever the character stands
            for name in [format!("{c}Team"), format!("Te{c}am"), format!("Team{c}")] {
                assert!(
                    matches!(group_name(&name), Err(ChatError::Invalid(_))),
                    "U+{:04X} accepted",
                    u32::from(c)
                );
            }
        }
        // Their neighbours in the tables, right-to-left text and the bidi marks pass.
        for name in [
            " Team ",
            "Team\u{a0}A",
            "\u{5e6}\u{5d5}\u{5d5}\u{5ea}",
            "Team\u{200e}\u{200f}\u{61c}",
            "Team\u{202f}A\u{2070}",
            "👩\u{200d}👩\u{200d}👧",
        ] {
            assert_eq!(group_name(name).ok().as_deref(), Some(name));
        }
    }
}
