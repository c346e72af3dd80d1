//! The local server's logs (stderr): lines for people without terminal escape codes
//! when stderr is not a terminal, or JSON lines with `CHAT_LOG_FORMAT=json`.

use crate::support::*;

/// Starts a server whose stderr goes to a file, does one request, stops it, and answers
/// what it logged.
async fn logged_by(builder: TestServerBuilder) -> String {
    let log = std::env::temp_dir().join(format!("{}.log", unique("stderr")));
    let mut server = builder
        .shell_setup(&format!("exec 2>'{}'", log.display()))
        .start()
        .await;
    server.http("alice").create_direct("bob").await;
    server.terminate(Duration::from_secs(10));
    let logged = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    logged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_file_gets_no_terminal_escape_codes() {
    // WHEN the server logs to a file (not a terminal) in the default format
    let logged = logged_by(server().env("CHAT_LOG", "debug")).await;
    // THEN it logged its start, in plain text
    assert!(logged.contains("chat-local ready"), "{logged}");
    assert!(!logged.contains('\u{1b}'), "escape codes in: {logged:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    // WHEN the server logs with CHAT_LOG_FORMAT=json
    let logged = logged_by(server().env("CHAT_LOG_FORMAT", "json")).await;
    // THEN every line is a JSON object with a level and fields, the start among them
    let lines: Vec<Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["level"].is_string()), "{logged}");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "chat-local ready"),
        "{logged}"
    );
}

#[test]
fn an_unknown_log_format_stops_the_server_at_start() {
    let (status, stderr) = server().env("CHAT_LOG_FORMAT", "xml").start_refused();
    assert!(!status.success());
    assert!(stderr.contains("CHAT_LOG_FORMAT"), "{stderr}");
}
