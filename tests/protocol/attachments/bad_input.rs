//! Bad input: a `POST /v1/attachments` body out of the rules is `400 INVALID_MESSAGE`; a
//! `send` whose attachment content is malformed or names an attachment it may not use is
//! `INVALID_MESSAGE`, stores nothing and leaves the connection open.

use super::*;

// ---------------------------------------------------------------------------------------
// POST /v1/attachments
// ---------------------------------------------------------------------------------------

/// Asserts `POST /v1/attachments` with the valid body changed by `fields` (a `null` field
/// removed) is `400 INVALID_MESSAGE`, and that the valid body is then accepted.
async fn assert_invalid_create(fields: Value) {
    let (server, id) = direct_pair().await;
    let valid = json!({
        "conversationId": id, "mimeType": "image/png", "size": 67, "fileName": "cat.png",
    });
    let mut body = valid.clone();
    let object = body.as_object_mut().expect("an object");
    for (key, value) in fields.as_object().expect("fields are an object") {
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.clone(), value.clone());
        }
    }

    let answer = create(&server, "alice", &body).await;

    assert_http_error(&answer, 400, "INVALID_MESSAGE");
    created(&server, "alice", &valid).await;
}

macro_rules! invalid_create {
    ($($name:ident: $fields:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            assert_invalid_create($fields).await;
        }
    )*};
}

