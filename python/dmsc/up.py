"""`dmsc up`: a local mesh on the embedded store, for trying dmsc out.

Starts the controller and a few sample services in two versions. Each sample is a
real HTTP server on loopback with a /health endpoint that registers itself through
the controller's API, as any service would, and deregisters when stopped.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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


def _step(text: str) -> None:
    print(text, end="", flush=True)


async def run_up(config: ControllerConfig, wait: Callable[[], Awaitable[None]]) -> None:
    """Runs the local mesh until `wait` returns (Ctrl-C), then stops everything cleanly.

    The caller installs its signal handlers before this starts, so a Ctrl-C at any
    moment (even during start-up) ends in the same clean stop.
    """
    _step("starting controller ... ")
    controller = Controller(config)
    await controller.start()
    print("ok")
    samples = [SampleService(*sample) for sample in SAMPLES]
    try:
        for index, sample in enumerate(samples, 1):
            _step(f"\rstarting sample services [{index}/{len(samples)}] ... ")
            await sample.start()
            await asyncio.to_thread(
                call, controller.url, "PUT", "/v1/registry/instances", sample.registration()
            )
        print("ok")
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
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)
        await wait()
    finally:
        _step("stopping ... ")
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
