//! Reactions: the per-message summaries kept on the message item, and the two items of
//! each (user, message, emoji) reaction in the main table (keys in [`crate::tables`]):
//! `ru#` items sort by user then seq, so a history page finds its reader's own
//! reactions with one bounded Query; `rt#` items sort by message, emoji, user, for
//! `reactors` paging and for refilling a summary's first reactors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use aws_sdk_dynamodb::types::AttributeValue;

use chat_shared::StoreError;
use chat_shared::ids::{Seq, UserId};
use chat_shared::ports::{REACTORS_SHOWN, ReactionSummary, StoreResult};

use super::DynamoStore;
use super::codec::{Item, conv_pk, get_map, get_n, get_s, key, malformed, n, opt_s, s};

/// An emoji as it appears in a sort key: its UTF-8 bytes in lowercase hex. An emoji may
/// hold `#` (keycap sign), the keys' separator; hex keeps byte order and cannot.
fn emoji_key(emoji: &str) -> String {
    emoji.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Seqs in sort keys: fixed width, so string order is numeric order.
fn seq_key(seq: Seq) -> String {
    format!("{seq:020}")
}

/// The item of a user's reaction, under the user: `ru#{user}#{seq}#{emoji}`.
pub(crate) fn user_reaction_sk(user: &str, seq: Seq, emoji: &str) -> String {
    format!("ru#{user}#{}#{}", seq_key(seq), emoji_key(emoji))
}

/// The item of a message's reactor, under the message and emoji: `rt#{seq}#{emoji}#{user}`.
pub(crate) fn reactor_sk(seq: Seq, emoji: &str, user: &str) -> String {
    format!("rt#{}#{}#{user}", seq_key(seq), emoji_key(emoji))
}

/// What one emoji on a message holds: how many reacted so, and the earliest (at most
/// [`REACTORS_SHOWN`]) reactors still there with the seq of their reaction, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub count: u64,
    pub first: Vec<(UserId, Seq)>,
}

/// A message's summaries by emoji, as stored in its `reactions` map.
pub(crate) type Summaries = BTreeMap<String, Summary>;

/// Reads the `reactions` map of a message item.
pub(crate) fn summaries_of(item: &Item) -> Result<Summaries, StoreError> {
    let Some(map) = get_map(item, "reactions") else {
        return Ok(Summaries::new());
    };
    map.iter()
        .map(|(emoji, v)| {
            let AttributeValue::M(m) = v else {
                return Err(malformed(format!("reaction summary of {emoji}")));
            };
            let first = match m.get("f") {
                Some(AttributeValue::L(list)) => list
                    .iter()
                    .map(|r| match r {
                        AttributeValue::M(r) => Ok((
                            UserId::parse(get_s(r, "u")?).map_err(|e| malformed(e.0))?,
                            get_n(r, "s")?,
                        )),
                        _ => Err(malformed("first reactor".into())),
                    })
                    .collect::<Result<_, _>>()?,
                _ => Vec::new(),
            };
            Ok((
                emoji.clone(),
                Summary {
                    count: get_n(m, "n")?,
                    first,
                },
            ))
        })
        .collect()
}

/// The `reactions` map to store; `None` when no emoji is left.
pub(crate) fn summaries_value(summaries: &Summaries) -> Option<AttributeValue> {
    let map: HashMap<String, AttributeValue> = summaries
        .iter()
        .filter(|(_, sum)| sum.count > 0)
        .map(|(emoji, sum)| {
            let first = sum
                .first
                .iter()
                .map(|(u, seq)| {
                    AttributeValue::M(HashMap::from([
                        ("u".to_owned(), s(u.as_str())),
                        ("s".to_owned(), n(seq)),
                    ]))
                })
                .collect();
            let value = HashMap::from([
                ("n".to_owned(), n(sum.count)),
                ("f".to_owned(), AttributeValue::L(first)),
            ]);
            (emoji.clone(), AttributeValue::M(value))
        })
        .collect();
    (!map.is_empty()).then_some(AttributeValue::M(map))
}

/// A message item's reactions as readers see them (`mine` unset), in order of first
/// reaction: the earliest reaction still there.
pub(crate) fn summaries_from(item: &Item) -> Result<Vec<ReactionSummary>, StoreError> {
    let mut out: Vec<(Seq, ReactionSummary)> = summaries_of(item)?
        .into_iter()
        .filter(|(_, sum)| sum.count > 0)
        .map(|(emoji, sum)| {
            let since = sum.first.first().map_or(Seq::MAX, |(_, seq)| *seq);
            let summary = ReactionSummary {
                emoji,
                count: sum.count,
                user_ids: sum.first.into_iter().map(|(u, _)| u).collect(),
                mine: false,
            };
            (since, summary)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.emoji.cmp(&b.1.emoji)));
    Ok(out.into_iter().map(|(_, sum)| sum).collect())
}

impl Summary {
    /// `user`'s reaction at `seq` is added (it was not there).
    pub(crate) fn add(&mut self, user: &UserId, seq: Seq) {
        self.count += 1;
        if self.first.len() < REACTORS_SHOWN {
            self.first.push((user.clone(), seq));
        }
    }

