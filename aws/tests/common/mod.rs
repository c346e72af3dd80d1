//! What the AWS integration tests share: clients for the emulators, a chat service over
//! the real adapters, and a tap on the connection gateway.

#![allow(dead_code)]

pub mod outage;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use bytes::Bytes;
use chat_aws::apigw::ApiGatewayGateway;
use chat_aws::dynamodb::DynamoStore;
use chat_aws::lambda::{StreamEvent, stream_record};
use chat_aws::sns::{PlatformApplications, SnsPush};
use chat_aws::tables::{TableNames, create_all};
use chat_shared::Chat;
use chat_shared::auth::TokenVerifier;
use chat_shared::config::Limits;
use chat_shared::ids::{ClientMessageId, ConversationId, UserId};
use chat_shared::ports::{CloseReason, ConnectionGateway, DirectMarks, GatewayError, SystemClock};
use chat_shared::protocol::AppendRequest;
use chat_shared::service::Ports;
use chat_tests::emulators::{DynamoDbLocal, MotoServer};
use serde_json::Value;

/// A user id, from a literal the test knows is valid.
pub fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap_or_else(|e| panic!("{s:?} is not a valid user id: {e}"))
}

/// The dummy credentials every emulator accepts.
pub fn credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "aws-tests")
}

/// A DynamoDB client configuration for the emulator at `endpoint` (DynamoDB Local, or a
/// deployed stack's emulator), to add interceptors or retry settings to.
pub fn dynamodb_config_at(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials())
        .endpoint_url(endpoint)
}

/// [`dynamodb_config_at`] DynamoDB Local.
pub fn dynamodb_config() -> aws_sdk_dynamodb::config::Builder {
    dynamodb_config_at(&DynamoDbLocal::shared().endpoint())
}

/// A plain DynamoDB client for DynamoDB Local.
pub fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(dynamodb_config().build())
}

/// An SDK configuration with the dummy credentials (for clients the code under test
/// builds itself, like the Management API's).
pub fn sdk_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            credentials(),
        ))
        .build()
}

/// An SNS client configuration for moto, to add interceptors to.
pub fn sns_config() -> aws_sdk_sns::config::Builder {
    aws_sdk_sns::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials())
        .endpoint_url(MotoServer::shared().endpoint())
}

/// A plain SNS client for moto.
pub fn sns_client() -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::from_conf(sns_config().build())
}

/// The Management API of moto: it accepts posts to any connection id.
pub fn moto_gateway() -> ApiGatewayGateway {
    ApiGatewayGateway::new(aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials())
            .endpoint_url(MotoServer::shared().endpoint())
            .build(),
    ))
}

