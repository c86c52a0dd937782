"""Zero-copy buffer chains (writev) and the L4 splice pump, over real sockets."""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import gc
import hashlib
import os
import random
import select
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmsc_fast import BufferChain, Pipe, SplicePump, splice_pump

SocketPair = tuple[socket.socket, socket.socket]

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tcp_pair() -> SocketPair:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


def make_pair(kind: str) -> SocketPair:
    return tcp_pair() if kind == "tcp" else socket.socketpair()


def split(data: bytes, rng: random.Random, max_piece: int) -> list[bytes]:
    pieces, i = [], 0
    while i < len(data):
        n = rng.randint(1, max_piece)
        pieces.append(data[i : i + n])
        i += n
    return pieces


class Reader(threading.Thread):
    """Reads a socket (or a pipe fd) to EOF in the background."""

    def __init__(self, source: socket.socket | int) -> None:
        super().__init__(daemon=True)
        self.source = source
        self.chunks: list[bytes] = []

    def run(self) -> None:
        while True:
            if isinstance(self.source, socket.socket):
                data = self.source.recv(1 << 20)
            else:
                data = os.read(self.source, 1 << 20)
            if not data:
                return
            self.chunks.append(data)

    def result(self) -> bytes:
        self.join(timeout=30)
        assert not self.is_alive()
        return b"".join(self.chunks)


class Writer(threading.Thread):
    """Sends a payload, then shuts the write side down (EOF for the reader)."""

    def __init__(self, sock: socket.socket, payload: bytes) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.payload = payload

    def run(self) -> None:
        self.sock.sendall(self.payload)
        self.sock.shutdown(socket.SHUT_WR)


@pytest.fixture
def pairs() -> Iterator[Callable[[str], SocketPair]]:
    opened: list[socket.socket] = []

    def make(kind: str = "unix") -> SocketPair:
        pair = make_pair(kind)
        opened.extend(pair)
        return pair

    yield make
    for sock in opened:
        sock.close()


# --- BufferChain -------------------------------------------------------------------------------


def test_empty_chain_has_nothing_to_write() -> None:
    chain = BufferChain()
    assert len(chain) == 0 and chain.nbytes == 0 and chain.segments == 0
    assert not chain
    assert chain.to_bytes() == b""
    r, w = os.pipe()
    try:
        assert chain.write_to(w) == 0
    finally:
        os.close(r)
        os.close(w)


def test_takes_any_contiguous_buffer_in_order() -> None:
    ints = array.array("i", [1, 2, 3])
    floats = np.arange(4, dtype=np.float64)
    raw = bytearray(b"0123456789")
    parts: list[Any] = [b"head ", raw, memoryview(raw)[2:5], ints, floats, memoryview(b"tail")]
    chain = BufferChain()
    for part in parts:
        chain.append(part)
    expected = b"".join(bytes(memoryview(p).cast("B")) for p in parts)
    assert chain.to_bytes() == expected
    assert len(chain) == chain.nbytes == len(expected)
    assert chain.segments == len(parts)
    assert "segments=6" in repr(chain)


def test_empty_segments_are_skipped() -> None:
    chain = BufferChain([b"", bytearray(), memoryview(b"x")[1:], b"a"])
    assert chain.segments == 1
    assert chain.to_bytes() == b"a"


def test_constructor_and_extend_take_any_iterable() -> None:
    chain = BufferChain(x.encode() for x in "abc")
    more: list[bytes | bytearray] = [b"d", bytearray(b"e")]
    chain.extend(iter(more))
    chain.extend((memoryview(b"f"),))
    assert chain.to_bytes() == b"abcdef"
    assert chain.segments == 6


@pytest.mark.parametrize("bad", ["text", 42, None, object(), [b"a"], 1.5])
def test_non_buffers_raise_type_error(bad: object) -> None:
    chain = BufferChain([b"keep"])
    with pytest.raises(TypeError):
        chain.append(bad)  # type: ignore[arg-type]
    assert chain.to_bytes() == b"keep" and chain.segments == 1


