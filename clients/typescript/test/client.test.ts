// The SDK against a real chat-local: messages, ticks, the outbox across an app restart,
// rich entries folded, tokens refreshed, a revoked session.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { MemoryStorage, type ChatClient, type Entry } from "../src/index.js";
import { Proxy, Server, client, token, unique, until } from "./harness.js";

let server: Server;
const clients: ChatClient[] = [];

before(async () => {
  server = await Server.start();
});

after(async () => {
  for (const c of clients) c.stop();
  await server.stop();
});

function started(user: string, options: Parameters<typeof client>[2] = {}, url = server.url): ChatClient {
  const c = client(url, user, options);
  clients.push(c);
  void c.start();
  return c;
}

function texts(c: ChatClient, conversationId: string): string[] {
  return c
    .messages(conversationId)
    .filter((m) => m.kind === "message")
    .map((m) => (m.content && "text" in m.content ? String(m.content.text) : ""));
}

test("messages arrive once, in order, and the sender's ticks go sent, delivered, read", async () => {
  const [alice, bob] = [unique("alice"), unique("bob")];
  const a = started(alice);
  const b = started(bob);
  const seen: Entry[] = [];
  b.on("entry", (e) => seen.push(e));
  await until("both online", () => a.status === "online" && b.status === "online");

  const conversation = await a.createDirect(bob);
  const id = conversation.conversationId;
  for (const text of ["one", "two", "three"]) await a.sendText(id, text);
  assert.deepEqual(
    a.messages(id).map((m) => m.status).every((s) => s === "pending" || s === "sent" || s === "delivered"),
    true,
  );

  await until("bob has all three", () => texts(b, id).length === 3);
  assert.deepEqual(texts(b, id), ["one", "two", "three"]);
  assert.deepEqual(
    seen.filter((e) => e.conversationId === id).map((e) => e.seq),
    [1, 2, 3],
  );
  assert.equal(b.conversation(id)?.unreadCount, 3);

  // bob's device reports what it holds: alice sees two ticks, then read ones.
  await until("delivered ticks", () => a.messages(id).every((m) => m.status === "delivered"));
  b.markRead(id);
  assert.equal(b.conversation(id)?.unreadCount, 0);
  await until("read ticks", () => a.messages(id).every((m) => m.status === "read"));
  const fromServer = await server.call<{ unreadCount: number }>(bob, "GET", `/v1/conversations/${id}`);
  await until("the server has bob's read", async () => {
    const r = await server.call<{ unreadCount: number }>(bob, "GET", `/v1/conversations/${id}`);
    return r.body.unreadCount === 0;
  });
  assert.equal(fromServer.status, 200);
});

test("sends made offline wait in the outbox, survive an app restart, and go out once, in order", async () => {
  const [alice, bob] = [unique("alice"), unique("bob")];
  const proxy = await Proxy.start(server.port);
  const storage = new MemoryStorage();
  const first = started(alice, { storage }, proxy.url);
  const b = started(bob);
  await until("alice online", () => first.status === "online");
  const id = (await first.createDirect(bob)).conversationId;

  // The network goes: sends are kept, shown as pending.
  proxy.offline = true;
  proxy.cutAll();
  await until("alice notices", () => first.status !== "online");
  for (let i = 1; i <= 5; i++) await first.sendText(id, `offline ${i}`);
  assert.deepEqual(
    first.messages(id).map((m) => m.status),
    ["pending", "pending", "pending", "pending", "pending"],
  );
  assert.equal(storage.size, 5);

  // The app is killed and started again, still offline; then the network comes back.
  first.stop();
  const second = started(alice, { storage }, proxy.url);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(second.pendingItems().length, 5);
  proxy.offline = false;

  await until("bob has the five", () => texts(b, id).length === 5);
  assert.deepEqual(texts(b, id), [1, 2, 3, 4, 5].map((i) => `offline ${i}`));
  await until("the outbox is empty", () => storage.size === 0 && second.pendingItems().length === 0);
  assert.deepEqual(texts(second, id), texts(b, id));
  await proxy.stop();
});