    /// `user`'s reaction is removed (it was there); `others` are the emoji's reactors
    /// before the removal with the seq of their reaction, read only when `user` was one
    /// of the first shown (see [`Summary::shows`]).
    pub(crate) fn remove(&mut self, user: &UserId, others: &[(UserId, Seq)]) {
        self.count = self.count.saturating_sub(1);
        self.first.retain(|(u, _)| u != user);
        let mut rest: Vec<&(UserId, Seq)> = others
            .iter()
            .filter(|(u, _)| u != user && !self.first.iter().any(|(f, _)| f == u))
            .collect();
        rest.sort_by_key(|(_, seq)| *seq);
        for r in rest {
            if self.first.len() >= REACTORS_SHOWN {
                break;
            }
            self.first.push(r.clone());
        }
        self.first.sort_by_key(|(_, seq)| *seq);
    }

    /// Whether `user` is one of the first reactors shown (removing them needs a refill).
    pub(crate) fn shows(&self, user: &UserId) -> bool {
        self.first.iter().any(|(u, _)| u == user)
    }
}

impl DynamoStore {
    /// The emoji `viewer` reacted with to the messages `lo..=hi` of a conversation: one
    /// Query of their `ru#` items in that seq range.
    pub(crate) async fn own_reactions(
        &self,
        conversation: &str,
        viewer: &UserId,
        lo: Seq,
        hi: Seq,
    ) -> StoreResult<HashSet<(Seq, String)>> {
        let prefix = format!("ru#{viewer}#");
        // '~' sorts after every hex digit: the whole of message `hi`'s emoji.
        let items = self
            .query_range(
                &conv_pk(conversation),
                &format!("{prefix}{}#", seq_key(lo)),
                &format!("{prefix}{}#~", seq_key(hi)),
                None,
            )
            .await?;
        items
            .iter()
            .map(|i| Ok((get_n(i, "targetSeq")?, get_s(i, "emoji")?.to_owned())))
            .collect()
    }

    /// Reactors of one emoji on the message at `seq`, in userId order after `after`, with
    /// the seq of their reaction: one Query.
    pub(crate) async fn reactor_items(
        &self,
        conversation: &str,
        seq: Seq,
        emoji: &str,
        after: Option<&UserId>,
        limit: Option<usize>,
    ) -> StoreResult<Vec<(UserId, Seq)>> {
        let prefix = format!("rt#{}#{}#", seq_key(seq), emoji_key(emoji));
        // '\u{1}' sorts before every user-id character, '$' right after '#'.
        let lo = match after {
            Some(u) => format!("{prefix}{u}\u{1}"),
            None => prefix.clone(),
        };
        let hi = format!("{}$", prefix.trim_end_matches('#'));
        self.query_range(&conv_pk(conversation), &lo, &hi, limit)
            .await?
            .iter()
            .map(|i| {
                let sk = get_s(i, "sk")?;
                let user = sk
                    .strip_prefix(&prefix)
                    .ok_or_else(|| malformed(format!("reactor key {sk}")))?;
                Ok((
                    UserId::parse(user).map_err(|e| malformed(e.0))?,
                    get_n(i, "at")?,
                ))
            })
            .collect()
    }

    /// Deletes every reaction item of the message at `seq` (after it was deleted: its
    /// summary went with the delete, these are what `reactors` and `mine` would read).
    /// Idempotent; a retried delete runs it again.
    pub(crate) async fn drop_reactions(&self, conversation: &str, seq: Seq) -> StoreResult<()> {
        let pk = conv_pk(conversation);
        let prefix = format!("rt#{}#", seq_key(seq));
        let items = self
            .query_range(&pk, &prefix, &format!("rt#{}$", seq_key(seq)), None)
            .await?;
        let mut keys = Vec::with_capacity(items.len() * 2);
        for item in &items {
            let sk = get_s(item, "sk")?;
            let Some(user) = opt_s(item, "user") else {
                continue;
            };
            let emoji = get_s(item, "emoji")?;
            keys.push(key(pk.clone(), sk));
            keys.push(key(pk.clone(), &user_reaction_sk(&user, seq, emoji)));
        }
        self.batch_delete(keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn keys_sort_by_user_then_seq_and_keep_emoji_apart() {
        // GIVEN an emoji holding the separator, and one that is its prefix
        let (keycap, hash) = ("#\u{fe0f}\u{20e3}", "#");
        // THEN their keys differ and neither is a prefix of the other's user part
        assert_ne!(reactor_sk(7, keycap, "a"), reactor_sk(7, hash, "a"));
        assert!(!reactor_sk(7, keycap, "a").starts_with(&reactor_sk(7, hash, "")));
        // AND seqs order numerically within a user
        assert!(user_reaction_sk("bob", 9, "x") < user_reaction_sk("bob", 10, "x"));
        assert!(user_reaction_sk("bob", 99, "x") < user_reaction_sk("bob2", 1, "x"));
    }

    #[test]
    fn removing_a_shown_reactor_refills_from_the_earliest_others() {
        // GIVEN 5 reactors of one emoji, the first three shown
        let mut sum = Summary {
            count: 0,
            first: Vec::new(),
        };
        let all: Vec<(UserId, Seq)> = ["e", "d", "c", "b", "a"]
            .iter()
            .zip(10..)
            .map(|(name, seq)| (u(name), seq))
            .collect();
        for (user, seq) in &all {
            sum.add(user, *seq);
        }
        assert_eq!(sum.count, 5);
        assert!(sum.shows(&u("c")) && !sum.shows(&u("b")));
        // WHEN the second shown one removes theirs
        sum.remove(&u("d"), &all);
        // THEN the next earliest (b, at 13) takes the last place
        assert_eq!(sum.count, 4);
        assert_eq!(sum.first, vec![(u("e"), 10), (u("c"), 12), (u("b"), 13)]);
    }
}
