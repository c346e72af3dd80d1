//! The fan-out when things fail: real stream records of DynamoDB Local, handed to
//! `handle_stream` over the real adapters (DynamoDB Local, the Management API and SNS
//! on moto), with DynamoDB made unreachable for chosen requests (they are sent to a
//! closed port) to fail one record of a batch. The retries are Lambda's: the batch is
//! handed again from the reported record, or by a driver that follows the event source
//! mapping of `template.yaml` (retries, bisection, on-failure destination).

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use chat_aws::apigw::ApiGatewayGateway;
use chat_aws::lambda::{
    BatchResponse, DeadLetter, StreamBatchInfo, StreamEvent, StreamRecord, handle_dead_letter,
    handle_stream, replay,
};
use chat_shared::Chat;
use chat_shared::ids::{ConversationId, DeviceId};
use chat_shared::ports::Platform;
use common::outage::Outage;
use common::*;
use serde_json::{Value, json};

/// A group of alice (sending from alice-1), bob (online on bob-1) and carol (offline,
/// with an FCM phone), `n` messages sent by alice, and their stream records.
struct Scene {
    chat: Chat,
    dynamodb: aws_sdk_dynamodb::Client,
    messages_table: String,
    tap: Arc<Tap<ApiGatewayGateway>>,
    outage: Outage,
    conversation: ConversationId,
    carol_endpoint: String,
    batch: StreamEvent,
}

async fn scene(tag: &str, n: u64) -> Scene {
    let outage = Outage::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        dynamodb_config()
            .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(5)))
            .interceptor(outage.clone())
            .build(),
    );
    let (chat, names, tap) = chat_with_fcm(dynamodb.clone(), tag, Delivery::StreamOnly).await;
    let conversation = team(&chat, "alice", &["bob", "carol"]).await;
    chat.connect("alice-1", &user("alice"), None, i64::MAX)
        .await
        .unwrap();
    chat.connect("bob-1", &user("bob"), None, i64::MAX)
        .await
        .unwrap();
    let device = chat
        .register_device(
            &user("carol"),
            DeviceId::parse("phone").unwrap(),
            Platform::Fcm,
            format!("{tag}-carol-{}", std::process::id()),
        )
        .await
        .unwrap();
    alice_sends(&chat, &conversation, "m", 1..=n, Some("alice-1")).await;
    let batch = read_stream(&dynamodb, &names.messages).await;
    assert_eq!(batch.records.len() as u64, n, "one INSERT per message");
    Scene {
        chat,
        dynamodb,
        messages_table: names.messages.clone(),
        tap,
        outage,
        conversation,
        carol_endpoint: device.endpoint.expect("an SNS endpoint"),
        batch,
    }
}

impl Scene {
    /// The seqs of the `message.new` frames bob's connection got, in order.
    fn bob_seqs(&self) -> Vec<u64> {
        self.tap
            .frames_to("bob-1")
            .iter()
            .filter(|f| f["type"] == "message.new")
            .map(|f| f["seq"].as_u64().unwrap())
            .collect()
    }

    /// The seqs of the pushes SNS (moto) published to carol's phone, in order.
    async fn pushed_seqs(&self) -> Vec<u64> {
        pushed_seqs(&self.carol_endpoint).await
    }

    /// The stream of the messages table and its one shard (DynamoDB Local makes one).
    async fn shard(&self) -> (String, String) {
        let arn = self
            .dynamodb
            .describe_table()
            .table_name(&self.messages_table)
            .send()
            .await
            .unwrap()
            .table
            .and_then(|t| t.latest_stream_arn)
            .unwrap();
        let shards = streams_client()
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .unwrap()
            .stream_description
            .and_then(|d| d.shards)
            .unwrap();
        assert_eq!(shards.len(), 1);
        (arn, shards[0].shard_id.clone().unwrap())
    }

    fn sequence_number(&self, seq: u64) -> String {
        let record = &self.batch.records[seq as usize - 1];
        record.dynamodb.sequence_number.clone().unwrap()
    }

    /// The needles of the "pushes sent" item of message `seq` (read before its pushes,
    /// written after them; no other record makes these requests).
    fn pushes_sent_item(&self, seq: u64) -> [String; 2] {
        [
            format!("c#{}", self.conversation.as_str()),
            format!("\"p#{seq}\""),
        ]
    }

    /// The records from the one with `sequence_number` on, as Lambda hands them again.
    fn from(&self, sequence_number: &str) -> StreamEvent {
        let at = position(&self.batch.records, sequence_number);
        StreamEvent {
            records: self.batch.records[at..].to_vec(),
        }
    }
}

fn position(records: &[StreamRecord], sequence_number: &str) -> usize {
    records
        .iter()
        .position(|r| r.dynamodb.sequence_number.as_deref() == Some(sequence_number))
        .expect("the reported record is in the batch")
}

