# ------------------------------------------------------------------------------------------------
# Public single-array kernels.
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

_LOWP_PARAMS = """
    grad_scale : float >= 0, multiplies the gradient first (default 1).
    master : float32 ndarray or None, the master copy of a 16-bit param (updated in place; the
        param receives it rounded).
    compensation : ndarray of the param's 16-bit dtype or None, Kahan compensation (updated in
        place, zero at start).
    rounding : "nearest" (default) or "stochastic", for the 16-bit arrays written.
    seed : int in [0, 2**64), selects the stochastic-rounding stream.
"""



def sgd_step(param, grad, *, lr, weight_decay=0.0, maximize=False, grad_scale=1.0, step=None,
             master=None, compensation=None, rounding="nearest", seed=0, n_threads=None):
    cdef Hyper h
    cdef Call c
    c.kid = _sgd_hyper(&h, lr, weight_decay, maximize, grad_scale)
    c.h = &h
    _lowp(&c, rounding, seed, step)
    _single(&c, R_SGD, (param, grad, None, None, None, None), 0, master, compensation,
            n_threads)


sgd_step.__doc__ = """Plain (mini-batch) gradient descent, in place.

    .. math::
        g \\leftarrow \\pm\\,\\mathrm{grad} + \\lambda\\,\\theta \\qquad
        \\theta \\leftarrow \\theta - \\eta\\, g

    Parameters
    ----------
    param : ndarray, updated in place.
    grad : ndarray, read only.
    lr : float >= 0, the learning rate eta.
    weight_decay : float >= 0, L2 coefficient lambda added to the gradient (the course's
        ``(lambda/m) W`` term; PyTorch SGD's ``weight_decay``).
    maximize : bool, ascend instead of descend (g = -grad).
    step : int >= 1 or None, the update count: needed with ``rounding="stochastic"``.
    n_threads : int or None, None for the library default (see ``fastopt.set_num_threads``).
""" + _LOWP_PARAMS + _NOTE


def momentum_step(param, grad, velocity, *, lr, beta=0.9, dampening=None, nesterov=False,
                  weight_decay=0.0, maximize=False, grad_scale=1.0, step=None, master=None,
                  compensation=None, rounding="nearest", seed=0, n_threads=None):
    cdef Hyper h
    cdef Call c
    c.kid = _momentum_hyper(&h, lr, beta, dampening, nesterov, weight_decay, maximize,
                            grad_scale)
    c.h = &h
    _lowp(&c, rounding, seed, step)
    _single(&c, R_MOMENTUM, (param, grad, velocity, None, None, None), 0, master, compensation,
            n_threads)


momentum_step.__doc__ = """Gradient descent with momentum, in place.

    .. math::
        v \\leftarrow \\beta v + (1 - d)\\, g \\qquad
        \\theta \\leftarrow \\theta - \\eta\\, v
        \\quad(\\text{nesterov: } \\theta \\leftarrow \\theta - \\eta\\,(g + \\beta v))

    where g is the gradient (negated when maximizing, plus ``weight_decay * param``).

    Conventions: ``dampening=None`` (default) means d = beta, the course's exponentially weighted
    average ``v = beta v + (1 - beta) dW``.  ``dampening=0`` is heavy-ball momentum
    ``v = beta v + g``, as PyTorch's SGD once its buffer exists (PyTorch's first step sets
    ``v = g``; ``fastopt.SGD`` reproduces that by passing ``dampening=0`` on its first step).
    Keras' ``v = mu v - lr g`` is the same trajectory as ``dampening=0`` with the lr folded in.

    Parameters
    ----------
    param, velocity : ndarray, updated in place.
    grad : ndarray, read only.
    lr : float >= 0.   beta : float in [0, 1).   dampening : float in [0, 1] or None.
    nesterov : bool.   weight_decay : float >= 0 (L2, added to the gradient).   maximize : bool.
    step : int >= 1 or None (needed with ``rounding="stochastic"``).   n_threads : int or None.
""" + _LOWP_PARAMS + _NOTE


