//! Message content (PROTOCOL.md 2 and 8.3): text, or an attachment with its caption and
//! how to show it, as clients send it and as it is stored and fanned out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{MAX_TEXT_CHARS, invalid};
use crate::error::ChatError;
use crate::ids::AttachmentId;
use crate::json::{JsonObject, JsonValue};

/// Largest `preview` (a ThumbHash), decoded.
pub const MAX_PREVIEW_BYTES: usize = 2048;
/// Largest `width` or `height` an attachment may declare, in pixels.
pub const MAX_DIMENSION: u64 = 100_000;
/// Longest `durationMs` an attachment may declare (a week).
pub const MAX_DURATION_MS: u64 = 7 * 86_400_000;

/// A message's content: `type` `text` (with `text`) or `attachment` (with `media`; its
/// `text` is the caption, empty for none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    /// An attachment message's attachment and how to show it, beside `type` and `text`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Box<Media>>,
}

/// What an attachment message shows (PROTOCOL.md 8.3, step 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    pub attachment: AttachmentInfo,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub duration_ms: Option<u64>,
    /// A ThumbHash, standard base64.
    pub preview: Option<String>,
    /// A small image of the same sender and conversation, for lists.
    pub thumbnail_id: Option<AttachmentId>,
}

/// An attachment as messages show it. In a `send` as a client makes it, only
/// `attachment_id` is known: the service fills in the rest from the attachment's record
/// before anything is stored ([`AttachmentInfo::requested`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentInfo {
    pub attachment_id: AttachmentId,
    pub mime_type: String,
    pub size: u64,
    pub file_name: Option<String>,
}

impl AttachmentInfo {
    /// The attachment a client names, not yet looked up.
    fn requested(attachment_id: AttachmentId) -> Self {
        Self {
            attachment_id,
            mime_type: String::new(),
            size: 0,
            file_name: None,
        }
    }
}

/// What a content object is parsed for: an edit of an attachment message carries only
/// the new caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentFor {
    Send,
    Edit,
}

impl Content {
    /// Text content.
    pub fn text(text: impl Into<String>) -> Self {
        Content {
            kind: "text".into(),
            text: text.into(),
            media: None,
        }
    }

    /// Whether it is an attachment message's.
    pub fn is_attachment(&self) -> bool {
        self.kind == "attachment"
    }

    /// The attachments it uses: its attachment and its thumbnail.
    pub fn attachment_ids(&self) -> impl Iterator<Item = &AttachmentId> {
        self.media.iter().flat_map(|m| {
            std::iter::once(&m.attachment.attachment_id).chain(m.thumbnail_id.as_ref())
        })
    }

    /// Validates a client-supplied content object.
    pub(crate) fn parse<V: JsonValue>(value: &V, purpose: ContentFor) -> Result<Self, ChatError> {
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("content must be an object"))?;
        let text = |required: bool| -> Result<String, ChatError> {
            let text = match obj.get("text") {
                Some(v) if !v.is_null() || required => v
                    .as_str()
                    .ok_or_else(|| invalid("content.text must be a string"))?,
                _ if required => return Err(invalid("content.text must be a string")),
                _ => "",
            };
            let n = text.chars().count();
            if (required && n == 0) || n > MAX_TEXT_CHARS {
                return Err(invalid(if required {
                    "content.text must be 1-4000 characters"
                } else {
                    "content.text must be at most 4000 characters"
                }));
            }
            Ok(text.to_owned())
        };
        match obj.get("type").and_then(V::as_str) {
            Some("text") => Ok(Content::text(text(true)?)),
            Some("attachment") => {
                let text = text(false)?;
                let media = match purpose {
                    ContentFor::Send => Some(Box::new(Media::parse(obj)?)),
                    ContentFor::Edit => {
                        let fixed = [
                            "attachmentId",
                            "attachment",
                            "width",
                            "height",
                            "durationMs",
                            "preview",
                            "thumbnailId",
                        ];
                        if fixed.iter().any(|f| obj.get(f).is_some()) {
                            return Err(invalid(
                                "an edit of an attachment message changes only its text",
                            ));
                        }
                        None
                    }
                };
                Ok(Content {
                    kind: "attachment".into(),
                    text,
                    media,
                })
            }
            Some(_) => Err(invalid("content.type must be \"text\" or \"attachment\"")),
            None => Err(invalid("content.type is required")),
        }
    }
}

