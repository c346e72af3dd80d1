//! The database: its schema and how each connection to it is opened.

use std::path::Path;

use rusqlite::Connection;
use rusqlite::config::DbConfig;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS conversations (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    name            TEXT,
    created_at      INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    last_message_at INTEGER NOT NULL,
    member_count    INTEGER NOT NULL,
    direct_pair     TEXT UNIQUE,
    message_count   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS members (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL,
    joined_at       INTEGER NOT NULL,
    join_order      INTEGER NOT NULL,
    delivered_up_to INTEGER NOT NULL,
    read_up_to      INTEGER NOT NULL,
    muted           INTEGER NOT NULL DEFAULT 0,
    typing_window   INTEGER NOT NULL DEFAULT 0,
    typing_count    INTEGER NOT NULL DEFAULT 0,
    typing_until    INTEGER NOT NULL DEFAULT 0,
    read_messages   INTEGER NOT NULL DEFAULT 0,
    muted_until     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id, conversation_id);
-- Every entry of a conversation's log (a message, an edit, a delete, a reaction). A
-- message's row holds its current state: the latest edit's content, erased (NULL) once
-- deleted. `message_no`: the conversation's message count through this entry.
CREATE TABLE IF NOT EXISTS messages (
    conversation_id   TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    message_id        TEXT NOT NULL,
    sender_id         TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    content           TEXT,
    reply_to          INTEGER,
    timestamp         INTEGER NOT NULL,
    origin_connection TEXT,
    kind              TEXT NOT NULL DEFAULT 'message',
    target_seq        INTEGER,
    emoji             TEXT,
    removed           INTEGER NOT NULL DEFAULT 0,
    edited_at         INTEGER,
    edit_count        INTEGER NOT NULL DEFAULT 0,
    deleted_by        TEXT,
    message_no        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages (conversation_id, sender_id, client_message_id);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (timestamp);
-- The system entries membership changes owe until they are applied (see system.rs).
CREATE TABLE IF NOT EXISTS pending_entries (
    id                INTEGER PRIMARY KEY,
    conversation_id   TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    entry             TEXT NOT NULL,
    UNIQUE (conversation_id, client_message_id)
);
-- The current reactions: one row per (message, emoji, user); `seq` is the entry that
-- added it (the order of first reaction).
CREATE TABLE IF NOT EXISTS reactions (
    conversation_id TEXT NOT NULL,
    target_seq      INTEGER NOT NULL,
    emoji           TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, target_seq, emoji, user_id)
) WITHOUT ROWID;
-- Attachments (their bytes are files beside the database): `message_seq` and `used_at`
-- (its timestamp) once a message uses one, `avatar` while it is its conversation's.
CREATE TABLE IF NOT EXISTS attachments (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    uploader        TEXT NOT NULL,
    mime_type       TEXT NOT NULL,
    size            INTEGER NOT NULL,
    file_name       TEXT,
    created_at      INTEGER NOT NULL,
    message_seq     INTEGER,
    used_at         INTEGER,
    avatar          INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attachments_by_message
    ON attachments (conversation_id, message_seq) WHERE message_seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS attachments_unused
    ON attachments (created_at) WHERE message_seq IS NULL AND avatar = 0;
CREATE INDEX IF NOT EXISTS attachments_by_use ON attachments (used_at) WHERE message_seq IS NOT NULL;
-- Ids grow while rows wait; once every row is gone they may start over (databases made
-- before used AUTOINCREMENT, one more B-tree write per message for nothing).
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS connections (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    device_id     TEXT,
    connected_at  INTEGER NOT NULL,
    last_frame_at INTEGER NOT NULL,
    token_expires_at INTEGER NOT NULL DEFAULT 9223372036854775807
);
CREATE INDEX IF NOT EXISTS connections_by_user ON connections (user_id);
CREATE TABLE IF NOT EXISTS users (
    user_id   TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revoked_sessions (
    user_id TEXT PRIMARY KEY,
    before  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS presence (
    user_id      TEXT PRIMARY KEY,
    announced_at INTEGER NOT NULL,
    status       TEXT NOT NULL,
    settle_until INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    platform   TEXT NOT NULL,
    token      TEXT NOT NULL,
    endpoint   TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS devices_by_token ON devices (platform, token);
CREATE TABLE IF NOT EXISTS rate_windows (
    user_id      TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL
) WITHOUT ROWID;
-- Messages whose pushes were all sent (the table's name predates that meaning), and the
-- devices pushed (`user/device`, space-separated), whose notifications a delete replaces.
CREATE TABLE IF NOT EXISTS push_claims (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    claimed_at      INTEGER NOT NULL,
    users           TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS push_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    platform        TEXT NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    badge           INTEGER NOT NULL,
    timestamp       INTEGER NOT NULL
);
-- Every push the fan-out sends is recorded, a repeated one too, so that a push sent
-- twice shows (databases made before kept one per device and message).
DROP INDEX IF EXISTS push_outbox_once;
"#;

/// Prepared statements each connection keeps.
const STATEMENTS_KEPT: usize = 64;

/// How hard commits are pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives a killed process (WAL, `synchronous=NORMAL`).
    #[default]
    Process,
    /// Also survives power loss (`synchronous=FULL`).
    PowerLoss,
}

/// Columns added after the first release: (table, column, declaration, what fills it
/// in rows made before). A database made before gets them when opened.
const ADDED_COLUMNS: &[(&str, &str, &str, &str)] = &[
    ("members", "typing_until", "INTEGER NOT NULL DEFAULT 0", ""),
    (
        "connections",
        "token_expires_at",
        "INTEGER NOT NULL DEFAULT 9223372036854775807",
        "",
    ),
    // Before entries of other kinds, every entry was a message.
    (
        "conversations",
        "message_count",
        "INTEGER NOT NULL DEFAULT 0",
        "UPDATE conversations SET message_count = last_seq",
    ),
    (
        "members",
        "read_messages",
        "INTEGER NOT NULL DEFAULT 0",
        "UPDATE members SET read_messages = read_up_to",
    ),
    ("push_claims", "users", "TEXT NOT NULL DEFAULT ''", ""),
    // `muted` (a flag) is no longer read: a mute from before has no end.
    (
        "members",
        "muted_until",
        "INTEGER NOT NULL DEFAULT 0",
        "UPDATE members SET muted_until = 9223372036854775807 WHERE muted != 0",
    ),
    ("messages", "kind", "TEXT NOT NULL DEFAULT 'message'", ""),
    ("conversations", "avatar", "TEXT", ""),
    ("messages", "target_seq", "INTEGER", ""),
    ("messages", "emoji", "TEXT", ""),
    ("messages", "removed", "INTEGER NOT NULL DEFAULT 0", ""),
    ("messages", "edited_at", "INTEGER", ""),
    ("messages", "edit_count", "INTEGER NOT NULL DEFAULT 0", ""),
    ("messages", "deleted_by", "TEXT", ""),
    (
        "messages",
        "message_no",
        "INTEGER NOT NULL DEFAULT 0",
        "UPDATE messages SET message_no = seq",
    ),
];

/// Adds the [`ADDED_COLUMNS`] a database does not have yet, and lets `content` be NULL
/// (erased) in a database made when it could not.
pub(crate) fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let has = |table: &str, column: &str, extra: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            &format!("SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2 {extra}"),
            [table, column],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    for (table, column, declaration, fill) in ADDED_COLUMNS {
        if !has(table, column, "")? {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}; {fill}"
            ))?;
        }
    }
    if has("messages", "content", "AND \"notnull\" = 1")? {
        let columns = "conversation_id, seq, message_id, sender_id, client_message_id, content, \
             reply_to, timestamp, origin_connection, kind, target_seq, emoji, removed, \
             edited_at, edit_count, deleted_by, message_no";
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             ALTER TABLE messages RENAME TO messages_before_entries;
             DROP INDEX IF EXISTS messages_idempotency;
             DROP INDEX IF EXISTS messages_by_time;
             {SCHEMA}
             INSERT INTO messages ({columns}) SELECT {columns} FROM messages_before_entries;
             DROP TABLE messages_before_entries;
             COMMIT;"
        ))?;
    }
    // The entries that name a message, for its delete to reach its edits.
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS messages_by_target ON messages (conversation_id, target_seq)
         WHERE target_seq IS NOT NULL",
    )?;
    Ok(())
}

