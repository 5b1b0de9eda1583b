/*
 * fastnn_gemm_impl.h -- the body of fastnn_gemm.h for one element type.  Included twice by
 * fastnn_gemm.h (float, then double) with FNN_T, FNN_P, FNN_DOUBLE and, on x86-64, the
 * AVX2 vector macros (fastnn_gemm_vec256.h) and FNN_MR (rows of the register tile) defined;
 * undefines them at the end.  The vector kernels themselves are in
 * fastnn_gemm_vec_impl.h, included here once for AVX2 and once, through fastnn_gemm_avx512.h,
 * for AVX-512; the public functions at the end choose the level (fnn_gemm_kernel).  Not meant
 * to be included on its own.
 */

/* The plain C kernel: for each row, the columns side by side (vectorizable), the products
 * added in the order k = 0 .. K-1 (see fastnn_gemm.h). */
static void FNN_P(gemm_plain)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              const FNN_T *restrict A, ptrdiff_t lda,
                              const FNN_T *restrict B, ptrdiff_t ldb,
                              FNN_T *restrict C, ptrdiff_t ldc)
{
    ptrdiff_t i, j, p;
    for (i = 0; i < m; i++) {
        const FNN_T *restrict a = A + i * lda;
        FNN_T *restrict c = C + i * ldc;
        for (j = 0; j < n; j++)
            c[j] = 0;
        for (p = 0; p < k; p++) {
            const FNN_T ap = a[p];
            const FNN_T *restrict b = B + p * ldb;
            for (j = 0; j < n; j++)
                c[j] = ap * b[j] + c[j];
        }
    }
}

#if defined(FNN_GEMM_X86)

/* The store of an accumulator v to C (masked: the first lanes of mk).  EPI 0: C := v;
 * EPI 1 (training's general form): C := alpha v + beta C, C not read when beta == 0 (it may
 * be uninitialized workspace, as with BLAS), one rounding for alpha v + (beta C);
 * EPI 2, 3, 4 (a forward layer): z := v + b (b the bias of these columns, at bias + col),
 * then C := z (identity), z < 0 ? 0 : z (ReLU) or z < 0 ? alpha z : z (leaky ReLU, slope
 * alpha): the operations of fastnn_kernels.h's bias_act on the same values, hence its bits
 * (a NaN stays NaN, -0 stays -0). */
#define FNN_EPI_BIAS 2
#define FNN_EPI_BIAS_RELU 3
#define FNN_EPI_BIAS_LEAKY 4
#define FNN_EPI_STORE(EPI, M, ptr, col, mk, v)                                                \
    do {                                                                                      \
        FNN_V out_ = (v);                                                                     \
        if (EPI >= FNN_EPI_BIAS) {                                                            \
            const FNN_V z_ = FNN_VADD(out_, (M) ? FNN_VMLOAD(bias + (col), (mk))              \
                                                : FNN_VLOAD(bias + (col)));                   \
            const FNN_VCMP neg_ = FNN_VLT0(z_);                                                  \
            if (EPI == FNN_EPI_BIAS) out_ = z_;                                               \
            else if (EPI == FNN_EPI_BIAS_RELU) out_ = FNN_VBLEND(z_, FNN_VZERO(), neg_);      \
            else out_ = FNN_VBLEND(z_, FNN_VMUL(FNN_VBCAST(&alpha), z_), neg_);               \
        } else if (EPI) {                                                                     \
            const FNN_V al_ = FNN_VBCAST(&alpha);                                             \
            if (beta == 0) out_ = FNN_VMUL(al_, out_);                                        \
            else {                                                                            \
                const FNN_V be_ = FNN_VBCAST(&beta);                                          \
                const FNN_V old_ = (M) ? FNN_VMLOAD((ptr), (mk)) : FNN_VLOAD(ptr);            \
                out_ = FNN_VFMA(al_, out_, FNN_VMUL(be_, old_));                              \
            }                                                                                 \
        }                                                                                     \
        if (M) FNN_VMSTORE((ptr), (mk), out_);                                                \
        else FNN_VSTORE((ptr), out_);                                                         \
    } while (0)

