//! What every message reads, kept in memory: a conversation with its members (the
//! membership check of a send, the audience of its fan-out) and a user's connections.
//!
//! Without it each message cost four B-tree lookups on a reader whose page cache SQLite
//! throws away whenever the WAL moved, which under load is always: a third of the async
//! threads' time at 3,000 msg/s.
//!
//! The writer thread is the only writer, so it keeps this exact: right after each commit
//! (in commit order, before the caller hears back) a write either updates what it changed
//! in place (a message: the conversation's seq and the sender's positions; receipts;
//! liveness) or forgets the keys it touched (membership, connections). A read that missed
//! loads from the database and keeps what it read only if nothing changed in between:
//! every change bumps an epoch, and a load that saw the epoch move is used once and
//! dropped, since it may predate the change.

use std::sync::Mutex;

use foldhash::HashMap;

use chat_shared::ids::{Millis, UserId};
use chat_shared::ports::{ConnectionRecord, ConversationRecord, MemberRecord, MessageRecord};

use chat_shared::protocol::{Entry, SystemEvent};

use crate::in_flight::Head;
use chat_shared::protocol::Positions;

/// Conversations with more members are not kept (their fan-out reads members in pages).
pub(super) const MAX_ROSTER_MEMBERS: u64 = 10_000;
/// Members kept over all conversations before the conversations are all dropped.
const MAX_KEPT_MEMBERS: usize = 1_000_000;
/// Users whose connections are kept before they are all dropped.
const MAX_KEPT_USERS: usize = 1_000_000;

/// A conversation and all its members, sorted by user id.
#[derive(Debug, Clone)]
pub(super) struct Roster {
    pub conversation: ConversationRecord,
    pub members: Vec<MemberRecord>,
}

impl Roster {
    pub fn member(&self, user: &str) -> Option<&MemberRecord> {
        self.index_of(user).map(|i| &self.members[i])
    }

    /// The members after `after` in user id order, at most `limit`.
    pub fn page(&self, after: &str, limit: usize) -> Vec<MemberRecord> {
        let start = self
            .members
            .partition_point(|m| m.user_id.as_str() <= after);
        self.members[start..].iter().take(limit).cloned().collect()
    }

    pub fn member_mut(&mut self, user: &str) -> Option<&mut MemberRecord> {
        self.index_of(user).map(|i| &mut self.members[i])
    }

    fn index_of(&self, user: &str) -> Option<usize> {
        self.members
            .binary_search_by(|m| m.user_id.as_str().cmp(user))
            .ok()
    }
}

#[derive(Default)]
pub(super) struct Cache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped by every change made through the writer.
    epoch: u64,
    rosters: HashMap<String, Roster>,
    kept_members: usize,
    connections: HashMap<String, Vec<ConnectionRecord>>,
}

/// Where a load began: the epoch it saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Epoch(u64);

