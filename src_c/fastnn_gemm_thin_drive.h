/*
 * fastnn_gemm_thin_drive.h -- the driver of fastnn_gemm_thin.h's vector kernels for one element
 * type at one instruction set.  Included by fastnn_gemm_thin_impl.h (AVX2) and
 * fastnn_gemm_thin_avx512.h (AVX-512) with FNN_T, FNN_P, FNN_KC, FNN_TR, the level's vector
 * macros (FNN_VN, FNN_VFUNC: its name suffix and attributes), FNN_THIN_TC (columns of C per
 * register tile: 6 at AVX2, 12 at AVX-512) and FNN_THIN_TM (rows of C per tile: 1 panel of TR
 * at AVX2, up to 2 at AVX-512) defined, and FNN_VN(thin_tile) (one tile: its sums and its
 * store) before it; undefines FNN_THIN_TC and FNN_THIN_TM.  The blocking (k in the blocks of
 * gemm_packed, op(A) packed by THIN_MC rows, op(B) read in place or through a zero-padded copy
 * of its last columns) is the same at every level; only the tile differs.  Not meant to be
 * included on its own.
 */

/* gemm_thin at this level (m, n > 0, k > 0).  Returns 0, or -1 when the buffer of op(A)'s
 * panels could not be allocated. */
FNN_VFUNC static int FNN_VN(gemm_thin)(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
                                       ptrdiff_t k, FNN_T alpha, const FNN_T *A, ptrdiff_t lda,
                                       const FNN_T *B, ptrdiff_t ldb, FNN_T beta, FNN_T *C,
                                       ptrdiff_t ldc)
{
    /* k in the blocks of gemm_packed */
    const ptrdiff_t kb = fnn_pk_kblock(k, FNN_KC);
    const ptrdiff_t mcmax = (fnn_gemm_min(FNN_THIN_MC, m) + FNN_TR - 1) / FNN_TR * FNN_TR;
    ptrdiff_t pc, ic, jr, ir;
    FNN_T *bq, *ap = (FNN_T *) fnn_gemm_alloc64((size_t) (kb * (mcmax + FNN_THIN_TC))
                                                 * sizeof(FNN_T));
    if (ap == NULL)
        return -1;
    bq = ap + kb * mcmax;
    for (pc = 0; pc < k; pc += kb) {
        const ptrdiff_t kc = fnn_gemm_min(kb, k - pc);
        const FNN_T be = pc == 0 ? beta : 1;
        for (ic = 0; ic < m; ic += FNN_THIN_MC) {
            const ptrdiff_t mc = fnn_gemm_min(FNN_THIN_MC, m - ic);
            /* op(A)[ic : ic + mc, pc : pc + kc] into panels of TR rows, p-major (element
             * (r, p) of panel q at ap[q TR kc + p TR + r], rows past mc zero): the packed
             * kernel's packing of op(B) into its NR-column panels, NR == TR, on op(A)^T */
            FNN_P(pk_pack_b)(1, !trans_a, A, lda, pc, kc, ic, mc, ap);
            for (jr = 0; jr < n; jr += FNN_THIN_TC) {
                const ptrdiff_t cols = fnn_gemm_min(FNN_THIN_TC, n - jr);
                const FNN_T *bj = trans_b ? B + jr * ldb + pc : B + pc * ldb + jr;
                ptrdiff_t ldbj = ldb;
                int tb = trans_b;
                if (cols < FNN_THIN_TC) {
                    FNN_P(thin_pad_b)(trans_b, kc, bj, ldb, cols, FNN_THIN_TC, bq);
                    bj = bq;
                    ldbj = FNN_THIN_TC;
                    tb = 0;
                }
                for (ir = 0; ir < mc; ir += FNN_THIN_TM)
                    FNN_VN(thin_tile)(tb, kc, ap + ir * kc, bj, ldbj,
                                      fnn_gemm_min(FNN_THIN_TM, mc - ir), cols,
                                      C + (ic + ir) * ldc + jr, ldc, alpha, be);
            }
        }
    }
    free(ap);
    return 0;
}

#undef FNN_THIN_TC
#undef FNN_THIN_TM
