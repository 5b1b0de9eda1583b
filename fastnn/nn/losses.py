"""Losses as maximum-likelihood estimators, validated: the Python face of ``fastnn._core._losses``.

Every loss is the negative log-likelihood (NLL) of a probability model for the targets whose
parameter is the network's output, and takes the **logits** ``Z`` of the last (linear) layer:
the output link (identity, sigmoid, softmax, exp) is fused into the loss, which makes the
NLL stable for any logit and its gradient ``prediction - target`` (see ``_losses.pyx``).

==========================  ============  ================================================
loss                        output link   probability model of a target row y_i
==========================  ============  ================================================
``MSE``                     identity      Gaussian, fixed sigma (rescaled: same minimizer)
``GaussianNLL(sigma)``      identity      N(z_i, sigma^2), sigma scalar or per sample
``GaussianNLL("learned")``  gaussian      N(mu_i, exp(s_i)), mean and log-variance learned
``BinaryCrossEntropy``      sigmoid       independent Bernoulli(sigmoid(z_ij))
``CrossEntropy``            softmax       Multinoulli(softmax(z_i))
``KLDivergence``            softmax       KL(y_i || softmax(z_i)) = CE - entropy(y_i)
``PoissonNLL``              exp           Poisson(exp(z_ij))
==========================  ============  ================================================

Each reports the weighted mean ``sum_i w_i l_i / sum_i w_i`` over samples (``w_i = 1`` by
default) and its gradient with respect to ``Z``.  ``get_loss`` resolves names.

Arrays: ``Z`` is ``(n_samples, n_outputs)``, float32 or float64; targets, weights and sigma are
converted to Z's dtype.  Real-valued targets may be given as a 1-D array when there is one target
column.  Integer class labels for ``CrossEntropy`` are a 1-D array (see ``CrossEntropy``).
"""
import numbers
import warnings

import numpy as np

from fastnn.runtime import boundary
from fastnn._validation import (all_finite, as_ndarray, check_bool, check_number, check_out,
                                check_sample_weight, float_dtype, weight_total)
# target conversion and checks, shared by the losses
from fastnn.nn.targets import _as_real, _check_Z, _class_labels, _probability_rows, _target_matrix

#: name -> loss code of fastnn/_core/_losses.pxd
KINDS = dict(boundary.LOSS_KINDS)
#: smallest GaussianNLL sigma: 1/sigma^2 must stay finite in float64 (sigma^2 > 1/DBL_MAX)
SIGMA_MIN = float(np.nextafter(1.0 / np.sqrt(np.finfo(np.float64).max), np.inf))

__all__ = ["Loss", "MSE", "GaussianNLL", "BinaryCrossEntropy", "CrossEntropy", "KLDivergence",
           "PoissonNLL", "get_loss", "LOSS_NAMES"]


def _check_inverse_variance(sigma):
    """The kernels weight squared residuals by 1/sigma^2 in double: it must not overflow."""
    if not np.all(sigma >= SIGMA_MIN):
        smallest = float(np.min(sigma))
        raise ValueError(f"sigma={smallest!r} is too small: 1/sigma^2 overflows a float64; "
                         f"expected sigma >= {SIGMA_MIN:.3g} (rescale the targets instead)")


# ---------------------------------------------------------------------------- base class


