"""The public in-place kernels.

``sgd_step``, ``momentum_step``, ``rmsprop_step``, ``adam_step`` and ``ewa_update`` are the
functions of the core extension (``fastopt._core``), running the loop table chosen for this CPU
(``fastopt._dispatch``).  Their argument checks live in C (``_checks.pxi``, ``_plan.pxi``) rather
than here: a Python-level check of four arrays costs more than the
whole update of a small array, and one ``adam_step`` on 1-element arrays must cost no more than one
``np.add(a, b, out=a)``.

``ewa`` (a whole series) and ``debias`` return new arrays; their set-up is Python, their loop is C.
"""

import operator

import numpy as np

from ._dispatch import kernels as _k
from ._registry import RULES as _RULES

sgd_step = _k.sgd_step
momentum_step = _k.momentum_step
rmsprop_step = _k.rmsprop_step
adam_step = _k.adam_step
ewa_update = _k.ewa_update
same_traffic_step = _k.same_traffic_step

# Every rule of the registry is public under its twin's name (a rule added to the registry needs
# no line here; the five above are spelled out for readers and tools).
RULE_KERNELS = tuple(r.twin for r in _RULES)
for _name in RULE_KERNELS:
    globals()[_name] = getattr(_k, _name)
del _name

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _plain(a):
    """True when a's memory can be walked with element strides: aligned, native byte order,
    every stride a multiple of the itemsize (a structured-field view is not)."""
    return (a.flags.aligned and a.dtype.isnative
            and all(st % a.itemsize == 0 for st in a.strides))


def _as_float_array(x, name):
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray: its mask would be ignored; pass "
                        f"the .data array (or fill the masked values) explicitly")
    a = np.asarray(x)
    if a.dtype.kind == "f" and a.dtype.itemsize in (4, 8) and not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))   # a native copy of the (read-only) input
    if a.dtype in _FLOATS:
        return a if _plain(a) else a.copy()
    if a.dtype.kind in "biu":
        return a.astype(np.float64)
    if a.dtype == np.float16 or (_k.BFLOAT16 is not None and a.dtype == _k.BFLOAT16):
        return a.astype(np.float32)     # 16-bit input: computed (and returned) in float32
    raise TypeError(f"{name} must hold real numbers (float32/float64; float16/bfloat16, computed "
                    f"in float32; or integers, converted to float64), got dtype {a.dtype}")


def _check_out(out, shape, dtype):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if not _plain(out):
        raise ValueError("out must be aligned, in native byte order, with strides that are "
                         "multiples of its itemsize (a structured-field view is not): fastopt "
                         "never writes through a temporary copy")


def _check_adjust(adjust):
    """None, or adjust as a bool; TypeError naming `adjust` otherwise (never truthiness)."""
    if adjust is None:
        return None
    if adjust is True or adjust is False or isinstance(adjust, np.bool_):
        return bool(adjust)
    raise TypeError(f"adjust must be None, True or False, got {adjust!r} "
                    f"({type(adjust).__name__})")


