//! Attachments' records (their bytes are the blob store's, files beside the database in
//! `chat-local`). A message claims its attachments in the sequencer ([`claimable`]) and
//! the writer records the claim when it applies the message ([`record_use`]).

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use chat_shared::ids::{AttachmentId, ConversationId, Millis, Seq, UserId};
use chat_shared::ports::{
    AttachmentRecord, AttachmentStore, AttachmentUse, MessageRecord, StoreResult,
};
use chat_shared::protocol::Entry;

use crate::errors::err;
use crate::in_flight::InFlight;
use crate::queries::strings;
use crate::rows::bad_value;
use crate::store::SqliteStore;

const COLUMNS: &str =
    "id, conversation_id, uploader, mime_type, size, file_name, created_at, message_seq, avatar";

fn attachment_at(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttachmentRecord> {
    let used_by = match (r.get::<_, Option<Seq>>(7)?, r.get::<_, bool>(8)?) {
        (Some(seq), _) => Some(AttachmentUse::Message(seq)),
        (None, true) => Some(AttachmentUse::Avatar),
        (None, false) => None,
    };
    Ok(AttachmentRecord {
        id: AttachmentId::parse(r.get::<_, String>(0)?).map_err(|e| bad_value(0, e))?,
        conversation_id: ConversationId::parse(r.get::<_, String>(1)?)
            .map_err(|e| bad_value(1, e))?,
        uploader: UserId::parse(r.get::<_, String>(2)?).map_err(|e| bad_value(2, e))?,
        mime_type: r.get(3)?,
        size: r.get(4)?,
        file_name: r.get(5)?,
        created_at: r.get(6)?,
        used_by,
    })
}

fn read(c: &Connection, ids: &[String]) -> rusqlite::Result<Vec<AttachmentRecord>> {
    let marks = vec!["?"; ids.len()].join(",");
    let mut stmt = c.prepare(&format!(
        "SELECT {COLUMNS} FROM attachments WHERE id IN ({marks})"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(ids), attachment_at)?;
    rows.collect()
}

/// The ids a `message` entry uses (its attachment and thumbnail).
fn used_ids(entry: &Entry) -> impl Iterator<Item = &AttachmentId> {
    let content = match entry {
        Entry::Message { content, .. } => content.as_ref(),
        _ => None,
    };
    content.into_iter().flat_map(|c| c.attachment_ids())
}

/// Attachments claimed and not yet visible to the other claimer: by the sequencer, from
/// its check until the entry is published in flight; by an avatar change, from its write
/// until its commit. A message and an avatar race for an attachment only here: each
/// claims under this lock and refuses one the other holds, and what either did before
/// is in the database or in flight, which both check.
#[derive(Default)]
pub(crate) struct Claiming(std::sync::Mutex<foldhash::HashSet<String>>);

impl Claiming {
    /// Takes `ids` unless one is held already.
    pub(crate) fn take(&self, ids: &[&AttachmentId]) -> bool {
        let mut held = self.0.lock().expect("claiming");
        if ids.iter().any(|id| held.contains(id.as_str())) {
            return false;
        }
        held.extend(ids.iter().map(|id| id.as_str().to_owned()));
        true
    }

    pub(crate) fn release<'a>(&self, ids: impl IntoIterator<Item = &'a AttachmentId>) {
        let mut held = self.0.lock().expect("claiming");
        for id in ids {
            held.remove(id.as_str());
        }
    }
}

/// The attachments the entries of a batch claimed.
pub(crate) fn claimed(entries: &[crate::in_flight::Sequenced]) -> Vec<AttachmentId> {
    entries
        .iter()
        .flat_map(|s| used_ids(&s.record.entry))
        .cloned()
        .collect()
}

/// Whether a message in flight in `conversation` uses `id`.
pub(crate) fn used_in_flight(in_flight: &InFlight, conversation: &str, id: &AttachmentId) -> bool {
    in_flight
        .entries(conversation)
        .iter()
        .any(|m| used_ids(&m.entry).any(|u| u == id))
}

/// Whether `sender` may use these attachments in a message of `conversation` now: each
/// is theirs, of this conversation, and used by nothing: not in the database, not by an
/// entry in flight, not by one earlier in the batch (`fresh`). The entries in flight are
/// taken before the database is read: one landing in between is seen in both.
pub(crate) fn claimable(
    reader: &Connection,
    in_flight: &InFlight,
    fresh: impl Iterator<Item = Arc<MessageRecord>>,
    conversation: &str,
    sender: &str,
    ids: &[&AttachmentId],
) -> rusqlite::Result<bool> {
    let earlier: Vec<Arc<MessageRecord>> = in_flight
        .entries(conversation)
        .into_iter()
        .chain(fresh)
        .collect();
    if earlier
        .iter()
        .any(|m| used_ids(&m.entry).any(|u| ids.contains(&u)))
    {
        return Ok(false);
    }
    let mut stmt = reader.prepare_cached(
        "SELECT 1 FROM attachments WHERE id = ?1 AND conversation_id = ?2 AND uploader = ?3
           AND message_seq IS NULL AND avatar = 0",
    )?;
    for id in ids {
        let free = stmt
            .query_row(params![id.as_str(), conversation, sender], |_| Ok(()))
            .optional()?;
        if free.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Records that the message `m` uses its attachments (the writer, applying it).
pub(crate) fn record_use(tx: &Connection, m: &MessageRecord) -> rusqlite::Result<()> {
    if used_ids(&m.entry).next().is_none() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "UPDATE attachments SET message_seq = ?2, used_at = ?3
         WHERE id = ?1 AND message_seq IS NULL",
    )?;
    for id in used_ids(&m.entry) {
        stmt.execute(params![id.as_str(), m.seq, m.timestamp])?;
    }
    Ok(())
}

/// Makes `id` the avatar of `conversation` if it is `actor`'s attachment of it and
/// nothing uses it (the messages acked before are applied: see `set_details`).
pub(crate) fn claim_avatar(
    tx: &Connection,
    conversation: &str,
    actor: &str,
    id: &AttachmentId,
) -> rusqlite::Result<bool> {
    Ok(tx.execute(
        "UPDATE attachments SET avatar = 1
         WHERE id = ?1 AND conversation_id = ?2 AND uploader = ?3
           AND message_seq IS NULL AND avatar = 0",
        params![id.as_str(), conversation, actor],
    )? == 1)
}

/// Releases a replaced avatar: unused, and dated back to the epoch, so that no send may
/// use it and the next sweep takes it if the caller does not delete it first.
pub(crate) fn release_avatar(tx: &Connection, id: &AttachmentId) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE attachments SET avatar = 0, created_at = 0 WHERE id = ?1",
        [id.as_str()],
    )
    .map(drop)
}

