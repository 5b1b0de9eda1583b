/*
 * fastnn_gemm_packed.h -- fastnn's cache-blocked, packed product for training's large and thin
 * products: C := alpha op(A) op(B) + beta C, row-major, float and double.
 *
 * The design is BLIS's (Van Zee & van de Geijn, "BLIS: A Framework for Rapidly Instantiating
 * BLAS Functionality", 2015): the columns of C are cut into blocks of NC, the reduction into
 * blocks of KC, the rows into blocks of MC; a KC x NC panel of op(B) is copied ("packed") into
 * micro-panels of NR columns, contiguous in the order the micro-kernel reads them, and an
 * MC x KC block of op(A) into micro-panels of MR rows; an MR x NR register-blocked
 * micro-kernel then runs over the packed data alone.  The packing routines read op(A) and
 * op(B) straight from the caller's arrays, transposed or not, so training's three products
 * (X W, D W^T, X^T D) need no transposed copy.  Edges are handled by padding the packed
 * micro-panels with zeros and running the one micro-kernel into a small MR x NR tile.
 *
 * Summation order (why the results do not depend on the thread count).  Element c_ij is
 *
 *     s_b = fma(a_i,p1-1, b_p1-1,j, ... fma(a_i,p0, b_p0,j, 0) ...)   over block b = [p0, p1)
 *     C   = alpha s_0 + beta C        (one rounding: fma(alpha, s_0, beta C); C not read
 *                                      when beta == 0)
 *     C   = alpha s_b + C             for b = 1, 2, ... in order (fma(alpha, s_b, C))
 *
 * with the blocks [0, kb), [kb, 2 kb), ..., kb = ceil(k / ceil(k / KC)) (k cut into the fewest
 * near-equal blocks of at most KC: 784 is 262 + 262 + 260, not 384 + 384 + 16), a function
 * of k and KC only.  MC, NC, MR, NR and where a tile of C starts only decide which elements
 * are computed together, never the order of any element's sum (an edge tile runs the same
 * instructions on a padded copy).  So the fixed tiles of _network.tiled_gemm, each computed
 * by this product on any thread, give the same bits as one call over the whole of C.
 *
 * Kernels, by the level of fastnn_gemm.h (x86-64, chosen at run time, not under
 * AddressSanitizer):
 *   level 2, AVX-512: 12 x 32 (float) and 12 x 16 (double), 24 zmm accumulators: two
 *     adjacent NR-column micro-panels of op(B) read side by side (a micro-panel row is one
 *     zmm), two adjacent 6-row micro-panels of op(A) broadcast; the packing is level 1's, and
 *     the edges take 6-row and/or one-panel instances of the same kernel.  Every element is
 *     the same fma chain and final scaling as at level 1 (tests/test_gemm_levels.py: the same
 *     bits), 16 (8) columns per instruction instead of 8 (4): on Zen 5 at one thread,
 *     1.7-1.9x level 1 on training's float32 and float64 products of batch 256 and 1024
 *     (170-195 GFLOP/s float32, 75-95 float64).  6 x 32 measured level with 12 x 32 (within
 *     5%), 12 x 16 (one micro-panel of op(B)) 10-20% slower, and running the tiles with
 *     op(A)'s micro-panel outermost (op(B) streamed from L2) level.
 *   level 1, AVX2 + FMA: 6 x 16 (float) and 6 x 8 (double), 12 accumulator vectors, op(B)'s
 *     micro-panel row loaded as 2 vectors, op(A)'s 6 values broadcast.
 *   level 0, plain C: the same blocking and order with `a * b + c` (two roundings without
 *     FMA hardware).  It can differ from levels 1 and 2 in the last bit; one process always
 *     uses one of them.
 *
 * Memory: one buffer per call (freed before it returns), at most KC (NC + MC) elements
 * aligned to 64 bytes (1.7 MB for float, 1.9 MB for double), less for smaller products;
 * nothing grows with the number of calls.  gemm_packed returns 0, or -1 when that buffer
 * could not be allocated (C untouched).
 *
 * Packing op(A) of a row-major X and op(B) = W^T is a transpose: 8 x 8 (float) or 4 x 4
 * (double) blocks are loaded whole and transposed in registers, not gathered one strided
 * element at a time.  The micro-kernel fetches its C tile into the cache before its loop, so
 * the loads and stores of C after it do not stall on a miss.  Together, in isolation
 * (bench/RESULTS.md section 21): float32 X W and D W^T 3-7% faster on a quiet core, 7-19% with
 * the core shared; X^T D (its packing was already contiguous) level; float64 0-3%.  Fetching
 * op(A) ahead inside the loop, unrolling it by 4, and other KC / MC (256-1024 / 48-192)
 * measured level or slower on Zen 3 (the hardware prefetchers already stream the packed
 * micro-panels), so the loop and the blocking are as they were.
 *
 * Where it stands (bench/RESULTS.md sections 17 and 21): on thin products (a batch of 16-64
 * rows against a 784 x 256 layer, D W^T, X^T D) it is ahead of scipy's OpenBLAS 0.3.30; on
 * large row-major X W (a batch of 256-1024 rows) level with it or ahead; a C narrower than NR
 * wastes the padded lanes.  _tiling._product_kernel chooses it only where it measured ahead.
 */
