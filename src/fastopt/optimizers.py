r"""Optimizer classes for training loops: SGD, Momentum, RMSprop, Adam, AdamW, Adagrad, Adamax,
NAdam, RAdam, Adadelta, Lion (and ScheduleFreeAdamW, in ``schedule_free``).

SGD and Momentum are written out here; the classes of the other registry rules are generated from
the registry (``_registry.Rule.cls``): their keyword arguments are the kernel's hyperparameters,
with the same names, defaults and checks, and a step is one ``<rule>_step_multi`` call.

Each class owns its state arrays (64-byte aligned, zero-initialised, readable as
``opt.state[name]["m"]``) and updates the caller's parameter arrays in place.  A step is ONE call
into the compiled extension for all of the optimizer's arrays, whatever their number: the kernel
walks a table of (pointer, length) segments inside one GIL-free OpenMP region, balancing threads over
the total element count.  The update formulas are the kernels' (``fastopt.adam_step`` etc.); the
classes add no arithmetic of their own, so a step equals, bit for bit, a loop of per-array kernel
calls.

Typical loop (the course's layout: ``parameters["W1"]``, gradients ``grads["dW1"]``)::

    opt = fastopt.Adam(parameters, lr=fastopt.inverse_time_decay(0.01, decay_rate=1.0))
    for epoch in range(epochs):
        for X_b, Y_b in fastopt.minibatches(X, Y, batch_size=64, axis=1, seed=epoch):
            grads = backprop(parameters, X_b, Y_b)
            fastopt.clip_grad_norm(grads, max_norm=5.0)
            opt.step(grads)
        opt.end_epoch()
"""

import math
import threading
import weakref

import numpy as np

from ._dispatch import kernels as _k
from ._params import ParamSet, aligned_zeros
from . import reference as _reference
from ._registry import BY_NAME, RULES, operands_in_use, state_operands
from .schedules import as_schedule

__all__ = ["Optimizer", "SGD", "Momentum", "AdamW"] + [r.cls for r in RULES if r.cls]

STATE_FORMAT_VERSION = 1


