"""Bad input at every public entry point raises a clear error, never a crash or a silent
wrong answer: the same mutations applied to every array argument of every kernel and model
entry point, shapes that do not match, out= buffers, non-finite values, sigma and sample
weights, values that overflow the model dtype, unknown names and the other arguments.

Validation lives in fastnn/_validation.py and the Python faces that call it.
"""
import numpy as np
import pytest

import fastnn
from fastnn.nn import init
from fastnn.nn.layers import ACTIVATIONS
from fastnn.nn.losses import LOSS_NAMES, CrossEntropy, GaussianNLL, MSE
from fastnn.nn.model import MLP, OUTPUT_LINKS
from fastnn.optim.optimizers import OPTIMIZERS, SCHEDULES, SGD
from fastnn.training.trainer import fit
from tests._helpers import check_error, classification_data, layer_arrays


# ======================================================================================
# Bad input: the same mutations on every array argument of every entry point
# ======================================================================================
# "Kernel" arguments must already be float32/float64 arrays (the kernels never convert
# silently); "data" arguments (X, y, sample_weight of models) convert real numbers once.

def _mutations(x, name):
    """(id, bad array, exception, fragments) for an array argument that must be a float array."""
    wrong_ndim = x[None] if x.ndim < 3 else x[0]
    return [
        ("ndim", wrong_ndim, ValueError, [name, f"{x.ndim}-dimensional", str(wrong_ndim.shape)]),
        ("int64", x.astype(np.int64), TypeError, [name, "dtype int64", "float32 or float64"]),
        ("bool", x > 0, TypeError, [name, "dtype bool", "float32 or float64"]),
        ("float16", x.astype(np.float16), TypeError, [name, "dtype float16", "float32"]),
        ("complex", x.astype(np.complex128), TypeError, [name, "dtype complex128", "float32"]),
        ("object", x.astype(object), TypeError, [name, "dtype object", "float32 or float64"]),
        ("list", x.tolist(), TypeError, [name, "numpy.ndarray", "list"]),
        ("empty", x[:0], ValueError, [name, "empty", str(x[:0].shape)]),
    ]


def _kernel_calls():
    """(entry id, argument, build(arrays) -> kwargs, call(**kwargs))."""
    forward = lambda X, W, b: fastnn.dense_forward(X, W, b, "tanh")  # noqa: E731
    backward = lambda X, W, A, dA: fastnn.dense_backward(X, W, A, dA, "tanh")  # noqa: E731

    def loss_call(Z):
        return MSE().loss_and_grad(Z, np.zeros((6, 3)))

    def pick(*names):
        return lambda arrays: {k: arrays[k] for k in names}

    calls = [("dense_forward", arg, pick("X", "W", "b"), forward) for arg in ("X", "W", "b")]
    calls += [("dense_backward", arg, pick("X", "W", "A", "dA"), backward)
              for arg in ("X", "W", "A", "dA")]
    calls += [("loss_and_grad", "Z", lambda arrays: {"Z": arrays["A"]}, loss_call),
              ("output", "Z", lambda arrays: {"Z": arrays["A"]},
               lambda Z: CrossEntropy().output(Z))]
    return calls


KERNEL_CASES = [
    pytest.param(entry, arg, build, call, mutation, id=f"{entry}-{arg}-{mutation}")
    for entry, arg, build, call in _kernel_calls()
    for mutation in ("ndim", "int64", "bool", "float16", "complex", "object", "list", "empty")
]


@pytest.mark.parametrize("entry, arg, build, call, mutation", KERNEL_CASES)
def test_every_kernel_argument_rejects_bad_arrays_by_name(entry, arg, build, call, mutation):
    kwargs = build(layer_arrays())
    bad = {m[0]: m for m in _mutations(kwargs[arg], arg)}[mutation]
    kwargs[arg] = bad[1]
    check_error(lambda: call(**kwargs), bad[2], *bad[3])


