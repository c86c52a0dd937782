"""The sidecar's resident memory: the quick form stays under 30 MiB after serving load, and
`dmsc sidecar` does not load the controller's modules (store, SQLite, DNS, API).

A resource bound, measured on a real process: `dmsc sidecar --listen ... --upstream ...` in
front of a real upstream on loopback, driven with a few thousand keep-alive requests.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import parse_banner, vm_rss_kib
from upstreams import Upstream

RSS_LIMIT_KIB = 30 * 1024
CONNECTIONS = 4
REQUESTS_PER_CONNECTION = 750
WAIT_S = 20.0
# What only the controller and the other commands use: none of it may be resident in a sidecar.
CONTROLLER_MODULES = (
    "dmsc.controller",
    "dmsc.store",
    "dmsc.dns",
    "dmsc.openapi",
    "dmsc.bench",
    "dmsc.sidecar.discovery",
    "sqlite3",
    "dns",
    "yaml",
    "urllib.request",
    "http.client",
    "email",
)
# The sidecar as its console script runs it, with its sys.modules written out at exit.
SIDECAR_WITH_MODULES = """
import atexit, json, sys
atexit.register(lambda: Path(sys.argv[1]).write_text(json.dumps(sorted(sys.modules))))
from pathlib import Path
from dmsc.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _dmsc_command() -> list[str]:
    """The `dmsc` console script beside this interpreter (as users run it), else `-m`."""
    script = Path(sys.executable).with_name("dmsc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dmsc.cli"]


def _quick_form(upstream: Upstream) -> list[str]:
    return [
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream.address,
        "--admin",
        "127.0.0.1:0",
    ]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream("memory") as server:
        yield server


@contextmanager
def running(command: list[str]) -> Iterator[tuple[subprocess.Popen[str], tuple[str, int]]]:
    """Starts a sidecar; yields it and its listener's address; stops it with SIGTERM."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found: list[tuple[str, int]] = []

        def read_banner() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                addresses = parse_banner(line)
                if addresses is not None:
                    found.append(addresses[0]["main"])
                    return

        reader = threading.Thread(target=read_banner, daemon=True)
        reader.start()
        reader.join(WAIT_S)
        if not found:
            proc.kill()
            _, err = proc.communicate(timeout=WAIT_S)
            pytest.fail(f"the sidecar did not start: {err}")
        yield proc, found[0]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=WAIT_S)


def drive(listen: tuple[str, int]) -> int:
    """Sends CONNECTIONS x REQUESTS_PER_CONNECTION keep-alive GETs; answers how many got 200."""
    ok = [0] * CONNECTIONS

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(*listen, timeout=WAIT_S)
        try:
            for i in range(REQUESTS_PER_CONNECTION):
                conn.request("GET", f"/load/{index}/{i}")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    ok[index] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(ok)


def test_quick_form_stays_under_30_mib_after_load(upstream: Upstream) -> None:
    with running([*_dmsc_command(), *_quick_form(upstream)]) as (proc, listen):
        answered = drive(listen)
        rss = vm_rss_kib(proc.pid)
    assert answered == CONNECTIONS * REQUESTS_PER_CONNECTION
    assert upstream.requests >= answered
    assert rss < RSS_LIMIT_KIB, f"sidecar VmRSS {rss} KiB after load (limit {RSS_LIMIT_KIB} KiB)"


def test_sidecar_loads_none_of_the_controller(upstream: Upstream, tmp_path: Path) -> None:
    modules_file = tmp_path / "modules.json"
    command = [sys.executable, "-c", SIDECAR_WITH_MODULES, str(modules_file)]
    with running([*command, *_quick_form(upstream)]) as (_, listen):
        assert drive(listen) == CONNECTIONS * REQUESTS_PER_CONNECTION
    modules = set(json.loads(modules_file.read_text()))
    assert "dmsc.sidecar.runner" in modules  # the file describes a sidecar that ran
    loaded = sorted(
        name
        for name in modules
        if any(name == heavy or name.startswith(heavy + ".") for heavy in CONTROLLER_MODULES)
    )
    assert loaded == []