class Optimizer:
    """Base class: parameters, state arrays, counters, learning rate, state save/resume.

    Subclasses define ``_RULE`` (the registry rule they step), ``_slots()`` (the names of the
    per-parameter state arrays in use), ``_OPERANDS`` (the state names in the kernel's operand
    order, by default the registry's) and ``_update(grads, lr, step, **kw)`` (one multi-array
    kernel call on ``self._plan``).

    Storage types and accuracy (keyword arguments of every optimizer class):

    * ``state_dtype``: the dtype of the state arrays (None: float32 for float16/bfloat16
      parameters, else the parameter's dtype; or "float32", "bfloat16", ...).  bfloat16 state
      halves the state traffic.
    * ``master_weights=True`` (16-bit parameters): a float32 master copy of each parameter is
      updated and the parameter receives it rounded, in the same pass (``state[name]["master"]``).
    * ``kahan=True`` (16-bit parameters): a compensation buffer of the parameter's dtype keeps
      what rounding the parameter lost (``state[name]["compensation"]``).
    * ``rounding="stochastic"`` with ``seed``: 16-bit outputs are rounded stochastically, with
      random bits from (seed, step, element index): reproducible for every thread count.

    Attributes
    ----------
    state : dict, ``state[name][slot]`` -> the state array for parameter `name` (list parameters
        are named 0, 1, ...).
    step_count : int, the number of updates applied (skipped steps do not count).
    epoch : int, the number of completed epochs (``end_epoch()`` adds one).
    skipped_steps : int, steps skipped by ``step(..., skip_if_nonfinite=True)``.
    hyper : dict, the validated hyperparameters (lr excluded).
    """

    def __init__(self, params, lr, *, state_dtype=None, master_weights=False, kahan=False,
                 rounding="nearest", seed=0, **hyper):
        self._params = ParamSet(params)
        self._schedule = as_schedule(lr)
        self.hyper = self._validate(**hyper)
        self.precision = _precision(self._params, state_dtype, master_weights, kahan, rounding,
                                    seed)
        self._lock = threading.Lock()
        self._released_by = None
        self.epoch = 0
        self.skipped_steps = 0
        self.last_grad_norm = None
        self.state = {}
        for k, p in zip(self._params.keys, self._params.arrays):
            sdt = self.precision["state_dtype"] or (
                np.float32 if p.dtype.itemsize == 2 else p.dtype)
            slots = {slot: aligned_zeros(p.shape, sdt) for slot in self._slots()}
            if master_weights:
                slots["master"] = aligned_zeros(p.shape, np.float32)
                slots["master"][...] = p
            if kahan:
                slots["compensation"] = aligned_zeros(p.shape, p.dtype)
            self.state[k] = slots
        extra = (("master",) if master_weights else ()) + (("compensation",) if kahan else ())
        self._state_lists = {slot: [self.state[k][slot] for k in self._params.keys]
                             for slot in self._slots() + extra}
        # The arrays never change for the optimizer's life: check them (and that none overlap)
        # once, here; each step then only checks the gradients.
        self._plan = _k.Plan(self._params.arrays, ("param", "grad") + self._OPERANDS,
                             tuple(self._state_lists.get(name) for name in self._OPERANDS),
                             labels=self._params.keys,
                             masters=self._state_lists.get("master"),
                             compensations=self._state_lists.get("compensation"))
        _claim(self)

    @property
    def step_count(self):
        """The number of updates applied (kept by the native Plan and incremented in the same
        native call as the update, so an interrupt never leaves it out of step with the arrays)."""
        return self._plan.count

    @step_count.setter
    def step_count(self, value):
        self._plan.count = value

    # -- subclass interface ---------------------------------------------------------------------
    def _validate(self, **hyper):
        raise NotImplementedError

    def _slots(self):
        raise NotImplementedError

    _OPERANDS = ()
    # scalar state ({name: float}) kept next to the arrays: saved in state_dict()["scalars"]
    _carry = {}

    def _update(self, grads, lr, step, **kw):
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------------
    @property
    def lr(self):
        """The learning rate the next step will use: a schedule is evaluated at ``epoch``, or,
        when it counts steps, at ``step_count`` (the updates already applied: 0 for the first
        update, as optax and torch's lr schedulers count)."""
        s = self._schedule
        return float(s(self.epoch if s.per == "epoch" else self.step_count))

    @property
    def params(self):
        """The parameters, as given (dict or list); the arrays are the caller's own."""
        return self._params.like(self._params.arrays)

    def step(self, grads, *, skip_if_nonfinite=False, grad_scale=None, max_norm=None,
             clip_eps=1e-6):
        """Apply one update to every parameter, in place, in one native call.

        Parameters
        ----------
        grads : dict with the parameters' keys or the course's ("dW1" for "W1"), or a list in
            parameter order.  Each gradient matches its parameter's shape, with the parameter's
            dtype (or float32 for a 16-bit parameter); gradients may be read-only.
        skip_if_nonfinite : bool, when true a step whose gradients hold NaN or Inf changes nothing
            (parameters, state, step_count) and returns False; the check is one fused read pass.
        grad_scale : float >= 0 or None, multiplies every gradient first, in the step's pass
            (loss-scale unscaling: 1/S).
        max_norm : float >= 0 or None, clip the gradients' global L2 norm to `max_norm`, fused:
            one read pass computes the norm (and the finiteness for `skip_if_nonfinite`), and the
            step applies ``max_norm / (norm + clip_eps)`` through `grad_scale` when the norm
            exceeds `max_norm`.  Equals ``fastopt.clip_grad_norm(grads, max_norm)`` then
            ``step``, without writing the gradients.  The norm (of the gradients times
            `grad_scale`) is kept as ``last_grad_norm``.
        clip_eps : float >= 0, added to the norm in the clipping factor.

        Returns
        -------
        bool, True when the update was applied.

        Raises
        ------
        TypeError, ValueError: missing or extra gradients, or a shape or dtype mismatch; raised
            before any array is written.
        """
        skip = skip_if_nonfinite
        if skip is not False and skip is not True:
            skip = _k.check_bool(skip, "skip_if_nonfinite")
        lock = self._lock
        if not lock.acquire(False):
            raise RuntimeError(f"{type(self).__name__}.step was called while another thread is "
                               f"stepping this optimizer: steps of one optimizer must not run "
                               f"concurrently (use one optimizer per thread, or a lock)")
        try:
            if self._released_by is not None:
                raise RuntimeError(
                    f"this {type(self).__name__} no longer updates its parameters: "
                    f"{self._released_by} was built later on the same arrays, and two optimizers "
                    f"stepping one array would update it twice; step the newer one")
            self._params.check_same()
            g = self._params.grads_list(grads)
            scale = 1.0 if grad_scale is None else _k.check_nonneg(grad_scale, "grad_scale")
            if max_norm is not None:
                max_norm = _k.check_nonneg(max_norm, "max_norm")
                clip_eps = _k.check_nonneg(clip_eps, "clip_eps")
                sumsq, finite = _k.norm_and_finite_multi(g, labels=self._params.keys)
                norm = math.sqrt(sumsq) * scale
                self.last_grad_norm = norm
                if skip and not finite:
                    self.skipped_steps += 1
                    return False
                if math.isfinite(norm) and norm > max_norm:
                    scale = scale * (max_norm / (norm + clip_eps))
            elif skip and not _k.all_finite_multi(g, labels=self._params.keys):
                self.skipped_steps += 1
                return False
            # the native call increments step_count together with the update
            pr = self.precision
            self._update(g, self.lr, self.step_count + 1, grad_scale=scale,
                         rounding=pr["rounding"], seed=pr["seed"])
            return True
        finally:
            lock.release()

    def end_epoch(self):
        """Mark the end of an epoch (epoch-counting schedules move on)."""
        self.epoch += 1

    def state_dict(self):
        """The optimizer's state as plain data (NumPy arrays and Python scalars, copies).

        Keys: ``format_version``, ``optimizer`` (class name), ``hyper`` (hyperparameters, lr
        excluded: the learning rate or schedule is given to the constructor), ``step_count``,
        ``epoch``, ``skipped_steps``, ``keys`` (parameter names, as strings), ``state``
        (``{name: {slot: array}}`` with the names as strings) and, for the optimizers with
        scalar state (NAdam's mu_product, Schedule-Free's weight sum), ``scalars``.
        """
        return {
            "format_version": STATE_FORMAT_VERSION,
            "optimizer": type(self).__name__,
            "hyper": dict(self.hyper),
            "step_count": self.step_count,
            "epoch": self.epoch,
            "skipped_steps": self.skipped_steps,
            "keys": [str(k) for k in self._params.keys],
            "state": {str(k): {slot: a.copy() for slot, a in slots.items()}
                      for k, slots in self.state.items()},
            **({"scalars": dict(self._carry)} if self._carry else {}),
        }

    def load_state_dict(self, state):
        """Restore a ``state_dict()``.  Everything is validated first (format, class,
        hyperparameters, names, shapes, dtypes, counters); on any mismatch ValueError is raised
        and nothing changes.  The state arrays are copied into this optimizer's own arrays."""
        _validate_state(self, state)
        if not self._lock.acquire(False):
            raise RuntimeError(f"{type(self).__name__}.load_state_dict was called while another "
                               f"thread is stepping this optimizer")
        try:
            self._restore(state)
        finally:
            self._lock.release()

    def _restore(self, state):
        for k in self._params.keys:
            for slot, dst in self.state[k].items():
                dst[...] = state["state"][str(k)][slot]
        self._plan.count = int(state["step_count"])
        self.epoch = int(state["epoch"])
        self.skipped_steps = int(state["skipped_steps"])
        if self._carry:
            self._carry.update({k: float(v) for k, v in state["scalars"].items()})

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return (f"{type(self).__name__}({len(self._params)} arrays, lr={self._schedule!r}, "
                f"{hyper}, step_count={self.step_count}, epoch={self.epoch})")


