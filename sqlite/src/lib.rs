//! The SQLite adapter of the [`Store`] port (bundled SQLite, WAL), plus the local push
//! outbox and the message change feed that stands in for DynamoDB Streams.
//!
//! New messages go to the sequencer (see `sequencer`), a task of the server's runtime
//! (a thread of its own under `PowerLoss` durability, or for a store opened outside a
//! runtime): it checks them, gives them their seq from counters kept in memory, writes
//! them to an append log beside the database (see `log`) and acks them, with no
//! transaction on the way. It also emits them on the change feed, in seq order.
//!
//! Every other write goes to one writer thread that owns the only write connection. It
//! takes every write waiting in its queue and runs them in one transaction (group
//! commit), each under its own savepoint so one failing write does not undo the others;
//! callers hear back only after the commit. The same thread copies the acked messages
//! into the database in bulk, with an outbox row for each one not yet fanned out; the
//! outbox rows and the log are what a crash replays at the next start.
//!
//! Durability: the log and the WAL with `synchronous=NORMAL`. An ack means the message
//! is in the OS, so it survives the process being killed (`kill -9`); a power loss may
//! lose the last ones (set `CHAT_SQLITE_SYNC=full` to fsync the log before each ack and
//! every commit). Checkpoints (copying the WAL back into the database, with an fsync) run
//! on a thread of their own, off the commit path; the writer copies only the last few
//! frames, so that the WAL starts over.
//!
//! Conversations with their members and users' connections are also kept in memory
//! (see `cache`), kept exact by the sequencer and the writer thread. Reads of the
//! database bring what they read up to the messages still in flight (see
//! `sequencer::InFlight`), or wait for them to be applied.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::{mpsc, oneshot};

use crate::domain::advance_positions;
use crate::error::StoreError;
use crate::ids::{ConversationId, DeviceId, Millis, Seq, UserId};
use crate::ports::{
    AddMembersOutcome, AppendOutcome, ConnectionRecord, ConversationCursor, ConversationKind,
    ConversationRecord, DeviceRecord, MemberRecord, MessageQuery, MessageRecord, NewConversation,
    NewMessage, Platform, PushError, PushNotification, PushSender, ReceiptUpdate, RemovedMember,
    Role, Store, StoreResult,
};
use crate::protocol::{Content, Positions};

mod cache;
mod log;
mod seen;
mod sequencer;

use cache::{Cache, MAX_ROSTER_MEMBERS, Roster};
use log::AppendLog;
use sequencer::{Acked, Append, InFlight, Sequencer};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS conversations (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    name            TEXT,
    created_at      INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    last_message_at INTEGER NOT NULL,
    member_count    INTEGER NOT NULL,
    direct_pair     TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS members (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL,
    joined_at       INTEGER NOT NULL,
    join_order      INTEGER NOT NULL,
    delivered_up_to INTEGER NOT NULL,
    read_up_to      INTEGER NOT NULL,
    muted           INTEGER NOT NULL DEFAULT 0,
    typing_window   INTEGER NOT NULL DEFAULT 0,
    typing_count    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id, conversation_id);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id   TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    message_id        TEXT NOT NULL,
    sender_id         TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    content           TEXT NOT NULL,
    reply_to          INTEGER,
    timestamp         INTEGER NOT NULL,
    origin_connection TEXT,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages (conversation_id, sender_id, client_message_id);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (timestamp);
-- Ids grow while rows wait; once every row is gone they may start over (databases made
-- before used AUTOINCREMENT, one more B-tree write per message for nothing).
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS connections (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    device_id     TEXT,
    connected_at  INTEGER NOT NULL,
    last_frame_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS connections_by_user ON connections (user_id);
CREATE TABLE IF NOT EXISTS users (
    user_id   TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    platform   TEXT NOT NULL,
    token      TEXT NOT NULL,
    endpoint   TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS devices_by_token ON devices (platform, token);
CREATE TABLE IF NOT EXISTS rate_windows (
    user_id      TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL
) WITHOUT ROWID;
-- Messages whose pushes were all sent (the table's name predates that meaning).
CREATE TABLE IF NOT EXISTS push_claims (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    claimed_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS push_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    platform        TEXT NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    badge           INTEGER NOT NULL,
    timestamp       INTEGER NOT NULL
);
-- A replayed fan-out pushes a message again; the local outbox keeps it once per device.
CREATE UNIQUE INDEX IF NOT EXISTS push_outbox_once
    ON push_outbox (conversation_id, seq, user_id, device_id);
"#;

/// Idle read connections kept open for reuse (more are opened under bursts).
const READERS_KEPT: usize = 8;
/// Prepared statements each connection keeps.
const STATEMENTS_KEPT: usize = 64;

/// A message committed but not yet fanned out, with its outbox row id.
pub type FeedItem = (i64, Arc<MessageRecord>);

/// How hard commits are pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives a killed process (WAL, `synchronous=NORMAL`).
    #[default]
    Process,
    /// Also survives power loss (`synchronous=FULL`).
    PowerLoss,
}

/// Where committed messages go: the change feed's sender, once subscribed.
type FeedSlot = Arc<Mutex<Option<mpsc::UnboundedSender<FeedItem>>>>;

/// The writer's page cache, in KiB (negative, as SQLite takes it). At SQLite's default
/// (2 MB) the writer read back pages it had just written: a sixth of its time at
/// 5,000 msg/s went to `pread`.
const WRITER_CACHE_KIB: i64 = -65_536;
/// Under load, the least time between the starts of two commits: the writes arriving
/// meanwhile join one transaction and share its pages (the conversation rows, the tails
/// of the outbox and of the time index) and its fixed costs (the WAL write, the page
/// cache's end of transaction), so a message costs fewer WAL frames and less CPU. "Under
/// load" means the last commit held more than one write: a lone client's writes, one
/// after another, never wait, and when commits are rarer than this nothing waits either.
///
/// At 1 ms the writer took 54 us of wall time per message in the group-of-100 scenario
/// (batches of 3.7) and the server a whole core at 300k deliveries/s; at 3 ms, 33 us
/// (batches of 12) and 64-74%. In 1:1 at 6,000 msg/s the server's CPU fell from 68% to
/// 53-55%. The price is about 1.5 ms more at p50; capacities (p99 <= 10 ms) stayed
/// within the noise of this machine (BENCHMARKS.md, round four).
const COMMIT_GAP_UNDER_LOAD: Duration = Duration::from_millis(3);
/// Writes a batch holds at most, so callers hear back soon under a flood.
const MAX_BATCH: usize = 256;
/// How long acked messages wait at most before the writer applies them. Many at once
/// share the pages they change, so the less often the cheaper: in the 1:1 benchmark a
/// message cost the writer about 20 us applied once a second, against 65 us in a
/// transaction of its own (BENCHMARKS.md, round six). The log holds about this much.
const APPLY_EVERY: Duration = Duration::from_secs(1);
/// Acked messages waiting that make the writer apply them before `APPLY_EVERY`.
const APPLY_AT: usize = 32_768;
/// How often the checkpointer copies the WAL back into the database. A page changed
/// several times between two passes is copied once, so rarer passes write less: at
/// 6,000 1:1 msg/s the server wrote 145 MB/s with passes every 250 ms and 110 MB/s every
/// second. Reads search the WAL frames not yet copied, a few more hash tables at most.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Checkpoint passes before the checkpointer gives up on catching up until next time.
const MAX_CHECKPOINT_PASSES: usize = 4;
/// WAL frames (4 KiB each, so 256 MB) before the writer starts the WAL over: its pause
/// (the last copy and two fsyncs, 5-25 ms here) comes at most once per this much
/// written. At 64 MB it came every half second at 6,000 msg/s, enough on its own to put
/// p99 over 10 ms.
const RESTART_AFTER_FRAMES: i64 = 65_536;
/// WAL frames the writer may be left to copy itself.
const SMALL_WAL_TAIL: i64 = 256;
/// How long the writer waits after its checkpoint for the reads begun before it to end,
/// so that its next transaction can start the WAL over.
const RESTART_PAUSE: Duration = Duration::from_micros(500);

/// One write waiting for the writer thread.
trait Write: Send {
    /// Runs the write inside the batch's transaction; false when it failed (its
    /// savepoint is then rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether it reads what messages changed (a conversation's counter, positions), so
    /// every message acked before it must be in the database first.
    fn after_messages(&self) -> bool;
    /// Reports the outcome once the batch ended: `failure` is the batch's error, if the
    /// transaction could not begin or commit.
    fn finish(self: Box<Self>, feed: &FeedSlot, failure: Option<&rusqlite::Error>);
}

struct Pending<T, F, A> {
    f: Option<F>,
    out: Option<rusqlite::Result<T>>,
    after: Option<A>,
    after_messages: bool,
    reply: oneshot::Sender<rusqlite::Result<T>>,
}

impl<T, F, A> Write for Pending<T, F, A>
where
    T: Send,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
    A: FnOnce(&FeedSlot, &T) + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let f = self.f.take().expect("a write runs once");
        let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| {
            Err(failure(
                rusqlite::ffi::SQLITE_INTERNAL,
                "store write panicked",
            ))
        });
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn after_messages(&self) -> bool {
        self.after_messages
    }

    fn finish(self: Box<Self>, feed: &FeedSlot, batch_failure: Option<&rusqlite::Error>) {
        let result = match (self.out, batch_failure) {
            (Some(Err(e)), _) => Err(e),
            (_, Some(e)) => Err(copy_error(e)),
            (None, None) => Err(failure(rusqlite::ffi::SQLITE_INTERNAL, "write not run")),
            (Some(Ok(v)), None) => {
                if let Some(after) = self.after {
                    after(feed, &v);
                }
                Ok(v)
            }
        };
        let _ = self.reply.send(result);
    }
}

fn failure(code: std::ffi::c_int, message: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(message.to_owned()))
}

