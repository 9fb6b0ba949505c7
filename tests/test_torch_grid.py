"""Adagrad, Adamax, NAdam, RAdam and Adadelta against torch.optim on torch's own option grid.

The grids are torch's ``optim_inputs_func_<name>`` from
``torch/testing/_internal/common_optimizers.py`` (torch 2.13.0), embedded below as literal data
(``desc``, kwargs) so the test does not depend on torch's private testing module.  Every entry
runs 40 steps in float32 and float64, twice:

* the kernels (``fastopt.<name>_step``) through conftest's ``run_against_torch``, comparing the
  parameter and every state buffer at every step;
* the optimizer classes (``fastopt.Adagrad`` ...) on two parameters of different shapes, comparing
  the parameters and ``opt.state`` at every step (NAdam: also the scalar ``mu_product``).

Entries left out (fastopt does not model them):

* every config in the ``cuda_supported_configs`` lists (Adamax, NAdam, RAdam, Adadelta): they are
  about ``capturable=True`` (CUDA-graph capture), and some add a tensor lr; torch itself only
  returns them for CUDA devices.
* Adagrad "Tensor lr" (``lr=torch.tensor(0.001)``): lr as a Tensor.
* the ``foreach`` / ``fused`` / ``differentiable`` variants that torch's
  ``_get_optim_inputs_including_global_cliquey_kwargs`` adds to every entry: implementation
  switches of torch with the same arithmetic; torch runs here with ``foreach=False`` (its
  single-tensor reference loop).
* complex parameters (torch views them as real pairs): fastopt has no complex dtypes.

Keyword mapping: torch's ``betas=(b1, b2)`` is fastopt's ``beta1``, ``beta2``; the other names
are the same.  State names: Adagrad sum_sq = torch's 'sum'; Adamax m, u = 'exp_avg', 'exp_inf';
NAdam and RAdam m, v = 'exp_avg', 'exp_avg_sq'; Adadelta sq_avg, acc_delta = 'square_avg',
'acc_delta'.  NAdam's mu_product is scalar state: the kernel test carries it (1.0 at step 1, then
times mu_t = beta1 (1 - 0.5 * 0.96**(t * momentum_decay))), the class keeps it itself.

torch keeps NAdam's ``mu_product`` (and every ``step``) as a tensor of torch's default dtype, so
the float64 runs set torch's default dtype to float64 (the value torch would hold for a float64
model): otherwise torch rounds mu_product to float32 every step and float64 can only agree to
float32 accuracy.
"""

import contextlib

import numpy as np
import pytest

import fastopt
from conftest import require_torch, run_against_torch, torch_close, torch_tolerance

STEPS = 40
DTYPES = (np.float32, np.float64)

