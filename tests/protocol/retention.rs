//! Section 3 "Retention" through `chat-local`: `CHAT_RETENTION_DAYS`, the sweep, and
//! `firstSeq` moving past everything expired.
//!
//! Retention counts in days and the server has no clock to move, so messages are aged
//! where their time lives: the server is stopped, the `timestamp` of some messages is
//! moved back in its database file, and the server is started again on it. Everything
//! after that is black-box: the sweep (which runs at start, then every minute), history,
//! the conversation object, sync, and a retried `clientMessageId`.

use crate::support::*;

const DAY_MS: i64 = 86_400_000;

/// Sends `count` messages as alice over HTTP (`cm-1`, `cm-2`, ...).
async fn send(server: &TestServer, id: &str, count: usize) {
    for n in 1..=count {
        let (status, body) = server
            .http("alice")
            .send_message(id, &format!("cm-{n}"), &format!("message {n}"))
            .await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Stops the server, moves the messages of `id` with seq <= `up_to` back `by_ms`, and
/// starts it again on the same database.
async fn age(server: &mut TestServer, changes: &[(&str, i64)], by_ms: i64) {
    assert_eq!(
        server.terminate(Duration::from_secs(10)),
        Some(true),
        "the server stops cleanly on SIGTERM"
    );
    let db = rusqlite::Connection::open(server.db_path()).expect("open the database");
    for (id, up_to) in changes {
        let moved = db
            .execute(
                "UPDATE messages SET timestamp = timestamp - ?1
                 WHERE conversation_id = ?2 AND seq <= ?3",
                rusqlite::params![by_ms, id, up_to],
            )
            .expect("age the messages");
        assert_eq!(
            moved as i64, *up_to,
            "messages 1..={up_to} of {id} are stored"
        );
    }
    drop(db);
    server.restart().await;
}

/// Sends `cm-1` again as alice until the answer is a new message: the sweep deleted the
/// original and its `clientMessageId` with it. Answers that ack.
async fn wait_for_the_sweep(server: &TestServer, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let (status, ack) = server
            .http("alice")
            .send_message(id, "cm-1", "sent again")
            .await;
        match status {
            201 => return ack,
            200 => assert_eq!(ack["duplicate"], true, "{ack}"),
            _ => panic!("retry of cm-1: {status} {ack}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cm-1 was still remembered {RECV_TIMEOUT:?} after the start: no sweep ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_older_than_the_retention_are_swept_and_first_seq_moves_past_them() {
    // GIVEN one-day retention, a conversation with 3 messages and a group with 2
    let mut server = server().env("CHAT_RETENTION_DAYS", "1").start().await;
    let partly = conv_id(&server.http("alice").create_direct("bob").await);
    let wholly = conv_id(&server.http("alice").create_group("Old", &["bob"]).await);
    send(&server, &partly, 3).await;
    send(&server, &wholly, 2).await;

    // WHEN the first two of the one and both of the other are two days old
    age(&mut server, &[(&partly, 2), (&wholly, 2)], 2 * DAY_MS).await;

    // THEN history, conversation and sync leave them out, and firstSeq is past them
    let bob = server.http("bob");
    let history = bob.messages(&partly, "").await;
    assert_eq!(seqs(history["messages"].as_array().unwrap()), [3]);
    assert_eq!(
        history["hasMore"], false,
        "expired messages do not count: {history}"
    );
    assert_subset(
        &bob.conversation(&partly).await,
        &json!({"firstSeq": 3, "lastSeq": 3}),
    );
    assert_subset(
        &bob.conversation(&wholly).await,
        &json!({"firstSeq": 3, "lastSeq": 2}),
    );
    assert_eq!(bob.messages(&wholly, "").await["messages"], json!([]));
    let (status, synced) = bob
        .post(
            "/v1/sync",
            &json!({"conversations": [{"conversationId": partly, "afterSeq": 0},
                                      {"conversationId": wholly, "afterSeq": 0}]}),
        )
        .await;
    assert_eq!(status, 200, "{synced}");
    let entries = synced["conversations"].as_array().expect("conversations");
    let entry = |id: &str| {
        entries
            .iter()
            .find(|e| e["conversationId"] == id)
            .unwrap_or_else(|| panic!("{id} missing from {synced}"))
    };
    assert_eq!(seqs(entry(&partly)["messages"].as_array().unwrap()), [3]);
    assert_subset(entry(&partly), &json!({"firstSeq": 3, "lastSeq": 3}));
    assert_subset(
        entry(&wholly),
        &json!({"messages": [], "firstSeq": 3, "lastSeq": 2}),
    );

    // AND the sweep deletes them: their clientMessageId stores a new message
    let again = wait_for_the_sweep(&server, &partly).await;
    assert_subset(&again, &json!({"seq": 4, "duplicate": false}));
    // while a message still retained is remembered
    let (status, retry) = server
        .http("alice")
        .send_message(&partly, "cm-3", "message 3")
        .await;
    assert_eq!(status, 200, "{retry}");
    assert_subset(&retry, &json!({"seq": 3, "duplicate": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_retention_keeps_messages_forever() {
    let mut server = server().env("CHAT_RETENTION_DAYS", "0").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    send(&server, &id, 2).await;

    age(&mut server, &[(&id, 2)], 10 * 365 * DAY_MS).await;

    let history = server.http("bob").messages(&id, "").await;
    assert_eq!(seqs(history["messages"].as_array().unwrap()), [1, 2]);
    assert_subset(
        &server.http("bob").conversation(&id).await,
        &json!({"firstSeq": 1, "lastSeq": 2}),
    );
    // Remembered, so never swept: a retry is the original.
    let (status, retry) = server
        .http("alice")
        .send_message(&id, "cm-1", "again")
        .await;
    assert_eq!(status, 200, "{retry}");
    assert_subset(&retry, &json!({"seq": 1, "duplicate": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_retention_is_365_days() {
    let mut server = server().env_remove("CHAT_RETENTION_DAYS").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    send(&server, &id, 2).await;

    // 364 days old is kept, 366 days old is not.
    age(&mut server, &[(&id, 2)], 364 * DAY_MS).await;
    assert_eq!(
        server.http("bob").conversation(&id).await["firstSeq"],
        1,
        "364 days old is retained"
    );
    age(&mut server, &[(&id, 1)], 2 * DAY_MS).await;
    assert_subset(
        &server.http("bob").conversation(&id).await,
        &json!({"firstSeq": 2, "lastSeq": 2}),
    );
}
