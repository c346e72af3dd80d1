//! The item codec: keys, attribute getters, and records to items and back.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use chat_shared::StoreError;
use chat_shared::ids::{AttachmentId, ConversationId, DeviceId, Millis, Seq, UserId};
use chat_shared::ports::{
    ConnectionRecord, ConversationKind, ConversationRecord, DeviceRecord, MUTED_FOREVER,
    MemberRecord, MessageRecord, MessageState, Platform, Posted, Role, StoreResult,
};
use chat_shared::protocol::{Content, Entry, EntryKind, SystemChange, SystemEvent};

use super::reactions::summaries_from;

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

pub(crate) fn get_bool(item: &Item, name: &str) -> bool {
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
        // Conversations created before entries had kinds count no message.
        message_count: opt_n(item, "messageCount")?.unwrap_or(0),
        member_count: get_n(item, "memberCount")?,
        avatar: opt_s(item, "avatar")
            .map(AttachmentId::parse)
            .transpose()
            .map_err(|e| malformed(e.0))?,
        posted: posted_from(item)?,
    })
}

/// The direct-delivery mark on the counter item: `postedSeq`, and `unreached` (a string
/// set, absent when empty).
fn posted_from(item: &Item) -> Result<Option<Posted>, StoreError> {
    let Some(seq) = opt_n(item, "postedSeq")? else {
        return Ok(None);
    };
    let unreached = match item.get("unreached") {
        Some(AttributeValue::Ss(users)) => users
            .iter()
            .map(|u| UserId::parse(u).map_err(|e| malformed(e.0)))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(Some(Posted { seq, unreached }))
}

/// The conversation item's counter, as a change of the log reads it before sequencing
/// the next entry.
pub(crate) struct Counter {
    pub(crate) last_seq: Seq,
    /// The newest entry's time: entries' timestamps never decrease.
    pub(crate) last_entry_at: Millis,
    pub(crate) message_count: u64,
    pub(crate) member_count: u64,
}

impl Counter {
    pub(crate) fn from(meta: &Item) -> StoreResult<Self> {
        let last_message_at = get_n(meta, "lastMessageAt")?;
        Ok(Self {
            last_seq: get_n(meta, "lastSeq")?,
            last_entry_at: opt_n(meta, "lastEntryAt")?.unwrap_or(last_message_at),
            message_count: opt_n(meta, "messageCount")?.unwrap_or(0),
            member_count: get_n(meta, "memberCount")?,
        })
    }
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
        read_messages: opt_n(item, "readMessages")?.unwrap_or(0),
        // A mute from before `mutedUntil` (a flag) has no end.
        muted_until: match opt_n(item, "mutedUntil")? {
            Some(until) => until,
            None if get_bool(item, "muted") => MUTED_FOREVER,
            None => 0,
        },
    })
}

/// A new member item: positions at `last_seq`, which the conversation's `message_count`
/// messages reach (none of them unread).
pub(crate) fn member_item(
    conversation: &str,
    user: &str,
    role: Role,
    now: Millis,
    (last_seq, message_count): (Seq, u64),
) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(conv_pk(conversation))),
        ("sk".to_owned(), s(member_sk(user))),
        ("memberUser".to_owned(), s(user)),
        ("role".to_owned(), s(role.as_str())),
        ("joinedAt".to_owned(), n(now)),
        ("deliveredUpTo".to_owned(), n(last_seq)),
        ("readUpTo".to_owned(), n(last_seq)),
        ("readMessages".to_owned(), n(message_count)),
        ("muted".to_owned(), AttributeValue::Bool(false)),
    ])
}

/// The key of the entry at `seq` in the messages table.
pub(crate) fn entry_key(conversation: &str, seq: Seq) -> Item {
    HashMap::from([
        ("conversationId".to_owned(), s(conversation)),
        ("seq".to_owned(), n(seq)),
    ])
}

fn content_from(item: &Item) -> Result<Option<Content>, StoreError> {
    opt_s(item, "content")
        .map(|c| serde_json::from_str(&c).map_err(|e| malformed(format!("content: {e}"))))
        .transpose()
}

pub(crate) fn content_value(content: &Content) -> AttributeValue {
    s(serde_json::to_string(content).expect("content serializes"))
}

/// The kind of an entry item (items written before kinds are messages).
pub(crate) fn kind_of(item: &Item) -> Result<EntryKind, StoreError> {
    match opt_s(item, "kind") {
        None => Ok(EntryKind::Message),
        Some(k) => EntryKind::parse(&k).ok_or_else(|| malformed(format!("kind {k}"))),
    }
}

