// What the SDK's tests run against: a real chat-local (the binary the Rust build made,
// on a fresh SQLite file, port chosen by the OS), tokens signed like the server expects,
// and a TCP proxy in front of it that the tests use to cut, delay and refuse connections.

import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

import { ChatClient, MemoryStorage, type ChatClientOptions, type SocketFactory } from "../src/index.js";

export const SECRET = "sdk-tests-secret-0123456789abcdef0123456789";

const here = path.dirname(fileURLToPath(import.meta.url));
/** build/test -> the repository's target/debug/chat-local, unless CHAT_LOCAL_BIN says
 * (read when a server starts: the benchmarks set it after importing this module). */
const bin = () => process.env.CHAT_LOCAL_BIN ?? path.resolve(here, "../../../../target/debug/chat-local");

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString("base64url");
}

/** An HS256 token for `user`, valid `ttlSecs` from now (negative: already expired). */
export function token(user: string, ttlSecs = 3600): string {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(
    JSON.stringify({ sub: user, iat: now - 1, exp: now + ttlSecs }),
  )}`;
  return `${input}.${createHmac("sha256", SECRET).update(input).digest("base64url")}`;
}

/** A chat-local process; `kill9` and `start` again keep its database. */
export class Server {
  private child: ChildProcess | null = null;
  port = 0;
  private readonly dir = mkdtempSync(path.join(tmpdir(), "chat-sdk-"));

  static async start(env: Record<string, string> = {}): Promise<Server> {
    const server = new Server(env);
    await server.start();
    return server;
  }

  private constructor(private readonly env: Record<string, string>) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const BIN = bin();
    const child = spawn(BIN, ["--listen", "127.0.0.1:0", "--db", path.join(this.dir, "chat.db")], {
      env: {
        ...process.env,
        CHAT_JWT_SECRET: SECRET,
        CHAT_RATE_LIMIT_PER_MIN: "0",
        CHAT_LOG: "warn",
        ...this.env,
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.child = child;
    this.port = await new Promise<number>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`${BIN} printed no address in 20 s`)), 20_000);
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const m = /listening on [^\s:]+:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.on("exit", (code) => reject(new Error(`${BIN} exited (${code}) before listening`)));
    });
  }

  /** SIGKILL: no shutdown of any kind. */
  async kill9(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill9();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** An HTTP call as `user` (tried again while the server restarts). */
  async call<T>(user: string, method: string, route: string, body?: unknown): Promise<{ status: number; body: T }> {
    let response: Response;
    for (let attempt = 0; ; attempt++) {
      try {
        response = await fetch(`${this.url}${route}`, {
          method,
          headers: { authorization: `Bearer ${token(user)}`, "content-type": "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        break;
      } catch (e) {
        if (attempt >= 100) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
  }
}

/** A TCP proxy to a port: cut every connection, delay bytes, or refuse new connections. */
export class Proxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  port = 0;
  /** Each chunk waits this long (order kept per direction). */
  delayMs = 0;
  /** Refuse new connections (an app without network). */
  offline = false;

  constructor(public target: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(target: number): Promise<Proxy> {
    const proxy = new Proxy(target);
    await new Promise<void>((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    proxy.port = (proxy.server.address() as net.AddressInfo).port;
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private accept(client: net.Socket): void {
    if (this.offline) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target, "127.0.0.1");
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    const pipe = (from: net.Socket, to: net.Socket) => {
      let chain = Promise.resolve();
      from.on("data", (chunk) => {
        const delay = this.delayMs;
        chain = chain.then(async () => {
          if (delay > 0) await new Promise((r) => setTimeout(r, delay));
          if (!to.destroyed) to.write(chunk);
        });
      });
    };
    pipe(client, upstream);
    pipe(upstream, client);
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  }

  /** Cuts every open connection (frames in flight are lost). */
  cutAll(): void {
    // Destroyed without a WebSocket close: frames in flight are lost. (Not
    // `resetAndDestroy`: with a write pending, Node 20 then spins at exit waiting for it.)
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  get connections(): number {
    return this.pairs.size;
  }

  async stop(): Promise<void> {
    this.cutAll();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** A client for `user` of `url`, with `ws` as its WebSocket and fast test timings. */
export function client(url: string, user: string, options: Partial<ChatClientOptions> = {}): ChatClient {
  return new ChatClient({
    url,
    userId: user,
    token: async () => token(user),
    WebSocket: WebSocket as unknown as SocketFactory,
    storage: new MemoryStorage(),
    backoff: { initialMs: 50, maxMs: 500 },
    gapWaitMs: 200,
    ackTimeoutMs: 3000,
    historyOnJoin: Number.POSITIVE_INFINITY,
    ...options,
  });
}

/** Waits until `check` holds (polled), or fails with `what` after `ms`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let counter = 0;
/** A user id no other test uses. */
export function unique(name: string): string {
  counter += 1;
  return `${name}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}
