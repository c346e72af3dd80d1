//! The append: every entry is one `TransactWriteItems` that advances the conversation's
//! counter from n-1 to n (conditional), puts entry n, puts the idempotency record, and
//! writes what the entry changes:
//!
//! | kind | also in the transaction |
//! |---|---|
//! | `message` | the sender's positions and `readMessages` (conditional on membership); each attachment it uses, claimed (conditional on being the sender's, of the conversation, unused) |
//! | `edit` | the target: its content, `editedAt`, `edits`, `editSeqs` |
//! | `delete` | the target: content erased, `deletedBy`, summaries dropped; each of its edits' content erased |
//! | `reaction` | the target's summary of that emoji; the reaction's `ru#` and `rt#` items |
//!
//! An entry naming an earlier message reads it first (with the counter, the sender's
//! member item and, for a reaction, the sender's reaction item: one BatchGetItem),
//! checks [`check_entry`] against it, and writes conditionally on the target's `rev`
//! being the one it read: every write to a target (and to its reaction items) bumps
//! `rev`, so a racing edit, delete or reaction makes the loser read again, and a
//! reaction or edit can never slip in after a delete.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, TransactWriteItem, Update,
};

use chat_shared::StoreError;
use chat_shared::domain::check_entry;
use chat_shared::ids::{Millis, Seq, UserId};
use chat_shared::ports::{
    AppendOutcome, MemberRecord, MessageRecord, MessageStore, NewMessage, Refusal, Role,
    StoreResult, Target,
};
use chat_shared::protocol::{Content, Entry, EntryKind};

use super::DynamoStore;
use super::attachments::attachment_ids;
use super::client::{MAX_ATTEMPTS, backoff, cancellation_codes, is_transaction_conflict, put, sdk};
use super::codec::{
    Counter, Item, META, MalformedItem, content_value, conv_pk, entry_key, get_n, get_s, idem_sk,
    key, kind_of, malformed, member_from, member_sk, message_from, message_item, n, opt_n, opt_s,
    s,
};
use super::reactions::{
    Summaries, Summary, reactor_sk, summaries_of, summaries_value, user_reaction_sk,
};

/// What an append reads before its transaction.
struct Read {
    counter: Counter,
    /// The sender's member item (read for entries naming a message).
    member: Option<MemberRecord>,
    /// The entry at the seq the new entry names, if any.
    target: Option<Item>,
    /// For a reaction: whether the sender already reacted so.
    reacted: bool,
}

/// The seq an entry names: its target, or a message's `replyTo`.
fn named_seq(entry: &Entry) -> Option<Seq> {
    match entry {
        Entry::Message { reply_to, .. } => *reply_to,
        other => other.target_seq(),
    }
}

/// The target as [`check_entry`] sees it: `None` unless it is a `message` entry.
fn target_from(item: &Item) -> StoreResult<Option<Target>> {
    if kind_of(item)? != EntryKind::Message {
        return Ok(None);
    }
    let content_type = match opt_s(item, "contentType") {
        Some(t) => t,
        None => opt_s(item, "content")
            .and_then(|c| serde_json::from_str::<Content>(&c).ok())
            .map_or_else(|| "text".to_owned(), |c| c.kind),
    };
    Ok(Some(Target {
        sender_id: UserId::parse(get_s(item, "senderId")?).map_err(|e| malformed(e.0))?,
        timestamp: get_n(item, "timestamp")?,
        content_type,
        deleted: item.contains_key("deletedBy"),
        edits: opt_n(item, "edits")?.unwrap_or(0),
        emoji: summaries_of(item)?
            .into_iter()
            .filter(|(_, sum)| sum.count > 0)
            .map(|(emoji, _)| emoji)
            .collect(),
    }))
}

/// A target update conditional on its `rev` being the one read, which it bumps.
struct TargetWrite {
    set: Vec<String>,
    remove: Vec<&'static str>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl TargetWrite {
    fn new() -> Self {
        Self {
            set: Vec::new(),
            remove: Vec::new(),
            values: Vec::new(),
        }
    }

    fn set(&mut self, expr: &str, name: &'static str, value: AttributeValue) {
        self.set.push(expr.to_owned());
        self.values.push((name, value));
    }
}

fn rev_condition(target: &Item) -> StoreResult<(String, Option<u64>)> {
    Ok(match opt_n::<u64>(target, "rev")? {
        Some(rev) => ("rev = :rev".to_owned(), Some(rev)),
        None => ("attribute_not_exists(rev)".to_owned(), None),
    })
}

