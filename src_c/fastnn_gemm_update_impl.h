/*
 * fastnn_gemm_update_impl.h -- the body of fastnn_gemm_update.h for one element type.
 * Included twice (float, then double) with FNN_T, FNN_P and FNN_NR defined and, on x86-64,
 * that type's vector kernels (fastnn_gemm_update_kern.h) before it; undefines them at the
 * end.  Not meant to be included on its own.
 */

#if defined(FNN_GEMM_X86)
/* gemm_update on AVX2 + FMA or AVX-512 (m, n, k > 0, op(B) = B): B copied into the packed
 * kernel's zero-padded panels of NR columns (panel q: k rows of NR, contiguous; a copy, no
 * value changes), then upd_run at the widest instruction set allowed (AVX-512 or AVX2 + FMA:
 * the same sums in the same order, fastnn_gemm_update_kern.h).  Returns 0, or -1 when the
 * panels could not be allocated (C untouched). */
static int FNN_P(gemm_update_x86)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const FNN_T *A,
                                  ptrdiff_t ars, ptrdiff_t aks, const FNN_T *B, ptrdiff_t ldb,
                                  FNN_T *C, ptrdiff_t ldc, FNN_T alpha, FNN_T beta)
{
    const ptrdiff_t n_panels = (n + FNN_NR - 1) / FNN_NR;
    FNN_T *bp = (FNN_T *) fnn_gemm_alloc64((size_t) (n_panels * k * FNN_NR) * sizeof(FNN_T));
    if (bp == NULL)
        return -1;
    FNN_P(pk_pack_b)(1, 0, B, ldb, 0, k, 0, n, bp);
    if (fnn_gemm_use_avx512())
        FNN_P(upd_run_avx512)(m, n, k, A, ars, aks, bp, C, ldc, alpha, beta);
    else
        FNN_P(upd_run_avx2)(m, n, k, A, ars, aks, bp, C, ldc, alpha, beta);
    free(bp);
    return 0;
}
#endif

/* C (m, n) := alpha op(A) op(B) + beta C, row-major (the layout of _blas.gemm_rowmajor), the
 * bits of gemm_fixed_ex (see the top of fastnn_gemm_update.h).  C must not overlap A or B.
 * Returns 0, or -1 when gemm_fixed_ex (op(B) = B^T) could not allocate its copy of B^T. */
static int FNN_P(gemm_update)(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              FNN_T alpha, const FNN_T *A, ptrdiff_t lda, const FNN_T *B,
                              ptrdiff_t ldb, FNN_T beta, FNN_T *C, ptrdiff_t ldc)
{
#if defined(FNN_GEMM_X86)
    if (!trans_b && m > 0 && n > 0 && k > 0 && fnn_gemm_use_avx2()
        && FNN_P(gemm_update_x86)(m, n, k, A, trans_a ? 1 : lda, trans_a ? lda : 1, B, ldb,
                                  C, ldc, alpha, beta) == 0)
        return 0;
#endif
    return FNN_P(gemm_fixed_ex)(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                ldc);
}

#undef FNN_T
#undef FNN_P
#undef FNN_NR
