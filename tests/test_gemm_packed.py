"""fastnn's packed, cache-blocked product (src_c/fastnn_gemm_packed.h) against NumPy float64
products, and the property training relies on: a block of C computed alone gives the same bits
as inside the whole product, so the fixed tiles give the same bits on every thread count."""
import itertools

import numpy as np
import pytest

import fastnn
from fastnn._core import _products, _tiling
from tests._helpers import check_gemm, check_gemm_integers, gemm_operands

DTYPES = (np.float32, np.float64)
DT_IDS = ("f32", "f64")
KERNELS = ("packed", "packed_plain")
# the header's KC (float and double), so that shapes cross a block of k
KC_F32 = 384


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product((False, True), repeat=2)))
def test_random_shapes_match_numpy(kernel, dtype, trans_a, trans_b):
    rng = np.random.default_rng(7)
    for case in range(25):
        m, n, k = (int(v) for v in rng.integers(1, 50, 3))
        if case % 5 == 0:
            k = int(rng.integers(KC_F32 - 3, 3 * KC_F32 + 5))     # several blocks of k
        alpha, beta = [(1.0, 0.0), (-0.01, 1.0), (0.5, -2.0), (2.0, 0.0)][case % 4]
        check_gemm(kernel, dtype, m, n, k, trans_a, trans_b, alpha, beta, seed=case,
               pad=case % 3)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_edge_sizes_match_numpy(kernel, dtype):
    # 0 and 1, around the micro-tile (6 x 16 or 6 x 8) and the blocks (MC 96, KC 384)
    sizes = (1, 2, 5, 6, 7, 8, 15, 16, 17, 95, 97)
    rng = np.random.default_rng(3)
    for case in range(40):
        m, n = (int(v) for v in rng.choice(sizes, 2))
        k = int(rng.choice((1, 2, 7, 383, 384, 385, 769)))
        trans_a, trans_b = bool(case & 1), bool(case & 2)
        alpha, beta = [(1.0, 0.0), (-0.25, 1.0), (1.5, 0.5)][case % 3]
        check_gemm(kernel, dtype, m, n, k, trans_a, trans_b, alpha, beta, seed=case,
               pad=case % 2)


# sizes around the micro-tile (6 x 16 or 6 x 8), the vectorized packing's blocks of 8 (4)
# columns, MC 96 and KC 384
GRID = (1, 5, 6, 7, 15, 16, 17, 95, 96, 97, 383, 384, 385)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product((False, True), repeat=2)))
def test_grid_of_edge_shapes_matches_numpy(kernel, dtype, trans_a, trans_b):
    rng = np.random.default_rng(17)
    for case in range(24):
        m, n, k = (int(v) for v in rng.choice(GRID, 3))
        alpha, beta = [(1.0, 0.0), (-0.5, 1.0), (2.0, -0.75)][case % 3]
        check_gemm(kernel, dtype, m, n, k, trans_a, trans_b, alpha, beta, seed=case,
                   pad=case % 3)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product((False, True), repeat=2)))
