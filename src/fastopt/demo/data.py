"""The demo's data sets, one example per column (the course's layout).

``make_moons`` is written here with NumPy (two interleaved half circles with Gaussian noise, the
shape of ``sklearn.datasets.make_moons``); ``load_digits_split`` reads scikit-learn's 8x8 digits,
which ship inside scikit-learn, so nothing is downloaded.
"""

import numpy as np

__all__ = ["make_moons", "load_digits_split", "one_hot"]

# The data sets are fixed (the --seed of the demo changes initialisation and batch order only),
# so every run of the demo trains on the same examples.
MOONS_SEED = 3            # the course's load_dataset() seeds NumPy with 3
MOONS_TEST_SEED = 4
DIGITS_SPLIT_SEED = 0


def make_moons(n_samples=300, noise=0.2, seed=MOONS_SEED):
    """Two interleaved half circles ("moons") in 2-D, with Gaussian noise.

    The upper moon (label 0) is the half circle of radius 1 centred at (0, 0); the lower moon
    (label 1) is the same half circle turned upside down and centred at (1, 0.5).  Points are
    evenly spaced along each arc, then shuffled, then moved by N(0, noise^2) in each coordinate.

    Returns
    -------
    X : float64 array of shape (2, n_samples), one example per column.
    Y : float64 array of shape (1, n_samples), labels 0 and 1.
    """
    rng = np.random.default_rng(seed)
    n_upper = n_samples // 2
    n_lower = n_samples - n_upper
    t_upper = np.linspace(0.0, np.pi, n_upper)
    t_lower = np.linspace(0.0, np.pi, n_lower)
    X = np.empty((2, n_samples))
    X[0, :n_upper], X[1, :n_upper] = np.cos(t_upper), np.sin(t_upper)
    X[0, n_upper:], X[1, n_upper:] = 1.0 - np.cos(t_lower), 0.5 - np.sin(t_lower)
    Y = np.concatenate([np.zeros(n_upper), np.ones(n_lower)]).reshape(1, n_samples)
    order = rng.permutation(n_samples)
    X, Y = X[:, order], Y[:, order]
    X += rng.normal(scale=noise, size=X.shape)
    return np.ascontiguousarray(X), np.ascontiguousarray(Y)


def one_hot(labels, n_classes):
    """Integer labels of shape (m,) as a one-hot float64 array of shape (n_classes, m)."""
    labels = np.asarray(labels, dtype=np.int64)
    Y = np.zeros((n_classes, labels.size))
    Y[labels, np.arange(labels.size)] = 1.0
    return Y


def load_digits_split(test_fraction=0.25, seed=DIGITS_SPLIT_SEED):
    """scikit-learn's 8x8 digits (1,797 images), scaled to [0, 1], split into train and test.

    The split is a fixed permutation (from `seed`), so it is the same on every run.

    Returns
    -------
    X_train, Y_train, X_test, Y_test : X of shape (64, m) in [0, 1]; Y one-hot, shape (10, m).
    """
    from sklearn.datasets import load_digits        # ships with scikit-learn: no download

    digits = load_digits()
    X = digits.data.T / 16.0                        # pixel values are 0..16
    Y = one_hot(digits.target, 10)
    m = X.shape[1]
    order = np.random.default_rng(seed).permutation(m)
    n_test = int(round(test_fraction * m))
    test, train = order[:n_test], order[n_test:]
    return (np.ascontiguousarray(X[:, train]), np.ascontiguousarray(Y[:, train]),
            np.ascontiguousarray(X[:, test]), np.ascontiguousarray(Y[:, test]))