def _model_calls():
    """(entry id, argument, call(X, y, sample_weight)) over a fresh [3, 5, 3] model."""
    def model():
        return MLP([3, 5, 3], seed=0)
    return [
        ("predict", "X", lambda X, y, sw: model().predict(X)),
        ("forward", "X", lambda X, y, sw: model().forward(X)),
        ("loss_and_grad", "X", lambda X, y, sw: model().loss_and_grad(X, y, "cross_entropy", sw)),
        ("fit", "X", lambda X, y, sw: fit(model(), X, y, "cross_entropy", epochs=1,
                                          sample_weight=sw)),
        ("check_gradients", "X", lambda X, y, sw: fastnn.check_gradients(
            MLP([3, 2, 3], dtype=np.float64, seed=0), X, y, "cross_entropy", sw)),
        ("loss_and_grad", "y", lambda X, y, sw: model().loss_and_grad(X, y, "cross_entropy", sw)),
        ("fit", "y", lambda X, y, sw: fit(model(), X, y, "cross_entropy", epochs=1,
                                          sample_weight=sw)),
        ("loss_and_grad", "sample_weight",
         lambda X, y, sw: model().loss_and_grad(X, y, "cross_entropy", sw)),
        ("fit", "sample_weight", lambda X, y, sw: fit(model(), X, y, "cross_entropy", epochs=1,
                                                      sample_weight=sw)),
    ]


def _data_mutations(arg):
    """(id, replace(X, y, sw) -> (X, y, sw), exception, fragments) for model data."""
    def on(arg, f):
        def apply(X, y, sw):
            values = {"X": X, "y": y, "sample_weight": sw}
            values[arg] = f(values[arg])
            return values["X"], values["y"], values["sample_weight"]
        return apply

    def with_nan(a):
        a = np.array(a, dtype=np.float64)
        a.flat[3] = np.nan
        return a

    def with_inf(a):
        a = np.array(a, dtype=np.float64)
        a.flat[-1] = -np.inf
        return a

    cases = [
        ("complex", on(arg, lambda a: np.asarray(a, np.complex128)), TypeError,
         [arg, "dtype complex128", "expected", "real"]),
        ("object", on(arg, lambda a: np.asarray(a).astype(object)), TypeError,
         [arg, "dtype object", "expected", "real"]),
        ("strings", on(arg, lambda a: np.asarray(a).astype(str)), TypeError,
         [arg, "dtype <U", "expected", "real"]),
        ("ragged", on(arg, lambda a: [list(np.atleast_1d(r)) for r in a[:-1]] + [[1.0] * 7]),
         ValueError, [arg, "not a rectangular array"]),
        ("nan", on(arg, with_nan), ValueError, [arg, "NaN or infinity"]),
        ("inf", on(arg, with_inf), ValueError, [arg, "NaN or infinity"]),
        ("one-row-short", on(arg, lambda a: np.asarray(a)[:-1]), ValueError,
         ["40", "39"]),
        ("3-d", on(arg, lambda a: np.asarray(a)[:, None, None]), ValueError,
         [arg, "(40, 1, 1"]),
    ]
    if arg == "X":
        cases += [("empty", lambda X, y, sw: (X[:0], y[:0], sw[:0]), ValueError,
                   ["X has 0 samples", "expected at least one"]),
                  ("zero-features", on("X", lambda a: a[:, :0]), ValueError,
                   ["X has 0 features", "expects 3"]),
                  ("wrong-features", on("X", lambda a: a[:, :2]), ValueError,
                   ["X has 2 features", "expects 3"]),
                  ("1-d", on("X", lambda a: a[:, 0]), ValueError,
                   ["X must be 2-dimensional", "(40,)"])]
    if arg == "y":
        cases += [("label-too-large", on("y", lambda a: np.where(a == 2, 3, a)), ValueError,
                   ["class labels in [0, 3]", "expected labels in [0, 3)"]),
                  ("negative-label", on("y", lambda a: a - 1), ValueError,
                   ["class labels in [-1, 1]", "expected labels in [0, 3)"]),
                  ("fractional-label", on("y", lambda a: a + 0.5), ValueError,
                   ["non-integer value", "integer class labels"]),
                  ("None", on("y", lambda a: None), ValueError, ["y is None", "expected"]),
                  ("scalar", on("y", lambda a: 1), ValueError, ["y is 1", "expected"])]
    if arg == "sample_weight":
        cases += [("negative", on(arg, lambda a: a - 2.0), ValueError,
                   ["sample_weight has negative entries", "expected weights >= 0"]),
                  ("all-zero", on(arg, lambda a: 0.0 * a), ValueError,
                   ["sample_weight is all zeros", "at least one positive"]),
                  ("too-large", on(arg, lambda a: np.full(len(a), 1e300)), ValueError,
                   ["sample_weight has entries too large for float32", "1e+300"])]
    return cases


