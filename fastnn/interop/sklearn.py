"""scikit-learn estimators over fastnn: ``MLPClassifier`` and ``MLPRegressor``.

They follow scikit-learn's estimator conventions (the constructor stores parameters only; fit,
partial_fit, predict, score, get_params/set_params, clone, pickling, Pipeline, GridSearchCV)
and take the parameters of ``sklearn.neural_network.MLPClassifier``/``MLPRegressor`` where the
meaning is the same, so most code switches by changing the import.  The training itself is
fastnn's: ``fastnn.fit`` over a ``fastnn.MLP``, whole epochs in compiled code.  This module
needs scikit-learn and is imported only when asked for (``import fastnn.interop.sklearn``).

How scikit-learn's parameters map onto fastnn
---------------------------------------------
=========================  =================================================================
scikit-learn               fastnn
=========================  =================================================================
``solver="lbfgs"``         ``fastnn.LBFGS(max_iter, max_fun, tol, weight_decay=alpha /
                           sum of sample weights)``: scipy's L-BFGS-B over the compiled
                           full-batch loss and gradient; scikit-learn's objective and
                           initialisation, so the same random_state gives the same weights
``solver="sgd"``           ``fastnn.SGD(lr=learning_rate_init, momentum, nesterov)``
``solver="adam"``          ``fastnn.Adam(lr=learning_rate_init, beta1=beta_1, beta2=beta_2,
                           eps=epsilon)`` (bias-corrected as in PyTorch; scikit-learn folds
                           the correction into the step size: the same update up to where
                           epsilon enters)
``solver="adamw"``         fastnn's extension (scikit-learn has no such solver):
                           ``fastnn.AdamW`` with the settings of "adam" and
                           ``weight_decay=alpha``, the decoupled decay coefficient of
                           ``torch.optim.AdamW`` (each step multiplies the weights by ``1 -
                           learning_rate_init * alpha``; PyTorch's default is 1e-2)
``alpha``                  ``weight_decay = alpha / (batch_size * mean sample weight)`` on
                           weights, not biases.  scikit-learn adds ``0.5 alpha ||W||^2`` per
                           batch and divides the batch's gradient by its weight sum; fastnn
                           adds ``weight_decay * W`` to the gradient of the batch-mean loss.
                           They agree exactly for full or unweighted batches of the nominal
                           size (a last, smaller batch is decayed a little less here).
                           With solver="adamw", alpha is AdamW's own coefficient (above), not
                           an L2 term, and ``loss_curve_`` holds the data loss alone.
``learning_rate``          "constant" -> ``Constant``; "invscaling" -> ``InverseScaling
                           (power_t)``; "adaptive" -> ``ReduceOnPlateau(factor=0.2,
                           patience=2, min_delta=tol)``.  Used with solver="sgd" only, as in
                           scikit-learn.  Differences: invscaling counts t in epochs (``lr /
                           (epoch + 1) ** power_t``) where scikit-learn counts samples seen,
                           so the rate decays far more slowly here; "adaptive" divides the
                           rate by 5 after two epochs without an improvement larger than tol
                           (as scikit-learn documents it) and stopping follows
                           n_iter_no_change as for the other rates.
``batch_size="auto"``      ``min(200, n_samples)``
``loss_curve_``            sgd/adam: scikit-learn's value, the weighted mean data loss per
                           epoch plus ``0.5 * weight_decay * ||W||^2`` (squared error as a
                           mean over outputs).  lbfgs: the objective after each iteration,
                           whose squared error is ``0.5 * sum over outputs`` (the gradient
                           scikit-learn uses; its reported value is n_outputs times smaller).
``n_iter_no_change``       training (or, with early_stopping, the monitored validation
                           value) stops after ``n_iter_no_change + 1`` consecutive epochs
                           without an improvement larger than ``tol``, as in scikit-learn
``early_stopping``         scikit-learn's split (``train_test_split`` drawn from the same
                           RandomState right after the initial weights, stratified for a
                           binary target only, as scikit-learn does), score (accuracy or
                           R^2 of predict) and best-weights restore: the same rows held out
                           and, where the training is the same, the same ``n_iter_`` and
                           ``validation_scores_`` (tests/test_sklearn_parity.py)
``warm_start``             as in scikit-learn: a new optimizer, the stopping record kept;
                           ``continue_run=True`` (fastnn's extension) continues the run
=========================  =================================================================

What scikit-learn's MLP lacks and these have
--------------------------------------------
* ``class_weight`` (a dict or "balanced"), multiplied into ``sample_weight``.
* Early stopping can monitor the **validation loss** (``early_stopping_monitor="loss"``;
  the default "score" monitors accuracy / R^2 as scikit-learn does), with
  ``validation_loss_curve_`` beside ``validation_scores_``; the best weights are restored.
* ``continue_run=True``: a warm_start fit continues the run (the optimizer's moments,
  schedule and sample order; with early stopping the run's split and stopping record), so
  fit(max_iter=3) twice trains as fit(max_iter=6); partial_fit always continues it.
* Early stopping with ``partial_fit`` (scikit-learn raises): the validation set is
  ``validation_data`` passed to a partial_fit call and kept by later calls.  Each call is one
  epoch; after ``n_iter_no_change + 1`` calls without improvement the best weights are
  restored, ``stopped_early_`` becomes True, and later calls leave the model as it is (with a
  warning) until ``fit`` or ``set_params(early_stopping=False)``.
* ``dtype``: by default (None) the computation runs in X's dtype when it is float32 or
  float64 and in float64 otherwise, as scikit-learn does, and predictions come in that
  dtype.  An explicit dtype forces the precision (float32: half the memory and memory
  traffic, twice the SIMD width); predictions are then float64.
* ``init`` (one fastnn.nn.init initializer or one per layer) and per-layer ``activation``.
* ``MLPRegressor(loss="gaussian_nll")``: the network predicts a mean and a variance per target
  (``fastnn.GaussianNLL(sigma="learned")``); ``predict(X, return_std=True)`` returns both.
* The fitted network is ``model_``, a ``fastnn.MLP``: ``clf.model_.save("model.npz")``.

Sparse input (scipy.sparse CSR/CSC, matrices or arrays): every solver (sgd, adam: the compiled
sparse minibatch loop; lbfgs) and every prediction method keep it sparse (fastnn.nn.sparse: the
first layer's products over the stored entries), so memory stays O(nnz).  A CSC X is converted
to CSR once per fit call.
"""
import copy
import hashlib
import numbers
import warnings
from contextlib import contextmanager

import numpy as np
from scipy import sparse
from scipy.special import expit, log_softmax, softmax

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"fastnn.interop.sklearn needs scikit-learn >= 1.6 ({exc}); install it with "
                      "pip install scikit-learn") from exc

from fastnn.runtime.state import consistent
from fastnn._validation import (all_finite, check_choice, check_number,
                                check_sample_weight, check_weight_total, float_dtype,
                                weight_total)
from fastnn.optim.lbfgs import LBFGS, LBFGSObjective
from fastnn.nn.losses import BinaryCrossEntropy, CrossEntropy, GaussianNLL, PoissonNLL
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import SGD, Adam, AdamW, Constant, InverseScaling, ReduceOnPlateau
from fastnn.nn.sparse import check_model, check_structure, forward as sparse_forward
from fastnn.runtime.threads import _default_threads, resolve_threads
from fastnn.training.trainer import TrainingDiverged, prepare_run

__all__ = ["MLPClassifier", "MLPRegressor", "NonFiniteFit"]

#: hidden activations accepted, with scikit-learn's "logistic" for fastnn's "sigmoid"
ACTIVATIONS = ("identity", "logistic", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu",
               "gelu", "gelu_tanh", "silu", "swish", "softplus")
AUTO_BATCH_SIZE = 200
_SEED_BOUND = np.iinfo(np.int32).max


def _fingerprint(*arrays):
    """A digest of arrays' shapes, dtypes and bytes (None entries included)."""
    digest = hashlib.sha256()
    for a in arrays:
        if a is None:
            digest.update(b"none")
            continue
        if sparse.issparse(a):  # its stored structure and values, canonical CSR
            a = sparse.csr_array(a, copy=True)
            a.sum_duplicates()
            digest.update(b"sparse")
            parts = (a.data, a.indices.astype(np.int64), a.indptr.astype(np.int64))
            digest.update(repr(a.shape).encode())
        else:
            parts = (a,)
        for part in parts:
            part = np.ascontiguousarray(part)
            digest.update(repr((part.shape, part.dtype.str)).encode())
            digest.update(part.data)
    return digest.hexdigest()


