# The formulas: one `cdef inline ... noexcept nogil` element function per update rule, on the
# `floating` fused type (float32 compute for float32/float16/bfloat16 storage, float64 for
# float64).  Written once; every loop of every ISA level calls them.
#
# Signature convention (the registry, _registry.py, relies on it to generate the loops):
#   _<rule>_elem(<pointer to each written operand, slot order>, <input value>,
#                <the rule's Hyper fields, registry order>, <option switches, registry order>)
# The input value is the gradient already multiplied by grad_scale (negated when maximizing).
#
# Weight decay: every step rule takes `wd` (L2: g + wd*p, option l2) and `decay` (the decoupled
# forms: p*decay, with decay = 1 - lr*wd or 1 - wd, else exactly 1.0, which changes no bit).

from libc.math cimport sqrt, sqrtf, pow

# eps_mode codes (the registry's EPS_MODES order; the core's _eps_mode check returns them)
cdef enum:
    EPS_TORCH = 0
    EPS_INSIDE = 1
    EPS_KERAS = 2


cdef inline floating _sqrt(floating x) noexcept nogil:
    # sqrtf for float32: libc's sqrt would widen to double and back (~2x slower; same result).
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _grad(floating g, floating p, floating wd, bint l2) noexcept nogil:
    """The effective gradient: g (+ wd*p with L2 weight decay, the course's form)."""
    if l2:
        g = g + wd * p
    return g


cdef inline void _sgd_elem(floating* p, floating g, floating lr, floating wd, floating decay,
                           bint l2) noexcept nogil:
    # p <- p*decay - lr * g
    g = _grad(g, p[0], wd, l2)
    p[0] = p[0] * decay - lr * g


cdef inline void _momentum_elem(floating* p, floating* vel, floating g, floating lr,
                                floating wd, floating decay, floating beta, floating damp1,
                                bint l2, bint nesterov) noexcept nogil:
    # vel <- beta*vel + (1 - dampening)*g ;  p <- p - lr*vel   (nesterov: p <- p - lr*(g + beta*vel))
    cdef floating vi
    g = _grad(g, p[0], wd, l2)
    vi = beta * vel[0] + damp1 * g
    vel[0] = vi
    if nesterov:
        vi = g + beta * vi
    p[0] = p[0] * decay - lr * vi


cdef inline void _rmsprop_elem(floating* p, floating* sq, floating* gavg, floating* buf,
                               floating g, floating lr, floating wd, floating decay,
                               floating beta, floating omb,
                               floating eps_in, floating eps_out, floating mom,
                               bint l2, bint centered, bint momentum) noexcept nogil:
    # sq <- beta*sq + (1-beta)*g^2 ; centered: gavg <- gavg + (1-beta)*(g - gavg), sq - gavg^2 under
    # the root ; denom = sqrt(. + eps_in) + eps_out ; momentum: buf <- mom*buf + g/denom, p -= lr*buf
    # else p -= lr * g/denom
    cdef floating si, ai, d, u
    g = _grad(g, p[0], wd, l2)
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
    p[0] = p[0] * decay - lr * u


cdef inline void _adam_elem(floating* p, floating* m, floating* v, floating* vmax, floating g,
                            floating step_size, floating wd, floating decay,
                            floating b1, floating omb1, floating b2, floating omb2, floating c2,
                            floating eps_in, floating eps_out, bint l2, bint ams) noexcept nogil:
    # m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g^2 ; (amsgrad: vmax <- max(vmax, v), used for v)
    # p <- p*decay - step_size * m / (sqrt(v*c2 + eps_in) + eps_out)
    # with step_size = lr/(1-b1^t), c2 = 1/(1-b2^t), decay = 1 - lr*wd for AdamW, else 1.
    cdef floating mi, vi, vm
    g = _grad(g, p[0], wd, l2)
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


cdef inline void _adagrad_elem(floating* p, floating* s, floating g, floating lr, floating wd,
                               floating decay, floating eps, bint l2) noexcept nogil:
    # s <- s + g^2 ; p <- p - lr * g / (sqrt(s) + eps)   (lr already decayed: lr/(1+(t-1)decay))
    cdef floating si
    g = _grad(g, p[0], wd, l2)
    si = s[0] + g * g
    s[0] = si
    p[0] = p[0] * decay - lr * (g / (_sqrt(si) + eps))


