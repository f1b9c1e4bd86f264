import type { Http } from "./http.js";
import type {
  UdfConfig,
  UdfHistory,
  UdfMark,
  UdfSearchItem,
  UdfSymbolInfo,
  UdfTimescaleMark,
} from "./protocol.js";

export interface UdfHistoryQuery {
  /** A ticker (`chart~0~series`), a symbol name, or `EXCHANGE:NAME`. */
  symbol: string;
  /** A TradingView resolution: `1S`, `1`, `60`, `1D`, `1W`, `1M`... */
  resolution: string;
  /** Unix seconds, exclusive. */
  to: number;
  /** Unix seconds, inclusive; ignored with `countback`. */
  from?: number;
  /** This many bars before `to`. */
  countback?: number;
  signal?: AbortSignal;
}

export interface UdfSearchQuery {
  query: string;
  type?: string;
  exchange?: string;
  /** Default 30 (the server's). */
  limit?: number;
  signal?: AbortSignal;
}

export interface UdfMarksQuery {
  symbol: string;
  /** Unix seconds, inclusive. */
  from: number;
  /** Unix seconds, inclusive. */
  to: number;
  /** Place each mark at the time of its bar at this resolution. */
  resolution?: string;
  signal?: AbortSignal;
}

/** The service's TradingView UDF routes (`client.udf`), with the client's credentials. Refusals
 * reject with `ChartsError` (`errorCode` `UNKNOWN_SYMBOL` for a symbol the caller cannot see).
 *
 * ```ts
 * const info = await client.udf.symbol("ACME");
 * const bars = await client.udf.history({ symbol: info.ticker, resolution: "60", to: now, countback: 300 });
 * ```
 */
export class UdfApi {
  readonly #http: Http;
  readonly #path: string;

  /** `path`: the service's `UDF_PATH`, relative to the client's base URL. */
  constructor(http: Http, path: string) {
    this.#http = http;
    this.#path = path.replace(/^\/+|\/+$/g, "");
  }

  /** What the datafeed supports, with the exchanges and symbol types of the caller's symbols. */
  async config(options: { signal?: AbortSignal } = {}): Promise<UdfConfig> {
    return this.#get("config", {}, options.signal);
  }

  async symbol(symbol: string, options: { signal?: AbortSignal } = {}): Promise<UdfSymbolInfo> {
    return this.#get("symbols", { symbol }, options.signal);
  }

  async search(query: UdfSearchQuery): Promise<UdfSearchItem[]> {
    const { query: text, type, exchange, limit, signal } = query;
    return this.#get("search", { query: text, type, exchange, limit }, signal);
  }

  async history(query: UdfHistoryQuery): Promise<UdfHistory> {
    const { symbol, resolution, from, to, countback, signal } = query;
    return this.#get("history", { symbol, resolution, from, to, countback }, signal);
  }

  async marks(query: UdfMarksQuery): Promise<UdfMark[]> {
    const { symbol, from, to, resolution, signal } = query;
    return this.#get("marks", { symbol, from, to, resolution }, signal);
  }

  async timescaleMarks(query: UdfMarksQuery): Promise<UdfTimescaleMark[]> {
    const { symbol, from, to, resolution, signal } = query;
    return this.#get("timescale_marks", { symbol, from, to, resolution }, signal);
  }

  /** The server's clock, unix seconds. */
  async time(options: { signal?: AbortSignal } = {}): Promise<number> {
    return Number(await this.#get<number>("time", {}, options.signal));
  }

  async #get<T>(route: string, query: Record<string, string | number | undefined>, signal?: AbortSignal): Promise<T> {
    const path = this.#path === "" ? route : `${this.#path}/${route}`;
    return (await this.#http.request<T>({ method: "GET", path, query, signal })).body;
  }
}
