//! The protocol as data, enforced: every JSON frame a [`WsClient`] reads and every answer
//! an [`Http`] call gets is checked against `docs/asyncapi.yaml` and `docs/openapi.yaml`,
//! and so is every JSON frame and body they send.
//!
//! What is sent is held to the server's verdict rather than refused up front, since the
//! suites send malformed frames and bodies on purpose: one the server accepts (an ack,
//! `ok`, a 2xx) must be one the documents allow, else the suite fails. The other way
//! round is not checked: a frame the documents allow may still be refused for a rule a
//! schema cannot say (a `replyTo` past the conversation's last seq, an attachment not
//! uploaded yet).

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;

use jsonschema::{Registry, Validator};
use serde_json::Value;

/// Where the two documents are registered; `$ref`s between them resolve against it.
const BASE: &str = "https://chat.invalid/docs/";

/// The documents, compiled once per test process.
static PROTOCOL: LazyLock<Protocol> = LazyLock::new(Protocol::load);

/// Checks a frame the server sent; `deployed`: behind API Gateway, whose own error
/// frames (without a type) are allowed.
pub fn check_server_frame(frame: &Value, deployed: bool) -> Result<(), String> {
    let key = match frame.get("type") {
        Some(Value::String(t)) => t.as_str(),
        None if deployed => GATEWAY_ERROR,
        None => return Err(format!("a server frame without a type: {frame}")),
        Some(other) => return Err(format!("frame type {other} is not a string")),
    };
    match PROTOCOL.server_frames.get(key) {
        Some(v) => check(v, frame, &format!("server frame {key:?}")),
        None => Err(format!(
            "server frame type {key:?} is not in docs/asyncapi.yaml"
        )),
    }
}

/// Checks a frame a client sends: `Err` names why the documents refuse it.
pub fn check_client_frame(frame: &Value) -> Result<(), String> {
    let Some(action) = frame.get("action").and_then(Value::as_str) else {
        return Err("a client frame without a string `action`".to_owned());
    };
    match PROTOCOL.client_frames.get(action) {
        Some(v) => check(v, frame, &format!("client frame {action:?}")),
        None => Err(format!("action {action:?} is not in docs/asyncapi.yaml")),
    }
}

/// Checks one HTTP exchange: the answer always; the request `body` (when JSON) only
/// against the server's verdict (see the module docs). `path` may carry a query.
/// `deployed`: the server is behind API Gateway, whose own error answers are allowed;
/// a server of ours must answer every error itself.
pub fn check_exchange(
    method: &str,
    path: &str,
    body: Option<&Value>,
    status: u16,
    answer: &Value,
    deployed: bool,
) -> Result<(), String> {
    let path = path.split('?').next().unwrap_or(path);
    let what = format!("{method} {path} -> {status}");
    if status >= 400 && !deployed {
        check(&PROTOCOL.error, answer, &what)?;
    }
    let Some(operation) = PROTOCOL.operation(method, path) else {
        // Unknown routes and methods are answered 404 (400 at /ws) with an error.
        if status >= 400 {
            return check(
                &PROTOCOL.any_error,
                answer,
                &format!("{what} (no such route)"),
            );
        }
        return Err(format!(
            "{what}: the server serves a route docs/openapi.yaml does not have"
        ));
    };
    if (200..300).contains(&status)
        && let (Some(body), Some(request)) = (body, &operation.request)
    {
        check(request, body, &format!("{what}: the request it accepted"))?;
    }
    let answer_check = operation
        .responses
        .get(&status.to_string())
        .or_else(|| operation.responses.get("default"))
        .ok_or_else(|| format!("{what}: status {status} is not in docs/openapi.yaml"))?;
    match answer_check {
        Answer::Json(v) => check(v, answer, &what),
        Answer::Empty if answer.is_null() => Ok(()),
        Answer::Empty => Err(format!("{what}: documented without a body, got {answer}")),
        Answer::Other => Ok(()),
    }
}

/// The frames a WebSocket client sent that await their answer, to hold the server's
/// verdict to the documents: an answer that accepts (`message.ack`, `ok`,
/// `heartbeat.ack`) a frame they refuse is an error. An answer goes to the oldest frame it
/// can answer (answers to frames of one connection come in order locally).
#[derive(Debug, Default)]
pub struct Verdicts {
    awaiting: VecDeque<Awaiting>,
}

/// A frame sent whose answer can be told apart from the others'.
#[derive(Debug)]
struct Awaiting {
    answered_as: AnswerKey,
    /// Why docs/asyncapi.yaml refuses the frame, if it does.
    refused: Option<String>,
}

/// What an answer carries of the frame it answers.
#[derive(Debug, PartialEq, Eq)]
enum AnswerKey {
    /// The frame's `requestId`.
    Request(String),
    /// An append without a `requestId`: its `clientMessageId` (with `requestId: null`).
    Append(String),
}

