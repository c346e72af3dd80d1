//! The DynamoDB tables, defined once. Tests create tables from these definitions and the
//! template check compares `template.yaml` against them, so the two cannot drift.
//!
//! Access patterns (every one a GetItem, Query, BatchGetItem or conditional write on a
//! key; no Scan anywhere). Emoji appear in keys as the hex of their UTF-8 bytes: an
//! emoji may hold `#`, the separator, and hex keeps byte order. Seqs in sort keys are
//! zero-padded to 20 digits, so string order is numeric order.
//!
//! | table | item | key | used for |
//! |---|---|---|---|
//! | main | conversation | `c#{id}` / `#meta` | the seq counter (`lastSeq`), `lastEntryAt` (entries' times never decrease), `lastMessageAt` and `messageCount` (moved by `message` entries only), kind, name, memberCount; `pendingAdd` while an add of more than 98 users is between its two transactions (`dynamodb/membership.rs`) |
//! | main | member | `c#{id}` / `m#{user}` | role, receipt positions, `readMessages` (the message count at `readUpTo`: unread = `messageCount - readMessages`), mute, typing window; GSI `byUser` (`memberUser`, `pk`) lists a user's conversations |
//! | main | idempotency | `c#{id}` / `i#{sender}#{clientMessageId}` | duplicate appends return the original seq |
//! | main | reaction, by user | `c#{id}` / `ru#{user}#{seq:020}#{emoji hex}` | a history page's `mine`: one Query of the reader's reactions in the page's seq range; whether a user reacted so (set semantics); TTL |
//! | main | reaction, by message | `c#{id}` / `rt#{seq:020}#{emoji hex}#{user}` | `reactors` in userId order (one Query); `at` (the reaction's seq) refills a summary's first reactors when one of them removes theirs; TTL |
//! | main | direct pair | `d#{a}#{b}` / `#pair` | one direct conversation per unordered pair |
//! | main | user | `u#{user}` / `#user` | lastSeen, and maps of the user's live connections and push devices (one BatchGetItem reads 100 members'); `online` (`o#{shard}`) while it has connections: GSI `online` (keys only) lists them for the sweeper (`dynamodb/sweep.rs`) |
//! | main | rate window | `u#{user}` / `rate#{windowStart}` | fixed-window send counter, TTL |
//! | main | push claim | `c#{id}` / `p#{seq}` | a message's pushes were sent (a stream redelivery does not push twice), TTL |
//! | main | token claim | `t#{platform}#{token}` / `#token` | which user's device holds a push token, so it moves to a new owner |
//! | messages | entry | `conversationId` / `seq` (N) | every entry of the log (`kind`: message, edit, delete, reaction, system), with `messageCount` (messages through it, for read receipts below `lastSeq`); a message item holds its current state: content (the latest edit's; removed once deleted), `editedAt`, `edits` and `editSeqs` (its edits, at most 50, so a delete can erase their content), `deletedBy`, `reactions` (per emoji: count and the first 3 reactors with their reaction's seq), and `rev`, bumped by every change, which the next change is conditional on; a system item holds `event`, `userIds` (a list), `actorId` (absent when the server made it), `role`, `name`, `avatar`. History by seq range; stream `NEW_IMAGE` of INSERTs drives the fan-out (changes to a target are MODIFYs, never fanned out); TTL `expiresAt` |
//! | connections | connection | `connectionId` | who is on a connection (route events carry only its id); TTL `expiresAt` |

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};

/// A key attribute and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAttr {
    pub name: &'static str,
    /// `"S"` or `"N"`.
    pub kind: &'static str,
}

/// A global secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDef {
    pub name: &'static str,
    pub hash: KeyAttr,
    pub range: Option<KeyAttr>,
    /// `true`: every attribute; `false`: the keys only (an update that changes no key
    /// writes nothing to the index).
    pub all_attributes: bool,
}

impl IndexDef {
    /// The projection type, as the API and the template spell it.
    pub fn projection(&self) -> &'static str {
        if self.all_attributes {
            "ALL"
        } else {
            "KEYS_ONLY"
        }
    }
}

/// One table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    /// The template's logical id, and the environment variable suffix of its name.
    pub logical_id: &'static str,
    pub hash: KeyAttr,
    pub range: Option<KeyAttr>,
    pub indexes: &'static [IndexDef],
    /// `Some("NEW_IMAGE")` when the table has a stream.
    pub stream: Option<&'static str>,
    pub ttl_attribute: Option<&'static str>,
}

