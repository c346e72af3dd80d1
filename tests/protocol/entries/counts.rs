//! What entries other than messages leave alone: unread counts, positions, pushes, order.

use super::*;

// ---------------------------------------------------------------------------------------

/// bob's `unreadCount` in `GET /v1/conversations/{id}`, in sync and in his list.
async fn bobs_unread(server: &TestServer, id: &str) -> [Value; 3] {
    let conversation = server.http("bob").conversation(id).await;
    let synced = sync_one(server, "bob", id, 0).await;
    let listed = listed(server, "bob", id).await;
    [
        conversation["unreadCount"].clone(),
        synced["unreadCount"].clone(),
        listed["unreadCount"].clone(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reactions_and_deletes_do_not_count_as_unread() {
    // GIVEN alice's messages 1 and 2, read by bob
    let mut d = direct_with(&["one", "two"]).await;
    d.bob.receipt("read", &d.id, 2).await;

    // WHEN alice edits 1, reacts to 2 and deletes 1
    expect_ack(&mut d.alice, edit_action(&d.id, "e-1", 1, "one!")).await;
    expect_ack(&mut d.alice, react_action(&d.id, "r-1", 2, THUMBS_UP)).await;
    expect_ack(&mut d.alice, delete_action(&d.id, "d-1", 1)).await;

    // THEN bob has nothing unread, wherever he looks, though lastSeq moved on
    assert_eq!(
        bobs_unread(&d.server, &d.id).await,
        [json!(0), json!(0), json!(0)]
    );
    let conversation = d.server.http("bob").conversation(&d.id).await;
    assert_subset(&conversation, &json!({"lastSeq": 5}));
    assert_subset(member(&conversation, "bob"), &json!({"readUpTo": 2}));
    // AND a new message counts
    d.alice.send_message(&d.id, "cm-3", "three").await;
    assert_eq!(
        bobs_unread(&d.server, &d.id).await,
        [json!(1), json!(1), json!(1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_message_still_counts_as_unread() {
    // GIVEN alice's messages 1 and 2, unread by bob
    let mut d = direct_with(&["one", "two"]).await;

    // WHEN alice deletes 1
    expect_ack(&mut d.alice, delete_action(&d.id, "d-1", 1)).await;

    // THEN bob still has two unread ("message deleted" is shown)
    assert_eq!(
        bobs_unread(&d.server, &d.id).await,
        [json!(2), json!(2), json!(2)]
    );
    // AND reading up to the delete entry clears them
    d.bob.receipt("read", &d.id, 3).await;
    assert_eq!(
        bobs_unread(&d.server, &d.id).await,
        [json!(0), json!(0), json!(0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_message_entries_move_their_senders_own_positions() {
    // GIVEN alice's messages 1 and 2 (her positions at 2)
    let mut d = direct_with(&["one", "two"]).await;

    // WHEN bob reacts to 1 (3) and alice edits 1 (4)
    expect_ack(&mut d.bob, react_action(&d.id, "r-1", 1, THUMBS_UP)).await;
    expect_ack(&mut d.alice, edit_action(&d.id, "e-1", 1, "one!")).await;

    // THEN neither moved their own positions, and neither has the other's entry unread
    let conversation = d.server.http("alice").conversation(&d.id).await;
    assert_subset(
        member(&conversation, "alice"),
        &json!({"deliveredUpTo": 2, "readUpTo": 2}),
    );
    assert_subset(
        member(&conversation, "bob"),
        &json!({"deliveredUpTo": 0, "readUpTo": 0}),
    );
    assert_eq!(conversation["unreadCount"], 0, "for alice: {conversation}");
    assert_eq!(
        d.server.http("bob").conversation(&d.id).await["unreadCount"],
        2
    );
    // AND bob's message moves his positions as before
    let ack = d.bob.send_message(&d.id, "bob-1", "hi").await;
    assert_eq!(ack["seq"], 5);
    let conversation = d.server.http("bob").conversation(&d.id).await;
    assert_subset(
        member(&conversation, "bob"),
        &json!({"deliveredUpTo": 5, "readUpTo": 5}),
    );
    assert_eq!(conversation["unreadCount"], 0);
    assert_eq!(
        d.server.http("alice").conversation(&d.id).await["unreadCount"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_reactions_are_never_pushed_and_the_badge_counts_messages() {
    // GIVEN bob offline with a phone, and alice's message pushed to it with badge 1
    let (server, id) = direct_pair().await;
    server
        .http("bob")
        .register_device("phone-1", "apns", "tok-bob")
        .await;
    let mut alice = server.connect("alice").await;
    alice.send_message(&id, "cm-1", "one").await;
    server
        .wait_for_pushes("bob's first push", |p| pushes_for(p, "bob").len() == 1)
        .await;

    // WHEN alice edits and reacts to it, then sends another message
    expect_ack(&mut alice, edit_action(&id, "e-1", 1, "one!")).await;
    expect_ack(&mut alice, react_action(&id, "r-1", 1, THUMBS_UP)).await;
    let second = alice.send_message(&id, "cm-2", "two").await;
    let pushes = server
        .wait_for_pushes("a push for seq 4", |p| {
            pushes_for(p, "bob").iter().any(|p| p["data"]["seq"] == 4)
        })
        .await;

    // THEN bob got one push per message only, the second with badge 2 (two messages
    // unread, though lastSeq - readUpTo is 4)
    let for_bob = pushes_for(&pushes, "bob");
    assert_eq!(for_bob.len(), 2, "{pushes:#?}");
    assert_subset(for_bob[0], &json!({"body": "one", "badge": 1}));
    assert_eq!(for_bob[0]["data"]["seq"], 1);
    assert_subset(for_bob[1], &json!({"body": "two", "badge": 2}));
    assert_subset(
        &for_bob[1]["data"],
        &json!({"conversationId": id, "seq": 4, "messageId": second["messageId"]}),
    );
    assert!(pushes_for(&pushes, "alice").is_empty(), "{pushes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pushed_message_replaces_its_notification_on_the_devices_that_got_it() {
    // GIVEN bob offline; alice's message pushed to bob's phone; then bob adds a tablet
    let (server, id) = direct_pair().await;
    let bob = server.http("bob");
    bob.register_device("phone-1", "apns", "tok-phone").await;
    let mut alice = server.connect("alice").await;
    let first = alice
        .send_message(&id, "cm-1", "meant for someone else")
        .await;
    server
        .wait_for_pushes("bob's first push", |p| pushes_for(p, "bob").len() == 1)
        .await;
    bob.register_device("tablet-1", "fcm", "tok-tablet").await;

    // WHEN alice deletes the message, then sends another
    expect_ack(&mut alice, delete_action(&id, "d-1", 1)).await;
    alice.send_message(&id, "cm-3", "sorry").await;
    let pushes = server
        .wait_for_pushes("the replacement and the next message's pushes", |p| {
            let for_bob = pushes_for(p, "bob");
            for_bob.iter().filter(|p| p["data"]["seq"] == 3).count() == 2
                && for_bob.iter().any(|p| p["body"] == "Message deleted")
        })
        .await;

    // THEN the phone, which showed the message, gets one push with its messageId and the
    // body `Message deleted`; the tablet, which never showed it, gets none
    let deleted: Vec<&Value> = pushes_for(&pushes, "bob")
        .into_iter()
        .filter(|p| p["body"] == "Message deleted")
        .collect();
    assert_eq!(deleted.len(), 1, "{pushes:#?}");
    assert_eq!(deleted[0]["deviceId"], "phone-1");
    assert_subset(
        &deleted[0]["data"],
        &json!({"conversationId": id, "messageId": first["messageId"]}),
    );
    // AND nothing else: the original, the replacement, and the next message on both
    assert_eq!(pushes_for(&pushes, "bob").len(), 4, "{pushes:#?}");
    // AND the outbox's copy of the original push lost its text with the message
    // (deleting erases, PROTOCOL.md 8.2)
    let originals: Vec<&Value> = pushes
        .iter()
        .filter(|p| p["data"]["messageId"] == first["messageId"] && p["body"] != "Message deleted")
        .collect();
    assert_eq!(originals.len(), 1, "the text is pushed once: {pushes:#?}");
    assert_eq!(originals[0]["body"], "", "{pushes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_message_that_was_never_pushed_pushes_nothing() {
    // GIVEN bob with a phone, online when alice's message came, then gone offline
    let (server, id) = direct_pair().await;
    server
        .http("bob")
        .register_device("phone-1", "apns", "tok-bob")
        .await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    alice.send_message(&id, "cm-1", "seen live").await;
    recv_entry(&mut bob, &id, 1).await;
    bob.close().await;
    alice
        .recv_where("bob offline", |f| is_presence_status(f, "bob", "offline"))
        .await;

    // WHEN alice deletes it, then sends another message
    expect_ack(&mut alice, delete_action(&id, "d-1", 1)).await;
    alice.send_message(&id, "cm-3", "next").await;
    let pushes = server
        .wait_for_pushes("the push of seq 3", |p| {
            pushes_for(p, "bob").iter().any(|p| p["data"]["seq"] == 3)
        })
        .await;

    // THEN bob's only push is the new message's
    let for_bob = pushes_for(&pushes, "bob");
    assert_eq!(for_bob.len(), 1, "{pushes:#?}");
    assert_subset(for_bob[0], &json!({"body": "next", "badge": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reactions_and_deletes_do_not_move_last_message_at() {
    // GIVEN alice's message to bob, then (later) her message to carol
    let server = start().await;
    let alice_http = server.http("alice");
    let to_bob = conv_id(&alice_http.create_direct("bob").await);
    let to_carol = conv_id(&alice_http.create_direct("carol").await);
    let mut alice = server.connect("alice").await;
    let first = alice.send_message(&to_bob, "cm-1", "to bob").await;
    server
        .wait_for_clock_past(first["timestamp"].as_i64().expect("ts"))
        .await;
    let second = alice.send_message(&to_carol, "cm-1", "to carol").await;
    server
        .wait_for_clock_past(second["timestamp"].as_i64().expect("ts"))
        .await;

    // WHEN alice then edits, reacts to and deletes her message to bob
    expect_ack(&mut alice, edit_action(&to_bob, "e-1", 1, "to bob!")).await;
    expect_ack(&mut alice, react_action(&to_bob, "r-1", 1, THUMBS_UP)).await;
    expect_ack(&mut alice, delete_action(&to_bob, "d-1", 1)).await;

    // THEN the conversation with bob keeps its lastMessageAt and stays second
    let (status, list) = alice_http.get("/v1/conversations").await;
    assert_eq!(status, 200, "{list}");
    let order: Vec<String> = list["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(conv_id)
        .collect();
    assert_eq!(order, [to_carol.clone(), to_bob.clone()]);
    assert_eq!(
        list["conversations"][1]["lastMessageAt"],
        first["timestamp"]
    );
    assert_eq!(
        alice_http.conversation(&to_bob).await["lastMessageAt"],
        first["timestamp"]
    );
}

// ---------------------------------------------------------------------------------------
