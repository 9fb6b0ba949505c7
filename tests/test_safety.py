"""Regression tests: inputs that used to crash, hang or silently corrupt fastopt.

Each test is one reproducer of the issue "No Python-level input can crash, hang or silently
corrupt fastopt".  Anything that could crash or hang runs in a subprocess with a timeout, so a
regression fails the test instead of killing or blocking the test run.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import Snapshot

import fastopt
from fastopt import _config, _dispatch, reference

K = _dispatch.kernels


def run_python(code, timeout=60):
    """Run `code` in a fresh interpreter; returns the CompletedProcess (raises on timeout)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


# -- 1, 2: out-of-bounds reads ------------------------------------------------------------------

@pytest.mark.parametrize("labels", [["a"], ["a", "b", "c"], []])
def test_wrong_length_labels_raise(labels):
    a, b = np.zeros(4), np.zeros(4)
    g, h = np.ones(4), np.ones(4)
    snap = Snapshot(a, b)
    for _ in range(200):   # used to read past the list and segfault within a few calls
        with pytest.raises(ValueError, match="labels has"):
            K.sgd_step_multi([a, b], [g, h], lr=0.1, labels=labels)
        with pytest.raises(ValueError, match="labels has"):
            K.sumsq_multi([a, b], labels=labels)
        with pytest.raises(ValueError, match="labels has"):
            K.check_param_arrays([a, b], labels)
    snap.assert_unchanged()


def test_labels_must_be_a_sequence():
    a, g = np.zeros(4), np.ones(4)
    with pytest.raises(TypeError, match="labels must be a list or tuple"):
        K.sgd_step_multi([a], [g], lr=0.1, labels="a")


def test_object_arrays_are_never_memcpyd():
    x = np.empty((4, 1), dtype=object)
    out = np.empty((2, 1), dtype=object)
    with pytest.raises(TypeError, match="Python objects"):
        K.gather_rows(x, np.array([0, 1], dtype=np.int64), out)
    with pytest.raises(TypeError, match="Python objects"):
        K.gather_cols_epoch(np.empty((1, 4), dtype=object), np.arange(4, dtype=np.int64), 2,
                            np.empty((2, 1, 2), dtype=object))


def test_gathers_check_dimensions_before_reading_them():
    idx = np.array([0], dtype=np.int64)
    with pytest.raises(ValueError, match="2-D"):
        K.gather_rows(np.zeros(3), idx, np.zeros((1, 1)))
    with pytest.raises(ValueError, match="2-D"):
        K.gather_cols_epoch(np.zeros(3), idx, 1, np.zeros((1, 1, 1)))


# -- 3: fork ----------------------------------------------------------------------------------

