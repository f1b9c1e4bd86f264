/**
 * The service's wire format, written once: REST bodies and WebSocket frames as TypeScript types.
 * JSON keys are camelCase; times are UTC seconds.
 */

/** A stored point: `time` plus whatever fields it was written with (`open`..`close`, `value`,
 * `color`, `volume`, `customValues`...). A point with only `time` is whitespace (a gap). */
export interface Point {
  time: number;
  [field: string]: unknown;
}

export interface OhlcPoint extends Point {
  open: number;
  high: number;
  low: number;
  close: number;
}

export interface ValuePoint extends Point {
  value: number;
}

export type SeriesType = "line" | "area" | "baseline" | "histogram" | "bar" | "candlestick" | "custom";

/** A request id, echoed in the answer: a string of 1-128 characters or an integer. */
export type RequestId = string | number;

/** Where a chunk sits in its series; `endIndex` is exclusive. */
export interface ChunkInfo {
  startIndex: number;
  endIndex: number;
  startTime: number | null;
  endTime: number | null;
  count: number;
}

/** One series (`GET .../data/{paneId}/{seriesId}`); a large one comes as its newest chunk. */
export interface SeriesData {
  seriesId: string;
  seriesType: SeriesType;
  options: Record<string, unknown>;
  data: Point[];
  chunked: boolean;
  totalCount: number;
  chunkInfo?: ChunkInfo;
  hasMoreBefore?: boolean;
  hasMoreAfter?: boolean;
  /** Echoed when the series was asked for at a resolution. */
  resolution?: string;
}

/** A history chunk (`GET .../history/{paneId}/{seriesId}`); `data` is ascending. */
export interface HistoryChunk {
  seriesId: string;
  data: Point[];
  chunkInfo: ChunkInfo;
  hasMoreBefore: boolean;
  hasMoreAfter: boolean;
  totalCount: number;
  direction: "before" | "after";
  resolution?: string;
}

/** A chart with its series by pane id (`GET /api/charts/{chartId}`). */
export interface ChartData {
  chartId: string;
  options: Record<string, unknown>;
  panes: Record<string, Record<string, SeriesData>>;
}

export interface ChartSummary {
  chartId: string;
  options: Record<string, unknown>;
  seriesCount: number;
  updatedAt: string;
}

export interface ChartList {
  charts: ChartSummary[];
}

/** What every write answers: the chart's version after it. */
export interface Written {
  version: number;
}

export interface ChartCreated extends Written {
  chartId: string;
  options: Record<string, unknown>;
}

export interface SeriesWritten extends Written {
  seriesId: string;
  seriesType: SeriesType;
  count: number;
}

export interface PointsWritten extends Written {
  seriesId: string;
  count: number;
  totalCount: number;
}

export type AnnotationKind =
  | "marker"
  | "price_line"
  | "horizontal_line"
  | "vertical_line"
  | "trend_line"
  | "ray"
  | "rectangle"
  | "text"
  | "fib_retracement"
  | "custom";

/** An anchor of an annotation: a time, a price, or both, as its kind needs. */
export interface AnnotationPoint {
  time?: number;
  price?: number;
}

/** What a caller writes: the annotation without the fields the server sets. */
export interface AnnotationDraft {
  kind: AnnotationKind;
  points: AnnotationPoint[];
  annotationId?: string;
  paneId?: number;
  seriesId?: string;
  style?: Record<string, unknown>;
  text?: string;
  visibility?: "chart" | "private";
}

/** A drawing, marker or price line, anchored in time and price. */
export interface Annotation extends AnnotationDraft {
  annotationId: string;
  paneId: number;
  style: Record<string, unknown>;
  visibility: "chart" | "private";
  owner: string;
  /** The annotation's own version (not the chart's), for conflict-checked updates. */
  version: number;
  createdAt: string;
  updatedAt: string;
}

/** A marker ready for Lightweight Charts' `createSeriesMarkers`. */
export interface Marker {
  id: string;
  time: number;
  position: string;
  shape: string;
  color: string;
  text: string;
  size?: number;
  price?: number;
}

