//! Section 3 under a crash with MIXED load: WebSocket and HTTP sends, `delivered`/`read`
//! receipts over both, members added and removed and push devices registered and
//! removed, all at once, cut by `kill -9`. After a restart on the same database:
//! every acked write is there, seqs are gap-free, positions never went below an acked
//! receipt and `unreadCount = lastSeq - readUpTo`, membership and devices are what the
//! acked calls made them, and the fan-out the dead process owed is done: an offline
//! member's phone got a push for every message, including those acked just before the
//! kill, and a second one for at most the message being pushed at the kill.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

use crate::support::*;

/// Pipelined WebSocket sends per batch (fired, then their acks collected).
const BATCH: usize = 10;
/// Kill once this many writes of any kind were acked (and each kind has some).
const KILL_AFTER_ACKS: usize = 300;
/// Users added to and removed from the first group while the load runs.
const CHURN: [&str; 4] = ["x0", "x1", "x2", "x3"];
/// The member that never connects: every message is pushed to its one phone.
const OFFLINE: &str = "off";
/// The user whose devices come and go during the load.
const DEVICE_USER: &str = "dv";

/// What the server acked before it died.
#[derive(Default)]
struct Acked {
    /// `message.ack` frames and HTTP send answers.
    sends: Vec<Value>,
    /// Highest acked `readUpTo` / `deliveredUpTo` by (user, conversation).
    read: HashMap<(String, String), i64>,
    delivered: HashMap<(String, String), i64>,
    /// Churn users: `Some(member?)` after an acked call with none in flight, `None` while
    /// a call was in flight when the server died (either outcome is allowed).
    membership: BTreeMap<String, Option<bool>>,
    /// Devices of [`DEVICE_USER`], like `membership`: `Some(registered?)` or `None`.
    devices: BTreeMap<String, Option<bool>>,
    /// Answers that were errors (only INTERNAL / UNAVAILABLE are acceptable).
    errors: Vec<Value>,
    /// Acked writes by kind, for the report.
    counts: BTreeMap<&'static str, usize>,
}

impl Acked {
    fn count(&mut self, kind: &'static str, total: &AtomicUsize) {
        *self.counts.entry(kind).or_default() += 1;
        total.fetch_add(1, Ordering::SeqCst);
    }

    /// The highest acked seq of a conversation (0 before the first).
    fn max_seq(&self, conversation: &str) -> i64 {
        self.sends
            .iter()
            .filter(|a| a["conversationId"] == conversation)
            .filter_map(|a| a["seq"].as_i64())
            .max()
            .unwrap_or(0)
    }

    fn raise(map: &mut HashMap<(String, String), i64>, user: &str, conv: &str, to: i64) {
        let entry = map.entry((user.to_owned(), conv.to_owned())).or_default();
        *entry = (*entry).max(to);
    }
}

type Shared = Arc<Mutex<Acked>>;

fn lock(acked: &Shared) -> std::sync::MutexGuard<'_, Acked> {
    acked.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_answer(frame: &Value) -> bool {
    frame["type"] == "message.ack" || frame["type"] == "error"
}

/// Pipelined sends over one socket, round-robin over `conversations`.
async fn ws_sends(
    mut ws: WsClient,
    user: String,
    conversations: Vec<String>,
    acked: Shared,
    total: Arc<AtomicUsize>,
) {
    let mut n = 0;
    'load: loop {
        for _ in 0..BATCH {
            n += 1;
            let conv = &conversations[n % conversations.len()];
            let frame = send_action(conv, &format!("{user}-ws-{n}"), &format!("ws {n}"));
            if ws.try_send_json(&frame).await.is_err() {
                break 'load;
            }
        }
        for _ in 0..BATCH {
            match ws.try_recv_where(RECV_TIMEOUT, is_answer).await {
                Ok(ack) if ack["type"] == "message.ack" => {
                    let mut a = lock(&acked);
                    a.sends.push(ack);
                    a.count("ws send", &total);
                }
                Ok(error) => lock(&acked).errors.push(error),
                Err(_) => break 'load,
            }
        }
    }
}