MODEL_CASES = [
    pytest.param(entry, arg, call, mutation, id=f"{entry}-{arg}-{mutation[0]}")
    for entry, arg, call in _model_calls()
    for mutation in _data_mutations(arg)
    if not (entry in ("predict", "forward") and mutation[0] == "one-row-short")
]


@pytest.mark.parametrize("entry, arg, call, mutation", MODEL_CASES)
def test_every_data_argument_rejects_bad_data_by_name(entry, arg, call, mutation):
    X, y = classification_data()
    sw = np.linspace(0.5, 2.0, len(y))
    _, replace, exc, fragments = mutation
    bad = replace(X, y, sw)
    check_error(lambda: call(*bad), exc, *fragments)


# ---------------------------------------------------------------- shapes that do not match

def _shape_cases():
    a = layer_arrays()
    X, W, b, A, dA = a["X"], a["W"], a["b"], a["A"], a["dA"]
    Z, Y = np.zeros((4, 3)), np.zeros((4, 3))
    return [
        ("W-rows", lambda: fastnn.dense_forward(X, W[:3], b), ValueError,
         ["W has shape (3, 3)", "expected (4, n_out)", "X of shape (6, 4)"]),
        ("b-length", lambda: fastnn.dense_forward(X, W, b[:2]), ValueError,
         ["b has shape (2,)", "expected (3,)"]),
        ("out-shape", lambda: fastnn.dense_forward(X, W, b, out=np.empty((6, 4))), ValueError,
         ["out has shape (6, 4)", "expected (6, 3)"]),
        ("out-dtype", lambda: fastnn.dense_forward(X, W, b, out=np.empty((6, 3), np.float32)),
         TypeError, ["out has dtype float32", "expected float64"]),
        ("out-int", lambda: fastnn.dense_forward(X, W, b, out=np.empty((6, 3), np.int64)),
         TypeError, ["out has dtype int64", "expected float64"]),
        ("out-list", lambda: fastnn.dense_forward(X, W, b, out=[[0.0] * 3] * 6), TypeError,
         ["out must be a numpy.ndarray", "list"]),
        ("A-rows", lambda: fastnn.dense_backward(X, W, A[:5], dA), ValueError,
         ["A has shape (5, 3)", "expected (6, 3)"]),
        ("dA-cols", lambda: fastnn.dense_backward(X, W, A, dA[:, :2]), ValueError,
         ["dA has shape (6, 2)", "expected (6, 3)"]),
        ("out_dW", lambda: fastnn.dense_backward(X, W, A, dA, out_dW=np.empty((3, 4))),
         ValueError, ["out_dW has shape (3, 4)", "expected (4, 3)"]),
        ("out_dX", lambda: fastnn.dense_backward(X, W, A, dA, out_dX=np.empty((6, 3))),
         ValueError, ["out_dX has shape (6, 3)", "expected (6, 4)"]),
        ("mixed-dtypes", lambda: fastnn.dense_backward(X, W.astype(np.float32), A, dA),
         TypeError, ["W has dtype float32", "expected float64"]),
        ("loss-y-rows", lambda: MSE()(Z, Y[:3]), ValueError, ["y has 3 rows", "expected 4"]),
        ("loss-y-cols", lambda: MSE()(Z, Y[:, :2]), ValueError,
         ["y has shape (4, 2)", "expects (n_samples, 3)"]),
        ("loss-sw", lambda: MSE()(Z, Y, np.ones(5)), ValueError,
         ["sample_weight has 5 entries", "expected 4"]),
        ("loss-sw-2d", lambda: MSE()(Z, Y, np.ones((4, 1))), ValueError,
         ["sample_weight must be 1-dimensional", "(4, 1)"]),
        ("loss-out", lambda: MSE().loss_and_grad(Z, Y, out=np.empty((4, 2))), ValueError,
         ["out has shape (4, 2)", "expected (4, 3)"]),
        ("sigma-rows", lambda: GaussianNLL(np.ones(3))(Z, Y), ValueError,
         ["sigma has 3 entries", "expected 4"]),
        ("learned-odd", lambda: GaussianNLL("learned")(Z, Y), ValueError,
         ["even number of outputs", "got 3"]),
        ("probability-rows", lambda: CrossEntropy()(Z, np.full((4, 2), 0.5)), ValueError,
         ["y has shape (4, 2)", "probability rows of shape (n_samples, 3)"]),
        ("set_flat_params", lambda: MLP([3, 2]).set_flat_params(np.zeros(7)), ValueError,
         ["params has shape (7,)", "expected (8,)"]),
        ("fit-sigma-rows", lambda: fit(MLP([3, 1]), np.zeros((5, 3)), np.zeros(5),
                                       GaussianNLL(np.ones(4))), ValueError,
         ["sigma has 4 entries", "expected 5"]),
        ("validation-rows", lambda: fit(MLP([3, 2]), np.zeros((5, 3)), np.zeros(5, int),
                                        "cross_entropy",
                                        validation_data=(np.zeros((2, 3)), np.zeros(3, int))),
         ValueError, ["X_val has 2 samples but y_val has 3"]),
        ("validation-features", lambda: fit(MLP([3, 2]), np.zeros((5, 3)), np.zeros(5, int),
                                            "cross_entropy",
                                            validation_data=(np.zeros((2, 4)), [0, 1])),
         ValueError, ["X_val has 4 features", "expects 3"]),
        ("layers", lambda: MLP.from_layers([fastnn.Dense(3, 4), fastnn.Dense(5, 2)]),
         ValueError, ["layers[1] has n_in=5", "expected 4"]),
    ]


