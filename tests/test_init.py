"""fastnn.nn.init: the formulas (moments of large draws), seeding, dtypes, configs and errors."""
import json
import math
import re

import numpy as np
import pytest

import fastnn
from fastnn.nn import init
from fastnn.nn.layers import ACTIVATION_ALIASES, ACTIVATIONS

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]

# 10^6 draws.  fan_in = 2000, fan_out = 500, fan_avg = 1250 all differ, so using the wrong fan
# changes the variance by a factor >= 1.6, far beyond the tolerances below.
SHAPE = (2000, 500)
N_IN, N_OUT = SHAPE

# Each named scheme as its peer library defines it (PyTorch's torch.nn.init with default
# arguments: plain normals; Keras' keras.initializers: truncated normals): its variance_scaling
# setting ...
SETTINGS = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),      # Keras glorot_uniform, torch xavier_uniform_
    "xavier_normal": (1.0, "fan_avg", "normal"),        # torch xavier_normal_
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),  # Keras glorot_normal
    "he_uniform": (2.0, "fan_in", "uniform"),           # Keras he_uniform, torch kaiming_uniform_
    "kaiming_normal": (2.0, "fan_in", "normal"),        # torch kaiming_normal_
    "he_normal": (2.0, "fan_in", "truncated_normal"),   # Keras he_normal
    "lecun_uniform": (1.0, "fan_in", "uniform"),        # Keras lecun_uniform
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),  # Keras lecun_normal
}
# ... and, written independently of scale/mode, its textbook formula: the variance for SHAPE
# and, for the uniform ones, the limit L of U(-L, L) (whose variance is L^2 / 3); a truncated
# one is cut at 2 standard deviations of the underlying normal (Keras: stddev =
# sqrt(variance) / 0.87962566103423978, values beyond 2 stddev redrawn).
LIMIT = {
    "glorot_uniform": math.sqrt(6 / (N_IN + N_OUT)),
    "he_uniform": math.sqrt(6 / N_IN),
    "lecun_uniform": math.sqrt(3 / N_IN),
}
VARIANCE = {
    "glorot_uniform": LIMIT["glorot_uniform"] ** 2 / 3,
    "xavier_normal": 2 / (N_IN + N_OUT),
    "glorot_normal": 2 / (N_IN + N_OUT),
    "he_uniform": LIMIT["he_uniform"] ** 2 / 3,
    "kaiming_normal": 2 / N_IN,
    "he_normal": 2 / N_IN,
    "lecun_uniform": LIMIT["lecun_uniform"] ** 2 / 3,
    "lecun_normal": 1 / N_IN,
}
ALIASES = {"xavier_uniform": "glorot_uniform", "kaiming_uniform": "he_uniform"}

# Tolerances of the moment checks.  For n i.i.d. draws w with mean 0, variance v and kurtosis
# k = E[w^4] / v^2, the sample mean has standard error sqrt(v / n), and the mean of w^2 (the
# variance estimator when the mean, 0, is known) has standard error
#     sqrt(Var[w^2] / n) = sqrt((E[w^4] - v^2) / n) = v * sqrt((k - 1) / n).
#   normal:                      k = 3    -> v * sqrt(2 / n)  (the textbook v sqrt(2/(n-1)))
#   uniform on [-L, L]:          E[w^4] = L^4 / 5, v = L^2 / 3  -> k = 9/5
#   normal truncated to [-a, a]: with Z = erf(a / sqrt 2) and phi the normal density,
#       E[z^2] = 1 - 2 a phi(a) / Z  and, integrating z^3 * z phi(z) by parts,
#       E[z^4] = 3 E[z^2] - 2 a^3 phi(a) / Z;   a = 2 gives k = 2.37.
# Checks allow N_SE = 6 standard errors: a correct initializer fails one with probability
# ~2e-9, while n = 10^6 keeps the variance tolerance at 0.85% (normal), small enough to catch a
# factor like the truncation correction 0.88^2 = 0.77 or a forgotten 3 in sqrt(3 v).  (The seeds
# are fixed, so the tests are deterministic; the tolerance shows the agreement is not luck.)
N_SE = 6


