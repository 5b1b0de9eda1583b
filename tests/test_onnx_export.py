"""fastnn.interop.onnx_export: onnxruntime running the exported graph against fastnn's own predict.

The reference is fastnn's ``predict`` / ``predict_proba`` / ``predict_std`` (themselves tested
against NumPy twins elsewhere); onnxruntime is an independent implementation of every node
(its own GEMM, exp, tanh, softmax).  Tolerance: RTOL relative to the scale of the output, i.e.
``|onnx - fastnn| <= RTOL * (|fastnn| + max |fastnn|)``.  A purely element-wise relative bound
is not meaningful for entries near zero: they come from cancellation in the last layer's sum,
and OpenBLAS and onnxruntime's GEMM add the products in different orders.
"""
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import fastnn
from fastnn.nn.layers import ACTIVATIONS
from fastnn.interop.onnx_export import to_onnx

RTOL = {np.float32: 1e-6, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
LINKS = ["identity", "sigmoid", "softmax", "exp"]
BATCHES = (1, 3000)
# 0.3 is not a float32 number: a float64 export that rounded the slope would be off by ~1e-8
SLOPE = 0.3
# the estimators are trained a few epochs only: what is tested is the export, not convergence
pytestmark = pytest.mark.filterwarnings("ignore:Stochastic Optimizer:UserWarning")


def _session(proto):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _close(actual, expected, dtype):
    expected = np.asarray(expected)
    rtol = RTOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol,
                               atol=rtol * float(np.abs(expected).max()))


