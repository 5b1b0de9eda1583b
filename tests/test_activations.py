"""The smooth activations (elu, selu, gelu, gelu_tanh, silu, softplus) against independent
references: PyTorch's torch.nn.functional definitions (float64) where they are accurate, the
closed forms of fastnn._core._reference (scipy's ndtr/expit/logaddexp) over the whole range, values
at extreme, subnormal and signed-zero arguments, and gradient checks through a whole network.
"""
import numpy as np
import pytest

import fastnn
from fastnn._core import _reference as ref
from fastnn.nn.layers import ACTIVATIONS, KEEPS_PREACTIVATION

NEW = ["elu", "selu", "gelu", "gelu_tanh", "silu", "softplus"]
DTYPES = [np.float32, np.float64]
IDS = ["float32", "float64"]
TINY64 = np.finfo(np.float64).smallest_subnormal


def _act(z, name, dtype, alpha=None):
    """act(z) and act'(z) of one unit with weight 1: z is the pre-activation exactly."""
    Z = np.ascontiguousarray(np.asarray(z, dtype).reshape(-1, 1))
    one, zero = np.ones((1, 1), dtype), np.zeros(1, dtype)
    with np.errstate(all="raise"):                  # no overflow/invalid anywhere
        A = fastnn.dense_forward(Z, one, zero, name, alpha=alpha)
        return A[:, 0], _derivative(Z, A, name, dtype, alpha)


def _derivative(Z, A, name, dtype, alpha):
    """act'(z_i): with W = 1 and dA = 1, dX = D @ W^T is the column D = act'(z)."""
    one = np.ones((1, 1), dtype)
    _, _, dX = fastnn.dense_backward(np.ones_like(Z), one, A, np.ones_like(A), name,
                                     alpha=alpha, Z=Z)
    return dX[:, 0].astype(np.float64)


def _torch(name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    fns = {"elu": F.elu, "selu": F.selu, "gelu": F.gelu,
           "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "silu": F.silu,
           "softplus": F.softplus}

    def value_and_grad(z):
        t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
        y = fns[name](t)
        y.sum().backward()
        return y.detach().numpy(), t.grad.numpy()
    return value_and_grad


@pytest.mark.parametrize("name", NEW)
def test_matches_pytorch_in_float64(name):
    # where PyTorch's own formulas are accurate: |z| <= 6 (its gelu forms 1 + erf and
    # 1 + tanh, which cancel for z << 0; its softplus returns z above 20)
    z = np.concatenate([np.linspace(-6, 6, 2001), [-1e-300, -0.0, 0.0, 1e-300]])
    want, dwant = _torch(name)(z)
    got, dgot = _act(z, name, np.float64)
    # atol: PyTorch's z (1 + tanh u) / 2 cancels to an absolute error ~ |z| ulp(1) for z < 0
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=8e-15)
    np.testing.assert_allclose(dgot, dwant, rtol=1e-13, atol=8e-15)


def _condition(z, name):
    """How many ulp the rounding of an intermediate costs at z (and costs any reference).

    GELU rounds a = |z| / sqrt2 and a^2 inside exp(-a^2): ~3 a^2 ulp in the tail.  The tanh
    form rounds u = sqrt(2/pi) (z + 0.044715 z^3) (3 roundings) inside sigmoid(2u):
    ~3 |2u| ulp.  The others take exp of the exact argument.  (Both sides round: the bounds
    count both.)"""
    if name == "gelu":
        return 1.5 * z ** 2
    if name == "gelu_tanh":
        return 6 * np.abs(ref.GELU_TANH_C * (z + ref.GELU_TANH_K * z ** 3))
    return 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", NEW)