cdef inline void _adamax_elem(floating* p, floating* m, floating* u, floating g,
                              floating step_size, floating wd, floating decay, floating b1,
                              floating omb1, floating b2, floating eps, bint l2) noexcept nogil:
    # m <- b1*m + (1-b1)*g ; u <- max(b2*u, |g| + eps) ; p <- p - step_size * m / u
    # with step_size = lr/(1-b1^t); the max keeps a NaN (torch.amax), as AMSGrad's does
    cdef floating mi, ui, a
    g = _grad(g, p[0], wd, l2)
    mi = b1 * m[0] + omb1 * g
    m[0] = mi
    a = g
    if a < 0:
        a = -a
    a = a + eps
    ui = b2 * u[0]
    if a > ui or a != a:
        ui = a
    u[0] = ui
    p[0] = p[0] * decay - step_size * (mi / ui)


cdef inline void _adadelta_elem(floating* p, floating* sq, floating* acc, floating g,
                                floating lr, floating wd, floating decay, floating rho,
                                floating omr, floating eps, bint l2) noexcept nogil:
    # sq <- rho*sq + (1-rho)*g^2 ; d = sqrt(acc + eps) / sqrt(sq + eps) * g ;
    # acc <- rho*acc + (1-rho)*d^2 ; p <- p - lr*d
    cdef floating si, d
    g = _grad(g, p[0], wd, l2)
    si = rho * sq[0] + omr * (g * g)
    sq[0] = si
    d = _sqrt(acc[0] + eps) / _sqrt(si + eps) * g
    acc[0] = rho * acc[0] + omr * (d * d)
    p[0] = p[0] * decay - lr * d


cdef inline void _lion_elem(floating* p, floating* m, floating g, floating lr, floating wd,
                            floating decay, floating b1, floating omb1, floating b2,
                            floating omb2, bint l2) noexcept nogil:
    # c = b1*m + (1-b1)*g ; p <- p*decay - lr*sign(c) ; m <- b2*m + (1-b2)*g
    # sign(+-0) = +-0 (no move), sign(NaN) = NaN (propagates); decay = 1 - lr*wd (decoupled, the
    # default) or L2 (g + wd*p, with decoupled_weight_decay=False)
    cdef floating c, s
    cdef floating one = 1
    g = _grad(g, p[0], wd, l2)
    c = b1 * m[0] + omb1 * g
    s = c                            # +-0 and NaN stay as they are
    if c > 0:                        # plain assignments: the compiler turns them into blends
        s = one
    if c < 0:
        s = -one
    p[0] = p[0] * decay - lr * s
    m[0] = b2 * m[0] + omb2 * g


cdef inline void _nadam_elem(floating* p, floating* m, floating* v, floating g, floating cg,
                             floating cm, floating wd, floating decay, floating b1,
                             floating omb1, floating b2, floating omb2, floating c2,
                             floating eps_in, floating eps_out, bint l2) noexcept nogil:
    # m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g^2 ; d = sqrt(v*c2 + eps_in) + eps_out
    # p <- p*decay - cg * g/d - cm * m/d   (cg, cm: NAdam's momentum-schedule coefficients)
    cdef floating mi, vi, d
    g = _grad(g, p[0], wd, l2)
    mi = b1 * m[0] + omb1 * g
    vi = b2 * v[0] + omb2 * (g * g)
    m[0] = mi
    v[0] = vi
    d = _sqrt(vi * c2 + eps_in) + eps_out
    p[0] = (p[0] * decay - cg * (g / d)) - cm * (mi / d)


cdef inline void _radam_elem(floating* p, floating* m, floating* v, floating g, floating lr,
                             floating step_size, floating wd, floating decay, floating b1,
                             floating omb1, floating b2, floating omb2, floating c2,
                             floating eps_in, floating eps_out, bint l2,
                             bint rectify) noexcept nogil:
    # m <- b1*m + (1-b1)*g ; v <- b2*v + (1-b2)*g^2
    # rectified (rho_t > 5): p <- p*decay - step_size * m / (sqrt(v*c2 + eps_in) + eps_out)
    # else (SGD with momentum):  p <- p*decay - lr * m      (lr = lr/(1-b1^t))
    cdef floating mi, vi
    g = _grad(g, p[0], wd, l2)
    mi = b1 * m[0] + omb1 * g
    vi = b2 * v[0] + omb2 * (g * g)
    m[0] = mi
    v[0] = vi
    if rectify:
        p[0] = p[0] * decay - step_size * (mi / (_sqrt(vi * c2 + eps_in) + eps_out))
    else:
        p[0] = p[0] * decay - lr * mi


