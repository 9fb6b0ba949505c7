# The driver: the loop table in use, segments, threads, 64-byte peeling, and the blocked path that
# converts 16-bit storage to and from float32.
#
#   * A call is a table of segments (one per array index, so one call can update many arrays),
#     split over threads by total element count, with boundaries on 64-byte lines of the lead
#     array, serial below a threshold.
#   * Native segments (every slot float32, or every slot float64) run the table's loop directly,
#     each piece peeled to a 64-byte boundary of the lead array (NumPy's large arrays start 16
#     bytes past one).
#   * Blocked segments (any 16-bit slot) run in blocks of BLOCK elements: the 16-bit slots are
#     loaded into float32 scratch (on the thread's stack, in L1), the same float32 loop runs on
#     the block, and the written 16-bit slots are stored back, rounded to nearest even or
#     stochastically.  With master weights the lead slot is the float32 master and the 16-bit
#     parameter (slot AUX) receives it rounded, in the same pass; with Kahan compensation the
#     parameter is loaded plus its compensation (slot AUX) and both are stored back.

from libc.stdint cimport uintptr_t
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid

cdef enum:
    MAX_OPS = 6          # a rule's operand slots (_registry.MAX_OPS)
    AUX = 6              # the 16-bit parameter (master mode) or the compensation (Kahan mode)
    NSLOT = 7
    BLOCK = 256          # elements per block of the 16-bit path (7 float32 slots: 7 KiB)
    K_TRAFFIC = 1000     # + n_rw: the same-traffic reference with n_rw written arrays
    K_SCALE = 2000       # x <- scale * x
    M_PLAIN = 0
    M_MASTER = 1
    M_KAHAN = 2


ctypedef struct Seg:
    char* a[NSLOT]          # slot base pointers (slots not present repeat slot 0's)
    signed char dt[NSLOT]   # storage type of each slot (FO_*)
    Py_ssize_t n            # elements
    Py_ssize_t start        # offset of this segment in the call's concatenated index space
    Py_ssize_t isz          # bytes per element of the lead slot
    int blocked             # some slot is 16-bit: float32 compute through blocks


ctypedef struct Call:
    int kid                 # loop-table index of the rule, or K_TRAFFIC + n_rw, or K_SCALE
    int present             # bit i: slot i holds an array
    int mode                # M_PLAIN, M_MASTER, M_KAHAN
    int stochastic          # round 16-bit outputs stochastically
    uint32_t key[NSLOT]     # per-slot hash keys of stochastic rounding
    const Hyper* h


cdef extern from *:
    """static volatile uint32_t fo_sink = 0;
    static void fo_keep(uint32_t x) { fo_sink += x; }"""
    void fo_keep(uint32_t x) noexcept nogil


# Tests only: an offset added to every element index of the stochastic-rounding hash, so that a
# small call can cross the 2^32 boundary where the hash's high word changes (a real call would
# need 4 billion elements).
cdef uint64_t _index_base = 0


def _set_index_base(base):
    """Tests only: offset the stochastic-rounding element index by `base` (0 to reset)."""
    global _index_base
    _index_base = <uint64_t>_int(base, "base", 0, 2 ** 62)


# The loop table in use (installed by fastopt._dispatch at import).
cdef const LoopTable* T = NULL
cdef object _installed = None      # the capsule (keeps the loop module's table alive)


def _install(capsule):
    """Use the LoopTable in `capsule` (from a fastopt._loops_* module's table())."""
    global T, _installed
    cdef const LoopTable* t
    if not PyCapsule_IsValid(capsule, b"fastopt.LoopTable"):
        raise TypeError("expected a fastopt.LoopTable capsule")
    t = <const LoopTable*>PyCapsule_GetPointer(capsule, b"fastopt.LoopTable")
    if t.abi != FASTOPT_ABI or t.n_kernels != N_KERNELS:
        raise ImportError(f"fastopt: loop module {t.name.decode()!r} was built from another "
                          f"registry or ABI (abi {t.abi}, {t.n_kernels} kernels; the core expects "
                          f"abi {FASTOPT_ABI}, {N_KERNELS} kernels): rebuild fastopt")
    T = t
    _installed = capsule


def _installed_level():
    """(name, features) of the loop table in use."""
    if T == NULL:
        return None, None
    return T.name.decode(), T.features.decode()


cdef inline Py_ssize_t _threshold(int kid) noexcept nogil:
    if 0 <= kid < N_KERNELS and _kernel_heavy[kid]:
        return _serial_threshold // 4
    return _serial_threshold


cdef inline fo_loop _native_loop(int kid, bint f64) noexcept nogil:
    if kid < N_KERNELS:
        return T.f64[kid] if f64 else T.f32[kid]
    if kid == K_SCALE:
        return T.scale_f64 if f64 else T.scale_f32
    return T.traffic_f64[kid - K_TRAFFIC - 1] if f64 else T.traffic_f32[kid - K_TRAFFIC - 1]


