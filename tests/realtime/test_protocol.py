"""Frames the server builds and the checks on frames clients send."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from lightweight_charts_pro_backend.charts.events import ChartEvent
from lightweight_charts_pro_backend.config import Settings
from lightweight_charts_pro_backend.errors import ChartsError
from lightweight_charts_pro_backend.realtime.protocol import (
    decode_frame,
    event_message,
    message_fields,
    request_id_of,
)


def test_an_upsert_carries_its_points_as_encoded() -> None:
    data = b'[{"time":60,"value":1.25,"color":"#f00"}]'
    event = ChartEvent("c", 7, "upsert", pane_id=1, series_id="s", count=1, data=data)
    text = event_message(event)["text"]
    assert text.endswith(',"data":' + data.decode() + "}")
    assert orjson.loads(text) == {
        "type": "data_update",
        "chartId": "c",
        "op": "upsert",
        "paneId": 1,
        "seriesId": "s",
        "count": 1,
        "version": 7,
        "data": [{"time": 60, "value": 1.25, "color": "#f00"}],
    }


def test_other_changes_on_the_wire() -> None:
    replace = orjson.loads(
        event_message(ChartEvent("c", 1, "replace", pane_id=0, series_id="s", count=9))["text"]
    )
    assert "data" not in replace and replace["count"] == 9
    options = orjson.loads(event_message(ChartEvent("c", 2, "options", options={"a": 1}))["text"])
    assert options == {
        "type": "data_update",
        "chartId": "c",
        "op": "options",
        "options": {"a": 1},
        "version": 2,
    }
    deleted = orjson.loads(event_message(ChartEvent("c", 3, "chart_deleted"))["text"])
    assert deleted == {"type": "data_update", "chartId": "c", "op": "chart_deleted", "version": 3}


@pytest.mark.parametrize(
    ("text", "data", "code"),
    [
        (None, b"\x00", "BINARY_NOT_SUPPORTED"),
        ("x" * 300, None, "MESSAGE_TOO_LARGE"),
        (
            '{"type":"ping","a":"' + "é" * 150 + '"}',
            None,
            "MESSAGE_TOO_LARGE",
        ),  # 172 chars, 322 bytes
        ("{", None, "INVALID_JSON"),
        ("[]", None, "INVALID_MESSAGE"),
    ],
)
def test_undecodable_frames(text: str | None, data: bytes | None, code: str) -> None:
    with pytest.raises(ChartsError) as raised:
        decode_frame(text, data, 256)
    assert raised.value.error_code == code


def test_fields_accept_camel_and_snake_case() -> None:
    kind, fields = message_fields(
        {"type": "request_history", "paneId": 1, "series_id": "s", "beforeTime": 5, "requestId": 3}
    )
    assert kind == "request_history"
    assert fields == {"pane_id": 1, "series_id": "s", "before_time": 5}


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({}, "INVALID_MESSAGE"),
        ({"type": None}, "INVALID_MESSAGE"),
        ({"type": "nope"}, "UNKNOWN_MESSAGE_TYPE"),
        ({"type": "ping", "paneId": 0}, "VALIDATION_ERROR"),
        ({"type": "resume", "sinceVersion": 1, "since_version": 1}, "VALIDATION_ERROR"),
        ({"type": "ping", "requestId": ""}, "VALIDATION_ERROR"),
        ({"type": "ping", "requestId": 2**60}, "VALIDATION_ERROR"),
    ],
)
def test_malformed_messages(message: dict[str, object], code: str) -> None:
    with pytest.raises(ChartsError) as raised:
        message_fields(message)
    assert raised.value.error_code == code


def test_request_id_is_echoed_only_when_usable() -> None:
    assert request_id_of({"requestId": "a-1"}) == "a-1"
    assert request_id_of({"request_id": 7}) == 7
    assert request_id_of({"requestId": ["x"]}) is None
    assert request_id_of({"requestId": True}) is None


def test_pinging_no_more_often_than_the_timeout_is_refused() -> None:
    with pytest.raises(ValidationError, match="WEBSOCKET_PING_INTERVAL_SECONDS"):
        Settings(_env_file=None, websocket_timeout_seconds=1, websocket_ping_interval_seconds=1)  # type: ignore[call-arg]
    small = Settings(
        _env_file=None, websocket_timeout_seconds=0.5, websocket_ping_interval_seconds=0.1
    )  # type: ignore[call-arg]
    assert small.websocket_timeout_seconds == 0.5