const fn s(name: &'static str) -> KeyAttr {
    KeyAttr { name, kind: "S" }
}

/// Conversations, members, idempotency records, direct pairs, users, rate windows,
/// token claims.
pub const MAIN: TableDef = TableDef {
    logical_id: "MainTable",
    hash: s("pk"),
    range: Some(s("sk")),
    indexes: &[
        IndexDef {
            name: "byUser",
            hash: s("memberUser"),
            range: Some(s("pk")),
            all_attributes: true,
        },
        IndexDef {
            name: "online",
            hash: s("online"),
            range: Some(s("pk")),
            all_attributes: false,
        },
    ],
    stream: None,
    ttl_attribute: Some("expiresAt"),
};

/// Messages, one item per seq; its stream feeds the fan-out.
pub const MESSAGES: TableDef = TableDef {
    logical_id: "MessagesTable",
    hash: s("conversationId"),
    range: Some(KeyAttr {
        name: "seq",
        kind: "N",
    }),
    indexes: &[],
    stream: Some("NEW_IMAGE"),
    ttl_attribute: Some("expiresAt"),
};

/// WebSocket connections by id.
pub const CONNECTIONS: TableDef = TableDef {
    logical_id: "ConnectionsTable",
    hash: s("connectionId"),
    range: None,
    indexes: &[],
    stream: None,
    ttl_attribute: Some("expiresAt"),
};

/// Every table.
pub const ALL: [TableDef; 3] = [MAIN, MESSAGES, CONNECTIONS];

/// The deployed names of the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub main: String,
    pub messages: String,
    pub connections: String,
}

impl TableNames {
    /// Names with a common prefix (tests use a unique prefix per test).
    pub fn prefixed(prefix: &str) -> Self {
        Self {
            main: format!("{prefix}Main"),
            messages: format!("{prefix}Messages"),
            connections: format!("{prefix}Connections"),
        }
    }

    /// The name of one table.
    pub fn of(&self, def: &TableDef) -> &str {
        match def.logical_id {
            "MainTable" => &self.main,
            "MessagesTable" => &self.messages,
            _ => &self.connections,
        }
    }
}

fn attr_type(kind: &str) -> ScalarAttributeType {
    if kind == "N" {
        ScalarAttributeType::N
    } else {
        ScalarAttributeType::S
    }
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("key schema has all fields")
}

fn key_schema(hash: KeyAttr, range: Option<KeyAttr>) -> Vec<KeySchemaElement> {
    let mut keys = vec![key(hash.name, KeyType::Hash)];
    if let Some(r) = range {
        keys.push(key(r.name, KeyType::Range));
    }
    keys
}

/// Creates one table (on-demand billing) as defined, with its TTL.
pub async fn create_table(
    client: &Client,
    def: &TableDef,
    name: &str,
) -> Result<(), aws_sdk_dynamodb::Error> {
    let mut attrs: Vec<KeyAttr> = vec![def.hash];
    attrs.extend(def.range);
    for index in def.indexes {
        attrs.push(index.hash);
        attrs.extend(index.range);
    }
    attrs.sort_by_key(|a| a.name);
    attrs.dedup_by_key(|a| a.name);
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(def.hash, def.range)));
    for a in attrs {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a.name)
                .attribute_type(attr_type(a.kind))
                .build()
                .expect("attribute definition has all fields"),
        );
    }
    for index in def.indexes {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .set_key_schema(Some(key_schema(index.hash, index.range)))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(index.projection()))
                        .build(),
                )
                .build()
                .expect("index has all fields"),
        );
    }
    if let Some(view) = def.stream {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view))
                .build()
                .expect("stream specification has all fields"),
        );
    }
    req.send().await?;
    if let Some(attr) = def.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(attr)
                    .build()
                    .expect("ttl specification has all fields"),
            )
            .send()
            .await?;
    }
    Ok(())
}

/// Creates every table under `names`.
pub async fn create_all(
    client: &Client,
    names: &TableNames,
) -> Result<(), aws_sdk_dynamodb::Error> {
    for def in &ALL {
        create_table(client, def, names.of(def)).await?;
    }
    Ok(())
}
