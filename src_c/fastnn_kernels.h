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

/* The scalar helpers must be inlined into the batch loops for those to vectorize.  In a large
 * translation unit (a Cython module) GCC's unit-growth limits otherwise leave some of them as
 * calls, and a loop with a call stays scalar: measured 10-13x slower GELU/SiLU backward and
 * 6x slower ELU forward passes before this attribute. */
#if defined(__GNUC__)
#define FNN_INLINE static inline __attribute__((always_inline))
#else
#define FNN_INLINE static inline
#endif

/* Activation codes, shared with fastnn/_kernels.pxd and fastnn/layers.py (ACTIVATIONS). */
enum {
    FNN_IDENTITY = 0,
    FNN_SIGMOID = 1,
    FNN_TANH = 2,
    FNN_RELU = 3,
    FNN_LEAKY_RELU = 4,
    FNN_ELU = 5,
    FNN_SELU = 6,
    FNN_GELU = 7,
    FNN_GELU_TANH = 8,
    FNN_SILU = 9,
    FNN_SOFTPLUS = 10,
    FNN_N_ACTIVATIONS = 11
};

/*
 * What the backward pass reads.  Most derivatives are functions of the OUTPUT a = act(z):
 *   sigmoid a(1-a), tanh 1-a^2, relu/leaky [a > 0], elu a + alpha (a <= 0),
 *   selu a + lambda alpha (a <= 0), softplus 1 - exp(-a) = sigmoid(z).
 * GELU, its tanh form and SiLU are not invertible (their minimum is attained twice), so their
 * derivative needs the pre-activation z.  For those layers the training forward pass KEEPS z
 * (fnn_*_bias_act_keep writes z and a in one pass) and act_backward reads z.  The alternatives
 * cost more: recomputing z = x W + b in the backward pass is a second forward GEMM (as long as
 * the forward pass itself), and keeping only z would mean re-evaluating the activation for the
 * next layer's weight gradient (one more erfc/exp per unit).  Keeping z costs one extra store
 * per unit in the forward pass and rows * cols values of workspace: not measurable against
 * the in-place pass on workload A's layers (bench/RESULTS.md section 8, "dense_forward gelu
 * (keeps Z)" vs "... in place (predict)": 0.93-1.07 and 0.87-1.09 of the GEMM).
 */
FNN_INLINE int fnn_act_keeps_preactivation(int act)
{
    return act == FNN_GELU || act == FNN_GELU_TANH || act == FNN_SILU;
}

/* Status codes returned by the C helpers; the Cython wrappers turn them into exceptions. */
enum {
    FNN_OK = 0,
    FNN_EBADACT = -1,   /* unknown activation code */
};

/* ---- 2^n for an integer-valued n, from the bits of a double/float (no int<->float casts) -- */

FNN_INLINE double fnn_d_pow2i(double n)
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

FNN_INLINE float fnn_s_pow2i(float n)
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
FNN_INLINE double fnn_d_expm1_neg(double x, double *exp_out)
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

/* The float reduction x = n ln2 + r, |r| <= ln2/2, and expm1(r) to r^7/7!: returns
 * expm1(r), n in *n_out.  Shared by fnn_s_expm1_neg and fnn_s_tanh_clamped. */
#define FNN_S_ROUND_MAGIC 12582912.0f                  /* 1.5 * 2^23 */
FNN_INLINE float fnn_s_expm1_reduced(float x, float *n_out)
{
    const float log2e = 1.44269504f;
    const float ln2_hi = 0.693359375f;
    const float ln2_lo = -2.12194440e-4f;
    float n = (x * log2e + FNN_S_ROUND_MAGIC) - FNN_S_ROUND_MAGIC;
    float r = (x - n * ln2_hi) - n * ln2_lo;
    float q = 1.0f / 5040.0f;
    q = q * r + 1.0f / 720.0f;
    q = q * r + 1.0f / 120.0f;
    q = q * r + 1.0f / 24.0f;
    q = q * r + 1.0f / 6.0f;
    q = q * r + 0.5f;
    *n_out = n;
    return q * r * r + r;
}

FNN_INLINE float fnn_s_expm1_neg(float x, float *exp_out)
{
    const float round_magic = FNN_S_ROUND_MAGIC;
    float n, q;
    x = x < -104.0f ? -104.0f : x;
    q = fnn_s_expm1_reduced(x, &n);
    float n1 = (n * 0.5f + round_magic) - round_magic;
    float s1 = fnn_s_pow2i(n1), s2 = fnn_s_pow2i(n - n1);
    *exp_out = (q * s1 + s1) * s2;
    return (q * s1 + (s1 - 1.0f / s2)) * s2;
}

/* tanh for float: the general form of FNN_DEFINE_KERNELS's P##tanh (below), specialized.
 *   tanh|z| = -m / (2 + m),  m = expm1(-2|z|),  expm1(x) = 2^n expm1(r) + (2^n - 1)
 * with |z| clamped at 9.1 first (tanh(9.1) = 1 - 2.5e-8 rounds to 1, as does every larger |z|),
 * so n >= -26 and 2^n is a normal float: one power of two instead of the two factors (and the
 * division by one of them) that fnn_s_expm1_neg needs for arguments down to -104.  25 instead
 * of 33 operations and one division instead of two: 1.25x the throughput on AVX2 (a 1,000-row
 * prediction of 8-64-64-1 spends half its time in tanh).  The bits are those of the general
 * form for every nonzero z: its two factors only scaled the same roundings by an exact power of
 * two.  Accuracy, measured against double libm tanh over every positive float, with and
 * without FMA contraction: 2.498 ulp at most, documented as FNN_S_TANH_MAX_ULP = 2.5 (which
 * tests/test_activations.py asserts on a dense grid); tanh(+-inf) and tanh(+-x) for x > 9.1 are +-1 exactly; NaN
 * stays NaN; the sign of zero is kept (copysign).  Training and prediction both call it
 * (P##act, FNN_TANH). */
