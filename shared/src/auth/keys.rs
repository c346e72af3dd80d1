//! An identity provider's public keys (a JWKS), cached: a key is looked up by the
//! token's `kid`; an unknown `kid` or a set older than [`MAX_AGE_MS`] asks the source
//! again, at most once a [`REFRESH_INTERVAL_MS`] (every [`EMPTY_RETRY_MS`] while no key
//! is known); a source that fails, times out or serves something unusable leaves the
//! cached keys in place (so a removed key keeps verifying while the source fails). Only the request that
//! meets an unknown `kid` waits for a refresh (at most [`FETCH_TIMEOUT`]); a stale set
//! that holds the key answers at once and refreshes behind it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tracing::warn;

use crate::ids::Millis;
use crate::ports::KeySetSource;

/// A key set document longer than this is refused (providers serve 1-4 KB).
pub const MAX_KEY_SET_BYTES: usize = 64 * 1024;
/// Keys read from one document at most.
const MAX_KEYS: usize = 32;
/// The set is asked for again at most this often.
pub const REFRESH_INTERVAL_MS: Millis = 60_000;
/// ...or this often while no key is known yet (the provider was down when the first
/// token came): a server without keys refuses every provider token.
pub const EMPTY_RETRY_MS: Millis = 5_000;
/// A set this old is refreshed, so a key the provider removed stops verifying.
pub const MAX_AGE_MS: Millis = 10 * 60_000;
/// How long a refresh may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// A public key and the one algorithm it verifies: its type decides (RSA: RS256, EC
/// P-256: ES256), never the token.
pub(super) struct Key {
    kid: Option<String>,
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

/// The cached keys of one source.
pub struct KeySet {
    source: Arc<dyn KeySetSource>,
    cache: RwLock<Cache>,
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    keys: Vec<Arc<Key>>,
    fetched_at: Option<Millis>,
    attempted_at: Option<Millis>,
}

impl Cache {
    /// The key a token names; a token without `kid` may use a set of one key.
    fn find(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .cloned()
    }

    fn may_refresh(&self, now: Millis) -> bool {
        let interval = if self.keys.is_empty() {
            EMPTY_RETRY_MS
        } else {
            REFRESH_INTERVAL_MS
        };
        self.attempted_at
            .is_none_or(|t| now.saturating_sub(t) >= interval)
    }

    fn stale(&self, now: Millis) -> bool {
        self.fetched_at
            .is_none_or(|t| now.saturating_sub(t) >= MAX_AGE_MS)
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("KeySet")
            .field("keys", &cache.keys.len())
            .field("fetched_at", &cache.fetched_at)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// An empty set over `source`; the first token fetches it.
    pub fn new(source: Arc<dyn KeySetSource>) -> Arc<Self> {
        Arc::new(Self {
            source,
            cache: RwLock::default(),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches the set now (at start, to spare the first request the wait). A failure is
    /// logged and leaves the set as it was.
    pub async fn load(&self, now: Millis) {
        self.refresh(now).await;
    }

    /// The key for a token's `kid` at `now`.
    pub(super) async fn key(self: &Arc<Self>, kid: Option<&str>, now: Millis) -> Option<Arc<Key>> {
        let (found, stale, may_refresh) = {
            let cache = self.cache();
            (cache.find(kid), cache.stale(now), cache.may_refresh(now))
        };
        match found {
            Some(key) => {
                if stale && may_refresh {
                    let set = Arc::clone(self);
                    tokio::spawn(async move { set.refresh(now).await });
                }
                Some(key)
            }
            None if may_refresh => {
                self.refresh(now).await;
                self.cache().find(kid)
            }
            None => None,
        }
    }

    /// Asks the source once, unless another refresh did within the interval.
    async fn refresh(&self, now: Millis) {
        let _one_at_a_time = self.refreshing.lock().await;
        {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            if !cache.may_refresh(now) {
                return;
            }
            cache.attempted_at = Some(now);
        }
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, self.source.fetch(MAX_KEY_SET_BYTES))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")));
        match fetched.and_then(|doc| parse_key_set(&doc)) {
            Ok(keys) => {
                let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
                cache.keys = keys;
                cache.fetched_at = Some(now);
                metrics::counter!("chat_key_set_refreshes_total", "outcome" => "ok").increment(1);
            }
            Err(reason) => {
                warn!(%reason, "key set refresh failed: the cached keys stay");
                metrics::counter!("chat_key_set_refreshes_total", "outcome" => "failed")
                    .increment(1);
            }
        }
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
pub(super) fn parse_key_set(doc: &[u8]) -> Result<Vec<Arc<Key>>, String> {
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
        .map(Arc::new)
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
