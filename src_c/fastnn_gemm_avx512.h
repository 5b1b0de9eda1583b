/*
 * fastnn_gemm_avx512.h -- level 2 (AVX-512) of fastnn_gemm.h's fixed-order kernels for one
 * element type.  Included by fastnn_gemm_impl.h right after the AVX2 instantiation of
 * fastnn_gemm_vec_impl.h, with FNN_T, FNN_P, FNN_DOUBLE and the AVX2 vector macros defined:
 * replaces those macros by their 512-bit forms (fastnn_gemm_vec512.h: zmm registers, mask
 * registers for the partial last vector of a row: a masked-off lane is neither read nor
 * written) and FNN_MR 6 by 8, and instantiates the same
 * kernels again, named FNN_P(name_avx512).  Not meant to be included on its own.
 *
 * The same source at both widths is what gives the same bits: every element of C is still one
 * fused multiply-add chain over k = 0 .. K-1 from zero, then the same FNN_EPI_STORE (alpha,
 * beta, bias, activation) on the same values; a zmm only holds 16 floats (8 doubles) of a row
 * where a ymm held 8 (4), and with 32 registers the tile grows from 6 to FNN_MR = 8 rows (16
 * accumulators): 8 x 32 floats, the one-row kernel 128.  gemm_tnarrow and gemm_twide run 16
 * float (8 double) rows per zmm; the float narrow kernel (1-4 columns, A's rows) below joins
 * two AVX2 8 x 8 transposes into each zmm.  Which rows share a tile never changes a sum.
 */
#include "fastnn_gemm_vec_undef.h"
#undef FNN_MR
#include "fastnn_gemm_vec512.h"
#define FNN_MR 8

#if !FNN_DOUBLE && defined(FNN_NARROW_ROWS)
/* The float narrow kernel (C of 1 to 4 columns, A's rows at lda: fastnn_gemm.h
 * fnn_s_gemm_narrow_k) with 16 rows per zmm: each 8 x 8 block of A is transposed in ymm
 * registers as at level 1, two of them (rows 0-7 and 8-15 of the group) joined into one zmm per
 * step of p, so each fused multiply-add serves 16 rows.  With a 4-cycle latency and one
 * accumulator per group and column, a 1-column C has only NG chains in flight: NG = 4
 * groups (64 rows) then.  Lane r still adds row r's products in the order p = 0 .. K-1 and
 * skips the steps past K (no 0 * b), so the bits are level 1's. */
FNN_GEMM_AVX512_INLINE void fnn_s_gemm_narrow16_k(const int NG, const int NC, ptrdiff_t k,
                                                  const float *restrict A, ptrdiff_t lda,
                                                  const float *restrict B, ptrdiff_t ldb,
                                                  float *restrict C, ptrdiff_t ldc)
{
    __m512 acc[4][FNN_NARROW_MAX], x[8];
    __m256 lo[8], hi[8];
    float out[16];
    ptrdiff_t p0, kk;
    int g, c, r, q;
    for (g = 0; g < NG; g++)
        for (c = 0; c < NC; c++)
            acc[g][c] = _mm512_setzero_ps();
    for (p0 = 0; p0 < k; p0 += 8) {
        kk = k - p0 < 8 ? k - p0 : 8;
        const __m256i mk = _mm256_loadu_si256((const __m256i *) (fnn_gemm_mask32 + 8 - kk));
        for (g = 0; g < NG; g++) {
            const float *restrict a = A + (ptrdiff_t) g * 16 * lda + p0;
            for (r = 0; r < 8; r++) {
                lo[r] = kk == 8 ? _mm256_loadu_ps(a + r * lda)
                                : _mm256_maskload_ps(a + r * lda, mk);
                hi[r] = kk == 8 ? _mm256_loadu_ps(a + (r + 8) * lda)
                                : _mm256_maskload_ps(a + (r + 8) * lda, mk);
            }
            fnn_s_transpose8(lo);
            fnn_s_transpose8(hi);
            for (q = 0; q < 8; q++)
                x[q] = _mm512_insertf32x8(_mm512_castps256_ps512(lo[q]), hi[q], 1);
            for (q = 0; q < 8; q++)
                if (q < kk)
                    for (c = 0; c < NC; c++)
                        acc[g][c] = _mm512_fmadd_ps(x[q], _mm512_set1_ps(B[(p0 + q) * ldb + c]),
                                                    acc[g][c]);
        }
    }
    for (g = 0; g < NG; g++)
        for (c = 0; c < NC; c++) {
            _mm512_storeu_ps(out, acc[g][c]);
            for (r = 0; r < 16; r++)
                C[((ptrdiff_t) g * 16 + r) * ldc + c] = out[r];
        }
}

/* fnn_s_gemm_narrow at level 2: groups of 16 rows, a last group of 8 at level 1 (the same
 * bits); returns how many rows it computed (a multiple of 8). */
FNN_GEMM_AVX512_INLINE ptrdiff_t fnn_s_gemm_narrow_avx512(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                                          const float *restrict A,
                                                          ptrdiff_t lda,
                                                          const float *restrict B,
                                                          ptrdiff_t ldb, float *restrict C,
                                                          ptrdiff_t ldc)
{
    ptrdiff_t i = 0;
#define FNN_NARROW16_CASE(nc, ng)                                                             \
    case nc:                                                                                  \
        for (; i + 16 * (ng) <= m; i += 16 * (ng))                                            \
            fnn_s_gemm_narrow16_k(ng, nc, k, A + i * lda, lda, B, ldb, C + i * ldc, ldc);    \
        for (; i + 16 <= m; i += 16)                                                          \
            fnn_s_gemm_narrow16_k(1, nc, k, A + i * lda, lda, B, ldb, C + i * ldc, ldc);     \
        if (i + 8 <= m) {                                                                     \
            fnn_s_gemm_narrow_k(1, nc, k, A + i * lda, lda, B, ldb, C + i * ldc, ldc);       \
            i += 8;                                                                           \
        }                                                                                     \
        break;
    switch (n) {
    FNN_NARROW16_CASE(1, 4) FNN_NARROW16_CASE(2, 2) FNN_NARROW16_CASE(3, 1)
    FNN_NARROW16_CASE(4, 1)
    }
#undef FNN_NARROW16_CASE
    return i;
}
#undef FNN_NARROW_ROWS
#define FNN_NARROW_ROWS fnn_s_gemm_narrow_avx512
#endif

#include "fastnn_gemm_vec_impl.h"
