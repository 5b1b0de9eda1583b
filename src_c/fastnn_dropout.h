/*
 * fastnn_dropout.h -- inverted dropout with a counter-based generator, in plain C.
 *
 * Why counter-based: the mask of a unit must depend only on (seed, epoch, global sample
 * index, layer, unit), never on how samples were batched, on the thread count or on which
 * MPI rank holds the sample.  A stateful generator (a stream consumed in order) cannot give
 * that; a counter-based one is a pure function of its counter and key.  We use
 * Philox-4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011; the generator of Random123, of PyTorch's CUDA/CPU Philox engine and of JAX's
 * threefry alternative), with its published multipliers and Weyl key increments:
 *   counter = (unit / 4, global sample index, layer, epoch),  key = the 64-bit seed;
 * each call gives 4 independent 32-bit words, one per unit of a block of 4.  A unit is kept
 * when its word is >= threshold = round(rate * 2^32), i.e. with probability 1 - rate (to
 * 2^-32), and a kept value is multiplied by scale = 1 / (1 - rate) (inverted dropout: the
 * expected activation is unchanged, so predict uses the network as it is).
 *
 * Everything is branch-free 32x32->64-bit integer arithmetic, which the compiler vectorizes
 * (the kernels are cloned for SSE2/AVX2/AVX-512 like fastnn_kernels.h).
 */
#ifndef FASTNN_DROPOUT_H
#define FASTNN_DROPOUT_H

#include <stddef.h>
#include <stdint.h>
#include "fastnn_kernels.h"   /* FNN_CLONES */

#define FNN_PHILOX_M0 UINT32_C(0xD2511F53)
#define FNN_PHILOX_M1 UINT32_C(0xCD9E8D57)
#define FNN_PHILOX_W0 UINT32_C(0x9E3779B9)   /* golden ratio */
#define FNN_PHILOX_W1 UINT32_C(0xBB67AE85)   /* sqrt(3) - 1 */

/* Philox-4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1), into out[0..3]. */
FNN_INLINE void fnn_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                     uint32_t k0, uint32_t k1, uint32_t out[4])
{
    int r;
    for (r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)FNN_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)FNN_PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0;
        c1 = (uint32_t)p1;
        c2 = n2;
        c3 = (uint32_t)p0;
        k0 += FNN_PHILOX_W0;
        k1 += FNN_PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The keep threshold of a rate in [0, 1): a 32-bit word w keeps its unit iff w >= it. */
static inline uint32_t fnn_dropout_threshold(double rate)
{
    double t = rate * 4294967296.0 + 0.5;
    return t >= 4294967295.0 ? UINT32_C(0xFFFFFFFF) : (uint32_t)t;
}

/* keep[j] = 1 or 0 for the cols units of one sample (the mask itself: tests, reference). */
static inline void fnn_dropout_keep_row(uint64_t seed, uint32_t epoch, uint32_t layer,
                                        uint64_t sample, uint32_t threshold, ptrdiff_t cols,
                                        unsigned char *keep)
{
    ptrdiff_t j, w;
    uint32_t out[4];
    for (j = 0; j < cols; j += 4) {
        fnn_philox4x32_10((uint32_t)(j >> 2), (uint32_t)sample, layer, epoch,
                          (uint32_t)seed, (uint32_t)(seed >> 32), out);
        for (w = 0; w < 4 && j + w < cols; w++) keep[j + w] = out[w] >= threshold;
    }
}

/*
 * FNN_DEFINE_DROPOUT(T, P): P##dropout(dst, src, rows, cols, samples, seed, epoch, layer,
 * threshold, scale):  dst[i, j] = keep(samples[i], j) ? src[i, j] * scale : 0.
 * dst may be src (the backward pass masks dl/dA in place).  samples[i] is row i's global
 * sample index.  Forward: src = the layer's output; backward: src = dl/dA after dropout.
 */
/* The 32-bit words of units j0 .. j0 + 4 * n_blocks - 1 of one sample, in two passes the
 * compiler vectorizes: independent Philox blocks across lanes, then the selects. */
#define FNN_DROPOUT_CHUNK 256
FNN_INLINE void fnn_dropout_words(uint32_t *restrict words, ptrdiff_t j0, ptrdiff_t n_blocks,
                                     uint32_t sample, uint32_t layer, uint32_t epoch,
                                     uint32_t k0, uint32_t k1)
{
    ptrdiff_t q;
    for (q = 0; q < n_blocks; q++) {
        uint32_t out[4];
        fnn_philox4x32_10((uint32_t)((j0 >> 2) + q), sample, layer, epoch, k0, k1, out);
        words[4 * q] = out[0];
        words[4 * q + 1] = out[1];
        words[4 * q + 2] = out[2];
        words[4 * q + 3] = out[3];
    }
}

#define FNN_DEFINE_DROPOUT(T, P)                                                              \
FNN_CLONES void P##dropout(T *dst, const T *src, ptrdiff_t rows, ptrdiff_t cols,              \
                           const ptrdiff_t *samples, uint64_t seed, uint32_t epoch,          \
                           uint32_t layer, uint32_t threshold, T scale)                      \
{                                                                                             \
    ptrdiff_t i, j0, j, n;                                                                    \
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);                                \
    uint32_t words[FNN_DROPOUT_CHUNK];                                                        \
    for (i = 0; i < rows; i++) {                                                              \
        const T *s = src + i * cols;                                                          \
        T *d = dst + i * cols;                                                                \
        for (j0 = 0; j0 < cols; j0 += FNN_DROPOUT_CHUNK) {                                    \
            n = cols - j0 < FNN_DROPOUT_CHUNK ? cols - j0 : FNN_DROPOUT_CHUNK;                \
            fnn_dropout_words(words, j0, (n + 3) / 4, (uint32_t)samples[i], layer, epoch,     \
                              k0, k1);                                                        \
            for (j = 0; j < n; j++)                                                           \
                d[j0 + j] = words[j] >= threshold ? s[j0 + j] * scale : (T)0;                 \
        }                                                                                     \
    }                                                                                         \
}

FNN_DEFINE_DROPOUT(float, fnn_s_)
FNN_DEFINE_DROPOUT(double, fnn_d_)

#undef FNN_DEFINE_DROPOUT

#endif /* FASTNN_DROPOUT_H */
