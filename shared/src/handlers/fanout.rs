//! The fan-out handler: consumes the store's change feed (the SQLite outbox locally,
//! DynamoDB Streams on AWS) in order.

use crate::error::ChatError;
use crate::ports::MessageRecord;
use crate::service::Chat;

/// Fans out a batch of feed items in order. Stops at the first failure and returns its
/// index, so the feed resumes from there (the items before it are done).
pub async fn handle_batch<T>(
    chat: &Chat,
    items: &[T],
    record: impl Fn(&T) -> &MessageRecord,
) -> Result<(), (usize, ChatError)> {
    for (i, item) in items.iter().enumerate() {
        chat.fan_out(record(item)).await.map_err(|e| (i, e))?;
    }
    Ok(())
}
