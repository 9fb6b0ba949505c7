# The Python-facing side of the kernels (included by _kernels.pxi, so compiled per ISA).
#
# Every public kernel does, in this order: validate the hyperparameters, validate every array
# (type, dtype, byte order, C-contiguity, alignment, writeability, shape, overlap), then compute
# the float64 scalars once and make one GIL-free call to _run.  Nothing is written before every
# check has passed, so a call that raises leaves all arrays untouched.
#
# The checks are C-level (NumPy C-API macros, no attribute lookups): one adam_step on 1-element
# arrays costs about as much as one np.add(a, b, out=a).

from cpython.object cimport PyObject
from cpython.number cimport PyIndex_Check, PyNumber_Check
from cpython.float cimport PyFloat_AsDouble, PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsSsize_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy

cdef extern from "math.h":
    bint isfinite(double) nogil

import os as _os

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

OPENMP = bool(FASTOPT_OPENMP)

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
    """True when this CPU (and OS) can run ISA level 0 (baseline), 1 (AVX2+FMA), 2 (AVX-512)."""
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


# ------------------------------------------------------------------------------------------------
# Scalar checks.  Exposed (check_*) so the Python layers validate with the same rules and words.
# ------------------------------------------------------------------------------------------------

# Step counts and counters must stay exact in float64 (bias corrections use them as exponents).
MAX_COUNT = 2 ** 53

cdef object _np_bool = np.bool_
cdef object _np_complex = np.complexfloating
cdef object _ndarray = np.ndarray


cdef inline bint _is_boolish(object x):
    return isinstance(x, bool) or isinstance(x, _np_bool)


cdef double _real(object x, str name) except? -1.0:
    """float(x) for a real number: Python or NumPy int/float, a 0-d real array, anything with
    __float__ that is not bool or complex.  Huge values give ValueError, never OverflowError."""
    cdef double d
    if type(x) is float:                       # the common cases first: no type walks
        return PyFloat_AS_DOUBLE(x)
    if type(x) is int and -9007199254740992 <= x <= 9007199254740992:
        return PyFloat_AsDouble(x)
    if (_is_boolish(x) or isinstance(x, complex) or isinstance(x, _np_complex)
            or isinstance(x, (str, bytes)) or not PyNumber_Check(x)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if isinstance(x, _ndarray) and ((<object>x).ndim != 0 or (<object>x).dtype.kind not in "iuf"):
        raise TypeError(f"{name} must be a real number, got an array of shape "
                        f"{(<object>x).shape} and dtype {(<object>x).dtype}")
    try:
        d = PyFloat_AsDouble(x)
    except OverflowError:
        raise ValueError(f"{name} is out of the float64 range: {x!r}") from None
    except TypeError:
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}") from None
    return d


cdef double _nonneg(object x, str name) except? -1.0:
    cdef double d = _real(x, name)
    if not (d >= 0.0) or not isfinite(d):
        raise ValueError(f"{name} must be a finite number >= 0, got {x!r}")
    return d


cdef double _beta(object x, str name) except? -1.0:
    cdef double d = _real(x, name)
    if not (0.0 <= d < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {x!r}")
    return d


cdef bint _bool(object x, str name) except -1:
    if x is True or x is False:
        return x is True
    if isinstance(x, _np_bool):
        return bool(x)
    raise TypeError(f"{name} must be True or False, got {x!r} ({type(x).__name__})")


cdef object _int(object x, str name, object low, object high):
    """x as a Python int: anything with __index__ except bool; low <= x < high (None: no
    bound).  TypeError for non-integers, ValueError out of range (never OverflowError)."""
    cdef object i
    if _is_boolish(x) or not PyIndex_Check(x):
        raise TypeError(f"{name} must be an integer, got {type(x).__name__}")
    i = x.__index__()
    if low is not None and i < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {i}")
    if high is not None and i >= high:
        raise ValueError(f"{name} must be an integer below {high}, got {i}")
    return i


cdef Py_ssize_t _step(object step) except -1:
    if type(step) is int and 1 <= step <= MAX_COUNT:   # the common case, no type walks
        return <Py_ssize_t>step
    if _is_boolish(step) or not PyIndex_Check(step):
        raise TypeError(f"step must be an integer >= 1 (the update count, from 1), "
                        f"got {type(step).__name__}")
    t = step.__index__()
    if t < 1 or t > MAX_COUNT:
        raise ValueError(f"step must be an integer in [1, 2**53] (the update count, from 1), "
                         f"got {t}")
    return <Py_ssize_t>t


def check_real(x, name):
    """Return float(x); TypeError naming `name` unless x is a real number (bool, complex and
    non-0-d arrays are not); ValueError when it is beyond the float64 range."""
    return _real(x, name)


def check_nonneg(x, name):
    """Return float(x); ValueError naming `name` unless x is finite and >= 0."""
    return _nonneg(x, name)


def check_beta(x, name):
    """Return float(x); ValueError naming `name` unless 0 <= x < 1."""
    return _beta(x, name)


def check_step(step):
    """Return int(step); TypeError/ValueError unless step is an integer in [1, 2**53]."""
    return _step(step)


def check_bool(x, name):
    """Return x as a bool; TypeError naming `name` unless it is ``bool`` or ``numpy.bool_``
    (never truthiness: ``"no"``, 0, 1 and None are refused)."""
    return _bool(x, name)


def check_int(x, name, low=None, high=None):
    """Return x as a Python int; TypeError naming `name` unless x has ``__index__`` and is not
    a bool; ValueError unless ``low <= x`` and ``x < high`` (None: unbounded)."""
    return _int(x, name, low, high)


def check_axis(axis, ndim, name="axis"):
    """Return `axis` normalised to [0, ndim); TypeError unless an integer, ValueError (naming the
    dimension count) when out of range."""
    cdef object ax = _int(axis, name, None, None)
    if not -ndim <= ax < ndim:
        raise ValueError(f"{name} {ax} is out of range for an array of {ndim} dimension(s)")
    return ax % ndim


# ------------------------------------------------------------------------------------------------
# Array checks.
# ------------------------------------------------------------------------------------------------

cdef str _name(tuple names, int i, object suffix):
    return names[i] if suffix is None else f"{names[i]}[{suffix!r}]"


cdef int _check_array(object obj, tuple names, int i, object suffix, bint writable,
                      object ref) except -1:
    """Check operand i of a call (names[i], with "[suffix]" in messages when given).  `ref` is
    operand 0 (None when obj is operand 0).  Messages are only built on failure."""
    cdef cnp.ndarray a, r
    cdef int t
    if not cnp.PyArray_Check(obj):
        raise TypeError(f"{_name(names, i, suffix)} must be a numpy.ndarray, "
                        f"got {type(obj).__name__}")
    a = <cnp.ndarray>obj
    if not cnp.PyArray_CheckExact(obj) and isinstance(obj, np.ma.MaskedArray):
        raise TypeError(f"{_name(names, i, suffix)} is a numpy.ma.MaskedArray: its mask would be "
                        f"ignored by an element-wise update; pass the .data array (and handle "
                        f"masked entries yourself)")
    t = cnp.PyArray_TYPE(a)
    if ref is None:
        if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
            raise TypeError(f"{_name(names, i, suffix)} must have dtype float32 or float64, "
                            f"got {a.dtype} (convert once, e.g. x = x.astype(np.float32), and "
                            f"keep using the converted array)")
    else:
        r = <cnp.ndarray>ref
        if t != cnp.PyArray_TYPE(r):
            raise TypeError(f"{_name(names, i, suffix)} has dtype {a.dtype} but "
                            f"{_name(names, 0, suffix)} has dtype {r.dtype}: "
                            f"all arrays of one update must share one dtype")
        if not cnp.PyArray_SAMESHAPE(a, r):
            raise ValueError(f"{_name(names, i, suffix)} has shape {(<object>a).shape} but "
                             f"{_name(names, 0, suffix)} has shape {(<object>r).shape}: "
                             f"all arrays of one update must share one shape")
    if not cnp.PyArray_ISNOTSWAPPED(a):
        raise TypeError(f"{_name(names, i, suffix)} must be in native byte order, "
                        f"got dtype {a.dtype.str}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{_name(names, i, suffix)} must be C-contiguous: fastopt updates arrays "
                         f"in place and never works on a copy; make the array contiguous once "
                         f"(x = np.ascontiguousarray(x)) and keep using that array")
    if not cnp.PyArray_ISALIGNED(a):
        raise ValueError(f"{_name(names, i, suffix)} must be aligned to its itemsize "
                         f"({a.itemsize} bytes)")
    if writable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{_name(names, i, suffix)} is read-only, but it is updated in place")
    return 0


cdef int _fill_seg(Seg* s, tuple names, int n, object o0, object o1, object o2=None,
                   object o3=None, object o4=None, int optional=0, object suffix=None) except -1:
    """Check the n operands of one update and fill segment s.  o0 is written, o1 read-only,
    o2.. written.  Slot i may be None when bit i of `optional` is set; a None slot repeats o0's
    pointer and is never touched by the kernel."""
    cdef PyObject* ops[MAX_OPS]
    cdef bint present[MAX_OPS]
    cdef Py_ssize_t nbytes
    cdef int i, j
    ops[0] = <PyObject*>o0; ops[1] = <PyObject*>o1; ops[2] = <PyObject*>o2
    ops[3] = <PyObject*>o3; ops[4] = <PyObject*>o4
    _check_array(o0, names, 0, suffix, True, None)
    for i in range(1, MAX_OPS):
        present[i] = i < n and <object>ops[i] is not None
        if i < n and not present[i] and not (optional >> i) & 1:
            _check_array(None, names, i, suffix, False, o0)  # raises the TypeError for None
        if present[i]:
            _check_array(<object>ops[i], names, i, suffix, i != 1, o0)
    present[0] = True
    s.n = cnp.PyArray_SIZE(<cnp.ndarray>o0)
    s.isz = cnp.PyArray_ITEMSIZE(<cnp.ndarray>o0)
    for i in range(MAX_OPS):
        s.a[i] = <char*>cnp.PyArray_DATA(<cnp.ndarray>(<object>ops[i] if present[i] else o0))
    nbytes = s.n * s.isz
    if nbytes > 0:
        for i in range(n):
            for j in range(i + 1, n):
                if (present[i] and present[j] and s.a[i] < s.a[j] + nbytes
                        and s.a[j] < s.a[i] + nbytes):
                    raise ValueError(f"{_name(names, i, suffix)} and {_name(names, j, suffix)} "
                                     f"overlap in memory: each array of an update must be its "
                                     f"own buffer")
    return 0


cdef class _Table:
    """A malloc'ed segment table for the multi-array kernels (freed with the object)."""
    cdef Seg* segs
    cdef Py_ssize_t n

    def __cinit__(self, Py_ssize_t n):
        self.n = n
        self.segs = <Seg*>malloc(max(n, 1) * sizeof(Seg))
        if self.segs == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.segs)


