//! The protocol suite: every behaviour of `docs/protocol.md` for the local server, checked
//! against the real `chat-local` binary over real sockets (WebSocket and HTTP).
//!
//! Each test starts its own server on port 0 with its own SQLite file, so the tests share
//! nothing and run in parallel.
//!
//! # Layout
//! - `support`: the server builder for this binary and shared assertions.
//! - One module per area of the protocol: `auth`, `conversations`, `groups`, `messaging`,
//!   `validation`, `receipts`, `typing`, `presence`, `history`, `sync`, `push`,
//!   `devices`, `rate_limit`, `fanout` (the large-conversation rules).
//! - `tokens`: the token rules on the running server (leeway, issuer and audience,
//!   the query token over the header, the secret off loopback).
//! - `connection_limits`: header and body timeouts, the connection cap.
//! - `transport`: binary frames, non-GET upgrades, the body cap before the token,
//!   a trailing `/`, wrong methods.
//! - `retention`: `CHAT_RETENTION_DAYS`, the sweep and `firstSeq`.
//! - `restart`: what a new process forgets and keeps of the previous one's connections.
//! - `files`: the modes of the files beside the database (0600 whatever the umask).
//! - `erasure`: a deleted message leaves no trace in any file of the store.
//! - `roles` and `details` (protocol 1.1, 8.4): role changes by admins, the last admin
//!   kept; renaming a group.
//! - `entries` (protocol 1.1, 8.1 and 8.2): entries of kind `message`, `edit`, `delete`
//!   and `reaction`; the `edit`, `delete` and `react` actions over WebSocket and HTTP;
//!   current state in history and sync, unread counts, pushes, order, the rate limit.
//! - `system_entries` (protocol 1.1, 8.4): the `system` entries of membership changes and
//!   what they do to positions, unread counts, pushes and the conversation list.
//! - `concurrency` and `durability`: the load test and the kill -9 test (also with
//!   `CHAT_SQLITE_SYNC=full`).
//! - `authz_property`: a seeded random walk checking no one sees a conversation they are
//!   not in.

mod support;

mod attachments;
mod auth;
mod authz_property;
mod caps;
mod concurrency;
mod connection_limits;
mod connections;
mod conversations;
mod details;
mod devices;
mod durability;
mod durability_mixed;
mod entries;
mod erasure;
mod fanout;
#[cfg(unix)]
mod files;
mod groups;
mod history;
mod logs;
mod messaging;
mod metrics;
mod presence;
mod push;
mod rate_limit;
mod receipts;
mod restart;
mod retention;
mod robustness;
mod roles;
mod sessions;
mod sync;
mod system_entries;
mod tokens;
mod transport;
mod typing;
mod validation;
