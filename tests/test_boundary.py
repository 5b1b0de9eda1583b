"""One compiled boundary: every public compute call keeps the promises of
fastnn.runtime.boundary, checked over every path from one table, ``CALLS``.

For each call of the table:

* **BLAS threads**: the same bits with scipy's OpenBLAS at 1 and at 2 threads around the
  call (``fastnn.threads.blas_threads``); the world's shapes are ones where OpenBLAS's
  products do change bits with its thread count (the control test below), so a path that
  skipped the hold would fail here;
* **fastnn's threads**: the same bits for 1 and 2 threads (the count every call without
  ``n_threads`` takes from its context, as fastnn.interop.sklearn_ensemble sets it);
* **flushing**: on a world whose weights make the call's float32 results subnormal, the
  result holds no subnormal (exact zeros, as the dense path gives) -- and with flushing
  turned off it does, which proves the input is one that makes subnormals.  Where no
  subnormal can reach a call's result, the table says why instead.

Then the table itself is checked: it covers every public method of ``MLP`` and
``MLPEnsemble`` that computes (introspection: a new method must be classified), every entry
of the boundary is reached by some call of it, and every entry checks its buffer sizes.
"""
import inspect
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pytest
import scipy.sparse as sp

import fastnn
from fastnn import threads
from fastnn.ensemble import MLPEnsemble
from fastnn.optim.lbfgs import LBFGSObjective
from fastnn.runtime import boundary

OPENBLAS = threads.get_num_threads() is not None
TINY = np.finfo(np.float32).tiny       # the smallest normal float32


# ------------------------------------------------------------------ the two worlds

