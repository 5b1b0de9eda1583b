"""fastnn.interop.sklearn_ensemble: scikit-learn's estimator checks, the combination of the members,
Pipeline/GridSearchCV use, bad parameters."""
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")  # an optional dependency, in the test extra

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastnn.interop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn.interop.sklearn_ensemble import EnsembleClassifier, EnsembleRegressor  # noqa: E402


def _small(cls, member, **kwargs):
    return cls(member(hidden_layer_sizes=(32,), max_iter=200, dtype="float64"), n_estimators=2,
               n_jobs=2, **kwargs)


@parametrize_with_checks([_small(EnsembleClassifier, MLPClassifier),
                          _small(EnsembleRegressor, MLPRegressor)])
def test_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 4))
    return X, np.sin(X[:, 0]) + 0.1 * rng.standard_normal(200), (X[:, 0] > 0).astype(int) + (
        X[:, 1] > 1)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_predictions_combine_the_members_and_do_not_depend_on_threads():
    X, y, labels = _data()
    reg = EnsembleRegressor(MLPRegressor(hidden_layer_sizes=(16,), loss="gaussian_nll", max_iter=20),
                            n_estimators=3, random_state=0, n_jobs=2).fit(X, y)
    pairs = [m.predict(X, return_std=True) for m in reg.estimators_]
    mu = np.stack([p[0] for p in pairs])
    var = np.stack([p[1] for p in pairs]) ** 2
    mean, std = reg.predict(X, return_std=True)
    np.testing.assert_allclose(mean, mu.mean(axis=0), rtol=1e-12)
    second = (var + mu ** 2).mean(axis=0)       # the mixture's E[y^2]
    np.testing.assert_allclose(std, np.sqrt(second - mean ** 2), rtol=1e-6)
    one = EnsembleRegressor(MLPRegressor(hidden_layer_sizes=(16,), loss="gaussian_nll", max_iter=20),
                            n_estimators=3, random_state=0, n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(one.predict(X), reg.predict(X))
    clf = EnsembleClassifier(MLPClassifier((16,), max_iter=20), n_estimators=3,
                             random_state=0, bootstrap=True).fit(X, labels)
    P = np.mean([m.predict_proba(X) for m in clf.estimators_], axis=0)
    np.testing.assert_allclose(clf.predict_proba(X), P, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[P.argmax(axis=1)])
    assert len(set(clf.member_seeds_)) == 3
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipeline_and_grid_search():
    X, y, _ = _data()
    pipe = make_pipeline(StandardScaler(), EnsembleRegressor(
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=10), n_estimators=2, random_state=0))
    search = GridSearchCV(pipe, {"ensembleregressor__estimator__alpha": [1e-4, 1e-2]}, cv=2)
    search.fit(X, y)
    assert search.best_estimator_.predict(X).shape == (200,)


def test_bad_parameters():
    X, y, labels = _data()
    with pytest.raises(ValueError, match="n_estimators=0"):
        EnsembleRegressor(n_estimators=0).fit(X, y)
    with pytest.raises(TypeError, match="n_jobs must be an int"):
        EnsembleRegressor(n_jobs=1.5).fit(X, y)
    with pytest.raises(TypeError, match="bootstrap must be True or False"):
        EnsembleRegressor(bootstrap="yes").fit(X, y)
    with pytest.raises(TypeError, match="estimator must be a scikit-learn estimator"):
        EnsembleRegressor(estimator=object()).fit(X, y)
    with pytest.raises(ValueError, match="does not support multi-label"):
        EnsembleClassifier().fit(X, np.eye(2, dtype=int)[labels % 2])