impl DynamoStore {
    /// Reads what an append needs: the counter, and for an entry naming a message, the
    /// member, the target and (reactions) the sender's reaction item, in one request.
    /// `None` when the conversation does not exist.
    async fn read_for_append(&self, m: &NewMessage) -> StoreResult<Option<Read>> {
        let cid = m.conversation_id.as_str();
        let Some(named) = named_seq(&m.entry) else {
            let Some(meta) = self.get(&self.tables.main, key(conv_pk(cid), META)).await? else {
                return Ok(None);
            };
            return Ok(Some(Read {
                counter: Counter::from(&meta)?,
                member: None,
                target: None,
                reacted: false,
            }));
        };
        let sender = m.sender_id.as_str();
        let mut main_keys = vec![
            key(conv_pk(cid), META),
            key(conv_pk(cid), &member_sk(sender)),
        ];
        let reaction_sk = match &m.entry {
            Entry::Reaction { emoji, .. } => Some(user_reaction_sk(sender, named, emoji)),
            _ => None,
        };
        if let Some(sk) = &reaction_sk {
            main_keys.push(key(conv_pk(cid), sk));
        }
        let (main, messages) = self
            .batch_get_both(main_keys, vec![entry_key(cid, named)])
            .await?;
        let by_sk = |sk: &str| main.iter().find(|i| get_s(i, "sk").ok() == Some(sk));
        let Some(meta) = by_sk(META) else {
            return Ok(None);
        };
        Ok(Some(Read {
            counter: Counter::from(meta)?,
            member: by_sk(&member_sk(sender)).map(member_from).transpose()?,
            target: messages.into_iter().next(),
            reacted: reaction_sk.is_some_and(|sk| by_sk(&sk).is_some()),
        }))
    }

