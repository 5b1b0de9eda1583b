"""Saving and loading models: one ``.npz`` file, no pickle, written atomically.

Format (``FORMAT_VERSION`` 2).  A zip archive as ``numpy.savez`` writes it, holding:

``description``
    a 0-d unicode array: a JSON object (strict JSON, no NaN/Infinity literals)::

        {"format": "fastnn-model", "format_version": 2, "fastnn_version": "0.1.0",
         "layer_sizes": [n_0, ..., n_L], "dtype": "float32" | "float64",
         "layers": [{"activation": ..., "negative_slope": ..., "alpha": ...,
                     "dropout": ..., "normalization": ..., "init": {...}, "bias_init": {...}},
                    ...],
         "output": "auto" | link, "loss": {"name": ..., ...} | null,
         "n_params": N, "params_sha256": "<hex digest of the little-endian parameter bytes>",
         "tabular": null | {"feature_names": [...], "target": ..., "task": ..., "classes": ...,
                            "x_mean": [...], "x_scale": [...], "x_fill": null | [...],
                            "y_mean": m, "y_scale": s}   (fastnn.io.tabular.Preprocessor),
         "optimizer": null | {"name": "SGD" | "Adam" | "AdamW", "config": {...},
                              "schedule": {"name": ..., "config": {...}, "state": {...}},
                              "t": steps, "completed_epochs": epochs, "has_state": bool}}

    A layer's ``negative_slope`` is leaky_relu's slope and ``alpha`` elu's alpha (PyTorch's
    names).

    Initializer configs are those of ``fastnn.nn.init`` (null for an initializer that cannot be
    rebuilt from its config: the layer then gets the default for its activation, which only
    matters for a later ``init_params``).

Format versions.  Every change to what a file holds or means bumps ``FORMAT_VERSION``; a
reader refuses a newer version ("upgrade fastnn"), and refuses a key it does not know (a
newer writer that forgot the bump, or an edited file) rather than ignore it.  It reads every
older version with that version's meanings:

version 1 (fastnn until the init renaming)
    A layer's ``alpha`` is the activation's one parameter: leaky_relu's slope, or elu's alpha
    (0.01 for the other activations, unused); there is no ``negative_slope``.  Initializer
    names have their former meanings: ``he_normal`` is today's ``kaiming_normal``,
    ``glorot_normal`` today's ``xavier_normal``, ``lecun_normal`` (and ``xavier_normal``)
    ``variance_scaling(1.0, "fan_in", "normal")`` and ``uniform``
    ``variance_scaling(1/3, "fan_in", "uniform")`` (plain normals; see ``fastnn.nn.init``).
    Files written between the slope's renaming and the bump to 2 are labelled 1 but hold
    ``negative_slope`` (and ``alpha`` = elu's, 1.0 on a leaky_relu layer); they are read
    as version 2 for the layers and as version 1 for the initializer names.  ``dropout``,
    ``normalization``, ``tabular``, ``completed_epochs`` and ``early_stopping`` appear in
    later version-1 files; absent, they mean none / 0.
version 2
    ``negative_slope`` beside ``alpha`` on every layer; initializer names of ``fastnn.nn.init``
    as they are now (each means what PyTorch or Keras means by it).  The optimizer name
    ``"AdamW"`` (with Adam's config keys) appears in later version-2 files; a reader that
    predates it loads such a file's model and refuses only its optimizer, naming
    ``optimizer.name``.

A fastnn that reads only version 1 refuses a version-2 file with "it was written in format
version 2 ...: upgrade fastnn to load it" (every released reader checks the version).  It
cannot tell a version-1-labelled file written between the renaming and the bump from an
older one: it reads such a file's leaky_relu layers with slope ``alpha`` = 1.0 (the fix is
to load and save the file again with this fastnn, which writes version 2).

``params``
    the parameter vector, shape (N,), little-endian float32 or float64 (layout: fastnn.nn.model).
``optimizer_state_0``, ``optimizer_state_1``
    only with an optimizer that has taken a step: its state vectors (velocity; Adam's two
    moments), each of shape (N,), or (0,) when that optimizer keeps none.
``early_stopping_best_params``
    only with an optimizer whose run has an early-stopping record (the optimizer's
    description then holds ``"early_stopping": {"config": {...}, "record": {"best_value",
    "best_epoch", "wait", "at_epoch"}}``): the parameters of the best epoch, shape (N,).

Loading never unpickles, and trusts nothing in the file: each .npy header is read and checked
before its data, every field of the description is checked with the constructors' rules, and
the sizes are cross-checked (layer_sizes -> n_params -> the params header -> the zip entry)
before anything is allocated.  Every problem (not a zip archive, a truncated or corrupted
archive, a missing entry, another format, a newer format version, a checksum mismatch, a
field out of range, sizes that disagree) raises ``ModelFileError``, a ``ValueError`` whose
message names the file and the field.  The field checks (``_int_field``, ``_float_field``,
``_choice_field``, ...) are one function per kind of field, for every new field of the format.

Saving copies the parameters and optimizer state under the model's lock (so a save from
another thread during ``fit`` is one epoch boundary) and writes through ``fastnn.io.writer``, as
every file fastnn writes does: the target is checked before anything else (a directory, a
missing folder, an unwritable place are refused), then a temporary file in its directory is
written, fsynced and renamed over the target with ``os.replace`` (atomic on POSIX and
Windows): an interrupted save leaves either the previous file or the new one under the
target name, never a partial file, and removes its temporary file and descriptor.
"""
import hashlib
import json
import math
import os
import struct
import warnings
import zipfile
import zlib

