//! PROTOCOL.md 8.4: a group's avatar is an image attachment of the group, uploaded by
//! the admin who sets it and used by no message. Set, it counts as used: members read
//! it; replaced or removed, it is deleted.

use super::*;

async fn patch(server: &TestServer, caller: &str, id: &str, body: Value) -> (u16, Value) {
    server
        .http(caller)
        .patch(&format!("/v1/conversations/{id}"), &body)
        .await
}

/// A group of alice (admin), bob and carol, with bob connected.
async fn group() -> (TestServer, String, WsClient) {
    let server = server().start().await;
    let id = conv_id(
        &server
            .http("alice")
            .create_group("Team", &["bob", "carol"])
            .await,
    );
    let bob = server.connect("bob").await;
    (server, id, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_an_avatar_every_member_reads_and_sees_in_the_entry() {
    // GIVEN alice's uploaded image in her group
    let (server, id, mut bob) = group().await;
    let image = uploaded(&server, "alice", &id, "image/png", PNG, Some("team.png")).await;

    // WHEN she makes it the avatar
    let (status, conversation) = patch(&server, "alice", &id, json!({"avatar": image})).await;

    // THEN the group shows it, and bob gets the entry with both details
    assert_eq!(status, 200, "{conversation}");
    assert_subset(&conversation, &json!({"avatar": image, "lastSeq": 1}));
    let entry = bob.recv_type("message.new").await;
    assert_subset(
        &entry,
        &json!({"kind": "system", "event": "details_changed", "actorId": "alice",
                "name": "Team", "avatar": image}),
    );
    let updated = bob.recv_type("conversation.updated").await;
    assert_eq!(updated["conversation"]["avatar"], json!(image));
    // AND every member reads it (not only its uploader), an outsider does not
    for member in ["bob", "carol"] {
        let url = download_url(&server, member, &image).await;
        assert_eq!(fetch(&url).await.body, PNG);
    }
    assert_no_download(&server, "mallory", &image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_or_removed_avatar_is_deleted() {
    // GIVEN a group whose avatar is alice's first image, and her second image
    let (server, id, _bob) = group().await;
    let first_bytes = [PNG, &marker("AVATAR-ONE")].concat();
    let first = uploaded(&server, "alice", &id, "image/png", &first_bytes, None).await;
    let second = uploaded(&server, "alice", &id, "image/png", PNG, None).await;
    let (status, _) = patch(&server, "alice", &id, json!({"avatar": first})).await;
    assert_eq!(status, 200);
    let old_url = download_url(&server, "bob", &first).await;

    // WHEN she replaces it
    let (status, conversation) = patch(&server, "alice", &id, json!({"avatar": second})).await;

    // THEN the group shows the second, and the first is gone for everyone, bytes and all
    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["avatar"], json!(second));
    assert_no_download(&server, "bob", &first).await;
    assert_no_download(&server, "alice", &first).await;
    assert_eq!(fetch(&old_url).await.status, 404);
    assert!(files_holding(data_dir(&server), &first_bytes).is_empty());

    // WHEN she removes it THEN the group has none and the second is gone too
    let (status, conversation) = patch(&server, "alice", &id, json!({"avatar": null})).await;
    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["avatar"], Value::Null);
    assert_no_download(&server, "bob", &second).await;
    assert_eq!(conversation["lastSeq"], 3, "one entry per change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_avatar_must_be_the_admins_unused_image_of_the_group() {
    // GIVEN images of bob, of another group, one sent as a message, a PDF and one not
    // uploaded, and alice's good image
    let (server, id, _bob) = group().await;
    let other = conv_id(&server.http("alice").create_group("Other", &["bob"]).await);
    let bobs = uploaded(&server, "bob", &id, "image/png", PNG, None).await;
    let elsewhere = uploaded(&server, "alice", &other, "image/png", PNG, None).await;
    let pdf = uploaded(&server, "alice", &id, "application/pdf", b"%PDF-1.4", None).await;
    let svg = uploaded(&server, "alice", &id, "image/svg+xml", b"<svg/>", None).await;
    let pending = new_png(&server, "alice", &id).await.id;
    let sent = uploaded(&server, "alice", &id, "image/png", PNG, None).await;
    let mut alice = server.connect("alice").await;
    let ack = alice
        .request(send_content(&id, "m-1", attachment_content(&sent)))
        .await;
    assert_eq!(ack["type"], "message.ack", "{ack}");

    // WHEN alice tries each THEN each is refused and nothing changes
    for bad in [&bobs, &elsewhere, &pdf, &svg, &pending, &sent] {
        let refused = patch(&server, "alice", &id, json!({"avatar": bad})).await;
        assert_http_error(&refused, 400, "INVALID_MESSAGE");
    }
    let refused = patch(&server, "alice", &id, json!({"avatar": "a_nope"})).await;
    assert_http_error(&refused, 400, "INVALID_MESSAGE");
    let conversation = server.http("alice").conversation(&id).await;
    assert_subset(&conversation, &json!({"avatar": null, "lastSeq": 1}));

    // AND a member who is not an admin may not set even their own image
    let refused = patch(&server, "bob", &id, json!({"avatar": bobs})).await;
    assert_http_error(&refused, 403, "FORBIDDEN");

    // AND an image set as avatar can no longer be sent as a message
    let good = uploaded(&server, "alice", &id, "image/jpeg", b"\xff\xd8\xff", None).await;
    let (status, _) = patch(&server, "alice", &id, json!({"avatar": good})).await;
    assert_eq!(status, 200);
    let error = alice
        .request(send_content(&id, "m-2", attachment_content(&good)))
        .await;
    assert_eq!(error["code"], "INVALID_MESSAGE", "{error}");
}
