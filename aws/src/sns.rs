//! The SNS mobile push adapter of the [`PushSender`] port.
//!
//! Registering a device creates (or re-enables and updates) its platform endpoint under
//! the platform application configured for its platform. A push is one `Publish` to the
//! endpoint with a per-platform JSON payload kept under SNS's 4 KB limit. An endpoint SNS
//! reports disabled or not found is [`PushError::EndpointGone`]: the service removes
//! the device.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::operation::create_platform_endpoint::CreatePlatformEndpointError;
use aws_sdk_sns::operation::publish::PublishError;
use aws_sdk_sns::types::MessageAttributeValue;
use chat_shared::ports::{DeviceRecord, Platform, PushError, PushNotification, PushSender};
use serde_json::json;

/// APNs and FCM refuse payloads over 4096 bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// Platform application ARNs, one per platform (`None`: pushes to it are skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformApplications {
    pub apns: Option<String>,
    pub apns_sandbox: Option<String>,
    pub fcm: Option<String>,
}

impl PlatformApplications {
    /// Keeps the applications SNS can push through from `region`: an ARN of the
    /// platform's kind (`app/APNS/`, `app/APNS_SANDBOX/`, `app/GCM/`) in that Region. SNS
    /// mobile push works only with an application in the caller's own Region, so any
    /// other is dropped, with an error in the log: that platform gets no pushes, and
    /// messaging goes on.
    pub fn usable_from(self, region: Option<&str>) -> Self {
        let keep = |arn: Option<String>, platform: Platform| {
            let arn = arn?;
            match application_region(&arn, platform) {
                Some(r) if region.is_none_or(|here| here == r) => Some(arn),
                Some(r) => {
                    tracing::error!(
                        platform = platform.as_str(),
                        application.region = r,
                        region = region.unwrap_or(""),
                        "the SNS platform application is in another Region: no pushes for this platform"
                    );
                    None
                }
                None => {
                    tracing::error!(
                        platform = platform.as_str(),
                        %arn,
                        "not an SNS platform application ARN for this platform: no pushes for it"
                    );
                    None
                }
            }
        };
        Self {
            apns: keep(self.apns, Platform::Apns),
            apns_sandbox: keep(self.apns_sandbox, Platform::ApnsSandbox),
            fcm: keep(self.fcm, Platform::Fcm),
        }
    }

    /// The application for a platform.
    pub fn arn(&self, platform: Platform) -> Option<&str> {
        match platform {
            Platform::Apns => self.apns.as_deref(),
            Platform::ApnsSandbox => self.apns_sandbox.as_deref(),
            Platform::Fcm => self.fcm.as_deref(),
        }
    }
}

/// The Region of a platform application ARN
/// (`arn:PARTITION:sns:REGION:ACCOUNT:app/KIND/NAME`) of the platform's kind.
fn application_region(arn: &str, platform: Platform) -> Option<&str> {
    let kind = match platform {
        Platform::Apns => "APNS",
        Platform::ApnsSandbox => "APNS_SANDBOX",
        Platform::Fcm => "GCM",
    };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("sns"), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let name = resource
        .strip_prefix("app/")?
        .strip_prefix(kind)?
        .strip_prefix('/')?;
    let valid = !region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.contains('/');
    valid.then_some(region)
}

