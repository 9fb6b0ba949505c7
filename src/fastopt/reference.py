"""Plain-NumPy twins of every fastopt kernel: the test oracle and the benchmark baseline.

Each function has the same signature and the same semantics as the fast kernel of the same name in
:mod:`fastopt` (``n_threads`` is accepted and ignored) and is written the obvious way, like the
course's NumPy code.  They update their arrays in place (``x[...] = ...``) and return None, except
``ewa`` and ``debias``, which return arrays.  They do not validate their arguments beyond what
NumPy does: use them as a readable statement of the formulas, not as an API.

Scalars follow fastopt's precision rule: powers of beta, bias corrections and step sizes are
Python floats (float64) that NumPy rounds once to the array dtype.
"""

import numpy as np


def _grad(param, grad, weight_decay, maximize, lr=0.0, decoupled=False, fully=False):
    """The gradient (negated to maximize) plus the L2 term; the decoupled weight-decay forms
    instead shrink the parameter first: W *= 1 - lr wd (decoupled) or 1 - wd (fully)."""
    g = -grad if maximize else grad
    if decoupled or fully:
        param[...] = param * (1 - (weight_decay if fully else lr * weight_decay))
    elif weight_decay != 0:
        g = g + weight_decay * param
    return g


def _eps_mode(eps_mode, eps_inside_sqrt):
    return "inside" if eps_inside_sqrt else eps_mode


def sgd_step(param, grad, *, lr, weight_decay=0.0, decoupled_weight_decay=False,
             fully_decoupled=False, maximize=False, n_threads=None):
    """W = W - lr * dW."""
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    param[...] = param - lr * g


def momentum_step(param, grad, velocity, *, lr, beta=0.9, dampening=None, nesterov=False,
                  weight_decay=0.0, decoupled_weight_decay=False, fully_decoupled=False,
                  maximize=False, n_threads=None):
    """v = beta v + (1 - dampening) dW; W = W - lr v (nesterov: W = W - lr (dW + beta v))."""
    if dampening is None:
        dampening = beta
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    velocity[...] = beta * velocity + (1 - dampening) * g
    update = g + beta * velocity if nesterov else velocity
    param[...] = param - lr * update


def rmsprop_step(param, grad, sq_avg, *, lr, beta=0.9, eps=1e-8, eps_inside_sqrt=False,
                 weight_decay=0.0, decoupled_weight_decay=False, fully_decoupled=False,
                 centered=False, grad_avg=None, momentum=0.0, momentum_buf=None, maximize=False,
                 n_threads=None):
    """S = beta S + (1 - beta) dW**2; W = W - lr dW / (sqrt(S) + eps)."""
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    sq_avg[...] = beta * sq_avg + (1 - beta) * g ** 2
    s = sq_avg
    if centered:
        grad_avg[...] = grad_avg + (1 - beta) * (g - grad_avg)
        s = sq_avg - grad_avg ** 2
    if eps_inside_sqrt:
        denom = np.sqrt(s + eps)
    else:
        denom = np.sqrt(s) + eps
    if momentum > 0:
        momentum_buf[...] = momentum * momentum_buf + g / denom
        param[...] = param - lr * momentum_buf
    else:
        param[...] = param - lr * (g / denom)


def adam_step(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              eps_mode="torch", eps_inside_sqrt=False, weight_decay=0.0,
              decoupled_weight_decay=False, fully_decoupled=False, amsgrad=False, v_max=None,
              maximize=False, n_threads=None):
    """The course's Adam: m, v, bias-corrected m_hat, v_hat, W -= lr m_hat / (sqrt(v_hat) + eps)."""
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g ** 2
    v_used = v
    if amsgrad:
        np.maximum(v_max, v, out=v_max)
        v_used = v_max
    m_hat = m / (1 - beta1 ** step)
    v_hat = v_used / (1 - beta2 ** step)
    mode = _eps_mode(eps_mode, eps_inside_sqrt)
    if mode == "inside":
        param[...] = param - lr * m_hat / np.sqrt(v_hat + eps)
    elif mode == "keras":
        lr_t = lr * np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
        param[...] = param - lr_t * m / (np.sqrt(v_used) + eps)
    else:
        param[...] = param - lr * m_hat / (np.sqrt(v_hat) + eps)


