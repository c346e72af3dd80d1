//! Conversations and their members.

use std::collections::HashSet;

use async_trait::async_trait;

use chat_shared::StoreError;
use chat_shared::ids::{ConversationId, UserId};
use chat_shared::ports::{
    AddMembersOutcome, Change, ConversationCursor, ConversationKind, ConversationRecord,
    ConversationStore, DetailsChange, DetailsOutcome, MemberRecord, NewConversation, RemovedMember,
    Role, StoreResult,
};

use super::DynamoStore;
use super::client::{MAX_ATTEMPTS, TRANSACTION_MAX, condition_held, put};
use super::codec::{
    Item, META, MalformedItem, conv_pk, conversation_from, get_s, key, member_from, member_item,
    member_sk, n, opt_s, s,
};

impl DynamoStore {
    /// Writes a new conversation with its members (and its pair item for a direct
    /// one); `None` when the pair (or the id) already exists.
    async fn create_conversation(
        &self,
        new: &NewConversation,
        pair: Option<String>,
    ) -> StoreResult<Option<ConversationRecord>> {
        let id = new.id.as_str();
        let mut meta = key(conv_pk(id), META);
        meta.insert("kind".into(), s(new.kind.as_str()));
        if let Some(name) = &new.name {
            meta.insert("name".into(), s(name));
        }
        meta.insert("createdAt".into(), n(new.now));
        meta.insert("lastSeq".into(), n(0));
        meta.insert("lastMessageAt".into(), n(new.now));
        meta.insert("messageCount".into(), n(0));
        meta.insert("memberCount".into(), n(new.members.len()));
        let mut actions = Vec::new();
        if let Some(pair) = pair {
            let mut item = key(pair, "#pair");
            item.insert("conversationId".into(), s(id));
            actions.push(put(
                &self.tables.main,
                item,
                Some("attribute_not_exists(pk)"),
            ));
        }
        actions.push(put(
            &self.tables.main,
            meta,
            Some("attribute_not_exists(pk)"),
        ));
        let members: Vec<Item> = new
            .members
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let role = if i == 0 && new.kind == ConversationKind::Group {
                    Role::Admin
                } else {
                    Role::Member
                };
                member_item(id, u.as_str(), role, new.now, (0, 0))
            })
            .collect();
        let room = TRANSACTION_MAX - actions.len();
        let (first, rest) = members.split_at(members.len().min(room));
        actions.extend(
            first
                .iter()
                .map(|m| put(&self.tables.main, m.clone(), None)),
        );
        if !self
            .transact(actions, "create conversation", |_| true)
            .await?
        {
            return Ok(None);
        }
        // Groups of more than ~98 members: the rest are added after the transaction. The
        // conversation is new and unknown to anyone outside, so nothing can observe the gap
        // but its own members, who see the final list once this returns.
        if !rest.is_empty() {
            self.batch_put(rest.to_vec()).await?;
        }
        Ok(Some(ConversationRecord {
            id: new.id.clone(),
            kind: new.kind,
            name: new.name.clone(),
            created_at: new.now,
            last_seq: 0,
            last_message_at: new.now,
            message_count: 0,
            member_count: new.members.len() as u64,
            avatar: None,
            posted: None,
        }))
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn create_group(&self, new: &NewConversation) -> StoreResult<ConversationRecord> {
        self.create_conversation(new, None).await?.ok_or_else(|| {
            StoreError::new(
                "create group",
                MalformedItem("conversation id taken".into()),
            )
        })
    }

    async fn create_direct(
        &self,
        new: &NewConversation,
    ) -> StoreResult<(ConversationRecord, bool)> {
        let mut pair: Vec<&str> = new.members.iter().map(UserId::as_str).collect();
        pair.sort_unstable();
        let pair_pk = format!("d#{}", pair.join("#"));
        for _ in 0..MAX_ATTEMPTS {
            if let Some(item) = self
                .get(&self.tables.main, key(pair_pk.clone(), "#pair"))
                .await?
            {
                let id = get_s(&item, "conversationId")?;
                if let Some(meta) = self.get(&self.tables.main, key(conv_pk(id), META)).await? {
                    return Ok((conversation_from(&meta)?, false));
                }
            }
            // None: another request created the pair first; read it on the next turn.
            if let Some(created) = self.create_conversation(new, Some(pair_pk.clone())).await? {
                return Ok((created, true));
            }
        }
        Err(StoreError::new(
            "create direct conversation",
            MalformedItem("pair never became readable".into()),
        ))
    }

    async fn membership(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<(ConversationRecord, MemberRecord)>> {
        let pk = conv_pk(conversation.as_str());
        let items = self
            .batch_get(
                vec![key(pk.clone(), META), key(pk, &member_sk(user.as_str()))],
                true,
            )
            .await?;
        let meta = items.iter().find(|i| get_s(i, "sk").ok() == Some(META));
        let member = items.iter().find(|i| get_s(i, "sk").ok() != Some(META));
        match (meta, member) {
            (Some(c), Some(m)) => Ok(Some((conversation_from(c)?, member_from(m)?))),
            _ => Ok(None),
        }
    }

    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<ConversationRecord>> {
        self.get(&self.tables.main, key(conv_pk(id.as_str()), META))
            .await?
            .map(|i| conversation_from(&i))
            .transpose()
    }

    async fn members(
        &self,
        conversation: &ConversationId,
        after: Option<&UserId>,
        limit: u32,
    ) -> StoreResult<Vec<MemberRecord>> {
        // '\u{1}' sorts before every user-id character, '$' right after '#'.
        let lo = match after {
            Some(u) => format!("m#{u}\u{1}"),
            None => "m#".to_owned(),
        };
        self.query_range(
            &conv_pk(conversation.as_str()),
            &lo,
            "m$",
            Some(limit as usize),
        )
        .await?
        .iter()
        .map(member_from)
        .collect()
    }

    async fn user_conversations(
        &self,
        user: &UserId,
        after: Option<&ConversationCursor>,
        limit: u32,
    ) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
        // The list's order: the later of the last message and the caller's joining (a
        // conversation one was just added to comes first); the cursor carries that time.
        let at = |(c, m): &(ConversationRecord, MemberRecord)| c.last_message_at.max(m.joined_at);
        let mut rows = self.conversations_of(user.as_str()).await?;
        rows.sort_by(|a, b| at(b).cmp(&at(a)).then_with(|| a.0.id.cmp(&b.0.id)));
        if let Some(c) = after {
            rows.retain(|row| {
                at(row) < c.last_message_at
                    || (at(row) == c.last_message_at && row.0.id > c.conversation_id)
            });
        }
        rows.truncate(limit as usize);
        Ok(rows)
    }

    async fn add_members(
        &self,
        conversation: &ConversationId,
        users: &[UserId],
        max: u64,
        by: &Change,
    ) -> StoreResult<AddMembersOutcome> {
        self.add_with_entry(conversation, users, max, by).await
    }

    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        by: &Change,
    ) -> StoreResult<Option<RemovedMember>> {
        self.remove_with_entry(conversation, user, by).await
    }

    async fn set_role(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        role: Role,
        by: &Change,
    ) -> StoreResult<chat_shared::ports::RoleOutcome> {
        self.set_role_with_entry(conversation, user, role, by).await
    }

    async fn set_details(
        &self,
        conversation: &ConversationId,
        change: &DetailsChange,
        by: &Change,
    ) -> StoreResult<DetailsOutcome> {
        self.details_with_entry(conversation, change, by).await
    }

    async fn set_muted(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        until: chat_shared::ids::Millis,
    ) -> StoreResult<bool> {
        let resp = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(
                conv_pk(conversation.as_str()),
                &member_sk(user.as_str()),
            )))
            .update_expression("SET mutedUntil = :m REMOVE muted")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":m", n(until))
            .send()
            .await;
        Ok(condition_held(resp, "set muted")?.is_some())
    }

    async fn users_sharing_conversation(
        &self,
        user: &UserId,
        candidates: &[UserId],
    ) -> StoreResult<Vec<UserId>> {
        let mine: HashSet<String> = self
            .user_memberships(user.as_str())
            .await?
            .iter()
            .filter_map(|i| opt_s(i, "pk"))
            .collect();
        let mut out = Vec::new();
        for candidate in candidates.iter().collect::<HashSet<_>>() {
            let theirs = self.user_memberships(candidate.as_str()).await?;
            if theirs
                .iter()
                .any(|i| opt_s(i, "pk").is_some_and(|pk| mine.contains(&pk)))
            {
                out.push(candidate.clone());
            }
        }
        Ok(out)
    }

    async fn contacts(&self, user: &UserId, max_members: u64) -> StoreResult<Vec<UserId>> {
        let mut out: HashSet<UserId> = HashSet::new();
        for (conv, _) in self.conversations_of(user.as_str()).await? {
            if conv.member_count <= max_members {
                for m in self.members(&conv.id, None, u32::MAX).await? {
                    if &m.user_id != user {
                        out.insert(m.user_id);
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}
