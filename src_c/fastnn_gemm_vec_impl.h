/*
 * fastnn_gemm_vec_impl.h -- the vector kernels of fastnn_gemm.h at one vector width, for one
 * element type: the 6-row and one-row kernels (gemm_six_k, gemm_row_k), their drivers
 * (gemm_x: panels of 2 vectors of columns, groups of 6 rows, the rest one row at a time), the
 * narrow kernel with A transposed (gemm_tnarrow) and the entry points of prediction (gemm),
 * training (gemm_ex) and the fused bias + activation (gemm_bias_act).  Included twice per type
 * by fastnn_gemm_impl.h: with the AVX2 macros (ymm, FNN_VN(name) = FNN_P(name_avx2)), then by
 * fastnn_gemm_avx512.h with the AVX-512 ones (zmm and mask registers, name_avx512).  Besides
 * fastnn_gemm_impl.h's vector macros it uses FNN_VMASK (the type of a lane mask), FNN_NOMASK,
 * FNN_VCMP (the type of a comparison's result), FNN_VINLINE / FNN_VFUNC (the function
 * attributes of the width) and FNN_VN.  The same source at both widths: each element of C
 * gets the same fused multiply-adds in the same order and the same FNN_EPI_STORE, so the
 * two levels give the same bits.  Not meant to be included on its own.
 */

/* One row, NV vectors of columns (NV <= 8): c[0 : ncols] := a[0:k] @ B[0:k, 0:ncols], the
 * row's p-th element at a[p * aks] (aks 1: a row of A; lda: a column, A transposed).
 * MASKED: the last vector is partial (ncols - (NV - 1) W columns).  EPI: see FNN_EPI_STORE. */
FNN_VINLINE void FNN_VN(gemm_row_k)(const int NV, const int MASKED, const int EPI,
                                    ptrdiff_t k, const FNN_T *restrict a,
                                    ptrdiff_t aks,
                                    const FNN_T *restrict B, ptrdiff_t ldb,
                                    FNN_T *restrict c, ptrdiff_t ncols,
                                    FNN_T alpha, FNN_T beta,
                                    const FNN_T *restrict bias)
{
    FNN_V c0 = FNN_VZERO(), c1 = FNN_VZERO(), c2 = FNN_VZERO(), c3 = FNN_VZERO();
    FNN_V c4 = FNN_VZERO(), c5 = FNN_VZERO(), c6 = FNN_VZERO(), c7 = FNN_VZERO();
    const FNN_VMASK mk = MASKED ? FNN_MASK(ncols - (NV - 1) * FNN_W) : FNN_NOMASK;
    ptrdiff_t p;
#define FNN_ROW_LOAD(v) ((MASKED && NV == (v) + 1) ? FNN_VMLOAD(b + (v) * FNN_W, mk)        \
                                                   : FNN_VLOAD(b + (v) * FNN_W))
#define FNN_ROW_FMA(v, cv) if (NV > (v)) cv = FNN_VFMA(x, FNN_ROW_LOAD(v), cv)
#define FNN_ROW_STEP(pp)                                                                      \
    {                                                                                         \
        const FNN_T *restrict b = B + (pp) * ldb;                                             \
        const FNN_V x = FNN_VBCAST(a + (pp) * aks);                                           \
        FNN_ROW_FMA(0, c0); FNN_ROW_FMA(1, c1); FNN_ROW_FMA(2, c2); FNN_ROW_FMA(3, c3);       \
        FNN_ROW_FMA(4, c4); FNN_ROW_FMA(5, c5); FNN_ROW_FMA(6, c6); FNN_ROW_FMA(7, c7);       \
    }
    /* (4 steps of p per trip: the loop's counter, compare and pointer arithmetic once per 4
     * steps; each accumulator still takes its products in the order p = 0, 1, ...) */
    for (p = 0; p + 4 <= k; p += 4) {
        FNN_ROW_STEP(p) FNN_ROW_STEP(p + 1) FNN_ROW_STEP(p + 2) FNN_ROW_STEP(p + 3)
    }
    for (; p < k; p++)
        FNN_ROW_STEP(p)
