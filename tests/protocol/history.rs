//! `GET /v1/conversations/{id}/messages`: the latest page, paging both ways, limits.

use crate::support::*;

/// A direct conversation holding `count` messages from alice ("m1", "m2", ...).
async fn with_messages(count: usize) -> (TestServer, String, Vec<Value>) {
    with_messages_on(server(), count).await
}

async fn with_messages_on(
    builder: TestServerBuilder,
    count: usize,
) -> (TestServer, String, Vec<Value>) {
    let server = builder.start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let mut alice = server.connect("alice").await;
    let mut acks = Vec::new();
    for n in 1..=count {
        acks.push(
            alice
                .send_message(&id, &format!("cm-{n}"), &format!("m{n}"))
                .await,
        );
    }
    (server, id, acks)
}

async fn page(server: &TestServer, id: &str, query: &str) -> (Vec<i64>, bool) {
    let body = server.http("bob").messages(id, query).await;
    let messages = body["messages"].as_array().expect("messages array");
    let has_more = body["hasMore"]
        .as_bool()
        .unwrap_or_else(|| panic!("hasMore is not a bool: {body}"));
    (seqs(messages), has_more)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_messages_carry_every_field() {
    let (server, id, acks) = with_messages(2).await;

    let body = server.http("bob").messages(&id, "").await;

    let messages = body["messages"].as_array().expect("messages array");
    assert_eq!(messages.len(), 2);
    for (message, ack) in messages.iter().zip(&acks) {
        assert_keys(
            message,
            &[
                "conversationId",
                "messageId",
                "seq",
                "senderId",
                "clientMessageId",
                "content",
                "replyTo",
                "timestamp",
            ],
        );
        assert!(
            message.get("type").is_none(),
            "history messages have no `type`: {message}"
        );
        assert_subset(
            message,
            &json!({
                "conversationId": id, "messageId": ack["messageId"], "seq": ack["seq"],
                "senderId": "alice", "clientMessageId": ack["clientMessageId"],
                "replyTo": null, "timestamp": ack["timestamp"],
            }),
        );
    }
    assert_eq!(
        messages[0]["content"],
        json!({"type": "text", "text": "m1"})
    );
    assert_eq!(body["hasMore"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_without_cursor_is_the_latest_page_ascending() {
    let (server, id, _) = with_messages(5).await;

    assert_eq!(page(&server, &id, "").await, (vec![1, 2, 3, 4, 5], false));
    assert_eq!(page(&server, &id, "limit=2").await, (vec![4, 5], true));
    assert_eq!(
        page(&server, &id, "limit=5").await,
        (vec![1, 2, 3, 4, 5], false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_backwards_with_before() {
    let (server, id, _) = with_messages(5).await;

    assert_eq!(
        page(&server, &id, "before=4&limit=2").await,
        (vec![2, 3], true)
    );
    assert_eq!(
        page(&server, &id, "before=2&limit=2").await,
        (vec![1], false)
    );
    assert_eq!(page(&server, &id, "before=1").await, (vec![], false));
    assert_eq!(
        page(&server, &id, "before=100&limit=2").await,
        (vec![4, 5], true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_forwards_with_after() {
    let (server, id, _) = with_messages(5).await;

    assert_eq!(
        page(&server, &id, "after=1&limit=2").await,
        (vec![2, 3], true)
    );
    assert_eq!(
        page(&server, &id, "after=3&limit=2").await,
        (vec![4, 5], false)
    );
    assert_eq!(
        page(&server, &id, "after=0").await,
        (vec![1, 2, 3, 4, 5], false)
    );
    assert_eq!(page(&server, &id, "after=5").await, (vec![], false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_between_after_and_before_ascends_from_after() {
    let (server, id, _) = with_messages(6).await;

    assert_eq!(
        page(&server, &id, "after=1&before=5").await,
        (vec![2, 3, 4], false)
    );
    assert_eq!(
        page(&server, &id, "after=1&before=6&limit=2").await,
        (vec![2, 3], true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_an_empty_conversation_is_empty() {
    let (server, id) = direct_pair().await;

    assert_eq!(page(&server, &id, "").await, (vec![], false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_is_at_most_200_and_defaults_to_50() {
    let unlimited = server().env("CHAT_RATE_LIMIT_PER_MIN", "0");
    let (server, id, _) = with_messages_on(unlimited, 201).await;

    let (seqs, has_more) = page(&server, &id, "").await;
    assert_eq!(seqs, (152..=201).collect::<Vec<_>>());
    assert!(has_more);

    let (seqs, has_more) = page(&server, &id, "limit=200").await;
    assert_eq!(seqs, (2..=201).collect::<Vec<_>>());
    assert!(has_more);
    let (seqs, has_more) = page(&server, &id, "after=0&limit=200").await;
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert!(has_more);

    let bob = server.http("bob");
    for query in [
        "limit=201",
        "limit=-1",
        "limit=abc",
        "before=abc",
        "after=-1",
    ] {
        let response = bob
            .get(&format!("/v1/conversations/{id}/messages?{query}"))
            .await;
        assert_eq!(response.0, 400, "{query}: {}", response.1);
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
}
