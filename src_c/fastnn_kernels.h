/*
 * fastnn_kernels.h -- the element-wise part of fastnn's fused dense layer, in plain C.
 *
 * Everything here is `static inline`, allocates nothing, touches no Python object and can run
 * without the GIL.  Each kernel exists twice, `fnn_s_*` for float and `fnn_d_*` for double,
 * generated from one template by FNN_DEFINE_KERNELS below so that the two precisions cannot
 * drift apart.
 *
 * Layout: a batch is row-major, `rows` samples of `cols` units, contiguous (ld == cols).
 *
 * Why our own exp:  tanh and sigmoid call exp once per unit, and a libm call per element does not
 * vectorize; on a 64-unit tanh layer it costs more than the GEMM.  fnn_*_expm1_neg evaluates
 * expm1 (and so exp) for arguments <= 0 -- the only ones tanh and sigmoid need, so it cannot
 * overflow -- with branch-free code the compiler vectorizes, accurate to a few ulp:
 *   x = n ln2 + r, |r| <= ln2/2;  expm1(x) = 2^n expm1(r) + (2^n - 1)
 * with a Taylor polynomial for expm1(r) whose truncation error is below half an ulp
 * (degree 7 for float, 13 for double).  2^n is built from the exponent bits, split into two
 * factors so that results in the subnormal range are still formed correctly.
 */
#ifndef FASTNN_KERNELS_H
#define FASTNN_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

/* Activation codes, shared with fastnn/_kernels.pxd and fastnn/layers.py (ACTIVATIONS). */
enum {
    FNN_IDENTITY = 0,
    FNN_SIGMOID = 1,
    FNN_TANH = 2,
    FNN_RELU = 3,
    FNN_LEAKY_RELU = 4,
    FNN_N_ACTIVATIONS = 5
};

/* Status codes returned by the C helpers; the Cython wrappers turn them into exceptions. */
enum {
    FNN_OK = 0,
    FNN_EBADACT = -1,   /* unknown activation code */
};

/* ---- 2^n for an integer-valued n, from the bits of a double/float (no int<->float casts) -- */

