"""The optimizer classes on 16-bit storage: state_dtype, master_weights, kahan, rounding, seed;
and the fused gradient scaling and clipping of ``step(grad_scale=, max_norm=)``.

The oracle is ``fastopt.reference.step_exact``, the bit-exact twin of the kernels: a class step
is one multi-array call, whose stochastic-rounding index runs over the arrays concatenated
(``start=`` in the twin).
"""

import numpy as np
import pytest

import fastopt
from fastopt import reference

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
SHAPES = {"W1": (13, 40), "b1": (13,), "W2": (3, 13)}


def bits(a):
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize])


def assert_same_bits(a, b, what=""):
    assert a.dtype == b.dtype, what
    np.testing.assert_array_equal(bits(a), bits(b), err_msg=what)


def make_params(rng, dtype):
    return {k: (rng.standard_normal(s) * 0.5).astype(np.float32).astype(dtype)
            for k, s in SHAPES.items()}


def make_grads(rng, dtype):
    return {k: rng.standard_normal(s).astype(np.float32).astype(dtype) for k, s in SHAPES.items()}


def twin_step(params, grads, state, t, *, rounding="nearest", seed=0, master=False, kahan=False,
              grad_scale=1.0, **hyper):
    """One Adam step of the twin over the arrays in order, the index running across them."""
    start = 0
    for k in SHAPES:
        arrays = {"param": params[k], "grad": grads[k], "m": state[k]["m"], "v": state[k]["v"]}
        reference.step_exact("adam", arrays, step=t, rounding=rounding, seed=seed,
                             master=state[k]["master"] if master else None,
                             compensation=state[k]["compensation"] if kahan else None,
                             grad_scale=grad_scale, start=start, **hyper)
        start += params[k].size


def copy_state(opt):
    return {k: {s: a.copy() for s, a in slots.items()} for k, slots in opt.state.items()}


@pytest.mark.parametrize("pdt", [BF16, np.dtype(np.float16)], ids=["bf16", "f16"])
@pytest.mark.parametrize("options", [
    pytest.param({}, id="f32-state"),
    pytest.param({"state_dtype": "bfloat16"}, id="bf16-state"),
    pytest.param({"state_dtype": "bfloat16", "rounding": "stochastic", "seed": 7},
                 id="bf16-state-stochastic"),
    pytest.param({"master_weights": True}, id="master"),
    pytest.param({"master_weights": True, "rounding": "stochastic", "seed": 3},
                 id="master-stochastic"),
    pytest.param({"kahan": True}, id="kahan"),
])
def test_adamw_class_equals_the_twin(pdt, options, rng):
    params = make_params(rng, pdt)
    twin_params = {k: a.copy() for k, a in params.items()}
    opt = fastopt.AdamW(params, lr=1e-2, weight_decay=0.1, **options)
    twin_state = copy_state(opt)
    for t in range(1, 11):
        grads = make_grads(rng, pdt if t % 2 else np.float32)
        opt.step(grads)
        twin_step(twin_params, grads, twin_state, t, rounding=options.get("rounding", "nearest"),
                  seed=options.get("seed", 0), master=options.get("master_weights", False),
                  kahan=options.get("kahan", False), lr=1e-2, weight_decay=0.1,
                  decoupled_weight_decay=True)
    for k in SHAPES:
        assert_same_bits(params[k], twin_params[k], k)
        for slot in opt.state[k]:
            assert_same_bits(opt.state[k][slot], twin_state[k][slot], f"{k}/{slot}")
    expected_state = np.float32 if options.get("state_dtype") is None else BF16
    assert opt.state["W1"]["m"].dtype == expected_state


def test_master_weights_track_float32_adam_and_round_into_the_param(rng):
    params = make_params(rng, BF16)
    ref = {k: a.astype(np.float32) for k, a in params.items()}
    opt = fastopt.Adam(params, lr=1e-2, master_weights=True)
    ref_opt = fastopt.Adam(ref, lr=1e-2)
    for _ in range(10):
        grads = make_grads(rng, BF16)
        opt.step(grads)
        ref_opt.step({k: g.astype(np.float32) for k, g in grads.items()})
    for k in SHAPES:
        assert_same_bits(opt.state[k]["master"], ref[k], k)
        assert_same_bits(params[k], reference.round_nearest(ref[k].ravel(), BF16)
                         .reshape(ref[k].shape), k)


def test_stochastic_class_steps_are_reproducible_and_seeded(rng):
    p0 = make_params(rng, BF16)
    grads = [make_grads(rng, BF16) for _ in range(5)]

    def run(seed, n_threads):
        params = {k: a.copy() for k, a in p0.items()}
        fastopt.set_num_threads(n_threads)
        try:
            opt = fastopt.Adam(params, lr=1e-3, state_dtype="bfloat16", rounding="stochastic",
                               seed=seed)
            for g in grads:
                opt.step(g)
        finally:
            fastopt.set_num_threads(None)
        return params

    a, b, c = run(1, 1), run(1, 2), run(2, 2)
    for k in SHAPES:
        assert_same_bits(a[k], b[k], k)
    assert any(not np.array_equal(bits(a[k]), bits(c[k])) for k in SHAPES)