cdef inline void _schedule_free_adamw_elem(floating* y, floating* z, floating* v, floating g,
                                           floating lr, floating ay, floating ckp1, floating wd,
                                           floating b2, floating omb2, floating eps,
                                           bint l2) noexcept nogil:
    # v <- b2*v + (1-b2)*g^2 ; u = g/(sqrt(v) + eps) (+ wd*y) ; y <- y + ckp1*(z - y) + ay*u ;
    # z <- z - lr*u    (lr already times sqrt(1 - b2^t); ay = lr*(b1*(1 - ckp1) - 1))
    cdef floating vi, u, yi, zi
    vi = b2 * v[0] + omb2 * (g * g)
    v[0] = vi
    u = g / (_sqrt(vi) + eps)
    yi = y[0]
    zi = z[0]
    if l2:
        u = u + wd * yi
    y[0] = (yi + ckp1 * (zi - yi)) + ay * u
    z[0] = zi - lr * u


cdef inline void _ewa_elem(floating* avg, floating x, floating beta, floating omb) noexcept nogil:
    # avg <- beta*avg + (1-beta)*x
    avg[0] = beta * avg[0] + omb * x


# ------------------------------------------------------------------------------------------------
# Scalar set-up, one function per rule: from the validated hyperparameters (registry order) to the
# Hyper fields, in float64, once per call (never per element).  Returns the option mask (the
# registry's O_* bits in use).  Plain C: compiled into the core (which calls them) and, unused,
# into the loop modules.
# ------------------------------------------------------------------------------------------------

cdef inline int _sgd_scalars(Hyper* h, double lr, double weight_decay,
                             bint maximize) noexcept nogil:
    h.lr = lr
    h.wd = weight_decay
    return O_L2 if weight_decay != 0 else 0


cdef inline int _momentum_scalars(Hyper* h, double lr, double beta, double dampening,
                                  bint nesterov, double weight_decay, bint maximize) noexcept nogil:
    # dampening < 0 means None: the course's EWA form, d = beta
    h.lr = lr
    h.wd = weight_decay
    h.b1 = beta
    h.damp1 = 1.0 - (beta if dampening < 0 else dampening)
    return (O_L2 if weight_decay != 0 else 0) | (O_NESTEROV if nesterov else 0)


cdef inline int _rmsprop_scalars(Hyper* h, double lr, double beta, double eps,
                                 bint eps_inside_sqrt, double weight_decay, bint centered,
                                 double momentum, bint maximize) noexcept nogil:
    h.lr = lr
    h.wd = weight_decay
    h.b1 = beta
    h.omb1 = 1.0 - beta
    if eps_inside_sqrt:
        h.eps_in = eps
    else:
        h.eps_out = eps
    h.mom = momentum
    return ((O_L2 if weight_decay != 0 else 0) | (O_CENTERED if centered else 0)
            | (O_MOMENTUM if momentum > 0 else 0))


cdef inline double _eps_form(Hyper* h, int eps_mode, double eps, double bc2) noexcept nogil:
    """The Adam family's denominator, from eps_mode and bc2 = 1 - beta2^t.  Sets c2, eps_in,
    eps_out and returns the factor the step size takes:
      torch   sqrt(v/bc2) + eps             c2 = 1/bc2, eps outside      factor 1
      inside  sqrt(v/bc2 + eps)             c2 = 1/bc2, eps inside       factor 1
      keras   sqrt(v) + eps ("epsilon hat") c2 = 1, eps outside          factor sqrt(bc2)"""
    if eps_mode == EPS_KERAS:
        h.c2 = 1.0
        h.eps_out = eps
        return sqrt(bc2)
    h.c2 = 1.0 / bc2
    if eps_mode == EPS_INSIDE:
        h.eps_in = eps
    else:
        h.eps_out = eps
    return 1.0


