/*
 * fastnn_gemm_update_kern.h -- the vector kernel of fastnn_gemm_update.h for one element type
 * and one instruction set.  Included four times by fastnn_gemm_update.h (float AVX2, float
 * AVX-512, double AVX2, double AVX-512) with FNN_T, FNN_P, FNN_NR (pk_pack_b's panel width:
 * 16 float, 8 double) and one width's vector macros (fastnn_gemm_vec256.h or
 * fastnn_gemm_vec512.h: FNN_VN(name) the instruction set's suffix, FNN_VFUNC / FNN_VINLINE its
 * function attributes, FNN_VMASK a lane mask, __m256i at AVX2, __mmask16 / __mmask8 at
 * AVX-512) defined; undefines the vector macros at the end (fastnn_gemm_vec_undef.h).  Not
 * meant to be included on its own.
 *
 * A tile is 6 rows of C times 2 vectors of columns (2W: 16 float columns at AVX2, 32 at
 * AVX-512).  B is packed by pk_pack_b into panels of NR columns; the tile's vector v (columns
 * v W .. v W + W - 1 of its 2W) is read from panel (v W) / NR at column (v W) % NR: at AVX2
 * (2W == NR) both vectors from one panel, at AVX-512 (W == NR) one panel each.  The values,
 * the fused multiply-adds and their order per element are the same at every width.
 */

#define FNN_UPD_G (2 * FNN_W)     /* columns of C per tile */

/* The register tile: rows 0 .. R-1 (R <= 6) of C times NV (1 or 2) vectors of columns, the
 * last one partial when MASKED (lanes of mk).  Row r's p-th element of op(A) at
 * a[r ars + p aks]; B's row p, column c of the tile at bp[((c / NR) k + p) NR + c % NR] (the
 * panels of pk_pack_b, zero-padded past n).  Each element := the sum over p = 0 .. k-1, in
 * order from a +0 accumulator, one fused multiply-add each; then stored as the fixed kernel's
 * FNN_EPI_STORE does: EPI 0: C := s; 1 (beta == 0): alpha s; 2: fma(alpha, s, beta C). */
