"""Small synthetic data sets that need nothing beyond NumPy (for the demo and the tests)."""
import numpy as np

from fastnn._validation import check_number, check_random_state


def make_spirals(n_samples=1500, n_classes=3, noise=0.2, turns=2.0, seed=None):
    """Interleaved 2-D spirals, one arm per class: a linear model cannot separate them.

    Parameters
    ----------
    n_samples : int, default 1500
        Total number of points (split as evenly as possible between the classes).
    n_classes : int, default 3
    noise : float, default 0.2
        Standard deviation of the angular noise (radians), scaled by the radius.
    turns : float, default 2.0
        Winding: each arm turns by 4 * turns radians from the centre to radius 1.
    seed : int, numpy.random.Generator or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2), float64
    y : ndarray of shape (n_samples,), int64, labels 0 .. n_classes - 1
    """
    n_samples = check_number(n_samples, "n_samples", low=1, integer=True)
    n_classes = check_number(n_classes, "n_classes", low=2, integer=True)
    noise = float(check_number(noise, "noise", low=0.0))
    turns = float(check_number(turns, "turns", low=0.0, low_open=True))
    rng = check_random_state(seed)
    y = np.arange(n_samples) % n_classes
    r = rng.uniform(0.05, 1.0, n_samples)
    theta = (2 * np.pi * y / n_classes + 4.0 * turns * r
             + rng.normal(0.0, noise, n_samples) * r)
    X = np.column_stack([r * np.sin(theta), r * np.cos(theta)])
    return X, y.astype(np.int64)


def make_regression(n_samples=2000, n_features=8, noise=0.05, seed=None):
    """A smooth nonlinear target of `n_features` inputs: y = sum_j sin(x_j) x_{j+1} + noise.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64, uniform on [-2, 2]
    y : ndarray of shape (n_samples,), float64
    """
    n_samples = check_number(n_samples, "n_samples", low=1, integer=True)
    n_features = check_number(n_features, "n_features", low=2, integer=True)
    noise = float(check_number(noise, "noise", low=0.0))
    rng = check_random_state(seed)
    X = rng.uniform(-2.0, 2.0, (n_samples, n_features))
    y = (np.sin(X[:, :-1]) * X[:, 1:]).sum(axis=1) + rng.normal(0.0, noise, n_samples)
    return X, y


def train_test_split(X, y, test_fraction=0.25, seed=None):
    """Random split of (X, y) into (X_train, X_test, y_train, y_test)."""
    test_fraction = float(check_number(test_fraction, "test_fraction", low=0.0, high=1.0,
                                       low_open=True, high_open=True))
    rng = check_random_state(seed)
    n = len(X)
    perm = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    test, train = perm[:n_test], perm[n_test:]
    return X[train], X[test], y[train], y[test]