/// A platform the deployment has no application for.
#[derive(Debug, thiserror::Error)]
#[error("no SNS platform application is configured for {0}")]
pub struct PlatformNotConfigured(&'static str);

/// Pushes through SNS platform endpoints.
#[derive(Clone, Debug)]
pub struct SnsPush {
    client: Client,
    apps: PlatformApplications,
}

impl SnsPush {
    /// A sender over `client` with the deployment's platform applications.
    pub fn new(client: Client, apps: PlatformApplications) -> Self {
        Self { client, apps }
    }

    async fn create_endpoint(&self, device: &DeviceRecord) -> Result<String, PushError> {
        let app = self.apps.arn(device.platform).ok_or_else(|| {
            PushError::Other(Box::new(PlatformNotConfigured(device.platform.as_str())))
        })?;
        let user_data = format!("{}/{}", device.user_id, device.device_id);
        let created = self
            .client
            .create_platform_endpoint()
            .platform_application_arn(app)
            .token(&device.token)
            .custom_user_data(&user_data)
            .send()
            .await;
        let arn = match created {
            Ok(out) => out.endpoint_arn.ok_or_else(|| {
                PushError::Other("CreatePlatformEndpoint returned no EndpointArn".into())
            })?,
            // The token already has an endpoint with other attributes (another user had
            // it, or it was disabled): SNS names it in the message; take it over below.
            Err(e) => match e.as_service_error() {
                Some(CreatePlatformEndpointError::InvalidParameterException(p)) => {
                    existing_endpoint(p.message().unwrap_or_default())
                        .ok_or_else(|| PushError::Other(Box::new(e)))?
                }
                _ => return Err(PushError::Other(Box::new(e))),
            },
        };
        // Make sure the endpoint is enabled, holds this token and names its owner.
        self.client
            .set_endpoint_attributes()
            .endpoint_arn(&arn)
            .attributes("Enabled", "true")
            .attributes("Token", &device.token)
            .attributes("CustomUserData", user_data)
            .send()
            .await
            .map_err(|e| PushError::Other(Box::new(e)))?;
        Ok(arn)
    }
}

/// The ARN in SNS's "Endpoint arn:... already exists with the same Token, but
/// different attributes." message.
fn existing_endpoint(message: &str) -> Option<String> {
    let start = message.find("arn:")?;
    let arn: String = message[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    Some(arn)
}

/// The reserved message attribute SNS turns into APNs' `apns-collapse-id` header.
pub const APNS_COLLAPSE_ID: &str = "AWS.SNS.MOBILE.APNS.COLLAPSE_ID";

/// The per-platform payloads of a notification: (APNs, FCM).
pub fn platform_payloads(n: &PushNotification) -> (String, String) {
    let apns = json!({
        "aps": {
            "alert": {"title": n.title, "body": n.body},
            "badge": n.badge,
            "sound": "default",
            "thread-id": n.conversation_id,
        },
        "conversationId": n.conversation_id,
        "seq": n.seq,
        "messageId": n.message_id,
    })
    .to_string();
    let fcm = json!({
        "fcmV1Message": {
            "message": {
                "notification": {"title": n.title, "body": n.body},
                "data": {
                    "conversationId": n.conversation_id,
                    "seq": n.seq.to_string(),
                    "messageId": n.message_id,
                    "badge": n.badge.to_string(),
                },
                // The messageId is the collapse key (PROTOCOL.md 8.5): the push that says
                // a message was deleted replaces the one that showed it.
                "android": {
                    "collapse_key": n.message_id,
                    "notification": {"tag": n.message_id},
                },
            }
        }
    })
    .to_string();
    (apns, fcm)
}

/// The `Publish` message (MessageStructure `json`): the payload for each platform, or
/// an error when one is over the platforms' 4 KB limit.
pub fn payload(n: &PushNotification) -> Result<String, PushError> {
    let (apns, fcm) = platform_payloads(n);
    let largest = apns.len().max(fcm.len());
    if largest > MAX_PAYLOAD_BYTES {
        return Err(PushError::Other(
            format!("push payload of {largest} bytes exceeds 4 KB").into(),
        ));
    }
    Ok(json!({
        "default": n.body,
        "APNS": apns,
        "APNS_SANDBOX": apns,
        "GCM": fcm,
    })
    .to_string())
}

#[async_trait]
impl PushSender for SnsPush {
    async fn register(&self, device: &DeviceRecord) -> Result<Option<String>, PushError> {
        if self.apps.arn(device.platform).is_none() {
            // Pushes to this platform are off in this deployment; keep the device.
            return Ok(None);
        }
        self.create_endpoint(device).await.map(Some)
    }

    async fn push(&self, device: &DeviceRecord, n: &PushNotification) -> Result<(), PushError> {
        let endpoint = match &device.endpoint {
            Some(e) => e.clone(),
            None if self.apps.arn(device.platform).is_some() => {
                self.create_endpoint(device).await?
            }
            None => return Ok(()),
        };
        let message = payload(n)?;
        match self
            .client
            .publish()
            .target_arn(&endpoint)
            .message_structure("json")
            .message(message)
            // APNs' `apns-collapse-id`: a later push with the same messageId replaces
            // the notification (SNS sets the header from this reserved attribute).
            .message_attributes(
                APNS_COLLAPSE_ID,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(&n.message_id)
                    .build()
                    .map_err(|e| PushError::Other(Box::new(e)))?,
            )
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(PublishError::EndpointDisabledException(_))
                | Some(PublishError::NotFoundException(_)) => Err(PushError::EndpointGone),
                _ => Err(PushError::Other(Box::new(e))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_shared::ids::ConversationId;

    use super::*;

    #[test]
    fn only_applications_of_the_platform_in_this_region_are_kept() {
        let apps = |apns: &str, sandbox: &str, fcm: &str| PlatformApplications {
            apns: Some(apns.to_owned()),
            apns_sandbox: Some(sandbox.to_owned()),
            fcm: Some(fcm.to_owned()),
        };
        let good = apps(
            "arn:aws:sns:eu-west-1:123456789012:app/APNS/Chat",
            "arn:aws:sns:eu-west-1:123456789012:app/APNS_SANDBOX/Chat-dev",
            "arn:aws:sns:eu-west-1:123456789012:app/GCM/chat.android",
        );
        assert_eq!(good.clone().usable_from(Some("eu-west-1")), good);
        // Another Region: SNS cannot push through it from here.
        assert_eq!(
            good.clone().usable_from(Some("us-east-1")),
            PlatformApplications::default()
        );
        // The wrong kind for the platform, or not an application ARN at all.
        let wrong = apps(
            "arn:aws:sns:eu-west-1:123456789012:app/GCM/Chat",
            "arn:aws:sns:eu-west-1:123456789012:endpoint/APNS_SANDBOX/Chat-dev/e1",
            "arn:aws:sns:eu-west-1:12345:app/GCM/chat",
        );
        assert_eq!(
            wrong.usable_from(Some("eu-west-1")),
            PlatformApplications::default()
        );
        assert_eq!(
            apps(
                "app/APNS/x",
                "arn:aws:sqs:eu-west-1:123456789012:app/APNS_SANDBOX/x",
                ""
            )
            .usable_from(None),
            PlatformApplications::default()
        );
    }

    #[test]
    fn the_existing_endpoint_is_read_from_the_sns_message() {
        let msg = "Invalid parameter: Token Reason: Endpoint arn:aws:sns:us-east-1:1:endpoint/GCM/app/abc already exists with the same Token, but different attributes.";
        assert_eq!(
            existing_endpoint(msg).as_deref(),
            Some("arn:aws:sns:us-east-1:1:endpoint/GCM/app/abc")
        );
        assert_eq!(existing_endpoint("nothing here"), None);
    }

    #[test]
    fn the_largest_notification_fits_in_4_kb() {
        // The longest title (a 100-char group name and a 128-char sender) and body
        // (100 characters of 4-byte emoji), escaped in three nested payloads.
        let n = PushNotification {
            title: format!("{}: {}", "\"".repeat(100), "a".repeat(128)),
            body: "😀".repeat(100),
            conversation_id: ConversationId::parse(format!("c_{}", "f".repeat(32))).unwrap(),
            seq: u64::MAX,
            message_id: format!("m_{}", "f".repeat(32)),
            badge: u64::MAX,
            timestamp: 0,
        };
        let (apns, fcm) = platform_payloads(&n);
        assert!(
            apns.len() <= MAX_PAYLOAD_BYTES,
            "APNs: {} bytes",
            apns.len()
        );
        assert!(fcm.len() <= MAX_PAYLOAD_BYTES, "FCM: {} bytes", fcm.len());
        let p = payload(&n).unwrap();
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        let apns: serde_json::Value = serde_json::from_str(v["APNS"].as_str().unwrap()).unwrap();
        assert_eq!(apns["aps"]["alert"]["body"], n.body);
        // The messageId collapses on Android (the FCM tag replaces the notification);
        // on iOS the Publish carries it as `apns-collapse-id` (see `APNS_COLLAPSE_ID`).
        let fcm: serde_json::Value = serde_json::from_str(v["GCM"].as_str().unwrap()).unwrap();
        let android = &fcm["fcmV1Message"]["message"]["android"];
        assert_eq!(android["notification"]["tag"], n.message_id);
        assert_eq!(android["collapse_key"], n.message_id);
    }
}