cdef str _plural(str name):
    # the keyword names of the multi-array entry points
    return "velocities" if name == "velocity" else name + "s"


cdef int _check_labels(object labels, Py_ssize_t n, str what) except -1:
    """labels (names used in messages) must be None or a list/tuple of one entry per array."""
    if labels is None:
        return 0
    if not isinstance(labels, (list, tuple)):
        raise TypeError(f"labels must be a list or tuple, got {type(labels).__name__}")
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries but {what} has {n}")
    return 0


cdef _Table _fill_table(tuple names, tuple lists, int optional=0, object labels=None):
    """Check the operands of k updates (lists[i][k] is operand i of update k; an optional
    operand's list may be None) and fill a segment table.  Raises before anything is written."""
    cdef Py_ssize_t k, off = 0, n
    cdef int i, nops = len(lists)
    cdef _Table tab
    for i in range(nops):
        if lists[i] is not None and not isinstance(lists[i], (list, tuple)):
            raise TypeError(f"{_plural(names[i])} must be a list or tuple of arrays, "
                            f"got {type(lists[i]).__name__}")
    n = len(lists[0])
    for i in range(1, nops):
        if lists[i] is not None and len(lists[i]) != n:
            raise ValueError(f"{_plural(names[i])} has {len(lists[i])} arrays but "
                             f"{_plural(names[0])} has {n}")
    l0 = lists[0]; l1 = lists[1]
    l2 = lists[2] if nops > 2 else None
    l3 = lists[3] if nops > 3 else None
    l4 = lists[4] if nops > 4 else None
    _check_labels(labels, n, _plural(names[0]))
    tab = _Table(n)
    for k in range(n):
        _fill_seg(&tab.segs[k], names, nops, l0[k], l1[k] if l1 is not None else None,
                  l2[k] if l2 is not None else None, l3[k] if l3 is not None else None,
                  l4[k] if l4 is not None else None, optional,
                  k if labels is None else labels[k])
        tab.segs[k].start = off
        off += tab.segs[k].n
    if n > 1:
        _check_disjoint(tab, names, lists, labels)
    return tab


ctypedef struct Interval:
    uintptr_t lo, hi
    int op         # operand index
    Py_ssize_t k   # array index


cdef int _cmp_interval(const void* a, const void* b) noexcept nogil:
    cdef uintptr_t x = (<const Interval*>a).lo, y = (<const Interval*>b).lo
    return -1 if x < y else (1 if x > y else 0)


cdef int _check_disjoint(_Table tab, tuple names, tuple lists, object labels) except -1:
    """Across the arrays of a multi call, no written buffer may overlap another buffer (two
    read-only gradients may).  Sort all intervals by start and sweep: O(N log N) in C."""
    cdef Py_ssize_t k, nb, cnt = 0, q
    cdef int i, nops = len(lists)
    cdef Interval* iv = <Interval*>malloc(max(tab.n * nops, 1) * sizeof(Interval))
    cdef Interval last_w, last_any
    cdef bint have_w = False, have_any = False
    cdef Interval* bad = NULL
    cdef Interval* other = NULL
    if iv == NULL:
        raise MemoryError()
    try:
        for k in range(tab.n):
            nb = tab.segs[k].n * tab.segs[k].isz
            if nb == 0:
                continue
            for i in range(nops):
                if lists[i] is None or lists[i][k] is None:
                    continue
                iv[cnt].lo = <uintptr_t>tab.segs[k].a[i]
                iv[cnt].hi = iv[cnt].lo + <uintptr_t>nb
                iv[cnt].op = i
                iv[cnt].k = k
                cnt += 1
        qsort(iv, cnt, sizeof(Interval), _cmp_interval)
        for q in range(cnt):
            # a written interval clashes with anything before it that reaches past its start;
            # a read-only one only with written ones
            if iv[q].op != 1 and have_any and iv[q].lo < last_any.hi:
                bad = &iv[q]; other = &last_any
                break
            if have_w and iv[q].lo < last_w.hi:
                bad = &iv[q]; other = &last_w
                break
            if not have_any or iv[q].hi > last_any.hi:
                last_any = iv[q]; have_any = True
            if iv[q].op != 1 and (not have_w or iv[q].hi > last_w.hi):
                last_w = iv[q]; have_w = True
        if bad != NULL:
            ka = other.k if labels is None else labels[other.k]
            kb = bad.k if labels is None else labels[bad.k]
            raise ValueError(f"{names[other.op]}[{ka!r}] and {names[bad.op]}[{kb!r}] overlap "
                             f"in memory: each array of an update must be its own buffer")
    finally:
        free(iv)
    return 0


