"""fastnn.interop.sklearn against scikit-learn's own MLP where both are meant to agree:
early stopping's validation split, score, stopping rule and best-weights restore, and
warm_start's new optimizer.

fastnn initialises as scikit-learn does for a given random_state (the same draws from the same
RandomState), so wherever the training itself is the same the two runs are the same run:

* one minibatch per epoch (wine, iris: fewer than 200 training rows), or shuffle=False: the
  same rows in the same batches.  With shuffle=True and several batches the sample orders
  differ (fastnn's is a function of its seed and the epoch count, so that a run continues
  bitwise; scikit-learn's comes from its RandomState stream), and so do the trajectories;
* solver="sgd" (the same update: ``v <- momentum v - lr g``) or "adam" (fastnn's bias
  correction is PyTorch's, scikit-learn folds it into the step size: the same update up to
  where epsilon enters, which matters where a gradient is ~1e-8, e.g. the weights of pixels
  that are 0 in every image of unscaled digits).

There the numbers are equal up to float rounding: the same n_iter_, the same accuracies, R^2
scores within 1e-6.  The split, score and stopping rule are also tested directly against
scikit-learn's code, on fastnn's own runs.
"""
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
import sklearn.neural_network._multilayer_perceptron as sk_mlp  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import fastnn.interop.sklearn_stopping as fn_sklearn_split  # noqa: E402
from fastnn.interop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

_CACHE = {}


def _data(name, scaled=True):
    key = (name, scaled)
    if key not in _CACHE:
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        if scaled:
            X = StandardScaler().fit_transform(X)
            if name == "diabetes":
                y = (y - y.mean()) / y.std()
        _CACHE[key] = X, y
    return _CACHE[key]


def _pair(name, **params):
    """(scikit-learn's estimator, fastnn's), both fitted on the data set with params."""
    X, y = _data(name, params.pop("scaled", True))
    sk_cls, fn_cls = (SkRegressor, MLPRegressor) if name == "diabetes" else \
        (SkClassifier, MLPClassifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return sk_cls(**params).fit(X, y), fn_cls(**params).fit(X, y)


# (data set, hyperparameters): the ones where both train the same way (module docstring)
SAME_RUN = [
    ("wine", dict(scaled=False, random_state=2)),        # the reported case: raw wine
    ("wine", dict(random_state=0)),
    ("iris", dict(random_state=1)),
    ("iris", dict(solver="sgd", learning_rate_init=0.05, random_state=0)),
    ("digits", dict(shuffle=False, random_state=0, hidden_layer_sizes=(32,))),
    # batches of equal size: alpha's decay of a last, smaller batch differs (module docstring
    # of fastnn.interop.sklearn); 1617 training rows = 7 x 231, 397 = 1 x 397
    ("digits", dict(shuffle=False, solver="sgd", learning_rate_init=0.01, random_state=3,
                    hidden_layer_sizes=(32,), batch_size=231)),
    ("diabetes", dict(shuffle=False, solver="sgd", learning_rate_init=0.01, random_state=0,
                      batch_size=397)),
    ("diabetes", dict(shuffle=False, random_state=1, learning_rate_init=0.01,
                      batch_size=397)),
]


@pytest.mark.parametrize("name,params", SAME_RUN,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}"
                              for n, p in SAME_RUN])
def test_early_stopping_gives_scikit_learns_iterations_and_scores(name, params):
    sk, fn = _pair(name, early_stopping=True, **params)
    assert fn.n_iter_ == sk.n_iter_ < 200          # both stopped early, at the same epoch
    # accuracies are equal fractions; R^2 agrees to rounding (Adam: to where epsilon enters)
    atol = 1e-12 if name != "diabetes" else 1e-6 if params.get("solver") == "sgd" else 1e-5
    np.testing.assert_allclose(fn.validation_scores_, sk.validation_scores_, rtol=0, atol=atol)
    assert fn.best_validation_score_ == pytest.approx(sk.best_validation_score_, abs=atol)
    if params.get("solver") == "sgd":
        # the best weights restored: the same epoch's (Adam's differ in the units whose
        # gradients are ~epsilon, e.g. a dead ReLU's)
        for a, b in zip(fn.coefs_ + fn.intercepts_, sk.coefs_ + sk.intercepts_):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.fixture
def splits(monkeypatch):
    """Every train_test_split call of scikit-learn's MLP and of fastnn's estimators."""
    calls = {"sklearn": [], "fastnn": []}
    for who, module in (("sklearn", sk_mlp), ("fastnn", fn_sklearn_split)):
        original = module.train_test_split

        def recorded(*arrays, _original=original, _calls=calls[who], **kwargs):
            out = _original(*arrays, **kwargs)
            _calls.append(out)
            return out
        monkeypatch.setattr(module, "train_test_split", recorded)
    return calls


