"""The rule of fastnn/runtime/state.py, tested once over every kind of fit: a thread that saves,
loads and predicts while the fit runs in another thread gets a checkpoint that loads and
holds one epoch boundary, every time, and predictions that never raise.

Each kind of fit is a small class: ``build`` the object and fit it once (so that it can
predict), ``fit`` it again (the trainer thread repeats that until the reader has read
``READS`` times), ``read`` it (save or pickle, load, predict; check what one epoch boundary
means for it).  The reader and the trainer share the GIL: the switch interval is made tiny so
that the reader can land anywhere in the fit, not only where the trainer blocks.
"""
import math
import pickle
import sys
import threading

import numpy as np
import pytest
from scipy import sparse

import fastnn
from fastnn.runtime.state import StateLock, consistent, hold, let_readers_in
from fastnn.ensemble import MLPEnsemble, load_ensemble

# the estimators' short fits stop at max_iter on purpose
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

READS = 25          # reads per kind of fit, all during fits (the trainer fits until then)
N, BATCH = 192, 32  # rows, batch size: 6 steps per epoch
STEPS = math.ceil(N / BATCH)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.float64)
    return X, y


def _regression(seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 3))
    return X, np.sin(X[:, :1]) + 0.1 * rng.standard_normal((N, 1))


@pytest.fixture(autouse=True)
def _fine_switching():
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


class _Model:
    """fastnn.fit (MLP.fit) of one model; each checkpoint equals the uninterrupted run's
    weights after the checkpoint's epoch count, bit for bit."""

    epochs = 3

    def __init__(self, sparse_x=False):
        X, self.y = _data()
        self.X = sparse.csr_matrix(np.where(np.abs(X) > 0.7, X, 0.0)) if sparse_x else X
        self.saved = []

    def build(self):
        self.model = fastnn.MLP([4, 8, 1], seed=0)
        self.opt = fastnn.SGD(lr=0.05, momentum=0.9)
        self.fit()
        return self.model

    def fit(self):
        fastnn.fit(self.model, self.X, self.y, "bce", self.opt, epochs=self.epochs,
                   batch_size=BATCH, seed=3, n_threads=1)

    def read(self, path):
        self.model.save(path, optimizer=self.opt)
        model, opt = fastnn.load(path, with_optimizer=True)
        assert opt.t == opt.completed_epochs * STEPS, (opt.t, opt.completed_epochs)
        self.saved.append((opt.completed_epochs, model.params))
        for m in (self.model, model):
            assert np.isfinite(m.predict(self.X)).all()
            m.predict_proba(self.X[:3])
        if len(self.saved) % 8 == 0:
            fastnn.to_onnx(self.model)

    def finally_check(self):
        # the run's weights after each epoch, from one uninterrupted fit (a continued run
        # is bitwise the uninterrupted one): every checkpoint must be one of them
        trajectory = {}
        ref = fastnn.MLP([4, 8, 1], seed=0)
        fastnn.fit(ref, self.X, self.y, "bce", fastnn.SGD(lr=0.05, momentum=0.9),
                   epochs=max(e for e, _ in self.saved), batch_size=BATCH, seed=3,
                   n_threads=1, callbacks=[lambda e, logs: trajectory.__setitem__(
                       e, ref.get_flat_params())])
        mixed = [e for e, params in self.saved
                 if not np.array_equal(params, trajectory[e])]
        assert not mixed, f"checkpoints at epochs {mixed} hold weights of another epoch"


class _LBFGS:
    """fastnn.LBFGS: a checkpoint holds the start or an accepted iterate, never a trial
    point of the line search."""

    def build(self):
        self.X, self.y = _regression()
        self.model = fastnn.MLP([3, 16, 1], activation="tanh", dtype=np.float64, seed=0)
        self.iterates = [self.model.get_flat_params()]
        self.fit()
        return self.model

    def fit(self):
        self.model.init_params(seed=len(self.iterates))
        self.iterates.append(self.model.get_flat_params())
        fastnn.LBFGS(max_iter=15).fit(
            self.model, self.X, self.y, "mse",
            callback=lambda it, value: self.iterates.append(self.model.get_flat_params()))
        self.iterates.append(self.model.get_flat_params())

    def read(self, path):
        self.model.save(path)
        model = fastnn.load(path)
        self.saved = getattr(self, "saved", []) + [model.params]
        for m in (self.model, model):
            assert np.isfinite(m.predict(self.X)).all()

    def finally_check(self):
        seen = {p.tobytes() for p in self.iterates}
        trial = [k for k, p in enumerate(self.saved) if p.tobytes() not in seen]
        assert not trial, f"checkpoints {trial} hold a trial point, not an iterate"


