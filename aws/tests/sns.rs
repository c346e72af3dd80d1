//! The SNS push adapter against moto server (a real SNS API on loopback), reading back
//! what was published to each platform endpoint.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_sns::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use chat_aws::sns::{PlatformApplications, SnsPush};
use chat_shared::ids::{ConversationId, DeviceId};
use chat_shared::ports::{DeviceRecord, Platform, PushError, PushNotification, PushSender};
use chat_tests::emulators::MotoServer;
use chat_tests::unique;
use common::{fcm_app, sns_client, sns_config, user};
use serde_json::Value;

/// Counts the requests a client sends (whatever the operation).
#[derive(Debug, Clone, Default)]
struct RequestCounter(Arc<AtomicUsize>);

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn device(user_id: &str, id: &str, token: &str) -> DeviceRecord {
    DeviceRecord {
        user_id: user(user_id),
        device_id: DeviceId::parse(id).unwrap(),
        platform: Platform::Fcm,
        token: token.into(),
        endpoint: None,
        updated_at: 1,
    }
}

fn notification(seq: u64) -> PushNotification {
    PushNotification {
        title: "Team: alice".into(),
        body: "hello there".into(),
        conversation_id: ConversationId::parse("c_1").unwrap(),
        seq,
        message_id: format!("m_{seq}"),
        badge: 3,
        timestamp: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_device_receives_the_fcm_payload() {
    // GIVEN an FCM platform application and a registered device
    let client = sns_client();
    let app = fcm_app(&unique("chat-fcm")).await;
    let push = SnsPush::new(
        client,
        PlatformApplications {
            fcm: Some(app),
            ..Default::default()
        },
    );
    let mut phone = device("alice", "phone", &unique("token"));
    phone.endpoint = push.register(&phone).await.unwrap();
    let endpoint = phone.endpoint.clone().expect("an endpoint was created");

    // WHEN a notification is pushed
    push.push(&phone, &notification(7)).await.unwrap();

    // THEN SNS published the per-platform message to that endpoint
    let published = MotoServer::shared().publishes_to(&endpoint).await.unwrap();
    assert_eq!(published.len(), 1);
    let message: Value = serde_json::from_str(&published[0].message).unwrap();
    let fcm: Value = serde_json::from_str(message["GCM"].as_str().unwrap()).unwrap();
    let msg = &fcm["fcmV1Message"]["message"];
    assert_eq!(msg["notification"]["title"], "Team: alice");
    assert_eq!(msg["notification"]["body"], "hello there");
    assert_eq!(msg["data"]["seq"], "7");
    assert_eq!(msg["data"]["badge"], "3");
    assert_eq!(msg["data"]["conversationId"], "c_1");
    assert_eq!(message["default"], "hello there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_endpoint_is_reported_gone() {
    let client = sns_client();
    let app = fcm_app(&unique("chat-fcm")).await;
    let push = SnsPush::new(
        client.clone(),
        PlatformApplications {
            fcm: Some(app),
            ..Default::default()
        },
    );
    let mut phone = device("bob", "phone", &unique("token"));
    phone.endpoint = push.register(&phone).await.unwrap();
    client
        .set_endpoint_attributes()
        .endpoint_arn(phone.endpoint.clone().unwrap())
        .attributes("Enabled", "false")
        .send()
        .await
        .unwrap();

    let err = push.push(&phone, &notification(1)).await.unwrap_err();

    assert!(matches!(err, PushError::EndpointGone), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_registered_again_reuses_and_re_enables_its_endpoint() {
    let client = sns_client();
    let app = fcm_app(&unique("chat-fcm")).await;
    let push = SnsPush::new(
        client.clone(),
        PlatformApplications {
            fcm: Some(app),
            ..Default::default()
        },
    );
    let token = unique("token");
    let first = push
        .register(&device("carol", "phone", &token))
        .await
        .unwrap()
        .unwrap();
    client
        .set_endpoint_attributes()
        .endpoint_arn(&first)
        .attributes("Enabled", "false")
        .send()
        .await
        .unwrap();

    // WHEN another user's device registers the same token
    let mut taken = device("dave", "phone", &token);
    taken.endpoint = push.register(&taken).await.unwrap();

    // THEN it gets that endpoint, enabled again, and pushes reach it
    assert_eq!(taken.endpoint.as_deref(), Some(first.as_str()));
    push.push(&taken, &notification(2)).await.unwrap();
    let attrs = client
        .get_endpoint_attributes()
        .endpoint_arn(&first)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes.unwrap_or_default();
    assert_eq!(attrs.get("Enabled").map(String::as_str), Some("true"));
    assert_eq!(
        attrs.get("CustomUserData").map(String::as_str),
        Some("dave/phone")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platforms_without_an_application_are_skipped() {
    // GIVEN no platform application at all, on a client that counts its requests
    let requests = RequestCounter::default();
    let client = aws_sdk_sns::Client::from_conf(sns_config().interceptor(requests.clone()).build());
    let push = SnsPush::new(client, PlatformApplications::default());
    let token = unique("token");
    let phone = device("erin", "phone", &token);

    // WHEN the device registers and is pushed to
    let endpoint = push.register(&phone).await.unwrap();
    push.push(&phone, &notification(1)).await.unwrap();

    // THEN no endpoint was made, SNS was never called, and moto holds nothing for the token
    assert_eq!(endpoint, None);
    assert_eq!(
        requests.0.load(Ordering::SeqCst),
        0,
        "SNS requests were sent"
    );
    // (the counter does see requests: one call through it counts one)
    let probe = aws_sdk_sns::Client::from_conf(sns_config().interceptor(requests.clone()).build());
    probe.list_platform_applications().send().await.unwrap();
    assert_eq!(requests.0.load(Ordering::SeqCst), 1);
    let publishes = MotoServer::shared().platform_publishes().await.unwrap();
    assert!(
        publishes.iter().all(|p| p.token != token),
        "something was published for the token: {publishes:?}"
    );
}
