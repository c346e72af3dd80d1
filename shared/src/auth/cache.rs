//! Keys that come from somewhere else, cached: an identity provider's public keys (a
//! JWKS) and our own HS256 secrets when a secret store holds them. One rule for both:
//! a token that no cached key verifies asks the source again, at most once a
//! [`REFRESH_INTERVAL_MS`] (every [`EMPTY_RETRY_MS`] while no key is known); keys older
//! than [`MAX_AGE_MS`] are refreshed behind the request that notices it, so a key the
//! source removed stops verifying; a source that fails, times out or serves something
//! unusable leaves the cached keys in place (so a removed key keeps verifying while the
//! source fails). Only the request that misses waits for a refresh (at most
//! [`FETCH_TIMEOUT`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tracing::warn;

use crate::ids::Millis;

/// The source is asked again at most this often.
pub const REFRESH_INTERVAL_MS: Millis = 60_000;
/// ...or this often while no key is known yet (the source was down when the first
/// token came): a server without keys refuses every token they would verify.
pub const EMPTY_RETRY_MS: Millis = 5_000;
/// Keys this old are refreshed, so a key the source removed stops verifying.
pub const MAX_AGE_MS: Millis = 10 * 60_000;
/// How long a refresh may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the keys come from, read into keys (a sentence for the log on failure).
#[async_trait]
pub(super) trait Fetch<K>: Send + Sync + 'static {
    async fn fetch(&self) -> Result<Vec<K>, String>;
}

/// The cached keys of one source, or a fixed list (configured secrets) that is never
/// refreshed.
pub struct Cached<K> {
    /// `None`: a fixed list.
    source: Option<Box<dyn Fetch<K>>>,
    /// Names the source in logs and metrics.
    what: &'static str,
    cache: RwLock<Cache<K>>,
    refreshing: tokio::sync::Mutex<()>,
}

struct Cache<K> {
    keys: Vec<Arc<K>>,
    fetched_at: Option<Millis>,
    attempted_at: Option<Millis>,
}

impl<K> Cache<K> {
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

impl<K> std::fmt::Debug for Cached<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Cached")
            .field("what", &self.what)
            .field("keys", &cache.keys.len())
            .field("fetched_at", &cache.fetched_at)
            .field("refreshed", &self.source.is_some())
            .finish()
    }
}

impl<K: Send + Sync + 'static> Cached<K> {
    fn build(what: &'static str, source: Option<Box<dyn Fetch<K>>>, keys: Vec<K>) -> Arc<Self> {
        Arc::new(Self {
            source,
            what,
            cache: RwLock::new(Cache {
                keys: keys.into_iter().map(Arc::new).collect(),
                fetched_at: None,
                attempted_at: None,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    pub(super) fn fixed(what: &'static str, keys: Vec<K>) -> Arc<Self> {
        Self::build(what, None, keys)
    }

    /// An empty cache over `source`: the first token (or [`load`](Self::load)) fetches.
    pub(super) fn refreshed(what: &'static str, source: impl Fetch<K>) -> Arc<Self> {
        Self::build(what, Some(Box::new(source)), Vec::new())
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, Cache<K>> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a key may verify something: there is one, or a source may bring one.
    pub(super) fn may_have_keys(&self) -> bool {
        self.source.is_some() || !self.cache().keys.is_empty()
    }

    /// The first key cached (the one that signs, for secrets).
    pub(super) fn first(&self) -> Option<Arc<K>> {
        self.cache().keys.first().cloned()
    }

    /// Fetches the keys now (at start, to spare the first request the wait). A failure
    /// is logged and leaves the keys as they were.
    pub async fn load(&self, now: Millis) {
        self.refresh(now).await;
    }

    /// The key `select` picks from the cached ones at `now`; when it picks none, the
    /// source is asked again (if it may be) and `select` runs on what it brought.
    pub(super) async fn find(
        self: &Arc<Self>,
        now: Millis,
        select: impl Fn(&[Arc<K>]) -> Option<Arc<K>>,
    ) -> Option<Arc<K>> {
        let (found, stale, may_refresh) = {
            let cache = self.cache();
            (
                select(&cache.keys),
                cache.stale(now),
                cache.may_refresh(now),
            )
        };
        if self.source.is_none() {
            return found;
        }
        match found {
            Some(key) => {
                if stale && may_refresh {
                    let cached = Arc::clone(self);
                    tokio::spawn(async move { cached.refresh(now).await });
                }
                Some(key)
            }
            None if may_refresh => {
                self.refresh(now).await;
                select(&self.cache().keys)
            }
            None => None,
        }
    }

    /// Asks the source once, unless another refresh did within the interval.
    async fn refresh(&self, now: Millis) {
        let Some(source) = &self.source else { return };
        let _one_at_a_time = self.refreshing.lock().await;
        {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            if !cache.may_refresh(now) {
                return;
            }
            cache.attempted_at = Some(now);
        }
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, source.fetch())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")));
        let what = self.what;
        match fetched {
            Ok(keys) => {
                let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
                cache.keys = keys.into_iter().map(Arc::new).collect();
                cache.fetched_at = Some(now);
                metrics::counter!("chat_key_refreshes_total", "keys" => what, "outcome" => "ok")
                    .increment(1);
            }
            Err(reason) => {
                warn!(keys = what, %reason, "refreshing keys failed: the cached keys stay");
                metrics::counter!("chat_key_refreshes_total", "keys" => what, "outcome" => "failed")
                    .increment(1);
            }
        }
    }
}
