//! On AWS a connection cannot be posted to during its own `$connect` (410). Presence
//! announced while connecting must not take that for a dead connection and delete it.

mod common;

use std::sync::Arc;

use chat_shared::config::Limits;
use chat_shared::ids::UserId;
use chat_shared::ports::ConnectionStore;
use chat_shared::ports::SystemClock;

#[tokio::test]
async fn connections_that_answer_gone_while_opening_are_kept() {
    // GIVEN alice and bob share a conversation, and no socket accepts frames yet (as
    // during $connect on API Gateway)
    let (chat, store, _dir) = common::chat(Arc::new(SystemClock), Limits::default());
    let (alice, bob) = (
        UserId::parse("alice").unwrap(),
        UserId::parse("bob").unwrap(),
    );
    common::direct(&chat, &alice, &bob).await;

    // WHEN bob connects, then alice (whose presence is announced to bob's new connection)
    chat.connect("bob-1", &bob, None, i64::MAX).await.unwrap();
    chat.connect("alice-1", &alice, None, i64::MAX)
        .await
        .unwrap();

    // THEN both connections are still recorded
    assert!(store.connection("bob-1").await.unwrap().is_some());
    assert!(store.connection("alice-1").await.unwrap().is_some());
}
