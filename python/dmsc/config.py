"""Controller configuration files (YAML), validated with errors that name field and line.

```yaml
http: 127.0.0.1:8500          # registry API and dashboard
dns: 127.0.0.1:8600           # DNS interface (UDP and TCP); null turns it off
store: sqlite:dmsc.db         # memory:, sqlite:PATH or etcd://HOST:PORT[,HOST:PORT]
mesh:                         # any MeshConfig field
  domain: dmsc
  load_balancing: least_requests
  health_check_interval: 2.0
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from dmsc.controller import ControllerConfig
from dmsc.mesh import Mesh, MeshConfig


class ConfigError(ValueError):
    """A configuration file was refused; the message names the file, line and field."""


def parse_address(value: str, field: str = "address") -> tuple[str, int]:
    """Parses `HOST:PORT` (port 0 picks a free port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{field}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _mapping(node: yaml.Node) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise ValueError("must be a mapping")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        out[str(key.value)] = (key, value)
    return out


def _mesh_config(node: yaml.Node, where: str) -> MeshConfig:
    fields = {f.name: f for f in dataclasses.fields(MeshConfig)}
    values: dict[str, Any] = {}
    for name, (key, value) in _mapping(node).items():
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}:{_line(key)}: mesh.{name}: unknown field ({known})")
        values[name] = yaml.safe_load(yaml.serialize(value))
    try:
        config = MeshConfig(**values)
        Mesh(config)  # the core validates every setting
        return config
    except (TypeError, ValueError) as err:
        field = str(err).partition(":")[0]
        line = _line(_mapping(node).get(field, (None, None))[0])
        raise ConfigError(f"{where}:{line}: mesh.{err}") from err


def load_config(path: str | Path) -> ControllerConfig:
    """Reads and validates a controller configuration file."""
    where = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"{where}: cannot read: {err.strerror}") from err
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from err
    config = ControllerConfig()
    if root is None:
        return config
    try:
        top = _mapping(root)
    except ValueError as err:
        raise ConfigError(f"{where}:1: {err}") from err
    for name, (key, value) in top.items():
        line = _line(key)
        raw = yaml.safe_load(yaml.serialize(value))
        try:
            if name == "http":
                config.http = parse_address(str(raw), "http")
            elif name == "dns":
                config.dns = None if raw is None else parse_address(str(raw), "dns")
            elif name == "store":
                if not isinstance(raw, str) or not raw:
                    raise ValueError("store: must be a store URL")
                config.store = raw
            elif name == "mesh":
                config.mesh = _mesh_config(value, where)
            else:
                raise ValueError(f"{name}: unknown field (http, dns, store, mesh)")
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"{where}:{line}: {err}") from err
    return config