SHAPE_CASES = [pytest.param(*case, id=case[0]) for case in _shape_cases()]


@pytest.mark.parametrize("name, call, exc, fragments", SHAPE_CASES)
def test_mismatched_shapes_are_rejected_with_both_shapes(name, call, exc, fragments):
    check_error(call, exc, *fragments)


# ------------------------------------------------------------ out= buffers fastnn writes into

def test_out_buffers_must_be_writeable_contiguous_and_separate():
    a = layer_arrays()
    X, W, b, A, dA = a["X"], a["W"], a["b"], a["A"], a["dA"]
    read_only = np.empty((6, 3))
    read_only.flags.writeable = False
    check_error(lambda: fastnn.dense_forward(X, W, b, out=read_only), ValueError,
                "out is read-only", "expected a writeable array")
    check_error(lambda: MSE().loss_and_grad(A, dA, out=read_only), ValueError,
                "out is read-only")
    for bad, what in ((np.empty((3, 6)).T, "Fortran order"),
                      (np.empty((6, 6))[:, ::2], "strided"),
                      (np.empty((6, 3))[::-1], "negative strides")):
        check_error(lambda: fastnn.dense_forward(X, W, b, out=bad), ValueError,
                    "out must be C-contiguous")
        check_error(lambda: fastnn.dense_backward(X, W, A, dA, out_dX=np.empty((4, 6)).T),
                    ValueError, "out_dX must be C-contiguous")
    # outputs written while others hold results may not overlap them
    square = layer_arrays(n=4, n_in=4, n_out=4)
    buf = np.empty((4, 4))
    check_error(lambda: fastnn.dense_backward(square["X"], square["W"], square["A"],
                                              square["dA"], out_dW=buf, out_dX=buf),
                ValueError, "out_dX shares memory with out_dW")
    check_error(lambda: fastnn.dense_backward(square["X"], square["W"], square["A"],
                                              square["dA"], out_dW=buf, out_db=buf[0]),
                ValueError, "out_db shares memory with out_dW")
    check_error(lambda: MSE().loss_and_grad(A, dA, out=dA), ValueError,
                "out shares memory with y")


def test_model_state_fastnn_writes_must_be_writeable():
    X, y = classification_data()
    model = MLP([3, 4, 3], seed=0)
    before = model.get_flat_params()
    model.params.flags.writeable = False
    check_error(lambda: fit(model, X, y, "cross_entropy", epochs=1), ValueError,
                "model.params is read-only")
    check_error(lambda: SGD().step(model), ValueError, "model.params is read-only")
    check_error(lambda: model.set_flat_params(before), ValueError, "model.params is read-only")
    np.testing.assert_array_equal(model.predict(X), MLP([3, 4, 3], seed=0).predict(X))
    model.params.flags.writeable = True
    model.grads.flags.writeable = False
    check_error(lambda: model.loss_and_grad(X, y, "cross_entropy"), ValueError,
                "model.grads is read-only")


