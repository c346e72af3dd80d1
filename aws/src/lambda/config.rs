//! The functions' configuration, read from the environment once, at start.

use chat_shared::config::{ConfigError, Limits, TokenConfig};

use crate::sns::PlatformApplications;
use crate::tables::TableNames;

/// Everything a function reads from its environment, once, at start.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub tables: TableNames,
    /// Who signs the tokens (our secret, a provider's key set): [`TokenConfig`].
    pub tokens: TokenConfig,
    /// `CHAT_JWT_SECRET_ARN`: the Secrets Manager secret that holds our HS256 secret
    /// (instead of `CHAT_JWT_SECRET` in the environment, which anyone allowed to read the
    /// function's configuration can read): [`crate::secrets`].
    pub secret_arn: Option<String>,
    pub limits: Limits,
    /// `CHAT_APIGW_ENDPOINT`: the Management API endpoint, when it is not
    /// `https://{domain}/{stage}` of the event (emulators, custom domains, the fan-out).
    pub apigw_endpoint: Option<String>,
    pub push_apps: PlatformApplications,
    /// `CHAT_ATTACHMENT_BUCKET`: the S3 bucket of attachments' bytes; without it the
    /// functions refuse attachments.
    pub attachment_bucket: Option<String>,
    /// `CHAT_IDLE_TIMEOUT_SECS`: the sweeper closes connections silent this long.
    pub idle_timeout: std::time::Duration,
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(ConfigError {
            name,
            value: String::new(),
            reason: "is required",
        }),
    }
}

/// [`TokenConfig::from_env`] and `CHAT_JWT_SECRET_ARN`, with a secret or a key set: a
/// function must verify tokens.
fn tokens() -> Result<(TokenConfig, Option<String>), ConfigError> {
    let tokens = TokenConfig::from_env()?;
    let secret_arn = optional("CHAT_JWT_SECRET_ARN");
    if tokens.secret.is_some() && secret_arn.is_some() {
        return Err(ConfigError {
            name: "CHAT_JWT_SECRET",
            value: "<set>".to_owned(),
            reason: "and CHAT_JWT_SECRET_ARN name two secrets: set one",
        });
    }
    if tokens.secret.is_none() && secret_arn.is_none() && tokens.jwks_url.is_none() {
        return Err(ConfigError {
            name: "CHAT_JWT_SECRET_ARN",
            value: String::new(),
            reason: "(or CHAT_JWT_SECRET) is required unless CHAT_JWT_JWKS_URL is set",
        });
    }
    Ok((tokens, secret_arn))
}

pub(crate) fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl LambdaConfig {
    /// Reads `CHAT_TABLE_MAIN`, `CHAT_TABLE_MESSAGES`, `CHAT_TABLE_CONNECTIONS`,
    /// the token settings of [`TokenConfig::from_env`] and `CHAT_JWT_SECRET_ARN` (a
    /// secret or a key set required),
    /// `CHAT_APIGW_ENDPOINT`, `CHAT_SNS_APNS_ARN`, `CHAT_SNS_APNS_SANDBOX_ARN`,
    /// `CHAT_SNS_FCM_ARN`, `CHAT_ATTACHMENT_BUCKET`, `CHAT_IDLE_TIMEOUT_SECS` and the
    /// limits of [`Limits::from_env`].
    pub fn from_env() -> Result<Self, ConfigError> {
        let (tokens, secret_arn) = tokens()?;
        Ok(Self {
            tables: TableNames {
                main: required("CHAT_TABLE_MAIN")?,
                messages: required("CHAT_TABLE_MESSAGES")?,
                connections: required("CHAT_TABLE_CONNECTIONS")?,
            },
            tokens,
            secret_arn,
            limits: Limits::from_env()?,
            apigw_endpoint: optional("CHAT_APIGW_ENDPOINT"),
            // Lambda sets AWS_REGION.
            push_apps: PlatformApplications {
                apns: optional("CHAT_SNS_APNS_ARN"),
                apns_sandbox: optional("CHAT_SNS_APNS_SANDBOX_ARN"),
                fcm: optional("CHAT_SNS_FCM_ARN"),
            }
            .usable_from(optional("AWS_REGION").as_deref()),
            attachment_bucket: optional("CHAT_ATTACHMENT_BUCKET"),
            idle_timeout: chat_shared::config::idle_timeout()?,
        })
    }
}
