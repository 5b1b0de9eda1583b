"""`fastnn train` / `predict` / `export` on a messy table: an identifier, ISO dates, text
categories, booleans, missing cells, string labels; new rows with an unseen level, reordered
and extra columns.

The references are independent of fastnn's encoder: pandas reads the files, scikit-learn's
``OneHotEncoder(handle_unknown="ignore")`` encodes the categories, pandas' ``to_datetime``
turns the dates into days, NumPy standardises; the ONNX feeds are built from the csv module.
"""
import csv
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import fastnn
from fastnn.io.columns import ColumnEncoding, iso_days, plan_columns
from fastnn.io.tabular import Preprocessor, read_table
from tests._helpers import run_cli as run  # noqa: E402

OneHotEncoder = pytest.importorskip("sklearn.preprocessing").OneHotEncoder

FAST = ["--epochs", "6", "--layers", "8"]




def _patients(n=160, seed=0):
    rng = np.random.default_rng(seed)
    age = np.round(rng.normal(55, 12, n), 1)
    sex = rng.choice(["F", "M"], n)
    ward = rng.choice(["A", "B", "C"], n).astype(object)
    smoker = rng.choice(["True", "False"], n).astype(object)
    days = rng.integers(0, 700, n)
    visit = [str(np.datetime64("2022-01-01") + int(d)) for d in days]
    visit[3] = visit[3] + "T08:30:00"        # a time of day: a fraction of a day
    visit[5] = visit[5] + "T23:00:00+02:00"  # with an offset: 21:00 UTC
    score = (age - 55) / 12 + (sex == "M") + (smoker == "True") + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({
        "patient_id": [f"P{k:05d}" for k in range(n)], "visit": visit,
        "age": age.astype(object), "sex": sex, "ward": ward, "smoker": smoker,
        "notes": rng.choice(["ok", "see file"], n),
        "outcome": np.where(score > 1, "readmitted", "recovered")})
    frame.loc[[7, 20], "age"] = ""
    frame.loc[[9], "visit"] = ""
    frame.loc[[11, 30], "ward"] = ""
    frame.loc[[13], "smoker"] = ""
    return frame


def _new_rows():
    # reordered, an extra column, an unseen ward, a missing ward, "true" spelled otherwise
    return pd.DataFrame({
        "smoker": ["true", "False", "", "TRUE"], "extra": [1, 2, 3, 4],
        "ward": ["D", "A", "", "C"], "age": [40.0, 71.5, 55.0, 38.0], "sex": ["F", "M", "M", "F"],
        "visit": ["2023-03-01", "2023-06-30T12:00:00", "2022-02-02", "2023-12-31"],
        "notes": ["x", "y", "z", "w"], "patient_id": ["Q1", "Q2", "Q3", "Q4"]})


def _write(tmp_path, frame, name):
    frame.to_csv(tmp_path / name, index=False)
    return tmp_path / name


