/*
 * fastnn_gemm_thin_impl.h -- the body of fastnn_gemm_thin.h for one element type.  Included
 * twice (float, then double) with FNN_T, FNN_P, FNN_DOUBLE, FNN_KC and, on x86-64, the AVX2
 * vector macros (fastnn_gemm_vec256.h) and FNN_SFMA defined; undefines them at the end (the
 * AVX-512 kernel, included last, switches to fastnn_gemm_vec512.h's).  Not meant to be
 * included on its own.
 */

#if defined(FNN_GEMM_X86)
#define FNN_TR (FNN_DOUBLE ? 8 : 16)  /* rows of C per AVX2 tile (2 ymm), one zmm panel */

/* The last cols (< ncol) columns of op(B)[0 : kc, :] (bj: op(B)(p, c) at bj[p ldb + c], or
 * bj[c ldb + p] when trans_b) into a zero-padded copy of ncol columns, read by the tile as a
 * row-major W: bq[p ncol + c], zero for c >= cols.  A copy, no value changes. */
static inline void FNN_P(thin_pad_b)(int trans_b, ptrdiff_t kc, const FNN_T *restrict bj,
                                     ptrdiff_t ldb, ptrdiff_t cols, ptrdiff_t ncol,
                                     FNN_T *restrict bq)
{
    ptrdiff_t p, c;
    for (p = 0; p < kc; p++)
        for (c = 0; c < ncol; c++)
            bq[p * ncol + c] = c >= cols ? 0 : trans_b ? bj[c * ldb + p] : bj[p * ldb + c];
}

/* The register tile: acc[2 c + h] (column c < 6 of C; rows h W .. h W + W - 1 of the panel)
 * := the sum over p = 0 .. kc-1, in order from 0, one fused multiply-add each, of
 * a[p TR + r] b(p, c), with b(p, c) = b[p ldb + c] (TB 0: a row-major W read along its rows)
 * or b[c ldb + p] (TB 1: W^T, 6 rows of W each read along p). */
FNN_GEMM_AVX2_INLINE void FNN_P(thin_k)(const int TB, ptrdiff_t kc, const FNN_T *restrict a,
                                        const FNN_T *restrict b, ptrdiff_t ldb,
                                        FNN_V *restrict acc)
{
    FNN_V c00 = FNN_VZERO(), c01 = FNN_VZERO(), c10 = FNN_VZERO(), c11 = FNN_VZERO();
    FNN_V c20 = FNN_VZERO(), c21 = FNN_VZERO(), c30 = FNN_VZERO(), c31 = FNN_VZERO();
    FNN_V c40 = FNN_VZERO(), c41 = FNN_VZERO(), c50 = FNN_VZERO(), c51 = FNN_VZERO();
    ptrdiff_t p;
#define FNN_THIN_STEP(x0, x1, x2, x3, x4, x5)                                                 \
    {                                                                                         \
        const FNN_V a0 = FNN_VLOAD(a), a1 = FNN_VLOAD(a + FNN_W);                             \
        FNN_V x;                                                                              \
        x = FNN_VBCAST(x0); c00 = FNN_VFMA(x, a0, c00); c01 = FNN_VFMA(x, a1, c01);          \
        x = FNN_VBCAST(x1); c10 = FNN_VFMA(x, a0, c10); c11 = FNN_VFMA(x, a1, c11);          \
        x = FNN_VBCAST(x2); c20 = FNN_VFMA(x, a0, c20); c21 = FNN_VFMA(x, a1, c21);          \
        x = FNN_VBCAST(x3); c30 = FNN_VFMA(x, a0, c30); c31 = FNN_VFMA(x, a1, c31);          \
        x = FNN_VBCAST(x4); c40 = FNN_VFMA(x, a0, c40); c41 = FNN_VFMA(x, a1, c41);          \
        x = FNN_VBCAST(x5); c50 = FNN_VFMA(x, a0, c50); c51 = FNN_VFMA(x, a1, c51);          \
        a += FNN_TR;                                                                          \
    }
    if (TB) {
        const FNN_T *restrict b0 = b, *restrict b1 = b + ldb, *restrict b2 = b + 2 * ldb;
        const FNN_T *restrict b3 = b + 3 * ldb, *restrict b4 = b + 4 * ldb;
        const FNN_T *restrict b5 = b + 5 * ldb;
        for (p = 0; p < kc; p++)
            FNN_THIN_STEP(b0 + p, b1 + p, b2 + p, b3 + p, b4 + p, b5 + p)
    } else {
        for (p = 0; p < kc; p++) {
            FNN_THIN_STEP(b + 0, b + 1, b + 2, b + 3, b + 4, b + 5)
            b += ldb;
        }
    }
#undef FNN_THIN_STEP
    acc[0] = c00; acc[1] = c01; acc[2] = c10; acc[3] = c11; acc[4] = c20; acc[5] = c21;
    acc[6] = c30; acc[7] = c31; acc[8] = c40; acc[9] = c41; acc[10] = c50; acc[11] = c51;
}

/* C[0 : rows, 0 : cols] (leading dimension ldc) := alpha s + beta C (C not read when
 * beta == 0), s the tile of thin_k (column c, row r: lane r % W of acc[2 c + r / W]); the
 * operations of the packed kernel's store on the same values, one element at a time. */
