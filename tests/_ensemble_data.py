"""Data and reference fits shared by the ensemble tests (test_ensemble.py,
test_ensemble_lockstep.py)."""
import copy

import numpy as np

import fastnn
from fastnn.ensemble import AUTO_PATIENCE, AUTO_VALIDATION_SPLIT


def _regression(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = np.sin(X[:, :1]) + X[:, 1:2] * X[:, 2:3] + 0.1 * rng.standard_normal((n, 1))
    return X, y


def _classification(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + (X[:, 2] > 1)


def _lone_member(ens, k, X, y, loss, optimizer, sample_weight=None, **kwargs):
    """Member k trained alone, as the module docstring says it is."""
    model = fastnn.MLP(ens.layer_sizes, activation=[la.activation for la in
                                                    ens.members[k].layers[:-1]],
                       dtype=ens.dtype, seed=ens.member_seeds[k])
    learned = getattr(fastnn.nn.losses.get_loss(loss), "learned", False)
    if learned and "early_stopping" not in kwargs:   # the fit's early_stopping="auto"
        kwargs["early_stopping"] = fastnn.EarlyStopping(AUTO_PATIENCE)
        if not ens.bootstrap:
            kwargs["validation_split"] = AUTO_VALIDATION_SPLIT
    if ens.bootstrap:
        idx = ens.bootstrap_indices(k, X.shape[0], sample_weight)
        if learned and "validation_split" not in kwargs:   # its out-of-bag rows
            oob = np.setdiff1d(np.arange(X.shape[0]), idx)
            kwargs.setdefault("validation_data", (X[oob], y[oob], None if sample_weight is
                                                  None else sample_weight[oob]))
        X, y = X[idx], y[idx]
        sample_weight = None if sample_weight is None else sample_weight[idx]
    fastnn.fit(model, X, y, loss, copy.deepcopy(optimizer), seed=ens.member_seeds[k],
               sample_weight=sample_weight, n_threads=1, **kwargs)
    return model