/// The same error for every write of a failed batch.
fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => failure(rusqlite::ffi::SQLITE_ERROR, &other.to_string()),
    }
}

/// One job for the writer thread.
enum Job {
    Write(Box<dyn Write>),
    /// Messages the sequencer acked wait in [`Acked`], to copy into the database.
    Acked,
    /// Feed items fanned out: their outbox rows are no longer needed.
    FannedOut(Vec<i64>, oneshot::Sender<rusqlite::Result<()>>),
}

/// A message acked by the sequencer and not yet in the database.
struct Unapplied {
    id: i64,
    record: Arc<MessageRecord>,
    /// Its fan-out is done, so it needs no outbox row.
    fanned_out: bool,
}

/// The writer thread: the only writer of the database.
///
/// It runs every queued write, a batch per transaction, each under its own savepoint so
/// one failing write does not undo the others; callers hear back after the commit. It
/// also copies into the database the messages the sequencer acked ("applying" them):
/// all of them at once, every `APPLY_EVERY` or `APPLY_AT` messages, and before any write
/// that reads what they change (see [`Write::after_messages`]). Sorted by conversation,
/// a message then costs about a third of what its own transaction did.
struct Writer {
    conn: Connection,
    feed: FeedSlot,
    checkpointed: Arc<AtomicBool>,
    cache: Arc<Cache>,
    in_flight: Arc<InFlight>,
    log: AppendLog,
    /// Where the sequencer leaves what it acked, until [`Writer::collect`] takes it.
    acked: Arc<Acked>,
    /// In id order; the oldest came at `since`.
    unapplied: Vec<Unapplied>,
    since: Option<Instant>,
}

impl Writer {
    /// Runs until the store and the sequencer are dropped, then applies what is left.
    fn run(mut self, queue: std::sync::mpsc::Receiver<Job>) {
        background_priority();
        let mut last_commit_start = Instant::now();
        let mut under_load = false;
        loop {
            let first = match self.since {
                Some(since) => {
                    let wait = (since + APPLY_EVERY).saturating_duration_since(Instant::now());
                    match queue.recv_timeout(wait) {
                        Ok(job) => Some(job),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match queue.recv() {
                    Ok(job) => Some(job),
                    Err(_) => break,
                },
            };
            let mut writes = Vec::new();
            if let Some(job) = first {
                self.take(job, &mut writes);
            }
            if writes.is_empty() && !self.apply_due() {
                continue;
            }
            if !writes.is_empty() {
                let gather_until = if under_load {
                    last_commit_start + COMMIT_GAP_UNDER_LOAD
                } else {
                    last_commit_start
                };
                while writes.len() < MAX_BATCH {
                    let now = Instant::now();
                    let next = if now < gather_until {
                        queue.recv_timeout(gather_until - now).ok()
                    } else {
                        queue.try_recv().ok()
                    };
                    match next {
                        Some(job) => self.take(job, &mut writes),
                        None => break,
                    }
                }
            }
            if self.checkpointed.swap(false, Ordering::AcqRel) {
                finish_checkpoint(&self.conn);
            }
            last_commit_start = Instant::now();
            under_load = writes.len() > 1;
            self.run_batch(writes, false);
        }
        self.collect();
        if !self.unapplied.is_empty() {
            self.run_batch(Vec::new(), true);
        }
    }

    /// Takes what the sequencer acked since the last time.
    fn collect(&mut self) {
        let acked = self.acked.take();
        if acked.is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        self.unapplied.extend(acked.into_iter().map(|s| Unapplied {
            id: s.id,
            record: s.record,
            fanned_out: false,
        }));
    }

    fn apply_due(&self) -> bool {
        self.since.is_some_and(|since| {
            since.elapsed() >= APPLY_EVERY || self.unapplied.len() + self.acked.len() >= APPLY_AT
        })
    }

    fn take(&mut self, job: Job, writes: &mut Vec<Box<dyn Write>>) {
        match job {
            Job::Write(w) => writes.push(w),
            // Left in the list until they are applied or a write needs them: taking them
            // now would empty it, and the next batch would wake the writer again. A batch
            // of writes may have taken them since the note was sent: then the timer,
            // which only an apply stops, must not start.
            Job::Acked => {
                if self.acked.len() > 0 {
                    self.since.get_or_insert_with(Instant::now);
                }
            }
            Job::FannedOut(ids, reply) => {
                // The sequencer left these messages before the fan-out saw them.
                self.collect();
                let mut applied = Vec::new();
                for id in ids {
                    match self.unapplied.binary_search_by_key(&id, |u| u.id) {
                        Ok(i) => self.unapplied[i].fanned_out = true,
                        Err(_) => applied.push(id),
                    }
                }
                if applied.is_empty() {
                    // Nothing to write: losing this note to a crash only repeats frames.
                    let _ = reply.send(Ok(()));
                    return;
                }
                writes.push(Box::new(Pending {
                    f: Some(move |tx: &Connection| {
                        let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
                        for id in applied {
                            stmt.execute([id])?;
                        }
                        Ok(())
                    }),
                    out: None,
                    after: None::<fn(&FeedSlot, &())>,
                    after_messages: false,
                    reply,
                }));
            }
        }
    }

    /// Runs `writes` in one transaction, applying the messages acked so far first when
    /// due (or `stopping`), or before the first write that reads what they change.
    fn run_batch(&mut self, mut writes: Vec<Box<dyn Write>>, stopping: bool) {
        // A write queued after an ack may read what that message changes.
        self.collect();
        let apply_at = if self.unapplied.is_empty() {
            None
        } else if stopping || self.apply_due() {
            Some(0)
        } else {
            writes.iter().position(|w| w.after_messages())
        };
        let outcome = self.transaction(&mut writes, apply_at);
        match &outcome {
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                if apply_at.is_some() {
                    tracing::error!(error = %e, "could not apply acked messages; they stay in the log");
                }
            }
            Ok(()) if apply_at.is_some() => self.landed(),
            Ok(()) => {}
        }
        for w in writes {
            w.finish(&self.feed, outcome.as_ref().err());
        }
    }

    fn transaction(
        &self,
        writes: &mut [Box<dyn Write>],
        apply_at: Option<usize>,
    ) -> rusqlite::Result<()> {
        let run = |sql: &str| run_cached(&self.conn, sql);
        let apply = || {
            apply_messages(
                &self.conn,
                self.unapplied.iter().map(|u| {
                    let outbox = if u.fanned_out {
                        Outbox::FannedOut
                    } else {
                        Outbox::Id(u.id)
                    };
                    (&*u.record, outbox)
                }),
            )
        };
        run("BEGIN IMMEDIATE")?;
        for (i, w) in writes.iter_mut().enumerate() {
            if apply_at == Some(i) {
                apply()?;
            }
            run("SAVEPOINT w")?;
            if !w.run(&self.conn) {
                run("ROLLBACK TO w")?;
            }
            run("RELEASE w")?;
        }
        if apply_at.is_some_and(|i| i >= writes.len()) {
            apply()?;
        }
        run("COMMIT")
    }

    /// The messages applied are committed: readers stop overlaying them and the log lets
    /// them go.
    fn landed(&mut self) {
        let Some(through) = self.unapplied.last().map(|u| u.id) else {
            return;
        };
        // Before `landed`: a roster read from the database before the commit and
        // overlaid after it must not be kept.
        self.cache.changed();
        self.in_flight.landed(through);
        self.log.applied_through(through);
        self.unapplied.clear();
        self.since = None;
    }
}

/// Runs a statement without parameters (`BEGIN`, `COMMIT`, ...), prepared once: parsing
/// the transaction statements again for every write was a tenth of the writer's time in
/// a batch.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The outbox row a message applied needs.
enum Outbox {
    /// No row: it was fanned out already.
    FannedOut,
    Id(i64),
    /// A row with a fresh id (a message applied again from the log at start).
    Fresh,
}

/// Copies messages into the database, sorted by conversation so each page is written
/// once for all of its messages, and moves their conversations' counters and their
/// senders' positions forward. A message already there (same seq, or same idempotency
/// key) is skipped, so applying twice is harmless.
fn apply_messages<'a>(
    tx: &Connection,
    messages: impl Iterator<Item = (&'a MessageRecord, Outbox)>,
) -> rusqlite::Result<()> {
    let mut messages: Vec<_> = messages.collect();
    messages.sort_by(|(a, _), (b, _)| {
        (a.conversation_id.as_str(), a.seq).cmp(&(b.conversation_id.as_str(), b.seq))
    });
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, message_id, sender_id,
             client_message_id, content, reply_to, timestamp, origin_connection)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT DO NOTHING",
    )?;
    let mut outbox =
        tx.prepare_cached("INSERT INTO outbox (id, conversation_id, seq) VALUES (?1, ?2, ?3)")?;
    let mut heads: std::collections::BTreeMap<&str, (Seq, Millis)> = Default::default();
    let mut senders: std::collections::BTreeMap<(&str, &str), Seq> = Default::default();
    for (m, row) in &messages {
        let cid = m.conversation_id.as_str();
        let content = serde_json::to_string(&m.content)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let inserted = insert.execute(params![
            cid,
            m.seq,
            m.message_id,
            m.sender_id.as_str(),
            m.client_message_id,
            content,
            m.reply_to,
            m.timestamp,
            m.origin_connection
        ])?;
        if inserted == 1 {
            match row {
                Outbox::FannedOut => {}
                Outbox::Id(id) => drop(outbox.execute(params![id, cid, m.seq])?),
                Outbox::Fresh => drop(outbox.execute(params![None::<i64>, cid, m.seq])?),
            }
        }
        let head = heads.entry(cid).or_default();
        *head = (head.0.max(m.seq), head.1.max(m.timestamp));
        let seen = senders.entry((cid, m.sender_id.as_str())).or_default();
        *seen = (*seen).max(m.seq);
    }
    let mut conversation = tx.prepare_cached(
        "UPDATE conversations SET last_seq = MAX(last_seq, ?2),
             last_message_at = MAX(last_message_at, ?3) WHERE id = ?1",
    )?;
    for (cid, (seq, at)) in heads {
        conversation.execute(params![cid, seq, at])?;
    }
    let mut positions = tx.prepare_cached(
        "UPDATE members SET delivered_up_to = MAX(delivered_up_to, ?3),
             read_up_to = MAX(read_up_to, ?3) WHERE conversation_id = ?1 AND user_id = ?2",
    )?;
    for ((cid, sender), seq) in senders {
        positions.execute(params![cid, sender, seq])?;
    }
    Ok(())
}

