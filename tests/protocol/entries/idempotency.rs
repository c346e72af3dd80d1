//! Retries of entries: the original ack, whatever kind the retry names.

use super::*;

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_edit_gets_the_original_ack_as_a_duplicate() {
    // GIVEN alice's message and her edit of it
    let mut d = direct_with(&["draft"]).await;
    let original = expect_ack(&mut d.alice, edit_action(&d.id, "edit-1", 1, "final")).await;
    recv_entry(&mut d.bob, &d.id, 2).await;

    // WHEN alice retries the edit, the same and with other content
    let mut retry = edit_action(&d.id, "edit-1", 1, "final");
    retry["requestId"] = json!("retry-1");
    let same = expect_ack(&mut d.alice, retry).await;
    let changed = expect_ack(&mut d.alice, edit_action(&d.id, "edit-1", 1, "other")).await;

    // THEN both get the original ack with `duplicate: true`
    for ack in [&same, &changed] {
        assert_keys(ack, ACK_KEYS);
        assert_subset(
            ack,
            &json!({
                "type": "message.ack", "conversationId": d.id, "clientMessageId": "edit-1",
                "messageId": original["messageId"], "seq": 2,
                "timestamp": original["timestamp"], "kind": "edit", "duplicate": true,
            }),
        );
    }
    assert_eq!(same["requestId"], "retry-1");
    // AND nothing is appended or fanned out, and the content is the original edit's
    d.bob.expect_silence("message.new", SHORT).await;
    let messages = history(&d.server, "bob", &d.id).await;
    assert_eq!(seqs(&messages), [1, 2]);
    assert_eq!(entry_at(&messages, 1)["content"], text("final"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_acked_with_the_original_entry_whatever_kind_it_names() {
    // GIVEN alice's message `cm-1` (1), her reaction `r-1` (2) and edit `e-1` (3)
    let mut d = direct_with(&["hello"]).await;
    let reacted = expect_ack(&mut d.alice, react_action(&d.id, "r-1", 1, THUMBS_UP)).await;
    let edited = expect_ack(&mut d.alice, edit_action(&d.id, "e-1", 1, "hello!")).await;

    // WHEN alice retries `r-1` as an edit, `e-1` as a reaction, and `cm-1` as a delete
    let as_edit = expect_ack(&mut d.alice, edit_action(&d.id, "r-1", 1, "changed")).await;
    let as_react = expect_ack(&mut d.alice, react_action(&d.id, "e-1", 1, HEART)).await;
    let as_delete = expect_ack(&mut d.alice, delete_action(&d.id, "cm-1", 1)).await;

    // THEN each is acked with the original entry, its kind included
    for (ack, original, kind) in [
        (&as_edit, &reacted, "reaction"),
        (&as_react, &edited, "edit"),
        (&as_delete, &d.acks[0], "message"),
    ] {
        assert_subset(
            ack,
            &json!({
                "clientMessageId": original["clientMessageId"], "messageId": original["messageId"],
                "seq": original["seq"], "timestamp": original["timestamp"], "kind": kind,
                "duplicate": true,
            }),
        );
    }
    // AND nothing changed: no entry, no edit, no delete, no new reaction
    let messages = history(&d.server, "bob", &d.id).await;
    assert_eq!(seqs(&messages), [1, 2, 3]);
    assert_subset(
        entry_at(&messages, 1),
        &json!({"deleted": false, "content": text("hello!")}),
    );
    assert_eq!(
        reactions(entry_at(&messages, 1)),
        [reaction(THUMBS_UP, 1, &["alice"], false)]
    );

    // AND a delete retried as a send is acked as the delete
    let delete = expect_ack(&mut d.alice, delete_action(&d.id, "d-1", 1)).await;
    let as_send = d.alice.send_message(&d.id, "d-1", "not a message").await;
    assert_subset(
        &as_send,
        &json!({"seq": delete["seq"], "messageId": delete["messageId"], "kind": "delete", "duplicate": true}),
    );
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_target_was_deleted_still_gets_the_original_ack() {
    // GIVEN alice's edit and bob's reaction of alice's message, then the message deleted
    let mut d = direct_with(&["soon gone"]).await;
    let edit = expect_ack(&mut d.alice, edit_action(&d.id, "e-1", 1, "edited")).await;
    let react = expect_ack(&mut d.bob, react_action(&d.id, "r-1", 1, THUMBS_UP)).await;
    expect_ack(&mut d.alice, delete_action(&d.id, "d-1", 1)).await;

    // WHEN each retries (as a client does when an ack was lost)
    let edit_again = expect_ack(&mut d.alice, edit_action(&d.id, "e-1", 1, "edited")).await;
    let react_again = expect_ack(&mut d.bob, react_action(&d.id, "r-1", 1, THUMBS_UP)).await;

    // THEN they get the original acks, not FORBIDDEN
    assert_subset(
        &edit_again,
        &json!({"seq": edit["seq"], "messageId": edit["messageId"], "kind": "edit", "duplicate": true}),
    );
    assert_subset(
        &react_again,
        &json!({"seq": react["seq"], "messageId": react["messageId"], "kind": "reaction", "duplicate": true}),
    );
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 4);
}
