//! The marks of direct delivery: how far the send path has posted a conversation's
//! entries, so that the change feed's fan-out, its backstop, posts only what it did not.

use async_trait::async_trait;

use super::StoreResult;
use crate::ids::{ConversationId, Seq, UserId};

/// Records what direct delivery posted. A store whose change feed reaches the fan-out
/// without a hop (the embedded log) has no use for it; on AWS the DynamoDB store keeps
/// the mark on the conversation's counter item, where the next send and the fan-out
/// read it with the conversation ([`super::ConversationRecord::posted`]).
#[async_trait]
pub trait DirectMarks: Send + Sync + 'static {
    /// Every entry of `conversation` up to `seq` was posted to its members' live
    /// connections; `unreached` (members with none, not muted, not the sender) are
    /// owed the push of entry `seq`. A mark never moves back: one at or behind the
    /// stored one changes nothing.
    async fn mark_posted(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        unreached: &[UserId],
    ) -> StoreResult<()>;
}
