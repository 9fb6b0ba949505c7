"""Mini-batches: ``fastopt.minibatches`` / ``fastopt.MiniBatches``.

One permutation per epoch shared by X and Y; the course's (n_x, m) layout (axis=1) and the (m, ...)
layout (axis=0); floor(m / b) full batches plus one partial unless drop_last; every example exactly
once per epoch (checked with an index feature); C-contiguous batches; zero-copy views when
unshuffled along axis 0; seeds; buffers reused only when asked; error paths.
"""

import math

import numpy as np
import pytest

import fastopt

SERIAL_THRESHOLD = fastopt.show_config(print_=False)["serial_threshold"]


def course_data(m, n_x=3, dtype=np.float64, y_ndim=2):
    """X (n_x, m) whose row 0 is the example index; Y holds 10 * index (1, m) or (m,)."""
    X = np.empty((n_x, m), dtype=dtype)
    X[0] = np.arange(m)
    for r in range(1, n_x):
        X[r] = (np.arange(m) * (r + 1)) % 97
    Y = (10 * np.arange(m)).astype(np.int64)
    return X, (Y.reshape(1, m) if y_ndim == 2 else Y)


def row_data(m, n=3, dtype=np.float64, y_ndim=1):
    """X (m, n) whose column 0 is the example index; Y (m,) or (m, 2)."""
    X, Y = course_data(m, n, dtype, 1)
    X = np.ascontiguousarray(X.T)
    if y_ndim == 2:
        Y = np.stack([Y, Y + 1], axis=1)
    return X, Y


def indices_of(X_b, axis):
    first = X_b[0] if axis == 1 else X_b[:, 0] if X_b.ndim > 1 else X_b
    return first.astype(np.int64)


def check_epoch(batches, X, Y, axis, b, drop_last=False, m=None):
    """Every batch consistent with X and Y (same examples, same order), each example at most once,
    sizes as the course says; return the indices seen."""
    m = X.shape[axis] if m is None else m
    seen = []
    eff = min(b, m)
    full, rem = divmod(m, eff)
    expected_sizes = [eff] * full + ([rem] if rem and not drop_last else [])
    assert [(xb.shape[axis]) for xb, _ in batches] == expected_sizes
    for X_b, Y_b in batches:
        assert X_b.flags.c_contiguous and Y_b.flags.c_contiguous
        assert X_b.dtype == X.dtype and Y_b.dtype == Y.dtype
        idx = indices_of(X_b, axis)
        np.testing.assert_array_equal(X_b, np.take(X, idx, axis=axis))
        y_axis = 0 if Y.ndim == 1 else axis
        np.testing.assert_array_equal(Y_b, np.take(Y, idx, axis=y_axis))
        seen.extend(idx.tolist())
    assert len(seen) == len(set(seen))
    if not drop_last:
        assert sorted(seen) == list(range(m))
    else:
        assert len(seen) == full * eff
    return seen


# ------------------------------------------------------------------------------------------------
# Layouts, counts, coverage.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("y_ndim", [1, 2])
@pytest.mark.parametrize("m, b", [(100, 32), (64, 64), (10, 1), (7, 20), (1, 1), (129, 64)])
def test_course_layout_axis1(m, b, y_ndim, shuffle):
    X, Y = course_data(m, y_ndim=y_ndim)
    batches = list(fastopt.minibatches(X, Y, batch_size=b, axis=1, shuffle=shuffle, seed=0))
    seen = check_epoch(batches, X, Y, 1, b)
    if not shuffle:
        assert seen == list(range(m))
    for X_b, _ in batches:
        assert X_b.shape[0] == X.shape[0]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("y_ndim", [1, 2])
