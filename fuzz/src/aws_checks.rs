//! Checks of the AWS crate's decoders: DynamoDB stream batches. Uses only `chat_aws` and
//! `serde_json`, so `aws/tests/fuzz_regressions.rs` can include this file as it is.

use chat_aws::dynamodb::message_from;
use chat_aws::lambda::{StreamEvent, image_to_item};

/// A stream batch (JSON) through the fan-out's decoding: [`StreamEvent`], then
/// [`image_to_item`] and [`message_from`] for each record's `NewImage`. An image that
/// decodes keeps every attribute; one that becomes a message has a seq >= 1.
pub fn stream_record(data: &[u8]) {
    let Ok(event) = serde_json::from_slice::<StreamEvent>(data) else {
        return;
    };
    for record in &event.records {
        let Some(image) = &record.dynamodb.new_image else {
            continue;
        };
        let Ok(item) = image_to_item(image) else {
            continue;
        };
        assert_eq!(Some(item.len()), image.as_object().map(|o| o.len()));
        if let Ok(message) = message_from(&item) {
            assert!(message.seq >= 1, "a stored message has seq >= 1, got 0");
        }
    }
}
