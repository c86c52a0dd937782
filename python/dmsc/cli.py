"""The ``dmsc`` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import uvloop

import dmsc_fast
from dmsc.client import CommandError, call
from dmsc.config import ConfigError, load_config, parse_address
from dmsc.sidecar import add_arguments as add_sidecar_arguments
from dmsc.sidecar import run_command as run_sidecar

if TYPE_CHECKING:
    # The controller (its store, DNS and API) is imported by the commands that run it, so
    # that `dmsc sidecar` does not carry it in its resident memory.
    from dmsc.controller import ControllerConfig

DEFAULT_CONTROLLER = "http://127.0.0.1:8500"


def _address(value: str) -> tuple[str, int]:
    try:
        return parse_address(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).partition(": ")[2]) from err


# ---- talking to a controller ------------------------------------------------------------


def print_table(rows: Sequence[Sequence[str]], out: Any = sys.stdout) -> None:
    """Prints rows as aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)), file=out
        )


def cmd_register(args: argparse.Namespace) -> int:
    host, port = args.address
    body: dict[str, Any] = {
        "name": args.name,
        "host": host,
        "port": port,
        "version": args.version,
        "health_check_url": args.health_check_url,
        "zone": args.zone,
        "cluster": args.cluster,
        "weight": args.weight,
        "labels": dict(label.split("=", 1) for label in args.label),
    }
    if args.ttl is not None:
        body["ttl"] = args.ttl
    result = call(args.controller, "PUT", "/v1/registry/instances", body)
    print(f"registered {result['id']} (revision {result['revision']})")
    return 0


