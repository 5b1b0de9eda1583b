/*
 * fastnn_gemm.h -- fastnn's own products for prediction: C := A @ B (row-major), every element
 * of C summed in ONE fixed order, whatever the number of rows, the blocking or the thread.
 *
 * Why our own products.  A one-row prediction is a chain of matrix-vector products of a few
 * hundred to a few thousand multiply-adds each (under 0.2 us of arithmetic for a 64-32-10 or
 * 8-64-64-1 network); BLAS adds its own per-call cost, and OpenBLAS's matrix-vector kernels
 * (GEMV) add up in another order than its GEMM, so the same row predicted alone and inside a
 * batch came out in different bits.  Here every element is
 *
 *     c_ij = fma(a_i,k-1, b_k-1,j, ... fma(a_i1, b_1j, fma(a_i0, b_0j, 0)) ...)
 *
 * i.e. the products added to one accumulator in the order k = 0, 1, ..., K-1, each with one
 * rounding (a fused multiply-add where the CPU has one).  Vectorizing across the columns j
 * and keeping rows in separate registers never changes that order, so a row gives the same
 * bits alone, in a block of 6 rows or in any tile of any thread: prediction is row-independent
 * by construction, and its tiles can be shared among threads in any way.
 *
 * Kernels (no packing, no allocation, nothing but arithmetic):
 *   AVX2 + FMA (x86-64, chosen at run time, __builtin_cpu_supports):
 *     6 rows x 2 vectors of columns (12 accumulators), B streamed row by row (a row-major
 *     W is read along its rows: contiguous), A broadcast one element at a time;
 *     1 row x 8 vectors of columns for the rows left over and for one-row calls (8
 *     independent accumulator chains keep both FMA pipes busy on a 4-cycle latency);
 *     the last, partial vector of columns goes through masked loads and stores, so every
 *     column is computed by the same instruction sequence;
 *     a C of 1 to 4 columns (both dtypes, see below) or, in float, of 8 to 12 columns
 *     (fastnn_gemm_impl.h, fastnn_gemm_vec_impl.h gemm_twide) with rows across the lanes
 *     instead, the same chains.
 *   AVX-512 (level 2, fnn_gemm_kernel below; fastnn_gemm_avx512.h): the same kernels from the
 *     same source (fastnn_gemm_vec_impl.h) with zmm registers, and mask registers for the
 *     last partial vector: 8 rows x 2 vectors (32 floats, 16 doubles; 16 of the 32 registers
 *     accumulate), one row x 8 vectors (128 floats), the transposed-narrow and twide kernels
 *     16 float (8 double) rows per vector, the float narrow kernel 16 rows per vector from two
 *     8 x 8 transposes; each element the same fma chain and the same store as at level 1,
 *     hence the same bits (tests/test_gemm_levels.py).  The copy of a transposed B stays AVX2.
 *     Measured on Zen 5, one thread, float, level 1 -> 2 (GFLOP/s): prediction 1000x256x784
 *     105 -> 216, 1000x10x128 67 -> 114, 1000x1x64 16 -> 20, one row 256x784 42 -> 50;
 *     training 64x64x64 108 -> 213, X^T D 64x32x32 102 -> 224.
 *   plain C otherwise: the same order with `a * b + c` (two roundings without FMA
 *     hardware; with -march set to an FMA machine the compiler contracts it).  The two
 *     kernels can differ in the last bit; one process always uses one of them.
 * fnn_gemm_force_level(0) selects the plain kernel (tests compare both against NumPy).
 */
#ifndef FASTNN_GEMM_H
#define FASTNN_GEMM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* (not under AddressSanitizer: it checks a masked load's whole 32 bytes, past the end of a row
 * whose masked-out lanes the CPU never reads; the plain kernel runs there) */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define FNN_GEMM_X86 1
#include <immintrin.h>
#define FNN_GEMM_AVX2 __attribute__((target("avx2,fma")))
#define FNN_GEMM_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))
/* AVX-512 kernels (F for the 512-bit vectors and mask registers; VL, BW and DQ so that the
 * 256-bit helpers they inline and the masked byte/word moves compile in the same function) */
