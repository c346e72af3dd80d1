//! Conversations and their members: create, read, list, add, remove, mute, and the
//! `conversation.*` events.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures_util::future::join_all;

use crate::domain::{self, INLINE_MEMBERS_MAX};
use crate::error::{ChatError, ChatResult};
use crate::ids::{AttachmentId, ConversationId, Millis, Seq, UserId};
use crate::ports::{
    AddMembersOutcome, Change, ConversationCursor, ConversationKind, ConversationRecord,
    DetailsChange, DetailsOutcome, MUTED_FOREVER, MemberRecord, NewConversation, Role, RoleOutcome,
};
use crate::protocol::{ConversationView, MemberView, MessageView, ServerFrame};

use super::Chat;
use super::attachments::bad_avatar;
use super::budget::AnswerBudget;
use super::messages::last_message_view;

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

/// A member's mute, as `PUT .../settings` asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mute {
    /// `{"muted": false}`, or `{"mutedUntil": null}`.
    Off,
    /// `{"muted": true}`: until unmuted.
    Forever,
    /// `{"mutedUntil": ms}` (in the past: off).
    Until(Millis),
}

/// A page of members.
#[derive(Debug)]
pub struct MemberPage {
    pub members: Vec<MemberView>,
    pub next_cursor: Option<String>,
}

/// What is needed to render a conversation for any of its members.
struct ConversationParts {
    first_seq: Seq,
    last_message: Option<MessageView>,
    members: Option<Vec<MemberView>>,
    /// When the parts were read: mutes are as of then.
    now: Millis,
}

