//! Section 1, the token rules as the running server applies them (the unit tests of the
//! verifier cover the edges to the second): 30 s of leeway on `exp` and `nbf`,
//! `CHAT_JWT_ISSUER` / `CHAT_JWT_AUDIENCE` enforced when set, the `token` query parameter
//! winning over an `Authorization` header, and `CHAT_JWT_SECRET` required off loopback.
//! Every token is tried both on HTTP and at the WebSocket handshake.

use crate::support::*;

/// Whether the server takes `token`, on HTTP and at the handshake alike (failing the test
/// when the two disagree or answer anything but success or 401).
async fn accepts(server: &TestServer, token: &str) -> bool {
    let (status, body) = server
        .http_with_token(Some(token.to_owned()))
        .get("/v1/conversations")
        .await;
    let http = match status {
        200 => true,
        401 => {
            assert_http_error(&(status, body), 401, "UNAUTHORIZED");
            false
        }
        _ => panic!("GET /v1/conversations answered {status} {body}"),
    };
    let ws = match server
        .try_connect(&format!("v=1&token={token}"), None)
        .await
    {
        Ok(mut ws) => {
            ws.heartbeat().await;
            true
        }
        Err(e) if e.status == Some(401) => false,
        Err(e) => panic!("handshake: {e}"),
    };
    assert_eq!(http, ws, "HTTP and the handshake disagree on {token}");
    http
}

