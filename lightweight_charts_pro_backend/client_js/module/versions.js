/** The newest chart version each chart's own writes returned: sent as `min_version` on later
 * reads of that chart, so that a read never sees the chart older than a write already answered,
 * whichever worker or replica serves it. */
export class VersionTokens {
    #versions = new Map();
    get(chartId) {
        return this.#versions.get(chartId);
    }
    /** Remember `version` unless a newer one is known. */
    note(chartId, version) {
        if (version === undefined || !Number.isInteger(version))
            return;
        const known = this.#versions.get(chartId);
        if (known === undefined || version > known)
            this.#versions.set(chartId, version);
    }
    /** A chart (re)created or deleted: its versions start again. */
    reset(chartId, version) {
        if (version === undefined)
            this.#versions.delete(chartId);
        else
            this.#versions.set(chartId, version);
    }
}
