"""A training run survives every way of continuing it.

The reference is the uninterrupted run itself: fit(3 epochs) followed by any way of going on
for 3 more must give the same bits as fit(6 epochs), for every schedule, every optimizer, with
and without shuffling.  Ways of continuing: a second fit with the same optimizer, a save and
``load(..., with_optimizer=True)``, a pickle; for the estimators, ``warm_start`` with
``continue_run=True`` (fastnn's extension: scikit-learn's warm start, the default, starts
a new optimizer) and ``partial_fit``.  What equals what for partial_fit: k calls on the
same data equal one fit with ``max_iter=k`` (each call is one epoch of the run), and a
pickle between calls changes nothing.
"""
import pickle
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import MLP, fit
from fastnn.optim.optimizers import SGD, Adam, Constant, Cosine, InverseScaling, ReduceOnPlateau, StepDecay
from fastnn.training.engine import epoch_order

SCHEDULES = {
    "constant": Constant,
    "step": lambda: StepDecay(step_size=2, gamma=0.5),
    "invscaling": lambda: InverseScaling(power=0.5),
    "cosine": lambda: Cosine(total_epochs=6, min_lr=0.001),
    # min_delta larger than any change: the rate halves after every epoch from the second
    "plateau": lambda: ReduceOnPlateau(factor=0.5, patience=1, min_delta=10.0),
}
OPTIMIZERS = {
    "sgd": lambda s: SGD(lr=0.2, schedule=s),
    "momentum": lambda s: SGD(lr=0.1, momentum=0.9, schedule=s),
    "nesterov": lambda s: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3,
                              schedule=s),
    "adam": lambda s: Adam(lr=0.02, schedule=s),
}


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1)
    return X, y


def _model():
    return MLP([4, 8, 3], activation="tanh", dtype=np.float64, seed=0)


def _fit(model, opt, epochs, shuffle):
    X, y = _data()
    return fit(model, X, y, "cross_entropy", opt, epochs=epochs, batch_size=16,
               shuffle=shuffle, seed=7)


def _again(model, opt, tmp_path, way):
    """The (model, optimizer) a user continues with after the first fit."""
    if way == "second-fit":
        return model, opt
    if way == "save-load":
        path = tmp_path / "run.npz"
        model.save(path, optimizer=opt)
        return fastnn.load(path, with_optimizer=True)
    if way == "pickle":
        return pickle.loads(pickle.dumps((model, opt)))
    raise AssertionError(way)


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "in-order"])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("way", ["second-fit", "save-load", "pickle"])
def test_three_plus_three_epochs_equal_six_bitwise(tmp_path, way, schedule, opt_name, shuffle):
    make = lambda: OPTIMIZERS[opt_name](SCHEDULES[schedule]())  # noqa: E731
    whole = _model()
    six = _fit(whole, make(), 6, shuffle)

    model, opt = _model(), make()
    _fit(model, opt, 3, shuffle)
    model, opt = _again(model, opt, tmp_path, way)
    assert opt.completed_epochs == 3
    rest = _fit(model, opt, 3, shuffle)

    assert model.params.tobytes() == whole.params.tobytes()
    assert rest.epoch == [4, 5, 6] and six.epoch == [1, 2, 3, 4, 5, 6]
    assert rest.lr == six.lr[3:] and rest.loss == six.loss[3:]
    assert opt.completed_epochs == 6
    # the case is not vacuous: the schedule changes the rate within the last three epochs
    assert (len(set(six.lr[2:])) > 1) == (schedule != "constant"), six.lr


def test_a_saved_and_loaded_schedule_resumes_at_the_uninterrupted_rates(tmp_path):
    # SGD(lr=0.5, StepDecay(2, 0.1)), 3 epochs, save, load, 3 more: the resumed epochs run at
    # 0.05, 0.005, 0.005 (epochs 4-6 of the schedule), not at 0.5, 0.5, 0.05
    X, y = _data()
    model, opt = _model(), SGD(lr=0.5, schedule=StepDecay(step_size=2, gamma=0.1))
    fit(model, X, y, "cross_entropy", opt, epochs=3, seed=0)
    model.save(tmp_path / "m.npz", optimizer=opt)
    model, opt = fastnn.load(tmp_path / "m.npz", with_optimizer=True)
    history = fit(model, X, y, "cross_entropy", opt, epochs=3, seed=0)
    assert history.lr == pytest.approx([0.5 * 0.1, 0.5 * 0.01, 0.5 * 0.01], rel=1e-15)


