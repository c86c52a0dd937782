"""The compiled parts are the ones running, built for speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dmsc
import dmsc.capi
import dmsc_fast
from dmsc_fast import _native, _wire


def test_build_info_reports_both_compiled_parts_in_release() -> None:
    info = dmsc_fast.build_info()
    assert info["rust"] is True
    assert info["cython"] is True
    assert info["profile"] == "release"
    assert info["version"] == dmsc.__version__


def test_modules_are_shared_objects_not_python_sources() -> None:
    for module in (_native, _wire):
        assert module.__file__ is not None
        assert Path(module.__file__).suffix == ".so", module.__file__
    # A Cython module compiled from .pyx has no Python code objects for its functions.
    assert _wire.COMPILED is True


def test_c_library_and_header_ship_with_the_package() -> None:
    assert (dmsc.capi.lib_dir() / "libdmsc.so").is_file()
    assert (dmsc.capi.lib_dir() / "libdmsc.a").is_file()
    assert (dmsc.capi.include_dir() / "dmsc.h").is_file()


def test_capi_module_prints_compile_and_link_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dmsc.capi", "--cflags", "--libs"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f"-I{dmsc.capi.include_dir()}" in out
    assert "-ldmsc" in out and "-Wl,-rpath," in out


def test_a_c_program_links_libdmsc_without_python(tmp_path: Path) -> None:
    source = tmp_path / "version.c"
    source.write_text(
        '#include <stdio.h>\n#include "dmsc.h"\n'
        "int main(void) { puts(dmsc_version()); return 0; }\n"
    )
    exe = tmp_path / "version"
    flags = f"{dmsc.capi.cflags()} {dmsc.capi.libs()}".split()
    subprocess.run(
        ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", str(source), "-o", str(exe), *flags],
        check=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, env={}).stdout
    assert out.strip() == dmsc.__version__
