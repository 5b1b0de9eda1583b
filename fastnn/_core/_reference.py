"""Plain-NumPy twins of fastnn's compiled kernels: the readable specification and test oracle.

Nothing here is fast or clever on purpose.  Each function states the arithmetic the compiled
code must reproduce; the tests compare the two.  (Never used on a training path: NumPy's BLAS
and scipy's are different OpenBLAS copies, each with its own thread pool and kernels.)
"""
import numpy as np
from scipy.special import expit, ndtr


# ---------------------------------------------------------------- activations and dense layer

SELU_ALPHA = 1.6732632423543772848170429916717   # Klambauer et al. (2017), eq. 14
SELU_SCALE = 1.0507009873554804934193349852946
GELU_TANH_C = np.sqrt(2 / np.pi)
GELU_TANH_K = 0.044715
#: activations whose backward pass reads the pre-activation z (fastnn.nn.layers.KEEPS_PREACTIVATION)
KEEPS_PREACTIVATION = ("gelu", "gelu_tanh", "silu")


def _elu(z, alpha):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))


def _gelu_tanh_parts(z):
    """(sigmoid(2u), 1 - sigmoid(2u), du/dz) of the tanh form, u = c (z + k z^3)."""
    with np.errstate(over="ignore", invalid="ignore"):
        u = GELU_TANH_C * (z + GELU_TANH_K * z ** 3)
        du = GELU_TANH_C * (1 + 3 * GELU_TANH_K * z ** 2)
    return expit(2 * u), expit(-2 * u), du


def _alpha(name, alpha):
    """The default alpha (fastnn.nn.layers.DEFAULT_ALPHA): 1 for elu, 0.01 for leaky_relu."""
    return alpha if alpha is not None else (1.0 if name == "elu" else 0.01)


def activation(z, name, alpha=None):
    """act(z) for the activation `name`, computed in the stable textbook way."""
    z = np.asarray(z)
    alpha = _alpha(name, alpha)
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
    if name == "elu":
        return _elu(z, alpha)
    if name == "selu":
        return SELU_SCALE * _elu(z, SELU_ALPHA)
    if name == "gelu":
        return z * ndtr(z)                    # Phi(z) = ndtr(z): no cancellation for z << 0
    if name == "gelu_tanh":
        return z * _gelu_tanh_parts(z)[0]     # (1 + tanh u) / 2 = sigmoid(2u)
    if name in ("silu", "swish"):
        return z * expit(z)
    if name == "softplus":
        return np.logaddexp(0.0, z)
    raise ValueError(name)


def activation_grad(z, name, alpha=None):
    """act'(z) from the pre-activation z, by the closed forms."""
    z = np.asarray(z, dtype=np.float64)
    alpha = _alpha(name, alpha)
    if name in ("elu", "selu"):
        a, scale = (alpha, 1.0) if name == "elu" else (SELU_ALPHA, SELU_SCALE)
        return scale * np.where(z > 0, 1.0, a * np.exp(np.minimum(z, 0)))
    if name == "gelu":
        with np.errstate(over="ignore", invalid="ignore"):
            dens = z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
        return ndtr(z) + np.where(np.isfinite(dens), dens, 0.0)
    if name == "gelu_tanh":
        s, c, du = _gelu_tanh_parts(z)
        with np.errstate(over="ignore", invalid="ignore"):
            t = 2 * z * du * (s * c)
        return s + np.where(s * c == 0, 0.0, t)
    if name in ("silu", "swish"):
        return expit(z) * (1 + z * expit(-z))
    if name == "softplus":
        return expit(z)
    return activation_grad_from_output(activation(z, name, alpha), name, alpha)


