# Declarations of src_c/fastnn_gemm.h: fastnn's own products in one fixed summation order
# (every element of C summed over k = 0 .. K-1 into one accumulator; row-independent), and a
# fused-type dispatcher.  Prediction's products (fastnn._core._network.forward_into) use it,
# and training's small products (_network.tiled_gemm, below _fixed_max_mnk).
from cython cimport floating

cdef extern from "fastnn_gemm.h" nogil:
    void fnn_s_gemm_fixed(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *A,
                          Py_ssize_t lda, const float *B, Py_ssize_t ldb, float *C,
                          Py_ssize_t ldc) noexcept
    void fnn_d_gemm_fixed(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double *A,
                          Py_ssize_t lda, const double *B, Py_ssize_t ldb, double *C,
                          Py_ssize_t ldc) noexcept
    int fnn_s_gemm_fixed_ex(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n,
                            Py_ssize_t k, float alpha, const float *A, Py_ssize_t lda,
                            const float *B, Py_ssize_t ldb, float beta, float *C,
                            Py_ssize_t ldc) noexcept
    int fnn_d_gemm_fixed_ex(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n,
                            Py_ssize_t k, double alpha, const double *A, Py_ssize_t lda,
                            const double *B, Py_ssize_t ldb, double beta, double *C,
                            Py_ssize_t ldc) noexcept
    int fnn_s_gemm_fixed_bias_act(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *A,
                                  Py_ssize_t lda, const float *B, Py_ssize_t ldb, float *C,
                                  Py_ssize_t ldc, const float *bias, int act,
                                  float slope) noexcept
    int fnn_d_gemm_fixed_bias_act(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double *A,
                                  Py_ssize_t lda, const double *B, Py_ssize_t ldb, double *C,
                                  Py_ssize_t ldc, const double *bias, int act,
                                  double slope) noexcept
    void fnn_gemm_force_level(int cap) noexcept
    int fnn_gemm_kernel() noexcept


cdef inline void gemm_fixed(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating *A,
                            Py_ssize_t lda, const floating *B, Py_ssize_t ldb, floating *C,
                            Py_ssize_t ldc) noexcept nogil:
    """C (m, n) := A (m, k) @ B (k, n), row-major, each element summed over k in order."""
    if floating is float:
        fnn_s_gemm_fixed(m, n, k, A, lda, B, ldb, C, ldc)
    else:
        fnn_d_gemm_fixed(m, n, k, A, lda, B, ldb, C, ldc)


cdef inline int gemm_fixed_ex(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                              Py_ssize_t k, floating alpha, const floating *A, Py_ssize_t lda,
                              const floating *B, Py_ssize_t ldb, floating beta, floating *C,
                              Py_ssize_t ldc) noexcept nogil:
    """C (m, n) := alpha op(A) @ op(B) + beta C, row-major (the layout of _blas.gemm_rowmajor),
    each element of op(A) @ op(B) summed over k in order; C is not read when beta == 0.
    Returns 0, or -1 when a transposed B's copy could not be allocated."""
    if floating is float:
        return fnn_s_gemm_fixed_ex(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                   ldc)
    else:
        return fnn_d_gemm_fixed_ex(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                   ldc)


# src_c/fastnn_gemm_packed.h: the cache-blocked, packed product for training's large and thin
# products (every element summed in blocks of KC over k, in order; see the header).
cdef extern from "fastnn_gemm_packed.h" nogil:
    int fnn_s_gemm_packed(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          float alpha, const float *A, Py_ssize_t lda, const float *B,
                          Py_ssize_t ldb, float beta, float *C, Py_ssize_t ldc) noexcept
    int fnn_d_gemm_packed(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          double alpha, const double *A, Py_ssize_t lda, const double *B,
                          Py_ssize_t ldb, double beta, double *C, Py_ssize_t ldc) noexcept


