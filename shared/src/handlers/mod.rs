//! Handlers: one function per route. Each decodes its input (a WebSocket frame, an
//! `http::Request`, a change-feed record), calls one [`Chat`](crate::service::Chat)
//! method and encodes the result. The local server and the Lambda binaries call these
//! very functions.

pub mod fanout;
pub mod http;
pub mod ws;