def _inputs(n, n_in, dtype, seed=1):
    return np.random.default_rng(seed).normal(size=(n, n_in)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("link", LINKS)
def test_mlp_graph_computes_predict(dtype, activation, link):
    model = fastnn.MLP([6, 24, 16, 4], activation=activation, output=link, dtype=dtype,
                       seed=3,
                       **({"alpha": SLOPE} if activation == "elu" else
                          {"negative_slope": SLOPE}))
    # gelu in float64 too: onnxruntime has no float64 Erf, so the export composes the normal
    # CDF from Cody's erfc approximations as the kernel does
    proto = to_onnx(model)
    sess = _session(proto)
    name = "probabilities" if link in ("sigmoid", "softmax") else "predictions"
    assert [o.name for o in sess.get_outputs()] == [name]
    for n in BATCHES:
        X = _inputs(n, 6, dtype)
        out, = sess.run(None, {"X": X})
        assert out.dtype == dtype and out.shape == (n, 4)
        _close(out, model.predict(X), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_per_layer_activations_and_slopes(dtype):
    layers = [fastnn.Dense(5, 9, "leaky_relu", negative_slope=0.07),
              fastnn.Dense(9, 8, "tanh"),
              fastnn.Dense(8, 7, "leaky_relu", negative_slope=1.5),   # slopes > 1 are allowed too
              fastnn.Dense(7, 3, "sigmoid"),
              fastnn.Dense(3, 2)]
    model = fastnn.MLP.from_layers(layers, output="softmax", dtype=dtype, seed=0)
    sess = _session(to_onnx(model))
    X = _inputs(500, 5, dtype)
    _close(sess.run(None, {"X": X})[0], model.predict(X), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_learned_gaussian_gives_mean_and_std(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = np.column_stack([X[:, 0] + 0.3 * rng.normal(size=200), X[:, 1]])
    model = fastnn.MLP([3, 16, 4], activation="tanh", dtype=dtype, seed=0)
    model.fit(X, y, fastnn.GaussianNLL(sigma="learned"), fastnn.Adam(lr=0.01), epochs=3,
              seed=0)
    sess = _session(to_onnx(model))
    assert [o.name for o in sess.get_outputs()] == ["mean", "std"]
    for n in BATCHES:
        Xn = _inputs(n, 3, dtype)
        mean, std = sess.run(None, {"X": Xn})
        assert mean.shape == std.shape == (n, 2)
        _close(mean, model.predict(Xn), dtype)
        _close(std, model.predict_std(Xn), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("loss, link", [("cross_entropy", "softmax"), ("bce", "sigmoid"),
                                        ("poisson", "exp"), ("mse", "identity")])
def test_auto_output_follows_the_training_loss(dtype, loss, link):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 4))
    y = {"cross_entropy": rng.integers(0, 3, 100), "bce": rng.integers(0, 2, (100, 3)),
         "poisson": rng.poisson(2.0, (100, 3)), "mse": rng.normal(size=(100, 3))}[loss]
    model = fastnn.MLP([4, 8, 3], dtype=dtype, seed=0)
    model.fit(X, y, loss, fastnn.SGD(lr=0.01), epochs=1, seed=0)
    assert model._link_name() == link
    Xd = X.astype(dtype)
    _close(_session(to_onnx(model)).run(None, {"X": Xd})[0], model.predict(Xd), dtype)


def test_graph_structure_weights_and_symbolic_batch():
    model = fastnn.MLP([3, 5, 2], activation="relu", output="softmax", seed=0)
    proto = to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    graph = proto.graph
    (x,) = graph.input
    dims = x.type.tensor_type.shape.dim
    assert x.name == "X" and dims[0].dim_param == "N" and dims[1].dim_value == 3
    assert x.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [n.op_type for n in graph.node] == ["Gemm", "Relu", "Gemm", "Softmax"]
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    stored = [w for name, w in sorted(weights.items()) if name.startswith("W")]
    for W, layer in zip(stored, model.layers):   # fastnn's (n_in, n_out) layout, bitwise
        assert W.dtype == np.float32 and np.array_equal(W, layer.W)
    assert proto.opset_import[0].version == 17 and proto.producer_name == "fastnn"
    assert {p.key: p.value for p in proto.metadata_props} == {
        "layer_sizes": "3,5,2", "activations": "relu", "output_link": "softmax",
        "dtype": "float32"}
    float64 = to_onnx(model.astype(np.float64))
    assert float64.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


def test_a_float64_leaky_relu_keeps_its_slope_exactly():
    model = fastnn.MLP([2, 4, 1], activation="leaky_relu", negative_slope=0.01, dtype=np.float64,
                       seed=0)
    X = np.full((1, 2), -1e3)
    model.layers[0].W[...] = 1.0   # every hidden unit at -2000: the slope alone decides
    model.layers[0].b[...] = 0.0
    sess = _session(to_onnx(model))
    _close(sess.run(None, {"X": X})[0], model.predict(X), np.float64)


@pytest.mark.parametrize("opset", [13, 17])
def test_opsets(opset):
    model = fastnn.MLP([3, 8, 2], activation="tanh", seed=0)
    model.fit(np.ones((4, 3)), np.ones(4), fastnn.GaussianNLL(sigma="learned"),
              epochs=1)
    proto = to_onnx(model, opset=opset)
    assert proto.opset_import[0].version == opset
    X = _inputs(10, 3, np.float32)
    mean, std = _session(proto).run(None, {"X": X})
    _close(mean, model.predict(X), np.float32)
    _close(std, model.predict_std(X), np.float32)


def test_save_onnx_writes_a_file_runtimes_load(tmp_path):
    model = fastnn.MLP([4, 8, 3], output="softmax", seed=0)
    path = tmp_path / "model.onnx"
    proto = model.save_onnx(path)
    assert isinstance(proto, onnx.ModelProto)
    assert onnx.load(str(path)) == proto
    X = _inputs(7, 4, np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _close(sess.run(["probabilities"], {"X": X})[0], model.predict(X), np.float32)
    model.save_onnx(str(tmp_path / "again.onnx"), opset=13, name="spirals")
    assert onnx.load(str(tmp_path / "again.onnx")).graph.name == "spirals"


# ------------------------------------------------------------------------ estimators

sk = pytest.importorskip("fastnn.interop.sklearn")   # scikit-learn is in the test extra


def _estimator_data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(240, 5))
    return X, rng


LABELS = {
    "int": lambda X: np.digitize(X[:, 0], [-0.5, 0.5]) * 7 - 3,          # -3, 4, 11
    "str": lambda X: np.array(["cat", "dog", "emu"])[np.digitize(X[:, 0], [-0.5, 0.5])],
    "float": lambda X: np.digitize(X[:, 0], [-0.5, 0.5]).astype(float) / 4,
    "binary_str": lambda X: np.where(X[:, 0] > 0, "yes", "no"),
    "bool": lambda X: X[:, 0] > 0,
    "multilabel": lambda X: (X[:, :3] > 0).astype(int),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("labels", list(LABELS))
def test_classifier_label_and_probabilities(dtype, labels):
    X, _ = _estimator_data()
    y = LABELS[labels](X)
    if labels == "float":     # whole-number float labels are classification targets
        y = y * 4
    clf = sk.MLPClassifier((12,), activation="tanh", max_iter=20, random_state=0,
                           dtype=dtype).fit(X, y)
    proto = to_onnx(clf)
    sess = _session(proto)
    assert [o.name for o in sess.get_outputs()] == ["label", "probabilities"]
    np_dtype = np.dtype(dtype).type
    for n in (1, 240):
        Xn = X[:n].astype(dtype)
        label, proba = sess.run(None, {"X": Xn})
        expected = clf.predict(Xn)
        assert label.shape == expected.shape
        assert (label == expected).all()
        _close(proba, clf.predict_proba(Xn), np_dtype)
    if labels in ("str", "binary_str"):
        assert label.dtype == object
    elif labels == "float":
        assert label.dtype == np.float64
    else:
        assert label.dtype == np.int64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["squared_error", "gaussian_nll"])
@pytest.mark.parametrize("n_targets", [1, 2])
def test_regressor_variable(dtype, loss, n_targets):
    X, rng = _estimator_data()
    y = X[:, :n_targets] * 2 + 0.1 * rng.normal(size=(240, n_targets))
    reg = sk.MLPRegressor(hidden_layer_sizes=(10,), max_iter=20, random_state=0, dtype=dtype, loss=loss)
    reg.fit(X, y[:, 0] if n_targets == 1 else y)
    sess = _session(to_onnx(reg))
    names = ["variable"] + (["std"] if loss == "gaussian_nll" else [])
    assert [o.name for o in sess.get_outputs()] == names
    np_dtype = np.dtype(dtype).type
    for n in (1, 240):
        Xn = X[:n].astype(dtype)
        outs = sess.run(None, {"X": Xn})
        assert all(o.shape == (n, n_targets) for o in outs)
        if loss == "gaussian_nll":
            mean, std = reg.predict(Xn, return_std=True)
            _close(outs[1].reshape(std.shape), std, np_dtype)
        else:
            mean = reg.predict(Xn)
        _close(outs[0].reshape(mean.shape), mean, np_dtype)


def test_unfitted_estimator_is_an_error():
    with pytest.raises(ValueError, match="MLPClassifier is not fitted yet"):
        to_onnx(sk.MLPClassifier())


# ------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("obj", [object(), np.zeros(3), "model.npz", None])
def test_not_a_model(obj):
    with pytest.raises(TypeError,
                       match="model must be a fastnn.MLP, a fastnn.MLPEnsemble or a fitted"):
        to_onnx(obj)


def test_bad_arguments(tmp_path):
    model = fastnn.MLP([2, 3])
    with pytest.raises(TypeError, match="path must be a str or os.PathLike; got int"):
        to_onnx(model, 3)
    with pytest.raises(TypeError, match="opset must be an int; got float"):
        to_onnx(model, opset=17.0)
    with pytest.raises(ValueError, match=r"opset=12; expected 13 <= opset <="):
        to_onnx(model, opset=12)
    with pytest.raises(ValueError, match="opset=1000"):
        to_onnx(model, opset=1000)
    with pytest.raises(TypeError, match="name must be a str"):
        to_onnx(model, name=5)
    with pytest.raises(FileNotFoundError, match="the directory .*such.* does not exist"):
        model.save_onnx(tmp_path / "no" / "such" / "m.onnx")
    assert not (tmp_path / "no").exists()
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(TypeError):   # fails before anything is written
        model.save_onnx(target, opset="17")
    assert target.read_bytes() == b"previous"
    model.save_onnx(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]   # no temporary left


def test_missing_onnx_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)     # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastnn\[onnx\]"'):
        fastnn.MLP([2, 3]).save_onnx("never-written.onnx")
    assert not os.path.exists("never-written.onnx")


def test_fastnn_imports_and_works_without_onnx_and_torch(tmp_path):
    script = (
        "import sys\n"
        "for name in ('onnx', 'onnxruntime', 'torch'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np, fastnn\n"
        "m = fastnn.MLP([3, 4, 2], seed=0)\n"
        "m.fit(np.ones((8, 3)), np.zeros(8, int), 'cross_entropy', epochs=1)\n"
        "print(m.predict(np.ones((1, 3))).shape)\n"
        "for call in (lambda: m.save_onnx('m.onnx'), m.to_torch,\n"
        "             lambda: fastnn.MLP.from_torch(None)):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as exc:\n"
        "        print('ImportError', exc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(
                              os.path.dirname(fastnn.__file__))))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "(1, 2)"
    assert 'pip install "fastnn[onnx]"' in lines[1]
    assert 'pip install "fastnn[torch]"' in lines[2] and 'fastnn[torch]' in lines[3]


