//! The blob port on S3 (`chat_aws::s3`) against moto's S3: uploads are create-only at
//! the URL given, with exactly the headers given; the tag the lifecycle rules read
//! follows the bytes' use; downloads carry the safe response headers; deletes are
//! idempotent.
//!
//! moto does not check presigned signatures (a changed length, type or header is
//! accepted there); what the signature binds is checked here from the URL itself
//! (`X-Amz-SignedHeaders`), and enforced end to end on ministack, which does check
//! them (tests/e2e/attachments.rs).

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use chat_aws::s3::{S3Blobs, USE_TAG, object_key};
use chat_shared::domain::new_attachment_id;
use chat_shared::ids::{AttachmentId, ConversationId, UserId};
use chat_shared::ports::{AttachmentRecord, BlobStore, BlobUse};
use chat_tests::emulators::MotoServer;

fn client() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "s3-tests"))
        .endpoint_url(MotoServer::shared().endpoint())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn bucket(client: &aws_sdk_s3::Client, tag: &str) -> String {
    let name = format!("chat-{tag}-{}", std::process::id());
    let _ = client.create_bucket().bucket(&name).send().await;
    name
}

fn record(mime: &str, size: u64, file_name: Option<&str>) -> AttachmentRecord {
    AttachmentRecord {
        id: new_attachment_id(),
        conversation_id: ConversationId::parse("c_s3").unwrap(),
        uploader: UserId::parse("alice").unwrap(),
        mime_type: mime.into(),
        size,
        file_name: file_name.map(str::to_owned),
        created_at: 0,
        used_by: None,
    }
}

fn far() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 600_000
}

/// PUTs `body` to an upload URL with its headers.
async fn put(url: &chat_shared::ports::UploadUrl, body: &[u8]) -> u16 {
    let mut request = reqwest::Client::new().put(&url.url).body(body.to_vec());
    for (name, value) in &url.headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn tag_of(client: &aws_sdk_s3::Client, bucket: &str, id: &AttachmentId) -> String {
    let out = client
        .get_object_tagging()
        .bucket(bucket)
        .key(object_key(id))
        .send()
        .await
        .unwrap();
    let tag = out.tag_set().iter().find(|t| t.key() == USE_TAG).unwrap();
    tag.value().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_create_only_bound_to_its_length_type_and_tag() {
    // GIVEN an attachment of 11 bytes of text/html
    let client = client();
    let bucket = bucket(&client, "upload").await;
    let blobs = S3Blobs::new(client.clone(), &bucket);
    let a = record("text/html", 11, Some("page.html"));
    // WHEN its upload URL is made
    let url = blobs.upload_url(&a, far()).await.unwrap();
    // THEN the signature binds length, type, If-None-Match and the tag, and the headers
    // to send are all of them but Content-Length and Host (the HTTP client's)
    let signed = url
        .url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
        .expect("signed headers in the URL");
    assert_eq!(
        signed,
        "content-length%3Bcontent-type%3Bhost%3Bif-none-match%3Bx-amz-tagging"
    );
    let mut names: Vec<String> = url.headers.iter().map(|(n, _)| n.to_lowercase()).collect();
    names.sort();
    assert_eq!(names, ["content-type", "if-none-match", "x-amz-tagging"]);
    assert!(url.url.contains(&object_key(&a.id)));
    // AND nothing is there before the upload
    assert_eq!(blobs.uploaded_size(&a.id).await.unwrap(), None);

    // WHEN the bytes are PUT, then PUT again
    assert_eq!(put(&url, b"<b>hi</b>!!").await, 200);
    let again = put(&url, b"<i>no</i>!!").await;
    // THEN the second is refused (412) and the first bytes stay, tagged unused
    assert_eq!(again, 412);
    assert_eq!(blobs.uploaded_size(&a.id).await.unwrap(), Some(11));
    let object = client
        .get_object()
        .bucket(&bucket)
        .key(object_key(&a.id))
        .send()
        .await
        .unwrap();
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], b"<b>hi</b>!!");
    assert_eq!(tag_of(&client, &bucket, &a.id).await, "unused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tag_follows_the_use_and_deletes_are_idempotent() {
    let client = client();
    let bucket = bucket(&client, "use").await;
    let blobs = S3Blobs::new(client.clone(), &bucket);
    let a = record("image/png", 4, None);
    assert_eq!(
        put(&blobs.upload_url(&a, far()).await.unwrap(), b"\x89PNG").await,
        200
    );
    // WHEN a message uses it, then the avatar
    blobs.mark(&a.id, BlobUse::Message).await.unwrap();
    assert_eq!(tag_of(&client, &bucket, &a.id).await, "message");
    blobs.mark(&a.id, BlobUse::Avatar).await.unwrap();
    assert_eq!(tag_of(&client, &bucket, &a.id).await, "avatar");
    // WHEN it is deleted, twice, with one that never existed
    let never = new_attachment_id();
    blobs.delete(&[a.id.clone(), never.clone()]).await.unwrap();
    blobs.delete(std::slice::from_ref(&a.id)).await.unwrap();
    // THEN it is gone
    assert_eq!(blobs.uploaded_size(&a.id).await.unwrap(), None);
    assert_eq!(blobs.uploaded_size(&never).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_serve_active_types_as_attachments_of_no_type() {
    let client = client();
    let bucket = bucket(&client, "download").await;
    let blobs = S3Blobs::new(client.clone(), &bucket);
    for (mime, name, served, disposition) in [
        (
            "image/svg+xml",
            Some("x\".svg"),
            "application/octet-stream",
            "attachment; filename*=UTF-8''x%22.svg",
        ),
        ("text/html", None, "application/octet-stream", "attachment"),
        (
            "image/png",
            Some("cat.png"),
            "image/png",
            "inline; filename*=UTF-8''cat.png",
        ),
    ] {
        // GIVEN an uploaded attachment of that type
        let a = record(mime, 3, name);
        assert_eq!(
            put(&blobs.upload_url(&a, far()).await.unwrap(), b"abc").await,
            200
        );
        // WHEN it is fetched at its download URL
        let url = blobs.download_url(&a, far()).await.unwrap();
        let response = reqwest::get(&url).await.unwrap();
        // THEN it comes with the safe type and disposition, and its bytes
        assert_eq!(response.status().as_u16(), 200, "{mime}");
        let header = |n: &str| {
            response
                .headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("content-type").as_deref(), Some(served), "{mime}");
        assert_eq!(
            header("content-disposition").as_deref(),
            Some(disposition),
            "{mime}"
        );
        assert_eq!(&response.bytes().await.unwrap()[..], b"abc");
    }
}
