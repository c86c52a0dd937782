"""The in-process service mesh: registration, health checking and discovery.

`Mesh` is the Python face of the compiled core's mesh, the same one the C API's
`DMSCServiceMesh` wraps: a registry of `ServiceEndpoint`s with active health
checks, load balancing, per-instance circuit breakers and request counters.

```python
from dmsc import Mesh, MeshConfig, ServiceEndpoint

with Mesh(MeshConfig(load_balancing="least_requests")) as mesh:  # starts health checks
    mesh.register(ServiceEndpoint("users", "127.0.0.1", 8080, health_check_url="/health"))
    with mesh.request("users") as endpoint:  # counted in flight, outcome recorded
        call(endpoint.host, endpoint.port)
```

Health: an instance is discoverable only while `"healthy"`. What a new instance starts
as is `MeshConfig.initial_health`: `"check"` (the default, as the C API does) probes it
once before `register` returns; `"unknown"` leaves it undiscoverable until the first
scheduled check, which runs at once; `"healthy"` and `"unhealthy"` take the caller's word
until the scheduled checks say otherwise. Checks are an HTTP `GET health_check_url`
expecting a status in `health_check_expected_statuses` (default 2xx), or a TCP connect
when the endpoint has no URL, run every `health_check_interval` seconds (varied by
`health_check_jitter`) by `health_check_workers` threads; `healthy_threshold` passes or
`unhealthy_threshold` failures in a row flip an instance. Durations are float seconds throughout.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, cast

from dmsc_fast import _native
from dmsc_fast._native import ManualClock

__all__ = [
    "Health",
    "InitialHealth",
    "Instance",
    "LoadBalancing",
    "Mesh",
    "MeshConfig",
    "NoHealthyInstanceError",
    "Request",
    "ServiceEndpoint",
]

LoadBalancing = Literal[
    "round_robin", "least_requests", "weighted", "consistent_hash", "random", "maglev"
]
"""Discovery's balancing algorithms (the C API's `LB_*` constants, in order)."""

InitialHealth = Literal["check", "unknown", "healthy", "unhealthy"]
"""What a newly registered instance starts as (see the module documentation)."""

Health = Literal["healthy", "unhealthy", "unknown"]
"""An instance's health; only healthy instances are discovered."""

Registered = Literal["added", "updated"]

_ENDPOINT_TEXT: Final = ("name", "host", "version", "health_check_url", "zone", "cluster")
_ENDPOINT_INT: Final = ("port", "weight")