@pytest.mark.parametrize("name,y_of", [
    ("binary", lambda y: y == 0),              # stratified, as scikit-learn does
    ("multiclass", lambda y: y),               # not stratified, as scikit-learn does
    ("strings", lambda y: np.array(["a", "b", "c"])[y]),
    ("regression", lambda y: y.astype(float)),
])
@pytest.mark.parametrize("random_state", [0, 7, "RandomState"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_the_validation_rows_are_scikit_learns(splits, name, y_of, random_state, weighted):
    X, y = _data("wine")
    y = y_of(y)
    sw = np.linspace(0.5, 2.0, len(y)) if weighted else None
    sk_cls, fn_cls = (SkRegressor, MLPRegressor) if name == "regression" else \
        (SkClassifier, MLPClassifier)
    params = dict(early_stopping=True, max_iter=1, validation_fraction=0.2)
    for cls in (sk_cls, fn_cls):
        state = np.random.RandomState(3) if random_state == "RandomState" else random_state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cls(random_state=state, **params).fit(X, y, sample_weight=sw)
    (sk_split,), (fn_split,) = splits["sklearn"], splits["fastnn"]
    train, val = fn_split                      # fastnn splits row numbers
    np.testing.assert_array_equal(X[train], sk_split[0])    # the same rows, in the same order
    np.testing.assert_array_equal(X[val], sk_split[1])
    if weighted:
        np.testing.assert_array_equal(sw[val], sk_split[5])


def test_a_single_member_class_is_scikit_learns_error():
    # scikit-learn's test_early_stopping_stratified: binary targets are stratified
    X, y = [[1, 2], [2, 3], [3, 4], [4, 5]], [0, 0, 0, 1]
    for cls in (SkClassifier, MLPClassifier):
        with pytest.raises(ValueError, match="least populated class"):
            cls(early_stopping=True).fit(X, y)


@pytest.mark.parametrize("name", ["wine", "diabetes"])
def test_the_validation_score_is_scikit_learns_score_on_the_same_weights(splits, name):
    # fastnn's best validation score is that of the weights it restores; scikit-learn's
    # _score (its early-stopping score) on those weights, on its validation rows, is the same
    sk, fn = _pair(name, early_stopping=True, random_state=0, max_iter=15)
    (sk_split,) = splits["sklearn"]
    X_val, y_val = sk_split[1], sk_split[3]
    if name == "wine":
        y_val = sk._label_binarizer.inverse_transform(y_val)  # as scikit-learn's fit does
    sk.coefs_ = [c.copy() for c in fn.coefs_]
    sk.intercepts_ = [b.copy() for b in fn.intercepts_]
    assert sk._score(X_val, y_val) == pytest.approx(fn.best_validation_score_, rel=0,
                                                    abs=1e-12)


@pytest.mark.parametrize("n_iter_no_change,tol", [(3, 1e-4), (5, 0.02), (10, 0.0)])
def test_the_stopping_rule_is_scikit_learns(n_iter_no_change, tol):
    # fastnn's scores, replayed through scikit-learn's own rule (_update_no_improvement_count)
    _, fn = _pair("digits", early_stopping=True, random_state=0, hidden_layer_sizes=(16,),
                  learning_rate_init=0.01, n_iter_no_change=n_iter_no_change, tol=tol,
                  max_iter=60)
    sk = SkClassifier(early_stopping=True, n_iter_no_change=n_iter_no_change, tol=tol)
    sk.validation_scores_, sk.best_validation_score_, sk._no_improvement_count = [], -np.inf, 0
    scores = iter(fn.validation_scores_)
    sk._score = lambda X, y, sample_weight=None: next(scores)
    stopped_at = None
    for epoch in range(1, fn.n_iter_ + 1):
        sk.coefs_ = sk.intercepts_ = [np.array([epoch])]   # marks which epoch is "best"
        sk._update_no_improvement_count(True, None, None, None)
        if sk._no_improvement_count > n_iter_no_change:
            stopped_at = epoch
            break
    assert stopped_at == fn.n_iter_ and fn.stopped_early_
    assert sk.best_validation_score_ == fn.best_validation_score_
    best_epoch = int(sk._best_coefs[0][0])
    assert best_epoch == 1 + int(np.argmax(fn.validation_scores_))


def _warm_pair(name, max_iters, **params):
    X, y = _data(name)
    sk_cls, fn_cls = (SkRegressor, MLPRegressor) if name == "diabetes" else \
        (SkClassifier, MLPClassifier)
    sk, fn = sk_cls(warm_start=True, **params), fn_cls(warm_start=True, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for max_iter in max_iters:
            sk.set_params(max_iter=max_iter).fit(X, y)
            fn.set_params(max_iter=max_iter).fit(X, y)
            yield sk, fn


@pytest.mark.parametrize("name,params", [
    ("iris", dict(solver="sgd", learning_rate_init=0.01, shuffle=False)),  # Nesterov, 0.9
    # batches of equal size (442 rows = 2 x 221; with early stopping 397 training rows)
    ("diabetes", dict(solver="sgd", learning_rate_init=0.01, shuffle=False, batch_size=221)),
    ("diabetes", dict(solver="sgd", learning_rate_init=0.01, shuffle=False, batch_size=397,
                      early_stopping=True, n_iter_no_change=3)),
])
def test_warm_start_starts_a_new_optimizer_as_scikit_learn(name, params):
    # the old default continued the momentum of the first fit: other weights after the second
    kept = None
    for sk, fn in _warm_pair(name, (5, 40), random_state=0, **params):
        assert fn.n_iter_ == sk.n_iter_
        for a, b in zip(fn.coefs_ + fn.intercepts_, sk.coefs_ + sk.intercepts_):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
        if params.get("early_stopping"):
            np.testing.assert_allclose(fn.validation_scores_, sk.validation_scores_, atol=1e-8)
        assert len(fn.loss_curve_) == len(sk.loss_curve_)
        assert fn._optimizer is not kept
        kept = fn._optimizer


def test_continue_run_keeps_the_optimizer():
    # fastnn's extension: the warm fit continues the run (tests/test_continuation.py: bitwise
    # a longer fit); the default starts a new optimizer
    X, y = _data("iris")
    for continue_run in (False, True):
        clf = MLPClassifier(warm_start=True, continue_run=continue_run, max_iter=3,
                            random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
            first = clf._optimizer
            clf.fit(X, y)
        assert (clf._optimizer is first) == continue_run
        assert clf._optimizer.completed_epochs == (6 if continue_run else 3)
    with pytest.raises(TypeError, match="continue_run"):
        MLPClassifier(continue_run="yes").fit(X, y)