def _truncated_kurtosis(a):
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    z = math.erf(a / math.sqrt(2))
    m2 = 1 - 2 * a * phi / z
    m4 = 3 * m2 - 2 * a ** 3 * phi / z
    return m4 / m2 ** 2


KURTOSIS = {"normal": 3.0, "uniform": 9 / 5, "truncated_normal": _truncated_kurtosis(2.0)}


def _assert_moments(w, variance, kurtosis):
    w = w.astype(np.float64).ravel()
    n = w.size
    mean_tol = N_SE * math.sqrt(variance / n)
    assert abs(w.mean()) <= mean_tol, (w.mean(), mean_tol)
    var = np.mean(w * w)
    var_tol = N_SE * variance * math.sqrt((kurtosis - 1) / n)
    assert abs(var - variance) <= var_tol, (var, variance, var_tol)


def _assert_within(w, bound, dtype):
    """Every |w| <= bound exactly, and the draws reach the bound (they fill the range)."""
    # The implementation computes sqrt(3 * scale / fan), the test the textbook expression
    # (e.g. sqrt(6 / (n_in + n_out))): equal up to a float64 ulp or two, hence 2^-50.  Rounding
    # to float32 is monotonic, so a float64 draw within the float64 limit stays within its
    # float32 rounding.
    assert np.abs(w).max() <= dtype(bound * (1 + 2.0 ** -50))
    # P(all 10^6 draws below 0.999 of the bound) is < e^-200 for the uniform and the truncated
    # normal (density 0.23/bound near the edge) alike
    assert np.abs(w).max() >= 0.999 * bound


def _all_initializers():
    """One of every kind, with ids."""
    objs = [init.zeros, init.constant(0.5), init.normal(), init.normal(std=0.1)]
    objs += [getattr(init, name) for name in SETTINGS]
    objs += [init.variance_scaling(1.5, mode, dist)
             for mode in init.MODES for dist in init.DISTRIBUTIONS]
    return objs


ALL = _all_initializers()
ALL_IDS = [repr(x) for x in ALL]
RANDOM = [x for x in ALL if not x.symmetric]
RANDOM_IDS = [repr(x) for x in RANDOM]


# ----------------------------------------------------------------------- the formulas

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(SETTINGS))
def test_named_scheme_matches_its_formula(name, dtype):
    distribution = SETTINGS[name][2]
    w = getattr(init, name)(SHAPE, rng=1234, dtype=dtype)
    assert w.dtype == dtype and w.shape == SHAPE
    _assert_moments(w, VARIANCE[name], KURTOSIS[distribution])
    if distribution == "uniform":
        _assert_within(w, LIMIT[name], dtype)
    elif distribution == "truncated_normal":
        _assert_within(w, 2 * math.sqrt(VARIANCE[name]) / 0.87962566103423978, dtype)
    else:
        # a plain normal is not truncated: 10^6 draws all below 4 std has probability e^-63
        assert np.abs(w).max() > 4 * math.sqrt(VARIANCE[name])


@pytest.mark.parametrize("distribution", init.DISTRIBUTIONS)
@pytest.mark.parametrize("mode", init.MODES)
def test_variance_scaling_matches_its_formula(mode, distribution):
    scale = 1.7
    fan = {"fan_in": N_IN, "fan_out": N_OUT, "fan_avg": (N_IN + N_OUT) / 2}[mode]
    variance = scale / fan
    w = init.variance_scaling(scale, mode, distribution)(SHAPE, rng=99, dtype=np.float64)
    _assert_moments(w, variance, KURTOSIS[distribution])
    if distribution == "uniform":
        _assert_within(w, math.sqrt(3 * variance), np.float64)
    elif distribution == "truncated_normal":
        # cut at 2 standard deviations of the underlying normal, whose std is inflated so
        # that the truncated draws have the stated variance
        _assert_within(w, 2 * math.sqrt(variance) / 0.87962566103423978, np.float64)
    else:
        assert np.abs(w).max() > 4 * math.sqrt(variance)


