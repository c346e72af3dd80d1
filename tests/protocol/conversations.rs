//! Section 4: creating direct conversations and groups, reading and listing them,
//! `conversation.new`, settings, and what a non-member sees.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_conversation_is_created_with_every_field() {
    let server = start().await;
    let t0 = now_ms();

    let (status, conversation) = server
        .http("alice")
        .post(
            "/v1/conversations",
            &json!({"type": "direct", "members": ["bob"]}),
        )
        .await;

    assert_eq!(status, 201, "{conversation}");
    assert_conversation(&conversation);
    assert_subset(
        &conversation,
        &json!({"type": "direct", "firstSeq": 1, "lastSeq": 0, "memberCount": 2, "muted": false, "unreadCount": 0}),
    );
    assert_recent_ms(&conversation["createdAt"], t0);
    assert_eq!(
        conversation["lastMessageAt"], conversation["createdAt"],
        "no message yet: {conversation}"
    );
    let mut ids = member_ids(&conversation);
    ids.sort();
    assert_eq!(ids, ["alice", "bob"]);
    for user in ["alice", "bob"] {
        assert_subset(
            member(&conversation, user),
            &json!({"deliveredUpTo": 0, "readUpTo": 0}),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_conversation_is_idempotent_and_not_guessable() {
    let server = start().await;
    let (alice, bob) = ("alice.k-1", "bob_42");

    let (first_status, first) = server
        .http(alice)
        .post(
            "/v1/conversations",
            &json!({"type": "direct", "members": [bob]}),
        )
        .await;
    let (again_status, again) = server
        .http(alice)
        .post(
            "/v1/conversations",
            &json!({"type": "direct", "members": [bob]}),
        )
        .await;
    let (reverse_status, reverse) = server
        .http(bob)
        .post(
            "/v1/conversations",
            &json!({"type": "direct", "members": [alice]}),
        )
        .await;

    assert_eq!(first_status, 201, "{first}");
    assert_eq!(again_status, 200, "{again}");
    assert_eq!(reverse_status, 200, "{reverse}");
    let id = conv_id(&first);
    assert_eq!(conv_id(&again), id);
    assert_eq!(conv_id(&reverse), id);
    for part in ["alice", "bob", "k-1", "_42"] {
        assert!(!id.contains(part), "direct id {id:?} reveals a user id");
    }
    let other = conv_id(&server.http(alice).create_direct("carol").await);
    assert_ne!(other, id, "another pair gets another conversation");
    let (_, list) = server.http(alice).get("/v1/conversations").await;
    assert_eq!(
        list["conversations"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_conversation_needs_exactly_one_other_user() {
    let server = start().await;
    let alice = server.http("alice");

    for members in [json!(["alice"]), json!([]), json!(["bob", "carol"])] {
        let response = alice
            .post(
                "/v1/conversations",
                &json!({"type": "direct", "members": members}),
            )
            .await;
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
    let (_, list) = alice.get("/v1/conversations").await;
    assert_eq!(
        list["conversations"],
        json!([]),
        "nothing was created: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_conversation_validates_its_body() {
    let server = start().await;
    let alice = server.http("alice");
    let bodies = [
        json!({"type": "channel", "name": "x", "members": ["bob"]}),
        json!({"members": ["bob"]}),
        json!({"type": "direct"}),
        json!({"type": "direct", "members": "bob"}),
        json!({"type": "direct", "members": ["not a user!"]}),
        json!({"type": "group", "name": "Team", "members": ["ok", "bad user"]}),
        json!({"type": "group", "name": "Team"}),
        json!({"type": "group", "members": ["bob"]}),
        json!({"type": "group", "name": 5, "members": []}),
        json!(["not", "an", "object"]),
    ];
    for body in bodies {
        let response = alice.post("/v1/conversations", &body).await;
        assert_eq!(response.0, 400, "body {body}: {}", response.1);
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
    let response = alice
        .raw(
            Method::POST,
            "/v1/conversations",
            "{\"type\":",
            "application/json",
        )
        .await;
    assert_http_error(&response, 400, "INVALID_MESSAGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_creator_is_admin_and_members_are_listed_by_user_id() {
    let server = start().await;

    let (status, group) = server
        .http("alice")
        .post(
            "/v1/conversations",
            &json!({"type": "group", "name": "Team", "members": ["bob", "carol"]}),
        )
        .await;

    assert_eq!(status, 201, "{group}");
    assert_conversation(&group);
    assert_subset(
        &group,
        &json!({"type": "group", "name": "Team", "memberCount": 3, "firstSeq": 1, "lastSeq": 0, "muted": false, "unreadCount": 0}),
    );
    assert_eq!(group["lastMessageAt"], group["createdAt"]);
    assert_eq!(member_ids(&group), ["alice", "bob", "carol"]);
    assert_eq!(member(&group, "alice")["role"], "admin");
    assert_eq!(member(&group, "bob")["role"], "member");
    assert_eq!(member(&group, "carol")["role"], "member");

    let seen_by_bob = server.http("bob").conversation(&conv_id(&group)).await;
    assert_eq!(seen_by_bob["memberCount"], 3, "{seen_by_bob}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_may_start_with_only_its_creator() {
    let server = start().await;

    let group = server.http("alice").create_group("Solo", &[]).await;

    assert_subset(&group, &json!({"memberCount": 1}));
    assert_eq!(member_ids(&group), ["alice"]);
    assert_eq!(member(&group, "alice")["role"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_name_is_1_to_100_chars() {
    let server = start().await;
    let alice = server.http("alice");
    let create = |name: String| {
        let alice = alice.clone();
        async move {
            alice
                .post(
                    "/v1/conversations",
                    &json!({"type": "group", "name": name, "members": ["bob"]}),
                )
                .await
        }
    };

    for name in [
        "x".to_owned(),
        "n".repeat(100),
        "é".repeat(100),
        "😀".repeat(100),
    ] {
        let (status, body) = create(name.clone()).await;
        assert_eq!(
            status,
            201,
            "name of {} chars: {body}",
            name.chars().count()
        );
        assert_eq!(body["name"], name.as_str());
    }
    for name in [String::new(), "n".repeat(101), "é".repeat(101)] {
        let response = create(name.clone()).await;
        assert_eq!(
            response.0,
            400,
            "name of {} chars: {}",
            name.chars().count(),
            response.1
        );
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_name_refuses_control_and_bidi_formatting_characters() {
    let server = start().await;
    let alice = server.http("alice");
    let mut bob = server.connect("bob").await;

    // Control characters (Unicode Cc, C0 and C1) and the bidirectional embeddings,
    // overrides and isolates: the name starts every push title.
    let mut refused: Vec<String> = [
        "\0", "\t", "\n", "\r", "\u{1b}", "\u{7f}", "\u{85}", "\u{9f}", "\u{2028}", "\u{2029}",
        "\u{feff}",
    ]
    .into_iter()
    .map(|c| format!("Team{c}"))
    .collect();
    refused.extend(
        ('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}')
            .map(|c| format!("{c}Team")),
    );
    refused.push("\u{1b}[2J\u{1b}[31mAdmin: reset your password".to_owned());
    refused.push("invoice\u{202e}fdp.exe".to_owned());
    for name in &refused {
        let response = alice
            .post(
                "/v1/conversations",
                &json!({"type": "group", "name": name, "members": ["bob"]}),
            )
            .await;
        assert_eq!(response.0, 400, "name {name:?}: {}", response.1);
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
    bob.expect_none("conversation.new", SHORT, |f| {
        f["type"] == "conversation.new"
    })
    .await;
    let (status, body) = alice.get("/v1/conversations").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["conversations"],
        json!([]),
        "a refused name made a group"
    );

    // Other scripts, right-to-left text, emoji sequences and the bidi marks (not
    // embeddings) stay allowed.
    for name in [
        "\u{5e6}\u{5d5}\u{5d5}\u{5ea}",
        "\u{645}\u{62c}\u{645}\u{648}\u{639}\u{629} 1",
        "👩\u{200d}👩\u{200d}👧 family",
        "Team\u{200f} A",
        "Ünïcödé Team",
    ] {
        let group = alice.create_group(name, &["bob"]).await;
        assert_eq!(group["name"], name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_cap_refuses_creation_above_it() {
    let server = server().env("CHAT_MAX_GROUP_MEMBERS", "5").start().await;
    let alice = server.http("alice");

    let full = alice.create_group("Five", &["m1", "m2", "m3", "m4"]).await;
    assert_eq!(full["memberCount"], 5);

    let response = alice
        .post(
            "/v1/conversations",
            &json!({"type": "group", "name": "Six", "members": ["m1", "m2", "m3", "m4", "m5"]}),
        )
        .await;
    assert_http_error(&response, 400, "INVALID_MESSAGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_cap_refuses_adding_above_it_with_conflict() {
    let server = server().env("CHAT_MAX_GROUP_MEMBERS", "5").start().await;
    let alice = server.http("alice");
    let group = conv_id(&alice.create_group("Team", &["m1", "m2", "m3"]).await);

    let response = alice.add_members(&group, &["m4", "m5"]).await;
    assert_http_error(&response, 409, "CONFLICT");
    assert_eq!(
        alice.conversation(&group).await["memberCount"],
        4,
        "nothing added"
    );

    let (status, body) = alice.add_members(&group, &["m4"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["memberCount"], 5, "{body}");

    let response = alice.add_members(&group, &["m5"]).await;
    assert_http_error(&response, 409, "CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_cap_allows_1000_members_and_refuses_1001() {
    let server = start().await;
    let alice = server.http("alice");
    let others: Vec<String> = (1..1000).map(|i| format!("member-{i}")).collect();

    let (status, group) = alice
        .post(
            "/v1/conversations",
            &json!({"type": "group", "name": "Big", "members": others}),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    assert_conversation(&group);
    assert_eq!(group["memberCount"], 1000);
    assert!(group.get("members").is_none(), "no members list above 100");
    let id = conv_id(&group);

    let members = all_members(&alice, &id, 100).await;
    assert_eq!(members.len(), 1000);
    assert_eq!(members[0]["userId"], "alice");
    assert_eq!(members[0]["role"], "admin");
    let mut unique: Vec<&str> = members
        .iter()
        .filter_map(|m| m["userId"].as_str())
        .collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 1000, "no member listed twice");

    let response = alice.add_members(&id, &["one-too-many"]).await;
    assert_http_error(&response, 409, "CONFLICT");

    let mut too_many = others.clone();
    too_many.push("member-1000".to_owned());
    let response = alice
        .post(
            "/v1/conversations",
            &json!({"type": "group", "name": "Too big", "members": too_many}),
        )
        .await;
    assert_http_error(&response, 400, "INVALID_MESSAGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_members_get_conversation_new() {
    let server = start().await;
    let mut bob_phone = server.connect_device("bob", "phone").await;
    let mut bob_laptop = server.connect_device("bob", "laptop").await;

    let group = server
        .http("alice")
        .create_group("Team", &["bob", "carol"])
        .await;
    let id = conv_id(&group);

    for ws in [&mut bob_phone, &mut bob_laptop] {
        let frame = ws.recv_type("conversation.new").await;
        let conversation = &frame["conversation"];
        assert_conversation(conversation);
        assert_subset(
            conversation,
            &json!({"conversationId": id, "type": "group", "name": "Team", "memberCount": 3, "muted": false, "unreadCount": 0, "lastSeq": 0}),
        );
    }

    let mut carol = server.connect("carol").await;
    carol.expect_silence("conversation.new", SHORT).await;

    let direct = conv_id(&server.http("alice").create_direct("bob").await);
    let frame = bob_phone.recv_type("conversation.new").await;
    assert_subset(
        &frame["conversation"],
        &json!({"conversationId": direct, "type": "direct"}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_conversation_reflects_messages() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    alice.send_message(&id, "cm-1", "one").await;
    let last = alice.send_message(&id, "cm-2", "two").await;

    let for_alice = server.http("alice").conversation(&id).await;
    let for_bob = server.http("bob").conversation(&id).await;

    assert_conversation(&for_alice);
    assert_subset(
        &for_alice,
        &json!({"conversationId": id, "firstSeq": 1, "lastSeq": 2, "lastMessageAt": last["timestamp"], "unreadCount": 0}),
    );
    assert_subset(&for_bob, &json!({"lastSeq": 2, "unreadCount": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_list_is_ordered_by_last_message_with_cursor_paging() {
    let server = start().await;
    let alice = server.http("alice");
    let mut ids = Vec::new();
    // Each step waits for the server's clock to pass the previous one's timestamp, so no
    // two of them tie.
    for user in ["u1", "u2", "u3", "u4", "u5"] {
        let created = alice.create_direct(user).await;
        ids.push(conv_id(&created));
        server
            .wait_for_clock_past(created["createdAt"].as_i64().expect("createdAt"))
            .await;
    }
    let mut ws = server.connect("alice").await;
    let mut last_message_at = std::collections::HashMap::new();
    for index in [2, 0, 4] {
        let ack = ws
            .send_message(&ids[index], &format!("cm-{index}"), "hi")
            .await;
        last_message_at.insert(ids[index].clone(), ack["timestamp"].clone());
        server
            .wait_for_clock_past(ack["timestamp"].as_i64().expect("timestamp"))
            .await;
    }
    // u5, u1, u3 by their last message; then u4, u2 by creation (no messages).
    let expected = [4, 0, 2, 3, 1].map(|i| ids[i].clone());

    let mut listed: Vec<Value> = Vec::new();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/conversations?limit=2".to_owned(),
            Some(c) => format!("/v1/conversations?limit=2&cursor={}", encode_query(c)),
        };
        let (status, page) = alice.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let batch = page["conversations"]
            .as_array()
            .expect("conversations")
            .clone();
        pages.push(batch.len());
        listed.extend(batch);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "paging never ends");
    }

    assert_eq!(pages, [2, 2, 1]);
    let order: Vec<String> = listed.iter().map(conv_id).collect();
    assert_eq!(order, expected);
    for conversation in &listed {
        assert_conversation(conversation);
        let id = conv_id(conversation);
        match last_message_at.get(&id) {
            Some(at) => assert_eq!(&conversation["lastMessageAt"], at, "{conversation}"),
            None => assert_eq!(
                conversation["lastMessageAt"], conversation["createdAt"],
                "{conversation}"
            ),
        }
    }

    let response = alice.get("/v1/conversations?limit=101").await;
    assert_http_error(&response, 400, "INVALID_MESSAGE");
    let (status, body) = alice.get("/v1/conversations?limit=100").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_setting_is_per_member() {
    let (server, id) = direct_pair().await;

    let (status, conversation) = server
        .http("alice")
        .put(
            &format!("/v1/conversations/{id}/settings"),
            &json!({"muted": true}),
        )
        .await;

    assert_eq!(status, 200, "{conversation}");
    assert_subset(&conversation, &json!({"conversationId": id, "muted": true}));
    assert_eq!(server.http("alice").conversation(&id).await["muted"], true);
    assert_eq!(server.http("bob").conversation(&id).await["muted"], false);

    let (status, conversation) = server
        .http("alice")
        .put(
            &format!("/v1/conversations/{id}/settings"),
            &json!({"muted": false}),
        )
        .await;
    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["muted"], false);

    let response = server
        .http("alice")
        .put(
            &format!("/v1/conversations/{id}/settings"),
            &json!({"muted": "yes"}),
        )
        .await;
    assert_http_error(&response, 400, "INVALID_MESSAGE");
}

async fn mute(server: &TestServer, user: &str, id: &str, body: Value) -> (u16, Value) {
    server
        .http(user)
        .put(&format!("/v1/conversations/{id}/settings"), &body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_mute_shows_its_end_holds_pushes_back_and_ends_by_itself() {
    // GIVEN bob offline with a phone
    let (server, id) = direct_pair().await;
    let (status, body) = server
        .http("bob")
        .post(
            "/v1/devices",
            &json!({"deviceId": "phone", "platform": "fcm", "token": "t-bob"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // WHEN bob mutes the conversation for one second
    let until = server.server_time().await + 1000;
    let (status, muted) = mute(&server, "bob", &id, json!({"mutedUntil": until})).await;

    // THEN his view says so, and a message meanwhile is not pushed to him
    assert_eq!(status, 200, "{muted}");
    assert_subset(&muted, &json!({"muted": true, "mutedUntil": until}));
    let mut alice = server.connect("alice").await;
    alice.send_message(&id, "m-1", "while muted").await;
    // AND once the second is over it is unmuted: the next message is pushed
    server.wait_for_clock_past(until).await;
    let seen = server.http("bob").conversation(&id).await;
    assert_subset(&seen, &json!({"muted": false, "mutedUntil": null}));
    alice.send_message(&id, "m-2", "after").await;
    let pushes = server
        .wait_for_pushes("the push after the mute", |p| {
            p.iter().any(|p| p["data"]["seq"] == 2)
        })
        .await;
    assert!(
        pushes.iter().all(|p| p["data"]["seq"] != 1),
        "nothing pushed while muted: {pushes:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_true_has_no_end_and_settings_take_one_of_muted_or_muted_until() {
    let (server, id) = direct_pair().await;

    let (status, forever) = mute(&server, "alice", &id, json!({"muted": true})).await;
    assert_eq!(status, 200, "{forever}");
    assert_subset(&forever, &json!({"muted": true, "mutedUntil": null}));

    // a time in the past, or null, unmutes
    let (_, past) = mute(&server, "alice", &id, json!({"mutedUntil": 1})).await;
    assert_subset(&past, &json!({"muted": false, "mutedUntil": null}));
    mute(&server, "alice", &id, json!({"muted": true})).await;
    let (_, cleared) = mute(&server, "alice", &id, json!({"mutedUntil": null})).await;
    assert_subset(&cleared, &json!({"muted": false, "mutedUntil": null}));

    for body in [
        json!({"muted": true, "mutedUntil": 5}),
        json!({}),
        json!({"mutedUntil": "soon"}),
    ] {
        let refused = mute(&server, "alice", &id, body).await;
        assert_http_error(&refused, 400, "INVALID_MESSAGE");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_member_gets_not_found_on_every_http_route() {
    let (server, id) = direct_pair().await;
    server
        .http("alice")
        .send_message(&id, "cm-1", "secret")
        .await;
    let carol = server.http("carol");

    for existing in [id.as_str(), "c_does_not_exist"] {
        let base = format!("/v1/conversations/{existing}");
        let responses = [
            carol.get(&base).await,
            carol.get(&format!("{base}/members")).await,
            carol.add_members(existing, &["dave"]).await,
            carol.remove_member(existing, "bob").await,
            carol.remove_member(existing, "carol").await,
            carol
                .put(&format!("{base}/settings"), &json!({"muted": true}))
                .await,
            carol.get(&format!("{base}/messages")).await,
            carol.send_message(existing, "cm-x", "let me in").await,
            carol
                .post(&format!("{base}/receipts"), &json!({"readUpTo": 1}))
                .await,
        ];
        for response in &responses {
            assert_http_error(response, 404, "NOT_FOUND");
        }
    }
    assert_eq!(
        server.http("alice").conversation(&id).await["lastSeq"],
        1,
        "carol stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_member_gets_not_found_on_every_ws_action() {
    let (server, id) = direct_pair().await;
    let mut carol = server.connect("carol").await;

    for conversation in [id.as_str(), "c_does_not_exist"] {
        let error = carol
            .request(json!({
                "action": "send", "requestId": "s-1", "conversationId": conversation,
                "clientMessageId": "cm-1", "content": {"type": "text", "text": "hi"},
            }))
            .await;
        assert_ws_error(&error, "NOT_FOUND", Some("s-1"));
        assert_eq!(error["clientMessageId"], "cm-1", "{error}");

        for action in [
            json!({"action": "read", "requestId": "r-1", "conversationId": conversation, "upToSeq": 0}),
            json!({"action": "delivered", "requestId": "r-1", "conversationId": conversation, "upToSeq": 0}),
            json!({"action": "typing", "requestId": "r-1", "conversationId": conversation, "isTyping": true}),
        ] {
            let error = carol.request(action).await;
            assert_ws_error(&error, "NOT_FOUND", Some("r-1"));
            assert_eq!(error["clientMessageId"], Value::Null, "{error}");
        }
        carol.heartbeat().await;
    }
    assert_eq!(server.http("alice").conversation(&id).await["lastSeq"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_is_404_not_found() {
    let server = start().await;

    let response = server.http("alice").get("/v1/nothing-here").await;

    assert_http_error(&response, 404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_one_was_added_to_is_listed_by_when_one_joined_and_pages_skip_nothing() {
    // GIVEN a group with a message from before alice was in it, then alice's own direct
    // conversation with a newer message, then alice added to the group
    let server = server().start().await;
    let group = conv_id(&server.http("bob").create_group("Old", &["carol"]).await);
    let mut bob = server.connect("bob").await;
    bob.send_message(&group, "g-1", "before alice").await;
    server.tick().await;
    let direct = conv_id(&server.http("alice").create_direct("dave").await);
    let mut alice = server.connect("alice").await;
    alice.send_message(&direct, "d-1", "newer").await;
    server.tick().await;
    let (status, body) = server.http("bob").add_members(&group, &["alice"]).await;
    assert_eq!(status, 200, "{body}");

    // WHEN alice lists her conversations one per page
    let alice_http = server.http("alice");
    let (status, first) = alice_http.get("/v1/conversations?limit=1").await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (status, second) = alice_http
        .get(&format!("/v1/conversations?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(status, 200, "{second}");

    // THEN the group she just joined comes first (its last message is older than her
    // joining), then the direct one: none skipped, none repeated
    assert_eq!(first["conversations"][0]["conversationId"], group.as_str());
    assert_eq!(
        second["conversations"][0]["conversationId"],
        direct.as_str()
    );
    assert!(second["nextCursor"].is_null(), "{second}");
}
