"""Tests for fastopt.schedules: hand-derived values, the `per` contract, every error path."""

import doctest
import math
import pickle

import numpy as np
import pytest

import fastopt
from conftest import require_torch
from fastopt import schedules
from fastopt.schedules import (
    Schedule,
    as_schedule,
    constant,
    cosine_decay,
    exponential_decay,
    inverse_sqrt_decay,
    inverse_time_decay,
    join_schedules,
    linear_schedule,
    one_cycle,
    piecewise_constant,
    polynomial_decay,
    step_decay,
    warmup_cosine_decay,
)

# One valid instance of each schedule, built with the given `per` (the shared cases below use it).
FACTORIES = {
    "inverse_time_decay": lambda per="epoch": inverse_time_decay(0.2, 1.0, per=per),
    "inverse_time_decay_staircase": lambda per="epoch": inverse_time_decay(
        0.2, 1.0, time_interval=3, staircase=True, per=per),
    "exponential_decay": lambda per="epoch": exponential_decay(0.2, 0.95, per=per),
    "inverse_sqrt_decay": lambda per="epoch": inverse_sqrt_decay(0.2, 2.0, per=per),
    "step_decay": lambda per="epoch": step_decay(0.2, 0.5, 3, per=per),
    "piecewise_constant": lambda per="epoch": piecewise_constant([2, 5], [0.2, 0.1, 0.05], per=per),
    "constant": lambda per="epoch": constant(0.2, per=per),
    # the optax and PyTorch schedules (per="step" by default)
    "linear_schedule": lambda per="step": linear_schedule(0.0, 0.2, 4, transition_begin=2,
                                                          per=per),
    "polynomial_decay": lambda per="step": polynomial_decay(0.2, 0.01, 2.0, 6, per=per),
    "cosine_decay": lambda per="step": cosine_decay(0.2, 7, alpha=0.1, exponent=1.5, per=per),
    "warmup_cosine_decay": lambda per="step": warmup_cosine_decay(0.01, 0.2, 3, 9, end=0.02,
                                                                  per=per),
    "one_cycle": lambda per="step": one_cycle(0.2, 9, per=per),
    "one_cycle_three_phase": lambda per="step": one_cycle(0.2, 9, pct_start=0.4,
                                                          three_phase=True, per=per),
    "join_schedules": lambda per="step": join_schedules(
        [linear_schedule(0.0, 0.2, 3, per=per), cosine_decay(0.2, 5, per=per)], [3]),
}
DEFAULT_PER = {name: "step" for name in ("linear_schedule", "polynomial_decay", "cosine_decay",
                                         "warmup_cosine_decay", "one_cycle",
                                         "one_cycle_three_phase", "join_schedules")}


def _halve_every_2(count):           # module level so that a wrapping Schedule pickles
    return 0.1 * 0.5 ** (count // 2)


# ------------------------------------------------------------------------------------------------
# inverse_time_decay
# ------------------------------------------------------------------------------------------------

def test_inverse_time_decay_course_worked_case():
    sched = inverse_time_decay(0.2, decay_rate=1)
    assert sched(0) == 0.2                       # during the first epoch (count 0): lr0
    assert sched(1) == 0.1
    assert round(sched(2), 4) == 0.0667
    assert sched(2) == pytest.approx(0.2 / 3, rel=1e-15)
    assert sched(3) == 0.05
    assert sched(4) == pytest.approx(0.04, rel=1e-15)


@pytest.mark.parametrize("lr0, decay_rate", [(0.2, 1.0), (0.5, 0.3), (1.0, 0.0), (0.0, 2.0)])
def test_inverse_time_decay_formula(lr0, decay_rate):
    sched = inverse_time_decay(lr0, decay_rate)
    for count in range(60):
        assert sched(count) == lr0 / (1 + decay_rate * count)


def test_inverse_time_decay_staircase_time_interval():
    # The course assignment's schedule_lr_decay: lr0 / (1 + decay_rate * floor(epoch / interval)).
    sched = inverse_time_decay(0.5, 0.3, time_interval=100, staircase=True)
    for epoch in (0, 1, 10, 99):
        assert sched(epoch) == 0.5
    for epoch in (100, 150, 199):
        assert sched(epoch) == pytest.approx(0.5 / 1.3, rel=1e-15)
    assert sched(100) == pytest.approx(0.38461538461538, rel=1e-12)
    assert sched(200) == pytest.approx(0.5 / 1.6, rel=1e-15)
    assert sched(1050) == pytest.approx(0.5 / (1 + 0.3 * 10), rel=1e-15)


def test_inverse_time_decay_staircase_interval_1_equals_continuous():
    a = inverse_time_decay(0.2, 0.7, staircase=True)
    b = inverse_time_decay(0.2, 0.7)
    assert [a(c) for c in range(30)] == [b(c) for c in range(30)]


def test_inverse_time_decay_continuous_time_interval_divides_count():
    # As Keras InverseTimeDecay(decay_steps=time_interval, staircase=False).
    sched = inverse_time_decay(1.0, 1.0, time_interval=10)
    assert sched(0) == 1.0
    assert sched(5) == pytest.approx(1 / 1.5, rel=1e-15)
    assert sched(10) == 0.5
    assert sched(15) == pytest.approx(1 / 2.5, rel=1e-15)


def test_inverse_time_decay_attributes():
    sched = inverse_time_decay(0.2, 1, time_interval=7, staircase=True, per="step")
    assert (sched.lr0, sched.decay_rate, sched.time_interval, sched.staircase, sched.per) == \
        (0.2, 1.0, 7, True, "step")
    assert type(sched.decay_rate) is float


# ------------------------------------------------------------------------------------------------
# exponential_decay
# ------------------------------------------------------------------------------------------------

def test_exponential_decay_by_hand():
    lr0 = 0.2
    sched = exponential_decay(lr0)              # rate defaults to the course's 0.95
    assert sched.rate == 0.95
    by_hand = lr0
    for epoch in range(40):
        assert sched(epoch) == pytest.approx(by_hand, rel=1e-13)
        by_hand *= 0.95
    assert sched(0) == 0.2
    assert sched(1) == pytest.approx(0.19, rel=1e-15)
    assert sched(2) == pytest.approx(0.1805, rel=1e-15)


def test_exponential_decay_rate_one_is_constant_and_rate_above_one_grows():
    assert [exponential_decay(0.3, 1.0)(c) for c in (0, 5, 500)] == [0.3, 0.3, 0.3]
    grow = exponential_decay(1.0, 2.0)
    assert [grow(c) for c in (0, 1, 10)] == [1.0, 2.0, 1024.0]


def test_exponential_decay_overflow_and_underflow():
    with pytest.raises(ValueError, match="exponential_decay.*count 2000"):   # not OverflowError
        exponential_decay(1.0, 2.0)(2000)                   # rate**count itself overflows
    with pytest.raises(ValueError, match="exponential_decay.*count 1"):
        exponential_decay(1e308, 10.0)(1)                   # the product overflows
    assert exponential_decay(0.0, 2.0)(5000) == 0.0
    assert exponential_decay(1.0, 0.5)(5000) == 0.0         # underflow is a plain 0.0


# ------------------------------------------------------------------------------------------------
# inverse_sqrt_decay
# ------------------------------------------------------------------------------------------------

def test_inverse_sqrt_decay_values():
    sched = inverse_sqrt_decay(0.1, k=2.0)
    assert sched(0) == pytest.approx(0.2, rel=1e-15)        # count 0 is treated as count 1
    assert sched(1) == pytest.approx(0.2, rel=1e-15)
    assert sched(4) == pytest.approx(0.1, rel=1e-15)
    assert sched(9) == pytest.approx(2 / 3 * 0.1, rel=1e-15)
    for count in range(1, 100):
        assert sched(count) == pytest.approx(2.0 / math.sqrt(count) * 0.1, rel=1e-15)


def test_inverse_sqrt_decay_default_k_and_step_form():
    sched = inverse_sqrt_decay(0.1, per="step")             # the course's k / sqrt(t) form
    assert sched.k == 1.0 and sched.per == "step"
    assert [sched(t) for t in (1, 4, 16, 100)] == [0.1, 0.05, 0.025, 0.010000000000000002]


# ------------------------------------------------------------------------------------------------
# step_decay
# ------------------------------------------------------------------------------------------------

def test_step_decay_staircase():
    sched = step_decay(1.0, factor=0.5, every=3)
    expected = [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125]
    assert [sched(c) for c in range(11)] == expected


def test_step_decay_every_1_is_exponential():
    a, b = step_decay(0.2, 0.9, 1), exponential_decay(0.2, 0.9)
    assert [a(c) for c in range(25)] == [b(c) for c in range(25)]


def test_step_decay_non_dyadic_factor():
    sched = step_decay(0.2, factor=0.1, every=30)           # PyTorch StepLR's usual example
    assert sched(29) == 0.2
    assert sched(30) == pytest.approx(0.02, rel=1e-15)
    assert sched(60) == pytest.approx(0.002, rel=1e-14)


def test_step_decay_growth_overflow():
    assert step_decay(1.0, 2.0, 10)(100) == 1024.0
    with pytest.raises(ValueError, match="step_decay"):
        step_decay(1.0, 2.0, 1)(5000)


# ------------------------------------------------------------------------------------------------
# piecewise_constant
# ------------------------------------------------------------------------------------------------

def test_piecewise_constant_at_and_around_boundaries():
    sched = piecewise_constant([10, 20], [0.1, 0.01, 0.001])
    cases = {0: 0.1, 9: 0.1, 10: 0.01, 11: 0.01, 19: 0.01, 20: 0.001, 21: 0.001, 10**9: 0.001}
    for count, value in cases.items():
        assert sched(count) == value, count


def test_piecewise_constant_adjacent_and_zero_boundaries():
    sched = piecewise_constant([0, 1, 2], [9.0, 3.0, 2.0, 1.0])
    assert [sched(c) for c in range(4)] == [3.0, 2.0, 1.0, 1.0]   # values[0] is never reached


def test_piecewise_constant_empty_boundaries_is_constant():
    sched = piecewise_constant([], [0.3])
    assert [sched(c) for c in (0, 1, 100)] == [0.3, 0.3, 0.3]


def test_piecewise_constant_numpy_inputs():
    sched = piecewise_constant(np.array([5, 8], dtype=np.int32),
                               np.array([0.5, 0.25, 0.125], dtype=np.float32))
    assert sched.boundaries == (5, 8) and all(type(b) is int for b in sched.boundaries)
    assert sched.values == (0.5, 0.25, 0.125)
    assert [sched(c) for c in (4, 5, 7, 8)] == [0.5, 0.25, 0.25, 0.125]
    assert type(sched(4)) is float


def test_piecewise_constant_integer_values_become_floats():
    sched = piecewise_constant((3,), (1, 0))
    assert sched(0) == 1.0 and type(sched(0)) is float
    assert sched(3) == 0.0


# ------------------------------------------------------------------------------------------------
# constant
# ------------------------------------------------------------------------------------------------

def test_constant():
    sched = constant(3)
    assert [sched(c) for c in (0, 1, 10**6)] == [3.0, 3.0, 3.0]
    assert type(sched(0)) is float
    assert sched.lr == 3.0
    assert constant(0.0)(5) == 0.0


# ------------------------------------------------------------------------------------------------
# Shared behaviour: per, return type, counts, pickling, repr, immutability
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FACTORIES)
def test_per_attribute(name):
    assert FACTORIES[name]().per == DEFAULT_PER.get(name, "epoch")
    assert FACTORIES[name](per="epoch").per == "epoch"
    assert FACTORIES[name](per="step").per == "step"
    assert isinstance(FACTORIES[name](), Schedule)


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("per", ["epochs", "Epoch", "batch", "", None, 1])
def test_bad_per(name, per):
    with pytest.raises(ValueError, match="per must be 'epoch' or 'step'"):
        FACTORIES[name](per=per)


