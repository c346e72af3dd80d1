//! The DynamoDB adapter of the [`Store`] port. Table layout and access patterns: see
//! [`crate::tables`].
//!
//! A send is one `TransactWriteItems`: advance the conversation's `lastSeq` from n-1 to n
//! (conditional), put message n, put the idempotency record, move the sender's positions
//! (conditional on membership). Two racing senders cannot both win n, a retry finds its
//! idempotency record, and since every message of a conversation shares a partition key,
//! commit order = seq order = stream order for the fan-out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, PutRequest, ReturnValue, TransactWriteItem,
    Update, WriteRequest,
};
use chat_shared::StoreError;
use chat_shared::domain::advance_positions;
use chat_shared::ids::{ConversationId, DeviceId, Millis, Seq, UserId};
use chat_shared::ports::{
    AddMembersOutcome, AppendOutcome, ConnectionRecord, ConversationCursor, ConversationKind,
    ConversationRecord, DeviceRecord, MemberRecord, MessageQuery, MessageRecord, NewConversation,
    NewMessage, Platform, ReceiptUpdate, RemovedMember, Role, Store, StoreResult,
};
use chat_shared::protocol::{Content, Positions};

use crate::tables::TableNames;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// API Gateway closes connections after 2 h: connection items expire a little later.
const CONNECTION_TTL_SECS: i64 = 2 * 3600 + 600;
/// Rate-window items outlive their window by this much.
const RATE_WINDOW_TTL_SECS: i64 = 180;
/// The record that a message's pushes were sent outlives any stream redelivery (24 h
/// retention) by a day.
const PUSH_CLAIM_TTL_SECS: i64 = 2 * 86_400;
/// `TransactWriteItems` takes at most 100 actions.
const TRANSACTION_MAX: usize = 100;
/// How often a conditional write lost to a racing writer is retried.
const MAX_ATTEMPTS: u32 = 12;

/// The store over DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
}

/// An item that does not have the shape this adapter writes.
#[derive(Debug, thiserror::Error)]
#[error("malformed item: {0}")]
pub struct MalformedItem(String);

fn sdk<E: std::error::Error + Send + Sync + 'static>(
    context: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::new(context, e)
}

fn malformed(what: String) -> StoreError {
    StoreError::new("decode item", MalformedItem(what))
}

// ---------------------------------------------------------------- keys and attributes

fn conv_pk(id: &str) -> String {
    format!("c#{id}")
}
const META: &str = "#meta";
fn member_sk(user: &str) -> String {
    format!("m#{user}")
}
fn idem_sk(sender: &str, cmid: &str) -> String {
    format!("i#{sender}#{cmid}")
}
fn user_pk(user: &str) -> String {
    format!("u#{user}")
}
const USER_SK: &str = "#user";
fn token_pk(platform: Platform, token: &str) -> String {
    format!("t#{}#{token}", platform.as_str())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(malformed(format!("missing string {name}"))),
    }
}
fn opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}
fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    opt_n(item, name)?.ok_or_else(|| malformed(format!("missing number {name}")))
}
fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| malformed(format!("bad number {name}"))),
        None | Some(AttributeValue::Null(_)) => Ok(None),
        _ => Err(malformed(format!("{name} is not a number"))),
    }
}
fn get_bool(item: &Item, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}
fn get_map<'a>(item: &'a Item, name: &str) -> Option<&'a Item> {
    match item.get(name) {
        Some(AttributeValue::M(m)) => Some(m),
        _ => None,
    }
}

fn conversation_from(item: &Item) -> Result<ConversationRecord, StoreError> {
    let pk = get_s(item, "pk")?;
    let id = pk
        .strip_prefix("c#")
        .ok_or_else(|| malformed(pk.to_owned()))?;
    Ok(ConversationRecord {
        id: ConversationId::parse(id).map_err(|e| malformed(e.0))?,
        kind: ConversationKind::parse(get_s(item, "kind")?)
            .ok_or_else(|| malformed("kind".into()))?,
        name: opt_s(item, "name"),
        created_at: get_n(item, "createdAt")?,
        last_seq: get_n(item, "lastSeq")?,
        last_message_at: get_n(item, "lastMessageAt")?,
        member_count: get_n(item, "memberCount")?,
    })
}

