"""The conventions every step rule shares: the three weight-decay forms (L2, decoupled, fully
decoupled) and, for the Adam family, eps_mode.  Registry-driven: a new rule is covered."""

import math

import numpy as np
import pytest

import fastopt
from fastopt import _registry

from conftest import BASE_HYPER, call

DECAYING = [r.name for r in _registry.RULES if _registry.has_hyper(r, "decoupled_weight_decay")]
EPS_RULES = [r.name for r in _registry.RULES if _registry.has_hyper(r, "eps_mode")]


def arrays(rule, dtype, rng, n=101):
    names = _registry.operands_in_use(_registry.BY_NAME[rule], BASE_HYPER[rule])
    out = {names[0]: rng.standard_normal(n).astype(dtype),
           names[1]: rng.standard_normal(n).astype(dtype)}
    for s in names[2:]:
        out[s] = np.abs(rng.standard_normal(n)).astype(dtype)   # a state away from zero
    return out


def copy(a):
    return {k: v.copy() for k, v in a.items()}


def test_every_step_rule_has_the_weight_decay_forms():
    assert set(DECAYING) == {r.name for r in _registry.RULES if r.scaled} - {
        "schedule_free_adamw"}                 # its decay is the reference's own, at y
    assert set(EPS_RULES) == {"adam", "nadam", "radam"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fully", [False, True])
@pytest.mark.parametrize("rule", DECAYING)
def test_decoupled_is_shrink_then_the_plain_step_bitwise(rule, fully, dtype, rng):
    a = arrays(rule, dtype, rng)
    b = copy(a)
    lead = _registry.BY_NAME[rule].operands[0].name
    hyper = dict(BASE_HYPER[rule])
    lr, wd = hyper["lr"], 0.3
    call(fastopt, rule, a, {**hyper, "weight_decay": wd, "decoupled_weight_decay": not fully,
                            "fully_decoupled": fully}, step=3)
    factor = (1.0 - wd) if fully else (1.0 - lr * wd)
    b[lead] = (b[lead] * dtype(factor)).astype(dtype)
    call(fastopt, rule, b, {**hyper, "weight_decay": 0.0, "decoupled_weight_decay": False},
         step=3)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", DECAYING)
def test_l2_is_the_gradient_plus_wd_param_bitwise(rule, dtype, rng):
    a = arrays(rule, dtype, rng)
    b = copy(a)
    r = _registry.BY_NAME[rule]
    lead, inp = r.operands[0].name, r.operands[1].name
    hyper = dict(BASE_HYPER[rule])
    call(fastopt, rule, a, {**hyper, "weight_decay": 0.3, "decoupled_weight_decay": False},
         step=2)
    b[inp] = (b[inp] + dtype(0.3) * b[lead]).astype(dtype)
    call(fastopt, rule, b, {**hyper, "weight_decay": 0.0, "decoupled_weight_decay": False},
         step=2)
    for k in a:
        if k != inp:
            assert a[k].tobytes() == b[k].tobytes(), k


def test_lion_decays_decoupled_by_default():
    p = np.array([2.0])
    fastopt.lion_step(p, np.array([1.0]), np.zeros(1), lr=0.1, weight_decay=0.5)
    assert p[0] == 2.0 * (1 - 0.1 * 0.5) - 0.1


def test_fully_decoupled_does_not_scale_with_lr():
    # optimi's form: p * (1 - wd), whatever lr
    for lr in (0.0, 0.1, 1.0):
        p = np.array([2.0])
        fastopt.sgd_step(p, np.array([0.0]), lr=lr, weight_decay=0.25, fully_decoupled=True)
        assert p[0] == 1.5


def test_weight_decay_forms_through_the_classes(rng):
    # SGD, RMSprop and Adagrad take decoupled_weight_decay like the kernels (Keras' form)
    p0 = rng.standard_normal(7)
    g = rng.standard_normal(7)
    a, b = p0.copy(), p0 * (1 - 0.1 * 0.2)
    fastopt.SGD([a], lr=0.1, weight_decay=0.2, decoupled_weight_decay=True).step([g])
    fastopt.SGD([b], lr=0.1).step([g])
    assert a.tobytes() == b.tobytes()
    a, b = p0.copy(), p0 * (1 - 0.01 * 0.2)
    fastopt.RMSprop([a], lr=0.01, weight_decay=0.2, decoupled_weight_decay=True).step([g])
    fastopt.RMSprop([b], lr=0.01).step([g])
    assert a.tobytes() == b.tobytes()


# -- eps_mode ---------------------------------------------------------------------------------

def test_keras_epsilon_hat_first_step_by_hand():
    # Keras 3 Adam: alpha = lr sqrt(1 - b2^t) / (1 - b1^t); p -= alpha m / (sqrt(v) + eps).
    # t = 1, g = 1, m = 0.1, v = 0.001, lr = 0.5, eps = 2:
    #   keras: 0.5 * sqrt(0.001) / 0.1 * 0.1 / (sqrt(0.001) + 2) = 0.00778 (and torch: 1/6)
    out = {}
    for mode in ("keras", "torch", "inside"):
        p = np.array([1.0])
        fastopt.adam_step(p, np.array([1.0]), np.zeros(1), np.zeros(1), step=1, lr=0.5, eps=2.0,
                          eps_mode=mode)
        out[mode] = 1.0 - p[0]
    s = math.sqrt(0.001)
    assert out["keras"] == pytest.approx(0.5 * s / (s + 2.0), rel=1e-14)
    assert out["torch"] == pytest.approx(0.5 / 3.0, rel=1e-14)
    assert out["inside"] == pytest.approx(0.5 / math.sqrt(3.0), rel=1e-14)


@pytest.mark.parametrize("rule", EPS_RULES)
def test_eps_inside_sqrt_is_the_alias_of_eps_mode_inside(rule, rng):
    a = arrays(rule, np.float64, rng)
    b, c = copy(a), copy(a)
    hyper = dict(BASE_HYPER[rule])
    call(fastopt, rule, a, {**hyper, "eps_mode": "inside"}, step=8)
    call(fastopt, rule, b, {**hyper, "eps_inside_sqrt": True}, step=8)
    call(fastopt, rule, c, hyper, step=8)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    lead = _registry.BY_NAME[rule].operands[0].name
    assert a[lead].tobytes() != c[lead].tobytes()


@pytest.mark.parametrize("rule", EPS_RULES)
def test_eps_inside_sqrt_contradicting_keras_raises_and_changes_nothing(rule, rng):
    a = arrays(rule, np.float64, rng)
    before = {k: v.tobytes() for k, v in a.items()}
    with pytest.raises(ValueError, match="contradicts"):
        call(fastopt, rule, a, {**BASE_HYPER[rule], "eps_mode": "keras",
                                "eps_inside_sqrt": True}, step=2)
    assert {k: v.tobytes() for k, v in a.items()} == before


@pytest.mark.parametrize("rule", EPS_RULES)
def test_eps_modes_differ(rule, rng):
    # each mode changes the step (RAdam: torch and keras are one form, torch's own)
    out = {}
    for mode in ("torch", "inside", "keras"):
        a = arrays(rule, np.float64, np.random.default_rng(1))
        call(fastopt, rule, a, {**BASE_HYPER[rule], "eps_mode": mode}, step=8)
        out[mode] = a[_registry.BY_NAME[rule].operands[0].name].tobytes()
    assert out["torch"] != out["inside"]
    assert (out["torch"] == out["keras"]) == (rule == "radam")