@pytest.mark.parametrize("m, b", [(100, 32), (64, 64), (10, 1), (7, 20), (1, 1), (129, 64)])
def test_row_layout_axis0(m, b, y_ndim, shuffle):
    X, Y = row_data(m, y_ndim=y_ndim)
    batches = list(fastopt.minibatches(X, Y, batch_size=b, axis=0, shuffle=shuffle, seed=0))
    seen = check_epoch(batches, X, Y, 0, b)
    if not shuffle:
        assert seen == list(range(m))


def test_large_epoch_above_serial_threshold():
    # enough elements that the gathers run threaded
    m = SERIAL_THRESHOLD // 2 + 37
    X, Y = course_data(m, n_x=4)
    check_epoch(list(fastopt.minibatches(X, Y, batch_size=512, axis=1, seed=1)), X, Y, 1, 512)
    Xr, Yr = row_data(m, n=4)
    check_epoch(list(fastopt.minibatches(Xr, Yr, batch_size=512, axis=0, seed=1)), Xr, Yr, 0,
                512)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("m, b", [(100, 32), (10, 3), (96, 32), (5, 10)])
def test_drop_last(m, b, axis):
    X, Y = course_data(m) if axis == 1 else row_data(m)
    mb = fastopt.MiniBatches(X, Y, batch_size=b, axis=axis, drop_last=True, seed=3)
    batches = list(mb)
    eff = min(b, m)
    assert len(batches) == len(mb) == m // eff
    check_epoch(batches, X, Y, axis, b, drop_last=True)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shuffle", [True, False])
def test_special_batch_sizes(axis, shuffle):
    m = 23
    X, Y = course_data(m) if axis == 1 else row_data(m)
    for b, n_batches in [(m, 1), (1, m), (m + 1, 1), (10 * m, 1)]:
        mb = fastopt.MiniBatches(X, Y, batch_size=b, axis=axis, shuffle=shuffle, seed=0)
        assert len(mb) == n_batches
        batches = list(mb)
        assert len(batches) == n_batches
        check_epoch(batches, X, Y, axis, b)


@pytest.mark.parametrize("m, b", [(100, 32), (10, 3), (96, 32), (1, 5), (64, 1)])
def test_len_is_floor_plus_partial(m, b):
    X = np.zeros((2, m))
    assert len(fastopt.MiniBatches(X, batch_size=b, axis=1)) == math.ceil(m / min(b, m))
    assert len(fastopt.MiniBatches(X, batch_size=b, axis=1, drop_last=True)) == m // min(b, m)


def test_docstring_examples():
    X = np.arange(10.0).reshape(1, 10)
    batches = fastopt.MiniBatches(X, batch_size=4, axis=1, shuffle=False)
    assert len(batches) == 3
    assert [b.shape for b in batches] == [(1, 4), (1, 4), (1, 2)]
    X = np.arange(12.0).reshape(6, 2)
    Y = np.arange(6)
    assert [y.tolist() for _, y in fastopt.minibatches(X, Y, batch_size=4, shuffle=False)] == \
        [[0, 1, 2, 3], [4, 5]]


def test_without_y_yields_arrays():
    X, _ = course_data(20)
    batches = list(fastopt.minibatches(X, batch_size=6, axis=1, seed=0))
    assert all(isinstance(b, np.ndarray) for b in batches)
    assert sorted(np.concatenate([b[0] for b in batches]).astype(int).tolist()) == list(range(20))


@pytest.mark.parametrize("axis", [0, -1, 1, 2])
def test_nd_data_any_axis(axis):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 7, 8))
    ax = axis % 3
    m = X.shape[ax]
    idx_feature = np.moveaxis(X, ax, 0)
    idx_feature[:, 0, 0] = np.arange(m)
    Y = np.arange(m) * 10
    batches = list(fastopt.minibatches(X, Y, batch_size=3, axis=axis, seed=1))
    seen = []
    for X_b, Y_b in batches:
        assert X_b.flags.c_contiguous
        idx = np.moveaxis(X_b, ax, 0)[:, 0, 0].astype(int)
        np.testing.assert_array_equal(X_b, np.take(X, idx, axis=ax))
        np.testing.assert_array_equal(Y_b, Y[idx])
        seen += idx.tolist()
    assert sorted(seen) == list(range(m))


