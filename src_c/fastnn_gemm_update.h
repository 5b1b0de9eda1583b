/*
 * fastnn_gemm_update.h -- the weight-gradient product with a short reduction, as training's
 * fused SGD update runs it: W := beta W + alpha X^T D (alpha = -lr, beta = 1 - lr decay),
 * C = W (n_in x n_out) read and written once, k = the batch (16-64 rows).
 *
 * Why.  Each element of C is a sum of k products, so for k = 16 the product does 16 fused
 * multiply-adds per element of C it reads and writes: at the FMA peak a 784 x 256 W takes
 * about 67 us, in which its 800 KB (larger than Zen 3's 512 KB L2) must come from L3 and go
 * back.  The fixed kernel (fastnn_gemm.h) walks C by panels of 2 vectors of columns, down all
 * of its rows: from one tile to the next a stride of a whole row of W, 64 bytes used per row
 * and panel.  Here C is walked along its rows: a group of 6 rows of W, left to right, tile
 * after tile, 6 contiguous streams that the hardware prefetcher follows, so the loads of W
 * overlap the FMAs of the tiles before them.  D is first copied into contiguous panels of 2
 * vectors of columns (k x n values, 16 KB for k = 16, n = 256, read again for each group of
 * rows: its rows, a row of W apart, would otherwise map onto a few sets of the L1 cache, as
 * in the fixed kernel's panel copy); X's 6 columns of a group (k x 6 values) stay in L1.
 * Software prefetch of the tile below (its lines into L1 while a tile's k loop ran, 1, 2
 * or 4 groups ahead) measured from 8% slower to 4% faster than none, no consistent gain
 * (bench/RESULTS.md section 25): the row-wise walk is what pays, so there is none.  Nothing
 * is stored non-temporally: W is read by the next step.
 *
 * Summation order: exactly the fixed kernel's (gemm_fixed_ex): each element of C summed over
 * p = 0 .. k-1 in order, from a +0 accumulator, one fused multiply-add each, then stored as
 * alpha s + beta C with one rounding of fma(alpha, s, beta C) (C not read when beta == 0;
 * C := s when alpha == 1 and beta == 0), the operations of its FNN_EPI_STORE on the same
 * values, so the same bits for every shape; tests/test_gemm_update.py compares them bit for
 * bit.  Which rows or columns share a tile never changes an element's sum.
 *
 * Kernels (fastnn_gemm_update_kern.h, one body for both widths), for op(B) = B (training's
 * X^T D, and X W), x86-64, chosen at run time as in fastnn_gemm.h, not under AddressSanitizer:
 * level 2, AVX-512: tiles of 6 rows x 2 zmm (32 float or 16 double columns), each zmm one of
 * pk_pack_b's panels; level 1, AVX2 + FMA: 6 rows x 2 ymm (16 or 8 columns, one panel).  The
 * same sums and stores per element, so the same bits (tests/test_gemm_levels.py).  Measured
 * at one thread on Zen 5 (float32, alpha -0.01, beta 1, two runs): 784 x 256 and 256 x 128
 * at k = 16 and 64, 87-97 GFLOP/s at level 1, 156-174 at level 2 (OpenBLAS 73-90, NumPy
 * 23-40); float64 at k = 16 and 32, 39-46 and 65-90 (OpenBLAS 38-44).  Whole fits of
 * workload A (bench/fixed_products.py --update, level 2): 1.51x the samples/s without the
 * update kernel at batch 16, 1.36x at batch 64.  op(B) = B^T, no AVX2, nothing to sum
 * (k == 0) or level 0 (fnn_gemm_force_level): gemm_fixed_ex itself (the same bits by
 * construction).  Rows of C past a multiple of 6 run in a tile of fewer rows; columns past a
 * multiple of 2 vectors with masked loads and stores (no byte outside C is read or written).
 * Memory: one buffer per call (freed before it returns) of k x n rounded up to the panels'
 * NR columns (16 float, 8 double), aligned to 64 bytes; when it cannot be allocated,
 * gemm_fixed_ex runs instead.  Returns
 * what gemm_fixed_ex returns (0, or -1 when its copy of a transposed B failed).
 */
#ifndef FASTNN_GEMM_UPDATE_H
#define FASTNN_GEMM_UPDATE_H

#include "fastnn_gemm_packed.h"   /* pk_pack_b, gemm_fixed_ex, fnn_gemm_use_avx2, lane masks */

#define FNN_UPD_MR 6              /* rows of C per register tile (2 vectors of columns) */

/* ---------------------------------------------------------------- float */
#define FNN_T float
#define FNN_DOUBLE 0
#define FNN_P(name) fnn_s_##name
#define FNN_NR 16
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec256.h"
#include "fastnn_gemm_update_kern.h"
#include "fastnn_gemm_vec512.h"
#include "fastnn_gemm_update_kern.h"
#endif
#include "fastnn_gemm_update_impl.h"
#undef FNN_DOUBLE

/* ---------------------------------------------------------------- double */
#define FNN_T double
#define FNN_DOUBLE 1
#define FNN_P(name) fnn_d_##name
#define FNN_NR 8
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec256.h"
#include "fastnn_gemm_update_kern.h"
#include "fastnn_gemm_vec512.h"
#include "fastnn_gemm_update_kern.h"
#endif
#include "fastnn_gemm_update_impl.h"
#undef FNN_DOUBLE

#endif /* FASTNN_GEMM_UPDATE_H */
