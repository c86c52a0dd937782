"""dmsc_fast: the compiled core of dmsc.

Rust (``_native``, built with PyO3) holds the algorithms and shared state;
Cython (``_wire``) holds per-request data-plane code. This package is the
public API of both; the private modules may change without notice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmsc_fast import _native, _wire

# --- clock ---
from dmsc_fast._native import ManualClock

# --- hashing ---
# --- pickers ---
# --- metrics ---
# --- limits ---
# --- breaker ---
# --- wire ---

__version__: str = _native.__version__

__all__ = [
    "ManualClock",
    # --- hashing all ---
    # --- pickers all ---
    # --- metrics all ---
    # --- limits all ---
    # --- breaker all ---
    # --- wire all ---
    "build_info",
]


def _is_extension(module: Any) -> bool:
    return Path(getattr(module, "__file__", "") or "").suffix == ".so"


def build_info() -> dict[str, Any]:
    """Says which compiled parts are loaded and how they were built.

    ``rust`` and ``cython`` are true only when the compiled extension modules
    (not Python sources) are the ones imported; ``profile`` is the cargo
    profile of the Rust extension.
    """
    return {
        "version": __version__,
        "rust": _is_extension(_native),
        "cython": _is_extension(_wire) and bool(_wire.COMPILED),
        "profile": _native.build_profile(),
        "cython_version": _wire.CYTHON_VERSION,
        "native_module": _native.__file__,
        "wire_module": _wire.__file__,
    }