#undef FNN_ROW_STEP
#undef FNN_ROW_FMA
#undef FNN_ROW_LOAD
#define FNN_ROW_STORE(v, cv)                                                                  \
    if (NV > (v))                                                                             \
        FNN_EPI_STORE(EPI, MASKED && NV == (v) + 1, c + (v) * FNN_W, (v) * FNN_W, mk, cv);
    FNN_ROW_STORE(0, c0) FNN_ROW_STORE(1, c1) FNN_ROW_STORE(2, c2) FNN_ROW_STORE(3, c3)
    FNN_ROW_STORE(4, c4) FNN_ROW_STORE(5, c5) FNN_ROW_STORE(6, c6) FNN_ROW_STORE(7, c7)
#undef FNN_ROW_STORE
}

/* FNN_MR rows (6 with ymm: 12 accumulators of 16 registers; 8 with zmm: 16 of 32), NV (1 or
 * 2) vectors of columns, the last one partial when MASKED; row r's p-th element of A at
 * A[r * lda + p * aks]. */
FNN_VINLINE void FNN_VN(gemm_six_k)(const int NV, const int MASKED, const int EPI,
                                    ptrdiff_t k,
                                    const FNN_T *restrict A, ptrdiff_t lda,
                                    ptrdiff_t aks,
                                    const FNN_T *restrict B, ptrdiff_t ldb,
                                    FNN_T *restrict C, ptrdiff_t ldc, ptrdiff_t ncols,
                                    FNN_T alpha, FNN_T beta,
                                    const FNN_T *restrict bias)
{
    FNN_V c00 = FNN_VZERO(), c01 = FNN_VZERO(), c10 = FNN_VZERO(), c11 = FNN_VZERO();
    FNN_V c20 = FNN_VZERO(), c21 = FNN_VZERO(), c30 = FNN_VZERO(), c31 = FNN_VZERO();
    FNN_V c40 = FNN_VZERO(), c41 = FNN_VZERO(), c50 = FNN_VZERO(), c51 = FNN_VZERO();
    FNN_V c60 = FNN_VZERO(), c61 = FNN_VZERO(), c70 = FNN_VZERO(), c71 = FNN_VZERO();
    const FNN_VMASK mk = MASKED ? FNN_MASK(ncols - (NV - 1) * FNN_W) : FNN_NOMASK;
    const FNN_T *restrict a0 = A, *restrict a1 = A + lda, *restrict a2 = A + 2 * lda;
    const FNN_T *restrict a3 = A + 3 * lda, *restrict a4 = A + 4 * lda;
    const FNN_T *restrict a5 = A + 5 * lda;
    const FNN_T *restrict a6 = FNN_MR > 6 ? A + 6 * lda : A;
    const FNN_T *restrict a7 = FNN_MR > 6 ? A + 7 * lda : A;
    ptrdiff_t p;
#define FNN_SIX_ROW(ar, pp, cr0, cr1)                                                         \
        x = FNN_VBCAST(ar + (pp) * aks);                                                      \
        cr0 = FNN_VFMA(x, b0, cr0);                                                           \
        if (NV == 2) cr1 = FNN_VFMA(x, b1, cr1);
#define FNN_SIX_STEP(pp)                                                                      \
    {                                                                                         \
        const FNN_T *restrict b = B + (pp) * ldb;                                             \
        FNN_V b0, b1 = FNN_VZERO(), x;                                                        \
        if (NV == 1)                                                                          \
            b0 = MASKED ? FNN_VMLOAD(b, mk) : FNN_VLOAD(b);                                   \
        else {                                                                                \
            b0 = FNN_VLOAD(b);                                                                \
            b1 = MASKED ? FNN_VMLOAD(b + FNN_W, mk) : FNN_VLOAD(b + FNN_W);                   \
        }                                                                                     \
        FNN_SIX_ROW(a0, pp, c00, c01) FNN_SIX_ROW(a1, pp, c10, c11)                           \
        FNN_SIX_ROW(a2, pp, c20, c21) FNN_SIX_ROW(a3, pp, c30, c31)                           \
        FNN_SIX_ROW(a4, pp, c40, c41) FNN_SIX_ROW(a5, pp, c50, c51)                           \
        if (FNN_MR > 6) {                                                                     \
            FNN_SIX_ROW(a6, pp, c60, c61) FNN_SIX_ROW(a7, pp, c70, c71)                       \
        }                                                                                     \
    }
    /* (4 steps of p per trip, as in gemm_row_k) */
    for (p = 0; p + 4 <= k; p += 4) {
        FNN_SIX_STEP(p) FNN_SIX_STEP(p + 1) FNN_SIX_STEP(p + 2) FNN_SIX_STEP(p + 3)
    }
    for (; p < k; p++)
        FNN_SIX_STEP(p)
#undef FNN_SIX_STEP
#undef FNN_SIX_ROW
#define FNN_SIX_STORE(r, cr0, cr1)                                                            \
    if (NV == 1) {                                                                            \
        FNN_EPI_STORE(EPI, MASKED, C + (r) * ldc, 0, mk, cr0);                                \
    } else {                                                                                  \
        FNN_EPI_STORE(EPI, 0, C + (r) * ldc, 0, mk, cr0);                                     \
        FNN_EPI_STORE(EPI, MASKED, C + (r) * ldc + FNN_W, FNN_W, mk, cr1);                    \
    }
    FNN_SIX_STORE(0, c00, c01) FNN_SIX_STORE(1, c10, c11) FNN_SIX_STORE(2, c20, c21)
    FNN_SIX_STORE(3, c30, c31) FNN_SIX_STORE(4, c40, c41) FNN_SIX_STORE(5, c50, c51)
    if (FNN_MR > 6) {
        FNN_SIX_STORE(6, c60, c61) FNN_SIX_STORE(7, c70, c71)
    }
#undef FNN_SIX_STORE
}