/// Lowers the calling thread's CPU priority (nice 10), for the threads whose work no
/// client waits on: applying acked messages and checkpoints. Both come in bursts (a
/// second's messages at once); on a busy machine they then took CPU from the threads
/// that ack and deliver. In the 1:1 benchmark at 10,000 msg/s with the machine under
/// other load, p99 was 8.0-9.2 ms with these threads niced and 10.3-16.5 ms without
/// (three runs each, interleaved).
fn background_priority() {
    // On Linux a thread id names that one thread here.
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        tracing::debug!(error = %e, "could not lower a store thread's priority");
    }
}

/// Copies into the database the WAL frames committed since the checkpointer's last copy,
/// so that the writer's next transaction starts the WAL over from its beginning.
///
/// Under load the checkpointer alone never catches up (frames keep coming while it
/// copies), the WAL only grows, and every frame lands in a fresh page the kernel must
/// zero first: 40% of this thread at 3,000 msg/s, with a 750 MB WAL after ten seconds.
/// Here no frame can come in between. The price is a pause of the writer for two fsyncs
/// (2-20 ms on this machine's disk), which is why it waits for a WAL of
/// `RESTART_AFTER_FRAMES`.
fn finish_checkpoint(conn: &Connection) {
    let done = passive_checkpoint(conn);
    match done {
        // The reads begun before the copy ended hold the WAL until they end.
        Ok((frames, copied)) if frames == copied => std::thread::sleep(RESTART_PAUSE),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}

/// Copies what it can of the WAL into the database without waiting for anyone: (frames
/// in the WAL, frames copied).
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// The checkpointer thread: copies committed WAL frames into the database in the
/// background (PASSIVE: never blocks the writer or readers), until the store is dropped.
///
/// Frames keep coming while it copies, so it copies again until what came in during a
/// pass is small (each pass is shorter than the one before), and only then asks the
/// writer to copy that last bit itself and start the WAL over: the writer's pause is
/// then a few pages and two fsyncs, not the whole copy.
fn checkpoint_loop(conn: Connection, store: Weak<Inner>, checkpointed: Arc<AtomicBool>) {
    background_priority();
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        if store.upgrade().is_none() {
            return;
        }
        let mut seen = 0;
        for _ in 0..MAX_CHECKPOINT_PASSES {
            match passive_checkpoint(&conn) {
                Ok((frames, _)) if frames > seen + SMALL_WAL_TAIL => seen = frames,
                // The writer copies what came in meanwhile, then starts the WAL over.
                Ok((frames, _)) if frames > RESTART_AFTER_FRAMES => {
                    checkpointed.store(true, Ordering::Release);
                    break;
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                    break;
                }
            }
        }
    }
}

struct Inner {
    path: PathBuf,
    durability: Durability,
    // Sent to from any thread without a lock: a lock here made one worker wait on
    // another's wake-up of the thread behind the queue.
    writes: std::sync::mpsc::Sender<Job>,
    appends: mpsc::UnboundedSender<Append>,
    readers: Mutex<Vec<Connection>>,
    feed: FeedSlot,
    cache: Arc<Cache>,
    in_flight: Arc<InFlight>,
}

/// The SQLite store. Clones share the same database.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// A push as recorded in the local outbox (`GET /dev/push-outbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxPush {
    pub user_id: String,
    pub device_id: String,
    pub platform: String,
    pub notification: PushNotification,
}

fn err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::new(context, e)
}

fn open_connection(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Plans never depend on bound values. Without this, a statement whose plan looks at
    // a parameter (any `LIMIT ?`) is prepared again on every run: that was most of the
    // cost of a lookup.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Room for every statement the store prepares (about forty): at rusqlite's default
    // of 16, a mixed load evicts statements and parses them again.
    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Process => "NORMAL",
            Durability::PowerLoss => "FULL",
        },
    )?;
    Ok(conn)
}

/// A queue in front of a store thread or task.
trait Queue<J> {
    /// Queues `job`; false when nothing takes jobs from the queue any more.
    fn push(&self, job: J) -> bool;
}

impl<J> Queue<J> for std::sync::mpsc::Sender<J> {
    fn push(&self, job: J) -> bool {
        self.send(job).is_ok()
    }
}

impl<J> Queue<J> for mpsc::UnboundedSender<J> {
    fn push(&self, job: J) -> bool {
        self.send(job).is_ok()
    }
}

/// Hands a job to the writer thread or the sequencer through its queue and waits for
/// its answer; `gone` is the error when it is no longer there.
async fn ask<J, T>(
    queue: &impl Queue<J>,
    job: impl FnOnce(oneshot::Sender<rusqlite::Result<T>>) -> J,
    gone: &'static str,
) -> rusqlite::Result<T> {
    let (reply, answer) = oneshot::channel();
    if !queue.push(job(reply)) {
        return Err(failure(rusqlite::ffi::SQLITE_MISUSE, gone));
    }
    answer
        .await
        .unwrap_or_else(|_| Err(failure(rusqlite::ffi::SQLITE_INTERNAL, gone)))
}

