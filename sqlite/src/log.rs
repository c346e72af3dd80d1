//! The append log: messages acked before they are in the database.
//!
//! The sequencer acks a batch of messages once it is in this log (one `write`, plus an
//! fsync under `PowerLoss` durability); the writer thread copies them into the database
//! later, many at once. The log is a run of segment files beside the database
//! (`<database>-log.<n>`). Each time the writer committed messages a new segment begins
//! and the segments holding only those are deleted, so the log holds about one apply's
//! worth.
//!
//! The sequencer and the writer share only the segment being written (the [`Tail`]),
//! and the writer does its file work (creating and deleting segments) outside that lock:
//! a deletion or a creation can wait on the file system's journal for as long as an
//! fsync of the database takes (12 ms seen at 5,000 1:1 msg/s), and the writer runs at
//! a lower priority, so the sequencer, which acks, would wait behind both.
//!
//! At the next start whatever the segments still hold is applied again, oldest first: a
//! message already in the database (the process died between a commit and the deletion)
//! is recognised by its seq and skipped.
//!
//! One JSON line per message. A crash during a `write` can leave a last line without its
//! newline; nothing in that write was acked, so it is dropped. A whole line that cannot
//! be read (damaged on disk: not UTF-8, not JSON) is skipped with an error naming its
//! file and line, and the lines after it are read as usual: one bad byte costs one
//! message, not the start of the server.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use chat_shared::ids::{ConversationId, Millis, Seq, UserId};
use chat_shared::ports::MessageRecord;
use chat_shared::protocol::{Content, Entry, EntryKind};

use crate::private;
use crate::system::StoredChange;

/// An entry as the log holds it (the fields of [`MessageRecord`] but its state, which a
/// new entry does not have): borrowed from the record when written, owned when read
/// back. A line without `kind` is a message (logs from before other kinds).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    conversation_id: Cow<'a, str>,
    seq: Seq,
    message_id: Cow<'a, str>,
    sender_id: Cow<'a, str>,
    client_message_id: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<Cow<'a, str>>,
    content: Option<Cow<'a, Content>>,
    reply_to: Option<Seq>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_seq: Option<Seq>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    emoji: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    system: Option<StoredChange>,
    timestamp: Millis,
    origin_connection: Option<Cow<'a, str>>,
}

impl<'a> Line<'a> {
    fn of(m: &'a MessageRecord) -> Self {
        let (mut reply_to, mut target_seq, mut emoji, mut removed) = (None, None, None, false);
        let mut system = None;
        match &m.entry {
            Entry::System(change) => system = Some(StoredChange::of(change)),
            Entry::Message { reply_to: r, .. } => reply_to = *r,
            Entry::Edit { target_seq: t, .. } | Entry::Delete { target_seq: t } => {
                target_seq = Some(*t);
            }
            Entry::Reaction {
                target_seq: t,
                emoji: e,
                removed: r,
            } => {
                target_seq = Some(*t);
                emoji = Some(Cow::Borrowed(e.as_str()));
                removed = *r;
            }
        }
        let kind = m.entry.kind();
        Self {
            conversation_id: m.conversation_id.as_str().into(),
            seq: m.seq,
            message_id: m.message_id.as_str().into(),
            sender_id: m.sender_id.as_str().into(),
            client_message_id: m.client_message_id.as_str().into(),
            kind: (kind != EntryKind::Message).then(|| Cow::Borrowed(kind.as_str())),
            content: m.entry.content().map(Cow::Borrowed),
            reply_to,
            target_seq,
            emoji,
            removed,
            system,
            timestamp: m.timestamp,
            origin_connection: m.origin_connection.as_deref().map(Cow::Borrowed),
        }
    }

    fn record(self) -> Result<MessageRecord, String> {
        let kind = match self.kind.as_deref() {
            None => EntryKind::Message,
            Some(k) => EntryKind::parse(k).ok_or_else(|| format!("unknown kind {k:?}"))?,
        };
        let content = self.content.map(Cow::into_owned);
        let target = || self.target_seq.ok_or("an entry without its target");
        let entry = match kind {
            EntryKind::Message => Entry::Message {
                content,
                reply_to: self.reply_to,
            },
            EntryKind::Edit => Entry::Edit {
                target_seq: target()?,
                content,
            },
            EntryKind::Delete => Entry::Delete {
                target_seq: target()?,
            },
            EntryKind::Reaction => Entry::Reaction {
                target_seq: target()?,
                emoji: self
                    .emoji
                    .ok_or("a reaction without its emoji")?
                    .into_owned(),
                removed: self.removed,
            },
            EntryKind::System => Entry::System(
                self.system
                    .ok_or("a system entry without its change")?
                    .change()?,
            ),
        };
        Ok(MessageRecord {
            conversation_id: ConversationId::parse(self.conversation_id.into_owned())
                .map_err(|e| e.to_string())?,
            seq: self.seq,
            message_id: self.message_id.into_owned(),
            sender_id: UserId::parse(self.sender_id.into_owned()).map_err(|e| e.to_string())?,
            client_message_id: self.client_message_id.into_owned(),
            entry,
            timestamp: self.timestamp,
            origin_connection: self.origin_connection.map(Cow::into_owned),
            state: Default::default(),
        })
    }
}