def ewa(series, *, beta, bias_correction=True, adjust=None, ignore_na=False, axis=0, out=None):
    r"""Exponentially weighted average of a series, scanned along `axis`.

    By default (``adjust=None``) the course's zero-started average:

    .. math::
        v_0 = 0, \qquad v_t = \beta v_{t-1} + (1-\beta)\,\theta_t, \qquad
        \text{out}_t = \frac{v_t}{1-\beta^t} \ (\text{bias\_correction}) \text{ or } v_t

    It averages over about ``1 / (1 - beta)`` values.  With bias correction it equals pandas'
    ``Series.ewm(alpha=1 - beta, adjust=True).mean()`` on data without NaN; the debiased average of
    a constant series is that constant.  A NaN in this form makes that output and every later one
    of its series NaN (it propagates, as in the formula).

    With ``adjust=True`` or ``adjust=False`` the result is pandas'
    ``Series.ewm(alpha=1 - beta, adjust=adjust, ignore_na=ignore_na).mean()`` (``min_periods=0``),
    NaN handling included, computed with pandas' recurrence:

    .. math::
        \text{adjust=True:}\quad y_t = \frac{\sum_i \beta^{i}\,\theta_{t-i}}{\sum_i \beta^{i}},
        \qquad
        \text{adjust=False:}\quad y_0 = \theta_0, \quad y_t = \beta y_{t-1} + (1-\beta)\,\theta_t

    (for adjust=True the sums run over the observed values, i counting positions back from t with
    ``ignore_na=False`` and observations with ``ignore_na=True``; the adjust=False recursion is
    the one without NaN).
    Leading NaNs give NaN; a NaN after the first observed value repeats the last average.  With
    ``ignore_na=False`` (pandas' default) weights are by position, so the weights of earlier
    values keep decaying through a run of NaN (for adjust=False the gap's decayed weight and
    1 - beta are renormalised, as pandas does); with ``ignore_na=True`` NaNs are skipped as if
    removed.  This form keeps its state in float64 for float32 input too (as pandas does) and
    rounds each output once.  For ``adjust=False`` every beta is treated alike, as pandas
    documents it; pandas 3.0 special-cases alpha = 0.5 (``com == 1``) after a NaN gap with
    ``ignore_na=False`` (pandas GH-66523), so for beta = 0.5 those values differ from it there.

    For N-D input every 1-D slice along `axis` is an independent series (the scan is vectorised and
    threaded across them; each series is scanned by one thread, so results do not depend on the
    thread count).

    Parameters
    ----------
    series : array_like of real numbers.  float32 stays float32; integers become float64.
    beta : float in [0, 1).
    bias_correction : bool, for ``adjust=None``: divide v_t by 1 - beta**t (t counts from 1;
        computed in float64).  With ``adjust=True``/``False`` pandas' form decides, and
        bias_correction must stay at its default (True): ``bias_correction=False`` (the
        zero-started average) with either raises ValueError.
    adjust : None, True or False.  None: the zero-started form above; True/False: pandas' form.
    ignore_na : bool, pandas' `ignore_na`; only with ``adjust=True``/``False`` (True with
        ``adjust=None`` raises ValueError, since that form has no NaN handling to change).
    axis : int, the axis that holds the steps t.
    out : ndarray, optional, same shape and dtype as the result; may be `series` itself.

    Returns
    -------
    ndarray, the averages, the same shape as `series`.

    Raises
    ------
    TypeError for a non-bool `bias_correction`/`ignore_na` or an `adjust` other than None/bool;
    ValueError for a contradictory combination (see above).  `out` is left untouched.

    Examples
    --------
    >>> import fastopt
    >>> fastopt.ewa([1.0, 1.0, 1.0], beta=0.9)
    array([1., 1., 1.])
    >>> fastopt.ewa([1.0, 1.0], beta=0.9, bias_correction=False)
    array([0.1 , 0.19])
    >>> fastopt.ewa([1.0, 2.0], beta=0.5, adjust=False)
    array([1. , 1.5])
    >>> fastopt.ewa([float("nan"), 1.0, float("nan"), 4.0], beta=0.5, adjust=True)
    array([nan, 1. , 1. , 3.4])
    """
    x = _as_float_array(series, "series")
    _k.check_beta(beta, "beta")
    bias_correction = _k.check_bool(bias_correction, "bias_correction")
    adjust = _check_adjust(adjust)
    ignore_na = _k.check_bool(ignore_na, "ignore_na")
    if adjust is not None and not bias_correction:
        raise ValueError(f"bias_correction=False (the zero-started average, adjust=None) "
                         f"contradicts adjust={adjust} (pandas' form, which has its own start); "
                         f"leave bias_correction at its default, or pass adjust=None")
    if adjust is None and ignore_na:
        raise ValueError("ignore_na=True needs adjust=True or adjust=False (pandas' NaN "
                         "handling); with adjust=None a NaN propagates")
    if x.ndim == 0:
        raise ValueError("series must have at least one dimension")
    ax = _k.check_axis(axis, x.ndim)
    if out is None:
        res = np.empty(x.shape, dtype=x.dtype)
    else:
        _check_out(out, x.shape, x.dtype)
        # may_share_memory is a bounds test (constant time); an exact shares_memory can take
        # exponential time on adversarial strides
        if np.may_share_memory(out, x) and not (out.__array_interface__["data"][0]
                                                == x.__array_interface__["data"][0]
                                                and out.strides == x.strides):
            raise ValueError("out overlaps series (or may) without being the same array")
        res = out
    if x.size == 0:
        return res
    x2 = np.moveaxis(x, ax, 0)
    x2 = x2.reshape(x2.shape[0], -1)             # a copy only of the (read-only) input, if needed
    r = np.moveaxis(res, ax, 0)
    try:
        r2 = r.reshape(r.shape[0], -1, copy=False)
    except ValueError:                            # `out` has a layout a 2-D view cannot express:
        r2 = None                                 # scan into a fresh array, then copy into out
    if r2 is None:
        tmp = np.empty(x2.shape, dtype=x.dtype)
        _k._ewa_scan(x2, tmp, beta, bias_correction, adjust, ignore_na)
        r[...] = tmp.reshape(r.shape)
    else:
        _k._ewa_scan(x2, r2, beta, bias_correction, adjust, ignore_na)
    return res


def debias(avg, *, beta, step, out=None):
    r"""Bias-corrected average: ``avg / (1 - beta**step)``.

    .. math:: \hat v_t = \frac{v_t}{1 - \beta^t}

    The correction ``1 - beta**step`` is computed in float64 and rounded once to the array dtype.
    With the course's beta = 0.98: ``1 - 0.98**2 = 0.0396``.

    Parameters
    ----------
    avg : array_like of real numbers (a zero-started EWA after `step` updates).
    beta : float in [0, 1).   step : int >= 1.
    out : ndarray, optional, same shape and dtype as `avg`; may be `avg` itself (in place).

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> fastopt.debias(np.array([0.02]), beta=0.98, step=1)
    array([1.])
    """
    a = _as_float_array(avg, "avg")
    b = _k.check_beta(beta, "beta")
    t = _k.check_step(step)
    if out is not None:
        _check_out(out, a.shape, a.dtype)
    return np.divide(a, a.dtype.type(1.0 - b ** t), out=out)
