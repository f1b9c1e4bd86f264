"""The chaos soak (``bench/chaos_soak.py``), short: two replicas of two workers over PostgreSQL and
Redis under writes, reads and following sockets while a worker, Redis, PostgreSQL and a whole
replica fail. Nothing acknowledged may be lost and no socket may be misinformed.

The soak's socket client is checked first on frames made up here: the soak only means something
if that client notices a gap, a duplicate or a replay that misses an update.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.chaos_soak import Follower, Replica, Soak, SoakConfig, run_soak


class Sent:
    """Stands in for a client socket: keeps what the follower sends."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    async def send(self, text: str) -> None:
        self.frames.append(text)


def follower_at(version: int) -> tuple[Soak, Follower, Sent]:
    """A socket of the soak following chart ``c``, its copy at ``version``."""
    soak = Soak(SoakConfig(), [Replica(0, Path("unused"), {}, workers=2)])
    follower = Follower(soak, 0, "c")
    follower.last = version
    sent = Sent()
    follower.ws = sent
    return soak, follower, sent


def update(version: int, time: int | None = None) -> dict[str, Any]:
    point = {"time": time or 1_000 + version, "value": float(version)}
    return {"type": "data_update", "chartId": "c", "version": version, "data": [point]}


def snapshot(version: int, request_id: str) -> dict[str, Any]:
    data = [{"time": 1_000 + v, "value": float(v)} for v in range(1, version + 1)]
    return {
        "type": "initial_data_response",
        "requestId": request_id,
        "version": version,
        "panes": {"0": {"s": {"data": data}}},
    }


async def test_the_soak_client_notices_a_gap_and_a_duplicate() -> None:
    soak, follower, sent = follower_at(5)
    await follower.handle(update(6))
    assert soak.failures == [] and follower.last == 6
    await follower.handle(update(6))
    assert "again" in soak.failures[-1]
    await follower.handle(update(8))
    assert "no resync_required" in soak.failures[-1]
    assert '"type":"resume","sinceVersion":6' in sent.frames[-1]


async def test_the_soak_client_takes_a_snapshot_after_resync_required() -> None:
    soak, follower, sent = follower_at(5)
    await follower.handle({"type": "resync_required", "chartId": "c", "version": 9})
    assert '"minVersion":9' in sent.frames[-1]
    await follower.handle(update(8))  # held until the snapshot comes
    await follower.handle(update(10))
    await follower.handle(snapshot(9, follower.request_id))
    await follower.handle(update(11))
    assert soak.failures == [] and follower.last == 11
    assert soak.counts.covered_by_snapshot == 1
    # A snapshot older than the version asked for misinforms the client.
    await follower.handle({"type": "resync_required", "chartId": "c"})
    await follower.handle(snapshot(10, follower.request_id))
    assert "minVersion 11" in soak.failures[-1]


async def test_the_soak_client_checks_the_replay_after_resume() -> None:
    soak, follower, _ = follower_at(10)
    follower.since, follower.baseline = 10, 12
    await follower.send_resume()
    for frame in (update(13), update(11), update(12), update(13)):
        await follower.handle(frame)
    await follower.handle(
        {"type": "resumed", "requestId": follower.request_id, "version": 13, "replayed": 3}
    )
    assert soak.failures == [] and follower.last == 13
    assert soak.counts.replayed_again == 1

    follower.since, follower.baseline = 13, 13
    await follower.send_resume()
    for frame in (update(14), update(16)):
        await follower.handle(frame)
    await follower.handle(
        {"type": "resumed", "requestId": follower.request_id, "version": 16, "replayed": 2}
    )
    assert "resume from 13" in soak.failures[0]


@pytest.mark.slow
def test_nothing_acknowledged_is_lost_and_nobody_is_misinformed_under_faults(
    tmp_path: Path,
) -> None:
    config = SoakConfig(
        seconds=18.0,
        sockets=40,
        charts=3,
        writers=3,
        readers=2,
        warmup_seconds=3.0,
        outage_seconds=1.5,
        settle_seconds=4.0,
    )
    report = run_soak(config, tmp_path)
    print(report.summary())
    assert report.passed, report.summary()
    kinds = [fault.kind for fault in report.faults]
    assert kinds == ["worker", "redis", "postgres", "replica"], kinds
    acknowledged = [write for write in report.writes if write.version is not None]
    assert len(acknowledged) > 100, report.summary()
    assert report.counts.applied > 1000, report.summary()
    # Each fault was felt: sockets reconnected and were told to resync; a write met an outage.
    assert report.counts.resumed + report.counts.resyncs_on_resume > 0, report.summary()
    assert report.counts.resyncs_spontaneous > 0, report.summary()
    assert any(request.status == 503 for request in report.requests), report.summary()
