//! Sending and reading messages: the checks before a send, the append, the ack, and
//! history pages.

use tracing::debug;

use crate::domain;
use crate::error::{ChatError, ChatResult};
use crate::ids::{ConversationId, Seq, UserId};
use crate::ports::{AppendOutcome, ConversationRecord, MessageQuery, MessageRecord, NewMessage};
use crate::protocol::{Ack, MessageView, SendRequest};

use super::Chat;
use super::budget::AnswerBudget;

/// Messages read from the store at a time when filling an answer: as many as a history
/// page holds (200), so a page is one query (a request on DynamoDB), and a sync of up
/// to 1000 per conversation holds at most this many beyond what fits its byte cap
/// (about 5 MB of the longest messages).
const READ_CHUNK: u32 = 200;

/// What the checks before a send found.
enum Checked {
    New(ConversationRecord),
    Retry(MessageRecord),
}

/// Which history page to read.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery {
    pub before: Option<Seq>,
    pub after: Option<Seq>,
    pub limit: u32,
}

impl Chat {
    /// The checks a new message must pass: membership, `replyTo`, the rate limit. With a
    /// rate limit on, a retry is recognised here, before counting (retries are not
    /// counted); without one, the store recognises it in the append.
    async fn check_send(&self, caller: &UserId, req: &SendRequest) -> ChatResult<Checked> {
        let (conv, _) = self.member_of(&req.conversation_id, caller).await?;
        if let Some(reply_to) = req.reply_to
            && reply_to > conv.last_seq
        {
            return Err(ChatError::Invalid(
                "replyTo must be a seq of this conversation".into(),
            ));
        }
        if self.limits.rate_limit_per_min > 0 {
            let cmid = req.client_message_id.as_str();
            if let Some(original) = self
                .store
                .find_by_client_id(&req.conversation_id, caller, cmid)
                .await?
            {
                return Ok(Checked::Retry(original));
            }
            let now = self.now();
            let window = domain::rate_window_start(now);
            let count = self.store.count_send(caller, window).await?;
            if let Some(err) =
                domain::rate_limit(count, self.limits.rate_limit_per_min, window, now)
            {
                return Err(err);
            }
        }
        Ok(Checked::New(conv))
    }

    /// Validates, sequences and persists a message, then acks it. Fan-out follows from
    /// the store's change feed, not from here.
    pub async fn send(
        &self,
        caller: &UserId,
        origin_connection: Option<&str>,
        req: SendRequest,
    ) -> ChatResult<Ack> {
        // A retry is answered with the original, even when it fails a check the original
        // passed (the sender left since). Looking it up only then keeps the common path
        // to one read: the store recognises a retry in the append itself.
        let cmid = req.client_message_id.as_str();
        let conv = match self.check_send(caller, &req).await {
            Ok(Checked::New(conv)) => conv,
            Ok(Checked::Retry(original)) => return Ok(ack(&original, true)),
            Err(e) => {
                return match self
                    .store
                    .find_by_client_id(&req.conversation_id, caller, cmid)
                    .await?
                {
                    Some(original) => Ok(ack(&original, true)),
                    None => Err(e),
                };
            }
        };
        let now = self.now();
        let expires_at = (self.limits.retention_days > 0)
            .then(|| now + i64::from(self.limits.retention_days) * 86_400_000);
        let outcome = self
            .store
            .append_message(&NewMessage {
                conversation_id: conv.id.clone(),
                message_id: domain::new_message_id(),
                sender_id: caller.clone(),
                client_message_id: cmid.to_owned(),
                content: req.content,
                reply_to: req.reply_to,
                now,
                origin_connection: origin_connection.map(str::to_owned),
                expires_at,
                hint: Some((conv.last_seq, conv.last_message_at)),
            })
            .await?;
        match outcome {
            AppendOutcome::Stored(m) => {
                debug!(conversation.id = %m.conversation_id, seq = m.seq, "message stored");
                Ok(ack(&m, false))
            }
            AppendOutcome::Duplicate(m) => Ok(ack(&m, true)),
            AppendOutcome::NotMember => Err(ChatError::no_conversation()),
        }
    }

    /// Deletes the messages older than the retention period; how many. Nothing when
    /// retention is off.
    pub async fn expire_messages(&self) -> ChatResult<u64> {
        if self.limits.retention_days == 0 {
            return Ok(0);
        }
        let cutoff = self.limits.retention_cutoff(self.now());
        Ok(self.store.expire_messages(cutoff).await?)
    }

    /// A page of history, ascending.
    pub async fn history(
        &self,
        caller: &UserId,
        id: &ConversationId,
        q: HistoryQuery,
    ) -> ChatResult<(Vec<MessageView>, bool)> {
        self.member_of(id, caller).await?;
        let query = MessageQuery {
            after: q.after,
            before: q.before,
            limit: q.limit,
            newest: q.after.is_none(),
            min_timestamp: self.limits.retention_cutoff(self.now()),
        };
        self.messages_within(id, query, &mut AnswerBudget::new())
            .await
    }

    /// The messages of `query` that fit in `budget`, ascending, and whether more exist
    /// in its range. They are read a chunk at a time, so a page cut short by the budget
    /// never held more than a chunk beyond it; the cut keeps the messages nearest the
    /// query's anchor (the oldest going forward, the newest going back).
    pub(crate) async fn messages_within(
        &self,
        id: &ConversationId,
        query: MessageQuery,
        budget: &mut AnswerBudget,
    ) -> ChatResult<(Vec<MessageView>, bool)> {
        let mut out: Vec<MessageView> = Vec::new();
        let mut range = query;
        let has_more = loop {
            range.limit = (query.limit - out.len() as u32).min(READ_CHUNK);
            let (messages, more) = self.store.messages(id, range).await?;
            let nearest_first: Box<dyn Iterator<Item = &MessageRecord>> = if query.newest {
                range.before = messages.first().map(|m| m.seq).or(range.before);
                Box::new(messages.iter().rev())
            } else {
                range.after = messages.last().map(|m| m.seq).or(range.after);
                Box::new(messages.iter())
            };
            let mut taken = 0;
            for m in nearest_first {
                let view = message_view(m);
                if !budget.take(&view) {
                    break;
                }
                out.push(view);
                taken += 1;
            }
            if budget.spent() {
                break more || taken < messages.len();
            }
            if !more || out.len() as u32 >= query.limit {
                break more;
            }
        };
        if query.newest {
            out.reverse();
        }
        Ok((out, has_more))
    }
}

fn ack(m: &MessageRecord, duplicate: bool) -> Ack {
    Ack {
        conversation_id: m.conversation_id.clone(),
        client_message_id: m.client_message_id.clone(),
        message_id: m.message_id.clone(),
        seq: m.seq,
        timestamp: m.timestamp,
        duplicate,
    }
}

/// A stored message as clients see it.
pub fn message_view(m: &MessageRecord) -> MessageView {
    MessageView {
        conversation_id: m.conversation_id.clone(),
        message_id: m.message_id.clone(),
        seq: m.seq,
        sender_id: m.sender_id.clone(),
        client_message_id: m.client_message_id.clone(),
        content: m.content.clone(),
        reply_to: m.reply_to,
        timestamp: m.timestamp,
    }
}
