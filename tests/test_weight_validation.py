"""Validation before any weight moves, the same on every path.

Sample weights are checked by one rule (fastnn._validation: ``check_sample_weight`` for an
array, ``check_weight_total`` for the rows a weighted mean divides by, once that set is final).
Every path that trains runs the same check before its first step: ``fastnn.fit`` (after
the validation split), ``MLP.fit``, the ensembles, L-BFGS, the estimators (``fit`` with each
solver, the early-stopping split, ``partial_fit``, ``class_weight``) and the scikit-learn
ensembles.  Each case below gives a path weights whose training (or validation) rows sum to
zero; every one must raise that ValueError, with nothing trained.  The estimators'
early-stopping split used to die in a ZeroDivisionError instead (the mean weight of the
training rows set the L2 step before fastnn.fit's check ran).  The MPI shards' case is in
test_distributed.py (a shard of zero weights trains; all-zero shards raise on every rank).
"""
import warnings

import numpy as np
import pytest

import fastnn
from fastnn.interop.sklearn import MLPClassifier, MLPRegressor
from fastnn.interop.sklearn_ensemble import EnsembleClassifier, EnsembleRegressor

N = 40
RULE = r"sum to 0|is all zeros"  # the rule's two messages: a set of rows, a whole array


def _data(n=N):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3))
    return X, (X[:, 0] > 0).astype(int), X[:, :1] + 0.1 * X[:, 1:2]


def _one_positive(k):
    """Weights with a single positive row: wherever a split sends row k, one side has 0."""
    sw = np.zeros(N)
    sw[k] = 1.0
    return sw


def _mlp(n_out=2):
    return fastnn.MLP([3, 4, n_out], seed=0)


def _fastnn_fit(sw, **kwargs):
    X, labels, _ = _data()
    model = _mlp()
    start = model.params.copy()
    try:
        fastnn.fit(model, X, labels, "cross_entropy", epochs=2, seed=0, sample_weight=sw,
                   **kwargs)
    except ValueError:
        assert model.params.tobytes() == start.tobytes()  # no weight moved
        raise


def _mlp_fit(sw):
    X, labels, _ = _data()
    model = _mlp()
    start = model.params.copy()
    try:
        model.fit(X, labels, "cross_entropy", epochs=2, seed=0, sample_weight=sw)
    except ValueError:
        assert model.params.tobytes() == start.tobytes()
        raise


def _ensemble_fit(sw, bootstrap=False):
    X, labels, _ = _data()
    ensemble = fastnn.MLPEnsemble([3, 4, 2], n_members=3, seed=0, bootstrap=bootstrap)
    start = [m.params.copy() for m in ensemble.members]
    try:
        ensemble.fit(X, labels, "cross_entropy", epochs=2, sample_weight=sw)
    except ValueError:
        assert all(m.params.tobytes() == s.tobytes() for m, s in zip(ensemble.members, start))
        raise


def _lbfgs_fit(sw):
    X, labels, _ = _data()
    model = _mlp()
    start = model.params.copy()
    try:
        fastnn.LBFGS(max_iter=3).fit(model, X, labels, "cross_entropy", sample_weight=sw)
    except ValueError:
        assert model.params.tobytes() == start.tobytes()
        raise


def _estimator(cls, sw, method="fit", **params):
    X, labels, targets = _data()
    y = labels if cls in (MLPClassifier, EnsembleClassifier) else targets.ravel()
    if cls in (EnsembleClassifier, EnsembleRegressor):
        seed = params.pop("random_state", 0)  # the ensemble draws its members' seeds
        member = (MLPClassifier if cls is EnsembleClassifier else MLPRegressor)(
            hidden_layer_sizes=(4,), max_iter=2, **params)
        est = cls(member, n_estimators=2, random_state=seed)
    else:
        est = cls(hidden_layer_sizes=(4,), max_iter=2, **params)
    kwargs = {"classes": [0, 1]} if method == "partial_fit" and cls is MLPClassifier else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(est, method)(X, y, sample_weight=sw, **kwargs)
    except ValueError:
        # a first fit that fails before training leaves nothing fitted
        assert not hasattr(est, "model_") and not hasattr(est, "estimators_")
        raise


def _zero_class_weight(sw):
    X, labels, _ = _data()
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, class_weight={0: 0.0, 1: 0.0})
    try:
        est.fit(X, labels)
    except ValueError:
        assert not hasattr(est, "model_")
        raise


ZEROS = np.zeros(N)

