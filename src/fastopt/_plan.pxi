# Segment tables: filling one segment (the checks of one array index), tables for the multi-array
# calls, the overlap sweep across arrays, and the Plan an optimizer keeps for its life.
#
# Operand objects travel as tuples of NSLOT entries (None: absent): the rule's slots 0..5, then
# slot AUX.  In master mode the float32 master sits in slot 0 (the update is computed on it) and
# the 16-bit parameter in AUX; `names` is arranged the same way, so every message names the
# array it is about.


cdef inline int _any_16_bit(const Seg* s) noexcept nogil:
    """1 when a slot of s holds float16 or bfloat16 (the segment runs through the blocks)."""
    cdef int i
    for i in range(NSLOT):
        if s.dt[i] == FO_F16 or s.dt[i] == FO_BF16:
            return 1
    return 0


cdef int _fill_seg(Seg* s, tuple names, tuple ops, int optional, object suffix,
                   int mode) except -1:
    """Check the operands of one update (slot 0 and the state slots are written, slot 1 is
    read-only) and fill segment s.  Slot i may be None when bit i of `optional` is set; a None
    slot repeats slot 0's pointer and is never touched by the loops."""
    cdef object o0 = ops[0], o
    cdef int i, j, p, t, lead_t
    cdef bint present[NSLOT]
    cdef Py_ssize_t nb[NSLOT]
    cdef str pname
    _check_array(o0, names, 0, suffix, True, None)
    lead_t = _code(<cnp.ndarray>o0)
    present[0] = True
    present[AUX] = mode != M_PLAIN
    if mode == M_MASTER:
        _check_array(ops[AUX], names, AUX, suffix, True, o0)
        p = _code(<cnp.ndarray>ops[AUX])
        pname = names[AUX]
        if p != FO_F16 and p != FO_BF16:
            raise TypeError(f"master weights are for float16/bfloat16 parameters, but "
                            f"{_name(names, AUX, suffix)} has dtype {_TYPE_NAMES[p]}")
        if lead_t != FO_F32:
            raise TypeError(f"{_name(names, 0, suffix)} must have dtype float32 (the master "
                            f"copy of a {_TYPE_NAMES[p]} parameter), got {_TYPE_NAMES[lead_t]}")
    else:
        p = lead_t
        pname = names[0]
        if mode == M_KAHAN:
            if p != FO_F16 and p != FO_BF16:
                raise TypeError(f"Kahan compensation is for float16/bfloat16 parameters, but "
                                f"{_name(names, 0, suffix)} has dtype {_TYPE_NAMES[p]}")
            _check_array(ops[AUX], names, AUX, suffix, True, o0)
            t = _code(<cnp.ndarray>ops[AUX])
            if t != p:
                raise TypeError(f"{_name(names, AUX, suffix)} has dtype {_TYPE_NAMES[t]} but "
                                f"{_name(names, 0, suffix)} has dtype {_TYPE_NAMES[p]}: the "
                                f"compensation has the parameter's dtype")
    for i in range(1, MAX_OPS):
        o = ops[i]
        present[i] = o is not None
        if not present[i]:
            if not (optional >> i) & 1 and names[i]:
                _check_array(None, names, i, suffix, False, o0)   # raises the TypeError for None
            continue
        _check_array(o, names, i, suffix, i != 1, o0)
        _check_type(names, i, suffix, p, _code(<cnp.ndarray>o), pname)
    s.n = cnp.PyArray_SIZE(<cnp.ndarray>o0)
    s.isz = cnp.PyArray_ITEMSIZE(<cnp.ndarray>o0)
    for i in range(NSLOT):
        if present[i]:
            o = ops[i]
            s.a[i] = <char*>cnp.PyArray_DATA(<cnp.ndarray>o)
            s.dt[i] = <signed char>_code(<cnp.ndarray>o)
            nb[i] = s.n * cnp.PyArray_ITEMSIZE(<cnp.ndarray>o)
        else:
            s.a[i] = s.a[0]
            s.dt[i] = s.dt[0]
            nb[i] = 0
    s.blocked = _any_16_bit(s)
    if s.n > 0:
        for i in range(NSLOT):
            for j in range(i + 1, NSLOT):
                if (present[i] and present[j] and s.a[i] < s.a[j] + nb[j]
                        and s.a[j] < s.a[i] + nb[i]):
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


cdef dict _PLURALS = {}


cdef str _plural(str name):
    # the keyword names of the multi-array entry points (from the registry)
    return _PLURALS.get(name, name + "s")


