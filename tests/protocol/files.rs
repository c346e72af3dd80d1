//! The local server's files on disk hold every message in clear: each file it creates
//! beside the database is 0600 whatever the umask, and one it finds looser there is
//! tightened when it starts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::*;

/// Every entry of the database's directory with its permission bits, sorted by name.
fn modes(db: &Path) -> Vec<(String, bool, u32)> {
    let dir = db.parent().expect("the database is in a directory");
    let mut found: Vec<(String, bool, u32)> = std::fs::read_dir(dir)
        .expect("list the database directory")
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let meta = entry.metadata().expect("its metadata");
            (
                entry.file_name().to_string_lossy().into_owned(),
                meta.is_dir(),
                meta.permissions().mode() & 0o777,
            )
        })
        .collect();
    found.sort();
    found
}

/// Fails unless every file in the database's directory is 0600 (and every directory
/// 0700), and the database, its WAL and an append log segment are among them.
fn assert_private(db: &Path) {
    let found = modes(db);
    let names: Vec<&str> = found.iter().map(|(name, _, _)| name.as_str()).collect();
    for wanted in ["chat.db", "chat.db-wal", "chat.db-shm"] {
        assert!(names.contains(&wanted), "no {wanted} in {names:?}");
    }
    assert!(
        names.iter().any(|n| n.starts_with("chat.db-log.")),
        "no append log segment in {names:?}"
    );
    for (name, is_dir, mode) in &found {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(
            *mode, want,
            "{name} is {mode:04o}, not {want:04o}: {found:?}"
        );
    }
}

/// Sends a few messages over WebSocket and HTTP, so the log, the WAL and its index
/// have been written.
async fn write_some(server: &TestServer, id: &str, tag: &str) {
    let mut alice = server.connect("alice").await;
    for n in 0..5 {
        alice
            .send_message(id, &format!("{tag}-ws-{n}"), "hello")
            .await;
    }
    let (status, body) = server
        .http("bob")
        .send_message(id, &format!("{tag}-http"), "hi")
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_umask_022_every_file_the_server_creates_is_0600() {
    let server = server().shell_setup("umask 022").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);

    write_some(&server, &id, "a").await;

    assert_private(server.db_path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looser_files_found_at_start_are_tightened_to_0600() {
    // GIVEN a database whose files someone opened up to 0644 while the server was down
    let mut server = server().shell_setup("umask 022").start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    write_some(&server, &id, "a").await;
    server.kill9();
    let dir = server
        .db_path()
        .parent()
        .expect("a directory")
        .to_path_buf();
    for (name, _, _) in modes(server.db_path()) {
        std::fs::set_permissions(dir.join(&name), std::fs::Permissions::from_mode(0o644))
            .expect("open a file up");
    }

    // WHEN the server starts on it again and writes
    server.restart().await;
    write_some(&server, &id, "b").await;

    // THEN every file is 0600 again, and the messages are all there
    assert_private(server.db_path());
    let history = server.http("alice").messages(&id, "limit=100").await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(12));
}