def test_extend_keeps_the_items_before_a_bad_one() -> None:
    chain = BufferChain()
    with pytest.raises(TypeError):
        chain.extend([b"a", b"b", "c", b"d"])  # type: ignore[list-item]
    assert chain.to_bytes() == b"ab"
    with pytest.raises(TypeError):
        chain.extend(5)  # type: ignore[arg-type]


def test_non_contiguous_buffer_raises_buffer_error() -> None:
    with pytest.raises(BufferError):
        BufferChain().append(memoryview(b"abcdef")[::2])


def test_chain_holds_a_view_of_a_bytearray_not_a_copy() -> None:
    data = bytearray(b"abc")
    chain = BufferChain()
    chain.append(data)
    # An exported buffer pins the bytearray: resizing it is refused.
    with pytest.raises(BufferError):
        data.extend(b"d")
    with pytest.raises(BufferError):
        del data[:1]
    # In-place changes show through: the chain reads the caller's memory.
    data[0] = ord("X")
    assert chain.to_bytes() == b"Xbc"
    r, w = os.pipe()
    try:
        assert chain.write_to(w) == 3
        assert os.read(r, 10) == b"Xbc"
    finally:
        os.close(r)
        os.close(w)
    # Written segments are released: the bytearray can be resized again.
    data.extend(b"d")
    assert data == b"Xbcd"


def test_chain_pins_a_memoryview_until_cleared() -> None:
    view = memoryview(bytearray(b"hello"))
    chain = BufferChain([view])
    with pytest.raises(BufferError):
        view.release()
    chain.clear()
    assert len(chain) == 0 and chain.segments == 0
    view.release()


def test_appending_bytes_takes_a_reference_not_a_copy() -> None:
    payload = os.urandom(4096)
    before = sys.getrefcount(payload)
    chain = BufferChain()
    chain.append(payload)
    chain.append(payload)
    assert sys.getrefcount(payload) == before + 2
    chain.consume(4096)
    assert sys.getrefcount(payload) == before + 1
    chain.clear()
    assert sys.getrefcount(payload) == before


def test_write_to_moves_multi_megabyte_chains_beyond_iov_max() -> None:
    rng = random.Random(7)
    payload = rng.randbytes(4_000_000)
    pieces = split(payload, rng, 2600)  # about 3000 segments, more than IOV_MAX (1024)
    assert len(pieces) > 2048
    chain = BufferChain(bytearray(p) if i % 3 == 0 else p for i, p in enumerate(pieces))
    assert chain.segments == len(pieces)
    r, w = os.pipe()
    reader = Reader(r)
    reader.start()
    try:
        assert chain.write_to(w) == len(payload)
    finally:
        os.close(w)
    got = reader.result()
    os.close(r)
    assert digest(got) == digest(payload)
    assert len(chain) == 0 and chain.segments == 0


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_write_to_a_socket_object(kind: str, pairs: Callable[[str], SocketPair]) -> None:
    a, b = pairs(kind)
    payload = os.urandom(1_500_000)
    reader = Reader(b)
    reader.start()
    chain = BufferChain(split(payload, random.Random(1), 70_000))
    assert chain.write_to(a) == len(payload)
    a.shutdown(socket.SHUT_WR)
    assert digest(reader.result()) == digest(payload)


def _recv_available(sock: socket.socket, into: bytearray) -> None:
    while True:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        if not data:
            return
        into += data


@FAST
@given(sizes=st.lists(st.integers(0, 120_000), min_size=1, max_size=20), seed=st.integers(0, 99))
def test_partial_writes_keep_order_and_lose_nothing(sizes: list[int], seed: int) -> None:
    rng = random.Random(seed)
    segments: list[Any] = [rng.randbytes(n) for n in sizes]
    segments[::2] = [bytearray(x) for x in segments[::2]]
    expected = b"".join(segments)
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        a.setblocking(False)
        b.setblocking(False)
        chain = BufferChain(segments)
        received = bytearray()
        calls = 0
        while len(chain):
            before = len(chain)
            written = chain.write_to(a)
            calls += 1
            # Exactly the written bytes left the chain; what stays is the tail.
            assert len(chain) == before - written
            if calls % 16 == 1:
                assert chain.to_bytes() == expected[len(expected) - len(chain) :]
            _recv_available(b, received)
            assert calls < 100_000
        _recv_available(b, received)
        assert digest(bytes(received)) == digest(expected)
        if len(expected) > 500_000:
            assert calls > 1  # the small socket buffer did force partial writes
    finally:
        a.close()
        b.close()