cdef class Plan:
    """A checked, reusable segment table for arrays that live as long as an optimizer.

    ``Plan(params, names, state)`` checks the parameters (written in place) and the state lists
    (``state[j]`` is operand slot 2 + j: e.g. ``(ms, vs, v_maxs)`` for Adam, None for an unused
    slot) once, and that no two of them overlap.  Each step then only binds the gradients: they are
    checked against their parameter (dtype, shape, contiguity) and, by binary search in the sorted
    list of written buffers, for overlap with any of them.  That replaces re-checking every state
    array and sorting every buffer on every step (~0.25 us per parameter).

    The multi-array kernels accept a Plan in place of their parameter list (the state lists are
    then taken from the Plan and must be left out).

    Safety, at every step:

    * every parameter and state array is compared with what was checked (data pointer, size,
      contiguity, writeability): an array resized (``ndarray.resize(refcheck=False)``), whose
      memory moved, or made read-only since raises ValueError naming it, instead of writing
      into freed memory;
    * a second thread entering a call on the same Plan while one runs raises RuntimeError (the
      kernels release the GIL, and the segment table holds one call's gradient pointers);
    * ``count`` (the number of completed calls) is incremented in the same native call as the
      update, before control returns to Python code, so a KeyboardInterrupt can never leave the
      counter and the arrays disagreeing.
    """
    cdef _Table tab
    cdef list params
    cdef tuple names, keep
    cdef object labels
    cdef Interval* written
    cdef Py_ssize_t nw
    cdef readonly int present   # bit i set when operand slot i is filled
    cdef bint busy
    cdef long long _count

    property count:
        """Calls completed on this Plan (an optimizer's step count); settable (checkpoints)."""
        def __get__(self):
            return self._count

        def __set__(self, value):
            self._count = _int(value, "count", 0, MAX_COUNT)

    def __cinit__(self, list params, tuple names, tuple state, labels=None):
        cdef Py_ssize_t k, nb
        cdef int i, optional = 2
        lists = (params, None) + tuple(state) + (None,) * (3 - len(state))
        if len(names) != len(lists):
            raise ValueError("names must name the 5 operand slots")
        self.present = 1
        for i in range(2, 5):
            if lists[i] is None:
                optional |= 1 << i
            else:
                self.present |= 1 << i
        self.tab = _fill_table(names, lists, optional, labels)
        # private copies of the lists: a caller appending to its own list cannot desynchronise us
        lists = tuple(None if l is None else list(l) for l in lists)
        labels = None if labels is None else tuple(labels)
        self.params, self.names, self.labels, self.keep = lists[0], names, labels, lists
        self.written = <Interval*>malloc(max(self.tab.n * 4, 1) * sizeof(Interval))
        if self.written == NULL:
            raise MemoryError()
        self.nw = 0
        for k in range(self.tab.n):
            nb = self.tab.segs[k].n * self.tab.segs[k].isz
            for i in range(5):
                if i != 1 and nb > 0 and (self.present >> i) & 1:
                    self.written[self.nw].lo = <uintptr_t>self.tab.segs[k].a[i]
                    self.written[self.nw].hi = self.written[self.nw].lo + <uintptr_t>nb
                    self.written[self.nw].op = i
                    self.written[self.nw].k = k
                    self.nw += 1
        qsort(self.written, self.nw, sizeof(Interval), _cmp_interval)

    def __dealloc__(self):
        free(self.written)

    def __len__(self):
        return self.tab.n

    cdef inline int _recheck(self, cnp.ndarray a, Seg* s, int i, Py_ssize_t k) except -1:
        if (<char*>cnp.PyArray_DATA(a) == s.a[i] and cnp.PyArray_SIZE(a) == s.n
                and cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISWRITEABLE(a)):
            return 0
        label = k if self.labels is None else self.labels[k]
        if not cnp.PyArray_ISWRITEABLE(a):
            why = "has become read-only, but it is updated in place"
        else:
            why = ("has changed since the optimizer was built (resized, or its memory moved): "
                   "updating it would write into memory it no longer owns; build a new "
                   "optimizer for the new array")
        raise ValueError(f"{_name(self.names, i, label)} {why}")

    cdef int bind(self, object grads, int needed) except -1:
        """Check `grads` against the parameters and put them in operand slot 1."""
        cdef Py_ssize_t k, lo, hi, mid, n = self.tab.n
        cdef int i
        cdef uintptr_t g0, g1
        cdef object g, label
        cdef Seg* s
        if (needed & self.present) != needed:
            raise ValueError("this Plan lacks a state list the update needs")
        if not isinstance(grads, list):
            raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
        if len(<list>grads) != n:
            raise ValueError(f"grads has {len(<list>grads)} arrays but params has {n}")
        for k in range(n):
            g = (<list>grads)[k]
            s = &self.tab.segs[k]
            for i in range(5):
                if i != 1 and (self.present >> i) & 1:
                    self._recheck(<cnp.ndarray>(<list>self.keep[i])[k], s, i, k)
            label = k if self.labels is None else self.labels[k]
            _check_array(g, self.names, 1, label, False, self.params[k])
            s.a[1] = <char*>cnp.PyArray_DATA(<cnp.ndarray>g)
            if s.n == 0:
                continue
            g0 = <uintptr_t>s.a[1]
            g1 = g0 + <uintptr_t>(s.n * s.isz)
            # the first written buffer that ends after g0 is the only candidate to overlap
            lo, hi = 0, self.nw
            while lo < hi:
                mid = (lo + hi) // 2
                if self.written[mid].hi <= g0:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < self.nw and self.written[lo].lo < g1:
                other = (self.written[lo].k if self.labels is None
                         else self.labels[self.written[lo].k])
                raise ValueError(f"{_name(self.names, 1, label)} and "
                                 f"{_name(self.names, self.written[lo].op, other)} overlap in "
                                 f"memory: each array of an update must be its own buffer")
        return 0


cdef int _multi(int kid, Hyper* h, object params, object grads, tuple names, tuple state,
                int optional, object labels, int needed, object n_threads,
                long long expect=-1) except -1:
    """One multi-array call: from a Plan (binding the gradients; refused while another thread is
    inside a call on it; its count incremented with the update) or checked from scratch from the
    lists.  `expect`: the count the Plan must have (Adam's step - 1), or -1."""
    cdef Plan plan
    cdef _Table t
    cdef int nt = _threads(n_threads)
    if isinstance(params, Plan):
        for lst in state:
            if lst is not None:
                raise ValueError("with a Plan, leave the state lists out: the Plan holds them")
        plan = <Plan>params
        if plan.busy:
            raise RuntimeError("this optimizer (Plan) is already being stepped by another "
                               "thread: steps of one optimizer must not run concurrently")
        plan.busy = True
        try:
            if expect >= 0 and plan._count != expect:
                raise RuntimeError(f"step {expect + 1} was requested but this optimizer (Plan) "
                                   f"has completed {plan._count} steps: another thread stepped it "
                                   f"concurrently, or the step count is wrong")
            plan.bind(grads, needed)
            _call(kid, plan.tab.segs, plan.tab.n, h, nt)
            plan._count += 1
        finally:
            plan.busy = False
        return 0
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"{_plural(names[0])} must be a list of arrays or a Plan, "
                        f"got {type(params).__name__}")
    for i in range(len(state)):
        if state[i] is None and not (optional >> (i + 2)) & 1:
            raise TypeError(f"{_plural(names[i + 2])} must be a list or tuple of arrays, "
                            f"got NoneType")
    t = _fill_table(names, (params, grads) + state, optional, labels)
    _call(kid, t.segs, t.n, h, nt)
    return 0