class _Ensemble:
    """MLPEnsemble.fit: every member at the same epoch boundary, the members' output links
    the same (the loss changes between fits: learned Gaussian, then MSE)."""

    epochs = 2

    def __init__(self, n_threads=2, sparse_x=False, **fit_kwargs):
        self.n_threads, self.fit_kwargs = n_threads, fit_kwargs
        X, self.y = _regression()
        self.X = sparse.csr_matrix(np.where(np.abs(X) > 0.5, X, 0.0)) if sparse_x else X
        self.fits = 0

    def build(self):
        self.ens = MLPEnsemble([3, 8, 2], n_members=4, seed=0,
                               bootstrap=self.fit_kwargs.pop("bootstrap", False))
        self.fit()
        return self.ens

    def fit(self):
        self.fits += 1
        learned = self.fits % 2

        def targets(y):   # mean and log-variance per target, or both columns as targets
            return y if learned else np.hstack([y, y])

        kwargs = dict(self.fit_kwargs)
        if "validation_data" in kwargs:
            X_val, y_val = kwargs["validation_data"]
            kwargs["validation_data"] = (X_val, targets(y_val))
        self.ens.fit(self.X, targets(self.y),
                     fastnn.GaussianNLL("learned") if learned else "mse",
                     fastnn.SGD(lr=0.01), epochs=self.epochs, batch_size=BATCH,
                     n_threads=self.n_threads, **kwargs)

    def read(self, path):
        self.ens.save(path)
        ens = load_ensemble(path)
        epochs = {opt.completed_epochs for opt in ens.optimizers_}
        if not self.fit_kwargs:  # no early stopping: every member ran every round
            assert len(epochs) == 1, f"members at different epochs {epochs}"
        for opt in ens.optimizers_:
            assert opt.t == opt.completed_epochs * STEPS, (opt.t, opt.completed_epochs)
        for e in (self.ens, ens):
            assert np.isfinite(e.predict(self.X)).all()
            assert np.isfinite(e.predict_std(self.X)).all()
            e.predict_members(self.X[:3])


class _Estimator:
    """fastnn.interop.sklearn estimators: a pickle's records (loss curve, iteration and step counts)
    belong to the weights and optimizer it holds."""

    def __init__(self, make, method="fit", classifier=True):
        self.make, self.method, self.classifier = make, method, classifier

    def build(self):
        self.X, y = _data()
        self.y = np.where(y > 0, "yes", "no") if self.classifier else self.X[:, 0] ** 2
        self.est = self.make()
        self.fit()
        return self.est

    def fit(self):
        if self.method == "partial_fit":
            for _ in range(3):
                self.est.partial_fit(self.X, self.y, classes=["no", "yes"])
        else:
            self.est.fit(self.X, self.y)

    def read(self, path):
        est = pickle.loads(pickle.dumps(self.est))
        members = getattr(est, "estimators_", [est])
        for m in members:
            if m.solver != "lbfgs":
                assert len(m.loss_curve_) == m.n_iter_ or self.method == "partial_fit"
                opt = m._optimizer
                assert opt.t == opt.completed_epochs * STEPS, (opt.t, opt.completed_epochs)
                if self.method == "partial_fit":
                    assert len(m.loss_curve_) == opt.completed_epochs
            m.model_.save(path)
            fastnn.load(path)
        for e in (self.est, est):
            prediction = e.predict(self.X)
            assert prediction.shape[0] == N
            if self.classifier:
                assert np.isfinite(e.predict_proba(self.X)).all()


def _sk(name, **params):
    def make():
        import fastnn.interop.sklearn as fsk
        import fastnn.interop.sklearn_ensemble as fse
        kwargs = dict(hidden_layer_sizes=(8,), batch_size=BATCH, random_state=0,
                      n_iter_no_change=1000, tol=0.0)
        kwargs.update(params)
        if name == "EnsembleClassifier":
            return fse.EnsembleClassifier(fsk.MLPClassifier(max_iter=3, **kwargs),
                                          n_estimators=3, random_state=0, n_jobs=2)
        return getattr(fsk, name)(**kwargs)
    return make


