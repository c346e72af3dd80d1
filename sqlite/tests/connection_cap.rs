//! The per-user connection cap lives in the core, so the Lambda `$connect` obeys it like
//! the local server: beyond `max_connections_per_user`, the oldest connections go.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chat_shared::config::Limits;
use chat_shared::ids::Millis;
use chat_shared::ports::Clock;

struct StepClock(AtomicI64);

impl Clock for StepClock {
    fn now_ms(&self) -> Millis {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

fn limits(cap: u32) -> Limits {
    Limits {
        max_connections_per_user: cap,
        ..Limits::default()
    }
}

async fn connection_ids(store: &chat_sqlite::SqliteStore, user: &str) -> Vec<String> {
    use chat_shared::ports::ConnectionStore;
    let mut ids: Vec<String> = store
        .connections_of(&[common::user(user)])
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.connection_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_connection_over_the_cap_forgets_the_oldest_of_that_user_only() {
    // GIVEN a cap of 3, bob with three connections, alice with one
    let clock = Arc::new(StepClock(AtomicI64::new(1_000_000)));
    let (chat, store, _dir) = common::chat(clock, limits(3));
    let (alice, bob) = (common::user("alice"), common::user("bob"));
    chat.connect("a-1", &alice, None, i64::MAX).await.unwrap();
    for id in ["b-1", "b-2", "b-3"] {
        chat.connect(id, &bob, None, i64::MAX).await.unwrap();
    }

    // WHEN bob opens a fourth and a fifth
    chat.connect("b-4", &bob, None, i64::MAX).await.unwrap();
    chat.connect("b-5", &bob, None, i64::MAX).await.unwrap();

    // THEN his two oldest are forgotten, the new ones and alice's are kept
    assert_eq!(connection_ids(&store, "bob").await, ["b-3", "b-4", "b-5"]);
    assert_eq!(connection_ids(&store, "alice").await, ["a-1"]);
}

#[tokio::test]
async fn a_cap_of_zero_keeps_every_connection() {
    let clock = Arc::new(StepClock(AtomicI64::new(1_000_000)));
    let (chat, store, _dir) = common::chat(clock, limits(0));
    let bob = common::user("bob");
    for i in 0..12 {
        chat.connect(&format!("b-{i:02}"), &bob, None, i64::MAX)
            .await
            .unwrap();
    }

    assert_eq!(connection_ids(&store, "bob").await.len(), 12);
}