FORK_PRELUDE = """
    import os, numpy as np, fastopt
    n = 1 << 20
    arrs = [np.ones(n, np.float32) for _ in range(4)]
    fastopt.adam_step(*arrs, step=1, n_threads=2)        # the parent's thread pool is up
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_of_fork_works_and_runs_serially():
    r = run_python(FORK_PRELUDE + """
    pid = os.fork()
    if pid == 0:
        fastopt.adam_step(*arrs, step=2, n_threads=2)    # used to hang forever
        ok = fastopt.get_num_threads() == 1 and fastopt.show_config(print_=False)["forked"]
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), fastopt.show_config(print_=False)["forked"])
    """, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "False"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_multiprocessing_fork_pool_works():
    r = run_python(FORK_PRELUDE + """
    import multiprocessing as mp

    def work(seed):
        a = [np.full(1 << 20, seed, np.float32) for _ in range(4)]
        fastopt.adam_step(*a, step=1, n_threads=2)
        return float(a[0][0])

    if __name__ == "__main__":
        with mp.get_context("fork").Pool(2) as pool:
            print(pool.map(work, [1, 2, 3, 4]))
    """, timeout=120)
    assert r.returncode == 0, r.stderr
    values = eval(r.stdout)   # noqa: S307 - our own subprocess's list of floats
    assert len(values) == 4 and all(np.isfinite(values))


# -- 5: booleans ------------------------------------------------------------------------------

def _adam_arrays(n=8):
    return [np.ones(n), np.full(n, 0.5), np.zeros(n), np.zeros(n)]


@pytest.mark.parametrize("bad", ["no", 0, 1, None, 1.0, np.int64(1)])
@pytest.mark.parametrize("flag", ["amsgrad", "maximize", "eps_inside_sqrt",
                                  "decoupled_weight_decay"])
def test_kernel_flags_are_not_taken_by_truthiness(flag, bad):
    arrays = _adam_arrays()
    v_max = np.zeros(8)
    snap = Snapshot(*arrays, v_max)
    with pytest.raises(TypeError, match=f"{flag} must be True or False"):
        fastopt.adam_step(*arrays, step=1, v_max=v_max if flag == "amsgrad" else None,
                          **{flag: bad})
    snap.assert_unchanged()


def test_numpy_bools_are_accepted_everywhere():
    arrays = _adam_arrays()
    expected = [a.copy() for a in arrays]
    fastopt.adam_step(*arrays, step=1, maximize=np.bool_(True))
    reference.adam_step(*expected, step=1, maximize=True)
    np.testing.assert_array_equal(arrays[0], expected[0])
    opt = fastopt.Adam([np.ones(3)], amsgrad=np.bool_(True))
    assert opt.hyper["amsgrad"] is True
    opt.step([np.ones(3)], skip_if_nonfinite=np.bool_(True))
    with pytest.raises(TypeError, match="skip_if_nonfinite"):
        opt.step([np.ones(3)], skip_if_nonfinite="yes")


# -- 6: concurrent steps ----------------------------------------------------------------------

def test_second_thread_inside_a_step_is_refused():
    w = np.ones(16)
    opt = fastopt.Adam([w], lr=0.1)
    snap = Snapshot(w)
    opt._lock.acquire()        # as if another thread were inside step()
    try:
        with pytest.raises(RuntimeError, match="another thread"):
            opt.step([np.ones(16)])
    finally:
        opt._lock.release()
    snap.assert_unchanged()
    assert opt.step_count == 0


def test_plan_refuses_a_step_with_a_stale_count():
    w, g = np.ones(4), np.ones(4)
    plan = K.Plan([w], ("param", "grad", "m", "v", ""), ([np.zeros(4)], [np.zeros(4)], None))
    K.adam_step_multi(plan, [g])            # step 1, from the plan's count
    assert plan.count == 1
    snap = Snapshot(w)
    with pytest.raises(RuntimeError, match="completed 1 steps"):
        K.adam_step_multi(plan, [g], step=1)
    snap.assert_unchanged()
    assert plan.count == 1


def test_two_threads_stepping_one_optimizer_never_corrupt_it():
    n = 1 << 18
    w = np.ones(n)
    opt = fastopt.Adam([w], lr=1e-3)
    g = np.full(n, 0.25)
    applied = []
    refused = []
    start = threading.Barrier(2)

    def worker():
        start.wait()
        for _ in range(150):
            try:
                opt.step([g])
                applied.append(1)
            except RuntimeError:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opt.step_count == len(applied)
    assert len(applied) + len(refused) == 300
    # the result is exactly that of len(applied) serial steps
    p, m, v = np.ones(n), np.zeros(n), np.zeros(n)
    for t in range(1, len(applied) + 1):
        fastopt.adam_step(p, g, m, v, step=t, lr=1e-3)
    np.testing.assert_array_equal(w, p)


# -- 7: resized or replaced parameters --------------------------------------------------------

@pytest.mark.parametrize("new_size", [200_000, 10])
def test_resized_parameter_is_refused(new_size):
    W = np.ones(100_000 if new_size == 10 else 1000, np.float32)
    opt = fastopt.Adam({"W": W})
    W.resize(new_size, refcheck=False)
    before = W.copy()
    with pytest.raises(ValueError, match=r"param\['W'\] has changed"):
        opt.step({"dW": np.ones(new_size, np.float32)})
    np.testing.assert_array_equal(W, before)
    assert opt.step_count == 0


def test_state_array_made_read_only_is_refused():
    W = np.ones(1000)
    opt = fastopt.Adam({"W": W})
    opt.state["W"]["m"].flags.writeable = False
    with pytest.raises(ValueError, match=r"m\['W'\] has become read-only"):
        opt.step({"dW": np.ones(1000)})
    assert opt.step_count == 0


def test_parameter_made_read_only_is_refused():
    W = np.ones(10)
    opt = fastopt.SGD([W], lr=0.1)
    W.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        opt.step([np.ones(10)])


def test_replaced_parameter_in_the_dict_is_refused():
    params = {"W1": np.ones(4), "b1": np.zeros(2)}
    opt = fastopt.SGD(params, lr=0.1)
    params["W1"] = params["W1"] * 1.0
    with pytest.raises(ValueError, match=r"params\['W1'\] was replaced"):
        opt.step({"dW1": np.ones(4), "db1": np.ones(2)})
    del params["W1"]
    with pytest.raises(ValueError, match=r"params\['W1'\] was removed"):
        opt.step({"dW1": np.ones(4), "db1": np.ones(2)})


def test_replaced_parameter_in_a_list_is_refused():
    params = [np.ones(4)]
    opt = fastopt.SGD(params, lr=0.1)
    params[0] = np.ones(4)
    with pytest.raises(ValueError, match=r"params\[0\] was replaced"):
        opt.step([np.ones(4)])


def test_a_newer_optimizer_on_the_same_arrays_takes_them_over():
    params = {"W": np.ones(4), "b": np.zeros(2)}
    old = fastopt.SGD(params, lr=0.1)
    new = fastopt.Adam({"W": params["W"]})       # overlaps old's "W"
    other = fastopt.SGD([np.ones(3)], lr=0.1)    # disjoint: unaffected
    before = params["W"].copy()
    with pytest.raises(RuntimeError, match="no longer updates its parameters"):
        old.step({"dW": np.ones(4), "db": np.ones(2)})
    np.testing.assert_array_equal(params["W"], before)
    new.step({"dW": np.ones(4)})
    other.step([np.ones(3)])
    assert new.step_count == 1 and other.step_count == 1 and old.step_count == 0


# -- 9: strides -------------------------------------------------------------------------------

def test_ewa_of_a_structured_field_is_right():
    s = np.zeros(6, [("f", "<f8"), ("g", "<i4")])
    s["f"] = [1, 2, 3, 4, 5, 6]
    s["g"] = 7
    got = fastopt.ewa(s["f"], beta=0.5)
    np.testing.assert_allclose(got, reference.ewa(np.arange(1.0, 7.0), beta=0.5), rtol=1e-15)
    with pytest.raises(ValueError, match="structured-field view"):
        fastopt.ewa(s["f"], beta=0.5, out=s["f"])
    assert (s["g"] == 7).all()
    np.testing.assert_array_equal(s["f"], np.arange(1.0, 7.0))


def test_ewa_of_byte_swapped_input_is_right():
    x = np.arange(1.0, 5.0).astype(">f8")
    np.testing.assert_allclose(fastopt.ewa(x, beta=0.5), reference.ewa(x.astype("<f8"), beta=0.5),
                               rtol=1e-15)


# -- 10: interrupts ---------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_sigint_during_steps_leaves_counter_and_arrays_consistent():
    n = 1 << 20
    w = np.ones(n)
    g = np.full(n, 0.5)
    opt = fastopt.Adam([w], lr=1e-3)
    main = threading.get_ident()
    stop = threading.Event()

    def interrupter():
        for _ in range(20):
            if stop.wait(0.013):
                return
            signal.pthread_kill(main, signal.SIGINT)

    interrupts = 0
    t = threading.Thread(target=interrupter)
    t.start()
    try:
        while t.is_alive():
            try:
                opt.step([g])
            except KeyboardInterrupt:
                interrupts += 1
    finally:
        stop.set()
        t.join()
    assert interrupts > 0
    p, m, v = np.ones(n), np.zeros(n), np.zeros(n)
    for step in range(1, opt.step_count + 1):
        fastopt.adam_step(p, g, m, v, step=step, lr=1e-3)
    np.testing.assert_array_equal(w, p)
    np.testing.assert_array_equal(opt.state[0]["m"], m)


# -- 11, 13: unbounded conversions and out-of-contract exception types ------------------------

@pytest.mark.parametrize("n", [2 ** 31, 2 ** 32 + 2, 1000, 2 ** 80])
def test_huge_thread_counts_are_clamped(n):
    saved = _config.usable_cpus()
    _config._set_cpu_cap(2)
    try:
        assert K.resolve_n_threads(n) == (2 if K.OPENMP else 1)
        arrays = _adam_arrays(1 << 16)
        fastopt.adam_step(*arrays, step=1, n_threads=n)
    finally:
        _config._set_cpu_cap(saved)


@pytest.mark.parametrize("lr, exc", [(10 ** 400, ValueError), (np.complex64(1), TypeError),
                                     (np.bool_(True), TypeError), (1j, TypeError),
                                     (np.array([0.1]), TypeError), ("0.1", TypeError)])
def test_bad_real_hyperparameters(lr, exc):
    arrays = _adam_arrays()
    snap = Snapshot(*arrays)
    with pytest.raises(exc, match="lr"):
        fastopt.adam_step(*arrays, step=1, lr=lr)
    snap.assert_unchanged()


def test_zero_d_real_arrays_are_numbers():
    arrays = _adam_arrays()
    fastopt.adam_step(*arrays, step=1, lr=np.array(0.1))
    assert arrays[0][0] == pytest.approx(0.9)


@pytest.mark.parametrize("step", [2 ** 63, 2 ** 64, 2 ** 53 + 1, -(2 ** 70)])
def test_huge_steps_raise_value_error(step):
    arrays = _adam_arrays()
    snap = Snapshot(*arrays)
    with pytest.raises(ValueError, match="step"):
        fastopt.adam_step(*arrays, step=step)
    with pytest.raises(ValueError, match="step"):
        fastopt.debias(np.ones(3), beta=0.9, step=step)
    snap.assert_unchanged()


# -- 12: AMSGrad NaN --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_amsgrad_keeps_a_nan_already_in_v_max(dtype):
    p, g = np.ones(2, dtype), np.full(2, 0.5, dtype)
    m, v, v_max = np.zeros(2, dtype), np.zeros(2, dtype), np.array([np.nan, 0], dtype)
    ref = [a.copy() for a in (p, g, m, v, v_max)]
    fastopt.adam_step(p, g, m, v, step=1, amsgrad=True, v_max=v_max)
    reference.adam_step(*ref[:4], step=1, amsgrad=True, v_max=ref[4])
    assert np.isnan(v_max[0]) and np.isnan(p[0])
    np.testing.assert_array_equal(p, ref[0])
    np.testing.assert_array_equal(v_max, ref[4])


# -- masked arrays ----------------------------------------------------------------------------

def test_masked_arrays_are_refused():
    p = np.ma.masked_array(np.ones(4), mask=[0, 1, 0, 0])
    with pytest.raises(TypeError, match="MaskedArray"):
        fastopt.sgd_step(p, np.ones(4), lr=0.1)
    with pytest.raises(TypeError, match="MaskedArray"):
        fastopt.SGD([p], lr=0.1)
    with pytest.raises(TypeError, match="MaskedArray"):
        fastopt.ewa(p, beta=0.5)
    np.testing.assert_array_equal(p.data, np.ones(4))


def test_messages_say_what_to_do():
    with pytest.raises(TypeError, match=r"astype\(np.float32\)"):
        fastopt.sgd_step(np.ones(4, np.int32), np.ones(4, np.int32), lr=0.1)
    with pytest.raises(ValueError, match="np.ascontiguousarray"):
        fastopt.sgd_step(np.ones(8)[::2], np.ones(4), lr=0.1)
