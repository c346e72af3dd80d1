//! The sequencer: the task that gives new messages their seq and acks them, with no
//! database write on the way (see [`Sequencer::start`] for where it runs).
//!
//! A message needs three things before its ack: its sender is a member, it is not a
//! retry, and the next seq of its conversation. The sequencer reads the first from the
//! rosters kept in memory (kept exact by the writer), the second from the messages in
//! flight and then the database's idempotency index (only for a key the filters of
//! `seen` may have seen: a retry, or rarely a new one), and keeps the third in memory for
//! every conversation it has sequenced. It takes every append waiting, sequences them in
//! order, writes them to the append log with one `write`, then leaves them for the writer
//! thread (which copies them into the database, many at once, see `Writer::run_batch`),
//! emits them on the change feed and answers.
//!
//! With SQLite's transaction on the ack path the embedded server topped out at 6,000 1:1
//! msg/s on this machine; a commit costs far more than the rows it holds (perf-history.md,
//! round six).
//!
//! Until the writer has copied them, messages are "in flight": [`InFlight`] tells readers
//! about them, so a read never misses an acked message.

use std::sync::Arc;

use foldhash::HashMap;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use chat_shared::domain::check_entry;
use chat_shared::ports::{
    AppendOutcome, ConversationKind, ConversationRecord, FeedItem, MemberRecord, MessageRecord,
    NewMessage, Refusal, Role,
};
use chat_shared::protocol::Entry;

use crate::attachments;
use crate::cache::{Cache, Roster};
use crate::errors::failure;
use crate::feed::FeedSlot;
use crate::in_flight::{Acked, Head, InFlight, MAX_IN_FLIGHT, Sequenced, find_original};
use crate::log::{self, Tail};
use crate::queries::{conversation_tx, membership_tx};
use crate::roster::{Found, read_roster};
use crate::schema::Durability;
use crate::seen::SeenKeys;
use crate::targets;
use crate::writer::{APPLY_AT, Job, run_cached};

/// Appends a batch holds at most.
const MAX_BATCH: usize = 256;

/// Conversations whose counters are kept before they are all dropped (once nothing is in
/// flight, so the database has them all).
const MAX_HEADS: usize = 200_000;

/// One append waiting for the sequencer.
pub(crate) struct Append {
    pub message: NewMessage,
    pub reply: oneshot::Sender<rusqlite::Result<AppendOutcome>>,
}

/// The sequencer's state.
pub(crate) struct Sequencer {
    /// A read connection of its own: rosters on a miss and the idempotency index.
    pub reader: Connection,
    /// Which idempotency keys may be in the database, so that new ones are not looked up.
    pub seen: SeenKeys,
    /// The counter of every conversation sequenced since the start (or since the last
    /// time they were all dropped). A conversation without one has nothing in flight, so
    /// the database and the kept rosters have its counter right.
    pub heads: HashMap<String, Head>,
    pub next_id: i64,
    pub log: Tail,
    pub in_flight: Arc<InFlight>,
    pub cache: Arc<Cache>,
    pub feed: FeedSlot,
    pub writer: std::sync::mpsc::Sender<Job>,
    /// Where it leaves logged messages for the writer.
    pub acked: Arc<Acked>,
    /// The states of the messages entries named lately.
    pub targets: targets::Kept,
    /// Attachments claimed by entries not yet published in flight (and by avatar
    /// changes not yet committed).
    pub claiming: Arc<attachments::Claiming>,
}

/// The read transaction a batch's idempotency lookups share, begun by the first one.
#[derive(Default)]
struct BatchReads {
    begun: bool,
}

impl BatchReads {
    fn begin(&mut self, reader: &Connection) {
        // Without a transaction each lookup still reads consistently, in one of its own.
        if !self.begun {
            self.begun = run_cached(reader, "BEGIN").is_ok();
        }
    }

    fn end(mut self, reader: &Connection) {
        self.end_now(reader);
    }

    /// Ends the transaction, if begun; the next lookup begins another. For a read that
    /// needs a snapshot newer than the batch's (see `targets::target`).
    fn end_now(&mut self, reader: &Connection) {
        if std::mem::take(&mut self.begun)
            && let Err(e) = run_cached(reader, "COMMIT")
        {
            tracing::warn!(error = %e, "sequencer: could not end its read transaction");
        }
    }
}

/// A member's standing, as sequencing an entry needs it.
#[derive(Clone, Copy)]
struct Standing {
    /// The conversation's head as stored.
    head: Head,
    /// An admin of a group (may delete others' messages).
    admin: bool,
}

