//! The DynamoDB adapter of the core's store port (every area of
//! [`Store`](chat_shared::ports::Store)). Table layout and access patterns: see
//! [`crate::tables`].
//!
//! An append is one `TransactWriteItems`: advance the conversation's `lastSeq` from n-1
//! to n (conditional), put entry n, put the idempotency record, and write what the entry
//! changes (a message: the sender's positions, conditional on membership; an edit,
//! delete or reaction: its target, conditional on the target being as read). Two racing
//! writers cannot both win n, a retry finds its idempotency record, and since every
//! entry of a conversation shares a partition key, commit order = seq order = stream
//! order for the fan-out.
//!
//! # Layout
//! - `codec`: keys and attributes, records to items and back; `client`: SDK helpers.
//! - `users`: the user item and a user's memberships, which several areas read.
//! - One file per area of the port: `conversations` (with `membership`, the membership
//!   changes and their `system` entries), `messages` (with `append`, the
//!   entry transaction, and `reactions`, the reaction items and summaries), `receipts`,
//!   `pushes`, `throttles`, `connections` (with `sweep`, the users with connections),
//!   `devices`, `attachments` (their records), `direct` (direct delivery's mark).

mod append;
mod attachments;
mod client;
mod codec;
mod connections;
mod conversations;
mod devices;
mod direct;
mod membership;
mod messages;
mod pushes;
mod reactions;
mod receipts;
mod sweep;
mod throttles;
mod users;

pub use codec::{Item, MalformedItem, message_from};
pub use sweep::{ONLINE_INDEX, ONLINE_SHARDS, OnlinePage};

use aws_sdk_dynamodb::Client;

use crate::tables::TableNames;

/// The store over DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
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
}
