r"""``torch.optim``-compatible optimizers that step CPU tensors with fastopt's kernels.

``fastopt.torch.SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, NAdam, RAdam, Adadelta`` (and
``Lion``, with lion-pytorch's signature; Schedule-Free AdamW is not here yet) subclass
``torch.optim.Optimizer`` with torch's constructor signatures, defaults, param-group semantics,
``step(closure=None)`` contract and state layout (``state[p]["exp_avg"]``, ``"step"`` as a
scalar tensor, ...), so a ``state_dict()`` saved by ``torch.optim.AdamW`` loads into
``fastopt.torch.AdamW`` and the reverse, and torch's lr schedulers drive them unchanged.  The
switch is one line::

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    opt = fastopt.torch.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)   # the same run

A step updates the tensors' own storage through zero-copy NumPy views: per param group, the
parameters with a gradient are batched by step count (NAdam: by step count and mu_product) into
one ``fastopt._core.<rule>_step_multi`` call each, one GIL-free OpenMP region over all of their
elements (threads: ``fastopt.set_num_threads``).  Group hyperparameters (``lr``, ``betas``, ...)
are read at every step.  After the update ``torch.autograd.graph.increment_version`` marks each
updated parameter, so a backward through a graph built before the step raises, as with
torch.optim.

Every tensor is checked first (all groups, before anything is written): a parameter on a
non-CPU device, a non-contiguous parameter or gradient, a sparse gradient, a gradient that
requires grad (``backward(create_graph=True)``), a shape or dtype mismatch, or a hyperparameter
out of range raises ValueError / TypeError naming ``param_groups[i]["params"][j]``, and no
parameter or state tensor is changed.  A copy is never updated in place of the parameter.

Storage: float32 and float64 parameters keep state of their own dtype; bfloat16 and float16
parameters keep float32 state (torch keeps it in the parameter's dtype; a torch state dict loaded
here keeps float32 state as float32).  Gradients have the parameter's dtype (or float32 for a
16-bit parameter).

torch-only execution flags ``foreach``, ``fused``, ``capturable`` and ``differentiable`` are
accepted when False or None and raise ValueError when true.

Also: ``step(max_norm=...)`` clips the global gradient norm in the fused read pass;
``torch.amp.GradScaler("cpu")`` works through its ``unscale_`` path (a step with an Inf gradient
is skipped); :func:`step_in_backward` steps each parameter inside ``backward()`` and frees its
gradient (gradient release).

``torch.distributed.optim.ZeroRedundancyOptimizer(..., optimizer_class=fastopt.torch.AdamW)``
works under DDP with gloo; in a process group the kernels run on the library's thread count
divided by the world size (``opt.n_threads`` overrides it).

Not yet supported: GradScaler's fused protocol (``_step_supports_amp_scaling``), and the NumPy classes' master-weights keywords
(``master_weights``, ``kahan``, ``rounding="stochastic"``, ``state_dtype``).
"""

import math

import numpy as np
import torch

from ._dispatch import kernels as _k

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta",
           "Lion", "step_in_backward"]

try:
    import ml_dtypes as _ml_dtypes
    _BF16 = np.dtype(_ml_dtypes.bfloat16)
except ImportError:          # bfloat16 parameters then raise TypeError
    _BF16 = None

_FLAGS = ("foreach", "fused", "capturable", "differentiable")
_HALF = (torch.bfloat16, torch.float16)


def _scalar_dtype():
    # torch's layout for state["step"] (torch.optim.optimizer._get_scalar_dtype)
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _view(t):
    """A NumPy array sharing `t`'s storage (never a copy)."""
    t = t.detach()
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