def test_reset_starts_the_run_afresh():
    X, y = _data()
    opt = SGD(lr=0.1, momentum=0.9, schedule=ReduceOnPlateau(factor=0.5, patience=1,
                                                               min_delta=10.0))
    first = _model()
    h1 = fit(first, X, y, "cross_entropy", opt, epochs=3, seed=1)
    opt.reset()
    assert opt.completed_epochs == 0 and opt.t == 0 and opt.state == (None, None)
    again = _model()
    h2 = fit(again, X, y, "cross_entropy", opt, epochs=3, seed=1)
    assert h2.epoch == [1, 2, 3] and h2.lr == h1.lr
    assert again.params.tobytes() == first.params.tobytes()


def test_the_sample_order_is_a_function_of_seed_and_epoch_index():
    # the order of epoch e + 1 depends on (seed, e) alone: the reference draws it the same way
    order = np.empty(10, np.intp)
    epoch_order(order, 7, 4)
    np.testing.assert_array_equal(order, np.random.default_rng([7, 4]).permutation(10))
    other = np.empty(10, np.intp)
    epoch_order(other, 7, 5)
    assert sorted(other) == list(range(10)) and not np.array_equal(order, other)


# keys around every 32-bit word boundary (SeedSequence splits an integer into 32-bit words,
# lowest first, and mixes words beyond its 4-word pool differently)
_KEYS = [0, 1, 7, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1, 2**64, 2**96 + 5, 2**127 + 3,
         2**128, 2**200 + 12345, 10**40]


@pytest.mark.parametrize("key", _KEYS)
def test_the_compiled_sample_order_is_numpys_permutation_bit_for_bit(key):
    # fastnn draws the order in C (fastnn._core._arrays.fill_permutation): NumPy's seeding,
    # PCG64 and shuffle; the independent reference is NumPy itself, over lengths that cross
    # the shuffle's mask sizes and epoch counts of one, two and three words
    rng = np.random.default_rng(key % 1000)
    for n in [0, 1, 2, 3, 4, 5, 17, 255, 256, 257, 1797, int(rng.integers(1, 70000))]:
        for epoch in [0, 1, 4, 2**32 - 1, 2**32, 2**70]:
            order = np.full(n, -1, np.intp)
            epoch_order(order, key, epoch)
            np.testing.assert_array_equal(
                order, np.random.default_rng([key, epoch]).permutation(n),
                err_msg=f"n={n}, key={key}, epoch={epoch}")


def test_the_compiled_permutation_takes_any_entropy_and_rejects_anything_but_integers():
    from fastnn.runtime.boundary import fill_permutation
    for entropy in [(5,), (0, 0), (1, 2, 3, 4, 5, 6, 7), (2**300, 3)]:
        order = np.empty(100, np.intp)
        fill_permutation(order, entropy)
        np.testing.assert_array_equal(
            order, np.random.default_rng(list(entropy)).permutation(100))
    order = np.empty(4, np.intp)
    with pytest.raises(ValueError, match="-1"):
        fill_permutation(order, (3, -1))
    for bad in [(1.5,), ("7",), (True,), (None,)]:
        with pytest.raises(TypeError, match="non-negative integers"):
            fill_permutation(order, bad)
    with pytest.raises(ValueError):        # a typed buffer: intp, contiguous, writeable
        fill_permutation(np.empty(4, np.int32), (1,))
    with pytest.raises(ValueError):
        fill_permutation(np.empty(8, np.intp)[::2], (1,))
    read_only = np.empty(4, np.intp)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        fill_permutation(read_only, (1,))


