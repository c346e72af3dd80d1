//! A deployed stack's latency at a fixed low rate: `chat-bench deployed` against the
//! WebSocket and HTTP URLs of a deployment (the stack on a local emulator, or a real AWS
//! stage) and its token secret. Open loop: sends leave on a fixed schedule whatever the
//! answers, over `pairs` direct conversations, and each is timed from its scheduled
//! moment to its ack (the sender) and to its `message.new` (the other member).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chat_shared::auth::TokenVerifier;
use chat_shared::ids::UserId;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// What to measure against.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// `ws://` or `wss://` URL of the WebSocket stage (no query).
    pub ws_url: String,
    /// Base URL of the HTTP API (`/v1/...` is appended).
    pub http_url: String,
    /// The HS256 secret the deployment verifies tokens with.
    pub secret: String,
}

/// The run's shape.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub pairs: usize,
    /// Messages per second, over all pairs.
    pub rate: f64,
    pub seconds: u64,
}

/// What one run measured: latencies in milliseconds.
#[derive(Debug)]
pub struct Measured {
    pub sent: usize,
    pub acked: usize,
    pub delivered: usize,
    pub ack: Histogram<u64>,
    pub delivery: Histogram<u64>,
}

/// When each send left, and when its ack and delivery came, by clientMessageId.
#[derive(Default)]
struct Times {
    sent: HashMap<String, Instant>,
    acked: HashMap<String, Instant>,
    delivered: HashMap<String, Instant>,
}

fn token(secret: &str, user: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let user = UserId::parse(user).expect("bench user ids are valid");
    TokenVerifier::new(secret.as_bytes(), None, None).issue(&user, now, 3600)
}

/// Runs the plan and answers what it measured.
pub async fn run(d: &Deployment, plan: Plan) -> anyhow::Result<Measured> {
    let tag = format!("{:x}", std::process::id());
    let http = reqwest::Client::new();
    let mut pairs = Vec::new();
    for i in 0..plan.pairs {
        let (a, b) = (format!("dep{tag}-a{i}"), format!("dep{tag}-b{i}"));
        let created: Value = http
            .post(format!(
                "{}/v1/conversations",
                d.http_url.trim_end_matches('/')
            ))
            .bearer_auth(token(&d.secret, &a))
            .json(&json!({"type": "direct", "members": [b]}))
            .send()
            .await
            .context("create a conversation")?
            .json()
            .await?;
        let id = created["conversationId"]
            .as_str()
            .with_context(|| format!("no conversation: {created}"))?
            .to_owned();
        pairs.push((a, b, id));
    }
    let times = Arc::new(Mutex::new(Times::default()));
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for (a, b, id) in &pairs {
        for (user, sends) in [(a, true), (b, false)] {
            let url = format!(
                "{}?v=1&token={}&deviceId=bench",
                d.ws_url,
                token(&d.secret, user)
            );
            let (ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .with_context(|| format!("connect {user}"))?;
            let (sink, mut stream) = ws.split();
            let times = times.clone();
            readers.push(tokio::spawn(async move {
                while let Some(Ok(frame)) = stream.next().await {
                    let Message::Text(text) = frame else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    let Some(cmid) = v["clientMessageId"].as_str() else {
                        continue;
                    };
                    let now = Instant::now();
                    let mut t = times.lock().expect("times");
                    match v["type"].as_str() {
                        Some("message.ack") => t.acked.entry(cmid.to_owned()).or_insert(now),
                        Some("message.new") => t.delivered.entry(cmid.to_owned()).or_insert(now),
                        _ => continue,
                    };
                }
            }));
            if sends {
                senders.push((sink, id.clone()));
            }
        }
    }
    // Every socket is registered before the first send: a heartbeat round trip each
    // would do, but API Gateway registers a connection before $connect answers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = (plan.rate * plan.seconds as f64) as usize;
    let start = Instant::now();
    let count = senders.len();
    for k in 0..total {
        let at = start + Duration::from_secs_f64(k as f64 / plan.rate);
        tokio::time::sleep_until(at.into()).await;
        let (sink, id) = &mut senders[k % count];
        let cmid = format!("d{k}");
        let frame = json!({"action": "send", "conversationId": id, "clientMessageId": cmid,
                           "content": {"type": "text", "text": "latency probe"}});
        times.lock().expect("times").sent.insert(cmid, at);
        sink.send(Message::text(frame.to_string())).await?;
    }
    // What is still on its way gets ten seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let arrived = {
            let t = times.lock().expect("times");
            t.acked.len() >= total && t.delivered.len() >= total
        };
        if arrived {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in readers {
        r.abort();
    }
    let t = times.lock().expect("times");
    let mut ack = Histogram::new(3)?;
    let mut delivery = Histogram::new(3)?;
    for (cmid, sent) in &t.sent {
        if let Some(at) = t.acked.get(cmid) {
            ack.record(at.duration_since(*sent).as_millis() as u64)?;
        }
        if let Some(at) = t.delivered.get(cmid) {
            delivery.record(at.duration_since(*sent).as_millis() as u64)?;
        }
    }
    if t.acked.is_empty() {
        bail!("no send was acked: is this the deployment's WebSocket URL?");
    }
    Ok(Measured {
        sent: t.sent.len(),
        acked: t.acked.len(),
        delivered: t.delivered.len(),
        ack,
        delivery,
    })
}

/// The result as a Markdown table.
pub fn table(plan: Plan, m: &Measured) -> String {
    let row = |what: &str, h: &Histogram<u64>, n: usize| {
        format!(
            "| {what} | {n} of {} | {} | {} | {} | {} |",
            m.sent,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.max()
        )
    };
    [
        format!(
            "{} msg/s over {} pairs for {} s, open loop; ms from each send's scheduled moment:",
            plan.rate, plan.pairs, plan.seconds
        ),
        String::new(),
        "| | arrived | p50 | p90 | p99 | max |".to_owned(),
        "|---|---|---:|---:|---:|---:|".to_owned(),
        row("ack (sender)", &m.ack, m.acked),
        row(
            "delivery (`message.new`, other member)",
            &m.delivery,
            m.delivered,
        ),
    ]
    .join("\n")
}
