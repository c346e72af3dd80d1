//! The fuzz corpus as a regression suite, on stable: every committed input of the
//! `ws_frame`, `http_request` and `jwt` targets (`fuzz/seeds`, the minimized
//! `fuzz/corpus`, and the crash inputs kept in `fuzz/artifacts`) goes through the very
//! checks the fuzz targets run (included from `fuzz/src`), so a fixed finding stays fixed
//! and every property keeps holding without a nightly toolchain. See fuzz/README.md.

#[path = "../../fuzz/src/shared_checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// Every committed input of `target`.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["seeds", "corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable corpus dir").path();
            if path.is_file() {
                let data = std::fs::read(&path).expect("a readable corpus file");
                files.push((path, data));
            }
        }
    }
    files.sort();
    files
}

/// Runs `check` on every input of `target` and names each one that panics.
fn replay(target: &str, check: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(inputs.len() >= 10, "{target}: only {} inputs", inputs.len());
    let failed: Vec<_> = inputs
        .iter()
        .filter(|(_, data)| std::panic::catch_unwind(|| check(data)).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: failing inputs {failed:#?}");
}

#[test]
fn ws_frame_corpus_holds() {
    replay("ws_frame", checks::ws_frame);
}

#[test]
fn http_request_corpus_holds() {
    replay("http_request", checks::http_request);
}

#[test]
fn jwt_corpus_holds() {
    replay("jwt", checks::jwt);
}
