"""What each input column of a table becomes for the network: its encoding.

Part of the preprocessing definition a ``fastnn train`` model keeps
(``fastnn.io.tabular.Preprocessor``); ``fastnn predict`` evaluates it here in NumPy and
``fastnn.interop.onnx_export`` builds the graph's nodes from the same ``ColumnEncoding``
objects.  Imports nothing above ``fastnn.io.reader``.

The kinds, decided once on the training file (``plan_columns``):

``number``
    A float64 column (a bool column of a model saved before encodings existed is read as
    0/1 too): one input, NaN where missing (an error unless trained with ``--impute``),
    standardised by the Preprocessor.
``category``
    Text or booleans: one-hot, one indicator (0.0 / 1.0) per level seen in the training rows,
    levels sorted (False before True).  As scikit-learn's
    ``OneHotEncoder(handle_unknown="ignore")``: a level the training rows lacked gives all
    zeros, and so does a missing cell (as ``pandas.get_dummies`` without ``dummy_na``), so
    neither needs ``--impute``; ``fastnn predict`` counts both per column.  Indicators are
    not standardised.  Levels are compared as text: a cell of a predicted file read as the
    number 3.0 matches the level "3"; True/False spellings (``TRUE``, ``false``) match a
    boolean level.
``date``
    Every present cell an ISO 8601 date (``YYYY-MM-DD``, optionally ``THH:MM[:SS[.f]]`` or
    with a blank instead of ``T``, and an optional ``Z`` or ``+HH:MM`` offset): one input,
    the days since 1970-01-01 00:00 UTC as float64 (a time of day is a fraction of a day,
    a time without offset is taken as UTC); then a number (missing, imputed, standardised).

A text column whose values are all different (over ``ID_MIN_ROWS`` rows) is an identifier:
its one-hot would give every training row an indicator of its own and every new row zeros,
so it is left out with a note saying so (``plan_columns``); ``--drop`` leaves out any other.
"""
import datetime
import math
import re

import numpy as np

from fastnn.io.reader import _FALSE, _TRUE, TableError, parse_number

__all__ = ["ColumnEncoding", "plan_columns", "iso_days", "KINDS", "ID_MIN_ROWS"]

KINDS = ("number", "category", "date")
#: a text column with a different value in each of more than this many rows is an identifier
ID_MIN_ROWS = 20
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?"
                  r"(?:Z|[+-]\d{2}:?\d{2})?")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _iso_day(text):
    """Days since 1970-01-01 UTC of one ISO 8601 cell, or None when it is not one."""
    if not isinstance(text, str) or _ISO.fullmatch(text) is None:
        return None
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:   # fromisoformat takes up to microseconds
        text = text[:frac.start(1) + 6] + text[frac.end(1):]
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:   # 2023-02-30, 25:00
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds + delta.microseconds / 1e6) / 86400.0


def iso_days(values):
    """ISO 8601 dates as days since 1970-01-01 00:00 UTC (what a ``date`` column becomes).

    Parameters
    ----------
    values : sequence of str or None
        Cells of a date column; None (or NaN) is missing.

    Returns
    -------
    ndarray of shape (n,), float64
        NaN where a cell is missing.

    Raises
    ------
    ValueError
        A cell that is not an ISO date (its position and text are named).
    """
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None or isinstance(v, float) and math.isnan(v):
            out[i] = math.nan
            continue
        day = _iso_day(v)
        if day is None:
            raise ValueError(f"cell {i} is {v!r}; expected an ISO date such as 2024-03-05 "
                             "or 2024-03-05T14:30:00")
        out[i] = day
    return out


def _number_text(v):
    """A number as a level's text: 3.0 -> "3", 2.5 -> "2.5", and a whole number the reader
    kept exact (an int, fastnn.io.reader's Table.whole) in all its digits, as a file spells
    it: 100000000000000000000 matches that text level, where its float would print 1e+20."""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**63 else repr(float(v))


