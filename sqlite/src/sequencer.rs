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
//! msg/s on this machine; a commit costs far more than the rows it holds (BENCHMARKS.md,
//! round six).
//!
//! Until the writer has copied them, messages are "in flight": [`InFlight`] tells readers
//! about them, so a read never misses an acked message.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use foldhash::{HashMap, HashMapExt};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::cache::{Cache, Roster};
use super::log::{self, Tail};
use super::seen::SeenKeys;
use super::{
    APPLY_AT, Durability, FeedItem, FeedSlot, Found, Job, failure, find_original, membership_tx,
    read_roster, run_cached,
};
use crate::ids::{Millis, Seq};
use crate::ports::{AppendOutcome, ConversationRecord, MemberRecord, MessageRecord, NewMessage};

/// Appends a batch holds at most.
const MAX_BATCH: usize = 256;
/// Conversations whose counters are kept before they are all dropped (once nothing is in
/// flight, so the database has them all).
const MAX_HEADS: usize = 200_000;
/// Messages in flight beyond which new ones are refused: the writer normally applies
/// every second (at most `APPLY_AT` messages, 32,768), so this many means it has been
/// failing (a full disk, say), and memory must not grow without end meanwhile.
const MAX_IN_FLIGHT: usize = 262_144;

/// Where a conversation's counter stands: its last seq and the time of that message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub last_seq: Seq,
    pub last_message_at: Millis,
}

impl Head {
    fn of(c: &ConversationRecord) -> Self {
        Self {
            last_seq: c.last_seq,
            last_message_at: c.last_message_at,
        }
    }

    /// The head after a message sent at `now`: the next seq, and a time that never goes
    /// back.
    fn next(self, now: Millis) -> Self {
        Self {
            last_seq: self.last_seq + 1,
            last_message_at: now.max(self.last_message_at),
        }
    }
}

/// One append waiting for the sequencer.
pub(super) struct Append {
    pub message: NewMessage,
    pub reply: oneshot::Sender<rusqlite::Result<AppendOutcome>>,
}

/// A message sequenced and logged, on its way into the database, with the id of its
/// outbox row (and feed item).
pub(super) struct Sequenced {
    pub id: i64,
    /// Shared by the writer, the readers' view of what is in flight, and the fan-out.
    pub record: Arc<MessageRecord>,
}

/// Messages the sequencer logged that the writer has not taken yet.
///
/// They were handed over through the writer's queue, which woke the writer for every
/// batch only to add them to its list: 1,365 wake-ups a second at 20,000 msg/s, each a
/// context switch on a machine whose threads already wait for a core as long as they run.
/// Now the writer hears only of the first message after it took the list (to start its
/// apply timer) and of a list reaching the size that makes it apply early; it takes the
/// rest when it applies, or before each batch of writes (one may need them). So under
/// pure message traffic it wakes about once per apply; every batch of other writes
/// adds one more.
#[derive(Default)]
pub(super) struct Acked(Mutex<Vec<Sequenced>>);

impl Acked {
    /// Adds `fresh` (in id order, after what is there); true when the writer should be
    /// told: the list was empty, or it just reached `apply_at` messages.
    pub fn add(&self, mut fresh: Vec<Sequenced>, apply_at: usize) -> bool {
        let mut waiting = self.0.lock().expect("acked lock");
        let before = waiting.len();
        if before == 0 {
            std::mem::swap(&mut *waiting, &mut fresh);
        } else {
            waiting.append(&mut fresh);
        }
        before == 0 || (before < apply_at && waiting.len() >= apply_at)
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("acked lock").len()
    }

    /// Everything waiting, oldest first.
    pub fn take(&self) -> Vec<Sequenced> {
        std::mem::take(&mut *self.0.lock().expect("acked lock"))
    }
}

/// Messages acked but not yet in the database, as readers need them.
#[derive(Default)]
pub(super) struct InFlight {
    state: Mutex<InFlightState>,
}

/// Idempotency keys a generation holds before the next one begins.
///
/// Keys are forgotten a generation at a time, once all of its messages landed. Removing
/// them one by one (a second's worth, 25,000 at 25,000 msg/s) took the sequencer 10-14
/// ms under the lock every second, and every ack waited behind it (BENCHMARKS.md, round
/// ten). A lookup asks each generation, newest first: about one per 4,096 messages in
/// flight, and lookups are rare (a retry, or a key the filters of `seen` cannot rule out).
const GENERATION_KEYS: usize = 4096;

