//! The cases: what every `Store` adapter must do. GIVEN/WHEN/THEN in each.

use std::collections::HashSet;
use std::sync::Arc;

use chat_shared::domain::new_conversation_id;
use chat_shared::ids::{ConversationId, DeviceId, Millis, UserId};
use chat_shared::ports::CounterHint;
use chat_shared::ports::{
    AddMembersOutcome, AppendOutcome, Change, ConnectionRecord, ConversationCursor,
    ConversationKind, DeviceRecord, MessageQuery, NewConversation, NewMessage, Platform,
    PresenceClaim, Role, Store,
};
use chat_shared::protocol::PresenceStatus;

pub(crate) type S = Arc<dyn Store>;

pub(crate) fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub(crate) fn users(names: &[&str]) -> Vec<UserId> {
    names.iter().map(|n| user(n)).collect()
}

pub(crate) async fn group(store: &S, members: &[&str], now: Millis) -> ConversationId {
    let id = new_conversation_id();
    store
        .create_group(&NewConversation {
            id: id.clone(),
            kind: ConversationKind::Group,
            name: Some("Team".into()),
            now,
            members: users(members),
        })
        .await
        .unwrap();
    id
}

/// A change by `actor` at `now` (entries never expire).
pub(crate) fn by(actor: &str, now: Millis) -> Change {
    Change {
        actor: user(actor),
        now,
        expires_at: None,
    }
}

pub(crate) fn message(
    conversation: &ConversationId,
    sender: &str,
    cmid: &str,
    now: Millis,
) -> NewMessage {
    NewMessage {
        conversation_id: conversation.clone(),
        message_id: chat_shared::domain::new_message_id(),
        sender_id: user(sender),
        client_message_id: cmid.into(),
        entry: chat_shared::protocol::Entry::Message {
            content: Some(chat_shared::protocol::Content::text(format!(
                "text of {cmid}"
            ))),
            reply_to: None,
        },
        now,
        origin_connection: Some("conn-1".into()),
        expires_at: None,
        hint: None,
        rules: chat_shared::ports::EntryRules {
            retained_since: i64::MIN,
            edit_window_ms: 0,
        },
    }
}

async fn append(
    store: &S,
    conversation: &ConversationId,
    sender: &str,
    cmid: &str,
    now: Millis,
) -> u64 {
    match store
        .append_message(&message(conversation, sender, cmid, now))
        .await
        .unwrap()
    {
        AppendOutcome::Stored(m) | AppendOutcome::Duplicate(m) => m.seq,
        AppendOutcome::NotMember => panic!("{sender} is not a member"),
        AppendOutcome::Refused(r) => panic!("refused: {r:?}"),
    }
}

pub(crate) fn query(
    after: Option<u64>,
    before: Option<u64>,
    limit: u32,
    newest: bool,
) -> MessageQuery {
    MessageQuery {
        after,
        before,
        limit,
        newest,
        min_timestamp: i64::MIN,
    }
}

