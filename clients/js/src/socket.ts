import { type ReconnectOptions, reconnectDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { ChartsConnectionError, ChartsError } from "./errors.js";
import { canonicalResolution } from "./resolution.js";
import type {
  AnnotationUpdate,
  ChartSnapshot,
  ClientMessage,
  ConnectedMessage,
  DataUpdate,
  HistoryRequest,
  HistoryResponse,
  InitialDataRequest,
  PongMessage,
  RequestId,
  ResumedMessage,
  ResyncRequired,
  SeriesSnapshot,
  ServerMessage,
  SubscriptionMessage,
  SubscriptionRequest,
} from "./protocol.js";

/** `idle` before `connect()`; `connecting` until the first `connected` frame; `connected`;
 * `reconnecting` after a drop, while waiting and retrying; `closed` after `close()` (or a
 * refusal that retrying cannot fix). */
export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Failed attempts since the last connection. */
  attempt: number;
  /** The wait before the next attempt, when one is planned. */
  delayMs?: number;
  /** Why the socket closed, when it did. */
  reason?: string;
}

export interface ChartSocketEvents {
  state: StateChange;
  /** Every (re)connection, once `resume` and the subscriptions have been sent. */
  connected: ConnectedMessage;
  /** The chart's changes, each once and in version order (replays after a reconnection
   * included); and the bars of subscribed resolutions. */
  update: DataUpdate;
  resumed: ResumedMessage;
  /** Updates were lost: whatever was read from the chart must be read again. */
  resync: ResyncRequired;
  /** An annotation created, changed or deleted. These are not replayed after a reconnection:
   * read the annotations again on `connected`. */
  annotation: AnnotationUpdate;
  /** Annotation updates were lost between servers: read the annotations again. */
  annotationResync: ResyncRequired;
  /** Every frame, as received. */
  message: ServerMessage;
  /** An `error` frame that answers no pending request. */
  error: ChartsError;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocket;

/** What a socket needs from its client. */
export interface SocketSettings {
  /** The URL and subprotocols of the next connection (the token may be renewed). */
  endpoint: (chartId: string) => Promise<{ url: string; protocols: string[] }>;
  WebSocket: WebSocketConstructor;
  reconnect: ReconnectOptions;
  /** A silent socket is pinged after this long, and given up after twice as long. */
  heartbeatMs: number;
  /** The `minVersion` of reads that do not give one. */
  minVersion: (chartId: string) => number | undefined;
}

interface Pending {
  resolve: (message: never) => void;
  reject: (error: Error) => void;
}

interface Queued {
  dispatch: () => void;
  reject: (error: Error) => void;
}

/** A series resolution subscribed, and how many `subscribe`s not yet matched by an
 * `unsubscribe` hold it. */
interface Held {
  readonly request: SubscriptionRequest;
  holders: number;
}

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
export class ChartSocket extends Emitter<ChartSocketEvents> {
  readonly chartId: string;
  readonly #settings: SocketSettings;
  #state: ConnectionState = "idle";
  #version: number | null = null;
  #ws: WebSocket | null = null;
  #attempt = 0;
  #nextRequestId = 1;
  #resuming = false;
  #pending = new Map<RequestId, Pending>();
  #queue: Queued[] = [];
  #subscriptions = new Map<string, Held>();
  #retry: ReturnType<typeof setTimeout> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #lastFrameAt = 0;

