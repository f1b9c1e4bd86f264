// bindSeries at a resolution: bars aggregated by the server, live through `subscribe`.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { bindSeries, ChartsError } from "../dist/charts-client.js";
import { fakeChart } from "./fake-chart.js";
import { candles, nextEvent, startServer, openClients } from "./server.js";

const { makeClient, closeAll } = openClients();
afterEach(closeAll);

const START = 1_700_000_100; // a multiple of 300: 5-minute buckets start at whole bars

describe("bindSeries at a resolution", () => {
  let server;
  let writer;
  before(async () => {
    server = await startServer();
    writer = makeClient({ baseUrl: server.url });
    await writer.createChart("tf");
    await writer.setSeries("tf", "price", { seriesType: "candlestick", data: candles(START, 600) });
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  test("REST reads at a resolution", async () => {
    const chunk = await writer.history("tf", 0, "price", { resolution: "5", count: 10, beforeTime: START + 3000 });
    assert.equal(chunk.resolution, "5");
    assert.deepEqual(chunk.data.map((bar) => bar.time), [...Array(10).keys()].map((i) => START + i * 300));
    assert.equal(chunk.totalCount, 120);
    const series = await writer.getSeries("tf", 0, "price", { resolution: "60" });
    assert.equal(series.resolution, "60");
    assert.equal(series.totalCount, 11); // 600 minutes from a quarter past the hour
    await assert.rejects(
      writer.history("tf", 0, "price", { resolution: "7X" }),
      (error) => error instanceof ChartsError && error.status === 422 && error.errorCode === "INVALID_RESOLUTION",
    );
  });

  test("setResolution loads the bars, applies their live updates and corrections, and goes back", async () => {
    const client = makeClient({ baseUrl: server.url });
    const { chart, series } = fakeChart();
    const binding = bindSeries(chart, series, { client, chartId: "tf", seriesId: "price" });
    await binding.ready;
    assert.equal(series.items.length, 500);

    await binding.setResolution("5");
    assert.equal(binding.resolution, "5");
    assert.equal(series.items.length, 120);
    assert.ok(series.items.every((bar) => bar.time % 300 === 0));
    const first = series.items[0];
    assert.deepEqual([first.time, first.open, first.high, first.low, first.close], [START, 10, 16, 9, 15]);

    // A new minute in the last bucket: the last 5-minute bar changes, with series.update.
    const updated = nextEvent(binding, "updated");
    await writer.upsert("tf", "price", { time: START + 600 * 60, open: 700, high: 900, low: 650, close: 800 });
    assert.equal((await updated).redrawn, false);
    const last = series.items.at(-1);
    assert.deepEqual([last.time, last.high, last.close], [START + 600 * 60, 900, 800]);
    assert.equal(series.items.length, 121);

    // A correction of an old minute: its bucket is merged in and redrawn.
    const corrected = nextEvent(binding, "updated");
    await writer.upsert("tf", "price", { time: START + 60, open: 10, high: 99, low: 1, close: 11 });
    assert.equal((await corrected).redrawn, true);
    assert.deepEqual([series.items[0].high, series.items[0].low], [99, 1]);

    // Raw updates are not drawn over bars; back to the stored points.
    await binding.setResolution(null);
    assert.equal(series.items.length, 500);
    assert.equal(series.items.at(-1).time, START + 600 * 60);
    binding.dispose();
  });
});
