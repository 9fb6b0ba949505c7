r"""Learning-rate schedules: plain callables ``count -> lr``.

Every schedule is a small, picklable :class:`Schedule` object.  Calling it with an integer count
returns the learning rate as a Python ``float``; its attributes hold the arguments it was built from
(``sched.lr0``, ``sched.decay_rate``, ...) and its ``repr`` is the call that builds it.

What ``count`` counts is the schedule's ``per`` attribute:

``per="epoch"`` (the default, as in the course)
    The optimizer evaluates ``sched(opt.epoch)``.  Epochs count from 0: during the first epoch the
    count is 0, so every decay schedule starts at its initial rate.
``per="step"``
    The optimizer evaluates ``sched(t)`` where ``t`` is the number of the update being taken,
    counting from 1 (the same ``step`` the kernels take).  Count 0 is accepted too, so a schedule
    can be tabulated from 0, optax style.

A count must be an integer in [0, 2**53] (Python or NumPy integer; ``bool`` and floats are
refused, with TypeError; a count out of range is a ValueError).  All
arithmetic is in float64, and every schedule returns a finite number >= 0.

The schedules (the course's list of decay methods, then the two trivial ones):

==========================  =====================================================================
``inverse_time_decay``      ``lr0 / (1 + decay_rate * count)``; staircase: ``floor(count / T)``
``exponential_decay``       ``rate**count * lr0``
``inverse_sqrt_decay``      ``k / sqrt(max(count, 1)) * lr0``
``step_decay``              ``lr0 * factor**floor(count / every)`` (discrete staircase)
``piecewise_constant``      manual decay: a value per interval between boundaries
``constant``                ``lr``
==========================  =====================================================================

:func:`as_schedule` turns what a user passes as a learning rate (a number, a :class:`Schedule`, or
any callable ``count -> lr``) into a :class:`Schedule`.
"""

import bisect
import inspect
import math
import numbers
from collections.abc import Sequence

import numpy as np

from ._dispatch import kernels as _k

__all__ = [
    "Schedule",
    "as_schedule",
    "constant",
    "exponential_decay",
    "inverse_sqrt_decay",
    "inverse_time_decay",
    "piecewise_constant",
    "step_decay",
]

_PERS = ("epoch", "step")


# ------------------------------------------------------------------------------------------------
# Argument checks (the same words as the kernels' checks: the message names the argument).
# ------------------------------------------------------------------------------------------------

def _is_real(x):
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


# one set of rules for every number fastopt takes: the kernels' (C) checks
_real = _k.check_real
_nonneg = _k.check_nonneg


def _positive(x, name, hint=""):
    d = _real(x, name)
    if not (d > 0.0 and math.isfinite(d)):
        raise ValueError(f"{name} must be a finite number > 0{hint}, got {x!r}")
    return d


_check_bool = _k.check_bool


def _check_int(x, name, low, high=None):
    """``_k.check_int`` (the one integer rule: __index__, never bool); its TypeError also says
    the bound, as the kernels' step check does ("count must be an integer >= 0, got float")."""
    try:
        return _k.check_int(x, name, low, high)
    except TypeError:
        raise TypeError(f"{name} must be an integer >= {low}, got {type(x).__name__}") from None


def _check_per(per, name="per"):
    if not isinstance(per, str) or per not in _PERS:
        raise ValueError(f"{name} must be 'epoch' or 'step', got {per!r}")
    return str(per)


def _check_count(count):
    return _check_int(count, "count", 0, _k.MAX_COUNT + 1)


def _describe(fn):
    """A readable name for a user's lr callable (never ``<function <lambda> at 0x...>``)."""
    name = getattr(fn, "__qualname__", None)
    if not isinstance(name, str):
        return f"the lr callable (a {type(fn).__qualname__} object)"
    if name.endswith("<lambda>"):
        return "the lr callable (a lambda)"
    return f"the lr callable {name}"


