# Declarations of src_c/fastnn_dropout.h (Philox-4x32-10 inverted dropout), with a fused-type
# dispatcher.  Declarations and `cdef inline` only, like _kernels.pxd.
from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "fastnn_dropout.h" nogil:
    void fnn_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                           uint32_t k1, uint32_t *out) noexcept
    uint32_t fnn_dropout_threshold(double rate) noexcept
    void fnn_dropout_keep_row(uint64_t seed, uint32_t epoch, uint32_t layer, uint64_t sample,
                              uint32_t threshold, Py_ssize_t cols,
                              unsigned char *keep) noexcept
    void fnn_s_dropout(float *dst, const float *src, Py_ssize_t rows, Py_ssize_t cols,
                       const Py_ssize_t *samples, uint64_t seed, uint32_t epoch,
                       uint32_t layer, uint32_t threshold, float scale) noexcept
    void fnn_d_dropout(double *dst, const double *src, Py_ssize_t rows, Py_ssize_t cols,
                       const Py_ssize_t *samples, uint64_t seed, uint32_t epoch,
                       uint32_t layer, uint32_t threshold, double scale) noexcept


cdef struct DropoutCtx:
    uint64_t seed
    uint32_t epoch
    const Py_ssize_t *samples   # (rows,) global sample index of each row of the minibatch
    uint32_t layer0             # added to the layer index: 0, or 1 for the view of a network
                                # from its second layer on (fastnn/_core/_sparse.pyx)


cdef inline void dropout(floating *dst, const floating *src, Py_ssize_t rows, Py_ssize_t cols,
                         const DropoutCtx *ctx, int layer, double rate) noexcept nogil:
    """dst := keep * src / (1 - rate), keep from Philox(seed, epoch, sample, layer, unit)."""
    if floating is float:
        fnn_s_dropout(dst, src, rows, cols, ctx.samples, ctx.seed, ctx.epoch,
                      <uint32_t> layer + ctx.layer0, fnn_dropout_threshold(rate),
                      <float> (1.0 / (1.0 - rate)))
    else:
        fnn_d_dropout(dst, src, rows, cols, ctx.samples, ctx.seed, ctx.epoch,
                      <uint32_t> layer + ctx.layer0, fnn_dropout_threshold(rate),
                      1.0 / (1.0 - rate))
