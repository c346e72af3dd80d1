//! Section 2: every `INVALID_MESSAGE` case on the WebSocket. Each one answers an `error`
//! carrying the `requestId` (and, for a `send`, the `clientMessageId`), stores and sends
//! nothing, and leaves the connection open: a heartbeat right after still gets
//! `heartbeat.ack`.
//! Also `PAYLOAD_TOO_LARGE` for frames and HTTP bodies.

use crate::support::*;

/// What the `requestId` / `clientMessageId` of the error must be.
enum Echo {
    /// `null`.
    Null,
    /// This exact string.
    Is(&'static str),
    /// Present, but the protocol does not pin the value (the field itself was invalid).
    Any,
}

impl Echo {
    fn check(&self, field: &str, error: &Value) {
        match self {
            Echo::Null => assert_eq!(error[field], Value::Null, "{field} in {error}"),
            Echo::Is(value) => assert_eq!(error[field], *value, "{field} in {error}"),
            Echo::Any => assert_keys(error, &[field]),
        }
    }
}

/// Sends `frame` as alice in a fresh direct conversation and checks the error, the open
/// connection, and that nothing was stored or sent to bob.
///
/// The checks that nothing else happened are synchronised, not timed: answers come back
/// in request order, so once the heartbeat after the bad frame is answered any second
/// answer to it would already be buffered; and a valid send after it is stored as seq 1
/// only if the bad frame stored nothing, while whatever the bad frame made the server
/// send to bob (a message, a receipt, typing) reaches bob before that send's
/// `message.new`.
async fn assert_invalid(
    frame: impl FnOnce(&str) -> String,
    request_id: Echo,
    client_message_id: Echo,
) {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;

    alice.send_text(frame(&id)).await;

    let error = alice.recv_type("error").await;
    assert_keys(
        &error,
        &[
            "type",
            "requestId",
            "clientMessageId",
            "code",
            "message",
            "retryAfterMs",
        ],
    );
    assert_eq!(error["code"], "INVALID_MESSAGE", "{error}");
    assert_eq!(error["retryAfterMs"], Value::Null, "{error}");
    assert!(error["message"].is_string(), "{error}");
    request_id.check("requestId", &error);
    client_message_id.check("clientMessageId", &error);
    alice.heartbeat().await;
    alice.expect_quiet(Duration::ZERO).await;

    let sentinel = alice
        .send_message(&id, "sentinel", "after the bad frame")
        .await;
    assert_eq!(
        sentinel["seq"], 1,
        "the bad frame stored a message: {sentinel}"
    );
    let delivered = bob.recv_type("message.new").await;
    assert_eq!(delivered["clientMessageId"], "sentinel", "{delivered}");
    bob.expect_quiet(Duration::ZERO).await;
}

/// `{"action":"send",...}` with `fields` merged in (a `null` field is removed).
fn send_with(id: &str, fields: Value) -> String {
    let mut frame = json!({
        "action": "send", "requestId": "bad-1", "conversationId": id,
        "clientMessageId": "cm-1", "content": {"type": "text", "text": "hi"},
    });
    merge(&mut frame, fields);
    frame.to_string()
}

/// `{"action": action, "requestId":"bad-1", "conversationId": id}` with `fields` merged.
fn action_with(action: &str, id: &str, fields: Value) -> String {
    let mut frame = json!({"action": action, "requestId": "bad-1", "conversationId": id});
    merge(&mut frame, fields);
    frame.to_string()
}

fn merge(frame: &mut Value, fields: Value) {
    let object = frame.as_object_mut().expect("frames are objects");
    for (key, value) in fields.as_object().expect("fields are an object") {
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.clone(), value.clone());
        }
    }
}

macro_rules! invalid {
    ($($name:ident: |$id:ident| $frame:expr, requestId: $rid:expr, clientMessageId: $cmid:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            #[allow(unused_variables)]
            let frame = |$id: &str| -> String { $frame };
            assert_invalid(frame, $rid, $cmid).await;
        }
    )*};
}

