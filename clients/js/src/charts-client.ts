/**
 * The browser client of Lightweight Charts Pro Backend.
 *
 * ```ts
 * import { ChartsClient, bindSeries, createDatafeed } from "/client/charts-client.js";
 * ```
 */
export { bindSeries, SeriesBinding, type BindSeriesOptions, type SeriesBindingEvents } from "./bind.js";
export { DEFAULT_RECONNECT, reconnectDelay, type ReconnectOptions } from "./backoff.js";
export {
  ChartsClient,
  type ChartsClientOptions,
  type HistoryOptions,
  type RangeOptions,
  type ReadOptions,
  type SeriesWrite,
  type SocketLease,
} from "./client.js";
export { ChartsDatafeed, createDatafeed, type DatafeedOptions } from "./datafeed.js";
export { Emitter, type Listener } from "./emitter.js";
export { ChartsConnectionError, ChartsError } from "./errors.js";
export type { TokenSource } from "./http.js";
export { lowerBound, mergePoints } from "./points.js";
export type * from "./protocol.js";
export type * as Datafeed from "./tradingview.js";
export {
  ChartSocket,
  type ChartSocketEvents,
  type ConnectionState,
  type StateChange,
  type WebSocketConstructor,
} from "./socket.js";
export { UdfApi, type UdfHistoryQuery, type UdfMarksQuery, type UdfSearchQuery } from "./udf.js";
