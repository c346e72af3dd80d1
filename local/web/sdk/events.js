// A small typed event emitter: `on` returns the function that unsubscribes.
export class Emitter {
    listeners = new Map();
    on(event, listener) {
        let set = this.listeners.get(event);
        if (!set)
            this.listeners.set(event, (set = new Set()));
        set.add(listener);
        return () => set.delete(listener);
    }
    emit(event, ...args) {
        for (const listener of [...(this.listeners.get(event) ?? [])]) {
            try {
                listener(...args);
            }
            catch (e) {
                // An app's listener that throws must not break the client's state.
                queueMicrotask(() => {
                    throw e;
                });
            }
        }
    }
}
