"""Event buses: how a committed change reaches every listener of its chart.

An event is a change of the chart's series or options (:class:`ChartEvent`, numbered by the chart's
version) or of one of its annotations (:class:`AnnotationEvent`, numbered by the chart's
annotation sequence); listeners of a chart receive both kinds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from ..annotations.events import AnnotationEvent
from ..charts.events import ChartEvent

logger = logging.getLogger(__name__)

BusEvent = ChartEvent | AnnotationEvent
Listener = Callable[[BusEvent], None]
Unsubscribe = Callable[[], None]


class EventBus(Protocol):
    """Publish/subscribe by chart id. Listeners run on the event loop and must not block."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, event: BusEvent) -> None: ...

    def subscribe(self, chart_id: str, listener: Listener) -> Unsubscribe: ...


class InProcessEventBus:
    """Delivers events to listeners of the same process, synchronously, in publish order."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._listeners.clear()

    async def publish(self, event: BusEvent) -> None:
        for listener in tuple(self._listeners.get(event.chart_id, ())):
            try:
                listener(event)
            except Exception:
                logger.exception("event listener failed for chart %s", event.chart_id)

    def subscribe(self, chart_id: str, listener: Listener) -> Unsubscribe:
        self._listeners.setdefault(chart_id, []).append(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(chart_id)
            if listeners and listener in listeners:
                listeners.remove(listener)
                if not listeners:
                    del self._listeners[chart_id]

        return unsubscribe

    def listener_count(self, chart_id: str) -> int:
        return len(self._listeners.get(chart_id, ()))
