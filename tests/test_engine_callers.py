"""The training engine's guarantees, over every caller that trains, L-BFGS included.

Every fit goes through ``fastnn.training.trainer.prepare_run``: ``fastnn.fit`` and ``MLP.fit``
with a minibatch optimizer or with ``fastnn.LBFGS`` (a full-batch run,
fastnn/training/full_batch.py), ``LBFGS.fit`` and the scikit-learn estimators with each
solver.  Each guarantee below is checked on each of them:

* bad sample weights are refused before any weight moves, with the same message;
* a callback (and the History) sees one entry per L-BFGS iteration: the iterations scipy's
  own ``minimize`` reports over the same objective, with its values;
* Ctrl-C during an L-BFGS evaluation leaves the model at the last accepted iterate (scipy's),
  with the History of the iterations before it;
* an objective that is not finite is a ``TrainingDiverged``, the model keeping finite
  weights, as a minibatch run's divergence is.
"""
import copy
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize

import fastnn
from fastnn.optim.lbfgs import LBFGSObjective
from fastnn.runtime import boundary

sklearn = pytest.importorskip("sklearn")
from fastnn.interop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

N = 60


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)


def _model():
    return fastnn.MLP([3, 5, 2], activation="tanh", dtype=np.float64, seed=0)


def _quiet(f):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f()


# each caller: (train(X, y, sample_weight, callback) -> model or estimator); callback is
# cb(iteration, value) or None
def _fit_sgd(X, y, sw, cb=None):
    model = _model()
    fastnn.fit(model, X, y, "cross_entropy", fastnn.SGD(lr=0.1), epochs=2, seed=0,
               sample_weight=sw)
    return model


def _mlp_fit_adam(X, y, sw, cb=None):
    model = _model()
    model.fit(X, y, "cross_entropy", "adam", epochs=2, seed=0, sample_weight=sw)
    return model


def _adapt(cb):
    return [] if cb is None else [lambda it, logs: cb(it, logs["loss"])]


def _fit_lbfgs(X, y, sw, cb=None, max_iter=15):
    model = _model()
    fastnn.fit(model, X, y, "cross_entropy", fastnn.LBFGS(max_iter=max_iter),
               sample_weight=sw, callbacks=_adapt(cb))
    return model


def _mlp_fit_lbfgs(X, y, sw, cb=None, max_iter=15):
    model = _model()
    model.fit(X, y, "cross_entropy", optimizer=fastnn.LBFGS(max_iter=max_iter),
              sample_weight=sw, callbacks=_adapt(cb))
    return model


def _lbfgs_fit(X, y, sw, cb=None, max_iter=15):
    model = _model()
    fastnn.LBFGS(max_iter=max_iter).fit(model, X, y, "cross_entropy", sample_weight=sw,
                                        callback=cb)
    return model


def _estimator(solver):
    def train(X, y, sw, cb=None):
        est = MLPClassifier(hidden_layer_sizes=(5,), solver=solver, max_iter=15,
                            random_state=0, dtype=np.float64)
        _quiet(lambda: est.fit(X, y, sample_weight=sw))
        return est
    return train


CALLERS = {
    "fastnn.fit sgd": _fit_sgd,
    "MLP.fit adam": _mlp_fit_adam,
    "fastnn.fit LBFGS": _fit_lbfgs,
    "MLP.fit LBFGS": _mlp_fit_lbfgs,
    "LBFGS.fit": _lbfgs_fit,
    "MLPClassifier adam": _estimator("adam"),
    "MLPClassifier lbfgs": _estimator("lbfgs"),
}
LBFGS_CALLERS = {"fastnn.fit LBFGS": _fit_lbfgs, "MLP.fit LBFGS": _mlp_fit_lbfgs,
                 "LBFGS.fit": _lbfgs_fit}