class ColumnEncoding:
    """How one input column becomes the network's inputs (see the module docstring).

    Parameters
    ----------
    name : str
        The column's name in the table.
    kind : {"number", "category", "date"}
    levels : list of str or list of bool, optional
        A category's levels, in the order of its indicators (required for a category, None
        otherwise): all text, or all booleans.

    Attributes
    ----------
    width : int
        Inputs the column gives: 1, or one per level of a category.
    """

    def __init__(self, name, kind, levels=None):
        if not isinstance(name, str):
            raise ValueError(f"a column name must be a str; got {name!r}")
        if kind not in KINDS:
            raise ValueError(f"column {name!r}: kind {kind!r}; expected one of {KINDS}")
        if kind == "category":
            if not isinstance(levels, (list, tuple)) or not levels or not (
                    all(isinstance(v, str) for v in levels) or
                    all(isinstance(v, bool) for v in levels)):
                raise ValueError(f"column {name!r}: a category needs levels, a non-empty list "
                                 "of str or of bool")
            if len(set(levels)) != len(levels):
                raise ValueError(f"column {name!r}: the levels have duplicates")
            levels = list(levels)
        elif levels is not None:
            raise ValueError(f"column {name!r}: only a category has levels")
        self.name, self.kind, self.levels = name, kind, levels
        self.width = len(levels) if kind == "category" else 1

    @property
    def boolean(self):
        """Whether this is a category of True/False levels."""
        return self.kind == "category" and isinstance(self.levels[0], bool)

    def input_names(self):
        """Names of the inputs it gives: the column's, or ``column=level`` per indicator."""
        if self.kind != "category":
            return [self.name]
        return [f"{self.name}={v}" for v in self.levels]

    def level_keys(self):
        """{cell text: indicator index}: what a category compares a cell with (a boolean
        level under every True/False spelling the reader accepts)."""
        if self.boolean:
            return {text: self.levels.index(level)
                    for level, spellings in ((True, _TRUE), (False, _FALSE))
                    if level in self.levels for text in sorted(spellings)}
        return {v: j for j, v in enumerate(self.levels)}

    def _key(self, v):
        """A cell as its level would be stored (None: missing)."""
        return _bool_key(v) if self.boolean else level_text(v)

    def encode(self, table):
        """The column's inputs from `table`: ``(block, unseen, missing, examples)``.

        Parameters
        ----------
        table : fastnn.io.reader.Table
            Has the column.

        Returns
        -------
        block : ndarray of shape (n_rows, width), float64
            A number or date: the value (NaN where missing); a category: its indicators.
        unseen : int
            Category rows whose level the training rows lacked (all-zero indicators).
        missing : int
            Rows where the cell is missing.
        examples : list
            Up to three of the unseen levels.

        Raises
        ------
        TableError
            A number column holding text, or a date column holding a non-date (naming the
            file, line and column).
        """
        col = table.data[self.name]
        n = col.shape[0]
        if self.kind == "category":
            index = {v: j for j, v in enumerate(self.levels)}
            block = np.zeros((n, self.width), dtype=np.float64)
            unseen, missing, examples = 0, 0, []
            for i, v in enumerate(col):
                key = self._key(v)
                if key is None:
                    missing += 1
                elif key in index:
                    block[i, index[key]] = 1.0
                else:
                    unseen += 1
                    if len(examples) < 3 and key not in examples:
                        examples.append(key)
            return block, unseen, missing, examples
        if self.kind == "date":
            if col.dtype.kind == "f" and np.isnan(col).all():
                return col[:, None].astype(np.float64), 0, n, []
            if col.dtype.kind != "O":
                raise TableError(f"{table.path}, line {int(table.lines[0])}: column "
                                 f"{self.name!r} holds {col[0]!r}; the model reads it as an "
                                 "ISO date such as 2024-03-05")
            days = np.full(n, math.nan)
            for i, v in enumerate(col):
                if v is None:
                    continue
                day = _iso_day(v)
                if day is None:
                    raise TableError(f"{table.path}, line {int(table.lines[i])}: column "
                                     f"{self.name!r} holds {v!r}; the model reads it as an ISO "
                                     "date such as 2024-03-05 or 2024-03-05T14:30:00")
                days[i] = day
            return days[:, None], 0, int(np.isnan(days).sum()), []
        block = _number_column(table, self.name)
        return block[:, None], 0, int(np.isnan(block).sum()), []

    def get_config(self):
        """The JSON-compatible description stored in the model file."""
        return {"kind": self.kind} if self.kind != "category" else \
            {"kind": "category", "levels": list(self.levels)}

    @classmethod
    def from_config(cls, name, config):
        """Rebuild from ``get_config``; a ValueError names anything malformed."""
        if not isinstance(config, dict) or "kind" not in config or \
                not set(config) <= {"kind", "levels"}:
            raise ValueError(f"column {name!r}: the encoding {config!r} is not "
                             "{'kind': ..., 'levels': [...]}")
        return cls(name, config["kind"], config.get("levels"))

    def __repr__(self):
        more = f", {len(self.levels)} levels" if self.kind == "category" else ""
        return f"ColumnEncoding({self.name!r}, {self.kind!r}{more})"


def _number_column(table, name):
    """A number column as float64 (booleans 0/1, NaN where missing); text is a TableError."""
    col = table.data[name]
    if col.dtype.kind == "O":
        present = [(i, v) for i, v in enumerate(col) if v is not None]
        if present and all(isinstance(v, bool) for _, v in present):
            return np.array([math.nan if v is None else float(v) for v in col])
        row, value = next(((i, v) for i, v in present if not _is_number(v)),
                          present[0] if present else (0, None))
        raise TableError(
            f"{table.path}, line {int(table.lines[row])}: column {name!r} holds text "
            f"({value!r}) where the model takes numbers (if it marks a missing value, name it "
            "with --na-values)")
    return col.astype(np.float64)