/// The longest `requestId` (and append `clientMessageId`) an answer repeats; the
/// server answers a longer one with `null` (docs/protocol.md section 2).
const ECHOED_ID_MAX_CHARS: usize = 64;

/// How many unanswered frames are remembered (frames whose answer never comes, such as
/// those sent into a dying socket, are forgotten oldest first).
const AWAITING_KEPT: usize = 4096;

impl Verdicts {
    /// Checks a frame sent and remembers it until its answer, when that answer can be
    /// told apart: a frame the server would answer with `requestId: null` and nothing
    /// else of it (an invalid `requestId`, a `read` without one) is not kept.
    pub fn sent(&mut self, frame: &Value) {
        let refused = check_client_frame(frame).err();
        let text = |name: &str| {
            frame
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| s.chars().count() <= ECHOED_ID_MAX_CHARS)
                .map(str::to_owned)
        };
        let answered_as = match frame.get("requestId") {
            None | Some(Value::Null) => {
                let appends = matches!(
                    frame.get("action").and_then(Value::as_str),
                    Some("send" | "edit" | "delete" | "react")
                );
                match text("clientMessageId") {
                    Some(cmid) if appends => AnswerKey::Append(cmid),
                    _ => return,
                }
            }
            Some(_) => match text("requestId") {
                Some(request) => AnswerKey::Request(request),
                None => return,
            },
        };
        if self.awaiting.len() == AWAITING_KEPT {
            self.awaiting.pop_front();
        }
        self.awaiting.push_back(Awaiting {
            answered_as,
            refused,
        });
    }

    /// Matches a frame the server sent to the oldest frame it answers; `Err` when it
    /// accepts one the documents refuse.
    pub fn answered(&mut self, answer: &Value) -> Result<(), String> {
        let accepted = match answer.get("type").and_then(Value::as_str) {
            Some("message.ack" | "ok" | "heartbeat.ack") => true,
            Some("error") => false,
            _ => return Ok(()),
        };
        let text = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_owned);
        let key = match (text("requestId"), text("clientMessageId")) {
            (Some(request), _) => AnswerKey::Request(request),
            (None, Some(cmid)) => AnswerKey::Append(cmid),
            (None, None) => return Ok(()),
        };
        let Some(i) = self.awaiting.iter().position(|a| a.answered_as == key) else {
            return Ok(());
        };
        let sent = self.awaiting.remove(i).expect("index is in range");
        match (accepted, sent.refused) {
            (true, Some(reason)) => Err(format!(
                "the server accepted a frame docs/asyncapi.yaml refuses ({reason}); its answer: {answer}"
            )),
            _ => Ok(()),
        }
    }
}

/// The message name in docs/asyncapi.yaml of API Gateway's frames without a type.
const GATEWAY_ERROR: &str = "gateway error";

fn check(validator: &Validator, value: &Value, what: &str) -> Result<(), String> {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what} does not match the protocol documents: {}\n  value: {value}",
            errors.join("; ")
        ))
    }
}

struct Protocol {
    client_frames: HashMap<String, Validator>,
    server_frames: HashMap<String, Validator>,
    operations: Vec<Operation>,
    /// Our servers' error body.
    error: Validator,
    /// Any documented error answer (ours, or API Gateway's own).
    any_error: Validator,
}

/// One route and method of docs/openapi.yaml.
struct Operation {
    method: String,
    /// The path template's segments; `{name}` matches any one segment.
    segments: Vec<String>,
    request: Option<Validator>,
    responses: HashMap<String, Answer>,
}

/// What a documented response says of its body.
enum Answer {
    Json(Validator),
    Empty,
    /// Not JSON (bytes, HTML, text): not checked here.
    Other,
}

