/*
 * bench/fma_peak.h -- the machine's FLOP peak, measured: a loop of independent fused
 * multiply-adds on the widest vectors this CPU has (AVX-512, else AVX2 + FMA, else scalar),
 * 12 accumulators (more than latency x pipes on any x86-64 core), nothing loaded or stored.
 * No product can beat it, whoever's kernels run: a BLAS build's GEMM (NumPy's OpenBLAS runs
 * AVX2 kernels on a CPU its build does not know) is one library's floor, not the machine's.
 * bench/peers.py quotes "% of peak" against the highest of this and the GEMMs.
 */
#ifndef FASTNN_BENCH_FMA_PEAK_H
#define FASTNN_BENCH_FMA_PEAK_H

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#define FNN_FMA_CHAINS 12
/* one FMA body per vector type: 12 chains, n rounds; returns a value that depends on all */
#define FNN_FMA_BODY(V, SET1, FMA, ADD, CAST0)                                                \
    V acc[FNN_FMA_CHAINS];                                                                    \
    const V m = SET1(0.999999), c = SET1(1e-7);                                               \
    long long r;                                                                              \
    int i;                                                                                    \
    for (i = 0; i < FNN_FMA_CHAINS; i++)                                                      \
        acc[i] = SET1(seed + i);                                                              \
    for (r = 0; r < n; r++) {                                                                 \
        _Pragma("GCC unroll 12")                                                              \
        for (i = 0; i < FNN_FMA_CHAINS; i++)                                                  \
            acc[i] = FMA(acc[i], m, c);                                                       \
    }                                                                                         \
    for (i = 1; i < FNN_FMA_CHAINS; i++)                                                      \
        acc[0] = ADD(acc[0], acc[i]);                                                         \
    return (double) CAST0(acc[0]);

__attribute__((target("avx512f"))) static double fnn_fma_s512(long long n, float seed)
{ FNN_FMA_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_cvtss_f32) }
__attribute__((target("avx512f"))) static double fnn_fma_d512(long long n, double seed)
{ FNN_FMA_BODY(__m512d, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd, _mm512_cvtsd_f64) }
__attribute__((target("avx2,fma"))) static double fnn_fma_s256(long long n, float seed)
{ FNN_FMA_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_cvtss_f32) }
__attribute__((target("avx2,fma"))) static double fnn_fma_d256(long long n, double seed)
{ FNN_FMA_BODY(__m256d, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd, _mm256_cvtsd_f64) }
#undef FNN_FMA_BODY

/* The vector width in bits the loop runs at on this CPU: 512, 256, or 0 (no FMA vectors). */
static int fnn_fma_width(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return 512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 256;
    return 0;
}

/* n rounds of 12 FMAs on the widest vectors of float (dbl 0) or double (dbl 1); *flops gets
 * the FLOPs done (2 per lane per FMA); returns a value to keep the work alive. */
static double fnn_fma_run(long long n, int dbl, double *flops)
{
    const int width = fnn_fma_width();
    const double lanes = width / (dbl ? 64.0 : 32.0);
    *flops = 2.0 * FNN_FMA_CHAINS * lanes * (double) n;
    if (width == 512)
        return dbl ? fnn_fma_d512(n, 1.0) : fnn_fma_s512(n, 1.0f);
    if (width == 256)
        return dbl ? fnn_fma_d256(n, 1.0) : fnn_fma_s256(n, 1.0f);
    *flops = 0;
    return 0;
}
#else
static int fnn_fma_width(void) { return 0; }
static double fnn_fma_run(long long n, int dbl, double *flops)
{
    (void) n; (void) dbl;
    *flops = 0;
    return 0;
}
#endif

#endif
