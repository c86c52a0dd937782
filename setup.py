"""Builds every compiled part of dmsc in one `pip install`.

* the Cython extension ``dmsc_fast._wire`` from ``pyx/``;
* the PyO3 extension ``dmsc_fast._native`` from ``src_rs/dmsc-py``;
* the C library ``libdmsc.so`` (+ ``libdmsc.a``, ``dmsc.h``) from ``src_rs/dmsc-capi``,
  shipped inside the ``dmsc.capi`` package.

Every path builds Rust in release mode (editable installs included): a debug
PyO3 build is slower than pure Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools_rust import RustExtension

ROOT = Path(__file__).resolve().parent
CARGO_DIR = ROOT / "src_rs"
CARGO_TARGET = Path(os.environ.get("CARGO_TARGET_DIR", CARGO_DIR / "target"))
CAPI_FILES = {
    "lib/libdmsc.so": CARGO_TARGET / "release" / "libdmsc.so",
    "lib/libdmsc.a": CARGO_TARGET / "release" / "libdmsc.a",
    "include/dmsc.h": CARGO_DIR / "dmsc-capi" / "include" / "dmsc.h",
}


class BuildExt(build_ext):
    """Builds the C library before the extensions, then ships it in ``dmsc/capi``."""

    def run(self) -> None:
        subprocess.run(
            ["cargo", "build", "--release", "--locked", "-p", "dmsc-capi"],
            cwd=CARGO_DIR,
            check=True,
        )
        if self.inplace:
            dest_root = ROOT / "python" / "dmsc" / "capi"
        else:
            dest_root = Path(self.build_lib) / "dmsc" / "capi"
        for rel, src in CAPI_FILES.items():
            dest = dest_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Replace, never overwrite in place: running programs may have the library mapped.
            staging = dest.with_name(dest.name + ".tmp")
            shutil.copy2(src, staging)
            os.replace(staging, dest)
        pc_template = (CARGO_DIR / "dmsc-capi" / "dmsc.pc.in").read_text()
        pc_file = dest_root / "lib" / "pkgconfig" / "dmsc.pc"
        pc_file.parent.mkdir(parents=True, exist_ok=True)
        pc_file.write_text(pc_template.replace("@VERSION@", self.distribution.get_version()))
        super().run()


CYTHON_DIRECTIVES = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
    "embedsignature": True,
    # No module-level __test__ dict: the module's API is exactly what _wire.pyi declares.
    "autotestdict": False,
}

extensions = cythonize(
    [
        Extension(
            "dmsc_fast._wire",
            ["pyx/_wire.pyx"],
            extra_compile_args=["-O2"],
        )
    ],
    compiler_directives=CYTHON_DIRECTIVES,
    include_path=["pyx"],
)

setup(
    ext_modules=extensions,
    rust_extensions=[
        RustExtension(
            "dmsc_fast._native",
            path="src_rs/dmsc-py/Cargo.toml",
            features=["extension-module"],
            debug=False,
            args=["--locked"],
        )
    ],
    cmdclass={"build_ext": BuildExt},
    zip_safe=False,
)
