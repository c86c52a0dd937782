"""Runs the micro-benchmarks and prints dmsc against its peers, operation by operation.

Usage: python benches/run.py [pytest args...]

Writes the raw pytest-benchmark JSON and a Markdown table to bench-results/.
Budgets (DESIGN.md): at most 100 ns/op from Python and at least 10x faster
than the pure-Python peer measured in the same run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-results"
BUDGET_NS = 100.0
BUDGET_RATIO = 10.0
# Peers that are C code (the floor of any call from Python), shown for reference only.
REFERENCE_PEERS = {"itertools.cycle", "os.writev", "threading.BoundedSemaphore"}
# Operations that include system calls: the per-call budgets do not apply.
SYSCALL_BOUND = ("gather ", "L4 pump")
# Operations with their own budget in nanoseconds (the control plane's, not the hot paths').
OWN_BUDGET_NS = {"mesh discover, 1000 instances": 2000.0, "mesh request, 1000 instances": 2000.0}


def fmt(value: float | None, unit: str = "") -> str:
    """One decimal, or "-" where there is no figure."""
    return "-" if value is None or math.isnan(value) else f"{value:.1f}{unit}"


def table(results: dict[str, object]) -> list[str]:
    by_group: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in results["benchmarks"]:  # type: ignore[index]
        extra = bench["extra_info"]
        # Medians (taken by the measure fixture) are robust to a shared machine's noise.
        by_group[bench["group"]][extra.get("impl", bench["name"])] = extra["ns_per_op"]
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
            if group in OWN_BUDGET_NS:
                verdict = "ok" if ours is not None and ours <= OWN_BUDGET_NS[group] else "MISSED"
            elif group.startswith(SYSCALL_BOUND) or peer in REFERENCE_PEERS:
                verdict = "reference"
            else:
                ok = ours is not None and ours <= BUDGET_NS
                ok = ok and (peer == "-" or ratio >= BUDGET_RATIO)
                verdict = "ok" if ok else "MISSED"
            rows.append(
                f"| {group} | {fmt(ours)} | {peer} | {fmt(peer_ns)} "
                f"| {fmt(ratio, 'x')} | {verdict} |"
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
        "-o",
        "python_files=bench_*.py",
        f"--benchmark-json={raw}",
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