#[derive(Default)]
struct InFlightState {
    /// The messages in flight by idempotency key (see [`key`]), oldest generation first,
    /// until the sequencer forgets them after they landed (see
    /// [`InFlight::forget_landed`]).
    generations: VecDeque<Generation>,
    /// Every message up to this id is in the database.
    landed_through: i64,
    /// Generations forgotten, for the writer to free (see [`InFlight::landed`]): the
    /// sequencer, which every ack waits for, only moves them here.
    retired: Vec<Generation>,
    conversations: HashMap<String, ConversationInFlight>,
}

#[derive(Default)]
struct Generation {
    by_key: HashMap<String, Arc<MessageRecord>>,
    /// The id of its last message.
    last_id: i64,
}

struct ConversationInFlight {
    head: Head,
    /// The id of its last message in flight.
    last_id: i64,
    /// Each sender's last seq in flight (senders have seen their own messages).
    senders: HashMap<String, Seq>,
}

fn key(conversation: &str, sender: &str, client_message_id: &str) -> String {
    // Built by hand, three times per message: under callgrind this takes about 175
    // instructions, where `format!` went through its formatting machinery.
    let mut key =
        String::with_capacity(conversation.len() + sender.len() + client_message_id.len() + 2);
    key.push_str(conversation);
    key.push('\n');
    key.push_str(sender);
    key.push('\n');
    key.push_str(client_message_id);
    key
}

impl InFlight {
    fn state(&self) -> std::sync::MutexGuard<'_, InFlightState> {
        // Plain maps, consistent between statements.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message in flight with this idempotency key.
    pub fn find(&self, conversation: &str, sender: &str, cmid: &str) -> Option<MessageRecord> {
        let k = key(conversation, sender, cmid);
        self.state()
            .generations
            .iter()
            .rev()
            .find_map(|g| g.by_key.get(&k))
            .map(|r| MessageRecord::clone(r))
    }

    /// Whether the conversation has messages in flight.
    pub fn holds(&self, conversation: &str) -> bool {
        self.state().conversations.contains_key(conversation)
    }

    pub fn is_empty(&self) -> bool {
        self.state().conversations.is_empty()
    }

    /// Messages held that have not landed, give or take the generation that has landed
    /// in part.
    fn len(&self) -> usize {
        let state = self.state();
        state
            .generations
            .iter()
            .filter(|g| g.last_id > state.landed_through)
            .map(|g| g.by_key.len())
            .sum()
    }

    /// Brings a conversation read from the database up to its messages in flight.
    pub fn overlay_conversation(&self, c: &mut ConversationRecord) {
        if let Some(f) = self.state().conversations.get(c.id.as_str()) {
            raise(c, f.head);
        }
    }

    /// Brings a member read from the database up to its messages in flight.
    pub fn overlay_member(&self, m: &mut MemberRecord) {
        if let Some(seq) = self
            .state()
            .conversations
            .get(m.conversation_id.as_str())
            .and_then(|f| f.senders.get(m.user_id.as_str()))
        {
            raise_member(m, *seq);
        }
    }

    /// Brings a roster read from the database up to its messages in flight.
    pub fn overlay_roster(&self, r: &mut Roster) {
        let state = self.state();
        let Some(f) = state.conversations.get(r.conversation.id.as_str()) else {
            return;
        };
        raise(&mut r.conversation, f.head);
        for (sender, seq) in &f.senders {
            if let Some(m) = r.member_mut(sender) {
                raise_member(m, *seq);
            }
        }
    }

    fn publish(&self, batch: &[Sequenced]) {
        let mut state = self.state();
        for s in batch {
            let r = &s.record;
            let cid = r.conversation_id.as_str();
            let generation = match state.generations.back_mut() {
                Some(g) if g.by_key.len() < GENERATION_KEYS => g,
                _ => {
                    state.generations.push_back(Generation::default());
                    state.generations.back_mut().expect("just pushed")
                }
            };
            generation.by_key.insert(
                key(cid, r.sender_id.as_str(), &r.client_message_id),
                Arc::clone(r),
            );
            generation.last_id = s.id;
            let head = Head {
                last_seq: r.seq,
                last_message_at: r.timestamp,
            };
            // Looked up before inserting: a conversation or sender already held (the
            // usual case under load) costs no copy of its id.
            let f = match state.conversations.get_mut(cid) {
                Some(f) => f,
                None => state
                    .conversations
                    .entry(cid.to_owned())
                    .or_insert_with(|| ConversationInFlight {
                        head,
                        last_id: s.id,
                        senders: HashMap::new(),
                    }),
            };
            f.head = head;
            f.last_id = s.id;
            match f.senders.get_mut(r.sender_id.as_str()) {
                Some(seq) => *seq = r.seq,
                None => drop(f.senders.insert(r.sender_id.as_str().to_owned(), r.seq)),
            }
        }
    }

