//! The cases of entries (PROTOCOL.md 8): edits, deletes, reactions, their rules, the
//! current state of messages, unread counts and the conversation order. GIVEN/WHEN/THEN
//! in each.

use chat_shared::ids::{ConversationId, Millis, Seq};
use chat_shared::ports::{
    AppendOutcome, ConversationCursor, ConversationRecord, EntryRules, MemberRecord, MessageRecord,
    NewMessage, ReactionSummary, Refusal,
};
use chat_shared::protocol::{Content, Entry};

use crate::cases::{S, by, group, message, query, user, users};

/// An entry of `sender` with client id `cmid` at `now`.
fn new_entry(
    conversation: &ConversationId,
    sender: &str,
    cmid: &str,
    now: Millis,
    entry: Entry,
) -> NewMessage {
    NewMessage {
        entry,
        ..message(conversation, sender, cmid, now)
    }
}

fn text(s: &str) -> Content {
    Content::text(s)
}

fn edit(target_seq: Seq, s: &str) -> Entry {
    Entry::Edit {
        target_seq,
        content: Some(text(s)),
    }
}

fn delete(target_seq: Seq) -> Entry {
    Entry::Delete { target_seq }
}

fn react(target_seq: Seq, emoji: &str, removed: bool) -> Entry {
    Entry::Reaction {
        target_seq,
        emoji: emoji.into(),
        removed,
    }
}

fn reply(s: &str, to: Seq) -> Entry {
    Entry::Message {
        content: Some(text(s)),
        reply_to: Some(to),
    }
}

async fn outcome(store: &S, new: &NewMessage) -> AppendOutcome {
    store.append_message(new).await.unwrap()
}

/// Appends an entry that must be stored; its record.
async fn stored(store: &S, new: NewMessage) -> MessageRecord {
    match outcome(store, &new).await {
        AppendOutcome::Stored(m) => m,
        other => panic!("{:?} should be stored, got {other:?}", new.entry),
    }
}

/// Appends an entry that must be refused; the refusal.
async fn refused(store: &S, new: NewMessage) -> Refusal {
    match outcome(store, &new).await {
        AppendOutcome::Refused(r) => r,
        other => panic!("{:?} should be refused, got {other:?}", new.entry),
    }
}

async fn send(store: &S, id: &ConversationId, sender: &str, cmid: &str, now: Millis) -> Seq {
    stored(store, message(id, sender, cmid, now)).await.seq
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

async fn read_one(store: &S, id: &ConversationId, viewer: &str, seq: Seq) -> MessageRecord {
    let (mut entries, _) = store
        .messages(
            id,
            &user(viewer),
            query(Some(seq - 1), Some(seq + 1), 1, false),
        )
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "entry {seq}");
    entries.remove(0)
}

async fn last_seq(store: &S, id: &ConversationId) -> Seq {
    store.conversation(id).await.unwrap().unwrap().last_seq
}

fn summary(emoji: &str, count: u64, who: &[&str], mine: bool) -> ReactionSummary {
    ReactionSummary {
        emoji: emoji.into(),
        count,
        user_ids: users(who),
        mine,
    }
}

fn content_of(m: &MessageRecord) -> Option<String> {
    m.entry.content().map(|c| c.text.clone())
}

