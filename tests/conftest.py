"""Shared fixtures: a real single-node etcd on loopback.

`etcd` (per test) yields an `EtcdServer` that is running and empty: `.url` is the store URL
(`etcd://127.0.0.1:PORT`), `.stop()` kills the process (as a crash would; the data directory
stays) and `.start()` starts it again on the same ports, for degraded-mode tests. One etcd
process serves the whole session and is always killed at the end.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator

import pytest

from dmsc.store.etcd_server import EtcdServer, etcd_binary


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """The session's etcd process (prefer `etcd`, which also cleans it per test)."""
    binary = etcd_binary()
    if binary is None:
        pytest.fail("etcd is not installed (Debian package etcd-server; `make` installs it)")
    server = EtcdServer(binary, tmp_path_factory.mktemp("etcd"))
    atexit.register(server.stop)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture
def etcd(etcd_server: EtcdServer) -> Iterator[EtcdServer]:
    """A running etcd with no keys; restarted afterwards if the test stopped it."""
    etcd_server.start()
    etcd_server.wipe()
    yield etcd_server
    etcd_server.start()
