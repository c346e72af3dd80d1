//! The cases of attachments' records (PROTOCOL.md 8.3): created, read back, claimed by
//! the one message that uses them (atomically with its append), found again by that
//! message after a delete, forgotten. GIVEN/WHEN/THEN in each.

use std::sync::Arc;

use chat_shared::domain::new_attachment_id;
use chat_shared::ids::{AttachmentId, ConversationId, Millis};
use chat_shared::ports::{
    AppendOutcome, AttachmentRecord, AttachmentStore, AttachmentUse, DetailsChange, DetailsOutcome,
    NewMessage, Refusal,
};
use chat_shared::protocol::{AttachmentInfo, Content, Entry, Media};

use crate::cases::{S, by, group, message, query, user};
use crate::system::set;

pub(crate) type A = Arc<dyn AttachmentStore>;

fn record(conversation: &ConversationId, uploader: &str, created_at: Millis) -> AttachmentRecord {
    AttachmentRecord {
        id: new_attachment_id(),
        conversation_id: conversation.clone(),
        uploader: user(uploader),
        mime_type: "image/png".into(),
        size: 1234,
        file_name: Some("cat.png".into()),
        created_at,
        used_by: None,
    }
}

async fn created(a: &A, conversation: &ConversationId, uploader: &str) -> AttachmentRecord {
    let r = record(conversation, uploader, 10);
    a.create_attachment(&r).await.unwrap();
    r
}

/// A message of `sender` showing `attachment` (with `thumbnail`), as the service makes it.
fn with_attachment(
    conversation: &ConversationId,
    sender: &str,
    cmid: &str,
    attachment: &AttachmentRecord,
    thumbnail: Option<&AttachmentRecord>,
) -> NewMessage {
    let media = Media {
        attachment: AttachmentInfo {
            attachment_id: attachment.id.clone(),
            mime_type: attachment.mime_type.clone(),
            size: attachment.size,
            file_name: attachment.file_name.clone(),
        },
        width: Some(640),
        height: Some(480),
        duration_ms: None,
        preview: None,
        thumbnail_id: thumbnail.map(|t| t.id.clone()),
    };
    NewMessage {
        entry: Entry::Message {
            content: Some(Content {
                kind: "attachment".into(),
                text: "a cat".into(),
                media: Some(Box::new(media)),
            }),
            reply_to: None,
        },
        ..message(conversation, sender, cmid, 100)
    }
}

async fn one(a: &A, id: &AttachmentId) -> Option<AttachmentRecord> {
    a.attachments(std::slice::from_ref(id)).await.unwrap().pop()
}

async fn last_seq(store: &S, conversation: &ConversationId) -> u64 {
    store
        .conversation(conversation)
        .await
        .unwrap()
        .unwrap()
        .last_seq
}

pub async fn attachments_read_back_as_created_and_missing_ones_are_left_out(_: S, a: A) {
    // GIVEN two attachments of a conversation
    let conv = ConversationId::parse("c_att1").unwrap();
    let first = created(&a, &conv, "alice").await;
    let second = created(&a, &conv, "bob").await;
    // WHEN read with an id that does not exist
    let mut found = a
        .attachments(&[first.id.clone(), new_attachment_id(), second.id.clone()])
        .await
        .unwrap();
    // THEN the two come back as created, unused
    found.sort_by(|x, y| x.uploader.cmp(&y.uploader));
    assert_eq!(found, vec![first, second]);
    assert!(a.attachments(&[]).await.unwrap().is_empty());
}

pub async fn a_message_claims_its_attachment_and_thumbnail_once(store: S, a: A) {
    // GIVEN alice's attachment and thumbnail in a group
    let conv = group(&store, &["alice", "bob"], 1).await;
    let photo = created(&a, &conv, "alice").await;
    let thumb = created(&a, &conv, "alice").await;
    // WHEN a message uses both
    let sent = store
        .append_message(&with_attachment(&conv, "alice", "m1", &photo, Some(&thumb)))
        .await
        .unwrap();
    let AppendOutcome::Stored(m) = sent else {
        panic!("not stored: {sent:?}");
    };
    // THEN both are the message's, which finds them again, content and all
    for id in [&photo.id, &thumb.id] {
        assert_eq!(
            one(&a, id).await.unwrap().used_by,
            Some(AttachmentUse::Message(m.seq))
        );
    }
    let mut theirs = a.message_attachments(&conv, m.seq).await.unwrap();
    theirs.sort();
    let mut expected = vec![photo.id.clone(), thumb.id.clone()];
    expected.sort();
    assert_eq!(theirs, expected);
    let (page, _) = store
        .messages(&conv, &user("bob"), query(None, None, 10, true))
        .await
        .unwrap();
    let content = page[0].entry.content().unwrap();
    assert_eq!(
        content.media.as_ref().unwrap().attachment.attachment_id,
        photo.id
    );
    // WHEN another message uses the photo, or the thumbnail, again
    for (cmid, att) in [("m2", &photo), ("m3", &thumb)] {
        let again = store
            .append_message(&with_attachment(&conv, "alice", cmid, att, None))
            .await
            .unwrap();
        // THEN it is refused and nothing is appended
        assert!(
            matches!(again, AppendOutcome::Refused(Refusal::Invalid(_))),
            "{again:?}"
        );
    }
    assert_eq!(last_seq(&store, &conv).await, m.seq);
    // AND a retry of the first is its duplicate, not a refusal
    let retry = store
        .append_message(&with_attachment(&conv, "alice", "m1", &photo, Some(&thumb)))
        .await
        .unwrap();
    assert!(matches!(retry, AppendOutcome::Duplicate(r) if r.seq == m.seq));
}

