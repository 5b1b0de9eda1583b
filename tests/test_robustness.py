"""Whatever the data, fastnn raises a clear error or computes the right answer: never a crash,
a silent wrong answer, a leak or a lost model.

Sections: bad input at every public entry point (one table per entry point, then the same
mutations applied to every array argument); layouts and read-only inputs that must give the
same answer; allocation failures (in a subprocess under an address-space limit); memory
growth over thousands of calls; threads and BLAS thread counts; faults during training.

An error is "clear" when its message names the argument, what was seen and what was expected:
``check_error`` asserts the fragments that say so.
"""
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import weakref

import numpy as np
import pytest

import fastnn
from fastnn.nn import init
from fastnn.nn.layers import ACTIVATIONS
from fastnn.nn.losses import LOSS_NAMES, CrossEntropy, GaussianNLL, MSE
from fastnn.nn.model import MLP, OUTPUT_LINKS
from fastnn.optim.optimizers import OPTIMIZERS, SCHEDULES, SGD, Adam
from fastnn.training.trainer import TrainingDiverged, fit

SANITIZED = os.environ.get("FASTNN_SANITIZED") == "1"  # set by tests/sanitize.sh


def check_error(call, exc, *fragments):
    """call() raises exc, and its message contains every fragment."""
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in the message {message!r}"
    return message


def layer_arrays(dtype=np.float64, n=6, n_in=4, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(dtype)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    A = fastnn.dense_forward(X, W, b, "tanh")
    dA = rng.standard_normal((n, n_out)).astype(dtype)
    return dict(X=X, W=W, b=b, A=A, dA=dA)


def classification_data(n=40, n_in=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)), rng.integers(0, n_classes, n)


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
         ValueError, ["X has 2 samples but y has 3"]),
        ("validation-features", lambda: fit(MLP([3, 2]), np.zeros((5, 3)), np.zeros(5, int),
                                            "cross_entropy",
                                            validation_data=(np.zeros((2, 4)), [0, 1])),
         ValueError, ["X has 4 features", "expects 3"]),
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
                "X contains NaN or infinity")
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


# ======================================================================================
# Layout and read-only inputs: the same answer, never an error
# ======================================================================================

def _layouts(x):
    """Views of x with other memory layouts but the same values (and read-only copies)."""
    fortran = np.asfortranarray(x)
    padded = np.zeros((x.shape[0] * 2,) + x.shape[1:], x.dtype)
    padded[::2] = x
    flipped = np.ascontiguousarray(x[::-1])[::-1]  # negative strides, same values
    read_only = x.copy()
    read_only.flags.writeable = False
    return {"fortran": fortran, "strided": padded[::2], "negative-strides": flipped,
            "read-only": read_only}