class _FastOptimizer(torch.optim.Optimizer):
    """The shared step: check every parameter, create missing state, batch, call the kernel.

    Subclasses give ``_hyper(group)`` (the checked kernel keywords of a group),
    ``_new_state(p, group)`` (torch's state of a parameter's first step), ``_slots(group)`` (the
    state tensors the kernel takes, in torch's names, mapped to the kernel's keyword) and
    ``_call(batch, hyper, step)``.
    """

    def __init__(self, params, defaults):
        _check_flags(type(self).__name__, defaults)
        self._cache = {}
        super().__init__(params, defaults)
        for g in self.param_groups:
            self._hyper(g)       # torch checks hyperparameters at construction

    def __setstate__(self, state):
        self._cache = {}
        super().__setstate__(state)
        for g in self.param_groups:
            for k, v in self.defaults.items():
                g.setdefault(k, v)

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
    def _hyper(self, group):
        raise NotImplementedError

    def _new_state(self, p, group):
        raise NotImplementedError

    def _slots(self, group, state):
        raise NotImplementedError

    def _call(self, params, grads, states, hyper, step, key):
        raise NotImplementedError

    _SCALARS = ("step",)      # scalar state tensors, updated after the kernel call (_after)

    def _prepare(self, p, group, state):
        """Create a parameter's state on its first step (as torch does)."""
        if len(state) == 0:
            state.update(self._new_state(p, group))

    def _batch_key(self, scalars, prep):
        """What parameters batched into one kernel call share (the step count)."""
        return int(scalars["step"]) + 1

    def _after(self, scalars, hyper, step, key):
        """Scalar state after the update (torch's step count, NAdam's mu_product)."""
        for s in scalars:
            s["step"][...] = step

    def _views(self, p, state, slots, gi, pi):
        """NumPy views of `p`, its state tensors and scalar state, cached while the tensors
        (identity, storage, shape) are the ones checked."""
        tensors = tuple(state.get(n) for n in slots.values())
        scal = tuple(state.get(n) for n in self._SCALARS)
        key = (p.data_ptr(), p.shape)
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
            return loss
        self._update(None, max_norm, clip_eps)
        return loss

    @torch.no_grad()
    def _update(self, only, max_norm=None, clip_eps=1e-6):
        """Update every parameter with a gradient (or only the parameter `only`, a
        (group index, param index) pair: gradient release)."""
        name = type(self).__name__
        work = []
        # 1. check everything before writing anything
        if only is None:
            groups = enumerate(self.param_groups)
        else:                       # one parameter (a gradient-release hook): no walk of the rest
            groups = ((only[0], self.param_groups[only[0]]),)
        for gi, group in groups:
            _check_flags(name, group)
            hyper = self._hyper(group)
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
            for pi, p, g in found:
                state = self.state[p]
                prep = self._prepare(p, group, state)
                slots = self._slots(group, state)
                pview, views, sviews = self._views(p, state, slots, gi, pi)
                key = self._batch_key(sviews, prep)
                b = batches.setdefault(key, ([], [], [], {kw: [] for kw in slots}, []))
                b[0].append(pview)
                b[1].append(g)
                b[2].append(sviews)
                for kw, v in views.items():
                    b[3][kw].append(v)
                b[4].append(p)
            for key, b in batches.items():
                calls.append((group, hyper, key, b))
        # the fused clipping factor: one read pass over every gradient
        scale = None
        if max_norm is not None:
            all_grads = [g for _, _, _, (_, grads, _, _, _) in calls for g in grads]
            sumsq, _ = _k.norm_and_finite_multi(all_grads)
            norm = math.sqrt(sumsq)
            self.last_grad_norm = norm
            if math.isfinite(norm) and norm > max_norm:
                scale = max_norm / (norm + clip_eps)
        # 3. update: one kernel call per (group, step count)
        threads = self._threads()
        for group, hyper, key, (params, grads, states, slot_lists, tensors) in calls:
            step = key[0] if isinstance(key, tuple) else key
            if scale is not None or threads is not None:
                hyper = dict(hyper, n_threads=threads)
                if scale is not None:
                    hyper["grad_scale"] = scale
            self._call(params, grads, slot_lists, hyper, step, key)
            self._after(states, hyper, step, key)
            torch.autograd.graph.increment_version(tensors)


def _where(gi, pi):
    return f'param_groups[{gi}]["params"][{pi}]'


