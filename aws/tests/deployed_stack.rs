//! Against the stack deployed from `template.yaml` (on a local emulator by
//! `localstack/up.sh`, which writes `target/emulators/stack.env`), with the real Lambda
//! binaries: a connection whose socket is gone but whose record remains (its
//! `$disconnect` never ran) is healed by a post's 410; the send function posts a small
//! conversation's messages itself and the stream's fan-out posts what it did not; the
//! sweeper closes a silent connection. Needs the deployment, so it is `#[ignore]`d in the
//! plain test run and run by `localstack/e2e.sh`.
//!
//! The Lambda API (invoking the sweeper, pausing the stream's event source mapping) is
//! called with an unsigned request, which emulators accept: these tests are for them.

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chat_aws::dynamodb::DynamoStore;
use chat_aws::tables::TableNames;
use chat_shared::ports::{ConnectionRecord, ConnectionStore};
use chat_tests::{TestServer, now_ms, unique};
use common::{dynamodb_config_at, user};
use serde_json::{Value, json};

struct Deployment {
    server: TestServer,
    store: DynamoStore,
    dynamodb: aws_sdk_dynamodb::Client,
    main_table: String,
    endpoint: String,
    sweep_function: String,
}

fn deployment() -> Option<Deployment> {
    let var = |name: &str| std::env::var(name).ok();
    let (ws, http, secret, endpoint) = (
        var("CHAT_E2E_WS_URL")?,
        var("CHAT_E2E_HTTP_URL")?,
        var("CHAT_E2E_JWT_SECRET")?,
        var("CHAT_E2E_AWS_ENDPOINT_URL")?,
    );
    let tables = TableNames {
        main: var("CHAT_E2E_MAIN_TABLE_NAME")?,
        messages: var("CHAT_E2E_MESSAGES_TABLE_NAME")?,
        connections: var("CHAT_E2E_CONNECTIONS_TABLE_NAME")?,
    };
    let client = aws_sdk_dynamodb::Client::from_conf(dynamodb_config_at(&endpoint).build());
    Some(Deployment {
        server: TestServer::remote(&ws, &http, &secret),
        store: DynamoStore::new(client.clone(), tables.clone()),
        dynamodb: client,
        main_table: tables.main,
        endpoint,
        sweep_function: var("CHAT_E2E_SWEEP_FUNCTION_NAME")?,
    })
}

