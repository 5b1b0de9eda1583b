"""Tables for the ``fastnn`` command: reading them, and the preprocessing a model keeps.

Below the command line (``fastnn.cli``) and above nothing but NumPy:

``read_table``
    Reads a delimited text file into a ``Table`` (``fastnn.io.reader``, re-exported here: the
    reading contract is written out there).
``fastnn.io.columns``
    What each input column becomes: a number, one-hot indicators of its levels, a date as
    days; the column report.
``Preprocessor``
    What a model trained on a table needs to predict from another table: the feature names
    (predict selects and orders columns by name), the task and target name, the class labels
    (any str, int, float or bool: the model's outputs are their indices), imputation values
    and the standardisation statistics of the inputs and of a regression target.  It is
    stored in the model file (``fastnn.io.saving``, as plain JSON via ``get_config``) and rebuilt with
    ``Preprocessor.from_config``, which validates every field.

    Its arithmetic is defined once, as data: ``input_steps`` (imputation, then
    standardisation) and ``output_steps`` (a regression's target units), each a list of
    element-wise operations in float64 (``PRECISION``).  ``apply_steps`` evaluates them in
    NumPy for training and ``fastnn predict``; ``fastnn.interop.onnx_export`` builds the
    graph's nodes from the same lists, in float64 too, with a Cast to the model's dtype
    after (a float32 graph that standardised in float32 turned a column of 1e8 +- 3 into
    noise: ulp(1e8) is 8 in float32).

Line numbers are 1-based and count the header as line 1, so the first data row is line 2.
Blank lines are skipped and counted.
"""
import math

import numpy as np

from fastnn._validation import all_finite
from fastnn.io.columns import (ColumnEncoding, _is_number, _number_column, describe,
                               fit_encoding, plan_columns)
from fastnn.io.reader import (NA_VALUES, Table, TableError, _delimiter_hint,  # noqa: F401
                              _first_missing, delimiter_for, python_label, read_table)

__all__ = ["Table", "read_table", "Preprocessor", "TableError", "NA_VALUES", "infer_task",
           "check_complete", "feature_matrix", "python_label"]

#: an integer-valued target with at most this many distinct values is read as class labels
MAX_CLASSES_INFERRED = 20
TASKS = ("classification", "regression")


def infer_task(y, name="target"):
    """('classification' | 'regression', warning or None) for a target column.

    Text and bool targets are classes.  Numbers with a fractional part are a regression.
    Whole numbers are class labels when there are at most ``MAX_CLASSES_INFERRED`` distinct
    values and a regression otherwise.  Both readings are plausible as soon as there are more
    than two distinct whole numbers (counts, ratings and grades are whole numbers too: a
    7-value quality score may be either), so every such target comes with a warning naming
    the other reading's --task; two values (0/1, 1/2) are read as classes without one.

    Parameters
    ----------
    y : ndarray of shape (n_rows,)
        A column of a Table: float64 (NaN where missing), bool or object (texts, or the
        exact whole numbers of ``Table.whole``).
    name : str
        The column's name, for the warning.

    Returns
    -------
    task : {"classification", "regression"}
    warning : str or None
    """
    whole = y.dtype.kind == "O" and all(isinstance(v, int) and not isinstance(v, bool)
                                        for v in y if v is not None)   # ``Table.whole``
    if y.dtype.kind in "bO" and not whole:
        n = len({v for v in y if v is not None})
        if n > MAX_CLASSES_INFERRED and n > len(y) // 2:
            return "classification", (f"the target {name!r} holds {n} distinct texts in "
                                      f"{len(y)} rows: read as {n} classes; is it an "
                                      "identifier or free text rather than a label?")
        return "classification", None
    if whole:
        n = len({v for v in y if v is not None})
    else:
        values = y[~np.isnan(y)]
        distinct = np.unique(values)
        if np.any(distinct != np.round(distinct)):
            return "regression", None
        n = distinct.shape[0]
    if n <= MAX_CLASSES_INFERRED:
        warning = None
        if n > 2:
            warning = (f"the target {name!r} holds {n} distinct whole numbers: read as class "
                       "labels; pass --task regression if they are quantities (counts, "
                       "ratings, scores)")
        return "classification", warning
    return "regression", (f"the target {name!r} holds {n} distinct whole numbers: read as a "
                          "quantity (regression); pass --task classification if they are "
                          "class labels")