# ------------------------------------------------------------- NaN, inf, sigma, weights

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_values_are_rejected_wherever_they_are_not_meaningful(bad):
    X, y = np.zeros((4, 3)), np.zeros((4, 2))
    Xb, yb = X.copy(), y.copy()
    Xb[2, 1] = bad
    yb[3, 0] = bad
    model = MLP([3, 2], seed=0)
    check_error(lambda: model.predict(Xb), ValueError,
                "X contains NaN or infinity (first at row 2, column 1)")
    check_error(lambda: model.loss_and_grad(X, yb, "mse"), ValueError,
                "y contains NaN or infinity")
    check_error(lambda: fit(model, X, y, "mse", sample_weight=[1.0, bad, 1.0, 1.0]),
                ValueError, "sample_weight contains NaN or infinity")
    check_error(lambda: fit(model, X, y, "mse", validation_data=(Xb, y)), ValueError,
                "X_val contains NaN or infinity (first at row 2, column 1)")
    check_error(lambda: MSE()(Xb[:, :2], y), ValueError, "Z contains NaN or infinity")
    check_error(lambda: GaussianNLL([1.0, bad]), ValueError, "sigma contains NaN or infinity",
                "expected finite values > 0")
    check_error(lambda: GaussianNLL(bad), ValueError, f"sigma={bad!r}",
                "expected a finite number")
    check_error(lambda: CrossEntropy()(X, [0, 1, bad, 2]), ValueError,
                "y contains NaN or infinity", "integer class labels")
    check_error(lambda: SGD(lr=bad), ValueError, "lr=", "expected a finite number")
    check_error(lambda: init.constant(bad), ValueError, "value=", "finite")
    # the output link of non-finite logits is defined: NaN/inf propagate, nothing is raised
    assert np.isnan(CrossEntropy().output(np.full((1, 2), np.nan))).all()


@pytest.mark.parametrize("sigma, fragments", [
    (0.0, ["sigma=0.0", "expected sigma > 0"]),
    (-1.5, ["sigma=-1.5", "expected sigma > 0"]),
    (1e-300, ["sigma=1e-300 is too small", "1/sigma^2 overflows"]),
    ([1.0, 0.0, 2.0], ["sigma has entries <= 0 (min 0.0)", "expected every sigma_i > 0"]),
    ([1.0, -2.0, 2.0], ["sigma has entries <= 0 (min -2.0)"]),
    ([1.0, 1e-200, 2.0], ["sigma=1e-200 is too small"]),
    (True, ["sigma has dtype bool"]),
    ("fixed", ["sigma='fixed' is not supported", "'learned'"]),
    (np.ones((2, 2)), ["sigma has shape (2, 2)", "1-D array"]),
], ids=["zero", "negative", "tiny", "array-zero", "array-negative", "array-tiny", "bool",
        "name", "2-d"])
def test_bad_sigma_is_rejected(sigma, fragments):
    exc = TypeError if sigma is True else ValueError
    check_error(lambda: GaussianNLL(sigma), exc, *fragments)


def test_tiny_but_valid_sigma_and_weights_give_finite_results():
    Z, Y = np.full((3, 1), 1e-160), np.zeros((3, 1))
    value, G = GaussianNLL(fastnn.nn.losses.SIGMA_MIN).loss_and_grad(Z, Y)
    assert np.isfinite(value) and np.isfinite(G).all()
    # zero weights are allowed as long as one is positive; their rows get a zero gradient
    value, G = MSE().loss_and_grad(np.ones((3, 1)), Y, sample_weight=[0.0, 2.0, 0.0])
    assert value == 1.0 and G[0, 0] == 0.0 and G[2, 0] == 0.0
    # huge weights are fine while their sum is finite (only their ratios matter) ...
    assert MSE()(np.ones((3, 1)), Y, sample_weight=[1e307, 1e307, 0.0]) == 1.0
    # ... and an error when it is not: the mean would be NaN
    check_error(lambda: MSE()(np.ones((3, 1)), Y, sample_weight=[1e308, 1e308, 1e308]),
                ValueError, "sample_weight sums to infinity in float64", "rescale")


