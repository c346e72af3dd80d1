//! Our HS256 secrets: configured (a fixed list, current first), or held by a secret store
//! ([`SecretSource`]) and cached like a provider's keys ([`super::cache`]), so that a
//! rotation reaches running processes: a token no cached secret verifies reads the store
//! again (at most once a minute), and secrets ten minutes old are read again behind a
//! request (so a previous secret withdrawn from the store stops verifying).

use std::sync::Arc;

use async_trait::async_trait;

use super::cache::{Cached, Fetch};
use crate::ids::Millis;
use crate::ports::SecretSource;

/// One HS256 secret.
pub struct Secret(pub(super) Vec<u8>);

/// The secrets HS256 tokens are checked with; the first one signs.
pub type SecretSet = Cached<Secret>;

struct Store(Arc<dyn SecretSource>);

#[async_trait]
impl Fetch<Secret> for Store {
    async fn fetch(&self) -> Result<Vec<Secret>, String> {
        let secrets = self.0.fetch().await?;
        if secrets.is_empty() {
            return Err("the store holds no secret".to_owned());
        }
        Ok(secrets
            .into_iter()
            .map(|s| Secret(s.into_bytes()))
            .collect())
    }
}

impl Cached<Secret> {
    /// Secrets given by configuration, the one that signs first; never refreshed.
    pub fn configured<S: Into<Vec<u8>>>(secrets: impl IntoIterator<Item = S>) -> Arc<Self> {
        Self::fixed(
            "secrets",
            secrets.into_iter().map(|s| Secret(s.into())).collect(),
        )
    }

    /// The secrets `source` holds, read when a token first needs them.
    pub fn from_source(source: Arc<dyn SecretSource>) -> Arc<Self> {
        Self::refreshed("secrets", Store(source))
    }

    /// Whether one of the secrets makes `verifies` true (reading the store again, as the
    /// module says, when none does).
    pub(super) async fn any(
        self: &Arc<Self>,
        now: Millis,
        verifies: impl Fn(&[u8]) -> bool,
    ) -> bool {
        self.find(now, |secrets| {
            secrets.iter().find(|s| verifies(&s.0)).cloned()
        })
        .await
        .is_some()
    }
}
