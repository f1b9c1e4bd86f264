import type { Point } from "./protocol.js";

/** Index of the first point whose time is >= `time` in ascending `data`. */
export function lowerBound(data: readonly Point[], time: number): number {
  let lo = 0;
  let hi = data.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((data[mid] as Point).time < time) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Ascending `data` with ascending `points` merged in; a point replaces the one at its time. */
export function mergePoints(data: readonly Point[], points: readonly Point[]): Point[] {
  const out: Point[] = [];
  let i = 0;
  for (const point of points) {
    while (i < data.length && (data[i] as Point).time < point.time) out.push(data[i++] as Point);
    if (i < data.length && (data[i] as Point).time === point.time) i++;
    out.push(point);
  }
  while (i < data.length) out.push(data[i++] as Point);
  return out;
}

/** `points` sorted by time, the last of equal times kept. */
export function ascending(points: readonly Point[]): Point[] {
  const sorted = [...points].sort((a, b) => a.time - b.time);
  return sorted.filter((point, i) => i + 1 === sorted.length || (sorted[i + 1] as Point).time !== point.time);
}
