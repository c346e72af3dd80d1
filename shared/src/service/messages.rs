//! Sending and reading messages: the checks before a send, the append, the ack, and
//! history pages.

use tracing::debug;

use crate::domain;
use crate::error::{ChatError, ChatResult};
use crate::ids::{ConversationId, Seq, UserId};
use crate::ports::{
    AppendOutcome, ConversationRecord, CounterHint, EntryRules, MessageQuery, MessageRecord,
    NewMessage, Refusal,
};
use crate::protocol::{
    Ack, AppendRequest, Entry, EntryFields, MessageView, ReactionView, SystemDetails, SystemEvent,
};

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
    /// Boxed: the rare path, holding a whole record.
    Retry(Box<MessageRecord>),
}

/// One page of the users who reacted to a message with one emoji.
#[derive(Debug)]
pub struct ReactorPage {
    pub user_ids: Vec<UserId>,
    pub next_cursor: Option<String>,
}

/// Which history page to read.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery {
    pub before: Option<Seq>,
    pub after: Option<Seq>,
    pub limit: u32,
}

impl Chat {
    /// The checks a new entry must pass before the store's: membership, the rate limit.
    /// With a rate limit on, a retry is recognised here, before counting (retries are not
    /// counted); without one, the store recognises it in the append. The rules of an
    /// entry's target are the store's to check, atomically with the append.
    async fn check_append(&self, caller: &UserId, req: &AppendRequest) -> ChatResult<Checked> {
        let (conv, _) = self.member_of(&req.conversation_id, caller).await?;
        if self.limits.rate_limit_per_min > 0 {
            let cmid = req.client_message_id.as_str();
            if let Some(original) = self
                .store
                .find_by_client_id(&req.conversation_id, caller, cmid)
                .await?
            {
                return Ok(Checked::Retry(Box::new(original)));
            }
            self.count_change(caller).await?;
        }
        Ok(Checked::New(conv))
    }

