# cython: language_level=3
"""dmsc_fast._wire: per-request data-plane code compiled with Cython.

One extension that includes its parts (as uvloop does), so that the parts
can share cdef classes without Cython importing sibling modules by name.
"""

cimport cython

cdef extern from *:
    # Defined by every Cython-generated C file, e.g. "3_3_1".
    const char *CYTHON_ABI

CYTHON_VERSION = CYTHON_ABI.decode().replace("_", ".")
COMPILED = cython.compiled

include "buffers.pyx"
include "splice.pyx"