def test_non_contiguous_input():
    X, Y = course_data(50)
    Xf = np.asfortranarray(X)
    batches = list(fastopt.minibatches(Xf, Y, batch_size=16, axis=1, seed=2))
    check_epoch(batches, X, Y, 1, 16)
    Xs = np.repeat(row_data(50)[0], 2, axis=0)[::2]      # strided rows
    Yr = row_data(50)[1]
    check_epoch(list(fastopt.minibatches(Xs, Yr, batch_size=16, axis=0, seed=2)), Xs, Yr, 0, 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int64, np.int16])
@pytest.mark.parametrize("axis", [0, 1])
def test_dtypes_are_kept(dtype, axis):
    m = 40
    X, Y = course_data(m, dtype=dtype) if axis == 1 else row_data(m, dtype=dtype)
    Y = Y.astype(np.float32)
    batches = list(fastopt.minibatches(X, Y, batch_size=16, axis=axis, seed=5))
    check_epoch(batches, X, Y, axis, 16)
    assert all(xb.dtype == dtype for xb, _ in batches)


# ------------------------------------------------------------------------------------------------
# Views, copies, buffers.
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("x_ndim", [1, 2, 3])
def test_unshuffled_axis0_batches_are_views(x_ndim):
    m = 30
    shape = {1: (m,), 2: (m, 4), 3: (m, 2, 2)}[x_ndim]
    X = np.arange(float(np.prod(shape))).reshape(shape)
    Y = np.arange(m)
    batches = list(fastopt.minibatches(X, Y, batch_size=8, axis=0, shuffle=False))
    for i, (X_b, Y_b) in enumerate(batches):
        assert np.shares_memory(X_b, X) and np.shares_memory(Y_b, Y)
        assert X_b.flags.c_contiguous
        np.testing.assert_array_equal(X_b, X[8 * i:8 * (i + 1)])


def test_shuffled_batches_are_copies():
    X, Y = course_data(30)
    for X_b, Y_b in fastopt.minibatches(X, Y, batch_size=8, axis=1, seed=0):
        assert not np.shares_memory(X_b, X) and not np.shares_memory(Y_b, Y)
    Xr, Yr = row_data(30)
    for X_b, Y_b in fastopt.minibatches(Xr, Yr, batch_size=8, axis=0, seed=0):
        assert not np.shares_memory(X_b, Xr) and not np.shares_memory(Y_b, Yr)
    # unshuffled course layout: a column slice is not contiguous, so a contiguous copy
    for X_b, _ in fastopt.minibatches(X, Y, batch_size=8, axis=1, shuffle=False):
        assert X_b.flags.c_contiguous and not np.shares_memory(X_b, X)


@pytest.mark.parametrize("axis", [0, 1])
def test_reuse_buffers_reuses_memory_across_epochs(axis):
    X, Y = course_data(50) if axis == 1 else row_data(50)
    mb = fastopt.MiniBatches(X, Y, batch_size=16, axis=axis, seed=0, reuse_buffers=True)
    epoch1 = [(xb.ctypes.data, yb.ctypes.data) for xb, yb in mb]
    epoch2 = [(xb.ctypes.data, yb.ctypes.data) for xb, yb in mb]
    assert epoch1 == epoch2


