//! Section 5: pushes to offline members, seen through the local outbox
//! (`GET /dev/push-outbox`, enabled by `CHAT_DEV_ENDPOINTS=1`).

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_member_gets_one_push_per_device_and_the_sender_none() {
    let (server, id) = direct_pair().await;
    server
        .http("bob")
        .register_device("phone-1", "apns", "tok-bob-phone")
        .await;
    server
        .http("bob")
        .register_device("tab-1", "fcm", "tok-bob-tab")
        .await;
    server
        .http("alice")
        .register_device("alice-1", "apns_sandbox", "tok-alice")
        .await;
    let t0 = now_ms();

    let (status, ack) = server
        .http("alice")
        .send_message(&id, "cm-1", "hello bob")
        .await;
    assert_eq!(status, 201, "{ack}");

    let pushes = server
        .wait_for_pushes("two for bob", |p| pushes_for(p, "bob").len() >= 2)
        .await;
    let mut for_bob = pushes_for(&pushes, "bob");
    assert_eq!(for_bob.len(), 2, "{pushes:#?}");
    for_bob.sort_by_key(|p| p["deviceId"].as_str().map(str::to_owned));
    for (push, (device, platform)) in for_bob.iter().zip([("phone-1", "apns"), ("tab-1", "fcm")]) {
        assert_keys(
            push,
            &[
                "userId",
                "deviceId",
                "platform",
                "title",
                "body",
                "data",
                "badge",
                "timestamp",
            ],
        );
        assert_subset(
            push,
            &json!({
                "userId": "bob", "deviceId": device, "platform": platform,
                "title": "alice", "body": "hello bob", "badge": 1,
            }),
        );
        assert_subset(
            &push["data"],
            &json!({"conversationId": id, "seq": 1, "messageId": ack["messageId"]}),
        );
        assert_recent_ms(&push["timestamp"], t0);
    }
    tokio::time::sleep(SHORT).await;
    let pushes = server.push_outbox().await;
    assert!(
        pushes_for(&pushes, "alice").is_empty(),
        "no push to the sender: {pushes:#?}"
    );
    assert_eq!(pushes.len(), 2, "{pushes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_push_title_is_group_name_and_sender() {
    let server = start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    server
        .http("bob")
        .register_device("phone-1", "fcm", "tok-bob")
        .await;
    let mut alice = server.connect("alice").await;

    alice.send_message(&id, "cm-1", "standup?").await;

    let pushes = server
        .wait_for_pushes("one for bob", |p| !pushes_for(p, "bob").is_empty())
        .await;
    assert_subset(
        pushes_for(&pushes, "bob")[0],
        &json!({"title": "Team: alice", "body": "standup?"}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_body_is_cut_to_100_characters() {
    let (server, id) = direct_pair().await;
    server
        .http("bob")
        .register_device("phone-1", "apns", "tok-bob")
        .await;
    let text = format!("{}{}{}", "é".repeat(60), "😀".repeat(60), "tail");

    server.http("alice").send_message(&id, "cm-1", &text).await;

    let pushes = server
        .wait_for_pushes("one for bob", |p| !pushes_for(p, "bob").is_empty())
        .await;
    let body = pushes_for(&pushes, "bob")[0]["body"]
        .as_str()
        .expect("body is a string")
        .to_owned();
    let expected: String = text.chars().take(100).collect();
    assert_eq!(
        body, expected,
        "the first 100 characters, cut at a character boundary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_badge_is_the_users_total_unread_count() {
    let server = start().await;
    let alice = server.http("alice");
    let first = conv_id(&alice.create_direct("bob").await);
    let second = conv_id(&alice.create_group("Team", &["bob"]).await);
    server
        .http("bob")
        .register_device("phone-1", "apns", "tok-bob")
        .await;

    // One at a time: the badge is the unread count when the push goes out, so a push
    // written after a later message was stored may already count it.
    let mut pushes = Vec::new();
    for (n, (id, text)) in [(&first, "one"), (&first, "two"), (&second, "three")]
        .into_iter()
        .enumerate()
    {
        alice.send_message(id, &format!("cm-{n}"), text).await;
        pushes = server
            .wait_for_pushes("bob's next push", |p| pushes_for(p, "bob").len() > n)
            .await;
    }
    let badges: Vec<&Value> = pushes_for(&pushes, "bob")
        .iter()
        .map(|p| &p["badge"])
        .collect();
    assert_eq!(
        badges,
        [&json!(1), &json!(2), &json!(3)],
        "oldest first, growing: {pushes:#?}"
    );

    let (status, body) = server
        .http("bob")
        .post(
            &format!("/v1/conversations/{first}/receipts"),
            &json!({"readUpTo": 2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    alice.send_message(&second, "cm-3", "four").await;
    let pushes = server
        .wait_for_pushes("four for bob", |p| pushes_for(p, "bob").len() >= 4)
        .await;
    assert_eq!(pushes_for(&pushes, "bob")[3]["badge"], 2, "{pushes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_member_gets_no_push() {
    let (server, id) = team().await;
    server
        .http("bob")
        .register_device("bob-1", "apns", "tok-bob")
        .await;
    server
        .http("carol")
        .register_device("carol-1", "fcm", "tok-carol")
        .await;
    let (status, body) = server
        .http("bob")
        .put(
            &format!("/v1/conversations/{id}/settings"),
            &json!({"muted": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    server
        .http("alice")
        .send_message(&id, "cm-1", "anyone?")
        .await;

    server
        .wait_for_pushes("carol's push", |p| !pushes_for(p, "carol").is_empty())
        .await;
    tokio::time::sleep(SHORT).await;
    let pushes = server.push_outbox().await;
    assert!(
        pushes_for(&pushes, "bob").is_empty(),
        "muted bob got a push: {pushes:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_member_gets_no_push() {
    let (server, id) = team().await;
    server
        .http("bob")
        .register_device("bob-1", "apns", "tok-bob")
        .await;
    server
        .http("carol")
        .register_device("carol-1", "fcm", "tok-carol")
        .await;
    let mut bob = server.connect_device("bob", "bob-1").await;

    server.http("alice").send_message(&id, "cm-1", "hi").await;

    bob.recv_type("message.new").await;
    server
        .wait_for_pushes("carol's push", |p| !pushes_for(p, "carol").is_empty())
        .await;
    tokio::time::sleep(SHORT).await;
    let pushes = server.push_outbox().await;
    assert!(
        pushes_for(&pushes, "bob").is_empty(),
        "online bob got a push: {pushes:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_who_went_offline_gets_pushes_again() {
    let (server, id) = direct_pair().await;
    server
        .http("bob")
        .register_device("bob-1", "apns", "tok-bob")
        .await;
    let mut alice = server.connect("alice").await;
    let bob = server.connect("bob").await;
    bob.close().await;
    alice
        .recv_where("bob offline", |f| {
            f["type"] == "presence" && f["userId"] == "bob" && f["status"] == "offline"
        })
        .await;

    alice.send_message(&id, "cm-1", "are you there?").await;

    server
        .wait_for_pushes("bob's push", |p| !pushes_for(p, "bob").is_empty())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_endpoints_are_off_by_default() {
    let server = server().env_remove("CHAT_DEV_ENDPOINTS").start().await;

    let response = server.http_anon().get("/dev/push-outbox").await;

    assert_eq!(response.0, 404, "{}", response.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_refuses_requests_a_proxy_forwarded() {
    // A reverse proxy on the same host makes every request loopback's.
    let server = start().await;
    for header in [
        "X-Forwarded-For: 203.0.113.7",
        "Forwarded: for=203.0.113.7",
        "X-Real-IP: 203.0.113.7",
        "X-Forwarded-Host: chat.example",
        "Via: 1.1 proxy",
    ] {
        let (status, body) = server
            .raw_request(
                &format!("GET /dev/push-outbox HTTP/1.1\r\n{header}\r\n"),
                b"",
            )
            .await;
        assert_eq!(status, 404, "{header}: {body}");
    }
    let (status, body) = server
        .raw_request("GET /dev/push-outbox HTTP/1.1\r\n", b"")
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_fanned_out_again_after_kill_9_is_not_pushed_again() {
    // GIVEN two messages pushed to bob's phone; the second's push proves the first's was
    // recorded as sent (the fan-out records a message's pushes before the next one's)
    let (mut server, id) = direct_pair().await;
    server
        .http("bob")
        .register_device("phone-1", "fcm", "tok-bob")
        .await;
    for (cmid, text) in [("m1", "one"), ("m2", "two")] {
        let (status, ack) = server.http("alice").send_message(&id, cmid, text).await;
        assert_eq!(status, 201, "{ack}");
    }
    server
        .wait_for_pushes("seq 2 for bob", |p| {
            pushes_for(p, "bob").iter().any(|p| p["data"]["seq"] == 2)
        })
        .await;

    // WHEN the process is killed at once (its feed was noted as fanned out in memory
    // only, and the messages may still be in its append log), restarted, and sent a
    // third message, which is fanned out after whatever the restart replays
    server.kill9();
    server.restart().await;
    let (status, ack) = server.http("alice").send_message(&id, "m3", "three").await;
    assert_eq!(status, 201, "{ack}");
    let pushes = server
        .wait_for_pushes("seq 3 for bob", |p| {
            pushes_for(p, "bob").iter().any(|p| p["data"]["seq"] == 3)
        })
        .await;

    // THEN the first message was pushed once: the replay found its pushes recorded
    let first: Vec<&Value> = pushes_for(&pushes, "bob")
        .into_iter()
        .filter(|p| p["data"]["seq"] == 1)
        .collect();
    assert_eq!(first.len(), 1, "{pushes:#?}");
}
