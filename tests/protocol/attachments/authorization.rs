//! Who may read an attachment (PROTOCOL.md 8.3, step 4): members of its conversation once
//! a message uses it, its uploader before; `404` for everyone else, as for an id of no
//! attachment, so existence is never revealed.

use super::*;

/// A group "Team" of alice (admin), bob and carol, with alice's PNG sent at seq 1; and a
/// direct conversation alice-dave. Answers the server, the group and the attachment.
async fn team_with_attachment() -> (TestServer, String, String) {
    let (server, id) = team().await;
    server.http("alice").create_direct("dave").await;
    let mut alice = server.connect("alice").await;
    let a = uploaded(&server, "alice", &id, "image/png", PNG, None).await;
    expect_ack(
        &mut alice,
        send_content(&id, "cm-1", attachment_content(&a)),
    )
    .await;
    (server, id, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_may_read_a_sent_attachment() {
    // GIVEN alice's PNG sent in the group
    let (server, _, a) = team_with_attachment().await;

    // WHEN each member asks for it, THEN each gets the bytes
    for user in ["alice", "bob", "carol"] {
        let fetched = fetch(&download_url(&server, user, &a).await).await;
        assert_eq!(fetched.body, PNG, "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_gets_404_like_for_an_unknown_id() {
    // GIVEN alice's PNG sent in the group; dave shares a conversation with alice, erin none
    let (server, _, a) = team_with_attachment().await;

    // WHEN dave and erin ask for it, THEN both are 404 NOT_FOUND
    assert_no_download(&server, "dave", &a).await;
    assert_no_download(&server, "erin", &a).await;
    // AND an id of no attachment answers the same to a member
    assert_no_download(&server, "bob", &format!("a_{}", "0".repeat(32))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_may_no_longer_read_it() {
    // GIVEN alice's PNG sent in the group, which bob could read
    let (server, id, a) = team_with_attachment().await;
    download_url(&server, "bob", &a).await;

    // WHEN alice removes bob, and carol leaves
    let (status, body) = server.http("alice").remove_member(&id, "bob").await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.http("carol").remove_member(&id, "carol").await;
    assert_eq!(status, 204, "{body}");

    // THEN neither may read it any more
    assert_no_download(&server, "bob", &a).await;
    assert_no_download(&server, "carol", &a).await;
    let (status, answer) = server
        .http("bob")
        .post("/v1/attachments/urls", &json!({"attachmentIds": [a]}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["urls"], json!([]), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_member_may_not_read_it_before_it_is_sent() {
    // GIVEN alice's PNG uploaded in the group, not sent
    let (server, id) = team().await;
    let a = uploaded(&server, "alice", &id, "image/png", PNG, None).await;

    // WHEN bob asks for it, THEN it is 404, while alice may
    assert_no_download(&server, "bob", &a).await;
    let fetched = fetch(&download_url(&server, "alice", &a).await).await;
    assert_eq!(fetched.body, PNG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uploader_may_not_read_it_before_the_upload_completed() {
    // GIVEN alice's attachment, created but not uploaded
    let (server, id) = direct_pair().await;
    let a = new_png(&server, "alice", &id).await;

    // WHEN alice asks for it, THEN it is 404
    assert_no_download(&server, "alice", &a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_id_is_404() {
    // GIVEN a server
    let (server, _) = direct_pair().await;

    // WHEN alice asks for ids that are not attachment ids, THEN each is 404
    for bad in [
        "nope",
        "a_",
        "a_0123",
        "a_0123456789ABCDEF0123456789ABCDEF",
        "a_0123456789abcdef0123456789abcdef0",
        "..%2Fchat.db",
        "a_..%2F..%2Fchat.db",
    ] {
        let answer = download(&server, "alice", bad).await;
        assert_http_error(&answer, 404, "NOT_FOUND");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_without_a_token_is_401() {
    // GIVEN alice's PNG sent in the group
    let (server, _, a) = team_with_attachment().await;

    // WHEN someone without a token asks for it or for a batch
    let single = server
        .http_anon()
        .get(&format!("/v1/attachments/{a}"))
        .await;
    let batch = server
        .http_anon()
        .post("/v1/attachments/urls", &json!({"attachmentIds": [a]}))
        .await;

    // THEN both are 401 UNAUTHORIZED
    assert_http_error(&single, 401, "UNAUTHORIZED");
    assert_http_error(&batch, 401, "UNAUTHORIZED");
}