BAD_WEIGHTS = {
    "all zero": np.zeros(N),
    "negative": np.r_[-1.0, np.ones(N - 1)],
    "NaN": np.r_[np.nan, np.ones(N - 1)],
    "infinite": np.r_[np.inf, np.ones(N - 1)],
    "too few": np.ones(N - 1),
    "2-d": np.ones((N, 1)),
}


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_bad_sample_weights_are_refused_with_one_message_by_every_caller(case, monkeypatch):
    X, y = _data()
    # no caller may reach a compiled training call
    for name in ("prepare_epoch", "net_loss_grad", "csr_loss_grad"):
        monkeypatch.setattr(boundary, name, _forbidden(name))
    messages = {}
    for caller, train in CALLERS.items():
        with pytest.raises(ValueError) as info:
            train(X, y, BAD_WEIGHTS[case])
        messages[caller] = str(info.value)
    assert len(set(messages.values())) == 1, messages
    assert "sample_weight" in next(iter(messages.values()))


def _forbidden(name):
    def call(*args, **kwargs):
        raise AssertionError(f"{name} ran before the sample weights were refused")
    return call


def _scipy_reference(X, y, sw, max_iter):
    """scipy's own L-BFGS-B over the same objective: its iterates and their values."""
    model = _model()
    objective = LBFGSObjective(model, X, y, "cross_entropy", sw)
    seen = []
    result = minimize(objective, model.params.astype(np.float64), method="L-BFGS-B", jac=True,
                      options={"maxiter": max_iter, "maxfun": 15000, "gtol": 1e-4,
                               "maxcor": 10},
                      callback=lambda intermediate_result: seen.append(
                          (intermediate_result.x.copy(), float(intermediate_result.fun))))
    return result, seen


@pytest.mark.parametrize("caller", list(LBFGS_CALLERS))
@pytest.mark.parametrize("weighted", [False, True])
def test_a_callback_sees_one_entry_per_lbfgs_iteration(caller, weighted):
    X, y = _data()
    sw = np.random.default_rng(1).uniform(0.5, 2.0, N) if weighted else None
    result, want = _scipy_reference(X, y, sw, max_iter=12)
    seen = []
    model = LBFGS_CALLERS[caller](X, y, sw, lambda it, value: seen.append((it, value)),
                                  max_iter=12)
    assert [it for it, _ in seen] == list(range(1, result.nit + 1))
    assert [value for _, value in seen] == [value for _, value in want]
    history = model.history_
    assert history.epoch == list(range(1, result.nit + 1))
    assert history.loss == [value for _, value in want]
    assert model.params.tobytes() == result.x.tobytes()


def test_the_estimators_lbfgs_records_one_entry_per_iteration():
    X, y = _data()
    result, want = _scipy_reference(X, y, None, max_iter=15)
    est = _estimator("lbfgs")(X, y, None)
    # (the estimator's own initial weights: compare the counts and the run's shape)
    assert len(est.loss_curve_) == est.n_iter_ <= 15
    assert len(est.model_.history_) == est.n_iter_
    assert est.loss_curve_ == est.model_.history_.loss


class _InterruptAt:
    """boundary.net_loss_grad that raises KeyboardInterrupt (Ctrl-C) at its n-th call."""

    def __init__(self, n):
        self.n, self.calls, self.real = n, 0, boundary.net_loss_grad

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


