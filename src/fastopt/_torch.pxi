# ------------------------------------------------------------------------------------------------
# fastopt.torch's fast path: gradients as torch tensors, fetched and checked in one native pass
# (included after _plan.pxi and _reduce.pxi: it binds into a Plan and reduces with _reduce).
# The core never imports torch: fastopt.torch registers torch's layout and dtype objects.
# ------------------------------------------------------------------------------------------------

cdef object _T_STRIDED = None
cdef dict _T_CODES = {}


def torch_types(strided, float32, float64, float16, bfloat16):
    """Register torch's ``torch.strided`` layout and its four float dtypes (fastopt.torch calls
    this once; TensorGrads refuses to run before)."""
    global _T_STRIDED
    _T_STRIDED = strided
    _T_CODES.clear()
    _T_CODES.update({float32: FO_F32, float64: FO_F64, float16: FO_F16, bfloat16: FO_BF16})


class TensorMismatch(ValueError):
    """A parameter or gradient no longer matches what a Plan holds (TensorGrads): the caller
    falls back to its full checks, which say what changed.  Nothing was written."""


cdef inline uintptr_t _ptr(object t) except? 0:
    cdef uintptr_t a = t.data_ptr()
    return a


cdef class TensorGrads:
    """The gradients of a Plan's parameters, given as the torch parameters themselves.

    ``TensorGrads(plan, params)``: `params` are the torch tensors whose storage the Plan's
    parameter arrays view, in the Plan's order.  The constructor reads every ``p.grad`` and
    checks, before anything is written:

    * each parameter still has the storage the Plan holds (``data_ptr()``; ``numel()`` too
      with a new gradient): after ``p.data = ...`` or ``model.to(dtype)`` the old buffer is
      never updated;
    * each gradient is present, a strided CPU tensor that does not require grad, with the
      parameter's number of elements, a dtype the parameter accepts, contiguous or with the
      parameter's own strides (a dense non-overlapping layout such as channels_last, which the
      caller checked for the parameter), and overlapping no buffer the update writes.

    A gradient object that passed on the Plan's previous tensor bind (the same object, alive)
    is re-checked for its pointer only: each torch attribute read costs about 0.1 us, the
    whole of this path's cost per tensor.  Any mismatch raises TensorMismatch.  The
    object keeps the gradients alive and is passed as the grads of ONE multi-array kernel call
    on that Plan (``adam_step_multi(plan, tg, ...)``); :meth:`norm_and_finite` reduces them.
    """
    cdef Plan plan
    cdef list grads
    cdef uintptr_t* ptrs
    cdef signed char* dts
    cdef bint used

    def __cinit__(self, Plan plan not None, list params not None):
        cdef Py_ssize_t k, n = plan.tab.n, lo, hi, mid
        cdef Seg* s
        cdef object p, g, r
        cdef uintptr_t a, g0, g1
        cdef int pc, t
        cdef list seen
        if _T_STRIDED is None:
            raise RuntimeError("TensorGrads needs torch_types() first")
        if len(params) != n:
            raise ValueError(f"params has {len(params)} tensors but the Plan has {n}")
        self.ptrs = <uintptr_t*>malloc(max(n, 1) * sizeof(uintptr_t))
        self.dts = <signed char*>malloc(max(n, 1) * sizeof(signed char))
        if self.ptrs == NULL or self.dts == NULL:
            raise MemoryError()
        if plan._seen is None or len(plan._seen) != n:
            plan._seen = [None] * n
        seen = plan._seen
        self.plan = plan
        self.grads = [None] * n
        for k in range(n):
            s = &plan.tab.segs[k]
            p = params[k]
            a = <uintptr_t>(s.a[AUX] if plan.mode == M_MASTER else s.a[0])
            if _ptr(p) != a:
                # the parameter's storage moved (p.data = ..., model.to(...)): never write the
                # old buffer.  (Its size is the Plan's while its pointer is: a tensor of the
                # same start is a view of the same live storage, which never shrinks in place.)
                raise TensorMismatch(k)
            g = p.grad
            if g is None:
                raise TensorMismatch(k)
            r = seen[k]
            if r is not None and (<tuple>r)[0]() is g:
                # checked before and alive since: only its storage can have changed (the same
                # pointer is the same live storage, as for the parameter)
                if _ptr(g) != <uintptr_t>(<tuple>r)[1]:
                    raise TensorMismatch(k)
                self.ptrs[k] = <uintptr_t>(<tuple>r)[1]
                self.dts[k] = <signed char>(<tuple>r)[2]
                self.grads[k] = g
                continue
            pc = s.dt[AUX] if plan.mode == M_MASTER else s.dt[0]
            t = _T_CODES.get(g.dtype, -1)
            if (g.layout is not _T_STRIDED or not g.is_cpu or g.requires_grad
                    or g.numel() != s.n or p.numel() != s.n or t < 0 or not _type_ok(pc, 1, t)):
                raise TensorMismatch(k)
            if not g.is_contiguous() and (p.is_contiguous() or g.stride() != p.stride()):
                raise TensorMismatch(k)
            g0 = _ptr(g)
            if s.n > 0:
                g1 = g0 + <uintptr_t>(s.n * _isz(t))
                lo, hi = 0, plan.nw
                while lo < hi:
                    mid = (lo + hi) // 2
                    if plan.written[mid].hi <= g0:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo < plan.nw and plan.written[lo].lo < g1:
                    raise TensorMismatch(k)
            self.ptrs[k] = g0
            self.dts[k] = <signed char>t
            self.grads[k] = g
            seen[k] = (PyWeakref_NewRef(g, None), g0, t)

    def __dealloc__(self):
        free(self.ptrs)
        free(self.dts)

    cdef int bind_into(self, Plan plan) except -1:
        cdef Py_ssize_t k
        cdef Seg* s
        if plan is not self.plan:
            raise ValueError("these TensorGrads were checked against another Plan")
        if self.used:
            raise RuntimeError("TensorGrads are good for one kernel call")
        self.used = True
        for k in range(plan.tab.n):
            s = &plan.tab.segs[k]
            s.a[1] = <char*>self.ptrs[k]
            s.dt[1] = self.dts[k]
            s.blocked = _any_16_bit(s)
        return 0

    def norm_and_finite(self, *, n_threads=None):
        """(sum of squares, all finite) of the gradients: :func:`norm_and_finite_multi`'s blocks
        and order, so the same value as on NumPy views of them."""
        cdef Py_ssize_t k, nb = 0, b = 0, n, off, isz
        cdef Block* blocks
        cdef double* out
        cdef double total = 0.0
        cdef bint ok = True
        cdef int nt = _threads(n_threads)
        if T == NULL:
            raise RuntimeError("fastopt: no loop table installed")
        for k in range(self.plan.tab.n):
            nb += (self.plan.tab.segs[k].n + REDUCE_BLOCK - 1) // REDUCE_BLOCK
        blocks = <Block*>malloc(max(nb, 1) * sizeof(Block))
        out = <double*>malloc(max(nb, 1) * sizeof(double))
        if blocks == NULL or out == NULL:
            free(blocks); free(out)
            raise MemoryError()
        try:
            for k in range(self.plan.tab.n):
                n = self.plan.tab.segs[k].n
                isz = _isz(self.dts[k])
                off = 0
                while off < n:
                    blocks[b].x = <const char*>self.ptrs[k] + off * isz
                    blocks[b].n = min(<Py_ssize_t>REDUCE_BLOCK, n - off)
                    blocks[b].dt = self.dts[k]
                    off += REDUCE_BLOCK
                    b += 1
            with nogil:
                _reduce(0, blocks, nb, out, nt)
            for b in range(nb):
                total += out[b]
                if not isfinite(out[b]) and ok:
                    ok = T.finite[blocks[b].dt](blocks[b].x, blocks[b].n) != 0
        finally:
            free(out)
            free(blocks)
        return total, bool(ok)
