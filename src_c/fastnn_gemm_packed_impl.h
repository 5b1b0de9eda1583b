/*
 * fastnn_gemm_packed_impl.h -- the body of fastnn_gemm_packed.h for one element type.
 * Included twice (float, then double) with FNN_T, FNN_P, FNN_DOUBLE, FNN_NR, FNN_KC, FNN_MC,
 * FNN_NC and, on x86-64, the AVX2 vector macros (fastnn_gemm_vec256.h; the AVX-512
 * micro-kernels switch to fastnn_gemm_vec512.h's) defined; undefines them at the end.  Not
 * meant to be included on its own.
 */

/* Rows p = 0 .. kc-1 of a row-major source S (S + p lds, each len contiguous elements) into
 * micro-panels of W elements: element c of row p at dst[(c / W) W kc + p W + c % W], zeros
 * past len.  Each source row is read once, front to back, into every micro-panel (the
 * hardware prefetcher follows one stream; a panel at a time read W elements per row at a
 * stride of lds).  The packing of op(A) = A^T (W = MR) and of op(B) = B (W = NR); W is a
 * constant at each call, so the copy of a panel row unrolls. */
static inline __attribute__((always_inline)) void FNN_P(pk_pack_runs)(
    const int W, const FNN_T *restrict S, ptrdiff_t lds, ptrdiff_t kc, ptrdiff_t len,
    FNN_T *restrict dst)
{
    ptrdiff_t p, q, c;
    for (p = 0; p < kc; p++) {
        const FNN_T *restrict s = S + p * lds;
        for (q = 0; q + W <= len; q += W) {
            FNN_T *restrict d = dst + q * kc + p * W;
            for (c = 0; c < W; c++)
                d[c] = s[q + c];
        }
        if (q < len) {
            FNN_T *restrict d = dst + q * kc + p * W;
            for (c = 0; c < len - q; c++)
                d[c] = s[q + c];
            for (; c < W; c++)
                d[c] = 0;
        }
    }
}

/* One micro-panel of W from `rows` (<= W) source rows S + r lds, each contiguous along p:
 * element (r, p) at d[p W + r], rows past `rows` zeros (a strided gather: the vector packings
 * FNN_PACK_ROWS_A / _B do full panels on AVX2; this is the plain copy and the edges). */
static inline __attribute__((always_inline)) void FNN_P(pk_pack_panel)(
    const int W, const FNN_T *restrict S, ptrdiff_t lds, ptrdiff_t kc, ptrdiff_t rows,
    FNN_T *restrict d)
{
    ptrdiff_t r, p;
    for (r = 0; r < rows; r++) {
        const FNN_T *restrict s = S + r * lds;
        for (p = 0; p < kc; p++)
            d[p * W + r] = s[p];
    }
    for (; r < W; r++)
        for (p = 0; p < kc; p++)
            d[p * W + r] = 0;
}

/* op(A)[i0 : i0 + mc, p0 : p0 + kc] into micro-panels of MR rows: element (r, p) of panel q at
 * dst[q MR kc + p MR + r]; rows past mc are zeros.  op(A)(i, p) is A[i lda + p], or
 * A[p lda + i] when trans_a. */
static void FNN_P(pk_pack_a)(int avx2, int trans_a, const FNN_T *restrict A, ptrdiff_t lda,
                             ptrdiff_t i0, ptrdiff_t mc, ptrdiff_t p0, ptrdiff_t kc,
                             FNN_T *restrict dst)
{
    ptrdiff_t ir;
    (void) avx2;
    if (trans_a) {
        FNN_P(pk_pack_runs)(FNN_PK_MR, A + p0 * lda + i0, lda, kc, mc, dst);
        return;
    }
    for (ir = 0; ir < mc; ir += FNN_PK_MR) {
        const ptrdiff_t rows = fnn_gemm_min(FNN_PK_MR, mc - ir);
        FNN_T *restrict d = dst + ir * kc;
#if defined(FNN_GEMM_X86)
        if (avx2 && rows == FNN_PK_MR) {
            FNN_PACK_ROWS_A(A + (i0 + ir) * lda + p0, lda, kc, d);
            continue;
        }
#endif
        FNN_P(pk_pack_panel)(FNN_PK_MR, A + (i0 + ir) * lda + p0, lda, kc, rows, d);
    }
}

