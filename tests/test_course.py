"""fastopt.course: the assignment's functions on fastopt's kernels.

The oracles below are the programming assignment's formulas in plain NumPy (its
``random_mini_batches`` verbatim); every function is compared with them over several steps, in
float64 and float32, element by element, plus values derived by hand from the course."""

import doctest
import math

import numpy as np
import pytest

import fastopt
from fastopt import course
from fastopt.course import (
    initialize_adam,
    initialize_velocity,
    random_mini_batches,
    schedule_lr_decay,
    update_lr,
    update_parameters_with_adam,
    update_parameters_with_gd,
    update_parameters_with_momentum,
)

from conftest import FLOAT_DTYPES, Snapshot, assert_bitwise, assert_close


# ------------------------------------------------------------------------------------------------
# The oracle: the assignment's code in plain NumPy.
# ------------------------------------------------------------------------------------------------

def oracle_gd(parameters, grads, learning_rate):
    parameters = dict(parameters)
    L = len(parameters) // 2
    for l in range(1, L + 1):
        parameters["W" + str(l)] = parameters["W" + str(l)] - learning_rate * grads["dW" + str(l)]
        parameters["b" + str(l)] = parameters["b" + str(l)] - learning_rate * grads["db" + str(l)]
    return parameters


def oracle_momentum(parameters, grads, v, beta, learning_rate):
    parameters, v = dict(parameters), dict(v)
    L = len(parameters) // 2
    for l in range(1, L + 1):
        v["dW" + str(l)] = beta * v["dW" + str(l)] + (1 - beta) * grads["dW" + str(l)]
        v["db" + str(l)] = beta * v["db" + str(l)] + (1 - beta) * grads["db" + str(l)]
        parameters["W" + str(l)] = parameters["W" + str(l)] - learning_rate * v["dW" + str(l)]
        parameters["b" + str(l)] = parameters["b" + str(l)] - learning_rate * v["db" + str(l)]
    return parameters, v


def oracle_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999,
                epsilon=1e-8):
    parameters, v, s = dict(parameters), dict(v), dict(s)
    L = len(parameters) // 2
    v_corrected, s_corrected = {}, {}
    for l in range(1, L + 1):
        for p in ("W", "b"):
            d = "d" + p + str(l)
            v[d] = beta1 * v[d] + (1 - beta1) * grads[d]
            v_corrected[d] = v[d] / (1 - beta1 ** t)
            s[d] = beta2 * s[d] + (1 - beta2) * np.power(grads[d], 2)
            s_corrected[d] = s[d] / (1 - beta2 ** t)
            parameters[p + str(l)] = parameters[p + str(l)] - learning_rate * v_corrected[d] / (
                np.sqrt(s_corrected[d]) + epsilon)
    return parameters, v, s, v_corrected, s_corrected


def oracle_random_mini_batches(X, Y, mini_batch_size=64, seed=0):
    """The assignment's function, verbatim."""
    np.random.seed(seed)            # To make your "random" minibatches the same as ours
    m = X.shape[1]                  # number of training examples
    mini_batches = []

    # Step 1: Shuffle (X, Y)
    permutation = list(np.random.permutation(m))
    shuffled_X = X[:, permutation]
    shuffled_Y = Y[:, permutation].reshape((1, m))

    inc = mini_batch_size  # noqa: F841

    # Step 2 - Partition (shuffled_X, shuffled_Y).
    # Cases with a complete mini batch size only i.e each of 64 examples.
    num_complete_minibatches = math.floor(m / mini_batch_size) # number of mini batches of size mini_batch_size in your partitionning  # noqa: E501
    for k in range(0, num_complete_minibatches):
        mini_batch_X = shuffled_X[:, k * mini_batch_size : (k + 1) * mini_batch_size]
        mini_batch_Y = shuffled_Y[:, k * mini_batch_size : (k + 1) * mini_batch_size]
        mini_batch = (mini_batch_X, mini_batch_Y)
        mini_batches.append(mini_batch)

    # For handling the end case (last mini-batch < mini_batch_size i.e less than 64)
    if m % mini_batch_size != 0:
        mini_batch_X = shuffled_X[:, int(m / mini_batch_size) * mini_batch_size :]
        mini_batch_Y = shuffled_Y[:, int(m / mini_batch_size) * mini_batch_size :]
        mini_batch = (mini_batch_X, mini_batch_Y)
        mini_batches.append(mini_batch)

    return mini_batches


