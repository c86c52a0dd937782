"""The `dmsc sidecar` process: the engine, its admin API, discovery, signals, reload, drain.

The data plane runs on the engine's own threads; this event loop only handles control:
the admin API, the controller link, SIGHUP (reload from the file) and SIGTERM/SIGINT
(graceful stop: deregister, give peers a moment to see it, drain, shut down, exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from dmsc.config import ConfigError, format_address, parse_address
from dmsc.http import HttpServer, Request, Response, Router
from dmsc.sidecar import memory
from dmsc.sidecar.config import (
    DEFAULT_CONTROLLER,
    Registration,
    SidecarConfig,
    load_sidecar_config,
)

if TYPE_CHECKING:
    from dmsc.sidecar.discovery import ControllerLink
    from dmsc_fast import ProxyEngine as Engine

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def log(message: str) -> None:
    """One line per event on stderr (a closed stderr must not stop the proxy)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"dmsc sidecar: {message}", file=sys.stderr, flush=True)


def _validate(config_json: str) -> None:
    from dmsc_fast import ProxyEngine

    ProxyEngine.validate(config_json)


def load(path: str) -> SidecarConfig:
    """Reads and validates a sidecar configuration file (ConfigError `FILE:LINE: ...`)."""
    return load_sidecar_config(path, _validate)


