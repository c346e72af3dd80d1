//! Presence: who is online, told to contacts when it changes, and asked for.
//!
//! Changes are coalesced per user: at most one `presence` event per
//! [`PRESENCE_WINDOW_MS`]. A change inside the window of the last event is held back to
//! the window's end; whoever holds it then announces the state of that moment, if it is
//! not the one announced last (the latest state wins, and an `offline` is never lost). A
//! user cycling connect and close 40 times a second costs their contacts two events.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::PRESENCE_WINDOW_MS;
use crate::error::ChatResult;
use crate::ids::{Millis, UserId};
use crate::ports::{ConnectionRecord, PresenceClaim};
use crate::protocol::{LIVENESS_MS, PresenceStatus, PresenceView, ServerFrame};

use super::Chat;

/// A presence change held back by the coalescing window: settle it with
/// [`Chat::settle_presence`], which waits for the window's end. The local server does
/// that in a task of its own; a Lambda before it returns.
#[derive(Debug)]
#[must_use = "a held-back presence change is announced only when settled"]
pub struct PendingPresence {
    pub(crate) user: UserId,
    at: Millis,
}

impl Chat {
    /// Announces that `user` is now `status`, or holds the change back when the last
    /// announcement is younger than the window.
    pub(crate) async fn presence_changed(
        &self,
        user: &UserId,
        status: PresenceStatus,
        now: Millis,
    ) -> ChatResult<Option<PendingPresence>> {
        match self
            .store
            .claim_presence(user, status, now, PRESENCE_WINDOW_MS)
            .await?
        {
            PresenceClaim::Announce => {
                self.announce_presence(user, status, now, now).await?;
                Ok(None)
            }
            PresenceClaim::Defer { until } => Ok(Some(PendingPresence {
                user: user.clone(),
                at: until,
            })),
            PresenceClaim::Skip => Ok(None),
        }
    }

    /// Waits for the end of the window a change was held back by, then announces the
    /// user's presence if it is not the one announced last.
    pub async fn settle_presence(&self, pending: PendingPresence) -> ChatResult<()> {
        let wait = pending.at - self.now();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        self.settle_presence_now(&pending.user).await
    }

    /// Announces the user's presence now if it is not the one announced last.
    pub(crate) async fn settle_presence_now(&self, user: &UserId) -> ChatResult<()> {
        let now = self.now();
        let users = std::slice::from_ref(user);
        let online = !self.live_connections(users, now).await?.is_empty();
        let status = if online {
            PresenceStatus::Online
        } else {
            PresenceStatus::Offline
        };
        if !self.store.settle_presence(user, status, now).await? {
            return Ok(());
        }
        let last_seen = if online {
            now
        } else {
            let seen = self.store.last_seen(users).await?;
            seen.first().map_or(now, |(_, at)| *at)
        };
        self.announce_presence(user, status, last_seen, now).await
    }

    /// The users' connections that framed within the liveness window and whose token
    /// is still accepted. Those whose token expired are closed on the way: on AWS no
    /// process holds the socket to close it when the token expires.
    pub(crate) async fn live_connections(
        &self,
        users: &[UserId],
        now: Millis,
    ) -> ChatResult<Vec<ConnectionRecord>> {
        let mut conns = self.store.connections_of(users).await?;
        conns.retain(|c| now - c.last_frame_at < LIVENESS_MS);
        let (live, expired): (Vec<_>, Vec<_>) =
            conns.into_iter().partition(|c| now < c.token_expires_at);
        for c in &expired {
            self.close_expired(&c.connection_id).await;
        }
        Ok(live)
    }

    pub(crate) async fn announce_presence(
        &self,
        user: &UserId,
        status: PresenceStatus,
        last_seen: Millis,
        at: Millis,
    ) -> ChatResult<()> {
        let contacts = self
            .store
            .contacts(user, u64::from(self.limits.event_fanout_max_members))
            .await?;
        if contacts.is_empty() {
            return Ok(());
        }
        let conns = self.live_connections(&contacts, at).await?;
        let frame = ServerFrame::Presence {
            user_id: user.clone(),
            status,
            last_seen: Some(last_seen),
            at,
        };
        self.post_all(&conns, &frame, None).await;
        Ok(())
    }

    /// Presence of the asked users who share a conversation with the caller.
    pub async fn presence(
        &self,
        caller: &UserId,
        users: &[UserId],
    ) -> ChatResult<Vec<PresenceView>> {
        let visible = self.store.users_sharing_conversation(caller, users).await?;
        let now = self.now();
        let conns = self.live_connections(&visible, now).await?;
        let last_seen: HashMap<UserId, Millis> =
            self.store.last_seen(&visible).await?.into_iter().collect();
        let mut out: Vec<PresenceView> = Vec::new();
        for user in users {
            if !visible.contains(user) || out.iter().any(|p| &p.user_id == user) {
                continue;
            }
            let live = conns
                .iter()
                .filter(|c| &c.user_id == user)
                .map(|c| c.last_frame_at)
                .max();
            out.push(match live {
                Some(at) => PresenceView {
                    user_id: user.clone(),
                    status: PresenceStatus::Online,
                    last_seen: Some(at),
                },
                None => PresenceView {
                    user_id: user.clone(),
                    status: PresenceStatus::Offline,
                    last_seen: last_seen.get(user).copied(),
                },
            });
        }
        Ok(out)
    }
}
