"""The optimizer classes: SGD, Momentum, RMSprop, Adam, AdamW.

What is checked here:

* parity with ``torch.optim`` (SGD, RMSprop, Adam, AdamW) over 50 steps on several arrays, for every
  option PyTorch has, element-wise (float64 rtol 1e-10, float32 rtol 1e-5);
* Momentum against the course's formula written out in NumPy;
* a step is one native call and equals, bit for bit, a loop of per-array kernel calls (mixed
  float32/float64, 200 small arrays plus arrays above the serial threshold), for 1 and 2 threads;
* learning-rate schedules (per epoch and per step) drive ``opt.lr`` and the update;
* gradients as a dict, with the course's keys, or as a list; every malformed ``step`` raises before
  any array (parameter or state) or counter changes;
* state arrays: 64-byte aligned, zero-initialised, named; counters; constructor validation.
"""


import numpy as np
import pytest
from conftest import num_threads, require_torch

import fastopt
import fastopt.optimizers as optimizers_module

SERIAL_THRESHOLD = fastopt.show_config(print_=False)["serial_threshold"]

CLASSES = {"SGD": fastopt.SGD, "Momentum": fastopt.Momentum, "RMSprop": fastopt.RMSprop,
           "Adam": fastopt.Adam, "AdamW": fastopt.AdamW}


# ------------------------------------------------------------------------------------------------
# Helpers.
# ------------------------------------------------------------------------------------------------

def snapshot(opt, extra=()):
    """Bytes of every parameter and state array, and the counters."""
    arrays = {("param", str(k)): a.tobytes() for k, a in enumerate_params(opt)}
    for k, slots in opt.state.items():
        for s, a in slots.items():
            arrays[("state", str(k), s)] = a.tobytes()
    for i, a in enumerate(extra):
        arrays[("extra", i)] = a.tobytes()
    return arrays, (opt.step_count, opt.epoch, opt.skipped_steps)


def enumerate_params(opt):
    p = opt.params
    return p.items() if isinstance(p, dict) else enumerate(p)


def assert_unchanged(opt, snap, extra=()):
    arrays, counters = snapshot(opt, extra)
    assert counters == snap[1], "a failing call changed the counters"
    for key in snap[0]:
        assert arrays[key] == snap[0][key], f"a failing call wrote {key}"


def course_params(rng, dtype=np.float64, dtype_b2=None):
    """The course's parameters dict for a 4-5-3-1 network (mixed dtypes when dtype_b2 given)."""
    p = {"W1": rng.standard_normal((5, 4)).astype(dtype),
         "b1": rng.standard_normal((5, 1)).astype(dtype),
         "W2": rng.standard_normal((3, 5)).astype(dtype),
         "b2": rng.standard_normal((3, 1)).astype(dtype_b2 or dtype)}
    return p


def grads_like(params, rng, scale=1.0):
    def one(a):
        return np.asarray(scale * rng.standard_normal(a.shape), dtype=a.dtype)

    if isinstance(params, dict):
        return {f"d{k}": one(a) for k, a in params.items()}
    return [one(a) for a in params]


def copy_params(params):
    if isinstance(params, dict):
        return {k: a.copy() for k, a in params.items()}
    return [a.copy() for a in params]


# Option sets: every class, with default options and with every option switched on.
OPTION_SETS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("Momentum", dict(lr=0.05)),
    ("Momentum", dict(lr=0.05, beta=0.8)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, beta=0.85, eps=1e-3, eps_inside_sqrt=True, centered=True,
                     momentum=0.5, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, eps_inside_sqrt=True,
                  weight_decay=0.1, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.1, amsgrad=True,
                   maximize=True)),
]


def option_id(cls_name, kw):
    return cls_name + "-" + "-".join(f"{k}={v}" for k, v in kw.items() if k != "lr")


OPTION_PARAMS = [pytest.param(c, kw, id=option_id(c, kw)) for c, kw in OPTION_SETS]


def kernel_loop_step(cls_name, kw, params, grads, state, step):
    """One update done the slow way: a Python loop of the public single-array kernels.

    `params` and `grads` are lists, `state` a list of dicts slot -> array (like opt.state)."""
    kw = dict(kw)
    lr = kw.pop("lr")
    for p, g, st in zip(params, grads, state):
        if cls_name == "SGD":
            if kw.get("momentum", 0) == 0:
                fastopt.sgd_step(p, g, lr=lr, weight_decay=kw.get("weight_decay", 0.0),
                                 maximize=kw.get("maximize", False))
            else:
                fastopt.momentum_step(
                    p, g, st["momentum_buffer"], lr=lr, beta=kw["momentum"],
                    dampening=0.0 if step == 1 else kw.get("dampening", 0.0),
                    nesterov=kw.get("nesterov", False), weight_decay=kw.get("weight_decay", 0.0),
                    maximize=kw.get("maximize", False))
        elif cls_name == "Momentum":
            fastopt.momentum_step(p, g, st["velocity"], lr=lr, beta=kw.get("beta", 0.9))
        elif cls_name == "RMSprop":
            fastopt.rmsprop_step(p, g, st["sq_avg"], lr=lr, grad_avg=st.get("grad_avg"),
                                 momentum_buf=st.get("momentum_buf"), **kw)
        elif cls_name in ("Adam", "AdamW"):
            decoupled = cls_name == "AdamW"
            kk = dict(kw)
            if decoupled:
                kk.setdefault("weight_decay", 1e-2)
            fastopt.adam_step(p, g, st["m"], st["v"], step=step, lr=lr,
                              decoupled_weight_decay=decoupled, v_max=st.get("v_max"), **kk)
        else:
            raise AssertionError(cls_name)


