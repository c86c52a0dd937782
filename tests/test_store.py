"""Registration stores: memory, SQLite (kill and reopen) and a real etcd (leases, watches,
degraded mode)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsc.store import (
    EtcdError,
    EtcdStore,
    MemoryStore,
    Registration,
    SqliteStore,
    Store,
    StoreEvent,
    StoreUnavailable,
    open_store,
)
from dmsc.store import etcd as etcd_module
from dmsc.store._http import Connection
from dmsc.store.etcd_server import EtcdServer

T = TypeVar("T")

WATCH_DEADLINE_S = 1.0


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Runs a test body on a fresh event loop, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def reg(
    name: str = "web", port: int = 8080, ttl: float | None = None, **extra: Any
) -> Registration:
    endpoint = {
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "version": "v1",
        "health_check_url": "",
        "zone": "",
        "cluster": "",
        "labels": {},
        "weight": 1,
        **extra,
    }
    return Registration.of(endpoint, ttl)


class FakeClock:
    """Wall-clock seconds that only move when told."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> float:
    """Polls until `predicate()`; returns the seconds it took (fails the test on timeout)."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)
    return time.perf_counter() - start


class Recorder:
    """Collects a store's watch() events in a background task."""

    def __init__(self, store: Store) -> None:
        self.events: list[StoreEvent] = []
        self.times: list[float] = []
        self._task = asyncio.create_task(self._follow(store))

    async def _follow(self, store: Store) -> None:
        async for event in store.watch():
            self.events.append(event)
            self.times.append(time.perf_counter())

    async def until(self, count: int, timeout: float = 5.0) -> list[StoreEvent]:
        await wait_for(lambda: len(self.events) >= count, timeout)
        return self.events[:count]

    async def finished(self) -> bool:
        """Whether the watch ended (it must once the store closes)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), 2.0)
        return self._task.done()


# ---- every backend ---------------------------------------------------------------------

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite", "etcd"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Builds stores of one backend that share their backing data."""
    if request.param == "memory":
        return MemoryStore
    if request.param == "sqlite":
        return lambda: open_store(f"sqlite:{tmp_path / 'registry.db'}")
    server: EtcdServer = request.getfixturevalue("etcd")
    return lambda: open_store(server.url)


def test_put_load_delete_round_trip(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            assert store.status == "ok"
            assert await store.load() == []
            a, b = reg("web", 1), reg("api", 2, ttl=30.0, labels={"tier": "gold"})
            await store.put(a)
            await store.put(b)
            assert sorted(await store.load(), key=lambda r: r.id) == [b, a]
            changed = reg("web", 1, weight=7)
            await store.put(changed)  # same id: replaces
            assert sorted(await store.load(), key=lambda r: r.id) == [b, changed]
            assert await store.delete(a.id) is True
            assert await store.delete(a.id) is False
            assert await store.load() == [b]

    run(body())


def test_heartbeat_of_unknown_and_untimed_registrations(make_store: StoreFactory) -> None:
    async def body() -> None:
        async with make_store() as store:
            assert await store.heartbeat("nobody/127.0.0.1:1") is False
            forever, timed = reg("db", 5432), reg("db", 5433, ttl=60.0)
            await store.put(forever)
            await store.put(timed)
            assert await store.heartbeat(forever.id) is True
            assert await store.heartbeat(timed.id) is True
            await store.delete(timed.id)
            assert await store.heartbeat(timed.id) is False

    run(body())


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (Registration("web/h:1", {}, 0.0), "ttl"),
        (Registration("web/h:1", {}, -1.0), "ttl"),
        (Registration("web/h:1", {}, math.nan), "ttl"),
        (Registration("web/h:1", {}, math.inf), "ttl"),
        (Registration("", {}, None), "id"),
        (Registration("a\x00b", {}, None), "id"),
    ],
)
def test_invalid_registrations_are_refused(
    make_store: StoreFactory, bad: Registration, field: str
) -> None:
    async def body() -> None:
        async with make_store() as store:
            with pytest.raises(ValueError, match=f"^{field}:"):
                await store.put(bad)
            assert await store.load() == []

    run(body())