import numpy as np

from fastnn.nn import init as _init
from fastnn.runtime.state import consistent
from fastnn._version import __version__
from fastnn.optim import optimizers as _optim
from fastnn._validation import MAX_DIM, check_bool, check_choice, check_number
from fastnn.nn.layers import dense_kwargs, parameter_kwargs
from fastnn.nn.losses import Loss
from fastnn.nn.model import Dense, MLP
from fastnn.training.engine import EarlyStopping
from fastnn.io.tabular import Preprocessor
from fastnn.io.writer import check_output, write_output

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "save_model", "load"]

FORMAT = "fastnn-model"
#: fastnn.ensemble.ENSEMBLE_FORMAT (which imports this module), to name such a file
_ENSEMBLE_FORMAT = "fastnn-ensemble"
#: the version this fastnn writes; it reads this one and every earlier one (module docstring)
FORMAT_VERSION = 2
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_OPTIMIZERS = {"SGD": _optim.SGD, "Adam": _optim.Adam, "AdamW": _optim.AdamW}
_SCHEDULES = {cls.__name__: cls for cls in (_optim.Constant, _optim.StepDecay,
                                            _optim.InverseScaling, _optim.Cosine,
                                            _optim.ReduceOnPlateau)}


class ModelFileError(ValueError):
    """A file that ``fastnn.load`` cannot read as a model; the message names the file."""

    def __init__(self, path, problem):
        super().__init__(f"cannot load {os.fspath(path)!r}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem

    def __reduce__(self):  # picklable despite the two-argument constructor
        return type(self), (self.path, self.problem)


# ------------------------------------------------------------------------------- saving

def save_model(model, path, optimizer=None):
    """Write `model` (and `optimizer`) to the ``.npz`` file `path`, atomically.

    Parameters
    ----------
    model : fastnn.MLP
    path : str or os.PathLike
        Written exactly as given (``numpy.savez`` would add ".npz"; this does not).  Its
        directory must exist.
    optimizer : fastnn.SGD, fastnn.Adam, fastnn.AdamW or None
        Also store the hyperparameters, the schedule (with a ReduceOnPlateau's progress), the
        step and epoch counts and the state vectors, so that ``load(path,
        with_optimizer=True)`` resumes training where it stopped: a fit with the loaded
        optimizer (and the same int seed) continues exactly as the uninterrupted run would.

    Raises
    ------
    TypeError
        `model` is not an MLP, `path` not a path, or `optimizer` / its schedule is a type the
        format cannot describe (a user-defined subclass).
    ValueError
        The parameters contain NaN or infinity (the existing file is left unchanged), or
        `path` is empty.
    IsADirectoryError, FileNotFoundError, NotADirectoryError, PermissionError
        `path` is an existing directory, its directory does not exist or is not one, or the
        file cannot be written there: refused before anything is copied or written
        (``fastnn.io.writer.check_output``).

    Notes
    -----
    Safe while any fit runs in another thread: everything the file holds is copied inside
    ``fastnn.runtime.state.consistent(model)`` (``model_arrays``), so the file holds the state of
    one epoch boundary, the optimizer's included (the save waits for the running epoch to
    end, and no longer).  An existing target keeps its permission bits; a symbolic link is
    followed.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a fastnn.MLP; got {type(model).__name__}")
    target = check_output(path, "path")  # a directory, a missing folder: refused up front
    arrays = model_arrays(model, optimizer, target.path)
    write_output(target, lambda fh: _write_npz(fh, arrays))


def model_arrays(model, optimizer=None, path=None):
    """The arrays of `model`'s file (``description`` included), copied inside
    ``consistent(model)``: one epoch boundary of a fit running in another thread (the
    parameters, loss, link and table handling with the optimizer's state, counters, schedule
    and early-stopping record of that same boundary).  Waits for a running epoch to end.

    Parameters
    ----------
    model : fastnn.MLP
    optimizer : fastnn.SGD, fastnn.Adam or None
    path : str, optional
        Named in the error for non-finite parameters.

    Returns
    -------
    dict of name -> ndarray, as ``save_model`` writes them

    Raises
    ------
    TypeError, ValueError
        As ``save_model``.
    """
    with consistent(model):
        params = np.array(model.params, dtype=model.dtype.newbyteorder("<"))  # a copy
        optimizer_description, states, best, run = (None, [], None, None)
        if optimizer is not None:
            optimizer_description, states = _describe_optimizer(optimizer, model)
            best, run = _describe_early_stopping(optimizer, model, optimizer_description)
        output, loss = model.output, model.loss_
        preprocessor = getattr(model, "preprocessor_", None)
    if not np.isfinite(params).all():
        target = "" if path is None else f" to {os.fspath(path)!r}"
        raise ValueError(f"not saving{target}: the model's parameters contain "
                         "NaN or infinity (a file always holds finite parameters; the "
                         "existing file, if any, is unchanged)")
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastnn_version": __version__,
        "layer_sizes": [int(n) for n in model.layer_sizes],
        "dtype": model.dtype.name,
        "layers": [{"activation": layer.activation, "negative_slope": layer.negative_slope,
                    "alpha": layer.alpha,
                    "dropout": layer.dropout, "normalization": layer.normalization,
                    "init": _initializer_config(layer.init, k, "init"),
                    "bias_init": _initializer_config(layer.bias_init, k, "bias_init")}
                   for k, layer in enumerate(model.layers)],
        "output": output,
        "loss": loss.get_config() if loss is not None else None,
        "n_params": int(model.n_params),
        "params_sha256": hashlib.sha256(params.tobytes()).hexdigest(),
        "optimizer": optimizer_description,
        # the table a `fastnn train` model was fitted on (fastnn.io.tabular): columns, classes,
        # standardisation; null for a model trained from arrays
        "tabular": preprocessor.get_config() if preprocessor is not None else None,
    }
    arrays = {"params": params}
    for i, state in enumerate(states):
        arrays[f"optimizer_state_{i}"] = state
    if best is not None:
        arrays["early_stopping_best_params"] = best
    if run is not None:
        arrays["early_stopping_run_params"] = run
    arrays["description"] = np.array(json.dumps(description, allow_nan=False))
    return arrays


def _check_path(path):
    """path as str (bytes are decoded as the file system encodes names)."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"path must be a str, bytes or os.PathLike; got "
                        f"{type(path).__name__}") from None