def adagrad_step(param, grad, sum_sq, *, step, lr=1e-2, lr_decay=0.0, eps=1e-10,
                 weight_decay=0.0, decoupled_weight_decay=False, fully_decoupled=False,
                 maximize=False, n_threads=None):
    """Adagrad: S = S + dW**2; W = W - lr_t dW / (sqrt(S) + eps), lr_t = lr / (1 + (t-1) decay)."""
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    sum_sq[...] = sum_sq + g * g
    param[...] = param - lr / (1 + (step - 1) * lr_decay) * g / (np.sqrt(sum_sq) + eps)


def adamax_step(param, grad, m, u, *, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, decoupled_weight_decay=False, fully_decoupled=False,
                maximize=False, n_threads=None):
    """Adamax: m = b1 m + (1-b1) dW; u = max(b2 u, |dW| + eps); W = W - lr/(1-b1^t) m / u."""
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    m[...] = beta1 * m + (1 - beta1) * g
    u[...] = np.maximum(beta2 * u, np.abs(g) + eps)
    param[...] = param - lr / (1 - beta1 ** step) * m / u


def adadelta_step(param, grad, sq_avg, acc_delta, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                  decoupled_weight_decay=False, fully_decoupled=False, maximize=False,
                  n_threads=None):
    """Adadelta: S = rho S + (1-rho) dW**2; D = sqrt(A + eps)/sqrt(S + eps) dW;
    A = rho A + (1-rho) D**2; W = W - lr D."""
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    sq_avg[...] = rho * sq_avg + (1 - rho) * (g * g)
    delta = np.sqrt(acc_delta + eps) / np.sqrt(sq_avg + eps) * g
    acc_delta[...] = rho * acc_delta + (1 - rho) * (delta * delta)
    param[...] = param - lr * delta


def lion_step(param, grad, m, *, lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0,
              decoupled_weight_decay=True, fully_decoupled=False, maximize=False, n_threads=None):
    """Lion: W = W (1 - lr wd) - lr sign(beta1 m + (1 - beta1) dW); m = beta2 m + (1 - beta2) dW."""
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    c = beta1 * m + (1 - beta1) * g
    param[...] = param - lr * np.sign(c)
    m[...] = beta2 * m + (1 - beta2) * g


def nadam_mu(step, beta1=0.9, momentum_decay=4e-3):
    """NAdam's momentum schedule mu_t = beta1 (1 - 0.5 * 0.96**(t * momentum_decay))."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))


def nadam_carry(mu_product, *, step, beta1=0.9, momentum_decay=4e-3, **hyper):
    """NAdam's scalar state after update `step`: mu_product (mu_1 ... mu_{t-1}) times mu_t."""
    return mu_product * nadam_mu(step, beta1, momentum_decay)


def nadam_step(param, grad, m, v, *, step, mu_product, lr=2e-3, beta1=0.9, beta2=0.999,
               eps=1e-8, eps_mode="torch", eps_inside_sqrt=False, weight_decay=0.0,
               decoupled_weight_decay=False, fully_decoupled=False, momentum_decay=4e-3,
               maximize=False, n_threads=None):
    """NAdam as torch.optim.NAdam (mu_product: mu_1 ... mu_{t-1})."""
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    mu = nadam_mu(step, beta1, momentum_decay)
    mu_next = nadam_mu(step + 1, beta1, momentum_decay)
    prod = mu_product * mu
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g ** 2
    bc2 = 1 - beta2 ** step
    mode = _eps_mode(eps_mode, eps_inside_sqrt)
    if mode == "inside":
        denom = np.sqrt(v / bc2 + eps)
    elif mode == "keras":
        denom = (np.sqrt(v) + eps) / np.sqrt(bc2)
    else:
        denom = np.sqrt(v / bc2) + eps
    param[...] = (param - lr * (1 - mu) / (1 - prod) * g / denom
                  - lr * mu_next / (1 - prod * mu_next) * m / denom)