def test_small_integers_give_numpys_result_exactly(kernel, dtype, trans_a, trans_b):
    # the vectorized packing of a row-major op(A) or a transposed op(B), and its scalar
    # edges, exactly
    check_gemm_integers(kernel, dtype, [(96, 64, 385), (97, 17, 383), (12, 32, 8), (6, 16, 9),
                                        (7, 33, 15), (200, 50, 800)], trans_a, trans_b,
                        seed=23)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_empty_products(kernel, dtype):
    rng = np.random.default_rng(0)
    # k == 0: C := beta C (zeros when beta == 0, even over NaN)
    C = rng.standard_normal((5, 7)).astype(dtype)
    out = C.copy()
    _products.gemm(kernel, False, False, 1.0, np.zeros((5, 0), dtype), np.zeros((0, 7), dtype),
                   0.5, out)
    np.testing.assert_array_equal(out, (0.5 * C).astype(dtype))
    out[...] = np.nan
    _products.gemm(kernel, True, True, 1.0, np.zeros((0, 5), dtype), np.zeros((7, 0), dtype),
                   0.0, out)
    np.testing.assert_array_equal(out, np.zeros((5, 7), dtype))
    # m == 0 or n == 0: nothing to write
    for m, n in ((0, 4), (4, 0)):
        _products.gemm(kernel, False, False, 1.0, np.ones((m, 3), dtype), np.ones((3, n), dtype),
                       0.0, np.zeros((m, n), dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_plain_and_vector_kernels_agree(dtype):
    rng = np.random.default_rng(11)
    A, B, C = gemm_operands(rng, dtype, 50, 70, 800, False, True)
    outs = []
    for kernel in KERNELS:
        out = C.copy()
        _products.gemm(kernel, False, True, -0.5, A, B, 1.0, out)
        outs.append(out)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(outs[0], outs[1], **tol)


@pytest.mark.parametrize("kernel", KERNELS + ("fixed", "fixed_plain"))
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product((False, True), repeat=2)))
def test_a_block_of_c_alone_has_the_bits_it_has_in_the_whole_product(kernel, dtype, trans_a,
                                                                       trans_b):
    # what makes the fixed tiles of _network.tiled_gemm thread-count independent
    rng = np.random.default_rng(5)
    m, n, k = 61, 75, 2 * KC_F32 + 9
    A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, trans_b)
    whole = C.copy()
    _products.gemm(kernel, trans_a, trans_b, -0.1, A, B, 1.0, whole)
    for r0, r1, c0, c1 in ((0, 8, 0, 16), (8, 61, 16, 75), (13, 40, 3, 50), (60, 61, 74, 75)):
        a = A[:, r0:r1] if trans_a else A[r0:r1]
        b = B[c0:c1] if trans_b else B[:, c0:c1]
        part = C[r0:r1, c0:c1].copy()
        _products.gemm(kernel, trans_a, trans_b, -0.1, a, b, 1.0, part)
        np.testing.assert_array_equal(part, whole[r0:r1, c0:c1])


def _fit(dtype, n_threads, kernel):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 300)).astype(dtype)
    y = rng.integers(0, 10, 600)
    old = _tiling._set_product_kernel(kernel)
    try:
        model = fastnn.MLP([300, 200, 64, 10], dtype=dtype, seed=0)
        fastnn.fit(model, X, y, "cross_entropy", fastnn.SGD(lr=0.01), epochs=1, batch_size=200,
                   seed=0, n_threads=n_threads)
    finally:
        _tiling._set_product_kernel(old)
    return model.params.copy()


@pytest.mark.parametrize("kernel", ("packed", "fixed", "auto"))
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_training_has_the_same_bits_on_1_and_2_threads_on_each_kernel(kernel, dtype):
    # 200 x 300 x 200 products: above the fixed-order range, cut into 2 tiles
    assert _tiling.gemm_tiles(200, 200, 300)[0] > 1
    one = _fit(dtype, 1, kernel)
    np.testing.assert_array_equal(_fit(dtype, 2, kernel), one)
    blas = _fit(dtype, 1, "blas")
    tol = dict(rtol=1e-3, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(one, blas, **tol)


def test_the_kernel_switch_is_validated_and_restored():
    old = _tiling._set_product_kernel("blas")
    try:
        assert _tiling._set_product_kernel("packed") == "blas"
    finally:
        _tiling._set_product_kernel(old)
    with pytest.raises(ValueError, match="name='fast'; expected one of"):
        _tiling._set_product_kernel("fast")
    with pytest.raises(ValueError, match="kernel='fast'; expected one of"):
        _products.gemm("fast", False, False, 1.0, np.ones((2, 2)), np.ones((2, 2)), 0.0,
                       np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"B has shape \(3, 2\); expected \(2, 2\)"):
        _products.gemm("packed", False, False, 1.0, np.ones((2, 2)), np.ones((3, 2)), 0.0,
                       np.ones((2, 2)))