def test_registration_json_round_trip_and_bad_documents() -> None:
    original = reg("web", 80, ttl=2.5, labels={"a": "b"})
    assert Registration.from_json(original.to_json(owner="x")) == original
    assert original.id == "web/127.0.0.1:80"
    for text, field in [
        ("[]", "registration"),
        ('{"endpoint": {}}', "id"),
        ('{"id": "x", "endpoint": []}', "endpoint"),
        ('{"id": "x", "endpoint": {}, "ttl": "5"}', "ttl"),
        ('{"id": "x", "endpoint": {}, "ttl": true}', "ttl"),
    ]:
        with pytest.raises(ValueError, match=f"^{field}:"):
            Registration.from_json(text)


# ---- open_store ------------------------------------------------------------------------


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory:"), MemoryStore)
    assert isinstance(open_store("memory"), MemoryStore)
    store = open_store(f"sqlite:{tmp_path}/a.db")
    assert isinstance(store, SqliteStore) and store.path == f"{tmp_path}/a.db"
    store = open_store("sqlite:///var/lib/dmsc/registry.db?synchronous=full")
    assert isinstance(store, SqliteStore) and store.path == "/var/lib/dmsc/registry.db"
    etcd = open_store("etcd://127.0.0.1:2379")
    assert isinstance(etcd, EtcdStore)
    assert etcd.endpoints == [("127.0.0.1", 2379)] and etcd.prefix == "/dmsc/registrations/"
    etcd = open_store("etcd://10.0.0.1:2379,[::1]:2380/mesh/prod?timeout=0.5")
    assert isinstance(etcd, EtcdStore)
    assert etcd.endpoints == [("10.0.0.1", 2379), ("::1", 2380)]
    assert etcd.prefix == "/mesh/prod/" and etcd.timeout == 0.5


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://127.0.0.1:6379", "redis"),
        ("consul:", "consul"),
        ("no-scheme-at-all", "store"),
        ("memory:/x", "memory"),
        ("sqlite:", "sqlite"),
        ("sqlite:x.db?synchronous=sometimes", "sqlite"),
        ("sqlite:x.db?journal=delete", "sqlite"),
        ("etcd:127.0.0.1:2379", "etcd"),
        ("etcd://127.0.0.1", "etcd"),
        ("etcd://127.0.0.1:0", "etcd"),
        ("etcd://127.0.0.1:65536", "etcd"),
        ("etcd://127.0.0.1:2379,", "etcd"),
        ("etcd://:2379", "etcd"),
        ("etcd://127.0.0.1:2379?timeout=-1", "etcd"),
        ("etcd://127.0.0.1:2379?timeout=nan", "etcd"),
    ],
)
def test_open_store_refuses_bad_urls(url: str, named: str) -> None:
    with pytest.raises(ValueError, match=f"^{named}:"):
        open_store(url)


# ---- memory and SQLite: TTLs on a clock ------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def make_local(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[FakeClock], Store]:
    if request.param == "memory":
        return lambda clock: MemoryStore(clock=clock)
    return lambda clock: SqliteStore(str(tmp_path / "ttl.db"), clock=clock)


def test_ttl_expiry_and_heartbeat(make_local: Callable[[FakeClock], Store]) -> None:
    async def body() -> None:
        clock = FakeClock()
        async with make_local(clock) as store:
            timed, forever = reg("web", 1, ttl=10.0), reg("web", 2)
            await store.put(timed)
            await store.put(forever)
            clock.now += 5
            assert await store.heartbeat(timed.id) is True  # now expires at +15
            clock.now += 9
            assert await store.expire() == []
            assert {r.id for r in await store.load()} == {timed.id, forever.id}
            clock.now += 1.5
            assert await store.heartbeat(timed.id) is False  # too late
            assert await store.load() == [forever]  # expired ones are not served
            assert await store.expire() == [timed.id]
            assert await store.expire() == []
            assert await store.heartbeat(forever.id) is True
            clock.now += 1e6
            assert await store.load() == [forever]

    run(body())


