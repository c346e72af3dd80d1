//! Attachments (PROTOCOL.md 8.3): creating them and their upload URLs, download URLs for
//! those allowed, resolving a send's attachment, and deleting the bytes no message keeps.
//! The bytes go straight between clients and the blob store.

use std::collections::HashMap;

use serde::Serialize;
use tracing::{info, warn};

use super::Chat;
use crate::domain;
use crate::error::{ChatError, ChatResult, StoreError};
use crate::ids::{AttachmentId, ConversationId, Millis, Seq, UserId};
use crate::ports::{AttachmentRecord, BlobError, BlobUse};
use crate::protocol::{Content, Entry};

/// What `POST /v1/attachments` asks for, validated.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub conversation_id: ConversationId,
    pub mime_type: String,
    pub size: u64,
    pub file_name: Option<String>,
}

/// An upload URL and how to use it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    pub url: String,
    pub method: &'static str,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub expires_at: Millis,
}

/// A created attachment (or one given a new upload URL).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentUpload {
    pub attachment_id: AttachmentId,
    pub upload: Upload,
}

/// A download URL.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadUrl {
    pub attachment_id: AttachmentId,
    pub url: String,
    pub expires_at: Millis,
}

/// Attachments removed per sweep at most.
const SWEEP_BATCH: u32 = 500;

impl From<BlobError> for ChatError {
    fn from(e: BlobError) -> Self {
        ChatError::Store(StoreError::new("blob store", e))
    }
}

impl Chat {
    /// Records a new attachment of a conversation the caller is a member of, and gives
    /// its upload URL. Counts against the send rate limit.
    pub async fn create_attachment(
        &self,
        caller: &UserId,
        new: NewAttachment,
    ) -> ChatResult<AttachmentUpload> {
        let ports = self.attachment_ports()?;
        self.member_of(&new.conversation_id, caller).await?;
        if new.size == 0 {
            return Err(ChatError::Invalid("size must be at least 1".into()));
        }
        if new.size > u64::from(self.limits.max_attachment_bytes) {
            return Err(ChatError::PayloadTooLarge(
                "size is over the attachment limit",
            ));
        }
        self.count_change(caller).await?;
        let record = AttachmentRecord {
            id: domain::new_attachment_id(),
            conversation_id: new.conversation_id,
            uploader: caller.clone(),
            mime_type: new.mime_type,
            size: new.size,
            file_name: new.file_name,
            created_at: self.now(),
            used_by: None,
        };
        ports.store.create_attachment(&record).await?;
        self.upload_of(&record).await
    }

    /// A new upload URL for an attachment whose upload is not complete (its uploader
    /// only, while a member).
    pub async fn reissue_upload(
        &self,
        caller: &UserId,
        id: &AttachmentId,
    ) -> ChatResult<AttachmentUpload> {
        let ports = self.attachment_ports()?;
        let record = self
            .attachment(id)
            .await?
            .filter(|a| &a.uploader == caller)
            .ok_or(ChatError::NotFound("no such attachment"))?;
        self.member_of(&record.conversation_id, caller)
            .await
            .map_err(|_| ChatError::NotFound("no such attachment"))?;
        if record.used_by.is_some() || ports.blobs.uploaded_size(id).await?.is_some() {
            return Err(ChatError::Conflict("the upload is complete".into()));
        }
        if self.now() - record.created_at > domain::ATTACHMENT_USABLE_MS {
            return Err(ChatError::NotFound("no such attachment"));
        }
        self.upload_of(&record).await
    }

    async fn upload_of(&self, record: &AttachmentRecord) -> ChatResult<AttachmentUpload> {
        let expires_at = self.now() + domain::UPLOAD_URL_MS;
        let url = self
            .attachment_ports()?
            .blobs
            .upload_url(record, expires_at)
            .await?;
        Ok(AttachmentUpload {
            attachment_id: record.id.clone(),
            upload: Upload {
                url: url.url,
                method: "PUT",
                headers: url
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect(),
                expires_at,
            },
        })
    }