    /// One strongly consistent BatchGetItem over the main and messages tables.
    async fn batch_get_both(
        &self,
        main: Vec<Item>,
        messages: Vec<Item>,
    ) -> StoreResult<(Vec<Item>, Vec<Item>)> {
        let request = |keys: Vec<Item>| {
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .expect("keys are set")
        };
        let mut pending = vec![
            (self.tables.main.clone(), request(main)),
            (self.tables.messages.clone(), request(messages)),
        ];
        let (mut main_out, mut messages_out) = (Vec::new(), Vec::new());
        let mut attempt = 0;
        while !pending.is_empty() {
            let resp = self
                .client
                .batch_get_item()
                .set_request_items(Some(pending.drain(..).collect()))
                .send()
                .await
                .map_err(sdk("batch get"))?;
            for (table, items) in resp.responses.unwrap_or_default() {
                if table == self.tables.main {
                    main_out.extend(items);
                } else {
                    messages_out.extend(items);
                }
            }
            pending = resp
                .unprocessed_keys
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, k)| !k.keys().is_empty())
                .collect();
            if !pending.is_empty() {
                attempt += 1;
                backoff(attempt).await;
            }
        }
        Ok((main_out, messages_out))
    }

    /// The answer to an entry that cannot be stored (`outcome`): the original when it is
    /// a retry (idempotency comes before everything else), else `outcome`.
    async fn original_or(
        &self,
        m: &NewMessage,
        outcome: AppendOutcome,
    ) -> StoreResult<AppendOutcome> {
        match self
            .find_by_client_id(&m.conversation_id, &m.sender_id, &m.client_message_id)
            .await?
        {
            Some(original) => self.duplicate(original).await,
            None => Ok(outcome),
        }
    }

    /// A retry's answer. A delete's retry also finishes what the original may not have
    /// (dropping the target's reaction items after its transaction).
    async fn duplicate(&self, original: MessageRecord) -> StoreResult<AppendOutcome> {
        if let Entry::Delete { target_seq } = original.entry {
            self.drop_reactions(original.conversation_id.as_str(), target_seq)
                .await?;
        }
        Ok(AppendOutcome::Duplicate(original))
    }

    pub(crate) async fn append(&self, m: &NewMessage) -> StoreResult<AppendOutcome> {
        let cid = m.conversation_id.as_str();
        // Edits of a deleted target that expired meanwhile: nothing left to erase.
        let mut gone_edits: HashSet<Seq> = HashSet::new();
        // A message names nothing: the caller's view of the counter saves its read, and
        // a stale one fails the counter's condition and the next attempt reads it.
        let mut hint = m.hint.filter(|_| named_seq(&m.entry).is_none());
        for attempt in 0..MAX_ATTEMPTS {
            let read = match hint.take() {
                Some(h) => Read {
                    counter: Counter {
                        last_seq: h.last_seq,
                        last_entry_at: h.last_message_at,
                        message_count: h.message_count,
                        member_count: 0,
                    },
                    member: None,
                    target: None,
                    reacted: false,
                },
                None => match self.read_for_append(m).await? {
                    Some(read) => read,
                    None => return Ok(AppendOutcome::NotMember),
                },
            };
            let named = named_seq(&m.entry);
            if named.is_some() && read.member.is_none() {
                return self.original_or(m, AppendOutcome::NotMember).await;
            }
            if named.is_some() {
                let target = read.target.as_ref().map(target_from).transpose()?.flatten();
                let admin = read
                    .member
                    .as_ref()
                    .is_some_and(|me| me.role == Role::Admin);
                if let Err(refusal) = check_entry(m, admin, target.as_ref()) {
                    return self.original_or(m, AppendOutcome::Refused(refusal)).await;
                }
            }
            let counter = &read.counter;
            let seq = counter.last_seq + 1;
            let timestamp = m.now.max(counter.last_entry_at);
            let message_count = counter.message_count + u64::from(m.entry.is_message());
            let item = message_item(m, seq, timestamp, message_count);
            let mut actions = vec![
                self.counter_update(m, counter, seq, timestamp, message_count),
                put(
                    &self.tables.messages,
                    item.clone(),
                    Some("attribute_not_exists(conversationId)"),
                ),
                self.idempotency_put(m, seq),
            ];
            // The edits a delete erases, from index 4, to tell which one failed.
            let mut erasures: Vec<Seq> = Vec::new();
            match (&m.entry, &read.target) {
                (Entry::Message { .. }, _) => {
                    actions.push(self.sender_positions(m, seq, message_count));
                    // From index 4: the attachments it claims.
                    for id in attachment_ids(m) {
                        actions.push(self.attachment_claim(m, id, seq));
                    }
                }
                // A change's entry appended on its own (membership changes append theirs
                // with the change, in `membership`): nothing else to write.
                (Entry::System(_), _) => {}
                (_, None) => {
                    return Err(StoreError::new(
                        "append entry",
                        MalformedItem("a checked target is missing".into()),
                    ));
                }
                (entry, Some(target)) => {
                    let extra = self
                        .target_writes(m, entry, target, seq, timestamp, read.reacted, &gone_edits)
                        .await?;
                    erasures = extra.erased;
                    actions.extend(extra.actions);
                }
            }
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await
            {
                Ok(_) => {
                    let stored = message_from(&item)?;
                    if let Entry::Delete { target_seq } = &stored.entry {
                        self.drop_reactions(cid, *target_seq).await?;
                    }
                    return Ok(AppendOutcome::Stored(stored));
                }
                Err(e) => {
                    let Some(codes) = cancellation_codes(&e) else {
                        return Err(sdk("append entry")(e));
                    };
                    let failed =
                        |i: usize| codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
                    if failed(2)
                        && let Some(original) = self
                            .find_by_client_id(
                                &m.conversation_id,
                                &m.sender_id,
                                &m.client_message_id,
                            )
                            .await?
                    {
                        return self.duplicate(original).await;
                    }
                    if m.entry.is_message() && failed(3) {
                        return Ok(AppendOutcome::NotMember);
                    }
                    if m.entry.is_message() && (4..codes.len()).any(failed) {
                        return Ok(AppendOutcome::Refused(Refusal::Invalid(
                            "the attachment is not one of yours in this conversation, or is used",
                        )));
                    }
                    // An edit of the deleted target expired since: skip it next time.
                    let first_erasure = 4;
                    for (i, edit) in erasures.iter().enumerate() {
                        if failed(first_erasure + i) {
                            gone_edits.insert(*edit);
                        }
                    }
                    // Lost the seq or the target to a racing writer: read again.
                    if failed(0) || failed(3) || is_transaction_conflict(&codes) || {
                        (first_erasure..codes.len()).any(failed)
                    } {
                        backoff(attempt).await;
                        continue;
                    }
                    return Err(sdk("append entry")(e));
                }
            }
        }
        Err(StoreError::new(
            "append entry",
            MalformedItem("too many concurrent writers".into()),
        ))
    }

    fn counter_update(
        &self,
        m: &NewMessage,
        counter: &Counter,
        seq: Seq,
        timestamp: Millis,
        message_count: u64,
    ) -> TransactWriteItem {
        let update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key(conv_pk(m.conversation_id.as_str()), META)))
            // The time condition holds unless a hint was behind a later entry's time.
            .condition_expression(
                "lastSeq = :prev AND (attribute_not_exists(lastEntryAt) OR lastEntryAt <= :ts)",
            )
            .expression_attribute_values(":seq", n(seq))
            .expression_attribute_values(":ts", n(timestamp))
            .expression_attribute_values(":prev", n(counter.last_seq));
        // Only messages move the conversation's order and its message count.
        let update = if m.entry.is_message() {
            update
                .update_expression(
                    "SET lastSeq = :seq, lastEntryAt = :ts, lastMessageAt = :ts, messageCount = :count",
                )
                .expression_attribute_values(":count", n(message_count))
        } else {
            update.update_expression("SET lastSeq = :seq, lastEntryAt = :ts")
        };
        TransactWriteItem::builder()
            .update(update.build().expect("update has key and expression"))
            .build()
    }

    fn idempotency_put(&self, m: &NewMessage, seq: Seq) -> TransactWriteItem {
        let mut idem = key(
            conv_pk(m.conversation_id.as_str()),
            &idem_sk(m.sender_id.as_str(), &m.client_message_id),
        );
        idem.insert("seq".into(), n(seq));
        if let Some(at) = m.expires_at {
            idem.insert("expiresAt".into(), n(at / 1000));
        }
        put(&self.tables.main, idem, Some("attribute_not_exists(pk)"))
    }

    /// A message moves its sender's positions to it (no receipt for that), with the
    /// message count they now reach.
    fn sender_positions(&self, m: &NewMessage, seq: Seq, message_count: u64) -> TransactWriteItem {
        let cid = m.conversation_id.as_str();
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.tables.main)
                    .set_key(Some(key(conv_pk(cid), &member_sk(m.sender_id.as_str()))))
                    .update_expression(
                        "SET deliveredUpTo = :seq, readUpTo = :seq, readMessages = :count",
                    )
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(":seq", n(seq))
                    .expression_attribute_values(":count", n(message_count))
                    .build()
                    .expect("update has key and expression"),
            )
            .build()
    }
}