cdef inline int gemm_packed(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                            Py_ssize_t k, floating alpha, const floating *A, Py_ssize_t lda,
                            const floating *B, Py_ssize_t ldb, floating beta, floating *C,
                            Py_ssize_t ldc) noexcept nogil:
    """C (m, n) := alpha op(A) @ op(B) + beta C, row-major (the layout of _blas.gemm_rowmajor),
    packed and cache-blocked; C is not read when beta == 0.  Returns 0, or -1 when the packing
    buffer could not be allocated (C untouched)."""
    if floating is float:
        return fnn_s_gemm_packed(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                 ldc)
    else:
        return fnn_d_gemm_packed(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                 ldc)


cdef inline int gemm_fixed_bias_act(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating *A,
                                    Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                                    floating *C, Py_ssize_t ldc, const floating *bias, int act,
                                    floating slope) noexcept nogil:
    """C (m, n) := act(A (m, k) @ B (k, n) + bias), act 0 identity, 1 ReLU, 2 leaky ReLU: the
    bits of gemm_fixed_ex then the bias_act pass, in one pass over C.  Returns 0; 1 when it
    declines (a narrow C: the caller runs the product and the pass); -1 on a failed
    workspace."""
    if floating is float:
        return fnn_s_gemm_fixed_bias_act(m, n, k, A, lda, B, ldb, C, ldc, bias, act, slope)
    else:
        return fnn_d_gemm_fixed_bias_act(m, n, k, A, lda, B, ldb, C, ldc, bias, act, slope)


# src_c/fastnn_gemm_thin.h: training's thin products (a batch of 16-64 rows against a layer's
# weights) computed as their transpose, op(A) packed and W streamed once; the same summation
# order, hence the same bits, as gemm_packed.
cdef extern from "fastnn_gemm_thin.h" nogil:
    int fnn_s_gemm_thin(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        float alpha, const float *A, Py_ssize_t lda, const float *B,
                        Py_ssize_t ldb, float beta, float *C, Py_ssize_t ldc) noexcept
    int fnn_d_gemm_thin(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        double alpha, const double *A, Py_ssize_t lda, const double *B,
                        Py_ssize_t ldb, double beta, double *C, Py_ssize_t ldc) noexcept


cdef inline int gemm_thin(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                          Py_ssize_t k, floating alpha, const floating *A, Py_ssize_t lda,
                          const floating *B, Py_ssize_t ldb, floating beta, floating *C,
                          Py_ssize_t ldc) noexcept nogil:
    """C := alpha op(A) @ op(B) + beta C, row-major, with C's rows as vector lanes (the bits of
    gemm_packed); C is not read when beta == 0.  Returns 0, or -1 when its buffer could not be
    allocated (C untouched)."""
    if floating is float:
        return fnn_s_gemm_thin(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        return fnn_d_gemm_thin(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


# src_c/fastnn_gemm_update.h: the weight-gradient product with a short reduction (the fused SGD
# update W := beta W + alpha X^T D), C walked along its rows, D copied into panels; the bits of
# gemm_fixed_ex.
cdef extern from "fastnn_gemm_update.h" nogil:
    int fnn_s_gemm_update(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          float alpha, const float *A, Py_ssize_t lda, const float *B,
                          Py_ssize_t ldb, float beta, float *C, Py_ssize_t ldc) noexcept
    int fnn_d_gemm_update(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                          double alpha, const double *A, Py_ssize_t lda, const double *B,
                          Py_ssize_t ldb, double beta, double *C, Py_ssize_t ldc) noexcept


cdef inline int gemm_update(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                            Py_ssize_t k, floating alpha, const floating *A, Py_ssize_t lda,
                            const floating *B, Py_ssize_t ldb, floating beta, floating *C,
                            Py_ssize_t ldc) noexcept nogil:
    """C := alpha op(A) @ op(B) + beta C, row-major, C walked along its rows (the bits of
    gemm_fixed_ex); C is not read when beta == 0.  Returns 0, or -1 when gemm_fixed_ex's copy
    of a transposed B could not be allocated (C untouched)."""
    if floating is float:
        return fnn_s_gemm_update(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                 ldc)
    else:
        return fnn_d_gemm_update(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C,
                                 ldc)
