"""fastopt.torch: torch.optim-compatible classes on fastopt's kernels, against torch.optim itself
(parameter by parameter, element-wise), plus state dicts, schedulers, closures, errors, zero copy,
bfloat16 and autograd version counters."""

import copy
import subprocess
import sys

import numpy as np
import pytest

import fastopt

from conftest import require_torch

NAMES = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta")


def _modules():
    torch = require_torch()
    import fastopt.torch as ft
    return torch, ft


# (class, options of both groups, group-1 overrides): two groups of different lr/weight_decay/betas
CASES = [
    ("SGD", dict(lr=0.05), dict(lr=0.02, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2), dict(lr=0.02, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, maximize=False), dict(weight_decay=0.05)),
    ("Adam", dict(lr=0.01), dict(lr=0.03, weight_decay=0.1, betas=(0.8, 0.95))),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05), dict(lr=0.02, betas=(0.7, 0.9))),
    ("Adam", dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.1), dict(lr=0.02)),
    ("AdamW", dict(lr=0.01), dict(lr=0.03, weight_decay=0.2, betas=(0.8, 0.95))),
    ("AdamW", dict(lr=0.01, amsgrad=True, maximize=False), dict(weight_decay=0.0)),
    ("RMSprop", dict(lr=0.01), dict(lr=0.003, weight_decay=0.1, alpha=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9), dict(lr=0.003, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1),
     dict(lr=0.02, weight_decay=0.1)),
    ("Adamax", dict(lr=0.01), dict(lr=0.03, weight_decay=0.1, betas=(0.8, 0.95))),
    ("NAdam", dict(lr=0.01), dict(lr=0.03, weight_decay=0.1, betas=(0.8, 0.95))),
    ("NAdam", dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.1,
                   momentum_decay=0.01), dict(lr=0.02)),
    ("RAdam", dict(lr=0.01), dict(lr=0.03, weight_decay=0.1, betas=(0.8, 0.95))),
    ("RAdam", dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.1), dict(lr=0.02)),
    ("Adadelta", dict(lr=1.0), dict(lr=0.5, weight_decay=0.1, rho=0.8)),
]


@pytest.fixture(params=["float32", "float64"])
def default_dtype(request):
    torch = require_torch()
    old = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, request.param))
    try:
        yield getattr(torch, request.param)
    finally:
        torch.set_default_dtype(old)


def _loss(torch, p, t):
    return ((p - t) ** 2).sum() + 0.1 * torch.sin(3 * p).sum()


