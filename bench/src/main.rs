//! `chat-bench`: run a benchmark scenario against `chat-local` and the limit server, print
//! the table and write it into docs/bench-results.md. See BENCHMARKS.md for the commands.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chat_bench::scenarios::{self, Ramp};
use chat_bench::target::{Endpoint, ServerProcess, sibling_binary};
use chat_bench::{limit, report};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks of chat-local against a reference limit server")]
struct Cli {
    /// Print the tables without writing them into docs/bench-results.md.
    #[arg(long, global = true)]
    dry_run: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct RampArgs {
    /// Offered deliveries per second, comma-separated, ascending.
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<f64>>,
    /// Seconds of warm-up per step (not recorded).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds recorded per step.
    #[arg(long, default_value_t = 5)]
    measure: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the limit server (used by the scenarios; prints `listening on ADDR`).
    LimitServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// 1:1: online pairs, both sides sending, rate stepped up until p99 > 10 ms.
    OneToOne {
        #[arg(long, default_value_t = 1000)]
        pairs: usize,
        #[command(flatten)]
        ramp: RampArgs,
    },
    /// One group, every member online and sending.
    Group {
        #[arg(long, default_value_t = 100)]
        members: usize,
        /// The corrected p99 a step may reach (default: 10 ms; 100 ms from 1000 members).
        #[arg(long)]
        p99_ms: Option<f64>,
        /// What each send is: a text message, or a reaction on one of the group's first
        /// 100 messages (added, then removed by the next send).
        #[arg(long, value_enum, default_value_t = EntryArg::Message)]
        entry: EntryArg,
        #[command(flatten)]
        ramp: RampArgs,
    },
    /// Server memory per idle connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
    /// A client that missed 1000 messages in 10 conversations reconnects and syncs.
    Sync {
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// History pages of 200 in a conversation of 10,000 entries, of messages only and
    /// with 2,000 reactions and 500 edits among them (this server only).
    History {
        #[arg(long, default_value_t = 200)]
        runs: usize,
    },
    /// Many clients reconnect and sync at the same moment.
    Storm {
        #[arg(long, default_value_t = 2000)]
        clients: usize,
        /// Messages waiting in each pair's conversation.
        #[arg(long, default_value_t = 20)]
        messages: usize,
    },
    /// Every scenario above with its defaults.
    All,
    /// Lambda cold starts: each function binary against a local Runtime API.
    Coldstart {
        /// Cold starts per function.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Where the function binaries are (default: <target>/function).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// A running DynamoDB Local (default: start one, as the AWS tests do).
        #[arg(long)]
        dynamodb_endpoint: Option<String>,
        /// An extra setting for every function, KEY=VALUE (repeatable), e.g.
        /// `--env CHAT_JWT_JWKS_URL=https://... --env CHAT_JWT_ISSUER=https://...`.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        extra_env: Vec<String>,
    },
    /// Ack and delivery latency of a deployed stack (an emulator's or AWS) at a fixed low
    /// rate; `localstack/up.sh` writes the URLs and secret to target/emulators/stack.env.
    Deployed {
        /// The WebSocket stage URL (`ws://` or `wss://`, no query).
        #[arg(long, env = "CHAT_E2E_WS_URL")]
        ws_url: String,
        /// The HTTP API's base URL.
        #[arg(long, env = "CHAT_E2E_HTTP_URL")]
        http_url: String,
        /// The deployment's token secret.
        #[arg(long, env = "CHAT_E2E_JWT_SECRET", hide_env_values = true)]
        secret: String,
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Messages per second, over all pairs.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Dollars per million messages from the counts of `cargo test -p chat-aws --test cost`.
    Cost {
        /// The counts the AWS test wrote (default: <target>/bench/cost-counts.json).
        #[arg(long)]
        counts: Option<PathBuf>,
        /// Run the AWS cost test first (needs DynamoDB Local and moto, as the test does).
        #[arg(long)]
        run_test: bool,
        /// Memory of the functions, MB.
        #[arg(long, default_value_t = 256.0)]
        memory_mb: f64,
        /// Billed ms of one send invocation.
        #[arg(long, default_value_t = 20.0)]
        send_ms: f64,
        /// Billed ms of one fan-out invocation.
        #[arg(long, default_value_t = 20.0)]
        fanout_ms: f64,
        /// Billed ms of one heartbeat invocation.
        #[arg(long, default_value_t = 10.0)]
        heartbeat_ms: f64,
        /// Stream records per fan-out invocation.
        #[arg(long, default_value_t = 1.0)]
        records_per_batch: f64,
    },
}

/// `group --entry`.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum EntryArg {
    Message,
    React,
}

impl From<EntryArg> for chat_bench::load::Entry {
    fn from(e: EntryArg) -> Self {
        match e {
            EntryArg::Message => Self::Message,
            EntryArg::React => Self::React,
        }
    }
}

fn results_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/bench-results.md")
}

fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `$CARGO_TARGET_DIR`, else two levels above this binary (`<target>/<profile>/chat-bench`).
fn target_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return Ok(dir.into());
    }
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(2)
        .map(PathBuf::from)
        .context("the target directory of chat-bench")
}

