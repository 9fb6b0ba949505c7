r"""Learning-rate schedules: plain callables ``count -> lr``.

Every schedule is a small, picklable :class:`Schedule` object.  Calling it with an integer count
returns the learning rate as a Python ``float``; its attributes hold the arguments it was built from
(``sched.lr0``, ``sched.decay_rate``, ...) and its ``repr`` is the call that builds it.

What ``count`` counts is the schedule's ``per`` attribute:

``per="epoch"`` (the default of the course's schedules)
    The optimizer evaluates ``sched(opt.epoch)``.  Epochs count from 0: during the first epoch the
    count is 0, so every decay schedule starts at its initial rate.
``per="step"``
    The optimizer evaluates ``sched(opt.step_count)``, the number of updates already applied:
    the first update uses count 0, as optax's ``count`` and PyTorch's ``LRScheduler`` do, so a
    schedule starts at its initial rate and runs in step with an optax or PyTorch loop.  (The
    kernels' ``step`` is that count plus one.)  The optax and PyTorch schedules below default
    to it.

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

The optax and PyTorch schedules (``per="step"`` by default; each equals its reference at every
integer count, computed in float64; ``c`` is the count, ``T`` the number of transition steps):

==========================  =====================================================================
``linear_schedule``         optax's: ``init`` to ``end`` linearly over ``T`` counts, then ``end``
``polynomial_decay``        optax's ``polynomial_schedule``: ``(init - end) * (1 - c/T)**p + end``
``cosine_decay``            optax's: ``lr0 * ((1 - alpha) * (0.5 + 0.5 cos(pi c/T))**p + alpha)``
``warmup_cosine_decay``     optax's: linear warm-up to ``peak``, then cosine decay to ``end``
``one_cycle``               PyTorch's ``OneCycleLR`` (``anneal_strategy='cos'``)
``join_schedules``          optax's: schedule ``i + 1`` from ``boundaries[i]``, counted from there
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
    "cosine_decay",
    "exponential_decay",
    "inverse_sqrt_decay",
    "inverse_time_decay",
    "join_schedules",
    "linear_schedule",
    "one_cycle",
    "piecewise_constant",
    "polynomial_decay",
    "step_decay",
    "warmup_cosine_decay",
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


# The optax and PyTorch schedules.  The formulas are the references' own, operation for operation
# (in float64), so that a value equals the reference's, not just approximately.

def _polynomial(init, end, power, steps, begin, count):
    """optax.polynomial_schedule at `count`: clip(count - begin, 0, steps), then the power law."""
    if steps == 0:                       # optax: transition_steps <= 0 holds init
        return init
    c = min(max(count - begin, 0), steps)
    frac = 1 - c / steps
    return (init - end) * frac ** power + end


def _cosine(lr0, steps, alpha, exponent, count):
    """optax.cosine_decay_schedule at `count` (steps > 0)."""
    c = min(count, steps)
    cosine = 0.5 * (1 + math.cos(math.pi * c / steps))
    return lr0 * ((1 - alpha) * cosine ** exponent + alpha)


def _ratio(num, den, what):
    """``num / den`` (den > 0), a ValueError naming `what` when it leaves the float range."""
    r = num / den
    if not math.isfinite(r):
        raise ValueError(f"{what} overflows a float ({num!r} / {den!r})")
    return r


class PolynomialDecay(Schedule):
    """The schedule built by :func:`polynomial_decay`."""

    _name = "polynomial_decay"

    def __init__(self, init, end, power, transition_steps, *, transition_begin=0, per="step"):
        self._set(init=_nonneg(init, "init"), end=_nonneg(end, "end"),
                  power=_nonneg(power, "power"),
                  transition_steps=_check_int(transition_steps, "transition_steps", 0),
                  transition_begin=_check_int(transition_begin, "transition_begin", 0),
                  per=_check_per(per))

    def _value(self, count):
        return _polynomial(self.init, self.end, self.power, self.transition_steps,
                           self.transition_begin, count)

    def _params(self):
        return (("init", self.init), ("end", self.end), ("power", self.power),
                ("transition_steps", self.transition_steps),
                ("transition_begin", self.transition_begin))


class LinearSchedule(PolynomialDecay):
    """The schedule built by :func:`linear_schedule` (a :class:`PolynomialDecay` with power 1)."""

    _name = "linear_schedule"

    def __init__(self, init, end, transition_steps, *, transition_begin=0, per="step"):
        super().__init__(init, end, 1.0, transition_steps, transition_begin=transition_begin,
                         per=per)

    def _params(self):
        return (("init", self.init), ("end", self.end),
                ("transition_steps", self.transition_steps),
                ("transition_begin", self.transition_begin))


class CosineDecay(Schedule):
    """The schedule built by :func:`cosine_decay`."""

    _name = "cosine_decay"

    def __init__(self, lr0, decay_steps, *, alpha=0.0, exponent=1.0, per="step"):
        self._set(lr0=_nonneg(lr0, "lr0"),
                  decay_steps=_check_int(decay_steps, "decay_steps", 1),
                  alpha=_nonneg(alpha, "alpha"), exponent=_nonneg(exponent, "exponent"),
                  per=_check_per(per))

    def _value(self, count):
        return _cosine(self.lr0, self.decay_steps, self.alpha, self.exponent, count)

    def _params(self):
        return (("lr0", self.lr0), ("decay_steps", self.decay_steps), ("alpha", self.alpha),
                ("exponent", self.exponent))


class WarmupCosineDecay(Schedule):
    """The schedule built by :func:`warmup_cosine_decay`."""

    _name = "warmup_cosine_decay"

    def __init__(self, init, peak, warmup_steps, decay_steps, *, end=0.0, exponent=1.0,
                 per="step"):
        init, peak, end = _nonneg(init, "init"), _nonneg(peak, "peak"), _nonneg(end, "end")
        warmup_steps = _check_int(warmup_steps, "warmup_steps", 0)
        decay_steps = _check_int(decay_steps, "decay_steps", 1)
        if decay_steps <= warmup_steps:
            raise ValueError(f"decay_steps must be an integer > warmup_steps = {warmup_steps} "
                             f"(it counts the warm-up too: the cosine runs for decay_steps - "
                             f"warmup_steps counts), got {decay_steps}")
        # optax: alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
        alpha = 0.0 if peak == 0.0 else _ratio(end, peak, "warmup_cosine_decay: end / peak")
        self._set(init=init, peak=peak, warmup_steps=warmup_steps, decay_steps=decay_steps,
                  end=end, exponent=_nonneg(exponent, "exponent"), _alpha=alpha,
                  per=_check_per(per))

    def _value(self, count):
        # optax: join_schedules([linear_schedule(init, peak, warmup_steps),
        #                        cosine_decay_schedule(peak, decay_steps - warmup_steps, alpha,
        #                                              exponent)], [warmup_steps])
        w = self.warmup_steps
        if count < w:
            return _polynomial(self.init, self.peak, 1.0, w, 0, count)
        return _cosine(self.peak, self.decay_steps - w, self._alpha, self.exponent, count - w)

    def _params(self):
        return (("init", self.init), ("peak", self.peak), ("warmup_steps", self.warmup_steps),
                ("decay_steps", self.decay_steps), ("end", self.end),
                ("exponent", self.exponent))


class OneCycle(Schedule):
    """The schedule built by :func:`one_cycle`."""

    _name = "one_cycle"

    def __init__(self, max_lr, total_steps, *, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, three_phase=False, per="step"):
        max_lr = _nonneg(max_lr, "max_lr")
        total = _check_int(total_steps, "total_steps", 1)
        pct = _real(pct_start, "pct_start")
        if not 0.0 <= pct <= 1.0:
            raise ValueError(f"pct_start must be a number in [0, 1], got {pct_start!r}")
        div = _positive(div_factor, "div_factor")
        final_div = _positive(final_div_factor, "final_div_factor")
        three_phase = _check_bool(three_phase, "three_phase")
        # torch: initial_lr = max_lr / div_factor, min_lr = initial_lr / final_div_factor
        initial = _ratio(max_lr, div, "one_cycle: max_lr / div_factor")
        final = _ratio(initial, final_div, "one_cycle: max_lr / div_factor / final_div_factor")
        # torch's _schedule_phases: (end_step, start_lr, end_lr)
        if three_phase:
            phases = ((float(pct * total) - 1, initial, max_lr),
                      (float(2 * pct * total) - 2, max_lr, initial),
                      (total - 1, initial, final))
        else:
            phases = ((float(pct * total) - 1, initial, max_lr),
                      (total - 1, max_lr, final))
        _check_phases(phases, total, pct_start)
        self._set(max_lr=max_lr, total_steps=total, pct_start=pct, div_factor=div,
                  final_div_factor=final_div, three_phase=three_phase, _phases=phases,
                  _final=final, per=_check_per(per))

    def _value(self, count):
        if count > self.total_steps:     # torch raises here; fastopt stays at min_lr
            return self._final
        start = 0.0                      # torch's OneCycleLR.get_lr and _annealing_cos
        last = len(self._phases) - 1
        for i, (end_step, lr_start, lr_end) in enumerate(self._phases):
            if count <= end_step or i == last:
                pct = (count - start) / (end_step - start)
                return lr_end + (lr_start - lr_end) / 2.0 * (math.cos(math.pi * pct) + 1)
            start = end_step

    def _params(self):
        return (("max_lr", self.max_lr), ("total_steps", self.total_steps),
                ("pct_start", self.pct_start), ("div_factor", self.div_factor),
                ("final_div_factor", self.final_div_factor), ("three_phase", self.three_phase))


def _check_phases(phases, total, pct_start):
    """ValueError when a count in [0, total] falls in a phase of zero length (torch's OneCycleLR
    divides by zero there: ZeroDivisionError at that count)."""
    start, done = 0.0, -math.inf         # done: counts <= done went to an earlier phase
    for i, (end_step, _, _) in enumerate(phases):
        high = total if i == len(phases) - 1 else min(end_step, total)
        first = 0 if done == -math.inf else max(0, math.floor(done) + 1)
        if end_step == start and first <= high:
            raise ValueError(f"pct_start = {pct_start!r} with total_steps = {total} gives phase "
                             f"{i + 1} of the cycle zero length (torch's OneCycleLR divides by "
                             f"zero at count {first}); choose another pct_start")
        done = max(done, end_step)
        start = end_step


class JoinSchedules(Schedule):
    """The schedule built by :func:`join_schedules`."""

    _name = "join_schedules"

    def __init__(self, schedules, boundaries, *, per=None):
        sch = _sequence(schedules, "schedules")
        b = _sequence(boundaries, "boundaries")
        b = tuple(_check_int(x, f"boundaries[{i}]", 0) for i, x in enumerate(b))
        for i in range(1, len(b)):
            if b[i] < b[i - 1]:
                raise ValueError(f"boundaries must be non-decreasing, got {list(b)}: "
                                 f"boundaries[{i}] = {b[i]} < boundaries[{i - 1}] = {b[i - 1]}")
        if len(sch) != len(b) + 1:
            raise ValueError(f"schedules must have len(boundaries) + 1 = {len(b) + 1} entries "
                             f"(one per interval), got {len(sch)}")
        for i, s in enumerate(sch):
            if not callable(s):
                raise TypeError(f"schedules[{i}] must be a Schedule or a callable count -> lr, "
                                f"got {type(s).__name__} (constant(lr) gives a fixed rate)")
        if per is not None:
            per = _check_per(per)
        own = [(i, getattr(s, "per", None)) for i, s in enumerate(sch)]
        own = [(i, _check_per(p, name=f"schedules[{i}].per")) for i, p in own if p is not None]
        if per is None:
            pers = {p for _, p in own}
            if len(pers) > 1:
                listed = ", ".join(f"schedules[{i}].per={p!r}" for i, p in own)
                raise ValueError(f"the schedules disagree on per ({listed}): build them with "
                                 f"the same per (e.g. constant(lr, per='step'))")
            per = pers.pop() if pers else "step"
        for i, p in own:
            if p != per:
                raise ValueError(f"per={per!r} contradicts schedules[{i}].per={p!r}")
        self._set(schedules=tuple(as_schedule(s, per=per) for s in sch), boundaries=b,
                  per=per)

    def _value(self, count):
        # optax: for count >= boundaries[i], schedules[i + 1](count - boundaries[i])
        i = bisect.bisect_right(self.boundaries, count)
        if i == 0:
            return self.schedules[0](count)
        return self.schedules[i](count - self.boundaries[i - 1])

    def _params(self):
        return (("schedules", self.schedules), ("boundaries", self.boundaries))


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


def polynomial_decay(init, end, power, transition_steps, *, transition_begin=0, per="step"):
    r"""Polynomial transition from `init` to `end`: optax's ``polynomial_schedule``.

    .. math::
        \text{lr}(c) = (\text{init} - \text{end})\left(1 - \frac{k}{T}\right)^{\text{power}}
        + \text{end},\qquad k = \min(\max(c - B, 0), T)

    where ``T = transition_steps`` and ``B = transition_begin``: the value is `init` up to count
    ``B``, reaches `end` at count ``B + T`` and stays there.  ``transition_steps=0`` gives the
    constant `init` (as optax does for ``transition_steps <= 0``).

    Args:
      init: the value up to count `transition_begin`, a finite number >= 0.
      end: the value from count ``transition_begin + transition_steps`` on, a finite number >= 0
        (it may be above `init`: the schedule then grows).
      power: the exponent of the transition, a finite number >= 0 (1 is linear; 0 holds `init`).
      transition_steps: an integer >= 0, the counts the transition takes.
      transition_begin: an integer >= 0, the count at which the transition starts (default 0).
      per: ``"step"`` (default) or ``"epoch"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> sched = polynomial_decay(1.0, 0.0, power=2, transition_steps=10)
      >>> [sched(c) for c in (0, 5, 10, 20)]
      [1.0, 0.25, 0.0, 0.0]

    References:
      optax: ``polynomial_schedule(init_value=init, end_value=end, power, transition_steps,
      transition_begin)``, which also accepts a negative `transition_steps` (constant) or
      `transition_begin` (read as 0); fastopt refuses both (ValueError).
      PyTorch: ``PolynomialLR(opt, total_iters=transition_steps, power)`` when ``end = 0`` and
      ``transition_begin = 0``.
    """
    return PolynomialDecay(init, end, power, transition_steps, transition_begin=transition_begin,
                           per=per)


def linear_schedule(init, end, transition_steps, *, transition_begin=0, per="step"):
    r"""Linear transition from `init` to `end`: optax's ``linear_schedule``.

    .. math::
        \text{lr}(c) = (\text{init} - \text{end})\left(1 - \frac{k}{T}\right) + \text{end},
        \qquad k = \min(\max(c - B, 0), T)

    :func:`polynomial_decay` with ``power=1`` (optax's definition).  The value is `init` up to
    count ``B = transition_begin`` and `end` from count ``B + T`` on; ``transition_steps=0`` gives
    the constant `init`.  With ``init < end`` it is a linear warm-up.

    Args:
      init: the value up to count `transition_begin`, a finite number >= 0.
      end: the value from count ``transition_begin + transition_steps`` on, a finite number >= 0.
      transition_steps: an integer >= 0, the counts the transition takes.
      transition_begin: an integer >= 0, the count at which the transition starts (default 0).
      per: ``"step"`` (default) or ``"epoch"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> warmup = linear_schedule(0.0, 0.1, transition_steps=4)
      >>> [round(warmup(c), 12) for c in range(6)]
      [0.0, 0.025, 0.05, 0.075, 0.1, 0.1]
      >>> late = linear_schedule(1.0, 0.5, 2, transition_begin=3)
      >>> [late(c) for c in range(7)]
      [1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.5]

    References:
      optax: ``linear_schedule(init_value=init, end_value=end, transition_steps,
      transition_begin)`` (negative steps refused here, as for :func:`polynomial_decay`).
      PyTorch: ``LinearLR(opt, start_factor, end_factor, total_iters)`` for the same shape as
      factors of the optimizer's lr.
    """
    return LinearSchedule(init, end, transition_steps, transition_begin=transition_begin,
                          per=per)


def cosine_decay(lr0, decay_steps, *, alpha=0.0, exponent=1.0, per="step"):
    r"""Cosine decay (SGDR without restarts): optax's ``cosine_decay_schedule``.

    .. math::
        \text{lr}(c) = \text{lr}_0\left[(1 - \alpha)\left(\tfrac{1}{2}\left(1 +
        \cos\frac{\pi \min(c, T)}{T}\right)\right)^{\text{exponent}} + \alpha\right]

    with ``T = decay_steps``: `lr0` at count 0, ``alpha * lr0`` from count ``T`` on.

    Args:
      lr0: the initial learning rate, a finite number >= 0.
      decay_steps: an integer >= 1, the counts the decay takes (optax also refuses 0).
      alpha: the final value as a fraction of `lr0`, a finite number >= 0 (default 0.0).
      exponent: the power of the cosine factor, a finite number >= 0 (default 1.0).
      per: ``"step"`` (default) or ``"epoch"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> sched = cosine_decay(1.0, 10)
      >>> [sched(c) for c in (0, 5, 10, 11)]
      [1.0, 0.5, 0.0, 0.0]
      >>> cosine_decay(1.0, 10, alpha=0.1)(10)
      0.1

    References:
      optax: ``cosine_decay_schedule(init_value=lr0, decay_steps, alpha, exponent)``.
      PyTorch: ``CosineAnnealingLR(opt, T_max=decay_steps, eta_min=alpha * lr0)`` up to count
      ``T`` (PyTorch's keeps following the cosine after it; this one stays at ``alpha * lr0``).
      Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", 2017.
    """
    return CosineDecay(lr0, decay_steps, alpha=alpha, exponent=exponent, per=per)


def warmup_cosine_decay(init, peak, warmup_steps, decay_steps, *, end=0.0, exponent=1.0,
                        per="step"):
    r"""Linear warm-up then cosine decay: optax's ``warmup_cosine_decay_schedule``.

    .. math::
        \text{lr}(c) = \begin{cases}
          \text{init} + (\text{peak} - \text{init})\,c / W & c < W \\
          \text{peak}\left[(1 - \alpha)\left(\tfrac{1}{2}\left(1 + \cos\frac{\pi\min(c - W,
          D - W)}{D - W}\right)\right)^{\text{exponent}} + \alpha\right] & c \ge W
        \end{cases}

    with ``W = warmup_steps``, ``D = decay_steps`` and ``alpha = end / peak`` (0 when ``peak``
    is 0, as in optax: the schedule is then 0 from count ``W`` on, whatever `end`).  That is
    ``join_schedules([linear_schedule(init, peak, W), cosine_decay(peak, D - W, alpha=alpha,
    exponent=exponent)], [W])``.  **`decay_steps` counts the warm-up too**: the value is `peak`
    at count ``W`` and `end` from count ``D`` on (up to rounding: ``peak * (end / peak)``).

    Args:
      init: the value at count 0, a finite number >= 0.
      peak: the value at count `warmup_steps`, a finite number >= 0.
      warmup_steps: an integer >= 0, the counts of the linear warm-up (0: no warm-up).
      decay_steps: an integer > `warmup_steps`, the total length: warm-up plus decay (optax
        raises too when ``decay_steps - warmup_steps <= 0``).
      end: the final value, a finite number >= 0 (default 0.0).
      exponent: the power of the cosine factor, a finite number >= 0 (default 1.0).
      per: ``"step"`` (default) or ``"epoch"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> sched = warmup_cosine_decay(0.0, 1.0, warmup_steps=2, decay_steps=6)
      >>> [round(sched(c), 12) for c in range(8)]
      [0.0, 0.5, 1.0, 0.853553390593, 0.5, 0.146446609407, 0.0, 0.0]

    References:
      optax: ``warmup_cosine_decay_schedule(init_value=init, peak_value=peak, warmup_steps,
      decay_steps, end_value=end, exponent)``.
    """
    return WarmupCosineDecay(init, peak, warmup_steps, decay_steps, end=end, exponent=exponent,
                             per=per)


def one_cycle(max_lr, total_steps, *, pct_start=0.3, div_factor=25.0, final_div_factor=1e4,
              three_phase=False, per="step"):
    r"""The 1cycle policy: PyTorch's ``OneCycleLR`` with ``anneal_strategy='cos'``.

    The rate rises from ``initial = max_lr / div_factor`` to `max_lr` and falls to
    ``min_lr = initial / final_div_factor``, each phase a cosine half-wave

    .. math::
        \text{anneal}(a, b, p) = b + \frac{a - b}{2}\left(1 + \cos \pi p\right),\qquad
        p = \frac{c - s}{e - s}

    where ``[s, e]`` is the phase holding count ``c``.  Two phases: ``initial -> max_lr`` ending
    at count ``pct_start * total_steps - 1``, then ``max_lr -> min_lr`` ending at count
    ``total_steps - 1``.  With ``three_phase=True``: ``initial -> max_lr -> initial`` (the second
    ending at ``2 * pct_start * total_steps - 2``), then ``initial -> min_lr``.

    The value equals the lr that torch's scheduler holds after ``count`` calls of ``step()``, for
    every count from 0 (``initial``, up to rounding) to `total_steps` (the count at which
    torch's last phase has run past its end: ``p > 1``, so the rate has turned back up from
    ``min_lr``).  Torch raises after that; **from count** ``total_steps + 1`` **on, this schedule
    stays at** ``min_lr``.  A fastopt optimizer (``per="step"``) evaluates counts 1, 2, ...: its
    first update is one count past ``initial`` and its update number `total_steps` takes torch's
    value at that count.  A `pct_start` that gives a phase zero length where a count falls in it
    (``pct_start * total_steps == 1``, or ``pct_start == 1``), for which torch divides by zero,
    is a ValueError here.

    Args:
      max_lr: the peak learning rate, a finite number >= 0.
      total_steps: an integer >= 1, the length of the cycle.
      pct_start: the fraction of the cycle spent rising, a number in [0, 1] (default 0.3).
      div_factor: ``initial = max_lr / div_factor``, a finite number > 0 (default 25).
      final_div_factor: ``min_lr = initial / final_div_factor``, a finite number > 0 (1e4).
      three_phase: bool, the three-phase variant (default False).
      per: ``"step"`` (default) or ``"epoch"``: what the count counts.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> sched = one_cycle(1.0, 10)
      >>> [round(sched(c), 4) for c in range(9)]
      [0.04, 0.52, 1.0, 0.9505, 0.8117, 0.6113, 0.3887, 0.1883, 0.0495]
      >>> sched(9), round(sched(10), 4), sched(11), sched(10**6)
      (4e-06, 0.0495, 4e-06, 4e-06)

    References:
      PyTorch: ``torch.optim.lr_scheduler.OneCycleLR(opt, max_lr, total_steps, pct_start,
      anneal_strategy='cos', div_factor, final_div_factor, three_phase)`` (the lr only; fastopt
      does not cycle the momentum).  optax's ``cosine_onecycle_schedule`` is a different
      discretisation.  Smith & Topin, "Super-Convergence", 2017.
    """
    return OneCycle(max_lr, total_steps, pct_start=pct_start, div_factor=div_factor,
                    final_div_factor=final_div_factor, three_phase=three_phase, per=per)


def join_schedules(schedules, boundaries, *, per=None):
    r"""Run schedules one after the other: optax's ``join_schedules``.

    .. math::
        \text{lr}(c) = \begin{cases}
          s_0(c) & c < b_0 \\
          s_{i+1}(c - b_i) & b_i \le c\ (< b_{i+1})
        \end{cases}

    Each schedule after the first counts from its own boundary (``schedules[i + 1]`` sees count 0
    at ``boundaries[i]``).  Equal boundaries are allowed: the schedule between them is skipped.

    Args:
      schedules: ``len(boundaries) + 1`` schedules: :class:`Schedule` objects or callables
        ``count -> lr`` (a sequence).
      boundaries: non-decreasing integers >= 0 (a list, tuple or 1-D integer array).
      per: ``"step"``, ``"epoch"`` or None (the default).  None takes the ``per`` of the
        schedules that have one, and is an error (ValueError) when they disagree; ``"step"`` when
        none has one.  A `per` that contradicts a schedule's own is an error too.

    Returns:
      A :class:`Schedule`: ``sched(count)`` is the learning rate (a float) at that integer count.

    Examples:
      >>> sched = join_schedules([linear_schedule(0.0, 1.0, 2), cosine_decay(1.0, 4)], [2])
      >>> [round(sched(c), 6) for c in range(8)]
      [0.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 0.0, 0.0]
      >>> sched.per
      'step'

    References:
      optax: ``join_schedules(schedules, boundaries)``.  PyTorch: ``SequentialLR(opt,
      schedulers, milestones)``.
    """
    return JoinSchedules(schedules, boundaries, per=per)


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
