// Seeded fault schedules against a real chat-local: clients send while their connections
// are cut, delayed or refused, apps are restarted with a full outbox, tokens come back
// expired, and the server is killed with SIGKILL and started again mid-burst. After each
// schedule every member's client must hold every message exactly once, in the sender's
// order, with no gap, and its unread counts and ticks must equal what the server says.
//
// CHAOS_SCHEDULES (default 200) schedules run, CHAOS_PARALLEL (4) at a time; CHAOS_SEED
// runs one seed alone. A failure names its seed.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { MemoryStorage, type ChatClient, type Conversation } from "../src/index.js";
import { Proxy, Server, client, token, unique, until } from "./harness.js";

const SCHEDULES = Number(process.env.CHAOS_SCHEDULES ?? 200);
const PARALLEL = Number(process.env.CHAOS_PARALLEL ?? 4);
const ONLY = process.env.CHAOS_SEED === undefined ? undefined : Number(process.env.CHAOS_SEED);
const STEPS = 40;

let server: Server;
const proxies = new Set<Proxy>();
let restarting: Promise<void> | null = null;
let kills = 0;

before(async () => {
  server = await Server.start();
});

after(async () => {
  await server.stop();
  if (process.env.CHAOS_DEBUG_HANDLES) {
    setTimeout(() => console.log("still alive:", process.getActiveResourcesInfo()), 3000).unref();
  }
});

/** mulberry32: a small seeded generator, the same sequence for the same seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** kill -9 and start again on a new port; every proxy follows it. */
async function killServer(): Promise<void> {
  restarting ??= (async () => {
    kills += 1;
    await server.kill9();
    await server.start();
    for (const p of proxies) p.target = server.port;
  })().finally(() => {
    restarting = null;
  });
  return restarting;
}

interface Member {
  user: string;
  proxy: Proxy;
  storage: MemoryStorage;
  client: ChatClient;
  random: () => number;
}

