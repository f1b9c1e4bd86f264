// The demo page: one chart of the service drawn with Lightweight Charts, kept live over the
// chart's WebSocket, with the chart's markers (createSeriesMarkers) and trend lines (a two-point
// line series each). Opened as /demo?chart=<id> (default "demo"); add &token=<jwt> when the
// server runs with ENABLE_AUTH.
import {
  AreaSeries,
  BarSeries,
  BaselineSeries,
  CandlestickSeries,
  createChart,
  createSeriesMarkers,
  HistogramSeries,
  LineSeries,
} from "lightweight-charts";

const SERIES_TYPES = {
  area: AreaSeries,
  bar: BarSeries,
  baseline: BaselineSeries,
  candlestick: CandlestickSeries,
  histogram: HistogramSeries,
  line: LineSeries,
};
const HISTORY_COUNT = 1000;
// Older bars are asked for when fewer than this many are left of the visible range.
const HISTORY_MARGIN = 50;
const MAX_RECONNECT_DELAY_MS = 2000;
const BULK_UPSERT = 100;

const params = new URLSearchParams(location.search);
const chartId = params.get("chart") || "demo";
const token = params.get("token");

const statusEl = document.getElementById("status");
const infoEl = document.getElementById("info");
document.getElementById("title").textContent = chartId;
document.title = `${chartId} - Lightweight Charts Pro Backend`;

const chart = createChart(document.getElementById("chart"), {
  autoSize: true,
  layout: { background: { color: "#131722" }, textColor: "#d1d4dc", panes: { separatorColor: "#2a2e39" } },
  grid: { vertLines: { color: "#1e222d" }, horzLines: { color: "#1e222d" } },
  timeScale: { timeVisible: true, secondsVisible: false },
});

// "<paneId>/<seriesId>" -> {api, type, paneId, seriesId, data (ascending), hasMoreBefore, loading, totalCount}
const series = new Map();
const state = { version: null, awaitingSnapshot: false, socket: null, attempts: 0, status: "connecting" };
const stats = { historyRequests: 0, historyResponses: 0, updates: 0, snapshots: 0, connects: 0, resyncs: 0 };
let nextRequestId = 1;
// "<paneId>/<seriesId>" -> {api, plugin}: the markers drawn on each series.
const markerPlugins = new Map();
// annotationId -> the line series drawing that trend line.
const trendLines = new Map();
const drawings = { markers: 0, trendLines: 0, loads: 0, updates: 0 };
let drawingsTimer = null;

window.demo = {
  chart,
  series,
  state,
  stats,
  drawings,
  markerPlugins,
  trendLines,
  lastBar: (key) => series.get(key)?.api.data().at(-1) ?? null,
  firstTime: (key) => series.get(key)?.data[0]?.time ?? null,
};

function setStatus(status, detail = "") {
  state.status = status;
  statusEl.dataset.state = status;
  statusEl.textContent = detail ? `${status}: ${detail}` : status;
}

function showInfo() {
  const parts = [];
  for (const s of series.values()) {
    parts.push(`${s.seriesId}: ${s.data.length.toLocaleString()} of ${s.totalCount.toLocaleString()} loaded`);
  }
  infoEl.textContent = `${parts.join(" · ")} · version ${state.version ?? "-"}`;
}

function getJson(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return fetch(path, { headers }).then((response) => {
    if (!response.ok) throw new Error(`${path} answered ${response.status}`);
    return response.json();
  });
}