/* One row of C, any width: blocks of 8 vectors, then the rest (its last vector masked). */
FNN_VINLINE void FNN_VN(gemm_row_x)(const int EPI, ptrdiff_t n, ptrdiff_t k,
                                    const FNN_T *restrict a, ptrdiff_t aks,
                                    const FNN_T *restrict B, ptrdiff_t ldb,
                                    FNN_T *restrict c, FNN_T alpha, FNN_T beta,
                                    const FNN_T *restrict bias)
{
    ptrdiff_t j = 0, rem;
    for (; j + 8 * FNN_W <= n; j += 8 * FNN_W)
        FNN_VN(gemm_row_k)(8, 0, EPI, k, a, aks, B + j, ldb, c + j, 8 * FNN_W, alpha, beta,
                          bias + j);
    rem = n - j;
    if (rem <= 0)
        return;
#define FNN_ROW_CASE(nv)                                                                      \
    case nv:                                                                                  \
        if (rem % FNN_W)                                                                      \
            FNN_VN(gemm_row_k)(nv, 1, EPI, k, a, aks, B + j, ldb, c + j, rem, alpha, beta,     \
                              bias + j);                                                      \
        else                                                                                  \
            FNN_VN(gemm_row_k)(nv, 0, EPI, k, a, aks, B + j, ldb, c + j, rem, alpha, beta,     \
                              bias + j);                                                      \
        break;
    switch ((rem + FNN_W - 1) / FNN_W) {
    FNN_ROW_CASE(1) FNN_ROW_CASE(2) FNN_ROW_CASE(3) FNN_ROW_CASE(4)
    FNN_ROW_CASE(5) FNN_ROW_CASE(6) FNN_ROW_CASE(7) FNN_ROW_CASE(8)
    }
#undef FNN_ROW_CASE
}

/* C := A B (EPI 0), alpha A B + beta C (EPI 1) or act(A B + b) (EPI 2-4, b at bias); row
 * i's p-th element of A at A[i * ars + p * aks]. */
