//! Rows to records: the column lists the queries select and the mappers that read them.

use rusqlite::Row;

use chat_shared::ids::{AttachmentId, ConversationId, DeviceId, InvalidValue, Seq, UserId};
use chat_shared::ports::{
    ConnectionRecord, ConversationKind, ConversationRecord, DeviceRecord, MemberRecord,
    MessageRecord, MessageState, Platform, Role,
};
use chat_shared::protocol::{Content, Entry, EntryKind};

use crate::system::StoredChange;

pub(crate) const CONVERSATION_COLUMNS: &str = "c.id, c.kind, c.name, c.created_at, c.last_seq, \
     c.last_message_at, c.member_count, c.message_count, c.avatar";

pub(crate) const MEMBER_COLUMNS: &str = "m.conversation_id, m.user_id, m.role, m.joined_at, \
     m.delivered_up_to, m.read_up_to, m.muted_until, m.read_messages";

pub(crate) const MESSAGE_COLUMNS: &str = "m.conversation_id, m.seq, m.message_id, m.sender_id, \
     m.client_message_id, m.content, m.reply_to, m.timestamp, m.origin_connection, m.kind, \
     m.target_seq, m.emoji, m.removed, m.edited_at, m.deleted_by";

/// Columns each of [`CONVERSATION_COLUMNS`] and [`MEMBER_COLUMNS`] selects: where the
/// next list starts in a row that selects both.
pub(crate) const CONVERSATION_WIDTH: usize = 9;

pub(crate) fn bad_value(
    i: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

pub(crate) fn user_at(r: &Row<'_>, i: usize) -> rusqlite::Result<UserId> {
    UserId::parse(r.get::<_, String>(i)?).map_err(|e| bad_value(i, e))
}

pub(crate) fn conversation_id_at(r: &Row<'_>, i: usize) -> rusqlite::Result<ConversationId> {
    ConversationId::parse(r.get::<_, String>(i)?).map_err(|e| bad_value(i, e))
}

pub(crate) fn conversation_at(r: &Row<'_>, i: usize) -> rusqlite::Result<ConversationRecord> {
    let kind: String = r.get(i + 1)?;
    Ok(ConversationRecord {
        id: conversation_id_at(r, i)?,
        kind: ConversationKind::parse(&kind).ok_or_else(|| bad_value(i + 1, InvalidValue(kind)))?,
        name: r.get(i + 2)?,
        created_at: r.get(i + 3)?,
        last_seq: r.get(i + 4)?,
        last_message_at: r.get(i + 5)?,
        member_count: r.get(i + 6)?,
        message_count: r.get(i + 7)?,
        avatar: r
            .get::<_, Option<String>>(i + 8)?
            .map(AttachmentId::parse)
            .transpose()
            .map_err(|e| bad_value(i + 8, e))?,
        // The embedded server has no direct delivery: its feed needs no hop.
        posted: None,
    })
}

pub(crate) fn member_at(r: &Row<'_>, i: usize) -> rusqlite::Result<MemberRecord> {
    let role: String = r.get(i + 2)?;
    Ok(MemberRecord {
        conversation_id: conversation_id_at(r, i)?,
        user_id: user_at(r, i + 1)?,
        role: Role::parse(&role).ok_or_else(|| bad_value(i + 2, InvalidValue(role)))?,
        joined_at: r.get(i + 3)?,
        delivered_up_to: r.get(i + 4)?,
        read_up_to: r.get(i + 5)?,
        muted_until: r.get(i + 6)?,
        read_messages: r.get(i + 7)?,
    })
}

/// An entry as stored: a message in its current state, without its reactions (read
/// separately, see `messages`).
pub(crate) fn message_at(r: &Row<'_>, i: usize) -> rusqlite::Result<MessageRecord> {
    let kind: String = r.get(i + 9)?;
    let stored: Option<String> = r.get(i + 5)?;
    if kind == "system" {
        let change = stored
            .as_deref()
            .map(serde_json::from_str::<StoredChange>)
            .transpose()
            .map_err(|e| bad_value(i + 5, e))?
            .ok_or_else(|| {
                bad_value(
                    i + 5,
                    InvalidValue("a system entry without its change".into()),
                )
            })?
            .change()
            .map_err(|e| bad_value(i + 5, InvalidValue(e)))?;
        return entry_record(r, i, Entry::System(change));
    }
    let content = stored
        .map(|c| serde_json::from_str::<Content>(&c).map_err(|e| bad_value(i + 5, e)))
        .transpose()?;
    let target = || -> rusqlite::Result<Seq> {
        r.get::<_, Option<Seq>>(i + 10)?
            .ok_or_else(|| bad_value(i + 10, InvalidValue("an entry without its target".into())))
    };
    let entry = match EntryKind::parse(&kind) {
        Some(EntryKind::Message) => Entry::Message {
            content,
            reply_to: r.get(i + 6)?,
        },
        Some(EntryKind::Edit) => Entry::Edit {
            target_seq: target()?,
            content,
        },
        Some(EntryKind::Delete) => Entry::Delete {
            target_seq: target()?,
        },
        Some(EntryKind::Reaction) => Entry::Reaction {
            target_seq: target()?,
            emoji: r.get::<_, Option<String>>(i + 11)?.unwrap_or_default(),
            removed: r.get(i + 12)?,
        },
        Some(EntryKind::System) | None => return Err(bad_value(i + 9, InvalidValue(kind))),
    };
    entry_record(r, i, entry)
}

/// The rest of an entry's row, around its `entry`.
fn entry_record(r: &Row<'_>, i: usize, entry: Entry) -> rusqlite::Result<MessageRecord> {
    let deleted_by: Option<String> = r.get(i + 14)?;
    Ok(MessageRecord {
        conversation_id: conversation_id_at(r, i)?,
        seq: r.get(i + 1)?,
        message_id: r.get(i + 2)?,
        sender_id: user_at(r, i + 3)?,
        client_message_id: r.get(i + 4)?,
        entry,
        timestamp: r.get(i + 7)?,
        origin_connection: r.get(i + 8)?,
        state: MessageState {
            edited_at: r.get(i + 13)?,
            deleted_by: deleted_by
                .map(|u| UserId::parse(u).map_err(|e| bad_value(i + 14, e)))
                .transpose()?,
            reactions: Vec::new(),
        },
    })
}

pub(crate) fn connection_at(r: &Row<'_>) -> rusqlite::Result<ConnectionRecord> {
    let device: Option<String> = r.get(2)?;
    Ok(ConnectionRecord {
        connection_id: r.get(0)?,
        user_id: user_at(r, 1)?,
        device_id: device
            .map(|d| DeviceId::parse(d).map_err(|e| bad_value(2, e)))
            .transpose()?,
        connected_at: r.get(3)?,
        last_frame_at: r.get(4)?,
        token_expires_at: r.get(5)?,
    })
}

pub(crate) fn device_at(r: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let platform: String = r.get(2)?;
    Ok(DeviceRecord {
        user_id: user_at(r, 0)?,
        device_id: DeviceId::parse(r.get::<_, String>(1)?).map_err(|e| bad_value(1, e))?,
        platform: Platform::parse(&platform).ok_or_else(|| bad_value(2, InvalidValue(platform)))?,
        token: r.get(3)?,
        endpoint: r.get(4)?,
        updated_at: r.get(5)?,
    })
}
