"""The fused dense layer: one GEMM, then one pass for bias + activation (and back).

Samples are rows (docs/theory.md, section 1): X (B, n_in), W (n_in, n_out), b (n_out,),
A (B, n_out).  A reader used to samples-as-columns (Z = W X + b) sees the transpose of the same arithmetic.

The cdef functions take raw pointers and sizes so the training loop (_sgd.pyx) calls them on
its workspace without touching Python; the def functions below are the entry points used by
fastnn.nn.layers, which validates every argument first; they check the shapes again (O(1)), as
they are reachable from Python.
"""
from cython cimport floating
from libc.limits cimport INT_MAX

from fastnn._core._blas cimport gemm_rowmajor
from fastnn._core._fpmode cimport fnn_fpmode_enter, fnn_fpmode_leave
from fastnn._core._kernels cimport FNN_OK, bias_act, bias_act_keep, act_backward


cdef int dense_forward(const floating *X, const floating *W, const floating *b, floating *A,
                       int n_samples, int n_in, int n_out, int act,
                       floating alpha) noexcept nogil:
    """A (B, n_out) := act(X @ W + b).  Returns FNN_OK or FNN_EBADACT."""
    gemm_rowmajor(False, False, n_samples, n_out, n_in, <floating> 1, X, n_in, W, n_out,
                  <floating> 0, A, n_out)
    return bias_act(A, b, n_samples, n_out, act, alpha)


cdef int dense_forward_keep(const floating *X, const floating *W, const floating *b,
                            floating *Z, floating *A, int n_samples, int n_in, int n_out,
                            int act, floating alpha) noexcept nogil:
    """Z (B, n_out) := X @ W + b and A := act(Z), for the activations whose backward pass
    needs Z (GELU, GELU-tanh, SiLU; see src_c/fastnn_kernels.h).  FNN_OK or FNN_EBADACT."""
    gemm_rowmajor(False, False, n_samples, n_out, n_in, <floating> 1, X, n_in, W, n_out,
                  <floating> 0, Z, n_out)
    return bias_act_keep(Z, b, A, n_samples, n_out, act, alpha)


cdef int dense_backward(const floating *X, const floating *W, const floating *A,
                        const floating *dA, floating *D, floating *dW, floating *db,
                        floating *dX, int n_samples, int n_in, int n_out, int act,
                        floating alpha) noexcept nogil:
    """D := dA * act'(A); db := colsum(D); dW := X^T @ D; dX := D @ W^T unless dX is NULL.

    A is what the forward pass kept: Z for GELU, GELU-tanh and SiLU, the output otherwise.
    D may be the same buffer as dA (the training loop overwrites dA in place).
    """
    cdef int status = act_backward(dA, A, D, db, n_samples, n_out, act, alpha)
    if status != FNN_OK:
        return status
    gemm_rowmajor(True, False, n_in, n_out, n_samples, <floating> 1, X, n_in, D, n_out,
                  <floating> 0, dW, n_out)
    if dX != NULL:
        gemm_rowmajor(False, True, n_samples, n_in, n_out, <floating> 1, D, n_out, W, n_out,
                      <floating> 0, dX, n_in)
    return FNN_OK


def _raise_status(int status):
    if status != FNN_OK:
        raise ValueError(f"unknown activation code (status {status})")


def _check_shape(name, view, expected):
    """Raise ValueError unless the memoryview `view` has shape `expected` (O(1))."""
    shape = tuple(view.shape[:len(expected)])
    if shape != expected:
        raise ValueError(f"{name} has shape {shape}; expected {expected}")


def _check_dims(Py_ssize_t n_samples, Py_ssize_t n_in, Py_ssize_t n_out):
    if not (1 <= n_samples <= INT_MAX and 1 <= n_in <= INT_MAX and 1 <= n_out <= INT_MAX):
        raise ValueError(f"layer dimensions (B={n_samples}, n_in={n_in}, n_out={n_out}); "
                         f"expected each in [1, {INT_MAX}]")


def forward_into(const floating[:, ::1] X,  # IN (B, n_in)
                 const floating[:, ::1] W,  # IN (n_in, n_out)
                 const floating[::1] b,     # IN (n_out,)
                 floating[:, ::1] out,      # OUT (B, n_out)
                 int act, double alpha, bint flush_denormals=True):
    """Values and layout are validated by fastnn.nn.layers.dense_forward; shapes checked here.
    flush_denormals: flush subnormals to zero on this thread during the call
    (fastnn.runtime.fpmode)."""
    cdef int status
    cdef unsigned long long fp_saved
    _check_dims(X.shape[0], X.shape[1], W.shape[1])
    _check_shape("W", W, (X.shape[1], W.shape[1]))
    _check_shape("b", b, (W.shape[1],))
    _check_shape("out", out, (X.shape[0], W.shape[1]))
    with nogil:
        fp_saved = fnn_fpmode_enter(flush_denormals)
        status = dense_forward(&X[0, 0], &W[0, 0], &b[0], &out[0, 0], <int> X.shape[0],
                               <int> X.shape[1], <int> W.shape[1], act, <floating> alpha)
        fnn_fpmode_leave(flush_denormals, fp_saved)
    _raise_status(status)


def backward_into(const floating[:, ::1] X,   # IN (B, n_in)
                  const floating[:, ::1] W,   # IN (n_in, n_out)
                  const floating[:, ::1] A,   # IN (B, n_out), forward output (Z: GELU/SiLU)
                  const floating[:, ::1] dA,  # IN (B, n_out), upstream gradient
                  floating[:, ::1] D,         # OUT (B, n_out), dl/dZ (may not alias dA here)
                  floating[:, ::1] dW,        # OUT (n_in, n_out)
                  floating[::1] db,           # OUT (n_out,)
                  floating[:, ::1] dX,        # OUT (B, n_in) or None
                  int act, double alpha, bint flush_denormals=True):
    """Values and layout are validated by fastnn.nn.layers.dense_backward; shapes checked here.
    flush_denormals: as in forward_into."""
    cdef int status
    cdef unsigned long long fp_saved
    cdef Py_ssize_t B = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    _check_dims(B, n_in, n_out)
    _check_shape("W", W, (n_in, n_out))
    for name, view in (("A", A), ("dA", dA), ("D", D)):
        _check_shape(name, view, (B, n_out))
    _check_shape("dW", dW, (n_in, n_out))
    _check_shape("db", db, (n_out,))
    if dX is not None:
        _check_shape("dX", dX, (B, n_in))
    cdef floating *dX_ptr = NULL if dX is None else &dX[0, 0]
    with nogil:
        fp_saved = fnn_fpmode_enter(flush_denormals)
        status = dense_backward(&X[0, 0], &W[0, 0], &A[0, 0], &dA[0, 0], &D[0, 0], &dW[0, 0],
                                &db[0], dX_ptr, <int> X.shape[0], <int> X.shape[1],
                                <int> W.shape[1], act, <floating> alpha)
        fnn_fpmode_leave(flush_denormals, fp_saved)
    _raise_status(status)