FNN_VINLINE void FNN_VN(gemm_x)(const int EPI, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                const FNN_T *restrict A, ptrdiff_t ars, ptrdiff_t aks,
                                const FNN_T *restrict B, ptrdiff_t ldb,
                                FNN_T *restrict C, ptrdiff_t ldc,
                                FNN_T alpha, FNN_T beta, const FNN_T *restrict bias)
{
    /* Panels of 2 vectors of columns; in each, groups of FNN_MR rows, then the rest one
     * by one.  With many rows, each panel of B is first copied into a contiguous k x 2W
     * block: read straight from a wide B, the panel's rows lie ldb apart, a stride that maps
     * them onto a few sets of the L1 cache, and every group of rows read it again from L2 or
     * beyond (the same copy as BLAS's packing; only where the numbers come from changes, not
     * the order in which they are added).  A B of at most FNN_GEMM_PACK_MIN_BYTES is read in
     * place: its rows lie in one contiguous stretch that fits the L1 cache without conflicts,
     * and the copy would cost more than it saves. */
    /* (a small panel in the thread's scratch memory: no allocation per call; full panels
     * copied with vector loads and stores rather than a memcpy call per row) */
    ptrdiff_t i, j, p, m6 = m - m % FNN_MR, ncols, ldp;
    FNN_T *packed = NULL, *heap = NULL;
    const FNN_T *panel;
    if (m6 >= 12 && ldb != 2 * FNN_W && n > 2 * FNN_W
        && (size_t) k * (size_t) ldb * sizeof(FNN_T) > FNN_GEMM_PACK_MIN_BYTES) {
        packed = k * 2 * FNN_W <= FNN_GEMM_PACK_STACK_ELEMS
                 ? (FNN_T *) fnn_gemm_scratch(FNN_SCRATCH_PANEL) : NULL;
        if (packed == NULL)
            packed = heap = (FNN_T *) malloc((size_t) k * 2 * FNN_W * sizeof(FNN_T));
    }
    for (j = 0; j < n && m6 > 0; j += 2 * FNN_W) {
        ncols = n - j < 2 * FNN_W ? n - j : 2 * FNN_W;
        panel = B + j;
        ldp = ldb;
        if (packed != NULL) {
            if (ncols == 2 * FNN_W)
                for (p = 0; p < k; p++) {
                    const FNN_T *restrict src = B + p * ldb + j;
                    FNN_VSTORE(packed + p * 2 * FNN_W, FNN_VLOAD(src));
                    FNN_VSTORE(packed + p * 2 * FNN_W + FNN_W, FNN_VLOAD(src + FNN_W));
                }
            else
                for (p = 0; p < k; p++)
                    memcpy(packed + p * 2 * FNN_W, B + p * ldb + j,
                           (size_t) ncols * sizeof(FNN_T));
            panel = packed;
            ldp = 2 * FNN_W;
        }
        for (i = 0; i < m6; i += FNN_MR) {
            const FNN_T *restrict Ai = A + i * ars;
            FNN_T *restrict Ci = C + i * ldc + j;
#define FNN_SIX(nv, msk) \
    FNN_VN(gemm_six_k)(nv, msk, EPI, k, Ai, ars, aks, panel, ldp, Ci, ldc, ncols, alpha, beta, \
                      bias + j)
            if (ncols == 2 * FNN_W)
                FNN_SIX(2, 0);
            else if (ncols > FNN_W)
                FNN_SIX(2, 1);
            else if (ncols == FNN_W)
                FNN_SIX(1, 0);
            else
                FNN_SIX(1, 1);
#undef FNN_SIX
        }
    }
    free(heap);
    for (i = m6; i < m; i++)
        FNN_VN(gemm_row_x)(EPI, n, k, A + i * ars, aks, B, ldb, C + i * ldc, alpha, beta,
                          bias);
}

/* A narrow C (NC = 1 .. FNN_NARROW_MAX columns) of a product whose A is read transposed
 * (row i's p-th element at A[i + p * aks], as in the weight gradient X^T D of a layer with
 * few outputs): one vector of FNN_W rows of C, lane r = row r.  The p-th elements of the
 * group's rows are contiguous (one load), so every lane works, where the column-vectorized
 * kernel would fill NC of FNN_W lanes.  Each lane adds its row's products in the order
 * p = 0 .. K-1 into one accumulator, one fused multiply-add each, then the same store
 * (FNN_EPI_STORE): the bits of the general kernel. */