def expected_slots(cls_name, kw):
    if cls_name == "SGD":
        return {"momentum_buffer"} if kw.get("momentum", 0) > 0 else set()
    if cls_name == "Momentum":
        return {"velocity"}
    if cls_name == "RMSprop":
        return ({"sq_avg"} | ({"grad_avg"} if kw.get("centered") else set())
                | ({"momentum_buf"} if kw.get("momentum", 0) > 0 else set()))
    return {"m", "v"} | ({"v_max"} if kw.get("amsgrad") else set())


# ------------------------------------------------------------------------------------------------
# Parity with torch.optim.
# ------------------------------------------------------------------------------------------------

TORCH_CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05, maximize=True)),
    ("RMSprop", dict(lr=0.01, beta=0.99)),
    ("RMSprop", dict(lr=0.01, beta=0.9, centered=True)),
    ("RMSprop", dict(lr=0.01, beta=0.9, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, beta=0.95, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, beta=0.9, maximize=True)),
    ("RMSprop", dict(lr=0.01, beta=0.8, eps=1e-6, centered=True, momentum=0.5,
                     weight_decay=0.05, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, maximize=True)),
    ("Adam", dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1, amsgrad=True,
                  maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, maximize=True)),
    ("AdamW", dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1, amsgrad=True,
                   maximize=True)),
]


def torch_optimizer(torch, cls_name, kw, tensors):
    kw = dict(kw)
    if cls_name == "SGD":
        return torch.optim.SGD(tensors, **kw)
    if cls_name == "RMSprop":
        kw["alpha"] = kw.pop("beta")
        return torch.optim.RMSprop(tensors, **kw)
    betas = (kw.pop("beta1", 0.9), kw.pop("beta2", 0.999))
    cls = torch.optim.Adam if cls_name == "Adam" else torch.optim.AdamW
    return cls(tensors, betas=betas, **kw)


PARITY_SHAPES = [(3, 4), (7,), (2, 3, 5), (1,), (33,)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls_name, kw", [pytest.param(c, kw, id=option_id(c, kw))
                                          for c, kw in TORCH_CASES])
def test_parity_with_torch_optim(cls_name, kw, dtype, rng):
    torch = require_torch()
    n_steps = 50
    init = [rng.standard_normal(s).astype(dtype) for s in PARITY_SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in PARITY_SHAPES]
             for _ in range(n_steps)]

    params = {f"p{i}": a.copy() for i, a in enumerate(init)}
    opt = CLASSES[cls_name](params, **kw)

    tensors = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in init]
    topt = torch_optimizer(torch, cls_name, kw, tensors)

    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (1e-5, 1e-6)
    for t in range(n_steps):
        opt.step({f"p{i}": g for i, g in enumerate(grads[t])})
        for p, g in zip(tensors, grads[t]):
            p.grad = torch.from_numpy(g.copy())
        topt.step()
        if t < 2 or (t + 1) % 5 == 0:   # the first steps (SGD's first-step rule), every 5th
            for i, p in enumerate(tensors):
                np.testing.assert_allclose(params[f"p{i}"], p.detach().numpy(), rtol=rtol,
                                           atol=atol, err_msg=f"param p{i} after step {t + 1}")
    assert all(params[f"p{i}"].dtype == dtype for i in range(len(init)))


# ------------------------------------------------------------------------------------------------
# Momentum: the course's formula.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("beta", [0.9, 0.5])
def test_momentum_equals_course_formula(beta, dtype, rng):
    lr = 0.1
    params = course_params(rng, dtype)
    W = {k: a.copy() for k, a in params.items()}          # the course's own arrays
    v = {k: np.zeros_like(a) for k, a in params.items()}  # v starts at zero
    opt = fastopt.Momentum(params, lr=lr, beta=beta)
    assert opt.hyper["beta"] == beta
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (1e-5, 1e-6)
    for t in range(30):
        grads = grads_like(params, rng)
        opt.step(grads)
        for k in W:
            v[k] = beta * v[k] + (1 - beta) * grads["d" + k]
            W[k] = W[k] - lr * v[k]
            np.testing.assert_allclose(opt.state[k]["velocity"], v[k], rtol=rtol, atol=atol)
            np.testing.assert_allclose(params[k], W[k], rtol=rtol, atol=atol)


def test_momentum_default_beta_is_0_9_and_not_torch_form(rng):
    params = {"W": np.ones(4)}
    opt = fastopt.Momentum(params, lr=1.0)
    assert opt.hyper == {"beta": 0.9}
    g = np.full(4, 2.0)
    opt.step({"dW": g})
    # course form: v = 0.9 * 0 + 0.1 * 2 = 0.2 (PyTorch's SGD would start the buffer at 2)
    np.testing.assert_allclose(opt.state["W"]["velocity"], 0.2, rtol=1e-15)
    np.testing.assert_allclose(params["W"], 1 - 0.2, rtol=1e-15)


