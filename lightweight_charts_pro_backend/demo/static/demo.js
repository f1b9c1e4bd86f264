// The demo page: one chart of the service drawn with Lightweight Charts, each series bound to
// the backend by the browser client (/client/charts-client.js), with the chart's markers
// (createSeriesMarkers) and trend lines (a two-point line series each), at the stored points or
// bars of a timeframe aggregated by the server. Opened as /demo?chart=<id> (default "demo");
// add &resolution=<5, 60, 1D...> to start at a timeframe, &token=<jwt> when the server runs
// with ENABLE_AUTH.
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
import { bindSeries, ChartsClient } from "/client/charts-client.js";

const SERIES_TYPES = {
  area: AreaSeries,
  bar: BarSeries,
  baseline: BaselineSeries,
  candlestick: CandlestickSeries,
  histogram: HistogramSeries,
  line: LineSeries,
};
const CHUNK_SIZE = 500;
// The switcher's timeframes: label and TradingView resolution (null: the stored points).
const TIMEFRAMES = [
  ["raw", null],
  ["1m", "1"],
  ["5m", "5"],
  ["15m", "15"],
  ["1h", "60"],
  ["4h", "240"],
  ["1D", "1D"],
  ["1W", "1W"],
];
const STATUS = { connecting: "connecting", connected: "live", reconnecting: "reconnecting", closed: "closed" };

const params = new URLSearchParams(location.search);
const chartId = params.get("chart") || "demo";
const token = params.get("token") ?? undefined;
let resolution = params.get("resolution") || null;

const statusEl = document.getElementById("status");
const infoEl = document.getElementById("info");
const legendEl = document.getElementById("legend");
document.getElementById("title").textContent = chartId;
document.title = `${chartId} - Lightweight Charts Pro Backend`;

const client = new ChartsClient({ token });
const socket = client.socket(chartId);
const chart = createChart(document.getElementById("chart"), {
  autoSize: true,
  layout: { background: { color: "#131722" }, textColor: "#d1d4dc", panes: { separatorColor: "#2a2e39" } },
  grid: { vertLines: { color: "#1e222d" }, horzLines: { color: "#1e222d" } },
  timeScale: { timeVisible: true, secondsVisible: false },
});

// "<paneId>/<seriesId>" -> {api, binding, type, paneId, seriesId}
const series = new Map();
const state = { status: "connecting" };
const stats = { historyRequests: 0, historyResponses: 0, updates: 0, snapshots: 0, connects: 0, resyncs: 0 };
// "<paneId>/<seriesId>" -> {api, plugin}: the markers drawn on each series.
const markerPlugins = new Map();
// annotationId -> the line series drawing that trend line.
const trendLines = new Map();
const drawings = { markers: 0, trendLines: 0, loads: 0, updates: 0 };

window.demo = {
  chart,
  client,
  series,
  state,
  stats,
  drawings,
  markerPlugins,
  trendLines,
  get version() {
    return socket.version;
  },
  get resolution() {
    return resolution;
  },
  setResolution,
  /** Whether a series' newest chunk is still loading. */
  get loading() {
    return [...series.values()].some((entry) => entry.binding.loading);
  },
  lastBar: (key) => series.get(key)?.api.data().at(-1) ?? null,
  firstTime: (key) => series.get(key)?.binding.data[0]?.time ?? null,
};

function setStatus(status, detail = "") {
  state.status = status;
  statusEl.dataset.state = status;
  statusEl.textContent = detail ? `${status}: ${detail}` : status;
}

function showInfo(message) {
  if (message !== undefined) {
    infoEl.textContent = message;
    return;
  }
  const parts = [...series.values()].map(
    ({ seriesId, binding }) =>
      `${seriesId}: ${binding.data.length.toLocaleString()} of ${binding.totalCount.toLocaleString()} loaded`,
  );
  infoEl.textContent = `${parts.join(" · ")} · version ${socket.version ?? "-"}`;
}

const number = (value) =>
  typeof value === "number" ? value.toLocaleString(undefined, { maximumFractionDigits: 8 }) : "-";

// The legend: the bar under the crosshair, else the last one, of every series.
function showLegend(param) {
  const parts = [];
  for (const { api, seriesId } of series.values()) {
    const bar = param?.seriesData?.get(api) ?? api.data().at(-1);
    if (!bar) continue;
    if ("open" in bar) {
      const up = bar.close >= bar.open;
      parts.push(
        `<b>${seriesId}</b> O <span>${number(bar.open)}</span> H <span>${number(bar.high)}</span>` +
          ` L <span>${number(bar.low)}</span> C <span class="${up ? "up" : "down"}">${number(bar.close)}</span>`,
      );
    } else if ("value" in bar) {
      parts.push(`<b>${seriesId}</b> <span>${number(bar.value)}</span>`);
    }
  }
  legendEl.innerHTML = parts.join(" &nbsp; ");
}
chart.subscribeCrosshairMove(showLegend);

