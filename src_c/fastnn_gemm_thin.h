/*
 * fastnn_gemm_thin.h -- training's thin products (a batch of a few rows against a layer's
 * weights): C := alpha op(A) op(B) + beta C, row-major, float and double, computed as its
 * transpose so that the large operand is streamed once and never packed.
 *
 * Why.  In X W (16 x 784 times 784 x 256) or D W^T the batch has 16-64 rows.  The packed
 * kernel (fastnn_gemm_packed.h) copies the whole of W (800 KB) into micro-panels on every call
 * for 16 rows of use; the fixed kernel (fastnn_gemm.h) re-streams each column panel of W for
 * 3 row tiles of 6 (6 + 6 + 4).  Here the 16 rows of op(A) are the vector lanes: one
 * register tile holds 6 columns j of C times 2 vectors of rows i (16 float rows, 8 double),
 *
 *     C^T[j .. j+5, i .. i+15] += op(B)[p, j .. j+5]^T  x  op(A)[i .. i+15, p]^T
 *
 * op(A)'s 16 rows are packed once per call, p-major (16 consecutive values per p: 64 bytes,
 * a few KB for a whole reduction block), and op(B)'s 6 values per p are broadcast straight
 * from the caller's W: W[p, j .. j+5] of a row-major W (X W), or W[j + c, p] of 6 rows (D W^T:
 * each one contiguous along p).  The 6 x 16 tile is transposed in registers and stored as 16
 * rows of 6 columns of C.
 *
 * Summation order: exactly that of fastnn_gemm_packed.h, which this kernel replaces where it
 * is faster: k cut into the same ceil(k / KC) near-equal blocks, each element summed over a
 * block into one accumulator from 0 in the order p = p0, p0 + 1, ... (one fused multiply-add
 * each), then C := alpha s_0 + beta C (one rounding, C not read when beta == 0) and
 * C := alpha s_b + C for the later blocks.  For k <= KC (one block) that is also the order
 * of the fixed kernel (fastnn_gemm.h: one chain over k, scaled once).  So the thin, packed
 * and (k <= KC) fixed kernels give the same bits; tests/test_gemm_thin.py compares them bit
 * for bit.  Which rows or columns share a tile never changes an element's sum.
 *
 * Kernels (x86-64, chosen at run time as in fastnn_gemm.h, not under AddressSanitizer):
 * level 2, AVX-512 (fastnn_gemm_thin_avx512.h): one zmm is a whole panel of 16 float (8
 * double) rows, so a tile is 12 columns x 1 or 2 panels (24 accumulators), stored through a
 * transpose in registers (16 x 16 float, 2 of 8 x 8 double) with masked rows of C;
 * level 1, AVX2 + FMA: the 6 x 2-ymm tile above.  The same chains and stores per element, so
 * the same bits (tests/test_gemm_levels.py).  Measured at one thread on Zen 5 (float32, X W
 * and D W^T of workload A at batch 16 and 64, two runs): 87-106 GFLOP/s at level 1; level 2
 * 130-186 at batch 16 (one panel: a broadcast of W per fused multiply-add) and 169-198 at
 * batch 64; the packed kernel 60-98, OpenBLAS 42-86, NumPy 30-45.  Whole fits of workload A
 * (bench/fixed_products.py --thin, level 2): 1.64x the samples/s without the thin kernel at
 * batch 16, 1.45x at batch 64.  (Broadcasting W from 4-lane loads by in-lane shuffles
 * instead, for one panel: 10% slower.)  float64 on the same shapes: 48-50 at level 1, 89-97
 * at level 2 (60 while its store went one element at a time).  Elsewhere, or at level 0
 * (fnn_gemm_force_level), the packed product runs instead (its plain C kernel: the same
 * order, hence the same bits as the packed kernel on that machine).  Rows of C past a
 * multiple of 16 (8 for double) run in a zero-padded panel whose unused lanes are not
 * stored; columns past a multiple of the tile's 6 (12) through a zero-padded 6-column
 * (12-column) copy of op(B).
 *
 * Memory: one buffer per call (freed before it returns) of at most KC (THIN_MC + 12) elements
 * aligned to 64 bytes (about 117 KB for float); gemm_thin returns 0, or -1 when it could not be
 * allocated (C untouched).
 */
#ifndef FASTNN_GEMM_THIN_H
#define FASTNN_GEMM_THIN_H

#include "fastnn_gemm_packed.h"   /* FNN_PK_*_KC, gemm_packed, fnn_gemm_use_avx2 */

#define FNN_THIN_NC 6             /* columns of C per register tile */
#define FNN_THIN_MC 64            /* rows of op(A) packed at a time (4 float panels) */

/* ---------------------------------------------------------------- float */
#define FNN_T float
#define FNN_DOUBLE 0
#define FNN_P(name) fnn_s_##name
#define FNN_KC FNN_PK_S_KC
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec256.h"
#define FNN_SFMA(a, b, c) _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b),          \
                                                     _mm_set_ss(c)))
#endif
#include "fastnn_gemm_thin_impl.h"
#undef FNN_DOUBLE

/* ---------------------------------------------------------------- double */
#define FNN_T double
#define FNN_DOUBLE 1
#define FNN_P(name) fnn_d_##name
#define FNN_KC FNN_PK_D_KC
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec256.h"
#define FNN_SFMA(a, b, c) _mm_cvtsd_f64(_mm_fmadd_sd(_mm_set_sd(a), _mm_set_sd(b),          \
                                                     _mm_set_sd(c)))
#endif
#include "fastnn_gemm_thin_impl.h"
#undef FNN_DOUBLE

#endif /* FASTNN_GEMM_THIN_H */
