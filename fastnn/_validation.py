"""Checks shared by every public entry point, and their messages.

Every message names the argument, what was seen and what was expected, so that a user can fix
the call without reading fastnn's source.  Nothing here uses `assert`.
"""
import numbers

import numpy as np
from scipy import sparse as _sp

from fastnn._core._arrays import finite_array as _finite_array

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# BLAS takes 32-bit int dimensions
MAX_DIM = np.iinfo(np.int32).max


def all_finite(x):
    """True when no element of x is NaN or infinite.

    The one finiteness check of fastnn's Python layer.  A C-contiguous float32 or float64
    array (the common case: inputs, parameters, optimizer state) takes one compiled,
    vectorized pass (fastnn._core._arrays.finite_array: no temporary and none of NumPy's
    floating-point-error context, which cost ~7 us per call on a small parameter vector).
    Any other float array: one O(n) sum and no temporary (a NaN or inf makes the sum
    non-finite); only when the sum is not finite, which finite values can also cause by
    overflowing, the exact element-wise test decides (scikit-learn's _assert_all_finite does
    the same).
    """
    x = np.asarray(x)
    finite = _finite_array(x)
    if finite is not None:
        return finite
    if x.dtype.kind not in "fc":
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(x.sum()):
            return True
    return bool(np.isfinite(x).all())


def describe_dtype(x):
    return str(getattr(x, "dtype", type(x).__name__))


def float_dtype(dtype, name="dtype"):
    """Return numpy.float32 or numpy.float64 as a numpy.dtype; reject anything else."""
    # np.dtype(None) is float64 and dtype == None compares true: reject None explicitly
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.type not in (np.float32, np.float64):
        raise TypeError(f"{name} is {dtype!r}; expected numpy.float32 or numpy.float64")
    return dt


def as_ndarray(x, name):
    """x itself if it is an ndarray, else numpy.asarray(x); a ragged nested list is reported with
    the argument's name instead of NumPy's 'inhomogeneous shape' message, and a scipy.sparse
    matrix (which numpy.asarray wraps as one object) is a TypeError naming the entry points
    that take one."""
    if isinstance(x, np.ndarray):
        return x
    if _sp.issparse(x):
        # numpy.asarray would make a 0-d object array: "dtype object" would be the message
        where = (" (fastnn.fit, fastnn.LBFGS, the fastnn.interop.sklearn estimators and fastnn.MLP's "
                 "fit, evaluate, score, loss_and_grad, predict, predict_proba, predict_std "
                 "and forward accept a sparse X)" if name.startswith("X") else "")
        raise TypeError(f"{name} is a scipy.sparse {x.format.upper()} {type(x).__name__} of "
                        f"shape {x.shape}; this call needs a dense array ({name}.toarray())"
                        f"{where}")
    try:
        return np.asarray(x)
    except ValueError as exc:
        raise ValueError(f"{name} is not a rectangular array ({exc})") from None


def check_array(x, name, *, ndim, dtype=None, copy_noncontiguous=True, allow_empty=False,
                finite=False):
    """Validate a floating input array and return it C-contiguous.

    dtype=None accepts float32 or float64 as given; otherwise the array must already have that
    dtype (kernels never convert silently).  A non-contiguous array (a slice, Fortran order,
    negative strides) is copied when copy_noncontiguous, else rejected.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray; got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional; got shape {x.shape}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {x.dtype}; expected float32 or float64")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}; expected {np.dtype(dtype)} like the "
                        "other arrays of this call")
    if not allow_empty and x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}); expected at least one element "
                         "along every axis")
    if any(n > MAX_DIM for n in x.shape):
        raise ValueError(f"{name} has shape {x.shape}; dimensions above {MAX_DIM} are not "
                         "supported by the 32-bit BLAS interface")
    if not x.flags.c_contiguous:
        if not copy_noncontiguous:
            raise ValueError(f"{name} must be C-contiguous")
        x = np.ascontiguousarray(x)
    if finite and not all_finite(x):
        raise ValueError(f"{name} contains NaN or infinity")
    return x


def check_out(out, name, shape, dtype, inputs=()):
    """An out= buffer must match exactly: fastnn writes into it and never copies it.

    inputs: (name, array) pairs the kernel reads while writing out; overlap is rejected
    because BLAS would read half-written values.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or None; got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}; expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}; expected {np.dtype(dtype)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is written in place)")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only; expected a writeable array")
    for input_name, arr in inputs:
        if np.may_share_memory(out, arr):
            raise ValueError(f"{name} shares memory with {input_name}; expected a separate "
                             "buffer")
    return out