def oracle_update_lr(learning_rate0, epoch_num, decay_rate):
    return learning_rate0 / (1 + decay_rate * epoch_num)


def oracle_schedule_lr_decay(learning_rate0, epoch_num, decay_rate, time_interval=1000):
    return learning_rate0 / (1 + decay_rate * np.floor(epoch_num / time_interval))


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

LAYERS = [5, 4, 3, 1]
LR = 0.05


def make_parameters(dtype, seed=1, layers=LAYERS):
    rng = np.random.default_rng(seed)
    return {f"{p}{l}": rng.standard_normal((layers[l], layers[l - 1] if p == "W" else 1))
            .astype(dtype) for l in range(1, len(layers)) for p in ("W", "b")}


def make_grads(parameters, rng, extra=True):
    """Gradients like the assignment's backward pass, with its extra dA/dZ entries."""
    grads = {}
    for k, p in parameters.items():
        grads["d" + k] = rng.standard_normal(p.shape).astype(p.dtype)
        if extra and k.startswith("W"):
            grads["dA" + k[1:]] = rng.standard_normal((p.shape[0], 7)).astype(p.dtype)
            grads["dZ" + k[1:]] = rng.standard_normal((p.shape[0], 7)).astype(p.dtype)
    return grads


def copies(d):
    return {k: v.copy() for k, v in d.items()}


def assert_dict_close(actual, desired, what):
    assert sorted(actual) == sorted(desired), what
    for k in desired:
        assert_close(actual[k], desired[k], f"{what}[{k}]")


# ------------------------------------------------------------------------------------------------
# initialize_velocity / initialize_adam
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_initialize_velocity_and_adam(dtype):
    parameters = make_parameters(dtype)
    v = initialize_velocity(parameters)
    v2, s = initialize_adam(parameters)
    expected_keys = sorted("d" + k for k in parameters)
    buffers = []
    for state in (v, v2, s):
        assert sorted(state) == expected_keys
        for k, p in parameters.items():
            a = state["d" + k]
            assert a.shape == p.shape and a.dtype == p.dtype
            assert a.flags.c_contiguous and a.flags.writeable
            assert not a.any()
            buffers.append(a)
    for i, a in enumerate(buffers):            # every state array is its own buffer
        for b in buffers[i + 1:]:
            assert not np.shares_memory(a, b)


def test_initialize_ignores_extra_layers_rule():
    # L = len(parameters) // 2, as the assignment: keys beyond W1..bL are not read
    parameters = make_parameters(np.float64, layers=[3, 2])
    assert sorted(initialize_velocity(parameters)) == ["dW1", "db1"]


# ------------------------------------------------------------------------------------------------
# Parity with the assignment's formulas, several steps, float32 and float64
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_gd_matches_assignment(dtype):
    rng = np.random.default_rng(0)
    parameters = make_parameters(dtype)
    expected = copies(parameters)
    arrays = {k: id(a) for k, a in parameters.items()}
    for _ in range(5):
        grads = make_grads(parameters, rng)
        out = update_parameters_with_gd(parameters, grads, LR)
        expected = oracle_gd(expected, grads, LR)
        assert out is parameters
        assert {k: id(a) for k, a in out.items()} == arrays       # updated in place
    assert_dict_close(parameters, expected, "parameters")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_momentum_matches_assignment(dtype):
    rng = np.random.default_rng(1)
    parameters = make_parameters(dtype)
    v = initialize_velocity(parameters)
    exp_p, exp_v = copies(parameters), copies(v)
    ids = {k: id(a) for k, a in v.items()}
    for _ in range(6):
        grads = make_grads(parameters, rng)
        out_p, out_v = update_parameters_with_momentum(parameters, grads, v, beta=0.9,
                                                       learning_rate=LR)
        exp_p, exp_v = oracle_momentum(exp_p, grads, exp_v, 0.9, LR)
        assert out_p is parameters and out_v is v
        assert {k: id(a) for k, a in out_v.items()} == ids
    assert_dict_close(parameters, exp_p, "parameters")
    assert_dict_close(v, exp_v, "v")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("hyper", [{}, {"learning_rate": 0.003, "beta1": 0.8, "beta2": 0.99,
                                        "epsilon": 1e-6}])
