//! Conversations and their members.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use chat_shared::ids::{AttachmentId, ConversationId, Millis, UserId};
use chat_shared::ports::{
    AddMembersOutcome, Change, ConversationCursor, ConversationRecord, ConversationStore,
    DetailsChange, DetailsOutcome, MemberRecord, NewConversation, RemovedMember, Role, RoleOutcome,
    StoreResult,
};
use chat_shared::protocol::{SystemChange, SystemEvent};

use crate::attachments;
use crate::errors::err;
use crate::queries::{
    conversation_tx, create_conversation_tx, insert_member, membership_tx, placeholders, strings,
};
use crate::roster::Found;
use crate::rows::{
    CONVERSATION_COLUMNS, CONVERSATION_WIDTH, MEMBER_COLUMNS, bad_value, conversation_at,
    member_at, user_at,
};
use crate::store::SqliteStore;
use crate::system;

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn create_group(&self, new: &NewConversation) -> StoreResult<ConversationRecord> {
        let new = new.clone();
        self.write_noting(
            move |tx| create_conversation_tx(tx, &new, None),
            |cache, conv| cache.forget_conversation(conv.id.as_str()),
        )
        .await
        .map_err(err("create group"))
    }

    async fn create_direct(
        &self,
        new: &NewConversation,
    ) -> StoreResult<(ConversationRecord, bool)> {
        let new = new.clone();
        self.write_noting_after(
            move |tx| {
                let mut pair = strings(&new.members);
                pair.sort();
                let pair = pair.join("\n");
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT id FROM conversations WHERE direct_pair = ?1",
                        [&pair],
                        |r| r.get(0),
                    )
                    .optional()?;
                match existing {
                    Some(id) => Ok((
                        conversation_tx(tx, &id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?,
                        false,
                    )),
                    None => Ok((create_conversation_tx(tx, &new, Some(&pair))?, true)),
                }
            },
            |cache, (conv, _)| cache.forget_conversation(conv.id.as_str()),
            true,
        )
        .await
        .map_err(err("create direct conversation"))
    }

    async fn membership(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<(ConversationRecord, MemberRecord)>> {
        let found = self.with_roster(conversation, |r| {
            r.member(user.as_str())
                .map(|m| (r.conversation.clone(), m.clone()))
        });
        match found.map_err(err("read membership"))? {
            Found::Kept(v) => Ok(v),
            Found::Missing => Ok(None),
            Found::Large => {
                let found = self
                    .lookup(|c| membership_tx(c, conversation.as_str(), user.as_str()))
                    .map_err(err("read membership"))?;
                Ok(found.map(|(mut c, mut m)| {
                    self.inner.in_flight.overlay_conversation(&mut c);
                    self.inner.in_flight.overlay_member(&mut m);
                    (c, m)
                }))
            }
        }
    }

    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<ConversationRecord>> {
        match self
            .with_roster(id, |r| r.conversation.clone())
            .map_err(err("read conversation"))?
        {
            Found::Kept(v) => Ok(Some(v)),
            Found::Missing => Ok(None),
            Found::Large => {
                let found = self
                    .lookup(|c| conversation_tx(c, id.as_str()))
                    .map_err(err("read conversation"))?;
                Ok(found.map(|mut c| {
                    self.inner.in_flight.overlay_conversation(&mut c);
                    c
                }))
            }
        }
    }

    async fn members(
        &self,
        conversation: &ConversationId,
        after: Option<&UserId>,
        limit: u32,
    ) -> StoreResult<Vec<MemberRecord>> {
        // "" sorts before every user id: the first page is the same query.
        let after = after.map_or("", UserId::as_str);
        match self
            .with_roster(conversation, |r| r.page(after, limit as usize))
            .map_err(err("read members"))?
        {
            Found::Kept(page) => return Ok(page),
            Found::Missing => return Ok(Vec::new()),
            Found::Large => {}
        }
        self.lookup(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members m
                 WHERE m.conversation_id = ?1 AND m.user_id > ?2
                 ORDER BY m.user_id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![conversation.as_str(), after, limit], |r| {
                member_at(r, 0)
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map(|mut page| {
            for m in &mut page {
                self.inner.in_flight.overlay_member(m);
            }
            page
        })
        .map_err(err("read members"))
    }

    async fn user_conversations(
        &self,
        user: &UserId,
        after: Option<&ConversationCursor>,
        limit: u32,
    ) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
        self.settle_for(None)
            .await
            .map_err(err("read user conversations"))?;
        let user = user.clone();
        let after = after.cloned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS}, {MEMBER_COLUMNS} FROM members m
                 JOIN conversations c ON c.id = m.conversation_id
                 WHERE m.user_id = ?1
                   AND (MAX(c.last_message_at, m.joined_at) < ?2
                        OR (MAX(c.last_message_at, m.joined_at) = ?2 AND c.id > ?3))
                 ORDER BY MAX(c.last_message_at, m.joined_at) DESC, c.id ASC LIMIT ?4"
            ))?;
            // The first page starts after (Millis::MAX, ""): before every conversation.
            let (before_at, after_id) = after.as_ref().map_or((Millis::MAX, ""), |a| {
                (a.last_message_at, a.conversation_id.as_str())
            });
            let rows = stmt.query_map(params![user.as_str(), before_at, after_id, limit], |r| {
                Ok((conversation_at(r, 0)?, member_at(r, CONVERSATION_WIDTH)?))
            })?;
            rows.collect()
        })
        .await
        .map_err(err("read user conversations"))
    }

    async fn add_members(
        &self,
        conversation: &ConversationId,
        users: &[UserId],
        max: u64,
        by: &Change,
    ) -> StoreResult<AddMembersOutcome> {
        let (conversation, id) = (conversation.clone(), conversation.clone());
        let users = users.to_vec();
        let by = by.clone();
        let (outcome, owed) = self
            .write_noting_after(
                move |tx| {
                    let Some(conv) = conversation_tx(tx, conversation.as_str())? else {
                        return Ok((AddMembersOutcome::Added(Vec::new()), Vec::new()));
                    };
                    let mut fresh = Vec::new();
                    for user in &users {
                        let exists =
                            membership_tx(tx, conversation.as_str(), user.as_str())?.is_some();
                        if !exists && !fresh.contains(user) {
                            fresh.push(user.clone());
                        }
                    }
                    if conv.member_count + fresh.len() as u64 > max {
                        return Ok((AddMembersOutcome::OverCap, Vec::new()));
                    }
                    if fresh.is_empty() {
                        return Ok((AddMembersOutcome::Added(fresh), Vec::new()));
                    }
                    // Positions as of now; the entry, once applied, moves them to itself.
                    for user in &fresh {
                        insert_member(
                            tx,
                            conversation.as_str(),
                            user.as_str(),
                            Role::Member,
                            by.now,
                            (conv.last_seq, conv.message_count),
                        )?;
                    }
                    tx.execute(
                        "UPDATE conversations SET member_count = member_count + ?2 WHERE id = ?1",
                        params![conversation.as_str(), fresh.len() as i64],
                    )?;
                    let change = by.by_actor(SystemEvent::MemberAdded, fresh.clone());
                    let entry = by.entry(&conversation, change);
                    system::owe(tx, &entry)?;
                    Ok((AddMembersOutcome::Added(fresh), vec![entry]))
                },
                move |cache, _| cache.forget_conversation(id.as_str()),
                true,
            )
            .await
            .map_err(err("add members"))?;
        self.pay(owed).await?;
        Ok(outcome)
    }

    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        by: &Change,
    ) -> StoreResult<Option<RemovedMember>> {
        let (conversation, user, id) = (conversation.clone(), user.clone(), conversation.clone());
        let by = by.clone();
        let (removed, owed) = self.write_noting(move |tx| {
            let cid = conversation.as_str();
            if tx.execute(
                "DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2",
                params![cid, user.as_str()],
            )? == 0
            {
                return Ok((None, Vec::new()));
            }
            let event = if by.actor == user {
                SystemEvent::MemberLeft
            } else {
                SystemEvent::MemberRemoved
            };
            let mut owed = vec![by.entry(&conversation, by.by_actor(event, vec![user.clone()]))];
            tx.execute(
                "UPDATE conversations SET member_count = member_count - 1 WHERE id = ?1",
                [cid],
            )?;
            let admins: i64 = tx.query_row(
                "SELECT COUNT(*) FROM members WHERE conversation_id = ?1 AND role = 'admin'",
                [cid],
                |r| r.get(0),
            )?;
            let mut promoted = None;
            if admins == 0 {
                let next: Option<String> = tx
                    .query_row(
                        "SELECT user_id FROM members WHERE conversation_id = ?1
                         ORDER BY join_order LIMIT 1",
                        [cid],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(next) = next {
                    tx.execute(
                        "UPDATE members SET role = 'admin' WHERE conversation_id = ?1 AND user_id = ?2",
                        params![cid, next],
                    )?;
                    let next = UserId::parse(next).map_err(|e| bad_value(0, e))?;
                    // The server's own change: it follows the leaving, and has no actor.
                    owed.push(by.entry(&conversation, SystemChange::promotion(next.clone())));
                    promoted = Some(next);
                }
            }
            for entry in &owed {
                system::owe(tx, entry)?;
            }
            Ok((Some(RemovedMember { promoted }), owed))
        }, move |cache, _| cache.forget_conversation(id.as_str()))
        .await
        .map_err(err("remove member"))?;
        self.pay(owed).await?;
        Ok(removed)
    }

    async fn set_role(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        role: Role,
        by: &Change,
    ) -> StoreResult<RoleOutcome> {
        let (conversation, user, id) = (conversation.clone(), user.clone(), conversation.clone());
        let by = by.clone();
        let (outcome, owed) = self
            .write_noting(
                move |tx| {
                    let cid = conversation.as_str();
                    let Some((_, mut member)) = membership_tx(tx, cid, user.as_str())? else {
                        return Ok((RoleOutcome::NotMember, Vec::new()));
                    };
                    if member.role == role {
                        return Ok((RoleOutcome::Set(member, false), Vec::new()));
                    }
                    if member.role == Role::Admin {
                        let admins: i64 = tx.query_row(
                            "SELECT COUNT(*) FROM members WHERE conversation_id = ?1 AND role = 'admin'",
                            [cid],
                            |r| r.get(0),
                        )?;
                        if admins <= 1 {
                            return Ok((RoleOutcome::LastAdmin, Vec::new()));
                        }
                    }
                    tx.execute(
                        "UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
                        params![cid, user.as_str(), role.as_str()],
                    )?;
                    member.role = role;
                    let change = SystemChange {
                        role: Some(role.as_str().to_owned()),
                        ..by.by_actor(SystemEvent::RoleChanged, vec![user.clone()])
                    };
                    let entry = by.entry(&conversation, change);
                    system::owe(tx, &entry)?;
                    Ok((RoleOutcome::Set(member, true), vec![entry]))
                },
                move |cache, _| cache.forget_conversation(id.as_str()),
            )
            .await
            .map_err(err("set role"))?;
        self.pay(owed).await?;
        Ok(outcome)
    }

    async fn set_details(
        &self,
        conversation: &ConversationId,
        change: &DetailsChange,
        by: &Change,
    ) -> StoreResult<DetailsOutcome> {
        let (conversation, change, id) =
            (conversation.clone(), change.clone(), conversation.clone());
        let by = by.clone();
        let (in_flight, claiming) = (self.inner.in_flight.clone(), self.inner.claiming.clone());
        let taken = change.avatar.clone().flatten();
        // After the messages acked before it: an attachment a message claimed is in the
        // database, so it cannot also become the avatar.
        let written = self
            .write_noting_after(
                move |tx| {
                    let Some(mut conv) = conversation_tx(tx, conversation.as_str())? else {
                        return Ok((DetailsOutcome::NoConversation, Vec::new()));
                    };
                    let name = change.name.filter(|n| conv.name.as_ref() != Some(n));
                    let avatar = change.avatar.filter(|a| conv.avatar != *a);
                    if name.is_none() && avatar.is_none() {
                        let outcome = DetailsOutcome::Set {
                            conversation: conv,
                            released: None,
                        };
                        return Ok((outcome, Vec::new()));
                    }
                    let cid = conversation.as_str();
                    let mut released = None;
                    if let Some(avatar) = avatar {
                        // Neither a message's in flight or being sequenced (`Claiming`,
                        // held until this commits) nor in the database.
                        if let Some(new) = &avatar
                            && (attachments::used_in_flight(&in_flight, cid, new)
                                || !claiming.take(&[new])
                                || !attachments::claim_avatar(tx, cid, by.actor.as_str(), new)?)
                        {
                            return Ok((DetailsOutcome::Refused, Vec::new()));
                        }
                        if let Some(old) = conv.avatar.take() {
                            attachments::release_avatar(tx, &old)?;
                            released = Some(old);
                        }
                        tx.execute(
                            "UPDATE conversations SET avatar = ?2 WHERE id = ?1",
                            params![cid, avatar.as_ref().map(AttachmentId::as_str)],
                        )?;
                        conv.avatar = avatar;
                    }
                    if let Some(name) = name {
                        tx.execute(
                            "UPDATE conversations SET name = ?2 WHERE id = ?1",
                            params![cid, name],
                        )?;
                        conv.name = Some(name);
                    }
                    let change = SystemChange {
                        name: conv.name.clone(),
                        avatar: conv.avatar.as_ref().map(ToString::to_string),
                        ..by.by_actor(SystemEvent::DetailsChanged, Vec::new())
                    };
                    let entry = by.entry(&conversation, change);
                    system::owe(tx, &entry)?;
                    let outcome = DetailsOutcome::Set {
                        conversation: conv,
                        released,
                    };
                    Ok((outcome, vec![entry]))
                },
                move |cache, _| cache.forget_conversation(id.as_str()),
                true,
            )
            .await;
        // Committed (or not): the database has it from now on.
        if let Some(new) = &taken {
            self.inner.claiming.release([new]);
        }
        let (outcome, owed) = written.map_err(err("change details"))?;
        self.pay(owed).await?;
        match outcome {
            // As every read sees it now: with its entry, and any in flight.
            DetailsOutcome::Set {
                conversation,
                released,
            } => match self.conversation(&conversation.id).await? {
                Some(conversation) => Ok(DetailsOutcome::Set {
                    conversation,
                    released,
                }),
                None => Ok(DetailsOutcome::NoConversation),
            },
            other => Ok(other),
        }
    }

    async fn set_muted(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        until: Millis,
    ) -> StoreResult<bool> {
        let (conversation, user, id) = (conversation.clone(), user.clone(), conversation.clone());
        self.write_noting(
            move |tx| {
                Ok(tx.execute(
                    "UPDATE members SET muted_until = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
                    params![conversation.as_str(), user.as_str(), until],
                )? == 1)
            },
            move |cache, _| cache.forget_conversation(id.as_str()),
        )
        .await
        .map_err(err("set muted"))
    }

    async fn users_sharing_conversation(
        &self,
        user: &UserId,
        candidates: &[UserId],
    ) -> StoreResult<Vec<UserId>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let user = user.clone();
        let candidates = strings(candidates);
        self.read(move |c| {
            let sql = format!(
                "SELECT DISTINCT o.user_id FROM members me
                 JOIN members o ON o.conversation_id = me.conversation_id
                 WHERE me.user_id = ?1 AND o.user_id IN ({})",
                placeholders(2, candidates.len())
            );
            let mut stmt = c.prepare(&sql)?;
            let values = std::iter::once(user.as_str().to_owned()).chain(candidates);
            let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| user_at(r, 0))?;
            rows.collect()
        })
        .await
        .map_err(err("read shared users"))
    }

    async fn contacts(&self, user: &UserId, max_members: u64) -> StoreResult<Vec<UserId>> {
        let user = user.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT o.user_id FROM members me
                 JOIN conversations c ON c.id = me.conversation_id
                 JOIN members o ON o.conversation_id = me.conversation_id
                 WHERE me.user_id = ?1 AND c.member_count <= ?2 AND o.user_id != ?1",
            )?;
            let rows = stmt.query_map(params![user.as_str(), max_members as i64], |r| {
                user_at(r, 0)
            })?;
            rows.collect()
        })
        .await
        .map_err(err("read contacts"))
    }
}