#if defined(FNN_NARROW_ROWS)
/* float, a C of 8 to FNN_TWIDE_MAX columns (a layer of about 10 outputs, as a 10-class output
 * layer: its forward product X W and its weight gradient X^T D).  Vectorized across columns,
 * 10 columns fill 10 of a panel's 16 lanes and need masked loads and stores; here, as in the
 * narrow kernels, lane r of an accumulator is row r of a group of FNN_W (8 with ymm, 16 with
 * zmm) and there is one accumulator per column (NC of them).  A's p-th elements of the group's
 * rows come from one load when A is read transposed (ATR: row i's p-th element at
 * A[i + p * aks]), otherwise from a stack copy of the rows transposed by 8 x 8 blocks in
 * registers (FNN_TWIDE_CHUNK steps of p at a time; the last, partial block by masked loads).
 * Each lane adds its row's products into one accumulator in the order p = 0 .. K-1, one fused
 * multiply-add each: the chain of the general kernel.  Each 8 rows' columns 0..7 are turned
 * back into 8 rows by one register transpose and stored as rows through FNN_EPI_STORE (full
 * vectors, bias at columns 0..7); columns 8.. lane by lane through the same store with their
 * bias broadcast: the same operations on the same values, hence the general kernel's bits.
 * The loop is fastnn_gemm_vec_impl.h's gemm_twide_k (both widths); the copy and the store
 * of 8 rows, below, are AVX2 at both. */
#define FNN_TWIDE_MAX 12
#define FNN_TWIDE_CHUNK 256   /* steps of p per copy of A (scratch memory: 16 KB at 16 rows) */
#define FNN_TWIDE_SMALL 16    /* the same, on the stack, when there is no scratch memory */

/* at[p * ats + r] := A[r * lda + p] for rows r = 0..7, p = 0 .. kc - 1 (8 x 8 blocks
 * transposed in registers, the last one read with masked loads: nothing past a row's kc) */
FNN_GEMM_AVX2_INLINE void fnn_s_twide_copy(ptrdiff_t kc, const float *restrict A,
                                           ptrdiff_t lda, float *restrict at, ptrdiff_t ats)
{
    __m256 v[8];
    ptrdiff_t p0, kk;
    int r;
    for (p0 = 0; p0 < kc; p0 += 8) {
        kk = kc - p0 < 8 ? kc - p0 : 8;
        const __m256i mkk = _mm256_loadu_si256((const __m256i *) (fnn_gemm_mask32 + 8 - kk));
        for (r = 0; r < 8; r++)
            v[r] = kk == 8 ? _mm256_loadu_ps(A + r * lda + p0)
                           : _mm256_maskload_ps(A + r * lda + p0, mkk);
        fnn_s_transpose8(v);
        for (r = 0; r < 8; r++)
            _mm256_storeu_ps(at + (p0 + r) * ats, v[r]);
    }
}

/* rows 0..7 of C (columns 0 .. NC - 1) := the store (FNN_EPI_STORE) of acc[c] (lane r: row r,
 * column c); acc is overwritten */
FNN_GEMM_AVX2_INLINE void fnn_s_twide_store(const int NC, const int EPI, __m256 *acc,
                                            float *restrict C, ptrdiff_t ldc, float alpha,
                                            float beta, const float *restrict bias)
{
    const __m256i mk = _mm256_setzero_si256();
    float tmp[8], bcol[8];
    int c, r;
    for (c = 8; c < NC; c++) {
        const float *restrict bias_c = bcol;
        if (EPI >= FNN_EPI_BIAS)
            for (r = 0; r < 8; r++) bcol[r] = bias[c];
        if (EPI == 1 && beta != 0)
            for (r = 0; r < 8; r++) tmp[r] = C[r * ldc + c];
        {
            const float *restrict bias = bias_c;     /* (the store reads bias + 0) */
            FNN_EPI_STORE(EPI, 0, tmp, 0, mk, acc[c]);
        }
        for (r = 0; r < 8; r++) C[r * ldc + c] = tmp[r];
    }
    fnn_s_transpose8(acc);
    for (r = 0; r < 8; r++)
        FNN_EPI_STORE(EPI, 0, C + r * ldc, 0, mk, acc[r]);
}
#endif

