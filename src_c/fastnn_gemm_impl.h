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

/* The store of an accumulator v to C (masked: the first lanes of mk).  EPI 0: C := v;
 * EPI 1 (training's general form): C := alpha v + beta C, C not read when beta == 0 (it may
 * be uninitialized workspace, as with BLAS), one rounding for alpha v + (beta C);
 * EPI 2, 3, 4 (a forward layer): z := v + b (b the bias of these columns, at bias + col),
 * then C := z (identity), z < 0 ? 0 : z (ReLU) or z < 0 ? alpha z : z (leaky ReLU, slope
 * alpha): the operations of fastnn_kernels.h's bias_act on the same values, hence its bits
 * (a NaN stays NaN, -0 stays -0). */
#define FNN_EPI_BIAS 2
#define FNN_EPI_BIAS_RELU 3
#define FNN_EPI_BIAS_LEAKY 4
#define FNN_EPI_STORE(EPI, M, ptr, col, mk, v)                                                \
    do {                                                                                      \
        FNN_V out_ = (v);                                                                     \
        if (EPI >= FNN_EPI_BIAS) {                                                            \
            const FNN_V z_ = FNN_VADD(out_, (M) ? FNN_VMLOAD(bias + (col), (mk))              \
                                                : FNN_VLOAD(bias + (col)));                   \
            const FNN_V neg_ = FNN_VLT0(z_);                                                  \
            if (EPI == FNN_EPI_BIAS) out_ = z_;                                               \
            else if (EPI == FNN_EPI_BIAS_RELU) out_ = FNN_VBLEND(z_, FNN_VZERO(), neg_);      \
            else out_ = FNN_VBLEND(z_, FNN_VMUL(FNN_VBCAST(&alpha), z_), neg_);               \
        } else if (EPI) {                                                                     \
            const FNN_V al_ = FNN_VBCAST(&alpha);                                             \
            if (beta == 0) out_ = FNN_VMUL(al_, out_);                                        \
            else {                                                                            \
                const FNN_V be_ = FNN_VBCAST(&beta);                                          \
                const FNN_V old_ = (M) ? FNN_VMLOAD((ptr), (mk)) : FNN_VLOAD(ptr);            \
                out_ = FNN_VFMA(al_, out_, FNN_VMUL(be_, old_));                              \
            }                                                                                 \
        }                                                                                     \
        if (M) FNN_VMSTORE((ptr), (mk), out_);                                                \
        else FNN_VSTORE((ptr), out_);                                                         \
    } while (0)

/* One row, NV vectors of columns (NV <= 8): c[0 : ncols] := a[0:k] @ B[0:k, 0:ncols], the
 * row's p-th element at a[p * aks] (aks 1: a row of A; lda: a column, A transposed).
 * MASKED: the last vector is partial (ncols - (NV - 1) W columns).  EPI: see FNN_EPI_STORE. */
