//! Attachments' records: one item each in the main table (`a#{id}` / `#attachment`),
//! claimed by the append of the message that uses it (see `append`). An unused one
//! expires by TTL a day after its creation, a claimed one with its message; their bytes
//! expire by the bucket's lifecycle rules, which read the object's tag (`crate::s3`), so
//! nothing here sweeps.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use chat_shared::domain::UNUSED_ATTACHMENT_MS;
use chat_shared::ids::{AttachmentId, ConversationId, Millis, Seq, UserId};
use chat_shared::ports::{
    AttachmentRecord, AttachmentStore, AttachmentUse, NewMessage, StoreResult,
};

use super::DynamoStore;
use super::client::sdk;
use super::codec::{Item, entry_key, get_n, get_s, key, malformed, n, opt_n, opt_s, s};

const SK: &str = "#attachment";

fn attachment_key(id: &AttachmentId) -> Item {
    key(format!("a#{id}"), SK)
}

/// The attachment ids a new entry's item records (`attachmentIds`): a message's
/// attachment and thumbnail. Kept when a delete erases the content, so the fan-out of the
/// delete can find the bytes to delete.
pub(crate) fn attachment_ids(m: &NewMessage) -> Vec<&AttachmentId> {
    match &m.entry {
        chat_shared::protocol::Entry::Message {
            content: Some(c), ..
        } => c.attachment_ids().collect(),
        _ => Vec::new(),
    }
}

fn transaction_update(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
) -> TransactWriteItem {
    TransactWriteItem::builder()
        .update(update.build().expect("update has key and expression"))
        .build()
}

fn record_from(item: &Item) -> StoreResult<AttachmentRecord> {
    let id = get_s(item, "pk")?
        .strip_prefix("a#")
        .ok_or_else(|| malformed("attachment key".into()))?;
    let used_by = match opt_s(item, "usedBy").as_deref() {
        None => None,
        Some("message") => Some(AttachmentUse::Message(get_n(item, "usedSeq")?)),
        Some("avatar") => Some(AttachmentUse::Avatar),
        Some(other) => return Err(malformed(format!("attachment usedBy {other}"))),
    };
    Ok(AttachmentRecord {
        id: AttachmentId::parse(id).map_err(|e| malformed(e.0))?,
        conversation_id: ConversationId::parse(get_s(item, "conversationId")?)
            .map_err(|e| malformed(e.0))?,
        uploader: UserId::parse(get_s(item, "uploader")?).map_err(|e| malformed(e.0))?,
        mime_type: get_s(item, "mimeType")?.to_owned(),
        size: get_n(item, "size")?,
        file_name: opt_s(item, "fileName"),
        created_at: opt_n(item, "createdAt")?.unwrap_or(0),
        used_by,
    })
}

impl DynamoStore {
    /// The start of a claim of attachment `id`: an update conditional on its being
    /// `uploader`'s, of `conversation`, and used by nothing.
    fn claim(
        &self,
        id: &AttachmentId,
        conversation: &ConversationId,
        uploader: &UserId,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(attachment_key(id)))
            .condition_expression(
                "conversationId = :c AND uploader = :u AND attribute_not_exists(usedBy)",
            )
            .expression_attribute_values(":c", s(conversation.as_str()))
            .expression_attribute_values(":u", s(uploader.as_str()))
    }

    /// The claim of attachment `id` by the message `m` appends at `seq`; the item then
    /// lives as long as the message.
    pub(crate) fn attachment_claim(
        &self,
        m: &NewMessage,
        id: &AttachmentId,
        seq: Seq,
    ) -> TransactWriteItem {
        let update = self
            .claim(id, &m.conversation_id, &m.sender_id)
            .expression_attribute_values(":used", s("message"))
            .expression_attribute_values(":seq", n(seq));
        let update = match m.expires_at {
            Some(at) => update
                .update_expression("SET usedBy = :used, usedSeq = :seq, expiresAt = :exp")
                .expression_attribute_values(":exp", n(at / 1000)),
            None => update.update_expression("SET usedBy = :used, usedSeq = :seq REMOVE expiresAt"),
        };
        transaction_update(update)
    }

    /// The claim of attachment `id` as the avatar of `conversation` set by `actor`; an
    /// avatar does not expire.
    pub(crate) fn avatar_claim(
        &self,
        conversation: &ConversationId,
        actor: &UserId,
        id: &AttachmentId,
    ) -> TransactWriteItem {
        let update = self
            .claim(id, conversation, actor)
            .update_expression("SET usedBy = :avatar REMOVE expiresAt")
            .expression_attribute_values(":avatar", s("avatar"));
        transaction_update(update)
    }

    /// The update that releases a replaced avatar: used by nothing, and expiring now
    /// (TTL), dated back so that no send may use it.
    pub(crate) fn attachment_release(&self, id: &AttachmentId, now: Millis) -> TransactWriteItem {
        let update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(attachment_key(id)))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET expiresAt = :now, createdAt = :epoch REMOVE usedBy, usedSeq")
            .expression_attribute_values(":now", n(now / 1000))
            .expression_attribute_values(":epoch", n(0));
        transaction_update(update)
    }
}

#[async_trait]
impl AttachmentStore for DynamoStore {
    async fn create_attachment(&self, a: &AttachmentRecord) -> StoreResult<()> {
        let mut item = attachment_key(&a.id);
        item.extend([
            ("conversationId".to_owned(), s(a.conversation_id.as_str())),
            ("uploader".to_owned(), s(a.uploader.as_str())),
            ("mimeType".to_owned(), s(&a.mime_type)),
            ("size".to_owned(), n(a.size)),
            ("createdAt".to_owned(), n(a.created_at)),
            (
                "expiresAt".to_owned(),
                n((a.created_at + UNUSED_ATTACHMENT_MS) / 1000),
            ),
        ]);
        if let Some(name) = &a.file_name {
            item.insert("fileName".into(), s(name));
        }
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk("create attachment"))?;
        Ok(())
    }

    async fn attachments(&self, ids: &[AttachmentId]) -> StoreResult<Vec<AttachmentRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let items = self
            .batch_get(ids.iter().map(attachment_key).collect(), true)
            .await?;
        items.iter().map(record_from).collect()
    }

    async fn message_attachments(
        &self,
        conversation: &ConversationId,
        seq: Seq,
    ) -> StoreResult<Vec<AttachmentId>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.messages)
            .set_key(Some(entry_key(conversation.as_str(), seq)))
            .projection_expression("attachmentIds")
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("read a message's attachments"))?;
        let ids = match out.item.as_ref().and_then(|i| i.get("attachmentIds")) {
            Some(AttributeValue::L(list)) => list,
            _ => return Ok(Vec::new()),
        };
        ids.iter()
            .map(|v| match v {
                AttributeValue::S(id) => AttachmentId::parse(id).map_err(|e| malformed(e.0)),
                _ => Err(malformed("attachmentIds".into())),
            })
            .collect()
    }

    /// Nothing to sweep: items expire by TTL, bytes by the bucket's lifecycle rules.
    async fn doomed_attachments(
        &self,
        _unused_before: Millis,
        _expired_before: Millis,
        _limit: u32,
    ) -> StoreResult<Vec<AttachmentId>> {
        Ok(Vec::new())
    }

    async fn forget_attachments(&self, ids: &[AttachmentId]) -> StoreResult<()> {
        self.batch_delete(ids.iter().map(attachment_key).collect())
            .await
    }
}