impl Media {
    fn parse<O: JsonObject>(obj: &O) -> Result<Self, ChatError> {
        let id = |name: &str| -> Result<Option<AttachmentId>, ChatError> {
            match obj.get(name) {
                Some(v) if !v.is_null() => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| invalid(&format!("content.{name} must be a string")))?;
                    Ok(Some(AttachmentId::parse(s).map_err(|_| {
                        invalid(&format!("content.{name} is not a valid attachment id"))
                    })?))
                }
                _ => Ok(None),
            }
        };
        let number = |name: &str, min: u64, max: u64| -> Result<Option<u64>, ChatError> {
            match obj.get(name) {
                Some(v) if !v.is_null() => match v.as_u64() {
                    Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(invalid(&format!(
                        "content.{name} must be an integer from {min} to {max}"
                    ))),
                },
                _ => Ok(None),
            }
        };
        let attachment_id =
            id("attachmentId")?.ok_or_else(|| invalid("content.attachmentId is required"))?;
        let thumbnail_id = id("thumbnailId")?;
        if thumbnail_id.as_ref() == Some(&attachment_id) {
            return Err(invalid(
                "content.thumbnailId must be another attachment than attachmentId",
            ));
        }
        let preview = match obj.get("preview") {
            Some(v) if !v.is_null() => {
                let s = v
                    .as_str()
                    .ok_or_else(|| invalid("content.preview must be a string"))?;
                match STANDARD.decode(s) {
                    Ok(bytes) if !bytes.is_empty() && bytes.len() <= MAX_PREVIEW_BYTES => {
                        Some(s.to_owned())
                    }
                    _ => {
                        return Err(invalid(
                            "content.preview must be standard base64 of 1-2048 bytes",
                        ));
                    }
                }
            }
            _ => None,
        };
        Ok(Media {
            attachment: AttachmentInfo::requested(attachment_id),
            width: number("width", 1, MAX_DIMENSION)?,
            height: number("height", 1, MAX_DIMENSION)?,
            duration_ms: number("durationMs", 0, MAX_DURATION_MS)?,
            preview,
            thumbnail_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn id(n: u8) -> String {
        format!("a_{}", format!("{n:02x}").repeat(16))
    }

    fn send(v: Value) -> Result<Content, ChatError> {
        Content::parse(&v, ContentFor::Send)
    }

    #[test]
    fn attachment_content_is_parsed_with_its_display_fields() {
        let c = send(
            json!({"type":"attachment","attachmentId":id(1),"text":"look",
            "width":640,"height":480,"preview":"AAEC","thumbnailId":id(2)}),
        )
        .unwrap();
        assert!(c.is_attachment());
        assert_eq!(c.text, "look");
        let ids: Vec<&str> = c.attachment_ids().map(AttachmentId::as_str).collect();
        assert_eq!(ids, [id(1), id(2)]);
        let m = c.media.unwrap();
        assert_eq!(
            (m.width, m.height, m.duration_ms),
            (Some(640), Some(480), None)
        );
        // A caption is optional.
        let c = send(json!({"type":"attachment","attachmentId":id(1)})).unwrap();
        assert_eq!(c.text, "");
    }

    #[test]
    fn attachment_content_refuses_bad_fields() {
        for bad in [
            json!({"type":"attachment"}),
            json!({"type":"attachment","attachmentId":"a_x"}),
            json!({"type":"attachment","attachmentId":id(1),"thumbnailId":id(1)}),
            json!({"type":"attachment","attachmentId":id(1),"width":0}),
            json!({"type":"attachment","attachmentId":id(1),"height":-1}),
            json!({"type":"attachment","attachmentId":id(1),"width":1.5}),
            json!({"type":"attachment","attachmentId":id(1),"durationMs":"1"}),
            json!({"type":"attachment","attachmentId":id(1),"preview":"!!"}),
            json!({"type":"attachment","attachmentId":id(1),"preview":"A".repeat(2740)}),
            json!({"type":"attachment","attachmentId":id(1),"text":"x".repeat(4001)}),
            json!({"type":"attachment","attachmentId":id(1),"text":7}),
            json!({"type":"image","attachmentId":id(1)}),
        ] {
            assert!(
                matches!(send(bad.clone()), Err(ChatError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_edit_of_an_attachment_message_carries_only_its_caption() {
        let c = Content::parse(&json!({"type":"attachment","text":""}), ContentFor::Edit).unwrap();
        assert_eq!(
            (c.kind.as_str(), c.text.as_str(), c.media),
            ("attachment", "", None)
        );
        let moved = json!({"type":"attachment","text":"x","attachmentId":id(1)});
        assert!(Content::parse(&moved, ContentFor::Edit).is_err());
    }

    #[test]
    fn stored_content_round_trips_and_text_content_has_no_media_fields() {
        let c = send(json!({"type":"attachment","attachmentId":id(1),"text":"t"})).unwrap();
        let back: Content = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let text = serde_json::to_value(Content::text("hi")).unwrap();
        assert_eq!(text, json!({"type":"text","text":"hi"}));
        let back: Content = serde_json::from_value(text).unwrap();
        assert_eq!(back.media, None);
    }
}
