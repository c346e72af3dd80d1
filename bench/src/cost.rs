//! The cost model: list-price dollars per million 1:1 messages and per million delivered
//! group frames, from the DynamoDB request counts and capacity units that
//! `aws/tests/cost.rs` measures against DynamoDB Local (it writes them to
//! `<target>/bench/cost-counts.json`). Everything else a message costs (API Gateway
//! frames, Lambda invocations and duration, SNS publishes) follows from the design and is
//! written out line by line, so the table shows what dominates.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// What one operation cost on DynamoDB, as measured.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Usage {
    pub requests: u32,
    #[serde(default)]
    pub by_operation: BTreeMap<String, u32>,
    pub read_units: f64,
    pub write_units: f64,
}

/// The measured usage per operation (`cost-counts.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Counts {
    /// Members of the measured group, sender included.
    pub group_members: u32,
    pub operations: BTreeMap<String, Usage>,
}

impl Counts {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "read {} (run `cargo test -p chat-aws --test cost` first, or pass --run-test)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    fn op(&self, name: &str) -> anyhow::Result<&Usage> {
        self.operations
            .get(name)
            .with_context(|| format!("cost-counts.json has no operation {name:?}"))
    }
}

/// List prices, in dollars.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    /// Where and when the prices were taken.
    pub source: &'static str,
    pub dynamodb_per_million_wru: f64,
    pub dynamodb_per_million_rru: f64,
    /// Stream reads by a Lambda trigger are not billed; other readers pay per 100,000.
    pub streams_per_100k_reads_by_lambda: f64,
    pub lambda_per_million_requests: f64,
    pub lambda_per_gb_second: f64,
    /// Per million messages (each frame in either direction, per 32 KB), first billion.
    pub apigw_per_million_messages: f64,
    pub apigw_per_million_connection_minutes: f64,
    pub sns_per_million_mobile_pushes: f64,
}

/// AWS list prices for us-east-1 (on-demand DynamoDB after its November 2024 cut,
/// Lambda arm64, API Gateway WebSocket first tier, SNS mobile push).
pub const US_EAST_1_2025: Prices = Prices {
    source: "AWS list prices, us-east-1, as published in 2025 (unchanged as far as we know \
             on 2026-11-24; check the pricing pages before relying on them)",
    dynamodb_per_million_wru: 0.625,
    dynamodb_per_million_rru: 0.125,
    streams_per_100k_reads_by_lambda: 0.0,
    lambda_per_million_requests: 0.20,
    lambda_per_gb_second: 0.000_013_333_4,
    apigw_per_million_messages: 1.00,
    apigw_per_million_connection_minutes: 0.25,
    sns_per_million_mobile_pushes: 0.50,
};

/// What the model cannot measure here.
#[derive(Debug, Clone, PartialEq)]
pub struct Assumptions {
    /// The functions' memory (template.yaml: 256 MB).
    pub memory_mb: f64,
    /// Billed duration of one send invocation.
    pub send_ms: f64,
    /// Billed duration of one fan-out invocation of one record.
    pub fanout_ms: f64,
    /// Billed duration of one heartbeat invocation (one touch).
    pub heartbeat_ms: f64,
    /// Stream records per fan-out invocation (1 at low load: no batching window).
    pub records_per_batch: f64,
}

impl Default for Assumptions {
    fn default() -> Self {
        Self {
            memory_mb: 256.0,
            send_ms: 20.0,
            fanout_ms: 20.0,
            heartbeat_ms: 10.0,
            records_per_batch: 1.0,
        }
    }
}

/// One line of a breakdown: how much of a resource one unit (a message, a delivered
/// frame) uses and what a million units cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub name: String,
    pub quantity: f64,
    pub unit: &'static str,
    pub per_million: f64,
}

/// The cost of a million units of something, line by line.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    pub title: String,
    pub per: &'static str,
    pub items: Vec<Item>,
    pub goal: Option<f64>,
}

impl Breakdown {
    pub fn total(&self) -> f64 {
        self.items.iter().map(|i| i.per_million).sum()
    }

    /// The most expensive line.
    pub fn dominant(&self) -> Option<&Item> {
        self.items
            .iter()
            .max_by(|a, b| a.per_million.total_cmp(&b.per_million))
    }
}

