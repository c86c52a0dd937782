"""The ``dmsc`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import uvloop

import dmsc_fast
from dmsc.controller import Controller


def host_port(value: str) -> tuple[str, int]:
    """Parses ``HOST:PORT`` (port 0 picks a free port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


async def _up(http: tuple[str, int]) -> None:
    controller = Controller(*http)
    await controller.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    info = dmsc_fast.build_info()
    print(
        f"dmsc {info['version']} is up ({info['profile']} build)\n"
        f"  dashboard: {controller.url}\n"
        f"  admin API: {controller.url}v1/build\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    await stop.wait()
    await controller.close()
    print("dmsc stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dmsc", description="The dmsc service mesh.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a local mesh and print the dashboard URL")
    up.add_argument(
        "--http",
        type=host_port,
        default=("127.0.0.1", 8500),
        metavar="HOST:PORT",
        help="address of the dashboard and admin API (default 127.0.0.1:8500)",
    )
    commands.add_parser("build-info", help="print which compiled parts are loaded, as JSON")
    args = parser.parse_args(argv)
    if args.command == "up":
        uvloop.run(_up(args.http))
    elif args.command == "build-info":
        json.dump(dmsc_fast.build_info(), sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
