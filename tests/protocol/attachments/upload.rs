//! Creating an attachment and uploading its bytes (PROTOCOL.md 8.3, steps 1 and 2): the
//! answer, the create-only PUT and what it refuses, new upload URLs, the size limit and
//! the rate limit.

use super::*;

// ---------------------------------------------------------------------------------------
// Creating
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_answers_201_with_an_id_and_a_put_upload_bound_to_the_type() {
    // GIVEN a direct conversation alice-bob
    let (server, id) = direct_pair().await;
    let t0 = now_ms();

    // WHEN alice creates an attachment of 67 bytes of image/png
    let (status, answer) = create(&server, "alice", &new_attachment(&id, "image/png", 67)).await;

    // THEN it is 201 with an a_<32 hex> id and a PUT upload
    assert_eq!(status, 201, "{answer}");
    assert_keys(&answer, &["attachmentId", "upload"]);
    assert!(
        is_attachment_id(answer["attachmentId"].as_str().unwrap_or("")),
        "{answer}"
    );
    let upload = &answer["upload"];
    assert_keys(upload, &["url", "method", "headers", "expiresAt"]);
    assert_eq!(upload["method"], "PUT", "{answer}");
    assert!(
        upload["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http")),
        "{answer}"
    );
    // AND the headers to send carry the type and make the upload create-only, but never
    // Content-Length or Host (the HTTP client sets those)
    let headers = upload_headers(upload);
    assert_eq!(
        header_in(&headers, "content-type"),
        Some("image/png"),
        "{answer}"
    );
    assert_eq!(header_in(&headers, "if-none-match"), Some("*"), "{answer}");
    assert_eq!(header_in(&headers, "content-length"), None, "{answer}");
    assert_eq!(header_in(&headers, "host"), None, "{answer}");
    // AND the URL is valid for 15 minutes
    let expires = upload["expiresAt"]
        .as_i64()
        .unwrap_or_else(|| panic!("expiresAt is not Unix ms: {answer}"));
    assert!(
        expires >= t0 + UPLOAD_VALID_MS - 60_000 && expires <= now_ms() + UPLOAD_VALID_MS + 1000,
        "expiresAt {expires} is not 15 minutes after {t0}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attachment_gets_its_own_id() {
    // GIVEN a direct conversation
    let (server, id) = direct_pair().await;

    // WHEN alice creates the same attachment twice
    let first = created(&server, "alice", &new_attachment(&id, "image/png", 10)).await;
    let second = created(&server, "alice", &new_attachment(&id, "image/png", 10)).await;

    // THEN they are two attachments with two upload URLs
    assert_ne!(first.id, second.id);
    assert_ne!(first.upload["url"], second.upload["url"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_create_an_attachment_in_a_conversation() {
    // GIVEN a direct conversation alice-bob
    let (server, id) = direct_pair().await;

    // WHEN carol, not a member, creates an attachment there, and alice in a conversation
    // that does not exist
    let carol = create(&server, "carol", &new_attachment(&id, "image/png", 10)).await;
    let unknown = create(
        &server,
        "alice",
        &new_attachment("c_doesnotexist", "image/png", 10),
    )
    .await;

    // THEN both are 404 NOT_FOUND
    assert_http_error(&carol, 404, "NOT_FOUND");
    assert_http_error(&unknown, 404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_cannot_create_an_attachment() {
    // GIVEN a group from which alice removed bob
    let (server, id) = team().await;
    let (status, body) = server.http("alice").remove_member(&id, "bob").await;
    assert_eq!(status, 204, "{body}");

    // WHEN bob creates an attachment there
    let answer = create(&server, "bob", &new_attachment(&id, "image/png", 10)).await;

    // THEN it is 404 NOT_FOUND, while carol, still a member, may
    assert_http_error(&answer, 404, "NOT_FOUND");
    created(&server, "carol", &new_attachment(&id, "image/png", 10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_up_to_the_configured_maximum_is_accepted_and_over_it_is_413() {
    // GIVEN CHAT_MAX_ATTACHMENT_BYTES=1000
    let server = server()
        .env("CHAT_MAX_ATTACHMENT_BYTES", "1000")
        .start()
        .await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);

    // WHEN alice creates attachments of 1000 and of 1001 bytes
    let at_cap = create(&server, "alice", &new_attachment(&id, "image/png", 1000)).await;
    let over = create(&server, "alice", &new_attachment(&id, "image/png", 1001)).await;

    // THEN the first is created and the second is 413 PAYLOAD_TOO_LARGE
    assert_eq!(at_cap.0, 201, "{}", at_cap.1);
    assert_http_error(&over, 413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_maximum_is_25_mib() {
    // GIVEN a server with the default configuration
    let server = server()
        .env_remove("CHAT_MAX_ATTACHMENT_BYTES")
        .start()
        .await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);

    // WHEN alice declares 25 MiB, then one byte more
    let at_cap = create(
        &server,
        "alice",
        &new_attachment(&id, "video/mp4", 26_214_400),
    )
    .await;
    let over = create(
        &server,
        "alice",
        &new_attachment(&id, "video/mp4", 26_214_401),
    )
    .await;

    // THEN 25 MiB is created and one byte more is 413
    assert_eq!(at_cap.0, 201, "{}", at_cap.1);
    assert_http_error(&over, 413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_attachments_counts_against_the_send_rate_limit() {
    // Rate windows are whole minutes: a run that crosses one is run again (see
    // rate_limit.rs), and nothing is asserted before that check.
    const WINDOW_MS: i64 = 60_000;
    for attempt in 1..=3 {
        // GIVEN CHAT_RATE_LIMIT_PER_MIN=3
        let server = server().env("CHAT_RATE_LIMIT_PER_MIN", "3").start().await;
        let id = conv_id(&server.http("alice").create_direct("bob").await);
        let started = server.server_time().await;

        // WHEN alice creates two attachments, sends a message, then creates one more and
        // sends one more
        let first = create(&server, "alice", &new_attachment(&id, "image/png", 10)).await;
        let second = create(&server, "alice", &new_attachment(&id, "image/png", 10)).await;
        let (sent, ack) = server.http("alice").send_message(&id, "cm-1", "hi").await;
        let over_create = create(&server, "alice", &new_attachment(&id, "image/png", 10)).await;
        let over_send = server.http("alice").send_message(&id, "cm-2", "hi").await;
        // (bob has his own count)
        let bob = create(&server, "bob", &new_attachment(&id, "image/png", 10)).await;

        let ended = server.server_time().await;
        if ended.div_euclid(WINDOW_MS) != started.div_euclid(WINDOW_MS) {
            assert!(attempt < 3, "three runs in a row crossed a minute boundary");
            continue;
        }
        // THEN the first three are accepted, then creating and sending are RATE_LIMITED
        assert_eq!(first.0, 201, "{}", first.1);
        assert_eq!(second.0, 201, "{}", second.1);
        assert_eq!(sent, 201, "{ack}");
        assert_http_error(&over_create, 429, "RATE_LIMITED");
        assert!(
            over_create.1["error"]["retryAfterMs"]
                .as_i64()
                .is_some_and(|ms| ms > 0),
            "{}",
            over_create.1
        );
        assert_http_error(&over_send, 429, "RATE_LIMITED");
        assert_eq!(bob.0, 201, "{}", bob.1);
        return;
    }
}

// ---------------------------------------------------------------------------------------
// Uploading
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_exactly_size_bytes_is_accepted_and_readable_by_the_uploader() {
    // GIVEN alice's new attachment of a PNG's size
    let (server, id) = direct_pair().await;
    let a = new_png(&server, "alice", &id).await;

    // WHEN alice PUTs the PNG with exactly the headers given
    let answer = put(&a.upload, PNG).await;

    // THEN it is accepted, and alice can download exactly those bytes
    assert_uploaded(&answer);
    let fetched = fetch(&download_url(&server, "alice", &a.id).await).await;
    assert_eq!(fetched.status, 200, "{fetched:?}");
    assert_eq!(fetched.body, PNG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upload_is_refused_with_412_and_the_first_bytes_stay() {
    // GIVEN alice's attachment, uploaded
    let (server, id) = direct_pair().await;
    let first = marker("first");
    let a = created(
        &server,
        "alice",
        &new_attachment(&id, "image/png", first.len()),
    )
    .await;
    assert_uploaded(&put(&a.upload, &first).await);

    // WHEN alice PUTs other bytes of the same size to the same URL
    let mut second = first.clone();
    second.reverse();
    let answer = put(&a.upload, &second).await;

    // THEN it is 412, and the attachment still holds the first bytes
    assert_eq!(answer.status, 412, "{answer:?}");
    let fetched = fetch(&download_url(&server, "alice", &a.id).await).await;
    assert_eq!(fetched.body, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_beyond_the_256_kib_body_limit_is_accepted() {
    // GIVEN alice's attachment of 1 MiB
    let (server, id) = direct_pair().await;
    let bytes: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let a = created(
        &server,
        "alice",
        &new_attachment(&id, "application/octet-stream", bytes.len()),
    )
    .await;

    // WHEN alice uploads it
    let answer = put(&a.upload, &bytes).await;

    // THEN it is accepted whole
    assert_uploaded(&answer);
    let fetched = fetch(&download_url(&server, "alice", &a.id).await).await;
    assert_eq!(fetched.status, 200, "{fetched:?}");
    assert_eq!(fetched.body.len(), bytes.len());
    assert!(fetched.body == bytes, "the downloaded bytes differ");
}

/// Asserts a PUT of `body` instead of the declared bytes is refused with `400` or `413`,
/// keeps nothing (the attachment can be neither sent nor downloaded), and that the right
/// bytes are then accepted at the same URL and the attachment sent.
async fn assert_wrong_length_refused(declared: &[u8], body: &[u8]) {
    // GIVEN alice's attachment of `declared.len()` bytes
    let mut p = pair().await;
    let a = created(
        &p.server,
        "alice",
        &new_attachment(&p.id, "application/pdf", declared.len()),
    )
    .await;

    // WHEN alice PUTs a body of another length
    let answer = put(&a.upload, body).await;

    // THEN it is refused
    assert!(
        answer.status == 400 || answer.status == 413,
        "a body of {} bytes for {} declared: {answer:?}",
        body.len(),
        declared.len()
    );
    // AND nothing was kept: the attachment is neither downloadable nor sendable
    assert_no_download(&p.server, "alice", &a.id).await;
    let mut refused = send_content(&p.id, "too-early", attachment_content(&a.id));
    refused["requestId"] = json!("r-early");
    expect_refused(&mut p.alice, refused, "INVALID_MESSAGE").await;
    assert_eq!(last_seq(&p.server, "alice", &p.id).await, 0);
    // AND the right bytes are then accepted and the attachment sent
    assert_uploaded(&put(&a.upload, declared).await);
    let ack = expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&a.id)),
    )
    .await;
    assert_eq!(ack["seq"], 1, "{ack}");
    let fetched = fetch(&download_url(&p.server, "bob", &a.id).await).await;
    assert_eq!(fetched.body, declared);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_longer_than_the_declared_size_is_refused_and_keeps_nothing() {
    let declared = marker("declared");
    let mut longer = declared.clone();
    longer.extend_from_slice(b"+one-more");
    assert_wrong_length_refused(&declared, &longer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_shorter_than_the_declared_size_is_refused_and_keeps_nothing() {
    let declared = marker("declared");
    let shorter = declared[..declared.len() - 5].to_vec();
    assert_wrong_length_refused(&declared, &shorter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_with_another_content_type_is_refused() {
    // GIVEN alice's attachment declared image/png
    let (server, id) = direct_pair().await;
    let a = new_png(&server, "alice", &id).await;

    // WHEN alice PUTs it as text/html
    let headers: Vec<(String, String)> = upload_headers(&a.upload)
        .into_iter()
        .map(|(k, v)| {
            if k.eq_ignore_ascii_case("content-type") {
                (k, "text/html".to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    let url = a.upload["url"].as_str().expect("a url");
    let answer = put_to(&a.upload, url, &headers, PNG).await;

    // THEN it is refused and nothing is kept; the right type is then accepted
    assert!(answer.status == 400 || answer.status == 403, "{answer:?}");
    assert_no_download(&server, "alice", &a.id).await;
    assert_uploaded(&put(&a.upload, PNG).await);
}

/// Asserts a PUT to the upload URL with one character of a parameter named like one of
/// `names` changed is `403` and keeps nothing, and the URL as given still works.
async fn assert_tampered_upload_refused(names: &[&str]) {
    // GIVEN alice's attachment
    let (server, id) = direct_pair().await;
    let a = new_png(&server, "alice", &id).await;
    let url = a.upload["url"].as_str().expect("a url");

    // WHEN alice PUTs to the URL with the parameter changed
    let forged = tampered(url, names);
    let answer = put_to(&a.upload, &forged, &upload_headers(&a.upload), PNG).await;

    // THEN it is 403 and nothing is kept; the URL as given is then accepted
    assert_eq!(answer.status, 403, "PUT {forged}: {answer:?}");
    assert_no_download(&server, "alice", &a.id).await;
    assert_uploaded(&put(&a.upload, PNG).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_with_a_tampered_signature_is_403() {
    assert_tampered_upload_refused(SIGNATURE_PARAMS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_with_a_tampered_expiry_is_403() {
    assert_tampered_upload_refused(EXPIRY_PARAMS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_url_of_one_attachment_does_not_upload_another() {
    // GIVEN two attachments of alice's, of the same size and type
    let (server, id) = direct_pair().await;
    let first = new_png(&server, "alice", &id).await;
    let second = new_png(&server, "alice", &id).await;

    // WHEN alice PUTs to the first's URL with the second's id in place of the first's
    let url = first.upload["url"].as_str().expect("a url");
    assert!(
        url.contains(&first.id),
        "the URL does not name its attachment: {url}"
    );
    let forged = url.replace(&first.id, &second.id);
    let answer = put_to(&first.upload, &forged, &upload_headers(&first.upload), PNG).await;

    // THEN it is refused (the signature binds the attachment), and neither was uploaded
    assert!(
        (400..500).contains(&answer.status),
        "PUT {forged}: {answer:?}"
    );
    assert_no_download(&server, "alice", &second.id).await;
    assert_no_download(&server, "alice", &first.id).await;
}

// ---------------------------------------------------------------------------------------
// New upload URLs
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_upload_url_is_issued_to_the_uploader_while_not_uploaded() {
    // GIVEN alice's attachment, not uploaded
    let (server, id) = direct_pair().await;
    let a = new_png(&server, "alice", &id).await;

    // WHEN alice asks for a new upload URL
    let (status, answer) = server
        .http("alice")
        .post(&format!("/v1/attachments/{}/upload", a.id), &json!({}))
        .await;

    // THEN it is 200 with a PUT upload of the same type, which accepts the bytes
    assert_eq!(status, 200, "{answer}");
    let upload = &answer["upload"];
    assert_keys(upload, &["url", "method", "headers", "expiresAt"]);
    assert_eq!(upload["method"], "PUT", "{answer}");
    assert_eq!(
        header_in(&upload_headers(upload), "content-type"),
        Some("image/png"),
        "{answer}"
    );
    assert_uploaded(&put(upload, PNG).await);
    let fetched = fetch(&download_url(&server, "alice", &a.id).await).await;
    assert_eq!(fetched.body, PNG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_upload_url_after_the_upload_completed_is_409() {
    // GIVEN alice's attachment, uploaded
    let (server, id) = direct_pair().await;
    let a = uploaded(&server, "alice", &id, "image/png", PNG, None).await;

    // WHEN alice asks for a new upload URL
    let answer = server
        .http("alice")
        .post(&format!("/v1/attachments/{a}/upload"), &json!({}))
        .await;

    // THEN it is 409 CONFLICT
    assert_http_error(&answer, 409, "CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_upload_url_is_only_for_the_uploader() {
    // GIVEN alice's attachment, not uploaded, in a group with bob
    let (server, id) = team().await;
    let a = new_png(&server, "alice", &id).await;

    // WHEN bob (a member), dave (not one) and alice for an unknown id ask for an upload URL
    let path = format!("/v1/attachments/{}/upload", a.id);
    let bob = server.http("bob").post(&path, &json!({})).await;
    let dave = server.http("dave").post(&path, &json!({})).await;
    let unknown = server
        .http("alice")
        .post(
            &format!("/v1/attachments/a_{}/upload", "0".repeat(32)),
            &json!({}),
        )
        .await;

    // THEN each is 404 NOT_FOUND
    assert_http_error(&bob, 404, "NOT_FOUND");
    assert_http_error(&dave, 404, "NOT_FOUND");
    assert_http_error(&unknown, 404, "NOT_FOUND");
}
