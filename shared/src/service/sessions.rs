//! Sessions: authenticating a token, and revoking every token of a user
//! (`POST /v1/sessions/revoke`) or closing one device's sockets (`DELETE
//! /v1/devices/{deviceId}`).
//!
//! A revocation refuses the user's tokens issued before it, on HTTP and at the handshake,
//! and closes their open sockets. A handshake reads the revocation from the store every
//! time (a socket outlives its request); an HTTP request trusts what its process read
//! within [`REVOCATION_CACHE_MS`]: the server that revokes knows at once, another Lambda
//! container within that time.

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::debug;

use crate::auth::Verified;
use crate::error::{ChatError, ChatResult};
use crate::ids::{DeviceId, Millis, UserId};
use crate::ports::{CloseReason, ConnectionRecord};

use super::Chat;

/// How long a server trusts what it read of a user's revocation.
pub const REVOCATION_CACHE_MS: Millis = 5_000;
/// Users whose revocation a server remembers at most; past it the memory starts over.
const REVOCATION_CACHE_USERS: usize = 10_000;

/// What this server read of users' revocations, and when.
#[derive(Debug, Default)]
pub(super) struct Revocations(Mutex<HashMap<UserId, (Millis, Option<Millis>)>>);

impl Revocations {
    fn get(&self, user: &UserId, now: Millis) -> Option<Option<Millis>> {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(user)
            .filter(|(read_at, _)| now.saturating_sub(*read_at) < REVOCATION_CACHE_MS)
            .map(|(_, before)| *before)
    }

    /// Records what was read at `now`. A revocation never moves back: a read that
    /// started before a revocation and ends after it does not undo it here.
    fn put(&self, user: &UserId, now: Millis, before: Option<Millis>) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= REVOCATION_CACHE_USERS && !seen.contains_key(user) {
            seen.clear();
        }
        let known = seen.get(user).and_then(|(_, known)| *known);
        seen.insert(user.clone(), (now, before.max(known)));
    }
}

impl Chat {
    /// Verifies a token: its user and until when it is accepted. A token issued before
    /// its user's sessions were revoked is refused like an invalid one (the revocation
    /// as this process read it at most [`REVOCATION_CACHE_MS`] ago).
    pub async fn authenticate(&self, token: Option<&str>) -> ChatResult<Verified> {
        self.authenticate_with(token, false).await
    }

    /// [`authenticate`](Self::authenticate) for a WebSocket handshake: the revocation is
    /// read from the store every time, so a socket, which outlives the request, cannot
    /// be opened with a revoked token through a process that read the revocation before
    /// it was made.
    pub async fn authenticate_handshake(&self, token: Option<&str>) -> ChatResult<Verified> {
        self.authenticate_with(token, true).await
    }

    async fn authenticate_with(&self, token: Option<&str>, fresh: bool) -> ChatResult<Verified> {
        let token = token.ok_or(ChatError::Unauthorized)?;
        let verified = self.tokens.verify(token, self.now()).await.map_err(|e| {
            debug!(reason = %e, "token refused");
            ChatError::Unauthorized
        })?;
        if let Some(before) = self.sessions_revoked_before(&verified.user, fresh).await?
            && verified.issued_at.is_none_or(|iat| iat < before)
        {
            debug!(user.id = %verified.user, "token refused: issued before a revocation");
            return Err(ChatError::Unauthorized);
        }
        Ok(verified)
    }

    async fn sessions_revoked_before(
        &self,
        user: &UserId,
        fresh: bool,
    ) -> ChatResult<Option<Millis>> {
        let now = self.now();
        if !fresh && let Some(before) = self.revocations.get(user, now) {
            return Ok(before);
        }
        let before = self.store.sessions_revoked_before(user).await?;
        self.revocations.put(user, now, before);
        Ok(self.revocations.get(user, now).flatten())
    }

    /// Ends every session of `caller`: tokens issued up to this second are refused from
    /// now on (`iat` counts whole seconds, so a token issued earlier in this second is
    /// refused too), and their open sockets are closed. Answers how many were closed.
    pub async fn revoke_sessions(&self, caller: &UserId) -> ChatResult<usize> {
        let now = self.now();
        let before = (now.div_euclid(1000) + 1) * 1000;
        self.store.revoke_sessions(caller, before).await?;
        self.revocations.put(caller, now, Some(before));
        let sockets = self
            .store
            .connections_of(std::slice::from_ref(caller))
            .await?;
        self.close_sessions(&sockets).await
    }

    /// Closes the sockets of one device of `caller` (after its push registration, if any,
    /// was removed): true when it had any.
    pub(crate) async fn close_device_sessions(
        &self,
        caller: &UserId,
        device: &DeviceId,
    ) -> ChatResult<bool> {
        let sockets: Vec<_> = self
            .store
            .connections_of(std::slice::from_ref(caller))
            .await?
            .into_iter()
            .filter(|c| c.device_id.as_ref() == Some(device))
            .collect();
        Ok(self.close_sessions(&sockets).await? > 0)
    }

    async fn close_sessions(&self, sockets: &[ConnectionRecord]) -> ChatResult<usize> {
        let mut closed = 0;
        for c in sockets {
            if self
                .end_connection(c, CloseReason::Revoked, "revoked")
                .await?
            {
                closed += 1;
            }
        }
        Ok(closed)
    }
}