def _missing(v):
    return v is None or isinstance(v, (float, np.floating)) and math.isnan(v)


def level_text(v):
    """A cell as a text level: the text; True/False; a number as _number_text (None:
    missing)."""
    if _missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating, int, np.integer)):
        return _number_text(v)
    return v


def _bool_key(v):
    """A cell as a boolean level: a bool or a True/False spelling, else its text (no level
    matches it; None: missing)."""
    if _missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str) and (v in _TRUE or v in _FALSE):
        return v in _TRUE
    return level_text(v)


def _is_number(text):
    try:
        parse_number(text)
    except (AttributeError, TypeError, ValueError):
        return False
    return True


def plan_columns(table, names):
    """The kind of each named column of a training table, and the identifiers left out.

    Parameters
    ----------
    table : fastnn.io.reader.Table
    names : list of str
        The candidate input columns.

    Returns
    -------
    kinds : dict of str -> {"number", "category", "date"}
        The columns kept, in the order of `names`.
    dropped : dict of str -> str
        Identifier columns left out, with the reason (for the column report).

    Raises
    ------
    TableError
        A column of numbers holding a few texts, or of dates holding a non-date: naming the
        file, the line, the column and the flags that help (--na-values, --drop).
    """
    kinds, dropped = {}, {}
    for name in names:
        col = table.data[name]
        if col.dtype.kind == "f":
            kinds[name] = "number"
            continue
        present = [(i, v) for i, v in enumerate(col) if v is not None]
        if col.dtype.kind == "b" or all(isinstance(v, bool) for _, v in present):
            kinds[name] = "category"
            continue
        dates = [i for i, v in present if _iso_day(v) is not None]
        numbers = [i for i, v in present if _is_number(v)]
        if dates and len(dates) == len(present):
            kinds[name] = "date"
            continue
        for found, what, expected in ((dates, "dates", "an ISO date such as 2024-03-05"),
                                      (numbers, "numbers", "a number")):
            if 2 * len(found) >= len(present):   # mostly dates (numbers): the rest is a slip
                row, value = next((i, v) for i, v in present if i not in set(found))
                raise TableError(
                    f"{table.path}, line {int(table.lines[row])}: column {name!r} holds "
                    f"{what} but also {value!r} ({len(present) - len(found)} such cells); "
                    f"expected {expected} (if it marks a missing value, name it with "
                    f"--na-values; --drop {name} leaves the column out)")
        distinct = len({v for _, v in present})
        if distinct == len(present) > ID_MIN_ROWS:
            dropped[name] = (f"an identifier (text, a different value in each of "
                             f"{len(present)} rows: one-hot would match no new row)")
            continue
        kinds[name] = "category"
    return kinds, dropped


def fit_encoding(table, name, kind):
    """A ColumnEncoding of one column learned from training rows (a category's levels).

    Parameters
    ----------
    table : fastnn.io.reader.Table
    name : str
    kind : {"number", "category", "date"}

    Returns
    -------
    ColumnEncoding

    Raises
    ------
    TableError
        A category column with no value at all.
    """
    if kind != "category":
        return ColumnEncoding(name, kind)
    present = [v for v in table.data[name] if not _missing(v)]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present):
        levels = sorted({bool(v) for v in present})
    else:
        levels = sorted({level_text(v) for v in present})
    if not levels:
        raise TableError(f"{table.path}: column {name!r} has no values at all in the rows "
                         "used for training; --drop it")
    return ColumnEncoding(name, "category", levels)


def describe(enc, missing, standardised, fill=None, impute=None):
    """One line of the column report: what was done to the column `enc`.

    Parameters
    ----------
    enc : ColumnEncoding
    missing : int
        Missing cells in the training rows.
    standardised : bool
    fill : float, optional
        The value put in missing cells (a number or a date trained with --impute).
    impute : {"mean", "median"}, optional
    """
    scaled = ", standardised" if standardised else ""
    if enc.kind == "category":
        shown = ", ".join(map(repr, enc.levels[:5])) + (", ..." if enc.width > 5 else "")
        what = (f"{'booleans' if enc.boolean else 'text'}, one-hot with {enc.width} "
                f"level{'s' if enc.width != 1 else ''} ({shown})")
        gap = f"; {missing} missing -> all zeros" if missing else ""
    else:
        what = ("ISO date -> days since 1970-01-01" if enc.kind == "date" else "number") + scaled
        gap = ""
        if missing:
            value = (_date_text(fill) if enc.kind == "date" else f"{fill:.6g}")
            gap = f"; {missing} missing filled with the {impute} ({value})"
    return f"{enc.name}: {what}{gap}"


def _date_text(days):
    moment = _EPOCH + datetime.timedelta(days=float(days))
    return moment.strftime("%Y-%m-%d %H:%M") if days % 1 else moment.strftime("%Y-%m-%d")
