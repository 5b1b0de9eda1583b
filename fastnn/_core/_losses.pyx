"""Compiled losses: per-sample negative log-likelihoods and their gradients w.r.t. the logits.

Design
------
* The output link is fused into the loss.  The network's last layer is left linear and the loss
  takes its logits Z: sigmoid/softmax/exp never run as a separate layer during training.  Then
  every NLL can be written in a form that is stable for ANY logit (log1p(exp(-|z|)) for BCE,
  max-subtracted log-sum-exp for softmax, exp(z) - y z for Poisson), and the gradient with
  respect to Z collapses to "prediction - target" (sigmoid(z) - y, softmax(z) - y,
  exp(z) - y, ...).  A separate sigmoid layer followed by -log(p) would lose both: log(0) at
  saturated outputs, and a product of a tiny derivative with a huge one.
* Per-sample point functions.  Each loss is one `_row_*` function of one sample's row
  (z_i, y_i) that returns l_i and writes dl_i/dz_i scaled by c_i = grad_scale * w_i.  The batch
  loop `loss_grad` does the rest the same way for every loss: sample weights, the scale, the
  accumulation of sum_i w_i l_i.  A new loss is one more row function; weights cannot be handled
  differently by two losses.  The exception is the softmax pair (cross-entropy, KL), the loss
  of every classifier: its whole batch is one C kernel (next points), which keeps the same
  contract (weights, scale, sum, NaN for bad labels) and is tested against the same references.
* The loop writes into a caller buffer and allocates nothing.  The training loop (_sgd.pyx)
  calls `loss_grad` once per minibatch without the GIL on a workspace allocated once per fit;
  G may even be Z itself (the gradient overwrites the logits in place), so every row function
  reads z[j] before it writes g[j].
* Arithmetic inside a row is in double for both dtypes.  The loss is O(B k) work against the
  O(B k n_in) of the GEMMs around it, so the extra precision is free here, and it matters:
  gradients such as softmax - onehot cancel, and a float32 gradient then is the correctly
  rounded double one.  The sum over samples is a double as well (the return type).
* No libm exp per logit.  Cross-entropy and KL take exp(z_ij - m_i) for a block of rows from
  one vectorized call, with the exp the prediction softmax (softmax_rows) uses, a few ulp of
  double; BCE takes exp(-|z|) from the same function.  The training link and the prediction
  link thus share one exp.  A libm exp per logit was a third of a small network's training
  step (bench/RESULTS.md section 20).
* Cross-entropy and KL are one vectorized C kernel for a block of rows
  (src_c/fastnn_kernels.h fnn_*_softmax_xent): the row maxima, the exps, t, log1p and the
  gradient rows, one row per vector lane, each row's sums in the order of its logits, so a row
  has the same bits alone or in any block, on any thread count and CPU variant.  Per row in
  Cython (a branch per logit for the argmax, a scalar gradient loop) it was ~480 instructions
  for 10 logits (bench/RESULTS.md section 20).
* Tiny gradients keep their relative accuracy where training ends up (confident, correct
  predictions): BCE uses sigmoid(z) - y = (1 - y) sigmoid(z) - y sigmoid(-z), and softmax
  cross-entropy writes the component at the largest logit as (sum_{j != m} y_j - y_m t) / s with
  t = sum_{j != m} exp(z_j - z_m), s = 1 + t, instead of subtracting two numbers close to 1.
* Nothing here raises.  An unknown loss code, missing targets or an out-of-range label give a
  NaN loss (and NaN gradient rows for a bad label) instead of reading out of bounds; fastnn.nn.losses
  validates everything before calling in, and the training loop checks the returned value.
"""
from cython cimport floating
from libc.math cimport exp, log, log1p, fabs, lgamma, NAN
from libc.float cimport DBL_MIN
from libc.limits cimport INT_MAX

from fastnn._core._fpmode cimport fnn_fpmode_enter, fnn_fpmode_leave
from fastnn._core._kernels cimport (softmax_rows, softmax_xent, fnn_d_sigmoid,
                                     fnn_d_expm1_neg, fnn_d_log1p_unit)

# 0.5 * log(2 pi): the constant of a Gaussian log-density per target
cdef double HALF_LOG_2PI = 0.91893853320467274178

