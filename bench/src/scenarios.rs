//! The benchmark scenarios. Each takes a running server (ours or the limit server) and
//! returns what it measured; `crate::report` turns the pair into a table.

use std::time::{Duration, Instant};

use anyhow::ensure;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{self, Entry, Load, StepReport};
use crate::procstat;
use crate::target::{Endpoint, Kind, Room};

/// How a capacity search steps up the offered rate.
#[derive(Debug, Clone)]
pub struct Ramp {
    /// Offered deliveries per second, ascending.
    pub deliveries: Vec<f64>,
    pub warmup: Duration,
    pub measure: Duration,
    pub drain: Duration,
    /// The corrected p99 a step may reach and still count, in microseconds.
    pub p99_limit_us: u64,
}

/// A capacity search: every step run, and the best passing one.
#[derive(Debug, Clone)]
pub struct Capacity {
    pub connections: usize,
    pub steps: Vec<StepReport>,
    /// Index into `steps` of the highest offered rate that delivered everything exactly
    /// once with corrected p99 within the limit.
    pub best: Option<usize>,
}

impl Capacity {
    pub fn best(&self) -> Option<&StepReport> {
        self.best.map(|i| &self.steps[i])
    }
}

/// `members` users per room, `rooms` rooms, user names unique per run.
fn room_members(rooms: usize, members: usize) -> Vec<Vec<String>> {
    (0..rooms)
        .map(|r| (0..members).map(|m| format!("u{r}-{m}")).collect())
        .collect()
}

/// Steps up the rate on `rooms` rooms of `members` until a rate fails twice in a row:
/// the corrected p99 goes over the limit, or a message is lost, duplicated or not acked.
pub async fn capacity(
    endpoint: &Endpoint,
    rooms: usize,
    members: usize,
    ramp: &Ramp,
) -> anyhow::Result<Capacity> {
    capacity_of(endpoint, rooms, members, ramp, Entry::Message).await
}

/// [`capacity`], each send being an `entry`. For reactions, the first member of each
/// room first sends the [`load::REACT_TARGETS`] messages they react to (our server only:
/// the limit server forwards any frame and checks nothing).
pub async fn capacity_of(
    endpoint: &Endpoint,
    rooms: usize,
    members: usize,
    ramp: &Ramp,
    entry: Entry,
) -> anyhow::Result<Capacity> {
    let rooms = endpoint
        .create_rooms(room_members(rooms, members), 16)
        .await?;
    if entry == Entry::React && endpoint.kind == Kind::Ours {
        for room in &rooms {
            fill(
                endpoint,
                &room.members[0],
                &room.id,
                load::REACT_TARGETS as usize,
            )
            .await?;
        }
    }
    let load = Load::connect_entries(endpoint, &rooms, None, 64, entry).await?;
    let connections = load.connections();
    let mut steps = Vec::new();
    let mut best = None;
    let mut id = 0;
    'ramp: for deliveries in &ramp.deliveries {
        // A failed step is run once more before it counts: on a shared 2-core machine
        // one stall of the generator or the server is enough to fail a step.
        for attempt in 1..=2 {
            id += 1;
            let msgs = deliveries / (members - 1) as f64;
            let report = load
                .step(id, msgs, ramp.warmup, ramp.measure, ramp.drain)
                .await?;
            let pass = report.clean() && report.corrected.p99 <= ramp.p99_limit_us;
            eprintln!(
                "  {:>5} step {id} (attempt {attempt}): offered {:>9.0} deliveries/s, got {:>9.0}/s, p99 {:>8} us (actual {:>8} us), lost {}, dup {}, gaps {}, errors {}, acked {}/{}, server cpu {:.0}%, {}",
                endpoint.kind.label(),
                deliveries,
                report.deliveries_per_sec,
                report.corrected.p99,
                report.actual.p99,
                report.lost,
                report.duplicates,
                report.gaps,
                report.errors,
                report.acked,
                report.sent,
                report.server_cpu.unwrap_or(0.0),
                if pass { "pass" } else { "FAIL" }
            );
            steps.push(report);
            if pass {
                best = Some(steps.len() - 1);
                continue 'ramp;
            }
        }
        break;
    }
    load.close().await;
    Ok(Capacity {
        connections,
        steps,
        best,
    })
}

