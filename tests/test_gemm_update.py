"""fastnn's kernel for the fused SGD update's product (src_c/fastnn_gemm_update.h) against
NumPy float64 products, and the promise that lets training choose it without changing a bit:
every element of C is the fixed kernel's (gemm_fixed_ex), for every shape, alpha and beta."""
import itertools

import numpy as np
import pytest

import fastnn
from fastnn._core import _products, _tiling
from tests._helpers import check_gemm, check_gemm_integers, gemm_operands

DTYPES = (np.float32, np.float64)
DT_IDS = ("f32", "f64")
# rows around the register tile's 6 and its multiples, and A's 784;
# columns around the 2-vector panels (8 and 16 float lanes, 4 and 8 double); reductions (the
# batch) 1 to 64
MS = (1, 2, 5, 6, 7, 11, 12, 13, 18, 100, 784, 800)
NS = (1, 3, 4, 5, 8, 9, 15, 16, 17, 24, 31, 128, 250, 256)
KS = (1, 2, 7, 16, 31, 32, 63, 64)
# (alpha, beta): plain SGD's fused update (alpha = -lr, beta = 1, or 1 - lr decay with weight
# decay), a product alone (1, 0), and general forms
LR, DECAY = 0.01, 1e-4
SCALES = ((-LR, 1.0), (-LR, 1.0 - LR * DECAY), (1.0, 0.0), (0.75, -2.0), (-3.0, 0.0))
# X^T D is the product training gives it; X W runs the same kernel; op(B) = B^T runs the
# fixed kernel itself
TRANS = ((True, False), (False, False), (True, True), (False, True))


def _run(kernel, trans_a, trans_b, alpha, A, B, beta, C):
    out = C.copy()
    _products.gemm(kernel, trans_a, trans_b, alpha, A, B, beta, out)
    return out


@pytest.mark.parametrize("kernel", ("update", "update_plain"))
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
def test_edge_shapes_match_numpy(kernel, dtype, trans_a, trans_b):
    rng = np.random.default_rng(3)
    for case in range(60):
        m, n, k = int(rng.choice(MS)), int(rng.choice(NS)), int(rng.choice(KS))
        alpha, beta = SCALES[case % len(SCALES)]
        check_gemm(kernel, dtype, m, n, k, trans_a, trans_b, alpha, beta, seed=case,
                   pad=case % 3)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("scales", SCALES, ids=("sgd", "sgd-decay", "product", "general",
                                                "general-beta0"))
def test_the_bits_of_the_fixed_kernel_at_every_edge_shape(dtype, scales):
    # training's X^T D, op(A) read transposed; C with a leading dimension larger than n
    # every other case (pad); the float32 alpha and beta are the ones training passes
    alpha, beta = scales
    rng = np.random.default_rng(11)
    for case, (m, n, k) in enumerate(itertools.product(MS, NS, KS)):
        A, B, C = gemm_operands(rng, dtype, m, n, k, True, False, pad=case % 2)
        where = f"m={m} n={n} k={k} alpha={alpha} beta={beta}"
        np.testing.assert_array_equal(_run("update", True, False, alpha, A, B, beta, C),
                                      _run("fixed", True, False, alpha, A, B, beta, C),
                                      err_msg=where)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