def test_dropout_exports_as_identity():
    model = fastnn.MLP([6, 9, 4], activation="silu", dropout=0.5, output="softmax", seed=0)
    X = _inputs(50, 6, np.float32)
    _close(_session(to_onnx(model)).run(None, {"X": X})[0], model.predict(X), np.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("opset", [13, 17, 18])        # ReduceMean's axes: attribute, input
@pytest.mark.parametrize("sizes", [[5, 1, 3], [1, 4, 1], [6, 9, 7, 4]],
                         ids=["width-1", "one-input", "two-layers"])
def test_layer_norm_exports(dtype, opset, sizes):
    # was refused ("does not export layer normalization yet"): a model trained with
    # normalization="layer" could not be deployed at all
    rng = np.random.default_rng(0)
    model = fastnn.MLP(sizes, activation=["gelu", "tanh"][:len(sizes) - 2],
                       normalization="layer", dropout=0.3, output="identity", dtype=dtype,
                       seed=0)
    for layer in model.layers[:-1]:
        layer.gain = rng.normal(size=layer.n_out)
        layer.shift = rng.normal(size=layer.n_out)
    X = rng.normal(size=(3000, sizes[0])).astype(dtype)
    X[:3] = 0                                   # constant rows: zero variance
    proto = to_onnx(model, opset=opset)
    for n in BATCHES:
        _close(_session(proto).run(None, {"X": X[:n]})[0], model.predict(X[:n]), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("opset", [13, 17, 18])        # ReduceMax's axes: attribute, input
def test_layer_norm_exports_the_kernels_overflow_guard(dtype, opset):
    # a row whose squared deviations overflow the dtype (|z - mu| > 1.8e19 in float32) is
    # normalized by the kernel on z / max|z| (src_c/fastnn_layernorm.h); the exported graph
    # lacked that guard and gave NaN (or the shift alone) where predict gives the normalized
    # row.  Rows of every size in one batch: each takes its own branch.
    rng = np.random.default_rng(0)
    model = fastnn.MLP([3, 6, 2], activation="tanh", normalization="layer", dtype=dtype,
                       seed=0, output="identity")
    layer = model.layers[0]
    layer.gain = rng.normal(size=layer.n_out)
    layer.shift = rng.normal(size=layer.n_out)
    X = rng.normal(size=(40, 3))
    X[:10] *= (1e30 if dtype == np.float32 else 1e300) / 10    # squares overflow
    X[10:20] *= np.sqrt(np.finfo(dtype).max) / 4                # near the edge, either side
    X[20] = 0                                                   # zero variance
    X = X.astype(dtype)
    want = model.predict(X)
    assert np.isfinite(want).all()
    got = _session(to_onnx(model, opset=opset)).run(None, {"X": X})[0]
    _close(got, want, dtype)


# ------------------------------------------------------------------------ attack (att15)

# elementwise relative bound of one exported unit against fastnn's kernel, per activation:
# onnxruntime's float32 Tanh is an approximation (3e-7), the rest is a few ulps, except
# gelu_tanh's far tail exp(2u), 2u ~ -560, which amplifies the argument's rounding by |2u|
_UNIT_RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def _unit_model(activation, dtype):
    """act(z) itself: one input, one hidden unit, identity readout."""
    model = fastnn.MLP([1, 1, 1], activation=activation, dtype=dtype, seed=0)
    model.layers[0].W[...] = 1
    model.layers[1].W[...] = 1
    return model


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("activation", ["sigmoid", "elu", "selu", "gelu", "gelu_tanh", "silu",
                                        "softplus"])
def test_exported_activations_keep_relative_accuracy_in_the_tails(dtype, activation):
    # Before: onnxruntime's Sigmoid gave 0 (float64) or 1.2e-7 (float32) for values near
    # 1e-17 / 2e-8, Exp(h) - 1 gave 0 for elu(-1e-12), Log(1 + e) 0 for softplus(-20), and
    # 1 + Tanh(u) 0 for gelu_tanh(-5.5), 1 + Erf 0 for gelu(-6) (and no float64 gelu at all,
    # onnxruntime having no float64 Erf): relative errors of 100% and more.  Values stay in
    # the normal range here (fastnn flushes subnormals, onnxruntime does not).
    tiny = np.finfo(dtype).tiny
    z = np.concatenate([-np.logspace(-12, 1.8, 300), [0.0], np.logspace(-12, 1.8, 300)])
    X = z.astype(dtype)[:, None]
    model = _unit_model(activation, dtype)
    expected = model.predict(X).ravel()
    keep = (np.abs(expected) > 1e6 * tiny) | (z == 0)
    got, = _session(to_onnx(model)).run(None, {"X": X})
    np.testing.assert_allclose(got.ravel()[keep], expected[keep], rtol=_UNIT_RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_sigmoid_link_keeps_small_probabilities(dtype):
    # a rare-event model: p = 1e-12 must come out as 1e-12, not 0 or 1e-7
    model = fastnn.MLP([1, 1], output="sigmoid", dtype=dtype, seed=0)
    model.layers[0].W[...] = 1
    X = np.linspace(-25 if dtype == np.float32 else -60, 25, 501).astype(dtype)[:, None]
    got, = _session(to_onnx(model)).run(None, {"X": X})
    np.testing.assert_allclose(got, model.predict(X), rtol=_UNIT_RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_binary_classifier_probabilities_in_the_tails(dtype):
    from fastnn.interop.sklearn import MLPClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = np.where(X[:, 0] > 0, "yes", "no")
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, dtype=dtype)
    est.fit(X, y)
    est.model_.layers[-1].W[...] *= 50      # push the logits far out: p near 0 and 1
    Xt = (rng.normal(size=(300, 2)) * 5).astype(dtype)
    label, proba = _session(to_onnx(est)).run(None, {"X": Xt})
    expected = est.predict_proba(Xt)
    assert expected.min() < 1e-12
    normal = expected > 1e6 * np.finfo(dtype).tiny   # fastnn flushes subnormals
    np.testing.assert_allclose(proba[normal], expected[normal], rtol=_UNIT_RTOL[dtype], atol=0)
    np.testing.assert_array_equal(label, est.predict(Xt))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "bce", "poisson", "gaussian"])
def test_ensemble_exports_its_mean_and_mixture_std(dtype, loss):
    # ensembles export as their members and the mixture (to_onnx(MLPEnsemble) was a TypeError)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = {"mse": rng.normal(size=(120, 2)), "cross_entropy": rng.integers(0, 3, 120),
         "bce": rng.integers(0, 2, (120, 2)), "poisson": rng.poisson(2.0, (120, 2)),
         "gaussian": rng.normal(size=(120, 2))}[loss]
    n_out = {"cross_entropy": 3, "gaussian": 4}.get(loss, 2)
    fit_loss = fastnn.GaussianNLL(sigma="learned") if loss == "gaussian" else loss
    ens = fastnn.MLPEnsemble([3, 8, n_out], n_members=3, activation="gelu",
                             normalization="layer", dtype=dtype, seed=0)
    ens.fit(X, y, fit_loss, epochs=2)
    sess = _session(to_onnx(ens))
    want = [ens.predict(X)] + ([ens.predict_std(X)] if loss == "gaussian" else [])
    names = {"cross_entropy": ["probabilities"], "bce": ["probabilities"],
             "gaussian": ["mean", "std"]}.get(loss, ["predictions"])
    assert [o.name for o in sess.get_outputs()] == names
    for got, expected in zip(sess.run(None, {"X": X.astype(dtype)}), want):
        _close(got, expected, dtype)



