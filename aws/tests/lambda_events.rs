//! Real API Gateway WebSocket and DynamoDB Streams events (`tests/fixtures/`), parsed by
//! the real event types and driven through the Lambda handlers, over DynamoDB Local (the
//! store) and moto (the Management API the fan-out posts to, and SNS).

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use bytes::Bytes;
use chat_aws::dynamodb::DynamoStore;
use chat_aws::lambda::{
    Deps, LambdaConfig, StageGateway, StreamEvent, SweepEvent, WsContext, WsEvent, handle_stream,
    handle_sweep, handle_ws,
};
use chat_aws::sns::{PlatformApplications, SnsPush};
use chat_shared::Chat;
use chat_shared::auth::TokenVerifier;
use chat_shared::config::Limits;
use chat_shared::ids::ConversationId;
use chat_shared::ports::{
    CloseReason, ConnectionGateway, ConnectionRecord, ConnectionStore, ConversationKind,
    GatewayError, SystemClock,
};
use chat_shared::service::CreateConversation;
use chat_shared::service::Ports;
use chat_tests::emulators::MotoServer;
use chat_tests::unique;
use common::{Tap, dynamodb_client, sdk_config, sns_client, tables, user};
use serde_json::{Value, json};

/// The functions' HS256 secret, which they read from Secrets Manager (moto's).
const SECRET: &str = "fixture-secret-held-by-secrets-manager";
const CONNECT: &str = include_str!("../../tests/fixtures/apigw-ws-connect.json");
const DISCONNECT: &str = include_str!("../../tests/fixtures/apigw-ws-disconnect.json");
const SEND: &str = include_str!("../../tests/fixtures/apigw-ws-send.json");
const STREAM: &str = include_str!("../../tests/fixtures/dynamodb-stream-insert.json");
/// The connection id in the fixtures.
const FIXTURE_CONNECTION: &str = "BZ5XvdRdIAMCJuQ=";

/// The Lambda dependencies over fresh tables, and the store they run on (read directly to
/// check what it keeps).
async fn deps() -> (Deps, DynamoStore) {
    let dynamodb = dynamodb_client();
    let names = tables(&dynamodb, "fx").await;
    let moto = MotoServer::shared().endpoint();
    let sdk = sdk_config().to_builder().endpoint_url(&moto).build();
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(unique("chat-jwt"))
        .secret_string(SECRET)
        .send()
        .await
        .unwrap();
    let config = LambdaConfig {
        tables: names.clone(),
        tokens: chat_shared::config::TokenConfig::default(),
        secret_arn: secret.arn,
        limits: Limits::default(),
        apigw_endpoint: Some(moto),
        push_apps: PlatformApplications::default(),
        attachment_bucket: None,
        idle_timeout: std::time::Duration::from_secs(150),
    };
    let store = DynamoStore::new(dynamodb.clone(), names);
    (
        Deps::with_clients(config, dynamodb, sns_client(), sdk),
        store,
    )
}

fn token(deps: &Deps, name: &str) -> String {
    TokenVerifier::new(SECRET, None, None).issue(&user(name), deps.chat.now(), 3600)
}

/// The Management API gateway of a [`Deps`], shared with a [`Tap`].
struct Stage(Arc<StageGateway>);

#[async_trait]
impl ConnectionGateway for Stage {
    async fn post(&self, connection_id: &str, frame: Bytes) -> Result<(), GatewayError> {
        self.0.post(connection_id, frame).await
    }

    async fn close(&self, connection_id: &str, reason: CloseReason) -> Result<(), GatewayError> {
        self.0.close(connection_id, reason).await
    }
}

/// The service of `deps` with its Management API (moto) behind a tap that records every
/// post moto accepted.
fn tapped(deps: &Deps, store: &DynamoStore) -> (Chat, Arc<Tap<Stage>>) {
    let tap = Arc::new(Tap::new(Stage(deps.gateway.clone())));
    let chat = Chat::new(
        Ports {
            store: Arc::new(store.clone()),
            gateway: tap.clone(),
            push: Arc::new(SnsPush::new(sns_client(), PlatformApplications::default())),
            clock: Arc::new(SystemClock),
            attachments: None,
            direct: None,
        },
        Limits::default(),
        TokenVerifier::new(SECRET, None, None),
    );
    (chat, tap)
}

