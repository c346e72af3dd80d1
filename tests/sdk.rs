//! The TypeScript client SDK's own suite (`clients/typescript`, `npm test`), run by the
//! workspace's test command against the chat-local binary this build made: its tests
//! start that server themselves (with TCP proxies in front for the fault schedules), so
//! the SDK is checked against the server of the same commit. Installs the npm packages
//! on first use.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The suite takes about 35 s; far beyond that it is stuck, and is stopped.
const LIMIT: Duration = Duration::from_secs(600);

#[test]
fn the_typescript_sdk_passes_its_suite_against_this_server() {
    let dir = chat_tests::node::sdk_dir();
    chat_tests::node::install_packages(&dir).expect("the SDK's npm packages");
    let mut child = Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .env("CHAT_LOCAL_BIN", env!("CARGO_BIN_EXE_chat-local"))
        .stdin(Stdio::null())
        // Its own process group, so a stuck run is stopped with every process it started.
        .process_group(0)
        .spawn()
        .expect("run npm test");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for npm test") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("npm test in {} ran over {LIMIT:?}: stopped", dir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "npm test in {} failed: {status}",
        dir.display()
    );
}

/// The web app serves the SDK's compiled modules from `local/web/sdk/` (built into the
/// binary, so running it needs no Node.js): they must be what its source compiles to.
#[test]
fn the_web_apps_copy_of_the_sdk_is_its_source_compiled() {
    let dir = chat_tests::node::sdk_dir();
    chat_tests::node::install_packages(&dir).expect("the SDK's npm packages");
    let fresh = tempfile::tempdir().unwrap();
    let out = chat_tests::node::npm(
        &dir,
        &[
            "exec",
            "--",
            "tsc",
            "-p",
            "tsconfig.web.json",
            "--outDir",
            &fresh.path().to_string_lossy(),
        ],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let served = dir.join("../../local/web/sdk");
    let names = |d: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(fresh.path()), names(&served));
    for name in names(fresh.path()) {
        assert_eq!(
            std::fs::read_to_string(fresh.path().join(&name)).unwrap(),
            std::fs::read_to_string(served.join(&name)).unwrap(),
            "local/web/sdk/{} is stale: run `npm run build:web` in clients/typescript",
            name.to_string_lossy()
        );
    }
}