def test_matches_the_closed_forms_over_the_whole_range(name, dtype):
    # dense in [-40, 40] plus the extremes; the reference evaluates in float64 at the same
    # (rounded) arguments.  Values: 8 ulp relative plus the conditioning above (seen: <= 3 ulp
    # for elu, selu, silu, softplus); results near the underflow threshold are compared
    # absolutely.  Derivatives are O(1) functions with zeros (gelu' at z = -0.75, silu' at
    # -1.28) and, for elu/selu, are formed from the output (a + alpha, which cancels as
    # act' -> 0), so they are compared to 8 ulp absolutely plus the same relative terms.
    z = np.concatenate([np.linspace(-40, 40, 80_001), [-1e4, -1e3, -100, 100, 1e3, 1e4]])
    z = z.astype(dtype).astype(np.float64)
    got, dgot = _act(z, name, dtype)
    want, dwant = ref.activation(z, name), ref.activation_grad(z, name)
    eps = np.finfo(dtype).eps
    rel = (8 + _condition(np.minimum(np.abs(z), 1e3), name)) * eps
    # below tiny / eps the intermediates (exp(-a^2), ...) are subnormal and lose digits
    floor = np.finfo(dtype).tiny / eps
    bad = np.abs(got - want) > rel * np.abs(want) + floor
    assert not bad.any(), (name, z[bad][:5], got[bad][:5], want[bad][:5])
    bad = np.abs(dgot - dwant) > rel * np.abs(dwant) + 8 * eps
    assert not bad.any(), (name, z[bad][:5], dgot[bad][:5], dwant[bad][:5])


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", NEW)
def test_exact_limits_and_signed_zero(name, dtype):
    big = np.array([-1e4, 1e4], dtype)
    a, d = _act(big, name, dtype)
    low = {"elu": -1.0, "selu": -ref.SELU_SCALE * ref.SELU_ALPHA}.get(name, 0.0)
    slope = np.asarray(ref.SELU_SCALE if name == "selu" else 1.0, dtype)
    assert a[0] == np.asarray(low, dtype) and d[0] == 0.0
    assert a[1] == slope * dtype(1e4) and d[1] == slope
    # act(+-0) = 0 (softplus: log 2); GELU/SiLU keep the sign of zero like z * (...)
    a0, d0 = _act(np.array([-0.0, 0.0], dtype), name, dtype)
    if name == "softplus":
        np.testing.assert_array_equal(a0, np.log(np.asarray(2.0, dtype)))
        np.testing.assert_allclose(d0, 0.5)
    else:
        assert (a0 == 0).all()
        want_d0 = {"elu": 1.0, "selu": ref.SELU_SCALE * ref.SELU_ALPHA}.get(name, 0.5)
        np.testing.assert_allclose(d0, want_d0, rtol=4 * np.finfo(dtype).eps)
    # subnormal arguments, kept (IEEE): act(z) ~ act'(0) z, no underflow trap, no NaN
    tiny = np.array([-1, 1], dtype) * np.finfo(dtype).smallest_subnormal * 3
    with fastnn.fpmode.flush_denormals(False):
        a_t, d_t = _act(tiny, name, dtype)
    assert np.isfinite(a_t).all() and np.isfinite(d_t).all()
    np.testing.assert_allclose(a_t, ref.activation(tiny.astype(np.float64), name),
                               atol=2 * np.finfo(dtype).smallest_subnormal)
    # and flushed, as every compiled call does by default: act(0)
    a_f, d_f = _act(tiny, name, dtype)
    if fastnn.fpmode.supported():
        np.testing.assert_array_equal(a_f, _act(np.zeros(2, dtype), name, dtype)[0])
    assert np.isfinite(d_f).all()


@pytest.mark.parametrize("name", NEW)
def test_nan_propagates(name):
    for dtype in DTYPES:
        Z = np.array([[np.nan]], dtype)
        one = np.ones((1, 1), dtype)
        A = fastnn.dense_forward(Z, one, np.zeros(1, dtype), name)
        assert np.isnan(A).all()
        _, db, _ = fastnn.dense_backward(one, one, A, one, name, Z=Z, compute_dX=False)
        assert np.isnan(db).all()


