//! Copying acked messages into the database: the writer's bulk apply and the recovery of
//! the append log at start.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use chat_shared::ids::Seq;
use chat_shared::ports::MessageRecord;
use chat_shared::protocol::{Entry, SystemEvent};

use crate::attachments;
use crate::errors::json_text;
use crate::in_flight::Head;
use crate::system::{self, StoredChange};

/// The outbox row a message applied needs.
pub(crate) enum Outbox {
    /// No row: it was fanned out already.
    FannedOut,
    Id(i64),
    /// A row with a fresh id (a message applied again from the log at start).
    Fresh,
}

/// Copies entries into the database, sorted by conversation so each page is written
/// once for all of them, and applies what each changes: a message moves its
/// conversation's counters and its sender's positions, an edit, delete or reaction
/// changes the message it names (see [`apply_effect`]). An entry already there (same
/// seq, or same idempotency key) is skipped with its effect, so applying twice is
/// harmless. True when a delete erased a message.
pub(crate) fn apply_messages<'a>(
    tx: &Connection,
    messages: impl Iterator<Item = (&'a MessageRecord, Outbox)>,
) -> rusqlite::Result<bool> {
    let mut messages: Vec<_> = messages.collect();
    messages.sort_by(|(a, _), (b, _)| {
        (a.conversation_id.as_str(), a.seq).cmp(&(b.conversation_id.as_str(), b.seq))
    });
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (conversation_id, seq, message_id, sender_id,
             client_message_id, content, reply_to, timestamp, origin_connection, kind,
             target_seq, emoji, removed, message_no)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT DO NOTHING",
    )?;
    let mut outbox =
        tx.prepare_cached("INSERT INTO outbox (id, conversation_id, seq) VALUES (?1, ?2, ?3)")?;
    let mut counted = tx.prepare_cached("SELECT message_count FROM conversations WHERE id = ?1")?;
    let mut heads: BTreeMap<&str, Head> = BTreeMap::new();
    let mut senders: BTreeMap<(&str, &str), (Seq, u64)> = BTreeMap::new();
    let mut erased = false;
    for (m, row) in &messages {
        let cid = m.conversation_id.as_str();
        if !heads.contains_key(cid) {
            let count: u64 = counted
                .query_row([cid], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let head = Head {
                message_count: count,
                ..Head::default()
            };
            heads.insert(cid, head);
        }
        let head = heads.get_mut(cid).expect("just inserted");
        let is_message = m.entry.is_message();
        let content = match &m.entry {
            Entry::System(change) => Some(json_text(&StoredChange::of(change))),
            other => other.content().map(json_text),
        }
        .transpose()?;
        let (reply_to, emoji, removed) = match &m.entry {
            Entry::Message { reply_to, .. } => (*reply_to, None, false),
            Entry::Reaction { emoji, removed, .. } => (None, Some(emoji.as_str()), *removed),
            Entry::Edit { .. } | Entry::Delete { .. } | Entry::System(_) => (None, None, false),
        };
        let inserted = insert.execute(params![
            cid,
            m.seq,
            m.message_id,
            m.sender_id.as_str(),
            m.client_message_id,
            content,
            reply_to,
            m.timestamp,
            m.origin_connection,
            m.entry.kind().as_str(),
            m.entry.target_seq(),
            emoji,
            removed,
            head.message_count + u64::from(is_message),
        ])?;
        if inserted == 0 {
            // Applied before, effect and all; the conversation's count has it.
            continue;
        }
        match row {
            Outbox::FannedOut => {}
            Outbox::Id(id) => drop(outbox.execute(params![id, cid, m.seq])?),
            Outbox::Fresh => drop(outbox.execute(params![None::<i64>, cid, m.seq])?),
        }
        head.last_seq = head.last_seq.max(m.seq);
        if is_message {
            attachments::record_use(tx, m)?;
            head.message_count += 1;
            head.last_message_at = head.last_message_at.max(m.timestamp);
            let seen = senders.entry((cid, m.sender_id.as_str())).or_default();
            *seen = (m.seq, head.message_count);
        } else {
            erased |= apply_effect(tx, m, head.message_count)?;
        }
    }
    let mut conversation = tx.prepare_cached(
        "UPDATE conversations SET last_seq = MAX(last_seq, ?2),
             last_message_at = MAX(last_message_at, ?3), message_count = MAX(message_count, ?4)
         WHERE id = ?1",
    )?;
    for (cid, head) in heads {
        conversation.execute(params![
            cid,
            head.last_seq,
            head.last_message_at,
            head.message_count
        ])?;
    }
    let mut positions = tx.prepare_cached(
        "UPDATE members SET delivered_up_to = MAX(delivered_up_to, ?3),
             read_up_to = MAX(read_up_to, ?3), read_messages = MAX(read_messages, ?4)
         WHERE conversation_id = ?1 AND user_id = ?2",
    )?;
    for ((cid, sender), (seq, count)) in senders {
        positions.execute(params![cid, sender, seq, count])?;
    }
    Ok(erased)
}