pub async fn only_the_uploader_may_use_an_attachment_in_its_own_conversation(store: S, a: A) {
    // GIVEN bob's attachment in a group, and alice's in another
    let conv = group(&store, &["alice", "bob"], 1).await;
    let other = group(&store, &["alice", "bob"], 1).await;
    let bobs = created(&a, &conv, "bob").await;
    let elsewhere = created(&a, &other, "alice").await;
    // WHEN alice sends either in the first group
    for att in [&bobs, &elsewhere] {
        let sent = store
            .append_message(&with_attachment(&conv, "alice", "m", att, None))
            .await
            .unwrap();
        // THEN it is refused, the attachment stays unused and nothing is appended
        assert!(
            matches!(sent, AppendOutcome::Refused(Refusal::Invalid(_))),
            "{sent:?}"
        );
        assert_eq!(one(&a, &att.id).await.unwrap().used_by, None);
    }
    // (an attachment that does not exist likewise)
    let missing = record(&conv, "alice", 10);
    let sent = store
        .append_message(&with_attachment(&conv, "alice", "m", &missing, None))
        .await
        .unwrap();
    assert!(matches!(sent, AppendOutcome::Refused(Refusal::Invalid(_))));
    assert_eq!(last_seq(&store, &conv).await, 0);
}

pub async fn a_deleted_message_still_names_its_attachments_until_they_are_forgotten(
    store: S,
    a: A,
) {
    // GIVEN a message with an attachment, deleted
    let conv = group(&store, &["alice", "bob"], 1).await;
    let photo = created(&a, &conv, "alice").await;
    let sent = store
        .append_message(&with_attachment(&conv, "alice", "m1", &photo, None))
        .await
        .unwrap();
    let AppendOutcome::Stored(m) = sent else {
        panic!("{sent:?}");
    };
    let delete = NewMessage {
        entry: Entry::Delete { target_seq: m.seq },
        ..message(&conv, "alice", "d1", 200)
    };
    assert!(matches!(
        store.append_message(&delete).await.unwrap(),
        AppendOutcome::Stored(_)
    ));
    // THEN the message still names its attachment (for the fan-out to delete its bytes)
    assert_eq!(
        a.message_attachments(&conv, m.seq).await.unwrap(),
        vec![photo.id.clone()]
    );
    // WHEN it is forgotten (twice: the fan-out may run again)
    a.forget_attachments(std::slice::from_ref(&photo.id))
        .await
        .unwrap();
    a.forget_attachments(std::slice::from_ref(&photo.id))
        .await
        .unwrap();
    // THEN it is gone
    assert_eq!(one(&a, &photo.id).await, None);
    // A message without attachments names none.
    assert!(a.message_attachments(&conv, 99).await.unwrap().is_empty());
}

pub async fn nothing_in_use_or_fresh_is_ever_doomed(store: S, a: A) {
    // GIVEN an attachment in use, and a fresh unused one
    let conv = group(&store, &["alice", "bob"], 1).await;
    let used = created(&a, &conv, "alice").await;
    let fresh = created(&a, &conv, "alice").await;
    store
        .append_message(&with_attachment(&conv, "alice", "m1", &used, None))
        .await
        .unwrap();
    // WHEN the doomed are asked for with cutoffs before both (messages kept forever)
    let doomed = a.doomed_attachments(5, i64::MIN, 100).await.unwrap();
    // THEN neither is among them (a store whose records expire on their own has none)
    assert!(!doomed.contains(&used.id) && !doomed.contains(&fresh.id));
}

fn avatar(a: Option<&AttachmentRecord>) -> DetailsChange {
    DetailsChange {
        name: None,
        avatar: Some(a.map(|a| a.id.clone())),
    }
}

