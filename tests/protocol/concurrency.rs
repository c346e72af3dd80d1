//! Section 3 "Send" and "Order" under load: concurrent senders, each retrying every send,
//! still get gap-free, unique sequence numbers, delivered in order to every connection.

use std::collections::{BTreeSet, HashMap};

use tokio::task::JoinSet;

use crate::support::*;

const SENDERS: usize = 5;
const PER_SENDER: usize = 40;
const TOTAL: usize = SENDERS * PER_SENDER;

/// What one sending connection saw.
struct Outcome {
    user: String,
    acks: Vec<Value>,
    received: Vec<Value>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_with_retries_get_gap_free_unique_seqs() {
    let server = start().await;
    let users: Vec<String> = (0..SENDERS).map(|i| format!("user-{i}")).collect();
    let others: Vec<&str> = users[1..].iter().map(String::as_str).collect();
    let id = conv_id(&server.http(&users[0]).create_group("Load", &others).await);
    let mut observer = server.connect_device(&users[0], "observer").await;
    let mut clients = Vec::new();
    for user in &users {
        clients.push((user.clone(), server.connect_device(user, "sender").await));
    }

    let mut tasks = JoinSet::new();
    for (user, mut ws) in clients {
        let id = id.clone();
        tasks.spawn(async move {
            for n in 0..PER_SENDER {
                let frame = send_action(&id, &format!("{user}-m{n}"), &format!("{user} says {n}"));
                ws.send_json(&frame).await;
                ws.send_json(&frame).await; // the retry of a client that lost the ack
            }
            let mut acks = Vec::new();
            for _ in 0..2 * PER_SENDER {
                acks.push(ws.recv_type("message.ack").await);
            }
            let mut received = Vec::new();
            for _ in 0..TOTAL - PER_SENDER {
                received.push(ws.recv_type("message.new").await);
            }
            ws.expect_silence("message.new", SHORT).await;
            ws.expect_silence("error", Duration::ZERO).await;
            Outcome {
                user,
                acks,
                received,
            }
        });
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        outcomes.push(outcome.expect("a sender task panicked"));
    }

    // Every clientMessageId got two identical acks, exactly one of them not a duplicate.
    let mut seq_of: HashMap<String, (i64, Value)> = HashMap::new();
    for outcome in &outcomes {
        let mut by_id: HashMap<&str, Vec<&Value>> = HashMap::new();
        for ack in &outcome.acks {
            by_id
                .entry(ack["clientMessageId"].as_str().expect("clientMessageId"))
                .or_default()
                .push(ack);
        }
        assert_eq!(
            by_id.len(),
            PER_SENDER,
            "{}: acks per clientMessageId",
            outcome.user
        );
        for (client_message_id, acks) in by_id {
            assert_eq!(acks.len(), 2, "{client_message_id}: {acks:?}");
            assert_eq!(acks[0]["messageId"], acks[1]["messageId"], "{acks:?}");
            assert_eq!(acks[0]["seq"], acks[1]["seq"], "{acks:?}");
            assert_eq!(acks[0]["timestamp"], acks[1]["timestamp"], "{acks:?}");
            let originals = acks.iter().filter(|a| a["duplicate"] == false).count();
            assert_eq!(originals, 1, "exactly one original: {acks:?}");
            let seq = acks[0]["seq"].as_i64().expect("seq");
            seq_of.insert(
                client_message_id.to_owned(),
                (seq, acks[0]["messageId"].clone()),
            );
        }
    }
    let acked_seqs: BTreeSet<i64> = seq_of.values().map(|(seq, _)| *seq).collect();
    assert_eq!(acked_seqs.len(), TOTAL, "no seq given twice");
    assert_eq!(
        acked_seqs,
        (1..=TOTAL as i64).collect(),
        "seqs are exactly 1..={TOTAL}"
    );

    // Every sending connection got everyone else's messages, in strictly increasing order.
    for outcome in &outcomes {
        let received = seqs(&outcome.received);
        assert!(
            received.windows(2).all(|w| w[0] < w[1]),
            "{}: message.new out of order: {received:?}",
            outcome.user
        );
        let own: BTreeSet<i64> = outcome
            .acks
            .iter()
            .map(|a| a["seq"].as_i64().expect("seq"))
            .collect();
        let all: BTreeSet<i64> = received.iter().copied().chain(own).collect();
        assert_eq!(
            all.len(),
            TOTAL,
            "{}: own acks + received cover every seq",
            outcome.user
        );
        for message in &outcome.received {
            assert_ne!(
                message["senderId"],
                outcome.user.as_str(),
                "no echo to the sending connection"
            );
        }
    }

    // A connection that only listens sees all of them, in order, once.
    let mut observed = Vec::new();
    for _ in 0..TOTAL {
        observed.push(observer.recv_type("message.new").await);
    }
    observer.expect_silence("message.new", SHORT).await;
    assert_eq!(seqs(&observed), (1..=TOTAL as i64).collect::<Vec<_>>());

    // History holds each message once, under its acked seq and messageId.
    let http = server.http(&users[0]);
    assert_eq!(http.conversation(&id).await["lastSeq"], TOTAL);
    let history = all_messages(&http, &id).await;
    assert_eq!(seqs(&history), (1..=TOTAL as i64).collect::<Vec<_>>());
    for message in &history {
        let client_message_id = message["clientMessageId"]
            .as_str()
            .expect("clientMessageId");
        let (seq, message_id) = &seq_of[client_message_id];
        assert_eq!(message["seq"], *seq, "{message}");
        assert_eq!(&message["messageId"], message_id, "{message}");
        assert!(client_message_id.starts_with(message["senderId"].as_str().expect("senderId")));
    }
    let unique_ids: BTreeSet<&str> = history
        .iter()
        .filter_map(|m| m["messageId"].as_str())
        .collect();
    assert_eq!(unique_ids.len(), TOTAL);
}
