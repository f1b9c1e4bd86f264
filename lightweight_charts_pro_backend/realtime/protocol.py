"""The WebSocket wire format: the frames the server sends and the checks on what clients send.

Every frame is a JSON object with a ``type``, sent as a text frame. Frames are built as ASGI
``websocket.send`` messages so that one message object, encoded once, can be queued to every
socket of a chart.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from ..annotations.events import AnnotationEvent
from ..charts.events import ChartEvent
from ..errors import ChartsError, InvalidRequest

Message = dict[str, Any]

REQUEST_ID_MAX_LENGTH: Final = 128


class MessageError(ChartsError):
    """A client frame the protocol cannot use; answered with an ``error`` frame."""

    error_code = "INVALID_MESSAGE"


class InvalidJson(MessageError):
    error_code = "INVALID_JSON"


class UnknownMessageType(MessageError):
    error_code = "UNKNOWN_MESSAGE_TYPE"


class MessageTooLarge(MessageError):
    error_code = "MESSAGE_TOO_LARGE"


class BinaryMessage(MessageError):
    error_code = "BINARY_NOT_SUPPORTED"


def text_message(frame: bytes) -> Message:
    return {"type": "websocket.send", "text": frame.decode()}


def frame_message(fields: dict[str, Any]) -> Message:
    return text_message(orjson.dumps(fields))


def prefixed_message(head: dict[str, Any], body: bytes) -> Message:
    """``head``'s fields followed by those of the JSON object ``body`` (already encoded)."""
    return text_message(b"".join((orjson.dumps(head)[:-1], b",", body[1:])))


def event_message(event: ChartEvent) -> Message:
    """The ``data_update`` frame of one chart change; an upsert's points are spliced in as they
    were encoded by the service."""
    fields: dict[str, Any] = {
        "type": "data_update",
        "chartId": event.chart_id,
        "op": event.op,
    }
    if event.series_id is not None:
        fields["paneId"] = event.pane_id
        fields["seriesId"] = event.series_id
        fields["count"] = event.count
    if event.op == "options":
        fields["options"] = event.options if event.options is not None else {}
    fields["version"] = event.version
    head = orjson.dumps(fields)
    if event.data is None:
        return text_message(head)
    return text_message(b"".join((head[:-1], b',"data":', event.data, b"}")))


def annotation_message(event: AnnotationEvent) -> Message:
    """The ``annotation_update`` frame of one annotation change: its id and version, and for a
    create or update the annotation itself (spliced in as the service encoded it)."""
    head = orjson.dumps(
        {
            "type": "annotation_update",
            "chartId": event.chart_id,
            "op": event.op,
            "annotationId": event.annotation_id,
            "version": event.version,
        }
    )
    if event.data is None or event.op == "delete":
        return text_message(head)
    return text_message(b"".join((head[:-1], b',"annotation":', event.data, b"}")))


def withdrawal_message(event: AnnotationEvent) -> Message:
    """What viewers other than the owner receive when a shared annotation becomes private: it
    is gone for them."""
    return frame_message(
        {
            "type": "annotation_update",
            "chartId": event.chart_id,
            "op": "delete",
            "annotationId": event.annotation_id,
            "version": event.version,
        }
    )


def bars_message(
    event: ChartEvent, resolution: str, op: str, count: int, data: bytes | None
) -> Message:
    """The ``data_update`` of a change at ``resolution``: ``data`` holds the bars whose buckets
    changed; without it (a replace, a delete) the series is to be fetched again at that
    resolution."""
    fields: dict[str, Any] = {
        "type": "data_update",
        "chartId": event.chart_id,
        "op": op,
        "paneId": event.pane_id,
        "seriesId": event.series_id,
        "resolution": resolution,
        "count": count,
        "version": event.version,
    }
    head = orjson.dumps(fields)
    if data is None:
        return text_message(head)
    return text_message(b"".join((head[:-1], b',"data":', data, b"}")))


def error_message(
    detail: str, error_code: str, request_id: object = None, retry_after: int | None = None
) -> Message:
    """An ``error`` frame; ``retryAfter`` (seconds) when the same frame may succeed later."""
    fields: dict[str, Any] = {"type": "error", "error": detail, "errorCode": error_code}
    if retry_after is not None:
        fields["retryAfter"] = retry_after
    if request_id is not None:
        fields["requestId"] = request_id
    return frame_message(fields)


