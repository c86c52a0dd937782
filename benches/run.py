"""Runs the micro-benchmarks and prints dmsc against its peers, operation by operation.

Usage: python benches/run.py [pytest args...]

Writes the raw pytest-benchmark JSON and a Markdown table to bench-results/.
Budgets (DESIGN.md): at most 100 ns/op from Python and at least 10x faster
than the pure-Python peer measured in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-results"
BUDGET_NS = 100.0
BUDGET_RATIO = 10.0


def table(results: dict[str, object]) -> list[str]:
    by_group: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in results["benchmarks"]:  # type: ignore[index]
        impl = bench["extra_info"].get("impl", bench["name"])
        # The median is robust to the scheduler noise of a shared 2-core machine.
        by_group[bench["group"]][impl] = bench["stats"]["median"] * 1e9
    rows = [
        "| operation | dmsc ns/op | peer | peer ns/op | ratio | budget |",
        "|---|---:|---|---:|---:|---|",
    ]
    for group in sorted(by_group):
        impls = by_group[group]
        ours = impls.get("dmsc")
        peers = {k: v for k, v in impls.items() if k != "dmsc"} or {"-": float("nan")}
        for peer, peer_ns in sorted(peers.items()):
            ratio = peer_ns / ours if ours else float("nan")
            ok = ours is not None and ours <= BUDGET_NS and (peer == "-" or ratio >= BUDGET_RATIO)
            rows.append(
                f"| {group} | {ours if ours is not None else float('nan'):.1f} | {peer} "
                f"| {peer_ns:.1f} | {ratio:.1f}x | {'ok' if ok else 'MISSED'} |"
            )
    return rows


def main(argv: list[str]) -> int:
    OUT.mkdir(exist_ok=True)
    raw = OUT / "micro.json"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        str(ROOT / "benches"),
        "-p",
        "no:cacheprovider",
        f"--benchmark-json={raw}",
        "--benchmark-min-rounds=20",
        "--benchmark-disable-gc",
        *argv,
    ]
    code = subprocess.call(cmd, cwd=ROOT)
    if code != 0:
        return code
    rows = table(json.loads(raw.read_text()))
    (OUT / "micro.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
