# ------------------------------------------------------------------------------------------------
# Hyperparameter set-up, one function per rule, shared by the single- and multi-array entry points.
# Each validates, fills the Hyper scalars (float64) and returns the loop-table index
# (_kernel_index of the rule and its option bits, from the registry).
# ------------------------------------------------------------------------------------------------

cdef void _zero(Hyper* h) noexcept:
    h.lr = 0; h.step_size = 0; h.scale = 1; h.gscale = 1; h.wd = 0; h.decay = 1
    h.b1 = 0; h.omb1 = 1; h.b2 = 0; h.omb2 = 1; h.c2 = 1; h.eps_in = 0; h.eps_out = 0
    h.damp1 = 1; h.mom = 0


cdef double _grad_scale(object grad_scale) except? -1.0:
    if grad_scale is None:
        return 1.0
    if type(grad_scale) is float and 0.0 <= <double>grad_scale < 1.8e308:
        return <double>grad_scale
    return _nonneg(grad_scale, "grad_scale")


cdef int _scaled(Hyper* h, object maximize, object grad_scale) except -1:
    # the gradient is multiplied by gscale before anything else: grad_scale, negated to maximize
    h.gscale = (-1.0 if _bool(maximize, "maximize") else 1.0) * _grad_scale(grad_scale)
    return 0


cdef int _sgd_hyper(Hyper* h, object lr, object weight_decay, object maximize,
                    object grad_scale=None) except -1:
    _zero(h)
    h.lr = _nonneg(lr, "lr")
    h.wd = _nonneg(weight_decay, "weight_decay")
    _scaled(h, maximize, grad_scale)
    return _kernel_index(R_SGD, O_L2 if h.wd != 0 else 0)


cdef int _momentum_hyper(Hyper* h, object lr, object beta, object dampening, object nesterov,
                         object weight_decay, object maximize, object grad_scale=None) except -1:
    cdef double damp
    cdef bint nest = _bool(nesterov, "nesterov")
    _sgd_hyper(h, lr, weight_decay, maximize, grad_scale)
    h.b1 = _beta(beta, "beta")
    if dampening is None:
        damp = h.b1
    else:
        damp = _real(dampening, "dampening")
        if not (0.0 <= damp <= 1.0):
            raise ValueError(f"dampening must be in [0, 1] or None, got {dampening!r}")
    h.damp1 = 1.0 - damp
    return _kernel_index(R_MOMENTUM, (O_L2 if h.wd != 0 else 0) | (O_NESTEROV if nest else 0))


cdef int _rmsprop_hyper(Hyper* h, object lr, object beta, object eps, object eps_inside_sqrt,
                        object weight_decay, object centered, object momentum,
                        object maximize, object grad_scale=None) except -1:
    cdef double e
    cdef bint inside = _bool(eps_inside_sqrt, "eps_inside_sqrt")
    cdef bint cent = _bool(centered, "centered")
    _sgd_hyper(h, lr, weight_decay, maximize, grad_scale)
    h.b1 = _beta(beta, "beta")
    h.omb1 = 1.0 - h.b1
    e = _nonneg(eps, "eps")
    if inside:
        h.eps_in = e
    else:
        h.eps_out = e
    h.mom = _nonneg(momentum, "momentum")
    return _kernel_index(R_RMSPROP, (O_L2 if h.wd != 0 else 0) | (O_CENTERED if cent else 0)
                         | (O_MOMENTUM if h.mom > 0 else 0))


cdef int _adam_hyper(Hyper* h, object step, object lr, object beta1, object beta2, object eps,
                     object eps_inside_sqrt, object weight_decay, object decoupled_weight_decay,
                     object amsgrad, object maximize, object grad_scale=None) except -1:
    cdef Py_ssize_t t = _step(step)
    cdef bint inside = _bool(eps_inside_sqrt, "eps_inside_sqrt")
    cdef bint decoupled = _bool(decoupled_weight_decay, "decoupled_weight_decay")
    cdef bint ams = _bool(amsgrad, "amsgrad")
    cdef double lr_, wd, e
    _zero(h)
    lr_ = _nonneg(lr, "lr")
    h.b1 = _beta(beta1, "beta1")
    h.b2 = _beta(beta2, "beta2")
    e = _nonneg(eps, "eps")
    wd = _nonneg(weight_decay, "weight_decay")
    _scaled(h, maximize, grad_scale)
    h.omb1 = 1.0 - h.b1
    h.omb2 = 1.0 - h.b2
    # Bias corrections and the step size in float64, once per call (never per element).
    h.lr = lr_
    h.step_size = lr_ / (1.0 - pow(h.b1, <double>t))
    h.c2 = 1.0 / (1.0 - pow(h.b2, <double>t))
    if inside:
        h.eps_in = e
    else:
        h.eps_out = e
    if decoupled:
        h.decay = 1.0 - lr_ * wd
    else:
        h.wd = wd
    return _kernel_index(R_ADAM, (O_L2 if h.wd != 0 else 0) | (O_AMSGRAD if ams else 0))


cdef int _ewa_hyper(Hyper* h, object beta) except -1:
    _zero(h)
    h.b1 = _beta(beta, "beta")
    h.omb1 = 1.0 - h.b1
    return _kernel_index(R_EWA, 0)

