//! The SQLite adapter of the core's ports (bundled SQLite, WAL): the [`Store`] areas,
//! the [`ChangeFeed`] that stands in for DynamoDB Streams, and the local push outbox that
//! stands in for SNS.
//!
//! New messages go to the sequencer (see `sequencer`), a task of the server's runtime
//! (a thread of its own under `PowerLoss` durability, or for a store opened outside a
//! runtime): it checks them, gives them their seq from counters kept in memory, writes
//! them to an append log beside the database (see `log`) and acks them, with no
//! transaction on the way. It also emits them on the change feed, in seq order.
//!
//! Every other write goes to one writer thread that owns the only write connection. It
//! takes every write waiting in its queue and runs them in one transaction (group
//! commit), each under its own savepoint so one failing write does not undo the others;
//! callers hear back only after the commit. The same thread copies the acked messages
//! into the database in bulk, with an outbox row for each one not yet fanned out; the
//! outbox rows and the log are what a crash replays at the next start.
//!
//! Durability: the log and the WAL with `synchronous=NORMAL`. An ack means the message
//! is in the OS, so it survives the process being killed (`kill -9`); a power loss may
//! lose the last ones (set `CHAT_SQLITE_SYNC=full` to fsync the log before each ack and
//! every commit). Checkpoints (copying the WAL back into the database, with an fsync) run
//! on a thread of their own, off the commit path; the writer copies only the last few
//! frames, so that the WAL starts over.
//!
//! Conversations with their members and users' connections are also kept in memory
//! (see `cache`), kept exact by the sequencer and the writer thread. Reads of the
//! database bring what they read up to the messages still in flight (see
//! `sequencer::InFlight`), or wait for them to be applied.
//!
//! # Layout
//! - [`store`]: [`SqliteStore`], opening it and the ways the areas reach its threads.
//! - `schema`, `rows`, `queries`: the tables, rows to records, statements areas share.
//! - The areas of the store port, one file each: `conversations`, `messages`,
//!   `receipts`, `throttles`, `connections`, `devices`, `pushes` (with the push outbox),
//!   `attachments` (their records).
//! - `sequencer`: seqs and acks; `in_flight`: what readers must see of messages acked
//!   and not yet in the database; `log`: the append log they are acked from; `seen`: the
//!   filters of idempotency keys.
//! - `writer`: the writer thread; `apply`: messages into the database; `checkpoint`:
//!   the WAL copied back; `feed`: the change feed; `cache`, `roster`: what is kept in
//!   memory; `threads`, `errors`: what the threads share.
//! - `private`: every file the store creates is 0600, whatever the umask.

mod apply;
mod attachments;
mod cache;
mod checkpoint;
mod connections;
mod conversations;
mod devices;
mod errors;
mod feed;
mod in_flight;
mod log;
mod messages;
mod private;
mod pushes;
mod queries;
mod receipts;
mod roster;
mod rows;
mod schema;
mod seen;
mod sequencer;
pub mod store;
mod system;
mod targets;
mod threads;
mod throttles;
mod writer;

#[cfg(test)]
mod tests;

pub use pushes::OutboxPush;
pub use schema::Durability;
pub use store::SqliteStore;

#[cfg(doc)]
use chat_shared::ports::{ChangeFeed, Store};