LAYOUTS = ["fortran", "strided", "negative-strides", "read-only"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_kernels_give_the_same_answer_for_any_layout(layout, dtype):
    a = layer_arrays(dtype)
    want_A = fastnn.dense_forward(a["X"], a["W"], a["b"], "sigmoid")
    want_grads = fastnn.dense_backward(a["X"], a["W"], want_A, a["dA"], "sigmoid")
    for arg in ("X", "W", "b"):
        args = {k: a[k] for k in ("X", "W", "b")}
        args[arg] = _layouts(a[arg])[layout]
        np.testing.assert_array_equal(
            fastnn.dense_forward(args["X"], args["W"], args["b"], "sigmoid"), want_A)
    for arg in ("X", "W", "A", "dA"):
        args = {"X": a["X"], "W": a["W"], "A": want_A, "dA": a["dA"]}
        args[arg] = _layouts(args[arg])[layout]
        got = fastnn.dense_backward(args["X"], args["W"], args["A"], args["dA"], "sigmoid")
        for g, w in zip(got, want_grads):
            np.testing.assert_array_equal(g, w)
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((6, 3)).astype(dtype)
    P = rng.dirichlet(np.ones(3), 6).astype(dtype)
    sw = rng.uniform(0.5, 2.0, 6)
    want = CrossEntropy().loss_and_grad(Z, P, sw)
    for args in ((_layouts(Z)[layout], P, sw), (Z, _layouts(P)[layout], sw),
                 (Z, P, _layouts(sw)[layout])):
        got = CrossEntropy().loss_and_grad(*args)
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_models_give_the_same_answer_for_any_layout(layout):
    X, y = classification_data(n=50)
    sw = np.linspace(0.5, 2.0, 50)
    model = MLP([3, 8, 3], seed=0)
    want_loss = model.loss_and_grad(X, y, "cross_entropy", sw)
    want_grads = model.grads.copy()
    want_pred = model.predict(X)  # softmax, the link of the loss just used
    trained = MLP([3, 8, 3], seed=0)
    fit(trained, X, y, "cross_entropy", Adam(lr=0.01), epochs=2, batch_size=8, seed=0,
        sample_weight=sw)

    Xl, yl, swl = _layouts(X)[layout], _layouts(y)[layout], _layouts(sw)[layout]
    np.testing.assert_array_equal(model.predict(Xl), want_pred)
    assert model.loss_and_grad(Xl, yl, "cross_entropy", swl) == want_loss
    np.testing.assert_array_equal(model.grads, want_grads)
    other = MLP([3, 8, 3], seed=0)
    fit(other, Xl, yl, "cross_entropy", Adam(lr=0.01), epochs=2, batch_size=8, seed=0,
        sample_weight=swl)
    np.testing.assert_array_equal(other.params, trained.params)


def test_memory_mapped_read_only_data_trains_and_predicts(tmp_path):
    X, y = classification_data(n=60)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    ym = np.load(tmp_path / "y.npy", mmap_mode="r")
    assert not Xm.flags.writeable
    a, b = MLP([3, 6, 3], seed=0), MLP([3, 6, 3], seed=0)
    fit(a, X, y, "cross_entropy", epochs=2, seed=0)
    fit(b, Xm, ym, "cross_entropy", epochs=2, seed=0)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.predict(X), b.predict(Xm))
    del Xm, ym


def test_data_of_another_real_dtype_is_converted_once_and_exactly():
    X, y = classification_data(n=30)
    Xi = np.round(X * 4).astype(np.int32)
    model = MLP([3, 5, 3], dtype=np.float64, seed=0)
    want = model.predict(Xi.astype(np.float64))
    for variant in (Xi, Xi.astype(np.int8), Xi.astype(np.float16), Xi.astype(np.uint8) * 0,
                    Xi > 0):
        expected = want if variant.dtype != bool and variant.max() != 0 else None
        got = model.predict(variant)
        assert got.dtype == np.float64
        if expected is not None:
            np.testing.assert_array_equal(got, expected)
    # labels as any integer dtype, bool or whole floats
    base = model.loss_and_grad(X, y, "cross_entropy")
    for labels in (y.astype(np.uint8), y.astype(np.int16), y.astype(np.float32), list(y)):
        assert model.loss_and_grad(X, labels, "cross_entropy") == base


# ======================================================================================
# Allocation failures: MemoryError with the size, in a subprocess with an address-space limit
# ======================================================================================