FNN_VINLINE void FNN_VN(gemm_tnarrow_k)(const int NC, const int EPI, ptrdiff_t k,
                                        const FNN_T *restrict A, ptrdiff_t aks,
                                        const FNN_T *restrict B, ptrdiff_t ldb,
                                        FNN_T *restrict C, ptrdiff_t ldc,
                                        FNN_T alpha, FNN_T beta)
{
    FNN_V c0 = FNN_VZERO(), c1 = FNN_VZERO(), c2 = FNN_VZERO(), c3 = FNN_VZERO();
    const FNN_VMASK mk = FNN_NOMASK;
    const FNN_T *bias = NULL;       /* (EPI 0 or 1 only) */
    FNN_T tmp[FNN_W];
    ptrdiff_t p;
    int r;
#define FNN_TNARROW_STEP(pp)                                                                  \
    {                                                                                         \
        const FNN_V x = FNN_VLOAD(A + (pp) * aks);                                            \
        const FNN_T *restrict b = B + (pp) * ldb;                                             \
        c0 = FNN_VFMA(x, FNN_VBCAST(b), c0);                                                  \
        if (NC > 1) c1 = FNN_VFMA(x, FNN_VBCAST(b + 1), c1);                                  \
        if (NC > 2) c2 = FNN_VFMA(x, FNN_VBCAST(b + 2), c2);                                  \
        if (NC > 3) c3 = FNN_VFMA(x, FNN_VBCAST(b + 3), c3);                                  \
    }
    for (p = 0; p + 4 <= k; p += 4) {       /* (4 steps of p per trip, as in gemm_row_k) */
        FNN_TNARROW_STEP(p) FNN_TNARROW_STEP(p + 1) FNN_TNARROW_STEP(p + 2)
        FNN_TNARROW_STEP(p + 3)
    }
    for (; p < k; p++)
        FNN_TNARROW_STEP(p)
#undef FNN_TNARROW_STEP
#define FNN_TNARROW_STORE(cc, cv)                                                             \
    if (NC > (cc)) {                                                                          \
        if (EPI && beta != 0)                                                                 \
            for (r = 0; r < FNN_W; r++) tmp[r] = C[r * ldc + (cc)];                           \
        FNN_EPI_STORE(EPI, 0, tmp, 0, mk, cv);                                                   \
        for (r = 0; r < FNN_W; r++) C[r * ldc + (cc)] = tmp[r];                               \
    }
    FNN_TNARROW_STORE(0, c0) FNN_TNARROW_STORE(1, c1) FNN_TNARROW_STORE(2, c2)
    FNN_TNARROW_STORE(3, c3)
#undef FNN_TNARROW_STORE
}

/* Rows 0 .. FNN_W floor(m / FNN_W) - 1 of a narrow product with A transposed (n <=
 * FNN_NARROW_MAX); returns how many rows it computed (the caller computes the rest). */
FNN_VINLINE ptrdiff_t FNN_VN(gemm_tnarrow)(const int EPI, ptrdiff_t m, ptrdiff_t n,
                                           ptrdiff_t k, const FNN_T *restrict A,
                                           ptrdiff_t aks,
                                           const FNN_T *restrict B, ptrdiff_t ldb,
                                           FNN_T *restrict C, ptrdiff_t ldc,
                                           FNN_T alpha, FNN_T beta)
{
    ptrdiff_t i;
    for (i = 0; i + FNN_W <= m; i += FNN_W) {
#define FNN_TNARROW_CASE(nc)                                                                  \
        case nc:                                                                              \
            FNN_VN(gemm_tnarrow_k)(nc, EPI, k, A + i, aks, B, ldb, C + i * ldc, ldc, alpha,    \
                                  beta);                                                      \
            break;
        switch (n) {
        FNN_TNARROW_CASE(1) FNN_TNARROW_CASE(2) FNN_TNARROW_CASE(3) FNN_TNARROW_CASE(4)
        }
#undef FNN_TNARROW_CASE
    }
    return i;
}