/// Resources of one event (a send, a heartbeat), before dividing by what it delivers.
#[derive(Debug, Clone, Default, PartialEq)]
struct Bill {
    apigw_messages: f64,
    lambda_requests: f64,
    lambda_ms: f64,
    wru: f64,
    rru: f64,
    stream_reads: f64,
    pushes: f64,
    connection_minutes: f64,
}

impl Bill {
    fn add_dynamodb(&mut self, usage: &Usage) {
        self.wru += usage.write_units;
        self.rru += usage.read_units;
    }

    /// Each line per `units` delivered.
    fn items(&self, p: &Prices, a: &Assumptions, units: f64, notes: &Notes) -> Vec<Item> {
        let gb_s = self.lambda_ms / 1000.0 * a.memory_mb / 1024.0;
        let per_unit = |q: f64| q / units;
        let mut items = vec![
            Item {
                name: format!("API Gateway messages ({})", notes.apigw),
                quantity: per_unit(self.apigw_messages),
                unit: "messages",
                per_million: per_unit(self.apigw_messages) * p.apigw_per_million_messages,
            },
            Item {
                name: format!("Lambda requests ({})", notes.lambda),
                quantity: per_unit(self.lambda_requests),
                unit: "invocations",
                per_million: per_unit(self.lambda_requests) * p.lambda_per_million_requests,
            },
            Item {
                name: format!(
                    "Lambda duration ({:.0} ms billed at {:.0} MB)",
                    self.lambda_ms, a.memory_mb
                ),
                quantity: per_unit(gb_s),
                unit: "GB-s",
                per_million: per_unit(gb_s) * p.lambda_per_gb_second * 1e6,
            },
            Item {
                name: format!("DynamoDB writes ({})", notes.dynamodb),
                quantity: per_unit(self.wru),
                unit: "WRU",
                per_million: per_unit(self.wru) * p.dynamodb_per_million_wru,
            },
            Item {
                name: "DynamoDB reads (same operations)".into(),
                quantity: per_unit(self.rru),
                unit: "RRU",
                per_million: per_unit(self.rru) * p.dynamodb_per_million_rru,
            },
        ];
        if self.stream_reads > 0.0 {
            items.push(Item {
                name: "DynamoDB Streams reads (by the Lambda trigger: not billed)".into(),
                quantity: per_unit(self.stream_reads),
                unit: "records",
                per_million: per_unit(self.stream_reads)
                    * p.streams_per_100k_reads_by_lambda
                    * 10.0,
            });
        }
        if self.pushes > 0.0 {
            items.push(Item {
                name: "SNS mobile push".into(),
                quantity: per_unit(self.pushes),
                unit: "publishes",
                per_million: per_unit(self.pushes) * p.sns_per_million_mobile_pushes,
            });
        }
        if self.connection_minutes > 0.0 {
            items.push(Item {
                name: "API Gateway connection minutes".into(),
                quantity: per_unit(self.connection_minutes),
                unit: "minutes",
                per_million: per_unit(self.connection_minutes)
                    * p.apigw_per_million_connection_minutes,
            });
        }
        items
    }
}

struct Notes {
    apigw: String,
    lambda: String,
    dynamodb: String,
}

/// A send and its fan-out: the send frame in, the ack back as the route response, the
/// send function (with direct delivery's posts and mark, as measured in `send`), the
/// liveness touch of the frame (at most one per 15 s per connection: priced as one, a
/// send after a quiet spell), the fan-out (at `records_per_batch` records per
/// invocation, each reading its stream record for free).
fn send_bill(c: &Counts, a: &Assumptions, send: &str, fan_out: &str) -> anyhow::Result<Bill> {
    let mut bill = Bill {
        apigw_messages: 2.0,
        lambda_requests: 1.0 + 1.0 / a.records_per_batch,
        lambda_ms: a.send_ms + a.fanout_ms / a.records_per_batch,
        stream_reads: 1.0,
        ..Bill::default()
    };
    bill.add_dynamodb(c.op(send)?);
    bill.add_dynamodb(c.op("touch")?);
    bill.add_dynamodb(c.op(fan_out)?);
    Ok(bill)
}

