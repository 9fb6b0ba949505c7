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


cdef int _weight_decay_mode(Hyper* h, int opts, double lr, double weight_decay, bint decoupled,
                            bint fully) noexcept:
    """The weight-decay form of every step rule, after its scalar set-up (which set the L2 form,
    ``wd`` and the ``l2`` option, from weight_decay): decoupled_weight_decay moves it to
    ``param * (1 - lr*wd)`` before the update (AdamW, Keras), fully_decoupled to
    ``param * (1 - wd)``, independent of lr (optimi's form)."""
    if decoupled or fully:
        h.wd = 0.0
        h.decay = 1.0 - (weight_decay if fully else lr * weight_decay)
        return opts & ~O_L2
    return opts


cdef int _eps_alias(int eps_mode, bint eps_inside_sqrt) except -1:
    """eps_inside_sqrt=True is the old spelling of eps_mode="inside"."""
    if eps_inside_sqrt:
        if eps_mode == EPS_KERAS:
            raise ValueError('eps_inside_sqrt=True contradicts eps_mode="keras": give one of '
                             'them (eps_inside_sqrt=True is eps_mode="inside")')
        return EPS_INSIDE
    return eps_mode


def check_eps_alias(eps_mode, eps_inside_sqrt):
    """The eps_mode ("torch", "inside", "keras") that eps_mode and the old eps_inside_sqrt
    spell together; ValueError when they contradict (the kernels' own check)."""
    return _EPS_MODES[_eps_alias(_eps_mode(eps_mode, "eps_mode"),
                                 _bool(eps_inside_sqrt, "eps_inside_sqrt"))]
