# ------------------------------------------------------------------------------------------------
# The public kernels' shared pieces.  The kernels themselves (`<rule>_step` and
# `<rule>_step_multi` for every rule of the registry) are generated: _entry_gen.pxi, included at
# the end of this file.
# ------------------------------------------------------------------------------------------------

_NOTE = """
    Storage and compute types (one shape per call, treated as flat; C-contiguous, aligned, native
    byte order, each array its own buffer):

    ==================  ==========================  =========================================
    param               grad                        state arrays                 compute
    ==================  ==========================  =========================================
    float64             float64                     float64                      float64
    float32             float32                     float32 or bfloat16          float32
    float16, bfloat16   the param's dtype, float32  float32, bfloat16, param's   float32
    ==================  ==========================  =========================================

    16-bit arrays are loaded into float32, updated, and stored back rounded to nearest even
    (``rounding="nearest"``) or stochastically (``rounding="stochastic"``: unbiased, with random
    bits from a counter-based hash of ``(seed, step, element index)``, so bitwise reproducible
    for every thread count).  A 16-bit parameter may carry ``master=`` (a float32 copy: the
    update is computed on it and the parameter receives it rounded, in the same pass) or
    ``compensation=`` (Kahan: a buffer of the parameter's dtype that keeps what the rounding
    lost).  ``grad_scale`` multiplies the gradient before anything else, in the compute type
    (loss-scale unscaling, clipping), in the same pass.

    `grad` may be read-only; the other arrays are updated in place.  The function returns None.
    Scalars (bias corrections, step sizes) are computed once per call in float64 and rounded to
    the compute type.  NaN and Inf in `grad` are not checked: they propagate through the formula
    to the parameter and the state, as in PyTorch.  Results are bitwise identical for every
    `n_threads` and every instruction-set level.

    Raises TypeError (not an ndarray, an unsupported dtype or dtype combination) or ValueError
    (shape mismatch, non-contiguous or read-only array, overlapping arrays, hyperparameter out of
    range) before any array is written.
"""

_WD_PARAMS = """
    weight_decay, decoupled_weight_decay, fully_decoupled : the weight-decay form (every step
        rule).  decoupled_weight_decay=False: L2, ``g += weight_decay * param`` (torch.optim's
        ``weight_decay``).  decoupled_weight_decay=True: ``param *= 1 - lr * weight_decay``
        before the update (AdamW, Keras 3's ``weight_decay``, torch's
        ``decoupled_weight_decay``).  fully_decoupled=True: ``param *= 1 - weight_decay``,
        independent of lr (optimi's fully decoupled form).
"""

_EPS_PARAMS = """
    eps_mode : "torch" (default) ``sqrt(v_hat) + eps``; "inside" ``sqrt(v_hat + eps)`` (the course
        slides, optax's ``eps_root``); "keras" the "epsilon hat" form ``lr sqrt(1 - beta2**t) /
        (1 - beta1**t) m / (sqrt(v) + eps)`` (Keras 3).  ``eps_inside_sqrt=True`` is the old
        spelling of eps_mode="inside".
"""

_LOWP_PARAMS = """
    grad_scale : float >= 0, multiplies the gradient first (default 1).
    master : float32 ndarray or None, the master copy of a 16-bit param (updated in place; the
        param receives it rounded).
    compensation : ndarray of the param's 16-bit dtype or None, Kahan compensation (updated in
        place, zero at start).
    rounding : "nearest" (default) or "stochastic", for the 16-bit arrays written.
    seed : int in [0, 2**64), selects the stochastic-rounding stream.
"""



def same_traffic_step(written, value, *state, n_threads=None):
    """The same-traffic reference kernel (benchmarks only).

    Reads `value` and every written array, and writes ``x += value`` to `written` and each array
    in `state`: the same bytes an update with that many written arrays moves (Adam: written=param,
    state=(m, v) -> 4 reads, 3 writes), with trivial arithmetic, through the same driver (threads,
    64-byte peeling).  A kernel's time divided by this one's is how close it runs to the memory
    limit.  With 16-bit arrays it adds 1 to the raw bits of each written array (no conversion):
    the bytes of that storage pattern, at memory speed.
    """
    cdef Hyper h
    cdef Call c
    cdef Seg s
    cdef int n_rw = 1 + len(state)
    if n_rw > 4:
        raise ValueError("same_traffic_step takes at most 3 state arrays")
    _zero(&h)
    c.kid = K_TRAFFIC + n_rw
    c.h = &h
    c.stochastic = 0
    c.mode = M_PLAIN
    objs = (written, value) + tuple(state) + (None,) * (NSLOT - 1 - n_rw)
    _fill_seg(&s, ("written", "value", "state[0]", "state[1]", "state[2]", "", "")[:1 + n_rw]
              + ("",) * (NSLOT - 1 - n_rw), objs, 0, None, M_PLAIN)
    s.start = 0
    c.present = _present(objs)
    _call(&c, &s, 1, _threads(n_threads))


# ------------------------------------------------------------------------------------------------
# Shared pieces of the entry points.
# ------------------------------------------------------------------------------------------------