test("edits, deletes and reactions fold into the messages, live and after a restart", async () => {
  const [alice, bob] = [unique("alice"), unique("bob")];
  const a = started(alice);
  const b = started(bob);
  await until("both online", () => a.status === "online" && b.status === "online");
  const id = (await a.createGroup("Team", [bob])).conversationId;
  await a.sendText(id, "hello");
  await a.sendText(id, "to delete");
  await until("bob has both", () => texts(b, id).length === 2);
  const [hello, doomed] = b.messages(id).map((m) => m.seq!);

  await a.edit(id, hello!, "hello, edited");
  await a.delete(id, doomed!);
  await b.react(id, hello!, "👍");
  await a.react(id, hello!, "👍");
  await a.react(id, hello!, "🎉");
  await a.react(id, hello!, "🎉", true);

  const settled = (c: ChatClient) => {
    const [first, second] = c.messages(id);
    return (
      first?.content !== undefined &&
      (first.content as { text?: string } | null)?.text === "hello, edited" &&
      second?.deleted === true &&
      first.reactions.length === 1 &&
      first.reactions[0]?.count === 2
    );
  };
  await until("bob folded them", () => settled(b));
  await until("alice folded them", () => settled(a));
  const [first] = b.messages(id);
  assert.equal(first?.reactions[0]?.emoji, "👍");
  assert.equal(first?.reactions[0]?.mine, true);
  assert.ok(first?.editedAt);

  // A new client of bob's starts empty and reads the same state back.
  const again = started(bob);
  await until("the restarted client folded them", () => settled(again));
  assert.deepEqual(
    again.messages(id).map((m) => [m.seq, m.deleted, m.reactions.map((r) => [r.emoji, r.count, r.mine])]),
    b.messages(id).map((m) => [m.seq, m.deleted, m.reactions.map((r) => [r.emoji, r.count, r.mine])]),
  );
});

test("a refused token is replaced by the app's token provider", async () => {
  const [alice] = [unique("alice")];
  const asked: boolean[] = [];
  const a = started(alice, {
    token: async (refresh) => {
      asked.push(refresh);
      // The first token is already expired (beyond the 30 s leeway).
      return asked.length === 1 ? token(alice, -120) : token(alice);
    },
  });
  await until("online with a fresh token", () => a.status === "online");
  assert.equal(asked[0], false);
  assert.ok(asked.slice(1).includes(true), `asked ${JSON.stringify(asked)}`);
});

test("a token that expires mid-session is replaced, and nothing sent meanwhile is missed", async () => {
  const [alice, bob] = [unique("alice"), unique("bob")];
  const asked: boolean[] = [];
  // The first token expired 26 s ago: within the server's 30 s leeway it opens a socket,
  // which the server closes (4001) about 4 s later.
  const a = started(alice, {
    token: async (refresh) => {
      asked.push(refresh);
      return asked.length === 1 ? token(alice, -26) : token(alice);
    },
  });
  const statuses: string[] = [];
  a.on("status", (s) => statuses.push(s));
  await until("online", () => a.status === "online");
  const id = (await server.call<{ conversationId: string }>(bob, "POST", "/v1/conversations", { type: "direct", members: [alice] })).body
    .conversationId;
  await until("the server closed the expired socket", () => statuses.includes("waiting"), 15_000);
  await server.call(bob, "POST", `/v1/conversations/${id}/messages`, {
    clientMessageId: "while-expired",
    content: { type: "text", text: "sent around the expiry" },
  });
  await until("back online with a fresh token, and the message there", () => a.status === "online" && texts(a, id).length === 1, 15_000);
  assert.deepEqual(texts(a, id), ["sent around the expiry"]);
  assert.deepEqual(asked, [false, true], "asked once, then for a refresh after the expiry");
});

test("an HTTP call that gets no answer is abandoned, and the client recovers", async () => {
  const [alice, bob] = [unique("alice"), unique("bob")];
  const proxy = await Proxy.start(server.port);
  const a = started(alice, { requestTimeoutMs: 300 }, proxy.url);
  const warnings: string[] = [];
  a.on("warning", (w) => warnings.push(w));
  await until("online", () => a.status === "online");
  const id = (await server.call<{ conversationId: string }>(bob, "POST", "/v1/conversations", { type: "direct", members: [alice] })).body
    .conversationId;
  await until("alice knows the conversation", () => a.conversation(id) !== undefined);

  // Every byte now takes 1.5 s: the sync that coming to the foreground starts stalls.
  proxy.delayMs = 1500;
  a.foreground();
  await until("the stalled sync was abandoned", () => warnings.some((w) => /abort/i.test(w)), 5000);
  proxy.delayMs = 0;
  await server.call(bob, "POST", `/v1/conversations/${id}/messages`, {
    clientMessageId: "after-the-stall",
    content: { type: "text", text: "are you there?" },
  });
  await until("back and caught up", () => a.status === "online" && texts(a, id).includes("are you there?"), 15_000);
  a.stop();
  await new Promise((r) => setTimeout(r, 1600)); // the proxy's delayed bytes drain
  await proxy.stop();
});

test("a revoked session signs the client out instead of reconnecting", async () => {
  const [alice] = [unique("alice")];
  const a = started(alice);
  let signedOut = false;
  a.on("signedOut", () => {
    signedOut = true;
  });
  await until("online", () => a.status === "online");
  await new Promise((r) => setTimeout(r, 1100)); // tokens issued in an earlier second
  const revoked = await server.call(alice, "POST", "/v1/sessions/revoke");
  assert.equal(revoked.status, 204);
  await until("signed out", () => signedOut && a.status === "signedOut");
});
