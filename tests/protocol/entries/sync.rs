//! Sync returns the entries and their targets' current state.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_returns_the_entries_and_the_current_state_of_their_targets() {
    // GIVEN bob holds alice's messages 1 and 2, then misses alice's message 3, her edit
    // of it (4), her reaction to 2 (5), and her delete of 1 (6)
    let mut d = direct_with(&["one", "two"]).await;
    d.alice.send_message(&d.id, "cm-3", "three").await;
    let edit = expect_ack(&mut d.alice, edit_action(&d.id, "e-1", 3, "three!")).await;
    expect_ack(&mut d.alice, react_action(&d.id, "r-1", 2, THUMBS_UP)).await;
    expect_ack(&mut d.alice, delete_action(&d.id, "d-1", 1)).await;

    // WHEN bob syncs from seq 2
    let synced = sync_one(&d.server, "bob", &d.id, 2).await;

    // THEN he gets every entry after 2 in seq order
    let messages = synced["messages"].as_array().expect("messages").clone();
    assert_eq!(seqs(&messages), [3, 4, 5, 6]);
    assert_subset(
        &synced,
        &json!({"lastSeq": 6, "unreadCount": 3, "hasMore": false}),
    );
    // AND message 3 in its current state
    assert_subset(
        entry_at(&messages, 3),
        &json!({"kind": "message", "content": text("three!"), "editedAt": edit["timestamp"], "deleted": false, "reactions": []}),
    );
    // AND the entries he applies to what he holds
    assert_subset(
        entry_at(&messages, 4),
        &json!({"kind": "edit", "targetSeq": 3, "content": text("three!")}),
    );
    assert_subset(
        entry_at(&messages, 5),
        &json!({"kind": "reaction", "targetSeq": 2, "emoji": THUMBS_UP, "removed": false, "senderId": "alice"}),
    );
    assert_subset(
        entry_at(&messages, 6),
        &json!({"kind": "delete", "targetSeq": 1, "deletedBy": "alice"}),
    );
    // AND a sync from 0 shows 1 deleted and 2 with alice's reaction, as bob sees it
    let everything = sync_one(&d.server, "bob", &d.id, 0).await;
    let messages = everything["messages"].as_array().expect("messages").clone();
    assert_eq!(seqs(&messages), [1, 2, 3, 4, 5, 6]);
    assert_subset(
        entry_at(&messages, 1),
        &json!({"deleted": true, "deletedBy": "alice", "content": null, "reactions": []}),
    );
    assert_eq!(
        reactions(entry_at(&messages, 2)),
        [reaction(THUMBS_UP, 1, &["alice"], false)]
    );
}
