/** A typed event emitter: `on` returns the function that removes the listener. A listener that
 * throws does not keep the others from running; its error is reported as uncaught. */
export class Emitter {
    #listeners = new Map();
    on(event, listener) {
        let listeners = this.#listeners.get(event);
        if (listeners === undefined) {
            listeners = new Set();
            this.#listeners.set(event, listeners);
        }
        listeners.add(listener);
        return () => this.off(event, listener);
    }
    off(event, listener) {
        this.#listeners.get(event)?.delete(listener);
    }
    emit(event, payload) {
        const listeners = this.#listeners.get(event);
        if (listeners === undefined)
            return;
        for (const listener of [...listeners]) {
            try {
                listener(payload);
            }
            catch (error) {
                reportUncaught(error);
            }
        }
    }
    listenerCount(event) {
        return this.#listeners.get(event)?.size ?? 0;
    }
    removeAllListeners() {
        this.#listeners.clear();
    }
}
function reportUncaught(error) {
    if (typeof globalThis.reportError === "function")
        globalThis.reportError(error);
    else
        setTimeout(() => {
            throw error;
        });
}