cdef inline int _adam_scalars(Hyper* h, double lr, double beta1, double beta2, double eps,
                              int eps_mode, double weight_decay, bint amsgrad, bint maximize,
                              double t) noexcept nogil:
    cdef double f
    h.b1 = beta1
    h.b2 = beta2
    h.omb1 = 1.0 - beta1
    h.omb2 = 1.0 - beta2
    # bias corrections and the step size
    f = _eps_form(h, eps_mode, eps, 1.0 - pow(beta2, t))
    h.step_size = lr * f / (1.0 - pow(beta1, t))
    h.lr = lr
    h.wd = weight_decay
    return (O_L2 if weight_decay != 0 else 0) | (O_AMSGRAD if amsgrad else 0)


cdef inline int _adagrad_scalars(Hyper* h, double lr, double lr_decay, double eps,
                                 double weight_decay, bint maximize, double t) noexcept nogil:
    h.lr = lr / (1.0 + (t - 1.0) * lr_decay)
    h.wd = weight_decay
    h.eps_out = eps
    return O_L2 if weight_decay != 0 else 0


cdef inline int _adamax_scalars(Hyper* h, double lr, double beta1, double beta2, double eps,
                                double weight_decay, bint maximize, double t) noexcept nogil:
    h.lr = lr
    h.step_size = lr / (1.0 - pow(beta1, t))
    h.wd = weight_decay
    h.b1 = beta1
    h.omb1 = 1.0 - beta1
    h.b2 = beta2
    h.eps_out = eps
    return O_L2 if weight_decay != 0 else 0


cdef inline int _nadam_scalars(Hyper* h, double lr, double beta1, double beta2, double eps,
                               int eps_mode, double weight_decay, double momentum_decay,
                               double mu_product, bint maximize, double t) noexcept nogil:
    # torch.optim.NAdam: mu_t = b1 (1 - 0.5 * 0.96^(t psi)); mu_product (of mu_1..mu_{t-1}) times
    # mu_t, and times mu_{t+1}, gives the two bias corrections
    cdef double mu = beta1 * (1.0 - 0.5 * pow(0.96, t * momentum_decay))
    cdef double mu_next = beta1 * (1.0 - 0.5 * pow(0.96, (t + 1.0) * momentum_decay))
    cdef double prod = mu_product * mu
    cdef double f = _eps_form(h, eps_mode, eps, 1.0 - pow(beta2, t))
    h.lr = lr * f * (1.0 - mu) / (1.0 - prod)
    h.step_size = lr * f * mu_next / (1.0 - prod * mu_next)
    h.wd = weight_decay
    h.b1 = beta1
    h.omb1 = 1.0 - beta1
    h.b2 = beta2
    h.omb2 = 1.0 - beta2
    return O_L2 if weight_decay != 0 else 0


cdef inline int _radam_scalars(Hyper* h, double lr, double beta1, double beta2, double eps,
                               int eps_mode, double weight_decay, bint maximize,
                               double t) noexcept nogil:
    # torch.optim.RAdam: rho_inf = 2/(1-b2) - 1, rho_t = rho_inf - 2 t b2^t / (1 - b2^t); the
    # adaptive step, times the rectification r_t, only once rho_t > 5.  torch adds eps to
    # sqrt(v) and multiplies by sqrt(1 - b2^t): the "keras" (epsilon hat) form is torch's here.
    cdef double bc1 = 1.0 - pow(beta1, t)
    cdef double bc2 = 1.0 - pow(beta2, t)
    cdef double rho_inf = 2.0 / (1.0 - beta2) - 1.0
    cdef double rho_t = rho_inf - 2.0 * t * pow(beta2, t) / bc2
    cdef double rect, f
    cdef int opts = O_L2 if weight_decay != 0 else 0
    h.lr = lr / bc1
    h.wd = weight_decay
    h.b1 = beta1
    h.omb1 = 1.0 - beta1
    h.b2 = beta2
    h.omb2 = 1.0 - beta2
    if rho_t > 5.0:
        rect = sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                    / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        f = _eps_form(h, EPS_INSIDE if eps_mode == EPS_INSIDE else EPS_KERAS, eps, bc2)
        h.step_size = lr * rect * f / bc1
        opts = opts | O_RECTIFY
    return opts


cdef inline int _adadelta_scalars(Hyper* h, double lr, double rho, double eps,
                                  double weight_decay, bint maximize) noexcept nogil:
    h.lr = lr
    h.b1 = rho
    h.omb1 = 1.0 - rho
    h.eps_in = eps
    h.wd = weight_decay
    return O_L2 if weight_decay != 0 else 0


