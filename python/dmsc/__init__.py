"""dmsc: a service mesh with a compiled core and a C API."""

from __future__ import annotations

from dmsc.mesh import (
    Instance,
    Mesh,
    MeshConfig,
    NoHealthyInstanceError,
    Request,
    ServiceEndpoint,
)
from dmsc_fast import __version__, build_info

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
