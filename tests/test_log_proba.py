"""predict_log_proba is exact and finite where log(predict_proba) floors at log(4.9e-324) =
-744.4 (the log-softmax / log-sigmoid of the logits there), and log(predict_proba) where that
is a normal float (scikit-learn's checks compare their order element by element).  Closed
forms: a linear classifier (no hidden layer) whose logits are set by hand."""
import warnings

import numpy as np
import pytest

sk = pytest.importorskip("fastnn.interop.sklearn")
ens_module = pytest.importorskip("fastnn.interop.sklearn_ensemble")

DTYPES = [np.float64, np.float32]


def _linear(y, dtype, n_features=2):
    """A fitted linear MLPClassifier on X of `dtype` (its outputs follow X's dtype)."""
    X = np.random.default_rng(0).standard_normal((len(y), n_features)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # max_iter=1: not converged
        return sk.MLPClassifier(hidden_layer_sizes=(), max_iter=1, random_state=0).fit(X, y)


def _set_logits(clf, W, b):
    clf.coefs_ = [np.asarray(W, dtype=clf.coefs_[0].dtype)]
    clf.intercepts_ = [np.asarray(b, dtype=clf.intercepts_[0].dtype)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_multiclass_is_the_log_softmax_of_the_logits(dtype):
    clf = _linear(np.arange(30) % 3, dtype)
    # logits z = (x0 * 1e6 [class 0], 0 [class 1], -1.9 * x0 * 1e6 + 5 [class 2]) at x0 = 1.5
    _set_logits(clf, [[1e6, 0.0, -1.9e6], [0.0, 0.0, 0.0]], [0.0, 0.0, 5.0])
    X = np.array([[1.5, 0.0], [0.0, 0.0]], dtype)
    got = clf.predict_log_proba(X)
    z0 = np.array([1.5e6, 0.0, -2.85e6 + 5.0])
    # logsumexp(z0) = 1.5e6 + log(1 + exp(-1.5e6) + exp(-4.35e6 + 5)) = 1.5e6 exactly in
    # float64; the second row has equal logits 0, 0, 5
    want = np.array([z0 - 1.5e6,
                     np.array([0.0, 0.0, 5.0]) - (5.0 + np.log1p(2 * np.exp(-5.0)))])
    assert got.dtype == dtype and np.isfinite(got).all()
    # (a probability that rounds to 1 is reported as the float below it, whose logarithm is
    # -1.1e-16 in float64, -6e-8 in float32, where the exact value is about -exp(-1.5e6))
    np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == np.float64 else 1e-6,
                               atol=2e-16 if dtype == np.float64 else 1e-7)
    assert got[0, 2] == pytest.approx(-4.35e6 + 5.0, rel=1e-12)   # not -744.4
    # where the probabilities are representable, it is log(predict_proba) (to the rounding
    # of a probability near 1: half an ulp of 1 in float32 is 6e-8 in the logarithm)
    np.testing.assert_allclose(got[1], np.log(clf.predict_proba(X)[1].astype(np.float64)),
                               rtol=1e-12, atol=1e-15 if dtype == np.float64 else 1e-7)
    assert clf.predict_log_proba(X).argmax(axis=1).tolist() == [0, 2]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_binary_is_the_log_sigmoid_of_the_logit(dtype):
    clf = _linear(np.arange(20) % 2, dtype)
    _set_logits(clf, [[1e6], [0.0]], [0.0])
    X = np.array([[2.9, 0.0], [-2.9, 0.0], [0.0, 0.0], [1e-6, 0.0]], dtype)
    got = clf.predict_log_proba(X)
    z = np.array([2.9e6, -2.9e6, 0.0, 1.0])
    # log P(class 1) = -log(1 + exp(-z)), log P(class 0) = -log(1 + exp(z))
    want = np.column_stack([-np.logaddexp(0, z), -np.logaddexp(0, -z)])
    assert got.dtype == dtype and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == np.float64 else 1e-6,
                               atol=2e-16 if dtype == np.float64 else 1e-7)
    assert got[0, 0] == dtype(-2.9e6) and got[1, 1] == dtype(-2.9e6)
    # where the probabilities are normal floats: their logarithm, the same order and ties
    proba = clf.predict_proba(X)
    normal = proba >= np.finfo(dtype).tiny
    np.testing.assert_array_equal(got[normal], np.log(proba)[normal])


def test_multilabel_is_the_log_sigmoid_per_label():
    Y = np.array([[0, 1], [1, 0], [1, 1], [0, 0]] * 5)
    clf = _linear(Y, np.float64)
    _set_logits(clf, [[1e6, -1e6], [0.0, 0.0]], [0.0, 0.0])
    got = clf.predict_log_proba(np.array([[3.0, 0.0]]))
    np.testing.assert_array_equal(got, [[np.log1p(-2.0 ** -53), -3e6]])


def test_a_one_class_classifier_gives_log_one():
    clf = _linear(np.zeros(10, int), np.float64)
    np.testing.assert_array_equal(clf.predict_log_proba(np.zeros((3, 2))), np.zeros((3, 1)))


def test_the_ensemble_classifier_is_the_log_of_its_mean_probability():
    X = np.random.default_rng(1).standard_normal((40, 2))
    y = np.arange(40) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = ens_module.EnsembleClassifier(
            sk.MLPClassifier(hidden_layer_sizes=(), max_iter=1), n_estimators=2,
            random_state=0).fit(X, y)
    np.testing.assert_allclose(ens.predict_log_proba(X), np.log(ens.predict_proba(X)),
                               rtol=1e-12)
    # member logits (1e6 x, 0, 0) and (2e6 x, 0, 0) at x = -1: class 0 has probability
    # (exp(-1e6) + exp(-2e6)) / 2 / ..., log = -1e6 - log 2 + log(1 + exp(-1e6)) - log(...)
    for k, member in enumerate(ens.estimators_):
        _set_logits(member, [[(k + 1) * 1e6, 0.0, 0.0], [0.0, 0.0, 0.0]], [0.0, 0.0, 0.0])
    got = ens.predict_log_proba(np.array([[-1.0, 0.0]]))
    np.testing.assert_allclose(got, [[-1e6 - np.log(2) - np.log(2),
                                      -np.log(2), -np.log(2)]], rtol=1e-12)
