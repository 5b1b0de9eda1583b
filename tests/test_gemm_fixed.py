"""fastnn's fixed-order training product (src_c/fastnn_gemm.h gemm_fixed_ex) against NumPy
float64 products, on edge shapes, and the property its special paths must keep: a narrow C
(1 to 4 columns, computed with rows across the vector lanes), a transposed B (copied into a
transposed block first) and a small packed panel give the bits of the general
column-vectorized kernel."""
import itertools

import numpy as np
import pytest

from fastnn._core import _products
from tests._helpers import check_gemm, gemm_operands

DTYPES = (np.float32, np.float64)
DT_IDS = ("f32", "f64")
KERNELS = ("fixed", "fixed_plain")
TRANS = list(itertools.product((False, True), repeat=2))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
def test_edge_shapes_match_numpy(kernel, dtype, trans_a, trans_b):
    # 1, 7, 17 rows/columns, the narrow widths 1-4 and 5, around a vector (4 or 8) and the
    # 6-row block, k = 1 and k around the 8 x 8 transposed blocks
    sizes = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 33, 64)
    ks = (1, 2, 7, 8, 9, 17, 64, 65)
    rng = np.random.default_rng(1)
    for case in range(60):
        m, n = (int(v) for v in rng.choice(sizes, 2))
        k = int(rng.choice(ks))
        alpha, beta = [(1.0, 0.0), (-0.25, 1.0), (1.5, 0.5), (2.0, 0.0)][case % 4]
        check_gemm(kernel, dtype, m, n, k, trans_a, trans_b, alpha, beta, seed=case, pad=case % 2)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
@pytest.mark.parametrize("m,n,k", [(64, 1, 64), (64, 64, 1), (32, 10, 32), (17, 3, 7),
                                   (7, 4, 17), (64, 64, 64), (8, 64, 64), (200, 40, 150)])
def test_training_shapes_match_numpy(kernel, dtype, trans_a, trans_b, m, n, k):
    # the products of networks B (64-32-10, batch 32) and C (8-64-64-1, batch 64), and one
    # whose panel of B (150 x 16) is packed in allocated memory rather than on the stack
    for i, (alpha, beta) in enumerate(((1.0, 0.0), (-0.01, 1.0))):
        check_gemm(kernel, dtype, m, n, k, trans_a, trans_b, alpha, beta, seed=i)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a", (False, True))
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.01, 1.0), (0.5, -2.0)])
def test_a_narrow_c_has_the_bits_of_the_general_kernel(dtype, trans_a, alpha, beta):
    # the first n columns of a 9-column C go through the column-vectorized kernel; alone
    # (n <= 4) they take the row-vectorized one: each element must come out the same
    rng = np.random.default_rng(2)
    for m, k in ((64, 64), (8, 1), (17, 7), (33, 65), (4, 9)):
        A, B, C = gemm_operands(rng, dtype, m, 9, k, trans_a, False)
        wide = C.copy()
        _products.gemm("fixed", trans_a, False, alpha, A, B, beta, wide)
        for n in (1, 2, 3, 4):
            narrow = np.ascontiguousarray(C[:, :n])
            _products.gemm("fixed", trans_a, False, alpha, A, np.ascontiguousarray(B[:, :n]),
                           beta, narrow)
            np.testing.assert_array_equal(narrow, wide[:, :n], err_msg=f"m={m} n={n} k={k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a", (False, True))