static inline double fnn_d_pow2i(double n)
{
    /* 2^52 + (n + 1023) has n + 1023 in its low mantissa bits; move them to the exponent. */
    double biased = n + (1023.0 + 4503599627370496.0);
    uint64_t bits;
    memcpy(&bits, &biased, sizeof bits);
    bits = (bits - UINT64_C(0x4330000000000000)) << 52;
    double out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

static inline float fnn_s_pow2i(float n)
{
    float biased = n + (127.0f + 8388608.0f);
    uint32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    bits = (bits - UINT32_C(0x4B000000)) << 23;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* expm1(x) for x <= 0 (and NaN).  Also returns exp(x) in *exp_out. */
static inline double fnn_d_expm1_neg(double x, double *exp_out)
{
    const double log2e = 1.4426950408889634;
    const double ln2_hi = 6.93147180369123816490e-01;  /* Cody-Waite split of ln 2 */
    const double ln2_lo = 1.90821492927058770002e-10;
    const double round_magic = 6755399441055744.0;     /* 1.5 * 2^52 rounds to nearest */
    x = x < -746.0 ? -746.0 : x;                       /* exp(-746) rounds to 0 anyway */
    double n = (x * log2e + round_magic) - round_magic;
    double r = (x - n * ln2_hi) - n * ln2_lo;
    double q = 1.0 / 6227020800.0;                     /* expm1(r) = r + r^2/2! + ... + r^13/13! */
    q = q * r + 1.0 / 479001600.0;
    q = q * r + 1.0 / 39916800.0;
    q = q * r + 1.0 / 3628800.0;
    q = q * r + 1.0 / 362880.0;
    q = q * r + 1.0 / 40320.0;
    q = q * r + 1.0 / 5040.0;
    q = q * r + 1.0 / 720.0;
    q = q * r + 1.0 / 120.0;
    q = q * r + 1.0 / 24.0;
    q = q * r + 1.0 / 6.0;
    q = q * r + 0.5;
    q = q * r * r + r;
    /* 2^n = 2^n1 * 2^n2 with both factors normal even when 2^n is subnormal */
    double n1 = (n * 0.5 + round_magic) - round_magic;
    double s1 = fnn_d_pow2i(n1), s2 = fnn_d_pow2i(n - n1);
    *exp_out = (q * s1 + s1) * s2;
    return (q * s1 + (s1 - 1.0 / s2)) * s2;             /* 2^n q + 2^n - 1, exact for n = 0 */
}

static inline float fnn_s_expm1_neg(float x, float *exp_out)
{
    const float log2e = 1.44269504f;
    const float ln2_hi = 0.693359375f;
    const float ln2_lo = -2.12194440e-4f;
    const float round_magic = 12582912.0f;             /* 1.5 * 2^23 */
    x = x < -104.0f ? -104.0f : x;
    float n = (x * log2e + round_magic) - round_magic;
    float r = (x - n * ln2_hi) - n * ln2_lo;
    float q = 1.0f / 5040.0f;                          /* expm1(r) to r^7/7! */
    q = q * r + 1.0f / 720.0f;
    q = q * r + 1.0f / 120.0f;
    q = q * r + 1.0f / 24.0f;
    q = q * r + 1.0f / 6.0f;
    q = q * r + 0.5f;
    q = q * r * r + r;
    float n1 = (n * 0.5f + round_magic) - round_magic;
    float s1 = fnn_s_pow2i(n1), s2 = fnn_s_pow2i(n - n1);
    *exp_out = (q * s1 + s1) * s2;
    return (q * s1 + (s1 - 1.0f / s2)) * s2;
}

/*
 * FNN_DEFINE_KERNELS(T, P) defines, for element type T and prefix P:
 *   P##sigmoid(z), P##tanh(z)           scalar, overflow-free for any z
 *   P##bias_act(Z, b, rows, cols, act, alpha)
 *       Z[i, j] <- act(Z[i, j] + b[j]) in place: the one pass after the forward GEMM.
 *   P##act_backward(dA, A, D, db, rows, cols, act, alpha)
 *       D[i, j] <- dA[i, j] * act'(A[i, j]) and db[j] <- sum_i D[i, j], in one pass.
 *       The derivative is taken from the stored output A (THEORY.md).  D may alias dA.
 * Both return FNN_OK or FNN_EBADACT.
 *
 * NaN propagates: relu is written `z < 0 ? 0 : z` so that a NaN stays NaN (fmax would
 * silently turn it into 0 and hide a diverging run).
 *
 * Vectorization: both sides of every `?:` are computed unconditionally, and setup.py compiles
 * with -fno-trapping-math (we never enable floating-point traps), which lets the compiler turn
 * the selects into blends.  Without it GCC keeps these loops scalar.  Results, NaN and inf
 * included, are the same either way.
 *
 * Wider vectors without -march: the two batch kernels are compiled three times (GCC
 * target_clones: x86-64 baseline SSE2, x86-64-v3 = AVX2+FMA, x86-64-v4 = AVX-512) and the
 * dynamic loader picks the best one for the running CPU once (an ifunc), so a portable wheel
 * runs tanh/sigmoid 2.5-3.5x faster on AVX2/AVX-512 machines (bench/RESULTS.md).  The
 * microarchitecture levels are matched by CPU features; "arch=haswell" would match only that
 * CPU model.  The v3/v4 variants contract a*b + c into fused multiply-adds, so their results
 * can differ from the baseline's in the last bit (as BLAS kernels do between machines).
 * Off where ifuncs are not available, under sanitizers, and when the build already targets
 * AVX2 (FASTNN_NATIVE=1).
 */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) \
    && defined(__linux__) && !defined(__AVX2__) && !defined(__SANITIZE_ADDRESS__)
#define FNN_CLONES static __attribute__((unused,                                            \
                       target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define FNN_CLONES static inline
#endif
#define FNN_DEFINE_KERNELS(T, P)                                                              \
                                                                                              \
static inline T P##sigmoid(T z)                                                               \
{                                                                                             \
    /* e = exp(-|z|) is in (0, 1]: no overflow; sigma(z) = 1/(1+e) or e/(1+e) */              \
    T e;                                                                                      \
    P##expm1_neg(z < 0 ? z : -z, &e);                                                         \
    T s = (T)1 / ((T)1 + e);                                                                  \
    return z < 0 ? e * s : s;                                                                 \
}                                                                                             \
                                                                                              \
static inline T P##tanh(T z)                                                                  \
{                                                                                             \
    /* tanh|z| = -expm1(-2|z|) / (2 + expm1(-2|z|)): no cancellation near 0, no overflow */   \
    T e, m = P##expm1_neg(z < 0 ? 2 * z : -2 * z, &e);                                        \
    T t = -m / ((T)2 + m);                                                                    \
    return z < 0 ? -t : t;                                                                    \
}                                                                                             \
                                                                                              \
FNN_CLONES int P##bias_act(T *restrict Z, const T *restrict b, ptrdiff_t rows,                 \
                              ptrdiff_t cols, int act, T alpha)                               \
{                                                                                             \
    ptrdiff_t i, j;                                                                           \
    switch (act) {                                                                            \
    case FNN_IDENTITY:                                                                        \
        for (i = 0; i < rows; i++) {                                                          \
            T *restrict z = Z + i * cols;                                                     \
            for (j = 0; j < cols; j++) z[j] += b[j];                                          \
        }                                                                                     \
        return FNN_OK;                                                                        \
    case FNN_SIGMOID:                                                                         \
        for (i = 0; i < rows; i++) {                                                          \
            T *restrict z = Z + i * cols;                                                     \
            for (j = 0; j < cols; j++) z[j] = P##sigmoid(z[j] + b[j]);                        \
        }                                                                                     \
        return FNN_OK;                                                                        \
    case FNN_TANH:                                                                            \
        for (i = 0; i < rows; i++) {                                                          \
            T *restrict z = Z + i * cols;                                                     \
            for (j = 0; j < cols; j++) z[j] = P##tanh(z[j] + b[j]);                           \
        }                                                                                     \
        return FNN_OK;                                                                        \
    case FNN_RELU:                                                                            \
        for (i = 0; i < rows; i++) {                                                          \
            T *restrict z = Z + i * cols;                                                     \
            for (j = 0; j < cols; j++) {                                                      \
                T v = z[j] + b[j];                                                            \
                z[j] = v < 0 ? (T)0 : v;                                                      \
            }                                                                                 \
        }                                                                                     \
        return FNN_OK;                                                                        \
    case FNN_LEAKY_RELU:                                                                      \
        for (i = 0; i < rows; i++) {                                                          \
            T *restrict z = Z + i * cols;                                                     \
            for (j = 0; j < cols; j++) {                                                      \
                T v = z[j] + b[j];                                                            \
                z[j] = v < 0 ? alpha * v : v;                                                 \
            }                                                                                 \
        }                                                                                     \
        return FNN_OK;                                                                        \
    }                                                                                         \
    return FNN_EBADACT;                                                                       \
}                                                                                             \
                                                                                              \
