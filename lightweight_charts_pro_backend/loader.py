"""``charts-backend load``: a CSV or Parquet file into one series, through the Python client."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: The value columns each series type needs.
VALUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "candlestick": ("open", "high", "low", "close"),
    "bar": ("open", "high", "low", "close"),
    "line": ("value",),
    "area": ("value",),
    "baseline": ("value",),
    "histogram": ("value",),
}
#: Per-point style columns kept when present; any other column is left out.
STYLE_COLUMNS = ("color", "borderColor", "wickColor", "lineColor", "topColor", "bottomColor")
TIME_COLUMNS = ("time", "timestamp", "datetime", "date")
INSTALL_HINT = "pip install 'lightweight-charts-pro-backend[client,pandas]'"


class LoadError(Exception):
    """Why a file could not be loaded, in one sentence naming the file."""


def read_frame(path: Path) -> pd.DataFrame:
    try:
        import pandas as pd
    except ImportError:
        raise LoadError(f"loading files needs pandas: {INSTALL_HINT}") from None
    if not path.is_file():
        raise LoadError(f"{path}: no such file.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except ImportError as exc:
        raise LoadError(f"{path}: reading Parquet needs pyarrow ({exc}): {INSTALL_HINT}") from None
    except Exception as exc:
        raise LoadError(f"{path}: not a readable {suffix[1:]} file: {exc}") from None
    raise LoadError(f"{path}: unknown file type {suffix or '(none)'!r}; use .csv or .parquet.")


def prepare(frame: pd.DataFrame, series_type: str, name: str) -> tuple[pd.DataFrame, str]:
    """The columns a series of ``series_type`` ("auto" to choose) needs, times as UTC seconds.

    Raises :class:`LoadError` naming the missing or unusable column.
    """
    import pandas as pd

    by_lower = {str(column).lower(): column for column in frame.columns}
    time_column = next((by_lower[c] for c in TIME_COLUMNS if c in by_lower), None)
    if time_column is None:
        raise LoadError(
            f"{name}: no time column (one of {', '.join(TIME_COLUMNS)}); "
            f"columns are {', '.join(map(str, frame.columns))}."
        )
    if series_type == "auto":
        series_type = "candlestick" if "close" in by_lower else "line"
    wanted = VALUE_COLUMNS[series_type]
    missing = [column for column in wanted if column not in by_lower]
    if missing:
        raise LoadError(
            f"{name}: a {series_type} series needs column(s) {', '.join(missing)}; "
            f"columns are {', '.join(map(str, frame.columns))}."
        )
    out = pd.DataFrame({"time": _seconds(frame[time_column], name, str(time_column))})
    for column in wanted:
        values = frame[by_lower[column]]
        if not pd.api.types.is_numeric_dtype(values):
            converted = pd.to_numeric(values, errors="coerce")
            bad = converted.isna() & values.notna()
            if bad.any():
                row = int(bad.to_numpy().argmax())
                raise LoadError(
                    f"{name}: column {column!r} has a value that is not a number "
                    f"in data row {row + 1}: {values.iloc[row]!r}."
                )
            values = converted
        out[column] = values.to_numpy(dtype="float64")
    for column in STYLE_COLUMNS:
        if column.lower() in by_lower:
            out[column] = frame[by_lower[column.lower()]].to_numpy()
    return out, series_type


def _seconds(times: pd.Series[Any], name: str, column: str) -> Any:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(times):
        if times.isna().any():
            raise LoadError(f"{name}: column {column!r} has empty times.")
        # Seconds or epoch milliseconds: the server tells them apart.
        return times.astype("int64").to_numpy()
    parsed = pd.to_datetime(times, utc=True, errors="coerce", format="mixed")
    bad = parsed.isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise LoadError(
            f"{name}: column {column!r} has a value that is not a time "
            f"in data row {row + 1}: {times.iloc[row]!r}."
        )
    # Whatever unit pandas picked for the parsed times (ns, us, s), whole UTC seconds.
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()


def load_file(
    file: str,
    *,
    url: str,
    chart_id: str,
    series_id: str | None,
    series_type: str,
    pane: int,
    batch_size: int,
    token: str | None,
    api_key: str | None,
    progress: bool,
) -> dict[str, Any]:
    """Read ``file`` and replace the series with its rows; returns the server's answer."""
    try:
        from .client import ChartsClient, ChartsClientError
    except ImportError:
        raise LoadError(f"the load command needs the client extra: {INSTALL_HINT}") from None
    if batch_size < 1:
        raise LoadError("--batch-size must be at least 1.")
    path = Path(file)
    frame, series_type = prepare(read_frame(path), series_type, str(path))
    series_id = series_id or path.stem
    with ChartsClient(url, token=token, api_key=api_key) as client:
        try:
            client.create_chart(chart_id)
            result: dict[str, Any] = client.set_series(
                chart_id,
                series_id,
                frame,
                series_type=series_type,
                pane=pane,
                batch_size=batch_size,
                progress=progress,
            )
        except ChartsClientError as exc:
            if exc.status == 0:
                raise LoadError(exc.detail) from None
            raise LoadError(f"{path}: the server refused the data: {exc}") from None
    print(
        f"Loaded {result['count']} points from {path} into {chart_id}/{series_id} "
        f"({series_type}, pane {pane})."
    )
    return result
