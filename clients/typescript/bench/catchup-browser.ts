// The catch-up benchmark (bench/catchup.ts) in headless Chromium: the SDK the web app
// serves (/app/sdk/), in a page of chat-local's origin, reconnecting to 1,000 messages
// missed in 10 conversations.
//
//   npm run bench:browser -- [--runs N] [--bin path/to/chat-local]   (needs /usr/bin/chromium)


import { chromium } from "playwright-core";

import { Server, unique } from "../test/harness.js";
import { CONVERSATIONS, PER_CONVERSATION, RUNS, report } from "./options.js";


// The development secret: the page signs in with /dev/login, and so does the writer.
const server = await Server.start({ CHAT_JWT_SECRET: "" });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
});

async function login(user: string): Promise<string> {
  const r = await fetch(`${server.url}/dev/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userId: user }),
  });
  return ((await r.json()) as { token: string }).token;
}

async function call(token: string, method: string, route: string, body: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(`${server.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

async function once(): Promise<number> {
  const reader = unique("reader");
  const writer = unique("writer");
  const writerToken = await login(writer);
  const ids: string[] = [];
  for (let i = 0; i < CONVERSATIONS; i++) {
    const r = await call(writerToken, "POST", "/v1/conversations", { type: "group", name: `bench ${i}`, members: [reader] });
    ids.push(r.body.conversationId);
  }
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(server.url);
  await page.evaluate(
    async ({ reader, count }) => {
      const { ChatClient, MemoryStorage } = await import("/app/sdk/index.js" as string);
      const login = async (u: string) =>
        (await (await fetch("/dev/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ userId: u }) })).json()).token;
      const c = new ChatClient({ url: location.origin, userId: reader, token: () => login(reader), storage: new MemoryStorage(), historyOnJoin: Infinity });
      (window as any).bench = c;
      await c.start();
      await new Promise<void>((resolve) => {
        const check = () => c.status === "online" && c.listConversations().length === count && resolve();
        c.on("conversations", check);
        c.on("status", check);
        check();
      });
      c.background();
    },
    { reader, count: CONVERSATIONS },
  );

  await Promise.all(
    ids.map(async (id) => {
      for (let n = 0; n < PER_CONVERSATION; n++) {
        const r = await call(writerToken, "POST", `/v1/conversations/${id}/messages`, {
          clientMessageId: `${id}-${n}`,
          content: { type: "text", text: `message ${n} of ${id}` },
        });
        if (r.status !== 201) throw new Error(`send: ${r.status}`);
      }
    }),
  );

  const ms = await page.evaluate(
    ({ ids, per }) =>
      new Promise<number>((resolve, reject) => {
        const c = (window as any).bench;
        const timer = setTimeout(() => reject(new Error("not caught up in 60 s")), 60_000);
        let started = 0;
        const check = () => {
          if (
            started > 0 &&
            c.status === "online" &&
            ids.every((id: string) => c.heldUpTo(id) === per && c.conversation(id)?.unreadCount === per)
          ) {
            clearTimeout(timer);
            const ms = performance.now() - started;
            started = 0;
            c.stop();
            resolve(ms);
          }
        };
        c.on("conversations", check);
        c.on("messages", check);
        c.on("status", check);
        started = performance.now();
        c.foreground();
      }),
    { ids, per: PER_CONVERSATION },
  );
  await context.close();
  return ms;
}

try {
  await once(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push(await once());
  console.log(report(`chromium ${browser.version()}`, times));
} finally {
  await browser.close();
  await server.stop();
}
