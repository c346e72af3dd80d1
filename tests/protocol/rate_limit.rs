//! Section 3 "Rate limit": per-user send windows shared by WebSocket and HTTP, the
//! `Retry-After` header, and the count starting again in the next window.
//!
//! Windows are whole minutes of Unix time and the server has no setting to shorten them,
//! so a run can straddle a minute boundary. Instead of sleeping away from the boundary,
//! each test reads the server's own clock before its first counted send and after its
//! last answer, asserts only when both readings fall in one window, and otherwise runs
//! again on a fresh server (that run starts just after a boundary, so it fits). Nothing is
//! asserted before that check: a boundary can only turn an expected refusal into an ack.

use crate::support::*;

/// The limit the tests run with.
const LIMIT: &str = "3";
/// One rate window (protocol section 3: fixed 60 s windows).
const WINDOW_MS: i64 = 60_000;

/// A server with `CHAT_RATE_LIMIT_PER_MIN=3`, a direct conversation alice-bob, and the
/// server time read just before the test's first counted send.
struct Limited {
    server: TestServer,
    id: String,
    started: i64,
}

impl Limited {
    async fn start() -> Limited {
        let server = server().env("CHAT_RATE_LIMIT_PER_MIN", LIMIT).start().await;
        let id = conv_id(&server.http("alice").create_direct("bob").await);
        let started = server.server_time().await;
        Limited {
            server,
            id,
            started,
        }
    }

    /// The server time now, if it is still in the window the run started in.
    async fn same_window(&self) -> Option<i64> {
        let ended = self.server.server_time().await;
        (ended.div_euclid(WINDOW_MS) == self.started.div_euclid(WINDOW_MS)).then_some(ended)
    }

    /// Asserts `retry_after_ms` is the time from a moment in `[started, ended]` to the end
    /// of the run's window (the server counts the send at some such moment).
    fn assert_retry_after(&self, value: &Value, ended: i64) {
        let retry = value
            .as_i64()
            .unwrap_or_else(|| panic!("retryAfterMs is not an integer: {value}"));
        let window_end = (self.started.div_euclid(WINDOW_MS) + 1) * WINDOW_MS;
        assert!(
            (window_end - ended..=window_end - self.started).contains(&retry),
            "retryAfterMs {retry} is not the time to the window's end ({window_end}) from \
             between {} and {ended}",
            self.started
        );
    }
}

