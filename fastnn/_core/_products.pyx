"""Training's product kernels one by one, for tests and bench/ (not used by training itself,
which chooses among them in _tiling.tiled_gemm).

gemm(kernel, trans_a, trans_b, alpha, A, B, beta, C) computes C := alpha op(A) @ op(B) +
beta C in place with the named kernel: "packed" (src_c/fastnn_gemm_packed.h), "packed_plain"
(its plain C kernel), "fixed" (src_c/fastnn_gemm.h gemm_fixed_ex), "fixed_plain", "blas"
(scipy's OpenBLAS through _blas.gemm_rowmajor), "thin" (src_c/fastnn_gemm_thin.h),
"thin_plain" (which runs the packed product's plain C kernel), "update"
(src_c/fastnn_gemm_update.h) or "update_plain" (which runs the fixed kernel's plain C code).  level caps the instruction set
(src_c/fastnn_gemm.h): None the best this CPU has, 0 plain C (what the "_plain" names run),
1 AVX2 + FMA, 2 AVX-512; levels 1 and 2 give the same bits.

gemm_bias_act(kernel, A, B, bias, act, slope, C): C := act(A @ B + bias) with the fixed-order
kernel's fused store ("fixed" or "fixed_plain"; act 0 identity, 1 ReLU, 2 leaky ReLU).
"""
from cython cimport floating

from fastnn._core._blas cimport gemm_rowmajor
from fastnn._core._gemm cimport (gemm_fixed_bias_act, gemm_fixed_ex, gemm_packed,
                                 gemm_thin, gemm_update, fnn_gemm_force_level)

import numpy as np

cdef enum:
    _BEST = 2                   # the level cap that lets every kernel run at the CPU's best

KERNELS = ("packed", "packed_plain", "fixed", "fixed_plain", "blas", "thin", "thin_plain",
           "update", "update_plain")