#define FNN_S_TANH_MAX_ULP 2.5
FNN_INLINE float fnn_s_tanh_clamped(float z)
{
    float a = fabsf(z), n;
    float x = a > 9.1f ? -18.2f : -2.0f * a;           /* (a NaN stays in x) */
    float q = fnn_s_expm1_reduced(x, &n);
    float s = fnn_s_pow2i(n);
    float m = q * s + (s - 1.0f);
    return copysignf(fabsf(-m / (2.0f + m)), z);
}

/*
 * FNN_DEFINE_KERNELS(T, P) defines, for element type T and prefix P:
 *   P##sigmoid(z), P##tanh(z)           scalar, overflow-free for any z
 *   P##softplus(z), P##ndtr(z, &gauss), P##act(z, code, alpha), P##dact(k, code, alpha)
 *                                       scalar, overflow-free for any z
 *   P##bias_act(Z, b, rows, cols, act, alpha)
 *       Z[i, j] <- act(Z[i, j] + b[j]) in place: the one pass after the forward GEMM.
 *   P##bias_act_keep(Z, b, A, rows, cols, act, alpha)   (GELU, GELU-tanh, SiLU only)
 *       Z[i, j] <- Z[i, j] + b[j] and A[i, j] <- act(Z[i, j]), in one pass.
 *   P##act_backward(dA, K, D, db, rows, cols, act, alpha)
 *       D[i, j] <- dA[i, j] * act'(K[i, j]) and db[j] <- sum_i D[i, j], in one pass.
 *       K is what the forward pass kept (fnn_act_keeps_preactivation): the output A
 *       (docs/theory.md, section 2) or the pre-activation Z.  D may alias dA.
 *   P##act_backward_ld(dA, K, D, db, rows, cols, ld, act, alpha)
 *       The same over a column block: row i of dA, K and D starts at i * ld (ld >= cols),
 *       so that threads can take disjoint column blocks, each summing db in row order.
 * All return FNN_OK or FNN_EBADACT.
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
#define FNN_HAVE_CLONES 1
#else
#define FNN_CLONES static inline
#endif
/* The SELU constants of Klambauer et al., "Self-Normalizing Neural Networks" (NeurIPS 2017),
 * eq. 14: the fixed point (mean 0, variance 1) of the activations' moments. */
#define FNN_SELU_SCALE 1.0507009873554804934193349852946
#define FNN_SELU_ALPHA 1.6732632423543772848170429916717
#define FNN_SELU_SCALE_ALPHA (FNN_SELU_SCALE * FNN_SELU_ALPHA)

/* One case of the batch kernels.  The code is a constant inside each case, so P##act/P##dact
 * reduce to the one activation's straight-line code and the inner loop vectorizes. */
#define FNN_FWD_CASE(T, P, CODE)                                                              \
    case CODE:                                                                                \
        for (i = 0; i < rows; i++) {                                                          \
            T *restrict z = Z + i * cols;                                                     \
            for (j = 0; j < cols; j++) z[j] = P##act(z[j] + b[j], CODE, alpha);               \
        }                                                                                     \
        return FNN_OK;
#define FNN_KEEP_CASE(T, P, CODE)                                                             \
    case CODE:                                                                                \
        for (i = 0; i < rows; i++) {                                                          \
            T *restrict z = Z + i * cols, *restrict a = A + i * cols;                         \
            for (j = 0; j < cols; j++) {                                                      \
                T v = z[j] + b[j]; z[j] = v; a[j] = P##act(v, CODE, alpha);                   \
            }                                                                                 \
        }                                                                                     \
        return FNN_OK;
#define FNN_BWD_CASE(T, P, CODE)                                                              \
        case CODE:                                                                            \
            for (j = 0; j < cols; j++) {                                                      \
                T g = da[j] * P##dact(k[j], CODE, alpha); d[j] = g; db[j] += g;               \
            }                                                                                 \
            break;

#define FNN_DEFINE_KERNELS(T, P)                                                              \
                                                                                              \
FNN_INLINE T P##sigmoid(T z)                                                               \
{                                                                                             \
    /* e = exp(-|z|) is in (0, 1]: no overflow; sigma(z) = 1/(1+e) or e/(1+e) */              \
    T e;                                                                                      \
    P##expm1_neg(z < 0 ? z : -z, &e);                                                         \
    T s = (T)1 / ((T)1 + e);                                                                  \
    return z < 0 ? e * s : s;                                                                 \
}                                                                                             \
                                                                                              \
FNN_INLINE T P##tanh(T z)                                                                  \
{                                                                                             \
    if (sizeof(T) == sizeof(float)) return (T) fnn_s_tanh_clamped((float) z);                 \
    /* tanh|z| = -expm1(-2|z|) / (2 + expm1(-2|z|)): no cancellation near 0, no overflow */   \
    T e, m = P##expm1_neg(z < 0 ? 2 * z : -2 * z, &e);                                        \
    T t = -m / ((T)2 + m);                                                                    \
    return z < 0 ? -t : t;                                                                    \
}                                                                                             \
                                                                                              \
/* log(1 + x) for 0 <= x <= 1 (and NaN): 2 atanh(s), s = u / (2 + u), after reducing x > sqrt2-1 \
 * by log(1+x) = ln2 + log1p((x - 1) / 2), so |s| <= 0.172 and the odd series in s, to s^21,   \
 * is below half an ulp of double.  Branch-free, so it vectorizes (libm's log1p does not). */   \
FNN_INLINE T P##log1p_unit(T x)                                                            \
{                                                                                             \
    int big = x > (T)0.41421356237309503;                                                     \
    T u = big ? (x - (T)1) * (T)0.5 : x;                                                      \
    T s = u / ((T)2 + u), s2 = s * s;                                                         \
    T q = (T)(1.0 / 21);                                                                      \
    q = q * s2 + (T)(1.0 / 19);                                                               \
    q = q * s2 + (T)(1.0 / 17);                                                               \
    q = q * s2 + (T)(1.0 / 15);                                                               \
    q = q * s2 + (T)(1.0 / 13);                                                               \
    q = q * s2 + (T)(1.0 / 11);                                                               \
    q = q * s2 + (T)(1.0 / 9);                                                                \
    q = q * s2 + (T)(1.0 / 7);                                                                \
    q = q * s2 + (T)(1.0 / 5);                                                                \
    q = q * s2 + (T)(1.0 / 3);                                                                \
    T r = (T)2 * s + (T)2 * s * s2 * q;                                                       \
    return big ? (T)6.93147180369123816490e-01 + ((T)1.90821492927058770002e-10 + r) : r;     \
}                                                                                             \
                                                                                              \