def check_writeable(arr, name):
    """fastnn updates `arr` in place (a model's parameters or gradients)."""
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only; fastnn updates it in place (set "
                         f"{name}.flags.writeable = True, or work on a copy of the model)")
    return arr


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}={value!r} is not supported; expected one of {valid}")
    return value


def check_number(value, name, *, low=None, high=None, low_open=False, high_open=False,
                 integer=False):
    """A finite real (or integer) scalar within [low, high] (open ends when asked)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {expected}; got {value!r} ({type(value).__name__})")
    if not integer and not np.isfinite(value):
        raise ValueError(f"{name}={value!r}; expected a finite number")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name}={value!r}; expected {name} {'>' if low_open else '>='} {low}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name}={value!r}; expected {name} {'<' if high_open else '<='} {high}")
    return value


def check_bool(value, name):
    """True or False (Python or NumPy bool); anything else, 0, 1 and strings included, is
    an error."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} "
                        f"({type(value).__name__})")
    return bool(value)


def check_random_state(seed, name="seed"):
    """A numpy.random.Generator from a seed: an int >= 0 gives default_rng(seed) (the same seed,
    the same draws), a Generator is used as it is (and advanced), None draws fresh OS entropy."""
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)):
        if seed < 0:
            raise ValueError(f"{name}={seed!r}; expected a seed >= 0")
        return np.random.default_rng(int(seed))
    raise TypeError(f"{name} is {seed!r} ({type(seed).__name__}); expected an int seed >= 0, a "
                    "numpy.random.Generator (e.g. numpy.random.default_rng(seed)) or None")


def weight_total(sample_weight, n_samples):
    """What a weighted mean over these rows divides by: sum_i w_i in float64, or n_samples
    without weights (every weight 1)."""
    if sample_weight is None:
        return float(n_samples)
    with np.errstate(over="ignore"):
        return float(np.sum(sample_weight, dtype=np.float64))


def check_weight_total(total, what, remedy):
    """The one rule for the rows a weighted mean divides by: their weights' float64 total is
    positive and finite.

    Every path checks it once its set of rows is final and before any parameter moves:
    ``check_sample_weight`` for a whole array; ``TrainingRun.check`` after the validation split
    and, with MPI, on the total summed over the ranks' shards (fit with any optimizer, L-BFGS
    included, the ensembles, the estimators' solvers); the estimators after their
    early-stopping split, before they derive the L2 step from the mean weight.

    Parameters
    ----------
    total : float
        ``weight_total`` of the rows (summed over ranks with MPI).
    what : str
        Names the rows' weights, as the start of the message ("sample_weight", "the sample
        weights of the training rows (after the validation split)").
    remedy : str
        Why it matters and what the user can change (the rest of the message).

    Raises
    ------
    ValueError
    """
    if not total > 0:
        raise ValueError(f"{what} sum to 0: {remedy}")
    if not np.isfinite(total):
        # the loss is divided by this sum: an infinite one would make every loss NaN
        raise ValueError(f"{what} sum to infinity in float64; rescale the weights (only "
                         f"their ratios matter)")
    return total


