//! Section 1: tokens at the WebSocket handshake and on HTTP, and `/health`.

use crate::support::*;

/// Asserts the handshake on `/ws?{query}` is refused with HTTP 401 (no socket opened).
async fn assert_handshake_refused(server: &TestServer, query: &str, bearer: Option<&str>) {
    match server.try_connect(query, bearer).await {
        Ok(mut ws) => {
            let frame = ws.try_recv_where(SHORT, |_| true).await;
            panic!("handshake with {query:?} / bearer {bearer:?} was accepted (then: {frame:?})")
        }
        Err(e) => assert_eq!(e.status, Some(401), "handshake with {query:?}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_ok_without_a_token() {
    let server = start().await;

    let (status, body) = server.http_anon().get("/health").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_handshake_without_token_is_401() {
    let server = start().await;
    assert_handshake_refused(&server, "v=1&deviceId=phone-1", None).await;
}

/// One test per kind of bad token, at the WebSocket handshake.
macro_rules! ws_refuses_token {
    ($($name:ident => $token:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let server = start().await;
            let token: String = $token;
            assert_handshake_refused(&server, &format!("v=1&token={token}"), None).await;
        }
    )*};
}

ws_refuses_token! {
    ws_handshake_with_garbage_token_is_401 => "not-a-jwt".to_owned();
    ws_handshake_with_expired_token_is_401 => jwt::expired("alice");
    ws_handshake_with_wrong_secret_is_401 => jwt::wrong_secret("alice");
    ws_handshake_with_alg_none_is_401 => jwt::alg_none("alice");
    ws_handshake_with_hs512_token_is_401 => jwt::hs512("alice");
    ws_handshake_with_future_nbf_is_401 => jwt::not_yet_valid("alice");
    ws_handshake_without_exp_is_401 => jwt::missing_exp("alice");
    ws_handshake_with_invalid_sub_is_401 => jwt::invalid_sub();
    ws_handshake_with_too_long_sub_is_401 => jwt::valid(&"a".repeat(129));
    ws_handshake_without_sub_is_401 => jwt::missing_sub();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_handshake_with_bad_bearer_header_is_401() {
    let server = start().await;
    assert_handshake_refused(&server, "v=1", Some(&jwt::expired("alice"))).await;
    assert_handshake_refused(&server, "v=1", Some(&jwt::wrong_secret("alice"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_bearer_header_on_upgrade_is_accepted() {
    let server = start().await;
    let conversation = conv_id(&server.http("bob").create_direct("alice").await);
    let mut alice = server.connect_bearer("alice", "native-1").await;

    let ack = alice.send_message(&conversation, "cm-1", "hi").await;

    assert_eq!(ack["seq"], 1, "{ack}");
    let message = &server.http("bob").messages(&conversation, "").await["messages"][0];
    assert_eq!(
        message["senderId"], "alice",
        "the bearer token identifies the sender"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_query_token_is_accepted_with_and_without_device_id() {
    let server = start().await;

    let mut plain = server.connect("alice").await;
    let mut device = server.connect_device("alice", "phone-1").await;
    let mut max_device = server
        .connect_device("alice", &format!("A.b_c-{}", "9".repeat(58)))
        .await;

    plain.heartbeat().await;
    device.heartbeat().await;
    max_device.heartbeat().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_use_the_whole_allowed_charset() {
    let server = start().await;
    let user = "Al.ice_1@example-2";
    let conversation = conv_id(&server.http(user).create_direct("bob").await);
    let mut ws = server.connect(user).await;

    ws.send_message(&conversation, "cm-1", "hi").await;

    let longest = "u".repeat(128);
    let (status, body) = server.http(&longest).get("/v1/conversations").await;
    assert_eq!(status, 200, "a 128-char user id is valid: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_handshake_with_invalid_device_id_is_refused() {
    let server = start().await;
    let token = server.token("alice");
    for device in ["bad%20device", &"d".repeat(65), "bad%2Fslash"] {
        let query = format!("v=1&token={token}&deviceId={device}");
        match server.try_connect(&query, None).await {
            Ok(_) => panic!("deviceId {device:?} was accepted"),
            Err(e) => {
                let status = e.status.unwrap_or(0);
                assert!((400..500).contains(&status), "deviceId {device:?}: {e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_is_answered_with_and_without_request_id() {
    let server = start().await;
    let token = server.token("alice");
    let mut ws = server
        .try_connect(&format!("v=1&token={token}&deviceId=phone-1"), None)
        .await
        .expect("a valid token opens the socket");
    let t0 = now_ms();

    ws.send_json(&json!({"action": "heartbeat"})).await;
    let ack = ws.recv_type("heartbeat.ack").await;
    assert_keys(
        &ack,
        &["type", "requestId", "serverTime", "heartbeatIntervalMs"],
    );
    assert_eq!(ack["requestId"], Value::Null, "{ack}");
    assert_eq!(ack["heartbeatIntervalMs"], 60_000, "{ack}");
    assert_recent_ms(&ack["serverTime"], t0);

    let ack = ws
        .request(json!({"action": "heartbeat", "requestId": "hb-1"}))
        .await;
    assert_subset(
        &ack,
        &json!({"type": "heartbeat.ack", "requestId": "hb-1", "heartbeatIntervalMs": 60_000}),
    );
    ws.expect_quiet(SHORT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_without_token_is_401_unauthorized() {
    let server = start().await;
    let anon = server.http_anon();

    for path in ["/v1/conversations", "/v1/presence?userIds=bob"] {
        let response = anon.get(path).await;
        assert_http_error(&response, 401, "UNAUTHORIZED");
        assert_eq!(
            response.1["error"]["retryAfterMs"],
            Value::Null,
            "{}",
            response.1
        );
    }
    let response = anon
        .post(
            "/v1/conversations",
            &json!({"type": "direct", "members": ["bob"]}),
        )
        .await;
    assert_http_error(&response, 401, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_with_bad_tokens_is_401_unauthorized() {
    let server = start().await;
    for (kind, token) in jwt::bad_tokens() {
        let response = server
            .http_with_token(Some(token))
            .get("/v1/conversations")
            .await;
        assert_eq!(response.0, 401, "{kind} token: {}", response.1);
        assert_http_error(&response, 401, "UNAUTHORIZED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_with_valid_token_is_accepted() {
    let server = start().await;

    let (status, body) = server.http("alice").get("/v1/conversations").await;

    assert_eq!(status, 200, "{body}");
    assert_subset(&body, &json!({"conversations": [], "nextCursor": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subcommand_prints_a_token_the_server_accepts() {
    let server = start().await;

    let output = clean_command(env!("CARGO_BIN_EXE_chat-local"))
        .args(["token", "alice"])
        .env("CHAT_JWT_SECRET", TEST_SECRET)
        .output()
        .expect("run `chat-local token alice`");

    assert!(output.status.success(), "exit status {:?}", output.status);
    let token = String::from_utf8(output.stdout).expect("UTF-8 token");
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token:?}");
    let (status, body) = server
        .http_with_token(Some(token.to_owned()))
        .get("/v1/conversations")
        .await;
    assert_eq!(status, 200, "{body}");
    let mut ws = server
        .try_connect(&format!("v=1&token={token}"), None)
        .await
        .expect("the printed token opens a WebSocket");
    ws.heartbeat().await;
}

ws_refuses_token! {
    ws_handshake_with_rs256_header_is_401 => jwt::rs256("alice");
    ws_handshake_with_tampered_claims_is_401 => jwt::tampered("mallory", "alice");
    ws_handshake_with_token_over_8_kib_is_401 => jwt::oversized("alice");
    ws_handshake_with_empty_token_is_401 => String::new();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_handshake_refuses_every_bad_token_in_query_and_bearer_header() {
    let server = start().await;
    for (kind, token) in jwt::bad_tokens() {
        let query = format!("v=1&deviceId=phone-1&token={token}");
        match server.try_connect(&query, None).await {
            Ok(_) => panic!("{kind} token in the query opened a socket"),
            Err(e) => assert_eq!(e.status, Some(401), "{kind} token in the query: {e}"),
        }
        match server
            .try_connect("v=1&deviceId=phone-1", Some(&token))
            .await
        {
            Ok(_) => panic!("{kind} token as bearer header opened a socket"),
            Err(e) => assert_eq!(e.status, Some(401), "{kind} token as bearer: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_every_bad_token_on_every_route_kind() {
    let server = start().await;
    let routes: [(Method, &str, Option<Value>); 5] = [
        (Method::GET, "/v1/conversations", None),
        (Method::GET, "/v1/presence?userIds=bob", None),
        (Method::POST, "/v1/sync", Some(json!({"conversations": []}))),
        (
            Method::POST,
            "/v1/devices",
            Some(json!({"deviceId": "phone-1", "platform": "fcm", "token": "t"})),
        ),
        (Method::DELETE, "/v1/devices/phone-1", None),
    ];
    for (kind, token) in jwt::bad_tokens() {
        let http = server.http_with_token(Some(token));
        for (method, path, body) in &routes {
            let response = http.call(method.clone(), path, body.as_ref()).await;
            assert_eq!(
                response.0, 401,
                "{kind} token, {method} {path}: {}",
                response.1
            );
            assert_http_error(&response, 401, "UNAUTHORIZED");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_conversation_creation_creates_nothing() {
    let server = start().await;
    let mut bob = server.connect("bob").await;

    for (kind, token) in jwt::bad_tokens() {
        let mallory = server.http_with_token(Some(token));
        for body in [
            json!({"type": "direct", "members": ["bob"]}),
            json!({"type": "group", "name": "Team", "members": ["bob"]}),
        ] {
            let response = mallory.post("/v1/conversations", &body).await;
            assert_eq!(
                response.0, 401,
                "{kind} token, create {body}: {}",
                response.1
            );
        }
    }

    bob.expect_none("conversation event", SHORT, |f| {
        f["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("conversation."))
    })
    .await;
    for user in ["alice", "bob", "mallory"] {
        let (status, body) = server.http(user).get("/v1/conversations").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["conversations"],
            json!([]),
            "{user} sees a conversation: {body}"
        );
    }
    // The same request with a valid token does create it and tell bob (not vacuous).
    server.http("alice").create_group("Team", &["bob"]).await;
    bob.recv_type("conversation.new").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_leave_no_connection_behind() {
    let server = start().await;
    server.http("bob").create_direct("alice").await;
    let mut bob = server.connect("bob").await;

    for (kind, token) in jwt::bad_tokens() {
        let refused = server
            .try_connect(&format!("v=1&token={token}"), None)
            .await;
        assert!(
            refused.is_err(),
            "{kind} token in the query opened a socket"
        );
        let refused = server.try_connect("v=1", Some(&token)).await;
        assert!(refused.is_err(), "{kind} token as bearer opened a socket");
    }

    bob.expect_silence("presence", SHORT).await;
    let (status, body) = server.http("bob").get("/v1/presence?userIds=alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["presence"],
        json!([{"userId": "alice", "status": "offline", "lastSeen": null}]),
        "a refused handshake left alice online or with a lastSeen"
    );
    // A valid handshake is announced to bob (the silence above was not vacuous).
    let _alice = server.connect("alice").await;
    let online = bob.recv_type("presence").await;
    assert_subset(&online, &json!({"userId": "alice", "status": "online"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_http_writes_store_and_send_nothing() {
    let (server, direct) = direct_pair().await;
    let group = conv_id(&server.http("alice").create_group("Team", &["bob"]).await);
    let mut bob = server.connect("bob").await;
    server
        .http("bob")
        .send_message(&direct, "cm-bob", "hi")
        .await;
    // Bob's own HTTP send reaches his socket: wait for it so it is not mistaken below.
    bob.recv_type("message.new").await;

    for (kind, token) in jwt::bad_tokens() {
        let alice = server.http_with_token(Some(token));
        let writes = [
            alice.send_message(&direct, "cm-forged", "forged").await,
            alice.send_message(&group, "cm-forged", "forged").await,
            alice
                .post(
                    &format!("/v1/conversations/{direct}/receipts"),
                    &json!({"deliveredUpTo": 1, "readUpTo": 1}),
                )
                .await,
            alice.add_members(&group, &["mallory"]).await,
            alice.remove_member(&group, "bob").await,
            alice
                .put(
                    &format!("/v1/conversations/{group}/settings"),
                    &json!({"muted": true}),
                )
                .await,
            alice
                .post(
                    "/v1/devices",
                    &json!({"deviceId": "phone-1", "platform": "fcm", "token": "t"}),
                )
                .await,
        ];
        for response in &writes {
            assert_eq!(response.0, 401, "{kind} token: {}", response.1);
            assert_http_error(response, 401, "UNAUTHORIZED");
        }
    }

    bob.expect_none("event caused by a refused request", SHORT, |f| {
        f["type"] != "presence"
    })
    .await;
    let alice = server.http("alice");
    assert_eq!(alice.conversation(&direct).await["lastSeq"], 1);
    assert_eq!(alice.conversation(&group).await["lastSeq"], 0);
    let direct_view = alice.conversation(&direct).await;
    assert_subset(
        member(&direct_view, "alice"),
        &json!({"deliveredUpTo": 0, "readUpTo": 0}),
    );
    let group_view = alice.conversation(&group).await;
    assert_eq!(member_ids(&group_view), ["alice", "bob"]);
    assert_eq!(group_view["muted"], false);
    let response = alice.delete("/v1/devices/phone-1").await;
    assert_http_error(&response, 404, "NOT_FOUND");
    // With a valid token the same send reaches bob (the silence was not vacuous).
    let (status, body) = alice.send_message(&group, "cm-real", "real").await;
    assert_eq!(status, 201, "{body}");
    let new = bob.recv_type("message.new").await;
    assert_subset(
        &new,
        &json!({"conversationId": group, "clientMessageId": "cm-real"}),
    );
}