/// Memory held per idle connection.
#[derive(Debug, Clone)]
pub struct Idle {
    pub connections: usize,
    pub rss_before: u64,
    pub rss_after: u64,
}

impl Idle {
    pub fn bytes_per_connection(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.connections as f64
    }
}

/// Opens `connections` sockets that then stay silent, and reads the server's RSS before
/// and after.
pub async fn idle(endpoint: &Endpoint, connections: usize) -> anyhow::Result<Idle> {
    let pid = endpoint
        .pid
        .expect("idle needs a server process to measure");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = procstat::sample(pid).expect("server process").rss;
    let room = Room {
        id: "idle".into(),
        members: (0..connections).map(|i| format!("idle{i}")).collect(),
    };
    let load = Load::connect(endpoint, &[room], Some(0), 64).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = procstat::sample(pid).expect("server process").rss;
    ensure!(load.connections() == connections);
    load.close().await;
    Ok(Idle {
        connections,
        rss_before: before,
        rss_after: after,
    })
}

/// Wall times of repeated runs, in microseconds.
#[derive(Debug, Clone)]
pub struct Timings {
    pub label: String,
    pub runs: Vec<u64>,
    /// Messages fetched per run.
    pub messages: usize,
}

impl Timings {
    pub fn quantile(&self, q: f64) -> u64 {
        let mut v = self.runs.clone();
        v.sort_unstable();
        v[((v.len() - 1) as f64 * q).round() as usize]
    }
}

/// Has `sender` send `count` messages into `room` and waits for every ack.
async fn fill(endpoint: &Endpoint, sender: &str, room: &str, count: usize) -> anyhow::Result<()> {
    let token = endpoint.token(sender);
    let mut ws = load::open(endpoint, &endpoint.ws_url(sender, room, &token)).await?;
    for n in 0..count {
        let text = format!("missed message {n} {}", "x".repeat(60));
        let frame = format!(
            r#"{{"action":"send","conversationId":"{room}","clientMessageId":"fill-{n}","content":{{"type":"text","text":"{text}"}}}}"#
        );
        ws.send(Message::text(frame)).await?;
    }
    load::await_acks(&mut ws, count).await?;
    let _ = ws.close(None).await;
    Ok(())
}

/// The entries of a conversation's log for the history scenario, in seq order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogShape {
    pub messages: usize,
    /// Reactions spread over the messages, by the four members in turn.
    pub reactions: usize,
    /// Edits of the first sender's messages.
    pub edits: usize,
}

/// Reads history pages of 200 (`GET .../messages?before=..&limit=200`) at random points
/// of a conversation whose log has the given shape, `runs` times; returns the time of
/// each page and the entries it held.
pub async fn history_pages(
    endpoint: &Endpoint,
    shape: LogShape,
    runs: usize,
) -> anyhow::Result<Timings> {
    const MEMBERS: [&str; 4] = ["hist-a", "hist-b", "hist-c", "hist-d"];
    const EMOJI: [&str; 4] = ["👍", "❤️", "😂", "🎉"];
    let rooms = endpoint
        .create_rooms(vec![MEMBERS.iter().map(|m| (*m).to_owned()).collect()], 1)
        .await?;
    let room = &rooms[0].id;
    fill(endpoint, MEMBERS[0], room, shape.messages).await?;
    for (i, member) in MEMBERS.iter().enumerate() {
        let token = endpoint.token(member);
        let mut ws = load::open(endpoint, &endpoint.ws_url(member, room, &token)).await?;
        let mine: Vec<usize> = (i..shape.reactions).step_by(MEMBERS.len()).collect();
        for &n in &mine {
            let target = 1 + (n * 7) % shape.messages;
            let emoji = EMOJI[n % EMOJI.len()];
            ws.send(Message::text(format!(
                r#"{{"action":"react","conversationId":"{room}","clientMessageId":"react-{n}","targetSeq":{target},"emoji":"{emoji}"}}"#
            )))
            .await?;
        }
        if i == 0 {
            for n in 0..shape.edits {
                let target = 1 + (n * 13) % shape.messages;
                ws.send(Message::text(format!(
                    r#"{{"action":"edit","conversationId":"{room}","clientMessageId":"edit-{n}","targetSeq":{target},"content":{{"type":"text","text":"edited {n} {}"}}}}"#,
                    "y".repeat(60)
                )))
                .await?;
            }
        }
        let sent = mine.len() + if i == 0 { shape.edits } else { 0 };
        load::await_acks(&mut ws, sent).await?;
        let _ = ws.close(None).await;
    }
    let entries = (shape.messages + shape.reactions + shape.edits) as u64;
    let mut timings = Timings {
        label: "history page".into(),
        runs: Vec::new(),
        messages: 0,
    };
    let mut at = 0x9e37_79b9_u64;
    for _ in 0..runs {
        at = at
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let before = 201 + (at >> 33) % (entries - 200);
        let path = format!("/v1/conversations/{room}/messages?before={before}&limit=200");
        let started = Instant::now();
        let page = endpoint.get(MEMBERS[1], &path).await?;
        timings.runs.push(started.elapsed().as_micros() as u64);
        let got = page["messages"].as_array().map_or(0, Vec::len);
        ensure!(got == 200, "a page of {got} entries before {before}");
        timings.messages = got;
    }
    Ok(timings)
}

