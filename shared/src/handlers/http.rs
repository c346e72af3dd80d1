//! The HTTP API (docs/protocol.md §5) over `http::Request<Bytes>`: [`handle`] authenticates a
//! request, [`decode`]s it into an [`ApiRequest`] (pure validation of path, query and
//! body) and executes that on the service. The local server and the HTTP Lambda both
//! call [`handle`].

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::domain::{self, MAX_URL_BATCH};
use crate::error::{ChatError, ChatResult};
use crate::ids::{AttachmentId, ConversationId, DeviceId, Seq, UserId};
use crate::ports::{ConversationKind, Platform, Role};
use crate::protocol::{
    AppendRequest, EntryKind, Fields, MAX_BODY_BYTES, emoji, error_body, parse_append,
};
use crate::service::{Chat, CreateConversation, HistoryQuery, Mute, NewAttachment, SyncCursor};

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

/// The query pairs and body of a request.
struct Req<'a> {
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

/// Splits a request path into its percent-decoded segments (`/v1/sync/` gives
/// `["v1", "sync"]`).
pub fn path_segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(percent_decode)
        .collect()
}

/// Routes and answers one HTTP request.
pub async fn handle(chat: &Chat, req: Request<Bytes>) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if parts.method == Method::GET && path == "/health" {
        return respond(StatusCode::OK, &json!({"status": "ok"}));
    }
    let segments = path_segments(path);
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
    let caller = match chat
        .authenticate(crate::auth::bearer_of(&parts.headers))
        .await
    {
        Ok(verified) => verified.user,
        Err(e) => return error_response(&e),
    };
    let result = match decode(
        &parts.method,
        &segs[1..],
        parts.uri.query().unwrap_or(""),
        &body,
    ) {
        Ok(request) => execute(chat, &caller, request).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

/// A decoded API request: the route and its validated parameters, before any store
/// access. [`decode`] makes it from the raw request, [`handle`] executes it.
#[derive(Debug)]
pub enum ApiRequest {
    /// `POST /v1/conversations`.
    CreateConversation(CreateConversation),
    /// `GET /v1/conversations`.
    ListConversations { limit: u32, cursor: Option<String> },
    /// `GET /v1/conversations/{id}`.
    GetConversation(ConversationId),
    /// `GET /v1/conversations/{id}/members`.
    ListMembers {
        id: ConversationId,
        limit: u32,
        cursor: Option<String>,
    },
    /// `POST /v1/conversations/{id}/members`.
    AddMembers {
        id: ConversationId,
        users: Vec<UserId>,
    },
    /// `DELETE /v1/conversations/{id}/members/{userId}`.
    RemoveMember { id: ConversationId, user: UserId },
    /// `PATCH /v1/conversations/{id}`: a field present is changed (`avatar: null` clears).
    UpdateDetails {
        id: ConversationId,
        name: Option<String>,
        avatar: Option<Option<String>>,
    },
    /// `PUT /v1/conversations/{id}/members/{userId}`.
    SetRole {
        id: ConversationId,
        user: UserId,
        role: Role,
    },
    /// `PUT /v1/conversations/{id}/settings`.
    SetMuted { id: ConversationId, mute: Mute },
    /// `GET /v1/conversations/{id}/messages`.
    History {
        id: ConversationId,
        query: HistoryQuery,
    },
    /// `GET /v1/conversations/{id}/messages/{seq}/reactions?emoji=`: who reacted so.
    Reactors {
        id: ConversationId,
        seq: Seq,
        emoji: String,
        limit: u32,
        cursor: Option<String>,
    },
    /// `POST /v1/conversations/{id}/messages`: a message, an edit, a delete or a reaction.
    Append(AppendRequest),
    /// `POST /v1/conversations/{id}/receipts`: at least one of the two is set.
    Receipts {
        id: ConversationId,
        delivered: Option<Seq>,
        read: Option<Seq>,
    },
    /// `POST /v1/sync`.
    Sync {
        cursors: Vec<SyncCursor>,
        limit: u32,
    },
    /// `POST /v1/devices`.
    RegisterDevice {
        device_id: DeviceId,
        platform: Platform,
        token: String,
    },
    /// `DELETE /v1/devices/{deviceId}`.
    DeleteDevice(DeviceId),
    /// `POST /v1/sessions/revoke`.
    RevokeSessions,
    /// `GET /v1/presence`.
    Presence(Vec<UserId>),
    /// `POST /v1/attachments`.
    CreateAttachment(NewAttachment),
    /// `POST /v1/attachments/{id}/upload`: a new upload URL.
    ReissueUpload(AttachmentId),
    /// `GET /v1/attachments/{id}`: a download URL.
    DownloadUrl(AttachmentId),
    /// `POST /v1/attachments/urls`: download URLs of many.
    DownloadUrls(Vec<AttachmentId>),
}

/// Decodes a request: `segs` are the decoded path segments after `v1` (see
/// [`path_segments`]), `query` the raw query string, `body` the raw body. Pure (no store,
/// no clock), so it is also what the fuzzer and its regression test call.
pub fn decode(method: &Method, segs: &[&str], query: &str, body: &[u8]) -> ChatResult<ApiRequest> {
    let r = Req {
        query: parse_query(query),
        body,
    };
    Ok(match (method, segs) {
        (&Method::POST, ["conversations"]) => ApiRequest::CreateConversation(create_body(&r)?),
        (&Method::GET, ["conversations"]) => ApiRequest::ListConversations {
            limit: r.limit(50, CONVERSATIONS_PAGE_MAX)?,
            cursor: r.param("cursor").map(str::to_owned),
        },
        (&Method::GET, ["conversations", id]) => {
            ApiRequest::GetConversation(path_conversation(id)?)
        }
        (&Method::GET, ["conversations", id, "members"]) => ApiRequest::ListMembers {
            id: path_conversation(id)?,
            limit: r.limit(100, MEMBERS_PAGE_MAX)?,
            cursor: r.param("cursor").map(str::to_owned),
        },
        (&Method::POST, ["conversations", id, "members"]) => {
            let id = path_conversation(id)?;
            let body = r.json()?;
            let users = user_list(body.get("userIds"), "userIds")?;
            if users.is_empty() || users.len() > ADD_MEMBERS_MAX {
                return Err(ChatError::Invalid(format!(
                    "userIds must hold 1-{ADD_MEMBERS_MAX} user ids"
                )));
            }
            ApiRequest::AddMembers { id, users }
        }
        (&Method::DELETE, ["conversations", id, "members", user]) => {
            let user = UserId::parse(*user).map_err(|_| ChatError::NotFound("no such member"))?;
            ApiRequest::RemoveMember {
                id: path_conversation(id)?,
                user,
            }
        }
        (&Method::PATCH, ["conversations", id]) => {
            let body = r.json()?;
            let f = Fields(&body);
            let name = body
                .get("name")
                .filter(|v| !v.is_null())
                .map(|_| f.str("name").map(str::to_owned))
                .transpose()?;
            let avatar = match body.get("avatar") {
                None => None,
                Some(v) if v.is_null() => Some(None),
                Some(_) => Some(Some(f.str("avatar")?.to_owned())),
            };
            if name.is_none() && avatar.is_none() {
                return Err(ChatError::Invalid("name or avatar is required".into()));
            }
            ApiRequest::UpdateDetails {
                id: path_conversation(id)?,
                name,
                avatar,
            }
        }
        (&Method::PUT, ["conversations", id, "members", user]) => {
            let user = UserId::parse(*user).map_err(|_| ChatError::NotFound("no such member"))?;
            let body = r.json()?;
            let role = Role::parse(Fields(&body).str("role")?)
                .ok_or_else(|| ChatError::Invalid("role must be \"admin\" or \"member\"".into()))?;
            ApiRequest::SetRole {
                id: path_conversation(id)?,
                user,
                role,
            }
        }
        (&Method::PUT, ["conversations", id, "settings"]) => {
            let body = r.json()?;
            let f = Fields(&body);
            let mute = match (body.get("muted"), body.get("mutedUntil")) {
                (Some(_), Some(_)) => {
                    return Err(ChatError::Invalid(
                        "give muted or mutedUntil, not both".into(),
                    ));
                }
                (Some(_), None) if f.bool("muted")? => Mute::Forever,
                (Some(_), None) => Mute::Off,
                (None, Some(v)) if v.is_null() => Mute::Off,
                (None, Some(v)) => Mute::Until(v.as_i64().ok_or_else(|| {
                    ChatError::Invalid("mutedUntil must be a time in ms or null".into())
                })?),
                (None, None) => {
                    return Err(ChatError::Invalid("muted or mutedUntil is required".into()));
                }
            };
            ApiRequest::SetMuted {
                id: path_conversation(id)?,
                mute,
            }
        }
        (&Method::GET, ["conversations", id, "messages"]) => ApiRequest::History {
            id: path_conversation(id)?,
            query: HistoryQuery {
                before: r.u64_param("before")?,
                after: r.u64_param("after")?,
                limit: r.limit(50, HISTORY_PAGE_MAX)?,
            },
        },
        (&Method::GET, ["conversations", id, "messages", seq, "reactions"]) => {
            ApiRequest::Reactors {
                id: path_conversation(id)?,
                seq: seq
                    .parse()
                    .map_err(|_| ChatError::Invalid("seq must be an integer >= 0".into()))?,
                emoji: emoji(
                    r.param("emoji")
                        .ok_or_else(|| ChatError::Invalid("emoji is required".into()))?,
                )?,
                limit: r.limit(100, MEMBERS_PAGE_MAX)?,
                cursor: r.param("cursor").map(str::to_owned),
            }
        }
        (&Method::POST, ["conversations", id, "messages"]) => {
            let id = path_conversation(id)?;
            let body = r.json()?;
            let kind = match body.get("kind") {
                Some(v) if !v.is_null() => v
                    .as_str()
                    .and_then(EntryKind::parse)
                    .filter(|k| k.made_by_clients())
                    .ok_or_else(|| {
                        ChatError::Invalid(
                            "kind must be one of \"message\", \"edit\", \"delete\", \"reaction\""
                                .into(),
                        )
                    })?,
                _ => EntryKind::Message,
            };
            ApiRequest::Append(parse_append(&body, id, kind)?)
        }
        (&Method::POST, ["conversations", id, "receipts"]) => {
            let id = path_conversation(id)?;
            let body = r.json()?;
            let f = Fields(&body);
            let delivered = f.opt_seq("deliveredUpTo")?;
            let read = f.opt_seq("readUpTo")?;
            if delivered.is_none() && read.is_none() {
                return Err(ChatError::Invalid(
                    "deliveredUpTo or readUpTo is required".into(),
                ));
            }
            ApiRequest::Receipts {
                id,
                delivered,
                read,
            }
        }
        (&Method::POST, ["sync"]) => sync_body(&r)?,
        (&Method::POST, ["devices"]) => device_body(&r)?,
        (&Method::POST, ["sessions", "revoke"]) => ApiRequest::RevokeSessions,
        (&Method::DELETE, ["devices", device]) => ApiRequest::DeleteDevice(
            DeviceId::parse(*device).map_err(|_| ChatError::NotFound("no such device"))?,
        ),
        (&Method::GET, ["presence"]) => {
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
            ApiRequest::Presence(users)
        }
        (&Method::POST, ["attachments"]) => ApiRequest::CreateAttachment(attachment_body(&r)?),
        (&Method::POST, ["attachments", "urls"]) => {
            let body = r.json()?;
            let ids = body
                .get("attachmentIds")
                .and_then(Value::as_array)
                .ok_or_else(|| ChatError::Invalid("attachmentIds must be an array".into()))?;
            if ids.len() > MAX_URL_BATCH {
                return Err(ChatError::Invalid(format!(
                    "attachmentIds holds at most {MAX_URL_BATCH} ids"
                )));
            }
            // Ids of no attachment are left out, like those the caller may not read.
            let ids = ids
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        ChatError::Invalid("attachmentIds must be an array of strings".into())
                    })
                })
                .collect::<ChatResult<Vec<&str>>>()?;
            ApiRequest::DownloadUrls(
                ids.into_iter()
                    .filter_map(|s| AttachmentId::parse(s).ok())
                    .collect(),
            )
        }
        (&Method::POST, ["attachments", id, "upload"]) => {
            ApiRequest::ReissueUpload(path_attachment(id)?)
        }
        (&Method::GET, ["attachments", id]) => ApiRequest::DownloadUrl(path_attachment(id)?),
        _ => return Err(ChatError::NotFound("no such route")),
    })
}