def activation_grad_from_output(a, name, alpha=None):
    """act'(z) expressed through a = act(z) (docs/theory.md, section 2), where it can be."""
    alpha = _alpha(name, alpha)
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
    if name == "elu":
        return np.where(a > 0, 1, a + alpha).astype(a.dtype)       # alpha e^z = a + alpha
    if name == "selu":
        return np.where(a > 0, SELU_SCALE, a + SELU_SCALE * SELU_ALPHA).astype(a.dtype)
    if name == "softplus":
        return -np.expm1(-a)                                         # sigmoid(z) = 1 - e^-a
    raise ValueError(f"{name}'s derivative is not a function of its output; use "
                     "activation_grad(z)")


def dense_forward(X, W, b, name, alpha=None):
    return activation(X @ W + b, name, alpha)


def dense_backward(X, W, A, dA, name, alpha=None, Z=None):
    """(dW, db, dX) with D = dA * act'(Z), from A (or from Z for GELU/SiLU)."""
    if name in KEEPS_PREACTIVATION or name == "swish":
        D = dA * activation_grad(Z, name, alpha)
    else:
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


# ------------------------------------------------------------------- whole network and training
# The network over one parameter vector (layout of fastnn.nn.model), and minibatch training written
# step by step; the compiled loop in _sgd.pyx must reproduce these numbers.

def per_sample_loss(kind, Z, Y=None, labels=None, sigma=1.0, full=False):
    """(l, dl/dZ) per sample for a loss code of fastnn/_core/_losses.pxd."""
    if kind == 0:
        return mse_loss(Z, Y)
    if kind == 1:
        return gaussian_nll_loss(Z, Y, sigma, full)
    if kind == 2:
        return gaussian_learned_loss(Z, Y, full)
    if kind == 3:
        return bce_loss(Z, Y)
    if kind == 4:
        return cross_entropy_loss(Z, Y, labels)
    if kind == 5:
        return kl_loss(Z, Y)
    if kind == 6:
        return poisson_loss(Z, Y, full)
    raise ValueError(kind)


def unpack(params, sizes, norms=None):
    """[(W_1, b_1), ...] views of a parameter vector laid out as fastnn.nn.model documents.

    norms[k] true: layer k is layer-normalized and its entry is (W, b, gain, shift).
    """
    out, pos = [], 0
    norms = norms or [None] * (len(sizes) - 1)
    for n_in, n_out, norm in zip(sizes[:-1], sizes[1:], norms):
        W = params[pos:pos + n_in * n_out].reshape(n_in, n_out)
        pos += n_in * n_out
        if norm:
            out.append((W, params[pos:pos + n_out], params[pos + n_out:pos + 2 * n_out],
                        params[pos + 2 * n_out:pos + 3 * n_out]))
            pos += 3 * n_out
        else:
            out.append((W, params[pos:pos + n_out]))
            pos += n_out
    return out


LAYERNORM_EPS = 1e-5


def layernorm_forward(z, gain, shift):
    """(y, xhat, rstd): y = gain (z - mean) / sqrt(var + eps) + shift, per row."""
    mu = z.mean(axis=1, keepdims=True)
    var = ((z - mu) ** 2).mean(axis=1, keepdims=True)
    rstd = 1 / np.sqrt(var + LAYERNORM_EPS)
    xhat = (z - mu) * rstd
    return gain * xhat + shift, xhat, rstd


def layernorm_backward(g, xhat, rstd, gain):
    """(dl/dz, dgain, dshift) from g = dl/dy (Ba et al., 2016)."""
    h = g * gain
    dz = rstd * (h - h.mean(axis=1, keepdims=True)
                 - xhat * (h * xhat).mean(axis=1, keepdims=True))
    return dz, (g * xhat).sum(axis=0), g.sum(axis=0)


