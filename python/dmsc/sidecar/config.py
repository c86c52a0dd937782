"""The sidecar's configuration: a YAML file, or the quick form's flags, as the engine's JSON.

Every top-level key but `sidecar` belongs to the data-plane engine (`dmsc_fast.ProxyEngine`;
the schema is its `Config`). The `sidecar` section is read here, by the Python process:

```yaml
sidecar:
  admin: 127.0.0.1:15000          # admin API (port 0 picks a free port)
  controller: http://127.0.0.1:8500
  drain_timeout_s: 10             # longest wait for requests in flight on shutdown
  initial_fetch_timeout_s: 5      # longest wait for the first discovery answer at start
  deregister_grace_s: 1           # time peers get to see the deregistration before draining
  register:                       # register this instance with the controller
    service: users
    version: v2
    listener: inbound             # advertise this listener's address (default: the first)
    ttl: 30                       # expire unless heartbeats arrive (heartbeats every ttl/3)
```

Errors are raised as `dmsc.config.ConfigError` reading `FILE:LINE: path: message`, the
engine's own errors included (mapped back to the line of the field they name).
"""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmsc.config import (
    ConfigError,
    compose_file,
    format_address,
    line_of,
    locate_error,
    node_value,
    parse_address,
)

if TYPE_CHECKING:
    import yaml

DEFAULT_ADMIN = ("127.0.0.1", 15000)
DEFAULT_CONTROLLER = "http://127.0.0.1:8500"
LB_POLICIES = (
    "least_request",
    "round_robin",
    "weighted_round_robin",
    "random",
    "ring_hash",
    "maglev",
    "peak_ewma",
)
_JSON_POSITION = re.compile(r" at line \d+ column \d+$")
_REGISTER_TEXT = (
    "service",
    "version",
    "address",
    "listener",
    "health_check_url",
    "zone",
    "cluster",
)
_REGISTER_KEYS = (*_REGISTER_TEXT, "port", "weight", "labels", "ttl")
_SIDECAR_KEYS = (
    "admin",
    "controller",
    "drain_timeout_s",
    "initial_fetch_timeout_s",
    "deregister_grace_s",
    "register",
)


@dataclass(frozen=True)
class Registration:
    """This instance as the controller should list it (`sidecar.register`)."""

    service: str
    version: str = ""
    address: str | None = None
    """Host peers connect to (default: the advertised listener's bound host)."""
    port: int | None = None
    """Port peers connect to (default: the advertised listener's bound port)."""
    listener: str | None = None
    """Listener whose bound address is advertised (default: the first)."""
    health_check_url: str = ""
    zone: str = ""
    cluster: str = ""
    weight: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    ttl: float | None = None


@dataclass(frozen=True)
class Settings:
    """The Python-side settings (the `sidecar` section)."""

    admin: tuple[str, int] = DEFAULT_ADMIN
    controller: str | None = None
    drain_timeout_s: float = 10.0
    initial_fetch_timeout_s: float = 5.0
    deregister_grace_s: float = 1.0
    register: Registration | None = None


@dataclass(frozen=True)
class DiscoveredCluster:
    """A cluster whose endpoints come from the controller."""

    name: str
    service: str
    version: str | None


@dataclass
class SidecarConfig:
    """A loaded configuration: the engine's document and the sidecar's settings."""

    engine: dict[str, Any]
    settings: Settings = field(default_factory=Settings)
    source: Path | None = None
    """The file it came from (None: built from the quick form's flags)."""
    root: yaml.Node | None = None

    @property
    def engine_json(self) -> str:
        """The engine's document as JSON."""
        return json.dumps(self.engine, allow_nan=False)

    def discovered(self) -> list[DiscoveredCluster]:
        """The clusters that take their endpoints from the controller."""
        out = []
        for cluster in self.engine.get("clusters") or []:
            if isinstance(cluster, dict) and isinstance(cluster.get("service"), str):
                version = cluster.get("version")
                out.append(
                    DiscoveredCluster(
                        str(cluster.get("name", "")),
                        cluster["service"],
                        version if isinstance(version, str) and version else None,
                    )
                )
        return out

    def listener_names(self) -> list[str]:
        """Listener names in the order the configuration gives them."""
        return [
            str(listener.get("name", ""))
            for listener in self.engine.get("listeners") or []
            if isinstance(listener, dict)
        ]

    def locate(self, error: str) -> str:
        """An engine error (`path: message`) as the user should read it."""
        # Positions in the generated JSON mean nothing to the reader of the YAML.
        error = _JSON_POSITION.sub("", error)
        if self.source is None:
            return error
        return locate_error(str(self.source), self.root, error)


# ---- the file ---------------------------------------------------------------------------


