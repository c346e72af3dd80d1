//! Unit tests of the store as a whole: restarts, crashes, applying acked messages.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::mpsc;

use chat_shared::ids::{ConversationId, Seq, UserId};
use chat_shared::ports::{
    AppendOutcome, ChangeFeed, ConversationKind, ConversationStore, FeedItem, MessageQuery,
    MessageRecord, MessageStore, NewConversation, NewMessage, ReceiptStore,
};

use crate::schema::Durability;
use crate::store::SqliteStore;
use crate::writer::APPLY_EVERY;

/// Message `seq` of `conversation`, sent by alice with client message id `k<seq>`: for
/// the unit tests of the store's parts.
#[cfg(test)]
pub(crate) fn test_message(conversation: &str, seq: Seq) -> MessageRecord {
    MessageRecord {
        conversation_id: ConversationId::parse(conversation).unwrap(),
        seq,
        message_id: format!("m{seq}"),
        sender_id: UserId::parse("alice").unwrap(),
        client_message_id: format!("k{seq}"),
        entry: chat_shared::protocol::Entry::Message {
            content: Some(chat_shared::protocol::Content::text("hi")),
            reply_to: None,
        },
        timestamp: 5,
        origin_connection: None,
        state: Default::default(),
    }
}

pub(crate) fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub(crate) async fn group(store: &SqliteStore) -> ConversationId {
    let id = chat_shared::domain::new_conversation_id();
    store
        .create_group(&NewConversation {
            id: id.clone(),
            kind: ConversationKind::Group,
            name: Some("g".into()),
            now: 1,
            members: vec![user("alice"), user("bob")],
        })
        .await
        .unwrap();
    id
}

pub(crate) fn message(conversation: &ConversationId, cmid: &str) -> NewMessage {
    NewMessage {
        conversation_id: conversation.clone(),
        message_id: chat_shared::domain::new_message_id(),
        sender_id: user("alice"),
        client_message_id: cmid.into(),
        entry: chat_shared::protocol::Entry::Message {
            content: Some(chat_shared::protocol::Content::text("hi")),
            reply_to: None,
        },
        now: 10,
        origin_connection: None,
        expires_at: None,
        hint: None,
        rules: chat_shared::ports::EntryRules {
            retained_since: i64::MIN,
            edit_window_ms: 0,
        },
    }
}

/// A store at `path`, subscribed to its change feed, with one group.
async fn subscribed_with_group(
    path: &Path,
    apply_every: Duration,
) -> (
    SqliteStore,
    mpsc::UnboundedReceiver<FeedItem>,
    ConversationId,
) {
    let store = SqliteStore::open_applying_every(path, Durability::Process, apply_every).unwrap();
    let feed = store.subscribe();
    let conv = group(&store).await;
    (store, feed, conv)
}

/// A conversation's whole history (at most 100 messages), oldest first.
async fn history(store: &SqliteStore, conversation: &ConversationId) -> Vec<MessageRecord> {
    let query = MessageQuery {
        after: None,
        before: None,
        min_timestamp: 0,
        limit: 100,
        newest: false,
    };
    let (found, more) = store
        .messages(conversation, &user("alice"), query)
        .await
        .unwrap();
    assert!(!more, "at most 100 messages");
    found
}

/// Appends a message under a new key: it must be stored.
pub(crate) async fn stored(
    store: &SqliteStore,
    conversation: &ConversationId,
    cmid: &str,
) -> MessageRecord {
    match store
        .append_message(&message(conversation, cmid))
        .await
        .unwrap()
    {
        AppendOutcome::Stored(m) => m,
        other => panic!("a new key stores, got {other:?}"),
    }
}

#[tokio::test]
async fn committed_but_not_fanned_out_messages_survive_a_restart() {
    // GIVEN a message committed while a subscriber was listening, never acked
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let (store, mut feed, conv) = subscribed_with_group(&path, APPLY_EVERY).await;
    store.append_message(&message(&conv, "m1")).await.unwrap();
    let FeedItem {
        position: id,
        message: first,
    } = feed.recv().await.unwrap();
    store.append_message(&message(&conv, "m2")).await.unwrap();
    store.acknowledge(vec![id]).await.unwrap();
    // A clean stop: everything acked goes into the database.
    store.settle().await.unwrap();
    drop(store);

    // WHEN the database is opened again
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    let pending = store.pending().await.unwrap();

    // THEN only the un-acked message is pending, in order
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message.seq, first.seq + 1);
    assert_eq!(pending[0].message.client_message_id, "m2");
}

