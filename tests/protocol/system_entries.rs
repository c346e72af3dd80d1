//! Protocol 1.1, section 8.4 (third bullet) with 8.1: the `system` entries the server
//! appends when members are added, removed or leave, and the automatic `role_changed`
//! when the last admin leaves; what they do to positions, unread counts, pushes and the
//! conversation list.

use crate::support::*;

/// Asserts `entry` (a `message.new` or a message object) is the `system` entry `event`
/// at `seq`, about `users` (in any order), done by `actor` (`None`: the server).
fn assert_system(entry: &Value, seq: i64, event: &str, users: &[&str], actor: Option<&str>) {
    assert_subset(
        entry,
        &json!({"kind": "system", "seq": seq, "event": event, "actorId": actor, "senderId": actor}),
    );
    let mut ids: Vec<&str> = entry["userIds"]
        .as_array()
        .unwrap_or_else(|| panic!("userIds is not an array: {entry}"))
        .iter()
        .map(|u| u.as_str().expect("a user id"))
        .collect();
    ids.sort_unstable();
    let mut expected = users.to_vec();
    expected.sort_unstable();
    assert_eq!(ids, expected, "userIds of {entry}");
}

/// The message objects of a conversation as `user` reads them in history.
async fn history(server: &TestServer, user: &str, id: &str) -> Vec<Value> {
    all_messages(&server.http(user), id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_conversation_appends_no_entry() {
    // GIVEN bob connected
    let server = start().await;
    let mut bob = server.connect("bob").await;

    // WHEN alice creates a group with him and a direct conversation with him
    let group = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let direct = conv_id(&server.http("alice").create_direct("bob").await);

    // THEN both are empty logs, and bob got only the conversations
    for id in [&group, &direct] {
        let conversation = server.http("bob").conversation(id).await;
        assert_subset(&conversation, &json!({"lastSeq": 0, "unreadCount": 0}));
        assert!(history(&server, "bob", id).await.is_empty());
        bob.recv_where("conversation.new", |f| {
            f["type"] == "conversation.new" && f["conversation"]["conversationId"] == id.as_str()
        })
        .await;
    }
    bob.expect_silence("message.new", SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_members_appends_one_member_added_entry_that_everyone_receives() {
    // GIVEN a group of alice (admin) and bob, with carol connected
    let server = start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    let t0 = now_ms();

    // WHEN alice adds carol and dave in one call
    let (status, body) = server
        .http("alice")
        .add_members(&id, &["carol", "dave"])
        .await;
    assert_eq!(status, 200, "{body}");

    // THEN one `member_added` entry names both, done by alice; the existing members,
    // alice included, and carol, who was added, receive it
    for ws in [&mut alice, &mut bob, &mut carol] {
        let frame = recv_entry(ws, &id, 1).await;
        assert_eq!(frame["type"], "message.new");
        assert_system(&frame, 1, "member_added", &["carol", "dave"], Some("alice"));
        assert_recent_ms(&frame["timestamp"], t0);
        ws.expect_silence("message.new", Duration::ZERO).await;
    }
    carol.recv_type("conversation.new").await;
    // AND it is in the log, for dave too, at seq 1
    let messages = history(&server, "dave", &id).await;
    assert_eq!(seqs(&messages), [1]);
    assert_system(
        &messages[0],
        1,
        "member_added",
        &["carol", "dave"],
        Some("alice"),
    );
    assert!(messages[0].get("type").is_none(), "{}", messages[0]);
    assert_eq!(last_seq(&server, "bob", &id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_member_already_there_appends_nothing() {
    // GIVEN the group alice, bob, carol, with bob connected
    let (server, id) = team().await;
    let mut bob = server.connect("bob").await;

    // WHEN alice adds bob again
    let (status, body) = server
        .http("alice")
        .add_members(&id, &["bob", "carol"])
        .await;

    // THEN it answers 200 and nothing is appended or sent
    assert_eq!(status, 200, "{body}");
    assert_eq!(last_seq(&server, "alice", &id).await, 0);
    bob.expect_silence("message.new", SHORT).await;

    // AND adding bob with dave names only dave
    let (status, body) = server
        .http("alice")
        .add_members(&id, &["bob", "dave"])
        .await;
    assert_eq!(status, 200, "{body}");
    let frame = recv_entry(&mut bob, &id, 1).await;
    assert_system(&frame, 1, "member_added", &["dave"], Some("alice"));
    assert_eq!(last_seq(&server, "alice", &id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_members_positions_start_at_their_member_added_entry() {
    // GIVEN a group of alice and bob with two messages
    let server = start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let mut alice = server.connect("alice").await;
    alice.send_message(&id, "cm-1", "one").await;
    alice.send_message(&id, "cm-2", "two").await;

    // WHEN alice adds carol (the entry is seq 3)
    let (status, conversation) = server.http("alice").add_members(&id, &["carol"]).await;
    assert_eq!(status, 200, "{conversation}");

    // THEN carol's positions are at 3, she has nothing unread, and reads the whole log
    assert_subset(
        member(&conversation, "carol"),
        &json!({"deliveredUpTo": 3, "readUpTo": 3}),
    );
    let for_carol = server.http("carol").conversation(&id).await;
    assert_subset(&for_carol, &json!({"lastSeq": 3, "unreadCount": 0}));
    assert_subset(
        member(&for_carol, "carol"),
        &json!({"deliveredUpTo": 3, "readUpTo": 3}),
    );
    let messages = history(&server, "carol", &id).await;
    assert_eq!(seqs(&messages), [1, 2, 3]);
    assert_system(&messages[2], 3, "member_added", &["carol"], Some("alice"));
    // AND the next message is unread for her
    alice.send_message(&id, "cm-3", "welcome").await;
    assert_eq!(
        server.http("carol").conversation(&id).await["unreadCount"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_member_appends_member_removed_and_the_removed_user_stops_reading() {
    // GIVEN the group alice, bob, carol with alice's message, bob and carol connected
    let (server, id) = team().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    alice.send_message(&id, "cm-1", "hi").await;
    recv_entry(&mut carol, &id, 1).await;

    // WHEN alice removes carol, then sends another message
    let (status, body) = server.http("alice").remove_member(&id, "carol").await;
    assert_eq!(status, 204, "{body}");
    alice.send_message(&id, "cm-2", "without carol").await;

    // THEN the remaining members receive `member_removed` about carol, done by alice
    for ws in [&mut alice, &mut bob] {
        let frame = recv_entry(ws, &id, 2).await;
        assert_system(&frame, 2, "member_removed", &["carol"], Some("alice"));
    }
    recv_entry(&mut bob, &id, 3).await;
    // AND carol gets `conversation.removed` and no entry from then on
    carol.recv_type("conversation.removed").await;
    carol
        .expect_none("a later entry", SHORT, |f| {
            f["type"] == "message.new" && f["seq"].as_i64() >= Some(2)
        })
        .await;
    // AND no longer reads the log
    assert_http_error(
        &server
            .http("carol")
            .get(&format!("/v1/conversations/{id}/messages"))
            .await,
        404,
        "NOT_FOUND",
    );
    let (status, synced) = server
        .http("carol")
        .post(
            "/v1/sync",
            &json!({"conversations": [{"conversationId": id, "afterSeq": 1}]}),
        )
        .await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["removedConversationIds"], json!([id]));
    assert_eq!(synced["conversations"], json!([]));
    // AND the others read the entry in history
    let messages = history(&server, "bob", &id).await;
    assert_eq!(seqs(&messages), [1, 2, 3]);
    assert_system(&messages[1], 2, "member_removed", &["carol"], Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_appends_member_left_done_by_the_leaver() {
    // GIVEN the group alice, bob, carol, everyone connected
    let (server, id) = team().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;

    // WHEN bob leaves
    let (status, body) = server.http("bob").remove_member(&id, "bob").await;
    assert_eq!(status, 204, "{body}");

    // THEN alice and carol receive `member_left` about bob, done by bob
    for ws in [&mut alice, &mut carol] {
        let frame = recv_entry(ws, &id, 1).await;
        assert_system(&frame, 1, "member_left", &["bob"], Some("bob"));
    }
    // AND bob gets only `conversation.removed`
    bob.recv_type("conversation.removed").await;
    bob.expect_silence("message.new", SHORT).await;
    let messages = history(&server, "carol", &id).await;
    assert_system(&messages[0], 1, "member_left", &["bob"], Some("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_leaving_appends_member_left_then_an_automatic_role_changed() {
    // GIVEN alice's group where carol joined (1) before bob (2)
    let server = start().await;
    let alice = server.http("alice");
    let id = conv_id(&alice.create_group("Team", &[]).await);
    alice.add_members(&id, &["carol"]).await;
    server.tick().await;
    alice.add_members(&id, &["bob"]).await;
    let mut bob = server.connect("bob").await;

    // WHEN alice, the only admin, leaves
    let (status, body) = alice.remove_member(&id, "alice").await;
    assert_eq!(status, 204, "{body}");

    // THEN bob receives `member_left` (3), then carol's promotion by the server (4)
    let left = recv_entry(&mut bob, &id, 3).await;
    assert_system(&left, 3, "member_left", &["alice"], Some("alice"));
    let promoted = recv_entry(&mut bob, &id, 4).await;
    assert_system(&promoted, 4, "role_changed", &["carol"], None);
    assert_eq!(promoted["role"], "admin", "{promoted}");
    // AND the log holds them in that order
    let messages = history(&server, "carol", &id).await;
    assert_eq!(seqs(&messages), [1, 2, 3, 4]);
    assert_system(&messages[0], 1, "member_added", &["carol"], Some("alice"));
    assert_system(&messages[1], 2, "member_added", &["bob"], Some("alice"));
    assert_system(&messages[3], 4, "role_changed", &["carol"], None);
    assert_eq!(messages[3]["role"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_entries_do_not_count_as_unread() {
    // GIVEN the group alice, bob, carol with alice's message, read by bob
    let (server, id) = team().await;
    let mut bob = server.connect("bob").await;
    server.http("alice").send_message(&id, "cm-1", "hi").await;
    bob.receipt("read", &id, 1).await;

    // WHEN alice adds dave (2), removes carol (3), and dave leaves (4)
    server.http("alice").add_members(&id, &["dave"]).await;
    server.http("alice").remove_member(&id, "carol").await;
    server.http("dave").remove_member(&id, "dave").await;

    // THEN bob has nothing unread wherever he looks, though lastSeq is 4
    let conversation = server.http("bob").conversation(&id).await;
    assert_subset(&conversation, &json!({"lastSeq": 4, "unreadCount": 0}));
    let synced = sync_one(&server, "bob", &id, 1).await;
    assert_subset(
        &synced,
        &json!({"lastSeq": 4, "unreadCount": 0, "readUpTo": 1}),
    );
    assert_eq!(listed(&server, "bob", &id).await["unreadCount"], 0);
    // AND the next message counts as one
    server
        .http("alice")
        .send_message(&id, "cm-2", "again")
        .await;
    assert_eq!(server.http("bob").conversation(&id).await["unreadCount"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_entries_are_not_pushed() {
    // GIVEN bob offline with a phone in alice's group
    let server = start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    server
        .http("bob")
        .register_device("phone-1", "apns", "tok-bob")
        .await;

    // WHEN alice adds carol (1), removes her (2), then sends a message (3)
    server.http("alice").add_members(&id, &["carol"]).await;
    server.http("alice").remove_member(&id, "carol").await;
    server
        .http("alice")
        .send_message(&id, "cm-1", "hi bob")
        .await;

    // THEN bob's only push is the message's, with a badge of 1
    let pushes = server
        .wait_for_pushes("the push of seq 3", |p| {
            pushes_for(p, "bob").iter().any(|p| p["data"]["seq"] == 3)
        })
        .await;
    let for_bob = pushes_for(&pushes, "bob");
    assert_eq!(for_bob.len(), 1, "{pushes:#?}");
    assert_subset(for_bob[0], &json!({"body": "hi bob", "badge": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_entry_is_not_a_target() {
    // GIVEN alice's message (1) and the entry adding dave (2)
    let (server, id) = team().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send_message(&id, "cm-1", "hi").await;
    server.http("alice").add_members(&id, &["dave"]).await;

    // WHEN alice (admin) edits or deletes it, or bob reacts to it
    // THEN each is NOT_FOUND
    expect_refused(&mut alice, edit_action(&id, "e-1", 2, "x"), "NOT_FOUND").await;
    expect_refused(&mut alice, delete_action(&id, "d-1", 2), "NOT_FOUND").await;
    expect_refused(&mut bob, react_action(&id, "r-1", 2, "👍"), "NOT_FOUND").await;
    // AND a reply to it is INVALID_MESSAGE
    let mut reply = send_action(&id, "reply", "welcome dave");
    reply["replyTo"] = json!(2);
    expect_refused(&mut bob, reply, "INVALID_MESSAGE").await;
    assert_eq!(last_seq(&server, "alice", &id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_returns_system_entries_in_seq_order() {
    // GIVEN bob holds nothing of the group; then alice's message (1), dave added (2),
    // carol leaving (3) and alice's message (4)
    let (server, id) = team().await;
    server.http("alice").send_message(&id, "cm-1", "one").await;
    server.http("alice").add_members(&id, &["dave"]).await;
    server.http("carol").remove_member(&id, "carol").await;
    server.http("alice").send_message(&id, "cm-2", "two").await;

    // WHEN bob syncs from 0
    let synced = sync_one(&server, "bob", &id, 0).await;

    // THEN he gets every entry, the membership changes included, and 2 unread
    let messages = synced["messages"].as_array().expect("messages").clone();
    assert_eq!(seqs(&messages), [1, 2, 3, 4]);
    assert_eq!(messages[0]["kind"], "message");
    assert_system(&messages[1], 2, "member_added", &["dave"], Some("alice"));
    assert_system(&messages[2], 3, "member_left", &["carol"], Some("carol"));
    assert_eq!(messages[3]["kind"], "message");
    assert_subset(&synced, &json!({"lastSeq": 4, "unreadCount": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_orders_a_group_by_when_the_caller_joined_it() {
    // GIVEN alice's group with a message; later carol's direct message to bob
    let server = start().await;
    let group = conv_id(&server.http("alice").create_group("Team", &[]).await);
    let (_, first) = server
        .http("alice")
        .send_message(&group, "cm-1", "old news")
        .await;
    server
        .wait_for_clock_past(first["timestamp"].as_i64().expect("ts"))
        .await;
    let direct = conv_id(&server.http("carol").create_direct("bob").await);
    let (_, second) = server
        .http("carol")
        .send_message(&direct, "cm-1", "hi bob")
        .await;
    server
        .wait_for_clock_past(second["timestamp"].as_i64().expect("ts"))
        .await;

    // WHEN alice then adds bob to the group
    let (status, body) = server.http("alice").add_members(&group, &["bob"]).await;
    assert_eq!(status, 200, "{body}");

    // THEN bob's list puts the group first (he joined after carol's message), while its
    // lastMessageAt is still alice's message's (the entry adding him is no message)
    let (status, list) = server.http("bob").get("/v1/conversations").await;
    assert_eq!(status, 200, "{list}");
    let order: Vec<String> = list["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(conv_id)
        .collect();
    assert_eq!(order, [group.clone(), direct.clone()]);
    assert_eq!(
        list["conversations"][0]["lastMessageAt"],
        first["timestamp"]
    );
}
