"""The public API's docstrings: every parameter documented, and each one that has a unit or a
scale says it (seconds, epochs counted from 1, per-step learning rates, fractions, standard
deviation vs variance, probabilities vs logits, per-sample vs summed losses).

The rules are keyed by parameter name, so a new parameter of a known kind is checked without
touching this file; a parameter that is not documented at all fails too.
"""
import inspect
import re

import pytest

import fastnn
from fastnn import ensemble
from fastnn.runtime import fpmode, threads
from fastnn.io import saving as io
from fastnn.nn import losses
from fastnn.optim import optimizers as optim
from fastnn.training import trainer, engine as training

try:  # scikit-learn is optional: without it the rest of the API is still checked
    from fastnn.interop import sklearn as fsk
except ImportError:
    fsk = None


#: the public names of modules without __all__ (the rest is their machinery)
PUBLIC = {
    "fastnn.training.engine": ["EarlyStopping", "History", "TrainingDiverged"],
    "fastnn.runtime.fpmode": ["flush_denormals", "set_flush_denormals", "get_flush_denormals"],
    "fastnn.runtime.threads": ["set_num_threads", "get_num_threads", "blas_threads"],
}


def _public_api():
    """(qualified name, callable whose signature is documented, docstring holding its
    Parameters) for the exported functions and classes and their public methods."""
    objects = {name: getattr(fastnn, name) for name in fastnn.__all__
               if callable(getattr(fastnn, name)) and not name.startswith("_")}
    for mod in (optim, losses, trainer, training, ensemble, io, fpmode, threads, fsk):
        if mod is None:
            continue
        names = getattr(mod, "__all__", None) or PUBLIC.get(mod.__name__) or [
            n for n, v in vars(mod).items() if not n.startswith("_") and callable(v)
            and getattr(v, "__module__", None) == mod.__name__]
        for name in names:
            obj = getattr(mod, name)
            if callable(obj) and getattr(obj, "__module__", "").startswith("fastnn"):
                objects[f"{mod.__name__}.{name}"] = obj
    seen = set()
    for qual, obj in sorted(objects.items()):
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if inspect.isclass(obj):
            if issubclass(obj, BaseException):
                continue
            # what the class defines and what it inherits from fastnn's own bases (MLP is
            # assembled from one base per concern), the class's own definition winning
            members = {}
            for base in reversed(obj.__mro__):
                if base.__module__.startswith("fastnn"):
                    members.update(vars(base))
            init = members.get("__init__")
            if init is not None:
                # numpydoc: the constructor's parameters in the class docstring (or __init__'s)
                yield qual, init, (obj.__doc__ or "") + (init.__doc__ or "")
            for name, member in members.items():
                if name.startswith("_") or not inspect.isfunction(member):
                    continue
                # an override without a docstring inherits its base's (inspect.getdoc)
                yield f"{qual}.{name}", member, inspect.getdoc(getattr(obj, name)) or ""
        elif inspect.isfunction(obj):
            yield qual, obj, obj.__doc__ or ""


API = list(_public_api())

_SECTION = re.compile(r"^\s*({sections})\n\s*-{3,}\n(.*?)(?=^\s*[A-Z][a-z]+( "
                      r"[A-Z][a-z]+)?\n\s*-{3,}\n|\Z)", re.S | re.M)


def _parameters(doc, sections="Parameters|Other Parameters"):
    """{name: description} from the numpydoc Parameters sections of `doc`."""
    doc = inspect.cleandoc(doc) if doc else ""
    described, current = {}, None
    pattern = re.compile(_SECTION.pattern.replace("{sections}", sections), _SECTION.flags)
    for section in pattern.finditer(doc):
        lines = section.group(2).splitlines()
        indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()),
                     default=0)
        continued = False
        for line in lines:
            if line.strip() and len(line) - len(line.lstrip()) == indent:
                head = line.strip().split(" : ")[0]
                names = [n.strip().lstrip("*") for n in head.split(",") if n.strip()]
                # "a, b, c,\n    d\n        As for ...": one entry over two lines
                current = (current if continued else []) + names
                continued = head.rstrip().endswith(",") and " : " not in line
                for n in current:
                    described[n] = line.split(" : ", 1)[1] if " : " in line else ""
            elif current:
                for n in current:
                    described[n] += " " + line.strip()
    return described


