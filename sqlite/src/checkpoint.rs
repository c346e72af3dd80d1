//! Checkpoints: the WAL copied back into the database on a thread of its own, off the
//! commit path, with only the last few frames left for the writer, so that the WAL
//! starts over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::Connection;

use crate::store::Inner;
use crate::threads::background_priority;

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

/// What the writer and the checkpointer tell each other.
#[derive(Default)]
pub(crate) struct CheckpointFlags {
    /// The checkpointer copied most of a large WAL: the writer copies the rest itself
    /// and starts the WAL over.
    pub restart: AtomicBool,
    /// A delete erased text that older frames of the WAL may still hold: the checkpointer
    /// copies the WAL back and truncates it (PROTOCOL.md 8.2, "Deleting erases").
    pub erase: AtomicBool,
}

/// How long the writer waits after its checkpoint for the reads begun before it to end,
/// so that its next transaction can start the WAL over.
const RESTART_PAUSE: Duration = Duration::from_micros(500);

/// Copies into the database the WAL frames committed since the checkpointer's last copy,
/// so that the writer's next transaction starts the WAL over from its beginning.
///
/// Under load the checkpointer alone never catches up (frames keep coming while it
/// copies), the WAL only grows, and every frame lands in a fresh page the kernel must
/// zero first: 40% of this thread at 3,000 msg/s, with a 750 MB WAL after ten seconds.
/// Here no frame can come in between. The price is a pause of the writer for two fsyncs
/// (2-20 ms on this machine's disk), which is why it waits for a WAL of
/// `RESTART_AFTER_FRAMES`.
pub(crate) fn finish_checkpoint(conn: &Connection) {
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
pub(crate) fn checkpoint_loop(conn: Connection, store: Weak<Inner>, flags: Arc<CheckpointFlags>) {
    background_priority();
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        if store.upgrade().is_none() {
            return;
        }
        if flags.erase.swap(false, Ordering::AcqRel) && !truncate(&conn) {
            flags.erase.store(true, Ordering::Release);
        }
        let mut seen = 0;
        for _ in 0..MAX_CHECKPOINT_PASSES {
            match passive_checkpoint(&conn) {
                Ok((frames, _)) if frames > seen + SMALL_WAL_TAIL => seen = frames,
                // The writer copies what came in meanwhile, then starts the WAL over.
                Ok((frames, _)) if frames > RESTART_AFTER_FRAMES => {
                    flags.restart.store(true, Ordering::Release);
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

/// Copies the whole WAL back into the database and truncates it, so that no older copy
/// of an erased page stays in it; false when readers or the writer kept it from
/// finishing (tried again a second later). It waits for the writer's transaction and the
/// reads in progress, holding off new writes meanwhile: rare (after deletes), and short.
fn truncate(conn: &Connection) -> bool {
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(busy) => busy == 0,
        Err(e) => {
            tracing::warn!(error = %e, "WAL truncation failed");
            false
        }
    }
}
