//! `chat-bench`: run a benchmark scenario against `chat-local` and the limit server, print
//! the table and write it into BENCHMARKS.md. See BENCHMARKS.md for the commands.

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
    /// Print the tables without writing them into BENCHMARKS.md.
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
}

fn benchmarks_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md")
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
            report::write_block(&benchmarks_md(), block, &format!("### {title}\n\n{body}"))?;
        }
        Ok(())
    }
}

async fn one_to_one(out: &Out, pairs: usize, args: &RampArgs) -> anyhow::Result<()> {
    let rates = [
        2e3, 5e3, 10e3, 15e3, 20e3, 25e3, 30e3, 40e3, 50e3, 60e3, 80e3, 100e3,
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
    args: &RampArgs,
) -> anyhow::Result<()> {
    let p99_ms = p99_ms.unwrap_or(if members >= 1000 { 100.0 } else { 10.0 });
    let rates = [
        20e3, 50e3, 100e3, 150e3, 200e3, 300e3, 400e3, 500e3, 600e3, 800e3, 1000e3,
    ];
    let ramp = ramp(args, &rates, p99_ms);
    let (o, l) = both(|e| {
        let ramp = ramp.clone();
        async move { scenarios::capacity(&e, 1, members, &ramp).await }
    })
    .await?;
    out.emit(
        &format!("group-{members}"),
        &format!("Group of {members}"),
        report::capacity(
            &format!("One group of {members}, all online, every member sending"),
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
            ramp,
        } => group(&out, members, p99_ms, &ramp).await?,
        Command::Idle { connections } => idle(&out, connections).await?,
        Command::Sync { runs } => sync(&out, runs).await?,
        Command::Storm { clients, messages } => storm(&out, clients, messages).await?,
        Command::All => {
            one_to_one(&out, 1000, &defaults).await?;
            group(&out, 100, None, &defaults).await?;
            group(&out, 1000, None, &defaults).await?;
            idle(&out, 10_000).await?;
            sync(&out, 20).await?;
            storm(&out, 2000, 20).await?;
        }
    }
    Ok(())
}