pub async fn every_entry_kind_round_trips_and_messages_come_in_their_current_state(store: S) {
    // GIVEN a group of alice (admin) and bob
    let id = group(&store, &["alice", "bob"], 1).await;
    // WHEN they send, reply, edit, react and delete
    let first = send(&store, &id, "alice", "m1", 100).await;
    let second = stored(&store, new_entry(&id, "bob", "m2", 200, reply("re", first))).await;
    let edited = stored(
        &store,
        new_entry(&id, "alice", "e1", 300, edit(first, "v2")),
    )
    .await;
    let reaction = stored(
        &store,
        new_entry(&id, "bob", "r1", 400, react(first, "👍", false)),
    )
    .await;
    let deleted = stored(
        &store,
        new_entry(&id, "alice", "d1", 500, delete(second.seq)),
    )
    .await;
    // THEN each entry is stored with its kind at the next seq
    assert_eq!(
        (first, second.seq, edited.seq, reaction.seq, deleted.seq),
        (1, 2, 3, 4, 5)
    );
    assert_eq!(edited.entry, edit(1, "v2"));
    assert_eq!(reaction.entry, react(1, "👍", false));
    assert_eq!(deleted.entry, delete(2));
    // AND reads return every entry, messages in their current state
    let all = read_all(&store, &id, "bob").await;
    assert_eq!(all.len(), 5);
    assert_eq!(all[2], edited);
    assert_eq!(all[3], reaction);
    assert_eq!(all[4], deleted);
    let m1 = &all[0];
    assert_eq!(content_of(m1).as_deref(), Some("v2"));
    assert_eq!(m1.state.edited_at, Some(300));
    assert_eq!(m1.state.deleted_by, None);
    assert_eq!(m1.state.reactions, vec![summary("👍", 1, &["bob"], true)]);
    let m2 = &all[1];
    assert_eq!(
        (&m2.entry, &m2.state.deleted_by),
        (
            &Entry::Message {
                content: None,
                reply_to: Some(1)
            },
            &Some(user("alice"))
        )
    );
    assert_eq!(m2.timestamp, 200, "a deleted message keeps its time");
    // AND only messages moved the conversation's order and count
    let (conv, alice) = store
        .membership(&id, &user("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (conv.last_seq, conv.message_count, conv.last_message_at),
        (5, 2, 200)
    );
    assert_eq!((alice.read_up_to, alice.read_messages), (1, 1));
}

pub async fn entry_times_never_decrease_and_only_messages_move_the_order(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    send(&store, &id, "alice", "m1", 100).await;
    // WHEN a reaction comes at 300, then a message stamped earlier by a slower clock
    let r = stored(
        &store,
        new_entry(&id, "bob", "r", 300, react(1, "👍", false)),
    )
    .await;
    let m = stored(&store, message(&id, "bob", "m2", 250)).await;
    // THEN the message's time is not before the reaction's
    assert_eq!((r.timestamp, m.timestamp), (300, 300));
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!(conv.last_message_at, 300);
    // AND a reaction after it moves the log, not the order
    stored(
        &store,
        new_entry(&id, "alice", "r2", 900, react(1, "❤️", false)),
    )
    .await;
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!((conv.last_seq, conv.last_message_at), (4, 300));
}

pub async fn a_delete_erases_the_message_and_its_edits(store: S) {
    // GIVEN a message edited twice and reacted to
    let id = group(&store, &["alice", "bob"], 1).await;
    let m = send(&store, &id, "alice", "m", 100).await;
    stored(
        &store,
        new_entry(&id, "alice", "e1", 110, edit(m, "second")),
    )
    .await;
    stored(&store, new_entry(&id, "alice", "e2", 120, edit(m, "third"))).await;
    stored(
        &store,
        new_entry(&id, "bob", "r", 130, react(m, "👍", false)),
    )
    .await;
    // WHEN bob may not delete it, and alice does
    assert!(matches!(
        refused(&store, new_entry(&id, "bob", "d0", 140, delete(m))).await,
        Refusal::NotAllowed(_)
    ));
    stored(&store, new_entry(&id, "alice", "d", 150, delete(m))).await;
    // THEN the message and its edits hold no content, no edit time, no reactions
    let all = read_all(&store, &id, "bob").await;
    assert_eq!(all.len(), 5);
    let target = &all[0];
    assert_eq!((content_of(target), target.state.edited_at), (None, None));
    assert_eq!(target.state.deleted_by, Some(user("alice")));
    assert!(target.state.reactions.is_empty());
    assert_eq!(
        all[1].entry,
        Entry::Edit {
            target_seq: 1,
            content: None
        }
    );
    assert_eq!(
        all[2].entry,
        Entry::Edit {
            target_seq: 1,
            content: None
        }
    );
    // (A retry of an edit still finds it by its clientMessageId, for its ack, which
    // carries no content: see `MessageStore::find_by_client_id`.)
    assert!(
        store
            .find_by_client_id(&id, &user("alice"), "e1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .reactors(&id, m, "👍", None, 10)
            .await
            .unwrap()
            .is_empty(),
        "its reactions are dropped"
    );
    // AND edits and reactions are refused from now on, with no entry
    let before = last_seq(&store, &id).await;
    assert!(matches!(
        refused(&store, new_entry(&id, "alice", "e3", 160, edit(m, "back"))).await,
        Refusal::NotAllowed(_)
    ));
    assert!(matches!(
        refused(
            &store,
            new_entry(&id, "bob", "r2", 160, react(m, "❤️", false))
        )
        .await,
        Refusal::NotAllowed(_)
    ));
    assert_eq!(last_seq(&store, &id).await, before);
    // AND deleting again appends an entry that changes nothing
    let twice = stored(&store, new_entry(&id, "alice", "d2", 170, delete(m))).await;
    assert_eq!(twice.seq, before + 1);
    let target = read_one(&store, &id, "alice", m).await;
    assert_eq!(target.state.deleted_by, Some(user("alice")));
}

pub async fn a_group_admin_may_delete_any_message(store: S) {
    let id = group(&store, &["alice", "bob", "carol"], 1).await;
    let m = send(&store, &id, "bob", "m", 100).await;
    assert!(matches!(
        refused(&store, new_entry(&id, "carol", "d", 110, delete(m))).await,
        Refusal::NotAllowed(_)
    ));
    stored(&store, new_entry(&id, "alice", "d", 120, delete(m))).await;
    let target = read_one(&store, &id, "bob", m).await;
    assert_eq!(target.state.deleted_by, Some(user("alice")));
}

pub async fn rules_refuse_with_no_entry(store: S) {
    // GIVEN alice's message, bob's reaction to it
    let id = group(&store, &["alice", "bob"], 1).await;
    let m = send(&store, &id, "alice", "m", 1_000).await;
    let r = stored(
        &store,
        new_entry(&id, "bob", "r", 1_100, react(m, "👍", false)),
    )
    .await;
    let before = last_seq(&store, &id).await;
    let refusal = |sender: &'static str, now, entry| {
        let (store, id) = (store.clone(), id.clone());
        async move { refused(&store, new_entry(&id, sender, "x", now, entry)).await }
    };
    // THEN each broken rule is refused as its kind
    assert!(matches!(
        refusal("bob", 1_200, edit(m, "mine")).await,
        Refusal::NotAllowed(_)
    ));
    assert_eq!(
        refusal("alice", 1_200, edit(99, "gone")).await,
        Refusal::NoTarget
    );
    assert_eq!(
        refusal("alice", 1_200, edit(r.seq, "a reaction")).await,
        Refusal::NoTarget,
        "only a message entry is a target"
    );
    assert_eq!(
        refusal("bob", 1_200, react(r.seq, "👍", false)).await,
        Refusal::NoTarget
    );
    assert!(matches!(
        refusal("bob", 1_200, reply("re", 99)).await,
        Refusal::Invalid(_)
    ));
    let other_type = Entry::Edit {
        target_seq: m,
        content: Some(Content {
            kind: "attachment".into(),
            text: "caption".into(),
            media: None,
        }),
    };
    assert!(matches!(
        refusal("alice", 1_200, other_type).await,
        Refusal::Invalid(_)
    ));
    // AND the time rules: an edit window, and an expired target
    let late = NewMessage {
        rules: EntryRules {
            retained_since: i64::MIN,
            edit_window_ms: 500,
        },
        ..new_entry(&id, "alice", "late", 1_600, edit(m, "late"))
    };
    assert!(matches!(
        refused(&store, late).await,
        Refusal::NotAllowed(_)
    ));
    let expired = NewMessage {
        rules: EntryRules {
            retained_since: 1_001,
            edit_window_ms: 0,
        },
        ..new_entry(&id, "bob", "old", 1_600, react(m, "❤️", false))
    };
    assert_eq!(refused(&store, expired).await, Refusal::NoTarget);
    // AND nothing was appended
    assert_eq!(last_seq(&store, &id).await, before);
    assert!(
        store
            .find_by_client_id(&id, &user("alice"), "x")
            .await
            .unwrap()
            .is_none()
    );
    // AND a non-member is not a member, whatever the entry
    assert_eq!(
        outcome(
            &store,
            &new_entry(&id, "mallory", "x", 1_200, react(m, "👍", false))
        )
        .await,
        AppendOutcome::NotMember
    );
}

pub async fn a_message_is_edited_at_most_50_times(store: S) {
    let id = group(&store, &["alice"], 1).await;
    let m = send(&store, &id, "alice", "m", 100).await;
    for i in 0..50 {
        stored(
            &store,
            new_entry(
                &id,
                "alice",
                &format!("e{i}"),
                200 + i,
                edit(m, &format!("v{i}")),
            ),
        )
        .await;
    }
    let before = last_seq(&store, &id).await;
    assert!(matches!(
        refused(
            &store,
            new_entry(&id, "alice", "e50", 300, edit(m, "one more"))
        )
        .await,
        Refusal::TooMany(_)
    ));
    assert_eq!(last_seq(&store, &id).await, before);
    let target = read_one(&store, &id, "alice", m).await;
    assert_eq!(content_of(&target).as_deref(), Some("v49"));
    assert_eq!(target.state.edited_at, Some(249));
    // AND a delete still erases all 50
    stored(&store, new_entry(&id, "alice", "d", 400, delete(m))).await;
    let all = read_all(&store, &id, "alice").await;
    assert!(all.iter().all(|e| e.entry.content().is_none()));
}

pub async fn reactions_are_sets_of_at_most_50_emoji(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    let m = send(&store, &id, "alice", "m", 100).await;
    // WHEN bob adds 👍 twice and removes ❤️ he never added
    let a = stored(
        &store,
        new_entry(&id, "bob", "r1", 110, react(m, "👍", false)),
    )
    .await;
    let b = stored(
        &store,
        new_entry(&id, "bob", "r2", 120, react(m, "👍", false)),
    )
    .await;
    let c = stored(
        &store,
        new_entry(&id, "bob", "r3", 130, react(m, "❤️", true)),
    )
    .await;
    // THEN each appends its entry, and the set holds 👍 once
    assert_eq!((a.seq, b.seq, c.seq), (2, 3, 4));
    let target = read_one(&store, &id, "alice", m).await;
    assert_eq!(
        target.state.reactions,
        vec![summary("👍", 1, &["bob"], false)]
    );
    // WHEN alice fills the message up to 50 distinct emoji
    for i in 0..49 {
        let emoji = format!("e{i}");
        stored(
            &store,
            new_entry(&id, "alice", &emoji, 200, react(m, &emoji, false)),
        )
        .await;
    }
    let before = last_seq(&store, &id).await;
    // THEN a 51st emoji is refused with no entry
    assert!(matches!(
        refused(
            &store,
            new_entry(&id, "bob", "r51", 300, react(m, "🎉", false))
        )
        .await,
        Refusal::TooMany(_)
    ));
    assert_eq!(last_seq(&store, &id).await, before);
    // AND one of the 50 may still be added by someone else, or removed
    stored(
        &store,
        new_entry(&id, "bob", "r52", 310, react(m, "e7", false)),
    )
    .await;
    stored(
        &store,
        new_entry(&id, "bob", "r53", 320, react(m, "👍", true)),
    )
    .await;
    // AND once 👍 has no reactor left, there is room for a new emoji
    stored(
        &store,
        new_entry(&id, "bob", "r54", 330, react(m, "🎉", false)),
    )
    .await;
    let target = read_one(&store, &id, "bob", m).await;
    assert_eq!(target.state.reactions.len(), 50);
    assert!(!target.state.reactions.iter().any(|r| r.emoji == "👍"));
    let e7 = target
        .state
        .reactions
        .iter()
        .find(|r| r.emoji == "e7")
        .unwrap();
    assert_eq!((e7.count, e7.mine), (2, true));
}

pub async fn mine_is_the_viewers_and_emoji_come_in_order_of_first_reaction(store: S) {
    let id = group(&store, &["alice", "bob", "carol"], 1).await;
    let m = send(&store, &id, "alice", "m", 100).await;
    let other = send(&store, &id, "alice", "n", 100).await;
    stored(
        &store,
        new_entry(&id, "alice", "r1", 110, react(m, "👍", false)),
    )
    .await;
    stored(
        &store,
        new_entry(&id, "bob", "r2", 120, react(m, "❤️", false)),
    )
    .await;
    stored(
        &store,
        new_entry(&id, "carol", "r3", 130, react(m, "👍", false)),
    )
    .await;
    stored(
        &store,
        new_entry(&id, "bob", "r4", 140, react(other, "👍", false)),
    )
    .await;
    // THEN each viewer sees their own reactions as theirs
    let seen = |viewer: &'static str| {
        let (store, id) = (store.clone(), id.clone());
        async move { read_one(&store, &id, viewer, m).await.state.reactions }
    };
    assert_eq!(
        seen("alice").await,
        vec![
            summary("👍", 2, &["alice", "carol"], true),
            summary("❤️", 1, &["bob"], false)
        ]
    );
    assert_eq!(
        seen("bob").await,
        vec![
            summary("👍", 2, &["alice", "carol"], false),
            summary("❤️", 1, &["bob"], true)
        ]
    );
    let all = read_all(&store, &id, "bob").await;
    assert_eq!(
        all[1].state.reactions,
        vec![summary("👍", 1, &["bob"], true)]
    );
    // WHEN the first 👍 is taken back, 👍's earliest reaction is carol's, after ❤️
    stored(
        &store,
        new_entry(&id, "alice", "r5", 150, react(m, "👍", true)),
    )
    .await;
    assert_eq!(
        seen("carol").await,
        vec![
            summary("❤️", 1, &["bob"], false),
            summary("👍", 1, &["carol"], true)
        ]
    );
}