fn fanout_note(a: &Assumptions) -> String {
    if a.records_per_batch == 1.0 {
        "send + fan-out of a one-record batch".into()
    } else {
        format!(
            "send + 1/{} of a fan-out batch",
            a.records_per_batch.round()
        )
    }
}

/// A 1:1 message to an online recipient with one connection.
pub fn one_to_one_online(c: &Counts, p: &Prices, a: &Assumptions) -> anyhow::Result<Breakdown> {
    let mut bill = send_bill(c, a, "send", "fan_out_online")?;
    bill.apigw_messages += 1.0;
    let notes = Notes {
        apigw: "send in, ack out, message.new out".into(),
        lambda: fanout_note(a),
        dynamodb: "send + liveness touch + fan-out".into(),
    };
    Ok(Breakdown {
        title: "1:1 message, recipient online (one connection each)".into(),
        per: "message",
        items: bill.items(p, a, 1.0, &notes),
        goal: Some(6.00),
    })
}

/// A 1:1 message to an offline recipient with one phone: a push instead of a frame.
pub fn one_to_one_offline(c: &Counts, p: &Prices, a: &Assumptions) -> anyhow::Result<Breakdown> {
    let mut bill = send_bill(c, a, "send_offline", "fan_out_offline_push")?;
    bill.pushes = 1.0;
    let notes = Notes {
        apigw: "send in, ack out".into(),
        lambda: fanout_note(a),
        dynamodb: "send + liveness touch + fan-out with push".into(),
    };
    Ok(Breakdown {
        title: "1:1 message, recipient offline with one phone (SNS push)".into(),
        per: "message",
        items: bill.items(p, a, 1.0, &notes),
        goal: Some(6.00),
    })
}

/// One send to the measured group, every member online: per delivered frame.
pub fn group_frames(c: &Counts, p: &Prices, a: &Assumptions) -> anyhow::Result<Breakdown> {
    let members = f64::from(c.group_members);
    let recipients = members - 1.0;
    let mut bill = send_bill(c, a, "send_group_100", "fan_out_group_100")?;
    bill.apigw_messages += recipients;
    let notes = Notes {
        apigw: format!("send in, ack out, {recipients:.0} message.new out"),
        lambda: fanout_note(a),
        dynamodb: "send + liveness touch + fan-out".into(),
    };
    Ok(Breakdown {
        title: format!(
            "Group of {members:.0}, all online: one send delivered to {recipients:.0} members"
        ),
        per: "delivered frame",
        items: bill.items(p, a, recipients, &notes),
        goal: Some(1.08),
    })
}

/// A connection held open for a minute: the connection minute and the heartbeat the
/// client sends every 60 s (frame in, `heartbeat.ack` out, one invocation, one touch).
pub fn connected_minute(c: &Counts, p: &Prices, a: &Assumptions) -> anyhow::Result<Breakdown> {
    let mut bill = Bill {
        apigw_messages: 2.0,
        lambda_requests: 1.0,
        lambda_ms: a.heartbeat_ms,
        connection_minutes: 1.0,
        ..Bill::default()
    };
    bill.add_dynamodb(c.op("touch")?);
    let notes = Notes {
        apigw: "heartbeat in, heartbeat.ack out".into(),
        lambda: "the heartbeat function".into(),
        dynamodb: "liveness touch".into(),
    };
    Ok(Breakdown {
        title: "A connection open for one minute (heartbeat every 60 s)".into(),
        per: "connection-minute",
        items: bill.items(p, a, 1.0, &notes),
        goal: None,
    })
}

fn dollars(d: f64) -> String {
    if d >= 0.1 || d == 0.0 {
        format!("{d:.2}")
    } else {
        format!("{d:.4}")
    }
}

fn quantity(q: f64) -> String {
    if q == q.round() {
        format!("{q:.0}")
    } else if q >= 0.1 {
        format!("{q:.2}")
    } else {
        format!("{q:.2e}")
    }
}

