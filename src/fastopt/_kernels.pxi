# The one source of fastopt's element-wise math and of the loops that apply it.
#
# setup.py compiles this file once per instruction-set level (_kernels_baseline/_avx2/_avx512.pyx
# only `include` it); fastopt._dispatch imports the best build the CPU supports.
#
# How it is organised, from the inside out:
#
#   1. _<rule>_elem   one `cdef inline ... noexcept nogil` function per update rule, on the
#                     `floating` fused type: the formula, written once.
#   2. _<rule>_range  the loop over n contiguous elements.  Options that change the formula
#                     (L2 weight decay, AMSGrad, Nesterov, centered, momentum) are `bint`
#                     arguments that _range() passes as literal constants, so the C compiler
#                     emits one branch-free, vectorised loop per combination.
#   3. _range         switch on the kernel id -> the specialised loop, for float32 or float64.
#   4. _run           the driver: a table of segments (one per array, so one call can update many
#                     arrays), split over threads by total element count with boundaries on
#                     64-byte lines of the written array, each piece peeled to a 64-byte boundary
#                     (NumPy's large arrays start 16 bytes past one), serial below a threshold.
#   5. _api.pxi       the Python-facing functions: argument checks in C, float64 scalar set-up,
#                     one call to _run without the GIL.
#
# Bitwise reproducibility: the updates are element-wise (no reductions), and setup.py compiles with
# -ffp-contract=off, so an element gets the same IEEE operations in the SIMD body, the scalar peel
# or the tail.  Results are therefore identical for every thread count, and across ISA builds.

cimport cython
from cython cimport floating
cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf, pow
from libc.stdint cimport uintptr_t
from libc.stdlib cimport malloc, free

import numpy as np