def network_loss_grad(params, sizes, acts, alphas, X, kind, Y=None, labels=None,
                      sample_weight=None, sigma=1.0, full=False, keep=None, rates=None,
                      norms=None):
    """(weighted mean loss, its gradient as a vector) of an MLP, in float64.

    keep, rates: dropout.  keep[k] is None or the 0/1 mask (n, n_k) of layer k's output,
    rates[k] its rate: the output becomes keep * act(z) / (1 - rate) (inverted dropout).
    norms[k] true: layer normalization of layer k's pre-activation (layernorm_forward).
    """
    params = np.asarray(params, np.float64)
    layers = unpack(params, sizes, norms)
    keep = [None] * len(layers) if keep is None else keep
    scale = [None if m is None else keep_scale(r) for m, r in zip(keep, rates or keep)]
    A, Z, LN = [np.asarray(X, np.float64)], [], []
    for k, (layer, act, alpha) in enumerate(zip(layers, acts, alphas)):
        W, b = layer[:2]
        Z.append(A[-1] @ W + b)
        LN.append(None)
        if len(layer) == 4:
            y, xhat, rstd = layernorm_forward(Z[-1], layer[2], layer[3])
            LN[-1] = (xhat, rstd, layer[2])
            Z[-1] = y                       # the activation's input
        A.append(activation(Z[-1], act, alpha))
        if keep[k] is not None:
            Z[-1] = (Z[-1], A[-1])       # what the backward pass needs before dropout
            A[-1] = np.where(keep[k] != 0, A[-1] * scale[k], 0.0)
    sig = 1.0 if sigma is None else sigma
    l, D = per_sample_loss(kind, A[-1], Y, labels, sig, full)
    loss, dA = weighted_mean_loss(l, D, sample_weight)
    grads = []
    for k in range(len(layers) - 1, -1, -1):
        W = layers[k][0]
        z, a = Z[k], A[k + 1]
        if keep[k] is not None:
            (z, a), dA = Z[k], np.where(keep[k] != 0, dA * scale[k], 0.0)
        if LN[k] is None:
            dW, db, dA = dense_backward(A[k], W, a, dA, acts[k], alphas[k], Z=z)
            grads[:0] = [dW.ravel(), db]
        else:
            g = dA * activation_grad(z, acts[k], alphas[k])
            dz, dgain, dshift = layernorm_backward(g, *LN[k])
            dW, db, dA = dense_backward(A[k], W, dz, dz, "identity")
            grads[:0] = [dW.ravel(), db, dgain, dshift]
    return loss, np.concatenate(grads)




# ------------------------------------------------------------------- sparse (CSR) first layer
# The twins of fastnn/_core/_sparse.pyx's first layer: X held as CSR (data, indices, indptr),
# read entry by entry, never densified.

def csr_layer_forward(data, indices, indptr, W, b):
    """Z = X @ W + b for a CSR X: row i sums data[p] * W[indices[p]] over its stored entries."""
    W = np.asarray(W, np.float64)
    Z = np.tile(np.asarray(b, np.float64), (len(indptr) - 1, 1))
    for i in range(len(indptr) - 1):
        for p in range(indptr[i], indptr[i + 1]):
            Z[i] += data[p] * W[indices[p]]
    return Z


def csr_layer_weight_grad(data, indices, indptr, D, n_cols):
    """dW = X^T @ D for a CSR X with n_cols columns: each stored entry x_ic adds x_ic D[i] to
    row c of dW (the bias gradient is D's column sums, as for a dense X)."""
    D = np.asarray(D, np.float64)
    dW = np.zeros((n_cols, D.shape[1]))
    for i in range(len(indptr) - 1):
        for p in range(indptr[i], indptr[i + 1]):
            dW[indices[p]] += data[p] * D[i]
    return dW


# ------------------------------------------------------------------- input derivatives
# The twins of fastnn/_core/_sensitivity.pyx (MLP.input_gradient, MLP.jacobian): the backward
# pass run down to X instead of stopping at the first layer's weights.