_STRIDED = torch.strided
_PLAIN = (torch.float32, torch.float64)


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
    if not p.is_contiguous():
        raise ValueError(f"{w} is not contiguous (strides {p.stride()}): fastopt.torch updates "
                         f"parameters in place and never a copy; make the parameter contiguous")
    if not g.is_contiguous():
        raise ValueError(f"the gradient of {w} is not contiguous (strides {g.stride()})")
    if g.requires_grad:
        raise ValueError(f"the gradient of {w} requires grad (backward(create_graph=True)): "
                         f"fastopt.torch's update is not differentiable")
    return _view(g)


def _checked_state(p, t, name, gi, pi):
    w = f'state[{_where(gi, pi)}]["{name}"]'
    if not torch.is_tensor(t):
        raise ValueError(f"{w} is missing or not a tensor ({type(t).__name__})")
    if t.device.type != "cpu" or t.layout != torch.strided or not t.is_contiguous():
        raise ValueError(f"{w} must be a contiguous CPU tensor")
    if t.shape != p.shape:
        raise ValueError(f"{w} has shape {tuple(t.shape)}, expected {tuple(p.shape)}")
    ok = (p.dtype, torch.float32, torch.bfloat16) if p.dtype in _HALF else (p.dtype,)
    if t.dtype not in ok:
        raise TypeError(f"{w} has dtype {t.dtype}, expected {p.dtype}")
    return _view(t)


def _state_like(p):
    """A zero state tensor for `p`: its dtype, float32 for 16-bit parameters."""
    dt = torch.float32 if p.dtype in _HALF else p.dtype
    return torch.zeros(p.shape, dtype=dt, device=p.device)


def _step0():
    return torch.tensor(0.0, dtype=_scalar_dtype())


def _wd(group):
    return _nonneg(group["weight_decay"], "weight_decay value")


# ------------------------------------------------------------------------------------------------

class SGD(_FastOptimizer):
    """``torch.optim.SGD`` on fastopt's ``sgd_step_multi`` / ``momentum_step_multi`` kernels.
    The momentum buffer starts as the first gradient (dampening 0 on a parameter's first step)."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, foreach=None, differentiable=False, fused=None):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

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
        return {"momentum_buffer": _state_like(p)} if group["momentum"] != 0 else {}

    def _slots(self, group, state):
        return {"velocities": "momentum_buffer"} if group["momentum"] != 0 else {}

    def _prepare(self, p, group, state):
        # torch's buffer is absent (or None) until a parameter's first momentum step, which sets
        # it to the gradient: that step runs the kernel with dampening 0 on a zero buffer
        first = group["momentum"] != 0 and state.get("momentum_buffer") is None
        if first:
            state["momentum_buffer"] = _state_like(p)
        return first

    def _call(self, params, grads, slots, h, step, first):
        if "beta" not in h:
            _k.sgd_step_multi(params, grads, **h)
            return
        h = dict(h)
        if first:
            h["dampening"] = 0.0
        _k.momentum_step_multi(params, grads, slots["velocities"], **h)

    _SCALARS = ()

    def _batch_key(self, scalars, prep):
        return prep

    def _after(self, scalars, hyper, step, key):
        pass


class Adam(_FastOptimizer):
    """``torch.optim.Adam`` on fastopt's ``adam_step_multi`` (``decoupled_weight_decay=True``:
    AdamW).  State: step, exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                                      capturable=capturable, differentiable=differentiable,
                                      fused=fused, decoupled_weight_decay=decoupled_weight_decay))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    decoupled_weight_decay=bool(g.get("decoupled_weight_decay", False)),
                    amsgrad=bool(g["amsgrad"]), maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        s = {"step": _step0(), "exp_avg": _state_like(p), "exp_avg_sq": _state_like(p)}
        if group["amsgrad"]:
            s["max_exp_avg_sq"] = _state_like(p)
        return s

    def _slots(self, group, state):
        s = {"ms": "exp_avg", "vs": "exp_avg_sq"}
        if group["amsgrad"]:
            if "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = torch.zeros_like(state["exp_avg_sq"])
            s["v_maxs"] = "max_exp_avg_sq"
        return s

    def _call(self, params, grads, slots, h, step, key):
        _k.adam_step_multi(params, grads, slots["ms"], slots["vs"], v_maxs=slots.get("v_maxs"),
                           step=step, **h)


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay (default 1e-2)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused, decoupled_weight_decay=True)