impl Cache {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain maps, consistent between statements: a panic elsewhere
        // while holding the lock leaves nothing half done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call before reading from the database what [`Cache::keep_roster`] or
    /// [`Cache::keep_connections`] will be given.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.state().epoch)
    }

    pub fn roster<T>(&self, id: &str, f: impl FnOnce(&Roster) -> T) -> Option<T> {
        self.state().rosters.get(id).map(f)
    }

    pub fn keep_roster(&self, since: Epoch, roster: Roster) {
        let mut state = self.state();
        if state.epoch != since.0 {
            return;
        }
        if state.kept_members + roster.members.len() > MAX_KEPT_MEMBERS {
            state.rosters.clear();
            state.kept_members = 0;
        }
        state.kept_members += roster.members.len();
        let id = roster.conversation.id.as_str().to_owned();
        if let Some(old) = state.rosters.insert(id, roster) {
            state.kept_members -= old.members.len();
        }
    }

    /// Appends the kept connections of `users` to `out`; returns the users not kept.
    pub fn connections_of<'u>(
        &self,
        users: &'u [UserId],
        out: &mut Vec<ConnectionRecord>,
    ) -> Vec<&'u UserId> {
        let state = self.state();
        let mut missing = Vec::new();
        for user in users {
            match state.connections.get(user.as_str()) {
                Some(conns) => out.extend(conns.iter().cloned()),
                None => missing.push(user),
            }
        }
        missing
    }

    /// Keeps each user's connections (all of them: a user with none gets an empty list).
    pub fn keep_connections(&self, since: Epoch, users: &[&UserId], conns: &[ConnectionRecord]) {
        let mut state = self.state();
        if state.epoch != since.0 {
            return;
        }
        if state.connections.len() + users.len() > MAX_KEPT_USERS {
            state.connections.clear();
        }
        let mut by_user: HashMap<&str, Vec<ConnectionRecord>> =
            users.iter().map(|u| (u.as_str(), Vec::new())).collect();
        for c in conns {
            if let Some(mine) = by_user.get_mut(c.user_id.as_str()) {
                mine.push(c.clone());
            }
        }
        for (user, mine) in by_user {
            state.connections.insert(user.to_owned(), mine);
        }
    }

    /// A conversation or its membership changed in a way not tracked here.
    pub fn forget_conversation(&self, id: &str) {
        let mut state = self.state();
        state.epoch += 1;
        if let Some(old) = state.rosters.remove(id) {
            state.kept_members -= old.members.len();
        }
    }

    /// Something changed in the database that loads begun before must not keep.
    pub fn changed(&self) {
        self.state().epoch += 1;
    }

    /// An entry took its seq, leaving its conversation at `head`; the sender of a
    /// message has seen it.
    ///
    /// Counters and positions only move forward: the sequencer and the writer thread
    /// both report here, and a receipt the writer computed before a message was
    /// sequenced may arrive after it.
    pub fn message_appended(&self, entry: &MessageRecord, head: Head) {
        let mut state = self.state();
        state.epoch += 1;
        if let Some(roster) = state.rosters.get_mut(entry.conversation_id.as_str()) {
            let c = &mut roster.conversation;
            c.last_seq = c.last_seq.max(head.last_seq);
            c.last_message_at = c.last_message_at.max(head.last_message_at);
            c.message_count = c.message_count.max(head.message_count);
            let mut seen = |user: &str| {
                if let Some(me) = roster.member_mut(user) {
                    me.delivered_up_to = me.delivered_up_to.max(entry.seq);
                    me.read_up_to = me.read_up_to.max(entry.seq);
                    me.read_messages = me.read_messages.max(head.message_count);
                }
            };
            // A message's sender has seen it; added members start at their entry.
            match &entry.entry {
                Entry::Message { .. } => seen(entry.sender_id.as_str()),
                Entry::System(change) if change.event == SystemEvent::MemberAdded => {
                    change.user_ids.iter().for_each(|u| seen(u.as_str()));
                }
                _ => {}
            }
        }
    }

    pub fn positions_moved(&self, id: &str, user: &str, positions: Positions, read_messages: u64) {
        let mut state = self.state();
        state.epoch += 1;
        if let Some(roster) = state.rosters.get_mut(id)
            && let Some(me) = roster.member_mut(user)
        {
            me.delivered_up_to = me.delivered_up_to.max(positions.delivered_up_to);
            me.read_up_to = me.read_up_to.max(positions.read_up_to);
            me.read_messages = me.read_messages.max(read_messages);
        }
    }

    pub fn forget_connections_of(&self, user: &str) {
        let mut state = self.state();
        state.epoch += 1;
        state.connections.remove(user);
    }

    pub fn forget_all_connections(&self) {
        let mut state = self.state();
        state.epoch += 1;
        state.connections.clear();
    }

    pub fn connection_touched(&self, user: &str, connection_id: &str, at: Millis) {
        let mut state = self.state();
        state.epoch += 1;
        if let Some(conns) = state.connections.get_mut(user)
            && let Some(c) = conns.iter_mut().find(|c| c.connection_id == connection_id)
        {
            c.last_frame_at = at;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use chat_shared::ids::ConversationId;
    use chat_shared::ports::{
        ConnectionStore, ConversationKind, ConversationStore, MessageStore, NewConversation,
        NewMessage, ReceiptStore,
    };
    use chat_shared::protocol::{Content, Entry};

    use super::*;
    use crate::queries::{conversation_tx, select_for_users, strings};
    use crate::rows::{MEMBER_COLUMNS, connection_at, member_at};
    use crate::{Durability, SqliteStore};

    fn user(i: usize) -> UserId {
        UserId::parse(format!("user{i}")).unwrap()
    }

    fn by(actor: &UserId, now: Millis) -> chat_shared::ports::Change {
        chat_shared::ports::Change {
            actor: actor.clone(),
            now,
            expires_at: None,
        }
    }

    /// A small deterministic generator (xorshift), so a failure replays.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    type Answers = (
        Option<ConversationRecord>,
        Vec<MemberRecord>,
        Vec<Option<MemberRecord>>,
        Vec<ConnectionRecord>,
    );

    /// What the database holds, read around the cache.
    fn truth(store: &SqliteStore, conv: &ConversationId, users: &[UserId]) -> Answers {
        store
            .lookup(|c| {
                let conversation = conversation_tx(c, conv.as_str())?;
                let members = c
                    .prepare(&format!(
                        "SELECT {MEMBER_COLUMNS} FROM members m
                         WHERE m.conversation_id = ?1 ORDER BY m.user_id"
                    ))?
                    .query_map([conv.as_str()], |r| member_at(r, 0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let names = strings(users);
                let mut conns = select_for_users(
                    c,
                    "SELECT id, user_id, device_id, connected_at, last_frame_at, token_expires_at FROM connections WHERE user_id IN ({users})",
                    &names,
                    connection_at,
                )?;
                conns.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
                let memberships = users
                    .iter()
                    .map(|u| members.iter().find(|m| &m.user_id == u).cloned())
                    .collect();
                Ok((conversation, members, memberships, conns))
            })
            .unwrap()
    }

    async fn through_cache(
        store: &SqliteStore,
        conv: &ConversationId,
        users: &[UserId],
    ) -> Answers {
        let conversation = store.conversation(conv).await.unwrap();
        let members = store.members(conv, None, 1000).await.unwrap();
        let mut memberships = Vec::new();
        for u in users {
            let found = store.membership(conv, u).await.unwrap();
            memberships.push(found.map(|(_, m)| m));
        }
        let mut conns = store.connections_of(users).await.unwrap();
        conns.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        (conversation, members, memberships, conns)
    }

    /// Random writes of every kind the cache follows, with readers loading entries
    /// concurrently: after each write, what the store answers equals the database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cache_always_agrees_with_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("c.db"), Durability::Process).unwrap();
        let users: Vec<UserId> = (0..6).map(user).collect();
        let conv = chat_shared::domain::new_conversation_id();
        store
            .create_group(&NewConversation {
                id: conv.clone(),
                kind: ConversationKind::Group,
                name: None,
                now: 1,
                members: users[..3].to_vec(),
            })
            .await
            .unwrap();

        // Readers that keep loading what the writes below invalidate.
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (store, conv, users, stop) =
                    (store.clone(), conv.clone(), users.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = through_cache(&store, &conv, &users).await;
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();

        let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
        let mut sent = 0;
        for step in 0..600 {
            let u = &users[dice.roll(users.len())];
            let now = 100 + step as i64;
            match dice.roll(9) {
                0 => {
                    store
                        .add_members(&conv, std::slice::from_ref(u), 100, &by(u, now))
                        .await
                        .unwrap();
                }
                1 => {
                    store.remove_member(&conv, u, &by(u, now)).await.unwrap();
                }
                2 => {
                    let until = [0, now + 50, chat_shared::ports::MUTED_FOREVER][dice.roll(3)];
                    store.set_muted(&conv, u, until).await.unwrap();
                }
                3 | 4 => {
                    sent += 1;
                    let _ = store
                        .append_message(&NewMessage {
                            conversation_id: conv.clone(),
                            message_id: chat_shared::domain::new_message_id(),
                            sender_id: u.clone(),
                            client_message_id: format!("m{sent}"),
                            entry: Entry::Message {
                                content: Some(Content::text("hi")),
                                reply_to: None,
                            },
                            now,
                            origin_connection: None,
                            expires_at: None,
                            hint: None,
                            rules: chat_shared::ports::EntryRules {
                                retained_since: i64::MIN,
                                edit_window_ms: 0,
                            },
                        })
                        .await
                        .unwrap();
                }
                5 => {
                    let seq = dice.roll(sent + 1) as u64;
                    store
                        .update_receipts(&conv, u, Some(seq), Some(seq / 2))
                        .await
                        .unwrap();
                }
                6 => {
                    store
                        .put_connection(&ConnectionRecord {
                            connection_id: format!("c{}", dice.roll(8)),
                            user_id: u.clone(),
                            device_id: None,
                            connected_at: now,
                            last_frame_at: now,
                            token_expires_at: Millis::MAX,
                        })
                        .await
                        .unwrap();
                }
                7 => {
                    let id = format!("c{}", dice.roll(8));
                    if dice.roll(2) == 0 {
                        store.touch_connection(&id, u, now).await.unwrap();
                    } else {
                        store.delete_connection(&id).await.unwrap();
                    }
                }
                _ => {
                    if dice.roll(10) == 0 {
                        store.clear_connections().await.unwrap();
                    }
                }
            }
            // What the cache answers with messages still in flight is what the
            // database holds once they are applied.
            let cached = through_cache(&store, &conv, &users).await;
            store.settle().await.unwrap();
            let truth = truth(&store, &conv, &users);
            assert_eq!(cached, truth, "after step {step}");
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
    }
}