def test_members_use_the_callers_flush_denormals_block(monkeypatch):
    # the block is per thread (a ContextVar); the members' runs are prepared on the calling
    # thread, which passes its mode to the compiled epochs wherever the pool runs them
    import fastnn
    from fastnn.runtime import fpmode
    import fastnn.interop.sklearn as fsk
    import fastnn.interop.sklearn_base as fsk_base
    from fastnn.interop.sklearn_ensemble import EnsembleRegressor
    seen = []
    real = fsk_base.prepare_run

    def spy(*args, **kwargs):
        run, epochs = real(*args, **kwargs)
        seen.append(run.flush_denormals)
        return run, epochs

    monkeypatch.setattr(fsk_base, "prepare_run", spy)
    X = np.random.default_rng(0).standard_normal((30, 2))
    ens = EnsembleRegressor(fsk.MLPRegressor(hidden_layer_sizes=(4,), max_iter=1),
                            n_estimators=3, n_jobs=2, random_state=0)
    with fpmode.flush_denormals(False):
        ens.fit(X, X[:, 0])
    assert seen == [False] * 3
    assert fastnn.get_flush_denormals() is True


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("n_jobs, n_estimators", [(1, 2), (4, 2), (3, 1)])
def test_n_jobs_bounds_fastnns_threads_in_the_members_fits(monkeypatch, n_jobs, n_estimators,
                                                           solver):
    # n_jobs is the ensemble's threads in all: the pool's job of the members' epochs runs on
    # min(n_estimators, n_jobs) threads, each member's epoch on one, and every other compiled
    # call of the fits (lbfgs members, validation scores) on at most n_jobs; a member's fit
    # took every core before, so n_jobs=1 ran fastnn's pool on 2 threads
    from fastnn._core import _epoch
    from fastnn.runtime import threads
    seen, jobs = [], []
    real, real_job = threads.resolve_threads, _epoch.train_epochs

    def spy(n):
        seen.append(real(n))
        return seen[-1]

    def spy_job(calls, n_threads):
        jobs.append(n_threads)
        return real_job(calls, n_threads)

    monkeypatch.setattr(threads, "resolve_threads", spy)
    monkeypatch.setattr(_epoch, "train_epochs", spy_job)
    X = np.random.default_rng(0).standard_normal((60, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        EnsembleRegressor(MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, solver=solver,
                                       early_stopping=solver == "adam"),
                          n_estimators=n_estimators, n_jobs=n_jobs,
                          random_state=0).fit(X, X.sum(axis=1))
    assert seen and set(seen) <= set(range(1, n_jobs + 1))
    assert set(jobs) == (set() if solver == "lbfgs" else {min(n_jobs, n_estimators)})
    assert threads.resolve_threads(None) == threads.available_cores()   # reset afterwards


@pytest.mark.parametrize("cls", ["EnsembleRegressor", "EnsembleClassifier"])
def test_members_train_in_lockstep_jobs_each_equal_to_its_lone_fit(cls, monkeypatch):
    # one driver: each epoch one compiled job holds every member still training (no thread
    # per member), and each member is bitwise the estimator fitted alone with its seed,
    # early stopping and bootstrap weights included
    import threading
    import fastnn.interop.sklearn as fsk
    import fastnn.interop.sklearn_ensemble as fse
    from fastnn._core import _epoch
    jobs, threads = [], set()
    real = _epoch.train_epochs

    def spy(calls, n_threads):
        calls = list(calls)
        jobs.append(len(calls))
        threads.add(threading.get_ident())
        return real(calls, n_threads)

    monkeypatch.setattr(_epoch, "train_epochs", spy)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    y = X[:, 0] - X[:, 1] + 0.1 * rng.standard_normal(120)
    if cls == "EnsembleClassifier":
        y = (y > 0).astype(int)
        est = fsk.MLPClassifier(hidden_layer_sizes=(8,), max_iter=6, dtype="float64",
                                early_stopping=True, n_iter_no_change=2)
    else:
        est = fsk.MLPRegressor(hidden_layer_sizes=(8,), max_iter=6, dtype="float64",
                               early_stopping=True, n_iter_no_change=2)
    ens = getattr(fse, cls)(est, n_estimators=3, bootstrap=True, n_jobs=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens.fit(X, y)
    assert threads == {threading.get_ident()} and jobs[0] == 3
    assert len(jobs) == max(m.n_iter_ for m in ens.estimators_)
    for k, member in enumerate(ens.estimators_):
        assert jobs.count(3) >= 1
        alone = clone(est).set_params(random_state=ens.member_seeds_[k])
        n = X.shape[0]
        w = np.bincount(np.random.default_rng(ens.member_seeds_[k]).integers(0, n, n),
                        minlength=n).astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alone.fit(X, y, sample_weight=w)
        assert alone.model_.params.tobytes() == member.model_.params.tobytes()
        assert alone.loss_curve_ == member.loss_curve_
        assert alone.n_iter_ == member.n_iter_


@pytest.mark.parametrize("cls", [EnsembleRegressor, EnsembleClassifier])
def test_bootstrap_with_one_positive_weight_fits_every_member(cls):
    # a member whose resample missed the one row of positive weight failed the fit with
    # "sample_weight is all zeros"; it is drawn again from the member's stream
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X[:, 0] if cls is EnsembleRegressor else (X[:, 0] > 0).astype(int)
    w = np.zeros(30)
    w[4] = w[11] = 1.0
    base = (MLPRegressor if cls is EnsembleRegressor else MLPClassifier)(
        hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ens = cls(base, n_estimators=8, bootstrap=True, random_state=0).fit(X, y, w)
    assert len(ens.estimators_) == 8
    assert np.isfinite(ens.predict(X)).all() if cls is EnsembleRegressor else True
