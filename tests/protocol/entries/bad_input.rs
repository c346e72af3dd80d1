//! Bad input to the entry actions: `INVALID_MESSAGE`, and the connection stays usable.

use super::*;

/// Sends `frame` (built for a conversation holding alice's message at seq 1) as alice;
/// asserts `INVALID_MESSAGE` echoing `requestId` "bad-1", a connection that still
/// works, that nothing was stored or sent to bob, and that a valid frame of the same
/// action is then acked (so the refusal was for the field, not for the action).
async fn assert_invalid_entry(frame: impl FnOnce(&str) -> Value) {
    let mut d = direct_with(&["target"]).await;
    let frame = frame(&d.id);
    let valid = match frame["action"].as_str() {
        Some("edit") => edit_action(&d.id, "valid", 1, "fine"),
        Some("delete") => delete_action(&d.id, "valid", 1),
        Some("react") => react_action(&d.id, "valid", 1, THUMBS_UP),
        other => panic!("not an entry action: {other:?}"),
    };

    d.alice.send_json(&frame).await;

    let error = d.alice.recv_type("error").await;
    assert_ws_error(&error, "INVALID_MESSAGE", Some("bad-1"));
    assert_eq!(error["retryAfterMs"], Value::Null, "{error}");
    d.alice.heartbeat().await;
    let sentinel = d.alice.send_message(&d.id, "sentinel", "after").await;
    assert_eq!(
        sentinel["seq"], 2,
        "the bad frame stored an entry: {sentinel}"
    );
    let next = d.bob.recv_type("message.new").await;
    assert_eq!(next["clientMessageId"], "sentinel", "{next}");
    let ack = expect_ack(&mut d.alice, valid).await;
    assert_eq!(ack["seq"], 3, "{ack}");
}

/// `base` with a `requestId` "bad-1" and `fields` merged in (a `null` field is removed).
fn with(base: Value, fields: Value) -> Value {
    let mut frame = base;
    frame["requestId"] = json!("bad-1");
    let object = frame.as_object_mut().expect("frames are objects");
    for (key, value) in fields.as_object().expect("fields are an object") {
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.clone(), value.clone());
        }
    }
    frame
}

macro_rules! invalid_entry {
    ($($name:ident: |$id:ident| $frame:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            assert_invalid_entry(|$id: &str| $frame).await;
        }
    )*};
}