def rmsprop_step(param, grad, sq_avg, *, lr, beta=0.9, eps=1e-8, eps_inside_sqrt=False,
                 weight_decay=0.0, centered=False, grad_avg=None, momentum=0.0,
                 momentum_buf=None, maximize=False, grad_scale=1.0, step=None, master=None,
                 compensation=None, rounding="nearest", seed=0, n_threads=None):
    cdef Hyper h
    cdef Call c
    c.kid = _rmsprop_hyper(&h, lr, beta, eps, eps_inside_sqrt, weight_decay, centered,
                           momentum, maximize, grad_scale)
    c.h = &h
    cdef int opts = (O_CENTERED if centered else 0) | (O_MOMENTUM if h.mom > 0 else 0)
    objs = (param, grad, sq_avg, grad_avg, momentum_buf, None)
    _option_operands(R_RMSPROP, opts, objs, "")
    _lowp(&c, rounding, seed, step)
    _single(&c, R_RMSPROP, objs, _optional(R_RMSPROP, opts), master, compensation, n_threads)


rmsprop_step.__doc__ = """RMSprop, in place.

    .. math::
        s \\leftarrow \\beta s + (1-\\beta)\\, g^2 \\qquad
        \\theta \\leftarrow \\theta - \\eta\\, \\frac{g}{\\sqrt{s} + \\epsilon}

    - ``eps_inside_sqrt=False`` (default): denominator ``sqrt(sq_avg) + eps`` (PyTorch).
      ``eps_inside_sqrt=True``: ``sqrt(sq_avg + eps)`` (the course slides, Keras).
    - ``centered=True``: ``grad_avg <- beta grad_avg + (1 - beta) g`` and ``sq_avg - grad_avg**2``
      goes under the root (PyTorch ``centered``); needs ``grad_avg``.
    - ``momentum > 0``: ``momentum_buf <- momentum momentum_buf + g/denom`` and
      ``param -= lr momentum_buf`` (PyTorch); needs ``momentum_buf``.
    - g is the gradient, negated when maximizing, plus ``weight_decay * param`` (L2).

    Defaults: beta (PyTorch's ``alpha``, Keras' ``rho``) is 0.9 as in the course and Keras;
    PyTorch's default is 0.99.

    Parameters
    ----------
    param, sq_avg, grad_avg, momentum_buf : ndarray, updated in place.
    grad : ndarray, read only.
    lr : float >= 0.   beta : float in [0, 1).   eps : float >= 0.
    step : int >= 1 or None (needed with ``rounding="stochastic"``).   n_threads : int or None.
""" + _LOWP_PARAMS + _NOTE


def adam_step(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              eps_inside_sqrt=False, weight_decay=0.0, decoupled_weight_decay=False,
              amsgrad=False, v_max=None, maximize=False, grad_scale=1.0, master=None,
              compensation=None, rounding="nearest", seed=0, n_threads=None):
    cdef Hyper h
    cdef Call c
    c.kid = _adam_hyper(&h, step, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay,
                        decoupled_weight_decay, amsgrad, maximize, grad_scale)
    c.h = &h
    cdef int opts = O_AMSGRAD if amsgrad else 0
    objs = (param, grad, m, v, v_max, None)
    _option_operands(R_ADAM, opts, objs, "")
    _lowp(&c, rounding, seed, step)
    _single(&c, R_ADAM, objs, _optional(R_ADAM, opts), master, compensation, n_threads)


