"""Targets as the losses take them: y converted once to a C-contiguous array of the model's
dtype (regression rows, probability rows, class labels) and checked, with messages that name
the argument and what was expected.  The losses of fastnn/nn/losses.py call these.
"""
import numpy as np

from fastnn._validation import MAX_DIM, all_finite, as_ndarray, check_array


def _as_real(y, name="y"):
    """y as an ndarray of real numbers (bool, integer or floating), not converted yet."""
    y = as_ndarray(y, name)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {y.dtype}; expected real numbers (float, integer "
                        "or bool)")
    if y.ndim == 0:
        raise ValueError(f"{name} is a scalar ({y!r}); expected an array of targets, one row "
                         "per sample")
    if y.size == 0:
        raise ValueError(f"{name} is empty (shape {y.shape}); expected at least one target")
    return y


def _convert_finite(y, dtype, name="y"):
    """C-contiguous `dtype` copy (or y itself), rejecting NaN/inf and overflow on conversion."""
    with np.errstate(over="ignore"):  # overflow is reported below, with the argument's name
        Y = np.ascontiguousarray(y, dtype=dtype)
    if not all_finite(Y):
        if not all_finite(y):
            raise ValueError(f"{name} contains NaN or infinity; expected finite targets")
        raise ValueError(f"{name} has values too large for {np.dtype(dtype)} (max |{name}| = "
                         f"{np.abs(y).max()})")
    return Y


def _target_matrix(y, n_cols, dtype, who, name="y"):
    """A 1-D y (one target column) or 2-D y with n_cols columns, as (n, n_cols) of dtype."""
    if y.ndim == 1:
        if n_cols != 1:
            raise ValueError(f"{name} has shape {y.shape}; {who} expects {name} of shape "
                             f"(n_samples, {n_cols}) here (a 1-D {name} is accepted for one "
                             "target column only)")
        y = y.reshape(-1, 1)
    elif y.ndim == 2:
        if y.shape[1] != n_cols:
            raise ValueError(f"{name} has shape {y.shape}; {who} expects (n_samples, {n_cols}) "
                             "here, one column per target")
    else:
        raise ValueError(f"{name} must be 1- or 2-dimensional; got shape {y.shape}")
    return _convert_finite(y, dtype, name)


def _row_sum_tolerance(y_dtype):
    """How far a probability row's sum may be from 1: sqrt(float32 epsilon) = 3.5e-4 (or
    sqrt(epsilon) of a less precise y, e.g. float16).

    Not float64's: rows are often normalised in float32 and upcast later, which leaves errors of
    ~1e-7 that a float64-tight check would reject.  The loss and its gradient are exact for
    whatever the row sums are, so the check is only there to catch rows that were never
    normalised (counts, logits, a missing softmax).
    """
    eps = np.finfo(np.float32).eps
    if np.dtype(y_dtype).kind == "f":
        eps = max(eps, np.finfo(y_dtype).eps)
    return float(np.sqrt(eps))


def _probability_rows(y, n_out, dtype, who, hint="", name="y"):
    if y.ndim != 2 or y.shape[1] != n_out:
        raise ValueError(f"{name} has shape {y.shape}; {who} expects probability rows of shape "
                         f"(n_samples, {n_out}){hint}")
    Y = _convert_finite(y, dtype, name)
    if (Y < 0).any():
        raise ValueError(f"{name} has negative entries (min {Y.min()}); {who} expects probability "
                         "rows (entries >= 0, each row summing to 1)")
    sums = Y.sum(axis=1, dtype=np.float64)
    tol = _row_sum_tolerance(y.dtype)
    bad = np.flatnonzero(np.abs(sums - 1.0) > tol)
    if bad.size:
        i = bad[0]
        raise ValueError(f"row {i} of {name} sums to {float(sums[i])!r}; {who} expects probability "
                         f"rows summing to 1 (within {tol:.2g}){hint}")
    return Y


def _class_labels(y, n_out=None, name="y"):
    """1-D integer (or bool, or whole-number float) labels in [0, n_out) as an intp array.

    n_out=None (target_width) accepts any number of classes the kernels can index.
    """
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all():
            i = int(np.argmin(finite))
            raise ValueError(f"{name} contains NaN or infinity (first at index {i}: "
                             f"{float(y[i])!r}); expected integer class labels (0, 1, 2, ...)")
        frac = y != np.floor(y)
        if frac.any():
            i = np.flatnonzero(frac)[0]
            # the number of classes is known only from a model's outputs
            labels, rows = (("(0, 1, 2, ...)", "(one column per class)") if n_out is None else
                            (f"in [0, {n_out})", f"of shape (n_samples, {n_out})"))
            raise ValueError(f"{name} is 1-D with the non-integer value {float(y[i])!r} at index "
                             f"{i}; CrossEntropy expects integer class labels {labels} or "
                             f"probability rows {rows} (for numeric targets, use a "
                             "regression loss such as mse)")
    # as Python numbers: a float16 label compared with MAX_DIM would overflow NumPy's cast
    lo, hi = y.min().item(), y.max().item()
    if n_out is None:
        if lo < 0:
            raise ValueError(f"{name} has negative class labels (min {lo}); expected integer class "
                             "labels >= 0")
        if hi >= MAX_DIM:
            raise ValueError(f"{name} has the class label {hi}; expected labels below {MAX_DIM} "
                             "(the most classes a model can have)")
    elif lo < 0 or hi >= n_out:
        raise ValueError(f"{name} has class labels in [{lo}, {hi}]; expected labels in [0, "
                         f"{n_out}) for a model with {n_out} outputs (one per class)")
    return np.ascontiguousarray(y, dtype=np.intp)


def _check_Z(Z, name="Z", finite=True):
    return check_array(Z, name, ndim=2, finite=finite)
