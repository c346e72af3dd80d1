//! Sync: everything a reconnecting client missed, per conversation.

use std::collections::HashSet;

use super::Chat;
use super::budget::AnswerBudget;
use crate::error::ChatResult;
use crate::ids::{ConversationId, Seq, UserId};
use crate::ports::MessageQuery;
use crate::protocol::{SyncResult, SyncedConversation};

/// One conversation of a sync request.
#[derive(Debug, Clone)]
pub struct SyncCursor {
    pub conversation_id: ConversationId,
    pub after_seq: Seq,
}

/// The most conversations `newConversations` carries in a sync answer (fewer when the
/// answer reaches its byte cap).
const SYNC_NEW_CONVERSATIONS_MAX: usize = 100;

impl Chat {
    /// Everything the caller missed (see docs/protocol.md, "Reconnect").
    pub async fn sync(
        &self,
        caller: &UserId,
        cursors: &[SyncCursor],
        limit: u32,
    ) -> ChatResult<SyncResult> {
        let now = self.now();
        let cutoff = self.limits.retention_cutoff(now);
        let mut conversations = Vec::new();
        let mut removed = Vec::new();
        let mut named: HashSet<&ConversationId> = HashSet::new();
        let mut budget = AnswerBudget::new();
        for cursor in cursors {
            if !named.insert(&cursor.conversation_id) {
                continue;
            }
            let Some((conv, me)) = self
                .store
                .membership(&cursor.conversation_id, caller)
                .await?
            else {
                removed.push(cursor.conversation_id.clone());
                continue;
            };
            let query = MessageQuery {
                after: Some(cursor.after_seq),
                before: None,
                limit,
                newest: false,
                min_timestamp: cutoff,
            };
            let (messages, has_more) = self
                .messages_within(&conv.id, caller, query, &mut budget)
                .await?;
            conversations.push(SyncedConversation {
                conversation_id: conv.id.clone(),
                messages,
                has_more,
                first_seq: self.first_seq(&conv).await?,
                last_seq: conv.last_seq,
                delivered_up_to: me.delivered_up_to,
                read_up_to: me.read_up_to,
                unread_count: me.unread(&conv),
            });
        }
        let wanted = SYNC_NEW_CONVERSATIONS_MAX + named.len();
        let mine = self
            .store
            .user_conversations(caller, None, wanted as u32)
            .await?;
        let mut new_conversations = Vec::new();
        for (conv, me) in mine.iter().filter(|(c, _)| !named.contains(&c.id)) {
            if new_conversations.len() == SYNC_NEW_CONVERSATIONS_MAX {
                break;
            }
            let view = self.view(conv, me).await?;
            if !budget.take(&view) {
                break;
            }
            new_conversations.push(view);
        }
        Ok(SyncResult {
            conversations,
            new_conversations,
            removed_conversation_ids: removed,
            server_time: now,
        })
    }
}
