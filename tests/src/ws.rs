//! [`WsClient`]: a protocol client over one WebSocket connection.

use super::*;

/// Why a `try_` receive returned without a frame.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing matching arrived in time.
    Timeout,
    /// The connection is closed or broken.
    Closed(String),
}

/// A protocol client over one WebSocket connection.
///
/// Every frame read from the socket that a call did not ask for goes to a buffer that
/// later calls search first, so events can be asserted in any order. `presence` frames
/// arrive asynchronously: [`WsClient::recv`] never returns them (they stay buffered for
/// `recv_type("presence")`).
pub struct WsClient {
    label: String,
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    buffer: VecDeque<Value>,
    /// Frame types dropped on read, for load tests that would otherwise buffer thousands.
    ignored: Vec<String>,
    /// With a deployment that may deliver an entry twice, the `(conversationId, seq)` of
    /// each `message.new` read: a repeat is dropped, as a client drops it by seq.
    seen_entries: Option<std::collections::HashSet<(String, u64)>>,
    next_request: u64,
    /// Behind API Gateway (a deployment): its own error frames are allowed.
    deployed: bool,
    /// The frames sent that await the server's verdict (see [`schema::Verdicts`]).
    verdicts: schema::Verdicts,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("label", &self.label)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

fn frame_type(frame: &Value) -> &str {
    frame["type"].as_str().unwrap_or("")
}

impl WsClient {
    /// A client over an opened socket; `deployed`: a deployment behind API Gateway, which
    /// may deliver an entry twice (a repeat `message.new` is dropped, as a client drops
    /// it by seq) and answers some frames itself.
    pub(crate) fn new(stream: WebSocketStream<MaybeTlsStream<TcpStream>>, deployed: bool) -> Self {
        Self {
            label: "ws".to_owned(),
            stream,
            buffer: VecDeque::new(),
            ignored: Vec::new(),
            seen_entries: deployed.then(std::collections::HashSet::new),
            next_request: 0,
            deployed,
            verdicts: schema::Verdicts::default(),
        }
    }

    /// The `user/device` name used in failure messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Renames the client in failure messages.
    pub fn set_label(&mut self, label: impl Into<String>) {
        self.label = label.into();
    }

    /// Drops frames of `frame_type` as they are read instead of buffering them.
    pub fn ignore_type(&mut self, frame_type: &str) {
        self.ignored.push(frame_type.to_owned());
        self.buffer.retain(|f| self::frame_type(f) != frame_type);
    }

    /// A fresh `requestId`, unique on this connection.
    pub fn next_request_id(&mut self) -> String {
        self.next_request += 1;
        format!("req-{}", self.next_request)
    }

    /// Sends one text frame as is (for malformed input).
    pub async fn send_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if let Err(e) = self.try_send_text(text).await {
            panic!("[{}] cannot send a frame: {e}", self.label);
        }
    }

    /// Sends one text frame, reporting a broken connection instead of panicking.
    pub async fn try_send_text(&mut self, text: impl Into<String>) -> Result<(), String> {
        let text: String = text.into();
        if let Ok(frame) = serde_json::from_str::<Value>(&text) {
            self.verdicts.sent(&frame);
        }
        self.stream
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends one binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        if let Err(e) = self.stream.send(Message::binary(bytes)).await {
            panic!("[{}] cannot send a binary frame: {e}", self.label);
        }
    }

