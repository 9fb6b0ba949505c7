r"""The course assignment's optimizer functions, backed by fastopt's kernels.

Drop-in replacements for the functions of the "Optimization methods" programming assignment
(week 2 of "Improving Deep Neural Networks"), with the same names, arguments and return values::

    from fastopt.course import (initialize_velocity, initialize_adam, random_mini_batches,
                                update_parameters_with_gd, update_parameters_with_momentum,
                                update_parameters_with_adam, update_lr, schedule_lr_decay)

Layout, as in the assignment: ``parameters`` holds ``"W1", "b1", ..., "WL", "bL"`` (L =
``len(parameters) // 2``); ``grads``, ``v`` and ``s`` hold ``"dW1", "db1", ...``.  ``grads`` may
hold more entries (the assignment's backward pass also returns ``"dA1"``, ``"dZ1"``, ...): only
``"dW{l}"`` and ``"db{l}"`` are read.  X has one example per column, shape (n_x, m).

Differences from the assignment's NumPy code, none of which changes a returned value beyond
rounding:

* Every update is in place, in one call of a fastopt kernel for all 2L arrays: the arrays of
  ``parameters``, ``v`` and ``s`` are the same objects after the call, and they are still returned
  as the assignment expects.  Every array is checked (dtype, shape, C-contiguity, no overlap)
  before any is written, so an error leaves all of them unchanged.
* Parameters and state must be float32 or float64 and C-contiguous (what ``np.random.randn`` and
  ``initialize_adam`` give); a gradient that is not C-contiguous is read through a contiguous copy.
* Adam computes its scalars (bias corrections, step size) once in float64, so a float32 update
  rounds a little differently from ``W - lr * v_corrected / (np.sqrt(s_corrected) + epsilon)``.
* ``random_mini_batches`` returns C-contiguous arrays (the assignment returns slices of one
  shuffled copy), gathered natively; the batches are equal, array for array.
"""

from collections.abc import Mapping

import numpy as np

from ._dispatch import kernels as _k
from ._params import aligned_zeros
from .batching import gather_column_batches, native_copy_ok
from .kernels import debias
from .schedules import inverse_time_decay

# the kernels' largest step count (bias corrections use it as an exponent)

__all__ = [
    "initialize_velocity",
    "initialize_adam",
    "update_parameters_with_gd",
    "update_parameters_with_momentum",
    "update_parameters_with_adam",
    "random_mini_batches",
    "update_lr",
    "schedule_lr_decay",
]


def _names(parameters):
    """The parameter names in layer order: ["W1", "b1", ..., "WL", "bL"]."""
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict of arrays ('W1', 'b1', ...), "
                        f"got {type(parameters).__name__}")
    # ceil: an odd count means a missing W or b, reported below (never a silently skipped layer)
    L = (len(parameters) + 1) // 2
    names = [f"{p}{l}" for l in range(1, L + 1) for p in ("W", "b")]
    for k in names:
        if k not in parameters:
            raise KeyError(f"parameters has no {k!r}: a network of {L} layer(s) needs "
                           f"{_expected(names, '')} (it has {sorted(map(str, parameters))})")
    extra = [k for k in parameters if k not in names]
    if extra:
        raise ValueError(f"parameters has entries that are not layer weights: {extra} "
                         f"(expected exactly {_expected(names, '')})")
    return names


def _expected(names, prefix):
    keys = [prefix + k for k in names]
    return ", ".join(map(repr, keys)) if len(keys) <= 6 else f"{keys[0]!r} ... {keys[-1]!r}"


def _entries(d, dname, names):
    """[d["dW1"], d["db1"], ...], with a KeyError naming the missing key and the dict."""
    if not isinstance(d, Mapping):
        raise TypeError(f"{dname} must be a dict of arrays ('dW1', 'db1', ...), "
                        f"got {type(d).__name__}")
    out = []
    for k in names:
        try:
            out.append(d["d" + k])
        except KeyError:
            raise KeyError(f"{dname} has no {'d' + k!r}: for parameters {_expected(names, '')} "
                           f"it must hold {_expected(names, 'd')}") from None
    return out


def _grads(grads, names):
    return [g if isinstance(g, np.ndarray) and g.flags.c_contiguous else np.ascontiguousarray(g)
            for g in _entries(grads, "grads", names)]