/** A zoomed-out view of a time range (`GET .../range/{paneId}/{seriesId}`): at most `maxPoints`
 * points, the stored ones when they fit, else bars (OHLC series, at `resolution`) or each
 * stretch's extremes (value series). `from` and `to` echo the bounds asked for (null: none). */
export interface RangeData {
  seriesId: string;
  from: number | null;
  to: number | null;
  data: Point[];
  /** The resolution of the bars in `data`, when it holds bars. */
  resolution: string | null;
  downsampled: boolean;
  /** Stored points in the range. */
  sourceCount: number;
}

/** The body of every REST error. */
export interface ErrorBody {
  detail: string;
  errorCode: string;
  requestId?: string;
  errors?: unknown[];
}

// ---------------------------------------------------------------- UDF (`UDF_PATH`, default /udf)

/** `GET /udf/config`. */
export interface UdfConfig {
  supports_search: boolean;
  supports_group_request: boolean;
  supports_marks: boolean;
  supports_timescale_marks: boolean;
  supports_time: boolean;
  supported_resolutions: string[];
  exchanges: { value: string; name: string; desc: string }[];
  symbols_types: { name: string; value: string }[];
}

/** `GET /udf/symbols`: the symbol's info. Keys of the series' `market` other than those below
 * are passed on as given (`currency_code`, ...). */
export interface UdfSymbolInfo {
  name: string;
  /** `<chartId>~<paneId>~<seriesId>`: the series itself. */
  ticker: string;
  description: string;
  type: string;
  session: string;
  timezone: string;
  exchange: string;
  listed_exchange: string;
  format: "price" | "volume";
  minmov: number;
  pricescale: number;
  has_intraday: boolean;
  has_seconds: boolean;
  seconds_multipliers: string[];
  has_daily: boolean;
  daily_multipliers: string[];
  has_weekly_and_monthly: boolean;
  weekly_multipliers: string[];
  monthly_multipliers: string[];
  intraday_multipliers: string[];
  supported_resolutions: string[];
  volume_precision: number;
  has_no_volume: boolean;
  visible_plots_set: "ohlcv" | "ohlc" | "c";
  data_status: string;
  [key: string]: unknown;
}

/** An item of `GET /udf/search`. */
export interface UdfSearchItem {
  symbol: string;
  full_name: string;
  description: string;
  exchange: string;
  ticker: string;
  type: string;
}

/** `GET /udf/history`: bars as arrays by field, ascending; times in unix seconds. Value series
 * have `t` and `c` only; `v` comes when the series has volumes. */
export interface UdfBars {
  s: "ok";
  t: number[];
  o?: number[];
  h?: number[];
  l?: number[];
  c: number[];
  v?: number[];
}

/** No bars in the window; `nextTime` is the newest bar before it (absent: there is none). */
export interface UdfNoData {
  s: "no_data";
  nextTime?: number;
}

export type UdfHistory = UdfBars | UdfNoData;

/** An item of `GET /udf/marks`: a marker of the series at the time of its bar. */
export interface UdfMark {
  id: string;
  time: number;
  color: { border: string; background: string };
  text: string;
  label: string;
  labelFontColor: string;
  minSize: number;
}

/** An item of `GET /udf/timescale_marks`: a vertical line on the series' pane. */
export interface UdfTimescaleMark {
  id: string;
  time: number;
  color: string;
  label: string;
  tooltip: string[];
}

// ---------------------------------------------------------------- server -> client frames

export interface ConnectedMessage {
  type: "connected";
  chartId: string;
  /** The chart's version when the socket joined (0 when the chart does not exist). */
  version: number;
  timeoutSeconds: number;
}

export interface PingMessage {
  type: "ping";
  timestamp: number;
}

export interface PongMessage {
  type: "pong";
  timestamp: number;
  requestId?: RequestId;
}

export interface HistoryResponse extends HistoryChunk {
  type: "history_response";
  chartId: string;
  paneId: number;
  requestId?: RequestId;
}

