"""The C API: the specification's example, bad input, threads, shipping, and the header."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from support import MEMCHECK, HealthHandler, health_server

import dmsc
import dmsc.capi

C_DIR = Path(__file__).parent / "c"
HEADER = dmsc.capi.include_dir() / "dmsc.h"
LIBRARY = dmsc.capi.lib_dir() / "libdmsc.so"
STRICT_C = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"]
STRICT_CXX = ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="module")
def health_port() -> Iterator[int]:
    """A real HTTP server on loopback answering GET /health with 200."""
    with health_server() as server:
        yield server.server_address[1]


def build(tmp_path: Path, source: str, compiler: list[str], *extra: str) -> Path:
    exe = tmp_path / Path(source).stem
    flags = f"{dmsc.capi.cflags()} {dmsc.capi.libs()}".split()
    cmd = [*compiler, str(C_DIR / source), "-o", str(exe), *extra, *flags]
    subprocess.run(cmd, check=True)
    return exe


def run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # An empty environment proves the program needs neither LD_LIBRARY_PATH nor Python.
    env = {"PATH": os.environ["PATH"]}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def example_flags(port: int) -> list[str]:
    return ['-DDMSC_EXAMPLE_HOST="127.0.0.1"', f"-DDMSC_EXAMPLE_PORT={port}"]


@pytest.mark.parametrize("compiler", [STRICT_C, STRICT_CXX], ids=["c11", "c++17"])
def test_specification_example_runs(tmp_path: Path, health_port: int, compiler: list[str]) -> None:
    extra = example_flags(health_port)
    if compiler is STRICT_CXX:
        extra = ["-x", "c++", *extra]
    exe = build(tmp_path, "seed_example.c", compiler, *extra)
    result = run([str(exe)])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Service mesh started successfully" in out
    assert "Service endpoint registered successfully" in out
    assert "Service: user-service (version: v1.2.3), healthy instances: 1" in out
    assert f"Discovered service at 127.0.0.1:{health_port}" in out
    assert "Mesh stats: 0 total requests, 0 failed" in out
    assert "Service mesh shutdown complete" in out


def test_specification_example_is_clean_under_memcheck(tmp_path: Path, health_port: int) -> None:
    exe = build(tmp_path, "seed_example.c", STRICT_C, "-g", *example_flags(health_port))
    result = run([*MEMCHECK, str(exe)], timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ERROR SUMMARY: 0 errors" in result.stderr


def test_mesh_behaviour_behind_the_api(tmp_path: Path) -> None:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), HealthHandler) for _ in range(3)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        exe = build(tmp_path, "mesh_behaviour.c", STRICT_C, "-g")
        ports = [str(server.server_address[1]) for server in servers]
        result = run([*MEMCHECK, str(exe), *ports], timeout=300)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert result.returncode == 0, result.stderr[-4000:]
    assert "mesh behaviour ok" in result.stdout


def test_every_function_survives_null_and_bad_input(tmp_path: Path) -> None:
    exe = build(tmp_path, "null_and_bad_input.c", STRICT_C, "-g")
    result = run([*MEMCHECK, str(exe)], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert "all bad-input checks passed" in result.stdout


# valgrind's helgrind and drd, and ThreadSanitizer without an instrumented Rust build, do not
# see the futex-based locks and atomics of Rust's std and parking_lot, so they flag every lock
# in the library. Data races inside it are ruled out by Rust (no unsafe outside the ABI layer);
# these tests check the ABI layer and the callers' side under real concurrency.
def test_concurrent_use_under_sanitizers(tmp_path: Path, health_port: int) -> None:
    exe = build(
        tmp_path,
        "concurrent.c",
        ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread"],
        "-g",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
    )
    result = run([str(exe), str(health_port), "200"], timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert re.search(r"total=\d+ failed=\d+", result.stdout)


def test_concurrent_use_is_clean_under_memcheck(tmp_path: Path, health_port: int) -> None:
    exe = build(tmp_path, "concurrent.c", ["gcc", "-std=c11", "-pthread"], "-g")
    result = run([*MEMCHECK, str(exe), str(health_port), "10"], timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ERROR SUMMARY: 0 errors" in result.stderr


def declared_functions(header: str) -> set[str]:
    """Names of the C functions the header declares (C section, not the C++ overloads)."""
    c_part = header.split('#ifdef __cplusplus\n} /* extern "C" */')[0]
    return set(re.findall(r"^[A-Za-z_][\w\s\*]*?\b(dmsc_\w+)\(", c_part, re.MULTILINE))


def exported_functions() -> set[str]:
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(LIBRARY)], check=True, capture_output=True, text=True
    ).stdout
    return {line.split()[-1] for line in out.splitlines() if " T dmsc_" in line}


def test_header_declares_exactly_the_exported_symbols() -> None:
    declared = declared_functions(HEADER.read_text())
    exported = exported_functions()
    assert declared == exported, {
        "declared only": sorted(declared - exported),
        "exported only": sorted(exported - declared),
    }


@pytest.mark.parametrize(
    "compiler",
    [
        ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        ["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-x", "c++"],
    ],
    ids=["c99", "c11", "c++11"],
)
def test_header_compiles_on_its_own(tmp_path: Path, compiler: list[str]) -> None:
    source = tmp_path / "only_header.c"
    source.write_text('#include "dmsc.h"\nint main(void) { return dmsc_features() == 0; }\n')
    subprocess.run(
        [*compiler, "-fsyntax-only", f"-I{dmsc.capi.include_dir()}", str(source)], check=True
    )


def test_pkg_config_file_builds_a_program(tmp_path: Path) -> None:
    if shutil.which("pkg-config") is None:
        pytest.fail("pkg-config is missing: `make` installs it")
    env = {**os.environ, "PKG_CONFIG_PATH": str(dmsc.capi.pkg_config_dir())}
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "dmsc"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    version = subprocess.run(
        ["pkg-config", "--modversion", "dmsc"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert version == dmsc.__version__
    source = tmp_path / "features.c"
    source.write_text(
        '#include <stdio.h>\n#include "dmsc.h"\n'
        'int main(void) { printf("%u\\n", dmsc_features()); return 0; }\n'
    )
    exe = tmp_path / "features"
    subprocess.run(["gcc", str(source), "-o", str(exe), *flags], check=True)
    # The default build has every feature: service-mesh, mtls, breaker, tracing, metrics, dns.
    assert run([str(exe)]).stdout.strip() == str(0b111111)