def _same_arrays(a, b):
    """True when the tuples of arrays a and b hold the same values (b may be None)."""
    return b is not None and len(a) == len(b) and all(
        x.shape == y.shape and sparse.issparse(x) == sparse.issparse(y) and
        ((x != y).nnz == 0 if sparse.issparse(x) else np.array_equal(x, y))
        for x, y in zip(a, b))


class NonFiniteFit(TrainingDiverged, ValueError):
    """A fit whose loss or weights became NaN or infinite: the ValueError scikit-learn raises
    ("Solver produced non-finite parameter weights"), and a ``fastnn.TrainingDiverged``.
    The estimator keeps the last finite weights."""


class _BaseMLP(BaseEstimator):
    """Shared machinery: parameter checks, the network, the solvers and the epoch loop.

    A fit in one thread and predict, pickle or ``model_.save`` in another follow
    fastnn/runtime/state.py: what a fit changes before its epochs and after them changes inside
    ``consistent(self)``, each epoch's records with the epoch (a recorder of the run), and
    the readers read inside ``consistent(self)``.
    """

    def _state_parts(self):
        """The network, whose state is part of the estimator's (fastnn/runtime/state.py)."""
        model = vars(self).get("model_")
        return [model] if isinstance(model, MLP) else []

    def __getstate__(self):
        # one epoch boundary of a fit in another thread: the network, the optimizer and the
        # records copied together (object.__getstate__ hands out the live __dict__, which a
        # running fit changes); the data sets kept for early stopping are only read, and stay
        # shared with the estimator
        with consistent(self):
            state = dict(super().__getstate__())
            shared = {id(state[k]): state[k] for k in ("_validation_set", "_held_out")
                      if state.get(k) is not None}
            return copy.deepcopy(state, shared)

    # ------------------------------------------------------------------ parameters

    def _checked_params(self):
        """Validate every hyperparameter (at fit time, as scikit-learn requires)."""
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = [hidden]
        try:
            hidden = list(hidden)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints; got "
                            f"{self.hidden_layer_sizes!r}") from None
        for i, n in enumerate(hidden):
            check_number(n, f"hidden_layer_sizes[{i}]", low=1, integer=True)
        hidden = [int(n) for n in hidden]
        activation = self.activation
        if isinstance(activation, str):
            activation = [activation] * len(hidden)
        else:
            activation = list(activation)
            if len(activation) != len(hidden):
                raise ValueError(f"activation has {len(activation)} entries; expected one per "
                                 f"hidden layer ({len(hidden)}) or a single name")
        activation = [{"logistic": "sigmoid"}.get(a, a) for a in
                      (check_choice(a, "activation", ACTIVATIONS) for a in activation)]
        check_choice(self.solver, "solver", ("lbfgs", "sgd", "adam", "adamw"))
        check_number(self.alpha, "alpha", low=0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            check_number(self.batch_size, "batch_size", low=1, integer=True)
        check_choice(self.learning_rate, "learning_rate", ("constant", "invscaling", "adaptive"))
        check_number(self.learning_rate_init, "learning_rate_init", low=0.0, low_open=True)
        check_number(self.power_t, "power_t", low=0.0)
        check_number(self.max_iter, "max_iter", low=1, integer=True)
        check_number(self.max_fun, "max_fun", low=1, integer=True)
        check_number(self.tol, "tol", low=0.0)
        check_number(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        check_number(self.validation_fraction, "validation_fraction", low=0.0, high=1.0,
                     low_open=True, high_open=True)
        check_number(self.beta_1, "beta_1", low=0.0, high=1.0, high_open=True)
        check_number(self.beta_2, "beta_2", low=0.0, high=1.0, high_open=True)
        check_number(self.epsilon, "epsilon", low=0.0, low_open=True)
        if not (isinstance(self.n_iter_no_change, numbers.Real) and
                self.n_iter_no_change == np.inf):
            check_number(self.n_iter_no_change, "n_iter_no_change", low=1, integer=True)
        check_choice(self.early_stopping_monitor, "early_stopping_monitor", ("loss", "score"))
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping",
                     "continue_run"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}")
        return hidden, activation, None if self.dtype is None else float_dtype(self.dtype)

    # ------------------------------------------------------------------ training

    @contextmanager
    def _threads(self):
        """fastnn's thread count for the compiled calls in the block: ``n_threads``, or the
        enclosing context's (None)."""
        if self.n_threads is None:
            yield
            return
        token = _default_threads.set(resolve_threads(self.n_threads))
        try:
            yield
        finally:
            _default_threads.reset(token)

    def _fit(self, X, y, sample_weight, incremental, classes=None, validation_data=None):
        with self._threads():
            begun = self._begin_fit(X, y, sample_weight, incremental, classes,
                                    validation_data)
            if begun is not None:
                diverged = None
                if begun["run"] is not None:
                    try:
                        begun["run"].run(begun["epochs"])   # fastnn's threads, as fastnn.fit
                    except TrainingDiverged as exc:
                        diverged = exc
                self._end_fit(begun, diverged)
        return self

    def _begin_fit(self, X, y, sample_weight, incremental, classes=None,
                   validation_data=None):
        """Everything of a fit before its epochs: None when there is nothing to train;
        otherwise a dict for ``_end_fit`` whose "run" is the checked fastnn TrainingRun of a
        stochastic solver (to run its "epochs", alone or in lockstep with other estimators'
        runs: fastnn.interop.sklearn_ensemble), or None after lbfgs has trained.

        The estimator's new state (its network, classes, records, optimizer) is set up
        inside ``consistent(self)``, one step for a reader in another thread; lbfgs then
        trains outside it, publishing its iterates (fastnn.optim.lbfgs)."""
        with consistent(self):
            begun = self._set_up_fit(X, y, sample_weight, incremental, classes,
                                     validation_data)
        if begun is not None and "lbfgs" in begun:
            self._fit_lbfgs(*begun.pop("lbfgs"))
        return begun

    def _set_up_fit(self, X, y, sample_weight, incremental, classes, validation_data):
        """_begin_fit's work under the estimator's lock."""
        hidden, activation, dtype = self._checked_params()
        if incremental and self.early_stopping and validation_data is None and \
                getattr(self, "_validation_set", None) is None:
            raise ValueError("partial_fit does not support early_stopping=True without "
                             "validation_data: pass validation_data=(X_val, y_val), or set "
                             "early_stopping=False")
        has_weights = hasattr(self, "model_") or self._pending_weights() is not None
        first = not has_weights or (not incremental and not self.warm_start)
        try:
            prepared = self._prepare_fit(X, y, sample_weight, incremental, classes,
                                         validation_data, first, hidden, activation, dtype)
        except Exception:
            if first:  # a first fit that fails before training leaves nothing half-fitted
                self._forget_fit()
            raise
        if prepared is None:
            return None
        if self.solver == "lbfgs":
            return {"run": None, "lbfgs": (*prepared[:3], prepared[4])}
        X, Y, sw, val, loss, batch_size = prepared
        self.n_iter_ = 0
        # the epoch's records are part of its commit (a recorder): a reader never sees an
        # epoch's weights without them
        run, epochs = prepare_run(self.model_, X, Y, loss, self._optimizer,
                                  epochs=1 if incremental else self.max_iter,
                                  batch_size=batch_size, shuffle=self.shuffle,
                                  seed=self._shuffle_seed, sample_weight=sw,
                                  validation_data=val,
                                  recorders=[self._epoch_callback(X.shape[0], val)])
        return {"run": run, "epochs": epochs, "val": val, "incremental": incremental}

    def _end_fit(self, begun, diverged):
        """After the epochs of ``_begin_fit``'s run (diverged: its TrainingDiverged or
        None): scikit-learn's records, stopping and warnings, inside consistent(self)."""
        with consistent(self):
            self._end_fit_state(begun, diverged)

    def _end_fit_state(self, begun, diverged):
        if begun["run"] is not None:
            self._after_epochs(begun["val"], begun["incremental"], diverged)
        if not all_finite(self.model_.params):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")

    def _after_epochs(self, val, incremental, diverged):
        """Epochs of minibatch sgd/adam ran through fastnn (TrainingRun): scikit-learn's
        stopping, with the run's TrainingDiverged or None."""
        if diverged is not None:
            # scikit-learn trains on through a non-finite loss: record the failed epoch as
            # NaN and stop here (the model keeps its last finite weights)
            self.n_iter_ += 1
            self.loss_ = float("nan")
            self.loss_curve_.append(float("nan"))
            if val is not None:
                self.validation_scores_.append(float("nan"))
                self.validation_loss_curve_.append(float("nan"))
        stopped = self._no_improvement_count > self.n_iter_no_change
        if val is not None and self._best_params is not None and (stopped or not incremental):
            if not stopped and self._best_params.tobytes() != self.model_.params.tobytes():
                # where the run got to: a warm_start fit that continues the run goes on from
                # there (as one longer fit does), not from the best weights restored now
                self._run_params = self.model_.params.copy()
            self.model_.params[...] = self._best_params
        elif diverged is not None:
            raise NonFiniteFit("Solver produced non-finite parameter weights. The input data "
                               "may contain large values and need to be preprocessed. "
                               f"({diverged})", diverged.history) from diverged
        self.stopped_early_ = bool(stopped and (val is not None or not incremental))
        if not incremental and not stopped and diverged is None and \
                self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=5)
        if self.early_stopping:
            self.best_loss_ = None
        else:
            finite = [v for v in self.loss_curve_ if np.isfinite(v)]
            self.best_loss_ = min(finite) if finite else float("nan")

    def _fit_lbfgs(self, X, Y, sw, loss):
        """Full-batch L-BFGS (fastnn.optim.lbfgs): scikit-learn's objective and stopping rules."""
        weight_sum = check_weight_total(weight_total(sw, X.shape[0]), "sample_weight",
                                        "the objective is undefined; check sample_weight")
        solver = LBFGS(max_iter=self.max_iter, max_fun=self.max_fun, tol=self.tol,
                       weight_decay=self.alpha / weight_sum)
        curve = []
        result = solver.fit(self.model_, X, Y, loss, sample_weight=sw,
                            callback=lambda it, value: curve.append(value),
                            verbose=bool(self.verbose))
        with consistent(self):  # the records of the run, with its last iterate
            self.n_iter_ = min(int(result.nit), self.max_iter)
            self.t_ += X.shape[0] * self.n_iter_
            self.loss_ = float(result.fun)
            self.loss_curve_.extend(curve)
            self.best_loss_ = min(curve) if curve else self.loss_
            self.stopped_early_ = False
        if result.status != 0:
            message = result.message
            if isinstance(message, bytes):
                message = message.decode("latin1")
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(status={result.status}):\n{message}\n\nIncrease the number of "
                          f"iterations to improve the convergence (max_iter={self.max_iter}), "
                          f"or max_fun={self.max_fun}.", ConvergenceWarning, stacklevel=5)

    def _resolve_dtype(self, X, dtype, first):
        """The dtype of the computation: dtype= when given; else the fitted model's when
        continuing; else X's when it is float32 or float64 (and float64 otherwise)."""
        if dtype is not None:
            return dtype
        if not first and hasattr(self, "model_"):
            return self.model_.dtype
        return [np.float64, np.float32]

    def _prepare_fit(self, X, y, sample_weight, incremental, classes, validation_data, first,
                     hidden, activation, dtype):
        """Validate and convert the data, build or check the network and the optimizer, and
        split off the validation set: (X, Y, sw, val, loss, batch_size), or None when a
        partial_fit call has nothing to do."""
        X, y = validate_data(self, _checked(X, "X"), y, reset=first,
                             dtype=self._resolve_dtype(X, dtype, first),
                             order="C", multi_output=True, accept_sparse=("csr", "csc"),
                             y_numeric=not self._is_fastnn_classifier)
        dtype = X.dtype
        first_targets = first or not hasattr(self, "n_outputs_") or (
            self._is_fastnn_classifier and not hasattr(self, "classes_"))
        Y, sw = self._targets(y, sample_weight, X.shape[0], dtype, first_targets, incremental,
                              classes)
        loss = self._loss()
        sizes = [X.shape[1], *hidden, loss.n_outputs(self._n_targets())]
        random_state = check_random_state(self.random_state)
        if first:
            self.model_ = MLP(sizes, activation=activation, init=self.init, dtype=dtype,
                              seed=0 if self.init is None else random_state.randint(_SEED_BOUND),
                              dropout=self.dropout, normalization=self.normalization)
            if sparse.issparse(X):
                check_model(self.model_)  # before any training: a failed first fit forgets
            if self.init is None:
                _init_as_scikit_learn(self.model_, self.activation, random_state)
            self.__dict__.pop("_pending_coefs", None)  # a fresh fit replaces assigned weights
            self.__dict__.pop("_pending_intercepts", None)
            self._reset_records()
        elif not hasattr(self, "model_"):
            self._adopt_pending_weights(sizes, activation, dtype)
            self._reset_records()
        else:
            self._check_structure(sizes, activation)
            if self.model_.dtype != dtype:
                self.model_ = self.model_.astype(dtype)
        split = None
        if self.early_stopping and not incremental and self.solver != "lbfgs":
            # scikit-learn draws the validation split from this call's RandomState right after
            # the initial weights (a warm fit: from a fresh one), before anything else draws
            # from it: drawn here, so the same random_state holds out the same rows
            split = self._draw_split(Y, random_state)
        if first or not incremental or not hasattr(self, "_rng"):
            self._rng = np.random.default_rng(random_state.randint(_SEED_BOUND))
        if first or not hasattr(self, "_shuffle_seed"):
            # the sample order of each epoch is a function of this seed and the epoch count
            # (fastnn.fit), so warm_start and partial_fit continue the order of one long fit
            self._shuffle_seed = int(self._rng.integers(_SEED_BOUND))
        self.n_layers_ = self.model_.n_layers + 1
        continuing = False
        if not incremental:
            # scikit-learn's warm start: a fresh optimizer, this call's validation split, the
            # stopping record carried over (best value, epochs without improvement, best
            # weights), training on from the weights the last fit ended with (the best ones
            # after early stopping).  fastnn's extension continue_run=True keeps the
            # optimizer too and continues the run: its validation split, its stopping record
            # (on the same validation rows) and the weights it had reached (unless it had
            # stopped early)
            continuing = self.solver != "lbfgs" and \
                self._continue_or_new_optimizer(False) and not self.stopped_early_
            if not continuing:
                if getattr(self, "_record_kind", None) != self._monitored():
                    self._new_record()  # values of another kind are not comparable
                self._run_params = None
                self._warm_split_state = None if split is None else split[0]
            else:
                run, self._run_params = getattr(self, "_run_params", None), None
                best = self._best_params
                if run is not None and best is not None and run.shape == best.shape and \
                        run.dtype == self.model_.dtype and \
                        best.tobytes() == self.model_.params.tobytes():
                    self.model_.params[...] = run
                if split is not None and getattr(self, "_warm_split_state", None) is not None:
                    split = self._draw_split(Y, _random_state_at(self._warm_split_state))
                elif split is not None:
                    self._warm_split_state = split[0]
            self._validation_set = None
        elif self.stopped_early_ and self.early_stopping:
            warnings.warn(f"early stopping ended training after {len(self.loss_curve_)} "
                          "epochs; this partial_fit call leaves the model unchanged. Call fit, or "
                          "set_params(early_stopping=False) to train on.", UserWarning,
                          stacklevel=5)
            return None
        self.stopped_early_ = False
        if self.solver == "lbfgs":
            if np.any(np.asarray(self.dropout, dtype=float) != 0):
                raise ValueError(f"dropout={self.dropout!r} needs a stochastic solver ('sgd', "
                                 "'adam' or 'adamw'); lbfgs minimises the full-batch "
                                 "objective")
            return X, Y, sw, None, loss, X.shape[0]
        if incremental:
            self._continue_or_new_optimizer(incremental)
        val = None
        if self.early_stopping:
            X, Y, sw, val = self._validation_split(X, Y, sw, dtype, incremental,
                                                   validation_data, split, continuing)
        n = X.shape[0]
        # the rows left to train on (after the early-stopping split, in the model's dtype),
        # checked before their mean weight sets the L2 step below: fastnn.fit checks the same
        # total, but only after that division
        check_weight_total(weight_total(sw, n), "the sample weights of the training rows",
                           "there is nothing to train on" + (
                               " (after the early-stopping split); use another random_state "
                               "or validation_fraction, or check sample_weight"
                               if val is not None else "; check sample_weight"))
        batch_size = min(AUTO_BATCH_SIZE, n) if self.batch_size == "auto" else self.batch_size
        if batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          f"going to be clipped (batch_size={batch_size}, {n} training "
                          "samples)", UserWarning, stacklevel=5)
            batch_size = n
        mean_weight = 1.0 if sw is None else float(np.mean(sw, dtype=np.float64))
        if self.solver == "adamw":  # decoupled: PyTorch's coefficient, not a penalty's
            self._optimizer.weight_decay = float(self.alpha)
        else:
            self._optimizer.weight_decay = self.alpha / (batch_size * mean_weight)
        return X, Y, sw, val, loss, batch_size

    def _forget_fit(self):
        """Remove every fitted attribute (a first fit that failed before training)."""
        for name in list(vars(self)):
            if (name.endswith("_") and not name.startswith("__")) or name in (
                    "_rng", "_validation_set", "_optimizer", "_kind", "_label_dtype",
                    "_shuffle_seed", "_best_params", "_best_value", "_no_improvement_count",
                    "_run_params", "_warm_split_state", "_held_out", "_warm_validation",
                    "_record_kind"):
                delattr(self, name)

    def _reset_records(self):
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        if self.early_stopping and self.solver != "lbfgs":
            self.validation_loss_curve_ = []
            self.validation_scores_ = []
        else:
            self.validation_loss_curve_ = None
            self.validation_scores_ = None
        self.best_validation_loss_ = None
        self.best_validation_score_ = None
        self.stopped_early_ = False
        self._new_record()
        self._validation_set = None
        self._warm_split_state = None
        self._held_out = None
        self._warm_validation = None
        if hasattr(self, "_optimizer"):
            del self._optimizer

    def _new_record(self):
        """The stopping record: best monitored value, epochs without improvement, weights."""
        self._best_value = np.inf
        self._no_improvement_count = 0
        self._best_params = None
        self._run_params = None  # the weights the run reached when the best were restored
        self._record_kind = self._monitored()
        if self.early_stopping and self.solver != "lbfgs" and \
                self.validation_scores_ is None:  # warm start after early_stopping=False
            self.validation_scores_ = []
            self.validation_loss_curve_ = []

    def _monitored(self):
        """What the stopping record holds: "training loss", "validation score" or
        "validation loss" (a record of one kind says nothing about another)."""
        if not self.early_stopping or self.solver == "lbfgs":
            return "training loss"
        return f"validation {self.early_stopping_monitor}"

    def _draw_split(self, Y, random_state):
        """scikit-learn's early-stopping split of the rows of Y, drawn from random_state (a
        RandomState, advanced as scikit-learn's ``train_test_split`` advances it): (the
        RandomState's state before the draw, training rows, validation rows).

        Stratified for a binary target (``_stratify``; scikit-learn's error when a class has
        a single member), validation_fraction of the rows rounded up;
        the rows come in the order train_test_split gives them, as scikit-learn trains on them.
        """
        state = random_state.get_state()
        train, val = train_test_split(np.arange(Y.shape[0]), test_size=self.validation_fraction,
                                      random_state=random_state, stratify=self._stratify(Y))
        return state, train, val

    def _check_structure(self, sizes, activation):
        old_act = [layer.activation for layer in self.model_.layers[:-1]]
        if self.model_.layer_sizes != sizes or old_act != activation:
            raise ValueError(f"the fitted network has layer sizes {self.model_.layer_sizes} "
                             f"and activations {old_act}; the parameters and data now need "
                             f"{sizes} and {activation}. warm_start and partial_fit continue "
                             "the same network: set warm_start=False, or call fit, to start "
                             "anew")

    def _continue_or_new_optimizer(self, incremental):
        """Keep the optimizer (its moments, step and epoch counts, schedule progress) for
        partial_fit (as scikit-learn does) and, with continue_run=True (fastnn's extension),
        for a warm_start fit whose hyperparameters are unchanged, so that they continue one
        run; any other fit starts a new optimizer (scikit-learn's warm start).  True when
        the optimizer was kept."""
        old = getattr(self, "_optimizer", None)
        if old is not None and incremental:
            return True
        new = self._new_optimizer()
        if old is not None and self.warm_start and self.continue_run:
            new.weight_decay = old.weight_decay  # set per call from alpha below
            if repr(new) == repr(old):
                return True
        self._optimizer = new
        return False

    def _new_optimizer(self):
        if self.solver in ("adam", "adamw"):
            cls = Adam if self.solver == "adam" else AdamW
            return cls(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2,
                       eps=self.epsilon, schedule=Constant())
        schedule = {"constant": Constant,
                    "invscaling": lambda: InverseScaling(self.power_t),
                    "adaptive": lambda: ReduceOnPlateau(factor=0.2, patience=2,
                                                        min_delta=self.tol)}
        return SGD(lr=self.learning_rate_init, momentum=self.momentum,
                   nesterov=self.nesterovs_momentum and self.momentum > 0,
                   schedule=schedule[self.learning_rate]())

    def _validation_split(self, X, Y, sw, dtype, incremental, validation_data, split=None,
                          continuing=False):
        """(X_train, Y_train, sw_train, (X_val, Y_val[, sw_val])) for early stopping: rows of
        ``split`` (``_draw_split``'s, for fit) or validation_data (partial_fit)."""
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or \
                    len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (X_val, y_val) or "
                                 "(X_val, y_val, sample_weight_val)")
            X_val, y_val, *sw_val = validation_data
            X_val = validate_data(self, _checked(X_val, "X_val"), reset=False, dtype=dtype,
                                  order="C", accept_sparse=("csr", "csc"))
            y_val = np.asarray(y_val)
            Y_val, sw_val = self._targets(y_val, sw_val[0] if sw_val else None,
                                          X_val.shape[0], dtype, False, True, None)
            val_set = (X_val, Y_val) + ((sw_val,) if sw_val is not None else ())
            if not _same_arrays(val_set, self._validation_set):
                self._new_record()  # values on another set are not comparable
            self._validation_set = val_set
            return X, Y, sw, self._validation_set
        n = X.shape[0]
        take = _take_rows
        if incremental and self._validation_set is not None:
            held = getattr(self, "_held_out", None)
            if held is not None and held[0] == _fingerprint(X, Y, sw):
                # the first call's data again: its validation rows stay out of training
                # (training on them would bias the validation loss that stops the run)
                return take(X, held[1]), take(Y, held[1]), take(sw, held[1]), \
                    self._validation_set
            return X, Y, sw, self._validation_set
        if incremental:  # fastnn's extension: scikit-learn's partial_fit has no split
            _, train, val = self._draw_split(
                Y, np.random.RandomState(int(self._rng.integers(_SEED_BOUND))))
        else:
            _, train, val = split  # drawn by _prepare_fit, where scikit-learn draws it
        if len(val) < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             f"or the size of your dataset ({len(val)} validation sample(s) "
                             f"of {n} with validation_fraction="
                             f"{self.validation_fraction}; at least 2 are needed).")
        val_set = (take(X, val), take(Y, val)) + ((take(sw, val),) if sw is not None else ())
        if sw is not None:
            check_weight_total(weight_total(val_set[2], len(val)),
                               "the sample weights of the validation rows",
                               "the validation loss is undefined (after the early-stopping "
                               "split); use another random_state or validation_fraction")
        if incremental:
            self._validation_set = val_set
            self._held_out = (_fingerprint(X, Y, sw), np.asarray(train))
        else:
            # a warm_start fit that continues the run (continue_run) continues its stopping
            # record only on the same validation rows (other data or another
            # validation_fraction: values not comparable); scikit-learn's warm start keeps
            # the record whatever rows it draws
            fingerprint = _fingerprint(*val_set)
            if continuing and fingerprint != getattr(self, "_warm_validation", None):
                self._new_record()
            self._warm_validation = fingerprint
        return take(X, train), take(Y, train), take(sw, train), val_set

    def _reported_loss(self, data_loss):
        """scikit-learn's loss_curve_ value: the data loss plus the L2 term of this epoch's
        minibatches (``0.5 * alpha * ||W||^2 / batch weight``, as the update applies it)."""
        decay = self._optimizer.weight_decay
        penalty = 0.0
        if decay and self.solver != "adamw":  # AdamW's decay is no term of the loss
            with np.errstate(over="ignore", invalid="ignore"):
                # (NumPy's sum, not np.dot: its BLAS splits long sums over the cores)
                squares = sum(float(np.square(W).sum()) for W in self.model_.coefs)
                penalty = 0.5 * decay * squares
                if not np.isfinite(squares) and all(all_finite(W) for W in self.model_.coefs):
                    # weights above 1e154 overflow their squares while the penalty, scaled
                    # by a small decay, may be a number: sum (W / s)^2, s the largest |w|
                    scale = max(float(np.abs(W).max()) for W in self.model_.coefs)
                    ssq = sum(float(np.square(W / scale).sum()) for W in self.model_.coefs)
                    penalty = 0.5 * decay * scale * scale * ssq
        return data_loss / self._loss_scale() + penalty

    def _loss_scale(self):
        return 1.0

    def _epoch_callback(self, n_train, val):
        def after_epoch(epoch, logs):
            self.n_iter_ += 1
            self.t_ += n_train
            self.loss_ = self._reported_loss(logs["loss"])
            self.loss_curve_.append(self.loss_)
            line = f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}"
            if val is not None:
                score = self._score_encoded(*val)
                self.validation_loss_curve_.append(logs["val_loss"])
                self.validation_scores_.append(score)
                self.best_validation_loss_ = min(self.validation_loss_curve_)
                self.best_validation_score_ = max(self.validation_scores_)
                value = logs["val_loss"] if self.early_stopping_monitor == "loss" else -score
                line += f", validation loss = {logs['val_loss']:.8f}, score = {score:.6f}"
            else:
                value = self.loss_
            if self.verbose:
                print(line, flush=True)
            return self._no_improvement(value, keep_best=val is not None)
        return after_epoch

    def _no_improvement(self, value, keep_best):
        """scikit-learn's rule: count epochs not better than the best by tol; True to stop."""
        if not np.isfinite(value) or value > self._best_value - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if value < self._best_value:
            self._best_value = value
            if keep_best:
                if self._best_params is None or \
                        self._best_params.dtype != self.model_.dtype:
                    self._best_params = np.empty_like(self.model_.params)
                self._best_params[...] = self.model_.params
        return self._no_improvement_count > self.n_iter_no_change

    # ------------------------------------------------------------------ prediction

    def _outputs(self, X, link):
        """Validated X through the network: logits (link=False) or the output link applied."""
        check_is_fitted(self)
        with consistent(self), self._threads():  # one epoch boundary of a running fit
            X = validate_data(self, _checked(X, "X"), reset=False, dtype=self.model_.dtype,
                              order="C", accept_sparse=("csr", "csc"))
            if sparse.issparse(X):  # the compiled sparse first layer (fastnn.nn.sparse)
                return sparse_forward(self.model_, X, link=link)
            return self.model_.predict(X) if link else self.model_.forward(X)

    def _output_dtype(self):
        """Predictions follow the computation's dtype when it follows X (dtype=None, as in
        scikit-learn); with an explicit dtype they are float64."""
        return self.model_.dtype if self.dtype is None else np.float64

    # ------------------------------------------------------------------ views of the weights

    @property
    def coefs_(self):
        """Weight matrices, ``coefs_[k]`` of shape (n_k, n_{k+1}): views into ``model_.params``.

        Writing into them changes the model; assigning a list copies it into the model (after
        checking shapes and values).  Assigned before any fit (as scikit-learn's worked
        example does), the list is kept and becomes the starting point of partial_fit or of a
        warm-started fit.
        """
        if "model_" in vars(self):
            return self.model_.coefs
        pending = vars(self).get("_pending_coefs")
        if pending is None:
            raise AttributeError(f"{type(self).__name__} has no coefs_ before it is fitted")
        return pending

    @coefs_.setter
    def coefs_(self, values):
        if "model_" in vars(self):
            self._assign_weights(values, "coefs_")
        else:
            self._pending_coefs = _as_list(values, "coefs_")

    @property
    def intercepts_(self):
        """Bias vectors, ``intercepts_[k]`` of shape (n_{k+1},): views into ``model_.params``."""
        if "model_" in vars(self):
            return self.model_.intercepts
        pending = vars(self).get("_pending_intercepts")
        if pending is None:
            raise AttributeError(f"{type(self).__name__} has no intercepts_ before it is "
                                 "fitted")
        return pending

    @intercepts_.setter
    def intercepts_(self, values):
        if "model_" in vars(self):
            self._assign_weights(values, "intercepts_")
        else:
            self._pending_intercepts = _as_list(values, "intercepts_")

    def _assign_weights(self, values, which):
        """The coefs_/intercepts_ setters of a fitted estimator: MLP.set_weights (real, finite,
        representable in the model's dtype, the right shapes; all checked before any is
        written, under the model's lock), its messages naming ``coefs_[k]`` /
        ``intercepts_[k]``.  Before fitting, the setters keep the lists for the first fit."""
        check_is_fitted(self, "model_")
        if not isinstance(values, (list, tuple)):
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise TypeError(f"{which} must be a list of arrays, one per layer; got "
                                f"{type(values).__name__}")
            values = list(values)
        coefs, intercepts = (values, None) if which == "coefs_" else (None, values)
        self.model_._set_weights(coefs, intercepts, ("coefs_", "intercepts_"))

    def _pending_weights(self):
        state = vars(self)
        if state.get("_pending_coefs") is None or state.get("_pending_intercepts") is None:
            return None
        return state["_pending_coefs"], state["_pending_intercepts"]

    def _adopt_pending_weights(self, sizes, activation, dtype):
        """Build model_ from coefs_/intercepts_ assigned before any fit."""
        coefs, intercepts = self._pending_weights()
        model = MLP(sizes, activation=activation, dtype=dtype, seed=0, warn_symmetric=False)
        _assign(model, coefs, intercepts, "coefs_/intercepts_")
        self.model_ = model
        del self._pending_coefs, self._pending_intercepts

    def _loss_grad_lbfgs(self, packed_coef_inter, X, y, sample_weight, *workspace):
        """scikit-learn's private objective (its test_mlp.py calls it): the lbfgs objective
        and its gradient at ``packed_coef_inter``, in scikit-learn's packing (all weight
        matrices row-major, then all biases).  The workspace arguments are ignored."""
        check_is_fitted(self)
        order = self._sklearn_packing()
        theta = np.empty(self.model_.n_params)
        theta[order] = np.asarray(packed_coef_inter, dtype=np.float64)
        Y = np.asarray(y)
        if getattr(self, "_kind", None) == "multiclass" and Y.ndim == 2:
            Y = Y.argmax(axis=1)  # scikit-learn passes one-hot rows
        weight_sum = check_weight_total(weight_total(sample_weight, X.shape[0]),
                                        "sample_weight", "the objective is undefined")
        objective = LBFGSObjective(self.model_, X, Y, self._loss(), sample_weight,
                                   self.alpha / weight_sum)
        value, grad = objective(theta)
        return value, grad[order]

    def _sklearn_packing(self):
        """Indices into model_.params in scikit-learn's packing order."""
        base = self.model_.params.__array_interface__["data"][0]
        itemsize = self.model_.params.itemsize
        parts = []
        for a in [*self.model_.coefs, *self.model_.intercepts]:
            start = (a.__array_interface__["data"][0] - base) // itemsize
            parts.append(np.arange(start, start + a.size))
        return np.concatenate(parts)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _log_of_proba(proba, exact):
    """log(proba), with ``exact()`` (float64 log-probabilities of the same shape, computed
    only when needed) where proba underflowed below the smallest normal float of its dtype
    (a subnormal, or the smallest one a clip reported): there the logarithm of the reported
    value is wrong by orders of magnitude, elsewhere it is the logarithm to rounding and keeps
    predict_proba's order and ties."""
    logp = np.log(proba)
    under = proba < np.finfo(proba.dtype).tiny
    if under.any():
        logp[under] = exact()[under]
    return logp