fn failed(response: &BatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_at_the_fourth_record_reports_it_and_the_retry_loses_nothing() {
    // GIVEN six messages, and DynamoDB unreachable for the "pushes sent" item of the fourth (its
    // frames are posted, then its fan-out fails)
    let s = scene("sf1", 6).await;
    let [conv, item] = s.pushes_sent_item(4);
    s.outage.start(&[&conv, &item]);

    // WHEN the batch is handled
    let response = handle_stream(&s.chat, s.batch.clone()).await;

    // THEN exactly the fourth record is reported (the SDK's three attempts were refused)
    assert_eq!(failed(&response), [s.sequence_number(4)]);
    assert_eq!(s.outage.refused(), 3);
    // AND every frame of the run went out once (the fan-out posts a conversation's run
    // before its pushes), and the pushes stopped before the fourth
    assert_eq!(s.bob_seqs(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(s.pushed_seqs().await, [1, 2, 3]);

    // WHEN DynamoDB is back and Lambda hands the batch again from the reported record
    s.outage.end();
    let retry = handle_stream(&s.chat, s.from(&s.sequence_number(4))).await;

    // THEN the rest is delivered in order; the only duplicates are the frames from the
    // failed record on (clients drop them by seq), and every message was pushed exactly
    // once
    assert!(failed(&retry).is_empty(), "{retry:?}");
    assert_eq!(s.bob_seqs(), [1, 2, 3, 4, 5, 6, 4, 5, 6]);
    assert_eq!(s.pushed_seqs().await, [1, 2, 3, 4, 5, 6]);

    // WHEN the whole batch comes again (an invocation that timed out after its work)
    let again = handle_stream(&s.chat, s.batch.clone()).await;

    // THEN frames repeat (clients drop them by seq) but no push does: they are recorded
    assert!(failed(&again).is_empty());
    assert_eq!(s.bob_seqs(), [1, 2, 3, 4, 5, 6, 4, 5, 6, 1, 2, 3, 4, 5, 6]);
    assert_eq!(s.pushed_seqs().await, [1, 2, 3, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_between_the_pushed_check_and_the_pushes_repeats_them_never_loses_them() {
    // GIVEN four messages, and DynamoDB unreachable for the reads after the second's
    // "pushes sent?" check (the badge count), so its fan-out fails before it pushes
    let s = scene("sf2", 4).await;
    let [_, pushed] = s.pushes_sent_item(2);
    s.outage.start_after(&pushed, &["byUser"]);

    // WHEN the batch is handled, and again from the reported record once DynamoDB is back
    let response = handle_stream(&s.chat, s.batch.clone()).await;
    assert_eq!(failed(&response), [s.sequence_number(2)]);
    s.outage.end();
    let retry = handle_stream(&s.chat, s.from(&s.sequence_number(2))).await;
    assert!(failed(&retry).is_empty(), "{retry:?}");

    // THEN every frame arrived (from the failed record on, twice), and every message was
    // pushed: pushes are recorded as sent only after they went out, so the retry sends
    // the second's
    assert_eq!(s.bob_seqs(), [1, 2, 3, 4, 2, 3, 4]);
    assert_eq!(s.pushed_seqs().await, [1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_skipped_and_the_shard_keeps_flowing() {
    // GIVEN five real records with three that can never be processed among them: an
    // image of a type the table never holds, an item that is not a message, no image
    let s = scene("sf3", 5).await;
    let mut records = s.batch.records.clone();
    let poison = |after: &StreamRecord, suffix: &str, image: Option<Value>| -> StreamRecord {
        let mut record = after.clone();
        record.dynamodb.new_image = image;
        let seq = after.dynamodb.sequence_number.clone().unwrap();
        record.dynamodb.sequence_number = Some(format!("{seq}{suffix}"));
        record
    };
    let undecodable = poison(
        &records[1],
        "1",
        Some(json!({"conversationId": {"B": "AAE="}})),
    );
    let not_a_message = poison(
        &records[2],
        "2",
        Some(json!({"conversationId": {"S": s.conversation.as_str()}, "seq": {"N": "99"}})),
    );
    let no_image = poison(&records[3], "3", None);
    let ids: Vec<String> = [&undecodable, &not_a_message, &no_image]
        .iter()
        .map(|r| r.dynamodb.sequence_number.clone().unwrap())
        .collect();
    records.insert(4, no_image);
    records.insert(3, not_a_message);
    records.insert(2, undecodable);

    // WHEN the batch is handled
    let response = handle_stream(&s.chat, StreamEvent { records }).await;

    // THEN nothing is reported for a retry, the three are skipped (logged and counted),
    // and every good record is delivered and pushed once, in order
    assert!(failed(&response).is_empty(), "{response:?}");
    assert_eq!(response.skipped, ids);
    assert_eq!(s.bob_seqs(), [1, 2, 3, 4, 5]);
    assert_eq!(s.pushed_seqs().await, [1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_after_a_failed_one_is_skipped_by_the_retry_not_before() {
    // GIVEN five messages with a record that can never be processed after the fourth,
    // and DynamoDB unreachable for the fourth's "pushes sent" item
    let s = scene("sf6", 5).await;
    let mut records = s.batch.records.clone();
    let mut no_image = records[3].clone();
    no_image.dynamodb.new_image = None;
    let poison_id = format!("{}9", s.sequence_number(4));
    no_image.dynamodb.sequence_number = Some(poison_id.clone());
    records.insert(4, no_image);
    let [conv, item] = s.pushes_sent_item(4);
    s.outage.start(&[&conv, &item]);

    // WHEN the batch is handled
    let response = handle_stream(
        &s.chat,
        StreamEvent {
            records: records.clone(),
        },
    )
    .await;

    // THEN the fourth is reported and the poison after it is not counted yet: Lambda
    // hands it again with the retry
    assert_eq!(failed(&response), [s.sequence_number(4)]);
    assert!(response.skipped.is_empty(), "{response:?}");

    // WHEN DynamoDB is back and the batch comes again from the fourth
    s.outage.end();
    let at = position(&records, &s.sequence_number(4));
    let retry = handle_stream(
        &s.chat,
        StreamEvent {
            records: records[at..].to_vec(),
        },
    )
    .await;

    // THEN the poison is skipped, once, and every message was pushed once
    assert!(failed(&retry).is_empty(), "{retry:?}");
    assert_eq!(retry.skipped, [poison_id]);
    assert_eq!(s.pushed_seqs().await, [1, 2, 3, 4, 5]);
}

// ------------------------------------------------------------------ Lambda's retries

/// The error handling of the fan-out's event source mapping, from `template.yaml`.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    batch_size: usize,
    maximum_retry_attempts: u32,
    bisect_on_function_error: bool,
}

impl Mapping {
    fn from_template() -> Self {
        let t: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../template.yaml")).unwrap();
        let p = &t["Resources"]["FanoutMapping"]["Properties"];
        assert_eq!(p["FunctionResponseTypes"][0], "ReportBatchItemFailures");
        assert!(!p["DestinationConfig"]["OnFailure"]["Destination"].is_null());
        Self {
            batch_size: p["BatchSize"].as_u64().unwrap() as usize,
            maximum_retry_attempts: p["MaximumRetryAttempts"].as_u64().unwrap() as u32,
            bisect_on_function_error: p["BisectBatchOnFunctionError"].as_bool().unwrap(),
        }
    }
}

/// A model of Lambda polling one shard: batches from the checkpoint; a reported record
/// moves the checkpoint to it and the rest of the batch is retried. With bisection the
/// failing rest is split in two first (splits use no retry); a batch that fails more
/// than the retries allow is discarded: its range goes to the on-failure destination
/// and the shard moves on. Lambda's exact algorithm is not public: this plays out the
/// documented contract, and without bisection the stricter reading, where the whole
/// failing rest is discarded.
async fn lambda_polls(
    chat: &Chat,
    mapping: Mapping,
    records: &[StreamRecord],
    (stream_arn, shard_id): (String, String),
) -> Vec<StreamBatchInfo> {
    let mut dead = Vec::new();
    let mut checkpoint = 0;
    while checkpoint < records.len() {
        let end = records.len().min(checkpoint + mapping.batch_size);
        let mut batch = &records[checkpoint..end];
        let mut retries = 0;
        loop {
            let response = handle_stream(
                chat,
                StreamEvent {
                    records: batch.to_vec(),
                },
            )
            .await;
            let Some(first) = response.batch_item_failures.first() else {
                checkpoint += batch.len();
                break;
            };
            let at = position(batch, &first.item_identifier);
            checkpoint += at;
            batch = &batch[at..];
            if mapping.bisect_on_function_error && batch.len() > 1 {
                batch = &batch[..batch.len().div_ceil(2)];
                continue;
            }
            retries += 1;
            if retries > mapping.maximum_retry_attempts {
                let seq = |r: &StreamRecord| r.dynamodb.sequence_number.clone().unwrap();
                dead.push(StreamBatchInfo {
                    stream_arn: stream_arn.clone(),
                    shard_id: shard_id.clone(),
                    start_sequence_number: seq(&batch[0]),
                    end_sequence_number: seq(&batch[batch.len() - 1]),
                    batch_size: Some(batch.len()),
                });
                checkpoint += batch.len();
                break;
            }
        }
    }
    dead
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_is_dead_lettered_and_the_others_are_pushed_once() {
    // GIVEN six messages, and DynamoDB unreachable for the third's "pushes sent" item for good
    // (nothing in the record says so: to the handler it looks like any outage)
    let mapping = Mapping::from_template();
    assert!(mapping.bisect_on_function_error);
    assert_eq!(mapping.maximum_retry_attempts, 5);
    let s = scene("sf4", 6).await;
    let [conv, item] = s.pushes_sent_item(3);
    s.outage.start(&[&conv, &item]);

    // WHEN Lambda polls the shard with the template's settings
    let dead = lambda_polls(&s.chat, mapping, &s.batch.records, s.shard().await).await;

    // THEN the third alone ends in the destination, after the first try and 5 retries
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].start_sequence_number.as_str(),
            dead[0].end_sequence_number.as_str(),
            dead[0].batch_size
        ),
        (
            s.sequence_number(3).as_str(),
            s.sequence_number(3).as_str(),
            Some(1)
        )
    );
    // tries of the third: the whole batch, the bisected rest [3, 4], then [3] alone once
    // and 5 retries; each try is the SDK's 3 refused attempts
    let tries = 2 + 1 + mapping.maximum_retry_attempts as usize;
    assert_eq!(s.outage.refused(), 3 * tries);
    // AND every other record was pushed exactly once, in order, and every frame arrived
    // in order the first time; the duplicates are frames a failed try had posted
    // (clients drop them by seq): the third's on every try, and those of the records
    // after it in the tries that held them
    let bob = s.bob_seqs();
    let mut first_seen = Vec::new();
    for q in &bob {
        if !first_seen.contains(q) {
            first_seen.push(*q);
        }
    }
    assert_eq!(first_seen, [1, 2, 3, 4, 5, 6], "frames to bob: {bob:?}");
    assert_eq!(bob.iter().filter(|&&q| q == 3).count(), tries);
    assert_eq!(s.pushed_seqs().await, [1, 2, 4, 5, 6]);

    // WHEN the replay function gets the dead letter while the cause is still there
    let streams = streams_client();
    let letter = DeadLetter {
        batch: dead[0].clone(),
    };
    let error = handle_dead_letter(&s.chat, &streams, letter.clone())
        .await
        .unwrap_err();

    // THEN it fails, naming the record (the operator keeps the message)
    assert!(error.to_string().contains(&s.sequence_number(3)), "{error}");

    // WHEN the outage is over and the dead letter is replayed
    s.outage.end();
    let replayed = replay(&s.chat, &streams, &dead[0]).await.unwrap();

    // THEN the third is pushed too, once
    assert_eq!(replayed.records, 1);
    assert!(replayed.batch_item_failures.is_empty(), "{replayed:?}");
    assert_eq!(s.pushed_seqs().await, [1, 2, 4, 5, 6, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bisection_the_records_after_it_are_dead_lettered_too_and_the_replay_delivers_them()
{
    // GIVEN six messages and the third failing for good, and the strict reading of a
    // partial response: the whole rest of the batch is retried and discarded together
    let mapping = Mapping {
        bisect_on_function_error: false,
        ..Mapping::from_template()
    };
    let s = scene("sf5", 6).await;
    let [conv, item] = s.pushes_sent_item(3);
    s.outage.start(&[&conv, &item]);

    // WHEN Lambda polls the shard
    let dead = lambda_polls(&s.chat, mapping, &s.batch.records, s.shard().await).await;

    // THEN the destination gets the range from the third to the sixth: the good records
    // after the bad one were never fanned out (their messages are stored: sync has them)
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].start_sequence_number, s.sequence_number(3));
    assert_eq!(dead[0].end_sequence_number, s.sequence_number(6));
    assert_eq!(dead[0].batch_size, Some(4));
    assert_eq!(s.pushed_seqs().await, [1, 2]);

    // WHEN the cause is fixed and the dead letter (as the queue holds it) is replayed
    s.outage.end();
    let body = json!({
        "requestContext": { "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6 },
        "version": "1.0",
        "DDBStreamBatchInfo": dead[0],
    });
    let letter: DeadLetter = serde_json::from_value(body).unwrap();
    let replayed = handle_dead_letter(&s.chat, &streams_client(), letter)
        .await
        .unwrap();

    // THEN the four are delivered in order, each pushed once
    assert_eq!(replayed.records, 4);
    assert!(replayed.batch_item_failures.is_empty(), "{replayed:?}");
    let bob = s.bob_seqs();
    assert_eq!(&bob[bob.len() - 4..], [3, 4, 5, 6]);
    assert_eq!(s.pushed_seqs().await, [1, 2, 3, 4, 5, 6]);
}
