"""Type stubs of the PyO3 extension ``dmsc_fast._native``."""

from typing import Final

__version__: Final[str]

def build_profile() -> str: ...

class ManualClock:
    """A clock that moves only when told to; pass it as ``clock=`` in tests."""

    def __new__(cls, start: float = 0.0) -> ManualClock: ...
    def now(self) -> float: ...
    def advance(self, seconds: float) -> None: ...
    def set(self, seconds: float) -> None: ...

# --- hashing ---
# --- pickers ---
# --- metrics ---
# --- limits ---
# --- breaker ---
