"""What an ensemble predicts: the combination of its members' predictions.

With member predictions p_k(x), k = 1..K (Lakshminarayanan, Pritzel & Blundell 2017):

* classification (sigmoid or softmax link): the mean probability ``mean_k p_k(x)``;
* regression trained with ``GaussianNLL("learned")``: member k predicts N(mu_k, sigma_k^2);
  the ensemble is the uniform mixture of those Gaussians, whose mean and variance are ::

      mu*(x)      = mean_k mu_k(x)
      sigma*^2(x) = mean_k sigma_k^2(x)            aleatoric: the noise the members predict
                  + mean_k (mu_k(x) - mu*(x))^2    epistemic: the members' disagreement

  (the population variance over members, as the mixture has: E[Var] + Var[E]).
  ``predict_interval`` approximates the mixture by the Gaussian N(mu*, sigma*^2) by default,
  as Lakshminarayanan et al. do: ``mu* +- z sigma*`` with z the standard normal quantile at
  (1 + level) / 2.  ``method="mixture"`` gives the mixture's own quantiles
  (``mixture_quantiles``): where the members' means disagree the mixture has lighter tails
  than the Gaussian of its variance (a narrower central interval), where their sigmas differ
  heavier ones.  On the data of bench/coverage.py the mixture's 90% interval covered under
  one point less than the Gaussian one once members stop early;
* regression with a fixed scalar ``GaussianNLL(sigma)``: the same with sigma_k = sigma;
  with MSE (or a per-sample sigma, unknown at new inputs) the only variance the ensemble
  knows is the epistemic one (``predict_std`` returns it); intervals need a learned variance
  and raise otherwise;
* Poisson (exp link): the mean rate; the mixture of Poissons has variance
  mean_k lambda_k (aleatoric) + mean_k (lambda_k - lambda*)^2 (epistemic).

``EnsemblePredictor`` holds these methods for ``fastnn.MLPEnsemble``, which inherits them.
"""
from typing import NamedTuple

import numpy as np
from scipy.special import ndtr, ndtri

from fastnn._validation import check_number
from fastnn.nn.model import as_input
from fastnn.nn.sparse import CSRInput, as_csr, issparse
from fastnn.runtime.state import consistent

__all__ = ["EnsemblePrediction", "EnsemblePredictor", "mixture_quantiles"]

_CLASSIFIER_LINKS = ("sigmoid", "softmax")


class EnsemblePrediction(NamedTuple):
    """The ensemble's Gaussian predictive distribution per sample and target.

    Parameters
    ----------
    mean, aleatoric, epistemic : ndarray of shape (n_samples, n_targets)
        As the attributes below (a named tuple: built by ``predict_distribution``).

    Attributes
    ----------
    mean : ndarray of shape (n_samples, n_targets)
        mu* = mean_k mu_k.
    aleatoric : ndarray of shape (n_samples, n_targets)
        mean_k sigma_k^2, the noise variance the members predict (zeros without a learned
        variance).
    epistemic : ndarray of shape (n_samples, n_targets)
        mean_k (mu_k - mu*)^2, the variance of the members' means.
    """
    mean: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray

    @property
    def variance(self):
        """The mixture's variance: aleatoric + epistemic."""
        return self.aleatoric + self.epistemic

    @property
    def std(self):
        """The mixture's standard deviation sqrt(aleatoric + epistemic)."""
        return np.sqrt(self.variance)