#include "fastnn_gemm_vec_impl.h"
#include "fastnn_gemm_avx512.h"

#endif /* FNN_GEMM_X86 */

/* C (m, n) := A (m, k) @ B (k, n), row-major with leading dimensions lda, ldb, ldc; every
 * element summed in the fixed order of fastnn_gemm.h.  C must not overlap A or B. */
static inline void FNN_P(gemm_fixed)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                     const FNN_T *A, ptrdiff_t lda, const FNN_T *B,
                                     ptrdiff_t ldb, FNN_T *C, ptrdiff_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
#if defined(FNN_GEMM_X86)
    if (fnn_gemm_use_avx512()) {
        FNN_P(gemm_avx512)(m, n, k, A, lda, B, ldb, C, ldc);
        return;
    }
    if (fnn_gemm_use_avx2()) {
        FNN_P(gemm_avx2)(m, n, k, A, lda, B, ldb, C, ldc);
        return;
    }
#endif
    FNN_P(gemm_plain)(m, n, k, A, lda, B, ldb, C, ldc);
}

/* C (m, n) := alpha op(A) op(B) + beta C, row-major (training's three products: X W, X^T D,
 * D W^T), every element of op(A) op(B) summed in the fixed order of fastnn_gemm.h (over
 * k = 0 .. K-1 into one accumulator), then scaled once: alpha acc + beta C (C not read when
 * beta == 0).  A transposed is read in place (a strided broadcast); B transposed is first
 * copied into a contiguous k x n block (the copy changes no sum; in the thread's scratch
 * memory up to FNN_GEMM_STACK_ELEMS, with 8 x 8 / 4 x 4 blocks transposed in registers on
 * AVX2).  A narrow C (n <= FNN_NARROW_MAX) is vectorized across rows (gemm_ex_avx2 /
 * _avx512), with the same bits.  C must not overlap A or B.
 * Returns 0, or -1 when the copy of a transposed B could not be allocated. */
static int FNN_P(gemm_fixed_ex)(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
                                ptrdiff_t k, FNN_T alpha, const FNN_T *A, ptrdiff_t lda,
                                const FNN_T *B, ptrdiff_t ldb, FNN_T beta, FNN_T *C,
                                ptrdiff_t ldc)
{
    FNN_T *bt = NULL;
    ptrdiff_t ars = trans_a ? 1 : lda, aks = trans_a ? lda : 1, i, j, p;
    if (m <= 0 || n <= 0)
        return 0;
    if (trans_b) {
        FNN_T *dst = k * n <= FNN_GEMM_STACK_ELEMS
                     ? (FNN_T *) fnn_gemm_scratch(FNN_SCRATCH_BT) : NULL;
        if (dst == NULL)
            dst = bt = (FNN_T *) malloc((size_t) (k * n) * sizeof(FNN_T));
        if (dst == NULL)
            return -1;
#if defined(FNN_GEMM_X86)
        if (fnn_gemm_use_avx2())
            FNN_P(transpose_copy)(n, k, B, ldb, dst);
        else
#endif
        for (j = 0; j < n; j++)
            for (p = 0; p < k; p++)
                dst[p * n + j] = B[j * ldb + p];
        B = dst;
        ldb = n;
    }
#if defined(FNN_GEMM_X86)
    if (fnn_gemm_use_avx2()) {
        if (fnn_gemm_use_avx512())
            FNN_P(gemm_ex_avx512)(m, n, k, A, ars, aks, B, ldb, C, ldc, alpha, beta);
        else
            FNN_P(gemm_ex_avx2)(m, n, k, A, ars, aks, B, ldb, C, ldc, alpha, beta);
        free(bt);
        return 0;
    }
#endif
    {
        /* plain C: each row accumulated in acc (n entries) in the order p = 0 .. k-1 */
        FNN_T *acc = (FNN_T *) malloc((size_t) n * sizeof(FNN_T));
        if (acc == NULL) {
            free(bt);
            return -1;
        }
        for (i = 0; i < m; i++) {
            FNN_T *c = C + i * ldc;
            for (j = 0; j < n; j++)
                acc[j] = 0;
            for (p = 0; p < k; p++) {
                const FNN_T ap = A[i * ars + p * aks];
                const FNN_T *b = B + p * ldb;
                for (j = 0; j < n; j++)
                    acc[j] = ap * b[j] + acc[j];
            }
            if (alpha == 1 && beta == 0)
                for (j = 0; j < n; j++)
                    c[j] = acc[j];
            else if (beta == 0)
                for (j = 0; j < n; j++)
                    c[j] = alpha * acc[j];
            else
                for (j = 0; j < n; j++)
                    c[j] = alpha * acc[j] + beta * c[j];
        }
        free(acc);
    }
    free(bt);
    return 0;
}

