"""Prediction: the forward pass of an ``MLP`` (``forward``, ``predict``, ``predict_proba``,
``predict_std``) and ``as_input``, the one conversion of a dense X for compiled code.

A dense X runs through ``boundary.net_forward`` in chunks of PREDICT_CHUNK_ROWS rows; a
scipy.sparse X (or a ``CSRInput``) through the compiled sparse first layer of fastnn.nn.sparse.
Both read the parameters inside ``consistent(model)``: a fit in another thread is seen at one
epoch boundary.
"""
import numpy as np
from scipy import sparse as _scipy_sparse

from fastnn.runtime import boundary
from fastnn.runtime.state import consistent
from fastnn._validation import all_finite, as_ndarray, MAX_DIM
from fastnn.nn.inference import PREDICT_CHUNK_ROWS, predict_fast
from fastnn.nn.network import OUTPUT_LINKS, _LEARNED_GAUSSIAN
from fastnn.nn.sparse import CSRInput, forward_kind

# FLOPs below which fastnn's compiled products run on one thread whatever the count
# (_thread_min_flops of fastnn/_core/_network.pyx): a forward pass this small takes n_threads=1
ONE_THREAD_FLOPS = 1e6


def as_input(X, name, dtype, n_features=None):
    """Convert X once to a C-contiguous 2-D array of `dtype` and check it.

    The documented conversion rule: real numeric input (bool, integers, float16/32/64) is
    cast to the model's dtype; complex, object and string arrays are rejected.  A 1-D X is an
    error (reshape it: one sample is X[None, :], one feature is X[:, None]).
    """
    if (type(X) is np.ndarray and X.dtype == dtype and X.ndim == 2 and X.flags.c_contiguous
            and 0 < X.shape[0] <= MAX_DIM and (n_features is None or X.shape[1] == n_features)
            and all_finite(X)):
        # fast path, the same checks: already the model's dtype and layout, nothing to
        # convert (a one-row predict spent most of its time below otherwise)
        return X
    X = as_ndarray(X, name)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {X.dtype}; expected a real numeric array "
                        "(float32 or float64; bool and integers are converted)")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_features); got shape "
                         f"{X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples (shape {X.shape}); expected at least one")
    if X.shape[0] > MAX_DIM:
        raise ValueError(f"{name} has {X.shape[0]} rows; at most {MAX_DIM} are supported")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features (shape {X.shape}); the model "
                         f"expects {n_features}")
    with np.errstate(over="ignore"):  # overflow is reported below, with the argument's name
        converted = np.ascontiguousarray(X, dtype=dtype)
    if not all_finite(converted):
        bad = np.argwhere(~np.isfinite(converted))[0]
        where = f"row {bad[0]}, column {bad[1]}"
        if np.isfinite(X[tuple(bad)]):
            raise ValueError(f"{name} has values too large for the model's dtype "
                             f"{np.dtype(dtype)} (first at {where}: {float(X[tuple(bad)]):g}); "
                             "scale the inputs or use a float64 model")
        raise ValueError(f"{name} contains NaN or infinity (first at {where})")
    return converted


class Forward:
    """The prediction methods of ``fastnn.MLP`` (a mixin over ``fastnn.nn.network.Network``)."""

    def _input(self, X):
        """X converted once for _forward: a checked C-contiguous array of the model's dtype,
        or a scipy.sparse X as-is (fastnn.nn.sparse converts it)."""
        if _scipy_sparse.issparse(X) or isinstance(X, CSRInput):
            return X
        return as_input(X, "X", self.dtype, self.n_inputs)

    def _forward(self, X, kind=None):
        """The logits (kind: identity) or the output of link `kind` (None: the model's
        link, read with the parameters) for an X converted by _input; computed inside
        ``consistent(self)``, so a fit in another thread is seen at one epoch boundary (its
        running epoch ends first).  Returns (out, kind)."""
        with consistent(self):
            if kind is None:
                kind = self._link_kind()
            # the compiled sparse first layer, X kept sparse (a CSRInput: converted once
            # already, e.g. by an ensemble for all its members)
            if _scipy_sparse.issparse(X) or isinstance(X, CSRInput):
                return forward_kind(self, X, kind, kind != OUTPUT_LINKS["identity"],
                                    PREDICT_CHUNK_ROWS), kind
            out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
            # every core (the same bits for any count), this thread's floating-point mode;
            # a forward pass below one thread's share of a product has nothing to share out,
            # so a small predict skips resolving the default count (environment, affinity,
            # CPU quota: most of a one-row predict's time)
            flops = X.shape[0] * self._forward_flops_per_row()
            boundary.net_forward(self._spec, self.params, X, out, kind, PREDICT_CHUNK_ROWS,
                                 n_threads=1 if flops < ONE_THREAD_FLOPS else None)
        return out, kind

    def forward(self, X):
        """Logits of the last layer (before the output link).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
            Converted once to the model's dtype (see ``as_input``); a sparse X is kept
            sparse (fastnn.nn.sparse: the first layer over its stored entries).

        Returns
        -------
        Z : ndarray of shape (n_samples, n_outputs), the model's dtype
            Logits (not probabilities): the losses take these.
        """
        return self._forward(self._input(X), OUTPUT_LINKS["identity"])[0]

    def predict(self, X):
        """The model's prediction: the output link applied to the logits.

        Identity output: the regression mean; sigmoid/softmax: class probabilities; exp: the
        Poisson rate; a learned-variance Gaussian: the mean columns only (see
        ``predict_std``).  Computed in chunks of PREDICT_CHUNK_ROWS rows through a workspace
        allocated per call, so concurrent calls on one model are safe.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), real
            Converted once to the model's dtype (see ``as_input``).

        Raises
        ------
        TypeError, ValueError
            X is not real, not 2-D, has the wrong width, or holds NaN/inf.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs) (n_outputs // 2 for learned variance)
            The model's dtype.  Probabilities in [0, 1] (sigmoid, softmax; not logits, see
            ``forward``), or the mean / rate in the units of y.
        """
        out = predict_fast(self, X)   # X needing no conversion: one compiled call
        if out is not None:
            return out
        out, kind = self._forward(self._input(X))
        if kind == _LEARNED_GAUSSIAN:
            return np.ascontiguousarray(out[:, : self.n_outputs // 2])
        return out

    def predict_proba(self, X):
        """Class probabilities (sigmoid or softmax output link), shape (n_samples, n_outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), real

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), the model's dtype
            Probabilities in [0, 1] (not logits): rows sum to 1 for softmax; one independent
            probability per output for sigmoid.

        Raises
        ------
        ValueError
            The model's output link is not sigmoid or softmax.
        """
        X = self._input(X)
        with consistent(self):  # the link checked is the link predicted with
            if self._link_name() not in ("sigmoid", "softmax"):
                raise ValueError(f"predict_proba needs a sigmoid or softmax output; this "
                                 f"model's output link is {self._link_name()!r}")
            return self.predict(X)

    def predict_std(self, X):
        """Predicted standard deviation exp(s/2) of a learned-variance Gaussian model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), real

        Raises
        ------
        ValueError
            The model was not trained with ``GaussianNLL(sigma="learned")``.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs // 2), the model's dtype
            Standard deviations (not variances), in the units of y.
        """
        X = self._input(X)
        with consistent(self):  # the link checked is the link predicted with
            if self._link_kind() != _LEARNED_GAUSSIAN:
                raise ValueError("predict_std needs a model trained with "
                                 "GaussianNLL(sigma='learned')")
            out = self._forward(X, _LEARNED_GAUSSIAN)[0]
        return np.ascontiguousarray(out[:, self.n_outputs // 2:])
