"""Tabular files for the ``fastnn`` command: reading them, and the preprocessing a model keeps.

Two concerns live here, both below the command line (``fastnn.cli.command``) and above nothing but
NumPy:

``read_table``
    Reads a delimited text file (``.csv``, ``.tsv``, ``.txt``, also gzip-, bzip2-, xz- or
    zip-compressed) with the standard library's ``csv`` module, whether pandas is installed
    or not, so that a file gives the same columns or the same error everywhere.  (It read
    with pandas when installed, and the two readers disagreed on one file in eight ways:
    duplicated names (pandas renamed them ``a.1``), short rows (pandas pads them with empty
    cells, indistinguishably from empty fields, so it cannot refuse them), lines of blanks
    or of bare delimiters, a blank first line, a first data row with one field too many
    (pandas takes the first column as an index), empty header names (``Unnamed: k``), the
    lines of quoted fields spanning lines, compressed files.  Its tokenizer was no faster
    than the csv module's on 200,000 rows, and the conversion of the cells, shared by both,
    dominates.)  The contract, in one place (``_read_rows``, then ``read_table``):

    * the header is line 1 (after a UTF-8 byte-order mark), its names stripped of
      surrounding blanks; an empty file or a blank first line has no header (an error); a
      name given twice is an error; an empty first name (what ``DataFrame.to_csv`` writes
      for the index) or ``Unnamed: 0`` marks an index column, dropped;
    * the delimiter comes from the suffix or ``delimiter=`` (sniffed for ``.txt``); quoting
      is the csv dialect's (doubled quotes, quoted delimiters and line breaks); blanks
      after a delimiter are skipped;
    * a line that is empty or holds only blanks is skipped (and counted); every other row
      has as many fields as the header, or is an error naming its line;
    * cells become float64 (NaN for a missing value: an empty cell, pandas' spellings
      ``NA_VALUES`` or ``na_values=``), bool (True/False spellings), or object holding str
      and None (``_convert``);
    * the line of a row is the physical line where it starts.
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
import bz2
import contextlib
import csv
import gzip
import io
import lzma
import math
import os
import zipfile

import numpy as np

__all__ = ["Table", "read_table", "Preprocessor", "TableError", "NA_VALUES", "infer_task",
           "check_complete", "feature_matrix", "python_label"]

#: the cell spellings pandas reads as missing by default (pandas.read_csv, ``na_values``)
NA_VALUES = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                       "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                       "nan", "null"])
_TRUE, _FALSE = frozenset(["True", "TRUE", "true"]), frozenset(["False", "FALSE", "false"])
#: an integer-valued target with at most this many distinct values is read as class labels
MAX_CLASSES_INFERRED = 20
TASKS = ("classification", "regression")
_SUFFIX_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}
#: compressed tables, read through the standard library (the suffix before names the format)
_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zip": None}


class TableError(ValueError):
    """A problem with a tabular file or its columns; the message names the file and column."""


class Table:
    """A table read from a file (what ``read_table`` returns).

    Parameters
    ----------
    path, columns, data, lines
        As the attributes below.

    Attributes
    ----------
    path : str
    columns : list of str
        Column names from the header row, in file order (the index column excluded).
    data : dict of str -> ndarray of shape (n_rows,)
        float64 (NaN where a value is missing), bool, or object (str, None where missing).
    lines : ndarray of shape (n_rows,), int64
        The 1-based file line of each row (the header is line 1).
    whole : dict of str -> ndarray of shape (n_rows,), object
        For a column of whole numbers that float64 cannot all hold exactly (beyond 2**53,
        such as 18-digit codes), the exact Python ints (None where missing); ``data`` holds
        their float64 approximations.  Class labels are read from it (``labels``).
    """

    def __init__(self, path, columns, data, lines, whole=None):
        self.path, self.columns, self.data, self.lines = path, columns, data, lines
        self.whole = dict(whole or {})

    def labels(self, name):
        """The cells of a column as class labels: JSON-storable Python values, exact.

        Whole numbers are ints (1.0 is class 1), also beyond 2**53 where float64 would
        merge neighbours (9007199254740993 is not 9007199254740992).

        Parameters
        ----------
        name : str
            A column of the table.

        Returns
        -------
        list of (str, bool, int, float or None)
        """
        if name in self.whole:
            return list(self.whole[name])
        return [python_label(v) for v in self.data[name]]

    @property
    def n_rows(self):
        return int(self.lines.shape[0])

    def missing(self, name):
        """Boolean mask of the missing cells of a column.

        Parameters
        ----------
        name : str
            A column of the table.

        Returns
        -------
        ndarray of shape (n_rows,), bool
        """
        col = self.data[name]
        if col.dtype.kind == "f":
            return np.isnan(col)
        if col.dtype.kind == "O":
            return np.array([v is None for v in col], dtype=bool)
        return np.zeros(col.shape[0], dtype=bool)

    def take(self, rows):
        """A Table of some rows.

        Parameters
        ----------
        rows : ndarray of int or bool
            Row indices (or a mask), as for NumPy indexing.

        Returns
        -------
        Table
        """
        return Table(self.path, list(self.columns), {k: v[rows] for k, v in self.data.items()},
                     self.lines[rows], {k: v[rows] for k, v in self.whole.items()})


def delimiter_for(path, delimiter=None):
    """The delimiter: `delimiter` if given, else from the suffix (None: sniff, for .txt)."""
    if delimiter is not None:
        if delimiter in ("\\t", "tab"):
            return "\t"
        if len(delimiter) != 1:
            raise TableError(f"--delimiter {delimiter!r}: expected one character (or \\t)")
        return delimiter
    stem, suffix = os.path.splitext(str(path))
    if suffix.lower() in _COMPRESSED:
        suffix = os.path.splitext(stem)[1]     # data.csv.gz: a .csv
    suffix = suffix.lower()
    if suffix not in _SUFFIX_DELIMITERS:
        raise TableError(f"{path}: cannot tell the delimiter from the suffix {suffix!r}; "
                         "expected .csv, .tsv or .txt, or name it with --delimiter")
    return _SUFFIX_DELIMITERS[suffix]


def read_table(path, *, delimiter=None, index_col=None, encoding="utf-8", na_values=(),
               use_pandas=None):
    """Read a delimited text file with a header row (the contract: the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` (comma), ``.tsv``/``.tab`` (tab) or ``.txt`` (delimiter sniffed) file,
        possibly compressed (``.csv.gz``, ``.bz2``, ``.xz``, a ``.zip`` holding one file), or
        any file with `delimiter` given.
    delimiter : str of length 1, optional
        Overrides the suffix ("\\t" and "tab" mean a tab).
    index_col : str, int or None
        A column (name, or 0-based position) holding row labels rather than a feature: it is
        dropped.  None: a first column whose header cell is empty (what ``DataFrame.to_csv``
        writes for the index) is taken as the index, as is one named ``Unnamed: 0``.
    encoding : str, default "utf-8"
        A UTF-8 byte-order mark is skipped either way.
    na_values : sequence of str, default ()
        Cell texts read as missing besides pandas' default spellings (``NA_VALUES``), such as
        "?" or "-999" (compared after stripping blanks).
    use_pandas : bool or None
        Ignored: every file is read by the one reader, with or without pandas (kept so that
        callers passing it keep working).

    Returns
    -------
    Table

    Raises
    ------
    TableError (a ValueError)
        No header, ragged rows, an unknown index column, an undecodable file (naming the
        encoding), a duplicated column name.
    FileNotFoundError
    """
    path = os.fspath(path)
    sep = delimiter_for(path, delimiter)
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # skip a byte-order mark, as pandas does
    try:
        missing = NA_VALUES | frozenset(str(v).strip() for v in na_values)
        columns, data, lines, whole = _read_rows(path, sep, encoding, missing)
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: cannot decode it as {encoding} ({exc.reason} at byte "
                         f"{exc.start}); name its encoding with --encoding, e.g. latin-1") \
            from None
    index = _index_column(path, columns, index_col)
    if index is not None:
        columns = [c for c in columns if c != index]
        data.pop(index)
    whole.pop(index, None)
    return Table(path, columns, data, lines, whole)


def _delimiter_hint(table):
    """A sentence for a table read as one column whose name holds another delimiter (a
    semicolon-separated .csv), else ""."""
    if len(table.columns) == 1:
        found = [d for d in (";", "\t", "|", ",") if d in table.columns[0]]
        if found:
            shown = {"\t": "\\t"}.get(found[0], found[0])
            return (f"; the header was read as one column: if the file is separated by "
                    f"{shown!r}, pass --delimiter {shown!r}")
    return ""


def _index_column(path, columns, index_col):
    if index_col is None:
        first = columns[0]
        return first if first == "" or first.startswith("Unnamed: 0") else None
    if isinstance(index_col, str) and not index_col.lstrip("-").isdigit():
        if index_col not in columns:
            raise TableError(f"--index-col {index_col!r}: no such column in {path} (columns: "
                             f"{', '.join(columns)})")
        return index_col
    pos = int(index_col)
    if not 0 <= pos < len(columns):
        raise TableError(f"--index-col {index_col}: {path} has {len(columns)} columns "
                         f"(positions 0 to {len(columns) - 1})")
    return columns[pos]


@contextlib.contextmanager
def _open_text(path, encoding):
    """The file as text, line ends left to the csv module (newline=""); a compressed file
    through the standard library."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _COMPRESSED:
        with open(path, newline="", encoding=encoding) as fh:
            yield fh
    elif suffix != ".zip":
        with _COMPRESSED[suffix](path, "rt", newline="", encoding=encoding) as fh:
            yield fh
    else:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise TableError(f"{path}: a .zip of a table holds exactly one file; this "
                                 f"one holds {len(names)}")
            with io.TextIOWrapper(archive.open(names[0]), encoding=encoding,
                                  newline="") as fh:
                yield fh


def _read_rows(path, sep, encoding, missing):
    """(column names, {name: converted column}, start line of each row, {name: exact whole
    numbers} for the columns ``Table.whole`` describes): the contract of the module
    docstring, in one pass of the csv module over the file."""
    with _open_text(path, encoding) as fh:
        if sep is None:
            sample = fh.read(65536)
            fh.seek(0)
            try:
                sep = csv.Sniffer().sniff(sample).delimiter
            except csv.Error:
                raise TableError(f"{path}: cannot tell its delimiter; name it with "
                                 "--delimiter") from None
        reader = csv.reader(fh, delimiter=sep, skipinitialspace=True)
        try:
            header = next(reader, None)
            if not header or all(not h.strip() for h in header) and len(header) == 1:
                raise TableError(f"{path}: no header row on line 1 (an empty file, or a blank "
                                 "first line?); expected the column names there")
            columns = [h.strip() for h in header]
            seen = set()
            for name in columns:
                if name in seen:
                    raise TableError(f"{path}: the column name {name!r} appears twice in the "
                                     "header")
                seen.add(name)
            rows, lines = [], []
            end = reader.line_num   # the last line read: a row starts on the next one
            for row in reader:
                start, end = end + 1, reader.line_num
                if len(row) <= 1 and not "".join(row).strip():
                    continue  # an empty line, or one of blanks only
                if len(row) != len(columns):
                    raise TableError(f"{path}, line {start}: {len(row)} fields; the header "
                                     f"has {len(columns)}")
                rows.append(row)
                lines.append(start)
        except csv.Error as exc:
            raise TableError(f"{path}, line {reader.line_num}: cannot parse it ({exc})") \
                from None
    cells = list(zip(*rows)) if rows else [() for _ in columns]
    data = {name: _convert(np.array(cells[k], dtype=object), missing)
            for k, name in enumerate(columns)}
    whole = {}
    for k, name in enumerate(columns):
        if data[name].dtype.kind == "f":
            exact = _exact_whole_numbers(cells[k], data[name], missing)
            if exact is not None:
                whole[name] = exact
    return columns, data, np.array(lines, dtype=np.int64), whole


def _convert(cells, missing=NA_VALUES):
    """Text cells -> float64 (NaN for missing), bool, or object (str / None for missing)."""
    stripped = [c.strip() if isinstance(c, str) else "" for c in cells]
    present = [c for c in stripped if c not in missing]
    if present and all(c in _TRUE or c in _FALSE for c in present):
        if len(present) == len(stripped):
            return np.array([c in _TRUE for c in stripped], dtype=bool)
        return np.array([None if c in missing else (c in _TRUE) for c in stripped],
                        dtype=object)
    try:
        return np.array([math.nan if c in missing else float(c) for c in stripped],
                        dtype=np.float64)
    except ValueError:
        return np.array([None if c in missing else c for c in stripped], dtype=object)


def _exact_whole_numbers(cells, values, missing):
    """The cells as Python ints (None where missing) when they are all whole numbers and
    float64 `values` lose some of them (beyond 2**53), else None."""
    present = ~np.isnan(values)
    if not present.any() or np.abs(values[present]).max() < 2.0 ** 53 or \
            np.any(values[present] != np.round(values[present])):
        return None
    exact = []
    for cell in cells:
        text = cell.strip() if isinstance(cell, str) else ""
        if text in missing:
            exact.append(None)
            continue
        try:
            exact.append(int(text))
        except ValueError:   # 1e20, 3.0: a whole number written as a float is one anyway
            return None
    # (a whole number beyond the float64 range reads as inf: lossy too, and no float(v))
    lossy = any(v is not None and (not math.isfinite(f) or int(f) != v)
                for v, f in zip(exact, values))
    return np.array(exact, dtype=object) if lossy else None


def _first_missing(table, name, mask):
    row = int(np.flatnonzero(mask)[0])
    return int(table.lines[row]), int(mask.sum())


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
        The input columns, in the order of the model's inputs.
    target : str or None
        The target column's name (dropped from a table given to ``transform``).
    task : {"classification", "regression"}
    classes : list or None
        Classification: the class labels (str, int, float or bool), sorted; output j of the
        model is the probability of ``classes[j]``.
    x_mean, x_scale : ndarray of shape (n_features,), float64
        Standardisation: the model sees ``(x - x_mean) / x_scale``.  Zeros and ones when not
        standardising.  ``x_scale`` > 0 (a constant column gets 1).
    x_fill : ndarray of shape (n_features,), float64, or None
        Imputation: the value put in place of a missing input (training mean or median);
        None: a missing input is an error.
    y_mean, y_scale : float
        Regression: the model predicts ``(y - y_mean) / y_scale``; 0 and 1 otherwise.
    """

    def __init__(self, feature_names, target, task, classes=None, x_mean=None, x_scale=None,
                 x_fill=None, y_mean=0.0, y_scale=1.0):
        if task not in TASKS:
            raise ValueError(f"task={task!r}; expected one of {TASKS}")
        if not isinstance(feature_names, (list, tuple)) or not feature_names or \
                not all(isinstance(f, str) for f in feature_names):
            raise ValueError("feature_names must be a non-empty list of str")
        if len(set(feature_names)) != len(feature_names):
            raise ValueError("feature_names has duplicates")
        if target is not None and not isinstance(target, str):
            raise ValueError(f"target must be a str or None; got {target!r}")
        n = len(feature_names)
        self.feature_names, self.target, self.task = list(feature_names), target, task
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
        if not (math.isfinite(self.y_mean) and math.isfinite(self.y_scale) and
                self.y_scale > 0):
            raise ValueError(f"y_mean={y_mean!r}, y_scale={y_scale!r}; expected finite "
                             "numbers, y_scale > 0")

    # ----------------------------------------------------------------- fitting

    @classmethod
    def fit(cls, table, target, *, task=None, standardize=True, standardize_target=True,
            impute=None):
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

        Returns
        -------
        preprocessor : Preprocessor
        X : ndarray of shape (n_rows, n_features), float64, transformed
        y : ndarray of shape (n_rows,): int64 class indices, or float64 (standardised) values

        Raises
        ------
        TableError
            No such target column; a text feature column; a missing value (naming the file
            line and the column) when not imputing; a missing target; a constant target.
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
        features = [c for c in table.columns if c != target]
        if not features:
            raise TableError(f"{table.path}: no feature columns besides the target {target!r}")
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
            if y_scale == 0:
                raise TableError(f"{table.path}: the target {target!r} is constant "
                                 f"({y_raw[0]:g}) in the {table.n_rows} rows used for "
                                 "training (after --validation-split); there is nothing to "
                                 "learn")
            y = apply_steps(_target_steps(y_mean, y_scale), y_raw)
        X = _numeric_block(table, features)
        x_fill = None
        if impute is not None:
            if impute not in ("mean", "median"):
                raise ValueError(f"--impute {impute!r}: expected mean or median")
            with np.errstate(all="ignore"):
                x_fill = (np.nanmean if impute == "mean" else np.nanmedian)(X, axis=0)
            empty = np.isnan(x_fill)
            if empty.any():
                raise TableError(f"{table.path}: column {features[int(np.argmax(empty))]!r} has "
                                 "no values at all; nothing to impute from")
        else:
            _check_no_missing(table, features, X)
        if x_fill is not None:
            X = STEP_OPS["fill_missing"](X, x_fill)   # the statistics below are of filled X
        if standardize:
            x_mean, x_scale = _mean_std(X)
            x_scale[x_scale == 0] = 1.0  # a constant column stays constant (0)
        else:
            x_mean, x_scale = np.zeros(len(features)), np.ones(len(features))
        pre = cls(features, target, task, classes, x_mean, x_scale, x_fill, y_mean, y_scale)
        pre.warning = warning
        return pre, pre.transform(X), y

    # ----------------------------------------------------------------- applying

    def select(self, table):
        """The feature columns of `table` by name, in the model's order.

        Parameters
        ----------
        table : Table
            Any column order; the target column and other extra columns are ignored.

        Returns
        -------
        X : ndarray of shape (n_rows, n_features), float64
            Not yet imputed or standardised.
        ignored : list of str
            The columns left out, the target excepted.

        Raises
        ------
        TableError
            A feature column is absent (all absent ones are named) or holds text.
        """
        missing = [f for f in self.feature_names if f not in table.data]
        if missing:
            raise TableError(f"{table.path}: the model needs the columns "
                             f"{', '.join(map(repr, missing))}, which it does not have "
                             f"(it has {', '.join(map(repr, table.columns))})")
        ignored = [c for c in table.columns if c not in self.feature_names and c != self.target]
        return _numeric_block(table, self.feature_names), ignored

    def transform_table(self, table, hint=None):
        """Inputs for the model from a table: select, impute or reject missing, standardise.

        Parameters
        ----------
        table : Table
        hint : str, optional
            Ends the message of a missing value (default: how to impute).

        Returns
        -------
        X : ndarray of shape (n_rows, n_features), float64
        ignored : list of str
            As ``select``.

        Raises
        ------
        TableError
            As ``select``, or a missing value when the model was trained without imputation.
        """
        X, ignored = self.select(table)
        if self.x_fill is None:
            _check_no_missing(table, self.feature_names, X, hint)
        return self.transform(X), ignored   # imputes, when trained with imputation

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
        list of (str, ndarray of shape (n_features,), float64)
            ``[("fill_missing", x_fill), ("standardize", (x_mean, x_scale))]`` (without
            the first when not imputing).
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
        X : array-like of shape (n_rows, n_features), real

        Returns
        -------
        ndarray of shape (n_rows, n_features), float64
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
        return {"feature_names": self.feature_names, "target": self.target, "task": self.task,
                "classes": self.classes, "x_mean": self.x_mean.tolist(),
                "x_scale": self.x_scale.tolist(),
                "x_fill": None if self.x_fill is None else self.x_fill.tolist(),
                "y_mean": self.y_mean, "y_scale": self.y_scale}

    @classmethod
    def from_config(cls, config):
        """Rebuild from ``get_config`` (as read from a model file).

        Parameters
        ----------
        config : dict
            Exactly the keys ``get_config`` writes.

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
        if set(config) != expected:
            raise ValueError(f"the tabular description has keys {sorted(config)}; expected "
                             f"{sorted(expected)}")
        for key in ("y_mean", "y_scale"):
            if isinstance(config[key], bool) or not isinstance(config[key], (int, float)):
                raise ValueError(f"the tabular {key} is {config[key]!r}; expected a number")
        return cls(**config)

    def __repr__(self):
        return (f"Preprocessor({len(self.feature_names)} features, target={self.target!r}, "
                f"task={self.task!r}, classes={self.classes!r})")


def _target_steps(y_mean, y_scale):
    """A regression target into the model's units: the inverse of ``output_steps``."""
    return [("standardize", (y_mean, y_scale))]


def _vector(values, n, name):
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise ValueError(f"{name} must be a list of {n} numbers (one per feature)")
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer))
           for v in values):
        raise ValueError(f"{name} must hold numbers")
    arr = np.array(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} has {arr.size} entries; expected {n} (one per feature)")
    if not np.all(np.isfinite(arr)):
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
    """Raise TableError for the first missing target (and feature, if `features`) in the file.

    Also checks that `target` is a column, and (with `features`) that the features are
    numbers or booleans.

    Parameters
    ----------
    table : Table
    target : str
        The target column's name.
    features : bool, default True
        Also check every other column.

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
    if features:
        feature_matrix(table, [c for c in table.columns if c != target])


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


def python_label(v):
    """A label as a JSON-storable Python value (whole floats become ints: 1.0 is class 1).

    Parameters
    ----------
    v : str, bool, int, float or their NumPy types
    """
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if float(v).is_integer() else float(v)
    return v


def _numeric_block(table, names):
    cols = []
    for name in names:
        col = table.data[name]
        if col.dtype.kind == "O":
            present = [(i, v) for i, v in enumerate(col) if v is not None]
            if present and all(isinstance(v, bool) for _, v in present):
                col = np.array([math.nan if v is None else float(v) for v in col])
            else:
                row, value = next(((i, v) for i, v in present if not _is_number(v)),
                                  present[0] if present else (0, None))
                raise TableError(
                    f"{table.path}, line {int(table.lines[row])}: column {name!r} holds text "
                    f"({value!r}); features must be numbers or booleans (encode categories "
                    "first, e.g. with pandas.get_dummies; if it marks a missing value, name "
                    "it with --na-values)")
        cols.append(col.astype(np.float64))
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


def _is_number(text):
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _check_no_missing(table, names, X, hint=None):
    bad = np.isnan(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        hint = hint or "fill them in, or pass --impute mean or --impute median"
        raise TableError(f"{table.path}, line {int(table.lines[row])} (the header is line 1): "
                         f"column {names[col]!r} is missing ({int(bad.sum())} missing values "
                         f"in all); {hint}")