def _state_int(v, name, low=None, high=None):
    """A counter or version from a state dict as a Python int: an integer scalar (Python or
    NumPy), never a bool, a float or an array (not even 0-d); TypeError/ValueError otherwise."""
    import numpy as np
    if isinstance(v, np.ndarray):
        raise TypeError(f"{name} must be an integer, got an array of shape {v.shape}")
    return _k.check_int(v, name, low, high)


def _validate_state(opt, state):
    import numbers

    import numpy as np

    def fail(msg):
        raise ValueError(f"cannot load optimizer state: {msg}")

    if not isinstance(state, dict):
        fail(f"expected a dict from state_dict(), got {type(state).__name__}")
    required = ("format_version", "optimizer", "hyper", "step_count", "epoch", "skipped_steps",
                "keys", "state")
    missing = [k for k in required if k not in state]
    if missing:
        fail(f"missing entries {missing}")
    try:
        version = _state_int(state["format_version"], "format_version")
    except (TypeError, ValueError) as exc:
        fail(f"{exc} (this fastopt reads format_version {STATE_FORMAT_VERSION})")
    if version != STATE_FORMAT_VERSION:
        fail(f"format_version {version!r}, this fastopt reads {STATE_FORMAT_VERSION}")
    saved_cls = state["optimizer"]
    if not isinstance(saved_cls, str):
        fail(f"optimizer must be a class name (str), got {type(saved_cls).__name__}")
    if saved_cls != type(opt).__name__:
        fail(f"it was saved from {saved_cls!r}, not {type(opt).__name__!r}")
    hyper = state["hyper"]
    if isinstance(hyper, dict):
        # a file from before a hyperparameter existed holds its default: accept it as such
        hyper = {**{k: v for k, v in _added_defaults(opt).items() if k not in hyper}, **hyper}
    if (not isinstance(hyper, dict) or not all(isinstance(k, str) for k in hyper)
            or set(hyper) != set(opt.hyper)):
        fail(f"hyperparameters {sorted(map(str, hyper)) if isinstance(hyper, dict) else hyper!r}"
             f" do not match {sorted(opt.hyper)}")

    def same(saved, here):
        # no array and no truthiness: a bool matches only a bool, a number only a real number
        if isinstance(here, str):
            return isinstance(saved, str) and saved == here
        if isinstance(here, bool):
            return isinstance(saved, (bool, np.bool_)) and bool(saved) == here
        if isinstance(saved, (bool, np.bool_)) or not isinstance(saved, numbers.Real):
            return False
        try:
            return float(saved) == float(here)
        except (TypeError, ValueError, OverflowError):
            return False

    diff = {k: (hyper[k], v) for k, v in opt.hyper.items() if not same(hyper[k], v)}
    if diff:
        fail("saved hyperparameters differ from this optimizer's: "
             + ", ".join(f"{k}: saved {a!r}, here {b!r}" for k, (a, b) in diff.items()))
    carry = getattr(opt, "_carry", {})
    if carry:
        sc = state.get("scalars")
        if not isinstance(sc, dict) or set(sc) != set(carry):
            fail(f"scalars {sorted(sc) if isinstance(sc, dict) else sc!r} do not match "
                 f"{sorted(carry)}")
        for k, v in sc.items():
            if (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)
                    or not math.isfinite(float(v))):
                fail(f"scalars[{k!r}] must be a finite real number, got {v!r}")
    for name in ("step_count", "epoch", "skipped_steps"):
        try:
            _state_int(state[name], name, 0, _k.MAX_COUNT)
        except (TypeError, ValueError) as exc:
            fail(f"{name} must be an integer in [0, 2**53): {exc}")
    keys = [str(k) for k in opt._params.keys]
    saved_keys = state["keys"]
    if (not isinstance(saved_keys, (list, tuple))
            or not all(isinstance(k, str) for k in saved_keys) or list(saved_keys) != keys):
        shown = list(saved_keys) if isinstance(saved_keys, (list, tuple)) else saved_keys
        fail(f"parameter names {shown!r} do not match {keys}")
    st = state["state"]
    if not isinstance(st, dict) or set(st) != set(keys):
        fail("state entries do not match the parameter names")
    for k, key, p in zip(keys, opt._params.keys, opt._params.arrays):
        slots = st[k]
        own = opt.state[key]
        if not isinstance(slots, dict) or set(slots) != set(own):
            fail(f"state[{k!r}] has slots {sorted(slots) if isinstance(slots, dict) else slots!r}"
                 f", expected {sorted(own)}")
        for slot, a in slots.items():
            want = own[slot].dtype
            if (not isinstance(a, np.ndarray) or a.dtype.hasobject or a.shape != p.shape
                    or a.dtype != want):
                fail(f"state[{k!r}][{slot!r}] has shape {getattr(a, 'shape', None)} and dtype "
                     f"{getattr(a, 'dtype', None)}, expected {p.shape} and {want}")


