"""`dmsc bench proxy`: a short real run produces the table, the JSON and the PNG.

Only the shape and sanity of the figures are checked here, never their size: speed belongs to
the benchmark itself (`make bench`), not to a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import DMSC

from dmsc.bench import (
    Proc,
    Skipped,
    median_round,
    parse_wrk,
    process_tree,
    select_targets,
    start,
    start_targets,
    table,
    tool_version,
    tree_cpu_seconds,
    tree_rss_mb,
)
from dmsc.client import CommandError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:18080/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    61.97us   40.06us   1.97ms   96.65%
    Req/Sec    60.85k     2.34k   63.79k    80.00%
  Latency Distribution
     50%   55.00us
     75%   63.00us
     90%   73.00us
     99%    1.20ms
  60512 requests in 1.00s, 8.08MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  60500.51
Transfer/sec:      8.08MB
"""


def run_bench(out: Path, *flags: str) -> tuple[str, dict[str, Any]]:
    result = subprocess.run(
        [*DMSC, "bench", "proxy", "--out", str(out), "--rounds", "1", *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    stem = "bench-l4" if "--l4" in flags else "bench-proxy"
    report = json.loads((out / f"{stem}.json").read_text())
    assert (out / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
    return result.stdout, report


def rows_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in report["results"]}


def test_l7_run_reports_every_target(tmp_path: Path) -> None:
    stdout, report = run_bench(
        tmp_path,
        "--duration",
        "1",
        "--connections",
        "4",
        "--only",
        "direct,dmsc,nginx,haproxy",
    )
    assert "TARGET" in stdout and "CPU US/REQ" in stdout
    assert "trace propagation on" in stdout
    assert report["kind"] == "l7"
    assert report["machine"]["nproc"] >= 1 and report["machine"]["cpu"]
    rows = rows_by_name(report)
    assert list(rows) == ["direct", "dmsc", "nginx", "haproxy"]
    for name, row in rows.items():
        assert "skipped" not in row, (name, row.get("skipped"))
        assert row["requests"] > 0 and row["rps"] > 0, name
        assert 0 < row["p50_us"] <= row["p99_us"], name
        assert row["cpu_us_per_req"] > 0 and row["rss_mb"] > 0, name
        assert row["errors"] == 0, name
        assert len(row["rounds"]) == 1
        assert name in stdout


def test_l4_run_moves_every_byte(tmp_path: Path) -> None:
    stdout, report = run_bench(
        tmp_path, "--l4", "--l4-mib", "64", "--l4-connections", "2", "--only", "direct,dmsc,haproxy"
    )
    assert "MB/S" in stdout
    assert report["kind"] == "l4"
    rows = rows_by_name(report)
    assert list(rows) == ["direct", "dmsc", "haproxy"]
    for name, row in rows.items():
        assert "skipped" not in row, (name, row.get("skipped"))
        # The sink confirms the byte count of every connection, or the run fails.
        assert row["bytes"] == 64 * (1 << 20), name
        assert row["mb_per_s"] > 0 and row["seconds"] > 0, name
        assert row["cpu_s"] >= 0 and row["rss_mb"] > 0, name


def test_a_peer_that_cannot_start_is_skipped_not_fatal(tmp_path: Path) -> None:
    def exits(workdir: Path, port: int, upstream: int) -> Proc:
        return start("broken", ["sh", "-c", "echo no such proxy >&2; exit 3"], port, workdir)

    def missing(workdir: Path, port: int, upstream: int) -> Proc:
        raise Skipped("not installed")

    targets = start_targets(
        {"broken": exits, "missing": missing}, ["direct", "broken", "missing"], tmp_path, 1
    )
    assert [(t.name, t.skipped) for t in targets] == [
        ("direct", ""),
        ("broken", "exited with 3: no such proxy"),
        ("missing", "not installed"),
    ]
    report = {
        "kind": "l7",
        "results": [
            {"name": "direct", "rps": 10.0, "p50_us": 50.0, "p99_us": 1500.0}
            | {"cpu_us_per_req": 5.0, "rss_mb": 12.0, "errors": 0.0},
            {"name": "broken", "skipped": targets[1].skipped},
        ],
    }
    assert table(report) == [
        ["TARGET", "REQ/S", "P50", "P99", "CPU US/REQ", "RSS MB", "ERRORS"],
        ["direct", "10", "50us", "1.50ms", "5.00", "12.0", "0"],
        ["broken", "skipped", "", "", "", "", ""],
    ]


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    for flags in (["--only", "direct,squid"], ["--rounds", "0"], ["--l4", "--l4-mib", "-1"]):
        result = subprocess.run(
            [*DMSC, "bench", "proxy", "--out", str(tmp_path), *flags],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert result.stderr.startswith("dmsc bench: ")
    assert not list(tmp_path.iterdir())


def test_parse_wrk_reads_figures_and_errors() -> None:
    figures = parse_wrk(WRK_OUTPUT)
    assert figures == {
        "requests": 60512.0,
        "rps": 60500.51,
        "p50_us": 55.0,
        "p99_us": 1200.0,
        "errors": 7.0,
    }
    with pytest.raises(ValueError, match="lacks"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
    with pytest.raises(ValueError, match="latency"):
        parse_wrk(WRK_OUTPUT.replace("1.20ms", "1.2ps"))


def test_tool_version_skips_the_path_the_tool_prints(tmp_path: Path) -> None:
    # Envoy prints its own path first; a path such as .../python3.11/... holds a number.
    tool = tmp_path / "python3.11" / "envoy"
    tool.parent.mkdir()
    tool.write_text('#!/bin/sh\necho "$0  version: 9e55809/1.40.0/Clean/RELEASE"\n')
    tool.chmod(0o755)
    assert tool_version([str(tool), "--version"]) == "1.40.0"
    assert tool_version([str(tmp_path / "absent")]) == "?"


def test_median_round_and_target_selection() -> None:
    rounds = [{"rps": 3.0}, {"rps": 1.0}, {"rps": 2.0}, {"rps": 4.0}]
    assert median_round(rounds[:3], "rps") == {"rps": 2.0}
    assert median_round(rounds, "rps") == {"rps": 2.0}
    assert select_targets(None, ("direct", "dmsc")) == ["direct", "dmsc"]
    assert select_targets(["dmsc", " direct"], ("direct", "dmsc", "nginx")) == ["direct", "dmsc"]
    with pytest.raises(CommandError, match="squid"):
        select_targets(["squid"], ("direct",))


def test_process_tree_accounting_sees_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        assert tree_cpu_seconds(os.getpid()) > 0
        assert tree_rss_mb(os.getpid()) > tree_rss_mb(child.pid) > 0
    finally:
        child.kill()
        child.wait()
