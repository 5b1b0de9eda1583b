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
 * Kernels: AVX2 + FMA (x86-64, chosen at run time like fastnn_gemm.h, not under
 * AddressSanitizer): 6 x 16 (float) and 6 x 8 (double), 12 accumulator vectors, op(B)'s
 * micro-panel row loaded as 2 vectors, op(A)'s 6 values broadcast.  Plain C otherwise: the
 * same blocking and order with `a * b + c` (two roundings without FMA hardware).  The two can
 * differ in the last bit; one process always uses one of them.
 *
 * Memory: one buffer per call (freed before it returns), at most KC (NC + MC) elements plus
 * 64 bytes of alignment (1.7 MB for float, 1.9 MB for double), less for smaller products;
 * nothing grows with the number of calls.  gemm_packed returns 0, or -1 when that buffer
 * could not be allocated (C untouched).
 *
 * Where it stands (bench/RESULTS.md section 16): on thin products (a batch of 16-64 rows
 * against a 784 x 256 layer, D W^T, X^T D) it is ahead of scipy's OpenBLAS 0.3.30; on large
 * row-major X W it is behind (no prefetching; op(A) of a row-major X is packed by a scalar
 * gather), and a C narrower than NR wastes the padded lanes.  _network._product_kernel
 * chooses it only where it measured ahead.
 */
#ifndef FASTNN_GEMM_PACKED_H
#define FASTNN_GEMM_PACKED_H

#include "fastnn_gemm.h"   /* fnn_gemm_use_avx2, FNN_GEMM_X86, FNN_GEMM_AVX2 */

#define FNN_PK_MR 6

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

static inline ptrdiff_t fnn_pk_min(ptrdiff_t a, ptrdiff_t b)
{
    return a < b ? a : b;
}

/* ---------------------------------------------------------------- float */
#define FNN_T float
#define FNN_P(name) fnn_s_##name
#define FNN_NR 16
#define FNN_KC FNN_PK_S_KC
#define FNN_MC FNN_PK_S_MC
#define FNN_NC FNN_PK_S_NC
#if defined(FNN_GEMM_X86)
#define FNN_V __m256
#define FNN_W 8
#define FNN_VZERO() _mm256_setzero_ps()
#define FNN_VLOAD(p) _mm256_loadu_ps(p)
#define FNN_VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define FNN_VBCAST(p) _mm256_broadcast_ss(p)
#define FNN_VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define FNN_VMUL(a, b) _mm256_mul_ps((a), (b))
#endif
#include "fastnn_gemm_packed_impl.h"

/* ---------------------------------------------------------------- double */
#define FNN_T double
#define FNN_P(name) fnn_d_##name
#define FNN_NR 8
#define FNN_KC FNN_PK_D_KC
#define FNN_MC FNN_PK_D_MC
#define FNN_NC FNN_PK_D_NC
#if defined(FNN_GEMM_X86)
#define FNN_V __m256d
#define FNN_W 4
#define FNN_VZERO() _mm256_setzero_pd()
#define FNN_VLOAD(p) _mm256_loadu_pd(p)
#define FNN_VSTORE(p, v) _mm256_storeu_pd((p), (v))
#define FNN_VBCAST(p) _mm256_broadcast_sd(p)
#define FNN_VFMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define FNN_VMUL(a, b) _mm256_mul_pd((a), (b))
#endif
#include "fastnn_gemm_packed_impl.h"

#endif /* FASTNN_GEMM_PACKED_H */