@pytest.mark.parametrize("caller", [*LBFGS_CALLERS, "MLPClassifier lbfgs"])
@pytest.mark.parametrize("at", [1, 4, 9])
def test_ctrl_c_during_lbfgs_leaves_the_last_accepted_iterate(caller, at, monkeypatch):
    X, y = _data()
    result, want = _scipy_reference(X, y, None, max_iter=15)
    # the reference's evaluations up to the interrupted one: which iterates were accepted
    counting = _InterruptAt(at)
    monkeypatch.setattr(boundary, "net_loss_grad", counting)
    if caller == "MLPClassifier lbfgs":
        est = MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=15,
                            random_state=0, dtype=np.float64)
        with pytest.raises(KeyboardInterrupt):
            est.fit(X, y)
        model, start = est.model_, None
    else:
        model = _model()
        start = model.params.copy()
        train = {"fastnn.fit LBFGS": lambda m: fastnn.fit(
                     m, X, y, "cross_entropy", fastnn.LBFGS(max_iter=15)),
                 "MLP.fit LBFGS": lambda m: m.fit(X, y, "cross_entropy",
                                                  optimizer=fastnn.LBFGS(max_iter=15)),
                 "LBFGS.fit": lambda m: fastnn.LBFGS(max_iter=15).fit(
                     m, X, y, "cross_entropy")}[caller]
        with pytest.raises(KeyboardInterrupt):
            train(model)
    monkeypatch.undo()
    history = model.history_
    assert np.all(np.isfinite(model.params))
    if start is not None:
        # the model holds the start or an accepted iterate of scipy's run, never a trial
        # point, and the History the iterations before the interruption
        k = len(history)
        expected = start if k == 0 else want[k - 1][0]
        assert model.params.tobytes() == expected.tobytes()
        assert history.loss == [value for _, value in want[:k]]
        assert model.loss_and_grad(X, y, "cross_entropy") == pytest.approx(
            history.loss[-1] if k else LBFGSObjective(_model(), X, y, "cross_entropy")(
                start)[0], rel=1e-12)
    else:
        # the estimator's network (binary: one sigmoid output): the point of its last
        # recorded iteration, whose objective (scikit-learn's, alpha / n_samples on the
        # weights) is that iteration's value
        k = len(history)
        assert model.predict(X).shape == (N, 1)
        if k:
            objective = LBFGSObjective(model, X, y.reshape(-1, 1).astype(float), model.loss_,
                                       None, est.alpha / N)
            assert objective(model.params)[0] == pytest.approx(history.loss[-1], rel=1e-12)