@pytest.mark.parametrize("name", FACTORIES)
def test_per_does_not_change_values(name):
    a, b = FACTORIES[name](per="epoch"), FACTORIES[name](per="step")
    assert [a(c) for c in range(12)] == [b(c) for c in range(12)]


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("count", [np.int64(7), np.int32(7), np.uint8(7), np.array(7)])
def test_numpy_integer_counts(name, count):
    sched = FACTORIES[name]()
    value = sched(count)
    assert type(value) is float
    assert value == sched(7)


@pytest.mark.parametrize("name", FACTORIES)
def test_returns_python_float(name):
    sched = FACTORIES[name]()
    assert all(type(sched(c)) is float for c in range(10))


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("count", [1.0, 2.5, np.float64(3.0), "3", None, True, np.bool_(False),
                                   [1], 1 + 0j])
def test_non_integer_count_is_type_error(name, count):
    with pytest.raises(TypeError, match="count must be an integer >= 0"):
        FACTORIES[name]()(count)


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("count", [-1, np.int64(-3), -(10**20)])
def test_negative_count_is_value_error(name, count):
    with pytest.raises(ValueError, match="count must be an integer >= 0, got -"):
        FACTORIES[name]()(count)


@pytest.mark.parametrize("name", FACTORIES)
def test_pickle_round_trip(name):
    sched = FACTORIES[name](per="step")
    back = pickle.loads(pickle.dumps(sched))
    assert type(back) is type(sched)
    assert repr(back) == repr(sched)
    assert back.per == "step"
    assert [back(c) for c in range(15)] == [sched(c) for c in range(15)]


@pytest.mark.parametrize("name", FACTORIES)
def test_immutable(name):
    sched = FACTORIES[name]()
    with pytest.raises(AttributeError, match="immutable"):
        sched.per = "step"
    with pytest.raises(AttributeError, match="immutable"):
        del sched.per
    assert sched.per == DEFAULT_PER.get(name, "epoch")


def test_repr():
    assert repr(inverse_time_decay(0.2, 1)) == (
        "inverse_time_decay(lr0=0.2, decay_rate=1.0, time_interval=1, staircase=False, "
        "per='epoch')")
    assert repr(exponential_decay(0.2, per="step")) == \
        "exponential_decay(lr0=0.2, rate=0.95, per='step')"
    assert repr(inverse_sqrt_decay(0.1)) == "inverse_sqrt_decay(lr0=0.1, k=1.0, per='epoch')"
    assert repr(step_decay(0.1, 0.5, 10)) == \
        "step_decay(lr0=0.1, factor=0.5, every=10, per='epoch')"
    assert repr(piecewise_constant([10, 20], [0.1, 0.01, 0.001])) == \
        "piecewise_constant(boundaries=(10, 20), values=(0.1, 0.01, 0.001), per='epoch')"
    assert repr(constant(0.01)) == "constant(lr=0.01, per='epoch')"
    assert repr(Schedule(_halve_every_2, per="step")).startswith(
        "Schedule(fn=<function _halve_every_2 at ")
    assert repr(Schedule(_halve_every_2, per="step")).endswith(", per='step')")


def test_repr_rebuilds_the_schedule():
    for name, make in FACTORIES.items():
        sched = make(per="step")
        rebuilt = eval(repr(sched), vars(schedules))
        assert [rebuilt(c) for c in range(12)] == [sched(c) for c in range(12)], name


# ------------------------------------------------------------------------------------------------
# Validation at construction: every ValueError / TypeError path
# ------------------------------------------------------------------------------------------------

BAD_ARGS = [
    # inverse_time_decay
    (inverse_time_decay, (-0.1, 1.0), {}, ValueError,
     r"lr0 must be a finite number >= 0, got -0.1"),
    (inverse_time_decay, (math.nan, 1.0), {}, ValueError, r"lr0 must be a finite number >= 0"),
    (inverse_time_decay, (math.inf, 1.0), {}, ValueError, r"lr0 must be a finite number >= 0"),
    (inverse_time_decay, ("0.2", 1.0), {}, TypeError, r"lr0 must be a real number, got str"),
    (inverse_time_decay, (None, 1.0), {}, TypeError, r"lr0 must be a real number, got NoneType"),
    (inverse_time_decay, (True, 1.0), {}, TypeError, r"lr0 must be a real number, got bool"),
    (inverse_time_decay, (0.2j, 1.0), {}, TypeError, r"lr0 must be a real number, got complex"),
    (inverse_time_decay, (0.2, -1.0), {}, ValueError,
     r"decay_rate must be a finite number >= 0, got -1.0"),
    (inverse_time_decay, (0.2, "1"), {}, TypeError, r"decay_rate must be a real number, got str"),
    (inverse_time_decay, (0.2, 1.0), {"time_interval": 0}, ValueError,
     r"time_interval must be an integer >= 1, got 0"),
    (inverse_time_decay, (0.2, 1.0), {"time_interval": -5}, ValueError,
     r"time_interval must be an integer >= 1, got -5"),
    (inverse_time_decay, (0.2, 1.0), {"time_interval": 10.0}, TypeError,
     r"time_interval must be an integer >= 1, got float"),
    (inverse_time_decay, (0.2, 1.0), {"time_interval": True}, TypeError,
     r"time_interval must be an integer >= 1, got bool"),
    (inverse_time_decay, (0.2, 1.0), {"staircase": 1}, TypeError,
     r"staircase must be True or False, got 1 \(int\)"),
    (inverse_time_decay, (0.2, 1.0), {"staircase": "yes"}, TypeError,
     r"staircase must be True or False, got 'yes' \(str\)"),
    # exponential_decay
    (exponential_decay, (-0.2,), {}, ValueError, r"lr0 must be a finite number >= 0, got -0.2"),
    (exponential_decay, ([0.2],), {}, TypeError, r"lr0 must be a real number, got list"),
    (exponential_decay, (0.2, 0.0), {}, ValueError, r"rate must be a finite number > 0 .*got 0.0"),
    (exponential_decay, (0.2, -0.95), {}, ValueError, r"rate must be a finite number > 0 .*-0.95"),
    (exponential_decay, (0.2, math.inf), {}, ValueError, r"rate must be a finite number > 0"),
    (exponential_decay, (0.2, math.nan), {}, ValueError, r"rate must be a finite number > 0"),
    (exponential_decay, (0.2, None), {}, TypeError, r"rate must be a real number, got NoneType"),
    # inverse_sqrt_decay
    (inverse_sqrt_decay, (-1.0,), {}, ValueError, r"lr0 must be a finite number >= 0, got -1.0"),
    (inverse_sqrt_decay, (0.1, 0.0), {}, ValueError, r"k must be a finite number > 0, got 0.0"),
    (inverse_sqrt_decay, (0.1, -2), {}, ValueError, r"k must be a finite number > 0, got -2"),
    (inverse_sqrt_decay, (0.1, "2"), {}, TypeError, r"k must be a real number, got str"),
    # step_decay
    (step_decay, (-0.1, 0.5, 10), {}, ValueError, r"lr0 must be a finite number >= 0, got -0.1"),
    (step_decay, (0.1, 0.0, 10), {}, ValueError, r"factor must be a finite number > 0 .*got 0.0"),
    (step_decay, (0.1, -0.5, 10), {}, ValueError, r"factor must be a finite number > 0 .*-0.5"),
    (step_decay, (0.1, "0.5", 10), {}, TypeError, r"factor must be a real number, got str"),
    (step_decay, (0.1, 0.5, 0), {}, ValueError, r"every must be an integer >= 1, got 0"),
    (step_decay, (0.1, 0.5, -1), {}, ValueError, r"every must be an integer >= 1, got -1"),
    (step_decay, (0.1, 0.5, 2.5), {}, TypeError, r"every must be an integer >= 1, got float"),
    (step_decay, (0.1, 0.5, None), {}, TypeError, r"every must be an integer >= 1, got NoneType"),
    # piecewise_constant
    (piecewise_constant, ([20, 10], [0.1, 0.01, 0.001]), {}, ValueError,
     r"boundaries must be strictly increasing, got \[20, 10\]: boundaries\[1\] = 10 <= "
     r"boundaries\[0\] = 20"),
    (piecewise_constant, ([10, 10], [0.1, 0.01, 0.001]), {}, ValueError,
     r"boundaries must be strictly increasing.*boundaries\[1\] = 10 <= boundaries\[0\] = 10"),
    (piecewise_constant, ([1, 5, 3], [1, 2, 3, 4]), {}, ValueError,
     r"boundaries\[2\] = 3 <= boundaries\[1\] = 5"),
    (piecewise_constant, ([-1, 5], [0.1, 0.01, 0.001]), {}, ValueError,
     r"boundaries\[0\] must be an integer >= 0, got -1"),
    (piecewise_constant, ([10, 20.0], [0.1, 0.01, 0.001]), {}, TypeError,
     r"boundaries\[1\] must be an integer >= 0, got float"),
    (piecewise_constant, ([10, 20], [0.1, 0.01]), {}, ValueError,
     r"values must have len\(boundaries\) \+ 1 = 3 entries .*got 2"),
    (piecewise_constant, ([10, 20], [0.1, 0.01, 0.001, 0.0001]), {}, ValueError,
     r"values must have len\(boundaries\) \+ 1 = 3 entries .*got 4"),
    (piecewise_constant, ([], []), {}, ValueError,
     r"values must have len\(boundaries\) \+ 1 = 1 entries .*got 0"),
    (piecewise_constant, ([10], [0.1, -0.01]), {}, ValueError,
     r"values\[1\] must be a finite number >= 0, got -0.01"),
    (piecewise_constant, ([10], [0.1, math.nan]), {}, ValueError,
     r"values\[1\] must be a finite number >= 0"),
    (piecewise_constant, ([10], ["0.1", 0.01]), {}, TypeError,
     r"values\[0\] must be a real number, got str"),
    (piecewise_constant, (10, [0.1, 0.01]), {}, TypeError,
     r"boundaries must be a sequence .*got int"),
    (piecewise_constant, ("10", [0.1, 0.01]), {}, TypeError,
     r"boundaries must be a sequence .*got str"),
    (piecewise_constant, ({10}, [0.1, 0.01]), {}, TypeError,
     r"boundaries must be a sequence .*got set"),
    (piecewise_constant, ([10], 0.1), {}, TypeError, r"values must be a sequence .*got float"),
    # constant
    (constant, (-0.01,), {}, ValueError, r"lr must be a finite number >= 0, got -0.01"),
    (constant, (math.inf,), {}, ValueError, r"lr must be a finite number >= 0, got inf"),
    (constant, ("0.01",), {}, TypeError, r"lr must be a real number, got str"),
    (constant, (None,), {}, TypeError, r"lr must be a real number, got NoneType"),
]