def test_early_stopping_record_continues_with_the_run(tmp_path):
    # validation targets opposite to the training ones: the first epoch is the best; with
    # patience 3 a continued fit stops at epoch 4 and restores epoch 1's weights
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    model = MLP([3, 1], dtype=np.float64, seed=0)
    opt, es = SGD(lr=0.05), fastnn.EarlyStopping(patience=3, restore_best_weights=False)
    h1 = fit(model, X, y, "mse", opt, epochs=2, seed=0, validation_data=(X, -y),
             early_stopping=es)
    assert not h1.stopped_early and es.best_epoch == 1 and es.wait == 1
    h2 = fit(model, X, y, "mse", opt, epochs=5, seed=0, validation_data=(X, -y),
             early_stopping=es)
    assert h2.epoch == [3, 4] and h2.stopped_early and es.best_epoch == 1
    # re-supplying the same setting (an equal instance, or the int patience) keeps the record
    opt2, model2 = SGD(lr=0.05), MLP([3, 1], dtype=np.float64, seed=0)
    fit(model2, X, y, "mse", opt2, epochs=2, seed=0, validation_data=(X, -y), early_stopping=3)
    h = fit(model2, X, y, "mse", opt2, epochs=5, seed=0, validation_data=(X, -y),
            early_stopping=3)
    assert h.epoch == [3, 4] and h.stopped_early and h.best_epoch == 1
    # the record survives a save and load with the optimizer, and a pickle
    opt3, model3 = SGD(lr=0.05), MLP([3, 1], dtype=np.float64, seed=0)
    fit(model3, X, y, "mse", opt3, epochs=2, seed=0, validation_data=(X, -y), early_stopping=3)
    model3.save(tmp_path / "run.npz", optimizer=opt3)
    for m, o in (fastnn.load(tmp_path / "run.npz", with_optimizer=True),
                 pickle.loads(pickle.dumps((model3, opt3)))):
        h = fit(m, X, y, "mse", o, epochs=5, seed=0, validation_data=(X, -y),
                early_stopping=3)
        assert h.epoch == [3, 4] and h.stopped_early and h.best_epoch == 1
    # another setting is another record: patience 4 counts from its own first epoch
    h = fit(model2, X, y, "mse", opt2, epochs=2, seed=0, validation_data=(X, -y),
            early_stopping=4)
    assert h.epoch == [5, 6] and not h.stopped_early and h.best_epoch == 5
    # optimizer.reset() forgets the record with the counters
    opt2.reset()
    h = fit(model2, X, y, "mse", opt2, epochs=2, seed=0, validation_data=(X, -y),
            early_stopping=4)
    assert h.epoch == [1, 2] and h.best_epoch == 1
    # a new run (fresh optimizer) starts a fresh record
    h3 = fit(MLP([3, 1], dtype=np.float64, seed=0), X, y, "mse", SGD(lr=0.05), epochs=2,
             seed=0, validation_data=(X, -y), early_stopping=es)
    assert h3.epoch == [1, 2] and es.best_epoch == 1 and es.wait == 1


@pytest.mark.parametrize("way", ["second-fit", "save-load", "pickle"])
def test_a_run_whose_fit_restored_the_best_weights_continues_from_where_it_stopped(tmp_path,
                                                                                  way):
    # restore_best_weights (the default) puts the best epoch's weights back at the end of
    # each fit; the run itself had reached other weights, and a fit that continues it must go
    # on from those, as fit(6) does (it used to go on from the restored ones)
    rng = np.random.default_rng(0)
    X, y = _data()
    Xv, yv = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    kw = dict(validation_data=(Xv, yv), batch_size=16, seed=3)
    whole = _model()
    six = fit(whole, X, y, "cross_entropy", Adam(lr=0.1), epochs=6,
              early_stopping=fastnn.EarlyStopping(patience=10), **kw)
    model, opt, es = _model(), Adam(lr=0.1), fastnn.EarlyStopping(patience=10)
    first = fit(model, X, y, "cross_entropy", opt, epochs=3, early_stopping=es, **kw)
    assert first.best_epoch < 3   # not vacuous: the fit ended by restoring older weights
    assert model.params.tobytes() == es._best_params.tobytes()   # as before: the best ones
    model, opt = _again(model, opt, tmp_path, way)
    es = opt._early_stopping if way != "second-fit" else es
    rest = fit(model, X, y, "cross_entropy", opt, epochs=3, early_stopping=es, **kw)
    assert first.loss + rest.loss == six.loss
    assert first.val_loss + rest.val_loss == six.val_loss
    assert rest.best_epoch == six.best_epoch
    assert model.params.tobytes() == whole.params.tobytes()


