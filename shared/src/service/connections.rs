//! Connections: connect (with the per-user cap), disconnect, liveness, and posting
//! frames to connections, forgetting the gone ones.

use bytes::Bytes;
use tracing::{debug, warn};

use crate::error::{ChatError, ChatResult};
use crate::ids::{DeviceId, Millis, UserId};
use crate::ports::{CloseReason, ConnectionRecord, GatewayError};
use crate::protocol::{LIVENESS_MS, PresenceStatus, ServerFrame};

use super::Chat;
use super::presence::PendingPresence;

/// A connection this young that answers "gone" is still being opened, not gone.
const CONNECT_GRACE_MS: Millis = 10_000;

impl Chat {
    /// Registers a new connection and tells contacts when the user came online (or
    /// answers the change held back for that, see [`PendingPresence`]). Beyond
    /// `max_connections_per_user`, the user's oldest other connections are closed.
    pub async fn connect(
        &self,
        connection_id: &str,
        user: &UserId,
        device_id: Option<DeviceId>,
        token_expires_at: Millis,
    ) -> ChatResult<Option<PendingPresence>> {
        let now = self.now();
        self.store
            .put_connection(&ConnectionRecord {
                connection_id: connection_id.to_owned(),
                user_id: user.clone(),
                device_id,
                connected_at: now,
                last_frame_at: now,
                token_expires_at,
            })
            .await?;
        let mut others = self
            .store
            .connections_of(std::slice::from_ref(user))
            .await?;
        others.retain(|c| c.connection_id != connection_id);
        let pending = if others.iter().all(|c| now - c.last_frame_at >= LIVENESS_MS) {
            self.presence_changed(user, PresenceStatus::Online, now)
                .await?
        } else {
            None
        };
        self.enforce_connection_cap(user, others).await;
        Ok(pending)
    }

    /// Closes the oldest of `others` (the user's connections but the new one) so that,
    /// with the new one, at most `max_connections_per_user` stay. A closed connection is
    /// forgotten at once, without a presence event: the user keeps the new one.
    async fn enforce_connection_cap(&self, user: &UserId, mut others: Vec<ConnectionRecord>) {
        let cap = self.limits.max_connections_per_user as usize;
        if cap == 0 || others.len() < cap {
            return;
        }
        others.sort_by(|a, b| {
            (a.connected_at, &a.connection_id).cmp(&(b.connected_at, &b.connection_id))
        });
        let excess = others.len() + 1 - cap;
        for old in &others[..excess] {
            let id = old.connection_id.as_str();
            match self.gateway.close(id, CloseReason::Replaced).await {
                Ok(()) | Err(GatewayError::Gone) => {}
                Err(e) => {
                    // Forgetting a socket that stays open would leave it without frames.
                    warn!(error = %e, connection.id = id, "could not close a connection over the per-user cap");
                    continue;
                }
            }
            debug!(user.id = %user, connection.id = id, "closed the oldest connection: over the per-user cap");
            if let Err(e) = self.store.delete_connection(id).await {
                warn!(error = %e, connection.id = id, "could not forget a connection over the per-user cap");
            }
        }
    }

    /// Forgets a connection; when it was the user's last, records lastSeen and tells
    /// contacts the user went offline (or answers the change held back for that).
    pub async fn disconnect(&self, connection_id: &str) -> ChatResult<Option<PendingPresence>> {
        let Some(gone) = self.store.delete_connection(connection_id).await? else {
            return Ok(None);
        };
        let now = self.now();
        let user = gone.user_id;
        if self
            .live_connections(std::slice::from_ref(&user), now)
            .await?
            .is_empty()
        {
            self.store.set_last_seen(&user, now).await?;
            return self
                .presence_changed(&user, PresenceStatus::Offline, now)
                .await;
        }
        Ok(None)
    }

    /// Records a client frame on a connection (liveness for presence and push).
    pub async fn touch(&self, connection_id: &str, user: &UserId) -> ChatResult<()> {
        Ok(self
            .store
            .touch_connection(connection_id, user, self.now())
            .await?)
    }

    /// The connection a frame came on: `Unauthorized` when it is not known (never
    /// opened, or forgotten).
    pub async fn connection(&self, connection_id: &str) -> ChatResult<ConnectionRecord> {
        self.store
            .connection(connection_id)
            .await?
            .ok_or(ChatError::Unauthorized)
    }

    /// Closes a connection whose token expired (it is forgotten when its socket closes).
    pub async fn close_expired(&self, connection_id: &str) {
        match self
            .gateway
            .close(connection_id, CloseReason::TokenExpired)
            .await
        {
            Ok(()) | Err(GatewayError::Gone) => {
                debug!(connection.id = connection_id, "closed: its token expired");
            }
            Err(e) => {
                warn!(error = %e, connection.id = connection_id, "could not close a connection whose token expired");
            }
        }
    }

