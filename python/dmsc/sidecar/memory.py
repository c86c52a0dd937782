"""Giving memory freed at start-up back to the system.

Reading the configuration, importing and starting the engine leave free pages inside the C
library's malloc heap, which stay resident until the heap is trimmed; the sidecar trims once
it serves and after each reload (measured: about 0.3 MB of its resident memory). glibc has
`malloc_trim`; on a C library without it (musl) nothing happens.
"""

from __future__ import annotations

import ctypes
from typing import Any


def _malloc_trim() -> Any:
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


_MALLOC_TRIM = _malloc_trim()


def trim() -> bool:
    """Returns the free pages of every malloc arena to the system; True when some were."""
    if _MALLOC_TRIM is None:
        return False
    return bool(_MALLOC_TRIM(0))
