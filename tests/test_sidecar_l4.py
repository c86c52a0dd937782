"""TCP (L4) listeners: bytes both ways, bulk transfers intact, half-close passed on, dead hosts
skipped."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support import SidecarProcess, concurrently, sidecar
from upstreams import BLOCK, TcpServer, dead_address, pattern_sha256, running

BULK = 100 * 1024 * 1024


def tcp_listener(name: str, target: str) -> dict[str, Any]:
    return {"name": name, "listen": "127.0.0.1:0", "protocol": "tcp", "cluster": target}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, TcpServer]]:
    servers = {
        "echo": TcpServer("echo"),
        "sink": TcpServer("sink"),
        "behind-dead": TcpServer("echo"),
    }
    with running(servers) as started:
        yield started


@pytest.fixture(scope="module")
def proxy(
    servers: dict[str, TcpServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarProcess]:
    config = {
        "listeners": [
            tcp_listener("echo", "echo"),
            tcp_listener("sink", "sink"),
            tcp_listener("skip", "skip"),
            tcp_listener("dead", "dead"),
        ],
        "clusters": [
            {"name": "echo", "endpoints": [servers["echo"].address]},
            {"name": "sink", "endpoints": [servers["sink"].address]},
            {
                "name": "skip",
                "lb": "round_robin",
                "endpoints": [dead_address(), servers["behind-dead"].address],
            },
            {"name": "dead", "endpoints": [dead_address()]},
        ],
    }
    with sidecar(config, tmp_path_factory.mktemp("l4")) as process:
        yield process


def connect(proxy: SidecarProcess, listener: str) -> socket.socket:
    return socket.create_connection(proxy.addr(listener), timeout=30)


def read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while data := sock.recv(262144):
        out += data
    return bytes(out)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        data = sock.recv(size - len(out))
        assert data, f"closed after {len(out)} of {size} bytes"
        out += data
    return bytes(out)


def test_echo(proxy: SidecarProcess) -> None:
    with connect(proxy, "echo") as sock:
        for message in (b"hello", b"\x00\xff" * 1000, b"x"):
            sock.sendall(message)
            assert read_exactly(sock, len(message)) == message


def test_bulk_to_sink_arrives_intact(proxy: SidecarProcess) -> None:
    with connect(proxy, "sink") as sock:
        view = memoryview(BLOCK)
        for _ in range(BULK // len(BLOCK)):
            sock.sendall(view)
        sock.shutdown(socket.SHUT_WR)
        answer = read_all(sock)
    assert answer == f"{BULK} {pattern_sha256(BULK)}\n".encode()


def test_bulk_both_ways_through_echo(proxy: SidecarProcess) -> None:
    size = 32 * 1024 * 1024
    digest = hashlib.sha256()
    with connect(proxy, "echo") as sock:

        def send() -> None:
            view = memoryview(BLOCK)
            for _ in range(size // len(BLOCK)):
                sock.sendall(view)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = 0
        while data := sock.recv(262144):
            digest.update(data)
            received += len(data)
        sender.join()
    assert received == size
    assert digest.hexdigest() == pattern_sha256(size)


def test_half_close_is_passed_on(proxy: SidecarProcess) -> None:
    with connect(proxy, "sink") as sock:
        sock.sendall(b"twelve bytes")
        sock.shutdown(socket.SHUT_WR)
        # The sink answers only once it has seen the end of the stream, and the answer still
        # travels back on the open half.
        answer = read_all(sock)
    assert answer == f"12 {hashlib.sha256(b'twelve bytes').hexdigest()}\n".encode()


def test_echo_server_close_reaches_the_client(proxy: SidecarProcess) -> None:
    with connect(proxy, "echo") as sock:
        sock.sendall(b"abc")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"abc"


def test_dead_host_is_skipped(proxy: SidecarProcess, servers: dict[str, TcpServer]) -> None:
    before = servers["behind-dead"].connections
    for i in range(10):
        with connect(proxy, "skip") as sock:
            message = b"message %d" % i
            sock.sendall(message)
            assert read_exactly(sock, len(message)) == message
    assert servers["behind-dead"].connections - before == 10


def test_no_live_host_closes_the_client(proxy: SidecarProcess) -> None:
    with connect(proxy, "dead") as sock:
        sock.sendall(b"anyone?")
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""


def test_many_connections_at_once(proxy: SidecarProcess) -> None:
    def client(n: int) -> None:
        with connect(proxy, "echo") as sock:
            for i in range(20):
                message = b"%d:%d" % (n, i)
                sock.sendall(message)
                assert read_exactly(sock, len(message)) == message

    assert concurrently(20, client) == []
