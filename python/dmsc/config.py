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
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

    from dmsc.controller import ControllerConfig
    from dmsc.mesh import MeshConfig

# YAML, the controller and the mesh are imported where they are used: the sidecar's quick
# form needs only `parse_address` and `ConfigError` here, and every module it loads stays
# in its resident memory for the life of the process.


class ConfigError(ValueError):
    """A configuration file was refused; the message names the file, line and field."""


def parse_address(value: str, field: str = "address") -> tuple[str, int]:
    """Parses `HOST:PORT` (port 0 picks a free port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{field}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def format_address(host: str, port: int) -> str:
    """`HOST:PORT`, an IPv6 host in brackets (what `parse_address` reads back)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _mapping(node: yaml.Node) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise ValueError("must be a mapping")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        out[str(key.value)] = (key, value)
    return out


def _mesh_config(node: yaml.Node, where: str) -> MeshConfig:
    from dmsc.mesh import Mesh, MeshConfig

    fields = {f.name: f for f in dataclasses.fields(MeshConfig)}
    values: dict[str, Any] = {}
    for name, (key, value) in _mapping(node).items():
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}:{_line(key)}: mesh.{name}: unknown field ({known})")
        values[name] = node_value(value)
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
    import yaml

    from dmsc.controller import ControllerConfig

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
        raw = node_value(value)
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


# ---- YAML documents with positions (the sidecar's configuration) --------------------------


def compose_file(path: str | Path) -> yaml.Node | None:
    """Reads a YAML file into its node tree (which keeps line numbers); None when empty.

    Unreadable files and YAML syntax errors raise ConfigError naming the file and line.
    """
    import yaml

    where = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise ConfigError(f"{where}: cannot read: {reason}") from err
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{line}: not valid YAML: {err.problem or err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from err


def node_value(node: yaml.Node) -> Any:
    """The plain Python value (dicts, lists, scalars) a node stands for."""
    import yaml

    return yaml.safe_load(yaml.serialize(node))


_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def node_at(root: yaml.Node | None, path: str) -> yaml.Node | None:
    """The deepest node a dotted path (`clusters[1].lb`, `a.b[0].c`) reaches in a node tree.

    A path that leaves the tree stops at the last node it found (a missing field is reported
    at its parent); mapping keys that contain dots are matched too. For a mapping entry the
    key node is answered, as that is the line a reader looks for.
    """
    import yaml

    parts: list[str | int] = [
        int(index) if index else name for index, name in _PATH_PART.findall(path)
    ]
    node = root
    found: yaml.Node | None = root
    i = 0
    while node is not None and i < len(parts):
        part = parts[i]
        step: yaml.Node | None = None
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part < len(node.value):
                step = node.value[part]
                found = step
        elif isinstance(node, yaml.MappingNode):
            # Longest key first, so `set.x.y` finds a key literally named `x.y`.
            for end in range(len(parts), i, -1):
                if not all(isinstance(p, str) for p in parts[i:end]):
                    continue
                name = ".".join(str(p) for p in parts[i:end])
                entry = next((kv for kv in node.value if str(kv[0].value) == name), None)
                if entry is not None:
                    found, step = entry[0], entry[1]
                    i = end - 1
                    break
        node = step
        i += 1
    return found


def line_of(root: yaml.Node | None, path: str, message: str = "") -> int:
    """The 1-based line a config error at `path` is about.

    When `message` names an unknown field (serde's "unknown field `x`"), the line of that
    key inside the node the path reaches is answered.
    """
    import yaml

    node = node_at(root, path)
    unknown = re.search(r"unknown (?:field|variant) `([^`]+)`", message)
    if unknown and node is not None:
        target = node
        if not isinstance(target, yaml.MappingNode):
            # The path ended at a key: look inside its value.
            parent = node_at(root, path.rpartition(".")[0]) if "." in path else root
            if isinstance(parent, yaml.MappingNode):
                target = next((v for k, v in parent.value if k is node), node)
        if isinstance(target, yaml.MappingNode):
            for key, _ in target.value:
                if str(key.value) == unknown.group(1):
                    return _line(key)
    return _line(node)


def locate_error(where: str, root: yaml.Node | None, error: str) -> str:
    """`path: message` from a validator -> `FILE:LINE: path: message`."""
    path, sep, message = error.partition(": ")
    if not sep or " " in path:
        return f"{where}:{_line(root)}: {error}"
    return f"{where}:{line_of(root, path, message)}: {error}"
