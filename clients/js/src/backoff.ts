/** How a socket waits between reconnection attempts. */
export interface ReconnectOptions {
  /** The first wait (ms). Default 250. */
  minDelayMs: number;
  /** The longest wait (ms). Default 10000. */
  maxDelayMs: number;
  /** Each failed attempt multiplies the wait by this. Default 2. */
  factor: number;
  /** Up to this fraction of each wait is taken off at random, so that the clients of a
   * restarted server do not all come back at the same instant. Default 0.5. */
  jitter: number;
}

export const DEFAULT_RECONNECT: Readonly<ReconnectOptions> = {
  minDelayMs: 250,
  maxDelayMs: 10_000,
  factor: 2,
  jitter: 0.5,
};

/** The wait before reconnection attempt `attempt` (1 for the first). */
export function reconnectDelay(
  attempt: number,
  options: ReconnectOptions = DEFAULT_RECONNECT,
  random: () => number = Math.random,
): number {
  const exponential = options.minDelayMs * options.factor ** Math.max(0, attempt - 1);
  const capped = Math.min(options.maxDelayMs, exponential);
  return Math.round(capped * (1 - options.jitter * random()));
}
