//! Direct delivery: where the change feed is a hop away (DynamoDB Streams, about
//! 200 ms on AWS), the send path posts a new entry of a small conversation to the
//! members' live connections itself, right after the durable write, and marks it posted.
//! The feed's fan-out stays the backstop: it posts every entry past the mark (a send
//! that died or timed out after its write, an entry appended elsewhere) and pushes.
//!
//! Order per connection holds because an entry is posted directly only when every
//! entry before it was posted already (the mark, read with the conversation before the
//! append, is one behind it): its posts start after theirs ended. Otherwise the entry
//! waits for the feed, which posts in seq order and moves the mark on (records that
//! come out of order are put back in order: see `Chat::gap_before`). A post repeated
//! by both paths (the fan-out read the mark before the send wrote it) is a duplicate
//! clients drop by seq, never a reordering of first deliveries.

use tracing::warn;

use super::Chat;
use super::fanout::push_recipients;
use super::messages::message_view;
use crate::error::ChatResult;
use crate::ids::{Seq, UserId};
use crate::ports::{ConversationRecord, DirectMarks, MessageQuery, MessageRecord};
use crate::protocol::ServerFrame;
use crate::telemetry;

/// The widest gap between the mark and a run of the stream that the fan-out fills: far
/// more than records ever come out of order by.
const GAP_FILL_MAX: Seq = 100;

impl Chat {
    /// Posts `entry`, just stored, to the members' live connections (but the one it
    /// came from) when this server delivers directly, the conversation is small enough
    /// and `conv` (as read before the append) shows every earlier entry posted. Never
    /// fails the send: what is not done here, the fan-out does.
    pub(crate) async fn deliver_direct(&self, conv: &ConversationRecord, entry: &MessageRecord) {
        let Some(marks) = &self.direct else {
            return;
        };
        let posted = conv.posted.as_ref().map_or(0, |p| p.seq);
        if !self.delivers_directly(conv) || posted + 1 != entry.seq {
            return;
        }
        if let Err(e) = self.post_direct(marks.as_ref(), conv, entry).await {
            warn!(error = %e, conversation.id = %conv.id, seq = entry.seq, "direct delivery failed; the fan-out posts the entry");
        }
    }

    async fn post_direct(
        &self,
        marks: &dyn DirectMarks,
        conv: &ConversationRecord,
        entry: &MessageRecord,
    ) -> ChatResult<()> {
        let members = self.all_members(&conv.id).await?;
        let users: Vec<UserId> = members.iter().map(|m| m.user_id.clone()).collect();
        let now = self.now();
        let conns = self.live_connections(&users, now).await?;
        let frame = ServerFrame::MessageNew(message_view(entry));
        let posted = self
            .post_all(&conns, &frame, entry.origin_connection.as_deref())
            .await;
        telemetry::frames_posted(posted);
        telemetry::fanned_out(telemetry::PATH_DIRECT, self.now() - entry.timestamp);
        let unreached = push_recipients(&members, &conns, &[entry], now);
        marks.mark_posted(&conv.id, entry.seq, &unreached).await?;
        Ok(())
    }

    /// Whether the send path posts `conv`'s entries: on a server that delivers
    /// directly, in a conversation small enough for it. (Marks are kept in every
    /// conversation there: one that shrinks under the limit goes direct at once.)
    fn delivers_directly(&self, conv: &ConversationRecord) -> bool {
        self.direct.is_some()
            && conv.member_count <= u64::from(self.limits.direct_fanout_max_members)
    }

    /// The entries between the mark (`mark`) and the first entry of `run` past it, which
    /// the fan-out posts before the run so the mark it then writes stays true. There are
    /// some only when the stream hands records over out of seq order (it promises order
    /// per item, not across items): the in-between ones have not come yet. A gap wider
    /// than [`GAP_FILL_MAX`] is not of that kind but history (entries of a time before
    /// marks were kept, posted by the stream then): nothing to post.
    pub(crate) async fn gap_before(
        &self,
        conv: &ConversationRecord,
        mark: Seq,
        run: &[&MessageRecord],
    ) -> ChatResult<Vec<MessageRecord>> {
        let Some(first) = run.iter().map(|m| m.seq).find(|seq| *seq > mark) else {
            return Ok(Vec::new());
        };
        let gap = first - mark - 1;
        if self.direct.is_none() || gap == 0 || gap > GAP_FILL_MAX {
            return Ok(Vec::new());
        }
        let query = MessageQuery {
            after: Some(mark),
            before: Some(first),
            limit: gap as u32,
            newest: false,
            min_timestamp: self.limits.retention_cutoff(self.now()),
        };
        let (entries, _) = self
            .store
            .messages(&conv.id, &run[0].sender_id, query)
            .await?;
        Ok(entries)
    }

    /// The fan-out posted the entries up to `seq`: moves the mark on, so the next send
    /// of a small conversation is delivered directly again. A failed mark only delays
    /// that.
    pub(crate) async fn mark_fanned_out(&self, conv: &ConversationRecord, seq: Seq) {
        let Some(marks) = &self.direct else {
            return;
        };
        if let Err(e) = marks.mark_posted(&conv.id, seq, &[]).await {
            warn!(error = %e, conversation.id = %conv.id, seq, "could not mark fanned-out entries posted");
        }
    }
}
