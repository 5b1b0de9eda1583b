"""The model file's description, checked field by field and rebuilt into a model, an
optimizer and an early-stopping record (``load`` in fastnn/io/saving.py reads the archive,
then calls these).  Every field goes through one check per kind of field (``_int_field``,
``_choice_field``, ...), which raises a ``ModelFileError`` naming the file and the field.
"""
import hashlib
import math

import numpy as np

from fastnn.nn import init as _init
from fastnn._version import __version__
from fastnn.optim import optimizers as _optim
from fastnn._validation import MAX_DIM, all_finite, check_bool, check_choice, check_number
from fastnn.nn.layers import ACTIVATIONS, dense_kwargs, parameter_kwargs
from fastnn.nn.losses import Loss
from fastnn.nn.model import OUTPUT_LINKS, Dense, MLP
from fastnn.training.engine import EarlyStopping
from fastnn.io.tabular import Preprocessor

from fastnn.io.format import FORMAT_VERSION, ModelFileError, _MAX_STEPS, _cut, _short

_OPTIMIZERS = {"SGD": _optim.SGD, "Adam": _optim.Adam, "AdamW": _optim.AdamW}
_SCHEDULES = {cls.__name__: cls for cls in (_optim.Constant, _optim.StepDecay,
                                            _optim.InverseScaling, _optim.Cosine,
                                            _optim.ReduceOnPlateau)}


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
    if not all_finite(little):
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
    if model.n_inputs != pre.n_inputs or (n_out != expected and not (
            pre.classes is not None and len(pre.classes) == 2 and n_out == 1)):
        raise ValueError(f"the tabular description has {pre.n_inputs} inputs and "
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
                                  "optimizer.completed_epochs", 0, _optim.MAX_EPOCHS)
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
            if not all_finite(s):
                raise ModelFileError(path, f"its optimizer_state_{i} contains NaN or infinity")
            restored.append(np.array(s, dtype=model.dtype))  # a writeable copy
        optimizer.state = tuple(restored)
        optimizer.t = spec["t"]
    # the epoch count the schedule is a function of (absent from files written before it was
    # saved: 0, the schedule then restarts as it did)
    optimizer.completed_epochs = spec["completed_epochs"]
    return optimizer


# ------------------------------------------------------------ the run's early-stopping record


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
    if not all_finite(best_params):
        raise ModelFileError(path, "its early_stopping_best_params contains NaN or infinity")
    early_stopping._best_params = np.array(best_params, dtype=model.dtype)  # a writeable copy
    if early_stopping._run_params is not None:
        if early_stopping._run_params.shape != (model.n_params,) or \
                not all_finite(early_stopping._run_params):
            raise ModelFileError(path, "its early_stopping_run_params is not a finite vector "
                                       f"of {model.n_params} parameters")
        early_stopping._run_params = np.array(early_stopping._run_params, dtype=model.dtype)
    optimizer._early_stopping = early_stopping