/* op(B)[p0 : p0 + kc, j0 : j0 + nc] into micro-panels of NR columns: element (p, c) of panel q
 * at dst[q NR kc + p NR + c]; columns past nc are zeros.  op(B)(p, j) is B[p ldb + j], or
 * B[j ldb + p] when trans_b. */
static void FNN_P(pk_pack_b)(int avx2, int trans_b, const FNN_T *restrict B, ptrdiff_t ldb,
                             ptrdiff_t p0, ptrdiff_t kc, ptrdiff_t j0, ptrdiff_t nc,
                             FNN_T *restrict dst)
{
    ptrdiff_t jr;
    (void) avx2;
    if (!trans_b) {
        FNN_P(pk_pack_runs)(FNN_NR, B + p0 * ldb + j0, ldb, kc, nc, dst);
        return;
    }
    for (jr = 0; jr < nc; jr += FNN_NR) {
        const ptrdiff_t cols = fnn_gemm_min(FNN_NR, nc - jr);
        FNN_T *restrict d = dst + jr * kc;
#if defined(FNN_GEMM_X86)
        if (avx2 && cols == FNN_NR) {
            FNN_PACK_ROWS_B(B + (j0 + jr) * ldb + p0, ldb, kc, d);
            continue;
        }
#endif
        FNN_P(pk_pack_panel)(FNN_NR, B + (j0 + jr) * ldb + p0, ldb, kc, cols, d);
    }
}

/* The plain C micro-kernel: C[0:MR, 0:NR] (leading dimension ldc) := alpha s + beta C (C not
 * read when beta == 0), s the packed micro-panels' product summed over p = 0 .. kc-1. */
static void FNN_P(pk_kernel_plain)(ptrdiff_t kc, const FNN_T *restrict a,
                                   const FNN_T *restrict b, FNN_T *restrict C, ptrdiff_t ldc,
                                   FNN_T alpha, FNN_T beta)
{
    FNN_T acc[FNN_PK_MR][FNN_NR];
    ptrdiff_t r, c, p;
    for (r = 0; r < FNN_PK_MR; r++)
        for (c = 0; c < FNN_NR; c++)
            acc[r][c] = 0;
    for (p = 0; p < kc; p++)
        for (r = 0; r < FNN_PK_MR; r++) {
            const FNN_T ar = a[p * FNN_PK_MR + r];
            for (c = 0; c < FNN_NR; c++)
                acc[r][c] = ar * b[p * FNN_NR + c] + acc[r][c];
        }
    for (r = 0; r < FNN_PK_MR; r++) {
        FNN_T *restrict cr = C + r * ldc;
        if (beta == 0)
            for (c = 0; c < FNN_NR; c++)
                cr[c] = alpha * acc[r][c];
        else
            for (c = 0; c < FNN_NR; c++)
                cr[c] = alpha * acc[r][c] + beta * cr[c];
    }
}

