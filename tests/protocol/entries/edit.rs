//! `edit`: who may, what it changes, its limits.

use super::*;

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_is_acked_at_the_next_seq_with_its_own_client_message_id() {
    // GIVEN alice's message at seq 1
    let mut d = direct_with(&["helo"]).await;
    let t0 = now_ms();

    // WHEN alice edits it
    let mut action = edit_action(&d.id, "edit-1", 1, "hello");
    action["requestId"] = json!("r-edit");
    let ack = expect_ack(&mut d.alice, action).await;

    // THEN the ack is the edit entry's: kind `edit`, the next seq, the edit's own id
    assert_keys(&ack, ACK_KEYS);
    assert_subset(
        &ack,
        &json!({
            "type": "message.ack", "requestId": "r-edit", "conversationId": d.id,
            "clientMessageId": "edit-1", "seq": 2, "kind": "edit", "duplicate": false,
        }),
    );
    assert!(ack["messageId"].is_string(), "{ack}");
    assert_recent_ms(&ack["timestamp"], t0);
    assert_eq!(last_seq(&d.server, "bob", &d.id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_reaches_other_connections_with_the_target_and_the_full_content() {
    // GIVEN alice on two devices and bob, and alice's message at seq 1
    let (server, id) = direct_pair().await;
    let mut phone = server.connect_device("alice", "phone").await;
    let mut laptop = server.connect_device("alice", "laptop").await;
    let mut bob = server.connect("bob").await;
    phone.send_message(&id, "cm-1", "helo wrld").await;
    recv_entry(&mut laptop, &id, 1).await;
    recv_entry(&mut bob, &id, 1).await;

    // WHEN alice's phone edits it
    let ack = expect_ack(&mut phone, edit_action(&id, "edit-1", 1, "hello world")).await;

    // THEN bob and alice's laptop get the edit entry with the complete new content
    for ws in [&mut bob, &mut laptop] {
        let frame = recv_entry(ws, &id, 2).await;
        assert_subset(
            &frame,
            &json!({
                "type": "message.new", "conversationId": id, "messageId": ack["messageId"],
                "seq": 2, "senderId": "alice", "clientMessageId": "edit-1",
                "timestamp": ack["timestamp"], "kind": "edit", "targetSeq": 1,
                "content": text("hello world"),
            }),
        );
    }
    // AND the phone that edited gets only its ack
    phone.expect_silence("message.new", SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_an_edited_message_with_its_latest_content_and_edited_at() {
    // GIVEN alice's message at seq 1
    let mut d = direct_with(&["first"]).await;
    let original = d.acks[0].clone();

    // WHEN alice edits it twice
    let second = expect_ack(&mut d.alice, edit_action(&d.id, "edit-1", 1, "second")).await;
    let third = expect_ack(&mut d.alice, edit_action(&d.id, "edit-2", 1, "third")).await;

    // THEN history returns the message in its current state: the latest content, and
    // `editedAt` the time of the latest edit, its own seq and timestamp unchanged
    let messages = history(&d.server, "bob", &d.id).await;
    assert_eq!(seqs(&messages), [1, 2, 3]);
    let target = entry_at(&messages, 1);
    assert_keys(target, MESSAGE_KEYS);
    assert_subset(
        target,
        &json!({
            "kind": "message", "seq": 1, "senderId": "alice", "clientMessageId": "cm-1",
            "messageId": original["messageId"], "timestamp": original["timestamp"],
            "content": text("third"), "editedAt": third["timestamp"], "deleted": false,
            "reactions": [],
        }),
    );
    assert!(target["editedAt"].is_i64(), "editedAt is Unix ms: {target}");
    // AND each edit entry is returned at its own seq with the content it set
    for (seq, ack, content) in [(2, &second, "second"), (3, &third, "third")] {
        assert_subset(
            entry_at(&messages, seq),
            &json!({
                "kind": "edit", "targetSeq": 1, "senderId": "alice",
                "clientMessageId": ack["clientMessageId"], "messageId": ack["messageId"],
                "timestamp": ack["timestamp"], "content": text(content),
            }),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sender_may_edit_a_message() {
    // GIVEN a group where alice is admin and bob sent seq 2 after alice's seq 1
    let (server, id, _) = group_with_message(&["bob", "carol"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    bob.send_message(&id, "bob-1", "bob's words").await;

    // WHEN bob edits alice's message, and alice (an admin) and carol edit bob's
    // THEN each is FORBIDDEN and nothing is appended
    expect_refused(
        &mut bob,
        edit_action(&id, "e-bob", 1, "mine now"),
        "FORBIDDEN",
    )
    .await;
    expect_refused(
        &mut alice,
        edit_action(&id, "e-alice", 2, "admin edit"),
        "FORBIDDEN",
    )
    .await;
    expect_refused(
        &mut carol,
        edit_action(&id, "e-carol", 2, "carol edit"),
        "FORBIDDEN",
    )
    .await;
    assert_eq!(last_seq(&server, "alice", &id).await, 2);
    let messages = history(&server, "carol", &id).await;
    assert_subset(
        entry_at(&messages, 1),
        &json!({"content": text("hello"), "editedAt": null}),
    );
    assert_subset(
        entry_at(&messages, 2),
        &json!({"content": text("bob's words"), "editedAt": null}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_with_another_content_type_than_the_target_is_invalid() {
    // GIVEN alice's text message
    let mut d = direct_with(&["plain"]).await;

    // WHEN alice edits it with attachment content, or with a type that does not exist
    for content in [
        json!({"type": "attachment", "text": "a caption"}),
        json!({"type": "image", "url": "https://example.com/a.png"}),
    ] {
        let mut action = edit_action(&d.id, "edit-1", 1, "x");
        action["content"] = content;
        // THEN it is INVALID_MESSAGE and the connection stays usable
        expect_refused(&mut d.alice, action, "INVALID_MESSAGE").await;
    }
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 1);
    // AND the same edit with text content is accepted (the type was what was wrong)
    let ack = expect_ack(&mut d.alice, edit_action(&d.id, "edit-1", 1, "x")).await;
    assert_eq!(ack["seq"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_text_is_validated_like_a_send() {
    // GIVEN alice's message
    let mut d = direct_with(&["short"]).await;

    // WHEN alice edits it with an empty text or 4001 characters
    // THEN each is INVALID_MESSAGE
    for bad in [String::new(), "x".repeat(4001), "😀".repeat(4001)] {
        expect_refused(
            &mut d.alice,
            edit_action(&d.id, "edit-bad", 1, &bad),
            "INVALID_MESSAGE",
        )
        .await;
    }
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 1);
    // AND 4000 characters are accepted
    let long = "😀".repeat(4000);
    let ack = expect_ack(&mut d.alice, edit_action(&d.id, "edit-ok", 1, &long)).await;
    assert_eq!(ack["seq"], 2);
    let frame = recv_entry(&mut d.bob, &d.id, 2).await;
    assert_eq!(frame["content"], text(&long));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_message_cannot_be_edited() {
    // GIVEN alice's message, deleted
    let mut d = direct_with(&["gone soon"]).await;
    expect_ack(&mut d.alice, delete_action(&d.id, "del-1", 1)).await;

    // WHEN alice edits it
    // THEN it is FORBIDDEN and nothing is appended
    expect_refused(
        &mut d.alice,
        edit_action(&d.id, "edit-1", 1, "back"),
        "FORBIDDEN",
    )
    .await;
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_51st_edit_of_a_message_is_a_conflict() {
    // GIVEN alice's messages at seq 1 and 2 (no one else connected)
    let server = start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let mut alice = server.connect("alice").await;
    alice.send_message(&id, "cm-1", "v0").await;

    // WHEN alice edits seq 1 fifty times, pipelined
    for n in 1..=50 {
        let mut action = edit_action(&id, &format!("edit-{n}"), 1, &format!("v{n}"));
        action["requestId"] = json!(format!("e-{n}"));
        alice.send_json(&action).await;
    }
    // THEN all fifty are acked
    for n in 1..=50 {
        let ack = alice.recv_response(&format!("e-{n}")).await;
        assert_subset(
            &ack,
            &json!({"type": "message.ack", "kind": "edit", "duplicate": false}),
        );
    }
    assert_eq!(last_seq(&server, "alice", &id).await, 51);
    // AND the 51st is CONFLICT and appends nothing
    expect_refused(
        &mut alice,
        edit_action(&id, "edit-51", 1, "v51"),
        "CONFLICT",
    )
    .await;
    assert_eq!(last_seq(&server, "alice", &id).await, 51);
    let messages = history(&server, "bob", &id).await;
    assert_eq!(entry_at(&messages, 1)["content"], text("v50"));
    // AND another message can still be edited
    let other = alice.send_message(&id, "cm-2", "other").await;
    let ack = expect_ack(
        &mut alice,
        edit_action(&id, "edit-other", 52, "other, edited"),
    )
    .await;
    assert_eq!(other["seq"], 52);
    assert_eq!(ack["seq"], 53);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_after_the_edit_window_is_forbidden() {
    // GIVEN a server with CHAT_EDIT_WINDOW_SECS=1 and alice's message
    let mut d = direct_on(server().env("CHAT_EDIT_WINDOW_SECS", "1"), &["typo"]).await;
    let sent_at = d.acks[0]["timestamp"].as_i64().expect("timestamp");

    // WHEN alice edits it at once, then again more than a second after it was sent
    let early = expect_ack(&mut d.alice, edit_action(&d.id, "edit-1", 1, "fixed")).await;
    d.server.wait_for_clock_past(sent_at + 1000).await;

    // THEN the first is acked and the late one is FORBIDDEN, appending nothing
    assert_eq!(early["seq"], 2);
    expect_refused(
        &mut d.alice,
        edit_action(&d.id, "edit-2", 1, "late"),
        "FORBIDDEN",
    )
    .await;
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_seq_that_is_not_a_message_entry_is_not_found() {
    // GIVEN alice's message (1), its edit (2), a reaction (3), and alice's message (4),
    // deleted (5)
    let mut d = direct_with(&["one"]).await;
    expect_ack(&mut d.alice, edit_action(&d.id, "e-1", 1, "one!")).await;
    expect_ack(&mut d.alice, react_action(&d.id, "r-1", 1, THUMBS_UP)).await;
    d.alice.send_message(&d.id, "cm-4", "four").await;
    expect_ack(&mut d.alice, delete_action(&d.id, "d-1", 4)).await;

    // WHEN alice edits, deletes or reacts to seq 0, to an edit, reaction or delete entry,
    // or beyond lastSeq
    // THEN each is NOT_FOUND and appends nothing
    for target in [0, 2, 3, 5, 6, 1000] {
        for action in [
            edit_action(&d.id, "bad-edit", target, "x"),
            delete_action(&d.id, "bad-delete", target),
            react_action(&d.id, "bad-react", target, THUMBS_UP),
        ] {
            expect_refused(&mut d.alice, action, "NOT_FOUND").await;
        }
    }
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_must_name_a_message_entry() {
    // GIVEN alice's message (1), its edit (2) and a reaction to it (3)
    let mut d = direct_with(&["question"]).await;
    expect_ack(&mut d.alice, edit_action(&d.id, "e-1", 1, "question?")).await;
    expect_ack(&mut d.alice, react_action(&d.id, "r-1", 1, THUMBS_UP)).await;

    // WHEN bob replies to the edit or the reaction
    // THEN it is INVALID_MESSAGE (like any other replyTo that names no message)
    for reply_to in [2, 3] {
        let mut action = send_action(&d.id, "reply", "answer");
        action["replyTo"] = json!(reply_to);
        expect_refused(&mut d.bob, action, "INVALID_MESSAGE").await;
    }
    let response = http_entry(
        &d.server,
        "bob",
        &d.id,
        json!({"clientMessageId": "reply-http", "content": text("answer"), "replyTo": 2}),
    )
    .await;
    assert_http_error(&response, 400, "INVALID_MESSAGE");
    // AND a reply to the message itself is accepted
    let mut action = send_action(&d.id, "reply", "answer");
    action["replyTo"] = json!(1);
    let ack = expect_ack(&mut d.bob, action).await;
    assert_eq!(ack["seq"], 4);
}