class Sidecar:
    """One sidecar process's control side, from start to a graceful stop."""

    def __init__(
        self,
        config: SidecarConfig,
        admin: tuple[str, int] | None = None,
        controller: str | None = None,
        stop_with: int | None = None,
    ) -> None:
        self.config = config
        self._stop_with = stop_with
        self._admin_address = admin or config.settings.admin
        self._controller_flag = controller
        self.engine: Engine | None = None
        self.link: ControllerLink | None = None
        self.admin: HttpServer | None = None
        self.ready = False
        self.reloads = {"ok": 0, "failed": 0}
        self._stop = asyncio.Event()
        self._stop_reason = ""
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def draining(self) -> bool:
        """True from the start of a graceful stop."""
        return self._stop.is_set()

    # ---- start -----------------------------------------------------------------------

    def _start_engine(self) -> Engine:
        from dmsc_fast import ProxyEngine

        try:
            return ProxyEngine(self.config.engine_json)
        except ValueError as err:
            raise ConfigError(self.config.locate(str(err))) from err

    async def _start_admin(self, engine: Engine) -> HttpServer:
        host, port = self._admin_address
        admin = HttpServer(self._router(), host, port)
        try:
            await admin.start()
        except OSError as err:
            engine.shutdown()
            raise ConfigError(
                f"admin: cannot listen on {host}:{port}: {err.strerror or err}"
            ) from err
        return admin

    def _controller_url(self) -> str:
        return self._controller_flag or self.config.settings.controller or DEFAULT_CONTROLLER

    def _advertised(self, engine: Engine) -> tuple[str, int]:
        """The address peers reach this instance at (`sidecar.register`)."""
        registration = self.config.settings.register
        assert registration is not None
        bound = engine.listeners()
        name = registration.listener or next(iter(self.config.listener_names()), None)
        host, port = parse_address(bound[name]) if name in bound else ("", 0)
        host = registration.address or host
        port = registration.port or port
        if host in ("", "0.0.0.0", "::") or not port:
            raise ConfigError(
                self.config.locate(
                    "sidecar.register: give address and port (the listener binds "
                    f"{host or 'nothing'}:{port}, which peers cannot reach)"
                )
            )
        return host, port

    def _start_link(self, engine: Engine, registration: Registration | None) -> None:
        """Starts the controller link when the config discovers clusters or registers."""
        discovered = self.config.discovered()
        if not discovered and registration is None:
            return
        # Imported here: a sidecar without discovery or registration does not load it.
        from dmsc.sidecar.discovery import ControllerLink

        link = ControllerLink(self._controller_url(), engine.set_endpoints, log)
        link.set_clusters(discovered)
        if registration is not None:
            link.set_registration(registration, *self._advertised(engine))
        link.start()
        self.link = link

    async def run(self) -> int:
        """Serves until SIGTERM/SIGINT or POST /drain, then stops gracefully; answers 0.

        Raises ConfigError (the caller exits 2) when the configuration is refused at start.
        """
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop, signal.Signals(signum).name)
        loop.add_signal_handler(signal.SIGHUP, self._spawn_reload, "SIGHUP")
        if self._stop_with is not None:
            self._follow_process(loop, self._stop_with)
        engine = self.engine = self._start_engine()
        self.admin = await self._start_admin(engine)
        try:
            self._start_link(engine, self.config.settings.register)
        except ConfigError:
            engine.shutdown()
            await self.admin.close()
            raise
        if self.link is not None:
            wait = self.config.settings.initial_fetch_timeout_s
            try:
                await asyncio.wait_for(self.link.first_answer.wait(), wait)
            except TimeoutError:
                log(f"no discovery answer in {wait:g} s; serving with the endpoints known")
        self.ready = True
        memory.trim()
        bound = engine.listeners()
        names = [n for n in self.config.listener_names() if n in bound]
        names += sorted(set(bound) - set(names))
        listening = " ".join(f"{name}={bound[name]}" for name in names)
        print(f"dmsc sidecar: listening {listening} admin={self._admin_hostport()}", flush=True)
        source = self.config.source or "the command line"
        log(
            f"started: config {source}, generation {engine.generation}, "
            f"{len(bound)} listener(s), {len(self.config.engine.get('clusters') or [])} "
            f"cluster(s){f', controller {self.link.url}' if self.link else ''}"
        )
        await self._stop.wait()
        return await self._shutdown(engine)

    def _follow_process(self, loop: asyncio.AbstractEventLoop, pid: int) -> None:
        """Stops when process `pid` ends, even by SIGKILL (a pidfd turns readable then)."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.stop(f"process {pid} has already ended")
            return
        except OSError as err:
            raise ConfigError(f"--stop-with {pid}: {err.strerror or err}") from err

        def ended() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self.stop(f"process {pid} ended")

        loop.add_reader(pidfd, ended)

    def _admin_hostport(self) -> str:
        assert self.admin is not None
        return format_address(self.admin.host, self.admin.port)

    # ---- reload ----------------------------------------------------------------------

    async def reload(self) -> int:
        """Re-reads the config file and swaps it in; answers the new generation.

        Raises ConfigError (and the running config stays) when the file is refused.
        """
        async with self._reload_lock:
            try:
                generation = self._reload()
            except ConfigError as err:
                self.reloads["failed"] += 1
                log(f"reload failed, the running config stays: {err}")
                raise
            self.reloads["ok"] += 1
            memory.trim()
            log(f"reload ok: generation {generation}")
            return generation

    def _reload(self) -> int:
        engine = self.engine
        assert engine is not None
        if self.config.source is None:
            raise ConfigError("no config file to reload (started with --listen/--upstream)")
        new = load(str(self.config.source))
        try:
            engine.reload(new.engine_json)
        except ValueError as err:
            raise ConfigError(new.locate(str(err))) from err
        old = self.config.settings
        for key in ("admin", "controller", "register"):
            if getattr(old, key) != getattr(new.settings, key):
                log(f"sidecar.{key} changed: it takes effect on restart")
        self.config = new
        if self.link is not None:
            self.link.set_clusters(new.discovered())
        else:
            # Registration changes take effect on restart: only discovery may start here.
            self._start_link(engine, None)
        return engine.generation

    def _spawn_reload(self, why: str) -> None:
        if self.engine is None or self._stop.is_set():
            log(f"{why}: ignored (not serving)")
            return
        log(f"{why}: reloading {self.config.source or '(no config file)'}")
        task = asyncio.ensure_future(self._quiet_reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _quiet_reload(self) -> None:
        with contextlib.suppress(ConfigError):  # logged by reload
            await self.reload()

    # ---- stop ------------------------------------------------------------------------

    def stop(self, reason: str = "stop") -> None:
        """Begins a graceful stop (signal handlers and POST /drain call this)."""
        if self._stop.is_set():
            log(f"{reason}: already stopping")
            return
        self._stop_reason = reason
        self._stop.set()

    async def _shutdown(self, engine: Engine) -> int:
        settings = self.config.settings
        log(f"{self._stop_reason}: stopping gracefully")
        if self.link is not None:
            if await self.link.deregister() and settings.deregister_grace_s > 0:
                # Peers learn of the deregistration through their watch: let them move
                # away before this instance stops accepting.
                await asyncio.sleep(settings.deregister_grace_s)
            await self.link.close()
        timeout = settings.drain_timeout_s
        log(f"draining: up to {timeout:g} s for requests in flight")
        loop = asyncio.get_running_loop()
        drained = await loop.run_in_executor(None, engine.drain, timeout)
        if drained:
            log("drained: no request in flight")
        else:
            log(f"drain timed out after {timeout:g} s: closing the requests still in flight")
        engine.shutdown()
        if self.admin is not None:
            await self.admin.close()
        log("stopped")
        return 0

    # ---- admin API -------------------------------------------------------------------

    def _router(self) -> Router:
        router = Router()
        router.add("GET", "/", self._index)
        router.add("GET", "/ready", self._ready)
        router.add("GET", "/metrics", self._metrics)
        router.add("GET", "/clusters", self._clusters)
        router.add("GET", "/config", self._config)
        router.add("POST", "/reload", self._reload_handler)
        router.add("POST", "/drain", self._drain_handler)
        return router

    def _engine(self) -> Engine:
        assert self.engine is not None
        return self.engine

    async def _index(self, _: Request) -> Response:
        return Response.json(
            {
                "endpoints": {
                    "GET /ready": "200 while serving, 503 while starting or draining",
                    "GET /metrics": "Prometheus text of listeners, clusters and the sidecar",
                    "GET /clusters": "clusters, hosts and their state (JSON)",
                    "GET /config": "the live engine config (JSON)",
                    "POST /reload": "re-read the config file (400 and no change when refused)",
                    "POST /drain": "stop gracefully: deregister, drain, exit",
                },
                "generation": self._engine().generation,
                "config": str(self.config.source) if self.config.source else None,
            }
        )

    async def _ready(self, _: Request) -> Response:
        if self.draining:
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, b"draining\n")
        if not self.ready:
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, b"starting\n")
        return Response(HTTPStatus.OK, b"ready\n")

    async def _metrics(self, _: Request) -> Response:
        text = self._engine().prometheus()
        if text and not text.endswith("\n"):
            text += "\n"
        return Response(HTTPStatus.OK, (text + self._own_metrics()).encode(), METRICS_CONTENT_TYPE)

    def _own_metrics(self) -> str:
        lines = [
            "# HELP dmsc_sidecar_reloads_total Configuration reloads by result.",
            "# TYPE dmsc_sidecar_reloads_total counter",
            *(f'dmsc_sidecar_reloads_total{{result="{k}"}} {v}' for k, v in self.reloads.items()),
            "# HELP dmsc_sidecar_config_generation Generation of the live configuration.",
            "# TYPE dmsc_sidecar_config_generation gauge",
            f"dmsc_sidecar_config_generation {self._engine().generation}",
            "# HELP dmsc_sidecar_draining 1 while the sidecar drains before stopping.",
            "# TYPE dmsc_sidecar_draining gauge",
            f"dmsc_sidecar_draining {int(self.draining)}",
        ]
        if self.link is not None:
            lines += [
                "# HELP dmsc_sidecar_controller_connected 1 while the controller's watch answers.",
                "# TYPE dmsc_sidecar_controller_connected gauge",
                f"dmsc_sidecar_controller_connected {int(bool(self.link.connected))}",
                "# HELP dmsc_sidecar_endpoint_updates_total Endpoint sets applied from discovery.",
                "# TYPE dmsc_sidecar_endpoint_updates_total counter",
                f"dmsc_sidecar_endpoint_updates_total {self.link.updates}",
            ]
        return "\n".join(lines) + "\n"

    async def _clusters(self, _: Request) -> Response:
        return Response(HTTPStatus.OK, self._engine().describe().encode(), "application/json")

    async def _config(self, _: Request) -> Response:
        return Response(HTTPStatus.OK, self._engine().config_json().encode(), "application/json")

    async def _reload_handler(self, _: Request) -> Response:
        try:
            generation = await self.reload()
        except ConfigError as err:
            return Response.error(HTTPStatus.BAD_REQUEST, str(err))
        return Response.json({"generation": generation, "status": "reloaded"})

    async def _drain_handler(self, _: Request) -> Response:
        # Answered before the stop begins, so the caller hears back.
        asyncio.get_running_loop().call_soon(self.stop, "POST /drain")
        return Response.json({"status": "draining"}, HTTPStatus.ACCEPTED)
