//! The chat service: every operation of the protocol, over the ports. Handlers (WebSocket,
//! HTTP, fan-out) decode their input, call one method here and encode the result.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use tracing::{debug, warn};

use crate::auth::TokenVerifier;
use crate::config::Limits;
use crate::domain::{self, INLINE_MEMBERS_MAX, TYPING_MAX_PER_WINDOW, TYPING_WINDOW_MS};
use crate::error::{ChatError, ChatResult};
use crate::ids::{ConversationId, DeviceId, Millis, Seq, UserId};
use crate::ports::{
    AddMembersOutcome, AppendOutcome, Clock, ConnectionGateway, ConnectionRecord,
    ConversationCursor, ConversationKind, ConversationRecord, DeviceRecord, GatewayError,
    MemberRecord, MessageQuery, MessageRecord, NewConversation, NewMessage, Platform, PushError,
    PushNotification, PushSender, Store,
};
use crate::protocol::{
    Ack, ConversationView, LIVENESS_MS, MemberView, MessageView, Positions, PresenceStatus,
    SendRequest, ServerFrame, TYPING_EXPIRES_MS,
};

/// The service and its ports. Cheap to share behind an `Arc`.
pub struct Chat {
    pub store: Arc<dyn Store>,
    pub gateway: Arc<dyn ConnectionGateway>,
    pub push: Arc<dyn PushSender>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub tokens: TokenVerifier,
}

/// A request to create a conversation.
#[derive(Debug, Clone)]
pub struct CreateConversation {
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub members: Vec<UserId>,
}

/// A page of conversations.
#[derive(Debug)]
pub struct ConversationPage {
    pub conversations: Vec<ConversationView>,
    pub next_cursor: Option<String>,
}

/// A page of members.
#[derive(Debug)]
pub struct MemberPage {
    pub members: Vec<MemberView>,
    pub next_cursor: Option<String>,
}

/// Which history page to read.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery {
    pub before: Option<Seq>,
    pub after: Option<Seq>,
    pub limit: u32,
}

/// One conversation of a sync request.
#[derive(Debug, Clone)]
pub struct SyncCursor {
    pub conversation_id: ConversationId,
    pub after_seq: Seq,
}

/// One conversation of a sync answer.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncedConversation {
    pub conversation_id: ConversationId,
    pub messages: Vec<MessageView>,
    pub has_more: bool,
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub delivered_up_to: Seq,
    pub read_up_to: Seq,
    pub unread_count: u64,
}

/// A sync answer.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResult {
    pub conversations: Vec<SyncedConversation>,
    pub new_conversations: Vec<ConversationView>,
    pub removed_conversation_ids: Vec<ConversationId>,
    pub server_time: Millis,
}

/// One user's presence.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceView {
    pub user_id: UserId,
    pub status: PresenceStatus,
    pub last_seen: Option<Millis>,
}

/// What is needed to render a conversation for any of its members.
/// What the checks before a send found.
enum Checked {
    New(ConversationRecord),
    Retry(MessageRecord),
}

struct ConversationParts {
    first_seq: Seq,
    members: Option<Vec<MemberView>>,
}

/// A connection this young that answers "gone" is still being opened, not gone.
const CONNECT_GRACE_MS: Millis = 10_000;

/// The most conversations `newConversations` carries in a sync answer.
const SYNC_NEW_CONVERSATIONS_MAX: usize = 100;

impl Chat {
    /// Now, by the service's clock.
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Verifies a token and returns its user.
    pub fn authenticate(&self, token: Option<&str>) -> ChatResult<UserId> {
        let token = token.ok_or(ChatError::Unauthorized)?;
        self.tokens.verify(token, self.now()).map_err(|e| {
            debug!(reason = %e, "token refused");
            ChatError::Unauthorized
        })
    }

    // ---------------------------------------------------------------- connections

    /// Registers a new connection and tells contacts when the user came online. Beyond
    /// `max_connections_per_user`, the user's oldest other connections are closed.
    pub async fn connect(
        &self,
        connection_id: &str,
        user: &UserId,
        device_id: Option<DeviceId>,
    ) -> ChatResult<()> {
        let now = self.now();
        self.store
            .put_connection(&ConnectionRecord {
                connection_id: connection_id.to_owned(),
                user_id: user.clone(),
                device_id,
                connected_at: now,
                last_frame_at: now,
            })
            .await?;
        let mut others = self
            .store
            .connections_of(std::slice::from_ref(user))
            .await?;
        others.retain(|c| c.connection_id != connection_id);
        if others.iter().all(|c| now - c.last_frame_at >= LIVENESS_MS) {
            self.announce_presence(user, PresenceStatus::Online, now, now)
                .await?;
        }
        self.enforce_connection_cap(user, others).await;
        Ok(())
    }

