//! The item codec: keys, attribute getters, and records to items and back.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use chat_shared::StoreError;
use chat_shared::ids::{ConversationId, DeviceId, Millis, Seq, UserId};
use chat_shared::ports::{
    ConnectionRecord, ConversationKind, ConversationRecord, DeviceRecord, MemberRecord,
    MessageRecord, NewMessage, Platform, Role,
};
use chat_shared::protocol::Content;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// An item that does not have the shape this adapter writes.
#[derive(Debug, thiserror::Error)]
#[error("malformed item: {0}")]
pub struct MalformedItem(pub(crate) String);

pub(crate) fn malformed(what: String) -> StoreError {
    StoreError::new("decode item", MalformedItem(what))
}

pub(crate) fn conv_pk(id: &str) -> String {
    format!("c#{id}")
}

pub(crate) const META: &str = "#meta";

pub(crate) fn member_sk(user: &str) -> String {
    format!("m#{user}")
}

pub(crate) fn idem_sk(sender: &str, cmid: &str) -> String {
    format!("i#{sender}#{cmid}")
}

pub(crate) fn user_pk(user: &str) -> String {
    format!("u#{user}")
}

pub(crate) const USER_SK: &str = "#user";

pub(crate) fn token_pk(platform: Platform, token: &str) -> String {
    format!("t#{}#{token}", platform.as_str())
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(malformed(format!("missing string {name}"))),
    }
}

pub(crate) fn opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

pub(crate) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    opt_n(item, name)?.ok_or_else(|| malformed(format!("missing number {name}")))
}

pub(crate) fn opt_n<T: std::str::FromStr>(
    item: &Item,
    name: &str,
) -> Result<Option<T>, StoreError> {
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

pub(crate) fn get_map<'a>(item: &'a Item, name: &str) -> Option<&'a Item> {
    match item.get(name) {
        Some(AttributeValue::M(m)) => Some(m),
        _ => None,
    }
}

pub(crate) fn conversation_from(item: &Item) -> Result<ConversationRecord, StoreError> {
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

pub(crate) fn member_from(item: &Item) -> Result<MemberRecord, StoreError> {
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

pub(crate) fn member_item(
    conversation: &str,
    user: &str,
    role: Role,
    now: Millis,
    last_seq: Seq,
) -> Item {
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

pub(crate) fn message_item(m: &NewMessage, seq: Seq, timestamp: Millis) -> Item {
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

pub(crate) fn connection_entry(c: &ConnectionRecord) -> AttributeValue {
    let mut m = HashMap::from([
        ("c".to_owned(), n(c.connected_at)),
        ("f".to_owned(), n(c.last_frame_at)),
        ("x".to_owned(), n(c.token_expires_at)),
    ]);
    if let Some(d) = &c.device_id {
        m.insert("d".into(), s(d.as_str()));
    }
    AttributeValue::M(m)
}

pub(crate) fn connection_from(
    id: &str,
    user: &UserId,
    entry: &Item,
) -> Result<ConnectionRecord, StoreError> {
    Ok(ConnectionRecord {
        connection_id: id.to_owned(),
        user_id: user.clone(),
        device_id: opt_s(entry, "d")
            .map(|d| DeviceId::parse(d).map_err(|e| malformed(e.0)))
            .transpose()?,
        connected_at: get_n(entry, "c")?,
        last_frame_at: get_n(entry, "f")?,
        // Entries written before tokens' expiry was kept never expire.
        token_expires_at: opt_n(entry, "x")?.unwrap_or(Millis::MAX),
    })
}

pub(crate) fn device_entry(d: &DeviceRecord) -> AttributeValue {
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

pub(crate) fn device_from(
    user: &UserId,
    id: &str,
    entry: &Item,
) -> Result<DeviceRecord, StoreError> {
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