/** A `request_history` that failed is answered where its clients wait for it. */
export interface HistoryFailure {
  type: "history_response";
  chartId: string;
  paneId: number | null;
  seriesId: string | null;
  error: string;
  errorCode: string;
  /** Seconds after which the same frame may succeed (`RATE_LIMITED`, `DATABASE_UNAVAILABLE`). */
  retryAfter?: number;
  requestId?: RequestId;
}

/** `get_initial_data` without `seriesId`: the chart (or one pane of it). */
export interface ChartSnapshot extends ChartData {
  type: "initial_data_response";
  version: number;
  paneId?: number;
  requestId?: RequestId;
}

/** `get_initial_data` with `seriesId`: one series. */
export interface SeriesSnapshot extends SeriesData {
  type: "initial_data_response";
  chartId: string;
  paneId: number;
  version: number;
  requestId?: RequestId;
}

export type DataUpdateOp = "upsert" | "replace" | "delete" | "options" | "chart_deleted";

/** One committed change of the chart. Without `resolution`, versions grow by one per change;
 * with it (a `subscribe`d resolution), `data` holds the bars whose buckets the change of that
 * `version` touched, and `replace` means "fetch the series at that resolution again". */
export interface DataUpdate {
  type: "data_update";
  chartId: string;
  op: DataUpdateOp;
  version: number;
  paneId?: number;
  seriesId?: string;
  count?: number;
  data?: Point[];
  options?: Record<string, unknown>;
  resolution?: string;
}

export interface ResumedMessage {
  type: "resumed";
  chartId: string;
  sinceVersion: number;
  version: number;
  replayed: number;
  requestId?: RequestId;
}

/** The updates cannot be replayed (or were lost between servers): fetch the chart again; with
 * `scope: "annotations"`, only the annotations. */
export interface ResyncRequired {
  type: "resync_required";
  chartId: string;
  scope?: "annotations";
  sinceVersion?: number;
  version?: number;
  reason: string;
  requestId?: RequestId;
}

/** An annotation created, changed or deleted (not replayed by `resume`). */
export interface AnnotationUpdate {
  type: "annotation_update";
  chartId: string;
  op: "create" | "update" | "delete";
  annotationId: string;
  version: number;
  annotation?: Annotation;
}

export interface SubscriptionMessage {
  type: "subscribed" | "unsubscribed";
  chartId: string;
  paneId: number;
  seriesId: string;
  resolution: string;
  version: number;
  requestId?: RequestId;
}

export interface ErrorMessage {
  type: "error";
  error: string;
  errorCode: string;
  /** Seconds after which the same frame may succeed (`RATE_LIMITED`, `DATABASE_UNAVAILABLE`). */
  retryAfter?: number;
  requestId?: RequestId;
}

export type ServerMessage =
  | ConnectedMessage
  | PingMessage
  | PongMessage
  | HistoryResponse
  | HistoryFailure
  | ChartSnapshot
  | SeriesSnapshot
  | DataUpdate
  | ResumedMessage
  | ResyncRequired
  | AnnotationUpdate
  | SubscriptionMessage
  | ErrorMessage;

// ---------------------------------------------------------------- client -> server frames

export interface HistoryRequest {
  type: "request_history";
  paneId: number;
  seriesId: string;
  /** Exclusive; with neither bound the newest points come back. */
  beforeTime?: number;
  afterTime?: number;
  count?: number;
  resolution?: string;
  minVersion?: number;
  requestId?: RequestId;
}

export interface InitialDataRequest {
  type: "get_initial_data";
  paneId?: number;
  seriesId?: string;
  resolution?: string;
  minVersion?: number;
  requestId?: RequestId;
}

export interface ResumeRequest {
  type: "resume";
  sinceVersion: number;
  requestId?: RequestId;
}

export interface SubscriptionRequest {
  type: "subscribe" | "unsubscribe";
  paneId: number;
  seriesId: string;
  resolution: string;
  requestId?: RequestId;
}

export type ClientMessage =
  | { type: "ping"; requestId?: RequestId }
  | { type: "pong" }
  | HistoryRequest
  | InitialDataRequest
  | ResumeRequest
  | SubscriptionRequest;
