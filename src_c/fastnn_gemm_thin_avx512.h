/*
 * fastnn_gemm_thin_avx512.h -- the AVX-512 kernel of fastnn_gemm_thin.h for one element type.
 * Included by fastnn_gemm_thin_impl.h (x86-64 only) with FNN_T, FNN_P, FNN_DOUBLE, FNN_KC,
 * FNN_TR and the 512-bit vector macros (fastnn_gemm_vec512.h: FNN_V a zmm, FNN_W its 16 float
 * or 8 double lanes) defined.  Not meant to be included on its own.
 *
 * One zmm holds a whole panel row of op(A) (pk_pack_b's NR = 16 float or 8 double rows of the
 * batch, the AVX2 kernel's 2 ymm), so the register tile is 12 columns of C (not 6) times 1 or
 * 2 panels (16 or 32 float rows): 24 accumulators of the 32 zmm, 12 broadcasts of op(B) and 2
 * loads of op(A) per 24 fused multiply-adds.  Each element of C is the same chain as at AVX2
 * (from +0 over the same k block, p in order, one fused multiply-add of the same two values
 * per step) and is stored with the same operations (alpha s, or fma(alpha, s, beta C)), so
 * the bits are the AVX2 kernel's (tests/test_gemm_levels.py).
 */

#define FNN_THIN_NCZ 12           /* columns of C per AVX-512 register tile */

/* The register tile: acc[2 c + h] (column c < 12 of C; rows of panel h: a0 for h = 0, a1 for
 * h = 1, present when NV == 2) := the sum over p = 0 .. kc-1, in order from 0, one fused
 * multiply-add each, of a_h[p ZW + r] b(p, c), with b(p, c) = b[p ldb + c] (TB 0) or
 * b[c ldb + p] (TB 1).  acc[2 c + 1] is zero when NV == 1. */
FNN_GEMM_AVX512_INLINE void FNN_P(thin512_k)(const int TB, const int NV, ptrdiff_t kc,
                                             const FNN_T *restrict a0,
                                             const FNN_T *restrict a1,
                                             const FNN_T *restrict b, ptrdiff_t ldb,
                                             FNN_V *restrict acc)
{
    FNN_V c0_0 = FNN_VZERO(), c1_0 = FNN_VZERO(), c2_0 = FNN_VZERO(), c3_0 = FNN_VZERO();
    FNN_V c4_0 = FNN_VZERO(), c5_0 = FNN_VZERO(), c6_0 = FNN_VZERO(), c7_0 = FNN_VZERO();
    FNN_V c8_0 = FNN_VZERO(), c9_0 = FNN_VZERO(), c10_0 = FNN_VZERO(), c11_0 = FNN_VZERO();
    FNN_V c0_1 = FNN_VZERO(), c1_1 = FNN_VZERO(), c2_1 = FNN_VZERO(), c3_1 = FNN_VZERO();
    FNN_V c4_1 = FNN_VZERO(), c5_1 = FNN_VZERO(), c6_1 = FNN_VZERO(), c7_1 = FNN_VZERO();
    FNN_V c8_1 = FNN_VZERO(), c9_1 = FNN_VZERO(), c10_1 = FNN_VZERO(), c11_1 = FNN_VZERO();
    ptrdiff_t p;
#define FNN_THIN_COL(j, ptr)                                                                  \
    {                                                                                         \
        const FNN_V x = FNN_VBCAST(ptr);                                                      \
        c##j##_0 = FNN_VFMA(x, v0, c##j##_0);                                                 \
        if (NV == 2) c##j##_1 = FNN_VFMA(x, v1, c##j##_1);                                    \
    }
#define FNN_THIN_STEP(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11)                       \
    {                                                                                         \
        const FNN_V v0 = FNN_VLOAD(a0 + p * FNN_W);                                          \
        const FNN_V v1 = NV == 2 ? FNN_VLOAD(a1 + p * FNN_W) : FNN_VZERO();                  \
        FNN_THIN_COL(0, s0) FNN_THIN_COL(1, s1) FNN_THIN_COL(2, s2) FNN_THIN_COL(3, s3)       \
        FNN_THIN_COL(4, s4) FNN_THIN_COL(5, s5) FNN_THIN_COL(6, s6) FNN_THIN_COL(7, s7)       \
        FNN_THIN_COL(8, s8) FNN_THIN_COL(9, s9) FNN_THIN_COL(10, s10)                         \
        FNN_THIN_COL(11, s11)                                                                 \
    }
    if (TB) {
        const ptrdiff_t l3 = 3 * ldb;
        const FNN_T *restrict b0 = b, *restrict b4 = b + 4 * ldb, *restrict b8 = b + 8 * ldb;
        for (p = 0; p < kc; p++)
            FNN_THIN_STEP(b0 + p, b0 + ldb + p, b0 + 2 * ldb + p, b0 + l3 + p,
                          b4 + p, b4 + ldb + p, b4 + 2 * ldb + p, b4 + l3 + p,
                          b8 + p, b8 + ldb + p, b8 + 2 * ldb + p, b8 + l3 + p)
    } else {
        for (p = 0; p < kc; p++) {
            const FNN_T *restrict bp = b + p * ldb;
            FNN_THIN_STEP(bp + 0, bp + 1, bp + 2, bp + 3, bp + 4, bp + 5, bp + 6, bp + 7,
                          bp + 8, bp + 9, bp + 10, bp + 11)
        }
    }
#undef FNN_THIN_STEP
#undef FNN_THIN_COL
    acc[0] = c0_0; acc[2] = c1_0; acc[4] = c2_0; acc[6] = c3_0; acc[8] = c4_0;
    acc[10] = c5_0; acc[12] = c6_0; acc[14] = c7_0; acc[16] = c8_0; acc[18] = c9_0;
    acc[20] = c10_0; acc[22] = c11_0;
    acc[1] = c0_1; acc[3] = c1_1; acc[5] = c2_1; acc[7] = c3_1; acc[9] = c4_1;
    acc[11] = c5_1; acc[13] = c6_1; acc[15] = c7_1; acc[17] = c8_1; acc[19] = c9_1;
    acc[21] = c10_1; acc[23] = c11_1;
}