pub async fn direct_conversations_are_one_per_pair(store: S) {
    // GIVEN alice opens a direct conversation with bob
    let new = |members: &[&str]| NewConversation {
        id: new_conversation_id(),
        kind: ConversationKind::Direct,
        name: None,
        now: 10,
        members: users(members),
    };
    let (first, created) = store.create_direct(&new(&["alice", "bob"])).await.unwrap();
    assert!(created);
    // WHEN either of them opens it again, even concurrently
    let (ba, ab) = (new(&["bob", "alice"]), new(&["alice", "bob"]));
    let (a, b) = tokio::join!(store.create_direct(&ba), store.create_direct(&ab));
    // THEN they get the same conversation, not a new one
    for (again, created) in [a.unwrap(), b.unwrap()] {
        assert!(!created);
        assert_eq!(again.id, first.id);
    }
    let other = store
        .create_direct(&new(&["alice", "carol"]))
        .await
        .unwrap();
    assert!(other.1);
    assert_ne!(other.0.id, first.id);
    let (conv, me) = store
        .membership(&first.id, &user("bob"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (conv.kind, conv.member_count, conv.last_seq),
        (ConversationKind::Direct, 2, 0)
    );
    assert_eq!(me.role, Role::Member);
    assert!(
        store
            .membership(&first.id, &user("carol"))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn groups_list_members_by_user_id_with_paging(store: S) {
    // GIVEN a group created by zoe with members in non-alphabetical order
    let id = group(&store, &["zoe", "mike", "bob", "yann", "alice"], 5).await;
    let conv = store.conversation(&id).await.unwrap().unwrap();
    assert_eq!(
        (conv.member_count, conv.created_at, conv.last_message_at),
        (5, 5, 5)
    );
    assert_eq!(conv.name.as_deref(), Some("Team"));
    // WHEN the members are paged two at a time
    let mut seen = Vec::new();
    let mut after: Option<UserId> = None;
    loop {
        let page = store.members(&id, after.as_ref(), 2).await.unwrap();
        seen.extend(page.iter().map(|m| (m.user_id.to_string(), m.role)));
        if page.len() < 2 {
            break;
        }
        after = page.last().map(|m| m.user_id.clone());
    }
    // THEN every member comes once, in userId order, and the creator is admin
    let names: Vec<&str> = seen.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "mike", "yann", "zoe"]);
    assert!(
        seen.iter()
            .all(|(u, r)| (*r == Role::Admin) == (u == "zoe"))
    );
    assert!(
        store
            .conversation(&new_conversation_id())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn appends_sequence_from_one_and_retries_are_idempotent(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    // WHEN alice sends three messages, retrying the second
    let AppendOutcome::Stored(first) = store
        .append_message(&message(&id, "alice", "a", 100))
        .await
        .unwrap()
    else {
        panic!("stored")
    };
    let second = append(&store, &id, "alice", "b", 200).await;
    let retry = store
        .append_message(&message(&id, "alice", "b", 300))
        .await
        .unwrap();
    let third = append(&store, &id, "alice", "c", 50).await;
    // THEN seqs are 1, 2, 3; the retry is the original; time never goes backwards
    assert_eq!((first.seq, second, third), (1, 2, 3));
    let AppendOutcome::Duplicate(original) = retry else {
        panic!("a retry is a duplicate")
    };
    assert_eq!((original.seq, original.timestamp), (2, 200));
    assert_eq!(first.origin_connection.as_deref(), Some("conn-1"));
    let found = store
        .find_by_client_id(&id, &user("alice"), "b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, original);
    assert!(
        store
            .find_by_client_id(&id, &user("bob"), "b")
            .await
            .unwrap()
            .is_none()
    );
    // AND bob may reuse alice's clientMessageId: keys are per sender
    assert_eq!(append(&store, &id, "bob", "b", 400).await, 4);
    let (conv, alice) = store
        .membership(&id, &user("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((conv.last_seq, conv.last_message_at), (4, 400));
    assert_eq!((alice.delivered_up_to, alice.read_up_to), (3, 3));
    let (messages, _) = store
        .messages(&id, &user("alice"), query(None, None, 10, false))
        .await
        .unwrap();
    assert_eq!(
        messages[2].timestamp, 200,
        "timestamps within a conversation never decrease"
    );
    assert_eq!(messages[0], first);
}

pub async fn non_members_cannot_append(store: S) {
    let id = group(&store, &["alice"], 1).await;
    let outcome = store
        .append_message(&message(&id, "mallory", "x", 2))
        .await
        .unwrap();
    assert_eq!(outcome, AppendOutcome::NotMember);
    let missing = new_conversation_id();
    let outcome = store
        .append_message(&message(&missing, "alice", "x", 2))
        .await
        .unwrap();
    assert_eq!(outcome, AppendOutcome::NotMember);
    assert_eq!(store.conversation(&id).await.unwrap().unwrap().last_seq, 0);
}

pub async fn concurrent_senders_with_retries_get_seqs_one_to_n(store: S) {
    // GIVEN 6 senders in one group
    let senders = ["s0", "s1", "s2", "s3", "s4", "s5"];
    let id = group(&store, &senders, 1).await;
    let per_sender = 8;
    // WHEN each sends concurrently, every message twice at once (a retry racing its original)
    let mut tasks = Vec::new();
    for sender in senders {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..per_sender {
                let cmid = format!("{sender}-{i}");
                let (a, b) = tokio::join!(
                    append(&store, &id, sender, &cmid, 10),
                    append(&store, &id, sender, &cmid, 10)
                );
                assert_eq!(a, b, "a retry gets the original seq");
                acked.push(a);
            }
            acked
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let acked = t.await.unwrap();
        assert!(
            acked.windows(2).all(|w| w[0] < w[1]),
            "one sender's seqs increase"
        );
        all.extend(acked);
    }
    // THEN the seqs are exactly 1..N: no gap, no duplicate
    let n = (senders.len() * per_sender) as u64;
    all.sort_unstable();
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
    let (messages, more) = store
        .messages(&id, &user("alice"), query(None, None, 1000, false))
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let cmids: HashSet<&str> = messages
        .iter()
        .map(|m| m.client_message_id.as_str())
        .collect();
    assert_eq!(cmids.len() as u64, n);
    assert_eq!(store.conversation(&id).await.unwrap().unwrap().last_seq, n);
}

pub async fn message_queries_page_both_ways_and_respect_retention(store: S) {
    let id = group(&store, &["alice"], 1).await;
    for i in 1..=10 {
        append(&store, &id, "alice", &format!("m{i}"), i * 100).await;
    }
    let seqs =
        |m: &[chat_shared::ports::MessageRecord]| m.iter().map(|m| m.seq).collect::<Vec<_>>();
    // newest page
    let (m, more) = store
        .messages(&id, &user("alice"), query(None, None, 3, true))
        .await
        .unwrap();
    assert_eq!((seqs(&m), more), (vec![8, 9, 10], true));
    // older, before 8
    let (m, more) = store
        .messages(&id, &user("alice"), query(None, Some(8), 3, true))
        .await
        .unwrap();
    assert_eq!((seqs(&m), more), (vec![5, 6, 7], true));
    let (m, more) = store
        .messages(&id, &user("alice"), query(None, Some(3), 3, true))
        .await
        .unwrap();
    assert_eq!((seqs(&m), more), (vec![1, 2], false));
    // newer, after 6
    let (m, more) = store
        .messages(&id, &user("alice"), query(Some(6), None, 3, false))
        .await
        .unwrap();
    assert_eq!((seqs(&m), more), (vec![7, 8, 9], true));
    let (m, more) = store
        .messages(&id, &user("alice"), query(Some(9), None, 3, false))
        .await
        .unwrap();
    assert_eq!((seqs(&m), more), (vec![10], false));
    // a range
    let (m, more) = store
        .messages(&id, &user("alice"), query(Some(2), Some(6), 10, false))
        .await
        .unwrap();
    assert_eq!((seqs(&m), more), (vec![3, 4, 5], false));
    // retention: messages older than 450 are never returned
    let q = MessageQuery {
        min_timestamp: 450,
        ..query(None, None, 100, false)
    };
    let (m, _) = store.messages(&id, &user("alice"), q).await.unwrap();
    assert_eq!(seqs(&m), (5..=10).collect::<Vec<_>>());
    assert_eq!(store.first_retained_seq(&id, 450).await.unwrap(), Some(5));
    assert_eq!(store.first_retained_seq(&id, 5000).await.unwrap(), None);
}

pub async fn receipts_are_monotonic_clamped_and_read_implies_delivered(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    for i in 0..5 {
        append(&store, &id, "alice", &format!("m{i}"), 10).await;
    }
    let bob = user("bob");
    let p = |d, r| chat_shared::protocol::Positions {
        delivered_up_to: d,
        read_up_to: r,
    };
    let up = store
        .update_receipts(&id, &bob, Some(2), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((up.positions, up.changed), (p(2, 0), true));
    let up = store
        .update_receipts(&id, &bob, Some(1), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (up.positions, up.changed),
        (p(2, 0), false),
        "never backwards"
    );
    let up = store
        .update_receipts(&id, &bob, None, Some(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (up.positions, up.changed),
        (p(3, 3), true),
        "read implies delivered"
    );
    let up = store
        .update_receipts(&id, &bob, Some(99), Some(99))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(up.positions, p(5, 5), "clamped to lastSeq");
    let (_, me) = store.membership(&id, &bob).await.unwrap().unwrap();
    assert_eq!((me.delivered_up_to, me.read_up_to), (5, 5));
    assert!(
        store
            .update_receipts(&id, &user("carol"), Some(1), None)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn adding_members_respects_the_cap_and_ignores_existing_ones(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    append(&store, &id, "alice", "m", 10).await;
    // WHEN carol and an existing member are added under a cap of 3
    let out = store
        .add_members(&id, &users(&["carol", "bob", "carol"]), 3, &by("alice", 20))
        .await
        .unwrap();
    assert_eq!(out, AddMembersOutcome::Added(users(&["carol"])));
    // THEN carol starts at the seq of the entry that added her
    let (conv, carol) = store
        .membership(&id, &user("carol"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.member_count, 3);
    assert_eq!(
        (
            carol.delivered_up_to,
            carol.read_up_to,
            carol.role,
            carol.joined_at
        ),
        (2, 2, Role::Member, 20)
    );
    // AND a fourth does not fit
    let out = store
        .add_members(&id, &users(&["dave"]), 3, &by("alice", 30))
        .await
        .unwrap();
    assert_eq!(out, AddMembersOutcome::OverCap);
    assert!(
        store
            .membership(&id, &user("dave"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.conversation(&id).await.unwrap().unwrap().member_count,
        3
    );
}

pub async fn removing_the_last_admin_promotes_the_longest_standing_member(store: S) {
    let id = group(&store, &["alice"], 1).await;
    store
        .add_members(&id, &users(&["carol"]), 100, &by("alice", 10))
        .await
        .unwrap();
    store
        .add_members(&id, &users(&["bob"]), 100, &by("alice", 20))
        .await
        .unwrap();
    let removed = store
        .remove_member(&id, &user("alice"), &by("alice", 30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.promoted, Some(user("carol")));
    let (conv, carol) = store
        .membership(&id, &user("carol"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((conv.member_count, carol.role), (2, Role::Admin));
    // a non-admin leaving promotes nobody; removing twice finds nothing
    assert_eq!(
        store
            .remove_member(&id, &user("bob"), &by("bob", 40))
            .await
            .unwrap()
            .unwrap()
            .promoted,
        None
    );
    assert!(
        store
            .remove_member(&id, &user("bob"), &by("bob", 40))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.conversation(&id).await.unwrap().unwrap().member_count,
        1
    );
}

pub async fn user_conversations_are_ordered_by_last_message_with_a_cursor(store: S) {
    let a = group(&store, &["alice"], 100).await;
    let b = group(&store, &["alice"], 200).await;
    let c = group(&store, &["alice", "bob"], 300).await;
    append(&store, &a, "alice", "m", 400).await;
    // order: a (400), c (300), b (200)
    let page = store
        .user_conversations(&user("alice"), None, 2)
        .await
        .unwrap();
    let ids: Vec<_> = page.iter().map(|(c, _)| c.id.clone()).collect();
    assert_eq!(ids, [a.clone(), c.clone()]);
    let cursor = ConversationCursor {
        last_message_at: page[1].0.last_message_at,
        conversation_id: page[1].0.id.clone(),
    };
    let rest = store
        .user_conversations(&user("alice"), Some(&cursor), 2)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|(c, _)| c.id.clone()).collect::<Vec<_>>(),
        [b]
    );
    assert_eq!(rest[0].1.user_id, user("alice"));
    let bobs = store
        .user_conversations(&user("bob"), None, 10)
        .await
        .unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].0.id, c);
}

pub async fn typing_is_throttled_per_window(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    let alice = user("alice");
    let permit = |now| {
        let (store, id, alice) = (store.clone(), id.clone(), alice.clone());
        async move {
            store
                .typing_permit(&id, &alice, now, 1000, 2, now + 5000)
                .await
                .unwrap()
        }
    };
    assert_eq!(permit(10_000).await, Some(true));
    assert_eq!(permit(10_100).await, Some(true));
    assert_eq!(
        permit(10_200).await,
        Some(false),
        "a third in the same second is dropped"
    );
    assert_eq!(permit(11_000).await, Some(true), "a new window");
    let outsider = store
        .typing_permit(&id, &user("carol"), 12_000, 1000, 2, 17_000)
        .await
        .unwrap();
    assert_eq!(outsider, None);
}

pub async fn typing_stops_only_a_state_still_shown(store: S) {
    let id = group(&store, &["alice", "bob"], 1).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let stop = |who: &UserId, now| {
        let (store, id, who) = (store.clone(), id.clone(), who.clone());
        async move { store.typing_stop(&id, &who, now).await.unwrap() }
    };
    assert_eq!(stop(&bob, 1_000).await, Some(false), "never typed");
    assert_eq!(
        store
            .typing_permit(&id, &alice, 10_000, 1000, 2, 15_000)
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(stop(&alice, 12_000).await, Some(true), "ends a shown true");
    assert_eq!(stop(&alice, 12_001).await, Some(false), "already ended");
    store
        .typing_permit(&id, &alice, 20_000, 1000, 2, 25_000)
        .await
        .unwrap();
    assert_eq!(
        stop(&alice, 25_000).await,
        Some(false),
        "expired on its own"
    );
    store
        .typing_permit(&id, &alice, 20_100, 1000, 2, 25_100)
        .await
        .unwrap();
    assert_eq!(
        store
            .typing_permit(&id, &alice, 20_200, 1000, 2, 25_200)
            .await
            .unwrap(),
        Some(false),
        "over the cap"
    );
    assert_eq!(
        stop(&alice, 25_150).await,
        Some(false),
        "a refused true is not shown"
    );
    assert_eq!(stop(&user("carol"), 1_000).await, None, "not a member");
}

pub async fn presence_changes_are_announced_once_per_window(store: S) {
    use PresenceStatus::{Offline, Online};
    let claim = |status, now| {
        let store = store.clone();
        async move {
            store
                .claim_presence(&user("alice"), status, now, 1000)
                .await
                .unwrap()
        }
    };
    let settle = |status, now| {
        let store = store.clone();
        async move {
            store
                .settle_presence(&user("alice"), status, now)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim(Online, 10_000).await, PresenceClaim::Announce);
    let PresenceClaim::Defer { until } = claim(Offline, 10_200).await else {
        panic!("a change inside the window is held back");
    };
    // At the window's end (SQLite) or a window after the claim (DynamoDB, no read).
    assert!((11_000..=11_200).contains(&until), "settle at {until}");
    assert_eq!(
        claim(Online, 10_300).await,
        PresenceClaim::Skip,
        "one holder"
    );
    assert!(
        settle(Offline, until).await,
        "offline differs from the announced online"
    );
    assert!(!settle(Offline, until + 1).await, "nothing new to announce");
    // A flap inside the next window ends where it began: nothing to announce.
    assert!(matches!(
        claim(Online, until + 300).await,
        PresenceClaim::Defer { .. }
    ));
    assert!(!settle(Offline, until + 1_300).await);
    // After the window, at once; a holder that never settled blocks nothing after it.
    assert_eq!(claim(Online, 20_000).await, PresenceClaim::Announce);
    assert!(matches!(
        claim(Offline, 20_100).await,
        PresenceClaim::Defer { .. }
    ));
    assert_eq!(claim(Online, 30_000).await, PresenceClaim::Announce);
    assert!(matches!(
        claim(Offline, 30_100).await,
        PresenceClaim::Defer { .. }
    ));
    // Users are counted apart.
    assert_eq!(
        store
            .claim_presence(&user("bob"), Online, 30_200, 1000)
            .await
            .unwrap(),
        PresenceClaim::Announce
    );
}

pub async fn sends_are_counted_per_fixed_window(store: S) {
    let alice = user("alice");
    assert_eq!(store.count_send(&alice, 60_000).await.unwrap(), 1);
    assert_eq!(store.count_send(&alice, 60_000).await.unwrap(), 2);
    assert_eq!(store.count_send(&user("bob"), 60_000).await.unwrap(), 1);
    assert_eq!(
        store.count_send(&alice, 120_000).await.unwrap(),
        1,
        "a new window starts over"
    );
}

pub async fn connections_are_recorded_touched_and_deleted_once(store: S) {
    let alice = user("alice");
    let conn = |id: &str, device: Option<&str>| ConnectionRecord {
        connection_id: id.into(),
        user_id: alice.clone(),
        device_id: device.map(|d| DeviceId::parse(d).unwrap()),
        connected_at: 1_000,
        last_frame_at: 1_000,
        token_expires_at: 3_601_000,
    };
    store
        .put_connection(&conn("c1", Some("phone")))
        .await
        .unwrap();
    store.put_connection(&conn("c2", None)).await.unwrap();
    store.touch_connection("c1", &alice, 5_000).await.unwrap();
    let got = store.connection("c1").await.unwrap().unwrap();
    assert_eq!(got.last_frame_at, 5_000);
    assert_eq!(got.device_id.as_ref().map(DeviceId::as_str), Some("phone"));
    let mut all = store
        .connections_of(&users(&["alice", "bob"]))
        .await
        .unwrap();
    all.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
    assert_eq!(all.len(), 2);
    assert_eq!(all[1], conn("c2", None));
    let gone = store.delete_connection("c1").await.unwrap().unwrap();
    assert_eq!((gone.user_id, gone.last_frame_at), (alice.clone(), 5_000));
    assert!(store.delete_connection("c1").await.unwrap().is_none());
    assert!(store.connection("c1").await.unwrap().is_none());
    store.touch_connection("c1", &alice, 6_000).await.unwrap();
    assert_eq!(store.connections_of(&[alice]).await.unwrap().len(), 1);
}

pub async fn last_seen_only_moves_forward(store: S) {
    let alice = user("alice");
    store.set_last_seen(&alice, 500).await.unwrap();
    store.set_last_seen(&alice, 300).await.unwrap();
    let seen = store.last_seen(&users(&["alice", "bob"])).await.unwrap();
    assert_eq!(seen, vec![(alice, 500)]);
}

pub async fn a_revocation_only_moves_forward_and_is_the_users_own(store: S) {
    let (alice, bob) = (user("alice"), user("bob"));
    assert_eq!(store.sessions_revoked_before(&alice).await.unwrap(), None);
    store.revoke_sessions(&alice, 5_000).await.unwrap();
    store.revoke_sessions(&alice, 3_000).await.unwrap();
    assert_eq!(
        store.sessions_revoked_before(&alice).await.unwrap(),
        Some(5_000)
    );
    store.revoke_sessions(&alice, 9_000).await.unwrap();
    assert_eq!(
        store.sessions_revoked_before(&alice).await.unwrap(),
        Some(9_000)
    );
    assert_eq!(store.sessions_revoked_before(&bob).await.unwrap(), None);
    // The user's other records are untouched.
    store.set_last_seen(&alice, 700).await.unwrap();
    assert_eq!(store.last_seen(&[alice]).await.unwrap().len(), 1);
}

pub async fn devices_register_move_between_users_and_delete(store: S) {
    let device = |u: &str, d: &str, token: &str| DeviceRecord {
        user_id: user(u),
        device_id: DeviceId::parse(d).unwrap(),
        platform: Platform::Fcm,
        token: token.into(),
        endpoint: None,
        updated_at: 1,
    };
    store
        .put_device(&device("alice", "phone", "tok-1"))
        .await
        .unwrap();
    store
        .put_device(&device("alice", "tablet", "tok-2"))
        .await
        .unwrap();
    // re-registering updates the token
    store
        .put_device(&device("alice", "tablet", "tok-3"))
        .await
        .unwrap();
    // bob's phone takes over alice's token: it moves to bob
    store
        .put_device(&device("bob", "phone", "tok-1"))
        .await
        .unwrap();
    let all = store.devices_of(&users(&["alice", "bob"])).await.unwrap();
    let keys: Vec<(String, String, String)> = all
        .iter()
        .map(|d| {
            (
                d.user_id.to_string(),
                d.device_id.to_string(),
                d.token.clone(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("alice".into(), "tablet".into(), "tok-3".into()),
            ("bob".into(), "phone".into(), "tok-1".into())
        ]
    );
    assert!(
        store
            .delete_device(&user("alice"), &DeviceId::parse("tablet").unwrap())
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_device(&user("alice"), &DeviceId::parse("tablet").unwrap())
            .await
            .unwrap()
    );
    assert!(
        store
            .devices_of(&users(&["alice"]))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn contacts_and_shared_users_follow_membership(store: S) {
    group(&store, &["alice", "bob"], 1).await;
    group(&store, &["alice", "carol", "dave"], 1).await;
    group(&store, &["erin", "frank"], 1).await;
    let mut contacts = store.contacts(&user("alice"), 100).await.unwrap();
    contacts.sort();
    assert_eq!(contacts, users(&["bob", "carol", "dave"]));
    let mut small = store.contacts(&user("alice"), 2).await.unwrap();
    small.sort();
    assert_eq!(small, users(&["bob"]), "only conversations within the size");
    let mut shared = store
        .users_sharing_conversation(&user("alice"), &users(&["bob", "erin", "dave"]))
        .await
        .unwrap();
    shared.sort();
    assert_eq!(shared, users(&["bob", "dave"]));
}

pub async fn unread_totals_and_mute_flags(store: S) {
    let a = group(&store, &["alice", "bob"], 1).await;
    let b = group(&store, &["alice", "bob"], 1).await;
    for i in 0..3 {
        append(&store, &a, "alice", &format!("a{i}"), 10).await;
    }
    append(&store, &b, "alice", "b0", 10).await;
    assert_eq!(store.total_unread(&user("bob")).await.unwrap(), 4);
    assert_eq!(store.total_unread(&user("alice")).await.unwrap(), 0);
    store
        .update_receipts(&a, &user("bob"), None, Some(2))
        .await
        .unwrap();
    assert_eq!(store.total_unread(&user("bob")).await.unwrap(), 2);
    use chat_shared::ports::MUTED_FOREVER;
    assert!(
        store
            .set_muted(&a, &user("bob"), MUTED_FOREVER)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_muted(&a, &user("carol"), MUTED_FOREVER)
            .await
            .unwrap()
    );
    let (_, bob) = store.membership(&a, &user("bob")).await.unwrap().unwrap();
    assert!(bob.muted_at(i64::MAX - 1) && bob.mute_ends(0).is_none());
    // A timed mute ends by itself; 0 unmutes.
    assert!(store.set_muted(&a, &user("bob"), 500).await.unwrap());
    let (_, bob) = store.membership(&a, &user("bob")).await.unwrap().unwrap();
    assert!(bob.muted_at(499) && !bob.muted_at(500));
    assert_eq!(bob.mute_ends(100), Some(500));
    assert!(store.set_muted(&a, &user("bob"), 0).await.unwrap());
    let (_, bob) = store.membership(&a, &user("bob")).await.unwrap().unwrap();
    assert!(!bob.muted_at(0));
}

fn device_of(user_id: &str, device: &str) -> chat_shared::ports::PushedDevice {
    chat_shared::ports::PushedDevice {
        user_id: user(user_id),
        device_id: chat_shared::ids::DeviceId::parse(device).unwrap(),
    }
}

pub async fn pushes_are_recorded_as_sent_per_message_with_whom_they_reached(store: S) {
    let id = group(&store, &["alice"], 1).await;
    assert_eq!(store.pushes_sent(&id, 1).await.unwrap(), None);
    let pushed = [device_of("bob", "phone"), device_of("carol", "tablet")];
    store.record_pushes_sent(&id, 1, 10, &pushed).await.unwrap();
    assert_eq!(
        store.pushes_sent(&id, 1).await.unwrap(),
        Some(pushed.to_vec()),
        "a redelivery finds them, and a delete whom to reach"
    );
    store
        .record_pushes_sent(&id, 1, 20, &[device_of("dave", "phone")])
        .await
        .unwrap();
    assert_eq!(
        store.pushes_sent(&id, 1).await.unwrap(),
        Some(pushed.to_vec()),
        "recording twice is harmless: the first record stands"
    );
    store.record_pushes_sent(&id, 3, 30, &[]).await.unwrap();
    assert_eq!(store.pushes_sent(&id, 3).await.unwrap(), Some(vec![]));
    assert_eq!(store.pushes_sent(&id, 2).await.unwrap(), None);
}

pub async fn a_stale_counter_hint_costs_a_retry_not_a_wrong_seq(store: S) {
    let id = group(&store, &["alice"], 1).await;
    append(&store, &id, "alice", "a", 10).await;
    append(&store, &id, "alice", "b", 20).await;
    let stale = NewMessage {
        hint: Some(CounterHint {
            last_seq: 0,
            last_message_at: 1,
            message_count: 0,
        }),
        ..message(&id, "alice", "c", 30)
    };
    let AppendOutcome::Stored(m) = store.append_message(&stale).await.unwrap() else {
        panic!("stored")
    };
    assert_eq!((m.seq, m.timestamp), (3, 30));
    let fresh = NewMessage {
        hint: Some(CounterHint {
            last_seq: 3,
            last_message_at: 30,
            message_count: 3,
        }),
        ..message(&id, "alice", "d", 25)
    };
    let AppendOutcome::Stored(m) = store.append_message(&fresh).await.unwrap() else {
        panic!("stored")
    };
    assert_eq!((m.seq, m.timestamp), (4, 30), "time never goes backwards");
    // A hint that is right about the seq but behind an entry's time (a reaction sent at
    // 40 by a clock ahead) must not give the next message an earlier time.
    let (conv, _) = store
        .membership(&id, &user("alice"))
        .await
        .unwrap()
        .unwrap();
    let reaction = NewMessage {
        entry: chat_shared::protocol::Entry::Reaction {
            target_seq: 4,
            emoji: "👍".into(),
            removed: false,
        },
        ..message(&id, "alice", "e", 40)
    };
    assert!(matches!(
        store.append_message(&reaction).await.unwrap(),
        AppendOutcome::Stored(_)
    ));
    let behind = NewMessage {
        hint: Some(CounterHint {
            last_seq: 5,
            ..CounterHint::of(&conv)
        }),
        ..message(&id, "alice", "f", 35)
    };
    let AppendOutcome::Stored(m) = store.append_message(&behind).await.unwrap() else {
        panic!("stored")
    };
    assert_eq!((m.seq, m.timestamp), (6, 40), "time never goes backwards");
    let (conv, me) = store
        .membership(&id, &user("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((conv.message_count, me.read_messages), (5, 5));
}
