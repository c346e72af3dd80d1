//! What the server does when the `byUser` index lags, as a global secondary index may
//! on AWS (it is eventually consistent; DynamoDB Local's is not): an interceptor hides,
//! from every Query of the index, the memberships written less than [`LAG_MS`] ago. A
//! conversation just joined is missing from a sync's `newConversations` and from the
//! conversation list for that long, then appears, and nothing about its messages waits
//! for the index (membership, sends, history and a named sync read the table).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeTransmitInterceptorContextMut, FinalizerInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use chat_aws::apigw::ApiGatewayGateway;
use chat_shared::Chat;
use chat_shared::ids::ConversationId;
use chat_shared::service::{HistoryQuery, SyncCursor};
use common::*;
use serde_json::Value;

/// How long a membership stays out of the index.
const LAG_MS: i64 = 1_500;

/// Marks a request as a Query of the `byUser` index, from its body to its response.
#[derive(Debug, Clone, Copy)]
struct IndexQuery;

impl Storable for IndexQuery {
    type Storer = StoreReplace<Self>;
}

/// Drops from the index's answers the member items joined less than [`LAG_MS`] ago.
#[derive(Debug, Clone, Default)]
struct LaggingIndex {
    hidden: Arc<Mutex<usize>>,
}

impl LaggingIndex {
    fn hidden(&self) -> usize {
        *self.hidden.lock().unwrap()
    }
}

impl Intercept for LaggingIndex {
    fn name(&self) -> &'static str {
        "LaggingIndex"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.request().body().bytes().unwrap_or_default();
        if let Ok(input) = serde_json::from_slice::<Value>(body)
            && input["IndexName"] == "byUser"
        {
            cfg.interceptor_state().store_put(IndexQuery);
        }
        Ok(())
    }

    fn modify_before_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<IndexQuery>().is_none() {
            return Ok(());
        }
        let Some(Ok(output)) = context.output_or_error_mut() else {
            return Ok(());
        };
        let Some(output) = output.downcast_mut::<QueryOutput>() else {
            return Ok(());
        };
        let now = chat_tests::now_ms();
        let Some(items) = output.items.as_mut() else {
            return Ok(());
        };
        let before = items.len();
        items.retain(|item| {
            let joined: i64 = item
                .get("joinedAt")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            now - joined >= LAG_MS
        });
        let kept = items.len();
        output.count = kept as i32;
        *self.hidden.lock().unwrap() += before - kept;
        Ok(())
    }
}

async fn lagging_chat(tag: &str) -> (Chat, LaggingIndex) {
    let lag = LaggingIndex::default();
    let dynamodb =
        aws_sdk_dynamodb::Client::from_conf(dynamodb_config().interceptor(lag.clone()).build());
    let names = tables(&dynamodb, tag).await;
    let tap: Arc<Tap<ApiGatewayGateway>> = Arc::new(Tap::new(moto_gateway()));
    let chat = chat(dynamodb, names, tap, Default::default(), Delivery::Direct);
    (chat, lag)
}

/// The conversations bob's sync brings as new, naming none.
async fn new_in_sync(chat: &Chat) -> Vec<ConversationId> {
    let synced = chat.sync(&user("bob"), &[], 100).await.unwrap();
    synced
        .new_conversations
        .into_iter()
        .map(|c| c.conversation_id)
        .collect()
}

async fn listed(chat: &Chat) -> Vec<ConversationId> {
    let page = chat
        .list_conversations(&user("bob"), 50, None)
        .await
        .unwrap();
    page.conversations
        .into_iter()
        .map(|c| c.conversation_id)
        .collect()
}

#[tokio::test]
async fn a_conversation_just_joined_shows_in_sync_and_the_list_once_the_index_has_it() {
    let (chat, lag) = lagging_chat("lag").await;
    let team = team(&chat, "alice", &["bob"]).await;
    alice_sends(&chat, &team, "m", 1..=2, None).await;

    // The index has not caught up: the new conversation is missing from the lists...
    assert!(new_in_sync(&chat).await.is_empty());
    assert!(listed(&chat).await.is_empty());
    assert!(lag.hidden() >= 2, "the index was read, and lagged");
    // ...but nothing about its messages waits for it: bob, a member, reads its history,
    // syncs it by name and sends to it at once.
    let history = HistoryQuery {
        before: None,
        after: None,
        limit: 50,
    };
    let (page, _) = chat.history(&user("bob"), &team, history).await.unwrap();
    assert_eq!(page.len(), 2);
    let named = SyncCursor {
        conversation_id: team.clone(),
        after_seq: 0,
    };
    let synced = chat
        .sync(&user("bob"), std::slice::from_ref(&named), 100)
        .await
        .unwrap();
    assert_eq!(synced.conversations[0].messages.len(), 2);
    assert_eq!(synced.conversations[0].last_seq, 2);
    let reply = chat_shared::protocol::AppendRequest::text(
        team.clone(),
        chat_shared::ids::ClientMessageId::parse("b1").unwrap(),
        "hi".to_owned(),
    );
    assert_eq!(chat.append(&user("bob"), None, reply).await.unwrap().seq, 3);

    // Once it has, the next sync and the list bring it: nothing was skipped for good.
    tokio::time::sleep(Duration::from_millis(LAG_MS as u64 + 100)).await;
    assert_eq!(new_in_sync(&chat).await, vec![team.clone()]);
    assert_eq!(listed(&chat).await, vec![team]);
}