_bool = _k.check_bool

# Hyperparameters added after the first state files were written, with their defaults: a
# file without them is read as holding the default (issue 9 added the weight-decay forms and
# eps_mode to every rule).
_ADDED = {"decoupled_weight_decay": False, "fully_decoupled": False, "eps_mode": "torch"}


def _added_defaults(opt):
    own = opt._hyper_names() if hasattr(opt, "_hyper_names") else {}
    return {k: opt.hyper[k] for k, v in _ADDED.items()
            if k in opt.hyper and opt.hyper[k] == own.get(k, v)}


def _as_dtype(x, name):
    if x is None:
        return None
    if isinstance(x, str) and x == "bfloat16":
        if _k.BFLOAT16 is None:
            raise TypeError(f"{name}='bfloat16' needs the ml_dtypes package")
        return _k.BFLOAT16
    try:
        dt = np.dtype(x)
    except TypeError:
        raise TypeError(f"{name} must be a dtype (float32, float16, bfloat16, float64) or None, "
                        f"got {x!r}") from None
    ok = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)}
    if _k.BFLOAT16 is not None:
        ok.add(_k.BFLOAT16)
    if dt not in ok:
        raise TypeError(f"{name} must be float32, bfloat16, float16 or float64, got {dt}")
    return dt


def _precision(params, state_dtype, master_weights, kahan, rounding, seed):
    """Validate the storage and accuracy options of an optimizer (see Optimizer)."""
    master_weights = _bool(master_weights, "master_weights")
    kahan = _bool(kahan, "kahan")
    if isinstance(rounding, str):
        rounding = str(rounding)      # a str subclass (numpy.str_) as the plain str the kernels take
    _k.check_rounding(rounding)
    seed = _k.check_int(seed, "seed", 0, 2 ** 64)
    if master_weights and kahan:
        raise ValueError("master_weights=True and kahan=True are alternatives: pick one")
    if kahan and rounding == "stochastic":
        raise ValueError("kahan=True needs rounding='nearest' (the compensation keeps what "
                         "nearest rounding lost)")
    if master_weights or kahan:
        for key, p in zip(params.keys, params.arrays):
            if p.dtype.itemsize != 2:
                what = "master_weights=True" if master_weights else "kahan=True"
                raise ValueError(f"{what} is for float16/bfloat16 parameters, but param[{key!r}] "
                                 f"has dtype {p.dtype}")
    return {"state_dtype": _as_dtype(state_dtype, "state_dtype"),
            "master_weights": master_weights, "kahan": kahan, "rounding": rounding,
            "seed": seed}