class World:
    """The models and data the calls run on (attributes of the same names in both worlds).

    ``regular``: a 64-256-256 network on 64 rows of 64 features, shapes where OpenBLAS at 2
    threads gives other bits than at 1 (with its Haswell kernels; its SkylakeX kernels give
    the same bits at both).  ``crafted``: 2-2-2 networks with identity
    activations whose weights (5e-20) make the outputs, input derivatives and gradients
    subnormal in float32 (5e-39, 2.5e-39, ...), a softmax whose first probability is
    e^-100 and a learned-variance Gaussian whose sigma is e^-90.
    """

    def __init__(self, crafted):
        self.crafted = crafted
        if crafted:
            self._craft()
        else:
            self._regular()
        self.Xs = sp.csr_matrix(self.X)

    def _regular(self):
        rng = np.random.default_rng(0)
        n, d, h = 64, 64, 256
        self.n = n
        X = rng.standard_normal((n, d)).astype(np.float32)
        self.X = np.where(np.abs(X) > 0.5, X, 0).astype(np.float32)   # sparse-ish
        self.y_reg = rng.standard_normal((n, 2)).astype(np.float32)
        self.y_grad = self.y_reg
        self.y_clf = rng.integers(0, 3, n)
        self.y_gauss = rng.standard_normal((n, 1)).astype(np.float32)
        self.reg = fastnn.MLP([d, h, h, 2], seed=0)
        self.reg2 = fastnn.MLP([d, h, h, 2], seed=1)
        self.clf = fastnn.MLP([d, h, h, 3], seed=2, output="softmax")
        self.gauss = fastnn.MLP([d, h, h, 2], seed=3)
        self.lr = 0.01
        self.step_grads = rng.standard_normal(self.reg.n_params).astype(np.float32)
        self.step_lr = 0.1
        # a single layer and a loss
        self.lx = self.X
        self.lW = rng.standard_normal((d, h)).astype(np.float32) / 8
        self.lb = rng.standard_normal(h).astype(np.float32)
        self.lA = np.maximum(self.lx @ self.lW + self.lb, 0).astype(np.float32)
        self.ldA = rng.standard_normal((n, h)).astype(np.float32)
        self.lz = rng.standard_normal((n, 3)).astype(np.float32)
        self.ly = rng.standard_normal((n, 3)).astype(np.float32)
        self.lz_logit = self.lz
        self.lz_gauss = rng.standard_normal((n, 2)).astype(np.float32)
        self._finish()

    def _craft(self):
        n = 4
        self.n = n
        self.X = np.ones((n, 2), np.float32)
        self.y_reg = np.zeros((n, 2), np.float32)       # d loss / dz = z: subnormal
        self.y_grad = np.ones((n, 2), np.float32)       # d loss / dz ~ 1: dX = 2.5e-39
        self.y_clf = np.arange(n) % 3
        self.y_gauss = np.zeros((n, 1), np.float32)
        tiny_weights = (np.full((2, 2), 5e-20), np.zeros(2))
        self.reg = self._identity([tiny_weights, (5e-20 * np.eye(2), np.zeros(2))])
        # a second member whose outputs differ: the ensemble's spread is subnormal too
        self.reg2 = self._identity([tiny_weights, (1e-19 * np.eye(2), np.zeros(2))])
        self.clf = self._identity([tiny_weights, (np.zeros((2, 3)), [-100.0, 0.0, 0.0])],
                                  output="softmax")
        self.gauss = self._identity([tiny_weights, (np.zeros((2, 2)), [0.0, -180.0])])
        # SGD at lr=1 moves the last bias by the subnormal gradient; a step of 1e-19 times
        # gradients of 1e-20 moves every parameter by a subnormal
        self.lr = 1.0
        self.step_grads = np.full(self.reg.n_params, 1e-20, np.float32)
        self.step_lr = 1e-19
        self.lx = np.full((n, 2), 1e-19, np.float32)
        self.lW = np.full((2, 2), 5e-20, np.float32)          # X @ W = 1e-38
        self.lb = np.zeros(2, np.float32)
        self.lA = self.lx @ self.lW
        self.ldA = np.full((n, 2), 1e-20, np.float32)         # dW = 4e-39, dX = 1e-39
        self.lz = np.full((n, 3), 5e-39, np.float32)          # MSE: l = z^2, dl/dz ~ z
        self.ly = np.zeros((n, 3), np.float32)
        self.lz_logit = np.full((n, 3), -100.0, np.float32)   # sigmoid: e^-100
        self.lz_gauss = np.tile(np.float32([0.0, -180.0]), (n, 1))  # sigma = e^-90
        self._finish()

    @staticmethod
    def _identity(layers, output="auto"):
        sizes = [layers[0][0].shape[0]] + [W.shape[1] for W, _ in layers]
        model = fastnn.MLP(sizes, activation="identity", output=output, seed=0,
                           warn_symmetric=False)
        model.set_weights([np.asarray(W, np.float32) for W, _ in layers],
                          [np.asarray(b, np.float32) for _, b in layers])
        return model

    def _finish(self):
        self.reg.loss_ = "mse"
        self.reg2.loss_ = "mse"
        self.gauss.loss_ = fastnn.GaussianNLL("learned")
        self.ens_reg = MLPEnsemble.from_models([self.reg.copy(), self.reg2.copy()])
        self.ens_clf = MLPEnsemble.from_models([self.clf.copy(), self.clf.copy()])
        self.ens_gauss = MLPEnsemble.from_models([self.gauss.copy(), self.gauss.copy()])

    # -------------------------------------------------------------- estimators

    def estimator(self, kind, **params):
        """A fitted estimator of `kind` ("MLPRegressor"/"MLPClassifier") whose network is
        this world's (reg or clf), warm-started so that a further fit continues from it."""
        from fastnn.interop import sklearn as est
        model = self.clf if kind == "MLPClassifier" else self.reg
        hidden = tuple(model.layer_sizes[1:-1])
        defaults = dict(hidden_layer_sizes=hidden, activation="identity", max_iter=1,
                        batch_size=self.n, shuffle=False, random_state=0, warm_start=True,
                        alpha=0.0, momentum=0.0, learning_rate_init=self.lr, tol=0.0)
        defaults.update(params)
        e = getattr(est, kind)(**defaults)
        with _quiet():      # (one epoch: scikit-learn's ConvergenceWarning)
            e.fit(self.X, self.y_clf if kind == "MLPClassifier" else self.y_reg)
        e.model_.params[...] = model.params
        return e