#define FNN_GEMM_AVX512_TARGET "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"
#define FNN_GEMM_AVX512 __attribute__((target(FNN_GEMM_AVX512_TARGET)))
#define FNN_GEMM_AVX512_INLINE static inline __attribute__((always_inline, \
                                                            target(FNN_GEMM_AVX512_TARGET)))
#endif

/* The instruction-set level of the products: 0 plain C, 1 AVX2 + FMA, 2 AVX-512 (with the
 * AVX2 + FMA of level 1).  Every level computes each element of C with the same operations
 * in the same order (fused multiply-adds at levels 1 and 2), so levels 1 and 2 give the same
 * bits: a wider vector only computes more elements at once (tests/test_gemm_levels.py
 * compares them bit for bit).  One exception, outside what training accepts: where two NaNs
 * meet in one operation x86 returns the first operand's, and the operand order is the
 * compiler's choice of instruction form, so a NaN's sign and payload (never whether an
 * element is NaN) may differ between levels.  fnn_gemm_level is this CPU's level (-1: not decided yet); each
 * extension module that includes this header decides once (the same answer: the same CPU).
 * fnn_gemm_level_cap is the highest level this module may use (2 unless a test or bench/
 * lowers it with fnn_gemm_force_level). */
#define FNN_GEMM_PLAIN 0
#define FNN_GEMM_LEVEL_AVX2 1
#define FNN_GEMM_LEVEL_AVX512 2
static int fnn_gemm_level = -1;
static int fnn_gemm_level_cap = FNN_GEMM_LEVEL_AVX512;

/* Use at most level `cap` (0, 1 or 2; values outside are clamped) from now on in this module. */
static inline void fnn_gemm_force_level(int cap)
{
    fnn_gemm_level_cap = cap < 0 ? 0 : cap > FNN_GEMM_LEVEL_AVX512 ? FNN_GEMM_LEVEL_AVX512 : cap;
}

/* The level the kernels run at in this module: this CPU's, at most the cap. */
static inline int fnn_gemm_kernel(void)
{
#if defined(FNN_GEMM_X86)
    int level = fnn_gemm_level;
    if (level < 0) {
        __builtin_cpu_init();
        /* (__builtin_cpu_supports reports AVX and AVX-512 only when the OS saves their
         * registers: libgcc checks XCR0) */
        level = !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
                    ? FNN_GEMM_PLAIN
                : __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
                    && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
                    ? FNN_GEMM_LEVEL_AVX512 : FNN_GEMM_LEVEL_AVX2;
        fnn_gemm_level = level;      /* (a benign race: every thread stores the same value) */
    }
    return level < fnn_gemm_level_cap ? level : fnn_gemm_level_cap;
#else
    return FNN_GEMM_PLAIN;
#endif
}

/* 1: the AVX2 + FMA kernels (or wider) run in this process; 0: the plain C ones. */
static inline int fnn_gemm_use_avx2(void)
{
    return fnn_gemm_kernel() >= FNN_GEMM_LEVEL_AVX2;
}

/* 1: the AVX-512 kernels run where a kernel has them. */
static inline int fnn_gemm_use_avx512(void)
{
    return fnn_gemm_kernel() >= FNN_GEMM_LEVEL_AVX512;
}

static inline ptrdiff_t fnn_gemm_min(ptrdiff_t a, ptrdiff_t b)
{
    return a < b ? a : b;
}

#if defined(FNN_GEMM_X86)
/* masks of the first r lanes: load from (table + 8 - r) (float) or (table + 4 - r) (double) */
static const int32_t fnn_gemm_mask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                            0, 0, 0, 0, 0, 0, 0, 0};
static const int64_t fnn_gemm_mask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
#endif

/* gemm_fixed_ex copies a transposed B of up to this many elements into scratch memory */
#define FNN_GEMM_STACK_ELEMS 4096
/* the packed panel of B (k x 2 vectors) lives in scratch memory up to this many elements */
#define FNN_GEMM_PACK_STACK_ELEMS 2048

/* A block of `bytes` aligned to 64 bytes (a cache line: the packed panels' vector loads
 * never straddle one), to be released with free(); NULL when it cannot be had.  Every
 * kernel's workspace comes from here. */
