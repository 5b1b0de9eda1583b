# Declarations of src_c/fastnn_kernels.h, and fused-type dispatch over float/double.
# Only declarations and `cdef inline` dispatchers live here, so every module that cimports
# this file compiles the C kernels inline (no cross-module call in the hot loop).
from cython cimport floating

cdef extern from "fastnn_kernels.h" nogil:
    enum:
        FNN_IDENTITY
        FNN_SIGMOID
        FNN_TANH
        FNN_RELU
        FNN_LEAKY_RELU
        FNN_ELU
        FNN_SELU
        FNN_GELU
        FNN_GELU_TANH
        FNN_SILU
        FNN_SOFTPLUS
        FNN_N_ACTIVATIONS
        FNN_OK
        FNN_EBADACT

    float fnn_s_sigmoid(float z) noexcept
    double fnn_d_sigmoid(double z) noexcept
    float fnn_s_tanh(float z) noexcept
    double fnn_d_tanh(double z) noexcept
    float fnn_s_expm1_neg(float x, float *exp_out) noexcept
    double fnn_d_expm1_neg(double x, double *exp_out) noexcept
    double fnn_d_log1p_unit(double x) noexcept
    int fnn_s_bias_act(float *Z, const float *b, Py_ssize_t rows, Py_ssize_t cols,
                       int act, float alpha) noexcept
    int fnn_d_bias_act(double *Z, const double *b, Py_ssize_t rows, Py_ssize_t cols,
                       int act, double alpha) noexcept
    int fnn_act_keeps_preactivation(int act) noexcept
    void fnn_s_softmax_rows(float *Z, Py_ssize_t rows, Py_ssize_t cols) noexcept
    void fnn_d_softmax_rows(double *Z, Py_ssize_t rows, Py_ssize_t cols) noexcept
    double fnn_s_softmax_xent(const float *Z, Py_ssize_t rows, Py_ssize_t k,
                              const Py_ssize_t *labels, const float *Y, const float *W, int kl,
                              double grad_scale, float *G) noexcept
    double fnn_d_softmax_xent(const double *Z, Py_ssize_t rows, Py_ssize_t k,
                              const Py_ssize_t *labels, const double *Y, const double *W,
                              int kl, double grad_scale, double *G) noexcept
    int fnn_s_all_finite(const float *X, Py_ssize_t n) noexcept
    int fnn_d_all_finite(const double *X, Py_ssize_t n) noexcept
    float fnn_s_act(float z, int act, float alpha) noexcept
    double fnn_d_act(double z, int act, double alpha) noexcept
    float fnn_s_dact(float k, int act, float alpha) noexcept
    double fnn_d_dact(double k, int act, double alpha) noexcept
    int fnn_s_bias_act_keep(float *Z, const float *b, float *A, Py_ssize_t rows,
                            Py_ssize_t cols, int act, float alpha) noexcept
    int fnn_d_bias_act_keep(double *Z, const double *b, double *A, Py_ssize_t rows,
                            Py_ssize_t cols, int act, double alpha) noexcept
    int fnn_s_act_backward(const float *dA, const float *A, float *D, float *db,
                           Py_ssize_t rows, Py_ssize_t cols, int act, float alpha) noexcept
    int fnn_d_act_backward(const double *dA, const double *A, double *D, double *db,
                           Py_ssize_t rows, Py_ssize_t cols, int act, double alpha) noexcept
    int fnn_s_act_backward_ld(const float *dA, const float *A, float *D, float *db,
                              Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld, int act,
                              float alpha) noexcept
    int fnn_d_act_backward_ld(const double *dA, const double *A, double *D, double *db,
                              Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld, int act,
                              double alpha) noexcept


cdef inline floating sigmoid(floating z) noexcept nogil:
    """1 / (1 + exp(-z)), without overflow for any z."""
    if floating is float:
        return fnn_s_sigmoid(z)
    else:
        return fnn_d_sigmoid(z)