def _predict_forward(params, sizes, acts, alphas, X, norms=None):
    """(layers, the layers' outputs A, their activations' inputs Z, layer-norm records LN) of
    the prediction pass (no dropout), in float64."""
    layers = unpack(np.asarray(params, np.float64), sizes, norms)
    A, Z, LN = [np.asarray(X, np.float64)], [], []
    for layer, act, alpha in zip(layers, acts, alphas):
        z, ln = A[-1] @ layer[0] + layer[1], None
        if len(layer) == 4:
            z, xhat, rstd = layernorm_forward(z, layer[2], layer[3])
            ln = (xhat, rstd, layer[2])
        Z.append(z)
        LN.append(ln)
        A.append(activation(z, act, alpha))
    return layers, A, Z, LN


def _backward_to_input(layers, acts, alphas, Z, LN, dA):
    """d/dX of sum(dA * the last layer's output), each row through its own sample's path."""
    for k in range(len(layers) - 1, -1, -1):
        g = dA * activation_grad(Z[k], acts[k], alphas[k])
        if LN[k] is not None:
            g = layernorm_backward(g, *LN[k])[0]
        dA = g @ layers[k][0].T
    return dA


def input_gradient(params, sizes, acts, alphas, X, kind, Y=None, labels=None,
                   sample_weight=None, sigma=1.0, full=False, reduction="none", norms=None):
    """The loss's gradient with respect to X, shape (n, n_0): row i = w_i dl_i/dx_i
    (reduction "none"), or those rows divided by sum_i w_i ("mean": the gradient of the
    weighted mean loss)."""
    layers, A, Z, LN = _predict_forward(params, sizes, acts, alphas, X, norms)
    _, D = per_sample_loss(kind, A[-1], Y, labels, sigma, full)
    w = np.ones(D.shape[0]) if sample_weight is None else np.asarray(sample_weight,
                                                                      np.float64)
    D = D * w[:, None]
    if reduction == "mean":
        D = D / w.sum()
    return _backward_to_input(layers, acts, alphas, Z, LN, D)


