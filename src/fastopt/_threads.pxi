# Thread configuration: OpenMP detection, fork safety, the CPU cap and the thread-count rules, and
# run-time CPU feature detection (which ISA level's loop table the core may install).

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTOPT_OPENMP 1
    static int fastopt_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define FASTOPT_OPENMP 0
    static int fastopt_omp_max_threads(void) { return 1; }
    #endif

    /* Fork safety.  GNU OpenMP's thread pool does not survive fork(): a parallel region in the
       child waits forever for threads that do not exist.  As PyTorch does, a pthread_atfork
       child handler marks the process as forked, and fastopt then runs serially in it. */
    #if defined(__unix__) || defined(__APPLE__)
    #include <pthread.h>
    static volatile int fastopt_forked = 0;
    static void fastopt_atfork_child(void) { fastopt_forked = 1; }
    static int fastopt_register_atfork(void) {
        return pthread_atfork(NULL, NULL, fastopt_atfork_child);
    }
    #else
    static volatile int fastopt_forked = 0;
    static int fastopt_register_atfork(void) { return 0; }
    #endif

    /* Run-time CPU feature detection.  gcc/clang's __builtin_cpu_supports also checks that the
       OS saves the wide registers (XGETBV), so a "yes" here means the instructions will run. */
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    static int fastopt_cpu_supports(int level) {
        __builtin_cpu_init();
        if (level <= 0) return 1;
        if (level == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                            && __builtin_cpu_supports("f16c");
        if (level == 2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                            && __builtin_cpu_supports("f16c")
                            && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
                            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
        return 0;
    }
    #else
    static int fastopt_cpu_supports(int level) { return level <= 0; }
    #endif
    """
    int FASTOPT_OPENMP
    int fastopt_omp_max_threads() noexcept nogil
    int fastopt_cpu_supports(int level) noexcept nogil
    int fastopt_forked
    int fastopt_register_atfork() noexcept nogil


# ------------------------------------------------------------------------------------------------
# Configuration and thread counts.
#
# The CPU cap is the number of CPUs this process may use: its affinity mask
# (os.sched_getaffinity) and, in a container, the cgroup CPU quota (ceil(quota / period)).
# The rules (scikit-learn's _openmp_effective_n_threads, capped):
#   None  -> the library default set with set_num_threads, else OpenMP's (omp_get_max_threads:
#            OMP_NUM_THREADS, threadpoolctl limits), capped by the CPU cap;
#   n > 0 -> min(n, CPU cap): more threads than CPUs only oversubscribe, so counts are CLAMPED;
#   n < 0 -> CPU cap + 1 + n (-1: all usable CPUs), at least 1;
#   0     -> ValueError.
# A build without OpenMP, or a process forked from one that imported fastopt, uses 1 thread.
# ------------------------------------------------------------------------------------------------

import os as _os

OPENMP = bool(FASTOPT_OPENMP)

# Below this many elements in one call the light kernels (SGD, momentum, EWA, scaling) run on one
# thread: opening a parallel region costs ~1.2 us on the 2-core development machine, more than the
# whole update below this size.  The heavy rules (registry: a square root and a division per
# element) go parallel from a quarter of it.  Measured with `python -m fastopt bench --threshold`
# (2 threads start to win at ~32-46k elements for SGD/EWA and ~8k for Adam); see README
# "Threads".
cdef Py_ssize_t _serial_threshold = 32768

# Library default thread count; 0 means "ask OpenMP" (OMP_NUM_THREADS, threadpoolctl limits).
cdef int _default_threads = 0

if fastopt_register_atfork() != 0:   # pragma: no cover - only fails when out of memory
    raise ImportError("fastopt: pthread_atfork failed")


def _cgroup_cpu_limit():
    """ceil(quota / period) of the cgroup CPU quota (v2 cpu.max or v1 cfs), or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max" and int(period) > 0:
            return max(1, -(-int(quota) // int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if quota > 0 and period > 0:
            return max(1, -(-quota // period))
    except (OSError, ValueError):
        pass
    return None


def _usable_cpus():
    try:
        n = len(_os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = _os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, limit)
    return max(n, 1)


cdef int _cpu_cap = _usable_cpus()


def cpu_supports(int level):
    """True when this CPU (and OS) can run ISA level 0 (baseline), 1 (AVX2+FMA+F16C),
    2 (AVX-512 F/VL/BW/DQ, with F16C)."""
    return bool(fastopt_cpu_supports(level))


def _get_default_threads():
    return _default_threads


def _set_default_threads(int n):
    global _default_threads
    _default_threads = n


def _get_cpu_cap():
    return _cpu_cap


def _set_cpu_cap(int n):
    """Tests only: pretend this many CPUs are usable (to exercise odd thread splits)."""
    global _cpu_cap
    if n < 1:
        raise ValueError("the CPU cap must be >= 1")
    _cpu_cap = n


def _forked():
    return bool(fastopt_forked)


def _get_serial_threshold():
    return _serial_threshold


def _set_serial_threshold(Py_ssize_t n):
    global _serial_threshold
    if n < 0:
        raise ValueError("serial threshold must be >= 0")
    _serial_threshold = n


cdef int _threads(object n_threads) except -1:
    cdef int n
    if n_threads is None:
        if not FASTOPT_OPENMP or fastopt_forked:
            return 1
        n = _default_threads if _default_threads > 0 else fastopt_omp_max_threads()
        return n if n <= _cpu_cap else _cpu_cap
    if _is_boolish(n_threads) or not PyIndex_Check(n_threads):
        raise TypeError(f"n_threads must be an integer or None, got {type(n_threads).__name__}")
    k = n_threads.__index__()
    if k == 0:
        raise ValueError("n_threads must not be 0: use None for the default, "
                         "a positive count, or a negative one counted back from the CPU count")
    if k < 0:
        k = _cpu_cap + 1 + k
        if k < 1:
            k = 1
    if k > _cpu_cap:
        k = _cpu_cap
    if not FASTOPT_OPENMP or fastopt_forked:
        return 1
    return <int>k


def resolve_n_threads(n_threads=None):
    """The thread count a kernel called with `n_threads` would use (1 when built without OpenMP)."""
    return _threads(n_threads)

