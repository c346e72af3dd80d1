//! Download URLs and downloads (PROTOCOL.md 8.3, steps 4 and 5): `GET /v1/attachments/{id}`,
//! the batch `POST /v1/attachments/urls`, and the headers a download is served with.

use super::*;

/// alice's attachment of `bytes` as `mime_type` (and `file_name`), sent to bob; answers
/// the pair and its id.
async fn sent(mime_type: &str, bytes: &[u8], file_name: Option<&str>) -> (Pair, String) {
    let mut p = pair().await;
    let a = uploaded(&p.server, "alice", &p.id, mime_type, bytes, file_name).await;
    expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&a)),
    )
    .await;
    (p, a)
}

/// The media type of a `Content-Type` value: before any parameter, in lowercase.
fn media_type(value: Option<&str>) -> Option<String> {
    value.map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

/// Asserts the headers every download carries: `nosniff` and a sandboxing CSP.
fn assert_safe_headers(raw: &Raw) {
    assert_eq!(
        raw.header("x-content-type-options")
            .map(str::to_ascii_lowercase),
        Some("nosniff".to_owned()),
        "{raw:?}"
    );
    let csp = raw
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("no Content-Security-Policy: {raw:?}"));
    assert!(csp.to_ascii_lowercase().contains("sandbox"), "{raw:?}");
}