/// Runs `scenario` on a fresh `chat-local`, then on a fresh limit server.
async fn both<T, F, Fut>(scenario: F) -> anyhow::Result<(T, T)>
where
    F: Fn(Endpoint) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let ours = ServerProcess::ours(&sibling_binary("chat-local")?).await?;
    let a = scenario(ours.endpoint().clone()).await.context("ours")?;
    ours.stop().await;
    let limit = ServerProcess::limit(&std::env::current_exe()?).await?;
    let b = scenario(limit.endpoint().clone()).await.context("limit")?;
    limit.stop().await;
    Ok((a, b))
}

fn ramp(args: &RampArgs, default_rates: &[f64], p99_ms: f64) -> Ramp {
    Ramp {
        deliveries: args.rates.clone().unwrap_or_else(|| default_rates.to_vec()),
        warmup: Duration::from_secs(args.warmup),
        measure: Duration::from_secs(args.measure),
        drain: Duration::from_secs(10),
        p99_limit_us: (p99_ms * 1000.0) as u64,
    }
}

struct Out {
    dry_run: bool,
}

impl Out {
    fn emit(&self, block: &str, title: &str, body: String) -> anyhow::Result<()> {
        println!("\n### {title}\n\n{body}");
        if !self.dry_run {
            report::write_block(&results_md(), block, &format!("### {title}\n\n{body}"))?;
        }
        Ok(())
    }
}

async fn one_to_one(out: &Out, pairs: usize, args: &RampArgs) -> anyhow::Result<()> {
    // Steps of about a tenth from 20,000 up, where both servers' capacities have been
    // (ours 17,000-32,000, the limit server's 50,000-100,000 and more), so the report says
    // where each is, not just the step below it: with steps of a third (30,000 then
    // 40,000, 80,000 then 100,000) one run's ratio could be anywhere from 0.30 to 0.50.
    let rates = [
        2e3, 5e3, 10e3, 15e3, 20e3, 22e3, 25e3, 28e3, 30e3, 33e3, 36e3, 40e3, 45e3, 50e3, 55e3,
        60e3, 66e3, 73e3, 80e3, 88e3, 97e3, 107e3, 118e3, 130e3,
    ];
    let ramp = ramp(args, &rates, 10.0);
    let (o, l) = both(|e| {
        let ramp = ramp.clone();
        async move { scenarios::capacity(&e, pairs, 2, &ramp).await }
    })
    .await?;
    out.emit(
        "one-to-one",
        "1:1 conversations",
        report::capacity(
            &format!("{pairs} online pairs, both sides sending"),
            10.0,
            &o,
            &l,
        ),
    )
}

async fn group(
    out: &Out,
    members: usize,
    p99_ms: Option<f64>,
    entry: EntryArg,
    args: &RampArgs,
) -> anyhow::Result<()> {
    let p99_ms = p99_ms.unwrap_or(if members >= 1000 { 100.0 } else { 10.0 });
    let rates = [
        20e3, 50e3, 100e3, 150e3, 200e3, 300e3, 400e3, 500e3, 600e3, 800e3, 1000e3,
    ];
    let ramp = ramp(args, &rates, p99_ms);
    let (o, l) = both(|e| {
        let ramp = ramp.clone();
        async move { scenarios::capacity_of(&e, 1, members, &ramp, entry.into()).await }
    })
    .await?;
    let (block, title, what) = match entry {
        EntryArg::Message => (
            format!("group-{members}"),
            format!("Group of {members}"),
            "sending",
        ),
        EntryArg::React => (
            format!("group-{members}-react"),
            format!("Group of {members}, reactions"),
            "reacting (added, then removed)",
        ),
    };
    out.emit(
        &block,
        &title,
        report::capacity(
            &format!("One group of {members}, all online, every member {what}"),
            p99_ms,
            &o,
            &l,
        ),
    )
}

async fn idle(out: &Out, connections: usize) -> anyhow::Result<()> {
    let (o, l) = both(|e| async move { scenarios::idle(&e, connections).await }).await?;
    out.emit("idle", "Idle connections", report::idle(&o, &l))
}

