//! The fan-out handler: consumes the store's change feed (the SQLite outbox locally,
//! DynamoDB Streams on AWS) in order.

use crate::error::ChatError;
use crate::ports::MessageRecord;
use crate::service::Chat;

/// Fans out a batch of records in order. Stops at the first failure and returns its
/// position, so the feed can resume from there (the records before it are done).
pub async fn handle_batch<'a, K: Copy + 'a>(
    chat: &Chat,
    records: impl IntoIterator<Item = (K, &'a MessageRecord)>,
) -> Result<(), (K, ChatError)> {
    for (key, record) in records {
        chat.fan_out(record).await.map_err(|e| (key, e))?;
    }
    Ok(())
}