FNN_GEMM_AVX2_INLINE void FNN_P(gemm_row_k)(const int NV, const int MASKED, const int EPI,
                                            ptrdiff_t k, const FNN_T *restrict a,
                                            ptrdiff_t aks,
                                            const FNN_T *restrict B, ptrdiff_t ldb,
                                            FNN_T *restrict c, ptrdiff_t ncols,
                                            FNN_T alpha, FNN_T beta,
                                            const FNN_T *restrict bias)
{
    FNN_V c0 = FNN_VZERO(), c1 = FNN_VZERO(), c2 = FNN_VZERO(), c3 = FNN_VZERO();
    FNN_V c4 = FNN_VZERO(), c5 = FNN_VZERO(), c6 = FNN_VZERO(), c7 = FNN_VZERO();
    const __m256i mk = MASKED ? FNN_MASK(ncols - (NV - 1) * FNN_W) : _mm256_setzero_si256();
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

/* Six rows, NV (1 or 2) vectors of columns, the last one partial when MASKED; row r's p-th
 * element of A at A[r * lda + p * aks]. */
FNN_GEMM_AVX2_INLINE void FNN_P(gemm_six_k)(const int NV, const int MASKED, const int EPI,
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
    const __m256i mk = MASKED ? FNN_MASK(ncols - (NV - 1) * FNN_W) : _mm256_setzero_si256();
    const FNN_T *restrict a0 = A, *restrict a1 = A + lda, *restrict a2 = A + 2 * lda;
    const FNN_T *restrict a3 = A + 3 * lda, *restrict a4 = A + 4 * lda;
    const FNN_T *restrict a5 = A + 5 * lda;
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
#undef FNN_SIX_STORE
}

/* One row of C, any width: blocks of 8 vectors, then the rest (its last vector masked). */
FNN_GEMM_AVX2_INLINE void FNN_P(gemm_row_x)(const int EPI, ptrdiff_t n, ptrdiff_t k,
                                            const FNN_T *restrict a, ptrdiff_t aks,
                                            const FNN_T *restrict B, ptrdiff_t ldb,
                                            FNN_T *restrict c, FNN_T alpha, FNN_T beta,
                                            const FNN_T *restrict bias)
{
    ptrdiff_t j = 0, rem;
    for (; j + 8 * FNN_W <= n; j += 8 * FNN_W)
        FNN_P(gemm_row_k)(8, 0, EPI, k, a, aks, B + j, ldb, c + j, 8 * FNN_W, alpha, beta,
                          bias + j);
    rem = n - j;
    if (rem <= 0)
        return;
#define FNN_ROW_CASE(nv)                                                                      \
    case nv:                                                                                  \
        if (rem % FNN_W)                                                                      \
            FNN_P(gemm_row_k)(nv, 1, EPI, k, a, aks, B + j, ldb, c + j, rem, alpha, beta,     \
                              bias + j);                                                      \
        else                                                                                  \
            FNN_P(gemm_row_k)(nv, 0, EPI, k, a, aks, B + j, ldb, c + j, rem, alpha, beta,     \
                              bias + j);                                                      \
        break;
    switch ((rem + FNN_W - 1) / FNN_W) {
    FNN_ROW_CASE(1) FNN_ROW_CASE(2) FNN_ROW_CASE(3) FNN_ROW_CASE(4)
    FNN_ROW_CASE(5) FNN_ROW_CASE(6) FNN_ROW_CASE(7) FNN_ROW_CASE(8)
    }
#undef FNN_ROW_CASE
}

FNN_GEMM_AVX2 static void FNN_P(gemm_row_avx2)(ptrdiff_t n, ptrdiff_t k,
                                               const FNN_T *restrict a,
                                               const FNN_T *restrict B, ptrdiff_t ldb,
                                               FNN_T *restrict c)
{
    FNN_P(gemm_row_x)(0, n, k, a, 1, B, ldb, c, 1, 0, NULL);
}

/* C := A B (EPI 0), alpha A B + beta C (EPI 1) or act(A B + b) (EPI 2-4, b at bias); row
 * i's p-th element of A at A[i * ars + p * aks]. */
FNN_GEMM_AVX2_INLINE void FNN_P(gemm_x)(const int EPI, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                        const FNN_T *restrict A, ptrdiff_t ars, ptrdiff_t aks,
                                        const FNN_T *restrict B, ptrdiff_t ldb,
                                        FNN_T *restrict C, ptrdiff_t ldc,
                                        FNN_T alpha, FNN_T beta, const FNN_T *restrict bias)
{
    /* Panels of 2 vectors of columns; in each, groups of 6 rows, then the rows left over one
     * by one.  With many rows, each panel of B is first copied into a contiguous k x 2W
     * block: read straight from a wide B, the panel's rows lie ldb apart, a stride that maps
     * them onto a few sets of the L1 cache, and every group of rows read it again from L2 or
     * beyond (the same copy as BLAS's packing; only where the numbers come from changes, not
     * the order in which they are added).  A B of at most FNN_GEMM_PACK_MIN_BYTES is read in
     * place: its rows lie in one contiguous stretch that fits the L1 cache without conflicts,
     * and the copy would cost more than it saves. */
    /* (a small panel on the stack: no allocation per call; full panels copied with vector
     * loads and stores rather than a memcpy call per row) */
    FNN_T stack_p[FNN_GEMM_PACK_STACK_ELEMS];
    ptrdiff_t i, j, p, m6 = m - m % 6, ncols, ldp;
    FNN_T *packed = NULL, *heap = NULL;
    const FNN_T *panel;
    if (m6 >= 12 && ldb != 2 * FNN_W && n > 2 * FNN_W
        && (size_t) k * (size_t) ldb * sizeof(FNN_T) > FNN_GEMM_PACK_MIN_BYTES)
        packed = k * 2 * FNN_W <= FNN_GEMM_PACK_STACK_ELEMS ? stack_p
                 : (heap = (FNN_T *) malloc((size_t) k * 2 * FNN_W * sizeof(FNN_T)));
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
        for (i = 0; i < m6; i += 6) {
            const FNN_T *restrict Ai = A + i * ars;
            FNN_T *restrict Ci = C + i * ldc + j;
#define FNN_SIX(nv, msk) \
    FNN_P(gemm_six_k)(nv, msk, EPI, k, Ai, ars, aks, panel, ldp, Ci, ldc, ncols, alpha, beta, \
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
        FNN_P(gemm_row_x)(EPI, n, k, A + i * ars, aks, B, ldb, C + i * ldc, alpha, beta,
                          bias);
}

FNN_GEMM_AVX2 static void FNN_P(gemm_avx2)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
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
    FNN_P(gemm_x)(0, m, n, k, A, lda, 1, B, ldb, C, ldc, 1, 0, NULL);
}

/* A narrow C (NC = 1 .. FNN_NARROW_MAX columns) of a product whose A is read transposed
 * (row i's p-th element at A[i + p * aks], as in the weight gradient X^T D of a layer with
 * few outputs): one vector of FNN_W rows of C, lane r = row r.  The p-th elements of the
 * group's rows are contiguous (one load), so every lane works, where the column-vectorized
 * kernel would fill NC of FNN_W lanes.  Each lane adds its row's products in the order
 * p = 0 .. K-1 into one accumulator, one fused multiply-add each, then the same store
 * (FNN_EPI_STORE): the bits of the general kernel. */
FNN_GEMM_AVX2_INLINE void FNN_P(gemm_tnarrow_k)(const int NC, const int EPI, ptrdiff_t k,
                                                const FNN_T *restrict A, ptrdiff_t aks,
                                                const FNN_T *restrict B, ptrdiff_t ldb,
                                                FNN_T *restrict C, ptrdiff_t ldc,
                                                FNN_T alpha, FNN_T beta)
{
    FNN_V c0 = FNN_VZERO(), c1 = FNN_VZERO(), c2 = FNN_VZERO(), c3 = FNN_VZERO();
    const __m256i mk = _mm256_setzero_si256();
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
FNN_GEMM_AVX2_INLINE ptrdiff_t FNN_P(gemm_tnarrow)(const int EPI, ptrdiff_t m, ptrdiff_t n,
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
            FNN_P(gemm_tnarrow_k)(nc, EPI, k, A + i, aks, B, ldb, C + i * ldc, ldc, alpha,    \
                                  beta);                                                      \
            break;
        switch (n) {
        FNN_TNARROW_CASE(1) FNN_TNARROW_CASE(2) FNN_TNARROW_CASE(3) FNN_TNARROW_CASE(4)
        }
#undef FNN_TNARROW_CASE
    }
    return i;
}

#if defined(FNN_NARROW_ROWS)
/* float, a C of 8 to FNN_TWIDE_MAX columns (a layer of about 10 outputs, as a 10-class output
 * layer: its forward product X W and its weight gradient X^T D).  Vectorized across columns,
 * 10 columns fill 10 of a panel's 16 lanes and need masked loads and stores; here, as in the
 * narrow kernels, lane r of an accumulator is row r of a group of 8 and there is one
 * accumulator per column (NC of them).  A's p-th elements of the 8 rows come from one load
 * when A is read transposed (ATR: row i's p-th element at A[i + p * aks]), otherwise from a
 * stack copy of the 8 rows transposed by 8 x 8 blocks in registers (FNN_TWIDE_CHUNK steps of p
 * at a time; the last, partial block by masked loads).  Each lane adds its row's products into one accumulator in the order
 * p = 0 .. K-1, one fused multiply-add each: the chain of the general kernel.  Columns 0..7
 * are turned back into 8 rows by one register transpose and stored as rows through
 * FNN_EPI_STORE (full vectors, bias at columns 0..7); columns 8.. lane by lane through the
 * same store with their bias broadcast: the same operations on the same values, hence the
 * general kernel's bits. */
#define FNN_TWIDE_MAX 12
#define FNN_TWIDE_CHUNK 256
FNN_GEMM_AVX2_INLINE void fnn_s_gemm_twide_k(const int NC, const int ATR, const int EPI,
                                             ptrdiff_t k, const float *restrict A,
                                             ptrdiff_t lda, const float *restrict B,
                                             ptrdiff_t ldb, float *restrict C, ptrdiff_t ldc,
                                             float alpha, float beta,
                                             const float *restrict bias)
{
    __m256 acc[FNN_TWIDE_MAX], v[8];
    const __m256i mk = _mm256_setzero_si256();
    float tmp[8], bcol[8];
    ptrdiff_t p0, kk;
    int c, r;
    for (c = 0; c < NC; c++)
        acc[c] = _mm256_setzero_ps();
#define FNN_TWIDE_FMA(x, b, c)                                                                \
    if (NC > (c)) acc[c] = _mm256_fmadd_ps((x), _mm256_broadcast_ss((b) + (c)), acc[c]);
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
            FNN_TWIDE_STEP(_mm256_loadu_ps((X) + p_ * (XS)), (BB) + p_ * ldb)                 \
            FNN_TWIDE_STEP(_mm256_loadu_ps((X) + (p_ + 1) * (XS)), (BB) + (p_ + 1) * ldb)     \
        }                                                                                     \
        if (p_ < (K))                                                                         \
            FNN_TWIDE_STEP(_mm256_loadu_ps((X) + p_ * (XS)), (BB) + p_ * ldb)                 \
    }
    if (ATR)
        FNN_TWIDE_RUN(A, lda, B, k)
    else {
        /* (A's 8 rows transposed into `at` a chunk of p at a time, then read as if A were
         * transposed: the transposed columns in registers beside the accumulators would
         * not fit in the 16 vector registers) */
        float at[(FNN_TWIDE_CHUNK + 8) * 8];
        ptrdiff_t q0, kc;
        for (q0 = 0; q0 < k; q0 += FNN_TWIDE_CHUNK) {
            kc = k - q0 < FNN_TWIDE_CHUNK ? k - q0 : FNN_TWIDE_CHUNK;
            for (p0 = 0; p0 < kc; p0 += 8) {
                kk = kc - p0 < 8 ? kc - p0 : 8;
                const __m256i mkk =
                    _mm256_loadu_si256((const __m256i *) (fnn_gemm_mask32 + 8 - kk));
                for (r = 0; r < 8; r++)
                    v[r] = kk == 8 ? _mm256_loadu_ps(A + r * lda + q0 + p0)
                                   : _mm256_maskload_ps(A + r * lda + q0 + p0, mkk);
                fnn_s_transpose8(v);
                for (r = 0; r < 8; r++)
                    _mm256_storeu_ps(at + (p0 + r) * 8, v[r]);
            }
            FNN_TWIDE_RUN(at, 8, B + q0 * ldb, kc)
        }
    }
#undef FNN_TWIDE_RUN
#undef FNN_TWIDE_STEP
#undef FNN_TWIDE_FMA
    for (c = 8; c < NC; c++) {
        const float *restrict bias_c = bcol;
        if (EPI >= FNN_EPI_BIAS)
            for (r = 0; r < 8; r++) bcol[r] = bias[c];
        if (EPI == 1 && beta != 0)
            for (r = 0; r < 8; r++) tmp[r] = C[r * ldc + c];
        {
            const float *restrict bias = bias_c;     /* (the store reads bias + 0) */
            FNN_EPI_STORE(EPI, 0, tmp, 0, mk, acc[c]);
        }
        for (r = 0; r < 8; r++) C[r * ldc + c] = tmp[r];
    }
    fnn_s_transpose8(acc);
    for (r = 0; r < 8; r++)
        FNN_EPI_STORE(EPI, 0, C + r * ldc, 0, mk, acc[r]);
}