KINDS = {
    "fit": lambda: _Model(),
    "fit-sparse": lambda: _Model(sparse_x=True),
    "lbfgs": lambda: _LBFGS(),
    "ensemble-lockstep-2-threads": lambda: _Ensemble(n_threads=2),
    "ensemble-1-thread": lambda: _Ensemble(n_threads=1),
    "ensemble-sparse": lambda: _Ensemble(sparse_x=True),
    "ensemble-bootstrap-early-stopping": lambda: _Ensemble(
        bootstrap=True, validation_data=_regression(seed=2), early_stopping=1),
    "MLPClassifier-adam": lambda: _Estimator(_sk("MLPClassifier", max_iter=3)),
    "MLPClassifier-partial_fit": lambda: _Estimator(_sk("MLPClassifier", solver="sgd"),
                                                    "partial_fit"),
    "MLPRegressor-early-stopping": lambda: _Estimator(
        _sk("MLPRegressor", max_iter=4, early_stopping=True, validation_fraction=0.25,
            n_iter_no_change=1, batch_size=24), classifier=False),
    "MLPRegressor-lbfgs": lambda: _Estimator(_sk("MLPRegressor", solver="lbfgs", max_iter=15),
                                             classifier=False),
    "EnsembleClassifier": lambda: _Estimator(_sk("EnsembleClassifier")),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_checkpoints_and_predictions_during_every_kind_of_fit(kind, tmp_path):
    case = KINDS[kind]()
    case.build()
    done, errors = threading.Event(), []

    def trainer():
        try:
            while not done.is_set():    # bounded: the reader stops after READS reads
                case.fit()
        except BaseException as exc:  # reported below, with the reader's failures
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=trainer)
    thread.start()
    failures, reads = [], 0
    try:
        while reads < READS and not done.is_set():
            reads += 1
            try:
                case.read(str(tmp_path / f"checkpoint-{reads % 2}.npz"))
            except Exception as exc:
                failures.append(f"read {reads}: {exc!r}")
    finally:
        done.set()
        thread.join()
    assert not errors, errors
    assert not failures, f"{len(failures)} of {reads} reads failed: {failures[:3]}"
    assert reads == READS   # all during fits
    if hasattr(case, "finally_check"):
        case.finally_check()


# ------------------------------------------------------------------ the mechanism itself

def test_consistent_takes_the_objects_lock_then_its_models_in_one_order():
    a, b = fastnn.MLP([2, 3, 1], seed=0), fastnn.MLP([2, 3, 1], seed=1)
    ens = MLPEnsemble.from_models([b, a])
    with consistent(ens):
        assert a._lock._is_owned() and b._lock._is_owned()
    assert not a._lock._is_owned() and not b._lock._is_owned()
    order = []
    real = StateLock.acquire

    def spy(self, *args):
        order.append(self.order)
        return real(self, *args)

    StateLock.acquire = spy
    try:
        with hold([b, a, b]):
            pass
    finally:
        StateLock.acquire = real
    assert order == sorted({a._lock.order, b._lock.order})


def test_a_reader_waits_for_one_epoch_at_most():
    # the trainer releases and takes the lock again at once; let_readers_in lets the reader
    # that waits have it before the next "epoch"
    model = fastnn.MLP([2, 3, 1], seed=0)
    got, epochs = threading.Event(), []
    waiting = threading.Event()

    def reader():
        waiting.set()
        with consistent(model):
            got.set()

    with hold([model]):
        thread = threading.Thread(target=reader)
        thread.start()
        waiting.wait()
        while model._lock._begun == 0:   # the reader is queued for the lock
            pass
    for epoch in range(3):
        let_readers_in([model])
        with hold([model]):
            epochs.append(got.is_set())
    thread.join()
    assert epochs == [True, True, True]


def test_a_callback_may_wait_for_a_thread_that_saves(tmp_path):
    # callbacks run outside the model's lock: waiting in one for a reader cannot deadlock
    X, y = _data()
    model = fastnn.MLP([4, 8, 1], seed=0)
    saved = []

    def callback(epoch, logs):
        thread = threading.Thread(target=lambda: saved.append(
            model.save(str(tmp_path / "m.npz")) or model.predict(X[:2])))
        thread.start()
        thread.join()

    fastnn.fit(model, X, y, "bce", epochs=2, callbacks=[callback])
    assert len(saved) == 2