/// A user offline while 10 contacts each sent 100 messages reconnects: opens a socket
/// and syncs everything (pages of 50). Repeated `runs` times; each run starts from zero.
pub async fn offline_sync(endpoint: &Endpoint, runs: usize) -> anyhow::Result<Timings> {
    const CONVERSATIONS: usize = 10;
    const PER_CONVERSATION: usize = 100;
    let rooms = endpoint
        .create_rooms(
            (0..CONVERSATIONS)
                .map(|i| vec![format!("peer{i}"), "reader".to_owned()])
                .collect(),
            8,
        )
        .await?;
    for room in &rooms {
        fill(endpoint, &room.members[0], &room.id, PER_CONVERSATION).await?;
    }
    let cursors: Vec<(String, u64)> = rooms.iter().map(|r| (r.id.clone(), 0)).collect();
    let mut timings = Timings {
        label: "offline sync".into(),
        runs: Vec::new(),
        messages: 0,
    };
    for _ in 0..runs {
        let started = Instant::now();
        let token = endpoint.token("reader");
        let ws = load::open(endpoint, &endpoint.ws_url("reader", &rooms[0].id, &token)).await?;
        let got = endpoint.sync("reader", &cursors, 50).await?;
        timings.runs.push(started.elapsed().as_micros() as u64);
        ensure!(
            got == CONVERSATIONS * PER_CONVERSATION,
            "synced {got} messages, expected {}",
            CONVERSATIONS * PER_CONVERSATION
        );
        timings.messages = got;
        drop(ws);
    }
    Ok(timings)
}

/// `clients` users (in pairs, each pair a conversation holding `per_pair` messages) all
/// reconnect and sync at the same moment. Every one must succeed; returns each client's
/// time from the common start to done.
pub async fn reconnect_storm(
    endpoint: &Endpoint,
    clients: usize,
    per_pair: usize,
) -> anyhow::Result<Timings> {
    let rooms = endpoint
        .create_rooms(room_members(clients / 2, 2), 16)
        .await?;
    futures_util::future::try_join_all(
        rooms
            .iter()
            .map(|room| fill(endpoint, &room.members[0], &room.id, per_pair)),
    )
    .await?;
    let started = Instant::now();
    let runs = futures_util::future::join_all(rooms.iter().flat_map(|room| {
        room.members.iter().map(move |user| async move {
            let token = endpoint.token(user);
            let ws = load::open(endpoint, &endpoint.ws_url(user, &room.id, &token)).await?;
            let got = endpoint.sync(user, &[(room.id.clone(), 0)], 100).await?;
            let took = started.elapsed().as_micros() as u64;
            drop(ws);
            ensure!(got == per_pair, "{user} synced {got} of {per_pair}");
            Ok::<_, anyhow::Error>(took)
        })
    }))
    .await;
    let failures: Vec<String> = runs
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}")))
        .collect();
    ensure!(
        failures.is_empty(),
        "{} of {clients} clients failed, first: {}",
        failures.len(),
        failures[0]
    );
    Ok(Timings {
        label: format!("{} reconnect storm", endpoint.kind.label()),
        runs: runs.into_iter().map(|r| r.expect("checked")).collect(),
        messages: per_pair,
    })
}
