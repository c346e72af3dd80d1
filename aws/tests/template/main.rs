//! `template.yaml` against the code: the tables (keys, indexes, stream, TTL) must be the
//! ones `aws/src/tables.rs` defines and the tests create, every function must name a
//! binary that exists, and every variable the functions require must be set.
//!
//! By concern: `storage.rs`, `functions.rs`, `permissions.rs`, `operations.rs`; the
//! template and the helpers that read it are here.

use std::collections::BTreeSet;

use chat_aws::tables::{ALL, KeyAttr, TableDef};
use serde_yaml::Value;

mod functions;
mod operations;
mod permissions;
mod storage;

const TEMPLATE: &str = include_str!("../../../template.yaml");

fn template() -> Value {
    serde_yaml::from_str(TEMPLATE).expect("template.yaml parses")
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    let r = &t["Resources"][id];
    assert!(!r.is_null(), "template.yaml has no resource {id}");
    r
}

/// A short-form intrinsic (`!GetAtt X.Arn`) as (function, argument).
fn intrinsic(v: &Value) -> (String, String) {
    match v {
        Value::Tagged(t) => (
            t.tag.to_string().trim_start_matches('!').to_owned(),
            t.value.as_str().expect("a scalar argument").to_owned(),
        ),
        other => panic!("not a short-form intrinsic: {other:?}"),
    }
}

/// The functions behind the WebSocket API's routes.
const WEBSOCKET_FUNCTIONS: [&str; 8] = [
    "ConnectFunction",
    "DisconnectFunction",
    "DefaultFunction",
    "SendFunction",
    "ReadFunction",
    "DeliveredFunction",
    "TypingFunction",
    "HeartbeatFunction",
];

/// The `Statement`s of a function's inline policies; a statement under a condition
/// (`!If [Condition, statement, !Ref AWS::NoValue]`) as if the condition held.
fn statements(function: &Value) -> Vec<Value> {
    function["Properties"]["Policies"]
        .as_sequence()
        .expect("inline policies")
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
        .map(|s| match s {
            Value::Tagged(t) if t.tag == "If" => t.value[1].clone(),
            s => s,
        })
        .collect()
}

/// The functions: (logical id, resource).
fn functions(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, r)| (id.as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// The actions of a statement.
fn actions(s: &Value) -> Vec<String> {
    match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Sequence(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        other => panic!("actions {other:?}"),
    }
}