/// One line of a segment (without its newline) as the message it holds.
fn read_line(line: &[u8]) -> Result<MessageRecord, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_json::from_str::<Line<'_>>(text)
        .map_err(|e| e.to_string())
        .and_then(Line::record)
}

/// A segment being written.
pub(super) struct Segment {
    file: File,
    path: PathBuf,
    len: u64,
    /// The id of the last message written to it.
    last_id: Option<i64>,
    /// fsync each append (the store's `PowerLoss` durability).
    sync: bool,
}

/// The segment being written: the sequencer appends to it, the writer swaps in a new one.
pub(super) type Tail = Arc<Mutex<Segment>>;

/// The log's segment files beside one database, as the writer sees them.
pub(super) struct AppendLog {
    /// `<database>-log.`: a segment's path is this and its number.
    prefix: PathBuf,
    tail: Tail,
    next_number: u64,
    /// Segments no longer written, oldest first, with the id of their last message.
    sealed: VecDeque<(PathBuf, i64)>,
    /// fsync each append and each new segment (the store's `PowerLoss` durability).
    sync: bool,
}

fn prefix_for(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-log.");
    PathBuf::from(name)
}

/// The segments beside `database`, oldest first, with their numbers.
fn segments(database: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let prefix = prefix_for(database);
    let dir = match prefix.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix(&stem).and_then(|n| n.parse::<u64>().ok()) {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// What an earlier process left in the log: its messages in the order written, and the
/// segment files that held them (delete them once the messages are in the database).
pub(super) struct Leftovers {
    pub records: Vec<MessageRecord>,
    pub files: Vec<PathBuf>,
    next_number: u64,
}

impl AppendLog {
    /// Reads the segments an earlier process left beside `database`.
    pub(super) fn recover(database: &Path) -> std::io::Result<Leftovers> {
        let mut records = Vec::new();
        let mut files = Vec::new();
        let mut next_number = 0;
        for (n, path) in segments(database)? {
            let bytes = std::fs::read(&path)?;
            // Only lines with their newline were written whole.
            let whole = bytes
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(&[][..], |end| &bytes[..=end]);
            // A damaged line (not UTF-8, not JSON, not a message) costs that line only:
            // the lines after it were written whole and are read as usual.
            for (i, line) in whole.split_inclusive(|&b| b == b'\n').enumerate() {
                match read_line(&line[..line.len() - 1]) {
                    Ok(record) => records.push(record),
                    Err(e) => tracing::error!(line = i + 1, error = %e, path = %path.display(),
                        "append log: unreadable line skipped (its message is lost unless already in the database)"),
                }
            }
            files.push(path);
            next_number = n + 1;
        }
        Ok(Leftovers {
            records,
            files,
            next_number,
        })
    }

    /// Starts the log with a new segment, deleting what `leftovers` read (its messages
    /// must be in the database by now).
    pub(super) fn start(
        database: &Path,
        sync: bool,
        leftovers: Leftovers,
    ) -> std::io::Result<Self> {
        for path in &leftovers.files {
            std::fs::remove_file(path)?;
        }
        let prefix = prefix_for(database);
        let tail = new_segment(&prefix, leftovers.next_number, sync)?;
        Ok(Self {
            prefix,
            tail: Arc::new(Mutex::new(tail)),
            next_number: leftovers.next_number + 1,
            sealed: VecDeque::new(),
            sync,
        })
    }

    /// The segment the sequencer appends to.
    pub(super) fn tail(&self) -> Tail {
        self.tail.clone()
    }

    /// Every message up to id `through` is in the database: starts a new segment and
    /// deletes the segments that hold nothing later. The tail's lock is held only to
    /// swap the segments.
    pub(super) fn applied_through(&mut self, through: i64) {
        if lock(&self.tail).last_id.is_some() {
            match new_segment(&self.prefix, self.next_number, self.sync) {
                Ok(fresh) => {
                    self.next_number += 1;
                    let full = std::mem::replace(&mut *lock(&self.tail), fresh);
                    let last = full.last_id.expect("a segment is never emptied");
                    self.sealed.push_back((full.path, last));
                }
                // The tail simply goes on growing until the next try.
                Err(e) => tracing::warn!(error = %e, "append log: could not start a segment"),
            }
        }
        while let Some((path, last)) = self.sealed.front() {
            if *last > through {
                break;
            }
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(error = %e, path = %path.display(),
                    "append log: could not delete an applied segment");
            }
            self.sealed.pop_front();
        }
    }
}

/// The tail, even if a thread panicked while holding it (a segment is consistent between
/// calls: a failed append cuts the file back).
pub(super) fn lock(tail: &Tail) -> std::sync::MutexGuard<'_, Segment> {
    tail.lock().unwrap_or_else(|e| e.into_inner())
}