def _overflowing():
    """Poisson targets on inputs so large that exp(logit) overflows at the start."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, 3)) * 1e3
    return X, rng.poisson(2.0, (N, 1)).astype(float)


def _poisson_model():
    return fastnn.MLP([3, 5, 1], activation="relu", dtype=np.float64, seed=0)


@pytest.mark.parametrize("caller", ["fastnn.fit sgd", *LBFGS_CALLERS])
def test_divergence_is_a_training_diverged_with_finite_weights_kept(caller):
    X, y = _overflowing()
    model = _poisson_model()
    start = model.params.copy()
    train = {
        "fastnn.fit sgd": lambda: fastnn.fit(model, X, y, "poisson", fastnn.SGD(lr=0.1),
                                             epochs=2, seed=0),
        "fastnn.fit LBFGS": lambda: fastnn.fit(model, X, y, "poisson", fastnn.LBFGS()),
        "MLP.fit LBFGS": lambda: model.fit(X, y, "poisson", optimizer=fastnn.LBFGS()),
        "LBFGS.fit": lambda: fastnn.LBFGS().fit(model, X, y, "poisson"),
    }[caller]
    # the closed form: the starting objective is not finite (exp overflows)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.exp(model.forward(X)).max())
    with pytest.raises(fastnn.TrainingDiverged) as info:
        train()
    assert np.all(np.isfinite(model.params))
    # what the model keeps: the parameters it started with, the last known finite ones
    assert model.params.tobytes() == start.tobytes()
    assert "keeps" in str(info.value)
    if caller != "fastnn.fit sgd":
        assert info.value.result.nit == 0 and not np.isfinite(info.value.result.fun)


def test_the_estimators_lbfgs_keeps_scikit_learns_semantics_on_divergence():
    """scikit-learn's lbfgs warns (ConvergenceWarning) and keeps the loss it reached; the
    network keeps finite weights, and predicts."""
    X, y = _overflowing()
    est = MLPRegressor(loss="poisson", hidden_layer_sizes=(5,), solver="lbfgs", max_iter=15,
                       random_state=0, activation="relu")
    with pytest.warns(sklearn.exceptions.ConvergenceWarning):
        est.fit(X, y.ravel())
    assert not np.isfinite(est.loss_) and est.n_iter_ == 0 and est.loss_curve_ == []
    assert np.all(np.isfinite(est.model_.params))


def test_lbfgs_takes_fits_validation_and_early_stopping():
    """Validation figures per iteration (as ``evaluate`` gives them at that iterate) and
    EarlyStopping over iterations, with the best iterate put back."""
    X, y = _data(200)
    model = _model()
    es = fastnn.EarlyStopping(patience=2, monitor="loss")
    seen = []
    history = fastnn.fit(model, X, y, "cross_entropy", fastnn.LBFGS(max_iter=40),
                         validation_data=(X[:50], y[:50]), early_stopping=es,
                         callbacks=[lambda it, logs: seen.append(
                             (logs["val_loss"], model.evaluate(X[:50], y[:50])[0]))])
    assert [a for a, _ in seen] == pytest.approx([b for _, b in seen], rel=1e-12)
    assert len(history) == len(seen) and history.lr == [None] * len(history)
    # the training loss of a full-batch descent method falls at every iteration, so the
    # record's best is its last entry unless it stopped on a stall
    assert history.best_epoch == int(np.argmin(history.loss)) + 1


def test_lbfgs_refuses_what_does_not_apply():
    X, y = _data()
    with pytest.raises(TypeError, match="epochs=3 does not apply to L-BFGS"):
        fastnn.fit(_model(), X, y, "cross_entropy", fastnn.LBFGS(), epochs=3)
    with pytest.raises(TypeError, match="no epochs to step"):
        from fastnn.training.trainer import prepare_run
        run, _ = prepare_run(_model(), X, y, "cross_entropy", fastnn.LBFGS())
        next(run.epochs(1))


@pytest.mark.parametrize("tol", [0.0, 1e-4, 0.05])
def test_the_estimators_record_follows_scikit_learns_rule(tol):
    """The estimators' record is the engine's EarlyStopping kept by scikit-learn's rule
    (``_update_tolerance``): replayed against scikit-learn's own
    ``_update_no_improvement_count`` over values with ties, improvements within tol and
    rises, its count and best value agree after every epoch."""
    from sklearn.neural_network import MLPClassifier as SkClassifier
    rng = np.random.default_rng(int(tol * 1e4))
    values = np.round(np.cumsum(rng.normal(-0.02, 0.05, 40)), 2) + 1.0   # ties included
    sk = SkClassifier(tol=tol)
    sk.loss_curve_, sk.best_loss_, sk._no_improvement_count = [], np.inf, 0
    record = fastnn.EarlyStopping(monitor="loss")
    params = np.zeros(1)
    for epoch, value in enumerate(values, start=1):
        sk.loss_curve_.append(float(value))
        sk._update_no_improvement_count(False, None, None, None)
        params[0] = epoch
        wait = record._update_tolerance(float(value), epoch, params, tol)
        assert wait == sk._no_improvement_count
        assert record.best_value == sk.best_loss_
        # the best weights are those of the epoch that set the best value
        assert record._best_params[0] == 1 + int(np.argmin(values[:epoch]))


def test_an_estimator_pickled_with_the_old_record_fields_continues_its_record():
    """Estimators pickled when the record was four attributes of their own (_best_value,
    _no_improvement_count, _best_params, _run_params) load into the engine's record."""
    import pickle
    X, y = _data(200)
    est = MLPClassifier(hidden_layer_sizes=(5,), early_stopping=True, max_iter=8,
                        random_state=0, n_iter_no_change=50)
    _quiet(lambda: est.fit(X, y))
    record = est._record
    state = est.__getstate__()
    del state["_record"]
    state.update(_best_value=record.best_value, _no_improvement_count=record.wait,
                 _best_params=record._best_params.copy(), _run_params=None)
    old = MLPClassifier.__new__(MLPClassifier)
    old.__setstate__(state)
    loaded = pickle.loads(pickle.dumps(old))
    # (the default monitor is the validation score: the record minimises minus it)
    assert loaded._best_value == est._best_value == -max(est.validation_scores_)
    assert loaded._no_improvement_count == est._no_improvement_count
    assert loaded._record._best_params.tobytes() == record._best_params.tobytes()
    assert "_best_value" not in vars(loaded)
    # and a warm start goes on with that record, as the original does
    for e in (est, loaded):
        e.set_params(warm_start=True)
        _quiet(lambda e=e: e.fit(X, y))
    assert loaded.loss_curve_ == est.loss_curve_
    assert loaded._best_value == est._best_value