/* Rows 0 .. 8 floor(m / 8) - 1 of a C of 8 .. FNN_TWIDE_MAX columns; returns how many rows it
 * computed (the caller computes the rest).  ATR, EPI: as fnn_s_gemm_twide_k.  (Not inlined:
 * inside gemm_avx2_ex its code made the compiler spill the 6-row kernel's accumulators.) */
__attribute__((noinline, target("avx2,fma"))) static ptrdiff_t fnn_s_gemm_twide(const int ATR, const int EPI, ptrdiff_t m,
                                                ptrdiff_t n, ptrdiff_t k,
                                                const float *restrict A, ptrdiff_t lda,
                                                const float *restrict B, ptrdiff_t ldb,
                                                float *restrict C, ptrdiff_t ldc, float alpha,
                                                float beta, const float *restrict bias)
{
    ptrdiff_t i;
    for (i = 0; i + 8 <= m; i += 8) {
        const float *restrict Ai = ATR ? A + i : A + i * lda;
#define FNN_TWIDE_CASE(nc)                                                                    \
        case nc:                                                                              \
            fnn_s_gemm_twide_k(nc, ATR, EPI, k, Ai, lda, B, ldb, C + i * ldc, ldc, alpha,     \
                               beta, bias);                                                   \
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

/* Training's general form, A possibly transposed (aks = lda, ars = 1).  A narrow C (n <=
 * FNN_NARROW_MAX) takes a row-vectorized kernel: X W (float) the prediction's narrow kernel,
 * X^T D gemm_tnarrow; both give the general kernel's bits.  So does a float C of 8 to
 * FNN_TWIDE_MAX columns (gemm_twide). */
FNN_GEMM_AVX2 static void FNN_P(gemm_avx2_ex)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                              const FNN_T *restrict A, ptrdiff_t ars,
                                              ptrdiff_t aks,
                                              const FNN_T *restrict B, ptrdiff_t ldb,
                                              FNN_T *restrict C, ptrdiff_t ldc,
                                              FNN_T alpha, FNN_T beta)
{
    const int plain = alpha == 1 && beta == 0;
    if (n <= FNN_NARROW_MAX && m >= FNN_W) {
        ptrdiff_t done = 0;
        if (ars == 1)       /* (A transposed; or k == 1, where both readings are one) */
            done = plain ? FNN_P(gemm_tnarrow)(0, m, n, k, A, aks, B, ldb, C, ldc, 1, 0)
                         : FNN_P(gemm_tnarrow)(1, m, n, k, A, aks, B, ldb, C, ldc, alpha,
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
            done = plain ? fnn_s_gemm_twide(1, 0, m, n, k, A, aks, B, ldb, C, ldc, 1, 0, NULL)
                         : fnn_s_gemm_twide(1, 1, m, n, k, A, aks, B, ldb, C, ldc, alpha, beta,
                                            NULL);
        else
            done = plain ? fnn_s_gemm_twide(0, 0, m, n, k, A, ars, B, ldb, C, ldc, 1, 0, NULL)
                         : fnn_s_gemm_twide(0, 1, m, n, k, A, ars, B, ldb, C, ldc, alpha, beta,
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
        FNN_P(gemm_x)(0, m, n, k, A, ARS, AKS, B, ldb, C, ldc, 1, 0, NULL);                   \
    else                                                                                      \
        FNN_P(gemm_x)(1, m, n, k, A, ARS, AKS, B, ldb, C, ldc, alpha, beta, NULL);
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
FNN_GEMM_AVX2 static void FNN_P(gemm_bias_act_avx2)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                                    const FNN_T *restrict A, ptrdiff_t lda,
                                                    const FNN_T *restrict B, ptrdiff_t ldb,
                                                    FNN_T *restrict C, ptrdiff_t ldc,
                                                    const FNN_T *restrict bias, int act,
                                                    FNN_T slope)
{
#if defined(FNN_TWIDE_MAX)
    if (n >= 8 && n <= FNN_TWIDE_MAX && m >= 8) {
        ptrdiff_t done =
            act == 1 ? fnn_s_gemm_twide(0, FNN_EPI_BIAS_RELU, m, n, k, A, lda, B, ldb, C, ldc,
                                        slope, 0, bias)
            : act == 2 ? fnn_s_gemm_twide(0, FNN_EPI_BIAS_LEAKY, m, n, k, A, lda, B, ldb, C,
                                          ldc, slope, 0, bias)
            : fnn_s_gemm_twide(0, FNN_EPI_BIAS, m, n, k, A, lda, B, ldb, C, ldc, slope, 0,
                               bias);
        A += done * lda;
        C += done * ldc;
        m -= done;
    }
#endif
    if (act == 1)
        FNN_P(gemm_x)(FNN_EPI_BIAS_RELU, m, n, k, A, lda, 1, B, ldb, C, ldc, slope, 0, bias);
    else if (act == 2)
        FNN_P(gemm_x)(FNN_EPI_BIAS_LEAKY, m, n, k, A, lda, 1, B, ldb, C, ldc, slope, 0, bias);
    else
        FNN_P(gemm_x)(FNN_EPI_BIAS, m, n, k, A, lda, 1, B, ldb, C, ldc, slope, 0, bias);
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

/* C (m, n) := alpha op(A) op(B) + beta C, row-major (training's three products: X W, X^T D,
 * D W^T), every element of op(A) op(B) summed in the fixed order of fastnn_gemm.h (over
 * k = 0 .. K-1 into one accumulator), then scaled once: alpha acc + beta C (C not read when
 * beta == 0).  A transposed is read in place (a strided broadcast); B transposed is first
 * copied into a contiguous k x n block (the copy changes no sum; on the stack up to
 * FNN_GEMM_STACK_ELEMS, with 8 x 8 / 4 x 4 blocks transposed in registers on AVX2).  A narrow
 * C (n <= FNN_NARROW_MAX) is vectorized across rows (gemm_avx2_ex), with the same bits.
 * C must not overlap A or B.
 * Returns 0, or -1 when the copy of a transposed B could not be allocated. */
static int FNN_P(gemm_fixed_ex)(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n,
                                ptrdiff_t k, FNN_T alpha, const FNN_T *A, ptrdiff_t lda,
                                const FNN_T *B, ptrdiff_t ldb, FNN_T beta, FNN_T *C,
                                ptrdiff_t ldc)
{
    FNN_T stack_b[FNN_GEMM_STACK_ELEMS];
    FNN_T *bt = NULL;
    ptrdiff_t ars = trans_a ? 1 : lda, aks = trans_a ? lda : 1, i, j, p;
    if (m <= 0 || n <= 0)
        return 0;
    if (trans_b) {
        FNN_T *dst = k * n <= FNN_GEMM_STACK_ELEMS ? stack_b
                     : (bt = (FNN_T *) malloc((size_t) (k * n) * sizeof(FNN_T)));
        if (dst == NULL)
            return -1;
#if defined(FNN_GEMM_X86)
        if (fnn_gemm_use_avx2())
            FNN_P(transpose_copy)(n, k, B, ldb, dst);
        else
#endif
        for (j = 0; j < n; j++)
            for (p = 0; p < k; p++)
                dst[p * n + j] = B[j * ldb + p];
        B = dst;
        ldb = n;
    }
#if defined(FNN_GEMM_X86)
    if (fnn_gemm_use_avx2()) {
        FNN_P(gemm_avx2_ex)(m, n, k, A, ars, aks, B, ldb, C, ldc, alpha, beta);
        free(bt);
        return 0;
    }
#endif
    {
        /* plain C: each row accumulated in acc (n entries) in the order p = 0 .. k-1 */
        FNN_T *acc = (FNN_T *) malloc((size_t) n * sizeof(FNN_T));
        if (acc == NULL) {
            free(bt);
            return -1;
        }
        for (i = 0; i < m; i++) {
            FNN_T *c = C + i * ldc;
            for (j = 0; j < n; j++)
                acc[j] = 0;
            for (p = 0; p < k; p++) {
                const FNN_T ap = A[i * ars + p * aks];
                const FNN_T *b = B + p * ldb;
                for (j = 0; j < n; j++)
                    acc[j] = ap * b[j] + acc[j];
            }
            if (alpha == 1 && beta == 0)
                for (j = 0; j < n; j++)
                    c[j] = acc[j];
            else if (beta == 0)
                for (j = 0; j < n; j++)
                    c[j] = alpha * acc[j];
            else
                for (j = 0; j < n; j++)
                    c[j] = alpha * acc[j] + beta * c[j];
        }
        free(acc);
    }
    free(bt);
    return 0;
}

/* C (m, n) := act(A (m, k) @ B (k, n) + b), row-major: a forward layer's product, bias and
 * activation in one pass over C.  act: 0 identity, 1 ReLU (z < 0 ? 0 : z), 2 leaky ReLU
 * (z < 0 ? slope z : z), with z = (the product, summed as by gemm_fixed_ex) + b[j]: the bits
 * of gemm_fixed_ex followed by fastnn_kernels.h's bias_act, added and selected while the sums
 * are still in registers (AVX2) or in a second loop over C (plain C).  Returns 0; 1 when it
 * declines (a narrow C, n <= FNN_NARROW_MAX, whose product takes the row-vectorized kernel:
 * the caller runs the product and the pass); -1 when the plain kernel's workspace failed. */
static int FNN_P(gemm_fixed_bias_act)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const FNN_T *A,
                                      ptrdiff_t lda, const FNN_T *B, ptrdiff_t ldb, FNN_T *C,
                                      ptrdiff_t ldc, const FNN_T *bias, int act, FNN_T slope)
{
    ptrdiff_t i, j;
    if (m <= 0 || n <= 0)
        return 0;
#if defined(FNN_GEMM_X86)
    if (fnn_gemm_use_avx2()) {
        if (n <= FNN_NARROW_MAX && m >= 8)
            return 1;
        FNN_P(gemm_bias_act_avx2)(m, n, k, A, lda, B, ldb, C, ldc, bias, act, slope);
        return 0;
    }
#endif
    if (FNN_P(gemm_fixed_ex)(0, 0, m, n, k, 1, A, lda, B, ldb, 0, C, ldc) != 0)
        return -1;
    for (i = 0; i < m; i++) {
        FNN_T *c = C + i * ldc;
        for (j = 0; j < n; j++) {
            const FNN_T z = c[j] + bias[j];
            c[j] = act == 1 ? (z < 0 ? (FNN_T) 0 : z) : act == 2 ? (z < 0 ? slope * z : z) : z;
        }
    }
    return 0;
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
#undef FNN_VADD
#undef FNN_VLT0
#undef FNN_VBLEND
#undef FNN_MASK
#undef FNN_EPI_STORE
#undef FNN_EPI_BIAS
#undef FNN_EPI_BIAS_RELU
#undef FNN_EPI_BIAS_LEAKY
#undef FNN_TWIDE_MAX
#undef FNN_TWIDE_CHUNK
#endif
