# ------------------------------------------------------------------------------------------------
# EWA of a series (a scan along one axis): the data layer is 2-D (T steps x K series) with any
# strides, so callers pass views, never copies of an output.
# ------------------------------------------------------------------------------------------------

from libc.math cimport NAN


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
                _ewa_elem(&a, x[t * xt + k * xk], beta, omb)
                y[t * yt + k * yk] = a / corr[t] if corr != NULL else a
    else:
        # series side by side: a row of running averages, vectorised across the series
        for k in range(k0, k1):
            avg[k] = 0
        for t in range(T):
            for k in range(k0, k1):
                _ewa_elem(&avg[k], x[t * xt + k * xk], beta, omb)
                y[t * yt + k * yk] = avg[k] / corr[t] if corr != NULL else avg[k]


# pandas' forms (ewm(alpha=1-beta, adjust=..., ignore_na=...).mean(), min_periods=0), following
# the recurrence of pandas/_libs/window/aggregations.pyx `ewm`: a weighted mean `w` and the weight
# `ow` of everything before the current value.  The state is float64 for both storage types (as
# pandas computes), rounded once per output.  w is NaN until the first observation, so a series
# that starts with NaN gives NaN there; a NaN after it repeats the last mean.

cdef inline void _pandas_elem(double* w, double* ow, double cur, double beta, double nw,
                              bint adjust, bint ignore_na) noexcept nogil:
    """One step: with ignore_na=False the old weight decays at every position (NaN included),
    with ignore_na=True only at observations; adjust=False resets the old weight to 1."""
    # Every value is computed, then the ternaries select among them, with bitwise & and |
    # (Cython's `and`/`or` compile to jumps): no branch to mispredict on a pattern of NaNs.  The
    # cost is the float64 division; _scan_pandas interleaves series to hide its latency.
    cdef double wv = w[0]
    cdef double owv = ow[0]
    cdef bint obs = cur == cur
    cdef bint started = wv == wv
    cdef bint update = started & obs
    cdef double decayed = owv * beta
    cdef double o = decayed if (started & (obs | (not ignore_na))) else owv
    cdef double mean = (o * wv + nw * cur) / (o + nw)
    cdef double grown = o + nw
    # pandas keeps the mean when the value equals it (no rounding drift on a constant series);
    # before the first observation the mean is the value itself (or still NaN)
    cdef double kept = wv if started else cur
    w[0] = mean if (update & (wv != cur)) else kept
    grown = grown if adjust else 1.0
    ow[0] = grown if update else o


cdef void _scan_pandas(const floating* x, Py_ssize_t xt, Py_ssize_t xk, floating* y,
                       Py_ssize_t yt, Py_ssize_t yk, Py_ssize_t T, Py_ssize_t k0, Py_ssize_t k1,
                       double beta, double nw, bint adjust, bint ignore_na, double* w,
                       double* ow) noexcept nogil:
    """Scan columns [k0, k1) in pandas' form; w, ow: a row of states.  Series side by side are
    scanned a whole row at a time; contiguous series 8 at a time, interleaved, so that the
    division of one step of one series overlaps the others' (one series alone is latency bound).
    Each series' arithmetic is the same either way."""
    cdef Py_ssize_t t, k, kb, ke
    cdef Py_ssize_t blk = 8 if xt == 1 else k1 - k0
    cdef double a, o
    kb = k0
    while kb < k1:
        ke = min(kb + blk, k1)
        for k in range(kb, ke):
            w[k] = NAN
            ow[k] = 1.0
        for t in range(T):
            for k in range(kb, ke):
                a = w[k]
                o = ow[k]
                _pandas_elem(&a, &o, <double>x[t * xt + k * xk], beta, nw, adjust, ignore_na)
                w[k] = a
                ow[k] = o
                y[t * yt + k * yk] = <floating>a
        kb = ke


cdef void _scan_all(const floating* x, Py_ssize_t xt, Py_ssize_t xk, floating* y,
                    Py_ssize_t yt, Py_ssize_t yk, Py_ssize_t T, Py_ssize_t K, double beta,
                    bint bias_correction, int adjust, bint ignore_na, int nt,
                    void* state) noexcept nogil:
    """adjust: -1 the zero-started course form (bias_correction applies), 0 / 1 pandas'
    adjust=False / adjust=True.  state: K floating (course form) or 2 K doubles (pandas)."""
    cdef floating* corr = NULL
    cdef floating* avg = <floating*>state
    cdef double* w = <double*>state
    cdef double* ow = w + K
    cdef double nw = 1.0 if adjust == 1 else 1.0 - beta
    cdef Py_ssize_t t, c, nc
    if adjust < 0 and bias_correction:
        corr = <floating*>malloc(max(T, 1) * sizeof(floating))
        for t in range(T):
            corr[t] = <floating>(1.0 - pow(beta, <double>(t + 1)))
    # each series is scanned by one thread, whole: results are the same for every thread count
    nc = nt if (nt > 1 and T * K >= _serial_threshold and K > 1) else 1
    if nc > K:
        nc = K
    if nc == 1:
        if adjust < 0:
            _scan(x, xt, xk, y, yt, yk, T, 0, K, <floating>beta, <floating>(1.0 - beta), corr,
                  avg)
        else:
            _scan_pandas(x, xt, xk, y, yt, yk, T, 0, K, beta, nw, adjust == 1, ignore_na, w, ow)
    else:
        for c in prange(nc, num_threads=nc, schedule="static"):
            if adjust < 0:
                _scan(x, xt, xk, y, yt, yk, T, (K * c) // nc, (K * (c + 1)) // nc,
                      <floating>beta, <floating>(1.0 - beta), corr, avg)
            else:
                _scan_pandas(x, xt, xk, y, yt, yk, T, (K * c) // nc, (K * (c + 1)) // nc,
                             beta, nw, adjust == 1, ignore_na, w, ow)
    free(corr)


def _ewa_scan(cnp.ndarray x, cnp.ndarray y, beta, bint bias_correction, adjust=None,
              bint ignore_na=False, n_threads=None):
    """Private: x, y are 2-D (T, K) views of one dtype; y[t, k] gets the EWA of x[:t+1, k].
    adjust None: the zero-started average (bias_correction applies); True / False: pandas'
    ewm(alpha=1-beta, adjust=adjust, ignore_na=ignore_na).mean()."""
    cdef double b = _beta(beta, "beta")
    cdef int nt = _threads(n_threads)
    cdef int form = -1 if adjust is None else <int>_bool(adjust, "adjust")
    cdef Py_ssize_t isz, T, K, xt, xk, yt, yk
    cdef void* state
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
    state = malloc(max(K, 1) * (2 * sizeof(double) if form >= 0 else isz))
    if state == NULL:
        raise MemoryError(f"_ewa_scan: cannot allocate the state of {K} series")
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            _scan_all(<const float*>cnp.PyArray_DATA(x), xt, xk, <float*>cnp.PyArray_DATA(y),
                      yt, yk, T, K, b, bias_correction, form, ignore_na, nt, state)
    else:
        with nogil:
            _scan_all(<const double*>cnp.PyArray_DATA(x), xt, xk, <double*>cnp.PyArray_DATA(y),
                      yt, yk, T, K, b, bias_correction, form, ignore_na, nt, state)
    free(state)