def radam_step(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               eps_mode="torch", eps_inside_sqrt=False, weight_decay=0.0,
               decoupled_weight_decay=False, fully_decoupled=False, maximize=False,
               n_threads=None):
    """RAdam as torch.optim.RAdam: the rectified adaptive step once rho_t > 5, else m_hat."""
    g = _grad(param, grad, weight_decay, maximize, lr, decoupled_weight_decay, fully_decoupled)
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g ** 2
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
    m_hat = m / bc1
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * beta2 ** step / bc2
    if rho_t > 5:
        rect = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        if _eps_mode(eps_mode, eps_inside_sqrt) == "inside":
            adaptive = 1 / np.sqrt(v / bc2 + eps)
        else:
            adaptive = np.sqrt(bc2) / (np.sqrt(v) + eps)
        param[...] = param - lr * m_hat * rect * adaptive
    else:
        param[...] = param - lr * m_hat


def schedule_free_adamw_step(param, grad, z, v, *, step, ckp1, lr=0.0025, beta1=0.9,
                             beta2=0.999, eps=1e-8, weight_decay=0.0, maximize=False,
                             n_threads=None):
    """Schedule-Free AdamW, the parameter holding y (facebookresearch/schedule_free)."""
    g = -grad if maximize else grad
    lr_t = lr * np.sqrt(1 - beta2 ** step)
    v[...] = beta2 * v + (1 - beta2) * g * g
    u = g / (np.sqrt(v) + eps)
    if weight_decay != 0:
        u = u + weight_decay * param
    param[...] = param + ckp1 * (z - param) + lr_t * (beta1 * (1 - ckp1) - 1) * u
    z[...] = z - lr_t * u


def ewa_update(avg, value, *, beta, n_threads=None):
    """avg = beta avg + (1 - beta) value."""
    avg[...] = beta * avg + (1 - beta) * value


def ewa(series, *, beta, bias_correction=True, adjust=None, ignore_na=False, axis=0, out=None):
    """adjust=None: v_t = beta v_{t-1} + (1 - beta) theta_t from v_0 = 0, divided by 1 - beta**t
    if asked.  adjust=True/False: pandas' ewm(alpha=1 - beta, adjust, ignore_na).mean(), by
    pandas' recurrence with a float64 state (bias_correction is not used there)."""
    x = np.asarray(series)
    if x.dtype.kind in "biu":
        x = x.astype(np.float64)
    x = np.moveaxis(x, axis, 0)
    if adjust is None:
        result = np.empty(x.shape, dtype=x.dtype)
        v = np.zeros(x.shape[1:], dtype=x.dtype)
        for t in range(x.shape[0]):
            v = beta * v + (1 - beta) * x[t]
            result[t] = v / (1 - beta ** (t + 1)) if bias_correction else v
    else:
        result = _pandas_ewm_mean(x, beta, adjust, ignore_na).astype(x.dtype)
    result = np.moveaxis(result, 0, axis)
    if out is not None:
        out[...] = result
        return out
    return result


