//! The cases of `system` entries (PROTOCOL.md 8.1, 8.4): every membership change appends
//! its entry with it, and system entries move neither the order, the message count nor
//! anyone's unread count. GIVEN/WHEN/THEN in each.

use chat_shared::ids::{ConversationId, Millis, Seq, UserId};
use chat_shared::ports::{AddMembersOutcome, DetailsChange, DetailsOutcome, MessageRecord, Role};
use chat_shared::protocol::{Entry, EntryKind, SystemChange, SystemEvent};

use crate::cases::{S, by, group, message, query, user, users};

fn change(event: SystemEvent, who: &[&str], actor: Option<&str>) -> SystemChange {
    SystemChange {
        event,
        user_ids: users(who),
        actor: actor.map(user),
        role: None,
        name: None,
        avatar: None,
    }
}

async fn send(store: &S, id: &ConversationId, sender: &str, cmid: &str, now: Millis) -> Seq {
    match store
        .append_message(&message(id, sender, cmid, now))
        .await
        .unwrap()
    {
        chat_shared::ports::AppendOutcome::Stored(m) => m.seq,
        other => panic!("{cmid} should be stored, got {other:?}"),
    }
}

async fn add(
    store: &S,
    id: &ConversationId,
    who: &[&str],
    actor: &str,
    now: Millis,
) -> Vec<UserId> {
    match store
        .add_members(id, &users(who), 1000, &by(actor, now))
        .await
        .unwrap()
    {
        AddMembersOutcome::Added(added) => added,
        AddMembersOutcome::OverCap => panic!("adding {who:?} should fit"),
    }
}

/// Every entry of the conversation as `viewer` reads it.
async fn read_all(store: &S, id: &ConversationId, viewer: &str) -> Vec<MessageRecord> {
    let (entries, more) = store
        .messages(id, &user(viewer), query(None, None, 1000, false))
        .await
        .unwrap();
    assert!(!more);
    entries
}

async fn entry_at(store: &S, id: &ConversationId, seq: Seq) -> MessageRecord {
    let (mut entries, _) = store
        .messages(
            id,
            &user("alice"),
            query(Some(seq - 1), Some(seq + 1), 1, false),
        )
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "entry {seq}");
    entries.remove(0)
}

fn system(m: &MessageRecord) -> &SystemChange {
    match &m.entry {
        Entry::System(c) => c,
        other => panic!("entry {} should be a system entry, got {other:?}", m.seq),
    }
}

async fn last_seq(store: &S, id: &ConversationId) -> Seq {
    store.conversation(id).await.unwrap().unwrap().last_seq
}

pub async fn adding_appends_one_member_added_naming_only_the_new_users(store: S) {
    // GIVEN alice and bob, and a message
    let id = group(&store, &["alice", "bob"], 1).await;
    send(&store, &id, "alice", "m", 10).await;
    // WHEN alice adds carol, bob (a member) and dave, carol twice
    let added = add(&store, &id, &["carol", "bob", "dave", "carol"], "alice", 20).await;
    // THEN carol and dave are added, and one entry names them, made by alice
    assert_eq!(added, users(&["carol", "dave"]));
    assert_eq!(last_seq(&store, &id).await, 2);
    let entry = entry_at(&store, &id, 2).await;
    assert_eq!(
        *system(&entry),
        change(SystemEvent::MemberAdded, &["carol", "dave"], Some("alice"))
    );
    assert_eq!(
        (
            entry.entry.kind(),
            entry.sender_id.as_str(),
            entry.timestamp
        ),
        (EntryKind::System, "alice", 20)
    );
    // AND adding members already there appends nothing
    assert!(
        add(&store, &id, &["bob", "carol"], "alice", 30)
            .await
            .is_empty()
    );
    assert_eq!(last_seq(&store, &id).await, 2);
    assert_eq!(read_all(&store, &id, "carol").await.len(), 2);
}