#if defined(FNN_TWIDE_MAX)
/* float: FNN_W rows (one group: lane r of acc[c] is row r, column c) of a C of NC = 8 ..
 * FNN_TWIDE_MAX columns, the kernel described above fnn_s_twide_copy (fastnn_gemm_impl.h);
 * ATR: A read transposed (row r's p-th element at A[r + p * lda]), else A's rows at lda. */
FNN_VINLINE void FNN_VN(gemm_twide_k)(const int NC, const int ATR, const int EPI, ptrdiff_t k,
                                      const float *restrict A, ptrdiff_t lda,
                                      const float *restrict B, ptrdiff_t ldb,
                                      float *restrict C, ptrdiff_t ldc, float alpha,
                                      float beta, const float *restrict bias)
{
    FNN_V acc[FNN_TWIDE_MAX];
    __m256 acc8[FNN_TWIDE_MAX];
    int c, h;
    for (c = 0; c < NC; c++)
        acc[c] = FNN_VZERO();
#define FNN_TWIDE_FMA(x, b, c)                                                                \
    if (NC > (c)) acc[c] = FNN_VFMA((x), FNN_VBCAST((b) + (c)), acc[c]);
#define FNN_TWIDE_STEP(x, b)                                                                  \
    {                                                                                         \
        const float *restrict b_ = (b);                                                       \
        FNN_TWIDE_FMA(x, b_, 0) FNN_TWIDE_FMA(x, b_, 1) FNN_TWIDE_FMA(x, b_, 2)              \
        FNN_TWIDE_FMA(x, b_, 3) FNN_TWIDE_FMA(x, b_, 4) FNN_TWIDE_FMA(x, b_, 5)              \
        FNN_TWIDE_FMA(x, b_, 6) FNN_TWIDE_FMA(x, b_, 7) FNN_TWIDE_FMA(x, b_, 8)              \
        FNN_TWIDE_FMA(x, b_, 9) FNN_TWIDE_FMA(x, b_, 10) FNN_TWIDE_FMA(x, b_, 11)            \
    }
#define FNN_TWIDE_RUN(X, XS, BB, K)                                                           \
    {                                                                                         \
        ptrdiff_t p_;                                                                         \
        for (p_ = 0; p_ + 2 <= (K); p_ += 2) {                                                \
            FNN_TWIDE_STEP(FNN_VLOAD((X) + p_ * (XS)), (BB) + p_ * ldb)                       \
            FNN_TWIDE_STEP(FNN_VLOAD((X) + (p_ + 1) * (XS)), (BB) + (p_ + 1) * ldb)           \
        }                                                                                     \
        if (p_ < (K))                                                                         \
            FNN_TWIDE_STEP(FNN_VLOAD((X) + p_ * (XS)), (BB) + p_ * ldb)                       \
    }
    if (ATR)
        FNN_TWIDE_RUN(A, lda, B, k)
    else {
        /* (A's rows transposed into `at` a chunk of p at a time, 8 rows at a time, then read
         * as if A were transposed: the transposed columns in registers beside the
         * accumulators would not fit in the 16 ymm registers; `at` is the thread's scratch
         * memory, or a small chunk on the stack without it: the accumulators run on across
         * chunks, so their length changes no sum) */
        float at_small[FNN_TWIDE_SMALL * FNN_W];
        float *at = (float *) fnn_gemm_scratch(FNN_SCRATCH_TWIDE);
        const ptrdiff_t chunk = at != NULL ? FNN_TWIDE_CHUNK : FNN_TWIDE_SMALL;
        ptrdiff_t q0, kc;
        if (at == NULL)
            at = at_small;
        for (q0 = 0; q0 < k; q0 += chunk) {
            kc = k - q0 < chunk ? k - q0 : chunk;
            for (h = 0; h < FNN_W; h += 8)
                fnn_s_twide_copy(kc, A + h * lda + q0, lda, at + h, FNN_W);
            FNN_TWIDE_RUN(at, FNN_W, B + q0 * ldb, kc)
        }
    }
#undef FNN_TWIDE_RUN
#undef FNN_TWIDE_STEP
#undef FNN_TWIDE_FMA
    for (h = 0; h < FNN_W; h += 8) {
        for (c = 0; c < NC; c++)
            acc8[c] = FNN_VHALF(acc[c], h / 8);
        fnn_s_twide_store(NC, EPI, acc8, C + h * ldc, ldc, alpha, beta, bias);
    }
}

