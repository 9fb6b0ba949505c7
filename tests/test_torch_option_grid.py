"""fastopt.torch's classes against torch.optim on torch's own option grids, with several param
groups, over 40 steps, in float32 and float64, at torch's own tolerances.

The grids are torch's ``optim_inputs_func_sgd``, ``_adam``, ``_adamw`` (the same as Adam's) and
``_rmsprop`` from ``torch/testing/_internal/common_optimizers.py`` (torch 2.13.0), embedded
below as literal (desc, kwargs) data so the test does not depend on torch's private testing
module (which needs expecttest); those of Adagrad, Adamax, NAdam, RAdam and Adadelta are
tests/test_torch_grid.py's.  Entries left out, as in tests/test_torch_grid.py:

* "tensor lr" / "Tensor lr" (``lr=torch.tensor(...)``, and Tensor betas): lr as a Tensor, which
  fastopt.torch does not take;
* the ``cuda_supported_configs`` (``capturable=True``) and ``mps_supported_configs`` lists: torch
  itself returns them only for CUDA and MPS devices;
* the ``foreach`` / ``fused`` / ``differentiable`` variants torch adds to every entry:
  implementation switches with the same arithmetic (torch runs here with ``foreach=False``, its
  single-tensor reference loop);
* the float16 eps override (fastopt.torch's 16-bit parameters have their own tests).

Each entry runs on five parameters in three groups: the entry's keywords for the optimizer, the
second group with half the lr and another weight decay, the third with other betas, momentum or
alpha.  The fourth parameter has no gradient on every third step (both optimizers skip it, so
its step count lags: per-parameter bias correction).  Parameters and every state tensor are
compared after every step with ``torch.testing.assert_close`` at its default tolerances
(float32: rtol 1.3e-6, atol 1e-5; float64: rtol 1e-7, atol 1e-7).  The float64 runs set torch's
default dtype to float64 (torch keeps ``step`` in it).
"""

import contextlib

import numpy as np
import pytest

from conftest import require_torch
from test_torch_grid import TORCH_CLASS
from test_torch_grid import TORCH_GRID as MORE_GRIDS

STEPS = 40
SHAPES = ((4, 3), (5,), (2, 3, 2), (7,), (3, 3))
GROUPS = ((0, 1), (2, 3), (4,))
SOMETIMES_NONE = 3          # this parameter has no gradient on steps t % 3 == 1