def test_sgd_first_step_rule_hand_values():
    # PyTorch form: b_1 = g_1 (no dampening on the first step), b_2 = mu b_1 + (1 - d) g_2
    params = [np.zeros(3)]
    opt = fastopt.SGD(params, lr=1.0, momentum=0.5, dampening=0.25)
    opt.step([np.full(3, 4.0)])
    np.testing.assert_array_equal(opt.state[0]["momentum_buffer"], 4.0)
    np.testing.assert_array_equal(params[0], -4.0)
    opt.step([np.full(3, 8.0)])
    np.testing.assert_array_equal(opt.state[0]["momentum_buffer"], 0.5 * 4 + 0.75 * 8)
    np.testing.assert_array_equal(params[0], -4.0 - 8.0)


# ------------------------------------------------------------------------------------------------
# Schedules.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_with_epoch_schedule_matches_reference(dtype, rng):
    sched = fastopt.inverse_time_decay(0.2, decay_rate=1.0)
    params = course_params(rng, dtype)
    opt = fastopt.Adam(params, lr=sched, weight_decay=0.0)
    ref = {k: a.copy() for k, a in params.items()}
    m = {k: np.zeros_like(a) for k, a in params.items()}
    v = {k: np.zeros_like(a) for k, a in params.items()}
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    expected_lrs = [0.2, 0.1, 0.2 / 3]
    step = 0
    for epoch, lr in enumerate(expected_lrs):
        assert opt.epoch == epoch
        assert opt.lr == pytest.approx(lr, rel=1e-15)
        for i in range(3):
            grads = grads_like(params, rng)
            before = {k: (params[k].copy(), m[k].copy(), v[k].copy()) for k in params}
            opt.step(grads)
            step += 1
            for k in ref:
                fastopt.reference.adam_step(ref[k], grads["d" + k], m[k], v[k], step=step, lr=lr)
                np.testing.assert_allclose(params[k], ref[k], rtol=rtol, atol=1e-7)
            if epoch == 1 and i == 0:
                # the first step of epoch 1 moves by lr 0.1: half of what lr 0.2 would move
                for k in ref:
                    p0, m0, v0 = before[k]
                    at_02 = p0.copy()
                    fastopt.reference.adam_step(at_02, grads["d" + k], m0.copy(), v0.copy(),
                                                step=step, lr=0.2)
                    np.testing.assert_allclose(params[k] - p0, (at_02 - p0) / 2, rtol=1e-3,
                                               atol=1e-6)
        opt.end_epoch()
    assert opt.step_count == 9


