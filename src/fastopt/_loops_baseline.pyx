# cython: language_level=3
# The baseline loop module: only loops, compiled with this level's flags (setup.py).  See _loops.pxi.

cdef const char* ISA_NAME = b"baseline"
cdef const char* ISA_FEATURES = b"SSE2"

include "_loops.pxi"
