//! Direct delivery over the real adapters: the send path posts a small conversation's
//! entries itself (DynamoDB Local, the Management API on moto through a tap), and the
//! stream's fan-out (real stream records of DynamoDB Local handed to `handle_stream`)
//! is its backstop. A send that dies after its write is played by a DynamoDB outage
//! at the step it would die before: the members' read (nothing posted), the mark
//! (everything posted, nothing marked).

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use chat_aws::apigw::ApiGatewayGateway;
use chat_aws::dynamodb::DynamoStore;
use chat_aws::lambda::{StreamEvent, handle_stream};
use chat_aws::sns::{PlatformApplications, SnsPush};
use chat_aws::tables::TableNames;
use chat_shared::Chat;
use chat_shared::auth::TokenVerifier;
use chat_shared::config::Limits;
use chat_shared::ids::{ConversationId, Seq};
use chat_shared::ports::{ConversationStore, DirectMarks, Posted, SystemClock};
use chat_shared::service::Ports;
use common::outage::Outage;
use common::*;

/// The members' read of the send path: a Query of the member items (`m#` to `m$`).
const MEMBERS_READ: &str = r#"{"S":"m$"}"#;
/// The mark's write.
const MARK: &str = "postedSeq = :seq";

/// Alice (on alice-1), bob (on bob-1) and carol (offline, with an FCM phone) in a
/// group, over a service that delivers directly to conversations of up to
/// `direct_max` members.
struct Scene {
    chat: Chat,
    store: DynamoStore,
    dynamodb: aws_sdk_dynamodb::Client,
    names: TableNames,
    tap: Arc<Tap<ApiGatewayGateway>>,
    outage: Outage,
    group: ConversationId,
    carol_phone: String,
    /// Stream records handed to the fan-out so far.
    streamed: usize,
}

async fn scene(tag: &str, direct_max: u32) -> Scene {
    let outage = Outage::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        dynamodb_config()
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(5)),
            )
            .interceptor(outage.clone())
            .build(),
    );
    let names = tables(&dynamodb, tag).await;
    let tap = Arc::new(Tap::new(moto_gateway()));
    let store = DynamoStore::new(dynamodb.clone(), names.clone());
    let chat = Chat::new(
        Ports {
            store: Arc::new(store.clone()),
            gateway: tap.clone(),
            push: Arc::new(SnsPush::new(
                sns_client(),
                PlatformApplications {
                    fcm: Some(fcm_app(&format!("{tag}-fcm")).await),
                    ..Default::default()
                },
            )),
            clock: Arc::new(SystemClock),
            attachments: None,
            direct: Some(Arc::new(store.clone())),
        },
        Limits {
            direct_fanout_max_members: direct_max,
            ..Limits::default()
        },
        TokenVerifier::new("aws-tests", None, None),
    );
    let group = team(&chat, "alice", &["bob", "carol"]).await;
    for (connection, who) in [("alice-1", "alice"), ("bob-1", "bob")] {
        chat.connect(connection, &user(who), None, i64::MAX)
            .await
            .unwrap();
    }
    let carol_phone = fcm_phone(&chat, "carol", tag).await;
    Scene {
        chat,
        store,
        dynamodb,
        names,
        tap,
        outage,
        group,
        carol_phone,
        streamed: 0,
    }
}

impl Scene {
    async fn send(&self, seq: Seq) {
        alice_sends(&self.chat, &self.group, "m", seq..=seq, Some("alice-1")).await;
    }

    /// Sends `seq` with DynamoDB refusing the requests that hold `needle` meanwhile: the
    /// send is acked all the same.
    async fn send_during_outage(&self, seq: Seq, needle: &str) {
        self.outage.start(&[needle]);
        self.send(seq).await;
        self.outage.end();
    }

    /// Hands the stream records written since the last call to the fan-out, as Lambda
    /// would, and checks they all went through.
    async fn stream(&mut self) {
        let all = read_stream(&self.dynamodb, &self.names.messages).await;
        let batch = StreamEvent {
            records: all.records[self.streamed..].to_vec(),
        };
        self.streamed = all.records.len();
        let response = handle_stream(&self.chat, batch).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }

    /// The same, one record per batch and the newest first: records that come out of
    /// seq order, which the stream does not promise against (its order is per item).
    async fn stream_reversed(&mut self) {
        let all = read_stream(&self.dynamodb, &self.names.messages).await;
        let mut records = all.records[self.streamed..].to_vec();
        self.streamed = all.records.len();
        records.reverse();
        for record in records {
            let batch = StreamEvent {
                records: vec![record],
            };
            let response = handle_stream(&self.chat, batch).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
    }

    /// The seqs of the `message.new` frames a connection got, in order, repeats kept.
    fn seqs_to(&self, connection: &str) -> Vec<u64> {
        self.tap
            .frames_to(connection)
            .iter()
            .filter(|f| f["type"] == "message.new")
            .map(|f| f["seq"].as_u64().unwrap())
            .collect()
    }

    async fn mark(&self) -> Option<Posted> {
        self.store
            .conversation(&self.group)
            .await
            .unwrap()
            .unwrap()
            .posted
    }
}

/// The first delivery of each seq, in arrival order: what a client keeps once it drops
/// repeats.
fn first_deliveries(seqs: &[u64]) -> Vec<u64> {
    let mut seen = Vec::new();
    for s in seqs {
        if !seen.contains(s) {
            seen.push(*s);
        }
    }
    seen
}

#[tokio::test]
async fn the_send_path_posts_a_small_conversations_entries_and_the_stream_does_not_again() {
    let mut s = scene("direct-normal", 100).await;
    for seq in 1..=3 {
        s.send(seq).await;
        assert_eq!(
            s.seqs_to("bob-1"),
            (1..=seq).collect::<Vec<_>>(),
            "bob has message {seq} before any stream record is read"
        );
    }
    assert_eq!(
        s.mark().await,
        Some(Posted {
            seq: 3,
            unreached: vec![user("carol")],
        }),
        "carol, offline, is owed the push"
    );
    s.stream().await;
    assert_eq!(
        s.seqs_to("bob-1"),
        vec![1, 2, 3],
        "one frame per message and connection"
    );
    assert!(
        s.seqs_to("alice-1").is_empty(),
        "the sender's own connection"
    );
    // The stream's fan-out pushed each message to carol once (a run of three reads who
    // is offline afresh; a lone entry takes it from its mark).
    assert_eq!(pushed_seqs(&s.carol_phone).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn a_send_that_dies_before_posting_is_delivered_by_the_stream() {
    let mut s = scene("direct-before-posts", 100).await;
    s.send_during_outage(1, MEMBERS_READ).await;
    assert!(s.outage.refused() > 0, "the outage hit the members' read");
    assert!(s.seqs_to("bob-1").is_empty(), "nothing posted");
    assert_eq!(s.mark().await, None);
    s.stream().await;
    assert_eq!(s.seqs_to("bob-1"), vec![1]);
    assert_eq!(pushed_seqs(&s.carol_phone).await, vec![1]);
    // The stream marked what it posted: the next send is direct again.
    assert_eq!(s.mark().await.map(|m| m.seq), Some(1));
    s.send(2).await;
    assert_eq!(s.seqs_to("bob-1"), vec![1, 2]);
}

#[tokio::test]
async fn a_send_that_dies_after_posting_before_its_mark_is_posted_again_by_the_stream() {
    let mut s = scene("direct-before-mark", 100).await;
    s.send_during_outage(1, MARK).await;
    assert!(s.outage.refused() > 0, "the outage hit the mark");
    assert_eq!(s.seqs_to("bob-1"), vec![1], "posted, not marked");
    assert_eq!(s.mark().await, None);
    s.stream().await;
    // A repeat clients drop by seq; a message never missed.
    assert_eq!(s.seqs_to("bob-1"), vec![1, 1]);
    assert_eq!(pushed_seqs(&s.carol_phone).await, vec![1]);
    assert_eq!(s.mark().await.map(|m| m.seq), Some(1));
}

#[tokio::test]
async fn order_per_connection_holds_when_direct_and_stream_deliveries_mix() {
    let mut s = scene("direct-mixed", 100).await;
    s.send(1).await; // direct
    s.send_during_outage(2, MARK).await; // direct, unmarked
    s.send(3).await; // waits for the stream: 2 is not marked
    s.send_during_outage(4, MEMBERS_READ).await; // waits for the stream
    assert_eq!(s.seqs_to("bob-1"), vec![1, 2], "3 waits for 2's mark");
    s.stream().await;
    assert_eq!(s.mark().await.map(|m| m.seq), Some(4));
    s.send(5).await; // direct again
    s.stream().await;
    let got = s.seqs_to("bob-1");
    assert_eq!(first_deliveries(&got), vec![1, 2, 3, 4, 5], "{got:?}");
    assert_eq!(got, vec![1, 2, 2, 3, 4, 5], "only the unmarked one twice");
    assert_eq!(pushed_seqs(&s.carol_phone).await, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn records_out_of_seq_order_are_posted_in_order_and_the_mark_stays_true() {
    let mut s = scene("direct-reordered", 100).await;
    s.send_during_outage(1, MEMBERS_READ).await; // the stream's
    s.send(2).await; // waits for 1's mark
    s.send(3).await;
    assert!(s.seqs_to("bob-1").is_empty());
    // 3 comes first: 1 and 2 are posted before it, from the store.
    s.stream_reversed().await;
    assert_eq!(
        s.seqs_to("bob-1"),
        vec![1, 2, 3],
        "the late records post nothing"
    );
    assert_eq!(s.mark().await.map(|m| m.seq), Some(3));
    let mut pushed = pushed_seqs(&s.carol_phone).await;
    pushed.sort();
    assert_eq!(pushed, vec![1, 2, 3], "each pushed once, in whatever order");
    s.send(4).await;
    assert_eq!(s.seqs_to("bob-1"), vec![1, 2, 3, 4], "direct again");
}

#[tokio::test]
async fn a_conversation_over_the_limit_waits_for_the_stream_and_goes_direct_once_under_it() {
    let mut s = scene("direct-large", 2).await;
    s.send(1).await;
    assert!(
        s.seqs_to("bob-1").is_empty(),
        "3 members > 2: no direct post"
    );
    s.stream().await;
    assert_eq!(s.seqs_to("bob-1"), vec![1]);
    assert_eq!(
        s.mark().await.map(|m| m.seq),
        Some(1),
        "marked all the same"
    );
    s.chat
        .remove_member(&user("alice"), &s.group, &user("carol"))
        .await
        .unwrap(); // entry 2, a system entry: the stream's
    s.stream().await;
    s.send(3).await;
    assert_eq!(s.seqs_to("bob-1"), vec![1, 2, 3], "2 members: direct");
}

#[tokio::test]
async fn a_mark_only_moves_forward_and_says_who_is_owed_a_push() {
    let s = scene("direct-mark", 100).await;
    let marks: &dyn DirectMarks = &s.store;
    marks
        .mark_posted(&s.group, 5, &[user("bob"), user("carol")])
        .await
        .unwrap();
    let mut mark = s.mark().await.unwrap();
    mark.unreached.sort();
    assert_eq!(
        mark,
        Posted {
            seq: 5,
            unreached: vec![user("bob"), user("carol")],
        }
    );
    marks.mark_posted(&s.group, 4, &[]).await.unwrap();
    marks.mark_posted(&s.group, 5, &[]).await.unwrap();
    assert_eq!(s.mark().await.map(|m| m.seq), Some(5), "never back");
    marks.mark_posted(&s.group, 6, &[]).await.unwrap();
    assert_eq!(
        s.mark().await,
        Some(Posted {
            seq: 6,
            unreached: Vec::new(),
        })
    );
    // A conversation that does not exist gets no mark (and no item).
    let gone = ConversationId::parse("c_00000000000000000000000000000000").unwrap();
    marks.mark_posted(&gone, 1, &[]).await.unwrap();
    assert!(s.store.conversation(&gone).await.unwrap().is_none());
}
