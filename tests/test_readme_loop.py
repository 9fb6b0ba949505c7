"""The README's "training loop" example, run end to end.

A one-hidden-layer network in the course's layout (X of shape (n_x, m), parameters["W1"], gradients
grads["dW1"]) with its NumPy backprop written here, trained with the README's loop: Adam with an
inverse-time decay schedule, mini-batches, global-norm clipping, one ``opt.step`` per batch, an
``end_epoch`` per epoch, and a checkpoint saved at the end.
"""

import numpy as np
import pytest

import fastopt


def make_dataset(m=600, seed=0):
    """Two noisy interleaved half-moons: (2, m) inputs, (1, m) labels in {0, 1}."""
    rng = np.random.default_rng(seed)
    half = m // 2
    t = rng.uniform(0, np.pi, m)
    X = np.empty((2, m))
    X[0, :half] = np.cos(t[:half])
    X[1, :half] = np.sin(t[:half])
    X[0, half:] = 1 - np.cos(t[half:])
    X[1, half:] = 0.5 - np.sin(t[half:])
    X += 0.15 * rng.standard_normal(X.shape)
    Y = np.zeros((1, m))
    Y[0, half:] = 1
    return X, Y


def initialize_parameters(n_x, n_h, n_y, seed=1):
    rng = np.random.default_rng(seed)
    return {"W1": rng.standard_normal((n_h, n_x)) * np.sqrt(1.0 / n_x),
            "b1": np.zeros((n_h, 1)),
            "W2": rng.standard_normal((n_y, n_h)) * np.sqrt(1.0 / n_h),
            "b2": np.zeros((n_y, 1))}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward(params, X):
    Z1 = params["W1"] @ X + params["b1"]
    A1 = np.tanh(Z1)
    Z2 = params["W2"] @ A1 + params["b2"]
    A2 = sigmoid(Z2)
    return A1, A2


def compute_cost(params, X, Y):
    _, A2 = forward(params, X)
    A2 = np.clip(A2, 1e-12, 1 - 1e-12)
    return float(-np.mean(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)))


def backprop(params, X, Y):
    """The course's gradients of the cross-entropy cost, keyed "dW1", "db1", ..."""
    m = X.shape[1]
    A1, A2 = forward(params, X)
    dZ2 = A2 - Y
    dW2 = dZ2 @ A1.T / m
    db2 = np.sum(dZ2, axis=1, keepdims=True) / m
    dZ1 = (params["W2"].T @ dZ2) * (1 - A1 ** 2)
    dW1 = dZ1 @ X.T / m
    db1 = np.sum(dZ1, axis=1, keepdims=True) / m
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}


def test_backprop_matches_finite_differences():
    # the test's own backprop is right (otherwise the loop below proves little)
    X, Y = make_dataset(40)
    params = initialize_parameters(2, 5, 1)
    grads = backprop(params, X, Y)
    h = 1e-6
    for k in params:
        for idx in [(0, 0), (params[k].shape[0] - 1, params[k].shape[1] - 1)]:
            old = params[k][idx]
            params[k][idx] = old + h
            up = compute_cost(params, X, Y)
            params[k][idx] = old - h
            down = compute_cost(params, X, Y)
            params[k][idx] = old
            assert grads["d" + k][idx] == pytest.approx((up - down) / (2 * h), rel=1e-5,
                                                         abs=1e-8)


def test_readme_training_loop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, Y = make_dataset()
    params = initialize_parameters(X.shape[0], 8, 1)
    initial = {k: a.copy() for k, a in params.items()}
    epochs = 30
    batches = fastopt.MiniBatches(X, Y, batch_size=64, axis=1, seed=0)
    cost_before = compute_cost(params, X, Y)

    # --- the README's snippet, verbatim ---------------------------------------------------------
    opt = fastopt.Adam(params, lr=fastopt.inverse_time_decay(0.2, decay_rate=1.0), weight_decay=0.0)
    for epoch in range(epochs):
        for X_b, Y_b in batches:
            grads = backprop(params, X_b, Y_b)
            fastopt.clip_grad_norm(grads, max_norm=5.0)
            opt.step(grads)
        opt.end_epoch()
    fastopt.save_state("ckpt.npz", opt)
    # ---------------------------------------------------------------------------------------------

    cost_after = compute_cost(params, X, Y)
    assert np.isfinite(cost_after)
    assert cost_after < 0.5 * cost_before, (cost_before, cost_after)
    accuracy = float(np.mean((forward(params, X)[1] > 0.5) == Y))
    assert accuracy > 0.85
    # the parameters were trained in place, and the counters followed the loop
    assert all(not np.array_equal(params[k], initial[k]) for k in params)
    assert opt.step_count == epochs * len(batches) == epochs * 10
    assert opt.epoch == epochs == batches.epoch
    assert opt.lr == pytest.approx(0.2 / (1 + epochs))

    # the checkpoint exists and loads into a fresh optimizer built the same way
    assert (tmp_path / "ckpt.npz").exists()
    params2 = {k: a.copy() for k, a in params.items()}
    opt2 = fastopt.Adam(params2, lr=fastopt.inverse_time_decay(0.2, decay_rate=1.0),
                        weight_decay=0.0)
    fastopt.load_state("ckpt.npz", opt2)
    assert (opt2.step_count, opt2.epoch) == (opt.step_count, opt.epoch)
    assert opt2.lr == opt.lr
    for k in params:
        for s in ("m", "v"):
            np.testing.assert_array_equal(opt2.state[k][s], opt.state[k][s])
    # and training continues identically from it
    X_b, Y_b = X[:, :64].copy(), Y[:, :64].copy()
    opt.step(backprop(params, X_b, Y_b))
    opt2.step(backprop(params2, X_b, Y_b))
    for k in params:
        np.testing.assert_array_equal(params[k], params2[k])


def test_cost_decreases_without_clipping_too(tmp_path):
    # the same loop with a large max_norm (clipping inactive) also trains: the clip call is not
    # what makes the loop converge, and it leaves small gradients alone
    X, Y = make_dataset(seed=3)
    params = initialize_parameters(X.shape[0], 8, 1, seed=4)
    opt = fastopt.Adam(params, lr=fastopt.inverse_time_decay(0.2, decay_rate=1.0))
    before = compute_cost(params, X, Y)
    for _ in range(10):
        for X_b, Y_b in fastopt.minibatches(X, Y, batch_size=64, axis=1, seed=0):
            grads = backprop(params, X_b, Y_b)
            saved = {k: g.copy() for k, g in grads.items()}
            norm = fastopt.clip_grad_norm(grads, max_norm=1e6)
            assert norm == pytest.approx(np.sqrt(sum(np.sum(g ** 2) for g in saved.values())),
                                         rel=1e-12)
            for k in grads:
                np.testing.assert_array_equal(grads[k], saved[k])
            opt.step(grads)
        opt.end_epoch()
    assert compute_cost(params, X, Y) < before