MEMORY_SCRIPT = r"""
import resource, sys
import numpy as np
import fastnn

def vm_bytes():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

# BLAS allocates its buffers on first use: do that before the limit
fastnn.MLP([4, 4]).predict(np.ones((64, 4)))
limit = vm_bytes() + (384 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

def attempt(name, call):
    try:
        call()
        print(name, "| no error")
    except MemoryError as exc:
        print(name, "| MemoryError |", exc)
    except Exception as exc:
        print(name, "|", type(exc).__name__, "|", exc)

X = np.zeros((20000, 8), np.float32)
y = np.zeros(20000, np.int64)
wide = fastnn.MLP([8, 30000, 2], seed=0)  # 0.3M parameters; 1 GB of activations per 8k rows
attempt("fit", lambda: wide.fit(X, y, "cross_entropy", batch_size=20000, epochs=1))
attempt("loss_and_grad", lambda: wide.loss_and_grad(X, y, "cross_entropy"))
widest = fastnn.MLP([2, 150000, 2], seed=0)  # predict: 1024 rows of 150002 activations
attempt("predict", lambda: widest.predict(np.zeros((2000, 2))))
attempt("MLP", lambda: fastnn.MLP([30000, 30000, 2]))
attempt("init", lambda: fastnn.nn.init.he_normal((20000, 20000)))
attempt("dense_forward", lambda: fastnn.dense_forward(np.ones((30000, 2)), np.ones((2, 30000)),
                                                       np.ones(30000)))
# and fastnn still works in the same process afterwards
model = fastnn.MLP([8, 16, 2], seed=0)
model.fit(X[:200], y[:200], "cross_entropy", epochs=1)
print("after | ok |", bool(np.isfinite(model.predict(X[:10])).all()))
"""


def _child_process(cwd):
    """subprocess.run arguments so that `python -c` imports the fastnn these tests import.

    `python -c` puts its working directory first on sys.path: run it outside the repository,
    or it would import the uncompiled source tree instead of the installed package.
    """
    return {"cwd": cwd, "env": dict(os.environ, PYTHONPATH=os.path.dirname(
        os.path.dirname(fastnn.__file__)))}


@pytest.mark.skipif(not sys.platform.startswith("linux") or SANITIZED,
                    reason="needs /proc and RLIMIT_AS (ASan reserves terabytes of address "
                           "space)")
def test_allocation_failures_raise_memory_error_with_the_size_asked_for(tmp_path):
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True,
                          text=True, timeout=120, **_child_process(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr  # no crash, no abort
    results = {}
    for line in done.stdout.splitlines():
        name, kind, *message = line.split(" | ")
        results[name] = (kind, message[0] if message else "")
    assert results["after"] == ("ok", "True")
    expectations = {
        "fit": "training workspace for batch_size=20000",
        "loss_and_grad": "could not allocate the workspace",
        "predict": "could not allocate the prediction workspace",
        "MLP": "an MLP [30000, 30000, 2] has 900090002 parameters",
        "init": "he_normal cannot allocate its values for shape (20000, 20000)",
        "dense_forward": "Unable to allocate",   # NumPy's own message, with the size
    }
    for name, fragment in expectations.items():
        kind, message = results[name]
        assert kind == "MemoryError", (name, kind, message)
        assert fragment in message, (name, message)
        assert "bytes" in message or "GiB" in message, (name, message)


# ======================================================================================
# Memory growth over thousands of calls
# ======================================================================================

def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _one_round(state):
    """Every compiled entry point once, plus the error paths (which must not leak either)."""
    a, model, X, y, sw = state["arrays"], state["model"], state["X"], state["y"], state["sw"]
    A = fastnn.dense_forward(a["X"], a["W"], a["b"], "relu")
    fastnn.dense_backward(a["X"], a["W"], A, a["dA"], "relu")
    CrossEntropy().loss_and_grad(A, state["labels"], sw[:6])
    model.loss_and_grad(X, y, "cross_entropy", sw)
    model.predict(X)
    fit(model, X, y, "cross_entropy", state["opt"], epochs=1, batch_size=16, seed=0)
    for bad in (lambda: model.predict(X[:, :2]), lambda: CrossEntropy()(A, state["labels"] + 9),
                lambda: fit(model, X, y + 5, "cross_entropy")):
        try:
            bad()
        except ValueError:
            pass
    try:
        fit(state["diverging"], X * 1e3, y, "cross_entropy", SGD(lr=1e30), epochs=2)
    except TrainingDiverged:
        pass


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or SANITIZED,
                    reason="RSS from /proc; ASan's allocator keeps freed memory quarantined")