fn member_from(item: &Item) -> Result<MemberRecord, StoreError> {
    let pk = get_s(item, "pk")?;
    let id = pk
        .strip_prefix("c#")
        .ok_or_else(|| malformed(pk.to_owned()))?;
    Ok(MemberRecord {
        conversation_id: ConversationId::parse(id).map_err(|e| malformed(e.0))?,
        user_id: UserId::parse(get_s(item, "memberUser")?).map_err(|e| malformed(e.0))?,
        role: Role::parse(get_s(item, "role")?).ok_or_else(|| malformed("role".into()))?,
        joined_at: get_n(item, "joinedAt")?,
        delivered_up_to: get_n(item, "deliveredUpTo")?,
        read_up_to: get_n(item, "readUpTo")?,
        muted: get_bool(item, "muted"),
    })
}

fn member_item(conversation: &str, user: &str, role: Role, now: Millis, last_seq: Seq) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(conv_pk(conversation))),
        ("sk".to_owned(), s(member_sk(user))),
        ("memberUser".to_owned(), s(user)),
        ("role".to_owned(), s(role.as_str())),
        ("joinedAt".to_owned(), n(now)),
        ("deliveredUpTo".to_owned(), n(last_seq)),
        ("readUpTo".to_owned(), n(last_seq)),
        ("muted".to_owned(), AttributeValue::Bool(false)),
    ])
}

/// Decodes a message item (also the `NEW_IMAGE` of a stream record).
pub fn message_from(item: &Item) -> Result<MessageRecord, StoreError> {
    let content: Content = serde_json::from_str(get_s(item, "content")?)
        .map_err(|e| malformed(format!("content: {e}")))?;
    let seq = get_n(item, "seq")?;
    if seq == 0 {
        return Err(malformed("seq: messages start at 1".to_owned()));
    }
    Ok(MessageRecord {
        conversation_id: ConversationId::parse(get_s(item, "conversationId")?)
            .map_err(|e| malformed(e.0))?,
        seq,
        message_id: get_s(item, "messageId")?.to_owned(),
        sender_id: UserId::parse(get_s(item, "senderId")?).map_err(|e| malformed(e.0))?,
        client_message_id: get_s(item, "clientMessageId")?.to_owned(),
        content,
        reply_to: opt_n(item, "replyTo")?,
        timestamp: get_n(item, "timestamp")?,
        origin_connection: opt_s(item, "originConnection"),
    })
}

fn message_item(m: &NewMessage, seq: Seq, timestamp: Millis) -> Item {
    let mut item = HashMap::from([
        ("conversationId".to_owned(), s(m.conversation_id.as_str())),
        ("seq".to_owned(), n(seq)),
        ("messageId".to_owned(), s(&m.message_id)),
        ("senderId".to_owned(), s(m.sender_id.as_str())),
        ("clientMessageId".to_owned(), s(&m.client_message_id)),
        (
            "content".to_owned(),
            s(serde_json::to_string(&m.content).expect("content serializes")),
        ),
        ("timestamp".to_owned(), n(timestamp)),
    ]);
    if let Some(r) = m.reply_to {
        item.insert("replyTo".into(), n(r));
    }
    if let Some(c) = &m.origin_connection {
        item.insert("originConnection".into(), s(c));
    }
    if let Some(at) = m.expires_at {
        item.insert("expiresAt".into(), n(at / 1000));
    }
    item
}

fn connection_entry(c: &ConnectionRecord) -> AttributeValue {
    let mut m = HashMap::from([
        ("c".to_owned(), n(c.connected_at)),
        ("f".to_owned(), n(c.last_frame_at)),
    ]);
    if let Some(d) = &c.device_id {
        m.insert("d".into(), s(d.as_str()));
    }
    AttributeValue::M(m)
}

