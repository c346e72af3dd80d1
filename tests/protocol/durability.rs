//! Section 3 "Send": an ack means the message will never be lost. A burst of sends over
//! several connections is cut by `kill -9`; after a restart on the same database every
//! acked message is there under its seq, the sequence has no gap, and numbering goes on.
//!
//! Acked messages not yet copied from the append log into the database must be among
//! them, or the run proves nothing about the log. Which ones those are is read from the
//! database file after the kill (not inferred from timing): a run in which the database
//! already held every acked message is run again, up to three times. The writer copies
//! the log about a second after the first ack it holds while the burst goes on, so the
//! last acks before the kill are nearly always in the log only.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

use crate::support::*;

const USERS: [&str; 4] = ["d0", "d1", "d2", "d3"];
/// In-flight sends per connection: each connection fires this many, then collects acks.
const BATCH: usize = 20;
/// Kill the server once this many sends have been acked.
const KILL_AFTER_ACKS: usize = 150;

/// A server killed with `kill -9` in the middle of a burst.
struct Killed {
    server: TestServer,
    id: String,
    acked: Vec<Value>,
    /// The seqs in the database file right after the kill.
    stored: BTreeSet<i64>,
}

/// Starts a server with `sync` as `CHAT_SQLITE_SYNC` (unset for `None`), runs the burst
/// until [`KILL_AFTER_ACKS`] acks, kills the server, and reads which seqs its database
/// held at that moment.
async fn burst_and_kill(sync: Option<&str>) -> Killed {
    let mut builder = server().env("CHAT_RATE_LIMIT_PER_MIN", "0");
    if let Some(sync) = sync {
        builder = builder.env("CHAT_SQLITE_SYNC", sync);
    }
    let mut server = builder.start().await;
    let id = conv_id(&server.http("d0").create_group("Durable", &USERS[1..]).await);
    let acked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let errors: Arc<Mutex<Vec<Value>>> = Arc::default();
    let ack_count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());

    let mut tasks = JoinSet::new();
    for user in USERS {
        let mut ws = server.connect(user).await;
        ws.ignore_type("message.new");
        ws.ignore_type("presence");
        let (id, acked, errors, ack_count, enough) = (
            id.clone(),
            acked.clone(),
            errors.clone(),
            ack_count.clone(),
            enough.clone(),
        );
        tasks.spawn(async move {
            let mut n = 0;
            'burst: while n < 10_000 {
                for _ in 0..BATCH {
                    n += 1;
                    let frame = send_action(&id, &format!("{user}-{n}"), &format!("burst {n}"));
                    if ws.try_send_json(&frame).await.is_err() {
                        break 'burst;
                    }
                }
                for _ in 0..BATCH {
                    let answer = ws
                        .try_recv_where(RECV_TIMEOUT, |f| {
                            f["type"] == "message.ack" || f["type"] == "error"
                        })
                        .await;
                    match answer {
                        Ok(frame) if frame["type"] == "message.ack" => {
                            acked.lock().expect("acks lock").push(frame);
                            if ack_count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER_ACKS {
                                enough.notify_one();
                            }
                        }
                        Ok(error) => errors.lock().expect("errors lock").push(error),
                        Err(_) => break 'burst, // the server is gone
                    }
                }
            }
        });
    }

    let progressed = tokio::time::timeout(Duration::from_secs(30), enough.notified()).await;
    assert!(progressed.is_ok(), "the burst made no progress");
    server.kill9();
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(result) = tasks.join_next().await {
            result.expect("a sender task panicked");
        }
    })
    .await;
    assert!(joined.is_ok(), "senders did not notice the dead server");
    for error in errors.lock().expect("errors lock").iter() {
        let code = error["code"].as_str().unwrap_or_default();
        assert!(
            code == "INTERNAL" || code == "UNAVAILABLE",
            "unexpected error in the burst: {error}"
        );
    }
    let acked = acked.lock().expect("acks lock").clone();
    let db = rusqlite::Connection::open(server.db_path()).expect("open the database");
    let stored = db
        .prepare("SELECT seq FROM messages WHERE conversation_id = ?1")
        .expect("prepare")
        .query_map([&id], |r| r.get(0))
        .expect("query")
        .collect::<Result<BTreeSet<i64>, _>>()
        .expect("read seqs");
    Killed {
        server,
        id,
        acked,
        stored,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acked_messages_survive_kill_9() {
    survives_kill_9(None, |_| {}).await;
}

/// `CHAT_SQLITE_SYNC=full` (fsync before each ack and every commit) keeps the same
/// promise through the same path. What it adds, surviving power loss, cannot be seen
/// from a process: this checks the mode runs the log and the restart correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_sqlite_sync_full_acked_messages_survive_kill_9() {
    survives_kill_9(Some("full"), |_| {}).await;
}