def _require(name: str, value: object, kind: type | tuple[type, ...], what: str) -> None:
    """A ValueError naming `name` unless `value` is a `kind` (bools are not numbers)."""
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{name}: must be {what}, not a bool")
    if not isinstance(value, kind):
        raise ValueError(f"{name}: must be {what}, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class ServiceEndpoint:
    """A service instance's registration: where it listens and what it is.

    `name` must be DNS-safe (letters, digits, `-`, `_`, `.`); `port` 1-65535;
    `health_check_url` a path (empty: TCP checks); `weight` at least 1. The mesh validates
    these on `register`, with a ValueError naming the field. `labels` is copied on
    construction; treat it as read-only.
    """

    name: str
    host: str
    port: int
    version: str = ""
    health_check_url: str = ""
    zone: str = ""
    cluster: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    weight: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", dict(self.labels))

    @property
    def address(self) -> str:
        """`host:port`."""
        return f"{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """The endpoint as a JSON-ready dict (every field, `labels` as a plain dict)."""
        return {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "version": self.version,
            "health_check_url": self.health_check_url,
            "zone": self.zone,
            "cluster": self.cluster,
            "labels": dict(self.labels),
            "weight": self.weight,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceEndpoint:
        """The endpoint `to_dict` (or a JSON body) describes.

        `name`, `host` and `port` are required; unknown keys and values of the wrong type
        raise ValueError naming the field. Values are checked further on `register`.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"endpoint: must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ValueError(f"{key}: unknown field (known: {', '.join(sorted(known))})")
        for key in ("name", "host", "port"):
            if key not in data:
                raise ValueError(f"{key}: required")
        for key in _ENDPOINT_TEXT:
            if key in data:
                _require(key, data[key], str, "a string")
        for key in _ENDPOINT_INT:
            if key in data:
                _require(key, data[key], int, "an integer")
        labels = data.get("labels", {})
        _require("labels", labels, Mapping, "an object of strings")
        for key, value in labels.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError("labels: keys and values must be strings")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Instance:
    """A snapshot of one registered instance: its endpoint and live state."""

    endpoint: ServiceEndpoint
    health: Health
    active_requests: int
    """Requests in flight: started here and not finished, plus its sidecar's last report."""
    latency_ewma: float | None
    """Moving average of recorded request latencies in seconds (None before the first)."""


_BOOL_FIELDS: Final = (
    "enable_mtls",
    "enable_circuit_breaker",
    "enable_tracing",
    "enable_metrics",
)
_NUMBER_FIELDS: Final = (
    "circuit_breaker_failure_rate",
    "circuit_breaker_timeout",
    "health_check_interval",
    "health_check_timeout",
    "health_check_jitter",
)
_INT_FIELDS: Final = (
    "circuit_breaker_minimum_calls",
    "circuit_breaker_window",
    "healthy_threshold",
    "unhealthy_threshold",
    "health_check_workers",
)
_TEXT_FIELDS: Final = ("load_balancing", "initial_health", "domain")


def _status_ranges(value: object) -> tuple[tuple[int, int], ...]:
    """`value` (a sequence of `(start, end)` pairs, tuples or lists) as a tuple of tuples."""
    name = "health_check_expected_statuses"
    what = "a sequence of (start, end) pairs of integers"
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name}: must be {what}, got {type(value).__name__}")
    ranges = []
    for pair in value:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name}: must be {what}, got {pair!r}")
        for code in pair:
            _require(name, code, int, "pairs of integers")
            if not 100 <= code <= 600:
                raise ValueError(f"{name}: status codes must be between 100 and 600, got {code}")
        ranges.append((int(pair[0]), int(pair[1])))
    return tuple(ranges)


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Every setting of a mesh, in seconds where it is a duration.

    Validated on construction by the compiled core: a bad value raises ValueError whose
    message starts with the field's name. Derive variants with `dataclasses.replace`.
    """

    enable_mtls: bool = False
    """Mesh members must use mutual TLS (a policy sidecars enforce)."""
    enable_circuit_breaker: bool = True
    """Discovery skips instances whose circuit breaker is open."""
    enable_tracing: bool = True
    """`Mesh.trace_context` produces W3C trace contexts."""
    enable_metrics: bool = True
    """Recorded requests are counted (`total_requests`, `failed_requests`)."""
    circuit_breaker_failure_rate: float = 0.5
    """Failure rate in (0, 1] at which an instance's breaker opens."""
    circuit_breaker_timeout: float = 30.0
    """Seconds an open breaker waits before letting trial calls through (at least 0.001)."""
    circuit_breaker_minimum_calls: int = 10
    """Calls an instance must have seen before its failure rate counts."""
    circuit_breaker_window: int = 100
    """Most recent calls the failure rate is computed over (at least the minimum)."""
    load_balancing: LoadBalancing = "round_robin"
    """Discovery's balancing algorithm."""
    health_check_interval: float = 5.0
    """Mean seconds between two checks of an instance."""
    health_check_timeout: float = 1.0
    """Seconds allowed for one check (connect, request and response)."""
    healthy_threshold: int = 1
    """Consecutive passes that make an unhealthy instance healthy."""
    unhealthy_threshold: int = 2
    """Consecutive failures that make a healthy instance unhealthy."""
    health_check_jitter: float = 0.1
    """Each wait between two checks is the interval times a random factor in 1 ± jitter."""
    health_check_workers: int = 4
    """Threads probing in parallel."""
    health_check_expected_statuses: tuple[tuple[int, int], ...] = ((200, 300),)
    """HTTP statuses a check passes on, as half-open `(start, end)` ranges with
    100 <= start < end <= 600 (Envoy's `expected_statuses`). Lists of 2-element lists
    (as YAML gives them) are accepted and stored as tuples."""
    initial_health: InitialHealth = "check"
    """What a newly registered instance starts as."""
    domain: str = "dmsc"
    """DNS domain of service names: `<service>.service.<domain>`."""

    def __post_init__(self) -> None:
        for name in _BOOL_FIELDS:
            _require(name, getattr(self, name), bool, "true or false")
        for name in _NUMBER_FIELDS:
            _require(name, getattr(self, name), (int, float), "a number")
        for name in _INT_FIELDS:
            _require(name, getattr(self, name), int, "an integer")
        for name in _TEXT_FIELDS:
            _require(name, getattr(self, name), str, "a string")
        object.__setattr__(
            self,
            "health_check_expected_statuses",
            _status_ranges(self.health_check_expected_statuses),
        )
        self._settings()

    def _settings(self) -> _native.MeshSettings:
        return _native.MeshSettings(
            enable_mtls=self.enable_mtls,
            enable_circuit_breaker=self.enable_circuit_breaker,
            enable_tracing=self.enable_tracing,
            enable_metrics=self.enable_metrics,
            circuit_breaker_failure_rate=self.circuit_breaker_failure_rate,
            circuit_breaker_timeout=self.circuit_breaker_timeout,
            circuit_breaker_minimum_calls=self.circuit_breaker_minimum_calls,
            circuit_breaker_window=self.circuit_breaker_window,
            load_balancing=self.load_balancing,
            health_check_interval=self.health_check_interval,
            health_check_timeout=self.health_check_timeout,
            healthy_threshold=self.healthy_threshold,
            unhealthy_threshold=self.unhealthy_threshold,
            health_check_jitter=self.health_check_jitter,
            health_check_workers=self.health_check_workers,
            health_check_expected_statuses=self.health_check_expected_statuses,
            initial_health=self.initial_health,
            domain=self.domain,
        )

    @classmethod
    def _from_settings(cls, settings: _native.MeshSettings) -> MeshConfig:
        return cls(
            **{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)},
        )


