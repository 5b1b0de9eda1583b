"""Deep ensembles with scikit-learn's estimator API: ``EnsembleRegressor``, ``EnsembleClassifier``.

Each is a meta-estimator over a fastnn estimator (``fastnn.interop.sklearn.MLPRegressor`` /
``MLPClassifier``): ``n_estimators`` clones, each with its own ``random_state`` drawn from the
ensemble's, trained as ``fastnn.MLPEnsemble`` trains its members: each member's fit is
prepared on the calling thread, then the members' runs advance in lockstep epochs, each
epoch ONE compiled job running every member's epoch as a task on fastnn's pool of ``n_jobs``
threads (BLAS at one thread, so nothing oversubscribes the cores); each member's epoch is
recorded (its scikit-learn records, early stopping, verbose lines) on the calling thread, in
member order.  A member is bitwise the estimator fitted alone with its ``random_state``.
``solver="lbfgs"`` members (full batch, no epochs to share) are fitted one after another.  Every hyperparameter of the members (layers, solver, early stopping, dtype,
``loss="gaussian_nll"`` ...) is set on the ``estimator`` you pass, so the ensemble works
wherever the single estimator does: in a ``Pipeline``, ``GridSearchCV``
(``param_grid={"estimator__alpha": ...}``), ``cross_val_score``, and it pickles::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from fastnn.interop.sklearn import MLPRegressor
    from fastnn.interop.sklearn_ensemble import EnsembleRegressor

    reg = make_pipeline(StandardScaler(), EnsembleRegressor(
        MLPRegressor(hidden_layer_sizes=(64, 64), loss="gaussian_nll", random_state=0), n_estimators=5))
    reg.fit(X, y)
    mean, std = reg.predict(X, return_std=True)      # mixture mean and total std

Honest intervals: ``EnsembleRegressor(early_stopping="auto")``, the default, stops members
with ``loss="gaussian_nll"`` on the Gaussian NLL of their own held-out rows (monitoring the
validation loss: monitoring R^2, scikit-learn's score, trains on while the predicted noise
shrinks).  bench/coverage.py measures ``mean -+ 1.645 std`` on scikit-learn's diabetes and
friedman1 data (5 splits x 2 seeds, 25% of the rows held out, default MLPRegressor settings
with two layers of 64): it covered 90% (diabetes) and 92% (friedman1) of the held-out rows
with the default, 67% and 68% with ``early_stopping=False``, and 91% and 76% with members
stopping on R^2.

Combination (Lakshminarayanan, Pritzel & Blundell 2017; see fastnn.ensemble_prediction for
the formulas): the classifier averages the members' probabilities; the regressor averages their
means, and its standard deviation is that of the members' Gaussian mixture,
sqrt(mean_k sigma_k^2 + mean_k (mu_k - mu*)^2) with a ``loss="gaussian_nll"`` estimator, the
spread of the members' means alone otherwise.

``bootstrap=True`` resamples the training rows per member as integer sample weights (the
number of times each row is drawn, multiplied into ``sample_weight``), so every member still
sees every class; a resample that misses every row of positive ``sample_weight`` is drawn
again from the member's stream (``fastnn.training.resample.bootstrap_draw``).  Needs scikit-learn (``pip install scikit-learn``).

``tests/test_sklearn_ensemble.py`` runs scikit-learn's estimator checks on both, with float64
members; float32 members (the default) share fastnn.interop.sklearn's two rounding exceptions
(``check_methods_subset_invariance``, ``check_sample_weight_equivalence_on_dense_data``).
"""
import copy
import numbers
import warnings

import numpy as np
from scipy.special import logsumexp

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import type_of_target
    from sklearn.utils.validation import check_is_fitted
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"fastnn.interop.sklearn_ensemble needs scikit-learn >= 1.6 ({exc}); install "
                      "it with pip install scikit-learn") from exc

from fastnn.runtime.state import consistent
from fastnn.runtime.threads import _default_threads, compiled_threads, resolve_threads
from fastnn.training.engine import TrainingDiverged
from fastnn.training.lockstep import train_in_lockstep
from fastnn.training.resample import bootstrap_draw

__all__ = ["EnsembleClassifier", "EnsembleRegressor"]

