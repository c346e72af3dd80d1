//! Protocol 1.1, section 8.3: attachments. Creating one (`POST /v1/attachments`), the
//! create-only upload to the URL it gives, sending it as a message, editing its caption,
//! download URLs for those allowed and what a download is served with, pushes, and the
//! erasure of its bytes when its message is deleted.
//!
//! Upload and download URLs are fetched as a client would: a plain HTTP request to the URL
//! as given, with exactly the headers given and no `Authorization`. This binary has no
//! HTTP client of its own for arbitrary URLs, so [`http_raw`] speaks HTTP/1.1 over a TCP
//! stream (the URLs are the local server's own).
//!
//! One file per concern; the helpers they share are here.

mod authorization;
mod avatar;
mod bad_input;
mod download;
mod edit;
mod erasure;
mod push;
mod send;
mod upload;

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A valid 1x1 transparent PNG (67 bytes).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

/// A ThumbHash in standard base64 (a valid `preview`).
const PREVIEW: &str = "1QcSHQRnh493V4dIh4eXh1h4kJUI";

/// How long one raw HTTP exchange may take.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a download URL is valid at most (PROTOCOL.md 8.3, step 4).
const DOWNLOAD_VALID_MS: i64 = 5 * 60_000;

/// How long an upload URL is valid (PROTOCOL.md 8.3, step 1).
const UPLOAD_VALID_MS: i64 = 15 * 60_000;

/// Bytes no other test and no other part of the store holds: a label made unique to this
/// process and call, plus 64 random bits.
fn marker(label: &str) -> Vec<u8> {
    format!("{}-{:016x}", unique(label), rand::random::<u64>()).into_bytes()
}

/// The body of `POST /v1/attachments`.
fn new_attachment(conversation_id: &str, mime_type: &str, size: usize) -> Value {
    json!({"conversationId": conversation_id, "mimeType": mime_type, "size": size})
}

/// `POST /v1/attachments` with `body` as `user`.
async fn create(server: &TestServer, user: &str, body: &Value) -> (u16, Value) {
    server.http(user).post("/v1/attachments", body).await
}

/// An attachment just created: its id and its `upload` object.
struct Created {
    id: String,
    upload: Value,
}