pub async fn an_avatar_is_claimed_replaced_and_released_with_its_entry(store: S, a: A) {
    // GIVEN a group, alice's image and bob's
    let conv = group(&store, &["alice", "bob"], 1).await;
    let first = created(&a, &conv, "alice").await;
    let second = created(&a, &conv, "alice").await;
    let bobs = created(&a, &conv, "bob").await;
    // WHEN alice makes her first image the avatar
    let changed = set(store
        .set_details(&conv, &avatar(Some(&first)), &by("alice", 10))
        .await
        .unwrap());
    // THEN the group shows it, it is the avatar's, and one entry says so with the name
    assert_eq!(changed.avatar.as_ref(), Some(&first.id));
    let stored = store.conversation(&conv).await.unwrap().unwrap();
    assert_eq!(
        (stored.avatar.as_ref(), stored.last_seq),
        (Some(&first.id), 1)
    );
    assert_eq!(
        one(&a, &first.id).await.unwrap().used_by,
        Some(AttachmentUse::Avatar)
    );
    let (page, _) = store
        .messages(&conv, &user("bob"), query(None, None, 10, true))
        .await
        .unwrap();
    let Entry::System(change) = &page[0].entry else {
        panic!("not a system entry: {:?}", page[0]);
    };
    assert_eq!(
        (change.name.as_deref(), change.avatar.as_deref()),
        (Some("Team"), Some(first.id.as_str()))
    );
    // AND a message can no longer use it
    let sent = store
        .append_message(&with_attachment(&conv, "alice", "m1", &first, None))
        .await
        .unwrap();
    assert!(matches!(sent, AppendOutcome::Refused(Refusal::Invalid(_))));

    // WHEN alice sets bob's image, or the same one again
    let refused = store
        .set_details(&conv, &avatar(Some(&bobs)), &by("alice", 20))
        .await
        .unwrap();
    let same = set(store
        .set_details(&conv, &avatar(Some(&first)), &by("alice", 21))
        .await
        .unwrap());
    // THEN the first is refused and the second changes nothing: no entry
    assert_eq!(refused, DetailsOutcome::Refused);
    assert_eq!(same.last_seq, 1);
    assert_eq!(one(&a, &bobs.id).await.unwrap().used_by, None);

    // WHEN she replaces it with her second image
    let replaced = store
        .set_details(&conv, &avatar(Some(&second)), &by("alice", 30))
        .await
        .unwrap();
    // THEN the first is released (unused, for the caller to delete)
    let DetailsOutcome::Set {
        conversation,
        released,
    } = replaced
    else {
        panic!("not replaced: {replaced:?}");
    };
    assert_eq!(conversation.avatar.as_ref(), Some(&second.id));
    assert_eq!(released.as_ref(), Some(&first.id));
    assert_eq!(one(&a, &first.id).await.unwrap().used_by, None);
    // WHEN the avatar is removed THEN the second is released and the group has none
    let removed = store
        .set_details(&conv, &avatar(None), &by("alice", 40))
        .await
        .unwrap();
    assert!(matches!(
        &removed,
        DetailsOutcome::Set { conversation, released: Some(r) }
            if conversation.avatar.is_none() && *r == second.id
    ));
    assert_eq!(
        store.conversation(&conv).await.unwrap().unwrap().last_seq,
        3,
        "one entry per change"
    );
}

pub async fn a_message_and_an_avatar_racing_for_one_attachment_never_both_win(store: S, a: A) {
    let conv = group(&store, &["alice", "bob"], 1).await;
    for round in 0..20 {
        // GIVEN a fresh image of alice's
        let image = created(&a, &conv, "alice").await;
        // WHEN she sends it and makes it the avatar at the same moment
        let cmid = format!("race-{round}");
        let send = with_attachment(&conv, "alice", &cmid, &image, None);
        let details = avatar(Some(&image));
        let at = by("alice", 100 + round);
        let (sent, set_as_avatar) = tokio::join!(
            store.append_message(&send),
            store.set_details(&conv, &details, &at)
        );
        // THEN exactly one of them has it
        let sent = matches!(sent.unwrap(), AppendOutcome::Stored(_));
        let avatar = matches!(
            set_as_avatar.unwrap(),
            DetailsOutcome::Set { ref conversation, .. }
                if conversation.avatar.as_ref() == Some(&image.id)
        );
        assert!(
            sent != avatar,
            "round {round}: message {sent}, avatar {avatar}"
        );
        let used = one(&a, &image.id).await.unwrap().used_by;
        let expected = if sent {
            matches!(used, Some(AttachmentUse::Message(_)))
        } else {
            used == Some(AttachmentUse::Avatar)
        };
        assert!(expected, "round {round}: {used:?}");
    }
}