// Markers and trend lines as the server has them now; redrawn whole after any change.
async function loadDrawings() {
  let markerCount = 0;
  for (const [key, entry] of series) {
    const { markers } = await client.getMarkers(
      chartId,
      entry.paneId,
      entry.seriesId,
      resolution === null ? {} : { resolution },
    );
    let drawn = markerPlugins.get(key);
    if (!drawn || drawn.api !== entry.api) {
      drawn = { api: entry.api, plugin: createSeriesMarkers(entry.api, []) };
      markerPlugins.set(key, drawn);
    }
    drawn.plugin.setMarkers(markers);
    markerCount += markers.length;
  }
  const { annotations } = await client.listAnnotations(chartId);
  const seen = new Set();
  for (const annotation of annotations) {
    if (annotation.kind !== "trend_line") continue;
    seen.add(annotation.annotationId);
    let line = trendLines.get(annotation.annotationId);
    if (!line) {
      const style = annotation.style;
      line = chart.addSeries(
        LineSeries,
        {
          color: style.color || "#f7c948",
          lineWidth: style.lineWidth || 2,
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

let drawingsTimer = null;
function scheduleDrawings() {
  clearTimeout(drawingsTimer);
  drawingsTimer = setTimeout(() => loadDrawings().catch((error) => showInfo(`drawings: ${error.message}`)), 50);
}

function addSeries(paneId, seriesId, description) {
  const key = `${paneId}/${seriesId}`;
  const options = { ...(description.options || {}) };
  if (description.seriesType === "histogram" && paneId > 0) options.priceFormat ??= { type: "volume" };
  const api = chart.addSeries(SERIES_TYPES[description.seriesType], options, paneId);
  const binding = bindSeries(chart, api, { client, chartId, paneId, seriesId, resolution, chunkSize: CHUNK_SIZE });
  binding.on("loaded", () => {
    stats.snapshots += 1;
    showInfo();
    showLegend();
    scheduleDrawings();
  });
  binding.on("historyRequested", () => (stats.historyRequests += 1));
  binding.on("prepended", () => {
    stats.historyResponses += 1;
    showInfo();
  });
  binding.on("updated", () => {
    showInfo();
    showLegend();
  });
  binding.on("error", (error) => showInfo(`${error.errorCode ?? error.name}: ${error.detail ?? error.message}`));
  series.set(key, { api, binding, type: description.seriesType, paneId, seriesId });
}

// Every series at `next` (bars aggregated by the server; null: the stored points).
async function setResolution(next) {
  resolution = next;
  showTimeframes();
  const switches = [...series.values()].map(({ binding }) => binding.setResolution(next));
  for (const outcome of await Promise.allSettled(switches)) {
    if (outcome.status === "rejected") showInfo(`${outcome.reason.errorCode}: ${outcome.reason.detail}`);
  }
  scheduleDrawings(); // markers sit on their bars' times
}

function showTimeframes() {
  const buttons = TIMEFRAMES.map(([label, value]) => {
    const button = document.createElement("button");
    button.textContent = label;
    button.setAttribute("aria-pressed", String(value === resolution));
    button.addEventListener("click", () => setResolution(value));
    return button;
  });
  document.getElementById("timeframes").replaceChildren(...buttons);
}

function removeSeries(key) {
  const entry = series.get(key);
  entry.binding.dispose();
  chart.removeSeries(entry.api);
  series.delete(key);
}

// Which series the chart has, and of which type: each is then kept current by its binding.
let discovering = null;
let discoverAgain = false;
function discover() {
  if (discovering) {
    discoverAgain = true;
    return discovering;
  }
  discovering = (async () => {
    do {
      discoverAgain = false;
      let panes = {};
      try {
        panes = (await client.getChart(chartId)).panes;
      } catch (error) {
        if (error.errorCode !== "CHART_NOT_FOUND") {
          showInfo(`${error.errorCode ?? error.name}: ${error.detail ?? error.message}`);
          continue;
        }
        showInfo("chart not found yet");
      }
      const seen = new Set();
      for (const [paneKey, paneSeries] of Object.entries(panes)) {
        const paneId = Number(paneKey);
        for (const [seriesId, description] of Object.entries(paneSeries)) {
          if (!SERIES_TYPES[description.seriesType]) continue; // custom series need a plugin to draw
          const key = `${paneId}/${seriesId}`;
          seen.add(key);
          if (series.get(key)?.type === description.seriesType) continue;
          if (series.has(key)) removeSeries(key);
          addSeries(paneId, seriesId, description);
        }
      }
      for (const key of [...series.keys()]) if (!seen.has(key)) removeSeries(key);
      for (const [key, drawn] of markerPlugins) if (series.get(key)?.api !== drawn.api) markerPlugins.delete(key);
      const panesNow = chart.panes();
      if (panesNow.length > 1) panesNow[0].setStretchFactor(3);
    } while (discoverAgain);
    discovering = null;
  })();
  return discovering;
}

socket.on("state", ({ state: next, delayMs, reason }) => {
  if (next === "reconnecting") {
    setStatus("reconnecting", delayMs === undefined ? reason : `retry in ${(delayMs / 1000).toFixed(1)} s`);
  } else {
    setStatus(STATUS[next] ?? next);
  }
});
socket.on("connected", () => {
  stats.connects += 1;
  // On each connection: the series may have changed while the page could not hear of it, and
  // annotation updates are not replayed.
  discover().then(() => stats.connects > 1 && scheduleDrawings());
});
socket.on("resync", () => (stats.resyncs += 1));
socket.on("annotation", () => {
  drawings.updates += 1;
  scheduleDrawings();
});
socket.on("annotationResync", scheduleDrawings);
socket.on("update", (update) => {
  stats.updates += 1;
  const key = `${update.paneId}/${update.seriesId}`;
  // A series created, replaced (perhaps by another type) or deleted, or the chart deleted: the
  // bindings reload their data; which series there are is looked at again here.
  if (update.op === "upsert" ? !series.has(key) : update.op !== "options") discover();
  showInfo();
});

setStatus("connecting");
showTimeframes();
