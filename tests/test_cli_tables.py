"""`fastnn train` / `fastnn predict` on real tabular files, run as a user runs them.

Every table is written by pandas (with and without an index, with a byte-order mark, quoted
labels, tabs, missing cells, reordered columns).  The command runs as a subprocess
(``python -m fastnn``, from a directory outside the repository) where the process matters
(the whole train/predict round trip, --help, a closed pipe, exit codes) and in-process through
``fastnn.cli.command.main`` with the same argv elsewhere, to keep the module fast on a busy machine.
The references are computed independently here (pandas statistics, the model's own arrays).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import fastnn
from fastnn.io.saving import ModelFileError
from fastnn.io.tabular import read_table
from tests._helpers import run_cli as run  # noqa: E402

FAST = ["--epochs", "8", "--layers", "16"]   # (not --quiet: the tests read the summary)


def spawn(tmp_path, *argv, check=True):
    """`python -m fastnn argv` in tmp_path: the real process, exit status and streams."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    result = subprocess.run([sys.executable, "-m", "fastnn", *map(str, argv)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result




def _frame(n=240, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x one": rng.normal(size=n), "b": rng.normal(size=n) * 100 + 5,
                       "flag": rng.random(n) > 0.5})
    # a label with a comma and a quote needs quoting; the classes are text
    df["species"] = np.where(df["x one"] + df["b"] / 100 > 0, 'setosa, "big"', "virginica")
    return df


@pytest.fixture
def frame():
    return _frame()


def test_csv_with_index_bom_and_quoted_string_labels(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=True, encoding="utf-8-sig")  # index + BOM
    out = spawn(tmp_path, "train", "d.csv", "--target", "species", "--save", "m.npz", *FAST,
                "--epochs", "80")  # the last --epochs wins; enough to learn this boundary
    assert "task: classification into 2 classes" in out.stdout
    assert "inferred from the target" in out.stdout and "loss: cross_entropy" in out.stdout
    assert "held-out accuracy" in out.stdout
    model = fastnn.load(tmp_path / "m.npz")
    pre = model.preprocessor_
    # the unnamed index column is not a feature; the BOM is not part of a name
    assert pre.feature_names == ["x one", "b", "flag"]
    assert pre.classes == ['setosa, "big"', "virginica"]

    spawn(tmp_path, "predict", "m.npz", "d.csv", "--output", "out.csv")
    assert not (tmp_path / "out.csv.npy").exists()
    pred = pd.read_csv(tmp_path / "out.csv")
    assert list(pred.columns) == ["species", 'setosa, "big"', "virginica"]
    # independent reference: the model's probabilities on the standardised inputs (the
    # boolean column one-hot, False then True, its indicators not standardised)
    assert pre.input_names() == ["x one", "b", "flag=False", "flag=True"]
    X = np.column_stack([frame["x one"], frame["b"], ~frame["flag"], frame["flag"]]).astype(float)
    assert np.array_equal(pre.x_mean[2:], [0, 0]) and np.array_equal(pre.x_scale[2:], [1, 1])
    P = model.predict((X - pre.x_mean) / pre.x_scale)
    np.testing.assert_allclose(pred.iloc[:, 1:].to_numpy(), P, rtol=1e-6, atol=1e-7)
    assert pred["species"].tolist() == [pre.classes[i] for i in P.argmax(axis=1)]
    assert (pred["species"] == frame["species"]).mean() > 0.8


def test_tsv_and_an_explicit_delimiter(tmp_path, frame):
    frame.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    assert "classification" in run(tmp_path, "train", "d.tsv", "--target", "species",
                                   *FAST).stdout
    frame.to_csv(tmp_path / "d.dat", sep=";", index=False)
    bad = run(tmp_path, "train", "d.dat", "--target", "species", *FAST, check=False)
    assert bad.returncode == 2 and "--delimiter" in bad.stderr
    run(tmp_path, "train", "d.dat", "--target", "species", "--delimiter", ";", *FAST)


def test_named_index_column(tmp_path, frame):
    frame.rename_axis("sample_id").to_csv(tmp_path / "d.csv")
    run(tmp_path, "train", "d.csv", "--target", "species", "--index-col", "sample_id",
        "--save", "m.npz", *FAST)
    assert fastnn.load(tmp_path / "m.npz").preprocessor_.feature_names == ["x one", "b", "flag"]
    bad = run(tmp_path, "train", "d.csv", "--target", "species", "--index-col", "nope", *FAST,
              check=False)
    assert bad.returncode == 2 and "--index-col 'nope'" in bad.stderr


