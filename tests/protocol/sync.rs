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

/// Long messages: 4000 four-byte characters, 16 KB of text each.
async fn with_long_messages(count: usize) -> (TestServer, String, String) {
    let server = server().env("CHAT_RATE_LIMIT_PER_MIN", "0").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let text = "\u{1F600}".repeat(4000);
    let mut alice = server.connect("alice").await;
    for n in 1..=count {
        alice.send_message(&id, &format!("cm-{n}"), &text).await;
    }
    (server, id, text)
}

fn answer_bytes(answer: &Value) -> usize {
    serde_json::to_vec(answer).expect("serialize").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_answer_stops_at_one_mebibyte_at_a_message_boundary_and_pages_on() {
    // 100 messages of 16 KB: 1.6 MB of text, more than one answer may carry.
    let (server, id, text) = with_long_messages(100).await;
    let mut after = 0;
    let mut answers = 0;
    let mut seen: Vec<i64> = Vec::new();
    loop {
        let body =
            json!({"conversations": [{"conversationId": id, "afterSeq": after}], "limit": 1000});
        let result = sync(&server, "bob", body).await;
        answers += 1;
        assert!(
            answer_bytes(&result) <= 1024 * 1024,
            "answer {answers} is {} bytes",
            answer_bytes(&result)
        );
        let entry = &result["conversations"][0];
        let messages = entry["messages"].as_array().expect("messages");
        assert!(
            !messages.is_empty(),
            "answer {answers} carried no message: {entry}"
        );
        assert!(
            messages
                .iter()
                .all(|m| m["content"]["text"] == text.as_str())
        );
        let got = seqs(messages);
        assert_eq!(
            got[0],
            after + 1,
            "answer {answers} starts after the cursor"
        );
        seen.extend(&got);
        after = *got.last().expect("a message");
        if entry["hasMore"] == false {
            break;
        }
        assert!(answers < 10, "sync never ended");
    }
    assert!(answers >= 2, "1.6 MB fitted in one answer");
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<i64>>(),
        "every message once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_page_stops_at_one_mebibyte_keeping_the_newest() {
    let (server, id, _) = with_long_messages(100).await;
    let page = server.http("bob").messages(&id, "limit=200").await;
    assert!(
        answer_bytes(&page) <= 1024 * 1024,
        "{} bytes",
        answer_bytes(&page)
    );
    assert_eq!(page["hasMore"], true, "older messages were left out");
    let got = seqs(page["messages"].as_array().expect("messages"));
    assert!(got.len() < 100 && got.len() > 20, "{} messages", got.len());
    assert_eq!(*got.last().unwrap(), 100, "the newest message is in");
    assert_eq!(got, (got[0]..=100).collect::<Vec<i64>>(), "contiguous");

    // Going forward from the start, the oldest come first.
    let page = server.http("bob").messages(&id, "after=0&limit=200").await;
    assert!(answer_bytes(&page) <= 1024 * 1024);
    assert_eq!(page["hasMore"], true);
    let got = seqs(page["messages"].as_array().expect("messages"));
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<i64>>());
}
