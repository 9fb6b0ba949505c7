"""fastopt.torch.ScheduleFreeAdamW: the same kernel as the NumPy class fastopt.ScheduleFreeAdamW
(bit for bit, float32 and float64, one group and several), schedule_free's group entries and
train()/eval() contract, the eval-mode error, state_dict round trips, GradScaler skips and bf16
with a float32 master (train() restores y exactly from the master)."""

import numpy as np
import pytest

import fastopt
from conftest import require_torch

SHAPES = ((6, 5), (17,))
KW = dict(lr=0.02, warmup_steps=3, weight_decay=0.1, r=0.5, weight_lr_power=2.0)


def _modules():
    torch = require_torch()
    import fastopt.torch as ft
    return torch, ft


def _grads(dtype, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]


def _pair(torch, ft, dtype, seed=0, **kw):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    arrays = [a.copy() for a in init]
    ref = fastopt.ScheduleFreeAdamW(arrays, **kw)
    params = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    ours = ft.ScheduleFreeAdamW(params, betas=(0.9, 0.999), **kw)
    return arrays, ref, params, ours


def _feed(torch, params, gs):
    for p, g in zip(params, gs):
        p.grad = torch.tensor(g.copy())


def _same(params, arrays):
    for p, a in zip(params, arrays):
        np.testing.assert_array_equal(p.detach().numpy(), a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_matches_the_numpy_class_bitwise(dtype):
    """Every step, both paths (the first step plans the state, later ones take the fast path):
    y, z and v equal the NumPy class's, and the group's k, lr_max, weight_sum, scheduled_lr
    equal its scalars and the warmed-up lr."""
    torch, ft = _modules()
    arrays, ref, params, ours = _pair(torch, ft, dtype, **KW)
    ref.train()
    ours.train()
    for t, gs in enumerate(_grads(dtype, 12), start=1):
        ref.step(gs)
        _feed(torch, params, gs)
        ours.step()
        _same(params, arrays)
        g = ours.param_groups[0]
        sc = ref.state_dict()["scalars"]
        assert g["k"] == t
        assert g["lr_max"] == sc["lr_max"] and g["weight_sum"] == sc["weight_sum"]
        assert g["scheduled_lr"] == pytest.approx(KW["lr"] * min(1.0, t / KW["warmup_steps"]))
    for i, p in enumerate(params):
        st = ours.state[p]
        np.testing.assert_array_equal(st["z"].numpy(), ref.state[i]["z"])
        np.testing.assert_array_equal(st["exp_avg_sq"].numpy(), ref.state[i]["v"])
    assert ours._fast is not None


def test_groups_with_different_hyperparameters_match_separate_numpy_optimizers():
    torch, ft = _modules()
    rng = np.random.default_rng(3)
    init = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    kws = [dict(lr=0.02, weight_decay=0.0), dict(lr=0.005, weight_decay=0.2, warmup_steps=2)]
    arrays = [a.copy() for a in init]
    refs = [fastopt.ScheduleFreeAdamW([a], **kw) for a, kw in zip(arrays, kws)]
    params = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    ours = ft.ScheduleFreeAdamW([dict(params=[p], **kw) for p, kw in zip(params, kws)])
    for r in refs:
        r.train()
    ours.train()
    for gs in _grads(np.float32, 8):
        for r, g in zip(refs, gs):
            r.step([g])
        _feed(torch, params, gs)
        ours.step()
        _same(params, arrays)


def test_eval_gives_the_average_and_train_restores_y_bitwise():
    torch, ft = _modules()
    arrays, ref, params, ours = _pair(torch, ft, np.float32, **KW)
    ref.train()
    ours.train()
    for gs in _grads(np.float32, 6):
        ref.step(gs)
        _feed(torch, params, gs)
        ours.step()
    y = [p.detach().clone() for p in params]
    ref.eval()
    ours.eval()
    assert not ours.param_groups[0]["train_mode"]
    _same(params, arrays)                        # x, as the NumPy class computes it
    assert not torch.equal(params[0].detach(), y[0])
    ours.eval()                                  # a second eval() is a no-op
    _same(params, arrays)
    ours.train()
    for p, want in zip(params, y):
        # y = x.lerp(z, 1 - beta1) from x = y.lerp(z, 1 - 1/beta1): exact up to rounding
        np.testing.assert_allclose(p.detach().numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_step_in_eval_mode_raises_and_changes_nothing():
    """A new optimizer is in eval mode, as schedule_free's: step() must not run there."""
    torch, ft = _modules()
    _, _, params, ours = _pair(torch, ft, np.float32, **KW)
    gs = _grads(np.float32, 1)[0]
    _feed(torch, params, gs)
    before = [p.detach().clone() for p in params]
    with pytest.raises(RuntimeError, match="eval mode"):
        ours.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    assert ours.param_groups[0]["k"] == 0 and len(ours.state) == 0
    ours.train()
    ours.step()
    ours.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        ours.step()
    assert ours.param_groups[0]["k"] == 1


@pytest.mark.parametrize("bad, match", [(dict(betas=(0.0, 0.999)), "betas"),
                                        (dict(warmup_steps=-1), "warmup_steps"),
                                        (dict(warmup_steps=1.5), "warmup_steps"),
                                        (dict(lr=-1.0), "learning rate")])
def test_bad_hyperparameters_raise_and_change_nothing(bad, match):
    """At construction, as torch's classes check theirs; and at the step when a group entry
    is set to a bad value later (nothing is written, k stays)."""
    torch, ft = _modules()
    p = torch.ones(4, requires_grad=True)
    with pytest.raises(ValueError, match=match):
        ft.ScheduleFreeAdamW([p], **bad)
    opt = ft.ScheduleFreeAdamW([p])
    opt.train()
    p.grad = torch.full((4,), 0.5)
    opt.step()
    after = p.detach().clone()
    z = opt.state[p]["z"].clone()
    opt.param_groups[0].update(bad)
    with pytest.raises(ValueError, match=match):
        opt.step()
    assert torch.equal(p.detach(), after) and torch.equal(opt.state[p]["z"], z)
    assert opt.param_groups[0]["k"] == 1


def test_state_dict_round_trip_continues_bitwise():
    torch, ft = _modules()
    grads = _grads(np.float32, 10)
    runs = []
    for reload in (False, True):
        _, _, params, opt = _pair(torch, ft, np.float32, **KW)
        opt.train()
        for i, gs in enumerate(grads):
            if reload and i == 5:
                sd = opt.state_dict()
                opt = ft.ScheduleFreeAdamW(params, **KW)
                opt.load_state_dict(sd)
                assert opt.param_groups[0]["k"] == 5 and opt.param_groups[0]["train_mode"]
            _feed(torch, params, gs)
            opt.step()
        runs.append([p.detach().clone() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_grad_scaler_skip_leaves_k_and_the_parameters():
    torch, ft = _modules()
    w = torch.ones(3, requires_grad=True)
    opt = ft.ScheduleFreeAdamW([w], lr=0.1)
    opt.train()
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    for t in range(3):
        opt.zero_grad()
        loss = (w * w).sum() * (float("inf") if t == 1 else 1.0)
        scaler.scale(loss).backward()
        before = w.detach().clone()
        scaler.step(opt)
        scaler.update()
        if t == 1:
            assert torch.equal(w.detach(), before)
            assert opt.param_groups[0]["k"] == 1
    assert opt.param_groups[0]["k"] == 2


def test_bf16_with_master_weights_equals_the_numpy_class_and_train_restores_exactly():
    torch, ft = _modules()
    import ml_dtypes
    rng = np.random.default_rng(5)
    init = rng.standard_normal(40).astype(np.float32)
    p = torch.tensor(init).to(torch.bfloat16).requires_grad_()
    ours = ft.ScheduleFreeAdamW([p], lr=0.01, master_weights=True)
    arr = init.astype(ml_dtypes.bfloat16)
    ref = fastopt.ScheduleFreeAdamW([arr], lr=0.01, master_weights=True)
    ours.train()
    ref.train()
    for _ in range(6):
        g = rng.standard_normal(40).astype(np.float32)
        p.grad = torch.tensor(g).to(torch.bfloat16)
        ours.step()
        ref.step([g.astype(ml_dtypes.bfloat16)])
        bits = p.detach().view(torch.int16).numpy().view(np.uint16)
        np.testing.assert_array_equal(bits, arr.view(np.uint16))
    master = ours.state[p]["master_weight"].clone()
    np.testing.assert_array_equal(master.numpy(), ref.state[0]["master"])
    y = p.detach().clone()
    ours.eval()
    assert not torch.equal(p.detach(), y)
    ours.train()
    assert torch.equal(p.detach(), y)                   # y from the master, exactly
    assert torch.equal(ours.state[p]["master_weight"], master)
