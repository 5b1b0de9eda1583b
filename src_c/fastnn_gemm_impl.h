/*
 * fastnn_gemm_impl.h -- the body of fastnn_gemm.h for one element type.  Included twice by
 * fastnn_gemm.h (float, then double) with FNN_T, FNN_P and, on x86-64, the vector macros
 * FNN_V, FNN_W, FNN_VZERO, FNN_VLOAD, FNN_VMLOAD, FNN_VSTORE, FNN_VMSTORE, FNN_VBCAST, FNN_VFMA,
 * FNN_MASK defined; undefines them at the end.  Not meant to be included on its own.
 */

/* The plain C kernel: for each row, the columns side by side (vectorizable), the products
 * added in the order k = 0 .. K-1 (see fastnn_gemm.h). */
static void FNN_P(gemm_plain)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              const FNN_T *restrict A, ptrdiff_t lda,
                              const FNN_T *restrict B, ptrdiff_t ldb,
                              FNN_T *restrict C, ptrdiff_t ldc)
{
    ptrdiff_t i, j, p;
    for (i = 0; i < m; i++) {
        const FNN_T *restrict a = A + i * lda;
        FNN_T *restrict c = C + i * ldc;
        for (j = 0; j < n; j++)
            c[j] = 0;
        for (p = 0; p < k; p++) {
            const FNN_T ap = a[p];
            const FNN_T *restrict b = B + p * ldb;
            for (j = 0; j < n; j++)
                c[j] = ap * b[j] + c[j];
        }
    }
}

#if defined(FNN_GEMM_X86)

/* One row, NV vectors of columns (NV <= 8): c[0 : ncols] := a[0:k] @ B[0:k, 0:ncols].
 * MASKED: the last vector is partial (ncols - (NV - 1) W columns). */
FNN_GEMM_AVX2_INLINE void FNN_P(gemm_row_k)(const int NV, const int MASKED, ptrdiff_t k,
                                            const FNN_T *restrict a,
                                            const FNN_T *restrict B, ptrdiff_t ldb,
                                            FNN_T *restrict c, ptrdiff_t ncols)
{
    FNN_V c0 = FNN_VZERO(), c1 = FNN_VZERO(), c2 = FNN_VZERO(), c3 = FNN_VZERO();
    FNN_V c4 = FNN_VZERO(), c5 = FNN_VZERO(), c6 = FNN_VZERO(), c7 = FNN_VZERO();
    const __m256i mk = MASKED ? FNN_MASK(ncols - (NV - 1) * FNN_W) : _mm256_setzero_si256();
    ptrdiff_t p;
#define FNN_ROW_LOAD(v) ((MASKED && NV == (v) + 1) ? FNN_VMLOAD(b + (v) * FNN_W, mk)        \
                                                   : FNN_VLOAD(b + (v) * FNN_W))
#define FNN_ROW_FMA(v, cv) if (NV > (v)) cv = FNN_VFMA(x, FNN_ROW_LOAD(v), cv)
    for (p = 0; p < k; p++) {
        const FNN_T *restrict b = B + p * ldb;
        const FNN_V x = FNN_VBCAST(a + p);
        FNN_ROW_FMA(0, c0); FNN_ROW_FMA(1, c1); FNN_ROW_FMA(2, c2); FNN_ROW_FMA(3, c3);
        FNN_ROW_FMA(4, c4); FNN_ROW_FMA(5, c5); FNN_ROW_FMA(6, c6); FNN_ROW_FMA(7, c7);
    }
#undef FNN_ROW_FMA
#undef FNN_ROW_LOAD
#define FNN_ROW_STORE(v, cv)                                                                  \
    if (NV > (v)) {                                                                           \
        if (MASKED && NV == (v) + 1) FNN_VMSTORE(c + (v) * FNN_W, mk, cv);                    \
        else FNN_VSTORE(c + (v) * FNN_W, cv);                                                 \
    }
    FNN_ROW_STORE(0, c0) FNN_ROW_STORE(1, c1) FNN_ROW_STORE(2, c2) FNN_ROW_STORE(3, c3)
    FNN_ROW_STORE(4, c4) FNN_ROW_STORE(5, c5) FNN_ROW_STORE(6, c6) FNN_ROW_STORE(7, c7)
