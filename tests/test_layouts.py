"""Layout and read-only inputs (Fortran order, strided, negative strides, read-only,
memory-mapped, other real dtypes) give the same answer as C-contiguous float arrays, never an
error: kernels, losses, models and training."""
import numpy as np
import pytest

import fastnn
from fastnn.nn.losses import CrossEntropy
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import Adam
from fastnn.training.trainer import fit
from tests._helpers import classification_data, layer_arrays, other_layouts


LAYOUTS = ["fortran", "strided", "negative-strides", "read-only"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_kernels_give_the_same_answer_for_any_layout(layout, dtype):
    a = layer_arrays(dtype)
    want_A = fastnn.dense_forward(a["X"], a["W"], a["b"], "sigmoid")
    want_grads = fastnn.dense_backward(a["X"], a["W"], want_A, a["dA"], "sigmoid")
    for arg in ("X", "W", "b"):
        args = {k: a[k] for k in ("X", "W", "b")}
        args[arg] = other_layouts(a[arg])[layout]
        np.testing.assert_array_equal(
            fastnn.dense_forward(args["X"], args["W"], args["b"], "sigmoid"), want_A)
    for arg in ("X", "W", "A", "dA"):
        args = {"X": a["X"], "W": a["W"], "A": want_A, "dA": a["dA"]}
        args[arg] = other_layouts(args[arg])[layout]
        got = fastnn.dense_backward(args["X"], args["W"], args["A"], args["dA"], "sigmoid")
        for g, w in zip(got, want_grads):
            np.testing.assert_array_equal(g, w)
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((6, 3)).astype(dtype)
    P = rng.dirichlet(np.ones(3), 6).astype(dtype)
    sw = rng.uniform(0.5, 2.0, 6)
    want = CrossEntropy().loss_and_grad(Z, P, sw)
    for args in ((other_layouts(Z)[layout], P, sw), (Z, other_layouts(P)[layout], sw),
                 (Z, P, other_layouts(sw)[layout])):
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

    Xl, yl, swl = other_layouts(X)[layout], other_layouts(y)[layout], other_layouts(sw)[layout]
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