class Loss:
    """Base class: a per-sample negative log-likelihood l_i of the logits z_i, fused with its link.

    Attributes
    ----------
    name : str
        Canonical name, accepted by ``get_loss`` and stored by ``get_config``.
    kind : int
        Loss code of ``fastnn/_core/_losses.pxd`` (``KINDS``), for the compiled code.
    full : bool
        Whether the NLL includes the terms that do not depend on Z (normalizing constants).
        They change the reported value, never the gradient or the minimizer.
    output_name : {"identity", "sigmoid", "softmax", "exp", "gaussian"}
        The output link from logits to predictions (``output``).
    sample_sigma : None or ndarray of shape (n_samples,), float64
        GaussianNLL with a per-sample sigma only: a read-only copy of the array.
    scalar_sigma : float
        GaussianNLL with a scalar sigma: that sigma; 1.0 for every other loss.
    """

    name = None
    kind = None
    output_name = "identity"
    full = False
    sample_sigma = None
    scalar_sigma = 1.0

    # -------------------------------------------------------------- shapes and targets

    def n_outputs(self, n_targets):
        """Number of model outputs (logits per sample) for `n_targets` target columns.

        Parameters
        ----------
        n_targets : int >= 1
            Target columns; for CrossEntropy with integer labels, the number of classes.

        Returns
        -------
        int
            n_targets, or 2 * n_targets for GaussianNLL("learned") (mean and log-variance).
        """
        check_number(n_targets, "n_targets", low=1, integer=True)
        return int(n_targets)

    def target_width(self, y):
        """Number of target columns that y describes: 1 for a 1-D y, else y.shape[1].

        ``loss.n_outputs(loss.target_width(y))`` is then the width the model's last layer
        needs.  CrossEntropy with integer labels returns max(label) + 1, the fewest classes that
        fit (a model may have more).

        Parameters
        ----------
        y : array-like of shape (n_samples,) or (n_samples, n_targets), real

        Returns
        -------
        int

        Raises
        ------
        TypeError, ValueError
            y is not a real numeric array, is empty, or (CrossEntropy) holds bad labels.
        """
        y = _as_real(y)
        return 1 if y.ndim == 1 else int(y.shape[1])

    def _check_n_out(self, n_out):
        check_number(n_out, "n_out", low=1, integer=True)
        return int(n_out)

    def prepare_targets(self, y, n_out, dtype, *, name="y"):
        """Validate targets against a model with `n_out` outputs and convert them once.

        The number of rows is not checked here (the caller compares it with X or Z).

        Parameters
        ----------
        y : array-like
            Targets in the form this loss accepts (see the class docstring).
        n_out : int
            Number of model outputs (the width of Z).
        dtype : numpy.float32 or numpy.float64
            The model's dtype.
        name : str, default "y"
            y's name in errors ("y_val" for validation targets).

        Returns
        -------
        Y : ndarray of shape (n_samples, n_targets), `dtype`, C-contiguous, or None
            n_targets is n_out except for GaussianNLL("learned") (n_out // 2).  May be y
            itself when y already has that form (it is never written to).
        labels : ndarray of shape (n_samples,), intp, or None
            Integer class labels (CrossEntropy with a 1-D y only).
        """
        dtype = float_dtype(dtype)
        n_out = self._check_n_out(n_out)
        y = _as_real(y, name)
        return self._prepare(y, n_out, dtype, name)

    def _prepare(self, y, n_out, dtype, name):
        Y = _target_matrix(y, n_out, dtype, type(self).__name__, name)
        self._check_range(Y, name)
        return Y, None

    def _check_range(self, Y, name):
        """Subclasses reject targets outside the support of their distribution."""

    def prepare_sample_weight(self, sample_weight, n_samples, dtype, *, whole=True,
                              name="sample_weight"):
        """Validated weights (n_samples,) in `dtype`: finite, >= 0, not all 0; or None.

        Parameters
        ----------
        sample_weight : array-like of shape (n_samples,) or None
            One weight per sample of the weighted mean sum_i w_i l_i / sum_i w_i.
        n_samples : int
        dtype : numpy.float32 or numpy.float64
        whole : bool, default True
            False: the rows are an MPI rank's shard, which may hold only zero weights; the
            total over the ranks is checked by the training run
            (fastnn._validation.check_sample_weight).
        name : str, default "sample_weight"
            The weights' name in errors ("sample_weight_val" for validation weights).

        Returns
        -------
        ndarray of shape (n_samples,), `dtype`, or None when sample_weight is None

        Raises
        ------
        ValueError
            Wrong shape, negative, NaN/inf, or all zero.
        """
        return check_sample_weight(sample_weight, n_samples, float_dtype(dtype), name,
                                   whole=whole)

    def prepare_sigma(self, n_samples, dtype):
        """The per-sample sigma as (n_samples,) of `dtype` (GaussianNLL), or None.

        Parameters
        ----------
        n_samples : int
            Rows of the data the loss is applied to (checked against a per-sample sigma).
        dtype : numpy.float32 or numpy.float64

        Returns
        -------
        ndarray of shape (n_samples,), `dtype`, or None
        """
        return None

    # -------------------------------------------------------------------- evaluation

    def _prepare_call(self, Z, y, sample_weight):
        Z = _check_Z(Z)
        n, n_out = Z.shape
        y = _as_real(y)
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} rows; expected {n}, one per row of Z")
        Y, labels = self.prepare_targets(y, n_out, Z.dtype)
        sw = self.prepare_sample_weight(sample_weight, n, Z.dtype)
        sigma = self.prepare_sigma(n, Z.dtype)
        weight_sum = weight_total(sw, n)
        return Z, Y, labels, sw, sigma, weight_sum

    def loss_and_grad(self, Z, y, sample_weight=None, *, out=None):
        """The weighted mean loss and its gradient with respect to the logits.

        Parameters
        ----------
        Z : ndarray of shape (n_samples, n_outputs), float32 or float64
            Logits (the last layer's pre-activation); finite.  Copied once if not C-contiguous.
        y : array-like
            Targets, one row per sample (see the class docstring for their form).
        sample_weight : array-like of shape (n_samples,), optional
            Finite weights >= 0, not all zero, one per sample: the loss is the weighted mean
            sum_i w_i l_i / sum_i w_i.  Integer weights act like repeated rows.
        out : ndarray of shape (n_samples, n_outputs), Z's dtype, optional
            C-contiguous, writeable buffer for the gradient, returned as G.  It may be Z itself
            (the gradient then overwrites the logits, as in the training loop), but must not
            overlap y or sample_weight.

        Returns
        -------
        loss : float
            ``sum_i w_i l_i / sum_i w_i``.
        G : ndarray of shape (n_samples, n_outputs), Z's dtype
            ``G[i] = w_i / sum_k w_k * dl_i/dz_i``, the gradient of `loss` with respect to Z.
        """
        Z_in = Z
        Z, Y, labels, sw, sigma, weight_sum = self._prepare_call(Z, y, sample_weight)
        if out is None:
            G = np.empty_like(Z)
        else:
            reads = [(nm, a) for nm, a in (("y", Y), ("y", labels), ("sample_weight", sw))
                     if a is not None]
            if out is not Z_in:
                reads.append(("Z", Z))
            G = check_out(out, "out", Z.shape, Z.dtype, reads)
        total = boundary.loss_grad(self.kind, self.full, self.scalar_sigma, Z, Y, labels, sw,
                                   sigma, 1.0 / weight_sum, G)
        return total / weight_sum, G

    def __call__(self, Z, y, sample_weight=None):
        """The weighted mean loss ``sum_i w_i l_i / sum_i w_i`` alone (see ``loss_and_grad``).

        Returns
        -------
        loss : float
        """
        Z, Y, labels, sw, sigma, weight_sum = self._prepare_call(Z, y, sample_weight)
        total = boundary.loss_grad(self.kind, self.full, self.scalar_sigma, Z, Y, labels, sw,
                                   sigma, 1.0, None)
        return total / weight_sum

    def output(self, Z):
        """The prediction in the target space: the output link applied to the logits.

        Parameters
        ----------
        Z : ndarray of shape (n_samples, n_outputs), float32 or float64
            NaN/inf are allowed and propagate.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), Z's dtype
            A new array (Z is not modified).
        """
        out = np.array(_check_Z(Z, finite=False), order="C", copy=True)
        boundary.loss_output(self.kind, out)
        return out

    # ------------------------------------------------------------------ serialization

    def get_config(self):
        """A JSON-serializable dict from which ``Loss.from_config`` rebuilds this loss."""
        return {"name": self.name}

    @staticmethod
    def from_config(config):
        """Rebuild a loss from ``get_config()``'s dict.

        Parameters
        ----------
        config : dict
            ``{"name": <canonical name>, **parameters}``.

        Returns
        -------
        Loss
        """
        if not isinstance(config, dict) or "name" not in config:
            raise TypeError(f"config must be a dict with a 'name' key; got {config!r}")
        params = {k: v for k, v in config.items() if k != "name"}
        name = config["name"]
        if name not in _CLASSES:
            raise ValueError(f"config name {name!r} is not a loss; expected one of "
                             f"{', '.join(repr(n) for n in _CLASSES)}")
        cls = _CLASSES[name]
        if cls is GaussianNLL and params.get("sigma") == "per_sample":
            warnings.warn("the per-sample sigma array of this GaussianNLL was not serialized; "
                          "rebuilt with sigma=1.0 (pass GaussianNLL(sigma=array) again to "
                          "train with per-sample weights)", UserWarning, stacklevel=2)
            params["sigma"] = 1.0
        try:
            return cls(**params)
        except TypeError as exc:
            raise ValueError(f"config {config!r} has parameters that {cls.__name__} does not "
                             f"take ({exc})") from None

    def __repr__(self):
        return f"{type(self).__name__}()"


