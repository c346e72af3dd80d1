//! The user item (connections, devices and last-seen as maps on it) and a user's
//! memberships.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use chat_shared::ids::UserId;
use chat_shared::ports::{ConversationRecord, MemberRecord, StoreResult};

use super::DynamoStore;
use super::client::{condition_held, sdk};
use super::codec::{
    Item, META, USER_SK, conversation_from, get_map, get_s, key, malformed, member_from, s, user_pk,
};

impl DynamoStore {
    /// The member items of a user (GSI `byUser`).
    pub(crate) async fn user_memberships(&self, user: &str) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.tables.main)
                .index_name("byUser")
                .key_condition_expression("memberUser = :u")
                .expression_attribute_values(":u", s(user))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("query memberships"))?;
            out.extend(resp.items.unwrap_or_default());
            start = resp.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// The user's conversations with their memberships.
    pub(crate) async fn conversations_of(
        &self,
        user: &str,
    ) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
        let memberships = self.user_memberships(user).await?;
        let keys = memberships
            .iter()
            .map(|m| Ok(key(get_s(m, "pk")?.to_owned(), META)))
            .collect::<StoreResult<Vec<_>>>()?;
        let metas: HashMap<String, ConversationRecord> = self
            .batch_get(keys, false)
            .await?
            .iter()
            .map(|i| Ok((get_s(i, "pk")?.to_owned(), conversation_from(i)?)))
            .collect::<StoreResult<_>>()?;
        memberships
            .iter()
            .filter_map(|m| {
                let pk = get_s(m, "pk").ok()?;
                let conv = metas.get(pk)?.clone();
                Some(member_from(m).map(|member| (conv, member)))
            })
            .collect()
    }

    pub(crate) async fn user_items(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, Item)>> {
        let keys = users
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .map(|u| key(user_pk(u.as_str()), USER_SK))
            .collect();
        self.batch_get(keys, false)
            .await?
            .into_iter()
            .map(|item| {
                let pk = get_s(&item, "pk")?;
                let user =
                    UserId::parse(pk.trim_start_matches("u#")).map_err(|e| malformed(e.0))?;
                Ok((user, item))
            })
            .collect()
    }

    /// Sets `map_name.entry = value` on a user item, creating the map when missing; and
    /// `also`, an attribute set in the same write.
    pub(crate) async fn set_user_map_entry(
        &self,
        user: &str,
        map_name: &str,
        entry: &str,
        value: AttributeValue,
        also: Option<(&str, AttributeValue)>,
    ) -> StoreResult<()> {
        let init = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(user_pk(user), USER_SK)))
            .expression_attribute_names("#m", map_name)
            .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()));
        let init = match also {
            Some((name, value)) => init
                .update_expression("SET #m = if_not_exists(#m, :empty), #a = :a")
                .expression_attribute_names("#a", name)
                .expression_attribute_values(":a", value),
            None => init.update_expression("SET #m = if_not_exists(#m, :empty)"),
        };
        init.send().await.map_err(sdk("init user map"))?;
        self.client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(user_pk(user), USER_SK)))
            .update_expression("SET #m.#e = :v")
            .expression_attribute_names("#m", map_name)
            .expression_attribute_names("#e", entry)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .map_err(sdk("set user map entry"))?;
        Ok(())
    }

    /// Removes `map_name.entry` from a user item; returns the removed value.
    pub(crate) async fn remove_user_map_entry(
        &self,
        user: &str,
        map_name: &str,
        entry: &str,
    ) -> StoreResult<Option<Item>> {
        let resp = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(user_pk(user), USER_SK)))
            .update_expression("REMOVE #m.#e")
            .condition_expression("attribute_exists(#m.#e)")
            .expression_attribute_names("#m", map_name)
            .expression_attribute_names("#e", entry)
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await;
        match condition_held(resp, "remove user map entry")? {
            Some(out) => Ok(out
                .attributes
                .as_ref()
                .and_then(|a| get_map(a, map_name))
                .and_then(|m| get_map(m, entry))
                .cloned()),
            None => Ok(None),
        }
    }
}
