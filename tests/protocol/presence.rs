//! Section 3 "Presence": online/offline events to contacts and `GET /v1/presence`.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_connection_sends_online_to_contacts() {
    let (server, _id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let t0 = now_ms();

    let _bob_phone = server.connect_device("bob", "phone").await;

    let online = alice
        .recv_where("bob online", |f| is_presence_of(f, "bob"))
        .await;
    assert_keys(&online, &["type", "userId", "status", "lastSeen", "at"]);
    assert_eq!(online["status"], "online", "{online}");
    assert_recent_ms(&online["at"], t0);

    let _bob_laptop = server.connect_device("bob", "laptop").await;
    alice
        .expect_none("a second bob presence", SHORT, |f| is_presence_of(f, "bob"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_connection_closing_sends_offline_with_last_seen() {
    let (server, _id) = direct_pair().await;
    let bob_phone = server.connect_device("bob", "phone").await;
    let bob_laptop = server.connect_device("bob", "laptop").await;
    let mut alice = server.connect("alice").await;
    let t0 = now_ms();

    bob_phone.close().await;
    alice
        .expect_none("bob presence while a connection remains", SHORT, |f| {
            is_presence_of(f, "bob")
        })
        .await;
    drop(bob_laptop); // an abrupt end, like a killed app

    let offline = alice
        .recv_where("bob offline", |f| is_presence_of(f, "bob"))
        .await;
    assert_keys(&offline, &["type", "userId", "status", "lastSeen", "at"]);
    assert_eq!(offline["status"], "offline", "{offline}");
    assert_recent_ms(&offline["lastSeen"], t0);
    assert_recent_ms(&offline["at"], t0);

    let (status, body) = server.http("alice").get("/v1/presence?userIds=bob").await;
    assert_eq!(status, 200, "{body}");
    assert_subset(
        &body["presence"][0],
        &json!({"userId": "bob", "status": "offline"}),
    );
    assert!(body["presence"][0]["lastSeen"].is_i64(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_not_sent_to_users_sharing_no_conversation() {
    let (server, _id) = direct_pair().await;
    server.http("carol").create_direct("dave").await;
    let mut alice = server.connect("alice").await;
    let mut carol = server.connect("carol").await;

    let bob = server.connect("bob").await;
    alice
        .recv_where("bob online", |f| {
            is_presence_of(f, "bob") && f["status"] == "online"
        })
        .await;
    carol
        .expect_none("bob presence", SHORT, |f| is_presence_of(f, "bob"))
        .await;

    drop(bob);
    alice
        .recv_where("bob offline", |f| {
            is_presence_of(f, "bob") && f["status"] == "offline"
        })
        .await;
    carol
        .expect_none("bob presence", Duration::ZERO, |f| is_presence_of(f, "bob"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_presence_answers_only_users_sharing_a_conversation() {
    let (server, _id) = direct_pair().await;
    server.http("carol").create_direct("dave").await;
    let _bob = server.connect("bob").await;
    let _carol = server.connect("carol").await;

    let (status, body) = server
        .http("alice")
        .get("/v1/presence?userIds=bob,carol,dave,nobody")
        .await;

    assert_eq!(status, 200, "{body}");
    let presence = body["presence"].as_array().expect("presence array");
    assert_eq!(
        presence.len(),
        1,
        "only bob shares a conversation with alice: {body}"
    );
    assert_keys(&presence[0], &["userId", "status", "lastSeen"]);
    assert_subset(&presence[0], &json!({"userId": "bob", "status": "online"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_presence_reports_a_contact_who_never_connected_as_offline() {
    let (server, _id) = direct_pair().await;

    let (status, body) = server.http("alice").get("/v1/presence?userIds=bob").await;

    assert_eq!(status, 200, "{body}");
    assert_subset(
        &body["presence"][0],
        &json!({"userId": "bob", "status": "offline"}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_presence_takes_at_most_100_users() {
    let server = start().await;
    let users: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();

    let response = server
        .http("alice")
        .get(&format!("/v1/presence?userIds={}", users.join(",")))
        .await;
    assert_http_error(&response, 400, "INVALID_MESSAGE");

    let (status, body) = server
        .http("alice")
        .get(&format!("/v1/presence?userIds={}", users[..100].join(",")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["presence"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_close_flood_reaches_contacts_coalesced_and_ends_offline() {
    let (server, _id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let started = std::time::Instant::now();
    for _ in 0..40 {
        server.connect("bob").await.close().await;
    }
    let seconds = started.elapsed().as_secs_f64();
    // The last change is settled at most a window after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = alice.drain_type("presence", SHORT).await;

    assert!(events.iter().all(|e| e["userId"] == "bob"), "{events:?}");
    assert!(
        (events.len() as f64) <= seconds.ceil() + 1.0,
        "{} events in {seconds:.1} s of 40 connect-close cycles: {events:?}",
        events.len()
    );
    let at: Vec<i64> = events.iter().map(|e| e["at"].as_i64().unwrap()).collect();
    assert!(
        at.windows(2).all(|w| w[1] - w[0] >= 1000),
        "events less than a second apart: {at:?}"
    );
    let last = events.last().expect("bob's presence was announced");
    assert_eq!(
        last["status"], "offline",
        "the latest state wins: {events:?}"
    );
    let (_, body) = server.http("alice").get("/v1/presence?userIds=bob").await;
    assert_eq!(body["presence"][0]["status"], "offline");
}
