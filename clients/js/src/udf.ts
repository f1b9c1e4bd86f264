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
  /** Answer with no older version of the chart. Default, for a ticker: the version of the
   * client's own last write of its chart (`client.versionOf`), as on the client's other reads. */
  minVersion?: number;
  signal?: AbortSignal;
}

/** A series of the service, as a ticker names it. */
export interface SeriesRef {
  chartId: string;
  paneId: number;
  seriesId: string;
}

const TICKER = /^([A-Za-z0-9_.-]{1,128})~([0-9]{1,3})~([A-Za-z0-9_.-]{1,128})$/;

/** The series a ticker (`<chartId>~<paneId>~<seriesId>`) names; null for any other text. */
export function seriesOfTicker(ticker: string | undefined): SeriesRef | null {
  const match = ticker === undefined ? null : TICKER.exec(ticker);
  if (match === null) return null;
  const [, chartId, paneId, seriesId] = match as unknown as [string, string, string, string];
  return { chartId, paneId: Number(paneId), seriesId };
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
  readonly #minVersion: (chartId: string) => number | undefined;

  /** `path`: the service's `UDF_PATH`, relative to the client's base URL; `minVersion`: the
   * version a read of a chart is to see at least (the client's last write of it). */
  constructor(http: Http, path: string, minVersion: (chartId: string) => number | undefined = () => undefined) {
    this.#http = http;
    this.#path = path.replace(/^\/+|\/+$/g, "");
    this.#minVersion = minVersion;
  }

  /** What the datafeed supports, with the exchanges and symbol types of the caller's symbols. */
  async config(options: { signal?: AbortSignal } = {}): Promise<UdfConfig> {
    return this.#get("config", {}, options.signal);
  }

  /** One symbol's info; for a ticker, at the version of the client's own last write of its
   * chart (`min_version`) unless `minVersion` is given. */
  async symbol(
    symbol: string,
    options: { signal?: AbortSignal; minVersion?: number } = {},
  ): Promise<UdfSymbolInfo> {
    const series = seriesOfTicker(symbol);
    const minVersion = options.minVersion ?? (series === null ? undefined : this.#minVersion(series.chartId));
    return this.#get("symbols", { symbol, min_version: minVersion }, options.signal);
  }

  async search(query: UdfSearchQuery): Promise<UdfSearchItem[]> {
    const { query: text, type, exchange, limit, signal } = query;
    return this.#get("search", { query: text, type, exchange, limit }, signal);
  }

  async history(query: UdfHistoryQuery): Promise<UdfHistory> {
    const { symbol, resolution, from, to, countback, signal } = query;
    const series = seriesOfTicker(symbol);
    const minVersion = query.minVersion ?? (series === null ? undefined : this.#minVersion(series.chartId));
    return this.#get("history", { symbol, resolution, from, to, countback, min_version: minVersion }, signal);
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