def test_elu_alpha_and_the_swish_alias():
    z = np.linspace(-5, 5, 101)
    a, d = _act(z, "elu", np.float64, alpha=0.3)
    np.testing.assert_allclose(a, ref.activation(z, "elu", 0.3), rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(d, ref.activation_grad(z, "elu", 0.3), rtol=1e-14, atol=1e-15)
    # default alpha: 1 for elu, whatever the leaky_relu default
    np.testing.assert_allclose(_act(z, "elu", np.float64)[0], ref.activation(z, "elu", 1.0))
    np.testing.assert_array_equal(_act(z, "swish", np.float64)[0],
                                  _act(z, "silu", np.float64)[0])
    model = fastnn.MLP([2, 3, 1], activation="swish")
    assert model.layers[0].activation == "silu"
    assert fastnn.MLP([2, 3, 1], activation="elu").layers[0].alpha == 1.0


def test_preactivation_is_required_where_the_output_does_not_determine_the_derivative():
    X = np.ones((2, 3))
    W = np.ones((3, 4))
    A = fastnn.dense_forward(X, W, np.zeros(4), "gelu")
    for name in KEEPS_PREACTIVATION:
        with pytest.raises(ValueError, match=f"activation='{name}' needs Z"):
            fastnn.dense_backward(X, W, A, A, name)
    with pytest.raises(ValueError, match=r"Z has shape \(2, 3\); expected \(2, 4\)"):
        fastnn.dense_backward(X, W, A, A, "gelu", Z=np.ones((2, 3)))


@pytest.mark.parametrize("name", NEW)
def test_gradient_check_through_a_network(name):
    # every layer's W and b, through two hidden layers of the activation, float64 central
    # differences (fastnn.check_gradients), relative error < 1e-7
    rng = np.random.default_rng(7)
    X = rng.standard_normal((12, 4))
    y = rng.integers(0, 3, 12)
    model = fastnn.MLP([4, 6, 5, 3], activation=name, dtype=np.float64, seed=1,
                       bias_init=0.1)
    report = fastnn.check_gradients(model, X, y, "cross_entropy")
    assert report.max_rel_error < 1e-7, str(report)


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("name", NEW)
def test_network_gradient_matches_numpy_reference(name, dtype):
    # the compiled network (which keeps Z for GELU/SiLU in its workspace) against the NumPy
    # twin in float64, and float32 against it within float32 rounding
    rng = np.random.default_rng(3)
    X = rng.standard_normal((9, 5))
    y = rng.standard_normal((9, 2))
    model = fastnn.MLP([5, 7, 6, 2], activation=[name, "tanh"], dtype=dtype, seed=2)
    loss = model.loss_and_grad(X, y, "mse")
    acts = [layer.activation for layer in model.layers]
    alphas = [layer._activation_parameter() for layer in model.layers]
    want_loss, want = ref.network_loss_grad(model.params.astype(np.float64), model.layer_sizes,
                                            acts, alphas, X.astype(dtype), 0, Y=y)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(loss, want_loss, rtol=tol)
    np.testing.assert_allclose(model.grads, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("name", NEW)
def test_training_and_save_load_round_trip(name, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    model = fastnn.MLP([3, 8, 2], activation=name, seed=0)
    model.fit(X, y, "cross_entropy", epochs=2, batch_size=16, seed=0)
    assert name in model.summary()
    model.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    assert [layer.activation for layer in back.layers] == [name, "identity"]
    assert back.layers[0].alpha == model.layers[0].alpha
    assert back.layers[0].negative_slope == model.layers[0].negative_slope
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert set(NEW) <= set(ACTIVATIONS)


# ------------------------------------------------------------------------ attack (att15)

@pytest.mark.parametrize("activation, name", [("elu", "alpha"),
                                              ("leaky_relu", "negative_slope")])
def test_alpha_that_overflows_the_dtype_is_refused(activation, name):
    # alpha = 1e39 is a finite double but inf in float32: predict gave NaN silently before
    kw = {name: 1e39}
    with pytest.raises(ValueError, match=rf"layer 0's {name}=1e\+39 overflows the model's "
                                         r"dtype float32"):
        fastnn.MLP([3, 4, 1], activation=activation, dtype=np.float32, **kw)
    model = fastnn.MLP([3, 4, 1], activation=activation, dtype=np.float64, **kw)
    assert np.isfinite(model.predict(np.ones((2, 3)))).all()
    X, W, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=rf"{name}=1e\+39 overflows the dtype float32 of X"):
        fastnn.dense_forward(X, W, b, activation, **kw)
    with pytest.raises(ValueError, match=rf"{name}=1e\+39 overflows the dtype float32 of X"):
        fastnn.dense_backward(X, W, np.ones((2, 4), np.float32), np.ones((2, 4), np.float32),
                              activation, **kw)


def _ulps32(got, want):
    """|got - want| in ulps of float32 at want (the binade of want; 2^-149 below 2^-126)."""
    want = np.asarray(want, np.float64)
    mag = np.maximum(np.abs(want), 2.0 ** -126)
    ulp = np.exp2(np.floor(np.log2(mag)) - 23)
    return np.abs(np.asarray(got, np.float64) - want) / ulp


def test_float32_tanh_stays_within_its_documented_ulp_bound():
    """float32 tanh (src_c/fastnn_kernels.h fnn_s_tanh_clamped, FNN_S_TANH_MAX_ULP = 2.5, the
    maximum over every positive float) on a dense grid: every 256th float in [0, 10], where
    all the rounding happens, and every 2^16th bit pattern over the whole range, both signs,
    against float64 tanh; exactly +-1 beyond 9.1, odd, and the sign of zero kept."""
    bits = np.concatenate([np.arange(0, 0x41200000, 256, dtype=np.uint32),
                           np.arange(0, 0x7F800000, 1 << 16, dtype=np.uint32)])
    z = bits.view(np.float32)
    # (subnormal inputs are flushed to zero inside compiled calls: fastnn.runtime.fpmode)
    z = z[(z == 0) | (z >= np.finfo(np.float32).tiny)]
    z = np.concatenate([z, -z])
    got, _ = _act(z, "tanh", np.float32)
    err = _ulps32(got, np.tanh(z.astype(np.float64)))
    assert err.max() <= 2.5, (z[err.argmax()], got[err.argmax()], err.max())
    big = np.array([9.1000004, 9.5, 20, 1e4, 3e38], np.float32)
    a, _ = _act(np.concatenate([big, -big]), "tanh", np.float32)
    np.testing.assert_array_equal(a, [1.0] * 5 + [-1.0] * 5)
    half = len(z) // 2
    np.testing.assert_array_equal(got[half:], -got[:half])
