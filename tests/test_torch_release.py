"""Gradient release (fastopt.torch.step_in_backward) for every class: bit for bit a normal step's
parameters and state, each parameter on its own cached plan after its first step, lr schedules
and changed group entries seen at the next backward, storage that moves, and the errors."""

import numpy as np
import pytest

from conftest import require_torch

CLASSES = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta",
           "Lion", "ScheduleFreeAdamW"]


def _modules():
    torch = require_torch()
    import fastopt.torch as ft
    return torch, ft


def _model(torch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 8, generator=g).requires_grad_(True),
            torch.randn(8, generator=g).requires_grad_(True),
            torch.randn(8, 1, generator=g).requires_grad_(True)]


def _data(torch):
    g = torch.Generator().manual_seed(7)
    return torch.randn(16, 5, generator=g), torch.randn(16, 1, generator=g)


def _loss(ps, x, y):
    import torch
    return ((torch.tanh(x @ ps[0] + ps[1]) @ ps[2] - y) ** 2).mean()


def _opt(ft, name, ps):
    kw = dict(lr=0.01)
    if name in ("SGD", "RMSprop"):
        kw["momentum"] = 0.9
    opt = getattr(ft, name)([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.003}], **kw)
    if name == "ScheduleFreeAdamW":
        opt.train()
    return opt


@pytest.mark.parametrize("name", CLASSES)
def test_release_equals_a_normal_step_bitwise(name):
    """Each parameter alone through the same kernel: the same element-wise arithmetic as the
    batched step, so the same bits; with a LambdaLR schedule changing lr every step."""
    torch, ft = _modules()
    x, y = _data(torch)
    runs = {}
    for released in (False, True):
        ps = _model(torch)
        opt = _opt(ft, name, ps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t))
        if released:
            handles = ft.step_in_backward(opt)
        for _ in range(7):
            opt.zero_grad()
            _loss(ps, x, y).backward()
            if released:
                assert all(p.grad is None for p in ps)
            opt.step()
            sched.step()
        if released:
            assert set(opt._one) == set(ps)          # every parameter on its own plan
            for h in handles:
                h.remove()
        state = [{k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}
                 for p in ps]
        runs[released] = ([p.detach().clone() for p in ps], state)
    for a, b in zip(runs[False][0], runs[True][0]):
        assert torch.equal(a, b)
    for sa, sb in zip(runs[False][1], runs[True][1]):
        assert sa.keys() == sb.keys() and sa
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


def test_release_sees_a_group_entry_changed_between_backwards():
    torch, ft = _modules()
    x, y = _data(torch)
    out = []
    for released in (False, True):
        ps = _model(torch)
        opt = ft.Adam(ps, lr=0.01)
        if released:
            ft.step_in_backward(opt)
        for t in range(5):
            if t == 3:
                opt.param_groups[0]["betas"] = (0.5, 0.9)
                opt.param_groups[0]["weight_decay"] = 0.1
            opt.zero_grad()
            _loss(ps, x, y).backward()
            opt.step()
        out.append([p.detach().clone() for p in ps])
    assert all(torch.equal(a, b) for a, b in zip(*out))


def test_a_moved_parameter_is_stepped_in_its_new_storage():
    """``p.data = ...`` between backwards: the cached plan no longer matches (TensorGrads checks
    the storage), so the step goes to the new storage and the old buffer is left alone."""
    torch, ft = _modules()
    x, y = _data(torch)
    ps = _model(torch)
    opt = ft.AdamW(ps, lr=0.01)
    ft.step_in_backward(opt)
    for _ in range(2):
        _loss(ps, x, y).backward()
        opt.step()
    old = ps[0].data
    kept = old.clone()
    ps[0].data = old.clone()
    before = ps[0].detach().clone()
    _loss(ps, x, y).backward()
    opt.step()
    assert torch.equal(old, kept)
    assert not torch.equal(ps[0].detach(), before)


def test_a_bad_group_entry_raises_inside_backward_and_changes_nothing():
    torch, ft = _modules()
    x, y = _data(torch)
    ps = _model(torch)
    opt = ft.Adam(ps, lr=0.01)
    ft.step_in_backward(opt)
    _loss(ps, x, y).backward()
    opt.step()
    before = [p.detach().clone() for p in ps]
    steps = [float(opt.state[p]["step"]) for p in ps]
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="learning rate"):
        _loss(ps, x, y).backward()
    assert all(torch.equal(p.detach(), b) for p, b in zip(ps, before))
    assert [float(opt.state[p]["step"]) for p in ps] == steps


def test_schedule_free_release_in_eval_mode_raises():
    torch, ft = _modules()
    x, y = _data(torch)
    ps = _model(torch)
    opt = ft.ScheduleFreeAdamW(ps)
    ft.step_in_backward(opt)
    with pytest.raises(RuntimeError, match="eval mode"):
        _loss(ps, x, y).backward()
    assert len(opt.state) == 0


def test_changed_groups_need_step_in_backward_again():
    torch, ft = _modules()
    x, y = _data(torch)
    ps = _model(torch)
    opt = ft.AdamW(ps, lr=0.01)
    ft.step_in_backward(opt)
    opt.param_groups[0]["params"] = list(reversed(ps))
    with pytest.raises(RuntimeError, match="step_in_backward again"):
        _loss(ps, x, y).backward()
    assert len(opt.state) == 0 or all(float(s["step"]) == 0 for s in opt.state.values())
    np.testing.assert_array_equal(ps[0].detach().numpy(), _model(torch)[0].detach().numpy())