def test_thousands_of_calls_do_not_grow_memory():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 8))
    state = {"arrays": layer_arrays(n=6, n_in=4, n_out=3), "model": MLP([8, 32, 4], seed=0),
             "X": X, "y": rng.integers(0, 4, 64), "sw": rng.uniform(0.5, 2.0, 64),
             "labels": np.array([0, 1, 2, 0, 1, 2]), "opt": Adam(lr=1e-3),
             "diverging": MLP([8, 32, 4], seed=0)}
    for _ in range(200):  # warm-up: allocator pools, caches, lazily built objects
        _one_round(state)
    # A leak grows RSS in every block of rounds; a one-off growth (another test's threads
    # finishing under load, an allocator arena) in one block only: judge the smallest.
    growths = []
    for _ in range(3):
        gc.collect()
        rss_before = _rss_bytes()
        for _ in range(2000):
            _one_round(state)
        gc.collect()
        growths.append(_rss_bytes() - rss_before)
    rss_growth = min(growths)
    tracemalloc.start()  # Python objects and NumPy buffers (not the compiled code's malloc)
    try:
        traced_before = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            _one_round(state)
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
    finally:
        tracemalloc.stop()
    # Measured: RSS grows by 0-20 KB per 2000 rounds, traced memory by ~2 KB (tracemalloc's
    # own) over 500.  Each round allocates workspaces of 1-10 KB in C (predict, loss_and_grad)
    # and NumPy (fit), outputs and exceptions: leaking any one of them per round would grow
    # RSS by > 4 MB over 2000 rounds, and one leaked 64-byte Python object per round exceeds
    # the 32 KB traced bound.
    assert rss_growth < 4 << 20, f"RSS grew by {[g / 2**20 for g in growths]} MB per block"
    assert traced_growth < 32 << 10, f"traced memory grew by {traced_growth / 2**10:.0f} KB"


def test_no_reference_to_inputs_is_kept_after_a_call_or_an_error():
    X, y = classification_data(n=32)
    model = MLP([3, 4, 3], seed=0)
    for call in (lambda X, y: model.predict(X),
                 lambda X, y: model.loss_and_grad(X, y, "cross_entropy"),
                 lambda X, y: fit(model, X, y, "cross_entropy", epochs=1),
                 lambda X, y: fit(model, X, y + 7, "cross_entropy")):
        Xc, yc = X.copy(), y.copy()
        refs = weakref.ref(Xc), weakref.ref(yc)
        try:
            call(Xc, yc)
        except ValueError:
            pass
        del Xc, yc
        gc.collect()
        assert refs[0]() is None and refs[1]() is None


# ======================================================================================
# Threads and the GIL
# ======================================================================================

def _train(seed, results, key, times=None):
    X, y = fastnn.datasets.make_spirals(3000, seed=seed)
    model = MLP([2, 64, 64, 3], seed=seed)
    start = time.perf_counter()
    fit(model, X, y, "cross_entropy", Adam(lr=0.01), epochs=4, batch_size=16, seed=seed)
    if times is not None:
        times[key] = (start, time.perf_counter())
    results[key] = model.params.copy()


