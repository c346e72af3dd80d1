//! Attachments' bytes on the local server: one file per attachment in a directory beside
//! the database, named by the attachment id alone (validated before any file access),
//! 0600 in a 0700 directory, and served by this server at URLs it signs itself
//! (PROTOCOL.md 8.3): `PUT` for the upload, `GET` for downloads, each valid until its
//! `expires`, with an HMAC-SHA256 `signature` over the method, the id, the expiry and a
//! random `nonce` under a key drawn at start (URLs die with the process: a client asks
//! again).
//!
//! An upload is streamed to a temporary file, its length checked as it comes (a longer
//! or shorter body is refused and nothing kept), synced, then linked to its final name,
//! which fails if one is there: uploads are create-only, so accepted bytes cannot be
//! swapped.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_shared::ChatError;
use chat_shared::domain;
use chat_shared::ids::{AttachmentId, Millis};
use chat_shared::ports::{
    AttachmentRecord, AttachmentStore, BlobError, BlobStore, BlobUse, UploadUrl,
};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;
use tracing::warn;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use crate::server::App;

/// The path of the routes, before the id.
pub const ROUTE: &str = "/v1/blobs/{id}";

/// Attachment files: a directory of them and the key their URLs are signed with.
pub struct LocalBlobs {
    dir: PathBuf,
    /// `http://host:port` as clients reach this server.
    public_url: String,
    key: [u8; 32],
}

impl LocalBlobs {
    /// The attachment directory for the database at `database` (`<database>.attachments`),
    /// created 0700 if missing; temporary files an earlier process left are removed.
    pub fn open(database: &Path, public_url: String) -> io::Result<Self> {
        let mut name = database.as_os_str().to_owned();
        name.push(".attachments");
        let dir = PathBuf::from(name);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        builder.create(&dir)?;
        #[cfg(unix)]
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().contains(".part-") {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Self {
            dir,
            public_url: public_url.trim_end_matches('/').to_owned(),
            key: rand::random(),
        })
    }

    fn path(&self, id: &AttachmentId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    fn mac(&self, method: &str, id: &AttachmentId, expires: Millis, nonce: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(format!("{method}\n{id}\n{expires}\n{nonce}").as_bytes());
        mac
    }

    /// A URL for `method` on `id` until `expires`. A random nonce makes every URL new
    /// (clients cache bytes by attachment id, never by URL).
    fn url(&self, method: &str, id: &AttachmentId, expires: Millis) -> String {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>());
        let signature = URL_SAFE_NO_PAD.encode(
            self.mac(method, id, expires, &nonce)
                .finalize()
                .into_bytes(),
        );
        format!(
            "{}/v1/blobs/{id}?expires={expires}&nonce={nonce}&signature={signature}",
            self.public_url,
        )
    }

    /// Whether `signature` is this server's for `method` on `id` until `expires` with
    /// `nonce`, and `expires` is still ahead of `now`.
    fn verify(&self, method: &str, id: &AttachmentId, q: &Signed, now: Millis) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(&q.signature) else {
            return false;
        };
        self.mac(method, id, q.expires, &q.nonce)
            .verify_slice(&given)
            .is_ok()
            && q.expires > now
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn upload_url(
        &self,
        a: &AttachmentRecord,
        expires_at: Millis,
    ) -> Result<UploadUrl, BlobError> {
        Ok(UploadUrl {
            url: self.url("PUT", &a.id, expires_at),
            headers: vec![
                ("Content-Type".to_owned(), a.mime_type.clone()),
                ("If-None-Match".to_owned(), "*".to_owned()),
            ],
        })
    }

    async fn download_url(
        &self,
        a: &AttachmentRecord,
        expires_at: Millis,
    ) -> Result<String, BlobError> {
        Ok(self.url("GET", &a.id, expires_at))
    }

    async fn uploaded_size(&self, id: &AttachmentId) -> Result<Option<u64>, BlobError> {
        match std::fs::metadata(self.path(id)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError(Box::new(e))),
        }
    }

    /// Nothing to note: files go only when the service deletes them.
    async fn mark(&self, _id: &AttachmentId, _used_for: BlobUse) -> Result<(), BlobError> {
        Ok(())
    }

    async fn delete(&self, ids: &[AttachmentId]) -> Result<(), BlobError> {
        for id in ids {
            match std::fs::remove_file(self.path(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BlobError(Box::new(e))),
            }
        }
        sync_dir(&self.dir).map_err(|e| BlobError(Box::new(e)))
    }
}

/// The query of a signed URL.
#[derive(Deserialize)]
pub struct Signed {
    expires: Millis,
    nonce: String,
    signature: String,
}

/// An answer of the blob routes: a status and a short reason, as JSON like the API's.
fn refuse(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": match status {
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::FORBIDDEN => "FORBIDDEN",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => "CONFLICT",
        StatusCode::INTERNAL_SERVER_ERROR => "INTERNAL",
        _ => "INVALID_MESSAGE",
    }, "message": message, "retryAfterMs": null}});
    (status, axum::Json(body)).into_response()
}