def _reference_inputs(train, rows, pre):
    """The model's inputs for `rows` computed without fastnn's encoder: sklearn's one-hot
    (fitted on the training rows' present values), pandas' dates, NumPy's statistics."""
    def days(col):
        stamps = pd.to_datetime(col.replace("", np.nan), utc=True, format="ISO8601")
        return ((stamps - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)) \
            .to_numpy(np.float64)

    def texts(col):
        return col.fillna("").astype(str).replace({"true": "True", "TRUE": "True"})

    blocks = []
    for name in ["visit", "age", "sex", "ward", "smoker"]:
        if name in ("visit", "age"):
            fit = days(train[name]) if name == "visit" else pd.to_numeric(train[name]).to_numpy()
            x = days(rows[name]) if name == "visit" else pd.to_numeric(rows[name]).to_numpy()
            mean = np.nanmean(fit)                     # --impute mean
            filled = np.where(np.isnan(fit), mean, fit)
            x = (np.where(np.isnan(x), mean, x) - filled.mean()) / filled.std()
            blocks.append(x[:, None])
        else:
            present = texts(train[name])
            enc = OneHotEncoder(handle_unknown="ignore")
            enc.fit(present[present != ""].to_numpy()[:, None])
            blocks.append(enc.transform(texts(rows[name]).to_numpy()[:, None]).toarray())
    return np.concatenate(blocks, axis=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("patients")
    train = _patients()
    _write(tmp, train, "patients.csv")
    _write(tmp, _new_rows(), "new.csv")
    out = run(tmp, "train", "patients.csv", "--target", "outcome", "--drop", "notes",
              "--impute", "mean", "--validation-split", "0", "--dtype", "float64",
              "--save", "m.npz", *FAST)
    return SimpleNamespace(tmp=tmp, train=train, out=out, model=fastnn.load(tmp / "m.npz"))


def test_a_line_per_column_says_what_was_done(trained):
    lines = trained.out.stdout.split("columns:\n", 1)[1].splitlines()[:7]
    assert lines == [
        "  notes: left out (--drop)",
        "  patient_id: left out: an identifier (text, a different value in each of 160 rows: "
        "one-hot would match no new row)",
        f"  visit: ISO date -> days since 1970-01-01, standardised; 1 missing filled with the "
        f"mean ({lines[2].rsplit('(', 1)[1]}",
        f"  age: number, standardised; 2 missing filled with the mean "
        f"({np.nanmean(pd.to_numeric(trained.train['age'])):.6g})",
        "  sex: text, one-hot with 2 levels ('F', 'M')",
        "  ward: text, one-hot with 3 levels ('A', 'B', 'C'); 2 missing -> all zeros",
        "  smoker: booleans, one-hot with 2 levels (False, True); 1 missing -> all zeros"]
    pre = trained.model.preprocessor_
    assert pre.feature_names == ["visit", "age", "sex", "ward", "smoker"]
    assert pre.input_names() == ["visit", "age", "sex=F", "sex=M", "ward=A", "ward=B",
                                 "ward=C", "smoker=False", "smoker=True"]
    assert trained.model.n_inputs == pre.n_inputs == 9
    assert "5 feature columns, 9 inputs" in trained.out.stdout


def test_the_training_inputs_match_sklearn_and_pandas(trained):
    pre = trained.model.preprocessor_
    table = read_table(trained.tmp / "patients.csv")
    X = pre.transform_table(table)[0]
    want = _reference_inputs(trained.train, trained.train, pre)
    np.testing.assert_allclose(X, want, rtol=1e-12, atol=1e-12)
    # indicators are left as 0/1: neither centred nor scaled
    assert np.array_equal(pre.x_mean[2:], np.zeros(7)) and np.all(pre.x_scale[2:] == 1)


def test_predict_reads_new_rows_by_name_and_counts_what_it_zeroes(trained):
    out = run(trained.tmp, "predict", "m.npz", "new.csv", "--output", "p.csv")
    assert "ignoring columns the model was not trained on: 'extra', 'notes', 'patient_id'" \
        in out.stderr
    assert ("column 'ward': 1 row with a level the training rows lacked ('D') and 1 row "
            "missing, encoded as all-zero indicators") in out.stderr
    assert "column 'smoker': 1 row missing" in out.stderr
    got = pd.read_csv(trained.tmp / "p.csv")
    pre = trained.model.preprocessor_
    X = _reference_inputs(trained.train, _new_rows(), pre)
    assert np.array_equal(X[0, 4:7], [0, 0, 0]) and np.array_equal(X[0, 7:], [0, 1])
    P = trained.model.predict(X)
    np.testing.assert_allclose(got[pre.classes].to_numpy(), P, rtol=1e-8, atol=1e-9)
    assert got["outcome"].tolist() == [pre.classes[i] for i in P.argmax(axis=1)]


def test_onnxruntime_on_the_raw_columns_predicts_as_predict(trained):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = run(trained.tmp, "export", "m.npz", "--output", "m.onnx")
    assert ("inputs visit (double: days since 1970-01-01), age (double), sex (string), "
            "ward (string), smoker (string)") in out.stdout
    run(trained.tmp, "predict", "m.npz", "new.csv", "--output", "p.npy")
    want = np.load(trained.tmp / "p.npy")
    # the raw cells, read with the csv module: text as it stands, a date as days
    with open(trained.tmp / "new.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    feeds = {name: np.array([r[name] for r in rows], dtype=object)[:, None]
             for name in ("sex", "ward", "smoker")}
    feeds["age"] = np.array([[float(r["age"])] for r in rows])
    feeds["visit"] = np.array([[(pd.Timestamp(r["visit"]) - pd.Timestamp("1970-01-01"))
                                / pd.Timedelta(days=1)] for r in rows])
    session = ort.InferenceSession(str(trained.tmp / "m.onnx"))
    got, = session.run(None, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # fastnn's own helper gives the same feeds (booleans as the reader read them: the
    # spellings true and TRUE come back as True) and so the same predictions
    from fastnn.interop.onnx_tables import onnx_feeds
    helped = onnx_feeds(trained.model, read_table(trained.tmp / "new.csv"))
    assert set(helped) == set(feeds)
    assert helped["smoker"].ravel().tolist() == ["True", "False", "", "True"]
    for name in ("sex", "ward"):
        assert helped[name].tolist() == feeds[name].tolist(), name
    for name in ("age", "visit"):
        np.testing.assert_allclose(helped[name], feeds[name], rtol=1e-15)
    np.testing.assert_array_equal(session.run(None, helped)[0], got)


def test_a_float32_regression_on_categories_exports_in_the_targets_units(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    frame = _patients(seed=1).drop(columns=["outcome"])
    rng = np.random.default_rng(2)
    frame["cost"] = 1000 + 300 * (frame["sex"] == "M") + rng.normal(0, 50, len(frame))
    _write(tmp_path, frame, "costs.csv")
    _write(tmp_path, _new_rows(), "new.csv")
    run(tmp_path, "train", "costs.csv", "--target", "cost", "--impute", "median", "--save",
        "r.npz", *FAST)
    run(tmp_path, "predict", "r.npz", "new.csv", "--output", "p.npy")
    run(tmp_path, "export", "r.npz", "--output", "r.onnx")
    from fastnn.interop.onnx_tables import onnx_feeds
    model = fastnn.load(tmp_path / "r.npz")
    got, = ort.InferenceSession(str(tmp_path / "r.onnx")).run(
        None, onnx_feeds(model, read_table(tmp_path / "new.csv")))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np.load(tmp_path / "p.npy"), rtol=1e-6)


@pytest.mark.parametrize("code", ["100000000000000000000", "3", "2.5", "2.50", "-7"])
def test_numbers_in_a_text_column_are_the_same_level_for_predict_and_the_graph(tmp_path,
                                                                              code):
    # the graph's feeds and predict read a cell as a level through one function
    # (fastnn.io.columns.level_text): onnx_feeds wrote a whole number past 2**63 in all its
    # digits where predict wrote 1e+20, so the two saw different levels
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    rng = np.random.default_rng(0)
    codes = np.array(["a", "b", code] * 20, dtype=object)
    frame = pd.DataFrame({"code": codes, "x": rng.normal(size=60)})
    frame["y"] = frame["x"] + 3.0 * (frame["code"] == code)
    _write(tmp_path, frame, "train.csv")
    # new rows whose codes all read as numbers: their cells are numbers, not text
    new = frame.iloc[:6].drop(columns=["y"])
    new["code"] = code
    _write(tmp_path, new, "new.csv")
    run(tmp_path, "train", "train.csv", "--target", "y", "--save", "m.npz", *FAST)
    run(tmp_path, "predict", "m.npz", "new.csv", "--output", "p.npy")
    run(tmp_path, "export", "m.npz", "--output", "m.onnx")
    from fastnn.interop.onnx_tables import onnx_feeds
    model = fastnn.load(tmp_path / "m.npz")
    assert len(model.preprocessor_.columns[0].levels) == 3   # the code is one level
    feeds = onnx_feeds(model, read_table(tmp_path / "new.csv"))
    levels = model.preprocessor_.columns[0].levels
    # a number the file spells as the level's text matches it (a float past 2**63 prints
    # as 1e+20, and "2.50" as 2.5: those match no level, in predict and the graph alike)
    assert (feeds["code"][2, 0] in levels) == (code in ("3", "2.5", "-7"))
    got, = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, feeds)
    # (a float32 model: the two sum in other orders; an unmatched level would move row 2
    # by about 3)
    np.testing.assert_allclose(got, np.load(tmp_path / "p.npy"), rtol=1e-6, atol=1e-6)


def test_a_table_of_numbers_keeps_its_one_input_and_its_file_layout(tmp_path):
    # a model of numbers alone is written as before encodings existed (no "encodings" key:
    # older fastnn reads it) and its graph keeps the one input X
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    frame["y"] = (frame["a"] > 0).astype(int)
    _write(tmp_path, frame, "num.csv")
    run(tmp_path, "train", "num.csv", "--target", "y", "--save", "n.npz", *FAST)
    pre = fastnn.load(tmp_path / "n.npz").preprocessor_
    config = pre.get_config()
    assert "encodings" not in config and all(c.kind == "number" for c in pre.columns)
    assert Preprocessor.from_config(config).get_config() == config
    if pytest.importorskip("onnx"):
        proto = fastnn.to_onnx(fastnn.load(tmp_path / "n.npz"))
        assert [i.name for i in proto.graph.input] == ["X"]


def test_the_encodings_survive_the_model_file(trained):
    pre = trained.model.preprocessor_
    config = pre.get_config()
    assert config["encodings"] == {
        "visit": {"kind": "date"}, "sex": {"kind": "category", "levels": ["F", "M"]},
        "ward": {"kind": "category", "levels": ["A", "B", "C"]},
        "smoker": {"kind": "category", "levels": [False, True]}}
    again = Preprocessor.from_config(config)
    assert again.get_config() == config
    trained.model.save(trained.tmp / "again.npz")
    assert fastnn.load(trained.tmp / "again.npz").preprocessor_.get_config() == config
    for bad, match in [({"sex": {"kind": "colour"}}, "kind 'colour'"),
                       ({"sex": {"kind": "category", "levels": ["F", "F"]}}, "duplicates"),
                       ({"sex": {"kind": "category", "levels": []}}, "needs levels"),
                       ({"sex": {"kind": "date", "levels": ["x"]}}, "only a category"),
                       ({"nope": {"kind": "date"}}, "not features"),
                       ([1], "not a JSON object")]:
        with pytest.raises(ValueError, match=match):
            Preprocessor.from_config({**config, "encodings": bad})


# ---------------------------------------------------------------------- errors

@pytest.mark.parametrize("argv, expected", [
    (["--drop", "nope,age,other"], "--drop 'nope,age,other': no columns 'nope', 'other' in "
                                   "patients.csv (columns: patient_id, visit, age, sex, ward, "
                                   "smoker, notes, outcome)"),
    (["--drop", "outcome"], "--drop 'outcome' names the target column 'outcome'"),
], ids=["unknown", "target"])
def test_drop_names_what_it_cannot_drop(trained, argv, expected):
    bad = run(trained.tmp, "train", "patients.csv", "--target", "outcome", *argv, *FAST,
              check=False)
    assert bad.returncode == 2 and expected in bad.stderr, bad.stderr


def test_predict_names_a_missing_column_and_cells_of_the_wrong_kind(trained):
    new = _new_rows()
    for change, expected in [
            (lambda f: f.drop(columns=["ward"]), "the model needs the columns 'ward', which "
                                                 "it does not have"),
            (lambda f: f.assign(age=["40", "old", "1", "2"]),
             "new.csv, line 3: column 'age' holds text ('old') where the model takes numbers"),
            (lambda f: f.assign(visit=["2023-03-01", "2023-06-31", "", "x"]),
             "new.csv, line 3: column 'visit' holds '2023-06-31'; the model reads it as an "
             "ISO date")]:
        _write(trained.tmp, change(new.copy()), "new_bad.csv")
        bad = run(trained.tmp, "predict", "m.npz", "new_bad.csv", check=False)
        assert bad.returncode == 2 and expected.replace("new.csv", "new_bad.csv") in \
            bad.stderr, bad.stderr
    np.savez(trained.tmp / "x.npz", X=np.zeros((2, 9)))
    bad = run(trained.tmp, "predict", "m.npz", "x.npz", check=False)
    assert bad.returncode == 2 and "encodes the columns 'visit', 'sex', 'ward', 'smoker'" in \
        bad.stderr


def test_a_slip_among_dates_or_numbers_is_named_at_training(tmp_path):
    frame = _patients(n=40)
    frame.loc[4, "visit"] = "last week"
    _write(tmp_path, frame, "slip.csv")
    bad = run(tmp_path, "train", "slip.csv", "--target", "outcome", *FAST, check=False)
    assert bad.returncode == 2
    assert ("slip.csv, line 6: column 'visit' holds dates but also 'last week' (1 such cells); "
            "expected an ISO date such as 2024-03-05 (if it marks a missing value, name it "
            "with --na-values; --drop visit leaves the column out)") in bad.stderr


def test_quiet_prints_no_column_lines(trained):
    out = run(trained.tmp, "train", "patients.csv", "--target", "outcome", "--impute", "mean",
              "--quiet", *FAST)
    assert out.stdout == ""


# ---------------------------------------------------------------------- the pieces

def test_iso_days_against_pandas():
    cells = ["1970-01-01", "2024-02-29", "1969-12-31T18:00", "2023-06-30T12:00:00",
             "2023-06-30 12:00:00.250", "2023-06-30T23:00:00+02:00", "2023-06-30T01:00Z",
             "1900-03-01", None]
    want = [(pd.Timestamp(c).tz_localize("UTC") if pd.Timestamp(c).tzinfo is None else
             pd.Timestamp(c)) for c in cells[:-1]]
    want = [(t - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1) for t in want]
    got = iso_days(cells)
    np.testing.assert_allclose(got[:-1], want, rtol=0, atol=1e-12)
    assert np.isnan(got[-1])
    for bad in ["2023-02-30", "2023-13-01", "30/06/2023", "2023-6-1"]:
        with pytest.raises(ValueError, match="expected an ISO date"):
            iso_days([bad])


def test_category_encoding_against_sklearn_on_random_levels():
    rng = np.random.default_rng(3)
    train = rng.choice(["a", "b", "c", "d", " e"], 50).astype(object)
    train[[2, 9]] = None
    new = rng.choice(["a", "c", "z", "d"], 30).astype(object)
    new[4] = None
    from fastnn.io.columns import fit_encoding
    from fastnn.io.reader import Table
    table = Table("t", ["c"], {"c": train}, np.arange(50) + 2)
    enc = fit_encoding(table, "c", "category")
    ref = OneHotEncoder(handle_unknown="ignore").fit(train[train != None][:, None])  # noqa: E711
    assert enc.levels == list(ref.categories_[0])
    block, unseen, missing, examples = enc.encode(Table("n", ["c"], {"c": new},
                                                        np.arange(30) + 2))
    sentinel = np.where(new == None, "<missing>", new).astype(object)  # noqa: E711
    np.testing.assert_array_equal(block, ref.transform(sentinel[:, None]).toarray())
    assert unseen == int(np.sum(new == "z")) and missing == 1 and examples == ["z"]


def test_plan_leaves_out_identifiers_but_not_short_tables():
    from fastnn.io.reader import Table
    ids = np.array([f"id{k}" for k in range(30)], dtype=object)
    kinds, dropped = plan_columns(Table("t", ["i"], {"i": ids}, np.arange(30) + 2), ["i"])
    assert kinds == {} and "identifier" in dropped["i"]
    few = ids[:5]
    kinds, dropped = plan_columns(Table("t", ["i"], {"i": few}, np.arange(5) + 2), ["i"])
    assert kinds == {"i": "category"} and dropped == {}
    assert ColumnEncoding("i", "category", few.tolist()).width == 5


def test_a_model_file_from_before_encodings_reads_booleans_as_0_and_1():
    # its tabular description has no "encodings": every feature a number, a boolean column
    # 0/1 as it was trained (one-hot is for models trained since)
    from fastnn.io.reader import Table
    config = Preprocessor(["a", "flag"], "y", "classification", classes=[0, 1]).get_config()
    assert "encodings" not in config
    pre = Preprocessor.from_config(config)
    table = Table("t.csv", ["flag", "a"], {"flag": np.array([True, False]),
                                           "a": np.array([2.5, -1.0])}, np.array([2, 3]))
    X, ignored, unseen = pre.transform_table(table)
    np.testing.assert_array_equal(X, [[2.5, 1.0], [-1.0, 0.0]])
    assert ignored == [] and unseen == {} and pre.n_inputs == 2
