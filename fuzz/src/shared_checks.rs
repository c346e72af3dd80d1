//! Checks of the core crate's decoders: WebSocket frames, HTTP requests, tokens. Uses
//! only `chat_shared`, `http` and `serde_json`, so `shared/tests/fuzz_regressions.rs`
//! can include this file as it is.

use chat_shared::auth::{MAX_TOKEN_BYTES, TokenVerifier, bearer};
use chat_shared::handlers::http::{ApiRequest, decode, path_segments};
use chat_shared::ids::UserId;
use chat_shared::ports::MessageRecord;
use chat_shared::protocol::{
    Action, ClientFrame, Entry, MAX_BODY_BYTES, MAX_FRAME_BYTES, MAX_REQUEST_ID_CHARS,
    MAX_TEXT_CHARS, ServerFrame,
};
use chat_shared::service::message_view;
use http::Method;
use serde_json::Value;

/// The largest `error` frame answering a refused frame: ids are echoed only within the
/// protocol's 64-character limits, and messages never quote more than a short prefix.
pub const MAX_ERROR_FRAME_BYTES: usize = 2048;

fn short_id(id: Option<&str>) -> bool {
    id.is_none_or(|s| s.chars().count() <= MAX_REQUEST_ID_CHARS)
}

/// A text frame through [`ClientFrame::parse`] (and [`ClientFrame::answer_ids`], used for
/// oversized frames). A frame that validates becomes, for a send, a `message.new` that
/// fits in one 32 KiB frame; a refused one gets a small `error` frame.
pub fn ws_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (request_id, client_message_id) = ClientFrame::answer_ids(text);
    assert!(short_id(request_id.as_deref()) && short_id(client_message_id.as_deref()));
    match ClientFrame::parse(text) {
        Ok(frame) => {
            assert_eq!(frame.request_id, request_id, "parse and answer_ids agree");
            if let Action::Append(append) = &frame.action {
                if let Some(content) = append.entry.content() {
                    let n = content.text.chars().count();
                    assert!((1..=MAX_TEXT_CHARS).contains(&n), "text of {n} chars");
                    assert_eq!(content.kind, "text");
                }
                if let Entry::Message { reply_to, .. } = &append.entry {
                    assert_ne!(*reply_to, Some(0));
                }
                // The widest message.new this entry can become: longest ids, largest numbers.
                let widest = MessageRecord {
                    conversation_id: append.conversation_id.clone(),
                    seq: u64::MAX,
                    message_id: format!("m_{}", "f".repeat(32)),
                    sender_id: UserId::parse("u".repeat(128)).expect("a valid user id"),
                    client_message_id: append.client_message_id.as_str().to_owned(),
                    entry: append.entry.clone(),
                    timestamp: i64::MAX,
                    origin_connection: None,
                    state: Default::default(),
                };
                let fanned = ServerFrame::MessageNew(message_view(&widest)).to_json();
                assert!(
                    fanned.len() <= MAX_FRAME_BYTES,
                    "message.new of {} bytes",
                    fanned.len()
                );
            }
        }
        Err(e) => {
            assert!(
                e.error.code().http_status() == 400,
                "a refused frame is the client's fault"
            );
            // The answer carries the frame's ids only where they are valid ones (<= 64).
            assert!(
                short_id(e.request_id.as_deref()),
                "echoed requestId too long"
            );
            assert!(
                short_id(e.client_message_id.as_deref()),
                "echoed clientMessageId too long"
            );
            let answer = ServerFrame::error(e.request_id, e.client_message_id, &e.error).to_json();
            assert!(
                answer.len() <= MAX_ERROR_FRAME_BYTES,
                "error frame of {} bytes: {}",
                answer.len(),
                &answer[..answer.len().min(200)]
            );
        }
    }
}

/// An HTTP request, written as its first line `METHOD /path?query` and then the body
/// (after the first `\n`), through [`path_segments`] and [`decode`], as `handle` does
/// once the caller is authenticated. What decodes is within the route's limits; what
/// does not is a 4xx.
pub fn http_request(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let (method, target) = head.split_once(' ').unwrap_or((head, ""));
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments = path_segments(path);
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    // `handle` answers these before decoding.
    if segs.first() != Some(&"v1") || body.len() > MAX_BODY_BYTES {
        return;
    }
    match decode(&method, &segs[1..], query, body) {
        Ok(request) => check_api_request(&request),
        Err(e) => {
            let status = e.code().http_status();
            assert!((400..500).contains(&status), "decode answered {status}");
        }
    }
}

