/**
 * The parts of TradingView's JS Datafeed API (Charting Library, Advanced Charts) that
 * `createDatafeed` speaks: the objects it hands to the library and the callbacks it calls.
 * Written for this module from the API's documented shapes, so that it needs no copy of the
 * library; a TypeScript page that has the library's own declarations may need `as IBasicDataFeed`.
 * Times of bars are in milliseconds; other times are in unix seconds.
 */

export type ResolutionString = string;

export interface Exchange {
  value: string;
  name: string;
  desc: string;
}

export interface SymbolType {
  name: string;
  value: string;
}

/** What `onReady` reports. */
export interface DatafeedConfiguration {
  supported_resolutions?: ResolutionString[];
  exchanges?: Exchange[];
  symbols_types?: SymbolType[];
  supports_marks?: boolean;
  supports_timescale_marks?: boolean;
  supports_time?: boolean;
  [key: string]: unknown;
}

/** A symbol as the library holds it; `ticker` names the service's series (`chart~pane~series`). */
export interface LibrarySymbolInfo {
  name: string;
  ticker?: string;
  full_name?: string;
  base_name?: string[];
  description: string;
  type: string;
  session: string;
  timezone: string;
  exchange: string;
  listed_exchange: string;
  format: "price" | "volume";
  pricescale: number;
  minmov: number;
  supported_resolutions?: ResolutionString[];
  [key: string]: unknown;
}

export interface SearchSymbolResultItem {
  symbol: string;
  full_name: string;
  description: string;
  exchange: string;
  ticker?: string;
  type: string;
}

/** What `getBars` is asked for: bars of `[from, to)` (unix seconds), or rather `countBack` bars
 * before `to` when it is given. */
export interface PeriodParams {
  from: number;
  to: number;
  countBack: number;
  firstDataRequest: boolean;
}

/** A bar as the library takes it: `time` in milliseconds. */
export interface Bar {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume?: number;
}

/** `noData`: nothing in the period asked for; `nextTime` (unix seconds, as UDF gives it): the
 * newest bar before it, so that the library skips the gap. */
export interface HistoryMetadata {
  noData?: boolean;
  nextTime?: number | null;
}

export interface SymbolResolveExtension {
  currencyCode?: string;
  unitId?: string;
  session?: string;
}

export interface Mark {
  id: string | number;
  time: number;
  color: string | { border: string; background: string };
  text: string;
  label: string;
  labelFontColor: string;
  minSize: number;
}

export interface TimescaleMark {
  id: string | number;
  time: number;
  color: string;
  label: string;
  tooltip: string[];
}

export type OnReadyCallback = (configuration: DatafeedConfiguration) => void;
export type SearchSymbolsCallback = (items: SearchSymbolResultItem[]) => void;
export type ResolveCallback = (symbolInfo: LibrarySymbolInfo) => void;
export type HistoryCallback = (bars: Bar[], meta?: HistoryMetadata) => void;
/** The reason as a short text; `unknown_symbol` for a symbol the service does not know. */
export type DatafeedErrorCallback = (reason: string) => void;
export type SubscribeBarsCallback = (bar: Bar) => void;
export type ServerTimeCallback = (serverTime: number) => void;
export type GetMarksCallback<T> = (marks: T[]) => void;