cnp.import_array()

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
        if (level == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        if (level == 2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
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
# 1. Per-element math.  `p`, `m`, ... point at element i; `g` is the gradient value.
# ------------------------------------------------------------------------------------------------

cdef inline floating _sqrt(floating x) noexcept nogil:
    # sqrtf for float32: libc's sqrt would widen to double and back (vsqrtpd + conversions, ~2x
    # slower; the result is the same correctly rounded float).
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _grad(floating g, floating p, floating sign, floating wd,
                           bint l2) noexcept nogil:
    """The effective gradient: g <- sign*g (+ wd*p with L2 weight decay, the course's form)."""
    g = sign * g
    if l2:
        g = g + wd * p
    return g


cdef inline void _sgd_elem(floating* p, floating g, floating lr, floating sign, floating wd,
                           bint l2) noexcept nogil:
    # p <- p - lr * g
    g = _grad(g, p[0], sign, wd, l2)
    p[0] = p[0] - lr * g


cdef inline void _momentum_elem(floating* p, floating g, floating* vel, floating lr,
                                floating sign, floating wd, floating beta, floating damp1,
                                bint l2, bint nesterov) noexcept nogil:
    # vel <- beta*vel + (1 - dampening)*g ;  p <- p - lr*vel   (nesterov: p <- p - lr*(g + beta*vel))
    cdef floating vi
    g = _grad(g, p[0], sign, wd, l2)
    vi = beta * vel[0] + damp1 * g
    vel[0] = vi
    if nesterov:
        vi = g + beta * vi
    p[0] = p[0] - lr * vi


cdef inline void _rmsprop_elem(floating* p, floating g, floating* sq, floating* gavg,
                               floating* buf, floating lr, floating sign, floating wd,
                               floating beta, floating omb, floating eps_in, floating eps_out,
                               floating mom, bint l2, bint centered, bint momentum) noexcept nogil:
    # sq <- beta*sq + (1-beta)*g^2 ; centered: gavg <- gavg + (1-beta)*(g - gavg), sq - gavg^2 under
    # the root ; denom = sqrt(. + eps_in) + eps_out ; momentum: buf <- mom*buf + g/denom, p -= lr*buf
    # else p -= lr * g/denom
    cdef floating si, ai, d, u
    g = _grad(g, p[0], sign, wd, l2)
    si = beta * sq[0] + omb * (g * g)
    sq[0] = si
    if centered:
        ai = gavg[0] + omb * (g - gavg[0])
        gavg[0] = ai
        si = si - ai * ai
    d = _sqrt(si + eps_in) + eps_out
    u = g / d
    if momentum:
        u = mom * buf[0] + u
        buf[0] = u
    p[0] = p[0] - lr * u


cdef inline void _adam_elem(floating* p, floating g, floating* m, floating* v, floating* vmax,
                            floating step_size, floating sign, floating wd, floating decay,
                            floating b1, floating omb1, floating b2, floating omb2, floating c2,
                            floating eps_in, floating eps_out, bint l2, bint ams) noexcept nogil:
    # m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g^2 ; (amsgrad: vmax <- max(vmax, v), used for v)
    # p <- p*decay - step_size * m / (sqrt(v*c2 + eps_in) + eps_out)
    # with step_size = lr/(1-b1^t), c2 = 1/(1-b2^t), decay = 1 - lr*wd for AdamW, else 1.
    cdef floating mi, vi, vm
    g = _grad(g, p[0], sign, wd, l2)
    mi = b1 * m[0] + omb1 * g
    vi = b2 * v[0] + omb2 * (g * g)
    m[0] = mi
    v[0] = vi
    if ams:
        vm = vmax[0]
        # torch.maximum: a NaN in v or in v_max gives NaN (vm != vm is true only for NaN)
        vm = vi if (vi > vm or vi != vi) else vm
        vmax[0] = vm
        vi = vm
    p[0] = p[0] * decay - step_size * (mi / (_sqrt(vi * c2 + eps_in) + eps_out))


cdef inline floating _ewa_elem(floating avg, floating x, floating beta,
                               floating omb) noexcept nogil:
    # avg <- beta*avg + (1-beta)*x
    return beta * avg + omb * x


# ------------------------------------------------------------------------------------------------
# 2. Loops over n contiguous elements.  a[0] is the written "lead" array (param, avg), a[1] the
#    read-only input (grad, value), a[2:] the state arrays.  Unused slots hold a valid pointer.
# ------------------------------------------------------------------------------------------------

ctypedef struct Hyper:
    double lr          # learning rate; Adam: step size lr / (1 - beta1^t)
    double sign        # -1 when maximizing
    double wd          # L2 coefficient added to the gradient
    double decay       # Adam: 1 - lr*wd for decoupled weight decay, else 1
    double b1, omb1    # beta (momentum, RMSprop, EWA) or beta1, and 1 - it
    double b2, omb2    # Adam beta2 and 1 - beta2
    double c2          # Adam 1 / (1 - beta2^t)
    double eps_in      # epsilon inside the square root (0 when outside)
    double eps_out     # epsilon outside the square root (0 when inside)
    double damp1       # momentum: 1 - dampening
    double mom         # RMSprop momentum


cdef inline void _sgd_range(floating** a, Py_ssize_t n, const Hyper* h, bint l2) noexcept nogil:
    cdef floating* p = a[0]
    cdef const floating* g = a[1]
    cdef floating lr = <floating>h.lr, sign = <floating>h.sign, wd = <floating>h.wd
    cdef Py_ssize_t i
    for i in range(n):
        _sgd_elem(&p[i], g[i], lr, sign, wd, l2)


cdef inline void _momentum_range(floating** a, Py_ssize_t n, const Hyper* h, bint l2,
                                 bint nesterov) noexcept nogil:
    cdef floating* p = a[0]
    cdef const floating* g = a[1]
    cdef floating* vel = a[2]
    cdef floating lr = <floating>h.lr, sign = <floating>h.sign, wd = <floating>h.wd
    cdef floating beta = <floating>h.b1, damp1 = <floating>h.damp1
    cdef Py_ssize_t i
    for i in range(n):
        _momentum_elem(&p[i], g[i], &vel[i], lr, sign, wd, beta, damp1, l2, nesterov)


cdef inline void _rmsprop_range(floating** a, Py_ssize_t n, const Hyper* h, bint l2,
                                bint centered, bint momentum) noexcept nogil:
    cdef floating* p = a[0]
    cdef const floating* g = a[1]
    cdef floating* sq = a[2]
    cdef floating* gavg = a[3]
    cdef floating* buf = a[4]
    cdef floating lr = <floating>h.lr, sign = <floating>h.sign, wd = <floating>h.wd
    cdef floating beta = <floating>h.b1, omb = <floating>h.omb1
    cdef floating eps_in = <floating>h.eps_in, eps_out = <floating>h.eps_out
    cdef floating mom = <floating>h.mom
    cdef Py_ssize_t i
    for i in range(n):
        _rmsprop_elem(&p[i], g[i], &sq[i], &gavg[i], &buf[i], lr, sign, wd, beta, omb,
                      eps_in, eps_out, mom, l2, centered, momentum)


cdef inline void _adam_range(floating** a, Py_ssize_t n, const Hyper* h, bint l2,
                             bint ams) noexcept nogil:
    cdef floating* p = a[0]
    cdef const floating* g = a[1]
    cdef floating* m = a[2]
    cdef floating* v = a[3]
    cdef floating* vmax = a[4]
    cdef floating step_size = <floating>h.lr, sign = <floating>h.sign, wd = <floating>h.wd
    cdef floating decay = <floating>h.decay, c2 = <floating>h.c2
    cdef floating b1 = <floating>h.b1, omb1 = <floating>h.omb1
    cdef floating b2 = <floating>h.b2, omb2 = <floating>h.omb2
    cdef floating eps_in = <floating>h.eps_in, eps_out = <floating>h.eps_out
    cdef Py_ssize_t i
    for i in range(n):
        _adam_elem(&p[i], g[i], &m[i], &v[i], &vmax[i], step_size, sign, wd, decay,
                   b1, omb1, b2, omb2, c2, eps_in, eps_out, l2, ams)


cdef inline void _ewa_range(floating** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    cdef floating* avg = a[0]
    cdef const floating* x = a[1]
    cdef floating beta = <floating>h.b1, omb = <floating>h.omb1
    cdef Py_ssize_t i
    for i in range(n):
        avg[i] = _ewa_elem(avg[i], x[i], beta, omb)


cdef inline void _scale_range(floating** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    # x <- c * x  (gradient clipping)
    cdef floating* x = a[0]
    cdef floating c = <floating>h.lr
    cdef Py_ssize_t i
    for i in range(n):
        x[i] = c * x[i]


cdef inline void _traffic_range(floating** a, Py_ssize_t n, int n_rw) noexcept nogil:
    # The same-traffic reference: reads a[1] and the n_rw arrays a[0], a[2], ..., writes those
    # n_rw arrays, with trivial arithmetic (x += g).  It moves exactly the bytes an update moves.
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


# ------------------------------------------------------------------------------------------------
# 3. Kernel ids: family * 16 + option bits.  _range picks the specialised loop.
# ------------------------------------------------------------------------------------------------

cdef enum:
    K_SGD = 0
    K_MOMENTUM = 16
    K_RMSPROP = 32
    K_ADAM = 48
    K_EWA = 64
    K_TRAFFIC = 80
    K_SCALE = 96
    # option bits
    O_L2 = 1
    O_NESTEROV = 2       # momentum
    O_CENTERED = 2       # rmsprop
    O_MOMENTUM = 4       # rmsprop
    O_AMSGRAD = 2        # adam


cdef void _range_t(int kid, floating** a, Py_ssize_t n, const Hyper* h) noexcept nogil:
    if n <= 0:
        return
    if kid == K_SGD:
        _sgd_range(a, n, h, False)
    elif kid == K_SGD | O_L2:
        _sgd_range(a, n, h, True)
    elif kid == K_MOMENTUM:
        _momentum_range(a, n, h, False, False)
    elif kid == K_MOMENTUM | O_L2:
        _momentum_range(a, n, h, True, False)
    elif kid == K_MOMENTUM | O_NESTEROV:
        _momentum_range(a, n, h, False, True)
    elif kid == K_MOMENTUM | O_L2 | O_NESTEROV:
        _momentum_range(a, n, h, True, True)
    elif kid == K_RMSPROP:
        _rmsprop_range(a, n, h, False, False, False)
    elif kid == K_RMSPROP | O_L2:
        _rmsprop_range(a, n, h, True, False, False)
    elif kid == K_RMSPROP | O_CENTERED:
        _rmsprop_range(a, n, h, False, True, False)
    elif kid == K_RMSPROP | O_L2 | O_CENTERED:
        _rmsprop_range(a, n, h, True, True, False)
    elif kid == K_RMSPROP | O_MOMENTUM:
        _rmsprop_range(a, n, h, False, False, True)
    elif kid == K_RMSPROP | O_L2 | O_MOMENTUM:
        _rmsprop_range(a, n, h, True, False, True)
    elif kid == K_RMSPROP | O_CENTERED | O_MOMENTUM:
        _rmsprop_range(a, n, h, False, True, True)
    elif kid == K_RMSPROP | O_L2 | O_CENTERED | O_MOMENTUM:
        _rmsprop_range(a, n, h, True, True, True)
    elif kid == K_ADAM:
        _adam_range(a, n, h, False, False)
    elif kid == K_ADAM | O_L2:
        _adam_range(a, n, h, True, False)
    elif kid == K_ADAM | O_AMSGRAD:
        _adam_range(a, n, h, False, True)
    elif kid == K_ADAM | O_L2 | O_AMSGRAD:
        _adam_range(a, n, h, True, True)
    elif kid == K_EWA:
        _ewa_range(a, n, h)
    elif K_TRAFFIC < kid <= K_TRAFFIC + 4:
        _traffic_range(a, n, kid - K_TRAFFIC)
    elif kid == K_SCALE:
        _scale_range(a, n, h)


# ------------------------------------------------------------------------------------------------
# 4. The driver: segments, threads, 64-byte peeling.
# ------------------------------------------------------------------------------------------------

cdef enum:
    MAX_OPS = 5

ctypedef struct Seg:
    char* a[MAX_OPS]       # operand base pointers (unused slots repeat a[0])
    Py_ssize_t n           # elements
    Py_ssize_t start       # offset of this segment in the concatenated index space
    Py_ssize_t isz         # bytes per element (4 or 8): one call may mix float32 and float64


# Below this many elements in one call the light kernels (SGD, momentum, EWA, scaling) run on one
# thread: opening a parallel region costs ~1.2 us on the 2-core development machine, more than the
# whole update below this size.  RMSprop and Adam (a square root and a division per element) cost
# about 4x more per element, so they go parallel from a quarter of it.  Measured with
# `python -m fastopt bench --threshold` (2 threads start to win at ~32-46k elements for SGD/EWA and
# ~8k for Adam); see README "Threads".
cdef Py_ssize_t _serial_threshold = 32768


cdef inline Py_ssize_t _threshold(int kid) noexcept nogil:
    cdef int family = kid & ~15
    if family == K_ADAM or family == K_RMSPROP:
        return _serial_threshold // 4
    return _serial_threshold


# Library default thread count; 0 means "ask OpenMP" (OMP_NUM_THREADS, threadpoolctl limits).
cdef int _default_threads = 0


cdef inline void _piece(int kid, const Seg* s, Py_ssize_t lo, Py_ssize_t hi,
                        const Hyper* h) noexcept nogil:
    """Run elements [lo, hi) of segment s: a scalar peel up to the lead array's next 64-byte
    boundary, then the aligned rest."""
    # Typed pointer tables (not one char* table cast to float**): reading a char* object through a
    # float** breaks C's strict-aliasing rule, and gcc then reorders the loads.
    cdef float* qf[MAX_OPS]
    cdef double* qd[MAX_OPS]
    cdef Py_ssize_t j, k = 0, isz = s.isz
    cdef uintptr_t lead = <uintptr_t>s.a[0] + <uintptr_t>(lo * isz)
    if hi <= lo:
        return
    if (lead & 63) != 0 and (lead % isz) == 0:
        k = <Py_ssize_t>((64 - (lead & 63)) // isz)
        if k > hi - lo:
            k = hi - lo
    if isz == 4:
        for j in range(MAX_OPS):
            qf[j] = <float*>(s.a[j]) + lo
        _range_t(kid, qf, k, h)
        for j in range(MAX_OPS):
            qf[j] = qf[j] + k
        _range_t(kid, qf, hi - lo - k, h)
    else:
        for j in range(MAX_OPS):
            qd[j] = <double*>(s.a[j]) + lo
        _range_t(kid, qd, k, h)
        for j in range(MAX_OPS):
            qd[j] = qd[j] + k
        _range_t(kid, qd, hi - lo - k, h)


cdef inline Py_ssize_t _find_seg(const Seg* segs, Py_ssize_t nseg, Py_ssize_t x) noexcept nogil:
    """Index of the last segment whose start is <= x (binary search)."""
    cdef Py_ssize_t lo = 0, hi = nseg - 1, mid
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if segs[mid].start <= x:
            lo = mid
        else:
            hi = mid - 1
    return lo


cdef inline Py_ssize_t _bound(const Seg* segs, Py_ssize_t nseg, Py_ssize_t total,
                              Py_ssize_t t, Py_ssize_t nt) noexcept nogil:
    """Start of thread t's share of [0, total): t*total/nt, moved down to a 64-byte line of the
    lead array of the segment it falls in (so no two threads write one cache line)."""
    cdef Py_ssize_t x, s, li, isz
    cdef uintptr_t addr
    if t <= 0:
        return 0
    if t >= nt:
        return total
    x = (total // nt) * t + ((total % nt) * t) // nt
    s = _find_seg(segs, nseg, x)
    li = x - segs[s].start
    isz = segs[s].isz
    addr = <uintptr_t>segs[s].a[0] + <uintptr_t>(li * isz)
    if addr % isz == 0:
        li -= <Py_ssize_t>((addr & 63) // isz)
        if li < 0:
            li = 0
    return segs[s].start + li


cdef void _work(int kid, const Seg* segs, Py_ssize_t nseg, Py_ssize_t lo, Py_ssize_t hi,
                const Hyper* h) noexcept nogil:
    """Run the global element range [lo, hi), walking the segments it spans."""
    cdef Py_ssize_t s, a, b
    if hi <= lo:
        return
    s = _find_seg(segs, nseg, lo)
    while s < nseg and segs[s].start < hi:
        a = lo - segs[s].start
        if a < 0:
            a = 0
        b = hi - segs[s].start
        if b > segs[s].n:
            b = segs[s].n
        _piece(kid, &segs[s], a, b, h)
        s += 1


cdef void _run(int kid, const Seg* segs, Py_ssize_t nseg, const Hyper* h,
               int n_threads) noexcept nogil:
    """Apply kernel `kid` to every segment; split over n_threads by total element count."""
    cdef Py_ssize_t total, t, nt
    if nseg <= 0:
        return
    total = segs[nseg - 1].start + segs[nseg - 1].n
    nt = n_threads
    if nt > 1 and total >= _threshold(kid):
        for t in prange(nt, num_threads=nt, schedule="static"):
            _work(kid, segs, nseg, _bound(segs, nseg, total, t, nt),
                  _bound(segs, nseg, total, t + 1, nt), h)
    else:
        _work(kid, segs, nseg, 0, total, h)


# ------------------------------------------------------------------------------------------------
# 5. Reductions (global sum of squares, finiteness), deterministic for every thread count.
#    Each segment is cut into fixed blocks of REDUCE_BLOCK elements (positions independent of the
#    thread count and of alignment); a block is summed with 16 independent float64 lanes (so the
#    compiler vectorises it without reassociating), and the block sums are added in order.
# ------------------------------------------------------------------------------------------------

cdef enum:
    REDUCE_BLOCK = 16384
    LANES = 16


cdef double _sumsq_block(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef double acc[LANES]
    cdef double t, total = 0.0
    cdef Py_ssize_t i, j, nl = n - n % LANES
    for j in range(LANES):
        acc[j] = 0.0
    for i in range(nl // LANES):
        for j in range(LANES):
            t = <double>x[i * LANES + j]
            acc[j] = acc[j] + t * t
    for i in range(nl, n):
        t = <double>x[i]
        acc[i - nl] = acc[i - nl] + t * t
    for j in range(LANES):
        total = total + acc[j]
    return total


cdef bint _finite_block(const floating* x, Py_ssize_t n) noexcept nogil:
    # x - x is 0 for finite x and NaN for NaN/Inf: one read, no branch per element
    cdef floating acc[LANES]
    cdef Py_ssize_t i, j, nl = n - n % LANES
    cdef bint ok = True
    for j in range(LANES):
        acc[j] = 0
    for i in range(nl // LANES):
        for j in range(LANES):
            acc[j] = acc[j] + (x[i * LANES + j] - x[i * LANES + j])
    for i in range(nl, n):
        acc[0] = acc[0] + (x[i] - x[i])
    for j in range(LANES):
        ok = ok and acc[j] == 0
    return ok


ctypedef struct Block:
    const char* x
    Py_ssize_t n
    Py_ssize_t isz


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


cdef inline double _reduce_block(int what, const Block* blk) noexcept nogil:
    if what == 0:
        if blk.isz == 4:
            return _sumsq_block(<const float*>blk.x, blk.n)
        return _sumsq_block(<const double*>blk.x, blk.n)
    if blk.isz == 4:
        return 1.0 if _finite_block(<const float*>blk.x, blk.n) else 0.0
    return 1.0 if _finite_block(<const double*>blk.x, blk.n) else 0.0


include "_api.pxi"