# Live optimizers, to find two that write one array (see _claim).
_LIVE = weakref.WeakSet()


def _spans(opt):
    return [(a.ctypes.data, a.ctypes.data + a.nbytes, k)
            for k, a in zip(opt._params.keys, opt._params.arrays) if a.nbytes]


def _claim(opt):
    """Two optimizers stepping one array update it twice.  A new optimizer whose parameters
    overlap a live one's takes them over: the older one raises RuntimeError at its next step
    (rather than refusing the new one, which would break re-running ``opt = Adam(params)``
    while the previous optimizer is still referenced)."""
    mine = sorted(_spans(opt))
    if mine:
        for other in list(_LIVE):
            if other is opt or other._released_by is not None:
                continue
            theirs = sorted(_spans(other))
            i = j = 0
            while i < len(mine) and j < len(theirs):
                if mine[i][0] < theirs[j][1] and theirs[j][0] < mine[i][1]:
                    other._released_by = (f"the {type(opt).__name__} created at 0x{id(opt):x} "
                                          f"(parameter {mine[i][2]!r})")
                    break
                if mine[i][1] <= theirs[j][1]:
                    i += 1
                else:
                    j += 1
    _LIVE.add(opt)


class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional momentum (PyTorch's ``torch.optim.SGD``).

    .. math::
        g_t = \pm\nabla + \lambda\theta, \quad
        b_t = \begin{cases} g_1 & t = 1 \\ \mu b_{t-1} + (1-\tau) g_t & t > 1 \end{cases}, \quad
        \theta_t = \theta_{t-1} - \eta \cdot (g_t + \mu b_t \text{ if nesterov else } b_t)

    Without momentum: :math:`\theta \leftarrow \theta - \eta g`.  PyTorch's first-step rule is
    kept: the momentum buffer starts as the first gradient (fastopt passes ``dampening=0`` to the
    kernel on step 1).  For the course's ``v = beta v + (1 - beta) dW`` use :class:`Momentum`.

    Parameters
    ----------
    params : dict of name -> array or list of arrays, updated in place.
    lr : float >= 0 or a schedule (``fastopt.inverse_time_decay(...)``, any callable count -> lr).
    momentum : float in [0, 1).   dampening : float in [0, 1].   nesterov : bool (needs
    momentum > 0 and dampening == 0, as in PyTorch).   weight_decay : float >= 0 (L2, added to
    the gradient).   decoupled_weight_decay : bool, ``W *= 1 - lr * weight_decay`` instead
    (Keras 3's SGD).   fully_decoupled : bool, ``W *= 1 - weight_decay``.   maximize : bool.
    """

    def __init__(self, params, lr, *, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, decoupled_weight_decay=False, fully_decoupled=False,
                 maximize=False, **precision):
        super().__init__(params, lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                         weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
                         fully_decoupled=fully_decoupled, maximize=maximize, **precision)

    def _validate(self, momentum, dampening, nesterov, weight_decay, decoupled_weight_decay,
                  fully_decoupled, maximize):
        h = {"momentum": _k.check_beta(momentum, "momentum"),
             "dampening": _k.check_nonneg(dampening, "dampening"),
             "nesterov": _bool(nesterov, "nesterov"),
             "weight_decay": _k.check_nonneg(weight_decay, "weight_decay"),
             "decoupled_weight_decay": _bool(decoupled_weight_decay, "decoupled_weight_decay"),
             "fully_decoupled": _bool(fully_decoupled, "fully_decoupled"),
             "maximize": _bool(maximize, "maximize")}
        if h["dampening"] > 1:
            raise ValueError(f"dampening must be in [0, 1], got {dampening!r}")
        if nesterov and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0")
        return h

    def _slots(self):
        return ("momentum_buffer",) if self.hyper["momentum"] > 0 else ()

    _OPERANDS = ("momentum_buffer",)

    def _update(self, grads, lr, step, **kw):
        h = self.hyper
        wd = {k: h[k] for k in ("weight_decay", "decoupled_weight_decay", "fully_decoupled",
                                "maximize")}
        if h["momentum"] == 0:
            _k.sgd_step_multi(self._plan, grads, lr=lr, step=step, **wd, **kw)
            return
        _k.momentum_step_multi(self._plan, grads, lr=lr, beta=h["momentum"],
                               dampening=0.0 if step == 1 else h["dampening"],
                               nesterov=h["nesterov"], step=step, **wd, **kw)


class Momentum(Optimizer):
    r"""Gradient descent with momentum, the course's form.

    .. math::
        v \leftarrow \beta v + (1-\beta)\, dW, \qquad W \leftarrow W - \eta\, v

    from :math:`v = 0` (no bias correction, as in the course).  This is an exponentially weighted
    average of the gradients; it differs from PyTorch's ``SGD(momentum=beta)``, whose buffer has
    no ``(1 - beta)`` and starts at the first gradient (use :class:`SGD` for that).

    Parameters
    ----------
    params : dict or list of arrays, updated in place.
    lr : float >= 0 or a schedule.   beta : float in [0, 1), default 0.9.
    """

    def __init__(self, params, lr, *, beta=0.9, **precision):
        super().__init__(params, lr, beta=beta, **precision)

    def _validate(self, beta):
        return {"beta": _k.check_beta(beta, "beta")}

    def _slots(self):
        return ("velocity",)

    _OPERANDS = tuple(op.name for op in state_operands(BY_NAME["momentum"]))

    def _update(self, grads, lr, step, **kw):
        _k.momentum_step_multi(self._plan, grads, lr=lr, beta=self.hyper["beta"], dampening=None,
                               step=step, **kw)


# ------------------------------------------------------------------------------------------------
# The classes generated from the registry.
# ------------------------------------------------------------------------------------------------

def _check_unit_or_none(x, name):
    return None if x is None else _k.check_unit(x, name)


# A hyperparameter kind (the registry's KINDS) -> the Python-level check (the kernels' own).
_CHECKS = {"nonneg": _k.check_nonneg, "beta": _k.check_beta, "bool": _bool,
           "unit": _k.check_unit, "unit_or_none": _check_unit_or_none,
           "eps_mode": _k.check_eps_mode}

_NO_LR = object()      # lr not given: the class default
_PRECISION = ("state_dtype", "master_weights", "kahan", "rounding", "seed")


class _RuleOptimizer(Optimizer):
    """The optimizer of one registry rule (``_RULE``): hyperparameters checked by their kinds,
    the state arrays its operands, one ``<rule>_step_multi`` call per step.  Subclasses are made
    by :func:`_rule_class`; ``_DEFAULTS`` may override the registry's defaults (AdamW)."""

    _RULE = None
    _DEFAULTS = {}

    def __init__(self, params, lr=_NO_LR, **kw):
        rule = self._RULE
        lr_default = self._DEFAULTS.get(
            "lr", next(hp.default for hp in rule.hypers if hp.name == "lr"))
        if lr is _NO_LR:
            if lr_default == "<required>":
                raise TypeError(f"{type(self).__name__}() needs a learning rate, lr")
            lr = lr_default
        names = self._hyper_names()
        unknown = [k for k in kw if k not in names and k not in _PRECISION]
        if unknown:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                            f"{unknown[0]!r}")
        hyper = {k: kw.pop(k, d) for k, d in names.items()}
        self._carry = {name: float(v) for name, v in rule.carry}
        super().__init__(params, lr, **hyper, **kw)
        for slot, hp in rule.state_init:
            for k in self._params.keys:
                self.state[k][slot][...] = self.hyper[hp.name]

    @classmethod
    def _hyper_names(cls):
        """{keyword: default} of the class: the rule's hyperparameters but lr and the carried
        ones, then the class-only ones (state_init)."""
        rule = cls._RULE
        carried = {name for name, _ in rule.carry}
        out = {hp.name: cls._DEFAULTS.get(hp.name, hp.default) for hp in rule.hypers
               if hp.name != "lr" and hp.name not in carried}
        for _, hp in rule.state_init:
            out[hp.name] = hp.default
        return out

    def _validate(self, **hyper):
        kinds = {hp.name: hp.kind for hp in self._RULE.hypers}
        kinds.update({hp.name: hp.kind for _, hp in self._RULE.state_init})
        out = {k: _CHECKS[kinds[k]](v, k) for k, v in hyper.items()}
        if "eps_mode" in out and "eps_inside_sqrt" in out:
            _k.check_eps_alias(out["eps_mode"], out["eps_inside_sqrt"])   # the kernels' check
        return out

    def _slots(self):
        return tuple(operands_in_use(self._RULE, self.hyper)[2:])

    @property
    def _OPERANDS(self):
        return tuple(op.name for op in state_operands(self._RULE))

    def _update(self, grads, lr, step, **kw):
        init = self._CLASS_ONLY
        hyper = {k: v for k, v in self.hyper.items() if k not in init}
        # through the module's _k at every call (the tests count the native calls there)
        getattr(_k, self._RULE.twin + "_multi")(self._plan, grads, lr=lr, step=step, **hyper,
                                                **self._carry, **kw)
        for name in self._carry:            # only once the step went through
            self._carry[name] = self._carry_step(self._carry[name], step=step, **self.hyper)


def _rule_class(rule, name=None, defaults=None, doc=None):
    """The optimizer class of registry rule `rule`, with an explicit signature and a docstring
    from the kernel's."""
    import inspect
    name = name or rule.cls
    # found once per class, not at every step: the class-only keywords and the carry update
    # (NAdam's mu_product)
    attrs = {"_RULE": rule, "_DEFAULTS": dict(defaults or {}), "__module__": __name__,
             "_CLASS_ONLY": frozenset(hp.name for _, hp in rule.state_init)}
    if rule.carry:
        attrs["_carry_step"] = staticmethod(getattr(_reference, rule.name + "_carry"))
    cls = type(name, (_RuleOptimizer,), attrs)
    lr = cls._DEFAULTS.get("lr", next(hp.default for hp in rule.hypers if hp.name == "lr"))
    P = inspect.Parameter
    sig = [P("self", P.POSITIONAL_OR_KEYWORD), P("params", P.POSITIONAL_OR_KEYWORD),
           P("lr", P.POSITIONAL_OR_KEYWORD, **({} if lr == "<required>" else {"default": lr}))]
    sig += [P(k, P.KEYWORD_ONLY, default=d) for k, d in cls._hyper_names().items()]
    sig += [P("precision", P.VAR_KEYWORD)]
    cls.__init__ = _with_signature(cls.__init__, inspect.Signature(sig))
    kernel_doc = getattr(_k, rule.twin).__doc__.split("\n    Parameters\n")[0]
    cls.__doc__ = (doc or "") + (
        f"The ``{rule.twin}`` rule as an optimizer class: its state arrays are allocated\n"
        f"    (``opt.state[name]``), and a step is one ``{rule.twin}_multi`` call over all of the\n"
        f"    parameters.  Keyword arguments: the kernel's hyperparameters (same names, defaults and\n"
        f"    checks), lr a number or a schedule, and the storage options of :class:`Optimizer`.\n\n"
        f"    {kernel_doc}")
    return cls


def _with_signature(fn, sig):
    def __init__(self, params, lr=_NO_LR, **kw):
        fn(self, params, lr, **kw)
    __init__.__signature__ = sig
    return __init__


# defaults of the classes that differ from their kernel's (kept from the first classes)
_CLASS_DEFAULTS = {"rmsprop": {"lr": 1e-3}}

for _rule in RULES:
    if _rule.cls:
        globals()[_rule.cls] = _rule_class(_rule, defaults=_CLASS_DEFAULTS.get(_rule.name))

AdamW = _rule_class(BY_NAME["adam"], "AdamW",
                    defaults={"weight_decay": 1e-2, "decoupled_weight_decay": True},
                    doc="Adam with decoupled weight decay (``torch.optim.AdamW``): weight_decay "
                        "defaults to 1e-2 and\n    decoupled_weight_decay to True.\n\n    ")