@contextmanager
def _quiet():
    """Warnings off (short fits: convergence warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _copy(model):
    other = model.copy()
    other.loss_ = model.loss_
    return other


def _members(ens):
    return MLPEnsemble.from_models([_copy(m) for m in ens.members])


def _fit(w, X, optimizer=None, **kwargs):
    m = _copy(w.reg)
    opt = optimizer or fastnn.SGD(lr=w.lr)
    m.fit(X, w.y_reg, "mse", opt, epochs=1, batch_size=w.n, seed=0, shuffle=False,
          **kwargs)
    return m.params


def _fastnn_fit(w, X):
    m = _copy(w.reg)
    fastnn.fit(m, X, w.y_reg, "mse", fastnn.SGD(lr=w.lr), epochs=1, batch_size=w.n, seed=0,
               shuffle=False, validation_data=(X, w.y_reg))
    return m.params


def _loss_and_grad(w, X):
    m = _copy(w.reg)
    loss = m.loss_and_grad(X, w.y_reg, "mse")
    return loss, m.grads.copy()


def _objective(w, X):
    m = _copy(w.reg)
    return LBFGSObjective(m, X, w.y_reg, "mse")(m.params.astype(np.float64))


def _lbfgs(w, X):
    m = _copy(w.reg)
    with _quiet():
        fastnn.LBFGS(max_iter=3).fit(m, X, w.y_reg, "mse")
    return m.params


def _step(w):
    m = _copy(w.reg)
    m.grads[...] = w.step_grads
    fastnn.SGD(lr=w.step_lr).step(m)
    return m.params


def _ensemble_fit(w, X):
    e = _members(w.ens_reg)
    with _quiet():
        e.fit(X, w.y_reg, "mse", fastnn.SGD(lr=w.lr), epochs=1, batch_size=w.n,
              shuffle=False)
    return [m.params for m in e.members]


def _estimator_fit(w, kind, solver):
    e = w.estimator(kind, solver=solver)
    with _quiet():
        e.fit(w.X, w.y_clf if kind == "MLPClassifier" else w.y_reg)
    return e.model_.params


def _bagged(w, method):
    from fastnn.interop.sklearn import MLPRegressor
    from fastnn.interop.sklearn_ensemble import EnsembleRegressor
    e = EnsembleRegressor(MLPRegressor(hidden_layer_sizes=tuple(w.reg.layer_sizes[1:-1]),
                                       max_iter=2, batch_size=w.n, random_state=0),
                          n_estimators=2, bootstrap=True, random_state=0)
    with _quiet():
        e.fit(w.X, w.y_reg)
    if method == "fit":
        return [m.model_.params for m in e.estimators_]
    return e.predict(w.X)


# ------------------------------------------------------------------ the table

@dataclass
class Call:
    """One public compute call: `run(world)` returns what it computes.  `covers`: the public
    method it exercises; `no_subnormal`: why no subnormal can reach its result (None: the
    crafted world makes some, and the flushing check runs)."""
    name: str
    covers: str
    run: Callable
    no_subnormal: Optional[str] = None


SCORE = "accuracy or R^2 of O(1) quantities: a flushed subnormal cannot show (evaluate can)"
STOPS = ("L-BFGS stops at once on a subnormal gradient, leaving the weights as they were "
         "(its objective is checked)")
ADAM = "Adam's step divides the gradient by its own scale: never subnormal"
BAGGED = ("its members are MLPRegressors fitted by MLPEnsemble.fit's lockstep driver, both "
          "checked here")
INTERVAL = "mean +- 1.96 sigma with sigma = 1 at a subnormal log-variance"
PROBA = ("NumPy's float64 softmax of the compiled logits (MLP.forward, checked), kept at or "
         "above the smallest subnormal on purpose, so that log(predict_proba) is finite")


def _calls():
    calls = []
    for kind in ("dense", "sparse"):
        X = (lambda w: w.X) if kind == "dense" else (lambda w: w.Xs)
        calls += [
            Call(f"MLP.predict[{kind}]", "MLP.predict", lambda w, X=X: w.reg.predict(X(w))),
            Call(f"MLP.forward[{kind}]", "MLP.forward", lambda w, X=X: w.reg.forward(X(w))),
            Call(f"MLP.predict_proba[{kind}]", "MLP.predict_proba",
                 lambda w, X=X: w.clf.predict_proba(X(w))),
            Call(f"MLP.predict_std[{kind}]", "MLP.predict_std",
                 lambda w, X=X: w.gauss.predict_std(X(w))),
            Call(f"MLP.evaluate[{kind}]", "MLP.evaluate",
                 lambda w, X=X: w.reg.evaluate(X(w), w.y_reg, "mse")),
            Call(f"MLP.score[{kind}]", "MLP.score", lambda w, X=X: w.reg.score(X(w), w.y_reg),
                 SCORE),
            Call(f"MLP.loss_and_grad[{kind}]", "MLP.loss_and_grad",
                 lambda w, X=X: _loss_and_grad(w, X(w))),
            Call(f"MLP.fit[{kind}, sgd]", "MLP.fit", lambda w, X=X: _fit(w, X(w))),
            Call(f"MLP.fit[{kind}, adam, validation]", "MLP.fit",
                 lambda w, X=X: _fit(w, X(w), fastnn.Adam(lr=0.01), validation_split=0.25),
                 ADAM),
            Call(f"fastnn.fit[{kind}, validation_data]", "fastnn.fit",
                 lambda w, X=X: _fastnn_fit(w, X(w))),
            Call(f"LBFGSObjective[{kind}]", "LBFGSObjective.__call__",
                 lambda w, X=X: _objective(w, X(w))),
            Call(f"LBFGS.fit[{kind}]", "LBFGS.fit", lambda w, X=X: _lbfgs(w, X(w)), STOPS),
            Call(f"MLPEnsemble.predict[{kind}]", "MLPEnsemble.predict",
                 lambda w, X=X: w.ens_reg.predict(X(w))),
            Call(f"MLPEnsemble.predict_members[{kind}]", "MLPEnsemble.predict_members",
                 lambda w, X=X: w.ens_reg.predict_members(X(w))),
            Call(f"MLPEnsemble.predict_proba[{kind}]", "MLPEnsemble.predict_proba",
                 lambda w, X=X: w.ens_clf.predict_proba(X(w))),
            Call(f"MLPEnsemble.predict_distribution[{kind}]",
                 "MLPEnsemble.predict_distribution",
                 lambda w, X=X: tuple(w.ens_reg.predict_distribution(X(w)))),
            Call(f"MLPEnsemble.predict_std[{kind}]", "MLPEnsemble.predict_std",
                 lambda w, X=X: w.ens_reg.predict_std(X(w))),
            Call(f"MLPEnsemble.predict_interval[{kind}]", "MLPEnsemble.predict_interval",
                 lambda w, X=X: w.ens_gauss.predict_interval(X(w)), INTERVAL),
            Call(f"MLPEnsemble.fit[{kind}]", "MLPEnsemble.fit",
                 lambda w, X=X: _ensemble_fit(w, X(w))),
        ]
    # the input derivatives take a dense X only (a sparse one is a TypeError saying so)
    calls += [
        Call("MLP.jacobian", "MLP.jacobian", lambda w: w.reg.jacobian(w.X)),
        Call("MLP.input_gradient[loss]", "MLP.input_gradient",
             lambda w: w.reg.input_gradient(w.X, w.y_grad, "mse")),
        Call("MLP.input_gradient[output]", "MLP.input_gradient",
             lambda w: w.reg.input_gradient(w.X, output=1)),
        Call("MLPEnsemble.jacobian", "MLPEnsemble.jacobian",
             lambda w: w.ens_reg.jacobian(w.X, return_std=True)),
        Call("MLPEnsemble.input_gradient", "MLPEnsemble.input_gradient",
             lambda w: w.ens_reg.input_gradient(w.X, w.y_grad, "mse")),
        Call("Optimizer.step", "Optimizer.step", _step),
        Call("dense_forward", "fastnn.dense_forward",
             lambda w: fastnn.dense_forward(w.lx, w.lW, w.lb, "identity")),
        Call("dense_backward", "fastnn.dense_backward",
             lambda w: fastnn.dense_backward(w.lx, w.lW, w.lA, w.ldA, "identity")),
        Call("Loss.loss_and_grad", "Loss.loss_and_grad",
             lambda w: fastnn.MSE().loss_and_grad(w.lz, w.ly)),
        Call("Loss.__call__", "Loss.__call__", lambda w: fastnn.MSE()(w.lz, w.ly)),
        Call("Loss.output", "Loss.output",
             lambda w: fastnn.BinaryCrossEntropy().output(w.lz_logit)),
        Call("GaussianNLL.predict_std", "GaussianNLL.predict_std",
             lambda w: fastnn.GaussianNLL("learned").predict_std(w.lz_gauss)),
    ]
    for solver in ("sgd", "adam", "lbfgs"):
        calls.append(Call(f"MLPRegressor.fit[{solver}]", "MLPRegressor.fit",
                          lambda w, s=solver: _estimator_fit(w, "MLPRegressor", s),
                          {"sgd": None, "adam": ADAM, "lbfgs": STOPS}[solver]))
    calls += [
        Call("MLPClassifier.fit[sgd]", "MLPClassifier.fit",
             lambda w: _estimator_fit(w, "MLPClassifier", "sgd"),
             "the classes' softmax gradients are O(1)"),
        Call("MLPRegressor.predict", "MLPRegressor.predict",
             lambda w: w.estimator("MLPRegressor").predict(w.X)),
        Call("MLPClassifier.predict_proba", "MLPClassifier.predict_proba",
             lambda w: w.estimator("MLPClassifier").predict_proba(w.X), PROBA),
        Call("EnsembleRegressor.fit", "EnsembleRegressor.fit", lambda w: _bagged(w, "fit"),
             BAGGED),
        Call("EnsembleRegressor.predict", "EnsembleRegressor.predict",
             lambda w: _bagged(w, "predict"), BAGGED),
    ]
    return calls


CALLS = _calls()
IDS = [c.name for c in CALLS]
ESTIMATORS = [c for c in CALLS if "Regressor" in c.name or "Classifier" in c.name]

#: public methods of MLP and MLPEnsemble that run no compiled arithmetic
NOT_COMPUTING = {
    "MLPEnsemble.member_fit_seeds": "draws seeds with NumPy",
    "MLP.astype": "copies the parameters in another dtype",
    "MLP.copy": "copies the parameters",
    "MLP.from_layers": "builds a network",
    "MLP.from_torch": "copies a module's weights",
    "MLP.get_flat_params": "copies the parameters",
    "MLP.get_params": "copies the parameters",
    "MLP.init_params": "NumPy's initializers",
    "MLP.prepare_data": "validation and conversion",
    "MLP.prepare_targets": "validation and conversion",
    "MLP.save": "writes a file",
    "MLP.save_onnx": "writes a file",
    "MLP.set_flat_params": "copies into the parameters",
    "MLP.set_params": "copies into the parameters",
    "MLP.set_weights": "copies into the parameters",
    "MLP.summary": "text",
    "MLP.to_torch": "copies the weights into a module",
    "MLPEnsemble.bootstrap_indices": "NumPy's generator",
    "MLPEnsemble.from_models": "builds an ensemble",
    "MLPEnsemble.save": "writes a file",
}


def _bits(result):
    """Every array (or number) of a call's result as bytes, in order."""
    if isinstance(result, (tuple, list)):
        return [b for part in result for b in _bits(part)]
    if result is None:
        return [b"None"]
    return [np.asarray(result).tobytes()]