/// Decodes an entry item (also the `NEW_IMAGE` of a stream record): a message in its
/// current state (edits, delete and the reaction summaries folded in by the writes that
/// made them; `mine` is the reader's, see `messages`).
pub fn message_from(item: &Item) -> Result<MessageRecord, StoreError> {
    let seq = get_n(item, "seq")?;
    if seq == 0 {
        return Err(malformed("seq: entries start at 1".to_owned()));
    }
    let target_seq = || get_n::<Seq>(item, "targetSeq");
    let (entry, state) = match kind_of(item)? {
        EntryKind::Message => {
            let deleted_by = opt_s(item, "deletedBy")
                .map(|u| UserId::parse(u).map_err(|e| malformed(e.0)))
                .transpose()?;
            let state = MessageState {
                edited_at: opt_n(item, "editedAt")?.filter(|_| deleted_by.is_none()),
                reactions: match deleted_by {
                    Some(_) => Vec::new(),
                    None => summaries_from(item)?,
                },
                deleted_by,
            };
            let entry = Entry::Message {
                content: content_from(item)?,
                reply_to: opt_n(item, "replyTo")?,
            };
            (entry, state)
        }
        EntryKind::Edit => (
            Entry::Edit {
                target_seq: target_seq()?,
                content: content_from(item)?,
            },
            MessageState::default(),
        ),
        EntryKind::Delete => (
            Entry::Delete {
                target_seq: target_seq()?,
            },
            MessageState::default(),
        ),
        EntryKind::Reaction => (
            Entry::Reaction {
                target_seq: target_seq()?,
                emoji: get_s(item, "emoji")?.to_owned(),
                removed: get_bool(item, "removed"),
            },
            MessageState::default(),
        ),
        EntryKind::System => (Entry::System(change_from(item)?), MessageState::default()),
    };
    Ok(MessageRecord {
        conversation_id: ConversationId::parse(get_s(item, "conversationId")?)
            .map_err(|e| malformed(e.0))?,
        seq,
        message_id: get_s(item, "messageId")?.to_owned(),
        sender_id: UserId::parse(get_s(item, "senderId")?).map_err(|e| malformed(e.0))?,
        client_message_id: get_s(item, "clientMessageId")?.to_owned(),
        entry,
        timestamp: get_n(item, "timestamp")?,
        origin_connection: opt_s(item, "originConnection"),
        state,
    })
}

/// A `system` entry's attributes: `event`, `userIds` (a list: the order is the
/// change's), `actorId` (absent when the server made it), and `role`, `name`, `avatar`
/// when the event carries them.
fn change_attributes(change: &SystemChange) -> Vec<(String, AttributeValue)> {
    let mut out = vec![
        ("event".to_owned(), s(change.event.as_str())),
        (
            "userIds".to_owned(),
            AttributeValue::L(change.user_ids.iter().map(|u| s(u.as_str())).collect()),
        ),
    ];
    let optional = [
        ("actorId", change.actor.as_ref().map(UserId::as_str)),
        ("role", change.role.as_deref()),
        ("name", change.name.as_deref()),
        ("avatar", change.avatar.as_deref()),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            out.push((name.to_owned(), s(v)));
        }
    }
    out
}

fn change_from(item: &Item) -> Result<SystemChange, StoreError> {
    let user = |u: &str| UserId::parse(u).map_err(|e| malformed(e.0));
    let event = get_s(item, "event")?;
    let user_ids = match item.get("userIds") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| match v {
                AttributeValue::S(u) => user(u),
                _ => Err(malformed("userIds holds a non-string".into())),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(malformed("missing list userIds".into())),
    };
    Ok(SystemChange {
        event: SystemEvent::parse(event).ok_or_else(|| malformed(format!("event {event}")))?,
        user_ids,
        actor: opt_s(item, "actorId").as_deref().map(user).transpose()?,
        role: opt_s(item, "role"),
        name: opt_s(item, "name"),
        avatar: opt_s(item, "avatar"),
    })
}

