//! WebSocket routes: `$connect`, `$disconnect`, and one function per client action
//! (`send`, `read`, `delivered`, `typing`, `heartbeat`). [`frame`] parses a frame and
//! dispatches it; it is what every message route calls.

use crate::auth::{Verified, bearer};
use crate::error::ChatError;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::ids::{ConversationId, DeviceId, Millis, Seq, UserId};
use crate::protocol::{
    Action, AppendRequest, ClientFrame, HEARTBEAT_INTERVAL_MS, MAX_FRAME_BYTES, ServerFrame,
};
use crate::service::{Chat, PendingPresence};

/// A connection's liveness is written at most this often by a context that lives across
/// frames (the local server's session). Well inside `LIVENESS_MS`, so a connection that
/// frames at least once a heartbeat interval never looks stale.
pub const TOUCH_EVERY_MS: Millis = 15_000;

/// Who is on the other end of a connection.
#[derive(Debug)]
pub struct ConnectionContext {
    pub connection_id: String,
    pub user_id: UserId,
    /// When the connection's token stops being accepted: frames after it are refused.
    pub token_expires_at: Millis,
    /// When liveness was last written through this context.
    touched_at: AtomicI64,
}

impl ConnectionContext {
    /// A context that has not written liveness yet: its first frame does.
    pub fn new(connection_id: String, user_id: UserId, token_expires_at: Millis) -> Self {
        Self {
            connection_id,
            user_id,
            token_expires_at,
            touched_at: AtomicI64::new(Millis::MIN),
        }
    }

    /// A context whose connection's liveness was last written at `at`: a context made
    /// per frame (a Lambda invocation) starts from the recorded time, so frames within
    /// [`TOUCH_EVERY_MS`] of it write nothing, as on a server that keeps its contexts.
    pub fn touched(self, at: Millis) -> Self {
        self.touched_at.store(at, Ordering::Relaxed);
        self
    }

    /// Takes on the liveness write due at `now`, if one is (none was taken on in the
    /// last [`TOUCH_EVERY_MS`]): the time of the one before, to give back with
    /// `untouch` if the write fails. Two frames at once never both
    /// write.
    pub fn claim_touch(&self, now: Millis) -> Option<Millis> {
        let last = self.touched_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < TOUCH_EVERY_MS {
            return None;
        }
        self.touched_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
    }

