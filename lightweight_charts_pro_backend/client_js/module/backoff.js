export const DEFAULT_RECONNECT = {
    minDelayMs: 250,
    maxDelayMs: 10_000,
    factor: 2,
    jitter: 0.5,
};
/** The wait before reconnection attempt `attempt` (1 for the first). */
export function reconnectDelay(attempt, options = DEFAULT_RECONNECT, random = Math.random) {
    const exponential = options.minDelayMs * options.factor ** Math.max(0, attempt - 1);
    const capped = Math.min(options.maxDelayMs, exponential);
    return Math.round(capped * (1 - options.jitter * random()));
}
