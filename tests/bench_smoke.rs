//! A short smoke of the benchmark harness (`chat-bench`), so it keeps working: one low,
//! fixed-rate step of the 1:1 scenario against a real `chat-local` and against the limit
//! server. It asserts what the harness itself guarantees (every message acked and
//! delivered exactly once, in order), never a timing: benchmarks are not tests.

use std::time::Duration;

use chat_bench::scenarios::{self, Ramp};
use chat_bench::target::{Endpoint, Kind};
use chat_tests::{TEST_SECRET, TestServer};

fn one_slow_step() -> Ramp {
    Ramp {
        deliveries: vec![200.0],
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(2),
        drain: Duration::from_secs(20),
        // Only delivery is checked here; latency is left to the benchmark.
        p99_limit_us: u64::MAX,
    }
}

fn assert_clean(capacity: &scenarios::Capacity) {
    let step = &capacity.steps[0];
    assert!(step.clean(), "{step:?}");
    assert!(
        step.sent > 0 && step.received == step.expected_deliveries,
        "{step:?}"
    );
    assert_eq!(capacity.best, Some(0), "{step:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_step_against_chat_local_delivers_every_message_once() {
    let server = TestServer::builder(env!("CARGO_BIN_EXE_chat-local"))
        .env("CHAT_RATE_LIMIT_PER_MIN", "0")
        .start()
        .await;
    let endpoint = Endpoint::new(Kind::Ours, server.addr(), None, TEST_SECRET);

    let capacity = scenarios::capacity(&endpoint, 20, 2, &one_slow_step())
        .await
        .unwrap();

    assert_eq!(capacity.connections, 40);
    assert_clean(&capacity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_step_against_the_limit_server_delivers_every_message_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chat_bench::limit::serve(listener));
    let endpoint = Endpoint::new(Kind::Limit, addr, None, "");

    let capacity = scenarios::capacity(&endpoint, 20, 2, &one_slow_step())
        .await
        .unwrap();

    assert_clean(&capacity);
}
