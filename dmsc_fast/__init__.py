"""dmsc_fast: the compiled core of dmsc.

Rust (``_native``, built with PyO3) holds the algorithms and shared state;
Cython (``_wire``) holds per-request data-plane code. This package is the
public API of both; the private modules may change without notice.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dmsc_fast import _native
from dmsc_fast._native import (
    DEFAULT_BUCKETS,
    EXPOSITION_CONTENT_TYPE,
    CircuitBreaker,
    ConcurrencyLimits,
    ConfigError,
    Counter,
    CounterFamily,
    Gauge,
    GaugeFamily,
    Gcra,
    Histogram,
    HistogramFamily,
    KetamaRing,
    LeastRequest,
    Maglev,
    ManualClock,
    Mesh,
    MeshCall,
    MeshSettings,
    PeakEwma,
    ProxyEngine,
    RandomPicker,
    Registry,
    RingHash,
    RoundRobin,
    SlidingLogLimiter,
    SlidingWindowLimiter,
    TokenBucket,
    WeightedRoundRobin,
    xxhash64,
)

if TYPE_CHECKING:
    from dmsc_fast._wire import (
        BufferChain,
        Pipe,
        SplicePump,
        splice_pump,
    )

# The Cython I/O module loads on first use: the sidecar process never needs it, and
# its resident memory counts against the sidecar's budget.
_WIRE_NAMES = frozenset({"BufferChain", "Pipe", "SplicePump", "splice_pump"})


def _wire_module() -> ModuleType:
    return importlib.import_module("dmsc_fast._wire")


def __getattr__(name: str) -> Any:
    if name in _WIRE_NAMES:
        return getattr(_wire_module(), name)
    raise AttributeError(f"module 'dmsc_fast' has no attribute {name!r}")


__version__: str = _native.__version__

__all__ = [
    "DEFAULT_BUCKETS",
    "EXPOSITION_CONTENT_TYPE",
    "BufferChain",
    "CircuitBreaker",
    "ConcurrencyLimits",
    "ConfigError",
    "Counter",
    "CounterFamily",
    "Gauge",
    "GaugeFamily",
    "Gcra",
    "Histogram",
    "HistogramFamily",
    "KetamaRing",
    "LeastRequest",
    "Maglev",
    "ManualClock",
    "Mesh",
    "MeshCall",
    "MeshSettings",
    "PeakEwma",
    "Pipe",
    "ProxyEngine",
    "RandomPicker",
    "Registry",
    "RingHash",
    "RoundRobin",
    "SlidingLogLimiter",
    "SlidingWindowLimiter",
    "SplicePump",
    "TokenBucket",
    "WeightedRoundRobin",
    "__version__",
    "build_info",
    "splice_pump",
    "xxhash64",
]


def _is_extension(module: Any) -> bool:
    return Path(getattr(module, "__file__", "") or "").suffix == ".so"


def build_info() -> dict[str, Any]:
    """Says which compiled parts are loaded and how they were built.

    ``rust`` and ``cython`` are true only when the compiled extension modules
    (not Python sources) are the ones imported; ``profile`` is the cargo
    profile of the Rust extension.
    """
    wire = _wire_module()
    return {
        "version": __version__,
        "rust": _is_extension(_native),
        "cython": _is_extension(wire) and bool(wire.COMPILED),
        "profile": _native.build_profile(),
        "cython_version": wire.CYTHON_VERSION,
        "native_module": _native.__file__,
        "wire_module": wire.__file__,
    }