def _check_state(*named):
    """The state dicts (momentum's v, Adam's v and s) must be distinct dicts."""
    for i, (a_name, a) in enumerate(named):
        for b_name, b in named[i + 1:]:
            if a is b:
                raise ValueError(f"{a_name} and {b_name} are the same dict: each needs its own "
                                 f"arrays (initialize_adam returns two separate dicts)")


def _kernel_call(fn, groups, names, *args, **kwargs):
    """Call the kernel; an overlap it refuses is reported in the course's names."""
    try:
        fn(*args, **kwargs)
    except ValueError as e:
        if "overlap" not in str(e):
            raise
        found = _find_overlap(groups, names)
        if found is None:
            raise
        raise ValueError(f"{found[0]} and {found[1]} overlap in memory: each array of an update "
                         f"must be its own buffer (nothing was updated)") from None


def _find_overlap(groups, names):
    """The first pair of arrays (in the course's names) that share memory."""
    items = []
    for dname, prefix, arrays in groups:
        for k, a in zip(names, arrays):
            if isinstance(a, np.ndarray) and a.size:
                items.append((f"{dname}[{prefix + k!r}]", a))
    for i, (na, a) in enumerate(items):
        for nb, b in items[i + 1:]:
            if np.may_share_memory(a, b):
                return na, nb
    return None


def _zeros_like_params(parameters):
    return {"d" + k: aligned_zeros(parameters[k].shape, parameters[k].dtype)
            for k in _names(parameters)}


def initialize_velocity(parameters):
    """Momentum's velocity: ``v["dW1"]``, ``v["db1"]``, ... zeros shaped like the parameters.

    The arrays are C-contiguous (64-byte aligned) and of the parameter's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> v = initialize_velocity({"W1": np.ones((2, 3)), "b1": np.ones((2, 1))})
    >>> sorted(v), v["dW1"].shape, float(v["dW1"].sum())
    (['dW1', 'db1'], (2, 3), 0.0)
    """
    return _zeros_like_params(parameters)


def initialize_adam(parameters):
    """Adam's moments ``(v, s)``: two dicts of zeros like :func:`initialize_velocity`."""
    return _zeros_like_params(parameters), _zeros_like_params(parameters)


def update_parameters_with_gd(parameters, grads, learning_rate):
    r"""One step of (mini-batch) gradient descent, in place: :math:`W \leftarrow W - \alpha\,dW`.

    One ``fastopt.sgd_step`` call for all layers.  Returns ``parameters`` (the same dict, whose
    arrays were updated).

    Examples
    --------
    >>> import numpy as np
    >>> parameters = {"W1": np.array([[1.0, 2.0]]), "b1": np.array([[0.5]])}
    >>> grads = {"dW1": np.array([[10.0, -10.0]]), "db1": np.array([[1.0]]), "dA1": None}
    >>> update_parameters_with_gd(parameters, grads, 0.01)["W1"]
    array([[0.9, 2.1]])
    """
    names = _names(parameters)
    lr = _k.check_nonneg(learning_rate, "learning_rate")
    params, gs = [parameters[k] for k in names], _grads(grads, names)
    _kernel_call(_k.sgd_step_multi, (("parameters", "", params), ("grads", "d", gs)), names,
                 params, gs, lr=lr, labels=names)
    return parameters


def update_parameters_with_momentum(parameters, grads, v, beta, learning_rate):
    r"""One step of gradient descent with momentum, in place.

    .. math::
        v_{dW} \leftarrow \beta\, v_{dW} + (1-\beta)\, dW, \qquad W \leftarrow W - \alpha\, v_{dW}

    (the course's form, ``fastopt.momentum_step`` with ``dampening=None``).  Returns
    ``(parameters, v)``, the same dicts, updated.

    Examples
    --------
    >>> import numpy as np
    >>> parameters = {"W1": np.array([[1.0]]), "b1": np.array([[0.0]])}
    >>> grads = {"dW1": np.array([[2.0]]), "db1": np.array([[0.0]])}
    >>> parameters, v = update_parameters_with_momentum(
    ...     parameters, grads, initialize_velocity(parameters), beta=0.9, learning_rate=0.1)
    >>> v["dW1"], parameters["W1"]           # v = 0.1 * 2; W = 1 - 0.1 * 0.2
    (array([[0.2]]), array([[0.98]]))
    """
    names = _names(parameters)
    lr = _k.check_nonneg(learning_rate, "learning_rate")
    beta = _k.check_beta(beta, "beta")
    params, gs, vs = [parameters[k] for k in names], _grads(grads, names), _entries(v, "v", names)
    _kernel_call(_k.momentum_step_multi,
                 (("parameters", "", params), ("grads", "d", gs), ("v", "d", vs)), names,
                 params, gs, vs, lr=lr, beta=beta, dampening=None, labels=names)
    return parameters, v