class NoHealthyInstanceError(LookupError):
    """No healthy instance (with a closed breaker) of the requested service or version."""


class Request:
    """One request through the mesh, as a (sync or async) context manager.

    Entering picks an instance (as `Mesh.discover`) and counts a request in flight on it;
    leaving records the outcome, with the time spent inside as its latency: a failure if
    the block raised or `fail()` was called, a success otherwise.
    """

    __slots__ = ("_call", "_failed", "_key", "_name", "_native", "_version")

    def __init__(
        self,
        native: _native.Mesh,
        name: str,
        version: str | None,
        key: str | bytes | None,
    ) -> None:
        self._native = native
        self._name = name
        self._version = version
        self._key = key
        self._call: _native.MeshCall | None = None
        self._failed = False

    def __enter__(self) -> ServiceEndpoint:
        if self._call is not None:
            raise RuntimeError("the request is already in progress")
        call = self._native.begin(self._name, self._version, self._key)
        if call is None:
            version = "" if self._version is None else f" version {self._version!r}"
            raise NoHealthyInstanceError(f"{self._name}{version}: no healthy instance")
        self._call = call
        self._failed = False
        endpoint: ServiceEndpoint = call.endpoint
        return endpoint

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.finish(exc_type is None and not self._failed)

    async def __aenter__(self) -> ServiceEndpoint:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def fail(self) -> None:
        """Records the request as failed on exit even though the block did not raise."""
        self._failed = True

    @property
    def endpoint(self) -> ServiceEndpoint | None:
        """The instance the request goes to, while in progress."""
        if self._call is None:
            return None
        endpoint: ServiceEndpoint = self._call.endpoint
        return endpoint


