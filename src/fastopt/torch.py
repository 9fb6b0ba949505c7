r"""``torch.optim``-compatible optimizers that step CPU tensors with fastopt's kernels.

``fastopt.torch.SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, NAdam, RAdam, Adadelta`` (and
``Lion``, with lion-pytorch's signature, and ``ScheduleFreeAdamW``, schedule_free's
``AdamWScheduleFree``) subclass
``torch.optim.Optimizer`` with torch's constructor signatures, defaults, param-group semantics,
``step(closure=None)`` contract and state layout (``state[p]["exp_avg"]``, ``"step"`` as a
scalar tensor, ...), so a ``state_dict()`` saved by ``torch.optim.AdamW`` loads into
``fastopt.torch.AdamW`` and the reverse, and torch's lr schedulers drive them unchanged.  The
switch is one line::

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    opt = fastopt.torch.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)   # the same run

A step updates the tensors' own storage: per param group, the parameters with a gradient are
batched by step count (NAdam: by step count and mu_product) and low-precision mode into one
``fastopt._core.<rule>_step_multi`` call each, one GIL-free OpenMP region over all of their
elements (threads: ``fastopt.set_num_threads``).  Group hyperparameters (``lr``, ``betas``, ...)
are read at every step.  After the update ``torch.autograd.graph.increment_version`` marks each
updated parameter, so a backward through a graph built before the step raises, as with
torch.optim.

The first step of a parameter set runs the full path: every tensor is checked first (all
groups, before anything is written): a parameter on a non-CPU device, a layout other than
dense, a sparse gradient, a gradient that requires grad (``backward(create_graph=True)``), a
shape, stride or dtype mismatch, or a hyperparameter out of range raises ValueError / TypeError
naming ``param_groups[i]["params"][j]``, and no parameter or state tensor is changed.  Later
steps run a planned fast path: the parameter and state arrays are checked once into native
Plans, and each step only binds the gradients natively (``_core.TensorGrads``: each parameter's
and gradient's storage, and each new gradient's layout, size and dtype, about 0.5 us per
tensor); anything that changed (a gradient now None or new, ``p.data = ...``, a state entry
replaced, ``load_state_dict``, ``add_param_group``, other options) falls back to the full path,
which names what is wrong.  A copy is never updated in place of the parameter.

Layouts: any dense, non-overlapping layout (contiguous, ``channels_last``, a transpose) whose
gradient and state have the parameter's strides, as torch's fused path; state is created with
the parameter's layout.

Storage: float32 and float64 parameters keep state of their own dtype; bfloat16 and float16
parameters keep float32 state (torch keeps it in the parameter's dtype; a torch state dict loaded
here keeps float32 state as float32); ``state_dtype=torch.bfloat16`` keeps bf16 state.
Gradients have the parameter's dtype (or float32 for a 16-bit parameter).

Low precision (constructor keywords, also per group):

* ``master_weights=True``: every bfloat16/float16 parameter gets a float32 master copy
  (``state[p]["master_weight"]``); the update runs on it and the parameter receives it rounded,
  in the same pass.  float32/float64 parameters of the same model are stepped as usual;
* ``kahan=True``: pure 16-bit training with a Kahan compensation buffer
  (``state[p]["kahan_compensation"]``, the parameter's dtype);
* ``rounding="stochastic"``, ``seed=``: 16-bit outputs rounded stochastically, the random bits
  a hash of (seed, step, element index), so reproducible for every thread count (groups after
  the first use their own seed, derived from `seed`);
* ``state_dtype=``: the dtype of the moment buffers.

torch-only execution flags ``foreach``, ``fused``, ``capturable`` and ``differentiable`` are
accepted when False or None and raise ValueError when true.

Also: ``step(max_norm=...)`` clips the global gradient norm in the fused read pass;
``torch.amp.GradScaler("cpu")`` works through its fused protocol
(``_step_supports_amp_scaling``: the kernels divide by the scale, and a step with an Inf or NaN
gradient is skipped) and after an explicit ``scaler.unscale_(opt)``; :func:`step_in_backward`
steps each parameter inside ``backward()`` and frees its gradient (gradient release).

``torch.distributed.optim.ZeroRedundancyOptimizer(..., optimizer_class=fastopt.torch.AdamW)``
works under DDP with gloo; in a process group the kernels run on the library's thread count
divided by the world size (``opt.n_threads`` overrides it).

``opt.state`` is torch's ``defaultdict`` of per-parameter dicts, in subclasses that count
changes (so the fast path sees ``opt.state[p]["exp_avg"] = ...``); they pickle and copy as plain
dicts, so a saved state dict loads where fastopt is not installed.
"""

import collections
import math

import numpy as np
import torch

from . import _registry as _reg
from ._dispatch import kernels as _k

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta",
           "Lion", "ScheduleFreeAdamW", "step_in_backward"]

try:
    import ml_dtypes as _ml_dtypes
    _BF16 = np.dtype(_ml_dtypes.bfloat16)
except ImportError:          # bfloat16 parameters then raise TypeError
    _BF16 = None

