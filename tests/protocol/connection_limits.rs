//! The listener's limits: request heads that never finish are closed, idle sockets give
//! way at the connection cap, and slow bodies are answered 408.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Waits until the server closes `stream` (end of file or reset); `false` if it is
/// still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn half_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /v1/conversations HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write half a request");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_that_do_not_arrive_in_time_are_closed() {
    let server = server().env("CHAT_HEADER_TIMEOUT_SECS", "1").start().await;
    let addr = server.addr();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut half = half_request(addr).await;
    // One header line every 300 ms: never idle, never done.
    let mut dripping = half_request(addr).await;
    let (mut reader, mut writer) = dripping.split();
    let drip = async {
        for n in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if writer
                .write_all(format!("X-Drip-{n}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let dripping_closed = tokio::select! {
        () = drip => true,
        closed = async {
            let mut buf = [0u8; 256];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        } => closed,
        () = tokio::time::sleep(Duration::from_secs(5)) => false,
    };
    assert!(
        dripping_closed,
        "a head sent a line at a time was still open after 5 s"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a silent socket was still open"
    );
    assert!(
        closed_within(&mut half, Duration::from_secs(5)).await,
        "half a request was still open"
    );
    // Requests that do finish are unaffected.
    assert_eq!(
        server.raw_request("GET /health HTTP/1.1\r\n", b"").await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_unfinished_requests_hold_every_descriptor() {
    // 64 open files, so about 16 client sockets: 70 unfinished requests would leave
    // none for anybody else if they were kept. The header timeout (10 s) is longer
    // than the test: only giving way at the cap can save /health.
    let server = server().shell_setup("ulimit -n 64").start().await;
    let addr = server.addr();
    let mut held = Vec::new();
    for _ in 0..70 {
        held.push(half_request(addr).await);
    }
    let (status, _) = server.raw_request("GET /health HTTP/1.1\r\n", b"").await;
    assert_eq!(status, 200);
    let mut ws = server.connect("alice").await;
    ws.heartbeat().await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_unsent_bodies_hold_every_descriptor() {
    // Complete heads owing a body, from a caller with a valid token: the body timeout
    // (30 s) is longer than the test, so only a connection owed a body being idle (and
    // giving way at the cap) can save /health.
    let server = server().shell_setup("ulimit -n 64").start().await;
    let head = format!(
        "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n",
        server.token("mallory")
    );
    let mut held = Vec::new();
    for _ in 0..70 {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("write a head");
        held.push(stream);
    }
    let (status, _) = server.raw_request("GET /health HTTP/1.1\r\n", b"").await;
    assert_eq!(status, 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_not_waited_for_without_a_valid_token() {
    let server = start().await;
    // No body follows: the answer must not wait for one.
    let (status, body) = server
        .raw_request("POST /v1/sync HTTP/1.1\r\nContent-Length: 1000\r\n", b"")
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server
        .raw_request(
            "POST /v1/sync HTTP/1.1\r\nAuthorization: Bearer nope\r\nContent-Length: 1000\r\n",
            b"",
        )
        .await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_with_every_connection_busy_a_new_one_is_answered_503() {
    let server = server().env("CHAT_MAX_CONNECTIONS", "3").start().await;
    let mut sockets = Vec::new();
    for user in ["alice", "bob", "carol"] {
        sockets.push(server.connect(user).await);
    }
    let (status, _) = server.raw_request("GET /health HTTP/1.1\r\n", b"").await;
    assert_eq!(
        status, 503,
        "a fourth connection while three WebSockets are open"
    );
    for ws in &mut sockets {
        ws.heartbeat().await;
    }
    sockets.pop().expect("a socket").close().await;
    let mut status = 0;
    for _ in 0..50 {
        status = server.raw_request("GET /health HTTP/1.1\r\n", b"").await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "a place freed by a closed WebSocket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let server = server().env("CHAT_REQUEST_TIMEOUT_SECS", "1").start().await;
    let token = server.token("alice");
    let head = format!(
        "POST /v1/sync HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
    );
    let (status, body) = server.raw_request(&head, b"{\"conversations\"").await;
    assert_eq!(status, 408, "{body}");
}