impl Protocol {
    fn load() -> Self {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let read = |name: &str| -> Value {
            let path = docs.join(name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let mut doc: Value = serde_yaml::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
            absolute_refs(&mut doc, name);
            doc
        };
        let asyncapi = read("asyncapi.yaml");
        let openapi = read("openapi.yaml");
        let registry = Registry::new()
            .add(format!("{BASE}asyncapi.yaml"), asyncapi.clone())
            .and_then(|r| r.add(format!("{BASE}openapi.yaml"), openapi.clone()))
            .and_then(|r| r.prepare())
            .unwrap_or_else(|e| panic!("the protocol documents do not load: {e}"));
        let compile = |schema: &Value, what: &str| -> Validator {
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .with_registry(&registry)
                .build(schema)
                .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"))
        };

        // Frames: a message's name is its `action` (client) or `type` (server); which
        // side sends it comes from the operations (`receive`: the server receives).
        let messages = &asyncapi["components"]["messages"];
        let message_key = |reference: &Value| -> String {
            let r = reference["$ref"]
                .as_str()
                .expect("operations name messages by $ref");
            let channel_message = r.rsplit('/').next().expect("a $ref has a last segment");
            let target = asyncapi["channels"]["chat"]["messages"][channel_message]["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{r} is not a channel message"));
            target
                .rsplit('/')
                .next()
                .expect("a $ref has a last segment")
                .to_owned()
        };
        let mut client_frames = HashMap::new();
        let mut server_frames = HashMap::new();
        let ops = asyncapi["operations"].as_object().expect("operations");
        for (op_name, op) in ops {
            let incoming = op["action"] == "receive";
            let replies = op["reply"]["messages"].as_array().into_iter().flatten();
            let own = op["messages"]
                .as_array()
                .expect("an operation has messages");
            for (reference, from_client) in own
                .iter()
                .map(|m| (m, incoming))
                .chain(replies.map(|m| (m, false)))
            {
                let key = message_key(reference);
                let message = &messages[&key];
                let name = message["name"].as_str().expect("every message has a name");
                let frames = if from_client {
                    &mut client_frames
                } else {
                    &mut server_frames
                };
                // `error` answers four operations: compiled once.
                frames
                    .entry(name.to_owned())
                    .or_insert_with(|| compile(&message["payload"], &format!("{op_name}: {name}")));
            }
        }

        let mut operations = Vec::new();
        for (path, item) in openapi["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item is an object") {
                if method == "parameters" {
                    continue;
                }
                let what = format!("{} {path}", method.to_uppercase());
                let request = op["requestBody"]["content"]["application/json"]
                    .get("schema")
                    .map(|s| compile(s, &what));
                let responses = op["responses"]
                    .as_object()
                    .expect("an operation has responses")
                    .iter()
                    .map(|(status, response)| {
                        let response = resolve(&openapi, response);
                        let answer = match response.get("content") {
                            None => Answer::Empty,
                            Some(content) => match content.get("application/json") {
                                Some(json) => Answer::Json(compile(
                                    &json["schema"],
                                    &format!("{what} -> {status}"),
                                )),
                                None => Answer::Other,
                            },
                        };
                        (status.clone(), answer)
                    })
                    .collect();
                operations.push(Operation {
                    method: method.to_uppercase(),
                    segments: path.split('/').map(str::to_owned).collect(),
                    request,
                    responses,
                });
            }
        }
        let error = compile(
            &serde_json::json!({"$ref": format!("{BASE}openapi.yaml#/components/schemas/ErrorBody")}),
            "Error",
        );
        let any_error = compile(
            &serde_json::json!({"$ref": format!("{BASE}openapi.yaml#/components/responses/Error/content/application~1json/schema")}),
            "the Error response",
        );
        Protocol {
            client_frames,
            server_frames,
            operations,
            error,
            any_error,
        }
    }

    fn operation(&self, method: &str, path: &str) -> Option<&Operation> {
        let path = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let matches = |op: &Operation| {
            op.segments.len() == segments.len()
                && op
                    .segments
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
        };
        // A literal segment wins over a parameter (`/v1/attachments/urls`).
        self.operations
            .iter()
            .filter(|op| op.method == method && matches(op))
            .max_by_key(|op| op.segments.iter().filter(|t| !t.starts_with('{')).count())
    }
}

/// Follows an OpenAPI `$ref` (already absolute) within `doc`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.split_once('#').map_or("", |(_, p)| p);
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("docs/openapi.yaml: {r} resolves to nothing"))
        }
        None => value,
    }
}

