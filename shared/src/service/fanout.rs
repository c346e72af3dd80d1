//! The fan-out of stored messages: frames to members' live connections, pushes to the
//! devices of the others, in seq order per conversation.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use tracing::{debug, warn};

use super::Chat;
use super::messages::message_view;
use crate::domain;
use crate::error::{ChatError, ChatResult};
use crate::ids::{Millis, Seq, UserId};
use crate::ports::{
    ConnectionRecord, ConversationRecord, DeviceRecord, MemberRecord, MessageQuery, MessageRecord,
    PushError, PushNotification, PushedDevice,
};
use crate::protocol::{Entry, ServerFrame};
use crate::telemetry;

impl Chat {
    /// Fans out one committed message: see [`Chat::fan_out_run`].
    pub async fn fan_out(&self, message: &MessageRecord) -> ChatResult<()> {
        self.fan_out_run(&[message]).await.map_err(|(_, e)| e)
    }

    /// Fans out committed messages of one conversation, in seq order: a `message.new`
    /// to every live connection of its members (but the one it was sent from), and a
    /// push to the phones of offline members who did not mute it.
    ///
    /// The members and their connections are read once for the whole run, and each
    /// connection gets its frames in one post: under load the feed hands over runs of
    /// a busy group's messages, and reading 100 members and their connections again
    /// for each message, then waking each socket once per message, was most of the
    /// fan-out's cost. On failure, answers with the index of the first message not
    /// wholly done. Fit for at-least-once feeds: a redelivery repeats frames (clients
    /// drop them by seq) but never pushes.
    ///
    /// Entries the send path posted itself (direct delivery, see `direct.rs`) are not
    /// posted again: the fan-out is their backstop, posting what a send that died after
    /// its write did not, and pushing the members they did not reach.
    pub async fn fan_out_run(&self, messages: &[&MessageRecord]) -> Result<(), (usize, ChatError)> {
        let Some(first) = messages.first() else {
            return Ok(());
        };
        debug_assert!(
            messages
                .iter()
                .all(|m| m.conversation_id == first.conversation_id),
            "a run is one conversation's"
        );
        let at_start = |e: ChatError| (0, e);
        let Some(conv) = self
            .store
            .conversation(&first.conversation_id)
            .await
            .map_err(|e| at_start(e.into()))?
        else {
            return Ok(());
        };
        let posted = conv.posted.clone().unwrap_or_default();
        if let [only] = messages
            && only.seq == posted.seq
        {
            // Posted by the send path, which found who is owed its push.
            return self
                .after_direct(&conv, only, &posted.unreached)
                .await
                .map_err(at_start);
        }
        let members = self.all_members(&conv.id).await.map_err(at_start)?;
        let users: Vec<UserId> = members.iter().map(|m| m.user_id.clone()).collect();
        let now = self.now();
        let conns = self.live_connections(&users, now).await.map_err(at_start)?;
        // What the send path posted already (direct delivery) is not posted again; what
        // lies between its mark and this run, first (see `Chat::gap_before`).
        let gap = self
            .gap_before(&conv, posted.seq, messages)
            .await
            .map_err(at_start)?;
        let unposted: Vec<&MessageRecord> = gap
            .iter()
            .chain(messages.iter().copied().filter(|m| m.seq > posted.seq))
            .collect();
        let frames: Vec<Bytes> = unposted
            .iter()
            .map(|m| Bytes::from(ServerFrame::MessageNew(message_view(m)).to_json()))
            .collect();
        let posts: Vec<(&ConnectionRecord, Vec<Bytes>)> = conns
            .iter()
            .map(|c| {
                let own = Some(c.connection_id.as_str());
                let frames = unposted
                    .iter()
                    .zip(&frames)
                    .filter(|(m, _)| m.origin_connection.as_deref() != own)
                    .map(|(_, f)| f.clone())
                    .collect::<Vec<_>>();
                (c, frames)
            })
            .filter(|(_, frames)| !frames.is_empty())
            .collect();
        let batches: Vec<(&str, &[Bytes])> = posts
            .iter()
            .map(|(c, frames)| (c.connection_id.as_str(), frames.as_slice()))
            .collect();
        let failed = self.gateway.post_batches(&batches).await;
        telemetry::frames_posted(batches.iter().map(|(_, f)| f.len()).sum());
        let posted_at = self.now();
        for m in &unposted {
            telemetry::fanned_out(telemetry::PATH_FEED, posted_at - m.timestamp);
        }
        for (i, e) in failed {
            self.post_failed(posts[i].0, e).await;
        }
        if let Some(last) = unposted.last() {
            self.mark_fanned_out(&conv, last.seq).await;
        }

        for (i, m) in messages.iter().enumerate() {
            self.after_delete(&conv, m, now).await.map_err(|e| (i, e))?;
        }
        let offline = push_recipients(&members, &conns, messages, now);
        if offline.is_empty() {
            return Ok(());
        }
        let devices = self
            .store
            .devices_of(&offline)
            .await
            .map_err(|e| at_start(e.into()))?;
        for (i, message) in messages.iter().enumerate() {
            if !message.entry.is_message() {
                continue;
            }
            let phones: Vec<&DeviceRecord> = devices
                .iter()
                .filter(|d| d.user_id != message.sender_id)
                .collect();
            self.push_message(&conv, message, &phones, now)
                .await
                .map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// The fan-out of an entry the send path posted (direct delivery): a delete's
    /// consequences, and the push owed to the members it did not reach.
    async fn after_direct(
        &self,
        conv: &ConversationRecord,
        entry: &MessageRecord,
        unreached: &[UserId],
    ) -> ChatResult<()> {
        let now = self.now();
        self.after_delete(conv, entry, now).await?;
        if !entry.entry.is_message() || unreached.is_empty() {
            return Ok(());
        }
        let devices = self.store.devices_of(unreached).await?;
        let phones: Vec<&DeviceRecord> = devices
            .iter()
            .filter(|d| d.user_id != entry.sender_id)
            .collect();
        self.push_message(conv, entry, &phones, now).await
    }

    /// A delete's consequences: the deleted message's attachments erased, and its push
    /// replaced. Nothing for other entries.
    async fn after_delete(
        &self,
        conv: &ConversationRecord,
        entry: &MessageRecord,
        now: Millis,
    ) -> ChatResult<()> {
        if let Entry::Delete { target_seq } = entry.entry {
            self.erase_attachments(&conv.id, target_seq).await?;
            self.unpush(conv, entry, target_seq, now).await?;
        }
        Ok(())
    }

    /// Pushes one message to the phones of its offline recipients, once: a replayed
    /// message whose pushes went out pushes nothing.
    async fn push_message(
        &self,
        conv: &ConversationRecord,
        message: &MessageRecord,
        devices: &[&DeviceRecord],
        now: Millis,
    ) -> ChatResult<()> {
        // Pushes are recorded as sent only after they went out: a crash in between repeats
        // them on the replay rather than losing them.
        if devices.is_empty()
            || self
                .store
                .pushes_sent(&conv.id, message.seq)
                .await?
                .is_some()
        {
            return Ok(());
        }
        let body = domain::message_push_body(message.entry.content());
        let notification = |badge| PushNotification {
            title: domain::push_title(conv, &message.sender_id),
            body: body.clone(),
            conversation_id: conv.id.clone(),
            seq: message.seq,
            message_id: message.message_id.clone(),
            badge,
            timestamp: now,
        };
        let pushed = self.push_each(devices, notification).await?;
        self.store
            .record_pushes_sent(&conv.id, message.seq, now, &pushed)
            .await?;
        Ok(())
    }

    /// After a delete: the devices that were pushed the deleted message get a push with
    /// the same collapse key (its messageId) saying it was deleted, which replaces the
    /// notification showing its text. Once, like every push.
    async fn unpush(
        &self,
        conv: &ConversationRecord,
        delete: &MessageRecord,
        target: Seq,
        now: Millis,
    ) -> ChatResult<()> {
        if self
            .store
            .pushes_sent(&conv.id, delete.seq)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let pushed = self
            .store
            .pushes_sent(&conv.id, target)
            .await?
            .unwrap_or_default();
        let original = if pushed.is_empty() {
            None
        } else {
            let one = MessageQuery {
                after: Some(target - 1),
                before: Some(target + 1),
                limit: 1,
                newest: false,
                min_timestamp: i64::MIN,
            };
            let (found, _) = self
                .store
                .messages(&conv.id, &delete.sender_id, one)
                .await?;
            found.into_iter().next()
        };
        let mut replaced = Vec::new();
        if let Some(original) = original {
            let mut users: Vec<UserId> = pushed.iter().map(|d| d.user_id.clone()).collect();
            users.dedup();
            let devices = self.store.devices_of(&users).await?;
            let phones: Vec<&DeviceRecord> = devices
                .iter()
                .filter(|d| {
                    pushed
                        .iter()
                        .any(|p| p.user_id == d.user_id && p.device_id == d.device_id)
                })
                .collect();
            let notification = |badge| PushNotification {
                title: domain::push_title(conv, &original.sender_id),
                body: domain::DELETED_PUSH_BODY.to_owned(),
                conversation_id: conv.id.clone(),
                seq: target,
                message_id: original.message_id.clone(),
                badge,
                timestamp: now,
            };
            replaced = self.push_each(&phones, notification).await?;
        }
        self.store
            .record_pushes_sent(&conv.id, delete.seq, now, &replaced)
            .await?;
        Ok(())
    }

    /// Sends `notification` (given each user's badge: their total unread count) to each
    /// device; a device whose endpoint is gone is removed. The devices pushed.
    async fn push_each(
        &self,
        devices: &[&DeviceRecord],
        notification: impl Fn(u64) -> PushNotification,
    ) -> ChatResult<Vec<PushedDevice>> {
        let mut pushed = Vec::new();
        let mut badges: HashMap<UserId, u64> = HashMap::new();
        for device in devices {
            let badge = match badges.get(&device.user_id) {
                Some(b) => *b,
                None => {
                    let b = self.store.total_unread(&device.user_id).await?;
                    badges.insert(device.user_id.clone(), b);
                    b
                }
            };
            match self.push.push(device, &notification(badge)).await {
                Ok(()) => {
                    telemetry::pushed("sent");
                    pushed.push(PushedDevice {
                        user_id: device.user_id.clone(),
                        device_id: device.device_id.clone(),
                    });
                }
                Err(PushError::EndpointGone) => {
                    telemetry::pushed("gone");
                    debug!(user.id = %device.user_id, device.id = %device.device_id, "push endpoint gone, removing device");
                    self.store
                        .delete_device(&device.user_id, &device.device_id)
                        .await?;
                }
                Err(e) => {
                    telemetry::pushed("failed");
                    warn!(error = %e, user.id = %device.user_id, "push failed");
                }
            }
        }
        pushed.sort();
        Ok(pushed)
    }
}

/// The members a run of entries owes a push: those with no live connection among
/// `conns`, who did not mute the conversation, and did not send every message of the
/// run. Nobody when the run holds no `message` entry (only messages are pushed).
pub(super) fn push_recipients(
    members: &[MemberRecord],
    conns: &[ConnectionRecord],
    entries: &[&MessageRecord],
    now: Millis,
) -> Vec<UserId> {
    let messages: Vec<&&MessageRecord> = entries.iter().filter(|m| m.entry.is_message()).collect();
    let online: HashSet<&UserId> = conns.iter().map(|c| &c.user_id).collect();
    members
        .iter()
        .filter(|m| !m.muted_at(now) && !online.contains(&m.user_id))
        .filter(|m| messages.iter().any(|msg| msg.sender_id != m.user_id))
        .map(|m| m.user_id.clone())
        .collect()
}
