//! The dead-letter replay: a stream range Lambda gave up on, read back from the stream
//! and fanned out again.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use chat_shared::Chat;

use super::Deps;
use super::config::LambdaConfig;
use super::stream::{BatchItemFailure, StreamChange, StreamEvent, StreamRecord, handle_stream};

/// The record the fan-out's `OnFailure` queue gets for a batch Lambda gave up on: where
/// the records are in the stream, not the records (as much of it as the replay needs).
#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetter {
    #[serde(rename = "DDBStreamBatchInfo")]
    pub batch: StreamBatchInfo,
}

/// The stream range of a [`DeadLetter`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamBatchInfo {
    pub stream_arn: String,
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    #[serde(default)]
    pub batch_size: Option<usize>,
}

/// What a replay did: how many records it read back and the fan-out's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replayed {
    pub records: usize,
    pub batch_item_failures: Vec<BatchItemFailure>,
    pub skipped: Vec<String>,
}

/// A replay that could not read its records.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading the stream failed: {0}")]
    Stream(String),
    #[error("the stream no longer holds sequence number {0} (records are kept 24 h)")]
    Trimmed(String),
}

/// A replay that left a record failing: the dead letter must be kept.
#[derive(Debug, thiserror::Error)]
#[error("record {sequence_number} failed again ({records} read back): keep the message")]
pub struct FailedAgain {
    pub sequence_number: String,
    pub records: usize,
}

/// The replay function's adapters: the fan-out's, and a client of the stream.
pub struct ReplayDeps {
    pub deps: Deps,
    pub streams: aws_sdk_dynamodbstreams::Client,
}

impl ReplayDeps {
    /// As [`Deps::new`], plus the DynamoDB Streams client.
    pub async fn new(config: LambdaConfig) -> Self {
        crate::metrics::install();
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
        Self {
            deps: Deps::with_clients(config, dynamodb, sns, sdk),
            streams,
        }
    }
}

/// Handles one message of the fan-out's dead-letter queue: replays its range, and
/// fails if a record fails again (the operator keeps the message and retries later).
pub async fn handle_dead_letter(
    chat: &Chat,
    streams: &aws_sdk_dynamodbstreams::Client,
    letter: DeadLetter,
) -> Result<Replayed, Box<dyn std::error::Error + Send + Sync>> {
    let done = replay(chat, streams, &letter.batch).await?;
    if let Some(failed) = done.batch_item_failures.first() {
        return Err(Box::new(FailedAgain {
            sequence_number: failed.item_identifier.clone(),
            records: done.records,
        }));
    }
    tracing::info!(
        records = done.records,
        skipped = done.skipped.len(),
        "dead letter replayed"
    );
    Ok(done)
}

/// Orders decimal sequence numbers (of different lengths) by value.
fn sequence_key(s: &str) -> (usize, &str) {
    let digits = s.trim_start_matches('0');
    (digits.len(), digits)
}

/// Reads the records of a dead-lettered range back from the stream (it keeps them 24 h)
/// and fans them out again, in order. Safe to repeat: frames are posted again (clients
/// drop them by seq), pushes never twice (their claims hold).
pub async fn replay(
    chat: &Chat,
    streams: &aws_sdk_dynamodbstreams::Client,
    info: &StreamBatchInfo,
) -> Result<Replayed, ReplayError> {
    use aws_sdk_dynamodbstreams::types::ShardIteratorType;
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(&info.stream_arn)
        .shard_id(&info.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .sequence_number(&info.start_sequence_number)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(s)
                if s.is_trimmed_data_access_exception() || s.is_resource_not_found_exception() =>
            {
                ReplayError::Trimmed(info.start_sequence_number.clone())
            }
            _ => ReplayError::Stream(format!("{e:?}")),
        })?;
    let end = sequence_key(&info.end_sequence_number);
    let mut records = Vec::new();
    let wanted = info.batch_size.unwrap_or(usize::MAX);
    let mut next = iterator.shard_iterator;
    // An open shard's pages can be empty before its last records: a few are allowed.
    let mut empty_pages = 0;
    'read: while let Some(it) = next.take() {
        let out = streams
            .get_records()
            .shard_iterator(it)
            .send()
            .await
            .map_err(|e| ReplayError::Stream(format!("{e:?}")))?;
        let page = out.records.unwrap_or_default();
        empty_pages = if page.is_empty() { empty_pages + 1 } else { 0 };
        if empty_pages == 3 {
            break;
        }
        for r in page {
            let record = stream_record(&r);
            let seq = record.dynamodb.sequence_number.clone().unwrap_or_default();
            if sequence_key(&seq) > end {
                break 'read;
            }
            records.push(record);
            if records.len() == wanted {
                break 'read;
            }
        }
        next = out.next_shard_iterator;
    }
    let count = records.len();
    let response = handle_stream(chat, StreamEvent { records }).await;
    Ok(Replayed {
        records: count,
        batch_item_failures: response.batch_item_failures,
        skipped: response.skipped,
    })
}

/// A record of the Streams API as Lambda hands it to the function.
pub fn stream_record(r: &aws_sdk_dynamodbstreams::types::Record) -> StreamRecord {
    let change = r.dynamodb.as_ref();
    StreamRecord {
        event_name: r.event_name.as_ref().map(|e| e.as_str().to_owned()),
        dynamodb: StreamChange {
            new_image: change.and_then(|c| c.new_image.as_ref()).map(stream_image),
            sequence_number: change.and_then(|c| c.sequence_number.clone()),
        },
    }
}

/// A Streams API image as DynamoDB JSON (`{"seq":{"N":"1"}}`).
pub fn stream_image(m: &HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), stream_value(v)))
            .collect(),
    )
}

fn stream_value(v: &aws_sdk_dynamodbstreams::types::AttributeValue) -> Value {
    use aws_sdk_dynamodbstreams::types::AttributeValue as V;
    use serde_json::json;
    match v {
        V::S(s) => json!({ "S": s }),
        V::N(n) => json!({ "N": n }),
        V::Bool(b) => json!({ "BOOL": b }),
        V::Null(_) => json!({ "NULL": true }),
        V::M(m) => json!({ "M": stream_image(m) }),
        V::L(l) => json!({ "L": l.iter().map(stream_value).collect::<Vec<_>>() }),
        V::Ss(l) => json!({ "SS": l }),
        V::Ns(l) => json!({ "NS": l }),
        // Binary values (and any new type) have no use here: kept as a marker the
        // decoder rejects, so such an image is poison, not a panic.
        other => json!({ "UNSUPPORTED": format!("{other:?}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_ordered_by_value() {
        assert!(sequence_key("9") < sequence_key("10"));
        assert!(sequence_key("000100") == sequence_key("100"));
        assert!(sequence_key("4900000000000000000123") < sequence_key("50000000000000000000001"));
    }
}
