"""dmsc_fast: the compiled core of dmsc.

Rust (``_native``, built with PyO3) holds the algorithms and shared state;
Cython (``_wire``) holds per-request data-plane code. This package is the
public API of both; the private modules may change without notice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmsc_fast import _native, _wire
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
from dmsc_fast._wire import (
    BufferChain,
    Pipe,
    SplicePump,
    splice_pump,
)

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
    return {
        "version": __version__,
        "rust": _is_extension(_native),
        "cython": _is_extension(_wire) and bool(_wire.COMPILED),
        "profile": _native.build_profile(),
        "cython_version": _wire.CYTHON_VERSION,
        "native_module": _native.__file__,
        "wire_module": _wire.__file__,
    }
