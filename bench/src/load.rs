//! The open-loop load generator.
//!
//! Every connection belongs to one room. Senders send on a fixed schedule whatever the
//! server does (open loop): message `k` of a step is due at `start + phase + k * interval`
//! and, if the connection is late, goes out at once with its due time unchanged. Each
//! message's text carries its step, its due ("intended") time, its actual send time, its
//! sender and its number, so a recipient measures latency both from the intended time
//! (corrected for coordinated omission, as wrk2 does) and from the actual send.
//!
//! Every recipient checks that it gets each sender's messages exactly once and in order;
//! after a step the generator waits for every expected delivery, and what never arrives
//! is reported as loss.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::procstat;
use crate::target::{Endpoint, Kind, Room};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Latencies are recorded in microseconds, up to a minute.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Characters of text per message, about a chat line.
pub const TEXT_LEN: usize = 100;
/// The prefix that marks a load message in a frame.
const MARK: &[u8] = b"\"text\":\"b:";
/// The prefix that marks a load reaction in a frame (its fields ride in the
/// `clientMessageId`, which `message.new` carries for every kind).
const REACT_MARK: &[u8] = b"\"clientMessageId\":\"b:";
/// The messages a reaction load reacts to: seqs `1..=REACT_TARGETS` of each room, sent
/// before the load connects (see [`crate::scenarios::capacity_of`]).
pub const REACT_TARGETS: u64 = 100;

/// What each send of the load is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Entry {
    /// A `send` of a text message of [`TEXT_LEN`] characters.
    #[default]
    Message,
    /// A `react` (👍) on one of the room's first [`REACT_TARGETS`] messages; each sender
    /// adds a reaction and then removes it (`removed: true`) on the next send, so the
    /// reactions of a message stay few whatever the length of the run.
    React,
}

/// What the connections do in one step.
#[derive(Debug, Clone)]
struct Step {
    id: u32,
    /// Time between two sends of one sender; `None` = do not send.
    interval: Option<Duration>,
    start: Instant,
    /// Only messages due in [measure_from, stop) are recorded (the rest is warm-up).
    measure_from: Instant,
    stop: Instant,
}

struct Stats {
    corrected: Histogram<u64>,
    actual: Histogram<u64>,
    /// Deliveries of this step that arrived (unique) and those recorded in the window.
    received: u64,
    measured: u64,
    duplicates: u64,
    gaps: u64,
    /// The last step this connection finished sending (its last due send went out).
    done_step: u32,
    /// This connection's own sends and acks in this step.
    sent: u64,
    acked: u64,
    errors: u64,
    /// Per sender, the number of the next message expected from it.
    next_from: HashMap<u32, u64>,
}

impl Stats {
    fn new() -> Self {
        Self {
            corrected: histogram(),
            actual: histogram(),
            received: 0,
            measured: 0,
            duplicates: 0,
            gaps: 0,
            done_step: 0,
            sent: 0,
            acked: 0,
            errors: 0,
            next_from: HashMap::new(),
        }
    }

    fn reset_step(&mut self) {
        self.corrected.reset();
        self.actual.reset();
        self.received = 0;
        self.measured = 0;
        self.sent = 0;
        self.acked = 0;
        self.errors = 0;
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// The result of one step.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Offered messages per second (all senders together).
    pub offered_msgs: f64,
    /// Deliveries per second due in the measured window that arrived.
    pub deliveries_per_sec: f64,
    pub sent: u64,
    pub acked: u64,
    pub expected_deliveries: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub errors: u64,
    /// Latency from the intended send time, in microseconds.
    pub corrected: Percentiles,
    /// Latency from the actual send time, in microseconds.
    pub actual: Percentiles,
    pub server_cpu: Option<f64>,
    pub server_rss: Option<u64>,
    pub generator_cpu: Option<f64>,
}

impl StepReport {
    /// Every message acked, and delivered exactly once to every recipient connection.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.gaps == 0
            && self.errors == 0
            && self.acked == self.sent
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub count: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            count: h.len(),
        }
    }
}

