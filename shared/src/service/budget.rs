//! The byte cap of an answer: lists, history and sync stop adding items when the next
//! one would take the answer past [`MAX_ANSWER_BYTES`], and say there is more.

use std::io;

use serde::Serialize;

use crate::protocol::MAX_ANSWER_BYTES;

/// Bytes an answer has left for its items. What is not items (field names, the
/// positions of a sync's conversations) is small and bounded; it is kept out of the count
/// by starting from a margin below the cap.
#[derive(Debug)]
pub(crate) struct AnswerBudget {
    left: usize,
}

/// Left for everything in an answer but its items: the envelope and per-conversation
/// fields of at most 100 sync entries stay well under this.
const ENVELOPE_BYTES: usize = 64 * 1024;

impl AnswerBudget {
    pub(crate) fn new() -> Self {
        Self {
            left: MAX_ANSWER_BYTES - ENVELOPE_BYTES,
        }
    }

    /// Counts `item` in when it fits in what is left; `false` (and nothing counted) when
    /// it does not: the answer ends before it.
    pub(crate) fn take(&mut self, item: &impl Serialize) -> bool {
        // The item and the comma before it.
        let size = serialized_len(item) + 1;
        if size > self.left {
            self.left = 0;
            return false;
        }
        self.left -= size;
        true
    }

    /// Whether nothing more can go in.
    pub(crate) fn spent(&self) -> bool {
        self.left == 0
    }
}

/// The length of `item` as JSON, without building it.
fn serialized_len(item: &impl Serialize) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and our views always serialize.
    let _ = serde_json::to_writer(&mut count, item);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_json_and_stops_at_the_first_item_that_does_not_fit() {
        assert_eq!(serialized_len(&"a\"b"), 6);
        let mut budget = AnswerBudget { left: 10 };
        assert!(budget.take(&"abcdef")); // 8 + comma
        assert!(!budget.take(&"a"));
        assert!(budget.spent());
        assert!(!budget.take(&1));
    }
}
