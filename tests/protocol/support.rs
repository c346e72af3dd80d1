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
