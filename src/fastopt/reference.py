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


def _grad(param, grad, weight_decay, maximize):
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + weight_decay * param
    return g


def sgd_step(param, grad, *, lr, weight_decay=0.0, maximize=False, n_threads=None):
    """W = W - lr * dW."""
    g = _grad(param, grad, weight_decay, maximize)
    param[...] = param - lr * g


def momentum_step(param, grad, velocity, *, lr, beta=0.9, dampening=None, nesterov=False,
                  weight_decay=0.0, maximize=False, n_threads=None):
    """v = beta v + (1 - dampening) dW; W = W - lr v (nesterov: W = W - lr (dW + beta v))."""
    if dampening is None:
        dampening = beta
    g = _grad(param, grad, weight_decay, maximize)
    velocity[...] = beta * velocity + (1 - dampening) * g
    update = g + beta * velocity if nesterov else velocity
    param[...] = param - lr * update


def rmsprop_step(param, grad, sq_avg, *, lr, beta=0.9, eps=1e-8, eps_inside_sqrt=False,
                 weight_decay=0.0, centered=False, grad_avg=None, momentum=0.0,
                 momentum_buf=None, maximize=False, n_threads=None):
    """S = beta S + (1 - beta) dW**2; W = W - lr dW / (sqrt(S) + eps)."""
    g = _grad(param, grad, weight_decay, maximize)
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
              eps_inside_sqrt=False, weight_decay=0.0, decoupled_weight_decay=False,
              amsgrad=False, v_max=None, maximize=False, n_threads=None):
    """The course's Adam: m, v, bias-corrected m_hat, v_hat, W -= lr m_hat / (sqrt(v_hat) + eps)."""
    g = -grad if maximize else grad
    if decoupled_weight_decay:
        param[...] = param * (1 - lr * weight_decay)
    elif weight_decay != 0:
        g = g + weight_decay * param
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g ** 2
    v_used = v
    if amsgrad:
        np.maximum(v_max, v, out=v_max)
        v_used = v_max
    m_hat = m / (1 - beta1 ** step)
    v_hat = v_used / (1 - beta2 ** step)
    if eps_inside_sqrt:
        param[...] = param - lr * m_hat / np.sqrt(v_hat + eps)
    else:
        param[...] = param - lr * m_hat / (np.sqrt(v_hat) + eps)


def ewa_update(avg, value, *, beta, n_threads=None):
    """avg = beta avg + (1 - beta) value."""
    avg[...] = beta * avg + (1 - beta) * value


def ewa(series, *, beta, bias_correction=True, axis=0, out=None):
    """v_t = beta v_{t-1} + (1 - beta) theta_t from v_0 = 0, divided by 1 - beta**t if asked."""
    x = np.asarray(series)
    if x.dtype.kind in "biu":
        x = x.astype(np.float64)
    x = np.moveaxis(x, axis, 0)
    result = np.empty(x.shape, dtype=x.dtype)
    v = np.zeros(x.shape[1:], dtype=x.dtype)
    for t in range(x.shape[0]):
        v = beta * v + (1 - beta) * x[t]
        result[t] = v / (1 - beta ** (t + 1)) if bias_correction else v
    result = np.moveaxis(result, 0, axis)
    if out is not None:
        out[...] = result
        return out
    return result


def debias(avg, *, beta, step, out=None):
    """avg / (1 - beta**step)."""
    avg = np.asarray(avg)
    if avg.dtype.kind in "biu":
        avg = avg.astype(np.float64)
    return np.divide(avg, avg.dtype.type(1 - beta ** step), out=out)
