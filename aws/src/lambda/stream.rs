//! The DynamoDB stream: a batch of message records fanned out by the shared fan-out
//! handler, with partial batch failures.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::error;

use chat_shared::Chat;
use chat_shared::handlers;
use chat_shared::ports::MessageRecord;

use super::log_failure;
use crate::dynamodb::{Item, message_from};
use crate::metrics::{self, FAILED_METRIC, SKIPPED_METRIC};

/// A DynamoDB stream batch, as much of it as the fan-out needs.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct StreamEvent {
    #[serde(rename = "Records")]
    pub records: Vec<StreamRecord>,
}

/// One stream record.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct StreamRecord {
    #[serde(rename = "eventName")]
    pub event_name: Option<String>,
    pub dynamodb: StreamChange,
}

/// The change of a stream record.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct StreamChange {
    #[serde(rename = "NewImage")]
    pub new_image: Option<Value>,
    #[serde(rename = "SequenceNumber")]
    pub sequence_number: Option<String>,
}

/// The partial batch response: the first record that failed (Lambda retries from it).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub batch_item_failures: Vec<BatchItemFailure>,
    /// The sequence numbers of the records skipped as poison (logged and counted, not
    /// sent back: Lambda reads only the failures).
    #[serde(skip)]
    pub skipped: Vec<String>,
}

/// One failed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    pub item_identifier: String,
}

/// A stream image that is not a message item.
#[derive(Debug, thiserror::Error)]
#[error("stream record image is not a message: {0}")]
pub struct BadImage(String);

/// Decodes a DynamoDB-JSON image (`{"seq":{"N":"1"},...}`) into an item.
pub fn image_to_item(image: &Value) -> Result<Item, BadImage> {
    let obj = image
        .as_object()
        .ok_or_else(|| BadImage("not an object".into()))?;
    obj.iter()
        .map(|(k, v)| Ok((k.clone(), attribute(v)?)))
        .collect()
}

fn attribute(v: &Value) -> Result<AttributeValue, BadImage> {
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| BadImage(format!("not a typed value: {v}")))?;
    let (tag, inner) = obj.iter().next().expect("one entry");
    let text = || {
        inner
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| BadImage(format!("{tag} is not a string")))
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text()?),
        "N" => AttributeValue::N(text()?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().unwrap_or(false)),
        "NULL" => AttributeValue::Null(true),
        "M" => AttributeValue::M(image_to_item(inner)?),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .ok_or_else(|| BadImage("L is not a list".into()))?
                .iter()
                .map(attribute)
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(BadImage(format!("unsupported type {other}"))),
    })
}

/// The message a stream record carries, or why it can never be processed (no image, or
/// an image that is not a message): poison, which retrying cannot help.
fn decode(record: &StreamRecord) -> Result<MessageRecord, String> {
    let image = record
        .dynamodb
        .new_image
        .as_ref()
        .ok_or_else(|| "no NewImage (the stream must be NEW_IMAGE)".to_owned())?;
    let item = image_to_item(image).map_err(|e| e.to_string())?;
    message_from(&item).map_err(|e| e.to_string())
}

/// Fans out a stream batch in order with the fan-out handler of every mode
/// ([`handlers::fanout::handle_batch`]): each run of one conversation's messages
/// together, its members and their connections read once. Only `INSERT`s of message
/// items matter (the trigger filters to them; others are skipped).
///
/// A record that can never be processed (poison: no image, or not a message) is skipped
/// with an error log and the `FanoutSkippedRecords` metric: retrying it would only hold
/// the shard back, and its message, if any, is stored and reaches clients by sync.
///
/// On the first other failure, that record's sequence number is reported and the rest
/// of the batch is left for the retry: Lambda resumes from the lowest reported record,
/// so nothing is lost or reordered. A redelivered record re-posts its frames (clients
/// de-duplicate by seq; frames of a failed run may have gone out already) but never
/// re-pushes. A record that keeps failing goes, after the mapping's retries, to its
/// `OnFailure` queue.
pub async fn handle_stream(chat: &Chat, event: StreamEvent) -> BatchResponse {
    // (position in the batch, sequence number, message or why it is poison)
    let mut messages = Vec::new();
    let mut poison = Vec::new();
    for (position, record) in event.records.iter().enumerate() {
        if record.event_name.as_deref() != Some("INSERT") {
            continue;
        }
        let id = record.dynamodb.sequence_number.clone().unwrap_or_default();
        match decode(record) {
            Ok(message) => messages.push((position, id, message)),
            Err(reason) => poison.push((position, id, reason)),
        }
    }
    let mut response = BatchResponse::default();
    let failed_at = match handlers::fanout::handle_batch(chat, &messages, |(_, _, m)| m).await {
        Ok(()) => None,
        Err((i, e)) => {
            log_failure(&e);
            let (position, id, _) = &messages[i];
            error!(sequence_number = %id, reason = %e, "fan-out failed; the batch resumes from this record");
            response.batch_item_failures.push(BatchItemFailure {
                item_identifier: id.clone(),
            });
            Some(*position)
        }
    };
    // Poison after the failed record comes back with the retry, and is skipped then.
    for (position, id, reason) in poison {
        if failed_at.is_some_and(|failed| position > failed) {
            break;
        }
        error!(sequence_number = %id, %reason, "poison stream record skipped, not fanned out");
        response.skipped.push(id);
    }
    if !response.skipped.is_empty() {
        metrics::emit(SKIPPED_METRIC, response.skipped.len());
    }
    // A partial batch response is a successful invocation: the Lambda `Errors` metric
    // never counts it, so the fan-out counts its failed records itself.
    if !response.batch_item_failures.is_empty() {
        metrics::emit(FAILED_METRIC, response.batch_item_failures.len());
    }
    response
}