async fn sync(out: &Out, runs: usize) -> anyhow::Result<()> {
    let (o, l) = both(|e| async move { scenarios::offline_sync(&e, runs).await }).await?;
    out.emit(
        "sync",
        "Offline sync",
        report::timings(
            "A user missed 100 messages in each of 10 conversations; it opens a socket and \
             syncs them all (`POST /v1/sync`, pages of 50). Wall time from connect to the \
             last message, per run. The limit server answers from memory.",
            &o,
            &l,
        ),
    )
}

async fn history(out: &Out, runs: usize) -> anyhow::Result<()> {
    use scenarios::LogShape;
    let plain = LogShape {
        messages: 10_000,
        reactions: 0,
        edits: 0,
    };
    let rich = LogShape {
        messages: 7_500,
        reactions: 2_000,
        edits: 500,
    };
    let ours = ServerProcess::ours(&sibling_binary("chat-local")?).await?;
    let p = scenarios::history_pages(ours.endpoint(), plain, runs).await?;
    let r = scenarios::history_pages(ours.endpoint(), rich, runs).await?;
    ours.stop().await;
    let mut body = String::from(
        "`GET /v1/conversations/{id}/messages?before=SEQ&limit=200` at random points of a \
         conversation of 10,000 entries: messages only, and 7,500 messages with 2,000 \
         reactions and 500 edits among them (each page folds the edits and reactions of \
         its messages in: one query for the entries, one for their reactions). Wall time \
         of one page over loopback HTTP, sequential.\n\n| | messages only | with reactions \
         and edits |\n|---|---:|---:|\n",
    );
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        body.push_str(&format!(
            "| {name}, ms | {:.2} | {:.2} |\n",
            p.quantile(q) as f64 / 1000.0,
            r.quantile(q) as f64 / 1000.0
        ));
    }
    body.push_str(&format!(
        "| pages x entries | {} x {} | {} x {} |\n",
        p.runs.len(),
        p.messages,
        r.runs.len(),
        r.messages
    ));
    out.emit("history", "History pages with reactions and edits", body)
}

async fn storm(out: &Out, clients: usize, messages: usize) -> anyhow::Result<()> {
    let (o, l) =
        both(|e| async move { scenarios::reconnect_storm(&e, clients, messages).await }).await?;
    out.emit(
        "storm",
        "Reconnect storm",
        report::timings(
            &format!(
                "{clients} clients (in pairs) reconnect at the same moment and sync the \
                 {messages} messages waiting in their conversation; all must succeed. Time \
                 from the common start to each client's done (max = the whole storm)."
            ),
            &o,
            &l,
        ),
    )
}

async fn coldstart(
    out: &Out,
    runs: usize,
    bin_dir: Option<PathBuf>,
    dynamodb_endpoint: Option<String>,
    extra_env: &[String],
) -> anyhow::Result<()> {
    use chat_bench::coldstart::{self, Environment, Fixture, FunctionResult, RuntimeApi};
    let extra = extra_env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--env {kv}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = target_dir()?;
    let bin_dir = bin_dir.unwrap_or_else(|| target.join("release"));
    let binaries = coldstart::function_binaries(&bin_dir)?;
    let endpoint = match dynamodb_endpoint {
        Some(e) => e,
        None => {
            tokio::task::spawn_blocking(|| {
                chat_tests::emulators::DynamoDbLocal::try_shared().map(|d| d.endpoint())
            })
            .await??
        }
    };
    let names = chat_aws::tables::TableNames::prefixed(&format!("cold{}", std::process::id()));
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "bench",
            ))
            .endpoint_url(&endpoint)
            .build(),
    );
    chat_aws::tables::create_all(&client, &names)
        .await
        .context("create the tables on DynamoDB Local")?;
    let secret = "cold-start-bench-secret".to_owned();
    let env = Environment {
        tables: [
            ("CHAT_TABLE_MAIN".into(), names.main.clone()),
            ("CHAT_TABLE_MESSAGES".into(), names.messages.clone()),
            ("CHAT_TABLE_CONNECTIONS".into(), names.connections.clone()),
        ],
        dynamodb_endpoint: endpoint,
        secret: secret.clone(),
        extra: extra.clone(),
    };
    let logs = target.join("bench").join("coldstart");
    std::fs::create_dir_all(&logs)?;
    let mut api = RuntimeApi::start().await?;
    let mut conversation = None;
    let mut results = Vec::new();
    for (name, binary) in &binaries {
        let name = name.clone();
        let log = logs.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&log);
        let mut result = FunctionResult {
            name: name.clone(),
            binary_bytes: std::fs::metadata(binary)?.len(),
            runs: Vec::new(),
        };
        // run 0 is a warm-up, not recorded
        for run in 0..=runs {
            let fixture = Fixture {
                secret: secret.clone(),
                conversation: conversation.clone(),
                run,
            };
            let Some(events) = coldstart::events(&name, &fixture) else {
                eprintln!("{name}: no events known for it, skipped");
                break;
            };
            tokio::time::sleep(coldstart::pause_before(&name)).await;
            let r = coldstart::run_once(&mut api, &name, binary, &env, events, &log).await?;
            if name == "chat-http" && conversation.is_none() {
                conversation = coldstart::conversation_of(&r.first_body);
            }
            if run > 0 {
                result.runs.push(r);
            }
        }
        if !result.runs.is_empty() {
            eprintln!(
                "{name}: init p50 {:?} max {:?}, first event p50 {:?}, answered {}",
                result.init(50.0),
                result.init(100.0),
                result.first(50.0),
                result.answers()
            );
            results.push(result);
        }
    }
    let packages = coldstart::arm64_packages(&target.join("lambda"))?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let settings: Vec<String> = extra.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
    let notes = format!(
        "Machine: {cpu}, {} cores, shared with other work. Logs: `target/bench/coldstart/`.{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if settings.is_empty() {
            String::new()
        } else {
            format!(" Extra settings: {}.", settings.join(", "))
        }
    );
    out.emit(
        "coldstart",
        "Lambda cold start (proxy)",
        coldstart::report(&results, &packages, &notes),
    )
}