    /// Download URLs of the attachments the caller may read, in the order asked; the
    /// others are left out (PROTOCOL.md 8.3, step 4): a member of its conversation may
    /// read one a message or the avatar uses, its uploader one not used yet.
    pub async fn download_urls(
        &self,
        caller: &UserId,
        ids: &[AttachmentId],
    ) -> ChatResult<Vec<DownloadUrl>> {
        let ports = self.attachment_ports()?;
        if ids.len() > domain::MAX_URL_BATCH {
            return Err(ChatError::Invalid(
                "attachmentIds holds at most 100 ids".into(),
            ));
        }
        let records = ports.store.attachments(ids).await?;
        let mut member_of: HashMap<&ConversationId, bool> = HashMap::new();
        let expires_at = self.now() + domain::DOWNLOAD_URL_MS;
        let mut urls = Vec::new();
        for id in ids {
            let Some(a) = records.iter().find(|a| &a.id == id) else {
                continue;
            };
            if a.used_by.is_none() && &a.uploader != caller {
                continue;
            }
            let member = match member_of.get(&a.conversation_id) {
                Some(m) => *m,
                None => {
                    let m = self
                        .store
                        .membership(&a.conversation_id, caller)
                        .await?
                        .is_some();
                    member_of.insert(&a.conversation_id, m);
                    m
                }
            };
            if !member || urls.iter().any(|u: &DownloadUrl| &u.attachment_id == id) {
                continue;
            }
            if a.used_by.is_none() && ports.blobs.uploaded_size(id).await? != Some(a.size) {
                continue;
            }
            urls.push(DownloadUrl {
                attachment_id: id.clone(),
                url: ports.blobs.download_url(a, expires_at).await?,
                expires_at,
            });
        }
        Ok(urls)
    }

    /// One download URL: `NOT_FOUND` when the caller may not read it.
    pub async fn download_url(
        &self,
        caller: &UserId,
        id: &AttachmentId,
    ) -> ChatResult<DownloadUrl> {
        self.download_urls(caller, std::slice::from_ref(id))
            .await?
            .pop()
            .ok_or(ChatError::NotFound("no such attachment"))
    }