class RMSprop(_FastOptimizer):
    """``torch.optim.RMSprop`` on fastopt's ``rmsprop_step_multi`` (beta = alpha).  State: step,
    square_avg, momentum_buffer (momentum > 0), grad_avg (centered)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      centered=centered, weight_decay=weight_decay,
                                      capturable=capturable, foreach=foreach, maximize=maximize,
                                      differentiable=differentiable))

    def _hyper(self, g):
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta=_beta(g["alpha"], "alpha value"),
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    momentum=_nonneg(g["momentum"], "momentum value"),
                    centered=bool(g["centered"]), maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        s = {"step": _step0(), "square_avg": _state_like(p)}
        if group["momentum"] > 0:
            s["momentum_buffer"] = _state_like(p)
        if group["centered"]:
            s["grad_avg"] = _state_like(p)
        return s

    def _slots(self, group, state):
        s = {"sq_avgs": "square_avg"}
        if group["momentum"] > 0:
            s["momentum_bufs"] = "momentum_buffer"
        if group["centered"]:
            s["grad_avgs"] = "grad_avg"
        return s

    def _call(self, params, grads, slots, h, step, key):
        _k.rmsprop_step_multi(params, grads, slots["sq_avgs"], grad_avgs=slots.get("grad_avgs"),
                              momentum_bufs=slots.get("momentum_bufs"), **h)


class Adagrad(_FastOptimizer):
    """``torch.optim.Adagrad`` on fastopt's ``adagrad_step_multi``.  State (created at
    construction, as torch does): step, sum."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None):
        _nonneg(initial_accumulator_value, "initial_accumulator_value")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                      weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, fused=fused))
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
        s = _state_like(p)
        s.fill_(float(group["initial_accumulator_value"]))
        return {"step": _step0(), "sum": s}

    def _slots(self, group, state):
        return {"sum_sqs": "sum"}

    def _call(self, params, grads, slots, h, step, key):
        _k.adagrad_step_multi(params, grads, slots["sum_sqs"], step=step, **h)


class Adamax(_FastOptimizer):
    """``torch.optim.Adamax`` on fastopt's ``adamax_step_multi``.  State: step, exp_avg,
    exp_inf."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, capturable=capturable))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "exp_avg": _state_like(p), "exp_inf": _state_like(p)}

    def _slots(self, group, state):
        return {"ms": "exp_avg", "us": "exp_inf"}

    def _call(self, params, grads, slots, h, step, key):
        _k.adamax_step_multi(params, grads, slots["ms"], slots["us"], step=step, **h)


class NAdam(_FastOptimizer):
    """``torch.optim.NAdam`` on fastopt's ``nadam_step_multi``.  State: step, mu_product (a
    tensor, as torch keeps it: mu_1 ... mu_t after step t), exp_avg, exp_avg_sq.  Parameters are
    batched by (step count, mu_product), since a kernel call takes one mu_product."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize, foreach=foreach,
                                      capturable=capturable, differentiable=differentiable))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    momentum_decay=_nonneg(g["momentum_decay"], "momentum_decay value"),
                    decoupled_weight_decay=bool(g["decoupled_weight_decay"]),
                    maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "mu_product": torch.tensor(1.0, dtype=_scalar_dtype()),
                "exp_avg": _state_like(p), "exp_avg_sq": _state_like(p)}

    def _slots(self, group, state):
        return {"ms": "exp_avg", "vs": "exp_avg_sq"}

    _SCALARS = ("step", "mu_product")

    def _batch_key(self, scalars, prep):
        return int(scalars["step"]) + 1, float(scalars["mu_product"])

    def _call(self, params, grads, slots, h, step, key):
        _k.nadam_step_multi(params, grads, slots["ms"], slots["vs"], step=step,
                            mu_product=key[1], **h)

    def _after(self, scalars, h, step, key):
        mu = h["beta1"] * (1.0 - 0.5 * 0.96 ** (step * h["momentum_decay"]))
        for s in scalars:
            s["step"][...] = step
            s["mu_product"][...] = s["mu_product"] * mu


