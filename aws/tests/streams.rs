//! The fan-out over real stream records: messages are appended through the DynamoDB
//! adapter on DynamoDB Local, their INSERT records read back with the Streams API, and
//! the batch handed to the fan-out handler. Deliveries go to the Management API on moto
//! (tapped to see them), pushes to SNS on moto (read back from moto).

mod common;

use chat_aws::dynamodb::DynamoStore;
use chat_aws::lambda::handle_stream;
use chat_shared::ids::{ClientMessageId, DeviceId};
use chat_shared::ports::{ConversationKind, Platform};
use chat_shared::ports::{ConversationStore, DeviceStore, ReceiptStore};
use chat_shared::protocol::{AppendRequest, Content, Entry};
use chat_shared::service::CreateConversation;
use chat_tests::emulators::MotoServer;
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_inserts_become_deliveries_and_pushes_once() {
    // GIVEN a group: alice sends from connection alice-1, bob is online on bob-1, carol is
    // offline with an FCM phone, dave is offline and muted the group
    let dynamodb = dynamodb_client();
    let (chat, names, tap) = chat_with_fcm(dynamodb.clone(), "st", Delivery::StreamOnly).await;
    // The store the service runs on, read directly to check what it keeps.
    let store = DynamoStore::new(dynamodb.clone(), names.clone());
    let id = team(&chat, "alice", &["bob", "carol", "dave"]).await;
    chat.connect("alice-1", &user("alice"), None, i64::MAX)
        .await
        .unwrap();
    chat.connect("bob-1", &user("bob"), None, i64::MAX)
        .await
        .unwrap();
    let phone = |u: &str| (user(u), DeviceId::parse("phone").unwrap());
    let (carol, carol_phone) = phone("carol");
    let device = chat
        .register_device(
            &carol,
            carol_phone,
            Platform::Fcm,
            format!("carol-token-{}", std::process::id()),
        )
        .await
        .unwrap();
    let endpoint = device.endpoint.expect("SNS endpoint");
    let (dave, dave_phone) = phone("dave");
    chat.register_device(
        &dave,
        dave_phone,
        Platform::Fcm,
        format!("dave-token-{}", std::process::id()),
    )
    .await
    .unwrap();
    chat.set_muted(&dave, &id, chat_shared::service::Mute::Forever)
        .await
        .unwrap();

    // WHEN alice sends three messages and the stream's records are fanned out
    alice_sends(&chat, &id, "m", 1..=3, Some("alice-1")).await;
    let batch = read_stream(&dynamodb, &names.messages).await;
    assert_eq!(batch.records.len(), 3, "one INSERT per message");
    let response = handle_stream(&chat, batch.clone()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    // THEN bob got the three messages in order, the sending connection none
    let seqs = |frames: Vec<Value>| -> Vec<u64> {
        frames
            .iter()
            .filter(|f| f["type"] == "message.new")
            .map(|f| f["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(tap.frames_to("bob-1")), [1, 2, 3]);
    assert!(seqs(tap.frames_to("alice-1")).is_empty());
    // AND carol's phone got one push per message; dave (muted) none
    let moto = MotoServer::shared();
    assert_eq!(pushed_seqs(&endpoint).await, [1, 2, 3]);
    let dave_devices = store.devices_of(std::slice::from_ref(&dave)).await.unwrap();
    let dave_endpoint = dave_devices[0].endpoint.clone().unwrap();
    assert!(moto.publishes_to(&dave_endpoint).await.unwrap().is_empty());

    // WHEN the same batch is delivered again (a Lambda retry)
    let unread_before = store.total_unread(&carol).await.unwrap();
    let response = handle_stream(&chat, batch).await;
    assert!(response.batch_item_failures.is_empty());

    // THEN nothing observable is counted twice: no second push, unread and positions as
    // they were; bob sees the frames again, which clients drop by (conversation, seq)
    assert_eq!(moto.publishes_to(&endpoint).await.unwrap().len(), 3);
    assert_eq!(store.total_unread(&carol).await.unwrap(), unread_before);
    assert_eq!(unread_before, 3);
    let (_, bob_member) = store.membership(&id, &user("bob")).await.unwrap().unwrap();
    assert_eq!((bob_member.delivered_up_to, bob_member.read_up_to), (0, 0));
    assert_eq!(seqs(tap.frames_to("bob-1")), [1, 2, 3, 1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_out_of_order_are_each_fanned_out_and_pushed_once() {
    // DynamoDB Streams orders the records of one item, not those of different items:
    // the fan-out must not rely on seq 1 coming before seq 2.
    let dynamodb = dynamodb_client();
    let (chat, names, tap) = chat_with_fcm(dynamodb.clone(), "oo", Delivery::StreamOnly).await;
    let (direct, _) = chat
        .create_conversation(
            &user("alice"),
            CreateConversation {
                kind: ConversationKind::Direct,
                name: None,
                members: vec![user("bob")],
            },
        )
        .await
        .unwrap();
    let id = direct.conversation_id;
    chat.connect("bob-1", &user("bob"), None, i64::MAX)
        .await
        .unwrap();
    let endpoint = fcm_phone(&chat, "bob", "oo").await;
    alice_sends(&chat, &id, "oo", 1..=4, None).await;
    let mut batch = read_stream(&dynamodb, &names.messages).await;
    assert_eq!(batch.records.len(), 4);

    // WHEN the records come reversed, in two batches, the later ones first
    batch.records.reverse();
    let mut later = batch.clone();
    later.records.truncate(2); // seqs 4, 3
    batch.records.drain(..2); // seqs 2, 1
    for b in [later, batch] {
        let response = handle_stream(&chat, b).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert!(response.skipped.is_empty(), "{response:?}");
    }

    // THEN bob's connection got each message once (in the order they came: clients
    // order by seq and fill a gap after a second), and bob's phone was not pushed,
    // being online
    let mut seqs: Vec<u64> = tap
        .frames_to("bob-1")
        .iter()
        .filter(|f| f["type"] == "message.new")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 3, 2, 1]);
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(
        MotoServer::shared()
            .publishes_to(&endpoint)
            .await
            .unwrap()
            .is_empty()
    );

    // AND once bob is offline, two more messages, and every record delivered twice in
    // reverse (a retry): each message is pushed exactly once (1-4 too, their first
    // fan-out found bob online and pushed nothing)
    chat.disconnect("bob-1").await.unwrap();
    alice_sends(&chat, &id, "oo", 5..=6, None).await;
    let mut all = read_stream(&dynamodb, &names.messages).await;
    all.records.reverse(); // 6, 5, 4, 3, 2, 1
    for _ in 0..2 {
        let response = handle_stream(&chat, all.clone()).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let pushed = pushed_seqs(&endpoint).await;
    let mut once = pushed.clone();
    once.sort();
    once.dedup();
    assert_eq!(
        pushed.len(),
        once.len(),
        "a message pushed twice: {pushed:?}"
    );
    assert_eq!(once, [1, 2, 3, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_fan_out_with_their_kind_and_target_changes_do_not() {
    // GIVEN alice and bob (online on bob-1) and carol (offline with a phone)
    let dynamodb = dynamodb_client();
    let (chat, names, tap) = chat_with_fcm(dynamodb.clone(), "en", Delivery::StreamOnly).await;
    let id = team(&chat, "alice", &["bob", "carol"]).await;
    chat.connect("bob-1", &user("bob"), None, i64::MAX)
        .await
        .unwrap();
    let endpoint = fcm_phone(&chat, "carol", "en").await;
    // WHEN alice sends and edits a message, bob reacts to it, alice deletes it
    alice_sends(&chat, &id, "en", 1..=1, None).await;
    let append = |who: &'static str, cmid: &'static str, entry: Entry| {
        let (chat, id) = (&chat, id.clone());
        async move {
            let request = AppendRequest {
                conversation_id: id,
                client_message_id: ClientMessageId::parse(cmid).unwrap(),
                entry,
            };
            chat.append(&user(who), None, request).await.unwrap();
        }
    };
    let edit = Entry::Edit {
        target_seq: 1,
        content: Some(Content::text("edited")),
    };
    append("alice", "e", edit).await;
    let react = Entry::Reaction {
        target_seq: 1,
        emoji: "👍".into(),
        removed: false,
    };
    append("bob", "r", react).await;
    append("alice", "d", Entry::Delete { target_seq: 1 }).await;
    // THEN the stream holds one INSERT per entry, and the target's changes as MODIFYs
    let batch = read_stream(&dynamodb, &names.messages).await;
    let count = |name: &str| {
        batch
            .records
            .iter()
            .filter(|r| r.event_name.as_deref() == Some(name))
            .count()
    };
    assert_eq!(count("INSERT"), 4);
    assert!(count("MODIFY") >= 3, "{batch:?}");
    let response = handle_stream(&chat, batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(response.skipped.is_empty(), "{response:?}");
    // AND bob got each entry once, in order, with its kind; no MODIFY became a frame
    let frames: Vec<Value> = tap
        .frames_to("bob-1")
        .into_iter()
        .filter(|f| f["type"] == "message.new")
        .collect();
    let kinds: Vec<(u64, &str)> = frames
        .iter()
        .map(|f| (f["seq"].as_u64().unwrap(), f["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [(1, "message"), (2, "edit"), (3, "reaction"), (4, "delete")]
    );
    assert_eq!(frames[1]["targetSeq"], 1);
    assert_eq!(frames[2]["emoji"], "👍");
    assert_eq!(frames[3]["deletedBy"], "alice");
    // AND only the message was pushed to carol
    assert_eq!(pushed_seqs(&endpoint).await, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_entries_fan_out_to_the_members_and_are_never_pushed() {
    // GIVEN alice (admin), bob and dave (offline with a phone); carol online on carol-1
    let dynamodb = dynamodb_client();
    let (chat, names, tap) = chat_with_fcm(dynamodb.clone(), "sy", Delivery::StreamOnly).await;
    let id = team(&chat, "alice", &["bob", "dave"]).await;
    chat.connect("carol-1", &user("carol"), None, i64::MAX)
        .await
        .unwrap();
    let endpoint = fcm_phone(&chat, "dave", "sy").await;
    // WHEN alice adds carol, removes bob and leaves (dave, there from the start, is
    // promoted)
    chat.add_members(&user("alice"), &id, &[user("carol")])
        .await
        .unwrap();
    chat.remove_member(&user("alice"), &id, &user("bob"))
        .await
        .unwrap();
    chat.remove_member(&user("alice"), &id, &user("alice"))
        .await
        .unwrap();
    // THEN the stream holds one INSERT per entry, fanned out without failure
    let batch = read_stream(&dynamodb, &names.messages).await;
    let inserts = batch
        .records
        .iter()
        .filter(|r| r.event_name.as_deref() == Some("INSERT"))
        .count();
    assert_eq!(inserts, 4, "{batch:?}");
    let response = handle_stream(&chat, batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(response.skipped.is_empty(), "{response:?}");
    // AND carol, a member after every change, got each entry in order with its fields
    let frames: Vec<Value> = tap
        .frames_to("carol-1")
        .into_iter()
        .filter(|f| f["type"] == "message.new")
        .collect();
    let got: Vec<(u64, &str, &str, Value, Value)> = frames
        .iter()
        .map(|f| {
            assert_eq!(f["kind"], "system", "{f}");
            assert_eq!(f["senderId"], f["actorId"], "{f}");
            (
                f["seq"].as_u64().unwrap(),
                f["event"].as_str().unwrap(),
                f["userIds"][0].as_str().unwrap(),
                f["actorId"].clone(),
                f["role"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "member_added", "carol", "alice".into(), Value::Null),
            (2, "member_removed", "bob", "alice".into(), Value::Null),
            (3, "member_left", "alice", "alice".into(), Value::Null),
            (4, "role_changed", "dave", Value::Null, "admin".into()),
        ]
    );
    // AND dave, offline, was pushed none of them
    assert!(pushed_seqs(&endpoint).await.is_empty());
}