# torch 2.13.0, torch/testing/_internal/common_optimizers.py: the CPU entries of
# optim_inputs_func_sgd, optim_inputs_func_adam (= optim_inputs_func_adamw) and
# optim_inputs_func_rmsprop, in torch's order, as (desc, kwargs).
TORCH_GRID = {
    "SGD": [
        ("default", {}),
        ("non-default lr", {"lr": 1e-2}),
        # left out: ("tensor lr", {"lr": torch.tensor(0.001)})
        ("non-zero weight_decay", {"weight_decay": 0.5}),
        ("momentum", {"momentum": 0.9}),
        ("maximize", {"weight_decay": 0.1, "maximize": True}),
        ("dampening", {"momentum": 0.9, "dampening": 0.5}),
        ("weight_decay w/ momentum", {"momentum": 0.9, "weight_decay": 0.1}),
        ("nesterov", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ],
    "Adam": [
        ("default", {}),
        ("non-default lr", {"lr": 0.01}),
        ("nonzero weight_decay", {"weight_decay": 0.1}),
        ("maximize", {"weight_decay": 0.1, "maximize": True}),
        ("amsgrad", {"weight_decay": 0.1, "amsgrad": True}),
        # left out: the cuda_supported_configs (capturable, Tensor lr, Tensor betas) and the
        # mps_supported_configs (Tensor lr)
    ],
    "RMSprop": [
        ("default", {}),
        ("non-default lr", {"lr": 1e-3}),
        ("nonzero weight_decay", {"weight_decay": 0.1}),
        ("maximize", {"maximize": True}),
        ("centered", {"weight_decay": 0.1, "centered": True}),
        ("maximize, weight_decay", {"maximize": True, "weight_decay": 0.1}),
        ("momentum", {"weight_decay": 0.1, "centered": True, "momentum": 0.1}),
        ("maximize, centered, weight_decay, w/ momentum",
         {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True}),
        # left out: the cuda_supported_configs (capturable, Tensor lr)
    ],
}
TORCH_GRID["AdamW"] = TORCH_GRID["Adam"]        # optim_inputs_func_adamw returns Adam's
TORCH_GRID.update({TORCH_CLASS[k]: v for k, v in MORE_GRIDS.items()})

# torch.optim's default lr, for the group overrides
TORCH_LR = {"SGD": 1e-3, "Adam": 1e-3, "AdamW": 1e-3, "RMSprop": 1e-2, "Adagrad": 1e-2,
            "Adamax": 2e-3, "NAdam": 2e-3, "RAdam": 1e-3, "Adadelta": 1.0}


def _groups_kwargs(name, kw):
    """The three groups' own entries: the second group half the lr and another weight decay,
    the third other betas, momentum (SGD with momentum), alpha (RMSprop), rho (Adadelta) or
    lr_decay (Adagrad)."""
    lr = kw.get("lr", TORCH_LR[name])
    second = {"lr": lr / 2, "weight_decay": kw.get("weight_decay", 0.0) + 0.05}
    third = {}
    if name in ("Adam", "AdamW", "Adamax", "NAdam", "RAdam"):
        third = {"betas": (0.8, 0.99)}
    elif name == "Adadelta":
        third = {"rho": 0.8}
    elif name == "Adagrad":
        third = {"lr_decay": 0.1}
    elif name == "SGD" and kw.get("momentum"):
        third = {"momentum": 0.5}
    elif name == "RMSprop":
        third = {"alpha": 0.9}
    return [{}, second, third]


def _cases():
    for name, grid in TORCH_GRID.items():
        for desc, kw in grid:
            yield pytest.param(name, kw, id=f"{name}-{desc.replace(' ', '_')}")


@contextlib.contextmanager
def _default_dtype(torch, dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _params(torch, dtype):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
            for s in SHAPES]


def _build(cls, params, name, kw, **extra):
    own = _groups_kwargs(name, kw)
    groups = [dict({"params": [params[i] for i in idx]}, **o) for idx, o in zip(GROUPS, own)]
    return cls(groups, **kw, **extra)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("name, kw", list(_cases()))
def test_matches_torch_optim_with_several_groups(name, kw, dtype_name):
    torch = require_torch()
    import fastopt.torch as ft
    dtype = getattr(torch, dtype_name)
    with _default_dtype(torch, dtype if dtype == torch.float64 else torch.float32):
        ours_p, theirs_p = _params(torch, dtype), _params(torch, dtype)
        ours = _build(getattr(ft, name), ours_p, name, kw)
        theirs = _build(getattr(torch.optim, name), theirs_p, name, kw, foreach=False)
        rng = np.random.default_rng(1)
        for t in range(1, STEPS + 1):
            for i, (p, q) in enumerate(zip(ours_p, theirs_p)):
                if i == SOMETIMES_NONE and t % 3 == 1:
                    p.grad = q.grad = None
                    continue
                g = torch.from_numpy(rng.standard_normal(p.shape)).to(dtype)
                p.grad, q.grad = g.clone(), g.clone()
            ours.step()
            theirs.step()
            for i, (p, q) in enumerate(zip(ours_p, theirs_p)):
                torch.testing.assert_close(p.detach(), q.detach(),
                                           msg=lambda m: f"step {t}, param {i}: {m}")
                mine, ref = ours.state[p], theirs.state[q]
                assert set(mine) >= set(ref), (t, i, set(mine), set(ref))
                for key, want in ref.items():
                    got = mine[key]
                    if torch.is_tensor(want):
                        torch.testing.assert_close(
                            torch.as_tensor(got).to(want.dtype), want,
                            msg=lambda m: f"step {t}, param {i}, state {key!r}: {m}")
                    else:
                        assert got == want, (t, i, key)
        # the parameter that skipped steps has its own, smaller step count
        if "step" in theirs.state[theirs_p[SOMETIMES_NONE]]:
            counts = [float(ours.state[p]["step"]) for p in ours_p]
            assert counts[SOMETIMES_NONE] < counts[0] == STEPS


@pytest.mark.parametrize("name, kw", list(_cases()))
def test_param_groups_hold_torchs_entries(name, kw):
    """Every entry torch keeps in a param group (its defaults included) is there, equal."""
    torch = require_torch()
    import fastopt.torch as ft
    ours = _build(getattr(ft, name), _params(torch, torch.float32), name, kw)
    theirs = _build(getattr(torch.optim, name), _params(torch, torch.float32), name, kw)
    for mine, ref in zip(ours.param_groups, theirs.param_groups):
        for key, want in ref.items():
            if key != "params":
                assert key in mine and mine[key] == want, (key, mine.get(key), want)


def test_adagrad_fills_every_sum_from_the_constructors_initial_accumulator_value():
    """torch.optim.Adagrad creates each parameter's ``sum`` from the constructor's
    initial_accumulator_value, whatever a group says; fastopt.torch.Adagrad does the same."""
    torch = require_torch()
    import fastopt.torch as ft
    runs = []
    for cls in (ft.Adagrad, torch.optim.Adagrad):
        ps = _params(torch, torch.float32)
        opt = cls([{"params": ps[:2]}, {"params": ps[2:], "initial_accumulator_value": 0.7}],
                  lr=0.1, initial_accumulator_value=0.2)
        rng = np.random.default_rng(2)
        for _ in range(5):
            for p in ps:
                p.grad = torch.from_numpy(rng.standard_normal(p.shape)).float()
            opt.step()
        runs.append((ps, opt))
    (ours_p, ours), (theirs_p, theirs) = runs
    for p, q in zip(ours_p, theirs_p):
        torch.testing.assert_close(p.detach(), q.detach())
        torch.testing.assert_close(ours.state[p]["sum"], theirs.state[q]["sum"])
