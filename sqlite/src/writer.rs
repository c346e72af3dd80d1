//! The writer thread: the only writer of the database. Every write but appends runs
//! here, a batch of them per transaction (group commit), and the messages the sequencer
//! acked are copied into the database many at once (see [`Writer`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use chat_shared::ports::MessageRecord;

use crate::apply::{Outbox, apply_messages};
use crate::cache::Cache;
use crate::checkpoint::CheckpointFlags;
use crate::checkpoint::finish_checkpoint;
use crate::errors::{copy_error, failure};
use crate::feed::FeedSlot;
use crate::in_flight::{Acked, InFlight};
use crate::log::AppendLog;
use crate::threads::background_priority;

/// The writer's page cache, in KiB (negative, as SQLite takes it). At SQLite's default
/// (2 MB) the writer read back pages it had just written: a sixth of its time at
/// 5,000 msg/s went to `pread`.
pub(crate) const WRITER_CACHE_KIB: i64 = -65_536;

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
/// within the noise of this machine (perf-history.md, round four).
const COMMIT_GAP_UNDER_LOAD: Duration = Duration::from_millis(3);

/// Writes a batch holds at most, so callers hear back soon under a flood.
const MAX_BATCH: usize = 256;

/// How long acked messages wait at most before the writer applies them. Many at once
/// share the pages they change, so the less often the cheaper: in the 1:1 benchmark a
/// message cost the writer about 20 us applied once a second, against 65 us in a
/// transaction of its own (perf-history.md, round six). The log holds about this much.
pub(crate) const APPLY_EVERY: Duration = Duration::from_secs(1);

/// Acked messages waiting that make the writer apply them before `APPLY_EVERY`.
pub(crate) const APPLY_AT: usize = 32_768;

/// One write waiting for the writer thread.
pub(crate) trait Write: Send {
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

pub(crate) struct Pending<T, F, A> {
    pub(crate) f: Option<F>,
    pub(crate) out: Option<rusqlite::Result<T>>,
    pub(crate) after: Option<A>,
    pub(crate) after_messages: bool,
    pub(crate) reply: oneshot::Sender<rusqlite::Result<T>>,
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

/// One job for the writer thread.
pub(crate) enum Job {
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
pub(crate) struct Writer {
    conn: Connection,
    feed: FeedSlot,
    checkpoints: Arc<CheckpointFlags>,
    cache: Arc<Cache>,
    in_flight: Arc<InFlight>,
    log: AppendLog,
    /// Where the sequencer leaves what it acked, until [`Writer::collect`] takes it.
    acked: Arc<Acked>,
    /// How long acked messages wait at most: [`APPLY_EVERY`] but in tests.
    apply_every: Duration,
    /// In id order; the oldest came at `since`.
    unapplied: Vec<Unapplied>,
    since: Option<Instant>,
}

impl Writer {
    /// A writer over the write connection `conn`, appending to `log`, that takes what
    /// the sequencer acked from `acked`.
    pub(crate) fn new(
        conn: Connection,
        feed: FeedSlot,
        checkpoints: Arc<CheckpointFlags>,
        cache: Arc<Cache>,
        in_flight: Arc<InFlight>,
        log: AppendLog,
        acked: Arc<Acked>,
    ) -> Self {
        Self {
            conn,
            feed,
            checkpoints,
            cache,
            in_flight,
            log,
            acked,
            apply_every: APPLY_EVERY,
            unapplied: Vec::new(),
            since: None,
        }
    }

    /// Applies acked messages every `apply_every` rather than every [`APPLY_EVERY`]:
    /// tests that must catch messages in the log only, whatever the machine's speed.
    pub(crate) fn apply_every(mut self, apply_every: Duration) -> Self {
        self.apply_every = apply_every;
        self
    }

    /// Runs until the store and the sequencer are dropped, then applies what is left.
    pub(crate) fn run(mut self, queue: std::sync::mpsc::Receiver<Job>) {
        background_priority();
        let mut last_commit_start = Instant::now();
        let mut under_load = false;
        loop {
            let first = match self.since {
                Some(since) => {
                    let wait = (since + self.apply_every).saturating_duration_since(Instant::now());
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
            if self.checkpoints.restart.swap(false, Ordering::AcqRel) {
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
            since.elapsed() >= self.apply_every
                || self.unapplied.len() + self.acked.len() >= APPLY_AT
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
        let mut erased = false;
        for (i, w) in writes.iter_mut().enumerate() {
            if apply_at == Some(i) {
                erased |= apply()?;
            }
            run("SAVEPOINT w")?;
            if !w.run(&self.conn) {
                run("ROLLBACK TO w")?;
            }
            run("RELEASE w")?;
        }
        if apply_at.is_some_and(|i| i >= writes.len()) {
            erased |= apply()?;
        }
        run("COMMIT")?;
        if erased {
            self.checkpoints.erase.store(true, Ordering::Release);
        }
        Ok(())
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
pub(crate) fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Durability, SCHEMA, open_connection};

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
        let mut writer = Writer::new(
            conn,
            FeedSlot::default(),
            Arc::new(CheckpointFlags::default()),
            Arc::new(Cache::default()),
            Arc::new(InFlight::default()),
            log,
            Arc::new(Acked::default()),
        );
        let mut writes = Vec::new();
        writer.take(Job::Acked, &mut writes);

        // THEN it does not start its apply timer: with nothing to apply, nothing would
        // stop it, and the writer would commit empty transactions in a loop
        assert_eq!(writer.since, None);
        assert!(!writer.apply_due());
    }
}