    /// Counts one action that appends an entry (a send, an edit, a role change...)
    /// against the caller's send rate limit: `RATE_LIMITED` when over it.
    pub(crate) async fn count_change(&self, caller: &UserId) -> ChatResult<()> {
        if self.limits.rate_limit_per_min == 0 {
            return Ok(());
        }
        let now = self.now();
        let window = domain::rate_window_start(now);
        let count = self.store.count_send(caller, window).await?;
        match domain::rate_limit(count, self.limits.rate_limit_per_min, window, now) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Validates, sequences and persists an entry (a message, an edit, a delete or a
    /// reaction), then acks it. Fan-out follows from the store's change feed, and on a
    /// server that delivers directly also from here (see `direct.rs`).
    pub async fn append(
        &self,
        caller: &UserId,
        origin_connection: Option<&str>,
        req: AppendRequest,
    ) -> ChatResult<Ack> {
        let started = std::time::Instant::now();
        let kind = req.entry.kind();
        let answer = self.append_checked(caller, origin_connection, req).await;
        crate::telemetry::append_took(kind, started.elapsed());
        answer
    }

    async fn append_checked(
        &self,
        caller: &UserId,
        origin_connection: Option<&str>,
        req: AppendRequest,
    ) -> ChatResult<Ack> {
        let cmid = req.client_message_id.as_str();
        let conv = match self.check_append(caller, &req).await {
            Ok(Checked::New(conv)) => conv,
            Ok(Checked::Retry(original)) => return Ok(ack(&original, true)),
            Err(e) => return self.original_or(caller, &req, e).await,
        };
        let mut entry = req.entry.clone();
        if let Err(e) = self.resolve_attachments(caller, &conv.id, &mut entry).await {
            return self.original_or(caller, &req, e).await;
        }
        let now = self.now();
        let expires_at = self.limits.expires_at(now);
        let outcome = self
            .store
            .append_message(&NewMessage {
                conversation_id: conv.id.clone(),
                message_id: domain::new_message_id(),
                sender_id: caller.clone(),
                client_message_id: cmid.to_owned(),
                entry,
                now,
                origin_connection: origin_connection.map(str::to_owned),
                expires_at,
                hint: Some(CounterHint::of(&conv)),
                rules: EntryRules {
                    retained_since: self.limits.retention_cutoff(now),
                    edit_window_ms: i64::from(self.limits.edit_window_secs) * 1000,
                },
            })
            .await?;
        match outcome {
            AppendOutcome::Stored(m) => {
                debug!(conversation.id = %m.conversation_id, seq = m.seq, kind = m.entry.kind().as_str(), "entry stored");
                self.deliver_direct(&conv, &m).await;
                Ok(ack(&m, false))
            }
            AppendOutcome::Duplicate(m) => Ok(ack(&m, true)),
            AppendOutcome::NotMember => Err(ChatError::no_conversation()),
            AppendOutcome::Refused(refusal) => {
                self.original_or(caller, &req, refused(refusal)).await
            }
        }
    }

    /// A retry is answered with the original, even when it fails a check the original
    /// passed (the sender left since, the message was deleted since). Looking it up only
    /// then keeps the common path to one read: the store recognises a retry in the
    /// append itself.
    async fn original_or(
        &self,
        caller: &UserId,
        req: &AppendRequest,
        error: ChatError,
    ) -> ChatResult<Ack> {
        match self
            .store
            .find_by_client_id(&req.conversation_id, caller, req.client_message_id.as_str())
            .await?
        {
            Some(original) => Ok(ack(&original, true)),
            None => Err(error),
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

    /// Who reacted to message `seq` with `emoji`, a page at a time in userId order.
    pub async fn reactors(
        &self,
        caller: &UserId,
        id: &ConversationId,
        seq: Seq,
        emoji: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> ChatResult<ReactorPage> {
        self.member_of(id, caller).await?;
        let after = cursor.map(domain::decode_member_cursor).transpose()?;
        let mut user_ids = self
            .store
            .reactors(id, seq, emoji, after.as_ref(), limit + 1)
            .await?;
        let more = user_ids.len() > limit as usize;
        user_ids.truncate(limit as usize);
        let next_cursor = more
            .then(|| user_ids.last())
            .flatten()
            .map(domain::encode_member_cursor);
        Ok(ReactorPage {
            user_ids,
            next_cursor,
        })
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
        self.messages_within(id, caller, query, &mut AnswerBudget::new())
            .await
    }

    /// The messages of `query` that fit in `budget`, ascending, and whether more exist
    /// in its range. They are read a chunk at a time, so a page cut short by the budget
    /// never held more than a chunk beyond it; the cut keeps the messages nearest the
    /// query's anchor (the oldest going forward, the newest going back).
    pub(crate) async fn messages_within(
        &self,
        id: &ConversationId,
        viewer: &UserId,
        query: MessageQuery,
        budget: &mut AnswerBudget,
    ) -> ChatResult<(Vec<MessageView>, bool)> {
        let mut out: Vec<MessageView> = Vec::new();
        let mut range = query;
        let has_more = loop {
            range.limit = (query.limit - out.len() as u32).min(READ_CHUNK);
            let (messages, more) = self.store.messages(id, viewer, range).await?;
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

/// The error for an entry the store refused.
fn refused(refusal: Refusal) -> ChatError {
    match refusal {
        Refusal::NoTarget => ChatError::NotFound("no such message"),
        Refusal::NotAllowed(why) => ChatError::Forbidden(why),
        Refusal::TooMany(why) => ChatError::Conflict(why.into()),
        Refusal::Invalid(why) => ChatError::Invalid(why.into()),
    }
}

fn ack(m: &MessageRecord, duplicate: bool) -> Ack {
    Ack {
        conversation_id: m.conversation_id.clone(),
        client_message_id: m.client_message_id.clone(),
        message_id: m.message_id.clone(),
        seq: m.seq,
        kind: m.entry.kind(),
        timestamp: m.timestamp,
        duplicate,
    }
}

/// A conversation's last message as its conversation object shows it: without reactions.
pub fn last_message_view(m: &MessageRecord) -> MessageView {
    let mut view = message_view(m);
    if let EntryFields::Message { reactions, .. } = &mut view.fields {
        *reactions = None;
    }
    view
}

/// A stored entry as clients see it: a message in its current state.
pub fn message_view(m: &MessageRecord) -> MessageView {
    let fields = match &m.entry {
        Entry::Message { content, reply_to } => EntryFields::Message {
            content: content.clone(),
            reply_to: *reply_to,
            edited_at: m.state.edited_at,
            deleted: m.state.deleted_by.is_some(),
            deleted_by: m.state.deleted_by.clone(),
            reactions: Some(
                m.state
                    .reactions
                    .iter()
                    .map(|r| ReactionView {
                        emoji: r.emoji.clone(),
                        count: r.count,
                        user_ids: r.user_ids.clone(),
                        mine: r.mine,
                    })
                    .collect(),
            ),
        },
        Entry::Edit {
            target_seq,
            content,
        } => EntryFields::Edit {
            target_seq: *target_seq,
            content: content.clone(),
        },
        Entry::Delete { target_seq } => EntryFields::Delete {
            target_seq: *target_seq,
            deleted_by: m.sender_id.clone(),
        },
        Entry::Reaction {
            target_seq,
            emoji,
            removed,
        } => EntryFields::Reaction {
            target_seq: *target_seq,
            emoji: emoji.clone(),
            removed: *removed,
        },
        Entry::System(change) => EntryFields::System {
            event: change.event,
            user_ids: change.user_ids.clone(),
            actor_id: change.actor.clone(),
            details: match change.event {
                SystemEvent::RoleChanged => SystemDetails::Role {
                    role: change.role.clone().unwrap_or_default(),
                },
                SystemEvent::DetailsChanged => SystemDetails::Details {
                    name: change.name.clone(),
                    avatar: change.avatar.clone(),
                },
                _ => SystemDetails::None {},
            },
        },
    };
    // A system entry's sender is who did it: nobody when the server did.
    let sender_id = match &m.entry {
        Entry::System(change) => change.actor.clone(),
        _ => Some(m.sender_id.clone()),
    };
    MessageView {
        conversation_id: m.conversation_id.clone(),
        message_id: m.message_id.clone(),
        seq: m.seq,
        sender_id,
        client_message_id: m.client_message_id.clone(),
        kind: m.entry.kind(),
        fields,
        timestamp: m.timestamp,
    }
}
