//! What every test module uses: the server builder for this test binary, re-exports of
//! the harness, and assertions on protocol objects.

pub use std::time::Duration;

pub use chat_tests::*;
pub use serde_json::{Value, json};

/// How long a test waits to be confident something did *not* arrive.
pub const SHORT: Duration = Duration::from_millis(300);

/// A builder for the `chat-local` binary built with this test.
pub fn server() -> TestServerBuilder {
    TestServer::builder(env!("CARGO_BIN_EXE_chat-local"))
}

/// A `chat-local` server with the default test configuration.
pub async fn start() -> TestServer {
    server().start().await
}

/// A server plus a direct conversation between `alice` and `bob`.
pub async fn direct_pair() -> (TestServer, String) {
    let server = start().await;
    let conversation = server.http("alice").create_direct("bob").await;
    (server, conv_id(&conversation))
}

/// A server plus a group "Team" that `alice` made with `bob` and `carol`.
pub async fn team() -> (TestServer, String) {
    let server = start().await;
    let group = server
        .http("alice")
        .create_group("Team", &["bob", "carol"])
        .await;
    (server, conv_id(&group))
}

/// Asserts the shape of a conversation object (docs/protocol.md section 5).
pub fn assert_conversation(conversation: &Value) {
    assert_keys(
        conversation,
        &[
            "conversationId",
            "type",
            "createdAt",
            "firstSeq",
            "lastSeq",
            "lastMessageAt",
            "memberCount",
            "muted",
            "unreadCount",
        ],
    );
    if conversation["type"] == "group" {
        assert_keys(conversation, &["name"]);
    }
    let count = conversation["memberCount"]
        .as_u64()
        .unwrap_or_else(|| panic!("memberCount is not an integer: {conversation}"));
    if count <= 100 {
        let members = conversation["members"]
            .as_array()
            .unwrap_or_else(|| panic!("members missing with memberCount {count}: {conversation}"));
        assert_eq!(
            members.len() as u64,
            count,
            "members vs memberCount: {conversation}"
        );
        for member in members {
            assert_keys(member, &["userId", "role", "deliveredUpTo", "readUpTo"]);
        }
    } else {
        assert!(
            conversation.get("members").is_none(),
            "members present with memberCount {count} > 100"
        );
    }
}

/// The member entry of `user` in a conversation object.
pub fn member<'a>(conversation: &'a Value, user: &str) -> &'a Value {
    conversation["members"]
        .as_array()
        .and_then(|members| members.iter().find(|m| m["userId"] == user))
        .unwrap_or_else(|| panic!("{user} is not in the members of {conversation}"))
}

/// The user ids of a conversation's `members`, in the order listed.
pub fn member_ids(conversation: &Value) -> Vec<String> {
    conversation["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {conversation}"))
        .iter()
        .map(|m| m["userId"].as_str().expect("userId is a string").to_owned())
        .collect()
}

/// Every message of a conversation, paging `GET .../messages?after=` forwards.
pub async fn all_messages(http: &Http, conversation_id: &str) -> Vec<Value> {
    let mut messages: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let page = http
            .messages(conversation_id, &format!("after={after}&limit=200"))
            .await;
        let batch = page["messages"].as_array().expect("messages array").clone();
        if let Some(last) = batch.last() {
            after = last["seq"].as_i64().expect("integer seq");
        }
        messages.extend(batch);
        if page["hasMore"] != true {
            return messages;
        }
    }
}

/// The members of a conversation via `GET .../members`, following every cursor.
pub async fn all_members(http: &Http, conversation_id: &str, limit: usize) -> Vec<Value> {
    let mut members = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let path = match &cursor {
            None => format!("/v1/conversations/{conversation_id}/members?limit={limit}"),
            Some(c) => format!(
                "/v1/conversations/{conversation_id}/members?limit={limit}&cursor={}",
                encode_query(c)
            ),
        };
        let (status, page) = http.get(&path).await;
        assert_eq!(status, 200, "GET {path}: {page}");
        let batch = page["members"].as_array().expect("members array");
        assert!(
            batch.len() <= limit,
            "page larger than limit {limit}: {page}"
        );
        members.extend(batch.iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(
                    page["nextCursor"].is_null(),
                    "nextCursor not a string or null: {page}"
                );
                return members;
            }
        }
    }
    panic!("member paging never ended")
}