pub async fn added_members_start_at_their_entry_having_read_everything(store: S) {
    // GIVEN two messages
    let id = group(&store, &["alice", "bob"], 1).await;
    send(&store, &id, "alice", "m1", 10).await;
    send(&store, &id, "bob", "m2", 11).await;
    // WHEN carol is added
    add(&store, &id, &["carol"], "alice", 20).await;
    // THEN her positions are the entry's seq and she has nothing unread
    let (conv, carol) = store
        .membership(&id, &user("carol"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (carol.delivered_up_to, carol.read_up_to, carol.read_messages),
        (3, 3, 2)
    );
    assert_eq!((carol.unread(&conv), carol.joined_at), (0, 20));
    assert_eq!(store.total_unread(&user("carol")).await.unwrap(), 0);
    // AND the next message is her first unread
    send(&store, &id, "bob", "m3", 30).await;
    assert_eq!(store.total_unread(&user("carol")).await.unwrap(), 1);
}

pub async fn over_the_cap_nothing_is_added_nor_appended(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    // WHEN two are added under a cap of 3
    let out = store
        .add_members(&id, &users(&["carol", "dave"]), 3, &by("alice", 20))
        .await
        .unwrap();
    // THEN nothing changed
    assert_eq!(out, AddMembersOutcome::OverCap);
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!((conv.last_seq, conv.member_count), (0, 2));
    assert!(
        store
            .membership(&id, &user("carol"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(read_all(&store, &id, "alice").await.is_empty());
}

pub async fn removing_appends_member_removed_with_the_actor(store: S) {
    let id = group(&store, &["alice", "bob", "carol"], 1).await;
    send(&store, &id, "bob", "m", 10).await;
    // WHEN alice (the admin) removes bob
    let removed = store
        .remove_member(&id, &user("bob"), &by("alice", 20))
        .await
        .unwrap()
        .unwrap();
    // THEN nobody is promoted, and one entry says alice removed bob
    assert_eq!(removed.promoted, None);
    let entry = entry_at(&store, &id, 2).await;
    assert_eq!(
        *system(&entry),
        change(SystemEvent::MemberRemoved, &["bob"], Some("alice"))
    );
    assert_eq!((entry.sender_id.as_str(), entry.timestamp), ("alice", 20));
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!((conv.last_seq, conv.member_count), (2, 2));
    // AND removing him again finds nothing and appends nothing
    assert!(
        store
            .remove_member(&id, &user("bob"), &by("alice", 30))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(last_seq(&store, &id).await, 2);
}

pub async fn leaving_appends_member_left(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    // WHEN bob leaves
    store
        .remove_member(&id, &user("bob"), &by("bob", 20))
        .await
        .unwrap()
        .unwrap();
    // THEN the entry says bob left
    let entry = entry_at(&store, &id, 1).await;
    assert_eq!(
        *system(&entry),
        change(SystemEvent::MemberLeft, &["bob"], Some("bob"))
    );
    assert!(store.membership(&id, &user("bob")).await.unwrap().is_none());
}

pub async fn the_last_admin_leaving_appends_member_left_then_role_changed(store: S) {
    // GIVEN alice (admin), carol (added at 10), bob (added at 20)
    let id = group(&store, &["alice"], 1).await;
    add(&store, &id, &["carol"], "alice", 10).await;
    add(&store, &id, &["bob"], "alice", 20).await;
    // WHEN alice leaves
    let removed = store
        .remove_member(&id, &user("alice"), &by("alice", 30))
        .await
        .unwrap()
        .unwrap();
    // THEN carol, the longest-standing, is admin, and two entries say so in order
    assert_eq!(removed.promoted, Some(user("carol")));
    let (conv, carol) = store
        .membership(&id, &user("carol"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(carol.role, Role::Admin);
    assert_eq!((conv.last_seq, conv.member_count), (4, 2));
    let entries = read_all(&store, &id, "carol").await;
    let seqs: Vec<Seq> = entries.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(
        *system(&entries[2]),
        change(SystemEvent::MemberLeft, &["alice"], Some("alice"))
    );
    let promotion = SystemChange {
        role: Some("admin".into()),
        ..change(SystemEvent::RoleChanged, &["carol"], None)
    };
    assert_eq!(*system(&entries[3]), promotion);
    assert_eq!((entries[2].timestamp, entries[3].timestamp), (30, 30));
    // AND a member leaving later promotes nobody and appends one entry
    let removed = store
        .remove_member(&id, &user("bob"), &by("bob", 40))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.promoted, None);
    assert_eq!(last_seq(&store, &id).await, 5);
}

pub async fn system_entries_move_neither_the_order_nor_counts_nor_unread(store: S) {
    // GIVEN a message at 10, read by bob
    let id = group(&store, &["alice", "bob"], 1).await;
    send(&store, &id, "alice", "m", 10).await;
    store
        .update_receipts(&id, &user("bob"), Some(1), Some(1))
        .await
        .unwrap()
        .unwrap();
    // WHEN carol is added at 50 and removed at 60, and dave joins and leaves
    add(&store, &id, &["carol", "dave"], "alice", 50).await;
    store
        .remove_member(&id, &user("carol"), &by("alice", 60))
        .await
        .unwrap()
        .unwrap();
    store
        .remove_member(&id, &user("dave"), &by("dave", 70))
        .await
        .unwrap()
        .unwrap();
    // THEN the conversation's last message and message count are the message's
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!(
        (conv.last_seq, conv.last_message_at, conv.message_count),
        (4, 10, 1)
    );
    // AND nobody has anything unread
    let (_, bob) = store.membership(&id, &user("bob")).await.unwrap().unwrap();
    assert_eq!(bob.unread(&conv), 0);
    assert_eq!(store.total_unread(&user("bob")).await.unwrap(), 0);
    assert_eq!(store.total_unread(&user("alice")).await.unwrap(), 0);
    // AND reading up to the last entry counts the one message
    let up = store
        .update_receipts(&id, &user("bob"), None, Some(4))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(up.positions.read_up_to, 4);
    let (_, bob) = store.membership(&id, &user("bob")).await.unwrap().unwrap();
    assert_eq!(bob.read_messages, 1);
    // AND the list order of bob's conversations is still the message's time
    let rows = store
        .user_conversations(&user("bob"), None, 10)
        .await
        .unwrap();
    assert_eq!(rows[0].0.last_message_at, 10);
}

pub async fn system_entries_come_back_with_every_field(store: S) {
    let id = group(&store, &["alice"], 1).await;
    add(&store, &id, &["bob", "carol"], "alice", 10).await;
    store
        .remove_member(&id, &user("carol"), &by("alice", 20))
        .await
        .unwrap()
        .unwrap();
    store
        .remove_member(&id, &user("alice"), &by("alice", 30))
        .await
        .unwrap()
        .unwrap();
    // THEN the log, read by bob, holds the four entries with their every field
    let entries = read_all(&store, &id, "bob").await;
    let got: Vec<(Seq, EntryKind, &str, Millis, SystemChange)> = entries
        .iter()
        .map(|m| {
            (
                m.seq,
                m.entry.kind(),
                m.sender_id.as_str(),
                m.timestamp,
                system(m).clone(),
            )
        })
        .collect();
    let promotion = SystemChange {
        role: Some("admin".into()),
        ..change(SystemEvent::RoleChanged, &["bob"], None)
    };
    assert_eq!(
        got,
        [
            (
                1,
                EntryKind::System,
                "alice",
                10,
                change(SystemEvent::MemberAdded, &["bob", "carol"], Some("alice"))
            ),
            (
                2,
                EntryKind::System,
                "alice",
                20,
                change(SystemEvent::MemberRemoved, &["carol"], Some("alice"))
            ),
            (
                3,
                EntryKind::System,
                "alice",
                30,
                change(SystemEvent::MemberLeft, &["alice"], Some("alice"))
            ),
            // The server's entry: sent by the user it concerns.
            (4, EntryKind::System, "bob", 30, promotion),
        ]
    );
    // AND they are the server's, with distinct ids, and no state of a message
    for m in &entries {
        assert!(m.origin_connection.is_none(), "{m:?}");
        assert_eq!(m.state, Default::default());
    }
    let ids: std::collections::HashSet<&str> =
        entries.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), 4);
}

pub async fn a_hundred_users_are_added_at_once(store: S) {
    // GIVEN a group of one with a message
    let id = group(&store, &["alice"], 1).await;
    send(&store, &id, "alice", "m", 10).await;
    let names: Vec<String> = (0..100).map(|i| format!("user-{i:03}")).collect();
    let hundred: Vec<&str> = names.iter().map(String::as_str).collect();
    // WHEN alice adds 100 users in one call
    let added = add(&store, &id, &hundred, "alice", 20).await;
    // THEN all are added by one entry naming them in order
    assert_eq!(added, users(&hundred));
    let entry = entry_at(&store, &id, 2).await;
    assert_eq!(
        *system(&entry),
        change(SystemEvent::MemberAdded, &hundred, Some("alice"))
    );
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!((conv.last_seq, conv.member_count), (2, 101));
    // AND every one of them is a member from the entry on
    let members = store.members(&id, None, 1000).await.unwrap();
    assert_eq!(members.len(), 101);
    for m in members.iter().filter(|m| m.user_id.as_str() != "alice") {
        assert_eq!(
            (m.delivered_up_to, m.read_up_to, m.read_messages, m.role),
            (2, 2, 1, Role::Member),
            "{}",
            m.user_id
        );
    }
    // AND the last of them can send
    send(&store, &id, "user-099", "hi", 30).await;
    // AND adding them again appends nothing
    assert!(add(&store, &id, &hundred, "alice", 40).await.is_empty());
    assert_eq!(last_seq(&store, &id).await, 3);
}

pub async fn changes_racing_sends_each_append_one_entry_without_gaps(store: S) {
    // GIVEN alice (admin) and bob
    let id = group(&store, &["alice", "bob"], 1).await;
    // WHEN bob sends 8 messages while alice adds 4 users one by one and removes 2 of them
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (store, id) = (store.clone(), id.clone());
        tasks.spawn(async move {
            send(&store, &id, "bob", &format!("m{i}"), 10).await;
        });
    }
    for i in 0..4 {
        let (store, id) = (store.clone(), id.clone());
        tasks.spawn(async move {
            let who = format!("new-{i}");
            add(&store, &id, &[who.as_str()], "alice", 10).await;
            if i < 2 {
                store
                    .remove_member(&id, &user(&who), &by("alice", 10))
                    .await
                    .unwrap()
                    .expect("just added");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    // THEN every seq from 1 to 14 holds one entry: 8 messages and 6 changes
    let entries = read_all(&store, &id, "alice").await;
    let seqs: Vec<Seq> = entries.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=14).collect::<Vec<_>>());
    let events: Vec<SystemEvent> = entries
        .iter()
        .filter_map(|m| match &m.entry {
            Entry::System(c) => Some(c.event),
            _ => None,
        })
        .collect();
    let count = |e: SystemEvent| events.iter().filter(|x| **x == e).count();
    assert_eq!(
        (
            count(SystemEvent::MemberAdded),
            count(SystemEvent::MemberRemoved)
        ),
        (4, 2)
    );
    // AND the counts are the changes' and the messages'
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!(
        (conv.last_seq, conv.member_count, conv.message_count),
        (14, 4, 8)
    );
}

pub async fn a_role_change_appends_role_changed_and_the_last_admin_stays(store: S) {
    use chat_shared::ports::RoleOutcome;
    // GIVEN alice (admin) and bob
    let id = group(&store, &["alice", "bob"], 1).await;
    // WHEN alice makes bob an admin
    let RoleOutcome::Set(bob, true) = store
        .set_role(&id, &user("bob"), Role::Admin, &by("alice", 10))
        .await
        .unwrap()
    else {
        panic!("bob is promoted")
    };
    // THEN bob is an admin, and the change is entry 1, by alice
    assert_eq!(bob.role, Role::Admin);
    assert_eq!(last_seq(&store, &id).await, 1);
    let entry = entry_at(&store, &id, 1).await;
    assert_eq!(
        system(&entry),
        &SystemChange {
            role: Some("admin".into()),
            ..change(SystemEvent::RoleChanged, &["bob"], Some("alice"))
        }
    );
    // AND the same role again changes nothing and appends nothing
    assert!(matches!(
        store
            .set_role(&id, &user("bob"), Role::Admin, &by("alice", 20))
            .await
            .unwrap(),
        RoleOutcome::Set(_, false)
    ));
    // AND one of two admins may step down, the last may not
    assert!(matches!(
        store
            .set_role(&id, &user("alice"), Role::Member, &by("bob", 30))
            .await
            .unwrap(),
        RoleOutcome::Set(_, true)
    ));
    assert_eq!(
        store
            .set_role(&id, &user("bob"), Role::Member, &by("bob", 40))
            .await
            .unwrap(),
        RoleOutcome::LastAdmin
    );
    assert_eq!(
        store
            .set_role(&id, &user("zed"), Role::Admin, &by("bob", 50))
            .await
            .unwrap(),
        RoleOutcome::NotMember
    );
    assert_eq!(
        last_seq(&store, &id).await,
        2,
        "no entry for what changed nothing"
    );
}

/// A details change of the name only.
pub(crate) fn renaming(name: &str) -> DetailsChange {
    DetailsChange {
        name: Some(name.into()),
        avatar: None,
    }
}

/// The group a details change left, when it was made.
pub(crate) fn set(outcome: DetailsOutcome) -> chat_shared::ports::ConversationRecord {
    match outcome {
        DetailsOutcome::Set { conversation, .. } => conversation,
        other => panic!("not changed: {other:?}"),
    }
}

pub async fn a_rename_appends_details_changed_once(store: S) {
    // GIVEN a group named "g"
    let id = group(&store, &["alice", "bob"], 1).await;
    // WHEN alice renames it, twice to the same name
    let renamed = set(store
        .set_details(&id, &renaming("Crew"), &by("alice", 10))
        .await
        .unwrap());
    let again = set(store
        .set_details(&id, &renaming("Crew"), &by("alice", 20))
        .await
        .unwrap());
    // THEN it is named so, with one `details_changed` entry holding both details
    assert_eq!((renamed.name.as_deref(), again.last_seq), (Some("Crew"), 1));
    let stored = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!((stored.name.as_deref(), stored.last_seq), (Some("Crew"), 1));
    assert_eq!(
        system(&entry_at(&store, &id, 1).await),
        &SystemChange {
            name: Some("Crew".into()),
            ..change(SystemEvent::DetailsChanged, &[], Some("alice"))
        }
    );
    // AND a conversation that does not exist is not renamed
    let missing = chat_shared::domain::new_conversation_id();
    assert_eq!(
        store
            .set_details(&missing, &renaming("x"), &by("alice", 30))
            .await
            .unwrap(),
        DetailsOutcome::NoConversation
    );
}

pub async fn the_last_message_skips_other_kinds_and_expired_ones(store: S) {
    // GIVEN a group with no message yet
    let id = group(&store, &["alice", "bob"], 1).await;
    assert_eq!(store.last_message(&id, 0).await.unwrap(), None);
    // WHEN a message at 10, another at 20, then a system entry at 30
    send(&store, &id, "alice", "a", 10).await;
    let b = send(&store, &id, "bob", "b", 20).await;
    add(&store, &id, &["carol"], "alice", 30).await;
    // THEN the last message is the one at 20, behind the system entry
    let last = store.last_message(&id, 0).await.unwrap().unwrap();
    assert_eq!((last.seq, last.entry.kind()), (b, EntryKind::Message));
    // AND nothing when every message is older than what is retained
    assert_eq!(store.last_message(&id, 25).await.unwrap(), None);
}