#if defined(FNN_GEMM_X86)
/* The AVX2 + FMA micro-kernel: the same contract, 12 accumulator vectors. */
FNN_GEMM_AVX2 static void FNN_P(pk_kernel_avx2)(ptrdiff_t kc, const FNN_T *restrict a,
                                                const FNN_T *restrict b, FNN_T *restrict C,
                                                ptrdiff_t ldc, FNN_T alpha, FNN_T beta)
{
    FNN_V c00 = FNN_VZERO(), c01 = FNN_VZERO(), c10 = FNN_VZERO(), c11 = FNN_VZERO();
    FNN_V c20 = FNN_VZERO(), c21 = FNN_VZERO(), c30 = FNN_VZERO(), c31 = FNN_VZERO();
    FNN_V c40 = FNN_VZERO(), c41 = FNN_VZERO(), c50 = FNN_VZERO(), c51 = FNN_VZERO();
    ptrdiff_t p;
    /* C's 6 rows (one 64-byte line each, or two when unaligned) are needed only after the
     * loop: fetch them now, so their misses overlap the loop instead of stalling the stores */
    for (p = 0; p < FNN_PK_MR; p++) {
        _mm_prefetch((const char *) (C + p * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *) (C + p * ldc + FNN_NR - 1), _MM_HINT_T0);
    }
    for (p = 0; p < kc; p++) {
        const FNN_V b0 = FNN_VLOAD(b), b1 = FNN_VLOAD(b + FNN_W);
        FNN_V x;
        x = FNN_VBCAST(a + 0); c00 = FNN_VFMA(x, b0, c00); c01 = FNN_VFMA(x, b1, c01);
        x = FNN_VBCAST(a + 1); c10 = FNN_VFMA(x, b0, c10); c11 = FNN_VFMA(x, b1, c11);
        x = FNN_VBCAST(a + 2); c20 = FNN_VFMA(x, b0, c20); c21 = FNN_VFMA(x, b1, c21);
        x = FNN_VBCAST(a + 3); c30 = FNN_VFMA(x, b0, c30); c31 = FNN_VFMA(x, b1, c31);
        x = FNN_VBCAST(a + 4); c40 = FNN_VFMA(x, b0, c40); c41 = FNN_VFMA(x, b1, c41);
        x = FNN_VBCAST(a + 5); c50 = FNN_VFMA(x, b0, c50); c51 = FNN_VFMA(x, b1, c51);
        a += FNN_PK_MR;
        b += FNN_NR;
    }
    {
        const FNN_V al = FNN_VBCAST(&alpha);
#define FNN_PK_STORE(r, v0, v1)                                                               \
        if (beta == 0) {                                                                      \
            FNN_VSTORE(C + (r) * ldc, FNN_VMUL(al, v0));                                      \
            FNN_VSTORE(C + (r) * ldc + FNN_W, FNN_VMUL(al, v1));                              \
        } else {                                                                              \
            const FNN_V be = FNN_VBCAST(&beta);                                               \
            FNN_VSTORE(C + (r) * ldc,                                                         \
                       FNN_VFMA(al, v0, FNN_VMUL(be, FNN_VLOAD(C + (r) * ldc))));             \
            FNN_VSTORE(C + (r) * ldc + FNN_W,                                                 \
                       FNN_VFMA(al, v1, FNN_VMUL(be, FNN_VLOAD(C + (r) * ldc + FNN_W))));     \
        }
        FNN_PK_STORE(0, c00, c01) FNN_PK_STORE(1, c10, c11) FNN_PK_STORE(2, c20, c21)
        FNN_PK_STORE(3, c30, c31) FNN_PK_STORE(4, c40, c41) FNN_PK_STORE(5, c50, c51)
#undef FNN_PK_STORE
    }
}
#endif

/* An edge tile of rows x cols (smaller than the kernel's tr x tc) is computed into `tile`, a
 * padded tr x tc copy of C (zeros outside, C not read when beta == 0), by the same
 * instructions as a full one, so with the same bits; pk_edge_in returns where the kernel
 * writes (C itself for a full tile) and its leading dimension, pk_edge_out copies an edge
 * tile's rows x cols back into C. */
static inline FNN_T *FNN_P(pk_edge_in)(FNN_T *C, ptrdiff_t ldc, ptrdiff_t rows, ptrdiff_t cols,
                                       ptrdiff_t tr, ptrdiff_t tc, FNN_T beta,
                                       FNN_T *tile, ptrdiff_t *ldd)
{
    ptrdiff_t r, c;
    if (rows >= tr && cols >= tc) {
        *ldd = ldc;
        return C;
    }
    *ldd = tc;
    if (beta != 0)
        for (r = 0; r < tr; r++)
            for (c = 0; c < tc; c++)
                tile[r * tc + c] = r < rows && c < cols ? C[r * ldc + c] : 0;
    return tile;
}

