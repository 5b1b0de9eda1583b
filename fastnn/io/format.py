"""The model file's archive: its format names and limits, its entries, ``ModelFileError``,
and the reading of entries from a file that may come from anywhere (each entry's declared sizes
checked against the file, each .npy header checked before its data is read, the description
parsed as strict JSON with no repeated key).  The format itself is described in
fastnn/io/saving.py; the description's fields are checked in fastnn/io/description.py.
"""
import json
import math
import os
import zipfile

import numpy as np

from fastnn._version import __version__
from fastnn.optim.optimizers import MAX_STEPS


FORMAT = "fastnn-model"
#: fastnn.ensemble.ENSEMBLE_FORMAT (which imports this module), to name such a file
_ENSEMBLE_FORMAT = "fastnn-ensemble"
#: the version this fastnn writes; it reads this one and every earlier one (module docstring)
FORMAT_VERSION = 2
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"

#: a model file's entries: model_arrays writes them under these names and load reads them, and
#: no other (a file with another entry is refused, see load)
_DESCRIPTION, _PARAMS = "description", "params"
_OPTIMIZER_STATES = ("optimizer_state_0", "optimizer_state_1")   # the optimizer's (s1, s2)
_BEST_PARAMS, _RUN_PARAMS = "early_stopping_best_params", "early_stopping_run_params"
_MODEL_ENTRIES = frozenset((_DESCRIPTION, _PARAMS, *_OPTIMIZER_STATES, _BEST_PARAMS,
                            _RUN_PARAMS))