class EnsemblePredictor:
    """Predictions, intervals and input derivatives of an ensemble of ``fastnn.MLP``.

    A base of ``fastnn.MLPEnsemble``: it reads ``members`` (K MLPs of one architecture),
    ``dtype``, ``n_inputs`` and ``_check_state()`` (which checks them) of the ensemble.
    """

    def _input(self, X, dense_for=None):
        """X converted once to the members' dtype: a C-contiguous array, or for a
        scipy.sparse X (kept sparse) a CSRInput the members read in place.  `dense_for`
        names a method that needs a dense X (TypeError for a sparse one)."""
        if isinstance(X, CSRInput):
            return X
        if issparse(X):
            if dense_for is not None:
                raise TypeError(f"X is a scipy.sparse {type(X).__name__}; {dense_for} needs a "
                                "dense X (X.toarray())")
            return as_csr(X, "X", self.dtype, self.n_inputs)
        return as_input(X, "X", self.dtype, self.n_inputs)

    def _link(self):
        return self.members[0]._link_name()

    def predict_members(self, X):
        """Every member's ``predict``, stacked: shape (n_members, n_samples, n_outputs').

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        ndarray of shape (n_members, n_samples, n_outputs'), the members' dtype
            What each member's ``predict`` gives: probabilities (not logits) or means.
        """
        with consistent(self):  # every member at one epoch boundary of a running fit
            self._check_state()
            X = self._input(X)
            return np.stack([m.predict(X) for m in self.members])

    def predict(self, X):
        """The ensemble's prediction: the mean of the members' predictions.

        Classification: the mean of the members' probabilities; regression: the mixture's
        mean mu*; Poisson: the mean rate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs) (n_outputs // 2 with a learned variance),
        the members' dtype
            Mean probabilities (not logits), or the mean in the units of y.
        """
        return self.predict_members(X).mean(axis=0, dtype=np.float64).astype(self.dtype)

    def predict_proba(self, X):
        """The mean of the members' class probabilities (sigmoid or softmax link).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), the members' dtype
            Probabilities in [0, 1] (the members' mean; not logits).

        Raises
        ------
        ValueError
            The members' output link is not sigmoid or softmax.
        """
        with consistent(self):  # the link checked is the link predicted with
            if self._link() not in _CLASSIFIER_LINKS:
                raise ValueError(f"predict_proba needs a sigmoid or softmax output; the "
                                 f"members' output link is {self._link()!r}")
            return self.predict(X)

    def predict_distribution(self, X):
        """The mixture's mean and its variance split into aleatoric and epistemic parts.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        EnsemblePrediction
            (mean, aleatoric, epistemic), each of shape (n_samples, n_targets), float64; see
            the module docstring for the formulas.  The aleatoric part is the members' mean
            predicted sigma^2 with ``GaussianNLL("learned")``, sigma^2 with a fixed scalar
            ``GaussianNLL(sigma)``, the mean rate with ``PoissonNLL`` (a Poisson's variance),
            and zero with MSE or a per-sample sigma (unknown at new inputs).

        Raises
        ------
        ValueError
            For classifiers (their uncertainty is in the probabilities: ``predict_proba``).
        """
        with consistent(self):  # every member at one epoch boundary of a running fit
            self._check_state()
            link = self._link()
            if link in _CLASSIFIER_LINKS:
                raise ValueError(f"predict_distribution is for regression; the members' output "
                                 f"link is {link!r} (use predict_proba)")
            X = self._input(X)
            means = np.stack([m.predict(X) for m in self.members]).astype(np.float64)
            mean = means.mean(axis=0)
            epistemic = ((means - mean) ** 2).mean(axis=0)   # two passes: no cancellation
            if link == "gaussian":
                stds = np.stack([m.predict_std(X) for m in self.members]).astype(np.float64)
                aleatoric = (stds ** 2).mean(axis=0)
            elif link == "exp":
                aleatoric = mean.copy()         # a Poisson's variance is its rate
            else:
                # each member's own noise variance: sigma^2 of a fixed scalar
                # GaussianNLL(sigma), none known for MSE or a per-sample sigma (unknown at
                # new X); members built apart (from_models) may have been trained with
                # different sigmas
                aleatoric = np.full_like(mean, np.mean([_fixed_noise_variance(m.loss_)
                                                        for m in self.members]))
        return EnsemblePrediction(mean, aleatoric, epistemic)

    def predict_std(self, X):
        """sqrt(aleatoric + epistemic), shape (n_samples, n_targets), float64.

        With MSE this is the epistemic part alone: the members' disagreement, not the noise
        in y (see ``predict_distribution``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        ndarray of shape (n_samples, n_targets), float64
            Standard deviations (not variances), in the units of y.
        """
        return self.predict_distribution(X).std

    def predict_interval(self, X, level=0.95, method="gaussian"):
        """A central predictive interval at `level`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
        level : float in (0, 1), default 0.95
        method : {"gaussian", "mixture"}, default "gaussian"
            "gaussian": ``mu* -+ z sigma*`` with ``z = Phi^-1((1 + level) / 2)`` (1.96 at
            95%), the Gaussian of the mixture's mean and variance (Lakshminarayanan et
            al.).  "mixture": the mixture's own (1 -+ level) / 2 quantiles
            (``mixture_quantiles``); the two agree when the members do.

        Returns
        -------
        lower, upper : ndarrays of shape (n_samples, n_targets), float64

        Raises
        ------
        ValueError
            Unless the members were trained with ``GaussianNLL("learned")``: without a
            predicted noise level the interval would leave out the noise in y.  A method
            other than "gaussian" or "mixture".

        Notes
        -----
        How often the intervals cover new targets depends on the training: members that fit
        their noise to the training rows predict too small a sigma (``MLPEnsemble.fit``'s
        ``early_stopping="auto"`` guards against it; see its module docstring for the
        coverage measured on real data).
        """
        level = float(check_number(level, "level", low=0.0, high=1.0, low_open=True,
                                   high_open=True))
        if method not in ("gaussian", "mixture"):
            raise ValueError(f"method={method!r}; expected 'gaussian' or 'mixture'")
        with consistent(self):  # every member at one epoch boundary of a running fit
            self._check_state()
            if self._link() != "gaussian":
                raise ValueError(f"predict_interval needs members trained with "
                                 f"GaussianNLL('learned') (a predicted noise level); their "
                                 f"output link is {self._link()!r}")
            X = self._input(X)
            means = np.stack([m.predict(X) for m in self.members]).astype(np.float64)
            stds = np.stack([m.predict_std(X) for m in self.members]).astype(np.float64)
        if method == "mixture":
            return (mixture_quantiles(means, stds, 0.5 - level / 2),
                    mixture_quantiles(means, stds, 0.5 + level / 2))
        mean = means.mean(axis=0)
        std = np.sqrt((stds ** 2).mean(axis=0) + ((means - mean) ** 2).mean(axis=0))
        half = float(ndtri(0.5 + level / 2)) * std
        return mean - half, mean + half

    # ------------------------------------------------------------------ input derivatives

    def input_gradient(self, X, y=None, loss=None, output=None, *, of="output",
                       reduction="none", sample_weight=None, return_std=False):
        """The members' ``MLP.input_gradient``: their mean (and standard deviation).

        The mean of the members' output gradients is the gradient of the ensemble's mean
        prediction.

        Parameters
        ----------
        X, y, loss, output, of, reduction, sample_weight
            As for ``MLP.input_gradient``.
        return_std : bool, default False
            Also return the members' standard deviation.

        Returns
        -------
        mean : ndarray of shape (n_samples, n_inputs), float64
        std : ndarray of shape (n_samples, n_inputs), float64
            Only with return_std: the population standard deviation over members.
        """
        with consistent(self):  # every member at one epoch boundary of a running fit
            self._check_state()
            X = self._input(X, dense_for="input_gradient")
            grads = np.stack([m.input_gradient(X, y, loss, output, of=of,
                                               reduction=reduction,
                                               sample_weight=sample_weight)
                              for m in self.members]).astype(np.float64)
        return _mean_std(grads, return_std)

    def jacobian(self, X, of="output", *, return_std=False):
        """The members' ``MLP.jacobian``: their mean (and standard deviation).

        Parameters
        ----------
        X, of
            As for ``MLP.jacobian``.
        return_std : bool, default False
            Also return the members' standard deviation.

        Returns
        -------
        mean : ndarray of shape (n_samples, n_outputs, n_inputs), float64
            The Jacobian of the ensemble's mean output.
        std : ndarray of the same shape, float64
            Only with return_std: the population standard deviation over members.
        """
        with consistent(self):  # every member at one epoch boundary of a running fit
            self._check_state()
            X = self._input(X, dense_for="jacobian")
            jacs = np.stack([m.jacobian(X, of=of) for m in self.members]).astype(np.float64)
        return _mean_std(jacs, return_std)