def jacobian(params, sizes, acts, alphas, X, link, of="output", norms=None):
    """J[i, j, c] = d y_ij / d x_ic, shape (n, n_outputs, n_0): y the logits (of="logits") or
    what the output link gives (identity, sigmoid, softmax, exp; "gaussian": the k means,
    then the k standard deviations exp(s/2) of a learned-variance Gaussian)."""
    layers, A, Z, LN = _predict_forward(params, sizes, acts, alphas, X, norms)
    logits = A[-1]
    n, m = logits.shape
    J = np.empty((n, m, np.shape(X)[1]))
    p = np.exp(log_softmax(logits)) if link == "softmax" else None
    for j in range(m):
        seed = np.zeros((n, m))     # d y_j / d logits, per sample
        if of == "logits" or link == "identity" or (link == "gaussian" and j < m // 2):
            seed[:, j] = 1.0
        elif link == "sigmoid":
            q = expit(logits[:, j])
            seed[:, j] = q * (1 - q)
        elif link == "exp":
            seed[:, j] = np.exp(logits[:, j])
        elif link == "gaussian":
            seed[:, j] = 0.5 * np.exp(logits[:, j] / 2)
        elif link == "softmax":     # d p_j / d z_c = p_j (delta_jc - p_c)
            seed = -p[:, [j]] * p
            seed[:, j] += p[:, j]
        else:
            raise ValueError(link)
        J[:, j, :] = _backward_to_input(layers, acts, alphas, Z, LN, seed)
    return J


def optimizer_step(params, grads, state, t, sizes, opt, norms=None):
    """One update (SGD/momentum/Nesterov, Adam or AdamW), weight decay on weight matrices only.

    opt: dict(kind="sgd"|"adam"|"adamw", lr, momentum, nesterov, weight_decay, clip_norm,
    beta1, beta2, eps); state: dict of arrays, created on first use; t: the 1-based step
    number.  AdamW (torch.optim.AdamW): w <- (1 - lr decay) w, then Adam's step from the
    gradient without the decay term.
    """
    g = grads.copy()
    if opt.get("clip_norm"):
        g64 = g.astype(np.float64)
        with np.errstate(over="ignore", under="ignore"):
            total = np.sum(g64 ** 2)
        norm = np.sqrt(total)
        if not np.finfo(np.float64).tiny <= total < np.inf:
            # a square overflowed or underflowed: the scaled norm (BLAS's nrm2; NumPy's
            # linalg.norm sums the squares too), as _sgd._clip_factors
            scale = np.max(np.abs(g64))
            if scale > 0 and np.isfinite(scale):
                norm = scale * np.sqrt(np.sum((g64 / scale) ** 2))
        if norm > opt["clip_norm"]:
            g = g * (opt["clip_norm"] / norm)
    decay = np.zeros_like(params)
    for layer in unpack(decay, sizes, norms):   # not on b, nor on a layer norm's gain/shift
        layer[0][...] = opt.get("weight_decay", 0.0)
    lr = opt["lr"]
    if opt["kind"] == "adamw":
        params = params * (1 - lr * decay)     # decoupled: not part of the gradient
    else:
        g = g + decay * params
    if opt["kind"] == "sgd":
        mu = opt.get("momentum", 0.0)
        if mu == 0:
            return params - lr * g
        v = state.setdefault("v", np.zeros_like(params))
        v[...] = mu * v - lr * g
        if opt.get("nesterov"):
            return params + mu * v - lr * g
        return params + v
    b1, b2, eps = opt["beta1"], opt["beta2"], opt["eps"]
    m = state.setdefault("m", np.zeros_like(params))
    v = state.setdefault("v", np.zeros_like(params))
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    return params - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


def keep_scale(rate):
    """The factor 1 / (1 - rate) of a kept unit (inverted dropout)."""
    return 1.0 / (1.0 - rate)


def train(params, sizes, acts, alphas, X, kind, opt, *, epochs, batch_size, seed, Y=None,
          labels=None, sample_weight=None, sigma=None, full=False, shuffle=True,
          drop_last=False, lrs=None, rates=None, dropout_keep=None, norms=None):
    """Minibatch training as fastnn.fit does it; returns the final parameter vector.

    Sample order of the epoch that follows e completed ones (e = 0, 1, ...): the permutation
    default_rng([seed, e]).permutation(n), a function of the seed and the epoch index alone,
    so a run continued after e epochs draws what an uninterrupted one would.
    lrs: the learning rate of each epoch (default: opt["lr"] throughout).
    rates, dropout_keep: dropout rate per layer and the mask function
    dropout_keep(seed, epoch, layer, samples, n_units, rate) -> (len(samples), n_units) 0/1
    (fastnn._core._network.dropout_keep: the masks are a function of their counter, not a stream).
    With dropout, fit draws the masks' seed first: rng.integers(2**63).
    """
    params = np.asarray(params, np.float64).copy()
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    drop = rates is not None and any(r > 0 for r in rates)
    dropout_seed = int(rng.integers(2**63)) if drop else 0
    order = np.arange(n)
    state, t = {}, 0
    take = lambda a, idx: None if a is None else a[idx]  # noqa: E731
    for epoch in range(epochs):
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(n)
        step_opt = dict(opt, lr=opt["lr"] if lrs is None else lrs[epoch])
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < batch_size and drop_last:
                break
            sw = take(sample_weight, idx)
            if sw is not None and sw.sum() == 0:
                continue
            sig = None if sigma is None else sigma[idx]
            keep = None
            if drop:
                keep = [dropout_keep(dropout_seed, epoch, k, np.ascontiguousarray(idx, np.intp),
                                     sizes[k + 1], r) if r > 0 else None
                        for k, r in enumerate(rates)]
            _, g = network_loss_grad(params, sizes, acts, alphas, X[idx], kind, take(Y, idx),
                                     take(labels, idx), sw, sig, full, keep, rates, norms)
            t += 1
            params = optimizer_step(params, g, state, t, sizes, step_opt, norms)
    return params
