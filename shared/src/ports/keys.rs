//! The key-set port: where the public keys of an identity provider come from (a JWKS
//! document over HTTPS in both servers, `chat-jwks`). The core caches what it returns and
//! decides when to ask again ([`crate::auth::KeySet`]).

use async_trait::async_trait;

/// A source of a JSON Web Key Set document (RFC 7517 section 5).
#[async_trait]
pub trait KeySetSource: Send + Sync + 'static {
    /// The document's bytes. A response over `max_bytes`, a status other than 200 or a
    /// transport failure is an error (a sentence for the log); the caller bounds the time.
    async fn fetch(&self, max_bytes: usize) -> Result<Vec<u8>, String>;
}
