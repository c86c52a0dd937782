"""A local single-member etcd on loopback, for `dmsc up --etcd` and the tests.

The member listens on 127.0.0.1 only, keeps its data in a directory of the caller's, and is
killed with its parent process, so none outlives the program that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ETCD_CANDIDATES = ("/usr/bin/etcd", "etcd")
START_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so children are
# forked from one thread that lives as long as the test process (tests may call start()
# from a worker thread, e.g. through asyncio.to_thread).
_SPAWNER = ThreadPoolExecutor(1, thread_name_prefix="etcd-spawner")


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies, so no etcd outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def etcd_binary() -> str | None:
    """The etcd executable, or None when it is not installed."""
    for candidate in ETCD_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class EtcdServer:
    """One etcd member on 127.0.0.1 with its own data directory."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.data_dir = workdir / "data"
        self.log_path = workdir / "etcd.log"
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        """The HTTP address of the client API (the JSON gateway is under /v3/)."""
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        """The store URL of this etcd."""
        return f"etcd://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Starts etcd (no-op when running) and waits until /health says it is ready."""
        if self.running:
            return
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name", "default",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}",
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = _SPAWNER.submit(
                subprocess.Popen,
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            ).result()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.running:
                break
            if self.healthy():
                return
            time.sleep(0.05)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"etcd did not become healthy on {self.client_url}:\n{tail}")

    def healthy(self) -> bool:
        """Whether etcd answers /health with a leader."""
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=0.5) as reply:
                return bool(json.load(reply).get("health") == "true")
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        """Kills etcd as a crash would (SIGKILL) and waits for it to be gone."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def request(self, path: str, doc: dict[str, object]) -> dict[str, object]:
        """One JSON gateway call (for tests that look at etcd directly)."""
        body = json.dumps(doc).encode()
        req = urllib.request.Request(f"{self.client_url}{path}", body, method="POST")
        with urllib.request.urlopen(req, timeout=5) as reply:
            answer = json.load(reply)
        assert isinstance(answer, dict)
        return answer

    def wipe(self) -> None:
        """Deletes every key (a clean slate between tests)."""
        self.request("/v3/kv/deleterange", {"key": "AA==", "range_end": "AA=="})