    /// Closes the oldest of `others` (the user's connections but the new one) so that,
    /// with the new one, at most `max_connections_per_user` stay. A closed connection is
    /// forgotten at once, without a presence event: the user keeps the new one.
    async fn enforce_connection_cap(&self, user: &UserId, mut others: Vec<ConnectionRecord>) {
        let cap = self.limits.max_connections_per_user as usize;
        if cap == 0 || others.len() < cap {
            return;
        }
        others.sort_by(|a, b| {
            (a.connected_at, &a.connection_id).cmp(&(b.connected_at, &b.connection_id))
        });
        let excess = others.len() + 1 - cap;
        for old in &others[..excess] {
            let id = old.connection_id.as_str();
            match self.gateway.close(id).await {
                Ok(()) | Err(GatewayError::Gone) => {}
                Err(e) => {
                    // Forgetting a socket that stays open would leave it without frames.
                    warn!(error = %e, connection.id = id, "could not close a connection over the per-user cap");
                    continue;
                }
            }
            debug!(user.id = %user, connection.id = id, "closed the oldest connection: over the per-user cap");
            if let Err(e) = self.store.delete_connection(id).await {
                warn!(error = %e, connection.id = id, "could not forget a connection over the per-user cap");
            }
        }
    }

    /// Forgets a connection; when it was the user's last, records lastSeen and tells
    /// contacts the user went offline.
    pub async fn disconnect(&self, connection_id: &str) -> ChatResult<()> {
        let Some(gone) = self.store.delete_connection(connection_id).await? else {
            return Ok(());
        };
        let now = self.now();
        let user = gone.user_id;
        if self
            .live_connections(std::slice::from_ref(&user), now)
            .await?
            .is_empty()
        {
            self.store.set_last_seen(&user, now).await?;
            self.announce_presence(&user, PresenceStatus::Offline, now, now)
                .await?;
        }
        Ok(())
    }

    /// Records a client frame on a connection (liveness for presence and push).
    pub async fn touch(&self, connection_id: &str, user: &UserId) -> ChatResult<()> {
        Ok(self
            .store
            .touch_connection(connection_id, user, self.now())
            .await?)
    }

    async fn live_connections(
        &self,
        users: &[UserId],
        now: Millis,
    ) -> ChatResult<Vec<ConnectionRecord>> {
        let mut conns = self.store.connections_of(users).await?;
        conns.retain(|c| now - c.last_frame_at < LIVENESS_MS);
        Ok(conns)
    }

    async fn announce_presence(
        &self,
        user: &UserId,
        status: PresenceStatus,
        last_seen: Millis,
        at: Millis,
    ) -> ChatResult<()> {
        let contacts = self
            .store
            .contacts(user, u64::from(self.limits.event_fanout_max_members))
            .await?;
        if contacts.is_empty() {
            return Ok(());
        }
        let conns = self.live_connections(&contacts, at).await?;
        let frame = ServerFrame::Presence {
            user_id: user.clone(),
            status,
            last_seen: Some(last_seen),
            at,
        };
        self.post_all(&conns, &frame, None).await;
        Ok(())
    }

    /// Posts one frame to many connections, skipping `except`; gone ones are forgotten.
    async fn post_all(
        &self,
        conns: &[ConnectionRecord],
        frame: &ServerFrame,
        except: Option<&str>,
    ) {
        let bytes = Bytes::from(frame.to_json());
        let targets: Vec<&ConnectionRecord> = conns
            .iter()
            .filter(|c| Some(c.connection_id.as_str()) != except)
            .collect();
        let ids: Vec<&str> = targets.iter().map(|c| c.connection_id.as_str()).collect();
        for (i, e) in self.gateway.post_many(&ids, &bytes).await {
            self.post_failed(targets[i], e).await;
        }
    }

