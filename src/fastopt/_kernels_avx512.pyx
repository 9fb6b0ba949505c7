# cython: language_level=3
# The avx512 build of the kernels: setup.py compiles this file with the avx512 instruction-set flags.
# All code lives in _kernels.pxi; this file only names the module.
include "_kernels.pxi"