static inline void *fnn_gemm_alloc64(size_t bytes)
{
    void *p = NULL;
    return posix_memalign(&p, 64, bytes == 0 ? 64 : bytes) == 0 ? p : NULL;
}

/* Scratch memory for the fixed-order kernel's copies, per thread: slot FNN_SCRATCH_BT for
 * gemm_fixed_ex's copy of a transposed B, FNN_SCRATCH_PANEL for gemm_ex's packed panel of B,
 * FNN_SCRATCH_TWIDE for the twide kernel's transposed chunk of A.  They were arrays on the
 * stack, 40 KB (float) to 48 KB (double) at once when the three calls nest, and fit crashed
 * in a thread made with a small stack (threading.stack_size(56 KiB)).  Each slot is one block of
 * FNN_GEMM_SCRATCH_BYTES (enough for every size above, in double), allocated the first time
 * its thread needs it and freed when the thread exits (a pthread key's destructor; the main
 * thread's stay until the process ends): 96 KB per thread at most, whatever the number of
 * calls or steps.  Larger copies are allocated per call, as before.  NULL when the memory or
 * the key could not be had: callers then allocate per call (or use a smaller copy). */
#define FNN_SCRATCH_BT 0
#define FNN_SCRATCH_PANEL 1
#define FNN_SCRATCH_TWIDE 2
#define FNN_SCRATCH_SLOTS 3
#define FNN_GEMM_SCRATCH_BYTES (FNN_GEMM_STACK_ELEMS * sizeof(double))
static pthread_key_t fnn_gemm_scratch_key;
static pthread_once_t fnn_gemm_scratch_once = PTHREAD_ONCE_INIT;
static int fnn_gemm_scratch_keyed = 0;

static void fnn_gemm_scratch_free(void *slots)
{
    int i;
    for (i = 0; i < FNN_SCRATCH_SLOTS; i++)
        free(((void **) slots)[i]);
    free(slots);
}

static void fnn_gemm_scratch_init(void)
{
    fnn_gemm_scratch_keyed = pthread_key_create(&fnn_gemm_scratch_key,
                                                fnn_gemm_scratch_free) == 0;
}

/* This thread's block of FNN_GEMM_SCRATCH_BYTES for `slot` (64-byte aligned), or NULL. */
static void *fnn_gemm_scratch(int slot)
{
    void **slots;
    if (pthread_once(&fnn_gemm_scratch_once, fnn_gemm_scratch_init) != 0
        || !fnn_gemm_scratch_keyed)
        return NULL;
    slots = (void **) pthread_getspecific(fnn_gemm_scratch_key);
    if (slots == NULL) {
        slots = (void **) calloc(FNN_SCRATCH_SLOTS, sizeof(void *));
        if (slots == NULL)
            return NULL;
        if (pthread_setspecific(fnn_gemm_scratch_key, slots) != 0) {
            free(slots);
            return NULL;
        }
    }
    if (slots[slot] == NULL)
        slots[slot] = fnn_gemm_alloc64(FNN_GEMM_SCRATCH_BYTES);
    return slots[slot];
}
/* a B of up to this many bytes (rows, leading dimension and all) is not packed: a quarter of a
 * 32 KiB L1 data cache */
#define FNN_GEMM_PACK_MIN_BYTES 8192

/* ---------------------------------------------------------------- narrow products (float)
 * C := A B for B of 1 to 4 columns (a regression or binary output layer), 8 rows per vector.
 * Vectorized across columns, such a product fills 1 to 4 of a vector's 8 lanes; here lane r of
 * an accumulator is row r of a group of 8, and the column of A it needs, A[r, p] for the 8
 * rows, comes from loading 8 rows x 8 consecutive p and transposing the 8 x 8 block in
 * registers.  Each lane still adds its row's products into one accumulator in the order
 * p = 0 .. K-1, one fused multiply-add each: the bits of the general kernel, so a row gives the
 * same result alone (the one-row kernel) or inside a batch.  The last, partial block of p is
 * read with masked loads and its missing steps are skipped (not added as 0 * b, which could
 * turn a -0 into +0). */
