//! Assertion and frame helpers shared by the suites.

use super::*;

/// The pushes of the outbox addressed to `user`, in outbox order.
pub fn pushes_for<'a>(pushes: &'a [Value], user: &str) -> Vec<&'a Value> {
    pushes.iter().filter(|p| p["userId"] == user).collect()
}

/// Whether `frame` is a `presence` event about `user`.
pub fn is_presence_of(frame: &Value, user: &str) -> bool {
    frame["type"] == "presence" && frame["userId"] == user
}

/// Whether `frame` is a `presence` event saying `user` is `status` (`online`/`offline`).
pub fn is_presence_status(frame: &Value, user: &str, status: &str) -> bool {
    is_presence_of(frame, user) && frame["status"] == status
}

/// The `conversationId` of a conversation object.
pub fn conv_id(conversation: &Value) -> String {
    conversation["conversationId"]
        .as_str()
        .unwrap_or_else(|| panic!("no conversationId in {conversation}"))
        .to_owned()
}

/// Asserts `value` is an object holding every key of `keys` (a `null` value counts).
pub fn assert_keys(value: &Value, keys: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {value}"));
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !object.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "missing keys {missing:?} in {value}");
}

/// Asserts an `error` frame with every field of docs/protocol.md, `code`, and `requestId`
/// (`None` = `null`).
pub fn assert_ws_error(frame: &Value, code: &str, request_id: Option<&str>) {
    assert_eq!(
        frame["type"], "error",
        "expected an error frame, got {frame}"
    );
    assert_keys(
        frame,
        &[
            "requestId",
            "clientMessageId",
            "code",
            "message",
            "retryAfterMs",
        ],
    );
    assert_eq!(frame["code"], code, "wrong error code in {frame}");
    assert_eq!(
        frame["requestId"],
        json!(request_id),
        "wrong requestId in {frame}"
    );
    assert!(
        frame["message"].is_string(),
        "error message is not a string: {frame}"
    );
}

/// Asserts an HTTP error: `status` and `{"error":{"code","message","retryAfterMs"}}`.
pub fn assert_http_error(response: &(u16, Value), status: u16, code: &str) {
    let (actual, body) = response;
    assert_eq!(
        *actual, status,
        "expected HTTP {status} {code}, got {actual} {body}"
    );
    let error = &body["error"];
    assert_keys(error, &["code", "message", "retryAfterMs"]);
    assert_eq!(error["code"], code, "wrong error code in {body}");
    assert!(
        error["message"].is_string(),
        "error message is not a string: {body}"
    );
}

/// Asserts a timestamp is Unix milliseconds taken between `since` and now (1 s slack).
pub fn assert_recent_ms(value: &Value, since_ms: i64) {
    let ts = value
        .as_i64()
        .unwrap_or_else(|| panic!("timestamp is not an integer: {value}"));
    assert!(
        ts >= since_ms - 1000 && ts <= now_ms() + 1000,
        "timestamp {ts} is not Unix ms around now (test started at {since_ms})"
    );
}

/// The `seq` values of a list of message objects or frames.
pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| {
            m["seq"]
                .as_i64()
                .unwrap_or_else(|| panic!("no integer seq in {m}"))
        })
        .collect()
}

/// Asserts every key of `expected` (an object) has that value in `actual`; other keys of
/// `actual` are ignored (clients ignore unknown fields).
pub fn assert_subset(actual: &Value, expected: &Value) {
    let expected = expected
        .as_object()
        .expect("the expected fields are an object");
    for (key, value) in expected {
        assert!(
            actual.get(key) == Some(value),
            "field {key:?}: expected {value}, got {} in {actual}",
            actual
                .get(key)
                .map_or("nothing".to_owned(), Value::to_string)
        );
    }
}

/// Percent-encodes `value` for a query string (opaque cursors may hold `+`, `/`, `=`).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
