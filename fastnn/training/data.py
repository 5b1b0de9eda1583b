"""Data preparation for a run: (X, y, sample_weight, sigma) validated and converted once, in
the model's dtype, before any weight moves.

``DataPreparation`` holds the methods ``fastnn.MLP`` inherits (``prepare_data``,
``prepare_targets`` and, for a dense or scipy.sparse X, ``_prepare_any``), which ``fit``, the
estimators, the ensembles, ``evaluate``, ``loss_and_grad`` and ``input_gradient`` all use;
``_prepare_fit_data`` adds the validation data or split of a fit.
"""
import numpy as np
from scipy import sparse as _scipy_sparse

from fastnn._validation import as_ndarray
from fastnn.nn.forward import as_input
from fastnn.nn.sparse import CSRInput, as_csr, check_model


class DataPreparation:
    """The data-preparation methods of ``fastnn.MLP`` (a mixin over
    ``fastnn.nn.network.Network``)."""

    def prepare_data(self, X, y, loss, sample_weight=None, *, whole=True, name="X"):
        """Validate and convert (X, y, sample_weight, per-sample sigma) once for compiled code.

        Returns (loss, X, Y, labels, sample_weight, sigma) with every array C-contiguous in the
        model's dtype (labels: intp), ready for the compiled kernels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), real
        y : array-like
            Targets in the form the loss accepts, one row per sample.
        loss : str or fastnn.nn.losses.Loss
        sample_weight : array-like of shape (n_samples,), optional
            One weight per sample (default 1): the loss is the weighted mean
            sum_i w_i l_i / sum_i w_i (only the ratios matter).
        whole : bool, default True
            As for ``prepare_targets``.
        name : str, default "X"
            X's name in errors ("X_val" for validation data).

        Raises
        ------
        TypeError, ValueError
            Malformed X, y or sample_weight, or a loss that does not fit the model.
        """
        loss = self._use_loss(loss)  # a bad loss is reported before a bad X
        X = as_input(X, name, self.dtype, self.n_inputs)
        loss, Y, labels, sw, sigma = self.prepare_targets(X.shape[0], y, loss, sample_weight,
                                                          whole=whole, name=name)
        return loss, X, Y, labels, sw, sigma

    def _prepare_any(self, X, y, loss, sample_weight, name="X", *, whole=True):
        """prepare_data, or for a scipy.sparse X its checked CSR form (fastnn.nn.sparse.as_csr,
        X kept sparse: the compiled sparse kernels of fastnn/_core/_sparse.pyx) with
        prepare_targets.  name: X's name in errors about a sparse X; whole: as for
        prepare_targets."""
        if not _scipy_sparse.issparse(X) and not isinstance(X, CSRInput):
            return self.prepare_data(X, y, loss, sample_weight, whole=whole, name=name)
        loss = self._use_loss(loss)  # a bad loss is reported before a bad X, as for dense X
        check_model(self, name)
        if not isinstance(X, CSRInput):
            X = as_csr(X, name, self.dtype, self.n_inputs)
        elif X.data.dtype != self.dtype or X.shape[1] != self.n_inputs:
            # already converted (fastnn.ensemble converts once for all its members)
            raise ValueError(f"{name} is a CSRInput of dtype {X.data.dtype} and shape "
                             f"{X.shape}; the model expects {self.dtype} and {self.n_inputs} "
                             "columns")
        return (loss, X) + self.prepare_targets(X.shape[0], y, loss, sample_weight,
                                                whole=whole, name=name)[1:]

    def prepare_targets(self, n, y, loss, sample_weight=None, *, whole=True, name="X"):
        """The part of ``prepare_data`` that does not touch X, for n samples.

        Parameters
        ----------
        n : int
            Number of samples (rows of X, which may be sparse).
        y : array-like
            Targets in the form the loss accepts (see fastnn.nn.losses), one row per sample.
        loss : str or fastnn.nn.losses.Loss
        sample_weight : array-like of shape (n,), optional
            One weight per sample (default 1): the loss is the weighted mean
            sum_i w_i l_i / sum_i w_i (only the ratios matter).
        whole : bool, default True
            False: the n samples are an MPI rank's shard, whose weights may all be zero
            (``Loss.prepare_sample_weight``).
        name : str, default "X"
            X's name, which names y and sample_weight in errors after it: "X_val" gives
            "y_val" and "sample_weight_val".

        Returns
        -------
        (loss, Y, labels, sample_weight, sigma), each array C-contiguous in the model's dtype
        (labels: intp) or None.

        Raises
        ------
        ValueError
            y missing or not one row per sample, or targets/weights the loss rejects.
        """
        loss = self._use_loss(loss)
        y_name, sw_name = partner_names(name)
        if _scipy_sparse.issparse(y):
            as_ndarray(y, y_name)  # the TypeError that says so (len() of it would be scipy's)
        if y is None or not hasattr(y, "__len__") or getattr(y, "ndim", 1) == 0:
            raise ValueError(f"{y_name} is {y!r}; expected an array of targets with one row "
                             f"per sample ({n} here)")
        y_len = len(y)
        if y_len != n:
            raise ValueError(f"{name} has {n} samples but {y_name} has {y_len}; expected one "
                             "target row per sample")
        Y, labels = loss.prepare_targets(y, self.n_outputs, self.dtype, name=y_name)
        sw = None
        if sample_weight is not None:
            sw = loss.prepare_sample_weight(sample_weight, n, self.dtype, whole=whole,
                                            name=sw_name)
        sigma = loss.prepare_sigma(n, self.dtype)
        return loss, Y, labels, sw, sigma


