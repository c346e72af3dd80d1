//! The blob port on S3: one private object per attachment (`attachments/{id}`), moved by
//! the clients themselves at presigned URLs.
//!
//! - Uploads: a presigned `PutObject` whose signature binds the length, the type,
//!   `If-None-Match: *` (create-only: a second PUT gets 412) and the object's tag
//!   `chat-use=unused`. The client sends exactly the headers given; `Content-Length`
//!   and `Host` are left out of them (the HTTP client sets both from the request) and
//!   are signed all the same.
//! - The tag says what the bytes are for, and the bucket's lifecycle rules read it
//!   (`template.yaml`): `unused` objects expire a day after the upload, `message`
//!   ones with the retention period, `avatar` ones never. A send tags its attachment
//!   `message` before its append claims it, so bytes in use are never taken for unused.
//! - Downloads: a presigned `GetObject` that sets the response's `Content-Type` and
//!   `Content-Disposition` ([`domain::download_headers`]): active types come as
//!   `application/octet-stream` attachments. S3 cannot add `X-Content-Type-Options`
//!   (SECURITY.md says what stands in for it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, Tag, Tagging};

use chat_shared::domain;
use chat_shared::ids::{AttachmentId, Millis};
use chat_shared::ports::{AttachmentRecord, BlobError, BlobStore, BlobUse, UploadUrl};

/// The tag the bucket's lifecycle rules read.
pub const USE_TAG: &str = "chat-use";

/// Objects one `DeleteObjects` takes at most.
const DELETE_BATCH: usize = 1000;

/// Attachments' bytes in one bucket.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

fn failed<E: std::error::Error + Send + Sync + 'static>(e: E) -> BlobError {
    BlobError(Box::new(e))
}

/// The object key of an attachment: its id, which is validated on parse.
pub fn object_key(id: &AttachmentId) -> String {
    format!("attachments/{id}")
}

/// The tag value of a use.
pub fn use_tag(used_for: BlobUse) -> &'static str {
    match used_for {
        BlobUse::Unused => "unused",
        BlobUse::Message => "message",
        BlobUse::Avatar => "avatar",
    }
}

/// A presigning for a URL valid until `expires_at` (at least a second).
fn presigning(expires_at: Millis) -> Result<PresigningConfig, BlobError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let ms = (expires_at - now).max(1000) as u64;
    PresigningConfig::expires_in(Duration::from_millis(ms)).map_err(failed)
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn upload_url(
        &self,
        a: &AttachmentRecord,
        expires_at: Millis,
    ) -> Result<UploadUrl, BlobError> {
        let size = i64::try_from(a.size).map_err(|_| BlobError::msg("size out of range"))?;
        let presigned = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(object_key(&a.id))
            .content_type(&a.mime_type)
            .content_length(size)
            .if_none_match("*")
            .tagging(format!("{USE_TAG}={}", use_tag(BlobUse::Unused)))
            .presigned(presigning(expires_at)?)
            .await
            .map_err(failed)?;
        let headers = presigned
            .headers()
            .filter(|(name, _)| {
                !name.eq_ignore_ascii_case("content-length") && !name.eq_ignore_ascii_case("host")
            })
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Ok(UploadUrl {
            url: presigned.uri().to_owned(),
            headers,
        })
    }

    async fn download_url(
        &self,
        a: &AttachmentRecord,
        expires_at: Millis,
    ) -> Result<String, BlobError> {
        let (content_type, disposition) =
            domain::download_headers(&a.mime_type, a.file_name.as_deref());
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(object_key(&a.id))
            .response_content_type(content_type)
            .response_content_disposition(disposition)
            .response_cache_control("private, max-age=300")
            .presigned(presigning(expires_at)?)
            .await
            .map_err(failed)?;
        Ok(presigned.uri().to_owned())
    }

    async fn uploaded_size(&self, id: &AttachmentId) -> Result<Option<u64>, BlobError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(object_key(id))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    async fn mark(&self, id: &AttachmentId, used_for: BlobUse) -> Result<(), BlobError> {
        let tag = Tag::builder()
            .key(USE_TAG)
            .value(use_tag(used_for))
            .build()
            .map_err(failed)?;
        let tagging = Tagging::builder().tag_set(tag).build().map_err(failed)?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(object_key(id))
            .tagging(tagging)
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn delete(&self, ids: &[AttachmentId]) -> Result<(), BlobError> {
        for chunk in ids.chunks(DELETE_BATCH) {
            let objects = chunk
                .iter()
                .map(|id| ObjectIdentifier::builder().key(object_key(id)).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(failed)?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(failed)?;
            if let Some(e) = out.errors().first() {
                return Err(BlobError::msg(format!(
                    "could not delete {}: {}",
                    e.key().unwrap_or("?"),
                    e.message().unwrap_or("?")
                )));
            }
        }
        Ok(())
    }
}