pub async fn first_reactors_refill_and_reactors_page_by_user_id(store: S) {
    let names = ["erin", "dave", "carol", "bob", "alice"];
    let mut members = vec!["owner"];
    members.extend(names);
    let id = group(&store, &members, 1).await;
    let m = send(&store, &id, "owner", "m", 100).await;
    for (i, name) in names.iter().enumerate() {
        stored(
            &store,
            new_entry(&id, name, "r", 110 + i as i64, react(m, "👍", false)),
        )
        .await;
    }
    let shown = |s: &S| {
        let (store, id) = (s.clone(), id.clone());
        async move { read_one(&store, &id, "owner", m).await.state.reactions }
    };
    assert_eq!(
        shown(&store).await,
        vec![summary("👍", 5, &["erin", "dave", "carol"], false)]
    );
    // WHEN dave, one of the three shown, takes his back
    stored(
        &store,
        new_entry(&id, "dave", "r2", 200, react(m, "👍", true)),
    )
    .await;
    // THEN the next earliest reactor fills his place
    assert_eq!(
        shown(&store).await,
        vec![summary("👍", 4, &["erin", "carol", "bob"], false)]
    );
    // AND when he reacts again he is the latest
    stored(
        &store,
        new_entry(&id, "dave", "r3", 210, react(m, "👍", false)),
    )
    .await;
    assert_eq!(
        shown(&store).await,
        vec![summary("👍", 5, &["erin", "carol", "bob"], false)]
    );
    // AND reactors page in userId order
    let page = |after: Option<&'static str>| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            store
                .reactors(&id, m, "👍", after.map(user).as_ref(), 2)
                .await
                .unwrap()
        }
    };
    assert_eq!(page(None).await, users(&["alice", "bob"]));
    assert_eq!(page(Some("bob")).await, users(&["carol", "dave"]));
    assert_eq!(page(Some("dave")).await, users(&["erin"]));
    assert!(page(Some("erin")).await.is_empty());
    assert!(
        store
            .reactors(&id, m, "❤️", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn unread_counts_only_messages(store: S) {
    // GIVEN alice's two messages, then an edit and bob's reaction
    let a = group(&store, &["alice", "bob"], 1).await;
    let b = group(&store, &["alice", "bob"], 1).await;
    let m = send(&store, &a, "alice", "m1", 10).await;
    send(&store, &a, "alice", "m2", 20).await;
    stored(&store, new_entry(&a, "alice", "e", 30, edit(m, "v2"))).await;
    stored(&store, new_entry(&a, "bob", "r", 40, react(m, "👍", false))).await;
    send(&store, &b, "alice", "b1", 50).await;
    // THEN bob has 3 unread (entries that are not messages do not count), alice none
    let unread = |who: &'static str, id: &ConversationId| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let (conv, me) = store.membership(&id, &user(who)).await.unwrap().unwrap();
            me.unread(&conv)
        }
    };
    assert_eq!(unread("bob", &a).await, 2);
    assert_eq!(store.total_unread(&user("bob")).await.unwrap(), 3);
    assert_eq!(store.total_unread(&user("alice")).await.unwrap(), 0);
    // WHEN bob reads all of a
    let last = last_seq(&store, &a).await;
    store
        .update_receipts(&a, &user("bob"), None, Some(last))
        .await
        .unwrap();
    assert_eq!(unread("bob", &a).await, 0);
    // AND alice reacts (not a message) and bob sends (his own)
    stored(
        &store,
        new_entry(&a, "alice", "r2", 60, react(m, "❤️", false)),
    )
    .await;
    send(&store, &a, "bob", "m3", 70).await;
    assert_eq!(unread("bob", &a).await, 0);
    assert_eq!(unread("alice", &a).await, 1, "bob's message");
    assert_eq!(store.total_unread(&user("bob")).await.unwrap(), 1);
}