/* C (m, n) := act(A (m, k) @ B (k, n) + b), row-major: a forward layer's product, bias and
 * activation in one pass over C.  act: 0 identity, 1 ReLU (z < 0 ? 0 : z), 2 leaky ReLU
 * (z < 0 ? slope z : z), with z = (the product, summed as by gemm_fixed_ex) + b[j]: the bits
 * of gemm_fixed_ex followed by fastnn_kernels.h's bias_act, added and selected while the sums
 * are still in registers (AVX2) or in a second loop over C (plain C).  Returns 0; 1 when it
 * declines (a narrow C, n <= FNN_NARROW_MAX, whose product takes the row-vectorized kernel:
 * the caller runs the product and the pass); -1 when the plain kernel's workspace failed. */
static int FNN_P(gemm_fixed_bias_act)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const FNN_T *A,
                                      ptrdiff_t lda, const FNN_T *B, ptrdiff_t ldb, FNN_T *C,
                                      ptrdiff_t ldc, const FNN_T *bias, int act, FNN_T slope)
{
    ptrdiff_t i, j;
    if (m <= 0 || n <= 0)
        return 0;
#if defined(FNN_GEMM_X86)
    if (fnn_gemm_use_avx2()) {
        if (n <= FNN_NARROW_MAX && m >= 8)
            return 1;
        if (fnn_gemm_use_avx512())
            FNN_P(gemm_bias_act_avx512)(m, n, k, A, lda, B, ldb, C, ldc, bias, act, slope);
        else
            FNN_P(gemm_bias_act_avx2)(m, n, k, A, lda, B, ldb, C, ldc, bias, act, slope);
        return 0;
    }
#endif
    if (FNN_P(gemm_fixed_ex)(0, 0, m, n, k, 1, A, lda, B, ldb, 0, C, ldc) != 0)
        return -1;
    for (i = 0; i < m; i++) {
        FNN_T *c = C + i * ldc;
        for (j = 0; j < n; j++) {
            const FNN_T z = c[j] + bias[j];
            c[j] = act == 1 ? (z < 0 ? (FNN_T) 0 : z) : act == 2 ? (z < 0 ? slope * z : z) : z;
        }
    }
    return 0;
}

#undef FNN_T
#undef FNN_P
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec_undef.h"
#undef FNN_MR
#undef FNN_EPI_STORE
#undef FNN_EPI_BIAS
#undef FNN_EPI_BIAS_RELU
#undef FNN_EPI_BIAS_LEAKY
#undef FNN_TWIDE_MAX
#undef FNN_TWIDE_CHUNK
#undef FNN_TWIDE_SMALL
#endif