//! What the core's integration tests share.

#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chat_shared::Chat;
use chat_shared::auth::TokenVerifier;
use chat_shared::config::Limits;
use chat_shared::ids::{ConversationId, UserId};
use chat_shared::ports::{Clock, CloseReason, ConnectionGateway, ConversationKind, GatewayError};
use chat_shared::service::{CreateConversation, Ports};
use chat_sqlite::{Durability, SqliteStore};

/// The gateway of a process with no socket open: every connection is gone.
pub struct NoSockets;

#[async_trait]
impl ConnectionGateway for NoSockets {
    async fn post(&self, _: &str, _: Bytes) -> Result<(), GatewayError> {
        Err(GatewayError::Gone)
    }
    async fn close(&self, _: &str, _: CloseReason) -> Result<(), GatewayError> {
        Err(GatewayError::Gone)
    }
}

/// The service over a fresh SQLite file (kept alive by the returned directory), with no
/// socket open.
pub fn chat(clock: Arc<dyn Clock>, limits: Limits) -> (Chat, SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("chat.db"), Durability::Process).unwrap();
    let chat = Chat::new(
        Ports {
            store: Arc::new(store.clone()),
            gateway: Arc::new(NoSockets),
            push: Arc::new(store.clone()),
            clock,
            attachments: None,
            direct: None,
        },
        limits,
        TokenVerifier::new("s", None, None),
    );
    (chat, store, dir)
}

/// A user id.
pub fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// `a` opens the direct conversation with `b`; its id.
pub async fn direct(chat: &Chat, a: &UserId, b: &UserId) -> ConversationId {
    let (conv, _) = chat
        .create_conversation(
            a,
            CreateConversation {
                kind: ConversationKind::Direct,
                name: None,
                members: vec![b.clone()],
            },
        )
        .await
        .unwrap();
    conv.conversation_id
}
