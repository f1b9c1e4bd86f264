import { ChartsError } from "./errors.js";
import { canonicalResolution } from "./resolution.js";
import { seriesOfTicker } from "./udf.js";
/** Used when `/udf/config` cannot be read. */
const FALLBACK_CONFIGURATION = {
    supported_resolutions: ["1", "5", "15", "30", "60", "240", "1D", "1W", "1M"],
    supports_search: true,
    supports_group_request: false,
    supports_marks: false,
    supports_timescale_marks: false,
    supports_time: false,
};
const UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL";
/** TradingView's JS Datafeed API over the service: symbols, search and history bars from its UDF
 * routes, live bars from the chart's WebSocket at the resolution of each subscription. Made by
 * `createDatafeed`. Every callback is called asynchronously, as the library expects. */
export class ChartsDatafeed {
    client;
    #configuration;
    #searchLimit;
    #onError;
    /** The newest bar time (ms) the library holds, by ticker and resolution. */
    #newest = new Map();
    #listeners = new Map();
    #feeds = new Map();
    constructor(options) {
        this.client = options.client;
        this.#configuration = options.configuration ?? {};
        this.#searchLimit = options.searchLimit ?? 30;
        this.#onError = options.onError ?? ((error) => console.warn("createDatafeed:", error));
    }
    onReady(callback) {
        this.client.udf.config().then((config) => later(() => callback({ ...config, ...this.#configuration })), (error) => {
            this.#report(error);
            later(() => callback({ ...FALLBACK_CONFIGURATION, ...this.#configuration }));
        });
    }
    searchSymbols(userInput, exchange, symbolType, onResult) {
        const query = { query: userInput, exchange, type: symbolType, limit: this.#searchLimit };
        this.client.udf.search(query).then((items) => later(() => onResult(items)), (error) => {
            this.#report(error);
            later(() => onResult([]));
        });
    }
    /** `symbolName`: a ticker (`chart~0~series`), a symbol's name, or `EXCHANGE:NAME`. */
    resolveSymbol(symbolName, onResolve, onError, _extension) {
        this.client.udf.symbol(symbolName).then((info) => later(() => onResolve(librarySymbolInfo(info))), (error) => later(() => onError(reasonOf(error))));
    }
    /** `/udf/history`; a symbol with the service's ticker is read from no older version of its
     * chart than the client's own last write of it (`min_version`), whichever worker answers. */
    getBars(symbolInfo, resolution, periodParams, onResult, onError) {
        const { from, to, countBack, firstDataRequest } = periodParams;
        const symbol = symbolOf(symbolInfo);
        const key = barKey(symbol, resolution);
        const query = { symbol, resolution, to, from, ...(countBack > 0 ? { countback: countBack } : {}) };
        this.client.udf.history(query).then((answer) => {
            if (answer.s === "no_data") {
                if (firstDataRequest)
                    this.#newest.delete(key);
                const meta = { noData: true };
                if (answer.nextTime !== undefined)
                    meta.nextTime = answer.nextTime;
                later(() => onResult([], meta));
                return;
            }
            const bars = barsOf(answer);
            const last = bars.at(-1);
            if (firstDataRequest && last !== undefined)
                this.#newest.set(key, last.time);
            later(() => onResult(bars, { noData: false }));
        }, (error) => later(() => onError(reasonOf(error))));
    }
    /** Live bars of the symbol at `resolution`: `onTick` gets the newest bar each time it
     * changes (never an older one); a change of an older bar, a replaced series and updates lost
     * while disconnected call `onResetCacheNeeded` instead. */
    subscribeBars(symbolInfo, resolution, onTick, listenerGuid, onResetCacheNeeded) {
        this.unsubscribeBars(listenerGuid);
        const symbol = symbolOf(symbolInfo);
        const listener = {
            guid: listenerGuid,
            key: barKey(symbol, resolution),
            resolution: canonicalResolution(resolution),
            onTick,
            onReset: onResetCacheNeeded,
            active: true,
        };
        this.#listeners.set(listenerGuid, listener);
        const series = seriesOfTicker(symbolInfo.ticker);
        if (series !== null) {
            this.#follow(listener, series);
            return;
        }
        // A symbol info made elsewhere, without the service's ticker: ask for it.
        this.client.udf
            .symbol(symbol)
            .then((info) => {
            const found = seriesOfTicker(info.ticker);
            if (found === null)
                throw new TypeError(`The symbol ${symbol} names no series: ticker ${info.ticker}.`);
            if (listener.active)
                this.#follow(listener, found);
        })
            .catch((error) => this.#report(error));
    }
    unsubscribeBars(listenerGuid) {
        const listener = this.#listeners.get(listenerGuid);
        if (listener === undefined)
            return;
        this.#listeners.delete(listenerGuid);
        listener.active = false;
        const series = listener.series;
        if (series === undefined)
            return;
        const feed = this.#feeds.get(series.chartId);
        if (feed === undefined || !feed.listeners.delete(listener))
            return;
        // The socket counts subscriptions: the server stops streaming with the last one of the
        // client (of this datafeed, another datafeed or a binding).
        feed.lease.socket.unsubscribe(series.paneId, series.seriesId, listener.resolution).catch(() => undefined);
        if (feed.listeners.size === 0) {
            this.#feeds.delete(series.chartId);
            feed.stop();
            feed.lease.release();
        }
    }
    getServerTime(callback) {
        this.client.udf.time().then((time) => later(() => callback(time)), (error) => this.#report(error));
    }
    getMarks(symbolInfo, from, to, onDataCallback, resolution) {
        this.client.udf.marks({ symbol: symbolOf(symbolInfo), from, to, resolution }).then((marks) => later(() => onDataCallback(marks)), (error) => {
            this.#report(error);
            later(() => onDataCallback([]));
        });
    }
    getTimescaleMarks(symbolInfo, from, to, onDataCallback, resolution) {
        this.client.udf.timescaleMarks({ symbol: symbolOf(symbolInfo), from, to, resolution }).then((marks) => later(() => onDataCallback(marks)), (error) => {
            this.#report(error);
            later(() => onDataCallback([]));
        });
    }
    #follow(listener, series) {
        listener.series = series;
        let feed = this.#feeds.get(series.chartId);
        if (feed === undefined) {
            const lease = this.client.lease(series.chartId);
            const listeners = new Set();
            const offUpdate = lease.socket.on("update", (update) => this.#onUpdate(listeners, update));
            // Updates were lost (a gap or a reconnection the server could not replay).
            const offResync = lease.socket.on("resync", () => listeners.forEach(reset));
            const stop = () => {
                offUpdate();
                offResync();
            };
            feed = { lease, listeners, stop };
            this.#feeds.set(series.chartId, feed);
        }
        feed.listeners.add(listener);
        feed.lease.socket.subscribe(series.paneId, series.seriesId, listener.resolution).catch((error) => {
            // A lost connection is not a refusal: the socket subscribes again once reconnected.
            if (error instanceof ChartsError)
                this.#report(error);
        });
    }
    #onUpdate(listeners, update) {
        if (update.op === "chart_deleted") {
            listeners.forEach(reset);
            return;
        }
        if (update.resolution === undefined || update.op === "options")
            return;
        for (const listener of listeners) {
            const series = listener.series;
            if (series.paneId !== update.paneId || series.seriesId !== update.seriesId)
                continue;
            if (listener.resolution !== update.resolution)
                continue;
            if (update.op === "upsert" && update.data !== undefined)
                this.#tick(listener, update.data);
            else
                reset(listener); // replaced or deleted: the bars are to be read again
        }
    }
    /** Pass the library the bars at or after the newest it holds; a change of an older one
     * (the library refuses it in `onTick`) has it read the bars again. */
    #tick(listener, points) {
        const bars = points.map(barOf).filter((bar) => bar !== null);
        bars.sort((a, b) => a.time - b.time);
        let newest = this.#newest.get(listener.key) ?? Number.NEGATIVE_INFINITY;
        let older = false;
        for (const bar of bars) {
            if (bar.time < newest) {
                older = true;
                continue;
            }
            newest = bar.time;
            later(() => {
                if (listener.active)
                    listener.onTick(bar);
            });
        }
        if (newest !== Number.NEGATIVE_INFINITY)
            this.#newest.set(listener.key, newest);
        if (older)
            reset(listener);
    }
    #report(error) {
        this.#onError(error instanceof Error ? error : new Error(String(error)));
    }
}
/** TradingView's JS Datafeed API over the service, for Advanced Charts and the Charting Library:
 * `onReady`, `searchSymbols`, `resolveSymbol`, `getBars` (with `countBack`, paging back until
 * `noData`), `subscribeBars` and `unsubscribeBars` (live bars at the chart's resolution over the
 * chart's WebSocket, with reconnection and resume), `getServerTime`, `getMarks`,
 * `getTimescaleMarks`. A series is a symbol when its `market` has a `symbol`.
 *
 * ```ts
 * const client = new ChartsClient({ token });
 * new TradingView.widget({
 *   container: "chart", library_path: "charting_library/",
 *   datafeed: createDatafeed({ client }), symbol: "ACME", interval: "60",
 * });
 * ```
 */
export function createDatafeed(options) {
    return new ChartsDatafeed(options);
}
function later(callback) {
    setTimeout(callback, 0);
}
function reset(listener) {
    later(() => {
        if (listener.active)
            listener.onReset();
    });
}
function reasonOf(error) {
    if (error instanceof ChartsError)
        return error.errorCode === UNKNOWN_SYMBOL ? "unknown_symbol" : error.detail;
    return error instanceof Error ? error.message : String(error);
}
function librarySymbolInfo(info) {
    const fullName = info.exchange === "" ? info.name : `${info.exchange}:${info.name}`;
    const listed = info.listed_exchange === "" ? info.name : `${info.listed_exchange}:${info.name}`;
    return { ...info, full_name: fullName, base_name: [listed] };
}
function symbolOf(symbolInfo) {
    return symbolInfo.ticker ?? symbolInfo.full_name ?? symbolInfo.name;
}
function barKey(symbol, resolution) {
    return `${symbol} ${canonicalResolution(resolution)}`;
}
function barsOf(answer) {
    const { t, o, h, l, c, v } = answer;
    return t.map((time, i) => {
        const close = c[i];
        const bar = { time: time * 1000, open: o?.[i] ?? close, high: h?.[i] ?? close, low: l?.[i] ?? close, close };
        const volume = v?.[i];
        if (volume !== undefined)
            bar.volume = volume;
        return bar;
    });
}
/** A streamed bar as the library takes it; null for whitespace (a time without values). */
function barOf(point) {
    const time = point.time * 1000;
    const { open, high, low, close, value, volume } = point;
    let bar;
    if (typeof close === "number") {
        bar = { time, open: number(open, close), high: number(high, close), low: number(low, close), close };
    }
    else if (typeof value === "number") {
        bar = { time, open: value, high: value, low: value, close: value };
    }
    else {
        return null;
    }
    if (typeof volume === "number")
        bar.volume = volume;
    return bar;
}
function number(value, otherwise) {
    return typeof value === "number" ? value : otherwise;
}
