//! Protocol 1.1, sections 8.1 and 8.2: the entries of kind `message`, `edit`, `delete` and
//! `reaction`; the `edit`, `delete` and `react` actions over WebSocket and HTTP; the
//! current state of a message in history and sync; unread counts, pushes, conversation
//! order and the rate limit as entries change them.
//!
//! One file per action or concern; the helpers they share are here.

mod authorization;
mod bad_input;
mod counts;
mod delete;
mod edit;
mod http;
mod idempotency;
mod message;
mod rate_limit;
mod react;
mod sync;

use std::collections::BTreeSet;

use crate::support::*;

/// Every key of a `message.ack` in 1.1 (section 2 plus `kind`).
const ACK_KEYS: &[&str] = &[
    "type",
    "requestId",
    "conversationId",
    "clientMessageId",
    "messageId",
    "seq",
    "timestamp",
    "duplicate",
    "kind",
];

/// Every key of an HTTP ack in 1.1: the `message.ack` without `type` and `requestId`.
const HTTP_ACK_KEYS: &[&str] = &[
    "conversationId",
    "clientMessageId",
    "messageId",
    "seq",
    "timestamp",
    "duplicate",
    "kind",
];

/// Every key of a message object of kind `message` in 1.1 (history, sync; `message.new`
/// adds `type`).
const MESSAGE_KEYS: &[&str] = &[
    "conversationId",
    "messageId",
    "seq",
    "senderId",
    "clientMessageId",
    "content",
    "replyTo",
    "timestamp",
    "kind",
    "editedAt",
    "deleted",
    "reactions",
];

const THUMBS_UP: &str = "👍";
/// U+2764 U+FE0F, the fully qualified red heart.
const HEART: &str = "\u{2764}\u{FE0F}";
/// U+2764 alone: a different emoji for the server (compared byte for byte).
const BARE_HEART: &str = "\u{2764}";

fn text(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// A direct conversation alice-bob where alice sent `texts` (`cm-1`, `cm-2`, ...) and
/// both are connected, bob having received every message.
struct Direct {
    server: TestServer,
    id: String,
    alice: WsClient,
    bob: WsClient,
    acks: Vec<Value>,
}

async fn direct_with(texts: &[&str]) -> Direct {
    direct_on(server(), texts).await
}

async fn direct_on(builder: TestServerBuilder, texts: &[&str]) -> Direct {
    let server = builder.start().await;
    let id = conv_id(&server.http("alice").create_direct("bob").await);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    let mut acks = Vec::new();
    for (n, text) in texts.iter().enumerate() {
        acks.push(
            alice
                .send_message(&id, &format!("cm-{}", n + 1), text)
                .await,
        );
    }
    for seq in 1..=texts.len() {
        recv_entry(&mut bob, &id, seq as i64).await;
    }
    Direct {
        server,
        id,
        alice,
        bob,
        acks,
    }
}

/// A group "Team" that alice (admin) made with `others`; alice's first message "hello" is
/// seq 1. Nobody is connected.
async fn group_with_message(others: &[&str]) -> (TestServer, String, Value) {
    let server = start().await;
    let id = conv_id(&server.http("alice").create_group("Team", others).await);
    let (status, ack) = server
        .http("alice")
        .send_message(&id, "cm-1", "hello")
        .await;
    assert_eq!(status, 201, "{ack}");
    (server, id, ack)
}

/// The message objects of a conversation as `user` reads them in history.
async fn history(server: &TestServer, user: &str, id: &str) -> Vec<Value> {
    all_messages(&server.http(user), id).await
}

/// One reaction of a summary, normalised for comparison: (`emoji`, `count`, the
/// `userIds` as a set, `mine`). `userIds` has no order in the contract.
type Reaction = (String, i64, BTreeSet<String>, bool);

/// The `reactions` of a message object, checking each item's keys and the 3-id cap.
fn reactions(message: &Value) -> Vec<Reaction> {
    let list = message["reactions"]
        .as_array()
        .unwrap_or_else(|| panic!("reactions is not an array: {message}"));
    list.iter()
        .map(|r| {
            assert_keys(r, &["emoji", "count", "userIds", "mine"]);
            let ids: BTreeSet<String> = r["userIds"]
                .as_array()
                .unwrap_or_else(|| panic!("userIds is not an array: {r}"))
                .iter()
                .map(|u| u.as_str().expect("a user id").to_owned())
                .collect();
            assert!(ids.len() <= 3, "at most 3 userIds: {r}");
            (
                r["emoji"].as_str().expect("emoji is a string").to_owned(),
                r["count"].as_i64().expect("count is an integer"),
                ids,
                r["mine"].as_bool().expect("mine is a bool"),
            )
        })
        .collect()
}

fn reaction(emoji: &str, count: i64, user_ids: &[&str], mine: bool) -> Reaction {
    (
        emoji.to_owned(),
        count,
        user_ids.iter().map(|u| (*u).to_owned()).collect(),
        mine,
    )
}

/// `POST /v1/conversations/{id}/messages` with `body`.
async fn http_entry(server: &TestServer, user: &str, id: &str, body: Value) -> (u16, Value) {
    server
        .http(user)
        .post(&format!("/v1/conversations/{id}/messages"), &body)
        .await
}