/// The writes an edit, delete or reaction adds to its transaction: first the target's
/// (index 3), then the others.
struct TargetActions {
    actions: Vec<TransactWriteItem>,
    /// For a delete: the edits whose content is erased, in action order from index 4.
    erased: Vec<Seq>,
}

impl DynamoStore {
    #[allow(clippy::too_many_arguments)]
    async fn target_writes(
        &self,
        m: &NewMessage,
        entry: &Entry,
        target: &Item,
        seq: Seq,
        timestamp: Millis,
        reacted: bool,
        gone_edits: &HashSet<Seq>,
    ) -> StoreResult<TargetActions> {
        let cid = m.conversation_id.as_str();
        let target_seq: Seq = get_n(target, "seq")?;
        let mut write = TargetWrite::new();
        let mut actions = Vec::new();
        let mut erased = Vec::new();
        match entry {
            Entry::Message { .. } | Entry::System(_) => {
                unreachable!("messages and system entries change no target")
            }
            Entry::Edit { content, .. } => {
                let content = content.as_ref().expect("a client's edit has content");
                let edits: u32 = opt_n(target, "edits")?.unwrap_or(0);
                write.set("content = :c", ":c", content_value(content));
                write.set("editedAt = :ts", ":ts", n(timestamp));
                write.set("edits = :edits", ":edits", n(edits + 1));
                write.set(
                    "editSeqs = list_append(if_not_exists(editSeqs, :none), :this)",
                    ":this",
                    AttributeValue::L(vec![n(seq)]),
                );
                write.values.push((":none", AttributeValue::L(Vec::new())));
            }
            Entry::Delete { .. } => {
                // Deleting twice changes nothing (the first deleter stays).
                if !target.contains_key("deletedBy") {
                    write.set("deletedBy = :by", ":by", s(m.sender_id.as_str()));
                    write.remove = vec!["content", "editedAt", "reactions"];
                    let edits: Vec<Seq> = match target.get("editSeqs") {
                        Some(AttributeValue::L(list)) => list
                            .iter()
                            .filter_map(|v| v.as_n().ok()?.parse().ok())
                            .collect(),
                        _ => Vec::new(),
                    };
                    for edit in edits.into_iter().filter(|e| !gone_edits.contains(e)) {
                        erased.push(edit);
                        actions.push(
                            TransactWriteItem::builder()
                                .update(
                                    Update::builder()
                                        .table_name(&self.tables.messages)
                                        .set_key(Some(entry_key(cid, edit)))
                                        .update_expression("REMOVE content")
                                        .condition_expression("attribute_exists(seq)")
                                        .build()
                                        .expect("update has key and expression"),
                                )
                                .build(),
                        );
                    }
                }
            }
            Entry::Reaction { emoji, removed, .. } => {
                let sender = &m.sender_id;
                let mut summaries: Summaries = summaries_of(target)?;
                let changes = *removed == reacted;
                if changes {
                    let pk = conv_pk(cid);
                    let ru = key(
                        pk.clone(),
                        &user_reaction_sk(sender.as_str(), target_seq, emoji),
                    );
                    let rt = key(pk, &reactor_sk(target_seq, emoji, sender.as_str()));
                    if *removed {
                        let sum = summaries.entry(emoji.clone()).or_insert(Summary {
                            count: 1,
                            first: Vec::new(),
                        });
                        let others = if sum.shows(sender) {
                            self.reactor_items(cid, target_seq, emoji, None, None)
                                .await?
                        } else {
                            Vec::new()
                        };
                        sum.remove(sender, &others);
                        for k in [ru, rt] {
                            actions.push(self.main_delete(k));
                        }
                    } else {
                        summaries
                            .entry(emoji.clone())
                            .or_insert(Summary {
                                count: 0,
                                first: Vec::new(),
                            })
                            .add(sender, seq);
                        let mut ru = ru;
                        ru.insert("targetSeq".into(), n(target_seq));
                        ru.insert("emoji".into(), s(emoji));
                        let mut rt = rt;
                        rt.insert("user".into(), s(sender.as_str()));
                        rt.insert("emoji".into(), s(emoji));
                        rt.insert("at".into(), n(seq));
                        for mut item in [ru, rt] {
                            if let Some(at) = m.expires_at {
                                item.insert("expiresAt".into(), n(at / 1000));
                            }
                            actions.push(put(&self.tables.main, item, None));
                        }
                    }
                    match summaries_value(&summaries) {
                        Some(v) => write.set("reactions = :r", ":r", v),
                        None => write.remove = vec!["reactions"],
                    }
                }
            }
        }
        let (condition, rev) = rev_condition(target)?;
        let first = if write.set.is_empty() && write.remove.is_empty() {
            // Changes nothing, but only as long as the target is as read.
            let mut check = ConditionCheck::builder()
                .table_name(&self.tables.messages)
                .set_key(Some(entry_key(cid, target_seq)))
                .condition_expression(condition);
            if let Some(rev) = rev {
                check = check.expression_attribute_values(":rev", n(rev));
            }
            TransactWriteItem::builder()
                .condition_check(check.build().expect("check has key and condition"))
                .build()
        } else {
            write.set("rev = :next", ":next", n(rev.unwrap_or(0) + 1));
            let mut expr = format!("SET {}", write.set.join(", "));
            if !write.remove.is_empty() {
                expr.push_str(&format!(" REMOVE {}", write.remove.join(", ")));
            }
            let mut update = Update::builder()
                .table_name(&self.tables.messages)
                .set_key(Some(entry_key(cid, target_seq)))
                .update_expression(expr)
                .condition_expression(condition);
            if let Some(rev) = rev {
                update = update.expression_attribute_values(":rev", n(rev));
            }
            for (name, value) in write.values {
                update = update.expression_attribute_values(name, value);
            }
            TransactWriteItem::builder()
                .update(update.build().expect("update has key and expression"))
                .build()
        };
        actions.insert(0, first);
        Ok(TargetActions { actions, erased })
    }

    fn main_delete(&self, key: Item) -> TransactWriteItem {
        TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(&self.tables.main)
                    .set_key(Some(key))
                    .build()
                    .expect("delete has key"),
            )
            .build()
    }
}