def test_adam_matches_assignment(dtype, hyper):
    rng = np.random.default_rng(2)
    parameters = make_parameters(dtype)
    v, s = initialize_adam(parameters)
    exp_p, exp_v, exp_s = copies(parameters), copies(v), copies(s)
    for t in range(1, 8):
        grads = make_grads(parameters, rng)
        out = update_parameters_with_adam(parameters, grads, v, s, t, **hyper)
        exp = oracle_adam(exp_p, grads, exp_v, exp_s, t, **hyper)
        exp_p, exp_v, exp_s = exp[:3]
        assert len(out) == 5
        assert out[0] is parameters and out[1] is v and out[2] is s
        assert_dict_close(out[3], exp[3], f"v_corrected t={t}")
        assert_dict_close(out[4], exp[4], f"s_corrected t={t}")
    assert_dict_close(parameters, exp_p, "parameters")
    assert_dict_close(v, exp_v, "v")
    assert_dict_close(s, exp_s, "s")


def test_adam_is_one_call_equal_to_a_loop_of_adam_step():
    """The multi-array call updates every array bit for bit as fastopt.adam_step would."""
    rng = np.random.default_rng(3)
    parameters = make_parameters(np.float32)
    v, s = initialize_adam(parameters)
    ref_p, ref_v, ref_s = copies(parameters), copies(v), copies(s)
    for t in (1, 2, 3):
        grads = make_grads(parameters, rng)
        update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.02)
        for k in ref_p:
            fastopt.adam_step(ref_p[k], grads["d" + k], ref_v["d" + k], ref_s["d" + k], step=t,
                              lr=0.02)
    for k in ref_p:
        assert_bitwise(parameters[k], ref_p[k], k)
        assert_bitwise(v["d" + k], ref_v["d" + k], k)


def test_gd_and_momentum_equal_the_public_kernels_bitwise():
    rng = np.random.default_rng(4)
    parameters = make_parameters(np.float64)
    v = initialize_velocity(parameters)
    ref_p, ref_v = copies(parameters), copies(v)
    grads = make_grads(parameters, rng)
    update_parameters_with_gd(parameters, grads, 0.1)
    update_parameters_with_momentum(parameters, grads, v, 0.9, 0.1)
    for k in ref_p:
        fastopt.sgd_step(ref_p[k], grads["d" + k], lr=0.1)
        fastopt.momentum_step(ref_p[k], grads["d" + k], ref_v["d" + k], lr=0.1, beta=0.9)
        assert_bitwise(parameters[k], ref_p[k], k)
        assert_bitwise(v["d" + k], ref_v["d" + k], k)


def test_non_contiguous_gradients_are_read():
    """A gradient view (here a transpose) is read as its values; parameters stay in place."""
    rng = np.random.default_rng(5)
    parameters = make_parameters(np.float64)
    grads = {k: np.asfortranarray(g) if g.ndim == 2 and g.shape[1] > 1 else g
             for k, g in make_grads(parameters, rng, extra=False).items()}
    assert not grads["dW1"].flags.c_contiguous
    expected = oracle_gd(copies(parameters), grads, LR)
    update_parameters_with_gd(parameters, grads, LR)
    assert_dict_close(parameters, expected, "parameters")


# ------------------------------------------------------------------------------------------------
# Values derived by hand from the course
# ------------------------------------------------------------------------------------------------

