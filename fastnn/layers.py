"""The fused dense layer, validated: ``dense_forward``, ``dense_backward`` and ``Dense``.

Samples are rows: ``X`` is ``(B, n_in)``, ``W`` is ``(n_in, n_out)``, ``b`` is ``(n_out,)`` and
the layer computes ``A = act(X @ W + b)``.  Textbooks that store samples as columns write
``Z = W X + b`` with ``W`` of shape ``(n_out, n_in)``: the same arithmetic, transposed.

The compiled kernels (``fastnn._layers``) run one GEMM through scipy's BLAS and then ONE pass
over the output for bias + activation; the backward pass forms the activation derivative from
the stored output ``A`` (sigmoid' = a(1-a), tanh' = 1-a^2, relu' = [a > 0], ...), so nothing
else from the forward pass is kept.
"""
import numpy as np

from fastnn import _layers
from fastnn._validation import check_array, check_choice, check_number, check_out

#: name -> code of src_c/fastnn_kernels.h
ACTIVATIONS = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 4}
DEFAULT_LEAKY_SLOPE = 0.01


def activation_code(activation, name="activation"):
    return ACTIVATIONS[check_choice(activation, name, tuple(ACTIVATIONS))]


def _check_slope(alpha):
    return float(check_number(alpha, "alpha", low=0.0))


def _check_layer_arrays(X, W, b):
    X = check_array(X, "X", ndim=2)
    W = check_array(W, "W", ndim=2, dtype=X.dtype)
    b = check_array(b, "b", ndim=1, dtype=X.dtype)
    if W.shape[0] != X.shape[1]:
        raise ValueError(f"W has shape {W.shape}; expected ({X.shape[1]}, n_out) to match "
                         f"X of shape {X.shape}")
    if b.shape[0] != W.shape[1]:
        raise ValueError(f"b has shape {b.shape}; expected ({W.shape[1]},) to match "
                         f"W of shape {W.shape}")
    return X, W, b


def dense_forward(X, W, b, activation="relu", *, alpha=DEFAULT_LEAKY_SLOPE, out=None):
    """Forward pass of a dense layer: ``act(X @ W + b)``.

    Parameters
    ----------
    X : ndarray of shape (B, n_in), float32 or float64
        Inputs, one sample per row.  A non-contiguous X (slice, Fortran order) is copied
        once to C order; W and b likewise.
    W : ndarray of shape (n_in, n_out), same dtype as X
    b : ndarray of shape (n_out,), same dtype as X
    activation : {"identity", "sigmoid", "tanh", "relu", "leaky_relu"}
    alpha : float, default 0.01
        Slope of leaky_relu for negative inputs (>= 0).
    out : ndarray of shape (B, n_out), same dtype, C-contiguous and writeable, optional
        Written in place and returned, so that a loop need not allocate.

    Returns
    -------
    A : ndarray of shape (B, n_out), same dtype as X
    """
    code = activation_code(activation)
    alpha = _check_slope(alpha)
    X, W, b = _check_layer_arrays(X, W, b)
    shape = (X.shape[0], W.shape[1])
    out = np.empty(shape, X.dtype) if out is None else check_out(
        out, "out", shape, X.dtype, (("X", X), ("W", W), ("b", b)))
    _layers.forward_into(X, W, b, out, code, alpha)
    return out


def dense_backward(X, W, A, dA, activation="relu", *, alpha=DEFAULT_LEAKY_SLOPE,
                   compute_dX=True, out_dW=None, out_db=None, out_dX=None):
    """Backward pass of a dense layer, from its stored output.

    With ``D = dA * act'(A)`` (the gradient with respect to the pre-activation Z):
    ``dW = X^T @ D``, ``db = D.sum(axis=0)``, ``dX = D @ W^T``.

    Parameters
    ----------
    X : ndarray of shape (B, n_in), float32 or float64
        The layer's input in the forward pass.
    W : ndarray of shape (n_in, n_out), same dtype
    A : ndarray of shape (B, n_out), same dtype
        The layer's forward output ``act(X @ W + b)``.
    dA : ndarray of shape (B, n_out), same dtype
        Gradient of the loss with respect to A.  Not modified.
    activation : {"identity", "sigmoid", "tanh", "relu", "leaky_relu"}
    alpha : float, default 0.01
        Slope of leaky_relu (>= 0).
    compute_dX : bool, default True
        False skips the dX product (the first layer of a network needs no dX).
    out_dW, out_db, out_dX : ndarray, optional
        Buffers of shapes (n_in, n_out), (n_out,), (B, n_in) written in place.

    Returns
    -------
    dW : ndarray of shape (n_in, n_out)
    db : ndarray of shape (n_out,)
    dX : ndarray of shape (B, n_in), or None when compute_dX is False
    """
    code = activation_code(activation)
    alpha = _check_slope(alpha)
    X = check_array(X, "X", ndim=2)
    W = check_array(W, "W", ndim=2, dtype=X.dtype)
    A = check_array(A, "A", ndim=2, dtype=X.dtype)
    dA = check_array(dA, "dA", ndim=2, dtype=X.dtype)
    n_samples, n_in = X.shape
    if W.shape[0] != n_in:
        raise ValueError(f"W has shape {W.shape}; expected ({n_in}, n_out) to match "
                         f"X of shape {X.shape}")
    n_out = W.shape[1]
    for arr, name in ((A, "A"), (dA, "dA")):
        if arr.shape != (n_samples, n_out):
            raise ValueError(f"{name} has shape {arr.shape}; expected {(n_samples, n_out)} "
                             f"(rows of X, columns of W)")
    dt = X.dtype
    reads = (("X", X), ("W", W), ("A", A), ("dA", dA))
    # each output is written while the others hold results: they must not overlap either
    dW = np.empty((n_in, n_out), dt) if out_dW is None else check_out(
        out_dW, "out_dW", (n_in, n_out), dt, reads)
    db = np.empty(n_out, dt) if out_db is None else check_out(
        out_db, "out_db", (n_out,), dt, reads + (("out_dW", dW),))
    dX = None
    if compute_dX:
        dX = np.empty((n_samples, n_in), dt) if out_dX is None else check_out(
            out_dX, "out_dX", (n_samples, n_in), dt, reads + (("out_dW", dW), ("out_db", db)))
    elif out_dX is not None:
        raise ValueError("out_dX was given but compute_dX is False")
    D = np.empty((n_samples, n_out), dt)
    _layers.backward_into(X, W, A, dA, D, dW, db, dX, code, alpha)
    return dW, db, dX