/// One breakdown as a markdown table, with the goal and whether it is met.
pub fn table(b: &Breakdown) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "**{}**\n", b.title);
    let _ = writeln!(out, "| item | per {} | $ per million |", b.per);
    let _ = writeln!(out, "|---|---:|---:|");
    for i in &b.items {
        let _ = writeln!(
            out,
            "| {} | {} {} | {} |",
            i.name,
            quantity(i.quantity),
            i.unit,
            dollars(i.per_million)
        );
    }
    let total = b.total();
    let verdict = match b.goal {
        Some(goal) if total <= goal => format!(" (goal <= ${goal:.2}: met)"),
        Some(goal) => format!(" (goal <= ${goal:.2}: **missed**)"),
        None => String::new(),
    };
    let _ = writeln!(out, "| **total** | | **{}**{verdict} |", dollars(total));
    if let (Some(goal), Some(top)) = (b.goal, b.dominant())
        && total > goal
    {
        let share = top.per_million / total * 100.0;
        let _ = writeln!(
            out,
            "\nDominant: {} at ${} ({share:.0}% of the total).",
            top.name,
            dollars(top.per_million)
        );
    }
    out
}

/// The measured DynamoDB usage per operation.
pub fn counts_table(c: &Counts) -> String {
    let mut out = String::from(
        "| operation | requests | by operation | RRU | WRU |\n|---|---:|---|---:|---:|\n",
    );
    for (name, u) in &c.operations {
        let ops: Vec<String> = u
            .by_operation
            .iter()
            .map(|(op, n)| format!("{op} x{n}"))
            .collect();
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.1} | {:.1} |",
            u.requests,
            ops.join(", "),
            u.read_units,
            u.write_units
        );
    }
    out
}

