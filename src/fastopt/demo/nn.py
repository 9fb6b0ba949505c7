r"""A small fully connected network in NumPy, written the course's way.

Layout: one example per column.  ``X`` has shape ``(n_x, m)``; the targets ``Y`` have shape
``(1, m)`` (0/1 labels, sigmoid output) or ``(n_classes, m)`` (one-hot, softmax output).
Parameters are the course's dict ``{"W1": (n_1, n_0), "b1": (n_1, 1), ...}`` and the gradients
``{"dW1": ..., "db1": ...}``, so the dict goes straight into a fastopt optimizer.

Forward, for layers l = 1..L (ReLU hidden layers, sigmoid or softmax output)::

    Z[l] = W[l] A[l-1] + b[l]        A[0] = X
    A[l] = relu(Z[l])  (l < L)       A[L] = sigmoid(Z[L]) or softmax(Z[L])

Cost, the mean cross-entropy over the m examples of the batch::

    binary:   J = -1/m sum( Y log A[L] + (1 - Y) log(1 - A[L]) )
    softmax:  J = -1/m sum( Y * log A[L] )

Backward: with either output pair the gradient with respect to the output pre-activation is
simply ``dZ[L] = (A[L] - Y) / m``; then, for l = L..1::

    dW[l] = dZ[l] A[l-1]^T      db[l] = sum over examples of dZ[l]
    dA[l-1] = W[l]^T dZ[l]      dZ[l-1] = dA[l-1] * (Z[l-1] > 0)

This module only computes; the parameter updates are the optimizers' (fastopt.Adam etc.).
"""

import numpy as np

__all__ = ["init_params", "forward", "cost", "backward", "cost_and_grads", "predict",
           "accuracy", "num_layers"]


def num_layers(params):
    """The number of layers L of a parameter dict ("W1", "b1", ..., "WL", "bL")."""
    return len(params) // 2


def init_params(layer_dims, seed=0, dtype=np.float64):
    """He initialisation, as the course: ``W[l] ~ N(0, 2 / n[l-1])``, ``b[l] = 0``.

    `layer_dims` lists the layer widths, input first: ``[2, 5, 2, 1]`` is the course's 3-layer
    network.  The arrays are fresh, C-contiguous and of `dtype`; the same seed gives the same
    network, so every optimizer of an experiment can start from the same point.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for l in range(1, len(layer_dims)):
        fan_in = layer_dims[l - 1]
        W = rng.standard_normal((layer_dims[l], fan_in)) * np.sqrt(2.0 / fan_in)
        params[f"W{l}"] = np.ascontiguousarray(W, dtype=dtype)
        params[f"b{l}"] = np.zeros((layer_dims[l], 1), dtype=dtype)
    return params


def _relu(Z):
    return np.maximum(Z, 0.0)


def _sigmoid(Z):
    # exp(-|Z|) never overflows; the two branches are the same function
    E = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1.0 / (1.0 + E), E / (1.0 + E))


def _softmax(Z):
    E = np.exp(Z - Z.max(axis=0, keepdims=True))
    return E / E.sum(axis=0, keepdims=True)


def forward(params, X):
    """The network's output ``A[L]`` and the cache that ``backward`` needs.

    The output layer is a sigmoid when it has one unit and a softmax otherwise.
    """
    L = num_layers(params)
    A = X
    cache = [(X, None)]                          # (A[l], Z[l]) for l = 0..L
    for l in range(1, L + 1):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]
        if l < L:
            A = _relu(Z)
        elif Z.shape[0] == 1:
            A = _sigmoid(Z)
        else:
            A = _softmax(Z)
        cache.append((A, Z))
    return A, cache


def cost(cache, Y):
    """The mean cross-entropy of the output in `cache` against `Y`, computed from the logits
    ``Z[L]`` so that it stays finite when a probability rounds to 0 or 1."""
    _, Z = cache[-1]
    m = Y.shape[1]
    if Z.shape[0] == 1:
        # -[y log s(z) + (1 - y) log(1 - s(z))] = log(1 + e^z) - y z
        return float(np.sum(np.logaddexp(0.0, Z) - Y * Z) / m)
    Zs = Z - Z.max(axis=0, keepdims=True)
    log_probs = Zs - np.log(np.sum(np.exp(Zs), axis=0, keepdims=True))
    return float(-np.sum(Y * log_probs) / m)


def backward(params, cache, Y):
    """The gradients ``{"dW1": ..., "db1": ..., ...}`` of ``cost(cache, Y)`` (back-propagation).

    Every gradient is a fresh C-contiguous array with its parameter's shape and dtype.
    """
    L = num_layers(params)
    m = Y.shape[1]
    grads = {}
    dZ = (cache[L][0] - Y) / m                   # sigmoid + binary or softmax + categorical CE
    for l in range(L, 0, -1):
        A_prev = cache[l - 1][0]
        grads[f"dW{l}"] = dZ @ A_prev.T
        grads[f"db{l}"] = np.sum(dZ, axis=1, keepdims=True)
        if l > 1:
            dA_prev = params[f"W{l}"].T @ dZ
            dZ = dA_prev * (cache[l - 1][1] > 0)
    return grads


def cost_and_grads(params, X, Y):
    """One forward and backward pass: ``(cost, grads)`` on the batch ``(X, Y)``."""
    _, cache = forward(params, X)
    return cost(cache, Y), backward(params, cache, Y)


def predict(params, X):
    """Class predictions, shape (m,): 0/1 for a sigmoid output, the argmax for a softmax."""
    A, _ = forward(params, X)
    if A.shape[0] == 1:
        return (A[0] > 0.5).astype(np.int64)
    return np.argmax(A, axis=0)


def accuracy(params, X, Y):
    """The fraction of examples of ``(X, Y)`` classified correctly (Y as for ``cost``)."""
    labels = Y[0].astype(np.int64) if Y.shape[0] == 1 else np.argmax(Y, axis=0)
    return float(np.mean(predict(params, X) == labels))