#: name -> loss code (the enum of _losses.pxd), for fastnn.nn.losses
KINDS = {
    "mse": LOSS_MSE,
    "gaussian": LOSS_GAUSSIAN,
    "gaussian_learned": LOSS_GAUSSIAN_LEARNED,
    "bce": LOSS_BCE,
    "cross_entropy": LOSS_CE,
    "kl": LOSS_KL,
    "poisson": LOSS_POISSON,
}


# ------------------------------------------------------------------ per-sample point functions
# Each returns l_i for one row and, when g != NULL, writes g[j] = c * dl_i/dz[j].  g may alias
# z: z[j] is always read before g[j] is written.

cdef inline double _inv_square(double sigma) noexcept nogil:
    """1 / sigma^2, finite for every sigma >= fastnn.nn.losses.SIGMA_MIN (7.5e-155).

    Below 1.5e-154, sigma^2 is a subnormal double, which flushing (fastnn's default inside
    compiled calls) makes 0, and 1/0 = inf then met a flushed (z - y)^2 = 0 as 0 * inf = NaN:
    there it is formed as (1/sigma)^2.  Above, 1 / (sigma sigma), the form every result has
    been rounded in.
    """
    cdef double square = sigma * sigma, inverse
    if square >= DBL_MIN:
        return 1.0 / square
    inverse = 1.0 / sigma
    return inverse * inverse


cdef inline double _row_gaussian(const floating *z, const floating *y, int k, double inv_var,
                                 double c, floating *g) noexcept nogil:
    """l = sum_j (y_j - z_j)^2 / (2 sigma^2);  dl/dz_j = (z_j - y_j) / sigma^2."""
    cdef double d, s = 0.0, cg = c * inv_var
    cdef int j
    for j in range(k):
        d = <double> z[j] - <double> y[j]
        s += d * d
        if g != NULL:
            g[j] = <floating> (cg * d)
    return 0.5 * inv_var * s


cdef inline double _row_mse(const floating *z, const floating *y, int k, double c,
                            floating *g) noexcept nogil:
    """l = (1/k) sum_j (z_j - y_j)^2;  dl/dz_j = 2 (z_j - y_j) / k.

    The Gaussian NLL with 1/sigma^2 = 2/k: MSE is that MLE in disguise (docs/theory.md,
    section 4).
    """
    return _row_gaussian(z, y, k, 2.0 / k, c, g)


cdef inline double _row_gaussian_learned(const floating *z, const floating *y, int k, double c,
                                         floating *g) noexcept nogil:
    """z = [mu (k) | s (k)], s = log variance:  l = sum_j 0.5 (y_j - mu_j)^2 exp(-s_j) + 0.5 s_j.

    dl/dmu_j = (mu_j - y_j) exp(-s_j);  dl/ds_j = 0.5 - 0.5 (y_j - mu_j)^2 exp(-s_j).
    With e = exp(-s/2) and d = (y - mu) e: (y - mu)^2 exp(-s) = d^2 and (mu - y) exp(-s) = -d e,
    which overflows only for s < -1419 (exp(-s) itself would at s < -709).  A target matched
    exactly (y == mu) has r = 0 whatever s is: the 0 * inf of a huge precision is not formed.
    No clamping: an honest overflow stays visible as inf.
    """
    cdef double diff, s, e, d, r, gmu, l = 0.0
    cdef int j
    for j in range(k):
        diff = <double> y[j] - <double> z[j]
        s = <double> z[k + j]
        if diff == 0.0:
            r = 0.0
            gmu = 0.0
        else:
            e = exp(-0.5 * s)
            d = diff * e
            r = d * d
            gmu = -d * e
        l += 0.5 * r + 0.5 * s
        if g != NULL:
            g[j] = <floating> (c * gmu)
            g[k + j] = <floating> (c * (0.5 - 0.5 * r))
    return l


