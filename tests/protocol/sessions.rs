//! `POST /v1/sessions/revoke` and the sockets of `DELETE /v1/devices/{deviceId}`: a
//! revoked token is refused on HTTP and at the handshake, the user's open sockets close
//! with 4003, other users are untouched, and the revocation survives a restart.

use std::time::Duration;

use crate::support::*;

/// A token for `user` issued `secs` seconds from now (negative: in the past).
fn issued(user: &str, secs: i64) -> String {
    jwt::with_claims(user, json!({ "iat": now_secs() + secs }))
}

async fn refused(server: &TestServer, token: &str) -> bool {
    let http = server
        .http_with_token(Some(token.to_owned()))
        .get("/v1/conversations")
        .await;
    let handshake = server
        .try_connect(&format!("v=1&token={token}"), None)
        .await;
    match (http.0, handshake) {
        (401, Err(e)) if e.status == Some(401) => true,
        (200, Ok(_)) => false,
        (status, handshake) => panic!("HTTP {status}, handshake {:?}", handshake.err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_refuses_earlier_tokens_and_closes_every_socket_of_the_user() {
    let server = start().await;
    let old = issued("alice", -10);
    // GIVEN alice on two devices and bob online
    let mut phone = server
        .connect_with("v=1&deviceId=phone", Some(&old), "alice/phone")
        .await;
    let mut laptop = server
        .connect_with("v=1&deviceId=laptop", Some(&old), "alice/laptop")
        .await;
    let mut bob = server.connect("bob").await;
    // WHEN alice revokes her sessions
    let second_of_revoking = now_secs();
    let (status, body) = server
        .http_with_token(Some(old.clone()))
        .post("/v1/sessions/revoke", &json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    // THEN both her sockets close with 4003, her old token is refused everywhere
    assert_eq!(phone.recv_close(Duration::from_secs(5)).await, Some(4003));
    assert_eq!(laptop.recv_close(Duration::from_secs(5)).await, Some(4003));
    assert!(refused(&server, &old).await);
    // ...and so is one issued in the second the revocation came (iat counts whole
    // seconds, and the revocation came in this second or later)
    let same_second = jwt::with_claims("alice", json!({ "iat": second_of_revoking }));
    assert!(refused(&server, &same_second).await);
    // a token issued after it works, and bob saw nothing but alice going offline
    let fresh = issued("alice", 2);
    assert!(!refused(&server, &fresh).await);
    bob.heartbeat().await;
    assert!(!refused(&server, &server.token("bob")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_survives_a_restart() {
    let mut server = start().await;
    let old = issued("alice", -10);
    let (status, _) = server
        .http_with_token(Some(old.clone()))
        .post("/v1/sessions/revoke", &json!({}))
        .await;
    assert_eq!(status, 204);
    server.restart().await;
    assert!(refused(&server, &old).await);
    assert!(!refused(&server, &issued("alice", 2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_device_closes_its_sockets_only() {
    let server = start().await;
    // GIVEN alice on her phone (no push registration) and her laptop
    let mut phone = server.connect_device("alice", "phone").await;
    let mut laptop = server.connect_device("alice", "laptop").await;
    // WHEN she removes the phone
    let (status, body) = server.http("alice").delete("/v1/devices/phone").await;
    assert_eq!(status, 204, "{body}");
    // THEN its socket closes with 4003 and the laptop stays
    assert_eq!(phone.recv_close(Duration::from_secs(5)).await, Some(4003));
    laptop.heartbeat().await;
    // A device with neither a registration nor a socket is not found.
    assert_http_error(
        &server.http("alice").delete("/v1/devices/phone").await,
        404,
        "NOT_FOUND",
    );
    // Tokens are untouched: the phone may connect again.
    server
        .connect_device("alice", "phone")
        .await
        .heartbeat()
        .await;
}
