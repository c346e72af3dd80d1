//! Section 3 "Receipts": `delivered` / `read` positions, their events, and `unreadCount`.

use crate::support::*;

/// A direct conversation where alice sent `count` messages; bob has two connections.
struct Scene {
    server: TestServer,
    id: String,
    alice: WsClient,
    bob_phone: WsClient,
    bob_laptop: WsClient,
}

async fn scene(count: usize) -> Scene {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect_device("alice", "phone").await;
    let mut bob_phone = server.connect_device("bob", "phone").await;
    let mut bob_laptop = server.connect_device("bob", "laptop").await;
    for n in 1..=count {
        alice
            .send_message(&id, &format!("cm-{n}"), &format!("m{n}"))
            .await;
    }
    if count > 0 {
        for ws in [&mut bob_phone, &mut bob_laptop] {
            ws.recv_where("the last message", |f| {
                f["type"] == "message.new" && f["seq"] == count
            })
            .await;
            ws.drain_type("message.new", Duration::ZERO).await;
        }
    }
    Scene {
        server,
        id,
        alice,
        bob_phone,
        bob_laptop,
    }
}

/// bob's positions as the members list shows them.
async fn bob_positions(server: &TestServer, id: &str) -> (Value, Value) {
    let conversation = server.http("alice").conversation(id).await;
    let bob = member(&conversation, "bob");
    (bob["deliveredUpTo"].clone(), bob["readUpTo"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_is_answered_ok_with_the_request_id() {
    let mut s = scene(3).await;

    let answer = s
        .bob_phone
        .request(
            json!({"action": "read", "requestId": "rd-1", "conversationId": s.id, "upToSeq": 2}),
        )
        .await;
    let delivered = s
        .bob_phone
        .request(json!({"action": "delivered", "requestId": "dl-1", "conversationId": s.id, "upToSeq": 3}))
        .await;

    assert_subset(&answer, &json!({"type": "ok", "requestId": "rd-1"}));
    assert_subset(&delivered, &json!({"type": "ok", "requestId": "dl-1"}));
    assert_eq!(bob_positions(&s.server, &s.id).await, (json!(3), json!(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_goes_to_other_members_and_own_other_connections_not_the_sender() {
    let mut s = scene(3).await;
    let t0 = now_ms();

    s.bob_phone.receipt("read", &s.id, 2).await;

    let expected = json!({"type": "receipt", "conversationId": s.id, "userId": "bob", "deliveredUpTo": 2, "readUpTo": 2});
    for ws in [&mut s.alice, &mut s.bob_laptop] {
        let receipt = ws.recv_type("receipt").await;
        assert_keys(
            &receipt,
            &[
                "type",
                "conversationId",
                "userId",
                "deliveredUpTo",
                "readUpTo",
                "timestamp",
            ],
        );
        assert_subset(&receipt, &expected);
        assert_recent_ms(&receipt["timestamp"], t0);
    }
    s.bob_phone.expect_silence("receipt", SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_never_move_backwards() {
    let mut s = scene(3).await;
    s.bob_phone.receipt("read", &s.id, 3).await;
    s.alice.recv_type("receipt").await;

    s.bob_phone.receipt("read", &s.id, 1).await;
    s.bob_phone.receipt("delivered", &s.id, 2).await;

    s.alice.expect_silence("receipt", SHORT).await;
    s.bob_laptop
        .recv_where("the read-3 receipt", |f| {
            f["type"] == "receipt" && f["readUpTo"] == 3
        })
        .await;
    s.bob_laptop.expect_silence("receipt", Duration::ZERO).await;
    assert_eq!(bob_positions(&s.server, &s.id).await, (json!(3), json!(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_are_clamped_to_last_seq() {
    let mut s = scene(3).await;

    s.bob_phone.receipt("read", &s.id, 99).await;

    let receipt = s.alice.recv_type("receipt").await;
    assert_subset(&receipt, &json!({"deliveredUpTo": 3, "readUpTo": 3}));
    assert_eq!(bob_positions(&s.server, &s.id).await, (json!(3), json!(3)));

    s.alice.send_message(&s.id, "cm-4", "one more").await;
    let for_bob = s.server.http("bob").conversation(&s.id).await;
    assert_eq!(
        for_bob["unreadCount"], 1,
        "the clamp did not pre-read seq 4: {for_bob}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_implies_delivered() {
    let mut s = scene(3).await;

    s.bob_phone.receipt("delivered", &s.id, 1).await;
    let first = s.alice.recv_type("receipt").await;
    s.bob_phone.receipt("read", &s.id, 2).await;
    let second = s.alice.recv_type("receipt").await;
    s.bob_phone.receipt("delivered", &s.id, 3).await;
    let third = s.alice.recv_type("receipt").await;

    assert_subset(&first, &json!({"deliveredUpTo": 1, "readUpTo": 0}));
    assert_subset(&second, &json!({"deliveredUpTo": 2, "readUpTo": 2}));
    assert_subset(&third, &json!({"deliveredUpTo": 3, "readUpTo": 2}));
    assert_eq!(bob_positions(&s.server, &s.id).await, (json!(3), json!(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_count_is_last_seq_minus_read_up_to() {
    let mut s = scene(3).await;
    let bob = s.server.http("bob");
    assert_eq!(bob.conversation(&s.id).await["unreadCount"], 3);

    s.bob_phone.receipt("read", &s.id, 1).await;
    assert_eq!(bob.conversation(&s.id).await["unreadCount"], 2);
    s.bob_phone.receipt("delivered", &s.id, 3).await;
    assert_eq!(
        bob.conversation(&s.id).await["unreadCount"],
        2,
        "delivered is not read"
    );

    let (_, list) = bob.get("/v1/conversations").await;
    assert_eq!(list["conversations"][0]["unreadCount"], 2, "{list}");
    assert_eq!(
        s.server.http("alice").conversation(&s.id).await["unreadCount"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_advances_the_senders_own_positions_without_a_receipt_event() {
    let (server, id) = direct_pair().await;
    let mut alice_phone = server.connect_device("alice", "phone").await;
    let mut alice_laptop = server.connect_device("alice", "laptop").await;
    let mut bob = server.connect("bob").await;

    alice_phone.send_message(&id, "cm-1", "one").await;
    alice_phone.send_message(&id, "cm-2", "two").await;

    let conversation = server.http("alice").conversation(&id).await;
    assert_subset(
        member(&conversation, "alice"),
        &json!({"deliveredUpTo": 2, "readUpTo": 2}),
    );
    assert_subset(
        member(&conversation, "bob"),
        &json!({"deliveredUpTo": 0, "readUpTo": 0}),
    );
    assert_eq!(conversation["unreadCount"], 0);
    bob.expect_silence("receipt", SHORT).await;
    alice_laptop.expect_silence("receipt", Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_receipts_move_positions_and_notify_every_connection() {
    let mut s = scene(3).await;
    let bob = s.server.http("bob");
    let path = format!("/v1/conversations/{}/receipts", s.id);

    let (status, positions) = bob.post(&path, &json!({"readUpTo": 2})).await;
    assert_eq!(status, 200, "{positions}");
    assert_subset(&positions, &json!({"deliveredUpTo": 2, "readUpTo": 2}));
    // An HTTP receipt comes from no connection: all of bob's connections hear of it.
    for ws in [&mut s.alice, &mut s.bob_phone, &mut s.bob_laptop] {
        let receipt = ws.recv_type("receipt").await;
        assert_subset(
            &receipt,
            &json!({"userId": "bob", "deliveredUpTo": 2, "readUpTo": 2}),
        );
    }

    let (status, positions) = bob.post(&path, &json!({"deliveredUpTo": 3})).await;
    assert_eq!(status, 200, "{positions}");
    assert_subset(&positions, &json!({"deliveredUpTo": 3, "readUpTo": 2}));
    s.alice.recv_type("receipt").await;

    let (status, positions) = bob
        .post(&path, &json!({"deliveredUpTo": 1, "readUpTo": 1}))
        .await;
    assert_eq!(status, 200, "{positions}");
    assert_subset(&positions, &json!({"deliveredUpTo": 3, "readUpTo": 2}));
    s.alice.expect_silence("receipt", SHORT).await;

    for body in [
        json!({"readUpTo": -1}),
        json!({"deliveredUpTo": "3"}),
        json!({"readUpTo": 1.5}),
    ] {
        let response = bob.post(&path, &body).await;
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_in_a_group_reach_every_other_member() {
    let (server, id) = team().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    alice.send_message(&id, "cm-1", "hello team").await;

    carol.receipt("read", &id, 1).await;

    for ws in [&mut alice, &mut bob] {
        let receipt = ws.recv_type("receipt").await;
        assert_subset(
            &receipt,
            &json!({"conversationId": id, "userId": "carol", "readUpTo": 1}),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_added_later_starts_at_their_member_added_entry() {
    let server = start().await;
    let alice = server.http("alice");
    let id = conv_id(&alice.create_group("Team", &["bob"]).await);
    let mut ws = server.connect("alice").await;
    for n in 1..=3 {
        ws.send_message(&id, &format!("cm-{n}"), "before carol")
            .await;
    }

    let (status, conversation) = alice.add_members(&id, &["carol"]).await;

    // Her positions start at the entry that added her (PROTOCOL.md 8.4), seq 4
    assert_eq!(status, 200, "{conversation}");
    assert_subset(
        member(&conversation, "carol"),
        &json!({"deliveredUpTo": 4, "readUpTo": 4}),
    );
    let for_carol = server.http("carol").conversation(&id).await;
    assert_eq!(for_carol["unreadCount"], 0);
    let history = server.http("carol").messages(&id, "").await;
    let messages = history["messages"].as_array().expect("messages");
    assert_eq!(seqs(messages), [1, 2, 3, 4]);
    assert_subset(
        &messages[3],
        &json!({"kind": "system", "event": "member_added", "userIds": ["carol"], "actorId": "alice"}),
    );
}