static inline void FNN_P(pk_edge_out)(const FNN_T *dst, FNN_T *C, ptrdiff_t ldc,
                                      ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t tc)
{
    ptrdiff_t r, c;
    if (dst != C)
        for (r = 0; r < rows; r++)
            for (c = 0; c < cols; c++)
                C[r * ldc + c] = dst[r * tc + c];
}

#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec_undef.h"
#include "fastnn_gemm_vec512.h"
/* The AVX-512 micro-kernels (level 2): one zmm is one row of a packed NR-column micro-panel of
 * op(B) (NR == 16 floats or 8 doubles == 2 ymm, the panels pk_pack_b makes for every kernel),
 * so a tile of RA 6-row micro-panels of op(A) (at a, a + 6 kc) by NB adjacent micro-panels of
 * op(B) (at b, b + NR kc) is RA 6 x NB accumulator zmm, C (ldc) := alpha s + beta C as in
 * pk_kernel_avx2.  Each element is the AVX2 kernel's: the same fma(a, b, acc) chain over
 * p = 0 .. kc-1 from 0, then alpha acc or fma(alpha, acc, beta C) (C not read when beta == 0);
 * a zmm only computes 16 (8) columns at once where a ymm computed 8 (4), so the bits are the
 * AVX2 kernel's.  RA and NB are constants in each instance below (the loops unroll, the
 * accumulators live in registers: 24 of the 32 zmm at 12 x 2 NR). */
FNN_PK_ZATTR_INLINE void FNN_P(pk_zkernel)(const int RA, const int NB, ptrdiff_t kc,
                                           const FNN_T *restrict a, const FNN_T *restrict b,
                                           FNN_T *restrict C, ptrdiff_t ldc, FNN_T alpha,
                                           FNN_T beta)
{
    FNN_V acc[2 * FNN_PK_MR][2];
    const FNN_T *restrict a1 = a + FNN_PK_MR * kc, *restrict b1 = b + FNN_NR * kc;
    ptrdiff_t p;
    int r, j;
#pragma GCC unroll 12
    for (r = 0; r < RA * FNN_PK_MR; r++)
#pragma GCC unroll 2
        for (j = 0; j < NB; j++)
            acc[r][j] = FNN_VZERO();
    /* fetch C's tile now: its misses overlap the loop instead of stalling the stores */
    for (r = 0; r < RA * FNN_PK_MR; r++) {
        _mm_prefetch((const char *) (C + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *) (C + r * ldc + NB * FNN_NR - 1), _MM_HINT_T0);
    }
    for (p = 0; p < kc; p++) {
        const FNN_V b0 = FNN_VLOAD(b + p * FNN_NR);
        const FNN_V b1v = NB == 2 ? FNN_VLOAD(b1 + p * FNN_NR) : b0;
#pragma GCC unroll 12
        for (r = 0; r < RA * FNN_PK_MR; r++) {
            const FNN_V x = FNN_VBCAST(r < FNN_PK_MR ? a + p * FNN_PK_MR + r
                                                     : a1 + p * FNN_PK_MR + r - FNN_PK_MR);
            acc[r][0] = FNN_VFMA(x, b0, acc[r][0]);
            if (NB == 2)
                acc[r][1] = FNN_VFMA(x, b1v, acc[r][1]);
        }
    }
    {
        const FNN_V al = FNN_VBCAST(&alpha), be = FNN_VBCAST(&beta);
#pragma GCC unroll 12
        for (r = 0; r < RA * FNN_PK_MR; r++)
#pragma GCC unroll 2
            for (j = 0; j < NB; j++) {
                FNN_T *restrict c = C + r * ldc + j * FNN_NR;
                if (beta == 0)
                    FNN_VSTORE(c, FNN_VMUL(al, acc[r][j]));
                else
                    FNN_VSTORE(c, FNN_VFMA(al, acc[r][j], FNN_VMUL(be, FNN_VLOAD(c))));
            }
    }
}

