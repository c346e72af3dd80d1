// The chat client: owns the connection and the local state so an app never loses,
// doubles or reorders a message. What it does, in the protocol's words:
// - connects with a token from the app (asked again after a 401 or a close for an
//   expired token), reconnects with jittered exponential backoff (capped at 30 s),
//   heartbeats, and closes the socket when the app goes to the background;
// - after every open (and on `foreground()`), syncs: the only recovery mechanism, and
//   complete; while connected, a gap waits a second to fill, then syncs;
// - de-duplicates by (conversationId, seq) and hands entries to the app in seq order;
// - keeps the app's sends in an outbox on its storage until the server acks them,
//   retries them with the same clientMessageId (the server acks a retry with the
//   original), one in flight per conversation so they keep their order;
// - shows own messages optimistically with ticks (pending, sent, delivered, read, failed);
// - keeps conversations (unread counts, members), typing and presence.
import { ConversationState } from "./conversation.js";
import { Emitter } from "./events.js";
import { RETRYABLE, } from "./protocol.js";
import { ApiError } from "./options.js";
import { entryOf, frameOf, optimisticMessage } from "./outbox.js";
import { MemoryStorage } from "./storage.js";
const OPEN = 1;
const TYPING_RESEND_MS = 3000;
const RECEIPT_DELAY_MS = 250;
export class ChatClient extends Emitter {
    opts;
    storage;
    conversations = new Map();
    outbox = new Map();
    /** Acked messages whose entries are not in place yet (a gap before them is filling). */
    placed = new Map();
    inFlight = new Map();
    retryAt = new Map();
    gapTimers = new Map();
    receiptTimers = new Map();
    typingSent = new Map();
    typingOf = new Map();
    presenceOf = new Map();
    wantRead = new Map();
    server = new Map();
    receiptsInFlight = new Map();
    socket = null;
    token = null;
    tokenRefused = false;
    state = "idle";
    attempts = 0;
    reconnectTimer = null;
    heartbeatTimer = null;
    heartbeatMs = 60_000;
    order = 0;
    syncing = null;
    syncAgain = false;
    started = null;
    constructor(options) {
        super();
        const url = options.url.replace(/\/+$/, "");
        this.opts = {
            random: Math.random,
            backoff: {},
            gapWaitMs: 1000,
            ackTimeoutMs: 10_000,
            historyOnJoin: 50,
            syncLimit: 200,
            requestTimeoutMs: 15_000,
            storage: new MemoryStorage(),
            WebSocket: globalThis.WebSocket,
            fetch: globalThis.fetch.bind(globalThis),
            ...options,
            url,
            wsUrl: options.wsUrl ?? `${url.replace(/^http/, "ws")}/ws`,
        };
        if (!this.opts.WebSocket)
            throw new Error("no WebSocket: pass options.WebSocket (Node: the ws package)");
        this.storage = this.opts.storage;
    }
    // ------------------------------------------------------------------ the app's API
    get status() {
        return this.state;
    }
    get userId() {
        return this.opts.userId;
    }
    /** Loads the outbox and connects. */
    start() {
        this.started ??= (async () => {
            for (const item of await this.storage.load()) {
                this.outbox.set(item.clientMessageId, item);
                this.order = Math.max(this.order, item.order);
            }
            this.connect();
        })();
        return this.started;
    }
    /** Closes the socket and stops reconnecting; the outbox stays in its storage. */
    stop() {
        this.setStatus("stopped");
        this.teardown();
    }
    /** The app came to the foreground: connect (or, if connected, sync). */
    foreground() {
        if (this.state === "background" || this.state === "waiting") {
            this.attempts = 0;
            this.clearReconnect();
            this.connect();
        }
        else if (this.state === "online" || this.state === "syncing") {
            this.resync();
        }
    }
    /** The device's network went away (`false`: close the socket, which may not notice for
     * a long time, and retry with backoff) or came back (`true`: reconnect now). Browsers:
     * the window's `offline` and `online` events; React Native: NetInfo. */
    networkChanged(online) {
        if (online)
            this.foreground();
        else if (this.socket)
            this.dropSocket();
    }
    /** The app went to the background: close the socket (pushes take over). */
    background() {
        if (this.state === "stopped" || this.state === "signedOut")
            return;
        this.setStatus("background");
        this.teardown();
    }
    /** Conversations, most recent first. */
    listConversations() {
        return [...this.conversations.values()]
            .map((c) => c.info)
            .sort((a, b) => b.lastMessageAt - a.lastMessageAt || a.conversationId.localeCompare(b.conversationId));
    }
    conversation(id) {
        return this.conversations.get(id)?.info;
    }
    /** A conversation's messages in order: those the server placed, then own pending ones. */
    messages(conversationId) {
        const held = this.conversations.get(conversationId)?.messages() ?? [];
        const inPlace = new Set(held.map((m) => m.clientMessageId).filter((id) => id !== null));
        const sent = [...this.placed.values()]
            .filter((p) => p.item.conversationId === conversationId && !inPlace.has(p.item.clientMessageId))
            .sort((a, b) => a.seq - b.seq)
            .map((p) => ({ ...optimisticMessage(p.item, this.opts.userId), seq: p.seq, status: "sent" }));
        const pending = [...this.outbox.values()]
            .filter((i) => i.conversationId === conversationId && i.action.kind === "message")
            .filter((i) => !inPlace.has(i.clientMessageId) && !this.placed.has(i.clientMessageId))
            .sort((a, b) => a.order - b.order)
            .map((i) => optimisticMessage(i, this.opts.userId));
        return [...held, ...sent, ...pending];
    }
    /** The highest seq of a conversation held with none missing below it. */
    heldUpTo(conversationId) {
        return this.conversations.get(conversationId)?.upTo ?? 0;
    }
    /** Own sends not yet acknowledged (pending or failed), oldest first. */
    pendingItems() {
        return [...this.outbox.values()].sort((a, b) => a.order - b.order);
    }
    presence(userId) {
        return this.presenceOf.get(userId);
    }
    typingIn(conversationId) {
        return [...(this.typingOf.get(conversationId)?.keys() ?? [])];
    }
    /** Sends a text message; it is in the outbox (and shown as pending) when this returns. */
    sendText(conversationId, text, replyTo) {
        const action = { kind: "message", content: { type: "text", text } };
        if (replyTo !== undefined)
            action.replyTo = replyTo;
        return this.enqueue(conversationId, action);
    }
    /** Sends an attachment message (upload the bytes first: `uploadAttachment`). */
    sendAttachment(conversationId, content) {
        return this.enqueue(conversationId, { kind: "message", content: { type: "attachment", ...content } });
    }
    edit(conversationId, targetSeq, text, attachment = false) {
        const content = attachment ? { type: "attachment", text } : { type: "text", text };
        return this.enqueue(conversationId, { kind: "edit", targetSeq, content });
    }
    delete(conversationId, targetSeq) {
        return this.enqueue(conversationId, { kind: "delete", targetSeq });
    }
    react(conversationId, targetSeq, emoji, removed = false) {
        return this.enqueue(conversationId, { kind: "reaction", targetSeq, emoji, removed });
    }
    /** Sends a failed item again (same clientMessageId). */
    async retry(clientMessageId) {
        const item = this.outbox.get(clientMessageId);
        if (!item || item.state !== "failed")
            return;
        item.state = "pending";
        delete item.error;
        await this.storage.put(item);
        this.changed(item.conversationId);
        this.pump();
    }
    /** Drops a failed or pending item that was not sent yet. */
    async discard(clientMessageId) {
        const item = this.outbox.get(clientMessageId);
        if (!item || this.inFlight.get(item.conversationId)?.item === item)
            return;
        this.outbox.delete(clientMessageId);
        await this.storage.remove(clientMessageId);
        this.changed(item.conversationId);
    }
    /** Marks everything held in a conversation read (sent now, or after reconnecting). */
    markRead(conversationId) {
        const c = this.conversations.get(conversationId);
        if (!c)
            return;
        const upTo = c.upTo;
        if (upTo > c.readUpTo || c.info.unreadCount > 0) {
            c.read(upTo);
            this.wantRead.set(conversationId, upTo);
            this.flushReceipts(conversationId);
            this.emit("conversations");
            this.emit("messages", conversationId);
        }
    }
    /** Says whether the user is typing; repeated `true`s are sent at most every 3 s. */
    setTyping(conversationId, isTyping) {
        const last = this.typingSent.get(conversationId) ?? 0;
        const now = Date.now();
        if (isTyping && now - last < TYPING_RESEND_MS)
            return;
        if (!isTyping && last === 0)
            return;
        this.typingSent.set(conversationId, isTyping ? now : 0);
        this.frame({ action: "typing", conversationId, isTyping });
    }
    /** Creates a direct conversation with `userId` (or finds the existing one). */
    async createDirect(userId) {
        const body = { type: "direct", members: [userId] };
        const c = await this.request("POST", "/v1/conversations", body);
        return this.learn(c);
    }
    async createGroup(name, members) {
        const body = { type: "group", name, members };
        const c = await this.request("POST", "/v1/conversations", body);
        return this.learn(c);
    }
    /** Older entries of a conversation (before its first held one), for scrolling up. */
    async history(conversationId, before, limit = 50) {
        const page = await this.request("GET", `/v1/conversations/${encodeURIComponent(conversationId)}/messages?before=${before}&limit=${limit}`);
        return page.messages;
    }
    /** Uploads bytes as an attachment of a conversation (presigned PUT); its id, to send. */
    async uploadAttachment(conversationId, bytes, mimeType, fileName) {
        const size = bytes instanceof Uint8Array ? bytes.byteLength : bytes.size;
        const body = {
            conversationId,
            mimeType,
            size,
            ...(fileName === undefined ? {} : { fileName }),
        };
        const ticket = await this.request("POST", "/v1/attachments", body);
        const { url, method, headers } = ticket.upload;
        const response = await this.opts.fetch(url, { method, headers, body: bytes });
        // 412: an earlier try of this upload got through (uploads are create-only).
        if (!response.ok && response.status !== 412) {
            throw new ApiError(response.status, "UPLOAD_FAILED", await response.text(), null);
        }
        return ticket.attachmentId;
    }
    /** A download URL of an attachment (valid a few minutes: cache bytes by id, not URLs). */
    async attachmentUrl(attachmentId) {
        const r = await this.request("GET", `/v1/attachments/${encodeURIComponent(attachmentId)}`);
        return r.url;
    }
    /** Asks the server for users' presence (the authoritative answer). */
    async fetchPresence(userIds) {
        if (userIds.length === 0)
            return;
        const r = await this.request("GET", `/v1/presence?userIds=${userIds.map(encodeURIComponent).join(",")}`);
        const at = Date.now();
        for (const p of r.presence)
            this.setPresence(p.userId, { status: p.status, lastSeen: p.lastSeen, at });
    }
    /** An HTTP API call with the token (asked again once after a 401). */
    async request(method, path, body) {
        for (let attempt = 0;; attempt++) {
            const token = await this.currentToken(attempt > 0);
            const controller = new AbortController();
            const timer = setTimeout(() => controller.abort(), this.opts.requestTimeoutMs);
            const init = { method, headers: { authorization: `Bearer ${token}` }, signal: controller.signal };
            if (body !== undefined) {
                init.body = JSON.stringify(body);
                init.headers = { ...init.headers, "content-type": "application/json" };
            }
            let response;
            let text;
            try {
                response = await this.opts.fetch(`${this.opts.url}${path}`, init);
                text = await response.text();
            }
            finally {
                clearTimeout(timer);
            }
            if (response.status === 401 && attempt === 0)
                continue;
            if (!response.ok) {
                let error = {};
                try {
                    error = JSON.parse(text).error ?? {};
                }
                catch {
                    // not JSON (a proxy's page)
                }
                throw new ApiError(response.status, error.code ?? "HTTP", error.message ?? text.slice(0, 200), error.retryAfterMs ?? null);
            }
            return (text ? JSON.parse(text) : undefined);
        }
    }
    // ------------------------------------------------------------------ connection
    setStatus(status) {
        if (this.state === status)
            return;
        this.state = status;
        this.emit("status", status);
    }
    async currentToken(refresh) {
        if (refresh || this.token === null) {
            // A token the server refused or let expire is asked for as a refresh.
            this.token = await this.opts.token(refresh || this.tokenRefused);
            this.tokenRefused = false;
        }
        return this.token;
    }
    /** The server refused the token or closed the socket for its expiry. */
    refuseToken() {
        this.token = null;
        this.tokenRefused = true;
    }
    connect() {
        if (this.state === "stopped" || this.state === "signedOut")
            return;
        this.setStatus("connecting");
        void (async () => {
            let token;
            try {
                token = await this.currentToken(false);
            }
            catch (e) {
                this.emit("warning", `token: ${String(e)}`);
                this.scheduleReconnect();
                return;
            }
            if (this.state !== "connecting")
                return;
            const params = new URLSearchParams({ v: "1", token });
            if (this.opts.deviceId)
                params.set("deviceId", this.opts.deviceId);
            let socket;
            try {
                socket = new this.opts.WebSocket(`${this.opts.wsUrl}?${params}`);
            }
            catch (e) {
                this.emit("warning", `socket: ${String(e)}`);
                this.scheduleReconnect();
                return;
            }
            this.socket = socket;
            let opened = false;
            socket.onopen = () => {
                if (this.socket !== socket)
                    return;
                opened = true;
                this.setStatus("syncing");
                this.heartbeatTimer = setInterval(() => this.frame({ action: "heartbeat" }), this.heartbeatMs);
                void this.sync().then(() => {
                    if (this.socket !== socket)
                        return;
                    this.attempts = 0;
                    this.setStatus("online");
                    for (const id of this.wantRead.keys())
                        this.flushReceipts(id);
                    for (const c of this.conversations.values())
                        this.scheduleDelivered(c);
                    this.pump();
                }, (e) => {
                    this.emit("warning", `sync after open failed: ${String(e)}`);
                    if (this.socket === socket)
                        this.dropSocket();
                });
            };
            socket.onmessage = (ev) => {
                if (this.socket !== socket)
                    return;
                this.onFrame(ev.data);
            };
            socket.onerror = () => {
                // onclose follows.
            };
            socket.onclose = (ev) => {
                if (this.socket !== socket)
                    return;
                this.onClosed(ev.code, opened);
            };
        })();
    }
    onClosed(code, opened) {
        this.socket = null;
        this.stopSocketTimers();
        if (this.state === "background" || this.state === "stopped")
            return;
        if (code === 4003) {
            // The session was revoked: the token will not do again.
            this.token = null;
            this.setStatus("signedOut");
            this.emit("signedOut");
            return;
        }
        if (code === 4001)
            this.refuseToken(); // expired: ask for a fresh one
        if (!opened) {
            // The handshake failed: a refused token looks like any failure in a browser, so
            // ask the HTTP API, which says 401 (and then gets a fresh token).
            void this.request("GET", "/v1/conversations?limit=1").catch(() => undefined);
        }
        this.scheduleReconnect();
    }
    scheduleReconnect() {
        if (this.state === "stopped" || this.state === "signedOut" || this.state === "background")
            return;
        this.setStatus("waiting");
        const initial = this.opts.backoff.initialMs ?? 500;
        const cap = this.opts.backoff.maxMs ?? 30_000;
        const ceiling = Math.min(cap, initial * 2 ** Math.min(this.attempts, 16));
        // "Full jitter": anywhere up to the ceiling, so clients dropped together spread out.
        const delay = Math.max(initial / 4, this.opts.random() * ceiling);
        this.attempts += 1;
        this.clearReconnect();
        this.reconnectTimer = setTimeout(() => {
            this.reconnectTimer = null;
            this.connect();
        }, delay);
    }
    clearReconnect() {
        if (this.reconnectTimer)
            clearTimeout(this.reconnectTimer);
        this.reconnectTimer = null;
    }
    /** Closes the current socket and reconnects after a backoff. */
    dropSocket() {
        const socket = this.socket;
        if (!socket)
            return;
        this.socket = null;
        this.stopSocketTimers();
        try {
            socket.close();
        }
        catch {
            // already closing
        }
        this.scheduleReconnect();
    }
    teardown() {
        this.clearReconnect();
        const socket = this.socket;
        this.socket = null;
        this.stopSocketTimers();
        socket?.close(1000, "");
        for (const t of this.gapTimers.values())
            clearTimeout(t);
        this.gapTimers.clear();
        for (const typing of this.typingOf.values())
            for (const t of typing.values())
                clearTimeout(t);
        this.typingOf.clear();
    }
    stopSocketTimers() {
        if (this.heartbeatTimer)
            clearInterval(this.heartbeatTimer);
        this.heartbeatTimer = null;
        for (const f of this.inFlight.values())
            clearTimeout(f.timer);
        this.inFlight.clear();
        for (const t of this.receiptTimers.values())
            clearTimeout(t);
        this.receiptTimers.clear();
        this.receiptsInFlight.clear();
    }
    /** Sends a frame if the socket is open; false if it is not (the caller recovers). */
    frame(frame) {
        const socket = this.socket;
        if (!socket || socket.readyState !== OPEN)
            return false;
        try {
            socket.send(JSON.stringify(frame));
            return true;
        }
        catch {
            return false;
        }
    }
    // ------------------------------------------------------------------ frames
    onFrame(data) {
        let frame;
        try {
            frame = JSON.parse(typeof data === "string" ? data : String(data));
        }
        catch {
            this.emit("warning", "a frame that is not JSON");
            return;
        }
        if (typeof frame !== "object" || frame === null)
            return;
        switch (frame.type) {
            case "message.new": {
                const { type: _type, ...entry } = frame;
                this.take(entry, true);
                break;
            }
            case "message.ack":
                this.onAck(frame);
                break;
            case "error":
                this.onError(frame);
                break;
            case "receipt": {
                const c = this.conversations.get(frame.conversationId);
                if (c) {
                    c.positions(frame.userId, frame.deliveredUpTo, frame.readUpTo);
                    if (frame.userId === this.opts.userId)
                        c.read(c.readUpTo);
                    this.emit("messages", c.id);
                    this.emit("conversations");
                }
                break;
            }
            case "typing":
                this.onTyping(frame.conversationId, frame.userId, frame.isTyping, frame.expiresInMs);
                break;
            case "presence":
                this.onPresence(frame);
                break;
            case "conversation.new":
            case "conversation.updated": {
                const known = this.conversations.get(frame.conversation.conversationId);
                this.learn(frame.conversation);
                if (!known)
                    this.resync();
                break;
            }
            case "conversation.removed":
                this.forget(frame.conversationId);
                break;
            case "heartbeat.ack":
                if (frame.heartbeatIntervalMs > 0 && frame.heartbeatIntervalMs !== this.heartbeatMs) {
                    this.heartbeatMs = frame.heartbeatIntervalMs;
                    if (this.heartbeatTimer) {
                        clearInterval(this.heartbeatTimer);
                        this.heartbeatTimer = setInterval(() => this.frame({ action: "heartbeat" }), this.heartbeatMs);
                    }
                }
                break;
            case "ok":
                this.onOk(frame.requestId);
                break;
            default:
                // frame types this client does not know
                break;
        }
    }
    /** Takes an entry from a frame, an ack or a sync; `live`: a gap waits, then syncs. */
    take(entry, live, stateSeq) {
        let c = this.conversations.get(entry.conversationId);
        if (!c) {
            // A conversation this client has not heard of (its conversation.new was lost):
            // learn it and let a sync fill what came before.
            c = this.track(placeholder(entry), Math.max(0, entry.seq - 1 - this.opts.historyOnJoin));
            void this.refreshConversation(entry.conversationId);
            this.resync();
        }
        const applied = c.receive(entry, stateSeq);
        this.resolveOwn(c, applied);
        for (const e of applied)
            this.emit("entry", e);
        if (applied.length > 0) {
            this.emit("messages", c.id);
            this.emit("conversations");
            this.scheduleDelivered(c);
        }
        if (live && c.hasGap && !this.gapTimers.has(c.id)) {
            this.gapTimers.set(c.id, setTimeout(() => {
                this.gapTimers.delete(c.id);
                if (c.hasGap)
                    this.resync();
            }, this.opts.gapWaitMs));
        }
    }
    /** Outbox items whose entries arrived (through sync after a lost ack, or an ack). */
    resolveOwn(c, applied) {
        for (const e of applied) {
            if (e.senderId !== this.opts.userId || !e.clientMessageId)
                continue;
            this.placed.delete(e.clientMessageId);
            const item = this.outbox.get(e.clientMessageId);
            if (item && item.conversationId === c.id)
                this.settle(item);
        }
    }
    /** The server answered the item: it is no longer in flight. */
    landed(item) {
        const flying = this.inFlight.get(item.conversationId);
        if (flying?.item === item) {
            clearTimeout(flying.timer);
            this.inFlight.delete(item.conversationId);
        }
    }
    /** The server has the item: out of the outbox (and its storage). */
    settle(item) {
        if (!this.outbox.delete(item.clientMessageId))
            return;
        this.landed(item);
        this.storage.remove(item.clientMessageId).catch((e) => this.emit("warning", `outbox storage: ${String(e)}`));
        this.changed(item.conversationId);
        this.pump();
    }
    /** Syncs in the background; a failure drops the socket, whose reconnect syncs. */
    resync() {
        this.sync().catch((e) => {
            this.emit("warning", `sync failed: ${String(e)}`);
            this.dropSocket();
        });
    }
    onAck(ack) {
        const item = this.outbox.get(ack.clientMessageId);
        // Unknown: settled already (its entry came by sync before the ack).
        if (!item)
            return;
        this.landed(item);
        // Shown as sent until its entry is in place (a gap before it may still be filling).
        if (item.action.kind === "message")
            this.placed.set(item.clientMessageId, { item, seq: ack.seq });
        const c = this.conversations.get(ack.conversationId);
        const entry = {
            conversationId: ack.conversationId,
            messageId: ack.messageId,
            seq: ack.seq,
            senderId: this.opts.userId,
            clientMessageId: ack.clientMessageId,
            timestamp: ack.timestamp,
            ...entryOf(item),
        };
        const attachment = item.action.kind === "message" && item.action.content.type === "attachment";
        if (ack.duplicate || attachment) {
            // A retry's ack (the original entry is the server's, whatever this retry said), or
            // an attachment (the server's content carries its details): read it back.
            this.resync();
        }
        else {
            this.take(entry, true);
        }
        if (!c?.holds(ack.seq))
            this.changed(ack.conversationId);
        this.settle(item);
    }
    onError(frame) {
        const item = frame.clientMessageId ? this.outbox.get(frame.clientMessageId) : undefined;
        if (frame.code === "UNAUTHORIZED") {
            // On AWS a frame after the token expired: reconnect with a fresh token.
            this.refuseToken();
            this.dropSocket();
            return;
        }
        if (!item) {
            this.emit("warning", `${frame.code}: ${frame.message}`);
            return;
        }
        this.landed(item);
        if (RETRYABLE.has(frame.code)) {
            const wait = frame.retryAfterMs ?? Math.min(30_000, 500 * 2 ** Math.min(10, this.attempts + 1));
            this.retryAt.set(item.conversationId, Date.now() + wait);
            setTimeout(() => this.pump(), wait);
            return;
        }
        item.state = "failed";
        item.error = { code: frame.code, message: frame.message };
        this.emit("failed", item);
        this.changed(item.conversationId);
        this.pump();
        this.storage.put(item).catch((e) => this.emit("warning", `outbox storage: ${String(e)}`));
    }
    onTyping(conversationId, userId, isTyping, expiresInMs) {
        if (userId === this.opts.userId)
            return;
        let typing = this.typingOf.get(conversationId);
        if (!typing)
            this.typingOf.set(conversationId, (typing = new Map()));
        const old = typing.get(userId);
        if (old)
            clearTimeout(old);
        typing.delete(userId);
        if (isTyping) {
            typing.set(userId, setTimeout(() => {
                typing.delete(userId);
                this.emit("typing", conversationId, [...typing.keys()]);
            }, expiresInMs));
        }
        this.emit("typing", conversationId, [...typing.keys()]);
    }
    onPresence(frame) {
        this.setPresence(frame.userId, { status: frame.status, lastSeen: frame.lastSeen, at: frame.at });
    }
    setPresence(userId, presence) {
        const old = this.presenceOf.get(userId);
        if (old && old.at > presence.at)
            return; // keep the newest
        this.presenceOf.set(userId, presence);
        this.emit("presence", userId, presence);
    }
    // ------------------------------------------------------------------ conversations
    track(info, base) {
        const c = new ConversationState(structuredClone(info), this.opts.userId, base);
        this.conversations.set(info.conversationId, c);
        return c;
    }
    /** Takes a conversation object: a new one starts the window `historyOnJoin` back. */
    learn(info) {
        const c = this.conversations.get(info.conversationId);
        if (c) {
            c.update(structuredClone(info));
        }
        else {
            this.track(info, Math.max(info.firstSeq - 1, info.lastSeq - this.opts.historyOnJoin, 0));
        }
        this.emit("conversations");
        this.emit("messages", info.conversationId);
        return this.conversations.get(info.conversationId).info;
    }
    forget(conversationId) {
        if (!this.conversations.delete(conversationId))
            return;
        this.emit("conversations");
    }
    async refreshConversation(conversationId) {
        try {
            this.learn(await this.request("GET", `/v1/conversations/${encodeURIComponent(conversationId)}`));
        }
        catch (e) {
            if (e instanceof ApiError && e.status === 404)
                this.forget(conversationId);
        }
    }
    /** Refreshes every conversation object (members' positions make ticks; details). */
    async refreshAll() {
        let cursor = null;
        do {
            const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
            const page = await this.request("GET", `/v1/conversations?limit=100${query}`);
            for (const info of page.conversations)
                this.learn(info);
            cursor = page.nextCursor;
        } while (cursor);
    }
    // ------------------------------------------------------------------ sync
    /** Syncs until caught up. Calls while one runs make it go round once more. */
    sync() {
        if (this.syncing) {
            this.syncAgain = true;
            return this.syncing;
        }
        this.syncing = (async () => {
            try {
                do {
                    this.syncAgain = false;
                    await this.syncOnce();
                } while (this.syncAgain);
                await this.refreshAll();
            }
            finally {
                this.syncing = null;
            }
        })();
        return this.syncing;
    }
    async syncOnce() {
        for (let round = 0; round < 10_000; round++) {
            const known = [...this.conversations.values()];
            const chunks = [];
            for (let i = 0; i < Math.max(known.length, 1); i += 100)
                chunks.push(known.slice(i, i + 100));
            let more = false;
            for (const chunk of chunks) {
                const body = {
                    conversations: chunk.map((c) => ({ conversationId: c.id, afterSeq: c.upTo })),
                    limit: this.opts.syncLimit,
                };
                const response = await this.request("POST", "/v1/sync", body);
                if (this.absorb(response, chunk))
                    more = true;
            }
            if (!more)
                return;
        }
    }
    /** Applies a sync response; true when there is more to fetch. */
    absorb(response, asked) {
        let more = false;
        for (const s of response.conversations) {
            const c = this.conversations.get(s.conversationId);
            if (!c)
                continue;
            const before = c.upTo;
            // Entries below firstSeq expired: stop waiting for them.
            const skipped = c.skipTo(s.firstSeq - 1);
            for (const e of skipped)
                this.emit("entry", e);
            this.resolveOwn(c, skipped);
            for (const entry of s.messages)
                this.take(entry, false, s.lastSeq);
            c.positions(this.opts.userId, s.deliveredUpTo, s.readUpTo);
            this.confirmed(c.id, s.deliveredUpTo, s.readUpTo);
            c.settleUnread(s.unreadCount, s.lastSeq);
            c.info.firstSeq = s.firstSeq;
            c.info.lastSeq = Math.max(c.info.lastSeq, s.lastSeq);
            if (s.hasMore && c.upTo > before)
                more = true;
            const gap = this.gapTimers.get(c.id);
            if (gap && !c.hasGap) {
                clearTimeout(gap);
                this.gapTimers.delete(c.id);
            }
        }
        for (const info of response.newConversations) {
            if (this.conversations.has(info.conversationId))
                continue;
            this.learn(info);
            more = true;
        }
        const askedIds = new Set(asked.map((c) => c.id));
        for (const id of response.removedConversationIds)
            if (askedIds.has(id))
                this.forget(id);
        this.emit("conversations");
        return more;
    }
    // ------------------------------------------------------------------ receipts
    /** Tells the server what this device holds, shortly after entries arrive. */
    scheduleDelivered(c) {
        if (c.upTo <= this.serverPositions(c.id).delivered || this.receiptTimers.has(c.id))
            return;
        this.receiptTimers.set(c.id, setTimeout(() => {
            this.receiptTimers.delete(c.id);
            this.flushReceipts(c.id);
        }, RECEIPT_DELAY_MS));
    }
    /** The positions the server has confirmed (its `ok`, a sync): a receipt is sent until
     * it is confirmed, so one lost with a socket is sent again after the reconnect. */
    serverPositions(conversationId) {
        let p = this.server.get(conversationId);
        if (!p)
            this.server.set(conversationId, (p = { delivered: 0, read: 0 }));
        return p;
    }
    confirmed(conversationId, delivered, read) {
        const p = this.serverPositions(conversationId);
        p.delivered = Math.max(p.delivered, delivered, read);
        p.read = Math.max(p.read, read);
        const want = this.wantRead.get(conversationId);
        if (want !== undefined && p.read >= want)
            this.wantRead.delete(conversationId);
    }
    flushReceipts(conversationId) {
        const c = this.conversations.get(conversationId);
        if (!c || this.state !== "online")
            return;
        const server = this.serverPositions(conversationId);
        const read = this.wantRead.get(conversationId);
        const send = (action, upToSeq) => {
            const requestId = `${action}:${conversationId}:${upToSeq}`.slice(0, 64);
            if (this.receiptsInFlight.has(requestId))
                return;
            if (this.frame({ action, requestId, conversationId, upToSeq })) {
                this.receiptsInFlight.set(requestId, { conversationId, action, upToSeq });
            }
        };
        if (read !== undefined && read > server.read)
            send("read", read);
        else if (c.upTo > server.delivered)
            send("delivered", c.upTo);
    }
    onOk(requestId) {
        const receipt = this.receiptsInFlight.get(requestId);
        if (!receipt)
            return;
        this.receiptsInFlight.delete(requestId);
        if (receipt.action === "read")
            this.confirmed(receipt.conversationId, receipt.upToSeq, receipt.upToSeq);
        else
            this.confirmed(receipt.conversationId, receipt.upToSeq, 0);
        // A read may have been asked for while this one flew; and read implies delivered.
        this.flushReceipts(receipt.conversationId);
    }
    // ------------------------------------------------------------------ outbox
    async enqueue(conversationId, action) {
        const item = {
            clientMessageId: this.newId(),
            conversationId,
            action,
            createdAt: Date.now(),
            order: ++this.order,
            state: "pending",
        };
        await this.storage.put(item);
        this.outbox.set(item.clientMessageId, item);
        this.changed(conversationId);
        this.pump();
        return item;
    }
    /** Sends the first pending item of each conversation that has none in flight. */
    pump() {
        if (this.state !== "online")
            return;
        const firsts = new Map();
        for (const item of this.pendingItems()) {
            if (item.state !== "pending" || firsts.has(item.conversationId))
                continue;
            firsts.set(item.conversationId, item);
        }
        for (const [conversationId, item] of firsts) {
            if (this.inFlight.has(conversationId))
                continue;
            const wait = (this.retryAt.get(conversationId) ?? 0) - Date.now();
            if (wait > 0)
                continue;
            this.retryAt.delete(conversationId);
            const socket = this.socket;
            if (!this.frame(frameOf(item)))
                return;
            this.inFlight.set(conversationId, {
                item,
                timer: setTimeout(() => {
                    // No answer: the socket is as good as dead.
                    if (this.inFlight.get(conversationId)?.item === item && this.socket === socket)
                        this.dropSocket();
                }, this.opts.ackTimeoutMs),
            });
        }
    }
    changed(conversationId) {
        this.emit("messages", conversationId);
    }
    /** A clientMessageId: 128 random bits (UUID v4 when crypto is there). */
    newId() {
        const c = globalThis.crypto;
        if (c?.randomUUID)
            return c.randomUUID();
        let id = "";
        for (let i = 0; i < 32; i++)
            id += Math.floor(this.opts.random() * 16).toString(16);
        return id;
    }
}
function placeholder(entry) {
    return {
        conversationId: entry.conversationId,
        type: "group",
        name: null,
        createdAt: entry.timestamp,
        firstSeq: 1,
        lastSeq: entry.seq,
        lastMessageAt: entry.timestamp,
        memberCount: 0,
        muted: false,
        unreadCount: 0,
    };
}