/// Whether `id` is the server's attachment id form: `a_` and 32 lowercase hex digits.
fn is_attachment_id(id: &str) -> bool {
    id.strip_prefix("a_").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// `POST /v1/attachments` with `body` as `user`, asserting `201` with an id and an upload.
async fn created(server: &TestServer, user: &str, body: &Value) -> Created {
    let (status, answer) = create(server, user, body).await;
    assert_eq!(status, 201, "POST /v1/attachments {body}: {answer}");
    let id = answer["attachmentId"]
        .as_str()
        .unwrap_or_else(|| panic!("no attachmentId in {answer}"))
        .to_owned();
    assert!(is_attachment_id(&id), "not an a_<32 hex> id: {answer}");
    assert!(answer["upload"].is_object(), "no upload in {answer}");
    Created {
        id,
        upload: answer["upload"].clone(),
    }
}

/// The headers of an `upload` object, as (name, value) pairs.
fn upload_headers(upload: &Value) -> Vec<(String, String)> {
    upload["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("upload.headers is not an object: {upload}"))
        .iter()
        .map(|(k, v)| {
            let value = v
                .as_str()
                .unwrap_or_else(|| panic!("header {k} is not a string: {upload}"));
            (k.clone(), value.to_owned())
        })
        .collect()
}

/// The value of header `name` (any case) among `headers`.
fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `upload.method` to `upload.url` with exactly `upload.headers` and `body`.
async fn put(upload: &Value, body: &[u8]) -> Raw {
    let url = upload["url"]
        .as_str()
        .unwrap_or_else(|| panic!("upload.url is not a string: {upload}"));
    put_to(upload, url, &upload_headers(upload), body).await
}

/// `upload.method` to `url` with `headers` and `body` (for tampered requests).
async fn put_to(upload: &Value, url: &str, headers: &[(String, String)], body: &[u8]) -> Raw {
    let method = upload["method"]
        .as_str()
        .unwrap_or_else(|| panic!("upload.method is not a string: {upload}"));
    http_raw(method, url, headers, body).await
}

/// Asserts an upload was accepted (`200` or `201`).
fn assert_uploaded(raw: &Raw) {
    assert!(
        raw.status == 200 || raw.status == 201,
        "the upload was refused: {raw:?}"
    );
}

/// A new attachment of `user` in `conversation_id` for the PNG, not uploaded yet.
async fn new_png(server: &TestServer, user: &str, conversation_id: &str) -> Created {
    created(
        server,
        user,
        &new_attachment(conversation_id, "image/png", PNG.len()),
    )
    .await
}

/// Creates an attachment of `bytes` as `user` in `conversation_id` and uploads them;
/// answers its id.
async fn uploaded(
    server: &TestServer,
    user: &str,
    conversation_id: &str,
    mime_type: &str,
    bytes: &[u8],
    file_name: Option<&str>,
) -> String {
    let mut body = new_attachment(conversation_id, mime_type, bytes.len());
    if let Some(name) = file_name {
        body["fileName"] = json!(name);
    }
    let a = created(server, user, &body).await;
    assert_uploaded(&put(&a.upload, bytes).await);
    a.id
}

/// `content` of a `send` naming attachment `id` (no caption, no display fields).
fn attachment_content(id: &str) -> Value {
    json!({"type": "attachment", "attachmentId": id})
}

/// `{"action":"send",...}` with `content`.
fn send_content(conversation_id: &str, client_message_id: &str, content: Value) -> Value {
    json!({
        "action": "send",
        "conversationId": conversation_id,
        "clientMessageId": client_message_id,
        "content": content,
    })
}

/// The content the server stores and fans out for an attachment sent with no caption
/// and no display field: `text` "" and every optional field `null`.
fn stored_content(id: &str, mime_type: &str, size: usize, file_name: Option<&str>) -> Value {
    json!({
        "type": "attachment",
        "attachment": {
            "attachmentId": id, "mimeType": mime_type, "size": size, "fileName": file_name,
        },
        "text": "",
        "width": null,
        "height": null,
        "durationMs": null,
        "preview": null,
        "thumbnailId": null,
    })
}

/// `GET /v1/attachments/{id}` as `user`.
async fn download(server: &TestServer, user: &str, id: &str) -> (u16, Value) {
    server
        .http(user)
        .get(&format!("/v1/attachments/{id}"))
        .await
}

/// The download URL of `id` for `user`, asserting `200 {"url","expiresAt"}`.
async fn download_url(server: &TestServer, user: &str, id: &str) -> String {
    let (status, answer) = download(server, user, id).await;
    assert_eq!(status, 200, "GET /v1/attachments/{id} as {user}: {answer}");
    answer["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no url in {answer}"))
        .to_owned()
}

/// `GET url` without credentials, as a browser or an image loader fetches it.
async fn fetch(url: &str) -> Raw {
    http_raw("GET", url, &[], &[]).await
}

/// Asserts `user` may not read attachment `id`: `404 NOT_FOUND`.
async fn assert_no_download(server: &TestServer, user: &str, id: &str) {
    let answer = download(server, user, id).await;
    assert_http_error(&answer, 404, "NOT_FOUND");
}

/// A direct conversation alice-bob, both connected.
struct Pair {
    server: TestServer,
    id: String,
    alice: WsClient,
    bob: WsClient,
}

async fn pair() -> Pair {
    pair_on(server()).await
}

async fn pair_on(builder: TestServerBuilder) -> Pair {
    let server = builder.start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let alice = server.connect("alice").await;
    let bob = server.connect("bob").await;
    Pair {
        server,
        id,
        alice,
        bob,
    }
}

/// `url` with one character of the value of its first query parameter named like one of
/// `names` (any case) changed; fails the test if there is none.
fn tampered(url: &str, names: &[&str]) -> String {
    let (base, query) = url
        .split_once('?')
        .unwrap_or_else(|| panic!("no query string in {url}"));
    let mut done = false;
    let params: Vec<String> = query
        .split('&')
        .map(|param| {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            if done || value.is_empty() || !names.iter().any(|n| n.eq_ignore_ascii_case(key)) {
                return param.to_owned();
            }
            done = true;
            let mut chars: Vec<char> = value.chars().collect();
            // The first character: changing it changes the value whatever its encoding.
            chars[0] = match chars[0] {
                '1' => '2',
                c if c.is_ascii_digit() => '1',
                'a' => 'b',
                _ => 'a',
            };
            format!("{key}={}", chars.into_iter().collect::<String>())
        })
        .collect();
    assert!(done, "no query parameter named one of {names:?} in {url}");
    format!("{base}?{}", params.join("&"))
}

/// The names a URL's signature parameter may have.
const SIGNATURE_PARAMS: &[&str] = &["signature", "sig", "X-Amz-Signature"];
/// The names a URL's expiry parameter may have.
const EXPIRY_PARAMS: &[&str] = &["expires", "exp", "expiresAt", "X-Amz-Expires", "X-Amz-Date"];

/// Every file under `dir` (recursively) whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// The directory of the server's data: the database's.
fn data_dir(server: &TestServer) -> &Path {
    server
        .db_path()
        .parent()
        .expect("the database is in a directory")
}

/// Waits until `check` answers `None` (done), failing with its last answer after
/// `within`. For what the server does after an ack (erasing bytes).
async fn eventually<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let Some(why) = check().await else {
            return;
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "not done within {within:?}: {why}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Percent-decodes `s` (RFC 3986), failing on a malformed escape.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .unwrap_or_else(|| panic!("a truncated escape in {s:?}"));
            out.push(
                u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("a bad escape in {s:?}")),
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client for the upload and download URLs
// ---------------------------------------------------------------------------------------

/// An HTTP answer: status, headers in order, body bytes.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect();
        f.debug_struct("Raw")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &shown)
            .finish()
    }
}