/// The attachment a signed URL names, if the signature holds for `method`.
async fn signed_attachment(
    app: &App,
    blobs: &LocalBlobs,
    method: &str,
    id: &str,
    q: &Signed,
) -> Result<AttachmentRecord, Response> {
    let id =
        AttachmentId::parse(id).map_err(|_| refuse(StatusCode::NOT_FOUND, "no such attachment"))?;
    if !blobs.verify(method, &id, q, app.chat.now()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "the URL's signature is not valid or has expired",
        ));
    }
    match app.store.attachments(std::slice::from_ref(&id)).await {
        Ok(mut found) => found
            .pop()
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "no such attachment")),
        Err(e) => Err(internal(&e.into())),
    }
}

/// `500` for a file operation that failed (logged with `what`).
fn file_failed(what: &'static str, e: io::Error) -> Response {
    internal(&ChatError::Store(chat_shared::error::StoreError::new(
        what, e,
    )))
}

fn internal(e: &ChatError) -> Response {
    warn!(error = %e, "attachment route failed");
    refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// `PUT /v1/blobs/{id}`: an upload, with exactly the headers and length its URL was
/// issued for.
pub async fn upload(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(blobs) = app.blobs.as_ref() else {
        return refuse(StatusCode::NOT_FOUND, "no such route");
    };
    let a = match signed_attachment(&app, blobs, "PUT", &id, &q).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if !header(header::CONTENT_TYPE).is_some_and(|t| t.eq_ignore_ascii_case(&a.mime_type)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "Content-Type must be the attachment's mimeType",
        );
    }
    if header(header::IF_NONE_MATCH) != Some("*") {
        return refuse(StatusCode::FORBIDDEN, "uploads must carry If-None-Match: *");
    }
    // Create-only comes first: whatever a second upload carries, the first stands.
    let path = blobs.path(&a.id);
    if path.exists() {
        return refuse(
            StatusCode::PRECONDITION_FAILED,
            "the attachment is uploaded already",
        );
    }
    let declared = header(header::CONTENT_LENGTH).map(str::parse::<u64>);
    match declared {
        Some(Ok(n)) if n > a.size => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is longer than the attachment's size",
            );
        }
        Some(Ok(n)) if n < a.size => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the body is shorter than the attachment's size",
            );
        }
        Some(Err(_)) => return refuse(StatusCode::BAD_REQUEST, "Content-Length is not valid"),
        _ => {}
    }
    let part = blobs
        .dir
        .join(format!("{}.part-{:016x}", a.id, rand::random::<u64>()));
    let result = receive(&part, body, a.size, app.listen.request_timeout).await;
    let answer = match result {
        Ok(()) => match std::fs::hard_link(&part, &path) {
            Ok(()) => match sync_dir(&blobs.dir) {
                Ok(()) => StatusCode::OK.into_response(),
                Err(e) => file_failed("sync", e),
            },
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => refuse(
                StatusCode::PRECONDITION_FAILED,
                "the attachment is uploaded already",
            ),
            Err(e) => file_failed("link", e),
        },
        Err(r) => r,
    };
    if let Err(e) = std::fs::remove_file(&part)
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(error = %e, path = %part.display(), "could not remove an upload's temporary file");
    }
    answer
}

/// Streams `body` into a new file at `part` (0600), refusing it as soon as it passes
/// `size` bytes, or when it ends short of them, or when no bytes come for `idle`.
async fn receive(part: &Path, body: Body, size: u64, idle: Duration) -> Result<(), Response> {
    let io_failed = |e: io::Error| file_failed("write an upload", e);
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(part).await.map_err(io_failed)?;
    let mut stream = body.into_data_stream();
    let mut written: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return Err(refuse(StatusCode::REQUEST_TIMEOUT, "the upload stalled")),
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "the upload could not be read",
                ));
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        written += chunk.len() as u64;
        if written > size {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is longer than the attachment's size",
            ));
        }
        file.write_all(&chunk).await.map_err(io_failed)?;
    }
    if written < size {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "the body is shorter than the attachment's size",
        ));
    }
    file.sync_all().await.map_err(io_failed)
}

/// `GET /v1/blobs/{id}`: a download, served so that no file can run in a browser.
pub async fn download(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<Signed>,
) -> Response {
    let Some(blobs) = app.blobs.as_ref() else {
        return refuse(StatusCode::NOT_FOUND, "no such route");
    };
    let a = match signed_attachment(&app, blobs, "GET", &id, &q).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let file = match tokio::fs::File::open(blobs.path(&a.id)).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return refuse(StatusCode::NOT_FOUND, "no such attachment");
        }
        Err(e) => {
            return file_failed("read", e);
        }
    };
    let length = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => {
            return file_failed("read", e);
        }
    };
    let (content_type, disposition) =
        domain::download_headers(&a.mime_type, a.file_name.as_deref());
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let h = response.headers_mut();
    let value = |s: &str| {
        HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    h.insert(header::CONTENT_TYPE, value(&content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    response
}

/// Makes a directory's entries (a file linked or removed) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