# torch 2.13.0, torch/testing/_internal/common_optimizers.py: the CPU entries of
# optim_inputs_func_adagrad, optim_inputs_func_adamax, optim_inputs_func_nadam,
# optim_inputs_func_radam and optim_inputs_func_adadelta, in torch's order, as (desc, kwargs).
TORCH_GRID = {
    "adagrad": [
        ("default", {}),
        ("nonzero weight_decay", {"weight_decay": 0.1}),
        ("maximize", {"weight_decay": 0.1, "maximize": True}),
        ("non-default lr", {"lr": 0.1}),
        ("initial_accumulator_value", {"initial_accumulator_value": 0.1, "weight_decay": 0.1}),
        ("lr_decay", {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1}),
        # left out: ("Tensor lr", {"lr": torch.tensor(0.001)}): lr as a Tensor
    ],
    "adamax": [
        ("default", {}),
        ("non-default lr", {"lr": 0.1}),
        ("nonzero weight_decay", {"weight_decay": 0.1}),
        ("maximize", {"maximize": True}),
        ("maximize, weight_decay", {"weight_decay": 0.1, "maximize": True}),
        # left out: cuda_supported_configs (all capturable=True, one with a tensor lr)
    ],
    "nadam": [
        ("default", {}),
        ("non-default lr", {"lr": 1e-3}),
        ("non-zero momentum_decay", {"momentum_decay": 6e-3}),
        ("weight_decay", {"weight_decay": 0.1}),
        ("weight_decay, momentum_decay", {"weight_decay": 0.1, "momentum_decay": 6e-3}),
        ("decoupled_weight_decay", {"weight_decay": 0.1, "momentum_decay": 6e-3,
                                    "decoupled_weight_decay": True}),
        ("maximize", {"weight_decay": 0.1, "maximize": True}),
        # left out: cuda_supported_configs (all capturable=True, one with a tensor lr)
    ],
    "radam": [
        ("default", {}),
        ("non-default lr", {"lr": 2e-3}),
        ("non-default eps", {"eps": 1e-6}),
        ("nonzero weight_decay", {"weight_decay": 0.1}),
        ("decoupled_weight_decay", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
        ("maximize", {"weight_decay": 0.1, "maximize": True}),
        # left out: cuda_supported_configs (all capturable=True, one with a tensor lr)
    ],
    "adadelta": [
        ("default", {}),
        ("non-default lr", {"lr": 0.01}),
        ("nonzero weight_decay", {"weight_decay": 0.1}),
        ("maximize", {"maximize": True}),
        ("maximize, weight_decay", {"weight_decay": 0.1, "maximize": True}),
        ("rho", {"rho": 0.95, "weight_decay": 0.9}),
        # left out: cuda_supported_configs (all capturable=True, one with a tensor lr)
    ],
}

TORCH_CLASS = {"adagrad": "Adagrad", "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam",
               "adadelta": "Adadelta"}

# our state slot -> torch's state key
STATE_MAP = {
    "adagrad": {"sum_sq": "sum"},
    "adamax": {"m": "exp_avg", "u": "exp_inf"},
    "nadam": {"m": "exp_avg", "v": "exp_avg_sq"},
    "radam": {"m": "exp_avg", "v": "exp_avg_sq"},
    "adadelta": {"sq_avg": "square_avg", "acc_delta": "acc_delta"},
}

# torch's defaults, for the kernel calls of the "default" entries (the kernels' own defaults are
# checked against torch's in test_class_defaults_are_torchs)
TORCH_DEFAULTS = {
    "adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                    eps=1e-10),
    "adamax": dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
    "nadam": dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                  momentum_decay=4e-3, decoupled_weight_decay=False),
    "radam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                  decoupled_weight_decay=False),
    "adadelta": dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0),
}


def ours(torch_kw):
    """torch's keyword arguments as fastopt's (betas -> beta1, beta2)."""
    kw = dict(torch_kw)
    if "betas" in kw:
        kw["beta1"], kw["beta2"] = kw.pop("betas")
    return kw


def grid_params():
    return [pytest.param(name, kw, id=f"{name}-{desc.replace(', ', '+').replace(' ', '_')}")
            for name, entries in TORCH_GRID.items() for desc, kw in entries]


def _dtype_id(d):
    return np.dtype(d).name


@contextlib.contextmanager
def torch_default_dtype(torch, dtype):
    """torch's default dtype set to `dtype` for the block (see the module docstring)."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def mu(t, beta1, momentum_decay):
    """NAdam's momentum coefficient mu_t (torch's formula)."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