@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_every_activation_runs_at_every_opset(dtype):
    # a float64 leaky_relu was exported as PRelu, which onnxruntime runs in float64 at opsets
    # 16-18 only: the graph failed to load at opset 13-15 and 19+
    acts = list(ACTIVATIONS)
    model = fastnn.MLP([3] + [5] * len(acts) + [2], activation=acts, normalization="layer",
                       output="sigmoid", dtype=dtype, seed=0, negative_slope=SLOPE,
                       alpha=SLOPE)
    X = _inputs(40, 3, dtype)
    for opset in range(13, onnx.defs.onnx_opset_version() + 1):
        try:
            sess = _session(to_onnx(model, opset=opset))
        except Exception as exc:   # an onnxruntime too old for the newest opsets
            if "opset" in str(exc).lower() and opset > 21:
                continue
            raise
        _close(sess.run(None, {"X": X})[0], model.predict(X), dtype)


def test_export_refuses_non_finite_parameters_and_keeps_the_file(tmp_path):
    # before: a diverged model exported silently to a graph predicting NaN (save refuses it)
    model = fastnn.MLP([3, 4, 2], seed=0)
    path = tmp_path / "m.onnx"
    to_onnx(model, path)
    before = path.read_bytes()
    model.params[1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        to_onnx(model, path)
    assert path.read_bytes() == before


def test_export_and_to_torch_take_one_snapshot_under_the_models_lock():
    # a writer holding the model's lock (as fit does for each epoch) changes layer 0, then
    # layer 1; an export started in between waits and sees both changes, never one of them
    import threading
    import time
    model = fastnn.MLP([3, 4, 2], seed=0, dtype=np.float64)
    holding, exported = threading.Event(), {}

    def writer():
        with model._lock:
            holding.set()
            model.layers[0].W = np.ones((3, 4))
            time.sleep(0.3)
            model.layers[1].W = np.ones((4, 2))

    def exporter():
        holding.wait()
        exported["onnx"] = to_onnx(model)
        try:
            import torch  # noqa: F401
        except ImportError:
            return
        exported["torch"] = model.to_torch()
    threads = [threading.Thread(target=writer), threading.Thread(target=exporter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    weights = {init.name.rsplit("_", 1)[0]: onnx.numpy_helper.to_array(init)
               for init in exported["onnx"].graph.initializer if init.name.startswith("W")}
    np.testing.assert_array_equal(weights["W0"], np.ones((3, 4)))
    np.testing.assert_array_equal(weights["W1"], np.ones((4, 2)))
    if "torch" in exported:
        seq = exported["torch"]
        assert float(seq[0].weight.sum()) == 12 and float(seq[-2].weight.sum()) == 8


def _table_model(task, dtype, rng, n_in=4):
    """A model with the preprocessing ``fastnn train`` stores: imputation, standardisation
    (one column of 1e8 +- 3, whose standardisation float32 cannot hold: ulp(1e8) = 8) and a
    regression's target scale."""
    from fastnn.io.tabular import Preprocessor
    mean, scale = rng.normal(size=n_in) * 50, rng.uniform(0.5, 30, size=n_in)
    mean[2], scale[2] = 1e8 + 0.25, 1.7
    fill = rng.normal(size=n_in) * scale + mean
    names = [f"f{j}" for j in range(n_in)]
    if task == "classification":
        pre = Preprocessor(names, "y", "classification", classes=["a", "b", "c"], x_mean=mean,
                           x_scale=scale, x_fill=fill)
        model = fastnn.MLP([n_in, 8, 3], activation="tanh", output="softmax", dtype=dtype,
                           seed=0)
    else:
        pre = Preprocessor(names, "y", "regression", x_mean=mean, x_scale=scale,
                           x_fill=fill, y_mean=1.2e7, y_scale=35.0)
        model = fastnn.MLP([n_in, 8, 2 if task == "gaussian" else 1], activation="tanh",
                           dtype=dtype, seed=0)
        if task == "gaussian":
            model.loss_ = fastnn.GaussianNLL("learned")
    model.preprocessor_ = pre
    X = rng.normal(size=(200, n_in)) * scale + mean   # float64: a table's values
    X[:, 2] = 1e8 + rng.uniform(-3, 3, size=200)
    X[3, 1] = X[7, 0] = X[11, 2] = np.nan
    return model, X


@pytest.mark.parametrize("task", ["classification", "regression", "gaussian"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_a_table_models_preprocessing_is_part_of_the_graph(task, dtype):
    # `fastnn train` stores imputation and standardization (and a regression's target scale)
    # in model.preprocessor_; the export ignored them, so the graph predicted from raw table
    # units: silently wrong.  Then it applied them in the model's dtype, where predict works
    # in float64: a float32 graph standardised the 1e8 +- 3 column to noise (R^2 0.49 where
    # `fastnn predict` had 0.998).  Now both are built from Preprocessor.input_steps and
    # output_steps, in float64: every path (the graph; predict's transform of an array and
    # of a table; the command's prediction columns) gives the same numbers.
    from fastnn.cli.command import _prediction_columns
    from fastnn.io.tabular import Table
    model, X = _table_model(task, dtype, np.random.default_rng(1))
    pre = model.preprocessor_
    proto = to_onnx(model)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    got = _session(proto).run(None, {"X": X})
    # the model's inputs by hand, in float64 as predict standardises them (the 1e8 column
    # comes out within +-2); the graph casts exactly these to the model's dtype
    Z = (np.where(np.isnan(X), pre.x_fill, X) - pre.x_mean) / pre.x_scale
    assert np.abs(Z[:, 2]).max() < 2
    table = Table("t.csv", pre.feature_names,
                  {f: X[:, j] for j, f in enumerate(pre.feature_names)},
                  np.arange(2, X.shape[0] + 2))
    paths = {"transform": pre.transform(X), "transform_table": pre.transform_table(table)[0]}
    for name, inputs in paths.items():
        np.testing.assert_array_equal(inputs, Z, err_msg=name)
    if task == "classification":
        _close(got[0], model.predict(Z), dtype)
        return
    _, columns = _prediction_columns(model, pre, Z, model.predict(Z))   # `fastnn predict`
    want = model.predict(Z).astype(np.float64) * 35.0 + 1.2e7
    np.testing.assert_array_equal(columns[0], want[:, 0])
    assert got[0].dtype == np.float64
    _close(got[0], want, dtype)
    if task == "gaussian":
        std = model.predict_std(Z).astype(np.float64) * 35.0
        np.testing.assert_array_equal(columns[1], std[:, 0])
        assert got[1].dtype == np.float64
        _close(got[1], std, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_the_graph_standardizes_a_column_near_the_float64_limit_as_predict_does(dtype):
    # a column spanning -1.7e308 .. 1.5e308 around a mean of -0.5e308: x - mean overflows
    # although (x - mean) / scale is about 1.7.  predict's float64 preprocessing has a
    # guarded form; the graph is built from the same step and must give the same inputs
    from fastnn.io.tabular import Preprocessor
    model = fastnn.MLP([2, 4, 1], activation="tanh", dtype=dtype, seed=0)
    model.preprocessor_ = Preprocessor(["f0", "f1"], "y", "regression",
                                       x_mean=np.array([-0.5e308, 0.0]),
                                       x_scale=np.array([1.2e308, 1.0]))
    X = np.array([[1.5e308, 0.5], [-1.7e308, -0.5], [0.0, 1.0], [1e300, 2.0]])
    Z = model.preprocessor_.transform(X)
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(Z[:2, 0], [1.6666666666666667, -1.0], rtol=1e-15)
    got = _session(to_onnx(model)).run(None, {"X": X})[0]
    assert np.isfinite(got).all()
    _close(got, model.predict(Z).astype(np.float64), dtype)


def test_a_model_trained_by_the_command_predicts_the_same_in_onnx(tmp_path):
    # the reported case end to end: `fastnn train` on a table with a column of 1e8 +- 3 that
    # the target depends on; `fastnn predict` and onnxruntime on the exported model agree
    # (before: R^2 0.998 by predict, 0.49 by onnxruntime)
    pd = pytest.importorskip("pandas")
    from fastnn.cli.command import main
    rng = np.random.default_rng(0)
    n = 400
    big = 1e8 + rng.uniform(-3, 3, size=n)
    frame = pd.DataFrame({"big": big, "other": rng.normal(size=n)})
    frame["y"] = 2.0 * (big - 1e8) + frame["other"] + 0.01 * rng.normal(size=n)
    frame.to_csv(tmp_path / "d.csv", index=False)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["train", "d.csv", "--target", "y", "--task", "regression", "--epochs",
                     "60", "--layers", "16", "--quiet", "--validation-split", "0",
                     "--save", "m.npz"]) == 0
        assert main(["predict", "m.npz", "d.csv", "--output", "p.npy"]) == 0
    finally:
        os.chdir(cwd)
    predicted = np.load(tmp_path / "p.npy")[:, 0]
    model = fastnn.load(tmp_path / "m.npz")
    X = frame[model.preprocessor_.feature_names].to_numpy(np.float64)
    got = _session(to_onnx(model)).run(None, {"X": X})[0][:, 0]
    y = frame["y"].to_numpy()

    def r2(p):
        return 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)

    assert r2(predicted) > 0.95
    _close(got, predicted, np.float32)
    assert abs(r2(got) - r2(predicted)) < 1e-6
