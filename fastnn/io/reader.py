"""Reading a delimited text file into a ``Table`` of columns: ``read_table``.

Part of ``fastnn.io.tabular``, which re-exports its public names; it imports nothing but NumPy
and the standard library.

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

__all__ = ["Table", "TableError", "read_table", "NA_VALUES", "delimiter_for"]

#: the cell spellings pandas reads as missing by default (pandas.read_csv, ``na_values``)
NA_VALUES = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                       "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                       "nan", "null"])
_TRUE, _FALSE = frozenset(["True", "TRUE", "true"]), frozenset(["False", "FALSE", "false"])
_SUFFIX_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}
#: compressed tables, read through the standard library (the suffix before names the format)
_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zip": None}


class TableError(ValueError):
    """A problem with a tabular file or its columns; the message names the file and column."""


class Table:
    """A table read from a file (what ``read_table`` returns).

    Parameters
    ----------
    path, columns, data, lines, whole
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
    whole : dict of str -> ndarray of shape (n_rows,), object (default: none)
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

    def keep(self, columns):
        """A Table of some columns (in the order given), all rows.

        Parameters
        ----------
        columns : list of str
            Columns of the table.

        Returns
        -------
        Table
        """
        return Table(self.path, list(columns), {c: self.data[c] for c in columns},
                     self.lines, {c: self.whole[c] for c in columns if c in self.whole})

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
    except UnicodeError as exc:   # utf-16 without a byte-order mark, say
        raise TableError(f"{path}: cannot decode it as {encoding} ({exc}); name its "
                         "encoding with --encoding (utf-16-le or utf-16-be for UTF-16 "
                         "without a byte-order mark)") from None
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


def parse_number(text):
    """float(text) for a number as a table writes it: ASCII digits, sign, point, exponent,
    inf and nan.  Python's float also takes "1_000", full-width digits and other Unicode
    digits, which a table holds only as text (an identifier, a code): ValueError for them."""
    if not text.isascii() or "_" in text:
        raise ValueError(f"not a number: {text!r}")
    return float(text)


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
        return np.array([math.nan if c in missing else parse_number(c) for c in stripped],
                        dtype=np.float64)
    except ValueError:
        return np.array([None if c in missing else c for c in stripped], dtype=object)


def _first_missing(table, name, mask):
    row = int(np.flatnonzero(mask)[0])
    return int(table.lines[row]), int(mask.sum())