@pytest.mark.parametrize("factory, args, kwargs, exc, match", BAD_ARGS,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(BAD_ARGS)])
def test_bad_arguments(factory, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        factory(*args, **kwargs)


def test_edge_values_that_are_valid():
    assert inverse_time_decay(0, 0)(5) == 0.0
    assert inverse_time_decay(np.float32(0.25), np.int64(1))(1) == 0.125
    assert type(inverse_time_decay(np.float32(0.25), 1).lr0) is float
    assert inverse_time_decay(0.2, 1, time_interval=np.int64(2), staircase=np.bool_(True))(2) == 0.1
    assert exponential_decay(0.2, 1e-300)(1) == pytest.approx(2e-301)
    assert step_decay(0.1, 0.5, np.int16(2))(4) == 0.025


# ------------------------------------------------------------------------------------------------
# Schedule (wrapping a user callable) and as_schedule
# ------------------------------------------------------------------------------------------------

def test_schedule_wraps_a_callable():
    seen = []

    def fn(count):
        seen.append(count)
        return np.float32(0.5) / (count + 1)

    sched = Schedule(fn)
    assert sched.per == "epoch" and sched.fn is fn
    assert sched(np.int64(1)) == 0.25 and type(sched(1)) is float
    assert all(type(c) is int for c in seen)                 # the callable sees Python ints
    with pytest.raises(ValueError, match="count must be an integer >= 0"):
        sched(-1)
    with pytest.raises(TypeError, match="count must be an integer >= 0"):
        sched(1.5)
    assert len(seen) == 2                                     # bad counts never reach fn


def test_schedule_checks_what_the_callable_returns():
    with pytest.raises(ValueError, match=r"returned -0.1 at count 3; a learning rate must be"):
        Schedule(lambda c: -0.1)(3)
    with pytest.raises(ValueError, match=r"returned nan at count 0"):
        Schedule(lambda c: math.nan)(0)
    with pytest.raises(ValueError, match=r"returned inf at count 0"):
        Schedule(lambda c: math.inf)(0)
    with pytest.raises(TypeError, match=r"returned str at count 2; a learning rate must be a real"):
        Schedule(lambda c: "0.1")(2)
    with pytest.raises(TypeError, match=r"returned NoneType"):
        Schedule(lambda c: None)(0)
    with pytest.raises(TypeError, match=r"returned bool"):
        Schedule(lambda c: True)(0)


def test_schedule_constructor_errors():
    with pytest.raises(TypeError, match="fn must be a callable count -> lr, got float"):
        Schedule(0.1)
    with pytest.raises(ValueError, match="per must be 'epoch' or 'step', got 'steps'"):
        Schedule(_halve_every_2, per="steps")


def test_wrapped_schedule_pickles():
    sched = Schedule(_halve_every_2, per="step")
    back = pickle.loads(pickle.dumps(sched))
    assert back.per == "step" and back.fn is _halve_every_2
    assert [back(c) for c in range(6)] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]


def test_as_schedule_number():
    sched = as_schedule(0.01)
    assert isinstance(sched, Schedule) and sched.per == "epoch"
    assert sched(0) == sched(10**6) == 0.01
    assert repr(sched) == "constant(lr=0.01, per='epoch')"
    assert as_schedule(0.01, per="step").per == "step"
    assert as_schedule(np.float32(0.5))(3) == 0.5
    assert as_schedule(1)(3) == 1.0 and type(as_schedule(1)(3)) is float
    with pytest.raises(ValueError, match="lr must be a finite number >= 0, got -0.01"):
        as_schedule(-0.01)


def test_as_schedule_returns_a_schedule_itself():
    sched = step_decay(0.1, 0.5, 10, per="step")
    assert as_schedule(sched) is sched
    assert as_schedule(sched, per="step") is sched
    with pytest.raises(ValueError, match="per='epoch' contradicts the schedule's own per='step'"):
        as_schedule(sched, per="epoch")
    wrapped = Schedule(_halve_every_2)
    assert as_schedule(wrapped) is wrapped


