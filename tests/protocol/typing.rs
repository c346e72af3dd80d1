//! Section 3 "Typing": ephemeral events, the 2-per-second limit on `isTyping: true`.
//!
//! The limit's window is one second from the first relayed `isTyping: true`, with no
//! setting to widen it, so the tests that hit it send their frames in one go (written
//! back to back, answers collected afterwards) rather than one round trip at a time: the
//! server then handles them within microseconds of each other. Only a server stalled for
//! a whole second between two frames already in its socket buffer could see them in two
//! windows.

use crate::support::*;

/// Writes every frame of `frames` before reading any answer, then returns the answers
/// in order (each frame carries a `requestId`).
async fn pipelined(ws: &mut WsClient, frames: &[Value]) -> Vec<Value> {
    for frame in frames {
        ws.send_json(frame).await;
    }
    let mut answers = Vec::new();
    for frame in frames {
        let id = frame["requestId"]
            .as_str()
            .expect("pipelined frames carry a requestId");
        answers.push(ws.recv_response(id).await);
    }
    answers
}

fn typing(request_id: &str, conversation_id: &str, is_typing: bool) -> Value {
    json!({"action": "typing", "requestId": request_id, "conversationId": conversation_id, "isTyping": is_typing})
}

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
async fn third_typing_true_within_a_second_is_dropped_and_only_the_first_false_relayed() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let frames: Vec<Value> = (1..=7)
        .map(|n| typing(&format!("t-{n}"), &id, n <= 3))
        .collect();

    let answers = pipelined(&mut alice, &frames).await;

    for (n, answer) in (1..=7).zip(&answers) {
        assert_subset(
            answer,
            &json!({"type": "ok", "requestId": format!("t-{n}")}),
        );
    }
    // A sentinel after them: bob has every typing event before its message.new.
    alice.send_message(&id, "sentinel", "done typing").await;
    bob.recv_type("message.new").await;
    let events = bob.drain_type("typing", Duration::ZERO).await;
    let states: Vec<&Value> = events.iter().map(|e| &e["isTyping"]).collect();
    assert_eq!(
        states,
        [&json!(true), &json!(true), &json!(false)],
        "events: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_typing_false_relays_only_the_one_that_ends_a_shown_state() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    // 200 `false` with nothing to end, then a `true`, then 200 more `false`.
    let mut frames: Vec<Value> = (1..=200)
        .map(|n| typing(&format!("f-{n}"), &id, false))
        .collect();
    frames.push(typing("t-1", &id, true));
    frames.extend((201..=400).map(|n| typing(&format!("f-{n}"), &id, false)));

    let answers = pipelined(&mut alice, &frames).await;

    assert!(answers.iter().all(|a| a["type"] == "ok"), "{answers:?}");
    alice.send_message(&id, "sentinel", "done typing").await;
    bob.recv_type("message.new").await;
    let events = bob.drain_type("typing", Duration::ZERO).await;
    let states: Vec<&Value> = events.iter().map(|e| &e["isTyping"]).collect();
    assert_eq!(states, [&json!(true), &json!(false)], "events: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_limit_is_per_conversation() {
    let server = start().await;
    let first = conv_id(&server.http("alice").create_direct("bob").await);
    let second = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let frames: Vec<Value> = [&first, &first, &second, &second]
        .iter()
        .enumerate()
        .map(|(n, id)| typing(&format!("t-{n}"), id, true))
        .collect();

    pipelined(&mut alice, &frames).await;
    // Both conversations' events reach bob before the message.new of a send after them.
    alice.send_message(&first, "sentinel", "done typing").await;
    bob.recv_type("message.new").await;

    let events = bob.drain_type("typing", Duration::ZERO).await;
    assert_eq!(events.len(), 4, "two per conversation pass: {events:?}");
}
