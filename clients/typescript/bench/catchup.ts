// Benchmark (not a test): how long a client takes from reconnecting to holding every
// message it missed. A reader is in 10 groups; while its app is in the background a
// writer sends 100 messages to each over HTTP; then `foreground()` reconnects, syncs,
// and the clock stops when the reader holds all 1,000 (and its unread counts say so).
//
//   npm run bench -- [--runs N] [--bin path/to/chat-local]
//
// It starts its own chat-local (release build by default) on a fresh database.

import { performance } from "node:perf_hooks";

import { Server, client, unique, until } from "../test/harness.js";
import { CONVERSATIONS, PER_CONVERSATION, RUNS, report } from "./options.js";


async function once(server: Server): Promise<number> {
  const reader = unique("reader");
  const writer = unique("writer");
  const ids: string[] = [];
  for (let i = 0; i < CONVERSATIONS; i++) {
    const r = await server.call<{ conversationId: string }>(writer, "POST", "/v1/conversations", {
      type: "group",
      name: `bench ${i}`,
      members: [reader],
    });
    ids.push(r.body.conversationId);
  }
  const c = client(server.url, reader, { historyOnJoin: Number.POSITIVE_INFINITY });
  await c.start();
  await until("the reader is online with its 10 conversations", () => c.status === "online" && c.listConversations().length === CONVERSATIONS);
  c.background();

  // 1,000 messages while the reader is away, 10 senders' worth of concurrency.
  await Promise.all(
    ids.map(async (id) => {
      for (let n = 0; n < PER_CONVERSATION; n++) {
        const r = await server.call(writer, "POST", `/v1/conversations/${id}/messages`, {
          clientMessageId: `${id}-${n}`,
          content: { type: "text", text: `message ${n} of ${id}` },
        });
        if (r.status !== 201) throw new Error(`send: ${r.status}`);
      }
    }),
  );

  // The clock stops at the event that completes the state (no polling interval in it).
  const caughtUp = () =>
    c.status === "online" &&
    ids.every((id) => c.heldUpTo(id) === PER_CONVERSATION && c.conversation(id)?.unreadCount === PER_CONVERSATION);
  let stopped = 0;
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("not caught up in 60 s")), 60_000);
    const check = () => {
      if (stopped === 0 && caughtUp()) {
        stopped = performance.now();
        clearTimeout(timer);
        resolve();
      }
    };
    c.on("conversations", check);
    c.on("messages", check);
    c.on("status", check);
  });
  const started = performance.now();
  c.foreground();
  await done;
  const ms = stopped - started;
  c.stop();
  return ms;
}

const server = await Server.start();
try {
  await once(server); // warm-up: connections, the server's caches
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push(await once(server));
  console.log(report(`node ${process.version}`, times));
} finally {
  await server.stop();
}