// ---------------------------------------------------------------------------------------
// Download URLs
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_gets_a_download_url_of_a_sent_attachment_valid_at_most_5_minutes() {
    // GIVEN alice's PNG sent to bob
    let (p, a) = sent("image/png", PNG, None).await;
    let t0 = now_ms();

    // WHEN bob asks for its download URL
    let (status, answer) = download(&p.server, "bob", &a).await;

    // THEN it is 200 with a URL valid for at most 5 minutes
    assert_eq!(status, 200, "{answer}");
    assert_keys(&answer, &["url", "expiresAt"]);
    let expires = answer["expiresAt"]
        .as_i64()
        .unwrap_or_else(|| panic!("expiresAt is not Unix ms: {answer}"));
    assert!(
        expires > t0 && expires <= now_ms() + DOWNLOAD_VALID_MS + 1000,
        "expiresAt {expires} is not within 5 minutes of {t0}"
    );
    // AND fetching it without credentials answers the bytes
    let fetched = fetch(answer["url"].as_str().expect("a url")).await;
    assert_eq!(fetched.status, 200, "{fetched:?}");
    assert_eq!(fetched.body, PNG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uploader_gets_a_download_url_before_sending() {
    // GIVEN alice's uploaded attachment, not sent
    let (server, id) = direct_pair().await;
    let bytes = marker("unsent");
    let a = uploaded(&server, "alice", &id, "application/pdf", &bytes, None).await;

    // WHEN alice asks for its download URL and fetches it
    let fetched = fetch(&download_url(&server, "alice", &a).await).await;

    // THEN she gets the bytes
    assert_eq!(fetched.status, 200, "{fetched:?}");
    assert_eq!(fetched.body, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_urls_change_on_every_call() {
    // GIVEN alice's PNG sent to bob
    let (p, a) = sent("image/png", PNG, None).await;

    // WHEN bob asks twice in a row
    let first = download_url(&p.server, "bob", &a).await;
    let second = download_url(&p.server, "bob", &a).await;

    // THEN the URLs differ and both work
    assert_ne!(first, second);
    for url in [first, second] {
        assert_eq!(fetch(&url).await.body, PNG);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_added_after_the_message_may_download_it() {
    // GIVEN alice's PNG sent in a group, then dave added
    let (server, id) = team().await;
    let mut alice = server.connect("alice").await;
    let a = uploaded(&server, "alice", &id, "image/png", PNG, None).await;
    expect_ack(
        &mut alice,
        send_content(&id, "cm-1", attachment_content(&a)),
    )
    .await;
    let (status, body) = server.http("alice").add_members(&id, &["dave"]).await;
    assert_eq!(status, 200, "{body}");

    // WHEN dave asks for its download URL, THEN he gets the bytes
    let fetched = fetch(&download_url(&server, "dave", &a).await).await;
    assert_eq!(fetched.body, PNG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_may_download_the_thumbnail_of_a_sent_message() {
    // GIVEN alice's video sent with a thumbnail
    let mut p = pair().await;
    let video = uploaded(&p.server, "alice", &p.id, "video/mp4", b"mp4", None).await;
    let thumb = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;
    let mut content = attachment_content(&video);
    content["thumbnailId"] = json!(thumb);
    expect_ack(&mut p.alice, send_content(&p.id, "cm-1", content)).await;

    // WHEN bob asks for the thumbnail's download URL, THEN he gets its bytes
    let fetched = fetch(&download_url(&p.server, "bob", &thumb).await).await;
    assert_eq!(fetched.status, 200, "{fetched:?}");
    assert_eq!(fetched.body, PNG);
}

// ---------------------------------------------------------------------------------------
// The batch
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_answers_the_urls_the_caller_may_read_and_leaves_out_the_others() {
    // GIVEN alice's attachment `sent_a` sent to bob, her `unsent_a` not sent, bob's
    // `unsent_b` not sent, and an id of no attachment
    let mut p = pair().await;
    let sent_bytes = marker("sent");
    let sent_a = uploaded(
        &p.server,
        "alice",
        &p.id,
        "application/pdf",
        &sent_bytes,
        None,
    )
    .await;
    expect_ack(
        &mut p.alice,
        send_content(&p.id, "cm-1", attachment_content(&sent_a)),
    )
    .await;
    let unsent_a = uploaded(&p.server, "alice", &p.id, "image/png", PNG, None).await;
    let bob_bytes = marker("bob");
    let unsent_b = uploaded(&p.server, "bob", &p.id, "application/pdf", &bob_bytes, None).await;
    let unknown = format!("a_{}", "0".repeat(32));
    let ids = json!({"attachmentIds": [sent_a, unsent_a, unsent_b, unknown]});

    // WHEN bob and alice ask for all four
    let t0 = now_ms();
    let (bob_status, for_bob) = p
        .server
        .http("bob")
        .post("/v1/attachments/urls", &ids)
        .await;
    let (alice_status, for_alice) = p
        .server
        .http("alice")
        .post("/v1/attachments/urls", &ids)
        .await;

    // THEN each gets the sent one and their own unsent one, each with a URL that works
    assert_eq!(bob_status, 200, "{for_bob}");
    assert_eq!(alice_status, 200, "{for_alice}");
    for (answer, expected) in [
        (
            &for_bob,
            vec![(&sent_a, &sent_bytes[..]), (&unsent_b, &bob_bytes[..])],
        ),
        (
            &for_alice,
            vec![(&sent_a, &sent_bytes[..]), (&unsent_a, PNG)],
        ),
    ] {
        let urls = answer["urls"]
            .as_array()
            .unwrap_or_else(|| panic!("no urls array: {answer}"));
        let mut got: Vec<&str> = urls
            .iter()
            .map(|u| u["attachmentId"].as_str().expect("an attachmentId"))
            .collect();
        got.sort_unstable();
        let mut want: Vec<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
        want.sort_unstable();
        assert_eq!(got, want, "{answer}");
        for (id, bytes) in expected {
            let item = urls
                .iter()
                .find(|u| u["attachmentId"] == *id)
                .expect("listed");
            assert_keys(item, &["attachmentId", "url", "expiresAt"]);
            let expires = item["expiresAt"].as_i64().expect("expiresAt in ms");
            assert!(
                expires > t0 && expires <= now_ms() + DOWNLOAD_VALID_MS + 1000,
                "{item}"
            );
            let fetched = fetch(item["url"].as_str().expect("a url")).await;
            assert_eq!(fetched.body, bytes, "{item}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_leaves_out_everything_for_a_non_member() {
    // GIVEN alice's PNG sent to bob
    let (p, a) = sent("image/png", PNG, None).await;

    // WHEN carol, not a member, asks for it in a batch
    let (status, answer) = p
        .server
        .http("carol")
        .post("/v1/attachments/urls", &json!({"attachmentIds": [a]}))
        .await;

    // THEN the answer is 200 with no URL
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["urls"], json!([]), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_takes_100_ids_and_refuses_101() {
    // GIVEN alice's PNG sent to bob
    let (p, a) = sent("image/png", PNG, None).await;
    let mut ids: Vec<String> = (0..99).map(|n| format!("a_{n:032x}")).collect();
    ids.push(a.clone());

    // WHEN bob asks for 100 ids, then for 101
    let (status, hundred) = p
        .server
        .http("bob")
        .post("/v1/attachments/urls", &json!({"attachmentIds": ids}))
        .await;
    ids.push(format!("a_{:032x}", 100));
    let over = p
        .server
        .http("bob")
        .post("/v1/attachments/urls", &json!({"attachmentIds": ids}))
        .await;

    // THEN 100 are answered (the one that exists listed), and 101 is 400
    assert_eq!(status, 200, "{hundred}");
    let urls = hundred["urls"].as_array().expect("urls");
    assert_eq!(urls.len(), 1, "{hundred}");
    assert_eq!(urls[0]["attachmentId"], json!(a));
    assert_http_error(&over, 400, "INVALID_MESSAGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_without_an_id_array_is_invalid() {
    // GIVEN a server
    let server = start().await;

    // WHEN alice asks without attachmentIds, or with a string
    for body in [json!({}), json!({"attachmentIds": "a_0"})] {
        let answer = server
            .http("alice")
            .post("/v1/attachments/urls", &body)
            .await;

        // THEN it is 400 INVALID_MESSAGE
        assert_http_error(&answer, 400, "INVALID_MESSAGE");
    }
}

// ---------------------------------------------------------------------------------------
// How downloads are served
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raster_images_video_mp4_and_audio_are_served_inline_with_their_type() {
    // GIVEN an attachment of each inline type, sent by alice
    let mut p = pair().await;
    let types = [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/heic",
        "video/mp4",
        "audio/mpeg",
        "audio/ogg",
    ];
    for (n, mime) in types.into_iter().enumerate() {
        let bytes = marker(mime);
        let fetched = sent_and_fetched(&mut p, &format!("cm-{n}"), mime, &bytes).await;

        // THEN it is served with its type, inline, safely
        assert_eq!(fetched.status, 200, "{mime}: {fetched:?}");
        assert_eq!(fetched.body, bytes, "{mime}");
        assert_eq!(
            media_type(fetched.header("content-type")).as_deref(),
            Some(mime),
            "{fetched:?}"
        );
        let disposition = fetched
            .header("content-disposition")
            .unwrap_or_else(|| panic!("no Content-Disposition for {mime}: {fetched:?}"));
        assert!(
            disposition.to_ascii_lowercase().starts_with("inline"),
            "{mime}: {fetched:?}"
        );
        assert_safe_headers(&fetched);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_types_are_served_as_octet_stream_attachments() {
    // GIVEN an attachment of each active or unknown type, sent by alice
    let mut p = pair().await;
    let types = [
        "text/html",
        "image/svg+xml",
        "application/pdf",
        "text/plain",
        "application/javascript",
        "application/xhtml+xml",
        "video/webm",
        "image/bmp",
    ];
    for (n, mime) in types.into_iter().enumerate() {
        let bytes = format!("<html><script>alert({n})</script></html>").into_bytes();
        let fetched = sent_and_fetched(&mut p, &format!("cm-{n}"), mime, &bytes).await;

        // THEN it is served as application/octet-stream, as an attachment, safely
        assert_eq!(fetched.status, 200, "{mime}: {fetched:?}");
        assert_eq!(fetched.body, bytes, "{mime}");
        assert_eq!(
            media_type(fetched.header("content-type")).as_deref(),
            Some("application/octet-stream"),
            "{mime}: {fetched:?}"
        );
        let disposition = fetched
            .header("content-disposition")
            .unwrap_or_else(|| panic!("no Content-Disposition for {mime}: {fetched:?}"));
        assert!(
            disposition.to_ascii_lowercase().starts_with("attachment"),
            "{mime}: {fetched:?}"
        );
        assert_safe_headers(&fetched);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_name_is_given_only_as_an_encoded_filename_star() {
    // GIVEN an HTML file whose name tries to end the header and add a parameter
    let name = "report\"; filename=evil.html; x=\"é 😀.html";
    let (p, a) = sent("text/html", b"<b>hi</b>", Some(name)).await;

    // WHEN bob downloads it
    let fetched = fetch(&download_url(&p.server, "bob", &a).await).await;

    // THEN Content-Disposition is `attachment` with only `filename*=UTF-8''...`, which
    // percent-decodes to the name, and no plain `filename=`
    let disposition = fetched
        .header("content-disposition")
        .unwrap_or_else(|| panic!("no Content-Disposition: {fetched:?}"))
        .to_owned();
    assert!(
        disposition.to_ascii_lowercase().starts_with("attachment"),
        "{disposition}"
    );
    let params: Vec<&str> = disposition.split(';').skip(1).map(str::trim).collect();
    assert_eq!(params.len(), 1, "one parameter only: {disposition}");
    let encoded = params[0]
        .strip_prefix("filename*=UTF-8''")
        .unwrap_or_else(|| panic!("not filename*=UTF-8'': {disposition}"));
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%!#$&+-.^_`|~".contains(&b)),
        "not RFC 5987 attr-chars and escapes: {disposition}"
    );
    assert_eq!(
        String::from_utf8(percent_decode(encoded)).expect("UTF-8"),
        name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_image_with_a_file_name_is_inline_with_filename_star() {
    // GIVEN a PNG named "cat pic.png"
    let (p, a) = sent("image/png", PNG, Some("cat pic.png")).await;

    // WHEN bob downloads it
    let fetched = fetch(&download_url(&p.server, "bob", &a).await).await;

    // THEN it is inline with the name as filename*
    let disposition = fetched
        .header("content-disposition")
        .unwrap_or_else(|| panic!("no Content-Disposition: {fetched:?}"))
        .to_owned();
    assert!(
        disposition.to_ascii_lowercase().starts_with("inline"),
        "{disposition}"
    );
    let encoded = disposition
        .split_once("filename*=UTF-8''")
        .map(|(_, v)| v.split(';').next().unwrap_or("").trim())
        .unwrap_or_else(|| panic!("no filename*: {disposition}"));
    assert_eq!(percent_decode(encoded), b"cat pic.png");
    assert!(
        !disposition.to_ascii_lowercase().contains("filename="),
        "a plain filename= parameter: {disposition}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_with_a_tampered_signature_is_403() {
    // GIVEN bob's download URL of alice's sent PNG
    let (p, a) = sent("image/png", PNG, None).await;
    let url = download_url(&p.server, "bob", &a).await;

    // WHEN it is fetched with its signature or its expiry changed
    for names in [SIGNATURE_PARAMS, EXPIRY_PARAMS] {
        let forged = tampered(&url, names);
        let fetched = fetch(&forged).await;

        // THEN it is 403 without the bytes
        assert_eq!(fetched.status, 403, "GET {forged}: {fetched:?}");
        assert!(
            !fetched.body.windows(PNG.len()).any(|w| w == PNG),
            "the bytes were served: {fetched:?}"
        );
    }
    // AND the URL as given still works
    assert_eq!(fetch(&url).await.body, PNG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_url_with_another_id_or_a_path_does_not_serve_any_file() {
    // GIVEN bob's download URL of alice's sent PNG, and another attachment of hers
    let (p, a) = sent("image/png", PNG, None).await;
    let other_bytes = marker("other");
    let other = uploaded(
        &p.server,
        "alice",
        &p.id,
        "application/pdf",
        &other_bytes,
        None,
    )
    .await;
    let url = download_url(&p.server, "bob", &a).await;
    assert!(
        url.contains(&a),
        "the URL does not name its attachment: {url}"
    );

    // WHEN the id in it is replaced by the other attachment's, or by paths to the database
    for replacement in [
        other.clone(),
        "..%2Fchat.db".to_owned(),
        "../chat.db".to_owned(),
        "..%2F..%2Fchat.db".to_owned(),
        "%2e%2e/chat.db".to_owned(),
    ] {
        let forged = url.replace(&a, &replacement);
        let fetched = fetch(&forged).await;

        // THEN it is refused, and neither the other's bytes nor the database are served
        assert!(
            (400..500).contains(&fetched.status),
            "GET {forged}: {fetched:?}"
        );
        assert!(
            !fetched
                .body
                .windows(other_bytes.len())
                .any(|w| w == other_bytes),
            "GET {forged} served another attachment"
        );
        assert!(
            !fetched.body.starts_with(b"SQLite format 3"),
            "GET {forged} served the database"
        );
    }
}

/// Alice uploads `bytes` as `mime` and sends them (client id `cmid`); what bob then gets
/// at its download URL.
async fn sent_and_fetched(p: &mut Pair, cmid: &str, mime: &str, bytes: &[u8]) -> Raw {
    let a = uploaded(&p.server, "alice", &p.id, mime, bytes, None).await;
    expect_ack(
        &mut p.alice,
        send_content(&p.id, cmid, attachment_content(&a)),
    )
    .await;
    // WHEN bob downloads it
    fetch(&download_url(&p.server, "bob", &a).await).await
}
