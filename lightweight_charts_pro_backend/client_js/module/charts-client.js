/**
 * The browser client of Lightweight Charts Pro Backend.
 *
 * ```ts
 * import { ChartsClient, bindSeries, createDatafeed } from "/client/charts-client.js";
 * ```
 */
export { bindSeries, SeriesBinding } from "./bind.js";
export { DEFAULT_RECONNECT, reconnectDelay } from "./backoff.js";
export { ChartsClient, } from "./client.js";
export { ChartsDatafeed, createDatafeed } from "./datafeed.js";
export { Emitter } from "./emitter.js";
export { ChartsConnectionError, ChartsError } from "./errors.js";
export { lowerBound, mergePoints } from "./points.js";
export { ChartSocket, } from "./socket.js";
export { UdfApi } from "./udf.js";
