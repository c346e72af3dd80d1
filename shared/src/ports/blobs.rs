//! The blob port: where attachments' bytes live (S3 on AWS, files beside the database
//! locally), and the URLs clients move them by. Bytes never pass through the service.

use async_trait::async_trait;

use super::AttachmentRecord;
use crate::ids::{AttachmentId, Millis};

/// A URL a client sends the bytes to, with exactly these headers (PROTOCOL.md 8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadUrl {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// What an attachment's bytes are for (see [`BlobStore::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobUse {
    /// Nothing yet (or no longer: a send that named it was refused).
    Unused,
    Message,
    Avatar,
}

/// Why the blob store failed.
#[derive(Debug, thiserror::Error)]
#[error("blob store: {0}")]
pub struct BlobError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl BlobError {
    /// A failure described by a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

/// Stores attachments' bytes. Uploads and downloads go straight between the client and
/// the store, at URLs signed here that expire.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// A create-only upload of exactly `attachment.size` bytes of its type, valid until
    /// `expires_at`: a second upload to the same attachment is refused.
    async fn upload_url(
        &self,
        attachment: &AttachmentRecord,
        expires_at: Millis,
    ) -> Result<UploadUrl, BlobError>;
    /// A download valid until `expires_at`, served with the safe headers of
    /// [`crate::domain::download_headers`].
    async fn download_url(
        &self,
        attachment: &AttachmentRecord,
        expires_at: Millis,
    ) -> Result<String, BlobError>;
    /// The size of the attachment's completed upload; `None` while there is none.
    async fn uploaded_size(&self, id: &AttachmentId) -> Result<Option<u64>, BlobError>;
    /// Notes what the bytes are for, for a store that expires bytes on its own (S3's
    /// lifecycle rules read it): noted before the use is stored, so bytes in use are
    /// never taken for unused ones. A store whose bytes go only when the service deletes
    /// them has nothing to note.
    async fn mark(&self, id: &AttachmentId, used_for: BlobUse) -> Result<(), BlobError>;
    /// Deletes the bytes of these attachments (those already gone are no error).
    async fn delete(&self, ids: &[AttachmentId]) -> Result<(), BlobError>;
}