    /// Every message up to id `through` is in the database now. Called by the writer,
    /// which also frees here what the sequencer forgot since the last time, outside the
    /// lock.
    pub fn landed(&self, through: i64) {
        let retired = {
            let mut state = self.state();
            state.landed_through = state.landed_through.max(through);
            state.conversations.retain(|_, f| f.last_id > through);
            std::mem::take(&mut state.retired)
        };
        drop(retired);
    }

    /// Forgets the keys of messages that landed: a read of the database begun after
    /// this finds them there. The sequencer's idempotency probes share one read
    /// transaction per batch, whose snapshot may predate a landing during the batch;
    /// forgetting only here, before it begins, means no key is in neither place.
    fn forget_landed(&self) {
        let mut state = self.state();
        let InFlightState {
            generations,
            landed_through,
            retired,
            ..
        } = &mut *state;
        while generations
            .front()
            .is_some_and(|g| g.last_id <= *landed_through)
        {
            retired.extend(generations.pop_front());
        }
    }
}

fn raise(c: &mut ConversationRecord, head: Head) {
    c.last_seq = c.last_seq.max(head.last_seq);
    c.last_message_at = c.last_message_at.max(head.last_message_at);
}

fn raise_member(m: &mut MemberRecord, seq: Seq) {
    m.delivered_up_to = m.delivered_up_to.max(seq);
    m.read_up_to = m.read_up_to.max(seq);
}

/// The sequencer's state.
pub(super) struct Sequencer {
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

    fn end(self, reader: &Connection) {
        if self.begun
            && let Err(e) = run_cached(reader, "COMMIT")
        {
            tracing::warn!(error = %e, "sequencer: could not end its read transaction");
        }
    }
}