def test_as_schedule_wraps_a_plain_callable():
    sched = as_schedule(_halve_every_2)
    assert type(sched) is Schedule and sched.fn is _halve_every_2 and sched.per == "epoch"
    assert [sched(c) for c in range(5)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert as_schedule(_halve_every_2, per="step").per == "step"


class _StepCallable:
    per = "step"

    def __call__(self, t):
        return 1.0 / t if t else 1.0


def test_as_schedule_keeps_the_callables_own_per():
    fn = _StepCallable()
    sched = as_schedule(fn)
    assert sched.per == "step" and sched.fn is fn
    assert sched(4) == 0.25
    assert as_schedule(fn, per="step").per == "step"
    with pytest.raises(ValueError, match="per='epoch' contradicts the callable's own per='step'"):
        as_schedule(fn, per="epoch")


def test_as_schedule_bad_per_attribute_on_callable():
    def fn(count):
        return 0.1
    fn.per = "iteration"
    with pytest.raises(ValueError, match=r"the per attribute of .* must be 'epoch' or 'step', "
                                         r"got 'iteration'"):
        as_schedule(fn)


@pytest.mark.parametrize("bad", ["0.1", None, True, [0.1], 0.1j])
def test_as_schedule_type_errors(bad):
    with pytest.raises(TypeError, match=r"^lr must be a real number >= 0, a Schedule or a "
                                        r"callable count -> lr, got "):
        as_schedule(bad)


def test_as_schedule_bad_per():
    with pytest.raises(ValueError, match="per must be 'epoch' or 'step', got 'epochs'"):
        as_schedule(0.1, per="epochs")
    with pytest.raises(ValueError, match="per must be 'epoch' or 'step'"):
        as_schedule(_halve_every_2, per="")


# ------------------------------------------------------------------------------------------------
# How the optimizer evaluates schedules (the contract in the module docstring)
# ------------------------------------------------------------------------------------------------

def test_optimizer_contract_epoch_and_step():
    # per="epoch": sched(epoch), epoch from 0, so the whole first epoch uses lr0.
    by_epoch = inverse_time_decay(0.2, 1)
    lrs = [by_epoch(epoch) for epoch in range(3) for _ in range(4)]   # 4 mini-batches per epoch
    assert lrs[:4] == [0.2] * 4 and lrs[4:8] == [0.1] * 4
    # per="step": sched(t), t the number of the update being taken, from 1.
    by_step = inverse_sqrt_decay(0.1, per="step")
    assert [by_step(t) for t in range(1, 5)] == pytest.approx(
        [0.1, 0.1 / math.sqrt(2), 0.1 / math.sqrt(3), 0.05], rel=1e-15)


# ------------------------------------------------------------------------------------------------
# Doctests
# ------------------------------------------------------------------------------------------------

def test_doctests():
    result = doctest.testmod(schedules, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 20
    assert result.failed == 0


# ------------------------------------------------------------------------------------------------
# Messages name what the user passed, never internals
# ------------------------------------------------------------------------------------------------

def test_overflow_is_never_an_overflow_error():
    for call in (lambda: exponential_decay(1.0, 2.0)(2000), lambda: step_decay(1.0, 2.0, 1)(5000),
                 lambda: exponential_decay(1e308, 10.0)(1)):
        with pytest.raises(ValueError) as info:
            call()
        assert not isinstance(info.value, OverflowError)


@pytest.mark.parametrize("name", ["inverse_time_decay", "exponential_decay", "step_decay",
                                  "constant"])
def test_huge_counts_are_value_errors(name):
    sched = {"inverse_time_decay": inverse_time_decay(0.2, 1.0),
             "exponential_decay": exponential_decay(0.2, 0.5),
             "step_decay": step_decay(0.2, 0.5, 3), "constant": constant(0.2)}[name]
    assert sched(2 ** 53) >= 0.0
    with pytest.raises(ValueError, match="count must be an integer below"):
        sched(10 ** 400)                  # inverse_time_decay used to raise OverflowError here


def _named_rate(count):
    return -1.0


def test_callable_errors_name_the_callable_readably():
    with pytest.raises(ValueError) as info:
        Schedule(lambda c: -0.1)(3)
    msg = str(info.value)
    assert "0x" not in msg and "<function" not in msg and "<lambda>" not in msg
    assert msg.startswith("the lr callable (a lambda) returned -0.1 at count 3")
    with pytest.raises(ValueError, match=r"^the lr callable _named_rate returned -1.0 at count 0"):
        as_schedule(_named_rate)(0)

    class Bad:
        def __call__(self, count):
            return "x"
    with pytest.raises(TypeError) as info:
        as_schedule(Bad())(1)
    assert "0x" not in str(info.value) and "Bad object" in str(info.value)


def test_bad_per_attribute_names_the_callable_readably():
    fn = lambda count: 0.1  # noqa: E731
    fn.per = "iteration"
    with pytest.raises(ValueError) as info:
        as_schedule(fn)
    assert "0x" not in str(info.value) and "the lr callable (a lambda)" in str(info.value)


def _two_args(count, scale):
    return 0.1 * scale


def _varargs(*args):
    return 0.1


def _default_second(count, scale=1.0):
    return 0.1 * scale


@pytest.mark.parametrize("fn", [lambda: 0.1, _two_args, lambda *, count: 0.1, divmod])
def test_wrong_arity_is_refused_at_construction(fn):
    """Used to be accepted, failing only at the optimizer's first step."""
    with pytest.raises(TypeError, match=r"^lr callable must take one argument \(the count\)"):
        as_schedule(fn)
    with pytest.raises(TypeError, match=r"^lr callable must take one argument \(the count\)"):
        Schedule(fn)


def test_wrong_arity_in_an_optimizer_is_refused_at_construction():
    with pytest.raises(TypeError, match=r"lr callable must take one argument"):
        fastopt.Adam({"w": np.zeros(3)}, lr=lambda: 0.1)


@pytest.mark.parametrize("fn", [_varargs, _default_second, lambda c, *rest: 0.1, abs, float,
                                _StepCallable(), step_decay(0.1, 0.5, 2)])
def test_one_argument_callables_are_accepted(fn):
    sched = as_schedule(fn)
    assert sched(1) >= 0.0


def test_callables_without_a_signature_are_accepted(monkeypatch):
    import inspect

    def no_signature(obj, *args, **kwargs):
        raise ValueError("no signature found")
    monkeypatch.setattr(inspect, "signature", no_signature)
    assert as_schedule(lambda: 0.1).per == "epoch"       # cannot be checked: accepted


@pytest.mark.parametrize("flag", [np.bool_(True), np.True_, True])
def test_numpy_bool_staircase(flag):
    sched = inverse_time_decay(0.2, 1, time_interval=10, staircase=flag)
    assert sched.staircase is True and type(sched.staircase) is bool
    assert sched(9) == 0.2


@pytest.mark.parametrize("bad", [0, 1, None, "True", 1.0])
def test_staircase_refuses_non_bools(bad):
    with pytest.raises(TypeError, match="staircase must be True or False"):
        inverse_time_decay(0.2, 1, staircase=bad)


@pytest.mark.parametrize("bad", [True, np.bool_(False)])
def test_integer_arguments_refuse_bools(bad):
    with pytest.raises(TypeError, match="time_interval must be an integer >= 1, got"):
        inverse_time_decay(0.2, 1, time_interval=bad)
    with pytest.raises(TypeError, match="every must be an integer >= 1, got"):
        step_decay(0.2, 0.5, bad)
    with pytest.raises(TypeError, match=r"boundaries\[0\] must be an integer >= 0, got"):
        piecewise_constant([bad], [0.1, 0.01])
    with pytest.raises(TypeError, match="count must be an integer >= 0, got"):
        constant(0.1)(bad)


# ================================================================================================
# The optax and PyTorch schedules
# ================================================================================================
#
# The references, transcribed as plain NumPy float64 functions from the real sources (written
# from them, not from fastopt; optax itself needs jax, which is not installed):
#   optax: https://github.com/google-deepmind/optax/blob/main/optax/schedules/_schedule.py
#          (polynomial_schedule, linear_schedule, cosine_decay_schedule,
#          warmup_cosine_decay_schedule) and optax/schedules/_join.py (join_schedules).
#   torch: torch/optim/lr_scheduler.py, OneCycleLR.get_lr and _annealing_cos (torch 2.13.0);
#          the test also runs torch itself when it is importable, and embeds its values below.
# optax computes in float32 by default (jnp); these transcriptions are float64, so they agree
# with fastopt to rounding (rtol 1e-12), which a wrong formula, boundary or clip would miss.

REF_RTOL = 1e-12


def optax_polynomial_schedule(init_value, end_value, power, transition_steps,
                              transition_begin=0):
    if transition_steps <= 0:
        return lambda count: init_value
    if transition_begin < 0:
        transition_begin = 0

    def schedule(count):
        count = np.clip(count - transition_begin, 0, transition_steps)
        frac = 1 - count / transition_steps
        return (init_value - end_value) * (frac ** power) + end_value
    return schedule


def optax_linear_schedule(init_value, end_value, transition_steps, transition_begin=0):
    return optax_polynomial_schedule(init_value, end_value, 1, transition_steps,
                                     transition_begin)


def optax_cosine_decay_schedule(init_value, decay_steps, alpha=0.0, exponent=1.0):
    if not decay_steps > 0:
        raise ValueError("The cosine_decay_schedule requires positive decay_steps")

    def schedule(count):
        count = np.minimum(np.float64(count), np.float64(decay_steps))
        cosine_decay = 0.5 * (1 + np.cos(np.pi * count / decay_steps))
        decayed = (1 - alpha) * cosine_decay ** exponent + alpha
        return init_value * decayed
    return schedule


def optax_join_schedules(schedules, boundaries):
    def schedule(step):
        output = schedules[0](step)                  # every schedule is evaluated, as jnp.where
        for boundary, sched in zip(boundaries, schedules[1:]):
            output = np.where(step < boundary, output, sched(step - boundary))
        return output
    return schedule


def optax_warmup_cosine_decay_schedule(init_value, peak_value, warmup_steps, decay_steps,
                                       end_value=0.0, exponent=1.0):
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    schedules = [
        optax_linear_schedule(init_value, peak_value, warmup_steps),
        optax_cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent),
    ]
    return optax_join_schedules(schedules, [warmup_steps])


def torch_one_cycle_lr(max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                       final_div_factor=1e4, three_phase=False):
    """OneCycleLR(anneal_strategy='cos').get_lr() after `count` step() calls (count <= total)."""
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    if three_phase:
        phases = [(float(pct_start * total_steps) - 1, initial_lr, max_lr),
                  (float(2 * pct_start * total_steps) - 2, max_lr, initial_lr),
                  (total_steps - 1, initial_lr, min_lr)]
    else:
        phases = [(float(pct_start * total_steps) - 1, initial_lr, max_lr),
                  (total_steps - 1, max_lr, min_lr)]

    def lr(step_num):
        if step_num > total_steps:
            raise ValueError(f"Tried to step {step_num} times")
        start_step = 0.0
        for i, (end_step, start, end) in enumerate(phases):
            if step_num <= end_step or i == len(phases) - 1:
                pct = (step_num - start_step) / (end_step - start_step)
                cos_out = math.cos(math.pi * pct) + 1
                return end + (start - end) / 2.0 * cos_out
            start_step = end_step
    return lr


def _assert_matches(sched, reference, counts, rtol=REF_RTOL):
    for c in counts:
        got, want = sched(c), float(reference(c))
        assert type(got) is float
        assert got == pytest.approx(want, rel=rtol, abs=1e-300), (c, got, want)


# ------------------------------------------------------------------------------------------------
# linear_schedule / polynomial_decay
# ------------------------------------------------------------------------------------------------

def test_linear_schedule_by_hand():
    sched = linear_schedule(1.0, 0.0, 4)
    assert [sched(c) for c in range(7)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0]
    late = linear_schedule(1.0, 0.5, 2, transition_begin=3)        # held at init up to count 3
    assert [late(c) for c in range(8)] == [1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.5, 0.5]
    warmup = linear_schedule(0.0, 0.1, 4)                          # init < end: a warm-up
    assert [warmup(c) for c in range(6)] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1],
                                                          rel=1e-15)
    # optax's own docstring: linear_schedule(1.0, 0.01, 100): 1.0 at count 0, 0.01 at count 100
    optax_doc = linear_schedule(1.0, 0.01, 100)
    assert optax_doc(0) == 1.0 and optax_doc(100) == 0.01 and optax_doc(10**6) == 0.01
    assert optax_doc(50) == pytest.approx(0.505, rel=1e-15)


@pytest.mark.parametrize("init, end, steps, begin", [
    (1.0, 0.0, 10, 0), (0.0, 0.3, 7, 0), (0.5, 0.05, 13, 4), (0.2, 0.2, 5, 2), (0.3, 0.1, 1, 0),
    (0.4, 0.1, 0, 0), (0.4, 0.1, 0, 6), (1e-3, 2.5, 3, 11)])
def test_linear_schedule_matches_optax(init, end, steps, begin):
    sched = linear_schedule(init, end, steps, transition_begin=begin)
    _assert_matches(sched, optax_linear_schedule(init, end, steps, begin),
                    range(begin + steps + 12))
    _assert_matches(sched, optax_linear_schedule(init, end, steps, begin), [10**6, 2**53])


def test_linear_schedule_zero_steps_is_constant_init():
    # optax: transition_steps <= 0 disables the annealing and holds init_value
    sched = linear_schedule(0.4, 0.1, 0, transition_begin=3)
    assert {sched(c) for c in range(20)} == {0.4}


def test_polynomial_decay_by_hand():
    sched = polynomial_decay(1.0, 0.0, power=2, transition_steps=10)
    assert [sched(c) for c in (0, 5, 10, 20)] == [1.0, 0.25, 0.0, 0.0]
    assert sched(1) == pytest.approx(0.81, rel=1e-15)              # (1 - 1/10)**2
    sqrt = polynomial_decay(0.0, 1.0, power=0.5, transition_steps=4)
    assert sqrt(3) == pytest.approx(1 - math.sqrt(0.25), rel=1e-15)
    assert [polynomial_decay(0.3, 0.1, 0.0, 5)(c) for c in (0, 5, 9)] == [0.3, 0.3, 0.3]  # 0**0
    # optax's own docstring example (float32 values printed to 4 decimals):
    # polynomial_schedule(1.0, 0.01, transition_steps=100, transition_begin=5, power=2)
    doc = polynomial_decay(1.0, 0.01, 2, 100, transition_begin=5)
    printed = {0: "1.0000", 5: "1.0000", 6: "0.9803", 104: "0.0101", 105: "0.0100",
               110: "0.0100"}
    assert {c: f"{doc(c):.4f}" for c in printed} == printed
    assert doc(6) == pytest.approx(0.99 * 0.99 ** 2 + 0.01, rel=1e-15)