def test_the_bits_of_the_fixed_kernel_on_random_shapes(dtype, trans_a, trans_b):
    # m 1..800, n 1..256, k 1..64 drawn at random, both builds (the plain one against the
    # fixed kernel's plain one)
    rng = np.random.default_rng(17)
    for case in range(40):
        m, n, k = (int(rng.integers(1, 801)), int(rng.integers(1, 257)),
                   int(rng.integers(1, 65)))
        alpha, beta = SCALES[case % len(SCALES)]
        A, B, C = gemm_operands(rng, dtype, m, n, k, trans_a, trans_b, pad=case % 3)
        where = f"m={m} n={n} k={k} alpha={alpha} beta={beta}"
        for ours, theirs in (("update", "fixed"), ("update_plain", "fixed_plain")):
            np.testing.assert_array_equal(_run(ours, trans_a, trans_b, alpha, A, B, beta, C),
                                          _run(theirs, trans_a, trans_b, alpha, A, B, beta,
                                               C), err_msg=f"{ours}: {where}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_signed_zeros_infinities_and_nans_keep_the_fixed_kernels_bits(dtype):
    # -0 products added to a +0 accumulator, an infinite weight, NaN in D: the same
    # operations give the same special values
    rng = np.random.default_rng(23)
    for m, n, k in ((13, 17, 3), (784, 40, 16)):
        A, B, C = gemm_operands(rng, dtype, m, n, k, True, False, pad=1)
        A[:, ::3] = -0.0
        B[0, 1] = np.nan
        C[2, ::4] = np.inf
        C[3, ::5] = -0.0
        for alpha, beta in SCALES:
            np.testing.assert_array_equal(
                _run("update", True, False, alpha, A, B, beta, C).view(np.uint8),
                _run("fixed", True, False, alpha, A, B, beta, C).view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_small_integers_give_numpys_result_exactly(dtype):
    # the broadcasts of X^T's rows, D's panels and the stores into C's tiles, exactly
    check_gemm_integers("update", dtype, [(784, 256, 16), (17, 7, 9), (256, 128, 64),
                                          (5, 6, 1), (13, 250, 33), (1, 255, 17)],
                        True, False, seed=29)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_nothing_outside_c_is_written(dtype):
    # C a view into a wider array: the masked last panel and the rows past a multiple of 6
    # must stay inside its m rows and n columns
    rng = np.random.default_rng(31)
    for m, n, k in ((784, 256, 16), (17, 7, 20), (3, 12, 5), (13, 21, 64), (1, 1, 1)):
        A, B, _ = gemm_operands(rng, dtype, m, n, k, True, False)
        big = np.full((m + 2, n + 5), 7.0, dtype)
        _products.gemm("update", True, False, 1.0, A, B, 0.0, big[1:m + 1, 2:n + 2])
        np.testing.assert_allclose(big[1:m + 1, 2:n + 2],
                                   A.T.astype(np.float64) @ B.astype(np.float64),
                                   rtol=1e-4, atol=1e-3)
        big[1:m + 1, 2:n + 2] = 7.0
        assert np.all(big == 7.0)


@pytest.mark.parametrize("kernel", ("update", "update_plain"))
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_empty_products(kernel, dtype):
    rng = np.random.default_rng(0)
    C = rng.standard_normal((5, 7)).astype(dtype)
    out = _run(kernel, True, False, -0.5, np.zeros((0, 5), dtype), np.zeros((0, 7), dtype),
               0.5, C)
    np.testing.assert_array_equal(out, _run("fixed", True, False, -0.5,
                                            np.zeros((0, 5), dtype), np.zeros((0, 7), dtype),
                                            0.5, C))
    for m, n in ((0, 4), (4, 0), (0, 0)):
        _products.gemm(kernel, True, False, 1.0, np.ones((3, m), dtype),
                       np.ones((3, n), dtype), 0.0, np.zeros((m, n), dtype))


def test_training_chooses_it_for_the_weight_gradients_of_a_short_batch():
    # workload A's dW0 and dW1 at batch 8-64 (the rules are the same for both dtypes); the
    # small products (dW1 at batch 8: m n k = 2^18), narrow outputs (n < 16) and the other
    # products do not take it
    assert _tiling._kernel_name(True, False, 256, 128, 8) == "fixed"
    for k in (8, 16, 32, 64):
        assert _tiling._kernel_name(True, False, 784, 256, k) == "update"
        assert _tiling._kernel_name(True, False, 256, 128, max(k, 16)) == "update"
    assert _tiling._kernel_name(True, False, 784, 256, 128) == "packed"
    assert _tiling._kernel_name(True, False, 1280, 10, 64) == "fixed"
    assert _tiling._kernel_name(False, False, 16, 256, 784) == "thin"
    old = _tiling._set_update_max_k(0)
    try:
        assert _tiling._kernel_name(True, False, 784, 256, 16) == "fixed"
    finally:
        _tiling._set_update_max_k(old)


def _fit(dtype, n_threads, batch, update_max_k, decay=0.0):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((320, 784)).astype(dtype)
    y = rng.integers(0, 10, 320)
    old = _tiling._set_update_max_k(update_max_k)
    try:
        model = fastnn.MLP([784, 256, 128, 10], dtype=dtype, seed=0)
        fastnn.fit(model, X, y, "cross_entropy", fastnn.SGD(lr=0.01, weight_decay=decay),
                   epochs=1, batch_size=batch, seed=0, n_threads=n_threads)
    finally:
        _tiling._set_update_max_k(old)
    return model.params.copy()


@pytest.mark.parametrize("dtype,batch", ((np.float32, 16), (np.float32, 64),
                                         (np.float64, 16)), ids=("f32-16", "f32-64", "f64-16"))
def test_training_on_the_update_kernel_keeps_every_bit(dtype, batch):
    # workload A's shapes: with the kernel switched off its products go back to the fixed
    # (or, float32 at 64 rows, packed) kernel with the same bits, on 1 and 2 threads (the
    # 784 x 256 update is cut into tiles), with and without weight decay
    chosen = _fit(dtype, 1, batch, 64)
    np.testing.assert_array_equal(_fit(dtype, 1, batch, 0), chosen)
    np.testing.assert_array_equal(_fit(dtype, 2, batch, 64), chosen)
    np.testing.assert_array_equal(_fit(dtype, 1, batch, 64, decay=1e-4),
                                  _fit(dtype, 1, batch, 0, decay=1e-4))


def test_the_update_switch_is_validated_and_restored():
    old = _tiling._set_update_max_k(5)
    try:
        assert _tiling._set_update_max_k(old) == 5
    finally:
        _tiling._set_update_max_k(old)
    with pytest.raises(ValueError, match="k=-1; expected >= 0"):
        _tiling._set_update_max_k(-1)
    assert _tiling._set_product_kernel("update") == "auto"
    assert _tiling._set_product_kernel("auto") == "update"
