//! Markdown tables for docs/bench-results.md, and the blocks of that file they replace.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::load::StepReport;
use crate::scenarios::{Capacity, Idle, Timings};

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn rate(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.0}k", r / 1000.0)
    } else {
        format!("{r:.0}")
    }
}

fn ratio(ours: f64, limit: f64) -> String {
    if limit > 0.0 {
        format!("{:.2}", ours / limit)
    } else {
        "-".into()
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn best_rate(c: &Capacity) -> f64 {
    c.best().map_or(0.0, |s| s.deliveries_per_sec)
}

/// The summary and the steps of a capacity search on both servers.
pub fn capacity(title: &str, p99_limit_ms: f64, ours: &Capacity, limit: &Capacity) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{title}: {} connections. Capacity = the highest offered rate that was delivered \
         exactly once with corrected p99 <= {p99_limit_ms} ms (a failed rate is run once \
         more before it counts).\n",
        ours.connections
    );
    let _ = writeln!(out, "| | ours | limit | ours / limit |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let (o, l) = (best_rate(ours), best_rate(limit));
    let _ = writeln!(
        out,
        "| capacity, deliveries/s | {} | {} | {} |",
        rate(o),
        rate(l),
        ratio(o, l)
    );
    let row = |name: &str, f: &dyn Fn(&StepReport) -> String| {
        format!(
            "| {name} | {} | {} | |\n",
            ours.best().map_or("-".into(), f),
            limit.best().map_or("-".into(), f)
        )
    };
    out += &row("messages/s (acked) at capacity", &|s| rate(s.offered_msgs));
    out += &row("p50 / p99 / p99.9 / max, ms (corrected)", &|s| {
        format!(
            "{} / {} / {} / {}",
            ms(s.corrected.p50),
            ms(s.corrected.p99),
            ms(s.corrected.p999),
            ms(s.corrected.max)
        )
    });
    out += &row("p50 / p99, ms (from actual send)", &|s| {
        format!("{} / {}", ms(s.actual.p50), ms(s.actual.p99))
    });
    out += &row("server CPU (100% = 1 core)", &|s| {
        s.server_cpu.map_or("-".into(), |c| format!("{c:.0}%"))
    });
    out += &row("server RSS", &|s| s.server_rss.map_or("-".into(), mib));
    out += &row("load generator CPU", &|s| {
        s.generator_cpu.map_or("-".into(), |c| format!("{c:.0}%"))
    });
    for (label, c) in [("ours", ours), ("limit", limit)] {
        let _ = writeln!(
            out,
            "\n<details><summary>{label}: every step</summary>\n\n\
             | offered/s | delivered/s | p50 | p99 | p99.9 | max (ms, corrected) | p99 actual | lost | dup | server CPU | gen CPU |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &c.steps {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                rate(s.offered_msgs * (s.expected_deliveries as f64 / s.sent.max(1) as f64)),
                rate(s.deliveries_per_sec),
                ms(s.corrected.p50),
                ms(s.corrected.p99),
                ms(s.corrected.p999),
                ms(s.corrected.max),
                ms(s.actual.p99),
                s.lost,
                s.duplicates,
                s.server_cpu.map_or("-".into(), |c| format!("{c:.0}%")),
                s.generator_cpu.map_or("-".into(), |c| format!("{c:.0}%")),
            );
        }
        let _ = writeln!(out, "\n</details>");
    }
    out
}

pub fn idle(ours: &Idle, limit: &Idle) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} idle connections (connected, registered, silent).\n",
        ours.connections
    );
    let _ = writeln!(out, "| | ours | limit | ours / limit |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let (o, l) = (ours.bytes_per_connection(), limit.bytes_per_connection());
    let _ = writeln!(
        out,
        "| RSS per connection | {:.1} KB | {:.1} KB | {} |",
        o / 1000.0,
        l / 1000.0,
        ratio(o, l)
    );
    let _ = writeln!(
        out,
        "| server RSS before / after | {} / {} | {} / {} | |",
        mib(ours.rss_before),
        mib(ours.rss_after),
        mib(limit.rss_before),
        mib(limit.rss_after)
    );
    out
}

pub fn timings(what: &str, ours: &Timings, limit: &Timings) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{what}\n");
    let _ = writeln!(out, "| | ours | limit | ours / limit |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        let (o, l) = (ours.quantile(q), limit.quantile(q));
        let _ = writeln!(
            out,
            "| {name}, ms | {} | {} | {} |",
            ms(o),
            ms(l),
            ratio(o as f64, l as f64)
        );
    }
    let _ = writeln!(
        out,
        "| runs (clients) x messages each | {} x {} | {} x {} | |",
        ours.runs.len(),
        ours.messages,
        limit.runs.len(),
        limit.messages
    );
    out
}

/// Replaces the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in the
/// file at `path` with `body`, appending the block when it is not there yet.
pub fn write_block(path: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (open, close) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let block = format!("{open}\n{}\n{close}", body.trim_end());
    let updated = match (text.find(&open), text.find(&close)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{block}{}", &text[..a], &text[b + close.len()..])
        }
        _ => format!("{}\n{block}\n", text.trim_end()),
    };
    std::fs::write(path, updated).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_replaced_in_place_and_appended_when_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("B.md");
        std::fs::write(&path, "# Head\n\nintro\n").unwrap();
        write_block(&path, "a", "one").unwrap();
        write_block(&path, "b", "two").unwrap();
        write_block(&path, "a", "three").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# Head\n\nintro\n<!-- bench:a -->\nthree\n<!-- /bench:a -->\n\
             <!-- bench:b -->\ntwo\n<!-- /bench:b -->\n"
        );
    }
}
