//! Section 3 "Send": an ack means the message will never be lost. A burst of sends over
//! several connections is cut by `kill -9`; after a restart on the same database every
//! acked message is there under its seq, the sequence has no gap, and numbering goes on.
//! Acked messages not yet copied from the append log into the database are among them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::task::JoinSet;

use crate::support::*;

const USERS: [&str; 4] = ["d0", "d1", "d2", "d3"];
/// In-flight sends per connection: each connection fires this many, then collects acks.
const BATCH: usize = 20;
/// Kill the server once this many sends have been acked.
const KILL_AFTER_ACKS: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acked_messages_survive_kill_9() {
    let mut server = server().env("CHAT_RATE_LIMIT_PER_MIN", "0").start().await;
    let id = conv_id(&server.http("d0").create_group("Durable", &USERS[1..]).await);
    let acked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let errors: Arc<Mutex<Vec<Value>>> = Arc::default();
    let ack_count = Arc::new(AtomicUsize::new(0));
    let first_ack: Arc<OnceLock<Instant>> = Arc::default();

    let mut tasks = JoinSet::new();
    for user in USERS {
        let mut ws = server.connect(user).await;
        ws.ignore_type("message.new");
        ws.ignore_type("presence");
        let (id, acked, errors, ack_count, first_ack) = (
            id.clone(),
            acked.clone(),
            errors.clone(),
            ack_count.clone(),
            first_ack.clone(),
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
                            ack_count.fetch_add(1, Ordering::SeqCst);
                            first_ack.get_or_init(Instant::now);
                        }
                        Ok(error) => errors.lock().expect("errors lock").push(error),
                        Err(_) => break 'burst, // the server is gone
                    }
                }
            }
        });
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ack_count.load(Ordering::SeqCst) < KILL_AFTER_ACKS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burst made no progress"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill9();
    let burst = first_ack.get().map(Instant::elapsed).unwrap_or_default();
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(result) = tasks.join_next().await {
            result.expect("a sender task panicked");
        }
    })
    .await;
    assert!(joined.is_ok(), "senders did not notice the dead server");
    let acked = acked.lock().expect("acks lock").clone();
    for error in errors.lock().expect("errors lock").iter() {
        let code = error["code"].as_str().unwrap_or_default();
        assert!(
            code == "INTERNAL" || code == "UNAVAILABLE",
            "unexpected error in the burst: {error}"
        );
    }

    // Acks come once a message is in the append log; the writer applies them to the
    // database a second after the first one came. A burst killed sooner left every
    // acked message in the log only: the restart must apply them from there.
    let stored: i64 = rusqlite::Connection::open(server.db_path())
        .unwrap()
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    eprintln!(
        "durability: {stored} messages in the database at the kill, {burst:?} after the first ack"
    );
    if burst < Duration::from_millis(800) {
        assert_eq!(
            stored, 0,
            "acked messages were applied before the apply was due"
        );
    }

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
