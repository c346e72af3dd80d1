//! Pushes of attachment messages (PROTOCOL.md 8.3): the caption, else a word for what it
//! carries.

use super::*;

/// A direct conversation where bob, offline, has a phone registered.
async fn bob_offline_with_a_phone() -> (TestServer, String) {
    let (server, id) = direct_pair().await;
    server
        .http("bob")
        .register_device("phone-1", "fcm", "tok-bob")
        .await;
    (server, id)
}

/// alice sends `content` over HTTP; answers its seq.
async fn send_over_http(server: &TestServer, id: &str, cmid: &str, content: Value) -> i64 {
    let (status, ack) = server
        .http("alice")
        .post(
            &format!("/v1/conversations/{id}/messages"),
            &json!({"clientMessageId": cmid, "content": content}),
        )
        .await;
    assert_eq!(status, 201, "{ack}");
    ack["seq"].as_i64().expect("a seq")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_without_caption_is_pushed_as_what_it_is() {
    // GIVEN bob offline with a phone
    let (server, id) = bob_offline_with_a_phone().await;
    let cases = [
        ("image/png", "Photo"),
        ("image/jpeg", "Photo"),
        ("image/heic", "Photo"),
        ("image/svg+xml", "Photo"),
        ("video/mp4", "Video"),
        ("video/quicktime", "Video"),
        ("audio/ogg", "Audio"),
        ("audio/mpeg", "Audio"),
        ("application/pdf", "File"),
        ("text/html", "File"),
    ];

    // WHEN alice sends an attachment of each type without a caption
    let mut expected = Vec::new();
    for (n, (mime, word)) in cases.into_iter().enumerate() {
        let a = uploaded(&server, "alice", &id, mime, &marker(mime), None).await;
        let seq = send_over_http(&server, &id, &format!("cm-{n}"), attachment_content(&a)).await;
        expected.push((seq, mime, word));
    }

    // THEN each push's body is the word for its kind
    let pushes = server
        .wait_for_pushes("one for bob per message", |p| {
            pushes_for(p, "bob").len() >= cases.len()
        })
        .await;
    for (seq, mime, word) in expected {
        let push = pushes_for(&pushes, "bob")
            .into_iter()
            .find(|p| p["data"]["seq"] == seq)
            .unwrap_or_else(|| panic!("no push of seq {seq}: {pushes:#?}"));
        assert_subset(push, &json!({"title": "alice", "body": word}));
        assert_eq!(push["data"]["conversationId"], json!(id), "{mime}: {push}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_with_a_caption_is_pushed_with_the_caption() {
    // GIVEN bob offline with a phone
    let (server, id) = bob_offline_with_a_phone().await;
    let a = uploaded(&server, "alice", &id, "image/png", PNG, None).await;

    // WHEN alice sends a photo with a caption
    let mut content = attachment_content(&a);
    content["text"] = json!("sunset at the lake");
    send_over_http(&server, &id, "cm-1", content).await;

    // THEN the push's body is the caption
    let pushes = server
        .wait_for_pushes("one for bob", |p| !pushes_for(p, "bob").is_empty())
        .await;
    assert_subset(
        pushes_for(&pushes, "bob")[0],
        &json!({"title": "alice", "body": "sunset at the lake", "badge": 1}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_an_attachments_caption_is_not_pushed() {
    // GIVEN bob offline with a phone, pushed alice's photo
    let (server, id) = bob_offline_with_a_phone().await;
    let a = uploaded(&server, "alice", &id, "image/png", PNG, None).await;
    send_over_http(&server, &id, "cm-1", attachment_content(&a)).await;
    server
        .wait_for_pushes("one for bob", |p| !pushes_for(p, "bob").is_empty())
        .await;

    // WHEN alice edits the caption
    let (status, ack) = server
        .http("alice")
        .post(
            &format!("/v1/conversations/{id}/messages"),
            &json!({
                "kind": "edit", "clientMessageId": "e-1", "targetSeq": 1,
                "content": {"type": "attachment", "text": "now with a caption"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{ack}");

    // THEN no other push goes out
    tokio::time::sleep(SHORT).await;
    let pushes = server.push_outbox().await;
    assert_eq!(pushes_for(&pushes, "bob").len(), 1, "{pushes:#?}");
}
