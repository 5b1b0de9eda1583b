"""scikit-learn Pipelines with fastnn's estimators, exported through skl2onnx and run by
onnxruntime (fastnn.interop.onnx_pipeline).

The reference is the pipeline's own predict / predict_proba on the same input values (the
float32 sample's columns are rounded to float32 before the pipeline sees them too): labels
equal, probabilities and predictions to float32 tolerance where the graph's transformers
compute in float (skl2onnx's scaler, imputer and one-hot encoder), to 1e-12 where everything
is double.
"""
import sys
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("sklearn")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")
pd = pytest.importorskip("pandas")

from sklearn.base import clone  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

import fastnn  # noqa: E402
from fastnn.interop.onnx_export import to_onnx as fastnn_export  # noqa: E402
from fastnn.interop.onnx_pipeline import register  # noqa: E402
from fastnn.interop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn.interop.sklearn_ensemble import EnsembleClassifier, EnsembleRegressor  # noqa: E402

F32 = dict(rtol=1e-5, atol=2e-6)   # float32 tolerance: graphs whose transformers run in float
F64 = dict(rtol=1e-12, atol=1e-12)
NUMERIC, CATEGORICAL = ["age", "dose"], ["city", "sex"]


@pytest.fixture(autouse=True)
def _registered():
    register()   # for the tests that call skl2onnx.to_onnx directly


