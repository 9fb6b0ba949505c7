# cython: language_level=3
# The avx512 loop module: only loops, compiled with this level's flags (setup.py).  See _loops.pxi.

cdef const char* ISA_NAME = b"avx512"
cdef const char* ISA_FEATURES = b"AVX-512 F/VL/BW/DQ, F16C"

include "_loops.pxi"
