"""Tests for fastopt.schedules: hand-derived values, the `per` contract, every error path."""

import doctest
import math
import pickle

import numpy as np
import pytest

import fastopt
from fastopt import schedules
from fastopt.schedules import (
    Schedule,
    as_schedule,
    constant,
    exponential_decay,
    inverse_sqrt_decay,
    inverse_time_decay,
    piecewise_constant,
    step_decay,
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
}


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
    assert FACTORIES[name]().per == "epoch"
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
    assert sched.per == "epoch"


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
