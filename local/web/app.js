// The web chat app chat-local serves at /: a thin view over the client SDK (served at
// /app/sdk/, the SDK's compiled modules). All the state that matters (order, ticks,
// unread counts, the outbox) is the SDK's; this file only draws it and forwards clicks.

import { ChatClient, IndexedDbStorage } from "/app/sdk/index.js";

const $ = (selector) => document.querySelector(selector);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
};

let chat = null;
let current = null;
const urls = new Map(); // attachmentId -> Promise<download URL>

async function signIn(user) {
  const response = await fetch("/dev/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userId: user }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error?.message ?? `sign-in refused (${response.status})`);
  return body.token;
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const user = event.target.user.value.trim();
  try {
    await signIn(user);
  } catch (e) {
    $("[data-testid=login-error]").textContent = e.message;
    return;
  }
  start(user);
});

function start(user) {
  chat = new ChatClient({
    url: location.origin,
    userId: user,
    token: () => signIn(user),
    storage: new IndexedDbStorage(`chat-outbox-${user}`),
  });
  $("#login").hidden = true;
  $("#chat").hidden = false;
  $("[data-testid=me]").textContent = user;
  chat.on("status", (status) => ($("[data-testid=status]").textContent = status));
  chat.on("conversations", renderList);
  chat.on("messages", (id) => {
    if (id === current) renderMessages();
    renderList();
  });
  chat.on("typing", (id, users) => {
    if (id === current) $("#typing").textContent = users.length ? `${users.join(", ")} typing…` : "";
  });
  chat.on("presence", () => renderPresence());
  // The app's lifecycle: a hidden tab closes its socket; coming back, or the network
  // coming back, reconnects at once and syncs.
  document.addEventListener("visibilitychange", () => (document.hidden ? chat.background() : chat.foreground()));
  window.addEventListener("online", () => chat.networkChanged(true));
  window.addEventListener("offline", () => chat.networkChanged(false));
  void chat.start();
}

function otherMember(conversation) {
  return (conversation.members ?? []).map((m) => m.userId).find((u) => u !== chat.userId);
}

function titleOf(conversation) {
  return conversation.type === "direct" ? otherMember(conversation) ?? "direct" : conversation.name ?? "group";
}

function preview(message) {
  if (!message) return "";
  if (message.deleted) return "message deleted";
  const content = message.content;
  if (content?.type === "text") return content.text;
  if (content?.type === "attachment") return content.text || "Photo";
  return "";
}

function renderList() {
  const list = $("#conversations");
  list.replaceChildren(
    ...chat.listConversations().map((c) => {
      const item = el(
        "li",
        { className: c.conversationId === current ? "active" : "", onclick: () => open(c.conversationId) },
        el("span", { className: "name", textContent: titleOf(c) }),
        el("span", { className: "last", textContent: preview(c.lastMessage) }),
      );
      item.dataset.testid = "conversation";
      item.dataset.title = titleOf(c);
      if (c.unreadCount > 0) {
        const badge = el("span", { className: "unread", textContent: String(c.unreadCount) });
        badge.dataset.testid = "unread";
        item.append(badge);
      }
      return item;
    }),
  );
}

function open(id) {
  current = id;
  $("#composer").hidden = false;
  $("#typing").textContent = "";
  const conversation = chat.conversation(id);
  $("#title").textContent = conversation ? titleOf(conversation) : "";
  const other = conversation?.type === "direct" ? otherMember(conversation) : undefined;
  if (other) void chat.fetchPresence([other]).catch(() => {});
  renderPresence();
  renderMessages();
  renderList();
}

function renderPresence() {
  const conversation = current && chat.conversation(current);
  const other = conversation?.type === "direct" ? otherMember(conversation) : undefined;
  const presence = other && chat.presence(other);
  $("#presence").textContent = presence ? presence.status : "";
}

const TICKS = { pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "⚠" };