class _ProbabilityOutput:
    def predict_proba(self, Z):
        """Class probabilities: the output link of the logits (same as ``output``).

        Parameters
        ----------
        Z : ndarray of shape (n_samples, n_outputs), float32 or float64

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), Z's dtype
            Sigmoid: the probability of the positive class, per output.  Softmax: rows that
            sum to 1.
        """
        return self.output(Z)


# -------------------------------------------------------------------------------- losses


class MSE(Loss):
    """Mean squared error: the Gaussian negative log-likelihood with a fixed sigma, rescaled.

    Per sample with k outputs, identity output link::

        l_i = (1/k) sum_j (z_ij - y_ij)^2,        dl_i/dz_ij = 2 (z_ij - y_ij) / k

    MLE reading: for y_ij ~ N(z_ij, sigma^2) the NLL is
    ``GaussianNLL(sigma) = k * MSE / (2 sigma^2) [+ k (log sigma + 0.5 log 2 pi) if full]``,
    a positive multiple of MSE plus a constant: the same minimizer.  MSE is maximum likelihood
    under Gaussian noise of unknown but fixed variance.

    Targets: ``y`` of shape (n_samples, k), or (n_samples,) when k == 1; finite real numbers.
    """

    name = "mse"
    kind = KINDS["mse"]