def _initializer_config(initializer, k, what):
    config = initializer.get_config()
    try:
        rebuilt = _init.from_config(config)
    except (TypeError, ValueError):
        rebuilt = None
    if rebuilt != initializer:
        warnings.warn(f"layer {k}'s {what} {initializer!r} cannot be rebuilt from its config "
                      f"{config!r}; it is saved as null and a loaded model gets the default "
                      "initializer (this affects only a later init_params, not the weights)",
                      UserWarning, stacklevel=5)
        return None
    return config


def _describe_optimizer(optimizer, model):
    name = type(optimizer).__name__
    if _OPTIMIZERS.get(name) is not type(optimizer):
        raise TypeError(f"optimizer is a {name}; the model file format describes only "
                        f"{', '.join('fastnn.' + known for known in _OPTIMIZERS)}")
    schedule = optimizer.schedule
    schedule_name = type(schedule).__name__
    if _SCHEDULES.get(schedule_name) is not type(schedule):
        raise TypeError(f"the optimizer's schedule is a {schedule_name}; the model file format "
                        f"describes only {', '.join(_SCHEDULES)}")
    config = optimizer.get_config()
    config.pop("name")
    schedule_config = config.pop("schedule")
    schedule_config.pop("name")
    # progress a schedule keeps (ReduceOnPlateau's best value, bad epochs, scale)
    schedule_state = {k: _finite_or_text(v) for k, v in vars(schedule).items()
                      if k.startswith("_")}
    s1, s2 = optimizer.state
    has_state = s1 is not None  # None until the optimizer's first step or fit
    states = []
    for s in ((s1, s2) if has_state else ()):
        if s.shape[0] not in (0, model.n_params):
            raise ValueError(f"the optimizer's state has {s.shape[0]} entries but the model has "
                             f"{model.n_params} parameters: it belongs to another model")
        states.append(np.array(s, dtype=model.dtype.newbyteorder("<")))  # copies
    description = {"name": name, "config": config,
                   "schedule": {"name": schedule_name, "config": schedule_config,
                                "state": schedule_state},
                   "t": int(optimizer.t), "completed_epochs": int(optimizer.completed_epochs),
                   "has_state": has_state}
    return description, states