fn connection_from(id: &str, user: &UserId, entry: &Item) -> Result<ConnectionRecord, StoreError> {
    Ok(ConnectionRecord {
        connection_id: id.to_owned(),
        user_id: user.clone(),
        device_id: opt_s(entry, "d")
            .map(|d| DeviceId::parse(d).map_err(|e| malformed(e.0)))
            .transpose()?,
        connected_at: get_n(entry, "c")?,
        last_frame_at: get_n(entry, "f")?,
    })
}

fn device_entry(d: &DeviceRecord) -> AttributeValue {
    let mut m = HashMap::from([
        ("p".to_owned(), s(d.platform.as_str())),
        ("t".to_owned(), s(&d.token)),
        ("u".to_owned(), n(d.updated_at)),
    ]);
    if let Some(e) = &d.endpoint {
        m.insert("e".into(), s(e));
    }
    AttributeValue::M(m)
}

fn device_from(user: &UserId, id: &str, entry: &Item) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        user_id: user.clone(),
        device_id: DeviceId::parse(id).map_err(|e| malformed(e.0))?,
        platform: Platform::parse(get_s(entry, "p")?)
            .ok_or_else(|| malformed("platform".into()))?,
        token: get_s(entry, "t")?.to_owned(),
        endpoint: opt_s(entry, "e"),
        updated_at: get_n(entry, "u")?,
    })
}

/// `Some(output)` when a conditional write went through, `None` when its condition did
/// not hold; other failures are errors.
fn condition_held<O, E>(
    result: Result<O, SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
    context: &'static str,
) -> StoreResult<Option<O>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error().and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(None)
        }
        Err(e) => Err(StoreError::new(context, e)),
    }
}

fn cancellation_codes(
    e: &SdkError<TransactWriteItemsError, impl std::fmt::Debug>,
) -> Option<Vec<String>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(c) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

fn is_transaction_conflict(codes: &[String]) -> bool {
    codes
        .iter()
        .any(|c| c == "TransactionConflict" || c == "ThrottlingError")
}

async fn backoff(attempt: u32) {
    let base = 5u64 << attempt.min(6);
    let jitter = rand::random::<u64>() % base;
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

fn put(table: &str, item: Item, condition: Option<&str>) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_owned))
                .build()
                .expect("put has table and item"),
        )
        .build()
}