pub async fn read_messages_count_the_messages_up_to_read_up_to(store: S) {
    // GIVEN m m r m e m (seqs 1-6: messages at 1, 2, 4, 6)
    let id = group(&store, &["alice", "bob"], 1).await;
    send(&store, &id, "alice", "m1", 10).await;
    send(&store, &id, "alice", "m2", 10).await;
    stored(
        &store,
        new_entry(&id, "alice", "r", 10, react(1, "👍", false)),
    )
    .await;
    send(&store, &id, "alice", "m3", 10).await;
    stored(&store, new_entry(&id, "alice", "e", 10, edit(1, "v2"))).await;
    send(&store, &id, "alice", "m4", 10).await;
    let bob = user("bob");
    // WHEN bob's read position moves through the log
    for (read_up_to, read_messages) in [(1, 1), (3, 2), (4, 3), (5, 3), (6, 4)] {
        let up = store
            .update_receipts(&id, &bob, None, Some(read_up_to))
            .await
            .unwrap()
            .unwrap();
        // THEN readMessages is the count of messages through it
        let (conv, me) = store.membership(&id, &bob).await.unwrap().unwrap();
        assert_eq!(
            (up.positions.read_up_to, me.read_messages),
            (read_up_to, read_messages),
            "read up to {read_up_to}"
        );
        assert_eq!(me.unread(&conv), 4 - read_messages);
    }
    // AND a delivery alone leaves it
    let up = store
        .update_receipts(&id, &bob, Some(6), None)
        .await
        .unwrap()
        .unwrap();
    assert!(!up.changed);
}

