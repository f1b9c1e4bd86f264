const TICKER = /^([A-Za-z0-9_.-]{1,128})~([0-9]{1,3})~([A-Za-z0-9_.-]{1,128})$/;
/** The series a ticker (`<chartId>~<paneId>~<seriesId>`) names; null for any other text. */
export function seriesOfTicker(ticker) {
    const match = ticker === undefined ? null : TICKER.exec(ticker);
    if (match === null)
        return null;
    const [, chartId, paneId, seriesId] = match;
    return { chartId, paneId: Number(paneId), seriesId };
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
    #http;
    #path;
    #minVersion;
    /** `path`: the service's `UDF_PATH`, relative to the client's base URL; `minVersion`: the
     * version a read of a chart is to see at least (the client's last write of it). */
    constructor(http, path, minVersion = () => undefined) {
        this.#http = http;
        this.#path = path.replace(/^\/+|\/+$/g, "");
        this.#minVersion = minVersion;
    }
    /** What the datafeed supports, with the exchanges and symbol types of the caller's symbols. */
    async config(options = {}) {
        return this.#get("config", {}, options.signal);
    }
    /** One symbol's info; for a ticker, at the version of the client's own last write of its
     * chart (`min_version`) unless `minVersion` is given. */
    async symbol(symbol, options = {}) {
        const series = seriesOfTicker(symbol);
        const minVersion = options.minVersion ?? (series === null ? undefined : this.#minVersion(series.chartId));
        return this.#get("symbols", { symbol, min_version: minVersion }, options.signal);
    }
    async search(query) {
        const { query: text, type, exchange, limit, signal } = query;
        return this.#get("search", { query: text, type, exchange, limit }, signal);
    }
    async history(query) {
        const { symbol, resolution, from, to, countback, signal } = query;
        const series = seriesOfTicker(symbol);
        const minVersion = query.minVersion ?? (series === null ? undefined : this.#minVersion(series.chartId));
        return this.#get("history", { symbol, resolution, from, to, countback, min_version: minVersion }, signal);
    }
    async marks(query) {
        const { symbol, from, to, resolution, signal } = query;
        return this.#get("marks", { symbol, from, to, resolution }, signal);
    }
    async timescaleMarks(query) {
        const { symbol, from, to, resolution, signal } = query;
        return this.#get("timescale_marks", { symbol, from, to, resolution }, signal);
    }
    /** The server's clock, unix seconds. */
    async time(options = {}) {
        return Number(await this.#get("time", {}, options.signal));
    }
    async #get(route, query, signal) {
        const path = this.#path === "" ? route : `${this.#path}/${route}`;
        return (await this.#http.request({ method: "GET", path, query, signal })).body;
    }
}
