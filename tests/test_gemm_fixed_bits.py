"""The fixed-order product's exact bits (src_c/fastnn_gemm.h, AVX2 + FMA kernel) against an
independent NumPy model of its definition: every element of op(A) op(B) is the chain
acc = fma(a_p, b_p, acc) over p = 0 .. k-1 from acc = +0, then C := acc (alpha 1, beta 0),
alpha acc (beta 0), fma(alpha, acc, beta C), or act(acc + bias).  Whatever the kernel does
with tiles, unrolling, packing, narrow or transposed paths, each element must come out of
exactly this chain.

The model's fused multiply-add: in float32, a b is exact in float64, and the float32 rounding
of a b + c is that of its float64 sum except at a float32 tie, which the exact error of the
float64 sum (TwoSum) breaks; in float64 the operands are float32 values (so a b is exact and
fma(a, b, c) is the float64 sum a b + c), and alpha acc + beta C uses libm's fma."""
import ctypes
import ctypes.util
import itertools

import numpy as np
import pytest

from fastnn._core import _products
from fastnn._core._network import _gemm_kernel
from tests._helpers import gemm_operands

pytestmark = pytest.mark.skipif(
    _gemm_kernel() < 1,
    reason="the plain C kernel runs in this process (no AVX2 + FMA): its a * b + c may "
           "round twice, the model below is of the fused kernel")

_libm = ctypes.CDLL(ctypes.util.find_library("m"))
_libm.fma.restype = ctypes.c_double
_libm.fma.argtypes = (ctypes.c_double,) * 3
_fma64 = np.frompyfunc(_libm.fma, 3, 1)


def _fma32(a, b, c):
    """Correctly rounded float32 fma(a, b, c), elementwise."""
    p = a.astype(np.float64) * b.astype(np.float64)      # exact: 24 + 24 bits
    c = np.broadcast_to(c, p.shape).astype(np.float64)
    s = p + c
    t = s - p
    err = (p - (s - t)) + (c - t)                        # s + err == p + c exactly
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    toward = np.where(s > r64, np.float32(np.inf), np.float32(-np.inf))
    other = np.nextafter(r, toward)
    tie = (s == (r64 + other.astype(np.float64)) / 2) & (err != 0)
    take_other = tie & ((err > 0) == (other.astype(np.float64) > r64))
    return np.where(take_other, other, r)


def _chain(a, b, dtype):
    """acc (m, n) = the fma chain over p of a[:, p] b[p, :], from +0."""
    acc = np.zeros((a.shape[0], b.shape[1]), dtype)
    for p in range(a.shape[1]):
        col, row = a[:, p:p + 1], b[p:p + 1, :]
        if dtype == np.float32:
            acc = _fma32(col, row, acc)
        else:
            acc = col * row + acc                         # a b exact: one rounding, as fma
    return acc


def _model(A, B, C, trans_a, trans_b, alpha, beta, dtype):
    a = A.T if trans_a else A
    b = B.T if trans_b else B
    acc = _chain(np.asarray(a), np.asarray(b), dtype)
    if alpha == 1 and beta == 0:
        return acc
    if beta == 0:
        return (dtype(alpha) * acc).astype(dtype)
    old = (dtype(beta) * C).astype(dtype)
    if dtype == np.float32:
        return _fma32(np.full(acc.shape, alpha, np.float32), acc, old)
    return _fma64(float(alpha), acc, old).astype(np.float64)


def _operands(rng, dtype, m, n, k, trans_a, trans_b, pad):
    A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, trans_b, pad)
    if dtype == np.float64:                               # float32 values: see the docstring
        A[...] = A.astype(np.float32)
        B[...] = B.astype(np.float32)
    return A, B, C