def _table(n=240, seed=0):
    """A patient table: two numeric columns (dose with missing values), two categorical."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.normal(50, 10, n), "dose": rng.normal(5, 2, n),
                       "city": rng.choice(["lyon", "oslo", "rome"], n),
                       "sex": rng.choice(["f", "m"], n)})
    df.loc[rng.random(n) < 0.1, "dose"] = np.nan
    score = (df.age - 50) / 10 + (df.city == "oslo") - 0.5 * (df.sex == "m")
    return df, score.to_numpy()


def _as_float32(df):
    """The table as the graph sees it: numeric columns rounded to float32 (onnxruntime's
    Imputer has a float kernel only, so the sample is float32)."""
    return df.astype({c: np.float32 for c in NUMERIC})


def _feeds(df):
    return {c: (df[[c]].to_numpy(np.float32) if c in NUMERIC else df[[c]].to_numpy(str))
            for c in df.columns}


def _columns():
    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
        ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])


def _run(onx, feeds):
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds), [o.name for o in session.get_outputs()]


def _check_labels(labels, pipe, X, proba):
    """Labels equal predict's, except where two probabilities tie to float32 rounding."""
    top2 = np.sort(proba, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(np.asarray(labels)[clear], pipe.predict(X)[clear])


CLASSIFIERS = {
    "mlp": lambda: MLPClassifier((16,), max_iter=80, random_state=0),
    "mlp-float32": lambda: MLPClassifier((16,), max_iter=80, random_state=0, dtype="float32"),
    "ensemble": lambda: EnsembleClassifier(MLPClassifier((8,), max_iter=40), n_estimators=3,
                                           random_state=0),
}
LABELS = {
    "strings": lambda s: np.where(s > 0.3, "sick", np.where(s < -0.5, "well", "unsure")),
    "binary-int": lambda s: (s > 0).astype(int),
    "bool": lambda s: s > 0,
}


@pytest.mark.parametrize("labels", list(LABELS))
@pytest.mark.parametrize("estimator", list(CLASSIFIERS))
def test_a_column_transformer_pipeline_classifies_as_predict_proba(estimator, labels):
    df, score = _table()
    clf = CLASSIFIERS[estimator]()
    pipe = Pipeline([("columns", _columns()), ("clf", clf)]).fit(df, LABELS[labels](score))
    onx = fastnn.to_onnx(pipe, X=_as_float32(df[:1]), options={id(clf): {"zipmap": False}})
    (label, proba), names = _run(onx, _feeds(df))
    assert names == ["label", "probabilities"]
    X = _as_float32(df)                     # the values the graph sees, as float64 again
    expected = pipe.predict_proba(X.astype({c: np.float64 for c in NUMERIC}))
    assert proba.dtype == np.float32 and proba.shape == expected.shape
    np.testing.assert_allclose(proba, expected, **F32)
    _check_labels(label, pipe, X.astype({c: np.float64 for c in NUMERIC}), expected)


def test_zipmap_gives_skl2onnxs_list_of_dicts_and_columns():
    df, score = _table()
    y = LABELS["strings"](score)
    pipe = Pipeline([("columns", _columns()), ("clf", CLASSIFIERS["mlp"]())]).fit(df, y)
    X64 = _as_float32(df).astype({c: np.float64 for c in NUMERIC})
    expected = pipe.predict_proba(X64)
    (label, maps), names = _run(fastnn.to_onnx(pipe, X=_as_float32(df[:1])), _feeds(df))
    assert names == ["output_label", "output_probability"]
    got = np.array([[m[c] for c in pipe.classes_] for m in maps])
    np.testing.assert_allclose(got, expected, **F32)
    columns = fastnn.to_onnx(pipe, X=_as_float32(df[:1]),
                             options={id(pipe[-1]): {"zipmap": "columns"}})
    outs, names = _run(columns, _feeds(df))
    assert names == ["output_label"] + [f"s{c}" for c in pipe.classes_]
    np.testing.assert_allclose(np.column_stack(outs[1:]), expected, **F32)


@pytest.mark.parametrize("estimator", ["mlp", "gaussian", "ensemble", "ensemble-gaussian"])
def test_a_column_transformer_pipeline_regresses_as_predict(estimator):
    df, score = _table()
    y = 3.0 * score + 10.0
    member = MLPRegressor(hidden_layer_sizes=(16,), max_iter=80, random_state=0,
                          loss="gaussian_nll" if "gaussian" in estimator else "squared_error")
    reg = EnsembleRegressor(member, n_estimators=3, random_state=0) \
        if estimator.startswith("ensemble") else member
    pipe = Pipeline([("columns", _columns()), ("reg", reg)]).fit(df, y)
    with_std = estimator != "mlp"
    onx = fastnn.to_onnx(pipe, X=_as_float32(df[:1]),
                         options={id(reg): {"return_std": True}} if with_std else None)
    outs, names = _run(onx, _feeds(df))
    assert names == (["variable", "std"] if with_std else ["variable"])
    X64 = _as_float32(df).astype({c: np.float64 for c in NUMERIC})
    if with_std:
        mean, std = pipe.predict(X64, return_std=True)
        np.testing.assert_allclose(outs[1].ravel(), std, **F32)
    else:
        mean = pipe.predict(X64)
    assert outs[0].shape == (len(df), 1) and outs[0].dtype == np.float32
    np.testing.assert_allclose(outs[0].ravel(), mean, **F32)


@pytest.mark.parametrize("task", ["classifier", "regressor", "multilabel"])
def test_a_double_pipeline_computes_in_double(task):
    # StandardScaler and the network in double: equal to 1e-12, fastnn's nodes carried over
    rng = np.random.default_rng(1)
    X = rng.normal(3.0, 2.0, (150, 5))
    if task == "regressor":
        est = MLPRegressor(hidden_layer_sizes=(12,), max_iter=60, random_state=0)
        y = X[:, 0] - X[:, 1] ** 2
    else:
        est = MLPClassifier((12,), max_iter=60, random_state=0)
        y = (X[:, :3] > 3).astype(int) if task == "multilabel" else (X[:, 0] > 3) + (X[:, 1] > 4)
    pipe = make_pipeline(StandardScaler(), est).fit(X, y)
    onx = skl2onnx.to_onnx(pipe, X[:1], options={id(est): {"zipmap": False}}
                           if task != "regressor" else None)
    outs, _ = _run(onx, {"X": X})
    if task == "regressor":
        np.testing.assert_allclose(outs[0].ravel(), pipe.predict(X), **F64)
    else:
        assert outs[1].dtype == np.float64
        np.testing.assert_allclose(outs[1], pipe.predict_proba(X), **F64)
        np.testing.assert_array_equal(outs[0], pipe.predict(X))


def test_the_networks_nodes_are_fastnns_own_export():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 4))
    clf = MLPClassifier((6, 5), activation="gelu", max_iter=20, random_state=0)
    pipe = make_pipeline(StandardScaler(), clf).fit(X, X[:, 0] > 0)
    onx = skl2onnx.to_onnx(pipe, X[:1], options={id(clf): {"zipmap": False}})
    own = Counter(n.op_type for n in fastnn_export(clf).graph.node)
    ops = Counter(n.op_type for n in onx.graph.node)
    assert not own - ops                           # every node of fastnn's own export
    assert set(ops - own) <= {"Sub", "Div", "Scaler"}   # and the scaler's, nothing else
    weights = {tuple(np.asarray(w).ravel()[:3]) for w in clf.coefs_}
    found = {tuple(onnx.numpy_helper.to_array(i).ravel()[:3])
             for i in onx.graph.initializer if len(i.dims) == 2}
    assert weights <= found        # the weights as they are (bitwise), no transpose