cdef inline void _call(int kid, Seg* segs, Py_ssize_t nseg, Hyper* h, int nt):
    with nogil:
        _run(kid, segs, nseg, h, nt)


# ------------------------------------------------------------------------------------------------
# Hyperparameter set-up, one function per rule, shared by the single- and multi-array entry points.
# Each validates, fills the Hyper scalars (float64) and returns the kernel id.
# ------------------------------------------------------------------------------------------------

cdef void _zero(Hyper* h) noexcept:
    h.lr = 0; h.sign = 1; h.wd = 0; h.decay = 1; h.b1 = 0; h.omb1 = 1; h.b2 = 0; h.omb2 = 1
    h.c2 = 1; h.eps_in = 0; h.eps_out = 0; h.damp1 = 1; h.mom = 0


cdef int _sgd_hyper(Hyper* h, object lr, object weight_decay, object maximize) except -1:
    _zero(h)
    h.lr = _nonneg(lr, "lr")
    h.wd = _nonneg(weight_decay, "weight_decay")
    h.sign = -1.0 if _bool(maximize, "maximize") else 1.0
    return K_SGD | (O_L2 if h.wd != 0 else 0)


cdef int _momentum_hyper(Hyper* h, object lr, object beta, object dampening, object nesterov,
                         object weight_decay, object maximize) except -1:
    cdef double damp
    cdef bint nest = _bool(nesterov, "nesterov")
    _sgd_hyper(h, lr, weight_decay, maximize)
    h.b1 = _beta(beta, "beta")
    if dampening is None:
        damp = h.b1
    else:
        damp = _real(dampening, "dampening")
        if not (0.0 <= damp <= 1.0):
            raise ValueError(f"dampening must be in [0, 1] or None, got {dampening!r}")
    h.damp1 = 1.0 - damp
    return K_MOMENTUM | (O_L2 if h.wd != 0 else 0) | (O_NESTEROV if nest else 0)


cdef int _rmsprop_hyper(Hyper* h, object lr, object beta, object eps, object eps_inside_sqrt,
                        object weight_decay, object centered, object momentum,
                        object maximize) except -1:
    cdef double e
    cdef bint inside = _bool(eps_inside_sqrt, "eps_inside_sqrt")
    cdef bint cent = _bool(centered, "centered")
    _sgd_hyper(h, lr, weight_decay, maximize)
    h.b1 = _beta(beta, "beta")
    h.omb1 = 1.0 - h.b1
    e = _nonneg(eps, "eps")
    if inside:
        h.eps_in = e
    else:
        h.eps_out = e
    h.mom = _nonneg(momentum, "momentum")
    return (K_RMSPROP | (O_L2 if h.wd != 0 else 0) | (O_CENTERED if cent else 0)
            | (O_MOMENTUM if h.mom > 0 else 0))


cdef int _adam_hyper(Hyper* h, object step, object lr, object beta1, object beta2, object eps,
                     object eps_inside_sqrt, object weight_decay, object decoupled_weight_decay,
                     object amsgrad, object maximize) except -1:
    cdef Py_ssize_t t = _step(step)
    cdef bint inside = _bool(eps_inside_sqrt, "eps_inside_sqrt")
    cdef bint decoupled = _bool(decoupled_weight_decay, "decoupled_weight_decay")
    cdef bint ams = _bool(amsgrad, "amsgrad")
    cdef bint maxim = _bool(maximize, "maximize")
    cdef double lr_, wd, e
    _zero(h)
    lr_ = _nonneg(lr, "lr")
    h.b1 = _beta(beta1, "beta1")
    h.b2 = _beta(beta2, "beta2")
    e = _nonneg(eps, "eps")
    wd = _nonneg(weight_decay, "weight_decay")
    h.sign = -1.0 if maxim else 1.0
    h.omb1 = 1.0 - h.b1
    h.omb2 = 1.0 - h.b2
    # Bias corrections and the step size in float64, once per call (never per element).
    h.lr = lr_ / (1.0 - pow(h.b1, <double>t))
    h.c2 = 1.0 / (1.0 - pow(h.b2, <double>t))
    if inside:
        h.eps_in = e
    else:
        h.eps_out = e
    if decoupled:
        h.decay = 1.0 - lr_ * wd
    else:
        h.wd = wd
    return K_ADAM | (O_L2 if h.wd != 0 else 0) | (O_AMSGRAD if ams else 0)


cdef int _ewa_hyper(Hyper* h, object beta) except -1:
    _zero(h)
    h.b1 = _beta(beta, "beta")
    h.omb1 = 1.0 - h.b1
    return K_EWA


_ADAM_NAMES = ("param", "grad", "m", "v", "v_max")
_RMSPROP_NAMES = ("param", "grad", "sq_avg", "grad_avg", "momentum_buf")
cdef enum:
    _OPT3 = 8    # operand slot 3 may be None
    _OPT4 = 16   # operand slot 4 may be None


# ------------------------------------------------------------------------------------------------
# Public single-array kernels.
# ------------------------------------------------------------------------------------------------

_NOTE = """
    All arrays: float32 or float64 (one dtype per call), any shape (one shape per call, treated
    as flat), C-contiguous, aligned, in native byte order, each its own buffer.  `grad` may be
    read-only; the other arrays are updated in place.  The function returns None.

    Scalars (bias corrections, step sizes) are computed once per call in float64 and rounded to
    the array dtype.  NaN and Inf in `grad` are not checked: they propagate through the formula to
    the parameter and the state, as in PyTorch.  Results are bitwise identical for every
    `n_threads`.

    Raises TypeError (not an ndarray, unsupported or mixed dtypes) or ValueError (shape mismatch,
    non-contiguous or read-only array, overlapping arrays, hyperparameter out of range) before any
    array is written.
"""


def sgd_step(param, grad, *, lr, weight_decay=0.0, maximize=False, n_threads=None):
    cdef Hyper h
    cdef Seg s
    cdef int kid = _sgd_hyper(&h, lr, weight_decay, maximize)
    _fill_seg(&s, ("param", "grad"), 2, param, grad)
    s.start = 0
    _call(kid, &s, 1, &h, _threads(n_threads))


sgd_step.__doc__ = """Plain (mini-batch) gradient descent, in place.

    .. math::
        g \\leftarrow \\pm\\,\\mathrm{grad} + \\lambda\\,\\theta \\qquad
        \\theta \\leftarrow \\theta - \\eta\\, g

    Parameters
    ----------
    param : ndarray, updated in place.
    grad : ndarray, read only.
    lr : float >= 0, the learning rate eta.
    weight_decay : float >= 0, L2 coefficient lambda added to the gradient (the course's
        ``(lambda/m) W`` term; PyTorch SGD's ``weight_decay``).
    maximize : bool, ascend instead of descend (g = -grad).
    n_threads : int or None, None for the library default (see ``fastopt.set_num_threads``).
""" + _NOTE