/// A token for alice with `claims` added to (or replacing) the standard ones.
fn token(claims: Value) -> String {
    jwt::with_claims("alice", claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exp_has_30_seconds_of_leeway() {
    let server = start().await;
    let now = now_secs();

    // 10 s past exp is inside the leeway (20 s of margin for a slow machine)...
    assert!(accepts(&server, &token(json!({"exp": now - 10}))).await);
    // ...60 s past it is not (30 s of margin the other way).
    assert!(!accepts(&server, &token(json!({"exp": now - 60}))).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbf_has_30_seconds_of_leeway() {
    let server = start().await;
    let now = now_secs();

    assert!(accepts(&server, &token(json!({"nbf": now + 10}))).await);
    assert!(!accepts(&server, &token(json!({"nbf": now + 60}))).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_are_enforced_when_configured() {
    let server = server()
        .env("CHAT_JWT_ISSUER", "https://id.example")
        .env("CHAT_JWT_AUDIENCE", "chat-app")
        .start()
        .await;

    let good = [
        (
            "iss and aud",
            json!({"iss": "https://id.example", "aud": "chat-app"}),
        ),
        (
            "aud as an array holding it",
            json!({"iss": "https://id.example", "aud": ["other", "chat-app"]}),
        ),
    ];
    for (what, claims) in good {
        assert!(accepts(&server, &token(claims)).await, "refused: {what}");
    }
    let bad = [
        ("no iss", json!({"aud": "chat-app"})),
        ("no aud", json!({"iss": "https://id.example"})),
        ("neither", json!({})),
        (
            "another iss",
            json!({"iss": "https://evil.example", "aud": "chat-app"}),
        ),
        (
            "another aud",
            json!({"iss": "https://id.example", "aud": "other"}),
        ),
        (
            "an aud array without it",
            json!({"iss": "https://id.example", "aud": ["other", "more"]}),
        ),
        ("iss not a string", json!({"iss": 7, "aud": "chat-app"})),
    ];
    for (what, claims) in bad {
        assert!(!accepts(&server, &token(claims)).await, "accepted: {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_are_not_checked_when_unset() {
    let server = start().await;

    let claims = json!({"iss": "https://anyone.example", "aud": ["whatever"]});
    assert!(accepts(&server, &token(claims)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subcommand_carries_the_configured_issuer_and_audience() {
    let server = server()
        .env("CHAT_JWT_ISSUER", "https://id.example")
        .env("CHAT_JWT_AUDIENCE", "chat-app")
        .start()
        .await;

    let output = clean_command(env!("CARGO_BIN_EXE_chat-local"))
        .args(["token", "alice"])
        .env("CHAT_JWT_SECRET", TEST_SECRET)
        .env("CHAT_JWT_ISSUER", "https://id.example")
        .env("CHAT_JWT_AUDIENCE", "chat-app")
        .output()
        .expect("run `chat-local token alice`");

    assert!(output.status.success(), "exit status {:?}", output.status);
    let token = String::from_utf8(output.stdout).expect("UTF-8 token");
    assert!(accepts(&server, token.trim()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_token_wins_over_the_authorization_header() {
    let server = start().await;
    let conversation = conv_id(&server.http("alice").create_direct("carol").await);

    // Both valid: the connection is alice's (the query), not bob's (the header); bob is
    // not even in the conversation.
    let query = format!("v=1&token={}", server.token("alice"));
    let mut ws = server
        .connect_with(&query, Some(&server.token("bob")), "alice+bob")
        .await;
    let ack = ws.send_message(&conversation, "cm-1", "who am I?").await;
    assert_eq!(ack["seq"], 1, "{ack}");
    let history = server.http("carol").messages(&conversation, "").await;
    assert_eq!(history["messages"][0]["senderId"], "alice", "{history}");

    // A bad query token is not rescued by a good header...
    let refused = server
        .try_connect(
            &format!("v=1&token={}", jwt::expired("alice")),
            Some(&server.token("alice")),
        )
        .await
        .expect_err("an expired query token with a valid header must be refused");
    assert_eq!(refused.status, Some(401), "{refused}");

    // ...and a bad header does not spoil a good query token.
    let query = format!("v=1&token={}", server.token("alice"));
    let mut ws = server
        .connect_with(&query, Some(&jwt::wrong_secret("alice")), "alice")
        .await;
    ws.heartbeat().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_the_server_refuses_a_non_loopback_address() {
    let (status, stderr) = server()
        .listen("0.0.0.0:0")
        .env_remove("CHAT_JWT_SECRET")
        .start_refused();

    assert!(!status.success(), "exit status {status:?}");
    assert!(
        stderr.contains("CHAT_JWT_SECRET"),
        "the error names the variable: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_the_server_serves_a_non_loopback_address() {
    let server = server().listen("0.0.0.0:0").start().await;

    assert!(server.addr().ip().is_unspecified(), "{}", server.addr());
    assert!(accepts(&server, &server.token("alice")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_on_loopback_only_development_tokens_are_accepted() {
    let server = server().env_remove("CHAT_JWT_SECRET").start().await;

    // Tokens signed with the test secret are not the development secret's.
    assert!(!accepts(&server, &server.token("alice")).await);
    let output = clean_command(env!("CARGO_BIN_EXE_chat-local"))
        .args(["token", "alice"])
        .output()
        .expect("run `chat-local token alice`");
    assert!(output.status.success(), "exit status {:?}", output.status);
    let token = String::from_utf8(output.stdout).expect("UTF-8 token");
    assert!(accepts(&server, token.trim()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_closed_with_4001_when_its_token_expires() {
    let (server, id) = direct_pair().await;
    // exp 28 s ago: accepted for 1 to 2 more seconds (30 s of leeway).
    let expiring = token(json!({"exp": now_secs() - 28}));
    let mut alice = server
        .try_connect(&format!("token={expiring}"), None)
        .await
        .expect("the handshake takes a token inside the leeway");
    alice.heartbeat().await;
    let mut bob = server.connect("bob").await;

    assert_eq!(
        alice.recv_close(Duration::from_secs(5)).await,
        Some(4001),
        "closed with the token-expired code"
    );
    // Nothing more reaches the old socket's user through it; a fresh token works.
    bob.send_message(&id, "after", "still there?").await;
    let mut again = server.connect("alice").await;
    let synced = server.http("alice").messages(&id, "after=0").await;
    assert_eq!(seqs(synced["messages"].as_array().unwrap()), [1]);
    again.heartbeat().await;
}

/// An identity provider's tokens: a key set served on loopback, the server told of it and
/// of the issuer. No secret: our HS256 tokens, and the `token` subcommand, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_rs256_and_es256_tokens_are_accepted() {
    use chat_tests::provider::{Answer, Jwks, Key, document};
    let (rsa, ec) = (Key::load("rsa-a", "r1"), Key::load("ec-a", "e1"));
    let jwks = Jwks::start(Answer::Json(document(&[&rsa, &ec]))).await;
    let issuer = "https://issuer.example/";
    let server = server()
        .env_remove("CHAT_JWT_SECRET")
        .env("CHAT_JWT_JWKS_URL", &jwks.url)
        .env("CHAT_JWT_ISSUER", issuer)
        .env("CHAT_JWT_AUDIENCE", "chat-app")
        .start()
        .await;
    let claims = |sub: &str| json!({ "sub": sub, "iss": issuer, "aud": "chat-app", "exp": now_secs() + 600 });
    // The set was fetched at start, once.
    assert_eq!(jwks.requests(), 1);
    assert!(accepts(&server, &rsa.sign(&claims("alice"))).await);
    assert!(accepts(&server, &ec.sign(&claims("bob"))).await);
    // The user is the token's `sub`.
    let mut ws = server
        .connect_with("v=1", Some(&ec.sign(&claims("bob"))), "bob")
        .await;
    ws.heartbeat().await;
    assert_eq!(jwks.requests(), 1, "keys are cached");
    // Another issuer, another audience, our own HS256 tokens: refused.
    let mut other = claims("alice");
    other["iss"] = "https://other.example/".into();
    assert!(!accepts(&server, &rsa.sign(&other)).await);
    other = claims("alice");
    other["aud"] = "other-app".into();
    assert!(!accepts(&server, &rsa.sign(&other)).await);
    assert!(!accepts(&server, &server.token("alice")).await);
    let output = clean_command(env!("CARGO_BIN_EXE_chat-local"))
        .args(["token", "alice"])
        .env("CHAT_JWT_JWKS_URL", &jwks.url)
        .env("CHAT_JWT_ISSUER", issuer)
        .env("CHAT_JWT_AUDIENCE", "chat-app")
        .output()
        .expect("run `chat-local token alice`");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("identity provider"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_needs_an_issuer_an_audience_and_https() {
    for (url, issuer, audience, named) in [
        (
            "http://127.0.0.1:9/jwks.json",
            None,
            Some("chat-app"),
            "CHAT_JWT_ISSUER",
        ),
        (
            "http://127.0.0.1:9/jwks.json",
            Some("https://issuer.example/"),
            None,
            "CHAT_JWT_AUDIENCE",
        ),
        (
            "http://keys.example/jwks.json",
            Some("https://issuer.example/"),
            Some("chat-app"),
            "CHAT_JWT_JWKS_URL",
        ),
    ] {
        let mut builder = server().env("CHAT_JWT_JWKS_URL", url);
        if let Some(issuer) = issuer {
            builder = builder.env("CHAT_JWT_ISSUER", issuer);
        }
        if let Some(audience) = audience {
            builder = builder.env("CHAT_JWT_AUDIENCE", audience);
        }
        let (status, stderr) = builder.start_refused();
        assert!(!status.success(), "exit status {status:?}");
        assert!(stderr.contains(named), "the error names {named}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_alone_serves_a_non_loopback_address_and_survives_its_provider_down() {
    // GIVEN a provider whose key set endpoint is down when the server starts
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let server = server()
        .listen("0.0.0.0:0")
        .env_remove("CHAT_JWT_SECRET")
        .env("CHAT_JWT_JWKS_URL", &url)
        .env("CHAT_JWT_ISSUER", "https://issuer.example/")
        .env("CHAT_JWT_AUDIENCE", "chat-app")
        .start()
        .await;
    // THEN it serves, and refuses tokens it cannot check (not the development secret's)
    let key = chat_tests::provider::Key::load("rsa-a", "r1");
    let token = key.sign(
        &json!({ "sub": "alice", "iss": "https://issuer.example/", "aud": "chat-app", "exp": now_secs() + 600 }),
    );
    assert!(!accepts(&server, &token).await);
    assert!(!accepts(&server, &server.token("alice")).await);
}
