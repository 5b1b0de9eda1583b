# Compiled losses: the interface the training loop (_sgd.pyx) and _network.pyx call.
# Implementation and design notes: _losses.pyx.  Python face: losses.py.
from cython cimport floating

# Loss codes (keep in step with fastnn/nn/losses.py)
cdef enum:
    LOSS_MSE = 0               # mean over outputs of (z - y)^2, identity output
    LOSS_GAUSSIAN = 1          # fixed sigma (scalar, or per sample), identity output
    LOSS_GAUSSIAN_LEARNED = 2  # Z = [mean (k) | log-variance (k)], full heteroscedastic NLL
    LOSS_BCE = 3               # independent sigmoids (binary cross-entropy), from logits
    LOSS_CE = 4                # softmax cross-entropy, integer labels or probability rows
    LOSS_KL = 5                # KL(y || softmax(z)), probability rows
    LOSS_POISSON = 6           # exp(z) - y z, exp output link
    N_LOSSES = 7

cdef struct LossParams:
    int kind
    int full        # GaussianNLL / learned Gaussian / Poisson: include the constant terms
    double sigma    # GaussianNLL: the scalar sigma, used when the per-sample array is NULL


cdef double loss_grad(const LossParams *p, const floating *Z, int n_samples, int n_out,
                      const floating *Y, const Py_ssize_t *labels,
                      const floating *sample_weight, const floating *sigma,
                      double grad_scale, floating *G) noexcept nogil
# Per-sample NLL l_i of the logits Z (n_samples, n_out), row-major, and its gradient.
#   Y       (n_samples, n_targets) targets, row-major; n_targets = n_out except for
#           LOSS_GAUSSIAN_LEARNED (n_out // 2).  Unused when labels != NULL.
#   labels  (n_samples,) integer class labels in [0, n_out) (LOSS_CE only), or NULL.
#   sample_weight (n_samples,) w_i >= 0, or NULL for all ones.
#   sigma   (n_samples,) per-sample sigma_i > 0 (LOSS_GAUSSIAN only), or NULL to use p.sigma.
#   G       (n_samples, n_out) OUT: G[i, :] = grad_scale * w_i * dl_i/dZ[i, :]; may be NULL
#           (loss only).  G may be the same buffer as Z.
# Returns sum_i w_i * l_i (not scaled): the caller divides by the weight sum it chose.


cdef void output_activation(int kind, floating *Z, int n_samples, int n_out) noexcept nogil
# In place, the link from logits to the model's output: identity (MSE, Gaussian), sigmoid
# (BCE), softmax per row (CE, KL), exp (Poisson); LOSS_GAUSSIAN_LEARNED keeps the mean
# columns and turns the log-variance columns into standard deviations exp(s / 2).


cdef int check_target_sizes(int kind, Py_ssize_t n, Py_ssize_t n_out, Py_ssize_t y_rows,
                            Py_ssize_t y_cols, Py_ssize_t n_labels, Py_ssize_t n_sw,
                            Py_ssize_t n_sigma) except -1
# The same from sizes (-1: absent), C comparisons only: for the per-epoch entry points.

cdef int check_targets(int kind, Py_ssize_t n, Py_ssize_t n_out, object Y,
                       const Py_ssize_t[::1] labels, object sample_weight,
                       object sigma) except -1
# Raise ValueError unless the loss code and the targets (Y (n, n_targets) or labels in
# [0, n_out), sample_weight and sigma of n entries; None where absent) fit logits (n, n_out).
# For the def entry points of _losses, _network and _sgd: their callers are not trusted.
