"""fastnn.interop.sklearn: scikit-learn's estimator checks, model selection, pickling, and the extras
(class_weight, early stopping on the validation loss, partial_fit with early stopping)."""
import os
import pickle
import subprocess
import sys
import warnings
from decimal import Decimal

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")  # an optional dependency, in the test extra

from scipy.special import log_softmax  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.class_weight import compute_class_weight  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn.datasets import make_regression, make_spirals  # noqa: E402
from fastnn.optim.optimizers import InverseScaling, ReduceOnPlateau  # noqa: E402
from fastnn.interop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn.nn import init  # noqa: E402
from fastnn.training.trainer import TrainingDiverged  # noqa: E402
from tests._helpers import check_error, classification_data, other_layouts  # noqa: E402

_FLOAT32_ROUNDING = (
    "dtype='float32' (explicit; the default computes in X's dtype) rounds at ~1e-7 relative, "
    "the tolerance of this check: training's BLAS sums minibatches of repeated rows in a "
    "different order than weighted ones.")


@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_estimator_checks(estimator, check):
    # default parameters: the computation follows X's dtype (float32 or float64), no xfail
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


_EXACT_LOG_PROBA = (
    "lbfgs drives some logits of this check's data to where two classes' probabilities both "
    "underflow: predict_proba reports both as the smallest positive float (a tie), while "
    "predict_log_proba gives their exact, different log-probabilities (log-softmax of the "
    "logits), so np.argsort of the two orders such a pair differently.  Everything "
    "else in the check passes (the same check passes for the default solver).")


@parametrize_with_checks(
    [MLPClassifier(solver="lbfgs"), MLPRegressor(solver="lbfgs")],
    expected_failed_checks=lambda est: (
        {"check_classifiers_train": _EXACT_LOG_PROBA} if isinstance(est, MLPClassifier)
        else {}))
def test_estimator_checks_lbfgs(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@parametrize_with_checks(
    [MLPClassifier(dtype="float32"), MLPRegressor(dtype="float32")],
    expected_failed_checks=lambda est: {
        # (check_methods_subset_invariance passes: prediction's products sum every row in
        # one fixed order, whatever the other rows, src_c/fastnn_gemm.h)
        "check_sample_weight_equivalence_on_dense_data": _FLOAT32_ROUNDING,
        "check_sample_weight_equivalence_on_sparse_data": _FLOAT32_ROUNDING})
def test_estimator_checks_explicit_float32(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(400, 10, n_informative=5, n_classes=3, random_state=0)
    return X, y


def _quiet(est):
    """Small networks and few epochs: these tests check behaviour, not accuracy limits."""
    return est.set_params(hidden_layer_sizes=(16,), max_iter=30, random_state=0)


# ------------------------------------------------------------------------ model selection

def test_pipeline_grid_search_with_two_jobs_and_cross_val_score(blobs):
    X, y = blobs
    pipe = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=60,
                                                         learning_rate_init=0.01,
                                                         random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
        assert pipe.score(X, y) > 0.8
        search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2],
                                     "mlpclassifier__hidden_layer_sizes": [(8,), (16,)]},
                              cv=3, n_jobs=2)
        search.fit(X, y)
        scores = cross_val_score(MLPRegressor(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01,
                                              random_state=0),
                                 *make_regression(300, n_features=4, seed=0), cv=3)
    assert set(search.best_params_) == {"mlpclassifier__alpha",
                                        "mlpclassifier__hidden_layer_sizes"}
    assert search.best_score_ > 0.7
    assert search.best_estimator_.score(X, y) > 0.8
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_fitted_estimators_pickle_with_identical_predictions(blobs):
    X, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = _quiet(MLPClassifier(early_stopping=True)).fit(X, y)
        reg = _quiet(MLPRegressor(loss="gaussian_nll")).fit(X, X[:, 0] + X[:, 1])
    for est in (clf, reg):
        twin = pickle.loads(pickle.dumps(est))
        assert np.array_equal(twin.predict(X), est.predict(X))
        assert twin.loss_curve_ == est.loss_curve_
        assert np.shares_memory(twin.coefs_[0], twin.model_.params)
    assert np.array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X),
                          clf.predict_proba(X))
    # a pickled estimator keeps training where it stopped
    twin = pickle.loads(pickle.dumps(clf.set_params(early_stopping=False)))
    for est in (clf, twin):
        est.partial_fit(X, y)
    assert np.array_equal(twin.model_.params, clf.model_.params)