@pytest.mark.parametrize("again", ["equal instance", "other patience"])
def test_a_refused_fit_leaves_the_early_stopping_record_as_it_was(again):
    # the run took the previous record over (or reset the given one) and attached it to the
    # optimizer before its checks: a refused fit changed which record a later fit continues
    X, y = _data()
    model = fastnn.MLP([X.shape[1], 6, 1], seed=0, dtype=np.float64)
    opt = fastnn.SGD(lr=0.01)
    first = fastnn.EarlyStopping(patience=3, monitor="loss")
    model.fit(X, y, "mse", opt, epochs=3, early_stopping=first)
    record = dict(vars(first))
    given = fastnn.EarlyStopping(patience=3 if again == "equal instance" else 5,
                                 monitor="loss")
    untouched = dict(vars(given))
    opt.clip_norm = 1e-320      # refused by the run's own checks (TrainingRun.check)
    with pytest.raises(ValueError, match="clip_norm"):
        model.fit(X, y, "mse", opt, epochs=3, early_stopping=given)
    assert opt._early_stopping is first
    assert vars(given).keys() == untouched.keys()
    for key, value in untouched.items():
        assert vars(given)[key] is value or np.array_equal(vars(given)[key], value), key
    for key, value in record.items():
        assert vars(first)[key] is value or np.array_equal(vars(first)[key], value), key


@pytest.mark.parametrize("how", ["fit", "warm_start", "partial_fit", "lbfgs"])
@pytest.mark.parametrize("bad", ["zero weights", "negative weight", "NaN in X", "wrong width"])
def test_a_refused_estimator_fit_leaves_the_estimator_as_it_was(how, bad):
    # a warm start or partial_fit refused by a check wrote weights back, replaced the
    # network and reset records before the check ran; a refused refit forgot the last fit.
    # Reference: a twin estimator that never saw the refused call trains on identically
    from sklearn.base import clone
    X, y = _data()
    y = y.astype(float)
    est = MLPRegressor(hidden_layer_sizes=(6,), max_iter=4, random_state=0,
                       solver="lbfgs" if how == "lbfgs" else "adam",
                       early_stopping=how in ("fit", "warm_start"),
                       warm_start=how == "warm_start")
    twin = clone(est)

    def train(e):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return e.partial_fit(X, y) if how == "partial_fit" else e.fit(X, y)

    train(est), train(twin)
    before = {k: copy.deepcopy(v) for k, v in vars(est).items() if k.endswith("_")}
    params = est.model_.params.copy()
    if bad == "wrong width" and how in ("fit", "lbfgs"):
        pytest.skip("a fresh fit may change the width: nothing to refuse")
    nan = X.copy()
    nan[3, 1] = np.nan
    args = {"zero weights": (X, y, np.zeros(N)), "NaN in X": (nan, y, None),
            "negative weight": (X, y, np.r_[-1.0, np.ones(N - 1)]),
            "wrong width": (X[:, :2], y, None)}[bad]
    with pytest.raises(ValueError):
        if how == "partial_fit":
            est.partial_fit(*args[:2], sample_weight=args[2])
        else:
            est.fit(*args[:2], sample_weight=args[2])
    np.testing.assert_array_equal(est.model_.params, params)
    assert sorted(k for k in vars(est) if k.endswith("_")) == sorted(before)
    for k, v in before.items():
        if k != "model_":
            assert repr(vars(est)[k]) == repr(v), k
    train(est), train(twin)
    np.testing.assert_array_equal(est.model_.params, twin.model_.params)
    assert est.loss_curve_ == twin.loss_curve_


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
@pytest.mark.parametrize("warm_start", [False, True])
def test_a_fit_refused_by_the_runs_own_checks_leaves_the_estimator_as_it_was(solver,
                                                                            warm_start):
    # a negative Poisson target passes the estimator's checks and is refused by the run's
    # (the loss's range check in prepare_run); with lbfgs that check ran outside the
    # estimator's restore, so the refused fit left a new network and reset records
    from sklearn.base import clone
    X, _ = _data()
    y = np.exp(X[:, 0])
    est = MLPRegressor(loss="poisson", hidden_layer_sizes=(6,), max_iter=3, random_state=0,
                       solver=solver, warm_start=warm_start)
    twin = clone(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y), twin.fit(X, y)
    model, params = est.model_, est.model_.params.copy()
    curve = list(est.loss_curve_)
    with pytest.raises(ValueError, match="negative|>= 0|nonnegative|non-negative"):
        est.fit(X, y - 5.0)
    assert est.model_ is model
    np.testing.assert_array_equal(est.model_.params, params)
    assert est.loss_curve_ == curve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y), twin.fit(X, y)
    np.testing.assert_array_equal(est.model_.params, twin.model_.params)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("what", ["X", "y", "sample_weight", "X_val"])