class GaussianNLL(Loss):
    """Gaussian negative log-likelihood, fixed or learned variance.

    Parameters
    ----------
    sigma : float > 0, array-like of shape (n_samples,), or "learned", default 1.0
        The noise's standard deviation (not its variance), in the units of y.  A positive
        scalar: one noise level for every target.  An array: sigma_i per sample
        (finite, > 0), which weights sample i by 1/sigma_i^2 (less confident samples count
        less); it is tied to the rows of the training data, in order.  Every sigma must be at
        least ``SIGMA_MIN`` (7.5e-155), so that 1/sigma^2 is a finite float64.  "learned": the
        heteroscedastic model below, whose network predicts a log-variance per target.
    full : bool, default False
        Include the constant terms (``log sigma + 0.5 log 2 pi`` per target), so that the value
        is the exact NLL; they change neither the gradient nor the minimizer.

    Notes
    -----
    **Fixed sigma** (identity output link), k targets per sample, y_ij ~ N(z_ij, sigma_i^2)::

        l_i = sum_j (y_ij - z_ij)^2 / (2 sigma_i^2)  [+ k (log sigma_i + 0.5 log 2 pi)]
        dl_i/dz_ij = (z_ij - y_ij) / sigma_i^2

    With one scalar sigma this is ``k * MSE / (2 sigma^2)`` plus a constant, so it has MSE's
    minimizer (docs/theory.md, section 4: MSE is an MLE in disguise).

    **Learned variance** (``sigma="learned"``, output link "gaussian"): the model has 2k outputs,
    ``Z = [mu (k) | s (k)]`` with s the log-variance, and y_ij ~ N(mu_ij, exp(s_ij))::

        l_i = sum_j 0.5 (y_ij - mu_ij)^2 exp(-s_ij) + 0.5 s_ij  [+ 0.5 log 2 pi per target]
        dl_i/dmu_ij = (mu_ij - y_ij) exp(-s_ij)
        dl_i/ds_ij  = 0.5 - 0.5 (y_ij - mu_ij)^2 exp(-s_ij)

    A residual that is exactly 0 contributes exactly 0, whatever s (no 0 * inf); nothing is
    clamped, so a log-variance driven to -inf shows up as an infinite loss instead of a silent
    clip.  ``output`` returns mu and ``predict_std`` the standard deviation exp(s / 2).

    Targets: ``y`` of shape (n_samples, k), or (n_samples,) when k == 1; finite.

    A per-sample sigma array is not serialized by ``get_config`` (it belongs to the data):
    the config records ``sigma="per_sample"`` and ``from_config`` rebuilds sigma=1.0 with a
    warning.
    """

    name = "gaussian_nll"

    def __init__(self, sigma=1.0, full=False):
        self.full = check_bool(full, "full")
        self.kind = KINDS["gaussian"]
        self.output_name = "identity"
        self.sample_sigma = None
        self.scalar_sigma = 1.0
        if isinstance(sigma, str):
            if sigma != "learned":
                raise ValueError(f"sigma={sigma!r} is not supported; expected a positive "
                                 "number, an array of shape (n_samples,) or 'learned'")
            self.kind = KINDS["gaussian_learned"]
            self.output_name = "gaussian"
        elif isinstance(sigma, numbers.Real) and not isinstance(sigma, (bool, np.bool_)):
            self.scalar_sigma = float(check_number(sigma, "sigma", low=0.0, low_open=True))
            _check_inverse_variance(np.float64(self.scalar_sigma))
        else:
            self.sample_sigma = self._check_sigma_array(sigma)

    @staticmethod
    def _check_sigma_array(sigma):
        arr = as_ndarray(sigma, "sigma")
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"sigma has dtype {arr.dtype}; expected a positive number, a real "
                            "array of shape (n_samples,) or 'learned'")
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"sigma has shape {arr.shape}; expected a scalar or a non-empty "
                             "1-D array of shape (n_samples,)")
        if not all_finite(arr):
            raise ValueError("sigma contains NaN or infinity; expected finite values > 0")
        if not (arr > 0).all():
            raise ValueError(f"sigma has entries <= 0 (min {arr.min()}); expected every "
                             "sigma_i > 0")
        arr = np.array(arr, dtype=np.float64, copy=True)
        _check_inverse_variance(arr)
        arr.flags.writeable = False
        return arr

    @property
    def learned(self):
        """True for the learned-variance (heteroscedastic) model."""
        return self.kind == KINDS["gaussian_learned"]

    def n_outputs(self, n_targets):
        n = super().n_outputs(n_targets)
        return 2 * n if self.learned else n

    def _check_n_out(self, n_out):
        n_out = super()._check_n_out(n_out)
        if self.learned and n_out % 2:
            raise ValueError(f"GaussianNLL(sigma='learned') needs an even number of outputs "
                             f"(a mean and a log-variance per target); got {n_out}")
        return n_out

    def _prepare(self, y, n_out, dtype, name):
        return super()._prepare(y, n_out // 2 if self.learned else n_out, dtype, name)

    def prepare_sigma(self, n_samples, dtype):
        if self.sample_sigma is None:
            return None
        dtype = float_dtype(dtype)
        if self.sample_sigma.shape[0] != n_samples:
            raise ValueError(f"sigma has {self.sample_sigma.shape[0]} entries; expected "
                             f"{n_samples}, one per sample")
        with np.errstate(over="ignore", under="ignore"):  # reported below
            sig = np.ascontiguousarray(self.sample_sigma, dtype=dtype)
        if not (all_finite(sig) and (sig > 0).all()):
            raise ValueError(f"sigma has entries outside the range of {dtype} (min "
                             f"{self.sample_sigma.min()}, max {self.sample_sigma.max()})")
        return sig

    def output(self, Z):
        """The predicted mean: Z itself (copied) for a fixed sigma, the first half of the
        columns for sigma="learned".

        Parameters
        ----------
        Z : ndarray of shape (n_samples, n_outputs), float32 or float64

        Returns
        -------
        ndarray of shape (n_samples, n_outputs) or (n_samples, n_outputs // 2), Z's dtype
        """
        if not self.learned:
            return super().output(Z)
        Z = _check_Z(Z, finite=False)
        k = self._check_n_out(Z.shape[1]) // 2
        return np.array(Z[:, :k], order="C", copy=True)

    def predict_std(self, Z):
        """The predicted standard deviation exp(s / 2) of the learned-variance model.

        Parameters
        ----------
        Z : ndarray of shape (n_samples, 2 k), float32 or float64
            Logits: k means, then k log-variances s.

        Returns
        -------
        ndarray of shape (n_samples, k), Z's dtype
            Standard deviations (not variances), in the units of y.
        """
        if not self.learned:
            raise ValueError("predict_std needs GaussianNLL(sigma='learned'); with a fixed "
                             "sigma the standard deviation is sigma itself")
        Z = _check_Z(Z, finite=False)
        k = self._check_n_out(Z.shape[1]) // 2
        out = np.array(Z, order="C", copy=True)
        boundary.loss_output(self.kind, out)
        return np.ascontiguousarray(out[:, k:])

    def get_config(self):
        if self.learned:
            sigma = "learned"
        elif self.sample_sigma is not None:
            sigma = "per_sample"
        else:
            sigma = self.scalar_sigma
        return {"name": self.name, "sigma": sigma, "full": self.full}

    def __repr__(self):
        if self.learned:
            sigma = "'learned'"
        elif self.sample_sigma is not None:
            sigma = f"<per-sample array of {self.sample_sigma.shape[0]}>"
        else:
            sigma = repr(self.scalar_sigma)
        return f"GaussianNLL(sigma={sigma}, full={self.full})"


class BinaryCrossEntropy(_ProbabilityOutput, Loss):
    """Binary cross-entropy from logits: independent Bernoulli outputs, sigmoid output link.

    Per sample with k outputs, phi = sigmoid(z)::

        l_i = -sum_j [y_ij log phi_ij + (1 - y_ij) log(1 - phi_ij)]
            =  sum_j max(z_ij, 0) - y_ij z_ij + log(1 + exp(-|z_ij|))    (the form computed)
        dl_i/dz_ij = phi_ij - y_ij

    The computed form is exact for any logit: z = +-1e4 gives 0 or 1e4, never log(0).  The
    outputs are independent Bernoulli variables, so their NLLs add up over j (multi-label).

    MLE reading: p(y | x) = phi^y (1 - phi)^(1 - y); minimizing the mean NLL is maximum
    likelihood for the Bernoulli parameter phi = sigmoid(f(x)).

    Targets: ``y`` of shape (n_samples, k), or (n_samples,) when k == 1, in [0, 1] (0/1 labels
    or soft targets; bool is accepted).
    """

    name = "bce"
    kind = KINDS["bce"]
    output_name = "sigmoid"

    def _check_range(self, Y, name):
        lo, hi = Y.min(), Y.max()
        if lo < 0 or hi > 1:
            raise ValueError(f"{name} has values in [{lo}, {hi}]; BinaryCrossEntropy expects "
                             "targets in [0, 1] (Bernoulli probabilities or 0/1 labels)")


class CrossEntropy(_ProbabilityOutput, Loss):
    """Softmax cross-entropy from logits: a Multinoulli output, softmax output link.

    Per sample with k classes, integer label c_i or probability row y_i::

        l_i = -sum_j y_ij log softmax(z_i)_j = (sum_j y_ij) logsumexp(z_i) - sum_j y_ij z_ij
        dl_i/dz_ij = (sum_j y_ij) softmax(z_i)_j - y_ij     (softmax - onehot for labels)

    computed with the largest logit subtracted, so any logits are safe.

    MLE reading: p(y = j | x) = softmax(f(x))_j; with one-hot targets l_i is -log p(c_i | x_i).

    Targets, two forms:

    * integer class labels: 1-D ``y`` of shape (n_samples,) with values in [0, n_outputs).
      Integer or bool dtype, or floating-point values that are whole numbers (3.0 is class 3;
      3.5 is an error).  The number of classes is the model's output width; ``target_width(y)``
      gives the fewest that fit (max label + 1).
    * one-hot or probability rows: 2-D ``y`` of shape (n_samples, n_outputs), entries >= 0,
      each row summing to 1 within sqrt(float32 epsilon) = 3.5e-4 (whatever the dtypes: rows
      normalised in float32 and upcast must pass).  Rows are otherwise used as given: value
      and gradient are exact for the row sums there are.
    """

    name = "cross_entropy"
    kind = KINDS["cross_entropy"]
    output_name = "softmax"

    def target_width(self, y):
        y = _as_real(y)
        if y.ndim == 1:
            return int(_class_labels(y).max()) + 1
        return super().target_width(y)

    def _prepare(self, y, n_out, dtype, name):
        if y.ndim == 1:
            return None, _class_labels(y, n_out, name)
        return _probability_rows(y, n_out, dtype, "CrossEntropy",
                                 "; pass integer class labels as a 1-D array", name), None


class KLDivergence(_ProbabilityOutput, Loss):
    """Kullback-Leibler divergence KL(y_i || softmax(z_i)) from logits, softmax output link.

    Per sample with k classes and a probability row y_i (0 log 0 = 0)::

        l_i = sum_j y_ij (log y_ij - log softmax(z_i)_j)
            = CrossEntropy l_i - H(y_i),        H(y_i) = -sum_j y_ij log y_ij
        dl_i/dz_ij = (sum_j y_ij) softmax(z_i)_j - y_ij     (the cross-entropy gradient)

    MLE reading: KL(p_data || p_model) = -H(p_data) + CE(p_data, p_model); the entropy does not
    depend on the model, so minimizing KL, minimizing cross-entropy and maximizing likelihood
    give the same parameters.  KL is 0 at a perfect fit, which CE is not for soft targets.

    Targets: probability rows ``y`` of shape (n_samples, n_outputs), as for CrossEntropy
    (use CrossEntropy for integer labels: with one-hot rows KL equals CE).
    """

    name = "kl"
    kind = KINDS["kl"]
    output_name = "softmax"

    def _prepare(self, y, n_out, dtype, name):
        return _probability_rows(y, n_out, dtype, "KLDivergence",
                                 "; for integer class labels use CrossEntropy", name), None


class PoissonNLL(Loss):
    """Poisson negative log-likelihood from log-rates, exp output link.

    Parameters
    ----------
    full : bool, default False
        Include the term ``lgamma(y + 1) = log(y!)``, which does not depend on Z, so the value
        is the exact NLL.

    Notes
    -----
    Per sample with k outputs, rate lambda = exp(z)::

        l_i = sum_j exp(z_ij) - y_ij z_ij  [+ lgamma(y_ij + 1)]
        dl_i/dz_ij = exp(z_ij) - y_ij

    MLE reading: p(y | x) = lambda^y exp(-lambda) / y! with log lambda = f(x): a Poisson
    regression (a GLM with log link) when f is linear.

    Targets: ``y`` of shape (n_samples, k), or (n_samples,) when k == 1; counts >= 0
    (non-integer values are accepted: the formula is the same).
    """

    name = "poisson"
    kind = KINDS["poisson"]
    output_name = "exp"

    def __init__(self, full=False):
        self.full = check_bool(full, "full")

    def _check_range(self, Y, name):
        if (Y < 0).any():
            raise ValueError(f"{name} has negative values (min {Y.min()}); PoissonNLL expects "
                             "counts >= 0")

    def get_config(self):
        return {"name": self.name, "full": self.full}

    def __repr__(self):
        return f"PoissonNLL(full={self.full})"


_CLASSES = {cls.name: cls for cls in (MSE, GaussianNLL, BinaryCrossEntropy, CrossEntropy,
                                      KLDivergence, PoissonNLL)}

#: every name get_loss accepts -> the class it builds (with default parameters).  Besides
#: fastnn's own names: the Keras and PyTorch names whose meaning is the same here, given that
#: fastnn's losses take logits and apply their link themselves (so Keras' from_logits and
#: PyTorch's BCELoss-versus-BCEWithLogitsLoss distinction do not arise: both mean the
#: Bernoulli NLL of a sigmoid output).  Left out on purpose: PyTorch's KLDivLoss and
#: GaussianNLLLoss (other inputs: log-probabilities, a variance argument) and scikit-learn's
#: "log_loss" (binary or multiclass depending on the estimator).
LOSS_NAMES = {
    "mse": MSE, "squared_error": MSE,
    "mean_squared_error": MSE, "MSELoss": MSE,  # Keras, PyTorch
    "gaussian_nll": GaussianNLL,
    "bce": BinaryCrossEntropy, "binary_crossentropy": BinaryCrossEntropy,
    "BCEWithLogitsLoss": BinaryCrossEntropy, "BCELoss": BinaryCrossEntropy,
    "cross_entropy": CrossEntropy, "crossentropy": CrossEntropy,
    # Keras: one-hot rows and integer labels; CrossEntropy accepts both forms
    "categorical_crossentropy": CrossEntropy, "sparse_categorical_crossentropy": CrossEntropy,
    "CrossEntropyLoss": CrossEntropy,
    "kl": KLDivergence, "kl_divergence": KLDivergence,
    "poisson": PoissonNLL, "poisson_nll": PoissonNLL, "PoissonNLLLoss": PoissonNLL,
}


def get_loss(loss):
    """Resolve a loss name or instance.

    Parameters
    ----------
    loss : str or Loss
        A Loss instance is returned as it is; a name (see ``LOSS_NAMES``) builds the loss with
        its default parameters (GaussianNLL: sigma=1.0; PoissonNLL: full=False).

    Returns
    -------
    Loss
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss in LOSS_NAMES:
            return LOSS_NAMES[loss]()
        import difflib
        folded = {n.lower().replace("_", ""): n for n in LOSS_NAMES}
        close = folded.get(loss.lower().replace("_", "")) or next(
            iter(difflib.get_close_matches(loss, LOSS_NAMES, n=1)), None)
        valid = ", ".join(repr(n) for n in LOSS_NAMES)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise ValueError(f"loss={loss!r} is not supported{hint}; expected one of {valid}, or a "
                         "fastnn.nn.losses.Loss instance")
    raise TypeError(f"loss must be a name or a fastnn.nn.losses.Loss instance; got "
                    f"{type(loss).__name__}")
