//! What each operation costs on DynamoDB, counted: every request the adapter makes goes
//! through an SDK interceptor that counts it by operation and asks DynamoDB (Local) for
//! the capacity it consumed. The exact counts are asserted so a change that adds a
//! request per message shows up here; `docs/COST.md` turns them into dollars.
//!
//! Run `cargo test -p chat-aws --test cost -- --nocapture` to see the table. The figures
//! are also written to `<target>/bench/cost-counts.json`, which `chat-bench cost` turns
//! into dollars per million messages (BENCHMARKS.md).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use chat_aws::dynamodb::DynamoStore;
use chat_shared::Chat;
use chat_shared::config::Limits;
use chat_shared::ids::{ClientMessageId, DeviceId, UserId};
use chat_shared::ports::{ConversationKind, Platform};
use chat_shared::ports::{MessageQuery, MessageStore};
use chat_shared::protocol::{AppendRequest, AttachmentInfo, Content, Entry, Media};
use chat_shared::service::{
    AttachmentPorts, CreateConversation, HistoryQuery, NewAttachment, Ports,
};
use common::*;
use serde_json::Value;

/// Requests by operation and consumed capacity, since the last `take`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Usage {
    requests: BTreeMap<String, u32>,
    read_units: f64,
    write_units: f64,
}

impl Usage {
    fn total(&self) -> u32 {
        self.requests.values().sum()
    }

    fn to_json(&self) -> Value {
        serde_json::json!({
            "requests": self.total(),
            "by_operation": self.requests,
            "read_units": self.read_units,
            "write_units": self.write_units,
        })
    }

    fn line(&self, what: &str) -> String {
        let ops: Vec<String> = self
            .requests
            .iter()
            .map(|(op, n)| format!("{op} x{n}"))
            .collect();
        format!(
            "| {what} | {} | {} | {:.1} | {:.1} |",
            self.total(),
            ops.join(", "),
            self.read_units,
            self.write_units
        )
    }
}

/// The actions of a `TransactWriteItems` request, from its body to its response, and
/// how many of them write a member item (each also writes the `byUser` index, which
/// projects every attribute).
#[derive(Debug, Clone, Copy)]
struct TransactionItems {
    actions: usize,
    index_writes: usize,
}

/// Whether a transaction's action writes a member item (`m#...` in the main table).
fn writes_member(action: &Value) -> bool {
    ["Put", "Update", "Delete"].iter().any(|kind| {
        let a = &action[*kind];
        let sk = a["Key"]["sk"]["S"]
            .as_str()
            .or(a["Item"]["sk"]["S"].as_str());
        sk.is_some_and(|sk| sk.starts_with("m#"))
    })
}

impl Storable for TransactionItems {
    type Storer = StoreReplace<Self>;
}

#[derive(Debug, Default, Clone)]
struct Meter(Arc<Mutex<Usage>>);

impl Meter {
    fn take(&self) -> Usage {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The name of the SDK operation a request is (`GetItem`, `HeadObject`, ...).
fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>()
        .map_or("?".to_owned(), |m| m.name().to_owned())
}

fn is_read(op: &str) -> bool {
    matches!(
        op,
        "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems"
    )
}

fn capacity_units(body: &Value) -> f64 {
    let one = |c: &Value| c["CapacityUnits"].as_f64().unwrap_or(0.0);
    match &body["ConsumedCapacity"] {
        Value::Array(list) => list.iter().map(one).sum(),
        c @ Value::Object(_) => one(c),
        _ => 0.0,
    }
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "DynamoDbMeter"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let Some(bytes) = request.body().bytes() else {
            return Ok(());
        };
        let mut input: Value = serde_json::from_slice(bytes)?;
        if let Some(items) = input["TransactItems"].as_array() {
            cfg.interceptor_state().store_put(TransactionItems {
                actions: items.len(),
                index_writes: items.iter().filter(|a| writes_member(a)).count(),
            });
        }
        input["ReturnConsumedCapacity"] = "TOTAL".into();
        let body = serde_json::to_vec(&input)?;
        request
            .headers_mut()
            .insert("content-length", body.len().to_string());
        *request.body_mut() = SdkBody::from(body);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = operation(cfg);
        let units = context
            .response()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .map_or(0.0, |v| capacity_units(&v));
        // DynamoDB Local under-reports transactions (a 6-item one came back as 4 units):
        // they are priced as AWS does, 2 units per item of up to 1 KB (the items here
        // are), ConditionCheck included, plus 1 per write of the `byUser` index (a
        // member item changed: its index copy is rewritten). Other requests' figures,
        // index writes included, are DynamoDB Local's.
        let units = match cfg.load::<TransactionItems>() {
            Some(t) if op == "TransactWriteItems" => 2.0 * t.actions as f64 + t.index_writes as f64,
            _ => units,
        };
        let mut usage = self.0.lock().unwrap();
        if is_read(&op) {
            usage.read_units += units;
        } else {
            usage.write_units += units;
        }
        *usage.requests.entry(op).or_default() += 1;
        Ok(())
    }
}

