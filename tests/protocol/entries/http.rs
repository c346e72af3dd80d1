//! Entries over HTTP: `POST .../messages` with a `kind`.

use super::*;

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_post_with_a_kind_makes_edit_reaction_and_delete_entries() {
    // GIVEN alice and bob connected, and alice's message sent over HTTP
    let (server, id) = direct_pair().await;
    let mut alice_ws = server.connect("alice").await;
    let mut bob_ws = server.connect("bob").await;
    let (status, sent) = http_entry(
        &server,
        "alice",
        &id,
        json!({"clientMessageId": "cm-1", "content": text("hi")}),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    assert_keys(&sent, HTTP_ACK_KEYS);
    assert_subset(&sent, &json!({"seq": 1, "kind": "message"}));

    // WHEN alice posts an edit, a reaction, a delete and an explicit `message`
    let bodies = [
        json!({"kind": "edit", "clientMessageId": "e-1", "targetSeq": 1, "content": text("hi!")}),
        json!({"kind": "reaction", "clientMessageId": "r-1", "targetSeq": 1, "emoji": THUMBS_UP, "removed": false}),
        json!({"kind": "delete", "clientMessageId": "d-1", "targetSeq": 1}),
        json!({"kind": "message", "clientMessageId": "cm-5", "content": text("again"), "replyTo": null}),
    ];
    let expected = [
        json!({"kind": "edit", "targetSeq": 1, "content": text("hi!")}),
        json!({"kind": "reaction", "targetSeq": 1, "emoji": THUMBS_UP, "removed": false}),
        json!({"kind": "delete", "targetSeq": 1, "deletedBy": "alice"}),
        json!({"kind": "message", "content": text("again"), "deleted": false}),
    ];
    for (n, (body, fields)) in bodies.into_iter().zip(expected).enumerate() {
        let seq = n as i64 + 2;
        let (status, ack) = http_entry(&server, "alice", &id, body.clone()).await;

        // THEN each is 201 with the ack fields and its kind
        assert_eq!(status, 201, "{body}: {ack}");
        assert_keys(&ack, HTTP_ACK_KEYS);
        assert_subset(
            &ack,
            &json!({"conversationId": id, "clientMessageId": body["clientMessageId"], "seq": seq, "kind": body["kind"], "duplicate": false}),
        );
        // AND every connection, alice's too, gets the entry
        for ws in [&mut alice_ws, &mut bob_ws] {
            let frame = recv_entry(ws, &id, seq).await;
            assert_subset(&frame, &fields);
            assert_subset(
                &frame,
                &json!({"senderId": "alice", "messageId": ack["messageId"]}),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_retry_of_an_entry_answers_200_with_the_original() {
    // GIVEN alice's message and her reaction to it over HTTP
    let (server, id) = direct_pair().await;
    server.http("alice").send_message(&id, "cm-1", "hi").await;
    let body =
        json!({"kind": "reaction", "clientMessageId": "r-1", "targetSeq": 1, "emoji": THUMBS_UP});
    let (status, original) = http_entry(&server, "alice", &id, body.clone()).await;
    assert_eq!(status, 201, "{original}");

    // WHEN alice retries it over HTTP, also naming another kind, and over WebSocket
    let (again_status, again) = http_entry(&server, "alice", &id, body).await;
    let (other_status, as_edit) = http_entry(
        &server,
        "alice",
        &id,
        json!({"kind": "edit", "clientMessageId": "r-1", "targetSeq": 1, "content": text("x")}),
    )
    .await;
    let mut alice = server.connect("alice").await;
    let over_ws = expect_ack(&mut alice, react_action(&id, "r-1", 1, THUMBS_UP)).await;

    // THEN each is the original ack with `duplicate: true` (HTTP 200)
    assert_eq!(
        (again_status, other_status),
        (200, 200),
        "{again} {as_edit}"
    );
    for ack in [&again, &as_edit, &over_ws] {
        assert_subset(
            ack,
            &json!({
                "clientMessageId": "r-1", "messageId": original["messageId"], "seq": 2,
                "timestamp": original["timestamp"], "kind": "reaction", "duplicate": true,
            }),
        );
    }
    assert_eq!(last_seq(&server, "alice", &id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_unknown_kind_is_invalid() {
    // GIVEN alice's message
    let (server, id) = direct_pair().await;
    server.http("alice").send_message(&id, "cm-1", "hi").await;

    // WHEN alice posts a kind that does not exist, one only the server makes, or one of
    // the wrong type
    for kind in [
        json!("poll"),
        json!("system"),
        json!("Edit"),
        json!(""),
        json!(5),
    ] {
        let response = http_entry(
            &server,
            "alice",
            &id,
            json!({"kind": kind, "clientMessageId": "k-1", "targetSeq": 1, "content": text("x"), "emoji": THUMBS_UP}),
        )
        .await;
        // THEN it is 400 INVALID_MESSAGE
        assert_eq!(response.0, 400, "kind {kind}: {}", response.1);
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
    assert_eq!(last_seq(&server, "alice", &id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_entries_follow_the_websocket_rules() {
    // GIVEN alice's message, and one she deleted
    let (server, id) = direct_pair().await;
    server.http("alice").send_message(&id, "cm-1", "hi").await;
    server.http("alice").send_message(&id, "cm-2", "bye").await;
    let (status, body) = http_entry(
        &server,
        "alice",
        &id,
        json!({"kind": "delete", "clientMessageId": "d-1", "targetSeq": 2}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // WHEN bob edits alice's message, reacts to the deleted one, alice names a target
    // that is no message, reacts with a bad emoji, or omits targetSeq
    // THEN each gets the WebSocket's code as its HTTP status
    let cases = [
        (
            "bob",
            json!({"kind": "edit", "clientMessageId": "x-1", "targetSeq": 1, "content": text("x")}),
            403,
            "FORBIDDEN",
        ),
        (
            "bob",
            json!({"kind": "reaction", "clientMessageId": "x-2", "targetSeq": 2, "emoji": THUMBS_UP}),
            403,
            "FORBIDDEN",
        ),
        (
            "alice",
            json!({"kind": "delete", "clientMessageId": "x-3", "targetSeq": 3}),
            404,
            "NOT_FOUND",
        ),
        (
            "alice",
            json!({"kind": "reaction", "clientMessageId": "x-4", "targetSeq": 1, "emoji": "a b"}),
            400,
            "INVALID_MESSAGE",
        ),
        (
            "alice",
            json!({"kind": "delete", "clientMessageId": "x-5"}),
            400,
            "INVALID_MESSAGE",
        ),
        (
            "zed",
            json!({"kind": "reaction", "clientMessageId": "x-6", "targetSeq": 1, "emoji": THUMBS_UP}),
            404,
            "NOT_FOUND",
        ),
    ];
    for (user, body, status, code) in cases {
        let response = http_entry(&server, user, &id, body.clone()).await;
        assert_eq!(response.0, status, "{user} {body}: {}", response.1);
        assert_http_error(&response, status, code);
    }
    assert_eq!(last_seq(&server, "alice", &id).await, 3);
}

// ---------------------------------------------------------------------------------------