def test_values_that_overflow_the_model_dtype_are_named():
    model = MLP([3, 2], seed=0)  # float32
    check_error(lambda: model.predict(np.full((2, 3), 1e300)), ValueError,
                "X has values too large for the model's dtype float32", "1e+300")
    check_error(lambda: model.loss_and_grad(np.zeros((2, 3)), np.full((2, 2), 1e300), "mse"),
                ValueError, "y has values too large for float32")
    check_error(lambda: model.set_flat_params(np.full(model.n_params, 1e300)), ValueError,
                "params has values too large for the model's dtype float32")
    check_error(lambda: MLP([3, 2], bias_init=1e300), ValueError,
                "constant(value=1e+300) gives values too large for float32")
    check_error(lambda: init.normal(1e300)((2, 2)), ValueError, "normal(std=1e+300)")
    check_error(lambda: init.variance_scaling(1e308, "fan_in", "uniform")(
        (1, 2), dtype=np.float64), ValueError, "gives values too large for float64")
    # the same inputs are accepted by a float64 model (its outputs may overflow: not an error)
    MLP([3, 2], dtype=np.float64, seed=0).predict(np.full((2, 3), 1e300))


def test_class_labels_are_counted_or_rejected_never_wrapped():
    ce = CrossEntropy()
    assert ce.target_width(np.array([0, 4, 1])) == 5
    check_error(lambda: ce.target_width(np.array([0.0, 1e300])), ValueError,
                "class label 1e+300", "expected labels below")
    check_error(lambda: ce.target_width(np.array([0, 2**64 - 1], np.uint64)), ValueError,
                "class label 18446744073709551615")
    check_error(lambda: ce.target_width(np.array([-3, 1])), ValueError,
                "negative class labels (min -3)", "expected integer class labels >= 0")


# ----------------------------------------------------------- names: every valid one listed

@pytest.mark.parametrize("what, call, valid", [
    ("activation", lambda: fastnn.dense_forward(*layer_arrays()["X"][None], np.ones((4, 3)),
                                                np.ones(3), "mish"), ACTIVATIONS),
    ("activation", lambda: MLP([3, 4, 2], activation="mish"), ACTIVATIONS),
    ("activation", lambda: fastnn.Dense(3, 4, "softmax"), ACTIVATIONS),
    ("loss", lambda: fit(MLP([3, 2]), np.zeros((4, 3)), np.zeros(4), "hinge"), LOSS_NAMES),
    ("loss", lambda: fastnn.nn.losses.get_loss("l1"), LOSS_NAMES),
    ("initializer", lambda: MLP([3, 2], init="kaiming_normall"), init.NAMES),
    ("initializer", lambda: init.get_initializer("xavier"), init.NAMES),
    ("optimizer", lambda: fit(MLP([3, 2]), np.zeros((4, 3)), np.zeros(4), "mse", "rmsprop"),
     OPTIMIZERS),
    ("schedule", lambda: SGD(schedule="exponential"), SCHEDULES),
    ("output", lambda: MLP([3, 2], output="relu"), ("auto",) + tuple(OUTPUT_LINKS)),
    ("mode", lambda: init.variance_scaling(mode="fan_sum"), init.MODES),
    ("distribution", lambda: init.variance_scaling(distribution="laplace"),
     init.DISTRIBUTIONS),
], ids=["dense_forward", "MLP", "Dense", "fit", "get_loss", "MLP-init", "get_initializer",
        "fit-optimizer", "schedule", "output", "mode", "distribution"])
def test_unknown_names_list_every_valid_name(what, call, valid):
    message = check_error(call, ValueError, "not supported")
    assert what in message
    for name in valid:
        assert repr(name) in message, (name, message)


