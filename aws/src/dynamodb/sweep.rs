//! What the sweeper reads: the users who have connections, from the sparse index
//! `online` of the main table. A user item carries `online` (`o#{shard}`, one of
//! [`ONLINE_SHARDS`], so no index partition takes every connect) from its first
//! connection until the sweeper finds its connection map empty. The index projects keys
//! only: a liveness touch changes nothing it holds, so keeping it costs a write at a
//! user's first connection and one when the user is unlisted, never one per heartbeat.

use aws_sdk_dynamodb::types::AttributeValue;

use chat_shared::ids::UserId;
use chat_shared::ports::{ConnectionRecord, StoreResult};

use super::DynamoStore;
use super::client::{condition_held, sdk};
use super::codec::{Item, USER_SK, connection_from, get_map, get_s, key, malformed, n, user_pk};

/// The index of users with connections, and its key attribute.
pub const ONLINE_INDEX: &str = "online";
/// Shards of the index's key: a connect storm spreads over this many partitions.
pub const ONLINE_SHARDS: u32 = 16;
/// Users read per page of a shard (one BatchGetItem of their items).
const PAGE: i32 = 100;

/// The index key of `user`: `o#{shard}`, the shard from a stable hash of the id.
pub(crate) fn online_key(user: &str) -> String {
    // FNV-1a: stable across builds and processes, unlike the std hasher.
    let hash = user.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("o#{}", hash % ONLINE_SHARDS)
}

/// One page of a shard of the users with connections.
#[derive(Debug, Default)]
pub struct OnlinePage {
    /// The connections of the page's users.
    pub connections: Vec<ConnectionRecord>,
    /// Users of the page whose map holds no connection any more: to unlist.
    pub empty: Vec<UserId>,
    /// Where the next page starts; `None` after the shard's last.
    pub next: Option<Item>,
}

impl DynamoStore {
    /// A page of shard `shard` of the users with connections, from `start` (`None`: the
    /// first page), with their connections. The index is eventually consistent: a user
    /// who connected a moment ago may be missing, and is on the next sweep.
    pub async fn online_page(&self, shard: u32, start: Option<Item>) -> StoreResult<OnlinePage> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.main)
            .index_name(ONLINE_INDEX)
            .key_condition_expression("#o = :shard")
            .expression_attribute_names("#o", ONLINE_INDEX)
            .expression_attribute_values(":shard", AttributeValue::S(format!("o#{shard}")))
            .set_exclusive_start_key(start)
            .limit(PAGE)
            .send()
            .await
            .map_err(sdk("online users"))?;
        let users: Vec<UserId> = out
            .items()
            .iter()
            .map(|item| {
                let pk = get_s(item, "pk")?;
                UserId::parse(pk.trim_start_matches("u#")).map_err(|e| malformed(e.0))
            })
            .collect::<StoreResult<_>>()?;
        let mut page = OnlinePage {
            next: out.last_evaluated_key().cloned(),
            ..OnlinePage::default()
        };
        for (user, item) in self.user_items(&users).await? {
            let conns = get_map(&item, "conns").filter(|m| !m.is_empty());
            let Some(conns) = conns else {
                page.empty.push(user);
                continue;
            };
            for (id, entry) in conns {
                if let AttributeValue::M(entry) = entry {
                    page.connections.push(connection_from(id, &user, entry)?);
                }
            }
        }
        Ok(page)
    }

    /// Takes users off the index whose connection map is (still) empty; one that
    /// connected meanwhile stays.
    pub async fn unlist_offline(&self, users: &[UserId]) -> StoreResult<()> {
        for user in users {
            let resp = self
                .client
                .update_item()
                .table_name(&self.tables.main)
                .set_key(Some(key(user_pk(user.as_str()), USER_SK)))
                .update_expression("REMOVE #o")
                .condition_expression("attribute_not_exists(conns) OR size(conns) = :zero")
                .expression_attribute_names("#o", ONLINE_INDEX)
                .expression_attribute_values(":zero", n(0))
                .send()
                .await;
            condition_held(resp, "unlist offline user")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_shard_is_stable_and_the_shards_are_all_used() {
        assert_eq!(online_key("alice"), online_key("alice"));
        let shards: std::collections::HashSet<String> = (0..1000)
            .map(|i| online_key(&format!("user-{i}")))
            .collect();
        assert_eq!(shards.len(), ONLINE_SHARDS as usize);
    }
}
