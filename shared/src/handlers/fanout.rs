//! The fan-out handler: consumes the store's change feed in order, in both modes: the
//! embedded store's feed (`chat-local`) and DynamoDB Streams (the fan-out Lambda).

use crate::error::ChatError;
use crate::ports::MessageRecord;
use crate::service::Chat;

/// Fans out a batch of feed items in order, each run of one conversation's messages
/// together. Stops at the first failure and returns its index, so the feed resumes
/// from there (the items before it are done).
pub async fn handle_batch<T>(
    chat: &Chat,
    items: &[T],
    record: impl Fn(&T) -> &MessageRecord,
) -> Result<(), (usize, ChatError)> {
    let mut start = 0;
    while let Some(first) = items.get(start).map(&record) {
        let run: Vec<&MessageRecord> = items[start..]
            .iter()
            .map(&record)
            .take_while(|m| m.conversation_id == first.conversation_id)
            .collect();
        chat.fan_out_run(&run)
            .await
            .map_err(|(i, e)| (start + i, e))?;
        start += run.len();
    }
    Ok(())
}
