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


# ------------------------------------------------------------------------------------ losses
# Per-sample negative log-likelihoods l (n,) and their gradients dl_i/dZ_i (n, n_out) of the
# logits, in float64 whatever the input dtype, written from the textbook definitions (log of a
# density through scipy's logsumexp / logaddexp / xlogy) rather than from the compiled forms.

from scipy.special import expit, gammaln, logsumexp, xlogy  # noqa: E402

HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def _f64(*arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def mse_loss(Z, Y):
    """l_i = mean_j (z_ij - y_ij)^2."""
    Z, Y = _f64(Z, Y)
    k = Z.shape[1]
    return ((Z - Y) ** 2).mean(axis=1), 2 * (Z - Y) / k


def gaussian_nll_loss(Z, Y, sigma=1.0, full=False):
    """-log N(y_ij; z_ij, sigma_i^2) summed over j; sigma a scalar or an (n,) array."""
    Z, Y = _f64(Z, Y)
    sigma = np.broadcast_to(np.asarray(sigma, np.float64), (Z.shape[0],))[:, None]
    var = sigma ** 2
    nll = (Y - Z) ** 2 / (2 * var)
    if full:
        nll = nll + np.log(sigma) + HALF_LOG_2PI
    return nll.sum(axis=1), (Z - Y) / var


def gaussian_learned_loss(Z, Y, full=False):
    """Z = [mu | s], s = log variance: -log N(y; mu, exp(s)) summed over targets."""
    Z, Y = _f64(Z, Y)
    k = Y.shape[1]
    mu, s = Z[:, :k], Z[:, k:]
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.where(Y == mu, 0.0, (Y - mu) ** 2 * np.exp(-s))
        g_mu = np.where(Y == mu, 0.0, (mu - Y) * np.exp(-s))
    nll = 0.5 * r + 0.5 * s + (HALF_LOG_2PI if full else 0.0)
    return nll.sum(axis=1), np.hstack([g_mu, 0.5 - 0.5 * r])


def bce_loss(Z, Y):
    """-[y log sigmoid(z) + (1-y) log(1 - sigmoid(z))] summed over outputs.

    log sigmoid(z) = -logaddexp(0, -z) and log(1 - sigmoid(z)) = -logaddexp(0, z).
    """
    Z, Y = _f64(Z, Y)
    nll = Y * np.logaddexp(0.0, -Z) + (1 - Y) * np.logaddexp(0.0, Z)
    return nll.sum(axis=1), expit(Z) - Y


def _onehot(labels, k):
    Y = np.zeros((len(labels), k))
    Y[np.arange(len(labels)), labels] = 1.0
    return Y


def log_softmax(Z):
    Z = np.asarray(Z, np.float64)
    return Z - logsumexp(Z, axis=1, keepdims=True)


def cross_entropy_loss(Z, Y=None, labels=None):
    """-sum_j y_ij log softmax(z_i)_j, Y probability rows or integer labels (one-hot)."""
    Z, Y = _f64(Z, Y)
    if labels is not None:
        Y = _onehot(labels, Z.shape[1])
    logp = log_softmax(Z)
    return -(Y * logp).sum(axis=1), Y.sum(axis=1, keepdims=True) * np.exp(logp) - Y


def kl_loss(Z, Y):
    """sum_j y_ij (log y_ij - log softmax(z_i)_j), with 0 log 0 = 0."""
    Z, Y = _f64(Z, Y)
    logp = log_softmax(Z)
    return (xlogy(Y, Y) - Y * logp).sum(axis=1), Y.sum(axis=1, keepdims=True) * np.exp(logp) - Y


def entropy(Y):
    """H(y_i) = -sum_j y_ij log y_ij per row."""
    Y = np.asarray(Y, np.float64)
    return -xlogy(Y, Y).sum(axis=1)


def poisson_loss(Z, Y, full=False):
    """-log Poisson(y; exp(z)) = exp(z) - y z + log(y!) summed over outputs."""
    Z, Y = _f64(Z, Y)
    nll = np.exp(Z) - Y * Z + (gammaln(Y + 1) if full else 0.0)
    return nll.sum(axis=1), np.exp(Z) - Y


def weighted_mean_loss(l, D, sample_weight=None):
    """(sum_i w_i l_i / sum_i w_i, gradient of that mean): G_i = w_i D_i / sum_k w_k."""
    w = np.ones(len(l)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    return float((w * l).sum() / w.sum()), w[:, None] * D / w.sum()


def output_link(Z, name):
    """The prediction from logits: identity, sigmoid, softmax (rows), exp, or the learned
    Gaussian's (mean, std) pair."""
    Z = np.asarray(Z, np.float64)
    if name == "identity":
        return Z.copy()
    if name == "sigmoid":
        return expit(Z)
    if name == "softmax":
        return np.exp(log_softmax(Z))
    if name == "exp":
        return np.exp(Z)
    if name == "gaussian":
        k = Z.shape[1] // 2
        return Z[:, :k].copy(), np.exp(Z[:, k:] / 2)
    raise ValueError(name)
