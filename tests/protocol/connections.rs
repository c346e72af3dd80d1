//! Hardening of the connection layer: the per-user connection cap
//! (`CHAT_MAX_CONNECTIONS_PER_USER`) and silent, half-open sockets (`CHAT_IDLE_TIMEOUT_SECS`).

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_per_user_cap_closes_the_oldest_with_1008() {
    // GIVEN at most 3 connections per user, alice watching bob, bob on one device
    let server = server()
        .env("CHAT_MAX_CONNECTIONS_PER_USER", "3")
        .start()
        .await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let mut alice = server.connect("alice").await;
    let mut oldest = server.connect_device("bob", "phone-1").await;
    alice
        .recv_where("bob online", |f| is_presence_status(f, "bob", "online"))
        .await;

    // WHEN bob opens three more (a phone reconnecting over flapping networks); each one
    // waits for the server's clock to move on, so their connect times differ and "oldest"
    // is well defined
    let mut newer = Vec::new();
    for device in ["phone-2", "phone-3", "phone-4"] {
        server.tick().await;
        newer.push(server.connect_device("bob", device).await);
    }

    // THEN the oldest is closed with 1008 and the three newest keep working
    assert_eq!(oldest.recv_close(RECV_TIMEOUT).await, Some(1008));
    alice.send_message(&id, "m-1", "still there?").await;
    for ws in &mut newer {
        let frame = ws.recv_type("message.new").await;
        assert_eq!(frame["seq"], 1, "[{}] {frame}", ws.label());
        ws.heartbeat().await;
    }
    // AND bob never looked offline
    alice
        .expect_none("bob offline", SHORT, |f| {
            is_presence_status(f, "bob", "offline")
        })
        .await;
    let (status, body) = server.http("alice").get("/v1/presence?userIds=bob").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["presence"][0]["status"], "online", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_of_zero_lets_a_user_keep_many_connections() {
    let server = server()
        .env("CHAT_MAX_CONNECTIONS_PER_USER", "0")
        .start()
        .await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let mut bobs = Vec::new();
    for i in 0..12 {
        bobs.push(server.connect_device("bob", &format!("d-{i}")).await);
    }

    server.http("alice").send_message(&id, "m-1", "hi").await;

    for ws in &mut bobs {
        assert_eq!(ws.recv_type("message.new").await["seq"], 1);
    }
}

/// A WebSocket handshake over a plain TCP socket that then never sends nor reads a byte:
/// the server sees a peer whose app is gone but whose TCP connection is still open.
fn half_open_socket(server: &TestServer, user: &str, device: &str) -> TcpStream {
    let mut socket = TcpStream::connect(server.addr()).expect("connect to the server");
    socket
        .set_read_timeout(Some(RECV_TIMEOUT))
        .expect("set a read timeout");
    let request = format!(
        "GET /ws?v=1&token={}&deviceId={device} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        server.token(user),
        server.addr()
    );
    socket
        .write_all(request.as_bytes())
        .expect("send the handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = socket.read(&mut byte).expect("read the handshake answer");
        assert_eq!(n, 1, "the server closed during the handshake: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "handshake answered {head}"
    );
    socket
}

/// Heartbeats `ws` (so the short idle timeout spares it) until a frame matching `pred`
/// arrives, failing after `within`.
async fn keep_alive_until(
    ws: &mut WsClient,
    what: &str,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        ws.heartbeat().await;
        match ws
            .try_recv_where(Duration::from_millis(250), |f| pred(f))
            .await
        {
            Ok(frame) => return frame,
            Err(RecvError::Closed(why)) => {
                panic!("[{}] closed ({why}) waiting for {what}", ws.label())
            }
            Err(RecvError::Timeout) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "[{}] no {what} within {within:?}",
            ws.label()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_half_open_socket_is_dropped_after_the_idle_timeout() {
    // GIVEN a 2 s idle timeout, bob with a push device, alice watching him
    let server = server().env("CHAT_IDLE_TIMEOUT_SECS", "2").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    server
        .http("bob")
        .register_device("phone", "fcm", "bob-token")
        .await;
    let mut alice = server.connect("alice").await;

    // WHEN bob's socket opens, then goes silent without closing (app killed, TCP alive)
    let socket = half_open_socket(&server, "bob", "phone");
    keep_alive_until(&mut alice, "bob online", RECV_TIMEOUT, |f| {
        is_presence_status(f, "bob", "online")
    })
    .await;

    // THEN the server drops it after the timeout: alice sees bob go offline
    let offline = keep_alive_until(&mut alice, "bob offline", Duration::from_secs(15), |f| {
        is_presence_status(f, "bob", "offline")
    })
    .await;
    assert!(offline["lastSeen"].is_i64(), "{offline}");
    let (status, body) = server.http("alice").get("/v1/presence?userIds=bob").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["presence"][0]["status"], "offline", "{body}");
    // AND a message sent now is pushed to bob's phone instead of going to the dead socket
    let ack = alice.send_message(&id, "m-1", "are you there?").await;
    let pushes = server
        .wait_for_pushes("bob's push", |p| {
            p.iter()
                .any(|p| p["userId"] == "bob" && p["data"]["seq"] == ack["seq"])
        })
        .await;
    let push = pushes
        .iter()
        .find(|p| p["userId"] == "bob")
        .expect("a push");
    assert_eq!(push["deviceId"], "phone");
    assert_eq!(push["data"]["messageId"], ack["messageId"]);
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_the_servers_pings_does_not_keep_a_silent_client_connected() {
    // GIVEN a 2 s idle timeout and a client whose WebSocket stack answers pings (it keeps
    // reading) but whose app sends nothing
    let server = server().env("CHAT_IDLE_TIMEOUT_SECS", "2").start().await;
    let mut alice = server.connect("alice").await;

    // THEN it is closed for want of a heartbeat
    assert_eq!(
        alice.recv_close(Duration::from_secs(15)).await,
        Some(1000),
        "closed with 1000 `heartbeat timeout`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pings_a_quiet_socket() {
    // GIVEN a 3 s idle timeout (pings every second) and a socket that sends nothing
    let server = server().env("CHAT_IDLE_TIMEOUT_SECS", "3").start().await;
    let mut socket = half_open_socket(&server, "alice", "phone");

    // THEN the first thing it reads is a ping frame (FIN + opcode 0x9)
    let mut head = [0u8; 2];
    socket
        .read_exact(&mut head)
        .expect("a frame from the server");
    assert_eq!(head[0], 0x89, "expected a ping, got {head:?}");
}

/// Runs `chat-local` with one extra variable; returns (exited unsuccessfully?, stderr) if
/// it stopped within 10 s, `None` if it kept running (then it is killed).
fn start_with(name: &str, value: &str) -> Option<(bool, String)> {
    use std::process::{Command, Stdio};
    let db = std::env::temp_dir().join(format!("chat-config-{}-{name}.db", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-local"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env("CHAT_JWT_SECRET", TEST_SECRET)
        .env(name, value)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat-local");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chat-local") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&db);
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let _ = std::fs::remove_file(&db);
    Some((!status.success(), stderr))
}

#[test]
fn an_unusable_idle_timeout_or_cap_stops_the_server_at_start() {
    for (name, value) in [
        ("CHAT_IDLE_TIMEOUT_SECS", "0"),
        ("CHAT_IDLE_TIMEOUT_SECS", "151"),
        ("CHAT_MAX_CONNECTIONS_PER_USER", "many"),
    ] {
        let (failed, stderr) = start_with(name, value)
            .unwrap_or_else(|| panic!("the server kept running with {name}={value}"));
        assert!(failed, "{name}={value} exits with a failure");
        assert!(stderr.contains(name), "the error names {name}: {stderr}");
    }
}
