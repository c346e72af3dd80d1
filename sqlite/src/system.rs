//! `system` entries (PROTOCOL.md 8.4): how one is stored, and how a membership change
//! and its entry are made atomic.
//!
//! Seqs come from the sequencer, membership changes are written by the writer thread.
//! So a change writes, in its own transaction, the entry it owes as a **pending entry**
//! (with its clientMessageId already chosen); the store then appends it through the
//! sequencer, and the writer deletes the pending row in the transaction that applies the
//! entry. A crash in between leaves the row, and the next start appends it again (its
//! clientMessageId makes a second append of the same entry a duplicate): the change is
//! never left without its entry.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use chat_shared::ids::{ConversationId, Millis, Seq, UserId};
use chat_shared::ports::{AppendOutcome, MessageRecord, MessageStore, NewMessage, StoreResult};

use crate::apply::{Outbox, apply_messages};
use crate::errors::json_text;
use crate::store::SqliteStore;
use chat_shared::protocol::{Entry, SystemChange, SystemEvent};

/// A `system` entry's change as stored: the `content` column of its row, and its line
/// of the append log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredChange {
    event: String,
    user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar: Option<String>,
}

impl StoredChange {
    pub(crate) fn of(c: &SystemChange) -> Self {
        Self {
            event: c.event.as_str().to_owned(),
            user_ids: c.user_ids.iter().map(|u| u.as_str().to_owned()).collect(),
            actor_id: c.actor.as_ref().map(|u| u.as_str().to_owned()),
            role: c.role.clone(),
            name: c.name.clone(),
            avatar: c.avatar.clone(),
        }
    }

    pub(crate) fn change(self) -> Result<SystemChange, String> {
        let user = |u: String| UserId::parse(u).map_err(|e| e.to_string());
        Ok(SystemChange {
            event: SystemEvent::parse(&self.event)
                .ok_or_else(|| format!("unknown system event {:?}", self.event))?,
            user_ids: self
                .user_ids
                .into_iter()
                .map(user)
                .collect::<Result<_, _>>()?,
            actor: self.actor_id.map(user).transpose()?,
            role: self.role,
            name: self.name,
            avatar: self.avatar,
        })
    }
}

impl SqliteStore {
    /// Appends the entries a change owed, in order (see the module's doc).
    pub(crate) async fn pay(&self, owed: Vec<NewMessage>) -> StoreResult<()> {
        for entry in owed {
            match self.append_message(&entry).await? {
                AppendOutcome::Stored(_) | AppendOutcome::Duplicate(_) => {}
                other => tracing::error!(outcome = ?other, "a system entry was not appended"),
            }
        }
        Ok(())
    }
}

/// Records `entry` (a `system` one) as owed by the change being written in `tx`.
pub(crate) fn owe(tx: &Connection, entry: &NewMessage) -> rusqlite::Result<()> {
    let Entry::System(change) = &entry.entry else {
        return Ok(());
    };
    let stored = json_text(&PendingEntry {
        message_id: entry.message_id.clone(),
        sender_id: entry.sender_id.as_str().to_owned(),
        now: entry.now,
        expires_at: entry.expires_at,
        change: StoredChange::of(change),
    })?;
    tx.prepare_cached(
        "INSERT INTO pending_entries (conversation_id, client_message_id, entry)
         VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        entry.conversation_id.as_str(),
        entry.client_message_id,
        stored
    ])?;
    Ok(())
}

/// The entry `record` paid: its pending row goes (in the transaction that applies it).
pub(crate) fn paid(tx: &Connection, record: &MessageRecord) -> rusqlite::Result<()> {
    paid_key(
        tx,
        record.conversation_id.as_str(),
        &record.client_message_id,
    )
}

fn paid_key(tx: &Connection, conversation: &str, client_message_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "DELETE FROM pending_entries WHERE conversation_id = ?1 AND client_message_id = ?2",
    )?
    .execute(params![conversation, client_message_id])?;
    Ok(())
}

/// Appends every entry still owed (an earlier process stopped between a change and its
/// entry), oldest first, straight into the database: at the start, before the sequencer
/// runs, so each takes the next seq of its conversation as the database has it. Each
/// gets an outbox row, so it is fanned out like any entry.
pub(crate) fn pay_owed(writer: &Connection) -> rusqlite::Result<()> {
    let owed = owed(writer)?;
    if owed.is_empty() {
        return Ok(());
    }
    writer.execute_batch("BEGIN IMMEDIATE")?;
    for entry in &owed {
        let head = writer
            .prepare_cached(
                "SELECT c.last_seq, COALESCE((SELECT MAX(m.timestamp) FROM messages m
                         WHERE m.conversation_id = c.id AND m.seq = c.last_seq), c.last_message_at)
                 FROM conversations c WHERE c.id = ?1",
            )?
            .query_row([entry.conversation_id.as_str()], |r| {
                Ok((r.get::<_, Seq>(0)?, r.get::<_, Millis>(1)?))
            })
            .optional()?;
        let Some((last_seq, last_at)) = head else {
            paid_key(
                writer,
                entry.conversation_id.as_str(),
                &entry.client_message_id,
            )?;
            continue;
        };
        let record = MessageRecord {
            conversation_id: entry.conversation_id.clone(),
            seq: last_seq + 1,
            message_id: entry.message_id.clone(),
            sender_id: entry.sender_id.clone(),
            client_message_id: entry.client_message_id.clone(),
            entry: entry.entry.clone(),
            timestamp: entry.now.max(last_at),
            origin_connection: None,
            state: Default::default(),
        };
        apply_messages(writer, std::iter::once((&record, Outbox::Fresh)))?;
    }
    writer.execute_batch("COMMIT")?;
    tracing::info!(
        entries = owed.len(),
        "appended the system entries an earlier process owed"
    );
    Ok(())
}

/// Every entry still owed, oldest first.
fn owed(c: &Connection) -> rusqlite::Result<Vec<NewMessage>> {
    let mut stmt = c.prepare(
        "SELECT conversation_id, client_message_id, entry FROM pending_entries ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (conversation, client_message_id, stored) = row?;
        match pending(conversation, client_message_id, &stored) {
            Ok(entry) => out.push(entry),
            Err(e) => tracing::error!(error = %e, "a pending system entry cannot be read; skipped"),
        }
    }
    Ok(out)
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PendingEntry {
    message_id: String,
    sender_id: String,
    now: i64,
    expires_at: Option<i64>,
    change: StoredChange,
}

fn pending(
    conversation: String,
    client_message_id: String,
    stored: &str,
) -> Result<NewMessage, String> {
    let p: PendingEntry = serde_json::from_str(stored).map_err(|e| e.to_string())?;
    Ok(NewMessage {
        conversation_id: ConversationId::parse(conversation).map_err(|e| e.to_string())?,
        message_id: p.message_id,
        sender_id: UserId::parse(p.sender_id).map_err(|e| e.to_string())?,
        client_message_id,
        entry: Entry::System(p.change.change()?),
        now: p.now,
        origin_connection: None,
        expires_at: p.expires_at,
        hint: None,
        rules: chat_shared::ports::EntryRules {
            retained_since: i64::MIN,
            edit_window_ms: 0,
        },
    })
}