    /// Closes those of `connections` no client frame came on for `idle_ms` or longer, or
    /// whose token expired, and forgets them (the user goes offline with their last
    /// one): the sweep of a server that holds no sockets (AWS), where a socket that died
    /// without a close would otherwise look live until the gateway's own timeout. A
    /// connection that cannot be closed is kept (forgetting an open socket would leave
    /// it without frames). Answers how many were closed.
    pub async fn close_silent(
        &self,
        connections: &[ConnectionRecord],
        idle_ms: Millis,
    ) -> ChatResult<usize> {
        let now = self.now();
        let mut closed = 0;
        for c in connections {
            let (reason, label) = if now >= c.token_expires_at {
                (CloseReason::TokenExpired, "token_expired")
            } else if now - c.last_frame_at >= idle_ms {
                (CloseReason::Silent, "silent")
            } else {
                continue;
            };
            if self.end_connection(c, reason, label).await? {
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// Closes a connection the server ends (`reason`, counted under `label`), forgets
    /// it and settles its user's presence. False when the gateway could not close it:
    /// it is kept, as forgetting an open socket would leave it without frames.
    pub(crate) async fn end_connection(
        &self,
        c: &ConnectionRecord,
        reason: CloseReason,
        label: &'static str,
    ) -> ChatResult<bool> {
        let id = c.connection_id.as_str();
        match self.gateway.close(id, reason).await {
            Ok(()) | Err(GatewayError::Gone) => {}
            Err(e) => {
                warn!(error = %e, connection.id = id, reason = label, "could not close a connection");
                return Ok(false);
            }
        }
        debug!(connection.id = id, user.id = %c.user_id, reason = label, "closed a connection");
        crate::telemetry::connection_closed(label);
        if let Some(pending) = self.disconnect(id).await? {
            self.settle_presence_now(&pending.user).await?;
        }
        Ok(true)
    }

    /// Posts one frame to many connections, skipping `except`; gone ones are forgotten.
    /// Answers how many connections it was posted to.
    pub(crate) async fn post_all(
        &self,
        conns: &[ConnectionRecord],
        frame: &ServerFrame,
        except: Option<&str>,
    ) -> usize {
        let bytes = Bytes::from(frame.to_json());
        let targets: Vec<&ConnectionRecord> = conns
            .iter()
            .filter(|c| Some(c.connection_id.as_str()) != except)
            .collect();
        let ids: Vec<&str> = targets.iter().map(|c| c.connection_id.as_str()).collect();
        for (i, e) in self.gateway.post_many(&ids, &bytes).await {
            self.post_failed(targets[i], e).await;
        }
        ids.len()
    }

    /// Posts the answer to a client frame to the connection it came on, where the answer
    /// cannot travel back with the request (API Gateway routes without a route
    /// response). A failure is logged: the client's request times out and it retries.
    pub async fn post_answer(&self, connection_id: &str, answer: &ServerFrame) {
        let frame = Bytes::from(answer.to_json());
        if let Err(e) = self.gateway.post(connection_id, frame).await {
            warn!(error = %e, connection.id = connection_id, "could not post the answer to a frame");
        }
    }

    /// Posts one frame; a gone connection is deleted, other failures are logged (the
    /// client recovers by sync).
    pub async fn post(&self, connection: &ConnectionRecord, frame: Bytes) {
        if let Err(e) = self
            .gateway
            .post(connection.connection_id.as_str(), frame)
            .await
        {
            self.post_failed(connection, e).await;
        }
    }

    pub(crate) async fn post_failed(&self, connection: &ConnectionRecord, e: GatewayError) {
        let connection_id = connection.connection_id.as_str();
        match e {
            // A connection still in its `$connect` cannot be posted to yet (API Gateway
            // answers 410): it is not gone, so it is kept.
            GatewayError::Gone if self.now() - connection.connected_at < CONNECT_GRACE_MS => {
                debug!(
                    connection.id = connection_id,
                    "connection not open yet, frame skipped"
                );
            }
            GatewayError::Gone => {
                crate::telemetry::post_gone();
                debug!(
                    connection.id = connection_id,
                    "connection gone, forgetting it"
                );
                // Boxed: forgetting a connection may announce presence, which posts again.
                // A change held back is settled at once: a fan-out does not wait.
                let forgotten = Box::pin(async {
                    if let Some(pending) = self.disconnect(connection_id).await? {
                        self.settle_presence_now(&pending.user).await?;
                    }
                    Ok::<(), ChatError>(())
                });
                if let Err(e) = forgotten.await {
                    warn!(error = %e, connection.id = connection_id, "could not forget gone connection");
                }
            }
            e => warn!(error = %e, connection.id = connection_id, "post failed"),
        }
    }
}