invalid_entry! {
    edit_without_target_seq_is_invalid:
        |id| with(edit_action(id, "e-1", 1, "x"), json!({"targetSeq": null}));
    edit_with_string_target_seq_is_invalid:
        |id| with(edit_action(id, "e-1", 1, "x"), json!({"targetSeq": "1"}));
    edit_with_negative_target_seq_is_invalid:
        |id| with(edit_action(id, "e-1", 1, "x"), json!({"targetSeq": -1}));
    edit_with_float_target_seq_is_invalid:
        |id| with(edit_action(id, "e-1", 1, "x"), json!({"targetSeq": 1.5}));
    edit_without_content_is_invalid:
        |id| with(edit_action(id, "e-1", 1, "x"), json!({"content": null}));
    edit_with_string_content_is_invalid:
        |id| with(edit_action(id, "e-1", 1, "x"), json!({"content": "x"}));
    edit_without_client_message_id_is_invalid:
        |id| with(edit_action(id, "e-1", 1, "x"), json!({"clientMessageId": null}));
    edit_with_65_char_client_message_id_is_invalid:
        |id| with(edit_action(id, "e-1", 1, "x"), json!({"clientMessageId": "c".repeat(65)}));
    delete_without_target_seq_is_invalid:
        |id| with(delete_action(id, "d-1", 1), json!({"targetSeq": null}));
    delete_with_string_target_seq_is_invalid:
        |id| with(delete_action(id, "d-1", 1), json!({"targetSeq": "1"}));
    delete_without_conversation_id_is_invalid:
        |id| with(delete_action(id, "d-1", 1), json!({"conversationId": null}));
    delete_with_numeric_client_message_id_is_invalid:
        |id| with(delete_action(id, "d-1", 1), json!({"clientMessageId": 7}));
    react_without_target_seq_is_invalid:
        |id| with(react_action(id, "r-1", 1, THUMBS_UP), json!({"targetSeq": null}));
    react_without_emoji_is_invalid:
        |id| with(react_action(id, "r-1", 1, THUMBS_UP), json!({"emoji": null}));
    react_with_numeric_emoji_is_invalid:
        |id| with(react_action(id, "r-1", 1, THUMBS_UP), json!({"emoji": 128077}));
    react_with_string_removed_is_invalid:
        |id| with(react_action(id, "r-1", 1, THUMBS_UP), json!({"removed": "true"}));
    react_with_numeric_removed_is_invalid:
        |id| with(react_action(id, "r-1", 1, THUMBS_UP), json!({"removed": 1}));
    react_with_empty_emoji_is_invalid:
        |id| react_with_emoji(id, "");
    react_with_65_byte_emoji_is_invalid:
        |id| react_with_emoji(id, &format!("{}a", "😀".repeat(16)));
    react_with_a_space_in_the_emoji_is_invalid:
        |id| react_with_emoji(id, "👍 👍");
    react_with_only_a_space_is_invalid:
        |id| react_with_emoji(id, " ");
    react_with_a_no_break_space_is_invalid:
        |id| react_with_emoji(id, "👍\u{A0}");
    react_with_an_ideographic_space_is_invalid:
        |id| react_with_emoji(id, "\u{3000}");
    react_with_a_newline_is_invalid:
        |id| react_with_emoji(id, "👍\n");
    react_with_a_nul_is_invalid:
        |id| react_with_emoji(id, "👍\u{0}");
    react_with_delete_char_is_invalid:
        |id| react_with_emoji(id, "\u{7F}");
    react_with_a_c1_control_is_invalid:
        |id| react_with_emoji(id, "👍\u{85}");
    react_with_a_line_separator_is_invalid:
        |id| react_with_emoji(id, "👍\u{2028}");
    react_with_a_paragraph_separator_is_invalid:
        |id| react_with_emoji(id, "\u{2029}👍");
}

fn react_with_emoji(id: &str, emoji: &str) -> Value {
    with(react_action(id, "r-1", 1, emoji), json!({}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_emoji_in_a_row_keep_the_connection_usable() {
    // GIVEN alice's message
    let mut d = direct_with(&["hi"]).await;

    // WHEN bob sends several bad reactions in a row
    for (n, emoji) in ["", " ", "x\u{2028}", &"a".repeat(65)]
        .into_iter()
        .enumerate()
    {
        // THEN each is INVALID_MESSAGE
        expect_refused(
            &mut d.bob,
            react_action(&d.id, &format!("r-{n}"), 1, emoji),
            "INVALID_MESSAGE",
        )
        .await;
    }
    // AND a good one right after is stored at seq 2
    let ack = expect_ack(&mut d.bob, react_action(&d.id, "r-ok", 1, THUMBS_UP)).await;
    assert_eq!(ack["seq"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_in_entry_actions_are_ignored() {
    // GIVEN alice's message
    let mut d = direct_with(&["hi"]).await;

    // WHEN alice edits, reacts and deletes with fields the protocol does not define
    let mut edit = edit_action(&d.id, "e-1", 1, "hi!");
    edit["reason"] = json!("typo");
    let mut react = react_action(&d.id, "r-1", 1, THUMBS_UP);
    react["skinTone"] = json!(3);
    let mut delete = delete_action(&d.id, "d-1", 1);
    delete["forEveryone"] = json!(true);

    // THEN each is acked like without them
    assert_subset(
        &expect_ack(&mut d.alice, edit).await,
        &json!({"seq": 2, "kind": "edit"}),
    );
    assert_subset(
        &expect_ack(&mut d.alice, react).await,
        &json!({"seq": 3, "kind": "reaction"}),
    );
    assert_subset(
        &expect_ack(&mut d.alice, delete).await,
        &json!({"seq": 4, "kind": "delete"}),
    );
}