/// S3 requests by operation, since the last `take` (S3 bills requests, not units).
#[derive(Debug, Default, Clone)]
struct S3Meter(Arc<Mutex<BTreeMap<String, u32>>>);

impl S3Meter {
    fn take(&self) -> BTreeMap<String, u32> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for S3Meter {
    fn name(&self) -> &'static str {
        "S3Meter"
    }

    fn read_after_deserialization(
        &self,
        _: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.lock().unwrap().entry(operation(cfg)).or_default() += 1;
        Ok(())
    }
}

fn entry(
    conversation: &chat_shared::ids::ConversationId,
    cmid: &str,
    entry: Entry,
) -> AppendRequest {
    AppendRequest {
        conversation_id: conversation.clone(),
        client_message_id: ClientMessageId::parse(cmid).unwrap(),
        entry,
    }
}

/// The entry `sender` stored with `cmid` (read without being measured: take the meter
/// after it).
async fn stored(
    store: &DynamoStore,
    conversation: &chat_shared::ids::ConversationId,
    sender: &UserId,
    cmid: &str,
) -> chat_shared::ports::MessageRecord {
    store
        .find_by_client_id(conversation, sender, cmid)
        .await
        .unwrap()
        .expect("the entry is stored")
}

fn text(conversation: &chat_shared::ids::ConversationId, cmid: &str) -> AppendRequest {
    AppendRequest::text(
        conversation.clone(),
        ClientMessageId::parse(cmid).unwrap(),
        "a message of an ordinary length, about sixty characters long",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_operation() {
    let meter = Meter::default();
    let dynamodb =
        aws_sdk_dynamodb::Client::from_conf(dynamodb_config().interceptor(meter.clone()).build());
    let (chat, names, tap) = chat_with_fcm(dynamodb.clone(), "cost", Delivery::Direct).await;
    // The store the service runs on, to read the messages it stored (not measured).
    let store = DynamoStore::new(dynamodb, names);
    let (alice, bob) = (user("alice"), user("bob"));
    let (direct, _) = chat
        .create_conversation(
            &alice,
            CreateConversation {
                kind: ConversationKind::Direct,
                name: None,
                members: vec![bob.clone()],
            },
        )
        .await
        .unwrap();
    let direct = direct.conversation_id;
    let members: Vec<UserId> = (0..99).map(|i| user(&format!("member-{i}"))).collect();
    let (group, _) = chat
        .create_conversation(
            &alice,
            CreateConversation {
                kind: ConversationKind::Group,
                name: Some("Hundred".into()),
                members: members.clone(),
            },
        )
        .await
        .unwrap();
    let group = group.conversation_id;
    for (i, m) in members.iter().enumerate() {
        chat.connect(&format!("m-{i}"), m, None, i64::MAX)
            .await
            .unwrap();
    }
    let bob_phone = DeviceId::parse("phone").unwrap();
    chat.register_device(
        &bob,
        bob_phone,
        Platform::Fcm,
        format!("bob-{}", std::process::id()),
    )
    .await
    .unwrap();
    meter.take();

    let mut table = vec![
        "| operation | requests | by operation | read units | write units |".to_owned(),
        "|---|---|---|---|---|".to_owned(),
    ];
    let mut measure = |what: &str| {
        let usage = meter.take();
        table.push(usage.line(what));
        usage
    };

    chat.connect("alice-1", &alice, None, i64::MAX)
        .await
        .unwrap();
    let connect = measure("connect (first connection; 1 direct + 1 group of 100)");

    // The token of an HTTP request: its user's revocation is read once, then trusted for
    // 5 s by this process (a handshake reads it every time).
    let token = chat_shared::auth::TokenVerifier::new("aws-tests", None, None).issue(
        &alice,
        chat.now(),
        3600,
    );
    chat.authenticate(Some(&token)).await.unwrap();
    let token_check =
        measure("token check of an HTTP request (a handshake: every time), first in 5 s");
    chat.authenticate(Some(&token)).await.unwrap();
    let token_check_again = measure("token check of an HTTP request again within 5 s");

    chat.touch("alice-1", &alice).await.unwrap();
    let touch = measure("any client frame (liveness)");

    // Bob offline: the send finds nobody to post to and marks bob as owed the push,
    // which the fan-out sends from the mark.
    chat.append(&alice, Some("alice-1"), text(&direct, "d1"))
        .await
        .unwrap();
    let send_offline = measure("send 1:1, recipient offline");
    let message = stored(&store, &direct, &alice, "d1").await;
    meter.take();
    chat.fan_out(&message).await.unwrap();
    let fan_out_offline = measure("fan-out 1:1, recipient offline with 1 phone (push)");

    // Bob online: the send posts to him (direct delivery); the fan-out reads the mark.
    chat.connect("bob-1", &bob, None, i64::MAX).await.unwrap();
    meter.take();
    let frames_before = tap.posted.lock().unwrap().len();
    chat.append(&alice, Some("alice-1"), text(&direct, "d2"))
        .await
        .unwrap();
    let send = measure("send (1:1, recipient online; or group)");
    let message = stored(&store, &direct, &alice, "d2").await;
    meter.take();
    chat.fan_out(&message).await.unwrap();
    let fan_out_online = measure("fan-out 1:1, recipient online");
    // API Gateway messages of a 1:1 message: the send frame in, the ack (the route
    // response) and one `message.new` to bob, posted by the send path and not again by
    // the fan-out.
    let posted: Vec<String> = tap.posted.lock().unwrap()[frames_before..]
        .iter()
        .map(|(connection, _)| connection.clone())
        .collect();
    assert_eq!(posted, vec!["bob-1".to_owned()], "one frame per message");

    // The stream path, the backstop (and the path of conversations over the direct
    // limit): a message the send path did not post (sent by a service without direct
    // delivery), fanned out, which marks it posted.
    let no_mark = Chat::new(
        Ports {
            store: Arc::new(store.clone()),
            gateway: tap.clone(),
            push: Arc::new(chat_aws::sns::SnsPush::new(
                sns_client(),
                Default::default(),
            )),
            clock: Arc::new(chat_shared::ports::SystemClock),
            attachments: None,
            direct: None,
        },
        Limits::default(),
        chat_shared::auth::TokenVerifier::new("aws-tests", None, None),
    );
    let dave = user("dave");
    let (slow, _) = no_mark
        .create_conversation(
            &alice,
            CreateConversation {
                kind: ConversationKind::Direct,
                name: None,
                members: vec![dave.clone()],
            },
        )
        .await
        .unwrap();
    let slow = slow.conversation_id;
    no_mark
        .connect("dave-1", &dave, None, i64::MAX)
        .await
        .unwrap();
    no_mark
        .append(&alice, Some("alice-1"), text(&slow, "s1"))
        .await
        .unwrap();
    let message = stored(&store, &slow, &alice, "s1").await;
    meter.take();
    chat.fan_out(&message).await.unwrap();
    let fan_out_stream =
        measure("fan-out 1:1 by the stream (not posted directly), recipient online");

    chat.append(&alice, Some("alice-1"), text(&group, "g1"))
        .await
        .unwrap();
    let group_message = stored(&store, &group, &alice, "g1").await;
    meter.take();
    chat.fan_out(&group_message).await.unwrap();
    let fan_out_group = measure("fan-out group of 100, all online");

    // Entries in the group of 100: a message, then a reaction, an edit and a delete of
    // the message above, each with its fan-out where it differs from a message's.
    chat.append(&alice, Some("alice-1"), text(&group, "g2"))
        .await
        .unwrap();
    let group_send = measure("send in the group of 100");
    let target = group_message.seq;
    let reactor = &members[0];
    chat.append(
        reactor,
        Some("m-0"),
        entry(
            &group,
            "g-react",
            Entry::Reaction {
                target_seq: target,
                emoji: "👍".into(),
                removed: false,
            },
        ),
    )
    .await
    .unwrap();
    let reaction = measure("reaction in the group of 100");
    let reaction_entry = stored(&store, &group, reactor, "g-react").await;
    meter.take();
    chat.fan_out(&reaction_entry).await.unwrap();
    let fan_out_reaction = measure("fan-out of a reaction, group of 100, all online");
    chat.append(
        &alice,
        Some("alice-1"),
        entry(
            &group,
            "g-edit",
            Entry::Edit {
                target_seq: target,
                content: Some(Content::text("an edited message of an ordinary length")),
            },
        ),
    )
    .await
    .unwrap();
    let edit = measure("edit in the group of 100");
    let history = HistoryQuery {
        before: None,
        after: None,
        limit: 50,
    };
    chat.history(reactor, &group, history).await.unwrap();
    let history_page = measure("history page (50) holding a message with reactions");
    chat.append(
        &alice,
        Some("alice-1"),
        entry(&group, "g-delete", Entry::Delete { target_seq: target }),
    )
    .await
    .unwrap();
    let delete = measure("delete in the group of 100 (of a message with 1 edit, 1 reaction)");

    // Membership changes in the group of 100: each appends its system entry with it.
    let newcomer = user("newcomer");
    chat.add_members(&alice, &group, std::slice::from_ref(&newcomer))
        .await
        .unwrap();
    let add_member = measure("add 1 member to the group of 100 (member_added entry)");
    // The fan-out has seen every entry before the one measured, as the stream's has:
    // the mark stands right behind it.
    let newest = MessageQuery {
        after: None,
        before: None,
        limit: 1,
        newest: true,
        min_timestamp: i64::MIN,
    };
    let (added_entry, _) = store.messages(&group, &alice, newest).await.unwrap();
    chat.fan_out(&added_entry[0]).await.unwrap();
    meter.take();
    chat.remove_member(&alice, &group, &newcomer).await.unwrap();
    let remove_member = measure("remove 1 member of the group of 101 (member_removed entry)");
    let (removed_entry, _) = store.messages(&group, &alice, newest).await.unwrap();
    meter.take();
    chat.fan_out(&removed_entry[0]).await.unwrap();
    let fan_out_system = measure("fan-out of a system entry, group of 100, all online");

    // Read up to the newest message (d2): its message count is on the counter.
    chat.receipts(&bob, Some("bob-1"), &direct, None, Some(2))
        .await
        .unwrap();
    let receipt = measure("read receipt (1:1)");

    chat.typing(&bob, Some("bob-1"), &direct, true)
        .await
        .unwrap();
    let typing = measure("typing (1:1)");

    // Past the presence window of bob's connect: the offline is announced at once, as
    // it is for anyone not flapping (a change inside the window costs one write and is
    // settled by a second claim later).
    tokio::time::sleep(std::time::Duration::from_millis(
        chat_shared::domain::PRESENCE_WINDOW_MS as u64,
    ))
    .await;
    chat.disconnect("bob-1").await.unwrap();
    let disconnect = measure("disconnect (last connection)");

    // An attachment in the 1:1 conversation: created (with its upload URL), uploaded by
    // the client, sent, and a download URL for bob; S3 on moto, counted beside.
    let s3_meter = S3Meter::default();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(credentials())
            .endpoint_url(chat_tests::emulators::MotoServer::shared().endpoint())
            .force_path_style(true)
            .interceptor(s3_meter.clone())
            .build(),
    );
    let bucket = format!("cost-{}", std::process::id());
    let _ = s3.create_bucket().bucket(&bucket).send().await;
    let with_attachments = Chat::new(
        Ports {
            store: Arc::new(store.clone()),
            gateway: tap.clone(),
            push: Arc::new(chat_aws::sns::SnsPush::new(
                sns_client(),
                Default::default(),
            )),
            clock: Arc::new(chat_shared::ports::SystemClock),
            attachments: Some(AttachmentPorts {
                store: Arc::new(store.clone()),
                blobs: Arc::new(chat_aws::s3::S3Blobs::new(s3, &bucket)),
            }),
            direct: Some(Arc::new(store.clone())),
        },
        Limits::default(),
        chat_shared::auth::TokenVerifier::new("aws-tests", None, None),
    );
    let photo = vec![7u8; 200 * 1024];
    meter.take();
    s3_meter.take();
    let created = with_attachments
        .create_attachment(
            &alice,
            NewAttachment {
                conversation_id: direct.clone(),
                mime_type: "image/jpeg".into(),
                size: photo.len() as u64,
                file_name: None,
            },
        )
        .await
        .unwrap();
    let create_attachment = measure("create an attachment (its upload URL)");
    let create_s3 = s3_meter.take();
    let mut put = reqwest::Client::new()
        .put(&created.upload.url)
        .body(photo.clone());
    for (name, value) in &created.upload.headers {
        put = put.header(name, value.as_str().unwrap());
    }
    assert_eq!(put.send().await.unwrap().status().as_u16(), 200);
    let content = Content {
        kind: "attachment".into(),
        text: String::new(),
        media: Some(Box::new(Media {
            attachment: AttachmentInfo {
                attachment_id: created.attachment_id.clone(),
                mime_type: String::new(),
                size: 0,
                file_name: None,
            },
            width: Some(1024),
            height: Some(768),
            duration_ms: None,
            preview: None,
            thumbnail_id: None,
        })),
    };
    with_attachments
        .append(
            &alice,
            Some("alice-1"),
            entry(
                &direct,
                "d-photo",
                Entry::Message {
                    content: Some(content),
                    reply_to: None,
                },
            ),
        )
        .await
        .unwrap();
    let attachment_send = measure("send of an attachment (1:1)");
    let send_s3 = s3_meter.take();
    with_attachments
        .download_url(&bob, &created.attachment_id)
        .await
        .unwrap();
    let download_url = measure("download URL of a sent attachment");
    let download_s3 = s3_meter.take();
    for (what, s3) in [
        ("create an attachment", &create_s3),
        ("send of an attachment", &send_s3),
        ("download URL", &download_s3),
    ] {
        table.push(format!("| S3 requests of: {what} | {s3:?} | | | |"));
    }

    println!("\n{}\n", table.join("\n"));

    // The request counts this design is built to: O(1) per send, O(members / 100) reads
    // per fan-out.
    // A send: its own 4 requests, then direct delivery's members, their connections
    // and the mark (3). Its fan-out then reads the mark with the conversation and, with
    // every recipient reached, nothing else; one that finds no mark reads what the
    // send would have (members, connections) and writes the mark.
    assert_eq!(token_check.total(), 1, "{token_check:?}");
    assert_eq!(
        token_check.read_units, 1.0,
        "a consistent read: {token_check:?}"
    );
    assert_eq!(token_check_again.total(), 0, "{token_check_again:?}");
    assert_eq!(send.total(), 7, "{send:?}");
    assert_eq!(send_offline.total(), 7, "{send_offline:?}");
    assert_eq!(fan_out_online.total(), 1, "{fan_out_online:?}");
    assert_eq!(fan_out_stream.total(), 4, "{fan_out_stream:?}");
    assert_eq!(fan_out_stream.write_units, 1.0, "{fan_out_stream:?}");
    // Offline: the devices of the members the mark names, the push ledger (read, then
    // written), the badge (memberships, their conversations).
    assert_eq!(fan_out_offline.total(), 6, "{fan_out_offline:?}");
    assert_eq!(fan_out_group.total(), 1, "{fan_out_group:?}");
    assert_eq!(group_send.total(), 7, "{group_send:?}");
    assert_eq!(reaction.total(), 8, "{reaction:?}");
    assert_eq!(fan_out_reaction.total(), 1, "{fan_out_reaction:?}");
    assert_eq!(edit.total(), 8, "{edit:?}");
    assert_eq!(delete.total(), 10, "{delete:?}");
    assert_eq!(history_page.total(), 3, "{history_page:?}");
    // A reaction's fan-out costs what a message's does (and never pushes); its append
    // one request more (it reads its target), and 4 WRU more for its two reaction items
    // (docs/COST.md, "reaction").
    assert_eq!(reaction.total(), group_send.total() + 1);
    assert_eq!(fan_out_reaction.total(), fan_out_group.total());
    // A message's positions are a member item: its index copy is written too.
    assert_eq!(send.write_units, 11.0, "{send:?}");
    // A membership change is one transaction of 3 items (counter, entry, member) after
    // one read of what it changes; the rest are the service's reads for its
    // announcements (each conversation rendered reads its `lastMessage`: one Query). A
    // system entry's fan-out costs what a message's does, never pushing.
    assert_eq!(add_member.total(), 12, "{add_member:?}");
    assert_eq!(remove_member.total(), 11, "{remove_member:?}");
    for change in [&add_member, &remove_member] {
        assert_eq!(change.requests["TransactWriteItems"], 1, "{change:?}");
        // 2 units for each of the 3 items, 1 for the member item's copy in `byUser`.
        assert_eq!(change.write_units, 7.0, "{change:?}");
    }
    // System entries are appended outside the send path: the stream posts them (the
    // members, their connections) and marks them.
    assert_eq!(fan_out_system.total(), 4, "{fan_out_system:?}");
    assert_eq!(receipt.total(), 4, "{receipt:?}");
    assert_eq!(typing.total(), 4, "{typing:?}");
    assert_eq!(touch.total(), 1, "{touch:?}");
    assert_eq!(connect.total(), 10, "{connect:?}");
    assert_eq!(disconnect.total(), 9, "{disconnect:?}");
    assert!(!send.requests.contains_key("Scan"));
    // An attachment: created with one write after the membership read and the rate count;
    // its send is a message's 4 requests plus the attachment's read, its claim in the
    // transaction (one more item: 2 WRU), and on S3 a HeadObject and a tag; presigning
    // makes no request.
    assert_eq!(create_attachment.total(), 3, "{create_attachment:?}");
    assert!(create_s3.is_empty(), "{create_s3:?}");
    assert_eq!(
        attachment_send.total(),
        send.total() + 1,
        "{attachment_send:?}"
    );
    assert_eq!(
        attachment_send.write_units,
        send.write_units + 2.0,
        "{attachment_send:?}"
    );
    assert_eq!(
        send_s3,
        BTreeMap::from([
            ("HeadObject".to_owned(), 1),
            ("PutObjectTagging".to_owned(), 1)
        ])
    );
    assert_eq!(download_url.total(), 2, "{download_url:?}");
    assert!(download_s3.is_empty(), "{download_s3:?}");

    // Only figures that passed the checks above reach the cost model.
    write_counts(&[
        ("connect", &connect),
        ("touch", &touch),
        ("send", &send),
        ("send_offline", &send_offline),
        ("fan_out_stream", &fan_out_stream),
        ("create_attachment", &create_attachment),
        ("send_attachment", &attachment_send),
        ("download_url", &download_url),
        ("fan_out_online", &fan_out_online),
        ("fan_out_offline_push", &fan_out_offline),
        ("fan_out_group_100", &fan_out_group),
        ("send_group_100", &group_send),
        ("reaction_group_100", &reaction),
        ("fan_out_reaction_group_100", &fan_out_reaction),
        ("edit_group_100", &edit),
        ("delete_group_100", &delete),
        ("history_page_with_reactions", &history_page),
        ("add_member_group_100", &add_member),
        ("fan_out_system_group_100", &fan_out_system),
        ("remove_member_group_100", &remove_member),
        ("receipt", &receipt),
        ("typing", &typing),
        ("disconnect", &disconnect),
    ]);
}

/// The target directory: `$CARGO_TARGET_DIR`, else three levels above this test binary
/// (`<target>/<profile>/deps/cost-...`).
fn target_dir() -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => dir.into(),
        _ => {
            let exe = std::env::current_exe().expect("the test binary's path");
            exe.ancestors()
                .nth(3)
                .expect("<target>/<profile>/deps")
                .into()
        }
    }
}

/// Writes the measured usage per operation to `<target>/bench/cost-counts.json` for
/// `chat-bench cost`.
fn write_counts(usages: &[(&str, &Usage)]) {
    let operations: serde_json::Map<String, Value> = usages
        .iter()
        .map(|(name, usage)| ((*name).to_owned(), usage.to_json()))
        .collect();
    let counts = serde_json::json!({
        "source": "aws/tests/cost.rs against DynamoDB Local",
        "group_members": 100,
        "operations": operations,
    });
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).expect("create <target>/bench");
    let path = dir.join("cost-counts.json");
    std::fs::write(&path, serde_json::to_string_pretty(&counts).unwrap()).expect("write counts");
    println!("wrote {}", path.display());
}