impl DynamoStore {
    /// A store over `client` using `tables`.
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self { client, tables }
    }

    /// The SDK client (shared with other adapters).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get(&self, table: &str, key: Item) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("get item"))?;
        Ok(out.item)
    }

    /// Reads many items of the main table (any order, each key once), retrying
    /// unprocessed keys. Eventually consistent reads cost half: they serve listings,
    /// badges and connection lookups, where a read a moment old is as good.
    async fn batch_get(&self, mut keys: Vec<Item>, consistent: bool) -> StoreResult<Vec<Item>> {
        let mut seen = HashSet::new();
        keys.retain(|k| seen.insert((opt_s(k, "pk"), opt_s(k, "sk"))));
        let mut out = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(consistent)
                    .build()
                    .expect("keys are set"),
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.main, request)
                    .send()
                    .await
                    .map_err(sdk("batch get"))?;
                if let Some(mut items) = resp.responses
                    && let Some(items) = items.remove(&self.tables.main)
                {
                    out.extend(items);
                }
                pending = resp
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.tables.main))
                    .filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    attempt += 1;
                    backoff(attempt).await;
                }
            }
        }
        Ok(out)
    }

    /// Writes items of the main table in batches of 25, retrying unprocessed ones.
    async fn batch_put(&self, items: Vec<Item>) -> StoreResult<()> {
        for chunk in items.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|i| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(i.clone()))
                                .build()
                                .expect("item is set"),
                        )
                        .build()
                })
                .collect();
            let mut attempt = 0;
            while !requests.is_empty() {
                let resp = self
                    .client
                    .batch_write_item()
                    .request_items(&self.tables.main, requests)
                    .send()
                    .await
                    .map_err(sdk("batch write"))?;
                requests = resp
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.tables.main))
                    .unwrap_or_default();
                if !requests.is_empty() {
                    attempt += 1;
                    backoff(attempt).await;
                }
            }
        }
        Ok(())
    }

    /// Every item of a partition of the main table whose sort key lies in `[lo, hi]`.
    async fn query_range(
        &self,
        pk: &str,
        lo: &str,
        hi: &str,
        limit: Option<usize>,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.tables.main)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":lo", s(lo))
                .expression_attribute_values(":hi", s(hi))
                .consistent_read(true)
                .set_limit(limit.map(|l| (l - out.len()).min(1000) as i32))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("query"))?;
            out.extend(resp.items.unwrap_or_default());
            start = resp.last_evaluated_key;
            if start.is_none() || limit.is_some_and(|l| out.len() >= l) {
                return Ok(out);
            }
        }
    }

    /// The member items of a user (GSI `byUser`).
    async fn user_memberships(&self, user: &str) -> StoreResult<Vec<Item>> {
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
    async fn conversations_of(
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

    async fn user_items(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, Item)>> {
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

    /// Sets `map_name.entry = value` on a user item, creating the map when missing.
    async fn set_user_map_entry(
        &self,
        user: &str,
        map_name: &str,
        entry: &str,
        value: AttributeValue,
    ) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(user_pk(user), USER_SK)))
            .update_expression("SET #m = if_not_exists(#m, :empty)")
            .expression_attribute_names("#m", map_name)
            .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()))
            .send()
            .await
            .map_err(sdk("init user map"))?;
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
    async fn remove_user_map_entry(
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
                member_item(id, u.as_str(), role, new.now, 0)
            })
            .collect();
        let room = TRANSACTION_MAX - actions.len();
        let (first, rest) = members.split_at(members.len().min(room));
        actions.extend(
            first
                .iter()
                .map(|m| put(&self.tables.main, m.clone(), None)),
        );
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if cancellation_codes(&e).is_some() => return Ok(None),
            Err(e) => return Err(sdk("create conversation")(e)),
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
            member_count: new.members.len() as u64,
        }))
    }
}

