//! The web app chat-local serves (`local/web/`), in headless Chromium: the SDK's
//! `npm run test:browser` (playwright-core driving Debian's `chromium`) against the
//! chat-local binary of this build. Installs the npm packages, and Chromium with
//! apt-get, on first use. Screenshots land in `target/browser/`.

use std::path::Path;
use std::process::{Command, Stdio};

/// Debian's Chromium, installed when missing (playwright's own download cannot work on
/// a machine without the internet at large).
fn chromium() -> String {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return path.to_string_lossy().into_owned();
    }
    let path = "/usr/bin/chromium";
    if !Path::new(path).exists() {
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-q", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            || (Command::new("apt-get")
                .args(["update", "-q"])
                .status()
                .is_ok_and(|s| s.success())
                && Command::new("apt-get")
                    .args(["install", "-y", "-q", "chromium"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .stdin(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()));
        assert!(
            installed && Path::new(path).exists(),
            "Chromium is needed at {path}: `apt-get install chromium` failed (or set CHROMIUM)"
        );
    }
    path.to_owned()
}

#[test]
fn the_web_app_works_in_a_real_browser() {
    let browser = chromium();
    let dir = chat_tests::node::sdk_dir();
    chat_tests::node::install_packages(&dir).expect("the SDK's npm packages");
    let status = Command::new("npm")
        .args(["run", "test:browser"])
        .current_dir(&dir)
        .env("CHAT_LOCAL_BIN", env!("CARGO_BIN_EXE_chat-local"))
        .env("CHROMIUM", browser)
        .stdin(Stdio::null())
        .status()
        .expect("run npm run test:browser");
    assert!(status.success(), "the browser test failed: {status}");
}