#if defined(FNN_GEMM_X86)
#define FNN_NARROW_MAX 4

/* v[0..7] (8 rows of 8) <- their transpose: v[q] lane r = old v[r] lane q */
FNN_GEMM_AVX2_INLINE void fnn_s_transpose8(__m256 *v)
{
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* dst (k x n, row-major, leading dimension n) := the transpose of B (n x k, leading dimension
 * ldb): 8 x 8 blocks transposed in registers, the edges one element at a time (a copy: no
 * value changes).  The stack copy of a transposed B in gemm_fixed_ex. */
FNN_GEMM_AVX2 static void fnn_s_transpose_copy(ptrdiff_t n, ptrdiff_t k,
                                               const float *restrict B, ptrdiff_t ldb,
                                               float *restrict dst)
{
    __m256 v[8];
    ptrdiff_t j0, p0 = 0, j, p;
    int r;
    for (j0 = 0; j0 + 8 <= n; j0 += 8) {
        for (p0 = 0; p0 + 8 <= k; p0 += 8) {
            for (r = 0; r < 8; r++)
                v[r] = _mm256_loadu_ps(B + (j0 + r) * ldb + p0);
            fnn_s_transpose8(v);
            for (r = 0; r < 8; r++)
                _mm256_storeu_ps(dst + (p0 + r) * n + j0, v[r]);
        }
        for (p = p0; p < k; p++)
            for (j = j0; j < j0 + 8; j++)
                dst[p * n + j] = B[j * ldb + p];
    }
    for (j = j0; j < n; j++)
        for (p = 0; p < k; p++)
            dst[p * n + j] = B[j * ldb + p];
}

/* The same for double, 4 x 4 blocks. */
FNN_GEMM_AVX2 static void fnn_d_transpose_copy(ptrdiff_t n, ptrdiff_t k,
                                               const double *restrict B, ptrdiff_t ldb,
                                               double *restrict dst)
{
    __m256d v0, v1, v2, v3, t0, t1, t2, t3;
    ptrdiff_t j0, p0 = 0, j, p;
    for (j0 = 0; j0 + 4 <= n; j0 += 4) {
        for (p0 = 0; p0 + 4 <= k; p0 += 4) {
            const double *b = B + j0 * ldb + p0;
            v0 = _mm256_loadu_pd(b);
            v1 = _mm256_loadu_pd(b + ldb);
            v2 = _mm256_loadu_pd(b + 2 * ldb);
            v3 = _mm256_loadu_pd(b + 3 * ldb);
            t0 = _mm256_unpacklo_pd(v0, v1);          /* b00 b10 b02 b12 */
            t1 = _mm256_unpackhi_pd(v0, v1);          /* b01 b11 b03 b13 */
            t2 = _mm256_unpacklo_pd(v2, v3);          /* b20 b30 b22 b32 */
            t3 = _mm256_unpackhi_pd(v2, v3);          /* b21 b31 b23 b33 */
            _mm256_storeu_pd(dst + p0 * n + j0, _mm256_permute2f128_pd(t0, t2, 0x20));
            _mm256_storeu_pd(dst + (p0 + 1) * n + j0, _mm256_permute2f128_pd(t1, t3, 0x20));
            _mm256_storeu_pd(dst + (p0 + 2) * n + j0, _mm256_permute2f128_pd(t0, t2, 0x31));
            _mm256_storeu_pd(dst + (p0 + 3) * n + j0, _mm256_permute2f128_pd(t1, t3, 0x31));
        }
        for (p = p0; p < k; p++)
            for (j = j0; j < j0 + 4; j++)
                dst[p * n + j] = B[j * ldb + p];
    }
    for (j = j0; j < n; j++)
        for (p = 0; p < k; p++)
            dst[p * n + j] = B[j * ldb + p];
}

/* NG (1 or 2) groups of 8 rows of C (rows i = 0 .. 8 NG - 1), NC (1 .. 4) columns. */
FNN_GEMM_AVX2_INLINE void fnn_s_gemm_narrow_k(const int NG, const int NC, ptrdiff_t k,
                                              const float *restrict A, ptrdiff_t lda,
                                              const float *restrict B, ptrdiff_t ldb,
                                              float *restrict C, ptrdiff_t ldc)
{
    __m256 acc[2][FNN_NARROW_MAX], v[8];
    float out[8];
    ptrdiff_t p0, kk;
    int g, c, r;
    for (g = 0; g < NG; g++)
        for (c = 0; c < NC; c++)
            acc[g][c] = _mm256_setzero_ps();
    for (p0 = 0; p0 < k; p0 += 8) {
        kk = k - p0 < 8 ? k - p0 : 8;
        const __m256i mk = _mm256_loadu_si256((const __m256i *) (fnn_gemm_mask32 + 8 - kk));
        for (g = 0; g < NG; g++) {
            const float *restrict a = A + (ptrdiff_t) g * 8 * lda + p0;
            for (r = 0; r < 8; r++)
                v[r] = kk == 8 ? _mm256_loadu_ps(a + r * lda)
                               : _mm256_maskload_ps(a + r * lda, mk);
            fnn_s_transpose8(v);
#define FNN_NARROW_STEP(q)                                                                    \
            if ((q) < kk)                                                                     \
                for (c = 0; c < NC; c++)                                                      \
                    acc[g][c] = _mm256_fmadd_ps(v[q], _mm256_broadcast_ss(                   \
                                                    B + (p0 + (q)) * ldb + c), acc[g][c]);
            FNN_NARROW_STEP(0) FNN_NARROW_STEP(1) FNN_NARROW_STEP(2) FNN_NARROW_STEP(3)
            FNN_NARROW_STEP(4) FNN_NARROW_STEP(5) FNN_NARROW_STEP(6) FNN_NARROW_STEP(7)
#undef FNN_NARROW_STEP
        }
    }
    for (g = 0; g < NG; g++)
        for (c = 0; c < NC; c++) {
            _mm256_storeu_ps(out, acc[g][c]);
            for (r = 0; r < 8; r++)
                C[((ptrdiff_t) g * 8 + r) * ldc + c] = out[r];
        }
}

/* Rows 0 .. 8 floor(m / 8) - 1 of C := A B for n <= FNN_NARROW_MAX; returns how many rows it
 * computed (the caller computes the rest). */
FNN_GEMM_AVX2_INLINE ptrdiff_t fnn_s_gemm_narrow(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                                 const float *restrict A, ptrdiff_t lda,
                                                 const float *restrict B, ptrdiff_t ldb,
                                                 float *restrict C, ptrdiff_t ldc)
{
    ptrdiff_t i = 0;
#define FNN_NARROW_CASE(nc, ng)                                                               \
    case nc:                                                                                  \
        for (; i + 8 * (ng) <= m; i += 8 * (ng))                                              \
            fnn_s_gemm_narrow_k(ng, nc, k, A + i * lda, lda, B, ldb, C + i * ldc, ldc);      \
        for (; i + 8 <= m; i += 8)                                                            \
            fnn_s_gemm_narrow_k(1, nc, k, A + i * lda, lda, B, ldb, C + i * ldc, ldc);       \
        break;
    switch (n) {
    FNN_NARROW_CASE(1, 2) FNN_NARROW_CASE(2, 2) FNN_NARROW_CASE(3, 1) FNN_NARROW_CASE(4, 1)
    }
#undef FNN_NARROW_CASE
    return i;
}
#define FNN_NARROW_ROWS fnn_s_gemm_narrow
#endif

/* ---------------------------------------------------------------- float */
#define FNN_T float
#define FNN_DOUBLE 0
#define FNN_P(name) fnn_s_##name
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec256.h"
#define FNN_MR 6
#endif
#include "fastnn_gemm_impl.h"

/* ---------------------------------------------------------------- double */
#undef FNN_NARROW_ROWS
#undef FNN_DOUBLE
#define FNN_T double
#define FNN_DOUBLE 1
#define FNN_P(name) fnn_d_##name
#if defined(FNN_GEMM_X86)
#include "fastnn_gemm_vec256.h"
#define FNN_MR 6
#endif
#include "fastnn_gemm_impl.h"
#undef FNN_DOUBLE

#endif /* FASTNN_GEMM_H */
