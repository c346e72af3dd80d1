//! `GET /metrics`: the service's metrics in Prometheus' text format, served to loopback
//! callers not behind a proxy.

use crate::support::*;

/// The value of the sample `name{labels}` (labels as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn scrape(server: &TestServer) -> String {
    let (status, body) = server.http_anon().get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.as_str().expect("text").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_fan_outs_and_errors_are_counted() {
    // GIVEN alice and bob connected in a direct conversation
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    // WHEN alice sends two messages bob receives, and one invalid frame
    alice.send_message(&id, "m-1", "one").await;
    alice.send_message(&id, "m-2", "two").await;
    bob.recv_type("message.new").await;
    bob.recv_type("message.new").await;
    let error = alice
        .request(json!({"action": "send", "conversationId": id, "clientMessageId": "m-3"}))
        .await;
    assert_eq!(error["code"], "INVALID_MESSAGE");

    // THEN the metrics say so
    let text = scrape(&server).await;
    let appends = sample(
        &text,
        "chat_append_duration_seconds_count{kind=\"message\"}",
    );
    assert_eq!(appends, Some(2.0), "{text}");
    assert!(
        sample(&text, "chat_frames_posted_total").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    let lag = sample(&text, "chat_fanout_lag_seconds_count{path=\"feed\"}");
    assert!(lag.is_some_and(|n| n >= 2.0), "{text}");
    let errors = sample(&text, "chat_errors_total{code=\"INVALID_MESSAGE\"}");
    assert_eq!(errors, Some(1.0), "{text}");
    assert!(
        text.contains("# TYPE chat_append_duration_seconds histogram"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_refused_through_a_proxy() {
    let server = server().start().await;
    let (status, body) = server
        .raw_request(
            "GET /metrics HTTP/1.1\r\nX-Forwarded-For: 203.0.113.7\r\n",
            b"",
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = server.raw_request("GET /metrics HTTP/1.1\r\n", b"").await;
    assert_eq!(status, 200);
}