fn path_attachment(s: &str) -> ChatResult<AttachmentId> {
    AttachmentId::parse(s).map_err(|_| ChatError::NotFound("no such attachment"))
}

fn attachment_body(r: &Req<'_>) -> ChatResult<NewAttachment> {
    let body = r.json()?;
    let f = Fields(&body);
    let size = match body.get("size") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| ChatError::Invalid("size must be an integer >= 1".into()))?,
        None => return Err(ChatError::Invalid("size is required".into())),
    };
    let file_name = match body.get("fileName") {
        None | Some(Value::Null) => None,
        Some(_) => Some(domain::file_name(f.str("fileName")?)?),
    };
    Ok(NewAttachment {
        conversation_id: f.conversation_id()?,
        mime_type: domain::mime_type(f.str("mimeType")?)?,
        size,
        file_name,
    })
}

fn path_conversation(s: &str) -> ChatResult<ConversationId> {
    ConversationId::parse(s).map_err(|_| ChatError::no_conversation())
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

fn create_body(r: &Req<'_>) -> ChatResult<CreateConversation> {
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
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ChatError::Invalid("name must be a string".into())),
    };
    Ok(CreateConversation {
        kind,
        name,
        members,
    })
}

fn sync_body(r: &Req<'_>) -> ChatResult<ApiRequest> {
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
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(list)) => list.as_slice(),
        Some(_) => return Err(ChatError::Invalid("conversations must be an array".into())),
    };
    if list.len() > SYNC_CONVERSATIONS_MAX {
        return Err(ChatError::Invalid(format!(
            "at most {SYNC_CONVERSATIONS_MAX} conversations per sync"
        )));
    }
    let mut cursors = Vec::with_capacity(list.len());
    for item in list {
        let obj = item
            .as_object()
            .ok_or_else(|| ChatError::Invalid("conversations entries must be objects".into()))?;
        let f = Fields(obj);
        cursors.push(SyncCursor {
            conversation_id: f.conversation_id()?,
            after_seq: f.opt_seq("afterSeq")?.unwrap_or(0),
        });
    }
    Ok(ApiRequest::Sync { cursors, limit })
}