FNN_GEMM_AVX2_INLINE void FNN_P(thin_store_any)(const FNN_V *restrict acc, ptrdiff_t rows,
                                                ptrdiff_t cols, FNN_T *restrict C,
                                                ptrdiff_t ldc, FNN_T alpha, FNN_T beta)
{
    FNN_T t[FNN_THIN_NC][FNN_TR];
    ptrdiff_t r, c;
    for (c = 0; c < FNN_THIN_NC; c++) {
        FNN_VSTORE(t[c], acc[2 * c]);
        FNN_VSTORE(t[c] + FNN_W, acc[2 * c + 1]);
    }
    for (r = 0; r < rows; r++) {
        FNN_T *restrict cr = C + r * ldc;
        if (beta == 0)
            for (c = 0; c < cols; c++)
                cr[c] = alpha * t[c][r];
        else
            for (c = 0; c < cols; c++)
                cr[c] = FNN_SFMA(alpha, t[c][r], beta * cr[c]);
    }
}

#if FNN_W == 8
/* The same for 6 columns of float: the tile transposed in registers (two 8 x 8 transposes of
 * 6 columns and 2 zero vectors), each row of C written as 4 + 2 lanes. */
FNN_GEMM_AVX2_INLINE void fnn_s_thin_store6(const __m256 *restrict acc, ptrdiff_t rows,
                                            float *restrict C, ptrdiff_t ldc, float alpha,
                                            float beta)
{
    const __m256 al = _mm256_set1_ps(alpha), be = _mm256_set1_ps(beta);
    __m256 v[8];
    ptrdiff_t h, r, c;
    for (h = 0; h < 2 && h * 8 < rows; h++) {
        for (c = 0; c < 6; c++)
            v[c] = acc[2 * c + h];
        v[6] = v[7] = _mm256_setzero_ps();
        fnn_s_transpose8(v);          /* v[r] lanes 0-5: row h 8 + r, columns 0-5 */
        for (r = 0; r < 8 && h * 8 + r < rows; r++) {
            float *restrict cr = C + (h * 8 + r) * ldc;
            __m256 out;
            if (beta == 0) {
                out = _mm256_mul_ps(al, v[r]);
            } else {
                const __m128 lo = _mm_loadu_ps(cr);
                const __m128 hi = _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *) (cr + 4));
                const __m256 old = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
                out = _mm256_fmadd_ps(al, v[r], _mm256_mul_ps(be, old));
            }
            _mm_storeu_ps(cr, _mm256_castps256_ps128(out));
            _mm_storel_pi((__m64 *) (cr + 4), _mm256_extractf128_ps(out, 1));
        }
    }
}
#define FNN_THIN_STORE6(acc, rows, C, ldc, alpha, beta)                                       \
    fnn_s_thin_store6((acc), (rows), (C), (ldc), (alpha), (beta))
#else
#define FNN_THIN_STORE6(acc, rows, C, ldc, alpha, beta)                                       \
    FNN_P(thin_store_any)((acc), (rows), FNN_THIN_NC, (C), (ldc), (alpha), (beta))
#endif

/* One tile of gemm_thin_avx2: rows (<= TR) x cols (<= 6) of C (Ct, ldc) from the panel of
 * op(A) at a and op(B) at b (row-major W, or W^T when tb): thin_k's sums, then their store. */
FNN_GEMM_AVX2_INLINE void FNN_P(thin_tile_avx2)(int tb, ptrdiff_t kc, const FNN_T *a,
                                                const FNN_T *b, ptrdiff_t ldb, ptrdiff_t rows,
                                                ptrdiff_t cols, FNN_T *Ct, ptrdiff_t ldc,
                                                FNN_T alpha, FNN_T beta)
{
    FNN_V acc[2 * FNN_THIN_NC];
    if (tb)
        FNN_P(thin_k)(1, kc, a, b, ldb, acc);
    else
        FNN_P(thin_k)(0, kc, a, b, ldb, acc);
    if (cols == FNN_THIN_NC)
        FNN_THIN_STORE6(acc, rows, Ct, ldc, alpha, beta);
    else
        FNN_P(thin_store_any)(acc, rows, cols, Ct, ldc, alpha, beta);
}

/* gemm_thin_avx2: the driver with 6-column tiles of one panel */
#define FNN_THIN_TC FNN_THIN_NC
#define FNN_THIN_TM FNN_TR
#include "fastnn_gemm_thin_drive.h"
#undef FNN_THIN_STORE6
#include "fastnn_gemm_vec_undef.h"
#include "fastnn_gemm_vec512.h"
#include "fastnn_gemm_thin_avx512.h"
#undef FNN_TR
#endif

/* C (m, n) := alpha op(A) op(B) + beta C, row-major (the layout of _blas.gemm_rowmajor:
 * op(A) (m, k), op(B) (k, n)), summed in the order of fastnn_gemm_packed.h (the same bits as
 * gemm_packed).  C must not overlap A or B.  Returns 0, or -1 when its buffer could not be
 * allocated (C untouched). */
static int FNN_P(gemm_thin)(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                            FNN_T alpha, const FNN_T *A, ptrdiff_t lda, const FNN_T *B,
                            ptrdiff_t ldb, FNN_T beta, FNN_T *C, ptrdiff_t ldc)
{
#if defined(FNN_GEMM_X86)
    if (m > 0 && n > 0 && k > 0 && fnn_gemm_use_avx512())
        return FNN_P(gemm_thin_avx512)(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta,
                                       C, ldc);
    if (m > 0 && n > 0 && k > 0 && fnn_gemm_use_avx2())
        return FNN_P(gemm_thin_avx2)(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta,
                                     C, ldc);
#endif
    /* no AVX2, or nothing to sum: the packed product (the same order and bits) */
    return FNN_P(gemm_packed)(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

#undef FNN_T
#undef FNN_P
#undef FNN_KC
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec_undef.h"
#undef FNN_SFMA
#endif
