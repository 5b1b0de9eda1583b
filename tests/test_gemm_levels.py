"""Every product kernel gives the same bits at every vector width (src_c/fastnn_gemm.h levels):
level 2 (AVX-512) against level 1 (AVX2 + FMA), bit for bit, over shapes that cross each
kernel's tile, vector and blocking edges, both operand layouts, alpha and beta, padded rows,
both dtypes.  The kernels promise it because a wider vector only computes more elements at
once, each with the same fused multiply-adds in the same order; one misplaced lane, a masked
edge that reads a neighbour or a different k-block shows here.  (The plain C kernel rounds
twice without FMA: tests/test_gemm*.py compare it against NumPy instead.)  Needs a CPU with
AVX-512 (F, VL, BW, DQ): elsewhere both levels run the AVX2 kernels and there is nothing to
compare.  The inputs are finite: where two NaNs meet in one operation, x86 returns the first
operand's, and which operand comes first is the compiler's choice of instruction form, so a NaN's
sign and payload (never whether an element is NaN) may differ between levels (fastnn_gemm.h)."""
import zlib

import numpy as np
import pytest

from fastnn._core import _products
from fastnn._core._network import _gemm_kernel
from tests._helpers import gemm_operands

pytestmark = pytest.mark.skipif(
    _gemm_kernel() < 2, reason="no AVX-512 (F, VL, BW, DQ) on this CPU: level 2 is level 1")

# edges of the kernels' tiles: rows 6 / 8 / 12 / 16, columns of 8 / 16 / 32 lanes, narrow C of
# 1-4 and 8-12 columns, k blocks of 384, the thin kernel's 64 rows and 6 / 12 columns, the
# update kernel's k 64
_M = (1, 2, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 24, 31, 32, 33, 48, 63, 64, 65, 97, 130)
_N = (1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 24, 25, 31, 32, 33, 47, 48, 63, 64,
      65, 100, 129, 257)
_K = (0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 383, 384, 385, 784)
_CASES = 120


def _shapes(seed):
    rng = np.random.default_rng(seed)
    return [(int(rng.choice(_M)), int(rng.choice(_N)), int(rng.choice(_K)))
            for _ in range(_CASES)]


def _bits(M):
    return M.view(np.uint32 if M.dtype == np.float32 else np.uint64)


def _compare(kernel, dtype, trans_a, trans_b, seed, run):
    rng = np.random.default_rng(seed)
    for case, (m, n, k) in enumerate(_shapes(seed)):
        A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, trans_b, pad=case % 3)
        alpha, beta = [(1.0, 0.0), (-0.37, 0.0), (1.0, 1.0), (0.01, 0.9), (2.5, -1.0)][case % 5]
        outs = []
        for level in (1, 2):
            out = C.copy()
            run(kernel, A, B, alpha, beta, out, level)
            outs.append(out)
        assert np.array_equal(_bits(outs[0]), _bits(outs[1])), (
            f"{kernel} {np.dtype(dtype).name} trans_a={trans_a} trans_b={trans_b} "
            f"m={m} n={n} k={k} alpha={alpha} beta={beta}: level 2 differs from level 1 at "
            f"{np.argwhere(_bits(outs[0]) != _bits(outs[1]))[:5].tolist()}")