def test_gd_by_hand():
    parameters = {"W1": np.array([[1.0, -2.0]]), "b1": np.array([[3.0]])}
    grads = {"dW1": np.array([[0.5, 0.25]]), "db1": np.array([[-4.0]])}
    update_parameters_with_gd(parameters, grads, 0.1)
    np.testing.assert_allclose(parameters["W1"], [[0.95, -2.025]], rtol=1e-15)
    np.testing.assert_allclose(parameters["b1"], [[3.4]], rtol=1e-15)


def test_momentum_by_hand():
    """Constant gradient g, beta 0.9, from v = 0: v1 = 0.1 g, v2 = 0.19 g, v3 = 0.271 g;
    W moves by lr * (0.1 + 0.19 + 0.271) g."""
    parameters = {"W1": np.array([[1.0]]), "b1": np.array([[0.0]])}
    grads = {"dW1": np.array([[2.0]]), "db1": np.array([[-1.0]])}
    v = initialize_velocity(parameters)
    for expected_v in (0.2, 0.38, 0.542):
        update_parameters_with_momentum(parameters, grads, v, beta=0.9, learning_rate=0.5)
        np.testing.assert_allclose(v["dW1"], [[expected_v]], rtol=1e-14)
    np.testing.assert_allclose(parameters["W1"], [[1.0 - 0.5 * (0.2 + 0.38 + 0.542)]],
                               rtol=1e-14)
    np.testing.assert_allclose(v["db1"], [[-0.271]], rtol=1e-14)


def test_adam_by_hand():
    """The course's EWA case with beta1 = 0.98: v_2 = 0.0196 g1 + 0.02 g2, corrected by
    1 - 0.98**2 = 0.0396; with a constant gradient the corrected moments are g and g**2, so each
    step moves W by lr * g / (|g| + eps)."""
    parameters = {"W1": np.array([[0.0, 0.0]]), "b1": np.array([[0.0]])}
    v, s = initialize_adam(parameters)
    g1 = {"dW1": np.array([[1.0, -3.0]]), "db1": np.array([[2.0]])}
    g2 = {"dW1": np.array([[5.0, 1.0]]), "db1": np.array([[2.0]])}
    update_parameters_with_adam(parameters, g1, v, s, 1, learning_rate=0.01, beta1=0.98)
    out = update_parameters_with_adam(parameters, g2, v, s, 2, learning_rate=0.01, beta1=0.98)
    v_corrected, s_corrected = out[3], out[4]
    np.testing.assert_allclose(v["dW1"], [[0.0196 + 0.1, -0.0588 + 0.02]], rtol=1e-14)
    np.testing.assert_allclose(v_corrected["dW1"], v["dW1"] / 0.0396, rtol=1e-14)
    np.testing.assert_allclose(v_corrected["db1"], [[2.0]], rtol=1e-14)      # constant gradient
    np.testing.assert_allclose(s_corrected["db1"], [[4.0]], rtol=1e-12)
    # b moved twice by lr * 2 / (2 + 1e-8)
    np.testing.assert_allclose(parameters["b1"], [[-2 * 0.01 * 2.0 / (2.0 + 1e-8)]],
                               rtol=1e-14)


def test_update_lr_by_hand_and_oracle():
    assert [round(update_lr(0.2, e, 1), 4) for e in (1, 2, 3, 4)] == [0.1, 0.0667, 0.05, 0.04]
    assert update_lr(0.5, 2, 1) == 0.5 / 3                   # the assignment's test case
    for lr0 in (0.5, 0.0007, 1.0):
        for rate in (0.0, 0.3, 1.0, 2.0):
            for epoch in (0, 1, 2, 7, 100, 4999):
                assert update_lr(lr0, epoch, rate) == oracle_update_lr(lr0, epoch, rate)


def test_schedule_lr_decay_by_hand_and_oracle():
    assert schedule_lr_decay(0.5, 100, 1) == 0.5              # the assignment's test case
    assert schedule_lr_decay(0.5, 1000, 1) == 0.25
    assert schedule_lr_decay(0.5, 2999, 1, time_interval=1000) == 0.5 / 3
    for lr0 in (0.5, 0.01):
        for rate in (0.0, 0.3, 1.0):
            for interval in (1, 7, 1000):
                for epoch in (0, 1, 6, 7, 999, 1000, 1001, 4999, 5000):
                    assert schedule_lr_decay(lr0, epoch, rate, interval) == \
                        oracle_schedule_lr_decay(lr0, epoch, rate, interval)