def momentum_step(param, grad, velocity, *, lr, beta=0.9, dampening=None, nesterov=False,
                  weight_decay=0.0, maximize=False, n_threads=None):
    cdef Hyper h
    cdef Seg s
    cdef int kid = _momentum_hyper(&h, lr, beta, dampening, nesterov, weight_decay, maximize)
    _fill_seg(&s, ("param", "grad", "velocity"), 3, param, grad, velocity)
    s.start = 0
    _call(kid, &s, 1, &h, _threads(n_threads))


momentum_step.__doc__ = """Gradient descent with momentum, in place.

    .. math::
        v \\leftarrow \\beta v + (1 - d)\\, g \\qquad
        \\theta \\leftarrow \\theta - \\eta\\, v
        \\quad(\\text{nesterov: } \\theta \\leftarrow \\theta - \\eta\\,(g + \\beta v))

    where g is the gradient (negated when maximizing, plus ``weight_decay * param``).

    Conventions: ``dampening=None`` (default) means d = beta, the course's exponentially weighted
    average ``v = beta v + (1 - beta) dW``.  ``dampening=0`` is heavy-ball momentum
    ``v = beta v + g``, as PyTorch's SGD once its buffer exists (PyTorch's first step sets
    ``v = g``; ``fastopt.SGD`` reproduces that by passing ``dampening=0`` on its first step).
    Keras' ``v = mu v - lr g`` is the same trajectory as ``dampening=0`` with the lr folded in.

    Parameters
    ----------
    param, velocity : ndarray, updated in place.
    grad : ndarray, read only.
    lr : float >= 0.   beta : float in [0, 1).   dampening : float in [0, 1] or None.
    nesterov : bool.   weight_decay : float >= 0 (L2, added to the gradient).   maximize : bool.
    n_threads : int or None.
""" + _NOTE


def rmsprop_step(param, grad, sq_avg, *, lr, beta=0.9, eps=1e-8, eps_inside_sqrt=False,
                 weight_decay=0.0, centered=False, grad_avg=None, momentum=0.0,
                 momentum_buf=None, maximize=False, n_threads=None):
    cdef Hyper h
    cdef Seg s
    cdef int kid = _rmsprop_hyper(&h, lr, beta, eps, eps_inside_sqrt, weight_decay, centered,
                                  momentum, maximize)
    _rmsprop_state_args(centered, grad_avg, h.mom > 0, momentum_buf, "")
    _fill_seg(&s, _RMSPROP_NAMES, 5, param, grad, sq_avg, grad_avg, momentum_buf,
              (0 if centered else _OPT3) | (0 if h.mom > 0 else _OPT4))
    s.start = 0
    _call(kid, &s, 1, &h, _threads(n_threads))


cdef int _rmsprop_state_args(bint centered, object grad_avg, bint use_momentum,
                             object momentum_buf, str s) except -1:
    if centered and grad_avg is None:
        raise ValueError(f"centered=True needs grad_avg{s} (an array like param, zero at start)")
    if not centered and grad_avg is not None:
        raise ValueError(f"grad_avg{s} is only used with centered=True")
    if use_momentum and momentum_buf is None:
        raise ValueError(f"momentum > 0 needs momentum_buf{s} (an array like param, zero at start)")
    if not use_momentum and momentum_buf is not None:
        raise ValueError(f"momentum_buf{s} is only used with momentum > 0")
    return 0


rmsprop_step.__doc__ = """RMSprop, in place.

    .. math::
        s \\leftarrow \\beta s + (1-\\beta)\\, g^2 \\qquad
        \\theta \\leftarrow \\theta - \\eta\\, \\frac{g}{\\sqrt{s} + \\epsilon}

    - ``eps_inside_sqrt=False`` (default): denominator ``sqrt(sq_avg) + eps`` (PyTorch).
      ``eps_inside_sqrt=True``: ``sqrt(sq_avg + eps)`` (the course slides, Keras).
    - ``centered=True``: ``grad_avg <- beta grad_avg + (1 - beta) g`` and ``sq_avg - grad_avg**2``
      goes under the root (PyTorch ``centered``); needs ``grad_avg``.
    - ``momentum > 0``: ``momentum_buf <- momentum momentum_buf + g/denom`` and
      ``param -= lr momentum_buf`` (PyTorch); needs ``momentum_buf``.
    - g is the gradient, negated when maximizing, plus ``weight_decay * param`` (L2).

    Defaults: beta (PyTorch's ``alpha``, Keras' ``rho``) is 0.9 as in the course and Keras;
    PyTorch's default is 0.99.

    Parameters
    ----------
    param, sq_avg, grad_avg, momentum_buf : ndarray, updated in place.
    grad : ndarray, read only.
    lr : float >= 0.   beta : float in [0, 1).   eps : float >= 0.
    n_threads : int or None.
""" + _NOTE


def adam_step(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              eps_inside_sqrt=False, weight_decay=0.0, decoupled_weight_decay=False,
              amsgrad=False, v_max=None, maximize=False, n_threads=None):
    cdef Hyper h
    cdef Seg s
    cdef int kid = _adam_hyper(&h, step, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay,
                               decoupled_weight_decay, amsgrad, maximize)
    _adam_state_args(amsgrad, v_max, "")
    _fill_seg(&s, _ADAM_NAMES, 5, param, grad, m, v, v_max, 0 if amsgrad else _OPT4)
    s.start = 0
    _call(kid, &s, 1, &h, _threads(n_threads))


cdef int _adam_state_args(bint amsgrad, object v_max, str s) except -1:
    if amsgrad and v_max is None:
        raise ValueError(f"amsgrad=True needs v_max{s} (an array like param, zero at start)")
    if not amsgrad and v_max is not None:
        raise ValueError(f"v_max{s} is only used with amsgrad=True")
    return 0


adam_step.__doc__ = """Adam (and AdamW, AMSGrad), in place.

    .. math::
        m \\leftarrow \\beta_1 m + (1-\\beta_1) g \\qquad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2 \\\\
        \\hat m = \\frac{m}{1-\\beta_1^t} \\qquad \\hat v = \\frac{v}{1-\\beta_2^t} \\qquad
        \\theta \\leftarrow \\theta - \\eta\\,\\frac{\\hat m}{\\sqrt{\\hat v} + \\epsilon}

    - ``eps_inside_sqrt=False`` (default): ``sqrt(v_hat) + eps``, as the course's programming
      assignment, the Adam paper and ``torch.optim.Adam`` (Keras' "epsilon hat" differs by a
      factor ``sqrt(1 - beta2**t)`` on eps).  ``eps_inside_sqrt=True``: ``sqrt(v_hat + eps)``,
      as the course slides (optax's ``eps_root``).
    - ``weight_decay`` with ``decoupled_weight_decay=False``: L2, ``g += weight_decay * param``
      (``torch.optim.Adam``).  With ``decoupled_weight_decay=True``:
      ``param *= 1 - lr * weight_decay`` before the update (``torch.optim.AdamW``).
    - ``amsgrad=True``: ``v_max <- max(v_max, v)`` on the raw ``v``, then bias-corrected and used
      in place of ``v`` (PyTorch's form); needs ``v_max``.
    - ``maximize=True``: g = -grad.

    Parameters
    ----------
    param, m, v, v_max : ndarray, updated in place (m, v, v_max start at zero).
    grad : ndarray, read only.
    step : int >= 1, the number of this update (t above), counted from 1.
    lr : float >= 0.   beta1, beta2 : float in [0, 1).   eps : float >= 0.
    n_threads : int or None.
""" + _NOTE