@pytest.mark.parametrize("init, end, power, steps, begin", [
    (1.0, 0.0, 2.0, 10, 0), (0.5, 0.01, 0.5, 9, 3), (0.1, 0.2, 3.0, 6, 0), (1.0, 0.0, 1.0, 8, 2),
    (0.7, 0.0, 7.5, 1, 0), (0.7, 0.3, 2.0, 0, 4), (0.25, 0.5, 0.0, 5, 1)])
def test_polynomial_decay_matches_optax(init, end, power, steps, begin):
    sched = polynomial_decay(init, end, power, steps, transition_begin=begin)
    ref = optax_polynomial_schedule(init, end, power, steps, begin)
    _assert_matches(sched, ref, range(begin + steps + 12))
    _assert_matches(sched, ref, [10**9, 2**53])


def test_linear_schedule_is_polynomial_power_1():
    a = linear_schedule(0.9, 0.1, 11, transition_begin=2)
    b = polynomial_decay(0.9, 0.1, 1, 11, transition_begin=2)
    assert [a(c) for c in range(20)] == [b(c) for c in range(20)]
    assert isinstance(a, type(b)) and a.power == 1.0


# ------------------------------------------------------------------------------------------------
# cosine_decay
# ------------------------------------------------------------------------------------------------

def test_cosine_decay_by_hand():
    sched = cosine_decay(1.0, 10)
    assert sched(0) == 1.0
    assert sched(5) == 0.5                          # 0.5 * (1 + cos(pi/2)): cos(pi/2) ~ 6e-17
    assert sched(10) == 0.0 and sched(11) == 0.0 and sched(10**9) == 0.0   # cos(pi) = -1
    assert cosine_decay(2.0, 4)(1) == pytest.approx(1 + math.sqrt(2) / 2, rel=1e-15)
    assert cosine_decay(1.0, 10, alpha=0.1)(5) == pytest.approx(0.55, rel=1e-15)  # .9 * .5 + .1
    assert cosine_decay(1.0, 10, alpha=0.1)(10) == 0.1
    assert cosine_decay(1.0, 10, alpha=0.1)(500) == 0.1
    assert cosine_decay(1.0, 10, exponent=2.0)(5) == 0.25                  # 0.5**2
    assert cosine_decay(0.5, 10, alpha=3.0)(10) == 1.5     # alpha > 1 (optax allows it): grows
    assert cosine_decay(0.5, 1)(0) == 0.5 and cosine_decay(0.5, 1)(1) == 0.0


@pytest.mark.parametrize("lr0, steps, alpha, exponent", [
    (1.0, 10, 0.0, 1.0), (0.3, 7, 0.1, 1.0), (0.1, 25, 0.0, 2.0), (0.2, 13, 0.05, 0.5),
    (2.0, 1, 0.0, 1.0), (0.5, 9, 1.5, 1.0), (0.4, 6, 0.2, 0.0)])
def test_cosine_decay_matches_optax(lr0, steps, alpha, exponent):
    sched = cosine_decay(lr0, steps, alpha=alpha, exponent=exponent)
    ref = optax_cosine_decay_schedule(lr0, steps, alpha, exponent)
    _assert_matches(sched, ref, range(steps + 12))
    _assert_matches(sched, ref, [10**7, 2**53])


# ------------------------------------------------------------------------------------------------
# warmup_cosine_decay
# ------------------------------------------------------------------------------------------------

def test_warmup_cosine_decay_by_hand():
    # warm-up 0 -> 1 over 2 counts, then cosine over decay_steps - warmup_steps = 4 counts
    sched = warmup_cosine_decay(0.0, 1.0, warmup_steps=2, decay_steps=6)
    s2 = math.sqrt(2) / 4
    expected = [0.0, 0.5, 1.0, 0.5 + s2, 0.5, 0.5 - s2, 0.0, 0.0, 0.0]
    assert [sched(c) for c in range(9)] == pytest.approx(expected, rel=1e-15, abs=1e-17)
    assert sched(2) == 1.0 and sched(4) == 0.5 and sched(6) == 0.0   # peak at W, end at D


def test_warmup_cosine_decay_end_value():
    sched = warmup_cosine_decay(0.1, 1.0, 5, 15, end=0.2)
    assert sched(0) == (0.1 - 1.0) * 1 + 1.0 == pytest.approx(0.1, rel=1e-15)  # optax's rounding
    assert sched(5) == 1.0
    assert sched(10) == pytest.approx(0.6, rel=1e-15)              # halfway: (1 + 0.2) / 2
    for c in (15, 16, 100, 2**53):
        assert sched(c) == pytest.approx(0.2, rel=1e-15)           # peak * (end / peak)


