r"""Mini-batches: shuffle the examples once per epoch and cut them into batches.

The course's recipe: one permutation of the m examples, shared by X and Y; ``floor(m / size)``
full batches and one partial batch of the rest.  ``batch_size = m`` is batch gradient descent,
``batch_size = 1`` stochastic gradient descent.

Layouts (``axis`` names the axis that holds the examples):

* ``axis=0`` -- NumPy/PyTorch layout, X of shape (m, ...).  Unshuffled batches are zero-copy views;
  shuffled batches are gathered row by row (one memcpy per example, threaded).
* ``axis=-1`` (``axis=1`` for 2-D X) -- the course's layout, X of shape (n_x, m), one example per
  column.  Shuffled epochs are gathered in one native pass that streams each feature row through
  the cache once (X[:, idx] touches a cache line per element instead), into one buffer of shape
  (n_batches, n_x, batch_size) whose slices are the batches.

Every batch is a C-contiguous array.  By default every batch is a fresh array, so batches a user
keeps stay valid; ``reuse_buffers=True`` reuses the same memory (no allocation per batch after the
first epoch), and a batch is then valid only until the next batch is drawn.
"""

import numpy as np

from ._dispatch import kernels as _k

__all__ = ["MiniBatches", "gather_column_batches", "minibatches"]


def native_copy_ok(A):
    """Whether the native gathers may copy A's items as raw bytes.

    The gathers (``gather_rows``, ``gather_cols_epoch``) memcpy whole items, so they are only
    correct for a C-contiguous, aligned ndarray of plain bytes: items of 1, 2, 4 or 8 bytes and no
    Python objects (copying an object array's pointers without their reference counts would
    leave batches pointing at freed objects).  Every other array goes through NumPy's indexing.
    The one check shared by :class:`MiniBatches` and :func:`fastopt.course.random_mini_batches`.
    """
    return (isinstance(A, np.ndarray) and A.flags.c_contiguous and A.flags.aligned
            and A.dtype.itemsize in (1, 2, 4, 8) and not A.dtype.hasobject)


_SEED_TYPES = ("seed must be an int, a numpy.random.Generator or None (or what "
               "numpy.random.default_rng takes: a SeedSequence, a BitGenerator, a sequence of "
               "ints >= 0)")


def _seed_int(x, what):
    if isinstance(x, (bool, np.bool_)) or not hasattr(type(x), "__index__"):
        raise TypeError(f"{_SEED_TYPES}, got {what} {type(x).__name__}")
    return _k.check_int(x, "seed", 0)


