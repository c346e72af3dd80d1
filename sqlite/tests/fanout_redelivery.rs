//! The local change feed is at-least-once (the outbox replays after a crash): a message
//! fanned out twice must not push a phone twice.

use std::sync::Arc;

mod common;

use chat_shared::config::Limits;
use chat_shared::ids::{ClientMessageId, DeviceId, UserId};
use chat_shared::ports::ReceiptStore;
use chat_shared::ports::{ChangeFeed, Platform, SystemClock};
use chat_shared::protocol::AppendRequest;

#[tokio::test]
async fn a_replayed_outbox_entry_pushes_once() {
    // GIVEN bob is offline with a phone, and alice's message is in the outbox
    let (chat, store, _dir) = common::chat(Arc::new(SystemClock), Limits::default());
    let (alice, bob) = (
        UserId::parse("alice").unwrap(),
        UserId::parse("bob").unwrap(),
    );
    let conv_id = common::direct(&chat, &alice, &bob).await;
    chat.register_device(
        &bob,
        DeviceId::parse("phone").unwrap(),
        Platform::Apns,
        "tok".into(),
    )
    .await
    .unwrap();
    let send = AppendRequest::text(conv_id, ClientMessageId::parse("m1").unwrap(), "hello");
    chat.append(&alice, None, send).await.unwrap();
    let pending = store.pending().await.unwrap();
    assert_eq!(pending.len(), 1);

    // WHEN it is fanned out, then replayed as after a crash before the outbox row went
    chat.fan_out(&pending[0].message).await.unwrap();
    chat.fan_out(&pending[0].message).await.unwrap();

    // THEN bob's phone was pushed once, with his unread count as the badge
    let pushes = store.pushes().await.unwrap();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].notification.badge, 1);
    assert_eq!(store.total_unread(&bob).await.unwrap(), 1);
}