@given(
    segments=st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=20),
    data=st.data(),
)
def test_consume_drops_exactly_the_head(segments: list[bytes], data: st.DataObject) -> None:
    chain = BufferChain(segments)
    joined = b"".join(segments)
    k = data.draw(st.integers(0, len(joined)))
    chain.consume(k)
    assert chain.to_bytes() == joined[k:]
    assert len(chain) == len(joined) - k
    # A segment counts as long as some of it is left.
    ends = [sum(len(s) for s in segments[: i + 1]) for i in range(len(segments))]
    assert chain.segments == sum(1 for end in ends if end > k)


@pytest.mark.parametrize("n", [-1, 4])
def test_consume_refuses_counts_outside_the_chain(n: int) -> None:
    chain = BufferChain([b"abc"])
    with pytest.raises(ValueError, match=r"^n must be"):
        chain.consume(n)
    assert chain.to_bytes() == b"abc"


class RecordingTransport:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def writelines(self, data: list[Any]) -> None:
        self.batches.append(list(data))


def test_write_to_transport_hands_over_views_and_clears() -> None:
    head = b"HTTP/1.1 200 OK\r\n"
    body = bytearray(b"body!")
    ints = np.array([1, 2], dtype=np.int32)
    parts: list[Any] = [b"junk", head, body, ints]
    chain = BufferChain(parts)
    chain.consume(2)  # a partially written head segment
    transport = RecordingTransport()
    assert chain.write_to_transport(transport) == 2 + len(head) + len(body) + 8
    assert len(chain) == 0 and chain.segments == 0
    (batch,) = transport.batches
    assert bytes(batch[0]) == b"nk"
    assert batch[1] is head  # bytes are passed as they are
    assert isinstance(batch[2], memoryview)
    body[0] = ord("B")  # a view of the caller's buffer, not a copy
    assert bytes(batch[2]) == b"Body!"
    assert batch[3].nbytes == 8 and len(batch[3]) == 8  # cast to unsigned bytes
    assert b"".join(bytes(x) for x in batch) == b"nk" + head + b"Body!" + ints.tobytes()
    # The transport's views are its own exports: they outlive the chain's.
    with pytest.raises(BufferError):
        body.extend(b"x")
    del batch, transport
    gc.collect()
    body.extend(b"x")
    assert BufferChain().write_to_transport(RecordingTransport()) == 0