impl Standing {
    fn of(c: &ConversationRecord, m: &MemberRecord) -> Self {
        Self {
            head: Head::of(c),
            admin: c.kind == ConversationKind::Group && m.role == Role::Admin,
        }
    }
}

/// What sequencing an append decided.
enum Step {
    /// A new message (the batch's next in `fresh`), with its conversation's head before it.
    New(Option<Head>),
    /// Answered without a new message (a retry, not a member, or a failure).
    /// Boxed: an answer holds a whole record, and answers are the rare path.
    Answer(Box<rusqlite::Result<AppendOutcome>>),
}

impl Sequencer {
    /// Starts sequencing what comes on `queue`: as a task of the runtime the store is
    /// opened in, or on a thread of its own when there is none, or when every batch waits
    /// for an fsync (`PowerLoss`), which must not hold up a worker of the runtime.
    ///
    /// It ran on a thread of its own in every case before. Each ack then woke a session
    /// task from outside the runtime, and at 20,000 1:1 msg/s the time from its answer to
    /// the session running again was most of the ack's tail: an append took p99 1.1-20 ms
    /// against 0.3-3 ms in the sequencer's queue and 0.15 ms in its batch. As a task, the
    /// sessions and the sequencer wake one another on the same worker. Its rare reads
    /// of the database (a roster not kept, a key the filters cannot rule out) then hold
    /// that worker for their tens of microseconds.
    pub fn start(
        self,
        queue: mpsc::UnboundedReceiver<Append>,
        durability: Durability,
    ) -> std::io::Result<()> {
        let run = self.run(queue);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if durability == Durability::Process => {
                runtime.spawn(run);
                Ok(())
            }
            _ => std::thread::Builder::new()
                .name("sqlite-sequencer".into())
                .spawn(
                    move || match tokio::runtime::Builder::new_current_thread().build() {
                        Ok(runtime) => runtime.block_on(run),
                        Err(e) => tracing::error!(error = %e, "the sequencer could not start"),
                    },
                )
                .map(drop),
        }
    }

    /// Sequences every append waiting, a batch at a time, until the store is dropped (or
    /// the runtime it runs on is: appends then fail with "the sequencer is gone").
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Append>) {
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            // Once the queue is empty, let the sessions already woken run first, then
            // take what they appended: one log `write` for them all. Taking only what
            // had arrived made batches of one at 8,000 1:1 msg/s, 7,700 writes a second;
            // with the yield 2,200, and 20% fewer `sendto` as acks leave together.
            let mut yielded = false;
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) if !yielded => {
                        yielded = true;
                        tokio::task::yield_now().await;
                    }
                    Err(_) => break,
                }
            }
            self.sequence_batch(batch);
        }
    }

    fn sequence_batch(&mut self, batch: Vec<Append>) {
        if self.heads.len() > MAX_HEADS && self.in_flight.is_empty() {
            self.heads.clear();
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            tracing::error!(
                in_flight = MAX_IN_FLIGHT,
                "messages are not reaching the database; refusing new ones"
            );
            for append in batch {
                let _ = append.reply.send(Err(failure(
                    rusqlite::ffi::SQLITE_FULL,
                    "too many messages waiting for the database",
                )));
            }
            return;
        }
        let first_id = self.next_id;
        let mut fresh: Vec<Sequenced> = Vec::new();
        let mut steps = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        // Membership first, each read on its own: a roster read from the database is
        // kept, so it must not come from an older snapshot than the changes it could miss.
        let members: Vec<_> = batch
            .iter()
            .map(|a| {
                let m = &a.message;
                let cid = m.conversation_id.as_str();
                // The server's own entries follow a change already made (the sender may
                // have just left): they need only the conversation.
                if matches!(m.entry, Entry::System(_)) {
                    self.conversation_head(cid)
                } else {
                    self.member_head(cid, m.sender_id.as_str())
                }
            })
            .collect();
        self.in_flight.forget_landed();
        // One read transaction for the batch's idempotency lookups, begun by the first:
        // beginning and ending one per lookup (locks on the WAL index, each a system
        // call) was half of their cost.
        let mut reads = BatchReads::default();
        for (append, member) in batch.into_iter().zip(members) {
            replies.push(append.reply);
            let step = member
                .and_then(|member| self.sequence(append.message, member, &mut fresh, &mut reads));
            steps.push(step.unwrap_or_else(|e| Step::Answer(Box::new(Err(e)))));
        }
        reads.end(&self.reader);
        let logged = log::lock(&self.log).append(fresh.iter().map(|s| (s.id, &*s.record)));
        if let Err(e) = logged {
            tracing::error!(error = %e, "append log: write failed; the batch's messages are refused");
            let befores: Vec<Option<Head>> = steps
                .iter()
                .filter_map(|step| match step {
                    Step::New(before) => Some(*before),
                    Step::Answer(_) => None,
                })
                .collect();
            for (s, before) in fresh.iter().zip(befores).rev() {
                let conversation = s.record.conversation_id.as_str();
                match before {
                    Some(head) => self.heads.insert(conversation.to_owned(), head),
                    None => self.heads.remove(conversation),
                };
            }
            self.next_id = first_id;
            // The kept targets followed the refused entries, which claimed attachments.
            self.targets.clear();
            self.claiming.release(&attachments::claimed(&fresh));
            for (reply, step) in replies.into_iter().zip(steps) {
                let answer = match step {
                    Step::New(_) => Err(failure(
                        rusqlite::ffi::SQLITE_IOERR,
                        "could not write the append log",
                    )),
                    Step::Answer(answer) => *answer,
                };
                let _ = reply.send(answer);
            }
            return;
        }
        self.in_flight.publish(&fresh);
        // In flight now: their claims are seen there.
        let claimed = attachments::claimed(&fresh);
        if !claimed.is_empty() {
            self.claiming.release(&claimed);
        }
        let heads: Vec<Head> = fresh.iter().map(|s| s.head).collect();
        // For the feed, then for the answers (each a copy of its shared record).
        let stored: Vec<FeedItem> = fresh
            .iter()
            .map(|s| FeedItem {
                position: s.id,
                message: Arc::clone(&s.record),
            })
            .collect();
        // Before the feed: the writer hears of a message before its fan-out is noted.
        if !fresh.is_empty()
            && self.acked.add(fresh, APPLY_AT)
            && self.writer.send(Job::Acked).is_err()
        {
            // Stopping: the log keeps them for the next start.
            tracing::warn!("the writer thread is gone; logged messages wait for the next start");
        }
        {
            let feed = self.feed.lock().expect("feed lock");
            for (item, head) in stored.iter().zip(heads) {
                self.cache.message_appended(&item.message, head);
                if let Some(feed) = feed.as_ref() {
                    // A closed feed means the server is stopping: the message gets an
                    // outbox row and is fanned out at the next start.
                    let _ = feed.send(item.clone());
                }
            }
        }
        let mut stored = stored.iter().map(|item| &item.message);
        for (reply, step) in replies.into_iter().zip(steps) {
            let answer = match step {
                Step::New(_) => Ok(AppendOutcome::Stored(MessageRecord::clone(
                    stored.next().expect("one record per new message"),
                ))),
                Step::Answer(answer) => *answer,
            };
            let _ = reply.send(answer);
        }
    }

    /// Sequences one entry whose sender's membership was read: `member` is their
    /// standing, if they are a member. A new entry is moved into its record and pushed
    /// onto `fresh`, the batch's new entries so far.
    fn sequence(
        &mut self,
        m: NewMessage,
        member: Option<Standing>,
        fresh: &mut Vec<Sequenced>,
        reads: &mut BatchReads,
    ) -> rusqlite::Result<Step> {
        let (cid, sender) = (m.conversation_id.as_str(), m.sender_id.as_str());
        let cmid = m.client_message_id.as_str();
        // A retry of a message earlier in this batch, which readers cannot see yet;
        // else the one in flight or in the database.
        let duplicate = |this: &Self, reads: &mut BatchReads| {
            if let Some(s) = fresh.iter().find(|s| {
                let r = &s.record;
                r.conversation_id.as_str() == cid
                    && r.sender_id.as_str() == sender
                    && r.client_message_id == cmid
            }) {
                return Ok(Some(AppendOutcome::Duplicate(MessageRecord::clone(
                    &s.record,
                ))));
            }
            reads.begin(&this.reader);
            find_original(&this.reader, &this.in_flight, cid, sender, cmid)
                .map(|found| found.map(AppendOutcome::Duplicate))
        };
        let Some(stored) = member else {
            // A retry is answered with the original even after its sender left.
            let found = duplicate(self, reads)?;
            return Ok(Step::Answer(Box::new(Ok(
                found.unwrap_or(AppendOutcome::NotMember)
            ))));
        };
        // A retry burns no seq. A key never seen is not looked up (a retry within the
        // batch was seen: its original put the key in).
        let key = self.seen.hash(cid, sender, cmid);
        if self.seen.may_contain(key)
            && let Some(found) = duplicate(self, reads)?
        {
            return Ok(Step::Answer(Box::new(Ok(found))));
        }
        let named = match &m.entry {
            Entry::Message { reply_to, .. } => *reply_to,
            other => other.target_seq(),
        };
        if let Some(seq) = named {
            let target = match self.targets.get(cid, seq) {
                Some(kept) => Some(kept.target()),
                None => {
                    reads.end_now(&self.reader);
                    let batch = fresh
                        .iter()
                        .filter(|s| s.record.conversation_id.as_str() == cid)
                        .map(|s| Arc::clone(&s.record));
                    let folded = targets::target(&self.reader, &self.in_flight, batch, cid, seq)?;
                    let target = folded.as_ref().map(targets::Folded::target);
                    if let Some(state) = folded {
                        self.targets.keep(cid, seq, state);
                    }
                    target
                }
            };
            if let Err(refusal) = check_entry(&m, stored.admin, target.as_ref()) {
                return Ok(Step::Answer(Box::new(Ok(AppendOutcome::Refused(refusal)))));
            }
        }
        if let Entry::Message {
            content: Some(content),
            ..
        } = &m.entry
            && content.media.is_some()
        {
            reads.end_now(&self.reader);
            let ids: Vec<_> = content.attachment_ids().collect();
            let batch = fresh
                .iter()
                .filter(|s| s.record.conversation_id.as_str() == cid)
                .map(|s| Arc::clone(&s.record));
            if !attachments::claimable(&self.reader, &self.in_flight, batch, cid, sender, &ids)?
                || !self.claiming.take(&ids)
            {
                return Ok(Step::Answer(Box::new(Ok(AppendOutcome::Refused(
                    Refusal::Invalid(
                        "the attachment is not one of yours in this conversation, or is used",
                    ),
                )))));
            }
        }
        self.seen.insert(key);
        let is_message = m.entry.is_message();
        let (before, after) = match self.heads.get_mut(cid) {
            Some(head) => {
                let before = *head;
                *head = before.next(m.now, is_message);
                (Some(before), *head)
            }
            None => {
                let after = stored.head.next(m.now, is_message);
                self.heads.insert(cid.to_owned(), after);
                (None, after)
            }
        };
        let record = MessageRecord {
            conversation_id: m.conversation_id,
            seq: after.last_seq,
            message_id: m.message_id,
            sender_id: m.sender_id,
            client_message_id: m.client_message_id,
            entry: m.entry,
            timestamp: after.last_entry_at,
            origin_connection: m.origin_connection,
            state: Default::default(),
        };
        self.targets.follow(&record);
        fresh.push(Sequenced {
            id: self.next_id,
            record: Arc::new(record),
            head: after,
        });
        self.next_id += 1;
        Ok(Step::New(before))
    }

    /// The conversation's head (a standing of no role), when it exists.
    fn conversation_head(&self, cid: &str) -> rusqlite::Result<Option<Standing>> {
        let of = |c: &ConversationRecord| Standing {
            head: Head::of(c),
            admin: false,
        };
        if let Some(found) = self.cache.roster(cid, |r| of(&r.conversation)) {
            return Ok(Some(found));
        }
        Ok(
            match read_roster(&self.reader, &self.cache, &self.in_flight, cid)? {
                Found::Kept(roster) => Some(of(&roster.conversation)),
                Found::Missing => None,
                Found::Large => conversation_tx(&self.reader, cid)?.map(|mut c| {
                    self.in_flight.overlay_conversation(&mut c);
                    of(&c)
                }),
            },
        )
    }

    /// The sender's standing, when they are a member.
    fn member_head(&self, cid: &str, sender: &str) -> rusqlite::Result<Option<Standing>> {
        let head = |r: &Roster| r.member(sender).map(|m| Standing::of(&r.conversation, m));
        if let Some(found) = self.cache.roster(cid, head) {
            return Ok(found);
        }
        Ok(
            match read_roster(&self.reader, &self.cache, &self.in_flight, cid)? {
                Found::Kept(roster) => head(&roster),
                Found::Missing => None,
                Found::Large => {
                    membership_tx(&self.reader, cid, sender)?.map(|(c, m)| Standing::of(&c, &m))
                }
            },
        )
    }
}
