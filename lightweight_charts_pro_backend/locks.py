"""Locks by key (a chart id), for services that serialize work per chart in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLocks:
    """One ``asyncio.Lock`` per key, existing only while someone holds or waits for it, so that
    the locks of charts nobody writes take no memory.

    Example::

        locks = KeyedLocks()
        async with locks.hold("demo"):
            ...  # no other holder of "demo" runs here
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def held(self, key: str) -> bool:
        """Whether someone holds or waits for ``key``'s lock."""
        return key in self._locks

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
