# ------------------------------------------------------------------------------------------------
# Gradient clipping and finiteness: reductions over many arrays in one native pass,
# deterministic for every thread count.  Each array is cut into fixed blocks of REDUCE_BLOCK
# elements (positions independent of the thread count and of alignment); the table's block loop
# sums a block with 16 independent float64 lanes, and the block sums are added in order.
# ------------------------------------------------------------------------------------------------

cdef enum:
    REDUCE_BLOCK = 16384


ctypedef struct Block:
    const char* x
    Py_ssize_t n
    int dt


cdef inline double _reduce_block(int what, const Block* blk) noexcept nogil:
    if what == 0:
        return T.sumsq[blk.dt](blk.x, blk.n)
    return 1.0 if T.finite[blk.dt](blk.x, blk.n) else 0.0


cdef void _reduce(int what, const Block* blocks, Py_ssize_t nb, double* out,
                  int nt) noexcept nogil:
    """what 0: out[b] = sum of squares of block b; what 1: out[b] = 1.0 if block b is finite."""
    cdef Py_ssize_t b
    cdef Py_ssize_t total = 0
    for b in range(nb):
        total += blocks[b].n
    if nt > nb:
        nt = <int>nb
    if nt > 1 and total >= _serial_threshold:
        for b in prange(nb, num_threads=nt, schedule="static"):
            out[b] = _reduce_block(what, &blocks[b])
    else:
        for b in range(nb):
            out[b] = _reduce_block(what, &blocks[b])


cdef double* _block_reduce(int what, list arrays, bint writable, object labels, int nt,
                           Py_ssize_t* nblocks, Block** keep=NULL) except NULL:
    """Validate `arrays` (any storage type, C-contiguous; dtypes may differ between arrays), cut
    them into fixed blocks and reduce each block.  Returns a malloc'ed array of block results
    (and, when `keep` is given, the malloc'ed blocks)."""
    cdef Py_ssize_t k, nb = 0, b, n, isz, off
    cdef Block* blocks
    cdef double* out
    cdef cnp.ndarray a
    if T == NULL:
        raise RuntimeError("fastopt: no loop table installed")
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
            blocks[b].dt = _code(a)
            off += REDUCE_BLOCK
            b += 1
    with nogil:
        _reduce(what, blocks, nb, out, nt)
    if keep != NULL:
        keep[0] = blocks
    else:
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
    cdef Call c
    cdef _Table t
    _zero(&h)
    h.scale = _real(factor, "factor")
    c.kid = K_SCALE
    c.h = &h
    c.stochastic = 0
    c.mode = M_PLAIN
    c.present = 1
    t = _fill_table(("array", "", "", "", "", "", ""), (arrays,) + (None,) * (NSLOT - 1),
                    0x7e, labels, M_PLAIN)
    _call(&c, t.segs, t.n, _threads(n_threads))


def norm_and_finite_multi(list arrays, *, n_threads=None, labels=None):
    """(sum of squares, all finite) of every element of every array, in ONE read pass.

    The sum is accumulated in float64 (deterministic for every thread count, equal to
    sumsq_multi).  A block whose sum is not finite holds a NaN or an Inf, or (float64 only)
    values whose squares overflow; only such a block is read again to tell the two apart."""
    cdef Py_ssize_t nb, b
    cdef double total = 0.0
    cdef bint ok = True
    cdef Block* blocks = NULL
    cdef double* out = _block_reduce(0, arrays, False, labels, _threads(n_threads), &nb, &blocks)
    for b in range(nb):
        total += out[b]
        if not isfinite(out[b]) and ok:
            ok = T.finite[blocks[b].dt](blocks[b].x, blocks[b].n) != 0
    free(out)
    free(blocks)
    return total, bool(ok)


def check_param_arrays(list arrays, labels=None):
    """Validate arrays an optimizer will update in place (float64, float32, float16, bfloat16; C-contiguous, aligned,
    writeable, native byte order); raise TypeError/ValueError naming the offending one."""
    cdef Py_ssize_t k
    _check_labels(labels, len(arrays), "params")
    for k in range(len(arrays)):
        _check_array(arrays[k], ("param",), 0, k if labels is None else labels[k], True, None)

