"""Saving and loading models: one ``.npz`` file, no pickle, written atomically.

Format (``FORMAT_VERSION`` 1).  A zip archive as ``numpy.savez`` writes it, holding:

``description``
    a 0-d unicode array: a JSON object (strict JSON, no NaN/Infinity literals)::

        {"format": "fastnn-model", "format_version": 1, "fastnn_version": "0.1.0",
         "layer_sizes": [n_0, ..., n_L], "dtype": "float32" | "float64",
         "layers": [{"activation": ..., "alpha": ..., "init": {...}, "bias_init": {...}}, ...],
         "output": "auto" | link, "loss": {"name": ..., ...} | null,
         "n_params": N, "params_sha256": "<hex digest of the little-endian parameter bytes>",
         "optimizer": null | {"name": "SGD" | "Adam", "config": {...},
                              "schedule": {"name": ..., "config": {...}, "state": {...}},
                              "t": steps, "has_state": bool}}

    Initializer configs are those of ``fastnn.init`` (null for an initializer that cannot be
    rebuilt from its config: the layer then gets the default for its activation, which only
    matters for a later ``init_params``).
``params``
    the parameter vector, shape (N,), little-endian float32 or float64 (layout: fastnn.model).
``optimizer_state_0``, ``optimizer_state_1``
    only with an optimizer that has taken a step: its state vectors (velocity; Adam's two
    moments), each of shape (N,), or (0,) when that optimizer keeps none.

Loading reads with ``allow_pickle=False``, so nothing in a file is ever executed; every
problem (not a zip archive, a truncated or corrupted archive, a missing entry, another
format, a newer format version, a checksum mismatch, an inconsistent description) raises
``ModelFileError``, a ``ValueError`` whose message names the file and what is wrong.

Saving writes a temporary file in the target's directory, flushes and fsyncs it, and renames it
over the target with ``os.replace`` (atomic on POSIX and Windows): an interrupted save leaves
either the previous file or the new one under the target name, never a partial file.
"""
import contextlib
import hashlib
import json
import math
import os
import secrets
import warnings
import zipfile
import zlib

import numpy as np

from fastnn import __version__, init as _init
from fastnn import optim as _optim
from fastnn.losses import Loss
from fastnn.model import Dense, MLP

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileError", "save_model", "load"]

FORMAT = "fastnn-model"
#: the version this fastnn writes; it reads this one and every earlier one
FORMAT_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_OPTIMIZERS = {"SGD": _optim.SGD, "Adam": _optim.Adam}
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
    optimizer : fastnn.SGD, fastnn.Adam or None
        Also store the hyperparameters, the schedule (with a ReduceOnPlateau's progress), the
        step count and the state vectors, so that ``load(path, with_optimizer=True)`` can
        resume training where it stopped.

    Raises
    ------
    TypeError
        `model` is not an MLP, or `optimizer` / its schedule is a type the format cannot
        describe (a user-defined subclass).
    FileNotFoundError
        The directory of `path` does not exist.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a fastnn.MLP; got {type(model).__name__}")
    params = np.ascontiguousarray(model.params, dtype=model.dtype.newbyteorder("<"))
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastnn_version": __version__,
        "layer_sizes": [int(n) for n in model.layer_sizes],
        "dtype": model.dtype.name,
        "layers": [{"activation": layer.activation, "alpha": layer.alpha,
                    "init": _initializer_config(layer.init, k, "init"),
                    "bias_init": _initializer_config(layer.bias_init, k, "bias_init")}
                   for k, layer in enumerate(model.layers)],
        "output": model.output,
        "loss": model.loss_.get_config() if model.loss_ is not None else None,
        "n_params": int(model.n_params),
        "params_sha256": hashlib.sha256(params.tobytes()).hexdigest(),
        "optimizer": None,
    }
    arrays = {"params": params}
    if optimizer is not None:
        description["optimizer"], states = _describe_optimizer(optimizer, model)
        for i, state in enumerate(states):
            arrays[f"optimizer_state_{i}"] = state
    arrays["description"] = np.array(json.dumps(description, allow_nan=False))
    _atomic_write(path, lambda fh: _write_npz(fh, arrays))


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
                      UserWarning, stacklevel=4)
        return None
    return config


