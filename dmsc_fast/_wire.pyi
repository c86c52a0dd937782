"""Type stubs of the Cython extension ``dmsc_fast._wire``."""

CYTHON_VERSION: str
COMPILED: bool

# --- wire ---