/// Rewrites every `$ref` of document `name` to an absolute URI, so any part of it can be
/// compiled on its own.
fn absolute_refs(value: &mut Value, name: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(r) if key == "$ref" => {
                        *r = match r.strip_prefix('#') {
                            Some(fragment) => format!("{BASE}{name}#{fragment}"),
                            None => format!("{BASE}{}", r.trim_start_matches("./")),
                        };
                    }
                    _ => absolute_refs(v, name),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| absolute_refs(v, name)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_documents_load_and_cover_every_frame() {
        for action in [
            "send",
            "edit",
            "delete",
            "react",
            "read",
            "delivered",
            "typing",
            "heartbeat",
        ] {
            assert!(PROTOCOL.client_frames.contains_key(action), "{action}");
        }
        for frame_type in [
            "message.ack",
            "message.new",
            "receipt",
            "typing",
            "presence",
            "conversation.new",
            "conversation.updated",
            "conversation.removed",
            "heartbeat.ack",
            "ok",
            "error",
            GATEWAY_ERROR,
        ] {
            assert!(
                PROTOCOL.server_frames.contains_key(frame_type),
                "{frame_type}"
            );
        }
    }

    #[test]
    fn frames_are_checked_field_by_field() {
        let ack = json!({"type": "message.ack", "requestId": "r1", "conversationId": "c_1",
            "clientMessageId": "m1", "messageId": "m_1", "seq": 3, "kind": "message",
            "timestamp": 1, "duplicate": false});
        check_server_frame(&ack, false).unwrap();
        let mut extra = ack.clone();
        extra["surprise"] = json!(1);
        assert!(
            check_server_frame(&extra, false)
                .unwrap_err()
                .contains("surprise")
        );
        let mut missing = ack.clone();
        missing.as_object_mut().unwrap().remove("requestId");
        assert!(check_server_frame(&missing, false).is_err());
        assert!(check_server_frame(&json!({"type": "message.sent"}), false).is_err());
        let gateway = json!({"message": "Internal server error"});
        check_server_frame(&gateway, true).unwrap();
        assert!(check_server_frame(&gateway, false).is_err());

        check_client_frame(&json!({"action": "read", "conversationId": "c_1", "upToSeq": 0}))
            .unwrap();
        assert!(
            check_client_frame(&json!({"action": "read", "conversationId": "c_1", "upToSeq": -1}))
                .is_err()
        );
        assert!(check_client_frame(&json!({"action": "dance"})).is_err());
    }

    #[test]
    fn an_accepted_frame_must_be_one_the_documents_allow() {
        let read = |request: Value, up_to: i64| json!({"action": "read", "requestId": request, "conversationId": "c_1", "upToSeq": up_to});
        let ok = |request: &str| json!({"type": "ok", "requestId": request});
        let error = |request: Value, cmid: Value| {
            json!({"type": "error", "requestId": request, "clientMessageId": cmid,
                   "code": "INVALID_MESSAGE", "message": "no", "retryAfterMs": null})
        };
        let mut v = Verdicts::default();
        // Refused by the documents and by the server: fine.
        v.sent(&read(json!("r1"), -1));
        v.answered(&error(json!("r1"), Value::Null)).unwrap();
        // Refused by the documents, accepted by the server: the suite fails.
        v.sent(&read(json!("r2"), -1));
        assert!(v.answered(&ok("r2")).unwrap_err().contains("accepted"));
        // A requestId used again: each answer goes to the oldest frame waiting.
        v.sent(&read(json!("r3"), 1));
        v.sent(&read(json!("r3"), -1));
        v.answered(&ok("r3")).unwrap();
        assert!(v.answered(&ok("r3")).is_err());
        // An append without a requestId is answered by its clientMessageId.
        let send = json!({"action": "send", "conversationId": "c_1", "clientMessageId": "m1",
                          "content": {"type": "text", "text": ""}});
        v.sent(&send);
        let ack = json!({"type": "message.ack", "requestId": null, "clientMessageId": "m1"});
        assert!(
            v.answered(&ack).is_err(),
            "empty text is refused by the documents"
        );
        // A requestId the server cannot echo is not kept: its answer carries null.
        v.sent(&read(json!(12), 1));
        v.answered(&error(Value::Null, Value::Null)).unwrap();
        assert!(v.awaiting.is_empty(), "{:?}", v.awaiting);
    }

    #[test]
    fn exchanges_are_matched_to_their_route() {
        let error = json!({"error": {"code": "NOT_FOUND", "message": "no", "retryAfterMs": null}});
        check_exchange("GET", "/v1/conversations/c_1?x=1", None, 404, &error, false).unwrap();
        check_exchange("GET", "/v1/nowhere", None, 404, &error, false).unwrap();
        assert!(check_exchange("GET", "/v1/nowhere", None, 200, &json!({}), false).is_err());
        check_exchange(
            "POST",
            "/v1/sessions/revoke",
            None,
            204,
            &Value::Null,
            false,
        )
        .unwrap();
        assert!(
            check_exchange("POST", "/v1/sessions/revoke", None, 204, &json!({}), false).is_err()
        );
        // A body the server accepted must be one the documents allow.
        let bad = json!({"deliveredUpTo": "seven"});
        let positions = json!({"conversationId": "c_1", "deliveredUpTo": 1, "readUpTo": 0});
        let path = "/v1/conversations/c_1/receipts";
        assert!(check_exchange("POST", path, Some(&bad), 200, &positions, false).is_err());
        check_exchange("POST", path, Some(&bad), 400, &error, false).unwrap();
        // API Gateway's own answers pass only from a deployment.
        let gateway = json!({"message": "Not Found"});
        check_exchange("GET", "/dev/push-outbox", None, 404, &gateway, true).unwrap();
        assert!(check_exchange("GET", "/dev/push-outbox", None, 404, &gateway, false).is_err());
        let urls = json!({"urls": []});
        check_exchange(
            "POST",
            "/v1/attachments/urls",
            Some(&json!({"attachmentIds": []})),
            200,
            &urls,
            false,
        )
        .unwrap();
    }
}
