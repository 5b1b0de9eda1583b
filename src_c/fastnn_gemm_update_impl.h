/*
 * fastnn_gemm_update_impl.h -- the body of fastnn_gemm_update.h for one element type.
 * Included twice (float, then double) with FNN_T, FNN_P and, on x86-64, the vector macros
 * defined; undefines them at the end.  Not meant to be included on its own.
 */

#if defined(FNN_GEMM_X86)

/* The register tile: rows 0 .. R-1 (R <= 6) of C times NV (1 or 2) vectors of columns, the
 * last one partial when MASKED (lanes of mk).  Row r's p-th element of op(A) at
 * a[r ars + p aks]; B's row p at b + p 2W (a packed panel, zero-padded past n).  Each element
 * := the sum over p = 0 .. k-1, in order from a +0 accumulator, one fused multiply-add each;
 * then stored as the fixed kernel's FNN_EPI_STORE does: EPI 0: C := s; 1 (beta == 0):
 * alpha s; 2: fma(alpha, s, beta C). */
FNN_GEMM_AVX2_INLINE void FNN_P(upd_tile)(const int R, const int NV, const int MASKED,
                                          const int EPI, ptrdiff_t k,
                                          const FNN_T *restrict a, ptrdiff_t ars,
                                          ptrdiff_t aks, const FNN_T *restrict b,
                                          FNN_T *restrict c, ptrdiff_t ldc, __m256i mk,
                                          FNN_V al, FNN_V be)
{
    FNN_V c00 = FNN_VZERO(), c01 = FNN_VZERO(), c10 = FNN_VZERO(), c11 = FNN_VZERO();
    FNN_V c20 = FNN_VZERO(), c21 = FNN_VZERO(), c30 = FNN_VZERO(), c31 = FNN_VZERO();
    FNN_V c40 = FNN_VZERO(), c41 = FNN_VZERO(), c50 = FNN_VZERO(), c51 = FNN_VZERO();
    ptrdiff_t p;
    for (p = 0; p < k; p++) {
        const FNN_T *restrict ap = a + p * aks;
        const FNN_V b0 = FNN_VLOAD(b + p * 2 * FNN_W);
        const FNN_V b1 = NV == 2 ? FNN_VLOAD(b + p * 2 * FNN_W + FNN_W) : FNN_VZERO();
        FNN_V x;
#define FNN_UPD_ROW(r, cr0, cr1)                                                              \
        if (R > (r)) {                                                                        \
            x = FNN_VBCAST(ap + (r) * ars);                                                   \
            cr0 = FNN_VFMA(x, b0, cr0);                                                       \
            if (NV == 2) cr1 = FNN_VFMA(x, b1, cr1);                                          \
        }
        FNN_UPD_ROW(0, c00, c01) FNN_UPD_ROW(1, c10, c11) FNN_UPD_ROW(2, c20, c21)
        FNN_UPD_ROW(3, c30, c31) FNN_UPD_ROW(4, c40, c41) FNN_UPD_ROW(5, c50, c51)
#undef FNN_UPD_ROW
    }
#define FNN_UPD_ONE(M, ptr, v)                                                                \
    do {                                                                                      \
        FNN_V out_ = (v);                                                                     \
        if (EPI == 1)                                                                         \
            out_ = FNN_VMUL(al, out_);                                                        \
        else if (EPI == 2)                                                                    \
            out_ = FNN_VFMA(al, out_, FNN_VMUL(be, (M) ? FNN_VMLOAD((ptr), mk)               \
                                                       : FNN_VLOAD(ptr)));                    \
        if (M) FNN_VMSTORE((ptr), mk, out_);                                                  \
        else FNN_VSTORE((ptr), out_);                                                         \
    } while (0)
#define FNN_UPD_STORE(r, cr0, cr1)                                                            \
    if (R > (r)) {                                                                            \
        if (NV == 1) {                                                                        \
            FNN_UPD_ONE(MASKED, c + (r) * ldc, cr0);                                          \
        } else {                                                                              \
            FNN_UPD_ONE(0, c + (r) * ldc, cr0);                                               \
            FNN_UPD_ONE(MASKED, c + (r) * ldc + FNN_W, cr1);                                  \
        }                                                                                     \
    }
    FNN_UPD_STORE(0, c00, c01) FNN_UPD_STORE(1, c10, c11) FNN_UPD_STORE(2, c20, c21)
    FNN_UPD_STORE(3, c30, c31) FNN_UPD_STORE(4, c40, c41) FNN_UPD_STORE(5, c50, c51)
#undef FNN_UPD_STORE
#undef FNN_UPD_ONE
}

/* R rows of C (R <= 6), all n columns, left to right, B packed in panels of 2 vectors of
 * columns (panel q at bp + q k 2W). */
