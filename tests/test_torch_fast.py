"""fastopt.torch's planned fast path (native gradient binding, _core.TensorGrads), its fallbacks,
the low-precision constructor keywords, and dense non-contiguous layouts (channels_last)."""

import copy
import pickle

import numpy as np
import pytest

import fastopt
from conftest import require_torch


def _modules():
    torch = require_torch()
    import fastopt.torch as ft
    return torch, ft


def _grads(torch, params, seed):
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype)


def _make(torch, dtype=None, shapes=((6, 5), (7,), (3, 2, 2))):
    g = torch.Generator().manual_seed(0)
    dtype = dtype or torch.float32
    return [torch.randn(s, generator=g).to(dtype).requires_grad_() for s in shapes]


def _bits(t):
    """The raw bits of `t` (16-bit tensors compared bit for bit, NaN-safe)."""
    import torch
    t = t.detach()
    return t.view(torch.int16).clone() if t.dtype.itemsize == 2 else t.clone()


# -- the fast path against the full path -------------------------------------------------------

@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam",
                                  "RAdam", "Adadelta", "Lion"])
@pytest.mark.parametrize("fresh", [True, False], ids=["new-grads", "same-grads"])
def test_fast_path_equals_the_full_path_bitwise(name, fresh):
    torch, ft = _modules()
    kw = dict(lr=0.01)
    if name in ("SGD", "RMSprop"):
        kw["momentum"] = 0.9
    fast_params, full_params = _make(torch), _make(torch)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.003}]
    fast = getattr(ft, name)(groups(fast_params), **kw)
    full = getattr(ft, name)(groups(full_params), **kw)
    full._fast_step = lambda *a: False          # always the full path
    for t in range(8):
        for ps in (fast_params, full_params):
            if fresh or t == 0:
                _grads(torch, ps, t)
            else:
                with torch.no_grad():
                    for p in ps:
                        p.grad.mul_(0.9)        # same tensors, new values
        fast.step()
        full.step()
        assert full._fast is None
    assert fast._fast is not None, "the fast path was never planned"
    for a, b in zip(fast_params, full_params):
        assert torch.equal(a, b)
        for k, v in full.state[b].items():
            assert torch.equal(fast.state[a][k], v), (name, k)


def test_fast_path_makes_one_kernel_call_per_group(monkeypatch):
    torch, ft = _modules()
    from fastopt._dispatch import kernels
    calls = []
    real = kernels.adam_step_multi

    def counting(params, grads, **kw):
        calls.append(type(params).__name__)
        return real(params, grads, **kw)

    monkeypatch.setattr(kernels, "adam_step_multi", counting)
    ps = _make(torch, shapes=[(4,)] * 9)
    opt = ft.AdamW([{"params": ps[:3]}, {"params": ps[3:6], "lr": 0.1}, {"params": ps[6:]}])
    for t in range(4):
        _grads(torch, ps, t)
        calls.clear()
        opt.step()
        assert len(calls) == 3, calls
    assert calls == ["Plan"] * 3


def test_parameter_storage_moved_updates_the_new_buffer():
    """p.data = ... (a new buffer) between steps: the next step updates the new buffer and
    never the old one, as torch.optim does."""
    torch, ft = _modules()
    ours, theirs = _make(torch), _make(torch)
    o = ft.AdamW(ours, lr=0.05)
    t = torch.optim.AdamW(theirs, lr=0.05, foreach=False)
    for step in range(6):
        _grads(torch, ours, step)
        _grads(torch, theirs, step)
        if step == 3:
            old = ours[0].data
            kept = old.clone()
            ours[0].data = old.clone()
            theirs[0].data = theirs[0].data.clone()
        o.step()
        t.step()
    assert torch.equal(old, kept)               # the old buffer was never written
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_replaced_state_tensor_is_used_and_checked():
    torch, ft = _modules()
    ps = _make(torch)
    opt = ft.Adam(ps, lr=0.01)
    for step in range(3):
        _grads(torch, ps, step)
        opt.step()
    # a state tensor replaced by hand is what the next step updates
    fresh = torch.zeros_like(opt.state[ps[0]]["exp_avg"])
    opt.state[ps[0]]["exp_avg"] = fresh
    _grads(torch, ps, 9)
    opt.step()
    assert torch.equal(fresh, 0.1 * ps[0].grad)     # (1 - beta1) g: it started from zero
    # one of the wrong shape raises and changes nothing
    opt.state[ps[1]]["exp_avg_sq"] = torch.zeros(3)
    before = [p.detach().clone() for p in ps]
    with pytest.raises(ValueError, match="shape"):
        opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, ps))


