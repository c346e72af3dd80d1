//! The HTTP API: a Lambda proxy request through the shared router.

use bytes::Bytes;

use chat_shared::handlers;

use super::Deps;

/// Handles an HTTP API request through the shared router.
pub async fn handle_http(
    deps: &Deps,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let (parts, body) = request.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(t) => Bytes::from(t),
        lambda_http::Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    let response =
        handlers::http::handle(&deps.chat, http::Request::from_parts(parts, bytes)).await;
    let (parts, body) = response.into_parts();
    let body = match String::from_utf8(body.to_vec()) {
        Ok(text) if text.is_empty() => lambda_http::Body::Empty,
        Ok(text) => lambda_http::Body::Text(text),
        Err(e) => lambda_http::Body::Binary(e.into_bytes()),
    };
    lambda_http::Response::from_parts(parts, body)
}