#define FNN_PK_ZKERNEL(RA, NB)                                                                 \
FNN_PK_ZATTR static void FNN_P(pk_zkernel_##RA##x##NB)(ptrdiff_t kc, const FNN_T *a,           \
                                                       const FNN_T *b, FNN_T *C, ptrdiff_t ldc,\
                                                       FNN_T alpha, FNN_T beta)                \
{                                                                                              \
    FNN_P(pk_zkernel)(RA, NB, kc, a, b, C, ldc, alpha, beta);                                  \
}
FNN_PK_ZKERNEL(1, 1) FNN_PK_ZKERNEL(1, 2) FNN_PK_ZKERNEL(2, 1) FNN_PK_ZKERNEL(2, 2)
#undef FNN_PK_ZKERNEL

/* One AVX-512 tile of rows x cols (rows <= 6 RA, cols <= NR NB) at C: full tiles straight
 * into C, edge tiles through a padded copy (the same instructions, so the same bits). */
static inline void FNN_P(pk_ztile)(int ra, int nb, ptrdiff_t kc, const FNN_T *a,
                                   const FNN_T *b, FNN_T *C, ptrdiff_t ldc, ptrdiff_t rows,
                                   ptrdiff_t cols, FNN_T alpha, FNN_T beta)
{
    FNN_T tile[2 * FNN_PK_MR * 2 * FNN_NR];
    const ptrdiff_t tr = ra * FNN_PK_MR, tc = nb * FNN_NR;
    ptrdiff_t ldd;
    FNN_T *dst = FNN_P(pk_edge_in)(C, ldc, rows, cols, tr, tc, beta, tile, &ldd);
    if (ra == 2)
        (nb == 2 ? FNN_P(pk_zkernel_2x2) : FNN_P(pk_zkernel_2x1))(kc, a, b, dst, ldd, alpha,
                                                                   beta);
    else
        (nb == 2 ? FNN_P(pk_zkernel_1x2) : FNN_P(pk_zkernel_1x1))(kc, a, b, dst, ldd, alpha,
                                                                   beta);
    FNN_P(pk_edge_out)(dst, C, ldc, rows, cols, tc);
}
#endif

/* One micro-tile of rows x cols (<= MR x NR) at C: full tiles straight into C, edge tiles
 * through a padded MR x NR copy (the same instructions, so the same bits). */
static inline void FNN_P(pk_tile)(int avx2, ptrdiff_t kc, const FNN_T *a, const FNN_T *b,
                                  FNN_T *C, ptrdiff_t ldc, ptrdiff_t rows, ptrdiff_t cols,
                                  FNN_T alpha, FNN_T beta)
{
    FNN_T tile[FNN_PK_MR * FNN_NR];
    ptrdiff_t ldd;
    FNN_T *dst = FNN_P(pk_edge_in)(C, ldc, rows, cols, FNN_PK_MR, FNN_NR, beta, tile, &ldd);
#if defined(FNN_GEMM_X86)
    if (avx2)
        FNN_P(pk_kernel_avx2)(kc, a, b, dst, ldd, alpha, beta);
    else
#endif
        FNN_P(pk_kernel_plain)(kc, a, b, dst, ldd, alpha, beta);
    (void) avx2;
    FNN_P(pk_edge_out)(dst, C, ldc, rows, cols, FNN_NR);
}

/* C (m, n) := alpha op(A) op(B) + beta C, row-major (the layout of _blas.gemm_rowmajor:
 * op(A) (m, k), op(B) (k, n)), summed in the order of fastnn_gemm_packed.h.  C must not
 * overlap A or B.  Returns 0, or -1 when the packing buffer could not be allocated. */