def test_schedules_reject_bad_counts():
    with pytest.raises(TypeError):
        update_lr(0.1, 1.5, 1)
    with pytest.raises(ValueError):
        schedule_lr_decay(0.1, -1, 1)


# ------------------------------------------------------------------------------------------------
# random_mini_batches against the assignment's own function
# ------------------------------------------------------------------------------------------------

def assert_batches_equal(actual, expected):
    assert len(actual) == len(expected)
    for i, ((ax, ay), (ex, ey)) in enumerate(zip(actual, expected)):
        for a, e, name in ((ax, ex, "X"), (ay, ey, "Y")):
            assert a.shape == e.shape and a.dtype == e.dtype, (i, name, a.shape, e.shape)
            np.testing.assert_array_equal(a, e, err_msg=f"batch {i} {name}")


@pytest.mark.parametrize("seed", [0, 1, 10, 12345])
@pytest.mark.parametrize("m", [1, 7, 63, 64, 65, 148, 300])
@pytest.mark.parametrize("size", [1, 5, 32, 64, 128, 1000])
def test_random_mini_batches_equal_the_assignment(seed, m, size):
    rng = np.random.default_rng(seed + m)
    X = rng.standard_normal((12, m))
    Y = (rng.random((1, m)) > 0.5).astype(np.float64)
    actual = random_mini_batches(X, Y, size, seed)
    state_after = np.random.get_state()[1].copy()
    expected = oracle_random_mini_batches(X, Y, size, seed)
    np.testing.assert_array_equal(state_after, np.random.get_state()[1])   # same global draws
    assert_batches_equal(actual, expected)
    assert all(x.flags.c_contiguous and y.flags.c_contiguous for x, y in actual)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int16, np.uint8, bool,
                                   np.complex128])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_random_mini_batches_dtypes_and_layouts(dtype, layout):
    rng = np.random.default_rng(7)
    base = (rng.standard_normal((4, 2 * 150)) * 10).astype(dtype)
    X = {"C": np.ascontiguousarray(base[:, :150]), "F": np.asfortranarray(base[:, :150]),
         "strided": base[:, ::2]}[layout]
    Y = (rng.random((1, 150)) > 0.3).astype(np.int64)
    assert_batches_equal(random_mini_batches(X, Y, 64, seed=3),
                         oracle_random_mini_batches(X, Y, 64, seed=3))


def test_random_mini_batches_uses_the_native_gather(monkeypatch):
    calls = []
    real = course._k.gather_cols_epoch

    def spy(*args, **kw):
        calls.append(args[0].shape)
        return real(*args, **kw)

    monkeypatch.setattr(course._k, "gather_cols_epoch", spy)
    X = np.random.default_rng(0).standard_normal((30, 500))
    Y = np.ones((1, 500))
    assert_batches_equal(random_mini_batches(X, Y, 64, seed=2),
                         oracle_random_mini_batches(X, Y, 64, seed=2))
    assert calls == [(30, 500), (1, 500)]


def test_random_mini_batches_course_defaults():
    """The assignment's call: 148 examples, batches of 64 -> 64, 64, 20; seed 0 by default."""
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((12288, 148)), (rng.random((1, 148)) < 0.5).astype(float)
    actual = random_mini_batches(X, Y)
    assert [b[0].shape for b in actual] == [(12288, 64), (12288, 64), (12288, 20)]
    assert_batches_equal(actual, oracle_random_mini_batches(X, Y))