@pytest.mark.parametrize("std", [0.01, 0.1, 2.0])
def test_normal_matches_its_formula(std):
    w = init.normal(std=std)(SHAPE, rng=5, dtype=np.float64)
    _assert_moments(w, std ** 2, KURTOSIS["normal"])
    # independent of the fans: the same std for a layer of another size
    w = init.normal(std=std)((100, 10_000), rng=5, dtype=np.float64)
    _assert_moments(w, std ** 2, KURTOSIS["normal"])


def test_normal_default_std_is_0_01():
    assert init.normal().std == 0.01
    assert init.normal() == init.normal(std=0.01)


def test_truncated_normal_constant():
    from scipy.stats import truncnorm

    # TensorFlow/Keras' literal, and an independent computation
    assert init.TRUNCATED_NORMAL_STD == pytest.approx(0.87962566103423978, rel=1e-15)
    assert init.TRUNCATED_NORMAL_STD == pytest.approx(truncnorm(-2, 2).std(), rel=1e-12)
    assert 3 + truncnorm(-2, 2).stats(moments="k") == pytest.approx(KURTOSIS["truncated_normal"])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_zeros_and_constant(dtype):
    for shape in [(7,), (3, 4)]:
        z = init.zeros(shape, dtype=dtype)
        c = init.constant(0.1)(shape, dtype=dtype)
        assert z.shape == c.shape == shape and z.dtype == c.dtype == dtype
        assert not z.any()
        assert (c == dtype(0.1)).all()
    assert (init.constant(-3)((2, 2)) == -3).all()


# ---------------------------------------------------------- one general scheme, named settings

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(SETTINGS))
def test_named_scheme_is_its_variance_scaling_setting(name, dtype):
    preset = getattr(init, name)
    general = init.variance_scaling(*SETTINGS[name])
    assert isinstance(preset, init.VarianceScaling)
    assert (preset.scale, preset.mode, preset.distribution) == SETTINGS[name]
    shape = (37, 53)
    np.testing.assert_array_equal(preset(shape, rng=42, dtype=dtype),
                                  general(shape, rng=42, dtype=dtype), strict=True)


def test_aliases_are_the_same_object():
    assert init.xavier_uniform is init.glorot_uniform
    assert init.kaiming_uniform is init.he_uniform
    for alias, name in ALIASES.items():
        assert init.get_initializer(alias) is getattr(init, name)
        assert init.from_config({"name": alias}).get_config() == {"name": name}


# ------------------------------------------------------------------------- seeds and dtypes

@pytest.mark.parametrize("initializer", ALL, ids=ALL_IDS)
def test_same_seed_same_values(initializer):
    a = initializer((30, 20), rng=3)
    b = initializer((30, 20), rng=3)
    np.testing.assert_array_equal(a, b, strict=True)
    # a numpy integer is a seed too
    np.testing.assert_array_equal(initializer((30, 20), rng=np.int64(3)), a, strict=True)


@pytest.mark.parametrize("initializer", RANDOM, ids=RANDOM_IDS)
def test_different_seeds_and_advanced_generator_differ(initializer):
    shape = (30, 20)
    assert not np.array_equal(initializer(shape, rng=0), initializer(shape, rng=1))
    # an int seed means default_rng(seed); a Generator is used and advanced
    gen = np.random.default_rng(0)
    first = initializer(shape, rng=gen)
    second = initializer(shape, rng=gen)
    np.testing.assert_array_equal(first, initializer(shape, rng=0), strict=True)
    assert not np.array_equal(first, second)
    # None: fresh entropy each call
    assert not np.array_equal(initializer(shape), initializer(shape))


@pytest.mark.parametrize("initializer", [init.zeros, init.constant(0.5)], ids=repr)
def test_symmetric_initializers_draw_nothing(initializer):
    gen = np.random.default_rng(0)
    state = gen.bit_generator.state
    a = initializer((3, 4), rng=gen)
    assert gen.bit_generator.state == state
    np.testing.assert_array_equal(a, initializer((3, 4), rng=1), strict=True)
    np.testing.assert_array_equal(a, initializer((3, 4)), strict=True)


