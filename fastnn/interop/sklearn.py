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
import numpy as np
from scipy import sparse
from scipy.special import expit, log_softmax, softmax

try:
    from sklearn.base import ClassifierMixin, RegressorMixin
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"fastnn.interop.sklearn needs scikit-learn >= 1.6 ({exc}); install it with "
                      "pip install scikit-learn") from exc

from fastnn.runtime.state import consistent
from fastnn._validation import (all_finite, check_choice, check_sample_weight, check_weight_total,
                                weight_total)
from fastnn.nn.losses import BinaryCrossEntropy, CrossEntropy, GaussianNLL, PoissonNLL
from fastnn.nn.sparse import forward as sparse_forward
# ACTIVATIONS and AUTO_BATCH_SIZE: re-exported, public here before the split
from fastnn.interop.sklearn_base import (ACTIVATIONS, AUTO_BATCH_SIZE, NonFiniteFit,  # noqa: F401
                                         _BaseMLP, _log_of_proba, _solver_is_stochastic)
from fastnn.interop.sklearn_stopping import _checked

__all__ = ["MLPClassifier", "MLPRegressor", "NonFiniteFit"]


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
        if not all_finite(Y):
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
        with consistent(self):  # one epoch boundary of a running fit
            check_is_fitted(self)   # (it reads the attributes a fit sets up under this lock)
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