/// Applies what an earlier process acked but left in the append log, then starts the
/// log afresh.
fn recover(
    writer: &Connection,
    path: &Path,
    durability: Durability,
) -> Result<AppendLog, StoreError> {
    let leftovers =
        AppendLog::recover(path).map_err(|e| StoreError::new("read the append log", e))?;
    if !leftovers.records.is_empty() {
        writer
            .execute_batch("BEGIN IMMEDIATE")
            .and_then(|()| {
                apply_messages(writer, leftovers.records.iter().map(|r| (r, Outbox::Fresh)))
            })
            .and_then(|()| writer.execute_batch("COMMIT"))
            .map_err(err("apply the append log"))?;
        tracing::info!(
            messages = leftovers.records.len(),
            "applied the messages an earlier process acked"
        );
    }
    AppendLog::start(path, durability == Durability::PowerLoss, leftovers)
        .map_err(|e| StoreError::new("start the append log", e))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let writer = open_connection(&path, durability).map_err(err("open database"))?;
        writer.execute_batch(SCHEMA).map_err(err("create schema"))?;
        // Checkpoints run on their own thread, not inside a commit.
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(err("open database"))?;
        writer
            .pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(err("open database"))?;
        // Each write runs in a savepoint, whose journal of the pages it changes spilled to
        // a temporary file: more page writes there than into the WAL (13,496 against
        // 9,017 in five seconds at 6,000 msg/s).
        writer
            .pragma_update(None, "temp_store", "MEMORY")
            .map_err(err("open database"))?;
        let log = recover(&writer, &path, durability)?;
        let next_id: i64 = writer
            .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM outbox", [], |r| {
                r.get(0)
            })
            .map_err(err("open database"))?;
        let checkpointer = open_connection(&path, durability).map_err(err("open database"))?;
        let sequencer_reader = open_connection(&path, durability).map_err(err("open database"))?;
        let (writes, queue) = std::sync::mpsc::channel();
        let (appends, append_queue) = mpsc::unbounded_channel();
        let feed = FeedSlot::default();
        let checkpointed = Arc::new(AtomicBool::new(false));
        let cache = Arc::new(Cache::default());
        let in_flight = Arc::new(InFlight::default());
        let tail = log.tail();
        let acked = Arc::new(Acked::default());
        let writer = Writer {
            conn: writer,
            feed: feed.clone(),
            checkpointed: checkpointed.clone(),
            cache: cache.clone(),
            in_flight: in_flight.clone(),
            log,
            acked: acked.clone(),
            unapplied: Vec::new(),
            since: None,
        };
        let scanner = open_connection(&path, durability).map_err(err("open database"))?;
        let seen = seen::SeenKeys::start(scanner)
            .map_err(|e| StoreError::new("start the writer threads", e))?;
        let sequencer = Sequencer {
            reader: sequencer_reader,
            seen,
            heads: Default::default(),
            next_id,
            log: tail,
            in_flight: in_flight.clone(),
            cache: cache.clone(),
            feed: feed.clone(),
            writer: writes.clone(),
            acked,
        };
        let inner = Arc::new(Inner {
            path,
            durability,
            writes,
            appends,
            readers: Mutex::new(Vec::new()),
            feed,
            cache,
            in_flight,
        });
        let spawned = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(queue))
            .and_then(|_| sequencer.start(append_queue, durability))
            .and_then(|_| {
                let store = Arc::downgrade(&inner);
                std::thread::Builder::new()
                    .name("sqlite-checkpoint".into())
                    .spawn(move || checkpoint_loop(checkpointer, store, checkpointed))
            });
        if let Err(e) = spawned {
            return Err(StoreError::new("start the writer threads", e));
        }
        Ok(Self { inner })
    }

    /// Subscribes to the change feed: every message committed from now on, in commit
    /// order. Call [`SqliteStore::pending_feed`] first to get what an earlier process left.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<FeedItem> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.feed.lock().expect("feed lock") = Some(tx);
        rx
    }

    /// Ends the change feed: the subscriber sees the end once it drained what came before.
    pub fn close_feed(&self) {
        self.inner.feed.lock().expect("feed lock").take();
    }

    /// Messages acked but never fanned out (outbox rows), oldest first.
    pub async fn pending_feed(&self) -> StoreResult<Vec<FeedItem>> {
        self.settle_for(None).await.map_err(err("read outbox"))?;
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT o.id, {MESSAGE_COLUMNS} FROM outbox o JOIN messages m
                 ON m.conversation_id = o.conversation_id AND m.seq = o.seq ORDER BY o.id"
            ))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, Arc::new(message_at(r, 1)?))))?;
            rows.collect()
        })
        .await
        .map_err(err("read outbox"))
    }

    /// Notes feed items as fanned out: their outbox rows are deleted, or never written.
    pub async fn ack_feed(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.ask(|reply| Job::FannedOut(ids, reply))
            .await
            .map_err(err("ack outbox"))
    }

    /// Waits until every message acked so far is in the database.
    pub async fn settle(&self) -> StoreResult<()> {
        self.settled().await.map_err(err("apply acked messages"))
    }

    async fn settled(&self) -> rusqlite::Result<()> {
        self.write_then(|_| Ok(()), |_, _| {}, true).await
    }

    /// Forgets every connection of an earlier process (their sockets died with it) and
    /// records their users' last-seen times.
    pub async fn clear_connections(&self) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO users (user_id, last_seen)
                 SELECT user_id, MAX(last_frame_at) FROM connections GROUP BY user_id
                 ON CONFLICT (user_id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
                [],
            )?;
            tx.execute("DELETE FROM connections", [])?;
            Ok(())
        })
        .await
        .map_err(err("clear connections"))?;
        self.inner.cache.forget_all_connections();
        Ok(())
    }

    /// The local push outbox, oldest first.
    pub async fn pushes(&self) -> StoreResult<Vec<OutboxPush>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT user_id, device_id, platform, title, body, conversation_id, seq,
                        message_id, badge, timestamp FROM push_outbox ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(OutboxPush {
                    user_id: r.get(0)?,
                    device_id: r.get(1)?,
                    platform: r.get(2)?,
                    notification: PushNotification {
                        title: r.get(3)?,
                        body: r.get(4)?,
                        conversation_id: conversation_id_at(r, 5)?,
                        seq: r.get(6)?,
                        message_id: r.get(7)?,
                        badge: r.get(8)?,
                        timestamp: r.get(9)?,
                    },
                })
            })?;
            rows.collect()
        })
        .await
        .map_err(err("read push outbox"))
    }

    /// Hands a job to the writer thread and waits for its answer.
    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<rusqlite::Result<T>>) -> Job,
    ) -> rusqlite::Result<T> {
        ask(&self.inner.writes, job, "the writer thread is gone").await
    }

    /// Runs `f` on the writer thread inside a transaction, and answers once that
    /// transaction committed. `after` runs on the writer thread right after the commit,
    /// before any later write's, so what it emits is in commit order. With
    /// `after_messages`, every message acked before is in the database before `f` runs.
    async fn write_then<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        after: impl FnOnce(&FeedSlot, &T) + Send + 'static,
        after_messages: bool,
    ) -> rusqlite::Result<T> {
        self.ask(|reply| {
            Job::Write(Box::new(Pending {
                f: Some(f),
                out: None,
                after: Some(after),
                after_messages,
                reply,
            }))
        })
        .await
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        self.write_then(f, |_, _| {}, false).await
    }

    /// Runs a scan (a read whose size grows with the data: history pages, a user's
    /// conversations, the outbox) on a pooled read connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .expect("store task panicked")
    }

    /// Runs a lookup (a read by key with a small, bounded answer: a membership, a
    /// conversation, a user's connections) on a pooled read connection right here. It
    /// takes microseconds from the page cache, less than handing it to another thread
    /// and back, which is what dominated the send path.
    fn lookup<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        self.inner.with_reader(f)
    }

    /// Reads a conversation with all its members from memory, loading it on a miss.
    fn with_roster<T>(
        &self,
        id: &ConversationId,
        f: impl Fn(&Roster) -> T,
    ) -> rusqlite::Result<Found<T>> {
        let inner = &self.inner;
        if let Some(v) = inner.cache.roster(id.as_str(), &f) {
            return Ok(Found::Kept(v));
        }
        Ok(
            match self.lookup(|c| read_roster(c, &inner.cache, &inner.in_flight, id.as_str()))? {
                Found::Kept(roster) => Found::Kept(f(&roster)),
                Found::Missing => Found::Missing,
                Found::Large => Found::Large,
            },
        )
    }

    /// Waits for the messages in flight in `conversation` (all conversations when None)
    /// to be applied, for reads that cannot bring what they read up to them.
    async fn settle_for(&self, conversation: Option<&ConversationId>) -> rusqlite::Result<()> {
        let in_flight = &self.inner.in_flight;
        let waiting = match conversation {
            Some(id) => in_flight.holds(id.as_str()),
            None => !in_flight.is_empty(),
        };
        if waiting {
            self.settled().await?;
        }
        Ok(())
    }

    /// A write whose `after` tells the cache what it changed.
    async fn write_noting<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        note: impl FnOnce(&Cache, &T) + Send + 'static,
    ) -> rusqlite::Result<T> {
        self.write_noting_after(f, note, false).await
    }

    /// [`SqliteStore::write_noting`], after every message acked before it is applied
    /// when `after_messages` (for a write that reads what messages change).
    async fn write_noting_after<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        note: impl FnOnce(&Cache, &T) + Send + 'static,
        after_messages: bool,
    ) -> rusqlite::Result<T> {
        let cache = self.inner.cache.clone();
        self.write_then(f, move |_, v| note(&cache, v), after_messages)
            .await
    }
}

/// Reads a conversation with all its members from the database, brought up to its
/// messages in flight, and keeps it in memory unless something changed meanwhile.
fn read_roster(
    c: &Connection,
    cache: &Cache,
    in_flight: &InFlight,
    id: &str,
) -> rusqlite::Result<Found<Roster>> {
    let since = cache.epoch();
    Ok(match load_roster(c, id)? {
        Found::Kept(mut roster) => {
            in_flight.overlay_roster(&mut roster);
            cache.keep_roster(since, roster.clone());
            Found::Kept(roster)
        }
        Found::Missing => Found::Missing,
        Found::Large => Found::Large,
    })
}