#: what fit warns when members with a learned variance train without early stopping
NARROW_INTERVALS_WARNING = (
    "members with loss='gaussian_nll' trained without early stopping fit their noise to the "
    "training rows, and intervals tend to be too narrow: 90% intervals covered 67% and 68% "
    "of held-out rows on scikit-learn's diabetes and friedman1 data, against 90% and 92% "
    "with early_stopping='auto' (bench/coverage.py). "
    "early_stopping='auto' (the default) stops each member on the validation loss of its "
    "own held-out rows")

_SEED_BOUND = np.iinfo(np.int32).max


class _BaseEnsemble(BaseEstimator):
    """Shared: parameter checks, member seeds, bootstrap weights, the lockstep fit.

    A fit trains new members and publishes them when they are done, inside
    ``consistent(self)``; predict and pickle read inside it (fastnn/runtime/state.py), so they see the
    members of one fit, each at one epoch boundary.
    """

    def _state_parts(self):
        """The fitted members, whose state is part of the ensemble's (fastnn/runtime/state.py)."""
        return list(vars(self).get("estimators_", ()))

    def __getstate__(self):
        with consistent(self):   # one fit's members, each at one epoch boundary
            return copy.deepcopy(dict(super().__getstate__()))

    def __init__(self, estimator=None, n_estimators=5, *, bootstrap=False, n_jobs=None,
                 random_state=None):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _default_estimator(self):
        raise NotImplementedError

    def _check_params(self):
        for name, value in (("n_estimators", self.n_estimators), ("n_jobs", self.n_jobs)):
            if value is None and name == "n_jobs":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int; got {value!r} "
                                f"({type(value).__name__})")
            if value < 1:
                raise ValueError(f"{name}={value}; expected {name} >= 1")
        if not isinstance(self.bootstrap, (bool, np.bool_)):
            raise TypeError(f"bootstrap must be True or False; got {self.bootstrap!r}")
        estimator = self._default_estimator() if self.estimator is None else self.estimator
        if not hasattr(estimator, "fit") or "random_state" not in estimator.get_params():
            raise TypeError(f"estimator must be a scikit-learn estimator with a random_state "
                            f"parameter (fastnn.interop.sklearn.MLPRegressor/MLPClassifier); got "
                            f"{estimator!r}")
        return estimator

    def _member_params(self, estimator):
        """Parameters the ensemble sets on its members besides random_state."""
        return {}

    def _fit_members(self, X, y, sample_weight):
        estimator = self._check_params()
        rng = check_random_state(self.random_state)
        seeds = rng.randint(_SEED_BOUND, size=self.n_estimators)
        members = [clone(estimator).set_params(random_state=int(s), **self._member_params(
            estimator)) for s in seeds]
        weights = [sample_weight] * self.n_estimators
        if self.bootstrap:
            n = X.shape[0] if hasattr(X, "shape") else len(X)
            base = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
            # a resample that misses every row of positive weight is drawn again from the
            # member's stream (bootstrap_draw): its fit would have nothing to train on
            weights = [base * np.bincount(bootstrap_draw(np.random.default_rng(int(s)), n,
                                                         base, f"member {k}"), minlength=n)
                       for k, s in enumerate(seeds)]

        # n_jobs threads in all: the pool runs min(members, n_jobs) members' epochs at once
        # (each on one thread), and every other compiled call of the members' fits (lbfgs
        # members, validation scores) takes at most n_jobs (a member's fit took every core
        # before, so n_jobs=1 ran fastnn's pool on 2)
        n_jobs = resolve_threads(self.n_jobs)
        token = _default_threads.set(n_jobs)
        try:
            # every member's fit up to its epochs, in member order (bad input raises here,
            # before any member trains; lbfgs members, full-batch with no epochs to share,
            # train here one after another), then the stochastic members' runs advance in
            # lockstep epochs: one compiled job per epoch on fastnn's pool (MLPEnsemble's)
            begun = [members[k]._begin_fit(X, y, weights[k], incremental=False)
                     for k in range(self.n_estimators)]
            lockstep = [k for k, b in enumerate(begun)
                        if b is not None and b["run"] is not None]
            histories = [None] * len(lockstep)
            errors = [None] * len(lockstep)
            if lockstep:
                # one BLAS thread (compiled_threads: inside a caller's blas_threads(n) block
                # too): the members' arithmetic does not depend on the worker count
                with compiled_threads(1):
                    train_in_lockstep([(begun[k]["run"], begun[k]["epochs"])
                                       for k in lockstep],
                                      min(len(lockstep), n_jobs), histories, errors)
        finally:
            _default_threads.reset(token)
        diverged = dict(zip(lockstep, errors))
        failure = next((exc for exc in errors if exc is not None
                        and not isinstance(exc, TrainingDiverged)), None)
        if failure is not None:
            raise failure   # Ctrl-C, a callback's error: the members keep what they reached
        # every member's records and stopping, then the first member's error (NonFiniteFit
        # of a diverged one): the others keep their complete fits, as in separate fits
        first_error = None
        for k, b in enumerate(begun):
            if b is not None:
                try:
                    members[k]._end_fit(b, diverged.get(k))
                except Exception as exc:
                    first_error = first_error or exc
        if first_error is not None:
            raise first_error
        with consistent(self):  # the new members and what describes them, in one step
            self.estimators_ = members
            self.member_seeds_ = [int(s) for s in seeds]
            self.n_features_in_ = members[0].n_features_in_
            if hasattr(members[0], "feature_names_in_"):
                self.feature_names_in_ = members[0].feature_names_in_
            else:
                vars(self).pop("feature_names_in_", None)
            if hasattr(members[0], "classes_"):
                self.classes_ = members[0].classes_
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # the members' estimators accept sparse X (fastnn.interop.sklearn), so the ensemble does
        tags.input_tags.sparse = True
        return tags