adam_step.__doc__ = """Adam (and AdamW, AMSGrad), in place.

    .. math::
        m \\leftarrow \\beta_1 m + (1-\\beta_1) g \\qquad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2 \\\\
        \\hat m = \\frac{m}{1-\\beta_1^t} \\qquad \\hat v = \\frac{v}{1-\\beta_2^t} \\qquad
        \\theta \\leftarrow \\theta - \\eta\\,\\frac{\\hat m}{\\sqrt{\\hat v} + \\epsilon}

    - ``eps_inside_sqrt=False`` (default): ``sqrt(v_hat) + eps``, as the course's programming
      assignment, the Adam paper and ``torch.optim.Adam`` (Keras' "epsilon hat" differs by a
      factor ``sqrt(1 - beta2**t)`` on eps).  ``eps_inside_sqrt=True``: ``sqrt(v_hat + eps)``,
      as the course slides (optax's ``eps_root``).
    - ``weight_decay`` with ``decoupled_weight_decay=False``: L2, ``g += weight_decay * param``
      (``torch.optim.Adam``).  With ``decoupled_weight_decay=True``:
      ``param *= 1 - lr * weight_decay`` before the update (``torch.optim.AdamW``).
    - ``amsgrad=True``: ``v_max <- max(v_max, v)`` on the raw ``v``, then bias-corrected and used
      in place of ``v`` (PyTorch's form); needs ``v_max``.
    - ``maximize=True``: g = -grad.

    Parameters
    ----------
    param, m, v, v_max : ndarray, updated in place (m, v, v_max start at zero).
    grad : ndarray, read only.
    step : int >= 1, the number of this update (t above), counted from 1.
    lr : float >= 0.   beta1, beta2 : float in [0, 1).   eps : float >= 0.
    n_threads : int or None.
""" + _LOWP_PARAMS + _NOTE


def ewa_update(avg, value, *, beta, step=None, rounding="nearest", seed=0, n_threads=None):
    cdef Hyper h
    cdef Call c
    c.kid = _ewa_hyper(&h, beta)
    c.h = &h
    _lowp(&c, rounding, seed, step)
    _single(&c, R_EWA, (avg, value, None, None, None, None), 0, None, None, n_threads)


ewa_update.__doc__ = """One step of an exponentially weighted average, in place.

    .. math::
        \\mathrm{avg} \\leftarrow \\beta\\,\\mathrm{avg} + (1-\\beta)\\,\\mathrm{value}

    Starting from ``avg = 0`` this averages over about ``1 / (1 - beta)`` values; divide by
    ``1 - beta**t`` (``fastopt.debias``) to remove the start-up bias.

    Parameters
    ----------
    avg : ndarray, updated in place.   value : ndarray, read only (may be read-only).
    beta : float in [0, 1).   n_threads : int or None.
    step, rounding, seed : the rounding of a 16-bit `avg` (as the step kernels).
""" + _NOTE.replace("`grad`", "`value`")


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
# Multi-array entry points: one native call for a list of arrays (used by the optimizer classes).
# Threads are balanced over the total element count, not over arrays.  Arrays in one call may
# differ in shape and dtype; within each index k the operands share shape and dtype.
# ------------------------------------------------------------------------------------------------

def sgd_step_multi(params, grads, *, lr, weight_decay=0.0, maximize=False, grad_scale=1.0,
                   step=None, masters=None, compensations=None, rounding="nearest", seed=0,
                   n_threads=None, labels=None):
    """`sgd_step` over lists of arrays (or a Plan) in one call: the same result as a loop of
    sgd_step calls (the stochastic-rounding index runs over the arrays concatenated)."""
    cdef Hyper h
    cdef Call c
    c.kid = _sgd_hyper(&h, lr, weight_decay, maximize, grad_scale)
    c.h = &h
    _lowp(&c, rounding, seed, step)
    _multi(&c, params, grads, _NAMES[R_SGD], (), 0, labels, 0, n_threads, -1, masters,
           compensations)


def momentum_step_multi(params, grads, velocities=None, *, lr, beta=0.9, dampening=None,
                        nesterov=False, weight_decay=0.0, maximize=False, grad_scale=1.0,
                        step=None, masters=None, compensations=None, rounding="nearest", seed=0,
                        n_threads=None, labels=None):
    """`momentum_step` over lists of arrays (or a Plan) in one call."""
    cdef Hyper h
    cdef Call c
    c.kid = _momentum_hyper(&h, lr, beta, dampening, nesterov, weight_decay, maximize,
                            grad_scale)
    c.h = &h
    _lowp(&c, rounding, seed, step)
    _multi(&c, params, grads, _NAMES[R_MOMENTUM], (velocities,), 0, labels,
           _needed(R_MOMENTUM, 0), n_threads, -1, masters, compensations)