# -------------------------------------------------------------------------------- labels

@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "mouse"]), np.array([-3, 10, 42]),
                                    np.array(["no", "yes"]), np.array([7, 9])],
                         ids=["strings", "sparse-ints", "binary-strings", "binary-ints"])
def test_labels_round_trip_through_classes_(labels):
    X, y = make_spirals(300, n_classes=len(labels), seed=0)
    clf = MLPClassifier((32,), max_iter=100, learning_rate_init=0.02, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, labels[y])
    assert np.array_equal(clf.classes_, np.sort(labels))
    pred = clf.predict(X)
    assert pred.dtype == labels.dtype and set(pred) <= set(labels)
    assert np.mean(pred == labels[y]) > 0.6
    proba = clf.predict_proba(X)
    assert proba.shape == (300, len(labels)) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], pred)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-5, atol=1e-6)
    # two classes: ONE sigmoid output and binary cross-entropy; more: softmax
    binary = len(labels) == 2
    assert clf.model_.n_outputs == (1 if binary else len(labels))
    assert clf.out_activation_ == ("logistic" if binary else "softmax")
    assert type(clf.model_.loss_).__name__ == ("BinaryCrossEntropy" if binary else
                                               "CrossEntropy")


def test_multilabel_indicator_targets_use_independent_sigmoids():
    X, Y = make_multilabel_classification(300, n_features=8, n_classes=4, random_state=0)
    clf = _quiet(MLPClassifier()).set_params(max_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, Y)
    assert np.array_equal(clf.classes_, np.arange(4)) and clf.model_.n_outputs == 4
    assert type(clf.model_.loss_).__name__ == "BinaryCrossEntropy"
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 4) and not np.allclose(proba.sum(axis=1), 1.0)
    pred = clf.predict(X)
    assert pred.shape == Y.shape and pred.dtype == Y.dtype
    assert np.array_equal(pred, (proba > 0.5).astype(Y.dtype))
    assert clf.score(X, Y) == np.mean((pred == Y).all(axis=1))  # subset accuracy
    with pytest.raises(ValueError, match="class_weight"):
        clone(clf).set_params(class_weight="balanced").fit(X, Y)


# -------------------------------------------------------------------------- class weights

