//! Deleting a message erases its attachment (PROTOCOL.md 8.2, 8.3) on AWS: after the
//! fan-out of the delete (the stream's records run through `handle_stream`, as the
//! fan-out Lambda does), no S3 object and no DynamoDB item holds the attachment's bytes,
//! its caption or its file name. The stream's own records keep them for their 24 hours
//! (SECURITY.md).

mod common;

use std::sync::Arc;

use chat_aws::dynamodb::DynamoStore;
use chat_aws::lambda::handle_stream;
use chat_aws::s3::S3Blobs;
use chat_shared::Chat;
use chat_shared::auth::TokenVerifier;
use chat_shared::config::Limits;
use chat_shared::ids::ClientMessageId;
use chat_shared::ports::ConversationKind;
use chat_shared::ports::SystemClock;
use chat_shared::protocol::{AppendRequest, AttachmentInfo, Content, Entry, Media};
use chat_shared::service::{AttachmentPorts, CreateConversation, NewAttachment, Ports};
use chat_tests::emulators::MotoServer;
use common::*;

fn s3_client() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(credentials())
            .endpoint_url(MotoServer::shared().endpoint())
            .force_path_style(true)
            .build(),
    )
}

/// Every object's bytes in `bucket`.
async fn every_object(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<Vec<u8>> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut out = Vec::new();
    for object in listed.contents() {
        let got = s3
            .get_object()
            .bucket(bucket)
            .key(object.key().unwrap())
            .send()
            .await
            .unwrap();
        out.push(got.body.collect().await.unwrap().into_bytes().to_vec());
    }
    out
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_delete_no_object_or_item_holds_the_attachment() {
    // GIVEN the service over DynamoDB Local and S3 on moto
    let dynamodb = dynamodb_client();
    let names = tables(&dynamodb, "att").await;
    let s3 = s3_client();
    let bucket = format!("erase-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let store = DynamoStore::new(dynamodb.clone(), names.clone());
    let chat = Chat::new(
        Ports {
            store: Arc::new(store.clone()),
            gateway: Arc::new(Tap::new(moto_gateway())),
            push: Arc::new(chat_aws::sns::SnsPush::new(
                sns_client(),
                Default::default(),
            )),
            clock: Arc::new(SystemClock),
            attachments: Some(AttachmentPorts {
                store: Arc::new(store),
                blobs: Arc::new(S3Blobs::new(s3.clone(), &bucket)),
            }),
            direct: None,
        },
        Limits::default(),
        TokenVerifier::new("aws-tests", None, None),
    );
    let (alice, bob) = (user("alice"), user("bob"));
    let (group, _) = chat
        .create_conversation(
            &alice,
            CreateConversation {
                kind: ConversationKind::Group,
                name: Some("Photos".into()),
                members: vec![bob],
            },
        )
        .await
        .unwrap();
    let id = group.conversation_id;
    // AND alice's photo of unique bytes, uploaded, sent with a caption, a file name of
    // their own, and another photo that stays
    let marker = format!(
        "ERASE-{}-{}",
        std::process::id(),
        chat_shared::domain::new_message_id()
    );
    let send_photo = async |cmid: &str, bytes: Vec<u8>, label: &str| {
        let created = chat
            .create_attachment(
                &alice,
                NewAttachment {
                    conversation_id: id.clone(),
                    mime_type: "image/jpeg".into(),
                    size: bytes.len() as u64,
                    file_name: Some(format!("{label}.jpg")),
                },
            )
            .await
            .unwrap();
        let mut put = reqwest::Client::new().put(&created.upload.url).body(bytes);
        for (name, value) in &created.upload.headers {
            put = put.header(name, value.as_str().unwrap());
        }
        assert_eq!(put.send().await.unwrap().status().as_u16(), 200);
        let media = Media {
            attachment: AttachmentInfo {
                attachment_id: created.attachment_id.clone(),
                mime_type: String::new(),
                size: 0,
                file_name: None,
            },
            width: None,
            height: None,
            duration_ms: None,
            preview: None,
            thumbnail_id: None,
        };
        let content = Content {
            kind: "attachment".into(),
            text: format!("caption {label}"),
            media: Some(Box::new(media)),
        };
        let send = AppendRequest {
            conversation_id: id.clone(),
            client_message_id: ClientMessageId::parse(cmid).unwrap(),
            entry: Entry::Message {
                content: Some(content),
                reply_to: None,
            },
        };
        chat.append(&alice, None, send).await.unwrap().seq
    };
    let secret = send_photo(
        "photo",
        format!("jpeg bytes {marker}").into_bytes(),
        &marker,
    )
    .await;
    send_photo("kept", b"jpeg bytes that stay".to_vec(), "kept").await;
    assert_eq!(every_object(&s3, &bucket).await.len(), 2);

    // WHEN alice deletes the first, and the stream's records are fanned out
    let delete = AppendRequest {
        conversation_id: id.clone(),
        client_message_id: ClientMessageId::parse("delete").unwrap(),
        entry: Entry::Delete { target_seq: secret },
    };
    chat.append(&alice, None, delete).await.unwrap();
    let batch = read_stream(&dynamodb, &names.messages).await;
    let response = handle_stream(&chat, batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    // THEN no object holds its bytes, and the other photo's stay
    let objects = every_object(&s3, &bucket).await;
    assert_eq!(objects.len(), 1, "the deleted photo's object is gone");
    assert!(!objects.iter().any(|o| holds(o, marker.as_bytes())));
    assert!(objects.iter().any(|o| holds(o, b"that stay")));
    // AND no item holds its caption or file name (the record is gone too)
    let strings = every_string(&dynamodb, &names).await;
    let leaks: Vec<&String> = strings.iter().filter(|s| s.contains(&marker)).collect();
    assert!(
        leaks.is_empty(),
        "erased attachment still stored: {leaks:?}"
    );
    assert!(strings.iter().any(|s| s.contains("caption kept")));
}
