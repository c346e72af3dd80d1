//! Running an emulator: installs made once and atomically, the process under a watchdog
//! that ends it with the test process, and the small helpers both emulators use.

use super::*;

/// The watchdog (`sh -c`, `$1` = pid file, the rest = the emulator's argv). The emulator
/// runs in the background with stdin from /dev/null; a subshell reads the watchdog's
/// stdin (a pipe from the test process, moved to fd 3 because an asynchronous list's
/// stdin is /dev/null) until end-of-file, i.e. until the test process is gone, then
/// stops the emulator. The watchdog exits with the emulator, so an emulator that dies at
/// start-up is seen as the watchdog exiting.
pub(super) const WATCHDOG: &str = r#"
pidfile=$1; shift
exec 3<&0 </dev/null
"$@" 3<&- &
c=$!
echo "$c" > "$pidfile"
( cat <&3 >/dev/null; kill -TERM "$c" 2>/dev/null; sleep 5; kill -KILL "$c" 2>/dev/null ) &
w=$!
exec 3<&-
wait "$c"
s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

pub(super) struct EmulatorSpec<'a> {
    pub(super) name: &'a str,
    pub(super) cache: &'a Path,
    pub(super) argv: &'a dyn Fn(u16) -> Vec<OsString>,
    pub(super) cwd: &'a Path,
    pub(super) env: &'a [(&'a str, &'a str)],
    /// A line the log must hold before the probe counts.
    pub(super) log_marker: Option<&'a str>,
    pub(super) probe: &'a dyn Fn(u16) -> bool,
}

/// A running emulator. The watchdog's stdin is the pipe that keeps the emulator alive:
/// it is held here for the life of the process (statics are never dropped).
pub(super) struct EmulatorProcess {
    pub(super) port: u16,
    pub(super) pid: u32,
    pub(super) log: PathBuf,
    _watchdog: Mutex<Child>,
}