// Markers and trend lines as the server has them now; redrawn whole after any change.
async function loadDrawings() {
  const base = `/api/charts/${encodeURIComponent(chartId)}`;
  let markerCount = 0;
  for (const [key, entry] of series) {
    const path = `${base}/markers/${entry.paneId}/${encodeURIComponent(entry.seriesId)}`;
    const { markers } = await getJson(path);
    let drawn = markerPlugins.get(key);
    if (!drawn || drawn.api !== entry.api) {
      drawn = { api: entry.api, plugin: createSeriesMarkers(entry.api, []) };
      markerPlugins.set(key, drawn);
    }
    drawn.plugin.setMarkers(markers);
    markerCount += markers.length;
  }
  const { annotations } = await getJson(`${base}/annotations`);
  const seen = new Set();
  for (const annotation of annotations) {
    if (annotation.kind !== "trend_line") continue;
    seen.add(annotation.annotationId);
    let line = trendLines.get(annotation.annotationId);
    if (!line) {
      line = chart.addSeries(
        LineSeries,
        {
          color: annotation.style.color || "#f7c948",
          lineWidth: annotation.style.lineWidth || 2,
          priceLineVisible: false,
          lastValueVisible: false,
          crosshairMarkerVisible: false,
        },
        annotation.paneId,
      );
      trendLines.set(annotation.annotationId, line);
    }
    const ends = annotation.points.map((p) => ({ time: p.time, value: p.price }));
    line.setData(ends.sort((a, b) => a.time - b.time));
  }
  for (const [id, line] of trendLines) {
    if (!seen.has(id)) {
      chart.removeSeries(line);
      trendLines.delete(id);
    }
  }
  drawings.markers = markerCount;
  drawings.trendLines = trendLines.size;
  drawings.loads += 1;
}

function scheduleDrawings() {
  clearTimeout(drawingsTimer);
  drawingsTimer = setTimeout(() => {
    loadDrawings().catch((error) => {
      infoEl.textContent = `drawings: ${error.message}`;
    });
  }, 50);
}