async function schedule(seed: number): Promise<{ sent: number }> {
  const random = prng(seed);
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]!;
  const names = ["alice", "bob", "carol"].map((n) => unique(`${n}${seed}`));
  const members: Member[] = [];
  const connect = (m: Omit<Member, "client">): ChatClient => {
    const c = client(m.proxy.url, m.user, {
      storage: m.storage,
      random: m.random,
      // Now and then the app hands over a token that has expired.
      token: async (refresh) => token(m.user, !refresh && m.random() < 0.15 ? -120 : 3600),
    });
    if (process.env.CHAOS_DEBUG) {
      const t0 = Date.now();
      const log = (...a: unknown[]) => console.log(Date.now() - t0, m.user.slice(0, 6), ...a);
      c.on("status", (st) => log("status", st));
      c.on("warning", (w) => log("warning", w));
      c.on("messages", (id) => log("messages", id.slice(0, 8), JSON.stringify(c.messages(id).map((x) => [x.seq, x.status]))));
    }
    void c.start();
    return c;
  };
  for (const user of names) {
    const proxy = await Proxy.start(server.port);
    proxies.add(proxy);
    const m = { user, proxy, storage: new MemoryStorage(), random: prng(seed * 31 + members.length) };
    members.push({ ...m, client: connect(m) });
  }
  const [a, b, c] = members as [Member, Member, Member];
  const direct = (await server.call<Conversation>(a.user, "POST", "/v1/conversations", { type: "direct", members: [b.user] })).body;
  const group = (
    await server.call<Conversation>(c.user, "POST", "/v1/conversations", {
      type: "group",
      name: `chaos ${seed}`,
      members: [a.user, b.user],
    })
  ).body;
  const conversations = [
    { id: direct.conversationId, members: [a, b] },
    { id: group.conversationId, members: [a, b, c] },
  ];
  /** What each sender sent to each conversation, in the order of the calls. */
  const sent = new Map<string, string[]>();
  let count = 0;

  try {
    for (let step = 0; step < STEPS; step++) {
      const roll = random();
      const m = pick(members);
      if (roll < 0.55) {
        const conv = pick(conversations.filter((x) => x.members.includes(m)));
        const text = `${m.user}#${count++}`;
        const key = `${conv.id} ${m.user}`;
        sent.set(key, [...(sent.get(key) ?? []), text]);
        await m.client.sendText(conv.id, text);
      } else if (roll < 0.65) {
        m.proxy.cutAll();
      } else if (roll < 0.72) {
        m.proxy.offline = !m.proxy.offline;
        if (m.proxy.offline) m.proxy.cutAll();
      } else if (roll < 0.77) {
        m.proxy.delayMs = Math.floor(random() * 30);
      } else if (roll < 0.83) {
        // The app is killed (its outbox is in its storage) and started again.
        m.client.stop();
        m.client = connect(m);
      } else if (roll < 0.93) {
        const conv = pick(conversations.filter((x) => x.members.includes(m)));
        m.client.markRead(conv.id);
      } else if (roll < 0.938) {
        await killServer();
      }
      await new Promise((r) => setTimeout(r, Math.floor(random() * 15)));
    }

    // Heal: every network back, then wait for every client to catch up.
    for (const m of members) {
      m.proxy.offline = false;
      m.proxy.delayMs = 0;
    }
    await restarting;
    const lastSeq = async (id: string, user: string) =>
      (await server.call<Conversation>(user, "GET", `/v1/conversations/${id}`)).body;
    await until(
      `seed ${seed}: every client caught up`,
      async () => {
        for (const m of members) {
          if (m.client.status !== "online" || m.client.pendingItems().length > 0) return false;
        }
        for (const conv of conversations) {
          const info = await lastSeq(conv.id, conv.members[0]!.user);
          for (const m of conv.members) if (m.client.heldUpTo(conv.id) < info.lastSeq) return false;
        }
        return true;
      },
      30_000,
    );

    for (const conv of conversations) {
      for (const m of conv.members) {
        const messages = m.client.messages(conv.id);
        const seqs = messages.map((x) => x.seq);
        assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `seed ${seed}: ${m.user} holds 1..n with no gap or repeat`);
        const texts = messages.map((x) => (x.content as { text: string }).text);
        assert.equal(new Set(texts).size, texts.length, `seed ${seed}: a message twice`);
        for (const sender of conv.members) {
          const expected = sent.get(`${conv.id} ${sender.user}`) ?? [];
          const got = messages.filter((x) => x.senderId === sender.user).map((x) => (x.content as { text: string }).text);
          assert.deepEqual(got, expected, `seed ${seed}: ${m.user} sees ${sender.user}'s messages in order, once each`);
        }
      }
    }
    // Unread counts and ticks as the server has them (receipts settle: wait a little).
    let mismatch = "";
    await until(
      `seed ${seed}: unread counts and ticks equal the server's`,
      async () => {
        for (const conv of conversations) {
          for (const m of conv.members) {
            const info = await lastSeq(conv.id, m.user);
            if (m.client.conversation(conv.id)?.unreadCount !== info.unreadCount) {
              mismatch = `${m.user} unread ${m.client.conversation(conv.id)?.unreadCount}, server ${info.unreadCount}`;
              return false;
            }
            const others = (info.members ?? []).filter((x) => x.userId !== m.user);
            for (const x of m.client.messages(conv.id).filter((x) => x.senderId === m.user)) {
              const seq = x.seq!;
              const expected = others.every((o) => o.readUpTo >= seq)
                ? "read"
                : others.every((o) => o.deliveredUpTo >= seq)
                  ? "delivered"
                  : "sent";
              if (x.status !== expected) {
                mismatch = `${m.user}'s seq ${seq} is ${x.status}, server ${expected}: ${JSON.stringify(others)}`;
                return false;
              }
            }
          }
        }
        return true;
      },
      15_000,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}: ${mismatch}`);
    });
    return { sent: count };
  } finally {
    for (const m of members) {
      m.client.stop();
      proxies.delete(m.proxy);
      await m.proxy.stop();
    }
  }
}

test(`chaos: ${ONLY === undefined ? SCHEDULES : 1} seeded fault schedules lose, double and reorder nothing`, async () => {
  const seeds = ONLY === undefined ? Array.from({ length: SCHEDULES }, (_, i) => i + 1) : [ONLY];
  let next = 0;
  let messages = 0;
  const failures: string[] = [];
  const worker = async () => {
    while (next < seeds.length) {
      const seed = seeds[next++]!;
      const t0 = Date.now();
      try {
        messages += (await schedule(seed)).sent;
        if (process.env.CHAOS_DEBUG_TIME) console.log(`seed ${seed} took ${Date.now() - t0} ms`);
      } catch (e) {
        failures.push(`seed ${seed} (CHAOS_SEED=${seed} to run it alone): ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  console.log(`chaos: ${seeds.length} schedules, ${messages} messages, ${kills} server kills, ${failures.length} failed`);
  assert.deepEqual(failures, []);
});
