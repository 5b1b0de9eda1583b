/*
 * fastnn_layernorm.h -- layer normalization of the pre-activation, in plain C.
 *
 * A layer with normalization="layer" computes, per sample (row) i (Ba, Kiros & Hinton,
 * "Layer Normalization", 2016):
 *   z = x W + b;   mu = mean_j z_j;   var = mean_j (z_j - mu)^2;   r = 1 / sqrt(var + eps)
 *   xhat = (z - mu) r;   y = gamma * xhat + beta;   a = act(y)
 * with a learnable gain gamma and shift beta per unit (in the parameter vector after b).
 * The forward pass keeps xhat, y and r; the backward pass, from g = dl/dy:
 *   dbeta = sum_i g;  dgamma = sum_i g xhat;  h = g gamma;
 *   dl/dz = r (h - mean_j h - xhat mean_j (h xhat))
 * act'(y) is formed from the kept y for every activation (for those whose derivative is
 * written through the output, from act(y) recomputed: one more activation per unit in the
 * normalized layers only, instead of one more workspace slot).
 */
#ifndef FASTNN_LAYERNORM_H
#define FASTNN_LAYERNORM_H

#include <math.h>
#include "fastnn_kernels.h"

#define FNN_LAYERNORM_EPS 1e-5   /* PyTorch's and Keras' default */

#define FNN_ACT_INTO_CASE(T, P, CODE)                                                         \
    case CODE:                                                                                \
        for (i = 0; i < rows; i++)                                                            \
            for (j = 0; j < cols; j++)                                                        \
                A[i * cols + j] = P##act(Y[i * cols + j], CODE, alpha);                       \
        return FNN_OK;