@pytest.mark.parametrize("axis", [0, 1])
def test_default_gives_fresh_arrays_each_epoch(axis):
    X, Y = course_data(50) if axis == 1 else row_data(50)
    mb = fastopt.MiniBatches(X, Y, batch_size=16, axis=axis, seed=0)
    kept1 = list(mb)                                     # keep epoch 1 alive
    copies1 = [(xb.copy(), yb.copy()) for xb, yb in kept1]
    kept2 = list(mb)
    for (x1, y1), (x2, y2) in zip(kept1, kept2):
        assert not np.shares_memory(x1, x2) and not np.shares_memory(y1, y2)
    for (x1, y1), (c1, d1) in zip(kept1, copies1):       # epoch 2 did not overwrite epoch 1
        np.testing.assert_array_equal(x1, c1)
        np.testing.assert_array_equal(y1, d1)
    check_epoch(kept1, X, Y, axis, 16)
    check_epoch(kept2, X, Y, axis, 16)


def test_reuse_buffers_allocates_nothing_per_batch_on_rows():
    # documented: with reuse_buffers=True nothing is allocated per batch, and a batch is valid
    # only until the next one is drawn: the full batches of (m, ...) data share one buffer
    X, Y = row_data(50)
    mb = fastopt.MiniBatches(X, Y, batch_size=16, axis=0, seed=0, reuse_buffers=True)
    pointers = {(xb.ctypes.data, yb.ctypes.data) for xb, yb in list(mb)[:3]}
    assert len(pointers) == 1


@pytest.mark.parametrize("axis", [0, 1])
def test_reuse_buffers_content_is_correct_every_epoch(axis):
    X, Y = course_data(50) if axis == 1 else row_data(50)
    mb = fastopt.MiniBatches(X, Y, batch_size=16, axis=axis, seed=0, reuse_buffers=True)
    for _ in range(3):
        seen = []
        for X_b, Y_b in mb:                              # used as they come, as in a loop
            idx = indices_of(X_b, axis)
            np.testing.assert_array_equal(X_b, np.take(X, idx, axis=axis))
            np.testing.assert_array_equal(Y_b, np.take(Y, idx, axis=0 if Y.ndim == 1 else axis))
            seen += idx.tolist()
        assert sorted(seen) == list(range(50))


# ------------------------------------------------------------------------------------------------
# Seeds, epochs.
# ------------------------------------------------------------------------------------------------

def orders(mb, epochs, axis):
    return [[indices_of(xb, axis).tolist() for xb, _ in mb] for _ in range(epochs)]


@pytest.mark.parametrize("axis", [0, 1])
def test_seed_reproducible_and_new_permutation_each_epoch(axis):
    X, Y = course_data(60) if axis == 1 else row_data(60)
    a = orders(fastopt.MiniBatches(X, Y, batch_size=16, axis=axis, seed=42), 3, axis)
    b = orders(fastopt.MiniBatches(X, Y, batch_size=16, axis=axis, seed=42), 3, axis)
    c = orders(fastopt.MiniBatches(X, Y, batch_size=16, axis=axis, seed=43), 3, axis)
    assert a == b
    assert a != c
    assert a[0] != a[1] and a[1] != a[2]                 # a new permutation every epoch
    g = orders(fastopt.MiniBatches(X, Y, batch_size=16, axis=axis,
                                   seed=np.random.default_rng(42)), 3, axis)
    assert g == a                                        # a Generator works as a seed
    one = [[indices_of(xb, axis).tolist() for xb, _ in
            fastopt.minibatches(X, Y, batch_size=16, axis=axis, seed=42)]]
    assert one == a[:1]


def test_shuffle_false_is_data_order_every_epoch():
    X, Y = course_data(20)
    mb = fastopt.MiniBatches(X, Y, batch_size=6, axis=1, shuffle=False)
    assert orders(mb, 2, 1) == [[list(range(0, 6)), list(range(6, 12)), list(range(12, 18)),
                                 [18, 19]]] * 2


def test_epoch_counter():
    X, Y = course_data(20)
    mb = fastopt.MiniBatches(X, Y, batch_size=6, axis=1, seed=0)
    assert mb.epoch == 0 and mb.m == 20
    for e in range(1, 4):
        n = sum(1 for _ in mb)
        assert n == len(mb) == 4
        assert mb.epoch == e


