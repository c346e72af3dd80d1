//! `delete`: who may, and the tombstone it leaves.

use super::*;

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_deletes_a_message_and_members_get_the_delete_entry() {
    // GIVEN alice's message
    let mut d = direct_with(&["oops"]).await;

    // WHEN alice deletes it
    let ack = expect_ack(&mut d.alice, delete_action(&d.id, "del-1", 1)).await;

    // THEN the ack is the delete entry's
    assert_keys(&ack, ACK_KEYS);
    assert_subset(
        &ack,
        &json!({"type": "message.ack", "clientMessageId": "del-1", "seq": 2, "kind": "delete", "duplicate": false}),
    );
    // AND bob gets the delete entry naming the target and who deleted it
    let frame = recv_entry(&mut d.bob, &d.id, 2).await;
    assert_subset(
        &frame,
        &json!({
            "type": "message.new", "conversationId": d.id, "seq": 2, "senderId": "alice",
            "clientMessageId": "del-1", "messageId": ack["messageId"],
            "timestamp": ack["timestamp"], "kind": "delete", "targetSeq": 1,
            "deletedBy": "alice",
        }),
    );
    d.alice.expect_silence("message.new", SHORT).await;
    let messages = history(&d.server, "bob", &d.id).await;
    assert_subset(
        entry_at(&messages, 1),
        &json!({"deleted": true, "deletedBy": "alice"}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_admin_deletes_another_members_message() {
    // GIVEN a group where alice is admin and bob sent seq 2
    let (server, id, _) = group_with_message(&["bob", "carol"]).await;
    let mut alice = server.connect("alice").await;
    let mut carol = server.connect("carol").await;
    let (status, bob_ack) = server.http("bob").send_message(&id, "bob-1", "spam").await;
    assert_eq!(status, 201, "{bob_ack}");

    // WHEN alice deletes bob's message
    let ack = expect_ack(&mut alice, delete_action(&id, "mod-1", 2)).await;

    // THEN it is acked, carol gets the entry, and the message shows bob as its sender
    // and alice as who deleted it
    assert_subset(&ack, &json!({"seq": 3, "kind": "delete"}));
    let frame = recv_entry(&mut carol, &id, 3).await;
    assert_subset(
        &frame,
        &json!({"kind": "delete", "targetSeq": 2, "senderId": "alice", "deletedBy": "alice"}),
    );
    let messages = history(&server, "carol", &id).await;
    assert_subset(
        entry_at(&messages, 2),
        &json!({"senderId": "bob", "deleted": true, "deletedBy": "alice", "content": null}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_member_cannot_delete_someone_elses_message() {
    // GIVEN a group where alice (admin) sent seq 1 and bob seq 2, and a direct
    // conversation alice-bob with alice's message
    let (server, id, _) = group_with_message(&["bob", "carol"]).await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    bob.send_message(&id, "bob-1", "bob's").await;
    let direct = conv_id(&server.http("alice").create_direct("bob").await);
    server
        .http("alice")
        .send_message(&direct, "cm-1", "mine")
        .await;

    // WHEN carol deletes bob's or alice's message, bob deletes alice's in the group, and
    // bob deletes alice's in the direct conversation (no admins there)
    // THEN each is FORBIDDEN and nothing is appended
    expect_refused(&mut carol, delete_action(&id, "c-1", 2), "FORBIDDEN").await;
    expect_refused(&mut carol, delete_action(&id, "c-2", 1), "FORBIDDEN").await;
    expect_refused(&mut bob, delete_action(&id, "b-1", 1), "FORBIDDEN").await;
    expect_refused(&mut bob, delete_action(&direct, "b-2", 1), "FORBIDDEN").await;
    assert_eq!(last_seq(&server, "alice", &id).await, 2);
    assert_eq!(last_seq(&server, "alice", &direct).await, 1);
    let messages = history(&server, "carol", &id).await;
    assert_eq!(entry_at(&messages, 1)["deleted"], false);
    assert_eq!(entry_at(&messages, 2)["deleted"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_message_keeps_its_place_and_loses_its_content() {
    // GIVEN alice's message (1); bob's reply to it (2), which bob edits (3) and alice
    // reacts to (4)
    let mut d = direct_with(&["question"]).await;
    let mut reply = send_action(&d.id, "bob-1", "answer");
    reply["replyTo"] = json!(1);
    let reply_ack = expect_ack(&mut d.bob, reply).await;
    expect_ack(
        &mut d.bob,
        edit_action(&d.id, "bob-edit", 2, "better answer"),
    )
    .await;
    expect_ack(&mut d.alice, react_action(&d.id, "alice-r", 2, THUMBS_UP)).await;

    // WHEN bob deletes his reply
    let deleted = expect_ack(&mut d.bob, delete_action(&d.id, "bob-del", 2)).await;
    assert_eq!(deleted["seq"], 5);

    // THEN, for both of them, history keeps the message at its seq with who sent it,
    // when, and what it replied to, and nothing of its content, edit or reactions
    for user in ["alice", "bob"] {
        let messages = history(&d.server, user, &d.id).await;
        assert_eq!(seqs(&messages), [1, 2, 3, 4, 5], "{user}");
        let target = entry_at(&messages, 2);
        assert_subset(
            target,
            &json!({
                "seq": 2, "kind": "message", "senderId": "bob", "messageId": reply_ack["messageId"],
                "timestamp": reply_ack["timestamp"], "replyTo": 1, "deleted": true,
                "deletedBy": "bob", "content": null, "editedAt": null, "reactions": [],
            }),
        );
        // AND its edit entry comes back with `content: null`
        assert_subset(
            entry_at(&messages, 3),
            &json!({"kind": "edit", "targetSeq": 2, "content": null}),
        );
        // AND the reaction and delete entries stay at their seqs
        assert_subset(
            entry_at(&messages, 4),
            &json!({"kind": "reaction", "targetSeq": 2, "emoji": THUMBS_UP, "removed": false}),
        );
        assert_subset(
            entry_at(&messages, 5),
            &json!({"kind": "delete", "targetSeq": 2, "deletedBy": "bob"}),
        );
        // AND the message it replied to is untouched
        assert_subset(
            entry_at(&messages, 1),
            &json!({"deleted": false, "content": text("question")}),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_twice_is_acked_twice_and_appends_two_entries() {
    // GIVEN alice's message, deleted once
    let mut d = direct_with(&["twice"]).await;
    let first = expect_ack(&mut d.alice, delete_action(&d.id, "del-1", 1)).await;

    // WHEN alice deletes it again (a new clientMessageId: not a retry)
    let second = expect_ack(&mut d.alice, delete_action(&d.id, "del-2", 1)).await;

    // THEN both are acked normally, each with its own entry
    assert_subset(
        &first,
        &json!({"seq": 2, "kind": "delete", "duplicate": false}),
    );
    assert_subset(
        &second,
        &json!({"seq": 3, "kind": "delete", "duplicate": false}),
    );
    assert_subset(
        &recv_entry(&mut d.bob, &d.id, 3).await,
        &json!({"kind": "delete", "targetSeq": 1}),
    );
    let messages = history(&d.server, "bob", &d.id).await;
    assert_eq!(seqs(&messages), [1, 2, 3]);
    assert_eq!(entry_at(&messages, 1)["deleted"], true);
}
