//! PROTOCOL.md 8.2, "Deleting erases": within 60 s of a delete, no file of the store
//! (the database, its WAL, the append log) holds the text of the deleted message or of
//! its edits, nor the push that announced it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

/// The files of the database's directory that hold `marker`.
fn files_holding(db: &Path, marker: &str) -> Vec<String> {
    let dir = db.parent().expect("the database is in a directory");
    let needle = marker.as_bytes();
    std::fs::read_dir(dir)
        .expect("list the database directory")
        .filter_map(|entry| {
            let path = entry.expect("a directory entry").path();
            let bytes = std::fs::read(&path).ok()?;
            bytes
                .windows(needle.len())
                .any(|w| w == needle)
                .then(|| path.file_name().unwrap().to_string_lossy().into_owned())
        })
        .collect()
}

/// Waits (up to the protocol's 60 s) until no file holds any of `markers`; the files
/// that still do when it gives up.
async fn wait_until_gone(db: &Path, markers: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holding: Vec<String> = markers.iter().flat_map(|m| files_holding(db, m)).collect();
        if holding.is_empty() || Instant::now() > deadline {
            return holding;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_message_and_its_edits_leave_no_trace_in_any_file() {
    // GIVEN a message pushed to bob's phone, edited once, in a store with other traffic
    let server = server().env("CHAT_DEV_ENDPOINTS", "1").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let (status, body) = server
        .http("bob")
        .post(
            "/v1/devices",
            &json!({"deviceId": "phone", "platform": "fcm", "token": "t-bob"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut alice = server.connect("alice").await;
    alice
        .send_message(&id, "before", "an unrelated message")
        .await;
    let original = "ORIGINAL-7f3a9c-marker";
    let edited = "EDITED-41be02-marker";
    let ack = alice.send_message(&id, "secret", original).await;
    let seq = ack["seq"].as_u64().unwrap();
    let edit = alice
        .request(json!({
            "action": "edit", "conversationId": id, "clientMessageId": "fix",
            "targetSeq": seq, "content": {"type": "text", "text": edited},
        }))
        .await;
    assert_eq!(edit["type"], "message.ack", "{edit}");
    alice
        .send_message(&id, "after", "another unrelated one")
        .await;
    // The text reached the files: the log, the WAL or the database, and the push outbox.
    server
        .wait_for_pushes("the original's push", |p| {
            p.iter().any(|push| push["body"] == original)
        })
        .await;
    assert!(
        !files_holding(server.db_path(), original).is_empty(),
        "the test looks in the wrong place"
    );

    // WHEN alice deletes it
    let delete = alice
        .request(json!({
            "action": "delete", "conversationId": id, "clientMessageId": "oops",
            "targetSeq": seq,
        }))
        .await;
    assert_eq!(delete["type"], "message.ack", "{delete}");

    // THEN within 60 s no file holds either text
    let left = wait_until_gone(server.db_path(), &[original, edited]).await;
    assert!(left.is_empty(), "still in {left:?}");
    // AND the message is a tombstone, while the others are intact
    let (_, page) = server
        .http("bob")
        .get(&format!("/v1/conversations/{id}/messages"))
        .await;
    let messages = page["messages"].as_array().unwrap();
    let target = messages.iter().find(|m| m["seq"] == seq).unwrap();
    assert_subset(
        target,
        &json!({"deleted": true, "deletedBy": "alice", "content": null, "editedAt": null}),
    );
    assert_eq!(messages[0]["content"]["text"], "an unrelated message");
}
