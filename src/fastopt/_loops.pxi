# The body of every per-ISA loop module (_loops_baseline/_avx2/_avx512.pyx only `include` it, and
# setup.py compiles each with its level's -m flags).  A loop module holds ONLY loops: the rule
# loops generated from the registry, the same-traffic and scale loops, the 16-bit conversions and
# the reductions' block loops.  It exports them as one LoopTable through a PyCapsule; the core
# (fastopt._core, built once) installs the table of the best level the CPU supports.
#
# Bitwise reproducibility: the loops are element-wise, and setup.py compiles with
# -ffp-contract=off, so an element gets the same IEEE operations in the SIMD body or the tail, at
# every level.

cimport cython
from cython cimport floating
from cpython.pycapsule cimport PyCapsule_New

include "_abi.pxi"
include "_core_gen.pxi"
include "_rules.pxi"
include "_loops_gen.pxi"

cdef extern from "_convert.h":
    int FO_HAVE_F16C
    void fo_load_bf16(float* d, const char* s, Py_ssize_t n) noexcept nogil
    void fo_store_bf16(char* s, const float* x, Py_ssize_t n) noexcept nogil
    void fo_store_bf16_sr(char* s, const float* x, Py_ssize_t n, uint32_t key,
                          uint32_t lo) noexcept nogil
    void fo_load_f16(float* d, const char* s, Py_ssize_t n) noexcept nogil
    void fo_store_f16(char* s, const float* x, Py_ssize_t n) noexcept nogil
    void fo_store_f16_sr(char* s, const float* x, Py_ssize_t n, uint32_t key,
                         uint32_t lo) noexcept nogil
    void fo_store_kahan_bf16(char* p, char* c, const float* x, Py_ssize_t n) noexcept nogil
    void fo_store_kahan_f16(char* p, char* c, const float* x, Py_ssize_t n) noexcept nogil
    void fo_add_comp_bf16(float* x, const char* c, Py_ssize_t n) noexcept nogil
    void fo_add_comp_f16(float* x, const char* c, Py_ssize_t n) noexcept nogil
    double fo_sumsq_f64(const char* x, Py_ssize_t n) noexcept nogil
    double fo_sumsq_f32(const char* x, Py_ssize_t n) noexcept nogil
    double fo_sumsq_bf16(const char* x, Py_ssize_t n) noexcept nogil
    double fo_sumsq_f16(const char* x, Py_ssize_t n) noexcept nogil
    int fo_finite_f64(const char* x, Py_ssize_t n) noexcept nogil
    int fo_finite_f32(const char* x, Py_ssize_t n) noexcept nogil
    int fo_finite_bf16(const char* x, Py_ssize_t n) noexcept nogil
    int fo_finite_f16(const char* x, Py_ssize_t n) noexcept nogil


# ------------------------------------------------------------------------------------------------
# The same-traffic reference: reads a[1] and the written arrays a[0], a[2], ..., writes those,
# with trivial arithmetic (x += g).  It moves exactly the bytes an update moves.  And the scale
# loop of gradient clipping (x <- scale * x).
# ------------------------------------------------------------------------------------------------

cdef inline void _traffic(floating** a, Py_ssize_t n, int n_rw) noexcept nogil:
    cdef floating* w0 = a[0]
    cdef const floating* g = a[1]
    cdef floating* w1 = a[2]
    cdef floating* w2 = a[3]
    cdef floating* w3 = a[4]
    cdef Py_ssize_t i
    cdef floating x
    if n_rw == 1:
        for i in range(n):
            w0[i] = w0[i] + g[i]
    elif n_rw == 2:
        for i in range(n):
            x = g[i]
            w0[i] = w0[i] + x
            w1[i] = w1[i] + x
    elif n_rw == 3:
        for i in range(n):
            x = g[i]
            w0[i] = w0[i] + x
            w1[i] = w1[i] + x
            w2[i] = w2[i] + x
    else:
        for i in range(n):
            x = g[i]
            w0[i] = w0[i] + x
            w1[i] = w1[i] + x
            w2[i] = w2[i] + x
            w3[i] = w3[i] + x


cdef inline void _typed(char** a, float** qf, double** qd) noexcept nogil:
    cdef int j
    for j in range(5):
        qf[j] = <float*>a[j]
        qd[j] = <double*>a[j]


