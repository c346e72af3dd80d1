//! The messages that entries name (an edit's, a delete's or a reaction's target, a
//! reply's `replyTo`), as the sequencer checks an entry against one: read from the
//! database and brought up to the entries in flight and those earlier in the batch.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use chat_shared::ids::{Seq, UserId};
use chat_shared::ports::{MessageRecord, Target};
use chat_shared::protocol::Entry;

use crate::in_flight::InFlight;
use crate::rows::bad_value;

/// A message as the rules see it, with its reactors by emoji (in order of first
/// reaction) to follow reactions coming and going.
#[derive(Clone)]
pub(crate) struct Folded {
    target: Target,
    reactors: Vec<(String, Vec<String>)>,
}

impl Folded {
    /// The message as [`chat_shared::domain::check_entry`] sees it.
    pub(crate) fn target(&self) -> Target {
        let mut target = self.target.clone();
        target.emoji = self
            .reactors
            .iter()
            .map(|(emoji, _)| emoji.clone())
            .collect();
        target
    }
}

/// Targets kept at most; past it they are all dropped (and read again when named).
const KEPT_MAX: usize = 4096;

/// The states of the messages entries named lately, kept by the sequencer up to every
/// entry it sequences, so a reaction to a message reacted to before reads nothing (the
/// sequencer sequences every entry, so no other writer changes a state it keeps). A
/// message that expires meanwhile is still refused: the rules check its timestamp.
#[derive(Default)]
pub(crate) struct Kept {
    states: foldhash::HashMap<(String, Seq), Folded>,
}

impl Kept {
    pub(crate) fn get(&self, conversation: &str, seq: Seq) -> Option<&Folded> {
        self.states.get(&(conversation.to_owned(), seq))
    }

    pub(crate) fn keep(&mut self, conversation: &str, seq: Seq, state: Folded) {
        if self.states.len() >= KEPT_MAX {
            self.states.clear();
        }
        self.states.insert((conversation.to_owned(), seq), state);
    }

    /// Brings the kept state of the message `entry` names, if any, up to `entry`.
    pub(crate) fn follow(&mut self, entry: &MessageRecord) {
        let Some(seq) = entry.entry.target_seq() else {
            return;
        };
        let key = (entry.conversation_id.as_str().to_owned(), seq);
        if let Some(state) = self.states.remove(&key) {
            let mut folded = Some(state);
            fold(&mut folded, entry, seq);
            if let Some(state) = folded {
                self.states.insert(key, state);
            }
        }
    }

    /// Forgets every state (entries sequenced and then refused by the log).
    pub(crate) fn clear(&mut self) {
        self.states.clear();
    }
}

/// Message `seq` of `conversation` as it is after every entry sequenced so far (`fresh`
/// are the batch's, not yet in flight). `None` when no `message` entry has that seq.
///
/// The entries in flight are taken before the database is read, in a transaction of its
/// own begun after: one that lands in between is in both, and is applied once (only
/// entries above the seq the database has are folded in).
pub(crate) fn target(
    reader: &Connection,
    in_flight: &InFlight,
    fresh: impl Iterator<Item = Arc<MessageRecord>>,
    conversation: &str,
    seq: Seq,
) -> rusqlite::Result<Option<Folded>> {
    let flying = in_flight.entries(conversation);
    let tx = reader.unchecked_transaction()?;
    let stored: Seq = tx
        .prepare_cached("SELECT last_seq FROM conversations WHERE id = ?1")?
        .query_row([conversation], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let mut folded = if seq <= stored {
        read(&tx, conversation, seq)?
    } else {
        None
    };
    tx.finish()?;
    let later = flying.into_iter().filter(|r| r.seq > stored).chain(fresh);
    for entry in later {
        fold(&mut folded, &entry, seq);
    }
    Ok(folded)
}

/// The message at `seq` as the database holds it.
fn read(c: &Connection, conversation: &str, seq: Seq) -> rusqlite::Result<Option<Folded>> {
    let row = c
        .prepare_cached(
            "SELECT sender_id, timestamp, json_extract(content, '$.type'), deleted_by IS NOT NULL,
                    edit_count
             FROM messages WHERE conversation_id = ?1 AND seq = ?2 AND kind = 'message'",
        )?
        .query_row(params![conversation, seq], |r| {
            Ok(Target {
                sender_id: UserId::parse(r.get::<_, String>(0)?).map_err(|e| bad_value(0, e))?,
                timestamp: r.get(1)?,
                content_type: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                deleted: r.get(3)?,
                edits: r.get(4)?,
                emoji: Vec::new(),
            })
        })
        .optional()?;
    let Some(target) = row else {
        return Ok(None);
    };
    let mut reactors: Vec<(String, Vec<String>)> = Vec::new();
    let mut stmt = c.prepare_cached(
        "SELECT emoji, user_id FROM reactions WHERE conversation_id = ?1 AND target_seq = ?2
         ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![conversation, seq], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (emoji, user) = row?;
        react(&mut reactors, emoji, user, false);
    }
    Ok(Some(Folded { target, reactors }))
}

/// Brings the state of message `seq` up to one more entry.
fn fold(folded: &mut Option<Folded>, entry: &MessageRecord, seq: Seq) {
    if entry.seq == seq {
        if let Entry::Message { content, .. } = &entry.entry {
            *folded = Some(Folded {
                target: Target {
                    sender_id: entry.sender_id.clone(),
                    timestamp: entry.timestamp,
                    content_type: content.as_ref().map(|c| c.kind.clone()).unwrap_or_default(),
                    deleted: false,
                    edits: 0,
                    emoji: Vec::new(),
                },
                reactors: Vec::new(),
            });
        }
        return;
    }
    let Some(f) = folded.as_mut() else {
        return;
    };
    if entry.entry.target_seq() != Some(seq) || f.target.deleted {
        return;
    }
    match &entry.entry {
        Entry::Message { .. } | Entry::System(_) => {}
        Entry::Edit { .. } => f.target.edits += 1,
        Entry::Delete { .. } => {
            f.target.deleted = true;
            f.reactors.clear();
        }
        Entry::Reaction { emoji, removed, .. } => react(
            &mut f.reactors,
            emoji.clone(),
            entry.sender_id.as_str().to_owned(),
            *removed,
        ),
    }
}

/// Adds or removes one (emoji, user); an emoji left with no reactor goes.
fn react(reactors: &mut Vec<(String, Vec<String>)>, emoji: String, user: String, removed: bool) {
    let at = reactors.iter().position(|(e, _)| *e == emoji);
    match (at, removed) {
        (Some(i), false) => {
            let users = &mut reactors[i].1;
            if !users.contains(&user) {
                users.push(user);
            }
        }
        (None, false) => reactors.push((emoji, vec![user])),
        (Some(i), true) => {
            reactors[i].1.retain(|u| *u != user);
            if reactors[i].1.is_empty() {
                reactors.remove(i);
            }
        }
        (None, true) => {}
    }
}
