"""The controller as a real process: registry API, stores, health, watches, DNS, CLI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import DMSC, health_server
from support import ControllerProcess as Controller


@pytest.fixture
def service() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP service on loopback whose /health can be switched off."""
    with health_server() as server:
        yield server


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    running = Controller("--store", f"sqlite:{tmp_path / 'registry.db'}").start()
    yield running
    running.stop()


def endpoint(server: ThreadingHTTPServer, name: str = "web", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": server.server_address[1],
        "health_check_url": "/health",
        **extra,
    }


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_register_discover_list_and_deregister(
    controller: Controller, service: ThreadingHTTPServer
) -> None:
    port = service.server_address[1]
    status, body = controller.call(
        "PUT", "/v1/registry/instances", endpoint(service, version="v1", zone="a")
    )
    assert status == 201 and body["id"] == f"web/127.0.0.1:{port}"
    status, found = controller.call("GET", "/v1/registry/discover/web")
    assert status == 200 and (found["host"], found["port"], found["version"]) == (
        "127.0.0.1",
        port,
        "v1",
    )
    status, listing = controller.call("GET", "/v1/registry/services")
    [web] = listing["services"]
    assert web["healthy"] == 1 and web["instances"][0]["zone"] == "a"
    status, _ = controller.call("DELETE", f"/v1/registry/instances/web/127.0.0.1:{port}")
    assert status == 200
    assert controller.call("GET", "/v1/registry/discover/web")[0] == 404
    assert controller.call("DELETE", f"/v1/registry/instances/web/127.0.0.1:{port}")[0] == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": ""}, "name"),
        ({"port": 0}, "port"),
        ({"port": "eighty"}, "port"),
        ({"host": ""}, "host"),
        ({"health_check_url": "health"}, "health_check_url"),
        ({"weight": 0}, "weight"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
        ({"labels": {"k": "v" * 300}}, "label value"),
        ({"ttl": -1}, "ttl"),
    ],
)
def test_invalid_registrations_name_the_field_and_leave_nothing(
    controller: Controller, service: ThreadingHTTPServer, change: dict[str, Any], field: str
) -> None:
    status, body = controller.call("PUT", "/v1/registry/instances", {**endpoint(service), **change})
    assert status == 400, body
    assert body["error"].startswith(field), body
    assert controller.call("GET", "/v1/registry/services")[1]["services"] == []


def test_malformed_bodies_are_refused(controller: Controller) -> None:
    request = urllib.request.Request(
        controller.url + "/v1/registry/instances", data=b"{not json", method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 400


def test_a_restart_loses_no_registration(tmp_path: Path, service: ThreadingHTTPServer) -> None:
    store = f"sqlite:{tmp_path / 'registry.db'}"
    first = Controller("--store", store).start()
    assert first.call("PUT", "/v1/registry/instances", endpoint(service, version="v7"))[0] == 201
    first.stop(signal.SIGKILL)  # no clean shutdown
    second = Controller("--store", store).start()
    try:
        status, found = second.call("GET", "/v1/registry/discover/web")
        assert status == 200 and found["version"] == "v7"
    finally:
        second.stop()


def test_health_checks_take_failing_instances_out_of_discovery(
    tmp_path: Path, service: ThreadingHTTPServer
) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("mesh:\n  health_check_interval: 0.1\n  unhealthy_threshold: 1\n")
    running = Controller("--config", str(config)).start()
    try:
        assert running.call("PUT", "/v1/registry/instances", endpoint(service))[0] == 201
        service.RequestHandlerClass.healthy = False  # type: ignore[attr-defined]
        assert wait_for(lambda: running.call("GET", "/v1/registry/discover/web")[0] == 404)
        view = running.call("GET", "/v1/registry/services/web")[1]
        assert view["instances"][0]["health"] == "unhealthy"
        assert running.dig("web.service.dmsc", "A") == []
        service.RequestHandlerClass.healthy = True  # type: ignore[attr-defined]
        assert wait_for(lambda: running.call("GET", "/v1/registry/discover/web")[0] == 200)
    finally:
        running.stop()


def test_ttl_registrations_expire_without_heartbeats(
    controller: Controller, service: ThreadingHTTPServer
) -> None:
    port = service.server_address[1]
    body = {**endpoint(service), "ttl": 1.0}
    assert controller.call("PUT", "/v1/registry/instances", body)[0] == 201
    heartbeat = f"/v1/registry/instances/web/127.0.0.1:{port}/heartbeat"
    for _ in range(4):  # kept alive past its TTL by heartbeats
        time.sleep(0.4)
        assert controller.call("PUT", heartbeat)[0] == 200
    assert controller.call("GET", "/v1/registry/discover/web")[0] == 200
    assert wait_for(lambda: controller.call("GET", "/v1/registry/discover/web")[0] == 404, 5)
    assert controller.call("PUT", heartbeat)[0] == 404


def test_watchers_see_every_change(controller: Controller, service: ThreadingHTTPServer) -> None:
    revision = controller.call("GET", "/v1/registry/services")[1]["revision"]
    results: list[dict[str, Any]] = []

    def watch() -> None:
        results.append(controller.call("GET", f"/v1/registry/watch?index={revision}&wait=10")[1])

    watchers = [threading.Thread(target=watch) for _ in range(20)]
    for thread in watchers:
        thread.start()
    time.sleep(0.2)
    assert controller.call("PUT", "/v1/registry/instances", endpoint(service))[0] == 201
    for thread in watchers:
        thread.join(timeout=15)
    assert len(results) == 20
    for result in results:
        assert result["revision"] > revision
        assert result["services"]["web"]["instances"][0]["port"] == service.server_address[1]
    # A watcher that is behind gets the current state at once.
    status, late = controller.call("GET", f"/v1/registry/watch?index={revision}&wait=10")
    assert status == 200 and "web" in late["services"]


def test_dns_answers_a_and_srv_for_healthy_instances(
    controller: Controller, service: ThreadingHTTPServer
) -> None:
    port = service.server_address[1]
    controller.call("PUT", "/v1/registry/instances", endpoint(service, version="v2"))
    assert controller.dig("web.service.dmsc", "A") == ["127.0.0.1"]
    assert controller.dig("+tcp", "v2.web.service.dmsc", "A") == ["127.0.0.1"]
    [srv] = controller.dig("web.service.dmsc", "SRV")
    assert srv.split()[2] == str(port)
    status = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(controller.dns_port), "+time=2", "nope.service.dmsc"],
        capture_output=True,
        text=True,
    ).stdout
    assert "NXDOMAIN" in status