cdef int _check_labels(object labels, Py_ssize_t n, str what) except -1:
    """labels (names used in messages) must be None or a list/tuple of one entry per array."""
    if labels is None:
        return 0
    if not isinstance(labels, (list, tuple)):
        raise TypeError(f"labels must be a list or tuple, got {type(labels).__name__}")
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries but {what} has {n}")
    return 0


cdef _Table _fill_table(tuple names, tuple lists, int optional, object labels, int mode):
    """Check the operands of k updates (lists[i][k] is slot i of update k, NSLOT lists; an
    absent slot's list is None) and fill a segment table.  Raises before anything is written."""
    cdef Py_ssize_t k, off = 0, n
    cdef int i
    cdef _Table tab
    cdef int lead = AUX if mode == M_MASTER else 0    # the list named like the params
    for i in range(NSLOT):
        if lists[i] is not None and not isinstance(lists[i], (list, tuple)):
            raise TypeError(f"{_plural(names[i])} must be a list or tuple of arrays, "
                            f"got {type(lists[i]).__name__}")
    n = len(lists[lead])
    for i in range(NSLOT):
        if lists[i] is not None and len(lists[i]) != n:
            raise ValueError(f"{_plural(names[i])} has {len(lists[i])} arrays but "
                             f"{_plural(names[lead])} has {n}")
    _check_labels(labels, n, _plural(names[lead]))
    tab = _Table(n)
    for k in range(n):
        _fill_seg(&tab.segs[k], names,
                  tuple([None if l is None else l[k] for l in lists]), optional,
                  k if labels is None else labels[k], mode)
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
    cdef int i
    cdef Interval* iv = <Interval*>malloc(max(tab.n * NSLOT, 1) * sizeof(Interval))
    cdef Interval last_w, last_any
    cdef bint have_w = False, have_any = False
    cdef Interval* bad = NULL
    cdef Interval* other = NULL
    if iv == NULL:
        raise MemoryError()
    try:
        for k in range(tab.n):
            if tab.segs[k].n == 0:
                continue
            for i in range(NSLOT):
                if lists[i] is None or lists[i][k] is None:
                    continue
                nb = tab.segs[k].n * _isz(tab.segs[k].dt[i])
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


cdef tuple _arrange(int mode, tuple names, tuple objs, object aux):
    """(names, objects) as NSLOT-tuples in slot order: the rule's names/objects (padded), then
    AUX; in master mode the master takes slot 0 and the parameter AUX."""
    cdef int pad = MAX_OPS - len(names)
    names = names + ("",) * pad
    objs = objs + (None,) * (MAX_OPS - len(objs))
    if mode == M_MASTER:
        return ((_AUX_NAME[mode],) + names[1:] + (names[0],), (aux,) + objs[1:] + (objs[0],))
    return names + (_AUX_NAME[mode],), objs + (aux,)


cdef tuple _AUX_NAME = ("", "master", "compensation")


cdef class TensorGrads    # _torch.pxi


