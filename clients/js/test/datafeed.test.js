// createDatafeed driven as TradingView's library drives a JS datafeed, against a real server.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { bindSeries, createDatafeed } from "../dist/charts-client.js";
import { fakeChart } from "./fake-chart.js";
import { nextEvent, sleep, startServer, trackedWebSocket, waitFor, openClients } from "./server.js";

const { makeClient, closeAll } = openClients();
afterEach(closeAll);

const START = 1_700_000_100; // a multiple of 300: 5-minute bars start at whole minutes
const MINUTES = 600;
const MARKET = { symbol: "ACME", exchange: "NYSE", description: "Acme Corp" };

function minutes(start, count) {
  return Array.from({ length: count }, (_, i) => ({
    time: start + i * 60,
    open: 10 + i,
    high: 12.5 + i,
    low: 9 + i,
    close: 11.25 + i,
    volume: 2,
  }));
}

/** Call a datafeed method the way the library does; resolves with the arguments of the first
 * callback called, named by `names` (the callbacks' positions are where `names` puts them), and
 * fails when that callback was called before the method returned. */
function call(datafeed, method, args, names) {
  return new Promise((resolve, reject) => {
    let returned = false;
    const callbacks = names.map((name) => (...values) => {
      if (!returned) reject(new Error(`${method} called ${name} synchronously`));
      resolve({ [name]: values });
    });
    datafeed[method](...args(...callbacks));
    returned = true;
  });
}

const onReady = (datafeed) =>
  call(datafeed, "onReady", (cb) => [cb], ["config"]).then(({ config }) => config[0]);
const resolveSymbol = (datafeed, name) =>
  call(datafeed, "resolveSymbol", (ok, error) => [name, ok, error], ["info", "error"]);
const getBars = (datafeed, info, resolution, period) =>
  call(datafeed, "getBars", (ok, error) => [info, resolution, period, ok, error], ["bars", "error"]);

/** The bars as the library takes them, from the REST history route at `resolution`. */
async function restBars(client, resolution) {
  const chunk = await client.history("desk", 0, "acme", { resolution, count: 10000 });
  return chunk.data.map(({ time, open, high, low, close, volume }) => ({ time: time * 1000, open, high, low, close, volume }));
}

/** subscribeBars as the library calls it; `ticks` and `resets` collect what it is told. */
function subscribe(datafeed, info, resolution, guid) {
  const listener = { ticks: [], resets: 0, syncCalls: 0 };
  let returned = false;
  datafeed.subscribeBars(
    info,
    resolution,
    (bar) => {
      if (!returned) listener.syncCalls += 1;
      listener.ticks.push({ ...bar, at: Date.now() });
    },
    guid,
    () => {
      if (!returned) listener.syncCalls += 1;
      listener.resets += 1;
    },
  );
  returned = true;
  return listener;
}

/** Resolves when the chart's socket has confirmed the subscription to `resolution`. */
function subscribed(client, resolution, timeoutMs = 5000) {
  const socket = client.socket("desk");
  return nextEvent(socket, "message", timeoutMs, (m) => m.type === "subscribed" && m.resolution === resolution);
}