def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9,
                                beta2=0.999, epsilon=1e-8):
    r"""One Adam step, in place (the assignment's form: epsilon outside the square root).

    .. math::
        v \leftarrow \beta_1 v + (1-\beta_1)\, dW, \quad
        s \leftarrow \beta_2 s + (1-\beta_2)\, dW^2, \quad
        W \leftarrow W - \alpha\, \frac{v / (1-\beta_1^t)}{\sqrt{s / (1-\beta_2^t)} + \varepsilon}

    One ``fastopt.adam_step`` call for all layers; ``t`` is the Adam step counter, from 1.

    Returns
    -------
    (parameters, v, s, v_corrected, s_corrected): the first three are the dicts passed in,
    updated in place; ``v_corrected`` and ``s_corrected`` are new dicts of the bias-corrected
    moments ``v / (1 - beta1**t)`` and ``s / (1 - beta2**t)`` (``fastopt.debias``).

    Examples
    --------
    On the first step the corrected moments are dW and dW**2, so each weight moves by about
    ``learning_rate`` against the sign of its gradient:

    >>> import numpy as np
    >>> parameters = {"W1": np.array([[1.0, 1.0]]), "b1": np.array([[0.0]])}
    >>> grads = {"dW1": np.array([[3.0, -0.5]]), "db1": np.array([[0.0]])}
    >>> v, s = initialize_adam(parameters)
    >>> out = update_parameters_with_adam(parameters, grads, v, s, t=1, learning_rate=0.01)
    >>> np.round(out[0]["W1"], 6), out[3]["dW1"]
    (array([[0.99, 1.01]]), array([[ 3. , -0.5]]))
    """
    names = _names(parameters)
    t = _k.check_int(t, "t", 1, _k.MAX_COUNT + 1)
    lr = _k.check_nonneg(learning_rate, "learning_rate")
    beta1, beta2 = _k.check_beta(beta1, "beta1"), _k.check_beta(beta2, "beta2")
    epsilon = _k.check_nonneg(epsilon, "epsilon")
    params, gs = [parameters[k] for k in names], _grads(grads, names)
    _check_state(("v", v), ("s", s))
    vs, ss = _entries(v, "v", names), _entries(s, "s", names)
    _kernel_call(_k.adam_step_multi, (("parameters", "", params), ("grads", "d", gs),
                                      ("v", "d", vs), ("s", "d", ss)), names,
                 params, gs, vs, ss, step=t, lr=lr, beta1=beta1, beta2=beta2, eps=epsilon,
                 labels=names)
    v_corrected = {"d" + k: debias(v["d" + k], beta=beta1, step=t) for k in names}
    s_corrected = {"d" + k: debias(s["d" + k], beta=beta2, step=t) for k in names}
    return parameters, v, s, v_corrected, s_corrected


def _column_batches(A, permutation, size, n_full, rem, reshape_to=None):
    """The batches ``A[:, permutation][:, k*size:(k+1)*size]``: one native pass for a
    C-contiguous 2-D A, else the assignment's own indexing and slicing."""
    if A.ndim == 2 and native_copy_ok(A) and (reshape_to is None or A.shape[0] == 1):
        return gather_column_batches(A, permutation, size, n_full, rem)
    shuffled = A[:, permutation]
    if reshape_to is not None:
        shuffled = shuffled.reshape(reshape_to)        # the assignment's .reshape((1, m))
    batches = [shuffled[:, k * size:(k + 1) * size] for k in range(n_full)]
    if rem:
        batches.append(shuffled[:, n_full * size:])
    return batches


