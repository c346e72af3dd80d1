//! Presence: who is online, told to contacts when it changes, and asked for.

use std::collections::HashMap;

use crate::error::ChatResult;
use crate::ids::{Millis, UserId};
use crate::ports::ConnectionRecord;
use crate::protocol::{LIVENESS_MS, PresenceStatus, PresenceView, ServerFrame};

use super::Chat;

impl Chat {
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