def _make_rng(seed):
    """One Generator from `seed`: checked here, so a bad seed is a TypeError/ValueError naming
    seed rather than an error from inside numpy.random.SeedSequence."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(seed)
    if isinstance(seed, (list, tuple)) or (isinstance(seed, np.ndarray) and seed.ndim == 1):
        if len(seed) == 0:
            raise ValueError(f"{_SEED_TYPES}, got an empty sequence")
        return np.random.default_rng([_seed_int(x, "a sequence holding") for x in seed])
    return np.random.default_rng(_seed_int(seed, "a"))


def _check_array(x, name):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension")
    return x


class MiniBatches:
    r"""A reusable mini-batch iterator: each ``iter()`` is one epoch with a new permutation.

    Parameters
    ----------
    X : ndarray, the examples along `axis`.
    Y : ndarray or None, the labels/targets, with the same number of examples along `axis`
        (1-D Y is always indexed along its only axis).
    batch_size : int >= 1, examples per batch (> m gives one batch).
    axis : int, the examples axis of X (and of a 2-D or N-D Y): 0 for (m, ...) data, 1 (or -1) for
        the course's (n_x, m).
    shuffle : bool, draw a new permutation every epoch (else the batches follow the data order).
    seed : int, numpy.random.Generator or None, seeds one Generator for the whole life of the
        iterator, so a run is reproducible (a sequence of ints >= 0, a SeedSequence or a
        BitGenerator are taken too, as by ``numpy.random.default_rng``).
    drop_last : bool, drop the partial last batch.
    reuse_buffers : bool, reuse the batch memory instead of allocating fresh arrays: nothing is
        allocated per batch, and a batch is valid only until the next one is drawn.

    Attributes
    ----------
    epoch : int, the number of epochs fully iterated.
    m : int, the number of examples.

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> X = np.arange(10.0).reshape(1, 10)          # the course's layout: 10 examples, 1 feature
    >>> batches = fastopt.MiniBatches(X, batch_size=4, axis=1, shuffle=False)
    >>> len(batches), [b.shape for b in batches]
    (3, [(1, 4), (1, 4), (1, 2)])
    """

    def __init__(self, X, Y=None, *, batch_size=64, axis=0, shuffle=True, seed=None,
                 drop_last=False, reuse_buffers=False):
        self.X = _check_array(X, "X")
        self.Y = None if Y is None else _check_array(Y, "Y")
        self.batch_size = _k.check_int(batch_size, "batch_size", 1)
        self.axis = _k.check_axis(axis, X.ndim, "axis")
        self.m = X.shape[self.axis]
        if self.Y is not None:
            self._y_axis = 0 if self.Y.ndim == 1 else self.axis
            if self._y_axis >= self.Y.ndim:
                raise ValueError(f"axis {axis} is out of range for Y with {self.Y.ndim} "
                                 f"dimension(s)")
            my = self.Y.shape[self._y_axis]
            if my != self.m:
                raise ValueError(f"X has {self.m} examples along axis {self.axis} but Y has "
                                 f"{my} along axis {self._y_axis}")
        if self.m == 0:
            raise ValueError("the dataset is empty (0 examples)")
        self.shuffle = _k.check_bool(shuffle, "shuffle")
        self.drop_last = _k.check_bool(drop_last, "drop_last")
        self.reuse_buffers = _k.check_bool(reuse_buffers, "reuse_buffers")
        self._rng = _make_rng(seed)
        self.epoch = 0
        self._buffers = {}

    def __len__(self):
        _, full, rem = self._bounds()
        return full + (1 if rem else 0)

    def _bounds(self):
        """(batch size, full batches, size of the partial last batch or 0)."""
        b = min(self.batch_size, self.m)      # batch_size > m: one batch of everything
        full, rem = divmod(self.m, b)
        return b, full, (0 if self.drop_last else rem)

    def __iter__(self):
        b, full, rem = self._bounds()
        perm = self._rng.permutation(self.m).astype(np.int64) if self.shuffle else None
        xs = self._batches(self.X, self.axis, perm, b, full, rem, "X")
        ys = (self._batches(self.Y, self._y_axis, perm, b, full, rem, "Y")
              if self.Y is not None else None)
        for i in range(full + (1 if rem else 0)):
            yield xs[i] if ys is None else (xs[i], ys[i])
        self.epoch += 1

    # -- how one array is cut ---------------------------------------------------------------
    def _batches(self, A, axis, perm, b, full, rem, name):
        """A list (or lazy sequence) of the batches of A for this epoch."""
        if perm is None:
            return _Slices(A, axis, b)
        native = native_copy_ok(A)
        if native and axis == 0:
            return _RowGather(A, perm, b, full, self._get, name)
        if native and axis == A.ndim - 1:
            batches = gather_column_batches(A.reshape(-1, A.shape[-1]), perm, b, full, rem,
                                            lambda part, shape: self._get(name + part, shape,
                                                                          A.dtype))
            return [x.reshape(A.shape[:-1] + x.shape[-1:]) for x in batches]
        # other layouts (a middle axis, non-contiguous or unaligned X, odd item sizes, object
        # arrays): NumPy's take
        return [np.ascontiguousarray(np.take(A, perm[k * b:(k + 1) * b], axis=axis))
                for k in range(full + (1 if rem else 0))]

    def _get(self, key, shape, dtype):
        if self.reuse_buffers:
            buf = self._buffers.get(key)
            if buf is None or buf.shape != shape or buf.dtype != dtype:
                buf = self._buffers[key] = np.empty(shape, dtype)
            return buf
        return np.empty(shape, dtype)


class _Slices:
    """Unshuffled batches: views along axis 0, copies (contiguous) along other axes."""

    def __init__(self, A, axis, b):
        self.A, self.axis, self.b = A, axis, b

    def __getitem__(self, i):
        index = [slice(None)] * self.A.ndim
        index[self.axis] = slice(i * self.b, (i + 1) * self.b)
        view = self.A[tuple(index)]
        return view if view.flags.c_contiguous else np.ascontiguousarray(view)


class _RowGather:
    """Shuffled batches of (m, ...) data: each batch gathered when it is asked for."""

    def __init__(self, A, perm, b, full, get_buffer, name):
        self.A2 = A.reshape(A.shape[0], -1)
        self.shape_tail = A.shape[1:]
        self.perm, self.b, self.full = perm, b, full
        self.get_buffer, self.name = get_buffer, name

    def __getitem__(self, i):
        idx = self.perm[i * self.b:(i + 1) * self.b]
        n = len(idx)
        key = f"{self.name}_rows_{'full' if i < self.full else 'last'}"
        shape = (n, self.A2.shape[1])
        out = self.get_buffer(key, shape, self.A2.dtype)
        _k.gather_rows(self.A2, idx, out)
        return out.reshape((n,) + self.shape_tail)


def gather_column_batches(A, perm, b, n_full, rem, alloc=None):
    """The column batches ``A[:, perm[k*b:(k+1)*b]]`` (k < n_full) and, when rem > 0, the last
    ``A[:, perm[n_full*b:]]``, for a C-contiguous 2-D A, in one native pass over A.

    The full batches are slices of one (n_full, rows, b) buffer.  `alloc(part, shape)` gives the
    buffers ("_full", "_last"); the default allocates fresh arrays.  An A the native pass cannot
    copy as raw bytes (see :func:`native_copy_ok`: object arrays, unaligned or non-contiguous
    data, odd item sizes) is gathered with NumPy's indexing into the same buffers."""
    if not isinstance(A, np.ndarray):
        raise TypeError(f"A must be a numpy.ndarray, got {type(A).__name__}")
    if A.ndim != 2:
        raise ValueError(f"A must be 2-D (rows, examples), got shape {A.shape}")
    if alloc is None:
        alloc = lambda part, shape: np.empty(shape, A.dtype)  # noqa: E731
    full = alloc("_full", (n_full, A.shape[0], b))
    last = alloc("_last", (A.shape[0], rem)) if rem else None
    if native_copy_ok(A):
        _k.gather_cols_epoch(A, perm, b, full, last)
    else:
        for k in range(n_full):
            full[k] = A[:, perm[k * b:(k + 1) * b]]
        if rem:
            last[...] = A[:, perm[n_full * b:n_full * b + rem]]
    return list(full) + ([last] if rem else [])


def minibatches(X, Y=None, *, batch_size=64, axis=0, shuffle=True, seed=None, drop_last=False,
                reuse_buffers=False):
    """One epoch of mini-batches: yields ``(X_b, Y_b)``, or ``X_b`` when Y is None.

    Same arguments and semantics as :class:`MiniBatches` (which is reusable across epochs and
    draws a new permutation each epoch from one seeded Generator); this is
    ``iter(MiniBatches(...))``.

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> X = np.arange(12.0).reshape(6, 2); Y = np.arange(6)
    >>> [y.tolist() for _, y in fastopt.minibatches(X, Y, batch_size=4, shuffle=False)]
    [[0, 1, 2, 3], [4, 5]]
    """
    return iter(MiniBatches(X, Y, batch_size=batch_size, axis=axis, shuffle=shuffle, seed=seed,
                            drop_last=drop_last, reuse_buffers=reuse_buffers))
