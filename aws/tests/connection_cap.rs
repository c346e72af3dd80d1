//! The per-user connection cap on AWS: over the cap, `$connect` closes the user's oldest
//! connection through the Management API's DeleteConnection (moto answers it as API
//! Gateway does) and forgets it; the others stay. Over DynamoDB Local.

mod common;

use std::sync::Arc;

use chat_aws::dynamodb::DynamoStore;
use chat_aws::sns::{PlatformApplications, SnsPush};
use chat_shared::Chat;
use chat_shared::auth::TokenVerifier;
use chat_shared::config::Limits;
use chat_shared::ports::{ConnectionStore, SystemClock};
use chat_shared::service::Ports;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_closes_the_oldest_through_delete_connection() {
    // GIVEN a cap of 2, and bob with two connections
    let dynamodb = dynamodb_client();
    let names = tables(&dynamodb, "cap").await;
    let store = DynamoStore::new(dynamodb, names);
    let tap = Arc::new(Tap::new(moto_gateway()));
    let chat = Chat::new(
        Ports {
            store: Arc::new(store.clone()),
            gateway: tap.clone(),
            push: Arc::new(SnsPush::new(sns_client(), PlatformApplications::default())),
            clock: Arc::new(SystemClock),
            attachments: None,
            direct: None,
        },
        Limits {
            max_connections_per_user: 2,
            ..Limits::default()
        },
        TokenVerifier::new("aws-tests", None, None),
    );
    let bob = user("bob");
    // Connected in id order: a tie in connectedAt is broken by the id.
    chat.connect("cap-b1", &bob, None, i64::MAX).await.unwrap();
    chat.connect("cap-b2", &bob, None, i64::MAX).await.unwrap();
    assert!(tap.closed.lock().unwrap().is_empty());

    // WHEN he opens a third
    chat.connect("cap-b3", &bob, None, i64::MAX).await.unwrap();

    // THEN the Management API was asked to close the oldest, and accepted; it is
    // forgotten, and the two newest stay
    assert_eq!(*tap.closed.lock().unwrap(), ["cap-b1"]);
    let mut left: Vec<String> = store
        .connections_of(std::slice::from_ref(&bob))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    left.sort();
    assert_eq!(left, ["cap-b2", "cap-b3"]);
}