static int FNN_P(gemm_packed)(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              FNN_T alpha, const FNN_T *A, ptrdiff_t lda, const FNN_T *B,
                              ptrdiff_t ldb, FNN_T beta, FNN_T *C, ptrdiff_t ldc)
{
    ptrdiff_t kb, kcmax, ncmax, mcmax, jc, pc, ic, jr, ir, i, j;
    FNN_T *bp, *ap;
    const int avx2 = fnn_gemm_use_avx2(), avx512 = fnn_gemm_use_avx512();
    (void) avx512;
    if (m <= 0 || n <= 0)
        return 0;
    if (k <= 0) {
        /* an empty sum: C := beta C (C not read when beta == 0) */
        for (i = 0; i < m; i++)
            for (j = 0; j < n; j++)
                C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return 0;
    }
    kb = fnn_pk_kblock(k, FNN_KC);
    kcmax = kb;
    ncmax = (fnn_gemm_min(FNN_NC, n) + FNN_NR - 1) / FNN_NR * FNN_NR;
    mcmax = (fnn_gemm_min(FNN_MC, m) + FNN_PK_MR - 1) / FNN_PK_MR * FNN_PK_MR;
    bp = (FNN_T *) fnn_gemm_alloc64((size_t) (kcmax * (ncmax + mcmax)) * sizeof(FNN_T));
    if (bp == NULL)
        return -1;
    ap = bp + kcmax * ncmax;
    for (jc = 0; jc < n; jc += FNN_NC) {
        const ptrdiff_t nc = fnn_gemm_min(FNN_NC, n - jc);
        for (pc = 0; pc < k; pc += kb) {
            const ptrdiff_t kc = fnn_gemm_min(kb, k - pc);
            const FNN_T be = pc == 0 ? beta : 1;
            FNN_P(pk_pack_b)(avx2, trans_b, B, ldb, pc, kc, jc, nc, bp);
            for (ic = 0; ic < m; ic += FNN_MC) {
                const ptrdiff_t mc = fnn_gemm_min(FNN_MC, m - ic);
                FNN_P(pk_pack_a)(avx2, trans_a, A, lda, ic, mc, pc, kc, ap);
#if defined(FNN_GEMM_X86)
                if (avx512) {
                    /* tiles of up to FNN_PK_ZRA 6-row panels x 2 NR-column panels (the
                     * order of the tiles is the AVX2 loop's; it decides no element's sum) */
                    for (jr = 0; jr < nc; jr += 2 * FNN_NR)
                        for (ir = 0; ir < mc; ir += FNN_PK_ZRA * FNN_PK_MR) {
                            const ptrdiff_t rows = fnn_gemm_min(FNN_PK_ZRA * FNN_PK_MR,
                                                                mc - ir);
                            const ptrdiff_t cols = fnn_gemm_min(2 * FNN_NR, nc - jr);
                            FNN_P(pk_ztile)(rows > FNN_PK_MR ? 2 : 1, cols > FNN_NR ? 2 : 1,
                                            kc, ap + ir * kc, bp + jr * kc,
                                            C + (ic + ir) * ldc + jc + jr, ldc, rows, cols,
                                            alpha, be);
                        }
                    continue;
                }
#endif
                for (jr = 0; jr < nc; jr += FNN_NR)
                    for (ir = 0; ir < mc; ir += FNN_PK_MR)
                        FNN_P(pk_tile)(avx2, kc, ap + ir * kc, bp + jr * kc,
                                       C + (ic + ir) * ldc + jc + jr, ldc,
                                       fnn_gemm_min(FNN_PK_MR, mc - ir),
                                       fnn_gemm_min(FNN_NR, nc - jr), alpha, be);
            }
        }
    }
    free(bp);
    return 0;
}

#undef FNN_T
#undef FNN_P
#undef FNN_NR
#undef FNN_KC
#undef FNN_MC
#undef FNN_NC
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec_undef.h"
#undef FNN_PACK_ROWS_A
#undef FNN_PACK_ROWS_B
#endif
