//! `chat-bench`: benchmarks of the chat server, side by side with a reference "limit"
//! server on the same stack (see BENCHMARKS.md for the method and the results).
//!
//! - [`load`]: the open-loop load generator (coordinated-omission-corrected latency,
//!   exactly-once delivery check).
//! - [`limit`]: the thinnest WebSocket fan-out, the yardstick.
//! - [`target`]: starting the servers and speaking to them.
//! - [`scenarios`]: 1:1, groups, idle connections, offline sync, reconnect storm.
//! - [`report`]: the tables of docs/bench-results.md.
//! - [`procstat`]: server CPU and memory from `/proc`.
//! - [`coldstart`]: the Lambda cold-start proxy (a local Runtime API).
//! - [`cost`]: dollars per million messages from the measured AWS request counts.
//! - [`deployed`]: ack and delivery latency of a deployed stack at a fixed low rate.

pub mod coldstart;
pub mod cost;
pub mod deployed;
pub mod limit;
pub mod load;
pub mod procstat;
pub mod report;
pub mod scenarios;
pub mod target;
