//! An identity provider's public keys (a JWKS), cached (see [`super::cache`] for when
//! the document is fetched again): a key is looked up by the token's `kid`.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::cache::{Cached, Fetch};
use crate::ids::Millis;
use crate::ports::KeySetSource;

/// A key set document longer than this is refused (providers serve 1-4 KB).
pub const MAX_KEY_SET_BYTES: usize = 64 * 1024;
/// Keys read from one document at most.
const MAX_KEYS: usize = 32;

/// A public key and the one algorithm it verifies: its type decides (RSA: RS256, EC
/// P-256: ES256), never the token.
pub struct Key {
    kid: Option<String>,
    pub(super) algorithm: Algorithm,
    pub(super) decoding: DecodingKey,
}

/// The cached keys of one provider.
pub type KeySet = Cached<Key>;

struct Document(Arc<dyn KeySetSource>);

#[async_trait]
impl Fetch<Key> for Document {
    async fn fetch(&self) -> Result<Vec<Key>, String> {
        parse_key_set(&self.0.fetch(MAX_KEY_SET_BYTES).await?)
    }
}

impl Cached<Key> {
    /// An empty set over `source`; the first token fetches it.
    pub fn new(source: Arc<dyn KeySetSource>) -> Arc<Self> {
        Self::refreshed("jwks", Document(source))
    }

    /// The key for a token's `kid` at `now`; a token without `kid` may use a set of one
    /// key.
    pub(super) async fn key(self: &Arc<Self>, kid: Option<&str>, now: Millis) -> Option<Arc<Key>> {
        self.find(now, |keys| {
            match kid {
                Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
                None if keys.len() == 1 => keys.first(),
                None => None,
            }
            .cloned()
        })
        .await
    }
}

/// The length of an RSA modulus (base64url, big-endian) without leading zeros: keys
/// under 2048 bits are not used (aws-lc would refuse their signatures anyway).
fn modulus_bytes(n: &str) -> usize {
    URL_SAFE_NO_PAD.decode(n).map_or(0, |bytes| {
        bytes.len() - bytes.iter().take_while(|b| **b == 0).count()
    })
}

/// The signing keys of a JWKS document: RSA keys of 2048 bits or more (RS256) and EC P-256 keys (ES256).
/// Keys for encryption, of other types or curves, naming another `alg`, or that do not
/// parse are skipped; a document with none left is refused (the cached keys stay).
fn parse_key_set(doc: &[u8]) -> Result<Vec<Key>, String> {
    if doc.len() > MAX_KEY_SET_BYTES {
        return Err(format!("the document is over {MAX_KEY_SET_BYTES} bytes"));
    }
    let doc: Value =
        serde_json::from_slice(doc).map_err(|e| format!("the document is not JSON: {e}"))?;
    let listed = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the document has no keys array")?;
    let keys: Vec<_> = listed
        .iter()
        .take(MAX_KEYS)
        .filter_map(|v| signing_key(v.clone()))
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "none of its {} keys is an RSA or P-256 signing key",
            listed.len()
        ));
    }
    Ok(keys)
}

fn signing_key(value: Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let (algorithm, named) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) if modulus_bytes(&rsa.n) >= 256 => {
            (Algorithm::RS256, KeyAlgorithm::RS256)
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        _ => return None,
    };
    if jwk.common.key_algorithm.is_some_and(|a| a != named) {
        return None;
    }
    Some(Key {
        kid: jwk.common.key_id.clone(),
        algorithm,
        decoding: DecodingKey::from_jwk(&jwk).ok()?,
    })
}
