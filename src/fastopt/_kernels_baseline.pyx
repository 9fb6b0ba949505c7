# cython: language_level=3
# The baseline build of the kernels: setup.py compiles this file with the baseline instruction-set flags.
# All code lives in _kernels.pxi; this file only names the module.
include "_kernels.pxi"