/// What a read of a conversation and its members found.
enum Found<T> {
    Kept(T),
    Missing,
    /// Too many members to hold in memory: read them from the database.
    Large,
}

/// Reads a conversation and all its members in one snapshot.
fn load_roster(c: &Connection, id: &str) -> rusqlite::Result<Found<Roster>> {
    let tx = c.unchecked_transaction()?;
    let Some(conversation) = conversation_tx(&tx, id)? else {
        return Ok(Found::Missing);
    };
    if conversation.member_count > MAX_ROSTER_MEMBERS {
        return Ok(Found::Large);
    }
    let members = tx
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members m
             WHERE m.conversation_id = ?1 ORDER BY m.user_id"
        ))?
        .query_map([id], |r| member_at(r, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.finish()?;
    Ok(Found::Kept(Roster {
        conversation,
        members,
    }))
}

impl Inner {
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let pooled = self.readers.lock().expect("reader pool").pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path, self.durability)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().expect("reader pool");
        if pool.len() < READERS_KEPT {
            pool.push(conn);
        }
        out
    }
}

const CONVERSATION_COLUMNS: &str =
    "c.id, c.kind, c.name, c.created_at, c.last_seq, c.last_message_at, c.member_count";
const MEMBER_COLUMNS: &str =
    "m.conversation_id, m.user_id, m.role, m.joined_at, m.delivered_up_to, m.read_up_to, m.muted";
const MESSAGE_COLUMNS: &str = "m.conversation_id, m.seq, m.message_id, m.sender_id, \
     m.client_message_id, m.content, m.reply_to, m.timestamp, m.origin_connection";

fn bad_value(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

fn user_at(r: &Row<'_>, i: usize) -> rusqlite::Result<UserId> {
    UserId::parse(r.get::<_, String>(i)?).map_err(|e| bad_value(i, e))
}

fn conversation_id_at(r: &Row<'_>, i: usize) -> rusqlite::Result<ConversationId> {
    ConversationId::parse(r.get::<_, String>(i)?).map_err(|e| bad_value(i, e))
}

fn conversation_at(r: &Row<'_>, i: usize) -> rusqlite::Result<ConversationRecord> {
    let kind: String = r.get(i + 1)?;
    Ok(ConversationRecord {
        id: conversation_id_at(r, i)?,
        kind: ConversationKind::parse(&kind)
            .ok_or_else(|| bad_value(i + 1, crate::ids::InvalidValue(kind)))?,
        name: r.get(i + 2)?,
        created_at: r.get(i + 3)?,
        last_seq: r.get(i + 4)?,
        last_message_at: r.get(i + 5)?,
        member_count: r.get(i + 6)?,
    })
}

fn member_at(r: &Row<'_>, i: usize) -> rusqlite::Result<MemberRecord> {
    let role: String = r.get(i + 2)?;
    Ok(MemberRecord {
        conversation_id: conversation_id_at(r, i)?,
        user_id: user_at(r, i + 1)?,
        role: Role::parse(&role).ok_or_else(|| bad_value(i + 2, crate::ids::InvalidValue(role)))?,
        joined_at: r.get(i + 3)?,
        delivered_up_to: r.get(i + 4)?,
        read_up_to: r.get(i + 5)?,
        muted: r.get(i + 6)?,
    })
}

fn message_at(r: &Row<'_>, i: usize) -> rusqlite::Result<MessageRecord> {
    let content: String = r.get(i + 5)?;
    Ok(MessageRecord {
        conversation_id: conversation_id_at(r, i)?,
        seq: r.get(i + 1)?,
        message_id: r.get(i + 2)?,
        sender_id: user_at(r, i + 3)?,
        client_message_id: r.get(i + 4)?,
        content: serde_json::from_str::<Content>(&content).map_err(|e| bad_value(i + 5, e))?,
        reply_to: r.get(i + 6)?,
        timestamp: r.get(i + 7)?,
        origin_connection: r.get(i + 8)?,
    })
}

fn connection_at(r: &Row<'_>) -> rusqlite::Result<ConnectionRecord> {
    let device: Option<String> = r.get(2)?;
    Ok(ConnectionRecord {
        connection_id: r.get(0)?,
        user_id: user_at(r, 1)?,
        device_id: device
            .map(|d| DeviceId::parse(d).map_err(|e| bad_value(2, e)))
            .transpose()?,
        connected_at: r.get(3)?,
        last_frame_at: r.get(4)?,
    })
}

fn device_at(r: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let platform: String = r.get(2)?;
    Ok(DeviceRecord {
        user_id: user_at(r, 0)?,
        device_id: DeviceId::parse(r.get::<_, String>(1)?).map_err(|e| bad_value(1, e))?,
        platform: Platform::parse(&platform)
            .ok_or_else(|| bad_value(2, crate::ids::InvalidValue(platform)))?,
        token: r.get(3)?,
        endpoint: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

/// `?,?,?` for `n` values starting at placeholder `first`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `sql` (with `{users}` standing for the placeholder list) for `users` in chunks
/// that stay under SQLite's variable limit, collecting every row.
fn select_for_users<T>(
    c: &Connection,
    sql: &str,
    users: &[String],
    row: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    for chunk in users.chunks(500) {
        let sql = sql.replace("{users}", &placeholders(1, chunk.len()));
        let mut stmt = c.prepare_cached(&sql)?;
        for r in stmt.query_map(rusqlite::params_from_iter(chunk), &row)? {
            out.push(r?);
        }
    }
    Ok(out)
}

fn strings(users: &[UserId]) -> Vec<String> {
    users.iter().map(|u| u.as_str().to_owned()).collect()
}

fn membership_tx(
    c: &Connection,
    conversation: &str,
    user: &str,
) -> rusqlite::Result<Option<(ConversationRecord, MemberRecord)>> {
    c.prepare_cached(&format!(
        "SELECT {CONVERSATION_COLUMNS}, {MEMBER_COLUMNS} FROM conversations c
         JOIN members m ON m.conversation_id = c.id WHERE c.id = ?1 AND m.user_id = ?2"
    ))?
    .query_row(params![conversation, user], |r| {
        Ok((conversation_at(r, 0)?, member_at(r, 7)?))
    })
    .optional()
}

fn conversation_tx(c: &Connection, id: &str) -> rusqlite::Result<Option<ConversationRecord>> {
    c.prepare_cached(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?1"
    ))?
    .query_row([id], |r| conversation_at(r, 0))
    .optional()
}

fn insert_member(
    tx: &Connection,
    conversation: &str,
    user: &str,
    role: Role,
    now: Millis,
    last_seq: Seq,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO members (conversation_id, user_id, role, joined_at, join_order,
                              delivered_up_to, read_up_to)
         VALUES (?1, ?2, ?3, ?4,
                 (SELECT COALESCE(MAX(join_order), 0) + 1 FROM members WHERE conversation_id = ?1),
                 ?5, ?5)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![conversation, user, role.as_str(), now, last_seq])
}

fn create_conversation_tx(
    tx: &Connection,
    new: &NewConversation,
    direct_pair: Option<&str>,
) -> rusqlite::Result<ConversationRecord> {
    tx.execute(
        "INSERT INTO conversations (id, kind, name, created_at, last_seq, last_message_at,
                                    member_count, direct_pair)
         VALUES (?1, ?2, ?3, ?4, 0, ?4, ?5, ?6)",
        params![
            new.id.as_str(),
            new.kind.as_str(),
            new.name,
            new.now,
            new.members.len() as i64,
            direct_pair
        ],
    )?;
    for (i, user) in new.members.iter().enumerate() {
        let role = if i == 0 && new.kind == ConversationKind::Group {
            Role::Admin
        } else {
            Role::Member
        };
        insert_member(tx, new.id.as_str(), user.as_str(), role, new.now, 0)?;
    }
    Ok(ConversationRecord {
        id: new.id.clone(),
        kind: new.kind,
        name: new.name.clone(),
        created_at: new.now,
        last_seq: 0,
        last_message_at: new.now,
        member_count: new.members.len() as u64,
    })
}

fn find_by_client_id_tx(
    c: &Connection,
    conversation: &str,
    sender: &str,
    cmid: &str,
) -> rusqlite::Result<Option<MessageRecord>> {
    c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m
         WHERE m.conversation_id = ?1 AND m.sender_id = ?2 AND m.client_message_id = ?3"
    ))?
    .query_row(params![conversation, sender, cmid], |r| message_at(r, 0))
    .optional()
}