describe("createDatafeed", () => {
  let server;
  let writer;
  before(async () => {
    server = await startServer({ WEBSOCKET_RESUME_EVENTS: "8" });
    writer = makeClient({ baseUrl: server.url });
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  /** The series `desk~0~acme`, written afresh: MINUTES one-minute candles from START. */
  async function reset() {
    await writer.createChart("desk");
    await writer.setSeries("desk", "acme", { seriesType: "candlestick", data: minutes(START, MINUTES), market: MARKET });
  }

  test("onReady, searchSymbols, resolveSymbol, then getBars pages back with countBack until noData", async () => {
    await reset();
    const client = makeClient({ baseUrl: server.url });
    const datafeed = createDatafeed({ client });

    const config = await onReady(datafeed);
    assert.equal(config.supports_search, true);
    assert.equal(config.supports_time, true);
    assert.ok(["1", "5", "60", "1D"].every((r) => config.supported_resolutions.includes(r)));
    assert.ok(config.exchanges.some((e) => e.value === "NYSE"));

    const { items } = await call(datafeed, "searchSymbols", (cb) => ["acm", "", "", cb], ["items"]);
    assert.deepEqual(items[0], [
      { symbol: "ACME", full_name: "NYSE:ACME", description: "Acme Corp", exchange: "NYSE", ticker: "desk~0~acme", type: "stock" },
    ]);
    const none = await call(datafeed, "searchSymbols", (cb) => ["zzz", "", "", cb], ["items"]);
    assert.deepEqual(none.items[0], []);

    const { info: [info] } = await resolveSymbol(datafeed, "NYSE:ACME");
    assert.equal(info.ticker, "desk~0~acme");
    assert.equal(info.name, "ACME");
    assert.equal(info.full_name, "NYSE:ACME");
    assert.deepEqual(info.base_name, ["NYSE:ACME"]);
    assert.equal(info.pricescale, 100); // 11.25: two decimals
    assert.equal(info.has_no_volume, false);

    // The first request: the newest 50 five-minute bars before "now".
    const expected = await restBars(writer, "5");
    assert.equal(expected.length, MINUTES / 5);
    const now = START + MINUTES * 60 + 3600;
    const first = await getBars(datafeed, info, "5", { from: now - 50 * 300, to: now, countBack: 50, firstDataRequest: true });
    const [bars, meta] = first.bars;
    assert.deepEqual(meta, { noData: false });
    assert.equal(bars.length, 50);
    assert.deepEqual(bars, expected.slice(-50));
    // The first bar, by hand: minutes 0-4.
    assert.deepEqual(expected[0], { time: START * 1000, open: 10, high: 16.5, low: 9, close: 15.25, volume: 10 });

    // Then back from the oldest bar held, until the datafeed says there is no more.
    let received = bars;
    let pages = 1;
    for (;;) {
      const to = received[0].time / 1000;
      const page = await getBars(datafeed, info, "5", { from: to - 50 * 300, to, countBack: 50, firstDataRequest: false });
      const [older, pageMeta] = page.bars;
      pages += 1;
      if (pageMeta.noData) {
        assert.deepEqual(older, []);
        assert.equal(pageMeta.nextTime, undefined, "nothing older: the library stops");
        break;
      }
      assert.ok(older.length <= 50 && older.at(-1).time < to * 1000);
      received = older.concat(received);
      assert.ok(pages < 10);
    }
    assert.equal(pages, 4); // 50 + 50 + 20, then noData
    assert.deepEqual(received, expected);

    // Without countBack (older libraries): the bars of [from, to); a gap answers nextTime.
    const hour = await getBars(datafeed, info, "60", { from: START + 3600, to: START + 3 * 3600, countBack: 0, firstDataRequest: false });
    const hourly = await restBars(writer, "60");
    assert.deepEqual(hour.bars[0], hourly.filter((b) => b.time >= (START + 3600) * 1000 && b.time < (START + 3 * 3600) * 1000));
    const gap = await getBars(datafeed, info, "60", { from: now + 86_400, to: now + 2 * 86_400, countBack: 0, firstDataRequest: false });
    assert.deepEqual(gap.bars, [[], { noData: true, nextTime: hourly.at(-1).time / 1000 }]);

    const { time } = await call(datafeed, "getServerTime", (cb) => [cb], ["time"]);
    assert.ok(Math.abs(time[0] - Date.now() / 1000) < 5);
  });

  test("getMarks and getTimescaleMarks: markers and vertical lines at the times of their bars", async () => {
    await reset();
    const client = makeClient({ baseUrl: server.url });
    const datafeed = createDatafeed({ client });
    const config = await onReady(datafeed);
    assert.equal(config.supports_marks, true);
    assert.equal(config.supports_timescale_marks, true);
    const marker = await writer.createAnnotation("desk", {
      kind: "marker",
      seriesId: "acme",
      points: [{ time: START + 7 * 60 }],
      text: "buy",
      style: { position: "belowBar", shape: "arrowUp", color: "#26a69a" },
    });
    const line = await writer.createAnnotation("desk", { kind: "vertical_line", points: [{ time: START + 8 * 60 }], text: "open" });
    const { info: [info] } = await resolveSymbol(datafeed, "ACME");
    const until = START + MINUTES * 60;
    const { marks } = await call(datafeed, "getMarks", (cb) => [info, START, until, cb, "5"], ["marks"]);
    assert.deepEqual(
      marks[0].map((m) => [m.id, m.time, m.text, m.label, m.color.background]),
      [[marker.annotationId, START + 300, "buy", "B", "#26a69a"]], // minute 7 is in the bar of minute 5
    );
    const timescale = await call(datafeed, "getTimescaleMarks", (cb) => [info, START, until, cb, "5"], ["marks"]);
    assert.deepEqual(timescale.marks[0].map((m) => [m.id, m.time, m.label, m.tooltip]), [[line.annotationId, START + 300, "O", ["open"]]]);
  });

  test("an unknown symbol, or bars of one, end in onError", async () => {
    await reset();
    const datafeed = createDatafeed({ client: makeClient({ baseUrl: server.url }) });
    const missing = await resolveSymbol(datafeed, "NOPE");
    assert.deepEqual(missing, { error: ["unknown_symbol"] });
    const ghost = await resolveSymbol(datafeed, "desk~0~ghost");
    assert.deepEqual(ghost, { error: ["unknown_symbol"] });

    const { info: [info] } = await resolveSymbol(datafeed, "ACME");
    const period = { from: START, to: START + 3600, countBack: 10, firstDataRequest: true };
    const unknown = await getBars(datafeed, { ...info, ticker: "desk~0~ghost" }, "5", period);
    assert.deepEqual(unknown, { error: ["unknown_symbol"] });
    const bad = await getBars(datafeed, info, "7X", period);
    assert.deepEqual(Object.keys(bad), ["error"]);
    assert.match(bad.error[0], /7X/);
  });

  test("subscribeBars: live bars at the resolution within 1 s; older-bar corrections reset; unsubscribeBars stops them", async () => {
    await reset();
    const client = makeClient({ baseUrl: server.url });
    const datafeed = createDatafeed({ client });
    const { info: [info] } = await resolveSymbol(datafeed, "ACME");
    const now = START + MINUTES * 60;
    for (const resolution of ["5", "60"]) {
      await getBars(datafeed, info, resolution, { from: START, to: now, countBack: 300, firstDataRequest: true });
    }

    const fives = subscribe(datafeed, info, "5", "five");
    await subscribed(client, "5");
    const hours = subscribe(datafeed, info, "60", "hour");
    await subscribed(client, "60");

    // A new minute opens a new 5-minute bar.
    const wrote = Date.now();
    await writer.upsert("desk", "acme", { time: now, open: 700, high: 710, low: 690, close: 705, volume: 3 });
    await waitFor(() => fives.ticks.length === 1, 1000, "the new 5-minute bar");
    const [bar] = fives.ticks;
    assert.ok(bar.at - wrote <= 1000);
    assert.deepEqual({ ...bar, at: undefined }, { time: now * 1000, open: 700, high: 710, low: 690, close: 705, volume: 3, at: undefined });

    // The next minute in that bar: the same bar, as the server aggregates it.
    await writer.upsert("desk", "acme", { time: now + 60, open: 705, high: 720, low: 700, close: 715, volume: 4 });
    await waitFor(() => fives.ticks.length === 2, 1000, "the changed 5-minute bar");
    const { at: _at, ...changed } = fives.ticks[1];
    assert.deepEqual(changed, { time: now * 1000, open: 700, high: 720, low: 690, close: 715, volume: 7 });
    const expected = (await restBars(writer, "5")).at(-1);
    assert.deepEqual(changed, expected);
    // At "60" the same writes changed the bar of the last hour (the series' 11th).
    await waitFor(() => hours.ticks.length === 2, 1000, "the hourly bar");
    const hourly = (await restBars(writer, "60")).at(-1);
    assert.deepEqual({ ...hours.ticks[1], at: undefined }, { ...hourly, at: undefined });
    assert.equal(hourly.high, 720);

    // A correction of an older minute: no tick of an older bar, a reset instead.
    await writer.upsert("desk", "acme", { time: START + 60, open: 11, high: 99, low: 1, close: 12, volume: 2 });
    await waitFor(() => fives.resets === 1 && hours.resets === 1, 1000, "the resets");
    await sleep(100);
    assert.equal(fives.ticks.length, 2);
    assert.equal(hours.ticks.length, 2);
    assert.ok(fives.ticks.every((t) => t.time === now * 1000));

    // Unsubscribed: no more ticks for it, while the other subscription still gets them.
    datafeed.unsubscribeBars("five");
    await writer.upsert("desk", "acme", { time: now + 120, open: 715, high: 730, low: 710, close: 725, volume: 1 });
    await waitFor(() => hours.ticks.length === 3, 1000, "the hourly bar after unsubscribing the other");
    await sleep(200);
    assert.equal(fives.ticks.length, 2);
    assert.equal(fives.syncCalls + hours.syncCalls, 0, "callbacks are called asynchronously");

    datafeed.unsubscribeBars("hour");
    await writer.upsert("desk", "acme", { time: now + 180, open: 725, high: 726, low: 720, close: 721, volume: 1 });
    await sleep(300);
    assert.equal(hours.ticks.length, 3);
  });

  test("two subscriptions of one symbol and resolution: unsubscribing one keeps the other live", async () => {
    await reset();
    const client = makeClient({ baseUrl: server.url });
    const datafeed = createDatafeed({ client });
    const { info: [info] } = await resolveSymbol(datafeed, "desk~0~acme");
    const now = START + MINUTES * 60;
    await getBars(datafeed, info, "1D", { from: START, to: now, countBack: 10, firstDataRequest: true });
    const left = subscribe(datafeed, info, "1D", "left");
    const right = subscribe(datafeed, info, "D", "right"); // the same resolution, written another way
    await subscribed(client, "1D");
    datafeed.unsubscribeBars("left");
    await sleep(100);
    await writer.upsert("desk", "acme", { time: now, open: 700, high: 999, low: 690, close: 705 });
    await waitFor(() => right.ticks.length === 1, 1000, "the daily bar");
    assert.equal(right.ticks[0].high, 999);
    assert.equal(right.ticks[0].time, (now - (now % 86_400)) * 1000); // daily bars: 00:00 UTC of the day
    assert.equal(left.ticks.length, 0);

    // A replaced series: its bars are to be read again.
    await writer.setSeries("desk", "acme", { seriesType: "candlestick", data: minutes(START, 10), market: MARKET });
    await waitFor(() => right.resets === 1, 1000, "the reset after a replace");
    assert.equal(left.resets, 0);
    datafeed.unsubscribeBars("right");
  });

  test("getBars reads the chart at the version of the client's own last write (min_version)", async () => {
    await reset();
    const asked = [];
    const resolved = [];
    const recording = (url, init) => {
      if (String(url).includes("/udf/history")) asked.push(new URL(url).searchParams);
      if (String(url).includes("/udf/symbols")) resolved.push(new URL(url).searchParams);
      return fetch(url, init);
    };
    const client = makeClient({ baseUrl: server.url, fetch: recording });
    const datafeed = createDatafeed({ client });
    const { info: [info] } = await resolveSymbol(datafeed, "ACME");
    const now = START + MINUTES * 60;
    const period = { from: START, to: now + 3600, countBack: 2, firstDataRequest: true };
    await getBars(datafeed, info, "5", period);
    assert.equal(asked.at(-1).get("min_version"), null, "no write of its own yet");

    const written = await client.upsert("desk", "acme", { time: now, open: 1, high: 2, low: 1, close: 2, volume: 1 });
    const { bars: [bars] } = await getBars(datafeed, info, "5", { ...period, firstDataRequest: false });
    assert.equal(asked.at(-1).get("min_version"), String(written.version));
    assert.equal(asked.at(-1).get("symbol"), "desk~0~acme");
    assert.deepEqual([bars.at(-1).time, bars.at(-1).close], [now * 1000, 2]);
    // Resolving by ticker carries the token too; by name, no chart is known until resolved.
    assert.equal(resolved.at(-1).get("min_version"), null);
    const { info: [byTicker] } = await resolveSymbol(datafeed, "desk~0~acme");
    assert.equal(byTicker.ticker, "desk~0~acme");
    assert.equal(resolved.at(-1).get("min_version"), String(written.version));
    // Another client's writes are not this one's to wait for.
    await writer.upsert("desk", "acme", { time: now + 60, open: 2, high: 3, low: 2, close: 3, volume: 1 });
    await getBars(datafeed, info, "5", { ...period, firstDataRequest: false });
    assert.equal(asked.at(-1).get("min_version"), String(written.version));
  });

  test("a binding and the datafeed on one client share the socket's subscription of a series resolution", async () => {
    await reset();
    const { Tracked, opened } = trackedWebSocket();
    const client = makeClient({ baseUrl: server.url, WebSocket: Tracked, reconnect: { minDelayMs: 200, jitter: 0 } });
    const socket = client.socket("desk");
    const { chart, series } = fakeChart();
    const binding = bindSeries(chart, series, { client, chartId: "desk", seriesId: "acme", resolution: "5" });
    await binding.ready;
    const datafeed = createDatafeed({ client });
    const { info: [info] } = await resolveSymbol(datafeed, "ACME");
    const now = START + MINUTES * 60;
    await getBars(datafeed, info, "5", { from: START, to: now, countBack: 50, firstDataRequest: true });
    const fives = subscribe(datafeed, info, "5", "five");
    await subscribed(client, "5");
    const hours = subscribe(datafeed, info, "60", "hour");
    await subscribed(client, "60");
    const unsubscribes = () => opened.flatMap((ws) => ws.sent).filter((frame) => frame.type === "unsubscribe");

    // The datafeed lets go of "5": the binding still holds it, and keeps getting its bars.
    datafeed.unsubscribeBars("five");
    await sleep(100);
    const updated = nextEvent(binding, "updated", 2000);
    await writer.upsert("desk", "acme", { time: now, open: 700, high: 710, low: 690, close: 705, volume: 3 });
    assert.deepEqual((await updated).points.map((bar) => [bar.time, bar.close]), [[now, 705]]);
    await waitFor(() => hours.ticks.length === 1, 1000, "the hourly bar");
    assert.equal(fives.ticks.length, 0);
    assert.deepEqual(unsubscribes(), [], "the server was not told to stop");

    // A reconnection subscribes again to each live series resolution, once.
    opened[0].close();
    await nextEvent(socket, "connected", 5000);
    const again = opened[1].sent.filter((frame) => frame.type === "subscribe").map((frame) => frame.resolution);
    assert.deepEqual(again.sort(), ["5", "60"]);
    const live = nextEvent(binding, "updated", 2000);
    await writer.upsert("desk", "acme", { time: now + 60, open: 705, high: 720, low: 700, close: 715, volume: 4 });
    assert.deepEqual((await live).points.map((bar) => [bar.time, bar.high]), [[now, 720]]);
    await waitFor(() => hours.ticks.length === 2, 1000, "the hourly bar after the reconnection");

    // With the last holder of each gone, the server is told to stop.
    binding.dispose();
    await waitFor(() => unsubscribes().length === 1, 1000, "the unsubscribe of 5");
    datafeed.unsubscribeBars("hour");
    await waitFor(() => unsubscribes().length === 2, 1000, "the unsubscribe of 60");
    assert.deepEqual(unsubscribes().map((frame) => frame.resolution), ["5", "60"]);
  });

  test("a symbol info without the service's ticker is looked up by name for live bars", async () => {
    await reset();
    const client = makeClient({ baseUrl: server.url });
    const datafeed = createDatafeed({ client });
    const { info: [info] } = await resolveSymbol(datafeed, "ACME");
    const { ticker: _ticker, ...named } = info;
    const live = subscribe(datafeed, named, "15", "named");
    await subscribed(client, "15");
    const now = START + MINUTES * 60;
    await writer.upsert("desk", "acme", { time: now, open: 5, high: 6, low: 4, close: 5.5, volume: 1 });
    await waitFor(() => live.ticks.length === 1, 1000, "the 15-minute bar");
    assert.deepEqual([live.ticks[0].time, live.ticks[0].close], [(now - (now % 900)) * 1000, 5.5]);
    datafeed.unsubscribeBars("named");
  });

  test("after a lost connection: missed bars are replayed; updates that cannot be replayed reset", async () => {
    await reset();
    const { Tracked, opened } = trackedWebSocket();
    const client = makeClient({ baseUrl: server.url, WebSocket: Tracked, reconnect: { minDelayMs: 500, jitter: 0 } });
    const datafeed = createDatafeed({ client });
    const { info: [info] } = await resolveSymbol(datafeed, "ACME");
    const now = START + MINUTES * 60;
    await getBars(datafeed, info, "5", { from: START, to: now, countBack: 300, firstDataRequest: true });
    const live = subscribe(datafeed, info, "5", "live");
    await subscribed(client, "5");
    const socket = client.socket("desk");

    // Two minutes written while disconnected come back with the resume, as ticks.
    opened[0].close();
    await nextEvent(socket, "state", 2000, (change) => change.state === "reconnecting");
    await writer.upsert("desk", "acme", { time: now, open: 1, high: 2, low: 1, close: 2, volume: 1 });
    await writer.upsert("desk", "acme", { time: now + 60, open: 2, high: 3, low: 2, close: 3, volume: 1 });
    await waitFor(() => live.ticks.length >= 1 && live.ticks.at(-1).close === 3, 5000, "the replayed bar");
    assert.equal(live.resets, 0);
    assert.deepEqual(live.ticks.at(-1).high, 3);

    // More changes than the server keeps for a resume: the library is told to read again.
    opened.at(-1).close();
    await nextEvent(socket, "state", 2000, (change) => change.state === "reconnecting");
    for (let i = 2; i < 14; i++) {
      await writer.upsert("desk", "acme", { time: now + i * 60, open: 3, high: 4, low: 3, close: 4, volume: 1 });
    }
    await waitFor(() => live.resets === 1, 5000, "the reset after a resync");

    // And live bars go on over the new connection.
    const before = live.ticks.length;
    await writer.upsert("desk", "acme", { time: now + 900, open: 9, high: 9, low: 9, close: 9, volume: 1 });
    await waitFor(() => live.ticks.length > before && live.ticks.at(-1).time === (now + 900) * 1000, 2000, "a live bar after the resync");
    datafeed.unsubscribeBars("live");
  });
});
