//! Connections and last-seen times, kept in memory as well (see `cache`).

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use chat_shared::ids::{Millis, UserId};
use chat_shared::ports::{
    ConnectionRecord, ConnectionStore, PRESENCE_SETTLE_STALE_MS, PresenceClaim, StoreResult,
};
use chat_shared::protocol::PresenceStatus;

use crate::errors::err;
use crate::queries::{select_for_users, strings};
use crate::rows::{connection_at, user_at};
use crate::store::SqliteStore;

impl SqliteStore {
    /// Forgets every connection of an earlier process (their sockets died with it) and
    /// records their users' last-seen times.
    pub async fn clear_connections(&self) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO users (user_id, last_seen)
                 SELECT user_id, MAX(last_frame_at) FROM connections GROUP BY user_id
                 ON CONFLICT (user_id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
                [],
            )?;
            tx.execute("DELETE FROM connections", [])?;
            // What contacts were last told no longer holds: everyone is offline now, and
            // the next change is announced at once.
            tx.execute("DELETE FROM presence", [])?;
            Ok(())
        })
        .await
        .map_err(err("clear connections"))?;
        self.inner.cache.forget_all_connections();
        Ok(())
    }
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn put_connection(&self, connection: &ConnectionRecord) -> StoreResult<()> {
        let c = connection.clone();
        let user = connection.user_id.clone();
        self.write_noting(
            move |tx| {
                // The user an id held before, if any, changes too.
                let before: Option<String> = tx
                    .prepare_cached("SELECT user_id FROM connections WHERE id = ?1")?
                    .query_row([&c.connection_id], |r| r.get(0))
                    .optional()?;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO connections
                     (id, user_id, device_id, connected_at, last_frame_at, token_expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    c.connection_id,
                    c.user_id.as_str(),
                    c.device_id.as_ref().map(|d| d.as_str().to_owned()),
                    c.connected_at,
                    c.last_frame_at,
                    c.token_expires_at
                ])?;
                Ok(before)
            },
            move |cache, before| {
                cache.forget_connections_of(user.as_str());
                if let Some(before) = before {
                    cache.forget_connections_of(before);
                }
            },
        )
        .await
        .map(drop)
        .map_err(err("put connection"))
    }

    async fn connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>> {
        self.lookup(|c| {
            c.prepare_cached(
                "SELECT id, user_id, device_id, connected_at, last_frame_at, token_expires_at FROM connections WHERE id = ?1",
            )?
            .query_row([connection_id], connection_at)
            .optional()
        })
        .map_err(err("read connection"))
    }

    async fn touch_connection(
        &self,
        connection_id: &str,
        _user: &UserId,
        now: Millis,
    ) -> StoreResult<()> {
        let id = connection_id.to_owned();
        let touched = id.clone();
        self.write_noting(
            move |tx| {
                tx.prepare_cached(
                    "UPDATE connections SET last_frame_at = ?2 WHERE id = ?1 RETURNING user_id",
                )?
                .query_row(params![id, now], |r| r.get::<_, String>(0))
                .optional()
            },
            move |cache, user| {
                if let Some(user) = user {
                    cache.connection_touched(user, &touched, now);
                }
            },
        )
        .await
        .map(drop)
        .map_err(err("touch connection"))
    }

    async fn delete_connection(
        &self,
        connection_id: &str,
    ) -> StoreResult<Option<ConnectionRecord>> {
        let id = connection_id.to_owned();
        self.write_noting(
            move |tx| {
                tx.prepare_cached(
                    "DELETE FROM connections WHERE id = ?1
                 RETURNING id, user_id, device_id, connected_at, last_frame_at, token_expires_at",
                )?
                .query_row([id], connection_at)
                .optional()
            },
            |cache, gone| {
                if let Some(c) = gone {
                    cache.forget_connections_of(c.user_id.as_str());
                }
            },
        )
        .await
        .map_err(err("delete connection"))
    }

    async fn connections_of(&self, users: &[UserId]) -> StoreResult<Vec<ConnectionRecord>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let cache = &self.inner.cache;
        let mut conns = Vec::new();
        let missing = cache.connections_of(users, &mut conns);
        if missing.is_empty() {
            return Ok(conns);
        }
        let since = cache.epoch();
        let names: Vec<String> = missing.iter().map(|u| u.as_str().to_owned()).collect();
        let loaded = self
            .lookup(move |c| {
                select_for_users(
                    c,
                    "SELECT id, user_id, device_id, connected_at, last_frame_at, token_expires_at FROM connections WHERE user_id IN ({users})",
                    &names,
                    connection_at,
                )
            })
            .map_err(err("read connections"))?;
        cache.keep_connections(since, &missing, &loaded);
        conns.extend(loaded);
        Ok(conns)
    }

    async fn set_last_seen(&self, user: &UserId, at: Millis) -> StoreResult<()> {
        let user = user.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO users (user_id, last_seen) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
            )?
            .execute(params![user.as_str(), at])?;
            Ok(())
        })
        .await
        .map_err(err("set last seen"))
    }

    async fn last_seen(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, Millis)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let users = strings(users);
        self.lookup(move |c| {
            select_for_users(
                c,
                "SELECT user_id, last_seen FROM users WHERE user_id IN ({users})",
                &users,
                |r| Ok((user_at(r, 0)?, r.get(1)?)),
            )
        })
        .map_err(err("read last seen"))
    }

    async fn revoke_sessions(&self, user: &UserId, before: Millis) -> StoreResult<()> {
        let user = user.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO revoked_sessions (user_id, before) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET before = MAX(before, excluded.before)",
            )?
            .execute(params![user.as_str(), before])?;
            Ok(())
        })
        .await
        .map_err(err("revoke sessions"))
    }

    async fn sessions_revoked_before(&self, user: &UserId) -> StoreResult<Option<Millis>> {
        self.lookup(|c| {
            c.prepare_cached("SELECT before FROM revoked_sessions WHERE user_id = ?1")?
                .query_row(params![user.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(err("read revoked sessions"))
    }

    async fn claim_presence(
        &self,
        user: &UserId,
        status: PresenceStatus,
        now: Millis,
        window_ms: i64,
    ) -> StoreResult<PresenceClaim> {
        let user = user.clone();
        self.write(move |tx| {
            let last: Option<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT announced_at, settle_until FROM presence WHERE user_id = ?1",
                )?
                .query_row([user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match last {
                Some((announced_at, settle_until)) if now - announced_at < window_ms => {
                    if settle_until != 0 && now <= settle_until + PRESENCE_SETTLE_STALE_MS {
                        return Ok(PresenceClaim::Skip);
                    }
                    let until = announced_at + window_ms;
                    tx.prepare_cached("UPDATE presence SET settle_until = ?2 WHERE user_id = ?1")?
                        .execute(params![user.as_str(), until])?;
                    Ok(PresenceClaim::Defer { until })
                }
                _ => {
                    tx.prepare_cached(
                        "INSERT INTO presence (user_id, announced_at, status) VALUES (?1, ?2, ?3)
                         ON CONFLICT (user_id) DO UPDATE SET
                             announced_at = excluded.announced_at, status = excluded.status,
                             settle_until = 0",
                    )?
                    .execute(params![user.as_str(), now, status.as_str()])?;
                    Ok(PresenceClaim::Announce)
                }
            }
        })
        .await
        .map_err(err("claim presence"))
    }

    async fn settle_presence(
        &self,
        user: &UserId,
        status: PresenceStatus,
        now: Millis,
    ) -> StoreResult<bool> {
        let user = user.clone();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "INSERT INTO presence (user_id, announced_at, status) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id) DO UPDATE SET
                         announced_at = excluded.announced_at, status = excluded.status,
                         settle_until = 0
                     WHERE status != excluded.status",
                )?
                .execute(params![user.as_str(), now, status.as_str()])?
                > 0;
            if !changed {
                tx.prepare_cached("UPDATE presence SET settle_until = 0 WHERE user_id = ?1")?
                    .execute([user.as_str()])?;
            }
            Ok(changed)
        })
        .await
        .map_err(err("settle presence"))
    }
}
