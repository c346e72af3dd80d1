//! Deleting erases (PROTOCOL.md 8.2), checked where the text could hide: every item of
//! every table, read back raw after a delete. DynamoDB only: the SQLite store's files
//! are checked by its own tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chat_aws::dynamodb::DynamoStore;
use chat_aws::tables::{TableNames, create_all};
use chat_shared::ports::{AppendOutcome, NewMessage, Store};
use chat_shared::protocol::{Content, Entry};

use crate::cases::{group, message, user};
use crate::common::every_string;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_delete_no_item_holds_the_message_or_its_edits() {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let client = crate::dynamodb_client();
    let names = TableNames::prefixed(&format!(
        "erase{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    create_all(&client, &names).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(client.clone(), names.clone()));
    // GIVEN a message, two edits, reactions and a reply to it
    let id = group(&store, &["alice", "bob"], 1).await;
    let entry = |sender: &str, cmid: &str, entry: Entry| NewMessage {
        entry,
        ..message(&id, sender, cmid, 10)
    };
    let text = |s: &str| Some(Content::text(s));
    let steps = [
        entry(
            "alice",
            "m",
            Entry::Message {
                content: text("secret original"),
                reply_to: None,
            },
        ),
        entry(
            "alice",
            "e1",
            Entry::Edit {
                target_seq: 1,
                content: text("secret first edit"),
            },
        ),
        entry(
            "alice",
            "e2",
            Entry::Edit {
                target_seq: 1,
                content: text("secret second edit"),
            },
        ),
        entry(
            "bob",
            "r",
            Entry::Reaction {
                target_seq: 1,
                emoji: "👍".into(),
                removed: false,
            },
        ),
        entry(
            "bob",
            "re",
            Entry::Message {
                content: text("a reply that stays"),
                reply_to: Some(1),
            },
        ),
        entry("alice", "d", Entry::Delete { target_seq: 1 }),
    ];
    for step in &steps {
        let outcome = store.append_message(step).await.unwrap();
        assert!(matches!(outcome, AppendOutcome::Stored(_)), "{outcome:?}");
    }
    // WHEN every item of every table is read back
    let all = every_string(&client, &names).await;
    // THEN none holds the text of the message or of its edits
    assert!(all.iter().any(|s| s.contains("a reply that stays")));
    let leaks: Vec<&String> = all.iter().filter(|s| s.contains("secret")).collect();
    assert!(leaks.is_empty(), "erased text still stored: {leaks:?}");
    // AND its reaction items are gone with it
    let reactions: Vec<&String> = all
        .iter()
        .filter(|s| s.starts_with("ru#") || s.starts_with("rt#"))
        .collect();
    assert!(reactions.is_empty(), "reaction items left: {reactions:?}");
    let (conv, _) = store.membership(&id, &user("bob")).await.unwrap().unwrap();
    assert_eq!((conv.last_seq, conv.message_count), (6, 2));
}