def test_random_mini_batches_empty_and_errors():
    assert random_mini_batches(np.zeros((3, 0)), np.zeros((1, 0)), 4) == \
        oracle_random_mini_batches(np.zeros((3, 0)), np.zeros((1, 0)), 4) == []
    X = np.zeros((3, 10))
    with pytest.raises(ValueError):          # the assignment's reshape((1, m)) refuses 2-row Y
        oracle_random_mini_batches(X, np.zeros((2, 10)), 4)
    with pytest.raises(ValueError):
        random_mini_batches(X, np.zeros((2, 10)), 4)
    with pytest.raises(ValueError, match="mini_batch_size"):
        random_mini_batches(X, np.zeros((1, 10)), 0)
    with pytest.raises(TypeError, match="mini_batch_size"):
        random_mini_batches(X, np.zeros((1, 10)), 4.0)
    with pytest.raises(ValueError, match=r"X has 10 examples.*Y has 5"):   # was an IndexError
        random_mini_batches(X, np.zeros((1, 5)), 4)


def test_random_mini_batches_x_and_y_counts_must_match():
    """X of shape (m, n_x) by mistake used to give one batch of shape (100, 2), silently."""
    X, Y = np.zeros((100, 2)), np.zeros((1, 100))
    with pytest.raises(ValueError, match=r"X has 2 examples \(columns\) but Y has 100"):
        random_mini_batches(X, Y, 64)
    with pytest.raises(ValueError, match=r"X has 10 examples.*Y has 12"):
        random_mini_batches(np.zeros((3, 10)), np.zeros(12), 4)
    with pytest.raises(ValueError, match=r"Y must have shape \(1, m\)"):
        random_mini_batches(np.zeros((3, 10)), np.zeros((2, 10)), 4)
    with pytest.raises(ValueError, match=r"Y must have shape \(1, m\)"):
        random_mini_batches(np.zeros((3, 10)), np.zeros((1, 10, 1)), 4)
    with pytest.raises(ValueError, match=r"X must have shape \(n_x, m\)"):
        random_mini_batches(np.zeros(10), np.zeros((1, 10)), 4)
    with pytest.raises(TypeError, match="X must be a numpy.ndarray"):
        random_mini_batches([[1.0, 2.0]], np.zeros((1, 2)), 4)
    with pytest.raises(TypeError, match="Y must be a numpy.ndarray"):
        random_mini_batches(np.zeros((1, 2)), [[1.0, 2.0]], 4)


