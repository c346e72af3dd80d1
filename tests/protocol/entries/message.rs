//! `message` entries: what a new message carries.

use super::*;

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_message_is_fanned_out_with_kind_message_and_an_empty_state() {
    // GIVEN alice and bob connected to their direct conversation
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;

    // WHEN alice sends a message
    let ack = alice
        .request(json!({
            "action": "send", "requestId": "r-1", "conversationId": id,
            "clientMessageId": "cm-1", "content": text("hi"),
        }))
        .await;

    // THEN the ack says kind `message`
    assert_keys(&ack, ACK_KEYS);
    assert_subset(
        &ack,
        &json!({"type": "message.ack", "requestId": "r-1", "seq": 1, "clientMessageId": "cm-1", "kind": "message", "duplicate": false}),
    );
    // AND bob's `message.new` carries the kind and a state nobody changed yet
    let frame = recv_entry(&mut bob, &id, 1).await;
    assert_keys(&frame, MESSAGE_KEYS);
    assert_subset(
        &frame,
        &json!({
            "type": "message.new", "conversationId": id, "messageId": ack["messageId"],
            "seq": 1, "senderId": "alice", "clientMessageId": "cm-1", "content": text("hi"),
            "replyTo": null, "timestamp": ack["timestamp"], "kind": "message",
            "editedAt": null, "deleted": false, "reactions": [],
        }),
    );
    // AND history shows the same state
    let messages = history(&server, "bob", &id).await;
    assert_keys(&messages[0], MESSAGE_KEYS);
    assert_subset(
        &messages[0],
        &json!({"kind": "message", "editedAt": null, "deleted": false, "reactions": [], "content": text("hi")}),
    );
}