def test_grad_overlapping_its_parameter_raises_and_changes_nothing():
    torch, ft = _modules()
    ps = _make(torch)
    opt = ft.AdamW(ps, lr=0.01)
    for step in range(3):
        _grads(torch, ps, step)
        opt.step()
    ps[1].grad = ps[1].detach()                    # the gradient IS the parameter's memory
    before = [p.detach().clone() for p in ps]
    with pytest.raises(ValueError, match="overlap"):
        opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, ps))


@pytest.mark.parametrize("bad", ["expanded", "transposed", "sparse", "wrong-size"])
def test_tensor_grads_refuses_what_the_plan_did_not_check(bad):
    """The native binding raises TensorMismatch (the caller then runs its full checks) for a
    gradient that is not the dense, contiguous, right-size CPU tensor the kernels read."""
    torch, ft = _modules()
    from fastopt._dispatch import kernels
    p = torch.zeros(4, 4, requires_grad=True)
    plan = kernels.Plan([p.detach().numpy()], ("param", "grad"), ())
    p.grad = torch.zeros(4, 4)
    kernels.TensorGrads(plan, [p])                  # fine
    if bad == "expanded":
        p.grad = torch.zeros(1, 1).expand(4, 4)    # stride 0: one element of memory
    elif bad == "transposed":
        p.grad = torch.zeros(4, 4).t()
    elif bad == "sparse":
        p.grad = torch.zeros(4, 4).to_sparse()
    else:
        plan = kernels.Plan([p.detach().numpy()[:2]], ("param", "grad"), ())
    with pytest.raises(kernels.TensorMismatch):
        kernels.TensorGrads(plan, [p])


def test_state_dict_pickles_as_plain_torch_data():
    torch, ft = _modules()
    ps = _make(torch)
    opt = ft.AdamW(ps, lr=0.01)
    for step in range(3):
        _grads(torch, ps, step)
        opt.step()
    sd = pickle.loads(pickle.dumps(opt.state_dict()))
    assert all(type(s) is dict for s in sd["state"].values())
    assert type(pickle.loads(pickle.dumps(opt.state))).__module__ == "collections"
    theirs = torch.optim.AdamW([p.detach().clone().requires_grad_() for p in ps])
    theirs.load_state_dict(copy.deepcopy(sd))
    for i, p in enumerate(theirs.param_groups[0]["params"]):
        assert torch.equal(theirs.state[p]["exp_avg"], opt.state[ps[i]]["exp_avg"])
        assert float(theirs.state[p]["step"]) == 3


# -- low-precision keywords, against the NumPy classes (the same kernels) ----------------------

def _np_bf16(torch, t):
    import ml_dtypes
    return t.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16)


@pytest.mark.parametrize("opts", [dict(master_weights=True), dict(kahan=True),
                                  dict(rounding="stochastic", seed=7),
                                  dict(state_dtype="bfloat16"),
                                  dict(master_weights=True, rounding="stochastic", seed=3)],
                         ids=["master", "kahan", "stochastic", "bf16-state", "master-sr"])
def test_low_precision_options_equal_the_numpy_class_bitwise(opts):
    torch, ft = _modules()
    import ml_dtypes
    rng = np.random.default_rng(0)
    init = rng.standard_normal((3, 50)).astype(np.float32)
    grads = [rng.standard_normal((3, 50)).astype(np.float32) for _ in range(8)]
    tkw, nkw = dict(opts), dict(opts)
    if "state_dtype" in opts:
        tkw["state_dtype"], nkw["state_dtype"] = torch.bfloat16, ml_dtypes.bfloat16
    p = torch.tensor(init).to(torch.bfloat16).requires_grad_()
    ours = ft.AdamW([p], lr=0.01, **tkw)
    arr = init.astype(ml_dtypes.bfloat16)
    ref = fastopt.AdamW({"w": arr}, lr=0.01, weight_decay=0.01, **nkw)
    for g in grads:
        p.grad = torch.tensor(g).to(torch.bfloat16)
        ours.step()
        ref.step({"w": g.astype(ml_dtypes.bfloat16)})
        np.testing.assert_array_equal(_np_bf16(torch, p).view(np.uint16), arr.view(np.uint16))
    st = ours.state[p]
    if opts.get("master_weights"):
        np.testing.assert_array_equal(st["master_weight"].numpy(), ref.state["w"]["master"])
    if opts.get("kahan"):
        np.testing.assert_array_equal(_np_bf16(torch, st["kahan_compensation"]).view(np.uint16),
                                      ref.state["w"]["compensation"].view(np.uint16))
    want_state = torch.bfloat16 if "state_dtype" in opts else torch.float32
    assert st["exp_avg"].dtype == want_state
    assert ours._fast is not None