def _pandas_ewm_mean(x, beta, adjust, ignore_na):
    """pandas' ewm mean (min_periods=0) of every column of x (steps on axis 0), in float64:
    `weighted` is the mean so far (NaN before the first observation), `old_wt` the weight of
    everything before the current value."""
    new_wt = 1.0 if adjust else 1.0 - beta
    weighted = np.full(x.shape[1:], np.nan)
    old_wt = np.ones(x.shape[1:])
    result = np.empty(x.shape)
    for t in range(x.shape[0]):
        cur = x[t].astype(np.float64)
        observed = ~np.isnan(cur)
        started = ~np.isnan(weighted)
        # ignore_na=False: weights decay at every position; True: only at observations
        old_wt = np.where(started & (observed | (not ignore_na)), old_wt * beta, old_wt)
        update = started & observed
        with np.errstate(invalid="ignore"):
            mean = (old_wt * weighted + new_wt * cur) / (old_wt + new_wt)
        # the mean is kept when the value equals it (a constant series stays exact)
        weighted = np.where(update & (weighted != cur), mean, weighted)
        old_wt = np.where(update, old_wt + new_wt if adjust else 1.0, old_wt)
        weighted = np.where(~started & observed, cur, weighted)
        result[t] = weighted
    return result


def debias(avg, *, beta, step, out=None):
    """avg / (1 - beta**step)."""
    avg = np.asarray(avg)
    if avg.dtype.kind in "biu":
        avg = avg.astype(np.float64)
    return np.divide(avg, avg.dtype.type(1 - beta ** step), out=out)


# ------------------------------------------------------------------------------------------------
# Storage types and rounding: bit-exact twins.
#
# The functions above state the formulas the obvious way (and agree with the kernels to rounding
# error).  The ones below reproduce the kernels BIT FOR BIT, for every storage type: they load
# each array into float32 (float64 for float64), apply the formula in the kernels' operation
# order (``_rules.pxi``) with the scalars computed in float64 and rounded once, and store each
# written 16-bit array rounded to nearest even or stochastically with the same random bits
# (a counter-based hash of (seed, step, operand slot, element index)).
# ------------------------------------------------------------------------------------------------

