//! The end-to-end suite: the protocol's main paths against a whole deployment. By
//! default it runs against a `chat-local` process; with `CHAT_E2E_WS_URL`,
//! `CHAT_E2E_HTTP_URL` and `CHAT_E2E_JWT_SECRET` set (as `localstack/up.sh` writes them to
//! `target/emulators/stack.env`) it runs against that deployment: the stack from
//! `template.yaml` on a local AWS emulator, or a real AWS stage.
//!
//! With `CHAT_E2E_REQUIRE=1` (`localstack/e2e.sh` sets it) the deployment is required:
//! every test fails when a variable is missing or empty instead of quietly testing a
//! local process, so a broken `stack.env` cannot pass as a green emulator run.
//!
//! Every test uses user ids of its own (a unique prefix), so tests share a deployment
//! without seeing each other. What a deployment cannot show (the local push outbox, a
//! restart) is covered by the protocol suite and the adapter tests instead.

use std::time::Duration;

use chat_tests::*;
use serde_json::{Value, json};

/// The variables naming a deployment.
const DEPLOYMENT_VARS: [&str; 3] = [
    "CHAT_E2E_WS_URL",
    "CHAT_E2E_HTTP_URL",
    "CHAT_E2E_JWT_SECRET",
];

/// Whether the run must be against a deployment (`CHAT_E2E_REQUIRE=1`).
fn deployment_required() -> bool {
    std::env::var("CHAT_E2E_REQUIRE").is_ok_and(|v| v.trim() == "1")
}

/// The deployment under test: the one the `CHAT_E2E_*` variables name, else a local
/// `chat-local` process unless `CHAT_E2E_REQUIRE=1`.
async fn target() -> TestServer {
    let vars = DEPLOYMENT_VARS.map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    match vars {
        [Some(ws), Some(http), Some(secret)] => {
            assert!(
                ws.starts_with("ws://") || ws.starts_with("wss://"),
                "CHAT_E2E_WS_URL is not a WebSocket URL: {ws:?}"
            );
            TestServer::remote(&ws, &http, &secret)
        }
        _ if deployment_required() => {
            let missing: Vec<&str> = DEPLOYMENT_VARS
                .iter()
                .zip(&vars)
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| *name)
                .collect();
            panic!(
                "CHAT_E2E_REQUIRE=1 but {missing:?} are unset or empty: the suite would test \
                 a local chat-local instead of the deployment (check target/emulators/stack.env)"
            )
        }
        _ => TestServer::start(env!("CARGO_BIN_EXE_chat-local")).await,
    }
}