#define FNN_DACT_Z_CASE(T, P, CODE)                                                           \
        case CODE:                                                                            \
            for (j = 0; j < cols; j++) {                                                      \
                T y = k[j];                                                                   \
                T g = da[j] * (fnn_act_keeps_preactivation(CODE)                              \
                               ? P##dact(y, CODE, alpha)                                      \
                               : P##dact(P##act(y, CODE, alpha), CODE, alpha));               \
                d[j] = g; db[j] += g;                                                         \
            }                                                                                 \
            break;

#define FNN_LN_BIG(T) (sizeof(T) == sizeof(float) ? 3.4028234663852886e38 : 1.7976931348623157e308)

#define FNN_DEFINE_LAYERNORM(T, P)                                                            \
/* One row whose mean or variance overflows T, computed on z / s, s = max |z_j|:               \
 * xhat = (z/s - mean(z/s)) * (s r), r = 1 / (s sqrt(var(z/s) + eps / s^2)) in double.  Before \
 * this, such a row came out as xhat = 0 (y = beta) without a sign that anything was wrong. */ \
static void P##layernorm_row_scaled(T *z, T *y, const T *gamma, const T *beta,                \
                                    ptrdiff_t cols, T *rstd)                                  \
{                                                                                             \
    ptrdiff_t j;                                                                              \
    T s = 0, mus = 0, m2 = 0;                                                                 \
    for (j = 0; j < cols; j++) {                                                              \
        T a = z[j] < 0 ? -z[j] : z[j];                                                        \
        s = (a > s || a != a) ? a : s;                                                        \
    }                                                                                         \
    for (j = 0; j < cols; j++) mus += z[j] / s;                                               \
    mus /= (T)cols;                                                                           \
    for (j = 0; j < cols; j++) { T c = z[j] / s - mus; m2 += c * c; }                         \
    double sd = (double)s;                                                                    \
    double r = 1.0 / (sd * sqrt((double)(m2 / (T)cols) + FNN_LAYERNORM_EPS / (sd * sd)));     \
    T sr = (T)(sd * r);                                                                       \
    *rstd = (T)r;                                                                             \
    for (j = 0; j < cols; j++) {                                                              \
        T xh = (z[j] / s - mus) * sr;                                                         \
        z[j] = xh;                                                                            \
        y[j] = gamma[j] * xh + beta[j];                                                       \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* Z (rows, cols): x W on entry, xhat on return; Y = gamma xhat + beta; rstd (rows,) */       \
FNN_CLONES void P##layernorm_forward(T *restrict Z, const T *restrict b,                      \
                                     const T *restrict gamma, const T *restrict beta,         \
                                     T *restrict Y, T *restrict rstd, ptrdiff_t rows,         \
                                     ptrdiff_t cols)                                          \
{                                                                                             \
    ptrdiff_t i, j;                                                                           \
    for (i = 0; i < rows; i++) {                                                              \
        T *restrict z = Z + i * cols, *restrict y = Y + i * cols;                             \
        T mu = 0, var = 0;                                                                    \
        for (j = 0; j < cols; j++) { z[j] += b[j]; mu += z[j]; }                              \
        mu /= (T)cols;                                                                        \
        for (j = 0; j < cols; j++) { T c = z[j] - mu; var += c * c; }                         \
        T r = (T)1 / (T)sqrt((double)(var / (T)cols) + FNN_LAYERNORM_EPS);                    \
        if (!(var <= (T)FNN_LN_BIG(T))) {                                                     \
            /* the sum or the squares overflowed (|z - mu| > 1.8e19 in float32): redo the row \
             * scaled by s = max |z_j| (rare; a NaN or inf in z stays NaN) */                  \
            P##layernorm_row_scaled(z, y, gamma, beta, cols, &rstd[i]);                       \
            continue;                                                                         \
        }                                                                                     \
        rstd[i] = r;                                                                          \
        for (j = 0; j < cols; j++) {                                                          \
            T xh = (z[j] - mu) * r;                                                           \
            z[j] = xh;                                                                        \
            y[j] = gamma[j] * xh + beta[j];                                                   \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* A = act(Y) */                                                                              \
FNN_CLONES int P##act_into(const T *restrict Y, T *restrict A, ptrdiff_t rows, ptrdiff_t cols, \
                           int act, T alpha)                                                  \
{                                                                                             \
    ptrdiff_t i, j;                                                                           \
    switch (act) {                                                                            \
    FNN_ACT_INTO_CASE(T, P, FNN_IDENTITY)                                                     \
    FNN_ACT_INTO_CASE(T, P, FNN_SIGMOID)                                                      \
    FNN_ACT_INTO_CASE(T, P, FNN_TANH)                                                         \
    FNN_ACT_INTO_CASE(T, P, FNN_RELU)                                                         \
    FNN_ACT_INTO_CASE(T, P, FNN_LEAKY_RELU)                                                   \
    FNN_ACT_INTO_CASE(T, P, FNN_ELU)                                                          \
    FNN_ACT_INTO_CASE(T, P, FNN_SELU)                                                         \
    FNN_ACT_INTO_CASE(T, P, FNN_GELU)                                                         \
    FNN_ACT_INTO_CASE(T, P, FNN_GELU_TANH)                                                    \
    FNN_ACT_INTO_CASE(T, P, FNN_SILU)                                                         \
    FNN_ACT_INTO_CASE(T, P, FNN_SOFTPLUS)                                                     \
    }                                                                                         \
    return FNN_EBADACT;                                                                       \
}                                                                                             \
                                                                                              \
/* D = dA * act'(y) from the pre-activation y for every code; db = colsum D (= dbeta) */       \
FNN_CLONES int P##act_backward_z(const T *dA, const T *restrict K, T *D, T *restrict db,       \
                                 ptrdiff_t rows, ptrdiff_t cols, int act, T alpha)            \
{                                                                                             \
    ptrdiff_t i, j;                                                                           \
    if (act < 0 || act >= FNN_N_ACTIVATIONS) return FNN_EBADACT;                              \
    for (j = 0; j < cols; j++) db[j] = 0;                                                     \
    for (i = 0; i < rows; i++) {                                                              \
        const T *da = dA + i * cols, *restrict k = K + i * cols;                              \
        T *d = D + i * cols;                                                                  \
        switch (act) {                                                                        \
        FNN_DACT_Z_CASE(T, P, FNN_IDENTITY)                                                   \
        FNN_DACT_Z_CASE(T, P, FNN_SIGMOID)                                                    \
        FNN_DACT_Z_CASE(T, P, FNN_TANH)                                                       \
        FNN_DACT_Z_CASE(T, P, FNN_RELU)                                                       \
        FNN_DACT_Z_CASE(T, P, FNN_LEAKY_RELU)                                                 \
        FNN_DACT_Z_CASE(T, P, FNN_ELU)                                                        \
        FNN_DACT_Z_CASE(T, P, FNN_SELU)                                                       \
        FNN_DACT_Z_CASE(T, P, FNN_GELU)                                                       \
        FNN_DACT_Z_CASE(T, P, FNN_GELU_TANH)                                                  \
        FNN_DACT_Z_CASE(T, P, FNN_SILU)                                                       \
        FNN_DACT_Z_CASE(T, P, FNN_SOFTPLUS)                                                   \
        }                                                                                     \
    }                                                                                         \
    return FNN_OK;                                                                            \
}                                                                                             \
                                                                                              \
/* G (rows, cols): dl/dy on entry, dl/dz on return; dgamma = sum_i dl/dy xhat */              \
FNN_CLONES void P##layernorm_backward(T *restrict G, const T *restrict xhat,                  \
                                      const T *restrict gamma, const T *restrict rstd,        \
                                      T *restrict dgamma, ptrdiff_t rows, ptrdiff_t cols)     \
{                                                                                             \
    ptrdiff_t i, j;                                                                           \
    for (j = 0; j < cols; j++) dgamma[j] = 0;                                                 \
    for (i = 0; i < rows; i++) {                                                              \
        T *restrict g = G + i * cols;                                                         \
        const T *restrict xh = xhat + i * cols;                                               \
        T mh = 0, mhx = 0;                                                                    \
        for (j = 0; j < cols; j++) {                                                          \
            dgamma[j] += g[j] * xh[j];                                                        \
            T h = g[j] * gamma[j];                                                            \
            mh += h; mhx += h * xh[j];                                                        \
        }                                                                                     \
        mh /= (T)cols; mhx /= (T)cols;                                                        \
        for (j = 0; j < cols; j++)                                                            \
            g[j] = rstd[i] * (g[j] * gamma[j] - mh - xh[j] * mhx);                            \
    }                                                                                         \
}

FNN_DEFINE_LAYERNORM(float, fnn_s_)
FNN_DEFINE_LAYERNORM(double, fnn_d_)

#undef FNN_DEFINE_LAYERNORM
#undef FNN_ACT_INTO_CASE
#undef FNN_DACT_Z_CASE

#endif /* FASTNN_LAYERNORM_H */
