import type { IChartApi, ISeriesApi, LogicalRange, SeriesType as ChartSeriesType } from "lightweight-charts";

import type { ChartsClient, SocketLease } from "./client.js";
import { Emitter } from "./emitter.js";
import { ChartsConnectionError, ChartsError } from "./errors.js";
import { ascending, mergePoints } from "./points.js";
import type { DataUpdate, HistoryRequest, Point } from "./protocol.js";
import { canonicalResolution } from "./resolution.js";
import type { ChartSocket } from "./socket.js";

export interface BindSeriesOptions {
  client: ChartsClient;
  chartId: string;
  seriesId: string;
  /** Default 0. */
  paneId?: number;
  /** A TradingView resolution (`"1"`, `"5"`, `"60"`, `"1D"`, `"1W"`...) to show bars
   * aggregated by the server; null or absent for the stored points. */
  resolution?: string | null;
  /** Points per load (the newest chunk, then each older one). Default 500. */
  chunkSize?: number;
  /** Older points are asked for when fewer than this many of the series' bars are left of
   * the visible range. Default 50. */
  loadMargin?: number;
}

export interface SeriesBindingEvents {
  /** The newest chunk was drawn (first load, resolution switch, refetch). */
  loaded: { count: number; totalCount: number; hasMoreBefore: boolean; resolution: string | null };
  /** Older points were asked for. */
  historyRequested: { beforeTime: number; count: number };
  /** Older points were drawn before the others, the view kept where it was. */
  prepended: { count: number; hasMoreBefore: boolean };
  /** Live points were drawn: with `series.update` (`redrawn` false) or merged (true). */
  updated: { points: Point[]; redrawn: boolean };
  /** The series does not exist (yet, or any more); it is loaded when it is written. */
  missing: { reason: string };
  /** A load failed (other than by a lost connection, which is retried by itself). Without a
   * listener, reported as an uncaught error. */
  error: Error;
}

/** More points than this in one update are merged and drawn with one `setData`. */
const BULK_UPDATE = 100;
const MISSING_CODES = new Set(["SERIES_NOT_FOUND", "CHART_NOT_FOUND"]);

/** A Lightweight Charts series kept equal to a series of the service. Made by `bindSeries`. */
export class SeriesBinding extends Emitter<SeriesBindingEvents> {
  readonly chart: IChartApi;
  readonly series: ISeriesApi<ChartSeriesType>;
  readonly chartId: string;
  readonly paneId: number;
  readonly seriesId: string;
  readonly chunkSize: number;
  readonly loadMargin: number;
  /** Settles when the first load has been drawn (or has failed; see the `error` event). */
  readonly ready: Promise<void>;
  readonly #lease: SocketLease;
  readonly #socket: ChartSocket;
  readonly #cleanups: (() => void)[] = [];
  #resolution: string | null;
  #data: Point[] = [];
  #hasMoreBefore = false;
  #totalCount = 0;
  #generation = 0;
  #loading = true;
  #loadingOlder = false;
  #redrawing = false;
  #disposed = false;