def test_warmup_cosine_decay_peak_zero_as_optax():
    # optax: alpha = 0.0 if peak_value == 0.0 else end_value / peak_value.  With peak 0 the decay
    # part is 0 * (...) = 0 whatever `end` is (no division by zero).
    sched = warmup_cosine_decay(0.3, 0.0, 2, 6, end=0.1)
    assert [sched(c) for c in range(9)] == [0.3, 0.15, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    _assert_matches(sched, optax_warmup_cosine_decay_schedule(0.3, 0.0, 2, 6, 0.1), range(12))


def test_warmup_cosine_decay_no_warmup_is_cosine_decay():
    # optax: join at boundary 0 uses the cosine from count 0 on; init is never used
    a = warmup_cosine_decay(0.7, 1.0, 0, 4)
    b = cosine_decay(1.0, 4)
    assert [a(c) for c in range(10)] == [b(c) for c in range(10)]
    assert a(0) == 1.0


def test_warmup_cosine_decay_end_above_peak():
    sched = warmup_cosine_decay(0.0, 1.0, 1, 3, end=2.0)             # alpha = 2: it grows
    assert [sched(c) for c in range(5)] == pytest.approx([0.0, 1.0, 1.5, 2.0, 2.0], rel=1e-15)


@pytest.mark.parametrize("init, peak, warmup, decay, end, exponent", [
    (0.0, 1.0, 2, 6, 0.0, 1.0), (0.01, 0.3, 5, 20, 0.003, 1.0), (0.1, 0.1, 3, 4, 0.0, 1.0),
    (0.0, 0.5, 1, 11, 0.05, 2.0), (0.2, 0.6, 7, 30, 0.0, 0.5), (0.5, 0.0, 3, 8, 0.1, 1.0),
    (0.9, 1.0, 0, 5, 0.1, 1.0), (0.0, 1e-3, 10, 11, 1e-5, 1.0), (0.05, 0.2, 4, 9, 0.4, 3.0)])
def test_warmup_cosine_decay_matches_optax(init, peak, warmup, decay, end, exponent):
    sched = warmup_cosine_decay(init, peak, warmup, decay, end=end, exponent=exponent)
    ref = optax_warmup_cosine_decay_schedule(init, peak, warmup, decay, end, exponent)
    _assert_matches(sched, ref, range(decay + 12))
    _assert_matches(sched, ref, [10**8, 2**53])


def test_warmup_cosine_decay_is_the_join_of_its_parts():
    w, d, peak, end = 4, 13, 0.3, 0.03
    whole = warmup_cosine_decay(0.01, peak, w, d, end=end, exponent=1.5)
    parts = join_schedules([linear_schedule(0.01, peak, w),
                            cosine_decay(peak, d - w, alpha=end / peak, exponent=1.5)], [w])
    assert [whole(c) for c in range(30)] == [parts(c) for c in range(30)]


# ------------------------------------------------------------------------------------------------
# one_cycle
# ------------------------------------------------------------------------------------------------

# torch 2.13.0's OneCycleLR(anneal_strategy="cos", cycle_momentum=False): get_last_lr()[0] after
# 0, 1, ..., total_steps calls of scheduler.step() (torch raises on the next one).  Generated with
# torch itself; test_one_cycle_matches_live_torch recomputes them when torch is importable.
TORCH_ONE_CYCLE = {
    'two_phase_10': (
        (1.0, 10, {}), [
        0.040000000000000036, 0.52, 1.0, 0.9504846320134737, 0.8117456539497631,
        0.6112620219362893, 0.38874197806371075, 0.18825834605023697, 0.049519367986526286, 4e-06,
        0.04951936798652623,
    ]),
    'two_phase_37': (
        (0.1, 37, {'pct_start': 0.25, 'div_factor': 10.0, 'final_div_factor': 100.0}), [
        0.009999999999999995, 0.013223443014276734, 0.022431968285271844, 0.0363063244149151,
        0.052858813787931586, 0.06971805834928398, 0.08446873302753782, 0.09499759518947155,
        0.09979623651578881, 0.0998200545526992, 0.09902291046566827, 0.09759876891117987,
        0.09556586309488739, 0.09295022019766029, 0.08978532815102522, 0.0861117068930285,
        0.08197638959370761, 0.07743232049201326, 0.07253767705364278, 0.06735512512816046,
        0.061951016641587094, 0.056394540096356596, 0.050756834754741076, 0.045110079846805734,
        0.03952657046371349, 0.034077791967666304, 0.028833504768761807, 0.023860851186316284,
        0.019223495829459324, 0.014980810502660006, 0.011187114071793956, 0.00789097702270398,
        0.0051345996159529485, 0.0029532715992188437, 0.0013749203946046425, 0.0004197535453958397,
        0.0001, 0.0004197535453958397,
    ]),
    'three_phase_10': (
        (1.0, 10, {'three_phase': True}), [
        0.040000000000000036, 0.52, 1.0, 0.52, 0.04, 0.0361807218535102, 0.0261817218535102,
        0.013822278146489805, 0.0038232781464898036, 4e-06, 0.0038232781464897993,
    ]),
    'three_phase_23': (
        (0.5, 23, {'pct_start': 0.4, 'three_phase': True}), [
        0.020000000000000018, 0.03739941173549727, 0.08707481753581109, 0.16182352707887837,
        0.2508073439143914, 0.34112405081804054, 0.41967816803973557, 0.47507973367065326,
        0.4992957922840977, 0.48881513409318333, 0.44515740315726643, 0.37465275644294327,
        0.28752402209561634, 0.1964044394728014, 0.11450590136800702, 0.05370329432307182,
        0.02281269829271638, 0.01943888941975337, 0.016235274528785485, 0.011120532796556983,
        0.005662596492563542, 0.0015346047319163873, 2e-06, 0.0015346047319163862,
    ]),
    'one_step': (
        (1.0, 1, {}), [
        4e-06, 0.6112620219362891,
    ]),
    'pct_start_0': (
        (1.0, 10, {'pct_start': 0.0}), [
        0.9755283560345442, 0.904508879153485, 0.793893450575732, 0.654509879153485, 0.500002,
        0.3454941208465151, 0.20611054942426807, 0.09549512084651508, 0.024475643965455825, 4e-06,
        0.024475643965455825,
    ]),
    'three_phase_short_rise': (
        (1.0, 10, {'pct_start': 0.05, 'three_phase': True}), [
        0.03902122821287048, 0.0361807218535102, 0.03175652947534488, 0.0261817218535102,
        0.020002000000000002, 0.013822278146489805, 0.008247470524655126, 0.0038232781464898036,
        0.0009827717871295199, 4e-06, 0.0009827717871295199,
    ]),
}


def test_one_cycle_by_hand():
    # max_lr 1, total 10: initial = 1/25 = 0.04, min = 0.04/1e4 = 4e-6; the rise ends at count
    # 0.3 * 10 - 1 = 2, the fall at count 9.
    sched = one_cycle(1.0, 10)
    assert sched(0) == pytest.approx(0.04, rel=1e-14)   # torch: 0.04 + 0.96, not exactly 0.04
    assert sched(1) == pytest.approx(0.52, rel=1e-15)   # halfway up: (0.04 + 1) / 2
    assert sched(2) == 1.0                              # the peak
    assert sched(9) == 4e-06                            # the end: cos(pi) + 1 = 0
    assert sched(10) == pytest.approx(sched(8), rel=1e-12)   # torch's pct 8/7: the mirror of 6/7
    for c in (11, 12, 1000, 2**53):                     # past the end torch raises; min_lr here
        assert sched(c) == 4e-06


@pytest.mark.parametrize("name", sorted(TORCH_ONE_CYCLE))
def test_one_cycle_matches_torch_table(name):
    (max_lr, total, kwargs), expected = TORCH_ONE_CYCLE[name]
    sched = one_cycle(max_lr, total, **kwargs)
    assert len(expected) == total + 1
    for count, lr in enumerate(expected):
        assert sched(count) == pytest.approx(lr, rel=1e-15, abs=0), (name, count)
    final = max_lr / kwargs.get("div_factor", 25.0) / kwargs.get("final_div_factor", 1e4)
    for count in (total + 1, total + 2, 10 * total + 7, 2**53):
        assert sched(count) == final                    # documented: stays at min_lr


@pytest.mark.parametrize("name", sorted(TORCH_ONE_CYCLE))
def test_one_cycle_matches_transcription(name):
    (max_lr, total, kwargs), _ = TORCH_ONE_CYCLE[name]
    _assert_matches(one_cycle(max_lr, total, **kwargs),
                    torch_one_cycle_lr(max_lr, total, **kwargs), range(total + 1), rtol=1e-15)


ONE_CYCLE_LIVE = [
    (1.0, 10, {}), (0.1, 37, {"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}),
    (1.0, 10, {"three_phase": True}), (0.5, 23, {"pct_start": 0.4, "three_phase": True}),
    (1.0, 1, {}), (1.0, 10, {"pct_start": 0.0}), (0.3, 2, {}), (0.3, 3, {"pct_start": 0.5}),
    (2.0, 101, {"pct_start": 0.45, "three_phase": True, "final_div_factor": 50.0}),
    (0.01, 64, {"pct_start": 0.7, "div_factor": 3.0}), (1.0, 10, {"pct_start": 0.9}),
    (1.0, 10, {"pct_start": 0.6, "three_phase": True}), (0.0, 5, {}),
]


@pytest.mark.parametrize("max_lr, total, kwargs", ONE_CYCLE_LIVE)
def test_one_cycle_matches_live_torch(max_lr, total, kwargs):
    torch = require_torch()
    import warnings
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr, total_steps=total, anneal_strategy="cos", cycle_momentum=False, **kwargs)
    sched = one_cycle(max_lr, total, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # torch's "step() order" warning
        for count in range(total + 1):
            if count:
                opt.step()
                scheduler.step()
            assert sched(count) == pytest.approx(scheduler.get_last_lr()[0], rel=1e-15, abs=0)
        opt.step()
        with pytest.raises(ValueError, match="Tried to step"):   # torch stops here
            scheduler.step()
    assert sched(total + 1) == max_lr / kwargs.get("div_factor", 25.0) / kwargs.get(
        "final_div_factor", 1e4)


def test_one_cycle_table_is_torch_when_torch_is_there():
    torch = require_torch()
    import warnings
    for name, ((max_lr, total, kwargs), expected) in TORCH_ONE_CYCLE.items():
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=0.1)
        s = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr, total_steps=total,
                                                anneal_strategy="cos", cycle_momentum=False,
                                                **kwargs)
        got = [s.get_last_lr()[0]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(total):
                opt.step()
                s.step()
                got.append(s.get_last_lr()[0])
        assert got == expected, name


@pytest.mark.parametrize("pct_start, total, three_phase, at", [
    (0.1, 10, False, 0), (0.25, 4, False, 0), (1.0, 10, False, 10), (1.0, 1, False, 0),
    (0.1, 10, True, 0), (0.6, 5, True, 5)])
def test_one_cycle_refuses_what_torch_divides_by_zero(pct_start, total, three_phase, at):
    with pytest.raises(ValueError, match=rf"pct_start = {pct_start} with total_steps = {total} "
                                         rf"gives phase \d of the cycle zero length .*count {at}"):
        one_cycle(1.0, total, pct_start=pct_start, three_phase=three_phase)
    torch = require_torch()
    import warnings
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    with warnings.catch_warnings(), pytest.raises(ZeroDivisionError):
        warnings.simplefilter("ignore")
        s = torch.optim.lr_scheduler.OneCycleLR(opt, 1.0, total_steps=total, pct_start=pct_start,
                                                three_phase=three_phase, cycle_momentum=False)
        for _ in range(at):
            opt.step()
            s.step()


def test_one_cycle_attributes():
    sched = one_cycle(0.5, 100, pct_start=0.25, div_factor=10, final_div_factor=100,
                      three_phase=True, per="epoch")
    assert (sched.max_lr, sched.total_steps, sched.pct_start, sched.div_factor,
            sched.final_div_factor, sched.three_phase, sched.per) == \
        (0.5, 100, 0.25, 10.0, 100.0, True, "epoch")
    assert type(sched.div_factor) is float and type(sched.pct_start) is float


# ------------------------------------------------------------------------------------------------
# join_schedules
# ------------------------------------------------------------------------------------------------

def test_join_schedules_by_hand():
    sched = join_schedules([constant(0.1, per="step"), linear_schedule(1.0, 0.0, 4),
                            constant(0.01, per="step")], [3, 5])
    # counts 0-2: 0.1; 3, 4: the linear schedule at counts 0, 1; from 5: 0.01
    assert [sched(c) for c in range(8)] == [0.1, 0.1, 0.1, 1.0, 0.75, 0.01, 0.01, 0.01]


def test_join_schedules_each_counts_from_its_boundary():
    seen = []

    def record(count):
        seen.append(count)
        return 0.5

    sched = join_schedules([linear_schedule(0.0, 1.0, 10), record], [7])
    assert sched(6) == pytest.approx(0.6, rel=1e-15) and seen == []
    assert [sched(c) for c in (7, 8, 20)] == [0.5, 0.5, 0.5]
    assert seen == [0, 1, 13]


def test_join_schedules_equal_boundaries_skip_a_schedule():
    sched = join_schedules([constant(1.0, per="step"), constant(2.0, per="step"),
                            constant(3.0, per="step")], [4, 4])
    assert [sched(c) for c in range(7)] == [1.0] * 4 + [3.0] * 3   # 2.0 is never used
    zero = join_schedules([constant(1.0, per="step"), cosine_decay(0.5, 2)], [0])
    assert [zero(c) for c in range(4)] == [0.5, 0.25, 0.0, 0.0]     # boundary 0: from count 0
    single = join_schedules([cosine_decay(0.5, 2)], [])
    assert [single(c) for c in range(4)] == [0.5, 0.25, 0.0, 0.0]


@pytest.mark.parametrize("boundaries", [[3], [0], [2, 9], [4, 4, 10], [1, 2, 3]])
def test_join_schedules_matches_optax(boundaries):
    pool = [(linear_schedule(0.0, 0.4, 3), optax_linear_schedule(0.0, 0.4, 3)),
            (cosine_decay(0.4, 5, alpha=0.1), optax_cosine_decay_schedule(0.4, 5, 0.1)),
            (polynomial_decay(0.3, 0.05, 2.0, 4, transition_begin=1),
             optax_polynomial_schedule(0.3, 0.05, 2.0, 4, 1)),
            (linear_schedule(0.05, 0.2, 6), optax_linear_schedule(0.05, 0.2, 6))]
    n = len(boundaries) + 1
    sched = join_schedules([s for s, _ in pool[:n]], boundaries)
    ref = optax_join_schedules([r for _, r in pool[:n]], boundaries)
    _assert_matches(sched, ref, range(max(boundaries) + 12))
    _assert_matches(sched, ref, [10**6, 2**53])


def test_join_schedules_nested():
    inner = join_schedules([linear_schedule(0.0, 1.0, 2), constant(1.0, per="step")], [2])
    outer = join_schedules([inner, cosine_decay(1.0, 4)], [5])
    assert [outer(c) for c in range(10)] == pytest.approx(
        [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.5 + math.sqrt(2) / 4, 0.5, 0.5 - math.sqrt(2) / 4, 0.0],
        rel=1e-15, abs=1e-17)
    assert eval(repr(outer), vars(schedules))(6) == outer(6)


def test_join_schedules_per():
    step_parts = [linear_schedule(0.0, 1.0, 2), cosine_decay(1.0, 4)]
    assert join_schedules(step_parts, [2]).per == "step"             # taken from the parts
    assert join_schedules(step_parts, [2], per="step").per == "step"
    epoch_parts = [constant(0.1), step_decay(0.1, 0.5, 2)]
    assert join_schedules(epoch_parts, [3]).per == "epoch"
    plain = join_schedules([_halve_every_2, _halve_every_2], [4])    # none has a per: "step"
    assert plain.per == "step" and all(s.per == "step" for s in plain.schedules)
    assert join_schedules([_halve_every_2, _halve_every_2], [4], per="epoch").per == "epoch"
    mixed = join_schedules([_halve_every_2, cosine_decay(1.0, 4, per="epoch")], [4])
    assert mixed.per == "epoch" and mixed.schedules[0].per == "epoch"
    assert mixed.schedules[0].fn is _halve_every_2
    assert join_schedules([_StepCallable(), _halve_every_2], [2]).per == "step"


def test_join_schedules_per_mismatch():
    with pytest.raises(ValueError, match=r"the schedules disagree on per \(schedules\[0\]\.per="
                                         r"'step', schedules\[1\]\.per='epoch'\)"):
        join_schedules([linear_schedule(0.0, 1.0, 2), constant(0.1)], [2])
    with pytest.raises(ValueError, match=r"per='epoch' contradicts schedules\[1\]\.per='step'"):
        join_schedules([_halve_every_2, cosine_decay(1.0, 4)], [2], per="epoch")
    with pytest.raises(ValueError, match=r"per='epoch' contradicts schedules\[0\]\.per='step'"):
        join_schedules([_StepCallable(), _halve_every_2], [2], per="epoch")
    with pytest.raises(ValueError, match="per must be 'epoch' or 'step', got 'steps'"):
        join_schedules([_halve_every_2], [], per="steps")

    def bad(count):
        return 0.1
    bad.per = "iteration"
    with pytest.raises(ValueError, match=r"schedules\[1\]\.per must be 'epoch' or 'step', "
                                         r"got 'iteration'"):
        join_schedules([_halve_every_2, bad], [2])


def test_join_schedules_checks_what_a_plain_callable_returns():
    sched = join_schedules([constant(0.1, per="step"), lambda c: -1.0], [2])
    assert sched(1) == 0.1
    with pytest.raises(ValueError, match=r"the lr callable \(a lambda\) returned -1.0 at count 0"):
        sched(2)


def test_join_schedules_numpy_boundaries_and_attributes():
    parts = (linear_schedule(0.0, 1.0, 2), cosine_decay(1.0, 4))
    sched = join_schedules(list(parts), np.array([2], dtype=np.int32))
    assert sched.boundaries == (2,) and type(sched.boundaries[0]) is int
    assert sched.schedules == parts and sched.schedules[0] is parts[0]
    assert sched(np.int64(3)) == parts[1](1)


# ------------------------------------------------------------------------------------------------
# The optax and PyTorch schedules: every ValueError / TypeError path at construction
# ------------------------------------------------------------------------------------------------

_LIN, _COS = linear_schedule(0.0, 1.0, 2), cosine_decay(1.0, 4)

BAD_ARGS_NEW = [
    # linear_schedule
    (linear_schedule, (-0.1, 0.0, 10), {}, ValueError, r"init must be a finite number >= 0"),
    (linear_schedule, ("1", 0.0, 10), {}, TypeError, r"init must be a real number, got str"),
    (linear_schedule, (1.0, -0.5, 10), {}, ValueError,
     r"end must be a finite number >= 0, got -0.5"),
    (linear_schedule, (1.0, math.inf, 10), {}, ValueError, r"end must be a finite number >= 0"),
    (linear_schedule, (1.0, None, 10), {}, TypeError, r"end must be a real number, got NoneType"),
    (linear_schedule, (1.0, 0.0, -1), {}, ValueError,
     r"transition_steps must be an integer >= 0, got -1"),
    (linear_schedule, (1.0, 0.0, 10.0), {}, TypeError,
     r"transition_steps must be an integer >= 0, got float"),
    (linear_schedule, (1.0, 0.0, True), {}, TypeError,
     r"transition_steps must be an integer >= 0, got bool"),
    (linear_schedule, (1.0, 0.0, 10), {"transition_begin": -2}, ValueError,
     r"transition_begin must be an integer >= 0, got -2"),
    (linear_schedule, (1.0, 0.0, 10), {"transition_begin": 1.5}, TypeError,
     r"transition_begin must be an integer >= 0, got float"),
    # polynomial_decay
    (polynomial_decay, (1.0, 0.0, -1.0, 10), {}, ValueError,
     r"power must be a finite number >= 0, got -1.0"),
    (polynomial_decay, (1.0, 0.0, math.nan, 10), {}, ValueError,
     r"power must be a finite number >= 0"),
    (polynomial_decay, (1.0, 0.0, "2", 10), {}, TypeError, r"power must be a real number, got str"),
    (polynomial_decay, (1.0, 0.0, 2.0, -3), {}, ValueError,
     r"transition_steps must be an integer >= 0, got -3"),
    (polynomial_decay, (1.0, 0.0, 2.0, None), {}, TypeError,
     r"transition_steps must be an integer >= 0, got NoneType"),
    (polynomial_decay, (1.0, 0.0, 2.0, 10), {"transition_begin": -1}, ValueError,
     r"transition_begin must be an integer >= 0, got -1"),
    (polynomial_decay, (-1.0, 0.0, 2.0, 10), {}, ValueError, r"init must be a finite number >= 0"),
    # cosine_decay
    (cosine_decay, (-1.0, 10), {}, ValueError, r"lr0 must be a finite number >= 0, got -1.0"),
    (cosine_decay, ([1.0], 10), {}, TypeError, r"lr0 must be a real number, got list"),
    (cosine_decay, (1.0, 0), {}, ValueError, r"decay_steps must be an integer >= 1, got 0"),
    (cosine_decay, (1.0, -10), {}, ValueError, r"decay_steps must be an integer >= 1, got -10"),
    (cosine_decay, (1.0, 10.0), {}, TypeError, r"decay_steps must be an integer >= 1, got float"),
    (cosine_decay, (1.0, 10), {"alpha": -0.1}, ValueError,
     r"alpha must be a finite number >= 0, got -0.1"),
    (cosine_decay, (1.0, 10), {"alpha": "0"}, TypeError, r"alpha must be a real number, got str"),
    (cosine_decay, (1.0, 10), {"exponent": -1.0}, ValueError,
     r"exponent must be a finite number >= 0, got -1.0"),
    (cosine_decay, (1.0, 10), {"exponent": math.inf}, ValueError,
     r"exponent must be a finite number >= 0"),
    # warmup_cosine_decay
    (warmup_cosine_decay, (-0.1, 1.0, 2, 10), {}, ValueError, r"init must be a finite number >= 0"),
    (warmup_cosine_decay, (0.0, -1.0, 2, 10), {}, ValueError,
     r"peak must be a finite number >= 0, got -1.0"),
    (warmup_cosine_decay, (0.0, "1", 2, 10), {}, TypeError, r"peak must be a real number, got str"),
    (warmup_cosine_decay, (0.0, 1.0, -1, 10), {}, ValueError,
     r"warmup_steps must be an integer >= 0, got -1"),
    (warmup_cosine_decay, (0.0, 1.0, 2.0, 10), {}, TypeError,
     r"warmup_steps must be an integer >= 0, got float"),
    (warmup_cosine_decay, (0.0, 1.0, 2, 0), {}, ValueError,
     r"decay_steps must be an integer >= 1, got 0"),
    (warmup_cosine_decay, (0.0, 1.0, 2, "10"), {}, TypeError,
     r"decay_steps must be an integer >= 1, got str"),
    (warmup_cosine_decay, (0.0, 1.0, 10, 10), {}, ValueError,
     r"decay_steps must be an integer > warmup_steps = 10 \(it counts the warm-up too.*got 10"),
    (warmup_cosine_decay, (0.0, 1.0, 10, 4), {}, ValueError,
     r"decay_steps must be an integer > warmup_steps = 10 .*got 4"),
    (warmup_cosine_decay, (0.0, 1.0, 2, 10), {"end": -0.1}, ValueError,
     r"end must be a finite number >= 0, got -0.1"),
    (warmup_cosine_decay, (0.0, 1.0, 2, 10), {"exponent": -2}, ValueError,
     r"exponent must be a finite number >= 0, got -2"),
    (warmup_cosine_decay, (0.0, 1e-310, 2, 10), {"end": 1.0}, ValueError,
     r"warmup_cosine_decay: end / peak overflows a float"),
    # one_cycle
    (one_cycle, (-1.0, 10), {}, ValueError, r"max_lr must be a finite number >= 0, got -1.0"),
    (one_cycle, ("1", 10), {}, TypeError, r"max_lr must be a real number, got str"),
    (one_cycle, (1.0, 0), {}, ValueError, r"total_steps must be an integer >= 1, got 0"),
    (one_cycle, (1.0, -5), {}, ValueError, r"total_steps must be an integer >= 1, got -5"),
    (one_cycle, (1.0, 10.0), {}, TypeError, r"total_steps must be an integer >= 1, got float"),
    (one_cycle, (1.0, 10), {"pct_start": 1.5}, ValueError,
     r"pct_start must be a number in \[0, 1\], got 1.5"),
    (one_cycle, (1.0, 10), {"pct_start": -0.1}, ValueError,
     r"pct_start must be a number in \[0, 1\], got -0.1"),
    (one_cycle, (1.0, 10), {"pct_start": math.nan}, ValueError,
     r"pct_start must be a number in \[0, 1\], got nan"),
    (one_cycle, (1.0, 10), {"pct_start": "0.3"}, TypeError,
     r"pct_start must be a real number, got str"),
    (one_cycle, (1.0, 10), {"div_factor": 0.0}, ValueError,
     r"div_factor must be a finite number > 0, got 0.0"),
    (one_cycle, (1.0, 10), {"div_factor": -25}, ValueError,
     r"div_factor must be a finite number > 0, got -25"),
    (one_cycle, (1.0, 10), {"div_factor": None}, TypeError,
     r"div_factor must be a real number, got NoneType"),
    (one_cycle, (1.0, 10), {"final_div_factor": 0}, ValueError,
     r"final_div_factor must be a finite number > 0, got 0"),
    (one_cycle, (1.0, 10), {"final_div_factor": math.inf}, ValueError,
     r"final_div_factor must be a finite number > 0"),
    (one_cycle, (1.0, 10), {"three_phase": 1}, TypeError,
     r"three_phase must be True or False, got 1 \(int\)"),
    (one_cycle, (1.0, 10), {"div_factor": 1e-320}, ValueError,
     r"one_cycle: max_lr / div_factor overflows a float"),
    (one_cycle, (1e300, 10), {"div_factor": 1.0, "final_div_factor": 1e-10}, ValueError,
     r"one_cycle: max_lr / div_factor / final_div_factor overflows a float"),
    # join_schedules
    (join_schedules, ([_LIN, _COS], [2, 5]), {}, ValueError,
     r"schedules must have len\(boundaries\) \+ 1 = 3 entries \(one per interval\), got 2"),
    (join_schedules, ([_LIN, _COS, _LIN], [2]), {}, ValueError,
     r"schedules must have len\(boundaries\) \+ 1 = 2 entries .*got 3"),
    (join_schedules, ([], []), {}, ValueError,
     r"schedules must have len\(boundaries\) \+ 1 = 1 entries .*got 0"),
    (join_schedules, ([_LIN, _COS, _LIN], [5, 2]), {}, ValueError,
     r"boundaries must be non-decreasing, got \[5, 2\]: boundaries\[1\] = 2 < boundaries\[0\] = 5"),
    (join_schedules, ([_LIN, _COS], [-1]), {}, ValueError,
     r"boundaries\[0\] must be an integer >= 0, got -1"),
    (join_schedules, ([_LIN, _COS], [2.0]), {}, TypeError,
     r"boundaries\[0\] must be an integer >= 0, got float"),
    (join_schedules, ([_LIN, _COS], [True]), {}, TypeError,
     r"boundaries\[0\] must be an integer >= 0, got bool"),
    (join_schedules, ([_LIN, 0.1], [2]), {}, TypeError,
     r"schedules\[1\] must be a Schedule or a callable count -> lr, got float \(constant\(lr\)"),
    (join_schedules, (["x", _COS], [2]), {}, TypeError,
     r"schedules\[0\] must be a Schedule or a callable count -> lr, got str"),
    (join_schedules, (_LIN, []), {}, TypeError,
     r"schedules must be a sequence .*got LinearSchedule"),
    (join_schedules, ([_LIN, _COS], 2), {}, TypeError, r"boundaries must be a sequence .*got int"),
    (join_schedules, ([_LIN, lambda: 0.1], [2]), {}, TypeError,
     r"lr callable must take one argument \(the count\)"),
]


@pytest.mark.parametrize("factory, args, kwargs, exc, match", BAD_ARGS_NEW,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(BAD_ARGS_NEW)])
def test_bad_arguments_new_schedules(factory, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        factory(*args, **kwargs)


def test_new_schedules_valid_edge_arguments():
    assert linear_schedule(np.float32(0.5), np.int64(0), np.int16(2))(1) == 0.25
    assert type(linear_schedule(np.float32(0.5), 0, 2).init) is float
    assert type(cosine_decay(1.0, np.int64(4)).decay_steps) is int
    assert one_cycle(1.0, 10, pct_start=np.float32(0.5)).pct_start == 0.5
    assert one_cycle(1.0, 10, pct_start=1 / 2)(4) == 1.0        # any real pct_start, not float only
    assert one_cycle(1.0, 10, three_phase=np.bool_(True)).three_phase is True
    assert one_cycle(0.0, 10)(3) == 0.0
    assert warmup_cosine_decay(0, 0, 0, 1)(0) == 0.0


@pytest.mark.parametrize("name", [n for n in FACTORIES if n in DEFAULT_PER])
def test_new_schedules_huge_counts(name):
    sched = FACTORIES[name]()
    assert sched(2 ** 53) >= 0.0
    assert sched(2 ** 53) == sched(10 ** 6)              # every one has ended by then
    with pytest.raises(ValueError, match="count must be an integer below"):
        sched(10 ** 400)


@pytest.mark.parametrize("name", [n for n in FACTORIES if n in DEFAULT_PER])
def test_new_schedules_values_are_finite_and_nonnegative(name):
    sched = FACTORIES[name]()
    values = [sched(c) for c in range(40)]
    assert all(type(v) is float and math.isfinite(v) and v >= 0.0 for v in values)


def test_new_schedules_repr():
    assert repr(linear_schedule(1.0, 0.0, 10)) == \
        "linear_schedule(init=1.0, end=0.0, transition_steps=10, transition_begin=0, per='step')"
    assert repr(polynomial_decay(1, 0.5, 2, 10, transition_begin=3, per="epoch")) == (
        "polynomial_decay(init=1.0, end=0.5, power=2.0, transition_steps=10, transition_begin=3, "
        "per='epoch')")
    assert repr(cosine_decay(0.1, 100)) == \
        "cosine_decay(lr0=0.1, decay_steps=100, alpha=0.0, exponent=1.0, per='step')"
    assert repr(warmup_cosine_decay(0.0, 1e-3, 100, 1000, end=1e-5)) == (
        "warmup_cosine_decay(init=0.0, peak=0.001, warmup_steps=100, decay_steps=1000, "
        "end=1e-05, exponent=1.0, per='step')")
    assert repr(one_cycle(0.1, 500)) == (
        "one_cycle(max_lr=0.1, total_steps=500, pct_start=0.3, div_factor=25.0, "
        "final_div_factor=10000.0, three_phase=False, per='step')")
    assert repr(join_schedules([_LIN, _COS], [2])) == (
        "join_schedules(schedules=(linear_schedule(init=0.0, end=1.0, transition_steps=2, "
        "transition_begin=0, per='step'), cosine_decay(lr0=1.0, decay_steps=4, alpha=0.0, "
        "exponent=1.0, per='step')), boundaries=(2,), per='step')")


def test_new_schedules_are_exported():
    for name in ("linear_schedule", "polynomial_decay", "cosine_decay", "warmup_cosine_decay",
                 "one_cycle", "join_schedules"):
        assert name in schedules.__all__ and name in fastopt.__all__
        assert getattr(fastopt, name) is getattr(schedules, name)


# ------------------------------------------------------------------------------------------------
# The optax and PyTorch schedules driving an optimizer
# ------------------------------------------------------------------------------------------------

def test_adam_with_warmup_cosine_decay_steps_with_the_right_lr():
    rng = np.random.default_rng(9)
    sched = warmup_cosine_decay(0.0, 1e-2, warmup_steps=3, decay_steps=10, end=1e-4)
    params = {"W1": rng.standard_normal((4, 3)), "b1": rng.standard_normal((4, 1))}
    ref = {k: a.copy() for k, a in params.items()}
    m = {k: np.zeros_like(a) for k, a in params.items()}
    v = {k: np.zeros_like(a) for k, a in params.items()}
    opt = fastopt.Adam(params, lr=sched)
    # per="step": update t (from 1) uses sched(t - 1), the count of updates already applied
    # (optax's and torch's); the rates by hand, from optax's formula
    expected = {0: 0.0, 1: 1e-2 / 3, 2: 2e-2 / 3, 3: 1e-2, 10: 1e-4, 11: 1e-4, 12: 1e-4}
    cos7 = [0.5 * (1 + math.cos(math.pi * k / 7)) for k in range(8)]
    for c in range(4, 11):
        expected[c] = 1e-2 * ((1 - 1e-2) * cos7[c - 3] + 1e-2)
    for t in range(1, 14):
        assert opt.lr == pytest.approx(expected[t - 1], rel=1e-13, abs=1e-300), t
        assert opt.lr == sched(t - 1)
        grads = {"d" + k: rng.standard_normal(a.shape) for k, a in params.items()}
        opt.step(grads)
        for k in ref:
            fastopt.adam_step(ref[k], grads["d" + k], m[k], v[k], step=t, lr=sched(t - 1))
            np.testing.assert_array_equal(params[k], ref[k])
    opt.end_epoch()                                       # epochs do not move a step schedule
    assert opt.lr == sched(13) == pytest.approx(1e-4, rel=1e-15)


def test_sgd_with_one_cycle_and_join_per_step():
    rng = np.random.default_rng(3)
    for sched in (one_cycle(0.5, 8), join_schedules([linear_schedule(0.0, 0.5, 2),
                                                     cosine_decay(0.5, 5)], [2])):
        params = [rng.standard_normal(6)]
        ref = [params[0].copy()]
        opt = fastopt.SGD(params, lr=sched)
        for t in range(1, 12):                        # runs past the end of both schedules
            assert opt.lr == sched(t - 1)
            g = rng.standard_normal(6)
            opt.step([g])
            fastopt.sgd_step(ref[0], g, lr=sched(t - 1))
            np.testing.assert_array_equal(params[0], ref[0])


def test_epoch_counting_new_schedule():
    sched = cosine_decay(0.1, 4, per="epoch")
    opt = fastopt.SGD([np.zeros(2)], lr=sched)
    opt.step([np.ones(2)])
    opt.step([np.ones(2)])
    assert opt.lr == 0.1                                  # still epoch 0
    opt.end_epoch()
    opt.end_epoch()
    assert opt.lr == pytest.approx(0.05, rel=1e-15)       # epoch 2 of 4: halfway


def test_new_schedules_checkpoint_round_trip(tmp_path):
    sched = warmup_cosine_decay(0.0, 0.1, 2, 8)
    params = {"w": np.arange(3.0)}
    opt = fastopt.Adam(params, lr=sched)
    for _ in range(3):
        opt.step({"dw": np.ones(3)})
    fastopt.save_state(tmp_path / "ckpt.npz", opt)
    other = fastopt.Adam({"w": params["w"].copy()}, lr=pickle.loads(pickle.dumps(sched)))
    fastopt.load_state(tmp_path / "ckpt.npz", other)
    assert other.lr == opt.lr == sched(3)


def test_step_schedules_run_in_step_with_a_torch_loop():
    # torch: optimizer.step() then scheduler.step(); the first update runs at the scheduler's
    # count 0.  A fastopt optimizer with one_cycle applies the same rate at every update.
    torch = require_torch()
    w = torch.nn.Parameter(torch.zeros(1))
    topt = torch.optim.SGD([w], lr=0.5)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.5, total_steps=12)
    opt = fastopt.SGD([np.zeros(1)], lr=one_cycle(0.5, 12))
    for t in range(12):
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-15), t
        w.grad = torch.ones(1)
        topt.step()
        tsched.step()
        opt.step([np.ones(1)])
