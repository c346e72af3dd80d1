//! The TypeScript client SDK's packages (`clients/typescript`), installed from its
//! `package-lock.json` with `npm ci` on first use and again only when the lock file
//! changes, like the emulators are (see [`crate::emulators`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use anyhow::{Context, bail};

/// `clients/typescript` of the workspace.
pub fn sdk_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or(manifest)
        .join("clients")
        .join("typescript")
}

/// Installs `dir`'s npm packages unless `node_modules` holds those of its current lock
/// file (a copy of which it keeps as `node_modules/.installed-lock.json`). One install
/// at a time in a test process (two `npm ci` in one directory would trip each other).
pub fn install_packages(dir: &Path) -> anyhow::Result<()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lock = fs::read(dir.join("package-lock.json"))
        .with_context(|| format!("read {}/package-lock.json", dir.display()))?;
    let stamp = dir.join("node_modules").join(".installed-lock.json");
    if fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        return Ok(());
    }
    let out = npm(dir, &["ci", "--no-audit", "--no-fund", "--loglevel=error"])?;
    if !out.status.success() {
        bail!(
            "npm ci in {} failed ({}):\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::write(&stamp, &lock).with_context(|| format!("write {}", stamp.display()))
}

/// Runs `npm ARGS` in `dir`, its output captured.
pub fn npm(dir: &Path, args: &[&str]) -> anyhow::Result<Output> {
    Command::new("npm")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("run npm (Node.js 20 with npm is needed: e.g. `apt-get install nodejs npm`)")
}