def test_epoch_schedule_follows_epoch_not_steps(rng):
    sched = fastopt.inverse_time_decay(0.2, decay_rate=1.0)
    params = [np.zeros(3)]
    opt = fastopt.SGD(params, lr=sched)
    for _ in range(5):
        opt.step([np.ones(3)])
    assert opt.lr == 0.2                                 # still epoch 0
    for e, lr in enumerate([0.1, 0.2 / 3, 0.05, 0.04], start=1):
        opt.end_epoch()
        assert opt.epoch == e
        assert opt.lr == pytest.approx(lr, rel=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_step_schedule_advances_with_steps(dtype, rng):
    sched = fastopt.inverse_sqrt_decay(0.1, per="step")
    params = [rng.standard_normal(10).astype(dtype), rng.standard_normal((2, 3)).astype(dtype)]
    ref = [a.copy() for a in params]
    opt = fastopt.SGD(params, lr=sched)
    for t in range(1, 8):
        # update t runs at count t - 1, the updates already applied (optax's and torch's count)
        assert opt.lr == pytest.approx(0.1 / np.sqrt(max(t - 1, 1)), rel=1e-15)
        if t == 5:
            opt.end_epoch()                              # epochs do not move a step schedule
            assert opt.lr == pytest.approx(0.1 / 2, rel=1e-15)
        grads = grads_like(params, rng)
        assert opt.step(grads) is True
        for r, g in zip(ref, grads):
            fastopt.sgd_step(r, g, lr=sched(t - 1))     # the lr of update t
        for p, r in zip(params, ref):
            np.testing.assert_array_equal(p, r)


def test_callable_learning_rates(rng):
    # a plain callable counts epochs; a callable with per="step" counts steps
    params = [np.zeros(2)]
    opt = fastopt.SGD(params, lr=lambda e: 0.1 * 0.5 ** e)
    assert opt.lr == 0.1
    opt.end_epoch()
    assert opt.lr == 0.05

    def per_step(t):
        return 0.01 * t

    per_step.per = "step"
    opt = fastopt.SGD([np.zeros(2)], lr=per_step)
    assert opt.lr == 0.0                       # count 0: no update applied yet
    opt.step([np.ones(2)])
    assert opt.lr == 0.01
    opt.step([np.ones(2)])
    assert opt.lr == pytest.approx(0.02)


def test_constant_lr_attribute():
    opt = fastopt.Adam([np.zeros(2)], lr=0.003)
    assert opt.lr == 0.003
    opt.step([np.ones(2)])
    opt.end_epoch()
    assert opt.lr == 0.003
    assert fastopt.Adam([np.zeros(2)]).lr == 1e-3
    assert fastopt.RMSprop([np.zeros(2)]).lr == 1e-3
    assert fastopt.AdamW([np.zeros(2)]).lr == 1e-3


# ------------------------------------------------------------------------------------------------
# One native call per step, equal to a loop of kernel calls; threads.
# ------------------------------------------------------------------------------------------------

def many_params(rng):
    """200 small arrays (shapes 0-d to 3-d, sizes 0..40), some above the serial threshold, a view
    that starts at an odd offset, float32 and float64 mixed."""
    arrays = []
    for i in range(200):
        dtype = np.float32 if i % 3 == 0 else np.float64
        kind = i % 5
        n = int(rng.integers(0, 41))
        shape = {0: (n,), 1: (n, 2), 2: (2, 3, max(n // 6, 1)), 3: (), 4: (1, n)}[kind]
        arrays.append(rng.standard_normal(shape).astype(dtype))
    for n, dtype in [(SERIAL_THRESHOLD + 123, np.float64), (2 * SERIAL_THRESHOLD + 7, np.float32),
                     (3 * SERIAL_THRESHOLD + 13, np.float64)]:
        arrays.append(rng.standard_normal(n).astype(dtype))
    off = np.empty(1001, np.float64)[1:]                   # not 64-byte aligned
    off[...] = rng.standard_normal(1000)
    arrays.append(off.reshape(10, 100))
    return {f"p{i}": a for i, a in enumerate(arrays)}


@pytest.mark.parametrize("cls_name, kw", OPTION_PARAMS)
def test_step_equals_loop_of_kernel_calls_bitwise(cls_name, kw, rng):
    params = many_params(rng)
    keys = list(params)
    loop_params = [params[k].copy() for k in keys]
    opt = CLASSES[cls_name](params, **kw)
    loop_state = [{s: np.zeros_like(params[k]) for s in opt.state[k]} for k in keys]
    for step in range(1, 4):
        grads = {k: rng.standard_normal(a.shape).astype(a.dtype) for k, a in params.items()}
        opt.step(grads)
        kernel_loop_step(cls_name, kw, loop_params, [grads[k] for k in keys], loop_state, step)
        for k, lp, ls in zip(keys, loop_params, loop_state):
            assert params[k].tobytes() == lp.tobytes(), f"{k} differs at step {step}"
            for s in ls:
                assert opt.state[k][s].tobytes() == ls[s].tobytes(), \
                    f"state {k}/{s} differs at step {step}"


def run_steps(cls_name, kw, n_steps, seed, threads):
    rng = np.random.default_rng(seed)
    params = many_params(rng)
    grads = [{k: rng.standard_normal(a.shape).astype(a.dtype) for k, a in params.items()}
             for _ in range(n_steps)]
    with num_threads(threads):
        opt = CLASSES[cls_name](params, **kw)
        for g in grads:
            opt.step(g)
    return params, opt.state


@pytest.mark.parametrize("small_threshold", [False, True])
@pytest.mark.parametrize("cls_name, kw", OPTION_PARAMS)
def test_bitwise_identical_for_1_and_2_threads(cls_name, kw, small_threshold, serial_threshold):
    if small_threshold:
        serial_threshold(0)        # every call threads, even across the tiny arrays
    p1, s1 = run_steps(cls_name, kw, 3, 7, threads=1)
    p2, s2 = run_steps(cls_name, kw, 3, 7, threads=2)
    for k in p1:
        assert p1[k].tobytes() == p2[k].tobytes(), k
        for s in s1[k]:
            assert s1[k][s].tobytes() == s2[k][s].tobytes(), (k, s)


class CountingKernels:
    """Stands in for the kernels module and records the name of every function called."""

    def __init__(self, mod):
        self._mod = mod
        self.calls = []

    def __getattr__(self, name):
        attr = getattr(self._mod, name)
        if not callable(attr):
            return attr

        def wrapper(*args, **kwargs):
            self.calls.append(name)
            return attr(*args, **kwargs)
        return wrapper


@pytest.mark.parametrize("cls_name, kw", OPTION_PARAMS)
def test_one_native_call_per_step(cls_name, kw, rng, monkeypatch):
    params = many_params(rng)
    opt = CLASSES[cls_name](params, **kw)
    counter = CountingKernels(optimizers_module._k)
    monkeypatch.setattr(optimizers_module, "_k", counter)
    grads = grads_like(params, rng)
    for _ in range(2):
        counter.calls.clear()
        opt.step(grads)
        assert len(counter.calls) == 1, counter.calls
        assert counter.calls[0].endswith("_multi"), counter.calls
    # with the finiteness check: one read pass, then still one update call
    counter.calls.clear()
    assert opt.step(grads, skip_if_nonfinite=True) is True
    updates = [c for c in counter.calls if c != "all_finite_multi"]
    assert counter.calls.count("all_finite_multi") == 1 and len(updates) == 1, counter.calls


# ------------------------------------------------------------------------------------------------
# Parameters and gradients: forms, in-place updates.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls_name, kw", OPTION_PARAMS)
def test_gradient_forms_give_the_same_result(cls_name, kw, rng):
    # dict parameters take course keys ("dW1") or the parameters' own keys; list (or tuple)
    # parameters take a list or tuple in parameter order
    init = course_params(rng, np.float64, dtype_b2=np.float32)
    gseq = [grads_like(init, rng) for _ in range(3)]
    results = []
    for form in ("course_keys", "same_keys", "list", "tuple"):
        if form.endswith("keys"):
            params = copy_params(init)
        else:
            params = [a.copy() for a in init.values()]
            if form == "tuple":
                params = tuple(params)
        opt = CLASSES[cls_name](params, **kw)
        for g in gseq:
            if form == "course_keys":
                grads = g
            elif form == "same_keys":
                grads = {k[1:]: a for k, a in reversed(list(g.items()))}   # order irrelevant
            elif form == "list":
                grads = list(g.values())
            else:
                grads = tuple(g.values())
            assert opt.step(grads) is True
        vals = params.values() if isinstance(params, dict) else params
        results.append([a.tobytes() for a in vals])
        assert set(opt.state) == ({"W1", "b1", "W2", "b2"} if form.endswith("keys")
                                  else {0, 1, 2, 3})
    assert all(r == results[0] for r in results[1:])


def test_params_are_updated_in_place(rng):
    params = course_params(rng)
    ids = {k: id(a) for k, a in params.items()}
    before = copy_params(params)
    opt = fastopt.Adam(params, lr=0.01)
    opt.step(grads_like(params, rng))
    for k, a in params.items():
        assert id(a) == ids[k]
        assert not np.array_equal(a, before[k])
    assert opt.params.keys() == params.keys()
    assert all(opt.params[k] is params[k] for k in params)
    lst = [np.ones(3), np.ones((2, 2))]
    opt = fastopt.SGD(lst, lr=0.5)
    opt.step([np.ones(3), np.ones((2, 2))])
    np.testing.assert_array_equal(lst[0], 0.5)
    assert opt.params[0] is lst[0] and isinstance(opt.params, list)


def test_counters_and_end_epoch(rng):
    params = course_params(rng)
    opt = fastopt.Adam(params, lr=0.01)
    assert (opt.step_count, opt.epoch, opt.skipped_steps) == (0, 0, 0)
    for i in range(3):
        assert opt.step(grads_like(params, rng)) is True
        assert opt.step_count == i + 1
    opt.end_epoch()
    opt.end_epoch()
    assert (opt.step_count, opt.epoch) == (3, 2)


# ------------------------------------------------------------------------------------------------
# State arrays.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls_name, kw", OPTION_PARAMS)
def test_state_arrays_aligned_zeroed_named(cls_name, kw, rng):
    params = course_params(rng, np.float64, dtype_b2=np.float32)
    params["odd"] = np.empty(38, np.float64)[1:].reshape(37)   # a misaligned parameter
    params["odd"][...] = 1.0
    opt = CLASSES[cls_name](params, **kw)
    assert set(opt.state) == set(params)
    for k, p in params.items():
        assert set(opt.state[k]) == expected_slots(cls_name, kw)
        for s, a in opt.state[k].items():
            assert a.ctypes.data % 64 == 0, (k, s)
            assert a.shape == p.shape and a.dtype == p.dtype, (k, s)
            assert a.flags.c_contiguous and a.flags.writeable
            assert not a.any(), (k, s)
            assert not np.shares_memory(a, p)
    all_state = [a for slots in opt.state.values() for a in slots.values()]
    for i, a in enumerate(all_state):
        for b in all_state[i + 1:]:
            assert not np.shares_memory(a, b)
    # the state the step writes is the state one reads
    opt.step(grads_like(params, rng))
    if expected_slots(cls_name, kw):
        assert any(a.any() for slots in opt.state.values() for a in slots.values())


def test_state_readable_as_documented(rng):
    params = {"W1": np.zeros(3)}
    opt = fastopt.Adam(params, lr=0.1, beta1=0.5, beta2=0.75)
    opt.step({"dW1": np.full(3, 2.0)})
    np.testing.assert_allclose(opt.state["W1"]["m"], 1.0)
    np.testing.assert_allclose(opt.state["W1"]["v"], 1.0)
    opt = fastopt.RMSprop([np.zeros(2)], lr=0.1, beta=0.5, centered=True, momentum=0.9)
    opt.step([np.full(2, 2.0)])
    np.testing.assert_allclose(opt.state[0]["sq_avg"], 2.0)
    np.testing.assert_allclose(opt.state[0]["grad_avg"], 1.0)
    assert opt.state[0]["momentum_buf"].any()


# ------------------------------------------------------------------------------------------------
# Malformed steps raise before anything changes.
# ------------------------------------------------------------------------------------------------

STEP_ERRORS = {
    # name: (make bad grads from good course-keyed grads, exception, message pattern)
    "missing_key": (lambda g: {k: a for k, a in g.items() if k != "db2"}, ValueError,
                    r"no gradient for parameter 'b2'"),
    "extra_key": (lambda g: {**g, "dW9": np.ones(2)}, ValueError, r"dW9"),
    "both_course_and_plain_key": (lambda g: {**g, "b2": g["db2"].copy()}, ValueError,
                                  r"match no parameter"),
    "shape": (lambda g: {**g, "db2": np.ones((1, 3), g["db2"].dtype)}, ValueError,
              r"shape.*b2|b2.*shape"),
    "dtype": (lambda g: {**g, "db2": g["db2"].astype(np.float64 if g["db2"].dtype == np.float32
                                                     else np.float32)},
              TypeError, r"dtype"),
    "int_grad": (lambda g: {**g, "db2": np.ones((3, 1), np.int64)}, TypeError, r"dtype"),
    "not_an_array": (lambda g: {**g, "db2": [[1.0], [2.0], [3.0]]}, TypeError,
                     r"numpy.ndarray"),
    "non_contiguous": (lambda g: {**g, "db2": np.ones((3, 2), g["db2"].dtype)[:, :1]},
                       ValueError, r"contiguous"),
    "none": (lambda g: None, TypeError, r"dict"),
}


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("error", list(STEP_ERRORS))
@pytest.mark.parametrize("cls_name, kw", [
    pytest.param("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2), id="SGD-momentum"),
    pytest.param("SGD", dict(lr=0.1), id="SGD"),
    pytest.param("Momentum", dict(lr=0.1), id="Momentum"),
    pytest.param("RMSprop", dict(lr=0.1, centered=True, momentum=0.5), id="RMSprop-all"),
    pytest.param("Adam", dict(lr=0.1, amsgrad=True), id="Adam-amsgrad"),
    pytest.param("AdamW", dict(lr=0.1), id="AdamW"),
])
def test_bad_grads_raise_before_any_change(cls_name, kw, error, skip, rng):
    params = course_params(rng, np.float64, dtype_b2=np.float32)
    opt = CLASSES[cls_name](params, **kw)
    for _ in range(2):                                    # non-zero state
        opt.step(grads_like(params, rng))
    make_bad, exc, pattern = STEP_ERRORS[error]
    good = grads_like(params, rng)
    bad = make_bad(good)
    snap = snapshot(opt)
    with pytest.raises(exc, match=pattern):
        opt.step(bad, skip_if_nonfinite=skip)
    assert_unchanged(opt, snap)
    # and the optimizer still works afterwards
    assert opt.step(good) is True
    assert opt.step_count == 3


@pytest.mark.parametrize("bad", [
    pytest.param(lambda p: p[:2], id="too_short"),
    pytest.param(lambda p: p + [np.ones(2)], id="too_long"),
    pytest.param(lambda p: {"0": p[0], "1": p[1], "2": p[2]}, id="dict_for_list"),
    pytest.param(lambda p: p[:2] + [np.ones(7, np.float32)], id="shape_of_last"),
    pytest.param(lambda p: p[:2] + [p[2].astype(np.float32)], id="dtype_of_last"),
])
def test_bad_list_grads_raise_before_any_change(bad, rng):
    params = [rng.standard_normal(5), rng.standard_normal((2, 3)), rng.standard_normal(4)]
    opt = fastopt.Adam(params, lr=0.1)
    opt.step([np.ones_like(a) for a in params])
    snap = snapshot(opt)
    with pytest.raises((TypeError, ValueError)):
        opt.step(bad([rng.standard_normal(a.shape) for a in params]))
    assert_unchanged(opt, snap)


def test_grad_may_be_read_only(rng):
    params = {"W": rng.standard_normal(5)}
    g = rng.standard_normal(5)
    g.flags.writeable = False
    opt = fastopt.Adam(params, lr=0.1)
    assert opt.step({"dW": g}) is True


def test_grad_overlapping_its_parameter_raises(rng):
    W = rng.standard_normal(6)
    opt = fastopt.SGD({"W": W}, lr=0.1)
    snap = snapshot(opt)
    with pytest.raises(ValueError, match="overlap"):
        opt.step({"dW": W})
    assert_unchanged(opt, snap)


# ------------------------------------------------------------------------------------------------
# Constructor validation.
# ------------------------------------------------------------------------------------------------

def ok_params():
    return {"W1": np.ones((2, 3)), "b1": np.zeros((2, 1))}


@pytest.mark.parametrize("cls_name", list(CLASSES))
@pytest.mark.parametrize("lr, exc, pattern", [
    (-0.1, ValueError, r"lr must be a finite number >= 0, got -0\.1"),
    (float("nan"), ValueError, r"lr must be a finite number >= 0"),
    (float("inf"), ValueError, r"lr must be a finite number >= 0"),
    ("0.1", TypeError, r"lr"),
    (None, TypeError, r"lr"),
])
def test_bad_learning_rate(cls_name, lr, exc, pattern):
    with pytest.raises(exc, match=pattern):
        CLASSES[cls_name](ok_params(), lr=lr)


@pytest.mark.parametrize("cls_name, kw, exc, pattern", [
    ("SGD", dict(momentum=1.0), ValueError, r"momentum must be in \[0, 1\), got 1\.0"),
    ("SGD", dict(momentum=-0.1), ValueError, r"momentum must be in \[0, 1\)"),
    ("SGD", dict(dampening=1.5), ValueError, r"dampening must be in \[0, 1\]"),
    ("SGD", dict(dampening=-0.5), ValueError, r"dampening"),
    ("SGD", dict(weight_decay=-1e-3), ValueError, r"weight_decay must be a finite number >= 0"),
    ("SGD", dict(nesterov=True), ValueError,
     r"nesterov=True requires momentum > 0 and dampening = 0"),
    ("SGD", dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError,
     r"nesterov=True requires momentum > 0 and dampening = 0"),
    ("SGD", dict(nesterov=1, momentum=0.9), TypeError, r"nesterov must be True or False"),
    ("SGD", dict(maximize="yes"), TypeError, r"maximize must be True or False"),
    ("SGD", dict(momentum="0.9"), TypeError, r"momentum must be a real number"),
    ("Momentum", dict(beta=1.0), ValueError, r"beta must be in \[0, 1\), got 1\.0"),
    ("Momentum", dict(beta=-0.01), ValueError, r"beta must be in \[0, 1\)"),
    ("Momentum", dict(beta=True), TypeError, r"beta must be a real number"),
    ("RMSprop", dict(beta=1.0), ValueError, r"beta must be in \[0, 1\)"),
    ("RMSprop", dict(eps=-1e-8), ValueError, r"eps must be a finite number >= 0"),
    ("RMSprop", dict(momentum=-0.5), ValueError, r"momentum must be a finite number >= 0"),
    ("RMSprop", dict(weight_decay=-1.0), ValueError, r"weight_decay"),
    ("RMSprop", dict(centered=None), TypeError, r"centered must be True or False"),
    ("RMSprop", dict(eps_inside_sqrt=0), TypeError, r"eps_inside_sqrt must be True or False"),
    ("RMSprop", dict(maximize=1), TypeError, r"maximize must be True or False"),
    ("Adam", dict(beta1=1.0), ValueError, r"beta1 must be in \[0, 1\), got 1\.0"),
    ("Adam", dict(beta2=1.5), ValueError, r"beta2 must be in \[0, 1\), got 1\.5"),
    ("Adam", dict(beta1=-0.1), ValueError, r"beta1 must be in \[0, 1\)"),
    ("Adam", dict(eps=float("nan")), ValueError, r"eps must be a finite number >= 0"),
    ("Adam", dict(weight_decay=-0.1), ValueError, r"weight_decay must be a finite number >= 0"),
    ("Adam", dict(amsgrad=1), TypeError, r"amsgrad must be True or False"),
    ("Adam", dict(eps_inside_sqrt="no"), TypeError, r"eps_inside_sqrt must be True or False"),
    ("Adam", dict(maximize=None), TypeError, r"maximize must be True or False"),
    ("AdamW", dict(beta2=1.0), ValueError, r"beta2 must be in \[0, 1\)"),
    ("AdamW", dict(weight_decay=-0.01), ValueError, r"weight_decay"),
    ("AdamW", dict(amsgrad="yes"), TypeError, r"amsgrad must be True or False"),
])
def test_bad_hyperparameters(cls_name, kw, exc, pattern):
    lr = {"SGD": 0.1, "Momentum": 0.1}.get(cls_name, 1e-3)
    with pytest.raises(exc, match=pattern):
        CLASSES[cls_name](ok_params(), lr=lr, **kw)


def test_adamw_decays_by_default_and_takes_the_eps_modes():
    w = fastopt.AdamW(ok_params())
    assert w.hyper["weight_decay"] == 1e-2 and w.hyper["decoupled_weight_decay"] is True
    a = fastopt.Adam(ok_params())
    assert a.hyper["weight_decay"] == 0.0 and a.hyper["decoupled_weight_decay"] is False
    assert fastopt.AdamW(ok_params(), eps_inside_sqrt=True).hyper["eps_inside_sqrt"] is True
    assert fastopt.AdamW(ok_params(), eps_mode="keras").hyper["eps_mode"] == "keras"
    with pytest.raises(TypeError, match="unexpected keyword argument 'nesterov'"):
        fastopt.AdamW(ok_params(), nesterov=True)
    with pytest.raises(ValueError, match="contradicts"):
        fastopt.Adam(ok_params(), eps_mode="keras", eps_inside_sqrt=True)


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError):
        fastopt.SGD(ok_params(), 0.1, 0.9)
    with pytest.raises(TypeError):
        fastopt.Adam(ok_params(), 0.1, 0.9)


def _noncontig():
    return {"W": np.ones((4, 4))[:, ::2]}


def _readonly():
    a = np.ones(3)
    a.flags.writeable = False
    return {"W": np.ones(2), "b": a}


def _overlapping():
    buf = np.zeros(20)
    return {"a": buf[:10], "b": buf[5:15]}


@pytest.mark.parametrize("cls_name", list(CLASSES))
@pytest.mark.parametrize("make, exc, pattern", [
    pytest.param(lambda: np.ones(3), TypeError,
                 r"params must be a dict of name -> array or a list of arrays, got ndarray "
                 r"\(wrap a single array in a list\)", id="bare_array"),
    pytest.param(lambda: 3.0, TypeError, r"params must be a dict", id="float"),
    pytest.param(lambda: (a for a in [np.ones(2)]), TypeError, r"params must be a dict",
                 id="generator"),
    pytest.param(lambda: {}, ValueError, r"params is empty", id="empty_dict"),
    pytest.param(lambda: [], ValueError, r"params is empty", id="empty_list"),
    pytest.param(_noncontig, ValueError, r"param\['W'\] must be C-contiguous", id="noncontig"),
    pytest.param(_readonly, ValueError, r"param\['b'\] is read-only", id="readonly"),
    pytest.param(lambda: {"W": np.ones(3, np.int64)}, TypeError,
                 r"param\['W'\] must have dtype float32, float64, float16 or bfloat16", id="int"),
    pytest.param(lambda: [np.ones(2), np.ones(2, np.complex64)], TypeError,
                 r"param\[1\] must have dtype float32, float64, float16 or bfloat16",
                 id="complex64"),
    pytest.param(lambda: [np.ones(2), [1.0, 2.0]], TypeError, r"numpy.ndarray", id="list_elem"),
    pytest.param(_overlapping, ValueError, r"overlap", id="overlapping"),
    pytest.param(lambda: [np.ones(3)] * 2, ValueError, r"overlap", id="same_array_twice"),
    pytest.param(lambda: {"W": np.ones(4, dtype=">f8")}, TypeError, r"byte order",
                 id="byteswapped"),
])
def test_bad_params(cls_name, make, exc, pattern):
    lr = 0.1
    with pytest.raises(exc, match=pattern):
        CLASSES[cls_name](make(), lr=lr)


def test_overlapping_params_are_not_written():
    buf = np.arange(20.0)
    saved = buf.copy()
    with pytest.raises(ValueError):
        fastopt.SGD({"a": buf[:10], "b": buf[9:19]}, lr=0.1)
    np.testing.assert_array_equal(buf, saved)


def test_disjoint_views_of_one_buffer_are_fine():
    buf = np.zeros(20)
    params = {"a": buf[:10], "b": buf[10:]}
    opt = fastopt.SGD(params, lr=1.0)
    opt.step({"da": np.ones(10), "db": np.full(10, 2.0)})
    np.testing.assert_array_equal(buf[:10], -1.0)
    np.testing.assert_array_equal(buf[10:], -2.0)


def test_repr_names_class_and_hyperparameters(rng):
    opt = fastopt.Adam(course_params(rng), lr=0.01, amsgrad=True)
    r = repr(opt)
    assert r.startswith("Adam(") and "amsgrad=True" in r and "step_count=0" in r


def test_list_grads_for_dict_params_follow_key_order(rng):
    # "grads may be ... a list in the same order": for dict parameters, the order of the keys
    params_a = course_params(rng, np.float64)
    params_b = {k: v.copy() for k, v in params_a.items()}
    opt_a, opt_b = fastopt.Adam(params_a, lr=0.1), fastopt.Adam(params_b, lr=0.1)
    for _ in range(3):
        g = grads_like(params_a, rng)
        opt_a.step(g)
        opt_b.step([g[f"d{k}"] if f"d{k}" in g else g[k] for k in params_b])
    for k in params_a:
        assert params_a[k].tobytes() == params_b[k].tobytes()


# ------------------------------------------------------------------------------------------------
# The per-optimizer Plan: arrays checked once, gradients checked (and overlap-searched) per step.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls_name", list(CLASSES))
def test_grad_that_is_another_parameter_raises_and_changes_nothing(cls_name, rng):
    params = [rng.standard_normal((4, 3)) for _ in range(3)]
    opt = CLASSES[cls_name](params, lr=0.1)
    opt.step([rng.standard_normal((4, 3)) for _ in range(3)])
    snap = snapshot(opt)
    with pytest.raises(ValueError, match="overlap"):
        opt.step([rng.standard_normal((4, 3)), params[2], rng.standard_normal((4, 3))])
    assert_unchanged(opt, snap)


@pytest.mark.parametrize("cls_name", ["Momentum", "RMSprop", "Adam"])
def test_grad_overlapping_another_parameters_state_raises(cls_name, rng):
    params = [rng.standard_normal(8) for _ in range(2)]
    opt = CLASSES[cls_name](params, lr=0.1)
    slot = next(iter(opt.state[1]))
    state = opt.state[1][slot]
    grads = [np.ascontiguousarray(rng.standard_normal(8)), state]    # grad 0 fine, grad 1 = state
    snap = snapshot(opt)
    with pytest.raises(ValueError, match="overlap"):
        opt.step(grads)
    assert_unchanged(opt, snap)
    # a view into the middle of a state buffer, given as the gradient of the other parameter
    buf = opt.state[0][slot]
    with pytest.raises(ValueError, match="overlap"):
        opt.step([rng.standard_normal(8), buf[:8]])
    assert_unchanged(opt, snap)


def test_parameter_made_read_only_after_construction_raises(rng):
    params = {"W1": rng.standard_normal((3, 3)), "b1": rng.standard_normal((3, 1))}
    opt = fastopt.Adam(params, lr=0.1)
    params["b1"].flags.writeable = False
    snap = snapshot(opt)
    with pytest.raises(ValueError, match=r"param\['b1'\].*read-only"):
        opt.step(grads_like(params, rng))
    assert_unchanged(opt, snap)


def test_plan_refuses_state_lists_and_missing_slots(rng):
    from fastopt._dispatch import kernels as k
    params = [rng.standard_normal(5)]
    ms, vs = [np.zeros(5)], [np.zeros(5)]
    plan = k.Plan(params, ("param", "grad", "m", "v", "v_max"), (ms, vs))
    grads = [rng.standard_normal(5)]
    before = params[0].copy()
    with pytest.raises(ValueError, match="leave the state lists out"):
        k.adam_step_multi(plan, grads, ms, vs, step=1)
    with pytest.raises(ValueError, match="lacks a state list"):
        k.adam_step_multi(plan, grads, step=1, amsgrad=True)      # no v_max in this plan
    assert params[0].tobytes() == before.tobytes()
    k.adam_step_multi(plan, grads, step=1, lr=0.1)
    expected, m, v = before.copy(), np.zeros(5), np.zeros(5)
    fastopt.adam_step(expected, grads[0], m, v, step=1, lr=0.1)
    assert params[0].tobytes() == expected.tobytes()
    assert ms[0].tobytes() == m.tobytes() and vs[0].tobytes() == v.tobytes()
