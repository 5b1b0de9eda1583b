"""The estimators' early stopping and records: the validation split (scikit-learn's, drawn as
``train_test_split`` draws it, or ``validation_data``), the loss and score curves, the best
record and its patience (``n_iter_no_change``, ``tol``), and the weights restored at the end.

``_ValidationRecords`` is a base of ``fastnn.interop.sklearn_base._BaseMLP``; it reads the
estimator's parameters (``early_stopping``, ``validation_fraction``, ...) and writes its
fitted attributes (``loss_curve_``, ``validation_scores_``, ``best_validation_loss_``, ...).

The record itself (best value, epochs without improvement, the best weights and the weights
the run had reached when they were put back) is the training engine's ``EarlyStopping``,
updated by scikit-learn's rule (``EarlyStopping._update_tolerance``); the validation loss is
the engine's (the run's ``val_loss``).  What stays here is scikit-learn's own: its split
(``train_test_split``, stratified), its score (``accuracy_score``, ``r2_score``: not the
engine's metric, whose last bits differ), when a record starts afresh (warm start keeps it
over a fresh optimizer; the engine continues a record only with the run's optimizer) and
when the best weights come back (after a full fit or a stop, not after each partial_fit).
"""
import hashlib

import numpy as np
from scipy import sparse

try:
    from sklearn.model_selection import train_test_split
    from sklearn.utils.validation import validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"fastnn.interop.sklearn needs scikit-learn >= 1.6 ({exc}); install it with "
                      "pip install scikit-learn") from exc

from fastnn._validation import all_finite, check_weight_total, weight_total
from fastnn.training.callbacks import EarlyStopping
from fastnn.nn.sparse import check_structure

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


def _take_rows(a, idx):
    """Rows idx of an array or of a sparse matrix (kept sparse), or None."""
    if a is None:
        return None
    return a[idx] if sparse.issparse(a) else np.ascontiguousarray(a[idx])


def _checked(X, name):
    """X, after fastnn.nn.sparse.check_structure when it is sparse: scikit-learn's validate_data
    converts a COO/BSR/... X with scipy, whose C++ trusts the stored indices."""
    if sparse.issparse(X):
        check_structure(X, name)
    return X


class _ValidationRecords:
    """Early stopping and the per-epoch records of an estimator (see the module docstring)."""

    def __setstate__(self, state):
        super().__setstate__(state)
        found = vars(self)
        if "_record" not in found and "_no_improvement_count" in found:
            # pickled when the record was four attributes of the estimator's own
            record = EarlyStopping(monitor="loss")
            best = found.pop("_best_value", np.inf)
            record.best_value = None if best == np.inf else best
            record.wait = found.pop("_no_improvement_count")
            record._best_params = found.pop("_best_params", None)
            record._run_params = found.pop("_run_params", None)
            self._record = record

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
        """The stopping record: best monitored value, epochs without improvement, weights,
        and the weights the run reached when the best were restored: the training engine's
        record (``fastnn.EarlyStopping``), kept by scikit-learn's rule
        (``EarlyStopping._update_tolerance``).  It is the estimator's own, never a run's:
        scikit-learn's warm start keeps it over a fresh optimizer, and the estimator
        decides when the best weights come back (``_after_epochs``)."""
        self._record = EarlyStopping(monitor="loss")
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
        wait = self._record._update_tolerance(value, self.n_iter_, self.model_.params
                                              if keep_best else None, self.tol)
        return wait > self.n_iter_no_change

    # scikit-learn's names for two fields of the record (its test_mlp.py reads and sets
    # _no_improvement_count)
    @property
    def _no_improvement_count(self):
        """Epochs without improvement so far."""
        return self._record.wait

    @_no_improvement_count.setter
    def _no_improvement_count(self, value):
        self._own_record().wait = value

    @property
    def _best_value(self):
        """The best monitored value so far (inf before the first epoch)."""
        best = self._record.best_value
        return np.inf if best is None else best

    @_best_value.setter
    def _best_value(self, value):
        self._own_record().best_value = None if value == np.inf else value

    def _own_record(self):
        if "_record" not in vars(self):
            self._record = EarlyStopping(monitor="loss")
        return self._record

    # ------------------------------------------------------------------ prediction
