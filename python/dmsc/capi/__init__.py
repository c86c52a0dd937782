"""Where the C library, header and pkg-config data of dmsc live in this installation."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def lib_dir() -> Path:
    """Directory holding ``libdmsc.so`` and ``libdmsc.a``."""
    return _HERE / "lib"


def include_dir() -> Path:
    """Directory holding ``dmsc.h``."""
    return _HERE / "include"


def pkg_config_dir() -> Path:
    """Directory holding ``dmsc.pc`` (add it to ``PKG_CONFIG_PATH``)."""
    return lib_dir() / "pkgconfig"


def cflags() -> str:
    """Compiler flags to build against ``dmsc.h``."""
    return f"-I{include_dir()}"


def libs() -> str:
    """Linker flags for ``libdmsc.so``, with an rpath so no LD_LIBRARY_PATH is needed."""
    return f"-L{lib_dir()} -Wl,-rpath,{lib_dir()} -ldmsc"
