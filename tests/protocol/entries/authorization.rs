//! Who may name a conversation's messages: members only.

use super::*;

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_edit_delete_or_react_and_learns_nothing() {
    // GIVEN alice's message to bob, and carol, who is not in their conversation
    let d = direct_with(&["private"]).await;
    let mut carol = d.server.connect("carol").await;
    let never = "c_0123456789abcdef0123456789abcdef";

    // WHEN carol edits, deletes or reacts to it, and does the same in a conversation
    // that never existed
    for (n, action) in [
        edit_action(&d.id, "c-1", 1, "x"),
        delete_action(&d.id, "c-2", 1),
        react_action(&d.id, "c-3", 1, THUMBS_UP),
    ]
    .into_iter()
    .enumerate()
    {
        let mut elsewhere = action.clone();
        elsewhere["conversationId"] = json!(never);
        // THEN each is NOT_FOUND, exactly as for the conversation that never existed
        let error = expect_refused(&mut carol, action, "NOT_FOUND").await;
        let unknown = expect_refused(&mut carol, elsewhere, "NOT_FOUND").await;
        assert_eq!(error["message"], unknown["message"], "action {n}");
    }
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_cannot_touch_even_their_own_messages() {
    // GIVEN bob's message in a group, then bob removed by alice
    let (server, id, _) = group_with_message(&["bob", "carol"]).await;
    let mut bob = server.connect("bob").await;
    let bob_ack = bob.send_message(&id, "bob-1", "mine").await;
    let bob_seq = bob_ack["seq"].as_i64().expect("seq");
    let (status, body) = server.http("alice").remove_member(&id, "bob").await;
    assert_eq!(status, 204, "{body}");
    bob.recv_type("conversation.removed").await;
    let before = last_seq(&server, "alice", &id).await;

    // WHEN bob edits, deletes or reacts to his message, over WebSocket and HTTP
    // THEN each is NOT_FOUND and nothing is appended
    for action in [
        edit_action(&id, "b-1", bob_seq, "x"),
        delete_action(&id, "b-2", bob_seq),
        react_action(&id, "b-3", 1, THUMBS_UP),
    ] {
        expect_refused(&mut bob, action, "NOT_FOUND").await;
    }
    let response = http_entry(
        &server,
        "bob",
        &id,
        json!({"kind": "delete", "clientMessageId": "b-4", "targetSeq": bob_seq}),
    )
    .await;
    assert_http_error(&response, 404, "NOT_FOUND");
    assert_eq!(last_seq(&server, "alice", &id).await, before);
    let messages = history(&server, "alice", &id).await;
    assert_subset(
        entry_at(&messages, bob_seq),
        &json!({"deleted": false, "content": text("mine")}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_seq_is_looked_up_only_in_the_named_conversation() {
    // GIVEN alice-bob with three messages, and alice-carol with one
    let d = direct_with(&["a", "b", "c"]).await;
    let with_carol = conv_id(&d.server.http("alice").create_direct("carol").await);
    d.server
        .http("alice")
        .send_message(&with_carol, "cm-1", "hi carol")
        .await;
    let mut carol = d.server.connect("carol").await;

    // WHEN carol names seq 3 of alice-bob in her own conversation, and seq 1 in
    // alice-bob's
    // THEN both are NOT_FOUND
    expect_refused(
        &mut carol,
        react_action(&with_carol, "c-1", 3, THUMBS_UP),
        "NOT_FOUND",
    )
    .await;
    expect_refused(
        &mut carol,
        react_action(&d.id, "c-2", 1, THUMBS_UP),
        "NOT_FOUND",
    )
    .await;
    expect_refused(&mut carol, delete_action(&d.id, "c-3", 3), "NOT_FOUND").await;
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 3);
    assert_eq!(last_seq(&d.server, "alice", &with_carol).await, 1);
}

// ---------------------------------------------------------------------------------------