def test_master_weights_apply_to_16_bit_parameters_only():
    """A mixed model (bf16 layers, an fp32 norm): the fp32 parameter has no master copy and
    steps as it would without the option."""
    torch, ft = _modules()
    half = torch.randn(5, 4).to(torch.bfloat16).requires_grad_()
    full = torch.randn(6).requires_grad_()
    full_ref = full.detach().clone().requires_grad_()
    opt = ft.AdamW([half, full], lr=0.01, master_weights=True)
    ref = ft.AdamW([full_ref], lr=0.01)
    for step in range(4):
        _grads(torch, [half, full], step)
        full_ref.grad = full.grad.clone()
        opt.step()
        ref.step()
    assert "master_weight" in opt.state[half] and "master_weight" not in opt.state[full]
    assert torch.equal(full, full_ref)
    torch.testing.assert_close(half.float(), opt.state[half]["master_weight"],
                               atol=0.01, rtol=0.01)


def test_master_weights_beat_plain_bf16_on_small_updates():
    """The point of master weights: updates far below bf16's resolution accumulate."""
    torch, ft = _modules()
    runs = {}
    for opts in ({}, dict(master_weights=True), dict(kahan=True),
                 dict(rounding="stochastic", seed=1)):
        p = torch.ones(4096, dtype=torch.bfloat16, requires_grad=True)
        opt = ft.SGD([p], lr=1e-4, **opts)
        for _ in range(200):
            p.grad = torch.ones_like(p)
            opt.step()
        runs[tuple(opts)] = p.float().mean().item()
    exact = 1.0 - 200 * 1e-4
    assert runs[()] == 1.0                          # every update rounded away
    for k in [("master_weights",), ("kahan",), ("rounding", "seed")]:
        assert abs(runs[k] - exact) < 2e-3, (k, runs[k])


@pytest.mark.parametrize("bad, exc", [
    (dict(master_weights=True, kahan=True), ValueError),
    (dict(kahan=True, rounding="stochastic"), ValueError),
    (dict(rounding="up"), ValueError),
    (dict(seed=-1), ValueError),
    (dict(master_weights=1), TypeError),
    (dict(state_dtype="float32"), TypeError),
])
def test_bad_low_precision_options_raise(bad, exc):
    torch, ft = _modules()
    with pytest.raises(exc):
        ft.AdamW([torch.zeros(3, requires_grad=True)], **bad)


def test_a_bad_option_set_on_a_group_raises_and_changes_nothing():
    torch, ft = _modules()
    ps = _make(torch, torch.bfloat16)
    opt = ft.AdamW(ps, lr=0.01)
    for step in range(3):
        _grads(torch, ps, step)
        opt.step()
    opt.param_groups[0]["rounding"] = "sideways"
    before = [_bits(p) for p in ps]
    with pytest.raises(ValueError):
        opt.step()
    assert all(torch.equal(a, _bits(p)) for a, p in zip(before, ps))


# -- dense layouts -------------------------------------------------------------------------------

def test_channels_last_parameters_train_like_torch():
    torch, ft = _modules()
    conv_a = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    conv_b = copy.deepcopy(conv_a)
    assert not conv_a.weight.is_contiguous()
    x = torch.randn(4, 3, 9, 9).to(memory_format=torch.channels_last)
    ours = ft.AdamW(conv_a.parameters(), lr=0.01)
    theirs = torch.optim.AdamW(conv_b.parameters(), lr=0.01, foreach=False)
    for _ in range(6):
        for conv, opt in ((conv_a, ours), (conv_b, theirs)):
            opt.zero_grad()
            conv(x).square().mean().backward()
            opt.step()
    assert conv_a.weight.grad.stride() == conv_a.weight.stride()
    torch.testing.assert_close(conv_a.weight, conv_b.weight)
    torch.testing.assert_close(conv_a.bias, conv_b.bias)
    st = ours.state[conv_a.weight]
    assert st["exp_avg"].stride() == conv_a.weight.stride()
    assert ours._fast is not None


def test_gradient_with_other_strides_than_a_channels_last_param_raises():
    torch, ft = _modules()
    w = torch.randn(8, 3, 3, 3).to(memory_format=torch.channels_last).requires_grad_()
    opt = ft.AdamW([w], lr=0.01)
    w.grad = torch.randn(8, 3, 3, 3)                # contiguous: not w's layout
    before = w.detach().clone()
    with pytest.raises(ValueError, match="strides"):
        opt.step()
    assert torch.equal(before, w)
