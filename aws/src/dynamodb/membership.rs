//! Membership changes and their `system` entries (PROTOCOL.md 8.4).
//!
//! A change and its entry are one `TransactWriteItems`, sequenced like every append:
//! the conversation item's counter moves from n-1 to n (conditional on n-1, so changes
//! and appends of one conversation take turns and a change decided on a stale read is
//! tried again), with `lastEntryAt` and `memberCount`, never `lastMessageAt` nor
//! `messageCount` (a system entry is not a message); entry n is put; the member items
//! are written.
//!
//! | change | in the transaction |
//! |---|---|
//! | add k users | the counter (`memberCount` + k, conditional on room for k), the `member_added` entry naming the k, their member items (conditional on absence) with positions at the entry's seq and `readMessages` at the message count |
//! | remove, leave | the counter (`memberCount` - 1), the member item's delete (conditional on the role read), the `member_removed` or `member_left` entry |
//! | ... of the last admin | also the promoted member's role (conditional on the role read) and the `role_changed` entry (no actor) at n+1: the counter moves n-1 -> n+1 |
//! | a role change | the counter, the member's role (conditional on the role read), the `role_changed` entry; demoting an admin first counts the admins, and the counter's condition makes two racing demotions take turns |
//! | a rename | the counter with the name, the `details_changed` entry |
//!
//! No idempotency record: the server makes these entries (each with a fresh
//! clientMessageId), and a retried change finds nothing to do (already members, not a
//! member) and appends nothing.
//!
//! **More than 98 users at once.** The protocol allows 100 per call; a transaction
//! holds at most 100 actions. The first transaction holds the counter, the entry naming
//! every user and the first 98 member items, and leaves a `pendingAdd` marker on the
//! conversation item (the entry's seq, time and message count, and the users still to
//! put); a second transaction puts those and removes the marker, conditional on it.
//! Atomic: the cap check, the seq, the entry, `memberCount` and the first 98 members.
//! Not atomic: between the two transactions (one round trip, or until a crash is
//! recovered) the last users the entry names are not members yet: their requests are
//! refused as a non-member's and the fan-out of the entry may miss them (sync brings it).
//! A crash in between is rolled forward by the next membership change of the
//! conversation, which finishes any marker it finds before deciding its own: the entry
//! never names users who do not end up members, and `memberCount` counts them all along.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, TransactWriteItem, Update};

use chat_shared::StoreError;
use chat_shared::ids::{AttachmentId, ConversationId, Millis, Seq, UserId};
use chat_shared::ports::{
    AddMembersOutcome, Change, ConversationStore, DetailsChange, DetailsOutcome, NewMessage,
    RemovedMember, Role, RoleOutcome, StoreResult,
};
use chat_shared::protocol::{SystemChange, SystemEvent};

use super::DynamoStore;
use super::client::{MAX_ATTEMPTS, TRANSACTION_MAX, backoff, cancellation_codes, put, sdk};
use super::codec::{
    Counter, Item, META, MalformedItem, conv_pk, conversation_from, get_n, get_s, key, malformed,
    member_from, member_item, member_sk, message_item, n, opt_s, s,
};

/// Member puts that fit in an add's first transaction, beside the counter and the entry.
const FIRST_PUTS: usize = TRANSACTION_MAX - 2;

/// The members an add still has to put after its first transaction (the conversation
/// item's `pendingAdd`), with what their items hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingAdd {
    /// The `member_added` entry's seq: the members' positions, and the marker's identity.
    seq: Seq,
    /// The entry's time: the members' `joinedAt`.
    at: Millis,
    /// The message count at the entry: the members' `readMessages`.
    messages: u64,
    users: Vec<UserId>,
}

impl PendingAdd {
    const ATTRIBUTE: &'static str = "pendingAdd";

