// Where the outbox lives: sends the app made that the server has not acknowledged yet.
// They must survive an app restart (a phone killed in a tunnel), so the storage is the
// app's choice: memory (tests, short-lived pages), IndexedDB in browsers, or anything
// the app plugs in (SQLite or MMKV in React Native) through `OutboxStorage`.
/** Keeps the outbox in memory: an app restart loses it (hand the same instance to a new
 * client to keep it across clients in one process, as the tests do). */
export class MemoryStorage {
    items = new Map();
    async load() {
        return [...this.items.values()].map((item) => structuredClone(item));
    }
    async put(item) {
        this.items.set(item.clientMessageId, structuredClone(item));
    }
    async remove(clientMessageId) {
        this.items.delete(clientMessageId);
    }
    /** How many items it holds (for tests and diagnostics). */
    get size() {
        return this.items.size;
    }
}
/** Keeps the outbox in an IndexedDB database of the browser (one object store). */
export class IndexedDbStorage {
    name;
    factory;
    db;
    constructor(name = "chat-outbox", factory = globalThis.indexedDB) {
        this.name = name;
        this.factory = factory;
    }
    open() {
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
    async run(mode, work) {
        const db = await this.open();
        return new Promise((resolve, reject) => {
            const tx = db.transaction("outbox", mode);
            const request = work(tx.objectStore("outbox"));
            tx.oncomplete = () => resolve(request.result);
            tx.onerror = () => reject(tx.error);
            tx.onabort = () => reject(tx.error);
        });
    }
    async load() {
        return this.run("readonly", (store) => store.getAll());
    }
    async put(item) {
        await this.run("readwrite", (store) => store.put(item));
    }
    async remove(clientMessageId) {
        await this.run("readwrite", (store) => store.delete(clientMessageId));
    }
}