def rmsprop_step_multi(params, grads, sq_avgs=None, *, lr, beta=0.9, eps=1e-8,
                       eps_inside_sqrt=False, weight_decay=0.0, centered=False, grad_avgs=None,
                       momentum=0.0, momentum_bufs=None, maximize=False, grad_scale=1.0,
                       step=None, masters=None, compensations=None, rounding="nearest", seed=0,
                       n_threads=None, labels=None):
    """`rmsprop_step` over lists of arrays (or a Plan) in one call."""
    cdef Hyper h
    cdef Call c
    c.kid = _rmsprop_hyper(&h, lr, beta, eps, eps_inside_sqrt, weight_decay, centered,
                           momentum, maximize, grad_scale)
    c.h = &h
    cdef int opts = (O_CENTERED if centered else 0) | (O_MOMENTUM if h.mom > 0 else 0)
    if not isinstance(params, Plan):
        _option_operands(R_RMSPROP, opts, (params, grads, sq_avgs, grad_avgs, momentum_bufs),
                         "s")
    _lowp(&c, rounding, seed, step)
    _multi(&c, params, grads, _NAMES[R_RMSPROP], (sq_avgs, grad_avgs, momentum_bufs),
           _optional(R_RMSPROP, opts), labels, _needed(R_RMSPROP, opts), n_threads, -1, masters,
           compensations)


def adam_step_multi(params, grads, ms=None, vs=None, *, step=None, lr=1e-3, beta1=0.9,
                    beta2=0.999, eps=1e-8, eps_inside_sqrt=False, weight_decay=0.0,
                    decoupled_weight_decay=False, amsgrad=False, v_maxs=None, maximize=False,
                    grad_scale=1.0, masters=None, compensations=None, rounding="nearest", seed=0,
                    n_threads=None, labels=None):
    """`adam_step` over lists of arrays (or a Plan) in one call.

    With a Plan, `step` may be left out: the Plan's ``count + 1`` is used.  A `step` given with a
    Plan must equal ``count + 1`` (else RuntimeError: the step count went out of sync, e.g. two
    threads stepping one optimizer)."""
    cdef Hyper h
    cdef Call c
    cdef long long expect = -1
    if isinstance(params, Plan):
        if step is None:
            step = (<Plan>params)._count + 1
        expect = _step(step) - 1
    elif step is None:
        raise TypeError("adam_step_multi needs step= (the update count, from 1)")
    c.kid = _adam_hyper(&h, step, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay,
                        decoupled_weight_decay, amsgrad, maximize, grad_scale)
    c.h = &h
    cdef int opts = O_AMSGRAD if amsgrad else 0
    if not isinstance(params, Plan):
        _option_operands(R_ADAM, opts, (params, grads, ms, vs, v_maxs), "s")
    _lowp(&c, rounding, seed, step)
    _multi(&c, params, grads, _NAMES[R_ADAM], (ms, vs, v_maxs), _optional(R_ADAM, opts), labels,
           _needed(R_ADAM, opts), n_threads, expect, masters, compensations)


def ewa_update_multi(avgs, values, *, beta, step=None, rounding="nearest", seed=0,
                     n_threads=None, labels=None):
    """`ewa_update` over lists of arrays (or a Plan over the averages) in one call."""
    cdef Hyper h
    cdef Call c
    c.kid = _ewa_hyper(&h, beta)
    c.h = &h
    _lowp(&c, rounding, seed, step)
    _multi(&c, avgs, values, _NAMES[R_EWA], (), 0, labels, 0, n_threads)


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


cdef int _lowp(Call* c, object rounding, object seed, object step) except -1:
    """Validate the rounding keywords; with stochastic rounding, the per-slot hash keys."""
    cdef uint64_t sd, st
    cdef int i
    if type(rounding) is not str:
        raise TypeError(f"rounding must be 'nearest' or 'stochastic', got "
                        f"{type(rounding).__name__}")
    if not (type(seed) is int and 0 <= seed < 18446744073709551616):
        seed = _int(seed, "seed", 0, 18446744073709551616)
    if step is not None:
        st = <uint64_t>_step(step)
    if rounding == "nearest":
        c.stochastic = 0
        return 0
    if rounding != "stochastic":
        raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
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