def test_a_transposed_b_has_the_bits_of_its_copy(dtype, trans_a):
    # D W^T: the kernel's own transposed copy of W against W^T handed over contiguous
    rng = np.random.default_rng(4)
    for m, n, k in ((64, 64, 64), (32, 32, 10), (64, 64, 1), (17, 9, 13), (5, 33, 8)):
        A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, True, pad=1)
        for alpha, beta in ((1.0, 0.0), (-0.5, 1.0)):
            got, want = C.copy(), C.copy()
            _products.gemm("fixed", trans_a, True, alpha, A, B, beta, got)
            _products.gemm("fixed", trans_a, False, alpha, A, np.ascontiguousarray(B.T), beta,
                           want)
            np.testing.assert_array_equal(got, want, err_msg=f"m={m} n={n} k={k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_plain_and_vector_kernels_agree(dtype):
    rng = np.random.default_rng(6)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    for (m, n, k), (ta, tb) in itertools.product(((64, 1, 64), (64, 64, 64), (17, 3, 9)),
                                                 TRANS):
        A, B, C = gemm_operands(rng, dtype, m, n, k, ta, tb)
        outs = []
        for kernel in KERNELS:
            out = C.copy()
            _products.gemm(kernel, ta, tb, -0.5, A, B, 1.0, out)
            outs.append(out)
        np.testing.assert_allclose(outs[0], outs[1], **tol)


def _bias_act_reference(Z, bias, act, slope):
    """bias_act's operations in the array's own dtype (NumPy's IEEE add and select)."""
    z = Z + bias
    if act == 1:
        return np.where(z < 0, z.dtype.type(0), z)
    if act == 2:
        return np.where(z < 0, z.dtype.type(slope) * z, z)
    return z


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("act", (0, 1, 2))
def test_fused_bias_act_has_the_bits_of_the_product_then_the_pass(kernel, dtype, act):
    # the forward layer's store: C := act(A B + b) against gemm_fixed_ex then bias_act's
    # operations (bit for bit), and against a float64 NumPy reference
    rng = np.random.default_rng(8)
    slope = 0.01
    for m, n, k in ((32, 32, 64), (32, 10, 32), (1, 7, 1), (7, 17, 9), (17, 5, 8),
                    (64, 64, 64), (6, 16, 3), (13, 33, 17)):
        A, B, _ = gemm_operands(rng, dtype, m, n, k, False, False, pad=m % 2)
        bias = rng.standard_normal(n).astype(dtype)
        bias[0] = -0.0
        product = np.empty((m, n), dtype)
        _products.gemm(kernel, False, False, 1.0, A, B, 0.0, product)
        out = np.full((m, n), np.nan, dtype)
        assert _products.gemm_bias_act(kernel, A, B, bias, act, slope, out) == 0
        np.testing.assert_array_equal(out, _bias_act_reference(product, bias, act, slope),
                                      err_msg=f"m={m} n={n} k={k}")
        z = A.astype(np.float64) @ B.astype(np.float64) + bias
        ref = _bias_act_reference(z, bias * 0, act, slope)
        tol = (k + 3) * np.finfo(dtype).eps * (np.abs(A) @ np.abs(B) + np.abs(bias))
        assert np.all(np.abs(out - ref) <= tol)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_fused_relu_keeps_nan(kernel, dtype):
    # z < 0 ? 0 : z: a NaN stays NaN (a max would turn it into 0), as in the pass
    A = np.zeros((8, 1), dtype)
    A[1, 0] = np.nan
    B = np.ones((1, 9), dtype)
    bias = np.full(9, -0.0, dtype)
    out = np.zeros((8, 9), dtype)
    assert _products.gemm_bias_act(kernel, A, B, bias, 1, 0.0, out) == 0
    assert np.isnan(out[1]).all()
    rows = np.delete(out, 1, axis=0)
    assert (rows == 0).all() and not np.signbit(rows).any()   # 0 + -0 = +0
    out = np.zeros((8, 9), dtype)
    _products.gemm_bias_act(kernel, A, B, bias - 1, 2, 0.5, out)   # leaky: -1 -> -0.5
    assert np.isnan(out[1]).all() and (np.delete(out, 1, axis=0) == -0.5).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_fused_bias_act_declines_a_narrow_c(dtype):
    # n <= 4 with 8 rows or more: the narrow product kernel runs, then the pass
    A, B = np.ones((8, 3), dtype), np.ones((3, 4), dtype)
    out = np.full((8, 4), 7.0, dtype)
    assert _products.gemm_bias_act("fixed", A, B, np.zeros(4, dtype), 1, 0.0, out) == 1
    assert (out == 7.0).all()
    with pytest.raises(ValueError, match="act=3; expected 0, 1 or 2"):
        _products.gemm_bias_act("fixed", A, B, np.zeros(4, dtype), 3, 0.0, out)