def _subnormals(result):
    """How many values of a call's result are non-zero but below float32's smallest normal
    (a float32 subnormal, also when the result was widened to float64)."""
    if isinstance(result, (tuple, list)):
        return sum(_subnormals(part) for part in result)
    if result is None:
        return 0
    a = np.abs(np.asarray(result, dtype=np.float64))
    return int(np.count_nonzero((a > 0) & (a < TINY)))


@contextmanager
def _fastnn_threads(n):
    """fastnn's thread count n for the calls in the block that take none (the context's
    count, as fastnn.interop.sklearn_ensemble sets it for its members' fits)."""
    token = threads._default_threads.set(n)
    try:
        yield
    finally:
        threads._default_threads.reset(token)


# ------------------------------------------------------------------ the three promises

@pytest.mark.skipif(not OPENBLAS, reason="scipy's BLAS is not an OpenBLAS fastnn controls")
@pytest.mark.parametrize("call", CALLS, ids=IDS)
def test_bits_do_not_depend_on_the_blas_thread_count(call):
    results = []
    for n in (1, 2):
        with threads.blas_threads(n):
            results.append(_bits(call.run(World(crafted=False))))
    assert results[0] == results[1], f"{call.name}: OpenBLAS at 2 threads changed the bits"


@pytest.mark.parametrize("call", CALLS, ids=IDS)
def test_bits_do_not_depend_on_fastnns_thread_count(call):
    results = []
    for n in (1, 2):
        with _fastnn_threads(n):
            results.append(_bits(call.run(World(crafted=False))))
    assert results[0] == results[1], f"{call.name}: n_threads=2 changed the bits"


