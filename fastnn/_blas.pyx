"""Row-major GEMM over scipy's BLAS (see _blas.pxd for the layout table)."""
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef void gemm_rowmajor(bint trans_a, bint trans_b, int m, int n, int k,
                        floating alpha, const floating *A, int lda,
                        const floating *B, int ldb,
                        floating beta, floating *C, int ldc) noexcept nogil:
    """C (m, n) := alpha * op(A) @ op(B) + beta * C, all row-major."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    # column-major C^T = op(B)^T @ op(A)^T: swap operands and the m/n roles
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *> B, &ldb, <float *> A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *> B, &ldb, <double *> A, &lda,
              &beta, C, &ldc)

