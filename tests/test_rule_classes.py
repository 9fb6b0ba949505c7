"""The optimizer classes generated from the registry (Rule.cls), every one of them: a step equals a
loop of per-array kernel calls bit for bit, for 1 and 2 threads; the state saves and resumes bit
for bit (scalar state included); the keywords are the kernel's, checked the same way."""

import inspect

import numpy as np
import pytest

import fastopt
from fastopt import _registry, reference

from conftest import num_threads

RULES = [r for r in _registry.RULES if r.cls]
CARRIED = {r.name: {name for name, _ in r.carry} for r in RULES}


def class_kw(rule):
    """The rule's example hyperparameters with every operand in use, as class keywords."""
    kw = _registry.with_all_operands(rule)
    kw.pop("lr", None)
    for name in CARRIED[rule.name]:
        kw.pop(name, None)
    kw["weight_decay"] = 0.05
    return kw


def make_params(rng):
    shapes = [(3, 4), (17,), (), (0,), (2, 1, 5), (1000,)]
    return {f"p{i}": rng.standard_normal(s).astype(np.float32 if i % 2 else np.float64)
            for i, s in enumerate(shapes)}


def ids(rules):
    return [pytest.param(r, id=r.cls) for r in rules]


def test_every_rule_with_a_class_is_public():
    for r in RULES:
        assert getattr(fastopt, r.cls) is getattr(fastopt.optimizers, r.cls)
        assert r.cls in fastopt.__all__
    assert {"Lion", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta"} <= {r.cls for r in RULES}


@pytest.mark.parametrize("rule", ids(RULES))
def test_signature_is_the_kernels(rule):
    sig = inspect.signature(getattr(fastopt, rule.cls))
    kernel = inspect.signature(getattr(fastopt, rule.twin))
    ours = {k: p.default for k, p in sig.parameters.items()
            if p.kind == p.KEYWORD_ONLY}
    theirs = {k: p.default for k, p in kernel.parameters.items() if k in ours}
    # every class keyword is a kernel keyword with the same default (lr and the class-only ones
    # aside), and every kernel hyperparameter but lr and the carried ones is a class keyword
    class_only = {hp.name for _, hp in rule.state_init}
    assert {k: v for k, v in ours.items() if k not in class_only} == theirs
    hypers = {hp.name for hp in rule.hypers} - {"lr"} - CARRIED[rule.name]
    assert hypers <= set(ours)


@pytest.mark.parametrize("rule", ids(RULES))
def test_step_equals_loop_of_kernel_calls_bitwise(rule, rng):
    params = make_params(rng)
    keys = list(params)
    loop = {k: a.copy() for k, a in params.items()}
    kw = class_kw(rule)
    opt = getattr(fastopt, rule.cls)(params, lr=0.01, **kw)
    loop_state = {k: {s: a.copy() for s, a in opt.state[k].items()} for k in keys}
    carry = {name: v for name, v in rule.carry}
    kernel = getattr(fastopt, rule.twin)
    kernel_kw = {k: v for k, v in kw.items() if k not in {hp.name for _, hp in rule.state_init}}
    names = _registry.operands_in_use(rule, kw)
    for step in range(1, 6):
        grads = {k: rng.standard_normal(a.shape).astype(a.dtype) for k, a in params.items()}
        opt.step(grads)
        for k in keys:
            st = [loop_state[k][n] for n in names[2:]]
            extra = {"step": step} if rule.stepped else {}
            optional = {op.name for op in rule.operands if op.needs}
            pos = [loop[k], grads[k]] + [a for n, a in zip(names[2:], st) if n not in optional]
            kwo = {n: a for n, a in zip(names[2:], st) if n in optional}
            kernel(*pos, **kwo, lr=0.01, **kernel_kw, **carry, **extra)
        for name in carry:
            carry[name] = getattr(reference, rule.name + "_carry")(carry[name], step=step,
                                                                    **kw)
        for k in keys:
            assert params[k].tobytes() == loop[k].tobytes(), f"{k} at step {step}"
            for s in loop_state[k]:
                assert opt.state[k][s].tobytes() == loop_state[k][s].tobytes(), (k, s, step)
        assert opt._carry == carry


@pytest.mark.parametrize("rule", ids(RULES))
def test_one_and_two_threads_bitwise(rule):
    out = []
    for threads in (1, 2):
        rng = np.random.default_rng(7)
        params = {"a": rng.standard_normal(300_001).astype(np.float32),
                  "b": rng.standard_normal(1001)}
        grads = [{k: rng.standard_normal(a.shape).astype(a.dtype) for k, a in params.items()}
                 for _ in range(3)]
        with num_threads(threads):
            opt = getattr(fastopt, rule.cls)(params, lr=0.01, **class_kw(rule))
            for g in grads:
                opt.step(g)
        out.append([params[k].tobytes() for k in params]
                   + [a.tobytes() for k in params for a in opt.state[k].values()])
    assert out[0] == out[1]


def _resume_case(cls, kw, tmp_path, rng, n_before=3, n_after=4):
    params = make_params(rng)
    grads = [{k: rng.standard_normal(a.shape).astype(a.dtype) for k, a in params.items()}
             for _ in range(n_before + n_after)]
    opt = cls(params, lr=0.01, **kw)
    for g in grads[:n_before]:
        opt.step(g)
    fastopt.save_state(tmp_path / "ckpt.npz", opt)
    snapshot = {k: a.copy() for k, a in params.items()}
    for g in grads[n_before:]:
        opt.step(g)
    # a fresh optimizer on the parameters as they were at the save: the same steps, bit for bit
    opt2 = cls(snapshot, lr=0.01, **kw)
    fastopt.load_state(tmp_path / "ckpt.npz", opt2)
    assert opt2.step_count == n_before
    for g in grads[n_before:]:
        opt2.step(g)
    for k in params:
        assert snapshot[k].tobytes() == params[k].tobytes(), k
        for s in opt.state[k]:
            assert opt.state[k][s].tobytes() == opt2.state[k][s].tobytes(), (k, s)
    assert opt._carry == opt2._carry
    return opt


@pytest.mark.parametrize("rule", ids(RULES))
def test_save_and_load_resume_bitwise(rule, tmp_path, rng):
    opt = _resume_case(getattr(fastopt, rule.cls), class_kw(rule), tmp_path, rng)
    if rule.carry:
        assert set(opt.state_dict()["scalars"]) == CARRIED[rule.name]


def test_schedule_free_save_and_load_resume_bitwise(tmp_path, rng):
    opt = _resume_case(fastopt.ScheduleFreeAdamW, dict(warmup_steps=2, weight_decay=0.01),
                       tmp_path, rng)
    assert set(opt.state_dict()["scalars"]) == {"weight_sum", "lr_max"}


@pytest.mark.parametrize("rule", ids(RULES))
def test_unknown_keyword_raises(rule):
    with pytest.raises(TypeError, match="unexpected keyword argument 'betas'"):
        getattr(fastopt, rule.cls)([np.zeros(3)], betas=(0.9, 0.99))


@pytest.mark.parametrize("rule", ids(RULES))
def test_bad_hyperparameters_raise_and_leave_the_arrays_untouched(rule):
    p = np.arange(4.0)
    before = p.copy()
    for hp in rule.hypers:
        if hp.name in ("lr",) or hp.name in CARRIED[rule.name]:
            continue
        bad = {"nonneg": -1.0, "beta": 1.0, "bool": 1, "unit": 2.0, "unit_or_none": 2.0,
               "eps_mode": "Keras"}[hp.kind]
        with pytest.raises((TypeError, ValueError), match=hp.name):
            getattr(fastopt, rule.cls)([p], **{hp.name: bad})
        assert p.tobytes() == before.tobytes()


def test_adagrad_initial_accumulator_value(rng):
    p = rng.standard_normal(5)
    g = rng.standard_normal(5)
    opt = fastopt.Adagrad([p.copy()], lr=0.1, initial_accumulator_value=0.5)
    np.testing.assert_array_equal(opt.state[0]["sum_sq"], 0.5)
    opt.step([g])
    # hand-derived: s = 0.5 + g^2 ; p - 0.1 g / (sqrt(s) + 1e-10)
    expect = p - 0.1 * g / (np.sqrt(0.5 + g * g) + 1e-10)
    np.testing.assert_allclose(opt.params[0], expect, rtol=1e-15)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        fastopt.Adagrad([p], initial_accumulator_value=-1.0)


def test_nadam_carries_mu_product(rng):
    p = [rng.standard_normal(4)]
    opt = fastopt.NAdam(p, beta1=0.9, momentum_decay=4e-3)
    assert opt._carry == {"mu_product": 1.0}
    opt.step([np.ones(4)])
    mu1 = 0.9 * (1 - 0.5 * 0.96 ** 0.004)
    assert opt._carry["mu_product"] == mu1
    opt.step([np.ones(4)])
    assert opt._carry["mu_product"] == mu1 * (0.9 * (1 - 0.5 * 0.96 ** 0.008))
    # a skipped step carries nothing
    opt.step([np.full(4, np.nan)], skip_if_nonfinite=True)
    assert opt.step_count == 2 and opt._carry["mu_product"] == mu1 * (
        0.9 * (1 - 0.5 * 0.96 ** 0.008))


def test_scalar_state_is_validated_on_load(rng):
    opt = fastopt.NAdam([rng.standard_normal(3)])
    opt.step([np.ones(3)])
    sd = opt.state_dict()
    for bad in ({}, {"mu_product": "x"}, {"mu_product": float("nan")}, {"other": 0.5}):
        broken = dict(sd, scalars=bad)
        with pytest.raises(ValueError, match="scalars"):
            opt.load_state_dict(broken)
    broken = dict(sd)
    del broken["scalars"]
    with pytest.raises(ValueError, match="scalars"):
        opt.load_state_dict(broken)
    assert opt._carry == sd["scalars"]


def test_old_state_without_the_new_hyperparameters_loads_as_their_defaults(rng):
    # a file written before decoupled_weight_decay / fully_decoupled / eps_mode existed
    for cls in (fastopt.Adam, fastopt.AdamW, fastopt.RMSprop):
        opt = cls([rng.standard_normal(3)])
        sd = opt.state_dict()
        for k in ("decoupled_weight_decay", "fully_decoupled", "eps_mode"):
            sd["hyper"].pop(k, None)
        opt.load_state_dict(sd)
    # but not as a different value
    opt = fastopt.Adam([rng.standard_normal(3)], eps_mode="keras")
    sd = opt.state_dict()
    del sd["hyper"]["eps_mode"]
    with pytest.raises(ValueError, match="hyperparameters"):
        opt.load_state_dict(sd)
