//! Transport edges of sections 1, 2 and 5: binary frames, upgrade requests with another
//! method than GET, the 256 KiB body cap coming before the token check, a trailing `/`
//! on `/v1` paths, and methods a route does not have.

use crate::support::*;

/// A 300 KiB JSON body (over the 256 KiB cap).
fn oversized_body() -> Vec<u8> {
    json!({"type": "group", "name": "x".repeat(300 * 1024), "members": []})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_frame_is_invalid_and_keeps_the_connection() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;

    alice
        .send_binary(
            send_action(&id, "cm-1", "in binary")
                .to_string()
                .into_bytes(),
        )
        .await;

    let error = alice.recv_type("error").await;
    assert_ws_error(&error, "INVALID_MESSAGE", None);
    assert_eq!(error["clientMessageId"], Value::Null, "{error}");
    alice.heartbeat().await;
    let ack = alice.send_message(&id, "cm-2", "in text").await;
    assert_eq!(ack["seq"], 1, "the binary frame stored nothing: {ack}");
}

/// An upgrade request as a WebSocket client sends it, but with `method`.
fn upgrade_head(method: &str, token: &str) -> String {
    format!(
        "{method} /ws?v=1&token={token} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Content-Length: 0\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_with_another_method_than_get_is_400_and_opens_no_socket() {
    let server = start().await;
    let token = server.token("alice");

    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let response = server.raw_request(&upgrade_head(method, &token), b"").await;
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
    // The token is still checked first.
    let response = server
        .raw_request(&upgrade_head("POST", "not-a-token"), b"")
        .await;
    assert_http_error(&response, 401, "UNAUTHORIZED");
    // And the same request with GET does upgrade.
    let (status, body) = server.raw_request(&upgrade_head("GET", &token), b"").await;
    assert_eq!(status, 101, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_256_kib_is_413_before_the_token_is_looked_at() {
    let server = start().await;

    for http in [
        server.http_anon(),
        server.http_with_token(Some("not-a-token".to_owned())),
        server.http_with_token(Some(jwt::expired("alice"))),
    ] {
        for path in ["/v1/conversations", "/v1/no-such-route"] {
            let response = http
                .raw(Method::POST, path, oversized_body(), "application/json")
                .await;
            assert_http_error(&response, 413, "PAYLOAD_TOO_LARGE");
        }
    }
    // The same body in chunks, without a Content-Length, is measured too.
    let body = oversized_body();
    let mut chunked = Vec::new();
    for chunk in body.chunks(16 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /v1/conversations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\
                Content-Type: application/json\r\n";
    let response = server.raw_request(head, &chunked).await;
    assert_http_error(&response, 413, "PAYLOAD_TOO_LARGE");
    // Nothing was created by any of them.
    let (status, body) = server.http("alice").get("/v1/conversations").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversations"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_exactly_256_kib_is_read() {
    let server = start().await;
    let base = json!({"type": "group", "name": "Team", "members": [], "pad": ""}).to_string();
    let pad = 256 * 1024 - base.len();
    let body =
        json!({"type": "group", "name": "Team", "members": [], "pad": "p".repeat(pad)}).to_string();
    assert_eq!(body.len(), 256 * 1024);

    let response = server
        .http("alice")
        .raw(Method::POST, "/v1/conversations", body, "application/json")
        .await;

    assert_eq!(response.0, 201, "{}", response.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_slash_on_a_v1_path_is_ignored() {
    let (server, id) = direct_pair().await;
    let alice = server.http("alice");

    let (status, listed) = alice.get("/v1/conversations/").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["conversations"][0]["conversationId"], id.as_str());
    let (status, one) = alice.get(&format!("/v1/conversations/{id}/")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["conversationId"], id.as_str());
    let (status, ack) = alice
        .post(
            &format!("/v1/conversations/{id}/messages/"),
            &json!({"clientMessageId": "cm-1", "content": {"type": "text", "text": "hi"}}),
        )
        .await;
    assert_eq!(status, 201, "{ack}");
    assert_eq!(ack["seq"], 1, "{ack}");
    let (status, synced) = alice.post("/v1/sync/", &json!({})).await;
    assert_eq!(status, 200, "{synced}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_a_route_does_not_have_is_404_after_authentication() {
    let (server, id) = direct_pair().await;
    let alice = server.http("alice");
    let wrong = [
        (Method::DELETE, "/v1/conversations".to_owned()),
        (Method::PUT, format!("/v1/conversations/{id}")),
        (Method::GET, "/v1/sync".to_owned()),
        (Method::PATCH, format!("/v1/conversations/{id}/messages")),
        (Method::GET, "/v1/devices".to_owned()),
        (Method::POST, "/v1/presence".to_owned()),
    ];

    for (method, path) in &wrong {
        let response = alice.call(method.clone(), path, Some(&json!({}))).await;
        assert_http_error(&response, 404, "NOT_FOUND");
        // Authentication comes first: without a token the same request is 401.
        let response = server
            .http_anon()
            .call(method.clone(), path, Some(&json!({})))
            .await;
        assert_http_error(&response, 401, "UNAUTHORIZED");
    }
    let response = server
        .http_anon()
        .call(Method::POST, "/dev/push-outbox", None)
        .await;
    assert_http_error(&response, 404, "NOT_FOUND");
    // The local server's own routes (the web app, its sign-in, the attachment URLs) too.
    let blob = format!("/v1/blobs/a_{}", "0".repeat(32));
    for (method, path) in [
        (Method::DELETE, "/"),
        (Method::POST, "/app/app.js"),
        (Method::GET, "/dev/login"),
        (Method::POST, blob.as_str()),
    ] {
        let response = server.http_anon().call(method.clone(), path, None).await;
        assert_http_error(&response, 404, "NOT_FOUND");
    }
    // Nothing was changed by them.
    assert_eq!(alice.conversation(&id).await["lastSeq"], 0);
}