impl Raw {
    /// The value of header `name` (any case).
    fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// Sends `method url` (an `http://` URL) with `headers`, a `Content-Length` and `body`
/// on a fresh connection, and reads the answer (by `Content-Length`, chunks, or to the
/// end of the connection).
async fn http_raw(method: &str, url: &str, headers: &[(String, String)], body: &[u8]) -> Raw {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let target = if target.starts_with('?') {
        format!("/{target}")
    } else {
        target
    };
    let exchange = async {
        let mut stream = TcpStream::connect(authority)
            .await
            .unwrap_or_else(|e| panic!("connect to {authority} for {url}: {e}"));
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if method != "GET" || !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        // The server may answer (and close) before it read the whole body: a refused
        // write is fine, the answer is what counts.
        if stream.write_all(head.as_bytes()).await.is_ok() {
            let _ = stream.write_all(body).await;
        }
        let mut received = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(raw) = parse_answer(&received, method, false) {
                return raw;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
        parse_answer(&received, method, true).unwrap_or_else(|| {
            panic!(
                "no complete HTTP answer to {method} {url}: {:?}",
                String::from_utf8_lossy(&received)
            )
        })
    };
    tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {url} within {IO_TIMEOUT:?}"))
}

/// The answer in `received` once it is complete (`at_end`: the connection is closed, so
/// a body without length ends here).
fn parse_answer(received: &[u8], method: &str, at_end: bool) -> Option<Raw> {
    let end = received.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&received[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &received[end + 4..];
    let no_body =
        method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let chunked = header_in(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if no_body {
        Vec::new()
    } else if chunked {
        match dechunk(rest) {
            Some(body) => body,
            None if at_end => rest.to_vec(),
            None => return None,
        }
    } else if let Some(length) = header_in(&headers, "content-length") {
        let length: usize = length.parse().expect("a numeric Content-Length");
        if rest.len() < length {
            if at_end {
                rest.to_vec()
            } else {
                return None;
            }
        } else {
            rest[..length].to_vec()
        }
    } else if at_end {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Raw {
        status,
        headers,
        body,
    })
}

/// The body of a complete chunked transfer encoding, or `None` while incomplete.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if data.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