def test_write_to_transport_keeps_segments_when_writelines_fails() -> None:
    class Broken:
        def writelines(self, data: list[Any]) -> None:
            raise ConnectionError("closed")

    chain = BufferChain([b"a", b"b"])
    with pytest.raises(ConnectionError):
        chain.write_to_transport(Broken())
    assert chain.to_bytes() == b"ab"


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_write_to_transport_through_a_real_event_loop(loop_kind: str) -> None:
    payload = os.urandom(1_000_000)
    pieces = split(payload, random.Random(3), 30_000)

    async def main() -> bytes:
        received = bytearray()
        done = asyncio.get_running_loop().create_future()

        class Sink(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                received.extend(data)

            def eof_received(self) -> None:
                done.set_result(None)

        loop = asyncio.get_running_loop()
        server = await loop.create_server(Sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        chain = BufferChain(bytearray(p) for p in pieces)
        assert chain.write_to_transport(transport) == len(payload)
        transport.write_eof()
        await asyncio.wait_for(done, 20)
        transport.close()
        server.close()
        await server.wait_closed()
        return bytes(received)

    runner = uvloop.run if loop_kind == "uvloop" else asyncio.run
    assert digest(runner(main())) == digest(payload)


def test_write_to_refuses_bad_descriptors() -> None:
    chain = BufferChain([b"data"])
    with pytest.raises(ValueError, match=r"^fd must be"):
        chain.write_to(-1)
    with pytest.raises(TypeError):
        chain.write_to("3")  # type: ignore[arg-type]
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        chain.write_to(w)
    assert info.value.errno == errno.EBADF
    assert chain.to_bytes() == b"data"  # nothing was written, nothing was dropped


def test_write_to_a_closed_peer_raises_os_error(pairs: Callable[[str], SocketPair]) -> None:
    a, b = pairs("unix")
    b.close()
    with pytest.raises(OSError) as info:
        BufferChain([b"x" * 1000]).write_to(a)
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)


# --- Pipe --------------------------------------------------------------------------------------


def test_pipe_is_nonblocking_cloexec_and_sized() -> None:
    with Pipe(256 * 1024) as pipe:
        assert pipe.capacity >= 256 * 1024
        for fd in (pipe.read_fd, pipe.write_fd):
            assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        os.write(pipe.write_fd, b"ping")
        assert os.read(pipe.read_fd, 4) == b"ping"
        with pytest.raises(BlockingIOError):
            os.read(pipe.read_fd, 1)
    assert pipe.closed and pipe.read_fd == -1 and pipe.write_fd == -1
    pipe.close()  # idempotent
    with pytest.raises(ValueError):
        _ = pipe.capacity
    with pytest.raises(ValueError, match=r"^size must be"):
        Pipe(-1)
    with Pipe() as other, pytest.raises(RuntimeError):
        other.__init__()


def test_pipe_closes_its_descriptors_when_collected() -> None:
    pipe = Pipe()
    fds = (pipe.read_fd, pipe.write_fd)
    os.fstat(fds[0])
    del pipe
    gc.collect()
    for fd in fds:
        with pytest.raises(OSError) as info:
            os.fstat(fd)
        assert info.value.errno == errno.EBADF


# --- SplicePump --------------------------------------------------------------------------------


def run_pump(
    payload: bytes,
    pairs: Callable[[str], SocketPair],
    *,
    kind: str = "unix",
    use_splice: bool = True,
    chunk: int = 65536,
) -> tuple[bytes, int, SplicePump]:
    a, b = pairs(kind)
    x, y = pairs(kind)
    writer, reader = Writer(a, payload), Reader(y)
    writer.start()
    reader.start()
    with SplicePump(b, x.fileno(), chunk=chunk, use_splice=use_splice) as pump:
        moved = pump.pump()
        x.shutdown(socket.SHUT_WR)
        writer.join(timeout=30)
        return reader.result(), moved, pump


@pytest.mark.parametrize("use_splice", [True, False], ids=["splice", "copy"])
@pytest.mark.parametrize("kind", ["unix", "tcp"])
@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3_000_017])
def test_pump_delivers_identical_bytes(
    size: int, kind: str, use_splice: bool, pairs: Callable[[str], SocketPair]
) -> None:
    payload = random.Random(size).randbytes(size)
    got, moved, pump = run_pump(payload, pairs, kind=kind, use_splice=use_splice)
    assert digest(got) == digest(payload)
    assert moved == size == pump.bytes_moved
    assert pump.used_splice is use_splice
    assert pump.eof and pump.done and pump.pending == 0


@pytest.mark.parametrize("use_splice", [True, False], ids=["splice", "copy"])
def test_pump_waits_on_nonblocking_descriptors(
    use_splice: bool, pairs: Callable[[str], SocketPair]
) -> None:
    # Non-blocking ends and a reader that starts late: pump() must poll, not spin or fail.
    payload = os.urandom(2_000_000)
    a, b = pairs("tcp")
    x, y = pairs("tcp")
    x.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    y.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    b.setblocking(False)
    x.setblocking(False)
    writer = Writer(a, payload)
    reader = Reader(y)
    late_start = threading.Timer(0.05, reader.start)
    late_start.start()
    writer.start()
    with SplicePump(b, x, use_splice=use_splice) as pump:
        assert pump.pump() == len(payload)
        assert pump.used_splice is use_splice
    x.shutdown(socket.SHUT_WR)
    late_start.join()
    assert digest(reader.result()) == digest(payload)