@pytest.mark.skipif(not fastnn.fpmode.supported(), reason="no flush-to-zero on this CPU")
@pytest.mark.parametrize("call", [c for c in CALLS if c.no_subnormal is None],
                         ids=[c.name for c in CALLS if c.no_subnormal is None])
def test_subnormal_results_are_flushed(call):
    with fastnn.fpmode.flush_denormals(False):
        kept = _subnormals(call.run(World(crafted=True)))
    assert kept > 0, f"{call.name}: the crafted world gives no subnormal to flush"
    with fastnn.fpmode.flush_denormals(True):
        flushed = _subnormals(call.run(World(crafted=True)))
    assert flushed == 0, f"{call.name}: {flushed} subnormal values were not flushed"
    # and the process-wide default is to flush
    assert fastnn.get_flush_denormals() is True
    assert _subnormals(call.run(World(crafted=True))) == 0


# ------------------------------------------------------------------ the table is complete

def _public_methods(cls):
    return {f"{cls.__name__}.{name}" for name, value in inspect.getmembers(cls)
            if not name.startswith("_") and callable(value)}


def test_the_table_covers_every_computing_method_of_the_model_and_the_ensemble():
    covered = {c.covers for c in CALLS}
    for cls in (fastnn.MLP, MLPEnsemble):
        public = _public_methods(cls)
        unclassified = public - covered - set(NOT_COMPUTING)
        assert not unclassified, ("public methods neither in CALLS nor in NOT_COMPUTING: "
                                  f"{sorted(unclassified)}")
        both = public & covered & set(NOT_COMPUTING)
        assert not both, f"in CALLS and NOT_COMPUTING: {sorted(both)}"
    stale = set(NOT_COMPUTING) - _public_methods(fastnn.MLP) - _public_methods(MLPEnsemble)
    assert not stale, f"NOT_COMPUTING names methods that no longer exist: {sorted(stale)}"