def _mix32(x):
    """Wellons' lowbias32 on uint32 arrays (or scalars): the kernels' fo_mix32."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        x = x ^ (x >> np.uint32(16))
    return x


def slot_key(seed, step, slot):
    """The stochastic-rounding key of operand slot `slot` (0: param, 1: grad, 2..: state in the
    registry's order) for `seed` in [0, 2**64) and `step` >= 1."""
    m = 0xFFFFFFFF
    k = _mix32((seed & m) ^ 0x9E3779B9)
    k = _mix32(k ^ np.uint32((seed >> 32) & m))
    k = _mix32(k ^ np.uint32(step & m))
    k = _mix32(k ^ np.uint32((step >> 32) & m))
    return int(_mix32(k ^ np.uint32(((slot + 1) * 0x85EBCA6B) & m)))


def random_bits(seed, step, slot, n, start=0):
    """The 32 random bits of elements start .. start+n-1 of operand `slot`: element i gets
    mix32(lo32(i) ^ mix32(key ^ hi32(i)))."""
    i = np.arange(start, start + n, dtype=np.uint64)
    key = np.uint32(slot_key(seed, step, slot))
    hi = (i >> np.uint64(32)).astype(np.uint32)
    lo = (i & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return _mix32(lo ^ _mix32(key ^ hi))


def _bf16():
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)


def round_nearest(x, dtype):
    """float32 array -> `dtype` (float16 or bfloat16), round to nearest even; NaN stays NaN
    (quieted, sign and top payload bits kept), overflow gives Inf."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        out = x.astype(np.float16).view(np.uint16)
        out = np.where(nan, ((u >> np.uint32(16)) & np.uint32(0x8000)) | np.uint32(0x7E00)
                       | ((u >> np.uint32(13)) & np.uint32(0x3FF)), out).astype(np.uint16)
        return out.view(np.float16)
    if dtype == _bf16():
        with np.errstate(over="ignore"):
            r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
        r = np.where(nan, (u >> np.uint32(16)) | np.uint32(0x40), r).astype(np.uint16)
        return r.view(dtype)
    raise TypeError(f"round_nearest rounds to float16 or bfloat16, not {dtype}")


def round_stochastic(x, dtype, bits):
    """float32 array -> `dtype` (float16 or bfloat16), rounding away from zero with probability
    (the dropped part) / (the spacing), using the uint32 random `bits` (one per element)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = np.asarray(bits, dtype=np.uint32)
    u = x.view(np.uint32)
    a = u & np.uint32(0x7FFFFFFF)
    dtype = np.dtype(dtype)
    if dtype == _bf16():
        nan = a > np.uint32(0x7F800000)
        with np.errstate(over="ignore"):
            r = (u + (bits & np.uint32(0xFFFF))) >> np.uint32(16)
        r = np.where(nan, (u >> np.uint32(16)) | np.uint32(0x40), r).astype(np.uint16)
        return r.view(dtype)
    if dtype != np.float16:
        raise TypeError(f"round_stochastic rounds to float16 or bfloat16, not {dtype}")
    e = (a >> np.uint32(23)).astype(np.int64)
    d = np.where(e >= 113, 13, 126 - e)
    special = a >= np.uint32(0x7F800000)
    tiny = ~special & ((e == 0) | (d >= 24))
    mid = ~special & ~tiny
    out = round_nearest(x, np.float16).view(np.uint16).copy()
    # |x| < 2^-24: zero or the smallest subnormal, up with probability |x| / 2^-24
    p = a.view(np.float32) * np.float32(2.0 ** 48)
    up = (bits >> np.uint32(8)).astype(np.float32) < p
    sign16 = ((u >> np.uint32(16)) & np.uint32(0x8000)).astype(np.uint16)
    out[tiny] = (sign16 | up.astype(np.uint16))[tiny]
    dm = np.where(mid, d, 0).astype(np.uint32)
    mask = (np.uint32(1) << dm) - np.uint32(1)
    with np.errstate(over="ignore"):
        t = (u + (bits & mask)) & ~mask
    out[mid] = round_nearest(t.view(np.float32), np.float16).view(np.uint16)[mid]
    return out.view(np.float16)


def _load(a):
    return a.astype(np.float64 if a.dtype == np.float64 else np.float32)


def _store(dst, x, rounding, bits):
    if dst.dtype in (np.float32, np.float64):
        dst[...] = x
    elif rounding == "stochastic":
        dst[...] = round_stochastic(x.ravel(), dst.dtype, bits).reshape(dst.shape)
    else:
        dst[...] = round_nearest(x.ravel(), dst.dtype).reshape(dst.shape)


def _l2(w, g, c, o):
    """The kernels' _grad: g + wd * param with the l2 option."""
    return g + c("wd") * w["param"] if o["l2"] else g


def _exact_sgd(w, g, c, o):
    g = _l2(w, g, c, o)
    w["param"] = w["param"] * c("decay") - c("lr") * g


def _exact_momentum(w, g, c, o):
    g = _l2(w, g, c, o)
    vi = c("b1") * w["velocity"] + c("damp1") * g
    w["velocity"] = vi
    if o["nesterov"]:
        vi = g + c("b1") * vi
    w["param"] = w["param"] * c("decay") - c("lr") * vi


def _exact_rmsprop(w, g, c, o):
    g = _l2(w, g, c, o)
    si = c("b1") * w["sq_avg"] + c("omb1") * (g * g)
    w["sq_avg"] = si
    if o["centered"]:
        ai = w["grad_avg"] + c("omb1") * (g - w["grad_avg"])
        w["grad_avg"] = ai
        si = si - ai * ai
    u = g / (np.sqrt(si + c("eps_in")) + c("eps_out"))
    if o["momentum"]:
        u = c("mom") * w["momentum_buf"] + u
        w["momentum_buf"] = u
    w["param"] = w["param"] * c("decay") - c("lr") * u


def _exact_adam(w, g, c, o):
    g = _l2(w, g, c, o)
    mi = c("b1") * w["m"] + c("omb1") * g
    vi = c("b2") * w["v"] + c("omb2") * (g * g)
    w["m"], w["v"] = mi, vi
    if o["amsgrad"]:
        vm = w["v_max"]
        vm = np.where((vi > vm) | (vi != vi), vi, vm)
        w["v_max"] = vm
        vi = vm
    w["param"] = (w["param"] * c("decay")
                  - c("step_size") * (mi / (np.sqrt(vi * c("c2") + c("eps_in")) + c("eps_out"))))


def _exact_adagrad(w, g, c, o):
    g = _l2(w, g, c, o)
    si = w["sum_sq"] + g * g
    w["sum_sq"] = si
    w["param"] = w["param"] * c("decay") - c("lr") * (g / (np.sqrt(si) + c("eps_out")))


def _exact_adamax(w, g, c, o):
    g = _l2(w, g, c, o)
    mi = c("b1") * w["m"] + c("omb1") * g
    w["m"] = mi
    a = np.abs(g) + c("eps_out")
    ui = c("b2") * w["u"]
    ui = np.where((a > ui) | (a != a), a, ui)
    w["u"] = ui
    w["param"] = w["param"] * c("decay") - c("step_size") * (mi / ui)


def _exact_adadelta(w, g, c, o):
    g = _l2(w, g, c, o)
    si = c("b1") * w["sq_avg"] + c("omb1") * (g * g)
    w["sq_avg"] = si
    d = np.sqrt(w["acc_delta"] + c("eps_in")) / np.sqrt(si + c("eps_in")) * g
    w["acc_delta"] = c("b1") * w["acc_delta"] + c("omb1") * (d * d)
    w["param"] = w["param"] * c("decay") - c("lr") * d


def _exact_lion(w, g, c, o):
    g = _l2(w, g, c, o)
    cc = c("b1") * w["m"] + c("omb1") * g
    s = np.where(cc > 0, cc.dtype.type(1), np.where(cc < 0, cc.dtype.type(-1), cc))
    w["param"] = w["param"] * c("decay") - c("lr") * s
    w["m"] = c("b2") * w["m"] + c("omb2") * g


def _exact_nadam(w, g, c, o):
    g = _l2(w, g, c, o)
    mi = c("b1") * w["m"] + c("omb1") * g
    vi = c("b2") * w["v"] + c("omb2") * (g * g)
    w["m"], w["v"] = mi, vi
    d = np.sqrt(vi * c("c2") + c("eps_in")) + c("eps_out")
    w["param"] = (w["param"] * c("decay") - c("lr") * (g / d)) - c("step_size") * (mi / d)


def _exact_radam(w, g, c, o):
    g = _l2(w, g, c, o)
    mi = c("b1") * w["m"] + c("omb1") * g
    vi = c("b2") * w["v"] + c("omb2") * (g * g)
    w["m"], w["v"] = mi, vi
    if o["rectify"]:
        w["param"] = w["param"] * c("decay") - c("step_size") * (
            mi / (np.sqrt(vi * c("c2") + c("eps_in")) + c("eps_out")))
    else:
        w["param"] = w["param"] * c("decay") - c("lr") * mi


def _exact_schedule_free_adamw(w, g, c, o):
    vi = c("b2") * w["v"] + c("omb2") * (g * g)
    w["v"] = vi
    u = g / (np.sqrt(vi) + c("eps_out"))
    y, z = w["param"], w["z"]
    if o["l2"]:
        u = u + c("wd") * y
    w["param"] = (y + c("mom") * (z - y)) + c("step_size") * u
    w["z"] = z - c("lr") * u


def _exact_ewa(w, x, c, o):
    w["avg"] = c("b1") * w["avg"] + c("omb1") * x


_EXACT = {"sgd": _exact_sgd, "momentum": _exact_momentum, "rmsprop": _exact_rmsprop,
          "adam": _exact_adam, "adagrad": _exact_adagrad, "adamax": _exact_adamax,
          "adadelta": _exact_adadelta, "lion": _exact_lion, "nadam": _exact_nadam,
          "radam": _exact_radam, "schedule_free_adamw": _exact_schedule_free_adamw,
          "ewa": _exact_ewa}


def _eps_form(s, mode, eps, bc2):
    """The Adam family's denominator (the kernels' _eps_form): sets c2 and eps_in/eps_out from
    `mode` ("torch", "inside", "keras"), returns the factor of the step size."""
    if mode == "keras":
        s["c2"], s["eps_out"] = 1.0, eps
        return np.sqrt(bc2)
    s["c2"] = 1.0 / bc2
    s["eps_in" if mode == "inside" else "eps_out"] = eps
    return 1.0


def _scalars(rule, h):
    """The kernels' Hyper fields (float64) from the keyword arguments of `rule`."""
    from . import _registry
    r = _registry.BY_NAME[rule]
    default = {hp.name: hp.default for hp in r.hypers}
    h = {**default, **h}
    lr = float(h.get("lr", 1e-3))
    wd = float(h.get("weight_decay", 0.0))
    s = {"lr": lr, "wd": wd, "decay": 1.0, "eps_in": 0.0, "eps_out": 0.0, "mom": 0.0,
         "damp1": 1.0, "b1": 0.0, "omb1": 1.0, "b2": 0.0, "omb2": 1.0, "c2": 1.0,
         "step_size": 0.0}
    opts = {o.name: False for o in r.options}
    opts["l2"] = wd != 0
    t = h.get("step")
    mode = _eps_mode(h.get("eps_mode", "torch"), h.get("eps_inside_sqrt", False))
    if rule == "momentum":
        s["b1"] = float(h["beta"])
        damp = h.get("dampening")
        s["damp1"] = 1.0 - (s["b1"] if damp is None else float(damp))
        opts["nesterov"] = bool(h["nesterov"])
    elif rule == "rmsprop":
        s["b1"] = float(h["beta"])
        s["omb1"] = 1.0 - s["b1"]
        s["eps_in" if h.get("eps_inside_sqrt") else "eps_out"] = float(h["eps"])
        s["mom"] = float(h["momentum"])
        opts["centered"] = bool(h["centered"])
        opts["momentum"] = s["mom"] > 0
    elif rule == "adam":
        s["b1"], s["b2"] = float(h["beta1"]), float(h["beta2"])
        s["omb1"], s["omb2"] = 1.0 - s["b1"], 1.0 - s["b2"]
        f = _eps_form(s, mode, float(h["eps"]), 1.0 - s["b2"] ** t)
        s["step_size"] = lr * f / (1.0 - s["b1"] ** t)
        opts["amsgrad"] = bool(h["amsgrad"])
    elif rule == "adagrad":
        s["lr"] = lr / (1.0 + (t - 1.0) * float(h["lr_decay"]))
        s["eps_out"] = float(h["eps"])
    elif rule == "adamax":
        s["b1"], s["b2"] = float(h["beta1"]), float(h["beta2"])
        s["omb1"] = 1.0 - s["b1"]
        s["step_size"] = lr / (1.0 - s["b1"] ** t)
        s["eps_out"] = float(h["eps"])
    elif rule == "nadam":
        b1, b2, psi = float(h["beta1"]), float(h["beta2"]), float(h["momentum_decay"])
        s["b1"], s["b2"], s["omb1"], s["omb2"] = b1, b2, 1.0 - b1, 1.0 - b2
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1.0) * psi))
        prod = float(h["mu_product"]) * mu
        f = _eps_form(s, mode, float(h["eps"]), 1.0 - b2 ** t)
        s["lr"] = lr * f * (1.0 - mu) / (1.0 - prod)
        s["step_size"] = lr * f * mu_next / (1.0 - prod * mu_next)
    elif rule == "radam":
        b1, b2 = float(h["beta1"]), float(h["beta2"])
        s["b1"], s["b2"], s["omb1"], s["omb2"] = b1, b2, 1.0 - b1, 1.0 - b2
        bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2 ** t / bc2
        s["lr"] = lr / bc1
        if rho_t > 5.0:
            rect = np.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                           / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            f = _eps_form(s, "inside" if mode == "inside" else "keras", float(h["eps"]), bc2)
            s["step_size"] = lr * rect * f / bc1
            opts["rectify"] = True
    elif rule == "adadelta":
        s["b1"] = float(h["rho"])
        s["omb1"] = 1.0 - s["b1"]
        s["eps_in"] = float(h["eps"])
    elif rule == "lion":
        s["b1"], s["b2"] = float(h["beta1"]), float(h["beta2"])
        s["omb1"], s["omb2"] = 1.0 - s["b1"], 1.0 - s["b2"]
    elif rule == "schedule_free_adamw":
        b1, b2 = float(h["beta1"]), float(h["beta2"])
        s["lr"] = lr * np.sqrt(1.0 - b2 ** t)
        s["step_size"] = s["lr"] * (b1 * (1.0 - float(h["ckp1"])) - 1.0)
        s["mom"] = float(h["ckp1"])
        s["b2"], s["omb2"] = b2, 1.0 - b2
        s["eps_out"] = float(h["eps"])
    elif rule == "ewa":
        s["b1"] = float(h["beta"])
        s["omb1"] = 1.0 - s["b1"]
    if h.get("decoupled_weight_decay") or h.get("fully_decoupled"):
        s["decay"] = 1.0 - (wd if h.get("fully_decoupled") else lr * wd)
        s["wd"] = 0.0
        opts["l2"] = False
    return s, opts