def _run(torch, cls, opts, opts1, steps, dtype, seed=0):
    """Train four tensors: two in group 0, one in group 1, one added with add_param_group at step
    10; the second tensor's grad is None on every third step."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 7), (33,), (4, 3, 2), (17,)]
    params = [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]
    targets = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    opt = cls([{"params": params[:2]}, {"params": [params[2]], **opts1}], **opts)
    for t in range(steps):
        if t == 10:
            opt.add_param_group({"params": [params[3]], "lr": opts.get("lr", 1e-3) * 0.5})
        opt.zero_grad()
        live = params if t >= 10 else params[:3]
        sum(_loss(torch, p, q) for p, q in zip(live, targets)).backward()
        if t % 3 == 0:
            params[1].grad = None
        opt.step()
    return params, opt


@pytest.mark.parametrize("name,opts,opts1", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_parity_with_torch_optim(name, opts, opts1, default_dtype):
    torch, ft = _modules()
    ref, ref_opt = _run(torch, getattr(torch.optim, name), opts, opts1, 40, default_dtype)
    got, got_opt = _run(torch, getattr(ft, name), opts, opts1, 40, default_dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if default_dtype == torch.float32 else dict(rtol=1e-11,
                                                                                  atol=1e-12)
    for i, (r, p) in enumerate(zip(ref, got)):
        np.testing.assert_allclose(p.detach().numpy(), r.detach().numpy(), **tol,
                                   err_msg=f"{name} param {i}")
    # the same state keys, layout and values as torch.optim
    for r, p in zip(ref, got):
        rs, ps = ref_opt.state[r], got_opt.state[p]
        assert set(rs) == set(ps), (name, sorted(rs), sorted(ps))
        for k in rs:
            assert torch.is_tensor(ps[k]) and ps[k].dtype == rs[k].dtype, (name, k)
            np.testing.assert_allclose(ps[k].numpy(), rs[k].numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name} state {k}")


def test_import_fastopt_does_not_import_torch():
    code = "import fastopt, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_classes_subclass_torch_optimizer_with_torch_defaults():
    torch, ft = _modules()
    p = [torch.zeros(3, requires_grad=True)]
    for name in NAMES:
        ours, theirs = getattr(ft, name)(p, lr=0.1), getattr(torch.optim, name)(p, lr=0.1)
        assert isinstance(ours, torch.optim.Optimizer)
        # torch's defaults, plus fastopt's low-precision options (off)
        extra = dict(master_weights=False, kahan=False, rounding="nearest", seed=0,
                     state_dtype=None)
        assert ours.defaults == dict(theirs.defaults, **extra), name


@pytest.mark.parametrize("flag", ["foreach", "fused", "capturable", "differentiable"])
def test_torch_only_flags_true_raise(flag):
    torch, ft = _modules()
    p = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match=flag):
        ft.AdamW(p, **{flag: True})
    ft.AdamW(p, **{flag: None if flag in ("foreach", "fused") else False})


def _train(torch, opt, params, targets, steps):
    for _ in range(steps):
        opt.zero_grad()
        sum(_loss(torch, p, q) for p, q in zip(params, targets)).backward()
        opt.step()


def _pair(torch, seed=1):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g).requires_grad_() for s in [(8, 3), (11,)]]
    targets = [torch.randn(s, generator=g) for s in [(8, 3), (11,)]]
    return params, targets


@pytest.mark.parametrize("direction", ["torch_to_fastopt", "fastopt_to_torch"])
def test_state_dict_round_trip_continues_the_trajectory(direction):
    torch, ft = _modules()
    first, second = ((torch.optim.AdamW, ft.AdamW) if direction == "torch_to_fastopt"
                     else (ft.AdamW, torch.optim.AdamW))
    kw = dict(lr=0.01, weight_decay=0.05, amsgrad=True)
    params, targets = _pair(torch)
    opt = first(params, **kw)
    _train(torch, opt, params, targets, 20)
    sd = copy.deepcopy(opt.state_dict())
    snap = [p.detach().clone() for p in params]
    # continue with the same class, and with the other class from the saved state
    same = [s.clone().requires_grad_() for s in snap]
    o_same = first(same, **kw)
    o_same.load_state_dict(copy.deepcopy(sd))
    other = [s.clone().requires_grad_() for s in snap]
    o_other = second(other, **kw)
    o_other.load_state_dict(copy.deepcopy(sd))
    _train(torch, o_same, same, targets, 50)
    _train(torch, o_other, other, targets, 50)
    for a, b in zip(same, other):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert float(o_other.state[other[0]]["step"]) == 70


@pytest.mark.parametrize("sched", ["StepLR", "OneCycleLR"])
def test_lr_schedulers_drive_adamw_like_torch(sched):
    torch, ft = _modules()
    runs = []
    for cls in (torch.optim.AdamW, ft.AdamW):
        params, targets = _pair(torch)
        opt = cls(params, lr=0.02, weight_decay=0.1)
        if sched == "StepLR":
            s = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        else:
            s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=30)
        for _ in range(30):
            _train(torch, opt, params, targets, 1)
            s.step()
        runs.append(params)
    for a, b in zip(*runs):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_closure_returns_loss_and_runs_with_grad():
    torch, ft = _modules()
    params, targets = _pair(torch)
    opt = ft.Adam(params, lr=0.01)

    def closure():
        assert torch.is_grad_enabled()
        opt.zero_grad()
        loss = sum(_loss(torch, p, q) for p, q in zip(params, targets))
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.ndim == 0
    assert float(opt.state[params[0]]["step"]) == 1


def _errors(torch):
    """(description, setup(params) -> None): each makes the next step raise."""
    def non_contiguous_grad(ps):
        ps[0].grad = torch.ones(3, 8).t()

    def sparse_grad(ps):
        ps[1].grad = torch.ones(11).to_sparse()

    def grad_requires_grad(ps):
        ps[1].grad = torch.ones(11, requires_grad=True)

    def state_wrong_shape(ps):
        ps.opt.state[ps[1]]["exp_avg_sq"] = torch.zeros(12)

    def bad_betas(ps):
        ps.opt.param_groups[0]["betas"] = (0.9, 1.5)

    def bad_lr(ps):
        ps.opt.param_groups[0]["lr"] = -1.0

    return [("non-contiguous|contiguous", non_contiguous_grad), ("sparse", sparse_grad),
            ("requires grad", grad_requires_grad), ("shape", state_wrong_shape),
            ("beta", bad_betas), ("learning rate", bad_lr)]


class _Params(list):
    opt = None


@pytest.mark.parametrize("case", range(6))
def test_error_paths_raise_and_change_nothing(case):
    torch, ft = _modules()
    match, setup = _errors(torch)[case]
    params, targets = _pair(torch)
    ps = _Params(params)
    opt = ft.Adam(params, lr=0.01)
    ps.opt = opt
    _train(torch, opt, params, targets, 2)
    opt.zero_grad()
    sum(_loss(torch, p, q) for p, q in zip(params, targets)).backward()
    setup(ps)
    before = [p.detach().clone() for p in params]
    state = copy.deepcopy(opt.state_dict()["state"])
    with pytest.raises((ValueError, TypeError), match=match):
        opt.step()
    for a, p in zip(before, params):
        assert torch.equal(a, p.detach())
    for k, s in opt.state_dict()["state"].items():
        for name, v in s.items():
            assert v.shape != state[k][name].shape or torch.equal(v, state[k][name]), name


def test_error_names_the_parameter():
    torch, ft = _modules()
    a = torch.zeros(4, requires_grad=True)
    b = torch.zeros(4, 6)[:, :3].requires_grad_()       # non-contiguous leaf
    opt = ft.SGD([{"params": [a]}, {"params": [a.new_zeros(2).requires_grad_(), b]}], lr=0.1)
    for p in [a, b] + opt.param_groups[1]["params"][:1]:
        p.grad = torch.zeros_like(p)
    with pytest.raises(ValueError, match=r'param_groups\[1\]\["params"\]\[1\] is not contiguous'):
        opt.step()
    assert torch.equal(a, torch.zeros(4))


def test_meta_device_param_raises():
    torch, ft = _modules()
    p = torch.zeros(4, device="meta", requires_grad=True)
    p.grad = torch.zeros(4, device="meta")
    opt = ft.Adam([p])
    with pytest.raises(ValueError, match="CPU"):
        opt.step()


def test_zero_copy_updates_param_and_state_in_place():
    torch, ft = _modules()
    params, targets = _pair(torch)
    opt = ft.AdamW(params, lr=0.01)
    _train(torch, opt, params, targets, 1)
    ptr_p = [p.data_ptr() for p in params]
    ptr_m = [opt.state[p]["exp_avg"].data_ptr() for p in params]
    m_before = [opt.state[p]["exp_avg"].clone() for p in params]
    p_before = [p.detach().clone() for p in params]
    _train(torch, opt, params, targets, 1)
    for p, pp, pm, mb, pb in zip(params, ptr_p, ptr_m, m_before, p_before):
        assert p.data_ptr() == pp and opt.state[p]["exp_avg"].data_ptr() == pm
        assert not torch.equal(p.detach(), pb) and not torch.equal(opt.state[p]["exp_avg"], mb)


def test_bfloat16_params_with_float32_state_match_torch_loosely():
    torch, ft = _modules()
    runs = []
    for cls in (torch.optim.AdamW, ft.AdamW):
        g = torch.Generator().manual_seed(3)
        params = [torch.randn(64, generator=g).to(torch.bfloat16).requires_grad_()]
        targets = [torch.randn(64, generator=g).to(torch.bfloat16)]
        opt = cls(params, lr=0.01)
        _train(torch, opt, params, targets, 30)
        runs.append((params, opt))
    (ref, _), (got, opt) = runs
    assert opt.state[got[0]]["exp_avg"].dtype == torch.float32
    assert got[0].dtype == torch.bfloat16
    np.testing.assert_allclose(got[0].detach().float().numpy(), ref[0].detach().float().numpy(),
                               rtol=0.05, atol=0.05)


def test_step_increments_the_autograd_version():
    torch, ft = _modules()
    for cls in (torch.optim.AdamW, ft.AdamW):
        p = torch.randn(5, requires_grad=True)
        opt = cls([p], lr=0.1)
        v0 = p._version
        loss = (p * p).sum()          # saves p for backward
        loss.backward(retain_graph=True)
        opt.step()
        assert p._version > v0
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


def test_nadam_groups_by_step_and_mu_product():
    """Parameters whose step counts differ (a grad missing on some steps) each keep their own
    step and mu_product, as torch.optim.NAdam."""
    torch, ft = _modules()
    ref, ro = _run(torch, torch.optim.NAdam, dict(lr=0.01), {}, 25, torch.float32)
    got, go = _run(torch, ft.NAdam, dict(lr=0.01), {}, 25, torch.float32)
    steps = {float(go.state[p]["step"]) for p in got}
    assert len(steps) > 1
    for r, p in zip(ref, got):
        assert float(go.state[p]["step"]) == float(ro.state[r]["step"])
        assert abs(float(go.state[p]["mu_product"]) - float(ro.state[r]["mu_product"])) < 1e-7


def test_load_state_dict_into_a_stepped_optimizer_and_pickle():
    """Cached views of replaced state tensors are dropped: loading a state into an optimizer that
    has stepped (and a pickled copy) continues from the loaded state."""
    import pickle
    torch, ft = _modules()
    params, targets = _pair(torch)
    src = torch.optim.AdamW(params, lr=0.01)
    _train(torch, src, params, targets, 7)
    snap = [p.detach().clone() for p in params]
    a = [s.clone().requires_grad_() for s in snap]
    oa = ft.AdamW(a, lr=0.01)
    _train(torch, oa, a, targets, 3)
    with torch.no_grad():
        for p, s in zip(a, snap):
            p.copy_(s)
    oa.load_state_dict(copy.deepcopy(src.state_dict()))
    _train(torch, oa, a, targets, 10)
    _train(torch, src, params, targets, 10)
    for x, y in zip(a, params):
        np.testing.assert_allclose(x.detach().numpy(), y.detach().numpy(), rtol=1e-6, atol=1e-7)
    ob = pickle.loads(pickle.dumps(oa))
    assert isinstance(ob, ft.AdamW) and ob._cache == {}


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_lion_matches_the_numpy_class(wd):
    """fastopt.torch.Lion (lion-pytorch's signature) equals fastopt.Lion bit for bit."""
    torch = require_torch()
    import fastopt.torch as ft
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal(33).astype(np.float32)
    p = torch.tensor(w0.copy(), requires_grad=True)
    opt = ft.Lion([p], lr=1e-3, betas=(0.8, 0.95), weight_decay=wd)
    mine = w0.copy()
    ref = fastopt.Lion([mine], lr=1e-3, beta1=0.8, beta2=0.95, weight_decay=wd)
    for _ in range(10):
        g = rng.standard_normal(33).astype(np.float32)
        p.grad = torch.tensor(g)
        opt.step()
        ref.step([g])
        assert p.detach().numpy().tobytes() == mine.tobytes()
        assert opt.state[p]["exp_avg"].numpy().tobytes() == ref.state[0]["m"].tobytes()
    with pytest.raises(ValueError):
        ft.Lion([p], betas=(1.0, 0.9))


@pytest.mark.parametrize("path", ["fused", "unscale_"])
def test_grad_scaler_cpu_steps_and_skips_like_torch(path):
    """torch.amp.GradScaler("cpu") drives fastopt.torch through its fused protocol
    (``_step_supports_amp_scaling``: the kernel divides by the scale and the gradients are left
    scaled) or, after an explicit ``scaler.unscale_(opt)`` (to clip, say), on unscaled
    gradients.  A normal step equals torch.optim's under the same scaler, and a step with an Inf
    gradient is skipped (nothing changes, the step count included) and lowers the scale."""
    torch = require_torch()
    import fastopt.torch as ft
    assert ft.AdamW._step_supports_amp_scaling
    rng = np.random.default_rng(11)
    w0 = torch.tensor(rng.standard_normal((4, 3)), dtype=torch.float32)
    x = torch.tensor(rng.standard_normal((8, 4)), dtype=torch.float32)
    runs = {}
    for name, cls in (("torch", torch.optim.AdamW), ("fastopt", ft.AdamW)):
        w = w0.clone().requires_grad_(True)
        opt = cls([w], lr=1e-2)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
        scales = []
        for t in range(6):
            opt.zero_grad()
            loss = (x @ w).pow(2).mean()
            if t == 3:
                loss = loss * float("inf")          # an overflowing step: skipped
            scaler.scale(loss).backward()
            scaled = w.grad.clone()
            if path == "unscale_":
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_([w], 1e6)
            before = w.detach().clone()
            steps = float(opt.state[w]["step"]) if opt.state[w] else 0.0
            scaler.step(opt)
            if name == "fastopt" and path == "fused":
                # divided inside the kernel only (the Inf step's gradient holds NaNs)
                assert torch.allclose(w.grad, scaled, rtol=0, atol=0, equal_nan=True)
                assert not hasattr(opt, "grad_scale")   # the scaler took its attributes back
            scaler.update()
            scales.append(scaler.get_scale())
            if t == 3:
                assert torch.equal(w.detach(), before), name
                assert float(opt.state[w]["step"]) == steps, name
        runs[name] = (w.detach().numpy().copy(), scales)
    np.testing.assert_allclose(runs["fastopt"][0], runs["torch"][0], rtol=1e-6, atol=1e-7)
    assert runs["fastopt"][1] == runs["torch"][1]
    assert runs["fastopt"][1][3] < runs["fastopt"][1][2]       # the Inf step lowered the scale


def test_grad_scale_with_max_norm_clips_the_unscaled_norm():
    """GradScaler's fused path and step(max_norm=...) together: the norm is of the unscaled
    gradients, as unscale_ then clip_grad_norm_ would compute it."""
    torch = require_torch()
    import fastopt.torch as ft
    w_a = torch.randn(50, requires_grad=True)
    w_b = w_a.detach().clone().requires_grad_(True)
    g = torch.randn(50) * 10
    a, b = ft.AdamW([w_a], lr=0.01), ft.AdamW([w_b], lr=0.01)
    for _ in range(3):
        w_a.grad = g * 1024.0
        a.grad_scale, a.found_inf = torch.tensor(1024.0), torch.tensor(0.0)
        a.step(max_norm=1.0)
        del a.grad_scale, a.found_inf
        w_b.grad = g.clone()
        b.step(max_norm=1.0)
        assert a.last_grad_norm == pytest.approx(b.last_grad_norm, rel=1e-6)
    torch.testing.assert_close(w_a, w_b)


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_step_max_norm_equals_clip_grad_norm_then_step(max_norm):
    """step(max_norm=...) clips over every group in one fused pass: the same as torch's
    clip_grad_norm_ followed by torch.optim's step, and the gradients are left as they were."""
    torch = require_torch()
    import fastopt.torch as ft
    rng = np.random.default_rng(2)
    init = [torch.tensor(rng.standard_normal(s), dtype=torch.float32) for s in ((6, 5), (7,))]
    theirs = [x.clone().requires_grad_(True) for x in init]
    mine = [x.clone().requires_grad_(True) for x in init]
    topt = torch.optim.AdamW([{"params": [theirs[0]]}, {"params": [theirs[1]], "lr": 3e-3}])
    opt = ft.AdamW([{"params": [mine[0]]}, {"params": [mine[1]], "lr": 3e-3}])
    for _ in range(5):
        for a, b in zip(theirs, mine):
            g = torch.tensor(rng.standard_normal(tuple(a.shape)), dtype=torch.float32)
            a.grad, b.grad = g.clone(), g.clone()
        kept = [b.grad.clone() for b in mine]
        norm = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
        topt.step()
        opt.step(max_norm=max_norm)
        assert opt.last_grad_norm == pytest.approx(float(norm), rel=1e-6)
        for b, k in zip(mine, kept):
            assert torch.equal(b.grad, k)             # the gradients are not written
        for a, b in zip(theirs, mine):
            np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-5,
                                       atol=1e-6)


