//! Stale state heals itself on AWS: a connection whose socket is gone is forgotten when a
//! post to it gets 410, a device whose SNS endpoint is disabled is forgotten when a push
//! to it fails, connection items carry the expiry DynamoDB's TTL deletes them by, and an
//! add of 100 users cut off between its two transactions is finished by the next change.
//! Over the real adapters: DynamoDB Local, real stream records, SNS on moto.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use chat_aws::apigw::ApiGatewayGateway;
use chat_aws::dynamodb::DynamoStore;
use chat_aws::lambda::handle_stream;
use chat_aws::sns::{PlatformApplications, SnsPush};
use chat_aws::tables::{CONNECTIONS, TableNames};
use chat_shared::Chat;
use chat_shared::auth::TokenVerifier;
use chat_shared::config::Limits;
use chat_shared::ids::{ClientMessageId, ConversationId, DeviceId};
use chat_shared::ports::{
    CloseReason, ConnectionGateway, ConnectionRecord, GatewayError, Platform, SystemClock,
};
use chat_shared::ports::{ConnectionStore, DeviceStore};
use chat_shared::protocol::AppendRequest;
use chat_shared::service::Ports;
use chat_tests::emulators::MotoServer;
use chat_tests::now_ms;
use common::*;

/// The Management API of moto, answering 410 (`GoneException`) for the connections
/// whose socket is gone, as API Gateway does (moto accepts posts to any id; the real
/// 410 is exercised on the deployed stack by `deployed_stack.rs`).
struct GoneSockets {
    inner: Tap<ApiGatewayGateway>,
    gone: HashSet<String>,
}

#[async_trait]
impl ConnectionGateway for GoneSockets {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), GatewayError> {
        if self.gone.contains(connection_id) {
            return Err(GatewayError::Gone);
        }
        self.inner.post(connection_id, frame).await
    }

    async fn close(&self, connection_id: &str, reason: CloseReason) -> Result<(), GatewayError> {
        self.inner.close(connection_id, reason).await
    }
}

struct Stack {
    chat: Chat,
    /// The store the service runs on, read directly to check what it keeps.
    store: DynamoStore,
    dynamodb: aws_sdk_dynamodb::Client,
    names: TableNames,
}

async fn stack(tag: &str, gateway: Arc<dyn ConnectionGateway>, fcm: Option<String>) -> Stack {
    let dynamodb = dynamodb_client();
    let names = tables(&dynamodb, tag).await;
    let store = DynamoStore::new(dynamodb.clone(), names.clone());
    let chat = Chat::new(
        Ports {
            store: Arc::new(store.clone()),
            gateway,
            push: Arc::new(SnsPush::new(
                sns_client(),
                PlatformApplications {
                    fcm,
                    ..Default::default()
                },
            )),
            clock: Arc::new(SystemClock),
            attachments: None,
            direct: None,
        },
        Limits::default(),
        TokenVerifier::new("aws-tests", None, None),
    );
    Stack {
        chat,
        store,
        dynamodb,
        names,
    }
}

