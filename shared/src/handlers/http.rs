//! The HTTP API (PROTOCOL.md §4): one function per route over `http::Request<Bytes>`, and
//! [`handle`], which routes a request to them. The local server and the HTTP Lambda both
//! call [`handle`].

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{ChatError, ChatResult};
use crate::ids::{ConversationId, DeviceId, UserId};
use crate::ports::{ConversationKind, Platform};
use crate::protocol::{Fields, MAX_BODY_BYTES, error_body, parse_send};
use crate::service::{Chat, CreateConversation, HistoryQuery, SyncCursor};

/// Most conversations per page of `GET /v1/conversations`.
const CONVERSATIONS_PAGE_MAX: u32 = 100;
/// Most members per page of `GET .../members`.
const MEMBERS_PAGE_MAX: u32 = 100;
/// Most messages per page of history.
const HISTORY_PAGE_MAX: u32 = 200;
/// Most users added per call.
const ADD_MEMBERS_MAX: usize = 100;
/// Most conversations named in one sync.
const SYNC_CONVERSATIONS_MAX: usize = 100;
/// Most messages per conversation in one sync.
const SYNC_LIMIT_MAX: u32 = 1000;
/// Most users per presence query.
const PRESENCE_USERS_MAX: usize = 100;
/// Longest push token accepted.
const PUSH_TOKEN_MAX_BYTES: usize = 4096;

type HttpResponse = Response<Bytes>;

/// A decoded request: its query pairs and body.
pub struct Req<'a> {
    query: Vec<(String, String)>,
    body: &'a [u8],
}

impl Req<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn u64_param(&self, name: &str) -> ChatResult<Option<u64>> {
        self.param(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ChatError::Invalid(format!("{name} must be an integer >= 0")))
            })
            .transpose()
    }

    fn limit(&self, default: u32, max: u32) -> ChatResult<u32> {
        match self.u64_param("limit")? {
            None => Ok(default),
            Some(n) if n >= 1 && n <= u64::from(max) => Ok(n as u32),
            Some(_) => Err(ChatError::Invalid(format!("limit must be 1-{max}"))),
        }
    }

    fn json(&self) -> ChatResult<Map<String, Value>> {
        match serde_json::from_slice(self.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ChatError::Invalid("body must be a JSON object".into())),
            Err(_) => Err(ChatError::Invalid("body is not valid JSON".into())),
        }
    }
}

fn respond(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(
            serde_json::to_vec(body).expect("responses always serialize"),
        ))
        .expect("valid response")
}

fn no_content() -> HttpResponse {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Bytes::new())
        .expect("valid response")
}

/// The error response for `e`.
pub fn error_response(e: &ChatError) -> HttpResponse {
    if let ChatError::Store(inner) = e {
        tracing::error!(error = %inner, source = ?std::error::Error::source(inner), "request failed");
    }
    let status = StatusCode::from_u16(e.code().http_status()).expect("valid status");
    let mut resp = respond(status, &error_body(e));
    if let Some(ms) = e.retry_after_ms() {
        let secs = (ms + 999) / 1000;
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            secs.to_string().parse().expect("digits"),
        );
    }
    resp
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1])
                .zip(hex(bytes[i + 2]))
                .map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string into decoded pairs.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Routes and answers one HTTP request.
pub async fn handle(chat: &Chat, req: Request<Bytes>) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if parts.method == Method::GET && path == "/health" {
        return respond(StatusCode::OK, &json!({"status": "ok"}));
    }
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    if segs.first() != Some(&"v1") {
        return error_response(&ChatError::NotFound("no such route"));
    }
    // Before authentication, as the local server and API Gateway refuse big bodies unread.
    if body.len() > MAX_BODY_BYTES {
        return error_response(&ChatError::PayloadTooLarge(
            "request bodies are limited to 256 KiB",
        ));
    }
    let caller = match chat.authenticate(
        parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer),
    ) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    let r = Req {
        query: parse_query(parts.uri.query().unwrap_or("")),
        body: &body,
    };
    let result = route(chat, &caller, &parts.method, &segs[1..], &r).await;
    result.unwrap_or_else(|e| error_response(&e))
}

fn path_conversation(s: &str) -> ChatResult<ConversationId> {
    ConversationId::parse(s).map_err(|_| ChatError::no_conversation())
}