pub async fn members_join_having_read_what_came_before(store: S) {
    let id = group(&store, &["alice"], 1).await;
    for i in 0..3 {
        send(&store, &id, "alice", &format!("m{i}"), 10).await;
    }
    stored(
        &store,
        new_entry(&id, "alice", "r", 20, react(1, "👍", false)),
    )
    .await;
    store
        .add_members(&id, &users(&["carol"]), 100, &by("alice", 30))
        .await
        .unwrap();
    let (conv, carol) = store
        .membership(&id, &user("carol"))
        .await
        .unwrap()
        .unwrap();
    // (her positions at the member_added entry, seq 5, after 3 messages)
    assert_eq!((carol.read_up_to, carol.read_messages), (5, 3));
    assert_eq!(carol.unread(&conv), 0);
    send(&store, &id, "alice", "m3", 40).await;
    assert_eq!(store.total_unread(&user("carol")).await.unwrap(), 1);
}

pub async fn conversations_order_by_the_later_of_last_message_and_joining(store: S) {
    // GIVEN a with carol since 100 and a message at 400; b without carol, created at 200
    let a = group(&store, &["alice", "carol"], 100).await;
    let b = group(&store, &["alice"], 200).await;
    send(&store, &a, "alice", "m", 400).await;
    // WHEN carol is added to b at 500, and someone reacts in a at 600
    store
        .add_members(&b, &users(&["carol"]), 100, &by("alice", 500))
        .await
        .unwrap();
    stored(
        &store,
        new_entry(&a, "alice", "r", 600, react(1, "👍", false)),
    )
    .await;
    // THEN carol's list has b (joined at 500) before a (message at 400)
    let ids = |rows: Vec<(ConversationRecord, MemberRecord)>| {
        rows.into_iter().map(|(c, _)| c.id).collect::<Vec<_>>()
    };
    let first = store
        .user_conversations(&user("carol"), None, 1)
        .await
        .unwrap();
    assert_eq!(ids(first), std::slice::from_ref(&b));
    let cursor = ConversationCursor {
        last_message_at: 500,
        conversation_id: b.clone(),
    };
    let rest = store
        .user_conversations(&user("carol"), Some(&cursor), 10)
        .await
        .unwrap();
    assert_eq!(ids(rest), std::slice::from_ref(&a));
    // AND alice, there since creation, sees a (400) before b (200)
    let alice = store
        .user_conversations(&user("alice"), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(alice), [a.clone(), b.clone()]);
    // AND a new message in a brings it back to the top for carol
    send(&store, &a, "alice", "m2", 700).await;
    let carol = store
        .user_conversations(&user("carol"), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(carol), [a, b]);
}