cdef inline int _lion_scalars(Hyper* h, double lr, double beta1, double beta2,
                              double weight_decay, bint maximize) noexcept nogil:
    h.lr = lr
    h.wd = weight_decay
    h.b1 = beta1
    h.omb1 = 1.0 - beta1
    h.b2 = beta2
    h.omb2 = 1.0 - beta2
    return O_L2 if weight_decay != 0 else 0


cdef inline int _schedule_free_adamw_scalars(Hyper* h, double lr, double ckp1, double beta1,
                                             double beta2, double eps, double weight_decay,
                                             bint maximize, double t) noexcept nogil:
    # facebookresearch/schedule_free AdamWScheduleFree: lr_t = lr sqrt(1 - b2^t) (lr already
    # warmed up); y moves by lr_t (b1 (1 - ckp1) - 1) u, z by -lr_t u
    h.lr = lr * sqrt(1.0 - pow(beta2, t))
    h.step_size = h.lr * (beta1 * (1.0 - ckp1) - 1.0)
    h.mom = ckp1
    h.wd = weight_decay
    h.b2 = beta2
    h.omb2 = 1.0 - beta2
    h.eps_out = eps
    return O_L2 if weight_decay != 0 else 0


cdef inline int _ewa_scalars(Hyper* h, double beta) noexcept nogil:
    h.b1 = beta
    h.omb1 = 1.0 - beta
    return 0


# ------------------------------------------------------------------------------------------------
# Docstrings of the public kernels (the core appends the storage-type notes).
# ------------------------------------------------------------------------------------------------

_DOC = {}

_DOC["sgd"] = """Plain (mini-batch) gradient descent, in place.

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
"""

_DOC["momentum"] = """Gradient descent with momentum, in place.

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
"""

_DOC["rmsprop"] = """RMSprop, in place.

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
"""

_DOC["adam"] = """Adam (and AdamW, AMSGrad), in place.

    .. math::
        m \\leftarrow \\beta_1 m + (1-\\beta_1) g \\qquad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2 \\\\
        \\hat m = \\frac{m}{1-\\beta_1^t} \\qquad \\hat v = \\frac{v}{1-\\beta_2^t} \\qquad
        \\theta \\leftarrow \\theta - \\eta\\,\\frac{\\hat m}{\\sqrt{\\hat v} + \\epsilon}

    - ``eps_mode="torch"`` (default): ``sqrt(v_hat) + eps``, as the course's programming
      assignment, the Adam paper and ``torch.optim.Adam``; ``"inside"``: ``sqrt(v_hat + eps)``,
      as the course slides (optax's ``eps_root``); ``"keras"``: Keras 3's "epsilon hat",
      ``lr sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)`` (see below).
    - ``weight_decay``: L2 by default, ``g += weight_decay * param`` (``torch.optim.Adam``);
      ``decoupled_weight_decay=True`` is ``torch.optim.AdamW`` (see below).
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
"""

_DOC["ewa"] = """One step of an exponentially weighted average, in place.

    .. math::
        \\mathrm{avg} \\leftarrow \\beta\\,\\mathrm{avg} + (1-\\beta)\\,\\mathrm{value}

    Starting from ``avg = 0`` this averages over about ``1 / (1 - beta)`` values; divide by
    ``1 - beta**t`` (``fastopt.debias``) to remove the start-up bias.

    Parameters
    ----------
    avg : ndarray, updated in place.   value : ndarray, read only (may be read-only).
    beta : float in [0, 1).   n_threads : int or None.
    step, rounding, seed : the rounding of a 16-bit `avg` (as the step kernels).
"""

_DOC["lion"] = """Lion (EvoLved Sign Momentum, Chen et al. 2023), in place.

    .. math::
        c = \\beta_1 m + (1-\\beta_1) g \\qquad
        \\theta \\leftarrow \\theta (1 - \\eta\\lambda) - \\eta\\,\\mathrm{sign}(c) \\qquad
        m \\leftarrow \\beta_2 m + (1-\\beta_2) g

    One state array (m, zero at start).  The step has the same size, lr, for every element;
    ``sign(0) = 0`` (no move) and a NaN propagates.  Weight decay is decoupled, as in the paper,
    optax's ``lion`` and ``lion-pytorch``.  Defaults lr = 1e-4, beta1 = 0.9, beta2 = 0.99 (the
    paper's; lr is typically 3-10x smaller than AdamW's).

    Parameters
    ----------
    param, m : ndarray, updated in place.
    grad : ndarray, read only.
    lr : float >= 0.   beta1, beta2 : float in [0, 1).   weight_decay : float >= 0 (decoupled).
    maximize : bool.   step : int >= 1 or None (needed with ``rounding="stochastic"``).
    n_threads : int or None.
"""