async fn route(
    chat: &Chat,
    caller: &UserId,
    method: &Method,
    segs: &[&str],
    r: &Req<'_>,
) -> ChatResult<HttpResponse> {
    match (method, segs) {
        (&Method::POST, ["conversations"]) => create_conversation(chat, caller, r).await,
        (&Method::GET, ["conversations"]) => list_conversations(chat, caller, r).await,
        (&Method::GET, ["conversations", id]) => {
            let view = chat
                .get_conversation(caller, &path_conversation(id)?)
                .await?;
            Ok(respond(StatusCode::OK, &view))
        }
        (&Method::GET, ["conversations", id, "members"]) => {
            list_members(chat, caller, &path_conversation(id)?, r).await
        }
        (&Method::POST, ["conversations", id, "members"]) => {
            add_members(chat, caller, &path_conversation(id)?, r).await
        }
        (&Method::DELETE, ["conversations", id, "members", user]) => {
            let user = UserId::parse(*user).map_err(|_| ChatError::NotFound("no such member"))?;
            chat.remove_member(caller, &path_conversation(id)?, &user)
                .await?;
            Ok(no_content())
        }
        (&Method::PUT, ["conversations", id, "settings"]) => {
            let body = r.json()?;
            let muted = Fields(&body).bool("muted")?;
            let view = chat
                .set_muted(caller, &path_conversation(id)?, muted)
                .await?;
            Ok(respond(StatusCode::OK, &view))
        }
        (&Method::GET, ["conversations", id, "messages"]) => {
            history(chat, caller, &path_conversation(id)?, r).await
        }
        (&Method::POST, ["conversations", id, "messages"]) => {
            send_message(chat, caller, &path_conversation(id)?, r).await
        }
        (&Method::POST, ["conversations", id, "receipts"]) => {
            receipts(chat, caller, &path_conversation(id)?, r).await
        }
        (&Method::POST, ["sync"]) => sync(chat, caller, r).await,
        (&Method::POST, ["devices"]) => register_device(chat, caller, r).await,
        (&Method::DELETE, ["devices", device]) => {
            let device =
                DeviceId::parse(*device).map_err(|_| ChatError::NotFound("no such device"))?;
            chat.delete_device(caller, &device).await?;
            Ok(no_content())
        }
        (&Method::GET, ["presence"]) => presence(chat, caller, r).await,
        _ => Err(ChatError::NotFound("no such route")),
    }
}

fn user_list(value: Option<&Value>, name: &str) -> ChatResult<Vec<UserId>> {
    let list = value
        .and_then(Value::as_array)
        .ok_or_else(|| ChatError::Invalid(format!("{name} must be an array of user ids")))?;
    list.iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| ChatError::Invalid(format!("{name} must be an array of user ids")))
                .and_then(|s| Ok(UserId::parse(s)?))
        })
        .collect()
}

/// `POST /v1/conversations`.
pub async fn create_conversation(
    chat: &Chat,
    caller: &UserId,
    r: &Req<'_>,
) -> ChatResult<HttpResponse> {
    let body = r.json()?;
    let f = Fields(&body);
    let kind = match f.str("type")? {
        "direct" => ConversationKind::Direct,
        "group" => ConversationKind::Group,
        _ => {
            return Err(ChatError::Invalid(
                "type must be \"direct\" or \"group\"".into(),
            ));
        }
    };
    let members = user_list(body.get("members"), "members")?;
    if members.len() > 1000 + chat.limits.max_group_members as usize {
        return Err(ChatError::Invalid("too many members".into()));
    }
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ChatError::Invalid("name must be a string".into())),
    };
    let (view, created) = chat
        .create_conversation(
            caller,
            CreateConversation {
                kind,
                name,
                members,
            },
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(respond(status, &view))
}

/// `GET /v1/conversations`.
pub async fn list_conversations(
    chat: &Chat,
    caller: &UserId,
    r: &Req<'_>,
) -> ChatResult<HttpResponse> {
    let limit = r.limit(50, CONVERSATIONS_PAGE_MAX)?;
    let page = chat
        .list_conversations(caller, limit, r.param("cursor"))
        .await?;
    Ok(respond(
        StatusCode::OK,
        &json!({"conversations": page.conversations, "nextCursor": page.next_cursor}),
    ))
}

/// `GET /v1/conversations/{id}/members`.
pub async fn list_members(
    chat: &Chat,
    caller: &UserId,
    id: &ConversationId,
    r: &Req<'_>,
) -> ChatResult<HttpResponse> {
    let limit = r.limit(100, MEMBERS_PAGE_MAX)?;
    let page = chat
        .list_members(caller, id, limit, r.param("cursor"))
        .await?;
    Ok(respond(
        StatusCode::OK,
        &json!({"members": page.members, "nextCursor": page.next_cursor}),
    ))
}

/// `POST /v1/conversations/{id}/members`.
pub async fn add_members(
    chat: &Chat,
    caller: &UserId,
    id: &ConversationId,
    r: &Req<'_>,
) -> ChatResult<HttpResponse> {
    let body = r.json()?;
    let users = user_list(body.get("userIds"), "userIds")?;
    if users.is_empty() || users.len() > ADD_MEMBERS_MAX {
        return Err(ChatError::Invalid(format!(
            "userIds must hold 1-{ADD_MEMBERS_MAX} user ids"
        )));
    }
    let view = chat.add_members(caller, id, &users).await?;
    Ok(respond(StatusCode::OK, &view))
}