/* softplus(z) = log(1 + e^z) = max(z, 0) + log1p(exp(-|z|)): exp of a non-positive number    \
 * only, so no overflow; the limits 0 (z -> -inf) and z (z -> +inf) are reached exactly. */   \
FNN_INLINE T P##softplus(T z)                                                              \
{                                                                                             \
    T e;                                                                                      \
    P##expm1_neg(z < 0 ? z : -z, &e);                                                         \
    return (z > 0 ? z : (T)0) + P##log1p_unit(e);                                             \
}                                                                                             \
                                                                                              \
/* Phi(z) = P(N(0,1) <= z) = erfc(-z / sqrt2) / 2, and exp(-z^2 / 2) in *gauss.               \
 * erfc by W. J. Cody's rational Chebyshev approximations (Math. Comp. 23, 1969, 631-637;       \
 * the coefficients of CALERF in netlib specfun), relative error below 1e-16 in each of the   \
 * three intervals a <= 0.46875, <= 4, > 4 of a = |z| / sqrt2.  All three are evaluated and    \
 * one is selected (branch-free: vectorizes).  erfc(a) is formed for a >= 0 only, and        \
 * Phi(z) = 1 - erfc(a)/2 for z > 0, so the tail z << 0 keeps its relative accuracy (the form \
 * (1 + erf(z/sqrt2))/2 cancels to 0 there).  Rounding z/sqrt2 and a^2 costs a relative error \
 * of about 3 a^2 ulp in the far tail, as in every erfc-based Phi. */                          \
FNN_INLINE T P##ndtr(T z, T *gauss)                                                        \
{                                                                                             \
    T a = (z < 0 ? -z : z) * (T)0.70710678118654752440;                                       \
    T a2 = a * a, e;                                                                          \
    P##expm1_neg(-a2, &e);                                                                    \
    *gauss = e;                                                                               \
    /* a <= 0.46875: erf(a) = a P(a^2) / Q(a^2) */                                            \
    T num = (T)1.85777706184603153e-1 * a2, den = a2;                                         \
    num = (num + (T)3.16112374387056560e00) * a2;  den = (den + (T)2.36012909523441209e01) * a2; \
    num = (num + (T)1.13864154151050156e02) * a2;  den = (den + (T)2.44024637934444173e02) * a2; \
    num = (num + (T)3.77485237685302021e02) * a2;  den = (den + (T)1.28261652607737228e03) * a2; \
    T c1 = (T)1 - a * (num + (T)3.20937758913846947e03) / (den + (T)2.84423683343917062e03); \
    /* 0.46875 < a <= 4: erfc(a) = exp(-a^2) P(a) / Q(a) */                                   \
    num = (T)2.15311535474403846e-8 * a;  den = a;                                            \
    num = (num + (T)5.64188496988670089e-1) * a;  den = (den + (T)1.57449261107098347e01) * a; \
    num = (num + (T)8.88314979438837594e00) * a;  den = (den + (T)1.17693950891312499e02) * a; \
    num = (num + (T)6.61191906371416295e01) * a;  den = (den + (T)5.37181101862009858e02) * a; \
    num = (num + (T)2.98635138197400131e02) * a;  den = (den + (T)1.62138957456669019e03) * a; \
    num = (num + (T)8.81952221241769090e02) * a;  den = (den + (T)3.29079923573345963e03) * a; \
    num = (num + (T)1.71204761263407058e03) * a;  den = (den + (T)4.36261909014324716e03) * a; \
    num = (num + (T)2.05107837782607147e03) * a;  den = (den + (T)3.43936767414372164e03) * a; \
    T c2 = e * ((num + (T)1.23033935479799725e03) / (den + (T)1.23033935480374942e03));      \
    /* a > 4: erfc(a) = exp(-a^2) / a (1/sqrt(pi) - y P(y) / Q(y)), y = 1 / a^2 */            \
    T a3 = a > (T)4 ? a : (T)4, y = (T)1 / (a3 * a3);                                         \
    num = (T)1.63153871373020978e-2 * y;  den = y;                                            \
    num = (num + (T)3.05326634961232344e-1) * y;  den = (den + (T)2.56852019228982242e00) * y; \
    num = (num + (T)3.60344899949804439e-1) * y;  den = (den + (T)1.87295284992346047e00) * y; \
    num = (num + (T)1.25781726111229246e-1) * y;  den = (den + (T)5.27905102951428412e-1) * y; \
    num = (num + (T)1.60837851487422766e-2) * y;  den = (den + (T)6.05183413124413191e-2) * y; \
    T c3 = y * (num + (T)6.58749161529837803e-4) / (den + (T)2.33520497626869185e-3);        \
    c3 = e * (((T)0.56418958354775628695 - c3) / a3);                                         \
    T c = a <= (T)0.46875 ? c1 : (a <= (T)4 ? c2 : c3);                                       \
    T h = (T)0.5 * c;                                                                         \
    return z > 0 ? (T)1 - h : h;                                                              \
}                                                                                             \
                                                                                              \
/* GELU tanh form: z (1 + tanh u) / 2 = z sigmoid(2u), u = sqrt(2/pi) (z + 0.044715 z^3): the  \
 * sigmoid form does not cancel for z << 0.  z is clamped to |z| <= 1e4 inside u only (where   \
 * sigmoid(2u) is 0 or 1 in any precision), so z^3 never overflows. */                        \
FNN_INLINE T P##gelu_tanh_s(T z, T *one_minus)                                             \
{                                                                                             \
    T zc = z < (T)-1e4 ? (T)-1e4 : (z > (T)1e4 ? (T)1e4 : z);                                 \
    T u2 = (T)1.5957691216057307117 * (zc + (T)0.044715 * zc * zc * zc);                      \
    T e;                                                                                      \
    P##expm1_neg(u2 < 0 ? u2 : -u2, &e);                                                      \
    T p = (T)1 / ((T)1 + e), q = e * p;                                                       \
    *one_minus = u2 < 0 ? p : q;                                                              \
    return u2 < 0 ? q : p;                                                                    \
}                                                                                             \
                                                                                              \