def _jsonable(value: Any, path: str) -> Any:
    """The value as JSON types, or ValueError naming the path of what JSON cannot carry."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise ValueError(f"{path or 'document'}: keys must be text, got {key!r}")
            name = str(key)
            out[name] = _jsonable(item, f"{path}.{name}" if path else name)
        return out
    if isinstance(value, list):
        return [_jsonable(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: must be a finite number")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"{path}: unsupported value {value!r} (quote it to make it text)")


def _number(value: Any, path: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{path}: must be a number")
    if value < minimum:
        raise ValueError(f"{path}: must be at least {minimum:g}")
    return float(value)


def _registration(raw: Any) -> Registration:
    if not isinstance(raw, dict):
        raise ValueError("sidecar.register: must be a mapping")
    for key in raw:
        if key not in _REGISTER_KEYS:
            known = ", ".join(_REGISTER_KEYS)
            raise ValueError(f"sidecar.register.{key}: unknown field ({known})")
    if "service" not in raw:
        raise ValueError("sidecar.register.service: required")
    values: dict[str, Any] = {}
    for key in _REGISTER_TEXT:
        if key in raw:
            if not isinstance(raw[key], str) or (key == "service" and not raw[key]):
                raise ValueError(f"sidecar.register.{key}: must be text")
            values[key] = raw[key]
    for key, low, high in (("port", 1, 65535), ("weight", 1, 1_000_000)):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"sidecar.register.{key}: must be a whole number {low}-{high}")
            values[key] = value
    if "labels" in raw:
        labels = raw["labels"]
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ValueError("sidecar.register.labels: must map text to text")
        values["labels"] = dict(labels)
    if raw.get("ttl") is not None:
        values["ttl"] = _number(raw["ttl"], "sidecar.register.ttl", 0.1)
    return Registration(**values)


def _settings(raw: Any) -> Settings:
    if raw is None:
        return Settings()
    if not isinstance(raw, dict):
        raise ValueError("sidecar: must be a mapping")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"sidecar.{key}"
        if key == "admin":
            values["admin"] = parse_address(str(value), path)
        elif key == "controller":
            if not isinstance(value, str) or not value.startswith("http://"):
                raise ValueError(f"{path}: must be an http:// URL")
            values["controller"] = value.rstrip("/")
        elif key in ("drain_timeout_s", "initial_fetch_timeout_s", "deregister_grace_s"):
            values[key] = _number(value, path)
        elif key == "register":
            values["register"] = _registration(value)
        else:
            raise ValueError(f"{path}: unknown field ({', '.join(_SIDECAR_KEYS)})")
    return Settings(**values)


def load_sidecar_config(
    path: str | Path, validate: Callable[[str], None] | None = None
) -> SidecarConfig:
    """Reads a sidecar YAML file; `validate` (the engine's validator) checks its document.

    Raises ConfigError `FILE:LINE: path: message`.
    """
    import yaml  # here, not at the top: the quick form never reads YAML

    where = str(path)
    root = compose_file(path)
    if root is None:
        raise ConfigError(f"{where}:1: the file is empty: a sidecar needs listeners")
    try:
        raw = node_value(root)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}:{line_of(root, '')}: the document must be a mapping")
    try:
        settings = _settings(raw.pop("sidecar", None))
        document = _jsonable(raw, "")
    except ValueError as err:
        raise ConfigError(locate_error(where, root, str(err))) from err
    config = SidecarConfig(document, settings, Path(path), root)
    if settings.register is not None:
        names = config.listener_names()
        wanted = settings.register.listener
        if wanted is not None and wanted not in names:
            raise ConfigError(
                config.locate(f"sidecar.register.listener: no listener named {wanted!r}")
            )
    if validate is not None:
        try:
            validate(config.engine_json)
        except ValueError as err:
            raise ConfigError(config.locate(str(err))) from err
    return config


# ---- the quick form ---------------------------------------------------------------------


def _resolved(address: str, flag: str) -> str:
    """`HOST:PORT` with a host name resolved to an IP address (the engine takes addresses)."""
    host, port = parse_address(address, flag)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise ValueError(f"{flag}: cannot resolve {host}: {err}") from err
    # Prefer IPv4, as `localhost` users mean 127.0.0.1 more often than ::1.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return format_address(str(infos[0][4][0]), port)


def quick_config(
    listen: str,
    upstreams: list[str],
    protocol: str = "http",
    lb: str = "least_request",
    workers: int = 1,
) -> SidecarConfig:
    """One listener `main` proxying everything to cluster `upstream` with the defaults:
    least-request balancing, the per-host breaker, retries on connect failure and tracing."""
    try:
        listen = _resolved(listen, "--listen")
        upstreams = [_resolved(upstream, "--upstream") for upstream in upstreams]
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if not upstreams:
        raise ConfigError("--upstream: at least one HOST:PORT")
    if lb not in LB_POLICIES:
        raise ConfigError(f"--lb: one of {', '.join(LB_POLICIES)}")
    if workers < 1:
        raise ConfigError("--workers: at least 1")
    cluster: dict[str, Any] = {
        "name": "upstream",
        "endpoints": list(upstreams),
        "lb": lb,
        "host_breaker": {},
    }
    if lb in ("ring_hash", "maglev"):
        cluster["hash_policy"] = [{"source_ip": True}]
    listener: dict[str, Any] = {"name": "main", "listen": listen, "protocol": protocol}
    if protocol == "tcp":
        listener["cluster"] = "upstream"
    else:
        route = {
            "match": {"path": {"prefix": "/"}},
            "cluster": "upstream",
            "retry": {"retry_on": ["connect-failure"], "num_retries": 2},
        }
        listener["virtual_hosts"] = [{"name": "default", "domains": ["*"], "routes": [route]}]
    document = {
        "workers": workers,
        "tracing": True,
        "listeners": [listener],
        "clusters": [cluster],
    }
    return SidecarConfig(document)
