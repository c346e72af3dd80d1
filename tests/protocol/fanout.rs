//! Section 3 "Large conversations": above `CHAT_EVENT_FANOUT_MAX_MEMBERS` members,
//! `receipt` and `typing` go only to the user's own other connections and presence does not
//! travel through the conversation; messages still reach everyone.

use crate::support::*;

/// A server with a fan-out cap of 2 and a group alice, bob, carol (3 members: above it).
async fn above_the_cap() -> (TestServer, String) {
    let server = server()
        .env("CHAT_EVENT_FANOUT_MAX_MEMBERS", "2")
        .start()
        .await;
    let id = conv_id(
        &server
            .http("alice")
            .create_group("Crowd", &["bob", "carol"])
            .await,
    );
    (server, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_typing_stay_with_own_connections_above_the_cap() {
    let (server, id) = above_the_cap().await;
    let mut alice = server.connect("alice").await;
    let mut bob_phone = server.connect_device("bob", "phone").await;
    let mut bob_laptop = server.connect_device("bob", "laptop").await;
    let mut carol = server.connect("carol").await;

    alice.send_message(&id, "cm-1", "hello crowd").await;
    for ws in [&mut bob_phone, &mut bob_laptop, &mut carol] {
        ws.recv_type("message.new").await;
    }
    bob_phone.receipt("read", &id, 1).await;
    bob_phone
        .request(json!({"action": "typing", "conversationId": id, "isTyping": true}))
        .await;

    let receipt = bob_laptop.recv_type("receipt").await;
    assert_subset(
        &receipt,
        &json!({"conversationId": id, "userId": "bob", "readUpTo": 1}),
    );
    alice.expect_silence("receipt", SHORT).await;
    alice.expect_silence("typing", Duration::ZERO).await;
    carol.expect_silence("receipt", Duration::ZERO).await;
    carol.expect_silence("typing", Duration::ZERO).await;
    let members = all_members(&server.http("alice"), &id, 100).await;
    let bob = members
        .iter()
        .find(|m| m["userId"] == "bob")
        .expect("bob is listed");
    assert_subset(bob, &json!({"deliveredUpTo": 1, "readUpTo": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_conversations_still_fan_out_under_a_low_cap() {
    let (server, _group) = above_the_cap().await;
    let direct = conv_id(&server.http("alice").create_direct("bob").await);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send_message(&direct, "cm-1", "just us").await;

    bob.receipt("read", &direct, 1).await;

    let receipt = alice.recv_type("receipt").await;
    assert_subset(
        &receipt,
        &json!({"conversationId": direct, "userId": "bob", "readUpTo": 1}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_does_not_travel_through_conversations_above_the_cap() {
    let (server, _id) = above_the_cap().await;
    let mut alice = server.connect("alice").await;

    let _bob = server.connect("bob").await;

    alice
        .expect_none("bob presence", SHORT, |f| {
            f["type"] == "presence" && f["userId"] == "bob"
        })
        .await;
}