invalid! {
    malformed_json_is_invalid:
        |id| r#"{"action":"heartbeat","#.to_owned(),
        requestId: Echo::Null, clientMessageId: Echo::Null;
    number_frame_is_invalid:
        |id| "42".to_owned(),
        requestId: Echo::Null, clientMessageId: Echo::Null;
    string_frame_is_invalid:
        |id| r#""heartbeat""#.to_owned(),
        requestId: Echo::Null, clientMessageId: Echo::Null;
    null_frame_is_invalid:
        |id| "null".to_owned(),
        requestId: Echo::Null, clientMessageId: Echo::Null;
    array_frame_is_invalid:
        |id| r#"[{"action":"heartbeat","requestId":"in-array"}]"#.to_owned(),
        requestId: Echo::Null, clientMessageId: Echo::Null;
    empty_frame_is_invalid:
        |id| String::new(),
        requestId: Echo::Null, clientMessageId: Echo::Null;
    missing_action_is_invalid:
        |id| json!({"requestId": "bad-1", "conversationId": id}).to_string(),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    unknown_action_is_invalid:
        |id| json!({"action": "fly", "requestId": "bad-1"}).to_string(),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    non_string_action_is_invalid:
        |id| json!({"action": 7, "requestId": "bad-1"}).to_string(),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    request_id_over_64_chars_is_invalid:
        |id| json!({"action": "heartbeat", "requestId": "r".repeat(65)}).to_string(),
        requestId: Echo::Any, clientMessageId: Echo::Null;
    non_string_request_id_is_invalid:
        |id| json!({"action": "heartbeat", "requestId": 12}).to_string(),
        requestId: Echo::Any, clientMessageId: Echo::Null;

    send_without_conversation_id_is_invalid:
        |id| send_with(id, json!({"conversationId": null})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_numeric_conversation_id_is_invalid:
        |id| send_with(id, json!({"conversationId": 5})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_without_client_message_id_is_invalid:
        |id| send_with(id, json!({"clientMessageId": null})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    send_with_empty_client_message_id_is_invalid:
        |id| send_with(id, json!({"clientMessageId": ""})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Any;
    send_with_65_char_client_message_id_is_invalid:
        |id| send_with(id, json!({"clientMessageId": "c".repeat(65)})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Any;
    send_with_numeric_client_message_id_is_invalid:
        |id| send_with(id, json!({"clientMessageId": 1})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Any;
    send_without_content_is_invalid:
        |id| send_with(id, json!({"content": null})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_string_content_is_invalid:
        |id| send_with(id, json!({"content": "hi"})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_empty_text_is_invalid:
        |id| send_with(id, json!({"content": {"type": "text", "text": ""}})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_4001_char_text_is_invalid:
        |id| send_with(id, json!({"content": {"type": "text", "text": "a".repeat(4001)}})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_4001_emoji_text_is_invalid:
        |id| send_with(id, json!({"content": {"type": "text", "text": "😀".repeat(4001)}})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_without_text_is_invalid:
        |id| send_with(id, json!({"content": {"type": "text"}})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_numeric_text_is_invalid:
        |id| send_with(id, json!({"content": {"type": "text", "text": 5}})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_image_content_is_invalid:
        |id| send_with(id, json!({"content": {"type": "image", "url": "https://example.com/a.png"}})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_without_content_type_is_invalid:
        |id| send_with(id, json!({"content": {"text": "hi"}})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_zero_reply_to_is_invalid:
        |id| send_with(id, json!({"replyTo": 0})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_negative_reply_to_is_invalid:
        |id| send_with(id, json!({"replyTo": -1})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_string_reply_to_is_invalid:
        |id| send_with(id, json!({"replyTo": "1"})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_float_reply_to_is_invalid:
        |id| send_with(id, json!({"replyTo": 1.5})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");
    send_with_reply_to_beyond_last_seq_is_invalid:
        |id| send_with(id, json!({"replyTo": 1})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Is("cm-1");

    read_without_up_to_seq_is_invalid:
        |id| action_with("read", id, json!({})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    read_with_negative_up_to_seq_is_invalid:
        |id| action_with("read", id, json!({"upToSeq": -1})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    read_with_float_up_to_seq_is_invalid:
        |id| action_with("read", id, json!({"upToSeq": 1.5})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    read_with_string_up_to_seq_is_invalid:
        |id| action_with("read", id, json!({"upToSeq": "1"})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    read_without_conversation_id_is_invalid:
        |id| action_with("read", id, json!({"conversationId": null, "upToSeq": 0})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    delivered_with_negative_up_to_seq_is_invalid:
        |id| action_with("delivered", id, json!({"upToSeq": -5})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    delivered_with_float_up_to_seq_is_invalid:
        |id| action_with("delivered", id, json!({"upToSeq": 0.5})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    delivered_with_string_up_to_seq_is_invalid:
        |id| action_with("delivered", id, json!({"upToSeq": "3"})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    typing_with_string_is_typing_is_invalid:
        |id| action_with("typing", id, json!({"isTyping": "yes"})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    typing_with_numeric_is_typing_is_invalid:
        |id| action_with("typing", id, json!({"isTyping": 1})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    typing_without_is_typing_is_invalid:
        |id| action_with("typing", id, json!({})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
    typing_without_conversation_id_is_invalid:
        |id| action_with("typing", id, json!({"conversationId": null, "isTyping": true})),
        requestId: Echo::Is("bad-1"), clientMessageId: Echo::Null;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_errors_in_a_row_keep_the_connection_open() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let frames = [
        "{".to_owned(),
        "[]".to_owned(),
        json!({"action": "nope"}).to_string(),
        send_with(
            &id,
            json!({"content": {"type": "text", "text": ""}, "requestId": null}),
        ),
        action_with("read", &id, json!({"upToSeq": -1, "requestId": null})),
    ];
    let count = frames.len();

    for frame in frames {
        alice.send_text(frame).await;
    }

    for _ in 0..count {
        assert_eq!(alice.recv_type("error").await["code"], "INVALID_MESSAGE");
    }
    alice.heartbeat().await;
    let ack = alice.send_message(&id, "cm-ok", "still works").await;
    assert_eq!(ack["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_over_32_kib_is_payload_too_large_and_keeps_the_connection() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let frame = send_with(
        &id,
        json!({"content": {"type": "text", "text": "x".repeat(40 * 1024)}}),
    );
    assert!(frame.len() > 40 * 1024);

    alice.send_text(frame).await;

    let error = alice.recv_type("error").await;
    assert_keys(
        &error,
        &[
            "requestId",
            "clientMessageId",
            "code",
            "message",
            "retryAfterMs",
        ],
    );
    assert_eq!(error["code"], "PAYLOAD_TOO_LARGE", "{error}");
    alice.heartbeat().await;
    bob.expect_silence("message.new", SHORT).await;
    assert_eq!(server.http("alice").conversation(&id).await["lastSeq"], 0);
    assert_eq!(alice.send_message(&id, "cm-2", "small").await["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_body_over_256_kib_is_413() {
    let (server, id) = direct_pair().await;
    let body = json!({
        "clientMessageId": "cm-huge",
        "content": {"type": "text", "text": "x".repeat(300 * 1024)},
    })
    .to_string();

    let response = server
        .http("alice")
        .raw(
            Method::POST,
            &format!("/v1/conversations/{id}/messages"),
            body,
            "application/json",
        )
        .await;

    assert_http_error(&response, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(server.http("alice").conversation(&id).await["lastSeq"], 0);
}
