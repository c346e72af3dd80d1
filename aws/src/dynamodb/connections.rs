//! Connections and last-seen times.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use chat_shared::ids::{Millis, UserId};
use chat_shared::ports::{
    ConnectionRecord, ConnectionStore, PRESENCE_SETTLE_STALE_MS, PresenceClaim, StoreResult,
};
use chat_shared::protocol::PresenceStatus;

use super::DynamoStore;
use super::client::{condition_held, sdk};
use super::codec::{
    USER_SK, connection_entry, connection_from, get_map, get_s, key, malformed, n, opt_n, s,
    user_pk,
};
use super::sweep::{ONLINE_INDEX, online_key};

/// API Gateway closes connections after 2 h: connection items expire a little later.
const CONNECTION_TTL_SECS: i64 = 2 * 3600 + 600;

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, c: &ConnectionRecord) -> StoreResult<()> {
        let mut item = HashMap::from([
            ("connectionId".to_owned(), s(&c.connection_id)),
            ("userId".to_owned(), s(c.user_id.as_str())),
            ("connectedAt".to_owned(), n(c.connected_at)),
            (
                "expiresAt".to_owned(),
                n(c.connected_at / 1000 + CONNECTION_TTL_SECS),
            ),
        ]);
        if let Some(d) = &c.device_id {
            item.insert("deviceId".into(), s(d.as_str()));
        }
        self.client
            .put_item()
            .table_name(&self.tables.connections)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk("put connection"))?;
        // Listed for the sweeper while the user has connections.
        let online = (ONLINE_INDEX, s(online_key(c.user_id.as_str())));
        self.set_user_map_entry(
            c.user_id.as_str(),
            "conns",
            &c.connection_id,
            connection_entry(c),
            Some(online),
        )
        .await
    }

    async fn connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>> {
        let Some(item) = self
            .get(
                &self.tables.connections,
                HashMap::from([("connectionId".to_owned(), s(connection_id))]),
            )
            .await?
        else {
            return Ok(None);
        };
        let user = UserId::parse(get_s(&item, "userId")?).map_err(|e| malformed(e.0))?;
        let user_item = self
            .get(&self.tables.main, key(user_pk(user.as_str()), USER_SK))
            .await?;
        let entry = user_item
            .as_ref()
            .and_then(|u| get_map(u, "conns"))
            .and_then(|m| get_map(m, connection_id));
        match entry {
            Some(entry) => Ok(Some(connection_from(connection_id, &user, entry)?)),
            // The user map lost it (a 410 cleaned it up): the connection is gone.
            None => Ok(None),
        }
    }

    async fn touch_connection(
        &self,
        connection_id: &str,
        user: &UserId,
        now: Millis,
    ) -> StoreResult<()> {
        let resp = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(user_pk(user.as_str()), USER_SK)))
            .update_expression("SET conns.#c.f = :now")
            .condition_expression("attribute_exists(conns.#c)")
            .expression_attribute_names("#c", connection_id)
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        // A failed condition means there is nothing to do.
        condition_held(resp, "touch connection")?;
        Ok(())
    }

    async fn delete_connection(
        &self,
        connection_id: &str,
    ) -> StoreResult<Option<ConnectionRecord>> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.connections)
            .set_key(Some(HashMap::from([(
                "connectionId".to_owned(),
                s(connection_id),
            )])))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk("delete connection"))?;
        let Some(item) = out.attributes else {
            return Ok(None);
        };
        let user = UserId::parse(get_s(&item, "userId")?).map_err(|e| malformed(e.0))?;
        match self
            .remove_user_map_entry(user.as_str(), "conns", connection_id)
            .await?
        {
            Some(entry) => Ok(Some(connection_from(connection_id, &user, &entry)?)),
            None => Ok(None),
        }
    }

    async fn connections_of(&self, users: &[UserId]) -> StoreResult<Vec<ConnectionRecord>> {
        let mut out = Vec::new();
        for (user, item) in self.user_items(users).await? {
            if let Some(conns) = get_map(&item, "conns") {
                for (id, entry) in conns {
                    if let AttributeValue::M(entry) = entry {
                        out.push(connection_from(id, &user, entry)?);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn set_last_seen(&self, user: &UserId, at: Millis) -> StoreResult<()> {
        let resp = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(user_pk(user.as_str()), USER_SK)))
            .update_expression("SET lastSeen = :at")
            .condition_expression("attribute_not_exists(lastSeen) OR lastSeen < :at")
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        // A failed condition means there is nothing to do.
        condition_held(resp, "set last seen")?;
        Ok(())
    }

    async fn last_seen(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, Millis)>> {
        let mut out = Vec::new();
        for (user, item) in self.user_items(users).await? {
            if let Some(at) = opt_n(&item, "lastSeen")? {
                out.push((user, at));
            }
        }
        Ok(out)
    }

    /// On the user item: `revokedBefore`.
    async fn revoke_sessions(&self, user: &UserId, before: Millis) -> StoreResult<()> {
        let resp = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(user_pk(user.as_str()), USER_SK)))
            .update_expression("SET revokedBefore = :before")
            .condition_expression("attribute_not_exists(revokedBefore) OR revokedBefore < :before")
            .expression_attribute_values(":before", n(before))
            .send()
            .await;
        // A failed condition means a later revocation is already recorded.
        condition_held(resp, "revoke sessions")?;
        Ok(())
    }

    async fn sessions_revoked_before(&self, user: &UserId) -> StoreResult<Option<Millis>> {
        let item = self
            .client
            .get_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(user_pk(user.as_str()), USER_SK)))
            .projection_expression("revokedBefore")
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("read revoked sessions"))?
            .item;
        item.map_or(Ok(None), |item| opt_n(&item, "revokedBefore"))
    }

    /// On the user item: `presenceAt` and `presenceStatus` (the last announcement) and
    /// `presenceSettleUntil` (a claim to settle). A deferred change is settled a window
    /// after the claim rather than after the announcement: no read is needed, and
    /// announcements stay at least a window apart.
    async fn claim_presence(
        &self,
        user: &UserId,
        status: PresenceStatus,
        now: Millis,
        window_ms: i64,
    ) -> StoreResult<PresenceClaim> {
        let announced = self
            .record_announcement(
                user,
                status,
                now,
                "attribute_not_exists(presenceAt) OR presenceAt <= :cut",
                (":cut", n(now - window_ms)),
            )
            .await?;
        if announced {
            return Ok(PresenceClaim::Announce);
        }
        let user_key = key(user_pk(user.as_str()), USER_SK);
        let until = now + window_ms;
        let defer = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(user_key))
            .update_expression("SET presenceSettleUntil = :until")
            .condition_expression(
                "attribute_not_exists(presenceSettleUntil) OR presenceSettleUntil < :stale",
            )
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":stale", n(now - PRESENCE_SETTLE_STALE_MS))
            .send()
            .await;
        Ok(match condition_held(defer, "claim presence")? {
            Some(_) => PresenceClaim::Defer { until },
            None => PresenceClaim::Skip,
        })
    }

    async fn settle_presence(
        &self,
        user: &UserId,
        status: PresenceStatus,
        now: Millis,
    ) -> StoreResult<bool> {
        let changed = self
            .record_announcement(
                user,
                status,
                now,
                "attribute_not_exists(presenceStatus) OR presenceStatus <> :announced",
                (":announced", s(status.as_str())),
            )
            .await?;
        if changed {
            return Ok(true);
        }
        let user_key = key(user_pk(user.as_str()), USER_SK);
        self.client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(user_key))
            .update_expression("REMOVE presenceSettleUntil")
            .send()
            .await
            .map_err(sdk("settle presence"))?;
        Ok(false)
    }
}

impl DynamoStore {
    /// Records `status` as announced at `now` (clearing any claim to settle) when
    /// `condition`, with its one value, holds on the user item; whether it did.
    async fn record_announcement(
        &self,
        user: &UserId,
        status: PresenceStatus,
        now: Millis,
        condition: &str,
        (name, value): (&str, AttributeValue),
    ) -> StoreResult<bool> {
        let recorded = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(user_pk(user.as_str()), USER_SK)))
            .update_expression(
                "SET presenceAt = :now, presenceStatus = :s REMOVE presenceSettleUntil",
            )
            .condition_expression(condition)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":s", s(status.as_str()))
            .expression_attribute_values(name, value)
            .send()
            .await;
        Ok(condition_held(recorded, "record presence")?.is_some())
    }
}
