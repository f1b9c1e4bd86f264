// ChartsClient over REST against a real server.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { ChartsConnectionError, ChartsError } from "../dist/charts-client.js";
import { candles, freePort, jwt, startServer, openClients } from "./server.js";

const { makeClient, closeAll } = openClients();
afterEach(closeAll);

const START = 1_700_000_040;

describe("REST", () => {
  let server;
  before(async () => {
    server = await startServer({ CHUNK_SIZE_THRESHOLD: "50", DEFAULT_CHUNK_SIZE: "20" });
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  test("writes answer the chart's version and later reads carry it as min_version", async () => {
    const urls = [];
    const recording = (url, init) => {
      urls.push(`${init?.method ?? "GET"} ${url}`);
      return fetch(url, init);
    };
    const client = makeClient({ baseUrl: server.url, fetch: recording });
    const created = await client.createChart("rest-versions", { layout: { textColor: "#fff" } });
    assert.deepEqual(created, { chartId: "rest-versions", options: { layout: { textColor: "#fff" } }, version: 1 });
    const written = await client.setSeries("rest-versions", "price", { seriesType: "candlestick", data: candles(START, 120) });
    assert.deepEqual(written, { seriesId: "price", seriesType: "candlestick", count: 120, version: 2 });
    const upserted = await client.upsert("rest-versions", "price", candles(START + 120 * 60, 1));
    assert.deepEqual(upserted, { seriesId: "price", count: 1, totalCount: 121, version: 3 });
    assert.equal(client.versionOf("rest-versions"), 3);

    const chunk = await client.history("rest-versions", 0, "price", { beforeTime: START + 60 * 60, count: 10 });
    assert.equal(chunk.data.length, 10);
    assert.equal(chunk.data.at(-1).time, START + 59 * 60);
    assert.equal(chunk.hasMoreBefore, true);
    assert.equal(chunk.direction, "before");
    assert.deepEqual(Object.keys(chunk.chunkInfo).sort(), ["count", "endIndex", "endTime", "startIndex", "startTime"]);
    assert.match(urls.at(-1), /\/history\/0\/price\?before_time=1700003640&count=10&min_version=3$/);

    const series = await client.getSeries("rest-versions", 0, "price");
    assert.equal(series.chunked, true);
    assert.equal(series.totalCount, 121);
    assert.equal(series.data.length, 20);
    assert.match(urls.at(-1), /min_version=3$/);

    const chart = await client.getChart("rest-versions");
    assert.deepEqual(Object.keys(chart.panes), ["0"]);
    assert.equal(chart.panes["0"].price.seriesType, "candlestick");
    assert.match(urls.at(-1), /min_version=3$/);

    const other = makeClient({ baseUrl: server.url, fetch: recording });
    await other.getChart("rest-versions");
    assert.doesNotMatch(urls.at(-1), /min_version/, "a client that wrote nothing sends no token");

    const listing = await client.listCharts();
    assert.ok(listing.charts.some((c) => c.chartId === "rest-versions" && c.seriesCount === 1));

    const deleted = await client.deleteSeries("rest-versions", 0, "price");
    assert.deepEqual(deleted, { version: 4 });
    assert.equal(client.versionOf("rest-versions"), 4);
    await client.deleteChart("rest-versions");
    assert.equal(client.versionOf("rest-versions"), undefined);
    const again = await client.createChart("rest-versions");
    assert.ok(again.version < 4);
    assert.equal(client.versionOf("rest-versions"), again.version, "a new chart's versions start again");
  });

  test("range: the stored points when they fit, else the finest bars that do", async () => {
    const urls = [];
    const recording = (url, init) => {
      urls.push(url);
      return fetch(url, init);
    };
    const client = makeClient({ baseUrl: server.url, fetch: recording });
    await client.createChart("rest-range");
    const data = candles(START, 600);
    const { version } = await client.setSeries("rest-range", "price", { seriesType: "candlestick", data });

    const narrow = await client.range("rest-range", 0, "price", { from: START + 60, to: START + 240 });
    assert.deepEqual(narrow, {
      seriesId: "price",
      from: START + 60,
      to: START + 240,
      data: data.slice(1, 4),
      resolution: null,
      downsampled: false,
      sourceCount: 3,
    });
    assert.match(urls.at(-1), new RegExp(`/range/0/price\\?from=${START + 60}&to=${START + 240}&min_version=${version}$`));

    const wide = await client.range("rest-range", 0, "price", { maxPoints: 100 });
    assert.match(urls.at(-1), /\?max_points=100&min_version=/);
    assert.equal(wide.downsampled, true);
    assert.equal(wide.sourceCount, 600);
    assert.deepEqual([wide.from, wide.to], [null, null]);
    // 600 minutes in at most 100 bars: 15-minute bars are the finest that fit (41 of them, the
    // first bucket starting before START); each is the bar the history route serves at "15".
    assert.equal(wide.resolution, "15");
    assert.equal(wide.data.length, 41);
    const bars = await client.history("rest-range", 0, "price", { resolution: "15", count: 100 });
    assert.deepEqual(wide.data, bars.data);
    const first = wide.data[0];
    const bucket = START - (START % 900);
    const inFirst = data.filter((c) => c.time < bucket + 900);
    assert.deepEqual(
      [first.time, first.open, first.high, first.low, first.close],
      [bucket, inFirst[0].open, inFirst.at(-1).high, inFirst[0].low, inFirst.at(-1).close],
    );

    await assert.rejects(
      client.range("rest-range", 0, "price", { maxPoints: 1 }),
      (error) => error instanceof ChartsError && error.status === 422,
    );
    await assert.rejects(client.range("rest-range", 0, "nothing"), (error) => error.errorCode === "SERIES_NOT_FOUND");
  });

  test("refusals reject with ChartsError: status, errorCode, requestId, detail", async () => {
    const client = makeClient({ baseUrl: server.url });
    await assert.rejects(client.getChart("no-such-chart"), (error) => {
      assert.ok(error instanceof ChartsError);
      assert.equal(error.status, 404);
      assert.equal(error.errorCode, "CHART_NOT_FOUND");
      assert.match(error.requestId, /\S+/);
      assert.match(error.detail, /no-such-chart/);
      assert.equal(error.response.headers.get("X-Request-ID"), error.requestId);
      return true;
    });
    await client.createChart("rest-errors");
    await assert.rejects(
      client.setSeries("rest-errors", "price", {
        seriesType: "candlestick",
        data: [{ time: START, open: 1, high: 0.5, low: 1, close: 1 }],
      }),
      (error) => error instanceof ChartsError && error.status === 400 && error.errorCode === "INVALID_DATA",
    );
    await assert.rejects(
      client.history("rest-errors", 0, "price", { count: 0 }),
      (error) => error instanceof ChartsError && error.status >= 400 && typeof error.errorCode === "string",
    );
  });

  test("an unreachable service rejects with ChartsConnectionError", async () => {
    const client = makeClient({ baseUrl: `http://127.0.0.1:${await freePort()}` });
    await assert.rejects(client.listCharts(), ChartsConnectionError);
  });
});

describe("REST with authentication", () => {
  let server;
  before(async () => {
    server = await startServer({ ENABLE_AUTH: "true" });
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  test("the token goes as a bearer token; a function gives a fresh one per request", async () => {
    const anonymous = makeClient({ baseUrl: server.url });
    await assert.rejects(anonymous.listCharts(), (error) => error.status === 401);

    const writer = makeClient({ baseUrl: server.url, token: jwt({ sub: "writer" }) });
    await writer.createChart("auth-rest");
    let calls = 0;
    const reader = makeClient({
      baseUrl: server.url,
      token: async () => {
        calls += 1;
        return jwt({ sub: "reader", scope: "charts:read", chart_ids: ["auth-rest"] });
      },
    });
    assert.equal((await reader.getChart("auth-rest")).chartId, "auth-rest");
    await assert.rejects(reader.createChart("auth-rest-2"), (error) => error.status === 403);
    assert.equal(calls, 2);
  });
});