#if !FNN_DOUBLE
/* v[0..15] (16 rows of 16 floats) <- their transpose: v[q] lane r = old v[r] lane q */
FNN_GEMM_AVX512_INLINE void fnn_s_transpose16(__m512 *v)
{
    __m512 t[16], s[16];
    int i, q;
    for (i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    /* s[4 g + q], 128-bit lane L: rows 4 g .. 4 g + 3 of column 4 L + q */
    for (i = 0; i < 16; i += 4) {
        s[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (q = 0; q < 4; q++) {
        /* x: lanes 0, 2 of s[q], s[4 + q]; y: lanes 1, 3 (x2, y2 the same of s[8 + q],
         * s[12 + q]); then column 4 L + q gathers lane L of the four */
        const __m512 x = _mm512_shuffle_f32x4(s[q], s[4 + q], 0x88);
        const __m512 y = _mm512_shuffle_f32x4(s[q], s[4 + q], 0xDD);
        const __m512 x2 = _mm512_shuffle_f32x4(s[8 + q], s[12 + q], 0x88);
        const __m512 y2 = _mm512_shuffle_f32x4(s[8 + q], s[12 + q], 0xDD);
        v[q] = _mm512_shuffle_f32x4(x, x2, 0x88);
        v[8 + q] = _mm512_shuffle_f32x4(x, x2, 0xDD);
        v[4 + q] = _mm512_shuffle_f32x4(y, y2, 0x88);
        v[12 + q] = _mm512_shuffle_f32x4(y, y2, 0xDD);
    }
}

/* C[0 : rows, 0 : cols] (cols <= 12) := alpha s + beta C (C not read when beta == 0), s the
 * tile of thin512_k: the tile transposed in registers (12 columns and 4 zero vectors per
 * panel), each row of C read and written with a mask of its cols lanes (nothing outside C
 * touched); per element the operations of the AVX2 store. */
FNN_GEMM_AVX512_INLINE void fnn_s_thin512_store(const __m512 *restrict acc, ptrdiff_t rows,
                                                ptrdiff_t cols, float *restrict C,
                                                ptrdiff_t ldc, float alpha, float beta)
{
    const __m512 al = _mm512_set1_ps(alpha), be = _mm512_set1_ps(beta);
    const __mmask16 mk = (__mmask16) ((1u << cols) - 1);
    __m512 v[16];
    ptrdiff_t h, r, c;
    for (h = 0; h < 2 && h * 16 < rows; h++) {
        for (c = 0; c < FNN_THIN_NCZ; c++)
            v[c] = acc[2 * c + h];
        for (; c < 16; c++)
            v[c] = _mm512_setzero_ps();
        fnn_s_transpose16(v);         /* v[r] lanes 0-11: row h 16 + r, columns 0-11 */
        for (r = 0; r < 16 && h * 16 + r < rows; r++) {
            float *restrict cr = C + (h * 16 + r) * ldc;
            const __m512 out = beta == 0 ? _mm512_mul_ps(al, v[r])
                : _mm512_fmadd_ps(al, v[r], _mm512_mul_ps(be, _mm512_maskz_loadu_ps(mk, cr)));
            _mm512_mask_storeu_ps(cr, mk, out);
        }
    }
}
#define FNN_THIN512_STORE fnn_s_thin512_store
#else
/* v[0..7] (8 rows of 8 doubles) <- their transpose: v[q] lane r = old v[r] lane q */
FNN_GEMM_AVX512_INLINE void fnn_d_transpose8(__m512d *v)
{
    __m512d t[8];
    int i, e;
    for (i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_pd(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(v[2 * i], v[2 * i + 1]);
    }
    /* t[2 i + e], 128-bit lane L: rows 2 i, 2 i + 1 of column 2 L + e; column 2 L + e
     * gathers lane L of t[e], t[2 + e], t[4 + e], t[6 + e] */
    for (e = 0; e < 2; e++) {
        const __m512d u = _mm512_shuffle_f64x2(t[e], t[2 + e], 0x88);
        const __m512d u2 = _mm512_shuffle_f64x2(t[e], t[2 + e], 0xDD);
        const __m512d w = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0x88);
        const __m512d w2 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0xDD);
        v[e] = _mm512_shuffle_f64x2(u, w, 0x88);
        v[4 + e] = _mm512_shuffle_f64x2(u, w, 0xDD);
        v[2 + e] = _mm512_shuffle_f64x2(u2, w2, 0x88);
        v[6 + e] = _mm512_shuffle_f64x2(u2, w2, 0xDD);
    }
}

/* The same for double: per panel two 8 x 8 transposes (columns 0-7; columns 8-11 and 4 zero
 * vectors), each row of C written as 8 + 4 lanes under masks of its cols. */
FNN_GEMM_AVX512_INLINE void fnn_d_thin512_store(const __m512d *restrict acc, ptrdiff_t rows,
                                                ptrdiff_t cols, double *restrict C,
                                                ptrdiff_t ldc, double alpha, double beta)
{
    const __m512d al = _mm512_set1_pd(alpha), be = _mm512_set1_pd(beta);
    const __mmask8 m0 = (__mmask8) (cols >= 8 ? 0xFF : (1u << cols) - 1);
    const __mmask8 m1 = (__mmask8) (cols > 8 ? (1u << (cols - 8)) - 1 : 0);
    __m512d x[8], y[8];
    ptrdiff_t h, r, c;
    for (h = 0; h < 2 && h * 8 < rows; h++) {
        for (c = 0; c < 8; c++)
            x[c] = acc[2 * c + h];
        for (c = 0; c < 4; c++)
            y[c] = acc[2 * (8 + c) + h];
        for (; c < 8; c++)
            y[c] = _mm512_setzero_pd();
        fnn_d_transpose8(x);          /* x[r]: row h 8 + r, columns 0-7 */
        fnn_d_transpose8(y);          /* y[r] lanes 0-3: the same row, columns 8-11 */
        for (r = 0; r < 8 && h * 8 + r < rows; r++) {
            double *restrict cr = C + (h * 8 + r) * ldc;
            __m512d o0, o1;
            if (beta == 0) {
                o0 = _mm512_mul_pd(al, x[r]);
                o1 = _mm512_mul_pd(al, y[r]);
            } else {
                o0 = _mm512_fmadd_pd(al, x[r], _mm512_mul_pd(be, _mm512_maskz_loadu_pd(m0, cr)));
                o1 = _mm512_fmadd_pd(al, y[r],
                                     _mm512_mul_pd(be, _mm512_maskz_loadu_pd(m1, cr + 8)));
            }
            _mm512_mask_storeu_pd(cr, m0, o0);
            if (m1)
                _mm512_mask_storeu_pd(cr + 8, m1, o1);
        }
    }
}
#define FNN_THIN512_STORE fnn_d_thin512_store
#endif

/* One tile of gemm_thin_avx512: rows (<= 2 TR) x cols (<= 12) of C (Ct, ldc) from the one
 * or two panels of op(A) at a (the second at a + TR kc) and op(B) at b: thin512_k's sums, then
 * their store. */
FNN_GEMM_AVX512_INLINE void FNN_P(thin_tile_avx512)(int tb, ptrdiff_t kc, const FNN_T *a,
                                                    const FNN_T *b, ptrdiff_t ldb,
                                                    ptrdiff_t rows, ptrdiff_t cols, FNN_T *Ct,
                                                    ptrdiff_t ldc, FNN_T alpha, FNN_T beta)
{
    const FNN_T *a1 = a + FNN_TR * kc;
    FNN_V acc[2 * FNN_THIN_NCZ];
    if (rows > FNN_TR) {
        if (tb)
            FNN_P(thin512_k)(1, 2, kc, a, a1, b, ldb, acc);
        else
            FNN_P(thin512_k)(0, 2, kc, a, a1, b, ldb, acc);
    } else {
        if (tb)
            FNN_P(thin512_k)(1, 1, kc, a, a, b, ldb, acc);
        else
            FNN_P(thin512_k)(0, 1, kc, a, a, b, ldb, acc);
    }
    FNN_THIN512_STORE(acc, rows, cols, Ct, ldc, alpha, beta);
}

/* gemm_thin_avx512: the driver of gemm_thin_avx2 with 12-column tiles of 1 or 2 panels (TR
 * == W: a panel is one zmm) */
#define FNN_THIN_TC FNN_THIN_NCZ
#define FNN_THIN_TM (2 * FNN_TR)
#include "fastnn_gemm_thin_drive.h"
#undef FNN_THIN512_STORE
#undef FNN_THIN_NCZ