/// One HTTP send at a time, round-robin over `conversations`.
async fn http_sends(
    http: Http,
    user: String,
    conversations: Vec<String>,
    acked: Shared,
    total: Arc<AtomicUsize>,
) {
    for n in 1.. {
        let conv = &conversations[n % conversations.len()];
        let body = json!({
            "clientMessageId": format!("{user}-http-{n}"),
            "content": {"type": "text", "text": format!("http {n}")},
        });
        let path = format!("/v1/conversations/{conv}/messages");
        match http.try_call(Method::POST, &path, Some(&body)).await {
            Ok((201, ack)) => {
                let mut a = lock(&acked);
                a.sends.push(ack);
                a.count("http send", &total);
            }
            Ok((_, error)) => lock(&acked).errors.push(error),
            Err(_) => return,
        }
    }
}

/// `delivered` and `read` over a socket, always up to the newest acked seq.
async fn ws_receipts(
    mut ws: WsClient,
    user: String,
    conv: String,
    acked: Shared,
    total: Arc<AtomicUsize>,
) {
    for n in 0u64.. {
        let seq = lock(&acked).max_seq(&conv);
        if seq == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let action = if n % 2 == 0 { "delivered" } else { "read" };
        let request_id = ws.next_request_id();
        let frame = json!({"action": action, "conversationId": conv, "upToSeq": seq, "requestId": request_id});
        if ws.try_send_json(&frame).await.is_err() {
            return;
        }
        match ws
            .try_recv_where(RECV_TIMEOUT, |f| f["requestId"] == request_id)
            .await
        {
            Ok(ok) if ok["type"] == "ok" => {
                let mut a = lock(&acked);
                Acked::raise(&mut a.delivered, &user, &conv, seq);
                if action == "read" {
                    Acked::raise(&mut a.read, &user, &conv, seq);
                }
                a.count("ws receipt", &total);
            }
            Ok(error) => lock(&acked).errors.push(error),
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `POST .../receipts` alternating `deliveredUpTo` and `readUpTo`.
async fn http_receipts(
    http: Http,
    user: String,
    conv: String,
    acked: Shared,
    total: Arc<AtomicUsize>,
) {
    for n in 0u64.. {
        let seq = lock(&acked).max_seq(&conv);
        if seq == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let body = if n % 2 == 0 {
            json!({"deliveredUpTo": seq})
        } else {
            json!({"readUpTo": seq})
        };
        let path = format!("/v1/conversations/{conv}/receipts");
        match http.try_call(Method::POST, &path, Some(&body)).await {
            Ok((200, positions)) => {
                let mut a = lock(&acked);
                let (d, r) = (
                    positions["deliveredUpTo"].as_i64(),
                    positions["readUpTo"].as_i64(),
                );
                Acked::raise(&mut a.delivered, &user, &conv, d.expect("deliveredUpTo"));
                Acked::raise(&mut a.read, &user, &conv, r.expect("readUpTo"));
                a.count("http receipt", &total);
            }
            Ok((_, error)) => lock(&acked).errors.push(error),
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The admin adds and removes the churn users, one call at a time.
async fn membership_churn(http: Http, conv: String, acked: Shared, total: Arc<AtomicUsize>) {
    let mut member: HashMap<&str, bool> = HashMap::new();
    for n in 0.. {
        let user = CHURN[n % CHURN.len()];
        let now_member = member.get(user).copied().unwrap_or(false);
        lock(&acked).membership.insert(user.to_owned(), None);
        let answer = if now_member {
            let path = format!("/v1/conversations/{conv}/members/{user}");
            http.try_call(Method::DELETE, &path, None).await
        } else {
            let path = format!("/v1/conversations/{conv}/members");
            http.try_call(Method::POST, &path, Some(&json!({"userIds": [user]})))
                .await
        };
        match answer {
            Ok((200 | 204, _)) => {
                member.insert(user, !now_member);
                let mut a = lock(&acked);
                a.membership.insert(user.to_owned(), Some(!now_member));
                a.count("membership change", &total);
            }
            Ok((_, error)) => lock(&acked).errors.push(error),
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Registers devices `d-N` of [`DEVICE_USER`]; every third call removes the previous one.
async fn device_churn(http: Http, acked: Shared, total: Arc<AtomicUsize>) {
    for n in 1.. {
        let remove = n % 3 == 0;
        let device = format!("d-{}", if remove { n - 1 } else { n });
        lock(&acked).devices.insert(device.clone(), None);
        let answer = if remove {
            let path = format!("/v1/devices/{device}");
            http.try_call(Method::DELETE, &path, None).await
        } else {
            let body =
                json!({"deviceId": device, "platform": "fcm", "token": format!("dv-token-{n}")});
            http.try_call(Method::POST, "/v1/devices", Some(&body))
                .await
        };
        match answer {
            Ok((201 | 204, _)) => {
                let mut a = lock(&acked);
                a.devices.insert(device, Some(!remove));
                a.count("device change", &total);
            }
            Ok((_, error)) => lock(&acked).errors.push(error),
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `POST /v1/sync` for one conversation as `user`: its sync entry.
async fn synced(server: &TestServer, user: &str, conv: &str, after: i64) -> Value {
    let (status, body) = server
        .http(user)
        .post(
            "/v1/sync",
            &json!({"conversations": [{"conversationId": conv, "afterSeq": after}], "limit": 1}),
        )
        .await;
    assert_eq!(status, 200, "sync as {user}: {body}");
    body["conversations"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acked_writes_of_every_kind_survive_kill_9_under_mixed_load() {
    // GIVEN two groups: a0 admin; w1, w2 send over WebSocket, h1 over HTTP, r1 sends
    // receipts, `off` never connects and has one phone
    let mut server = server().env("CHAT_RATE_LIMIT_PER_MIN", "0").start().await;
    let admin = server.http("a0");
    let g1 = conv_id(
        &admin
            .create_group("Mixed 1", &["w1", "w2", "h1", "r1", OFFLINE])
            .await,
    );
    let g2 = conv_id(
        &admin
            .create_group("Mixed 2", &["w1", "h1", "r1", OFFLINE])
            .await,
    );
    server
        .http(OFFLINE)
        .register_device("off-phone", "apns", "off-token")
        .await;
    let acked: Shared = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));

    // WHEN all of it runs at once and the server is killed mid-way
    let mut tasks = JoinSet::new();
    for (user, convs) in [
        ("w1", vec![g1.clone(), g2.clone()]),
        ("w2", vec![g1.clone()]),
    ] {
        let mut ws = server.connect(user).await;
        for t in ["message.new", "presence", "receipt", "conversation.updated"] {
            ws.ignore_type(t);
        }
        tasks.spawn(ws_sends(
            ws,
            user.to_owned(),
            convs,
            acked.clone(),
            total.clone(),
        ));
    }
    tasks.spawn(http_sends(
        server.http("h1"),
        "h1".to_owned(),
        vec![g1.clone(), g2.clone()],
        acked.clone(),
        total.clone(),
    ));
    let mut r1 = server.connect("r1").await;
    for t in ["message.new", "presence", "receipt", "conversation.updated"] {
        r1.ignore_type(t);
    }
    tasks.spawn(ws_receipts(
        r1,
        "r1".to_owned(),
        g1.clone(),
        acked.clone(),
        total.clone(),
    ));
    tasks.spawn(http_receipts(
        server.http("r1"),
        "r1".to_owned(),
        g2.clone(),
        acked.clone(),
        total.clone(),
    ));
    tasks.spawn(membership_churn(
        server.http("a0"),
        g1.clone(),
        acked.clone(),
        total.clone(),
    ));
    tasks.spawn(device_churn(
        server.http(DEVICE_USER),
        acked.clone(),
        total.clone(),
    ));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = {
            let a = lock(&acked);
            total.load(Ordering::SeqCst) >= KILL_AFTER_ACKS
                && a.counts.len() == 6
                && a.counts.values().all(|&n| n >= 5)
        };
        if ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load made no progress: {:?}",
            lock(&acked).counts
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // A little jitter so runs cut the load at different points.
    tokio::time::sleep(Duration::from_millis((now_ms() % 40) as u64)).await;
    server.kill9();
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(result) = tasks.join_next().await {
            result.expect("a load task panicked");
        }
    })
    .await;
    assert!(
        joined.is_ok(),
        "the load tasks did not notice the dead server"
    );
    let acked = Arc::try_unwrap(acked)
        .ok()
        .expect("tasks are done")
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    for error in &acked.errors {
        let code = error["code"]
            .as_str()
            .or(error["error"]["code"].as_str())
            .unwrap_or_default();
        assert!(
            code == "INTERNAL" || code == "UNAVAILABLE",
            "unexpected error under load: {error}"
        );
    }

    server.restart().await;

    // THEN every acked send is in history under its seq, and seqs are 1..=lastSeq
    let mut last_seqs = HashMap::new();
    let mut message_seqs_of: HashMap<String, Vec<i64>> = HashMap::new();
    let mut found = 0;
    for conv in [&g1, &g2] {
        let history = all_messages(&server.http("a0"), conv).await;
        let last_seq = server.http("a0").conversation(conv).await["lastSeq"]
            .as_i64()
            .expect("lastSeq");
        assert_eq!(
            seqs(&history),
            (1..=last_seq).collect::<Vec<_>>(),
            "gap-free seqs in {conv}"
        );
        for ack in acked
            .sends
            .iter()
            .filter(|a| a["conversationId"] == conv.as_str())
        {
            let message = history
                .iter()
                .find(|m| m["seq"] == ack["seq"])
                .unwrap_or_else(|| panic!("acked message lost after kill -9: {ack}"));
            assert_subset(
                message,
                &json!({"messageId": ack["messageId"], "clientMessageId": ack["clientMessageId"], "timestamp": ack["timestamp"]}),
            );
            found += 1;
        }
        let mut ids: Vec<(&Value, &Value)> = history
            .iter()
            .map(|m| (&m["senderId"], &m["clientMessageId"]))
            .collect();
        ids.sort_by_key(|(s, c)| (s.to_string(), c.to_string()));
        ids.dedup();
        assert_eq!(
            ids.len(),
            history.len(),
            "one message per (sender, clientMessageId) in {conv}"
        );
        last_seqs.insert(conv.clone(), last_seq);
        // The seqs of `message` entries: what unread counts count (membership changes
        // append `system` entries too).
        let message_seqs: Vec<i64> = history
            .iter()
            .filter(|m| m["kind"] == "message")
            .filter_map(|m| m["seq"].as_i64())
            .collect();
        message_seqs_of.insert(conv.clone(), message_seqs);
    }
    assert_eq!(found, acked.sends.len());

    // AND membership is what the acked calls made it
    let members = member_ids(&server.http("a0").conversation(&g1).await);
    for user in ["a0", "w1", "w2", "h1", "r1", OFFLINE] {
        assert!(
            members.iter().any(|m| m == user),
            "{user} is still in {g1}: {members:?}"
        );
    }
    let mut uncertain_members = 0;
    for (user, state) in &acked.membership {
        match state {
            Some(expected) => assert_eq!(
                members.contains(user),
                *expected,
                "{user} in {g1}: {members:?}"
            ),
            None => uncertain_members += 1,
        }
    }

    // AND every member's positions: unreadCount = the messages after readUpTo, never below
    // an ack
    for conv in [&g1, &g2] {
        let last_seq = last_seqs[conv];
        for user in member_ids(&server.http("a0").conversation(conv).await) {
            let entry = synced(&server, &user, conv, last_seq).await;
            let (read, delivered) = (
                entry["readUpTo"].as_i64().unwrap(),
                entry["deliveredUpTo"].as_i64().unwrap(),
            );
            assert_eq!(entry["lastSeq"], last_seq, "{user}: {entry}");
            let unread = message_seqs_of[conv].iter().filter(|&&s| s > read).count();
            assert_eq!(
                entry["unreadCount"].as_i64(),
                Some(unread as i64),
                "{user} in {conv}: {entry}"
            );
            assert!(
                read <= delivered && delivered <= last_seq,
                "{user} in {conv}: {entry}"
            );
            let key = (user.clone(), conv.clone());
            let own = acked
                .sends
                .iter()
                .filter(|a| {
                    a["conversationId"] == conv.as_str()
                        && a["clientMessageId"]
                            .as_str()
                            .is_some_and(|c| c.starts_with(&format!("{user}-")))
                })
                .filter_map(|a| a["seq"].as_i64())
                .max()
                .unwrap_or(0);
            assert!(
                read >= acked.read.get(&key).copied().unwrap_or(0).max(own),
                "{user} readUpTo {read} below an acked read/send in {conv}"
            );
            assert!(
                delivered >= acked.delivered.get(&key).copied().unwrap_or(0),
                "{user} deliveredUpTo {delivered} below an acked receipt in {conv}"
            );
        }
    }

    // AND the fan-out owed by the dead process is done: one more message each, after
    // adding the device user to g2, is pushed only once everything before it is
    let (status, _) = server.http("a0").add_members(&g2, &[DEVICE_USER]).await;
    assert_eq!(status, 200);
    let mut final_seqs = HashMap::new();
    for conv in [&g1, &g2] {
        let (status, ack) = server
            .http("a0")
            .send_message(conv, "a0-after", "after restart")
            .await;
        assert_eq!(status, 201, "{ack}");
        final_seqs.insert(conv.clone(), ack["seq"].as_i64().expect("seq"));
    }
    let pushed_to = |pushes: &[Value], user: &str, conv: &str, seq: i64| -> usize {
        pushes
            .iter()
            .filter(|p| {
                p["userId"] == user
                    && p["data"]["conversationId"] == conv
                    && p["data"]["seq"] == seq
            })
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pushes = loop {
        let pushes = server.push_outbox().await;
        if [&g1, &g2]
            .iter()
            .all(|c| pushed_to(&pushes, OFFLINE, c, final_seqs[*c]) > 0)
        {
            break pushes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox did not drain after restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Pushes are recorded as sent only after they went out, and the local outbox records
    // every push it is asked for: a kill anywhere in the fan-out loses none, and repeats
    // at most the one message whose pushes went out but were not yet recorded as sent
    // (the fan-out pushes one message at a time).
    let mut off_pushes = 0;
    let mut repeated = Vec::new();
    for conv in [&g1, &g2] {
        for seq in 1..=final_seqs[conv] {
            // Membership changes' `system` entries are never pushed: those of the run,
            // and the one adding the device user to g2 above.
            let added_device_user = conv == &g2 && seq == last_seqs[conv] + 1;
            let system = seq <= last_seqs[conv] && !message_seqs_of[conv].contains(&seq);
            if system || added_device_user {
                assert_eq!(pushed_to(&pushes, OFFLINE, conv, seq), 0, "seq {seq}");
                continue;
            }
            match pushed_to(&pushes, OFFLINE, conv, seq) {
                1 => off_pushes += 1,
                2 => {
                    off_pushes += 1;
                    repeated.push((conv.clone(), seq));
                }
                n => panic!("seq {seq} of {conv} pushed {n} times to {OFFLINE}"),
            }
        }
    }
    assert!(
        repeated.len() <= 1,
        "pushed twice to {OFFLINE}: {repeated:?} (at most the one in the claim window)"
    );
    let dv_devices: Vec<&str> = pushes
        .iter()
        .filter(|p| p["userId"] == DEVICE_USER && p["data"]["seq"] == final_seqs[&g2])
        .filter_map(|p| p["deviceId"].as_str())
        .collect();
    let mut uncertain_devices = 0;
    for (device, state) in &acked.devices {
        match state {
            Some(registered) => assert_eq!(
                dv_devices.contains(&device.as_str()),
                *registered,
                "device {device}: pushed to {dv_devices:?}"
            ),
            None => uncertain_devices += 1,
        }
    }

    eprintln!(
        "durability_mixed: acked {:?} (total {}); after restart: lastSeq {:?}, acked sends found {found}/{}, lost 0, \
         messages pushed to `{OFFLINE}` {off_pushes}, pushed twice {repeated:?}, in flight at the kill: {uncertain_members} membership, {uncertain_devices} device, errors {}",
        acked.counts,
        acked.counts.values().sum::<usize>(),
        last_seqs.values().collect::<Vec<_>>(),
        acked.sends.len(),
        acked.errors.len(),
    );
}