def test_float_labels_become_int64_and_nocl_gives_indices():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(90, 3))
    y = np.where(X[:, 0] > 0, 2.0, 5.0)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((6,), max_iter=30, random_state=0))
    pipe.fit(X, y)
    (label, _), _ = _run(skl2onnx.to_onnx(pipe, X[:1], options={id(pipe[-1]): {
        "zipmap": False}}), {"X": X})
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, pipe.predict(X).astype(np.int64))
    (index, _), _ = _run(skl2onnx.to_onnx(pipe, X[:1], options={id(pipe[-1]): {
        "zipmap": False, "nocl": True}}), {"X": X})
    np.testing.assert_array_equal(index, pipe.predict_proba(X).argmax(axis=1))


def test_fastnn_to_onnx_writes_the_pipeline_and_still_exports_its_own_models(tmp_path):
    df, score = _table(60)
    pipe = Pipeline([("columns", _columns()),
                     ("clf", MLPClassifier((4,), max_iter=5, random_state=0))])
    pipe.fit(df, score > 0)
    path = tmp_path / "pipe.onnx"
    proto = fastnn.to_onnx(pipe, path, X=_as_float32(df[:1]),
                           options={id(pipe[-1]): {"zipmap": False}})
    assert path.read_bytes() == proto.SerializeToString()
    with pytest.raises(FileNotFoundError):
        fastnn.to_onnx(pipe, tmp_path / "no" / "pipe.onnx", X=_as_float32(df[:1]))
    # fastnn's own models go to fastnn's exporter, as before (X is not needed)
    clf = pipe[-1]
    assert fastnn.to_onnx(clf).graph.output[0].name == "label"
    model = fastnn.MLP([3, 4, 1], seed=0)
    assert fastnn.to_onnx(model).SerializeToString() == fastnn_export(model).SerializeToString()


def test_helpful_errors():
    df, score = _table(60)
    pipe = Pipeline([("columns", _columns()),
                     ("clf", MLPClassifier((4,), max_iter=5, random_state=0))])
    pipe.fit(df, score > 0)
    with pytest.raises(ValueError, match=r"X=.*X\[:1\]"):
        fastnn.to_onnx(pipe)
    with pytest.raises(TypeError, match="options"):
        fastnn.to_onnx(pipe[-1], options={id(pipe[-1]): {"zipmap": False}})
    with pytest.raises(TypeError, match="fastnn.MLP"):
        fastnn.to_onnx(object())
    # ZipMap takes float only: a double sample with the default zipmap is refused, not written
    X = np.random.default_rng(0).normal(size=(40, 3))
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier((4,), max_iter=5, random_state=0)).fit(X, X[:, 0] > 0)
    with pytest.raises(RuntimeError, match="zipmap"):
        fastnn.to_onnx(pipe, X=X[:1])
    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(4,), max_iter=5,
                                                       random_state=0)).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="gaussian_nll"):
        fastnn.to_onnx(reg, X=X[:1], options={id(reg[-1]): {"return_std": True}})
    # a table's columns straight into the estimator: skl2onnx gives it one input per column
    table = pd.DataFrame(X, columns=list("abc"))
    clf = MLPClassifier((4,), max_iter=5, random_state=0).fit(table, X[:, 0] > 0)
    with pytest.raises(RuntimeError, match="ColumnTransformer"):
        skl2onnx.to_onnx(clf, table[:1].astype(np.float32))


def test_without_skl2onnx_the_error_names_the_onnx_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)   # import skl2onnx raises ImportError
    X = np.random.default_rng(0).normal(size=(30, 2))
    pipe = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(3,), max_iter=3,
                                                        random_state=0)).fit(X, X[:, 0])
    with pytest.raises(ImportError, match=r'fastnn\[onnx\]'):
        fastnn.to_onnx(pipe, X=X[:1])
    with pytest.raises(ImportError, match="skl2onnx"):
        register()


def test_a_clone_of_the_pipeline_exports_after_fitting():
    # the registration is per class: clones, GridSearchCV's best_estimator_ ... convert too
    df, score = _table(80)
    pipe = Pipeline([("columns", _columns()),
                     ("clf", MLPClassifier((4,), max_iter=5, random_state=0))])
    copy = clone(pipe).fit(df, score > 0)
    (label, proba), _ = _run(fastnn.to_onnx(copy, X=_as_float32(df[:1]), options={
        id(copy[-1]): {"zipmap": False}}), _feeds(df))
    assert proba.shape == (80, 2) and label.dtype == np.int64
