"""``charts-backend serve|demo|load|db``, run as users run them: subprocesses in a temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from lightweight_charts_pro_backend.client import ChartsClient
from tests.realtime.conftest import BASE_ENV, ServerProcess, free_port, start_server

pytestmark = pytest.mark.slow

START = 1_700_000_000


def run(cwd: Path, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("charts-backend", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "lightweight_charts_pro_backend.cli"]
    result = subprocess.run(
        [*command, *args],
        cwd=cwd,
        env={**os.environ, **BASE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode == 0) is ok, (result.stdout, result.stderr)
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("cli-server"))
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    "command", [[], ["serve"], ["demo"], ["load"], ["db"], ["db", "upgrade"], ["token"]]
)
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    out = run(tmp_path, *command, "--help").stdout
    assert out.startswith("usage: charts-backend")


def test_load_csv_candles(tmp_path: Path, server: ServerProcess) -> None:
    frame = pd.DataFrame(
        {
            "Date": pd.date_range("2024-01-01", periods=1200, freq="h").strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "Open": 10.0,
            "High": 12.0,
            "Low": 9.0,
            "Close": [11.0 + (i % 7) / 10 for i in range(1200)],
            "Symbol": "ABC",
        }
    )
    frame.to_csv(tmp_path / "abc.csv", index=False)
    out = run(
        tmp_path, "load", "abc.csv", "--chart", "loaded", "--url", server.http_url,
        "--batch-size", "500",
    ).stdout  # fmt: skip
    assert "Loaded 1200 points" in out
    with ChartsClient(server.http_url) as charts:
        points = charts.all_points("loaded", "abc")
    assert len(points) == 1200
    assert points[0] == {
        "time": int(pd.Timestamp("2024-01-01", tz="UTC").timestamp()),
        "open": 10.0,
        "high": 12.0,
        "low": 9.0,
        "close": 11.0,
    }


def test_load_parquet_line(tmp_path: Path, server: ServerProcess) -> None:
    times = pd.date_range("2024-01-01", periods=300, freq="min", tz="America/New_York")
    pd.DataFrame({"time": times, "value": range(300)}).to_parquet(tmp_path / "v.parquet")
    run(
        tmp_path, "load", "v.parquet", "--chart", "pq", "--series", "line", "--pane", "1",
        "--url", server.http_url, "--no-progress",
    )  # fmt: skip
    with ChartsClient(server.http_url) as charts:
        series = charts.get_series("pq", "line", pane=1)
    assert series["seriesType"] == "line"
    assert series["totalCount"] == 300
    assert series["data"][-1] == {"time": int(times[-1].timestamp()), "value": 299.0}


def test_load_errors_are_one_clear_sentence(tmp_path: Path, server: ServerProcess) -> None:
    url = ["--url", server.http_url, "--chart", "bad"]
    missing = run(tmp_path, "load", "nope.csv", *url, ok=False).stderr
    assert "nope.csv: no such file" in missing

    pd.DataFrame({"time": [START], "open": [1], "high": [2], "low": [0]}).to_csv(
        tmp_path / "ohl.csv", index=False
    )
    columns = run(tmp_path, "load", "ohl.csv", *url, "--type", "candlestick", ok=False).stderr
    assert "needs column(s) close" in columns

    pd.DataFrame({"price": [1.0]}).to_csv(tmp_path / "notime.csv", index=False)
    assert "no time column" in run(tmp_path, "load", "notime.csv", *url, ok=False).stderr

    pd.DataFrame({"time": [START, START + 1], "value": ["1", "x"]}).to_csv(
        tmp_path / "text.csv", index=False
    )
    text = run(tmp_path, "load", "text.csv", *url, ok=False).stderr
    assert "'value' has a value that is not a number in data row 2: 'x'" in text

    pd.DataFrame({"time": [START], "open": [1], "high": [0], "low": [2], "close": [1]}).to_csv(
        tmp_path / "inverted.csv", index=False
    )
    refused = run(tmp_path, "load", "inverted.csv", *url, ok=False).stderr
    assert "the server refused the data: 400" in refused

    down = f"http://127.0.0.1:{free_port()}"
    pd.DataFrame({"time": [START], "value": [1.0]}).to_csv(tmp_path / "good.csv", index=False)
    offline = run(tmp_path, "load", "good.csv", "--url", down, "--chart", "x", ok=False).stderr
    assert f"cannot reach the server at {down}" in offline
    with ChartsClient(server.http_url) as charts:
        # The chart was created before the server refused the points; no series was stored.
        assert charts.get_chart("bad")["panes"] == {}


def test_demo_seeds_and_moves_the_last_bar(tmp_path: Path, server: ServerProcess) -> None:
    out = run(
        tmp_path, "demo", "--url", server.http_url, "--chart", "demo-test", "--candles", "3000",
        "--bar-seconds", "1", "--rate", "20", "--duration", "1.5", "--no-progress",
    ).stdout  # fmt: skip
    assert f"{server.http_url}/demo?chart=demo-test" in out
    with ChartsClient(server.http_url) as charts:
        chart = charts.get_chart("demo-test")
        price = chart["panes"]["0"]["price"]
        volume = chart["panes"]["1"]["volume"]
        assert (price["seriesType"], volume["seriesType"]) == ("candlestick", "histogram")
        # One-second bars for 1.5 s of updates: the seeded 3000 plus at least one new bar.
        assert price["totalCount"] > 3000
        assert volume["totalCount"] == price["totalCount"]
        last = price["data"][-1]
        assert last["low"] <= min(last["open"], last["close"])
        assert last["high"] >= max(last["open"], last["close"])


def test_demo_against_a_server_that_is_down(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    err = run(tmp_path, "demo", "--url", down, "--candles", "10", ok=False).stderr
    assert f"charts-backend: cannot reach the server at {down}" in err


def test_serve_runs_the_production_app(tmp_path: Path) -> None:
    port = free_port()
    script = shutil.which("charts-backend", path=str(Path(sys.executable).parent))
    assert script is not None
    proc = subprocess.Popen(
        [script, "serve", "--host", "127.0.0.1"],
        cwd=tmp_path,
        env={**os.environ, **BASE_ENV, "PORT": str(port), "ENABLE_DEMO": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "serve exited early"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer within 60 s"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/demo").status_code == 200  # development
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    database = tmp_path / "charts.db"
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    out = run(tmp_path, "db", "upgrade", **env).stdout
    assert "is at revision head" in out
    with sqlite3.connect(database) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert revision
    assert "alembic_version" in tables and len(tables) > 2
    run(tmp_path, "db", "upgrade", **env)  # again: nothing to do, still fine


def test_db_upgrade_reports_an_unreachable_database(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"postgresql+asyncpg://u:secret@127.0.0.1:{free_port()}/x"}
    err = run(tmp_path, "db", "upgrade", ok=False, **env).stderr
    assert "charts-backend: could not upgrade postgresql+asyncpg://u:***@127.0.0.1" in err
    assert "secret" not in err