impl Stack {
    /// Alice sends one message to `conversation`; its stream record is fanned out.
    async fn send_and_fan_out(&self, conversation: &ConversationId) {
        let send = AppendRequest::text(
            conversation.clone(),
            ClientMessageId::parse("m1").unwrap(),
            "hello",
        );
        self.chat.append(&user("alice"), None, send).await.unwrap();
        let batch = read_stream(&self.dynamodb, &self.names.messages).await;
        assert_eq!(batch.records.len(), 1);
        let response = handle_stream(&self.chat, batch).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_socket_is_gone_is_forgotten_by_the_fan_out() {
    // GIVEN bob's three connections: bob-1 open, bob-stale opened a minute ago whose
    // socket is gone (its $disconnect never ran), bob-new still in its $connect (API
    // Gateway answers 410 for it too until the upgrade completes)
    let stale = ["bob-stale".to_owned(), "bob-new".to_owned()];
    let gateway = Arc::new(GoneSockets {
        inner: Tap::new(moto_gateway()),
        gone: stale.iter().cloned().collect(),
    });
    let s = stack("ss1", gateway.clone(), None).await;
    let (direct, _) = s
        .chat
        .create_conversation(
            &user("alice"),
            chat_shared::service::CreateConversation {
                kind: chat_shared::ports::ConversationKind::Direct,
                name: None,
                members: vec![user("bob")],
            },
        )
        .await
        .unwrap();
    s.chat
        .connect("bob-1", &user("bob"), None, i64::MAX)
        .await
        .unwrap();
    let now = now_ms();
    s.store
        .put_connection(&ConnectionRecord {
            connection_id: "bob-stale".into(),
            user_id: user("bob"),
            device_id: None,
            connected_at: now - 60_000,
            last_frame_at: now,
            token_expires_at: i64::MAX,
        })
        .await
        .unwrap();
    s.chat
        .connect("bob-new", &user("bob"), None, i64::MAX)
        .await
        .unwrap();

    // WHEN alice's message is fanned out from its stream record
    s.send_and_fan_out(&direct.conversation_id).await;

    // THEN bob-1 got it, bob-stale is gone from both tables, bob-new is kept
    let frames = gateway.inner.frames_to("bob-1");
    assert!(
        frames.iter().any(|f| f["type"] == "message.new"),
        "{frames:?}"
    );
    assert!(s.store.connection("bob-stale").await.unwrap().is_none());
    let left: HashSet<String> = s
        .store
        .connections_of(&[user("bob")])
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    assert_eq!(
        left,
        HashSet::from(["bob-1".to_owned(), "bob-new".to_owned()])
    );
    let raw = s
        .dynamodb
        .get_item()
        .table_name(&s.names.connections)
        .key("connectionId", AttributeValue::S("bob-stale".into()))
        .send()
        .await
        .unwrap();
    assert!(raw.item.is_none(), "the connections table item is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_endpoint_is_disabled_is_forgotten_after_a_push() {
    // GIVEN carol, offline, with a phone and a tablet on FCM; SNS (moto) disabled the
    // phone's endpoint (as it does when FCM reports the token unregistered)
    let app = fcm_app("stale-fcm").await;
    let s = stack("ss2", Arc::new(Tap::new(moto_gateway())), Some(app)).await;
    let (direct, _) = s
        .chat
        .create_conversation(
            &user("alice"),
            chat_shared::service::CreateConversation {
                kind: chat_shared::ports::ConversationKind::Direct,
                name: None,
                members: vec![user("carol")],
            },
        )
        .await
        .unwrap();
    let carol = user("carol");
    let register = |id: &str| {
        s.chat.register_device(
            &carol,
            DeviceId::parse(id).unwrap(),
            Platform::Fcm,
            format!("carol-{id}-{}", std::process::id()),
        )
    };
    let phone = register("phone").await.unwrap().endpoint.unwrap();
    let tablet = register("tablet").await.unwrap().endpoint.unwrap();
    sns_client()
        .set_endpoint_attributes()
        .endpoint_arn(&phone)
        .attributes("Enabled", "false")
        .send()
        .await
        .unwrap();

    // WHEN alice's message is fanned out from its stream record
    s.send_and_fan_out(&direct.conversation_id).await;

    // THEN the tablet got the push and the phone is no longer carol's device
    let moto = MotoServer::shared();
    assert_eq!(moto.publishes_to(&tablet).await.unwrap().len(), 1);
    assert!(moto.publishes_to(&phone).await.unwrap().is_empty());
    let devices: Vec<String> = s
        .store
        .devices_of(&[user("carol")])
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id.as_str().to_owned())
        .collect();
    assert_eq!(devices, ["tablet"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_items_expire_after_api_gateways_two_hours() {
    // GIVEN a connection made now
    let s = stack("ss3", Arc::new(Tap::new(moto_gateway())), None).await;
    let before = now_ms() / 1000;
    s.chat
        .connect("c-ttl", &user("alice"), None, i64::MAX)
        .await
        .unwrap();
    let after = now_ms() / 1000;

    // THEN its item carries expiresAt, in epoch seconds, past API Gateway's 2 h maximum
    // connection duration and within 3 h (DynamoDB Local keeps expired items: what is
    // checked is the value TTL acts on, and that the table's TTL reads that attribute)
    let item = s
        .dynamodb
        .get_item()
        .table_name(&s.names.connections)
        .key("connectionId", AttributeValue::S("c-ttl".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the connection item");
    let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
    assert!(expires - after > 2 * 3600, "{} s", expires - after);
    assert!(expires - before <= 3 * 3600, "{} s", expires - before);
    assert_eq!(CONNECTIONS.ttl_attribute, Some("expiresAt"));
    let ttl = s
        .dynamodb
        .describe_time_to_live()
        .table_name(&s.names.connections)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .expect("a TTL description");
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));
}

/// Sends every DynamoDB request whose body holds `needle` to a closed port while `on`.
#[derive(Debug, Clone)]
struct CutOff {
    needle: &'static str,
    on: Arc<std::sync::atomic::AtomicBool>,
}

impl aws_sdk_dynamodb::config::Intercept for CutOff {
    fn name(&self) -> &'static str {
        "CutOff"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut<
            '_,
        >,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let hit = context
            .request()
            .body()
            .bytes()
            .is_some_and(|b| String::from_utf8_lossy(b).contains(self.needle));
        if hit && self.on.load(std::sync::atomic::Ordering::SeqCst) {
            context.request_mut().set_uri("http://127.0.0.1:1/")?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_cut_off_between_its_two_transactions_is_finished_by_the_next_change() {
    use chat_shared::ports::{AddMembersOutcome, Change, ConversationStore, MessageStore};
    use chat_shared::protocol::Entry;
    // GIVEN a store whose second transaction of a 100-user add cannot reach DynamoDB
    // (a Lambda that died between the two)
    let cut = CutOff {
        needle: "REMOVE pendingAdd",
        on: Arc::new(true.into()),
    };
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        dynamodb_config()
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .interceptor(cut.clone())
            .build(),
    );
    let names = tables(&dynamodb, "cut").await;
    let store = DynamoStore::new(dynamodb, names);
    let id = chat_shared::domain::new_conversation_id();
    store
        .create_group(&chat_shared::ports::NewConversation {
            id: id.clone(),
            kind: chat_shared::ports::ConversationKind::Group,
            name: Some("Team".into()),
            now: 1,
            members: vec![user("alice")],
        })
        .await
        .unwrap();
    let hundred: Vec<_> = (0..100).map(|i| user(&format!("user-{i:03}"))).collect();
    let by = |now| Change {
        actor: user("alice"),
        now,
        expires_at: None,
    };
    // WHEN alice adds 100 users and the add is cut off after its first transaction
    assert!(
        store
            .add_members(&id, &hundred, 1000, &by(10))
            .await
            .is_err()
    );
    // THEN the entry names all 100 and the count holds them, but the last two are not
    // members yet
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!((conv.last_seq, conv.member_count), (1, 101));
    let member = |u: &str| {
        let (store, id, u) = (&store, &id, user(u));
        async move { store.membership(id, &u).await.unwrap() }
    };
    assert!(member("user-097").await.is_some());
    assert!(member("user-098").await.is_none());
    assert!(member("user-099").await.is_none());
    // WHEN DynamoDB is reachable again and alice adds one more
    cut.on.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = store
        .add_members(&id, &[user("zoe")], 1000, &by(20))
        .await
        .unwrap();
    // THEN the cut-off add was finished first: the two are members from its entry on,
    // and zoe's entry names only her
    assert_eq!(out, AddMembersOutcome::Added(vec![user("zoe")]));
    for u in ["user-098", "user-099"] {
        let (_, m) = member(u).await.expect("finished");
        assert_eq!((m.read_up_to, m.joined_at), (1, 10), "{u}");
    }
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!((conv.last_seq, conv.member_count), (2, 102));
    assert_eq!(store.members(&id, None, 1000).await.unwrap().len(), 102);
    let query = chat_shared::ports::MessageQuery {
        after: None,
        before: None,
        limit: 10,
        newest: false,
        min_timestamp: i64::MIN,
    };
    let (entries, _) = store.messages(&id, &user("alice"), query).await.unwrap();
    let named: Vec<usize> = entries
        .iter()
        .map(|m| match &m.entry {
            Entry::System(c) => c.user_ids.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(named, [100, 1]);
}