#[async_trait]
impl AttachmentStore for SqliteStore {
    async fn create_attachment(&self, a: &AttachmentRecord) -> StoreResult<()> {
        let a = a.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO attachments (id, conversation_id, uploader, mime_type, size,
                     file_name, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    a.id.as_str(),
                    a.conversation_id.as_str(),
                    a.uploader.as_str(),
                    a.mime_type,
                    a.size,
                    a.file_name,
                    a.created_at
                ],
            )
            .map(drop)
        })
        .await
        .map_err(err("create attachment"))
    }

    async fn attachments(&self, ids: &[AttachmentId]) -> StoreResult<Vec<AttachmentRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = strings(ids);
        let found = self
            .lookup(|c| read(c, &ids))
            .map_err(err("read attachments"))?;
        // One not used may be by a message in flight: read again once its conversation's
        // entries are applied.
        let mut waited = Vec::new();
        for a in found.iter().filter(|a| a.used_by.is_none()) {
            if !waited.contains(&&a.conversation_id) {
                waited.push(&a.conversation_id);
                self.settle_for(Some(&a.conversation_id))
                    .await
                    .map_err(err("read attachments"))?;
            }
        }
        if waited.is_empty() {
            return Ok(found);
        }
        self.lookup(|c| read(c, &ids))
            .map_err(err("read attachments"))
    }

    async fn message_attachments(
        &self,
        conversation: &ConversationId,
        seq: Seq,
    ) -> StoreResult<Vec<AttachmentId>> {
        self.settle_for(Some(conversation))
            .await
            .map_err(err("read a message's attachments"))?;
        let cid = conversation.as_str();
        self.lookup(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id FROM attachments WHERE conversation_id = ?1 AND message_seq = ?2",
            )?;
            let rows = stmt.query_map(params![cid, seq], |r| {
                AttachmentId::parse(r.get::<_, String>(0)?).map_err(|e| bad_value(0, e))
            })?;
            rows.collect()
        })
        .map_err(err("read a message's attachments"))
    }

    async fn doomed_attachments(
        &self,
        unused_before: Millis,
        expired_before: Millis,
        limit: u32,
    ) -> StoreResult<Vec<AttachmentId>> {
        // Every message acked so far first: one that claimed an old attachment is in the
        // database before the sweep reads it as unused, however late the writer is.
        self.settle_for(None)
            .await
            .map_err(err("find expired attachments"))?;
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id FROM attachments
                 WHERE message_seq IS NULL AND avatar = 0 AND created_at < ?1
                 UNION ALL
                 SELECT id FROM attachments WHERE message_seq IS NOT NULL AND used_at < ?2
                 LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![unused_before, expired_before, limit], |r| {
                AttachmentId::parse(r.get::<_, String>(0)?).map_err(|e| bad_value(0, e))
            })?;
            rows.collect()
        })
        .await
        .map_err(err("find expired attachments"))
    }

    /// The records go like a deleted message's text: overwritten (`secure_delete`), and
    /// the WAL that held them truncated by the checkpointer.
    async fn forget_attachments(&self, ids: &[AttachmentId]) -> StoreResult<()> {
        let ids = strings(ids);
        self.write(move |tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM attachments WHERE id = ?1")?;
            for id in &ids {
                stmt.execute([id])?;
            }
            Ok(())
        })
        .await
        .map_err(err("forget attachments"))?;
        self.inner
            .checkpoints
            .erase
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}
