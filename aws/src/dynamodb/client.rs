//! SDK helpers: error mapping, conditional writes, transaction conflicts and retries,
//! batched reads and writes, range queries.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    DeleteRequest, KeysAndAttributes, Put, PutRequest, TransactWriteItem, WriteRequest,
};

use chat_shared::StoreError;
use chat_shared::ports::StoreResult;

use super::DynamoStore;
use super::codec::{Item, opt_s, s};

/// `TransactWriteItems` takes at most 100 actions.
pub(crate) const TRANSACTION_MAX: usize = 100;

/// How often a conditional write lost to a racing writer is retried.
pub(crate) const MAX_ATTEMPTS: u32 = 12;

pub(crate) fn sdk<E: std::error::Error + Send + Sync + 'static>(
    context: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::new(context, e)
}

/// `Some(output)` when a conditional write went through, `None` when its condition did
/// not hold; other failures are errors.
pub(crate) fn condition_held<O, E>(
    result: Result<O, SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
    context: &'static str,
) -> StoreResult<Option<O>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error().and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(None)
        }
        Err(e) => Err(StoreError::new(context, e)),
    }
}

pub(crate) fn cancellation_codes(
    e: &SdkError<TransactWriteItemsError, impl std::fmt::Debug>,
) -> Option<Vec<String>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(c) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

pub(crate) fn is_transaction_conflict(codes: &[String]) -> bool {
    codes
        .iter()
        .any(|c| c == "TransactionConflict" || c == "ThrottlingError")
}

pub(crate) async fn backoff(attempt: u32) {
    let base = 5u64 << attempt.min(6);
    let jitter = rand::random::<u64>() % base;
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

pub(crate) fn put(table: &str, item: Item, condition: Option<&str>) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_owned))
                .build()
                .expect("put has table and item"),
        )
        .build()
}

impl DynamoStore {
    /// Runs `actions` as one transaction: false when it was cancelled for reasons
    /// `expected` accepts (its cancellation codes; nothing was written), an error for
    /// any other failure.
    pub(crate) async fn transact(
        &self,
        actions: Vec<TransactWriteItem>,
        context: &'static str,
        expected: impl Fn(&[String]) -> bool,
    ) -> StoreResult<bool> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match cancellation_codes(&e) {
                Some(codes) if expected(&codes) => Ok(false),
                _ => Err(sdk(context)(e)),
            },
        }
    }

    pub(crate) async fn get(&self, table: &str, key: Item) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("get item"))?;
        Ok(out.item)
    }

    /// Reads many items of the main table (any order, each key once), retrying
    /// unprocessed keys. Eventually consistent reads cost half: they serve listings,
    /// badges and connection lookups, where a read a moment old is as good.
    pub(crate) async fn batch_get(
        &self,
        mut keys: Vec<Item>,
        consistent: bool,
    ) -> StoreResult<Vec<Item>> {
        let mut seen = HashSet::new();
        keys.retain(|k| seen.insert((opt_s(k, "pk"), opt_s(k, "sk"))));
        let mut out = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(consistent)
                    .build()
                    .expect("keys are set"),
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.main, request)
                    .send()
                    .await
                    .map_err(sdk("batch get"))?;
                if let Some(mut items) = resp.responses
                    && let Some(items) = items.remove(&self.tables.main)
                {
                    out.extend(items);
                }
                pending = resp
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.tables.main))
                    .filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    attempt += 1;
                    backoff(attempt).await;
                }
            }
        }
        Ok(out)
    }

    /// Writes items of the main table in batches of 25, retrying unprocessed ones.
    pub(crate) async fn batch_put(&self, items: Vec<Item>) -> StoreResult<()> {
        let put = |i: Item| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(i))
                        .build()
                        .expect("item is set"),
                )
                .build()
        };
        self.batch_write(items.into_iter().map(put).collect(), "batch write")
            .await
    }

    /// Deletes items of the main table by key in batches of 25, retrying unprocessed ones.
    pub(crate) async fn batch_delete(&self, keys: Vec<Item>) -> StoreResult<()> {
        let delete = |k: Item| {
            WriteRequest::builder()
                .delete_request(
                    DeleteRequest::builder()
                        .set_key(Some(k))
                        .build()
                        .expect("key is set"),
                )
                .build()
        };
        self.batch_write(keys.into_iter().map(delete).collect(), "batch delete")
            .await
    }

    /// Runs write requests on the main table in batches of 25 (BatchWriteItem's most),
    /// retrying the unprocessed ones with backoff.
    async fn batch_write(
        &self,
        requests: Vec<WriteRequest>,
        context: &'static str,
    ) -> StoreResult<()> {
        for chunk in requests.chunks(25) {
            let mut requests = chunk.to_vec();
            let mut attempt = 0;
            while !requests.is_empty() {
                let resp = self
                    .client
                    .batch_write_item()
                    .request_items(&self.tables.main, requests)
                    .send()
                    .await
                    .map_err(sdk(context))?;
                requests = resp
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.tables.main))
                    .unwrap_or_default();
                if !requests.is_empty() {
                    attempt += 1;
                    backoff(attempt).await;
                }
            }
        }
        Ok(())
    }

    /// Every item of a partition of the main table whose sort key lies in `[lo, hi]`.
    pub(crate) async fn query_range(
        &self,
        pk: &str,
        lo: &str,
        hi: &str,
        limit: Option<usize>,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.tables.main)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":lo", s(lo))
                .expression_attribute_values(":hi", s(hi))
                .consistent_read(true)
                .set_limit(limit.map(|l| (l - out.len()).min(1000) as i32))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("query"))?;
            out.extend(resp.items.unwrap_or_default());
            start = resp.last_evaluated_key;
            if start.is_none() || limit.is_some_and(|l| out.len() >= l) {
                return Ok(out);
            }
        }
    }
}
