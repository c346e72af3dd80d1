//! The key ports: where the public keys of an identity provider come from (a JWKS
//! document over HTTPS in both servers, `chat-jwks`), and where our HS256 secrets do when
//! a store holds them (Secrets Manager on AWS). The core caches what they return and
//! decides when to ask again ([`crate::auth::KeySet`], [`crate::auth::SecretSet`]).

use async_trait::async_trait;

/// A source of a JSON Web Key Set document (RFC 7517 section 5).
#[async_trait]
pub trait KeySetSource: Send + Sync + 'static {
    /// The document's bytes. A response over `max_bytes`, a status other than 200 or a
    /// transport failure is an error (a sentence for the log); the caller bounds the time.
    async fn fetch(&self, max_bytes: usize) -> Result<Vec<u8>, String>;
}

/// A store of our HS256 secrets (Secrets Manager on AWS): the core caches them and
/// reads them again when a token signed with a newer one comes ([`crate::auth::SecretSet`]).
#[async_trait]
pub trait SecretSource: Send + Sync + 'static {
    /// The current secret, then the previous one while the tokens it signed expire. A
    /// store that cannot be read is an error (a sentence for the log); the caller bounds
    /// the time.
    async fn fetch(&self) -> Result<Vec<String>, String>;
}