@pytest.mark.parametrize("contiguous", [True, False])
def test_random_mini_batches_accepts_1d_labels_as_one_row(contiguous):
    """1-D Y of length m (used to be an IndexError) is the same as Y.reshape(1, m)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4, 23))
    Y1 = (rng.random(46) < 0.5).astype(float)
    Y1 = Y1[:23].copy() if contiguous else Y1[::2]
    actual = random_mini_batches(X, Y1, 5, seed=4)
    expected = oracle_random_mini_batches(X, Y1.reshape(1, 23), 5, seed=4)
    assert [b[1].shape for b in actual] == [(1, 5)] * 4 + [(1, 3)]
    assert_batches_equal(actual, expected)


@pytest.mark.parametrize("size, exc", [(True, TypeError), (np.bool_(True), TypeError),
                                       ("4", TypeError), (None, TypeError),
                                       (-2, ValueError), (np.int64(0), ValueError)])
def test_random_mini_batches_bad_size(size, exc):
    with pytest.raises(exc, match="mini_batch_size"):
        random_mini_batches(np.zeros((3, 10)), np.zeros((1, 10)), size)
    assert len(random_mini_batches(np.zeros((3, 10)), np.zeros((1, 10)), np.int32(4))) == 3


def test_random_mini_batches_object_arrays_use_numpy():
    """Object arrays never reach the native (memcpy) gather: same batches as the assignment."""
    X = np.empty((1, 30), dtype=object)
    for i in range(30):
        X[0, i] = [i]
    Y = np.arange(30, dtype=object).reshape(1, 30)
    actual = random_mini_batches(X, Y, 8, seed=1)
    expected = oracle_random_mini_batches(X, Y, 8, seed=1)
    assert len(actual) == len(expected) == 4
    for (xa, ya), (xe, ye) in zip(actual, expected):
        assert xa.tolist() == xe.tolist() and ya.tolist() == ye.tolist()
    assert course.native_copy_ok is fastopt.batching.native_copy_ok
    assert not course.native_copy_ok(X) and course.native_copy_ok(np.zeros((1, 30)))


# ------------------------------------------------------------------------------------------------
# Errors leave every array untouched
# ------------------------------------------------------------------------------------------------

def test_dtype_mismatch_in_a_later_layer_changes_nothing():
    rng = np.random.default_rng(6)
    parameters = make_parameters(np.float32)
    grads = make_grads(parameters, rng)
    grads["dW3"] = grads["dW3"].astype(np.float64)
    v, s = initialize_adam(parameters)
    snap = Snapshot(*parameters.values(), *v.values(), *s.values())
    with pytest.raises(TypeError, match="W3"):
        update_parameters_with_gd(parameters, grads, LR)
    with pytest.raises(TypeError, match="W3"):
        update_parameters_with_momentum(parameters, grads, v, 0.9, LR)
    with pytest.raises(TypeError, match="W3"):
        update_parameters_with_adam(parameters, grads, v, s, 1)
    snap.assert_unchanged()


def test_non_contiguous_parameter_raises_and_changes_nothing():
    rng = np.random.default_rng(7)
    parameters = make_parameters(np.float64)
    grads = make_grads(parameters, rng)
    parameters["W2"] = np.asfortranarray(parameters["W2"])
    snap = Snapshot(*parameters.values())
    with pytest.raises(ValueError, match="C-contiguous"):
        update_parameters_with_gd(parameters, grads, LR)
    snap.assert_unchanged()


def test_bad_hyperparameters_raise():
    parameters = make_parameters(np.float64)
    grads = make_grads(parameters, np.random.default_rng(8))
    v, s = initialize_adam(parameters)
    snap = Snapshot(*parameters.values(), *v.values(), *s.values())
    with pytest.raises(ValueError):
        update_parameters_with_momentum(parameters, grads, v, beta=1.0, learning_rate=LR)
    with pytest.raises(ValueError):
        update_parameters_with_adam(parameters, grads, v, s, t=0)
    with pytest.raises(ValueError):
        update_parameters_with_gd(parameters, grads, learning_rate=-1.0)
    snap.assert_unchanged()
    with pytest.raises(KeyError):
        update_parameters_with_gd(parameters, {"dW1": grads["dW1"]}, LR)


def test_missing_keys_are_named():
    parameters = make_parameters(np.float64)
    grads = make_grads(parameters, np.random.default_rng(8))
    v, s = initialize_adam(parameters)
    snap = Snapshot(*parameters.values(), *v.values(), *s.values())
    with pytest.raises(KeyError, match=r"grads has no 'db1'.*'dW1', 'db1'"):
        update_parameters_with_gd(parameters, {"dW1": grads["dW1"]}, LR)
    partial = {k: g for k, g in grads.items() if k != "dW2"}
    with pytest.raises(KeyError, match=r"grads has no 'dW2'"):
        update_parameters_with_momentum(parameters, partial, v, 0.9, LR)
    v_bad = {k: a for k, a in v.items() if k != "db3"}
    with pytest.raises(KeyError, match=r"v has no 'db3'"):
        update_parameters_with_momentum(parameters, grads, v_bad, 0.9, LR)
    with pytest.raises(KeyError, match=r"v has no 'db3'"):
        update_parameters_with_adam(parameters, grads, v_bad, s, 1)
    s_bad = {k: a for k, a in s.items() if k != "dW1"}
    with pytest.raises(KeyError, match=r"s has no 'dW1'"):
        update_parameters_with_adam(parameters, grads, v, s_bad, 1)
    p_bad = dict(parameters)
    p_bad["c1"] = p_bad.pop("b1")
    with pytest.raises(KeyError, match=r"parameters has no 'b1'"):
        update_parameters_with_gd(p_bad, grads, LR)
    snap.assert_unchanged()


def test_shared_state_is_named_in_the_course_names():
    """The kernels' own names (m, v, velocity, param) must not leak into course messages."""
    parameters = make_parameters(np.float64)
    grads = make_grads(parameters, np.random.default_rng(9))
    v, s = initialize_adam(parameters)
    snap = Snapshot(*parameters.values(), *v.values(), *s.values())
    with pytest.raises(ValueError, match=r"^v and s are the same dict"):
        update_parameters_with_adam(parameters, grads, v, v, 1)
    s2 = dict(s, dW2=v["dW2"])
    with pytest.raises(ValueError, match=r"^v\['dW2'\] and s\['dW2'\] overlap in memory"):
        update_parameters_with_adam(parameters, grads, v, s2, 1)
    v2 = dict(v, db1=parameters["b1"])
    with pytest.raises(ValueError, match=r"^parameters\['b1'\] and v\['db1'\] overlap"):
        update_parameters_with_momentum(parameters, grads, v2, 0.9, LR)
    grads2 = dict(grads, dW3=parameters["W3"])
    with pytest.raises(ValueError, match=r"^parameters\['W3'\] and grads\['dW3'\] overlap"):
        update_parameters_with_gd(parameters, grads2, LR)
    snap.assert_unchanged()