def test_two_models_trained_at_once_equal_the_same_trained_one_after_another():
    sequential, concurrent, times = {}, {}, {}
    for seed in (1, 2):
        _train(seed, sequential, seed)
    threads = [threading.Thread(target=_train, args=(seed, concurrent, seed, times))
               for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # they did run at the same time: each started before the other finished
    assert times[1][0] < times[2][1] and times[2][0] < times[1][1]
    for seed in (1, 2):
        np.testing.assert_array_equal(concurrent[seed], sequential[seed])


def test_concurrent_predict_calls_on_one_model_are_safe():
    # predict allocates its workspace per call: threads share only the read-only parameters
    model = MLP([16, 128, 128, 10], seed=0)
    # 1500 rows: two chunks of PREDICT_CHUNK_ROWS, so each call reuses its workspace
    inputs = [np.random.default_rng(i).standard_normal((1500, 16)) for i in range(8)]
    expected = [model.predict(X) for X in inputs]
    failures = []

    def worker(k):
        for _ in range(3):
            for i in range(k, k + 8):
                if not np.array_equal(model.predict(inputs[i % 8]), expected[i % 8]):
                    failures.append(i)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_kernels_and_predict_release_the_gil():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 512)).astype(np.float32)
    W = rng.standard_normal((512, 512)).astype(np.float32)
    b = np.zeros(512, np.float32)
    Z = rng.standard_normal((200000, 40))
    labels = rng.integers(0, 40, 200000)
    model = MLP([512, 512, 512, 10], seed=0)
    calls = [lambda: fastnn.dense_forward(X, W, b, "tanh"),
             lambda: fastnn.dense_backward(X, W, X, X, "tanh"),
             lambda: CrossEntropy().loss_and_grad(Z, labels),
             lambda: model.predict(X)]
    for call in calls:
        done = threading.Event()
        ticks = 0

        def work():
            for _ in range(3):
                call()
            done.set()

        worker = threading.Thread(target=work)
        start = time.perf_counter()
        worker.start()
        while not done.is_set():  # needs the GIL: ticks only while the worker releases it
            ticks += 1
            time.sleep(0.001)
        worker.join()
        # three calls of tens of ms each; a held GIL would leave a tick or two per call
        # three calls of 20-100 ms each (measured); a held GIL would leave a tick or two per
        # call, a released one about one per millisecond
        assert ticks > 10, (call, ticks, time.perf_counter() - start)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_results_are_deterministic_for_a_given_blas_thread_count(n_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    # batches of 256 rows through 256-wide layers: large enough for OpenBLAS to use threads
    X, y = fastnn.datasets.make_spirals(512, seed=0)
    X = np.hstack([X, np.random.default_rng(0).standard_normal((512, 62))])
    runs = []
    with threadpoolctl.threadpool_limits(limits=n_threads, user_api="blas"):
        for _ in range(2):
            model = MLP([64, 256, 256, 3], seed=0)
            fit(model, X, y, "cross_entropy", Adam(lr=1e-3), epochs=1, batch_size=256, seed=0)
            runs.append((model.params.copy(), model.predict(X)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


# ======================================================================================
# Faults during training
# ======================================================================================

def test_adam_divergence_stops_and_keeps_finite_weights_and_a_usable_model():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4)) * 1e3
    y = rng.standard_normal(200) * 1e6
    model = MLP([4, 32, 1], seed=0)
    opt = Adam(lr=1e30)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at epoch \d+, step \d+ "
                                               r"\(lr=1e\+30\)") as info:
        fit(model, X, y, "mse", opt, epochs=20, batch_size=10, seed=0)
    assert np.isfinite(model.params).all()
    assert np.isfinite(model.predict(X)).all()
    assert isinstance(info.value.history, fastnn.History)
    # its moments belonged to the diverging steps: the optimizer starts afresh if reused
    assert opt.state == (None, None) and opt.t == 0
    fit(model, X / 1e3, y / 1e6, "mse", Adam(lr=1e-3), epochs=2)  # still trains
    assert np.isfinite(model.params).all()


@pytest.mark.parametrize("epochs", [1, 3])
def test_weights_that_became_non_finite_are_restored_from_the_last_finite_ones(epochs):
    # one batch per epoch with an absurd rate: the first update itself overflows the float32
    # weights to inf while its loss was finite, so the divergence shows only afterwards
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 3)) * 100
    y = rng.standard_normal(16) * 100
    model = MLP([3, 4, 1], seed=0)
    start = model.get_flat_params()
    with pytest.raises(TrainingDiverged, match="at epoch 1,") as info:  # numbered from 1
        fit(model, X, y, "mse", SGD(lr=1e38), epochs=epochs, batch_size=16, seed=0)
    assert "start of epoch 1," in str(info.value)
    np.testing.assert_array_equal(model.params, start)
    assert np.isfinite(model.predict(X)).all()