def _describe_optimizer(optimizer, model):
    name = type(optimizer).__name__
    if _OPTIMIZERS.get(name) is not type(optimizer):
        raise TypeError(f"optimizer is a {name}; the model file format describes only "
                        f"fastnn.SGD and fastnn.Adam")
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
        states.append(np.ascontiguousarray(s, dtype=model.dtype.newbyteorder("<")))
    description = {"name": name, "config": config,
                   "schedule": {"name": schedule_name, "config": schedule_config,
                                "state": schedule_state},
                   "t": int(optimizer.t), "has_state": has_state}
    return description, states


def _finite_or_text(value):
    """JSON has no inf/nan: store them as the strings float() reads back."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _write_npz(fh, arrays):
    np.savez(fh, **arrays)


def _atomic_write(path, write):
    """Call write(fh) on a temporary file beside `path`, fsync it, then rename it over path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}: the directory {directory!r} does "
                                "not exist")
    base = os.path.basename(path)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            # 0o666 and the process umask give the permissions of any new file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(f"could not create a temporary file in {directory!r}")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ loading

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
    optimizer : fastnn.SGD or fastnn.Adam or None
        Only with ``with_optimizer=True``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelFileError (a ValueError)
        The file is not a fastnn model, is truncated or corrupted, or was written in a newer
        format version; the message names the file and the problem.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:  # our handle, closed whatever np.load does with a bad file
        head = fh.read(8)
        if not head.startswith(_ZIP_MAGIC):
            raise ModelFileError(path, _not_a_zip(head))
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as archive:
                names = list(archive.files)
                for required in ("description", "params"):
                    if required not in names:
                        raise ModelFileError(path, f"it has no {required!r} entry (entries: "
                                                   f"{names}); it is not a model saved by "
                                                   "fastnn")
                description = _parse_description(path, archive["description"])
                params = archive["params"]
                states = [archive[f"optimizer_state_{i}"] for i in range(2)
                          if f"optimizer_state_{i}" in names]
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
                # what zipfile raises for corrupted flag bits and version fields: "strong
                # encryption", "compressed patched data", "File ... is encrypted"
                NotImplementedError, RuntimeError) as exc:
            raise ModelFileError(path, f"the file is truncated or corrupted "
                                       f"({type(exc).__name__}: {exc})") from exc
    try:
        model = _build_model(path, description, params)
        optimizer = None
        if with_optimizer and description.get("optimizer") is not None:
            optimizer = _build_optimizer(path, description["optimizer"], states, model)
    except ModelFileError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(path, f"its description is inconsistent ({type(exc).__name__}: "
                                   f"{exc})") from exc
    return (model, optimizer) if with_optimizer else model


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


def _parse_description(path, raw):
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ModelFileError(path, f"its 'description' entry is a {raw.dtype} array of shape "
                                   f"{raw.shape}; expected one JSON string")
    try:
        description = json.loads(str(raw))
    except ValueError as exc:
        raise ModelFileError(path, f"its description is not valid JSON ({exc})") from None
    if not isinstance(description, dict):
        raise ModelFileError(path, "its description is not a JSON object")
    if description.get("format") != FORMAT:
        raise ModelFileError(path, f"its format is {description.get('format')!r}; expected "
                                   f"{FORMAT!r}")
    version = description.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(path, f"its format_version is {version!r}; expected a positive "
                                   "integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            path, f"it was written in format version {version} (by fastnn "
                  f"{description.get('fastnn_version', '?')}); this fastnn {__version__} reads "
                  f"format versions up to {FORMAT_VERSION}: upgrade fastnn to load it")
    return description


def _build_model(path, description, params):
    sizes = description["layer_sizes"]
    layers_desc = description["layers"]
    if not isinstance(sizes, list) or not isinstance(layers_desc, list) or \
            len(layers_desc) != len(sizes) - 1:
        raise ModelFileError(path, f"its description has layer_sizes={sizes!r} and "
                                   f"{len(layers_desc)} layers; expected one layer per pair of "
                                   "sizes")
    dtype = description["dtype"]
    if dtype not in ("float32", "float64"):
        raise ModelFileError(path, f"its dtype is {dtype!r}; expected 'float32' or 'float64'")
    if params.ndim != 1 or params.dtype.kind != "f" or params.dtype.itemsize != \
            np.dtype(dtype).itemsize:
        raise ModelFileError(path, f"its params entry is a {params.dtype} array of shape "
                                   f"{params.shape}; expected a 1-D {dtype} vector")
    if params.shape[0] != description["n_params"]:
        raise ModelFileError(path, f"it has {params.shape[0]} parameters; its description says "
                                   f"{description['n_params']}")
    little = np.ascontiguousarray(params, dtype=np.dtype(dtype).newbyteorder("<"))
    if hashlib.sha256(little.tobytes()).hexdigest() != description["params_sha256"]:
        raise ModelFileError(path, "the parameters do not match their checksum: the file is "
                                   "corrupted")
    layers = []
    for k, d in enumerate(layers_desc):
        activation = d["activation"]
        layers.append(Dense(sizes[k], sizes[k + 1], activation,
                            init=_rebuild_initializer(d.get("init"), activation),
                            bias_init=_rebuild_initializer(d.get("bias_init"), None),
                            alpha=d["alpha"]))
    model = MLP.from_layers(layers, output=description["output"], dtype=dtype, seed=0,
                            warn_symmetric=False)
    if model.n_params != params.shape[0]:
        raise ModelFileError(path, f"its layer sizes {sizes} need {model.n_params} parameters; "
                                   f"the file has {params.shape[0]}")
    model.params[...] = little
    loss = description.get("loss")
    if loss is not None:
        if loss.get("name") == "gaussian_nll" and loss.get("sigma") == "per_sample":
            # the per-sample sigma belongs to the training data; predictions do not use it
            loss = dict(loss, sigma=1.0)
        model.loss_ = model._use_loss(Loss.from_config(loss))
    return model


def _rebuild_initializer(config, activation):
    if config is None:
        return _init.default_initializer(activation) if activation is not None else \
            _init.zeros
    return _init.from_config(config)


def _build_optimizer(path, d, states, model):
    name = d["name"]
    if name not in _OPTIMIZERS:
        raise ModelFileError(path, f"its optimizer is {name!r}; expected one of "
                                   f"{list(_OPTIMIZERS)}")
    sched = d["schedule"]
    if sched["name"] not in _SCHEDULES:
        raise ModelFileError(path, f"its schedule is {sched['name']!r}; expected one of "
                                   f"{list(_SCHEDULES)}")
    schedule = _SCHEDULES[sched["name"]](**sched["config"])
    for key, value in sched.get("state", {}).items():
        if key in vars(schedule):
            setattr(schedule, key, float(value) if isinstance(value, str) else value)
    optimizer = _OPTIMIZERS[name](**d["config"], schedule=schedule)
    if d.get("has_state"):
        if len(states) != 2:
            raise ModelFileError(path, "its optimizer state entries are missing")
        restored = []
        for i, s in enumerate(states):
            if s.ndim != 1 or s.shape[0] not in (0, model.n_params) or s.dtype.kind != "f":
                raise ModelFileError(path, f"optimizer_state_{i} has shape {s.shape} and dtype "
                                           f"{s.dtype}; expected (0,) or ({model.n_params},)")
            restored.append(np.ascontiguousarray(s, dtype=model.dtype))
        optimizer.state = tuple(restored)
        optimizer.t = int(d["t"])
    return optimizer