class RAdam(_FastOptimizer):
    """``torch.optim.RAdam`` on fastopt's ``radam_step_multi``.  State: step, exp_avg,
    exp_avg_sq."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False,
                 capturable=False, differentiable=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      differentiable=differentiable))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    decoupled_weight_decay=bool(g["decoupled_weight_decay"]),
                    maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "exp_avg": _state_like(p), "exp_avg_sq": _state_like(p)}

    def _slots(self, group, state):
        return {"ms": "exp_avg", "vs": "exp_avg_sq"}

    def _call(self, params, grads, slots, h, step, key):
        _k.radam_step_multi(params, grads, slots["ms"], slots["vs"], step=step, **h)


class Adadelta(_FastOptimizer):
    """``torch.optim.Adadelta`` on fastopt's ``adadelta_step_multi``.  State: step, square_avg,
    acc_delta."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *,
                 capturable=False, maximize=False, differentiable=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, capturable=capturable,
                                      foreach=foreach, differentiable=differentiable))

    def _hyper(self, g):
        return dict(lr=_nonneg(g["lr"], "learning rate"), rho=_beta(g["rho"], "rho value"),
                    eps=_nonneg(g["eps"], "epsilon value"), weight_decay=_wd(g),
                    maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "square_avg": _state_like(p), "acc_delta": _state_like(p)}

    def _slots(self, group, state):
        return {"sq_avgs": "square_avg", "acc_deltas": "acc_delta"}

    def _call(self, params, grads, slots, h, step, key):
        _k.adadelta_step_multi(params, grads, slots["sq_avgs"], slots["acc_deltas"], **h)


class Lion(_FastOptimizer):
    """Lion (Chen et al. 2023) on fastopt's ``lion_step_multi``, with lion-pytorch's signature
    (torch.optim has no Lion): ``c = b1 m + (1 - b1) g``; ``p <- p (1 - lr wd) - lr sign(c)``;
    ``m <- b2 m + (1 - b2) g``.  Weight decay is decoupled, as in the paper.  State: step,
    exp_avg."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay,
                                      maximize=maximize))

    def _hyper(self, g):
        b1, b2 = _betas(g)
        return dict(lr=_nonneg(g["lr"], "learning rate"), beta1=b1, beta2=b2,
                    weight_decay=_wd(g), maximize=bool(g["maximize"]))

    def _new_state(self, p, group):
        return {"step": _step0(), "exp_avg": _state_like(p)}

    def _slots(self, group, state):
        return {"ms": "exp_avg"}

    def _call(self, params, grads, slots, h, step, key):
        _k.lion_step_multi(params, grads, slots["ms"], step=step, **h)


def step_in_backward(optimizer):
    """Gradient release: step each parameter of `optimizer` inside ``backward()``, as soon as its
    gradient is complete, and free that gradient (``p.grad = None``).

    Registers a ``register_post_accumulate_grad_hook`` on every parameter of every group; a hook
    updates its one parameter (one kernel call, the group's hyperparameters as they are then, so
    lr schedulers keep working) and drops its gradient, so only one parameter's gradient is
    alive at a time (optimi's gradient release; DeepSpeed #6834).  ``optimizer.step()`` then only
    runs its closure: the parameters were stepped during backward, each with its own step count.
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
            def hook(param, _where=(gi, pi)):
                optimizer._update(_where)
                param.grad = None
            handles.append(p.register_post_accumulate_grad_hook(hook))
    optimizer._released = True
    return handles