cdef inline double _row_bce(const floating *z, const floating *y, int k, double c,
                            floating *g) noexcept nogil:
    """l = sum_j max(z_j, 0) - y_j z_j + log1p(exp(-|z_j|));  dl/dz_j = sigmoid(z_j) - y_j.

    max(z, 0) - y z is written (1 - y) z for z > 0 and -y z otherwise: both terms are >= 0 for
    y in [0, 1], so nothing cancels, and z = +-1e4 with a hard target gives exactly 0 or 1e4.
    The gradient is (1 - y) sigmoid(z) - y sigmoid(-z): exact in relative terms for hard targets
    even when it is 1e-13 (sigmoid(30) - 1 would keep only three digits of it).
    One exponential per logit, e = exp(-|z|) from fnn_d_expm1_neg (the exp of the sigmoid
    link), for both the loss and the gradient: sigmoid(|z|) = 1 / (1 + e) and
    sigmoid(-|z|) = e / (1 + e), exactly fnn_d_sigmoid's two forms (the same bits as calling
    it twice); log1p(e) for e in (0, 1] is softplus's fnn_d_log1p_unit.  No libm call.
    """
    cdef double zj, yj, e, p, pos, neg, l = 0.0
    cdef int j
    for j in range(k):
        zj = <double> z[j]
        yj = <double> y[j]
        fnn_d_expm1_neg(-fabs(zj), &e)
        l += ((1.0 - yj) * zj if zj > 0.0 else -yj * zj) + fnn_d_log1p_unit(e)
        if g != NULL:
            p = 1.0 / (1.0 + e)
            pos = e * p if zj < 0.0 else p      # sigmoid(zj)
            neg = p if zj < 0.0 else e * p      # sigmoid(-zj)
            g[j] = <floating> (c * ((1.0 - yj) * pos - yj * neg))
    return l


cdef inline double _row_poisson(const floating *z, const floating *y, int k, bint full,
                                double c, floating *g) noexcept nogil:
    """l = sum_j exp(z_j) - y_j z_j [+ lgamma(y_j + 1)];  dl/dz_j = exp(z_j) - y_j.

    lgamma's sign output (the global signgam) is never needed here: y + 1 >= 1.
    """
    cdef double zj, yj, ez, l = 0.0
    cdef int j
    for j in range(k):
        zj = <double> z[j]
        yj = <double> y[j]
        ez = exp(zj)
        l += ez - yj * zj
        if full:
            l += lgamma(yj + 1.0)
        if g != NULL:
            g[j] = <floating> (c * (ez - yj))
    return l


# --------------------------------------------------------------------------------- batch loop

cdef double loss_grad(const LossParams *p, const floating *Z, int n_samples, int n_out,
                      const floating *Y, const Py_ssize_t *labels,
                      const floating *sample_weight, const floating *sigma,
                      double grad_scale, floating *G) noexcept nogil:
    """sum_i w_i l_i over the batch; G[i, :] = grad_scale * w_i * dl_i/dZ[i, :] (see _losses.pxd).

    A sample of weight 0 contributes nothing and gets a zero gradient row, even where its l_i
    would overflow (no 0 * inf).
    """
    cdef int kind = p.kind
    cdef int k = n_out // 2 if kind == LOSS_GAUSSIAN_LEARNED else n_out  # targets per row
    cdef Py_ssize_t i, j
    cdef double total = 0.0, w, c, l, sig, inv_var = 0.0, const_term = 0.0
    cdef const floating *z
    cdef const floating *y = NULL
    cdef floating *g = NULL
    cdef bint use_labels = labels != NULL and (kind == LOSS_CE or kind == LOSS_KL)

    if kind < 0 or kind >= N_LOSSES or n_out < 1 or k < 1:
        return NAN
    if Y == NULL and not use_labels:
        return NAN
    if kind == LOSS_CE or kind == LOSS_KL:
        # one C kernel for the whole batch: src_c/fastnn_kernels.h fnn_*_softmax_xent
        return softmax_xent(Z, n_samples, k, labels, Y, sample_weight, kind == LOSS_KL,
                            grad_scale, G)
    if kind == LOSS_GAUSSIAN and sigma == NULL:
        inv_var = _inv_square(p.sigma)
        if p.full:
            const_term = k * (log(p.sigma) + HALF_LOG_2PI)
    elif kind == LOSS_GAUSSIAN_LEARNED and p.full:
        const_term = k * HALF_LOG_2PI

    for i in range(n_samples):
        w = 1.0 if sample_weight == NULL else <double> sample_weight[i]
        z = Z + i * n_out
        if G != NULL:
            g = G + i * n_out
        if not use_labels:
            y = Y + i * k
        if w == 0.0:
            if g != NULL:
                for j in range(n_out):
                    g[j] = 0
            continue
        c = grad_scale * w
        if kind == LOSS_MSE:
            l = _row_mse(z, y, k, c, g)
        elif kind == LOSS_GAUSSIAN:
            if sigma != NULL:
                sig = <double> sigma[i]
                inv_var = _inv_square(sig)
                if p.full:
                    const_term = k * (log(sig) + HALF_LOG_2PI)
            l = _row_gaussian(z, y, k, inv_var, c, g) + const_term
        elif kind == LOSS_GAUSSIAN_LEARNED:
            l = _row_gaussian_learned(z, y, k, c, g) + const_term
        elif kind == LOSS_BCE:
            l = _row_bce(z, y, k, c, g)
        else:  # LOSS_POISSON
            l = _row_poisson(z, y, k, p.full, c, g)
        total += w * l
    return total


