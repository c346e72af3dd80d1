//! Size caps not covered elsewhere, each answered with the protocol's codes (docs/protocol.md
//! sections 2, 5 and 7). The others live beside their feature: group size
//! (`conversations`), members per add call (`groups`), `userIds` in presence
//! (`presence`), conversations and `limit` in sync (`sync`), page sizes of conversations
//! and history (`conversations`, `history`), body and frame sizes (`validation`), tokens
//! (`auth`).

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_page_limit_is_1_to_100() {
    let server = start().await;
    let alice = server.http("alice");
    let id = conv_id(&alice.create_group("Team", &["bob"]).await);

    for limit in ["101", "0", "-1", "abc"] {
        let response = alice
            .get(&format!("/v1/conversations/{id}/members?limit={limit}"))
            .await;
        assert_eq!(response.0, 400, "limit={limit}: {}", response.1);
        assert_http_error(&response, 400, "INVALID_MESSAGE");
    }
    let (status, body) = alice
        .get(&format!("/v1/conversations/{id}/members?limit=100"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(2), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_token_is_at_most_4_kib() {
    let server = start().await;
    let bob = server.http("bob");

    let response = bob
        .post(
            "/v1/devices",
            &json!({"deviceId": "phone-1", "platform": "fcm", "token": "t".repeat(4097)}),
        )
        .await;
    assert_http_error(&response, 400, "INVALID_MESSAGE");

    bob.register_device("phone-1", "fcm", &"t".repeat(4096))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_over_1_mib_closes_the_connection_with_1009_and_stores_nothing() {
    let (server, id) = direct_pair().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let frame = send_action(&id, "cm-huge", &"x".repeat(1024 * 1024 + 1)).to_string();

    // The server may close before it has read the whole frame: a failed write is fine.
    let _ = alice.try_send_text(frame).await;

    assert_eq!(alice.recv_close(RECV_TIMEOUT).await, Some(1009));
    bob.heartbeat().await;
    bob.expect_silence("message.new", SHORT).await;
    assert_eq!(server.http("bob").conversation(&id).await["lastSeq"], 0);
    let mut again = server.connect("alice").await;
    assert_eq!(again.send_message(&id, "cm-2", "small").await["seq"], 1);
}
