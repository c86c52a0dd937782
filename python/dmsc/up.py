"""`dmsc up`: a local mesh on the embedded store, for trying dmsc out.

Starts the controller, a few sample services in two versions, and a sidecar in front
of them. Each sample is a real HTTP server on loopback with a /health endpoint that
registers itself through the controller's API, as any service would, and deregisters
when stopped. The sidecar (`dmsc sidecar`, a separate process as in production)
discovers the samples through the controller's watch API and routes to them: a 90/10
canary split between greeter v1 and v2, v2 for requests with `x-version: v2`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import dmsc_fast
from dmsc.client import CommandError, call
from dmsc.controller import Controller, ControllerConfig
from dmsc.http import HttpServer, Request, Response, Router

# (service, version, zone): two services, the first in two versions.
SAMPLES = [
    ("greeter", "v1", "zone-a"),
    ("greeter", "v1", "zone-b"),
    ("greeter", "v2", "zone-a"),
    ("catalog", "v1", "zone-a"),
]


@dataclass
class SampleService:
    """A tiny HTTP service answering `GET /` with who it is, and `GET /health`."""

    name: str
    version: str
    zone: str
    server: HttpServer | None = None

    async def start(self) -> None:
        router = Router()
        router.add("GET", "/", self._hello)
        router.add("GET", "/health", self._health)
        self.server = HttpServer(router, "127.0.0.1", 0)
        await self.server.start()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    async def _hello(self, _: Request) -> Response:
        return Response.json({"service": self.name, "version": self.version, "zone": self.zone})

    async def _health(self, _: Request) -> Response:
        return Response.json({"status": "ok"})

    def registration(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": "127.0.0.1",
            "port": self.port,
            "version": self.version,
            "zone": self.zone,
            "health_check_url": "/health",
            "labels": {"sample": "true"},
        }

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


def sidecar_config(controller_url: str, listen: str) -> dict[str, object]:
    """The sample sidecar's configuration (JSON is YAML, so `dmsc sidecar --config` reads it)."""

    def service_cluster(name: str, service: str, version: str | None = None) -> dict[str, object]:
        cluster: dict[str, object] = {"name": name, "service": service, "lb": "least_request"}
        if version is not None:
            cluster["version"] = version
        cluster["outlier_detection"] = {"consecutive_5xx": 3, "max_ejection_percent": 50}
        return cluster

    retry = {"retry_on": ["connect-failure", "gateway-error", "reset"], "num_retries": 2}
    return {
        "sidecar": {"admin": "127.0.0.1:0", "controller": controller_url.rstrip("/")},
        "listeners": [
            {
                "name": "outbound",
                "listen": listen,
                "virtual_hosts": [
                    {
                        "name": "samples",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {
                                    "path": {"prefix": "/greeter"},
                                    "headers": [{"name": "x-version", "exact": "v2"}],
                                },
                                "cluster": "greeter_v2",
                                "prefix_rewrite": "/",
                                "retry": retry,
                            },
                            {
                                "match": {"path": {"prefix": "/greeter"}},
                                "clusters": [
                                    {"name": "greeter_v1", "weight": 90},
                                    {"name": "greeter_v2", "weight": 10},
                                ],
                                "prefix_rewrite": "/",
                                "retry": retry,
                            },
                            {
                                "match": {"path": {"prefix": "/catalog"}},
                                "cluster": "catalog",
                                "prefix_rewrite": "/",
                                "retry": retry,
                            },
                        ],
                    }
                ],
            }
        ],
        "clusters": [
            service_cluster("greeter_v1", "greeter", "v1"),
            service_cluster("greeter_v2", "greeter", "v2"),
            service_cluster("catalog", "catalog"),
        ],
    }


@dataclass
class SampleSidecar:
    """`dmsc sidecar` as a child process, with the addresses it printed when ready."""

    process: asyncio.subprocess.Process
    listeners: dict[str, str]

    @classmethod
    async def start(cls, config_path: Path) -> SampleSidecar:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dmsc.cli",
            "sidecar",
            "--config",
            str(config_path),
            # Ends with this process even when it is killed outright.
            "--stop-with",
            str(os.getpid()),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        if not line.startswith("dmsc sidecar: listening"):
            await process.wait()
            raise RuntimeError(f"the sidecar did not start (exit code {process.returncode})")
        pairs = (word.split("=", 1) for word in line.split()[3:] if "=" in word)
        return cls(process, dict(pairs))

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def _step(text: str) -> None:
    print(text, end="", flush=True)


async def run_up(
    config: ControllerConfig,
    wait: Callable[[], Awaitable[None]],
    state_dir: Path,
    sidecar_listen: str = "127.0.0.1:15001",
) -> None:
    """Runs the local mesh until `wait` returns (Ctrl-C), then stops everything cleanly.

    The caller installs its signal handlers before this starts, so a Ctrl-C at any
    moment (even during start-up) ends in the same clean stop.
    """
    _step("starting controller ... ")
    controller = Controller(config)
    await controller.start()
    print("ok")
    samples = [SampleService(*sample) for sample in SAMPLES]
    sidecar: SampleSidecar | None = None
    try:
        for index, sample in enumerate(samples, 1):
            _step(f"\rstarting sample services [{index}/{len(samples)}] ... ")
            await sample.start()
            await asyncio.to_thread(
                call, controller.url, "PUT", "/v1/registry/instances", sample.registration()
            )
        print("ok")
        _step("starting sidecar ... ")
        config_path = state_dir / "sidecar.yaml"
        config_path.write_text(json.dumps(sidecar_config(controller.url, sidecar_listen), indent=2))
        sidecar = await SampleSidecar.start(config_path)
        print("ok")
        outbound = sidecar.listeners.get("outbound", sidecar_listen)
        info = dmsc_fast.build_info()
        dns = (
            f"{controller.config.dns[0]}:{controller.dns.port}"
            if controller.dns and controller.config.dns
            else "off"
        )
        domain = config.mesh.domain
        lines = [
            "",
            f"dmsc {info['version']} is up ({info['profile']} build)",
            f"  dashboard:    {controller.url}",
            f"  registry API: {controller.url}v1/registry/services",
            f"  DNS:          {dns}  (try: dig @{dns.split(':')[0]} -p {dns.split(':')[-1]}"
            f" greeter.service.{domain} SRV)"
            if dns != "off"
            else "  DNS:          off",
            f"  store:        {config.store}",
            "  services:",
            *(
                f"    {s.name:<8} {s.version}  {s.zone}  http://127.0.0.1:{s.port}/"
                for s in samples
            ),
            f"  sidecar:      http://{outbound}/greeter  (90% v1, 10% v2;"
            " header x-version: v2 for v2)",
            f"                http://{outbound}/catalog",
            f"  sidecar admin: http://{sidecar.listeners.get('admin', '?')}/metrics",
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)
        await wait()
    finally:
        _step("stopping ... ")
        if sidecar is not None:
            await sidecar.stop()
        for sample in samples:
            if sample.server is not None:
                path = f"/v1/registry/instances/{sample.name}/127.0.0.1:{sample.port}"
                try:
                    await asyncio.to_thread(call, controller.url, "DELETE", path)
                except CommandError as err:
                    print(f"\n  could not deregister {sample.name}: {err}", file=sys.stderr)
            await sample.close()
        await controller.close()
        print("dmsc stopped.", flush=True)