@pytest.mark.parametrize("batch_size, lr, what, failed, kept", [
    # (epoch, step) and kept epoch as the message numbers them: from 1
    # a later step of the first epoch: back to the initial weights
    (8, 0.005, "the training loss", (1, 7), 1),
    # a later step of epoch 4: back to the start of epoch 4
    (16, 0.003, "the training loss", (4, 2), 4),
    # the first step of epoch 6 (one step per epoch): its start is suspect, so epoch 5's
    (64, 0.01, "the training loss", (6, 1), 5),
    # the last update of epoch 4 overflowed the weights while its loss was finite
    (64, 0.1, "the weights", (4, 1), 4),
], ids=["epoch-0", "later-step", "first-step", "weights"])
def test_divergence_keeps_the_last_weights_known_to_give_a_finite_loss(batch_size, lr, what,
                                                                       failed, kept):
    # The parameters entering the failing step are what overflowed the loss, even when they
    # are finite (a model that predicts NaN); the start of an epoch is known good once the
    # epoch's first step had a finite loss.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)) * 10
    y = rng.standard_normal((64, 2)) * 10
    model = MLP([4, 16, 2], activation="relu", seed=0)
    starts = [model.get_flat_params()]  # the parameters at the start of each epoch
    with pytest.raises(TrainingDiverged) as info:
        fit(model, X, y, "mse", SGD(lr=lr, momentum=0.9), epochs=200, batch_size=batch_size,
            seed=0, callbacks=[lambda epoch, logs: starts.append(model.get_flat_params())])
    message = str(info.value)
    assert message.startswith(f"{what} became NaN or infinite at epoch {failed[0]}, step "
                              f"{failed[1]} ")
    assert f"keeps the parameters at the start of epoch {kept}, the last known to give a " \
           "finite loss" in message
    np.testing.assert_array_equal(model.params, starts[kept - 1])
    assert np.isfinite(model.loss_and_grad(X, y, "mse")) and np.isfinite(model.predict(X)).all()


def test_divergence_on_the_first_step_keeps_the_initial_weights_and_says_why():
    X = np.full((8, 3), 2e38)  # fits float32, but X @ W overflows it
    model = MLP([3, 1], init=init.constant(1.0), seed=0)
    start = model.get_flat_params()
    message = check_error(lambda: fit(model, X, np.zeros(8), "mse", epochs=3),
                          TrainingDiverged, "at epoch 1, step 1",
                          "the parameters it started this fit with", "scale of the inputs")
    np.testing.assert_array_equal(model.params, start)
    assert "lr=" in message


def test_keyboard_interrupt_in_a_callback_leaves_the_model_consistent_and_usable():
    X, y = classification_data(n=100)
    model = MLP([3, 8, 3], seed=0)
    opt = Adam(lr=0.01)
    seen = []

    def interrupt(epoch, logs):
        seen.append(model.get_flat_params())
        if epoch == 3:  # epochs are numbered from 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(model, X, y, "cross_entropy", opt, epochs=10, callbacks=[interrupt])
    assert len(model.history_) == 3
    np.testing.assert_array_equal(model.params, seen[-1])  # the weights after epoch 3
    assert opt.t > 0 and all(np.isfinite(s).all() for s in opt.state)
    fit(model, X, y, "cross_entropy", opt, epochs=1)  # continues from there
    assert np.isfinite(model.predict(X)).all()


# ======================================================================================
# The estimators, load/save and the command line
# ======================================================================================
# scikit-learn's check_estimator (tests/test_sklearn.py) already feeds the estimators NaN,
# complex, empty, 1-D and object input; these are the cases it does not cover.