def test_data_that_shares_memory_with_the_weights_is_refused_by_every_optimizer(optimizer,
                                                                             what):
    # L-BFGS trained on data that changed as the weights moved (SGD and Adam refused it in
    # the compiled epoch, with a message about the epochs' buffers).  (A sparse X is copied
    # by its conversion, fastnn.nn.sparse.as_csr)
    model = fastnn.MLP([6, 6, 6], activation="tanh", dtype=np.float64, seed=0)
    W0, W1, b0 = model.layers[0].W, model.layers[1].W, model.layers[0].b
    b0[...] = 1.0
    X, y, kwargs = np.eye(6), np.ones((6, 6)), {}
    if what == "X":
        X = W0
    elif what == "y":
        y = W1
    elif what == "sample_weight":
        kwargs["sample_weight"] = b0
    else:
        kwargs["validation_data"] = (W0, np.ones((6, 6)))
    opt = {"sgd": fastnn.SGD(lr=0.1), "adam": fastnn.Adam(),
           "lbfgs": fastnn.LBFGS(max_iter=3)}[optimizer]
    before = model.params.copy()
    with pytest.raises(ValueError, match="shares memory with the model's parameters"):
        fastnn.fit(model, X, y, "mse", opt,
                   **({} if optimizer == "lbfgs" else {"epochs": 2}), **kwargs)
    np.testing.assert_array_equal(model.params, before)


# bad validation data, and the message naming the argument at fault: every error about
# validation targets or weights names them y_val / sample_weight_val, as X_val is named
BAD_VALIDATION = {
    "NaN label": (lambda X, y: (X[:5], np.array([0, 1, np.nan, 1, 0])),
                  "y_val contains NaN or infinity"),
    "label out of range": (lambda X, y: (X[:5], np.array([0, 1, 7, 1, 0])),
                           r"y_val has class labels in \[0, 7\]"),
    "rows": (lambda X, y: (X[:5], y[:3]), "X_val has 5 samples but y_val has 3"),
    "probability rows": (lambda X, y: (X[:5], np.full((5, 2), 0.6)),
                         "row 0 of y_val sums to"),
    "negative weight": (lambda X, y: (X[:5], y[:5], -np.ones(5)),
                        "sample_weight_val has negative entries"),
    "NaN in X_val": (lambda X, y: (np.full((5, 3), np.nan), y[:5]), "X_val contains NaN"),
}
VALIDATING_CALLERS = {
    "fastnn.fit sgd": lambda m, X, y, val: fastnn.fit(m, X, y, "cross_entropy",
                                                     fastnn.SGD(lr=0.1), epochs=1,
                                                     validation_data=val),
    "MLP.fit adam": lambda m, X, y, val: m.fit(X, y, "cross_entropy", "adam", epochs=1,
                                              validation_data=val),
    "fastnn.fit lbfgs": lambda m, X, y, val: fastnn.fit(m, X, y, "cross_entropy",
                                                       fastnn.LBFGS(max_iter=3),
                                                       validation_data=val),
    "MLPEnsemble.fit": lambda m, X, y, val: fastnn.MLPEnsemble(
        [3, 5, 2], n_members=2, activation="tanh", dtype=np.float64, seed=0).fit(
        X, y, "cross_entropy", epochs=1, validation_data=val),
}


@pytest.mark.parametrize("caller", list(VALIDATING_CALLERS))
@pytest.mark.parametrize("case", list(BAD_VALIDATION))
def test_bad_validation_data_is_named_after_its_argument_by_every_caller(caller, case):
    X, y = _data()
    make, message = BAD_VALIDATION[case]
    model = _model()
    before = model.params.copy()
    with pytest.raises(ValueError, match=message):
        VALIDATING_CALLERS[caller](model, X, y, make(X, y))
    np.testing.assert_array_equal(model.params, before)
