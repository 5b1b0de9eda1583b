"""Plain-NumPy twins of fastnn's compiled kernels: the readable specification and test oracle.

Nothing here is fast or clever on purpose.  Each function states the arithmetic the compiled
code must reproduce; the tests compare the two.  (Never used on a training path: NumPy's BLAS
and scipy's are different OpenBLAS copies, see ../shared/PERFORMANCE.md.)
"""
import numpy as np


# ---------------------------------------------------------------- activations and dense layer

def activation(z, name, alpha=0.01):
    """act(z) for the activation `name`, computed in the stable textbook way."""
    z = np.asarray(z)
    if name == "identity":
        return z.copy()
    if name == "sigmoid":
        # exp of a non-positive number only: never overflows
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z < 0, 0, z).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z < 0, alpha * z, z).astype(z.dtype)
    raise ValueError(name)


def activation_grad_from_output(a, name, alpha=0.01):
    """act'(z) expressed through a = act(z) (THEORY.md)."""
    if name == "identity":
        return np.ones_like(a)
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "leaky_relu":
        return np.where(a > 0, 1, alpha).astype(a.dtype)
    raise ValueError(name)


def dense_forward(X, W, b, name, alpha=0.01):
    return activation(X @ W + b, name, alpha)


def dense_backward(X, W, A, dA, name, alpha=0.01):
    """(dW, db, dX) with D = dA * act'(A)."""
    D = dA * activation_grad_from_output(A, name, alpha)
    return X.T @ D, D.sum(axis=0), D @ W.T
