# Declarations of src_c/fastnn_gemm.h: fastnn's own products in one fixed summation order
# (every element of C summed over k = 0 .. K-1 into one accumulator; row-independent), and a
# fused-type dispatcher.  Prediction's products (fastnn._core._network.forward_into) use it.
from cython cimport floating

cdef extern from "fastnn_gemm.h" nogil:
    void fnn_s_gemm_fixed(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *A,
                          Py_ssize_t lda, const float *B, Py_ssize_t ldb, float *C,
                          Py_ssize_t ldc) noexcept
    void fnn_d_gemm_fixed(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double *A,
                          Py_ssize_t lda, const double *B, Py_ssize_t ldb, double *C,
                          Py_ssize_t ldc) noexcept
    void fnn_gemm_force_plain(int on) noexcept
    int fnn_gemm_kernel() noexcept


cdef inline void gemm_fixed(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating *A,
                            Py_ssize_t lda, const floating *B, Py_ssize_t ldb, floating *C,
                            Py_ssize_t ldc) noexcept nogil:
    """C (m, n) := A (m, k) @ B (k, n), row-major, each element summed over k in order."""
    if floating is float:
        fnn_s_gemm_fixed(m, n, k, A, lda, B, ldb, C, ldc)
    else:
        fnn_d_gemm_fixed(m, n, k, A, lda, B, ldb, C, ldc)