/* sigmoid(z) and 1 - sigmoid(z), both without cancellation */                                \
FNN_INLINE T P##sigmoid2(T z, T *one_minus)                                                \
{                                                                                             \
    T e;                                                                                      \
    P##expm1_neg(z < 0 ? z : -z, &e);                                                         \
    T p = (T)1 / ((T)1 + e), q = e * p;                                                       \
    *one_minus = z < 0 ? p : q;                                                               \
    return z < 0 ? q : p;                                                                     \
}                                                                                             \
                                                                                              \
/* act(z) for every code (alpha: leaky_relu slope, elu alpha); NaN propagates */              \
FNN_INLINE T P##act(T z, int act, T alpha)                                                 \
{                                                                                             \
    T e, m, c;                                                                                \
    switch (act) {                                                                            \
    case FNN_IDENTITY: return z;                                                              \
    case FNN_SIGMOID: return P##sigmoid(z);                                                   \
    case FNN_TANH: return P##tanh(z);                                                         \
    case FNN_RELU: return z < 0 ? (T)0 : z;                                                   \
    case FNN_LEAKY_RELU: return z < 0 ? alpha * z : z;                                        \
    case FNN_ELU:                                                                             \
        m = P##expm1_neg(z > 0 ? (T)0 : z, &e);                                               \
        return z > 0 ? z : alpha * m;                                                         \
    case FNN_SELU:                                                                            \
        m = P##expm1_neg(z > 0 ? (T)0 : z, &e);                                               \
        return z > 0 ? (T)FNN_SELU_SCALE * z : (T)FNN_SELU_SCALE_ALPHA * m;                   \
    case FNN_GELU: return z * P##ndtr(z, &e);                                                 \
    case FNN_GELU_TANH: return z * P##gelu_tanh_s(z, &c);                                     \
    case FNN_SILU: return z * P##sigmoid2(z, &c);                                             \
    case FNN_SOFTPLUS: return P##softplus(z);                                                 \
    }                                                                                         \
    return z;                                                                                 \
}                                                                                             \
                                                                                              \
/* act'(k) from what the forward pass kept: k = a for most, k = z for GELU/SiLU (see above) */ \
FNN_INLINE T P##dact(T k, int act, T alpha)                                                \
{                                                                                             \
    T e, m, c, s, g;                                                                          \
    switch (act) {                                                                            \
    case FNN_IDENTITY: return (T)1;                                                           \
    case FNN_SIGMOID: return k * ((T)1 - k);                                                  \
    case FNN_TANH: return (T)1 - k * k;                                                       \
    case FNN_RELU: return k > 0 ? (T)1 : (T)0;                                                \
    case FNN_LEAKY_RELU: return k > 0 ? (T)1 : alpha;                                         \
    case FNN_ELU: return k > 0 ? (T)1 : k + alpha;            /* alpha e^z = a + alpha */     \
    case FNN_SELU: return k > 0 ? (T)FNN_SELU_SCALE : k + (T)FNN_SELU_SCALE_ALPHA;            \
    case FNN_GELU:                                            /* Phi(z) + z phi(z) */         \
        s = P##ndtr(k, &g);                                                                   \
        return s + k * ((T)0.39894228040143267794 * g);                                       \
    case FNN_GELU_TANH: {                                     /* s + z 2 s (1-s) u' */        \
        T zc = k < (T)-1e4 ? (T)-1e4 : (k > (T)1e4 ? (T)1e4 : k);                             \
        s = P##gelu_tanh_s(k, &c);                                                            \
        T du2 = (T)1.5957691216057307117 * ((T)1 + (T)0.134145 * zc * zc);                    \
        return s + (zc * du2) * (s * c);                                                      \
    }                                                                                         \
    case FNN_SILU:                                            /* s (1 + z (1 - s)) */         \
        s = P##sigmoid2(k, &c);                                                               \
        return s * ((T)1 + k * c);                                                            \
    case FNN_SOFTPLUS:                                        /* sigmoid(z) = -expm1(-a) */   \
        m = P##expm1_neg(-k, &e);                                                             \
        return -m;                                                                            \
    }                                                                                         \
    (void)m; (void)e;                                                                         \
    return (T)1;                                                                              \
}                                                                                             \
FNN_CLONES int P##bias_act(T *restrict Z, const T *restrict b, ptrdiff_t rows,                 \
                              ptrdiff_t cols, int act, T alpha)                               \
{                                                                                             \
    ptrdiff_t i, j;                                                                           \
    switch (act) {                                                                            \
    FNN_FWD_CASE(T, P, FNN_IDENTITY)                                                          \
    FNN_FWD_CASE(T, P, FNN_SIGMOID)                                                           \
    FNN_FWD_CASE(T, P, FNN_TANH)                                                              \
    FNN_FWD_CASE(T, P, FNN_RELU)                                                              \
    FNN_FWD_CASE(T, P, FNN_LEAKY_RELU)                                                        \
    FNN_FWD_CASE(T, P, FNN_ELU)                                                               \
    FNN_FWD_CASE(T, P, FNN_SELU)                                                              \
    FNN_FWD_CASE(T, P, FNN_GELU)                                                              \
    FNN_FWD_CASE(T, P, FNN_GELU_TANH)                                                         \
    FNN_FWD_CASE(T, P, FNN_SILU)                                                              \
    FNN_FWD_CASE(T, P, FNN_SOFTPLUS)                                                          \
    }                                                                                         \
    return FNN_EBADACT;                                                                       \
}                                                                                             \
                                                                                              \
FNN_CLONES int P##bias_act_keep(T *restrict Z, const T *restrict b, T *restrict A,             \
                                ptrdiff_t rows, ptrdiff_t cols, int act, T alpha)             \
{                                                                                             \
    ptrdiff_t i, j;                                                                           \
    switch (act) {                                                                            \
    FNN_KEEP_CASE(T, P, FNN_GELU)                                                             \
    FNN_KEEP_CASE(T, P, FNN_GELU_TANH)                                                        \
    FNN_KEEP_CASE(T, P, FNN_SILU)                                                             \
    }                                                                                         \
    return FNN_EBADACT;                                                                       \
}                                                                                             \
                                                                                              \
