"""Pick the kernels build for this CPU.

setup.py compiles ``_kernels.pxi`` once per instruction-set level.  At import we load the best
level the CPU (and OS) supports, as reported by ``__builtin_cpu_supports`` in the baseline build
(which runs everywhere).  ``FASTOPT_ISA=baseline|avx2|avx512`` forces a lower level; asking for a
level the CPU lacks, or one this build does not have, falls back to the best available one with a
warning rather than crashing with "Illegal instruction".

A module built for a level the CPU lacks is never imported: its import-time code may already use
the wider instructions.
"""

import importlib
import importlib.util
import os
import warnings

LEVELS = ("baseline", "avx2", "avx512")

_baseline = importlib.import_module("fastopt._kernels_baseline")


def _built(level):
    return importlib.util.find_spec(f"fastopt._kernels_{level}") is not None


def available():
    """The ISA levels that are both built and supported by this CPU, lowest first."""
    return [lv for i, lv in enumerate(LEVELS) if _baseline.cpu_supports(i) and _built(lv)]


def load(level):
    """Import and return the kernels module for `level` (ValueError if not available here)."""
    if level not in available():
        raise ValueError(f"ISA level {level!r} is not available on this machine; "
                         f"available: {available()}")
    return importlib.import_module(f"fastopt._kernels_{level}")


def _choose():
    avail = available()
    forced = os.environ.get("FASTOPT_ISA", "").strip().lower()
    if forced:
        if forced in avail:
            return forced
        warnings.warn(f"FASTOPT_ISA={forced!r} is not available here (available: {avail}); "
                      f"using {avail[-1]!r}", RuntimeWarning, stacklevel=3)
    return avail[-1]


ISA = _choose()
kernels = load(ISA)