FNN_GEMM_AVX2_INLINE void FNN_P(upd_rows)(const int R, const int EPI, ptrdiff_t n,
                                          ptrdiff_t k, const FNN_T *restrict a, ptrdiff_t ars,
                                          ptrdiff_t aks, const FNN_T *restrict bp,
                                          FNN_T *restrict C, ptrdiff_t ldc, FNN_V al,
                                          FNN_V be)
{
    const __m256i none = _mm256_setzero_si256();
    const ptrdiff_t step = k * 2 * FNN_W;
    ptrdiff_t j, rem;
    for (j = 0; j + 2 * FNN_W <= n; j += 2 * FNN_W, bp += step)
        FNN_P(upd_tile)(R, 2, 0, EPI, k, a, ars, aks, bp, C + j, ldc, none, al, be);
    rem = n - j;
    if (rem <= 0)
        return;
    {
        const __m256i mk = rem % FNN_W ? FNN_MASK(rem % FNN_W) : none;
        if (rem > FNN_W) {
            if (rem % FNN_W)
                FNN_P(upd_tile)(R, 2, 1, EPI, k, a, ars, aks, bp, C + j, ldc, mk, al, be);
            else
                FNN_P(upd_tile)(R, 2, 0, EPI, k, a, ars, aks, bp, C + j, ldc, mk, al, be);
        } else if (rem % FNN_W) {
            FNN_P(upd_tile)(R, 1, 1, EPI, k, a, ars, aks, bp, C + j, ldc, mk, al, be);
        } else {
            FNN_P(upd_tile)(R, 1, 0, EPI, k, a, ars, aks, bp, C + j, ldc, mk, al, be);
        }
    }
}

/* The whole of C, groups of 6 rows top to bottom, then the rows left over as one group. */
FNN_GEMM_AVX2_INLINE void FNN_P(upd_x)(const int EPI, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                       const FNN_T *restrict A, ptrdiff_t ars, ptrdiff_t aks,
                                       const FNN_T *restrict bp, FNN_T *restrict C,
                                       ptrdiff_t ldc, FNN_T alpha, FNN_T beta)
{
    const ptrdiff_t m6 = m - m % FNN_UPD_MR;
    const FNN_V al = FNN_VBCAST(&alpha), be = FNN_VBCAST(&beta);
    ptrdiff_t i;
    for (i = 0; i < m6; i += FNN_UPD_MR)
        FNN_P(upd_rows)(6, EPI, n, k, A + i * ars, ars, aks, bp, C + i * ldc, ldc, al, be);
    switch (m - m6) {
#define FNN_UPD_REST(r)                                                                       \
    case r:                                                                                   \
        FNN_P(upd_rows)(r, EPI, n, k, A + m6 * ars, ars, aks, bp, C + m6 * ldc, ldc, al, be); \
        break;
    FNN_UPD_REST(1) FNN_UPD_REST(2) FNN_UPD_REST(3) FNN_UPD_REST(4) FNN_UPD_REST(5)
#undef FNN_UPD_REST
    default:
        break;
    }
}

/* gemm_update on AVX2 + FMA (m, n, k > 0, op(B) = B): B copied into zero-padded panels of 2
 * vectors of columns (panel q: k rows of 2W, contiguous; a copy, no value changes), then
 * upd_x.  Returns 0, or -1 when the panels could not be allocated (C untouched). */
FNN_GEMM_AVX2 static int FNN_P(gemm_update_avx2)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                                 const FNN_T *A, ptrdiff_t ars, ptrdiff_t aks,
                                                 const FNN_T *B, ptrdiff_t ldb, FNN_T *C,
                                                 ptrdiff_t ldc, FNN_T alpha, FNN_T beta)
{
    const ptrdiff_t n_panels = (n + 2 * FNN_W - 1) / (2 * FNN_W);
    FNN_T *bp;
    void *raw = malloc((size_t) (n_panels * k * 2 * FNN_W) * sizeof(FNN_T) + 64);
    if (raw == NULL)
        return -1;
    bp = (FNN_T *) (((uintptr_t) raw + 63) & ~(uintptr_t) 63);
    /* the packed kernel's packing of op(B) into NR-column panels, NR == 2W */
    FNN_P(pk_pack_b)(1, 0, B, ldb, 0, k, 0, n, bp);
    if (alpha == 1 && beta == 0)
        FNN_P(upd_x)(0, m, n, k, A, ars, aks, bp, C, ldc, 1, 0);
    else if (beta == 0)
        FNN_P(upd_x)(1, m, n, k, A, ars, aks, bp, C, ldc, alpha, 0);
    else
        FNN_P(upd_x)(2, m, n, k, A, ars, aks, bp, C, ldc, alpha, beta);
    free(raw);
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
        && FNN_P(gemm_update_avx2)(m, n, k, A, trans_a ? 1 : lda, trans_a ? lda : 1, B, ldb,
                                   C, ldc, alpha, beta) == 0)
        return 0;
#endif
    return FNN_P(gemm_fixed_ex)(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                ldc);
}

#undef FNN_T
#undef FNN_P
#if defined(FNN_GEMM_X86)
#undef FNN_V
#undef FNN_W
#undef FNN_VZERO
#undef FNN_VLOAD
#undef FNN_VMLOAD
#undef FNN_VSTORE
#undef FNN_VMSTORE
#undef FNN_VBCAST
#undef FNN_VFMA
#undef FNN_VMUL
#undef FNN_MASK
#endif