    /// Posts one frame; a gone connection is deleted, other failures are logged (the
    /// client recovers by sync).
    pub async fn post(&self, connection: &ConnectionRecord, frame: Bytes) {
        if let Err(e) = self
            .gateway
            .post(connection.connection_id.as_str(), frame)
            .await
        {
            self.post_failed(connection, e).await;
        }
    }

    async fn post_failed(&self, connection: &ConnectionRecord, e: GatewayError) {
        let connection_id = connection.connection_id.as_str();
        match e {
            // A connection still in its `$connect` cannot be posted to yet (API Gateway
            // answers 410): it is not gone, so it is kept.
            GatewayError::Gone if self.now() - connection.connected_at < CONNECT_GRACE_MS => {
                debug!(
                    connection.id = connection_id,
                    "connection not open yet, frame skipped"
                );
            }
            GatewayError::Gone => {
                debug!(
                    connection.id = connection_id,
                    "connection gone, forgetting it"
                );
                // Boxed: forgetting a connection may announce presence, which posts again.
                if let Err(e) = Box::pin(self.disconnect(connection_id)).await {
                    warn!(error = %e, connection.id = connection_id, "could not forget gone connection");
                }
            }
            e => warn!(error = %e, connection.id = connection_id, "post failed"),
        }
    }

    // ---------------------------------------------------------------- conversations

