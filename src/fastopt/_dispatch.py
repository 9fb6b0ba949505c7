"""Pick the loop table for this CPU.

fastopt has ONE core extension (``fastopt._core``: checks, Plan, threads, reductions, gathers,
entry points) and one loop module per instruction-set level (``fastopt._loops_baseline``,
``_loops_avx2``, ``_loops_avx512``), built with that level's compiler flags.  Each loop module
exports a table of loop function pointers; at import we install the table of the best level the
CPU (and OS) supports, as reported by ``__builtin_cpu_supports`` in the core (built for the
baseline, it runs everywhere).  This is how NumPy's CPU dispatch works: only the loops are
compiled per target.

``FASTOPT_ISA=baseline|avx2|avx512`` forces a lower level; asking for a level the CPU lacks, or
one this build does not have, falls back to the best available one with a warning rather than
crashing with "Illegal instruction".  A loop module built for a level the CPU lacks is never
imported: its import-time code may already use the wider instructions.

``kernels`` is the core module (every public kernel).  ``load(level)`` returns a view of the core
that runs each call with `level`'s table (for tests and benchmarks that compare levels; it is not
thread-safe, as it swaps the installed table around each call).
"""

import contextlib
import functools
import importlib
import importlib.util
import os
import threading
import warnings

from . import _core

LEVELS = ("baseline", "avx2", "avx512")


def _built(level):
    return importlib.util.find_spec(f"fastopt._loops_{level}") is not None


def available():
    """The ISA levels that are both built and supported by this CPU, lowest first."""
    return [lv for i, lv in enumerate(LEVELS) if _core.cpu_supports(i) and _built(lv)]


def _module(level):
    if level not in available():
        raise ValueError(f"ISA level {level!r} is not available on this machine; "
                         f"available: {available()}")
    return importlib.import_module(f"fastopt._loops_{level}")


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
_TABLE = _module(ISA).table()      # the chosen level's table, reinstalled after a switch
_core._install(_TABLE)
kernels = _core

_switch_lock = threading.Lock()


@contextlib.contextmanager
def using(level):
    """Run the block with `level`'s loop table installed, then restore the chosen one.
    Tests and benchmarks only: the table is process-wide, so other threads see it too."""
    table = _module(level).table()
    with _switch_lock:
        _core._install(table)
        try:
            yield
        finally:
            _core._install(_TABLE)


class _Level:
    """The core's functions, each call run with one level's loop table (see ``load``)."""

    def __init__(self, level):
        self.level = level
        self._table = _module(level).table()

    def __getattr__(self, name):
        obj = getattr(_core, name)
        if not callable(obj) or isinstance(obj, type):
            return obj

        @functools.wraps(obj)
        def call(*args, **kwargs):
            with _switch_lock:
                _core._install(self._table)
                try:
                    return obj(*args, **kwargs)
                finally:
                    _core._install(_TABLE)
        return call

    def __repr__(self):
        return f"<fastopt kernels with the {self.level} loop table>"


def load(level):
    """The kernels with `level`'s loop table (ValueError if `level` is not available here)."""
    return _Level(level)
