import { DEFAULT_RECONNECT, type ReconnectOptions } from "./backoff.js";
import { Http, type HttpRequest, type QueryValue, type TokenSource } from "./http.js";
import type {
  Annotation,
  AnnotationDraft,
  ChartCreated,
  ChartData,
  ChartList,
  HistoryChunk,
  Marker,
  Point,
  PointsWritten,
  RangeData,
  SeriesData,
  SeriesType,
  SeriesWritten,
  Written,
} from "./protocol.js";
import { ChartSocket, type WebSocketConstructor } from "./socket.js";
import { UdfApi } from "./udf.js";
import { VersionTokens } from "./versions.js";

export interface ChartsClientOptions {
  /** The service's URL. Default: the page's origin. */
  baseUrl?: string;
  /** A JWT (or a function giving the current one): `Authorization: Bearer` over REST,
   * `Sec-WebSocket-Protocol: bearer, <token>` on sockets. */
  token?: TokenSource;
  /** An API key, sent in `apiKeyHeader` over REST (and as the bearer token of sockets when
   * there is no `token`). Keep API keys out of pages; trade one for a token on a server. */
  apiKey?: string;
  /** Default `X-API-Key`. */
  apiKeyHeader?: string;
  /** Headers added to every REST request. */
  headers?: Record<string, string>;
  /** The service's `UDF_PATH` (TradingView's UDF routes, used by `client.udf` and
   * `createDatafeed`), relative to `baseUrl`. Default `udf`. */
  udfPath?: string;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Default: the global `WebSocket`. */
  WebSocket?: WebSocketConstructor;
  reconnect?: Partial<ReconnectOptions>;
  /** A socket silent this long is pinged, and reconnected when silent twice as long.
   * Default 20000. */
  heartbeatMs?: number;
}

export interface SeriesWrite {
  seriesType: SeriesType;
  data: Point[];
  paneId?: number;
  options?: Record<string, unknown>;
  /** Any other field of the replace body (such as `market` and `aggregation`). */
  [field: string]: unknown;
}

export interface HistoryOptions {
  /** Exclusive; with neither bound, the newest points. */
  beforeTime?: number;
  afterTime?: number;
  count?: number;
  /** A TradingView resolution (`"1"`, `"60"`, `"1D"`...): bars aggregated by the server. */
  resolution?: string;
  signal?: AbortSignal;
}

export interface ReadOptions {
  resolution?: string;
  signal?: AbortSignal;
}

export interface RangeOptions {
  /** Inclusive start, unix seconds (default: the first point). */
  from?: number;
  /** Exclusive end, unix seconds (default: after the last point). */
  to?: number;
  /** 2..20000; the server's default is 2000. */
  maxPoints?: number;
  signal?: AbortSignal;
}

/** A socket shared by its users: the connection closes when the last lease is released. */
export interface SocketLease {
  readonly socket: ChartSocket;
  release(): void;
}

/** The service's REST API and chart sockets.
 *
 * ```ts
 * const client = new ChartsClient({ baseUrl: "https://charts.example.com", token: jwt });
 * await client.createChart("btc");
 * await client.setSeries("btc", "price", { seriesType: "candlestick", data: candles });
 * await client.upsert("btc", "price", [{ time: 1700000060, open: 1, high: 2, low: 1, close: 2 }]);
 * const chunk = await client.history("btc", 0, "price", { beforeTime: 1700000000, count: 500 });
 * ```
 *
 * Reads of a chart carry the version of this client's last write to it as `min_version`, so
 * they see that write whichever worker or replica serves them. Refusals reject with
 * `ChartsError` (`status`, `errorCode`, `requestId`), an unreachable service with
 * `ChartsConnectionError`.
 */
export class ChartsClient {
  readonly baseUrl: string;
  /** The service's TradingView UDF routes, with this client's credentials. */
  readonly udf: UdfApi;
  readonly #http: Http;
  readonly #versions = new VersionTokens();
  readonly #token: TokenSource | undefined;
  readonly #apiKey: string | undefined;
  readonly #WebSocket: WebSocketConstructor | undefined;
  readonly #reconnect: ReconnectOptions;
  readonly #heartbeatMs: number;
  readonly #sockets = new Map<string, { socket: ChartSocket; leases: number }>();

  constructor(options: ChartsClientOptions = {}) {
    const origin = (globalThis as { location?: { origin?: string } }).location?.origin;
    const baseUrl = options.baseUrl ?? origin;
    if (baseUrl === undefined) throw new TypeError("ChartsClient needs a baseUrl outside a page.");
    this.baseUrl = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
    const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#token = options.token;
    this.#apiKey = options.apiKey;
    this.#http = new Http(
      this.baseUrl,
      fetchImpl,
      options.token,
      options.apiKey,
      options.apiKeyHeader ?? "X-API-Key",
      options.headers ?? {},
    );
    this.udf = new UdfApi(this.#http, options.udfPath ?? "udf", (chartId) => this.#versions.get(chartId));
    this.#WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    this.#reconnect = { ...DEFAULT_RECONNECT, ...options.reconnect };
    this.#heartbeatMs = options.heartbeatMs ?? 20_000;
  }