def test_bad_max_norm_raises_and_changes_nothing():
    torch = require_torch()
    import fastopt.torch as ft
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    opt = ft.Adam([p])
    for bad in (-1.0, float("nan"), "1"):
        with pytest.raises((TypeError, ValueError), match="max_norm"):
            opt.step(max_norm=bad)
    assert torch.equal(p.detach(), torch.ones(3)) and len(opt.state[p]) == 0


def test_step_in_backward_equals_a_normal_step_and_frees_the_gradients():
    """Gradient release: the parameters after 8 steps equal a normal step's (1e-6 relative),
    each gradient is freed as soon as it is used, and a StepLR schedule still applies."""
    torch = require_torch()
    import fastopt.torch as ft
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.standard_normal((16, 5)), dtype=torch.float32)
    y = torch.tensor(rng.standard_normal((16, 1)), dtype=torch.float32)

    def model_params():
        g = torch.Generator().manual_seed(0)
        return [torch.randn(5, 8, generator=g).requires_grad_(True),
                torch.randn(8, generator=g).requires_grad_(True),
                torch.randn(8, 1, generator=g).requires_grad_(True)]

    def loss_of(ps):
        return ((torch.tanh(x @ ps[0] + ps[1]) @ ps[2] - y) ** 2).mean()

    out = {}
    for released in (False, True):
        ps = model_params()
        opt = ft.AdamW([{"params": ps[:2]}, {"params": ps[2:], "lr": 2e-3}], lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        if released:
            handles = ft.step_in_backward(opt)
            alive = []

            def count(_):
                alive.append(sum(q.grad is not None for q in ps))
            probes = [q.register_post_accumulate_grad_hook(count) for q in ps]
        for _ in range(8):
            opt.zero_grad()
            loss_of(ps).backward()
            if released:
                assert all(q.grad is None for q in ps)
            opt.step()
            sched.step()
        if released:
            # each probe runs after the stepping hook: no gradient is alive then
            assert alive and max(alive) == 0
            for h in handles + probes:
                h.remove()
        out[released] = [q.detach().clone() for q in ps]
        assert all(float(opt.state[q]["step"]) == 8 for q in ps)
    for a, b in zip(out[False], out[True]):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)
    with pytest.raises(TypeError, match="fastopt.torch"):
        ft.step_in_backward(torch.optim.SGD(model_params(), lr=0.1))
