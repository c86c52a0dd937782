"""`sqlite:PATH`: the embedded store, one table in a WAL-mode SQLite file.

Every write is a committed transaction before the call returns, so a controller that is
killed and restarted loses no registration. TTLs are stored as wall-clock expiry times;
on open every TTL restarts from the open time (as etcd does for its leases when a leader
takes over), so instances get a full TTL to heartbeat the restarted controller.

SQLite calls run on one private worker thread: a commit never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

from dmsc.store.base import LocalStore, Registration, StoreStatus, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

Synchronous = Literal["off", "normal", "full", "extra"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    id TEXT PRIMARY KEY NOT NULL,
    endpoint TEXT NOT NULL,
    ttl REAL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS registrations_expiry
    ON registrations (expires_at) WHERE expires_at IS NOT NULL;
PRAGMA user_version = 1;
"""


class SqliteStore(LocalStore):
    """Registrations in the SQLite database at `path` (created if missing).

    `synchronous` is SQLite's durability setting: "normal" (the default) survives a crash
    of the process, "full" also an OS crash or power loss at the cost of an fsync per
    write. `busy_timeout` is how long a write waits for another process's lock (seconds)
    before failing with StoreUnavailable. `clock` returns wall-clock seconds; TTLs count on it.
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: Synchronous = "normal",
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        if not path:
            raise ValueError("sqlite: the database path must not be empty")
        if synchronous not in ("off", "normal", "full", "extra"):
            raise ValueError(
                f"synchronous: must be off, normal, full or extra, not {synchronous!r}"
            )
        if not (math.isfinite(busy_timeout) and busy_timeout >= 0):
            raise ValueError("busy_timeout: must be a non-negative number of seconds")
        self.url = f"sqlite:{path}"
        self._busy_timeout_ms = round(busy_timeout * 1000)
        self.path = path
        self._synchronous = synchronous
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._status: StoreStatus = "ok"
        self._executor: ThreadPoolExecutor | None = None

    # ---- plumbing --------------------------------------------------------------------

    @property
    def status(self) -> StoreStatus:
        """`degraded` after the database failed (locked too long, disk full) until the next
        operation succeeds."""
        return self._status

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """Runs `fn` on the database thread; database failures become StoreUnavailable."""
        if self._executor is None:
            raise RuntimeError("sqlite: the store is not open")
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as err:
            self._status = "degraded"
            raise StoreUnavailable(f"sqlite: {self.path}: {err}") from err
        self._status = "ok"
        return result

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("sqlite: the store is not open")
        return self._db

    def _open_sync(self, now: float) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal" and self.path != ":memory:":
                raise OSError(f"sqlite: cannot use WAL journal mode on {self.path} ({mode})")
            db.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            db.executescript(_SCHEMA)
            db.execute(
                "UPDATE registrations SET expires_at = max(expires_at, ? + ttl)"
                " WHERE ttl IS NOT NULL",
                (now,),
            )
        except BaseException:
            db.close()
            raise
        self._db = db

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ---- Store -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._closed.clear()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dmsc-sqlite")
        try:
            await self._run(self._open_sync, self._clock())
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        await super().close()
        if self._executor is None:
            return
        try:
            await self._run(self._close_sync)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def load(self) -> list[Registration]:
        rows = await self._run(self._load_sync, self._clock())
        out: list[Registration] = []
        for reg_id, endpoint, ttl in rows:
            try:
                doc = json.loads(endpoint)
            except ValueError as err:
                log.warning("sqlite: skipping unreadable registration %r: %s", reg_id, err)
                continue
            if isinstance(doc, dict):
                out.append(Registration(reg_id, doc, ttl))
            else:
                log.warning("sqlite: skipping registration %r: endpoint is not an object", reg_id)
        return out

    def _load_sync(self, now: float) -> list[tuple[str, str, float | None]]:
        return (
            self._conn()
            .execute(
                "SELECT id, endpoint, ttl FROM registrations"
                " WHERE expires_at IS NULL OR expires_at > ? ORDER BY id",
                (now,),
            )
            .fetchall()
        )

    async def put(self, registration: Registration) -> None:
        registration.validate()
        ttl = registration.ttl
        endpoint = json.dumps(registration.endpoint, separators=(",", ":"), sort_keys=True)
        await self._run(self._put_sync, registration.id, endpoint, ttl, self._clock())

    def _put_sync(self, reg_id: str, endpoint: str, ttl: float | None, now: float) -> None:
        self._conn().execute(
            "INSERT INTO registrations (id, endpoint, ttl, expires_at) VALUES (?, ?, ?, ? + ?)"
            " ON CONFLICT (id) DO UPDATE SET endpoint = excluded.endpoint,"
            " ttl = excluded.ttl, expires_at = excluded.expires_at",
            (reg_id, endpoint, ttl, now, ttl),
        )

    async def delete(self, registration_id: str) -> bool:
        return await self._run(self._delete_sync, registration_id)

    def _delete_sync(self, reg_id: str) -> bool:
        cursor = self._conn().execute("DELETE FROM registrations WHERE id = ?", (reg_id,))
        return cursor.rowcount > 0

    async def heartbeat(self, registration_id: str) -> bool:
        return await self._run(self._heartbeat_sync, registration_id, self._clock())

    def _heartbeat_sync(self, reg_id: str, now: float) -> bool:
        # An expired row is left alone: expire() removes it and tells the controller.
        cursor = self._conn().execute(
            "UPDATE registrations SET expires_at = ? + ttl"
            " WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)",
            (now, reg_id, now),
        )
        return cursor.rowcount > 0

    async def expire(self) -> list[str]:
        return await self._run(self._expire_sync, self._clock())

    def _expire_sync(self, now: float) -> list[str]:
        rows = (
            self._conn()
            .execute("DELETE FROM registrations WHERE expires_at <= ? RETURNING id", (now,))
            .fetchall()
        )
        return sorted(row[0] for row in rows)