_FLAGS = ("foreach", "fused", "capturable", "differentiable")
_HALF = (torch.bfloat16, torch.float16)
# the native gradient binding (_core.TensorGrads) compares layouts and dtypes with torch's own
_k.torch_types(torch.strided, torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _scalar_dtype():
    # torch's layout for state["step"] (torch.optim.optimizer._get_scalar_dtype)
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _view(t):
    """A NumPy array sharing `t`'s storage (never a copy); a dense tensor that is not
    contiguous (channels_last) as the flat block of memory its elements fill."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.as_strided((t.numel(),), (1,))
    if t.dtype in (torch.float32, torch.float64):
        return t.numpy()
    if t.dtype == torch.float16:
        return t.view(torch.int16).numpy().view(np.float16)
    if t.dtype == torch.bfloat16:
        if _BF16 is None:
            raise TypeError("bfloat16 tensors need the ml_dtypes package")
        return t.view(torch.int16).numpy().view(_BF16)
    raise TypeError(f"unsupported dtype {t.dtype}")


def _check_flags(cls, flags):
    for k in _FLAGS:
        if flags.get(k):
            raise ValueError(f"fastopt.torch.{cls} does not support {k}={flags[k]!r} (it runs "
                             f"fastopt's own CPU kernels): pass {k}=None or False, or use "
                             f"torch.optim.{cls}")


def _num(x, name):
    if torch.is_tensor(x):
        if x.numel() != 1:
            raise ValueError(f"{name} must be a number or a one-element tensor")
        x = x.item()
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {x!r}") from None


def _nonneg(x, name):
    v = _num(x, name)
    if not (v >= 0.0 and math.isfinite(v)):
        raise ValueError(f"Invalid {name} value: {x!r} (expected a finite value >= 0)")
    return v


def _beta(x, name):
    v = _num(x, name)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"Invalid {name} value: {x!r} (expected a value in [0, 1))")
    return v


def _betas(group):
    b = group["betas"]
    if len(b) != 2:
        raise ValueError(f"betas must be a pair, got {b!r}")
    return _beta(b[0], "beta parameter at index 0"), _beta(b[1], "beta parameter at index 1")


_RULES = {r.name: r for r in _reg.RULES}
# the low-precision options every class takes (group defaults, as torch keeps its options)
_PRECISION = dict(master_weights=False, kahan=False, rounding="nearest", seed=0,
                  state_dtype=None)
# extra state of the low-precision options: kernel keyword -> state name
_MASTER = ("masters", "master_weight")
_KAHAN = ("compensations", "kahan_compensation")


class _Batch:
    """One kernel call of the fast path: a Plan over some parameters of one group (same step
    count, same low-precision mode), their scalar state as views of one shared buffer, and the
    batch key of the next call."""
    __slots__ = ("plan", "params", "scal", "scal0", "key", "fn", "stepped")


def _batch(rule, params, pviews, lists, scal, scal0, key):
    """A _Batch of `rule` over `params` (their NumPy views `pviews`, the state views `lists` by
    kernel keyword, the scalar state `scal`, the first parameter's `scal0`)."""
    ops = rule.operands[2:]
    b = _Batch()
    b.plan = _k.Plan(pviews, ("param", "grad") + tuple(o.name for o in ops),
                     tuple(lists.get(o.plural) for o in ops), masters=lists.get(_MASTER[0]),
                     compensations=lists.get(_KAHAN[0]))
    b.params, b.scal, b.scal0, b.key = params, scal, scal0, key
    b.fn = getattr(_k, rule.twin + "_multi")
    b.stepped = rule.stepped
    return b


class _Entry:
    """The fast path's plan of one param group."""
    __slots__ = ("gi", "group", "plist", "params", "others", "struct", "batches")


class _Gen:
    """A counter of changes to an optimizer's state dicts (the fast path's plan is of one
    generation)."""
    __slots__ = ("n",)

    def __init__(self):
        self.n = 0


class _StateDict(dict):
    """A parameter's state: a dict that counts every entry set or removed in its optimizer's
    _Gen, so the fast path plans again after ``opt.state[p]["exp_avg"] = ...``.  Reading is a
    plain dict lookup; it pickles and copies as a plain dict (a saved state dict loads where
    fastopt is not installed)."""
    __slots__ = ("_gen",)

    def __init__(self, gen, *args, **kwargs):
        dict.__init__(self, *args, **kwargs)
        self._gen = gen

    def __setitem__(self, key, value):
        self._gen.n += 1
        dict.__setitem__(self, key, value)

    def __delitem__(self, key):
        self._gen.n += 1
        dict.__delitem__(self, key)

    def __ior__(self, other):
        self._gen.n += 1
        return dict.__ior__(self, other)

    def update(self, *args, **kwargs):
        self._gen.n += 1
        dict.update(self, *args, **kwargs)

    def setdefault(self, key, default=None):
        if key not in self:
            self._gen.n += 1
        return dict.setdefault(self, key, default)

    def pop(self, *args):
        self._gen.n += 1
        return dict.pop(self, *args)

    def popitem(self):
        self._gen.n += 1
        return dict.popitem(self)

    def clear(self):
        self._gen.n += 1
        dict.clear(self)

    def __reduce__(self):
        return dict, (dict(self),)


class _OptState(collections.defaultdict):
    """``optimizer.state`` (torch's ``defaultdict(dict)``) whose values are _StateDicts sharing
    one _Gen; pickles as torch's plain ``defaultdict(dict)``."""

    def __init__(self, gen, items=()):
        collections.defaultdict.__init__(self, dict)
        self._gen = gen
        for k, v in items:
            self[k] = v

    def __missing__(self, key):
        v = _StateDict(self._gen)
        dict.__setitem__(self, key, v)
        self._gen.n += 1
        return v

    def __setitem__(self, key, value):
        self._gen.n += 1
        if not isinstance(value, _StateDict) or value._gen is not self._gen:
            value = _StateDict(self._gen, value)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key):
        self._gen.n += 1
        dict.__delitem__(self, key)

    def pop(self, *args):
        self._gen.n += 1
        return dict.pop(self, *args)

    def clear(self):
        self._gen.n += 1
        dict.clear(self)

    def update(self, *args, **kwargs):
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def __reduce__(self):
        return collections.defaultdict, (dict,), None, None, iter(dict(self).items())


class _FastOptimizer(torch.optim.Optimizer):
    """The shared step: check every parameter, create missing state, batch, call the kernel.

    Subclasses give ``_rule(group)`` (the registry rule), ``_hyper(group)`` (the checked kernel
    keywords of a group), ``_new_state(p, group)`` (torch's state of a parameter's first step),
    ``_slots(group)`` (the state tensors the kernel takes: kernel keyword -> torch's state name)
    and, where they differ from the defaults, ``_SCALARS``, ``_prepare``, ``_batch_key``,
    ``_kernel_kw`` and ``_after``.

    Two paths run a step.  The full path checks every tensor and builds NumPy views; after a
    step it has run, the next step builds the fast path: per group and batch a native Plan of
    the parameter and state arrays (checked once) and the scalar state (``step``) moved into one
    shared buffer per batch (each parameter's ``state[p]["step"]`` a view of its own element).
    A fast step only reads ``p.grad`` of the planned parameters, natively
    (``_core.TensorGrads``: every parameter's storage and every gradient's layout, dtype, size
    and overlap are checked), and calls the kernels; any change (a gradient that is None or
    new, a parameter whose storage moved, a new group, changed options, ``load_state_dict``)
    falls back to the full path, which names what is wrong, and plans again.
    """

    _RULE = None

    def __init__(self, params, defaults, precision):
        _check_flags(type(self).__name__, defaults)
        self._cache = {}
        self._fast = None
        self._calls = 0
        defaults = dict(defaults, **_check_precision(**precision))
        self._gen = _Gen()
        super().__init__(params, defaults)
        self._wrap_state()
        for g in self.param_groups:
            self._group_hyper(g)       # torch checks hyperparameters at construction

    def __setstate__(self, state):
        self._cache = {}
        self._fast = None
        self._calls = 0
        super().__setstate__(state)
        self._wrap_state()
        self._fill_defaults()

    def _wrap_state(self):
        """Make ``self.state`` an _OptState of this optimizer's _Gen (after torch assigned a
        plain one: construction, ``load_state_dict``, unpickling, or a user)."""
        if getattr(self, "_gen", None) is None:
            self._gen = _Gen()
        st = self.state
        if type(st) is not _OptState or st._gen is not self._gen:
            self.state = _OptState(self._gen, st.items())
        self._gen.n += 1

    def _fill_defaults(self):
        for g in self.param_groups:
            for k, v in self.defaults.items():
                g.setdefault(k, v)

    def load_state_dict(self, state_dict):
        """torch's ``load_state_dict``; groups saved without fastopt's options (a state dict of
        ``torch.optim``) get this optimizer's defaults, and the fast path is planned again."""
        self._fast = None
        self._cache = {}
        super().load_state_dict(state_dict)
        self._wrap_state()
        self._fill_defaults()

    def add_param_group(self, param_group):
        self._fast = None
        super().add_param_group(param_group)

    @staticmethod
    def _process_value_according_to_param_policy(param, value, param_id, param_groups,
                                                  key=None):
        # torch casts loaded state to the parameter's dtype; fastopt keeps float32 state of a
        # 16-bit parameter in float32 (the kernels compute in float32 and read it as it is).
        if (key != "step" and param.dtype in _HALF and torch.is_tensor(value)
                and value.dtype == torch.float32):
            return value.to(device=param.device)
        return torch.optim.Optimizer._process_value_according_to_param_policy(
            param, value, param_id, param_groups, key)

    # -- subclass interface ------------------------------------------------------------------
    def _rule(self, group):
        return self._RULE

    def _hyper(self, group):
        raise NotImplementedError

    def _new_state(self, p, group):
        raise NotImplementedError

    def _slots(self, group):
        raise NotImplementedError

    _SCALARS = ("step",)      # scalar state tensors, updated after the kernel call (_after)

    def _prepare(self, p, group, state):
        """Create a parameter's missing state (torch's on its first step; the master copy or
        the compensation of a 16-bit parameter when asked for).  Returns the prep value
        _batch_key receives."""
        if len(state) == 0:
            state.update(self._new_state(p, group))
        if p.dtype in _HALF:
            if group["master_weights"] and state.get(_MASTER[1]) is None:
                state[_MASTER[1]] = torch.empty_like(p, dtype=torch.float32).copy_(p.detach())
            if group["kahan"] and state.get(_KAHAN[1]) is None:
                state[_KAHAN[1]] = torch.zeros_like(p)
        return None

    def _ready(self, p, group, state, slots):
        """True when a parameter's state is complete, so no step of _prepare is due (the fast
        path plans only such parameters)."""
        return (all(state.get(n) is not None for n in slots.values())
                and all(n in state for n in self._SCALARS))

    def _batch_key(self, scalars, prep):
        """What parameters batched into one kernel call share (the step count)."""
        return int(scalars["step"]) + 1

    def _kernel_kw(self, hyper, step, key):
        """The kernel keywords of one call: the group's, and the step."""
        return dict(hyper, step=step)

    def _after(self, scalars, hyper, step, key):
        """Scalar state after the update (torch's step count, NAdam's mu_product)."""
        for s in scalars:
            s["step"][...] = step

    # -- helpers -----------------------------------------------------------------------------
    def _group_hyper(self, group):
        """The group's kernel keywords, with the rounding options (and, for stochastic rounding,
        a seed of its own per group, so groups never share a random stream)."""
        h = self._hyper(group)
        pr = _check_precision(**{k: group.get(k, v) for k, v in _PRECISION.items()})
        if pr["rounding"] != "nearest":
            h["rounding"] = pr["rounding"]
            h["seed"] = pr["seed"]
        return h

    def _param_slots(self, p, group, slots):
        """The kernel's state slots of parameter `p`: the group's, plus the master copy or the
        compensation of a 16-bit parameter."""
        if p.dtype in _HALF:
            if group["master_weights"]:
                return dict(slots, **{_MASTER[0]: _MASTER[1]})
            if group["kahan"]:
                return dict(slots, **{_KAHAN[0]: _KAHAN[1]})
        return slots

    def _structure(self, group):
        return (self._rule(group), tuple(self._slots(group).items()),
                bool(group["master_weights"]), bool(group["kahan"]))

    def _views(self, p, state, slots, gi, pi):
        """NumPy views of `p`, its state tensors and scalar state, cached while the tensors
        (identity, storage, shape) are the ones checked."""
        tensors = tuple(state.get(n) for n in slots.values())
        scal = tuple(state.get(n) for n in self._SCALARS)
        key = (p.data_ptr(), p.shape, p.stride(), p.dtype)
        c = self._cache.get(p)
        if (c is not None and c[0] == key and len(c[1]) == len(tensors)
                and all(a is b and a.data_ptr() == d for a, b, d in zip(c[1], tensors, c[2]))
                and all(a is b for a, b in zip(c[3], scal))):
            return c[4], c[5], c[6]
        views = {kw: _checked_state(p, state.get(n), n, gi, pi) for kw, n in slots.items()}
        sviews = {}
        for n, t in zip(self._SCALARS, scal):
            if (not torch.is_tensor(t) or t.device.type != "cpu" or t.numel() != 1
                    or t.dtype not in (torch.float32, torch.float64)):
                raise ValueError(f'state[{_where(gi, pi)}]["{n}"] must be a one-element float32 '
                                 f"or float64 CPU tensor, got {t!r}")
            sviews[n] = t.detach().numpy()
        out = (_view(p), views, sviews)
        self._cache[p] = (key, tensors, tuple(t.data_ptr() for t in tensors), scal) + out
        return out

    # -- the step ---------------------------------------------------------------------------
    last_grad_norm = None
    _fast_gen = -1
    # threads of the kernel calls: None for the library default; see _threads
    n_threads = None

    def _threads(self):
        """The kernels' thread count: ``opt.n_threads`` when set; else, in a process of a
        torch.distributed group, the library default divided by the world size (at least 1: the
        ranks of one machine share its cores); else the library default."""
        if self.n_threads is not None:
            return self.n_threads
        dist = getattr(torch, "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            from ._config import get_num_threads
            return max(1, get_num_threads() // dist.get_world_size())
        return None

    @torch.no_grad()
    def step(self, closure=None, *, max_norm=None, clip_eps=1e-6):
        """Perform one optimization step (torch's contract): call `closure` (with grad
        enabled) if given, update every parameter with a gradient in place, return the loss.

        max_norm : float >= 0 or None, clip the gradients' global L2 norm (over every group)
            fused: one read pass computes the norm, and the step multiplies the gradients by
            ``max_norm / (norm + clip_eps)`` when the norm exceeds `max_norm` (as
            ``torch.nn.utils.clip_grad_norm_`` then ``step()``, without writing the gradients).
            The norm is kept as ``last_grad_norm``."""
        if max_norm is not None:
            max_norm = _k.check_nonneg(max_norm, "max_norm")
            clip_eps = _k.check_nonneg(clip_eps, "clip_eps")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if getattr(self, "_released", None):
            # gradient release (step_in_backward): every parameter was stepped in backward
            self._calls += 1
            return loss
        amp = self._amp_unscale()
        if amp is None:
            return loss         # GradScaler found an Inf or NaN: the step is skipped
        self._calls += 1
        if not self._fast_step(max_norm, clip_eps, amp):
            self._update(None, max_norm, clip_eps, amp)
        return loss

    # torch.amp.GradScaler's fused protocol: the scaler sets ``grad_scale`` (its scale, or None
    # when the gradients were already unscaled with ``unscale_``) and ``found_inf`` on the
    # optimizer before step() and removes them after; the step then divides the gradients by
    # the scale inside the kernel (``grad_scale=``), never writing them, and skips the update
    # when an Inf or NaN was found, as torch's fused optimizers do.
    _step_supports_amp_scaling = True

    def _amp_unscale(self):
        """The gradient factor GradScaler asks for (1 / scale, or 1.0), or None to skip."""
        found = getattr(self, "found_inf", None)
        if found is not None and float(found) != 0.0:
            return None
        scale = getattr(self, "grad_scale", None)
        if scale is None:
            return 1.0
        scale = float(scale)
        if not (scale > 0.0 and math.isfinite(scale)):
            raise ValueError(f"grad_scale (set by GradScaler) must be finite and > 0, got "
                             f"{scale}")
        return 1.0 / scale

    def _clip_scale(self, sumsq, max_norm, clip_eps, amp):
        """The factor the kernels multiply the gradients by: GradScaler's 1 / scale, times the
        clipping factor when the (unscaled) norm exceeds max_norm; None for 1."""
        scale = amp
        if max_norm is not None:
            norm = math.sqrt(sumsq) * amp
            self.last_grad_norm = norm
            if math.isfinite(norm) and norm > max_norm:
                scale = amp * (max_norm / (norm + clip_eps))
        return None if scale == 1.0 else scale

    @torch.no_grad()
    def _update(self, only, max_norm=None, clip_eps=1e-6, amp=1.0):
        """The full path: update every parameter with a gradient (or only the parameter
        `only`, a (group index, param index) pair: gradient release), checking everything."""
        name = type(self).__name__
        self._fast = None
        work = []
        # 1. check everything before writing anything
        if only is None:
            groups = enumerate(self.param_groups)
        else:                       # one parameter (a gradient-release hook): no walk of the rest
            groups = ((only[0], self.param_groups[only[0]]),)
        for gi, group in groups:
            _check_flags(name, group)
            hyper = self._group_hyper(group)
            found = []
            params = (enumerate(group["params"]) if only is None
                      else ((only[1], group["params"][only[1]]),))
            for pi, p in params:
                if p.grad is None:
                    continue
                found.append((pi, p, _checked(p, p.grad, gi, pi)))
            work.append((gi, group, hyper, found))
        # 2. state (created on a parameter's first step, as torch does), checked, as views
        calls = []
        for gi, group, hyper, found in work:
            batches = {}
            slots = self._slots(group)
            for pi, p, g in found:
                state = self.state[p]
                prep = self._prepare(p, group, state)
                pslots = self._param_slots(p, group, slots)
                pview, views, sviews = self._views(p, state, pslots, gi, pi)
                key = (tuple(pslots), self._batch_key(sviews, prep))
                b = batches.setdefault(key, ([], [], [], {kw: [] for kw in pslots}, []))
                b[0].append(pview)
                b[1].append(g)
                b[2].append(sviews)
                for kw, v in views.items():
                    b[3][kw].append(v)
                b[4].append(p)
            for key, b in batches.items():
                calls.append((gi, group, hyper, key[1], b))
        # the fused clipping factor: one read pass over every gradient (summed per call, in
        # call order, as the fast path sums them)
        sumsq = 0.0
        if max_norm is not None:
            for _, _, _, _, (_, grads, _, _, _) in calls:
                sumsq += _k.norm_and_finite_multi(grads)[0]
        scale = self._clip_scale(sumsq, max_norm, clip_eps, amp)
        # 3. update: one kernel call per (group, step count, low-precision mode)
        threads = self._threads()
        for gi, group, hyper, key, (params, grads, states, slot_lists, tensors) in calls:
            step = key[0] if isinstance(key, tuple) else key
            kw = self._call_kw(gi, hyper, step, key, threads, scale)
            fn = getattr(_k, _RULES[self._rule(group)].twin + "_multi")
            fn(params, grads, **slot_lists, **kw)
            self._after(states, hyper, step, key)
            torch.autograd.graph.increment_version(tensors)

    def _call_kw(self, gi, hyper, step, key, threads, scale):
        kw = self._kernel_kw(hyper, step, key)
        if threads is not None:
            kw["n_threads"] = threads
        if scale is not None:
            kw["grad_scale"] = kw.get("grad_scale", 1.0) * scale
        if "seed" in kw and gi:
            kw["seed"] = (kw["seed"] + gi * 0x9E3779B97F4A7C15) % 2 ** 64
        return kw

    # -- the fast path ------------------------------------------------------------------------
    def _plan_fast(self):
        """Plan every group (see the class docstring), or None when a parameter with a
        gradient is not ready (a first step is due: the full path runs it)."""
        entries = []
        for gi, group in enumerate(self.param_groups):
            rule = _RULES[self._rule(group)]
            slots = self._slots(group)
            e = _Entry()
            e.gi, e.group, e.plist, e.params = gi, group, group["params"], tuple(group["params"])
            e.struct = self._structure(group)
            e.others = []
            by_key = {}
            for pi, p in enumerate(e.params):
                if p.grad is None:
                    e.others.append(p)
                    continue
                state = self.state.get(p)
                pslots = self._param_slots(p, group, slots)
                if state is None or not self._ready(p, group, state, pslots):
                    return None
                pview, views, sviews = self._views(p, state, pslots, gi, pi)
                key = (tuple(pslots), self._batch_key(sviews, None))
                b = by_key.setdefault(key, ([], [], {kw: [] for kw in pslots}))
                b[0].append(p)
                b[1].append(pview)
                for kw, v in views.items():
                    b[2][kw].append(v)
            e.batches = []
            for (_, key), (ps, pviews, lists) in by_key.items():
                scal, scal0 = {}, {}
                for n in self._SCALARS:
                    olds = [self.state[p][n] for p in ps]
                    dt = olds[0].dtype
                    if any(t.dtype != dt for t in olds):
                        return None
                    buf = torch.tensor([t.item() for t in olds], dtype=dt)
                    for i, p in enumerate(ps):
                        self.state[p][n] = buf[i]
                    scal[n] = buf.numpy()
                    scal0[n] = buf[0].numpy()
                e.batches.append(_batch(rule, ps, pviews, lists, scal, scal0, key))
            entries.append(e)
        self._cache = {}        # the scalar state moved into the batch buffers
        return entries

    def _fast_step(self, max_norm, clip_eps, amp=1.0):
        """One step on the planned fast path; False (nothing written) when the full path must
        run instead."""
        fast = self._fast
        st = self.state
        if type(st) is not _OptState or st._gen is not self._gen:
            self._wrap_state()
            fast = None
        if fast is None or self._fast_gen != self._gen.n or len(fast) != len(self.param_groups):
            fast = self._fast = self._plan_fast()
            self._fast_gen = self._gen.n
            if fast is None or len(fast) != len(self.param_groups):
                self._fast = None
                return False
        name = type(self).__name__
        work = []
        groups = self.param_groups
        for e in fast:
            group = e.group
            if groups[e.gi] is not group:
                return False
            _check_flags(name, group)
            hyper = self._group_hyper(group)
            if self._structure(group) != e.struct:
                return False
            ps = group["params"]
            if ps is not e.plist or len(ps) != len(e.params):
                return False    # (a parameter swapped in place in the list is not looked for)
            for p in e.others:
                if p.grad is not None:
                    return False
            for b in e.batches:
                try:
                    work.append((e, b, hyper, _k.TensorGrads(b.plan, b.params)))
                except _k.TensorMismatch:
                    return False
        sumsq = 0.0
        if max_norm is not None:
            for _, _, _, tg in work:
                sumsq += tg.norm_and_finite()[0]
        scale = self._clip_scale(sumsq, max_norm, clip_eps, amp)
        threads = self._threads()
        for e, b, hyper, tg in work:
            self._run_batch(e.gi, b, hyper, tg, threads, scale)
        return True

    def _run_batch(self, gi, b, hyper, tg, threads, scale):
        """One planned kernel call (batch `b` of group `gi`, gradients `tg`), then the scalar
        state and the autograd versions."""
        key = b.key
        step = key[0] if isinstance(key, tuple) else key
        kw = self._call_kw(gi, hyper, step, key, threads, scale)
        if b.stepped:
            b.plan.count = kw["step"] - 1   # the Plan checks the kernel's step against it
        b.fn(b.plan, tg, **kw)
        self._after((b.scal,), hyper, step, key)
        b.key = self._batch_key(b.scal0, None)
        torch.autograd.graph.increment_version(b.params)

    # -- gradient release: one parameter per call ---------------------------------------------
    _one_gen = -1

    def _release_one(self, gi, pi, p):
        """Step parameter `p` (``param_groups[gi]["params"][pi]``) alone, from a
        gradient-release hook: a Plan of its own, cached while the optimizer's state is of the
        same generation, its group and structure the same, and TensorGrads finds its storage
        and gradient as planned; else (a first step, a change) the full path, which checks
        everything and raises the errors."""
        st = self.state
        if type(st) is not _OptState or st._gen is not self._gen:
            self._wrap_state()
        if self._one_gen != self._gen.n:
            self._one, self._one_hyper = {}, {}
            self._one_gen = self._gen.n
        groups = self.param_groups
        group = groups[gi] if gi < len(groups) else None
        if group is None or pi >= len(group["params"]) or group["params"][pi] is not p:
            raise RuntimeError("step_in_backward: a hooked parameter is no longer at its place "
                               "in param_groups (call step_in_backward again after changing "
                               "the groups)")
        if p.grad is None:
            return
        # the group's keywords, checked again whenever one of its entries changed (a schedule
        # sets lr): tuple == compares entry by entry, the params list by identity
        snap = tuple(group.values())
        h = self._one_hyper.get(gi)
        if h is None or h[0] is not group or h[1] != snap:
            _check_flags(type(self).__name__, group)
            h = self._one_hyper[gi] = (group, snap, self._group_hyper(group),
                                       self._structure(group))
        hyper = h[2]
        c = self._one.get(p)
        if c is None or c[0] is not group or c[1] != h[3]:
            c = self._plan_one(gi, pi, p, group)
        if c is not None:
            try:
                tg = _k.TensorGrads(c[2].plan, c[2].params)
            except _k.TensorMismatch:
                c = None
        if c is None:
            self._one.pop(p, None)
            self._update((gi, pi))
            return
        self._run_batch(gi, c[2], hyper, tg, self._threads(), None)

    def _plan_one(self, gi, pi, p, group):
        """(group, structure, _Batch) of parameter `p` alone, cached in ``self._one``; None when
        its state is not ready (its first step is due)."""
        rule = _RULES[self._rule(group)]
        state = self.state.get(p)
        pslots = self._param_slots(p, group, self._slots(group))
        if state is None or not self._ready(p, group, state, pslots):
            return None
        pview, views, sviews = self._views(p, state, pslots, gi, pi)
        b = _batch(rule, [p], [pview], {kw: [v] for kw, v in views.items()}, sviews, sviews,
                   self._batch_key(sviews, None))
        c = self._one[p] = (group, self._structure(group), b)
        return c


def _check_precision(master_weights=False, kahan=False, rounding="nearest", seed=0,
                     state_dtype=None):
    """Validate the low-precision options (constructor keywords and group entries)."""
    if not isinstance(master_weights, bool) or not isinstance(kahan, bool):
        raise TypeError("master_weights and kahan must be True or False")
    if master_weights and kahan:
        raise ValueError("master_weights=True and kahan=True are alternatives: pick one")
    if not isinstance(rounding, str):
        raise TypeError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    _k.check_rounding(str(rounding))
    if kahan and rounding == "stochastic":
        raise ValueError("kahan=True needs rounding='nearest' (the compensation keeps what "
                         "nearest rounding lost)")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    if state_dtype is not None and state_dtype not in (torch.float32, torch.bfloat16,
                                                       torch.float64, torch.float16):
        raise TypeError(f"state_dtype must be None or a torch float dtype, got {state_dtype!r}")
    return dict(master_weights=master_weights, kahan=kahan, rounding=str(rounding), seed=seed,
                state_dtype=state_dtype)


def _where(gi, pi):
    return f'param_groups[{gi}]["params"][{pi}]'


_STRIDED = torch.strided
_PLAIN = (torch.float32, torch.float64)


def _dense(t):
    """True when `t` is non-overlapping and dense (its elements fill one block of memory, in
    some order of dimensions: contiguous, channels_last, a transpose), as torch's fused
    optimizers require."""
    if t.is_contiguous() or t.numel() == 0:
        return True
    expect = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz != 1):
        if stride != expect:
            return False
        expect *= size
    return True


def _same_layout(p, t):
    """`t` lays its elements out as `p` does (contiguous both, or the same strides)."""
    return t.is_contiguous() if p.is_contiguous() else t.stride() == p.stride()


def _checked(p, g, gi, pi):
    """The gradient of parameter `p` as a NumPy view, after checking both tensors."""
    dt = p.dtype
    if (g.dtype is dt and dt in _PLAIN and g.layout is _STRIDED and p.layout is _STRIDED
            and g.shape == p.shape and p.device.type == "cpu" and g.device.type == "cpu"
            and not g.requires_grad and p.is_contiguous() and g.is_contiguous()):
        return g.numpy()        # the common case (the full checks below name what is wrong)
    return _checked_slow(p, g, gi, pi)


def _checked_slow(p, g, gi, pi):
    w = _where(gi, pi)
    if p.device.type != "cpu":
        raise ValueError(f"{w} is on {p.device}: fastopt.torch steps CPU tensors only")
    if p.layout != torch.strided:
        raise ValueError(f"{w} has layout {p.layout}: fastopt.torch needs dense (strided) "
                         f"parameters")
    if g.layout != torch.strided or g.is_sparse:
        raise ValueError(f"the gradient of {w} is sparse ({g.layout}): fastopt.torch needs "
                         f"dense gradients")
    if g.device.type != "cpu":
        raise ValueError(f"the gradient of {w} is on {g.device}: fastopt.torch steps CPU "
                         f"tensors only")
    if p.dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        raise TypeError(f"{w} has dtype {p.dtype}: fastopt.torch supports float32, float64, "
                        f"bfloat16 and float16 parameters")
    if g.dtype != p.dtype and not (p.dtype in _HALF and g.dtype == torch.float32):
        raise TypeError(f"the gradient of {w} has dtype {g.dtype}, expected {p.dtype}")
    if g.shape != p.shape:
        raise ValueError(f"the gradient of {w} has shape {tuple(g.shape)}, expected "
                         f"{tuple(p.shape)}")
    if not _dense(p):
        raise ValueError(f"{w} is not contiguous (strides {p.stride()}) and not dense (its "
                         f"elements do not fill one block of memory): fastopt.torch updates "
                         f"parameters in place and never a copy; make the parameter contiguous")
    if not _same_layout(p, g):
        if p.is_contiguous():
            raise ValueError(f"the gradient of {w} is not contiguous (strides {g.stride()})")
        raise ValueError(f"the gradient of {w} has strides {g.stride()}, but the parameter has "
                         f"{p.stride()}: an element-wise update needs both laid out alike")
    if g.requires_grad:
        raise ValueError(f"the gradient of {w} requires grad (backward(create_graph=True)): "
                         f"fastopt.torch's update is not differentiable")
    return _view(g)


def _checked_state(p, t, name, gi, pi):
    w = f'state[{_where(gi, pi)}]["{name}"]'
    if not torch.is_tensor(t):
        raise ValueError(f"{w} is missing or not a tensor ({type(t).__name__})")
    if t.device.type != "cpu" or t.layout != torch.strided:
        raise ValueError(f"{w} must be a CPU tensor")
    if t.shape != p.shape:
        raise ValueError(f"{w} has shape {tuple(t.shape)}, expected {tuple(p.shape)}")
    if not _same_layout(p, t):
        raise ValueError(f"{w} has strides {t.stride()}, but the parameter has {p.stride()}: "
                         f"state is laid out as its parameter")
    ok = ((p.dtype, torch.float32, torch.bfloat16) if p.dtype in _HALF
          else (p.dtype, torch.bfloat16) if p.dtype == torch.float32 else (p.dtype,))
    if t.dtype not in ok:
        raise TypeError(f"{w} has dtype {t.dtype}, expected {p.dtype}")
    return _view(t)


def _state_like(p, group):
    """A zero state tensor for `p`, laid out as `p`: of the group's ``state_dtype``, else of
    p's dtype (float32 for a 16-bit parameter)."""
    dt = group.get("state_dtype") or (torch.float32 if p.dtype in _HALF else p.dtype)
    return torch.zeros_like(p, dtype=dt, memory_format=torch.preserve_format)


def _step0():
    return torch.tensor(0.0, dtype=_scalar_dtype())


def _wd(group):
    return _nonneg(group["weight_decay"], "weight_decay value")


# ------------------------------------------------------------------------------------------------

class SGD(_FastOptimizer):
    """``torch.optim.SGD`` on fastopt's ``sgd_step_multi`` / ``momentum_step_multi`` kernels.
    The momentum buffer starts as the first gradient (dampening 0 on a parameter's first step)."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, foreach=None, differentiable=False, fused=None,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))

    def _rule(self, group):
        return "momentum" if group["momentum"] != 0 else "sgd"

    def _hyper(self, g):
        h = dict(lr=_nonneg(g["lr"], "learning rate"), weight_decay=_wd(g),
                 maximize=bool(g["maximize"]))
        mom = _num(g["momentum"], "momentum")
        if mom != 0:
            h.update(beta=_beta(mom, "momentum value"),
                     dampening=_num(g["dampening"], "dampening"), nesterov=bool(g["nesterov"]))
            if not 0 <= h["dampening"] <= 1:
                raise ValueError(f"Invalid dampening value: {g['dampening']!r}")
        return h

    def _new_state(self, p, group):
        return {}

    def _slots(self, group):
        return {"velocities": "momentum_buffer"} if group["momentum"] != 0 else {}

    def _prepare(self, p, group, state):
        # torch's buffer is absent (or None) until a parameter's first momentum step, which sets
        # it to the gradient: that step runs the kernel with dampening 0 on a zero buffer
        first = group["momentum"] != 0 and state.get("momentum_buffer") is None
        if first:
            state["momentum_buffer"] = _state_like(p, group)
        super()._prepare(p, group, state)
        return first

    _SCALARS = ()

    def _batch_key(self, scalars, prep):
        return bool(prep)

    def _kernel_kw(self, h, step, first):
        # no step count in torch's SGD state: stochastic rounding counts this optimizer's steps
        # (under gradient release the hooks run before step() counts the step)
        h = dict(h, step=max(self._calls + bool(getattr(self, "_released", None)), 1))
        if first:
            h["dampening"] = 0.0
        return h

    def _after(self, scalars, hyper, step, key):
        pass


class Adam(_FastOptimizer):
    """``torch.optim.Adam`` on fastopt's ``adam_step_multi`` (``decoupled_weight_decay=True``:
    AdamW).  State: step, exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad)."""

    _RULE = "adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                                      capturable=capturable, differentiable=differentiable,
                                      fused=fused, decoupled_weight_decay=decoupled_weight_decay),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    decoupled_weight_decay=bool(g.get("decoupled_weight_decay", False)),
                    amsgrad=bool(g["amsgrad"]), maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        s = {"step": _step0(), "exp_avg": _state_like(p, group),
             "exp_avg_sq": _state_like(p, group)}
        if group["amsgrad"]:
            s["max_exp_avg_sq"] = _state_like(p, group)
        return s

    def _prepare(self, p, group, state):
        super()._prepare(p, group, state)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = torch.zeros_like(state["exp_avg_sq"])

    def _slots(self, group):
        if group["amsgrad"]:
            return {"ms": "exp_avg", "vs": "exp_avg_sq", "v_maxs": "max_exp_avg_sq"}
        return {"ms": "exp_avg", "vs": "exp_avg_sq"}


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay (default 1e-2)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused, decoupled_weight_decay=True,
                         master_weights=master_weights, kahan=kahan, rounding=rounding,
                         seed=seed, state_dtype=state_dtype)


class RMSprop(_FastOptimizer):
    """``torch.optim.RMSprop`` on fastopt's ``rmsprop_step_multi`` (beta = alpha).  State: step,
    square_avg, momentum_buffer (momentum > 0), grad_avg (centered)."""

    _RULE = "rmsprop"

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False, *,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      centered=centered, weight_decay=weight_decay,
                                      capturable=capturable, foreach=foreach, maximize=maximize,
                                      differentiable=differentiable),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))

    def _hyper(self, g):
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta=_beta(g["alpha"], "alpha value"),
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    momentum=_nonneg(g["momentum"], "momentum value"),
                    centered=bool(g["centered"]), maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        s = {"step": _step0(), "square_avg": _state_like(p, group)}
        if group["momentum"] > 0:
            s["momentum_buffer"] = _state_like(p, group)
        if group["centered"]:
            s["grad_avg"] = _state_like(p, group)
        return s

    def _slots(self, group):
        s = {"sq_avgs": "square_avg"}
        if group["momentum"] > 0:
            s["momentum_bufs"] = "momentum_buffer"
        if group["centered"]:
            s["grad_avgs"] = "grad_avg"
        return s


class Adagrad(_FastOptimizer):
    """``torch.optim.Adagrad`` on fastopt's ``adagrad_step_multi``.  State (created at
    construction, as torch does): step, sum."""

    _RULE = "adagrad"

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        _nonneg(initial_accumulator_value, "initial_accumulator_value")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                      weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, fused=fused),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))
        for group in self.param_groups:
            for p in group["params"]:
                if len(self.state[p]) == 0:
                    self.state[p].update(self._new_state(p, group))

    def _hyper(self, g):
        return dict(lr=_nonneg(g["lr"], "learning rate"),
                    lr_decay=_nonneg(g["lr_decay"], "lr_decay value"),
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        # torch fills every parameter's sum from the constructor's value (self.defaults), not
        # from its group's entry, so a group's own initial_accumulator_value has no effect there
        s = _state_like(p, group)
        s.fill_(float(self.defaults["initial_accumulator_value"]))
        return {"step": _step0(), "sum": s}

    def _slots(self, group):
        return {"sum_sqs": "sum"}


class Adamax(_FastOptimizer):
    """``torch.optim.Adamax`` on fastopt's ``adamax_step_multi``.  State: step, exp_avg,
    exp_inf."""

    _RULE = "adamax"

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, capturable=capturable),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "exp_avg": _state_like(p, group),
                "exp_inf": _state_like(p, group)}

    def _slots(self, group):
        return {"ms": "exp_avg", "us": "exp_inf"}


class NAdam(_FastOptimizer):
    """``torch.optim.NAdam`` on fastopt's ``nadam_step_multi``.  State: step, mu_product (a
    tensor, as torch keeps it: mu_1 ... mu_t after step t), exp_avg, exp_avg_sq.  Parameters are
    batched by (step count, mu_product), since a kernel call takes one mu_product."""

    _RULE = "nadam"

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize, foreach=foreach,
                                      capturable=capturable, differentiable=differentiable),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    momentum_decay=_nonneg(g["momentum_decay"], "momentum_decay value"),
                    decoupled_weight_decay=bool(g["decoupled_weight_decay"]),
                    maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "mu_product": torch.tensor(1.0, dtype=_scalar_dtype()),
                "exp_avg": _state_like(p, group), "exp_avg_sq": _state_like(p, group)}

    def _slots(self, group):
        return {"ms": "exp_avg", "vs": "exp_avg_sq"}

    _SCALARS = ("step", "mu_product")

    def _batch_key(self, scalars, prep):
        return int(scalars["step"]) + 1, float(scalars["mu_product"])

    def _kernel_kw(self, h, step, key):
        return dict(h, step=step, mu_product=key[1])

    def _after(self, scalars, h, step, key):
        mu = h["beta1"] * (1.0 - 0.5 * 0.96 ** (step * h["momentum_decay"]))
        for s in scalars:
            s["step"][...] = step
            s["mu_product"][...] = s["mu_product"] * mu


class RAdam(_FastOptimizer):
    """``torch.optim.RAdam`` on fastopt's ``radam_step_multi``.  State: step, exp_avg,
    exp_avg_sq."""

    _RULE = "radam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False,
                 capturable=False, differentiable=False,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      differentiable=differentiable),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    decoupled_weight_decay=bool(g["decoupled_weight_decay"]),
                    maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "exp_avg": _state_like(p, group),
                "exp_avg_sq": _state_like(p, group)}

    def _slots(self, group):
        return {"ms": "exp_avg", "vs": "exp_avg_sq"}


class Adadelta(_FastOptimizer):
    """``torch.optim.Adadelta`` on fastopt's ``adadelta_step_multi``.  State: step, square_avg,
    acc_delta."""

    _RULE = "adadelta"

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *,
                 capturable=False, maximize=False, differentiable=False,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, capturable=capturable,
                                      foreach=foreach, differentiable=differentiable),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))

    def _hyper(self, g):
        return dict(lr=_nonneg(g["lr"], "learning rate"), rho=_beta(g["rho"], "rho value"),
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "square_avg": _state_like(p, group),
                "acc_delta": _state_like(p, group)}

    def _slots(self, group):
        return {"sq_avgs": "square_avg", "acc_deltas": "acc_delta"}


class Lion(_FastOptimizer):
    """Lion (Chen et al. 2023) on fastopt's ``lion_step_multi``, with lion-pytorch's signature
    (torch.optim has no Lion): ``c = b1 m + (1 - b1) g``; ``p <- p (1 - lr wd) - lr sign(c)``;
    ``m <- b2 m + (1 - b2) g``.  Weight decay is decoupled, as in the paper.  State: step,
    exp_avg."""

    _RULE = "lion"

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, maximize=False,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay,
                                      maximize=maximize),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    weight_decay=_wd(g), maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "exp_avg": _state_like(p, group)}

    def _slots(self, group):
        return {"ms": "exp_avg"}


class ScheduleFreeAdamW(_FastOptimizer):
    r"""Schedule-Free AdamW (Defazio et al. 2024) on fastopt's fused
    ``schedule_free_adamw_step_multi`` (one pass updates y, z and v), with the signature, group
    entries and state of facebookresearch/schedule_free's ``AdamWScheduleFree`` (torch.optim has
    none), so it is a drop-in for it.

    ``z_{t+1} = z_t - eta_t (g(y_t) / (sqrt(v_t) + eps) + wd y_t)``, ``x_{t+1} = (1 - c) x_t +
    c z_{t+1}``, ``y = (1 - beta1) z + beta1 x``, with ``eta_t = lr warmup(t) sqrt(1 -
    beta2**t)`` and the averaging weight ``c = w_t / sum w``, ``w_t = t**r max(eta)**
    weight_lr_power`` (the group's ``k``, ``lr_max`` and ``weight_sum``, as the reference keeps
    them).

    The parameters hold y while training.  As with the reference, call :meth:`train` before
    training (a new optimizer is in eval mode, and ``step()`` in eval mode raises) and
    :meth:`eval` before evaluating or saving the model: the parameters then hold x,
    ``y.lerp(z, 1 - 1/beta1)`` (with ``master_weights=True`` computed from the float32 master,
    from which :meth:`train` restores y exactly).  State: ``z`` (a copy of the parameter at its
    first step) and ``exp_avg_sq``; the step count is the group's ``k``.
    """

    _RULE = "schedule_free_adamw"
    _SCALARS = ()

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0, foreach=None, *, maximize=False,
                 master_weights=False, kahan=False, rounding="nearest", seed=0, state_dtype=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, r=r, k=0,
                                      warmup_steps=warmup_steps, train_mode=False,
                                      weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0,
                                      weight_lr_power=weight_lr_power,
                                      weight_decay=weight_decay, foreach=foreach,
                                      maximize=maximize),
                         dict(master_weights=master_weights, kahan=kahan, rounding=rounding,
                              seed=seed, state_dtype=state_dtype))

    def _coefficients(self, g):
        """(warmed-up lr, ckp1, lr_max, weight_sum) of the group's next update, as the
        reference computes them."""
        k = int(g["k"])
        b2 = _betas(g)[1]
        warm = int(g["warmup_steps"])
        sched = (k + 1) / warm if k < warm else 1.0
        lr = _nonneg(g["lr"], "learning rate") * sched
        lr_max = max(lr * math.sqrt(1 - b2 ** (k + 1)), float(g["lr_max"]))
        weight = ((k + 1) ** float(g["r"])) * (lr_max ** float(g["weight_lr_power"]))
        weight_sum = float(g["weight_sum"]) + weight
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
        return lr, min(max(ckp1, 0.0), 1.0), lr_max, weight_sum

    def _hyper(self, g):
        b1, b2 = _betas(g)
        if b1 == 0:
            raise ValueError("betas[0] must be in (0, 1): with beta1 = 0 the parameters (y) "
                             "equal z and the average x cannot be recovered from them")
        warm = g["warmup_steps"]
        if isinstance(warm, bool) or not isinstance(warm, int) or warm < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {warm!r}")
        _nonneg(g["r"], "r")
        _nonneg(g["weight_lr_power"], "weight_lr_power")
        lr, ckp1, _, _ = self._coefficients(g)
        return dict(lr=lr, ckp1=ckp1, beta1=b1, beta2=b2, eps=_nonneg(g["eps"], "epsilon value"),
                    weight_decay=_wd(g), maximize=bool(g["maximize"]), step=int(g["k"]) + 1)

    def _new_state(self, p, group):
        z = _state_like(p, group)
        z.copy_(p.detach())
        return {"z": z, "exp_avg_sq": _state_like(p, group)}

    def _slots(self, group):
        return {"zs": "z", "vs": "exp_avg_sq"}

    def _batch_key(self, scalars, prep):
        return 0                 # one step count per group: the group's k

    def _kernel_kw(self, hyper, step, key):
        return dict(hyper)

    def _after(self, scalars, hyper, step, key):
        pass

    def _require_train(self, groups):
        for g in groups:
            if not g.get("train_mode", False):
                raise RuntimeError("ScheduleFreeAdamW.step() in eval mode: call "
                                   "optimizer.train() before training (and optimizer.eval() "
                                   "before evaluating or saving)")

    def _release_one(self, gi, pi, p):
        self._require_train(self.param_groups[gi:gi + 1])
        super()._release_one(gi, pi, p)

    @torch.no_grad()
    def step(self, closure=None, *, max_norm=None, clip_eps=1e-6):
        """As the other classes' step(); raises in eval mode.  Each group's ``k``, ``lr_max``,
        ``weight_sum`` and ``scheduled_lr`` advance once the update went through (every group,
        as in the reference; not on a step GradScaler skipped).  Under gradient release
        (:func:`step_in_backward`) the hooks stepped every parameter with the group's current
        coefficients, and step() advances them: call it once per backward."""
        self._require_train(self.param_groups)
        coeffs = [self._coefficients(g) for g in self.param_groups]
        skipped = not getattr(self, "_released", None) and self._amp_unscale() is None
        loss = super().step(closure, max_norm=max_norm, clip_eps=clip_eps)
        if not skipped:
            for g, (lr, _, lr_max, weight_sum) in zip(self.param_groups, coeffs):
                g["k"] = int(g["k"]) + 1
                g["lr_max"], g["weight_sum"], g["scheduled_lr"] = lr_max, weight_sum, lr
        return loss

    @torch.no_grad()
    def eval(self):
        """The parameters take x, the averaged iterate (``y.lerp(z, 1 - 1/beta1)``)."""
        for g in self.param_groups:
            if not g.get("train_mode", False):
                continue
            w = 1.0 - 1.0 / _betas(g)[0]
            for p in g["params"]:
                st = self.state.get(p)
                if not st or "z" not in st:
                    continue
                y = st[_MASTER[1]] if _MASTER[1] in st else p.detach()
                p.copy_(torch.lerp(y, st["z"].to(y.dtype), w))
            g["train_mode"] = False

    @torch.no_grad()
    def train(self):
        """The parameters take y again (``x.lerp(z, 1 - beta1)``; from the master copy,
        exactly, with master weights)."""
        for g in self.param_groups:
            if g.get("train_mode", False):
                continue
            w = 1.0 - _betas(g)[0]
            for p in g["params"]:
                st = self.state.get(p)
                if not st or "z" not in st:
                    continue
                if _MASTER[1] in st:
                    p.copy_(st[_MASTER[1]])
                else:
                    p.lerp_(st["z"].to(p.dtype), w)
            g["train_mode"] = True


def step_in_backward(optimizer):
    """Gradient release: step each parameter of `optimizer` inside ``backward()``, as soon as its
    gradient is complete, and free that gradient (``p.grad = None``).

    Registers a ``register_post_accumulate_grad_hook`` on every parameter of every group; a hook
    updates its one parameter (one kernel call, the group's hyperparameters as they are then, so
    lr schedulers keep working) and drops its gradient, so only one parameter's gradient is
    alive at a time (optimi's gradient release; DeepSpeed #6834).  ``optimizer.step()`` then only
    runs its closure and counts the step: the parameters were stepped during backward, each with
    its own step count (``ScheduleFreeAdamW``: step() advances the groups' k, so call it once per
    backward).

    After its first step each parameter has a plan of its own (its gradient bound natively, as
    on the fast path of ``step()``), and a group's keywords are checked again only when one of
    its entries changed.  Inside backward a hook costs about 11 us per parameter (500
    parameters of 64 elements, 1 thread; ``python bench/grad_release.py 500 64``), against
    about 65 us for torch's recipe of one fused ``torch.optim.AdamW`` per parameter.  A first step, moved
    storage or a changed gradient layout takes the full path, which checks everything.
    Returns the hook handles; ``handle.remove()`` on all of them (and
    ``optimizer._released = False``) turns it off.  Parameters added later with
    ``add_param_group`` are not hooked: call it again.
    """
    if not isinstance(optimizer, _FastOptimizer):
        raise TypeError(f"step_in_backward needs a fastopt.torch optimizer, got "
                        f"{type(optimizer).__name__}")
    handles = []
    for gi, group in enumerate(optimizer.param_groups):
        for pi, p in enumerate(group["params"]):
            def hook(param, _gi=gi, _pi=pi):
                optimizer._release_one(_gi, _pi, param)
                param.grad = None
            handles.append(p.register_post_accumulate_grad_hook(hook))
    optimizer._released = True
    return handles