/// Copies the database with its WAL and append log as they are on disk now: what a
/// process killed at this moment would leave.
fn crash_copy(from: &Path, to: &Path) {
    let name = from.file_name().unwrap().to_string_lossy().into_owned();
    for entry in std::fs::read_dir(from.parent().unwrap()).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(suffix) = file.strip_prefix(&name) {
            let mut target = to.as_os_str().to_owned();
            target.push(suffix);
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn stored_messages(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn messages_acked_but_not_yet_applied_survive_a_crash() {
    // GIVEN acked messages, one of them fanned out, none applied yet (the writer waits
    // an hour before it applies them, however slow the machine)
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let (store, mut feed, conv) = subscribed_with_group(&live, Duration::from_secs(3600)).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        let AppendOutcome::Stored(m) = store
            .append_message(&message(&conv, &format!("k{i}")))
            .await
            .unwrap()
        else {
            panic!("a new key stores")
        };
        acked.push(m);
    }
    let first_id = feed.recv().await.unwrap().position;
    store.acknowledge(vec![first_id]).await.unwrap();

    // WHEN the process dies now, and the database is opened again
    let copy = dir.path().join("copy.db");
    crash_copy(&live, &copy);
    assert_eq!(
        stored_messages(&copy),
        0,
        "the messages are only in the log"
    );
    let store = SqliteStore::open(&copy, Durability::Process).unwrap();

    // THEN every acked message is there, counter and all, and waits for fan-out (the
    // first one's fan-out was noted in memory only, so it is repeated: at least once)
    let found = history(&store, &conv).await;
    assert_eq!(found, acked);
    let conversation = store.conversation(&conv).await.unwrap().unwrap();
    assert_eq!(conversation.last_seq, 50);
    assert_eq!(store.pending().await.unwrap().len(), 50);
    // and the next message takes the next seq
    let next = stored(&store, &conv, "next").await;
    assert_eq!(next.seq, 51);
    // and a retry of one in the log is recognised
    let again = store.append_message(&message(&conv, "k7")).await.unwrap();
    assert_eq!(again, AppendOutcome::Duplicate(acked[7].clone()));
}

/// Waits (up to five seconds) until the database file holds `count` messages.
pub(crate) async fn applied(path: &Path, count: i64) -> bool {
    for _ in 0..100 {
        if stored_messages(path) == count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn acked_messages_reach_the_database_with_nothing_else_written() {
    // GIVEN a store that acked messages one batch at a time, and writes nothing else
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    let conv = group(&store).await;
    for i in 0..3 {
        stored(&store, &conv, &format!("a{i}")).await;
    }

    // THEN the writer applies them on its own within its interval
    assert!(applied(&path, 3).await, "the first messages were applied");
    // AND so it does again for messages acked after that
    for i in 0..2 {
        stored(&store, &conv, &format!("b{i}")).await;
    }
    assert!(applied(&path, 5).await, "later messages were applied too");
}

#[test]
fn a_store_opened_outside_a_runtime_sequences_on_a_thread_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("o.db"), Durability::Process).unwrap();
    // The runtime comes later and is gone before the next one uses the store.
    for key in ["a", "b"] {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let conv = group(&store).await;
            assert_eq!(stored(&store, &conv, key).await.seq, 1);
        });
    }
}

#[tokio::test]
async fn retries_of_messages_in_flight_return_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db"), Durability::Process).unwrap();
    let conv = group(&store).await;
    let a = stored(&store, &conv, "x").await;
    assert!(
        store.inner.in_flight.holds(conv.as_str()),
        "not applied yet"
    );
    let found = store
        .find_by_client_id(&conv, &user("alice"), "x")
        .await
        .unwrap();
    assert_eq!(found, Some(a.clone()));
    let again = store.append_message(&message(&conv, "x")).await.unwrap();
    assert_eq!(again, AppendOutcome::Duplicate(a));
}

#[tokio::test]
async fn retries_of_messages_stored_before_a_restart_are_recognised() {
    // GIVEN 300 messages an earlier process stored
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    let conv = group(&store).await;
    let mut originals = Vec::new();
    for i in 0..300 {
        originals.push(stored(&store, &conv, &format!("k{i}")).await);
    }
    store.settle().await.unwrap();
    drop(store);

    // WHEN the next process gets each again, while its keys are read and after
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    for (i, original) in originals.into_iter().enumerate() {
        let again = store
            .append_message(&message(&conv, &format!("k{i}")))
            .await
            .unwrap();
        assert_eq!(again, AppendOutcome::Duplicate(original));
    }

    // THEN each is answered with its original and none took a seq
    assert_eq!(stored(&store, &conv, "new").await.seq, 301);
}