def test_every_entry_of_the_boundary_is_reached_and_every_call_reaches_one(monkeypatch):
    """Run the table with every boundary entry recording its calls: each entry is reached
    (the table enumerates every kind of compiled call) and each call of the table reaches
    the compiled code through the boundary (it is a compute call)."""
    reached, current = {}, [None]

    def spy(name, fn):
        def wrapper(*args, **kwargs):
            reached.setdefault(name, set()).add(current[0])
            return fn(*args, **kwargs)
        return wrapper

    names = set(boundary.ENTRIES) | {"epoch_config", "prepare_epoch", "run_epochs"}
    for name in names:
        monkeypatch.setattr(boundary, name, spy(name, getattr(boundary, name)))
    monkeypatch.setattr(boundary.Epoch, "run", spy("Epoch.run", boundary.Epoch.run))
    for call in CALLS:
        current[0] = call.name
        call.run(World(crafted=False))
    unreached = (names | {"Epoch.run"}) - set(reached)
    assert not unreached, f"boundary entries no call of the table reaches: {sorted(unreached)}"
    # one door for both row sources: the sparse fits prepare their epochs there too
    assert {c for c in reached["prepare_epoch"] if "[sparse" in c} >= \
        {c for c in IDS if c.startswith(("MLP.fit[sparse", "fastnn.fit[sparse"))}
    through = set().union(*reached.values())
    assert through == set(IDS), f"calls that reach no entry: {sorted(set(IDS) - through)}"


def _openblas_threads_change_sgemm_bits():
    """Whether scipy's sgemm itself, on the regular world's products (column-major M = 256
    outputs, N = 64 rows, K = 64 or 256), gives other bits at 2 threads than at 1: a property
    of the OpenBLAS kernel chosen for the CPU, not of fastnn."""
    from scipy.linalg import blas as sblas
    rng = np.random.default_rng(0)
    for k in (64, 256):
        A = np.asfortranarray(rng.standard_normal((256, k)).astype(np.float32))
        B = np.asfortranarray(rng.standard_normal((k, 64)).astype(np.float32))
        with threads.blas_threads(1):
            one = sblas.sgemm(1.0, A, B)
        with threads.blas_threads(2):
            two = sblas.sgemm(1.0, A, B)
        if not np.array_equal(one, two):
            return True
    return False