def test_weights_changed_after_a_restoring_fit_are_where_the_next_fit_starts():
    X, y = _data()
    rng = np.random.default_rng(0)
    Xv, yv = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    kw = dict(validation_data=(Xv, yv), seed=3)
    model, opt, es = _model(), Adam(lr=0.1), fastnn.EarlyStopping(patience=10)
    fit(model, X, y, "cross_entropy", opt, epochs=3, early_stopping=es, **kw)
    assert es._run_params is not None
    model.params = np.full_like(model.params, 0.01)          # the user's own weights
    twin, twin_opt = pickle.loads(pickle.dumps((model, opt)))
    twin_opt._early_stopping._run_params = None              # nothing to go back to
    h = fit(model, X, y, "cross_entropy", opt, epochs=2, early_stopping=es, **kw)
    h_twin = fit(twin, X, y, "cross_entropy", twin_opt, epochs=2,
                 early_stopping=twin_opt._early_stopping, **kw)
    assert h.loss == h_twin.loss and model.params.tobytes() == twin.params.tobytes()


# ---------------------------------------------------------------- the estimators

sklearn = pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastnn.interop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

ESTIMATOR_CASES = {
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "sgd-constant": dict(solver="sgd", momentum=0.0, learning_rate_init=0.1),
    "nesterov-invscaling": dict(solver="sgd", momentum=0.9, learning_rate="invscaling",
                                learning_rate_init=0.1, power_t=0.5),
    # tol larger than any change: the adaptive rate falls during the run
    "sgd-adaptive": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False,
                         learning_rate="adaptive", learning_rate_init=0.1, tol=10.0),
}


def _estimator(case, shuffle, **extra):
    # n_iter_no_change large: the run is never stopped early, so lengths are comparable
    return MLPClassifier((8,), random_state=0, shuffle=shuffle, batch_size=16,
                         n_iter_no_change=100, dtype="float64", **ESTIMATOR_CASES[case],
                         **extra)


def _quiet(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return call()


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "in-order"])
@pytest.mark.parametrize("case", list(ESTIMATOR_CASES))
def test_warm_start_three_plus_three_equals_six(case, shuffle):
    X, y = _data()
    six = _quiet(lambda: _estimator(case, shuffle, max_iter=6).fit(X, y))
    clf = _quiet(lambda: _estimator(case, shuffle, max_iter=3, warm_start=True,
                                    continue_run=True).fit(X, y))
    _quiet(lambda: clf.fit(X, y))
    assert clf.n_iter_ == 3  # n_iter_ counts this call's iterations, as in scikit-learn
    assert clf.model_.params.tobytes() == six.model_.params.tobytes()
    assert clf.loss_curve_ == six.loss_curve_


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "in-order"])
@pytest.mark.parametrize("case", list(ESTIMATOR_CASES))
def test_k_partial_fit_calls_equal_fit_with_max_iter_k_and_survive_a_pickle(case, shuffle):
    X, y = _data()
    six = _quiet(lambda: _estimator(case, shuffle, max_iter=6).fit(X, y))
    clf = _estimator(case, shuffle)
    for k in range(6):
        if k == 3:
            clf = pickle.loads(pickle.dumps(clf))
        clf.partial_fit(X, y, classes=np.unique(y))
    assert clf.n_iter_ == 1  # this call's iterations, as in scikit-learn
    assert clf.model_.params.tobytes() == six.model_.params.tobytes()
    assert clf.loss_curve_ == six.loss_curve_