def _finite_or_text(value):
    """JSON has no inf/nan: store them as the strings float() reads back."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _write_npz(fh, arrays):
    np.savez(fh, **arrays)


# ------------------------------------------------------------------------------ loading
#
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
_MAX_STEPS = 2**62


def load(path, *, with_optimizer=False):
    """Load a model saved by ``MLP.save`` / ``save_model``.

    Parameters
    ----------
    path : str or os.PathLike
    with_optimizer : bool, default False
        Return ``(model, optimizer)`` instead of the model alone; optimizer is None when the
        file holds none.

    Returns
    -------
    model : fastnn.MLP
        Same structure, dtype, parameters (bit for bit) and loss as the saved model, so its
        predictions are identical.
    optimizer : fastnn.SGD, fastnn.Adam, fastnn.AdamW or None
        Only with ``with_optimizer=True``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelFileError (a ValueError)
        The file is not a fastnn model, is truncated or corrupted, was written in a newer
        format version, or any field is invalid (a size, dtype, name, hyperparameter or
        state that the constructors would reject, or sizes that disagree); the message
        names the file and the field.  Files from untrusted sources are safe to try: nothing
        is unpickled, and no allocation exceeds what the file's own size allows.
    """
    path = _check_path(path)
    with open(path, "rb") as fh:  # our handle, closed whatever zipfile does with a bad file
        head = fh.read(8)
        if not head.startswith(_ZIP_MAGIC):
            raise ModelFileError(path, _not_a_zip(head))
        file_size = fh.seek(0, os.SEEK_END)
        fh.seek(0)
        try:
            with zipfile.ZipFile(fh) as archive:
                entries = _entries(path, archive, file_size)
                # the description before the params: it names an ensemble's file (which
                # has members instead)
                _require_entry(path, entries, "description")
                raw = _read_npy(path, archive, entries["description"], "description",
                                _description_header)
                description = _parse_description(path, raw)
                _require_entry(path, entries, "params")
                unknown = sorted(set(entries) - _MODEL_ENTRIES)
                if unknown:  # no version writes them: a crafted or foreign file
                    raise ModelFileError(path, f"it has entries no fastnn model file has: "
                                               f"{', '.join(map(repr, unknown[:5]))}; "
                                               f"expected only {sorted(_MODEL_ENTRIES)}")
                spec = _check_model_description(path, description)
                params = _read_npy(path, archive, entries["params"], "params",
                                   _vector_header(spec["dtype"], (spec["n_params"],)))
                states, optimizer_spec = [], None
                if with_optimizer and description.get("optimizer") is not None:
                    optimizer_spec = _check_optimizer_description(
                        path, description["optimizer"], spec["n_params"])
                    if optimizer_spec["has_state"]:
                        for i in range(2):
                            name = f"optimizer_state_{i}"
                            if name not in entries:
                                raise ModelFileError(path, f"its {name!r} entry is missing "
                                                           "(the description says it has "
                                                           "optimizer state)")
                            states.append(_read_npy(
                                path, archive, entries[name], name,
                                _vector_header(None, ((0,), (spec["n_params"],)))))
                    best_params = None
                    if optimizer_spec["early_stopping"] is not None:
                        name = "early_stopping_best_params"
                        if name not in entries:
                            raise ModelFileError(path, f"its {name!r} entry is missing (the "
                                                       "description has an early_stopping "
                                                       "record)")
                        best_params = _read_npy(path, archive, entries[name], name,
                                                _vector_header(spec["dtype"],
                                                               (spec["n_params"],)))
                        name = "early_stopping_run_params"
                        if optimizer_spec["early_stopping"]._run_params is not None:
                            if name not in entries:
                                raise ModelFileError(path, f"its {name!r} entry is missing "
                                                           "(the description's early_stopping "
                                                           "record has run_params)")
                            optimizer_spec["early_stopping"]._run_params = _read_npy(
                                path, archive, entries[name], name,
                                _vector_header(spec["dtype"], (spec["n_params"],)))
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
                OverflowError, struct.error,
                # what zipfile raises for corrupted flag bits and version fields: "strong
                # encryption", "compressed patched data", "File ... is encrypted"
                NotImplementedError, RuntimeError) as exc:
            raise ModelFileError(path, f"the file is truncated or corrupted "
                                       f"({type(exc).__name__}: {exc})") from exc
    model = _build_model(path, spec, params)
    optimizer = None
    if optimizer_spec is not None:
        optimizer = _build_optimizer(path, optimizer_spec, states, model)
        _build_early_stopping(path, optimizer_spec["early_stopping"], best_params, model,
                              optimizer)
    return (model, optimizer) if with_optimizer else model


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


# ----------------------------------------------------------------- the archive's entries

#: the entries a model file of any format version may hold
_MODEL_ENTRIES = frozenset({"description", "params", "optimizer_state_0", "optimizer_state_1",
                            "early_stopping_best_params", "early_stopping_run_params"})


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


# ------------------------------------------------------------ one check per kind of field

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


def _field(path, container, key, where):
    """container[key]; a ModelFileError naming `where` when it is missing."""
    if not isinstance(container, dict) or key not in container:
        raise ModelFileError(path, f"its description has no {where!r}")
    return container[key]


def _field_check(path, check, *args, **kwargs):
    """check(*args, **kwargs) from fastnn._validation (the constructors' own checks), its
    message a ModelFileError: "its layer_sizes[1]=0; expected layer_sizes[1] >= 1"."""
    try:
        return check(*args, **kwargs)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(path, f"its {_cut(str(exc))}") from None


def _int_field(path, value, where, low=0, high=_MAX_STEPS):
    """An integer in [low, high] (JSON true/false are not integers)."""
    return _field_check(path, check_number, value, where, low=low, high=high, integer=True)


def _float_field(path, value, where, low=None, high=None, allow_inf=False):
    """A finite number in [low, high]; with allow_inf also +-inf ("inf"/"-inf" text, as
    save writes them, since JSON has no infinity)."""
    if allow_inf and (value in ("inf", "-inf") or
                      (isinstance(value, float) and math.isinf(value))):
        return float(value)
    return float(_field_check(path, check_number, value, where, low=low, high=high))


def _bool_field(path, value, where):
    return _field_check(path, check_bool, value, where)


def _choice_field(path, value, where, choices):
    return _field_check(path, check_choice, value, where, tuple(choices))


def _object_field(path, value, where, nullable=False):
    if value is None and nullable:
        return None
    if not isinstance(value, dict):
        raise ModelFileError(path, f"its {where} is {_short(value)}; expected a JSON object")
    return value


def _list_field(path, value, where, min_len=0, max_len=10**6):
    if not isinstance(value, list) or not min_len <= len(value) <= max_len:
        raise ModelFileError(path, f"its {where} is {_short(value)}; expected a list of "
                                   f"{min_len} to {max_len} entries")
    return value


def _built(path, where, factory, *args, **kwargs):
    """factory(*args, **kwargs), its TypeError/ValueError a ModelFileError naming `where`:
    a field is checked by the same constructor that checks a user's argument."""
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(path, f"its {where} is invalid ({type(exc).__name__}: "
                                   f"{_cut(str(exc))})") from None


# ----------------------------------------------------------------- format versions
#
# What each version's fields mean (module docstring).  The key lists hold every key any
# version wrote: a key outside them is refused, so that a newer writer that changed the layout
# without bumping FORMAT_VERSION makes this reader fail loudly instead of half-reading.

_DESCRIPTION_KEYS = ("format", "format_version", "fastnn_version", "layer_sizes", "dtype",
                     "layers", "output", "loss", "n_params", "params_sha256", "optimizer",
                     "tabular")
_LAYER_KEYS = ("activation", "negative_slope", "alpha", "dropout", "normalization", "init",
               "bias_init")
_OPTIMIZER_KEYS = ("name", "config", "schedule", "t", "completed_epochs", "has_state",
                   "early_stopping")

#: version-1 initializer names whose meaning changed (fastnn.nn.init), as version-2 configs
_V1_INITIALIZERS = {
    "he_normal": {"name": "kaiming_normal"},
    "glorot_normal": {"name": "xavier_normal"},
    "lecun_normal": {"name": "variance_scaling", "scale": 1.0, "mode": "fan_in",
                     "distribution": "normal"},
    "xavier_normal": {"name": "variance_scaling", "scale": 1.0, "mode": "fan_in",
                      "distribution": "normal"},
    "uniform": {"name": "variance_scaling", "scale": 1.0 / 3.0, "mode": "fan_in",
                "distribution": "uniform"},
}


def _known_keys(path, obj, where, known):
    unknown = sorted(set(obj) - set(known))
    if unknown:
        raise ModelFileError(path, f"its {where} has the keys {_short(unknown)}, which this "
                                   f"fastnn {__version__} (format version {FORMAT_VERSION}) "
                                   "does not know: the file was written by a newer fastnn "
                                   "(upgrade fastnn to load it) or edited")


def _layer_parameters(path, layer, where, activation, version):
    """negative_slope= and alpha= of the layer, as its format version means them."""
    alpha = _float_field(path, _field(path, layer, "alpha", f"{where}.alpha"),
                         f"{where}.alpha", low=0.0)
    if version >= 2 or "negative_slope" in layer:
        # version 2, and version-1 files written between the slope's renaming and the bump
        slope = _float_field(path, _field(path, layer, "negative_slope",
                                          f"{where}.negative_slope"),
                             f"{where}.negative_slope", low=0.0)
        return dense_kwargs(activation, slope, alpha)
    # version 1: alpha is the activation's one parameter (leaky_relu's slope, elu's alpha)
    return parameter_kwargs(activation, alpha)


def _versioned_initializer(config, version):
    """An initializer config of a file of `version`, in this fastnn's names."""
    if version < 2 and config is not None and config.get("name") in _V1_INITIALIZERS \
            and len(config) == 1:
        return dict(_V1_INITIALIZERS[config["name"]])
    return config


# --------------------------------------------------------------------------- the model

def _check_model_description(path, d):
    """The model's fields, checked and cross-checked before any array is read."""
    from fastnn.nn.layers import ACTIVATIONS
    from fastnn.nn.model import OUTPUT_LINKS
    version = d["format_version"]  # checked by _parse_description
    _known_keys(path, d, "description", _DESCRIPTION_KEYS)
    sizes = _list_field(path, _field(path, d, "layer_sizes", "layer_sizes"), "layer_sizes",
                       min_len=2, max_len=100_000)
    sizes = [_int_field(path, n, f"layer_sizes[{i}]", 1, MAX_DIM) for i, n in enumerate(sizes)]
    dtype = _choice_field(path, _field(path, d, "dtype", "dtype"), "dtype",
                         ("float32", "float64"))
    layers = _list_field(path, _field(path, d, "layers", "layers"), "layers",
                        min_len=len(sizes) - 1, max_len=len(sizes) - 1)
    layer_specs = []
    for k, layer in enumerate(layers):
        where = f"layers[{k}]"
        _object_field(path, layer, where)
        activation = _choice_field(path, _field(path, layer, "activation", f"{where}.activation"),
                                  f"{where}.activation", tuple(ACTIVATIONS))
        _known_keys(path, layer, where, _LAYER_KEYS)
        parameters = _layer_parameters(path, layer, where, activation, version)
        init = _versioned_initializer(
            _object_field(path, layer.get("init"), f"{where}.init", nullable=True), version)
        bias_init = _versioned_initializer(
            _object_field(path, layer.get("bias_init"), f"{where}.bias_init", nullable=True),
            version)
        # dropout and normalization: absent in files of earlier versions
        dropout = _field_check(path, check_number, layer.get("dropout", 0.0),
                               f"{where}.dropout", low=0.0, high=1.0, high_open=True)
        normalization = layer.get("normalization")
        if normalization is not None:
            normalization = _choice_field(path, normalization, f"{where}.normalization",
                                          ("layer",))
        if k == len(layers) - 1 and (dropout or normalization):
            raise ModelFileError(path, f"its last layer has dropout={dropout!r} and "
                                       f"normalization={normalization!r}; both apply to "
                                       "hidden layers only")
        layer_specs.append(dict(
            activation=activation, parameters=parameters, dropout=float(dropout),
            normalization=normalization,
            init=_built(path, f"{where}.init", _rebuild_initializer, init, activation),
            bias_init=_built(path, f"{where}.bias_init", _rebuild_initializer, bias_init,
                            None)))
    # a layer-normalized layer also holds its gain and shift: [W | b | gain | shift]
    n_params = sum(a * b + b * (3 if spec["normalization"] else 1)
                   for a, b, spec in zip(sizes[:-1], sizes[1:], layer_specs))
    declared = _int_field(path, _field(path, d, "n_params", "n_params"), "n_params", 1,
                         _MAX_STEPS)
    if declared != n_params:
        raise ModelFileError(path, f"its n_params is {declared} but its layer_sizes {sizes} "
                                   f"need {n_params} parameters")
    output = _choice_field(path, d.get("output", "auto"), "output",
                          ("auto",) + tuple(OUTPUT_LINKS))
    loss = _object_field(path, d.get("loss"), "loss", nullable=True)
    if loss is not None:
        if loss.get("name") == "gaussian_nll" and loss.get("sigma") == "per_sample":
            # the per-sample sigma belongs to the training data; predictions do not use it
            loss = dict(loss, sigma=1.0)
        loss = _built(path, "loss", Loss.from_config, loss)
    digest = _field(path, d, "params_sha256", "params_sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ModelFileError(path, f"its params_sha256 is {_short(digest)}; expected 64 hex "
                                   "digits")
    # the preprocessing of a `fastnn train` model (fastnn.io.tabular), checked by its own
    # from_config; its widths against the network in _build_model
    tabular = _object_field(path, d.get("tabular"), "tabular", nullable=True)
    if tabular is not None:
        tabular = _built(path, "tabular", Preprocessor.from_config, tabular)
    return {"sizes": sizes, "n_params": n_params, "dtype": dtype, "layers": layer_specs,
            "output": output, "loss": loss, "params_sha256": digest, "tabular": tabular}


def _build_model(path, spec, params):
    dtype = np.dtype(spec["dtype"]).newbyteorder("<")
    little = np.ascontiguousarray(params, dtype=dtype)
    if hashlib.sha256(memoryview(little).cast("B")).hexdigest() != spec["params_sha256"]:
        raise ModelFileError(path, "the parameters do not match their checksum: the file is "
                                   "corrupted")
    if not np.isfinite(little).all():
        raise ModelFileError(path, "its params contain NaN or infinity")
    sizes = spec["sizes"]
    layers = [Dense(sizes[k], sizes[k + 1], d["activation"], init=d["init"],
                    bias_init=d["bias_init"], dropout=d["dropout"],
                    normalization=d["normalization"], **d["parameters"])
              for k, d in enumerate(spec["layers"])]
    layers[-1].activation = "identity"  # logits, as MLP.from_layers does
    # built without running the initializers: the file's parameters replace them
    model = MLP.__new__(MLP)
    _built(path, "output", model._build, layers, spec["output"], spec["dtype"], None, False,
          initialize=False)
    model.params[...] = little
    if spec["loss"] is not None:
        _built(path, "loss", setattr, model, "loss_", spec["loss"])
    if spec["tabular"] is not None:
        _built(path, "tabular", _attach_preprocessor, model, spec["tabular"])
    return model


def _attach_preprocessor(model, pre):
    """The tabular preprocessing (fastnn.io.tabular), checked against the model's widths."""
    n_out = model.n_outputs // (2 if model._link_name() == "gaussian" else 1)
    expected = len(pre.classes) if pre.classes is not None else 1
    if model.n_inputs != len(pre.feature_names) or (n_out != expected and not (
            pre.classes is not None and len(pre.classes) == 2 and n_out == 1)):
        raise ValueError(f"the tabular description has {len(pre.feature_names)} features and "
                         f"{expected} outputs; the network has {model.n_inputs} inputs and "
                         f"{n_out} outputs")
    model.preprocessor_ = pre


def _rebuild_initializer(config, activation):
    if config is None:
        return _init.default_initializer(activation) if activation is not None else \
            _init.zeros
    return _init.from_config(config)


# ----------------------------------------------------------------------- the optimizer

#: checks of the progress a schedule keeps, by attribute: (kind, low, high)
_SCHEDULE_STATE = {"_best": ("float", None, None), "_bad_epochs": ("int", 0, _MAX_STEPS),
                   "_scale": ("float", 0.0, 1.0)}


def _check_optimizer_description(path, d, n_params):
    _object_field(path, d, "optimizer")
    _known_keys(path, d, "optimizer", _OPTIMIZER_KEYS)
    name = _choice_field(path, _field(path, d, "name", "optimizer.name"), "optimizer.name",
                        tuple(_OPTIMIZERS))
    config = _keyword_object(path, _field(path, d, "config", "optimizer.config"),
                             "optimizer.config")
    sched = _object_field(path, _field(path, d, "schedule", "optimizer.schedule"),
                         "optimizer.schedule")
    sched_name = _choice_field(path, _field(path, sched, "name", "optimizer.schedule.name"),
                              "optimizer.schedule.name", tuple(_SCHEDULES))
    _known_keys(path, sched, "optimizer.schedule", ("name", "config", "state"))
    sched_config = _keyword_object(path, sched.get("config", {}), "optimizer.schedule.config")
    schedule = _built(path, "optimizer.schedule.config", _SCHEDULES[sched_name], **sched_config)
    state = _object_field(path, sched.get("state", {}), "optimizer.schedule.state")
    for key, value in state.items():
        where = f"optimizer.schedule.state.{key}"
        if not key.startswith("_") or key not in vars(schedule):
            raise ModelFileError(path, f"its {where} is not part of a {sched_name}'s state")
        kind, low, high = _SCHEDULE_STATE.get(
            key, ("int" if isinstance(vars(schedule)[key], int) else "float", None, None))
        if kind == "int":
            value = _int_field(path, value, where, low if low is not None else 0,
                              high if high is not None else _MAX_STEPS)
        else:
            value = _float_field(path, value, where, low, high, allow_inf=low is None)
        setattr(schedule, key, value)
    optimizer = _built(path, "optimizer.config", _OPTIMIZERS[name], **config, schedule=schedule)
    t = _int_field(path, d.get("t", 0), "optimizer.t", 0, _MAX_STEPS)
    has_state = _bool_field(path, d.get("has_state", False), "optimizer.has_state")
    completed_epochs = _int_field(path, d.get("completed_epochs", 0),
                                  "optimizer.completed_epochs", 0, _MAX_STEPS)
    return {"optimizer": optimizer, "t": t, "has_state": has_state,
            "completed_epochs": completed_epochs,
            "early_stopping": _check_early_stopping_description(path, d)}


def _keyword_object(path, value, where):
    _object_field(path, value, where)
    if "schedule" in value:
        raise ModelFileError(path, f"its {where} has a 'schedule' key; the schedule is "
                                   "described beside the config")
    return value


def _build_optimizer(path, spec, states, model):
    optimizer = spec["optimizer"]
    if spec["has_state"]:
        restored = []
        for i, s in enumerate(states):
            if not np.isfinite(s).all():
                raise ModelFileError(path, f"its optimizer_state_{i} contains NaN or infinity")
            restored.append(np.array(s, dtype=model.dtype))  # a writeable copy
        optimizer.state = tuple(restored)
        optimizer.t = spec["t"]
    # the epoch count the schedule is a function of (absent from files written before it was
    # saved: 0, the schedule then restarts as it did)
    optimizer.completed_epochs = spec["completed_epochs"]
    return optimizer


# ------------------------------------------------------------ the run's early-stopping record

def _describe_early_stopping(optimizer, model, description):
    """Add the run's early-stopping record to the optimizer's description; returns the best
    epoch's parameters to store, or None when the run has no record."""
    es = optimizer._early_stopping
    if es is None or es.best_value is None or es._best_params is None or \
            es._best_params.shape != (model.n_params,):
        return None, None
    run = es._run_params
    if run is not None and run.shape != (model.n_params,):
        run = None
    description["early_stopping"] = {
        "config": {"patience": es.patience, "min_delta": es.min_delta, "monitor": es.monitor,
                   "restore_best_weights": es.restore_best_weights},
        "record": {"best_value": _finite_or_text(float(es.best_value)),
                   "best_epoch": int(es.best_epoch), "wait": int(es.wait),
                   "at_epoch": int(es._at_epoch)}}
    if run is not None:
        # the parameters the run reached, where a continuing fit goes on from (the model
        # holds the best ones, put back at the end of the last fit)
        description["early_stopping"]["record"]["run_params"] = True
        run = np.array(run, dtype=model.dtype.newbyteorder("<"))  # a copy
    return np.array(es._best_params, dtype=model.dtype.newbyteorder("<")), run


def _check_early_stopping_description(path, d):
    """The run's early-stopping record of an optimizer description, checked (None: none)."""
    saved = _object_field(path, d.get("early_stopping"), "optimizer.early_stopping",
                          nullable=True)
    if saved is None:
        return None
    where = "optimizer.early_stopping"
    _known_keys(path, saved, where, ("config", "record"))
    config = _object_field(path, _field(path, saved, "config", f"{where}.config"),
                           f"{where}.config")
    early_stopping = _built(path, f"{where}.config", EarlyStopping, **config)
    record = _object_field(path, _field(path, saved, "record", f"{where}.record"),
                           f"{where}.record")
    _known_keys(path, record, f"{where}.record",
                ("best_value", "best_epoch", "wait", "at_epoch", "run_params"))
    early_stopping.best_value = _float_field(
        path, _field(path, record, "best_value", f"{where}.record.best_value"),
        f"{where}.record.best_value", allow_inf=True)
    early_stopping.best_epoch, early_stopping.wait, early_stopping._at_epoch = (
        _int_field(path, _field(path, record, key, f"{where}.record.{key}"),
                   f"{where}.record.{key}", 0, _MAX_STEPS)
        for key in ("best_epoch", "wait", "at_epoch"))
    run = record.get("run_params", False)
    if not isinstance(run, bool):
        raise ModelFileError(path, f"{where}.record.run_params is {run!r}; expected true or "
                                   "false")
    # a placeholder until the entry is read: tells the reader that the entry must exist
    early_stopping._run_params = np.zeros(0) if run else None
    return early_stopping


def _build_early_stopping(path, early_stopping, best_params, model, optimizer):
    """Give the loaded optimizer its run's early-stopping record back (see fastnn.training.engine)."""
    if early_stopping is None:
        return
    if not np.isfinite(best_params).all():
        raise ModelFileError(path, "its early_stopping_best_params contains NaN or infinity")
    early_stopping._best_params = np.array(best_params, dtype=model.dtype)  # a writeable copy
    if early_stopping._run_params is not None:
        if early_stopping._run_params.shape != (model.n_params,) or \
                not np.isfinite(early_stopping._run_params).all():
            raise ModelFileError(path, "its early_stopping_run_params is not a finite vector "
                                       f"of {model.n_params} parameters")
        early_stopping._run_params = np.array(early_stopping._run_params, dtype=model.dtype)
    optimizer._early_stopping = early_stopping