/// Fresh tables with a unique prefix.
pub async fn tables(client: &aws_sdk_dynamodb::Client, tag: &str) -> TableNames {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let names = TableNames::prefixed(&format!(
        "{tag}{}n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    create_all(client, &names).await.expect("create tables");
    names
}

/// A gateway that records every frame and every close the real one accepted.
pub struct Tap<G> {
    pub inner: G,
    pub posted: Mutex<Vec<(String, serde_json::Value)>>,
    pub closed: Mutex<Vec<String>>,
}

impl<G> Tap<G> {
    pub fn new(inner: G) -> Self {
        Self {
            inner,
            posted: Mutex::new(Vec::new()),
            closed: Mutex::new(Vec::new()),
        }
    }

    /// The frames posted to one connection, in order.
    pub fn frames_to(&self, connection_id: &str) -> Vec<serde_json::Value> {
        self.posted
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == connection_id)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

#[async_trait]
impl<G: ConnectionGateway> ConnectionGateway for Tap<G> {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), GatewayError> {
        let result = self.inner.post(connection_id, frame.clone()).await;
        if result.is_ok() {
            let value = serde_json::from_slice(&frame).expect("frames are JSON");
            self.posted
                .lock()
                .unwrap()
                .push((connection_id.to_owned(), value));
        }
        result
    }

    async fn close(&self, connection_id: &str, reason: CloseReason) -> Result<(), GatewayError> {
        let result = self.inner.close(connection_id, reason).await;
        if result.is_ok() {
            self.closed.lock().unwrap().push(connection_id.to_owned());
        }
        result
    }
}

/// Who posts a new entry to the members' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The send path, the stream's fan-out after it as the backstop: as the Lambdas do.
    Direct,
    /// The stream's fan-out only: the path of the backstop and of conversations over
    /// the direct limit, which the stream tests exercise.
    StreamOnly,
}

/// The chat service over DynamoDB (with `dynamodb`), the tapped Management API of moto,
/// and SNS on moto with `apps`.
pub fn chat(
    dynamodb: aws_sdk_dynamodb::Client,
    names: TableNames,
    gateway: Arc<Tap<ApiGatewayGateway>>,
    apps: PlatformApplications,
    delivery: Delivery,
) -> Chat {
    let store = Arc::new(DynamoStore::new(dynamodb, names));
    Chat::new(
        Ports {
            store: store.clone(),
            gateway,
            push: Arc::new(SnsPush::new(sns_client(), apps)),
            clock: Arc::new(SystemClock),
            attachments: None,
            direct: (delivery == Delivery::Direct).then_some(store as Arc<dyn DirectMarks>),
        },
        Limits::default(),
        TokenVerifier::new("aws-tests", None, None),
    )
}

/// The chat service on fresh tables tagged `tag`, with the tapped Management API of moto
/// and an FCM application on moto, delivering as `delivery` says: the setup of the
/// fan-out tests. `dynamodb` carries the test's interceptors, if any.
pub async fn chat_with_fcm(
    dynamodb: aws_sdk_dynamodb::Client,
    tag: &str,
    delivery: Delivery,
) -> (Chat, TableNames, Arc<Tap<ApiGatewayGateway>>) {
    let names = tables(&dynamodb, tag).await;
    let tap = Arc::new(Tap::new(moto_gateway()));
    let app = fcm_app(&format!("{tag}-fcm")).await;
    let chat = chat(
        dynamodb,
        names.clone(),
        tap.clone(),
        PlatformApplications {
            fcm: Some(app),
            ..Default::default()
        },
        delivery,
    );
    (chat, names, tap)
}

/// An FCM platform application on moto.
pub async fn fcm_app(name: &str) -> String {
    sns_client()
        .create_platform_application()
        .name(format!("{name}-{}", std::process::id()))
        .platform("GCM")
        .attributes("PlatformCredential", "fcm-server-key")
        .send()
        .await
        .expect("create platform application")
        .platform_application_arn
        .expect("arn")
}

pub fn streams_client() -> aws_sdk_dynamodbstreams::Client {
    aws_sdk_dynamodbstreams::Client::from_conf(
        aws_sdk_dynamodbstreams::Config::builder()
            .behavior_version(aws_sdk_dynamodbstreams::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodbstreams::config::Region::new("us-east-1"))
            .credentials_provider(credentials())
            .endpoint_url(DynamoDbLocal::shared().endpoint())
            .build(),
    )
}

/// Every record of the messages table's stream so far, as a Lambda batch.
pub async fn read_stream(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> StreamEvent {
    let arn = dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table
        .and_then(|t| t.latest_stream_arn)
        .expect("the messages table has a stream");
    let streams = streams_client();
    let shards = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id.unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(it) = iterator.take() {
            let out = streams
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap();
            let batch = out.records.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            records.extend(batch.iter().map(stream_record));
            iterator = out.next_shard_iterator;
        }
    }
    StreamEvent { records }
}

/// Alice sends the texts `message {i}` for `seqs` (client ids `{prefix}{i}`).
pub async fn alice_sends(
    chat: &Chat,
    id: &ConversationId,
    prefix: &str,
    seqs: std::ops::RangeInclusive<u64>,
    origin: Option<&str>,
) {
    for i in seqs {
        let send = AppendRequest::text(
            id.clone(),
            ClientMessageId::parse(format!("{prefix}{i}")).unwrap(),
            format!("message {i}"),
        );
        chat.append(&user("alice"), origin, send).await.unwrap();
    }
}

/// The seqs pushed to an FCM endpoint on moto, in publish order.
pub async fn pushed_seqs(endpoint: &str) -> Vec<u64> {
    MotoServer::shared()
        .publishes_to(endpoint)
        .await
        .unwrap()
        .iter()
        .map(|p| {
            let message: Value = serde_json::from_str(&p.message).unwrap();
            let fcm: Value = serde_json::from_str(message["GCM"].as_str().unwrap()).unwrap();
            fcm["fcmV1Message"]["message"]["data"]["seq"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Every string in an attribute value, however nested.
fn strings(v: &AttributeValue, out: &mut Vec<String>) {
    match v {
        AttributeValue::S(s) => out.push(s.clone()),
        AttributeValue::L(l) => l.iter().for_each(|v| strings(v, out)),
        AttributeValue::M(m) => m.values().for_each(|v| strings(v, out)),
        AttributeValue::Ss(ss) => out.extend(ss.iter().cloned()),
        _ => {}
    }
}

/// Every attribute name and string value of every item of every table, read back raw.
pub async fn every_string(client: &aws_sdk_dynamodb::Client, names: &TableNames) -> Vec<String> {
    let mut out = Vec::new();
    for table in [&names.main, &names.messages, &names.connections] {
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            for item in page.items.unwrap_or_default() {
                for (name, v) in &item {
                    out.push(name.clone());
                    strings(v, &mut out);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
    }
    out
}

/// A group named "Team" that `creator` makes with `members`.
pub async fn team(chat: &Chat, creator: &str, members: &[&str]) -> ConversationId {
    let (group, _) = chat
        .create_conversation(
            &user(creator),
            chat_shared::service::CreateConversation {
                kind: chat_shared::ports::ConversationKind::Group,
                name: Some("Team".into()),
                members: members.iter().map(|m| user(m)).collect(),
            },
        )
        .await
        .unwrap();
    group.conversation_id
}

/// Registers `owner`'s FCM device `phone` with a token of `tag` unique to this run, and
/// answers its SNS endpoint.
pub async fn fcm_phone(chat: &Chat, owner: &str, tag: &str) -> String {
    let device = chat
        .register_device(
            &user(owner),
            chat_shared::ids::DeviceId::parse("phone").unwrap(),
            chat_shared::ports::Platform::Fcm,
            format!("{owner}-{tag}-token-{}", std::process::id()),
        )
        .await
        .unwrap();
    device.endpoint.expect("SNS endpoint")
}

/// A Secrets Manager client for the emulator at `endpoint`.
pub fn secrets_client_at(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials())
            .endpoint_url(endpoint)
            .build(),
    )
}

/// Rotates a secret: `value` becomes AWSCURRENT, the one it replaces AWSPREVIOUS.
pub async fn rotate_secret(client: &aws_sdk_secretsmanager::Client, arn: &str, value: &str) {
    client
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}