    /// Sends `value` serialized as one text frame.
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(value.to_string()).await;
    }

    /// Sends `value`, reporting a broken connection instead of panicking.
    pub async fn try_send_json(&mut self, value: &Value) -> Result<(), String> {
        self.try_send_text(value.to_string()).await
    }

    /// Reads the next JSON frame from the socket (not the buffer) before `deadline`.
    async fn read_frame(&mut self, deadline: Instant) -> Result<Value, RecvError> {
        loop {
            let next = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Err(RecvError::Timeout),
                Ok(next) => next,
            };
            let text = match next {
                None => return Err(RecvError::Closed("end of stream".to_owned())),
                Some(Err(e)) => return Err(RecvError::Closed(e.to_string())),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(RecvError::Closed(format!("close frame {frame:?}")));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    panic!("[{}] unexpected binary frame: {bytes:?}", self.label)
                }
                Some(Ok(_)) => continue, // ping/pong: tungstenite answers pings itself
            };
            let value: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("[{}] non-JSON frame ({e}): {text}", self.label));
            if let Err(e) = schema::check_server_frame(&value, self.deployed) {
                panic!("[{}] {e}", self.label);
            }
            if let Err(e) = self.verdicts.answered(&value) {
                panic!("[{}] {e}", self.label);
            }
            if self.ignored.iter().any(|t| t == frame_type(&value)) {
                continue;
            }
            if let Some(seen) = &mut self.seen_entries
                && frame_type(&value) == "message.new"
                && let (Some(conversation), Some(seq)) =
                    (value["conversationId"].as_str(), value["seq"].as_u64())
                && !seen.insert((conversation.to_owned(), seq))
            {
                continue;
            }
            return Ok(value);
        }
    }

    /// Reads (and drops) frames until the server's close frame; returns its code, or
    /// `None` when the stream ended without one or nothing came within `timeout`.
    pub async fn recv_close(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) | Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(Message::Text(text)))) => {
                    if let Ok(frame) = serde_json::from_str::<Value>(text.as_str())
                        && let Err(e) = schema::check_server_frame(&frame, self.deployed)
                    {
                        panic!("[{}] {e}", self.label);
                    }
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Sends a text frame whose payload is `bytes` as they are, valid UTF-8 or not.
    pub async fn send_raw_text(&mut self, bytes: Vec<u8>) {
        use tokio_tungstenite::tungstenite::protocol::frame::{
            Frame,
            coding::{Data, OpCode},
        };
        if let Ok(sent) = serde_json::from_slice::<Value>(&bytes) {
            self.verdicts.sent(&sent);
        }
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.stream
            .send(Message::Frame(frame))
            .await
            .unwrap_or_else(|e| panic!("[{}] send failed: {e}", self.label));
    }

    /// The first frame (buffer first, then socket) matching `pred` within `timeout`; the
    /// frames read meanwhile stay buffered.
    pub async fn try_recv_where(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, RecvError> {
        if let Some(i) = self.buffer.iter().position(&pred) {
            return Ok(self.buffer.remove(i).expect("index is in range"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let frame = self.read_frame(deadline).await?;
            if pred(&frame) {
                return Ok(frame);
            }
            self.buffer.push_back(frame);
        }
    }

    /// Like [`Self::try_recv_where`], failing the test with `what` on timeout or close.
    pub async fn recv_where_within(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        match self.try_recv_where(timeout, pred).await {
            Ok(frame) => frame,
            Err(RecvError::Timeout) => panic!(
                "[{}] timed out after {timeout:?} waiting for {what}; buffered frames: {:#?}",
                self.label, self.buffer
            ),
            Err(RecvError::Closed(why)) => panic!(
                "[{}] connection closed ({why}) while waiting for {what}; buffered frames: {:#?}",
                self.label, self.buffer
            ),
        }
    }

    /// The first frame matching `pred` within [`RECV_TIMEOUT`].
    pub async fn recv_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.recv_where_within(what, RECV_TIMEOUT, pred).await
    }

    /// The next frame that is not `presence`.
    pub async fn recv(&mut self) -> Value {
        self.recv_where("any non-presence frame", |f| frame_type(f) != "presence")
            .await
    }

    /// The first frame of type `frame_type` (others stay buffered).
    pub async fn recv_type(&mut self, frame_type: &str) -> Value {
        let what = format!("a `{frame_type}` frame");
        self.recv_where(&what, |f| self::frame_type(f) == frame_type)
            .await
    }

    /// The first frame answering `request_id`.
    pub async fn recv_response(&mut self, request_id: &str) -> Value {
        let what = format!("the answer to requestId {request_id:?}");
        self.recv_where(&what, |f| f["requestId"] == request_id)
            .await
    }

    /// Sends `action` (an object) with a fresh `requestId` unless it has one, and returns
    /// the frame answering it.
    pub async fn request(&mut self, mut action: Value) -> Value {
        let id = match action.get("requestId").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let id = self.next_request_id();
                action["requestId"] = json!(id);
                id
            }
        };
        self.send_json(&action).await;
        self.recv_response(&id).await
    }

    /// Removes and returns every buffered frame of `frame_type`, then everything of that
    /// type that arrives within `wait`.
    pub async fn drain_type(&mut self, frame_type: &str, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        while let Ok(frame) = self.read_frame(deadline).await {
            self.buffer.push_back(frame);
        }
        let (taken, kept): (VecDeque<Value>, VecDeque<Value>) = self
            .buffer
            .drain(..)
            .partition(|f| self::frame_type(f) == frame_type);
        self.buffer = kept;
        taken.into()
    }

    /// The buffered frames (for assertions and failure messages).
    pub fn buffered(&self) -> &VecDeque<Value> {
        &self.buffer
    }

    /// Asserts no frame matching `pred` is buffered or arrives within `wait`.
    pub async fn expect_none(&mut self, what: &str, wait: Duration, pred: impl Fn(&Value) -> bool) {
        if let Some(frame) = self.buffer.iter().find(|f| pred(f)) {
            panic!("[{}] expected no {what}, but got {frame}", self.label);
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.read_frame(deadline).await {
                Ok(frame) if pred(&frame) => {
                    panic!("[{}] expected no {what}, but got {frame}", self.label)
                }
                Ok(frame) => self.buffer.push_back(frame),
                Err(_) => return,
            }
        }
    }

    /// Asserts no frame of `frame_type` is buffered or arrives within `wait`.
    pub async fn expect_silence(&mut self, frame_type: &str, wait: Duration) {
        let what = format!("`{frame_type}` frame");
        self.expect_none(&what, wait, |f| self::frame_type(f) == frame_type)
            .await;
    }

    /// Asserts nothing but `presence` is buffered or arrives within `wait`.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        self.expect_none("frame", wait, |f| frame_type(f) != "presence")
            .await;
    }

    /// Sends a heartbeat with a `requestId` and asserts the `heartbeat.ack`: proves the
    /// connection is still open and usable.
    pub async fn heartbeat(&mut self) -> Value {
        let ack = self.request(json!({"action": "heartbeat"})).await;
        assert_eq!(
            ack["type"], "heartbeat.ack",
            "[{}] heartbeat answered {ack}",
            self.label
        );
        ack
    }

    /// Sends a text message and returns its `message.ack` (failing on any other answer).
    pub async fn send_message(
        &mut self,
        conversation_id: &str,
        client_message_id: &str,
        text: &str,
    ) -> Value {
        let ack = self
            .request(send_action(conversation_id, client_message_id, text))
            .await;
        assert_eq!(
            ack["type"], "message.ack",
            "[{}] send {client_message_id:?} answered {ack}",
            self.label
        );
        ack
    }

    /// A `read` or `delivered` action answered `ok`.
    pub async fn receipt(&mut self, action: &str, conversation_id: &str, up_to_seq: i64) -> Value {
        let answer = self
            .request(
                json!({"action": action, "conversationId": conversation_id, "upToSeq": up_to_seq}),
            )
            .await;
        assert_eq!(
            answer["type"], "ok",
            "[{}] {action} answered {answer}",
            self.label
        );
        answer
    }

    /// Closes the connection with a close handshake and waits for the server's close.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        let deadline = Instant::now() + RECV_TIMEOUT;
        while self.read_frame(deadline).await.is_ok() {}
    }
}

/// `{"action":"send", ...}` for a text message, without `requestId`.
pub fn send_action(conversation_id: &str, client_message_id: &str, text: &str) -> Value {
    json!({
        "action": "send",
        "conversationId": conversation_id,
        "clientMessageId": client_message_id,
        "content": {"type": "text", "text": text},
    })
}
