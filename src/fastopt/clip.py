"""Gradient clipping by global L2 norm, and a finiteness check, each one native pass."""

import math
from collections.abc import Mapping

import numpy as np

from ._dispatch import kernels as _k


def _arrays(grads, what="grads"):
    if isinstance(grads, np.ndarray):
        return [grads], None
    if isinstance(grads, Mapping):
        keys = list(grads.keys())
        return [grads[k] for k in keys], keys
    if isinstance(grads, (list, tuple)):
        return list(grads), None
    raise TypeError(f"{what} must be an array, a dict of arrays or a list of arrays, "
                    f"got {type(grads).__name__}")


def global_norm(grads):
    r"""The L2 norm of all elements of all arrays, :math:`\sqrt{\sum_i \sum_j g_{ij}^2}`.

    One native read pass, accumulated in float64 in fixed blocks, so the value is the same for
    every thread count.  Like ``np.linalg.norm``, squares beyond the float64 range give inf.
    """
    arrays, keys = _arrays(grads)
    return math.sqrt(_k.sumsq_multi(arrays, labels=keys))


def clip_grad_norm(grads, max_norm, *, eps=1e-6):
    r"""Scale gradients in place so that their global L2 norm is at most `max_norm`.

    .. math::
        \|g\| = \sqrt{\textstyle\sum_i \|g_i\|_F^2}, \qquad
        g_i \leftarrow g_i \cdot \frac{\text{max\_norm}}{\|g\| + \text{eps}}
        \quad \text{when } \|g\| > \text{max\_norm}

    the factor of ``torch.nn.utils.clip_grad_norm_`` (which also scales, by slightly less than 1,
    a norm within eps below max_norm; fastopt leaves that alone).  The norm is one native pass
    over all arrays, accumulated in float64; the scaling (only when needed) is a second, in
    place.  A NaN or Inf norm (including float64 squares that overflow) leaves the gradients
    unchanged, where PyTorch would zero them: see
    ``Optimizer.step(..., skip_if_nonfinite=True)`` to skip such steps.

    Parameters
    ----------
    grads : ndarray, dict of arrays or list of arrays (float64, float32, float16 or
        bfloat16, C-contiguous, writeable; 16-bit arrays are scaled in float32 and rounded to
        nearest).
    max_norm : float >= 0.
    eps : float >= 0, added to the norm in the denominator.

    Returns
    -------
    float, the global norm before clipping.

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> g = {"dW1": np.array([3.0, 4.0])}
    >>> fastopt.clip_grad_norm(g, max_norm=1.0, eps=0.0)
    5.0
    >>> g["dW1"]
    array([0.6, 0.8])
    """
    arrays, keys = _arrays(grads)
    max_norm = _k.check_nonneg(max_norm, "max_norm")
    eps = _k.check_nonneg(eps, "eps")
    norm = math.sqrt(_k.sumsq_multi(arrays, labels=keys, writable=True))
    if math.isfinite(norm) and norm > max_norm:
        _k.scale_multi(arrays, max_norm / (norm + eps), labels=keys)
    return norm


def all_finite(grads):
    """True when no array holds NaN or Inf (one native read pass, no temporary arrays)."""
    arrays, keys = _arrays(grads)
    return bool(_k.all_finite_multi(arrays, labels=keys))