/// The message stored under an idempotency key: among the messages in flight first (one
/// applied meanwhile is in the database by the time the database is read), then there.
fn find_original(
    c: &Connection,
    in_flight: &InFlight,
    conversation: &str,
    sender: &str,
    cmid: &str,
) -> rusqlite::Result<Option<MessageRecord>> {
    match in_flight.find(conversation, sender, cmid) {
        Some(m) => Ok(Some(m)),
        None => find_by_client_id_tx(c, conversation, sender, cmid),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_group(&self, new: &NewConversation) -> StoreResult<ConversationRecord> {
        let new = new.clone();
        self.write_noting(
            move |tx| create_conversation_tx(tx, &new, None),
            |cache, conv| cache.forget_conversation(conv.id.as_str()),
        )
        .await
        .map_err(err("create group"))
    }

    async fn create_direct(
        &self,
        new: &NewConversation,
    ) -> StoreResult<(ConversationRecord, bool)> {
        let new = new.clone();
        self.write_noting_after(
            move |tx| {
                let mut pair = strings(&new.members);
                pair.sort();
                let pair = pair.join("\n");
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT id FROM conversations WHERE direct_pair = ?1",
                        [&pair],
                        |r| r.get(0),
                    )
                    .optional()?;
                match existing {
                    Some(id) => Ok((
                        conversation_tx(tx, &id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?,
                        false,
                    )),
                    None => Ok((create_conversation_tx(tx, &new, Some(&pair))?, true)),
                }
            },
            |cache, (conv, _)| cache.forget_conversation(conv.id.as_str()),
            true,
        )
        .await
        .map_err(err("create direct conversation"))
    }

    async fn membership(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<(ConversationRecord, MemberRecord)>> {
        let found = self.with_roster(conversation, |r| {
            r.member(user.as_str())
                .map(|m| (r.conversation.clone(), m.clone()))
        });
        match found.map_err(err("read membership"))? {
            Found::Kept(v) => Ok(v),
            Found::Missing => Ok(None),
            Found::Large => {
                let found = self
                    .lookup(|c| membership_tx(c, conversation.as_str(), user.as_str()))
                    .map_err(err("read membership"))?;
                Ok(found.map(|(mut c, mut m)| {
                    self.inner.in_flight.overlay_conversation(&mut c);
                    self.inner.in_flight.overlay_member(&mut m);
                    (c, m)
                }))
            }
        }
    }

    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<ConversationRecord>> {
        match self
            .with_roster(id, |r| r.conversation.clone())
            .map_err(err("read conversation"))?
        {
            Found::Kept(v) => Ok(Some(v)),
            Found::Missing => Ok(None),
            Found::Large => {
                let found = self
                    .lookup(|c| conversation_tx(c, id.as_str()))
                    .map_err(err("read conversation"))?;
                Ok(found.map(|mut c| {
                    self.inner.in_flight.overlay_conversation(&mut c);
                    c
                }))
            }
        }
    }

    async fn members(
        &self,
        conversation: &ConversationId,
        after: Option<&UserId>,
        limit: u32,
    ) -> StoreResult<Vec<MemberRecord>> {
        // "" sorts before every user id: the first page is the same query.
        let after = after.map_or("", UserId::as_str);
        match self
            .with_roster(conversation, |r| r.page(after, limit as usize))
            .map_err(err("read members"))?
        {
            Found::Kept(page) => return Ok(page),
            Found::Missing => return Ok(Vec::new()),
            Found::Large => {}
        }
        self.lookup(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members m
                 WHERE m.conversation_id = ?1 AND m.user_id > ?2
                 ORDER BY m.user_id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![conversation.as_str(), after, limit], |r| {
                member_at(r, 0)
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map(|mut page| {
            for m in &mut page {
                self.inner.in_flight.overlay_member(m);
            }
            page
        })
        .map_err(err("read members"))
    }

    async fn user_conversations(
        &self,
        user: &UserId,
        after: Option<&ConversationCursor>,
        limit: u32,
    ) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
        self.settle_for(None)
            .await
            .map_err(err("read user conversations"))?;
        let user = user.clone();
        let after = after.cloned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS}, {MEMBER_COLUMNS} FROM members m
                 JOIN conversations c ON c.id = m.conversation_id
                 WHERE m.user_id = ?1
                   AND (c.last_message_at < ?2 OR (c.last_message_at = ?2 AND c.id > ?3))
                 ORDER BY c.last_message_at DESC, c.id ASC LIMIT ?4"
            ))?;
            // The first page starts after (Millis::MAX, ""): before every conversation.
            let (before_at, after_id) = after.as_ref().map_or((Millis::MAX, ""), |a| {
                (a.last_message_at, a.conversation_id.as_str())
            });
            let rows = stmt.query_map(params![user.as_str(), before_at, after_id, limit], |r| {
                Ok((conversation_at(r, 0)?, member_at(r, 7)?))
            })?;
            rows.collect()
        })
        .await
        .map_err(err("read user conversations"))
    }

    async fn add_members(
        &self,
        conversation: &ConversationId,
        users: &[UserId],
        now: Millis,
        max: u64,
    ) -> StoreResult<AddMembersOutcome> {
        let (conversation, id) = (conversation.clone(), conversation.clone());
        let users = users.to_vec();
        self.write_noting_after(
            move |tx| {
                let Some(conv) = conversation_tx(tx, conversation.as_str())? else {
                    return Ok(AddMembersOutcome::Added(Vec::new()));
                };
                let mut fresh = Vec::new();
                for user in &users {
                    let exists = membership_tx(tx, conversation.as_str(), user.as_str())?.is_some();
                    if !exists && !fresh.contains(user) {
                        fresh.push(user.clone());
                    }
                }
                if conv.member_count + fresh.len() as u64 > max {
                    return Ok(AddMembersOutcome::OverCap);
                }
                for user in &fresh {
                    insert_member(
                        tx,
                        conversation.as_str(),
                        user.as_str(),
                        Role::Member,
                        now,
                        conv.last_seq,
                    )?;
                }
                tx.execute(
                    "UPDATE conversations SET member_count = member_count + ?2 WHERE id = ?1",
                    params![conversation.as_str(), fresh.len() as i64],
                )?;
                Ok(AddMembersOutcome::Added(fresh))
            },
            move |cache, _| cache.forget_conversation(id.as_str()),
            true,
        )
        .await
        .map_err(err("add members"))
    }

    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<RemovedMember>> {
        let (conversation, user, id) = (conversation.clone(), user.clone(), conversation.clone());
        self.write_noting(move |tx| {
            let cid = conversation.as_str();
            if tx.execute(
                "DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2",
                params![cid, user.as_str()],
            )? == 0
            {
                return Ok(None);
            }
            tx.execute(
                "UPDATE conversations SET member_count = member_count - 1 WHERE id = ?1",
                [cid],
            )?;
            let admins: i64 = tx.query_row(
                "SELECT COUNT(*) FROM members WHERE conversation_id = ?1 AND role = 'admin'",
                [cid],
                |r| r.get(0),
            )?;
            let mut promoted = None;
            if admins == 0 {
                let next: Option<String> = tx
                    .query_row(
                        "SELECT user_id FROM members WHERE conversation_id = ?1
                         ORDER BY join_order LIMIT 1",
                        [cid],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(next) = next {
                    tx.execute(
                        "UPDATE members SET role = 'admin' WHERE conversation_id = ?1 AND user_id = ?2",
                        params![cid, next],
                    )?;
                    promoted = Some(UserId::parse(next).map_err(|e| bad_value(0, e))?);
                }
            }
            Ok(Some(RemovedMember { promoted }))
        }, move |cache, _| cache.forget_conversation(id.as_str()))
        .await
        .map_err(err("remove member"))
    }

    async fn set_muted(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        muted: bool,
    ) -> StoreResult<bool> {
        let (conversation, user, id) = (conversation.clone(), user.clone(), conversation.clone());
        self.write_noting(
            move |tx| {
                Ok(tx.execute(
                    "UPDATE members SET muted = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
                    params![conversation.as_str(), user.as_str(), muted],
                )? == 1)
            },
            move |cache, _| cache.forget_conversation(id.as_str()),
        )
        .await
        .map_err(err("set muted"))
    }

    async fn users_sharing_conversation(
        &self,
        user: &UserId,
        candidates: &[UserId],
    ) -> StoreResult<Vec<UserId>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let user = user.clone();
        let candidates = strings(candidates);
        self.read(move |c| {
            let sql = format!(
                "SELECT DISTINCT o.user_id FROM members me
                 JOIN members o ON o.conversation_id = me.conversation_id
                 WHERE me.user_id = ?1 AND o.user_id IN ({})",
                placeholders(2, candidates.len())
            );
            let mut stmt = c.prepare(&sql)?;
            let values = std::iter::once(user.as_str().to_owned()).chain(candidates);
            let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| user_at(r, 0))?;
            rows.collect()
        })
        .await
        .map_err(err("read shared users"))
    }

    async fn contacts(&self, user: &UserId, max_members: u64) -> StoreResult<Vec<UserId>> {
        let user = user.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT o.user_id FROM members me
                 JOIN conversations c ON c.id = me.conversation_id
                 JOIN members o ON o.conversation_id = me.conversation_id
                 WHERE me.user_id = ?1 AND c.member_count <= ?2 AND o.user_id != ?1",
            )?;
            let rows = stmt.query_map(params![user.as_str(), max_members as i64], |r| {
                user_at(r, 0)
            })?;
            rows.collect()
        })
        .await
        .map_err(err("read contacts"))
    }

    async fn append_message(&self, message: &NewMessage) -> StoreResult<AppendOutcome> {
        let append = |reply| Append {
            message: message.clone(),
            reply,
        };
        ask(&self.inner.appends, append, "the sequencer is gone")
            .await
            .map_err(err("append message"))
    }

    async fn find_by_client_id(
        &self,
        conversation: &ConversationId,
        sender: &UserId,
        client_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>> {
        let (cid, sender) = (conversation.as_str(), sender.as_str());
        self.lookup(|c| find_original(c, &self.inner.in_flight, cid, sender, client_message_id))
            .map_err(err("find message"))
    }

    async fn messages(
        &self,
        conversation: &ConversationId,
        q: MessageQuery,
    ) -> StoreResult<(Vec<MessageRecord>, bool)> {
        self.settle_for(Some(conversation))
            .await
            .map_err(err("read messages"))?;
        let conversation = conversation.clone();
        self.read(move |c| {
            let order = if q.newest { "DESC" } else { "ASC" };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.conversation_id = ?1 AND m.seq > ?2 AND m.seq < ?3 AND m.timestamp >= ?4
                 ORDER BY m.seq {order} LIMIT ?5"
            ))?;
            let after = q.after.map_or(0, |s| s as i64);
            let before = q.before.map_or(i64::MAX, |s| s.min(i64::MAX as u64) as i64);
            let rows = stmt.query_map(
                params![
                    conversation.as_str(),
                    after,
                    before,
                    q.min_timestamp,
                    i64::from(q.limit) + 1
                ],
                |r| message_at(r, 0),
            )?;
            let mut messages = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let more = messages.len() > q.limit as usize;
            messages.truncate(q.limit as usize);
            if q.newest {
                messages.reverse();
            }
            Ok((messages, more))
        })
        .await
        .map_err(err("read messages"))
    }

    async fn first_retained_seq(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<Seq>> {
        self.settle_for(Some(conversation))
            .await
            .map_err(err("read first seq"))?;
        self.lookup(|c| {
            c.prepare_cached(
                "SELECT seq FROM messages WHERE conversation_id = ?1 AND timestamp >= ?2
                 ORDER BY seq LIMIT 1",
            )?
            .query_row(params![conversation.as_str(), min_timestamp], |r| r.get(0))
            .optional()
        })
        .map_err(err("read first seq"))
    }

    async fn update_receipts(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        delivered_up_to: Option<Seq>,
        read_up_to: Option<Seq>,
    ) -> StoreResult<Option<ReceiptUpdate>> {
        let (conversation, user) = (conversation.clone(), user.clone());
        let who = user.clone();
        self.write_noting_after(
            move |tx| {
                let Some((conv, me)) = membership_tx(tx, conversation.as_str(), user.as_str())?
                else {
                    return Ok(None);
                };
                let before = (me.delivered_up_to, me.read_up_to);
                let after = advance_positions(before, conv.last_seq, delivered_up_to, read_up_to);
                if after != before {
                    tx.prepare_cached(
                        "UPDATE members SET delivered_up_to = ?3, read_up_to = ?4
                     WHERE conversation_id = ?1 AND user_id = ?2",
                    )?
                    .execute(params![
                        conversation.as_str(),
                        user.as_str(),
                        after.0,
                        after.1
                    ])?;
                }
                Ok(Some(ReceiptUpdate {
                    conversation: conv,
                    positions: Positions {
                        delivered_up_to: after.0,
                        read_up_to: after.1,
                    },
                    changed: after != before,
                }))
            },
            move |cache, update| {
                if let Some(u) = update.as_ref().filter(|u| u.changed) {
                    cache.positions_moved(u.conversation.id.as_str(), who.as_str(), u.positions);
                }
            },
            true,
        )
        .await
        .map_err(err("update receipts"))
    }

    async fn total_unread(&self, user: &UserId) -> StoreResult<u64> {
        self.settle_for(None)
            .await
            .map_err(err("read unread total"))?;
        let user = user.clone();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT COALESCE(SUM(MAX(c.last_seq - m.read_up_to, 0)), 0) FROM members m
                 JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = ?1",
            )?
            .query_row([user.as_str()], |r| r.get(0))
        })
        .await
        .map_err(err("read unread total"))
    }

    async fn pushes_sent(&self, conversation: &ConversationId, seq: Seq) -> StoreResult<bool> {
        self.lookup(|c| {
            c.prepare_cached("SELECT 1 FROM push_claims WHERE conversation_id = ?1 AND seq = ?2")?
                .exists(params![conversation.as_str(), seq])
        })
        .map_err(err("read pushes sent"))
    }

    async fn record_pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        now: Millis,
    ) -> StoreResult<()> {
        let conversation = conversation.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO push_claims (conversation_id, seq, claimed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![conversation.as_str(), seq, now])?;
            Ok(())
        })
        .await
        .map_err(err("record pushes sent"))
    }

    async fn expire_messages(&self, before: Millis) -> StoreResult<u64> {
        self.write(move |tx| {
            tx.execute("DELETE FROM push_claims WHERE claimed_at < ?1", [before])?;
            Ok(tx.execute(
                "DELETE FROM messages WHERE timestamp < ?1
                 AND NOT EXISTS (SELECT 1 FROM outbox o
                                 WHERE o.conversation_id = messages.conversation_id
                                   AND o.seq = messages.seq)",
                [before],
            )? as u64)
        })
        .await
        .map_err(err("expire messages"))
    }

    async fn typing_permit(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        now: Millis,
        window_ms: i64,
        max: u32,
    ) -> StoreResult<Option<bool>> {
        let (conversation, user) = (conversation.clone(), user.clone());
        self.write(move |tx| {
            let row: Option<(i64, u32)> = tx
                .prepare_cached(
                    "SELECT typing_window, typing_count FROM members
                     WHERE conversation_id = ?1 AND user_id = ?2",
                )?
                .query_row(params![conversation.as_str(), user.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((window, count)) = row else {
                return Ok(None);
            };
            let (window, count) = if now - window >= window_ms {
                (now, 1)
            } else if count < max {
                (window, count + 1)
            } else {
                return Ok(Some(false));
            };
            tx.prepare_cached(
                "UPDATE members SET typing_window = ?3, typing_count = ?4
                 WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .execute(params![conversation.as_str(), user.as_str(), window, count])?;
            Ok(Some(true))
        })
        .await
        .map_err(err("typing throttle"))
    }

    async fn count_send(&self, user: &UserId, window_start: Millis) -> StoreResult<u64> {
        let user = user.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO rate_windows (user_id, window_start, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (user_id) DO UPDATE SET
                     count = CASE WHEN window_start = excluded.window_start THEN count + 1 ELSE 1 END,
                     window_start = excluded.window_start
                 RETURNING count",
            )?
            .query_row(params![user.as_str(), window_start], |r| r.get(0))
        })
        .await
        .map_err(err("count send"))
    }

    async fn put_connection(&self, connection: &ConnectionRecord) -> StoreResult<()> {
        let c = connection.clone();
        let user = connection.user_id.clone();
        self.write_noting(move |tx| {
            // The user an id held before, if any, changes too.
            let before: Option<String> = tx
                .prepare_cached("SELECT user_id FROM connections WHERE id = ?1")?
                .query_row([&c.connection_id], |r| r.get(0))
                .optional()?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO connections (id, user_id, device_id, connected_at, last_frame_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                c.connection_id,
                c.user_id.as_str(),
                c.device_id.as_ref().map(|d| d.as_str().to_owned()),
                c.connected_at,
                c.last_frame_at
            ])?;
            Ok(before)
        }, move |cache, before| {
            cache.forget_connections_of(user.as_str());
            if let Some(before) = before {
                cache.forget_connections_of(before);
            }
        })
        .await
        .map(drop)
        .map_err(err("put connection"))
    }

    async fn connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>> {
        self.lookup(|c| {
            c.prepare_cached(
                "SELECT id, user_id, device_id, connected_at, last_frame_at FROM connections WHERE id = ?1",
            )?
            .query_row([connection_id], connection_at)
            .optional()
        })
        .map_err(err("read connection"))
    }

    async fn touch_connection(
        &self,
        connection_id: &str,
        _user: &UserId,
        now: Millis,
    ) -> StoreResult<()> {
        let id = connection_id.to_owned();
        let touched = id.clone();
        self.write_noting(
            move |tx| {
                tx.prepare_cached(
                    "UPDATE connections SET last_frame_at = ?2 WHERE id = ?1 RETURNING user_id",
                )?
                .query_row(params![id, now], |r| r.get::<_, String>(0))
                .optional()
            },
            move |cache, user| {
                if let Some(user) = user {
                    cache.connection_touched(user, &touched, now);
                }
            },
        )
        .await
        .map(drop)
        .map_err(err("touch connection"))
    }

    async fn delete_connection(
        &self,
        connection_id: &str,
    ) -> StoreResult<Option<ConnectionRecord>> {
        let id = connection_id.to_owned();
        self.write_noting(
            move |tx| {
                tx.prepare_cached(
                    "DELETE FROM connections WHERE id = ?1
                 RETURNING id, user_id, device_id, connected_at, last_frame_at",
                )?
                .query_row([id], connection_at)
                .optional()
            },
            |cache, gone| {
                if let Some(c) = gone {
                    cache.forget_connections_of(c.user_id.as_str());
                }
            },
        )
        .await
        .map_err(err("delete connection"))
    }

    async fn connections_of(&self, users: &[UserId]) -> StoreResult<Vec<ConnectionRecord>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let cache = &self.inner.cache;
        let mut conns = Vec::new();
        let missing = cache.connections_of(users, &mut conns);
        if missing.is_empty() {
            return Ok(conns);
        }
        let since = cache.epoch();
        let names: Vec<String> = missing.iter().map(|u| u.as_str().to_owned()).collect();
        let loaded = self
            .lookup(move |c| {
                select_for_users(
                    c,
                    "SELECT id, user_id, device_id, connected_at, last_frame_at FROM connections WHERE user_id IN ({users})",
                    &names,
                    connection_at,
                )
            })
            .map_err(err("read connections"))?;
        cache.keep_connections(since, &missing, &loaded);
        conns.extend(loaded);
        Ok(conns)
    }

    async fn set_last_seen(&self, user: &UserId, at: Millis) -> StoreResult<()> {
        let user = user.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO users (user_id, last_seen) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
            )?
            .execute(params![user.as_str(), at])?;
            Ok(())
        })
        .await
        .map_err(err("set last seen"))
    }

    async fn last_seen(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, Millis)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let users = strings(users);
        self.lookup(move |c| {
            select_for_users(
                c,
                "SELECT user_id, last_seen FROM users WHERE user_id IN ({users})",
                &users,
                |r| Ok((user_at(r, 0)?, r.get(1)?)),
            )
        })
        .map_err(err("read last seen"))
    }

    async fn put_device(&self, device: &DeviceRecord) -> StoreResult<()> {
        let d = device.clone();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM devices WHERE platform = ?1 AND token = ?2
                 AND NOT (user_id = ?3 AND device_id = ?4)",
                params![d.platform.as_str(), d.token, d.user_id.as_str(), d.device_id.as_str()],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO devices (user_id, device_id, platform, token, endpoint, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    d.user_id.as_str(),
                    d.device_id.as_str(),
                    d.platform.as_str(),
                    d.token,
                    d.endpoint,
                    d.updated_at
                ],
            )?;
            Ok(())
        })
        .await
        .map_err(err("put device"))
    }

    async fn delete_device(&self, user: &UserId, device: &DeviceId) -> StoreResult<bool> {
        let (user, device) = (user.clone(), device.clone());
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
                params![user.as_str(), device.as_str()],
            )? == 1)
        })
        .await
        .map_err(err("delete device"))
    }

    async fn devices_of(&self, users: &[UserId]) -> StoreResult<Vec<DeviceRecord>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let users = strings(users);
        self.lookup(move |c| {
            select_for_users(
                c,
                "SELECT user_id, device_id, platform, token, endpoint, updated_at FROM devices WHERE user_id IN ({users}) ORDER BY user_id, device_id",
                &users,
                device_at,
            )
        })
        .map_err(err("read devices"))
    }
}