def test_the_world_is_one_where_openblas_threads_change_bits():
    """The control of the BLAS check: the compiled kernels called without the boundary, so
    without its hold of OpenBLAS, give other bits at 2 BLAS threads than at 1 on the
    regular world's shapes (so a path that skipped the hold would fail the check above).
    Prediction is the exception: its products are fastnn's fixed-order ones
    (src_c/fastnn_gemm.h), which call no BLAS, so even unheld its bits do not move.  So may
    training's products be (_network._product_kernel chooses fastnn's own kernels for many
    shapes): the control of loss_grad forces its large products onto OpenBLAS.  Whether
    OpenBLAS's threads change bits at all depends on the kernels it picks for the CPU, so the
    control first asks scipy's sgemm itself, and is skipped where they do not."""
    if not OPENBLAS:
        pytest.skip("scipy's BLAS is not an OpenBLAS fastnn controls")
    from fastnn._core import _network, _sensitivity, _tiling
    w = World(crafted=False)
    m = w.reg

    def loss_grad():
        grads = np.empty(m.n_params, np.float32)
        old = _tiling._set_product_kernel("blas")
        try:
            _network.loss_grad_into(m._spec, m.params, grads, w.X, 0, 0, 1.0, w.y_reg, None,
                                    None, None, 1.0, True, n_threads=1)
        finally:
            _tiling._set_product_kernel(old)
        return grads

    def jacobian():
        out = np.empty((w.n, 2, w.X.shape[1]), np.float32)
        _sensitivity.jacobian_into(m._spec, m.params, w.X, 1, 0, 0, 2, out, 2048)
        return out

    def forward():
        out = np.empty((w.n, 2), np.float32)
        _network.forward_into(m._spec, m.params, w.X, out, 0, 1024, True, 1)
        return out

    if not _openblas_threads_change_sgemm_bits():
        pytest.skip("scipy's OpenBLAS gives the same bits at 1 and 2 threads on the regular "
                    "world's products with the kernels it picks for this CPU (its SkylakeX "
                    "kernels on a Zen 4 do; its Haswell kernels do not): a path that skipped "
                    "the hold cannot be told apart here")
    for kernel in (loss_grad, jacobian, forward):
        with threads.blas_threads(1):
            one = kernel()
        with threads.blas_threads(2):
            two = kernel()
        if kernel is forward:
            assert np.array_equal(one, two)
        else:
            assert not np.array_equal(one, two), kernel.__name__


# ------------------------------------------------------------------ sizes are checked

def _size_cases(epoch_kwargs):
    """{entry name: (a call with one buffer of the wrong size, what the error names)}."""
    from fastnn.nn.sparse import as_csr
    m = fastnn.MLP([4, 8, 3], seed=0)
    spec, params, grads = m._spec, m.params, m.grads
    X = np.ones((5, 4), np.float32)
    csr = as_csr(sp.csr_matrix(X), "X", m.dtype, 4)
    labels = np.zeros(5, np.intp)
    short = np.zeros(7, np.float32)
    f32 = np.float32
    return {
        "net_forward": (lambda: boundary.net_forward(spec, params, X, np.empty((5, 2), f32),
                                                     0, 1024), "out has shape (5, 2)"),
        "net_loss_grad": (lambda: boundary.net_loss_grad(spec, params, short, X, 4, 0, 1.0,
                                                         None, labels, None, None, 1.0),
                          "grads has 7 entries"),
        "csr_forward": (lambda: boundary.csr_forward(spec, params, csr.data, csr.indices,
                                                     csr.indptr, np.empty((5, 2), f32), 0,
                                                     False, 1024), "out has shape (5, 2)"),
        "csr_loss_grad": (lambda: boundary.csr_loss_grad(spec, params, short, csr.data,
                                                         csr.indices, csr.indptr, 4, 4, 0,
                                                         1.0, None, labels, None, None, 1.0),
                          "grads has 7 entries"),
        "input_loss_grad": (lambda: boundary.input_loss_grad(
            spec, params, X, 4, 0, 1.0, None, labels, None, None, 1.0,
            np.empty((5, 3), f32), 256), "out has shape (5, 3)"),
        "input_jacobian": (lambda: boundary.input_jacobian(
            spec, params, X, 1, 0, 0, 3, np.empty((5, 3, 2), f32), 2048),
            "out has shape (5, 3, 2)"),
        "layer_forward": (lambda: boundary.layer_forward(X, np.ones((4, 5), f32),
                                                         np.ones(2, f32),
                                                         np.empty((5, 5), f32), 0, 0.0),
                          "b has shape (2,)"),
        "layer_backward": (lambda: boundary.layer_backward(
            X, np.ones((4, 5), f32), np.ones((5, 5), f32), np.ones((5, 5), f32),
            np.empty((5, 5), f32), np.empty((1, 1), f32), np.empty(5, f32),
            np.empty((5, 4), f32), 0, 0.0), "dW has shape"),
        "loss_grad": (lambda: boundary.loss_grad(0, 0, 1.0, np.ones((5, 3), f32),
                                                 np.ones((5, 3), f32), None, None, None, 1.0,
                                                 np.empty((5, 2), f32)),
                      "G has shape (5, 2)"),
        # (in place on its one buffer: nothing to mis-size, its code is checked)
        "loss_output": (lambda: boundary.loss_output(11, np.ones((5, 3), f32)),
                        "loss code 11"),
        "update_params": (lambda: boundary.update_params(spec, short, grads, None, None,
                                                         boundary.OPT_SGD, 0.1, 0, 0, 0, 0,
                                                         0, 0, 0, 1), "params has 7 entries"),
        "epoch_config": (lambda: boundary.epoch_config(spec, 0, False, 4, 0, 1.0, short,
                                                       short, short), "batch_size=0"),
        "prepare_epoch": (lambda: boundary.prepare_epoch(**epoch_kwargs(
            m, X, labels, 4, acts=np.empty(3, f32))), "the workspace acts has 3 entries"),
        # a CSR row source is checked as the dense one, before any step
        "prepare_epoch (CSR)": (lambda: boundary.prepare_epoch(**epoch_kwargs(
            m, None, labels, 4, X_batch=None, grads=short,
            csr=(csr.data, csr.indices, csr.indptr, 4))), "grads has 7 entries"),
    }


