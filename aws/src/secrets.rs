//! The `SecretSource` port on Secrets Manager: our HS256 secret is a secret string whose
//! version staged `AWSCURRENT` signs and verifies tokens, and whose version staged
//! `AWSPREVIOUS` (the one a rotation replaced, kept there by Secrets Manager) verifies
//! them too, while the tokens it signed expire. Putting a new value rotates; removing
//! the `AWSPREVIOUS` stage withdraws the old one. The core reads both again when a token
//! no cached secret verifies comes, and every ten minutes (`chat_shared::auth`).

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use chat_shared::ports::SecretSource;

/// A secret shorter than this could be guessed offline from any token it signed.
pub const MIN_SECRET_CHARS: usize = 32;

/// One secret of Secrets Manager, by ARN or name.
#[derive(Debug, Clone)]
pub struct ManagedSecret {
    client: Client,
    id: String,
}

impl ManagedSecret {
    pub fn new(client: Client, id: impl Into<String>) -> Self {
        Self {
            client,
            id: id.into(),
        }
    }

    /// The value staged `stage`; `None` when no version has that stage.
    async fn staged(&self, stage: &str) -> Result<Option<String>, String> {
        let read = self
            .client
            .get_secret_value()
            .secret_id(&self.id)
            .version_stage(stage)
            .send()
            .await;
        let value = match read {
            Ok(out) => out.secret_string,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(format!(
                    "reading {stage} of {}: {}",
                    self.id,
                    DisplayErrorContext(&e)
                ));
            }
        };
        let value =
            value.ok_or_else(|| format!("{stage} of {} is binary, not a string", self.id))?;
        if value.chars().count() < MIN_SECRET_CHARS {
            return Err(format!(
                "{stage} of {} is shorter than {MIN_SECRET_CHARS} characters",
                self.id
            ));
        }
        Ok(Some(value))
    }
}

#[async_trait]
impl SecretSource for ManagedSecret {
    /// `AWSCURRENT`, then `AWSPREVIOUS` when a version has it; both read at once.
    async fn fetch(&self) -> Result<Vec<String>, String> {
        let (current, previous) =
            tokio::join!(self.staged("AWSCURRENT"), self.staged("AWSPREVIOUS"));
        let current = current?.ok_or_else(|| format!("{} has no AWSCURRENT version", self.id))?;
        Ok(std::iter::once(current).chain(previous?).collect())
    }
}