/// What sequencing an append decided.
enum Step {
    /// A new message (the batch's next in `fresh`), with its conversation's head before it.
    New(Option<Head>),
    /// Answered without a new message (a retry, not a member, or a failure).
    Answer(rusqlite::Result<AppendOutcome>),
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
                self.member_head(m.conversation_id.as_str(), m.sender_id.as_str())
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
            steps.push(step.unwrap_or_else(|e| Step::Answer(Err(e))));
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
            for (reply, step) in replies.into_iter().zip(steps) {
                let answer = match step {
                    Step::New(_) => Err(failure(
                        rusqlite::ffi::SQLITE_IOERR,
                        "could not write the append log",
                    )),
                    Step::Answer(answer) => answer,
                };
                let _ = reply.send(answer);
            }
            return;
        }
        self.in_flight.publish(&fresh);
        // For the feed, then for the answers (each a copy of its shared record).
        let stored: Vec<FeedItem> = fresh
            .iter()
            .map(|s| (s.id, Arc::clone(&s.record)))
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
            for (id, record) in &stored {
                self.cache.message_appended(
                    record.conversation_id.as_str(),
                    record.sender_id.as_str(),
                    record.seq,
                    record.timestamp,
                );
                if let Some(feed) = feed.as_ref() {
                    // A closed feed means the server is stopping: the message gets an
                    // outbox row and is fanned out at the next start.
                    let _ = feed.send((*id, Arc::clone(record)));
                }
            }
        }
        let mut stored = stored.iter().map(|(_, record)| record);
        for (reply, step) in replies.into_iter().zip(steps) {
            let answer = match step {
                Step::New(_) => Ok(AppendOutcome::Stored(MessageRecord::clone(
                    stored.next().expect("one record per new message"),
                ))),
                Step::Answer(answer) => answer,
            };
            let _ = reply.send(answer);
        }
    }

    /// Sequences one message whose sender's membership was read: `member` is the
    /// conversation's head as stored, if the sender is a member. A new message is moved
    /// into its record and pushed onto `fresh`, the batch's new messages so far.
    fn sequence(
        &mut self,
        m: NewMessage,
        member: Option<Head>,
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
            return Ok(Step::Answer(Ok(found.unwrap_or(AppendOutcome::NotMember))));
        };
        // A retry burns no seq. A key never seen is not looked up (a retry within the
        // batch was seen: its original put the key in).
        let key = self.seen.hash(cid, sender, cmid);
        if self.seen.may_contain(key)
            && let Some(found) = duplicate(self, reads)?
        {
            return Ok(Step::Answer(Ok(found)));
        }
        self.seen.insert(key);
        let (before, after) = match self.heads.get_mut(cid) {
            Some(head) => {
                let before = *head;
                *head = before.next(m.now);
                (Some(before), *head)
            }
            None => {
                let after = stored.next(m.now);
                self.heads.insert(cid.to_owned(), after);
                (None, after)
            }
        };
        fresh.push(Sequenced {
            id: self.next_id,
            record: Arc::new(MessageRecord {
                conversation_id: m.conversation_id,
                seq: after.last_seq,
                message_id: m.message_id,
                sender_id: m.sender_id,
                client_message_id: m.client_message_id,
                content: m.content,
                reply_to: m.reply_to,
                timestamp: after.last_message_at,
                origin_connection: m.origin_connection,
            }),
        });
        self.next_id += 1;
        Ok(Step::New(before))
    }

    /// The conversation's head as stored, when `sender` is one of its members.
    fn member_head(&self, cid: &str, sender: &str) -> rusqlite::Result<Option<Head>> {
        let head = |r: &Roster| r.member(sender).map(|_| Head::of(&r.conversation));
        if let Some(found) = self.cache.roster(cid, head) {
            return Ok(found);
        }
        Ok(
            match read_roster(&self.reader, &self.cache, &self.in_flight, cid)? {
                Found::Kept(roster) => head(&roster),
                Found::Missing => None,
                Found::Large => {
                    membership_tx(&self.reader, cid, sender)?.map(|(c, _)| Head::of(&c))
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Message `id` of conversation `c_in_flight`, sent by alice with key `k<id>`.
    fn sequenced(id: i64) -> Sequenced {
        Sequenced {
            id,
            record: Arc::new(super::super::test_message("c_in_flight", id as u64)),
        }
    }

    fn found(in_flight: &InFlight, id: i64) -> bool {
        in_flight
            .find("c_in_flight", "alice", &format!("k{id}"))
            .is_some_and(|m| m.seq == id as u64)
    }

    #[test]
    fn landed_keys_are_forgotten_a_whole_generation_at_a_time_and_only_when_asked() {
        // GIVEN two and a half generations of messages in flight
        let in_flight = InFlight::default();
        let total = (GENERATION_KEYS * 5 / 2) as i64;
        let batch: Vec<Sequenced> = (1..=total).map(sequenced).collect();
        in_flight.publish(&batch[..100]);
        in_flight.publish(&batch[100..]);
        assert!((1..=total).all(|id| found(&in_flight, id)));
        assert_eq!(in_flight.len(), total as usize);

        // WHEN the writer lands them up to the middle of the second generation
        let through = (GENERATION_KEYS + GENERATION_KEYS / 2) as i64;
        in_flight.landed(through);

        // THEN nothing is forgotten until the sequencer asks (its read snapshot may
        // predate the landing), but the landed generation no longer counts
        assert!((1..=total).all(|id| found(&in_flight, id)));
        assert_eq!(in_flight.len(), total as usize - GENERATION_KEYS);
        assert!(in_flight.holds("c_in_flight"));

        // AND when it asks, only the wholly landed generation goes
        in_flight.forget_landed();
        let first = GENERATION_KEYS as i64;
        assert!((1..=first).all(|id| !found(&in_flight, id)));
        assert!((first + 1..=total).all(|id| found(&in_flight, id)));

        // AND once everything landed, everything goes, and the conversation is clear
        in_flight.landed(total);
        assert_eq!(in_flight.len(), 0);
        assert!(!in_flight.holds("c_in_flight"));
        in_flight.forget_landed();
        assert!((1..=total).all(|id| !found(&in_flight, id)));
        assert!(in_flight.state().generations.is_empty());
        // The writer frees what was forgotten the next time it lands something.
        in_flight.landed(total);
        assert!(in_flight.state().retired.is_empty());
    }
}
