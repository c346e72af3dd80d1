//! The WebSocket routes: `$connect`, `$disconnect` and every message route.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tracing::warn;

use chat_shared::ChatError;
use chat_shared::handlers;
use chat_shared::handlers::ws::ConnectionContext;
use chat_shared::protocol::ServerFrame;
use chat_shared::service::PendingPresence;

use super::{Deps, log_failure};

/// An API Gateway WebSocket proxy event, as much of it as the handlers need.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WsEvent {
    pub request_context: WsContext,
    pub query_string_parameters: Option<HashMap<String, String>>,
    pub headers: Option<HashMap<String, String>>,
    pub body: Option<String>,
    pub is_base64_encoded: bool,
}

/// The request context of a [`WsEvent`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WsContext {
    pub connection_id: Option<String>,
    pub route_key: Option<String>,
    pub event_type: Option<String>,
    pub domain_name: Option<String>,
    pub stage: Option<String>,
}

/// The route response: its body goes back to the client as one frame (the ack of a
/// send saves a PostToConnection). On `$connect`, a non-2xx status refuses the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WsResponse {
    pub status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl WsResponse {
    fn status(status_code: u16) -> Self {
        Self {
            status_code,
            body: None,
        }
    }

    fn frame(frame: Option<ServerFrame>) -> Self {
        Self {
            status_code: 200,
            body: frame.map(|f| f.to_json()),
        }
    }
}

impl WsEvent {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref().and_then(|h| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        })
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query_string_parameters
            .as_ref()
            .and_then(|q| q.get(name))
            .map(String::as_str)
    }

    /// `$connect`, `$disconnect`, or a message route.
    fn route(&self) -> &str {
        let ctx = &self.request_context;
        match (ctx.event_type.as_deref(), ctx.route_key.as_deref()) {
            (Some("CONNECT"), _) | (_, Some("$connect")) => "$connect",
            (Some("DISCONNECT"), _) | (_, Some("$disconnect")) => "$disconnect",
            (_, Some(route)) => route,
            _ => "$default",
        }
    }
}

/// Handles any WebSocket route: `$connect` (token from the `token` query parameter or
/// the `Authorization` header), `$disconnect`, and every message route.
pub async fn handle_ws(deps: &Deps, event: WsEvent) -> WsResponse {
    let ctx = &event.request_context;
    deps.gateway
        .observe(ctx.domain_name.as_deref(), ctx.stage.as_deref());
    let Some(connection_id) = ctx.connection_id.as_deref() else {
        warn!("WebSocket event without a connectionId");
        return WsResponse::status(400);
    };
    match event.route() {
        "$connect" => {
            let request = handlers::ws::ConnectRequest {
                connection_id,
                token: event.query("token"),
                authorization: event.header("authorization"),
                device_id: event.query("deviceId"),
            };
            match handlers::ws::connect(&deps.chat, request).await {
                Ok(connected) => {
                    // No process outlives the invocation: a held-back presence change
                    // is settled before answering (a second at most, and only for a
                    // user whose presence changed within the last second).
                    settle(deps, connected.pending_presence).await;
                    WsResponse::status(200)
                }
                Err(e) => {
                    log_failure(&e);
                    WsResponse::status(e.code().http_status())
                }
            }
        }
        "$disconnect" => {
            match handlers::ws::disconnect(&deps.chat, connection_id).await {
                Ok(pending) => settle(deps, pending).await,
                Err(e) => log_failure(&e),
            }
            WsResponse::status(200)
        }
        route => {
            let answer = message(deps, connection_id, &event).await;
            if !ONE_WAY_ROUTES.contains(&route) {
                return WsResponse::frame(answer);
            }
            if let Some(answer) = answer {
                deps.chat.post_answer(connection_id, &answer).await;
            }
            WsResponse::status(200)
        }
    }
}

/// Message routes without a route response (`template.yaml`): their answer is due only
/// sometimes (`ok` only to a frame with a `requestId`; an `error` always), and a route
/// with a route response sends a frame every time, an empty one when there is no
/// answer (billed, and not JSON). Their answers are posted to the connection instead.
/// The other routes (the appending `send`, `edit`, `delete` and `react`, answered with
/// `message.ack`; `heartbeat`; `$default`) always answer, as the route response.
pub const ONE_WAY_ROUTES: &[&str] = &["read", "delivered", "typing"];

async fn settle(deps: &Deps, pending: Option<PendingPresence>) {
    if let Some(pending) = pending
        && let Err(e) = deps.chat.settle_presence(pending).await
    {
        log_failure(&e);
    }
}

pub(crate) async fn message(
    deps: &Deps,
    connection_id: &str,
    event: &WsEvent,
) -> Option<ServerFrame> {
    let connection = match deps.chat.connection(connection_id).await {
        Ok(connection) => connection,
        Err(e) => return Some(ServerFrame::error(None, None, &e)),
    };
    if event.is_base64_encoded {
        return Some(ServerFrame::error(
            None,
            None,
            &ChatError::Invalid("frames must be text (UTF-8 JSON)".into()),
        ));
    }
    let ctx = ConnectionContext::new(
        connection_id.to_owned(),
        connection.user_id,
        connection.token_expires_at,
    )
    // The recorded last frame: a frame soon after it writes no liveness.
    .touched(connection.last_frame_at);
    handlers::ws::frame(&deps.chat, &ctx, event.body.as_deref().unwrap_or("")).await
}