FNN_CLONES int P##act_backward_ld(const T *dA, const T *restrict K, T *D,                      \
                                     T *restrict db, ptrdiff_t rows, ptrdiff_t cols,          \
                                     ptrdiff_t ld, int act, T alpha)                          \
{                                                                                             \
    ptrdiff_t i, j;                                                                           \
    if (act < 0 || act >= FNN_N_ACTIVATIONS) return FNN_EBADACT;                              \
    for (j = 0; j < cols; j++) db[j] = 0;                                                     \
    for (i = 0; i < rows; i++) {                                                              \
        const T *da = dA + i * ld, *restrict k = K + i * ld;                                  \
        T *d = D + i * ld;                                                                    \
        switch (act) {                                                                        \
        case FNN_IDENTITY:                                                                    \
            for (j = 0; j < cols; j++) { T g = da[j]; d[j] = g; db[j] += g; }                 \
            break;                                                                            \
        case FNN_RELU:  /* a select, not a product: a zero derivative stops even a NaN */     \
            for (j = 0; j < cols; j++) {                                                      \
                T g = da[j]; g = k[j] > 0 ? g : (T)0; d[j] = g; db[j] += g;                   \
            }                                                                                 \
            break;                                                                            \
        case FNN_LEAKY_RELU:                                                                  \
            for (j = 0; j < cols; j++) {                                                      \
                T g = da[j], h = alpha * g; g = k[j] > 0 ? g : h; d[j] = g; db[j] += g;       \
            }                                                                                 \
            break;                                                                            \
        FNN_BWD_CASE(T, P, FNN_SIGMOID)                                                       \
        FNN_BWD_CASE(T, P, FNN_TANH)                                                          \
        FNN_BWD_CASE(T, P, FNN_ELU)                                                           \
        FNN_BWD_CASE(T, P, FNN_SELU)                                                          \
        FNN_BWD_CASE(T, P, FNN_GELU)                                                          \
        FNN_BWD_CASE(T, P, FNN_GELU_TANH)                                                     \
        FNN_BWD_CASE(T, P, FNN_SILU)                                                          \
        FNN_BWD_CASE(T, P, FNN_SOFTPLUS)                                                      \
        }                                                                                     \
    }                                                                                         \
    return FNN_OK;                                                                            \
}                                                                                             \
                                                                                              \
FNN_INLINE int P##act_backward(const T *dA, const T *K, T *D, T *db, ptrdiff_t rows,          \
                               ptrdiff_t cols, int act, T alpha)                              \
{                                                                                             \
    return P##act_backward_ld(dA, K, D, db, rows, cols, cols, act, alpha);                    \
}

FNN_DEFINE_KERNELS(float, fnn_s_)
FNN_DEFINE_KERNELS(double, fnn_d_)

/*
 * fnn_exps_neg(E, n): E[j] <- exp(E[j]) for j < n, arguments <= 0 (none overflows; below -746
 * the result is 0; NaN stays NaN), with fnn_d_expm1_neg: the one exp of the prediction softmax
 * (softmax_rows below) and of the training losses' (softmax_xent): both links share it.  One
 * branch-free loop, vectorized (the AVX2 + FMA variant: four per instruction) where a libm exp
 * per logit (~47 instructions, scalar) was a third of a 64-32-10 network's training step
 * (bench/RESULTS.md section 20).  An element's result does not depend on where in E it sits
 * (the vector body and the scalar remainder are compiled from the same expression, with the
 * same contractions), so a logit gets the same exp in any block.  Its own function, never
 * inlined (also where FNN_CLONES is plain `static inline`, as with FASTNN_NATIVE=1), so that
 * it keeps its contractions while P##softmax_xent's arithmetic below is compiled without.
 */
#if defined(FNN_HAVE_CLONES)
#define FNN_EXPS_FN FNN_CLONES __attribute__((noinline))
#elif defined(__GNUC__)
#define FNN_EXPS_FN static __attribute__((unused, noinline))
#else
#define FNN_EXPS_FN static
#endif
FNN_EXPS_FN void fnn_exps_neg(double *restrict E, ptrdiff_t n)
{
    ptrdiff_t j;
    for (j = 0; j < n; j++)
        fnn_d_expm1_neg(E[j], &E[j]);
}

/*
 * P##softmax_rows(Z, rows, cols): each row of Z (rows x cols, contiguous) <- its softmax, in
 * place: the prediction link of the cross-entropy and KL losses.  Stable (the row maximum m is
 * subtracted first, so every exponential is of an argument <= 0 and none overflows) and
 * evaluated in double for both element types, each probability rounded once to T:
 *     e_j = exp(z_j - m),  s = sum_j e_j (in the order j = 0 .. cols-1),  p_j = e_j * (1 / s).
 * One exponential per element: rows up to FNN_SOFTMAX_KEPT wide keep e on the stack between
 * the sum and the scaling (wider rows evaluate it twice, in pieces: the same values each
 * time).  The exponentials are fnn_exps_neg's at every width (a few ulp of double, below
 * float's rounding; the training losses' softmax_xent below calls the same function),
 * branch-free and vectorized: compiled as the batch kernels are (FNN_CLONES),
 * the AVX2 + FMA variant evaluates four of them per instruction where the baseline's scalar
 * SSE2 code took 40% of a 1,000-row prediction of a 64-32-10 network (bench/RESULTS.md).  The
 * sum is not reassociated (no -ffast-math), so it is the same sum in every variant; the
 * exponentials of the variants can differ in the last bit of double (fused multiply-adds).
 * A NaN in a row makes the row NaN (through m or the sum); +inf gives NaN as inf - inf.
 */