def _solver_is_stochastic(estimator):
    if estimator.solver not in ("sgd", "adam", "adamw"):
        raise AttributeError(f"partial_fit is only available for stochastic optimizers "
                             f"('sgd', 'adam', 'adamw'); solver={estimator.solver!r} is not "
                             "stochastic")
    return True


def _checked(X, name):
    """X, after fastnn.nn.sparse.check_structure when it is sparse: scikit-learn's validate_data
    converts a COO/BSR/... X with scipy, whose C++ trusts the stored indices."""
    if sparse.issparse(X):
        check_structure(X, name)
    return X


def _random_state_at(state):
    """A RandomState in the given ``get_state()`` state."""
    random_state = np.random.RandomState()
    random_state.set_state(state)
    return random_state


def _take_rows(a, idx):
    """Rows idx of an array or of a sparse matrix (kept sparse), or None."""
    if a is None:
        return None
    return a[idx] if sparse.issparse(a) else np.ascontiguousarray(a[idx])


def _as_list(values, name):
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{name} must be a list of arrays, one per layer; got "
                        f"{type(values).__name__}") from None


def _assign(model, coefs, intercepts, name):
    """Copy per-layer arrays into the model through its validated entry point (shapes,
    real and finite values representable in its dtype; nothing written unless all pass)."""
    try:
        model.set_weights(None if coefs is None else _as_list(coefs, name),
                          None if intercepts is None else _as_list(intercepts, name))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None