cdef int _run(int kernel, int level, bint ta, bint tb, int m, int n, int k, floating alpha,
              const floating *A, int lda, const floating *B, int ldb, floating beta,
              floating *C, int ldc) noexcept nogil:
    cdef int status = 0
    if kernel == 4:
        gemm_rowmajor(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return 0
    # (this module's own copy of the kernel switch: other modules keep theirs)
    fnn_gemm_force_level(0 if kernel in (1, 3, 6, 8) else level)
    if kernel >= 7:
        status = gemm_update(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    elif kernel >= 5:
        status = gemm_thin(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    elif kernel < 2:
        status = gemm_packed(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        status = gemm_fixed_ex(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    fnn_gemm_force_level(_BEST)
    return status


def _check(name, M, expected_rows, expected_cols, dtype):
    if not isinstance(M, np.ndarray) or M.ndim != 2 or M.dtype != dtype:
        raise ValueError(f"{name} must be a 2-d ndarray of dtype {dtype}; got "
                         f"{type(M).__name__} {getattr(M, 'shape', None)} "
                         f"{getattr(M, 'dtype', None)}")
    if M.size and ((M.shape[1] > 1 and M.strides[1] != M.itemsize)
                   or M.strides[0] % M.itemsize or M.strides[0] < 0):
        raise ValueError(f"{name} must have contiguous rows (strides {M.strides})")
    # the kernels walk rows ld = strides[0] / itemsize apart: rows that overlap (a broadcast
    # or as_strided view) would be read or written past the buffer
    if M.size and M.shape[0] > 1 and M.strides[0] < M.shape[1] * M.itemsize:
        raise ValueError(f"{name} has overlapping rows (strides {M.strides} for shape "
                         f"{M.shape}); expected a row stride of at least "
                         f"{M.shape[1] * M.itemsize} bytes")
    if (M.shape[0], M.shape[1]) != (expected_rows, expected_cols):
        raise ValueError(f"{name} has shape {M.shape}; expected "
                         f"({expected_rows}, {expected_cols})")


def _operands(A, B, C, bint trans_a, bint trans_b):
    """(m, n, k) of C (m, n) := op(A) (m, k) op(B) (k, n), after every check the kernels rely
    on (each array 2-d of C's dtype before any shape is read, shapes, rows that do not
    overlap, C writeable and sharing no memory with A or B); ValueError naming the operand
    otherwise.  The one place both entries below check their operands."""
    if not isinstance(C, np.ndarray) or C.ndim != 2 or C.dtype not in (np.float32,
                                                                       np.float64):
        raise ValueError("C must be a 2-d float32 or float64 ndarray")
    for name, M in (("A", A), ("B", B)):
        if not isinstance(M, np.ndarray) or M.ndim != 2 or M.dtype != C.dtype:
            raise ValueError(f"{name} must be a 2-d ndarray of dtype {C.dtype}; got "
                             f"{type(M).__name__} {getattr(M, 'shape', None)} "
                             f"{getattr(M, 'dtype', None)}")
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    _check("A", A, k if trans_a else m, m if trans_a else k, C.dtype)
    _check("B", B, n if trans_b else k, k if trans_b else n, C.dtype)
    _check("C", C, m, n, C.dtype)
    if not C.flags.writeable:
        raise ValueError("C must be writeable")
    for name, M in (("A", A), ("B", B)):
        # the kernels read A and B while they write C: an alias gives silent garbage
        if np.may_share_memory(C, M):
            raise ValueError(f"C and {name} share memory; C is written while {name} is read")
    return m, n, k


def _ld(M):
    return max(M.strides[0] // M.itemsize if M.shape[0] > 1 else 0, M.shape[1], 1)


def _level(level):
    if level is None:
        return _BEST
    if level not in (0, 1, 2):
        raise ValueError(f"level={level!r}; expected None, 0 (plain C), 1 (AVX2 + FMA) or 2 "
                         "(AVX-512)")
    return level


def gemm(str kernel, bint trans_a, bint trans_b, alpha, A, B, beta, C, int repeat=1,
         level=None):
    """C := alpha op(A) @ op(B) + beta C in place (C's rows contiguous, any leading dimension;
    A and B likewise), `repeat` times; kernel is one of KERNELS, level the instruction-set
    cap (None: the best this CPU has; 0, 1, 2: see the module's docstring).  A: (m, k), or
    (k, m) when trans_a; B: (k, n), or (n, k) when trans_b; C: (m, n), one dtype, float32 or
    float64."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r}; expected one of {KERNELS}")
    cdef int cap = _level(level)
    cdef int m, n, k
    m, n, k = _operands(A, B, C, trans_a, trans_b)
    cdef int kind = KERNELS.index(kernel), lda = _ld(A), ldb = _ld(B), ldc = _ld(C), r
    cdef int status = 0
    cdef float falpha = alpha, fbeta = beta
    cdef double dalpha = alpha, dbeta = beta
    cdef size_t pa = A.ctypes.data, pb = B.ctypes.data, pc = C.ctypes.data
    if C.dtype == np.float32:
        with nogil:
            for r in range(repeat):
                status = _run(kind, cap, trans_a, trans_b, m, n, k, falpha, <const float *> pa,
                              lda, <const float *> pb, ldb, fbeta, <float *> pc, ldc)
    else:
        with nogil:
            for r in range(repeat):
                status = _run(kind, cap, trans_a, trans_b, m, n, k, dalpha, <const double *> pa,
                              lda, <const double *> pb, ldb, dbeta, <double *> pc, ldc)
    if status != 0:
        raise MemoryError(f"the {kernel} product's workspace could not be allocated")
    return C


cdef int _run_bias_act(int level, int m, int n, int k, const floating *A, int lda,
                       const floating *B, int ldb, floating *C, int ldc, const floating *bias,
                       int act, floating slope) noexcept nogil:
    cdef int status
    fnn_gemm_force_level(level)
    status = gemm_fixed_bias_act(m, n, k, A, lda, B, ldb, C, ldc, bias, act, slope)
    fnn_gemm_force_level(_BEST)
    return status


def gemm_bias_act(str kernel, A, B, bias, int act, slope, C, level=None):
    """C := act(A @ B + bias) in place (src_c/fastnn_gemm.h gemm_fixed_bias_act); kernel
    "fixed" or "fixed_plain", act 0 identity, 1 ReLU, 2 leaky ReLU (slope).  A (m, k), B
    (k, n), bias (n,) contiguous, C (m, n) with contiguous rows, one dtype.  Returns the
    kernel's status: 0 done, 1 declined (a narrow C, left as it was).  level: as in gemm."""
    if kernel not in ("fixed", "fixed_plain"):
        raise ValueError(f"kernel={kernel!r}; expected 'fixed' or 'fixed_plain'")
    if act not in (0, 1, 2):
        raise ValueError(f"act={act}; expected 0, 1 or 2")
    cdef int m, n, k
    m, n, k = _operands(A, B, C, False, False)
    if (not isinstance(bias, np.ndarray) or bias.dtype != C.dtype or bias.shape != (n,)
            or not bias.flags.c_contiguous):
        raise ValueError(f"bias must be a contiguous ({n},) array of dtype {C.dtype}")
    if np.may_share_memory(C, bias):
        raise ValueError("C and bias share memory; C is written while bias is read")
    cdef int lda = _ld(A), ldb = _ld(B), ldc = _ld(C), status
    cdef int cap = 0 if kernel == "fixed_plain" else _level(level)
    cdef float fslope = slope
    cdef double dslope = slope
    cdef size_t pa = A.ctypes.data, pb = B.ctypes.data, pc = C.ctypes.data
    cdef size_t pbias = bias.ctypes.data
    if C.dtype == np.float32:
        with nogil:
            status = _run_bias_act(cap, m, n, k, <const float *> pa, lda, <const float *> pb,
                                   ldb, <float *> pc, ldc, <const float *> pbias, act, fslope)
    else:
        with nogil:
            status = _run_bias_act(cap, m, n, k, <const double *> pa, lda,
                                   <const double *> pb, ldb, <double *> pc, ldc,
                                   <const double *> pbias, act, dslope)
    if status < 0:
        raise MemoryError(f"the {kernel} product's workspace could not be allocated")
    return status
