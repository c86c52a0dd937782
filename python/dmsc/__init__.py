"""dmsc: a service mesh with a compiled core and a C API."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dmsc_fast import __version__, build_info

if TYPE_CHECKING:
    from dmsc.mesh import (
        Instance,
        Mesh,
        MeshConfig,
        NoHealthyInstanceError,
        Request,
        ServiceEndpoint,
    )

__all__ = [
    "Instance",
    "Mesh",
    "MeshConfig",
    "NoHealthyInstanceError",
    "Request",
    "ServiceEndpoint",
    "__version__",
    "build_info",
]

# The in-process mesh loads on first use, so processes that never use it (the sidecar)
# do not carry it.
_MESH_NAMES = frozenset(__all__) - {"__version__", "build_info"}


def __getattr__(name: str) -> Any:
    if name in _MESH_NAMES:
        return getattr(importlib.import_module("dmsc.mesh"), name)
    raise AttributeError(f"module 'dmsc' has no attribute {name!r}")