fn device_body(r: &Req<'_>) -> ChatResult<ApiRequest> {
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
    Ok(ApiRequest::RegisterDevice {
        device_id,
        platform,
        token: token.to_owned(),
    })
}

/// Runs a decoded request against the service and encodes its answer.
async fn execute(chat: &Chat, caller: &UserId, request: ApiRequest) -> ChatResult<HttpResponse> {
    Ok(match request {
        ApiRequest::CreateConversation(create) => {
            if create.members.len() > 1000 + chat.limits().max_group_members as usize {
                return Err(ChatError::Invalid("too many members".into()));
            }
            let (view, created) = chat.create_conversation(caller, create).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            respond(status, &view)
        }
        ApiRequest::ListConversations { limit, cursor } => {
            let page = chat
                .list_conversations(caller, limit, cursor.as_deref())
                .await?;
            respond(
                StatusCode::OK,
                &json!({"conversations": page.conversations, "nextCursor": page.next_cursor}),
            )
        }
        ApiRequest::GetConversation(id) => {
            respond(StatusCode::OK, &chat.get_conversation(caller, &id).await?)
        }
        ApiRequest::ListMembers { id, limit, cursor } => {
            let page = chat
                .list_members(caller, &id, limit, cursor.as_deref())
                .await?;
            respond(
                StatusCode::OK,
                &json!({"members": page.members, "nextCursor": page.next_cursor}),
            )
        }
        ApiRequest::AddMembers { id, users } => respond(
            StatusCode::OK,
            &chat.add_members(caller, &id, &users).await?,
        ),
        ApiRequest::RemoveMember { id, user } => {
            chat.remove_member(caller, &id, &user).await?;
            no_content()
        }
        ApiRequest::UpdateDetails { id, name, avatar } => respond(
            StatusCode::OK,
            &chat.update_details(caller, &id, name, avatar).await?,
        ),
        ApiRequest::SetRole { id, user, role } => respond(
            StatusCode::OK,
            &chat.set_role(caller, &id, &user, role).await?,
        ),
        ApiRequest::SetMuted { id, mute } => {
            respond(StatusCode::OK, &chat.set_muted(caller, &id, mute).await?)
        }
        ApiRequest::History { id, query } => {
            let (messages, has_more) = chat.history(caller, &id, query).await?;
            respond(
                StatusCode::OK,
                &json!({"messages": messages, "hasMore": has_more}),
            )
        }
        ApiRequest::Reactors {
            id,
            seq,
            emoji,
            limit,
            cursor,
        } => {
            let page = chat
                .reactors(caller, &id, seq, &emoji, limit, cursor.as_deref())
                .await?;
            respond(
                StatusCode::OK,
                &json!({"userIds": page.user_ids, "nextCursor": page.next_cursor}),
            )
        }
        ApiRequest::Append(req) => {
            let ack = chat.append(caller, None, req).await?;
            let status = if ack.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            respond(status, &ack)
        }
        ApiRequest::Receipts {
            id,
            delivered,
            read,
        } => {
            let positions = chat.receipts(caller, None, &id, delivered, read).await?;
            respond(
                StatusCode::OK,
                &json!({
                    "conversationId": id,
                    "deliveredUpTo": positions.delivered_up_to,
                    "readUpTo": positions.read_up_to,
                }),
            )
        }
        ApiRequest::Sync { cursors, limit } => {
            respond(StatusCode::OK, &chat.sync(caller, &cursors, limit).await?)
        }
        ApiRequest::RegisterDevice {
            device_id,
            platform,
            token,
        } => {
            let device = chat
                .register_device(caller, device_id, platform, token)
                .await?;
            respond(
                StatusCode::CREATED,
                &json!({"deviceId": device.device_id, "platform": device.platform.as_str()}),
            )
        }
        ApiRequest::DeleteDevice(device) => {
            chat.delete_device(caller, &device).await?;
            no_content()
        }
        ApiRequest::RevokeSessions => {
            chat.revoke_sessions(caller).await?;
            no_content()
        }
        ApiRequest::Presence(users) => respond(
            StatusCode::OK,
            &json!({"presence": chat.presence(caller, &users).await?}),
        ),
        ApiRequest::CreateAttachment(new) => respond(
            StatusCode::CREATED,
            &chat.create_attachment(caller, new).await?,
        ),
        ApiRequest::ReissueUpload(id) => {
            respond(StatusCode::OK, &chat.reissue_upload(caller, &id).await?)
        }
        ApiRequest::DownloadUrl(id) => {
            let url = chat.download_url(caller, &id).await?;
            respond(
                StatusCode::OK,
                &json!({"url": url.url, "expiresAt": url.expires_at}),
            )
        }
        ApiRequest::DownloadUrls(ids) => respond(
            StatusCode::OK,
            &json!({"urls": chat.download_urls(caller, &ids).await?}),
        ),
    })
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