cdef void _tr1f(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef float* q[5]
    cdef double* d[5]
    _typed(a, q, d)
    _traffic(q, n, 1)


cdef void _tr2f(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef float* q[5]
    cdef double* d[5]
    _typed(a, q, d)
    _traffic(q, n, 2)


cdef void _tr3f(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef float* q[5]
    cdef double* d[5]
    _typed(a, q, d)
    _traffic(q, n, 3)


cdef void _tr4f(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef float* q[5]
    cdef double* d[5]
    _typed(a, q, d)
    _traffic(q, n, 4)


cdef void _tr1d(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef float* q[5]
    cdef double* d[5]
    _typed(a, q, d)
    _traffic(d, n, 1)


cdef void _tr2d(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef float* q[5]
    cdef double* d[5]
    _typed(a, q, d)
    _traffic(d, n, 2)


cdef void _tr3d(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef float* q[5]
    cdef double* d[5]
    _typed(a, q, d)
    _traffic(d, n, 3)


cdef void _tr4d(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef float* q[5]
    cdef double* d[5]
    _typed(a, q, d)
    _traffic(d, n, 4)


cdef void _scale_f(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef float* x = <float*>a[0]
    cdef float c = <float>h.scale
    cdef Py_ssize_t i
    for i in range(n):
        x[i] = c * x[i]


cdef void _scale_d(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef double* x = <double*>a[0]
    cdef double c = h.scale
    cdef Py_ssize_t i
    for i in range(n):
        x[i] = c * x[i]


# ------------------------------------------------------------------------------------------------
# The table, and the capsule that hands it to the core.
# ------------------------------------------------------------------------------------------------

cdef LoopTable _table


cdef void _fill_table() noexcept:
    cdef int j
    _fill_rule_loops()
    _table.abi = FASTOPT_ABI
    _table.n_kernels = N_KERNELS
    _table.name = ISA_NAME
    _table.features = ISA_FEATURES
    _table.f32 = _f32_loops
    _table.f64 = _f64_loops
    _table.traffic_f32[0] = _tr1f; _table.traffic_f32[1] = _tr2f
    _table.traffic_f32[2] = _tr3f; _table.traffic_f32[3] = _tr4f
    _table.traffic_f64[0] = _tr1d; _table.traffic_f64[1] = _tr2d
    _table.traffic_f64[2] = _tr3d; _table.traffic_f64[3] = _tr4d
    _table.scale_f32 = _scale_f
    _table.scale_f64 = _scale_d
    for j in range(4):
        _table.load[j] = NULL; _table.store[j] = NULL; _table.store_sr[j] = NULL
        _table.store_kahan[j] = NULL; _table.add_comp[j] = NULL
    _table.load[FO_BF16] = fo_load_bf16
    _table.load[FO_F16] = fo_load_f16
    _table.store[FO_BF16] = fo_store_bf16
    _table.store[FO_F16] = fo_store_f16
    _table.store_sr[FO_BF16] = fo_store_bf16_sr
    _table.store_sr[FO_F16] = fo_store_f16_sr
    _table.store_kahan[FO_BF16] = fo_store_kahan_bf16
    _table.store_kahan[FO_F16] = fo_store_kahan_f16
    _table.add_comp[FO_BF16] = fo_add_comp_bf16
    _table.add_comp[FO_F16] = fo_add_comp_f16
    _table.sumsq[FO_F64] = fo_sumsq_f64
    _table.sumsq[FO_F32] = fo_sumsq_f32
    _table.sumsq[FO_BF16] = fo_sumsq_bf16
    _table.sumsq[FO_F16] = fo_sumsq_f16
    _table.finite[FO_F64] = fo_finite_f64
    _table.finite[FO_F32] = fo_finite_f32
    _table.finite[FO_BF16] = fo_finite_bf16
    _table.finite[FO_F16] = fo_finite_f16


_fill_table()


def table():
    """This level's LoopTable, as a PyCapsule named "fastopt.LoopTable" (for fastopt._core)."""
    return PyCapsule_New(<void*>&_table, b"fastopt.LoopTable", NULL)


NAME = ISA_NAME.decode()
HAS_F16C = bool(FO_HAVE_F16C)
