"""dmsc: a service mesh with a compiled core and a C API."""

from __future__ import annotations

from dmsc_fast import __version__, build_info

__all__ = ["__version__", "build_info"]