#[tokio::test]
async fn writes_that_read_counters_see_the_messages_in_flight() {
    // GIVEN three messages acked, not yet applied
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db"), Durability::Process).unwrap();
    let conv = group(&store).await;
    for k in ["a", "b", "c"] {
        stored(&store, &conv, k).await;
    }
    assert!(
        store.inner.in_flight.holds(conv.as_str()),
        "not applied yet"
    );

    // WHEN bob reads up to them and carol joins
    let receipt = store
        .update_receipts(&conv, &user("bob"), Some(3), Some(3))
        .await
        .unwrap()
        .unwrap();
    store
        .add_members(
            &conv,
            &[user("carol")],
            100,
            &chat_shared::ports::Change {
                actor: user("alice"),
                now: 20,
                expires_at: None,
            },
        )
        .await
        .unwrap();

    // THEN the receipt was not cut back to what the database held before, and carol
    // starts at the entry that added her, after the last message, as every read says
    assert_eq!(receipt.positions.read_up_to, 3);
    let (c, carol) = store
        .membership(&conv, &user("carol"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.last_seq, carol.read_up_to), (4, 4));
    assert_eq!((c.message_count, carol.read_messages), (3, 3));
    let (_, alice) = store
        .membership(&conv, &user("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.read_up_to, 3, "a sender has read its own messages");
}

#[tokio::test]
async fn reads_of_the_database_are_brought_up_to_messages_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db"), Durability::PowerLoss).unwrap();
    let conv = group(&store).await;
    let sent = [
        stored(&store, &conv, "a").await,
        stored(&store, &conv, "b").await,
    ];
    // A roster loaded from the database now (nothing kept: say it was forgotten)
    store.inner.cache.forget_conversation(conv.as_str());
    let conversation = store.conversation(&conv).await.unwrap().unwrap();
    assert_eq!(conversation.last_seq, 2);
    assert_eq!(conversation.last_message_at, sent[1].timestamp);
    // History waits for the apply
    let history = history(&store, &conv).await;
    assert_eq!(history, sent);
    assert!(!store.inner.in_flight.holds(conv.as_str()));
}

#[tokio::test]
async fn retries_queued_beside_their_original_get_it_back_and_burn_no_seq() {
    // GIVEN 40 messages each sent three times at once, so that retries share the
    // sequencer's batches with their originals
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db"), Durability::Process).unwrap();
    let conv = group(&store).await;
    let sends: Vec<NewMessage> = (0..120)
        .map(|i| message(&conv, &format!("k{}", i % 40)))
        .collect();

    // WHEN they are all appended concurrently
    let outcomes =
        futures_util::future::join_all(sends.iter().map(|m| store.append_message(m))).await;

    // THEN each key got one seq, 1 to 40 with no gap, and its retries that same record
    let mut originals = std::collections::HashMap::new();
    for outcome in &outcomes {
        if let AppendOutcome::Stored(m) = outcome.as_ref().unwrap() {
            assert!(
                originals
                    .insert(m.client_message_id.clone(), m.clone())
                    .is_none()
            );
        }
    }
    let mut seqs: Vec<Seq> = originals.values().map(|m| m.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<Seq>>());
    for outcome in outcomes {
        if let AppendOutcome::Duplicate(m) = outcome.unwrap() {
            assert_eq!(originals[&m.client_message_id], m);
        }
    }
}

#[tokio::test]
async fn retries_return_the_original_and_burn_no_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db"), Durability::Process).unwrap();
    let conv = group(&store).await;
    let a = stored(&store, &conv, "x").await;
    let again = store.append_message(&message(&conv, "x")).await.unwrap();
    assert_eq!(again, AppendOutcome::Duplicate(a.clone()));
    let b = stored(&store, &conv, "y").await;
    assert_eq!((a.seq, b.seq), (1, 2));
}

#[tokio::test]
async fn a_system_entry_owed_by_a_change_is_appended_at_the_next_start() {
    // GIVEN a membership change committed with the entry it owes, by a process that died
    // before appending it (written here as the change's own transaction writes it)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    let conv = group(&store).await;
    stored(&store, &conv, "m1").await;
    let by = chat_shared::ports::Change {
        actor: user("alice"),
        now: 50,
        expires_at: None,
    };
    let owed = by.entry(
        &conv,
        by.by_actor(
            chat_shared::protocol::SystemEvent::MemberAdded,
            vec![user("carol")],
        ),
    );
    let written = owed.clone();
    store
        .write(move |tx| crate::system::owe(tx, &written))
        .await
        .unwrap();
    store.settle().await.unwrap();
    drop(store);

    // WHEN the database is opened again
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    store.settle().await.unwrap();

    // THEN the entry is appended once, after what was there, and no longer owed
    let entries = history(&store, &conv).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[1].client_message_id, owed.client_message_id);
    assert_eq!(entries[1].entry, owed.entry);
    let owing: i64 = store
        .lookup(|c| c.query_row("SELECT COUNT(*) FROM pending_entries", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(owing, 0);
    // AND opening it again appends nothing more
    drop(store);
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    store.settle().await.unwrap();
    assert_eq!(history(&store, &conv).await.len(), 2);
}