async fn direct(server: &TestServer, a: &str, b: &str) -> String {
    conv_id(&server.http(a).create_direct(b).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_deployment_is_the_target() {
    let server = target().await;
    if !deployment_required() {
        // A plain run may use either; `target()` itself enforces the requirement.
        return;
    }
    assert!(
        server.is_remote(),
        "CHAT_E2E_REQUIRE=1 but the target is local"
    );
    // The harness's own chat-local serves the push outbox; a deployment has no such route.
    let (status, body) = server.http_anon().get("/dev/push-outbox").await;
    assert_ne!(
        status, 200,
        "the target serves the local push outbox: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_at_the_handshake_and_a_good_one_connects() {
    let server = target().await;
    let refused = server
        .try_connect("v=1&token=not-a-token", None)
        .await
        .expect_err("a bad token must not open a socket");
    // API Gateway may answer 403 instead of 401: clients treat both as "log in again".
    assert!(matches!(refused.status, Some(401 | 403)), "{refused:?}");
    let mut alice = server.connect(&unique("alice")).await;
    let ack = alice.heartbeat().await;
    assert_eq!(ack["heartbeatIntervalMs"], 60_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_acked_and_fanned_out_to_every_other_connection() {
    let server = target().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = direct(&server, &alice, &bob).await;
    let mut bob_ws = server.connect(&bob).await;
    let mut alice_phone = server.connect_device(&alice, "phone").await;
    let mut alice_laptop = server.connect_device(&alice, "laptop").await;

    let ack = alice_phone.send_message(&id, "m-1", "hello").await;
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["duplicate"], false);

    let new = bob_ws.recv_type("message.new").await;
    assert_eq!(new["seq"], 1);
    assert_eq!(new["senderId"], alice.as_str());
    assert_eq!(new["content"]["text"], "hello");
    let echo = alice_laptop.recv_type("message.new").await;
    assert_eq!(echo["messageId"], ack["messageId"]);
    alice_phone
        .expect_silence("message.new", Duration::from_millis(500))
        .await;

    // a retry is the original
    let again = alice_phone.send_message(&id, "m-1", "hello").await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["seq"], 1);
    bob_ws
        .expect_silence("message.new", Duration::from_millis(500))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_seq_order_and_history_and_sync_have_them() {
    let server = target().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = direct(&server, &alice, &bob).await;
    let mut bob_ws = server.connect(&bob).await;
    let mut alice_ws = server.connect(&alice).await;
    for i in 1..=5 {
        alice_ws
            .send_message(&id, &format!("m-{i}"), &format!("text {i}"))
            .await;
    }
    let mut seqs = Vec::new();
    for _ in 0..5 {
        seqs.push(
            bob_ws.recv_type("message.new").await["seq"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);

    let page = server.http(&bob).messages(&id, "before=5&limit=2").await;
    let got: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(got, [3, 4]);
    assert_eq!(page["hasMore"], true);

    let (status, synced) = server
        .http(&bob)
        .post(
            "/v1/sync",
            &json!({"conversations": [{"conversationId": id, "afterSeq": 3}], "limit": 100}),
        )
        .await;
    assert_eq!(status, 200, "{synced}");
    let conv = &synced["conversations"][0];
    assert_eq!(conv["lastSeq"], 5);
    assert_eq!(conv["unreadCount"], 5);
    assert_eq!(conv["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_typing_reach_the_other_member() {
    let server = target().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = direct(&server, &alice, &bob).await;
    let mut alice_ws = server.connect(&alice).await;
    let mut bob_ws = server.connect(&bob).await;
    alice_ws.send_message(&id, "m-1", "hi").await;
    bob_ws.recv_type("message.new").await;

    let ok = bob_ws.receipt("read", &id, 1).await;
    assert_eq!(ok["type"], "ok");
    let receipt = alice_ws.recv_type("receipt").await;
    assert_eq!(receipt["userId"], bob.as_str());
    assert_eq!(
        (
            receipt["deliveredUpTo"].clone(),
            receipt["readUpTo"].clone()
        ),
        (json!(1), json!(1))
    );

    let ok = bob_ws
        .request(json!({"action": "typing", "conversationId": id, "isTyping": true}))
        .await;
    assert_eq!(ok["type"], "ok");
    let typing = alice_ws.recv_type("typing").await;
    assert_eq!(typing["userId"], bob.as_str());
    assert_eq!(typing["isTyping"], true);

    let conv = server.http(&bob).conversation(&id).await;
    assert_eq!(conv["unreadCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_connections() {
    let server = target().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    direct(&server, &alice, &bob).await;
    let mut alice_ws = server.connect(&alice).await;

    let bob_ws = server.connect(&bob).await;
    let online = alice_ws
        .recv_where("bob online", |f| {
            f["type"] == "presence" && f["status"] == "online"
        })
        .await;
    assert_eq!(online["userId"], bob.as_str());
    let (status, body) = server
        .http(&alice)
        .get(&format!("/v1/presence?userIds={bob}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["presence"][0]["status"], "online");

    bob_ws.close().await;
    let offline = alice_ws
        .recv_where("bob offline", |f| {
            f["type"] == "presence" && f["status"] == "offline"
        })
        .await;
    assert!(offline["lastSeen"].is_i64(), "{offline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_answered_and_the_connection_survives() {
    let server = target().await;
    let (alice, bob, mallory) = (unique("alice"), unique("bob"), unique("mallory"));
    let id = direct(&server, &alice, &bob).await;
    let mut mallory_ws = server.connect(&mallory).await;

    let mut frame = send_action(&id, "x-1", "let me in");
    frame["requestId"] = json!("r-1");
    mallory_ws.send_json(&frame).await;
    let error = mallory_ws.recv_type("error").await;
    assert_eq!(error["code"], "NOT_FOUND");
    assert_eq!(error["requestId"], "r-1");
    assert_eq!(error["clientMessageId"], "x-1");

    // Sent back to back: on AWS the answers may come in any order, so each is matched
    // by its requestId.
    mallory_ws
        .send_json(&json!({"action": "send", "requestId": "r-2", "conversationId": id}))
        .await;
    mallory_ws
        .send_json(&json!({"action": "dance", "requestId": "r-3"}))
        .await;
    for request in ["r-3", "r-2"] {
        let answer = mallory_ws.recv_response(request).await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["code"], "INVALID_MESSAGE", "{answer}");
    }
    mallory_ws.heartbeat().await;

    let response = server
        .http(&mallory)
        .get(&format!("/v1/conversations/{id}"))
        .await;
    assert_http_error(&response, 404, "NOT_FOUND");
    let response = server.http_anon().get("/v1/conversations").await;
    assert_http_error(&response, 401, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_client_is_forgotten_and_recovers_by_sync() {
    let server = target().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = direct(&server, &alice, &bob).await;
    let mut alice_ws = server.connect(&alice).await;
    let bob_ws = server.connect(&bob).await;
    bob_ws.close().await;

    // Delivery to the closed socket fails (gone: 410 on AWS); the send is still acked,
    // bob shows offline, and everything is there when he syncs.
    let ack = alice_ws.send_message(&id, "m-1", "are you there?").await;
    assert_eq!(ack["seq"], 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = server
            .http(&alice)
            .get(&format!("/v1/presence?userIds={bob}"))
            .await;
        if body["presence"][0]["status"] == "offline" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob still online: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut bob_again = server.connect(&bob).await;
    let (_, synced) = server
        .http(&bob)
        .post(
            "/v1/sync",
            &json!({"conversations": [{"conversationId": id, "afterSeq": 0}]}),
        )
        .await;
    let messages: &Vec<Value> = synced["conversations"][0]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_subset(
        &messages[0],
        &json!({"seq": 1, "senderId": alice, "messageId": ack["messageId"],
                "content": {"type": "text", "text": "are you there?"}}),
    );
    bob_again.heartbeat().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_changes_reach_the_members() {
    let server = target().await;
    let (alice, bob, carol) = (unique("alice"), unique("bob"), unique("carol"));
    let mut bob_ws = server.connect(&bob).await;
    let mut carol_ws = server.connect(&carol).await;

    let group = server
        .http(&alice)
        .create_group("Team", &[bob.as_str()])
        .await;
    let id = conv_id(&group);
    assert_eq!(group["memberCount"], 2);
    let new = bob_ws.recv_type("conversation.new").await;
    assert_eq!(new["conversation"]["conversationId"], id.as_str());

    let (status, body) = server
        .http(&alice)
        .add_members(&id, &[carol.as_str()])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        carol_ws.recv_type("conversation.new").await["conversation"]["memberCount"],
        3
    );
    assert_eq!(
        bob_ws.recv_type("conversation.updated").await["conversation"]["memberCount"],
        3
    );

    let (status, body) = server
        .http(&bob)
        .add_members(&id, &[unique("dave").as_str()])
        .await;
    assert_eq!(status, 403, "only admins add members: {body}");

    let (status, _) = server.http(&bob).remove_member(&id, &bob).await;
    assert_eq!(status, 204);
    assert_eq!(
        bob_ws.recv_type("conversation.removed").await["conversationId"],
        id.as_str()
    );
    let response = server
        .http(&bob)
        .get(&format!("/v1/conversations/{id}"))
        .await;
    assert_http_error(&response, 404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sends_and_receipts_behave_like_websocket_ones() {
    let server = target().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = direct(&server, &alice, &bob).await;
    let mut alice_ws = server.connect(&alice).await;
    let mut bob_ws = server.connect(&bob).await;

    let (status, ack) = server
        .http(&alice)
        .send_message(&id, "h-1", "over http")
        .await;
    assert_eq!(status, 201, "{ack}");
    assert_eq!(ack["seq"], 1);
    let (status, again) = server
        .http(&alice)
        .send_message(&id, "h-1", "over http")
        .await;
    assert_eq!((status, again["duplicate"].clone()), (200, json!(true)));
    assert_eq!(bob_ws.recv_type("message.new").await["seq"], 1);
    // an HTTP send has no sending socket: the sender's own connection gets it too
    assert_eq!(alice_ws.recv_type("message.new").await["seq"], 1);

    let (status, positions) = server
        .http(&bob)
        .post(
            &format!("/v1/conversations/{id}/receipts"),
            &json!({"readUpTo": 1}),
        )
        .await;
    assert_eq!(status, 200, "{positions}");
    assert_eq!(positions["deliveredUpTo"], 1);
    let receipt = alice_ws.recv_type("receipt").await;
    assert_eq!(receipt["readUpTo"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_register_and_unregister() {
    let server = target().await;
    let alice = unique("alice");
    let (status, body) = server
        .http(&alice)
        .post(
            "/v1/devices",
            &json!({"deviceId": "phone-1", "platform": "fcm", "token": unique("token")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["deviceId"], "phone-1");
    let (status, _) = server.http(&alice).delete("/v1/devices/phone-1").await;
    assert_eq!(status, 204);
    let response = server.http(&alice).delete("/v1/devices/phone-1").await;
    assert_http_error(&response, 404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reactions_and_deletes_are_entries_every_member_receives() {
    let server = target().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = direct(&server, &alice, &bob).await;
    let mut alice_ws = server.connect(&alice).await;
    let mut bob_ws = server.connect(&bob).await;
    let sent = alice_ws.send_message(&id, "m-1", "helo").await;
    let seq = sent["seq"].as_u64().unwrap();
    bob_ws.recv_type("message.new").await;

    // an edit and a reaction: each acked with its own seq and kind, each fanned out
    let edit = alice_ws
        .request(json!({
            "action": "edit", "conversationId": id, "clientMessageId": "e-1",
            "targetSeq": seq, "content": {"type": "text", "text": "hello"},
        }))
        .await;
    assert_eq!(
        (edit["type"].as_str(), edit["kind"].as_str()),
        (Some("message.ack"), Some("edit")),
        "{edit}"
    );
    let react = bob_ws
        .request(json!({
            "action": "react", "conversationId": id, "clientMessageId": "r-1",
            "targetSeq": seq, "emoji": "👍",
        }))
        .await;
    assert_eq!(react["kind"], "reaction", "{react}");
    let edited = bob_ws.recv_type("message.new").await;
    assert_eq!(
        (edited["kind"].as_str(), edited["targetSeq"].as_u64()),
        (Some("edit"), Some(seq))
    );
    let reacted = alice_ws.recv_type("message.new").await;
    assert_eq!(reacted["emoji"], "👍");

    // history holds the message in its current state, and the entries at their seqs
    let history = server.http(&alice).messages(&id, "").await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{history}");
    assert_eq!(messages[0]["content"]["text"], "hello");
    assert!(messages[0]["editedAt"].is_number(), "{history}");
    assert_eq!(
        messages[0]["reactions"],
        json!([{"emoji": "👍", "count": 1, "userIds": [bob.as_str()], "mine": false}])
    );

    // bob may not delete alice's message; alice may, and it becomes a tombstone
    let refused = bob_ws
        .request(json!({
            "action": "delete", "conversationId": id, "clientMessageId": "d-0", "targetSeq": seq,
        }))
        .await;
    assert_eq!(refused["code"], "FORBIDDEN", "{refused}");
    let deleted = alice_ws
        .request(json!({
            "action": "delete", "conversationId": id, "clientMessageId": "d-1", "targetSeq": seq,
        }))
        .await;
    assert_eq!(deleted["kind"], "delete", "{deleted}");
    let history = server.http(&bob).messages(&id, "").await;
    let target = &history["messages"][0];
    assert_eq!(
        (&target["deleted"], &target["content"], &target["reactions"]),
        (&json!(true), &Value::Null, &json!([])),
        "{history}"
    );
    assert_eq!(
        history["messages"][1]["content"],
        Value::Null,
        "the edit's text is erased too"
    );
}

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// PUTs `body` to an upload as the client is told to: the URL, exactly its headers.
async fn upload(upload: &Value, body: &[u8], extra: &[(&str, &str)]) -> u16 {
    let mut request = reqwest::Client::new()
        .put(upload["url"].as_str().expect("an upload url"))
        .body(body.to_vec());
    for (name, value) in upload["headers"].as_object().expect("upload headers") {
        let value = value.as_str().unwrap();
        let value = extra
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(value, |(_, v)| v);
        request = request.header(name.as_str(), value);
    }
    request.send().await.expect("upload").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_goes_up_its_upload_url_and_down_to_members_only() {
    // GIVEN a group of alice and bob, and carol outside it
    let server = target().await;
    let (alice, bob, carol) = (unique("alice"), unique("bob"), unique("carol"));
    let (_, group) = server
        .http(&alice)
        .post(
            "/v1/conversations",
            &json!({"type": "group", "name": "Photos", "members": [bob]}),
        )
        .await;
    let id = conv_id(&group);
    // WHEN alice creates an attachment and uploads a PNG at its URL
    let (status, created) = server
        .http(&alice)
        .post(
            "/v1/attachments",
            &json!({"conversationId": id, "mimeType": "image/png", "size": PNG.len(), "fileName": "dot.png"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let attachment = created["attachmentId"].as_str().unwrap().to_owned();
    // (the blob store refuses a body of another type than declared: S3 checks the
    // signature, which binds it; emulators that do not check signatures accept it)
    let wrong_type = upload(&created["upload"], PNG, &[("Content-Type", "text/html")]).await;
    assert_ne!(
        wrong_type / 100,
        2,
        "an upload of another type was accepted"
    );
    assert_eq!(upload(&created["upload"], PNG, &[]).await / 100, 2);
    // THEN a second upload is refused: accepted bytes cannot be swapped
    let mut swapped = PNG.to_vec();
    swapped[60] ^= 0xff;
    assert_eq!(upload(&created["upload"], &swapped, &[]).await, 412);

    // WHEN alice sends it; bob receives it
    let mut alice_ws = server.connect(&alice).await;
    let mut bob_ws = server.connect(&bob).await;
    let ack = alice_ws
        .request(json!({
            "action": "send", "conversationId": id, "clientMessageId": "photo-1",
            "content": {"type": "attachment", "attachmentId": attachment, "text": "a dot",
                        "width": 1, "height": 1},
        }))
        .await;
    assert_eq!(ack["type"], "message.ack", "{ack}");
    let got = bob_ws.recv_type("message.new").await;
    assert_eq!(
        got["content"]["attachment"],
        json!({"attachmentId": attachment, "mimeType": "image/png", "size": PNG.len(), "fileName": "dot.png"}),
        "{got}"
    );
    // AND bob downloads the same bytes, as an image
    let (status, link) = server
        .http(&bob)
        .get(&format!("/v1/attachments/{attachment}"))
        .await;
    assert_eq!(status, 200, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    let response = reqwest::get(&url).await.expect("download");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    assert_eq!(&response.bytes().await.unwrap()[..], PNG);
    // AND carol, outside the group, gets 404 (alone and in a batch)
    let (status, _) = server
        .http(&carol)
        .get(&format!("/v1/attachments/{attachment}"))
        .await;
    assert_eq!(status, 404);
    let (_, batch) = server
        .http(&carol)
        .post(
            "/v1/attachments/urls",
            &json!({"attachmentIds": [attachment]}),
        )
        .await;
    assert_eq!(batch["urls"], json!([]), "{batch}");

    // WHEN alice deletes the message THEN its bytes go: the URL bob had stops serving them
    let seq = ack["seq"].as_u64().unwrap();
    let deleted = alice_ws
        .request(json!({
            "action": "delete", "conversationId": id, "clientMessageId": "d-1", "targetSeq": seq,
        }))
        .await;
    assert_eq!(deleted["kind"], "delete", "{deleted}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = reqwest::get(&url)
            .await
            .expect("download")
            .status()
            .as_u16();
        let (again, _) = server
            .http(&bob)
            .get(&format!("/v1/attachments/{attachment}"))
            .await;
        if status == 404 && again == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bytes are still served ({status}) or linked ({again}) 30 s after the delete"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