def test_partial_fit_with_the_same_validation_data_keeps_the_early_stopping_record():
    # the validation targets are the negation of the training ones: the validation loss
    # worsens on every call, so with n_iter_no_change=2 the third call without improvement
    # (the fourth call) stops; re-supplying the same validation_data must not reset the count
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    reg = MLPRegressor(hidden_layer_sizes=(), solver="sgd", learning_rate_init=0.01, momentum=0.0,
                       early_stopping=True, n_iter_no_change=2, random_state=0,
                       dtype="float64")
    for _ in range(4):
        reg.partial_fit(X, y, validation_data=(X, -y))
    assert reg.stopped_early_ and len(reg.loss_curve_) == 4
    # another validation set is another record
    reg2 = MLPRegressor(hidden_layer_sizes=(), solver="sgd", learning_rate_init=0.01, momentum=0.0,
                        early_stopping=True, n_iter_no_change=2, random_state=0,
                        dtype="float64")
    for k in range(4):
        reg2.partial_fit(X, y, validation_data=(X + k, -y))
    assert not reg2.stopped_early_


@pytest.mark.parametrize("change", [
    lambda d, a: d["optimizer"]["early_stopping"]["record"].update(wait=-1),
    lambda d, a: d["optimizer"]["early_stopping"]["record"].update(best_value="high"),
    lambda d, a: d["optimizer"]["early_stopping"]["config"].update(patience=0),
    lambda d, a: a.pop("early_stopping_best_params"),
    lambda d, a: a.update(early_stopping_best_params=np.zeros(2)),
], ids=["negative-wait", "text-value", "bad-patience", "no-params", "short-params"])
def test_a_crafted_early_stopping_record_is_a_model_file_error(tmp_path, change):
    import json
    X, y = _data()
    model, opt = _model(), SGD(lr=0.05)
    fit(model, X, y, "cross_entropy", opt, epochs=2, seed=0, validation_split=0.2,
        early_stopping=3)
    path = tmp_path / "run.npz"
    model.save(path, optimizer=opt)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    description = json.loads(str(arrays["description"]))
    assert "early_stopping" in description["optimizer"]
    change(description, arrays)
    arrays["description"] = np.array(json.dumps(description))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(fastnn.io.saving.ModelFileError, match="run.npz"):
        fastnn.load(path, with_optimizer=True)


def test_warm_start_with_another_rate_starts_a_new_optimizer():
    X, y = _data()
    clf = _quiet(lambda: _estimator("adam", True, max_iter=3, warm_start=True,
                                    continue_run=True).fit(X, y))
    kept = clf._optimizer
    _quiet(lambda: clf.fit(X, y))
    assert clf._optimizer is kept and kept.completed_epochs == 6
    clf.set_params(learning_rate_init=0.001)
    _quiet(lambda: clf.fit(X, y))
    assert clf._optimizer is not kept and clf._optimizer.lr == 0.001
    assert clf._optimizer.completed_epochs == 3 and len(clf.loss_curve_) == 9


def test_a_run_with_dropout_continues_bitwise():
    # the dropout masks are a function of (the masks' seed, the epoch index, the step)
    X, y = _data()
    runs = []
    for parts in ((6,), (3, 3)):
        model = MLP([4, 8, 3], activation="tanh", dropout=0.3, dtype=np.float64, seed=0)
        opt = Adam(lr=0.02)
        for epochs in parts:
            fit(model, X, y, "cross_entropy", opt, epochs=epochs, batch_size=16, seed=7)
        runs.append(model.params.tobytes())
    assert runs[0] == runs[1]