def test_class_weight_is_a_multiplier_of_sample_weight():
    X, y = make_classification(300, 6, weights=[0.9, 0.1], random_state=1)
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    weights = {0: 1.0, 1: 4.0}
    a = _quiet(MLPClassifier(class_weight=weights, dtype="float64"))
    b = _quiet(MLPClassifier(dtype="float64"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(X, y, sample_weight=sw)
        b.fit(X, y, sample_weight=sw * np.where(y == 1, 4.0, 1.0))
        balanced = _quiet(MLPClassifier(class_weight="balanced", dtype="float64")).fit(X, y)
        same = _quiet(MLPClassifier(dtype="float64")).fit(
            X, y, sample_weight=compute_class_weight("balanced", classes=np.array([0, 1]),
                                                     y=y)[y])
    assert np.array_equal(a.model_.params, b.model_.params)
    assert np.array_equal(balanced.model_.params, same.model_.params)


def test_balanced_class_weight_raises_minority_recall():
    X, y = make_classification(1000, 6, weights=[0.95, 0.05], flip_y=0.0, class_sep=0.5,
                               random_state=3)
    recall = {}
    for cw in (None, "balanced"):
        clf = MLPClassifier((16,), max_iter=50, class_weight=cw, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        recall[cw] = np.mean(clf.predict(X)[y == 1] == 1)
    assert recall["balanced"] > recall[None] + 0.1


def test_class_weight_errors():
    X, y = make_classification(100, 4, random_state=0)
    clf = MLPClassifier((4,), class_weight="balanced")
    with pytest.raises(ValueError, match="partial_fit"):
        clf.partial_fit(X, y, classes=[0, 1])
    # a first call that failed leaves the estimator unfitted, not half-fitted
    assert not any(name.endswith("_") for name in vars(clf))
    with pytest.raises(sklearn.exceptions.NotFittedError):
        clf.predict(X)
    clf.set_params(class_weight=None).partial_fit(X, y, classes=[0, 1])
    assert clf.n_iter_ == 1
    clf = MLPClassifier((4,), max_iter=2, class_weight={0: 2.0}).partial_fit(X, y, [0, 1])
    assert clf.n_iter_ == 1


# ------------------------------------------------------------------------ early stopping

def _noisy():
    return make_classification(600, 20, n_informative=5, flip_y=0.2, random_state=0)


def test_early_stopping_monitors_the_validation_loss_and_restores_the_best_epoch():
    X, y = _noisy()
    params = dict(hidden_layer_sizes=(64,), early_stopping=True, max_iter=500, tol=0.0,
                  learning_rate_init=0.01, random_state=0, early_stopping_monitor="loss")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # it stops before max_iter
        clf = MLPClassifier(**params).fit(X, y)
    n = clf.n_iter_
    assert clf.stopped_early_ and n < 500
    assert len(clf.loss_curve_) == len(clf.validation_loss_curve_) == \
        len(clf.validation_scores_) == n
    best = int(np.argmin(clf.validation_loss_curve_))
    # tol=0: the last n_iter_no_change + 1 epochs were no better than the best one
    assert best == n - clf.n_iter_no_change - 2
    assert clf.best_validation_loss_ == clf.validation_loss_curve_[best]
    assert clf.best_loss_ is None and clf.t_ == n * 540  # 10% of 600 held out
    # the restored weights are those after epoch best + 1: a run that stops there agrees
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        short = MLPClassifier(**dict(params, max_iter=best + 1)).fit(X, y)
    assert np.array_equal(short.model_.params, clf.model_.params)


def test_early_stopping_can_monitor_the_score_instead():
    X, y = _noisy()
    by_loss = MLPClassifier((64,), early_stopping=True, learning_rate_init=0.01,
                            random_state=0, early_stopping_monitor="loss").fit(X, y)
    by_score = clone(by_loss).set_params(early_stopping_monitor="score").fit(X, y)
    assert by_score.validation_scores_[:5] == by_loss.validation_scores_[:5]
    assert by_score.n_iter_ != by_loss.n_iter_
    best = int(np.argmax(by_score.validation_scores_))
    assert by_score.best_validation_score_ == by_score.validation_scores_[best]
    with pytest.raises(ValueError, match="early_stopping_monitor"):
        clone(by_loss).set_params(early_stopping_monitor="auc").fit(X, y)


def test_without_early_stopping_training_stops_on_the_training_loss():
    X, y = _noisy()
    clf = MLPClassifier((8,), max_iter=2000, tol=1e-2, random_state=0).fit(X, y)
    assert clf.stopped_early_ and clf.n_iter_ < 2000
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_loss_curve_ is None and clf.validation_scores_ is None
    assert clf.best_validation_loss_ is None and clf.best_validation_score_ is None
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clone(clf).set_params(max_iter=3).fit(X, y)


def test_partial_fit_early_stopping_on_given_validation_data():
    X, y = _noisy()
    X_val, y_val = X[:100], y[:100]
    clf = MLPClassifier((64,), early_stopping=True, tol=0.0, learning_rate_init=0.01,
                        random_state=0, early_stopping_monitor="loss")
    for call in range(300):
        clf.partial_fit(X[100:], y[100:], classes=[0, 1],
                        validation_data=(X_val, y_val) if call == 0 else None)
        if clf.stopped_early_:
            break
    assert clf.stopped_early_ and clf.n_iter_ == 1 and len(clf.loss_curve_) == call + 1 < 300
    assert clf.t_ == (call + 1) * 500  # the validation data is not trained on
    # the model holds the best weights: its validation loss is the best one seen
    val_loss = clf.model_.loss_and_grad(X_val, y_val[:, None].astype(float), "bce")
    np.testing.assert_allclose(val_loss, clf.best_validation_loss_, rtol=1e-6)
    assert clf.best_validation_loss_ == min(clf.validation_loss_curve_)
    before = clf.model_.params.copy()
    with pytest.warns(UserWarning, match="early stopping ended training"):
        clf.partial_fit(X, y)
    assert np.array_equal(clf.model_.params, before) and len(clf.loss_curve_) == call + 1
    # switching early stopping off trains on
    clf.set_params(early_stopping=False).partial_fit(X, y)
    assert len(clf.loss_curve_) == call + 2 and not clf.stopped_early_


def test_partial_fit_early_stopping_needs_validation_data():
    # scikit-learn refuses early stopping in partial_fit; fastnn accepts it with a
    # validation set given once (later calls keep measuring on it)
    X, y = _noisy()
    reg = MLPRegressor(hidden_layer_sizes=(8,), early_stopping=True, random_state=0)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        reg.partial_fit(X, y)
    reg.partial_fit(X[100:], y[100:], validation_data=(X[:100], y[:100]))
    reg.partial_fit(X[100:], y[100:])
    assert len(reg.validation_scores_) == 2 and reg.t_ == 1000


def test_early_stopping_needs_enough_validation_samples():
    X, y = make_classification(8, 4, random_state=0)  # 10% of 8: fewer than 2
    with pytest.raises(ValueError, match="validation set is too small.*validation_fraction"):
        MLPRegressor(early_stopping=True).fit(X, y)
    with pytest.raises(ValueError, match="test_size"):  # stratified: scikit-learn's error
        MLPClassifier(early_stopping=True).fit(X, y)


# ----------------------------------------------------------------------------- partial_fit

def test_partial_fit_continues_the_optimizer_and_the_schedule():
    X, y = make_classification(200, 5, random_state=0)
    clf = MLPClassifier((8,), solver="sgd", learning_rate="invscaling", power_t=0.5,
                        learning_rate_init=0.1, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clone(clf).partial_fit(X, y)
    for _ in range(3):
        clf.partial_fit(X, y, classes=np.array([0, 1]))
    # n_iter_ counts this call's epochs, as in scikit-learn; t_ and loss_curve_ run on
    assert clf.n_iter_ == 1 and clf.t_ == 600 and len(clf.loss_curve_) == 3
    # the third epoch ran at lr / 3 ** power_t, not at the first epoch's rate
    assert clf.model_.history_.lr == [pytest.approx(0.1 / 3 ** 0.5)]
    assert isinstance(clf._optimizer.schedule, InverseScaling)
    adam = MLPClassifier((8,), random_state=0)
    adam.partial_fit(X, y, classes=[0, 1])
    adam.partial_fit(X, y)
    assert adam._optimizer.t == 2  # one batch of min(200, n) per epoch, Adam steps counted
    with pytest.raises(ValueError, match="not in classes_"):
        adam.partial_fit(X, y + 5)


def test_adaptive_learning_rate_is_reduce_on_plateau_for_sgd():
    X, y = make_classification(200, 5, random_state=0)
    clf = MLPClassifier((8,), solver="sgd", learning_rate="adaptive", tol=1e-3, max_iter=5,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    schedule = clf._optimizer.schedule
    assert isinstance(schedule, ReduceOnPlateau)
    assert (schedule.factor, schedule.patience, schedule.min_delta) == (0.2, 2, 1e-3)


def test_warm_start_continues_from_the_current_weights():
    X, y = make_classification(300, 6, random_state=0)
    clf = MLPClassifier((16,), max_iter=10, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        first_curve = list(clf.loss_curve_)
        clf.fit(X, y)
        assert clf.n_iter_ == 10 and len(clf.loss_curve_) == 20
        assert clf.loss_curve_[:10] == first_curve
        assert clf.loss_curve_[10] < first_curve[0]  # not started afresh
        clf.set_params(warm_start=False).fit(X, y)
    assert clf.n_iter_ == 10
    with pytest.raises(ValueError, match="layer sizes"):
        clf.set_params(warm_start=True, hidden_layer_sizes=(7,)).fit(X, y)


# ----------------------------------------------------------------------- fastnn's extras

def test_dtype_init_and_per_layer_activations():
    X, y = make_classification(200, 5, random_state=0)
    clf = MLPClassifier((8, 6), activation=("tanh", "logistic"), init="lecun_normal",
                        max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        assert clf.model_.dtype == np.float64  # X's dtype by default
        assert clf.fit(X.astype(np.float32), y).model_.dtype == np.float32
        assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32
        assert clf.set_params(dtype="float32").fit(X, y).model_.dtype == np.float32
        assert [layer.activation for layer in clf.model_.layers] == \
            ["tanh", "sigmoid", "identity"]
        assert all(layer.init == fastnn.nn.init.lecun_normal for layer in clf.model_.layers)
        assert clf.predict_proba(X).dtype == np.float64
        clf.set_params(dtype=np.float64, init=["he_uniform", "glorot_uniform", "glorot_normal"])
        clf.fit(X, y)
    assert clf.model_.dtype == np.float64
    assert [layer.init.name for layer in clf.model_.layers] == \
        ["he_uniform", "glorot_uniform", "glorot_normal"]
    assert clf.n_layers_ == 4
    with pytest.raises(ValueError, match="activation has 1 entries"):
        clf.set_params(activation=["relu"]).fit(X, y)
    with pytest.raises(TypeError, match="dtype"):
        clf.set_params(activation="relu", dtype="int32").fit(X, y)


def test_coefs_and_intercepts_are_views_of_the_weights():
    X, y = make_classification(100, 5, random_state=0)
    clf = MLPClassifier((7,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(5, 7), (7, 1)]
    assert [b.shape for b in clf.intercepts_] == [(7,), (1,)]
    assert all(np.shares_memory(c, clf.model_.params) for c in clf.coefs_)
    clf.intercepts_[-1][0] = 50.0  # writing a view changes the model
    assert np.all(clf.predict(X) == 1)
    clf.intercepts_ = [np.zeros(7), np.array([-50.0])]  # assignment copies in
    assert np.all(clf.predict(X) == 0)
    with pytest.raises(ValueError, match="shape"):
        clf.coefs_ = [np.zeros((5, 7)), np.zeros((6, 1))]


def test_coefs_and_intercepts_setters_check_like_set_weights():
    # before: the setters checked only shape and finiteness of the given values, so 1e300
    # became inf in a float32 estimator, complex values lost their imaginary part (a
    # warning), strings were parsed, an unfitted estimator raised AttributeError, and a bad
    # second entry came after the first was written
    # (before fitting, the setters keep the lists for the first fit, as scikit-learn's
    # worked-example test needs: scikit-learn's test_mlp.py::test_fit, tests/test_sklearn_suite)
    X, y = make_classification(60, 5, random_state=0)
    clf = MLPClassifier((7,), max_iter=2, random_state=0, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    before = clf.model_.get_flat_params()
    cases = [
        ("coefs_", [np.zeros((5, 7)), np.full((7, 1), 1e300)], ValueError,
         r"coefs_\[1\] has values too large for the model's dtype float32"),
        ("coefs_", [np.zeros((5, 7)) + 1j, np.zeros((7, 1))], TypeError,
         r"coefs_\[0\] has dtype complex128; expected real numbers"),
        ("coefs_", [np.zeros((5, 7)).astype(str), np.zeros((7, 1))], TypeError,
         r"coefs_\[0\] has dtype <U"),
        ("coefs_", [np.ones((5, 7)), np.zeros((6, 1))], ValueError,
         r"coefs_\[1\] has shape \(6, 1\); expected \(7, 1\)"),
        ("intercepts_", [np.zeros(7), [np.nan]], ValueError, r"intercepts_\[1\] contains NaN"),
        ("intercepts_", [np.zeros(7)], ValueError, "intercepts_ has 1 entries; expected 2"),
        ("intercepts_", 3.0, TypeError, "intercepts_ must be a list"),
    ]
    for name, values, error, message in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no ComplexWarning / overflow warning instead
            with pytest.raises(error, match=message):
                setattr(clf, name, values)
        np.testing.assert_array_equal(clf.model_.params, before)  # nothing was written
    clf.coefs_ = (np.ones((5, 7)), np.ones((7, 1)))   # a tuple, converted and copied in
    assert np.all(clf.coefs_[1] == 1) and clf.coefs_[1].dtype == np.float32


def test_alpha_maps_to_weight_decay_per_sample():
    X, y = make_classification(500, 5, random_state=0)
    clf = MLPClassifier((4,), alpha=0.02, max_iter=1, batch_size=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        assert clf._optimizer.weight_decay == pytest.approx(0.02 / 50)
        clf.set_params(batch_size="auto").fit(X, y, sample_weight=np.full(500, 2.0))
    assert clf._optimizer.weight_decay == pytest.approx(0.02 / (200 * 2.0))


def test_gaussian_nll_regressor_predicts_a_standard_deviation():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (2000, 1))
    y = np.sin(x[:, 0]) + rng.normal(0, 0.05 + 0.3 * np.abs(x[:, 0]))
    reg = MLPRegressor(hidden_layer_sizes=(32, 32), loss="gaussian_nll", learning_rate_init=0.01, max_iter=150,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(x, y)
    mean, std = reg.predict(x, return_std=True)
    assert mean.shape == std.shape == (2000,) and np.all(std > 0)
    assert np.array_equal(mean, reg.predict(x))
    assert np.corrcoef(std, np.abs(x[:, 0]))[0, 1] > 0.8
    assert reg.model_.n_outputs == 2 and reg.n_outputs_ == 1
    with pytest.raises(ValueError, match="gaussian_nll"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPRegressor(max_iter=1).fit(x, y).predict(x, return_std=True)


def test_multi_output_regression_and_bad_targets():
    X, y = make_regression(200, n_features=4, seed=0)
    Y = np.column_stack([y, -y])
    reg = _quiet(MLPRegressor())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y)
    assert reg.predict(X).shape == (200, 2) and reg.n_outputs_ == 2
    with pytest.raises(ValueError, match="2 targets|1 targets"):
        reg.partial_fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="absolute_error").fit(X, y)


def test_dataframe_feature_names_are_recorded_and_checked():
    pd = pytest.importorskip("pandas")
    X, y = make_classification(100, 3, n_informative=2, n_redundant=0, random_state=0)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    clf = MLPClassifier((4,), max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(df, pd.Series(y))
    assert list(clf.feature_names_in_) == ["a", "b", "c"] and clf.n_features_in_ == 3
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        assert np.array_equal(clf.predict(df), clf.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(df[["c", "b", "a"]])


def test_invalid_parameters_are_reported_at_fit_with_their_name():
    X, y = make_classification(50, 3, n_informative=2, n_redundant=0, random_state=0)
    for params, match in [({"solver": "newton"}, "solver"), ({"alpha": -1.0}, "alpha"),
                          ({"max_fun": 0}, "max_fun"), ({"n_iter_no_change": 0.5},
                                                         "n_iter_no_change"),
                          ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
                          ({"batch_size": "big"}, "batch_size"),
                          ({"learning_rate": "cyclic"}, "learning_rate"),
                          ({"momentum": 1.0}, "momentum"), ({"shuffle": "yes"}, "shuffle"),
                          ({"activation": "mish"}, "activation")]:
        with pytest.raises((ValueError, TypeError), match=match):
            MLPClassifier(**params).fit(X, y)


def test_fastnn_imports_without_scikit_learn(tmp_path):
    code = ("import sys; sys.modules['sklearn'] = None\n"  # makes `import sklearn` fail
            "import fastnn\n"
            "assert 'fastnn.interop.sklearn' not in sys.modules\n"
            "try:\n"
            "    fastnn.sklearn\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "needs scikit-learn" in result.stdout


def test_predict_log_proba_is_finite_where_log_of_proba_underflows():
    X, y = make_classification(60, 4, n_informative=3, n_redundant=0, n_classes=3,
                               random_state=0)
    clf = MLPClassifier((4,), max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    clf.intercepts_ = [np.zeros(4), np.array([0.0, 400.0, -400.0])]
    log_proba = clf.predict_log_proba(X)
    assert np.isfinite(log_proba).all()
    # exp(-800) underflows in float64: reported as the smallest positive float, whose
    # logarithm (-744.4) is not the log-probability; predict_log_proba gives the exact one,
    # the log-softmax of the logits, and log(predict_proba) where that is a normal float
    proba = clf.predict_proba(X)
    assert np.all(proba[:, 2] == np.finfo(np.float64).smallest_subnormal)
    exact = log_softmax(clf.model_.forward(X).astype(np.float64), axis=1)
    assert np.all(log_proba[:, 2] < -790)
    np.testing.assert_allclose(log_proba[:, 2], exact[:, 2], rtol=1e-12)
    np.testing.assert_array_equal(log_proba[:, :2], np.log(proba[:, :2]))
    np.testing.assert_allclose(log_proba[:, 1], 0.0, atol=1e-6)


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = make_classification(100, 4, random_state=0)
    clf = MLPClassifier((4,), max_iter=3, verbose=True, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("Iteration 1, loss = ")
    assert "validation loss = " in lines[0] and "score = " in lines[0]


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "csr_array", "csc_array"])
@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
def test_sparse_input_gives_the_dense_results(fmt, solver):
    # every solver and prediction keep X sparse (compiled sparse first layer): the same
    # results as on the dense X, to float64 rounding
    scipy_sparse = pytest.importorskip("scipy.sparse")
    X, y = make_classification(120, 30, random_state=0)
    X[np.abs(X) < 1.0] = 0.0
    Xs = getattr(scipy_sparse, fmt)(X)
    params = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**params).fit(X, y)
        sparse = MLPClassifier(**params).fit(Xs, y)
    np.testing.assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), rtol=1e-10,
                               atol=1e-300)
    np.testing.assert_allclose(sparse.predict_proba(X), sparse.predict_proba(Xs), rtol=1e-10,
                               atol=1e-300)
    np.testing.assert_array_equal(sparse.predict(X), sparse.predict(Xs))
    if solver != "lbfgs":
        dense.partial_fit(X, y)
        sparse.partial_fit(Xs, y)
        np.testing.assert_allclose(sparse.coefs_[0], dense.coefs_[0], rtol=1e-10, atol=1e-12)


def test_the_reported_l2_term_is_a_number_when_only_its_squares_overflow():
    # loss_curve_'s 0.5 * weight_decay * ||W||^2 squared the weights first: above 1e154
    # that is inf although a small weight decay makes the term an ordinary number
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=1, alpha=1e-3, batch_size=40,
                           dtype=np.float64, random_state=0).fit(X, y)
    reg.coefs_ = [np.full_like(W, 3e200) for W in reg.coefs_]
    reg._optimizer.weight_decay = 1e-250
    n_weights = sum(W.size for W in reg.coefs_)
    want = float(Decimal("0.5") * Decimal("1e-250") * Decimal("3e200") ** 2 * n_weights)
    assert reg._reported_loss(0.0) == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------------- bad input and faults
# scikit-learn's check_estimator (above) already feeds the estimators NaN,
# complex, empty, 1-D and object input; these are the cases it does not cover.

@pytest.mark.parametrize("sample_weight, fragments", [
    (-np.ones(40), ["sample_weight has negative entries", "expected weights >= 0"]),
    (np.full(40, np.nan), ["sample_weight contains NaN or infinity"]),
    (np.zeros(40), ["sample_weight is all zeros"]),
    (np.ones(39), ["sample_weight has 39 entries", "expected 40"]),
    (np.full(40, 1e308), ["sample_weight sums to infinity"]),
], ids=["negative", "nan", "zeros", "short", "overflowing-sum"])
def test_estimators_name_bad_sample_weights(sample_weight, fragments):
    Classifier, Regressor = MLPClassifier, MLPRegressor
    X, y = classification_data()
    for est in (Classifier((4,), max_iter=2, dtype=np.float64),
                Regressor(hidden_layer_sizes=(4,), max_iter=2, dtype=np.float64)):
        check_error(lambda: est.fit(X, y, sample_weight=sample_weight), ValueError, *fragments)


def test_estimators_list_valid_names():
    Classifier, Regressor = MLPClassifier, MLPRegressor
    X, y = classification_data()
    for est, what, valid in [
        (Classifier(activation="mish"), "activation", ("logistic", "tanh", "relu")),
        (Classifier(solver="newton"), "solver", ("lbfgs", "sgd", "adam")),
        (Regressor(loss="huber"), "loss", ("squared_error", "poisson", "gaussian_nll")),
        (Regressor(init="kaiming"), "initializer", init.NAMES),
    ]:
        message = check_error(lambda: est.fit(X, y), ValueError, what, "not supported")
        assert all(repr(name) in message for name in valid), message


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_give_the_same_model_for_any_layout():
    Classifier = MLPClassifier
    X, y = classification_data(n=60)
    want = Classifier((8,), max_iter=3, random_state=0).fit(X, y).predict_proba(X)
    for layout, Xl in other_layouts(X).items():
        got = Classifier((8,), max_iter=3, random_state=0).fit(Xl, other_layouts(y)[layout])
        np.testing.assert_array_equal(got.predict_proba(Xl), want)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_diverging_estimator_fit_leaves_a_usable_estimator():
    Classifier = MLPClassifier
    X, y = classification_data(n=60)
    clf = Classifier((8,), solver="sgd", learning_rate_init=1e30, max_iter=5, random_state=0,
                     dtype=np.float32)
    with pytest.raises(TrainingDiverged):
        clf.fit(X * 1e3, y)
    assert np.isfinite(clf.model_.params).all()
    assert np.isfinite(clf.predict_proba(X)).all()
    clf.set_params(learning_rate_init=1e-3).fit(X, y)  # and a sane refit works
    assert clf.score(X, y) > 0
