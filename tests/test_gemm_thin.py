"""fastnn's thin-batch product (src_c/fastnn_gemm_thin.h) against NumPy float64 products, and
the promise that lets training choose it without changing a bit: it gives the packed kernel's
bits at every shape, and the fixed kernel's whenever k fits one block (k <= KC)."""
import itertools

import numpy as np
import pytest

import fastnn
from fastnn._core import _products, _tiling
from tests._helpers import check_gemm, check_gemm_integers, gemm_operands

DTYPES = (np.float32, np.float64)
DT_IDS = ("f32", "f64")
# the packed header's KC: up to it, the packed and fixed kernels sum in the same order
KC = 384
# rows around the register tile's 16 (float) or 8 (double) lanes and the 64-row panel group;
# columns around its 6; reductions around the vectorized packing's 8 and the blocks of KC
MS = (1, 5, 15, 16, 17, 31, 32, 33, 48, 64, 70)
NS = (1, 5, 6, 7, 16, 17, 255, 256)
KS = (1, 15, 16, 17, 128, 784)
# (alpha, beta): training's products (1, 0), and the general form
SCALES = ((1.0, 0.0), (-0.5, 1.0), (0.75, -2.0))
# X W and D W^T are the products training gives the thin kernel; X^T D is supported too
TRANS = ((False, False), (False, True), (True, False), (True, True))


def _run(kernel, trans_a, trans_b, alpha, A, B, beta, C):
    out = C.copy()
    _products.gemm(kernel, trans_a, trans_b, alpha, A, B, beta, out)
    return out


@pytest.mark.parametrize("kernel", ("thin", "thin_plain"))
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS[:2])
def test_every_edge_shape_of_training_matches_numpy(kernel, dtype, trans_a, trans_b):
    for case, (m, n, k) in enumerate(itertools.product(MS, NS, KS)):
        alpha, beta = SCALES[case % 3]
        check_gemm(kernel, dtype, m, n, k, trans_a, trans_b, alpha, beta, seed=case,
                   pad=case % 3)


@pytest.mark.parametrize("kernel", ("thin", "thin_plain"))
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS[2:])
def test_transposed_a_matches_numpy(kernel, dtype, trans_a, trans_b):
    rng = np.random.default_rng(9)
    for case in range(40):
        m, n, k = int(rng.choice(MS)), int(rng.choice(NS)), int(rng.choice(KS))
        alpha, beta = SCALES[case % 3]
        check_gemm(kernel, dtype, m, n, k, trans_a, trans_b, alpha, beta, seed=case,
                   pad=case % 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
def test_the_bits_of_the_packed_kernel_everywhere_and_of_the_fixed_one_up_to_kc(
        dtype, trans_a, trans_b):
    rng = np.random.default_rng(13)
    shapes = list(itertools.product(MS, NS, KS + (KC, KC + 1)))
    if trans_a:                    # (not a product training gives it: a sample)
        shapes = [shapes[i] for i in rng.choice(len(shapes), 60, replace=False)]
    for case, (m, n, k) in enumerate(shapes):
        alpha, beta = SCALES[case % 3]
        A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, trans_b, pad=case % 2)
        thin = _run("thin", trans_a, trans_b, alpha, A, B, beta, C)
        where = f"m={m} n={n} k={k} alpha={alpha} beta={beta}"
        np.testing.assert_array_equal(thin, _run("packed", trans_a, trans_b, alpha, A, B,
                                                 beta, C), err_msg=where)
        if k <= KC:
            np.testing.assert_array_equal(thin, _run("fixed", trans_a, trans_b, alpha, A, B,
                                                     beta, C), err_msg=where)
    # the plain build: the packed product's plain kernel itself
    A, B, C = gemm_operands(rng, dtype, 33, 17, 785, trans_a, trans_b)
    np.testing.assert_array_equal(_run("thin_plain", trans_a, trans_b, -0.5, A, B, 1.0, C),
                                  _run("packed_plain", trans_a, trans_b, -0.5, A, B, 1.0, C))


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
def test_small_integers_give_numpys_result_exactly(dtype, trans_a, trans_b):
    # the packed rows, the broadcasts from W's columns and the transposed store, exactly
    check_gemm_integers("thin", dtype, [(16, 256, 784), (17, 7, 9), (64, 128, 256), (5, 6, 1),
                                        (70, 13, 385), (1, 255, 17)], trans_a, trans_b, seed=29)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_nothing_outside_c_is_written(dtype):
    # C a view into a wider array: the 4 + 2 lane row stores and the scalar edges must stay
    # inside its m rows and n columns
    rng = np.random.default_rng(31)
    for m, n, k in ((16, 256, 784), (17, 7, 20), (3, 12, 5), (33, 5, 130)):
        A, B, _ = gemm_operands(rng, dtype, m, n, k, False, True)
        big = np.full((m + 2, n + 5), 7.0, dtype)
        _products.gemm("thin", False, True, 1.0, A, B, 0.0, big[1:m + 1, 2:n + 2])
        np.testing.assert_allclose(big[1:m + 1, 2:n + 2],
                                   A.astype(np.float64) @ B.T.astype(np.float64),
                                   rtol=1e-4, atol=1e-3)
        big[1:m + 1, 2:n + 2] = 7.0
        assert np.all(big == 7.0)