@pytest.mark.parametrize("case", list(ESTIMATOR_CASES))
def test_warm_start_with_early_stopping_continues_split_record_and_weights(case):
    # early_stopping=True: the warm fit used to draw another validation split, start a new
    # stopping record and train on from the best weights the first fit restored
    X, y = _data()
    Xv = np.random.default_rng(5).standard_normal((30, 4))
    X = np.vstack([X, Xv])
    y = np.concatenate([y, np.random.default_rng(6).integers(0, 3, 30)])
    six = _quiet(lambda: _estimator(case, True, max_iter=6, early_stopping=True).fit(X, y))
    clf = _quiet(lambda: _estimator(case, True, max_iter=3, early_stopping=True,
                                    warm_start=True, continue_run=True).fit(X, y))
    _quiet(lambda: clf.fit(X, y))
    assert clf.loss_curve_ == six.loss_curve_
    assert clf.validation_loss_curve_ == six.validation_loss_curve_
    assert clf.best_validation_loss_ == six.best_validation_loss_
    assert clf.model_.params.tobytes() == six.model_.params.tobytes()


def test_partial_fit_with_early_stopping_needs_validation_data():
    # scikit-learn's partial_fit refuses early_stopping=True; fastnn's accepts it with
    # validation_data (the record continues over calls), and raises as scikit-learn without
    X, y = _data()
    clf = _estimator("adam", True, early_stopping=True)
    with pytest.raises(ValueError, match="validation_data"):
        clf.partial_fit(X, y, classes=np.unique(y))


def test_warm_start_with_other_validation_rows_starts_a_new_stopping_record():
    X, y = _data()
    # the record's best value is the monitored one: the validation loss here
    clf = _quiet(lambda: _estimator("adam", True, max_iter=3, early_stopping=True,
                                    early_stopping_monitor="loss", warm_start=True,
                                    continue_run=True).fit(X, y))
    clf.set_params(validation_fraction=0.3)   # other validation rows: not comparable
    _quiet(lambda: clf.fit(X, y))
    assert clf._best_value == min(clf.validation_loss_curve_[3:])
    # the same rows again: the record goes on
    clf2 = _quiet(lambda: _estimator("adam", True, max_iter=3, early_stopping=True,
                                     early_stopping_monitor="loss", warm_start=True,
                                     continue_run=True).fit(X, y))
    first_best = clf2._best_value
    _quiet(lambda: clf2.fit(X, y))
    assert clf2._best_value == min(first_best, *clf2.validation_loss_curve_[3:])


@pytest.mark.parametrize("kind", ["model", "ensemble"])
def test_ctrl_c_as_an_epoch_returns_records_that_epoch(monkeypatch, kind):
    # A Ctrl-C that lands just after a compiled epoch returned (before its record) left
    # the weights one epoch ahead of completed_epochs and the history, so a continued run
    # was not the uninterrupted one; now the epoch that ran is recorded on the way out.
    from fastnn.runtime import boundary
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = rng.integers(0, 2, 64)

    def build():
        if kind == "model":
            return fastnn.MLP([3, 5, 2], seed=0, dtype=np.float64)
        return fastnn.MLPEnsemble([3, 5, 2], n_members=2, seed=0, dtype=np.float64)

    def params(m):
        return [p.params.copy() for p in (m.members if kind == "ensemble" else [m])]

    reference = build()
    reference.fit(X, y, "cross_entropy", fastnn.SGD(lr=0.1, momentum=0.9), epochs=3)
    interrupted = build()
    optimizer = fastnn.SGD(lr=0.1, momentum=0.9)
    real_run, real_run_epochs = boundary.Epoch.run, boundary.run_epochs
    calls = []

    def run_then_interrupt(self):
        result = real_run(self)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return result

    def run_epochs_then_interrupt(epochs, n_threads):
        pending = real_run_epochs(epochs, n_threads)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return pending
    monkeypatch.setattr(boundary.Epoch, "run", run_then_interrupt)
    monkeypatch.setattr(boundary, "run_epochs", run_epochs_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(X, y, "cross_entropy", optimizer, epochs=3)
    optimizers = interrupted.optimizers_ if kind == "ensemble" else [optimizer]
    assert [o.completed_epochs for o in optimizers] == [1] * len(optimizers)
    interrupted.fit(X, y, "cross_entropy", None if kind == "ensemble" else optimizer,
                    epochs=2)
    for a, b in zip(params(interrupted), params(reference)):
        np.testing.assert_array_equal(a, b)
