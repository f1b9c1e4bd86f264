// bindSeries against a real server, drawing into a stand-in for the library's chart (the real
// library is driven in Chromium by tests/client_js/test_browser.py).
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { bindSeries, ChartsError } from "../dist/charts-client.js";
import { fakeChart } from "./fake-chart.js";
import { candles, nextEvent, startServer, waitFor, openClients } from "./server.js";

const { makeClient, closeAll } = openClients();
afterEach(closeAll);

const START = 1_700_000_040;

describe("bindSeries", () => {
  let server;
  let writer;
  before(async () => {
    server = await startServer();
    writer = makeClient({ baseUrl: server.url });
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  test("newest chunk, older chunks near the left edge, live bars, corrections, replace, delete", async () => {
    await writer.createChart("bind");
    await writer.setSeries("bind", "price", { seriesType: "candlestick", data: candles(START, 1200) });
    const client = makeClient({ baseUrl: server.url });
    const { chart, series } = fakeChart();
    const binding = bindSeries(chart, series, { client, chartId: "bind", seriesId: "price", chunkSize: 500 });
    await binding.ready;
    assert.equal(series.items.length, 500);
    assert.equal(series.items.at(-1).time, START + 1199 * 60);
    assert.equal(binding.hasMoreBefore, true);
    assert.equal(binding.totalCount, 1200);

    // Far from the left edge: nothing loads. Near it: the chunk before the first bar.
    chart.timeScale().setVisibleLogicalRange({ from: 300, to: 400 });
    assert.equal(binding.data.length, 500);
    const prepended = nextEvent(binding, "prepended");
    chart.timeScale().setVisibleLogicalRange({ from: 20, to: 120 });
    assert.deepEqual(await prepended, { count: 500, hasMoreBefore: true });
    assert.equal(series.items.length, 1000);
    chart.timeScale().setVisibleLogicalRange({ from: 10, to: 110 });
    assert.deepEqual(await nextEvent(binding, "prepended"), { count: 200, hasMoreBefore: false });
    assert.equal(series.items[0].time, START);
    assert.deepEqual(series.items, candles(START, 1200));

    // A new bar and the live bar: series.update; an older bar: merged and redrawn.
    const drawn = series.setDataCalls;
    await writer.upsert("bind", "price", candles(START + 1200 * 60, 1));
    await waitFor(() => series.items.length === 1201, 2000, "the new bar");
    const live = { time: START + 1200 * 60, open: 1, high: 3, low: 1, close: 2.5 };
    await writer.upsert("bind", "price", live);
    await waitFor(() => series.items.at(-1).close === 2.5, 2000, "the live bar");
    assert.equal(series.setDataCalls, drawn);
    const correction = { time: START + 600 * 60, open: 5, high: 9, low: 4, close: 8 };
    const updated = nextEvent(binding, "updated");
    await writer.upsert("bind", "price", correction);
    assert.equal((await updated).redrawn, true);
    assert.deepEqual(series.items[600], correction);
    assert.equal(series.items.length, 1201);
    assert.equal(binding.totalCount, 1201);

    // Replaced: loaded again. Deleted: emptied, and loaded again when written again.
    const loaded = nextEvent(binding, "loaded");
    await writer.setSeries("bind", "price", { seriesType: "candlestick", data: candles(START, 10) });
    assert.deepEqual(await loaded, { count: 10, totalCount: 10, hasMoreBefore: false, resolution: null });
    assert.deepEqual(series.items, candles(START, 10));
    const missing = nextEvent(binding, "missing");
    await writer.deleteSeries("bind", 0, "price");
    await missing;
    assert.deepEqual(series.items, []);
    const back = nextEvent(binding, "loaded");
    await writer.setSeries("bind", "price", { seriesType: "candlestick", data: candles(START, 3) });
    assert.equal((await back).count, 3);

    binding.dispose();
    await writer.upsert("bind", "price", candles(START + 3 * 60, 1));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(series.items.length, 3, "a disposed binding draws nothing");
    assert.equal(chart.listeners.size, 0);
    assert.equal(client.socket("bind").state, "connecting", "the last lease closed the socket; this is a new one");
    client.close();
  });

  test("a series written after the binding started is loaded then", async () => {
    const client = makeClient({ baseUrl: server.url });
    const { chart, series } = fakeChart();
    const binding = bindSeries(chart, series, { client, chartId: "bind-later", seriesId: "price" });
    const missing = await nextEvent(binding, "missing");
    assert.match(missing.reason, /CHART_NOT_FOUND/);
    const loaded = nextEvent(binding, "loaded");
    await writer.createChart("bind-later");
    await writer.setSeries("bind-later", "price", { seriesType: "line", data: [{ time: START, value: 1 }] });
    assert.equal((await loaded).count, 1);
    assert.deepEqual(series.items, [{ time: START, value: 1 }]);
    binding.dispose();
  });

  test("a resolution the server refuses leaves the series as it was", async () => {
    await writer.createChart("bind-resolution");
    await writer.setSeries("bind-resolution", "price", { seriesType: "line", data: [{ time: START, value: 1 }] });
    const client = makeClient({ baseUrl: server.url });
    const { chart, series } = fakeChart();
    const binding = bindSeries(chart, series, { client, chartId: "bind-resolution", seriesId: "price" });
    await binding.ready;
    await assert.rejects(binding.setResolution("7X"), ChartsError);
    assert.equal(binding.resolution, null);
    assert.deepEqual(series.items, [{ time: START, value: 1 }]);
    binding.dispose();
  });
});