def _shapes(n_random, seed):
    """The products of networks B (64-32-10, batch 32) and C (8-64-64-1, batch 64), then
    random m, n, k in 1 .. 70 with 1, 10, 32 and 64 drawn often."""
    fixed = [(32, 32, 64), (32, 10, 32), (32, 32, 10), (64, 32, 32), (64, 64, 64),
             (64, 1, 64), (8, 64, 64), (64, 64, 8), (64, 8, 64), (1, 1, 1), (1, 70, 70),
             (70, 70, 1), (6, 16, 4), (12, 32, 3), (13, 9, 5), (8, 12, 17), (16, 11, 33),
             (7, 10, 9), (17, 13, 8)]
    # 8 to 12 columns (rows across lanes, 8 at a time), k around its blocks of 8 and its
    # chunks of 256 steps of p
    fixed += [(m, n, k) for m, n, k in zip((8, 9, 16, 17, 32, 33, 8, 24, 40, 15),
                                           (8, 9, 10, 11, 12, 10, 10, 9, 12, 8),
                                           (1, 7, 8, 9, 255, 256, 257, 300, 2, 16))]
    rng = np.random.default_rng(seed)
    pool = np.concatenate([np.arange(1, 71), [1, 10, 32, 64] * 8])
    return fixed + [tuple(int(v) for v in rng.choice(pool, 3)) for _ in range(n_random)]


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=("f32", "f64"))
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product((False, True), repeat=2)))
def test_every_element_is_one_fma_chain(dtype, trans_a, trans_b):
    rng = np.random.default_rng(11)
    for case, (m, n, k) in enumerate(_shapes(40, seed=12 + 2 * trans_a + trans_b)):
        alpha, beta = [(1.0, 0.0), (-0.01, 1.0), (0.5, -2.0), (2.0, 0.0)][case % 4]
        A, B, C = _operands(rng, dtype, m, n, k, trans_a, trans_b, pad=case % 3)
        want = _model(A, B, C, trans_a, trans_b, alpha, beta, dtype)
        got = C.copy()
        if beta == 0:
            got[...] = np.nan
        _products.gemm("fixed", trans_a, trans_b, alpha, A, B, beta, got)
        np.testing.assert_array_equal(
            got, want, err_msg=f"m={m} n={n} k={k} trans=({trans_a}, {trans_b}) "
                               f"alpha={alpha} beta={beta}")


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=("f32", "f64"))
@pytest.mark.parametrize("act", (0, 1, 2))
def test_fused_forward_is_one_fma_chain_then_bias_and_activation(dtype, act):
    rng = np.random.default_rng(21 + act)
    slope = dtype(0.01)
    for case, (m, n, k) in enumerate(_shapes(30, seed=31 + act)):
        A, B, _ = _operands(rng, dtype, m, n, k, False, False, pad=case % 2)
        bias = rng.standard_normal(n).astype(dtype)
        z = (_chain(A, B, dtype) + bias).astype(dtype)
        want = z if act == 0 else np.where(z < 0, dtype(0) if act == 1 else slope * z, z)
        got = np.full((m, n), np.nan, dtype)
        if _products.gemm_bias_act("fixed", A, B, bias, act, slope, got) == 1:
            # (declined: a narrow C; the caller runs the product, then the pass)
            assert n <= 4 and m >= 8
            continue
        np.testing.assert_array_equal(got, want, err_msg=f"m={m} n={n} k={k} act={act}")


def test_the_float32_model_is_libm_fmaf():
    # ties of a b broken by a c far below float64's precision, then random operands
    fmaf = _libm.fmaf
    fmaf.restype = ctypes.c_float
    fmaf.argtypes = (ctypes.c_float,) * 3
    x = np.float32(1 + 2.0 ** -12)                 # x x = 1 + 2^-11 + 2^-24: a float32 tie
    a, b = np.full(2, x), np.full(2, x)
    c = np.array([2.0 ** -80, -(2.0 ** -80)], np.float32)
    assert _fma32(a, b, c).tolist() == [1 + 2.0 ** -11 + 2.0 ** -23, 1 + 2.0 ** -11]
    rng = np.random.default_rng(5)
    a, b, c = (rng.standard_normal(20000).astype(np.float32) for _ in range(3))
    c[::2] = -(a[::2] * b[::2])                    # cancellation
    want = np.frompyfunc(fmaf, 3, 1)(a, b, c).astype(np.float32)
    np.testing.assert_array_equal(_fma32(a, b, c), want)
