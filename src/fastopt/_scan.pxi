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