pub(crate) fn open_connection(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Plans never depend on bound values. Without this, a statement whose plan looks at
    // a parameter (any `LIMIT ?`) is prepared again on every run: that was most of the
    // cost of a lookup.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Room for every statement the store prepares (about forty): at rusqlite's default
    // of 16, a mixed load evicts statements and parses them again.
    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Deleting erases (PROTOCOL.md 8.2): freed space is overwritten with zeros, so the
    // text of a deleted message does not stay in a free page or cell.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Process => "NORMAL",
            Durability::PowerLoss => "FULL",
        },
    )?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_before_a_column_gets_it_once() {
        // GIVEN a database from before entries of other kinds, typing_until and token
        // expiry: messages' content could not be NULL then
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE conversations (id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT,
                 created_at INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
                 last_message_at INTEGER NOT NULL, member_count INTEGER NOT NULL,
                 direct_pair TEXT UNIQUE);
             CREATE TABLE members (conversation_id TEXT, user_id TEXT, typing_count INTEGER,
                 read_up_to INTEGER, muted INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE push_claims (conversation_id TEXT, seq INTEGER, claimed_at INTEGER);
             CREATE TABLE connections (id TEXT, user_id TEXT);
             CREATE TABLE messages (conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,
                 message_id TEXT NOT NULL, sender_id TEXT NOT NULL,
                 client_message_id TEXT NOT NULL, content TEXT NOT NULL, reply_to INTEGER,
                 timestamp INTEGER NOT NULL, origin_connection TEXT,
                 PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID;
             CREATE UNIQUE INDEX messages_idempotency
                 ON messages (conversation_id, sender_id, client_message_id);
             INSERT INTO conversations VALUES ('c', 'group', 'n', 1, 2, 5, 1, NULL);
             INSERT INTO members VALUES ('c', 'u', 1, 1, 1);
             INSERT INTO connections VALUES ('k', 'u');
             INSERT INTO messages VALUES ('c', 1, 'm1', 'u', 'k1', '{\"type\":\"text\",\"text\":\"a\"}', NULL, 4, NULL),
                                         ('c', 2, 'm2', 'u', 'k2', '{\"type\":\"text\",\"text\":\"b\"}', 1, 5, NULL);",
        )
        .unwrap();
        // WHEN it is opened twice
        conn.execute_batch(SCHEMA).unwrap();
        add_missing_columns(&conn).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        add_missing_columns(&conn).unwrap();
        // THEN it has the new columns, filled in as they would have been
        let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(one("SELECT typing_until FROM members"), 0);
        assert_eq!(
            one("SELECT token_expires_at FROM connections"),
            i64::MAX,
            "connections from before never expire"
        );
        assert_eq!(one("SELECT message_count FROM conversations"), 2);
        assert_eq!(one("SELECT read_messages FROM members"), 1);
        assert_eq!(
            one("SELECT muted_until FROM members"),
            i64::MAX,
            "a mute from before has no end"
        );
        // AND its messages are kept, are messages, and may be erased
        assert_eq!(
            one("SELECT count(*) FROM messages WHERE kind = 'message'"),
            2
        );
        assert_eq!(one("SELECT message_no FROM messages WHERE seq = 2"), 2);
        assert_eq!(one("SELECT reply_to FROM messages WHERE seq = 2"), 1);
        conn.execute("UPDATE messages SET content = NULL WHERE seq = 1", [])
            .unwrap();
        assert!(
            conn.execute(
                "INSERT INTO messages (conversation_id, seq, message_id, sender_id,
                     client_message_id, content, timestamp) VALUES ('c', 3, 'm3', 'u', 'k1', 'x', 6)",
                [],
            )
            .is_err(),
            "the idempotency index is back"
        );
    }
}
