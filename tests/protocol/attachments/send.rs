//! Sending an attachment (PROTOCOL.md 8.3, step 3): the ack, the content stored and fanned
//! out, over WebSocket and HTTP, with a thumbnail, and retries.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_message_is_acked_and_fanned_out_with_the_complete_content() {
    // GIVEN alice's uploaded PNG named cat.png, and alice and bob connected
    let mut p = pair().await;
    let a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, Some("cat.png")).await;
    let t0 = now_ms();

    // WHEN alice sends it with a caption, its size as displayed and a preview
    let mut action = send_content(
        &p.id,
        "cm-1",
        json!({
            "type": "attachment", "attachmentId": a, "text": "look",
            "width": 640, "height": 480, "preview": PREVIEW,
        }),
    );
    action["requestId"] = json!("r-1");
    let ack = expect_ack(&mut p.alice, action).await;

    // THEN the ack is a message's at seq 1
    assert_subset(
        &ack,
        &json!({
            "type": "message.ack", "requestId": "r-1", "conversationId": p.id,
            "clientMessageId": "cm-1", "seq": 1, "kind": "message", "duplicate": false,
        }),
    );
    assert_recent_ms(&ack["timestamp"], t0);
    // AND bob gets the complete content: the attachment described by the server
    let mut expected = stored_content(&a, "image/png", PNG.len(), Some("cat.png"));
    expected["text"] = json!("look");
    expected["width"] = json!(640);
    expected["height"] = json!(480);
    expected["preview"] = json!(PREVIEW);
    let frame = recv_entry(&mut p.bob, &p.id, 1).await;
    assert_subset(
        &frame,
        &json!({
            "type": "message.new", "conversationId": p.id, "seq": 1, "senderId": "alice",
            "clientMessageId": "cm-1", "messageId": ack["messageId"], "kind": "message",
            "timestamp": ack["timestamp"], "content": expected, "editedAt": null,
            "deleted": false, "reactions": [],
        }),
    );
    // AND alice's sending connection gets only its ack
    p.alice.expect_silence("message.new", SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_without_caption_has_empty_text_and_null_display_fields() {
    // GIVEN alice's uploaded PDF without a file name
    let mut p = pair().await;
    let bytes = marker("pdf");
    let a = uploaded(&p.server, "alice", &p.id, "application/pdf", &bytes, None).await;

    // WHEN alice sends it with nothing but its id
    expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&a)),
    )
    .await;

    // THEN bob's frame and history hold text "" and every optional field null
    let expected = stored_content(&a, "application/pdf", bytes.len(), None);
    let frame = recv_entry(&mut p.bob, &p.id, 1).await;
    assert_eq!(frame["content"], expected, "{frame}");
    let history = all_messages(&p.server.http("bob"), &p.id).await;
    assert_eq!(entry_at(&history, 1)["content"], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_sync_return_the_stored_content() {
    // GIVEN alice's video sent with a caption, a duration and a thumbnail
    let mut p = pair().await;
    let video_bytes = marker("video");
    let video = uploaded(
        &p.server,
        "alice",
        &p.id,
        "video/mp4",
        &video_bytes,
        Some("clip.mp4"),
    )
    .await;
    let thumb = uploaded(&p.server, "alice", &p.id, "image/jpeg", PNG, None).await;
    let ack = expect_ack(
        &mut p.alice,
        send_content(
            &p.id,
            "cm-1",
            json!({
                "type": "attachment", "attachmentId": video, "text": "the goal",
                "width": 1080, "height": 1920, "durationMs": 15_250,
                "preview": PREVIEW, "thumbnailId": thumb,
            }),
        ),
    )
    .await;

    // WHEN bob reads history and syncs
    let history = all_messages(&p.server.http("bob"), &p.id).await;
    let synced = sync_one(&p.server, "bob", &p.id, 0).await;

    // THEN both hold the message with the complete content
    let expected = json!({
        "type": "attachment",
        "attachment": {
            "attachmentId": video, "mimeType": "video/mp4", "size": video_bytes.len(),
            "fileName": "clip.mp4",
        },
        "text": "the goal", "width": 1080, "height": 1920, "durationMs": 15_250,
        "preview": PREVIEW, "thumbnailId": thumb,
    });
    let synced_messages = synced["messages"].as_array().expect("messages").clone();
    for message in [entry_at(&history, 1), entry_at(&synced_messages, 1)] {
        assert_subset(
            message,
            &json!({
                "kind": "message", "senderId": "alice", "messageId": ack["messageId"],
                "content": expected,
            }),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mime_type_is_stored_in_lowercase() {
    // GIVEN alice's attachment created as Image/PNG
    let mut p = pair().await;
    let a = created(
        &p.server,
        "alice",
        &new_attachment(&p.id, "Image/PNG", PNG.len()),
    )
    .await;
    assert_uploaded(&put(&a.upload, PNG).await);

    // WHEN alice sends it
    expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&a.id)),
    )
    .await;

    // THEN its content says image/png
    let frame = recv_entry(&mut p.bob, &p.id, 1).await;
    assert_eq!(
        frame["content"]["attachment"]["mimeType"], "image/png",
        "{frame}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_over_http_stores_the_same_content() {
    // GIVEN alice's uploaded PNG and bob connected
    let mut p = pair().await;
    let a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;

    // WHEN alice sends it over HTTP with a caption
    let (status, ack) = p
        .server
        .http("alice")
        .post(
            &format!("/v1/conversations/{}/messages", p.id),
            &json!({
                "clientMessageId": "cm-1",
                "content": {"type": "attachment", "attachmentId": a, "text": "via http"},
                "replyTo": null,
            }),
        )
        .await;

    // THEN it is 201 with the ack fields, and bob gets the complete content
    assert_eq!(status, 201, "{ack}");
    assert_subset(
        &ack,
        &json!({"clientMessageId": "cm-1", "seq": 1, "kind": "message", "duplicate": false}),
    );
    let mut expected = stored_content(&a, "image/png", PNG.len(), None);
    expected["text"] = json!("via http");
    let frame = recv_entry(&mut p.bob, &p.id, 1).await;
    assert_eq!(frame["content"], expected, "{frame}");
    // AND alice's connection gets it too (it did not send it)
    let own = recv_entry(&mut p.alice, &p.id, 1).await;
    assert_eq!(own["content"], expected, "{own}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_attachment_send_is_acked_as_a_duplicate() {
    // GIVEN alice's attachment, sent and acked
    let mut p = pair().await;
    let a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;
    let first = expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&a)),
    )
    .await;
    recv_entry(&mut p.bob, &p.id, 1).await;

    // WHEN alice retries the same send over WebSocket and over HTTP
    let retry = expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&a)),
    )
    .await;
    let (status, http_retry) = p
        .server
        .http("alice")
        .post(
            &format!("/v1/conversations/{}/messages", p.id),
            &json!({"clientMessageId": "cm-1", "content": attachment_content(&a)}),
        )
        .await;

    // THEN both get the original ack with duplicate: true, and nothing new is stored
    for again in [&retry, &http_retry] {
        assert_subset(
            again,
            &json!({
                "messageId": first["messageId"], "seq": 1, "timestamp": first["timestamp"],
                "duplicate": true,
            }),
        );
    }
    assert_eq!(status, 200, "{http_retry}");
    assert_eq!(last_seq(&p.server, "alice", &p.id).await, 1);
    p.bob.expect_silence("message.new", SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_message_may_reply_and_be_replied_to() {
    // GIVEN bob's text at seq 1
    let mut p = pair().await;
    p.bob
        .send_message(&p.id, "bob-1", "send me the photo")
        .await;
    recv_entry(&mut p.alice, &p.id, 1).await;
    let a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;

    // WHEN alice replies with an attachment, and bob replies to that
    let mut action = send_content(&p.id, "cm-1", attachment_content(&a));
    action["replyTo"] = json!(1);
    expect_ack(&mut p.alice, action).await;
    let mut reply = send_action(&p.id, "bob-2", "thanks");
    reply["replyTo"] = json!(2);
    expect_ack(&mut p.bob, reply).await;

    // THEN history holds both links
    let history = all_messages(&p.server.http("alice"), &p.id).await;
    assert_eq!(entry_at(&history, 2)["replyTo"], 1);
    assert_eq!(entry_at(&history, 2)["content"]["type"], "attachment");
    assert_eq!(entry_at(&history, 3)["replyTo"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_message_is_the_conversations_last_message() {
    // GIVEN alice's attachment sent
    let mut p = pair().await;
    let a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, Some("cat.png")).await;
    expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&a)),
    )
    .await;

    // WHEN bob reads the conversation
    let conversation = p.server.http("bob").conversation(&p.id).await;

    // THEN its lastMessage carries the attachment content, and it counts as unread
    assert_eq!(
        conversation["lastMessage"]["content"],
        stored_content(&a, "image/png", PNG.len(), Some("cat.png")),
        "{conversation}"
    );
    assert_eq!(conversation["unreadCount"], 1, "{conversation}");
}