impl EmulatorProcess {
    pub(super) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

pub(super) fn start_emulator(spec: &EmulatorSpec<'_>) -> anyhow::Result<EmulatorProcess> {
    let logs = spec.cache.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let me = std::process::id();
    let log = logs.join(format!("{}-{me}.log", spec.name));
    let pidfile = logs.join(format!("{}-{me}.pid", spec.name));
    let mut last_error = None;
    for attempt in 1..=START_ATTEMPTS {
        let port = free_port()?;
        let _ = fs::remove_file(&pidfile);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", log.display()))?;
        let log_start = out.metadata().map(|m| m.len()).unwrap_or(0);
        writeln!(
            out,
            "--- test process {me}: attempt {attempt} on port {port} ---"
        )?;
        let argv = (spec.argv)(port);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(format!("{}-watchdog", spec.name))
            .arg(&pidfile)
            .args(&argv)
            .current_dir(spec.cwd)
            .envs(spec.env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawn sh for the emulator watchdog")?;
        let began = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                last_error = Some(anyhow!(
                    "{} exited with {status} before answering on port {port} (attempt {attempt}); `{}`; log {}:\n{}",
                    spec.name,
                    show_argv(&argv),
                    log.display(),
                    log_tail(&log, 30),
                ));
                break;
            }
            let marked = spec.log_marker.is_none_or(|marker| {
                fs::read(&log).is_ok_and(|bytes| {
                    String::from_utf8_lossy(bytes.get(log_start as usize..).unwrap_or_default())
                        .contains(marker)
                })
            });
            if marked && (spec.probe)(port) {
                let pid = read_pid(&pidfile)?;
                return Ok(EmulatorProcess {
                    port,
                    pid,
                    log,
                    _watchdog: Mutex::new(child),
                });
            }
            if began.elapsed() > START_TIMEOUT {
                // Closing the pipe makes the watchdog stop the emulator.
                drop(child.stdin.take());
                let _ = child.wait();
                bail!(
                    "{} did not answer on port {port} within {START_TIMEOUT:?}; `{}`; log {}:\n{}",
                    spec.name,
                    show_argv(&argv),
                    log.display(),
                    log_tail(&log, 30),
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("{} did not start", spec.name)))
}

pub(super) fn read_pid(pidfile: &Path) -> anyhow::Result<u32> {
    let text = fs::read_to_string(pidfile)
        .with_context(|| format!("read the emulator pid from {}", pidfile.display()))?;
    let _ = fs::remove_file(pidfile);
    text.trim()
        .parse()
        .with_context(|| format!("bad pid {text:?} in {}", pidfile.display()))
}

/// A port nobody listens on right now (bound on 127.0.0.1:0, then released).
pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

pub(super) fn show_argv(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fails with `hint` when `program` cannot be run.
pub(super) fn require_tool(program: &str, version_arg: &str, hint: &str) -> anyhow::Result<()> {
    match Command::new(program)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("`{program} {version_arg}` failed ({status}): install {hint}"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("`{program}` is not on PATH: install {hint}")
        }
        Err(e) => bail!("cannot run `{program}` ({e}): install {hint}"),
    }
}

/// Builds `dest` with `build(tmp, log)` in a fresh directory beside it, then renames it
/// into place. Losing the rename to a concurrent install is fine: theirs is complete.
pub(super) fn install_atomically(
    cache: &Path,
    dest: &Path,
    name: &str,
    build: impl FnOnce(&Path, &Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let logs = cache.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let me = std::process::id();
    remove_stale_temp_dirs(cache, name);
    let tmp = cache.join(format!(".tmp-{name}-{me}-{nanos}"));
    let log = logs.join(format!("install-{name}-{me}.log"));
    fs::create_dir_all(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let began = Instant::now();
    let built = build(&tmp, &log);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("install {name} into {}", dest.display())));
    }
    let outcome = match fs::rename(&tmp, dest) {
        Ok(()) => "installed",
        Err(_) if dest.exists() => {
            let _ = fs::remove_dir_all(&tmp);
            "lost the race to another process; kept its install of"
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e)
                .with_context(|| format!("rename {} to {}", tmp.display(), dest.display()));
        }
    };
    if let Ok(mut out) = OpenOptions::new().append(true).open(&log) {
        let _ = writeln!(out, "{outcome} {} ({:?})", dest.display(), began.elapsed());
    }
    Ok(())
}

/// Removes `.tmp-{name}-*` directories older than an hour, left by an install whose
/// process was killed (a running install is never that old).
pub(super) fn remove_stale_temp_dirs(cache: &Path, name: &str) {
    let prefix = format!(".tmp-{name}-");
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if stale && entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs `command` with its output appended to `log`; fails with the log's tail.
pub(super) fn run_logged(command: &mut Command, log: &Path, what: &str) -> anyhow::Result<()> {
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    writeln!(out, "--- {what}")?;
    let status = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("run {what}"))?;
    if !status.success() {
        bail!(
            "{what} failed ({status}); log {}:\n{}",
            log.display(),
            log_tail(log, 30)
        );
    }
    Ok(())
}

/// The last `lines` lines of a log file.
pub(super) fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(super) fn owned_env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An `Authorization` header shaped like SigV4 for `service` (the emulators read the
/// region and service from it and do not check the signature).
pub(super) fn dummy_authorization(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/20250101/{TEST_REGION}/{service}/aws4_request, SignedHeaders=host, Signature=x"
    )
}

/// A blocking HTTP/1.1 request on 127.0.0.1 with `Connection: close`, for start-up
/// probes (no async runtime needed, so it runs anywhere). Answers the status and body.
pub(super) fn raw_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP header end"))?;
    let status = std::str::from_utf8(&response[..head_end])
        .ok()
        .and_then(|head| head.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status"))?;
    Ok((status, response[head_end + 4..].to_vec()))
}
