//! Edges of the transport: oversized and unreadable frames, non-upgrade requests, retries
//! after leaving, and a client that stops reading.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_send_is_answered_with_its_request_and_client_message_ids() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut frame = send_action(&id, "big-1", &"x".repeat(40 * 1024));
    frame["requestId"] = json!("r-big");
    alice.send_json(&frame).await;

    let error = alice.recv_type("error").await;

    assert_eq!(error["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(error["requestId"], "r-big");
    assert_eq!(error["clientMessageId"], "big-1");
    alice.heartbeat().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_leaving_the_group_still_gets_the_original_ack() {
    let server = start().await;
    let id = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let (status, first) = server.http("bob").send_message(&id, "m-1", "hi").await;
    assert_eq!(status, 201, "{first}");
    let (status, _) = server.http("bob").remove_member(&id, "bob").await;
    assert_eq!(status, 204);

    let (status, retry) = server.http("bob").send_message(&id, "m-1", "hi").await;

    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["messageId"], first["messageId"]);
    assert_eq!(retry["seq"], first["seq"]);
    let (status, _) = server.http("bob").send_message(&id, "m-2", "again").await;
    assert_eq!(status, 404, "a new message from a former member is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_request_to_the_websocket_path_gets_a_json_error() {
    let server = start().await;
    let token = server.token("alice");

    let response = server
        .http_anon()
        .get(&format!("/ws?v=1&token={token}"))
        .await;

    assert_http_error(&response, 400, "INVALID_MESSAGE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let server = start().await;
    let mut alice = server.connect("alice").await;

    alice.send_raw_text(vec![b'{', 0xff, 0xfe, b'}']).await;

    assert_eq!(alice.recv_close(Duration::from_secs(5)).await, Some(1007));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_others_still_get_every_message() {
    // GIVEN bob never reads his socket, carol reads hers, no rate limit
    let server = server().env("CHAT_RATE_LIMIT_PER_MIN", "0").start().await;
    let id = conv_id(
        &server
            .http("alice")
            .create_group("Team", &["bob", "carol"])
            .await,
    );
    let mut bob = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    carol.ignore_type("presence");
    let mut alice = server.connect("alice").await;
    // WHEN alice sends far more large messages than bob's queue and socket buffers hold
    let text = "😀".repeat(4000);
    let total = 1600;
    // Carol reads as she should; alice never gets more than 64 messages (1 MB) ahead of
    // her, so a loaded test machine that slows carol's reading cannot make her the slow
    // client (the server's queue holds 4 MiB). Bob never reads.
    let carol_seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = carol_seen.clone();
    let carol_reads = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < total {
            let frame = carol.recv_type("message.new").await;
            seqs.push(frame["seq"].as_u64().unwrap());
            seen.store(seqs.len(), std::sync::atomic::Ordering::Release);
        }
        seqs
    });
    for i in 0..total {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while i > carol_seen.load(std::sync::atomic::Ordering::Acquire) + 64 {
            assert!(
                tokio::time::Instant::now() < deadline && !carol_reads.is_finished(),
                "carol stopped getting messages at {i}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        alice.send_message(&id, &format!("m-{i}"), &text).await;
    }
    // THEN carol got every message in order, and bob's connection was closed (1008)
    let seqs = carol_reads.await.unwrap();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
    assert_eq!(bob.recv_close(Duration::from_secs(30)).await, Some(1008));
    // AND bob recovers everything by sync after reconnecting
    let (status, synced) = server
        .http("bob")
        .post(
            "/v1/sync",
            &json!({"conversations": [{"conversationId": id, "afterSeq": 0}], "limit": 1000}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(synced["conversations"][0]["lastSeq"], total);
    assert_eq!(synced["conversations"][0]["hasMore"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_going_away_and_exits_cleanly() {
    let (mut server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    alice.send_message(&id, "m-1", "before shutdown").await;

    let exited = server.terminate(Duration::from_secs(10));

    assert_eq!(
        exited,
        Some(true),
        "the server exits 0 within 10 s of SIGTERM"
    );
    assert_eq!(alice.recv_close(Duration::from_secs(5)).await, Some(1001));
    // the acked message survived the shutdown
    server.restart().await;
    let history = server.http("bob").messages(&id, "").await;
    assert_eq!(history["messages"][0]["content"]["text"], "before shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_nothing_fanned_out_to_replay() {
    // GIVEN more messages than the fan-out hands to the outbox cleaner at once (256),
    // every one delivered (no rate limit)
    let mut server = server().env("CHAT_RATE_LIMIT_PER_MIN", "0").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let total = 600;
    for i in 0..total {
        alice.send_message(&id, &format!("m-{i}"), "hello").await;
    }
    for _ in 0..total {
        bob.recv_type("message.new").await;
    }
    // WHEN the server stops on SIGTERM
    assert_eq!(server.terminate(Duration::from_secs(10)), Some(true));
    // THEN it deleted every outbox row on the way out: the next start replays nothing
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    let left: i64 = db
        .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "outbox rows left after a clean stop");
}