def ewa_update(avg, value, *, beta, n_threads=None):
    cdef Hyper h
    cdef Seg s
    cdef int kid = _ewa_hyper(&h, beta)
    _fill_seg(&s, ("avg", "value"), 2, avg, value)
    s.start = 0
    _call(kid, &s, 1, &h, _threads(n_threads))


ewa_update.__doc__ = """One step of an exponentially weighted average, in place.

    .. math::
        \\mathrm{avg} \\leftarrow \\beta\\,\\mathrm{avg} + (1-\\beta)\\,\\mathrm{value}

    Starting from ``avg = 0`` this averages over about ``1 / (1 - beta)`` values; divide by
    ``1 - beta**t`` (``fastopt.debias``) to remove the start-up bias.

    Parameters
    ----------
    avg : ndarray, updated in place.   value : ndarray, read only (may be read-only).
    beta : float in [0, 1).   n_threads : int or None.
""" + _NOTE.replace("`grad`", "`value`")


def same_traffic_step(written, value, *state, n_threads=None):
    """The same-traffic reference kernel (benchmarks only).

    Reads `value` and every written array, and writes ``x += value`` to `written` and each array
    in `state`: the same bytes an update with that many written arrays moves (Adam: written=param,
    state=(m, v) -> 4 reads, 3 writes), with trivial arithmetic, through the same driver (threads,
    64-byte peeling).  A kernel's time divided by this one's is how close it runs to the memory
    limit.
    """
    cdef Hyper h
    cdef Seg s
    cdef int n_rw = 1 + len(state)
    if n_rw > 4:
        raise ValueError("same_traffic_step takes at most 3 state arrays")
    _zero(&h)
    _fill_seg(&s, ("written", "value", "state[0]", "state[1]", "state[2]"), 1 + n_rw,
              written, value, state[0] if n_rw > 1 else None, state[1] if n_rw > 2 else None,
              state[2] if n_rw > 3 else None)
    s.start = 0
    _call(K_TRAFFIC + n_rw, &s, 1, &h, _threads(n_threads))


# ------------------------------------------------------------------------------------------------
# Multi-array entry points: one native call for a list of arrays (used by the optimizer classes).
# Threads are balanced over the total element count, not over arrays.  Arrays in one call may
# differ in shape and dtype; within each index k the operands share shape and dtype.
# ------------------------------------------------------------------------------------------------

def sgd_step_multi(params, grads, *, lr, weight_decay=0.0, maximize=False, n_threads=None,
                   labels=None):
    """`sgd_step` over lists of arrays (or a Plan) in one call: the same result as a loop of
    sgd_step calls."""
    cdef Hyper h
    cdef int kid = _sgd_hyper(&h, lr, weight_decay, maximize)
    _multi(kid, &h, params, grads, ("param", "grad"), (), 0, labels, 0, n_threads)


def momentum_step_multi(params, grads, velocities=None, *, lr, beta=0.9, dampening=None,
                        nesterov=False, weight_decay=0.0, maximize=False, n_threads=None,
                        labels=None):
    """`momentum_step` over lists of arrays (or a Plan) in one call."""
    cdef Hyper h
    cdef int kid = _momentum_hyper(&h, lr, beta, dampening, nesterov, weight_decay, maximize)
    _multi(kid, &h, params, grads, ("param", "grad", "velocity"), (velocities,), 0, labels, 4,
           n_threads)


def rmsprop_step_multi(params, grads, sq_avgs=None, *, lr, beta=0.9, eps=1e-8,
                       eps_inside_sqrt=False, weight_decay=0.0, centered=False, grad_avgs=None,
                       momentum=0.0, momentum_bufs=None, maximize=False, n_threads=None,
                       labels=None):
    """`rmsprop_step` over lists of arrays (or a Plan) in one call."""
    cdef Hyper h
    cdef int kid = _rmsprop_hyper(&h, lr, beta, eps, eps_inside_sqrt, weight_decay, centered,
                                  momentum, maximize)
    if not isinstance(params, Plan):
        _rmsprop_state_args(centered, grad_avgs, h.mom > 0, momentum_bufs, "s")
    _multi(kid, &h, params, grads, _RMSPROP_NAMES, (sq_avgs, grad_avgs, momentum_bufs),
           (0 if centered else _OPT3) | (0 if h.mom > 0 else _OPT4), labels,
           4 | (8 if centered else 0) | (16 if h.mom > 0 else 0), n_threads)


def adam_step_multi(params, grads, ms=None, vs=None, *, step=None, lr=1e-3, beta1=0.9, beta2=0.999,
                    eps=1e-8, eps_inside_sqrt=False, weight_decay=0.0,
                    decoupled_weight_decay=False, amsgrad=False, v_maxs=None, maximize=False,
                    n_threads=None, labels=None):
    """`adam_step` over lists of arrays (or a Plan) in one call.

    With a Plan, `step` may be left out: the Plan's ``count + 1`` is used.  A `step` given with a
    Plan must equal ``count + 1`` (else RuntimeError: the step count went out of sync, e.g. two
    threads stepping one optimizer)."""
    cdef Hyper h
    cdef int kid
    cdef long long expect = -1
    if isinstance(params, Plan):
        if step is None:
            step = (<Plan>params)._count + 1
        expect = _step(step) - 1
    elif step is None:
        raise TypeError("adam_step_multi needs step= (the update count, from 1)")
    kid = _adam_hyper(&h, step, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay,
                      decoupled_weight_decay, amsgrad, maximize)
    if not isinstance(params, Plan):
        _adam_state_args(amsgrad, v_maxs, "s")
    _multi(kid, &h, params, grads, _ADAM_NAMES, (ms, vs, v_maxs), 0 if amsgrad else _OPT4, labels,
           4 | 8 | (16 if amsgrad else 0), n_threads, expect)


def ewa_update_multi(avgs, values, *, beta, n_threads=None, labels=None):
    """`ewa_update` over lists of arrays (or a Plan over the averages) in one call."""
    cdef Hyper h
    cdef int kid = _ewa_hyper(&h, beta)
    _multi(kid, &h, avgs, values, ("avg", "value"), (), 0, labels, 0, n_threads)


# ------------------------------------------------------------------------------------------------
# EWA of a series (a scan along one axis): the data layer is 2-D (T steps x K series) with any
# strides, so callers pass views, never copies of an output.
# ------------------------------------------------------------------------------------------------

cdef void _scan(const floating* x, Py_ssize_t xt, Py_ssize_t xk, floating* y, Py_ssize_t yt,
                Py_ssize_t yk, Py_ssize_t T, Py_ssize_t k0, Py_ssize_t k1, floating beta,
                floating omb, const floating* corr, floating* avg) noexcept nogil:
    """Scan columns [k0, k1): avg <- beta avg + (1-beta) x[t]; y[t] = avg (/ corr[t])."""
    cdef Py_ssize_t t, k
    cdef floating a
    if xt == 1 or k1 - k0 == 1:
        # each series contiguous (or just one): one series at a time
        for k in range(k0, k1):
            a = 0
            for t in range(T):
                a = _ewa_elem(a, x[t * xt + k * xk], beta, omb)
                y[t * yt + k * yk] = a / corr[t] if corr != NULL else a
    else:
        # series side by side: a row of running averages, vectorised across the series
        for k in range(k0, k1):
            avg[k] = 0
        for t in range(T):
            for k in range(k0, k1):
                avg[k] = _ewa_elem(avg[k], x[t * xt + k * xk], beta, omb)
                y[t * yt + k * yk] = avg[k] / corr[t] if corr != NULL else avg[k]


