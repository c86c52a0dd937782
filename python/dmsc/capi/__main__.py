"""``python -m dmsc.capi --cflags --libs``: flags to compile and link against libdmsc."""

from __future__ import annotations

import argparse

from dmsc.capi import cflags, libs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmsc.capi", description=__doc__)
    parser.add_argument("--cflags", action="store_true", help="print compiler flags")
    parser.add_argument("--libs", action="store_true", help="print linker flags")
    args = parser.parse_args(argv)
    if not (args.cflags or args.libs):
        parser.error("give --cflags, --libs or both")
    parts = ([cflags()] if args.cflags else []) + ([libs()] if args.libs else [])
    print(" ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
