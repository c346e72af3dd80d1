//! [`SqliteStore`]: opening the database, starting the store's threads, and the ways the
//! areas of the store reach them (writes on the writer thread, reads on pooled
//! connections, rosters from memory).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use chat_shared::error::StoreError;
use chat_shared::ids::ConversationId;
use chat_shared::ports::StoreResult;

use crate::apply::{Outbox, apply_messages};
use crate::attachments::Claiming;
use crate::cache::{Cache, Roster};
use crate::checkpoint::{CheckpointFlags, checkpoint_loop};
use crate::errors::err;
use crate::feed::FeedSlot;
use crate::in_flight::{Acked, InFlight};
use crate::log::AppendLog;
use crate::private;
use crate::roster::{Found, read_roster};
use crate::schema::{Durability, SCHEMA, add_missing_columns, open_connection};
use crate::seen::SeenKeys;
use crate::sequencer::{Append, Sequencer};
use crate::system;
use crate::threads::ask;
use crate::writer::{APPLY_EVERY, Job, Pending, WRITER_CACHE_KIB, Writer};

/// Idle read connections kept open for reuse (more are opened under bursts).
const READERS_KEPT: usize = 8;

pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) durability: Durability,
    // Sent to from any thread without a lock: a lock here made one worker wait on
    // another's wake-up of the thread behind the queue.
    pub(crate) writes: std::sync::mpsc::Sender<Job>,
    pub(crate) appends: mpsc::UnboundedSender<Append>,
    pub(crate) readers: Mutex<Vec<Connection>>,
    pub(crate) feed: FeedSlot,
    pub(crate) cache: Arc<Cache>,
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) claiming: Arc<Claiming>,
    /// What the checkpointer owes: a write that erases asks for a WAL truncation here.
    pub(crate) checkpoints: Arc<CheckpointFlags>,
}

/// The SQLite store. Clones share the same database.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) inner: Arc<Inner>,
}

/// Applies what an earlier process acked but left in the append log, then starts the
/// log afresh.
pub(crate) fn recover(
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
            .and_then(|_| writer.execute_batch("COMMIT"))
            .map_err(err("apply the append log"))?;
        tracing::info!(
            messages = leftovers.records.len(),
            "applied the messages an earlier process acked"
        );
    }
    // The system entries an earlier process owed and never appended (see `system`):
    // appended here, before anything else is sequenced.
    system::pay_owed(writer).map_err(err("append the system entries owed"))?;
    AppendLog::start(path, durability == Durability::PowerLoss, leftovers)
        .map_err(|e| StoreError::new("start the append log", e))
}

/// Creates the database file 0600 before SQLite does (SQLite then gives its `-wal` and
/// `-shm` files the same mode), and tightens the ones an earlier process left.
fn make_private(database: &Path) -> std::io::Result<()> {
    private::create(database)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        private::restrict_existing(Path::new(&name))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        Self::open_applying_every(path, durability, APPLY_EVERY)
    }

    /// [`SqliteStore::open`] with acked messages applied to the database every
    /// `apply_every`: tests that must see messages in the append log only.
    pub(crate) fn open_applying_every(
        path: impl AsRef<Path>,
        durability: Durability,
        apply_every: Duration,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        make_private(&path).map_err(|e| StoreError::new("make the database files private", e))?;
        let writer = open_connection(&path, durability).map_err(err("open database"))?;
        writer.execute_batch(SCHEMA).map_err(err("create schema"))?;
        add_missing_columns(&writer).map_err(err("add new columns"))?;
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
        // One truncation at the start: a delete applied from the log, or erased before a
        // crash, may have left older copies in the WAL.
        let checkpoints = Arc::new(CheckpointFlags::default());
        checkpoints
            .erase
            .store(true, std::sync::atomic::Ordering::Release);
        let cache = Arc::new(Cache::default());
        let in_flight = Arc::new(InFlight::default());
        let tail = log.tail();
        let acked = Arc::new(Acked::default());
        let writer = Writer::new(
            writer,
            feed.clone(),
            checkpoints.clone(),
            cache.clone(),
            in_flight.clone(),
            log,
            acked.clone(),
        )
        .apply_every(apply_every);
        let scanner = open_connection(&path, durability).map_err(err("open database"))?;
        let seen =
            SeenKeys::start(scanner).map_err(|e| StoreError::new("start the writer threads", e))?;
        let claiming = Arc::new(Claiming::default());
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
            targets: Default::default(),
            claiming: claiming.clone(),
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
            claiming,
            checkpoints: checkpoints.clone(),
        });
        let spawned = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run(queue))
            .and_then(|_| sequencer.start(append_queue, durability))
            .and_then(|_| {
                let store = Arc::downgrade(&inner);
                std::thread::Builder::new()
                    .name("sqlite-checkpoint".into())
                    .spawn(move || checkpoint_loop(checkpointer, store, checkpoints))
            });
        if let Err(e) = spawned {
            return Err(StoreError::new("start the writer threads", e));
        }
        Ok(Self { inner })
    }

    /// Waits until every message acked so far is in the database.
    pub async fn settle(&self) -> StoreResult<()> {
        self.settled().await.map_err(err("apply acked messages"))
    }

    pub(crate) async fn settled(&self) -> rusqlite::Result<()> {
        self.write_then(|_| Ok(()), |_, _| {}, true).await
    }

    /// Hands a job to the writer thread and waits for its answer.
    pub(crate) async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<rusqlite::Result<T>>) -> Job,
    ) -> rusqlite::Result<T> {
        ask(&self.inner.writes, job, "the writer thread is gone").await
    }

    /// Runs `f` on the writer thread inside a transaction, and answers once that
    /// transaction committed. `after` runs on the writer thread right after the commit,
    /// before any later write's, so what it emits is in commit order. With
    /// `after_messages`, every message acked before is in the database before `f` runs.
    pub(crate) async fn write_then<T: Send + 'static>(
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

    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        self.write_then(f, |_, _| {}, false).await
    }

    /// Runs a scan (a read whose size grows with the data: history pages, a user's
    /// conversations, the outbox) on a pooled read connection, off the async threads.
    pub(crate) async fn read<T: Send + 'static>(
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
    pub(crate) fn lookup<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.inner.with_reader(f)
    }

    /// Reads a conversation with all its members from memory, loading it on a miss.
    pub(crate) fn with_roster<T>(
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
    pub(crate) async fn settle_for(
        &self,
        conversation: Option<&ConversationId>,
    ) -> rusqlite::Result<()> {
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
    pub(crate) async fn write_noting<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        note: impl FnOnce(&Cache, &T) + Send + 'static,
    ) -> rusqlite::Result<T> {
        self.write_noting_after(f, note, false).await
    }

    /// [`SqliteStore::write_noting`], after every message acked before it is applied
    /// when `after_messages` (for a write that reads what messages change).
    pub(crate) async fn write_noting_after<T: Send + 'static>(
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

impl Inner {
    pub(crate) fn with_reader<T>(
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