    /// Makes a client's entry ready to store: a send's attachment (and thumbnail) checked
    /// and described from its record, an edit of an attachment message given the
    /// attachment it keeps. The store claims the attachments atomically with the append.
    pub(crate) async fn resolve_attachments(
        &self,
        caller: &UserId,
        conversation: &ConversationId,
        entry: &mut Entry,
    ) -> ChatResult<()> {
        match entry {
            Entry::Message {
                content: Some(content),
                ..
            } if content.is_attachment() => self.resolve_send(caller, conversation, content).await,
            Entry::Edit {
                target_seq,
                content: Some(content),
            } if content.is_attachment() => {
                self.sendable_attachments()?;
                // The attachment of a message never changes: any state of the target
                // has it. A target that is gone or not an attachment is refused by the
                // store's check.
                let target = self.message_at(caller, conversation, *target_seq).await?;
                content.media = target
                    .as_ref()
                    .and_then(|m| m.entry.content())
                    .and_then(|c| c.media.clone());
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn resolve_send(
        &self,
        caller: &UserId,
        conversation: &ConversationId,
        content: &mut Content,
    ) -> ChatResult<()> {
        let ports = self.sendable_attachments()?;
        let media = content
            .media
            .as_mut()
            .ok_or_else(|| ChatError::Invalid("content.attachmentId is required".into()))?;
        let ids: Vec<AttachmentId> = content_ids(media);
        let records = ports.store.attachments(&ids).await?;
        let now = self.now();
        let mut resolved = Vec::new();
        for id in &ids {
            let a = records
                .iter()
                .find(|a| &a.id == id)
                .filter(|a| &a.uploader == caller && &a.conversation_id == conversation)
                .ok_or_else(|| {
                    ChatError::Invalid(format!(
                        "attachment {id} is not one of yours in this conversation"
                    ))
                })?;
            if a.used_by.is_some() {
                return Err(ChatError::Invalid(format!(
                    "attachment {id} is already used"
                )));
            }
            if now - a.created_at > domain::ATTACHMENT_USABLE_MS {
                return Err(ChatError::Invalid(format!("attachment {id} has expired")));
            }
            if ports.blobs.uploaded_size(id).await? != Some(a.size) {
                return Err(ChatError::Invalid(format!(
                    "the upload of attachment {id} is not complete"
                )));
            }
            resolved.push(a);
        }
        if let Some(thumbnail) = resolved.get(1)
            && (!domain::is_inline_image(&thumbnail.mime_type)
                || thumbnail.size > domain::MAX_THUMBNAIL_BYTES)
        {
            return Err(ChatError::Invalid(
                "a thumbnail must be an image (jpeg, png, gif, webp, heic) of at most 256 KiB"
                    .into(),
            ));
        }
        media.attachment = resolved[0].info();
        // Noted before the append: bytes a message may use are never taken for unused.
        for id in &ids {
            ports.blobs.mark(id, BlobUse::Message).await?;
        }
        Ok(())
    }

    /// The `message` entry at `seq` in its current state, as `caller` sees it.
    async fn message_at(
        &self,
        caller: &UserId,
        conversation: &ConversationId,
        seq: Seq,
    ) -> ChatResult<Option<crate::ports::MessageRecord>> {
        if seq == 0 {
            return Ok(None);
        }
        let query = crate::ports::MessageQuery {
            after: Some(seq - 1),
            before: Some(seq + 1),
            limit: 1,
            newest: false,
            min_timestamp: self.limits.retention_cutoff(self.now()),
        };
        let (found, _) = self.store.messages(conversation, caller, query).await?;
        Ok(found.into_iter().find(|m| m.entry.is_message()))
    }

    /// Deletes the bytes of the attachments of the deleted message at `seq`, then their
    /// records. Run by the fan-out of the delete: a failure fails the fan-out, which the
    /// change feed repeats.
    pub(crate) async fn erase_attachments(
        &self,
        conversation: &ConversationId,
        seq: Seq,
    ) -> ChatResult<()> {
        let Ok(ports) = self.attachment_ports() else {
            return Ok(());
        };
        let ids = ports.store.message_attachments(conversation, seq).await?;
        if ids.is_empty() {
            return Ok(());
        }
        ports.blobs.delete(&ids).await?;
        ports.store.forget_attachments(&ids).await?;
        info!(conversation.id = %conversation, seq, count = ids.len(), "attachments of a deleted message erased");
        Ok(())
    }

    /// Checks that attachment `id` may become the avatar of `conversation` set by
    /// `caller`: theirs, of the group, an inline image whose upload is complete, used by
    /// nothing, not expired; then notes its bytes as an avatar's. The store claims it.
    pub(crate) async fn check_avatar(
        &self,
        caller: &UserId,
        conversation: &ConversationId,
        id: &AttachmentId,
    ) -> ChatResult<()> {
        let ports = self.sendable_attachments()?;
        let a = self
            .attachment(id)
            .await?
            .filter(|a| &a.uploader == caller && &a.conversation_id == conversation)
            .filter(|a| a.used_by.is_none() && domain::is_inline_image(&a.mime_type))
            .filter(|a| self.now() - a.created_at <= domain::ATTACHMENT_USABLE_MS)
            .ok_or_else(bad_avatar)?;
        if ports.blobs.uploaded_size(id).await? != Some(a.size) {
            return Err(ChatError::Invalid(format!(
                "the upload of attachment {id} is not complete"
            )));
        }
        ports.blobs.mark(id, BlobUse::Avatar).await?;
        Ok(())
    }

    /// Deletes attachments' bytes and records now (an avatar replaced). On failure they
    /// stay released, and the sweep (or, on AWS, the lifecycle rules and TTL) takes them.
    pub(crate) async fn delete_attachments(&self, ids: &[AttachmentId]) {
        let Ok(ports) = self.attachment_ports() else {
            return;
        };
        let deleted = match ports.blobs.delete(ids).await {
            Ok(()) => ports
                .store
                .forget_attachments(ids)
                .await
                .map_err(ChatError::from),
            Err(e) => {
                // Left to expire as unused (S3's lifecycle rule reads the tag; locally
                // the released record is swept).
                for id in ids {
                    let _ = ports.blobs.mark(id, BlobUse::Unused).await;
                }
                Err(e.into())
            }
        };
        if let Err(e) = deleted {
            warn!(error = %e, "could not delete released attachments; they expire unused");
        }
    }

    /// Deletes attachments no message or avatar uses a day after their creation, and
    /// those of expired messages: the bytes, then the records. How many.
    pub async fn expire_attachments(&self) -> ChatResult<u64> {
        let Ok(ports) = self.attachment_ports() else {
            return Ok(0);
        };
        let now = self.now();
        let unused_before = now - domain::UNUSED_ATTACHMENT_MS;
        let expired_before = self.limits.retention_cutoff(now);
        let mut total = 0;
        loop {
            let ids = ports
                .store
                .doomed_attachments(unused_before, expired_before, SWEEP_BATCH)
                .await?;
            if ids.is_empty() {
                return Ok(total);
            }
            if let Err(e) = ports.blobs.delete(&ids).await {
                warn!(error = %e, "could not delete expired attachments' bytes");
                return Err(e.into());
            }
            ports.store.forget_attachments(&ids).await?;
            total += ids.len() as u64;
            if ids.len() < SWEEP_BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// The attachment ports for a send: without them, attachment content is invalid.
    fn sendable_attachments(&self) -> ChatResult<&super::AttachmentPorts> {
        self.attachment_ports()
            .map_err(|_| ChatError::Invalid("attachments are not enabled on this server".into()))
    }

    async fn attachment(&self, id: &AttachmentId) -> ChatResult<Option<AttachmentRecord>> {
        let ports = self.attachment_ports()?;
        Ok(ports
            .store
            .attachments(std::slice::from_ref(id))
            .await?
            .pop())
    }
}

/// The attachment and thumbnail a send names, in that order.
fn content_ids(media: &crate::protocol::Media) -> Vec<AttachmentId> {
    std::iter::once(media.attachment.attachment_id.clone())
        .chain(media.thumbnail_id.clone())
        .collect()
}

/// The refusal of an avatar that is not the caller's unused image of the group.
pub(crate) fn bad_avatar() -> ChatError {
    ChatError::Invalid(
        "avatar must be an image (jpeg, png, gif, webp, heic) you uploaded to this conversation \
         that no message uses"
            .into(),
    )
}
