const RESOLUTION = /^([0-9]{1,5})?([SHDWM]?)$/;
/** A TradingView resolution as the server writes it (`D` is `1D`, `4H` is `240`), so that two
 * spellings of one resolution are known to be one, and its streamed bars told apart; a text the
 * server would refuse is left as it is. */
export function canonicalResolution(resolution) {
    const text = resolution.trim();
    const match = RESOLUTION.exec(text);
    if (match === null || text === "" || text === "S" || text === "H" || text.startsWith("0"))
        return text;
    const count = Number(match[1] ?? 1);
    const unit = match[2] ?? "";
    if (unit === "H")
        return String(count * 60);
    return unit === "" ? String(count) : `${count}${unit}`;
}