/// Runs `scenario` until one run stays in one rate window (at most three runs; the
/// second already starts right after a boundary), then checks it with `verify`.
macro_rules! in_one_window {
    (|$run:ident| $scenario:block, |$observed:ident, $ended:ident| $verify:block) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let $run = Limited::start().await;
            let $observed = $scenario;
            match $run.same_window().await {
                Some($ended) => {
                    $verify;
                    break;
                }
                None if attempt < 3 => {
                    eprintln!("rate limit: run {attempt} crossed a minute boundary; again");
                }
                None => panic!("three runs in a row crossed a minute boundary"),
            }
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_over_the_limit_is_rate_limited_with_retry_after() {
    in_one_window!(
        |run| {
            let mut alice = run.server.connect("alice").await;
            let mut bob = run.server.connect("bob").await;
            for n in 1..=3 {
                alice.send_message(&run.id, &format!("cm-{n}"), "ok").await;
            }
            let error = alice
                .request(json!({
                    "action": "send", "requestId": "r-4", "conversationId": run.id,
                    "clientMessageId": "cm-4", "content": {"type": "text", "text": "too many"},
                }))
                .await;
            alice.heartbeat().await;
            let stored = run.server.http("alice").conversation(&run.id).await["lastSeq"].clone();
            let bob_ack = bob
                .send_message(&run.id, "bob-1", "bob has his own count")
                .await;
            (error, stored, bob_ack)
        },
        |observed, ended| {
            let (error, stored, bob_ack) = observed;
            assert_ws_error(&error, "RATE_LIMITED", Some("r-4"));
            assert_eq!(error["clientMessageId"], "cm-4");
            run.assert_retry_after(&error["retryAfterMs"], ended);
            assert_eq!(stored, 3, "nothing stored");
            assert_eq!(bob_ack["seq"], 4);
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_not_counted() {
    in_one_window!(
        |run| {
            let mut alice = run.server.connect("alice").await;
            let mut retries = vec![alice.send_message(&run.id, "cm-1", "one").await];
            for _ in 0..3 {
                retries.push(alice.send_message(&run.id, "cm-1", "one").await);
            }
            let second = alice.send_message(&run.id, "cm-2", "two").await;
            let third = alice.send_message(&run.id, "cm-3", "three").await;
            let error = alice.request(send_action(&run.id, "cm-4", "four")).await;
            let retry = alice.send_message(&run.id, "cm-2", "two").await;
            (retries, second, third, error, retry)
        },
        |observed, _ended| {
            let (retries, second, third, error, retry) = observed;
            assert_eq!(retries[0]["duplicate"], false);
            for again in &retries[1..] {
                assert_subset(again, &json!({"seq": 1, "duplicate": true}));
            }
            assert_subset(&second, &json!({"seq": 2, "duplicate": false}));
            assert_subset(&third, &json!({"seq": 3, "duplicate": false}));
            assert_ws_error(&error, "RATE_LIMITED", error["requestId"].as_str());
            assert_subset(&retry, &json!({"seq": 2, "duplicate": true}));
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_http_share_one_count() {
    in_one_window!(
        |run| {
            let mut alice = run.server.connect("alice").await;
            let http = run.server.http("alice");
            alice.send_message(&run.id, "cm-1", "ws").await;
            let second = http.send_message(&run.id, "cm-2", "http").await;
            alice.send_message(&run.id, "cm-3", "ws").await;
            let over_http = http.send_message(&run.id, "cm-4", "http").await;
            let over_ws = alice.request(send_action(&run.id, "cm-5", "ws")).await;
            let duplicate = http.send_message(&run.id, "cm-2", "http").await;
            (second, over_http, over_ws, duplicate)
        },
        |observed, ended| {
            let (second, over_http, over_ws, duplicate) = observed;
            assert_eq!(second.0, 201, "{}", second.1);
            assert_http_error(&over_http, 429, "RATE_LIMITED");
            run.assert_retry_after(&over_http.1["error"]["retryAfterMs"], ended);
            assert_eq!(over_ws["code"], "RATE_LIMITED", "{over_ws}");
            assert_eq!(
                duplicate.0, 200,
                "a duplicate over HTTP is still answered: {}",
                duplicate.1
            );
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_carries_retry_after_in_whole_seconds() {
    in_one_window!(
        |run| {
            let http = run.server.http("alice");
            let path = format!("/v1/conversations/{}/messages", run.id);
            let mut answers = Vec::new();
            for n in 1..=4 {
                let body = json!({"clientMessageId": format!("cm-{n}"),
                                  "content": {"type": "text", "text": "hi"}});
                answers.push(http.call_full(Method::POST, &path, Some(&body)).await);
            }
            answers
        },
        |answers, ended| {
            for accepted in &answers[..3] {
                assert_eq!(accepted.status, 201, "{:?}", accepted.body);
                assert_eq!(accepted.header("retry-after"), None, "only a 429 has it");
            }
            let refused = &answers[3];
            assert_http_error(&refused.pair(), 429, "RATE_LIMITED");
            let retry_ms = &refused.body["error"]["retryAfterMs"];
            run.assert_retry_after(retry_ms, ended);
            let header = refused
                .header("retry-after")
                .unwrap_or_else(|| panic!("a 429 without Retry-After: {:?}", refused.headers));
            let seconds: i64 = header
                .parse()
                .unwrap_or_else(|_| panic!("Retry-After {header:?} is not whole seconds"));
            let retry_ms = retry_ms.as_i64().expect("integer");
            assert_eq!(
                seconds,
                (retry_ms + 999) / 1000,
                "Retry-After is retryAfterMs ({retry_ms}) in seconds, rounded up"
            );
        }
    );
}

/// The next window, without waiting up to a minute for it: the server is stopped, the
/// user's stored window is moved one window back in its database (exactly what a minute
/// passing does to it), and the server started again on that file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_starts_again_in_the_next_window() {
    let mut server = server().env("CHAT_RATE_LIMIT_PER_MIN", LIMIT).start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let http = server.http("alice");
    let mut refused = None;
    let mut n = 0;
    // Send until refused: the window may turn over once before the count is used up.
    while refused.is_none() {
        n += 1;
        assert!(n <= 2 * 3 + 1, "never refused after {n} sends");
        let (status, body) = http.send_message(&id, &format!("cm-{n}"), "hi").await;
        match status {
            201 => {}
            429 => refused = Some(body),
            _ => panic!("send {n}: {status} {body}"),
        }
    }
    assert_eq!(
        server.terminate(Duration::from_secs(10)),
        Some(true),
        "the server stops cleanly on SIGTERM"
    );

    let db = rusqlite::Connection::open(server.db_path()).expect("open the database");
    let moved = db
        .execute(
            "UPDATE rate_windows SET window_start = window_start - ?1 WHERE user_id = 'alice'",
            [WINDOW_MS],
        )
        .expect("move alice's window back");
    assert_eq!(moved, 1, "alice's count is stored in rate_windows");
    drop(db);
    server.restart().await;

    let http = server.http("alice");
    let started = server.server_time().await;
    for m in 1..=3 {
        let (status, body) = http.send_message(&id, &format!("next-{m}"), "again").await;
        assert_eq!(status, 201, "send {m} of the new window: {body}");
    }
    let response = http.send_message(&id, "next-4", "one too many").await;
    let ended = server.server_time().await;
    if started.div_euclid(WINDOW_MS) == ended.div_euclid(WINDOW_MS) {
        assert_http_error(&response, 429, "RATE_LIMITED");
    } else {
        // A real minute began during these four sends: the fourth may open it.
        assert!(matches!(response.0, 201 | 429), "{response:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_disables_the_limit() {
    let server = server().env("CHAT_RATE_LIMIT_PER_MIN", "0").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let mut alice = server.connect("alice").await;

    for n in 1..=150 {
        alice
            .send_json(&send_action(&id, &format!("cm-{n}"), "spam"))
            .await;
    }

    for n in 1..=150 {
        let ack = alice.recv_type("message.ack").await;
        assert_eq!(ack["seq"], n, "{ack}");
    }
    // Answers come in request order: once the heartbeat is answered, an error for any of
    // the 150 would already be buffered.
    alice.heartbeat().await;
    alice.expect_silence("error", Duration::ZERO).await;
}
