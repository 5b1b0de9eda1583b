"""The machinery the scikit-learn estimators share (``_BaseMLP``): parameter checks, the
network, the solvers (``fastnn.fit``'s run, L-BFGS), warm starts and partial fits, and the
weights as scikit-learn's ``coefs_`` / ``intercepts_``.  Early stopping and the records live in
fastnn/interop/sklearn_stopping.py; the estimators in fastnn/interop/sklearn.py.
"""
import copy
import numbers
import warnings
from contextlib import contextmanager

import numpy as np
from scipy import sparse

try:
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"fastnn.interop.sklearn needs scikit-learn >= 1.6 ({exc}); install it with "
                      "pip install scikit-learn") from exc

from fastnn.runtime.state import consistent
from fastnn._validation import (all_finite, check_choice, check_number, check_weight_total,
                                float_dtype, weight_total)
from fastnn.optim.lbfgs import LBFGS, LBFGSObjective
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import SGD, Adam, AdamW, Constant, InverseScaling, ReduceOnPlateau
from fastnn.nn.sparse import check_model, forward as sparse_forward
from fastnn.runtime.threads import _default_threads, resolve_threads
from fastnn.training.trainer import TrainingDiverged, prepare_run
from fastnn.interop.sklearn_stopping import _SEED_BOUND, _ValidationRecords, _checked

#: hidden activations accepted, with scikit-learn's "logistic" for fastnn's "sigmoid"
ACTIVATIONS = ("identity", "logistic", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu",
               "gelu", "gelu_tanh", "silu", "swish", "softplus")
AUTO_BATCH_SIZE = 200


class NonFiniteFit(TrainingDiverged, ValueError):
    """A fit whose loss or weights became NaN or infinite: the ValueError scikit-learn raises
    ("Solver produced non-finite parameter weights"), and a ``fastnn.TrainingDiverged``.
    The estimator keeps the last finite weights."""


class _BaseMLP(_ValidationRecords, BaseEstimator):
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
        # a fit refused before its first step (bad data, a bad argument, fastnn.fit's checks)
        # leaves the estimator as it was: a first fit leaves nothing half-fitted, a refit,
        # warm start or partial_fit the previous fit whole (weights, records, optimizer)
        saved = self._fit_state()
        try:
            prepared = self._prepare_fit(X, y, sample_weight, incremental, classes,
                                         validation_data, first, hidden, activation, dtype)
            if prepared is None:
                return None
            if self.solver == "lbfgs":   # its run checked here too, inside the restore
                return {"run": None, "lbfgs": self._prepare_lbfgs(*prepared[:3], prepared[4])}
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
        except Exception:
            self._restore_fit_state(saved)
            raise
        return {"run": run, "epochs": epochs, "val": val, "incremental": incremental}

    def _fit_state(self):
        """What ``_restore_fit_state`` puts back: every fitted and private attribute (names
        ending or starting with an underscore; the hyperparameters are the user's and a fit
        never changes them), deep-copied, but for the network, kept with a copy of its
        parameters, and the validation rows, which a fit replaces but never changes."""
        names = [k for k in vars(self) if k.startswith("_") or k.endswith("_")]
        shared = {k: getattr(self, k) for k in ("model_", "_validation_set") if k in names}
        state = copy.deepcopy({k: getattr(self, k) for k in names if k not in shared})
        state.update(shared)
        model = shared.get("model_")
        return state, model, None if model is None else model.params.copy()

    def _restore_fit_state(self, saved):
        state, model, params = saved
        for name in [k for k in vars(self) if k.startswith("_") or k.endswith("_")]:
            if name not in state:
                delattr(self, name)
        vars(self).update(state)
        if model is not None:
            model.params[...] = params

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
        record = self._record
        stopped = record.wait > self.n_iter_no_change
        if val is not None and record._best_params is not None and (stopped or not incremental):
            if stopped:
                self.model_.params[...] = record._best_params
            else:
                # keeping where the run got to: a warm_start fit that continues the run goes
                # on from there (as one longer fit does), not from the best weights
                record._restore_best(self.model_.params)
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

    def _prepare_lbfgs(self, X, Y, sw, loss):
        """The checked full-batch L-BFGS run (a run of fastnn's engine,
        fastnn.training.full_batch) with scikit-learn's objective and stopping rules: (run,
        solver, rows)."""
        # scikit-learn's alpha is per unit of weight; a total of 0 is the run's error, raised
        # before any step by its one check (TrainingRun.check)
        weight_sum = weight_total(sw, X.shape[0])
        solver = LBFGS(max_iter=self.max_iter, max_fun=self.max_fun, tol=self.tol,
                       weight_decay=self.alpha / weight_sum if weight_sum > 0 else 0.0)

        def report(iteration, logs):   # scikit-learn's verbose line
            print(f"Iteration {iteration}, loss = {logs['loss']:.8f}", flush=True)

        run, _ = prepare_run(self.model_, X, Y, loss, solver, sample_weight=sw,
                             callbacks=[report] if self.verbose else ())
        return run, solver, X.shape[0]

    def _fit_lbfgs(self, run, solver, n_rows):
        """Run _prepare_lbfgs's run; scikit-learn's records and warnings."""
        try:
            history = run.run()
            result = solver.result_
        except TrainingDiverged as exc:
            # scikit-learn goes on to its records and warnings with the objective's NaN; the
            # network keeps its last finite parameters (non-finite ones are its ValueError)
            history, result = exc.history, exc.result
            if not all_finite(result.x):
                raise NonFiniteFit("Solver produced non-finite parameter weights. The input "
                                   "data may contain large values and need to be "
                                   f"preprocessed. ({exc})", exc.history) from exc
        curve = list(history.loss)
        with consistent(self):  # the records of the run, with its last iterate
            self.n_iter_ = min(int(result.nit), self.max_iter)
            self.t_ += n_rows * self.n_iter_
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
                self._record._run_params = None
                self._warm_split_state = None if split is None else split[0]
            else:
                # from the weights the run had reached, unless they were changed since
                self._record._resume(self.model_.params)
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

    def _outputs(self, X, link):
        """Validated X through the network: logits (link=False) or the output link applied."""
        with consistent(self), self._threads():  # one epoch boundary of a running fit
            check_is_fitted(self)   # (it reads the attributes a fit sets up under this lock)
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
        # (weights whose total is not positive are refused by the objective's data
        # preparation, fastnn.nn.losses.Loss.prepare_sample_weight)
        weight_sum = weight_total(sample_weight, X.shape[0])
        objective = LBFGSObjective(self.model_, X, Y, self._loss(), sample_weight,
                                   self.alpha / weight_sum if weight_sum > 0 else 0.0)
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


def _random_state_at(state):
    """A RandomState in the given ``get_state()`` state."""
    random_state = np.random.RandomState()
    random_state.set_state(state)
    return random_state


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
