# ------------------------------------------------------------------------------------------------
# Hyperparameter set-up shared by every entry point.  The per-rule part is `_<rule>_scalars` in
# _rules.pxi (the formula's file); the generated entry points validate the hyperparameters with
# the registry's kinds and call it.
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
