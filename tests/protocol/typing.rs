//! Section 3 "Typing": ephemeral events, the 2-per-second limit on `isTyping: true`.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_member_with_expiry() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob_phone = server.connect_device("bob", "phone").await;
    let mut bob_laptop = server.connect_device("bob", "laptop").await;

    let answer = alice
        .request(
            json!({"action": "typing", "requestId": "t-1", "conversationId": id, "isTyping": true}),
        )
        .await;

    assert_subset(&answer, &json!({"type": "ok", "requestId": "t-1"}));
    let expected = json!({"type": "typing", "conversationId": id, "userId": "alice", "isTyping": true, "expiresInMs": 5000});
    for ws in [&mut bob_phone, &mut bob_laptop] {
        let typing = ws.recv_type("typing").await;
        assert_keys(
            &typing,
            &[
                "type",
                "conversationId",
                "userId",
                "isTyping",
                "expiresInMs",
            ],
        );
        assert_subset(&typing, &expected);
    }
    alice.expect_silence("typing", SHORT).await;

    alice
        .request(json!({"action": "typing", "conversationId": id, "isTyping": false}))
        .await;
    let stopped = bob_phone.recv_type("typing").await;
    assert_subset(&stopped, &json!({"userId": "alice", "isTyping": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_never_stored() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;

    alice
        .request(json!({"action": "typing", "conversationId": id, "isTyping": true}))
        .await;
    bob.recv_type("typing").await;

    let conversation = server.http("bob").conversation(&id).await;
    assert_subset(&conversation, &json!({"lastSeq": 0, "unreadCount": 0}));
    assert_eq!(conversation["lastMessageAt"], conversation["createdAt"]);
    let history = server.http("bob").messages(&id, "").await;
    assert_eq!(history["messages"], json!([]));
    let mut late = server.connect_device("bob", "late").await;
    late.expect_silence("typing", SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_typing_true_within_a_second_is_dropped_but_answered_and_false_never_is() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    // Start right after a wall-clock second so a fixed one-second window holds the burst.
    avoid_window_edge(1000, 1000).await;

    for n in 1..=3 {
        let answer = alice
            .request(json!({"action": "typing", "requestId": format!("t-{n}"), "conversationId": id, "isTyping": true}))
            .await;
        assert_subset(
            &answer,
            &json!({"type": "ok", "requestId": format!("t-{n}")}),
        );
    }
    for n in 4..=7 {
        let answer = alice
            .request(json!({"action": "typing", "requestId": format!("t-{n}"), "conversationId": id, "isTyping": false}))
            .await;
        assert_subset(
            &answer,
            &json!({"type": "ok", "requestId": format!("t-{n}")}),
        );
    }

    let events = bob.drain_type("typing", SHORT).await;
    let states: Vec<&Value> = events.iter().map(|e| &e["isTyping"]).collect();
    assert_eq!(
        states,
        [
            &json!(true),
            &json!(true),
            &json!(false),
            &json!(false),
            &json!(false),
            &json!(false)
        ],
        "events: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_limit_is_per_conversation() {
    let server = start().await;
    let first = conv_id(&server.http("alice").create_direct("bob").await);
    let second = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    avoid_window_edge(1000, 1000).await;

    for id in [&first, &first, &second, &second] {
        alice
            .request(json!({"action": "typing", "conversationId": id, "isTyping": true}))
            .await;
    }

    let events = bob.drain_type("typing", SHORT).await;
    assert_eq!(events.len(), 4, "two per conversation pass: {events:?}");
}