def test_missing_values_name_the_line_and_column_or_are_imputed(tmp_path, frame):
    frame.loc[5, "b"] = np.nan  # data row 5 (0-based) is file line 7: header line 1
    frame.loc[9, "b"] = np.nan
    frame.to_csv(tmp_path / "d.csv", index=False)
    bad = spawn(tmp_path, "train", "d.csv", "--target", "species", *FAST, check=False)
    assert bad.returncode == 2
    assert "d.csv, line 7" in bad.stderr and "column 'b'" in bad.stderr
    assert "2 missing values" in bad.stderr and "--impute" in bad.stderr

    run(tmp_path, "train", "d.csv", "--target", "species", "--impute", "median",
        "--validation-split", "0", "--save", "m.npz", *FAST)
    pre = fastnn.load(tmp_path / "m.npz").preprocessor_
    assert pre.x_fill[1] == frame["b"].median()  # pandas skips NaN, as the imputation does
    # predict applies the stored fill; a model trained without --impute rejects the gap
    run(tmp_path, "predict", "m.npz", "d.csv", "--output", "p.csv")
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(frame)
    # NA spellings pandas reads as missing are missing here too
    (tmp_path / "na.csv").write_text("a,b,y\n1,NA,0\n2,3,1\n")
    bad = run(tmp_path, "train", "na.csv", "--target", "y", *FAST, check=False)
    assert "na.csv, line 2" in bad.stderr and "column 'b'" in bad.stderr


def test_a_missing_target_is_an_error(tmp_path, frame):
    frame.loc[3, "species"] = None
    frame.to_csv(tmp_path / "d.csv", index=False)
    bad = run(tmp_path, "train", "d.csv", "--target", "species", *FAST, check=False)
    assert bad.returncode == 2 and "line 5" in bad.stderr and "'species'" in bad.stderr


def test_predict_selects_columns_by_name_and_drops_the_target(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    run(tmp_path, "train", "d.csv", "--target", "species", "--save", "m.npz", *FAST)
    run(tmp_path, "predict", "m.npz", "d.csv", "--output", "a.csv")
    frame[["flag", "species", "b", "x one"]].to_csv(tmp_path / "r.csv", index=False)
    run(tmp_path, "predict", "m.npz", "r.csv", "--output", "b.csv")
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_frame_equal(a, b)
    frame[["flag", "x one"]].to_csv(tmp_path / "lacking.csv", index=False)
    bad = run(tmp_path, "predict", "m.npz", "lacking.csv", check=False)
    assert bad.returncode == 2 and "'b'" in bad.stderr and "needs the columns" in bad.stderr


def test_regression_target_standardised_and_given_back_in_its_units(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3)) * [1, 10, 100] + [0, 50, -7]
    y = 1000 + 50 * X[:, 0] + 2 * X[:, 1] + rng.normal(size=300)
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(price=y)
    df.to_csv(tmp_path / "r.csv", index=False)
    out = run(tmp_path, "train", "r.csv", "--target", "price", "--validation-split", "0",
              "--save", "m.npz", "--epochs", "3")
    assert "task: regression (inferred from the target); loss: mse" in out.stdout
    model = fastnn.load(tmp_path / "m.npz")
    pre = model.preprocessor_
    np.testing.assert_allclose(pre.x_mean, df[["a", "b", "c"]].mean(), rtol=1e-12)
    np.testing.assert_allclose(pre.x_scale, df[["a", "b", "c"]].std(ddof=0), rtol=1e-12)
    assert pre.y_mean == pytest.approx(y.mean(), rel=1e-12)
    assert pre.y_scale == pytest.approx(y.std(), rel=1e-12)
    run(tmp_path, "predict", "m.npz", "r.csv", "--output", "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["price"]
    expected = model.predict((X - pre.x_mean) / pre.x_scale)[:, 0] * pre.y_scale + pre.y_mean
    np.testing.assert_allclose(pred["price"], expected, rtol=1e-6)

    run(tmp_path, "train", "r.csv", "--target", "price", "--no-standardize", "--save", "n.npz",
        "--epochs", "1", "--quiet")
    raw = fastnn.load(tmp_path / "n.npz").preprocessor_
    assert raw.x_mean.tolist() == [0, 0, 0] and raw.x_scale.tolist() == [1, 1, 1]
    assert (raw.y_mean, raw.y_scale) == (0.0, 1.0)


def test_gaussian_model_writes_a_std_column_and_npy_only_for_npy(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 2))
    pd.DataFrame(X, columns=["u", "v"]).assign(t=X[:, 0] + 0.1 * rng.normal(size=200)).to_csv(
        tmp_path / "g.csv", index=False)
    run(tmp_path, "train", "g.csv", "--target", "t", "--loss", "gaussian_nll", "--save",
        "g.npz", *FAST)
    run(tmp_path, "predict", "g.npz", "g.csv", "--output", "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["t", "std"] and (pred["std"] > 0).all()
    run(tmp_path, "predict", "g.npz", "g.csv", "--output", "p.npy")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), pred.to_numpy(), rtol=1e-6)