cdef void output_activation(int kind, floating *Z, int n_samples, int n_out) noexcept nogil:
    """Z <- link(Z) in place (see _losses.pxd).  Unknown codes leave Z unchanged."""
    cdef Py_ssize_t i, j, n = <Py_ssize_t> n_samples * n_out
    cdef int k = n_out // 2
    cdef floating *z
    if kind == LOSS_BCE:
        # in double, each probability rounded once: the value training's link (_row_bce)
        # computes, as softmax_rows does for the softmax (the float kernel the hidden layers
        # use, fnn_s_sigmoid, is up to ~3 ulp of float off)
        for i in range(n):
            Z[i] = <floating> fnn_d_sigmoid(<double> Z[i])
    elif kind == LOSS_POISSON:
        for i in range(n):
            Z[i] = <floating> exp(<double> Z[i])
    elif kind == LOSS_GAUSSIAN_LEARNED:
        for i in range(n_samples):
            z = Z + i * n_out
            for j in range(k, 2 * k):
                z[j] = <floating> exp(0.5 * <double> z[j])
    elif kind == LOSS_CE or kind == LOSS_KL:
        # stable, in double, one exponential per element, each probability rounded once;
        # vectorized across rows (src_c/fastnn_kernels.h fnn_*_softmax_rows)
        softmax_rows(Z, n_samples, n_out)


# ------------------------------------------------------------- checks at the compiled boundary

cdef int check_target_sizes(int kind, Py_ssize_t n, Py_ssize_t n_out, Py_ssize_t y_rows,
                            Py_ssize_t y_cols, Py_ssize_t n_labels, Py_ssize_t n_sw,
                            Py_ssize_t n_sigma) except -1:
    """Raise ValueError unless the loss code and the targets fit logits of shape (n, n_out).

    Sizes are -1 for an absent array.  Shared by every def entry point that reaches loss_grad
    (here, _network, _sgd, _bench): these private functions are reachable from Python, so
    they never trust their caller's sizes.  O(1), C comparisons unless one fails.  Label
    values are not checked here: the kernel turns a label outside [0, n_out) into a NaN
    loss (never a read out of bounds), and fastnn.nn.losses rejects it first.
    """
    cdef Py_ssize_t k
    if kind < 0 or kind >= N_LOSSES:
        raise ValueError(f"unknown loss code {kind}; expected 0 .. {N_LOSSES - 1}")
    k = n_out // 2 if kind == LOSS_GAUSSIAN_LEARNED else n_out
    if n < 0 or n_out < 1 or k < 1:
        raise ValueError(f"logits of shape ({n}, {n_out}) do not fit loss code {kind}")
    if n_labels != -1:
        if kind != LOSS_CE and kind != LOSS_KL:
            raise ValueError("labels are only used by the softmax losses")
        if n_labels != n:
            raise ValueError(f"labels has {n_labels} entries; expected {n}")
    elif y_rows == -1:
        raise ValueError("either Y or labels is required")
    elif y_rows != n or y_cols != k:
        raise ValueError(f"Y has shape ({y_rows}, {y_cols}); expected ({n}, {k})")
    if n_sw != -1 and n_sw != n:
        raise ValueError(f"sample_weight has {n_sw} entries; expected {n}")
    if n_sigma != -1 and n_sigma != n:
        raise ValueError(f"sigma has {n_sigma} entries; expected {n}")
    return 0


cdef int check_targets(int kind, Py_ssize_t n, Py_ssize_t n_out, object Y,
                       const Py_ssize_t[::1] labels, object sample_weight,
                       object sigma) except -1:
    """check_target_sizes from the arrays (None where absent)."""
    return check_target_sizes(
        kind, n, n_out, -1 if Y is None else Y.shape[0], -1 if Y is None else Y.shape[1],
        -1 if labels is None else labels.shape[0],
        -1 if sample_weight is None else sample_weight.shape[0],
        -1 if sigma is None else sigma.shape[0])


