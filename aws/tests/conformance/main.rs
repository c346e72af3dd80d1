//! One store conformance suite, run against every adapter of the `Store` port: SQLite
//! (a temporary file) and DynamoDB (DynamoDB Local, the official engine, started by the
//! harness on a free loopback port). Each case is a plain async function over
//! `Arc<dyn Store>`; the macro below runs it once per adapter.

mod attachments;
mod cases;
#[path = "../common/mod.rs"]
mod common;
mod entries;
mod erasure;
mod system;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use chat_aws::dynamodb::DynamoStore;
use chat_aws::tables::{TableNames, create_all};
use chat_shared::ports::{AttachmentStore, Store};
use chat_sqlite::{Durability, SqliteStore};
use chat_tests::emulators::DynamoDbLocal;

/// A store under test, with whatever keeps it alive.
pub struct Subject {
    pub store: Arc<dyn Store>,
    pub attachments: Arc<dyn AttachmentStore>,
    _dir: Option<tempfile::TempDir>,
}

pub fn sqlite() -> Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("chat.db"), Durability::Process).expect("open");
    Subject {
        store: Arc::new(store.clone()),
        attachments: Arc::new(store),
        _dir: Some(dir),
    }
}

/// A DynamoDB client for DynamoDB Local.
pub fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "conformance"))
        .endpoint_url(DynamoDbLocal::shared().endpoint())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

pub async fn dynamodb() -> Subject {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let client = dynamodb_client();
    let prefix = format!(
        "t{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let names = TableNames::prefixed(&prefix);
    create_all(&client, &names).await.expect("create tables");
    let store = DynamoStore::new(client, names);
    Subject {
        store: Arc::new(store.clone()),
        attachments: Arc::new(store),
        _dir: None,
    }
}

/// Runs each case of a module once per adapter: `<on_sqlite>::<case>` and
/// `<on_dynamodb>::<case>` (filter the DynamoDB ones with `on_dynamodb`).
macro_rules! conformance {
    // Cases that also take the attachment store.
    ($module:ident with attachments => $on_sqlite:ident, $on_dynamodb:ident: $($case:ident),* $(,)?) => {
        mod $on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let s = crate::sqlite();
                    crate::$module::$case(s.store.clone(), s.attachments.clone()).await;
                }
            )*
        }
        mod $on_dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let s = crate::dynamodb().await;
                    crate::$module::$case(s.store.clone(), s.attachments.clone()).await;
                }
            )*
        }
    };
    ($module:ident => $on_sqlite:ident, $on_dynamodb:ident: $($case:ident),* $(,)?) => {
        mod $on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let subject = crate::sqlite();
                    crate::$module::$case(subject.store.clone()).await;
                }
            )*
        }
        mod $on_dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let subject = crate::dynamodb().await;
                    crate::$module::$case(subject.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    cases => on_sqlite, on_dynamodb:
    direct_conversations_are_one_per_pair,
    groups_list_members_by_user_id_with_paging,
    appends_sequence_from_one_and_retries_are_idempotent,
    non_members_cannot_append,
    concurrent_senders_with_retries_get_seqs_one_to_n,
    message_queries_page_both_ways_and_respect_retention,
    receipts_are_monotonic_clamped_and_read_implies_delivered,
    adding_members_respects_the_cap_and_ignores_existing_ones,
    removing_the_last_admin_promotes_the_longest_standing_member,
    user_conversations_are_ordered_by_last_message_with_a_cursor,
    typing_is_throttled_per_window,
    typing_stops_only_a_state_still_shown,
    presence_changes_are_announced_once_per_window,
    sends_are_counted_per_fixed_window,
    connections_are_recorded_touched_and_deleted_once,
    last_seen_only_moves_forward,
    a_revocation_only_moves_forward_and_is_the_users_own,
    devices_register_move_between_users_and_delete,
    contacts_and_shared_users_follow_membership,
    unread_totals_and_mute_flags,
    pushes_are_recorded_as_sent_per_message_with_whom_they_reached,
    a_stale_counter_hint_costs_a_retry_not_a_wrong_seq,
);

conformance!(
    entries => entries_on_sqlite, entries_on_dynamodb:
    every_entry_kind_round_trips_and_messages_come_in_their_current_state,
    entry_times_never_decrease_and_only_messages_move_the_order,
    a_delete_erases_the_message_and_its_edits,
    a_group_admin_may_delete_any_message,
    rules_refuse_with_no_entry,
    a_message_is_edited_at_most_50_times,
    reactions_are_sets_of_at_most_50_emoji,
    mine_is_the_viewers_and_emoji_come_in_order_of_first_reaction,
    first_reactors_refill_and_reactors_page_by_user_id,
    unread_counts_only_messages,
    read_messages_count_the_messages_up_to_read_up_to,
    members_join_having_read_what_came_before,
    conversations_order_by_the_later_of_last_message_and_joining,
    retries_of_every_kind_are_idempotent,
);

conformance!(
    system => system_on_sqlite, system_on_dynamodb:
    adding_appends_one_member_added_naming_only_the_new_users,
    added_members_start_at_their_entry_having_read_everything,
    over_the_cap_nothing_is_added_nor_appended,
    removing_appends_member_removed_with_the_actor,
    leaving_appends_member_left,
    the_last_admin_leaving_appends_member_left_then_role_changed,
    system_entries_move_neither_the_order_nor_counts_nor_unread,
    system_entries_come_back_with_every_field,
    a_hundred_users_are_added_at_once,
    changes_racing_sends_each_append_one_entry_without_gaps,
    a_role_change_appends_role_changed_and_the_last_admin_stays,
    a_rename_appends_details_changed_once,
    the_last_message_skips_other_kinds_and_expired_ones,
);

conformance!(
    attachments with attachments => attachments_on_sqlite, attachments_on_dynamodb:
    attachments_read_back_as_created_and_missing_ones_are_left_out,
    a_message_claims_its_attachment_and_thumbnail_once,
    only_the_uploader_may_use_an_attachment_in_its_own_conversation,
    a_deleted_message_still_names_its_attachments_until_they_are_forgotten,
    nothing_in_use_or_fresh_is_ever_doomed,
    an_avatar_is_claimed_replaced_and_released_with_its_entry,
    a_message_and_an_avatar_racing_for_one_attachment_never_both_win,
);