def test_task_inference_warns_when_ambiguous_and_can_be_overridden(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2))
    counts = np.round(100 + 30 * X[:, 0]).astype(int)  # whole numbers, many distinct values
    pd.DataFrame(X, columns=["a", "b"]).assign(n=counts, few=counts % 3).to_csv(
        tmp_path / "i.csv", index=False)
    out = run(tmp_path, "train", "i.csv", "--target", "n", *FAST)
    assert "task: regression" in out.stdout
    assert "warning" in out.stderr and "--task classification" in out.stderr
    # `few` is a feature when the target is n; as the target it is 3 classes, with the
    # warning too (3 whole numbers may be counts), which two values do not get
    df = pd.read_csv(tmp_path / "i.csv").drop(columns="n")
    df.to_csv(tmp_path / "f.csv", index=False)
    out = run(tmp_path, "train", "f.csv", "--target", "few", *FAST)
    assert "classification into 3 classes (0, 1, 2)" in out.stdout
    assert "3 distinct whole numbers" in out.stderr and "--task regression" in out.stderr
    out = run(tmp_path, "train", "f.csv", "--target", "few", "--task", "regression", *FAST)
    assert "task: regression (--task)" in out.stdout
    out = run(tmp_path, "train", "f.csv", "--target", "few", "--loss", "mse", *FAST)
    assert "task: regression (--loss)" in out.stdout
    bad = run(tmp_path, "train", "f.csv", "--target", "few", "--loss", "mse", "--task",
              "classification", *FAST, check=False)
    assert bad.returncode == 2 and "--loss mse" in bad.stderr


def test_a_text_target_with_a_class_per_row_warns(tmp_path, frame):
    names = [f"s{i}" for i in range(len(frame))]
    frame.drop(columns="species").assign(name=names).to_csv(tmp_path / "d.csv", index=False)
    out = run(tmp_path, "train", "d.csv", "--target", "name", "--epochs", "1", "--quiet",
              "--validation-split", "0", "--layers", "4")
    assert "240 distinct texts" in out.stderr and "identifier" in out.stderr


def test_boolean_labels_come_back_as_booleans(tmp_path, frame):
    frame.drop(columns="species").to_csv(tmp_path / "d.csv", index=False)
    run(tmp_path, "train", "d.csv", "--target", "flag", "--save", "m.npz", *FAST)
    assert fastnn.load(tmp_path / "m.npz").preprocessor_.classes == [False, True]
    run(tmp_path, "predict", "m.npz", "d.csv", "--output", "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["flag", "False", "True"] and pred["flag"].dtype == bool


def test_every_help_shows_defaults_and_errors_name_the_flag(tmp_path, frame):
    for argv in (["predict", "--help"], ["demo", "--help"]):
        assert "default" in run(tmp_path, *argv).stdout
    train_help = spawn(tmp_path, "train", "--help").stdout
    for flag in ("--epochs", "--validation-split", "--early-stopping", "--lr"):
        text = train_help.split(flag, 2)[-1].split("\n  -")[0]
        assert "(default:" in text, (flag, text)
    frame.to_csv(tmp_path / "d.csv", index=False)
    for argv, flag in [(["--epochs", "0"], "--epochs"), (["--batch-size", "-1"], "--batch-size"),
                       (["--validation-split", "1.5"], "--validation-split"),
                       (["--lr", "0"], "--lr"), (["--target", "nope"], "--target"),
                       (["--target", "species", "--layers", "a"], "--layers"),
                       (["--target", "species", "--init", "bogus"], "--init"),
                       (["--target", "species", "--threads", str(2**40)], "--threads"),
                       (["--target", "species", "--encoding", "bogus"], "--encoding"),
                       (["--target", "species", "--loss", "kl"], "--loss")]:
        bad = run(tmp_path, "train", "d.csv", *argv, check=False)
        assert bad.returncode == 2 and flag in bad.stderr, (argv, bad.stderr)
        for python_name in ("batch_size", "validation_split", "n_threads", "initializer="):
            assert python_name not in bad.stderr, (argv, bad.stderr)
    np.savez(tmp_path / "tiny.npz", X=np.zeros((2, 2)), y=np.array([0, 1]))
    for data in ("d.csv", "tiny.npz"):
        bad = run(tmp_path, "train", data, "--target", "species" if data == "d.csv" else "y",
                  "--validation-split", "0.001", *FAST, check=False)
        assert bad.returncode == 2 and "--validation-split 0.001" in bad.stderr, bad.stderr


def test_a_closed_pipe_ends_quietly(tmp_path):
    X = np.random.default_rng(4).normal(size=(40000, 2))
    pd.DataFrame(X, columns=["a", "b"]).assign(y=X[:, 0] > 0).to_csv(tmp_path / "big.csv",
                                                                       index=False)
    run(tmp_path, "train", "big.csv", "--target", "y", "--save", "m.npz", "--epochs", "1",
        "--quiet")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "predict", "m.npz", "big.csv"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"y,")
    proc.stdout.close()  # the reader leaves, as `| head -1` does
    _, err = proc.communicate(timeout=120)
    # 128 + SIGPIPE, as a shell reports for a writer whose reader left (tests/test_cli_pipes.py)
    assert proc.returncode == 141 and err == b"", err


