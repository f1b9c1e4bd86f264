/**
 * The parts of TradingView's JS Datafeed API (Charting Library, Advanced Charts) that
 * `createDatafeed` speaks: the objects it hands to the library and the callbacks it calls.
 * Written for this module from the API's documented shapes, so that it needs no copy of the
 * library; a TypeScript page that has the library's own declarations may need `as IBasicDataFeed`.
 * Times of bars are in milliseconds; other times are in unix seconds.
 */
export {};