function send(message) {
  if (state.socket?.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
}

function requestSnapshot() {
  state.awaitingSnapshot = true;
  send({ type: "get_initial_data" });
}

function applySnapshot(message) {
  const seen = new Set();
  for (const [paneKey, paneSeries] of Object.entries(message.panes || {})) {
    const paneId = Number(paneKey);
    for (const [seriesId, s] of Object.entries(paneSeries)) {
      const key = `${paneId}/${seriesId}`;
      seen.add(key);
      const definition = SERIES_TYPES[s.seriesType];
      if (!definition) continue; // custom series need a plugin to draw
      let entry = series.get(key);
      if (entry && entry.type !== s.seriesType) {
        chart.removeSeries(entry.api);
        entry = undefined;
      }
      if (!entry) {
        const options = { ...(s.options || {}) };
        if (s.seriesType === "histogram" && paneId > 0) options.priceFormat ??= { type: "volume" };
        entry = { api: chart.addSeries(definition, options, paneId), type: s.seriesType, paneId, seriesId };
        series.set(key, entry);
      }
      entry.data = s.data;
      entry.hasMoreBefore = Boolean(s.hasMoreBefore);
      entry.totalCount = s.totalCount ?? s.data.length;
      entry.loading = false;
      entry.api.setData(entry.data);
    }
  }
  for (const [key, entry] of series) {
    if (!seen.has(key)) {
      chart.removeSeries(entry.api);
      series.delete(key);
    }
  }
  const panes = chart.panes();
  if (panes.length > 1) panes[0].setStretchFactor(3);
  state.version = message.version;
  state.awaitingSnapshot = false;
  stats.snapshots += 1;
  showInfo();
  scheduleDrawings();
}

// Index of the first point whose time is >= time (binary search; data is ascending).
function lowerBound(data, time) {
  let lo = 0;
  let hi = data.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (data[mid].time < time) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Merges ascending points into ascending data; a point replaces the one at its time.
function merged(data, points) {
  const out = [];
  let i = 0;
  for (const point of points) {
    while (i < data.length && data[i].time < point.time) out.push(data[i++]);
    if (i < data.length && data[i].time === point.time) i++;
    out.push(point);
  }
  while (i < data.length) out.push(data[i++]);
  return out;
}

function applyUpsert(entry, points) {
  if (points.length > BULK_UPSERT) {
    // A bulk write (a file loaded, a series seeded): one redraw instead of one per point.
    const first = entry.data[0]?.time ?? -Infinity;
    const before = entry.data.length;
    entry.data = merged(entry.data, points.filter((p) => p.time >= first));
    entry.totalCount += entry.data.length - before;
    entry.api.setData(entry.data);
    return;
  }
  let rewrite = false;
  for (const point of points) {
    const last = entry.data.at(-1);
    if (!last || point.time >= last.time) {
      if (last && point.time === last.time) entry.data[entry.data.length - 1] = point;
      else {
        entry.data.push(point);
        entry.totalCount += 1;
      }
      entry.api.update(point);
      continue;
    }
    // A correction of an older bar: the library only updates the last one, so redraw.
    if (point.time < entry.data[0].time) continue; // not loaded yet; history will bring it
    const at = lowerBound(entry.data, point.time);
    if (entry.data[at]?.time === point.time) entry.data[at] = point;
    else {
      entry.data.splice(at, 0, point);
      entry.totalCount += 1;
    }
    rewrite = true;
  }
  if (rewrite) entry.api.setData(entry.data);
}

function onUpdate(message) {
  if (state.awaitingSnapshot || state.version === null) return; // the snapshot will contain it
  if (message.version <= state.version) return;
  if (message.version > state.version + 1) {
    send({ type: "resume", sinceVersion: state.version });
    return;
  }
  state.version = message.version;
  stats.updates += 1;
  const entry = series.get(`${message.paneId}/${message.seriesId}`);
  if (message.op === "upsert" && entry && message.data) applyUpsert(entry, message.data);
  else if (message.op === "upsert" && !entry) requestSnapshot();
  else if (message.op !== "upsert") requestSnapshot();
  showInfo();
}

function onHistory(message) {
  stats.historyResponses += 1;
  const entry = series.get(`${message.paneId}/${message.seriesId}`);
  if (entry) entry.loading = false;
  if (message.error) {
    infoEl.textContent = `${message.errorCode}: ${message.error}`;
    return;
  }
  if (!entry) return;
  const first = entry.data[0];
  const older = first ? message.data.filter((p) => p.time < first.time) : message.data;
  entry.hasMoreBefore = Boolean(message.hasMoreBefore);
  entry.totalCount = message.totalCount;
  if (older.length > 0) {
    entry.data = older.concat(entry.data);
    entry.api.setData(entry.data);
  }
  showInfo();
  maybeLoadOlder(chart.timeScale().getVisibleLogicalRange());
}

function maybeLoadOlder(range) {
  if (!range || range.from > HISTORY_MARGIN) return;
  for (const entry of series.values()) {
    if (!entry.hasMoreBefore || entry.loading || entry.data.length === 0) continue;
    entry.loading = true;
    stats.historyRequests += 1;
    send({
      type: "request_history",
      paneId: entry.paneId,
      seriesId: entry.seriesId,
      beforeTime: entry.data[0].time,
      count: HISTORY_COUNT,
      requestId: nextRequestId++,
    });
  }
}

chart.timeScale().subscribeVisibleLogicalRangeChange(maybeLoadOlder);

function onMessage(event) {
  const message = JSON.parse(event.data);
  switch (message.type) {
    case "connected":
      state.attempts = 0;
      stats.connects += 1;
      setStatus("live");
      if (state.version === null) requestSnapshot();
      else send({ type: "resume", sinceVersion: state.version });
      break;
    case "ping":
      send({ type: "pong" });
      break;
    case "initial_data_response":
      applySnapshot(message);
      break;
    case "data_update":
      onUpdate(message);
      break;
    case "history_response":
      onHistory(message);
      break;
    case "annotation_update":
      drawings.updates += 1;
      scheduleDrawings();
      break;
    case "resumed":
      state.version = message.version;
      showInfo();
      break;
    case "resync_required":
      stats.resyncs += 1;
      requestSnapshot();
      break;
    case "error":
      if (message.errorCode === "CHART_NOT_FOUND" && state.awaitingSnapshot) {
        // Nothing to draw (yet, or any more); the chart's first data arrives as updates.
        for (const entry of series.values()) chart.removeSeries(entry.api);
        series.clear();
        state.awaitingSnapshot = false;
        state.version = 0;
        setStatus("live", "chart not found yet");
      } else {
        for (const entry of series.values()) entry.loading = false;
        infoEl.textContent = `${message.errorCode}: ${message.error}`;
      }
      break;
    default:
      break;
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/charts/${encodeURIComponent(chartId)}${query}`);
  state.socket = socket;
  socket.addEventListener("message", onMessage);
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket) return;
    for (const entry of series.values()) entry.loading = false;
    state.attempts += 1;
    const delay = Math.min(250 * 2 ** (state.attempts - 1), MAX_RECONNECT_DELAY_MS);
    setStatus("reconnecting", event.reason || `retry in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
  });
}

setStatus("connecting");
connect();