/// The whole section of docs/bench-results.md.
pub fn report(c: &Counts, p: &Prices, a: &Assumptions) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "DynamoDB requests and capacity units are measured by `aws/tests/cost.rs` (an SDK \
         interceptor on the real adapter, against DynamoDB Local, `ReturnConsumedCapacity: \
         TOTAL`); the rest follows from the design. Prices: {}: DynamoDB on-demand \
         ${}/M WRU, ${}/M RRU; stream records read by a Lambda trigger are not billed; \
         Lambda ${}/M requests and ${}/GB-s (arm64); API Gateway WebSocket ${}/M messages \
         (every frame either way, route responses and PostToConnection included, per 32 KB; \
         first billion a month) and ${}/M connection-minutes; SNS mobile push ${}/M.\n",
        p.source,
        p.dynamodb_per_million_wru,
        p.dynamodb_per_million_rru,
        p.lambda_per_million_requests,
        p.lambda_per_gb_second,
        p.apigw_per_million_messages,
        p.apigw_per_million_connection_minutes,
        p.sns_per_million_mobile_pushes,
    );
    let _ = writeln!(
        out,
        "Assumed, not measured: {:.0} MB functions (template.yaml), {:.0} ms billed per send \
         and {:.0} ms per fan-out invocation, {:.0} ms per heartbeat, {} stream record(s) \
         per fan-out batch. Not \
         counted per message: storage (a ~300-byte message item, $0.25/GB-month), \
         point-in-time recovery, CloudWatch Logs, data transfer out.\n",
        a.memory_mb, a.send_ms, a.fanout_ms, a.heartbeat_ms, a.records_per_batch
    );
    let floor = 3.0 * p.apigw_per_million_messages
        + p.dynamodb_per_million_wru
        + p.lambda_per_million_requests;
    let _ = writeln!(
        out,
        "A floor for any design on this stack: a 1:1 message is at least 3 API Gateway \
         messages (frame in, ack out, frame out), 1 WRU (its item) and 1 invocation: \
         ${}/M before anything else.\n",
        dollars(floor)
    );
    for b in [
        one_to_one_online(c, p, a)?,
        one_to_one_offline(c, p, a)?,
        group_frames(c, p, a)?,
        connected_minute(c, p, a)?,
    ] {
        out += &table(&b);
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "<details><summary>Measured DynamoDB usage per operation</summary>\n\n{}\n</details>",
        counts_table(c)
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(requests: u32, read_units: f64, write_units: f64) -> Usage {
        Usage {
            requests,
            by_operation: BTreeMap::new(),
            read_units,
            write_units,
        }
    }

    fn counts() -> Counts {
        let operations = [
            ("send", usage(4, 3.0, 9.0)),
            ("send_offline", usage(4, 3.0, 9.0)),
            ("send_group_100", usage(4, 3.0, 9.0)),
            ("touch", usage(1, 0.0, 1.0)),
            ("fan_out_online", usage(3, 3.0, 0.0)),
            ("fan_out_offline_push", usage(7, 4.5, 1.0)),
            ("fan_out_group_100", usage(3, 55.0, 0.0)),
        ]
        .into_iter()
        .map(|(n, u)| (n.to_owned(), u))
        .collect();
        Counts {
            group_members: 100,
            operations,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn line<'a>(b: &'a Breakdown, prefix: &str) -> &'a Item {
        b.items.iter().find(|i| i.name.starts_with(prefix)).unwrap()
    }

    #[test]
    fn a_one_to_one_message_adds_up_line_by_line() {
        let a = Assumptions {
            memory_mb: 1024.0,
            send_ms: 500.0,
            fanout_ms: 500.0,
            heartbeat_ms: 0.0,
            records_per_batch: 1.0,
        };
        let b = one_to_one_online(&counts(), &US_EAST_1_2025, &a).unwrap();
        // 3 frames at $1/M; 2 invocations at $0.20/M; 1 GB-s at $0.0000133334
        assert!(close(line(&b, "API Gateway").per_million, 3.0));
        assert!(close(line(&b, "Lambda requests").per_million, 0.4));
        assert!(close(line(&b, "Lambda duration").per_million, 13.3334));
        // 9 + 1 WRU at $0.625/M; 3 + 3 RRU at $0.125/M
        assert!(close(line(&b, "DynamoDB writes").per_million, 6.25));
        assert!(close(line(&b, "DynamoDB reads").per_million, 0.75));
        assert!(close(line(&b, "DynamoDB Streams").per_million, 0.0));
        assert!(close(b.total(), 3.0 + 0.4 + 13.3334 + 6.25 + 0.75));
        assert_eq!(b.dominant().unwrap().name, line(&b, "Lambda duration").name);
    }

    #[test]
    fn an_offline_recipient_costs_a_push_instead_of_a_frame() {
        let b = one_to_one_offline(&counts(), &US_EAST_1_2025, &Assumptions::default()).unwrap();
        assert!(close(line(&b, "API Gateway").quantity, 2.0));
        assert!(close(line(&b, "SNS").per_million, 0.5));
        assert!(close(line(&b, "DynamoDB writes").quantity, 11.0));
        assert!(close(line(&b, "DynamoDB reads").quantity, 7.5));
    }

    #[test]
    fn group_costs_are_divided_by_the_frames_delivered() {
        let a = Assumptions {
            records_per_batch: 4.0,
            ..Assumptions::default()
        };
        let b = group_frames(&counts(), &US_EAST_1_2025, &a).unwrap();
        // 2 + 99 frames per send, over 99 deliveries
        assert!(close(line(&b, "API Gateway").quantity, 101.0 / 99.0));
        // the send's invocation and a quarter of a fan-out's
        assert!(close(line(&b, "Lambda requests").quantity, 1.25 / 99.0));
        assert!(close(line(&b, "DynamoDB reads").quantity, 58.0 / 99.0));
        assert!(close(
            line(&b, "DynamoDB writes").per_million,
            10.0 * 0.625 / 99.0
        ));
    }

    #[test]
    fn a_missed_goal_names_what_dominates() {
        let b = one_to_one_online(&counts(), &US_EAST_1_2025, &Assumptions::default()).unwrap();
        let text = table(&b);
        assert!(text.contains("**missed**"), "{text}");
        assert!(text.contains("Dominant: DynamoDB writes"), "{text}");
    }

    #[test]
    fn counts_without_an_operation_are_refused() {
        let mut c = counts();
        c.operations.remove("touch");
        let e = one_to_one_online(&c, &US_EAST_1_2025, &Assumptions::default()).unwrap_err();
        assert!(e.to_string().contains("touch"), "{e}");
    }

    #[test]
    fn the_counts_file_of_the_aws_test_parses() {
        let json = r#"{"source":"x","group_members":100,"operations":{"send":
            {"requests":4,"by_operation":{"GetItem":1,"TransactWriteItems":1},
             "read_units":3.0,"write_units":9.0}}}"#;
        let c: Counts = serde_json::from_str(json).unwrap();
        assert_eq!(c.operations["send"].by_operation["GetItem"], 1);
        assert!(counts_table(&c).contains("GetItem x1, TransactWriteItems x1"));
    }
}