#ifndef FASTNN_GEMM_PACKED_H
#define FASTNN_GEMM_PACKED_H

#include "fastnn_gemm.h"   /* fnn_gemm_use_avx2, FNN_GEMM_X86, FNN_GEMM_AVX2 */

#define FNN_PK_MR 6
/* the AVX-512 tiles span up to this many (1 or 2) 6-row micro-panels of op(A) */
#ifndef FNN_PK_ZRA
#define FNN_PK_ZRA 2
#endif
#if defined(FNN_GEMM_X86)
/* The AVX-512 micro-kernels' attributes: without SLP vectorization, which at -O3 (GCC 12) made
 * the 12 x 2 kernel keep one of op(B)'s two vectors on the stack (27 of the 32 zmm are live in
 * its loop) and reload it for every FMA */
#define FNN_PK_ZATTR __attribute__((target(FNN_GEMM_AVX512_TARGET), \
                                    optimize("no-tree-slp-vectorize")))
#define FNN_PK_ZATTR_INLINE static inline __attribute__((always_inline, \
    target(FNN_GEMM_AVX512_TARGET), optimize("no-tree-slp-vectorize")))
#endif

/* The blocking constants (results depend on KC: change it only with the fingerprints).
 * float: KC 384 (a 16-column micro-panel of B is 24 KB: L1), MC 96 (A's block 144 KB: L2),
 * NC 1024 (B's panel 1.5 MB: L3).  double: KC 384 (an 8-column micro-panel 24 KB), MC 96
 * (288 KB), NC 512 (1.5 MB).  Zen 3: L1d 32 KB, L2 512 KB per core. */
#ifndef FNN_PK_S_KC
#define FNN_PK_S_KC 384
#define FNN_PK_S_MC 96
#define FNN_PK_S_NC 1024
#define FNN_PK_D_KC 384
#define FNN_PK_D_MC 96
#define FNN_PK_D_NC 512
#endif

/* The length of the blocks k is cut into (k > 0): ceil(k / ceil(k / kc_max)), the fewest
 * blocks of at most kc_max, of near-equal length.  A function of k and kc_max only; every
 * kernel that promises gemm_packed's bits (fastnn_gemm_thin.h) sums in these blocks. */
static inline ptrdiff_t fnn_pk_kblock(ptrdiff_t k, ptrdiff_t kc_max)
{
    const ptrdiff_t n_blocks = (k + kc_max - 1) / kc_max;
    return (k + n_blocks - 1) / n_blocks;
}

#if defined(FNN_GEMM_X86)
/* The packing of the two row-major cases where the scalar copy is a strided gather: op(A) not
 * transposed (a row of X is contiguous along p, its micro-panel interleaves 6 rows) and op(B)
 * transposed (a row of W is contiguous along p, its micro-panel interleaves NR rows).  Blocks
 * of 8 (float) or 4 (double) consecutive p of each row are loaded whole and transposed in
 * registers; the p left over are copied one by one.  A copy: no value changes, so the packed
 * product's bits do not depend on which packing ran.  Full micro-panels only (the edges of C
 * keep the scalar copy). */

/* d[p 6 + r] := a[r lda + p], r < 6, p < kc */
FNN_GEMM_AVX2 static void fnn_s_pk_pack_rows6(const float *restrict a, ptrdiff_t lda,
                                             ptrdiff_t kc, float *restrict d)
{
    ptrdiff_t p = 0, r, q;
    for (; p + 8 <= kc; p += 8) {
        __m256 v[8];
        float *restrict dd = d + p * FNN_PK_MR;
        for (r = 0; r < FNN_PK_MR; r++)
            v[r] = _mm256_loadu_ps(a + r * lda + p);
        v[6] = v[7] = _mm256_setzero_ps();
        fnn_s_transpose8(v);          /* v[q] lane r: row r, column p + q; lanes 6, 7 zero */
        /* 8-lane stores of 6 useful lanes, in order: each overwrites the 2 spare lanes of the
         * one before; the last one is cut to 6 lanes, so nothing past dd[47] is written */
        for (q = 0; q < 7; q++)
            _mm256_storeu_ps(dd + q * FNN_PK_MR, v[q]);
        _mm_storeu_ps(dd + 42, _mm256_castps256_ps128(v[7]));
        _mm_storel_pi((__m64 *) (dd + 46), _mm256_extractf128_ps(v[7], 1));
    }
    for (; p < kc; p++)
        for (r = 0; r < FNN_PK_MR; r++)
            d[p * FNN_PK_MR + r] = a[r * lda + p];
}

