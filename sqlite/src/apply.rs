//! Copying acked messages into the database: the writer's bulk apply and the recovery of
//! the append log at start.

use rusqlite::{Connection, params};

use chat_shared::ids::{Millis, Seq};
use chat_shared::ports::MessageRecord;

/// The outbox row a message applied needs.
pub(crate) enum Outbox {
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
pub(crate) fn apply_messages<'a>(
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