    fn of(meta: &Item) -> StoreResult<Option<Self>> {
        let Some(value) = meta.get(Self::ATTRIBUTE) else {
            return Ok(None);
        };
        let AttributeValue::M(m) = value else {
            return Err(malformed("pendingAdd is not a map".into()));
        };
        let users = match m.get("users") {
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| match v {
                    AttributeValue::S(u) => UserId::parse(u.as_str()).map_err(|e| malformed(e.0)),
                    _ => Err(malformed("pendingAdd users holds a non-string".into())),
                })
                .collect::<StoreResult<_>>()?,
            _ => return Err(malformed("pendingAdd without users".into())),
        };
        Ok(Some(Self {
            seq: get_n(m, "seq")?,
            at: get_n(m, "at")?,
            messages: get_n(m, "messages")?,
            users,
        }))
    }

    fn value(&self) -> AttributeValue {
        AttributeValue::M(
            [
                ("seq".to_owned(), n(self.seq)),
                ("at".to_owned(), n(self.at)),
                ("messages".to_owned(), n(self.messages)),
                (
                    "users".to_owned(),
                    AttributeValue::L(self.users.iter().map(|u| s(u.as_str())).collect()),
                ),
            ]
            .into(),
        )
    }

    fn member(&self, conversation: &str, user: &UserId) -> Item {
        member_item(
            conversation,
            user.as_str(),
            Role::Member,
            self.at,
            (self.seq, self.messages),
        )
    }
}

/// What a change does to the conversation item's counter.
struct Step<'a> {
    /// The counter after it: n for one entry, n+1 for two.
    last_seq: Seq,
    /// The entries' time (`lastEntryAt`).
    at: Millis,
    /// How `memberCount` moves.
    members: i64,
    /// An add's cap: the step holds only while there is room for `members`.
    max: Option<u64>,
    /// The members an add leaves for its second transaction.
    pending: Option<&'a PendingAdd>,
    /// A details change: the group's new name, its new avatar (`Some(None)`: none).
    name: Option<&'a str>,
    avatar: Option<Option<&'a AttachmentId>>,
}

impl Step<'_> {
    /// A step to `last_seq` at `at` that changes nothing else.
    fn to(last_seq: Seq, at: Millis) -> Self {
        Self {
            last_seq,
            at,
            members: 0,
            max: None,
            pending: None,
            name: None,
            avatar: None,
        }
    }
}

/// Whether a cancelled transaction lost to a racing writer (a condition on what was
/// read, or a conflict): reading again decides. Anything else is an error.
fn lost_race(codes: &[String]) -> bool {
    codes.iter().all(|c| {
        matches!(
            c.as_str(),
            "None" | "ConditionalCheckFailed" | "TransactionConflict" | "ThrottlingError"
        )
    })
}

fn update(u: Update) -> TransactWriteItem {
    TransactWriteItem::builder().update(u).build()
}

impl DynamoStore {
    /// Runs a change's transaction: true when it committed, false when it lost to a
    /// racing writer (nothing was written; read again).
    async fn commit(
        &self,
        actions: Vec<TransactWriteItem>,
        context: &'static str,
    ) -> StoreResult<bool> {
        self.transact(actions, context, lost_race).await
    }

    /// The conversation item and the member items of `users` (those that exist), read
    /// strongly consistent; `None` when the conversation does not exist. A `pendingAdd`
    /// found on the way is finished first (see the module's doc).
    async fn read_change(
        &self,
        conversation: &str,
        users: &[&UserId],
    ) -> StoreResult<Option<(Item, Vec<Item>)>> {
        let pk = conv_pk(conversation);
        for _ in 0..MAX_ATTEMPTS {
            let mut keys = vec![key(pk.clone(), META)];
            keys.extend(
                users
                    .iter()
                    .map(|u| key(pk.clone(), &member_sk(u.as_str()))),
            );
            let mut items = self.batch_get(keys, true).await?;
            let Some(at) = items.iter().position(|i| get_s(i, "sk").ok() == Some(META)) else {
                return Ok(None);
            };
            let meta = items.swap_remove(at);
            match PendingAdd::of(&meta)? {
                None => return Ok(Some((meta, items))),
                Some(pending) => self.finish_add(conversation, &pending, false).await?,
            }
        }
        Err(StoreError::new(
            "read membership change",
            MalformedItem("a pending add never finished".into()),
        ))
    }