def _check_arity(fn):
    """TypeError unless fn can be called with one positional argument (the count).  Callables
    without an introspectable signature (some builtins) are accepted as they are."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(0)
    except TypeError:
        raise TypeError(f"lr callable must take one argument (the count): {_describe(fn)} "
                        f"has the signature {sig}") from None


def _sequence(x, name):
    if isinstance(x, (str, bytes)) or not isinstance(x, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence (list, tuple or 1-D array), "
                        f"got {type(x).__name__}")
    return tuple(x)


def _scaled(lr0, power, count, name):
    """``lr0 * power`` with a clear error (never inf) when a growing schedule leaves float range."""
    lr = lr0 * power
    if not math.isfinite(lr):
        raise ValueError(f"{name} overflows a float at count {count} (the learning rate would "
                         f"be inf)")
    return lr


# ------------------------------------------------------------------------------------------------
# The schedules.
# ------------------------------------------------------------------------------------------------

class Schedule:
    """A learning-rate schedule: a callable ``count -> lr`` with a ``per`` attribute.

    ``Schedule(fn, per=...)`` wraps any callable ``fn(count) -> lr`` (the subclasses built by
    :func:`inverse_time_decay` and the other functions of this module compute their own value).
    Calling the schedule checks the count (an integer >= 0) and the value (a finite real number
    >= 0) and returns it as a Python float.  `fn` must be callable with one positional argument
    (checked at construction with :func:`inspect.signature` when the callable has one).
    Schedules are immutable; a wrapped schedule pickles when `fn` does (a module-level function
    does, a lambda does not).

    Args:
      fn: a callable taking one integer count and returning a real number.
      per: ``"epoch"`` (the default) or ``"step"``: what the count counts (see the module).

    Examples:
      >>> def halve_every_2(epoch):
      ...     return 0.1 * 0.5 ** (epoch // 2)
      >>> sched = Schedule(halve_every_2)
      >>> [sched(e) for e in range(5)]
      [0.1, 0.1, 0.05, 0.05, 0.025]
      >>> sched.per
      'epoch'
    """

    _name = "Schedule"

    def __init__(self, fn, *, per="epoch"):
        if not callable(fn):
            raise TypeError(f"fn must be a callable count -> lr, got {type(fn).__name__}")
        _check_arity(fn)
        self._set(fn=fn, per=_check_per(per))

    def _set(self, **attrs):
        for k, v in attrs.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable: build a new schedule instead "
                             f"of setting {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __call__(self, count):
        """The learning rate at integer `count` (>= 0), as a Python float."""
        return self._value(_check_count(count))

    def _value(self, count):
        lr = self.fn(count)
        if not _is_real(lr):
            raise TypeError(f"{_describe(self.fn)} returned {type(lr).__name__} at count {count}; "
                            f"a learning rate must be a real number")
        lr = float(lr)
        if not (lr >= 0.0 and math.isfinite(lr)):
            raise ValueError(f"{_describe(self.fn)} returned {lr!r} at count {count}; "
                             f"a learning rate must be a finite number >= 0")
        return lr

    def _params(self):
        return (("fn", self.fn),)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params())
        return f"{self._name}({args}, per={self.per!r})"


class InverseTimeDecay(Schedule):
    """The schedule built by :func:`inverse_time_decay`."""

    _name = "inverse_time_decay"

    def __init__(self, lr0, decay_rate, *, time_interval=1, staircase=False, per="epoch"):
        staircase = _check_bool(staircase, "staircase")
        self._set(lr0=_nonneg(lr0, "lr0"), decay_rate=_nonneg(decay_rate, "decay_rate"),
                  time_interval=_check_int(time_interval, "time_interval", 1),
                  staircase=staircase, per=_check_per(per))

    def _value(self, count):
        if self.staircase:
            return self.lr0 / (1.0 + self.decay_rate * (count // self.time_interval))
        return self.lr0 / (1.0 + self.decay_rate * count / self.time_interval)

    def _params(self):
        return (("lr0", self.lr0), ("decay_rate", self.decay_rate),
                ("time_interval", self.time_interval), ("staircase", self.staircase))


class ExponentialDecay(Schedule):
    """The schedule built by :func:`exponential_decay`."""

    _name = "exponential_decay"

    def __init__(self, lr0, rate=0.95, *, per="epoch"):
        self._set(lr0=_nonneg(lr0, "lr0"),
                  rate=_positive(rate, "rate", " (< 1 decays, 1 is constant, > 1 grows)"),
                  per=_check_per(per))

    def _value(self, count):
        if self.lr0 == 0.0:
            return 0.0
        try:
            power = self.rate ** count
        except OverflowError:
            power = math.inf
        return _scaled(self.lr0, power, count, "exponential_decay: rate**count * lr0")

    def _params(self):
        return (("lr0", self.lr0), ("rate", self.rate))


class InverseSqrtDecay(Schedule):
    """The schedule built by :func:`inverse_sqrt_decay`."""

    _name = "inverse_sqrt_decay"

    def __init__(self, lr0, k=1.0, *, per="epoch"):
        self._set(lr0=_nonneg(lr0, "lr0"), k=_positive(k, "k"), per=_check_per(per))

    def _value(self, count):
        return self.k / math.sqrt(max(count, 1)) * self.lr0

    def _params(self):
        return (("lr0", self.lr0), ("k", self.k))


class StepDecay(Schedule):
    """The schedule built by :func:`step_decay`."""

    _name = "step_decay"

    def __init__(self, lr0, factor, every, *, per="epoch"):
        self._set(lr0=_nonneg(lr0, "lr0"),
                  factor=_positive(factor, "factor", " (< 1 decays, 1 is constant, > 1 grows)"),
                  every=_check_int(every, "every", 1), per=_check_per(per))

    def _value(self, count):
        if self.lr0 == 0.0:
            return 0.0
        try:
            power = self.factor ** (count // self.every)
        except OverflowError:
            power = math.inf
        return _scaled(self.lr0, power, count, "step_decay: lr0 * factor**floor(count / every)")

    def _params(self):
        return (("lr0", self.lr0), ("factor", self.factor), ("every", self.every))


class PiecewiseConstant(Schedule):
    """The schedule built by :func:`piecewise_constant`."""

    _name = "piecewise_constant"

    def __init__(self, boundaries, values, *, per="epoch"):
        b = _sequence(boundaries, "boundaries")
        v = _sequence(values, "values")
        b = tuple(_check_int(x, f"boundaries[{i}]", 0) for i, x in enumerate(b))
        for i in range(1, len(b)):
            if b[i] <= b[i - 1]:
                raise ValueError(f"boundaries must be strictly increasing, got {list(b)}: "
                                 f"boundaries[{i}] = {b[i]} <= boundaries[{i - 1}] = {b[i - 1]}")
        if len(v) != len(b) + 1:
            raise ValueError(f"values must have len(boundaries) + 1 = {len(b) + 1} entries "
                             f"(one per interval), got {len(v)}")
        v = tuple(_nonneg(x, f"values[{i}]") for i, x in enumerate(v))
        self._set(boundaries=b, values=v, per=_check_per(per))

    def _value(self, count):
        return self.values[bisect.bisect_right(self.boundaries, count)]

    def _params(self):
        return (("boundaries", self.boundaries), ("values", self.values))


class Constant(Schedule):
    """The schedule built by :func:`constant`."""

    _name = "constant"

    def __init__(self, lr, *, per="epoch"):
        self._set(lr=_nonneg(lr, "lr"), per=_check_per(per))

    def _value(self, count):
        return self.lr

    def _params(self):
        return (("lr", self.lr),)


# ------------------------------------------------------------------------------------------------
# The public constructors.
# ------------------------------------------------------------------------------------------------

def inverse_time_decay(lr0, decay_rate, *, time_interval=1, staircase=False, per="epoch"):
    r"""Inverse-time (1/t) decay: the course's ``lr0 / (1 + decay_rate * epoch_num)``.

    .. math::
        \text{lr}(c) = \frac{\text{lr}_0}{1 + \text{decay\_rate}\cdot c / T}
        \qquad\text{or, with staircase,}\qquad
        \text{lr}(c) = \frac{\text{lr}_0}{1 + \text{decay\_rate}\cdot\lfloor c / T\rfloor}

    where ``c`` is the count and ``T = time_interval``.  With the default ``time_interval=1`` the
    continuous form is exactly the course's ``lr0 / (1 + decay_rate * count)``; the staircase form
    is the programming assignment's ``schedule_lr_decay`` (the rate drops once every
    ``time_interval`` counts).  A ``time_interval`` other than 1 without staircase divides the count
    continuously, as Keras does.

    Args:
      lr0: the initial learning rate, a finite number >= 0 (the value at count 0).
      decay_rate: a finite number >= 0; 0 gives a constant schedule.
      time_interval: an integer >= 1, the counts per decay unit (Keras' ``decay_steps``).
      staircase: bool, decay in whole ``time_interval`` units (floor) rather than continuously.
      per: ``"epoch"`` (default) or ``"step"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      The course's worked case, lr0 = 0.2 and decay_rate = 1, epochs 0 to 4:

      >>> sched = inverse_time_decay(0.2, decay_rate=1)
      >>> [round(sched(epoch), 4) for epoch in range(5)]
      [0.2, 0.1, 0.0667, 0.05, 0.04]
      >>> stairs = inverse_time_decay(0.2, 1, time_interval=1000, staircase=True)
      >>> stairs(999), stairs(1000), stairs(2000)
      (0.2, 0.1, 0.06666666666666667)

    References:
      Course: "Learning rate decay" (``update_lr``, ``schedule_lr_decay``).
      Keras: ``keras.optimizers.schedules.InverseTimeDecay(lr0, decay_steps=time_interval,
      decay_rate, staircase)``, the same formula.  PyTorch has no built-in equivalent
      (``LambdaLR(opt, lambda e: 1 / (1 + decay_rate * e))``).
    """
    return InverseTimeDecay(lr0, decay_rate, time_interval=time_interval, staircase=staircase,
                            per=per)


def exponential_decay(lr0, rate=0.95, *, per="epoch"):
    r"""Exponential decay: the course's ``0.95**epoch_num * lr0``.

    .. math:: \text{lr}(c) = \text{rate}^{\,c}\cdot\text{lr}_0

    ``rate`` must be > 0.  A rate in (0, 1) decays, 1 is constant, and a rate > 1 is allowed and
    *grows* the learning rate (useful for a learning-rate range test); a value that would leave the
    float range raises ValueError rather than returning inf.

    Args:
      lr0: the initial learning rate, a finite number >= 0 (the value at count 0).
      rate: the factor per count, a finite number > 0 (default 0.95, as in the course).
      per: ``"epoch"`` (default) or ``"step"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> sched = exponential_decay(0.2)
      >>> [round(sched(epoch), 6) for epoch in range(4)]
      [0.2, 0.19, 0.1805, 0.171475]

    References:
      Course: "Learning rate decay" (exponential decay).
      optax: ``exponential_decay(init_value=lr0, transition_steps=1, decay_rate=rate)``.
      Keras: ``ExponentialDecay(lr0, decay_steps=1, decay_rate=rate)``.
      PyTorch: ``torch.optim.lr_scheduler.ExponentialLR(opt, gamma=rate)``.
    """
    return ExponentialDecay(lr0, rate, per=per)


def inverse_sqrt_decay(lr0, k=1.0, *, per="epoch"):
    r"""Inverse square-root decay: the course's ``k / sqrt(epoch_num) * lr0``.

    .. math:: \text{lr}(c) = \frac{k}{\sqrt{\max(c, 1)}}\cdot\text{lr}_0

    Count 0 is treated as count 1 (the formula is undefined there): the first epoch (count 0)
    and the second (count 1) both use ``k * lr0``.  With ``per="step"`` the count is the update
    number ``t`` (from 1) and this is the course's mini-batch form ``k / sqrt(t) * lr0``.

    Args:
      lr0: the learning-rate scale, a finite number >= 0.
      k: a finite number > 0 (default 1.0); the value at counts 0 and 1 is ``k * lr0``.
      per: ``"epoch"`` (default) or ``"step"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> sched = inverse_sqrt_decay(0.1, per="step")
      >>> [sched(t) for t in (0, 1, 4, 16)]
      [0.1, 0.1, 0.05, 0.025]

    References:
      Course: "Learning rate decay" (``k / sqrt(epoch_num)``, ``k / sqrt(t)``).
      No optax or Keras built-in; in PyTorch, ``LambdaLR(opt, lambda e: k / math.sqrt(max(e, 1)))``.
    """
    return InverseSqrtDecay(lr0, k, per=per)


def step_decay(lr0, factor, every, *, per="epoch"):
    r"""Discrete staircase decay: multiply the rate by `factor` once every `every` counts.

    .. math:: \text{lr}(c) = \text{lr}_0\cdot\text{factor}^{\lfloor c / \text{every}\rfloor}

    ``factor`` must be > 0; a factor > 1 grows the rate (a value that would leave the float range
    raises ValueError).

    Args:
      lr0: the initial learning rate, a finite number >= 0.
      factor: the factor applied at each drop, a finite number > 0 (e.g. 0.5 halves).
      every: an integer >= 1, the counts between drops.
      per: ``"epoch"`` (default) or ``"step"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> sched = step_decay(0.1, factor=0.5, every=10)
      >>> [sched(epoch) for epoch in (0, 9, 10, 19, 20, 35)]
      [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125]

    References:
      Course: "Learning rate decay" (discrete staircase).
      PyTorch: ``torch.optim.lr_scheduler.StepLR(opt, step_size=every, gamma=factor)``.
      optax: ``exponential_decay(lr0, transition_steps=every, decay_rate=factor, staircase=True)``.
      Keras: ``ExponentialDecay(lr0, decay_steps=every, decay_rate=factor, staircase=True)``.
    """
    return StepDecay(lr0, factor, every, per=per)


def piecewise_constant(boundaries, values, *, per="epoch"):
    r"""Manual decay: a fixed learning rate for each interval between boundaries.

    .. math::
        \text{lr}(c) = \begin{cases}
          v_0 & c < b_0 \\
          v_i & b_{i-1} \le c < b_i \\
          v_n & c \ge b_{n-1}
        \end{cases}

    The new value takes effect *at* the boundary (count ``b_i`` already uses ``values[i + 1]``),
    as in optax and PyTorch's ``MultiStepLR``.  Keras' ``PiecewiseConstantDecay`` switches one
    count later (it uses ``values[0]`` while ``count <= boundaries[0]``).

    Args:
      boundaries: strictly increasing integers >= 0 (a list, tuple or 1-D integer array; may be
        empty, which gives a constant schedule).
      values: ``len(boundaries) + 1`` finite numbers >= 0, one per interval.
      per: ``"epoch"`` (default) or ``"step"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> sched = piecewise_constant([10, 20], [0.1, 0.01, 0.001])
      >>> [sched(epoch) for epoch in (0, 9, 10, 19, 20, 100)]
      [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]

    References:
      Course: "Learning rate decay" (manual decay).
      optax: ``piecewise_constant_schedule`` (takes scales rather than values).
      PyTorch: ``MultiStepLR(opt, milestones=boundaries, gamma)`` when each value is the previous
      times gamma.  Keras: ``PiecewiseConstantDecay(boundaries, values)`` (boundary convention
      above).
    """
    return PiecewiseConstant(boundaries, values, per=per)


def constant(lr, *, per="epoch"):
    r"""A constant learning rate.

    .. math:: \text{lr}(c) = \text{lr}

    Args:
      lr: the learning rate, a finite number >= 0.
      per: ``"epoch"`` (default) or ``"step"``: what the count counts (it changes nothing here
        but is kept so every schedule has it).

    Returns:
      A :class:`Schedule` that returns ``float(lr)`` at every count.

    Examples:
      >>> sched = constant(0.01)
      >>> sched(0), sched(1000)
      (0.01, 0.01)
      >>> sched
      constant(lr=0.01, per='epoch')

    References:
      optax: ``constant_schedule(lr)``.  Keras and PyTorch: a plain float learning rate.
    """
    return Constant(lr, per=per)


def as_schedule(lr_or_callable, per=None):
    """Turn a learning-rate argument into a :class:`Schedule`.

    * a real number ``lr``: ``constant(lr, per=per or "epoch")``;
    * a :class:`Schedule`: the object itself;
    * any other callable ``count -> lr``: ``Schedule(fn, per=...)``, keeping the callable's own
      ``per`` attribute if it has one, else `per`, else ``"epoch"``.  It must take one
      positional argument, the count (a TypeError here, not at the first step, otherwise).

    Args:
      lr_or_callable: a real number >= 0, a :class:`Schedule`, or a callable ``count -> lr``.
      per: ``"epoch"``, ``"step"`` or None (the default).  None keeps the object's own ``per``
        (``"epoch"`` when it has none).  A `per` that contradicts the object's own ``per`` is an
        error (ValueError), never silently ignored.

    Returns:
      A :class:`Schedule`.

    Examples:
      >>> as_schedule(0.01)
      constant(lr=0.01, per='epoch')
      >>> sched = inverse_time_decay(0.2, 1)
      >>> as_schedule(sched) is sched
      True
      >>> as_schedule(lambda t: 0.1 / t, per="step").per
      'step'
    """
    if per is not None:
        per = _check_per(per)
    obj = lr_or_callable
    if isinstance(obj, Schedule):
        if per is not None and per != obj.per:
            raise ValueError(f"per={per!r} contradicts the schedule's own per={obj.per!r}")
        return obj
    if _is_real(obj):
        return Constant(obj, per=per or "epoch")
    if callable(obj):
        own = getattr(obj, "per", None)
        if own is not None:
            own = _check_per(own, name=f"the per attribute of {_describe(obj)}")
            if per is not None and per != own:
                raise ValueError(f"per={per!r} contradicts the callable's own per={own!r}")
        return Schedule(obj, per=own or per or "epoch")
    raise TypeError(f"lr must be a real number >= 0, a Schedule or a callable count -> lr, "
                    f"got {type(obj).__name__}")