cdef void _scan_all(const floating* x, Py_ssize_t xt, Py_ssize_t xk, floating* y,
                    Py_ssize_t yt, Py_ssize_t yk, Py_ssize_t T, Py_ssize_t K, double beta,
                    bint bias_correction, int nt) noexcept nogil:
    cdef floating* corr = NULL
    cdef floating* avg = <floating*>malloc(max(K, 1) * sizeof(floating))
    cdef Py_ssize_t t, c, nc
    if bias_correction:
        corr = <floating*>malloc(max(T, 1) * sizeof(floating))
        for t in range(T):
            corr[t] = <floating>(1.0 - pow(beta, <double>(t + 1)))
    nc = nt if (nt > 1 and T * K >= _serial_threshold and K > 1) else 1
    if nc > K:
        nc = K
    if nc == 1:
        _scan(x, xt, xk, y, yt, yk, T, 0, K, <floating>beta, <floating>(1.0 - beta), corr, avg)
    else:
        for c in prange(nc, num_threads=nc, schedule="static"):
            _scan(x, xt, xk, y, yt, yk, T, (K * c) // nc, (K * (c + 1)) // nc,
                  <floating>beta, <floating>(1.0 - beta), corr, avg)
    free(avg)
    free(corr)


def _ewa_scan(cnp.ndarray x, cnp.ndarray y, beta, bint bias_correction, n_threads=None):
    """Private: x, y are 2-D (T, K) views of one dtype; y[t, k] gets the EWA of x[:t+1, k]."""
    cdef double b = _beta(beta, "beta")
    cdef int nt = _threads(n_threads)
    cdef Py_ssize_t isz, T, K, xt, xk, yt, yk
    cdef int tx = cnp.PyArray_TYPE(x)
    if (x.ndim != 2 or y.ndim != 2 or tx != cnp.PyArray_TYPE(y)
            or (tx != cnp.NPY_FLOAT and tx != cnp.NPY_DOUBLE)
            or x.shape[0] != y.shape[0] or x.shape[1] != y.shape[1]):
        raise ValueError("_ewa_scan: x and y must be 2-D float32/float64 views of one shape and "
                         "dtype")
    isz = x.itemsize
    for a, what in ((x, "series"), (y, "out")):
        if (not cnp.PyArray_ISALIGNED(a) or not cnp.PyArray_ISNOTSWAPPED(a)
                or a.strides[0] % isz != 0 or a.strides[1] % isz != 0):
            raise ValueError(f"{what} must be aligned, in native byte order, with strides that "
                             f"are multiples of its itemsize (a structured-field view is not)")
    if not cnp.PyArray_ISWRITEABLE(y):
        raise ValueError("out is read-only")
    T = x.shape[0]; K = x.shape[1]
    xt = x.strides[0] // isz; xk = x.strides[1] // isz
    yt = y.strides[0] // isz; yk = y.strides[1] // isz
    if T == 0 or K == 0:
        return
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            _scan_all(<const float*>cnp.PyArray_DATA(x), xt, xk, <float*>cnp.PyArray_DATA(y),
                      yt, yk, T, K, b, bias_correction, nt)
    else:
        with nogil:
            _scan_all(<const double*>cnp.PyArray_DATA(x), xt, xk, <double*>cnp.PyArray_DATA(y),
                      yt, yk, T, K, b, bias_correction, nt)


# ------------------------------------------------------------------------------------------------
# Gradient clipping and finiteness: reductions over many arrays in one native pass.
# ------------------------------------------------------------------------------------------------

cdef double* _block_reduce(int what, list arrays, bint writable, object labels, int nt,
                           Py_ssize_t* nblocks) except NULL:
    """Validate `arrays` (float32/float64, C-contiguous; dtypes may differ between arrays), cut
    them into fixed blocks and reduce each block.  Returns a malloc'ed array of block results."""
    cdef Py_ssize_t k, nb = 0, b, n, isz, off
    cdef Block* blocks
    cdef double* out
    cdef cnp.ndarray a
    _check_labels(labels, len(arrays), "the array list")
    for k in range(len(arrays)):
        _check_array(arrays[k], ("grad",), 0, k if labels is None else labels[k], writable, None)
        nb += (cnp.PyArray_SIZE(<cnp.ndarray>arrays[k]) + REDUCE_BLOCK - 1) // REDUCE_BLOCK
    blocks = <Block*>malloc(max(nb, 1) * sizeof(Block))
    out = <double*>malloc(max(nb, 1) * sizeof(double))
    if blocks == NULL or out == NULL:
        free(blocks); free(out)
        raise MemoryError()
    b = 0
    for k in range(len(arrays)):
        a = <cnp.ndarray>arrays[k]
        n = cnp.PyArray_SIZE(a)
        isz = cnp.PyArray_ITEMSIZE(a)
        off = 0
        while off < n:
            blocks[b].x = <const char*>cnp.PyArray_DATA(a) + off * isz
            blocks[b].n = min(<Py_ssize_t>REDUCE_BLOCK, n - off)
            blocks[b].isz = isz
            off += REDUCE_BLOCK
            b += 1
    with nogil:
        _reduce(what, blocks, nb, out, nt)
    free(blocks)
    nblocks[0] = nb
    return out


def sumsq_multi(list arrays, *, n_threads=None, labels=None, bint writable=False):
    """Sum of squares of every element of every array, accumulated in float64.

    Deterministic: the same value for every thread count (fixed blocks summed in order).
    With writable=True the arrays are also checked to be writeable (for clipping)."""
    cdef Py_ssize_t nb, b
    cdef double total = 0.0
    cdef double* out = _block_reduce(0, arrays, writable, labels, _threads(n_threads), &nb)
    for b in range(nb):
        total += out[b]
    free(out)
    return total


def all_finite_multi(list arrays, *, n_threads=None, labels=None):
    """True when no array holds a NaN or an Inf (one read pass, no temporary arrays)."""
    cdef Py_ssize_t nb, b
    cdef bint ok = True
    cdef double* out = _block_reduce(1, arrays, False, labels, _threads(n_threads), &nb)
    for b in range(nb):
        ok = ok and out[b] != 0.0
    free(out)
    return ok


def scale_multi(list arrays, factor, *, n_threads=None, labels=None):
    """x <- factor * x for every array, in place, in one native call (factor rounded once to
    each array's dtype)."""
    cdef Hyper h
    cdef _Table t
    _zero(&h)
    h.lr = _real(factor, "factor")
    t = _fill_table(("array", "unused"), (arrays, None), 2, labels)
    _call(K_SCALE, t.segs, t.n, &h, _threads(n_threads))


def check_param_arrays(list arrays, labels=None):
    """Validate arrays an optimizer will update in place (float32/float64, C-contiguous, aligned,
    writeable, native byte order); raise TypeError/ValueError naming the offending one."""
    cdef Py_ssize_t k
    _check_labels(labels, len(arrays), "params")
    for k in range(len(arrays)):
        _check_array(arrays[k], ("param",), 0, k if labels is None else labels[k], True, None)


# ------------------------------------------------------------------------------------------------
# Mini-batch gathers (fastopt.MiniBatches).  Bytes are copied as they are, so any dtype works.
# ------------------------------------------------------------------------------------------------

ctypedef fused item_t:
    unsigned char
    unsigned short
    unsigned int
    unsigned long long