#define FNN_SOFTMAX_KEPT 256
#define FNN_DEFINE_SOFTMAX(T, P)                                                              \
FNN_CLONES void P##softmax_rows(T *restrict Z, ptrdiff_t rows, ptrdiff_t cols)               \
{                                                                                             \
    double e[FNN_SOFTMAX_KEPT];                                                               \
    ptrdiff_t i, j, r, block = cols <= FNN_SOFTMAX_KEPT ? FNN_SOFTMAX_KEPT / cols : 1, nb;    \
    for (i = 0; i < rows; i += block) {                                                       \
        T *restrict zb = Z + i * cols;                                                        \
        nb = rows - i < block ? rows - i : block;                                             \
        if (cols > FNN_SOFTMAX_KEPT) {                                                        \
            /* pieces of FNN_SOFTMAX_KEPT, each exponential evaluated twice (same values) */  \
            double m = (double) zb[0], s = 0.0;                                               \
            ptrdiff_t c0, w;                                                                  \
            for (j = 1; j < cols; j++)                                                        \
                if (zb[j] > m) m = (double) zb[j];                                            \
            for (c0 = 0; c0 < cols; c0 += FNN_SOFTMAX_KEPT) {                                 \
                w = cols - c0 < FNN_SOFTMAX_KEPT ? cols - c0 : FNN_SOFTMAX_KEPT;              \
                for (j = 0; j < w; j++)                                                       \
                    e[j] = (double) zb[c0 + j] - m;                                           \
                fnn_exps_neg(e, w);                                                           \
                for (j = 0; j < w; j++)                                                       \
                    s += e[j];                                                                \
            }                                                                                 \
            s = 1.0 / s;                                                                      \
            for (c0 = 0; c0 < cols; c0 += FNN_SOFTMAX_KEPT) {                                 \
                w = cols - c0 < FNN_SOFTMAX_KEPT ? cols - c0 : FNN_SOFTMAX_KEPT;              \
                for (j = 0; j < w; j++)                                                       \
                    e[j] = (double) zb[c0 + j] - m;                                           \
                fnn_exps_neg(e, w);                                                           \
                for (j = 0; j < w; j++)                                                       \
                    zb[c0 + j] = (T) (e[j] * s);                                              \
            }                                                                                 \
            continue;                                                                         \
        }                                                                                     \
        /* nb rows at once: e := z - (the row's max), then exp over all nb * cols at once;    \
         * the rows' maxima and sums are chains in j, two rows' side by side (twice the       \
         * independent work in flight; each row's operations and order as alone) */           \
        for (r = 0; r < nb; r += 2) {                                                         \
            const T *restrict z = zb + r * cols;                                              \
            const T *restrict z2 = r + 1 < nb ? z + cols : z;   /* (odd nb: z twice) */       \
            double m = (double) z[0], m2 = (double) z2[0];                                    \
            for (j = 1; j < cols; j++) {                                                      \
                if (z[j] > m) m = (double) z[j];                                              \
                if (z2[j] > m2) m2 = (double) z2[j];                                          \
            }                                                                                 \
            for (j = 0; j < cols; j++)                                                        \
                e[r * cols + j] = (double) z[j] - m;                                          \
            if (r + 1 < nb)                                                                   \
                for (j = 0; j < cols; j++)                                                    \
                    e[(r + 1) * cols + j] = (double) z2[j] - m2;                              \
        }                                                                                     \
        fnn_exps_neg(e, nb * cols);                                                           \
        for (r = 0; r < nb; r += 2) {                                                         \
            T *restrict z = zb + r * cols;                                                    \
            const double *er = e + r * cols;                                                  \
            const double *er2 = r + 1 < nb ? er + cols : er;                                  \
            double s = 0.0, s2 = 0.0;                                                         \
            for (j = 0; j < cols; j++) {                                                      \
                s += er[j];                                                                   \
                s2 += er2[j];                                                                 \
            }                                                                                 \
            s = 1.0 / s;                                                                      \
            s2 = 1.0 / s2;                                                                    \
            for (j = 0; j < cols; j++)                                                        \
                z[j] = (T) (er[j] * s);                                                       \
            if (r + 1 < nb)                                                                   \
                for (j = 0; j < cols; j++)                                                    \
                    z[cols + j] = (T) (er2[j] * s2);                                          \
        }                                                                                     \
    }                                                                                         \
}

/* Arithmetic that must give the same bits in every clone: a*b + c is not fused into a
 * multiply-add (the AVX2 and AVX-512 clones would otherwise fuse it; the baseline cannot). */
#if defined(__GNUC__) && !defined(__clang__)
#define FNN_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define FNN_NO_CONTRACT
#endif

/*
 * P##softmax_xent(Z, rows, k, labels, Y, W, kl, grad_scale, G): the softmax cross-entropy
 * (kl = 0) or KL(y || softmax(z)) (kl != 0) of a batch of logits Z (rows x k, contiguous) and
 * its gradient: returns sum_i w_i l_i and, when G != NULL, writes
 * G[i, :] = grad_scale * w_i * dl_i/dz_i.  Targets: integer labels (labels != NULL: the
 * one-hot row e_label) or probability rows Y (rows x k).  W: sample weights, or NULL for 1.
 * The whole loss of fastnn/_core/_losses.pyx's cross-entropy and KL (its design block has the
 * why).  With m = z_a the first largest logit, t = sum_{j != a} exp(z_j - m), s = 1 + t:
 *     CE = sum_j y_j (m - z_j) + (sum_j y_j) log1p(t)      (>= 0 term by term)
 *     KL = CE + sum_j y_j log y_j                           (0 log 0 = 0; with labels 0)
 *     dl/dz_j = (sum_i y_i) exp(z_j - m) / s - y_j;  at a: (sum_{j != a} y_j - y_a t) / s
 * (the component at the largest logit is not a difference of two numbers close to 1).
 * In double for both element types; each gradient component is rounded once to T.
 * Layout: rows up to FNN_XENT_CACHE logits wide go in blocks of
 * min(FNN_XENT_CACHE / k, FNN_XENT_ROWS) rows whose logits are first copied, in double and
 * transposed, to the stack (the row maxima taken on the way), so that every loop runs with
 * one row per vector lane (each lane sums its own row in the order j = 0 .. k-1, and
 * writes its own gradient row) and the exps of the whole block are one call of
 * fnn_exps_neg.  Lanes across rows rather than across a row's logits: a row's sums have a
 * fixed order (the bits), and 10 logits fill few lanes.  A wider row goes alone, in pieces
 * of FNN_XENT_CACHE logits, its exps evaluated twice (once for t, once for the gradient: the
 * same kernel, the same values).
 * Bits: every quantity is the same sequence of roundings whatever the block, the piece, the
 * thread count or the clone (no reassociation, no contraction: FNN_NO_CONTRACT), so a row
 * gives the same loss and gradient alone or anywhere in a batch.
 * Guarantees: a row of weight 0 gets an exact zero gradient and adds nothing to the sum (not
 * even a NaN); a label outside [0, k) gives a NaN loss and a NaN gradient row (never a read
 * out of bounds); NaN logits give NaN (a row whose z_0 is NaN takes a = 0); G may alias Z
 * (every logit of a block is read before any of its gradient is written).  Stack:
 * 2 FNN_XENT_CACHE + 13 FNN_XENT_ROWS doubles (~15 KB).  log1p (once per row) and log (KL with Y, once per
 * positive target) are libm's.
 */