fn check_api_request(request: &ApiRequest) {
    match request {
        ApiRequest::ListConversations { limit, .. }
        | ApiRequest::ListMembers { limit, .. }
        | ApiRequest::Reactors { limit, .. } => {
            assert!((1..=100).contains(limit));
        }
        ApiRequest::History { query, .. } => assert!((1..=200).contains(&query.limit)),
        ApiRequest::AddMembers { users, .. } => assert!((1..=100).contains(&users.len())),
        ApiRequest::Append(append) => {
            if let Some(content) = append.entry.content() {
                let n = content.text.chars().count();
                // A caption may be empty; a text may not.
                let least = usize::from(!content.is_attachment());
                assert!((least..=MAX_TEXT_CHARS).contains(&n), "text of {n} chars");
            }
            if let Entry::Message { reply_to, .. } = &append.entry {
                assert_ne!(*reply_to, Some(0));
            }
        }
        ApiRequest::Receipts {
            delivered, read, ..
        } => assert!(delivered.is_some() || read.is_some()),
        ApiRequest::Sync { cursors, limit } => {
            assert!(cursors.len() <= 100 && (1..=1000).contains(limit));
        }
        ApiRequest::RegisterDevice { token, .. } => assert!((1..=4096).contains(&token.len())),
        ApiRequest::Presence(users) => assert!(users.len() <= 100),
        ApiRequest::CreateAttachment(new) => {
            assert!(new.mime_type.contains('/') && new.mime_type.len() <= 255);
            if let Some(name) = &new.file_name {
                assert!(!name.contains(['/', '\\']) && name.chars().count() <= 255);
            }
        }
        ApiRequest::DownloadUrls(ids) => assert!(ids.len() <= 100),
        ApiRequest::ReissueUpload(_) | ApiRequest::DownloadUrl(_) => {}
        ApiRequest::CreateConversation(_)
        | ApiRequest::GetConversation(_)
        | ApiRequest::RemoveMember { .. }
        | ApiRequest::SetRole { .. }
        | ApiRequest::UpdateDetails { .. }
        | ApiRequest::SetMuted { .. }
        | ApiRequest::DeleteDevice(_)
        | ApiRequest::RevokeSessions => {}
    }
}

/// The secret, issuer, audience and clock of [`jwt`]'s verifier.
pub const JWT_SECRET: &str = "fuzz-secret";
pub const JWT_ISSUER: &str = "https://issuer.example";
pub const JWT_AUDIENCE: &str = "chat";
pub const JWT_NOW_MS: i64 = 1_763_900_000_000;

/// [`TokenVerifier::verify`] of an HS256-only verifier, which never waits.
fn verify(
    verifier: &TokenVerifier,
    token: &str,
) -> Result<chat_shared::auth::Verified, chat_shared::auth::TokenError> {
    futures_util::FutureExt::now_or_never(verifier.verify(token, JWT_NOW_MS))
        .expect("HS256 verification does not wait")
}

/// A token through [`TokenVerifier::verify`]. Without a `\n`, the input is the token
/// (or an `Authorization` header) as a client sends it. With one, it is a header and
/// claims JSON (split at the first `\n`), signed with the verifier's secret first so the
/// claim checks are reached: a token that verifies has an HS256 header, its `sub` as
/// the user, an unexpired numeric `exp`, and the configured issuer and audience.
pub fn jwt(data: &[u8]) {
    let verifier = TokenVerifier::new(
        JWT_SECRET,
        Some(JWT_ISSUER.to_owned()),
        Some(JWT_AUDIENCE.to_owned()),
    );
    let Some(i) = data.iter().position(|&b| b == b'\n') else {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        for token in [Some(text), bearer(text)].into_iter().flatten() {
            if verify(&verifier, token).is_ok() {
                assert!(token.len() <= MAX_TOKEN_BYTES);
            }
        }
        return;
    };
    let (header, claims) = (&data[..i], &data[i + 1..]);
    let token = verifier.sign(header, claims);
    let Ok(verified) = verify(&verifier, &token) else {
        return;
    };
    let header: Value = serde_json::from_slice(header).expect("a verified header is JSON");
    assert_eq!(header["alg"], "HS256");
    let claims: Value = serde_json::from_slice(claims).expect("verified claims are JSON");
    assert_eq!(claims["sub"].as_str(), Some(verified.user.as_str()));
    let exp = claims["exp"]
        .as_i64()
        .expect("a verified token's exp is a whole number of seconds");
    assert_eq!(
        verified.expires_at,
        exp.saturating_add(30).saturating_mul(1000)
    );
    assert!(
        JWT_NOW_MS / 1000 < exp.saturating_add(30),
        "expired at {exp}"
    );
    assert_eq!(claims["iss"], JWT_ISSUER);
}
