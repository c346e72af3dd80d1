//! `react`: reaction summaries, set semantics, the emoji rules and caps.

use super::*;

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaction_reaches_every_other_connection() {
    // GIVEN alice on two devices, bob, and alice's message
    let (server, id) = direct_pair().await;
    let mut phone = server.connect_device("alice", "phone").await;
    let mut laptop = server.connect_device("alice", "laptop").await;
    let mut bob = server.connect("bob").await;
    phone.send_message(&id, "cm-1", "lunch?").await;
    recv_entry(&mut laptop, &id, 1).await;
    recv_entry(&mut bob, &id, 1).await;

    // WHEN bob reacts to it
    let ack = expect_ack(&mut bob, react_action(&id, "r-1", 1, THUMBS_UP)).await;

    // THEN the ack is the reaction entry's
    assert_keys(&ack, ACK_KEYS);
    assert_subset(
        &ack,
        &json!({"type": "message.ack", "clientMessageId": "r-1", "seq": 2, "kind": "reaction", "duplicate": false}),
    );
    // AND both of alice's connections get it, `removed` false by default
    for ws in [&mut phone, &mut laptop] {
        assert_subset(
            &recv_entry(ws, &id, 2).await,
            &json!({
                "type": "message.new", "seq": 2, "senderId": "bob", "clientMessageId": "r-1",
                "messageId": ack["messageId"], "timestamp": ack["timestamp"],
                "kind": "reaction", "targetSeq": 1, "emoji": THUMBS_UP, "removed": false,
            }),
        );
    }
    bob.expect_silence("message.new", SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_are_summarised_in_order_of_first_reaction_with_mine_per_caller() {
    // GIVEN alice's message in a group with bob and carol
    let (server, id, _) = group_with_message(&["bob", "carol"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;

    // WHEN bob reacts 👍, carol ❤️, then alice 👍
    expect_ack(&mut bob, react_action(&id, "r-bob", 1, THUMBS_UP)).await;
    expect_ack(&mut carol, react_action(&id, "r-carol", 1, HEART)).await;
    expect_ack(&mut alice, react_action(&id, "r-alice", 1, THUMBS_UP)).await;

    // THEN each member's history shows 👍 (first reacted) before ❤️, and `mine` for
    // what that member reacted
    for (user, thumbs_mine, heart_mine) in [
        ("alice", true, false),
        ("bob", true, false),
        ("carol", false, true),
    ] {
        let messages = history(&server, user, &id).await;
        assert_eq!(
            reactions(entry_at(&messages, 1)),
            [
                reaction(THUMBS_UP, 2, &["alice", "bob"], thumbs_mine),
                reaction(HEART, 1, &["carol"], heart_mine),
            ],
            "as {user} sees it"
        );
        // AND the reaction entries are returned at their own seqs
        assert_subset(
            entry_at(&messages, 3),
            &json!({"kind": "reaction", "targetSeq": 1, "senderId": "carol", "emoji": HEART, "removed": false}),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_names_at_most_three_reactors_but_counts_all() {
    // GIVEN alice's message in a group of five
    let (server, id, _) = group_with_message(&["bob", "carol", "dave", "erin"]).await;
    let reactors = ["bob", "carol", "dave", "erin"];

    // WHEN the four others react 👍
    for user in reactors {
        let mut ws = server.connect(user).await;
        expect_ack(&mut ws, react_action(&id, "r-1", 1, THUMBS_UP)).await;
    }

    // THEN everyone sees a count of 4 with three of the reactors named, and `mine` is
    // true for each reactor, named or not
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let messages = history(&server, user, &id).await;
        let summary = reactions(entry_at(&messages, 1));
        assert_eq!(summary.len(), 1, "{summary:?}");
        let (emoji, count, ids, mine) = &summary[0];
        assert_eq!(emoji, THUMBS_UP);
        assert_eq!(*count, 4);
        assert_eq!(ids.len(), 3, "{summary:?}");
        assert!(
            ids.iter().all(|u| reactors.contains(&u.as_str())),
            "{summary:?}"
        );
        assert_eq!(*mine, user != "alice", "mine as {user} sees it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_reaction_lowers_its_count_and_drops_an_emoji_nobody_holds() {
    // GIVEN alice's message with 👍 from bob and carol and ❤️ from carol
    let (server, id, _) = group_with_message(&["bob", "carol"]).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    expect_ack(&mut bob, react_action(&id, "r-1", 1, THUMBS_UP)).await;
    expect_ack(&mut carol, react_action(&id, "r-2", 1, THUMBS_UP)).await;
    expect_ack(&mut carol, react_action(&id, "r-3", 1, HEART)).await;

    // WHEN bob takes back his 👍 and carol her ❤️
    let ack = expect_ack(&mut bob, unreact_action(&id, "u-1", 1, THUMBS_UP)).await;
    expect_ack(&mut carol, unreact_action(&id, "u-2", 1, HEART)).await;

    // THEN the removals are reaction entries with `removed: true`
    assert_subset(
        &ack,
        &json!({"seq": 5, "kind": "reaction", "duplicate": false}),
    );
    assert_subset(
        &recv_entry(&mut alice, &id, 5).await,
        &json!({"kind": "reaction", "senderId": "bob", "targetSeq": 1, "emoji": THUMBS_UP, "removed": true}),
    );
    // AND the summary keeps 👍 for carol alone and leaves ❤️ out
    let messages = history(&server, "bob", &id).await;
    assert_eq!(
        reactions(entry_at(&messages, 1)),
        [reaction(THUMBS_UP, 1, &["carol"], false)]
    );
    assert_subset(
        entry_at(&messages, 6),
        &json!({"kind": "reaction", "emoji": HEART, "removed": true}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaction_that_changes_nothing_is_still_acked_and_appended() {
    // GIVEN alice's message with bob's 👍
    let mut d = direct_with(&["nice"]).await;
    expect_ack(&mut d.bob, react_action(&d.id, "r-1", 1, THUMBS_UP)).await;

    // WHEN bob reacts 👍 again and takes back a ❤️ he never gave
    let again = expect_ack(&mut d.bob, react_action(&d.id, "r-2", 1, THUMBS_UP)).await;
    let absent = expect_ack(&mut d.bob, unreact_action(&d.id, "u-1", 1, HEART)).await;

    // THEN both are acked with entries of their own
    assert_subset(
        &again,
        &json!({"seq": 3, "kind": "reaction", "duplicate": false}),
    );
    assert_subset(
        &absent,
        &json!({"seq": 4, "kind": "reaction", "duplicate": false}),
    );
    assert_subset(
        &recv_entry(&mut d.alice, &d.id, 4).await,
        &json!({"kind": "reaction", "emoji": HEART, "removed": true}),
    );
    // AND the summary is one 👍 from bob
    let messages = history(&d.server, "alice", &d.id).await;
    assert_eq!(seqs(&messages), [1, 2, 3, 4]);
    assert_eq!(
        reactions(entry_at(&messages, 1)),
        [reaction(THUMBS_UP, 1, &["bob"], false)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reacting_to_a_deleted_message_is_forbidden() {
    // GIVEN alice's message, deleted
    let mut d = direct_with(&["gone"]).await;
    expect_ack(&mut d.alice, delete_action(&d.id, "del-1", 1)).await;

    // WHEN bob reacts to it, or takes a reaction back
    // THEN both are FORBIDDEN and nothing is appended
    expect_refused(
        &mut d.bob,
        react_action(&d.id, "r-1", 1, THUMBS_UP),
        "FORBIDDEN",
    )
    .await;
    expect_refused(
        &mut d.bob,
        unreact_action(&d.id, "u-1", 1, THUMBS_UP),
        "FORBIDDEN",
    )
    .await;
    assert_eq!(last_seq(&d.server, "bob", &d.id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_51st_distinct_emoji_is_a_conflict_and_appends_nothing() {
    // GIVEN alice's message
    let mut d = direct_with(&["react to me"]).await;
    let emoji: Vec<String> = (0..51)
        .map(|n| {
            char::from_u32(0x1F600 + n)
                .expect("an emoticon")
                .to_string()
        })
        .collect();

    // WHEN alice reacts with 50 distinct emoji, pipelined
    for (n, e) in emoji[..50].iter().enumerate() {
        let mut action = react_action(&d.id, &format!("r-{n}"), 1, e);
        action["requestId"] = json!(format!("req-r-{n}"));
        d.alice.send_json(&action).await;
    }
    for n in 0..50 {
        let ack = d.alice.recv_response(&format!("req-r-{n}")).await;
        assert_subset(&ack, &json!({"type": "message.ack", "kind": "reaction"}));
    }
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 51);

    // THEN a 51st distinct emoji, from alice or bob, is CONFLICT with no entry
    expect_refused(
        &mut d.alice,
        react_action(&d.id, "r-51", 1, &emoji[50]),
        "CONFLICT",
    )
    .await;
    expect_refused(
        &mut d.bob,
        react_action(&d.id, "b-51", 1, &emoji[50]),
        "CONFLICT",
    )
    .await;
    assert_eq!(last_seq(&d.server, "alice", &d.id).await, 51);
    // AND one of the 50 can still be added by another member
    let ack = expect_ack(&mut d.bob, react_action(&d.id, "b-0", 1, &emoji[0])).await;
    assert_eq!(ack["seq"], 52);
    let messages = history(&d.server, "bob", &d.id).await;
    let summary = reactions(entry_at(&messages, 1));
    assert_eq!(summary.len(), 50);
    assert_eq!(summary[0], reaction(&emoji[0], 2, &["alice", "bob"], true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emoji_of_up_to_64_bytes_with_joiners_and_modifiers_are_accepted() {
    // GIVEN alice's message
    let mut d = direct_with(&["hi"]).await;
    let accepted = [
        "😀".repeat(16),                               // 64 bytes
        "👨\u{200D}👩\u{200D}👧\u{200D}👦".to_owned(), // ZWJ sequence (U+200D is Cf)
        "👍🏽".to_owned(),                               // skin tone modifier
        "🇫🇷".to_owned(),                               // flag (regional indicators)
        "+1".to_owned(),                               // any text without Cc, Zs, Zl, Zp
    ];

    // WHEN bob reacts with each
    for (n, emoji) in accepted.iter().enumerate() {
        let ack = expect_ack(&mut d.bob, react_action(&d.id, &format!("r-{n}"), 1, emoji)).await;
        // THEN it is acked and fanned out byte for byte
        let frame = recv_entry(&mut d.alice, &d.id, ack["seq"].as_i64().expect("seq")).await;
        assert_eq!(frame["emoji"].as_str(), Some(emoji.as_str()));
    }
    let messages = history(&d.server, "alice", &d.id).await;
    let listed: Vec<String> = reactions(entry_at(&messages, 1))
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(listed, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emoji_are_compared_byte_for_byte() {
    // GIVEN alice's message in a group
    let (server, id, _) = group_with_message(&["bob", "carol"]).await;
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;

    // WHEN bob reacts ❤ (U+2764) and 👍, and carol ❤️ (U+2764 U+FE0F) and 👍 U+FE0F
    let thumbs_fe0f = format!("{THUMBS_UP}\u{FE0F}");
    expect_ack(&mut bob, react_action(&id, "r-1", 1, BARE_HEART)).await;
    expect_ack(&mut carol, react_action(&id, "r-2", 1, HEART)).await;
    expect_ack(&mut bob, react_action(&id, "r-3", 1, THUMBS_UP)).await;
    expect_ack(&mut carol, react_action(&id, "r-4", 1, &thumbs_fe0f)).await;

    // THEN they are four different emoji, each kept exactly as sent
    let messages = history(&server, "alice", &id).await;
    assert_eq!(
        reactions(entry_at(&messages, 1)),
        [
            reaction(BARE_HEART, 1, &["bob"], false),
            reaction(HEART, 1, &["carol"], false),
            reaction(THUMBS_UP, 1, &["bob"], false),
            reaction(&thumbs_fe0f, 1, &["carol"], false),
        ]
    );
    // AND taking back ❤ leaves ❤️ alone
    expect_ack(&mut bob, unreact_action(&id, "u-1", 1, BARE_HEART)).await;
    let messages = history(&server, "alice", &id).await;
    assert_eq!(
        reactions(entry_at(&messages, 1))[0],
        reaction(HEART, 1, &["carol"], false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reactors_route_names_every_reactor() {
    // GIVEN alice's message with 👍 from four members
    let (server, id, _) = group_with_message(&["bob", "carol", "dave", "erin"]).await;
    let reactors = ["bob", "carol", "dave", "erin"];
    for user in reactors {
        let mut ws = server.connect(user).await;
        expect_ack(&mut ws, react_action(&id, "r-1", 1, THUMBS_UP)).await;
    }

    // WHEN alice pages GET .../messages/1/reactions?emoji=👍 (following `nextCursor`)
    let base = format!(
        "/v1/conversations/{id}/messages/1/reactions?emoji={}",
        encode_query(THUMBS_UP)
    );
    let mut named = BTreeSet::new();
    let mut path = base.clone();
    for _ in 0..10 {
        let (status, page) = server.http("alice").get(&path).await;
        assert_eq!(status, 200, "GET {path}: {page}");
        collect_strings(&page, &mut named);
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(cursor) => path = format!("{base}&cursor={}", encode_query(cursor)),
            None => break,
        }
    }

    // THEN every reactor is named (the page shape is not in the contract: any string of
    // the answer counts) and alice, who did not react, is not
    for user in reactors {
        assert!(named.contains(user), "{user} not named: {named:?}");
    }
    assert!(!named.contains("alice"), "{named:?}");
    // AND to a non-member the message does not exist
    let response = server.http("zed").get(&base).await;
    assert_http_error(&response, 404, "NOT_FOUND");
}

/// Every string anywhere in `value`.
fn collect_strings(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            into.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, into)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, into)),
        _ => {}
    }
}