_DOC["adagrad"] = """Adagrad (Duchi et al. 2011), in place, as ``torch.optim.Adagrad``.

    .. math::
        \\eta_t = \\frac{\\eta}{1 + (t-1)\\,\\mathrm{lr\\_decay}} \\qquad
        s \\leftarrow s + g^2 \\qquad
        \\theta \\leftarrow \\theta - \\eta_t\\,\\frac{g}{\\sqrt{s} + \\epsilon}

    where g is the gradient (negated when maximizing, plus ``weight_decay * param``, L2).
    ``sum_sq`` starts at zero (or at torch's ``initial_accumulator_value``).

    Parameters
    ----------
    param, sum_sq : ndarray, updated in place.
    grad : ndarray, read only.
    step : int >= 1, the number of this update (t, for lr_decay).
    lr : float >= 0.   lr_decay : float >= 0.   eps : float >= 0.   weight_decay : float >= 0.
    maximize : bool.   n_threads : int or None.
"""

_DOC["adamax"] = """Adamax (Kingma and Ba 2015, section 7), in place, as ``torch.optim.Adamax``.

    .. math::
        m \\leftarrow \\beta_1 m + (1-\\beta_1) g \\qquad
        u \\leftarrow \\max(\\beta_2 u,\\ |g| + \\epsilon) \\qquad
        \\theta \\leftarrow \\theta - \\frac{\\eta}{1-\\beta_1^t}\\,\\frac{m}{u}

    The infinity-norm variant of Adam; eps is added to |g| inside the max, as PyTorch does.
    g is the gradient (negated when maximizing, plus ``weight_decay * param``, L2).

    Parameters
    ----------
    param, m, u : ndarray, updated in place (m and u start at zero).
    grad : ndarray, read only.
    step : int >= 1, the number of this update (t above).
    lr : float >= 0.   beta1, beta2 : float in [0, 1).   eps : float >= 0.
    weight_decay : float >= 0.   maximize : bool.   n_threads : int or None.
"""

_DOC["adadelta"] = """Adadelta (Zeiler 2012), in place, as ``torch.optim.Adadelta``.

    .. math::
        s \\leftarrow \\rho s + (1-\\rho) g^2 \\qquad
        \\Delta = \\frac{\\sqrt{a + \\epsilon}}{\\sqrt{s + \\epsilon}}\\, g \\qquad
        a \\leftarrow \\rho a + (1-\\rho) \\Delta^2 \\qquad
        \\theta \\leftarrow \\theta - \\eta\\,\\Delta

    g is the gradient (negated when maximizing, plus ``weight_decay * param``, L2); ``sq_avg``
    (s) and ``acc_delta`` (a) start at zero.  The default lr = 1.0 is the paper's and PyTorch's.

    Parameters
    ----------
    param, sq_avg, acc_delta : ndarray, updated in place.
    grad : ndarray, read only.
    lr : float >= 0.   rho : float in [0, 1).   eps : float >= 0.   weight_decay : float >= 0.
    maximize : bool.   step : int >= 1 or None (needed with ``rounding="stochastic"``).
    n_threads : int or None.
"""

