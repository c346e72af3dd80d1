//! Statements more than one area of the store runs, inside its transaction or on a reader.

use rusqlite::{Connection, OptionalExtension, Row, params};

use chat_shared::ids::{Millis, Seq};
use chat_shared::ports::{
    ConversationKind, ConversationRecord, MemberRecord, MessageRecord, NewConversation, Role,
};

use crate::rows::{
    CONVERSATION_COLUMNS, CONVERSATION_WIDTH, MEMBER_COLUMNS, MESSAGE_COLUMNS, conversation_at,
    member_at, message_at,
};

/// `?,?,?` for `n` values starting at placeholder `first`.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `sql` (with `{users}` standing for the placeholder list) for `users` in chunks
/// that stay under SQLite's variable limit, collecting every row.
pub(crate) fn select_for_users<T>(
    c: &Connection,
    sql: &str,
    users: &[String],
    row: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    for chunk in users.chunks(500) {
        let sql = sql.replace("{users}", &placeholders(1, chunk.len()));
        let mut stmt = c.prepare_cached(&sql)?;
        for r in stmt.query_map(rusqlite::params_from_iter(chunk), &row)? {
            out.push(r?);
        }
    }
    Ok(out)
}

pub(crate) fn strings<T: std::fmt::Display>(ids: &[T]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

pub(crate) fn membership_tx(
    c: &Connection,
    conversation: &str,
    user: &str,
) -> rusqlite::Result<Option<(ConversationRecord, MemberRecord)>> {
    c.prepare_cached(&format!(
        "SELECT {CONVERSATION_COLUMNS}, {MEMBER_COLUMNS} FROM conversations c
         JOIN members m ON m.conversation_id = c.id WHERE c.id = ?1 AND m.user_id = ?2"
    ))?
    .query_row(params![conversation, user], |r| {
        Ok((conversation_at(r, 0)?, member_at(r, CONVERSATION_WIDTH)?))
    })
    .optional()
}

pub(crate) fn conversation_tx(
    c: &Connection,
    id: &str,
) -> rusqlite::Result<Option<ConversationRecord>> {
    c.prepare_cached(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?1"
    ))?
    .query_row([id], |r| conversation_at(r, 0))
    .optional()
}

pub(crate) fn insert_member(
    tx: &Connection,
    conversation: &str,
    user: &str,
    role: Role,
    now: Millis,
    (last_seq, message_count): (Seq, u64),
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "INSERT INTO members (conversation_id, user_id, role, joined_at, join_order,
                              delivered_up_to, read_up_to, read_messages)
         VALUES (?1, ?2, ?3, ?4,
                 (SELECT COALESCE(MAX(join_order), 0) + 1 FROM members WHERE conversation_id = ?1),
                 ?5, ?5, ?6)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        conversation,
        user,
        role.as_str(),
        now,
        last_seq,
        message_count
    ])
}

pub(crate) fn create_conversation_tx(
    tx: &Connection,
    new: &NewConversation,
    direct_pair: Option<&str>,
) -> rusqlite::Result<ConversationRecord> {
    tx.execute(
        "INSERT INTO conversations (id, kind, name, created_at, last_seq, last_message_at,
                                    member_count, direct_pair)
         VALUES (?1, ?2, ?3, ?4, 0, ?4, ?5, ?6)",
        params![
            new.id.as_str(),
            new.kind.as_str(),
            new.name,
            new.now,
            new.members.len() as i64,
            direct_pair
        ],
    )?;
    for (i, user) in new.members.iter().enumerate() {
        let role = if i == 0 && new.kind == ConversationKind::Group {
            Role::Admin
        } else {
            Role::Member
        };
        insert_member(tx, new.id.as_str(), user.as_str(), role, new.now, (0, 0))?;
    }
    Ok(ConversationRecord {
        id: new.id.clone(),
        kind: new.kind,
        name: new.name.clone(),
        created_at: new.now,
        last_seq: 0,
        last_message_at: new.now,
        member_count: new.members.len() as u64,
        message_count: 0,
        avatar: None,
        posted: None,
    })
}

pub(crate) fn find_by_client_id_tx(
    c: &Connection,
    conversation: &str,
    sender: &str,
    cmid: &str,
) -> rusqlite::Result<Option<MessageRecord>> {
    c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m
         WHERE m.conversation_id = ?1 AND m.sender_id = ?2 AND m.client_message_id = ?3"
    ))?
    .query_row(params![conversation, sender, cmid], |r| message_at(r, 0))
    .optional()
}
