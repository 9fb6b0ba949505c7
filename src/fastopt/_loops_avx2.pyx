# cython: language_level=3
# The avx2 loop module: only loops, compiled with this level's flags (setup.py).  See _loops.pxi.

cdef const char* ISA_NAME = b"avx2"
cdef const char* ISA_FEATURES = b"AVX2 FMA F16C"

include "_loops.pxi"