@FAST
@given(chunk=st.integers(1, 100_000), splice=st.booleans(), data=st.data())
def test_pump_is_correct_for_any_chunk_size(chunk: int, splice: bool, data: st.DataObject) -> None:
    size = data.draw(st.integers(0, min(400_000, chunk * 2000)), label="size")
    payload = random.Random(size).randbytes(size)
    opened: list[socket.socket] = []

    def make(kind: str) -> SocketPair:
        pair = socket.socketpair()
        opened.extend(pair)
        return pair

    try:
        got, moved, _ = run_pump(payload, make, chunk=chunk, use_splice=splice)
    finally:
        for sock in opened:
            sock.close()
    assert digest(got) == digest(payload) and moved == size


def test_splice_pump_function_moves_a_tcp_stream(pairs: Callable[[str], SocketPair]) -> None:
    payload = os.urandom(8_000_000)
    a, b = pairs("tcp")
    x, y = pairs("tcp")
    writer, reader = Writer(a, payload), Reader(y)
    writer.start()
    reader.start()
    assert splice_pump(b.fileno(), x.fileno()) == len(payload)
    x.shutdown(socket.SHUT_WR)
    assert digest(reader.result()) == digest(payload)


@pytest.mark.parametrize("use_splice", [True, False], ids=["splice", "copy"])
def test_max_bytes_never_reads_past_the_limit(
    use_splice: bool, pairs: Callable[[str], SocketPair]
) -> None:
    payload = os.urandom(100_000)
    a, b = pairs("unix")
    x, y = pairs("unix")
    a.sendall(payload)
    a.shutdown(socket.SHUT_WR)
    with SplicePump(b, x, chunk=4096, use_splice=use_splice) as pump:
        assert pump.pump(30_001) == 30_001
        assert pump.pending == 0 and not pump.eof
        assert splice_pump(b, x, max_bytes=0) == 0
    x.shutdown(socket.SHUT_WR)
    delivered = b"".join(iter(lambda: y.recv(1 << 16), b""))
    assert delivered == payload[:30_001]
    rest = b"".join(iter(lambda: b.recv(1 << 16), b""))
    assert rest == payload[30_001:]  # still waiting in the source socket


def test_falls_back_when_the_kernel_refuses_splice_from_the_source(
    pairs: Callable[[str], SocketPair],
) -> None:
    # splice(2) answers EINVAL for /proc/self/cmdline; read(2) works.
    fd = os.open("/proc/self/cmdline", os.O_RDONLY)
    x, y = pairs("unix")
    try:
        with SplicePump(fd, x) as pump:
            assert pump.used_splice
            moved = pump.pump()
            assert not pump.used_splice and pump.eof
    finally:
        os.close(fd)
    x.shutdown(socket.SHUT_WR)
    expected = Path("/proc/self/cmdline").read_bytes()
    assert moved == len(expected) > 0
    assert b"".join(iter(lambda: y.recv(1 << 16), b"")) == expected


def test_falls_back_when_the_kernel_refuses_splice_to_the_destination(
    tmp_path: Path, pairs: Callable[[str], SocketPair]
) -> None:
    # A file opened with O_APPEND refuses splice (EINVAL) after the first bytes are
    # already in the pipe: they must be delivered first, in order.
    payload = os.urandom(1_000_003)
    target = tmp_path / "out.bin"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    a, b = pairs("unix")
    writer = Writer(a, payload)
    writer.start()
    try:
        with SplicePump(b, fd, chunk=32768) as pump:
            assert pump.pump() == len(payload)
            assert not pump.used_splice
    finally:
        os.close(fd)
    writer.join(timeout=30)
    assert digest(target.read_bytes()) == digest(payload)


def test_step_never_blocks_and_signals_eof(pairs: Callable[[str], SocketPair]) -> None:
    a, b = pairs("unix")
    x, y = pairs("unix")
    for sock in (b, x):
        sock.setblocking(False)
    with SplicePump(b, x) as pump:
        assert pump.step() == 0 and pump.pending == 0  # nothing to read yet
        a.sendall(b"hello")
        assert pump.step() == 5
        assert y.recv(10) == b"hello"
        a.sendall(b"bye")
        a.shutdown(socket.SHUT_WR)
        assert pump.step() == 3  # the last bytes: counted, not -1 yet
        assert pump.step() == -1 and pump.done
        assert pump.step() == -1
    assert y.recv(10) == b"bye"