impl Deployment {
    /// A call of the emulator's Lambda API.
    async fn lambda(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .request(method, format!("{}/2015-03-31{path}", self.endpoint))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/lambda/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Runs the sweeper now on `users`' connections.
    async fn sweep(&self, users: &[&str]) -> Value {
        let path = format!("/functions/{}/invocations", self.sweep_function);
        let event = json!({ "users": users });
        self.lambda(reqwest::Method::POST, &path, event).await
    }

    /// Pauses (`false`) or resumes the stream's trigger of the fan-out.
    async fn stream_trigger(&self, enabled: bool) {
        let list = self
            .lambda(reqwest::Method::GET, "/event-source-mappings/", json!({}))
            .await;
        let mappings = list["EventSourceMappings"].as_array().unwrap();
        let fanout = mappings
            .iter()
            .find(|m| {
                m["FunctionArn"]
                    .as_str()
                    .unwrap()
                    .contains("FanoutFunction")
            })
            .expect("the fan-out's mapping");
        let path = format!(
            "/event-source-mappings/{}",
            fanout["UUID"].as_str().unwrap()
        );
        self.lambda(reqwest::Method::PUT, &path, json!({"Enabled": enabled}))
            .await;
    }

    /// Takes direct delivery's mark off a conversation: the state a send that died
    /// after its write leaves for the next one, which then waits for the stream.
    async fn forget_mark(&self, conversation: &str) {
        self.dynamodb
            .update_item()
            .table_name(&self.main_table)
            .key("pk", AttributeValue::S(format!("c#{conversation}")))
            .key("sk", AttributeValue::S("#meta".into()))
            .update_expression("REMOVE postedSeq, unreached")
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a deployed stack: localstack/e2e.sh runs it"]
async fn a_stale_connection_is_removed_by_the_fan_outs_410() {
    let d = deployment()
        .expect("no deployed stack: run localstack/up.sh and load target/emulators/stack.env");
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = chat_tests::conv_id(&d.server.http(&alice).create_direct(&bob).await);
    // GIVEN bob's record of a connection opened a minute ago whose socket is gone
    let now = now_ms();
    let stale = format!("stale{now}");
    d.store
        .put_connection(&ConnectionRecord {
            connection_id: stale.clone(),
            user_id: user(&bob),
            device_id: None,
            connected_at: now - 60_000,
            last_frame_at: now,
            token_expires_at: i64::MAX,
        })
        .await
        .unwrap();

    // WHEN alice sends to him
    let mut alice_ws = d.server.connect(&alice).await;
    alice_ws.send_message(&id, "m-1", "hello?").await;

    // THEN the fan-out's post gets 410 and forgets exactly that connection
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while d.store.connection(&stale).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stale connection was not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alice_conns = d.store.connections_of(&[user(&alice)]).await.unwrap();
    assert_eq!(alice_conns.len(), 1, "alice's live connection is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a deployed stack: localstack/e2e.sh runs it"]
async fn the_send_function_delivers_directly_and_the_stream_posts_what_it_did_not() {
    let d = deployment()
        .expect("no deployed stack: run localstack/up.sh and load target/emulators/stack.env");
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = chat_tests::conv_id(&d.server.http(&alice).create_direct(&bob).await);
    let mut alice_ws = d.server.connect(&alice).await;
    let mut bob_ws = d.server.connect(&bob).await;
    let is_new = |seq: u64| move |f: &Value| f["type"] == "message.new" && f["seq"] == seq;
    // With the stream's trigger paused, only the send function can deliver.
    d.stream_trigger(false).await;
    alice_ws.send_message(&id, "m-1", "direct").await;
    let direct = bob_ws
        .try_recv_where(Duration::from_secs(10), is_new(1))
        .await;
    // A send whose direct delivery did not happen (as after a crash past its write):
    // nothing comes until the stream runs again, then the fan-out posts it.
    d.forget_mark(&id).await;
    alice_ws.send_message(&id, "m-2", "by the stream").await;
    let early = bob_ws
        .try_recv_where(Duration::from_secs(2), is_new(2))
        .await;
    d.stream_trigger(true).await;
    assert!(
        direct.is_ok(),
        "message 1 was not posted by the send function"
    );
    assert!(early.is_err(), "message 2 came with the stream paused");
    bob_ws
        .recv_where_within(
            "message 2, from the stream",
            Duration::from_secs(20),
            is_new(2),
        )
        .await;
    // The fan-out marked it: the next message is direct again.
    d.stream_trigger(false).await;
    alice_ws.send_message(&id, "m-3", "direct again").await;
    let again = bob_ws
        .try_recv_where(Duration::from_secs(10), is_new(3))
        .await;
    d.stream_trigger(true).await;
    assert!(
        again.is_ok(),
        "message 3 was not posted by the send function"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a deployed stack: localstack/e2e.sh runs it"]
async fn the_sweeper_closes_a_silent_connection_and_contacts_see_it_offline() {
    let d = deployment()
        .expect("no deployed stack: run localstack/up.sh and load target/emulators/stack.env");
    let (alice, bob) = (unique("alice"), unique("bob"));
    d.server.http(&alice).create_direct(&bob).await;
    let mut alice_ws = d.server.connect(&alice).await;
    let mut bob_ws = d.server.connect(&bob).await;
    // Bob's app is gone without a close: his socket stays open but sends nothing. His
    // last frame is recorded 200 s back, as if that were the last one.
    let bob_conns = d.store.connections_of(&[user(&bob)]).await.unwrap();
    let silent = &bob_conns[0].connection_id;
    d.store
        .touch_connection(silent, &user(&bob), now_ms() - 200_000)
        .await
        .unwrap();
    let report = d.sweep(&[&alice, &bob]).await;
    assert_eq!(report["closed"], 1, "bob's only: {report}");
    bob_ws.recv_close(Duration::from_secs(10)).await;
    let offline = alice_ws
        .recv_where("bob's presence: offline", |f| {
            f["type"] == "presence" && f["userId"] == bob.as_str() && f["status"] == "offline"
        })
        .await;
    assert!(offline["lastSeen"].is_i64(), "{offline}");
    assert!(
        d.store
            .connections_of(&[user(&bob)])
            .await
            .unwrap()
            .is_empty()
    );
    alice_ws.heartbeat().await;
}

/// The stack is deployed with a key set on loopback (`up.sh`: `JwksUrl`, `JwtIssuer`)
/// beside its HS256 secret: an identity provider's RS256 tokens open sockets and call the
/// HTTP API through the real functions, which fetch the keys when the first such token
/// comes; a token of a key outside the set is refused at the handshake and on HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a deployed stack: localstack/e2e.sh runs it"]
async fn an_identity_providers_tokens_reach_the_functions() {
    use chat_tests::provider::{Answer, Jwks, Key, document};
    let d = deployment()
        .expect("no deployed stack: run localstack/up.sh and load target/emulators/stack.env");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let port: u16 = var("CHAT_E2E_JWKS_PORT").parse().unwrap();
    let (issuer, audience) = (var("CHAT_E2E_JWT_ISSUER"), var("CHAT_E2E_JWT_AUDIENCE"));
    let key = Key::load("rsa-a", "e2e-1");
    let _jwks = Jwks::start_on(port, Answer::Json(document(&[&key]))).await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let token = |key: &Key, user: &str| {
        key.sign(&json!({ "sub": user, "iss": issuer, "aud": audience, "iat": now_ms() / 1000, "exp": now_ms() / 1000 + 600 }))
    };

    // A socket for bob and an HTTP call for alice, both with the provider's tokens.
    let mut bob_ws = d
        .server
        .connect_with("v=1", Some(&token(&key, &bob)), "bob (RS256)")
        .await;
    let alice_http = d.server.http_with_token(Some(token(&key, &alice)));
    let (status, created) = alice_http
        .post(
            "/v1/conversations",
            &json!({"type": "direct", "members": [bob]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = chat_tests::conv_id(&created);
    let (status, ack) = alice_http
        .post(
            &format!("/v1/conversations/{id}/messages"),
            &json!({"clientMessageId": "rs-1", "content": {"type": "text", "text": "signed by the provider"}}),
        )
        .await;
    assert_eq!(status, 201, "{ack}");
    let new = bob_ws
        .recv_where("the provider user's message", |f| {
            f["type"] == "message.new" && f["conversationId"] == id.as_str()
        })
        .await;
    assert_eq!(new["senderId"], alice.as_str());

    // A key outside the set, under the set's kid: refused everywhere.
    let forged = token(&Key::load("rsa-b", "e2e-1"), &alice);
    let (status, _) = d
        .server
        .http_with_token(Some(forged.clone()))
        .get("/v1/conversations")
        .await;
    assert_eq!(status, 401);
    let refused = d.server.try_connect("v=1", Some(&forged)).await;
    assert!(refused.is_err(), "the handshake took a forged token");
}

/// The stack's HS256 secret lives in Secrets Manager (`JwtSecretArn=create`): the tests
/// sign with the value `localstack/up.sh` read from there. Rotating it (a new value put,
/// the old one staged `AWSPREVIOUS`) reaches the running functions: the new secret's
/// tokens are accepted at the handshake and on HTTP within the minute a function may wait
/// before reading the secret again, and the old secret's tokens still are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a deployed stack: localstack/e2e.sh runs it"]
async fn a_rotated_secret_reaches_the_functions() {
    let d = deployment()
        .expect("no deployed stack: run localstack/up.sh and load target/emulators/stack.env");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let (arn, old) = (var("CHAT_E2E_TOKEN_SECRET_ARN"), var("CHAT_E2E_JWT_SECRET"));
    let secrets = common::secrets_client_at(&d.endpoint);
    let put = |value: String| {
        let (secrets, arn) = (secrets.clone(), arn.clone());
        async move { common::rotate_secret(&secrets, &arn, &value).await }
    };
    let new = format!("{}-rotated-{}", unique("secret"), now_ms());
    assert!(new.len() >= 32);
    let user = unique("carol");
    let sign = |secret: &str| {
        chat_shared::auth::TokenVerifier::new(secret, None, None).issue(
            &chat_shared::ids::UserId::parse(&user).unwrap(),
            now_ms(),
            600,
        )
    };

    // The functions have read the secret (the first token a function sees reads it).
    let (new_token, old_token) = (sign(&new), sign(&old));
    let (status, _) = d
        .server
        .http_with_token(Some(old_token.clone()))
        .get("/v1/conversations")
        .await;
    assert_eq!(status, 200);
    drop(d.server.try_connect("v=1", Some(&old_token)).await.unwrap());

    put(new.clone()).await;
    // A function reads the secret again on the first token it cannot verify, at most
    // once a minute: poll a little longer than that.
    let deadline = std::time::Instant::now() + Duration::from_secs(75);
    let mut http_status = 0;
    while std::time::Instant::now() < deadline {
        let (status, _) = d
            .server
            .http_with_token(Some(new_token.clone()))
            .get("/v1/conversations")
            .await;
        http_status = status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut socket = Err(String::new());
    while std::time::Instant::now() < deadline {
        socket = d
            .server
            .try_connect("v=1", Some(&new_token))
            .await
            .map(drop)
            .map_err(|e| format!("{e:?}"));
        if socket.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (old_status, _) = d
        .server
        .http_with_token(Some(old_token.clone()))
        .get("/v1/conversations")
        .await;
    let old_socket = d.server.try_connect("v=1", Some(&old_token)).await;
    // Back to the secret the other tests sign with (the rotated one stays as AWSPREVIOUS).
    put(old.clone()).await;

    assert_eq!(
        http_status, 200,
        "HTTP never took the rotated secret's token"
    );
    assert!(socket.is_ok(), "the handshake never took it: {socket:?}");
    assert_eq!(
        old_status, 200,
        "the previous secret's tokens stay accepted"
    );
    assert!(old_socket.is_ok(), "the previous secret at the handshake");
}
