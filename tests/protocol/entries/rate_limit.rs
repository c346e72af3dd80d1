//! Entries count against the send rate limit.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_react_and_delete_count_against_the_send_rate_limit() {
    // Rate windows are whole minutes: a run that crosses one is run again (see
    // rate_limit.rs), and nothing is asserted before that check.
    const WINDOW_MS: i64 = 60_000;
    for attempt in 1..=3 {
        // GIVEN CHAT_RATE_LIMIT_PER_MIN=4 and bob's message in a direct conversation
        let server = server().env("CHAT_RATE_LIMIT_PER_MIN", "4").start().await;
        let id = conv_id(&server.http("alice").create_direct("bob").await);
        let mut bob = server.connect("bob").await;
        bob.send_message(&id, "bob-1", "react to this").await;
        let mut alice = server.connect("alice").await;
        let started = server.server_time().await;

        // WHEN alice sends, edits, retries the edit, reacts and deletes (4 counted
        // actions), then sends and reacts once more
        let send = alice.request(send_action(&id, "cm-1", "one")).await;
        let edit = alice.request(edit_action(&id, "e-1", 2, "one!")).await;
        let retry = alice.request(edit_action(&id, "e-1", 2, "one!")).await;
        let react = alice.request(react_action(&id, "r-1", 1, THUMBS_UP)).await;
        let delete = alice.request(delete_action(&id, "d-1", 2)).await;
        let over_send = alice.request(send_action(&id, "cm-2", "two")).await;
        let over_react = alice.request(react_action(&id, "r-2", 1, HEART)).await;
        let stored = last_seq(&server, "alice", &id).await;

        let ended = server.server_time().await;
        if ended.div_euclid(WINDOW_MS) != started.div_euclid(WINDOW_MS) {
            assert!(attempt < 3, "three runs in a row crossed a minute boundary");
            continue;
        }
        // THEN the four are acked, the retry too (not counted), and the next send and
        // reaction are RATE_LIMITED
        for (ack, kind) in [
            (&send, "message"),
            (&edit, "edit"),
            (&react, "reaction"),
            (&delete, "delete"),
        ] {
            assert_subset(
                ack,
                &json!({"type": "message.ack", "kind": kind, "duplicate": false}),
            );
        }
        assert_subset(
            &retry,
            &json!({"type": "message.ack", "seq": 3, "duplicate": true}),
        );
        for error in [&over_send, &over_react] {
            assert_ws_error(error, "RATE_LIMITED", error["requestId"].as_str());
            assert!(
                error["retryAfterMs"].as_i64().is_some_and(|ms| ms > 0),
                "{error}"
            );
        }
        assert_eq!(over_send["clientMessageId"], "cm-2");
        assert_eq!(stored, 5, "1 from bob and 4 from alice");
        return;
    }
}

// ---------------------------------------------------------------------------------------
