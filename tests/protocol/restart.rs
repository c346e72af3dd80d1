//! Section 6, restart rules: a new process forgets every connection of the previous one,
//! sets their users' `lastSeen` from their last frame, and sends no presence event for it.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_forgets_old_connections_and_keeps_their_last_frame_as_last_seen() {
    // GIVEN bob connected on two devices (his frames all stamped between `before` and
    // `last_frame`), and the server clock past his last frame
    let (mut server, id) = direct_pair().await;
    let before = server.server_time().await;
    let mut phone = server.connect_device("bob", "phone").await;
    let mut laptop = server.connect_device("bob", "laptop").await;
    phone.heartbeat().await;
    let last_frame = laptop.heartbeat().await["serverTime"]
        .as_i64()
        .expect("serverTime");
    server.wait_for_clock_past(last_frame).await;

    // WHEN the process dies without running any disconnect, and a new one starts
    server.kill9();
    server.restart().await;

    // THEN bob is offline, last seen at a frame of his, not at the restart
    let (status, body) = server.http("alice").get("/v1/presence?userIds=bob").await;
    assert_eq!(status, 200, "{body}");
    let bob = &body["presence"][0];
    assert_eq!(
        bob["status"], "offline",
        "old connections are forgotten: {body}"
    );
    let last_seen = bob["lastSeen"].as_i64().expect("an integer lastSeen");
    assert!(
        (before..=last_frame).contains(&last_seen),
        "lastSeen {last_seen} is not one of bob's frames (between {before} and {last_frame})"
    );

    // AND when he comes back his new connection is his first: alice, connected since the
    // restart, gets `online` for it, and no presence about bob came before it
    let mut alice = server.connect("alice").await;
    let mut back = server.connect_device("bob", "phone").await;
    let first = alice
        .recv_where("presence of bob", |f| is_presence_of(f, "bob"))
        .await;
    assert_eq!(first["status"], "online", "{first}");
    assert!(
        first["lastSeen"].as_i64().expect("lastSeen") > last_frame,
        "the online event carries the new connect time: {first}"
    );
    // AND messages reach the new connection, not the forgotten ones
    alice.send_message(&id, "m-1", "welcome back").await;
    assert_eq!(back.recv_type("message.new").await["seq"], 1);
}