    async fn member_of(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> ChatResult<(ConversationRecord, MemberRecord)> {
        self.store
            .membership(conversation, user)
            .await?
            .ok_or_else(ChatError::no_conversation)
    }

    async fn first_seq(&self, conv: &ConversationRecord) -> ChatResult<Seq> {
        let cutoff = self.limits.retention_cutoff(self.now());
        if cutoff == i64::MIN || conv.last_seq == 0 {
            return Ok(1);
        }
        Ok(self
            .store
            .first_retained_seq(&conv.id, cutoff)
            .await?
            .unwrap_or(conv.last_seq + 1))
    }

    async fn parts(&self, conv: &ConversationRecord) -> ChatResult<ConversationParts> {
        let members = if conv.member_count <= INLINE_MEMBERS_MAX {
            let all = self
                .store
                .members(&conv.id, None, INLINE_MEMBERS_MAX as u32)
                .await?;
            Some(all.iter().map(member_view).collect())
        } else {
            None
        };
        Ok(ConversationParts {
            first_seq: self.first_seq(conv).await?,
            members,
        })
    }

    fn render(
        conv: &ConversationRecord,
        parts: &ConversationParts,
        me: &MemberRecord,
    ) -> ConversationView {
        ConversationView {
            conversation_id: conv.id.clone(),
            kind: conv.kind.as_str(),
            name: conv.name.clone(),
            created_at: conv.created_at,
            first_seq: parts.first_seq,
            last_seq: conv.last_seq,
            last_message_at: conv.last_message_at,
            member_count: conv.member_count,
            members: parts.members.clone(),
            muted: me.muted,
            unread_count: conv.last_seq.saturating_sub(me.read_up_to),
        }
    }

    async fn view(
        &self,
        conv: &ConversationRecord,
        me: &MemberRecord,
    ) -> ChatResult<ConversationView> {
        Ok(Self::render(conv, &self.parts(conv).await?, me))
    }

    /// Sends `conversation.new` or `.updated` to the live connections of `users`, each
    /// rendered for its member.
    async fn announce_conversation(
        &self,
        conv: &ConversationRecord,
        users: &[UserId],
        new: bool,
    ) -> ChatResult<()> {
        if users.is_empty() {
            return Ok(());
        }
        let conns = self.live_connections(users, self.now()).await?;
        if conns.is_empty() {
            return Ok(());
        }
        let parts = self.parts(conv).await?;
        let wanted: HashSet<&UserId> = conns.iter().map(|c| &c.user_id).collect();
        let mut frames: HashMap<UserId, Bytes> = HashMap::new();
        let mut after: Option<UserId> = None;
        loop {
            let page = self.store.members(&conv.id, after.as_ref(), 1000).await?;
            for m in &page {
                if wanted.contains(&m.user_id) {
                    let conversation = Self::render(conv, &parts, m);
                    let frame = if new {
                        ServerFrame::ConversationNew { conversation }
                    } else {
                        ServerFrame::ConversationUpdated { conversation }
                    };
                    frames.insert(m.user_id.clone(), Bytes::from(frame.to_json()));
                }
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(last.user_id.clone()),
                _ => break,
            }
        }
        let posts = conns
            .iter()
            .filter_map(|c| frames.get(&c.user_id).map(|f| self.post(c, f.clone())));
        join_all(posts).await;
        Ok(())
    }

    /// Creates a direct or group conversation; `true` when it is new.
    pub async fn create_conversation(
        &self,
        caller: &UserId,
        req: CreateConversation,
    ) -> ChatResult<(ConversationView, bool)> {
        let now = self.now();
        let (conv, created) = match req.kind {
            ConversationKind::Direct => {
                let [other] = req.members.as_slice() else {
                    return Err(ChatError::Invalid(
                        "a direct conversation has exactly one other member".into(),
                    ));
                };
                if other == caller {
                    return Err(ChatError::Invalid(
                        "a direct conversation needs another user".into(),
                    ));
                }
                let new = NewConversation {
                    id: domain::new_conversation_id(),
                    kind: ConversationKind::Direct,
                    name: None,
                    now,
                    members: vec![caller.clone(), other.clone()],
                };
                self.store.create_direct(&new).await?
            }
            ConversationKind::Group => {
                let name =
                    domain::group_name(req.name.as_deref().ok_or_else(|| {
                        ChatError::Invalid("name is required for a group".into())
                    })?)?;
                let mut members = vec![caller.clone()];
                let mut seen: HashSet<&UserId> = HashSet::from([caller]);
                for m in &req.members {
                    if seen.insert(m) {
                        members.push(m.clone());
                    }
                }
                if members.len() as u64 > u64::from(self.limits.max_group_members) {
                    return Err(ChatError::Invalid(format!(
                        "a group holds at most {} members",
                        self.limits.max_group_members
                    )));
                }
                let new = NewConversation {
                    id: domain::new_conversation_id(),
                    kind: ConversationKind::Group,
                    name: Some(name),
                    now,
                    members,
                };
                (self.store.create_group(&new).await?, true)
            }
        };
        let (conv, me) = self.member_of(&conv.id, caller).await?;
        if created {
            let users = self.member_ids(&conv.id).await?;
            self.announce_conversation(&conv, &users, true).await?;
        }
        Ok((self.view(&conv, &me).await?, created))
    }

    async fn all_members(&self, conversation: &ConversationId) -> ChatResult<Vec<MemberRecord>> {
        let mut all = Vec::new();
        loop {
            let page = self
                .store
                .members(
                    conversation,
                    all.last().map(|m: &MemberRecord| &m.user_id),
                    1000,
                )
                .await?;
            let done = page.len() < 1000;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    async fn member_ids(&self, conversation: &ConversationId) -> ChatResult<Vec<UserId>> {
        Ok(self
            .all_members(conversation)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect())
    }

    /// One conversation as the caller sees it.
    pub async fn get_conversation(
        &self,
        caller: &UserId,
        id: &ConversationId,
    ) -> ChatResult<ConversationView> {
        let (conv, me) = self.member_of(id, caller).await?;
        self.view(&conv, &me).await
    }

    /// The caller's conversations, most recent first.
    pub async fn list_conversations(
        &self,
        caller: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> ChatResult<ConversationPage> {
        let after = cursor.map(domain::decode_conversation_cursor).transpose()?;
        let mut rows = self
            .store
            .user_conversations(caller, after.as_ref(), limit + 1)
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = more.then(|| rows.last()).flatten().map(|(c, _)| {
            domain::encode_conversation_cursor(&ConversationCursor {
                last_message_at: c.last_message_at,
                conversation_id: c.id.clone(),
            })
        });
        let mut conversations = Vec::with_capacity(rows.len());
        for (conv, me) in &rows {
            conversations.push(self.view(conv, me).await?);
        }
        Ok(ConversationPage {
            conversations,
            next_cursor,
        })
    }

    /// A page of a conversation's members.
    pub async fn list_members(
        &self,
        caller: &UserId,
        id: &ConversationId,
        limit: u32,
        cursor: Option<&str>,
    ) -> ChatResult<MemberPage> {
        self.member_of(id, caller).await?;
        let after = cursor.map(domain::decode_member_cursor).transpose()?;
        let mut rows = self.store.members(id, after.as_ref(), limit + 1).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = more
            .then(|| rows.last())
            .flatten()
            .map(|m| domain::encode_member_cursor(&m.user_id));
        Ok(MemberPage {
            members: rows.iter().map(member_view).collect(),
            next_cursor,
        })
    }

    /// Adds users to a group (admins only).
    pub async fn add_members(
        &self,
        caller: &UserId,
        id: &ConversationId,
        users: &[UserId],
    ) -> ChatResult<ConversationView> {
        let (conv, me) = self.member_of(id, caller).await?;
        if conv.kind == ConversationKind::Direct {
            return Err(ChatError::Forbidden(
                "members of a direct conversation are fixed",
            ));
        }
        if me.role != crate::ports::Role::Admin {
            return Err(ChatError::Forbidden("only admins add members"));
        }
        let outcome = self
            .store
            .add_members(
                id,
                users,
                self.now(),
                u64::from(self.limits.max_group_members),
            )
            .await?;
        let AddMembersOutcome::Added(added) = outcome else {
            return Err(ChatError::Conflict(format!(
                "a group holds at most {} members",
                self.limits.max_group_members
            )));
        };
        let (conv, me) = self.member_of(id, caller).await?;
        if !added.is_empty() {
            self.announce_conversation(&conv, &added, true).await?;
            let added: HashSet<&UserId> = added.iter().collect();
            let others: Vec<UserId> = self
                .member_ids(id)
                .await?
                .into_iter()
                .filter(|u| !added.contains(u))
                .collect();
            self.announce_conversation(&conv, &others, false).await?;
        }
        self.view(&conv, &me).await
    }

    /// Removes a member: admins remove anyone, members remove themselves.
    pub async fn remove_member(
        &self,
        caller: &UserId,
        id: &ConversationId,
        target: &UserId,
    ) -> ChatResult<()> {
        let (conv, me) = self.member_of(id, caller).await?;
        if conv.kind == ConversationKind::Direct {
            return Err(ChatError::Forbidden(
                "members of a direct conversation are fixed",
            ));
        }
        if target != caller && me.role != crate::ports::Role::Admin {
            return Err(ChatError::Forbidden("only admins remove other members"));
        }
        if self.store.remove_member(id, target).await?.is_none() {
            return Err(ChatError::NotFound("no such member"));
        }
        let removed_conns = self
            .live_connections(std::slice::from_ref(target), self.now())
            .await?;
        let frame = ServerFrame::ConversationRemoved {
            conversation_id: id.clone(),
        };
        self.post_all(&removed_conns, &frame, None).await;
        if let Some(conv) = self.store.conversation(id).await? {
            let rest = self.member_ids(id).await?;
            self.announce_conversation(&conv, &rest, false).await?;
        }
        Ok(())
    }

    /// Sets the caller's mute flag.
    pub async fn set_muted(
        &self,
        caller: &UserId,
        id: &ConversationId,
        muted: bool,
    ) -> ChatResult<ConversationView> {
        if !self.store.set_muted(id, caller, muted).await? {
            return Err(ChatError::no_conversation());
        }
        self.get_conversation(caller, id).await
    }

    // ---------------------------------------------------------------- messages

    /// The checks a new message must pass: membership, `replyTo`, the rate limit. With a
    /// rate limit on, a retry is recognised here, before counting (retries are not
    /// counted); without one, the store recognises it in the append.
    async fn check_send(&self, caller: &UserId, req: &SendRequest) -> ChatResult<Checked> {
        let (conv, _) = self.member_of(&req.conversation_id, caller).await?;
        if let Some(reply_to) = req.reply_to
            && reply_to > conv.last_seq
        {
            return Err(ChatError::Invalid(
                "replyTo must be a seq of this conversation".into(),
            ));
        }
        if self.limits.rate_limit_per_min > 0 {
            let cmid = req.client_message_id.as_str();
            if let Some(original) = self
                .store
                .find_by_client_id(&req.conversation_id, caller, cmid)
                .await?
            {
                return Ok(Checked::Retry(original));
            }
            let now = self.now();
            let window = domain::rate_window_start(now);
            let count = self.store.count_send(caller, window).await?;
            if let Some(err) =
                domain::rate_limit(count, self.limits.rate_limit_per_min, window, now)
            {
                return Err(err);
            }
        }
        Ok(Checked::New(conv))
    }

    /// Validates, sequences and persists a message, then acks it. Fan-out follows from
    /// the store's change feed, not from here.
    pub async fn send(
        &self,
        caller: &UserId,
        origin_connection: Option<&str>,
        req: SendRequest,
    ) -> ChatResult<Ack> {
        // A retry is answered with the original, even when it fails a check the original
        // passed (the sender left since). Looking it up only then keeps the common path
        // to one read: the store recognises a retry in the append itself.
        let cmid = req.client_message_id.as_str();
        let conv = match self.check_send(caller, &req).await {
            Ok(Checked::New(conv)) => conv,
            Ok(Checked::Retry(original)) => return Ok(ack(&original, true)),
            Err(e) => {
                return match self
                    .store
                    .find_by_client_id(&req.conversation_id, caller, cmid)
                    .await?
                {
                    Some(original) => Ok(ack(&original, true)),
                    None => Err(e),
                };
            }
        };
        let now = self.now();
        let expires_at = (self.limits.retention_days > 0)
            .then(|| now + i64::from(self.limits.retention_days) * 86_400_000);
        let outcome = self
            .store
            .append_message(&NewMessage {
                conversation_id: conv.id.clone(),
                message_id: domain::new_message_id(),
                sender_id: caller.clone(),
                client_message_id: cmid.to_owned(),
                content: req.content,
                reply_to: req.reply_to,
                now,
                origin_connection: origin_connection.map(str::to_owned),
                expires_at,
                hint: Some((conv.last_seq, conv.last_message_at)),
            })
            .await?;
        match outcome {
            AppendOutcome::Stored(m) => {
                debug!(conversation.id = %m.conversation_id, seq = m.seq, "message stored");
                Ok(ack(&m, false))
            }
            AppendOutcome::Duplicate(m) => Ok(ack(&m, true)),
            AppendOutcome::NotMember => Err(ChatError::no_conversation()),
        }
    }

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
        let members = self.all_members(&conv.id).await.map_err(at_start)?;
        let users: Vec<UserId> = members.iter().map(|m| m.user_id.clone()).collect();
        let now = self.now();
        let conns = self.live_connections(&users, now).await.map_err(at_start)?;
        let frames: Vec<Bytes> = messages
            .iter()
            .map(|m| Bytes::from(ServerFrame::MessageNew(message_view(m)).to_json()))
            .collect();
        let posts: Vec<(&ConnectionRecord, Vec<Bytes>)> = conns
            .iter()
            .map(|c| {
                let own = Some(c.connection_id.as_str());
                let frames = messages
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
        for (i, e) in self.gateway.post_batches(&batches).await {
            self.post_failed(posts[i].0, e).await;
        }

        let online: HashSet<&UserId> = conns.iter().map(|c| &c.user_id).collect();
        // A sender is never pushed their own message.
        let offline: Vec<UserId> = members
            .iter()
            .filter(|m| !m.muted && !online.contains(&m.user_id))
            .filter(|m| messages.iter().any(|msg| msg.sender_id != m.user_id))
            .map(|m| m.user_id.clone())
            .collect();
        if offline.is_empty() {
            return Ok(());
        }
        let devices = self
            .store
            .devices_of(&offline)
            .await
            .map_err(|e| at_start(e.into()))?;
        for (i, message) in messages.iter().enumerate() {
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
        if devices.is_empty() || self.store.pushes_sent(&conv.id, message.seq).await? {
            return Ok(());
        }
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
            let notification = PushNotification {
                title: domain::push_title(conv, &message.sender_id),
                body: domain::push_body(&message.content.text),
                conversation_id: conv.id.clone(),
                seq: message.seq,
                message_id: message.message_id.clone(),
                badge,
                timestamp: now,
            };
            match self.push.push(device, &notification).await {
                Ok(()) => {}
                Err(PushError::EndpointGone) => {
                    debug!(user.id = %device.user_id, device.id = %device.device_id, "push endpoint gone, removing device");
                    self.store
                        .delete_device(&device.user_id, &device.device_id)
                        .await?;
                }
                Err(e) => warn!(error = %e, user.id = %device.user_id, "push failed"),
            }
        }
        self.store
            .record_pushes_sent(&conv.id, message.seq, now)
            .await?;
        Ok(())
    }

    /// A page of history, ascending.
    pub async fn history(
        &self,
        caller: &UserId,
        id: &ConversationId,
        q: HistoryQuery,
    ) -> ChatResult<(Vec<MessageView>, bool)> {
        self.member_of(id, caller).await?;
        let (messages, has_more) = self
            .store
            .messages(
                id,
                MessageQuery {
                    after: q.after,
                    before: q.before,
                    limit: q.limit,
                    newest: q.after.is_none(),
                    min_timestamp: self.limits.retention_cutoff(self.now()),
                },
            )
            .await?;
        Ok((messages.iter().map(message_view).collect(), has_more))
    }

    /// Moves the caller's receipt positions and tells the others.
    pub async fn receipts(
        &self,
        caller: &UserId,
        origin_connection: Option<&str>,
        id: &ConversationId,
        delivered: Option<Seq>,
        read: Option<Seq>,
    ) -> ChatResult<Positions> {
        let update = self
            .store
            .update_receipts(id, caller, delivered, read)
            .await?
            .ok_or_else(ChatError::no_conversation)?;
        if update.changed {
            let frame = ServerFrame::Receipt {
                conversation_id: id.clone(),
                user_id: caller.clone(),
                delivered_up_to: update.positions.delivered_up_to,
                read_up_to: update.positions.read_up_to,
                timestamp: self.now(),
            };
            let targets = self
                .event_audience(&update.conversation, caller, true)
                .await?;
            self.post_all(&targets, &frame, origin_connection).await;
        }
        Ok(update.positions)
    }

    /// Live connections that get an ephemeral event (receipt, typing) of `caller` in a
    /// conversation: the other members' in small conversations, plus (when
    /// `include_own`) the caller's own.
    async fn event_audience(
        &self,
        conv: &ConversationRecord,
        caller: &UserId,
        include_own: bool,
    ) -> ChatResult<Vec<ConnectionRecord>> {
        let mut users: Vec<UserId> = Vec::new();
        if conv.member_count <= u64::from(self.limits.event_fanout_max_members) {
            users.extend(
                self.member_ids(&conv.id)
                    .await?
                    .into_iter()
                    .filter(|u| u != caller),
            );
        }
        if include_own {
            users.push(caller.clone());
        }
        self.live_connections(&users, self.now()).await
    }

    /// Relays a typing state (never stored; `true` is throttled per user and conversation).
    pub async fn typing(
        &self,
        caller: &UserId,
        origin_connection: Option<&str>,
        id: &ConversationId,
        is_typing: bool,
    ) -> ChatResult<()> {
        let allowed = if is_typing {
            self.store
                .typing_permit(
                    id,
                    caller,
                    self.now(),
                    TYPING_WINDOW_MS,
                    TYPING_MAX_PER_WINDOW,
                )
                .await?
        } else {
            self.store.membership(id, caller).await?.map(|_| true)
        };
        match allowed {
            None => return Err(ChatError::no_conversation()),
            Some(false) => return Ok(()),
            Some(true) => {}
        }
        let conv = self
            .store
            .conversation(id)
            .await?
            .ok_or_else(ChatError::no_conversation)?;
        let small = conv.member_count <= u64::from(self.limits.event_fanout_max_members);
        let targets = self.event_audience(&conv, caller, !small).await?;
        let frame = ServerFrame::Typing {
            conversation_id: id.clone(),
            user_id: caller.clone(),
            is_typing,
            expires_in_ms: TYPING_EXPIRES_MS,
        };
        self.post_all(&targets, &frame, origin_connection).await;
        Ok(())
    }

    /// Everything the caller missed (see docs/protocol.md, "Reconnect").
    pub async fn sync(
        &self,
        caller: &UserId,
        cursors: &[SyncCursor],
        limit: u32,
    ) -> ChatResult<SyncResult> {
        let now = self.now();
        let cutoff = self.limits.retention_cutoff(now);
        let mut conversations = Vec::new();
        let mut removed = Vec::new();
        let mut named: HashSet<&ConversationId> = HashSet::new();
        for cursor in cursors {
            if !named.insert(&cursor.conversation_id) {
                continue;
            }
            let Some((conv, me)) = self
                .store
                .membership(&cursor.conversation_id, caller)
                .await?
            else {
                removed.push(cursor.conversation_id.clone());
                continue;
            };
            let (messages, has_more) = self
                .store
                .messages(
                    &conv.id,
                    MessageQuery {
                        after: Some(cursor.after_seq),
                        before: None,
                        limit,
                        newest: false,
                        min_timestamp: cutoff,
                    },
                )
                .await?;
            conversations.push(SyncedConversation {
                conversation_id: conv.id.clone(),
                messages: messages.iter().map(message_view).collect(),
                has_more,
                first_seq: self.first_seq(&conv).await?,
                last_seq: conv.last_seq,
                delivered_up_to: me.delivered_up_to,
                read_up_to: me.read_up_to,
                unread_count: conv.last_seq.saturating_sub(me.read_up_to),
            });
        }
        let wanted = SYNC_NEW_CONVERSATIONS_MAX + named.len();
        let mine = self
            .store
            .user_conversations(caller, None, wanted as u32)
            .await?;
        let mut new_conversations = Vec::new();
        for (conv, me) in mine.iter().filter(|(c, _)| !named.contains(&c.id)) {
            if new_conversations.len() == SYNC_NEW_CONVERSATIONS_MAX {
                break;
            }
            new_conversations.push(self.view(conv, me).await?);
        }
        Ok(SyncResult {
            conversations,
            new_conversations,
            removed_conversation_ids: removed,
            server_time: now,
        })
    }

    // ---------------------------------------------------------------- devices, presence

    /// Registers (or updates) a push device of the caller.
    pub async fn register_device(
        &self,
        caller: &UserId,
        device_id: DeviceId,
        platform: Platform,
        token: String,
    ) -> ChatResult<DeviceRecord> {
        let mut device = DeviceRecord {
            user_id: caller.clone(),
            device_id,
            platform,
            token,
            endpoint: None,
            updated_at: self.now(),
        };
        device.endpoint = self.push.register(&device).await.map_err(|e| {
            warn!(error = %e, "push registration failed");
            ChatError::Unavailable("the push service is unavailable; retry later")
        })?;
        self.store.put_device(&device).await?;
        Ok(device)
    }

    /// Removes a push device of the caller.
    pub async fn delete_device(&self, caller: &UserId, device_id: &DeviceId) -> ChatResult<()> {
        if self.store.delete_device(caller, device_id).await? {
            Ok(())
        } else {
            Err(ChatError::NotFound("no such device"))
        }
    }

    /// Presence of the asked users who share a conversation with the caller.
    pub async fn presence(
        &self,
        caller: &UserId,
        users: &[UserId],
    ) -> ChatResult<Vec<PresenceView>> {
        let visible = self.store.users_sharing_conversation(caller, users).await?;
        let now = self.now();
        let conns = self.live_connections(&visible, now).await?;
        let last_seen: HashMap<UserId, Millis> =
            self.store.last_seen(&visible).await?.into_iter().collect();
        let mut out: Vec<PresenceView> = Vec::new();
        for user in users {
            if !visible.contains(user) || out.iter().any(|p| &p.user_id == user) {
                continue;
            }
            let live = conns
                .iter()
                .filter(|c| &c.user_id == user)
                .map(|c| c.last_frame_at)
                .max();
            out.push(match live {
                Some(at) => PresenceView {
                    user_id: user.clone(),
                    status: PresenceStatus::Online,
                    last_seen: Some(at),
                },
                None => PresenceView {
                    user_id: user.clone(),
                    status: PresenceStatus::Offline,
                    last_seen: last_seen.get(user).copied(),
                },
            });
        }
        Ok(out)
    }
}

fn ack(m: &MessageRecord, duplicate: bool) -> Ack {
    Ack {
        conversation_id: m.conversation_id.clone(),
        client_message_id: m.client_message_id.clone(),
        message_id: m.message_id.clone(),
        seq: m.seq,
        timestamp: m.timestamp,
        duplicate,
    }
}

/// A stored message as clients see it.
pub fn message_view(m: &MessageRecord) -> MessageView {
    MessageView {
        conversation_id: m.conversation_id.clone(),
        message_id: m.message_id.clone(),
        seq: m.seq,
        sender_id: m.sender_id.clone(),
        client_message_id: m.client_message_id.clone(),
        content: m.content.clone(),
        reply_to: m.reply_to,
        timestamp: m.timestamp,
    }
}

fn member_view(m: &MemberRecord) -> MemberView {
    MemberView {
        user_id: m.user_id.clone(),
        role: m.role.as_str(),
        delivered_up_to: m.delivered_up_to,
        read_up_to: m.read_up_to,
    }
}