def cmd_deregister(args: argparse.Namespace) -> int:
    host, port = args.address
    result = call(args.controller, "DELETE", f"/v1/registry/instances/{args.name}/{host}:{port}")
    print(f"deregistered {result['id']}")
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    query = []
    if args.version:
        query.append(f"version={urllib.parse.quote(args.version)}")
    if args.key:
        query.append(f"key={urllib.parse.quote(args.key)}")
    path = f"/v1/registry/discover/{args.name}" + ("?" + "&".join(query) if query else "")
    endpoint = call(args.controller, "GET", path)
    print(
        f"{endpoint['host']}:{endpoint['port']}"
        + (" " + endpoint["version"] if endpoint["version"] else "")
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = call(args.controller, "GET", "/v1/status")
    registry = call(args.controller, "GET", "/v1/registry/services")
    print(
        f"controller {args.controller}: {status['status']} (store {status['store']}, "
        f"revision {status['revision']})"
    )
    rows = [["SERVICE", "INSTANCE", "VERSION", "ZONE", "HEALTH", "IN FLIGHT"]]
    for service in registry["services"]:
        for instance in service["instances"]:
            rows.append(
                [
                    service["name"],
                    f"{instance['host']}:{instance['port']}",
                    instance["version"] or "-",
                    instance["zone"] or "-",
                    instance["health"],
                    str(instance["active_requests"]),
                ]
            )
    if len(rows) == 1:
        print("no services registered")
    else:
        print_table(rows)
    return 0


# ---- running the controller -------------------------------------------------------------


def controller_config(args: argparse.Namespace) -> ControllerConfig:
    from dmsc.controller import ControllerConfig

    config = load_config(args.config) if args.config else ControllerConfig()
    if args.http is not None:
        config.http = args.http
    if args.dns is not None:
        config.dns = None if args.dns == "off" else _address(args.dns)
    if args.store is not None:
        config.store = args.store
    if args.domain is not None:
        config.mesh = dataclasses.replace(config.mesh, domain=args.domain)
    return config


def _stop_on_signals() -> Callable[[], Awaitable[None]]:
    """Installs SIGINT/SIGTERM handlers now (before anything is announced) and returns
    the coroutine function that waits for one of them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async def wait() -> None:
        await stop.wait()

    return wait


async def _run_controller(config: ControllerConfig) -> None:
    from dmsc.controller import Controller

    wait = _stop_on_signals()
    controller = Controller(config)
    await controller.start()
    dns = f"{config.dns[0]}:{controller.dns.port}" if config.dns and controller.dns else "off"
    print(f"dmsc controller on {controller.url} (DNS {dns}, store {config.store})", flush=True)
    await wait()
    await controller.close()
    print("dmsc controller stopped.", flush=True)


def cmd_controller(args: argparse.Namespace) -> int:
    uvloop.run(_run_controller(controller_config(args)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from dmsc.up import run_up

    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    config = controller_config(args)
    etcd = None
    if args.etcd:
        from dmsc.store.etcd_server import EtcdServer, etcd_binary

        binary = etcd_binary()
        if binary is None:
            raise CommandError("--etcd needs etcd installed (Debian package etcd-server)")
        etcd = EtcdServer(binary, state / "etcd")
        print(f"starting etcd on {etcd.client_url} ... ", end="", flush=True)
        etcd.start()
        print("ok")
        config.store = etcd.url
    elif args.store is None and not args.config:
        config.store = f"sqlite:{state / 'registry.db'}"

    async def up() -> None:
        await run_up(config, _stop_on_signals(), state, args.sidecar)

    try:
        uvloop.run(up())
    finally:
        if etcd is not None:
            etcd.stop()
    return 0


def cmd_build_info(_: argparse.Namespace) -> int:
    json.dump(dmsc_fast.build_info(), sys.stdout, indent=2)
    print()
    return 0


def _controller_flags(parser: argparse.ArgumentParser, http_default: str) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    parser.add_argument(
        "--http",
        type=_address,
        metavar="HOST:PORT",
        help=f"registry API and dashboard (default {http_default})",
    )
    parser.add_argument(
        "--dns", metavar="HOST:PORT|off", help="DNS interface, UDP and TCP (default 127.0.0.1:8600)"
    )
    parser.add_argument(
        "--store", metavar="URL", help="memory:, sqlite:PATH or etcd://HOST:PORT[,HOST:PORT]"
    )
    parser.add_argument("--domain", help="DNS domain of service names (default dmsc)")


def _terminal_columns() -> int:
    """The terminal's width as `shutil.get_terminal_size` answers it: $COLUMNS, else the
    terminal's, else 80. (argparse imports shutil for this, and shutil its compression
    modules, which would stay resident in the sidecar.)"""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, as wide as the terminal."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser (its subcommands' parsers too) using `_HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `dmsc` parser; `command`, the subcommand about to run when known, lets it leave
    out the modules only other subcommands need."""
    parser = _Parser(prog="dmsc", description="The dmsc service mesh.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="start a local mesh: controller, sample services and a sidecar"
    )
    _controller_flags(up, "127.0.0.1:8500")
    up.add_argument("--state-dir", default=".dmsc", help="where the local mesh keeps its state")
    up.add_argument(
        "--etcd",
        action="store_true",
        help="run a local etcd (Debian etcd-server) and use it as the store, as a "
        "mesh spanning machines would",
    )
    up.add_argument(
        "--sidecar",
        default="127.0.0.1:15001",
        metavar="HOST:PORT",
        help="where the sample sidecar listens for requests to the sample services",
    )
    up.set_defaults(run=cmd_up)

    controller = commands.add_parser("controller", help="run the controller")
    _controller_flags(controller, "127.0.0.1:8500")
    controller.set_defaults(run=cmd_controller)

    sidecar = commands.add_parser(
        "sidecar", help="run the data-plane proxy (--config FILE, or --listen and --upstream)"
    )
    add_sidecar_arguments(sidecar)
    sidecar.set_defaults(run=run_sidecar)

    client = _Parser(add_help=False)
    client.add_argument(
        "--controller",
        default=DEFAULT_CONTROLLER,
        metavar="URL",
        help=f"controller API (default {DEFAULT_CONTROLLER})",
    )

    register = commands.add_parser("register", parents=[client], help="register an instance")
    register.add_argument("name")
    register.add_argument("address", type=_address, metavar="HOST:PORT")
    register.add_argument("--version", default="")
    register.add_argument("--health-check-url", default="", metavar="PATH")
    register.add_argument("--zone", default="")
    register.add_argument("--cluster", default="")
    register.add_argument("--weight", type=int, default=1)
    register.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    register.add_argument(
        "--ttl", type=float, metavar="SECONDS", help="expire unless refreshed with heartbeats"
    )
    register.set_defaults(run=cmd_register)

    deregister = commands.add_parser("deregister", parents=[client], help="deregister an instance")
    deregister.add_argument("name")
    deregister.add_argument("address", type=_address, metavar="HOST:PORT")
    deregister.set_defaults(run=cmd_deregister)

    discover = commands.add_parser(
        "discover", parents=[client], help="pick a healthy instance of a service"
    )
    discover.add_argument("name")
    discover.add_argument("--version")
    discover.add_argument("--key", help="hash key for consistent hashing")
    discover.set_defaults(run=cmd_discover)

    status = commands.add_parser(
        "status", parents=[client], help="services, instances, health and versions"
    )
    status.set_defaults(run=cmd_status)

    build = commands.add_parser("build-info", help="compiled parts in use, as JSON")
    build.set_defaults(run=cmd_build_info)

    # The benchmark harness is a large module: it is loaded for `dmsc bench`, for help and
    # for unknown commands (whose error lists every command), not for a command known here.
    if command is None or command not in commands.choices:
        from dmsc.bench import add_bench_parser

        # Its parsers are `_Parser`s too (an ArgumentParser subclass).
        add_bench_parser(cast("argparse._SubParsersAction[argparse.ArgumentParser]", commands))
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((word for word in words if not word.startswith("-")), None))
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except (CommandError, ConfigError, ValueError) as err:
        print(f"dmsc {args.command}: {err}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