#define FNN_XENT_CACHE 512
#define FNN_XENT_ROWS 64
#define FNN_DEFINE_SOFTMAX_XENT(T, P)                                                         \
FNN_CLONES FNN_NO_CONTRACT double P##softmax_xent(const T *Z, ptrdiff_t rows, ptrdiff_t k,    \
                                                  const ptrdiff_t *restrict labels,           \
                                                  const T *restrict Y, const T *restrict W,   \
                                                  int kl, double grad_scale, T *G)            \
{                                                                                             \
    double zt[FNN_XENT_CACHE], e[FNN_XENT_CACHE];                                             \
    double m[FNN_XENT_ROWS], am[FNN_XENT_ROWS], t[FNN_XENT_ROWS], c[FNN_XENT_ROWS];           \
    double ys[FNN_XENT_ROWS], yr[FNN_XENT_ROWS], ya[FNN_XENT_ROWS], cross[FNN_XENT_ROWS];     \
    double ent[FNN_XENT_ROWS], inv[FNN_XENT_ROWS];                                            \
    double lb[FNN_XENT_ROWS], ga[FNN_XENT_ROWS], lg[FNN_XENT_ROWS];                           \
    int bad[FNN_XENT_ROWS];                                                                   \
    const int whole = k <= FNN_XENT_CACHE;                                                    \
    const ptrdiff_t piece = whole ? k : FNN_XENT_CACHE;                                       \
    const ptrdiff_t block = !whole ? 1 : FNN_XENT_CACHE / k < FNN_XENT_ROWS                   \
                                         ? FNN_XENT_CACHE / k : FNN_XENT_ROWS;                \
    ptrdiff_t i0, nb, r, j, jj, j0, j1;                                                       \
    double total = 0.0;                                                                       \
    for (i0 = 0; i0 < rows; i0 += nb) {                                                       \
        const T *zb = Z + i0 * k;                                                             \
        nb = rows - i0 < block ? rows - i0 : block;                                           \
        /* the first largest logit of each row (the first when tied; 0 when z_0 is NaN) */    \
        if (whole) {                                                                          \
            /* every logit of the block, read before any gradient is written (G may be Z),    \
             * in double and transposed: lane r of every loop below is row r */               \
            for (r = 0; r < nb; r++) {                                                        \
                m[r] = (double) zb[r * k];                                                    \
                am[r] = 0.0;                                                                  \
                zt[r] = m[r];                                                                 \
            }                                                                                 \
            for (j = 1; j < k; j++)                                                           \
                for (r = 0; r < nb; r++) {                                                    \
                    double v = (double) zb[r * k + j];                                        \
                    int gt = v > m[r];                                                        \
                    zt[j * nb + r] = v;                                                       \
                    m[r] = gt ? v : m[r];                                                     \
                    am[r] = gt ? (double) j : am[r];                                          \
                }                                                                             \
        } else {                                                                              \
            T mx = zb[0];                                                                     \
            ptrdiff_t a = 0;                                                                  \
            for (j = 1; j < k; j++)                                                           \
                if (zb[j] > mx) {                                                             \
                    mx = zb[j];                                                               \
                    a = j;                                                                    \
                }                                                                             \
            m[0] = (double) mx;                                                               \
            am[0] = (double) a;                                                               \
        }                                                                                     \
        for (r = 0; r < nb; r++) {                                                            \
            t[r] = 0.0;                                                                       \
            ent[r] = 0.0;                                                                     \
            bad[r] = 0;                                                                       \
            if (labels != NULL) {                                                             \
                ptrdiff_t label = labels[i0 + r];                                             \
                bad[r] = label < 0 || label >= k;  /* unchecked caller: no bad read */        \
                label = bad[r] ? 0 : label;                                                   \
                lb[r] = (double) label;                                                       \
                cross[r] = m[r] - (double) zb[r * k + label];                                 \
                ys[r] = 1.0;                                                                  \
                ya[r] = lb[r] == am[r] ? 1.0 : 0.0;                                           \
                yr[r] = 1.0 - ya[r];                                                          \
            } else {                                                                          \
                cross[r] = 0.0;                                                               \
                ys[r] = 0.0;                                                                  \
                yr[r] = 0.0;                                                                  \
            }                                                                                 \
        }                                                                                     \
        /* t = sum_{j != a} exp(z_j - m) and the target's sums, each in the order j < k */    \
        for (j0 = 0; j0 < k; j0 = j1) {                                                       \
            j1 = k - j0 < piece ? k : j0 + piece;                                             \
            if (!whole)                                                                       \
                for (j = j0; j < j1; j++)                                                     \
                    zt[j - j0] = (double) zb[j];                                              \
            for (jj = 0; jj < j1 - j0; jj++)                                                  \
                for (r = 0; r < nb; r++)                                                      \
                    e[jj * nb + r] = zt[jj * nb + r] - m[r];                                  \
            fnn_exps_neg(e, (j1 - j0) * nb);                                                  \
            for (jj = 0; jj < j1 - j0; jj++)                                                  \
                for (r = 0; r < nb; r++)                                                      \
                    t[r] += (double) (j0 + jj) != am[r] ? e[jj * nb + r] : 0.0;               \
            if (labels == NULL) {                                                             \
                for (jj = 0; jj < j1 - j0; jj++)                                              \
                    for (r = 0; r < nb; r++) {                                                \
                        double yj = (double) Y[(i0 + r) * k + j0 + jj];                       \
                        ys[r] += yj;                                                          \
                        cross[r] += yj * (m[r] - zt[jj * nb + r]);                            \
                        yr[r] += (double) (j0 + jj) != am[r] ? yj : 0.0;                      \
                    }                                                                         \
                if (kl)                                                                       \
                    for (r = 0; r < nb; r++)                                                  \
                        for (j = j0; j < j1; j++) {                                           \
                            double yj = (double) Y[(i0 + r) * k + j];                         \
                            if (yj > 0.0)                                                     \
                                ent[r] += yj * log(yj);                                       \
                        }                                                                     \
            }                                                                                 \
        }                                                                                     \
        for (r = 0; r < nb; r++) {                                                            \
            double w = W == NULL ? 1.0 : (double) W[i0 + r];                                 \
            if (labels == NULL)                                                               \
                ya[r] = (double) Y[(i0 + r) * k + (ptrdiff_t) am[r]];                         \
            inv[r] = 1.0 / (1.0 + t[r]);                                                      \
            c[r] = grad_scale * w;                                                            \
        }                                                                                     \
        /* the logs apart from the sum: independent calls the CPU overlaps (inside the sum's  \
         * loop they were a chain, a fifth of a 32 x 10 batch's time); log1p of t >= 0 or NaN \
         * is safe for every row, also those the sum leaves out */                            \
        for (r = 0; r < nb; r++)                                                              \
            lg[r] = log1p(t[r]);                                                              \
        /* the loss, row by row in order; rows of weight 0 take no part (no 0 * inf) */       \
        for (r = 0; r < nb; r++) {                                                            \
            double w = W == NULL ? 1.0 : (double) W[i0 + r], l;                               \
            if (w == 0.0)                                                                     \
                continue;                                                                     \
            l = bad[r] ? NAN : cross[r] + ys[r] * lg[r] + ent[r];                             \
            total += w * l;                                                                   \
        }                                                                                     \
        if (G == NULL)                                                                        \
            continue;                                                                         \
        /* softmax_j (sum y) - y_j, the label's component and a's chosen by selects (a's      \
         * last, so it wins when the label is a), one row per lane, stored straight into G */ \
        for (r = 0; r < nb; r++)    /* ysum / s - y_a = (yrest + y_a - y_a (1 + t)) / s */    \
            ga[r] = c[r] * ((yr[r] - ya[r] * t[r]) * inv[r]);                                 \
        for (j0 = 0; j0 < k; j0 = j1) {                                                       \
            j1 = k - j0 < piece ? k : j0 + piece;                                             \
            if (!whole) {   /* the piece's exps again: the same kernel, the same values */    \
                for (j = j0; j < j1; j++)                                                     \
                    e[j - j0] = (double) zb[j] - m[0];                                        \
                fnn_exps_neg(e, j1 - j0);                                                     \
            }                                                                                 \
            if (labels == NULL) {                                                             \
                for (j = j0; j < j1; j++)                                                     \
                    for (r = 0; r < nb; r++) {                                                \
                        double v = c[r] * (ys[r] * e[(j - j0) * nb + r] * inv[r]              \
                                           - (double) Y[(i0 + r) * k + j]);                   \
                        G[(i0 + r) * k + j] = (T) ((double) j == am[r] ? ga[r] : v);          \
                    }                                                                         \
            } else {                                                                          \
                for (j = j0; j < j1; j++)                                                     \
                    for (r = 0; r < nb; r++) {                                                \
                        double q = e[(j - j0) * nb + r] * inv[r];                             \
                        double v = c[r] * q, vl = c[r] * (q - 1.0);                           \
                        v = (double) j == lb[r] ? vl : v;                                     \
                        G[(i0 + r) * k + j] = (T) ((double) j == am[r] ? ga[r] : v);          \
                    }                                                                         \
            }                                                                                 \
        }                                                                                     \
        for (r = 0; r < nb; r++) {   /* weight 0: exact zeros (no NaN); a bad label: NaN */   \
            T *g = G + (i0 + r) * k;                                                          \
            if (W != NULL && (double) W[i0 + r] == 0.0)                                       \
                for (j = 0; j < k; j++)                                                       \
                    g[j] = (T) 0;                                                             \
            else if (bad[r])                                                                  \
                for (j = 0; j < k; j++)                                                       \
                    g[j] = (T) NAN;                                                           \
        }                                                                                     \
    }                                                                                         \
    return total;                                                                             \
}
FNN_DEFINE_SOFTMAX_XENT(float, fnn_s_)
FNN_DEFINE_SOFTMAX_XENT(double, fnn_d_)
#undef FNN_DEFINE_SOFTMAX_XENT