def refusal_message(
    message: dict[str, Any] | None,
    chart_id: str,
    detail: str,
    error_code: str,
    request_id: object = None,
    retry_after: int | None = None,
) -> Message:
    """The answer to a client frame that failed: an ``error`` frame, except for a
    ``request_history``, whose clients read failures in its ``history_response``. That one
    names the series as the frame asked for it (``paneId`` 0 when left out, as in a request);
    a field of the wrong type is null. ``retryAfter`` (seconds) says the frame may be sent
    again then (the database was away, or the rate limit refused it)."""
    if message is None or message.get("type") != "request_history":
        return error_message(detail, error_code, request_id, retry_after)
    pane_id = message.get("paneId", message.get("pane_id", 0))
    series_id = message.get("seriesId", message.get("series_id"))
    fields: dict[str, Any] = {"type": "history_response", "error": detail, "errorCode": error_code}
    if retry_after is not None:
        fields["retryAfter"] = retry_after
    if request_id is not None:
        fields["requestId"] = request_id
    fields["chartId"] = chart_id
    fields["paneId"] = pane_id if type(pane_id) is int else None
    fields["seriesId"] = series_id if isinstance(series_id, str) else None
    return frame_message(fields)


def ping_message() -> Message:
    return frame_message({"type": "ping", "timestamp": round(time.time(), 3)})


def pong_message(request_id: object = None) -> Message:
    fields: dict[str, Any] = {"type": "pong", "timestamp": round(time.time(), 3)}
    if request_id is not None:
        fields["requestId"] = request_id
    return frame_message(fields)


def _accepting(*names: str) -> dict[str, str]:
    accepted = {}
    for name in names:
        head, *rest = name.split("_")
        accepted[name] = name
        accepted[head + "".join(part.title() for part in rest)] = name
    return accepted


#: Fields each client message accepts, camelCase or snake_case, mapped to snake_case.
FIELDS: Final[dict[str, dict[str, str]]] = {
    "ping": _accepting("timestamp"),
    "pong": _accepting("timestamp"),
    "request_history": _accepting(
        "pane_id", "series_id", "before_time", "after_time", "count", "min_version", "resolution"
    ),
    "get_initial_data": _accepting("pane_id", "series_id", "min_version", "resolution"),
    "resume": _accepting("since_version"),
    "subscribe": _accepting("pane_id", "series_id", "resolution"),
    "unsubscribe": _accepting("pane_id", "series_id", "resolution"),
}
for _accepted in FIELDS.values():
    _accepted.update(_accepting("type", "request_id"))


def decode_frame(text: str | None, data: bytes | None, max_bytes: int) -> dict[str, Any]:
    """The JSON object a client frame holds; refuses binary, oversized and non-object frames."""
    if text is None:
        size = len(data or b"")
        raise BinaryMessage(
            f"Binary frames are not part of the protocol ({size} bytes received); "
            "send JSON objects as text frames."
        )
    if len(text) > max_bytes // 4 and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise MessageTooLarge(
            f"The frame is larger than the {max_bytes} bytes a client frame may have."
        )
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"The frame is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise MessageError(f"A frame must be a JSON object with a 'type', not {_json_kind(value)}.")
    return value


def request_id_of(message: dict[str, Any]) -> object:
    """The message's ``requestId`` when it is a usable one, else None (for echoing in errors)."""
    value = message.get("requestId", message.get("request_id"))
    try:
        return _request_id(value)
    except InvalidRequest:
        return None


def message_fields(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(type, fields)`` of a decoded client message, fields keyed in snake_case; refuses an
    unknown type, unknown or doubled fields and a malformed ``requestId``."""
    kind = message.get("type")
    if not isinstance(kind, str):
        raise MessageError("A frame must have a string field 'type'.")
    accepted = FIELDS.get(kind)
    if accepted is None:
        raise UnknownMessageType(
            f"Unknown message type {kind[:64]!r}; expected one of {', '.join(FIELDS)}."
        )
    fields: dict[str, Any] = {}
    for key, value in message.items():
        name = accepted.get(key)
        if name is None:
            expected = ", ".join(sorted(k for k in accepted if "_" not in k))
            raise InvalidRequest(f"Unknown field {key[:64]!r} in {kind}; expected {expected}.")
        if name in fields:
            raise InvalidRequest(f"Field {name} is given twice (camelCase and snake_case).")
        fields[name] = value
    _request_id(fields.pop("request_id", None))
    del fields["type"]
    return kind, fields


def _request_id(value: object) -> object:
    if value is None:
        return None
    if (type(value) is int and -(2**53) < value < 2**53) or (
        isinstance(value, str) and 0 < len(value) <= REQUEST_ID_MAX_LENGTH
    ):
        return value
    raise InvalidRequest(
        f"requestId must be a string of 1-{REQUEST_ID_MAX_LENGTH} characters or an integer."
    )


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