/* d[p 16 + c] := b[c ldb + p], c < 16, p < kc */
FNN_GEMM_AVX2 static void fnn_s_pk_pack_rows16(const float *restrict b, ptrdiff_t ldb,
                                              ptrdiff_t kc, float *restrict d)
{
    ptrdiff_t p = 0, c, h, q;
    for (; p + 8 <= kc; p += 8)
        for (h = 0; h < 16; h += 8) {
            __m256 v[8];
            for (c = 0; c < 8; c++)
                v[c] = _mm256_loadu_ps(b + (h + c) * ldb + p);
            fnn_s_transpose8(v);
            for (q = 0; q < 8; q++)
                _mm256_storeu_ps(d + (p + q) * 16 + h, v[q]);
        }
    for (; p < kc; p++)
        for (c = 0; c < 16; c++)
            d[p * 16 + c] = b[c * ldb + p];
}

/* v[0..3] (4 rows of 4 doubles) <- their transpose */
FNN_GEMM_AVX2_INLINE void fnn_d_pk_transpose4(__m256d *v)
{
    const __m256d t0 = _mm256_unpacklo_pd(v[0], v[1]), t1 = _mm256_unpackhi_pd(v[0], v[1]);
    const __m256d t2 = _mm256_unpacklo_pd(v[2], v[3]), t3 = _mm256_unpackhi_pd(v[2], v[3]);
    v[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    v[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    v[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    v[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* d[p 6 + r] := a[r lda + p], r < 6, p < kc */
FNN_GEMM_AVX2 static void fnn_d_pk_pack_rows6(const double *restrict a, ptrdiff_t lda,
                                             ptrdiff_t kc, double *restrict d)
{
    ptrdiff_t p = 0, r;
    for (; p + 4 <= kc; p += 4) {
        __m256d v[4];
        double *restrict dd = d + p * FNN_PK_MR;
        __m256d lo, hi;
        for (r = 0; r < 4; r++)
            v[r] = _mm256_loadu_pd(a + r * lda + p);
        fnn_d_pk_transpose4(v);       /* v[q]: rows 0-3 of column p + q */
        /* rows 4, 5: (r4[q], r5[q]) pairs; lo holds q = 0, 2, hi q = 1, 3 */
        lo = _mm256_unpacklo_pd(_mm256_loadu_pd(a + 4 * lda + p),
                                _mm256_loadu_pd(a + 5 * lda + p));
        hi = _mm256_unpackhi_pd(_mm256_loadu_pd(a + 4 * lda + p),
                                _mm256_loadu_pd(a + 5 * lda + p));
        _mm256_storeu_pd(dd + 0, v[0]);
        _mm_storeu_pd(dd + 4, _mm256_castpd256_pd128(lo));
        _mm256_storeu_pd(dd + 6, v[1]);
        _mm_storeu_pd(dd + 10, _mm256_castpd256_pd128(hi));
        _mm256_storeu_pd(dd + 12, v[2]);
        _mm_storeu_pd(dd + 16, _mm256_extractf128_pd(lo, 1));
        _mm256_storeu_pd(dd + 18, v[3]);
        _mm_storeu_pd(dd + 22, _mm256_extractf128_pd(hi, 1));
    }
    for (; p < kc; p++)
        for (r = 0; r < FNN_PK_MR; r++)
            d[p * FNN_PK_MR + r] = a[r * lda + p];
}

/* d[p 8 + c] := b[c ldb + p], c < 8, p < kc */
FNN_GEMM_AVX2 static void fnn_d_pk_pack_rows8(const double *restrict b, ptrdiff_t ldb,
                                             ptrdiff_t kc, double *restrict d)
{
    ptrdiff_t p = 0, c, h, q;
    for (; p + 4 <= kc; p += 4)
        for (h = 0; h < 8; h += 4) {
            __m256d v[4];
            for (c = 0; c < 4; c++)
                v[c] = _mm256_loadu_pd(b + (h + c) * ldb + p);
            fnn_d_pk_transpose4(v);
            for (q = 0; q < 4; q++)
                _mm256_storeu_pd(d + (p + q) * 8 + h, v[q]);
        }
    for (; p < kc; p++)
        for (c = 0; c < 8; c++)
            d[p * 8 + c] = b[c * ldb + p];
}
#endif

/* ---------------------------------------------------------------- float */
#define FNN_T float
#define FNN_DOUBLE 0
#define FNN_P(name) fnn_s_##name
#define FNN_NR 16
#define FNN_KC FNN_PK_S_KC
#define FNN_MC FNN_PK_S_MC
#define FNN_NC FNN_PK_S_NC
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec256.h"
#define FNN_PACK_ROWS_A fnn_s_pk_pack_rows6
#define FNN_PACK_ROWS_B fnn_s_pk_pack_rows16
#endif
#include "fastnn_gemm_packed_impl.h"
#undef FNN_DOUBLE

/* ---------------------------------------------------------------- double */
#define FNN_T double
#define FNN_DOUBLE 1
#define FNN_P(name) fnn_d_##name
#define FNN_NR 8
#define FNN_KC FNN_PK_D_KC
#define FNN_MC FNN_PK_D_MC
#define FNN_NC FNN_PK_D_NC
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec256.h"
#define FNN_PACK_ROWS_A fnn_d_pk_pack_rows6
#define FNN_PACK_ROWS_B fnn_d_pk_pack_rows8
#endif
#include "fastnn_gemm_packed_impl.h"
#undef FNN_DOUBLE

#endif /* FASTNN_GEMM_PACKED_H */