cdef class Plan:
    """A checked, reusable segment table for arrays that live as long as an optimizer.

    ``Plan(params, names, state, labels=None, *, masters=None, compensations=None)`` checks the
    parameters (written in place), the state lists (``state[j]`` is operand slot 2 + j: e.g.
    ``(ms, vs, v_maxs)`` for Adam, None for an unused slot), the float32 master copies or the
    Kahan compensation buffers of 16-bit parameters, once, and that no two of them overlap.
    Each step then only binds the gradients: they are checked against their parameter (dtype,
    shape, contiguity) and, by binary search in the sorted list of written buffers, for overlap
    with any of them.

    The multi-array kernels accept a Plan in place of their parameter list (the state lists,
    masters and compensations are then taken from the Plan and must be left out).

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
    cdef readonly int mode      # 0 plain, 1 master weights, 2 Kahan compensation
    cdef bint busy
    cdef long long _count
    cdef list _seen      # TensorGrads: weak references to the gradients checked last time

    property count:
        """Calls completed on this Plan (an optimizer's step count); settable (checkpoints)."""
        def __get__(self):
            return self._count

        def __set__(self, value):
            self._count = _int(value, "count", 0, MAX_COUNT)

    def __cinit__(self, list params, tuple names, tuple state, labels=None, *, masters=None,
                  compensations=None):
        cdef Py_ssize_t k, nb
        cdef int i, optional = 2
        if masters is not None and compensations is not None:
            raise ValueError("master weights and Kahan compensation are alternatives: "
                             "pass one of them")
        self.mode = (M_MASTER if masters is not None else
                     (M_KAHAN if compensations is not None else M_PLAIN))
        if len(names) > MAX_OPS or len(state) > MAX_OPS - 2:
            raise ValueError(f"a rule has at most {MAX_OPS} operand slots")
        names, lists = _arrange(self.mode, names, (params, None) + tuple(state),
                                masters if masters is not None else compensations)
        self.present = 1
        for i in range(2, NSLOT):
            if lists[i] is None:
                optional |= 1 << i
            else:
                self.present |= 1 << i
        self.tab = _fill_table(names, lists, optional, labels, self.mode)
        # private copies of the lists: a caller appending to its own list cannot desynchronise us
        lists = tuple(None if l is None else list(l) for l in lists)
        labels = None if labels is None else tuple(labels)
        self.params = lists[AUX] if self.mode == M_MASTER else lists[0]
        self.names, self.labels, self.keep = names, labels, lists
        self.written = <Interval*>malloc(max(self.tab.n * NSLOT, 1) * sizeof(Interval))
        if self.written == NULL:
            raise MemoryError()
        self.nw = 0
        for k in range(self.tab.n):
            for i in range(NSLOT):
                nb = self.tab.segs[k].n * _isz(self.tab.segs[k].dt[i])
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
                and cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISWRITEABLE(a)
                and _code(a) == s.dt[i]):
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
        cdef int i, p
        cdef uintptr_t g0, g1
        cdef object g, label
        cdef Seg* s
        if (needed & self.present) != needed:
            raise ValueError("this Plan lacks a state list the update needs")
        if isinstance(grads, TensorGrads):
            return (<TensorGrads>grads).bind_into(self)
        if not isinstance(grads, list):
            raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
        if len(<list>grads) != n:
            raise ValueError(f"grads has {len(<list>grads)} arrays but params has {n}")
        for k in range(n):
            g = (<list>grads)[k]
            s = &self.tab.segs[k]
            for i in range(NSLOT):
                if i != 1 and (self.present >> i) & 1:
                    self._recheck(<cnp.ndarray>(<list>self.keep[i])[k], s, i, k)
            label = k if self.labels is None else self.labels[k]
            _check_array(g, self.names, 1, label, False, self.params[k])
            p = s.dt[AUX] if self.mode == M_MASTER else s.dt[0]
            _check_type(self.names, 1, label, p, _code(<cnp.ndarray>g),
                        self.names[AUX] if self.mode == M_MASTER else self.names[0])
            s.a[1] = <char*>cnp.PyArray_DATA(<cnp.ndarray>g)
            s.dt[1] = <signed char>_code(<cnp.ndarray>g)
            s.blocked = _any_16_bit(s)
            if s.n == 0:
                continue
            g0 = <uintptr_t>s.a[1]
            g1 = g0 + <uintptr_t>(s.n * _isz(s.dt[1]))
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


cdef int _multi(Call* c, object params, object grads, tuple names, tuple state, int optional,
                object labels, int needed, object n_threads, long long expect=-1,
                object masters=None, object compensations=None) except -1:
    """One multi-array call: from a Plan (binding the gradients; refused while another thread is
    inside a call on it; its count incremented with the update) or checked from scratch from the
    lists.  `expect`: the count the Plan must have (Adam's step - 1), or -1."""
    cdef Plan plan
    cdef _Table t
    cdef int nt = _threads(n_threads)
    cdef int mode
    if isinstance(params, Plan):
        for lst in state:
            if lst is not None:
                raise ValueError("with a Plan, leave the state lists out: the Plan holds them")
        if masters is not None or compensations is not None:
            raise ValueError("with a Plan, leave masters and compensations out: the Plan holds "
                             "them")
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
            _check_mode(c, plan.mode)
            c.mode = plan.mode
            c.present = plan.present | 2
            _call(c, plan.tab.segs, plan.tab.n, nt)
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
    if masters is not None and compensations is not None:
        raise ValueError("master weights and Kahan compensation are alternatives: pass one of "
                         "masters= and compensations=")
    mode = M_MASTER if masters is not None else (M_KAHAN if compensations is not None else M_PLAIN)
    _check_mode(c, mode)
    names, lists = _arrange(mode, names, (params, grads) + state,
                            masters if masters is not None else compensations)
    t = _fill_table(names, lists, optional, labels, mode)
    c.mode = mode
    c.present = _present(lists)
    _call(c, t.segs, t.n, nt)
    return 0


cdef int _present(tuple objs) noexcept:
    cdef int i, bits = 0
    for i in range(NSLOT):
        if objs[i] is not None:
            bits |= 1 << i
    return bits


cdef int _check_mode(Call* c, int mode) except -1:
    if mode == M_KAHAN and c.stochastic:
        raise ValueError("Kahan compensation and stochastic rounding are alternatives: the "
                         "compensation needs the parameter rounded to nearest")
    return 0


