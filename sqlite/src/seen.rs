//! The idempotency keys the store has seen, kept as Bloom filters: for nearly every new
//! message they answer "certainly never seen", and the sequencer skips looking its key
//! up in the database. Only a retry, or a false positive (about 0.5% of new keys per
//! filter asked), is looked up.
//!
//! That lookup was a tenth of the server's instructions per 1:1 message (a B-tree descent
//! that nearly always missed, plus the read transaction around it), on the one thread
//! every send waits for (perf-history.md, round eight).
//!
//! Two parts, so that no key is ever missing:
//! - `stored`: every key in the database when a scan began. A thread of its own scans
//!   the idempotency index at start; until it hands the filter over, every key is looked
//!   up, as before.
//! - `recent`: every key the sequencer gave a seq to since the start, in filters that
//!   double in size as they fill.
//!
//! A key in the database was either there at the start (so in the scan, which begins
//! after the append log was applied) or sequenced since (so in `recent`). Filters never
//! forget, so a deleted message only costs a lookup.

use std::hash::BuildHasher;
use std::sync::mpsc;

/// How keys are hashed: seeded at random per process, and with every bit of the hash
/// mixed, since a filter takes its block and its eight bits from different parts of it.
type KeyHasher = foldhash::quality::RandomState;

/// Keys the first `recent` filter holds; each further one holds twice the one before.
const FIRST_RECENT_KEYS: usize = 1 << 16;
/// Filter bits per key: with 8 bits set per key in one 512-bit block, about 0.5% of new
/// keys look seen.
const BITS_PER_KEY: usize = 12;

/// A blocked Bloom filter: each key sets one bit in each of the eight words of one
/// 64-byte block, so a test touches one cache line.
struct Bloom {
    blocks: Vec<[u64; 8]>,
    keys: usize,
    capacity: usize,
}

impl Bloom {
    pub fn with_capacity(capacity: usize) -> Self {
        let blocks = (capacity.max(1) * BITS_PER_KEY).div_ceil(512);
        Self {
            blocks: vec![[0; 8]; blocks],
            keys: 0,
            capacity,
        }
    }

    /// The block and the bit in each of its words for a key's hash.
    fn place(&self, hash: u64) -> (usize, [u64; 8]) {
        // The block from the low half; the bits (6 per word) from the hash mixed again,
        // so that they do not follow the block.
        let block = ((hash & 0xffff_ffff) as usize * self.blocks.len()) >> 32;
        let mixed = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
        let bits = std::array::from_fn(|i| 1u64 << ((mixed >> (6 * i)) & 63));
        (block, bits)
    }

    pub fn insert(&mut self, hash: u64) {
        let (block, bits) = self.place(hash);
        for (word, bit) in self.blocks[block].iter_mut().zip(bits) {
            *word |= bit;
        }
        self.keys += 1;
    }

    pub fn may_contain(&self, hash: u64) -> bool {
        let (block, bits) = self.place(hash);
        self.blocks[block]
            .iter()
            .zip(bits)
            .all(|(word, bit)| word & bit != 0)
    }

    /// Keys inserted.
    pub fn len(&self) -> usize {
        self.keys
    }

    fn is_full(&self) -> bool {
        self.keys >= self.capacity
    }
}

/// The sequencer's view of every idempotency key seen (see the module docs).
pub(super) struct SeenKeys {
    hasher: KeyHasher,
    stored: Option<Bloom>,
    /// Where the scan hands `stored` over; gone once it did (or failed).
    scanned: Option<mpsc::Receiver<Bloom>>,
    recent: Vec<Bloom>,
}

impl SeenKeys {
    /// Starts reading the keys in the database through `conn`, on a thread of its own
    /// at background priority; until it is done, every key may have been seen.
    pub fn start(conn: rusqlite::Connection) -> std::io::Result<Self> {
        let hasher = KeyHasher::default();
        let (hand_over, scanned) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-keys".into())
            .spawn(move || scan_in_background(&conn, &hasher, hand_over))?;
        Ok(Self::new(hasher, scanned))
    }