def test_every_entry_checks_its_buffer_sizes(epoch_kwargs):
    cases = _size_cases(epoch_kwargs)
    # (net_predict_rows declines what does not fit rather than raising: the next test)
    assert {name.split(" ")[0] for name in cases} | {"net_predict_rows"} == \
        set(boundary.ENTRIES) | {"epoch_config", "prepare_epoch"}
    for name, (bad_call, fragment) in cases.items():
        with pytest.raises(ValueError) as raised:
            bad_call()
        assert fragment in str(raised.value), (name, str(raised.value))


def test_the_one_call_prediction_declines_what_does_not_fit():
    """net_predict_rows returns None (MLP.predict then validates and raises its error) for
    any buffer of another size, dtype, layout or type, a non-finite X, or more FLOPs than
    asked; it computes only for exactly fitting buffers."""
    m = fastnn.MLP([4, 8, 3], seed=0)
    spec, params = m._spec, m.params
    X = np.ones((5, 4), np.float32)
    ok = boundary.net_predict_rows(spec, params, X, 0, 1024)
    assert ok.shape == (5, 3) and ok.dtype == np.float32
    declined = {
        "short params": (np.zeros(7, np.float32), X),
        "float64 params": (params.astype(np.float64), X),
        "2-D params": (params[None, :], X),
        "wide X": (params, np.ones((5, 5), np.float32)),
        "float64 X": (params, X.astype(np.float64)),
        "1-D X": (params, X[0]),
        "0 rows": (params, X[:0]),
        "strided X": (params, np.ones((5, 8), np.float32)[:, ::2]),
        "Fortran X": (params, np.asfortranarray(np.ones((5, 4), np.float32) + np.eye(5, 4,
                                                                               dtype=np.float32))),
        "list X": (params, X.tolist()),
        "NaN in X": (params, np.where(np.eye(5, 4) > 0, np.nan, 1).astype(np.float32)),
        "inf in X": (params, np.where(np.eye(5, 4) > 0, np.inf, 1).astype(np.float32)),
    }
    for name, (p, x) in declined.items():
        assert boundary.net_predict_rows(spec, p, x, 0, 1024) is None, name
    # a NaN in the second chunk: None, although the first chunk was computed
    later = np.ones((5, 4), np.float32)
    later[4, 0] = np.nan
    assert boundary.net_predict_rows(spec, params, later, 0, 2) is None
    with pytest.raises(ValueError, match="loss code 11"):
        boundary.net_predict_rows(spec, params, X, 11, 1024)


def test_the_boundary_resolves_the_mode_and_count_of_its_caller():
    """An entry called without flush_denormals and n_threads takes this thread's setting and
    this context's count; given, they are checked like the public arguments."""
    w = World(crafted=True)
    m = w.reg
    out = np.empty((w.n, 2), np.float32)
    with fastnn.fpmode.flush_denormals(False):
        boundary.net_forward(m._spec, m.params, w.X, out, 0, 1024)
    assert _subnormals(out) == out.size
    boundary.net_forward(m._spec, m.params, w.X, out, 0, 1024, flush_denormals=False)
    assert _subnormals(out) == out.size
    boundary.net_forward(m._spec, m.params, w.X, out, 0, 1024)
    assert _subnormals(out) == 0 and not out.any()
    with pytest.raises(ValueError, match="n_threads=0"):
        boundary.net_forward(m._spec, m.params, w.X, out, 0, 1024, n_threads=0)
    with pytest.raises(TypeError, match="flush_denormals"):
        boundary.net_forward(m._spec, m.params, w.X, out, 0, 1024, flush_denormals=2)
