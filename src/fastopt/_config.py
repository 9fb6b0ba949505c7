"""Threads and build configuration: ``set_num_threads``, ``get_num_threads``, ``show_config``.

Thread-count rules (scikit-learn's ``_openmp_effective_n_threads``, capped):

* the **CPU cap** is the number of CPUs this process may use: its affinity mask
  (``os.sched_getaffinity``) and, in a container, the cgroup CPU quota (``ceil(quota/period)``),
  read at import.
* ``n_threads=None`` in a kernel means the library default: the count set with
  :func:`set_num_threads`, or else what OpenMP would use (``omp_get_max_threads()``), which follows
  ``OMP_NUM_THREADS`` and ``threadpoolctl.threadpool_limits(..., user_api="openmp")``; capped by the
  CPU cap.
* a positive count above the CPU cap is **clamped** to it (more threads than CPUs only
  oversubscribe; a huge count could not even be created).
* a negative count counts back from the CPU cap (-1: all usable CPUs), at least 1; 0 is an error.
* a build without OpenMP always uses 1 thread.
* after ``fork()`` the child runs serially: GNU OpenMP's thread pool does not survive fork, and a
  parallel region in the child would wait forever.  ``show_config()["forked"]`` says so.

Results never depend on the thread count: the updates are element-wise and bitwise reproducible.
"""

import platform

import numpy as np

from . import _build_info, _dispatch
from ._version import __version__


def set_num_threads(n):
    """Set the library's default thread count (None: back to following OpenMP's settings)."""
    if n is None:
        value = 0
    else:
        value = _dispatch.kernels.resolve_n_threads(n)
    _dispatch.kernels._set_default_threads(value)


def get_num_threads():
    """The thread count a kernel called with ``n_threads=None`` uses now."""
    return _dispatch.kernels.resolve_n_threads(None)


def get_serial_threshold():
    """Element count below which a kernel call runs on one thread (a quarter of it for Adam and
    RMSprop, whose square root and division make each element about 4x dearer)."""
    return _dispatch.kernels._get_serial_threshold()


def _set_cpu_cap(n):
    """Tests only: pretend `n` CPUs are usable (to exercise thread splits beyond this machine)."""
    _dispatch.kernels._set_cpu_cap(int(n))


def usable_cpus():
    """The CPU cap: CPUs this process may use (affinity mask and cgroup quota)."""
    return _dispatch.kernels._get_cpu_cap()


def set_serial_threshold(n):
    """Change the serial threshold (for measuring it; the default is the measured value)."""
    _dispatch.kernels._set_serial_threshold(int(n))


def show_config(print_=True):
    """Print (unless ``print_=False``) and return the build and runtime configuration as a dict."""
    cfg = {
        "version": __version__,
        "isa_available": _dispatch.available(),
        "isa_built": [lv for lv in _dispatch.LEVELS if _dispatch._built(lv)],
        "isa_in_use": _dispatch.ISA,
        "openmp": bool(_dispatch.kernels.OPENMP),
        "num_threads": get_num_threads(),
        "usable_cpus": usable_cpus(),
        "forked": bool(_dispatch.kernels._forked()),
        "serial_threshold": get_serial_threshold(),
        "isa_features": _dispatch.kernels._installed_level()[1],
        "compiler_flags": (f"core {getattr(_build_info, 'CORE_FLAGS', '')}; loops "
                           f"{_build_info.ISA_FLAGS.get(_dispatch.ISA, '')}"),
        "bfloat16": _dispatch.kernels.BFLOAT16 is not None,
        "numpy_version": np.__version__,
        "machine": platform.machine(),
    }
    if print_:
        print(config_line(cfg))
    return cfg


def config_line(cfg=None):
    """One line summarising show_config(), printed at the top of benchmark output."""
    cfg = cfg or show_config(print_=False)
    omp = "on" if cfg["openmp"] else "OFF (serial build)"
    if cfg.get("forked"):
        omp += ", SERIAL in this forked child"
    return (f"fastopt {cfg['version']} | ISA {cfg['isa_in_use']} (available: "
            f"{', '.join(cfg['isa_available'])}) | OpenMP {omp}, {cfg['num_threads']} threads | "
            f"serial below {cfg['serial_threshold']} elements ({cfg['serial_threshold'] // 4} for "
            f"Adam/RMSprop) | flags: {cfg['compiler_flags']} | "
            f"numpy {cfg['numpy_version']}")
