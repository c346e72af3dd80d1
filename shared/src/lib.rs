//! The chat core: everything the embedded server and the Lambda functions share.
//!
//! # Layout
//! - [`protocol`]: frames and bodies of docs/protocol.md, their validation, error codes.
//! - [`ids`], [`domain`]: domain values that validate on parse, and pure rules.
//! - [`ports`]: the traits the core needs (store, connection gateway, push, clock).
//! - [`service`]: every operation of the protocol over the ports.
//! - [`handlers`]: one function per route (WebSocket, HTTP, fan-out) over the service.
//! - [`auth`], [`config`]: tokens and typed configuration.
//! - [`telemetry`]: the metrics the service records.

pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod ids;
mod json;
pub mod ports;
pub mod protocol;
pub mod service;
pub mod telemetry;

pub use error::{ChatError, ChatResult, ErrorCode, StoreError};
pub use service::Chat;
