"""Wire benchmarks: gathering segments into one write, and the L4 byte pump.

* "gather 64 small segments": a response made of 64 pieces of 16-128 bytes (status
  line, header fragments, body) written to /dev/null. dmsc's BufferChain passes the
  pieces to one writev(2) without joining them; the peers join then write, or call
  os.writev on the list. The "one append each" variant builds the message piece by
  piece from Python (chain.append vs list.append).
* "L4 pump 64 MB loopback TCP": bytes moved from one TCP connection to another on
  127.0.0.1 by splice(2) (dmsc), by dmsc's copy path (``use_splice=False``), and by a
  pure-Python recv_into/sendall loop. ns/op is the wall time for all 64 MB, which
  includes the sending and receiving threads; extra_info holds MB/s and the CPU time
  of the pumping thread alone ("pump CPU ms").
* "gather 16 x 64 KiB segments": large pieces, where joining means copying 1 MiB.
  /dev/null does not read the data, so this shows the user-space copy only; a socket
  would add the kernel's copy to every implementation alike.
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dmsc_fast import BufferChain, splice_pump

RNG = random.Random(2024)
SMALL_SEGMENTS = [RNG.randbytes(RNG.randint(16, 128)) for _ in range(64)]
GATHER = "gather 64 small segments"
GATHER_EACH = "gather 64 small segments, one append each"
LARGE_SEGMENTS = [RNG.randbytes(64 * 1024) for _ in range(16)]
GATHER_LARGE = "gather 16 x 64 KiB segments"
L4_BYTES = 64 * 1024 * 1024
L4 = "L4 pump 64 MB loopback TCP"
L4_PAYLOAD = memoryview(RNG.randbytes(L4_BYTES))
CHUNK = 65536


@pytest.fixture(scope="module")
def devnull() -> Iterator[int]:
    fd = os.open(os.devnull, os.O_WRONLY)
    yield fd
    os.close(fd)


def test_gather_dmsc_extend(measure: Callable[..., Any], devnull: int) -> None:
    chain = BufferChain()

    def gather() -> int:
        chain.extend(SMALL_SEGMENTS)
        return chain.write_to(devnull)

    assert measure(GATHER, "dmsc", gather) == sum(map(len, SMALL_SEGMENTS))


def test_gather_join_write(measure: Callable[..., Any], devnull: int) -> None:
    def gather() -> int:
        return os.write(devnull, b"".join(SMALL_SEGMENTS))

    assert measure(GATHER, "pure-python", gather) == sum(map(len, SMALL_SEGMENTS))


def test_gather_os_writev(measure: Callable[..., Any], devnull: int) -> None:
    def gather() -> int:
        return os.writev(devnull, SMALL_SEGMENTS)

    assert measure(GATHER, "os.writev", gather) == sum(map(len, SMALL_SEGMENTS))


def test_gather_large_dmsc(measure: Callable[..., Any], devnull: int) -> None:
    chain = BufferChain()

    def gather() -> int:
        chain.extend(LARGE_SEGMENTS)
        return chain.write_to(devnull)

    assert measure(GATHER_LARGE, "dmsc", gather) == 16 * 64 * 1024


def test_gather_large_join_write(measure: Callable[..., Any], devnull: int) -> None:
    def gather() -> int:
        return os.write(devnull, b"".join(LARGE_SEGMENTS))

    assert measure(GATHER_LARGE, "pure-python", gather) == 16 * 64 * 1024


def test_gather_large_os_writev(measure: Callable[..., Any], devnull: int) -> None:
    def gather() -> int:
        return os.writev(devnull, LARGE_SEGMENTS)

    assert measure(GATHER_LARGE, "os.writev", gather) == 16 * 64 * 1024


def test_gather_each_dmsc(measure: Callable[..., Any], devnull: int) -> None:
    chain = BufferChain()
    append = chain.append

    def gather() -> int:
        for segment in SMALL_SEGMENTS:
            append(segment)
        return chain.write_to(devnull)

    assert measure(GATHER_EACH, "dmsc", gather) == sum(map(len, SMALL_SEGMENTS))


def test_gather_each_join_write(measure: Callable[..., Any], devnull: int) -> None:
    def gather() -> int:
        pieces: list[bytes] = []
        append = pieces.append
        for segment in SMALL_SEGMENTS:
            append(segment)
        return os.write(devnull, b"".join(pieces))

    assert measure(GATHER_EACH, "pure-python", gather) == sum(map(len, SMALL_SEGMENTS))


def test_gather_each_os_writev(measure: Callable[..., Any], devnull: int) -> None:
    def gather() -> int:
        pieces: list[bytes] = []
        append = pieces.append
        for segment in SMALL_SEGMENTS:
            append(segment)
        return os.writev(devnull, pieces)

    assert measure(GATHER_EACH, "os.writev", gather) == sum(map(len, SMALL_SEGMENTS))


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


def _python_pump(src: socket.socket, dst: socket.socket) -> int:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    moved = 0
    while True:
        n = src.recv_into(buf)
        if not n:
            return moved
        dst.sendall(view[:n])
        moved += n


def _sink(sock: socket.socket, counted: list[int]) -> None:
    buf = bytearray(1 << 20)
    total = 0
    while n := sock.recv_into(buf):
        total += n
    counted.append(total)


def _l4_round(pump: Callable[[socket.socket, socket.socket], int], cpu: list[float]) -> int:
    """client -> [src | pump | dst] -> sink: one 64 MB stream through the pump.

    Appends the CPU time of the pumping thread alone to ``cpu``.
    """
    client, src = _tcp_pair()
    dst, upstream = _tcp_pair()
    counted: list[int] = []

    def send() -> None:
        client.sendall(L4_PAYLOAD)
        client.shutdown(socket.SHUT_WR)

    threads = [
        threading.Thread(target=send),
        threading.Thread(target=_sink, args=(upstream, counted)),
    ]
    for thread in threads:
        thread.start()
    started = time.thread_time()
    moved = pump(src, dst)
    cpu.append(time.thread_time() - started)
    dst.shutdown(socket.SHUT_WR)
    for thread in threads:
        thread.join()
    for sock in (client, src, dst, upstream):
        sock.close()
    assert moved == counted[0] == L4_BYTES
    return moved


def _measure_l4(measure: Callable[..., Any], benchmark: Any, impl: str, pump: Any) -> None:
    cpu: list[float] = []
    measure(L4, impl, _l4_round, pump, cpu)
    seconds = benchmark.extra_info["ns_per_op"] / 1e9
    benchmark.extra_info["MB/s"] = round(L4_BYTES / 1e6 / seconds, 1)
    benchmark.extra_info["pump CPU ms"] = round(statistics.median(cpu) * 1e3, 2)


def test_l4_splice(measure: Callable[..., Any], benchmark: Any) -> None:
    _measure_l4(measure, benchmark, "dmsc", lambda s, d: splice_pump(s, d, chunk=CHUNK))


def test_l4_dmsc_copy_path(measure: Callable[..., Any], benchmark: Any) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> int:
        return splice_pump(src, dst, chunk=CHUNK, use_splice=False)

    _measure_l4(measure, benchmark, "dmsc copy path", pump)


def test_l4_pure_python(measure: Callable[..., Any], benchmark: Any) -> None:
    _measure_l4(measure, benchmark, "pure-python recv_into/sendall", _python_pump)