/// The local stand-in for SNS: pushes are recorded in the database's push outbox.
#[async_trait]
impl PushSender for SqliteStore {
    async fn push(&self, device: &DeviceRecord, n: &PushNotification) -> Result<(), PushError> {
        let (d, n) = (device.clone(), n.clone());
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO push_outbox (user_id, device_id, platform, title, body,
                     conversation_id, seq, message_id, badge, timestamp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                d.user_id.as_str(),
                d.device_id.as_str(),
                d.platform.as_str(),
                n.title,
                n.body,
                n.conversation_id.as_str(),
                n.seq,
                n.message_id,
                n.badge,
                n.timestamp
            ])?;
            Ok(())
        })
        .await
        .map_err(|e| PushError::Other(Box::new(e)))
    }
}

/// Message `seq` of `conversation`, sent by alice with client message id `k<seq>`: for
/// the unit tests of the store's parts.
#[cfg(test)]
fn test_message(conversation: &str, seq: Seq) -> MessageRecord {
    MessageRecord {
        conversation_id: ConversationId::parse(conversation).unwrap(),
        seq,
        message_id: format!("m{seq}"),
        sender_id: UserId::parse("alice").unwrap(),
        client_message_id: format!("k{seq}"),
        content: crate::protocol::Content {
            kind: "text".into(),
            text: "hi".into(),
        },
        reply_to: None,
        timestamp: 5,
        origin_connection: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    async fn group(store: &SqliteStore) -> ConversationId {
        let id = crate::domain::new_conversation_id();
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

    fn message(conversation: &ConversationId, cmid: &str) -> NewMessage {
        NewMessage {
            conversation_id: conversation.clone(),
            message_id: crate::domain::new_message_id(),
            sender_id: user("alice"),
            client_message_id: cmid.into(),
            content: Content {
                kind: "text".into(),
                text: "hi".into(),
            },
            reply_to: None,
            now: 10,
            origin_connection: None,
            expires_at: None,
            hint: None,
        }
    }

    /// A store at `path`, subscribed to its change feed, with one group.
    async fn subscribed_with_group(
        path: &Path,
    ) -> (
        SqliteStore,
        mpsc::UnboundedReceiver<FeedItem>,
        ConversationId,
    ) {
        let store = SqliteStore::open(path, Durability::Process).unwrap();
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
        let (found, more) = store.messages(conversation, query).await.unwrap();
        assert!(!more, "at most 100 messages");
        found
    }

    /// Appends a message under a new key: it must be stored.
    async fn stored(
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
        let (store, mut feed, conv) = subscribed_with_group(&path).await;
        store.append_message(&message(&conv, "m1")).await.unwrap();
        let (id, first) = feed.recv().await.unwrap();
        store.append_message(&message(&conv, "m2")).await.unwrap();
        store.ack_feed(vec![id]).await.unwrap();
        // A clean stop: everything acked goes into the database.
        store.settle().await.unwrap();
        drop(store);

        // WHEN the database is opened again
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        let pending = store.pending_feed().await.unwrap();

        // THEN only the un-acked message is pending, in order
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1.seq, first.seq + 1);
        assert_eq!(pending[0].1.client_message_id, "m2");
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
        // GIVEN acked messages, one of them fanned out, none applied yet
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.db");
        let (store, mut feed, conv) = subscribed_with_group(&live).await;
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
        let (first_id, _) = feed.recv().await.unwrap();
        store.ack_feed(vec![first_id]).await.unwrap();

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
        assert_eq!(store.pending_feed().await.unwrap().len(), 50);
        // and the next message takes the next seq
        let next = stored(&store, &conv, "next").await;
        assert_eq!(next.seq, 51);
        // and a retry of one in the log is recognised
        let again = store.append_message(&message(&conv, "k7")).await.unwrap();
        assert_eq!(again, AppendOutcome::Duplicate(acked[7].clone()));
    }

    /// Waits (up to five seconds) until the database file holds `count` messages.
    async fn applied(path: &Path, count: i64) -> bool {
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
    fn the_apply_timer_runs_only_while_acked_messages_wait() {
        // GIVEN a writer whose list of acked messages was already taken (by a batch of
        // writes that needed them) when the sequencer's note that it had added some
        // arrives
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open_connection(&path, Durability::Process).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let log = AppendLog::start(&path, false, AppendLog::recover(&path).unwrap()).unwrap();
        let mut writer = Writer {
            conn,
            feed: FeedSlot::default(),
            checkpointed: Arc::new(AtomicBool::new(false)),
            cache: Arc::new(Cache::default()),
            in_flight: Arc::new(InFlight::default()),
            log,
            acked: Arc::new(Acked::default()),
            unapplied: Vec::new(),
            since: None,
        };
        let mut writes = Vec::new();
        writer.take(Job::Acked, &mut writes);

        // THEN it does not start its apply timer: with nothing to apply, nothing would
        // stop it, and the writer would commit empty transactions in a loop
        assert_eq!(writer.since, None);
        assert!(!writer.apply_due());
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
            .add_members(&conv, &[user("carol")], 20, 100)
            .await
            .unwrap();

        // THEN the receipt was not cut back to what the database held before, and carol
        // starts after the last message, as every read says
        assert_eq!(receipt.positions.read_up_to, 3);
        let (c, carol) = store
            .membership(&conv, &user("carol"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c.last_seq, carol.read_up_to), (3, 3));
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
}