function renderMessages() {
  const box = $("#messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const messages = chat.messages(current);
  box.replaceChildren(...messages.map(renderMessage));
  if (atBottom) box.scrollTop = box.scrollHeight;
  // An open conversation in a visible tab is read.
  if (!document.hidden && chat.conversation(current)?.unreadCount > 0) chat.markRead(current);
}

function renderMessage(m) {
  const mine = m.senderId === chat.userId;
  const item = el("li");
  item.dataset.testid = "message";
  if (m.kind === "system") {
    item.className = "system";
    const entry = m.entry ?? {};
    item.textContent = `${entry.actorId ?? "the server"}: ${entry.event ?? "changed the conversation"} ${(entry.userIds ?? []).join(", ")}`;
    return item;
  }
  item.className = [mine ? "mine" : "", m.deleted ? "deleted" : ""].join(" ");
  if (m.kind !== "message") {
    item.textContent = "unsupported message";
    return item;
  }
  const content = m.content;
  const text = el("div", { className: "text" });
  text.dataset.testid = "message-text";
  if (m.deleted) text.textContent = "message deleted";
  else if (content?.type === "attachment") {
    if (content.attachment?.mimeType?.startsWith("image/")) item.append(image(content.attachment.attachmentId));
    text.textContent = content.text ?? "";
  } else text.textContent = content?.text ?? "unsupported message";
  item.append(text);
  if (m.reactions.length) {
    item.append(el("div", { className: "reactions" }, ...m.reactions.map((r) => el("span", { textContent: `${r.emoji} ${r.count}` }))));
  }
  const meta = el("div", { className: "meta" });
  if (!mine && m.senderId) meta.append(el("span", { textContent: m.senderId }));
  if (m.editedAt) meta.append(el("span", { textContent: "edited" }));
  meta.append(el("span", { textContent: new Date(m.timestamp).toLocaleTimeString() }));
  if (mine) {
    const tick = el("span", { className: `tick ${m.status}`, textContent: TICKS[m.status] ?? "", title: m.error?.code ?? m.status });
    tick.dataset.testid = "tick";
    tick.dataset.status = m.status;
    meta.append(tick);
  }
  item.append(meta);
  if (m.seq !== null && !m.deleted) item.append(actions(m, mine));
  if (m.status === "failed") {
    item.append(el("button", { textContent: "retry", onclick: () => chat.retry(m.clientMessageId) }));
    item.append(el("button", { textContent: "discard", onclick: () => chat.discard(m.clientMessageId) }));
  }
  return item;
}

function actions(m, mine) {
  const box = el("div", { className: "actions" });
  const liked = m.reactions.some((r) => r.emoji === "👍" && r.mine);
  box.append(el("button", { textContent: liked ? "un👍" : "👍", onclick: () => chat.react(current, m.seq, "👍", liked) }));
  if (mine && m.content?.type === "text") {
    box.append(
      el("button", {
        textContent: "edit",
        onclick: () => {
          const text = prompt("Edit message", m.content.text);
          if (text) void chat.edit(current, m.seq, text);
        },
      }),
    );
  }
  if (mine) box.append(el("button", { textContent: "delete", onclick: () => chat.delete(current, m.seq) }));
  return box;
}

function image(attachmentId) {
  const img = el("img", { alt: "image" });
  img.dataset.testid = "image";
  if (!urls.has(attachmentId)) urls.set(attachmentId, chat.attachmentUrl(attachmentId));
  urls.get(attachmentId).then((url) => (img.src = url), () => (img.alt = "image unavailable"));
  return img;
}

$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = event.target.text;
  const text = input.value.trim();
  if (!text || !current) return;
  input.value = "";
  chat.setTyping(current, false);
  void chat.sendText(current, text);
});

$("[data-testid=composer-text]").addEventListener("input", (event) => {
  if (current) chat.setTyping(current, event.target.value.length > 0);
});

$("[data-testid=attach]").addEventListener("change", async (event) => {
  const file = event.target.files?.[0];
  event.target.value = "";
  if (!file || !current) return;
  const conversation = current;
  try {
    const attachmentId = await chat.uploadAttachment(conversation, file, file.type || "application/octet-stream", file.name);
    await chat.sendAttachment(conversation, { attachmentId });
  } catch (e) {
    alert(`upload failed: ${e.message}`);
  }
});

$("#new-direct").addEventListener("submit", async (event) => {
  event.preventDefault();
  const user = event.target.user.value.trim();
  event.target.user.value = "";
  try {
    const conversation = await chat.createDirect(user);
    open(conversation.conversationId);
  } catch (e) {
    alert(e.message);
  }
});

$("#new-group").addEventListener("submit", async (event) => {
  event.preventDefault();
  const members = event.target.members.value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    const conversation = await chat.createGroup(event.target.name.value.trim(), members);
    event.target.reset();
    open(conversation.conversationId);
  } catch (e) {
    alert(e.message);
  }
});
