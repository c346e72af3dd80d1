//! Against the stack deployed from `template.yaml` (on a local emulator by
//! `localstack/up.sh`, which writes `target/emulators/stack.env`): a connection whose
//! socket is gone but whose record remains (its `$disconnect` never ran) is healed by
//! the fan-out's 410. Needs the deployment, so it is `#[ignore]`d in the plain test run
//! and run by `localstack/e2e.sh`.

mod common;

use chat_aws::dynamodb::DynamoStore;
use chat_aws::tables::TableNames;
use chat_shared::ports::{ConnectionRecord, ConnectionStore};
use chat_tests::{TestServer, now_ms, unique};
use common::{dynamodb_config_at, user};
use std::time::Duration;

struct Deployment {
    server: TestServer,
    store: DynamoStore,
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
        store: DynamoStore::new(client, tables),
    })
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