#undef FNN_ROW_STORE
}

/* Six rows, NV (1 or 2) vectors of columns, the last one partial when MASKED. */
FNN_GEMM_AVX2_INLINE void FNN_P(gemm_six_k)(const int NV, const int MASKED, ptrdiff_t k,
                                            const FNN_T *restrict A, ptrdiff_t lda,
                                            const FNN_T *restrict B, ptrdiff_t ldb,
                                            FNN_T *restrict C, ptrdiff_t ldc, ptrdiff_t ncols)
{
    FNN_V c00 = FNN_VZERO(), c01 = FNN_VZERO(), c10 = FNN_VZERO(), c11 = FNN_VZERO();
    FNN_V c20 = FNN_VZERO(), c21 = FNN_VZERO(), c30 = FNN_VZERO(), c31 = FNN_VZERO();
    FNN_V c40 = FNN_VZERO(), c41 = FNN_VZERO(), c50 = FNN_VZERO(), c51 = FNN_VZERO();
    const __m256i mk = MASKED ? FNN_MASK(ncols - (NV - 1) * FNN_W) : _mm256_setzero_si256();
    const FNN_T *restrict a0 = A, *restrict a1 = A + lda, *restrict a2 = A + 2 * lda;
    const FNN_T *restrict a3 = A + 3 * lda, *restrict a4 = A + 4 * lda;
    const FNN_T *restrict a5 = A + 5 * lda;
    ptrdiff_t p;
    for (p = 0; p < k; p++) {
        const FNN_T *restrict b = B + p * ldb;
        FNN_V b0, b1 = FNN_VZERO(), x;
        if (NV == 1)
            b0 = MASKED ? FNN_VMLOAD(b, mk) : FNN_VLOAD(b);
        else {
            b0 = FNN_VLOAD(b);
            b1 = MASKED ? FNN_VMLOAD(b + FNN_W, mk) : FNN_VLOAD(b + FNN_W);
        }
#define FNN_SIX_ROW(ar, cr0, cr1)                                                             \
        x = FNN_VBCAST(ar + p);                                                               \
        cr0 = FNN_VFMA(x, b0, cr0);                                                           \
        if (NV == 2) cr1 = FNN_VFMA(x, b1, cr1);
        FNN_SIX_ROW(a0, c00, c01) FNN_SIX_ROW(a1, c10, c11) FNN_SIX_ROW(a2, c20, c21)
        FNN_SIX_ROW(a3, c30, c31) FNN_SIX_ROW(a4, c40, c41) FNN_SIX_ROW(a5, c50, c51)
#undef FNN_SIX_ROW
    }
#define FNN_SIX_STORE(r, cr0, cr1)                                                            \
    if (NV == 1) {                                                                            \
        if (MASKED) FNN_VMSTORE(C + (r) * ldc, mk, cr0);                                      \
        else FNN_VSTORE(C + (r) * ldc, cr0);                                                  \
    } else {                                                                                  \
        FNN_VSTORE(C + (r) * ldc, cr0);                                                       \
        if (MASKED) FNN_VMSTORE(C + (r) * ldc + FNN_W, mk, cr1);                              \
        else FNN_VSTORE(C + (r) * ldc + FNN_W, cr1);                                          \
    }
    FNN_SIX_STORE(0, c00, c01) FNN_SIX_STORE(1, c10, c11) FNN_SIX_STORE(2, c20, c21)
    FNN_SIX_STORE(3, c30, c31) FNN_SIX_STORE(4, c40, c41) FNN_SIX_STORE(5, c50, c51)
#undef FNN_SIX_STORE
}