@pytest.mark.parametrize("initializer", ALL, ids=ALL_IDS)
def test_dtype_preserved_and_float32_is_rounded_float64(initializer):
    shape = (40, 25)
    w32 = initializer(shape, rng=8, dtype=np.float32)
    w64 = initializer(shape, rng=8, dtype=np.float64)
    for w, dtype in ((w32, np.float32), (w64, np.float64)):
        assert w.dtype == dtype and w.shape == shape and w.flags.c_contiguous
        assert w.flags.writeable and np.isfinite(w).all()
    # drawn in float64 and cast once: equal to the float32 rounding, bit for bit
    np.testing.assert_array_equal(w32, w64.astype(np.float32), strict=True)
    # the default dtype is float32; dtype names are accepted
    assert initializer(shape, rng=8).dtype == np.float32
    np.testing.assert_array_equal(initializer(shape, rng=8, dtype="float64"), w64, strict=True)


def test_each_call_returns_a_new_array():
    a = init.zeros((3,))
    a[0] = 1.0
    assert not init.zeros((3,)).any()


# ------------------------------------------------------------------------------- validation

BAD_HYPERPARAMETERS = [
    (lambda: init.normal(0), ValueError, "std=0; expected std > 0"),
    (lambda: init.normal(std=-0.1), ValueError, "std=-0.1; expected std > 0"),
    (lambda: init.normal(float("nan")), ValueError, "std=nan; expected a finite number"),
    (lambda: init.normal(float("inf")), ValueError, "std=inf; expected a finite number"),
    (lambda: init.normal("0.1"), TypeError, "std must be a real number; got '0.1'"),
    (lambda: init.normal(True), TypeError, "std must be a real number; got True"),
    (lambda: init.normal((784, 256)), TypeError,
     "std is (784, 256); normal takes hyperparameters, not a shape"),
    (lambda: init.constant((3,)), TypeError, "value is (3,); constant takes hyperparameters"),
    (lambda: init.constant(float("nan")), ValueError, "value=nan; expected a finite number"),
    (lambda: init.constant(None), TypeError, "value must be a real number; got None"),
    (lambda: init.variance_scaling(0.0), ValueError, "scale=0.0; expected scale > 0"),
    (lambda: init.variance_scaling(-2), ValueError, "scale=-2; expected scale > 0"),
    (lambda: init.variance_scaling(float("nan")), ValueError, "scale=nan; expected a finite"),
    (lambda: init.variance_scaling(mode="fan_sum"), ValueError,
     "mode='fan_sum' is not supported; expected one of 'fan_in', 'fan_out', 'fan_avg'"),
    (lambda: init.variance_scaling(distribution="gaussian"), ValueError,
     "distribution='gaussian' is not supported; expected one of 'normal', 'uniform', "
     "'truncated_normal'"),
]

BAD_CALLS = [
    # shapes
    (init.he_normal, {"shape": (784,)}, ValueError,
     "shape is (784,); he_normal needs a 2-D shape (fan_in, fan_out); initialize biases with "
     "zeros or constant(c)"),
    (init.normal(), {"shape": (2, 3, 4)}, ValueError,
     "shape is (2, 3, 4); normal needs a 2-D shape (fan_in, fan_out)"),
    (init.zeros, {"shape": (2, 3, 4)}, ValueError,
     "shape is (2, 3, 4); zeros needs a shape (n_in, n_out) for weights or (n_out,) for biases"),
    (init.constant(1.0), {"shape": ()}, ValueError, "shape is (); constant needs a shape"),
    (init.he_normal, {"shape": (0, 3)}, ValueError, "shape is (0, 3); expected positive"),
    (init.zeros, {"shape": (-4,)}, ValueError, "shape is (-4,); expected positive"),
    (init.he_normal, {"shape": (2.5, 3)}, TypeError,
     "shape is (2.5, 3); expected integer dimensions, got 2.5 (float)"),
    (init.he_normal, {"shape": (True, 3)}, TypeError, "expected integer dimensions, got True"),
    (init.he_normal, {"shape": 784}, TypeError,
     "shape is 784 (int); he_normal needs a 2-D shape (fan_in, fan_out), as a tuple"),
    (init.glorot_uniform, {"shape": "ab"}, TypeError, "shape is 'ab' (str)"),
    (init.he_normal, {"shape": (2 ** 31, 1)}, ValueError, "dimensions above 2147483647"),
    # rng
    (init.he_normal, {"rng": "seed"}, TypeError,
     "rng is 'seed' (str); expected an int seed >= 0, a numpy.random.Generator"),
    (init.he_normal, {"rng": 1.5}, TypeError, "rng is 1.5 (float)"),
    (init.he_normal, {"rng": True}, TypeError, "rng is True (bool)"),
    (init.zeros, {"rng": np.random.RandomState(0)}, TypeError, r"rng is .* \(RandomState\)"),
    (init.he_normal, {"rng": -1}, ValueError, "rng=-1; expected a seed >= 0"),
    # dtype
    (init.he_normal, {"dtype": np.int32}, TypeError,
     "dtype is <class 'numpy.int32'>; expected numpy.float32 or numpy.float64"),
    (init.zeros, {"dtype": np.float16}, TypeError, "dtype is .*float16.*; expected"),
    (init.normal(), {"dtype": "complex128"}, TypeError, "dtype is 'complex128'; expected"),
    (init.he_uniform, {"dtype": "no such dtype"}, TypeError, "dtype is 'no such dtype'"),
    (init.he_normal, {"dtype": None}, TypeError,
     "dtype is None; expected numpy.float32 or numpy.float64"),
]