    /// Keys hashed with `hasher` (the scan's too); `stored` arrives on `scanned`.
    fn new(hasher: KeyHasher, scanned: mpsc::Receiver<Bloom>) -> Self {
        Self {
            hasher,
            stored: None,
            scanned: Some(scanned),
            recent: vec![Bloom::with_capacity(FIRST_RECENT_KEYS)],
        }
    }

    pub fn hash(&self, conversation: &str, sender: &str, client_message_id: &str) -> u64 {
        key_hash(&self.hasher, conversation, sender, client_message_id)
    }

    /// False only for a key certainly never seen: not in the database at the start and
    /// not sequenced since.
    pub fn may_contain(&mut self, hash: u64) -> bool {
        if self.stored.is_none() {
            self.take_scan();
        }
        match &self.stored {
            Some(stored) => {
                stored.may_contain(hash) || self.recent.iter().any(|f| f.may_contain(hash))
            }
            None => true,
        }
    }

    /// Notes a key just sequenced.
    pub fn insert(&mut self, hash: u64) {
        let last = self.recent.last_mut().expect("a recent filter");
        if last.is_full() {
            let bigger = Bloom::with_capacity(last.capacity * 2);
            self.recent.push(bigger);
        }
        self.recent
            .last_mut()
            .expect("a recent filter")
            .insert(hash);
    }

    /// Whether the scan's filter is in use.
    #[cfg(test)]
    pub fn scanned(&mut self) -> bool {
        self.take_scan();
        self.stored.is_some()
    }

    fn take_scan(&mut self) {
        let Some(scanned) = &self.scanned else {
            return;
        };
        match scanned.try_recv() {
            Ok(stored) => {
                self.stored = Some(stored);
                self.scanned = None;
            }
            Err(mpsc::TryRecvError::Empty) => {}
            // The scan failed (and said so): every key is looked up.
            Err(mpsc::TryRecvError::Disconnected) => self.scanned = None,
        }
    }
}

fn key_hash(hasher: &KeyHasher, conversation: &str, sender: &str, client_message_id: &str) -> u64 {
    // A tuple of strings hashes each with its length: no two keys run together.
    hasher.hash_one((conversation, sender, client_message_id))
}

/// Hands the sequencer's `SeenKeys` a filter of every key in the database. It runs
/// after the append log was applied (the store starts it once it is), so no key is
/// missing (see the module docs).
fn scan_in_background(
    conn: &rusqlite::Connection,
    hasher: &KeyHasher,
    hand_over: mpsc::Sender<Bloom>,
) {
    crate::threads::background_priority();
    let started = std::time::Instant::now();
    match scan(conn, hasher) {
        Ok(filter) => {
            tracing::debug!(
                keys = filter.len(),
                ms = started.elapsed().as_millis() as u64,
                "idempotency keys read"
            );
            let _ = hand_over.send(filter);
        }
        Err(e) => tracing::warn!(
            error = %e,
            "could not read the idempotency keys; every send looks its key up"
        ),
    }
}

/// Reads every idempotency key in the database into a filter (the index alone is read,
/// twice: once to size the filter, once to fill it).
fn scan(conn: &rusqlite::Connection, hasher: &KeyHasher) -> rusqlite::Result<Bloom> {
    // One snapshot for both reads, so the count is the number of keys read.
    conn.execute_batch("BEGIN")?;
    let filled = fill(conn, hasher);
    conn.execute_batch("COMMIT")?;
    filled
}