/* One row of C, any width: blocks of 8 vectors, then the rest (its last vector masked). */
FNN_GEMM_AVX2 static void FNN_P(gemm_row_avx2)(ptrdiff_t n, ptrdiff_t k,
                                               const FNN_T *restrict a,
                                               const FNN_T *restrict B, ptrdiff_t ldb,
                                               FNN_T *restrict c)
{
    ptrdiff_t j = 0, rem;
    for (; j + 8 * FNN_W <= n; j += 8 * FNN_W)
        FNN_P(gemm_row_k)(8, 0, k, a, B + j, ldb, c + j, 8 * FNN_W);
    rem = n - j;
    if (rem <= 0)
        return;
#define FNN_ROW_CASE(nv)                                                                      \
    case nv:                                                                                  \
        if (rem % FNN_W) FNN_P(gemm_row_k)(nv, 1, k, a, B + j, ldb, c + j, rem);              \
        else FNN_P(gemm_row_k)(nv, 0, k, a, B + j, ldb, c + j, rem);                          \
        break;
    switch ((rem + FNN_W - 1) / FNN_W) {
    FNN_ROW_CASE(1) FNN_ROW_CASE(2) FNN_ROW_CASE(3) FNN_ROW_CASE(4)
    FNN_ROW_CASE(5) FNN_ROW_CASE(6) FNN_ROW_CASE(7) FNN_ROW_CASE(8)
    }
#undef FNN_ROW_CASE
}

FNN_GEMM_AVX2 static void FNN_P(gemm_avx2)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                           const FNN_T *restrict A, ptrdiff_t lda,
                                           const FNN_T *restrict B, ptrdiff_t ldb,
                                           FNN_T *restrict C, ptrdiff_t ldc)
{
    /* Panels of 2 vectors of columns; in each, groups of 6 rows, then the rows left over one
     * by one.  With many rows, each panel of B is first copied into a contiguous k x 2W
     * block: read straight from a wide B, the panel's rows lie ldb apart, a stride that maps
     * them onto a few sets of the L1 cache, and every group of rows read it again from L2 or
     * beyond (the same copy as BLAS's packing; only where the numbers come from changes, not
     * the order in which they are added). */
    ptrdiff_t i, j, p, m6 = m - m % 6, ncols, ldp;
    FNN_T *packed = NULL;
    const FNN_T *panel;
    if (m6 >= 12 && ldb != 2 * FNN_W && n > 2 * FNN_W)
        packed = (FNN_T *) malloc((size_t) k * 2 * FNN_W * sizeof(FNN_T));
    for (j = 0; j < n && m6 > 0; j += 2 * FNN_W) {
        ncols = n - j < 2 * FNN_W ? n - j : 2 * FNN_W;
        panel = B + j;
        ldp = ldb;
        if (packed != NULL) {
            for (p = 0; p < k; p++)
                memcpy(packed + p * 2 * FNN_W, B + p * ldb + j, (size_t) ncols * sizeof(FNN_T));
            panel = packed;
            ldp = 2 * FNN_W;
        }
        for (i = 0; i < m6; i += 6) {
            const FNN_T *restrict Ai = A + i * lda;
            FNN_T *restrict Ci = C + i * ldc + j;
            if (ncols == 2 * FNN_W)
                FNN_P(gemm_six_k)(2, 0, k, Ai, lda, panel, ldp, Ci, ldc, ncols);
            else if (ncols > FNN_W)
                FNN_P(gemm_six_k)(2, 1, k, Ai, lda, panel, ldp, Ci, ldc, ncols);
            else if (ncols == FNN_W)
                FNN_P(gemm_six_k)(1, 0, k, Ai, lda, panel, ldp, Ci, ldc, ncols);
            else
                FNN_P(gemm_six_k)(1, 1, k, Ai, lda, panel, ldp, Ci, ldc, ncols);
        }
    }
    free(packed);
    for (i = m6; i < m; i++)
        FNN_P(gemm_row_avx2)(n, k, A + i * lda, B, ldb, C + i * ldc);
}

#endif /* FNN_GEMM_X86 */

/* C (m, n) := A (m, k) @ B (k, n), row-major with leading dimensions lda, ldb, ldc; every
 * element summed in the fixed order of fastnn_gemm.h.  C must not overlap A or B. */
static inline void FNN_P(gemm_fixed)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                     const FNN_T *A, ptrdiff_t lda, const FNN_T *B,
                                     ptrdiff_t ldb, FNN_T *C, ptrdiff_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
#if defined(FNN_GEMM_X86)
    if (fnn_gemm_use_avx2()) {
        FNN_P(gemm_avx2)(m, n, k, A, lda, B, ldb, C, ldc);
        return;
    }
#endif
    FNN_P(gemm_plain)(m, n, k, A, lda, B, ldb, C, ldc);
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
#undef FNN_MASK
#endif