def _match(message):
    # messages given as plain text are matched literally; the few with regex syntax are not
    return message if message.startswith(("rng is .", "dtype is .")) else re.escape(message)


@pytest.mark.parametrize("make, exc, message", BAD_HYPERPARAMETERS,
                         ids=[m for _, _, m in BAD_HYPERPARAMETERS])
def test_bad_hyperparameters(make, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        make()


@pytest.mark.parametrize("initializer, kwargs, exc, message", BAD_CALLS,
                         ids=[m[:50] for *_, m in BAD_CALLS])
def test_bad_calls(initializer, kwargs, exc, message):
    kwargs = {"shape": (3, 4), **kwargs}
    shape = kwargs.pop("shape")
    with pytest.raises(exc, match=_match(message)):
        initializer(shape, **kwargs)


def test_rng_and_dtype_are_keyword_only():
    # so that a seed is never taken for a dtype, or the reverse
    with pytest.raises(TypeError, match="positional"):
        init.he_normal((3, 4), 0)
    with pytest.raises(TypeError, match="positional"):
        init.zeros((3,), None, np.float64)


def test_initializers_are_immutable():
    with pytest.raises(AttributeError):
        init.he_normal.scale = 3.0
    with pytest.raises(AttributeError):
        init.normal(0.1).std = 1.0
    with pytest.raises(AttributeError):
        init.constant(0.1).value = 0.2


# ------------------------------------------------------------------- configs and selection

@pytest.mark.parametrize("initializer", ALL, ids=ALL_IDS)
def test_config_round_trip(initializer):
    config = initializer.get_config()
    assert set(config) == {"name", *initializer._param_names}
    assert all(isinstance(v, (str, float)) for v in config.values())
    restored = json.loads(json.dumps(config))
    for rebuilt in (init.from_config(restored), init.get_initializer(restored),
                    eval(repr(initializer), vars(init))):
        assert rebuilt == initializer and hash(rebuilt) == hash(initializer)
        assert rebuilt.get_config() == config
        np.testing.assert_array_equal(rebuilt((6, 5), rng=2), initializer((6, 5), rng=2),
                                      strict=True)
    if not initializer._param_names:
        assert init.from_config(config) is initializer


def test_config_examples():
    assert init.he_normal.get_config() == {"name": "he_normal"}
    assert init.kaiming_normal.get_config() == {"name": "kaiming_normal"}
    assert init.normal(std=0.1).get_config() == {"name": "normal", "std": 0.1}
    assert init.constant(1).get_config() == {"name": "constant", "value": 1.0}
    assert init.variance_scaling(2, "fan_out", "truncated_normal").get_config() == {
        "name": "variance_scaling", "scale": 2.0, "mode": "fan_out",
        "distribution": "truncated_normal"}
    assert repr(init.he_normal) == "he_normal"
    assert repr(init.constant(0.5)) == "constant(value=0.5)"
    assert repr(init.variance_scaling()) == (
        "variance_scaling(scale=1.0, mode='fan_in', distribution='normal')")
    # a named setting and the general form draw the same bits but are saved differently
    assert init.kaiming_normal != init.variance_scaling(2.0, "fan_in", "normal")


@pytest.mark.parametrize("name", init.NAMES)
def test_get_initializer_by_name(name):
    initializer = init.get_initializer(name)
    assert isinstance(initializer, init.Initializer)
    assert initializer.name == ALIASES.get(name, name)
    assert init.get_initializer(initializer) is initializer
    assert init.is_symmetric(name) == (name == "zeros")
    w = initializer((5, 3), rng=0, dtype=np.float64)
    assert w.shape == (5, 3) and w.dtype == np.float64


def test_names_cover_the_public_initializers():
    public = {n for n in init.__all__ if isinstance(getattr(init, n), init.Initializer)}
    factories = {"constant", "normal", "variance_scaling"}
    assert set(init.NAMES) == public | (factories - {"constant"})
    assert init.get_initializer("normal") == init.normal(0.01)
    assert init.get_initializer("variance_scaling") == init.variance_scaling(1.0, "fan_in",
                                                                               "normal")


BAD_SELECTIONS = [
    (lambda: init.get_initializer("he"), ValueError,
     "initializer='he' is not supported; expected one of 'zeros', 'glorot_uniform', "
     "'xavier_uniform', 'xavier_normal', 'glorot_normal', 'he_uniform', 'kaiming_uniform', "
     "'kaiming_normal', 'he_normal', 'lecun_uniform', 'lecun_normal', 'normal', "
     "'variance_scaling' (or a config dict"),
    (lambda: init.get_initializer("uniform"), ValueError,
     "initializer='uniform' is no longer supported: fastnn's former 'uniform', "
     "U(+-1/sqrt(n_in)) (PyTorch nn.Linear's default), is variance_scaling(1/3, 'fan_in', "
     "'uniform'); Keras' 'uniform' is U(-0.05, 0.05)"),
    (lambda: init.from_config({"name": "uniform"}), ValueError,
     "config['name']='uniform' is no longer supported"),
    (lambda: init.get_initializer("constant"), ValueError,
     "initializer 'constant' needs a value; use constant(c) or the config"),
    (lambda: init.get_initializer(3), TypeError, "initializer is 3 (int); expected a name"),
    (lambda: init.get_initializer(np.zeros), TypeError, "initializer is <"),
    (lambda: init.from_config("he_normal"), TypeError,
     "config is 'he_normal' (str); expected a dict"),
    (lambda: init.from_config({}), ValueError, "config {} has no 'name'"),
    (lambda: init.from_config({"name": "bogus"}), ValueError,
     "config['name']='bogus' is not supported; expected one of 'zeros',"),
    (lambda: init.from_config({"name": "he_normal", "scale": 3.0}), ValueError,
     "config for 'he_normal' has keys ['scale']; expected none"),
    (lambda: init.from_config({"name": "normal", "mean": 0.0}), ValueError,
     "config for 'normal' has unexpected keys ['mean']; expected only ['std']"),
    (lambda: init.from_config({"name": "constant"}), ValueError,
     "config for 'constant' is missing ['value']"),
    (lambda: init.from_config({"name": "normal", "std": -1.0}), ValueError,
     "std=-1.0; expected std > 0"),
    (lambda: init.default_initializer("softmax"), ValueError,
     "activation='softmax' is not supported; expected one of 'identity', 'sigmoid', 'tanh', "
     "'relu', 'leaky_relu'"),
    (lambda: init.is_symmetric("bogus"), ValueError, "initializer='bogus' is not supported"),
]


@pytest.mark.parametrize("call, exc, message", BAD_SELECTIONS,
                         ids=[m[:50] for _, _, m in BAD_SELECTIONS])
def test_bad_selections(call, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        call()


# ------------------------------------------------------------ defaults and the symmetry flag

def test_default_initializer():
    # the same activations as the layers (listed, not imported, in fastnn.nn.init)
    assert set(init._ACTIVATIONS) == set(ACTIVATIONS) | set(ACTIVATION_ALIASES)
    for activation in ("relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "swish"):
        assert init.default_initializer(activation) is init.kaiming_normal
    for activation in ("tanh", "sigmoid", "identity", "softplus"):
        assert init.default_initializer(activation) is init.glorot_uniform
    # Klambauer et al. (2017): SELU's fixed point assumes Var(w) = 1/n_in
    assert init.default_initializer("selu") == init.variance_scaling(1.0, "fan_in", "normal")


def test_symmetric_flag():
    for sym in (init.zeros, init.constant(0.1)):
        assert sym.symmetric and init.is_symmetric(sym)
        assert init.is_symmetric(sym.get_config())
        w = sym((4, 3))
        assert (w == w[:, :1]).all()  # every unit (column) has the same incoming weights
    for initializer in RANDOM:
        assert not initializer.symmetric and not init.is_symmetric(initializer)


def _train(W1, W2, steps=50, lr=0.2):
    """SGD on a 5-4-1 tanh network (MSE) with fastnn's layers; returns the trained W1."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5))
    y = np.sin(X.sum(axis=1, keepdims=True))
    W1, W2 = W1.copy(), W2.copy()
    b1, b2 = init.zeros((4,), dtype=np.float64), init.zeros((1,), dtype=np.float64)
    for _ in range(steps):
        H = fastnn.dense_forward(X, W1, b1, "tanh")
        Y = fastnn.dense_forward(H, W2, b2, "identity")
        dW2, db2, dH = fastnn.dense_backward(H, W2, Y, (Y - y) / len(X), "identity")
        dW1, db1, _ = fastnn.dense_backward(X, W1, H, dH, "tanh", compute_dX=False)
        for p, g in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2)):
            p -= lr * g
    return W1


def test_symmetry_persists_through_training_and_random_init_breaks_it():
    # What `symmetric` warns about: with constant weights every hidden unit gets the same
    # gradient, so the columns of W1 move together and stay equal (up to BLAS rounding).
    W1 = init.constant(0.3)((5, 4), dtype=np.float64)
    W2 = init.constant(0.3)((4, 1), dtype=np.float64)
    trained = _train(W1, W2)
    assert np.abs(trained - W1).max() > 1e-2  # it did learn ...
    assert np.abs(trained - trained[:, :1]).max() < 1e-12  # ... one feature, four times
    W1 = init.glorot_uniform((5, 4), rng=0, dtype=np.float64)
    W2 = init.glorot_uniform((4, 1), rng=1, dtype=np.float64)
    trained = _train(W1, W2)
    assert np.abs(trained - trained[:, :1]).max() > 1e-1


# ------------------------------------------------------------------------- documentation

DOCUMENTED = {
    **{name: type(getattr(init, name)).__doc__ for name in ["zeros", *SETTINGS]},
    "constant": init.constant.__doc__,
    "normal": init.normal.__doc__,
    "variance_scaling": init.variance_scaling.__doc__,
}


@pytest.mark.parametrize("name", list(DOCUMENTED))
def test_docstrings_state_formula_std_and_variance(name):
    doc = DOCUMENTED[name].lower()
    assert "standard deviation" in doc and "variance" in doc
    # ... and when to use it
    assert "relu" in doc or "tanh" in doc or "bias" in doc


# ------------------------------------------- each name means what the peer library means by it

# fastnn name -> the torch.nn.init function of that name, called with its default arguments
TORCH_NAMES = {"xavier_uniform": "xavier_uniform_", "xavier_normal": "xavier_normal_",
               "kaiming_uniform": "kaiming_uniform_", "kaiming_normal": "kaiming_normal_"}
# names only Keras uses (keras.initializers; Keras is not installed here, so these are checked
# against its definitions in test_named_scheme_matches_its_formula: truncated normals cut at
# 2 stddev with stddev = sqrt(variance) / 0.87962566103423978, uniforms U(+-sqrt(3 variance)))
KERAS_NAMES = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
               "lecun_normal")


def test_every_name_belongs_to_a_peer():
    # a new name must be added to one of the two tables (or be a factory), so it is checked
    ready = set(init.NAMES) - {"zeros", "normal", "variance_scaling"}
    assert ready == set(TORCH_NAMES) | set(KERAS_NAMES)


@pytest.mark.parametrize("name", list(TORCH_NAMES))
def test_torch_names_draw_what_torch_draws(name):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    # torch stores a Linear weight as (n_out, n_in); its fan_in is size(1), our shape[0]
    t = getattr(torch.nn.init, TORCH_NAMES[name])(
        torch.empty(N_OUT, N_IN, dtype=torch.float64)).numpy().T
    w = getattr(init, name)(SHAPE, rng=7, dtype=np.float64)
    initializer = getattr(init, name)
    distribution = initializer.distribution
    # the same closed-form variance for both (so the same fan and gain) ...
    variance = VARIANCE[ALIASES.get(name, name)]
    for draws in (t, w):
        _assert_moments(draws, variance, KURTOSIS[distribution])
    # ... and the same family: the same bound for a uniform, no truncation for a normal
    if distribution == "uniform":
        bound = LIMIT[ALIASES.get(name, name)]
        _assert_within(t, bound, np.float64)
        _assert_within(w, bound, np.float64)
    else:
        assert distribution == "normal"
        assert np.abs(t).max() > 4 * math.sqrt(variance)
        assert np.abs(w).max() > 4 * math.sqrt(variance)
    # the sample variances agree with each other within their joint standard error
    se = variance * math.sqrt((KURTOSIS[distribution] - 1) / t.size) * math.sqrt(2)
    assert abs(np.mean(t * t) - np.mean(w * w)) <= N_SE * se


def test_xavier_normal_is_glorot_not_lecun():
    # the reported fault: xavier_normal drew LeCun's N(0, 1/n_in); PyTorch's is
    # N(0, 2/(n_in + n_out)).  With n_in = 2000, n_out = 500 the two differ by a factor 1.6.
    w = init.xavier_normal(SHAPE, rng=3, dtype=np.float64)
    _assert_moments(w, 2 / (N_IN + N_OUT), KURTOSIS["normal"])
    assert init.get_initializer("xavier_normal") is init.xavier_normal


def test_retired_uniform_name():
    with pytest.raises(AttributeError, match=re.escape(
            "fastnn.nn.init.uniform is no longer provided: fastnn's former 'uniform'")):
        init.uniform  # noqa: B018
    assert not hasattr(init, "uniform")
    with pytest.raises(AttributeError, match="has no attribute 'bogus'"):
        init.bogus  # noqa: B018


def _old_pickle(cls, setting):
    """The bytes a pickle of an initializer of class `cls` held before the renaming: the class
    and its three slots (object.__reduce_ex__'s layout for a slotted object)."""
    import pickle
    obj = object.__new__(cls)
    for key, value in zip(("_scale", "_mode", "_distribution"), setting):
        object.__setattr__(obj, key, value)
    return pickle.dumps(obj)


@pytest.mark.parametrize("cls, old_setting, now", [
    ("HeNormal", (2.0, "fan_in", "normal"), "kaiming_normal"),
    ("GlorotNormal", (1.0, "fan_avg", "normal"), "xavier_normal"),
    ("LecunNormal", (1.0, "fan_in", "normal"), None),
    ("Uniform", (1.0 / 3.0, "fan_in", "uniform"), None),
    ("GlorotUniform", (1.0, "fan_avg", "uniform"), "glorot_uniform"),
    ("HeUniform", (2.0, "fan_in", "uniform"), "he_uniform"),
])
def test_old_pickles_keep_their_draws(cls, old_setting, now):
    import pickle
    loaded = pickle.loads(_old_pickle(getattr(init, cls), old_setting))
    expected = getattr(init, now) if now else init.variance_scaling(*old_setting)
    assert loaded == expected and type(loaded) is type(expected)
    np.testing.assert_array_equal(loaded((30, 20), rng=1),
                                  init.variance_scaling(*old_setting)((30, 20), rng=1),
                                  strict=True)


@pytest.mark.parametrize("initializer", ALL, ids=ALL_IDS)
def test_pickle_round_trip(initializer):
    import pickle
    loaded = pickle.loads(pickle.dumps(initializer))
    assert loaded == initializer and loaded.get_config() == initializer.get_config()


def test_the_legacy_class_cannot_be_built():
    with pytest.raises(TypeError, match="no longer an initializer"):
        init.Uniform()
