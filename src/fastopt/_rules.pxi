# The formulas: one `cdef inline ... noexcept nogil` element function per update rule, on the
# `floating` fused type (float32 compute for float32/float16/bfloat16 storage, float64 for
# float64).  Written once; every loop of every ISA level calls them.
#
# Signature convention (the registry, _registry.py, relies on it to generate the loops):
#   _<rule>_elem(<pointer to each written operand, slot order>, <input value>,
#                <the rule's Hyper fields, registry order>, <option switches, registry order>)
# The input value is the gradient already multiplied by grad_scale (negated when maximizing).

from libc.math cimport sqrt, sqrtf


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


cdef inline void _sgd_elem(floating* p, floating g, floating lr, floating wd,
                           bint l2) noexcept nogil:
    # p <- p - lr * g
    g = _grad(g, p[0], wd, l2)
    p[0] = p[0] - lr * g


cdef inline void _momentum_elem(floating* p, floating* vel, floating g, floating lr,
                                floating wd, floating beta, floating damp1,
                                bint l2, bint nesterov) noexcept nogil:
    # vel <- beta*vel + (1 - dampening)*g ;  p <- p - lr*vel   (nesterov: p <- p - lr*(g + beta*vel))
    cdef floating vi
    g = _grad(g, p[0], wd, l2)
    vi = beta * vel[0] + damp1 * g
    vel[0] = vi
    if nesterov:
        vi = g + beta * vi
    p[0] = p[0] - lr * vi


cdef inline void _rmsprop_elem(floating* p, floating* sq, floating* gavg, floating* buf,
                               floating g, floating lr, floating wd, floating beta, floating omb,
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
    p[0] = p[0] - lr * u


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


cdef inline void _ewa_elem(floating* avg, floating x, floating beta, floating omb) noexcept nogil:
    # avg <- beta*avg + (1-beta)*x
    avg[0] = beta * avg[0] + omb * x
