//! Retention over the real SQLite store, with an injected clock (a day cannot pass in a
//! black-box test).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

mod common;

use chat_shared::config::Limits;
use chat_shared::ids::{ClientMessageId, UserId};
use chat_shared::ports::{ChangeFeed, Clock};
use chat_shared::protocol::AppendRequest;
use chat_shared::service::{HistoryQuery, SyncCursor};

const DAY_MS: i64 = 86_400_000;

struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

#[tokio::test]
async fn expired_messages_are_never_returned_and_first_seq_moves_up() {
    // GIVEN one-day retention and two messages sent at t0
    let clock = Arc::new(ManualClock(AtomicI64::new(1_000 * DAY_MS)));
    let limits = Limits {
        retention_days: 1,
        ..Limits::default()
    };
    let (chat, store, _dir) = common::chat(clock.clone(), limits);
    let (alice, bob) = (user("alice"), user("bob"));
    let conv_id = common::direct(&chat, &alice, &bob).await;
    let id = conv_id;
    let send =
        |cmid: &str| AppendRequest::text(id.clone(), ClientMessageId::parse(cmid).unwrap(), cmid);
    chat.append(&alice, None, send("a")).await.unwrap();
    chat.append(&alice, None, send("b")).await.unwrap();

    // WHEN a day and a millisecond pass and a third message is sent
    clock.0.fetch_add(DAY_MS + 1, Ordering::SeqCst);
    let third = chat.append(&alice, None, send("c")).await.unwrap();

    // THEN history, the conversation and sync only show the retained message
    let all = HistoryQuery {
        before: None,
        after: None,
        limit: 50,
    };
    let (messages, has_more) = chat.history(&bob, &id, all).await.unwrap();
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [third.seq]
    );
    assert!(!has_more);
    let view = chat.get_conversation(&bob, &id).await.unwrap();
    assert_eq!((view.first_seq, view.last_seq), (3, 3));
    let cursor = SyncCursor {
        conversation_id: id.clone(),
        after_seq: 0,
    };
    let synced = chat.sync(&bob, &[cursor], 100).await.unwrap();
    assert_eq!(synced.conversations[0].first_seq, 3);
    assert_eq!(synced.conversations[0].messages.len(), 1);

    // AND the sweeper deletes the expired rows once they were fanned out
    let pending = store.pending().await.unwrap();
    store
        .acknowledge(pending.into_iter().map(|item| item.position).collect())
        .await
        .unwrap();
    assert_eq!(chat.expire_messages().await.unwrap(), 2);
    let view = chat.get_conversation(&bob, &id).await.unwrap();
    assert_eq!((view.first_seq, view.last_seq), (3, 3));
}
