# cython: language_level=3
"""fastopt's core extension, built once (baseline flags): everything but the element loops.

Rooms, in include order:

  _threads.pxi   OpenMP, fork safety, CPU cap, thread-count rules, CPU feature detection
  _checks.pxi    scalar checks (check_*), array checks, storage-type rules
  _driver.pxi    the installed loop table, segments, threads, peeling, the 16-bit block path
  _plan.pxi      segment tables, the overlap sweep, Plan, the multi-array call
  _hyper.pxi     per-rule scalar set-up (float64, once per call)
  _entry.pxi     the public kernels (single- and multi-array), rounding keywords
  _reduce.pxi    sums of squares, finiteness, scaling (clipping)
  _torch.pxi     TensorGrads: torch gradients bound into a Plan natively (fastopt.torch)
  _scan.pxi      the EWA of a series
  _gather.pxi    mini-batch gathers

The element loops live in the per-ISA modules fastopt._loops_<level>, which export a LoopTable
(_fastopt.h); fastopt._dispatch installs the best one the CPU supports with _install().  The
rules' facts (operands, options, names) come from fastopt._registry; the kernel index switch is
generated from it (_core_gen.pxi).
"""

cimport cython
from cython cimport floating
cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport pow
from libc.stdlib cimport malloc, free

import numpy as np

cnp.import_array()

include "_abi.pxi"
include "_core_gen.pxi"
include "_rules.pxi"

from cpython.object cimport PyObject
from cpython.number cimport PyIndex_Check, PyNumber_Check
from cpython.float cimport PyFloat_AsDouble, PyFloat_AS_DOUBLE
from libc.stdlib cimport qsort
from libc.string cimport memcpy
from cpython.weakref cimport PyWeakref_NewRef

cdef extern from "math.h":
    bint isfinite(double) nogil

include "_threads.pxi"
include "_checks.pxi"
include "_driver.pxi"
include "_plan.pxi"
include "_hyper.pxi"
include "_entry.pxi"
include "_reduce.pxi"
include "_torch.pxi"
include "_scan.pxi"
include "_gather.pxi"


# ------------------------------------------------------------------------------------------------
# The registry's facts the entry points use, read once at import.
# ------------------------------------------------------------------------------------------------

from . import _registry as _reg


def _load_registry():
    for r in _reg.RULES:
        names = _reg.operand_names(r)
        _NAMES.append(names)
        _NAMES7.append(names + ("",))
        needs, always = [], 0
        for slot, op in enumerate(r.operands):
            _PLURALS[op.name] = op.plural
            if op.needs is not None:
                o = _reg.option(r, op.needs)
                needs.append((slot, o.bit, op.name, o.when))
            elif slot >= 2:
                always |= 1 << slot
        _NEEDS.append(needs)
        _ALWAYS.append(always)
    if len(_NAMES) != N_RULES:
        raise ImportError("fastopt: _core was built from another registry: rebuild fastopt")


_load_registry()
RULES = tuple(r.name for r in _reg.RULES)
