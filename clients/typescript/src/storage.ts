// Where the outbox lives: sends the app made that the server has not acknowledged yet.
// They must survive an app restart (a phone killed in a tunnel), so the storage is the
// app's choice: memory (tests, short-lived pages), IndexedDB in browsers, or anything
// the app plugs in (SQLite or MMKV in React Native) through `OutboxStorage`.

import type { AttachmentSend, TextContent } from "./protocol.js";

/** What an outbox item asks the server to append (section 8.2 of the protocol). */
export type OutboxAction =
  | { kind: "message"; content: TextContent | AttachmentSend; replyTo?: number }
  | { kind: "edit"; targetSeq: number; content: TextContent | { type: "attachment"; text: string } }
  | { kind: "delete"; targetSeq: number }
  | { kind: "reaction"; targetSeq: number; emoji: string; removed: boolean };

export interface OutboxItem {
  clientMessageId: string;
  conversationId: string;
  action: OutboxAction;
  /** When the app made it (its clock), and the order of items: an increasing counter. */
  createdAt: number;
  order: number;
  /** `failed` items stay until the app retries or discards them. */
  state: "pending" | "failed";
  error?: { code: string; message: string };
}

/** The outbox's storage: every call is awaited before the SDK goes on. */
export interface OutboxStorage {
  /** Every item stored, in any order. */
  load(): Promise<OutboxItem[]>;
  /** Stores (or replaces, by `clientMessageId`) one item. */
  put(item: OutboxItem): Promise<void>;
  remove(clientMessageId: string): Promise<void>;
}

/** Keeps the outbox in memory: an app restart loses it (hand the same instance to a new
 * client to keep it across clients in one process, as the tests do). */
export class MemoryStorage implements OutboxStorage {
  private readonly items = new Map<string, OutboxItem>();

  async load(): Promise<OutboxItem[]> {
    return [...this.items.values()].map((item) => structuredClone(item));
  }

  async put(item: OutboxItem): Promise<void> {
    this.items.set(item.clientMessageId, structuredClone(item));
  }

  async remove(clientMessageId: string): Promise<void> {
    this.items.delete(clientMessageId);
  }

  /** How many items it holds (for tests and diagnostics). */
  get size(): number {
    return this.items.size;
  }
}

/** Keeps the outbox in an IndexedDB database of the browser (one object store). */
export class IndexedDbStorage implements OutboxStorage {
  private db: Promise<IDBDatabase> | undefined;

  constructor(
    private readonly name = "chat-outbox",
    private readonly factory: IDBFactory = globalThis.indexedDB,
  ) {}

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise((resolve, reject) => {
      const request = this.factory.open(this.name, 1);
      request.onupgradeneeded = () => {
        request.result.createObjectStore("outbox", { keyPath: "clientMessageId" });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    return this.db;
  }

  private async run<T>(mode: IDBTransactionMode, work: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction("outbox", mode);
      const request = work(tx.objectStore("outbox"));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  async load(): Promise<OutboxItem[]> {
    return this.run("readonly", (store) => store.getAll() as IDBRequest<OutboxItem[]>);
  }

  async put(item: OutboxItem): Promise<void> {
    await this.run("readwrite", (store) => store.put(item));
  }

  async remove(clientMessageId: string): Promise<void> {
    await this.run("readwrite", (store) => store.delete(clientMessageId));
  }
}