cdef int _check_gather(cnp.ndarray x, cnp.ndarray idx, Py_ssize_t m, str what) except -1:
    # bytes are copied as they are: never for reference-counted items (object arrays), whose
    # copies would hold pointers without references (a use-after-free once x is gone)
    if x.dtype.hasobject:
        raise TypeError(f"{what} holds Python objects (dtype {x.dtype}): the native gathers copy "
                        f"raw bytes only; use NumPy indexing for object arrays")
    if x.ndim != 2:
        raise ValueError(f"{what} must be 2-D, got {x.ndim} dimension(s)")
    if not cnp.PyArray_IS_C_CONTIGUOUS(x) or not cnp.PyArray_ISALIGNED(x):
        raise ValueError(f"{what} must be C-contiguous and aligned")
    if x.itemsize not in (1, 2, 4, 8):
        raise TypeError(f"{what}: the native gathers support item sizes 1, 2, 4, 8, "
                        f"got {x.itemsize}")
    if cnp.PyArray_TYPE(idx) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(idx):
        raise TypeError("indices must be a C-contiguous int64 array")
    cdef const cnp.int64_t* p = <const cnp.int64_t*>cnp.PyArray_DATA(idx)
    cdef Py_ssize_t i
    for i in range(cnp.PyArray_SIZE(idx)):
        if p[i] < 0 or p[i] >= m:
            raise IndexError(f"index {p[i]} is out of range for {m} examples")
    return 0


def gather_rows(cnp.ndarray x, cnp.ndarray idx, cnp.ndarray out, n_threads=None):
    """out[i] = x[idx[i]] for a C-contiguous 2-D x (one example per row); one memcpy per row,
    threaded over rows.  out must be C-contiguous with shape (len(idx), x.shape[1])."""
    cdef Py_ssize_t m, nidx = cnp.PyArray_SIZE(idx), i
    cdef Py_ssize_t row_bytes
    cdef int nt = _threads(n_threads)
    _check_gather(x, idx, x.shape[0] if x.ndim == 2 else 0, "x")
    m = x.shape[0]
    row_bytes = x.shape[1] * x.itemsize
    if (out.ndim != 2 or out.shape[0] != nidx or out.shape[1] != x.shape[1]
            or out.dtype != x.dtype or not cnp.PyArray_IS_C_CONTIGUOUS(out)
            or not cnp.PyArray_ISWRITEABLE(out)):
        raise ValueError("out must be a writeable C-contiguous (len(idx), x.shape[1]) array "
                         "of x's dtype")
    cdef const char* src = <const char*>cnp.PyArray_DATA(x)
    cdef char* dst = <char*>cnp.PyArray_DATA(out)
    cdef const cnp.int64_t* ip = <const cnp.int64_t*>cnp.PyArray_DATA(idx)
    if nt > 1 and nidx * row_bytes < 32768:   # memcpy: 2 threads win from ~32 KiB (measured)
        nt = 1
    with nogil:
        if nt > 1:
            for i in prange(nidx, num_threads=nt, schedule="static"):
                memcpy(dst + i * row_bytes, src + ip[i] * row_bytes, row_bytes)
        else:
            for i in range(nidx):
                memcpy(dst + i * row_bytes, src + ip[i] * row_bytes, row_bytes)


cdef void _gather_cols_t(const item_t* x, Py_ssize_t rows, Py_ssize_t m,
                         const cnp.int64_t* perm, Py_ssize_t b, Py_ssize_t nb, item_t* full,
                         item_t* last, Py_ssize_t rem, int nt) noexcept nogil:
    # Row by row: a row of x (one feature of every example) stays in L2 while it is scattered
    # into every batch of the epoch, so each cache line of x is read once per epoch.
    cdef Py_ssize_t r, k, j
    cdef const item_t* row
    cdef item_t* d
    cdef const cnp.int64_t* ip
    for r in prange(rows, num_threads=nt, schedule="static"):
        row = x + r * m
        for k in range(nb):
            d = full + (k * rows + r) * b
            ip = perm + k * b
            for j in range(b):
                d[j] = row[ip[j]]
        if rem > 0:
            d = last + r * rem
            ip = perm + nb * b
            for j in range(rem):
                d[j] = row[ip[j]]


def gather_cols_epoch(cnp.ndarray x, cnp.ndarray perm, Py_ssize_t batch_size, cnp.ndarray full,
                      last=None, n_threads=None):
    """Gather a whole epoch of column batches: for x of shape (rows, m), C-contiguous, one
    example per column, full[k] = x[:, perm[k*b:(k+1)*b]] (shape (nb, rows, b)) and, when given,
    last = x[:, perm[nb*b:]] (shape (rows, rem)).  Threaded over rows."""
    cdef Py_ssize_t rows, m, b = batch_size
    cdef Py_ssize_t nb = full.shape[0] if full.ndim == 3 else 0, rem = 0
    cdef int nt = _threads(n_threads)
    cdef int isz = x.itemsize
    cdef cnp.ndarray lastarr
    cdef char* lp = NULL
    _check_gather(x, perm, x.shape[1] if x.ndim == 2 else 0, "x")
    rows = x.shape[0]; m = x.shape[1]
    if b < 1:
        raise ValueError("batch_size must be >= 1")
    if (full.ndim != 3 or full.shape[1] != rows or (nb > 0 and full.shape[2] != b)
            or full.dtype != x.dtype or not cnp.PyArray_IS_C_CONTIGUOUS(full)
            or not cnp.PyArray_ISWRITEABLE(full)):
        raise ValueError("full must be a writeable C-contiguous (n_batches, rows, batch_size) "
                         "array of x's dtype")
    if last is not None:
        if not isinstance(last, np.ndarray):
            raise TypeError("last must be a numpy.ndarray or None")
        lastarr = <cnp.ndarray>last
        if lastarr.ndim != 2:
            raise ValueError("last must be a writeable C-contiguous (rows, rem) array")
        rem = lastarr.shape[1]
        if (lastarr.ndim != 2 or lastarr.shape[0] != rows or lastarr.dtype != x.dtype
                or not cnp.PyArray_IS_C_CONTIGUOUS(lastarr) or not cnp.PyArray_ISWRITEABLE(lastarr)):
            raise ValueError("last must be a writeable C-contiguous (rows, rem) array")
        lp = <char*>cnp.PyArray_DATA(lastarr)
    if cnp.PyArray_SIZE(perm) < nb * b + rem:
        raise ValueError("perm is shorter than the batches to fill")
    if rows * m < _serial_threshold:
        nt = 1
    cdef const cnp.int64_t* ip = <const cnp.int64_t*>cnp.PyArray_DATA(perm)
    cdef const char* xp = <const char*>cnp.PyArray_DATA(x)
    cdef char* fp = <char*>cnp.PyArray_DATA(full)
    with nogil:
        if isz == 1:
            _gather_cols_t(<const unsigned char*>xp, rows, m, ip, b, nb, <unsigned char*>fp,
                           <unsigned char*>lp, rem, nt)
        elif isz == 2:
            _gather_cols_t(<const unsigned short*>xp, rows, m, ip, b, nb, <unsigned short*>fp,
                           <unsigned short*>lp, rem, nt)
        elif isz == 4:
            _gather_cols_t(<const unsigned int*>xp, rows, m, ip, b, nb, <unsigned int*>fp,
                           <unsigned int*>lp, rem, nt)
        elif isz == 8:
            _gather_cols_t(<const unsigned long long*>xp, rows, m, ip, b, nb,
                           <unsigned long long*>fp, <unsigned long long*>lp, rem, nt)
    if isz not in (1, 2, 4, 8):
        raise TypeError(f"gather_cols_epoch supports item sizes 1, 2, 4, 8, got {isz}")
