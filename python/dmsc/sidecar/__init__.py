"""`dmsc sidecar`: the data-plane proxy process.

```
dmsc sidecar --config sidecar.yaml [--admin HOST:PORT] [--controller URL]
dmsc sidecar --listen 127.0.0.1:8080 --upstream 127.0.0.1:9000,127.0.0.1:9001
```

The proxy itself is the compiled engine (`dmsc_fast.ProxyEngine`) on its own threads; this
package reads the configuration (`examples/sidecar.yaml` documents it), serves the admin
API, feeds discovered endpoints to the engine and handles reload and graceful stop.
"""

from __future__ import annotations

import argparse
import sys

import uvloop

from dmsc.config import ConfigError, parse_address
from dmsc.sidecar.config import (
    LB_POLICIES,
    DiscoveredCluster,
    Registration,
    Settings,
    SidecarConfig,
    load_sidecar_config,
    quick_config,
)
from dmsc.sidecar.runner import Sidecar, load

__all__ = [
    "DiscoveredCluster",
    "Registration",
    "Settings",
    "Sidecar",
    "SidecarConfig",
    "add_arguments",
    "load",
    "load_sidecar_config",
    "quick_config",
    "run_command",
]


def _address(value: str) -> tuple[str, int]:
    try:
        return parse_address(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).partition(": ")[2]) from err


def _upstreams(value: str) -> list[str]:
    upstreams = [item.strip() for item in value.split(",") if item.strip()]
    for upstream in upstreams:
        _address(upstream)
    if not upstreams:
        raise argparse.ArgumentTypeError("expected HOST:PORT[,HOST:PORT...]")
    return upstreams


def _pid(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a process id, got {value!r}")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `dmsc sidecar`."""
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    parser.add_argument(
        "--admin",
        type=_address,
        metavar="HOST:PORT",
        help="admin API (default: sidecar.admin of the config, else 127.0.0.1:15000)",
    )
    parser.add_argument(
        "--controller", metavar="URL", help="controller for discovery and registration"
    )
    parser.add_argument(
        "--stop-with",
        type=_pid,
        metavar="PID",
        help="stop gracefully when process PID exits, however it ends (dmsc up uses this)",
    )
    quick = parser.add_argument_group("quick form (no config file)")
    quick.add_argument("--listen", metavar="HOST:PORT", help="address to accept requests on")
    quick.add_argument(
        "--upstream",
        type=_upstreams,
        action="append",
        metavar="HOST:PORT[,HOST:PORT...]",
        help="where requests go (repeatable)",
    )
    quick.add_argument("--protocol", choices=("http", "tcp"), default="http")
    quick.add_argument("--lb", choices=LB_POLICIES, default="least_request")
    quick.add_argument("--workers", type=int, default=1, help="data-plane threads (default 1)")


def _config(args: argparse.Namespace) -> SidecarConfig:
    quick = args.listen is not None or args.upstream is not None
    if args.config and quick:
        raise ConfigError("give --config FILE or --listen/--upstream, not both")
    if args.controller is not None and not args.controller.startswith("http://"):
        raise ConfigError(f"--controller: must be an http:// URL, got {args.controller}")
    if args.config:
        return load(args.config)
    if args.listen is None or not args.upstream:
        raise ConfigError("give --config FILE, or --listen HOST:PORT and --upstream HOST:PORT")
    upstreams = [u for group in args.upstream for u in group]
    return quick_config(args.listen, upstreams, args.protocol, args.lb, args.workers)


def run_command(args: argparse.Namespace) -> int:
    """Runs `dmsc sidecar`: 0 after a graceful stop, 2 when the configuration is refused."""
    try:
        config = _config(args)
        sidecar = Sidecar(config, args.admin, args.controller, stop_with=args.stop_with)
        return uvloop.run(sidecar.run())
    except ConfigError as err:
        print(f"dmsc sidecar: {err}", file=sys.stderr, flush=True)
        return 2
