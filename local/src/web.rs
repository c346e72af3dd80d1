//! The web chat app: `GET /` and `GET /app/...` serve its files (`local/web/`, built
//! into the binary: running it needs no Node.js), among them the client SDK as the
//! browser loads it (`local/web/sdk/`, the SDK's compiled modules, checked against its
//! source by the SDK's test). `POST /dev/login` signs the app in: it issues a token for
//! any user name, so it exists only with the development secret (which the server uses
//! only on a loopback address) and answers only callers on this host.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_shared::ChatError;
use chat_shared::ids::UserId;
use chat_shared::ports::{Clock, SystemClock};
use serde::Deserialize;
use serde_json::json;

use crate::server::{App, error_response, from_loopback};

/// How long a development sign-in lasts.
const DEV_TOKEN_TTL_SECS: i64 = 12 * 3600;

/// The content type of the app's scripts and the SDK's modules.
const JS: &str = "text/javascript; charset=utf-8";

/// The app's files: (path under `/app/`, content type, bytes).
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../web/app.js")),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../web/app.css"),
    ),
    ("sdk/index.js", JS, include_str!("../web/sdk/index.js")),
    ("sdk/client.js", JS, include_str!("../web/sdk/client.js")),
    (
        "sdk/conversation.js",
        JS,
        include_str!("../web/sdk/conversation.js"),
    ),
    ("sdk/events.js", JS, include_str!("../web/sdk/events.js")),
    ("sdk/options.js", JS, include_str!("../web/sdk/options.js")),
    ("sdk/outbox.js", JS, include_str!("../web/sdk/outbox.js")),
    (
        "sdk/protocol.js",
        JS,
        include_str!("../web/sdk/protocol.js"),
    ),
    ("sdk/storage.js", JS, include_str!("../web/sdk/storage.js")),
    ("sdk/wire.js", JS, include_str!("../web/sdk/wire.js")),
];

const INDEX: &str = include_str!("../web/index.html");

/// Scripts and styles from this origin only; images also from `blob:` (previews of
/// uploads); sockets and fetches to this origin.
const CSP: &str = "default-src 'self'; img-src 'self' blob:; connect-src 'self' ws: wss:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the app.
pub async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /app/{path}`: one of its files.
pub async fn asset(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, body)) => file(content_type, body),
        None => error_response(&ChatError::NotFound("no such file")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevLogin {
    user_id: String,
}

/// `POST /dev/login` `{"userId"}`: a token for that user, with the development secret
/// and from this host only (404 otherwise, as if the route did not exist).
pub async fn dev_login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<DevLogin>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(tokens) = app
        .dev_login
        .as_ref()
        .filter(|_| from_loopback(peer, &headers))
    else {
        return error_response(&ChatError::NotFound("no such route"));
    };
    let Ok(Json(login)) = body else {
        return error_response(&ChatError::Invalid("expected {\"userId\": \"...\"}".into()));
    };
    let Ok(user) = UserId::parse(login.user_id.trim()) else {
        return error_response(&ChatError::Invalid(
            "a user name is 1-128 of A-Z a-z 0-9 _ . @ -".into(),
        ));
    };
    let token = tokens.issue(&user, SystemClock.now_ms(), DEV_TOKEN_TTL_SECS);
    (
        StatusCode::OK,
        Json(json!({ "userId": user.as_str(), "token": token })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::FILES;

    /// The SDK's modules import each other at run time: every compiled one is served.
    #[test]
    fn every_module_of_the_sdk_copy_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/web/sdk");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(dir).expect("local/web/sdk") {
            let name = entry.expect("a directory entry").file_name();
            let path = format!("sdk/{}", name.to_string_lossy());
            if !FILES.iter().any(|(served, _, _)| *served == path) {
                missing.push(path);
            }
        }
        assert!(missing.is_empty(), "not in FILES: {missing:?}");
    }
}
