//! `POST /v1/sync`: catching up after a reconnect.

use crate::support::*;

async fn sync(server: &TestServer, user: &str, body: Value) -> Value {
    let (status, result) = server.http(user).post("/v1/sync", &body).await;
    assert_eq!(status, 200, "sync {body}: {result}");
    assert_keys(
        &result,
        &[
            "conversations",
            "newConversations",
            "removedConversationIds",
            "serverTime",
        ],
    );
    result
}

/// A direct conversation alice-bob with `count` messages from alice.
async fn with_messages(count: usize) -> (TestServer, String) {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    for n in 1..=count {
        alice
            .send_message(&id, &format!("cm-{n}"), &format!("m{n}"))
            .await;
    }
    (server, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_returns_messages_after_the_given_seq_with_positions() {
    let (server, id) = with_messages(5).await;
    let t0 = now_ms();

    let result = sync(
        &server,
        "bob",
        json!({"conversations": [{"conversationId": id, "afterSeq": 2}], "limit": 100}),
    )
    .await;

    let entries = result["conversations"].as_array().expect("conversations");
    assert_eq!(entries.len(), 1, "{result}");
    let entry = &entries[0];
    assert_keys(
        entry,
        &[
            "conversationId",
            "messages",
            "hasMore",
            "firstSeq",
            "lastSeq",
            "deliveredUpTo",
            "readUpTo",
            "unreadCount",
        ],
    );
    assert_subset(
        entry,
        &json!({"conversationId": id, "hasMore": false, "firstSeq": 1, "lastSeq": 5, "deliveredUpTo": 0, "readUpTo": 0, "unreadCount": 5}),
    );
    let messages = entry["messages"].as_array().expect("messages");
    assert_eq!(seqs(messages), [3, 4, 5]);
    assert_subset(
        &messages[0],
        &json!({"senderId": "alice", "clientMessageId": "cm-3", "content": {"type": "text", "text": "m3"}}),
    );
    assert_eq!(result["newConversations"], json!([]));
    assert_eq!(result["removedConversationIds"], json!([]));
    assert_recent_ms(&result["serverTime"], t0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pages_with_limit_and_has_more() {
    let (server, id) = with_messages(5).await;

    let first = sync(
        &server,
        "bob",
        json!({"conversations": [{"conversationId": id, "afterSeq": 0}], "limit": 2}),
    )
    .await;
    let rest = sync(
        &server,
        "bob",
        json!({"conversations": [{"conversationId": id, "afterSeq": 2}], "limit": 10}),
    )
    .await;

    let first = &first["conversations"][0];
    assert_eq!(
        seqs(first["messages"].as_array().expect("messages")),
        [1, 2]
    );
    assert_eq!(first["hasMore"], true);
    let rest = &rest["conversations"][0];
    assert_eq!(
        seqs(rest["messages"].as_array().expect("messages")),
        [3, 4, 5]
    );
    assert_eq!(rest["hasMore"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reflects_the_callers_read_position() {
    let (server, id) = with_messages(4).await;
    let mut bob = server.connect("bob").await;
    bob.receipt("read", &id, 3).await;

    let result = sync(
        &server,
        "bob",
        json!({"conversations": [{"conversationId": id, "afterSeq": 4}]}),
    )
    .await;

    let entry = &result["conversations"][0];
    assert_subset(
        entry,
        &json!({"messages": [], "hasMore": false, "lastSeq": 4, "deliveredUpTo": 3, "readUpTo": 3, "unreadCount": 1}),
    );
}

fn created_at(conversation: &Value) -> i64 {
    conversation["createdAt"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer createdAt in {conversation}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_lists_unnamed_conversations_as_new_most_recent_first() {
    let server = start().await;
    let alice = server.http("alice");
    let known = conv_id(&alice.create_direct("bob").await);
    let quiet = alice.create_direct("carol").await;
    server.wait_for_clock_past(created_at(&quiet)).await;
    let quiet = conv_id(&quiet);
    let busy = server.http("dave").create_group("Dave's", &["alice"]).await;
    server.wait_for_clock_past(created_at(&busy)).await;
    let busy = conv_id(&busy);
    server
        .http("dave")
        .send_message(&busy, "cm-1", "hi alice")
        .await;

    let result = sync(
        &server,
        "alice",
        json!({"conversations": [{"conversationId": known, "afterSeq": 0}]}),
    )
    .await;

    let new: Vec<String> = result["newConversations"]
        .as_array()
        .expect("newConversations")
        .iter()
        .map(|c| {
            assert_conversation(c);
            conv_id(c)
        })
        .collect();
    assert_eq!(new, [busy.clone(), quiet.clone()]);
    assert_eq!(result["conversations"].as_array().map(Vec::len), Some(1));

    let fresh = sync(&server, "alice", json!({"conversations": []})).await;
    assert_eq!(fresh["newConversations"].as_array().map(Vec::len), Some(3));
    assert_eq!(fresh["conversations"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reports_left_and_unknown_conversations_as_removed() {
    let server = start().await;
    let group = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let stranger = conv_id(&server.http("carol").create_direct("dave").await);
    let (status, _) = server.http("bob").remove_member(&group, "bob").await;
    assert_eq!(status, 204);

    let result = sync(
        &server,
        "bob",
        json!({"conversations": [
            {"conversationId": group, "afterSeq": 0},
            {"conversationId": stranger, "afterSeq": 0},
            {"conversationId": "c_never_existed", "afterSeq": 0},
        ]}),
    )
    .await;

    let mut removed: Vec<&str> = result["removedConversationIds"]
        .as_array()
        .expect("removedConversationIds")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    removed.sort_unstable();
    let mut expected = vec![group.as_str(), stranger.as_str(), "c_never_existed"];
    expected.sort_unstable();
    assert_eq!(removed, expected);
    assert_eq!(result["conversations"], json!([]));
    assert_eq!(result["newConversations"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_validates_its_limits() {
    let (server, id) = direct_pair().await;
    let bob = server.http("bob");
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"conversationId": format!("c_{i}"), "afterSeq": 0}))
        .collect();

    for body in [
        json!({"conversations": too_many}),
        json!({"conversations": [{"conversationId": id, "afterSeq": 0}], "limit": 1001}),
        json!({"conversations": [{"conversationId": id, "afterSeq": -1}]}),
        json!({"conversations": "all"}),
    ] {
        let response = bob.post("/v1/sync", &body).await;
        assert_eq!(response.0, 400, "{body}: {}", response.1);
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
    let (status, body) = bob
        .post(
            "/v1/sync",
            &json!({"conversations": [{"conversationId": id, "afterSeq": 0}], "limit": 1000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