def _init_as_scikit_learn(model, activation, random_state):
    """scikit-learn's default initialisation (Glorot et al. 2010, uniform): every weight and
    bias of layer k uniform in +-sqrt(factor / (fan_in + fan_out)), factor 2 when the hidden
    activation is "logistic" and 6 otherwise, drawn from the same RandomState in the same
    order as scikit-learn's ``_init_coef`` (so the same random_state gives the same start)."""
    factor = 2.0 if activation == "logistic" else 6.0
    for W, b in zip(model.coefs, model.intercepts):
        fan_in, fan_out = W.shape
        bound = np.sqrt(factor / (fan_in + fan_out))
        W[...] = random_state.uniform(-bound, bound, (fan_in, fan_out))
        b[...] = random_state.uniform(-bound, bound, fan_out)


def _common_doc(extra_params, extra_attrs):
    return f"""
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Widths of the hidden layers; () gives a linear model.
    activation : str or sequence of str, default "relu"
        Hidden activation: "identity", "logistic" (= "sigmoid"), "tanh", "relu",
        "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "silu" (= "swish"), "softplus";
        one name for all hidden layers or one per hidden layer.
    solver : {{"adam", "sgd", "lbfgs", "adamw"}}, default "adam"
        "lbfgs": full-batch L-BFGS (fastnn.LBFGS, scipy's L-BFGS-B); no partial_fit.
        "adamw": fastnn's extension, not a scikit-learn solver: ``fastnn.AdamW``, Adam with
        decoupled weight decay (``torch.optim.AdamW``), its coefficient ``alpha``.
    alpha : float >= 0, default 1e-4
        L2 penalty on the weights (not the biases); see the module docstring for how it maps
        to fastnn's weight_decay.  With solver="adamw": the decoupled decay coefficient
        (PyTorch's AdamW default is 1e-2).
    batch_size : int or "auto", default "auto"
        "auto" is min(200, n_samples); larger values are clipped with a warning.
    learning_rate : {{"constant", "invscaling", "adaptive"}}, default "constant"
        Schedule of the sgd solver (ignored by adam and adamw); see the module docstring.
    learning_rate_init : float > 0, default 1e-3
        The step size of each optimizer step (one per minibatch), before the schedule.
    power_t : float >= 0, default 0.5
        Exponent of "invscaling": lr / (epoch + 1) ** power_t.
    max_iter : int >= 1, default 200
        Epochs per fit (partial_fit always runs one); L-BFGS iterations with lbfgs.
    shuffle : bool, default True
    random_state : int, RandomState or None
        Initial weights, shuffling and the validation split.
    tol : float >= 0, default 1e-4
        sgd/adam: the least improvement that counts (see n_iter_no_change); lbfgs: stop when
        every gradient component is at most tol (scipy's gtol).
    verbose : bool, default False
        Print the loss (and validation loss and score) after every epoch.
    warm_start : bool, default False
        fit trains on from the weights the last fit ended with (the best ones after early
        stopping), as scikit-learn's warm start does: with a new optimizer (fresh moments
        and schedule; the sample order starts over), the curves and the stopping record
        (best value, epochs without improvement, best weights) carried over, and with
        early_stopping a validation split drawn as scikit-learn draws it (from
        random_state, without the initial weights' draws, so usually other rows than the
        first fit's); ``n_iter_`` counts this call's iterations.  To continue the run instead,
        see continue_run.
    momentum : float in [0, 1), default 0.9
    nesterovs_momentum : bool, default True
    early_stopping : bool, default False
        Hold out validation_fraction of the samples, the rows scikit-learn's MLP holds out
        for the same random_state (stratified for a binary target only, as there), stop
        after n_iter_no_change + 1 epochs without improvement of the monitored value by more
        than tol, and restore the best weights.
    validation_fraction : float in (0, 1), default 0.1
        Fraction (not a percentage) of the training data held out for early stopping.
    beta_1, beta_2 : float in [0, 1), default 0.9, 0.999
    epsilon : float > 0, default 1e-8
    n_iter_no_change : int >= 1 or numpy.inf, default 10
        Epochs (not steps) without an improvement of more than ``tol`` that training
        tolerates (see early_stopping).
    max_fun : int >= 1, default 15000
        lbfgs only: evaluations of the objective (each one pass over the data) after which
        no new iteration starts (the last line search may exceed it by a few, as in
        scikit-learn).
    early_stopping_monitor : {{"loss", "score"}}, default "score"
        What early stopping watches on the validation set: the loss (lower is better) or the
        score (accuracy or R^2, as scikit-learn does).
    dtype : None, "float32" or "float64", default None
        Precision of parameters and computation; None follows X (float32 or float64, other
        inputs float64), as scikit-learn does.
    init : None, str, dict, fastnn.nn.init initializer, or a sequence of one per layer
        Weight initializers (see fastnn.nn.init); None is scikit-learn's initialisation (weights
        and biases uniform in +-sqrt(6 / (fan_in + fan_out)), 2 instead of 6 for "logistic").
    dropout : float or sequence of float, default 0.0
        Inverted dropout rate in [0, 1) after every hidden layer (or one per hidden layer)
        while training; predictions use every unit (see fastnn.MLP).  Not with lbfgs.
    normalization : {{None, "layer"}} or sequence, default None
        "layer": layer normalization before each hidden activation (see fastnn.MLP).
    n_threads : int or None, default None
        fastnn's threads for fitting and predicting (None: ``fastnn.runtime.threads.default_threads()``,
        which follows threadpoolctl limits, FASTNN_NUM_THREADS and OMP_NUM_THREADS -- so
        GridSearchCV's loky workers share the cores -- and otherwise takes every core the
        process may use; or the count an enclosing fastnn ensemble set).  The fitted weights
        and the predictions are the same bits for any count.
    continue_run : bool, default False
        fastnn's extension (scikit-learn has no such parameter), used with warm_start=True:
        a warm_start fit continues the run, as a longer fit would: it keeps the optimizer
        (moments, step and epoch counts, schedule progress, hence the sample order) unless
        solver or a rate parameter changed, and with early_stopping the run's validation
        split, its stopping record (on the same validation rows) and the weights the run
        reached rather than the best ones restored (unless it stopped early).
        fit(max_iter=3) then a warm_start fit(max_iter=3) trains as fit(max_iter=6) (when
        neither stops early).  partial_fit always continues the optimizer (as in
        scikit-learn), as ``fastnn.MLP.fit`` with the same optimizer object does.
{extra_params}
    Attributes
    ----------
    model_ : fastnn.MLP
        The fitted network (save it with ``model_.save(path)``).
    coefs_, intercepts_ : list of ndarray
        Views of the weights and biases inside ``model_.params`` (assignable).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names (a pandas DataFrame).
    loss_ : float
        Training loss of the last epoch: the weighted mean over samples plus the L2 term, as
        ``loss_curve_[-1]``.
    loss_curve_ : list of float
        Training loss (the weighted mean over samples, with the L2 term) per epoch, or per
        L-BFGS iteration (see the table above).
    best_loss_ : float or None
        Smallest training loss (mean, as ``loss_curve_``); None with early_stopping (see
        ``best_validation_loss_``).
    validation_loss_curve_, validation_scores_ : list of float or None
        Per epoch, with early_stopping only (None otherwise): the mean validation loss, and
        the validation accuracy (a fraction in [0, 1]) or R^2.
    best_validation_loss_, best_validation_score_ : float or None
        The best of those (lowest mean loss; highest accuracy, a fraction, or R^2).
    stopped_early_ : bool
        Whether the last fit (or partial_fit) stopped on no improvement.
    n_iter_ : int
        Epochs (or L-BFGS iterations) run by the last fit or partial_fit call.
    t_ : int
        Training samples seen (scikit-learn's count: samples, not optimizer steps).
    n_layers_ : int
        Layers counting the input layer, as in scikit-learn.
{extra_attrs}"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained by fastnn (scikit-learn API).

    Two classes: one sigmoid output and binary cross-entropy.  More classes: softmax and
    cross-entropy.  A multi-label indicator matrix y: one independent sigmoid per label.
    Labels of any type (strings, non-contiguous integers) round-trip through ``classes_``.
    """

    _is_fastnn_classifier = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=1e-3, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, early_stopping_monitor="score", dtype=None, init=None,
                 class_weight=None, dropout=0.0, normalization=None, n_threads=None,
                 continue_run=False):
        self.continue_run = continue_run
        self.n_threads = n_threads
        self.dropout = dropout
        self.normalization = normalization
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.early_stopping_monitor = early_stopping_monitor
        self.dtype = dtype
        self.init = init
        self.class_weight = class_weight

    __doc__ += _common_doc(
        """    class_weight : None, "balanced" or dict {label: weight}, default None
        Multiplies each sample's weight by its class's; "balanced" uses
        n_samples / (n_classes * count(class)).  Not for multi-label targets; not "balanced"
        in partial_fit (compute the weights once, e.g. with
        sklearn.utils.class_weight.compute_class_weight, and pass a dict).
""",
        """    classes_ : ndarray of shape (n_classes,)
        The labels, sorted; for a multi-label y, 0 .. n_labels - 1.
    n_outputs_ : int
        Network outputs: 1 for two classes, else n_classes (or n_labels).
    out_activation_ : {"logistic", "softmax"}
""")

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to max_iter epochs (from scratch unless warm_start).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multi-label indicator matrix of 0/1.
        sample_weight : array-like of shape (n_samples,), optional
            One weight per sample: each minibatch minimizes the weighted mean loss
            sum_i w_i l_i / sum_i w_i.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_solver_is_stochastic)
    def partial_fit(self, X, y, classes=None, sample_weight=None, *, validation_data=None):
        """One epoch over (X, y), continuing the network and the optimizer's state.

        Each call is the next epoch of one run (weights, optimizer moments, schedule, sample
        order): k calls on the same data train as ``fit`` with ``max_iter=k`` (when fit does
        not stop early), and a pickle between calls changes nothing.

        Parameters
        ----------
        X, y, sample_weight : as for fit
        classes : array-like, required on the first call (except for multi-label y)
            Every label that will ever be seen; later calls may hold any subset.
        validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
            With early_stopping (which scikit-learn's partial_fit refuses): the set the
            monitored value is measured on from this call on (other data than the previous
            call's replaces it and restarts the stopping record; the same data again keeps
            the record); later calls without it keep measuring on it.  Without any,
            partial_fit with early_stopping=True raises ValueError, as in scikit-learn.

        Returns
        -------
        self
        """
        if not hasattr(self, "classes_") and classes is None and \
                type_of_target(y) != "multilabel-indicator":
            raise ValueError("classes must be passed on the first call to partial_fit "
                             "(every label that will be seen, e.g. numpy.unique(y_all))")
        if hasattr(self, "classes_") and classes is not None and \
                self._kind != "multilabel" and \
                not np.array_equal(self.classes_, np.unique(np.asarray(classes))):
            raise ValueError(f"classes={np.unique(np.asarray(classes))!r} is not the same as on "
                             f"the first call to partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes,
                         validation_data=validation_data)

    # ------------------------------------------------------------------ targets

    def _loss(self):
        return CrossEntropy() if self._kind == "multiclass" else BinaryCrossEntropy()

    def _n_targets(self):
        return len(self.classes_) if self._kind != "binary" else 1

    def _targets(self, y, sample_weight, n, dtype, first, incremental, classes):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        target_type = type_of_target(y)
        multilabel = target_type == "multilabel-indicator"
        if first:
            if multilabel:
                self.classes_ = np.arange(y.shape[1])
                self._label_dtype = y.dtype
            else:
                self.classes_ = np.unique(classes if incremental else y)
            # one class fits, as in scikit-learn: a single sigmoid output trained on all-zero
            # targets; predict returns that class and predict_proba a column of ones
            self._kind = ("multilabel" if multilabel else
                          "binary" if len(self.classes_) <= 2 else "multiclass")
            self.n_outputs_ = self._n_targets()
            self.out_activation_ = "softmax" if self._kind == "multiclass" else "logistic"
        elif multilabel != (self._kind == "multilabel"):
            fitted = "a multi-label indicator matrix" if self._kind == "multilabel" else \
                "class labels"
            raise ValueError(f"y is {target_type} but the classifier was fitted on {fitted}")
        elif self.warm_start and not incremental and not multilabel and \
                set(np.unique(y)) != set(self.classes_):
            raise ValueError("warm_start can only be used where `y` has the same classes as in "
                             f"the previous call to fit. Previously got {self.classes_}, `y` "
                             f"has {np.unique(y)}")
        if multilabel:
            if y.shape[1] != len(self.classes_):
                raise ValueError(f"y has {y.shape[1]} labels; the classifier was fitted with "
                                 f"{len(self.classes_)}")
            if self.class_weight is not None:
                raise ValueError("class_weight is not supported for multi-label targets; "
                                 "pass sample_weight instead")
            Y = np.ascontiguousarray(y, dtype=dtype)
            sw = check_sample_weight(sample_weight, n, np.float64)
            return Y, None if sw is None else sw.astype(dtype)
        index = self._class_index(y)
        sw = check_sample_weight(sample_weight, n, np.float64)
        if self.class_weight is not None:
            if isinstance(self.class_weight, str) and self.class_weight == "balanced" and \
                    incremental:
                raise ValueError("class_weight='balanced' needs the whole training set and "
                                 "is not supported by partial_fit; compute the weights once "
                                 "(sklearn.utils.class_weight.compute_class_weight) and pass "
                                 "them as a dict")
            weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
            per_sample = weights[index]
            sw = per_sample if sw is None else sw * per_sample
            check_weight_total(weight_total(sw, n),
                               "the weights class_weight and sample_weight give the samples",
                               "expected at least one positive weight")
        if self._kind == "binary":
            Y = (index == 1).astype(dtype).reshape(-1, 1)
        else:
            Y = index
        return Y, None if sw is None else sw.astype(dtype)

    def _class_index(self, y):
        """Positions of the labels y in classes_; unknown labels are an error."""
        try:
            index = np.searchsorted(self.classes_, y)
        except TypeError:
            raise ValueError(f"y has labels of type {y.dtype} that cannot be compared with "
                             f"classes_ {self.classes_!r}") from None
        index = np.minimum(index, len(self.classes_) - 1)
        unknown = self.classes_[index] != y
        if np.any(unknown):
            raise ValueError(f"y has labels not in classes_ {self.classes_!r}: "
                             f"{np.unique(y[unknown])!r}")
        return index.astype(np.intp)

    def _stratify(self, Y):
        """scikit-learn's stratification labels: for two classes (or one) the binarized
        column of bools; None (no stratification) otherwise.  scikit-learn stratifies only
        when its binarized target has one column (``n_outputs_ == 1``): its one-hot multiclass
        target has n_classes columns, so it does not stratify multiclass splits either (as of
        scikit-learn 1.9), and neither does this, so the same random_state holds out the same
        rows."""
        if self._kind == "binary":
            return Y > 0.5
        return None

    def _score_encoded(self, X, Y, sw=None):
        """Accuracy on encoded targets (subset accuracy for multi-label), as score does."""
        proba = self.model_.predict(X)
        if not all_finite(proba):  # a diverged network scores NaN, as in scikit-learn
            return float("nan")
        if self._kind == "multiclass":
            return float(accuracy_score(Y, proba.argmax(axis=1), sample_weight=sw))
        hit = ((proba > 0.5) == (Y > 0.5)).all(axis=1)
        return float(np.average(hit, weights=sw))

    # ------------------------------------------------------------------ prediction

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
            Rows sum to 1, except for multi-label targets (one independent probability per
            label).
        """
        with consistent(self):  # the classes of the network predicting
            return self._proba_from_logits(self._outputs(X, link=False).astype(np.float64))

    def _proba_from_logits(self, z):
        """Probabilities from float64 logits, in the output dtype, kept strictly inside (0, 1)
        (a probability that rounds to 0 or 1 is reported as the nearest representable value
        inside), so that log(predict_proba) is finite, as predict_log_proba is."""
        if self._kind == "binary":
            if len(self.classes_) == 1:
                return np.ones_like(z, dtype=self._output_dtype())
            proba = np.hstack([expit(-z), expit(z)])
        elif self._kind == "multiclass":
            proba = softmax(z, axis=1)
        else:
            proba = expit(z)
        dtype = np.dtype(self._output_dtype())
        proba = proba.astype(dtype, copy=False)
        return np.clip(proba, np.finfo(dtype).smallest_subnormal,
                       np.nextafter(dtype.type(1), dtype.type(0)), out=proba)

    def predict_log_proba(self, X):
        """Logarithm of predict_proba, exact and finite also where the probability underflows.

        ``log(predict_proba(X))`` wherever that probability is a normal float, so that it
        sorts and ties exactly as predict_proba does (scikit-learn's checks compare the two
        element by element); where predict_proba underflows (below the smallest normal
        float, about 2.2e-308, or 1.2e-38 for float32 output: reported as a subnormal or the
        smallest one), whose logarithm floors near -708 (-744 at the smallest subnormal,
        log(4.9e-324)), the exact log-softmax (``z - logsumexp(z)``) or log-sigmoid
        (``-logaddexp(0, -z)``) of the float64 logits: a class ruled out by a logit margin
        of 2.9e6 gets -2.9e6.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), in the dtype of predict_proba
            Natural logarithms of the probabilities (not logits), all finite and <= 0.
        """
        z = self._outputs(X, link=False).astype(np.float64)
        return _log_of_proba(self._proba_from_logits(z), lambda: self._log_proba_from_logits(z))

    def _log_proba_from_logits(self, z):
        """Log-probabilities from float64 logits (the stable forms), in float64."""
        if self._kind == "binary":
            if len(self.classes_) == 1:
                return np.zeros_like(z)
            # log sigmoid(t) = -log(1 + exp(-t)); log(1 - sigmoid(z)) = log sigmoid(-z)
            return -np.hstack([np.logaddexp(0.0, z), np.logaddexp(0.0, -z)])
        if self._kind == "multiclass":
            return log_softmax(z, axis=1)
        return -np.logaddexp(0.0, -z)

    def predict(self, X):
        """Predicted labels: the most probable class (or every label with p > 0.5).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) of the type of ``classes_``, or (n_samples, n_labels) of 0/1
        """
        with consistent(self):  # the classes of the network predicting
            proba = self.predict_proba(X)
            if self._kind == "multilabel":
                return (proba > 0.5).astype(self._label_dtype)
            return self.classes_[proba.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor trained by fastnn (scikit-learn API).

    loss="squared_error" fits the mean (half squared error summed over outputs, the Gaussian
    NLL with unit variance); loss="gaussian_nll" fits a mean and a variance per target
    (heteroscedastic regression): ``predict(X, return_std=True)`` returns both.
    """

    _is_fastnn_classifier = False

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=1e-3, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, early_stopping_monitor="score", dtype=None, init=None,
                 dropout=0.0, normalization=None, n_threads=None, continue_run=False):
        self.continue_run = continue_run
        self.loss = loss
        self.n_threads = n_threads
        self.dropout = dropout
        self.normalization = normalization
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.early_stopping_monitor = early_stopping_monitor
        self.dtype = dtype
        self.init = init

    __doc__ += _common_doc(
        """    loss : {"squared_error", "poisson", "gaussian_nll"}, default "squared_error"
        "poisson": the Poisson deviance's gradient with an exp output (counts y >= 0);
        "gaussian_nll" learns a variance per target too (2 network outputs per target).
""",
        """    n_outputs_ : int
        Number of targets.
    out_activation_ : "identity"
""")

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to max_iter epochs (from scratch unless warm_start).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), optional
            One weight per sample: each minibatch minimizes the weighted mean loss
            sum_i w_i l_i / sum_i w_i.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_solver_is_stochastic)
    def partial_fit(self, X, y, sample_weight=None, *, validation_data=None):
        """One epoch over (X, y), continuing the network and the optimizer's state.

        validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
            With early_stopping, as for MLPClassifier.partial_fit.
        """
        return self._fit(X, y, sample_weight, incremental=True,
                         validation_data=validation_data)

    def _loss(self):
        if self.loss == "poisson":
            return PoissonNLL()
        return GaussianNLL(sigma="learned" if self.loss == "gaussian_nll" else 1.0)

    def _loss_scale(self):
        # scikit-learn reports the squared error as a mean over the outputs too
        return self.n_outputs_ if self.loss == "squared_error" else 1.0

    def _n_targets(self):
        return self.n_outputs_

    def _targets(self, y, sample_weight, n, dtype, first, incremental, classes):
        check_choice(self.loss, "loss", ("squared_error", "poisson", "gaussian_nll"))
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        n_targets = 1 if y.ndim == 1 else y.shape[1]
        if first:
            self.n_outputs_ = n_targets
            self.out_activation_ = "identity"
        elif n_targets != self.n_outputs_:
            raise ValueError(f"y has {n_targets} targets; the regressor was fitted with "
                             f"{self.n_outputs_}")
        with np.errstate(over="ignore"):
            Y = np.ascontiguousarray(y.reshape(n, -1), dtype=dtype)
        if not np.isfinite(Y).all():
            raise ValueError(f"y has values that are not finite in {np.dtype(dtype).name} "
                             f"(max |y| = {np.abs(y).max()}); scale the targets")
        sw = check_sample_weight(sample_weight, n, np.float64)
        return Y, None if sw is None else sw.astype(dtype)

    def _stratify(self, y):
        return None

    def _score_encoded(self, X, Y, sw=None):
        mean = self.model_.predict(X)
        if not all_finite(mean):  # a diverged network scores NaN, as in scikit-learn
            return float("nan")
        return float(r2_score(Y, mean, sample_weight=sw))

    def predict(self, X, return_std=False):
        """Predicted targets (the mean), and their standard deviation when asked.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default False
            Also return the predicted standard deviation (loss="gaussian_nll" only).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets), float64
        y_std : same shape, float64 (only with return_std)
            Standard deviation (not variance), in the units of y.
        """
        check_is_fitted(self)
        with consistent(self):  # one epoch boundary of a running fit
            return self._predict(X, return_std)

    def _predict(self, X, return_std):
        if return_std and self.model_._link_name() != "gaussian":
            raise ValueError("return_std=True needs a regressor fitted with "
                             "loss='gaussian_nll'")
        X = validate_data(self, _checked(X, "X"), reset=False, dtype=self.model_.dtype, order="C",
                          accept_sparse=("csr", "csc"))
        out = self._output_dtype()
        if sparse.issparse(X) and not return_std:
            mean = sparse_forward(self.model_, X, link=True).astype(out, copy=False)
            return mean.ravel() if self.n_outputs_ == 1 else mean
        mean = self.model_.predict(X).astype(out, copy=False)
        if self.n_outputs_ == 1:
            mean = mean.ravel()
        if not return_std:
            return mean
        std = self.model_.predict_std(X).astype(out, copy=False)
        return mean, std.ravel() if self.n_outputs_ == 1 else std

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