_DOC["nadam"] = """NAdam (Dozat 2016: Adam with Nesterov momentum), in place, as ``torch.optim.NAdam``.

    .. math::
        \\mu_t = \\beta_1 (1 - \\tfrac12\\, 0.96^{t\\psi}) \\qquad
        m \\leftarrow \\beta_1 m + (1-\\beta_1) g \\qquad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2 \\\\
        \\theta \\leftarrow \\theta
            - \\eta\\,\\frac{1-\\mu_t}{1-\\prod_{s\\le t}\\mu_s}\\,\\frac{g}{\\sqrt{\\hat v}+\\epsilon}
            - \\eta\\,\\frac{\\mu_{t+1}}{1-\\prod_{s\\le t+1}\\mu_s}\\,\\frac{m}{\\sqrt{\\hat v}+\\epsilon}

    with psi = ``momentum_decay`` and ``v_hat = v / (1 - beta2**t)``.  The product of the mu's
    is state of its own, a scalar: pass ``mu_product`` = mu_1 ... mu_{t-1} (1.0 at step 1) and
    multiply it by mu_t after the call (``fastopt.NAdam`` keeps it, as torch's
    ``state["mu_product"]``).  ``decoupled_weight_decay=True`` is torch's NAdamW form.

    Parameters
    ----------
    param, m, v : ndarray, updated in place (m and v start at zero).
    grad : ndarray, read only.
    step : int >= 1, the number of this update (t above).
    lr : float >= 0.   beta1, beta2 : float in [0, 1).   eps : float >= 0.
    momentum_decay : float >= 0 (psi, torch's default 4e-3).
    mu_product : float in [0, 1], the product mu_1 ... mu_{t-1}.
    maximize : bool.   n_threads : int or None.
"""

_DOC["radam"] = """RAdam (Liu et al. 2020, rectified Adam), in place, as ``torch.optim.RAdam``.

    .. math::
        \\rho_\\infty = \\frac{2}{1-\\beta_2} - 1 \\qquad
        \\rho_t = \\rho_\\infty - \\frac{2 t \\beta_2^t}{1-\\beta_2^t} \\qquad
        r_t = \\sqrt{\\frac{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty}
                             {(\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t}} \\\\
        \\theta \\leftarrow \\theta - \\eta\\,\\hat m\\, r_t\\,
            \\frac{\\sqrt{1-\\beta_2^t}}{\\sqrt{v} + \\epsilon}\\ (\\rho_t > 5), \\qquad
        \\theta \\leftarrow \\theta - \\eta\\,\\hat m\\ \\text{otherwise}

    m, v as Adam's, ``m_hat = m / (1 - beta1**t)``.  While the variance estimate is unreliable
    (rho_t <= 5, the first steps: rho_1 = 1) the step is SGD with momentum, un-rectified.
    torch adds eps to ``sqrt(v)`` (not to ``sqrt(v_hat)``): that is ``eps_mode="torch"`` here,
    the same as ``"keras"``; ``"inside"`` is ``sqrt(v_hat + eps)``.
    ``decoupled_weight_decay=True`` is torch's RAdamW form.

    Parameters
    ----------
    param, m, v : ndarray, updated in place (m and v start at zero).
    grad : ndarray, read only.
    step : int >= 1, the number of this update (t above).
    lr : float >= 0.   beta1, beta2 : float in [0, 1).   eps : float >= 0.
    maximize : bool.   n_threads : int or None.
"""

_DOC["schedule_free_adamw"] = """One step of Schedule-Free AdamW (Defazio et al. 2024), in place.

    The update of ``AdamWScheduleFree`` (facebookresearch/schedule_free), with the parameter
    holding y, the point where gradients are taken (train mode), and z the base sequence:

    .. math::
        \\eta_t = \\eta\\sqrt{1-\\beta_2^t} \\qquad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2 \\qquad
        u = \\frac{g}{\\sqrt{v}+\\epsilon} + \\lambda y \\\\
        y \\leftarrow y + c_{t+1}(z - y) + \\eta_t(\\beta_1(1-c_{t+1}) - 1)\\, u \\qquad
        z \\leftarrow z - \\eta_t u

    which keeps ``y = (1 - beta1) z + beta1 x`` for the averaged iterate
    ``x <- (1 - c) x + c z`` without storing x.  ``ckp1`` (c_{t+1}) is the averaging weight
    ``w_t / sum(w)`` with ``w_t = t**r * max_lr**weight_lr_power``, and `lr` is the warmed-up
    learning rate: ``fastopt.ScheduleFreeAdamW`` computes both and switches the parameters
    between y and x (``train()``/``eval()``).  z starts as a copy of the parameter, v at zero.

    Parameters
    ----------
    param, z, v : ndarray, updated in place.
    grad : ndarray, read only.
    step : int >= 1, the number of this update (t above).
    lr : float >= 0.   ckp1 : float in [0, 1].   beta1, beta2 : float in [0, 1).
    eps : float >= 0.   weight_decay : float >= 0 (lambda, at y, after the normalisation, as
    the reference).   maximize : bool.   n_threads : int or None.
"""
