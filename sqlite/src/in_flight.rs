//! Messages acked by the sequencer and not yet in the database ("in flight"): the list
//! the writer takes them from ([`Acked`]) and what readers must see of them
//! ([`InFlight`]), so a read never misses an acked message.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use foldhash::{HashMap, HashMapExt};
use rusqlite::Connection;

use chat_shared::ids::{Millis, Seq};
use chat_shared::ports::{ConversationRecord, MemberRecord, MessageRecord};
use chat_shared::protocol::{Entry, SystemEvent};

use crate::cache::Roster;
use crate::queries::find_by_client_id_tx;

/// Messages in flight beyond which new ones are refused: the writer normally applies
/// every second (at most `APPLY_AT` messages, 32,768), so this many means it has been
/// failing (a full disk, say), and memory must not grow without end meanwhile.
pub(crate) const MAX_IN_FLIGHT: usize = 262_144;

/// Where a conversation's counter stands after an entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub last_seq: Seq,
    /// The time of the newest entry: the next one's is never earlier. Kept in memory
    /// only; read from the database it is the last message's time, which differs only
    /// if the clock went back since a later entry of another kind.
    pub last_entry_at: Millis,
    /// The time of the newest `message` entry.
    pub last_message_at: Millis,
    /// `message` entries so far.
    pub message_count: u64,
}

impl Head {
    pub(crate) fn of(c: &ConversationRecord) -> Self {
        Self {
            last_seq: c.last_seq,
            last_entry_at: c.last_message_at,
            last_message_at: c.last_message_at,
            message_count: c.message_count,
        }
    }

    /// The head after an entry made at `now`: the next seq, and a time that never goes
    /// back; a `message` entry also moves the message time and count.
    pub(crate) fn next(self, now: Millis, is_message: bool) -> Self {
        let at = now.max(self.last_entry_at);
        Self {
            last_seq: self.last_seq + 1,
            last_entry_at: at,
            last_message_at: if is_message { at } else { self.last_message_at },
            message_count: self.message_count + u64::from(is_message),
        }
    }
}

/// An entry sequenced and logged, on its way into the database, with the id of its
/// outbox row (and feed item) and its conversation's head after it.
pub(crate) struct Sequenced {
    pub id: i64,
    /// Shared by the writer, the readers' view of what is in flight, and the fan-out.
    pub record: Arc<MessageRecord>,
    pub head: Head,
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
pub(crate) struct Acked(Mutex<Vec<Sequenced>>);

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
pub(crate) struct InFlight {
    state: Mutex<InFlightState>,
}

/// Idempotency keys a generation holds before the next one begins.
///
/// Keys are forgotten a generation at a time, once all of its messages landed. Removing
/// them one by one (a second's worth, 25,000 at 25,000 msg/s) took the sequencer 10-14
/// ms under the lock every second, and every ack waited behind it (perf-history.md, round
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
    /// Each sender's last `message` entry in flight (senders have seen their own
    /// messages), or the `member_added` entry that added a member: its seq, and the
    /// message count through it.
    senders: HashMap<String, (Seq, u64)>,
    /// Its entries in flight, oldest first, with their ids: the sequencer folds them
    /// into the messages they change (see `targets`).
    entries: VecDeque<(i64, Arc<MessageRecord>)>,
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
    pub(crate) fn len(&self) -> usize {
        let state = self.state();
        state
            .generations
            .iter()
            .filter(|g| g.last_id > state.landed_through)
            .map(|g| g.by_key.len())
            .sum()
    }

    /// The conversation's entries in flight, oldest first. With a read of the database
    /// begun after this, they are everything the database misses: one that lands
    /// meanwhile is in both, and is told apart by its seq.
    pub fn entries(&self, conversation: &str) -> Vec<Arc<MessageRecord>> {
        self.state()
            .conversations
            .get(conversation)
            .map(|f| f.entries.iter().map(|(_, r)| Arc::clone(r)).collect())
            .unwrap_or_default()
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

    pub(crate) fn publish(&self, batch: &[Sequenced]) {
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
            let head = s.head;
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
                        entries: VecDeque::new(),
                    }),
            };
            f.head = head;
            f.last_id = s.id;
            f.entries.push_back((s.id, Arc::clone(r)));
            let seen = (r.seq, head.message_count);
            match &r.entry {
                Entry::Message { .. } => match f.senders.get_mut(r.sender_id.as_str()) {
                    Some(position) => *position = seen,
                    None => drop(f.senders.insert(r.sender_id.as_str().to_owned(), seen)),
                },
                // Added members' positions start at their `member_added` entry.
                Entry::System(change) if change.event == SystemEvent::MemberAdded => {
                    for user in &change.user_ids {
                        f.senders.insert(user.as_str().to_owned(), seen);
                    }
                }
                _ => {}
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
            state.conversations.retain(|_, f| {
                while f.entries.front().is_some_and(|(id, _)| *id <= through) {
                    f.entries.pop_front();
                }
                f.last_id > through
            });
            std::mem::take(&mut state.retired)
        };
        drop(retired);
    }

    /// Forgets the keys of messages that landed: a read of the database begun after
    /// this finds them there. The sequencer's idempotency probes share one read
    /// transaction per batch, whose snapshot may predate a landing during the batch;
    /// forgetting only here, before it begins, means no key is in neither place.
    pub(crate) fn forget_landed(&self) {
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
    c.message_count = c.message_count.max(head.message_count);
}

fn raise_member(m: &mut MemberRecord, (seq, message_count): (Seq, u64)) {
    m.delivered_up_to = m.delivered_up_to.max(seq);
    m.read_up_to = m.read_up_to.max(seq);
    m.read_messages = m.read_messages.max(message_count);
}

/// The message stored under an idempotency key: among the messages in flight first (one
/// applied meanwhile is in the database by the time the database is read), then there.
pub(crate) fn find_original(
    c: &Connection,
    in_flight: &InFlight,
    conversation: &str,
    sender: &str,
    cmid: &str,
) -> rusqlite::Result<Option<MessageRecord>> {
    match in_flight.find(conversation, sender, cmid) {
        Some(m) => Ok(Some(m)),
        None => find_by_client_id_tx(c, conversation, sender, cmid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Message `id` of conversation `c_in_flight`, sent by alice with key `k<id>`.
    fn sequenced(id: i64) -> Sequenced {
        let record = crate::tests::test_message("c_in_flight", id as u64);
        Sequenced {
            id,
            head: Head {
                last_seq: record.seq,
                last_entry_at: record.timestamp,
                last_message_at: record.timestamp,
                message_count: record.seq,
            },
            record: Arc::new(record),
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