pub async fn retries_of_every_kind_are_idempotent(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    let m = send(&store, &id, "alice", "m", 100).await;
    let entries = [
        ("alice", "e", edit(m, "v2")),
        ("bob", "r", react(m, "👍", false)),
        ("bob", "u", react(m, "👍", true)),
        ("alice", "reply", reply("re", m)),
        ("alice", "d", delete(m)),
    ];
    let mut originals = Vec::new();
    for (sender, cmid, entry) in &entries {
        originals.push(stored(&store, new_entry(&id, sender, cmid, 200, entry.clone())).await);
    }
    let before = last_seq(&store, &id).await;
    // WHEN every one is retried, after the target was deleted (an edit or reaction now
    // would be refused), and one retry names another kind under the same id
    for ((sender, cmid, entry), original) in entries.iter().zip(&originals) {
        let retry = outcome(&store, &new_entry(&id, sender, cmid, 300, entry.clone())).await;
        // THEN each gets its original (as it is now: the edit's content is erased)
        let AppendOutcome::Duplicate(found) = retry else {
            panic!("{cmid}: a retry is a duplicate, got {retry:?}");
        };
        assert_eq!(
            (
                found.seq,
                &found.message_id,
                found.entry.kind(),
                found.timestamp
            ),
            (
                original.seq,
                &original.message_id,
                original.entry.kind(),
                original.timestamp
            ),
            "{cmid}"
        );
    }
    let other_kind = outcome(&store, &new_entry(&id, "bob", "r", 300, delete(m))).await;
    assert_eq!(other_kind, AppendOutcome::Duplicate(originals[1].clone()));
    // AND nothing was appended
    assert_eq!(last_seq(&store, &id).await, before);
}
