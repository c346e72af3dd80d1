//! The fuzz corpus of the `stream_record` target as a regression suite, on stable: every
//! committed input (`fuzz/seeds`, the minimized `fuzz/corpus`, the crash inputs kept in
//! `fuzz/artifacts`) goes through the very check the fuzz target runs (included from
//! `fuzz/src`). See fuzz/README.md.

#[path = "../../fuzz/src/aws_checks.rs"]
mod checks;

use std::path::Path;

#[test]
fn stream_record_corpus_holds() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["seeds", "corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join("stream_record")) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable corpus dir").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 10, "only {} inputs", files.len());
    let failed: Vec<_> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("a readable corpus file");
            std::panic::catch_unwind(|| checks::stream_record(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "failing inputs {failed:#?}");
}

/// Found by the `seq_zero` seed: an image with seq 0 decoded into a message, which the
/// fan-out would have pushed although no message has seq 0.
#[test]
fn an_image_with_seq_0_is_not_a_message() {
    let image = serde_json::json!({
        "conversationId": {"S": "c_1"},
        "seq": {"N": "0"},
        "messageId": {"S": "m_1"},
        "senderId": {"S": "alice"},
        "clientMessageId": {"S": "k1"},
        "content": {"S": "{\"type\":\"text\",\"text\":\"hi\"}"},
        "timestamp": {"N": "1"}
    });
    let item = chat_aws::lambda::image_to_item(&image).expect("a well-typed image");
    assert!(chat_aws::dynamodb::message_from(&item).is_err());
    let mut item = item;
    item.insert(
        "seq".into(),
        aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
    );
    assert_eq!(
        chat_aws::dynamodb::message_from(&item).map(|m| m.seq).ok(),
        Some(1)
    );
}