def _estimators():
    sklearn = pytest.importorskip("fastnn.interop.sklearn")
    return sklearn.MLPClassifier, sklearn.MLPRegressor


@pytest.mark.parametrize("sample_weight, fragments", [
    (-np.ones(40), ["sample_weight has negative entries", "expected weights >= 0"]),
    (np.full(40, np.nan), ["sample_weight contains NaN or infinity"]),
    (np.zeros(40), ["sample_weight is all zeros"]),
    (np.ones(39), ["sample_weight has 39 entries", "expected 40"]),
    (np.full(40, 1e308), ["sample_weight sums to infinity"]),
], ids=["negative", "nan", "zeros", "short", "overflowing-sum"])
def test_estimators_name_bad_sample_weights(sample_weight, fragments):
    Classifier, Regressor = _estimators()
    X, y = classification_data()
    for est in (Classifier((4,), max_iter=2, dtype=np.float64),
                Regressor(hidden_layer_sizes=(4,), max_iter=2, dtype=np.float64)):
        check_error(lambda: est.fit(X, y, sample_weight=sample_weight), ValueError, *fragments)


def test_estimators_list_valid_names():
    Classifier, Regressor = _estimators()
    X, y = classification_data()
    for est, what, valid in [
        (Classifier(activation="mish"), "activation", ("logistic", "tanh", "relu")),
        (Classifier(solver="newton"), "solver", ("lbfgs", "sgd", "adam")),
        (Regressor(loss="huber"), "loss", ("squared_error", "poisson", "gaussian_nll")),
        (Regressor(init="kaiming"), "initializer", init.NAMES),
    ]:
        message = check_error(lambda: est.fit(X, y), ValueError, what, "not supported")
        assert all(repr(name) in message for name in valid), message


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_give_the_same_model_for_any_layout():
    Classifier, _ = _estimators()
    X, y = classification_data(n=60)
    want = Classifier((8,), max_iter=3, random_state=0).fit(X, y).predict_proba(X)
    for layout, Xl in _layouts(X).items():
        got = Classifier((8,), max_iter=3, random_state=0).fit(Xl, _layouts(y)[layout])
        np.testing.assert_array_equal(got.predict_proba(Xl), want)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_diverging_estimator_fit_leaves_a_usable_estimator():
    Classifier, _ = _estimators()
    X, y = classification_data(n=60)
    clf = Classifier((8,), solver="sgd", learning_rate_init=1e30, max_iter=5, random_state=0,
                     dtype=np.float32)
    with pytest.raises(TrainingDiverged):
        clf.fit(X * 1e3, y)
    assert np.isfinite(clf.model_.params).all()
    assert np.isfinite(clf.predict_proba(X)).all()
    clf.set_params(learning_rate_init=1e-3).fit(X, y)  # and a sane refit works
    assert clf.score(X, y) > 0


def test_a_save_killed_midway_leaves_the_previous_file_intact(tmp_path):
    # the process dies while writing (no Python cleanup runs, as with SIGKILL or a power
    # cut): the target is still the previous, loadable model
    old = MLP([3, 5, 2], seed=1)
    path = tmp_path / "model.npz"
    old.save(path)
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os
        import fastnn, fastnn.io.saving
        def die_midway(fh, arrays):
            fh.write(b"PK\\x03\\x04 part of an archive")
            fh.flush()
            os._exit(9)
        fastnn.io.saving._write_npz = die_midway
        fastnn.MLP([3, 7, 2], seed=2).save({str(path)!r})
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, **_child_process(path.parent))
    assert done.returncode == 9, done.stderr
    assert path.read_bytes() == before
    np.testing.assert_array_equal(fastnn.load(path).params, old.params)