class EnsembleRegressor(RegressorMixin, _BaseEnsemble):
    """A deep ensemble of ``n_estimators`` fastnn regressors (scikit-learn API).

    Parameters
    ----------
    estimator : fastnn.interop.sklearn.MLPRegressor or None
        The member's settings (cloned; its random_state is replaced per member).  Default
        ``MLPRegressor()``.
    n_estimators : int, default 5
    bootstrap : bool, default False
        Train each member on a bootstrap resample, as integer sample weights.
    n_jobs : int or None
        Threads in all: fastnn's pool runs ``min(n_estimators, n_jobs)`` members' epochs
        at once (each on one thread, BLAS at one), and the fits' other compiled calls
        (lbfgs members, validation scores) use at most n_jobs.  Default: the cores
        available to this process (``fastnn.runtime.threads.available_cores``).  The members'
        results do not depend on it.
    random_state : int, RandomState or None
        Draws the members' random_state (``member_seeds_``).
    early_stopping : {"auto", False}, default "auto"
        "auto": members with ``loss="gaussian_nll"`` and a stochastic solver are fitted
        with ``early_stopping=True, early_stopping_monitor="loss"``: each holds out its own
        ``validation_fraction`` of the rows (drawn from its random_state) and stops on their
        Gaussian NLL, because members trained to the end fit their predicted noise to the
        training rows (see "Honest intervals" in the module docstring); an estimator that
        already stops early is left as it is, and other losses are untouched.  False: the
        members are the estimator's clones as given, with a warning when they learn a
        variance without early stopping.

    Attributes
    ----------
    estimators_ : list of fitted members
    member_seeds_ : list of int
    n_features_in_, feature_names_in_
    """

    def __init__(self, estimator=None, n_estimators=5, *, bootstrap=False, n_jobs=None,
                 random_state=None, early_stopping="auto"):
        super().__init__(estimator, n_estimators, bootstrap=bootstrap, n_jobs=n_jobs,
                         random_state=random_state)
        self.early_stopping = early_stopping

    def _default_estimator(self):
        from fastnn.interop.sklearn import MLPRegressor
        return MLPRegressor()

    def _member_params(self, estimator):
        """early_stopping="auto": members with a learned variance (loss="gaussian_nll") and
        a stochastic solver stop early on the validation loss of their own held-out rows
        (``validation_fraction``), unless the estimator already stops early."""
        auto = isinstance(self.early_stopping, str) and self.early_stopping == "auto"
        if not auto and (self.early_stopping is not False
                         and not isinstance(self.early_stopping, np.bool_)
                         or self.early_stopping):
            raise ValueError(f"early_stopping={self.early_stopping!r}; expected 'auto' or "
                             "False (to stop early on another criterion, set it on the "
                             "estimator: MLPRegressor(early_stopping=True, ...))")
        params = estimator.get_params()
        if params.get("loss") != "gaussian_nll" or params.get("early_stopping"):
            return {}
        stochastic = params.get("solver") != "lbfgs"
        if auto and stochastic:
            return {"early_stopping": True, "early_stopping_monitor": "loss"}
        warnings.warn(NARROW_INTERVALS_WARNING, UserWarning, stacklevel=4)
        return {}

    def fit(self, X, y, sample_weight=None):
        """Fit every member on (X, y) (with bootstrap weights when bootstrap=True)."""
        return self._fit_members(X, y, sample_weight)

    def predict(self, X, return_std=False):
        """The mean of the members' predictions; with return_std, the mixture's std.

        Returns
        -------
        mean : ndarray of shape (n_samples,) or (n_samples, n_outputs), float64
        std : ndarray of the same shape, float64
            Only with return_std: sqrt(mean_k sigma_k^2 + mean_k (mu_k - mu*)^2) for members
            with ``loss="gaussian_nll"``; the spread of the members' means otherwise.
        """
        check_is_fitted(self, "estimators_")
        with consistent(self):  # one fit's members
            return self._predict(X, return_std)

    def _predict(self, X, return_std):
        learned = getattr(self.estimators_[0], "loss", None) == "gaussian_nll"
        if learned and return_std:
            pairs = [m.predict(X, return_std=True) for m in self.estimators_]
            means = np.stack([np.asarray(p[0], np.float64) for p in pairs])
            aleatoric = np.mean([np.asarray(p[1], np.float64) ** 2 for p in pairs], axis=0)
        else:
            means = np.stack([np.asarray(m.predict(X), np.float64) for m in self.estimators_])
            aleatoric = 0.0
        mean = means.mean(axis=0)
        if not return_std:
            return mean
        return mean, np.sqrt(aleatoric + ((means - mean) ** 2).mean(axis=0))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class EnsembleClassifier(ClassifierMixin, _BaseEnsemble):
    """A deep ensemble of ``n_estimators`` fastnn classifiers (scikit-learn API).

    Parameters are those of ``EnsembleRegressor``, with ``estimator`` a
    ``fastnn.interop.sklearn.MLPClassifier`` (default ``MLPClassifier()``).  Multi-label targets are
    not supported.

    Attributes
    ----------
    estimators_, member_seeds_, n_features_in_, feature_names_in_
    classes_ : ndarray of shape (n_classes,)
    """

    def _default_estimator(self):
        from fastnn.interop.sklearn import MLPClassifier
        return MLPClassifier()

    def fit(self, X, y, sample_weight=None):
        """Fit every member on (X, y); every member sees every class (see bootstrap)."""
        if type_of_target(y) == "multilabel-indicator":
            raise ValueError("EnsembleClassifier does not support multi-label targets (a 0/1 "
                             "matrix y); fit one fastnn.interop.sklearn.MLPClassifier instead")
        return self._fit_members(X, y, sample_weight)   # (classes_ with the members)

    def predict_proba(self, X):
        """The mean of the members' probabilities, shape (n_samples, n_classes), float64."""
        check_is_fitted(self, "estimators_")
        with consistent(self):  # one fit's members
            return np.mean([np.asarray(m.predict_proba(X), np.float64)
                            for m in self.estimators_], axis=0)

    def predict_log_proba(self, X):
        """Logarithm of predict_proba, exact and finite also where the probability underflows.

        ``log(predict_proba(X))`` where that mean probability is a normal float (the same
        order and ties, as scikit-learn's checks require); where it underflows, ``log mean_k
        p_k = logsumexp_k(log p_k) - log K`` over the members' ``predict_log_proba``, so a
        class every member rules out keeps its (very negative) log-probability instead of
        log(4.9e-324) = -744.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
            Natural logarithms of the mean probabilities (not logits).
        """
        from fastnn.interop.sklearn import _log_of_proba
        check_is_fitted(self, "estimators_")

        def exact():
            logp = np.stack([np.asarray(m.predict_log_proba(X), np.float64)
                             for m in self.estimators_])
            return logsumexp(logp, axis=0) - np.log(len(self.estimators_))
        return _log_of_proba(self.predict_proba(X), exact)

    def predict(self, X):
        """The class of highest mean probability, of the type of ``classes_``."""
        check_is_fitted(self, "estimators_")
        with consistent(self):  # the classes of the members predicting
            return self.classes_[self.predict_proba(X).argmax(axis=1)]
