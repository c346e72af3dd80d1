//! Editing an attachment message (PROTOCOL.md 8.2): only its caption changes; the edit
//! entry and the target carry the complete content.

use super::*;

/// alice and bob connected; alice's PNG `cat.png` sent at seq 1 with caption "first",
/// received by bob. Answers the pair and the attachment id.
async fn sent_with_caption() -> (Pair, String) {
    let mut p = pair().await;
    let a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, Some("cat.png")).await;
    expect_ack(
        &mut p.alice,
        send_content(
            &p.id,
            "cm-1",
            json!({
                "type": "attachment", "attachmentId": a, "text": "first",
                "width": 1, "height": 1, "preview": PREVIEW,
            }),
        ),
    )
    .await;
    recv_entry(&mut p.bob, &p.id, 1).await;
    (p, a)
}

/// The content of the message [`sent_with_caption`] sends, with caption `text`.
fn content_with(a: &str, text: &str) -> Value {
    let mut content = stored_content(a, "image/png", PNG.len(), Some("cat.png"));
    content["text"] = json!(text);
    content["width"] = json!(1);
    content["height"] = json!(1);
    content["preview"] = json!(PREVIEW);
    content
}

/// `{"action":"edit",...}` of seq 1 with `content`.
fn edit(conversation_id: &str, client_message_id: &str, content: Value) -> Value {
    json!({
        "action": "edit",
        "conversationId": conversation_id,
        "clientMessageId": client_message_id,
        "targetSeq": 1,
        "content": content,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_caption_keeps_the_attachment_and_carries_the_complete_content() {
    // GIVEN alice's PNG sent with caption "first"
    let (mut p, a) = sent_with_caption().await;

    // WHEN alice edits the caption
    let ack = expect_ack(
        &mut p.alice,
        edit(
            &p.id,
            "e-1",
            json!({"type": "attachment", "text": "second"}),
        ),
    )
    .await;

    // THEN the edit entry bob receives carries the complete content with the new caption
    assert_subset(&ack, &json!({"seq": 2, "kind": "edit"}));
    let frame = recv_entry(&mut p.bob, &p.id, 2).await;
    assert_subset(
        &frame,
        &json!({"kind": "edit", "targetSeq": 1, "content": content_with(&a, "second")}),
    );
    // AND in history the target has that content, and the edit entry too
    let history = all_messages(&p.server.http("bob"), &p.id).await;
    assert_subset(
        entry_at(&history, 1),
        &json!({"content": content_with(&a, "second"), "editedAt": ack["timestamp"]}),
    );
    assert_subset(
        entry_at(&history, 2),
        &json!({"kind": "edit", "targetSeq": 1, "content": content_with(&a, "second")}),
    );
    // AND bob still may download the attachment
    let fetched = fetch(&download_url(&p.server, "bob", &a).await).await;
    assert_eq!(fetched.body, PNG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_caption_clears_it() {
    // GIVEN alice's PNG sent with caption "first"
    let (mut p, a) = sent_with_caption().await;

    // WHEN alice edits it with an empty text
    expect_ack(
        &mut p.alice,
        edit(&p.id, "e-1", json!({"type": "attachment", "text": ""})),
    )
    .await;

    // THEN the message has no caption and the same attachment
    let frame = recv_entry(&mut p.bob, &p.id, 2).await;
    assert_eq!(frame["content"], content_with(&a, ""), "{frame}");
    let history = all_messages(&p.server.http("bob"), &p.id).await;
    assert_eq!(entry_at(&history, 1)["content"], content_with(&a, ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_cannot_change_the_attachment() {
    // GIVEN alice's PNG sent, and another PNG of hers uploaded
    let (mut p, a) = sent_with_caption().await;
    let other = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;

    // WHEN alice edits the message naming an attachment, the other or the same
    for (n, content) in [
        json!({"type": "attachment", "text": "x", "attachmentId": other}),
        json!({"type": "attachment", "text": "x", "attachmentId": a}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut action = edit(&p.id, &format!("e-{n}"), content);
        action["requestId"] = json!(format!("bad-{n}"));

        // THEN each is INVALID_MESSAGE and nothing is stored
        expect_refused(&mut p.alice, action, "INVALID_MESSAGE").await;
    }
    assert_eq!(last_seq(&p.server, "alice", &p.id).await, 1);
    let history = all_messages(&p.server.http("bob"), &p.id).await;
    assert_eq!(entry_at(&history, 1)["content"], content_with(&a, "first"));
    // AND the other attachment is still unused: alice may send it
    expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-2", attachment_content(&other)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_edit_of_an_attachment_message_is_invalid() {
    // GIVEN alice's PNG sent with caption "first"
    let (mut p, a) = sent_with_caption().await;

    // WHEN alice edits it with text content
    let action = edit(&p.id, "e-1", json!({"type": "text", "text": "plain"}));
    expect_refused(&mut p.alice, action, "INVALID_MESSAGE").await;

    // THEN nothing is stored and the message is as sent
    assert_eq!(last_seq(&p.server, "alice", &p.id).await, 1);
    let history = all_messages(&p.server.http("bob"), &p.id).await;
    assert_eq!(entry_at(&history, 1)["content"], content_with(&a, "first"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caption_edit_over_4000_characters_is_invalid() {
    // GIVEN alice's PNG sent with caption "first"
    let (mut p, _) = sent_with_caption().await;

    // WHEN alice edits the caption to 4001 characters, THEN it is INVALID_MESSAGE
    let action = edit(
        &p.id,
        "e-1",
        json!({"type": "attachment", "text": "x".repeat(4001)}),
    );
    expect_refused(&mut p.alice, action, "INVALID_MESSAGE").await;
    assert_eq!(last_seq(&p.server, "alice", &p.id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sender_may_edit_the_caption() {
    // GIVEN alice's PNG sent
    let (mut p, _) = sent_with_caption().await;

    // WHEN bob edits its caption, THEN it is FORBIDDEN
    let action = edit(
        &p.id,
        "e-bob",
        json!({"type": "attachment", "text": "mine"}),
    );
    expect_refused(&mut p.bob, action, "FORBIDDEN").await;
    assert_eq!(last_seq(&p.server, "alice", &p.id).await, 1);
}