@pytest.mark.parametrize("bad, fragments", [
    ({"X": np.zeros(5), "y": np.zeros(5)}, ["X has shape (5,)", "expected (n_samples"]),
    ({"X": np.zeros((5, 2), complex), "y": np.zeros(5)}, ["X has dtype complex128"]),
    ({"X": np.array([[0.0, np.nan]] * 5), "y": np.zeros(5)}, ["X contains NaN or infinity"]),
    ({"X": np.zeros((5, 2)), "y": np.array(list("abcde"))}, ["y has dtype <U1"]),
    ({"X": np.zeros((0, 2)), "y": np.zeros(0)}, ["y is empty"]),
    ({"X": np.zeros((5, 2)), "y": np.array([0, 1, -1, 0, 1])},
     ["negative class labels (min -1)"]),
    ({"X": np.zeros((5, 2)), "y": np.zeros(4)}, ["X has 5 samples but y has 4"]),
], ids=["1-d", "complex", "nan", "string-labels", "empty", "negative-label", "short-y"])
def test_the_command_line_reports_bad_data_in_one_line(tmp_path, capsys, bad, fragments):
    from fastnn.cli.command import main
    path = tmp_path / "data.npz"
    np.savez(path, **bad)
    assert main(["train", str(path), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastnn train: error:") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_the_command_line_reports_a_diverged_run_in_one_line(tmp_path, capsys):
    from fastnn.cli.command import main
    X, y = classification_data(n=50)
    path = tmp_path / "data.npz"
    np.savez(path, X=X * 100, y=y)
    assert main(["train", str(path), "--optimizer", "sgd", "--lr", "1e30", "--epochs", "5",
                 "--quiet", "--save", str(tmp_path / "m.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastnn train: error: training diverged: the training loss became "
                          "NaN")
    # one line; the run's last good parameters are kept in a new file it names, and the
    # --save target (which may hold an earlier, good model) is not written
    assert err.count("\n") == 1 and not (tmp_path / "m.npz").exists()
    kept = err.split("were saved to ")[1].split(";")[0].strip()
    try:
        assert np.isfinite(fastnn.load(kept).params).all()
    finally:
        os.unlink(kept)


def test_distributed_helpers_name_bad_arguments():
    pytest.importorskip("mpi4py")
    from fastnn.training.distributed import is_root, shard
    check_error(lambda: shard(-1), ValueError, "n_samples=-1", "expected n_samples >= 0")
    check_error(lambda: shard(2.5), TypeError, "n_samples must be an integer", "2.5")
    check_error(lambda: shard(10, comm=3), TypeError, "comm must be an mpi4py.MPI.Intracomm",
                "int")
    check_error(lambda: is_root("world"), TypeError, "comm must be an mpi4py.MPI.Intracomm")
    X, y = classification_data()
    check_error(lambda: fit(MLP([3, 3]), X, y, "cross_entropy", comm="world"), TypeError,
                "comm must be an mpi4py.MPI.Intracomm", "str")


def test_a_batch_larger_than_the_data_even_beyond_32_bits_is_one_full_batch():
    X, y = classification_data(n=30)
    a, b = MLP([3, 4, 3], seed=0), MLP([3, 4, 3], seed=0)
    fit(a, X, y, "cross_entropy", SGD(lr=0.1), epochs=2, batch_size=30, seed=0)
    fit(b, X, y, "cross_entropy", SGD(lr=0.1), epochs=2, batch_size=2**40, seed=0)
    np.testing.assert_array_equal(a.params, b.params)


def test_blas_thread_counts_are_validated_not_wrapped():
    from fastnn.runtime import threads
    check_error(lambda: threads.set_num_threads(2**40), ValueError,
                "n_threads=1099511627776", "<= 2147483647")
    check_error(lambda: threads.set_num_threads(0), ValueError, "n_threads=0", ">= 1")
    X, y = classification_data()
    check_error(lambda: fit(MLP([3, 3]), X, y, "cross_entropy", n_threads=2**40), ValueError,
                "n_threads=1099511627776")
    check_error(lambda: fit(MLP([3, 3]), X, y, "cross_entropy", n_threads=1.5), TypeError,
                "n_threads must be an integer")