@pytest.mark.parametrize("kernel", ("thin", "thin_plain"))
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_empty_products(kernel, dtype):
    rng = np.random.default_rng(0)
    C = rng.standard_normal((5, 7)).astype(dtype)
    out = _run(kernel, False, False, 1.0, np.zeros((5, 0), dtype), np.zeros((0, 7), dtype),
               0.5, C)
    np.testing.assert_array_equal(out, (0.5 * C).astype(dtype))
    out[...] = np.nan
    _products.gemm(kernel, False, True, 1.0, np.zeros((5, 0), dtype), np.zeros((7, 0), dtype),
                   0.0, out)
    np.testing.assert_array_equal(out, np.zeros((5, 7), dtype))
    for m, n in ((0, 4), (4, 0)):
        _products.gemm(kernel, False, False, 1.0, np.ones((m, 3), dtype),
                       np.ones((3, n), dtype), 0.0, np.zeros((m, n), dtype))


def _fit(n_threads, batch, thin_max_m, kernel="auto"):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((320, 784)).astype(np.float32)
    y = rng.integers(0, 10, 320)
    old_kernel = _tiling._set_product_kernel(kernel)
    old_m = _tiling._set_thin_max_m(thin_max_m)
    try:
        model = fastnn.MLP([784, 256, 128, 10], dtype=np.float32, seed=0)
        fastnn.fit(model, X, y, "cross_entropy", fastnn.SGD(lr=0.01), epochs=1,
                   batch_size=batch, seed=0, n_threads=n_threads)
    finally:
        _tiling._set_product_kernel(old_kernel)
        _tiling._set_thin_max_m(old_m)
    return model.params.copy()


@pytest.mark.parametrize("batch", (16, 64))
def test_training_on_the_thin_kernel_keeps_every_bit(batch):
    # workload A's shapes: the thin kernel takes X W (k 784 and 256) and D W^T; with it
    # switched off they go back to the packed and fixed kernels, with the same bits, on 1
    # and 2 threads (the 784 x 256 product is cut into 2 tiles)
    assert _tiling.gemm_tiles(batch, 256, 784)[0] == 2
    chosen = _fit(1, batch, 64)
    np.testing.assert_array_equal(_fit(1, batch, 0), chosen)
    np.testing.assert_array_equal(_fit(2, batch, 64), chosen)
    np.testing.assert_array_equal(_fit(1, batch, 0, kernel="thin"), chosen)


def test_the_thin_switch_is_validated_and_restored():
    old = _tiling._set_thin_max_m(5)
    try:
        assert _tiling._set_thin_max_m(old) == 5
    finally:
        _tiling._set_thin_max_m(old)
    with pytest.raises(ValueError, match="m=-1; expected >= 0"):
        _tiling._set_thin_max_m(-1)
    assert _tiling._set_product_kernel("thin") == "auto"
    assert _tiling._set_product_kernel("auto") == "thin"