/// A set of connected clients, ready to run steps.
pub struct Load {
    endpoint: Endpoint,
    origin: Instant,
    step: watch::Sender<Step>,
    stats: Vec<Arc<Mutex<Stats>>>,
    /// Per connection: whether it sends, and the size of its room.
    senders: Vec<bool>,
    room_sizes: Vec<usize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Connects every member of every room (`concurrency` handshakes at a time). In each
    /// room, the first `senders_per_room` members send (all when `None`).
    pub async fn connect(
        endpoint: &Endpoint,
        rooms: &[Room],
        senders_per_room: Option<usize>,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        Self::connect_entries(
            endpoint,
            rooms,
            senders_per_room,
            concurrency,
            Entry::Message,
        )
        .await
    }

    /// [`Load::connect`], each send being an `entry`.
    pub async fn connect_entries(
        endpoint: &Endpoint,
        rooms: &[Room],
        senders_per_room: Option<usize>,
        concurrency: usize,
        entry: Entry,
    ) -> anyhow::Result<Self> {
        let origin = Instant::now();
        let idle = Step {
            id: 0,
            interval: None,
            start: origin,
            measure_from: origin,
            stop: origin,
        };
        let (step, _) = watch::channel(idle);
        let mut plan = Vec::new();
        for room in rooms {
            for (i, user) in room.members.iter().enumerate() {
                let sends = senders_per_room.is_none_or(|n| i < n);
                plan.push((user.clone(), room.id.clone(), room.members.len(), sends));
            }
        }
        let sockets: Vec<Ws> = futures_util::stream::iter(plan.iter().map(|(user, room, _, _)| {
            let endpoint = endpoint.clone();
            let token = if endpoint.kind == Kind::Ours {
                endpoint.token(user)
            } else {
                String::new()
            };
            let url = endpoint.ws_url(user, room, &token);
            async move { open(&endpoint, &url).await }
        }))
        .buffered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

        let total = sockets.len();
        let mut load = Load {
            endpoint: endpoint.clone(),
            origin,
            step,
            stats: Vec::with_capacity(total),
            senders: plan.iter().map(|p| p.3).collect(),
            room_sizes: plan.iter().map(|p| p.2).collect(),
            tasks: Vec::with_capacity(total),
        };
        for (i, (ws, (_, room, _, _))) in sockets.into_iter().zip(plan).enumerate() {
            let stats = Arc::new(Mutex::new(Stats::new()));
            load.stats.push(stats.clone());
            let client = Client {
                index: i as u32,
                sends: load.senders[i],
                phase: i as f64 / total as f64,
                frame_head: match entry {
                    Entry::Message => format!(
                        r#"{{"action":"send","conversationId":"{room}","clientMessageId":"{i}-"#
                    ),
                    Entry::React => format!(
                        r#"{{"action":"react","conversationId":"{room}","clientMessageId":""#
                    ),
                },
                entry,
                origin,
                stats,
                next_n: 0,
            };
            load.tasks
                .push(tokio::spawn(client.run(ws, load.step.subscribe())));
        }
        // Let the server finish registering the last sockets and send its presence frames.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(load)
    }

    pub fn connections(&self) -> usize {
        self.stats.len()
    }