#[async_trait]
impl Store for DynamoStore {
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
        let mut rows = self.conversations_of(user.as_str()).await?;
        rows.sort_by(|(a, _), (b, _)| {
            b.last_message_at
                .cmp(&a.last_message_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        if let Some(c) = after {
            rows.retain(|(r, _)| {
                r.last_message_at < c.last_message_at
                    || (r.last_message_at == c.last_message_at && r.id > c.conversation_id)
            });
        }
        rows.truncate(limit as usize);
        Ok(rows)
    }

    async fn add_members(
        &self,
        conversation: &ConversationId,
        users: &[UserId],
        now: Millis,
        max: u64,
    ) -> StoreResult<AddMembersOutcome> {
        let pk = conv_pk(conversation.as_str());
        for attempt in 0..MAX_ATTEMPTS {
            let Some(meta) = self.get(&self.tables.main, key(pk.clone(), META)).await? else {
                return Ok(AddMembersOutcome::Added(Vec::new()));
            };
            let conv = conversation_from(&meta)?;
            let existing: HashSet<String> = self
                .batch_get(
                    users
                        .iter()
                        .map(|u| key(pk.clone(), &member_sk(u.as_str())))
                        .collect(),
                    true,
                )
                .await?
                .iter()
                .filter_map(|i| opt_s(i, "memberUser"))
                .collect();
            let mut fresh: Vec<UserId> = Vec::new();
            for u in users {
                if !existing.contains(u.as_str()) && !fresh.contains(u) {
                    fresh.push(u.clone());
                }
            }
            if conv.member_count + fresh.len() as u64 > max {
                return Ok(AddMembersOutcome::OverCap);
            }
            if fresh.is_empty() {
                return Ok(AddMembersOutcome::Added(fresh));
            }
            let mut raced = false;
            for chunk in fresh.chunks(TRANSACTION_MAX - 1) {
                let k = chunk.len() as u64;
                let mut actions = vec![
                    TransactWriteItem::builder()
                        .update(
                            Update::builder()
                                .table_name(&self.tables.main)
                                .set_key(Some(key(pk.clone(), META)))
                                .update_expression("ADD memberCount :k")
                                .condition_expression("memberCount <= :room")
                                .expression_attribute_values(":k", n(k))
                                .expression_attribute_values(":room", n(max.saturating_sub(k)))
                                .build()
                                .expect("update has key and expression"),
                        )
                        .build(),
                ];
                actions.extend(chunk.iter().map(|u| {
                    put(
                        &self.tables.main,
                        member_item(
                            conversation.as_str(),
                            u.as_str(),
                            Role::Member,
                            now,
                            conv.last_seq,
                        ),
                        Some("attribute_not_exists(pk)"),
                    )
                }));
                match self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(actions))
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) => match cancellation_codes(&e) {
                        Some(codes)
                            if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") =>
                        {
                            return Ok(AddMembersOutcome::OverCap);
                        }
                        Some(_) => {
                            raced = true;
                            break;
                        }
                        None => return Err(sdk("add members")(e)),
                    },
                }
            }
            if !raced {
                return Ok(AddMembersOutcome::Added(fresh));
            }
            backoff(attempt).await;
        }
        Err(StoreError::new(
            "add members",
            MalformedItem("too many concurrent changes".into()),
        ))
    }

    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> StoreResult<Option<RemovedMember>> {
        let pk = conv_pk(conversation.as_str());
        let Some(item) = self
            .get(
                &self.tables.main,
                key(pk.clone(), &member_sk(user.as_str())),
            )
            .await?
        else {
            return Ok(None);
        };
        let was_admin = member_from(&item)?.role == Role::Admin;
        let actions = vec![
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.tables.main)
                        .set_key(Some(key(pk.clone(), &member_sk(user.as_str()))))
                        .condition_expression("attribute_exists(pk)")
                        .build()
                        .expect("delete has key"),
                )
                .build(),
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.tables.main)
                        .set_key(Some(key(pk.clone(), META)))
                        .update_expression("ADD memberCount :minus")
                        .expression_attribute_values(":minus", n(-1))
                        .build()
                        .expect("update has key and expression"),
                )
                .build(),
        ];
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if cancellation_codes(&e).is_some() => return Ok(None),
            Err(e) => return Err(sdk("remove member")(e)),
        }
        let mut promoted = None;
        if was_admin {
            let members = self.members(conversation, None, u32::MAX).await?;
            if !members.iter().any(|m| m.role == Role::Admin)
                && let Some(next) = members
                    .iter()
                    .min_by_key(|m| (m.joined_at, m.user_id.clone()))
            {
                self.client
                    .update_item()
                    .table_name(&self.tables.main)
                    .set_key(Some(key(pk.clone(), &member_sk(next.user_id.as_str()))))
                    .update_expression("SET #r = :admin")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_names("#r", "role")
                    .expression_attribute_values(":admin", s("admin"))
                    .send()
                    .await
                    .map_err(sdk("promote admin"))?;
                promoted = Some(next.user_id.clone());
            }
        }
        Ok(Some(RemovedMember { promoted }))
    }

    async fn set_muted(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        muted: bool,
    ) -> StoreResult<bool> {
        let resp = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(
                conv_pk(conversation.as_str()),
                &member_sk(user.as_str()),
            )))
            .update_expression("SET muted = :m")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":m", AttributeValue::Bool(muted))
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

    async fn append_message(&self, m: &NewMessage) -> StoreResult<AppendOutcome> {
        let cid = m.conversation_id.as_str();
        let sender = m.sender_id.as_str();
        // No idempotency read up front: the transaction's condition on the idempotency
        // record detects a duplicate, and then (only then) the original is read.
        // The caller's view of the counter saves a read; a stale one fails the condition
        // and the next attempt reads the counter.
        let mut hint = m.hint;
        for attempt in 0..MAX_ATTEMPTS {
            let (last_seq, last_message_at) = match hint.take() {
                Some(h) => h,
                None => {
                    let Some(meta) = self.get(&self.tables.main, key(conv_pk(cid), META)).await?
                    else {
                        return Ok(AppendOutcome::NotMember);
                    };
                    let conv = conversation_from(&meta)?;
                    (conv.last_seq, conv.last_message_at)
                }
            };
            let seq = last_seq + 1;
            let timestamp = m.now.max(last_message_at);
            let mut idem = key(conv_pk(cid), &idem_sk(sender, &m.client_message_id));
            idem.insert("seq".into(), n(seq));
            if let Some(at) = m.expires_at {
                idem.insert("expiresAt".into(), n(at / 1000));
            }
            let actions = vec![
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.tables.main)
                            .set_key(Some(key(conv_pk(cid), META)))
                            .update_expression("SET lastSeq = :seq, lastMessageAt = :ts")
                            .condition_expression("lastSeq = :prev")
                            .expression_attribute_values(":seq", n(seq))
                            .expression_attribute_values(":ts", n(timestamp))
                            .expression_attribute_values(":prev", n(last_seq))
                            .build()
                            .expect("update has key and expression"),
                    )
                    .build(),
                put(
                    &self.tables.messages,
                    message_item(m, seq, timestamp),
                    Some("attribute_not_exists(conversationId)"),
                ),
                put(&self.tables.main, idem, Some("attribute_not_exists(pk)")),
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.tables.main)
                            .set_key(Some(key(conv_pk(cid), &member_sk(sender))))
                            .update_expression("SET deliveredUpTo = :seq, readUpTo = :seq")
                            .condition_expression("attribute_exists(pk)")
                            .expression_attribute_values(":seq", n(seq))
                            .build()
                            .expect("update has key and expression"),
                    )
                    .build(),
            ];
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await
            {
                Ok(_) => {
                    let item = message_item(m, seq, timestamp);
                    return Ok(AppendOutcome::Stored(message_from(&item)?));
                }
                Err(e) => {
                    let Some(codes) = cancellation_codes(&e) else {
                        return Err(sdk("append message")(e));
                    };
                    let failed =
                        |i: usize| codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
                    if failed(3) {
                        return Ok(AppendOutcome::NotMember);
                    }
                    if failed(2)
                        && let Some(original) = self
                            .find_by_client_id(
                                &m.conversation_id,
                                &m.sender_id,
                                &m.client_message_id,
                            )
                            .await?
                    {
                        return Ok(AppendOutcome::Duplicate(original));
                    }
                    // Lost the seq to a racing sender (or a transaction conflict): retry.
                    if failed(0) || is_transaction_conflict(&codes) {
                        backoff(attempt).await;
                        continue;
                    }
                    return Err(sdk("append message")(e));
                }
            }
        }
        Err(StoreError::new(
            "append message",
            MalformedItem("too many concurrent senders".into()),
        ))
    }

    async fn find_by_client_id(
        &self,
        conversation: &ConversationId,
        sender: &UserId,
        client_message_id: &str,
    ) -> StoreResult<Option<MessageRecord>> {
        let cid = conversation.as_str();
        let Some(idem) = self
            .get(
                &self.tables.main,
                key(conv_pk(cid), &idem_sk(sender.as_str(), client_message_id)),
            )
            .await?
        else {
            return Ok(None);
        };
        let seq: Seq = get_n(&idem, "seq")?;
        let message_key = HashMap::from([
            ("conversationId".to_owned(), s(cid)),
            ("seq".to_owned(), n(seq)),
        ]);
        self.get(&self.tables.messages, message_key)
            .await?
            .map(|i| message_from(&i))
            .transpose()
    }

    async fn messages(
        &self,
        conversation: &ConversationId,
        q: MessageQuery,
    ) -> StoreResult<(Vec<MessageRecord>, bool)> {
        let lo = q.after.map_or(1, |a| a.saturating_add(1));
        let hi = q.before.map_or(i64::MAX as u64, |b| b.saturating_sub(1));
        if lo > hi || q.limit == 0 {
            return Ok((Vec::new(), false));
        }
        let want = q.limit as usize + 1;
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .key_condition_expression("conversationId = :c AND seq BETWEEN :lo AND :hi")
                .expression_attribute_values(":c", s(conversation.as_str()))
                .expression_attribute_values(":lo", n(lo))
                .expression_attribute_values(":hi", n(hi))
                .scan_index_forward(!q.newest)
                .consistent_read(true)
                .limit((want - out.len()).min(1000) as i32)
                .set_exclusive_start_key(start);
            if q.min_timestamp > i64::MIN {
                req = req
                    .filter_expression("#ts >= :min")
                    .expression_attribute_names("#ts", "timestamp")
                    .expression_attribute_values(":min", n(q.min_timestamp));
            }
            let resp = req.send().await.map_err(sdk("query messages"))?;
            for item in resp.items.unwrap_or_default() {
                out.push(message_from(&item)?);
            }
            start = resp.last_evaluated_key;
            if start.is_none() || out.len() >= want {
                break;
            }
        }
        let more = out.len() > q.limit as usize;
        out.truncate(q.limit as usize);
        if q.newest {
            out.reverse();
        }
        Ok((out, more))
    }

    async fn first_retained_seq(
        &self,
        conversation: &ConversationId,
        min_timestamp: Millis,
    ) -> StoreResult<Option<Seq>> {
        let (messages, _) = self
            .messages(
                conversation,
                MessageQuery {
                    after: None,
                    before: None,
                    limit: 1,
                    newest: false,
                    min_timestamp,
                },
            )
            .await?;
        Ok(messages.first().map(|m| m.seq))
    }

    async fn update_receipts(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        delivered_up_to: Option<Seq>,
        read_up_to: Option<Seq>,
    ) -> StoreResult<Option<ReceiptUpdate>> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some((conv, me)) = self.membership(conversation, user).await? else {
                return Ok(None);
            };
            let before = (me.delivered_up_to, me.read_up_to);
            let after = advance_positions(before, conv.last_seq, delivered_up_to, read_up_to);
            let update = ReceiptUpdate {
                conversation: conv,
                positions: Positions {
                    delivered_up_to: after.0,
                    read_up_to: after.1,
                },
                changed: after != before,
            };
            if !update.changed {
                return Ok(Some(update));
            }
            let resp = self
                .client
                .update_item()
                .table_name(&self.tables.main)
                .set_key(Some(key(
                    conv_pk(conversation.as_str()),
                    &member_sk(user.as_str()),
                )))
                .update_expression("SET deliveredUpTo = :d, readUpTo = :r")
                .condition_expression("deliveredUpTo = :od AND readUpTo = :or")
                .expression_attribute_values(":d", n(after.0))
                .expression_attribute_values(":r", n(after.1))
                .expression_attribute_values(":od", n(before.0))
                .expression_attribute_values(":or", n(before.1))
                .send()
                .await;
            match condition_held(resp, "update receipts")? {
                Some(_) => return Ok(Some(update)),
                None => backoff(attempt).await,
            }
        }
        Err(StoreError::new(
            "update receipts",
            MalformedItem("too many concurrent updates".into()),
        ))
    }

    async fn total_unread(&self, user: &UserId) -> StoreResult<u64> {
        Ok(self
            .conversations_of(user.as_str())
            .await?
            .iter()
            .map(|(c, m)| c.last_seq.saturating_sub(m.read_up_to))
            .sum())
    }

    async fn pushes_sent(&self, conversation: &ConversationId, seq: Seq) -> StoreResult<bool> {
        let sent = key(conv_pk(conversation.as_str()), &format!("p#{seq}"));
        Ok(self.get(&self.tables.main, sent).await?.is_some())
    }

    async fn record_pushes_sent(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        now: Millis,
    ) -> StoreResult<()> {
        let mut item = key(conv_pk(conversation.as_str()), &format!("p#{seq}"));
        item.insert("expiresAt".into(), n(now / 1000 + PUSH_CLAIM_TTL_SECS));
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk("record pushes sent"))?;
        Ok(())
    }

    /// DynamoDB deletes expired items itself (TTL on `expiresAt`); reads filter them out
    /// meanwhile. Nothing to do here.
    async fn expire_messages(&self, _before: Millis) -> StoreResult<u64> {
        Ok(0)
    }

    async fn typing_permit(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        now: Millis,
        window_ms: i64,
        max: u32,
    ) -> StoreResult<Option<bool>> {
        let member_key = key(conv_pk(conversation.as_str()), &member_sk(user.as_str()));
        // A new window, when the last one is over...
        let fresh = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(member_key.clone()))
            .update_expression("SET typingWindow = :now, typingCount = :one")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(typingWindow) OR typingWindow <= :cut)")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cut", n(now - window_ms))
            .send()
            .await;
        if condition_held(fresh, "typing throttle")?.is_some() {
            return Ok(Some(true));
        }
        // ...else one more in the current window, while under the cap.
        let more = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(member_key.clone()))
            .update_expression("ADD typingCount :one")
            .condition_expression(
                "attribute_exists(pk) AND typingWindow > :cut AND typingCount < :max",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cut", n(now - window_ms))
            .expression_attribute_values(":max", n(max))
            .send()
            .await;
        match condition_held(more, "typing throttle")? {
            Some(_) => Ok(Some(true)),
            None => Ok(self
                .get(&self.tables.main, member_key)
                .await?
                .map(|_| false)),
        }
    }

    async fn count_send(&self, user: &UserId, window_start: Millis) -> StoreResult<u64> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key(
                user_pk(user.as_str()),
                &format!("rate#{window_start}"),
            )))
            .update_expression("ADD #c :one SET expiresAt = :exp")
            .expression_attribute_names("#c", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", n(window_start / 1000 + RATE_WINDOW_TTL_SECS))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk("count send"))?;
        get_n(&out.attributes.unwrap_or_default(), "count")
    }

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
        self.set_user_map_entry(
            c.user_id.as_str(),
            "conns",
            &c.connection_id,
            connection_entry(c),
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

    async fn put_device(&self, d: &DeviceRecord) -> StoreResult<()> {
        let claim_key = key(token_pk(d.platform, &d.token), "#token");
        if let Some(claim) = self.get(&self.tables.main, claim_key.clone()).await? {
            let (owner, device) = (get_s(&claim, "userId")?, get_s(&claim, "deviceId")?);
            if owner != d.user_id.as_str() || device != d.device_id.as_str() {
                self.remove_user_map_entry(owner, "devs", device).await?;
            }
        }
        let mut claim = claim_key;
        claim.insert("userId".into(), s(d.user_id.as_str()));
        claim.insert("deviceId".into(), s(d.device_id.as_str()));
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(claim))
            .send()
            .await
            .map_err(sdk("claim push token"))?;
        self.set_user_map_entry(
            d.user_id.as_str(),
            "devs",
            d.device_id.as_str(),
            device_entry(d),
        )
        .await
    }

    async fn delete_device(&self, user: &UserId, device: &DeviceId) -> StoreResult<bool> {
        Ok(self
            .remove_user_map_entry(user.as_str(), "devs", device.as_str())
            .await?
            .is_some())
    }

    async fn devices_of(&self, users: &[UserId]) -> StoreResult<Vec<DeviceRecord>> {
        let mut out = Vec::new();
        for (user, item) in self.user_items(users).await? {
            if let Some(devs) = get_map(&item, "devs") {
                for (id, entry) in devs {
                    if let AttributeValue::M(entry) = entry {
                        out.push(device_from(&user, id, entry)?);
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.user_id, &a.device_id).cmp(&(&b.user_id, &b.device_id)));
        Ok(out)
    }
}