  /** The version of this client's newest write to the chart (sent as `min_version`). */
  versionOf(chartId: string): number | undefined {
    return this.#versions.get(chartId);
  }

  // ------------------------------------------------------------------ REST

  /** The charts the caller may see. */
  async listCharts(options: { signal?: AbortSignal } = {}): Promise<ChartList> {
    return this.#read({ method: "GET", path: "api/charts", signal: options.signal });
  }

  /** Create the chart (idempotent: an existing chart is returned as it is). */
  async createChart(chartId: string, options?: Record<string, unknown>): Promise<ChartCreated> {
    const { body, response } = await this.#http.request<ChartCreated>({
      method: "POST",
      path: chartPath(chartId),
      body: options ?? {},
    });
    // A new chart's versions start again; an existing one's only grow.
    if (response.status === 201) this.#versions.reset(chartId, body.version);
    else this.#versions.note(chartId, body.version);
    return body;
  }

  /** The chart with every series; large series come as their newest chunk. */
  async getChart(chartId: string, options: { signal?: AbortSignal } = {}): Promise<ChartData> {
    return this.#read({ method: "GET", path: chartPath(chartId), signal: options.signal }, chartId);
  }

  async deleteChart(chartId: string): Promise<Written> {
    const written = await this.#write(chartId, { method: "DELETE", path: chartPath(chartId) });
    this.#versions.reset(chartId);
    return written;
  }

  /** Replace the series (create it, or change its type, data and options). */
  async setSeries(chartId: string, seriesId: string, series: SeriesWrite): Promise<SeriesWritten> {
    const body = { paneId: 0, ...series };
    return this.#write(chartId, { method: "POST", path: `${chartPath(chartId)}/data/${segment(seriesId)}`, body });
  }

  /** Add or replace points by time: new bars, the live bar, corrections of older bars. */
  async upsert(
    chartId: string,
    seriesId: string,
    points: Point | Point[],
    options: { paneId?: number } = {},
  ): Promise<PointsWritten> {
    const data = Array.isArray(points) ? points : [points];
    return this.#write(chartId, {
      method: "PATCH",
      path: `${chartPath(chartId)}/data/${segment(seriesId)}`,
      body: { paneId: options.paneId ?? 0, data },
    });
  }

  /** One series; a large one comes as its newest chunk (`chunked`, `hasMoreBefore`). */
  async getSeries(chartId: string, paneId: number, seriesId: string, options: ReadOptions = {}): Promise<SeriesData> {
    return this.#read(
      {
        method: "GET",
        path: `${chartPath(chartId)}/data/${paneId}/${segment(seriesId)}`,
        query: { resolution: options.resolution },
        signal: options.signal,
      },
      chartId,
    );
  }

  async deleteSeries(chartId: string, paneId: number, seriesId: string): Promise<Written> {
    return this.#write(chartId, { method: "DELETE", path: `${chartPath(chartId)}/data/${paneId}/${segment(seriesId)}` });
  }

  /** A chunk of `count` points before `beforeTime` or after `afterTime` (the newest without
   * either), ascending. */
  async history(chartId: string, paneId: number, seriesId: string, options: HistoryOptions = {}): Promise<HistoryChunk> {
    const query: Record<string, QueryValue> = {
      before_time: options.beforeTime,
      after_time: options.afterTime,
      count: options.count,
      resolution: options.resolution,
    };
    return this.#read(
      {
        method: "GET",
        path: `${chartPath(chartId)}/history/${paneId}/${segment(seriesId)}`,
        query,
        signal: options.signal,
      },
      chartId,
    );
  }

  /** At most `maxPoints` points of `[from, to)` for a zoomed-out view: the stored points when
   * they fit; else bars at the finest resolution that fits (OHLC series, `resolution` says
   * which) or each stretch's first, lowest, highest and last point (value series). */
  async range(chartId: string, paneId: number, seriesId: string, options: RangeOptions = {}): Promise<RangeData> {
    const query = { from: options.from, to: options.to, max_points: options.maxPoints };
    const path = `${chartPath(chartId)}/range/${paneId}/${segment(seriesId)}`;
    return this.#read({ method: "GET", path, query, signal: options.signal }, chartId);
  }

  /** The annotations the caller may see whose anchors' time span overlaps `[from, to)`. */
  async listAnnotations(
    chartId: string,
    options: { from?: number; to?: number; paneId?: number; seriesId?: string; signal?: AbortSignal } = {},
  ): Promise<{ annotations: Annotation[] }> {
    const query = { from: options.from, to: options.to, pane_id: options.paneId, series_id: options.seriesId };
    return this.#read({ method: "GET", path: `${chartPath(chartId)}/annotations`, query, signal: options.signal });
  }

  async getAnnotation(chartId: string, annotationId: string, options: { signal?: AbortSignal } = {}): Promise<Annotation> {
    const path = `${chartPath(chartId)}/annotations/${segment(annotationId)}`;
    return this.#read({ method: "GET", path, signal: options.signal });
  }

  async createAnnotation(chartId: string, draft: AnnotationDraft): Promise<Annotation> {
    const request: HttpRequest = { method: "POST", path: `${chartPath(chartId)}/annotations`, body: draft };
    return (await this.#http.request<Annotation>(request)).body;
  }

  /** Change the fields given; `version` is the one read (a stale one is refused with 409
   * `ANNOTATION_CONFLICT`). */
  async updateAnnotation(
    chartId: string,
    annotationId: string,
    changes: Partial<AnnotationDraft> & { version: number },
  ): Promise<Annotation> {
    const path = `${chartPath(chartId)}/annotations/${segment(annotationId)}`;
    return (await this.#http.request<Annotation>({ method: "PATCH", path, body: changes })).body;
  }

  async deleteAnnotation(chartId: string, annotationId: string, options: { version?: number } = {}): Promise<void> {
    const path = `${chartPath(chartId)}/annotations/${segment(annotationId)}`;
    await this.#http.request({ method: "DELETE", path, query: { version: options.version } });
  }

  /** The series' markers, ready for `createSeriesMarkers`; with `resolution`, at bar starts. */
  async getMarkers(
    chartId: string,
    paneId: number,
    seriesId: string,
    options: { from?: number; to?: number; resolution?: string; signal?: AbortSignal } = {},
  ): Promise<{ seriesId: string; markers: Marker[] }> {
    const query = { from: options.from, to: options.to, resolution: options.resolution };
    const path = `${chartPath(chartId)}/markers/${paneId}/${segment(seriesId)}`;
    return this.#read({ method: "GET", path, query, signal: options.signal });
  }

  async #read<T>(request: HttpRequest, chartId?: string): Promise<T> {
    const minVersion = chartId === undefined ? undefined : this.#versions.get(chartId);
    if (minVersion !== undefined) request = { ...request, query: { ...request.query, min_version: minVersion } };
    return (await this.#http.request<T>(request)).body;
  }

  async #write<T extends Written>(chartId: string, request: HttpRequest): Promise<T> {
    const { body, response } = await this.#http.request<T | undefined>(request);
    const header = response.headers.get("X-Chart-Version");
    const version = body?.version ?? (header === null ? undefined : Number(header));
    this.#versions.note(chartId, version);
    return (body ?? { version }) as T;
  }

  // ------------------------------------------------------------------ WebSocket

  /** The chart's socket, shared by everything of this client that follows the chart; opened
   * now and kept until `close()` (use `lease` to let it close when no longer used). */
  socket(chartId: string): ChartSocket {
    return this.#acquire(chartId).socket;
  }

  /** The chart's shared socket for as long as the lease is held. */
  lease(chartId: string): SocketLease {
    const entry = this.#acquire(chartId);
    let held = true;
    return {
      socket: entry.socket,
      release: () => {
        if (!held) return;
        held = false;
        entry.leases -= 1;
        if (entry.leases === 0 && this.#sockets.get(chartId) === entry) {
          this.#sockets.delete(chartId);
          entry.socket.close("no longer used");
        }
      },
    };
  }

  /** Close every socket. */
  close(): void {
    for (const { socket } of this.#sockets.values()) socket.close();
    this.#sockets.clear();
  }

  #acquire(chartId: string): { socket: ChartSocket; leases: number } {
    let entry = this.#sockets.get(chartId);
    if (entry === undefined || entry.socket.state === "closed") {
      entry = { socket: this.#newSocket(chartId), leases: 0 };
      this.#sockets.set(chartId, entry);
      entry.socket.connect();
    }
    entry.leases += 1;
    return entry;
  }

  #newSocket(chartId: string): ChartSocket {
    const WebSocketImpl = this.#WebSocket;
    if (WebSocketImpl === undefined) {
      throw new TypeError("No WebSocket here: pass ChartsClient({ WebSocket }) (Node 20: --experimental-websocket).");
    }
    return new ChartSocket(chartId, {
      endpoint: async (id) => {
        const url = new URL(`ws/charts/${segment(id)}`, this.baseUrl);
        url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
        const token = (await this.#http.bearer()) ?? (this.#token === undefined ? this.#apiKey : undefined);
        return { url: url.toString(), protocols: token === undefined ? [] : ["bearer", token] };
      },
      WebSocket: WebSocketImpl,
      reconnect: this.#reconnect,
      heartbeatMs: this.#heartbeatMs,
      minVersion: (id) => this.#versions.get(id),
    });
  }
}

function segment(id: string): string {
  return encodeURIComponent(id);
}

function chartPath(chartId: string): string {
  return `api/charts/${segment(chartId)}`;
}