def test_other_arguments_are_named():
    X, y = classification_data()
    model = MLP([3, 4, 3], seed=0)
    for kwargs, exc, fragments in [
        (dict(seed=-1), ValueError, ["seed=-1", "expected a seed >= 0"]),
        (dict(seed="a"), TypeError, ["seed is 'a'", "expected an int seed"]),
        (dict(shuffle="no"), TypeError, ["shuffle must be True or False", "'no'"]),
        (dict(drop_last=1), TypeError, ["drop_last must be True or False"]),
        (dict(callbacks=print), TypeError, ["callbacks must be a sequence", "list"]),
        (dict(batch_size=2.5), TypeError, ["batch_size must be an integer", "2.5"]),
        (dict(epochs=-3), ValueError, ["epochs=-3", "expected epochs >= 1"]),
    ]:
        check_error(lambda: fit(model, X, y, "cross_entropy", **kwargs), exc, *fragments)
    check_error(lambda: fit("model", X, y, "cross_entropy"), TypeError,
                "model must be a fastnn.MLP", "str")
    check_error(lambda: fastnn.check_gradients(None, X, y, "cross_entropy"), TypeError,
                "model must be a fastnn.MLP")
    check_error(lambda: SGD().step(model, lr=-1.0), ValueError, "lr=-1.0", "expected lr > 0")
    check_error(lambda: SGD().step(model, lr=np.nan), ValueError, "lr=nan")
    check_error(lambda: MLP([3, 2], seed=1.5), TypeError, "seed is 1.5")
    check_error(lambda: MLP([3, 2**31]), ValueError, "layer_sizes[1]=2147483648",
                "<= 2147483647")
    check_error(lambda: MLP([3, 0, 2]), ValueError, "layer_sizes[1]=0", ">= 1")
    check_error(lambda: MLP([3, 2], dtype=np.float16), TypeError, "dtype is",
                "expected numpy.float32 or numpy.float64")
    check_error(lambda: init.he_normal((3, 0)), ValueError, "shape is (3, 0)", "positive")
    check_error(lambda: fastnn.dense_forward(*[layer_arrays()[k] for k in "XWb"], "leaky_relu",
                                             negative_slope=-0.1), ValueError,
                "negative_slope=-0.1", ">= 0")
    # bias_init accepts any real scalar, NumPy's included
    assert MLP([3, 2], bias_init=np.float32(0.5)).layers[0].b.tolist() == [0.5, 0.5]


# ------------------------------------------------------------------ the finiteness check

def _finite_cases():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64, np.float16, np.complex64, np.int64, np.bool_):
        for n in (0, 1, 7, 64, 1000, (1 << 16) - 1, 1 << 16, 200_003):
            x = rng.standard_normal(n).astype(dtype)
            yield x
            if n and np.dtype(dtype).kind in "fc":
                for bad in (np.nan, np.inf, -np.inf):
                    for where in (0, n // 2, n - 1):   # the vector body and the remainder
                        y = x.copy()
                        y[where] = bad
                        yield y
    big = np.full((300, 300), np.finfo(np.float32).max, np.float32)  # a sum that overflows
    yield big
    yield big[:, ::2]                                 # not contiguous: NumPy's path
    nan_hidden = np.zeros((50, 50))
    nan_hidden[3, 1] = np.nan
    yield nan_hidden[:, ::2]                          # the NaN is in the view
    yield nan_hidden[:, 2::2]                         # the NaN is outside it
    yield np.asfortranarray(nan_hidden)
    yield np.float64(np.nan)                          # 0-d
    yield np.array(np.inf, np.float32)
    yield [1.0, np.nan]                               # not an array
    yield np.zeros(10, np.dtype(">f8"))               # big-endian: NumPy's path
    yield np.array([1.0, np.inf]).astype(">f8")
    yield np.array([np.nan, 1.0], np.float32).astype(">f4")
    raw = np.zeros(8 * 5 + 1, np.uint8)
    unaligned = np.frombuffer(raw.data, np.float64, count=5, offset=1)  # contiguous, unaligned
    assert not unaligned.flags.aligned and unaligned.flags.c_contiguous
    yield unaligned.copy()
    unaligned[2] = np.nan
    yield unaligned


def test_all_finite_agrees_with_numpy_on_every_dtype_layout_and_length():
    # one finiteness check for the whole Python layer (inputs, parameters, optimizer state):
    # the compiled pass for C-contiguous float32/float64, NumPy for the rest; the reference
    # is numpy.isfinite element by element
    from fastnn._validation import all_finite
    count = 0
    for x in _finite_cases():
        expected = bool(np.isfinite(np.asarray(x)).all()) \
            if np.asarray(x).dtype.kind in "fc" else True
        assert all_finite(x) is expected, (np.asarray(x).dtype, np.shape(x))
        count += 1
    assert count > 300


def test_every_array_finiteness_check_goes_through_all_finite():
    # one place for the check (its fast path, its byte-order and layout cases): no other
    # module tests a whole array with numpy.isfinite(...).all() itself (element-wise uses,
    # such as finding the first bad entry for a message, are not whole-array checks)
    import pathlib
    import re
    pattern = re.compile(r"isfinite\([^()]*(\([^()]*\))?[^()]*\)\.all\(\)|np\.all\(np\.isfinite")
    root = pathlib.Path(fastnn.__file__).parent
    offenders = [f"{path.relative_to(root)}:{number}"
                 for path in sorted(root.rglob("*.py")) if path.name != "_validation.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []
