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
from fastnn._validation import all_finite
from fastnn._version import __version__
from fastnn.nn.model import MLP
from fastnn.io.writer import check_output, write_output
# the archive and the description's checks, re-exported: fastnn.io.saving.X as before the split
from fastnn.io.format import (FORMAT, FORMAT_VERSION, MAX_DESCRIPTION_BYTES,  # noqa: F401
                              ModelFileError, _BEST_PARAMS, _DESCRIPTION, _ENSEMBLE_FORMAT,
                              _MODEL_ENTRIES, _OPTIMIZER_STATES, _PARAMS, _RUN_PARAMS,
                              _ZIP_MAGIC, _description_header, _entries, _not_a_zip,
                              _parse_description, _read_npy, _require_entry, _shown,
                              _unique_keys, _vector_header)
from fastnn.io.description import (_DESCRIPTION_KEYS, _LAYER_KEYS, _OPTIMIZER_KEYS,  # noqa: F401
                                   _OPTIMIZERS, _SCHEDULES, _build_early_stopping,
                                   _build_model, _build_optimizer, _check_model_description,
                                   _check_optimizer_description, _versioned_initializer)

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "save_model", "load"]


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
    if not all_finite(params):
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
    arrays = {_PARAMS: params}
    for name, state in zip(_OPTIMIZER_STATES, states):
        arrays[name] = state
    if best is not None:
        arrays[_BEST_PARAMS] = best
    if run is not None:
        arrays[_RUN_PARAMS] = run
    arrays[_DESCRIPTION] = np.array(json.dumps(description, allow_nan=False))
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


def _write_npz(fh, arrays):
    np.savez(fh, **arrays)


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
                _require_entry(path, entries, _DESCRIPTION)
                raw = _read_npy(path, archive, entries[_DESCRIPTION], _DESCRIPTION,
                                _description_header)
                description = _parse_description(path, raw)
                _require_entry(path, entries, _PARAMS)
                unknown = sorted(set(entries) - _MODEL_ENTRIES)
                if unknown:  # no version writes them: a crafted or foreign file
                    raise ModelFileError(path, f"it has entries no fastnn model file has: "
                                               f"{', '.join(map(repr, unknown[:5]))}; "
                                               f"expected only {sorted(_MODEL_ENTRIES)}")
                spec = _check_model_description(path, description)
                params = _read_npy(path, archive, entries[_PARAMS], _PARAMS,
                                   _vector_header(spec["dtype"], (spec["n_params"],)))
                states, optimizer_spec = [], None
                if with_optimizer and description.get("optimizer") is not None:
                    optimizer_spec = _check_optimizer_description(
                        path, description["optimizer"], spec["n_params"])
                    if optimizer_spec["has_state"]:
                        for name in _OPTIMIZER_STATES:
                            if name not in entries:
                                raise ModelFileError(path, f"its {name!r} entry is missing "
                                                           "(the description says it has "
                                                           "optimizer state)")
                            states.append(_read_npy(
                                path, archive, entries[name], name,
                                _vector_header(None, ((0,), (spec["n_params"],)))))
                    best_params = None
                    if optimizer_spec["early_stopping"] is not None:
                        name = _BEST_PARAMS
                        if name not in entries:
                            raise ModelFileError(path, f"its {name!r} entry is missing (the "
                                                       "description has an early_stopping "
                                                       "record)")
                        best_params = _read_npy(path, archive, entries[name], name,
                                                _vector_header(spec["dtype"],
                                                               (spec["n_params"],)))
                        name = _RUN_PARAMS
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