# ------------------------------------------------------------------------------------------------
# grad_scale and max_norm, fused into the step.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.5, "near", 1e6], ids=["clipping", "near", "not-clipping"])
@pytest.mark.parametrize("cls", ["SGD", "Adam", "RMSprop"])
def test_max_norm_equals_clip_then_step(cls, dtype, max_norm, rng):
    p_fused = make_params(rng, dtype)
    p_two = {k: a.copy() for k, a in p_fused.items()}
    kw = {"lr": 0.05} if cls != "SGD" else {"lr": 0.05, "momentum": 0.9}
    fused = getattr(fastopt, cls)(p_fused, **kw)
    two = getattr(fastopt, cls)(p_two, **kw)
    for _ in range(5):
        grads = make_grads(rng, dtype)
        before = {k: g.copy() for k, g in grads.items()}
        mn = 0.8 * fastopt.global_norm(grads) if max_norm == "near" else max_norm
        fused.step(grads, max_norm=mn)
        for k in grads:                       # the fused step never writes the gradients
            assert_same_bits(grads[k], before[k], k)
        norm = fastopt.clip_grad_norm(grads, mn)
        two.step(grads)
        assert fused.last_grad_norm == norm
    for k in SHAPES:
        assert_same_bits(p_fused[k], p_two[k], k)


def test_max_norm_norm_is_the_same_for_every_thread_count(rng):
    grads = {"g": rng.standard_normal(300_001).astype(np.float32)}
    norms = []
    for nt in (1, 2, 3):
        fastopt.set_num_threads(nt)
        try:
            opt = fastopt.SGD({"g": np.zeros(300_001, np.float32)}, lr=0.1)
            opt.step(grads, max_norm=1.0)
            norms.append(opt.last_grad_norm)
        finally:
            fastopt.set_num_threads(None)
    assert norms[0] == norms[1] == norms[2] == fastopt.global_norm(grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_scale_equals_scaling_the_gradients_first(dtype, rng):
    p1 = make_params(rng, dtype)
    p2 = {k: a.copy() for k, a in p1.items()}
    o1, o2 = fastopt.Adam(p1, lr=1e-2, maximize=True), fastopt.Adam(p2, lr=1e-2, maximize=True)
    for _ in range(4):
        g = make_grads(rng, dtype)
        o1.step(g, grad_scale=1 / 1024)
        o2.step({k: a * dtype(1 / 1024) for k, a in g.items()})
    for k in SHAPES:
        assert_same_bits(p1[k], p2[k], k)


def test_max_norm_with_grad_scale_clips_the_unscaled_norm(rng):
    p = {"w": np.zeros(1000, np.float32)}
    opt = fastopt.SGD(p, lr=1.0)
    g = {"w": np.full(1000, 64.0, np.float32)}      # scaled by S = 64: true gradient 1.0
    opt.step(g, grad_scale=1 / 64, max_norm=1e6)
    assert opt.last_grad_norm == pytest.approx(np.sqrt(1000.0), rel=1e-12)
    np.testing.assert_array_equal(p["w"], -1.0)


def test_skip_if_nonfinite_with_max_norm_uses_the_same_pass(rng):
    params = make_params(rng, np.float32)
    saved = {k: a.copy() for k, a in params.items()}
    opt = fastopt.Adam(params, lr=0.1)
    g = make_grads(rng, np.float32)
    g["b1"][3] = np.inf
    assert opt.step(g, max_norm=1.0, skip_if_nonfinite=True) is False
    assert opt.step_count == 0 and opt.skipped_steps == 1
    assert not np.isfinite(opt.last_grad_norm)
    for k in SHAPES:
        assert_same_bits(params[k], saved[k], k)


@pytest.mark.parametrize("kw, exc", [
    ({"max_norm": -1.0}, ValueError), ({"max_norm": float("nan")}, ValueError),
    ({"grad_scale": -2.0}, ValueError), ({"grad_scale": float("inf")}, ValueError),
    ({"grad_scale": "1"}, TypeError), ({"clip_eps": -1.0, "max_norm": 1.0}, ValueError),
])
def test_bad_step_scaling_raises_and_changes_nothing(kw, exc, rng):
    params = make_params(rng, np.float32)
    saved = {k: a.copy() for k, a in params.items()}
    opt = fastopt.Adam(params, lr=0.1)
    with pytest.raises(exc):
        opt.step(make_grads(rng, np.float32), **kw)
    assert opt.step_count == 0
    for k in SHAPES:
        assert_same_bits(params[k], saved[k], k)


# ------------------------------------------------------------------------------------------------
# Errors and checkpoints.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pdt, kw, exc, match", [
    (np.float32, {"master_weights": True}, ValueError, "float16/bfloat16"),
    (np.float32, {"kahan": True}, ValueError, "float16/bfloat16"),
    (BF16, {"kahan": True, "rounding": "stochastic"}, ValueError, "nearest"),
    (BF16, {"kahan": True, "master_weights": True}, ValueError, "alternatives"),
    (BF16, {"rounding": "up"}, ValueError, "rounding"),
    (BF16, {"rounding": None}, TypeError, "rounding"),
    (BF16, {"seed": -1}, ValueError, "seed"),
    (BF16, {"seed": 2 ** 64}, ValueError, "seed"),
    (BF16, {"seed": 1.5}, TypeError, "seed"),
    (BF16, {"state_dtype": "int8"}, TypeError, "state_dtype"),
    (BF16, {"state_dtype": "float16"}, TypeError, "m\\['W1'\\] has dtype float16"),
    (np.float32, {"state_dtype": "float16"}, TypeError, "float32 or bfloat16"),
    (np.float64, {"state_dtype": "bfloat16"}, TypeError, "float64"),
    (BF16, {"master_weights": "yes"}, TypeError, "master_weights"),
])
def test_bad_precision_options_raise(pdt, kw, exc, match, rng):
    params = make_params(rng, pdt)
    saved = {k: a.copy() for k, a in params.items()}
    with pytest.raises(exc, match=match):
        fastopt.Adam(params, lr=0.1, **kw)
    for k in SHAPES:
        assert_same_bits(params[k], saved[k], k)


