// What bindSeries uses of a Lightweight Charts chart and series, for tests without a browser.

/** What bindSeries uses of a chart and a series, with one logical index per bar. */
export function fakeChart() {
  const listeners = new Set();
  let range = null;
  const timeScale = {
    subscribeVisibleLogicalRangeChange: (listener) => listeners.add(listener),
    unsubscribeVisibleLogicalRangeChange: (listener) => listeners.delete(listener),
    getVisibleLogicalRange: () => range,
    setVisibleLogicalRange(next) {
      range = { ...next };
      for (const listener of [...listeners]) listener(range);
    },
    getVisibleRange: () => null,
    timeToIndex: () => null,
  };
  const series = {
    items: [],
    setDataCalls: 0,
    updateCalls: 0,
    setData(data) {
      this.items = [...data];
      this.setDataCalls += 1;
    },
    update(point) {
      const last = this.items.at(-1);
      if (last && point.time < last.time) throw new Error("Cannot update oldest data");
      if (last && point.time === last.time) this.items[this.items.length - 1] = point;
      else this.items.push(point);
      this.updateCalls += 1;
    },
    barsInLogicalRange: (r) => ({ barsBefore: Math.floor(r.from), barsAfter: 0, from: 0, to: 0 }),
  };
  return { chart: { timeScale: () => timeScale, listeners }, series };
}
