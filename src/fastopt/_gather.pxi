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