impl Chat {
    pub(crate) async fn member_of(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> ChatResult<(ConversationRecord, MemberRecord)> {
        self.store
            .membership(conversation, user)
            .await?
            .ok_or_else(ChatError::no_conversation)
    }

    pub(crate) async fn first_seq(&self, conv: &ConversationRecord) -> ChatResult<Seq> {
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
        let retained_since = self.limits.retention_cutoff(self.now());
        let last_message = self
            .store
            .last_message(&conv.id, retained_since)
            .await?
            .as_ref()
            .map(last_message_view);
        Ok(ConversationParts {
            first_seq: self.first_seq(conv).await?,
            last_message,
            members,
            now: self.now(),
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
            muted: me.muted_at(parts.now),
            muted_until: me.mute_ends(parts.now),
            last_message: parts.last_message.clone(),
            avatar: conv.avatar.clone(),
            unread_count: me.unread(conv),
        }
    }

    pub(crate) async fn view(
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

    pub(crate) async fn all_members(
        &self,
        conversation: &ConversationId,
    ) -> ChatResult<Vec<MemberRecord>> {
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

    pub(crate) async fn member_ids(
        &self,
        conversation: &ConversationId,
    ) -> ChatResult<Vec<UserId>> {
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
        let mut more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let mut budget = AnswerBudget::new();
        let mut conversations = Vec::with_capacity(rows.len());
        for (conv, me) in &rows {
            let view = self.view(conv, me).await?;
            if !budget.take(&view) {
                more = true;
                break;
            }
            conversations.push(view);
        }
        let last = conversations.len().checked_sub(1).and_then(|i| rows.get(i));
        // The list's order: the later of the last message and the caller's joining.
        let next_cursor = more.then_some(last).flatten().map(|(c, me)| {
            domain::encode_conversation_cursor(&ConversationCursor {
                last_message_at: c.last_message_at.max(me.joined_at),
                conversation_id: c.id.clone(),
            })
        });
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
                u64::from(self.limits.max_group_members),
                &self.change_by(caller),
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
        let by = self.change_by(caller);
        if self.store.remove_member(id, target, &by).await?.is_none() {
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

    /// Gives a member of a group a role (admins only); a group keeps at least one admin.
    pub async fn set_role(
        &self,
        caller: &UserId,
        id: &ConversationId,
        target: &UserId,
        role: Role,
    ) -> ChatResult<MemberView> {
        let (conv, me) = self.member_of(id, caller).await?;
        if conv.kind == ConversationKind::Direct {
            return Err(ChatError::Forbidden(
                "members of a direct conversation have no roles to change",
            ));
        }
        if me.role != Role::Admin {
            return Err(ChatError::Forbidden("only admins change roles"));
        }
        self.count_change(caller).await?;
        match self
            .store
            .set_role(id, target, role, &self.change_by(caller))
            .await?
        {
            RoleOutcome::NotMember => Err(ChatError::NotFound("no such member")),
            RoleOutcome::LastAdmin => Err(ChatError::Forbidden("a group keeps at least one admin")),
            RoleOutcome::Set(member, changed) => {
                if changed && let Some(conv) = self.store.conversation(id).await? {
                    let everyone = self.member_ids(id).await?;
                    self.announce_conversation(&conv, &everyone, false).await?;
                }
                Ok(member_view(&member))
            }
        }
    }

    /// Changes a group's details (admins only): its name and its avatar, an image
    /// attachment of the group the caller uploaded and nothing uses. The avatar replaced
    /// is deleted.
    pub async fn update_details(
        &self,
        caller: &UserId,
        id: &ConversationId,
        name: Option<String>,
        avatar: Option<Option<String>>,
    ) -> ChatResult<ConversationView> {
        let (conv, me) = self.member_of(id, caller).await?;
        if conv.kind == ConversationKind::Direct {
            return Err(ChatError::Forbidden(
                "a direct conversation has no details to change",
            ));
        }
        if me.role != Role::Admin {
            return Err(ChatError::Forbidden("only admins change a group's details"));
        }
        let name = name
            .map(|n| domain::group_name(&n))
            .transpose()?
            .filter(|n| conv.name.as_deref() != Some(n.as_str()));
        let avatar = match avatar {
            Some(Some(a)) => {
                let a = AttachmentId::parse(a).map_err(|_| bad_avatar())?;
                (conv.avatar.as_ref() != Some(&a)).then_some(Some(a))
            }
            Some(None) => conv.avatar.is_some().then_some(None),
            None => None,
        };
        if name.is_none() && avatar.is_none() {
            return self.get_conversation(caller, id).await;
        }
        // Counted first: a change refused by the rate limit must not tag an avatar's
        // bytes (S3) for a use that never comes.
        self.count_change(caller).await?;
        if let Some(Some(a)) = &avatar {
            self.check_avatar(caller, id, a).await?;
        }
        let by = self.change_by(caller);
        let change = DetailsChange { name, avatar };
        match self.store.set_details(id, &change, &by).await? {
            DetailsOutcome::Set {
                conversation,
                released,
            } => {
                if let Some(old) = released {
                    self.delete_attachments(&[old]).await;
                }
                let everyone = self.member_ids(id).await?;
                self.announce_conversation(&conversation, &everyone, false)
                    .await?;
            }
            DetailsOutcome::Refused => return Err(bad_avatar()),
            DetailsOutcome::NoConversation => return Err(ChatError::no_conversation()),
        }
        self.get_conversation(caller, id).await
    }

    /// A change of a conversation by `actor` now, whose `system` entry the store appends.
    pub(crate) fn change_by(&self, actor: &UserId) -> Change {
        let now = self.now();
        Change {
            actor: actor.clone(),
            now,
            expires_at: self.limits.expires_at(now),
        }
    }

    /// Sets the caller's mute: until unmuted, until a time, or off.
    pub async fn set_muted(
        &self,
        caller: &UserId,
        id: &ConversationId,
        mute: Mute,
    ) -> ChatResult<ConversationView> {
        let until = match mute {
            Mute::Off => 0,
            Mute::Forever => MUTED_FOREVER,
            Mute::Until(at) if at <= self.now() => 0,
            Mute::Until(at) => at,
        };
        if !self.store.set_muted(id, caller, until).await? {
            return Err(ChatError::no_conversation());
        }
        self.get_conversation(caller, id).await
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
