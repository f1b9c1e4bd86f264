import { reconnectDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { ChartsConnectionError, ChartsError } from "./errors.js";
import { canonicalResolution } from "./resolution.js";
const CLOSE_NORMAL = 1000;
const CLOSE_SILENT = 4000;
/** Close reasons after which reconnecting cannot help. */
const PERMANENT_REASONS = ["invalid chartId"];
/** The WebSocket of one chart (`/ws/charts/{chartId}`): reconnects with backoff and jitter,
 * resumes from the last version it delivered (or announces a `resync`), answers pings, and
 * matches answers to requests.
 *
 * ```ts
 * const socket = client.socket("btc");
 * socket.on("state", ({ state }) => (status.textContent = state));
 * socket.on("update", (update) => console.log(update.op, update.version, update.data));
 * const chunk = await socket.requestHistory({ paneId: 0, seriesId: "price", count: 500 });
 * ```
 */
export class ChartSocket extends Emitter {
    chartId;
    #settings;
    #state = "idle";
    #version = null;
    #ws = null;
    #attempt = 0;
    #nextRequestId = 1;
    #resuming = false;
    #pending = new Map();
    #queue = [];
    #subscriptions = new Map();
    #retry;
    #heartbeat;
    #lastFrameAt = 0;
    constructor(chartId, settings) {
        super();
        this.chartId = chartId;
        this.#settings = settings;
    }
    get state() {
        return this.#state;
    }
    /** The version of the last change delivered (null before the first connection). */
    get version() {
        return this.#version;
    }
    /** Open the socket (once; later calls do nothing). */
    connect() {
        if (this.#state !== "idle")
            return;
        this.#setState("connecting");
        void this.#open();
    }
    /** Close for good: no reconnection; pending and queued requests fail. */
    close(reason = "closed by the client") {
        if (this.#state === "closed")
            return;
        clearTimeout(this.#retry);
        const ws = this.#ws;
        this.#detach();
        if (ws !== null)
            ws.close(CLOSE_NORMAL, reason);
        this.#failAll(new ChartsConnectionError(`The socket of chart ${this.chartId} was closed: ${reason}.`));
        this.#setState("closed", { reason });
    }
    /** A history chunk; fails with `ChartsError` when the server refuses it. Sent once the socket
     * is connected; fails with `ChartsConnectionError` when it closes before the answer. */
    requestHistory(request) {
        const minVersion = request.minVersion ?? this.#settings.minVersion(this.chartId);
        return this.#request({ ...request, ...(minVersion === undefined ? {} : { minVersion }), type: "request_history" });
    }
    /** The chart, one pane of it, or one series (with `seriesId`), with the chart's version. */
    getInitialData(request = {}) {
        const minVersion = request.minVersion ?? this.#settings.minVersion(this.chartId);
        return this.#request({ ...request, ...(minVersion === undefined ? {} : { minVersion }), type: "get_initial_data" });
    }
    /** Receive the series' bars at `resolution` as `update`s (with `resolution`) from now on,
     * also after reconnections, until `unsubscribe`.
     *
     * Subscriptions are counted, since everything of a client that follows a chart shares its
     * socket (bindings, datafeeds): match each `subscribe` with one `unsubscribe`, whether it was
     * answered, refused (`ChartsError`; it is asked for again after a reconnection) or cut by a
     * lost connection. The server stops streaming a series resolution (`D` and `1D` are one) when
     * the last of its subscribers has unsubscribed. */
    subscribe(paneId, seriesId, resolution) {
        const request = { type: "subscribe", paneId, seriesId, resolution };
        const key = subscriptionKey(paneId, seriesId, resolution);
        const held = this.#subscriptions.get(key);
        if (held === undefined)
            this.#subscriptions.set(key, { request, holders: 1 });
        else
            held.holders += 1;
        return this.#request(request);
    }
    /** Let go of one `subscribe`: with the last one, the server is told to stop (and its answer
     * resolves the promise); before that, resolves with null, nothing sent. */
    unsubscribe(paneId, seriesId, resolution) {
        const key = subscriptionKey(paneId, seriesId, resolution);
        const held = this.#subscriptions.get(key);
        if (held !== undefined) {
            held.holders -= 1;
            if (held.holders > 0)
                return Promise.resolve(null);
            this.#subscriptions.delete(key);
        }
        return this.#request({ type: "unsubscribe", paneId, seriesId, resolution });
    }
    ping() {
        return this.#request({ type: "ping" });
    }
    /** Send a frame now; false when the socket is not connected. */
    send(message) {
        const ws = this.#ws;
        if (ws === null || ws.readyState !== ws.OPEN)
            return false;
        ws.send(JSON.stringify(message));
        return true;
    }
    #request(message) {
        return new Promise((resolve, reject) => {
            if (this.#state === "closed") {
                reject(new ChartsConnectionError(`The socket of chart ${this.chartId} is closed.`));
                return;
            }
            const requestId = this.#nextRequestId++;
            const dispatch = () => {
                this.#pending.set(requestId, { resolve: resolve, reject });
                if (!this.send({ ...message, requestId })) {
                    // Closing, its close event still to come: sent on the next connection instead.
                    this.#pending.delete(requestId);
                    this.#queue.push({ dispatch, reject });
                }
            };
            if (this.#state === "connected")
                dispatch();
            else
                this.#queue.push({ dispatch, reject });
            if (this.#state === "idle")
                this.connect();
        });
    }
    async #open() {
        let ws;
        try {
            const { url, protocols } = await this.#settings.endpoint(this.chartId);
            if (this.#state === "closed")
                return;
            ws = new this.#settings.WebSocket(url, protocols);
        }
        catch (error) {
            this.#dropped(error instanceof Error ? error.message : String(error));
            return;
        }
        this.#ws = ws;
        this.#lastFrameAt = Date.now();
        ws.addEventListener("message", (event) => {
            if (this.#ws === ws)
                this.#receive(event.data);
        });
        ws.addEventListener("close", (event) => {
            if (this.#ws !== ws)
                return;
            this.#detach();
            const reason = event.reason || `code ${event.code}`;
            if (PERMANENT_REASONS.includes(event.reason))
                this.close(reason);
            else
                this.#dropped(reason);
        });
        clearInterval(this.#heartbeat);
        this.#heartbeat = setInterval(() => this.#checkAlive(ws), this.#settings.heartbeatMs);
    }
    #checkAlive(ws) {
        if (this.#ws !== ws)
            return;
        const silent = Date.now() - this.#lastFrameAt;
        if (silent >= 2 * this.#settings.heartbeatMs) {
            // No frame, not even a pong: the connection is dead without having said so.
            this.#detach();
            ws.close(CLOSE_SILENT, "no frames from the server");
            this.#dropped("no frames from the server");
        }
        else if (silent >= this.#settings.heartbeatMs && this.#state === "connected") {
            this.send({ type: "ping" });
        }
    }
    #detach() {
        this.#ws = null;
        clearInterval(this.#heartbeat);
        this.#heartbeat = undefined;
    }
    #dropped(reason) {
        this.#resuming = false;
        const lost = new ChartsConnectionError(`The socket of chart ${this.chartId} closed: ${reason}.`);
        for (const pending of this.#pending.values())
            pending.reject(lost);
        this.#pending.clear();
        if (this.#state === "closed")
            return;
        this.#attempt += 1;
        const delayMs = reconnectDelay(this.#attempt, this.#settings.reconnect);
        this.#setState("reconnecting", { delayMs, reason });
        clearTimeout(this.#retry);
        this.#retry = setTimeout(() => void this.#open(), delayMs);
    }
    #receive(data) {
        this.#lastFrameAt = Date.now();
        if (typeof data !== "string")
            return;
        let message;
        try {
            message = JSON.parse(data);
        }
        catch {
            return;
        }
        this.emit("message", message);
        switch (message.type) {
            case "connected":
                this.#connected(message);
                break;
            case "ping":
                this.send({ type: "pong" });
                break;
            case "data_update":
                this.#update(message);
                break;
            case "resumed":
                this.#resuming = false;
                this.#version = message.version;
                this.emit("resumed", message);
                break;
            case "annotation_update":
                this.emit("annotation", message);
                break;
            case "resync_required":
                if (message.scope === "annotations") {
                    this.emit("annotationResync", message);
                    break;
                }
                this.#resuming = false;
                if (message.version !== undefined)
                    this.#version = message.version;
                this.emit("resync", message);
                break;
            case "history_response":
                if ("error" in message)
                    this.#settle(message.requestId, refused(message));
                else
                    this.#settle(message.requestId, message);
                break;
            case "error":
                if (!this.#settle(message.requestId, refused(message)))
                    this.emit("error", refused(message));
                break;
            default:
                this.#settle(message.requestId, message);
        }
    }
    /** Resolve (or, given an error, reject) the request `requestId`; false when none waits. */
    #settle(requestId, outcome) {
        if (requestId === undefined)
            return false;
        const pending = this.#pending.get(requestId);
        if (pending === undefined)
            return false;
        this.#pending.delete(requestId);
        if (outcome instanceof Error)
            pending.reject(outcome);
        else
            pending.resolve(outcome);
        return true;
    }
    #connected(message) {
        this.#attempt = 0;
        const resume = this.#version;
        if (resume === null)
            this.#version = message.version;
        this.#setState("connected");
        // Subscriptions first: a resume replays the bars of the subscribed resolutions too.
        for (const { request } of this.#subscriptions.values())
            this.send(request);
        if (resume !== null) {
            this.#resuming = true;
            this.send({ type: "resume", sinceVersion: resume });
        }
        const queued = this.#queue;
        this.#queue = [];
        for (const request of queued)
            request.dispatch();
        this.emit("connected", message);
    }
    #update(message) {
        if (message.resolution !== undefined) {
            // The bars of a change already delivered, at a subscribed resolution: same version.
            this.emit("update", message);
            return;
        }
        if (message.op === "chart_deleted") {
            // A new chart of this id starts again at version 1.
            this.#version = 0;
            this.#resuming = false;
            this.emit("update", message);
            return;
        }
        const known = this.#version ?? message.version - 1;
        if (message.version <= known)
            return; // delivered already (a replay)
        if (message.version > known + 1) {
            // A gap: the missing updates (and this one) come back as the resume's replay.
            if (!this.#resuming) {
                this.#resuming = true;
                this.send({ type: "resume", sinceVersion: known });
            }
            return;
        }
        this.#version = message.version;
        this.emit("update", message);
    }
    #failAll(error) {
        for (const pending of this.#pending.values())
            pending.reject(error);
        this.#pending.clear();
        for (const queued of this.#queue)
            queued.reject(error);
        this.#queue = [];
    }
    #setState(state, detail = {}) {
        const previous = this.#state;
        this.#state = state;
        this.emit("state", { state, previous, attempt: this.#attempt, ...detail });
    }
}
function subscriptionKey(paneId, seriesId, resolution) {
    return `${paneId}/${seriesId}/${canonicalResolution(resolution)}`;
}
function refused(message) {
    const body = { detail: message.error, errorCode: message.errorCode };
    return new ChartsError(0, body, { requestId: message.requestId });
}
