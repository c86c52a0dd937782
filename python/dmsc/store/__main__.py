"""`python -m dmsc.store bench URL [-n N]`: latency of a store's operations.

Prints the median and p99 of put, heartbeat, load (of N registrations) and delete, and,
for stores shared between controllers (etcd), the time from one store's put until
another store's watch() yields it. Writes under a throwaway etcd prefix / the given file.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from dmsc.store import EtcdStore, Registration, Store, open_store


def _endpoint(i: int) -> dict[str, object]:
    return {
        "name": "bench",
        "host": "127.0.0.1",
        "port": 10000 + i,
        "version": "v1",
        "labels": {"zone": "a"},
        "weight": 1,
    }


async def _timed(label: str, count: int, op: Callable[[int], Awaitable[object]]) -> None:
    samples = []
    for i in range(count):
        start = time.perf_counter()
        await op(i)
        samples.append(time.perf_counter() - start)
    samples.sort()
    median = statistics.median(samples) * 1e6
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6
    print(f"{label:<28} median {median:9.1f} us   p99 {p99:9.1f} us   (n={count})")


def _scoped(url: str) -> str:
    if url.startswith("etcd://") and "/" not in url[7:].split("?")[0]:
        base, _, query = url.partition("?")
        return f"{base}/dmsc-bench-{uuid.uuid4().hex[:8]}" + (f"?{query}" if query else "")
    return url


async def bench(url: str, count: int) -> None:
    url = _scoped(url)
    regs = [Registration.of(_endpoint(i), 30.0) for i in range(count)]
    async with open_store(url) as store:
        print(f"{store.url}  status={store.status}")
        await _timed("put (ttl=30)", count, lambda i: store.put(regs[i]))
        await _timed("heartbeat", count, lambda i: store.heartbeat(regs[i].id))
        loaded = await store.load()
        assert len(loaded) >= count, len(loaded)
        await _timed(f"load ({len(loaded)} registrations)", 20, lambda _: store.load())
        if isinstance(store, EtcdStore):
            await _watch_latency(store, url, min(count, 200))
        await _timed("delete", count, lambda i: store.delete(regs[i].id))


async def _watch_latency(writer: Store, url: str, count: int) -> None:
    async with open_store(url) as reader:
        arrived: asyncio.Queue[float] = asyncio.Queue()

        async def follow() -> None:
            async for event in reader.watch():
                if event[0] == "put":
                    arrived.put_nowait(time.perf_counter())

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        samples = []
        for i in range(count):
            start = time.perf_counter()
            await writer.put(Registration.of(_endpoint(100_000 + i)))
            samples.append(await arrived.get() - start)
            await writer.delete(Registration.of(_endpoint(100_000 + i)).id)
        task.cancel()
        samples.sort()
        print(
            f"{'put -> other store watch':<28} median {statistics.median(samples) * 1e6:9.1f} us"
            f"   p99 {samples[int(len(samples) * 0.99) - 1] * 1e6:9.1f} us   "
            f"max {samples[-1] * 1e6:9.1f} us   (n={count})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dmsc.store")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("bench", help="measure operation latency of a store")
    run.add_argument("url", help="memory:, sqlite:PATH or etcd://HOST:PORT")
    run.add_argument("-n", "--count", type=int, default=500, help="registrations (500)")
    args = parser.parse_args(argv)
    asyncio.run(bench(args.url, args.count))


if __name__ == "__main__":
    main()
