// ChartSocket against a real server: states, ordered updates, requests, resume, resync, auth.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { ChartsError, reconnectDelay } from "../dist/charts-client.js";
import { candles, jwt, nextEvent, sleep, startServer, trackedWebSocket, waitFor, openClients } from "./server.js";

const { makeClient, closeAll } = openClients();
afterEach(closeAll);

const START = 1_700_000_040;

function keys(message) {
  return Object.keys(message).sort();
}

describe("ChartSocket", () => {
  let server;
  before(async () => {
    server = await startServer({
      WEBSOCKET_RESUME_EVENTS: "8",
      WEBSOCKET_PING_INTERVAL_SECONDS: "0.3",
      WEBSOCKET_TIMEOUT_SECONDS: "1",
    });
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  test("connects, delivers each change once in version order with its points, answers requests", async () => {
    const writer = makeClient({ baseUrl: server.url });
    await writer.createChart("sock-live");
    const { version: v } = await writer.setSeries("sock-live", "price", { seriesType: "candlestick", data: candles(START, 30) });

    const client = makeClient({ baseUrl: server.url });
    const socket = client.socket("sock-live");
    const states = [];
    socket.on("state", ({ state }) => states.push(state));
    const updates = [];
    socket.on("update", (update) => updates.push(update));
    const hello = await nextEvent(socket, "connected");
    assert.deepEqual(keys(hello), ["chartId", "timeoutSeconds", "type", "version"]);
    assert.equal(hello.version, v);
    assert.equal(socket.version, v);
    assert.deepEqual(states, ["connected"]); // "connecting" came before the listener

    for (let i = 0; i < 3; i++) await writer.upsert("sock-live", "price", candles(START + (30 + i) * 60, 1));
    await waitFor(() => updates.length === 3, 5000, "three updates");
    assert.deepEqual(updates.map((u) => u.version), [v + 1, v + 2, v + 3]);
    assert.deepEqual(keys(updates[0]), ["chartId", "count", "data", "op", "paneId", "seriesId", "type", "version"]);
    assert.deepEqual(updates[2].data, candles(START + 32 * 60, 1));
    assert.equal(socket.version, v + 3);

    const chunk = await socket.requestHistory({ paneId: 0, seriesId: "price", beforeTime: START + 10 * 60, count: 5 });
    assert.deepEqual(
      keys(chunk),
      ["chartId", "chunkInfo", "data", "direction", "hasMoreAfter", "hasMoreBefore", "paneId", "requestId", "seriesId", "totalCount", "type"],
    );
    assert.deepEqual(chunk.data.map((p) => p.time), [5, 6, 7, 8, 9].map((i) => START + i * 60));

    const snapshot = await socket.getInitialData({ paneId: 0, seriesId: "price" });
    assert.equal(snapshot.type, "initial_data_response");
    assert.equal(snapshot.version, v + 3);
    assert.equal(snapshot.totalCount, 33);

    await assert.rejects(socket.requestHistory({ paneId: 0, seriesId: "nothing", count: 5 }), (error) => {
      assert.ok(error instanceof ChartsError);
      assert.equal(error.errorCode, "SERIES_NOT_FOUND");
      assert.equal(error.status, 0);
      return true;
    });
    await assert.rejects(socket.getInitialData({ paneId: 0, seriesId: "nothing" }), (error) => error.errorCode === "SERIES_NOT_FOUND");

    // Server pings are answered: the socket outlives the server's 1 s idle timeout.
    await sleep(1500);
    assert.equal(socket.state, "connected");
    assert.ok(await socket.ping());
    client.close();
    assert.equal(socket.state, "closed");
    await assert.rejects(socket.requestHistory({ paneId: 0, seriesId: "price" }), /closed/);
  });

  test("after a lost connection: reconnects with backoff and resumes, replaying the missed changes", async () => {
    const writer = makeClient({ baseUrl: server.url });
    await writer.createChart("sock-resume");
    const { version: v } = await writer.setSeries("sock-resume", "price", { seriesType: "line", data: [{ time: START, value: 1 }] });
    const { Tracked, opened } = trackedWebSocket();
    const client = makeClient({
      baseUrl: server.url,
      WebSocket: Tracked,
      reconnect: { minDelayMs: 400, jitter: 0 },
    });
    const socket = client.socket("sock-resume");
    await nextEvent(socket, "connected");
    const updates = [];
    socket.on("update", (update) => updates.push(update.version));
    const reconnecting = nextEvent(socket, "state", 2000, (change) => change.state === "reconnecting");
    opened[0].close();
    const change = await reconnecting;
    assert.equal(change.delayMs, 400);
    assert.equal(change.attempt, 1);
    for (let i = 1; i <= 3; i++) await writer.upsert("sock-resume", "price", { time: START + i * 60, value: i });
    const resumed = await nextEvent(socket, "resumed", 5000);
    assert.deepEqual(keys(resumed), ["chartId", "replayed", "requestId", "sinceVersion", "type", "version"].filter((k) => k !== "requestId"));
    assert.equal(resumed.sinceVersion, v);
    assert.equal(resumed.replayed, 3);
    assert.deepEqual(updates, [v + 1, v + 2, v + 3]);
    assert.equal(opened.length, 2);
    await writer.upsert("sock-resume", "price", { time: START + 240, value: 4 });
    await waitFor(() => updates.length === 4, 5000, "the live update after resuming");
    assert.deepEqual(updates, [v + 1, v + 2, v + 3, v + 4]);
    client.close();
  });

  test("resync when the missed changes are no longer held", async () => {
    const writer = makeClient({ baseUrl: server.url });
    await writer.createChart("sock-resync");
    const { version: v } = await writer.setSeries("sock-resync", "price", { seriesType: "line", data: [{ time: START, value: 1 }] });
    const { Tracked, opened } = trackedWebSocket();
    const client = makeClient({ baseUrl: server.url, WebSocket: Tracked, reconnect: { minDelayMs: 400 } });
    const socket = client.socket("sock-resync");
    await nextEvent(socket, "connected");
    opened[0].close();
    await nextEvent(socket, "state", 2000, (change) => change.state === "reconnecting");
    for (let i = 1; i <= 12; i++) await writer.upsert("sock-resync", "price", { time: START + i * 60, value: i });
    const resync = await nextEvent(socket, "resync", 5000);
    assert.deepEqual(keys(resync), ["chartId", "reason", "sinceVersion", "type", "version"]);
    assert.equal(resync.sinceVersion, v);
    assert.equal(resync.version, v + 12);
    assert.equal(socket.version, v + 12);
    client.close();
  });

  test("subscriptions are counted: the server is told to stop with the last unsubscribe", async () => {
    const writer = makeClient({ baseUrl: server.url });
    await writer.createChart("sock-subs");
    await writer.setSeries("sock-subs", "price", { seriesType: "candlestick", data: candles(START, 30) });
    const { Tracked, opened } = trackedWebSocket();
    const client = makeClient({ baseUrl: server.url, WebSocket: Tracked, reconnect: { minDelayMs: 100, jitter: 0 } });
    const socket = client.socket("sock-subs");
    const sent = (type) => opened.flatMap((ws) => ws.sent).filter((frame) => frame.type === type);

    // "D" and "1D" are one resolution: two holders of it.
    assert.equal((await socket.subscribe(0, "price", "D")).resolution, "1D");
    assert.equal((await socket.subscribe(0, "price", "1D")).type, "subscribed");
    assert.equal(await socket.unsubscribe(0, "price", "1D"), null);
    const bars = [];
    socket.on("update", (update) => update.resolution === "1D" && bars.push(update));
    await writer.upsert("sock-subs", "price", candles(START + 30 * 60, 1));
    await waitFor(() => bars.length === 1, 2000, "the daily bar");
    assert.deepEqual(sent("unsubscribe"), []);
    assert.equal((await socket.unsubscribe(0, "price", "D")).type, "unsubscribed");
    assert.equal(sent("unsubscribe").length, 1);

    // A refused subscribe is matched by its unsubscribe like any other; a reconnection then
    // subscribes again to the live ones only.
    await assert.rejects(
      socket.subscribe(0, "ghost", "60"),
      (error) => error instanceof ChartsError && error.errorCode === "SERIES_NOT_FOUND",
    );
    await socket.unsubscribe(0, "ghost", "60");
    await socket.subscribe(0, "price", "60");
    await socket.subscribe(0, "price", "5");
    await socket.unsubscribe(0, "price", "5");
    opened.at(-1).close();
    await nextEvent(socket, "connected", 5000);
    const again = opened.at(-1).sent.filter((frame) => frame.type === "subscribe");
    assert.deepEqual(again.map((frame) => [frame.seriesId, frame.resolution]), [["price", "60"]]);
  });

  test("a gap in the versions is filled by a resume", async () => {
    const writer = makeClient({ baseUrl: server.url });
    await writer.createChart("sock-gap");
    const { version: v } = await writer.setSeries("sock-gap", "price", { seriesType: "line", data: [{ time: START, value: 1 }] });
    const { Tracked, opened } = trackedWebSocket();
    const client = makeClient({ baseUrl: server.url, WebSocket: Tracked });
    const socket = client.socket("sock-gap");
    await nextEvent(socket, "connected");
    // Lose one frame on the way, as a broken relay would.
    let dropped = 0;
    opened[0].lose = (frame) => {
      if (dropped > 0 || !frame.includes(`"version":${v + 1}`)) return false;
      dropped += 1;
      return true;
    };
    const resumed = nextEvent(socket, "resumed");
    const updates = [];
    socket.on("update", (update) => updates.push(update.version));
    for (let i = 1; i <= 3; i++) await writer.upsert("sock-gap", "price", { time: START + i * 60, value: i });
    await waitFor(() => updates.length >= 3, 5000, "updates 3-5");
    assert.equal(dropped, 1);
    assert.deepEqual(updates, [v + 1, v + 2, v + 3]);
    assert.equal((await resumed).sinceVersion, v);
    assert.equal(opened.length, 1, "the same connection");
    client.close();
  });
});

describe("ChartSocket with authentication", () => {
  let server;
  before(async () => {
    server = await startServer({ ENABLE_AUTH: "true" });
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  test("the token travels as Sec-WebSocket-Protocol: bearer, <jwt>", async () => {
    const token = jwt({ sub: "viewer", scope: "charts:read" });
    const { Tracked, opened } = trackedWebSocket();
    const client = makeClient({ baseUrl: server.url, token, WebSocket: Tracked });
    const socket = client.socket("sock-auth");
    const hello = await nextEvent(socket, "connected");
    assert.equal(hello.version, 0);
    assert.deepEqual(opened[0].offered, ["bearer", token]);
    assert.equal(opened[0].protocol, "bearer");
    client.close();

    const anonymous = makeClient({ baseUrl: server.url, reconnect: { minDelayMs: 100 } });
    const refused = anonymous.socket("sock-auth");
    const change = await nextEvent(refused, "state", 5000, (c) => c.state === "reconnecting");
    assert.equal(change.attempt, 1);
    anonymous.close();
  });
});

test("reconnection delays grow exponentially up to the cap, less a random part", () => {
  const options = { minDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0.5 };
  assert.deepEqual([1, 2, 3, 4, 5, 9].map((n) => reconnectDelay(n, options, () => 0)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([1, 2, 5].map((n) => reconnectDelay(n, options, () => 1)), [50, 100, 500]);
  for (let i = 0; i < 100; i++) {
    const delay = reconnectDelay(3, options);
    assert.ok(delay >= 200 && delay <= 400, String(delay));
  }
});

describe("annotations", () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
    server.cleanup();
  });

  test("written and read over REST, announced on the chart's socket", async () => {
    const client = makeClient({ baseUrl: server.url });
    await client.createChart("notes");
    await client.setSeries("notes", "price", { seriesType: "candlestick", data: candles(START, 10) });
    const socket = client.socket("notes");
    await nextEvent(socket, "connected");
    const announced = nextEvent(socket, "annotation");
    const marker = await client.createAnnotation("notes", {
      kind: "marker",
      seriesId: "price",
      points: [{ time: START + 120 }],
      text: "buy",
      style: { position: "belowBar", shape: "arrowUp", color: "#26a69a" },
    });
    const update = await announced;
    assert.deepEqual(keys(update), ["annotation", "annotationId", "chartId", "op", "type", "version"]);
    assert.equal(update.op, "create");
    assert.deepEqual(update.annotation, marker);

    const { markers } = await client.getMarkers("notes", 0, "price");
    assert.deepEqual(markers.map((m) => [m.time, m.text, m.shape]), [[START + 120, "buy", "arrowUp"]]);
    const changed = await client.updateAnnotation("notes", marker.annotationId, { text: "sell", version: marker.version });
    assert.equal(changed.text, "sell");
    assert.deepEqual(await client.getAnnotation("notes", marker.annotationId), changed);
    await assert.rejects(
      client.updateAnnotation("notes", marker.annotationId, { text: "late", version: marker.version }),
      (error) => error.status === 409 && error.errorCode === "ANNOTATION_CONFLICT",
    );
    assert.equal((await client.listAnnotations("notes")).annotations.length, 1);
    const deleted = nextEvent(socket, "annotation", 5000, (u) => u.op === "delete");
    await client.deleteAnnotation("notes", marker.annotationId);
    assert.equal((await deleted).annotationId, marker.annotationId);
    assert.deepEqual((await client.listAnnotations("notes")).annotations, []);
    await assert.rejects(client.getAnnotation("notes", marker.annotationId), (error) => error.status === 404);
    client.close();
  });
});