    /// The counter's step of a change (see [`Step`]), conditional on the counter read.
    fn counter_step(&self, conversation: &str, counter: &Counter, step: Step<'_>) -> Update {
        let mut set = "SET lastSeq = :seq, lastEntryAt = :ts".to_owned();
        let mut condition =
            "lastSeq = :prev AND (attribute_not_exists(lastEntryAt) OR lastEntryAt <= :ts)"
                .to_owned();
        let mut update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key(conv_pk(conversation), META)))
            .expression_attribute_values(":prev", n(counter.last_seq))
            .expression_attribute_values(":seq", n(step.last_seq))
            .expression_attribute_values(":ts", n(step.at))
            .expression_attribute_values(":k", n(step.members));
        if let Some(max) = step.max {
            let room = max.saturating_sub(step.members.unsigned_abs());
            condition.push_str(" AND memberCount <= :room");
            update = update.expression_attribute_values(":room", n(room));
        }
        if let Some(pending) = step.pending {
            set.push_str(", pendingAdd = :pending");
            update = update.expression_attribute_values(":pending", pending.value());
        }
        if let Some(name) = step.name {
            set.push_str(", #name = :name");
            update = update
                .expression_attribute_names("#name", "name")
                .expression_attribute_values(":name", s(name));
        }
        let mut remove = "";
        match step.avatar {
            Some(Some(avatar)) => {
                set.push_str(", avatar = :avatar");
                update = update.expression_attribute_values(":avatar", s(avatar.as_str()));
            }
            Some(None) => remove = " REMOVE avatar",
            None => {}
        }
        update
            .update_expression(format!("{set}{remove} ADD memberCount :k"))
            .condition_expression(condition)
            .build()
            .expect("update has key and expression")
    }

    /// The put of a `system` entry at `seq` (conditional on the seq being free).
    fn entry_put(
        &self,
        entry: &NewMessage,
        seq: Seq,
        at: Millis,
        message_count: u64,
    ) -> TransactWriteItem {
        put(
            &self.tables.messages,
            message_item(entry, seq, at, message_count),
            Some("attribute_not_exists(conversationId)"),
        )
    }

    pub(super) async fn add_with_entry(
        &self,
        conversation: &ConversationId,
        users: &[UserId],
        max: u64,
        by: &Change,
    ) -> StoreResult<AddMembersOutcome> {
        let cid = conversation.as_str();
        let asked: Vec<&UserId> = users.iter().collect();
        for attempt in 0..MAX_ATTEMPTS {
            let Some((meta, found)) = self.read_change(cid, &asked).await? else {
                return Ok(AddMembersOutcome::Added(Vec::new()));
            };
            let counter = Counter::from(&meta)?;
            let existing: HashSet<String> = found
                .iter()
                .filter_map(|i| opt_s(i, "memberUser"))
                .collect();
            let mut fresh: Vec<UserId> = Vec::new();
            for u in users {
                if !existing.contains(u.as_str()) && !fresh.contains(u) {
                    fresh.push(u.clone());
                }
            }
            if counter.member_count + fresh.len() as u64 > max {
                return Ok(AddMembersOutcome::OverCap);
            }
            if fresh.is_empty() {
                return Ok(AddMembersOutcome::Added(fresh));
            }
            let seq = counter.last_seq + 1;
            let at = by.now.max(counter.last_entry_at);
            let entry = by.entry(
                conversation,
                by.by_actor(SystemEvent::MemberAdded, fresh.clone()),
            );
            let all = PendingAdd {
                seq,
                at,
                messages: counter.message_count,
                users: fresh.clone(),
            };
            let first = fresh.len().min(FIRST_PUTS);
            let rest = PendingAdd {
                users: fresh[first..].to_vec(),
                ..all.clone()
            };
            let step = Step {
                members: fresh.len() as i64,
                max: Some(max),
                pending: (!rest.users.is_empty()).then_some(&rest),
                ..Step::to(seq, at)
            };
            let mut actions = vec![
                update(self.counter_step(cid, &counter, step)),
                self.entry_put(&entry, seq, at, counter.message_count),
            ];
            actions.extend(fresh[..first].iter().map(|u| {
                put(
                    &self.tables.main,
                    all.member(cid, u),
                    Some("attribute_not_exists(pk)"),
                )
            }));
            if self.commit(actions, "add members").await? {
                if !rest.users.is_empty() {
                    self.finish_add(cid, &rest, true).await?;
                }
                return Ok(AddMembersOutcome::Added(fresh));
            }
            backoff(attempt).await;
        }
        Err(StoreError::new(
            "add members",
            MalformedItem("too many concurrent changes".into()),
        ))
    }

    /// Puts the members a `pendingAdd` still names and removes it, conditional on it
    /// (a finish that lost to another finds nothing to do). `fresh`: none of them can
    /// exist yet (right after the first transaction), so they need not be read.
    async fn finish_add(
        &self,
        conversation: &str,
        pending: &PendingAdd,
        fresh: bool,
    ) -> StoreResult<()> {
        let pk = conv_pk(conversation);
        let missing: Vec<&UserId> = if fresh {
            pending.users.iter().collect()
        } else {
            let found: HashSet<String> = self
                .batch_get(
                    pending
                        .users
                        .iter()
                        .map(|u| key(pk.clone(), &member_sk(u.as_str())))
                        .collect(),
                    true,
                )
                .await?
                .iter()
                .filter_map(|i| opt_s(i, "memberUser"))
                .collect();
            pending
                .users
                .iter()
                .filter(|u| !found.contains(u.as_str()))
                .collect()
        };
        let chunks: Vec<&[&UserId]> = missing.chunks(TRANSACTION_MAX - 1).collect();
        let last = chunks.len().saturating_sub(1);
        for i in 0..chunks.len().max(1) {
            let users = chunks.get(i).copied().unwrap_or_default();
            let condition = "pendingAdd.#seq = :seq";
            // Every transaction but the last only checks the marker; the last removes it.
            let marker = if i == last {
                update(
                    Update::builder()
                        .table_name(&self.tables.main)
                        .set_key(Some(key(pk.clone(), META)))
                        .update_expression("REMOVE pendingAdd")
                        .condition_expression(condition)
                        .expression_attribute_names("#seq", "seq")
                        .expression_attribute_values(":seq", n(pending.seq))
                        .build()
                        .expect("update has key and expression"),
                )
            } else {
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.tables.main)
                            .set_key(Some(key(pk.clone(), META)))
                            .condition_expression(condition)
                            .expression_attribute_names("#seq", "seq")
                            .expression_attribute_values(":seq", n(pending.seq))
                            .build()
                            .expect("check has key and condition"),
                    )
                    .build()
            };
            let mut actions = vec![marker];
            actions.extend(
                users
                    .iter()
                    .map(|u| put(&self.tables.main, pending.member(conversation, u), None)),
            );
            let mut attempt = 0;
            loop {
                match self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(actions.clone()))
                    .send()
                    .await
                {
                    Ok(_) => break,
                    Err(e) => match cancellation_codes(&e) {
                        // Another finish removed the marker: it is done.
                        Some(codes)
                            if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") =>
                        {
                            return Ok(());
                        }
                        Some(codes) if lost_race(&codes) && attempt < MAX_ATTEMPTS => {
                            attempt += 1;
                            backoff(attempt).await;
                        }
                        _ => return Err(sdk("finish adding members")(e)),
                    },
                }
            }
        }
        Ok(())
    }

    pub(super) async fn remove_with_entry(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        by: &Change,
    ) -> StoreResult<Option<RemovedMember>> {
        let cid = conversation.as_str();
        for attempt in 0..MAX_ATTEMPTS {
            let Some((meta, found)) = self.read_change(cid, &[user]).await? else {
                return Ok(None);
            };
            let Some(me) = found.first().map(member_from).transpose()? else {
                return Ok(None);
            };
            let counter = Counter::from(&meta)?;
            // The last admin leaving: the longest-standing member left becomes admin.
            let promoted = if me.role == Role::Admin {
                let rest: Vec<_> = self
                    .members(conversation, None, u32::MAX)
                    .await?
                    .into_iter()
                    .filter(|m| &m.user_id != user)
                    .collect();
                if rest.iter().any(|m| m.role == Role::Admin) {
                    None
                } else {
                    rest.into_iter()
                        .min_by(|a, b| (a.joined_at, &a.user_id).cmp(&(b.joined_at, &b.user_id)))
                        .map(|m| m.user_id)
                }
            } else {
                None
            };
            let seq = counter.last_seq + 1;
            let last_seq = seq + u64::from(promoted.is_some());
            let at = by.now.max(counter.last_entry_at);
            let event = if &by.actor == user {
                SystemEvent::MemberLeft
            } else {
                SystemEvent::MemberRemoved
            };
            let pk = conv_pk(cid);
            let entry = by.entry(conversation, by.by_actor(event, vec![user.clone()]));
            let mut actions = vec![
                update(self.counter_step(
                    cid,
                    &counter,
                    Step {
                        members: -1,
                        ..Step::to(last_seq, at)
                    },
                )),
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.tables.main)
                            .set_key(Some(key(pk.clone(), &member_sk(user.as_str()))))
                            .condition_expression("#r = :role")
                            .expression_attribute_names("#r", "role")
                            .expression_attribute_values(":role", s(me.role.as_str()))
                            .build()
                            .expect("delete has key"),
                    )
                    .build(),
                self.entry_put(&entry, seq, at, counter.message_count),
            ];
            if let Some(next) = &promoted {
                let change = SystemChange::promotion(next.clone());
                actions.push(update(
                    Update::builder()
                        .table_name(&self.tables.main)
                        .set_key(Some(key(pk.clone(), &member_sk(next.as_str()))))
                        .update_expression("SET #r = :admin")
                        .condition_expression("#r = :member")
                        .expression_attribute_names("#r", "role")
                        .expression_attribute_values(":admin", s(Role::Admin.as_str()))
                        .expression_attribute_values(":member", s(Role::Member.as_str()))
                        .build()
                        .expect("update has key and expression"),
                ));
                actions.push(self.entry_put(
                    &by.entry(conversation, change),
                    seq + 1,
                    at,
                    counter.message_count,
                ));
            }
            if self.commit(actions, "remove member").await? {
                return Ok(Some(RemovedMember { promoted }));
            }
            backoff(attempt).await;
        }
        Err(StoreError::new(
            "remove member",
            MalformedItem("too many concurrent changes".into()),
        ))
    }
    pub(super) async fn set_role_with_entry(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        role: Role,
        by: &Change,
    ) -> StoreResult<RoleOutcome> {
        let cid = conversation.as_str();
        for attempt in 0..MAX_ATTEMPTS {
            let Some((meta, found)) = self.read_change(cid, &[user]).await? else {
                return Ok(RoleOutcome::NotMember);
            };
            let Some(mut member) = found.first().map(member_from).transpose()? else {
                return Ok(RoleOutcome::NotMember);
            };
            if member.role == role {
                return Ok(RoleOutcome::Set(member, false));
            }
            if member.role == Role::Admin {
                let admins = self
                    .members(conversation, None, u32::MAX)
                    .await?
                    .iter()
                    .filter(|m| m.role == Role::Admin)
                    .count();
                if admins <= 1 {
                    return Ok(RoleOutcome::LastAdmin);
                }
            }
            let counter = Counter::from(&meta)?;
            let seq = counter.last_seq + 1;
            let at = by.now.max(counter.last_entry_at);
            let change = SystemChange {
                role: Some(role.as_str().to_owned()),
                ..by.by_actor(SystemEvent::RoleChanged, vec![user.clone()])
            };
            let entry = by.entry(conversation, change);
            let step = Step::to(seq, at);
            let actions = vec![
                update(self.counter_step(cid, &counter, step)),
                update(
                    Update::builder()
                        .table_name(&self.tables.main)
                        .set_key(Some(key(conv_pk(cid), &member_sk(user.as_str()))))
                        .update_expression("SET #r = :new")
                        .condition_expression("#r = :old")
                        .expression_attribute_names("#r", "role")
                        .expression_attribute_values(":new", s(role.as_str()))
                        .expression_attribute_values(":old", s(member.role.as_str()))
                        .build()
                        .expect("update has key and expression"),
                ),
                self.entry_put(&entry, seq, at, counter.message_count),
            ];
            if self.commit(actions, "set role").await? {
                member.role = role;
                return Ok(RoleOutcome::Set(member, true));
            }
            backoff(attempt).await;
        }
        Err(StoreError::new(
            "set role",
            MalformedItem("too many concurrent changes".into()),
        ))
    }

    pub(super) async fn details_with_entry(
        &self,
        conversation: &ConversationId,
        change: &DetailsChange,
        by: &Change,
    ) -> StoreResult<DetailsOutcome> {
        let cid = conversation.as_str();
        for attempt in 0..MAX_ATTEMPTS {
            let Some((meta, _)) = self.read_change(cid, &[]).await? else {
                return Ok(DetailsOutcome::NoConversation);
            };
            let mut conv = conversation_from(&meta)?;
            let name = change
                .name
                .as_ref()
                .filter(|n| conv.name.as_ref() != Some(*n));
            let avatar = change.avatar.as_ref().filter(|a| conv.avatar != **a);
            if name.is_none() && avatar.is_none() {
                return Ok(DetailsOutcome::Set {
                    conversation: conv,
                    released: None,
                });
            }
            let counter = Counter::from(&meta)?;
            let seq = counter.last_seq + 1;
            let at = by.now.max(counter.last_entry_at);
            let after_name = name.cloned().or_else(|| conv.name.clone());
            let after_avatar = avatar.cloned().unwrap_or_else(|| conv.avatar.clone());
            let entry = by.entry(
                conversation,
                SystemChange {
                    name: after_name.clone(),
                    avatar: after_avatar.as_ref().map(ToString::to_string),
                    ..by.by_actor(SystemEvent::DetailsChanged, Vec::new())
                },
            );
            let step = Step {
                name: name.map(String::as_str),
                avatar: avatar.map(Option::as_ref),
                ..Step::to(seq, at)
            };
            let mut actions = vec![
                update(self.counter_step(cid, &counter, step)),
                self.entry_put(&entry, seq, at, counter.message_count),
            ];
            // From index 2: the new avatar's claim, the old one's release.
            let claims = matches!(avatar, Some(Some(_)));
            if let Some(Some(new)) = avatar {
                actions.push(self.avatar_claim(conversation, &by.actor, new));
            }
            let released = avatar.and(conv.avatar.clone());
            if let Some(old) = &released {
                actions.push(self.attachment_release(old, by.now));
            }
            let refused = AtomicBool::new(false);
            let committed = self
                .transact(actions, "change details", |codes| {
                    refused.store(
                        claims && codes.get(2).is_some_and(|c| c == "ConditionalCheckFailed"),
                        Ordering::Relaxed,
                    );
                    lost_race(codes)
                })
                .await?;
            if committed {
                conv.name = after_name;
                conv.avatar = after_avatar;
                conv.last_seq = seq;
                return Ok(DetailsOutcome::Set {
                    conversation: conv,
                    released,
                });
            }
            if refused.load(Ordering::Relaxed) {
                return Ok(DetailsOutcome::Refused);
            }
            backoff(attempt).await;
        }
        Err(StoreError::new(
            "change details",
            MalformedItem("too many concurrent changes".into()),
        ))
    }
}