def test_openapi_document_describes_the_api(controller: Controller) -> None:
    status, spec = controller.call("GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    for path in ("/v1/registry/instances", "/v1/registry/watch", "/v1/registry/discover/{name}"):
        assert path in spec["paths"]


def test_cli_commands_against_a_controller(
    controller: Controller, service: ThreadingHTTPServer
) -> None:
    port = service.server_address[1]
    flags = ["--controller", controller.url]

    def dmsc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*DMSC, *args], capture_output=True, text=True, timeout=30)

    registered = dmsc(
        "register",
        *flags,
        "web",
        f"127.0.0.1:{port}",
        "--version",
        "v3",
        "--health-check-url",
        "/health",
        "--label",
        "team=core",
    )
    assert registered.returncode == 0, registered.stderr
    assert dmsc("discover", *flags, "web").stdout.strip() == f"127.0.0.1:{port} v3"
    table = dmsc("status", *flags).stdout
    assert re.search(rf"web\s+127\.0\.0\.1:{port}\s+v3\s+-\s+healthy", table), table
    refused = dmsc("register", *flags, "bad name", "127.0.0.1:1")
    assert refused.returncode == 1 and "name" in refused.stderr
    assert dmsc("deregister", *flags, "web", f"127.0.0.1:{port}").returncode == 0
    missing = dmsc("discover", *flags, "web")
    assert missing.returncode == 1 and "404" in missing.stderr


def test_config_errors_name_the_field_and_line(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text('store: "memory:"\nmesh:\n  domain: dmsc\n  load_balancing: fastest\n')
    result = subprocess.run(
        [*DMSC, "controller", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert f"{config}:4: mesh.load_balancing" in result.stderr
    config.write_text("http: nowhere\n")
    result = subprocess.run(
        [*DMSC, "controller", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert f"{config}:1: http" in result.stderr


def test_controllers_sharing_etcd_see_each_other_and_survive_its_loss(
    etcd: Any, service: ThreadingHTTPServer
) -> None:
    first = Controller("--store", etcd.url).start()
    second = Controller("--store", etcd.url).start()
    try:
        assert first.call("PUT", "/v1/registry/instances", endpoint(service))[0] == 201
        started = time.monotonic()
        assert wait_for(lambda: second.call("GET", "/v1/registry/discover/web")[0] == 200, 5)
        assert time.monotonic() - started < 1.0
        etcd.stop()
        assert wait_for(lambda: second.call("GET", "/v1/status")[1]["status"] == "degraded")
        # Reads keep being answered from the last known state.
        assert second.call("GET", "/v1/registry/discover/web")[0] == 200
        etcd.start()
        assert wait_for(lambda: second.call("GET", "/v1/status")[1]["status"] == "ok", 15)
    finally:
        first.stop()
        second.stop()


def test_load_reports_reach_the_registry(
    controller: Controller, service: ThreadingHTTPServer
) -> None:
    port = service.server_address[1]
    assert controller.call("PUT", "/v1/registry/instances", endpoint(service))[0] == 201
    path = f"/v1/registry/instances/web/127.0.0.1:{port}/load"
    status, _ = controller.call("PUT", path, {"active_requests": 7, "latency_ewma": 0.025})
    assert status == 200
    [instance] = controller.call("GET", "/v1/registry/services/web")[1]["instances"]
    assert instance["active_requests"] == 7
    assert instance["latency_ewma"] == pytest.approx(0.025)
    status, body = controller.call("PUT", path, {"active_requests": -1})
    assert status == 400 and body["field"] == "active_requests"
    missing = "/v1/registry/instances/web/127.0.0.1:1/load"
    assert controller.call("PUT", missing, {"active_requests": 1})[0] == 404


def test_up_with_a_local_etcd(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *DMSC,
            "up",
            "--etcd",
            "--http",
            "127.0.0.1:0",
            "--dns",
            "off",
            "--state-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        url = ""
        for line in proc.stdout:
            if "dashboard:" in line:
                url = line.split("dashboard:")[1].strip()
                break
            assert "Traceback" not in line
        assert url, "no dashboard URL"
        with urllib.request.urlopen(url + "v1/status", timeout=10) as reply:
            status = json.loads(reply.read())
        assert status["status"] == "ok" and status["services"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "dmsc stopped." in out