  constructor(chart: IChartApi, series: ISeriesApi<ChartSeriesType>, options: BindSeriesOptions) {
    super();
    this.chart = chart;
    this.series = series;
    this.chartId = options.chartId;
    this.paneId = options.paneId ?? 0;
    this.seriesId = options.seriesId;
    this.chunkSize = options.chunkSize ?? 500;
    this.loadMargin = options.loadMargin ?? 50;
    this.#resolution = options.resolution ?? null;
    this.#lease = options.client.lease(this.chartId);
    this.#socket = this.#lease.socket;

    const timeScale = chart.timeScale();
    const onRange = (range: LogicalRange | null): void => this.#maybeLoadOlder(range);
    timeScale.subscribeVisibleLogicalRangeChange(onRange);
    this.#cleanups.push(
      () => timeScale.unsubscribeVisibleLogicalRangeChange(onRange),
      this.#socket.on("update", (update) => this.#onUpdate(update)),
      this.#socket.on("resync", () => this.#refetch()),
      this.#socket.on("connected", () => this.#maybeLoadOlder(timeScale.getVisibleLogicalRange())),
    );
    this.ready = this.#start();
  }

  /** The points drawn, ascending (do not modify). */
  get data(): readonly Point[] {
    return this.#data;
  }

  get hasMoreBefore(): boolean {
    return this.#hasMoreBefore;
  }

  /** Points (or bars at the resolution) the series holds on the server. */
  get totalCount(): number {
    return this.#totalCount;
  }

  get resolution(): string | null {
    return this.#resolution;
  }

  /** Whether the newest chunk is being (re)loaded. */
  get loading(): boolean {
    return this.#loading;
  }

  /** Show the series at another resolution (null: the stored points): subscribes to its live
   * bars and loads its newest chunk. Rejects with `ChartsError` when the server refuses the
   * resolution, leaving the series as it was. */
  async setResolution(resolution: string | null): Promise<void> {
    if (resolution === this.#resolution || this.#disposed) return;
    if (resolution !== null) {
      try {
        await this.#subscribe(resolution);
      } catch (error) {
        this.#unsubscribe(resolution);
        throw error;
      }
      if (this.#disposed) {
        this.#unsubscribe(resolution);
        return;
      }
    }
    // Read after the wait: another switch may have happened meanwhile.
    const previous = this.#resolution;
    if (previous !== null) this.#unsubscribe(previous);
    this.#resolution = resolution;
    await this.reload();
  }

  /** Load the newest chunk again and draw it in place of everything loaded. */
  async reload(): Promise<void> {
    const generation = ++this.#generation;
    this.#loading = true;
    this.#loadingOlder = false;
    let chunk;
    try {
      chunk = await this.#socket.requestHistory(this.#historyRequest({ count: this.chunkSize }));
    } catch (error) {
      if (generation !== this.#generation) return;
      if (error instanceof ChartsConnectionError && this.#socket.state !== "closed") {
        return this.reload(); // sent again once reconnected
      }
      this.#loading = false;
      if (error instanceof ChartsError && MISSING_CODES.has(error.errorCode)) {
        this.#show([], 0, false);
        this.emit("missing", { reason: error.message });
        return;
      }
      throw error;
    }
    if (generation !== this.#generation) return;
    this.#loading = false;
    this.#show(chunk.data, chunk.totalCount, chunk.hasMoreBefore);
    this.emit("loaded", {
      count: chunk.data.length,
      totalCount: chunk.totalCount,
      hasMoreBefore: chunk.hasMoreBefore,
      resolution: this.#resolution,
    });
    this.#maybeLoadOlder(this.chart.timeScale().getVisibleLogicalRange());
  }

  /** Stop following the series; the chart and the series stay as they are. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#generation += 1;
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
    if (this.#resolution !== null) this.#unsubscribe(this.#resolution);
    this.#lease.release();
    this.removeAllListeners();
  }

  async #start(): Promise<void> {
    try {
      if (this.#resolution !== null) await this.#subscribe(this.#resolution);
      await this.reload();
    } catch (error) {
      this.#fail(error);
    }
  }

  #refetch(): void {
    if (!this.#disposed) this.reload().catch((error: unknown) => this.#fail(error));
  }

  async #subscribe(resolution: string): Promise<void> {
    try {
      await this.#socket.subscribe(this.paneId, this.seriesId, resolution);
    } catch (error) {
      // A lost connection is not a refusal: the socket subscribes again once reconnected.
      if (!(error instanceof ChartsConnectionError)) throw error;
    }
  }

  #unsubscribe(resolution: string): void {
    this.#socket.unsubscribe(this.paneId, this.seriesId, resolution).catch(() => undefined);
  }

  #historyRequest(fields: Partial<HistoryRequest>): Omit<HistoryRequest, "type" | "requestId"> {
    const request = { paneId: this.paneId, seriesId: this.seriesId, ...fields };
    return this.#resolution === null ? request : { ...request, resolution: this.#resolution };
  }

  #show(data: Point[], totalCount: number, hasMoreBefore: boolean): void {
    this.#data = data;
    this.#totalCount = totalCount;
    this.#hasMoreBefore = hasMoreBefore;
    this.series.setData(data as never[]);
  }

  #onUpdate(update: DataUpdate): void {
    if (update.op === "chart_deleted") {
      this.#generation += 1;
      this.#loading = false;
      this.#show([], 0, false);
      this.emit("missing", { reason: "the chart was deleted" });
      return;
    }
    if (update.paneId !== this.paneId || update.seriesId !== this.seriesId) return;
    const resolution = this.#resolution === null ? null : canonicalResolution(this.#resolution);
    if ((update.resolution ?? null) !== resolution) return; // the server writes "D" as "1D"
    if (update.op === "upsert" && update.data !== undefined) {
      // While the newest chunk loads, updates are in it already (the socket keeps the order).
      if (!this.#loading) this.#apply(update.data);
    } else if (update.op === "delete") {
      this.#generation += 1;
      this.#loading = false;
      this.#show([], 0, false);
      this.emit("missing", { reason: "the series was deleted" });
    } else if (update.op !== "options") {
      this.#refetch(); // replaced, or bars to fetch again
    }
  }

  #apply(received: Point[]): void {
    const points = ascending(received);
    const last = this.#data.at(-1);
    const appending = last === undefined || (points[0] as Point).time >= last.time;
    if (appending && points.length <= BULK_UPDATE) {
      for (const point of points) {
        const data = this.#data;
        if (data.length > 0 && (data[data.length - 1] as Point).time === point.time) {
          data[data.length - 1] = point;
        } else {
          data.push(point);
          this.#totalCount += 1;
        }
        this.series.update(point as never);
      }
      this.emit("updated", { points, redrawn: false });
      return;
    }
    // Corrections of older bars (the library updates only the last one), or a bulk write.
    const first = this.#data[0];
    const kept = this.#hasMoreBefore && first !== undefined ? points.filter((p) => p.time >= first.time) : points;
    if (kept.length === 0) return; // older than what is loaded: history brings them
    const before = this.#data.length;
    this.#redraw(mergePoints(this.#data, kept));
    this.#totalCount += this.#data.length - before;
    this.emit("updated", { points: kept, redrawn: true });
  }

  #maybeLoadOlder(range: LogicalRange | null): void {
    // Not while drawing: the library reports the range before the view is moved back.
    if (this.#disposed || range === null || this.#loading || this.#loadingOlder || this.#redrawing) return;
    if (!this.#hasMoreBefore || this.#data.length === 0) return;
    const bars = this.series.barsInLogicalRange(range);
    if (bars !== null && bars.barsBefore > this.loadMargin) return;
    void this.#loadOlder();
  }

  async #loadOlder(): Promise<void> {
    const generation = this.#generation;
    const beforeTime = (this.#data[0] as Point).time;
    this.#loadingOlder = true;
    this.emit("historyRequested", { beforeTime, count: this.chunkSize });
    let chunk;
    try {
      chunk = await this.#socket.requestHistory(this.#historyRequest({ beforeTime, count: this.chunkSize }));
    } catch (error) {
      if (generation !== this.#generation) return;
      this.#loadingOlder = false;
      // After a lost connection, the next `connected` looks at the range again.
      if (!(error instanceof ChartsConnectionError)) this.#fail(error);
      return;
    }
    if (generation !== this.#generation) return;
    this.#loadingOlder = false;
    const first = this.#data[0]?.time ?? Number.POSITIVE_INFINITY;
    const older = chunk.data.filter((point) => point.time < first);
    this.#hasMoreBefore = chunk.hasMoreBefore;
    this.#totalCount = chunk.totalCount;
    if (older.length > 0) this.#redraw(older.concat(this.#data));
    this.emit("prepended", { count: older.length, hasMoreBefore: chunk.hasMoreBefore });
    this.#maybeLoadOlder(this.chart.timeScale().getVisibleLogicalRange());
  }

  /** Draw `data` in place of the series' points, keeping in view the bars that were: the
   * library has no prepend, and bars added before the view move it by as many logical
   * indexes, so the visible range is shifted back by that many. */
  #redraw(data: Point[]): void {
    const timeScale = this.chart.timeScale();
    const range = timeScale.getVisibleLogicalRange();
    const anchor = timeScale.getVisibleRange()?.from;
    const before = anchor === undefined ? null : timeScale.timeToIndex(anchor, false);
    this.#data = data;
    this.#redrawing = true;
    try {
      this.series.setData(data as never[]);
      if (range === null || anchor === undefined || before === null) return;
      const after = timeScale.timeToIndex(anchor, false);
      if (after === null) return;
      const shift = after - before;
      const now = timeScale.getVisibleLogicalRange();
      if (now === null || now.from !== range.from + shift || now.to !== range.to + shift) {
        timeScale.setVisibleLogicalRange({ from: range.from + shift, to: range.to + shift });
      }
    } finally {
      this.#redrawing = false;
    }
  }

  #fail(error: unknown): void {
    if (this.#disposed) return;
    const failure = error instanceof Error ? error : new Error(String(error));
    if (this.listenerCount("error") > 0) this.emit("error", failure);
    else if (typeof globalThis.reportError === "function") globalThis.reportError(failure);
    else console.error(failure);
  }
}

/** Keep a Lightweight Charts series equal to a series of the service: its newest chunk first,
 * older chunks as the view nears the left edge (the view stays where it was), live bars with
 * `series.update`, corrections of older bars merged, refetches after a replace or a lost
 * update, reconnection with resume.
 *
 * ```ts
 * const client = new ChartsClient({ token });
 * const chart = createChart(element, { autoSize: true });
 * const candles = chart.addSeries(CandlestickSeries);
 * const binding = bindSeries(chart, candles, { client, chartId: "btc", seriesId: "price" });
 * await binding.setResolution("60"); // hourly bars, aggregated by the server
 * binding.dispose();
 * ```
 */
export function bindSeries(
  chart: IChartApi,
  series: ISeriesApi<ChartSeriesType>,
  options: BindSeriesOptions,
): SeriesBinding {
  return new SeriesBinding(chart, series, options);
}

