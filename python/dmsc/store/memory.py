"""`memory:`: registrations held by this process only (tests, throwaway meshes)."""

from __future__ import annotations

import time
from collections.abc import Callable

from dmsc.store.base import LocalStore, Registration


class MemoryStore(LocalStore):
    """A dict of registrations with expiry times; gone when the process ends.

    `clock` returns seconds (wall clock by default); TTLs count on it.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.url = "memory:"
        self._clock = clock
        self._entries: dict[str, tuple[Registration, float | None]] = {}

    async def open(self) -> None:
        self._closed.clear()

    async def load(self) -> list[Registration]:
        now = self._clock()
        return [reg for reg, expiry in self._entries.values() if expiry is None or expiry > now]

    async def put(self, registration: Registration) -> None:
        registration.validate()
        ttl = registration.ttl
        self._entries[registration.id] = (
            registration,
            None if ttl is None else self._clock() + ttl,
        )

    async def delete(self, registration_id: str) -> bool:
        return self._entries.pop(registration_id, None) is not None

    async def heartbeat(self, registration_id: str) -> bool:
        entry = self._entries.get(registration_id)
        if entry is None:
            return False
        reg, expiry = entry
        if expiry is None:
            return True
        now = self._clock()
        if expiry <= now:
            return False  # expired: left for expire() so the controller hears of it
        assert reg.ttl is not None
        self._entries[registration_id] = (reg, now + reg.ttl)
        return True

    async def expire(self) -> list[str]:
        now = self._clock()
        gone = [
            reg_id
            for reg_id, (_, expiry) in self._entries.items()
            if expiry is not None and expiry <= now
        ]
        for reg_id in gone:
            del self._entries[reg_id]
        return gone