def check_targets_py(int kind, Py_ssize_t n, Py_ssize_t n_out, Y, labels,
                     sample_weight=None, sigma=None):
    """check_targets for Python callers (bench/_bench.pyx)."""
    check_targets(kind, n, n_out, Y, labels, sample_weight, sigma)



# ------------------------------------------------------------- def wrappers for fastnn.nn.losses

def loss_grad_into(int kind, bint full, double sigma,
                   const floating[:, ::1] Z,              # IN (n, n_out) logits
                   const floating[:, ::1] Y,              # IN (n, n_targets) or None
                   const Py_ssize_t[::1] labels,          # IN (n,) intp, or None
                   const floating[::1] sample_weight,     # IN (n,) or None
                   const floating[::1] sigma_arr,         # IN (n,) per-sample sigma, or None
                   double grad_scale,
                   floating[:, ::1] G,                    # OUT (n, n_out) or None; may be Z
                   bint flush_denormals=True):
    """Unchecked values (fastnn.nn.losses validates them); shapes are checked, O(1).

    Returns sum_i w_i l_i as a float and fills G[i, :] = grad_scale * w_i * dl_i/dZ[i, :].
    flush_denormals: flush subnormals to zero on this thread during the call
    (fastnn.runtime.fpmode).
    """
    cdef unsigned long long fp_saved
    cdef LossParams p
    cdef Py_ssize_t n = Z.shape[0], n_out = Z.shape[1]
    cdef const floating *Y_ptr = NULL
    cdef const Py_ssize_t *lab_ptr = NULL
    cdef const floating *w_ptr = NULL
    cdef const floating *s_ptr = NULL
    cdef floating *G_ptr = NULL
    cdef double total
    if n < 1 or n > INT_MAX or n_out > INT_MAX:
        raise ValueError(f"Z has shape ({n}, {n_out}); expected 1 .. {INT_MAX} rows")
    check_target_sizes(kind, n, n_out, -1 if Y is None else Y.shape[0],
                       -1 if Y is None else Y.shape[1],
                       -1 if labels is None else labels.shape[0],
                       -1 if sample_weight is None else sample_weight.shape[0],
                       -1 if sigma_arr is None else sigma_arr.shape[0])
    if labels is not None:
        lab_ptr = &labels[0]
    else:
        Y_ptr = &Y[0, 0]
    if sample_weight is not None:
        w_ptr = &sample_weight[0]
    if sigma_arr is not None:
        s_ptr = &sigma_arr[0]
    if G is not None:
        if G.shape[0] != n or G.shape[1] != n_out:
            raise ValueError(f"G has shape ({G.shape[0]}, {G.shape[1]}); expected ({n}, {n_out})")
        G_ptr = &G[0, 0]
    p.kind = kind
    p.full = full
    p.sigma = sigma
    with nogil:
        fp_saved = fnn_fpmode_enter(flush_denormals)
        total = loss_grad(&p, &Z[0, 0], <int> n, <int> n_out, Y_ptr, lab_ptr, w_ptr, s_ptr,
                          grad_scale, G_ptr)
        fnn_fpmode_leave(flush_denormals, fp_saved)
    return total


def output_into(int kind, floating[:, ::1] Z,   # IN/OUT (n, n_out): logits -> link(logits)
                bint flush_denormals=True):
    """Apply the loss's output link to Z in place (see output_activation).  flush_denormals:
    as in loss_grad_into."""
    cdef unsigned long long fp_saved
    if kind < 0 or kind >= N_LOSSES:
        raise ValueError(f"unknown loss code {kind}")
    if Z.shape[0] == 0 or Z.shape[1] == 0:
        return
    if Z.shape[0] > INT_MAX or Z.shape[1] > INT_MAX:
        raise ValueError(f"Z has shape ({Z.shape[0]}, {Z.shape[1]}); too large")
    with nogil:
        fp_saved = fnn_fpmode_enter(flush_denormals)
        output_activation(kind, &Z[0, 0], <int> Z.shape[0], <int> Z.shape[1])
        fnn_fpmode_leave(flush_denormals, fp_saved)