def test_x_and_y_share_one_permutation():
    X, Y = row_data(40, y_ndim=2)
    for X_b, Y_b in fastopt.minibatches(X, Y, batch_size=7, axis=0, seed=9):
        np.testing.assert_array_equal(Y_b[:, 0], 10 * X_b[:, 0].astype(np.int64))


# ------------------------------------------------------------------------------------------------
# Errors.
# ------------------------------------------------------------------------------------------------

def test_mismatched_example_counts_name_both():
    X = np.zeros((3, 10))
    with pytest.raises(ValueError, match=r"10 examples.*Y has 9"):
        fastopt.MiniBatches(X, np.zeros((1, 9)), axis=1)
    with pytest.raises(ValueError, match=r"10.*\b8\b"):
        fastopt.MiniBatches(X, np.zeros(8), axis=1)
    with pytest.raises(ValueError, match=r"\b3\b.*\b10\b"):
        fastopt.MiniBatches(X, np.zeros(10), axis=0)     # axis 0 of X has 3 examples
    with pytest.raises(ValueError, match=r"\b3\b.*\b5\b"):
        list(fastopt.minibatches(X, np.zeros((5, 1)), axis=0))


@pytest.mark.parametrize("b, exc", [(0, ValueError), (-1, ValueError), (2.5, TypeError),
                                    (4.0, TypeError), ("4", TypeError), (None, TypeError),
                                    (True, TypeError)])
def test_bad_batch_size(b, exc):
    with pytest.raises(exc, match="batch_size"):
        fastopt.MiniBatches(np.zeros((3, 10)), batch_size=b, axis=1)
    with pytest.raises(exc, match="batch_size"):
        list(fastopt.minibatches(np.zeros((3, 10)), batch_size=b, axis=1))


def test_numpy_integer_batch_size_is_fine():
    assert len(fastopt.MiniBatches(np.zeros((3, 10)), batch_size=np.int64(4), axis=1)) == 3


@pytest.mark.parametrize("axis, exc", [(2, ValueError), (-3, ValueError), (1.0, TypeError),
                                       ("1", TypeError)])
def test_bad_axis(axis, exc):
    with pytest.raises(exc, match="axis"):
        fastopt.MiniBatches(np.zeros((3, 10)), axis=axis)


def test_axis_out_of_range_for_y():
    with pytest.raises(ValueError, match="axis"):
        fastopt.MiniBatches(np.zeros((3, 4, 10)), np.zeros((4, 10)), axis=2)


@pytest.mark.parametrize("X, Y, axis", [(np.zeros((3, 0)), None, 1), (np.zeros((0, 3)), None, 0),
                                        (np.zeros((3, 0)), np.zeros((1, 0)), 1),
                                        (np.zeros(0), np.zeros(0), 0)])
def test_empty_dataset(X, Y, axis):
    with pytest.raises(ValueError, match="empty"):
        fastopt.MiniBatches(X, Y, axis=axis)


@pytest.mark.parametrize("X, Y, name", [([[1.0, 2.0]], None, "X"), (np.zeros((2, 3)), [1, 2, 3],
                                                                      "Y"),
                                        (3.0, None, "X"), (np.float64(2.0), None, "X"),
                                        (np.array(2.0), None, "X")])
def test_non_array_arguments(X, Y, name):
    with pytest.raises((TypeError, ValueError), match=name):
        fastopt.MiniBatches(X, Y, axis=1 if isinstance(X, list) else 0)


# ------------------------------------------------------------------------------------------------
# Object arrays and other data the native gathers must not copy as raw bytes.
# ------------------------------------------------------------------------------------------------