def test_plot_writes_the_learning_curve_or_says_what_to_install(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    result = run(tmp_path, "train", "d.csv", "--target", "species", "--plot", "c.png", *FAST,
                 check=False)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result.returncode == 2 and "pip install matplotlib" in result.stderr
    else:
        assert result.returncode == 0
        assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_multi_label_sigmoid_predictions_are_one_probability_per_output(tmp_path):
    X = np.random.default_rng(6).normal(size=(60, 3))
    Y = (X[:, :2] > 0).astype(float)  # two independent 0/1 labels
    np.savez(tmp_path / "ml.npz", X=X, y=Y)
    run(tmp_path, "train", "ml.npz", "--loss", "bce", "--save", "m.npz", *FAST)
    run(tmp_path, "predict", "m.npz", "ml.npz", "--output", "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["p0", "p1"]
    np.testing.assert_allclose(pred.to_numpy(), fastnn.load(tmp_path / "m.npz").predict(X),
                               rtol=1e-6)


def test_npz_data_keeps_working(tmp_path):
    X = np.random.default_rng(5).normal(size=(100, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    run(tmp_path, "train", "d.npz", "--save", "m.npz", *FAST)
    spawn(tmp_path, "predict", "m.npz", "d.npz", "--output", "predicted.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "predicted.npy"),
                                  fastnn.load(tmp_path / "m.npz").predict(X))


# --------------------------------------------------------------------- the two readers

def test_the_csv_module_reader_agrees_with_the_pandas_reader(tmp_path):
    text = ('\ufeff,name,"x, y", z ,ok\n'
            '0,"a ""quoted"" word",1.5, 2 ,True\n'
            '1,plain,NA,3,false\n'
            '\n'
            '2,,-0.25,nan,TRUE\n')
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    a = read_table(path, use_pandas=True)
    b = read_table(path, use_pandas=False)
    assert a.columns == b.columns == ["name", "x, y", "z", "ok"]
    for name in a.columns:
        assert a.data[name].dtype == b.data[name].dtype, name
        assert [str(v) for v in a.data[name]] == [str(v) for v in b.data[name]], name
    assert a.data["name"].tolist() == ['a "quoted" word', "plain", None]
    assert np.isnan(a.data["x, y"][1]) and a.data["ok"].tolist() == [True, False, True]
    # both count physical lines (the blank line 4 is skipped)
    assert a.lines.tolist() == b.lines.tolist() == [2, 3, 5]


# every case on which the pandas and csv-module readers disagreed (and their neighbours):
# text -> the columns and values read, or a fragment of the error
READER_CASES = {
    "duplicate names": ("a,a\n1,2\n", "'a' appears twice"),
    "duplicate after stripping": ("a, a \n1,2\n", "'a' appears twice"),
    "two empty names": (",x,\n1,2,3\n", "'' appears twice"),
    "empty cells": ("a,b\n1,\n,2\n", {"a": [1.0, None], "b": [None, 2.0]}),
    "quoted numbers": ('a,b\n"1",2\n" 3 ",4\n', {"a": [1.0, 3.0], "b": [2.0, 4.0]}),
    "blanks around cells and names": ("a , b\n 1 , 2 \n3,4\n", {"a": [1.0, 3.0],
                                                                   "b": [2.0, 4.0]}),
    "byte-order mark": ("\ufeffa,b\n1,2\n", {"a": [1.0], "b": [2.0]}),
    "NA spellings": ("a,b\nNA,x\nnull,y\nNone,z\n", {"a": [None, None, None],
                                                       "b": ["x", "y", "z"]}),
    "booleans": ("a,b\nTrue,FALSE\nfalse,\n", {"a": [True, False], "b": [False, None]}),
    "short row": ("a,b\n1,2\n3\n", "line 3: 1 fields; the header has 2"),
    "long row": ("a,b\n1,2\n3,4,5\n", "line 3: 3 fields; the header has 2"),
    "long first row": ("a,b\n1,2,3\n3,4\n", "line 2: 3 fields; the header has 2"),
    "trailing delimiter": ("a,b\n1,2,\n", "line 2: 3 fields; the header has 2"),
    "empty file": ("", "no header row"),
    "blank first line": ("\na,b\n1,2\n", "no header row"),
    "blanks-only first line": ("   \na,b\n1,2\n", "no header row"),
    "header only": ("a,b\n", {"a": [], "b": []}),
    "blank and blanks-only lines": ("a,b\n1,2\n\n   \n\t\n3,4\n",
                                    {"a": [1.0, 3.0], "b": [2.0, 4.0], "lines": [2, 6]}),
    "a row of empty cells": ("a,b\n1,2\n,\n3,4\n", {"a": [1.0, None, 3.0],
                                                     "b": [2.0, None, 4.0],
                                                     "lines": [2, 3, 4]}),
    "quoted line break": ('a,b\n"x\ny",2\nz,3\n', {"a": ["x\ny", "z"], "b": [2.0, 3.0],
                                                    "lines": [2, 4]}),
    "empty name in the middle": ("a,,b\n1,2,3\n", {"a": [1.0], "": [2.0], "b": [3.0]}),
    "empty first name: the index": (",a\n0,2\n1,3\n", {"a": [2.0, 3.0]}),
    "CRLF": ("a,b\r\n1,2\r\n", {"a": [1.0], "b": [2.0]}),
}


def _read_case(path):
    try:
        table = read_table(path)
    except ValueError as exc:
        return "error", str(exc)
    return "ok", table.columns, {k: [None if isinstance(v, float) and np.isnan(v) else v
                                     for v in col.tolist()] for k, col in table.data.items()}, \
        table.lines.tolist()


def test_one_reading_contract_with_or_without_pandas(tmp_path, monkeypatch):
    # the pandas reader and the csv-module reader disagreed on these files (pandas renamed a
    # duplicated name "a.1", padded short rows, took a long first row's first field as an
    # index, dropped rows of empty cells, named empty header cells "Unnamed: k", numbered the
    # lines after a quoted line break otherwise); now one reader defines the contract, and
    # every case gives the same columns or the same error with pandas importable and without
    paths = {}
    for k, (name, (text, _)) in enumerate(READER_CASES.items()):
        paths[name] = tmp_path / f"case{k}.csv"
        paths[name].write_bytes(text.encode("utf-8"))
    with_pandas = {name: _read_case(path) for name, path in paths.items()}
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    without = {name: _read_case(path) for name, path in paths.items()}
    for name, (text, expected) in READER_CASES.items():
        assert with_pandas[name] == without[name], name
        got = with_pandas[name]
        if isinstance(expected, str):
            assert got[0] == "error" and expected in got[1], (name, got)
            continue
        assert got[0] == "ok", (name, got)
        expected = dict(expected)
        lines = expected.pop("lines", None)
        assert got[1] == list(expected), name
        assert got[2] == expected, name
        if lines is not None:
            assert got[3] == lines, name


def test_compressed_tables_read_as_the_plain_file(tmp_path):
    import bz2, gzip, lzma, zipfile  # noqa: E401
    text = "a,b\n1,x\n2,y\n"
    (tmp_path / "t.csv").write_text(text)
    for suffix, write in ((".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)):
        with write(tmp_path / f"t.csv{suffix}", "wt") as fh:
            fh.write(text)
    with zipfile.ZipFile(tmp_path / "t.csv.zip", "w") as archive:
        archive.writestr("t.csv", text)
    want = _read_case(tmp_path / "t.csv")
    for suffix in (".gz", ".bz2", ".xz", ".zip"):
        assert _read_case(tmp_path / f"t.csv{suffix}")[1:] == want[1:], suffix


def test_read_table_errors(tmp_path):
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match=r"ragged.csv, line 3: 1 fields; the header has 2"):
        read_table(tmp_path / "ragged.csv", use_pandas=False)
    (tmp_path / "latin.csv").write_bytes("caf\xe9,b\n1,2\n".encode("latin-1"))
    for use_pandas in (True, False):
        with pytest.raises(ValueError, match="--encoding"):
            read_table(tmp_path / "latin.csv", use_pandas=use_pandas)
        assert read_table(tmp_path / "latin.csv", encoding="latin-1",
                          use_pandas=use_pandas).columns == ["café", "b"]
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    for use_pandas in (True, False):
        with pytest.raises(ValueError, match="appears twice"):
            read_table(tmp_path / "dup.csv", use_pandas=use_pandas)


# --------------------------------------------------------------------- the model file

@pytest.mark.parametrize("edit", [
    lambda t: t.update(x_scale=[-1.0] * len(t["x_scale"])),
    lambda t: t.update(x_mean=t["x_mean"][:-1]),
    lambda t: t.update(classes=["only one"]),
    lambda t: t.update(classes=[[1], [2]]),
    lambda t: t.update(feature_names=["a", "a", "c"]),
    lambda t: t.update(task="clustering"),
    lambda t: t.update(y_scale="1"),
    lambda t: t.update(extra=1),
    lambda t: t.pop("target"),
    lambda t: t.update(feature_names=["a", "b"], x_mean=[0, 0], x_scale=[1, 1]),
    lambda t: t.update(classes=["a", "b", "c"]),
], ids=["negative-scale", "short-mean", "one-class", "list-classes", "duplicate-names",
        "task", "string-scale", "extra-key", "missing-key", "feature-count", "class-count"])
def test_a_crafted_tabular_description_is_a_model_file_error(tmp_path, frame, edit):
    frame.to_csv(tmp_path / "d.csv", index=False)
    run(tmp_path, "train", "d.csv", "--target", "species", "--save", "m.npz", *FAST)
    with np.load(tmp_path / "m.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    description = json.loads(str(arrays["description"]))
    edit(description["tabular"])
    arrays["description"] = np.array(json.dumps(description))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError):
        fastnn.load(tmp_path / "bad.npz")


def test_without_pandas_the_csv_module_gives_the_same_model(tmp_path, frame, monkeypatch):
    frame.loc[7, "b"] = np.nan
    frame.to_csv(tmp_path / "d.csv", index=True, encoding="utf-8-sig")
    argv = ["train", "d.csv", "--target", "species", "--impute", "mean", *FAST]
    run(tmp_path, *argv, "--save", "with.npz")
    run(tmp_path, "predict", "with.npz", "d.csv", "--output", "with.csv")
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    run(tmp_path, *argv, "--save", "without.npz")
    run(tmp_path, "predict", "without.npz", "d.csv", "--output", "without.csv")
    a, b = fastnn.load(tmp_path / "with.npz"), fastnn.load(tmp_path / "without.npz")
    assert a.preprocessor_.get_config() == b.preprocessor_.get_config()
    assert np.array_equal(a.params, b.params)
    assert (tmp_path / "with.csv").read_bytes() == (tmp_path / "without.csv").read_bytes()


def test_na_values_names_extra_missing_markers(tmp_path):
    (tmp_path / "uci.csv").write_text("a,b,y\n1,2,0\n3,?,1\n4,5,0\n6,7,1\n8,9,0\n")
    bad = run(tmp_path, "train", "uci.csv", "--target", "y", *FAST, check=False)
    assert bad.returncode == 2 and "uci.csv, line 3" in bad.stderr and "'?'" in bad.stderr
    assert "--na-values" in bad.stderr
    bad = run(tmp_path, "train", "uci.csv", "--target", "y", "--na-values", "?", *FAST,
              check=False)
    assert "line 3" in bad.stderr and "column 'b' is missing" in bad.stderr
    run(tmp_path, "train", "uci.csv", "--target", "y", "--na-values", "?", "--impute", "mean",
        "--validation-split", "0", "--save", "m.npz", *FAST)
    assert fastnn.load(tmp_path / "m.npz").preprocessor_.x_fill[1] == pytest.approx(23 / 4)
    for use_pandas in (True, False):
        table = read_table(tmp_path / "uci.csv", na_values=["?"], use_pandas=use_pandas)
        assert np.isnan(table.data["b"][1]) and table.data["b"].dtype == np.float64


def test_an_infinite_cell_names_its_line_and_column(tmp_path, frame):
    # "x_mean has shape (2,); expected (2,) finite numbers" named neither the column nor the
    # line, and no internal name means anything to the user
    frame["b"] = frame["b"].astype(object)
    frame.loc[5, "b"] = "inf"              # data row 5 is file line 7 (the header is line 1)
    frame.to_csv(tmp_path / "d.csv", index=False)
    bad = run(tmp_path, "train", "d.csv", "--target", "species", *FAST, check=False)
    assert bad.returncode == 2
    assert "d.csv, line 7" in bad.stderr and "column 'b'" in bad.stderr, bad.stderr
    assert "holds inf" in bad.stderr and "finite number" in bad.stderr
    assert "x_mean" not in bad.stderr and "shape" not in bad.stderr
    # the same in a table to predict from, and a regression target that reads as -inf
    frame.loc[5, "b"] = 1.0
    frame.to_csv(tmp_path / "ok.csv", index=False)
    run(tmp_path, "train", "ok.csv", "--target", "species", "--save", "m.npz", *FAST)
    (tmp_path / "p.csv").write_text(
        (tmp_path / "ok.csv").read_text().replace(",1.0,", ",-1e999,", 1))
    bad = run(tmp_path, "predict", "m.npz", "p.csv", check=False)
    assert bad.returncode == 2 and "column 'b' holds -inf" in bad.stderr, bad.stderr
    (tmp_path / "r.csv").write_text("a,y\n1,2.5\n2,1e400\n3,0.5\n4,1.5\n")
    bad = run(tmp_path, "train", "r.csv", "--target", "y", *FAST, check=False)
    assert "r.csv, line 3" in bad.stderr and "target column 'y' holds inf" in bad.stderr


def test_columns_and_targets_near_1e200_train_and_predict(tmp_path):
    # their mean and standard deviation are ordinary numbers (near 1e200): squaring to get
    # the std overflowed to inf, and training failed ("x_scale ... expected finite numbers")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 2))
    y = X[:, 0] - 2 * X[:, 1]
    pd.DataFrame({"big": X[:, 0] * 1e200, "b": X[:, 1], "y": y * 1e200}).to_csv(
        tmp_path / "d.csv", index=False)
    pd.DataFrame({"big": X[:, 0], "b": X[:, 1], "y": y}).to_csv(tmp_path / "s.csv",
                                                                 index=False)
    out = run(tmp_path, "train", "d.csv", "--target", "y", "--save", "d.npz", *FAST)
    run(tmp_path, "train", "s.csv", "--target", "y", "--save", "s.npz", *FAST)
    big, small = fastnn.load(tmp_path / "d.npz"), fastnn.load(tmp_path / "s.npz")
    pre, ref = big.preprocessor_, small.preprocessor_
    np.testing.assert_allclose(pre.x_mean, ref.x_mean * [1e200, 1], rtol=1e-12)
    np.testing.assert_allclose(pre.x_scale, ref.x_scale * [1e200, 1], rtol=1e-12)
    assert pre.y_scale == pytest.approx(ref.y_scale * 1e200, rel=1e-12)
    # the same standardised problem: the same network, the held-out R^2 a number
    np.testing.assert_allclose(big.params, small.params, rtol=1e-4, atol=1e-6)
    assert "R^2: nan" not in out.stdout
    run(tmp_path, "predict", "d.npz", "d.csv", "--output", "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")["y"].to_numpy()
    assert np.isfinite(pred).all() and np.abs(pred).max() > 1e199


def test_a_table_read_as_one_column_suggests_the_delimiter(tmp_path):
    (tmp_path / "semi.csv").write_text("a;b;y\n1;2;x\n3;4;z\n")
    bad = run(tmp_path, "train", "semi.csv", "--target", "y", *FAST, check=False)
    assert bad.returncode == 2 and "--delimiter ';'" in bad.stderr, bad.stderr


def test_non_integer_labels_name_no_unknown_class_count(tmp_path):
    # a float y given to the classifier of `fastnn train data.npz` said "class labels in
    # [0, None) or probability rows of shape (n_samples, None)"
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(20, 3)), y=np.linspace(0, 3, 20))
    bad = run(tmp_path, "train", "d.npz", *FAST, check=False)
    assert bad.returncode == 2
    assert "None" not in bad.stderr and "non-integer value" in bad.stderr, bad.stderr
    assert "regression loss" in bad.stderr
    y = np.round(np.linspace(0, 3, 20))
    y[4] = np.nan
    np.savez(tmp_path / "n.npz", X=rng.normal(size=(20, 3)), y=y)
    bad = run(tmp_path, "train", "n.npz", *FAST, check=False)
    assert "first at index 4: nan" in bad.stderr, bad.stderr


def test_a_column_near_the_float64_limit_on_both_sides_standardizes(tmp_path):
    # (x - mean) overflows for x = 1.5e308 when mean is -1e308 although the standardized
    # value (about 1.3) is an ordinary number
    from fastnn.io.tabular import apply_steps
    steps = [("standardize", (np.array([-0.5e308]), np.array([1.2e308])))]
    out = apply_steps(steps, np.array([[1.5e308], [-1.7e308], [0.0]]))
    np.testing.assert_allclose(out[:, 0], [1.6666666666666667, -1.0, 0.4166666666666667],
                               rtol=1e-15)


def test_whole_number_labels_beyond_2_to_the_53_stay_distinct_classes(tmp_path):
    # float64 holds whole numbers exactly only up to 2**53: 18-digit codes as labels read
    # as floats merged neighbours into one class.  The table keeps them exact, as classes,
    # in the model file and in the predictions
    big = [2**53 + 1, 2**53, 10**18 + 7]
    rng = np.random.default_rng(0)
    y = [big[i % 3] for i in range(60)]
    X = rng.normal(size=(60, 2)) + np.array([[i % 3, 0] for i in range(60)])
    lines = ["a,b,code"] + [f"{X[i, 0]:.17g},{X[i, 1]:.17g},{y[i]}" for i in range(60)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    table = read_table(tmp_path / "d.csv")
    assert table.labels("code") == y and table.data["code"].dtype == np.float64
    assert table.take(np.arange(3)).labels("code") == y[:3]
    run(tmp_path, "train", "d.csv", "--target", "code", *FAST, "--save", "m.npz")
    model = fastnn.load(tmp_path / "m.npz")
    assert model.preprocessor_.classes == sorted(big)
    out = run(tmp_path, "predict", "m.npz", "d.csv", "--output", "p.csv")
    assert out.returncode == 0
    predicted = pd.read_csv(tmp_path / "p.csv", dtype={"code": object})
    assert set(predicted.columns) >= {str(b) for b in big}
    assert set(predicted["code"].astype(int)) <= set(big)


def test_whole_numbers_within_float64_need_no_exact_copy(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,9007199254740992\n2,3\n3,\n")
    table = read_table(tmp_path / "d.csv")
    assert table.whole == {}
    assert table.labels("y")[:2] == [2**53, 3]


def test_a_whole_number_beyond_the_float64_range_is_an_exact_label_or_an_infinite_feature(
        tmp_path):
    huge = 10**400
    (tmp_path / "d.csv").write_text(f"a,y\n1,{huge}\n2,0\n3,{huge}\n4,0\n{huge},1\n")
    table = read_table(tmp_path / "d.csv")
    assert table.labels("y") == [huge, 0, huge, 0, 1]
    bad = run(tmp_path, "train", "d.csv", "--target", "y", *FAST, check=False)
    assert bad.returncode == 2 and "line 6: column 'a' holds inf" in bad.stderr, bad.stderr


def test_an_infinite_target_is_reported_at_its_first_line_in_the_file(tmp_path):
    # it was checked after the validation split, on the training rows only: the error named
    # a later line and no count
    rows = [f"{i},{i * 0.5}" for i in range(20)]
    rows[3] = "3,inf"
    rows[12] = "12,-inf"
    (tmp_path / "d.csv").write_text("a,y\n" + "\n".join(rows) + "\n")
    bad = run(tmp_path, "train", "d.csv", "--target", "y", *FAST, check=False)
    assert bad.returncode == 2
    assert "line 5: the target column 'y' holds inf (2 infinite cells in all)" in bad.stderr, \
        bad.stderr


@pytest.mark.parametrize("cell", ["1_000", "\uff11\uff12", "\u0661\u0662"])
def test_numbers_are_ascii_as_tables_write_them(tmp_path, cell):
    # Python's float reads "1_000" and full-width or Arabic-Indic digits: a column of such
    # codes became numbers silently
    (tmp_path / "d.csv").write_text(f"a,y\n{cell},1\n2,0\n", encoding="utf-8")
    assert read_table(tmp_path / "d.csv").data["a"].dtype == object


def test_a_utf16_file_without_a_byte_order_mark_names_the_file_and_the_flag(tmp_path):
    (tmp_path / "d.csv").write_bytes("a,y\n1,2\n".encode("utf-16-le"))
    bad = run(tmp_path, "train", "d.csv", "--target", "y", "--encoding", "utf-16", *FAST,
              check=False)
    assert bad.returncode == 2 and "d.csv: cannot decode it as utf-16" in bad.stderr, \
        bad.stderr
    assert "--encoding" in bad.stderr


def test_a_regression_target_of_whole_numbers_float64_merges_says_so(tmp_path):
    big = [9223372036854775806, 9223372036854775807]
    (tmp_path / "d.csv").write_text("a,y\n" + "".join(f"{i},{big[i % 2]}\n" for i in range(10)))
    bad = run(tmp_path, "train", "d.csv", "--target", "y", "--task", "regression", *FAST,
              check=False)
    assert bad.returncode == 2 and "differ only beyond" in bad.stderr, bad.stderr
