// What an app passes to a ChatClient and gets from it: options, the socket it may plug
// in, the connection's states, events and the HTTP API's error.

import type { Entry } from "./protocol.js";
import type { OutboxItem, OutboxStorage } from "./storage.js";

/** The subset of the WebSocket API the client uses: browsers', React Native's, `ws`'s. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type SocketFactory = new (url: string) => SocketLike;

export type ConnectionStatus =
  | "idle" // not started
  | "connecting"
  | "syncing" // open, catching up
  | "online" // open and caught up
  | "waiting" // closed, reconnecting after a backoff
  | "background" // closed on purpose until `foreground()`
  | "stopped"
  | "signedOut"; // the server revoked the session: a new token is needed

export interface ChatClientOptions {
  /** The HTTP API's base URL, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** The WebSocket URL without query; default: `url` with ws(s) and `/ws`. */
  wsUrl?: string;
  /** The signed-in user's id (the token's user claim). */
  userId: string;
  /** Gives a token; `refresh` is true when the last one was refused or expired. */
  token: (refresh: boolean) => Promise<string>;
  deviceId?: string;
  /** Where the outbox lives; default memory (see `IndexedDbStorage`). */
  storage?: OutboxStorage;
  /** Default: `globalThis.WebSocket` (Node: pass `ws`'s `WebSocket`). */
  WebSocket?: SocketFactory;
  fetch?: typeof fetch;
  /** A random number in [0, 1) for the backoff's jitter and ids (tests seed it). */
  random?: () => number;
  /** Reconnect backoff: the first delay and the cap (default 500 ms and 30 s). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** How long a gap may wait before a sync fills it (default 1000 ms). */
  gapWaitMs?: number;
  /** No answer to a send this long means the socket is dead (default 10 s). */
  ackTimeoutMs?: number;
  /** How many of the latest entries of a conversation first seen are fetched (default
   * 50; older ones come from `history`). `Infinity` fetches the whole retained log. */
  historyOnJoin?: number;
  /** Entries per conversation per sync request (server maximum 1000). */
  syncLimit?: number;
  /** An HTTP call with no answer this long is abandoned (default 15 s): a sync stuck on a
   * dead connection would otherwise hold every later one. */
  requestTimeoutMs?: number;
}

export interface Presence {
  status: "online" | "offline";
  lastSeen: number | null;
  at: number;
}

export interface ChatEvents {
  status: (status: ConnectionStatus) => void;
  /** Each entry of a conversation exactly once, in seq order (after a restart of the
   * client, again from its window's start). */
  entry: (entry: Entry) => void;
  /** A conversation's messages changed (new, edited, deleted, reacted, a tick moved). */
  messages: (conversationId: string) => void;
  /** The list changed: a conversation added, removed, or its unread count or details. */
  conversations: () => void;
  typing: (conversationId: string, userIds: string[]) => void;
  presence: (userId: string, presence: Presence) => void;
  /** An outbox item failed for good (it stays until `retry` or `discard`). */
  failed: (item: OutboxItem) => void;
  /** The session was revoked (close 4003): sign in again. */
  signedOut: () => void;
  /** Something went wrong that the client recovers from (for logs). */
  warning: (message: string) => void;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterMs: number | null,
  ) {
    super(`${status} ${code}: ${message}`);
  }
}