@pytest.mark.parametrize("call, exc, name", [
    (lambda p, g, v, s: update_parameters_with_gd(p, g, "0.1"), TypeError, "learning_rate"),
    (lambda p, g, v, s: update_parameters_with_gd(p, g, -0.1), ValueError, "learning_rate"),
    (lambda p, g, v, s: update_parameters_with_momentum(p, g, v, 1.5, LR), ValueError, "beta"),
    (lambda p, g, v, s: update_parameters_with_momentum(p, g, v, 0.9, None), TypeError,
     "learning_rate"),
    (lambda p, g, v, s: update_parameters_with_adam(p, g, v, s, 1.0), TypeError, "t must"),
    (lambda p, g, v, s: update_parameters_with_adam(p, g, v, s, True), TypeError, "t must"),
    (lambda p, g, v, s: update_parameters_with_adam(p, g, v, s, 0), ValueError, "t must"),
    (lambda p, g, v, s: update_parameters_with_adam(p, g, v, s, 2 ** 60), ValueError, "t must"),
    (lambda p, g, v, s: update_parameters_with_adam(p, g, v, s, 1, learning_rate=[0.1]),
     TypeError, "learning_rate"),
    (lambda p, g, v, s: update_parameters_with_adam(p, g, v, s, 1, beta2=1.0), ValueError,
     "beta2"),
    (lambda p, g, v, s: update_parameters_with_adam(p, g, v, s, 1, epsilon=-1e-8), ValueError,
     "epsilon"),
])
def test_hyperparameter_errors_use_the_course_names(call, exc, name):
    parameters = make_parameters(np.float64)
    grads = make_grads(parameters, np.random.default_rng(10))
    v, s = initialize_adam(parameters)
    snap = Snapshot(*parameters.values(), *v.values(), *s.values())
    with pytest.raises(exc, match=name):
        call(parameters, grads, v, s)
    snap.assert_unchanged()


@pytest.mark.parametrize("call, exc, name", [
    (lambda: update_lr(0.1, True, 1), TypeError, "epoch_num"),
    (lambda: update_lr(0.1, 2.0, 1), TypeError, "epoch_num"),
    (lambda: update_lr(0.1, -1, 1), ValueError, "epoch_num"),
    (lambda: update_lr("0.1", 1, 1), TypeError, "learning_rate0"),
    (lambda: update_lr(0.1, 1, -1), ValueError, "decay_rate"),
    (lambda: schedule_lr_decay(0.1, 5, 1, time_interval=0), ValueError, "time_interval"),
    (lambda: schedule_lr_decay(0.1, 5, 1, time_interval=np.bool_(True)), TypeError,
     "time_interval"),
    (lambda: schedule_lr_decay(-0.1, 5, 1), ValueError, "learning_rate0"),
    (lambda: schedule_lr_decay(0.1, np.float64(5), 1), TypeError, "epoch_num"),
])
def test_lr_decay_errors_use_the_course_names(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_docstring_examples():
    failures, tried = doctest.testmod(course)
    assert tried > 0 and failures == 0