/// A fixture with its placeholders filled, checked against the real event type first.
fn ws_event(fixture: &str, fill: &[(&str, &str)]) -> WsEvent {
    let mut text = fixture.to_owned();
    for (from, to) in fill {
        text = text.replace(from, to);
    }
    serde_json::from_str::<ApiGatewayWebsocketProxyRequest>(&text)
        .expect("the fixture is a real API Gateway WebSocket event");
    serde_json::from_str(&text).expect("the handler's event shape reads it")
}

async fn direct(deps: &Deps) -> String {
    let (view, _) = deps
        .chat
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
    view.conversation_id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_send_and_disconnect_events_drive_the_handlers() {
    let (deps, store) = deps().await;
    let conversation = direct(&deps).await;
    let alice = token(&deps, "alice");

    // $connect with the token in the query string
    let connect = handle_ws(&deps, ws_event(CONNECT, &[("__TOKEN__", &alice)])).await;
    assert_eq!(connect.status_code, 200);
    let stored = store.connection(FIXTURE_CONNECTION).await.unwrap();
    let stored = stored.expect("the connection is recorded");
    assert_eq!(stored.user_id.as_str(), "alice");
    assert_eq!(
        stored.device_id.map(|d| d.to_string()).as_deref(),
        Some("phone-1")
    );

    // a bad token is refused at the handshake
    let refused = handle_ws(&deps, ws_event(CONNECT, &[("__TOKEN__", "not-a-token")])).await;
    assert_eq!(refused.status_code, 401);

    // send: the ack is the route response
    let send = handle_ws(
        &deps,
        ws_event(SEND, &[("__CONVERSATION__", &conversation)]),
    )
    .await;
    assert_eq!(send.status_code, 200);
    let ack: Value = serde_json::from_str(send.body.as_deref().unwrap()).unwrap();
    assert_eq!(ack["type"], "message.ack");
    assert_eq!(ack["requestId"], "r1");
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["duplicate"], false);
    // the same frame again is a duplicate with the original ack
    let again = handle_ws(
        &deps,
        ws_event(SEND, &[("__CONVERSATION__", &conversation)]),
    )
    .await;
    let again: Value = serde_json::from_str(again.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        (again["seq"].clone(), again["duplicate"].clone()),
        (ack["seq"].clone(), Value::Bool(true))
    );

    // $disconnect forgets the connection
    let disconnect = handle_ws(&deps, ws_event(DISCONNECT, &[])).await;
    assert_eq!(disconnect.status_code, 200);
    assert!(
        store
            .connection(FIXTURE_CONNECTION)
            .await
            .unwrap()
            .is_none()
    );

    // a frame on a forgotten connection is told to log in again
    let stale = handle_ws(
        &deps,
        ws_event(SEND, &[("__CONVERSATION__", &conversation)]),
    )
    .await;
    let stale: Value = serde_json::from_str(stale.body.as_deref().unwrap()).unwrap();
    assert_eq!(stale["code"], "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulator_event_without_the_timing_fields_is_accepted() {
    // Emulators omit connectedAt / requestTimeEpoch, which the strict type requires.
    let (deps, _) = deps().await;
    let alice = token(&deps, "alice");
    let mut event: Value = serde_json::from_str(CONNECT).unwrap();
    let ctx = event["requestContext"].as_object_mut().unwrap();
    ctx.remove("connectedAt");
    ctx.remove("requestTimeEpoch");
    let text = event.to_string().replace("__TOKEN__", &alice);
    assert!(serde_json::from_str::<ApiGatewayWebsocketProxyRequest>(&text).is_err());
    let lenient: WsEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(handle_ws(&deps, lenient).await.status_code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_batch_is_fanned_out_and_a_poison_record_is_skipped() {
    let (deps, store) = deps().await;
    let conversation = direct(&deps).await;
    // bob is online on a connection the Management API (moto) accepts posts for
    let bob = token(&deps, "bob");
    let bob_connect = ws_event(
        CONNECT,
        &[("__TOKEN__", &bob), (FIXTURE_CONNECTION, "bob-conn=")],
    );
    assert_eq!(handle_ws(&deps, bob_connect).await.status_code, 200);

    // GIVEN the stream batch of the fixture (an INSERT, then a REMOVE that is skipped)
    let text = STREAM.replace("__CONVERSATION__", &conversation);
    serde_json::from_str::<DynamoDbEvent>(&text).expect("a real DynamoDB stream event");
    let batch: StreamEvent = serde_json::from_str(&text).unwrap();

    // WHEN it is handled, posting through a tap on the Management API
    let (chat, tap) = tapped(&deps, &store);
    let response = handle_stream(&chat, batch.clone()).await;

    // THEN nothing fails, moto accepted the message.new posted to bob's connection, and
    // the connection is still recorded. (Moto accepts posts to any connection id, so the
    // 410 path cannot be seen here: `stale_state.rs` answers 410 and checks the removal,
    // and `deployed_stack.rs` does it against the deployed stack.)
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let to_bob = tap.frames_to("bob-conn=");
    assert_eq!(to_bob.len(), 1, "frames posted to bob: {to_bob:?}");
    assert_eq!(to_bob[0]["type"], "message.new", "{}", to_bob[0]);
    assert_eq!(to_bob[0]["conversationId"], conversation.as_str());
    assert!(store.connection("bob-conn=").await.unwrap().is_some());

    // AND a batch whose second INSERT is not a message skips exactly that record (it can
    // never be processed: reporting it would only hold the shard back)
    let mut poisoned: Value = serde_json::from_str(&text).unwrap();
    let mut bad = poisoned["Records"][0].clone();
    bad["dynamodb"]["NewImage"] = serde_json::json!({"conversationId": {"S": conversation}});
    bad["dynamodb"]["SequenceNumber"] = Value::from("222200000000000000000001");
    poisoned["Records"].as_array_mut().unwrap().insert(1, bad);
    let batch: StreamEvent = serde_json::from_value(poisoned).unwrap();
    let response = handle_stream(&deps.chat, batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(response.skipped, ["222200000000000000000001"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_token_expired_gets_nothing_and_is_deleted() {
    let (mut deps, store) = deps().await;
    let (chat, tap) = tapped(&deps, &store);
    deps.chat = chat;
    let conversation = direct(&deps).await;
    // exp 28 s ago: accepted for 1 to 2 more seconds (30 s of leeway).
    let now = deps.chat.now();
    let expiring = TokenVerifier::new(SECRET, None, None).issue(&user("alice"), now - 58_000, 30);
    let connect = handle_ws(&deps, ws_event(CONNECT, &[("__TOKEN__", &expiring)])).await;
    assert_eq!(connect.status_code, 200);
    let stored = store
        .connection(FIXTURE_CONNECTION)
        .await
        .unwrap()
        .expect("the connection is recorded");
    let exp_ms = (now - 58_000).div_euclid(1000) * 1000 + 30_000;
    assert_eq!(
        stored.token_expires_at,
        exp_ms + 30_000,
        "exp plus the leeway"
    );
    let send = handle_ws(
        &deps,
        ws_event(SEND, &[("__CONVERSATION__", &conversation)]),
    )
    .await;
    let ack: Value = serde_json::from_str(send.body.as_deref().unwrap()).unwrap();
    assert_eq!(ack["type"], "message.ack", "before it expires: {ack}");

    let wait = stored.token_expires_at - deps.chat.now() + 100;
    tokio::time::sleep(std::time::Duration::from_millis(wait.max(0) as u64)).await;

    // An event for alice is not posted to it: the connection is deleted instead.
    let id = ConversationId::parse(conversation.as_str()).unwrap();
    deps.chat
        .typing(&user("bob"), None, &id, true)
        .await
        .unwrap();
    assert!(
        tap.frames_to(FIXTURE_CONNECTION)
            .iter()
            .all(|f| f["type"] != "typing"),
        "an expired connection got an event"
    );
    assert_eq!(tap.closed.lock().unwrap().as_slice(), [FIXTURE_CONNECTION]);
    // A frame on it is refused, and the connection deleted again.
    let send = handle_ws(
        &deps,
        ws_event(SEND, &[("__CONVERSATION__", &conversation)]),
    )
    .await;
    let refused: Value = serde_json::from_str(send.body.as_deref().unwrap()).unwrap();
    assert_eq!(refused["code"], "UNAUTHORIZED", "{refused}");
    assert_eq!(refused["requestId"], "r1");
    assert_eq!(tap.closed.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_routes_post_their_answers_and_never_an_empty_frame() {
    let (mut deps, store) = deps().await;
    let (chat, tap) = tapped(&deps, &store);
    deps.chat = chat;
    let conversation = direct(&deps).await;
    let alice = token(&deps, "alice");
    let connect = handle_ws(&deps, ws_event(CONNECT, &[("__TOKEN__", &alice)])).await;
    assert_eq!(connect.status_code, 200);
    let frame = |route: &str, body: Value| WsEvent {
        request_context: WsContext {
            connection_id: Some(FIXTURE_CONNECTION.to_owned()),
            route_key: Some(route.to_owned()),
            event_type: Some("MESSAGE".to_owned()),
            ..WsContext::default()
        },
        body: Some(body.to_string()),
        ..WsEvent::default()
    };
    let answers = || tap.frames_to(FIXTURE_CONNECTION);

    // `read` with a requestId: no route response body; the `ok` is posted.
    let read =
        json!({"action": "read", "requestId": "r9", "conversationId": conversation, "upToSeq": 0});
    let response = handle_ws(&deps, frame("read", read)).await;
    assert_eq!(
        (response.status_code, response.body.as_deref()),
        (200, None)
    );
    assert_eq!(answers(), [json!({"type": "ok", "requestId": "r9"})]);
    // Without one, no answer at all: nothing posted, no body.
    let read = json!({"action": "read", "conversationId": conversation, "upToSeq": 0});
    let response = handle_ws(&deps, frame("read", read)).await;
    assert_eq!(response.body, None);
    assert_eq!(answers().len(), 1);
    // An error is always an answer: posted too.
    let typing = json!({"action": "typing", "conversationId": "c_nope", "isTyping": true});
    let response = handle_ws(&deps, frame("typing", typing)).await;
    assert_eq!(response.body, None);
    assert_eq!(answers()[1]["type"], "error");
    // A route that always answers does so in its body.
    let response = handle_ws(&deps, frame("heartbeat", json!({"action": "heartbeat"}))).await;
    let ack: Value = serde_json::from_str(response.body.as_deref().unwrap()).unwrap();
    assert_eq!(ack["type"], "heartbeat.ack");
    assert_eq!(answers().len(), 2);
}

/// A connection of `who` whose last frame was `silent_ms` ago, with a token valid until
/// `expires_at`.
async fn connection_of(
    store: &DynamoStore,
    id: &str,
    who: &str,
    silent_ms: i64,
    expires_at: i64,
) -> ConnectionRecord {
    let now = chat_tests::now_ms();
    let c = ConnectionRecord {
        connection_id: id.to_owned(),
        user_id: user(who),
        device_id: None,
        connected_at: now - silent_ms - 1_000,
        last_frame_at: now - silent_ms,
        token_expires_at: expires_at,
    };
    store.put_connection(&c).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_closes_silent_and_expired_connections_and_unlists_users_left_without() {
    let (deps, store) = deps().await;
    let now = chat_tests::now_ms();
    connection_of(&store, "alice-old", "alice", 200_000, i64::MAX).await;
    connection_of(&store, "alice-new", "alice", 10_000, i64::MAX).await;
    connection_of(&store, "bob-1", "bob", 151_000, i64::MAX).await;
    connection_of(&store, "carol-1", "carol", 0, now - 1).await;
    connection_of(&store, "dave-1", "dave", 149_000, i64::MAX).await;

    let report = handle_sweep(&deps, SweepEvent::default()).await.unwrap();
    assert_eq!(
        report.connections, 5,
        "every listed user's connections: {report:?}"
    );
    assert_eq!(report.closed, 3, "{report:?}");
    for (id, kept) in [
        ("alice-old", false),
        ("alice-new", true),
        ("bob-1", false),
        ("carol-1", false),
        ("dave-1", true),
    ] {
        assert_eq!(store.connection(id).await.unwrap().is_some(), kept, "{id}");
    }
    // Bob and carol have no connection left: the next sweep takes them off the index
    // (and reads only alice's and dave's).
    let report = handle_sweep(&deps, SweepEvent::default()).await.unwrap();
    assert_eq!(
        (report.connections, report.closed, report.unlisted),
        (2, 0, 2),
        "{report:?}"
    );
    let report = handle_sweep(&deps, SweepEvent::default()).await.unwrap();
    assert_eq!(report.unlisted, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_by_hand_narrows_the_window_to_the_users_it_names_never_widens_it() {
    let (deps, store) = deps().await;
    connection_of(&store, "erin-1", "erin", 40_000, i64::MAX).await;
    connection_of(&store, "frank-1", "frank", 40_000, i64::MAX).await;
    connection_of(&store, "gina-1", "gina", 20_000, i64::MAX).await;
    let by_hand = |secs, users: &[&str]| SweepEvent {
        idle_secs: Some(secs),
        users: Some(users.iter().map(|u| (*u).to_owned()).collect()),
    };
    let report = handle_sweep(&deps, by_hand(30, &["erin"])).await.unwrap();
    assert_eq!((report.connections, report.closed), (1, 1), "{report:?}");
    assert!(store.connection("erin-1").await.unwrap().is_none());
    assert!(
        store.connection("frank-1").await.unwrap().is_some(),
        "not named"
    );
    // A window wider than the configured one (150 s) is the configured one.
    let report = handle_sweep(&deps, by_hand(100_000, &["frank"]))
        .await
        .unwrap();
    assert_eq!(report.closed, 0, "{report:?}");
    // Nor under 30 s: a frame within 15 s of the recorded one records nothing.
    let report = handle_sweep(&deps, by_hand(2, &["gina"])).await.unwrap();
    assert_eq!(report.closed, 0, "{report:?}");
    let bad = handle_sweep(&deps, by_hand(30, &["not a user!"])).await;
    assert!(bad.is_err(), "a bad user id is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_refuses_old_tokens_and_deletes_the_users_connections() {
    let (deps, store) = deps().await;
    let now = deps.chat.now();
    let issue = |at: i64| TokenVerifier::new(SECRET, None, None).issue(&user("alice"), at, 3600);
    let old = issue(now - 10_000);
    connection_of(&store, "alice-1", "alice", 0, i64::MAX).await;
    connection_of(&store, "bob-1", "bob", 0, i64::MAX).await;
    // Another container has just taken the token (and read "not revoked").
    let (another_container, _) = tapped(&deps, &store);
    assert!(another_container.authenticate(Some(&old)).await.is_ok());
    // WHEN alice revokes her sessions through the HTTP API
    let revoke = http::Request::post("/v1/sessions/revoke")
        .header("authorization", format!("Bearer {old}"))
        .body(Bytes::new())
        .unwrap();
    let response = chat_shared::handlers::http::handle(&deps.chat, revoke).await;
    assert_eq!(response.status(), 204);
    // THEN her connection is gone, bob's is not
    assert!(store.connection("alice-1").await.unwrap().is_none());
    assert!(store.connection("bob-1").await.unwrap().is_some());
    // and the old token is refused at the handshake, here and by the other container,
    // which reads the revocation afresh for a handshake (a socket outlives its request)
    let refused = handle_ws(&deps, ws_event(CONNECT, &[("__TOKEN__", &old)])).await;
    assert_eq!(refused.status_code, 401);
    assert!(
        another_container
            .authenticate_handshake(Some(&old))
            .await
            .is_err()
    );
    // A token issued after the revocation connects.
    let fresh = issue(now + 2_000);
    let connect = handle_ws(&deps, ws_event(CONNECT, &[("__TOKEN__", &fresh)])).await;
    assert_eq!(connect.status_code, 200);
}