def _split_validation(arrays, n, fraction, rng, offset=0, n_global=None):
    """Hold out round(fraction * n_global) random rows of the data set (None entries stay None).

    The rows held out are drawn over the whole data set, ``rng.permutation(n_global)``:
    under MPI every rank draws the same permutation (the same seed) and keeps its own rows
    ``offset .. offset + n - 1`` of it, so the ranks hold out together exactly the rows one
    process would (fastnn.training.distributed: the shards concatenated in rank order).
    One process: offset 0, n_global = n.  The rows keep their order in both parts."""
    n_global = n if n_global is None else n_global
    n_val = int(round(fraction * n_global))
    if n_val < 1 or n_val >= n_global:
        raise ValueError(f"validation_split={fraction} leaves {n_global - n_val} training and "
                         f"{n_val} validation samples out of {n_global}; expected at least one "
                         "of each")
    held = np.zeros(n_global, dtype=bool)
    held[rng.permutation(n_global)[:n_val]] = True
    mine = held[offset:offset + n]
    val_idx, train_idx = np.flatnonzero(mine), np.flatnonzero(~mine)
    def take(a, idx):
        if a is None:
            return None
        return a.take(idx) if isinstance(a, CSRInput) else np.ascontiguousarray(a[idx])
    return [take(a, train_idx) for a in arrays], [take(a, val_idx) for a in arrays]


def partner_names(name):
    """The names of y and sample_weight that go with an X called `name`: ("y", "sample_weight")
    for "X", ("y_val", "sample_weight_val") for "X_val" (the suffix after the X carries over)."""
    suffix = name[1:] if name.startswith("X") else ""
    return "y" + suffix, "sample_weight" + suffix


def _prepare_fit_data(model, X, y, loss, sample_weight, validation_data, fraction, rng,
                      whole=True):
    """(loss, (X, Y, labels, sw, sigma), validation arrays or None), all validated.  A
    scipy.sparse X (or X_val) becomes a CSRInput, converted once (fastnn.nn.sparse.as_csr).
    whole=False: the arrays are an MPI rank's shard (weights that may all be zero)."""
    loss, X, Y, labels, sw, sigma = model._prepare_any(X, y, loss, sample_weight, "X", whole=whole)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (X_val, y_val) or "
                             "(X_val, y_val, sample_weight_val)")
        X_val, y_val, *sw_val = validation_data
        if loss.sample_sigma is not None:
            raise ValueError("validation_data cannot be used with a per-sample sigma; use "
                             "validation_split, which splits sigma with the data")
        val = model._prepare_any(X_val, y_val, loss, sw_val[0] if sw_val else None,
                                 "X_val", whole=whole)[1:]
    elif fraction > 0:
        (X, Y, labels, sw, sigma), val = _split_validation(
            [X, Y, labels, sw, sigma], X.shape[0], fraction, rng)
    _check_apart(model, (X, Y, labels, sw, sigma), ("X", "y", "y", "sample_weight", "sigma"))
    if val is not None:
        _check_apart(model, val, ("X_val", "y_val", "y_val", "sample_weight_val", "sigma"))
    return loss, (X, Y, labels, sw, sigma), val


def _check_apart(model, arrays, names):
    """ValueError when a prepared array (not copied by the preparation: already C-contiguous
    in the model's dtype) shares memory with the model's parameters or gradients: training
    would change its own data as it goes.  The one check for every optimizer (the compiled
    epoch refuses overlapping buffers too, but with the epoch's names, and L-BFGS has none)."""
    for a, name in zip(arrays, names):
        if a is None:
            continue
        parts = (a.data, a.indices, a.indptr) if isinstance(a, CSRInput) else (a,)
        for part in parts:
            for owned, what in ((model.params, "parameters (model.params)"),
                                (model.grads, "gradient buffer (model.grads)")):
                if np.may_share_memory(part, owned):
                    raise ValueError(f"{name} shares memory with the model's {what}: training "
                                     f"would change its own data; pass a copy (e.g. "
                                     f"np.array({name}))")