OBJECT_REPRODUCER = r"""
import gc, sys
import numpy as np, fastopt
X = np.empty((1000, 1), dtype=object)
for i in range(1000):
    X[i, 0] = [i, str(i)]
bs = list(fastopt.MiniBatches(X, batch_size=100, seed=0))
del X
gc.collect()
junk = [[j, "x" * 10] for j in range(20000)]     # reuse the memory of any freed lists
seen = []
for b in bs:
    assert b.dtype == object and b.shape in ((100, 1),), b.shape
    for (item,) in b:
        assert item == [item[0], str(item[0])], item
        seen.append(item[0])
assert sorted(seen) == list(range(1000)), "not a permutation"
assert seen != list(range(1000)), "not shuffled"
print("ok", len(bs))
"""


def test_object_array_batches_survive_the_source_array():
    """Used to segfault: the native row gather memcpy'd object pointers without references."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", OBJECT_REPRODUCER], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.strip() == "ok 10"


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("reuse", [False, True])
def test_object_arrays_go_through_numpy(axis, reuse, monkeypatch):
    def refuse(*args):
        raise AssertionError("a native gather was called on an object array")
    monkeypatch.setattr(fastopt.batching._k, "gather_rows", refuse)
    monkeypatch.setattr(fastopt.batching._k, "gather_cols_epoch", refuse)
    m = 37
    X = np.empty((m, 2) if axis == 0 else (2, m), dtype=object)
    for i in range(m):
        X[(i, 0) if axis == 0 else (0, i)] = i
        X[(i, 1) if axis == 0 else (1, i)] = {"i": i}
    Y = np.array([f"label{i}" for i in range(m)], dtype=object)
    mb = fastopt.MiniBatches(X, Y, batch_size=8, axis=axis, seed=3, reuse_buffers=reuse)
    for _ in range(2):
        seen = []
        for X_b, Y_b in mb:
            assert X_b.dtype == object and X_b.flags.c_contiguous
            idx = [int(i) for i in (X_b[:, 0] if axis == 0 else X_b[0])]
            np.testing.assert_array_equal(X_b, np.take(X, idx, axis=axis))
            assert Y_b.tolist() == [f"label{i}" for i in idx]
            seen.extend(idx)
        assert sorted(seen) == list(range(m))


def test_native_copy_ok():
    from fastopt.batching import native_copy_ok
    assert native_copy_ok(np.zeros((3, 4)))
    assert native_copy_ok(np.zeros(5, np.int8)) and native_copy_ok(np.zeros(5, np.complex64))
    assert native_copy_ok(np.zeros(3, [("a", np.int32), ("b", np.int32)]))   # plain 8 bytes
    assert not native_copy_ok(np.empty((3, 4), dtype=object))
    assert not native_copy_ok(np.zeros(3, [("a", np.int32), ("o", object)]))  # hides a pointer
    assert not native_copy_ok(np.zeros((4, 3)).T)                              # not C-contiguous
    assert not native_copy_ok(np.zeros(3, np.complex128))                      # 16-byte items
    assert not native_copy_ok(np.zeros(3, "U3"))
    raw = np.zeros(8 * 11 + 1, np.uint8)
    unaligned = raw[1:].view(np.float64)
    assert not unaligned.flags.aligned and not native_copy_ok(unaligned)
    assert not native_copy_ok([1.0, 2.0]) and not native_copy_ok(None)


@pytest.mark.parametrize("axis", [0, 1])
def test_unaligned_data_is_gathered_correctly(axis):
    raw = np.zeros(8 * 60 + 1, np.uint8)
    X = raw[1:].view(np.float64).reshape((20, 3) if axis == 0 else (3, 20))
    X[...] = np.arange(60).reshape(X.shape)
    assert not X.flags.aligned
    for X_b in fastopt.MiniBatches(X, batch_size=6, axis=axis, seed=1):
        assert X_b.flags.aligned and X_b.flags.c_contiguous
        idx = (X_b[:, 0] // 3 if axis == 0 else X_b[0]).astype(np.int64)
        np.testing.assert_array_equal(X_b, np.take(X, idx, axis=axis))


def test_gather_column_batches_falls_back_for_object_arrays():
    from fastopt.batching import gather_column_batches
    A = np.empty((2, 7), dtype=object)
    A[0] = [[i] for i in range(7)]
    A[1] = list(range(7))
    perm = np.array([3, 0, 6, 1, 5, 2, 4], np.int64)
    out = gather_column_batches(A, perm, 3, 2, 1)
    assert [b.shape for b in out] == [(2, 3), (2, 3), (2, 1)]
    assert [b[1].tolist() for b in out] == [[3, 0, 6], [1, 5, 2], [4]]
    assert out[0][0].tolist() == [[3], [0], [6]]
    with pytest.raises(ValueError, match="2-D"):
        gather_column_batches(np.zeros(7), perm, 3, 2, 1)
    with pytest.raises(TypeError, match="ndarray"):
        gather_column_batches([[1.0]], perm, 3, 2, 1)


# ------------------------------------------------------------------------------------------------
# Flags and seeds: one set of rules (the kernels' checks).
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["shuffle", "drop_last", "reuse_buffers"])
@pytest.mark.parametrize("value", [1, 0, "no", None, 1.0, [True]])
def test_flags_must_be_bools(flag, value):
    """Used to be truthiness: shuffle="no" shuffled, 0 silently meant False."""
    with pytest.raises(TypeError, match=flag):
        fastopt.MiniBatches(np.zeros((3, 10)), axis=1, **{flag: value})


@pytest.mark.parametrize("flag", ["shuffle", "drop_last", "reuse_buffers"])
def test_numpy_bools_are_flags(flag):
    mb = fastopt.MiniBatches(np.zeros((3, 10)), axis=1, batch_size=4, **{flag: np.bool_(False)})
    assert getattr(mb, flag) is False
    mb = fastopt.MiniBatches(np.zeros((3, 10)), axis=1, batch_size=4, **{flag: np.True_})
    assert getattr(mb, flag) is True


@pytest.mark.parametrize("seed", ["a", 1.5, ["a"], [1, 2.5], (True,), b"x", True, np.bool_(False),
                                  {1: 2}, np.array([1.0, 2.0])])
def test_bad_seed_is_a_clear_type_error(seed):
    with pytest.raises(TypeError, match=r"seed must be an int, a numpy.random.Generator or None"):
        fastopt.MiniBatches(np.zeros((3, 10)), axis=1, seed=seed)


@pytest.mark.parametrize("seed", [-1, [3, -1], []])
def test_negative_seed_is_a_value_error_naming_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        fastopt.MiniBatches(np.zeros((3, 10)), axis=1, seed=seed)


def test_sequence_seeds_as_numpy_takes_them():
    X = np.arange(10.0).reshape(1, 10)
    for seed in ([7, 2], (7, np.int64(2)), np.array([7, 2])):
        a = [b.tolist() for b in fastopt.MiniBatches(X, axis=1, batch_size=3, seed=seed)]
        rng = np.random.default_rng([7, 2])
        assert a[0] == X[:, rng.permutation(10)[:3]].tolist()


@pytest.mark.parametrize("seed", [np.int64(5), 5, np.random.SeedSequence(5)])
def test_integer_like_seeds_are_fine(seed):
    X = np.arange(10.0).reshape(1, 10)
    a = [b.tolist() for b in fastopt.MiniBatches(X, axis=1, batch_size=3, seed=seed)]
    b = [b.tolist() for b in fastopt.MiniBatches(X, axis=1, batch_size=3, seed=5)]
    assert a == b


def test_axis_errors_name_the_dimension_count():
    with pytest.raises(ValueError, match=r"axis 3 is out of range.* 2 dimension"):
        fastopt.MiniBatches(np.zeros((3, 10)), axis=3)
    with pytest.raises(TypeError, match="axis"):
        fastopt.MiniBatches(np.zeros((3, 10)), axis=True)