FNN_VINLINE void FNN_VN(upd_tile)(const int R, const int NV, const int MASKED, const int EPI,
                                  ptrdiff_t k, const FNN_T *restrict a, ptrdiff_t ars,
                                  ptrdiff_t aks, const FNN_T *restrict b, FNN_T *restrict c,
                                  ptrdiff_t ldc, FNN_VMASK mk, FNN_V al, FNN_V be)
{
    FNN_V c00 = FNN_VZERO(), c01 = FNN_VZERO(), c10 = FNN_VZERO(), c11 = FNN_VZERO();
    FNN_V c20 = FNN_VZERO(), c21 = FNN_VZERO(), c30 = FNN_VZERO(), c31 = FNN_VZERO();
    FNN_V c40 = FNN_VZERO(), c41 = FNN_VZERO(), c50 = FNN_VZERO(), c51 = FNN_VZERO();
    const FNN_T *restrict b1 = b + FNN_W / FNN_NR * k * FNN_NR + FNN_W % FNN_NR;
    ptrdiff_t p;
    for (p = 0; p < k; p++) {
        const FNN_T *restrict ap = a + p * aks;
        const FNN_V v0 = FNN_VLOAD(b + p * FNN_NR);
        const FNN_V v1 = NV == 2 ? FNN_VLOAD(b1 + p * FNN_NR) : FNN_VZERO();
        FNN_V x;
#define FNN_UPD_ROW(r, cr0, cr1)                                                              \
        if (R > (r)) {                                                                        \
            x = FNN_VBCAST(ap + (r) * ars);                                                   \
            cr0 = FNN_VFMA(x, v0, cr0);                                                       \
            if (NV == 2) cr1 = FNN_VFMA(x, v1, cr1);                                          \
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

/* R rows of C (R <= 6), all n columns, left to right, tile after tile (a tile's panels
 * 2W / NR panels after the one before: bp advances by k 2W). */
FNN_VINLINE void FNN_VN(upd_rows)(const int R, const int EPI, ptrdiff_t n, ptrdiff_t k,
                                  const FNN_T *restrict a, ptrdiff_t ars, ptrdiff_t aks,
                                  const FNN_T *restrict bp, FNN_T *restrict C, ptrdiff_t ldc,
                                  FNN_V al, FNN_V be)
{
    const FNN_VMASK none = FNN_NOMASK;
    const ptrdiff_t step = k * FNN_UPD_G;
    ptrdiff_t j, rem;
    for (j = 0; j + FNN_UPD_G <= n; j += FNN_UPD_G, bp += step)
        FNN_VN(upd_tile)(R, 2, 0, EPI, k, a, ars, aks, bp, C + j, ldc, none, al, be);
    rem = n - j;
    if (rem <= 0)
        return;
    {
        const FNN_VMASK mk = rem % FNN_W ? FNN_MASK(rem % FNN_W) : none;
        if (rem > FNN_W) {
            if (rem % FNN_W)
                FNN_VN(upd_tile)(R, 2, 1, EPI, k, a, ars, aks, bp, C + j, ldc, mk, al, be);
            else
                FNN_VN(upd_tile)(R, 2, 0, EPI, k, a, ars, aks, bp, C + j, ldc, mk, al, be);
        } else if (rem % FNN_W) {
            FNN_VN(upd_tile)(R, 1, 1, EPI, k, a, ars, aks, bp, C + j, ldc, mk, al, be);
        } else {
            FNN_VN(upd_tile)(R, 1, 0, EPI, k, a, ars, aks, bp, C + j, ldc, mk, al, be);
        }
    }
}

/* The whole of C, groups of 6 rows top to bottom, then the rows left over as one group. */
FNN_VINLINE void FNN_VN(upd_x)(const int EPI, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                               const FNN_T *restrict A, ptrdiff_t ars, ptrdiff_t aks,
                               const FNN_T *restrict bp, FNN_T *restrict C, ptrdiff_t ldc,
                               FNN_T alpha, FNN_T beta)
{
    const ptrdiff_t m6 = m - m % FNN_UPD_MR;
    const FNN_V al = FNN_VBCAST(&alpha), be = FNN_VBCAST(&beta);
    ptrdiff_t i;
    for (i = 0; i < m6; i += FNN_UPD_MR)
        FNN_VN(upd_rows)(6, EPI, n, k, A + i * ars, ars, aks, bp, C + i * ldc, ldc, al, be);
    switch (m - m6) {
#define FNN_UPD_REST(r)                                                                       \
    case r:                                                                                   \
        FNN_VN(upd_rows)(r, EPI, n, k, A + m6 * ars, ars, aks, bp, C + m6 * ldc, ldc, al, be); \
        break;
    FNN_UPD_REST(1) FNN_UPD_REST(2) FNN_UPD_REST(3) FNN_UPD_REST(4) FNN_UPD_REST(5)
#undef FNN_UPD_REST
    default:
        break;
    }
}

/* upd_x at this instruction set, C's three stores chosen once: bp holds B in pk_pack_b's
 * panels of NR columns (ceil(n / NR) of them, the last zero-padded; a tile reads its second
 * panel only when it has columns there). */
FNN_VFUNC static void FNN_VN(upd_run)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                      const FNN_T *A, ptrdiff_t ars, ptrdiff_t aks,
                                      const FNN_T *bp, FNN_T *C, ptrdiff_t ldc, FNN_T alpha,
                                      FNN_T beta)
{
    if (alpha == 1 && beta == 0)
        FNN_VN(upd_x)(0, m, n, k, A, ars, aks, bp, C, ldc, 1, 0);
    else if (beta == 0)
        FNN_VN(upd_x)(1, m, n, k, A, ars, aks, bp, C, ldc, alpha, 0);
    else
        FNN_VN(upd_x)(2, m, n, k, A, ars, aks, bp, C, ldc, alpha, beta);
}

#undef FNN_UPD_G
#include "fastnn_gemm_vec_undef.h"