/// The item of a new entry at `seq`. `message_count` is the number of `message` entries
/// through it (this one included), which a read receipt at this seq reads back.
pub(crate) fn message_item(
    m: &chat_shared::ports::NewMessage,
    seq: Seq,
    timestamp: Millis,
    message_count: u64,
) -> Item {
    let mut item = entry_key(m.conversation_id.as_str(), seq);
    item.extend([
        ("messageId".to_owned(), s(&m.message_id)),
        ("senderId".to_owned(), s(m.sender_id.as_str())),
        ("clientMessageId".to_owned(), s(&m.client_message_id)),
        ("kind".to_owned(), s(m.entry.kind().as_str())),
        ("timestamp".to_owned(), n(timestamp)),
        ("messageCount".to_owned(), n(message_count)),
    ]);
    match &m.entry {
        Entry::Message { content, reply_to } => {
            if let Some(c) = content {
                item.insert("content".into(), content_value(c));
                item.insert("contentType".into(), s(&c.kind));
            }
            if let Some(r) = reply_to {
                item.insert("replyTo".into(), n(r));
            }
            let attachments = super::attachments::attachment_ids(m);
            if !attachments.is_empty() {
                let ids = attachments.into_iter().map(|id| s(id.as_str())).collect();
                item.insert("attachmentIds".into(), AttributeValue::L(ids));
            }
            item.insert("rev".into(), n(0));
        }
        Entry::Edit {
            target_seq,
            content,
        } => {
            item.insert("targetSeq".into(), n(target_seq));
            if let Some(c) = content {
                item.insert("content".into(), content_value(c));
            }
        }
        Entry::Delete { target_seq } => {
            item.insert("targetSeq".into(), n(target_seq));
        }
        Entry::Reaction {
            target_seq,
            emoji,
            removed,
        } => {
            item.insert("targetSeq".into(), n(target_seq));
            item.insert("emoji".into(), s(emoji));
            item.insert("removed".into(), AttributeValue::Bool(*removed));
        }
        Entry::System(change) => item.extend(change_attributes(change)),
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

#[cfg(test)]
mod tests {
    use chat_shared::ports::{Change, NewMessage};

    use super::*;
    use crate::lambda::image_to_item;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    /// A `system` entry of `change`, as the stores make one.
    fn entry(change: SystemChange) -> NewMessage {
        let by = Change {
            actor: u("alice"),
            now: 1_000,
            expires_at: Some(90_000),
        };
        by.entry(&ConversationId::parse("c_1").unwrap(), change)
    }

    /// An item as a stream record's `NEW_IMAGE` carries it (DynamoDB JSON).
    fn image(item: &Item) -> serde_json::Value {
        fn value(v: &AttributeValue) -> serde_json::Value {
            match v {
                AttributeValue::S(s) => serde_json::json!({ "S": s }),
                AttributeValue::N(n) => serde_json::json!({ "N": n }),
                AttributeValue::Bool(b) => serde_json::json!({ "BOOL": b }),
                AttributeValue::L(l) => {
                    serde_json::json!({ "L": l.iter().map(value).collect::<Vec<_>>() })
                }
                other => panic!("not written by the codec: {other:?}"),
            }
        }
        item.iter().map(|(k, v)| (k.clone(), value(v))).collect()
    }

    #[test]
    fn system_entries_round_trip_with_every_field_also_through_a_stream_image() {
        let change = |event, users: &[&str], actor: Option<&str>| SystemChange {
            event,
            user_ids: users.iter().map(|n| u(n)).collect(),
            actor: actor.map(u),
            role: None,
            name: None,
            avatar: None,
        };
        let changes = [
            change(SystemEvent::MemberAdded, &["carol", "bob"], Some("alice")),
            change(SystemEvent::MemberRemoved, &["bob"], Some("alice")),
            change(SystemEvent::MemberLeft, &["alice"], Some("alice")),
            SystemChange {
                role: Some("admin".into()),
                ..change(SystemEvent::RoleChanged, &["carol"], None)
            },
            SystemChange {
                name: Some("Team".into()),
                avatar: Some("a_1".into()),
                ..change(SystemEvent::DetailsChanged, &[], Some("alice"))
            },
            change(SystemEvent::DetailsChanged, &[], Some("alice")),
        ];
        for (seq, c) in (1..).zip(changes) {
            // GIVEN the item of a system entry
            let new = entry(c.clone());
            let item = message_item(&new, seq, 1_500, 7);
            // THEN it says what it is, with no actor for the server's
            assert_eq!(opt_s(&item, "kind").as_deref(), Some("system"));
            assert_eq!(item.contains_key("actorId"), c.actor.is_some());
            assert_eq!(opt_n::<i64>(&item, "expiresAt").unwrap(), Some(90));
            // AND it decodes to the same entry, read or streamed
            let streamed = image_to_item(&image(&item)).unwrap();
            for item in [&item, &streamed] {
                let record = message_from(item).unwrap();
                assert_eq!(record.entry, Entry::System(c.clone()));
                assert_eq!(
                    (record.seq, record.timestamp, &record.sender_id),
                    (seq, 1_500, &new.sender_id)
                );
                assert_eq!(record.state, MessageState::default());
            }
        }
    }

    #[test]
    fn a_system_item_without_its_event_or_users_is_malformed() {
        let new = entry(SystemChange {
            event: SystemEvent::MemberLeft,
            user_ids: vec![u("bob")],
            actor: Some(u("bob")),
            role: None,
            name: None,
            avatar: None,
        });
        let item = message_item(&new, 1, 1, 0);
        for (name, bad) in [
            ("event", s("member_joined")),
            ("userIds", s("bob")),
            ("userIds", AttributeValue::L(vec![n(1)])),
        ] {
            let mut broken = item.clone();
            broken.insert(name.to_owned(), bad);
            assert!(message_from(&broken).is_err(), "{name}");
        }
    }
}