# Operand names of every rule (MAX_OPS entries, slot order), and with AUX (NSLOT), from the
# registry (filled at import, see _core.pyx).
cdef list _NAMES = []
cdef list _NAMES7 = []


# Per rule, from the registry: (slot, option bit, operand name, "amsgrad=True") for each operand
# an option needs, and the bits of the state slots that are always present.
cdef list _NEEDS = []
cdef list _ALWAYS = []


cdef int _optional(int rule, int opts) except -1:
    """Slot bits that may be None: the operands whose option is off."""
    cdef int bits = 0
    for slot, bit, name, when in <list>_NEEDS[rule]:
        if not (opts & <int>bit):
            bits |= 1 << <int>slot
    return bits


cdef int _needed(int rule, int opts) except -1:
    """Slot bits of the state a call with `opts` needs (for a Plan's check)."""
    cdef int bits = <int>_ALWAYS[rule]
    for slot, bit, name, when in <list>_NEEDS[rule]:
        if opts & <int>bit:
            bits |= 1 << <int>slot
    return bits


cdef int _option_operands(int rule, int opts, tuple objs, str s) except -1:
    """An operand an option needs is given exactly when the option is on."""
    for slot, bit, name, when in <list>_NEEDS[rule]:
        if opts & <int>bit and objs[slot] is None:
            raise ValueError(f"{when} needs {name}{s} (an array like param, zero at start)")
        if not (opts & <int>bit) and objs[slot] is not None:
            raise ValueError(f"{name}{s} is only used with {when}")
    return 0


cdef int _single(Call* c, int rule, tuple objs, int optional, object master,
                 object compensation, object n_threads) except -1:
    """A single-array call: check, fill one segment, run."""
    cdef Seg s
    cdef int mode = M_PLAIN
    cdef tuple names = <tuple>_NAMES7[rule]
    if master is not None:
        if compensation is not None:
            raise ValueError("master= and compensation= are alternatives: pass one of them")
        mode = M_MASTER
        names, objs = _arrange(M_MASTER, <tuple>_NAMES[rule], objs, master)
    elif compensation is not None:
        mode = M_KAHAN
        names, objs = _arrange(M_KAHAN, <tuple>_NAMES[rule], objs, compensation)
    else:
        objs = objs + (None,)
    _check_mode(c, mode)
    _fill_seg(&s, names, objs, optional, None, mode)
    s.start = 0
    c.mode = mode
    c.present = _present(objs)
    _call(c, &s, 1, _threads(n_threads))
    return 0


cdef uint32_t _slot_key(uint64_t seed, uint64_t step, int slot) noexcept nogil:
    """The stochastic-rounding key of operand slot `slot` (fastopt.reference.slot_key)."""
    cdef uint32_t k = fo_mix32(<uint32_t>seed ^ 0x9E3779B9u)
    k = fo_mix32(k ^ <uint32_t>(seed >> 32))
    k = fo_mix32(k ^ <uint32_t>step)
    k = fo_mix32(k ^ <uint32_t>(step >> 32))
    return fo_mix32(k ^ <uint32_t>((<uint32_t>slot + 1u) * 0x85EBCA6Bu))


cdef bint _stochastic(object rounding) except -1:
    """True for rounding="stochastic", False for "nearest"; TypeError/ValueError otherwise."""
    if type(rounding) is not str:
        raise TypeError(f"rounding must be 'nearest' or 'stochastic', got "
                        f"{type(rounding).__name__}")
    if rounding == "nearest":
        return False
    if rounding == "stochastic":
        return True
    raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")


def check_rounding(rounding):
    """Return True for rounding="stochastic", False for "nearest"; TypeError unless a str,
    ValueError for any other string (the kernels' rule, for the Python layers)."""
    return _stochastic(rounding)


cdef int _lowp(Call* c, object rounding, object seed, object step) except -1:
    """Validate the rounding keywords; with stochastic rounding, the per-slot hash keys."""
    cdef uint64_t sd, st
    cdef int i
    cdef bint stochastic = _stochastic(rounding)
    if not (type(seed) is int and 0 <= seed < 18446744073709551616):
        seed = _int(seed, "seed", 0, 18446744073709551616)
    if step is not None:
        st = <uint64_t>_step(step)
    if not stochastic:
        c.stochastic = 0
        return 0
    if step is None:
        raise ValueError("rounding='stochastic' needs step= (the update count, from 1): the "
                         "random bits are a hash of (seed, step, element index)")
    sd = <uint64_t>seed
    c.stochastic = 1
    for i in range(MAX_OPS):
        c.key[i] = _slot_key(sd, st, i)
    c.key[AUX] = c.key[0]      # master mode: the 16-bit parameter uses the parameter's bits
    return 0


def slot_key(seed, step, slot):
    """The stochastic-rounding key of operand `slot` for `seed` and `step` (for the twin)."""
    return _slot_key(<uint64_t>_int(seed, "seed", 0, 18446744073709551616),
                     <uint64_t>_step(step), <int>_int(slot, "slot", 0, NSLOT))


include "_entry_gen.pxi"
