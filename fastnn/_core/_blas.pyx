"""Row-major GEMM over scipy's BLAS (see _blas.pxd for the layout table)."""
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv


cdef void gemm_rowmajor(bint trans_a, bint trans_b, int m, int n, int k,
                        floating alpha, const floating *A, int lda,
                        const floating *B, int ldb,
                        floating beta, floating *C, int ldc) noexcept nogil:
    """C (m, n) := alpha * op(A) @ op(B) + beta * C, all row-major.

    One row (m == 1) is a matrix-vector product and goes to GEMV: OpenBLAS's GEMM packs the
    whole of B even for one row, which made a one-row forward pass through a 784 x 256 layer
    ~9x slower than GEMV (bench/latency.py).
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int one = 1, incx, rows, cols, j
    if m == 1:
        # the row of op(A) is A's first row (contiguous) or, transposed, its first column
        incx = lda if trans_a else 1
        # op(B) row-major (k, n) is, column-major, an (n, k) matrix with leading dimension
        # ldb: C^T = B_cm @ a ('N', n x k); transposed, B_cm is (k, n): C^T = B_cm^T @ a
        rows = k if trans_b else n
        cols = n if trans_b else k
        if beta == 0:
            # C may be uninitialized workspace: BLAS implementations may compute 0 * C
            for j in range(n):
                C[j] = 0
        if floating is float:
            sgemv(&tb, &rows, &cols, &alpha, <float *> B, &ldb, <float *> A, &incx, &beta,
                  C, &one)
        else:
            dgemv(&tb, &rows, &cols, &alpha, <double *> B, &ldb, <double *> A, &incx, &beta,
                  C, &one)
        return
    # column-major C^T = op(B)^T @ op(A)^T: swap operands and the m/n roles
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *> B, &ldb, <float *> A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *> B, &ldb, <double *> A, &lda,
              &beta, C, &ldc)
