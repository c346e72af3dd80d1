//! Section 3 "Send" and "Fan-out": acks, `message.new`, duplicates, HTTP sends, replies.

use crate::support::*;

const ACK_KEYS: &[&str] = &[
    "type",
    "requestId",
    "conversationId",
    "clientMessageId",
    "messageId",
    "seq",
    "timestamp",
    "duplicate",
];

const MESSAGE_NEW_KEYS: &[&str] = &[
    "type",
    "conversationId",
    "messageId",
    "seq",
    "senderId",
    "clientMessageId",
    "content",
    "replyTo",
    "timestamp",
];

/// The `message.new` every other connection must receive for `ack`.
fn expected_message_new(ack: &Value, sender: &str, text: &str) -> Value {
    json!({
        "type": "message.new",
        "conversationId": ack["conversationId"],
        "messageId": ack["messageId"],
        "seq": ack["seq"],
        "senderId": sender,
        "clientMessageId": ack["clientMessageId"],
        "content": {"type": "text", "text": text},
        "replyTo": null,
        "timestamp": ack["timestamp"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_is_acked_with_every_field_and_seq_from_1() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect_device("alice", "phone").await;
    let t0 = now_ms();

    let ack = alice
        .request(json!({
            "action": "send", "requestId": "r-1", "conversationId": id,
            "clientMessageId": "cm-1", "content": {"type": "text", "text": "hi"},
        }))
        .await;

    assert_keys(&ack, ACK_KEYS);
    assert_subset(
        &ack,
        &json!({"type": "message.ack", "requestId": "r-1", "conversationId": id, "clientMessageId": "cm-1", "seq": 1, "duplicate": false}),
    );
    let message_id = ack["messageId"].as_str().expect("messageId is a string");
    assert!(!message_id.is_empty());
    assert_recent_ms(&ack["timestamp"], t0);

    alice.send_json(&send_action(&id, "cm-2", "again")).await;
    let second = alice.recv_type("message.ack").await;
    assert_keys(&second, ACK_KEYS);
    assert_subset(
        &second,
        &json!({"requestId": null, "clientMessageId": "cm-2", "seq": 2, "duplicate": false}),
    );
    assert_ne!(second["messageId"], ack["messageId"]);
    assert!(second["timestamp"].as_i64() >= ack["timestamp"].as_i64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_new_reaches_other_members_and_own_other_devices_but_not_the_sender() {
    let (server, id) = direct_pair().await;
    let mut alice_phone = server.connect_device("alice", "phone").await;
    let mut alice_laptop = server.connect_device("alice", "laptop").await;
    let mut bob_phone = server.connect_device("bob", "phone").await;
    let mut bob_tablet = server.connect_device("bob", "tablet").await;

    let ack = alice_phone.send_message(&id, "cm-1", "hello").await;

    let expected = expected_message_new(&ack, "alice", "hello");
    for ws in [&mut alice_laptop, &mut bob_phone, &mut bob_tablet] {
        let frame = ws.recv_type("message.new").await;
        assert_keys(&frame, MESSAGE_NEW_KEYS);
        assert_subset(&frame, &expected);
    }
    alice_phone.expect_silence("message.new", SHORT).await;
    for ws in [&mut alice_laptop, &mut bob_phone, &mut bob_tablet] {
        ws.expect_silence("message.new", Duration::ZERO).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_each_connection_in_seq_order() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;

    for n in 1..=30 {
        alice
            .send_json(&send_action(
                &id,
                &format!("cm-{n}"),
                &format!("message {n}"),
            ))
            .await;
    }

    let mut acked = Vec::new();
    for _ in 1..=30 {
        acked.push(
            alice.recv_type("message.ack").await["seq"]
                .as_i64()
                .expect("seq"),
        );
    }
    assert_eq!(
        acked,
        (1..=30).collect::<Vec<_>>(),
        "one connection's sends are acked in order"
    );
    let mut received = Vec::new();
    for _ in 1..=30 {
        let frame = bob.recv_type("message.new").await;
        let seq = frame["seq"].as_i64().expect("seq");
        assert_eq!(frame["content"]["text"], format!("message {seq}"));
        received.push(seq);
    }
    assert_eq!(received, (1..=30).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_send_returns_the_original_ack_and_fans_out_nothing() {
    let (server, id) = direct_pair().await;
    let mut alice_phone = server.connect_device("alice", "phone").await;
    let mut alice_laptop = server.connect_device("alice", "laptop").await;
    let mut bob = server.connect("bob").await;
    let original = alice_phone.send_message(&id, "cm-1", "original").await;
    bob.recv_type("message.new").await;
    alice_laptop.recv_type("message.new").await;

    let same_connection = alice_phone
        .request(json!({
            "action": "send", "requestId": "retry-1", "conversationId": id,
            "clientMessageId": "cm-1", "content": {"type": "text", "text": "changed text"},
        }))
        .await;
    let other_device = alice_laptop.send_message(&id, "cm-1", "original").await;
    let (status, over_http) = server
        .http("alice")
        .send_message(&id, "cm-1", "original")
        .await;

    for ack in [&same_connection, &other_device] {
        assert_keys(ack, ACK_KEYS);
        assert_subset(
            ack,
            &json!({
                "type": "message.ack", "conversationId": id, "clientMessageId": "cm-1",
                "messageId": original["messageId"], "seq": 1,
                "timestamp": original["timestamp"], "duplicate": true,
            }),
        );
    }
    assert_eq!(same_connection["requestId"], "retry-1");
    assert_eq!(status, 200, "{over_http}");
    assert_subset(
        &over_http,
        &json!({"messageId": original["messageId"], "seq": 1, "timestamp": original["timestamp"], "duplicate": true}),
    );
    bob.expect_silence("message.new", SHORT).await;
    alice_laptop
        .expect_silence("message.new", Duration::ZERO)
        .await;
    let history = server.http("bob").messages(&id, "").await;
    assert_eq!(seqs(history["messages"].as_array().expect("messages")), [1]);
    assert_eq!(history["messages"][0]["content"]["text"], "original");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_message_id_is_scoped_to_sender_and_conversation() {
    let (server, id) = direct_pair().await;
    let other = conv_id(&server.http("alice").create_direct("carol").await);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;

    let first = alice.send_message(&id, "same-id", "from alice").await;
    let by_bob = bob.send_message(&id, "same-id", "from bob").await;
    let elsewhere = alice.send_message(&other, "same-id", "to carol").await;

    assert_subset(&first, &json!({"seq": 1, "duplicate": false}));
    assert_subset(&by_bob, &json!({"seq": 2, "duplicate": false}));
    assert_subset(&elsewhere, &json!({"seq": 1, "duplicate": false}));
    assert_ne!(first["messageId"], by_bob["messageId"]);
    assert_ne!(first["messageId"], elsewhere["messageId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_send_answers_201_then_200_for_a_duplicate() {
    let (server, id) = direct_pair().await;
    let mut alice_ws = server.connect("alice").await;
    let mut bob_ws = server.connect("bob").await;
    let t0 = now_ms();

    let (status, ack) = server
        .http("alice")
        .send_message(&id, "cm-http", "via http")
        .await;

    assert_eq!(status, 201, "{ack}");
    assert_keys(
        &ack,
        &[
            "conversationId",
            "clientMessageId",
            "messageId",
            "seq",
            "timestamp",
            "duplicate",
        ],
    );
    assert_subset(
        &ack,
        &json!({"conversationId": id, "clientMessageId": "cm-http", "seq": 1, "duplicate": false}),
    );
    assert_recent_ms(&ack["timestamp"], t0);
    let expected = expected_message_new(&ack, "alice", "via http");
    // An HTTP send comes from no connection: every connection, the sender's too, gets it.
    for ws in [&mut alice_ws, &mut bob_ws] {
        assert_subset(&ws.recv_type("message.new").await, &expected);
    }

    let (status, again) = server
        .http("alice")
        .send_message(&id, "cm-http", "via http")
        .await;
    assert_eq!(status, 200, "{again}");
    assert_subset(
        &again,
        &json!({"messageId": ack["messageId"], "seq": 1, "timestamp": ack["timestamp"], "duplicate": true}),
    );
    bob_ws.expect_silence("message.new", SHORT).await;

    let ws_ack = alice_ws.send_message(&id, "cm-ws", "via ws").await;
    assert_eq!(ws_ack["seq"], 2, "HTTP and WebSocket share one sequence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_send_validates_its_body() {
    let (server, id) = direct_pair().await;
    let alice = server.http("alice");
    let path = format!("/v1/conversations/{id}/messages");
    let bodies = [
        json!({"content": {"type": "text", "text": "no id"}}),
        json!({"clientMessageId": "", "content": {"type": "text", "text": "x"}}),
        json!({"clientMessageId": "c".repeat(65), "content": {"type": "text", "text": "x"}}),
        json!({"clientMessageId": "cm", "content": {"type": "text", "text": ""}}),
        json!({"clientMessageId": "cm", "content": {"type": "text", "text": "x".repeat(4001)}}),
        json!({"clientMessageId": "cm", "content": {"type": "image", "url": "https://x"}}),
        json!({"clientMessageId": "cm", "content": {"type": "text", "text": "x"}, "replyTo": 0}),
        json!({"clientMessageId": "cm", "content": {"type": "text", "text": "x"}, "replyTo": 1}),
    ];
    for body in bodies {
        let response = alice.post(&path, &body).await;
        assert_eq!(response.0, 400, "body {body}: {}", response.1);
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
    let response = alice
        .raw(Method::POST, &path, "{not json", "application/json")
        .await;
    assert_http_error(&response, 400, "INVALID_MESSAGE");
    assert_eq!(alice.conversation(&id).await["lastSeq"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_refers_to_an_earlier_seq() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send_message(&id, "cm-1", "question").await;

    let reply = bob
        .request(json!({
            "action": "send", "conversationId": id, "clientMessageId": "cm-2",
            "content": {"type": "text", "text": "answer"}, "replyTo": 1,
        }))
        .await;
    assert_subset(&reply, &json!({"type": "message.ack", "seq": 2}));
    let explicit_null = bob
        .request(json!({
            "action": "send", "conversationId": id, "clientMessageId": "cm-3",
            "content": {"type": "text", "text": "plain"}, "replyTo": null,
        }))
        .await;
    assert_subset(&explicit_null, &json!({"type": "message.ack", "seq": 3}));

    let frame = alice
        .recv_where("message.new seq 2", |f| {
            f["type"] == "message.new" && f["seq"] == 2
        })
        .await;
    assert_eq!(frame["replyTo"], 1);
    let history = server.http("alice").messages(&id, "").await;
    let messages = history["messages"].as_array().expect("messages");
    assert_eq!(messages[1]["replyTo"], 1);
    assert_eq!(messages[2]["replyTo"], Value::Null);
    let (status, body) = server
        .http("bob")
        .post(
            &format!("/v1/conversations/{id}/messages"),
            &json!({"clientMessageId": "cm-4", "content": {"type": "text", "text": "re"}, "replyTo": 3}),
        )
        .await;
    assert_eq!(status, 201, "replyTo = lastSeq is valid: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_of_4000_scalar_values_is_accepted_even_when_multi_byte() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let emoji = "😀".repeat(4000); // 16000 bytes, 8000 UTF-16 units, 4000 scalar values
    let mixed = format!("{}{}", "é".repeat(2000), "a".repeat(2000));
    let ascii = "a".repeat(4000);

    for (n, text) in [&emoji, &mixed, &ascii].into_iter().enumerate() {
        let ack = alice.send_message(&id, &format!("cm-{n}"), text).await;
        assert_eq!(ack["duplicate"], false);
        let frame = bob.recv_type("message.new").await;
        assert_eq!(
            frame["content"]["text"].as_str(),
            Some(text.as_str()),
            "text survives intact"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_at_their_maximum_are_accepted() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let request_id = "r".repeat(64);
    let client_message_id = "c".repeat(64);

    let ack = alice
        .request(json!({
            "action": "send", "requestId": request_id, "conversationId": id,
            "clientMessageId": client_message_id, "content": {"type": "text", "text": "x"},
        }))
        .await;

    assert_subset(
        &ack,
        &json!({"type": "message.ack", "requestId": request_id, "clientMessageId": client_message_id}),
    );
    let ok = alice
        .request(json!({"action": "read", "requestId": "r-0", "conversationId": id, "upToSeq": 0}))
        .await;
    assert_subset(&ok, &json!({"type": "ok", "requestId": "r-0"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_is_omitted_without_request_id() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    alice.send_message(&id, "cm-1", "x").await;

    alice
        .send_json(&json!({"action": "read", "conversationId": id, "upToSeq": 1}))
        .await;
    alice
        .send_json(&json!({"action": "typing", "conversationId": id, "isTyping": true}))
        .await;

    alice.expect_silence("ok", SHORT).await;
    alice.expect_silence("error", Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_two_senders_reaches_every_connection_in_order_except_its_own() {
    // GIVEN a group where alice has two devices online, bob one, and carol is offline
    // with a phone
    let (server, id) = team().await;
    server
        .http("carol")
        .register_device("carol-1", "fcm", "tok-carol")
        .await;
    let mut alice_phone = server.connect_device("alice", "phone").await;
    let mut alice_laptop = server.connect_device("alice", "laptop").await;
    let mut bob = server.connect("bob").await;

    // WHEN alice's phone and bob send 40 messages each at once, not waiting for acks (so
    // the fan-out gets them in runs)
    const EACH: i64 = 40;
    for n in 0..EACH {
        for (ws, who) in [(&mut alice_phone, "alice"), (&mut bob, "bob")] {
            ws.send_json(&send_action(
                &id,
                &format!("{who}-{n}"),
                &format!("{who} {n}"),
            ))
            .await;
        }
    }
    let acked = |seqs: &mut Vec<i64>, ack: Value| seqs.push(ack["seq"].as_i64().unwrap());
    let (mut from_alice, mut from_bob) = (Vec::new(), Vec::new());
    for _ in 0..EACH {
        acked(&mut from_alice, alice_phone.recv_type("message.ack").await);
        acked(&mut from_bob, bob.recv_type("message.ack").await);
    }

    // THEN each connection gets every message it did not send, once, in seq order
    let all: Vec<i64> = (1..=2 * EACH).collect();
    for (ws, expected) in [
        (&mut alice_laptop, all.clone()),
        (&mut alice_phone, from_bob),
        (&mut bob, from_alice),
    ] {
        let mut received = Vec::new();
        for _ in 0..expected.len() {
            let frame = ws.recv_type("message.new").await;
            received.push(frame["seq"].as_i64().expect("seq"));
        }
        assert_eq!(received, expected);
        ws.expect_silence("message.new", SHORT).await;
    }
    // AND carol's phone is pushed once per message, with her unread count at the time
    let pushes = server
        .wait_for_pushes("a push per message for carol", |p| {
            p.iter().filter(|p| p["userId"] == "carol").count() >= all.len()
        })
        .await;
    let mut seqs: Vec<(i64, i64)> = pushes
        .iter()
        .filter(|p| p["userId"] == "carol")
        .map(|p| {
            (
                p["data"]["seq"].as_i64().unwrap(),
                p["badge"].as_i64().unwrap(),
            )
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs.iter().map(|(s, _)| *s).collect::<Vec<_>>(), all);
    for (seq, badge) in seqs {
        assert!(
            (seq..=2 * EACH).contains(&badge),
            "seq {seq}, badge {badge}"
        );
    }
}
