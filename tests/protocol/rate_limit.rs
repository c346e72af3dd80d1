//! Section 3 "Rate limits": per-user send windows shared by WebSocket and HTTP.

use crate::support::*;

/// A server with `CHAT_RATE_LIMIT_PER_MIN=3` and a direct conversation alice-bob, started
/// far enough from a wall-clock minute that a short test stays in one fixed window.
async fn limited() -> (TestServer, String) {
    avoid_window_edge(60_000, 10_000).await;
    let server = server().env("CHAT_RATE_LIMIT_PER_MIN", "3").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    (server, id)
}

fn assert_retry_after(value: &Value) {
    let retry = value
        .as_i64()
        .unwrap_or_else(|| panic!("retryAfterMs is not an integer: {value}"));
    assert!(
        retry > 0 && retry <= 60_000,
        "retryAfterMs {retry} not in (0, 60000]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_over_the_limit_is_rate_limited_with_retry_after() {
    let (server, id) = limited().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    for n in 1..=3 {
        alice.send_message(&id, &format!("cm-{n}"), "ok").await;
    }

    let error = alice
        .request(json!({
            "action": "send", "requestId": "r-4", "conversationId": id,
            "clientMessageId": "cm-4", "content": {"type": "text", "text": "too many"},
        }))
        .await;

    assert_ws_error(&error, "RATE_LIMITED", Some("r-4"));
    assert_eq!(error["clientMessageId"], "cm-4");
    assert_retry_after(&error["retryAfterMs"]);
    alice.heartbeat().await;
    assert_eq!(
        server.http("alice").conversation(&id).await["lastSeq"],
        3,
        "nothing stored"
    );
    let ack = bob
        .send_message(&id, "bob-1", "bob has his own count")
        .await;
    assert_eq!(ack["seq"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_not_counted() {
    let (server, id) = limited().await;
    let mut alice = server.connect("alice").await;

    alice.send_message(&id, "cm-1", "one").await;
    for _ in 0..3 {
        let again = alice.send_message(&id, "cm-1", "one").await;
        assert_eq!(again["duplicate"], true);
    }
    alice.send_message(&id, "cm-2", "two").await;
    alice.send_message(&id, "cm-3", "three").await;
    let error = alice.request(send_action(&id, "cm-4", "four")).await;
    assert_ws_error(&error, "RATE_LIMITED", error["requestId"].as_str());

    let retry = alice.send_message(&id, "cm-2", "two").await;
    assert_subset(&retry, &json!({"seq": 2, "duplicate": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_http_share_one_count() {
    let (server, id) = limited().await;
    let mut alice = server.connect("alice").await;
    let http = server.http("alice");

    alice.send_message(&id, "cm-1", "ws").await;
    let (status, body) = http.send_message(&id, "cm-2", "http").await;
    assert_eq!(status, 201, "{body}");
    alice.send_message(&id, "cm-3", "ws").await;

    let response = http.send_message(&id, "cm-4", "http").await;
    assert_http_error(&response, 429, "RATE_LIMITED");
    assert_retry_after(&response.1["error"]["retryAfterMs"]);
    let error = alice.request(send_action(&id, "cm-5", "ws")).await;
    assert_eq!(error["code"], "RATE_LIMITED", "{error}");
    let (status, body) = http.send_message(&id, "cm-2", "http").await;
    assert_eq!(
        status, 200,
        "a duplicate over HTTP is still answered: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_disables_the_limit() {
    let server = server().env("CHAT_RATE_LIMIT_PER_MIN", "0").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let mut alice = server.connect("alice").await;

    for n in 1..=150 {
        alice
            .send_json(&send_action(&id, &format!("cm-{n}"), "spam"))
            .await;
    }

    for n in 1..=150 {
        let ack = alice.recv_type("message.ack").await;
        assert_eq!(ack["seq"], n, "{ack}");
    }
    alice.expect_silence("error", Duration::ZERO).await;
}
