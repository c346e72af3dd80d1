//! The typing throttle and the send-rate windows.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use chat_shared::ids::{ConversationId, Millis, UserId};
use chat_shared::ports::{StoreResult, ThrottleStore};

use crate::errors::err;
use crate::store::SqliteStore;

#[async_trait]
impl ThrottleStore for SqliteStore {
    async fn typing_permit(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        now: Millis,
        window_ms: i64,
        max: u32,
        shown_until: Millis,
    ) -> StoreResult<Option<bool>> {
        let (conversation, user) = (conversation.clone(), user.clone());
        self.write(move |tx| {
            let row: Option<(i64, u32)> = tx
                .prepare_cached(
                    "SELECT typing_window, typing_count FROM members
                     WHERE conversation_id = ?1 AND user_id = ?2",
                )?
                .query_row(params![conversation.as_str(), user.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((window, count)) = row else {
                return Ok(None);
            };
            let (window, count) = if now - window >= window_ms {
                (now, 1)
            } else if count < max {
                (window, count + 1)
            } else {
                return Ok(Some(false));
            };
            tx.prepare_cached(
                "UPDATE members SET typing_window = ?3, typing_count = ?4, typing_until = ?5
                 WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .execute(params![
                conversation.as_str(),
                user.as_str(),
                window,
                count,
                shown_until
            ])?;
            Ok(Some(true))
        })
        .await
        .map_err(err("typing throttle"))
    }

    async fn typing_stop(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        now: Millis,
    ) -> StoreResult<Option<bool>> {
        let (conversation, user) = (conversation.clone(), user.clone());
        self.write(move |tx| {
            let until: Option<i64> = tx
                .prepare_cached(
                    "SELECT typing_until FROM members WHERE conversation_id = ?1 AND user_id = ?2",
                )?
                .query_row(params![conversation.as_str(), user.as_str()], |r| r.get(0))
                .optional()?;
            let Some(until) = until else {
                return Ok(None);
            };
            if until <= now {
                return Ok(Some(false));
            }
            tx.prepare_cached(
                "UPDATE members SET typing_until = 0 WHERE conversation_id = ?1 AND user_id = ?2",
            )?
            .execute(params![conversation.as_str(), user.as_str()])?;
            Ok(Some(true))
        })
        .await
        .map_err(err("typing stop"))
    }

    async fn count_send(&self, user: &UserId, window_start: Millis) -> StoreResult<u64> {
        let user = user.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO rate_windows (user_id, window_start, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (user_id) DO UPDATE SET
                     count = CASE WHEN window_start = excluded.window_start THEN count + 1 ELSE 1 END,
                     window_start = excluded.window_start
                 RETURNING count",
            )?
            .query_row(params![user.as_str(), window_start], |r| r.get(0))
        })
        .await
        .map_err(err("count send"))
    }
}