#: the precision of every preprocessing step, in ``fastnn predict`` and in the ONNX graph
PRECISION = np.float64

#: the element-wise operations a step list may hold, as NumPy evaluates them (the ONNX export
#: builds each from the same definition: Where(IsNaN); the guarded standardisation; Mul; Add)
STEP_OPS = {
    "fill_missing": lambda x, c: np.where(np.isnan(x), c, x),
    "standardize": lambda x, c: _standardized(x, *c),
    "multiply": np.multiply,
    "add": np.add,
}


def apply_steps(steps, values):
    """Evaluate a step list (``Preprocessor.input_steps``/``output_steps``) on `values`.

    Parameters
    ----------
    steps : list of (str, ndarray or float)
        Operations of ``STEP_OPS`` with their float64 constants (broadcast over rows).
    values : array-like, real

    Returns
    -------
    ndarray, float64 (``PRECISION``)
    """
    out = np.asarray(values, dtype=PRECISION)
    for op, constant in steps:
        out = STEP_OPS[op](out, constant)
    return out


def _standardized(X, mean, scale):
    """The "standardize" step: (X - mean) / scale; where the difference overflows although
    the result does not (values near +-1e308 on both sides of the mean), X / scale -
    mean / scale.  Bitwise the plain form wherever that is finite.  The ONNX export builds
    the same guarded form (``fastnn.interop.onnx_export``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = (X - mean) / scale
        redo = ~np.isfinite(out) & np.isfinite(X)
        if redo.any():
            out = np.where(redo, X / scale - mean / scale, out)
    return out


class Preprocessor:
    """Column selection, class labels, imputation and standardisation of a tabular model.

    Parameters
    ----------
    feature_names : list of str
        The input columns of a table, in the order their inputs take.
    target : str or None
        The target column's name (dropped from a table given to ``transform``).
    task : {"classification", "regression"}
    classes : list or None
        Classification: the class labels (str, int, float or bool), sorted; output j of the
        model is the probability of ``classes[j]``.
    x_mean, x_scale : ndarray of shape (n_inputs,), float64
        Standardisation of the encoded inputs: the model sees ``(x - x_mean) / x_scale``.
        Zeros and ones when not standardising, and for one-hot indicators.  ``x_scale`` > 0
        (a constant column gets 1).
    x_fill : ndarray of shape (n_inputs,), float64, or None
        Imputation: the value put in place of a missing input (training mean or median);
        None: a missing number or date is an error.
    y_mean, y_scale : float
        Regression: the model predicts ``(y - y_mean) / y_scale``; 0 and 1 otherwise.
    encodings : dict of str -> ColumnEncoding or its config, optional
        The columns that are not plain numbers (``fastnn.io.columns``): one-hot categories
        and ISO dates.  A column absent here is a number (every column of a model saved
        before encodings existed).

    Attributes
    ----------
    columns : list of ColumnEncoding
        One per feature name, in order; ``n_inputs`` is the sum of their widths (the
        network's input width).
    report : list of str
        After ``fit``: one line per column saying what was done to it.
    """

    def __init__(self, feature_names, target, task, classes=None, x_mean=None, x_scale=None,
                 x_fill=None, y_mean=0.0, y_scale=1.0, encodings=None):
        if task not in TASKS:
            raise ValueError(f"task={task!r}; expected one of {TASKS}")
        if not isinstance(feature_names, (list, tuple)) or not feature_names or \
                not all(isinstance(f, str) for f in feature_names):
            raise ValueError("feature_names must be a non-empty list of str")
        if len(set(feature_names)) != len(feature_names):
            raise ValueError("feature_names has duplicates")
        if target is not None and not isinstance(target, str):
            raise ValueError(f"target must be a str or None; got {target!r}")
        self.feature_names, self.target, self.task = list(feature_names), target, task
        encodings = dict(encodings or {})
        unknown = [name for name in encodings if name not in self.feature_names]
        if unknown:
            raise ValueError(f"encodings name columns that are not features: {unknown}")
        self.columns = [_as_encoding(name, encodings.get(name)) for name in self.feature_names]
        n = self.n_inputs
        if task == "classification":
            if not isinstance(classes, (list, tuple)) or len(classes) < 2 or not all(
                    isinstance(c, (str, int, float, bool)) for c in classes):
                raise ValueError("a classification needs classes: a list of at least 2 "
                                 "labels (str, int, float or bool)")
            if len(set(classes)) != len(classes):
                raise ValueError("classes has duplicates")
        elif classes is not None:
            raise ValueError("classes must be None for a regression")
        self.classes = None if classes is None else list(classes)
        self.x_mean = _vector(np.zeros(n) if x_mean is None else x_mean, n, "x_mean")
        self.x_scale = _vector(np.ones(n) if x_scale is None else x_scale, n, "x_scale")
        if np.any(self.x_scale <= 0):
            raise ValueError("x_scale must be > 0")
        self.x_fill = None if x_fill is None else _vector(x_fill, n, "x_fill")
        self.y_mean, self.y_scale = float(y_mean), float(y_scale)
        self.warning = None  # set by fit when the task inferred from the target is ambiguous
        self.report = []     # set by fit: a line per column
        if not (math.isfinite(self.y_mean) and math.isfinite(self.y_scale) and
                self.y_scale > 0):
            raise ValueError(f"y_mean={y_mean!r}, y_scale={y_scale!r}; expected finite "
                             "numbers, y_scale > 0")

    @property
    def n_inputs(self):
        """The network's input width: one per number or date, one per category level."""
        return sum(c.width for c in self.columns)

    def input_names(self):
        """A name per network input: the column's, or ``column=level`` for an indicator."""
        return [name for c in self.columns for name in c.input_names()]

    def input_columns(self):
        """The table column of each network input (a category's name once per level)."""
        return [c.name for c in self.columns for _ in range(c.width)]

    # ----------------------------------------------------------------- fitting

    @classmethod
    def fit(cls, table, target, *, task=None, standardize=True, standardize_target=True,
            impute=None, kinds=None):
        """Learn the preprocessing from a training table; returns (preprocessor, X, y).

        Parameters
        ----------
        table : Table
        target : str
            The target column.
        task : {"classification", "regression"} or None
            None: inferred by ``infer_task``.
        standardize : bool, default True
            Standardise the inputs to mean 0 and standard deviation 1 (population std).
        standardize_target : bool, default True
            Regression only: also standardise the target.
        impute : {None, "mean", "median"}
            Fill missing inputs with the column's mean or median over the non-missing training
            values; None: a missing value is an error.  Missing targets are always an error.
            (A missing category cell is all-zero indicators either way.)
        kinds : dict of str -> {"number", "category", "date"}, optional
            The input columns and their kinds (``fastnn.io.columns.plan_columns``, which the
            command runs on the whole file); default: planned from `table`, every column but
            the target, identifiers left out.

        Returns
        -------
        preprocessor : Preprocessor
            Its ``report`` says what was done to each column.
        X : ndarray of shape (n_rows, n_inputs), float64, transformed
        y : ndarray of shape (n_rows,): int64 class indices, or float64 (standardised) values

        Raises
        ------
        TableError
            No such target column; a few texts in a column of numbers or dates; a missing
            value (naming the file line and the column) when not imputing; a missing target;
            a constant target.
        """
        if target not in table.data:
            raise TableError(f"--target {target!r}: no such column in {table.path} (columns: "
                             f"{', '.join(table.columns)}){_delimiter_hint(table)}")
        y_raw = table.data[target]
        miss = table.missing(target)
        if miss.any():
            line, count = _first_missing(table, target, miss)
            raise TableError(f"{table.path}, line {line}: the target column {target!r} is "
                             f"missing ({count} rows in all); remove those rows (a target "
                             "cannot be imputed)")
        dropped = {}
        if kinds is None:
            kinds, dropped = plan_columns(table, [c for c in table.columns if c != target])
        features = list(kinds)
        if not features:
            left = f" ({', '.join(dropped)} left out as identifiers)" if dropped else ""
            raise TableError(f"{table.path}: no feature columns besides the target "
                             f"{target!r}{left}")
        warning = None
        if task is None:
            task, warning = infer_task(table.whole.get(target, y_raw), target)
        if task == "classification":
            labels = table.labels(target)
            try:
                classes = sorted(set(labels))
            except TypeError:  # mixed kinds: order them by their text
                classes = sorted(set(labels), key=str)
            if len(classes) < 2:
                raise TableError(f"{table.path}: the target {target!r} has one class "
                                 f"({classes[0]!r}) in the {table.n_rows} rows used for "
                                 "training (after --validation-split); a classifier needs at "
                                 "least two")
            index = {c: i for i, c in enumerate(classes)}
            y = np.array([index[v] for v in labels], dtype=np.int64)
            y_mean, y_scale = 0.0, 1.0
        else:
            if y_raw.dtype.kind != "f":
                raise TableError(f"{table.path}: the target {target!r} is not numeric; a "
                                 "regression (asked for by --task regression or a regression "
                                 "--loss such as mse) needs numbers")
            classes = None
            _check_finite(table, [target], y_raw[:, None], "the target column")
            y_mean, y_scale = 0.0, 1.0
            if standardize_target:
                y_mean, y_scale = (float(v[0]) for v in _mean_std(y_raw[:, None]))
            if y_scale == 0 and len({v for v in table.whole.get(target, ())}) > 1:
                raise TableError(f"{table.path}: the target {target!r} holds whole numbers "
                                 "that differ only beyond the 15-17 significant digits of "
                                 "float64 (such as 9223372036854775806 and ...807), all one "
                                 "number to a regression; they read as class labels with "
                                 "--task classification")
            if y_scale == 0:
                raise TableError(f"{table.path}: the target {target!r} is constant "
                                 f"({y_raw[0]:g}) in the {table.n_rows} rows used for "
                                 "training (after --validation-split); there is nothing to "
                                 "learn")
            y = apply_steps(_target_steps(y_mean, y_scale), y_raw)
        columns = [fit_encoding(table, name, kinds[name]) for name in features]
        blocks = [c.encode(table) for c in columns]
        X = np.concatenate([b[0] for b in blocks], axis=1)
        inputs = [c.name for c in columns for _ in range(c.width)]
        _check_finite(table, inputs, X, "column")
        indicator = np.array([c.kind == "category" for c in columns for _ in range(c.width)],
                             dtype=bool)
        x_fill = None
        if impute is not None:
            if impute not in ("mean", "median"):
                raise ValueError(f"--impute {impute!r}: expected mean or median")
            with np.errstate(all="ignore"):
                x_fill = (np.nanmean if impute == "mean" else np.nanmedian)(X, axis=0)
            x_fill[indicator] = 0.0   # never used: a category cell is never NaN
            empty = np.isnan(x_fill)
            if empty.any():
                raise TableError(f"{table.path}: column {inputs[int(np.argmax(empty))]!r} has "
                                 "no values at all; nothing to impute from")
        else:
            _check_no_missing(table, inputs, X)
        if x_fill is not None:
            X = STEP_OPS["fill_missing"](X, x_fill)   # the statistics below are of filled X
        x_mean, x_scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
        if standardize:
            x_mean[~indicator], x_scale[~indicator] = _mean_std(X[:, ~indicator])
            x_scale[x_scale == 0] = 1.0  # a constant column stays constant (0)
        encodings = {c.name: c for c in columns if c.kind != "number"}
        pre = cls(features, target, task, classes, x_mean, x_scale, x_fill, y_mean, y_scale,
                  encodings)
        pre.warning = warning
        start = 0
        for c, block in zip(columns, blocks):
            fill = None if x_fill is None else x_fill[start]
            pre.report.append(describe(c, block[2], standardize, fill, impute))
            start += c.width
        pre.report += [f"{name}: left out: {why}" for name, why in dropped.items()]
        return pre, pre.transform(X), y

    # ----------------------------------------------------------------- applying

    def select(self, table):
        """The model's inputs from `table`, columns found by name, encoded but not yet
        imputed or standardised.

        Parameters
        ----------
        table : Table
            Any column order; the target column and other extra columns are ignored.

        Returns
        -------
        X : ndarray of shape (n_rows, n_inputs), float64
            NaN where a number or date is missing.
        ignored : list of str
            The columns left out, the target excepted.
        unseen : dict of str -> (int, int, list)
            Per category column with rows encoded as all zeros: (rows with a level the
            training rows lacked, rows with a missing cell, up to three such levels).

        Raises
        ------
        TableError
            A feature column is absent (all absent ones are named), or holds text where
            the model takes numbers, or a non-date where it takes dates.
        """
        missing = [f for f in self.feature_names if f not in table.data]
        if missing:
            raise TableError(f"{table.path}: the model needs the columns "
                             f"{', '.join(map(repr, missing))}, which it does not have "
                             f"(it has {', '.join(map(repr, table.columns))})")
        ignored = [c for c in table.columns if c not in self.feature_names and c != self.target]
        blocks, unseen = [], {}
        for c in self.columns:
            block, n_unseen, n_missing, examples = c.encode(table)
            blocks.append(block)
            if c.kind == "category" and (n_unseen or n_missing):
                unseen[c.name] = (n_unseen, n_missing, examples)
        X = np.concatenate(blocks, axis=1)
        _check_finite(table, self.input_columns(), X, "column")
        return X, ignored, unseen

    def transform_table(self, table, hint=None):
        """Inputs for the model from a table: select and encode, impute or reject missing
        numbers, standardise.

        Parameters
        ----------
        table : Table
        hint : str, optional
            Ends the message of a missing value (default: how to impute).

        Returns
        -------
        X : ndarray of shape (n_rows, n_inputs), float64
        ignored : list of str
        unseen : dict
            As ``select``.

        Raises
        ------
        TableError
            As ``select``, or a missing value when the model was trained without imputation.
        """
        X, ignored, unseen = self.select(table)
        if self.x_fill is None:
            _check_no_missing(table, self.input_columns(), X, hint)
        return self.transform(X), ignored, unseen   # imputes, when trained with imputation

    def encode_target(self, table):
        """The target column of `table` as training targets.

        Parameters
        ----------
        table : Table
            Must have the target column.

        Returns
        -------
        ndarray of shape (n_rows,)
            int64 class indices (-1 for a class not seen in training), or float64 values
            standardised with the training statistics.

        Raises
        ------
        TableError
            A missing target value.
        """
        raw = table.data[self.target]
        miss = table.missing(self.target)
        if miss.any():
            line, count = _first_missing(table, self.target, miss)
            raise TableError(f"{table.path}, line {line}: the target column {self.target!r} is "
                             f"missing ({count} rows in all); remove those rows (a target "
                             "cannot be imputed)")
        if self.task == "classification":
            index = {c: i for i, c in enumerate(self.classes)}
            return np.array([index.get(v, -1) for v in table.labels(self.target)],
                            dtype=np.int64)
        if raw.dtype.kind not in "fb":
            row = next(i for i, v in enumerate(raw) if not _is_number(v))
            raise TableError(f"{table.path}, line {int(table.lines[row])}: the target column "
                             f"{self.target!r} holds text ({raw[row]!r}); the model predicts "
                             "numbers")
        raw = raw.astype(np.float64)
        _check_finite(table, [self.target], raw[:, None], "the target column")
        return apply_steps(_target_steps(self.y_mean, self.y_scale), raw)

    def input_steps(self):
        """What the model's inputs go through, as data: imputation (when trained with
        ``--impute``), then standardisation, each in float64 (``PRECISION``).

        ``transform`` evaluates it (``apply_steps``); the ONNX export builds its nodes from it.

        Returns
        -------
        list of (str, ndarray of shape (n_inputs,), float64)
            ``[("fill_missing", x_fill), ("standardize", (x_mean, x_scale))]``
            (without the first when not imputing).
        """
        steps = [] if self.x_fill is None else [("fill_missing", self.x_fill)]
        return steps + [("standardize", (self.x_mean, self.x_scale))]

    def output_steps(self, kind="mean"):
        """What a regression's outputs go through back to the target's units, as data.

        Parameters
        ----------
        kind : {"mean", "std"}
            A prediction (or a predicted mean), or a predicted standard deviation.

        Returns
        -------
        list of (str, float)
            ``[("multiply", y_scale), ("add", y_mean)]``, or ``[("multiply", y_scale)]`` for
            a std; empty for a classification or an unscaled target.
        """
        if kind not in ("mean", "std"):
            raise ValueError(f"kind={kind!r}; expected 'mean' or 'std'")
        if self.task != "regression" or (self.y_mean == 0.0 and self.y_scale == 1.0):
            return []
        return [("multiply", self.y_scale)] + ([("add", self.y_mean)] if kind == "mean"
                                               else [])

    def transform(self, X):
        """The model's inputs from an array whose columns are already the features, in
        order: ``input_steps`` in float64.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_inputs), real
            Encoded inputs (``select``).

        Returns
        -------
        ndarray of shape (n_rows, n_inputs), float64
            ``(X - x_mean) / x_scale``, a missing value (NaN) taking ``x_fill`` first when
            the model was trained with imputation.
        """
        return apply_steps(self.input_steps(), X)

    def inverse_target(self, y, kind="mean"):
        """A standardised regression prediction back in the target's units:
        ``output_steps(kind)`` in float64.

        Parameters
        ----------
        y : array-like, real
            Model outputs (any shape).
        kind : {"mean", "std"}, default "mean"

        Returns
        -------
        ndarray, float64
            ``y * y_scale + y_mean``; a predicted standard deviation (kind="std") is scaled
            by ``y_scale`` alone.
        """
        return apply_steps(self.output_steps(kind), y)

    # ----------------------------------------------------------------- the model file

    def get_config(self):
        """The JSON-compatible description stored in the model file."""
        config = {"feature_names": self.feature_names, "target": self.target,
                  "task": self.task, "classes": self.classes, "x_mean": self.x_mean.tolist(),
                  "x_scale": self.x_scale.tolist(),
                  "x_fill": None if self.x_fill is None else self.x_fill.tolist(),
                  "y_mean": self.y_mean, "y_scale": self.y_scale}
        encodings = {c.name: c.get_config() for c in self.columns if c.kind != "number"}
        if encodings:   # only then: a model of numbers alone is written as before encodings
            config["encodings"] = encodings
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuild from ``get_config`` (as read from a model file).

        Parameters
        ----------
        config : dict
            Exactly the keys ``get_config`` writes (``encodings`` may be absent: a file
            written before encodings existed, every feature a number).

        Returns
        -------
        Preprocessor

        Raises
        ------
        ValueError
            Anything malformed: missing or extra keys, wrong types, non-finite or non-positive
            scales, duplicated names or classes, lengths that disagree.
        """
        if not isinstance(config, dict):
            raise ValueError("the tabular description is not a JSON object")
        expected = {"feature_names", "target", "task", "classes", "x_mean", "x_scale", "x_fill",
                    "y_mean", "y_scale"}
        if set(config) - {"encodings"} != expected:
            raise ValueError(f"the tabular description has keys {sorted(config)}; expected "
                             f"{sorted(expected)}")
        for key in ("y_mean", "y_scale"):
            if isinstance(config[key], bool) or not isinstance(config[key], (int, float)):
                raise ValueError(f"the tabular {key} is {config[key]!r}; expected a number")
        encodings = config.get("encodings") or {}
        if not isinstance(encodings, dict):
            raise ValueError("the tabular encodings are not a JSON object")
        encodings = {name: ColumnEncoding.from_config(name, value)
                     for name, value in encodings.items()}
        return cls(**{**config, "encodings": encodings})

    def __repr__(self):
        return (f"Preprocessor({len(self.feature_names)} features, {self.n_inputs} inputs, "
                f"target={self.target!r}, "
                f"task={self.task!r}, classes={self.classes!r})")


def _as_encoding(name, encoding):
    if encoding is None:
        return ColumnEncoding(name, "number")
    if isinstance(encoding, ColumnEncoding):
        if encoding.name != name:
            raise ValueError(f"the encoding of {name!r} is {encoding!r}")
        return encoding
    return ColumnEncoding.from_config(name, encoding)


def _target_steps(y_mean, y_scale):
    """A regression target into the model's units: the inverse of ``output_steps``."""
    return [("standardize", (y_mean, y_scale))]


def _vector(values, n, name):
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise ValueError(f"{name} must be a list of {n} numbers (one per input)")
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer))
           for v in values):
        raise ValueError(f"{name} must hold numbers")
    arr = np.array(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} has {arr.size} entries; expected {n} (one per input)")
    if not all_finite(arr):
        j = int(np.argmax(~np.isfinite(arr)))
        raise ValueError(f"{name}[{j}] is {arr[j]!r}; expected a finite number")
    return arr