fn fill(conn: &rusqlite::Connection, hasher: &KeyHasher) -> rusqlite::Result<Bloom> {
    let keys: usize = conn.query_row(
        "SELECT COUNT(*) FROM messages INDEXED BY messages_idempotency",
        [],
        |r| r.get(0),
    )?;
    let mut filter = Bloom::with_capacity(keys);
    let mut stmt = conn.prepare(
        "SELECT conversation_id, sender_id, client_message_id
         FROM messages INDEXED BY messages_idempotency",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        filter.insert(key_hash(
            hasher,
            row.get_ref(0)?.as_str()?,
            row.get_ref(1)?.as_str()?,
            row.get_ref(2)?.as_str()?,
        ));
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_keeps_every_key_and_refuses_most_others() {
        let hasher = KeyHasher::default();
        let mut filter = Bloom::with_capacity(10_000);
        let key = |i: usize| key_hash(&hasher, "c_1", "alice", &format!("m{i}"));
        for i in 0..10_000 {
            filter.insert(key(i));
        }
        assert!((0..10_000).all(|i| filter.may_contain(key(i))));
        let false_positives = (10_000..110_000)
            .filter(|&i| filter.may_contain(key(i)))
            .count();
        // About 0.5% expected at 12 bits per key.
        assert!(false_positives < 1_500, "{false_positives} of 100,000");
    }

    #[test]
    fn keys_differ_by_where_their_parts_end() {
        let hasher = KeyHasher::default();
        assert_ne!(
            key_hash(&hasher, "c_1", "ab", "c"),
            key_hash(&hasher, "c_1", "a", "bc")
        );
    }

    #[test]
    fn every_key_may_be_seen_until_the_scan_arrives_and_recent_filters_grow() {
        let hasher = KeyHasher::default();
        let (hand_over, scanned) = mpsc::channel();
        let mut seen = SeenKeys::new(hasher, scanned);
        let fresh = seen.hash("c_1", "alice", "never");
        assert!(seen.may_contain(fresh), "no scan yet: look everything up");

        let mut stored = Bloom::with_capacity(1);
        let old = key_hash(&hasher, "c_1", "alice", "old");
        stored.insert(old);
        hand_over.send(stored).unwrap();
        assert!(seen.may_contain(old));
        assert!(!seen.may_contain(fresh));

        let sequenced: Vec<u64> = (0..3 * FIRST_RECENT_KEYS)
            .map(|i| seen.hash("c_2", "bob", &i.to_string()))
            .collect();
        for &h in &sequenced {
            seen.insert(h);
        }
        assert_eq!(
            seen.recent.len(),
            2,
            "the second filter holds twice the first"
        );
        assert!(sequenced.iter().all(|&h| seen.may_contain(h)));
    }

    #[test]
    fn the_scan_reads_every_key_in_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("c.db")).unwrap();
        conn.execute_batch(crate::schema::SCHEMA).unwrap();
        for i in 0..1_000 {
            conn.execute(
                "INSERT INTO messages (conversation_id, seq, message_id, sender_id,
                     client_message_id, content, timestamp)
                 VALUES ('c_1', ?1, ?2, ?3, ?4, '{}', 1)",
                rusqlite::params![i, format!("m_{i}"), format!("u{}", i % 7), format!("k{i}")],
            )
            .unwrap();
        }
        let hasher = KeyHasher::default();
        let filter = scan(&conn, &hasher).unwrap();
        assert_eq!(filter.len(), 1_000);
        let stored = |i: usize| key_hash(&hasher, "c_1", &format!("u{}", i % 7), &format!("k{i}"));
        assert!((0..1_000).all(|i| filter.may_contain(stored(i))));
        // The same client ids from another sender are other keys.
        let others = (0..1_000)
            .filter(|&i| filter.may_contain(key_hash(&hasher, "c_1", "zed", &format!("k{i}"))))
            .count();
        assert!(others < 30, "{others} of 1,000");
    }

    #[test]
    fn a_failed_scan_means_every_key_is_looked_up() {
        let (hand_over, scanned) = mpsc::channel::<Bloom>();
        let mut seen = SeenKeys::new(KeyHasher::default(), scanned);
        drop(hand_over);
        let h = seen.hash("c_1", "alice", "x");
        assert!(seen.may_contain(h));
        assert!(!seen.scanned());
    }
}