def test_local_watch_yields_nothing_and_ends_on_close(
    make_local: Callable[[FakeClock], Store],
) -> None:
    async def body() -> None:
        store = make_local(FakeClock())
        await store.open()
        recorder = Recorder(store)
        await store.put(reg())
        await asyncio.sleep(0.05)
        await store.close()
        assert await recorder.finished()
        assert recorder.events == []

    run(body())


def test_sqlite_file_is_wal_with_one_table(tmp_path: Path) -> None:
    path = tmp_path / "r.db"

    async def body() -> None:
        async with SqliteStore(str(path)) as store:
            await store.put(reg(ttl=5.0))

    run(body())
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("registrations",)]
    reg_id, ttl, expires_at = db.execute("SELECT id, ttl, expires_at FROM registrations").fetchone()
    assert reg_id == "web/127.0.0.1:8080" and ttl == 5.0
    assert abs(expires_at - (time.time() + 5.0)) < 5.0  # an absolute expiry timestamp
    db.close()


def test_sqlite_failures_are_store_unavailable(tmp_path: Path) -> None:
    async def body() -> None:
        with pytest.raises(StoreUnavailable, match=r"^sqlite: .*missing"):
            await SqliteStore(str(tmp_path / "missing" / "r.db")).open()
        path = tmp_path / "locked.db"
        async with SqliteStore(str(path), busy_timeout=0.05) as store:
            await store.put(reg("web", 1))
            locker = sqlite3.connect(path, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(OSError, match="locked"):
                await store.put(reg("web", 2))
            assert store.status == "degraded"
            assert await store.load() == [reg("web", 1)]  # readers are not blocked in WAL
            assert status_of(store) == "ok"
            locker.execute("ROLLBACK")
            locker.close()
            await store.put(reg("web", 2))
            assert len(await store.load()) == 2

    run(body())


def test_sqlite_killed_writer_loses_no_registration(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    writer = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from dmsc.store import Registration, open_store

        async def main():
            store = open_store({f"sqlite:{path}"!r})
            await store.open()
            for i in range(200):
                endpoint = {{"name": "svc", "host": "127.0.0.1", "port": 1000 + i}}
                await store.put(Registration.of(endpoint, 30.0 if i % 2 else None))
            await store.delete("svc/127.0.0.1:1000")
            print("written", flush=True)
            time.sleep(60)  # killed here, without close()

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"written"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9

    async def body() -> None:
        async with open_store(f"sqlite:{path}") as store:
            loaded = {r.id: r for r in await store.load()}
            assert len(loaded) == 199 and "svc/127.0.0.1:1000" not in loaded
            assert loaded["svc/127.0.0.1:1001"].ttl == 30.0
            assert loaded["svc/127.0.0.1:1002"].ttl is None
            assert loaded["svc/127.0.0.1:1199"].endpoint["port"] == 1199

    run(body())


def test_sqlite_reopen_restarts_ttls(tmp_path: Path) -> None:
    path = str(tmp_path / "reopen.db")

    async def body() -> None:
        clock = FakeClock()
        async with SqliteStore(path, clock=clock) as store:
            await store.put(reg("web", 1, ttl=10.0))
        clock.now += 3600  # the controller was down for an hour
        async with SqliteStore(path, clock=clock) as store:
            assert [r.id for r in await store.load()] == ["web/127.0.0.1:1"]
            clock.now += 9
            assert await store.expire() == []
            clock.now += 2
            assert await store.expire() == ["web/127.0.0.1:1"]
        async with SqliteStore(path, clock=clock) as store:
            assert await store.load() == []

    run(body())


_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(0, 4),
            st.one_of(st.none(), st.floats(0.5, 20.0)),
            st.integers(1, 5),
        ),
        st.tuples(st.just("delete"), st.integers(0, 4)),
        st.tuples(st.just("heartbeat"), st.integers(0, 4)),
        st.tuples(st.just("advance"), st.floats(0.0, 15.0)),
        st.tuples(st.just("expire")),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(ops=_ops)
def test_local_stores_match_a_model(ops: list[tuple[Any, ...]]) -> None:
    """Memory and SQLite agree with a plain dict-of-expiry model on any operation sequence."""

    async def body(db: str) -> None:
        clock = FakeClock(0.0)
        stores: list[Store] = [MemoryStore(clock=clock), SqliteStore(db, clock=clock)]
        model: dict[str, tuple[Registration, float]] = {}
        for store in stores:
            await store.open()
        try:
            for op in ops:
                now = clock.now
                if op[0] == "advance":
                    clock.now += op[1]
                    continue
                if op[0] == "put":
                    r = reg("svc", op[1], ttl=op[2], weight=op[3])
                    model[r.id] = (r, math.inf if op[2] is None else now + op[2])
                    expected: object = None
                elif op[0] == "delete":
                    expected = model.pop(f"svc/127.0.0.1:{op[1]}", None) is not None
                elif op[0] == "heartbeat":
                    entry = model.get(f"svc/127.0.0.1:{op[1]}")
                    expected = entry is not None and entry[1] > now
                    if expected and entry is not None and entry[0].ttl is not None:
                        model[entry[0].id] = (entry[0], now + entry[0].ttl)
                else:
                    expected = sorted(k for k, (_, exp) in model.items() if exp <= now)
                    for key in expected:
                        del model[key]
                for store in stores:
                    got: object = None
                    if op[0] == "put":
                        await store.put(reg("svc", op[1], ttl=op[2], weight=op[3]))
                    elif op[0] == "delete":
                        got = await store.delete(f"svc/127.0.0.1:{op[1]}")
                    elif op[0] == "heartbeat":
                        got = await store.heartbeat(f"svc/127.0.0.1:{op[1]}")
                    else:
                        got = sorted(await store.expire())
                    assert got == expected, (type(store).__name__, op)
                live = sorted(r.id for r, exp in model.values() if exp > clock.now)
                for store in stores:
                    assert sorted(r.id for r in await store.load()) == live
        finally:
            for store in stores:
                await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        run(body(f"{tmp}/model.db"))


# ---- etcd ------------------------------------------------------------------------------


def kv_of(etcd: EtcdServer, store: EtcdStore, registration_id: str) -> dict[str, Any] | None:
    key = base64.b64encode((store.prefix + registration_id).encode()).decode()
    kvs = etcd.request("/v3/kv/range", {"key": key}).get("kvs")
    assert kvs is None or isinstance(kvs, list)
    return kvs[0] if kvs else None


def lease_ttl(etcd: EtcdServer, lease: str) -> int:
    answer = etcd.request("/v3/lease/timetolive", {"ID": lease})
    return int(str(answer.get("TTL", "-1")))


def status_of(store: Store) -> str:
    return store.status


def etcd_store(url: str) -> EtcdStore:
    store = open_store(url)
    assert isinstance(store, EtcdStore)
    return store


def test_etcd_ttl_registrations_live_under_leases(etcd: EtcdServer) -> None:
    async def body() -> None:
        async with etcd_store(etcd.url) as store:
            timed = reg("web", 1, ttl=7.5)
            await store.put(timed)
            kv = kv_of(etcd, store, timed.id)
            assert kv is not None and "lease" in kv
            assert 6 <= lease_ttl(etcd, kv["lease"]) <= 8  # ceil(7.5)
            await store.put(reg("web", 1))  # re-registered without a TTL
            kv2 = kv_of(etcd, store, timed.id)
            assert kv2 is not None and "lease" not in kv2
            await wait_for(lambda: lease_ttl(etcd, kv["lease"]) == -1, 2.0)  # old lease revoked
            await store.put(timed)
            kv3 = kv_of(etcd, store, timed.id)
            assert kv3 is not None and await store.delete(timed.id)
            await wait_for(lambda: lease_ttl(etcd, kv3["lease"]) == -1, 2.0)

    run(body())


def test_etcd_lease_expiry_and_heartbeats(etcd: EtcdServer) -> None:
    async def body() -> None:
        async with etcd_store(etcd.url) as owner, etcd_store(etcd.url) as other:
            watched = Recorder(other)
            mine = Recorder(owner)
            kept, dropped = reg("web", 1, ttl=1.0), reg("web", 2, ttl=1.0)
            await owner.put(kept)
            await owner.put(dropped)
            assert await watched.until(2) == [("put", kept), ("put", dropped)]

            start = time.perf_counter()
            while len(watched.events) < 3:  # the other one expires: etcd grants >= 2 s
                assert await owner.heartbeat(kept.id) is True
                assert time.perf_counter() - start < 5.0
                await asyncio.sleep(0.3)
            assert watched.events[2] == ("delete", dropped.id)
            # The expiry is nobody's write: the owner hears of it too (expire() is [] on etcd).
            assert await mine.until(1) == [("delete", dropped.id)]
            assert await owner.expire() == []
            assert await owner.heartbeat(dropped.id) is False
            assert await other.heartbeat(kept.id) is True  # any controller may heartbeat
            assert await other.load() == [kept]

    run(body(), timeout=15)


def _watch_between_two_stores(url: str) -> list[float]:
    async def body() -> list[float]:
        async with etcd_store(url) as a, etcd_store(url) as b:
            seen_by_a, seen_by_b = Recorder(a), Recorder(b)
            await asyncio.sleep(0.1)  # both watches established
            delays = []
            for port in range(1, 6):
                r = reg("web", port)
                start = time.perf_counter()
                await a.put(r)
                await seen_by_b.until(port)
                delays.append(seen_by_b.times[port - 1] - start)
                assert seen_by_b.events[port - 1] == ("put", r)
            assert await b.delete(reg("web", 1).id)
            assert await seen_by_a.until(1) == [("delete", reg("web", 1).id)]
            await asyncio.sleep(0.1)
            assert len(seen_by_b.events) == 5  # a store does not hear its own writes
            assert len(seen_by_a.events) == 1
            return delays

    return run(body())


def test_etcd_two_stores_see_each_others_writes_within_a_second(etcd: EtcdServer) -> None:
    delays = _watch_between_two_stores(etcd.url)
    assert max(delays) < WATCH_DEADLINE_S, delays


def test_etcd_store_works_on_uvloop(etcd: EtcdServer) -> None:
    async def body() -> list[Registration]:
        async with etcd_store(etcd.url) as a, etcd_store(etcd.url) as b:
            seen = Recorder(b)
            await a.put(reg(ttl=5.0))
            await seen.until(1)
            assert await b.heartbeat(reg().id)
            return await b.load()

    assert uvloop.run(body()) == [reg(ttl=5.0)]


def test_etcd_changes_before_watch_starts_are_not_missed(etcd: EtcdServer) -> None:
    async def body() -> None:
        async with etcd_store(etcd.url) as a, etcd_store(etcd.url) as b:
            await a.put(reg("x", 1))
            await a.put(reg("x", 2))
            await a.delete(reg("x", 1).id)
            await asyncio.sleep(0.2)  # b's watch() has not started yet
            seen = Recorder(b)
            assert await seen.until(3) == [
                ("put", reg("x", 1)),
                ("put", reg("x", 2)),
                ("delete", reg("x", 1).id),
            ]

    run(body())


def test_etcd_concurrent_puts_paged_reads_and_a_multi_key_delete(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd_module, "RANGE_PAGE", 7)  # load() reads 29 pages

    async def body() -> None:
        async with etcd_store(etcd.url) as a, etcd_store(etcd.url) as b:
            seen = Recorder(b)
            regs = [reg("bulk", port, ttl=30.0 if port % 2 else None) for port in range(200)]
            await asyncio.gather(*(a.put(r) for r in regs))
            assert sorted(await b.load(), key=lambda r: r.endpoint["port"]) == regs
            await seen.until(200)
            # One deleterange over the whole prefix: 200 events at one revision.
            prefix = base64.b64encode(b.prefix.encode()).decode()
            end = base64.b64encode(b.prefix[:-1].encode() + b"0").decode()
            etcd.request("/v3/kv/deleterange", {"key": prefix, "range_end": end})
            events = await seen.until(400)
            assert sorted(events[200:]) == sorted(("delete", r.id) for r in regs)
            assert await b.load() == [] and await a.load() == []

    run(body())


def test_etcd_prefixes_and_endpoint_failover(etcd: EtcdServer) -> None:
    dead = f"127.0.0.1:{_closed_port()}"
    live = etcd.url.removeprefix("etcd://")

    async def body() -> None:
        async with (
            etcd_store(f"etcd://{dead},{live}/mesh/one") as one,
            etcd_store(f"etcd://{live}/mesh/two") as two,
        ):
            assert one.status == "ok" and two.status == "ok"
            await one.put(reg("a", 1))
            await two.put(reg("b", 2))
            assert await one.load() == [reg("a", 1)]
            assert await two.load() == [reg("b", 2)]

    run(body())


def test_etcd_refusal_is_an_error_not_an_outage(etcd: EtcdServer) -> None:
    async def body() -> None:
        async with etcd_store(etcd.url) as store:
            huge = reg(labels={"blob": "x" * 2_000_000})  # over etcd's request size limit
            with pytest.raises(EtcdError):
                await store.put(huge)
            assert store.status == "ok"
            assert await store.load() == []

    run(body())


def test_etcd_degraded_while_killed_then_recovers(etcd: EtcdServer) -> None:
    async def body() -> None:
        async with etcd_store(etcd.url) as a, etcd_store(etcd.url) as b:
            seen = Recorder(b)
            kept = reg("web", 1)
            await a.put(kept)
            await seen.until(1)

            etcd.stop()
            await wait_for(lambda: a.status == "degraded" and b.status == "degraded", 2.0)
            assert await a.load() == [kept]  # the last known state
            assert await b.load() == [kept]
            with pytest.raises(StoreUnavailable):
                await a.put(reg("web", 2))
            with pytest.raises(OSError):  # StoreUnavailable is an OSError
                await a.heartbeat(kept.id)
            with pytest.raises(StoreUnavailable):
                await a.delete(kept.id)
            late = etcd_store(etcd.url)  # a controller starting while etcd is down
            await late.open()
            late_seen = Recorder(late)
            assert late.status == "degraded" and await late.load() == []

            await asyncio.to_thread(etcd.start)
            recovered = await wait_for(lambda: a.status == b.status == "ok", 3.0)
            await a.put(reg("web", 3))
            assert (await seen.until(2))[1] == ("put", reg("web", 3))
            assert await late_seen.until(2) == [("put", kept), ("put", reg("web", 3))]
            assert status_of(late) == "ok"
            await late.close()
            assert await late_seen.finished()
            assert recovered < 3.0

    run(body(), timeout=20)


# A TCP relay the test can cut, so one store loses etcd while others keep it.


class Relay:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def freeze(self) -> None:
        """Connections stay open but nothing passes (a partition, a stopped etcd)."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._links |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@contextlib.asynccontextmanager
async def relayed_store(etcd: EtcdServer) -> AsyncIterator[tuple[EtcdStore, Relay]]:
    relay = Relay(("127.0.0.1", etcd.client_port))
    await relay.start()
    store = EtcdStore(
        [("127.0.0.1", relay.port)], timeout=0.5, reconnect_interval=0.2, probe_interval=0.2
    )
    await store.open()
    try:
        yield store, relay
    finally:
        await store.close()
        await relay.cut()


def test_etcd_watch_resumes_from_the_last_revision(etcd: EtcdServer) -> None:
    async def body() -> None:
        async with relayed_store(etcd) as (cut_off, relay), etcd_store(etcd.url) as writer:
            seen = Recorder(cut_off)
            await writer.put(reg("a", 1))
            await seen.until(1)
            await relay.cut()
            await wait_for(lambda: cut_off.status == "degraded", 2.0)
            # A registration that comes and goes while the store is away: only a watch
            # resumed from the last revision can report both changes.
            await writer.put(reg("b", 2))
            await writer.delete(reg("b", 2).id)
            await writer.put(reg("c", 3))
            await relay.start()
            assert await seen.until(4) == [
                ("put", reg("a", 1)),
                ("put", reg("b", 2)),
                ("delete", reg("b", 2).id),
                ("put", reg("c", 3)),
            ]
            assert cut_off.status == "ok"

    run(body())


def test_etcd_compacted_revision_falls_back_to_a_full_read(etcd: EtcdServer) -> None:
    async def body() -> None:
        async with relayed_store(etcd) as (cut_off, relay), etcd_store(etcd.url) as writer:
            seen = Recorder(cut_off)
            await writer.put(reg("a", 1))
            await writer.put(reg("gone", 9))
            await seen.until(2)
            await relay.cut()
            await wait_for(lambda: cut_off.status == "degraded", 2.0)
            await writer.put(reg("b", 2))
            await writer.delete(reg("gone", 9).id)
            await writer.put(reg("a", 1, weight=3))
            revision = etcd.request("/v3/kv/range", {"key": "AA=="})["header"]
            assert isinstance(revision, dict)
            etcd.request("/v3/kv/compaction", {"revision": revision["revision"]})
            await relay.start()
            events = await seen.until(5)
            assert sorted(events[2:], key=str) == sorted(
                [
                    ("delete", reg("gone", 9).id),
                    ("put", reg("a", 1, weight=3)),
                    ("put", reg("b", 2)),
                ],
                key=str,
            )
            await wait_for(lambda: cut_off.status == "ok", 2.0)
            assert sorted(r.id for r in await cut_off.load()) == [reg("a", 1).id, reg("b", 2).id]

    run(body())


def test_etcd_silent_connection_is_noticed_by_the_probe(etcd: EtcdServer) -> None:
    async def body() -> None:
        async with relayed_store(etcd) as (store, relay), etcd_store(etcd.url) as writer:
            seen = Recorder(store)
            await writer.put(reg("before", 1))
            await seen.until(1)  # the watch is established
            relay.freeze()  # no error, no EOF: only silence
            # Noticed after about probe_interval + timeout (0.7 s); without probes, never.
            await wait_for(lambda: store.status == "degraded", 3.0)
            assert await store.load() == [reg("before", 1)]
            with pytest.raises(StoreUnavailable):
                await store.put(reg())
            await writer.put(reg("while-frozen", 1))
            relay.thaw()
            await wait_for(lambda: status_of(store) == "ok", 3.0)
            assert (await seen.until(2))[1] == ("put", reg("while-frozen", 1))

    run(body())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- the HTTP client on its own ------------------------------------------------------------


def test_http_stream_lines_across_odd_chunks_and_keep_alive() -> None:
    """Lines split across chunks, several lines in one chunk, then a reused connection."""
    chunks = [b'{"a":', b'1}\n{"b"', b":2}\n\n", b'{"c":3}\n{"d":4}\n']
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in (head + body, b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"):
            requests.append(await reader.readuntil(b"\r\n\r\n"))
            await reader.readexactly(2)
            writer.write(answer)
        await writer.drain()
        writer.close()

    async def body_() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = await Connection.open(("127.0.0.1", port))
        lines = [line async for line in conn.stream_lines("/v3/watch", b"{}")]
        assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}']
        status, data = await conn.post("/next", b"{}")  # same connection
        assert (status, data) == (404, b"{}")
        conn.close()
        server.close()
        assert len(requests) == 2 and requests[1].startswith(b"POST /next HTTP/1.1\r\n")

    run(body_())
