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
    direct_pair     TEXT UNIQUE
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
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id, conversation_id);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id   TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    message_id        TEXT NOT NULL,
    sender_id         TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    content           TEXT NOT NULL,
    reply_to          INTEGER,
    timestamp         INTEGER NOT NULL,
    origin_connection TEXT,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages (conversation_id, sender_id, client_message_id);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (timestamp);
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
-- Messages whose pushes were all sent (the table's name predates that meaning).
CREATE TABLE IF NOT EXISTS push_claims (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    claimed_at      INTEGER NOT NULL,
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

/// Columns added after the first release: (table, column, declaration). A database made
/// before gets them when opened.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("members", "typing_until", "INTEGER NOT NULL DEFAULT 0"),
    (
        "connections",
        "token_expires_at",
        "INTEGER NOT NULL DEFAULT 9223372036854775807",
    ),
];

/// Adds the [`ADDED_COLUMNS`] a database does not have yet.
pub(crate) fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, declaration) in ADDED_COLUMNS {
        let present: i64 = conn.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )?;
        if present == 0 {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
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
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE members (conversation_id TEXT, user_id TEXT, typing_count INTEGER);
             CREATE TABLE connections (id TEXT, user_id TEXT);
             INSERT INTO members VALUES ('c', 'u', 1);
             INSERT INTO connections VALUES ('k', 'u');",
        )
        .unwrap();
        add_missing_columns(&conn).unwrap();
        add_missing_columns(&conn).unwrap();
        let until: i64 = conn
            .query_row("SELECT typing_until FROM members", [], |r| r.get(0))
            .unwrap();
        assert_eq!(until, 0);
        let expires: i64 = conn
            .query_row("SELECT token_expires_at FROM connections", [], |r| r.get(0))
            .unwrap();
        assert_eq!(expires, i64::MAX, "connections from before never expire");
    }
}