def _signature_parameters(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.name not in ("self", "cls") and not p.name.startswith("_")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


# parameter name -> what its description must say (a regular expression, case-insensitive)
UNITS = [
    (r"^(lr|learning_rate_init|base_lr|min_lr)$",
     r"per (optimizer )?step|each (optimizer )?step|step size|per update|update"),
    (r"^(epochs|n_epochs)$", r"epoch"),
    (r"^max_iter$", r"epoch|iteration"),
    (r"^(patience|n_iter_no_change|step_size|warmup)$", r"epoch|step"),
    (r"^epoch$", r"counted from [01]|[01]-based|from [01]"),
    (r"(time|timeout|seconds|interval)", r"second"),
    (r"^(validation_split|validation_fraction|dropout|test_size)$",
     r"fraction|in \[0, 1\)|probability"),
    (r"(^|_)(sigma|std|stddev)$", r"standard deviation"),
    (r"(^|_)var(iance)?$", r"variance"),
    (r"^(n_threads|n_jobs|threads)$", r"thread|process"),
    (r"^batch_size$", r"sample"),
    # per-sample vs summed: a weight's scale only matters through the weighted mean
    (r"^(sample_weight|sw)$", r"mean|sum_i|repeat"),
    (r"^(weight_decay|alpha)$", r"l2|penalt|decay|elu"),
    (r"^(momentum|beta1|beta2|beta_1|beta_2)$", r"\[0, 1\)|coefficient|decay|fraction|velocity"),
    (r"^(clip_norm|max_norm)$", r"norm"),
    (r"^(factor|gamma|decay_rate)$", r"multipl|factor|times"),
]


@pytest.mark.parametrize("qual, fn, doc", API, ids=[q for q, _, _ in API])
def test_every_parameter_is_documented_with_its_unit(qual, fn, doc):
    params = _signature_parameters(fn)
    if not params:
        return
    described = _parameters(doc)
    missing = [p for p in params if p not in described]
    assert not missing, f"{qual}: parameters {missing} are not in its Parameters section"
    for p in params:
        if re.search(r"(^|\s)(as (for|in|of)|see) ``[\w.]+``([ ,][^.]*)?\.?$",
                     described[p].strip(), re.I):
            continue  # "As for ``fastnn.fit``": the unit is stated (and checked) there
        for name_rule, unit_rule in UNITS:
            if re.search(name_rule, p) and not re.search(unit_rule, described[p], re.I):
                pytest.fail(f"{qual}: the description of {p!r} does not say its unit or scale "
                            f"(expected it to match {unit_rule!r}): {described[p]!r}")


# attribute name -> what its description must say (results read after a fit)
ATTRIBUTE_UNITS = [
    (r"^(time|elapsed|.*_time|time_)$", r"second"),
    (r"^samples_per_s$", r"samples? per second|samples/s"),
    (r"^(lr|learning_rate_)$", r"per (optimizer )?step|each (optimizer )?step|step size"),
    (r"^(loss|val_loss|loss_|best_loss_|loss_curve_)$", r"mean|sum|per sample"),
    (r"^(val_metric|validation_scores_|best_validation_score_)$",
     r"accuracy|r\^?2|fraction"),
    (r"^(epoch|best_epoch|n_iter_)$", r"1-based|counted from|epochs"),
    (r"^(t|t_)$", r"step|sample"),
]
@pytest.mark.parametrize("cls", sorted(
    {obj for obj in [getattr(fastnn, n) for n in fastnn.__all__] + (
        [fsk.MLPClassifier, fsk.MLPRegressor] if fsk is not None else [])
     if inspect.isclass(obj)}, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_attributes_say_their_units(cls):
    described = _parameters(cls.__doc__, "Attributes")
    for name, text in described.items():
        if text.startswith("fastnn.nn.losses.Loss"):
            continue  # the loss object, not a value
        for name_rule, unit_rule in ATTRIBUTE_UNITS:
            if re.search(name_rule, name) and not re.search(unit_rule, text, re.I):
                pytest.fail(f"{cls.__name__}.{name}: its description does not say its unit "
                            f"or scale (expected it to match {unit_rule!r}): {text!r}")


# method name -> what its Returns section must say
RETURN_UNITS = [
    (r"^(forward|predict|predict_proba|predict_members|predict_log_proba)$",
     r"probabilit|logit|units of y|label|mean"),
    (r"^predict_std$", r"standard deviation"),
    (r"^(loss_and_grad|evaluate)$", r"mean|sum"),
]


@pytest.mark.parametrize("qual, fn, doc", API, ids=[q for q, _, _ in API])
def test_returns_say_their_units(qual, fn, doc):
    name = qual.rsplit(".", 1)[-1]
    for name_rule, unit_rule in RETURN_UNITS:
        if re.search(name_rule, name):
            returns = re.search(r"^Returns\n-{3,}\n(.*?)(?=^[A-Z][a-z]+( [A-Z][a-z]+)?\n-{3,}"
                                r"\n|\Z)", inspect.cleandoc(doc), re.S | re.M)
            assert returns, f"{qual} has no Returns section"
            assert re.search(unit_rule, returns.group(1), re.I), (
                f"{qual}: its Returns section does not say what the values are (expected it "
                f"to match {unit_rule!r}): {returns.group(1)!r}")


def test_the_rules_see_the_api():
    # the collection finds the API (a broken parser would make the test above vacuous)
    names = {q for q, _, _ in API}
    assert {"MLP", "fastnn.training.trainer.fit", "SGD", "Adam", "MLPEnsemble", "fastnn.io.saving.save_model",
            "fastnn.runtime.threads.set_num_threads"} <= names
    assert fsk is None or "fastnn.interop.sklearn.MLPClassifier" in names
    described = _parameters(fastnn.fit.__doc__)
    assert "epochs" in described and "epoch" in described["epochs"].lower()
    assert {"time", "samples_per_s", "loss"} <= set(_parameters(fastnn.History.__doc__,
                                                                "Attributes"))