class ModelFileError(ValueError):
    """A file that ``fastnn.load`` cannot read as a model; the message names the file."""

    def __init__(self, path, problem):
        super().__init__(f"cannot load {os.fspath(path)!r}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem

    def __reduce__(self):  # picklable despite the two-argument constructor
        return type(self), (self.path, self.problem)


# A model file may come from anywhere.  Everything read from it is checked with the rules of
# the constructors, and every size is cross-checked before anything is allocated: the
# description's layer sizes give the number of parameters, which must equal its n_params and
# the shape in the params entry's .npy header, and a header may declare no more data than
# its zip entry can hold.  So a crafted file fails fast, with bounded memory, as a
# ModelFileError that names the file and the field.  The field checks below (one per kind of
# field) are meant for every new field of the format.

#: the description is small; a larger one is not a model file (bounded memory)
MAX_DESCRIPTION_BYTES = 16 * 2**20
#: deflate expands at most ~1032x; a zip entry declaring more than this is corrupted
_MAX_DEFLATE_RATIO = 1100
_MAX_STEPS = MAX_STEPS        # the optimizer's step count's bound


def _require_entry(path, entries, name):
    if name not in entries:
        raise ModelFileError(path, f"it has no {name!r} entry (entries: {sorted(entries)}); "
                                   "it is not a model saved by fastnn")


def _not_a_zip(head):
    if not head:
        return "the file is empty"
    if head.startswith(_NPY_MAGIC):
        return ("it is a single .npy array, not a model archive (.npz written by "
                "MLP.save)")
    if head[:1] == b"\x80":
        return ("it looks like a pickle; fastnn never loads pickles from model files (use "
                "pickle.load yourself if you trust its source)")
    return "it is not an .npz (zip) archive written by MLP.save"


def _unique_keys(pairs):
    """json's object hook refusing a key given twice (json keeps the last, silently)."""
    d = {}
    for key, value in pairs:
        if key in d:
            raise ValueError(f"the key {key!r} appears twice in one object")
        d[key] = value
    return d


def _entries(path, archive, file_size):
    """{name without .npy: ZipInfo}, each entry's declared sizes checked against the file."""
    entries = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        name = info.filename[:-4]
        if name in entries:  # zipfile reads the last one; a crafted file could hide one
            raise ModelFileError(path, f"it has two {name!r} entries; a file fastnn writes "
                                       "has one of each")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(path, f"its {name!r} entry uses zip compression method "
                                       f"{info.compress_type}; expected stored or deflated")
        if info.compress_size > file_size or (
                info.compress_type == zipfile.ZIP_STORED and
                info.file_size != info.compress_size) or \
                info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
            raise ModelFileError(path, f"its {name!r} entry declares {info.file_size} bytes in "
                                       f"{info.compress_size} stored bytes of a "
                                       f"{file_size}-byte file: the file is corrupted")
        entries[name] = info
    return entries


def _read_npy(path, archive, info, name, check_header):
    """Read one .npy entry: its header first, checked by check_header(shape, fortran, dtype)
    (which raises a message), then exactly the data the header declares."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ModelFileError(path, f"its {name!r} entry has .npy format version "
                                       f"{version}; expected (1, 0) or (2, 0)")
        if dtype.hasobject:
            raise ModelFileError(path, f"its {name!r} entry holds Python objects ({dtype}); "
                                       "fastnn never unpickles data from a file")
        problem = check_header(shape, dtype)
        if problem:
            raise ModelFileError(path, f"its {name!r} entry is a {dtype} array of shape "
                                       f"{shape}; {problem}")
        count = math.prod(shape)
        n_bytes = count * dtype.itemsize
        if n_bytes > info.file_size:
            raise ModelFileError(path, f"its {name!r} entry declares {n_bytes} bytes of data "
                                       f"but holds at most {info.file_size}: the file is "
                                       "truncated or corrupted")
        data = fh.read(n_bytes)
        if len(data) != n_bytes or fh.read(1):  # reading to the end checks the zip CRC
            raise ModelFileError(path, f"its {name!r} entry does not hold the {n_bytes} bytes "
                                       "its header declares: the file is truncated or "
                                       "corrupted")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


def _description_header(shape, dtype):
    if shape != () or dtype.kind != "U":
        return "expected one JSON string (a 0-d unicode array)"
    if dtype.itemsize > MAX_DESCRIPTION_BYTES:
        return f"a description larger than {MAX_DESCRIPTION_BYTES} bytes is not a model's"
    return None


def _vector_header(dtype, shapes):
    """A check for a 1-D float vector of one of `shapes` (and of `dtype` unless None)."""
    shapes = shapes if isinstance(shapes[0], tuple) else (shapes,)

    def check(shape, found):
        if found.kind != "f" or found.itemsize not in (4, 8) or (
                dtype is not None and found.itemsize != np.dtype(dtype).itemsize):
            return f"expected {dtype or 'float32 or float64'}"
        if shape not in shapes:
            return f"expected shape {' or '.join(str(s) for s in shapes)}"
        return None
    return check


def _parse_description(path, raw):
    def no_constants(name):
        raise ValueError(f"{name} is not JSON (strict JSON has no NaN or Infinity)")
    try:
        description = json.loads(str(raw[()]), parse_constant=no_constants,
                                 object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(path, f"its description is not valid JSON "
                                   f"({type(exc).__name__}: {exc})") from None
    if not isinstance(description, dict):
        raise ModelFileError(path, "its description is not a JSON object")
    if description.get("format") == _ENSEMBLE_FORMAT:
        raise ModelFileError(path, "it is an ensemble file (written by MLPEnsemble.save), not "
                                   "a single model; load it with fastnn.load_ensemble")
    if description.get("format") != FORMAT:
        raise ModelFileError(path, f"its format is {_shown(description, 'format')}; "
                                   f"expected {FORMAT!r}")
    version = description.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(path, f"its format_version is "
                                   f"{_shown(description, 'format_version')}; expected a "
                                   "positive integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            path, f"it was written in format version {version} (by fastnn "
                  f"{str(description.get('fastnn_version', '?'))[:40]}); this fastnn "
                  f"{__version__} reads format versions up to {FORMAT_VERSION}: upgrade "
                  "fastnn to load it")
    return description


def _cut(text, limit=300):
    return text if len(text) <= limit else text[:limit] + "..."


def _short(value, limit=80):
    """repr(value), cut to `limit` characters: messages stay readable for crafted values."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _shown(container, key):
    """A description field as a message shows it: "missing" when absent (rather than the
    None that .get gives), else its value (_short)."""
    return _short(container[key]) if key in container else "missing"