/// What an edit, delete or reaction does to the message it names, if that is a message
/// not deleted: an edit replaces its content (an edit of a deleted message keeps none of
/// its own); a delete erases its content and its edits' and drops its reactions; a
/// reaction adds or removes one (user, emoji); a `system` entry pays what its change
/// owed, and a `member_added` one starts the added members' positions at it (the
/// conversation had `message_count` messages then). True when a delete erased a message.
fn apply_effect(tx: &Connection, m: &MessageRecord, message_count: u64) -> rusqlite::Result<bool> {
    let cid = m.conversation_id.as_str();
    let live = |target: Seq| -> rusqlite::Result<bool> {
        tx.prepare_cached(
            "SELECT 1 FROM messages WHERE conversation_id = ?1 AND seq = ?2
               AND kind = 'message' AND deleted_by IS NULL",
        )?
        .query_row(params![cid, target], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
    };
    match &m.entry {
        Entry::Message { .. } => {}
        Entry::System(change) => {
            system::paid(tx, m)?;
            if change.event == SystemEvent::MemberAdded {
                let mut raise = tx.prepare_cached(
                    "UPDATE members SET delivered_up_to = MAX(delivered_up_to, ?3),
                         read_up_to = MAX(read_up_to, ?3), read_messages = MAX(read_messages, ?4)
                     WHERE conversation_id = ?1 AND user_id = ?2",
                )?;
                for user in &change.user_ids {
                    raise.execute(params![cid, user.as_str(), m.seq, message_count])?;
                }
            }
        }
        Entry::Edit {
            target_seq,
            content,
        } => {
            let content = content.as_ref().map(json_text).transpose()?;
            let edited = tx
                .prepare_cached(
                    "UPDATE messages SET content = ?3, edited_at = ?4, edit_count = edit_count + 1
                     WHERE conversation_id = ?1 AND seq = ?2 AND kind = 'message'
                       AND deleted_by IS NULL",
                )?
                .execute(params![cid, target_seq, content, m.timestamp])?;
            if edited == 0 {
                tx.prepare_cached(
                    "UPDATE messages SET content = NULL WHERE conversation_id = ?1 AND seq = ?2",
                )?
                .execute(params![cid, m.seq])?;
            }
        }
        Entry::Delete { target_seq } => {
            let deleted = tx
                .prepare_cached(
                    "UPDATE messages SET content = NULL, edited_at = NULL, deleted_by = ?3
                     WHERE conversation_id = ?1 AND seq = ?2 AND kind = 'message'
                       AND deleted_by IS NULL",
                )?
                .execute(params![cid, target_seq, m.sender_id.as_str()])?;
            if deleted > 0 {
                erase_around(tx, cid, *target_seq)?;
                return Ok(true);
            }
        }
        Entry::Reaction {
            target_seq,
            emoji,
            removed,
        } => {
            if !live(*target_seq)? {
                return Ok(false);
            }
            let user = m.sender_id.as_str();
            if *removed {
                tx.prepare_cached(
                    "DELETE FROM reactions WHERE conversation_id = ?1 AND target_seq = ?2
                       AND emoji = ?3 AND user_id = ?4",
                )?
                .execute(params![cid, target_seq, emoji, user])?;
            } else {
                tx.prepare_cached(
                    "INSERT INTO reactions (conversation_id, target_seq, emoji, user_id, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![cid, target_seq, emoji, user, m.seq])?;
            }
        }
    }
    Ok(false)
}

/// Erases what else holds a deleted message's text: its edits' content, its reactions,
/// and the bodies of its pushes in the local outbox.
pub(crate) fn erase_around(tx: &Connection, cid: &str, target: Seq) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE messages SET content = NULL
         WHERE conversation_id = ?1 AND target_seq = ?2 AND kind = 'edit'
           AND content IS NOT NULL",
    )?
    .execute(params![cid, target])?;
    tx.prepare_cached("DELETE FROM reactions WHERE conversation_id = ?1 AND target_seq = ?2")?
        .execute(params![cid, target])?;
    tx.prepare_cached("UPDATE push_outbox SET body = '' WHERE conversation_id = ?1 AND seq = ?2")?
        .execute(params![cid, target])?;
    Ok(())
}