/* P##all_finite(X, n): 1 when X[0 : n] holds no NaN or infinity, else 0 (x - x is 0 for a
 * finite x and NaN otherwise; the comparisons are OR-ed, which vectorizes).  The check of every
 * input of a prediction: compiled as the batch kernels are, the AVX2 variant takes a third of
 * the baseline's time (measured 4 vs 12 us for 64,000 floats). */
#define FNN_DEFINE_ALL_FINITE(T, P)                                                           \
FNN_CLONES int P##all_finite(const T *restrict X, ptrdiff_t n)                                \
{                                                                                             \
    ptrdiff_t i;                                                                              \
    int bad = 0;                                                                              \
    for (i = 0; i < n; i++)                                                                   \
        bad |= (X[i] - X[i]) != 0;                                                            \
    return bad == 0;                                                                          \
}
FNN_DEFINE_ALL_FINITE(float, fnn_s_)
FNN_DEFINE_ALL_FINITE(double, fnn_d_)
#undef FNN_DEFINE_ALL_FINITE

FNN_DEFINE_SOFTMAX(float, fnn_s_)
FNN_DEFINE_SOFTMAX(double, fnn_d_)
#undef FNN_DEFINE_SOFTMAX

#undef FNN_DEFINE_KERNELS
#undef FNN_FWD_CASE
#undef FNN_KEEP_CASE
#undef FNN_BWD_CASE

#endif /* FASTNN_KERNELS_H */