def mixture_quantiles(means, stds, q):
    """The q-quantile of the uniform mixture of K Gaussians, per sample and target.

    Solves ``mean_k Phi((x - mu_k) / sigma_k) = q`` by bisection, which needs no starting
    point: the mixture's quantile lies between the smallest and the largest of the members'
    own q-quantiles (at the smallest, every member's CDF is at most q, so their mean is; at
    the largest, at least q), and 100 halvings of that bracket reach the spacing of float64.

    Parameters
    ----------
    means, stds : ndarray of shape (K, ...), float64
        The members' means mu_k and standard deviations sigma_k > 0.
    q : float in (0, 1)

    Returns
    -------
    ndarray of shape means.shape[1:], float64
    """
    means = np.asarray(means, dtype=np.float64)
    stds = np.asarray(stds, dtype=np.float64)
    own = means + float(ndtri(q)) * stds
    lo, hi = own.min(axis=0), own.max(axis=0)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        below = ndtr((mid - means) / stds).mean(axis=0) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
        if np.all(hi - lo <= 4 * np.spacing(np.abs(mid))):
            break
    return 0.5 * (lo + hi)


def _fixed_noise_variance(loss):
    """sigma^2 of a fixed scalar GaussianNLL(sigma), else 0 (MSE, per-sample sigma, none)."""
    if loss is not None and loss.kind == 1 and loss.sample_sigma is None:
        return float(loss.scalar_sigma) ** 2
    return 0.0


def _mean_std(values, return_std):
    mean = values.mean(axis=0)
    if not return_std:
        return mean
    return mean, np.sqrt(((values - mean) ** 2).mean(axis=0))