def step_exact(rule, arrays, *, master=None, compensation=None, rounding="nearest", seed=0,
               grad_scale=1.0, maximize=False, start=0, **hyper):
    """The bit-exact twin of one kernel call on any storage types, in place.

    `rule` is a registry name ("sgd", "momentum", "rmsprop", "adam", "ewa"); `arrays` maps the
    rule's operand names to arrays (param/avg, grad/value, state); `hyper` holds the kernel's
    keyword arguments (``step`` included when the rule or stochastic rounding needs it).
    `start` is the element index of the first element (for the multi-array calls, whose index
    runs over the arrays concatenated).  Returns None.
    """
    from . import _registry
    r = _registry.BY_NAME[rule]
    names = [op.name for op in r.operands]
    lead, inp = names[0], names[1]
    f64 = arrays[lead].dtype == np.float64
    ct = np.float64 if f64 else np.float32
    s, opts = _scalars(rule, hyper)

    def c(name):
        return ct(s[name])

    w = {n: _load(arrays[n]) for n in names if n != inp and arrays.get(n) is not None}
    if master is not None:
        w[lead] = master.astype(np.float32)
    elif compensation is not None:
        w[lead] = w[lead] + _load(compensation)
    x = _load(arrays[inp])
    if r.scaled:
        x = ct((-1.0 if maximize else 1.0) * grad_scale) * x
    _EXACT[rule](w, x, c, opts)
    n = arrays[lead].size
    step = hyper.get("step")

    def bits(slot):
        return None if rounding != "stochastic" else random_bits(seed, step, slot, n, start)

    for slot, name in enumerate(names):
        if name == inp or arrays.get(name) is None:
            continue
        if slot == 0 and master is not None:
            master[...] = w[lead]
            _store(arrays[lead], w[lead], rounding, bits(0))
        elif slot == 0 and compensation is not None:
            p = round_nearest(w[lead].ravel(), arrays[lead].dtype)
            arrays[lead][...] = p.reshape(arrays[lead].shape)
            resid = w[lead].ravel() - p.astype(np.float32)
            compensation[...] = round_nearest(resid, compensation.dtype).reshape(
                compensation.shape)
        else:
            _store(arrays[name], w[name], rounding, bits(slot))