/// `{"action":"edit",...}` replacing the text of the message at `target_seq`.
pub fn edit_action(
    conversation_id: &str,
    client_message_id: &str,
    target_seq: i64,
    text: &str,
) -> Value {
    json!({
        "action": "edit",
        "conversationId": conversation_id,
        "clientMessageId": client_message_id,
        "targetSeq": target_seq,
        "content": {"type": "text", "text": text},
    })
}

/// `{"action":"delete",...}` of the message at `target_seq`.
pub fn delete_action(conversation_id: &str, client_message_id: &str, target_seq: i64) -> Value {
    json!({
        "action": "delete",
        "conversationId": conversation_id,
        "clientMessageId": client_message_id,
        "targetSeq": target_seq,
    })
}

/// `{"action":"react",...}` adding `emoji` to the message at `target_seq` (no `removed`).
pub fn react_action(
    conversation_id: &str,
    client_message_id: &str,
    target_seq: i64,
    emoji: &str,
) -> Value {
    json!({
        "action": "react",
        "conversationId": conversation_id,
        "clientMessageId": client_message_id,
        "targetSeq": target_seq,
        "emoji": emoji,
    })
}

/// `{"action":"react",...,"removed":true}` taking `emoji` off the message at `target_seq`.
pub fn unreact_action(
    conversation_id: &str,
    client_message_id: &str,
    target_seq: i64,
    emoji: &str,
) -> Value {
    let mut action = react_action(conversation_id, client_message_id, target_seq, emoji);
    action["removed"] = json!(true);
    action
}

/// Sends `action` with a `requestId` and returns its `message.ack` (failing on any
/// other answer).
pub async fn expect_ack(ws: &mut WsClient, action: Value) -> Value {
    let shown = action.to_string();
    let ack = ws.request(action).await;
    assert_eq!(
        ack["type"],
        "message.ack",
        "[{}] {shown} answered {ack}",
        ws.label()
    );
    ack
}

/// Sends `action` with a `requestId`, asserts it is answered by an `error` with `code`,
/// and that the connection still answers a heartbeat; returns the error.
pub async fn expect_refused(ws: &mut WsClient, action: Value, code: &str) -> Value {
    let shown = action.to_string();
    let error = ws.request(action).await;
    assert_eq!(
        error["code"],
        code,
        "[{}] {shown} answered {error}",
        ws.label()
    );
    assert_ws_error(&error, code, error["requestId"].as_str());
    ws.heartbeat().await;
    error
}

/// The entry with `seq` among message objects (history or sync), failing if absent.
pub fn entry_at(entries: &[Value], seq: i64) -> &Value {
    entries
        .iter()
        .find(|e| e["seq"] == seq)
        .unwrap_or_else(|| panic!("no entry with seq {seq} in {entries:#?}"))
}

/// The `lastSeq` of a conversation as `user` sees it.
pub async fn last_seq(server: &TestServer, user: &str, conversation_id: &str) -> i64 {
    let conversation = server.http(user).conversation(conversation_id).await;
    conversation["lastSeq"]
        .as_i64()
        .unwrap_or_else(|| panic!("lastSeq is not an integer: {conversation}"))
}

/// The first `message.new` of `conversation_id` with `seq` a connection receives.
pub async fn recv_entry(ws: &mut WsClient, conversation_id: &str, seq: i64) -> Value {
    let what = format!("message.new seq {seq}");
    ws.recv_where(&what, |f| {
        f["type"] == "message.new" && f["conversationId"] == conversation_id && f["seq"] == seq
    })
    .await
}

/// `POST /v1/sync` for one conversation from `after_seq`; answers its entry of
/// `conversations` (asserting 200 and that it is there).
pub async fn sync_one(
    server: &TestServer,
    user: &str,
    conversation_id: &str,
    after_seq: i64,
) -> Value {
    let body =
        json!({"conversations": [{"conversationId": conversation_id, "afterSeq": after_seq}]});
    let (status, result) = server.http(user).post("/v1/sync", &body).await;
    assert_eq!(status, 200, "sync {body}: {result}");
    result["conversations"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["conversationId"] == conversation_id))
        .unwrap_or_else(|| panic!("{conversation_id} not in the sync result {result}"))
        .clone()
}

/// The conversation `conversation_id` in `user`'s first page of `GET /v1/conversations`.
pub async fn listed(server: &TestServer, user: &str, conversation_id: &str) -> Value {
    let (status, list) = server.http(user).get("/v1/conversations?limit=100").await;
    assert_eq!(status, 200, "{list}");
    list["conversations"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["conversationId"] == conversation_id))
        .unwrap_or_else(|| panic!("{conversation_id} not listed for {user}: {list}"))
        .clone()
}