/* Rows 0 .. FNN_W floor(m / FNN_W) - 1 of a C of 8 .. FNN_TWIDE_MAX columns; returns how many
 * rows it computed (the caller computes the rest).  ATR, EPI: as gemm_twide_k.  (Not inlined:
 * inside gemm_ex its code made the compiler spill the 6-row kernel's accumulators.) */
__attribute__((noinline)) FNN_VFUNC static ptrdiff_t
FNN_VN(gemm_twide)(const int ATR, const int EPI, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                   const float *restrict A, ptrdiff_t lda, const float *restrict B,
                   ptrdiff_t ldb, float *restrict C, ptrdiff_t ldc, float alpha, float beta,
                   const float *restrict bias)
{
    ptrdiff_t i;
    for (i = 0; i + FNN_W <= m; i += FNN_W) {
        const float *restrict Ai = ATR ? A + i : A + i * lda;
#define FNN_TWIDE_CASE(nc)                                                                    \
        case nc:                                                                              \
            FNN_VN(gemm_twide_k)(nc, ATR, EPI, k, Ai, lda, B, ldb, C + i * ldc, ldc, alpha,   \
                                 beta, bias);                                                 \
            break;
        switch (n) {
        FNN_TWIDE_CASE(8) FNN_TWIDE_CASE(9) FNN_TWIDE_CASE(10) FNN_TWIDE_CASE(11)
        FNN_TWIDE_CASE(12)
        }
#undef FNN_TWIDE_CASE
    }
    return i;
}
#endif

FNN_VFUNC static void FNN_VN(gemm)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                   const FNN_T *restrict A, ptrdiff_t lda,
                                   const FNN_T *restrict B, ptrdiff_t ldb,
                                   FNN_T *restrict C, ptrdiff_t ldc)
{
#if defined(FNN_NARROW_ROWS)
    if (n <= FNN_NARROW_MAX && m >= 8) {
        ptrdiff_t done = FNN_NARROW_ROWS(m, n, k, A, lda, B, ldb, C, ldc);
        A += done * lda;
        C += done * ldc;
        m -= done;
    }
#endif
    FNN_VN(gemm_x)(0, m, n, k, A, lda, 1, B, ldb, C, ldc, 1, 0, NULL);
}

/* Training's general form, A possibly transposed (aks = lda, ars = 1).  A narrow C (n <=
 * FNN_NARROW_MAX) takes a row-vectorized kernel: X W (float) the prediction's narrow kernel,
 * X^T D gemm_tnarrow; both give the general kernel's bits.  So does a float C of 8 to
 * FNN_TWIDE_MAX columns (gemm_twide). */