    /// The write claimed at `claimed` failed: the next frame writes again.
    fn untouch(&self, claimed: Millis, before: Millis) {
        let _ =
            self.touched_at
                .compare_exchange(claimed, before, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Records that the client framed: writes the connection's liveness unless it was
/// written (or claimed through this context) in the last [`TOUCH_EVERY_MS`] (see
/// [`ConnectionContext::claim_touch`] and [`ConnectionContext::touched`]).
pub async fn touch(chat: &Chat, ctx: &ConnectionContext) {
    let now = chat.now();
    if let Some(before) = ctx.claim_touch(now) {
        write_touch(chat, ctx, now, before).await;
    }
}

/// Writes the liveness claimed with [`ConnectionContext::claim_touch`] at `now`.
pub async fn write_touch(chat: &Chat, ctx: &ConnectionContext, now: Millis, before: Millis) {
    if let Err(e) = chat.touch(&ctx.connection_id, &ctx.user_id).await {
        ctx.untouch(now, before);
        tracing::warn!(error = %e, "could not record connection liveness");
    }
}

/// What `$connect` gets: the upgrade request's credentials and device.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest<'a> {
    pub connection_id: &'a str,
    /// The `token` query parameter.
    pub token: Option<&'a str>,
    /// The `Authorization` header, for native clients.
    pub authorization: Option<&'a str>,
    /// The `deviceId` query parameter.
    pub device_id: Option<&'a str>,
}

/// Authenticates the upgrade and records the connection. `UNAUTHORIZED` means refuse
/// the handshake with 401; `INVALID_MESSAGE` (bad deviceId) with 400.
pub async fn connect(chat: &Chat, req: ConnectRequest<'_>) -> Result<Connected, ChatError> {
    let token = req.token.or_else(|| req.authorization.and_then(bearer));
    let verified = chat.authenticate_handshake(token).await?;
    let device = req.device_id.map(DeviceId::parse).transpose()?;
    let pending_presence = chat
        .connect(
            req.connection_id,
            &verified.user,
            device,
            verified.expires_at,
        )
        .await?;
    Ok(Connected {
        verified,
        pending_presence,
    })
}

/// A recorded connection: who, until when, and the presence change to settle (see
/// [`Chat::settle_presence`]).
#[derive(Debug)]
pub struct Connected {
    pub verified: Verified,
    pub pending_presence: Option<PendingPresence>,
}

/// `$disconnect`: forgets the connection (presence goes offline with the last one; the
/// change to settle, see [`Chat::settle_presence`]).
pub async fn disconnect(
    chat: &Chat,
    connection_id: &str,
) -> Result<Option<PendingPresence>, ChatError> {
    chat.disconnect(connection_id).await
}

/// Handles one client text frame and returns the frame that answers it, if any.
pub async fn frame(chat: &Chat, ctx: &ConnectionContext, text: &str) -> Option<ServerFrame> {
    if chat.now() >= ctx.token_expires_at {
        // The token expired since the connect: nothing more is done for this socket.
        chat.close_expired(&ctx.connection_id).await;
        let (request_id, client_message_id) = ClientFrame::answer_ids(text);
        return Some(ServerFrame::error(
            request_id,
            client_message_id,
            &ChatError::Unauthorized,
        ));
    }
    touch(chat, ctx).await;
    if text.len() > MAX_FRAME_BYTES {
        let (request_id, client_message_id) = ClientFrame::answer_ids(text);
        return Some(ServerFrame::error(
            request_id,
            client_message_id,
            &ChatError::PayloadTooLarge("frames are limited to 32 KiB"),
        ));
    }
    let parsed = match ClientFrame::parse(text) {
        Ok(f) => f,
        Err(e) => {
            return Some(ServerFrame::error(
                e.request_id,
                e.client_message_id,
                &e.error,
            ));
        }
    };
    let rid = parsed.request_id;
    match parsed.action {
        Action::Append(req) => Some(append(chat, ctx, rid, req).await),
        Action::Read {
            conversation_id,
            up_to_seq,
        } => receipt(chat, ctx, rid, &conversation_id, None, Some(up_to_seq)).await,
        Action::Delivered {
            conversation_id,
            up_to_seq,
        } => receipt(chat, ctx, rid, &conversation_id, Some(up_to_seq), None).await,
        Action::Typing {
            conversation_id,
            is_typing,
        } => typing(chat, ctx, rid, &conversation_id, is_typing).await,
        Action::Heartbeat => Some(heartbeat(chat, rid)),
    }
}

/// `send`, `edit`, `delete`, `react`: always answered, with `message.ack` or an `error`
/// carrying the clientMessageId.
pub async fn append(
    chat: &Chat,
    ctx: &ConnectionContext,
    request_id: Option<String>,
    req: AppendRequest,
) -> ServerFrame {
    let cmid = req.client_message_id.as_str().to_owned();
    match chat
        .append(&ctx.user_id, Some(&ctx.connection_id), req)
        .await
    {
        Ok(ack) => ServerFrame::Ack { request_id, ack },
        Err(e) => error_frame(request_id, Some(cmid), e),
    }
}

/// `read` and `delivered`.
pub async fn receipt(
    chat: &Chat,
    ctx: &ConnectionContext,
    request_id: Option<String>,
    conversation: &ConversationId,
    delivered: Option<Seq>,
    read: Option<Seq>,
) -> Option<ServerFrame> {
    let result = chat
        .receipts(
            &ctx.user_id,
            Some(&ctx.connection_id),
            conversation,
            delivered,
            read,
        )
        .await;
    answer(request_id, result.map(|_| ()))
}

/// `typing`.
pub async fn typing(
    chat: &Chat,
    ctx: &ConnectionContext,
    request_id: Option<String>,
    conversation: &ConversationId,
    is_typing: bool,
) -> Option<ServerFrame> {
    let result = chat
        .typing(
            &ctx.user_id,
            Some(&ctx.connection_id),
            conversation,
            is_typing,
        )
        .await;
    answer(request_id, result)
}

/// `heartbeat`: always answered.
pub fn heartbeat(chat: &Chat, request_id: Option<String>) -> ServerFrame {
    ServerFrame::HeartbeatAck {
        request_id,
        server_time: chat.now(),
        heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
    }
}

/// `ok` when the client asked for an answer, errors always.
fn answer(request_id: Option<String>, result: Result<(), ChatError>) -> Option<ServerFrame> {
    match result {
        Ok(()) => request_id.map(|r| ServerFrame::Ok {
            request_id: Some(r),
        }),
        Err(e) => Some(error_frame(request_id, None, e)),
    }
}

fn error_frame(request_id: Option<String>, cmid: Option<String>, e: ChatError) -> ServerFrame {
    if let ChatError::Store(inner) = &e {
        tracing::error!(error = %inner, source = ?std::error::Error::source(inner), "request failed");
    }
    ServerFrame::error(request_id, cmid, &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_liveness_write_is_claimed_per_interval_and_a_failed_one_is_given_back() {
        let ctx = ConnectionContext::new("c1".into(), UserId::parse("alice").unwrap(), Millis::MAX);
        let before = ctx.claim_touch(1_000).expect("the first frame writes");
        assert_eq!(ctx.claim_touch(1_000), None, "a frame beside it does not");
        assert_eq!(ctx.claim_touch(1_000 + TOUCH_EVERY_MS - 1), None);
        ctx.untouch(1_000, before);
        assert_eq!(
            ctx.claim_touch(2_000),
            Some(before),
            "after a failure, the next frame does"
        );
        assert_eq!(ctx.claim_touch(2_000 + TOUCH_EVERY_MS), Some(2_000));
    }

    #[test]
    fn a_context_made_per_frame_writes_no_liveness_soon_after_the_recorded_frame() {
        let alice = UserId::parse("alice").unwrap();
        let ctx = ConnectionContext::new("c1".into(), alice, Millis::MAX).touched(10_000);
        assert_eq!(ctx.claim_touch(10_000 + TOUCH_EVERY_MS - 1), None);
        assert_eq!(ctx.claim_touch(10_000 + TOUCH_EVERY_MS), Some(10_000));
    }
}