# every path that trains, each given weights with no positive training weight
WHOLE = {
    "fastnn.fit": lambda: _fastnn_fit(ZEROS),
    "MLP.fit": lambda: _mlp_fit(ZEROS),
    "MLPEnsemble.fit": lambda: _ensemble_fit(ZEROS),
    "MLPEnsemble.fit bootstrap": lambda: _ensemble_fit(ZEROS, bootstrap=True),
    "LBFGS.fit": lambda: _lbfgs_fit(ZEROS),
    "MLPClassifier sgd": lambda: _estimator(MLPClassifier, ZEROS, solver="sgd"),
    "MLPClassifier adam": lambda: _estimator(MLPClassifier, ZEROS, solver="adam"),
    "MLPClassifier lbfgs": lambda: _estimator(MLPClassifier, ZEROS, solver="lbfgs"),
    "MLPClassifier early stopping": lambda: _estimator(MLPClassifier, ZEROS,
                                                       early_stopping=True),
    "MLPClassifier partial_fit": lambda: _estimator(MLPClassifier, ZEROS, "partial_fit"),
    "MLPClassifier class_weight": lambda: _zero_class_weight(None),
    "MLPRegressor sgd": lambda: _estimator(MLPRegressor, ZEROS, solver="sgd"),
    "MLPRegressor lbfgs": lambda: _estimator(MLPRegressor, ZEROS, solver="lbfgs"),
    "MLPRegressor early stopping": lambda: _estimator(MLPRegressor, ZEROS,
                                                      early_stopping=True),
    "MLPRegressor partial_fit": lambda: _estimator(MLPRegressor, ZEROS, "partial_fit"),
    "EnsembleClassifier": lambda: _estimator(EnsembleClassifier, ZEROS),
    "EnsembleRegressor": lambda: _estimator(EnsembleRegressor, ZEROS),
}


@pytest.mark.parametrize("path", list(WHOLE), ids=list(WHOLE))
def test_every_path_refuses_weights_that_sum_to_zero_before_training(path):
    with pytest.raises(ValueError, match=RULE):
        WHOLE[path]()


# the paths that split the rows themselves: with a single positive row, every split leaves
# the training rows or the validation rows without weight; each must be the rule's error,
# never another exception (the estimators' split: ZeroDivisionError)
SPLITS = {
    "fastnn.fit validation_split": lambda k, seed: _split_fit(_one_positive(k), seed),
    "MLPClassifier early stopping split": lambda k, seed: _estimator(
        MLPClassifier, _one_positive(k), early_stopping=True, random_state=seed,
        validation_fraction=0.25),
    "MLPRegressor early stopping split": lambda k, seed: _estimator(
        MLPRegressor, _one_positive(k), early_stopping=True, random_state=seed,
        validation_fraction=0.25),
    "EnsembleRegressor early stopping split": lambda k, seed: _estimator(
        EnsembleRegressor, _one_positive(k), early_stopping=True, random_state=seed,
        validation_fraction=0.25),
}


def _split_fit(sw, seed):
    X, labels, _ = _data()
    model = _mlp()
    start = model.params.copy()
    try:
        fastnn.fit(model, X, labels, "cross_entropy", epochs=1, seed=seed, sample_weight=sw,
                   validation_split=0.25)
    except ValueError:
        assert model.params.tobytes() == start.tobytes()
        raise


@pytest.mark.parametrize("path", list(SPLITS), ids=list(SPLITS))
def test_a_split_that_leaves_no_weight_is_the_same_error_on_every_path(path):
    seen = set()
    for seed in range(12):
        for k in (0, 17):
            try:
                SPLITS[path](k, seed)
            except ValueError as exc:
                assert "sum to 0" in str(exc), exc   # not ZeroDivisionError, nor another
                seen.add("training" if "training rows" in str(exc) else "validation")
            else:
                raise AssertionError(f"seed {seed}, row {k}: trained on weights that sum "
                                     "to 0 on one side of the split")
    assert seen == {"training", "validation"}, seen   # both sides happened


@pytest.mark.parametrize("dtype, tiny_weight", [(np.float64, 1e-320), (np.float64, 1e-310),
                                                (np.float32, 1e-40)])
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_weights_below_the_smallest_normal_number_are_refused_not_flushed(dtype, tiny_weight,
                                                                          optimizer):
    # subnormal weights passed every check, then the compiled code flushed them to zero: a
    # NaN loss without TrainingDiverged (Adam), 0 iterations reported as convergence (L-BFGS)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 3)), rng.standard_normal(50)
    model = fastnn.MLP([3, 4, 1], dtype=dtype, seed=0)
    before = model.params.copy()
    opt = fastnn.LBFGS(max_iter=3) if optimizer == "lbfgs" else fastnn.Adam()
    with pytest.raises(ValueError, match=r"sample_weight\[0\] = .* is below .* smallest "
                                         r"normal .*rescale the weights"):
        fastnn.fit(model, X, y, "mse", opt, sample_weight=np.full(50, tiny_weight),
                   **({} if optimizer == "lbfgs" else {"epochs": 2}))
    np.testing.assert_array_equal(model.params, before)
    # the same ratios, rescaled, train
    fastnn.fit(model, X, y, "mse", opt, sample_weight=np.full(50, 1.0),
               **({} if optimizer == "lbfgs" else {"epochs": 2}))
