//! Receipts and typing: events to the members of small conversations.

use crate::domain::{TYPING_MAX_PER_WINDOW, TYPING_WINDOW_MS};
use crate::error::{ChatError, ChatResult};
use crate::ids::{ConversationId, Seq, UserId};
use crate::ports::{ConnectionRecord, ConversationRecord};
use crate::protocol::{Positions, ServerFrame, TYPING_EXPIRES_MS};

use super::Chat;

impl Chat {
    /// Moves the caller's receipt positions and tells the others.
    pub async fn receipts(
        &self,
        caller: &UserId,
        origin_connection: Option<&str>,
        id: &ConversationId,
        delivered: Option<Seq>,
        read: Option<Seq>,
    ) -> ChatResult<Positions> {
        let update = self
            .store
            .update_receipts(id, caller, delivered, read)
            .await?
            .ok_or_else(ChatError::no_conversation)?;
        if update.changed {
            let frame = ServerFrame::Receipt {
                conversation_id: id.clone(),
                user_id: caller.clone(),
                delivered_up_to: update.positions.delivered_up_to,
                read_up_to: update.positions.read_up_to,
                timestamp: self.now(),
            };
            let targets = self
                .event_audience(&update.conversation, caller, true)
                .await?;
            self.post_all(&targets, &frame, origin_connection).await;
        }
        Ok(update.positions)
    }

    /// Live connections that get an ephemeral event (receipt, typing) of `caller` in a
    /// conversation: the other members' in small conversations, plus (when
    /// `include_own`) the caller's own.
    async fn event_audience(
        &self,
        conv: &ConversationRecord,
        caller: &UserId,
        include_own: bool,
    ) -> ChatResult<Vec<ConnectionRecord>> {
        let mut users: Vec<UserId> = Vec::new();
        if conv.member_count <= u64::from(self.limits.event_fanout_max_members) {
            users.extend(
                self.member_ids(&conv.id)
                    .await?
                    .into_iter()
                    .filter(|u| u != caller),
            );
        }
        if include_own {
            users.push(caller.clone());
        }
        self.live_connections(&users, self.now()).await
    }

    /// Relays a typing state (never stored beyond the throttle). `true` is throttled per
    /// user and conversation; `false` goes out only when it ends a `true` the others
    /// still see, so a flood of `false` relays nothing.
    pub async fn typing(
        &self,
        caller: &UserId,
        origin_connection: Option<&str>,
        id: &ConversationId,
        is_typing: bool,
    ) -> ChatResult<()> {
        let now = self.now();
        let allowed = if is_typing {
            self.store
                .typing_permit(
                    id,
                    caller,
                    now,
                    TYPING_WINDOW_MS,
                    TYPING_MAX_PER_WINDOW,
                    now + TYPING_EXPIRES_MS,
                )
                .await?
        } else {
            self.store.typing_stop(id, caller, now).await?
        };
        match allowed {
            None => return Err(ChatError::no_conversation()),
            Some(false) => return Ok(()),
            Some(true) => {}
        }
        let conv = self
            .store
            .conversation(id)
            .await?
            .ok_or_else(ChatError::no_conversation)?;
        let small = conv.member_count <= u64::from(self.limits.event_fanout_max_members);
        let targets = self.event_audience(&conv, caller, !small).await?;
        let frame = ServerFrame::Typing {
            conversation_id: id.clone(),
            user_id: caller.clone(),
            is_typing,
            expires_in_ms: TYPING_EXPIRES_MS,
        };
        self.post_all(&targets, &frame, origin_connection).await;
        Ok(())
    }
}