impl Segment {
    /// Writes `records` (each with its id) with one `write`, and an fsync when asked
    /// for. On failure the segment is cut back to what it held, so no partial line stays
    /// between whole ones.
    pub(super) fn append<'a>(
        &mut self,
        records: impl Iterator<Item = (i64, &'a MessageRecord)>,
    ) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        let mut last_id = None;
        for (id, m) in records {
            serde_json::to_writer(&mut buf, &Line::of(m))?;
            buf.push(b'\n');
            last_id = Some(id);
        }
        if buf.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&buf).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.last_id = last_id;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(error = %cut, path = %self.path.display(),
                        "append log: could not cut a failed write back");
                }
                Err(e)
            }
        }
    }
}

fn new_segment(prefix: &Path, number: u64, sync: bool) -> std::io::Result<Segment> {
    let mut name = prefix.as_os_str().to_owned();
    name.push(number.to_string());
    let path = PathBuf::from(name);
    let file = private::options()
        .append(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    private::restrict(&file, &path)?;
    if sync {
        // The new name must survive a power loss too, or what is written under it would.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(Segment {
        len: file.metadata()?.len(),
        file,
        path,
        last_id: None,
        sync,
    })
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    fn record(seq: Seq) -> MessageRecord {
        crate::tests::test_message("c_log", seq)
    }

    fn start(db: &Path) -> AppendLog {
        AppendLog::start(db, false, AppendLog::recover(db).unwrap()).unwrap()
    }

    #[test]
    fn what_was_not_applied_is_read_back_in_order_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        let mut log = start(&db);
        let (a, b, c) = (record(1), record(2), record(3));
        lock(&log.tail())
            .append([(1, &a), (2, &b)].into_iter())
            .unwrap();
        // The writer applied 1 and 2: the next message goes to a new segment.
        log.applied_through(1);
        lock(&log.tail()).append([(3, &c)].into_iter()).unwrap();
        drop(log);
        let last = segments(&db).unwrap().last().unwrap().1.clone();
        OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap()
            .write_all(b"{\"conversationId\":\"c_lo")
            .unwrap();

        let leftovers = AppendLog::recover(&db).unwrap();

        let seqs: Vec<Seq> = leftovers.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(leftovers.files.len(), 2);
        AppendLog::start(&db, false, leftovers).unwrap();
        assert!(AppendLog::recover(&db).unwrap().records.is_empty());
    }

    #[test]
    fn damaged_lines_are_skipped_and_the_lines_after_them_kept() {
        // GIVEN a segment holding 1, a line that is not UTF-8, 2, a line that is not
        // JSON, and 3
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        let log = start(&db);
        let (a, b, c) = (record(1), record(2), record(3));
        let path = segments(&db).unwrap().last().unwrap().1.clone();
        let damage = |bytes: &[u8]| {
            OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(bytes)
                .unwrap();
        };
        lock(&log.tail()).append([(1, &a)].into_iter()).unwrap();
        damage(b"{\"conversationId\":\"c_\xff\xfe\"}\n");
        lock(&log.tail()).append([(2, &b)].into_iter()).unwrap();
        damage(b"not json\n");
        lock(&log.tail()).append([(3, &c)].into_iter()).unwrap();
        drop(log);

        // WHEN the next process reads the log
        let leftovers = AppendLog::recover(&db).unwrap();

        // THEN it has every whole record, in order, and only the damaged lines are gone
        let seqs: Vec<Seq> = leftovers.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn applied_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        let mut log = start(&db);
        for seq in 1..=3 {
            let r = record(seq);
            lock(&log.tail())
                .append([(seq as i64, &r)].into_iter())
                .unwrap();
            log.applied_through(seq as i64 - 1);
        }
        assert_eq!(
            segments(&db).unwrap().len(),
            2,
            "one sealed and the current one"
        );

        log.applied_through(3);

        assert_eq!(segments(&db).unwrap().len(), 1);
        assert!(AppendLog::recover(&db).unwrap().records.is_empty());
    }
}