def _mean_std(X):
    """Per column (X: 2-D float64): the mean and the population standard deviation.

    NumPy's, bit for bit, where they are finite; a column whose square (or sum) overflows
    although its statistics are representable (values near 1e200: its std is about that
    size) is scaled by its largest magnitude first, as BLAS's nrm2 scales a norm.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = X.mean(axis=0), X.std(axis=0)
    redo = ~(np.isfinite(mean) & np.isfinite(std))
    if redo.any():
        big = X[:, redo]
        scale = np.abs(big).max(axis=0)   # > 0: only large values overflow
        scaled = big / scale
        mean[redo] = scaled.mean(axis=0) * scale
        std[redo] = scaled.std(axis=0) * scale
    return mean, std


def check_complete(table, target, features=True):
    """Plan the input columns of a whole file; raise TableError for the first missing target
    (and missing number or date, if `features`) in it.

    Also checks that `target` is a column and that each column reads as one kind
    (``fastnn.io.columns.plan_columns``).

    Parameters
    ----------
    table : Table
    target : str
        The target column's name.
    features : bool, default True
        Also refuse a missing number or date (a missing category cell is all zeros).

    Returns
    -------
    kinds : dict of str -> {"number", "category", "date"}
    dropped : dict of str -> str
        As ``plan_columns``: the input columns every column but the target, identifiers
        left out with a reason.

    Raises
    ------
    TableError
        Naming the file, the 1-based line (header = line 1) and the column.
    """
    if target not in table.data:
        raise TableError(f"--target {target!r}: no such column in {table.path} (columns: "
                         f"{', '.join(table.columns)}){_delimiter_hint(table)}")
    miss = table.missing(target)
    if miss.any():
        line, count = _first_missing(table, target, miss)
        raise TableError(f"{table.path}, line {line}: the target column {target!r} is "
                         f"missing ({count} rows in all); remove those rows (a target "
                         "cannot be imputed)")
    y = table.data[target]
    if y.dtype.kind == "f" and target not in table.whole:
        # the first infinite target in the file, before any split (exact whole numbers
        # beyond the float64 range are labels: Table.whole)
        _check_finite(table, [target], y[:, None], "the target column")
    kinds, dropped = plan_columns(table, [c for c in table.columns if c != target])
    if features:
        numbers = [ColumnEncoding(name, kind) for name, kind in kinds.items()
                   if kind != "category"]
        if numbers:
            X = np.concatenate([c.encode(table)[0] for c in numbers], axis=1)
            _check_finite(table, [c.name for c in numbers], X, "column")
            _check_no_missing(table, [c.name for c in numbers], X)
    return kinds, dropped


def feature_matrix(table, names):
    """The named columns as an (n_rows, len(names)) float64 array; missing values an error.

    Parameters
    ----------
    table : Table
    names : list of str
        Columns of `table`, in the order wanted; booleans become 0.0 / 1.0.

    Raises
    ------
    TableError
        A text column or a missing value (naming the line and the column).
    """
    X = _numeric_block(table, names)
    _check_no_missing(table, names, X)
    return X


def _numeric_block(table, names):
    """The named columns as numbers (``fastnn.io.columns``: booleans 0/1, text an error)."""
    cols = [_number_column(table, name) for name in names]
    X = np.column_stack(cols) if cols else np.zeros((table.n_rows, 0))
    _check_finite(table, names, X, "column")
    return X


def _check_finite(table, names, X, what):
    """A TableError for the first infinite cell of X (columns `names`), naming its line,
    its column and what was expected; NaN cells are missing values, checked apart."""
    bad = np.isinf(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        count = int(bad.sum())
        more = f" ({count} infinite cells in all)" if count > 1 else ""
        raise TableError(f"{table.path}, line {int(table.lines[row])}: {what} "
                         f"{names[col]!r} holds {X[row, col]:g}{more}; expected a finite "
                         "number (a value beyond about 1.8e308 reads as infinity too)")


def check_representable(table, names, X, dtype, remedy):
    """A TableError for the first cell of the prepared inputs X (columns `names`, rows of
    `table`) beyond the largest finite number of the model's `dtype`: it would become
    infinite there.  Names the file, line and column, the value read and the `remedy`."""
    limit = float(np.finfo(dtype).max)
    bad = np.abs(X) > limit
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raw = table.data[names[col]][row]
        raise TableError(f"{table.path}, line {int(table.lines[row])}: column "
                         f"{names[col]!r} holds {raw}, {X[row, col]:.4g} as the model's input; "
                         f"expected at most {limit:.4g} in magnitude for a "
                         f"{np.dtype(dtype).name} model ({remedy})")


def _check_no_missing(table, names, X, hint=None):
    bad = np.isnan(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        hint = hint or "fill them in, or pass --impute mean or --impute median"
        raise TableError(f"{table.path}, line {int(table.lines[row])} (the header is line 1): "
                         f"column {names[col]!r} is missing ({int(bad.sum())} missing values "
                         f"in all); {hint}")