def random_mini_batches(X, Y, mini_batch_size=64, seed=0):
    """Shuffle the columns of (X, Y) and cut them into mini-batches, as the assignment does.

    Seeds NumPy's global legacy generator with ``np.random.seed(seed)`` and draws one
    ``np.random.permutation(m)`` (so the permutation, and the global generator's state afterwards,
    are the assignment's), then returns ``floor(m / mini_batch_size)`` full batches and, when
    ``mini_batch_size`` does not divide m, one last batch of the ``m % mini_batch_size`` remaining
    examples.  ``Y`` must have one row, shape ``(1, m)`` (the assignment reshapes the shuffled Y
    to ``(1, m)``); a 1-D ``Y`` of length m is taken as ``(1, m)``, so its batches are ``(1, size)``
    too.  X and Y must have the same number m of examples (columns): a mismatch is a ValueError
    naming both counts (never a silent truncation).

    A C-contiguous 2-D X (and Y) is gathered in one native pass that reads each row of X once
    (``X[:, permutation]`` touches a cache line per element); other layouts use the assignment's
    NumPy indexing.

    Returns
    -------
    list of ``(mini_batch_X, mini_batch_Y)`` tuples, of shapes ``(n_x, size)`` and ``(1, size)``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(10.0).reshape(1, 10); Y = (X > 4).astype(float)
    >>> batches = random_mini_batches(X, Y, mini_batch_size=4, seed=0)
    >>> [b[0].shape for b in batches]
    [(1, 4), (1, 4), (1, 2)]
    """
    size = _k.check_int(mini_batch_size, "mini_batch_size", 1)
    if not isinstance(X, np.ndarray):
        raise TypeError(f"X must be a numpy.ndarray of shape (n_x, m), got {type(X).__name__}")
    if X.ndim < 2:
        raise ValueError(f"X must have shape (n_x, m), one example per column, got shape "
                         f"{X.shape}")
    if not isinstance(Y, np.ndarray):
        raise TypeError(f"Y must be a numpy.ndarray of shape (1, m), got {type(Y).__name__}")
    m = X.shape[1]
    if Y.ndim == 1:                  # labels as a 1-D array of length m: taken as (1, m)
        Y = Y.reshape(1, -1)
    if Y.ndim != 2 or Y.shape[0] != 1:
        raise ValueError(f"Y must have shape (1, m) (one label per column) or (m,), got shape "
                         f"{Y.shape}")
    if Y.shape[1] != m:
        raise ValueError(f"X has {m} examples (columns) but Y has {Y.shape[1]}: X must be "
                         f"(n_x, m) and Y (1, m), one example per column")
    np.random.seed(seed)
    permutation = np.random.permutation(m).astype(np.int64, copy=False)
    n_full, rem = divmod(m, size)
    xs = _column_batches(X, permutation, size, n_full, rem)
    ys = _column_batches(Y, permutation, size, n_full, rem, reshape_to=(1, m))
    return list(zip(xs, ys))


def update_lr(learning_rate0, epoch_num, decay_rate):
    """Inverse-time decay, the assignment's ``learning_rate0 / (1 + decay_rate * epoch_num)``.

    ``fastopt.inverse_time_decay(learning_rate0, decay_rate)`` evaluated at ``epoch_num`` (an
    integer >= 0).

    Examples
    --------
    >>> [round(update_lr(0.2, epoch, 1), 4) for epoch in (1, 2, 3, 4)]   # the lecture's case
    [0.1, 0.0667, 0.05, 0.04]
    """
    return inverse_time_decay(_k.check_nonneg(learning_rate0, "learning_rate0"),
                              _k.check_nonneg(decay_rate, "decay_rate"))(
        _k.check_int(epoch_num, "epoch_num", 0))


def schedule_lr_decay(learning_rate0, epoch_num, decay_rate, time_interval=1000):
    """Staircase inverse-time decay, the assignment's
    ``learning_rate0 / (1 + decay_rate * floor(epoch_num / time_interval))``.

    ``fastopt.inverse_time_decay(learning_rate0, decay_rate, time_interval=time_interval,
    staircase=True)`` evaluated at ``epoch_num`` (an integer >= 0).

    Examples
    --------
    >>> [schedule_lr_decay(0.5, epoch, 1) for epoch in (999, 1000, 2500)]
    [0.5, 0.25, 0.16666666666666666]
    """
    return inverse_time_decay(_k.check_nonneg(learning_rate0, "learning_rate0"),
                              _k.check_nonneg(decay_rate, "decay_rate"),
                              time_interval=_k.check_int(time_interval, "time_interval", 1),
                              staircase=True)(_k.check_int(epoch_num, "epoch_num", 0))