fn cost(
    out: &Out,
    counts: Option<PathBuf>,
    run_test: bool,
    assumptions: chat_bench::cost::Assumptions,
) -> anyhow::Result<()> {
    use chat_bench::cost;
    let path = match counts {
        Some(p) => p,
        None => target_dir()?.join("bench").join("cost-counts.json"),
    };
    if run_test {
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["test", "-p", "chat-aws", "--test", "cost"])
            .current_dir(workspace_dir())
            .status()
            .context("run cargo test -p chat-aws --test cost")?;
        anyhow::ensure!(status.success(), "the AWS cost test failed");
    }
    let counts = cost::Counts::load(&path)?;
    out.emit(
        "cost",
        "Cost per million messages (AWS, list price)",
        cost::report(&counts, &cost::US_EAST_1_2025, &assumptions)?,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = Out {
        dry_run: cli.dry_run,
    };
    let defaults = RampArgs {
        rates: None,
        warmup: 2,
        measure: 5,
    };
    match cli.command {
        Command::LimitServer { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            println!("listening on {}", listener.local_addr()?);
            limit::serve(listener).await?;
        }
        Command::OneToOne { pairs, ramp } => one_to_one(&out, pairs, &ramp).await?,
        Command::Group {
            members,
            p99_ms,
            entry,
            ramp,
        } => group(&out, members, p99_ms, entry, &ramp).await?,
        Command::Idle { connections } => idle(&out, connections).await?,
        Command::Deployed {
            ws_url,
            http_url,
            secret,
            pairs,
            rate,
            seconds,
        } => {
            let plan = chat_bench::deployed::Plan {
                pairs,
                rate,
                seconds,
            };
            let deployment = chat_bench::deployed::Deployment {
                ws_url,
                http_url,
                secret,
            };
            let measured = chat_bench::deployed::run(&deployment, plan).await?;
            println!("{}", chat_bench::deployed::table(plan, &measured));
        }
        Command::Sync { runs } => sync(&out, runs).await?,
        Command::Storm { clients, messages } => storm(&out, clients, messages).await?,
        Command::History { runs } => history(&out, runs).await?,
        Command::Coldstart {
            runs,
            bin_dir,
            dynamodb_endpoint,
            extra_env,
        } => coldstart(&out, runs, bin_dir, dynamodb_endpoint, &extra_env).await?,
        Command::Cost {
            counts,
            run_test,
            memory_mb,
            send_ms,
            fanout_ms,
            heartbeat_ms,
            records_per_batch,
        } => cost(
            &out,
            counts,
            run_test,
            chat_bench::cost::Assumptions {
                memory_mb,
                send_ms,
                fanout_ms,
                heartbeat_ms,
                records_per_batch,
            },
        )?,
        Command::All => {
            one_to_one(&out, 1000, &defaults).await?;
            group(&out, 100, None, EntryArg::Message, &defaults).await?;
            group(&out, 1000, None, EntryArg::Message, &defaults).await?;
            idle(&out, 10_000).await?;
            sync(&out, 20).await?;
            storm(&out, 2000, 20).await?;
        }
    }
    Ok(())
}