/// `GET /v1/conversations/{id}/messages`.
pub async fn history(
    chat: &Chat,
    caller: &UserId,
    id: &ConversationId,
    r: &Req<'_>,
) -> ChatResult<HttpResponse> {
    let q = HistoryQuery {
        before: r.u64_param("before")?,
        after: r.u64_param("after")?,
        limit: r.limit(50, HISTORY_PAGE_MAX)?,
    };
    let (messages, has_more) = chat.history(caller, id, q).await?;
    Ok(respond(
        StatusCode::OK,
        &json!({"messages": messages, "hasMore": has_more}),
    ))
}

/// `POST /v1/conversations/{id}/messages`.
pub async fn send_message(
    chat: &Chat,
    caller: &UserId,
    id: &ConversationId,
    r: &Req<'_>,
) -> ChatResult<HttpResponse> {
    let body = r.json()?;
    let req = parse_send(&body, id.clone())?;
    let ack = chat.send(caller, None, req).await?;
    let status = if ack.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(respond(status, &ack))
}

/// `POST /v1/conversations/{id}/receipts`.
pub async fn receipts(
    chat: &Chat,
    caller: &UserId,
    id: &ConversationId,
    r: &Req<'_>,
) -> ChatResult<HttpResponse> {
    let body = r.json()?;
    let f = Fields(&body);
    let delivered = f.opt_seq("deliveredUpTo")?;
    let read = f.opt_seq("readUpTo")?;
    if delivered.is_none() && read.is_none() {
        return Err(ChatError::Invalid(
            "deliveredUpTo or readUpTo is required".into(),
        ));
    }
    let positions = chat.receipts(caller, None, id, delivered, read).await?;
    Ok(respond(
        StatusCode::OK,
        &json!({
            "conversationId": id,
            "deliveredUpTo": positions.delivered_up_to,
            "readUpTo": positions.read_up_to,
        }),
    ))
}

/// `POST /v1/sync`.
pub async fn sync(chat: &Chat, caller: &UserId, r: &Req<'_>) -> ChatResult<HttpResponse> {
    let body = r.json()?;
    let limit = match Fields(&body).opt_seq("limit")? {
        None => 100,
        Some(n) if n >= 1 && n <= u64::from(SYNC_LIMIT_MAX) => n as u32,
        Some(_) => {
            return Err(ChatError::Invalid(format!(
                "limit must be 1-{SYNC_LIMIT_MAX}"
            )));
        }
    };
    let list = match body.get("conversations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err(ChatError::Invalid("conversations must be an array".into())),
    };
    if list.len() > SYNC_CONVERSATIONS_MAX {
        return Err(ChatError::Invalid(format!(
            "at most {SYNC_CONVERSATIONS_MAX} conversations per sync"
        )));
    }
    let mut cursors = Vec::with_capacity(list.len());
    for item in &list {
        let obj = item
            .as_object()
            .ok_or_else(|| ChatError::Invalid("conversations entries must be objects".into()))?;
        let f = Fields(obj);
        cursors.push(SyncCursor {
            conversation_id: f.conversation_id()?,
            after_seq: f.opt_seq("afterSeq")?.unwrap_or(0),
        });
    }
    let result = chat.sync(caller, &cursors, limit).await?;
    Ok(respond(StatusCode::OK, &result))
}

/// `POST /v1/devices`.
pub async fn register_device(
    chat: &Chat,
    caller: &UserId,
    r: &Req<'_>,
) -> ChatResult<HttpResponse> {
    let body = r.json()?;
    let f = Fields(&body);
    let device_id = DeviceId::parse(f.str("deviceId")?)?;
    let platform = Platform::parse(f.str("platform")?).ok_or_else(|| {
        ChatError::Invalid("platform must be \"apns\", \"apns_sandbox\" or \"fcm\"".into())
    })?;
    let token = f.str("token")?;
    if token.is_empty() || token.len() > PUSH_TOKEN_MAX_BYTES {
        return Err(ChatError::Invalid("token must be 1-4096 bytes".into()));
    }
    let device = chat
        .register_device(caller, device_id, platform, token.to_owned())
        .await?;
    Ok(respond(
        StatusCode::CREATED,
        &json!({"deviceId": device.device_id, "platform": device.platform.as_str()}),
    ))
}

/// `GET /v1/presence`.
pub async fn presence(chat: &Chat, caller: &UserId, r: &Req<'_>) -> ChatResult<HttpResponse> {
    let users = r
        .param("userIds")
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(UserId::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if users.len() > PRESENCE_USERS_MAX {
        return Err(ChatError::Invalid(format!(
            "at most {PRESENCE_USERS_MAX} userIds"
        )));
    }
    let presence = chat.presence(caller, &users).await?;
    Ok(respond(StatusCode::OK, &json!({"presence": presence})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_decoded() {
        let q = parse_query("userIds=bob%40x.io,carol&limit=5&empty=&bad=%zz");
        assert_eq!(q[0], ("userIds".into(), "bob@x.io,carol".into()));
        assert_eq!(q[1], ("limit".into(), "5".into()));
        assert_eq!(q[2], ("empty".into(), "".into()));
        assert_eq!(q[3], ("bad".into(), "%zz".into()));
        assert_eq!(percent_decode("%4"), "%4");
    }
}