    /// Runs one step: every sender sends at `msgs_per_sec / senders`, for `warmup` and then
    /// `measure`; then waits up to `drain` for every delivery.
    pub async fn step(
        &self,
        id: u32,
        msgs_per_sec: f64,
        warmup: Duration,
        measure: Duration,
        drain: Duration,
    ) -> anyhow::Result<StepReport> {
        for s in &self.stats {
            s.lock().expect("stats").reset_step();
        }
        let senders = self.senders.iter().filter(|s| **s).count().max(1);
        let interval = Duration::from_secs_f64(senders as f64 / msgs_per_sec);
        let start = Instant::now() + Duration::from_millis(20);
        let measure_from = start + warmup;
        let stop = measure_from + measure;
        self.step.send_replace(Step {
            id,
            interval: Some(interval),
            start,
            measure_from,
            stop,
        });
        sleep_until(measure_from.into()).await;
        let server_before = self.endpoint.pid.and_then(procstat::sample);
        let me_before = procstat::sample(std::process::id());
        sleep_until(stop.into()).await;
        let server_after = self.endpoint.pid.and_then(procstat::sample);
        let me_after = procstat::sample(std::process::id());

        // Wait for the late senders to send what was due, then for the stragglers: each
        // message to all other members of its room, and every ack.
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline
            && !self
                .stats
                .iter()
                .all(|s| s.lock().expect("stats").done_step == id)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (mut expected, mut received);
        loop {
            (expected, received) = (0, 0);
            for (i, s) in self.stats.iter().enumerate() {
                let s = s.lock().expect("stats");
                if self.senders[i] {
                    expected += s.sent * (self.room_sizes[i] as u64 - 1);
                }
                received += s.received;
            }
            let acked_all = self.stats.iter().all(|s| {
                let s = s.lock().expect("stats");
                s.acked + s.errors >= s.sent
            });
            if (received >= expected && acked_all) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let mut corrected = histogram();
        let mut actual = histogram();
        let (mut sent, mut acked, mut measured, mut duplicates, mut gaps, mut errors) =
            (0, 0, 0, 0, 0, 0);
        for s in &self.stats {
            let s = s.lock().expect("stats");
            corrected.add(&s.corrected).expect("same bounds");
            actual.add(&s.actual).expect("same bounds");
            sent += s.sent;
            acked += s.acked;
            measured += s.measured;
            duplicates += s.duplicates;
            gaps += s.gaps;
            errors += s.errors;
        }
        Ok(StepReport {
            offered_msgs: msgs_per_sec,
            deliveries_per_sec: measured as f64 / measure.as_secs_f64(),
            sent,
            acked,
            expected_deliveries: expected,
            received,
            lost: expected.saturating_sub(received),
            duplicates,
            gaps,
            errors,
            corrected: Percentiles::of(&corrected),
            actual: Percentiles::of(&actual),
            server_cpu: server_after
                .zip(server_before)
                .map(|(a, b)| a.cpu_percent_since(&b)),
            server_rss: server_after.map(|a| a.rss),
            generator_cpu: me_after
                .zip(me_before)
                .map(|(a, b)| a.cpu_percent_since(&b)),
        })
    }

    /// Closes every connection.
    pub async fn close(self) {
        drop(self.step);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Time since this load was created, in microseconds (the clock in the messages).
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }
}

/// Opens one WebSocket; on our server, waits for a heartbeat's answer so the connection
/// is registered for fan-out when this returns.
pub async fn open(endpoint: &Endpoint, url: &str) -> anyhow::Result<Ws> {
    // Small read chunks: thousands of client sockets live in this one process.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("connect to {}", endpoint.addr))?;
    if endpoint.kind == Kind::Ours {
        ws.send(Message::text(r#"{"action":"heartbeat"}"#)).await?;
        let wait = async {
            while let Some(frame) = ws.next().await {
                if let Message::Text(t) = frame?
                    && t.as_str().contains("heartbeat.ack")
                {
                    return Ok(());
                }
            }
            bail!("closed before the heartbeat answer")
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .context("no heartbeat answer within 30 s")??;
    }
    Ok(ws)
}

/// Reads frames until `count` acks arrived; an `error` frame is an error.
pub async fn await_acks(ws: &mut Ws, count: usize) -> anyhow::Result<()> {
    let wait = async {
        let mut acked = 0;
        while acked < count {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if t.as_str().contains("message.ack") {
                        acked += 1;
                    } else if t.as_str().contains(r#""type":"error""#) {
                        bail!("error frame: {t}");
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed after {acked} of {count} acks"),
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .context("acks did not arrive within 120 s")?
}

struct Client {
    index: u32,
    /// Whether this connection sends in the steps (else it only receives).
    sends: bool,
    /// Where in each interval this client sends, as a fraction (spreads the senders).
    phase: f64,
    /// The send frame up to the client message id's number (a reaction's: up to its id).
    frame_head: String,
    entry: Entry,
    origin: Instant,
    stats: Arc<Mutex<Stats>>,
    next_n: u64,
}

impl Client {
    async fn run(mut self, mut ws: Ws, mut steps: watch::Receiver<Step>) {
        let mut step = steps.borrow_and_update().clone();
        let mut next_due: Option<Instant> = None;
        loop {
            let due = next_due;
            tokio::select! {
                biased;
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => self.receive(t.as_bytes(), &step),
                    Some(Ok(Message::Close(_))) | None => {
                        self.stats.lock().expect("stats").errors += 1;
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        self.stats.lock().expect("stats").errors += 1;
                        return;
                    }
                },
                changed = steps.changed() => {
                    if changed.is_err() {
                        let _ = ws.close(None).await;
                        return;
                    }
                    step = steps.borrow_and_update().clone();
                    next_due = step
                        .interval
                        .filter(|_| self.sends)
                        .map(|i| step.start + i.mul_f64(self.phase))
                        .filter(|first| *first < step.stop);
                    if next_due.is_none() {
                        self.stats.lock().expect("stats").done_step = step.id;
                    }
                }
                _ = sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                    let due = due.expect("guarded");
                    let interval = step.interval.expect("sending steps have an interval");
                    if self.send(&mut ws, step.id, due).await.is_err() {
                        self.stats.lock().expect("stats").errors += 1;
                        return;
                    }
                    let next = due + interval;
                    next_due = (next < step.stop).then_some(next);
                    if next_due.is_none() {
                        self.stats.lock().expect("stats").done_step = step.id;
                    }
                }
            }
        }
    }

    async fn send(&mut self, ws: &mut Ws, step: u32, due: Instant) -> anyhow::Result<()> {
        let n = self.next_n;
        self.next_n += 1;
        let intended = due.duration_since(self.origin).as_micros();
        let actual = self.origin.elapsed().as_micros();
        let fields = format!("b:{step}:{intended}:{actual}:{}:{n}:", self.index);
        let frame = match self.entry {
            Entry::Message => {
                let mut text = fields;
                while text.len() < TEXT_LEN {
                    text.push('x');
                }
                format!(
                    r#"{}{n}","content":{{"type":"text","text":"{text}"}}}}"#,
                    self.frame_head
                )
            }
            // The fields are the client message id (at most ~45 of its 64 characters),
            // unique per sender; a sender adds on even sends and removes on odd ones.
            Entry::React => format!(
                r#"{}{fields}","targetSeq":{},"emoji":"👍","removed":{}}}"#,
                self.frame_head,
                1 + (n / 2) % REACT_TARGETS,
                n % 2 == 1
            ),
        };
        self.stats.lock().expect("stats").sent += 1;
        ws.send(Message::text(frame)).await?;
        Ok(())
    }

    fn receive(&mut self, frame: &[u8], current: &Step) {
        let (mark, found) = match self.entry {
            Entry::Message => (MARK, memchr::memmem::find(frame, MARK)),
            // A reaction's ack (and an error answering it) carries its client message id
            // too: only `message.new` is a delivery.
            Entry::React => (
                REACT_MARK,
                memchr::memmem::find(frame, REACT_MARK)
                    .filter(|_| memchr::memmem::find(frame, b"\"type\":\"message.new\"").is_some()),
            ),
        };
        let Some(at) = found else {
            if memchr::memmem::find(frame, b"message.ack").is_some() {
                self.stats.lock().expect("stats").acked += 1;
            } else if memchr::memmem::find(frame, b"\"type\":\"error\"").is_some() {
                self.stats.lock().expect("stats").errors += 1;
            }
            return;
        };
        let now = self.origin.elapsed().as_micros() as u64;
        let rest = &frame[at + mark.len()..];
        let Some(fields) = parse_fields(rest) else {
            self.stats.lock().expect("stats").errors += 1;
            return;
        };
        let [step, intended, actual, sender, n] = fields;
        let mut guard = self.stats.lock().expect("stats");
        let s = &mut *guard;
        let next = s.next_from.entry(sender as u32).or_insert(0);
        if n < *next {
            s.duplicates += 1;
            return;
        }
        if n > *next {
            s.gaps += n - *next;
        }
        *next = n + 1;
        s.received += 1;
        let window = |t: Instant| t.duration_since(self.origin).as_micros() as u64;
        if step == u64::from(current.id)
            && intended >= window(current.measure_from)
            && intended < window(current.stop)
        {
            s.measured += 1;
            s.corrected
                .saturating_record(now.saturating_sub(intended).max(1));
            s.actual
                .saturating_record(now.saturating_sub(actual).max(1));
        }
    }
}

/// The five numbers after the mark: step, intended, actual, sender, n.
fn parse_fields(mut rest: &[u8]) -> Option<[u64; 5]> {
    let mut out = [0u64; 5];
    for slot in &mut out {
        let end = memchr::memchr(b':', rest)?;
        *slot = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        rest = &rest[end + 1..];
    }
    Some(out)
}