invalid_create! {
    create_with_size_zero_is_invalid: json!({"size": 0});
    create_with_negative_size_is_invalid: json!({"size": -1});
    create_with_fractional_size_is_invalid: json!({"size": 1.5});
    create_with_string_size_is_invalid: json!({"size": "67"});
    create_without_size_is_invalid: json!({"size": null});
    create_without_mime_type_is_invalid: json!({"mimeType": null});
    create_with_mime_type_without_subtype_is_invalid: json!({"mimeType": "png"});
    create_with_mime_type_with_empty_subtype_is_invalid: json!({"mimeType": "image/"});
    create_with_mime_type_with_empty_type_is_invalid: json!({"mimeType": "/png"});
    create_with_mime_type_with_a_space_is_invalid: json!({"mimeType": "image/p ng"});
    create_with_mime_type_over_255_chars_is_invalid:
        json!({"mimeType": format!("application/{}", "x".repeat(250))});
    create_with_numeric_mime_type_is_invalid: json!({"mimeType": 7});
    create_without_conversation_id_is_invalid: json!({"conversationId": null});
    create_with_file_name_holding_a_slash_is_invalid: json!({"fileName": "../etc/passwd"});
    create_with_file_name_holding_a_backslash_is_invalid: json!({"fileName": "a\\b.png"});
    create_with_file_name_holding_a_newline_is_invalid: json!({"fileName": "a\nb.png"});
    create_with_file_name_holding_a_nul_is_invalid: json!({"fileName": "a\u{0}b.png"});
    create_with_file_name_over_255_chars_is_invalid: json!({"fileName": "n".repeat(256)});
    create_with_numeric_file_name_is_invalid: json!({"fileName": 7});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_a_body_that_is_not_json_is_invalid() {
    // GIVEN a server
    let server = start().await;

    // WHEN alice posts a body that is not JSON
    let answer = server
        .http("alice")
        .raw(
            Method::POST,
            "/v1/attachments",
            b"{not json".to_vec(),
            "application/json",
        )
        .await;

    // THEN it is 400 INVALID_MESSAGE
    assert_http_error(&answer, 400, "INVALID_MESSAGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_without_a_token_is_401() {
    // GIVEN a direct conversation
    let (server, id) = direct_pair().await;

    // WHEN someone without a token creates an attachment
    let answer = server
        .http_anon()
        .post("/v1/attachments", &new_attachment(&id, "image/png", 10))
        .await;

    // THEN it is 401 UNAUTHORIZED
    assert_http_error(&answer, 401, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_name_of_255_characters_without_separators_is_accepted() {
    // GIVEN a direct conversation
    let (server, id) = direct_pair().await;

    // WHEN alice names an attachment with 255 characters, spaces and non-ASCII included
    let name = format!("{} é 12.png", "résumé".repeat(41));
    assert_eq!(name.chars().count(), 255);
    let mut body = new_attachment(&id, "application/pdf", 10);
    body["fileName"] = json!(name);

    // THEN it is created
    created(&server, "alice", &body).await;
}

// ---------------------------------------------------------------------------------------
// send
// ---------------------------------------------------------------------------------------

/// Sends `content` as alice with `requestId` "bad-1"; asserts `INVALID_MESSAGE` echoing
/// it and the `clientMessageId`, an open connection, nothing stored, nothing fanned out
/// to bob.
async fn assert_send_refused(p: &mut Pair, content: Value) {
    let before = last_seq(&p.server, "alice", &p.id).await;
    let mut action = send_content(&p.id, "bad-send", content);
    action["requestId"] = json!("bad-1");

    let error = expect_refused(&mut p.alice, action, "INVALID_MESSAGE").await;

    assert_eq!(error["requestId"], "bad-1", "{error}");
    assert_eq!(error["clientMessageId"], "bad-send", "{error}");
    assert_eq!(last_seq(&p.server, "alice", &p.id).await, before);
    p.bob.expect_silence("message.new", SHORT).await;
}

/// Asserts alice can still send attachment `id` (the refused send did not use it up).
async fn assert_still_sendable(p: &mut Pair, id: &str) {
    let ack = expect_ack(
        &mut p.alice,
        send_content(&p.id, "good-send", attachment_content(id)),
    )
    .await;
    assert_eq!(ack["duplicate"], false, "{ack}");
}

/// Asserts a send of alice's uploaded PNG with `fields` merged into its content is
/// refused, and that the PNG is then sendable.
async fn assert_field_refused(fields: Value) {
    let mut p = pair().await;
    let a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;
    let mut content = attachment_content(&a);
    for (key, value) in fields.as_object().expect("fields are an object") {
        content[key] = value.clone();
    }
    assert_send_refused(&mut p, content).await;
    assert_still_sendable(&mut p, &a).await;
}

macro_rules! invalid_field {
    ($($name:ident: $fields:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            assert_field_refused($fields).await;
        }
    )*};
}

invalid_field! {
    send_with_a_caption_over_4000_characters_is_invalid: json!({"text": "x".repeat(4001)});
    send_with_a_numeric_caption_is_invalid: json!({"text": 7});
    send_with_negative_width_is_invalid: json!({"width": -1});
    send_with_string_height_is_invalid: json!({"height": "480"});
    send_with_fractional_duration_is_invalid: json!({"durationMs": 1.5});
    send_with_a_preview_that_is_not_base64_is_invalid: json!({"preview": "not base64!"});
    send_with_a_preview_over_2_kib_is_invalid:
        json!({"preview": "QUFB".repeat(700)}); // 2100 bytes decoded
    send_with_a_malformed_thumbnail_id_is_invalid: json!({"thumbnailId": "a_nope"});
    send_with_an_unknown_thumbnail_id_is_invalid:
        json!({"thumbnailId": format!("a_{}", "f".repeat(32))});
    send_with_a_content_type_that_does_not_exist_is_invalid: json!({"type": "image"});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_without_attachment_id_is_invalid() {
    let mut p = pair().await;
    assert_send_refused(&mut p, json!({"type": "attachment", "text": "caption"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_a_malformed_attachment_id_is_invalid() {
    let mut p = pair().await;
    for bad in [
        "a_nope",
        "../chat.db",
        "A_0123456789ABCDEF0123456789ABCDEF",
        "",
    ] {
        assert_send_refused(&mut p, attachment_content(bad)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_of_an_attachment_that_does_not_exist_is_invalid() {
    let mut p = pair().await;
    let unknown = format!("a_{}", "0123456789abcdef".repeat(2));
    assert_send_refused(&mut p, attachment_content(&unknown)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_of_an_attachment_not_yet_uploaded_is_invalid() {
    // GIVEN alice's attachment, created but not uploaded
    let mut p = pair().await;
    let a = new_png(&p.server, "alice", &p.id).await;

    // WHEN alice sends it, THEN it is refused
    assert_send_refused(&mut p, attachment_content(&a.id)).await;
    // AND once uploaded it is accepted
    assert_uploaded(&put(&a.upload, PNG).await);
    assert_still_sendable(&mut p, &a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_of_an_attachment_created_by_someone_else_is_invalid() {
    // GIVEN bob's uploaded attachment in the conversation
    let mut p = pair().await;
    let bobs = uploaded(&p.server, "bob", &p.id, "image/png", PNG, None).await;

    // WHEN alice sends it, THEN it is refused
    assert_send_refused(&mut p, attachment_content(&bobs)).await;
    // AND bob may still send it
    let ack = expect_ack(
        &mut p.bob,
        send_content(&p.id, "bob-1", attachment_content(&bobs)),
    )
    .await;
    assert_eq!(ack["seq"], 1, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_of_an_attachment_created_for_another_conversation_is_invalid() {
    // GIVEN alice's attachment uploaded for her group with carol
    let mut p = pair().await;
    let group = conv_id(
        &p.server
            .http("alice")
            .create_group("Other", &["carol"])
            .await,
    );
    let elsewhere = uploaded(&p.server, "alice", &group, "image/png", PNG, None).await;

    // WHEN alice sends it in her conversation with bob, THEN it is refused
    assert_send_refused(&mut p, attachment_content(&elsewhere)).await;
    // AND it can be sent where it was created for
    let ack = expect_ack(
        &mut p.alice,
        send_content(&group, "cm-1", attachment_content(&elsewhere)),
    )
    .await;
    assert_eq!(ack["seq"], 1, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_of_an_attachment_another_message_uses_is_invalid() {
    // GIVEN alice's attachment, sent once
    let mut p = pair().await;
    let a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;
    expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&a)),
    )
    .await;
    recv_entry(&mut p.bob, &p.id, 1).await;

    // WHEN alice sends it again with another clientMessageId, THEN it is refused
    assert_send_refused(&mut p, attachment_content(&a)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_of_an_attachment_over_http_with_a_bad_attachment_is_400() {
    // GIVEN alice's attachment, not uploaded
    let (server, id) = direct_pair().await;
    let a = new_png(&server, "alice", &id).await;

    // WHEN alice sends it over HTTP
    let answer = server
        .http("alice")
        .post(
            &format!("/v1/conversations/{id}/messages"),
            &json!({"clientMessageId": "cm-1", "content": attachment_content(&a.id)}),
        )
        .await;

    // THEN it is 400 INVALID_MESSAGE and nothing is stored
    assert_http_error(&answer, 400, "INVALID_MESSAGE");
    assert_eq!(last_seq(&server, "alice", &id).await, 0);
}

// ---------------------------------------------------------------------------------------
// Thumbnails
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_that_is_not_a_raster_image_is_invalid() {
    // GIVEN alice's video, and as would-be thumbnails an SVG and a PDF
    let mut p = pair().await;
    let video = uploaded(&p.server, "alice", &p.id, "video/mp4", b"mp4-bytes", None).await;
    for mime in ["image/svg+xml", "application/pdf"] {
        let thumb = uploaded(&p.server, "alice", &p.id, mime, b"<svg/>", None).await;

        // WHEN alice sends the video with it as thumbnail, THEN it is refused
        let mut content = attachment_content(&video);
        content["thumbnailId"] = json!(thumb);
        assert_send_refused(&mut p, content).await;
    }
    // AND the video is still sendable
    assert_still_sendable(&mut p, &video).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_over_256_kib_is_invalid() {
    // GIVEN alice's video and a PNG of 256 KiB + 1 byte
    let mut p = pair().await;
    let video = uploaded(&p.server, "alice", &p.id, "video/mp4", b"mp4-bytes", None).await;
    let big = vec![7u8; 256 * 1024 + 1];
    let thumb = uploaded(&p.server, "alice", &p.id, "image/png", &big, None).await;

    // WHEN alice sends the video with it as thumbnail, THEN it is refused
    let mut content = attachment_content(&video);
    content["thumbnailId"] = json!(thumb);
    assert_send_refused(&mut p, content).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_of_exactly_256_kib_is_accepted() {
    // GIVEN alice's video and a JPEG of 256 KiB
    let mut p = pair().await;
    let video = uploaded(&p.server, "alice", &p.id, "video/mp4", b"mp4-bytes", None).await;
    let thumb_bytes = vec![7u8; 256 * 1024];
    let thumb = uploaded(&p.server, "alice", &p.id, "image/jpeg", &thumb_bytes, None).await;

    // WHEN alice sends the video with it as thumbnail, THEN it is acked
    let mut content = attachment_content(&video);
    content["thumbnailId"] = json!(thumb);
    let ack = expect_ack(&mut p.alice, send_content(&p.id, "cm-1", content)).await;
    assert_eq!(ack["seq"], 1, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_of_someone_else_is_invalid() {
    // GIVEN alice's video and bob's uploaded PNG
    let mut p = pair().await;
    let video = uploaded(&p.server, "alice", &p.id, "video/mp4", b"mp4-bytes", None).await;
    let bobs = uploaded(&p.server, "bob", &p.id, "image/png", PNG, None).await;

    // WHEN alice sends her video with bob's PNG as thumbnail, THEN it is refused
    let mut content = attachment_content(&video);
    content["thumbnailId"] = json!(bobs);
    assert_send_refused(&mut p, content).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thumbnail_not_yet_uploaded_is_invalid() {
    // GIVEN alice's video and a thumbnail created but not uploaded
    let mut p = pair().await;
    let video = uploaded(&p.server, "alice", &p.id, "video/mp4", b"mp4-bytes", None).await;
    let thumb = new_png(&p.server, "alice", &p.id).await;

    // WHEN alice sends the video with it as thumbnail, THEN it is refused
    let mut content = attachment_content(&video);
    content["thumbnailId"] = json!(thumb.id);
    assert_send_refused(&mut p, content).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_used_as_thumbnail_cannot_be_sent_again() {
    // GIVEN alice's video sent with her PNG as its thumbnail
    let mut p = pair().await;
    let video = uploaded(&p.server, "alice", &p.id, "video/mp4", b"mp4-bytes", None).await;
    let thumb = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;
    let mut content = attachment_content(&video);
    content["thumbnailId"] = json!(thumb);
    expect_ack(&mut p.alice, send_content(&p.id, "cm-1", content)).await;
    recv_entry(&mut p.bob, &p.id, 1).await;

    // WHEN alice sends the PNG as a message of its own, THEN it is refused (it is used)
    assert_send_refused(&mut p, attachment_content(&thumb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_cannot_be_its_own_thumbnail() {
    let mut p = pair().await;
    let a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;
    let mut content = attachment_content(&a);
    content["thumbnailId"] = json!(a);
    assert_send_refused(&mut p, content).await;
    assert_still_sendable(&mut p, &a).await;
}