cdef inline floating tanh_(floating z) noexcept nogil:
    """tanh(z), vectorizable, accurate to a few ulp."""
    if floating is float:
        return fnn_s_tanh(z)
    else:
        return fnn_d_tanh(z)


cdef inline void softmax_rows(floating *Z, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """Each row of Z (rows, cols) <- its softmax, in place (stable, in double, one exp each)."""
    if floating is float:
        fnn_s_softmax_rows(Z, rows, cols)
    else:
        fnn_d_softmax_rows(Z, rows, cols)


cdef inline bint all_finite(const floating *X, Py_ssize_t n) noexcept nogil:
    """No NaN or infinity among X[0:n] (one vectorized pass, src_c/fastnn_kernels.h)."""
    if floating is float:
        return fnn_s_all_finite(X, n)
    else:
        return fnn_d_all_finite(X, n)


cdef inline double softmax_xent(const floating *Z, Py_ssize_t rows, Py_ssize_t k,
                               const Py_ssize_t *labels, const floating *Y,
                               const floating *W, bint kl, double grad_scale,
                               floating *G) noexcept nogil:
    """Softmax cross-entropy (kl=False) or KL of logits Z (rows, k) against labels or rows Y:
    returns sum_i w_i l_i, writes G[i, :] = grad_scale w_i dl_i/dz_i (src_c/fastnn_kernels.h)."""
    if floating is float:
        return fnn_s_softmax_xent(Z, rows, k, labels, Y, W, kl, grad_scale, G)
    else:
        return fnn_d_softmax_xent(Z, rows, k, labels, Y, W, kl, grad_scale, G)


cdef inline int bias_act(floating *Z, const floating *b, Py_ssize_t rows, Py_ssize_t cols,
                         int act, floating alpha) noexcept nogil:
    """Z[i, j] <- act(Z[i, j] + b[j]) in place; returns FNN_OK or FNN_EBADACT."""
    if floating is float:
        return fnn_s_bias_act(Z, b, rows, cols, act, alpha)
    else:
        return fnn_d_bias_act(Z, b, rows, cols, act, alpha)


cdef inline int bias_act_keep(floating *Z, const floating *b, floating *A, Py_ssize_t rows,
                              Py_ssize_t cols, int act, floating alpha) noexcept nogil:
    """Z[i, j] <- Z[i, j] + b[j] and A[i, j] <- act(Z[i, j]) (GELU, GELU-tanh, SiLU only)."""
    if floating is float:
        return fnn_s_bias_act_keep(Z, b, A, rows, cols, act, alpha)
    else:
        return fnn_d_bias_act_keep(Z, b, A, rows, cols, act, alpha)


cdef inline int act_backward(const floating *dA, const floating *A, floating *D, floating *db,
                             Py_ssize_t rows, Py_ssize_t cols, int act,
                             floating alpha) noexcept nogil:
    """D <- dA * act'(A) (D may alias dA) and db <- column sums of D, in one pass.

    A is what the forward pass kept: the pre-activation Z for the activations where
    fnn_act_keeps_preactivation is true, the output otherwise.
    """
    if floating is float:
        return fnn_s_act_backward(dA, A, D, db, rows, cols, act, alpha)
    else:
        return fnn_d_act_backward(dA, A, D, db, rows, cols, act, alpha)


cdef inline int act_backward_ld(const floating *dA, const floating *A, floating *D,
                                floating *db, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld,
                                int act, floating alpha) noexcept nogil:
    """act_backward over a block of `cols` columns whose rows are `ld` apart (the threads
    of fastnn._core._network take disjoint column blocks; db sums in row order as in one pass)."""
    if floating is float:
        return fnn_s_act_backward_ld(dA, A, D, db, rows, cols, ld, act, alpha)
    else:
        return fnn_d_act_backward_ld(dA, A, D, db, rows, cols, ld, act, alpha)