def kernel_step(name, torch_kw):
    """our_step(t, p, g, state) for run_against_torch: the fastopt kernel with torch_kw's
    hyperparameters (torch's defaults filled in, so the kernel's own defaults play no part)."""
    kw = ours({**TORCH_DEFAULTS[name], **torch_kw})
    if name == "adagrad":
        init = kw.pop("initial_accumulator_value")

        def step(t, p, g, s):
            if t == 1:      # torch's state['sum'] starts at initial_accumulator_value
                s["sum_sq"][...] = init
            return fastopt.adagrad_step(p, g, s["sum_sq"], step=t, **kw)
    elif name == "adamax":
        def step(t, p, g, s):
            return fastopt.adamax_step(p, g, s["m"], s["u"], step=t, **kw)
    elif name == "nadam":
        carry = {"mu_product": 1.0}

        def step(t, p, g, s):
            out = fastopt.nadam_step(p, g, s["m"], s["v"], step=t,
                                     mu_product=carry["mu_product"], **kw)
            carry["mu_product"] *= mu(t, kw["beta1"], kw["momentum_decay"])
            return out
    elif name == "radam":
        def step(t, p, g, s):
            return fastopt.radam_step(p, g, s["m"], s["v"], step=t, **kw)
    else:
        def step(t, p, g, s):
            return fastopt.adadelta_step(p, g, s["sq_avg"], s["acc_delta"], step=t, **kw)
    return step


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("name, torch_kw", grid_params())
def test_kernel_matches_torch(name, torch_kw, dtype, rng):
    torch = require_torch()
    cls = getattr(torch.optim, TORCH_CLASS[name])
    with torch_default_dtype(torch, dtype):
        run_against_torch(torch, cls, dict(torch_kw, foreach=False), kernel_step(name, torch_kw),
                          STATE_MAP[name], dtype, rng, steps=STEPS)


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("name, torch_kw", grid_params())
def test_class_matches_torch(name, torch_kw, dtype, rng):
    """The optimizer class with torch's keyword arguments as given: a "default" entry passes
    none, so it also checks that the class defaults (lr included) are torch's."""
    torch = require_torch()
    shapes = {"W1": (7, 9), "b1": (7, 1)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    with torch_default_dtype(torch, dtype):
        tps = {k: torch.tensor(p.copy(), requires_grad=True) for k, p in params.items()}
        topt = getattr(torch.optim, TORCH_CLASS[name])(list(tps.values()), foreach=False,
                                                       **torch_kw)
        opt = getattr(fastopt, TORCH_CLASS[name])(params, **ours(torch_kw))
        for t in range(1, STEPS + 1):
            grads = {}
            for k, s in shapes.items():
                g = rng.standard_normal(s).astype(dtype)
                g.flags.writeable = False
                grads["d" + k] = g          # the course's gradient names
                tps[k].grad = torch.tensor(g.copy())
            topt.step()
            assert opt.step(grads) is True
            assert opt.step_count == t
            for k, tp in tps.items():
                torch_close(params[k], tp, dtype, f"{k}, step {t}")
                tstate = topt.state[tp]
                assert set(opt.state[k]) == set(STATE_MAP[name])
                for mine, theirs in STATE_MAP[name].items():
                    torch_close(opt.state[k][mine], tstate[theirs], dtype,
                                f"{k} {mine} vs {theirs}, step {t}")
                if name == "nadam":
                    np.testing.assert_allclose(
                        opt.state_dict()["scalars"]["mu_product"],
                        float(tstate["mu_product"]), err_msg=f"mu_product, step {t}",
                        **torch_tolerance(dtype))


@pytest.mark.parametrize("name", list(TORCH_CLASS))
def test_class_defaults_are_torchs(name):
    """fastopt's class defaults (lr included) are torch's defaults, read from torch itself."""
    torch = require_torch()
    theirs = getattr(torch.optim, TORCH_CLASS[name])([torch.zeros(3, requires_grad=True)])
    theirs = ours(theirs.defaults)
    opt = getattr(fastopt, TORCH_CLASS[name])({"w": np.zeros(3)})
    assert opt.lr == theirs["lr"]
    for k, v in opt.hyper.items():
        if k in theirs:
            assert v == theirs[k], (k, v, theirs[k])
    for k, v in ours(TORCH_DEFAULTS[name]).items():     # the table above is torch's too
        assert theirs[k] == v, (k, v, theirs[k])
    shared = set(theirs) & (set(opt.hyper) | {"lr"})
    assert shared >= set(ours(TORCH_DEFAULTS[name])), shared


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("name, torch_kw", grid_params())
def test_fastopt_torch_class_matches_torch(name, torch_kw, dtype):
    """fastopt.torch's class of the same name, given torch's own keyword arguments, on the same
    grid: parameters and state (torch's names) every step, two tensors in two param groups."""
    torch = require_torch()
    import fastopt.torch as ft
    rng = np.random.default_rng(5)
    with torch_default_dtype(torch, dtype):
        tdt = torch.float64 if dtype == np.float64 else torch.float32
        init = [torch.tensor(rng.standard_normal(s), dtype=tdt) for s in ((7, 9), (5,))]
        theirs = [x.clone().requires_grad_(True) for x in init]
        mine = [x.clone().requires_grad_(True) for x in init]
        cls = TORCH_CLASS[name]
        topt = getattr(torch.optim, cls)([{"params": [theirs[0]]}, {"params": [theirs[1]]}],
                                         foreach=False, **torch_kw)
        opt = getattr(ft, cls)([{"params": [mine[0]]}, {"params": [mine[1]]}], **torch_kw)
        for t in range(1, STEPS + 1):
            for a, b in zip(theirs, mine):
                g = torch.tensor(rng.standard_normal(tuple(a.shape)), dtype=tdt)
                a.grad, b.grad = g.clone(), g.clone()
            topt.step()
            opt.step()
            for a, b in zip(theirs, mine):
                torch_close(b.detach().numpy(), a, dtype, f"param, step {t}")
                for key, value in topt.state[a].items():
                    if torch.is_tensor(value) and value.numel() > 1:
                        torch_close(opt.state[b][key].detach().numpy(), value, dtype,
                                    f"{key}, step {t}")