FNN_CLONES int P##act_backward(const T *dA, const T *restrict A, T *D,                         \
                                  T *restrict db, ptrdiff_t rows, ptrdiff_t cols,             \
                                  int act, T alpha)                                           \
{                                                                                             \
    ptrdiff_t i, j;                                                                           \
    if (act < 0 || act >= FNN_N_ACTIVATIONS) return FNN_EBADACT;                              \
    for (j = 0; j < cols; j++) db[j] = 0;                                                     \
    for (i = 0; i < rows; i++) {                                                              \
        const T *da = dA + i * cols, *restrict a = A + i * cols;                              \
        T *d = D + i * cols;                                                                  \
        switch (act) {                                                                        \
        case FNN_IDENTITY:                                                                    \
            for (j = 0; j < cols; j++) { T g = da[j]; d[j] = g; db[j] += g; }                 \
            break;                                                                            \
        case FNN_SIGMOID:                                                                     \
            for (j = 0; j < cols; j++) {                                                      \
                T g = da[j] * (a[j] * ((T)1 - a[j])); d[j] = g; db[j] += g;                   \
            }                                                                                 \
            break;                                                                            \
        case FNN_TANH:                                                                        \
            for (j = 0; j < cols; j++) {                                                      \
                T g = da[j] * ((T)1 - a[j] * a[j]); d[j] = g; db[j] += g;                     \
            }                                                                                 \
            break;                                                                            \
        case FNN_RELU:                                                                        \
            for (j = 0; j < cols; j++) {                                                      \
                T g = da[j]; g = a[j] > 0 ? g : (T)0; d[j] = g; db[j] += g;                          \
            }                                                                                 \
            break;                                                                            \
        case FNN_LEAKY_RELU:                                                                  \
            for (j = 0; j < cols; j++) {                                                      \
                T g = da[j], h = alpha * g; g = a[j] > 0 ? g : h; d[j] = g; db[j] += g;                 \
            }                                                                                 \
            break;                                                                            \
        }                                                                                     \
    }                                                                                         \
    return FNN_OK;                                                                            \
}

FNN_DEFINE_KERNELS(float, fnn_s_)
FNN_DEFINE_KERNELS(double, fnn_d_)

#undef FNN_DEFINE_KERNELS

#endif /* FASTNN_KERNELS_H */