FNN_VFUNC static void FNN_VN(gemm_ex)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                      const FNN_T *restrict A, ptrdiff_t ars,
                                      ptrdiff_t aks,
                                      const FNN_T *restrict B, ptrdiff_t ldb,
                                      FNN_T *restrict C, ptrdiff_t ldc,
                                      FNN_T alpha, FNN_T beta)
{
    const int plain = alpha == 1 && beta == 0;
    if (n <= FNN_NARROW_MAX && m >= (FNN_W < 8 ? FNN_W : 8)) {
        ptrdiff_t done = 0;
        if (ars == 1)       /* (A transposed; or k == 1, where both readings are one) */
            done = plain ? FNN_VN(gemm_tnarrow)(0, m, n, k, A, aks, B, ldb, C, ldc, 1, 0)
                         : FNN_VN(gemm_tnarrow)(1, m, n, k, A, aks, B, ldb, C, ldc, alpha,
                                               beta);
#if defined(FNN_NARROW_ROWS)
        else if (aks == 1 && plain && m >= 8)
            done = FNN_NARROW_ROWS(m, n, k, A, ars, B, ldb, C, ldc);
#endif
        A += done * ars;
        C += done * ldc;
        m -= done;
    }
#if defined(FNN_TWIDE_MAX)
    else if (n >= 8 && n <= FNN_TWIDE_MAX && m >= 8 && (ars == 1 || aks == 1)) {
        ptrdiff_t done;
        if (ars == 1)
            done = plain ? FNN_VN(gemm_twide)(1, 0, m, n, k, A, aks, B, ldb, C, ldc, 1, 0, NULL)
                         : FNN_VN(gemm_twide)(1, 1, m, n, k, A, aks, B, ldb, C, ldc, alpha, beta,
                                            NULL);
        else
            done = plain ? FNN_VN(gemm_twide)(0, 0, m, n, k, A, ars, B, ldb, C, ldc, 1, 0, NULL)
                         : FNN_VN(gemm_twide)(0, 1, m, n, k, A, ars, B, ldb, C, ldc, alpha, beta,
                                            NULL);
        A += done * ars;
        C += done * ldc;
        m -= done;
    }
#endif
    /* (the stride of a row of A or of its elements a constant 1 where it is: the kernels'
     * addresses of the next steps of p, or of the next rows, then fold into the loads) */
#define FNN_EX_CALL(ARS, AKS)                                                                 \
    if (plain)                                                                                \
        FNN_VN(gemm_x)(0, m, n, k, A, ARS, AKS, B, ldb, C, ldc, 1, 0, NULL);                   \
    else                                                                                      \
        FNN_VN(gemm_x)(1, m, n, k, A, ARS, AKS, B, ldb, C, ldc, alpha, beta, NULL);
    if (aks == 1) {
        FNN_EX_CALL(ars, 1)
    } else if (ars == 1) {
        FNN_EX_CALL(1, aks)
    } else {
        FNN_EX_CALL(ars, aks)
    }
#undef FNN_EX_CALL
}

/* gemm_fixed_bias_act's vector form: act 0, 1, 2 -> the stores FNN_EPI_BIAS, _RELU, _LEAKY */
FNN_VFUNC static void FNN_VN(gemm_bias_act)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                            const FNN_T *restrict A, ptrdiff_t lda,
                                            const FNN_T *restrict B, ptrdiff_t ldb,
                                            FNN_T *restrict C, ptrdiff_t ldc,
                                            const FNN_T *restrict bias, int act,
                                            FNN_T slope)
{
#if defined(FNN_TWIDE_MAX)
    if (n >= 8 && n <= FNN_TWIDE_MAX && m >= 8) {
        ptrdiff_t done =
            act == 1 ? FNN_VN(gemm_twide)(0, FNN_EPI_BIAS_RELU, m, n, k, A, lda, B, ldb, C, ldc,
                                        slope, 0, bias)
            : act == 2 ? FNN_VN(gemm_twide)(0, FNN_EPI_BIAS_LEAKY, m, n, k, A, lda, B, ldb, C,
                                          ldc, slope, 0, bias)
            : FNN_VN(gemm_twide)(0, FNN_EPI_BIAS, m, n, k, A, lda, B, ldb, C, ldc, slope, 0,
                               bias);
        A += done * lda;
        C += done * ldc;
        m -= done;
    }
#endif
    if (act == 1)
        FNN_VN(gemm_x)(FNN_EPI_BIAS_RELU, m, n, k, A, lda, 1, B, ldb, C, ldc, slope, 0, bias);
    else if (act == 2)
        FNN_VN(gemm_x)(FNN_EPI_BIAS_LEAKY, m, n, k, A, lda, 1, B, ldb, C, ldc, slope, 0, bias);
    else
        FNN_VN(gemm_x)(FNN_EPI_BIAS, m, n, k, A, lda, 1, B, ldb, C, ldc, slope, 0, bias);
}