def check_sample_weight(sample_weight, n_samples, dtype, name="sample_weight", *, whole=True):
    """Per-sample weights as a C-contiguous 1-D array of `dtype`, or None for all ones.

    Accepts any real array-like (bool, integers, floats) of shape (n_samples,) whose entries
    are finite and >= 0, representable in `dtype`, with a finite float64 sum.  With `whole`
    (the default) these are all the rows a weighted mean divides by, so their total must be
    positive (``check_weight_total``).  ``whole=False``: the rows are one part of that set
    (an MPI rank's shard, which may hold only zero weights), whose total is checked once
    the parts are summed (``TrainingRun.check``).
    """
    if sample_weight is None:
        return None
    sw = as_ndarray(sample_weight, name)
    if sw.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {sw.dtype}; expected real numbers (float, integer "
                        "or bool)")
    if sw.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional; got shape {sw.shape}")
    if sw.shape[0] != n_samples:
        raise ValueError(f"{name} has {sw.shape[0]} entries; expected {n_samples} (one per "
                         "sample)")
    if not all_finite(sw):
        raise ValueError(f"{name} contains NaN or infinity; expected finite weights >= 0")
    if (sw < 0).any():
        raise ValueError(f"{name} has negative entries (min {sw.min()}); expected weights >= 0")
    if whole and not (sw > 0).any():
        raise ValueError(f"{name} is all zeros; expected at least one positive weight")
    with np.errstate(over="ignore"):  # overflow is reported below, with the argument's name
        out = np.ascontiguousarray(sw, dtype=dtype)
    if not all_finite(out):
        raise ValueError(f"{name} has entries too large for {np.dtype(dtype)} (max {sw.max()})")
    if (sw > 0).any() and not (out > 0).any():
        raise ValueError(f"{name} underflows to all zeros in {np.dtype(dtype)} (max "
                         f"{sw.max()}); expected at least one weight representable as > 0")
    info = np.finfo(out.dtype)
    tiny = info.tiny
    with np.errstate(invalid="ignore"):
        small = (sw > 0) & (out < tiny) & (sw >= info.eps * np.max(sw))
    if small.any():
        # a positive weight that is 0 or subnormal in the model's dtype, and not negligible
        # beside the largest (below eps times it, a weight's row changes the mean by less
        # than a rounding): fastnn's compiled code flushes subnormal numbers to zero
        # (fastnn.runtime.fpmode), and without the flush their sums and quotients lose their
        # digits: the weighted mean is not the one asked for
        i = int(np.flatnonzero(small)[0])
        raise ValueError(f"{name}[{i}] = {float(sw[i])!r} is below {tiny:.4g}, the smallest normal "
                         f"{np.dtype(dtype)} number ({int(small.sum())} such entries); "
                         f"rescale the weights (only their ratios matter), e.g. {name} / "
                         f"{name}.max()")
    if not np.isfinite(weight_total(out, n_samples)):
        raise ValueError(f"{name} sums to infinity in float64 (max {sw.max()}); rescale the "
                         "weights (only their ratios matter)")
    return out


def check_values(values, name, shape, dtype):
    """Real, finite `values` of exactly `shape`, converted to `dtype` (a new array or values).

    The one check behind every public way of putting numbers into a model (``set_params``,
    the ``params``/``grads`` setters, ``set_weights``, a layer's ``W``/``b``, ``load``):
    messages name the argument, its shape or dtype, and what was expected.
    """
    values = as_ndarray(values, name)
    shape = tuple(shape)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {values.dtype}; expected real numbers (float, "
                        "integer or bool)")
    if values.shape != shape:
        raise ValueError(f"{name} has shape {values.shape}; expected {shape}")
    if not all_finite(values):
        bad = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(f"{name} contains NaN or infinity (first at index "
                         f"{tuple(int(i) for i in bad)}: {values[tuple(bad)]})")
    with np.errstate(over="ignore"):  # overflow is reported below, with the argument's name
        converted = values.astype(dtype, copy=False)
    if not all_finite(converted):
        raise ValueError(f"{name} has values too large for the model's dtype "
                         f"{np.dtype(dtype)} (max "
                         f"|{name}| = {float(np.abs(values).max()):g}); expected at most "
                         f"{float(np.finfo(dtype).max):g}")
    return converted