/// A damaged line in the append log (a byte that is not UTF-8, a line that is not JSON),
/// found at the start while the server was down, is skipped: the server starts and
/// keeps every acked message, those after the damaged lines included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_append_log_lines_are_skipped_and_the_lines_after_them_kept() {
    survives_kill_9(None, damage_append_log).await;
}

/// Puts a line that is not UTF-8 and one that is not JSON before everything each
/// append log segment beside `db` holds.
fn damage_append_log(db: &Path) {
    let dir = db.parent().expect("the database is in a directory");
    let prefix = format!(
        "{}-log.",
        db.file_name().expect("a file name").to_string_lossy()
    );
    let mut damaged = 0;
    for entry in std::fs::read_dir(dir).expect("list the database directory") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().expect("a file name").to_string_lossy();
        if !name.starts_with(&prefix) {
            continue;
        }
        let mut bytes = b"{\"conversationId\":\"c_\xff\xfe\"}\nnot json\n".to_vec();
        bytes.extend(std::fs::read(&path).expect("read a log segment"));
        std::fs::write(&path, bytes).expect("write a log segment");
        damaged += 1;
    }
    assert!(damaged > 0, "no append log segment beside {}", db.display());
}

/// Runs [`burst_and_kill`] until some acked messages are in the append log only, calls
/// `before_restart` with the database path, restarts, and checks every acked message.
async fn survives_kill_9(sync: Option<&str>, before_restart: fn(&Path)) {
    let mut runs = 0;
    let (killed, log_only) = loop {
        runs += 1;
        let killed = burst_and_kill(sync).await;
        let log_only: Vec<i64> = seqs(&killed.acked)
            .into_iter()
            .filter(|seq| !killed.stored.contains(seq))
            .collect();
        eprintln!(
            "durability: run {runs}: {} acks, {} in the database at the kill, {} in the log only",
            killed.acked.len(),
            killed.stored.len(),
            log_only.len()
        );
        if !log_only.is_empty() {
            break (killed, log_only);
        }
        assert!(
            runs < 3,
            "in three runs the database already held every acked message at the kill: \
             the restart from the append log was never exercised"
        );
    };
    let Killed {
        mut server,
        id,
        acked,
        ..
    } = killed;

    before_restart(server.db_path());
    server.restart().await;

    let http = server.http("d0");
    let conversation = http.conversation(&id).await;
    let last_seq = conversation["lastSeq"].as_i64().expect("lastSeq");
    let history = all_messages(&http, &id).await;
    assert_eq!(
        seqs(&history),
        (1..=last_seq).collect::<Vec<_>>(),
        "retained seqs are 1..=lastSeq without a gap"
    );
    eprintln!(
        "durability: {} acks before kill -9, lastSeq {last_seq} after restart",
        acked.len()
    );
    assert!(acked.len() >= KILL_AFTER_ACKS);
    for seq in &log_only {
        assert!(
            history.iter().any(|m| m["seq"] == *seq),
            "seq {seq}, acked but only in the append log at the kill, is lost"
        );
    }
    assert!(
        acked.len() as i64 <= last_seq,
        "{} acks but lastSeq {last_seq}",
        acked.len()
    );
    for ack in &acked {
        let seq = ack["seq"].as_i64().expect("seq");
        let message = history
            .iter()
            .find(|m| m["seq"] == seq)
            .unwrap_or_else(|| panic!("acked message lost after kill -9: {ack}"));
        assert_subset(
            message,
            &json!({"messageId": ack["messageId"], "clientMessageId": ack["clientMessageId"], "timestamp": ack["timestamp"]}),
        );
    }

    let mut ws = server.connect("d1").await;
    let next = ws
        .send_message(&id, "after-restart", "still counting")
        .await;
    assert_subset(&next, &json!({"seq": last_seq + 1, "duplicate": false}));

    let first = &acked[0];
    let client_message_id = first["clientMessageId"].as_str().expect("clientMessageId");
    let sender = client_message_id.split('-').next().expect("user prefix");
    let mut sender_ws = server.connect(sender).await;
    let retry = sender_ws
        .send_message(&id, client_message_id, "retry")
        .await;
    assert_subset(
        &retry,
        &json!({"seq": first["seq"], "messageId": first["messageId"], "duplicate": true}),
    );
}