@pytest.mark.parametrize("use_splice", [True, False], ids=["splice", "copy"])
def test_step_reports_pending_bytes_when_the_destination_is_full(
    use_splice: bool, pairs: Callable[[str], SocketPair]
) -> None:
    payload = os.urandom(3_000_000)
    a, b = pairs("unix")
    x, y = pairs("unix")
    for sock in (b, x, y):
        sock.setblocking(False)
    writer = Writer(a, payload)
    writer.start()
    received = bytearray()
    blocked_on_dst = 0
    with SplicePump(b, x, use_splice=use_splice) as pump:
        while True:
            n = pump.step(max_bytes=200_000)
            assert n <= 200_000
            if n == -1:
                break
            if n == 0 and pump.pending:
                # Destination full: only now does its reader catch up.
                blocked_on_dst += 1
                _recv_available(y, received)
            elif n == 0:
                select.select([b], [], [], 0.01)  # wait for the writer
        assert pump.bytes_moved == len(payload)
    _recv_available(y, received)
    writer.join(timeout=30)
    assert digest(bytes(received)) == digest(payload)
    assert blocked_on_dst > 0


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_step_drives_an_event_loop_l4_proxy(
    loop_kind: str, pairs: Callable[[str], SocketPair]
) -> None:
    payload = os.urandom(4_000_000)
    client, proxy_in = pairs("tcp")
    proxy_out, upstream = pairs("tcp")
    writer, reader = Writer(client, payload), Reader(upstream)

    async def proxy() -> int:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        proxy_in.setblocking(False)
        proxy_out.setblocking(False)
        pump = SplicePump(proxy_in, proxy_out)

        def advance() -> None:
            n = pump.step()
            if n == -1:
                loop.remove_reader(proxy_in)
                loop.remove_writer(proxy_out)
                proxy_out.shutdown(socket.SHUT_WR)
                finished.set_result(pump.bytes_moved)
            elif pump.pending:  # destination full: wait for it, stop reading
                loop.remove_reader(proxy_in)
                loop.add_writer(proxy_out, advance)
            else:
                loop.remove_writer(proxy_out)
                loop.add_reader(proxy_in, advance)

        loop.add_reader(proxy_in, advance)
        writer.start()
        reader.start()
        try:
            return await asyncio.wait_for(finished, 30)
        finally:
            pump.close()

    runner = uvloop.run if loop_kind == "uvloop" else asyncio.run
    assert runner(proxy()) == len(payload)
    assert digest(reader.result()) == digest(payload)


def test_pump_at_immediate_eof_moves_nothing(pairs: Callable[[str], SocketPair]) -> None:
    a, b = pairs("unix")
    x, _ = pairs("unix")
    a.shutdown(socket.SHUT_WR)
    pump = SplicePump(b, x)
    assert pump.pump() == 0
    assert pump.eof and pump.done and pump.bytes_moved == 0
    assert pump.pump() == 0
    pump.close()
    assert pump.closed
    with pytest.raises(ValueError, match="closed"):
        pump.pump()


def test_pump_refuses_bad_arguments(pairs: Callable[[str], SocketPair]) -> None:
    a, b = pairs("unix")
    with pytest.raises(ValueError, match=r"^src_fd must be"):
        SplicePump(-1, b)
    with pytest.raises(ValueError, match=r"^dst_fd must be"):
        splice_pump(a, -5)
    with pytest.raises(TypeError):
        SplicePump("3", b)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SplicePump(a, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^chunk must be"):
        SplicePump(a, b, chunk=0)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        SplicePump(r, b)
    assert info.value.errno == errno.EBADF
    pump = SplicePump(a, b)
    with pytest.raises(ValueError, match=r"^max_bytes must be"):
        pump.pump(-2)
    with pytest.raises(ValueError, match=r"^max_bytes must be"):
        pump.step(-7)
    pump.close()


def test_pump_reports_a_vanished_destination(pairs: Callable[[str], SocketPair]) -> None:
    a, b = pairs("unix")
    x, y = pairs("unix")
    y.close()
    a.sendall(b"z" * 100_000)
    a.shutdown(socket.SHUT_WR)
    for use_splice in (True, False):
        with pytest.raises(OSError) as info:
            splice_pump(b, x, use_splice=use_splice, max_bytes=1000)
        assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)