def _overlapping_operands(dtype):
    """(A, B, C) of a 64 x 40 x 300 product, each valid, and views of each whose rows
    overlap: a broadcast (row stride 0) and an as_strided view (row stride one element)."""
    from numpy.lib.stride_tricks import as_strided
    A = np.ones((64, 300), dtype)
    B = np.ones((300, 40), dtype)
    C = np.zeros((64, 40), dtype)
    item = np.dtype(dtype).itemsize
    bad = {
        "A": (np.broadcast_to(np.ones(300, dtype), (64, 300)),
              as_strided(np.ones(400, dtype), (64, 300), (item, item))),
        "B": (np.broadcast_to(np.ones(40, dtype), (300, 40)),),
        "C": (as_strided(np.zeros(200, dtype), (64, 40), (item, item)),),
    }
    return (A, B, C), bad


@pytest.mark.parametrize("kernel", _products.KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_operands_with_overlapping_rows_are_refused(kernel, dtype):
    # the kernels walk rows strides[0] apart: a row stride shorter than a row would be read
    # (or, for C, written) past the array's buffer
    (A, B, C), bad = _overlapping_operands(dtype)
    for name, views in bad.items():
        for view in views:
            ops = dict(A=A, B=B, C=C)
            ops[name] = view
            with pytest.raises(ValueError, match=f"{name} has overlapping rows"):
                _products.gemm(kernel, False, False, 1.0, ops["A"], ops["B"], 0.0, ops["C"])
    if dtype is np.float32:
        bias = np.zeros(40, dtype)
        with pytest.raises(ValueError, match="A has overlapping rows"):
            _products.gemm_bias_act("fixed", bad["A"][0], B, bias, 1, 0.0, C)


@pytest.mark.parametrize("kernel", ("fixed", "thin", "update"))
def test_operands_of_the_wrong_rank_aliased_or_read_only_are_refused(kernel):
    # each operand's rank is checked before its shape is read; C must not alias A or B (the
    # kernels read them while writing it) and must be writeable, in both entries
    B = np.ones((4, 5))
    with pytest.raises(ValueError, match="A must be a 2-d ndarray"):
        _products.gemm(kernel, False, False, 1.0, np.ones(4), B, 0.0, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="A must be a 2-d ndarray"):
        _products.gemm(kernel, True, False, 1.0, np.float64(1.0), B, 0.0, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="B must be a 2-d ndarray"):
        _products.gemm(kernel, False, False, 1.0, np.ones((3, 4)), np.ones(4), 0.0,
                       np.zeros((3, 5)))
    X = np.ones((20, 20))
    with pytest.raises(ValueError, match="C and A share memory"):
        _products.gemm(kernel, False, False, 1.0, X, np.ones((20, 20)), 0.0, X)
    with pytest.raises(ValueError, match="C and B share memory"):
        _products.gemm(kernel, False, False, 1.0, np.ones((20, 20)), X[:, :20], 0.0, X)
    frozen = np.zeros((3, 5))
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="C must be writeable"):
        _products.gemm(kernel, False, False, 1.0, np.ones((3, 4)), B, 0.0, frozen)


def test_gemm_bias_act_checks_its_operands_as_gemm_does():
    B, bias = np.ones((4, 5)), np.ones(5)
    with pytest.raises(ValueError, match="A must be a 2-d ndarray"):
        _products.gemm_bias_act("fixed", np.ones(4), B, bias, 1, 0.0, np.zeros((3, 5)))
    frozen = np.frombuffer(bytes(40), np.float64).reshape(1, 5)
    with pytest.raises(ValueError, match="C must be writeable"):
        _products.gemm_bias_act("fixed", np.ones((1, 4)), B, bias, 0, 0.0, frozen)
    C = np.zeros((3, 5))
    with pytest.raises(ValueError, match="C and bias share memory"):
        _products.gemm_bias_act("fixed", np.ones((3, 4)), B, C[0], 0, 0.0, C)
    out = np.zeros((3, 5))
    _products.gemm_bias_act("fixed", np.ones((3, 4)), B, bias, 0, 0.0, out)
    np.testing.assert_array_equal(out, np.full((3, 5), 5.0))