def test_bf16_grads_for_a_float32_param_are_refused(rng):
    params = make_params(rng, np.float32)
    opt = fastopt.Adam(params, lr=0.1)
    with pytest.raises(TypeError, match=r"grad\['W1'\] has dtype bfloat16"):
        opt.step(make_grads(rng, BF16))
    assert opt.step_count == 0


@pytest.mark.parametrize("options", [{"state_dtype": "bfloat16"}, {"master_weights": True},
                                     {"kahan": True}], ids=["bf16-state", "master", "kahan"])
def test_checkpoint_round_trips_16_bit_state_bitwise(options, rng, tmp_path):
    params = make_params(rng, BF16)
    opt = fastopt.AdamW(params, lr=1e-2, **options)
    for _ in range(3):
        opt.step(make_grads(rng, BF16))
    path = tmp_path / "state.npz"
    fastopt.save_state(path, opt)
    other = fastopt.AdamW({k: a.copy() for k, a in params.items()}, lr=1e-2, **options)
    fastopt.load_state(path, other)
    assert other.step_count == 3
    for k in SHAPES:
        assert set(other.state[k]) == set(opt.state[k])
        for slot in opt.state[k]:
            assert_same_bits(other.state[k][slot], opt.state[k][slot], f"{k}/{slot}")
    # a checkpoint of bfloat16 state does not load into float32 state
    plain = fastopt.AdamW({k: a.copy() for k, a in params.items()}, lr=1e-2)
    if options.get("state_dtype"):
        with pytest.raises(ValueError, match="dtype"):
            fastopt.load_state(path, plain)
        assert plain.step_count == 0


def test_clip_grad_norm_scales_bfloat16_gradients_in_float32(rng):
    g32 = rng.standard_normal(5000).astype(np.float32)
    g = g32.astype(BF16)
    expect_norm = float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))
    norm = fastopt.clip_grad_norm([g], max_norm=1.0)
    assert norm == pytest.approx(expect_norm, rel=1e-12)
    coef = np.float32(1.0 / (expect_norm + 1e-6))
    assert_same_bits(g, reference.round_nearest(g32.astype(BF16).astype(np.float32) * coef, BF16))


@pytest.mark.parametrize("dtype", [BF16, np.dtype(np.float16)], ids=["bf16", "f16"])
def test_ewa_and_debias_of_16_bit_input_compute_in_float32(dtype, rng):
    x = rng.standard_normal((50, 3)).astype(np.float32).astype(dtype)
    got = fastopt.ewa(x, beta=0.9)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference.ewa(x.astype(np.float32), beta=0.9), rtol=1e-6)
    d = fastopt.debias(x[0], beta=0.9, step=2)
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, x[0].astype(np.float32) / np.float32(1 - 0.81), rtol=1e-6)


def test_one_plan_type_serves_every_isa_level(rng):
    """The core is built once: a Plan made at import works with every level's loop table (it
    used to be refused by another build with '...or a Plan, got Plan')."""
    from fastopt import _dispatch
    p = [rng.standard_normal(100).astype(np.float32)]
    g = [rng.standard_normal(100).astype(np.float32)]
    m, v = [np.zeros(100, np.float32)], [np.zeros(100, np.float32)]
    plan = _dispatch.kernels.Plan(p, ("param", "grad", "m", "v"), (m, v))
    results = []
    for level in _dispatch.available():
        results.append(p[0].copy())
        _dispatch.load(level).adam_step_multi(plan, g, lr=1e-2)
    assert plan.count == len(_dispatch.available())
    assert not np.array_equal(results[0], p[0])
