# The only door to BLAS: scipy.linalg.cython_blas, wrapped once over cython.floating.
#
# BLAS is column-major; a C-ordered (m, n) array is, to BLAS, its (n, m) transpose.  So a
# row-major product C = op(A) @ op(B) is issued as the column-major C^T = op(B)^T @ op(A)^T,
# i.e. with the operands swapped.  For a dense layer with X (B, n_in), W (n_in, n_out),
# Z/D (B, n_out), all C-contiguous, the three products of a training step are:
#
#   Z  = X @ W     gemm('N','N', m=n_out, n=B,    k=n_in,  W, lda=n_out, X, ldb=n_in,  Z,  ldc=n_out)
#   dW = X^T @ D   gemm('N','T', m=n_out, n=n_in, k=B,     D, lda=n_out, X, ldb=n_in,  dW, ldc=n_out)
#   dX = D @ W^T   gemm('T','N', m=n_in,  n=B,    k=n_out, W, lda=n_out, D, ldb=n_out, dX, ldc=n_in)
#
# gemm_rowmajor below takes the row-major view and does the swap, so callers never do.
from cython cimport floating


cdef void gemm_rowmajor(bint trans_a, bint trans_b, int m, int n, int k,
                        floating alpha, const floating *A, int lda,
                        const floating *B, int ldb,
                        floating beta, floating *C, int ldc) noexcept nogil

