"""`dmsc sidecar`: configuration errors, the quick form, the admin API, reload, discovery
from the controller, registration and graceful stop, with real processes on loopback."""

from __future__ import annotations

import http.client
import json
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from support import DMSC, ControllerProcess, Reply, http_call, parse_banner, wait_for
from upstreams import TcpServer, Upstream

from dmsc.config import line_of

WAIT_S = 20.0


# ---- the sidecar process ----------------------------------------------------------------


class Sidecar:
    """A `dmsc sidecar` process; `listeners` and `admin` come from its ready line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*DMSC, "sidecar", "--admin", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.listeners: dict[str, tuple[str, int]] = {}
        self.admin = ("", 0)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            addresses = parse_banner(line)
            if addresses is not None:
                self.listeners, self.admin = addresses
                return
        self.proc.kill()
        self.proc.wait()
        raise AssertionError(f"the sidecar never became ready: {self.log}")

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.stderr)

    def port(self, listener: str = "main") -> int:
        return self.listeners[listener][1]

    def call(self, method: str, path: str) -> Reply:
        return http_call(self.admin, method, path, timeout=10)

    def wait_log(self, pattern: str) -> str:
        """Waits for a stderr line matching `pattern`."""
        found = wait_for(
            lambda: next((s for s in self.stderr if re.search(pattern, s)), None), WAIT_S
        )
        assert isinstance(found, str), f"no log line matching {pattern!r}: {self.log}"
        return found

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def sidecar(*args: str) -> Iterator[Sidecar]:
    process = Sidecar(*args)
    try:
        yield process
    finally:
        process.close()


def get(
    port: int, path: str = "/", host: str = "app", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if response.status == 200 else {}
    finally:
        conn.close()


def run_sidecar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DMSC, "sidecar", *args], capture_output=True, text=True, timeout=WAIT_S, check=False
    )


def listeners_yaml(cluster: str, name: str = "main") -> str:
    """A `listeners:` section with one HTTP listener on a free port that routes every path to
    `cluster` (the route stands on line 8 of the section, its `cluster` on line 9)."""
    return (
        "listeners:\n"
        f"  - name: {name}\n"
        "    listen: 127.0.0.1:0\n"
        "    virtual_hosts:\n"
        "      - name: app\n"
        '        domains: ["*"]\n'
        "        routes:\n"
        "          - match: {path: {prefix: /}}\n"
        f"            cluster: {cluster}\n"
    )


def routed_config(color: str, blue: Upstream, green: Upstream, extra: str = "") -> str:
    return listeners_yaml(color) + (
        "clusters:\n"
        "  - name: blue\n"
        f"    endpoints: [{blue.address}]\n"
        "  - name: green\n"
        f"    endpoints: [{green.address}]\n"
        f"{extra}"
    )


# ---- configuration errors ---------------------------------------------------------------


def test_yaml_syntax_error_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listeners:\n  - name: main\n    listen: [127.0.0.1:0\nclusters: []\n")
    result = run_sidecar("--config", str(path))
    assert result.returncode == 2
    assert re.search(rf"{re.escape(str(path))}:\d+: not valid YAML", result.stderr), result.stderr


@pytest.mark.parametrize(
    ("mistake", "line", "field"),
    [
        ("    lb: sideways\n", 9, "clusters[0].lb"),
        ("    lbb: round_robin\n", 9, "lbb"),
        ("    connect_timeout_ms: soon\n", 9, "clusters[0].connect_timeout_ms"),
    ],
)
def test_bad_engine_field_exits_2_with_line_and_path(
    tmp_path: Path, mistake: str, line: int, field: str
) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(
        "listeners:\n"
        "  - name: main\n"
        "    listen: 127.0.0.1:0\n"
        "    protocol: tcp\n"
        "    cluster: web\n"
        "clusters:\n"
        "  - name: web\n"
        "    endpoints: [127.0.0.1:9]\n" + mistake
    )
    result = run_sidecar("--config", str(path))
    assert result.returncode == 2
    assert f"{path}:{line}: " in result.stderr, result.stderr
    assert field in result.stderr


def test_cross_reference_error_names_the_route(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(listeners_yaml("nowhere") + "clusters: []\n")
    result = run_sidecar("--config", str(path))
    assert result.returncode == 2
    # The route (line 8) or its `cluster` field (line 9).
    assert re.search(
        rf"{re.escape(str(path))}:[89]: listeners\[0\]\.virtual_hosts\[0\]\.routes\[0\]",
        result.stderr,
    ), result.stderr
    assert "nowhere" in result.stderr


def test_bad_sidecar_section_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(
        "sidecar:\n"
        "  drain_timeout_s: 5\n"
        "  register:\n"
        "    service: users\n"
        "    prot: 80\n"
        "listeners: []\n"
    )
    result = run_sidecar("--config", str(path))
    assert result.returncode == 2
    assert f"{path}:5: sidecar.register.prot: unknown field" in result.stderr, result.stderr


def test_missing_file_and_missing_flags_are_refused(tmp_path: Path) -> None:
    result = run_sidecar("--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "cannot read" in result.stderr
    result = run_sidecar("--listen", "127.0.0.1:0")
    assert result.returncode == 2 and "--upstream" in result.stderr


def test_listener_address_in_use_is_a_config_error(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        result = run_sidecar("--listen", f"127.0.0.1:{port}", "--upstream", "127.0.0.1:9")
    finally:
        taken.close()
    assert result.returncode == 2
    assert "listeners[0].listen" in result.stderr, result.stderr


def test_stop_with_refuses_what_is_not_a_process_id() -> None:
    result = run_sidecar("--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--stop-with", "x")
    assert result.returncode == 2 and "expected a process id" in result.stderr


def test_stop_with_stops_gracefully_when_that_process_is_killed() -> None:
    owner = subprocess.Popen(["sleep", "600"])
    try:
        with (
            Upstream("one") as one,
            sidecar(
                "--listen", "127.0.0.1:0", "--upstream", one.address, "--stop-with", str(owner.pid)
            ) as proc,
        ):
            assert get(proc.port(), "/")[0] == 200
            owner.kill()
            owner.wait()
            assert proc.proc.wait(timeout=WAIT_S) == 0
            assert f"process {owner.pid} ended: stopping gracefully" in proc.log
    finally:
        owner.kill()
        owner.wait()


# ---- quick form and admin API -----------------------------------------------------------


def test_quick_form_proxies_to_the_upstreams() -> None:
    with (
        Upstream("one") as one,
        Upstream("two") as two,
        sidecar("--listen", "127.0.0.1:0", "--upstream", f"{one.address},{two.address}") as proc,
    ):
        names = set()
        for _ in range(40):
            status, body = get(proc.port(), "/hello?x=1")
            assert status == 200
            assert body["target"] == "/hello?x=1"
            names.add(body["name"])
        assert names <= {"one", "two"}
        assert one.requests + two.requests == 40
        seen = (one.received + two.received)[-1]
        assert seen.header("x-request-id") is not None
        assert seen.header("x-forwarded-for") is not None
        assert proc.stop() == 0


def test_quick_form_tcp_moves_bytes() -> None:
    with (
        TcpServer("echo") as echo,
        sidecar("--listen", "127.0.0.1:0", "--upstream", echo.address, "--protocol", "tcp") as proc,
    ):
        with socket.create_connection(("127.0.0.1", proc.port()), timeout=10) as conn:
            payload = bytes(range(256)) * 1024
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            received = b""
            while data := conn.recv(65536):
                received += data
        assert received == payload
        assert proc.stop() == 0


def test_admin_api() -> None:
    with Upstream("one") as one, sidecar("--listen", "127.0.0.1:0", "--upstream", one.address) as p:
        assert get(p.port())[0] == 200
        assert p.call("GET", "/ready") == (200, b"ready\n")
        status, metrics = p.call("GET", "/metrics")
        assert status == 200
        text = metrics.decode()
        assert 'dmsc_listener_requests_total{listener="main"}' in text
        assert 'dmsc_sidecar_reloads_total{result="ok"} 0' in text
        status, clusters = p.call("GET", "/clusters")
        assert status == 200 and "upstream" in json.dumps(json.loads(clusters))
        status, config = p.call("GET", "/config")
        live = json.loads(config)
        assert status == 200
        assert live["listeners"][0]["name"] == "main"
        assert live["clusters"][0]["lb"] == "least_request"
        assert live["tracing"] is True
        # The quick form has no file to reload.
        status, body = p.call("POST", "/reload")
        assert status == 400 and b"no config file" in body
        assert p.call("GET", "/reload")[0] == 405
        assert p.call("GET", "/nothing")[0] == 404
        # POST /drain stops the sidecar gracefully.
        assert p.call("POST", "/drain")[0] == 202
        assert p.proc.wait(timeout=WAIT_S) == 0
        p.wait_log("stopped")


# ---- reload -----------------------------------------------------------------------------


def test_sighup_switches_blue_to_green_without_a_failed_request(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    with Upstream("blue") as blue, Upstream("green") as green:
        path.write_text(routed_config("blue", blue, green))
        with sidecar("--config", str(path)) as proc:
            seen: list[str] = []
            failures: list[str] = []
            stop = threading.Event()

            def client() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", proc.port(), timeout=10)
                while not stop.is_set():
                    try:
                        conn.request("GET", "/")
                        response = conn.getresponse()
                        body = response.read()
                        if response.status != 200:
                            failures.append(f"{response.status} {body!r}")
                        else:
                            seen.append(json.loads(body)["name"])
                    except (OSError, http.client.HTTPException) as err:
                        failures.append(repr(err))
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", proc.port(), timeout=10)
                conn.close()

            thread = threading.Thread(target=client)
            thread.start()
            try:
                assert wait_for(lambda: "blue" in seen, WAIT_S)
                path.write_text(routed_config("green", blue, green))
                proc.proc.send_signal(signal.SIGHUP)
                assert wait_for(lambda: seen and seen[-1] == "green", WAIT_S), proc.log
                proc.wait_log("reload ok: generation 2")
                # Instant rollback, this time through the admin API.
                path.write_text(routed_config("blue", blue, green))
                status, body = proc.call("POST", "/reload")
                assert status == 200 and json.loads(body)["generation"] == 3
                count = len(seen)
                assert wait_for(lambda: len(seen) > count + 20, WAIT_S)
                assert seen[-1] == "blue"
            finally:
                stop.set()
                thread.join()
            assert failures == []
            status, metrics = proc.call("GET", "/metrics")
            assert 'dmsc_sidecar_reloads_total{result="ok"} 2' in metrics.decode()
            assert proc.stop() == 0


def test_bad_reload_keeps_the_running_config(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    with Upstream("blue") as blue, Upstream("green") as green:
        path.write_text(routed_config("blue", blue, green))
        with sidecar("--config", str(path)) as proc:
            _, before = proc.call("GET", "/config")
            # A route to a cluster that does not exist (line 9).
            path.write_text(routed_config("purple", blue, green))
            status, body = proc.call("POST", "/reload")
            assert status == 400
            error = json.loads(body)["error"]
            assert re.match(
                rf"{re.escape(str(path))}:[89]: listeners\[0\]\.virtual_hosts\[0\]\.routes\[0\]",
                error,
            ), error
            assert get(proc.port())[1]["name"] == "blue"
            # Broken YAML through SIGHUP: logged, and nothing changes either.
            path.write_text("listeners: [\n")
            proc.proc.send_signal(signal.SIGHUP)
            proc.wait_log(rf"reload failed, the running config stays: {re.escape(str(path))}:\d")
            assert get(proc.port())[1]["name"] == "blue"
            assert proc.call("GET", "/config") == (200, before)
            assert proc.proc.poll() is None
            status, metrics = proc.call("GET", "/metrics")
            assert 'dmsc_sidecar_reloads_total{result="failed"} 2' in metrics.decode()
            assert proc.stop() == 0


# ---- the controller ---------------------------------------------------------------------


def _register(controller: ControllerProcess, service: str, server: Upstream, version: str) -> None:
    status, body = controller.call(
        "PUT",
        "/v1/registry/instances",
        {"name": service, "host": "127.0.0.1", "port": server.port, "version": version},
    )
    assert status == 201, body


def test_controller_watch_feeds_endpoints_and_outlives_the_controller(tmp_path: Path) -> None:
    controller = ControllerProcess().start()
    try:
        with Upstream("v1") as v1, Upstream("v2") as v2:
            _register(controller, "api", v1, "v1")
            _register(controller, "api", v2, "v2")
            path = tmp_path / "sidecar.yaml"
            path.write_text(
                f"sidecar:\n  controller: {controller.url}\n"
                + listeners_yaml("api_v2")
                + "clusters:\n  - name: api_v2\n    service: api\n    version: v2\n"
            )
            with sidecar("--config", str(path)) as proc:
                # Only the v2 instance serves the v2 cluster.
                names = {get(proc.port())[1].get("name") for _ in range(10)}
                assert names == {"v2"}
                hosts = json.dumps(json.loads(proc.call("GET", "/clusters")[1]))
                assert v2.address in hosts and v1.address not in hosts
                # The controller dies: the last endpoints keep serving.
                controller.stop(signal.SIGKILL)
                proc.wait_log(r"controller lost")
                for _ in range(10):
                    status, body = get(proc.port())
                    assert status == 200 and body["name"] == "v2"
                assert len([s for s in proc.stderr if "controller lost" in s]) == 1
                assert proc.stop() == 0
    finally:
        controller.stop(signal.SIGKILL)


def test_discovery_follows_registry_changes(tmp_path: Path) -> None:
    controller = ControllerProcess().start()
    try:
        with Upstream("first") as first, Upstream("second") as second:
            _register(controller, "api", first, "")
            with sidecar(
                "--config",
                str(_discovery_config(tmp_path)),
                "--controller",
                controller.url,
            ) as proc:
                assert get(proc.port())[1]["name"] == "first"
                _register(controller, "api", second, "")
                status, _ = controller.call("DELETE", f"/v1/registry/instances/api/{first.address}")
                assert status == 200
                assert wait_for(lambda: get(proc.port())[1].get("name") == "second", WAIT_S)
                # A reload rebuilds the cluster: discovered endpoints are applied again.
                status, _ = proc.call("POST", "/reload")
                assert status == 200
                assert {get(proc.port())[1].get("name") for _ in range(5)} == {"second"}
                assert proc.stop() == 0
    finally:
        controller.stop(signal.SIGKILL)


def _discovery_config(tmp_path: Path) -> Path:
    path = tmp_path / "discovery.yaml"
    path.write_text(listeners_yaml("api") + "clusters:\n  - name: api\n    service: api\n")
    return path


def test_sigterm_deregisters_then_drains_the_request_in_flight(tmp_path: Path) -> None:
    controller = ControllerProcess().start()
    try:
        with Upstream("app") as app:
            path = tmp_path / "sidecar.yaml"
            sidecar_section = (
                "sidecar:\n"
                f"  controller: {controller.url}\n"
                "  drain_timeout_s: 15\n"
                "  deregister_grace_s: 0.2\n"
                "  register:\n"
                "    service: users\n"
                "    version: v3\n"
                "    listener: inbound\n"
            )
            path.write_text(
                sidecar_section
                + listeners_yaml("local", name="inbound")
                + f"clusters:\n  - name: local\n    endpoints: [{app.address}]\n"
            )
            with sidecar("--config", str(path)) as proc:
                port = proc.port("inbound")

                def listed() -> bool:
                    status, body = controller.call("GET", "/v1/registry/services/users")
                    return status == 200 and any(
                        i["port"] == port and i["version"] == "v3" for i in body["instances"]
                    )

                assert wait_for(listed, WAIT_S), proc.log
                result: list[tuple[int, dict[str, Any]]] = []
                slow = threading.Thread(
                    target=lambda: result.append(get(port, "/slow", "users", {"x-up": "slow=1.5"}))
                )
                slow.start()
                assert wait_for(lambda: "/slow" in app.paths(), WAIT_S)
                proc.proc.send_signal(signal.SIGTERM)

                def unready() -> bool:
                    try:
                        return proc.call("GET", "/ready")[0] == 503
                    except OSError:
                        return False

                assert wait_for(unready, WAIT_S), proc.log
                slow.join(WAIT_S)
                assert result and result[0][0] == 200 and result[0][1]["path"] == "/slow"
                assert proc.proc.wait(timeout=WAIT_S) == 0
                assert not listed()
                lines = proc.stderr
                deregistered = next(i for i, s in enumerate(lines) if "deregistered users/" in s)
                draining = next(i for i, s in enumerate(lines) if "draining:" in s)
                assert deregistered < draining
                assert any("drained" in s for s in lines)
    finally:
        controller.stop(signal.SIGKILL)


def test_registration_comes_back_after_a_controller_restart(tmp_path: Path) -> None:
    controller = ControllerProcess().start()
    port = controller.port
    try:
        with Upstream("app") as app:
            path = tmp_path / "sidecar.yaml"
            path.write_text(
                "sidecar:\n"
                f"  controller: {controller.url}\n"
                "  register: {service: users, ttl: 3}\n"
                "listeners:\n"
                "  - name: main\n"
                "    listen: 127.0.0.1:0\n"
                "    protocol: tcp\n"
                "    cluster: local\n"
                "clusters:\n"
                f"  - {{name: local, endpoints: [{app.address}]}}\n"
            )
            with sidecar("--config", str(path)) as proc:

                def listed() -> bool:
                    status, body = controller.call("GET", "/v1/registry/services/users")
                    return status == 200 and [i["port"] for i in body["instances"]] == [proc.port()]

                assert wait_for(listed, WAIT_S), proc.log
                # A controller on a memory store forgets everything when it restarts.
                controller.stop(signal.SIGKILL)
                controller = ControllerProcess("--http", f"127.0.0.1:{port}").start()
                assert wait_for(listed, WAIT_S), proc.log
                assert len([s for s in proc.stderr if "registered users/" in s]) == 2
                assert proc.stop() == 0
                assert not listed()
    finally:
        controller.stop(signal.SIGKILL)


# ---- the YAML position mapping behind every FILE:LINE -----------------------------------

_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
_documents = st.recursive(
    st.one_of(st.integers(), st.booleans(), st.text(alphabet="xyz ", max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4),
        st.dictionaries(_keys, inner, min_size=1, max_size=4),
    ),
    max_leaves=20,
).filter(lambda doc: isinstance(doc, dict))


def _paths(value: Any, path: str = "") -> Iterator[tuple[str, str | None]]:
    """Every path in a document, with the key its last step names (None: an index)."""
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            yield child, key
            yield from _paths(item, child)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield f"{path}[{i}]", None
            yield from _paths(item, f"{path}[{i}]")


@settings(max_examples=200, deadline=None)
@given(document=_documents, flow=st.booleans(), junk=st.text(max_size=30))
def test_every_field_path_maps_to_the_line_of_its_key(
    document: dict[str, Any], flow: bool, junk: str
) -> None:
    text = yaml.safe_dump(document, default_flow_style=None if flow else False, width=1000)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = text.splitlines()
    for path, key in _paths(document):
        line = line_of(root, path)
        assert 1 <= line <= len(lines)
        if key is not None and not flow:
            # Keys YAML would read as something else are quoted.
            assert re.search(rf"['\"]?{key}['\"]?:", lines[line - 1]), (path, line, text)
    # Paths that leave the document, or are not paths at all, still answer a line.
    assert 1 <= line_of(root, junk, junk) <= max(len(lines), 1)
    assert 1 <= line_of(root, f"{next(iter(document))}[99].x.y") <= len(lines)


def test_unknown_field_errors_point_at_the_unknown_key() -> None:
    text = "clusters:\n  - name: web\n    pool:\n      max_idle_per_host: 3\n      bogus: 1\n"
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    for path in ("clusters[0].pool", "clusters[0].pool.bogus"):
        assert line_of(root, path, "unknown field `bogus`, expected one of ...") == 5
    assert line_of(root, "clusters[0]", "unknown field `pool`") == 3