cdef inline void _native(const Call* c, const Seg* s, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Elements [lo, hi) of a native segment: a scalar peel up to the lead array's next 64-byte
    boundary, then the aligned rest."""
    cdef char* q[NSLOT]
    cdef Py_ssize_t k = 0, isz = s.isz
    cdef int j
    cdef uintptr_t lead = <uintptr_t>s.a[0] + <uintptr_t>(lo * isz)
    cdef fo_loop f = _native_loop(c.kid, isz == 8)
    if hi <= lo:
        return
    if (lead & 63) != 0 and (lead % isz) == 0:
        k = <Py_ssize_t>((64 - (lead & 63)) // isz)
        if k > hi - lo:
            k = hi - lo
    for j in range(NSLOT):
        q[j] = s.a[j] + lo * isz
    if k > 0:
        f(q, k, c.h)
        for j in range(NSLOT):
            q[j] = q[j] + k * isz
    f(q, hi - lo - k, c.h)


cdef inline int _isz(int dt) noexcept nogil:
    return 8 if dt == FO_F64 else (4 if dt == FO_F32 else 2)


cdef void _raw_traffic(const Call* c, const Seg* s, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """The same-traffic reference of a 16-bit pattern: per block, read every present slot and
    write back each written one (integer +1 on its bits: trivial arithmetic, no conversion)."""
    cdef Py_ssize_t off = lo, nb, j
    cdef int i
    cdef uint16_t* p16
    cdef uint32_t* p32
    cdef uint32_t acc = 0
    while off < hi:
        nb = hi - off if hi - off < BLOCK else BLOCK
        for i in range(NSLOT):
            if not (c.present >> i) & 1:
                continue
            if s.dt[i] == FO_F32:
                p32 = <uint32_t*>(s.a[i] + off * 4)
                if i == 1:
                    for j in range(nb):
                        acc = acc + p32[j]
                else:
                    for j in range(nb):
                        p32[j] = p32[j] + 1
            else:
                p16 = <uint16_t*>(s.a[i] + off * 2)
                if i == 1:
                    for j in range(nb):
                        acc = acc + p16[j]
                else:
                    for j in range(nb):
                        p16[j] = <uint16_t>(p16[j] + 1)
        off += nb
    fo_keep(acc)   # keep the reads


cdef void _blocked(const Call* c, const Seg* s, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Elements [lo, hi) of a segment with 16-bit slots, in blocks through float32 scratch."""
    cdef char raw[NSLOT * BLOCK * 4 + 64]
    cdef float* scratch = <float*>((<uintptr_t>raw + 63) & ~(<uintptr_t>63))
    cdef char* q[NSLOT]
    cdef Py_ssize_t off = lo, nb
    cdef uint64_t g
    cdef uint32_t hi32
    cdef int i, d
    cdef char* dst
    cdef fo_loop f = _native_loop(c.kid, False)
    while off < hi:
        nb = hi - off if hi - off < BLOCK else BLOCK
        g = <uint64_t>(s.start + off) + _index_base
        if (g & 0xffffffffULL) + <uint64_t>nb > 0x100000000ULL:
            nb = <Py_ssize_t>(0x100000000ULL - (g & 0xffffffffULL))   # one high word per block
        hi32 = <uint32_t>(g >> 32)
        for i in range(MAX_OPS):
            if not (c.present >> i) & 1:
                continue
            d = s.dt[i]
            if d == FO_F32:
                q[i] = s.a[i] + off * 4
            else:
                q[i] = <char*>(scratch + i * BLOCK)
                T.load[d](<float*>q[i], s.a[i] + off * 2, nb)
        if c.mode == M_KAHAN:
            T.add_comp[s.dt[AUX]](<float*>q[0], s.a[AUX] + off * 2, nb)
        for i in range(MAX_OPS):
            if not (c.present >> i) & 1:
                q[i] = q[0]
        q[AUX] = q[0]
        f(q, nb, c.h)
        for i in range(MAX_OPS):
            d = s.dt[i]
            if i == 1 or not (c.present >> i) & 1 or d == FO_F32:
                continue
            dst = s.a[i] + off * 2
            if i == 0 and c.mode == M_KAHAN:
                T.store_kahan[d](dst, s.a[AUX] + off * 2, <float*>q[0], nb)
            elif c.stochastic:
                T.store_sr[d](dst, <float*>q[i], nb, fo_mix32(c.key[i] ^ hi32), <uint32_t>g)
            else:
                T.store[d](dst, <float*>q[i], nb)
        if c.mode == M_MASTER:
            d = s.dt[AUX]
            dst = s.a[AUX] + off * 2
            if c.stochastic:
                T.store_sr[d](dst, <float*>q[0], nb, fo_mix32(c.key[AUX] ^ hi32), <uint32_t>g)
            else:
                T.store[d](dst, <float*>q[0], nb)
        off += nb


cdef inline void _piece(const Call* c, const Seg* s, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    if hi <= lo:
        return
    if not s.blocked:
        _native(c, s, lo, hi)
    elif c.kid >= K_TRAFFIC and c.kid < K_SCALE:
        _raw_traffic(c, s, lo, hi)
    else:
        _blocked(c, s, lo, hi)


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
    lead array of the segment it falls in (so no two threads write one cache line of it)."""
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


cdef void _work(const Call* c, const Seg* segs, Py_ssize_t nseg, Py_ssize_t lo,
                Py_ssize_t hi) noexcept nogil:
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
        _piece(c, &segs[s], a, b)
        s += 1


cdef void _run(const Call* c, const Seg* segs, Py_ssize_t nseg, int n_threads) noexcept nogil:
    """Apply call `c` to every segment; split over n_threads by total element count."""
    cdef Py_ssize_t total, t, nt
    if nseg <= 0:
        return
    total = segs[nseg - 1].start + segs[nseg - 1].n
    nt = n_threads
    if nt > 1 and total >= _threshold(c.kid):
        for t in prange(nt, num_threads=nt, schedule="static"):
            _work(c, segs, nseg, _bound(segs, nseg, total, t, nt),
                  _bound(segs, nseg, total, t + 1, nt))
    else:
        _work(c, segs, nseg, 0, total)


cdef int _call(Call* c, Seg* segs, Py_ssize_t nseg, int nt) except -1:
    if T == NULL:
        raise RuntimeError("fastopt: no loop table installed (import fastopt, not fastopt._core)")
    with nogil:
        _run(c, segs, nseg, nt)
    return 0