class Mesh:
    """A service registry with health checks, load balancing and circuit breaking.

    Thread-safe; every method may be called from any thread. `start()` runs the health
    checks in background threads (`with Mesh() as mesh:` starts and stops them);
    registration and discovery work whether they run or not. `clock` (tests) drives the
    breakers' and request latencies' time; health checks always run on real time.
    """

    __slots__ = ("_check_on_register", "_native")

    def __init__(
        self, config: MeshConfig | None = None, *, clock: ManualClock | None = None
    ) -> None:
        config = MeshConfig() if config is None else config
        self._native = _native.Mesh(config._settings(), clock=clock)
        self._check_on_register = config.initial_health == "check"

    def __enter__(self) -> Mesh:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Starts the background health checks; RuntimeError if they already run."""
        self._native.start()

    def stop(self) -> None:
        """Stops the health checks (waiting at most one check timeout); registrations stay.

        Stopping a stopped mesh does nothing.
        """
        self._native.stop()

    @property
    def is_running(self) -> bool:
        """Whether the health checks run."""
        return self._native.is_running

    @property
    def config(self) -> MeshConfig:
        """The settings in force."""
        return MeshConfig._from_settings(self._native.settings)

    def reload(self, config: MeshConfig) -> None:
        """Replaces every setting at once; registrations, health and counters are kept.

        Running health checks pick up new health settings at their next scan.
        """
        self._native.reload(config._settings())
        self._check_on_register = config.initial_health == "check"

    # ---- registration ----------------------------------------------------------------

    def register(
        self, endpoint: ServiceEndpoint, *, initial_health: InitialHealth | None = None
    ) -> Registered:
        """Registers `endpoint`, or updates the instance at its name, host and port.

        Returns "added" or "updated". An update keeps the instance's requests in flight,
        latency average, breaker and, unless `initial_health` (or the configured one) says
        otherwise, its health. With initial health "check" the instance is probed before
        this returns (up to `health_check_timeout`): in asyncio code use `aregister`.
        Raises ValueError naming the first invalid field.
        """
        outcome = self._native.register(endpoint, initial_health)
        return cast(Registered, outcome)

    async def aregister(
        self, endpoint: ServiceEndpoint, *, initial_health: InitialHealth | None = None
    ) -> Registered:
        """`register` for asyncio: a registration that probes runs in a worker thread."""
        probes = self._check_on_register if initial_health is None else initial_health == "check"
        if probes:
            return await asyncio.to_thread(self.register, endpoint, initial_health=initial_health)
        return self.register(endpoint, initial_health=initial_health)

    def deregister(self, name: str, host: str, port: int) -> bool:
        """Removes the instance of `name` at `host:port`; False when there was none."""
        return self._native.deregister(name, host, port)

    async def aderegister(self, name: str, host: str, port: int) -> bool:
        """`deregister` for asyncio (it never blocks)."""
        return self._native.deregister(name, host, port)

    def set_health(self, name: str, host: str, port: int, healthy: bool) -> bool:
        """Sets an instance's health by hand (passive health checking, tests).

        The scheduled checks may change it again. False when there is no such instance.
        """
        return self._native.set_health(name, host, port, healthy)

    def report_load(
        self,
        name: str,
        host: str,
        port: int,
        *,
        active_requests: int,
        latency_ewma: float | None = None,
    ) -> bool:
        """Takes a load report from an instance's sidecar.

        `active_requests` (its requests in flight) is added to those counted here, which
        `least_requests` balancing compares; `latency_ewma` (seconds) replaces the latency
        average. False when there is no such instance.
        """
        return self._native.report_load(name, host, port, active_requests, latency_ewma)

    def check_all(self) -> int:
        """Checks every instance now, in parallel, and returns how many were checked."""
        return self._native.check_all()

    # ---- discovery -------------------------------------------------------------------

    def discover(
        self, name: str, *, version: str | None = None, key: str | bytes | None = None
    ) -> ServiceEndpoint | None:
        """A healthy instance of `name` (of `version`, when given), or None.

        The configured algorithm chooses among healthy instances whose breaker lets a call
        through; `key` steers "consistent_hash" and "maglev" (the same key, the same
        instance while the healthy set is unchanged). No request is left in flight: use
        `request` to count one, or report the outcome with `record`.
        """
        endpoint: ServiceEndpoint | None = self._native.discover(name, version, key)
        return endpoint

    def request(
        self, name: str, *, version: str | None = None, key: str | bytes | None = None
    ) -> Request:
        """A request to `name` as a context manager (see `Request`).

        `with mesh.request("users") as endpoint:` raises NoHealthyInstanceError on entry
        when there is no instance to send it to.
        """
        return Request(self._native, name, version, key)

    def record(self, endpoint: ServiceEndpoint, success: bool, latency: float) -> bool:
        """Records one request's outcome (`latency` in seconds) on `endpoint`'s instance.

        It feeds the request counters, the instance's latency average and circuit breaker.
        False when no instance is registered at that address (nothing is recorded).
        """
        return self._native.record(endpoint.name, endpoint.host, endpoint.port, success, latency)

    def resolve(self, dns_name: str) -> list[ServiceEndpoint] | None:
        """Every healthy instance a DNS name designates, shuffled.

        Names are `<service>.service.<domain>` or `<version>.<service>.service.<domain>`
        (case-insensitive domain, trailing dot allowed). An empty list for a known service
        (or version) with no healthy instance; None for unknown services and names outside
        the domain.
        """
        endpoints: list[ServiceEndpoint] | None = self._native.resolve(dns_name)
        return endpoints

    def healthy_count(self, name: str) -> int:
        """Number of healthy instances of `name`."""
        return self._native.healthy_count(name)

    def services(self) -> list[str]:
        """Names of the services with at least one instance, sorted."""
        return self._native.services()

    def instances(self, name: str) -> list[Instance]:
        """Every instance of `name`, healthy or not, in registration order."""
        return [Instance(*row) for row in self._native.instances(name)]

    def trace_context(self, incoming: str | None = None) -> str | None:
        """The W3C `traceparent` for an outgoing call.

        A child span of `incoming` when given (ValueError if it is malformed), a new sampled
        trace otherwise; None when tracing is off.
        """
        return self._native.trace_context(incoming)

    # ---- counters --------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """Increases on every change of registrations, health or settings."""
        return self._native.revision

    @property
    def total_requests(self) -> int:
        """Requests recorded (while `enable_metrics` is on)."""
        return self._native.total_requests

    @property
    def failed_requests(self) -> int:
        """Failed requests recorded (while `enable_metrics` is on)."""
        return self._native.failed_requests

    @property
    def health_checks(self) -> int:
        """Health check outcomes recorded by the checks and `check_all`."""
        return self._native.health_checks