def _gemm(trans_a, trans_b):
    def run(kernel, A, B, alpha, beta, out, level):
        _products.gemm(kernel, trans_a, trans_b, alpha, A, B, beta, out, level=level)
    return run


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["packed", "fixed", "thin", "update"])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_every_kernel_gives_the_same_bits_at_levels_1_and_2(kernel, dtype, trans_a, trans_b):
    seed = zlib.crc32(f"{kernel} {np.dtype(dtype).name} {trans_a} {trans_b}".encode())
    _compare(kernel, dtype, trans_a, trans_b, seed, _gemm(trans_a, trans_b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [0, 1, 2])
def test_the_fused_bias_and_activation_gives_the_same_bits_at_levels_1_and_2(dtype, act):
    def run(kernel, A, B, alpha, beta, out, level):
        bias = np.linspace(-1, 1, out.shape[1]).astype(dtype)
        out[...] = np.nan                 # the fused store writes every element of C
        _products.gemm_bias_act("fixed", A, B, bias, act, 0.1, out, level=level)
    _compare("fixed", dtype, False, False, 11 + act, run)


def test_the_level_cap_names_what_it_expects():
    A = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="level=3"):
        _products.gemm("fixed", False, False, 1.0, A, A.T.copy(), 0.0,
                       np.zeros((2, 2), np.float32), level=3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes", [(784, 256, 128, 10), (64, 32, 10), (8, 64, 64, 1),
                                   (33, 17, 4, 9, 2), (5, 130, 47, 12, 3), (16, 31, 65, 8)])
def test_prediction_gives_the_same_bits_at_levels_1_and_2(dtype, sizes):
    """MLP.forward (prediction's gemm_fixed, not gemm_fixed_ex) over row counts that cross the
    6-row groups, the 8- and 16-row narrow groups and the one-row kernel."""
    import fastnn
    from fastnn._core import _network
    m = fastnn.MLP(list(sizes), activation="relu", dtype=dtype, seed=3)
    rng = np.random.default_rng(sizes[1])
    m.set_weights(intercepts=[rng.standard_normal(layer.n_out) * 0.3 for layer in m.layers])
    for rows in (1, 2, 5, 6, 7, 8, 13, 16, 17, 31, 64, 97):
        X = rng.standard_normal((rows, sizes[0])).astype(dtype)
        outs = []
        try:
            for level in (1, 2):
                _network._gemm_kernel(level=level)
                outs.append(m.forward(X))
        finally:
            _network._gemm_kernel(level=2)
        assert np.array_equal(_bits(outs[0]), _bits(outs[1])), (sizes, rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
def test_the_row_vectorized_kernels_give_the_same_bits_at_levels_1_and_2(dtype, trans_a):
    """Every narrow (1-4 columns) and twide (8-12 columns) C over row counts that cross their
    groups of 8, 16 and 64 rows and the steps of 8 of p: the random shapes above reach these
    kernels (alpha 1, beta 0, A not transposed for the narrow one) only a few times."""
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 4, 8, 9, 10, 11, 12):
        for m in (8, 9, 15, 16, 24, 31, 32, 48, 63, 64, 65, 80, 97, 130):
            for k in (1, 7, 8, 9, 17, 64, 300):
                A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, False, pad=k % 3)
                outs = []
                for level in (1, 2):
                    out = C.copy()
                    _products.gemm("fixed", trans_a, False, 1.0, A, B, 0.0, out, level=level)
                    outs.append(out)
                assert np.array_equal(_bits(outs[0]), _bits(outs[1])), (m, n, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_the_packed_kernel_gives_the_same_bits_on_large_products(dtype, trans_a, trans_b):
    # the AVX-512 packed kernel's 12 x 2-panel tiles against the AVX2 6 x 1-panel ones where
    # the random shapes above are rare: row blocks of MC 96 cut into 12s and a 6-row rest
    # (100, 197, 256), several k blocks (785 -> 3, 1024 -> 3), an odd number of column
    # panels (40, 264) and more than one column block of NC (1030 float, 520 double)
    rng = np.random.default_rng(7)
    for case, (m, n, k) in enumerate([(100, 40, 785), (197, 264, 1024), (256, 1030, 129),
                                      (37, 520, 400)]):
        A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, trans_b, pad=case % 2)
        alpha, beta = [(1.0, 0.0), (0.01, 0.9)][case % 2]
        outs = []
        for level in (1, 2):
            out = C.copy()
            _products.gemm("packed", trans_a, trans_b, alpha, A, B, beta, out, level=level)
            outs.append(out)
        assert np.array_equal(_bits(outs[0]), _bits(outs[1])), (m, n, k)