  constructor(chartId: string, settings: SocketSettings) {
    super();
    this.chartId = chartId;
    this.#settings = settings;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The version of the last change delivered (null before the first connection). */
  get version(): number | null {
    return this.#version;
  }

  /** Open the socket (once; later calls do nothing). */
  connect(): void {
    if (this.#state !== "idle") return;
    this.#setState("connecting");
    void this.#open();
  }

  /** Close for good: no reconnection; pending and queued requests fail. */
  close(reason = "closed by the client"): void {
    if (this.#state === "closed") return;
    clearTimeout(this.#retry);
    const ws = this.#ws;
    this.#detach();
    if (ws !== null) ws.close(CLOSE_NORMAL, reason);
    this.#failAll(new ChartsConnectionError(`The socket of chart ${this.chartId} was closed: ${reason}.`));
    this.#setState("closed", { reason });
  }

  /** A history chunk; fails with `ChartsError` when the server refuses it. Sent once the socket
   * is connected; fails with `ChartsConnectionError` when it closes before the answer. */
  requestHistory(request: Omit<HistoryRequest, "type" | "requestId">): Promise<HistoryResponse> {
    const minVersion = request.minVersion ?? this.#settings.minVersion(this.chartId);
    return this.#request({ ...request, ...(minVersion === undefined ? {} : { minVersion }), type: "request_history" });
  }

  /** The chart, one pane of it, or one series (with `seriesId`), with the chart's version. */
  getInitialData(
    request: Omit<InitialDataRequest, "type" | "requestId"> = {},
  ): Promise<ChartSnapshot | SeriesSnapshot> {
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
  subscribe(paneId: number, seriesId: string, resolution: string): Promise<SubscriptionMessage> {
    const request: SubscriptionRequest = { type: "subscribe", paneId, seriesId, resolution };
    const key = subscriptionKey(paneId, seriesId, resolution);
    const held = this.#subscriptions.get(key);
    if (held === undefined) this.#subscriptions.set(key, { request, holders: 1 });
    else held.holders += 1;
    return this.#request(request);
  }

  /** Let go of one `subscribe`: with the last one, the server is told to stop (and its answer
   * resolves the promise); before that, resolves with null, nothing sent. */
  unsubscribe(paneId: number, seriesId: string, resolution: string): Promise<SubscriptionMessage | null> {
    const key = subscriptionKey(paneId, seriesId, resolution);
    const held = this.#subscriptions.get(key);
    if (held !== undefined) {
      held.holders -= 1;
      if (held.holders > 0) return Promise.resolve(null);
      this.#subscriptions.delete(key);
    }
    return this.#request({ type: "unsubscribe", paneId, seriesId, resolution });
  }

  ping(): Promise<PongMessage> {
    return this.#request({ type: "ping" });
  }

  /** Send a frame now; false when the socket is not connected. */
  send(message: ClientMessage): boolean {
    const ws = this.#ws;
    if (ws === null || ws.readyState !== ws.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  #request<T>(message: ClientMessage): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#state === "closed") {
        reject(new ChartsConnectionError(`The socket of chart ${this.chartId} is closed.`));
        return;
      }
      const requestId = this.#nextRequestId++;
      const dispatch = (): void => {
        this.#pending.set(requestId, { resolve: resolve as (message: never) => void, reject });
        if (!this.send({ ...message, requestId } as ClientMessage)) {
          // Closing, its close event still to come: sent on the next connection instead.
          this.#pending.delete(requestId);
          this.#queue.push({ dispatch, reject });
        }
      };
      if (this.#state === "connected") dispatch();
      else this.#queue.push({ dispatch, reject });
      if (this.#state === "idle") this.connect();
    });
  }

  async #open(): Promise<void> {
    let ws: WebSocket;
    try {
      const { url, protocols } = await this.#settings.endpoint(this.chartId);
      if (this.#state === "closed") return;
      ws = new this.#settings.WebSocket(url, protocols);
    } catch (error) {
      this.#dropped(error instanceof Error ? error.message : String(error));
      return;
    }
    this.#ws = ws;
    this.#lastFrameAt = Date.now();
    ws.addEventListener("message", (event: MessageEvent) => {
      if (this.#ws === ws) this.#receive(event.data);
    });
    ws.addEventListener("close", (event: CloseEvent) => {
      if (this.#ws !== ws) return;
      this.#detach();
      const reason = event.reason || `code ${event.code}`;
      if (PERMANENT_REASONS.includes(event.reason)) this.close(reason);
      else this.#dropped(reason);
    });
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => this.#checkAlive(ws), this.#settings.heartbeatMs);
  }

  #checkAlive(ws: WebSocket): void {
    if (this.#ws !== ws) return;
    const silent = Date.now() - this.#lastFrameAt;
    if (silent >= 2 * this.#settings.heartbeatMs) {
      // No frame, not even a pong: the connection is dead without having said so.
      this.#detach();
      ws.close(CLOSE_SILENT, "no frames from the server");
      this.#dropped("no frames from the server");
    } else if (silent >= this.#settings.heartbeatMs && this.#state === "connected") {
      this.send({ type: "ping" });
    }
  }

  #detach(): void {
    this.#ws = null;
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  #dropped(reason: string): void {
    this.#resuming = false;
    const lost = new ChartsConnectionError(`The socket of chart ${this.chartId} closed: ${reason}.`);
    for (const pending of this.#pending.values()) pending.reject(lost);
    this.#pending.clear();
    if (this.#state === "closed") return;
    this.#attempt += 1;
    const delayMs = reconnectDelay(this.#attempt, this.#settings.reconnect);
    this.#setState("reconnecting", { delayMs, reason });
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => void this.#open(), delayMs);
  }

  #receive(data: unknown): void {
    this.#lastFrameAt = Date.now();
    if (typeof data !== "string") return;
    let message: ServerMessage;
    try {
      message = JSON.parse(data) as ServerMessage;
    } catch {
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
        if (message.version !== undefined) this.#version = message.version;
        this.emit("resync", message);
        break;
      case "history_response":
        if ("error" in message) this.#settle(message.requestId, refused(message));
        else this.#settle(message.requestId, message);
        break;
      case "error":
        if (!this.#settle(message.requestId, refused(message))) this.emit("error", refused(message));
        break;
      default:
        this.#settle(message.requestId, message);
    }
  }

  /** Resolve (or, given an error, reject) the request `requestId`; false when none waits. */
  #settle(requestId: RequestId | undefined, outcome: ServerMessage | Error): boolean {
    if (requestId === undefined) return false;
    const pending = this.#pending.get(requestId);
    if (pending === undefined) return false;
    this.#pending.delete(requestId);
    if (outcome instanceof Error) pending.reject(outcome);
    else pending.resolve(outcome as never);
    return true;
  }

  #connected(message: ConnectedMessage): void {
    this.#attempt = 0;
    const resume = this.#version;
    if (resume === null) this.#version = message.version;
    this.#setState("connected");
    // Subscriptions first: a resume replays the bars of the subscribed resolutions too.
    for (const { request } of this.#subscriptions.values()) this.send(request);
    if (resume !== null) {
      this.#resuming = true;
      this.send({ type: "resume", sinceVersion: resume });
    }
    const queued = this.#queue;
    this.#queue = [];
    for (const request of queued) request.dispatch();
    this.emit("connected", message);
  }

  #update(message: DataUpdate): void {
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
    if (message.version <= known) return; // delivered already (a replay)
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

  #failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    for (const queued of this.#queue) queued.reject(error);
    this.#queue = [];
  }

  #setState(state: ConnectionState, detail: { delayMs?: number; reason?: string } = {}): void {
    const previous = this.#state;
    this.#state = state;
    this.emit("state", { state, previous, attempt: this.#attempt, ...detail });
  }
}

function subscriptionKey(paneId: number, seriesId: string, resolution: string): string {
  return `${paneId}/${seriesId}/${canonicalResolution(resolution)}`;
}

function refused(message: { error: string; errorCode: string; requestId?: RequestId }): ChartsError {
  const body = { detail: message.error, errorCode: message.errorCode };
  return new ChartsError(0, body, { requestId: message.requestId });
}
