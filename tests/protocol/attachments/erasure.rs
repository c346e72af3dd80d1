//! Deleting erases (PROTOCOL.md 8.2 and 8.3): once its message is deleted, an
//! attachment's bytes are gone from every file of the server's data directory, its
//! download URLs answer `404`, and no one gets a new one.

use super::*;

/// How long the server has to erase after a delete (PROTOCOL.md 8.2).
const ERASE_WITHIN: Duration = Duration::from_secs(60);

/// Why attachment `id` with `bytes` is not erased yet (`None` once it is): a download URL
/// handed out before that still answers something else than `404`, a user still gets a
/// URL, or a file under the data directory still holds the bytes.
async fn not_erased(server: &TestServer, id: &str, bytes: &[u8], old_url: &str) -> Option<String> {
    let fetched = fetch(old_url).await;
    if fetched.status != 404 {
        return Some(format!("the old download URL answers {fetched:?}"));
    }
    for user in ["alice", "bob"] {
        let (status, answer) = download(server, user, id).await;
        if status != 404 {
            return Some(format!(
                "{user} still gets a download URL: {status} {answer}"
            ));
        }
    }
    let holding = files_holding(data_dir(server), bytes);
    if !holding.is_empty() {
        return Some(format!("the bytes are still in {holding:?}"));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_attachment_message_erases_its_bytes() {
    // GIVEN alice's attachment of unique bytes, sent with a caption and downloaded by bob
    let mut p = pair().await;
    let bytes = marker("ERASE-ME-attachment");
    let name = format!("{}.pdf", unique("secret-name"));
    let a = uploaded(
        &p.server,
        "alice",
        &p.id,
        "application/pdf",
        &bytes,
        Some(&name),
    )
    .await;
    let mut content = attachment_content(&a);
    content["text"] = json!("the caption");
    let ack = expect_ack(&mut p.alice, send_content(&p.id, "cm-1", content)).await;
    let seq = ack["seq"].as_i64().expect("a seq");
    let url = download_url(&p.server, "bob", &a).await;
    assert_eq!(fetch(&url).await.body, bytes);
    // (the bytes are on disk under the data directory: the test looks in the right place)
    assert!(
        !files_holding(data_dir(&p.server), &bytes).is_empty(),
        "no file under {:?} holds the uploaded bytes",
        data_dir(&p.server)
    );

    // WHEN alice deletes the message
    expect_ack(&mut p.alice, delete_action(&p.id, "d-1", seq)).await;

    // THEN soon the old URL answers 404, nobody gets a new one, and no file holds the bytes
    eventually(ERASE_WITHIN, || not_erased(&p.server, &a, &bytes, &url)).await;
    // AND its record too: no file holds its file name (the WAL included)
    eventually(ERASE_WITHIN, || async {
        let holding = files_holding(data_dir(&p.server), name.as_bytes());
        (!holding.is_empty()).then(|| format!("the file name is still in {holding:?}"))
    })
    .await;
    // AND the message is a tombstone
    let history = all_messages(&p.server.http("bob"), &p.id).await;
    assert_subset(
        entry_at(&history, seq),
        &json!({"deleted": true, "deletedBy": "alice", "content": null}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_erases_the_thumbnail_too() {
    // GIVEN alice's video of unique bytes sent with a thumbnail of unique bytes
    let mut p = pair().await;
    let video_bytes = marker("ERASE-ME-video");
    let thumb_bytes = [PNG, &marker("ERASE-ME-thumb")].concat();
    let video = uploaded(&p.server, "alice", &p.id, "video/mp4", &video_bytes, None).await;
    let thumb = uploaded(&p.server, "alice", &p.id, "image/png", &thumb_bytes, None).await;
    let mut content = attachment_content(&video);
    content["thumbnailId"] = json!(thumb);
    let ack = expect_ack(&mut p.alice, send_content(&p.id, "cm-1", content)).await;
    let video_url = download_url(&p.server, "bob", &video).await;
    let thumb_url = download_url(&p.server, "bob", &thumb).await;
    assert_eq!(fetch(&thumb_url).await.body, thumb_bytes);

    // WHEN alice deletes the message
    let seq = ack["seq"].as_i64().expect("a seq");
    expect_ack(&mut p.alice, delete_action(&p.id, "d-1", seq)).await;

    // THEN both the video and its thumbnail are erased
    eventually(ERASE_WITHIN, || {
        not_erased(&p.server, &video, &video_bytes, &video_url)
    })
    .await;
    eventually(ERASE_WITHIN, || {
        not_erased(&p.server, &thumb, &thumb_bytes, &thumb_url)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_admin_deleting_a_members_attachment_erases_it() {
    // GIVEN bob's attachment of unique bytes sent in alice's group
    let (server, id) = team().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let bytes = marker("ERASE-ME-bobs");
    let a = uploaded(&server, "bob", &id, "image/webp", &bytes, None).await;
    let ack = expect_ack(&mut bob, send_content(&id, "bob-1", attachment_content(&a))).await;
    let url = download_url(&server, "alice", &a).await;

    // WHEN alice, an admin, deletes it
    let seq = ack["seq"].as_i64().expect("a seq");
    expect_ack(&mut alice, delete_action(&id, "d-1", seq)).await;

    // THEN it is erased
    eventually(ERASE_WITHIN, || not_erased(&server, &a, &bytes, &url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_another_message_keeps_the_attachment() {
    // GIVEN alice's attachment sent at seq 1 and a text at seq 2
    let mut p = pair().await;
    let bytes = marker("KEEP-ME");
    let a = uploaded(&p.server, "alice", &p.id, "application/pdf", &bytes, None).await;
    expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&a)),
    )
    .await;
    p.alice.send_message(&p.id, "cm-2", "unrelated").await;
    let url = download_url(&p.server, "bob", &a).await;

    // WHEN alice deletes the text, and edits the attachment's caption
    expect_ack(&mut p.alice, delete_action(&p.id, "d-1", 2)).await;
    expect_ack(
        &mut p.alice,
        json!({
            "action": "edit", "conversationId": p.id, "clientMessageId": "e-1",
            "targetSeq": 1, "content": {"type": "attachment", "text": "new caption"},
        }),
    )
    .await;
    // (a new entry after both, so whatever the delete did in the background is done)
    p.alice.send_message(&p.id, "cm-3", "later").await;
    tokio::time::sleep(SHORT).await;

    // THEN the attachment is still served, by the old URL and a new one
    assert_eq!(fetch(&url).await.body, bytes);
    assert_eq!(
        fetch(&download_url(&p.server, "bob", &a).await).await.body,
        bytes
    );
    assert!(!files_holding(data_dir(&p.server), &bytes).is_empty());
}
