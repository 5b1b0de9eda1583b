"""``fastnn.to_onnx`` for everything: fastnn's models by fastnn's exporter, scikit-learn
Pipelines with fastnn's estimators through skl2onnx.

skl2onnx converts scikit-learn's transformers (``StandardScaler``, ``SimpleImputer``,
``OneHotEncoder``, ``ColumnTransformer`` ...) and composes their graphs; it knows a model
when a *shape calculator* (the types and shapes of its outputs) and a *converter* (its nodes)
are registered for its class.  ``register()`` registers fastnn's estimators:

======================================================  ===========================================
estimator                                               outputs (skl2onnx's names and conventions)
======================================================  ===========================================
``fastnn.interop.sklearn.MLPClassifier``                ``label`` (N,) and ``probabilities`` (N,
``fastnn.interop.sklearn_ensemble.EnsembleClassifier``  n_classes), then skl2onnx's ZipMap unless
                                                        ``options={id(clf): {"zipmap": False}}``
                                                        (``"columns"``: one output per class)
``fastnn.interop.sklearn.MLPRegressor``                 ``variable`` (N, n_targets); with option
``fastnn.interop.sklearn_ensemble.EnsembleRegressor``   ``return_std`` also ``std`` (N, n_targets)
======================================================  ===========================================

The nodes of each network are those of ``fastnn.interop.onnx_export.to_onnx``, copied into
skl2onnx's graph under fresh names (the same Gemm layers, activations and links, so what
fastnn's own export computes, and how exactly, holds inside a Pipeline too).  Labels follow
skl2onnx: int64 for integer, bool and integer-valued floating-point classes, strings for
string classes; a multi-label classifier gives ``label`` (N, n_labels) int64 0/1.  The
probabilities and predictions come in the element type of the estimator's input in the
graph (double after a double input, float otherwise): where that is not the network's dtype,
the input is cast to it and the outputs back, so the network computes in its own precision.
An ensemble averages its members' outputs in double, as its ``predict_proba`` and
``predict`` do (``return_std``: the mixture's std for ``loss="gaussian_nll"`` members, the
spread of the members' means otherwise).

Needs skl2onnx (``pip install "fastnn[onnx]"``), which ``import fastnn`` does not import.

Examples
--------
>>> from fastnn.interop.onnx_pipeline import register           # doctest: +SKIP
>>> import skl2onnx                                              # doctest: +SKIP
>>> register()                                                   # doctest: +SKIP
>>> onx = skl2onnx.to_onnx(make_pipeline(StandardScaler(), clf).fit(X, y), X[:1])  # doctest: +SKIP

``fastnn.to_onnx(pipeline, path, X=X[:1])`` (this module's ``to_onnx``) registers, converts,
checks and writes in one call.
"""
import os

import numpy as np

from fastnn.interop.onnx_export import DEFAULT_OPSET, _label_tensor
from fastnn.interop.onnx_export import to_onnx as _export
from fastnn.io.writer import check_output, write_output

__all__ = ["to_onnx", "register", "pipeline_to_onnx", "ALIASES"]

#: skl2onnx's name for each estimator class (module, class name) -> alias
ALIASES = {
    ("fastnn.interop.sklearn", "MLPClassifier"): "FastnnMLPClassifier",
    ("fastnn.interop.sklearn", "MLPRegressor"): "FastnnMLPRegressor",
    ("fastnn.interop.sklearn_ensemble", "EnsembleClassifier"): "FastnnEnsembleClassifier",
    ("fastnn.interop.sklearn_ensemble", "EnsembleRegressor"): "FastnnEnsembleRegressor",
}


def to_onnx(model, path=None, *, X=None, opset=DEFAULT_OPSET, name=None, options=None):
    """Export a fastnn model, or a scikit-learn Pipeline that holds fastnn's estimators, to ONNX.

    A ``fastnn.MLP``, ``fastnn.MLPEnsemble`` or fitted ``fastnn.interop.sklearn`` estimator
    is exported by ``fastnn.interop.onnx_export.to_onnx`` (see there for its graph; X is not
    needed).  Any other fitted scikit-learn estimator -- a ``Pipeline`` or
    ``ColumnTransformer`` with ``StandardScaler``, ``SimpleImputer``, ``OneHotEncoder`` ...
    in front of a fastnn estimator, or a fastnn ``EnsembleClassifier``/``EnsembleRegressor``
    -- is converted by skl2onnx with fastnn's estimators registered (``register``; the
    module docstring lists their outputs): classifiers give ``output_label`` and
    ``output_probability`` (skl2onnx's ZipMap) unless ``options={id(clf): {"zipmap":
    False}}``, which gives ``label`` and ``probabilities``.

    Parameters
    ----------
    model : fastnn model or fitted scikit-learn estimator
    path : str or os.PathLike, optional
        Where to write the model (atomically; refused before any work when it cannot be
        written, as ``MLP.save``).  Without it, nothing is written.
    X : array-like or DataFrame, needed for a Pipeline
        A sample of the pipeline's input (``X[:1]``): skl2onnx names and types the graph's
        inputs after it (one input per column of a DataFrame).
    opset : int, default 17
        The default domain's opset.
    name : str, optional
        The graph's name.
    options : dict, optional
        skl2onnx's converter options (a Pipeline only), e.g. ``{id(clf): {"zipmap": False}}``
        or ``{id(reg): {"return_std": True}}`` (``loss="gaussian_nll"`` or an ensemble).

    Returns
    -------
    onnx.ModelProto
        Checked by ``onnx.checker.check_model``.

    Raises
    ------
    ImportError
        onnx, or for a Pipeline skl2onnx, is missing: ``pip install "fastnn[onnx]"``.
    TypeError
        `model` is neither a fastnn model nor a scikit-learn estimator; options given for a
        fastnn model (its export has none).
    ValueError
        A Pipeline without X; an unfitted estimator (see onnx_export.to_onnx for the rest).
    """
    if _fastnn_exports(model):
        if options is not None:
            raise TypeError("options are skl2onnx's converter options, for a scikit-learn "
                            f"Pipeline; fastnn exports a {type(model).__name__} itself (its "
                            "graph is described in fastnn.interop.onnx_export)")
        return _export(model, path, opset=opset, name=name)
    if not (hasattr(model, "fit") and hasattr(model, "get_params")):
        raise TypeError(f"model must be a fastnn.MLP, a fastnn.MLPEnsemble, a fitted "
                        f"fastnn.interop.sklearn estimator or a fitted scikit-learn Pipeline "
                        f"(or other estimator skl2onnx converts); got {type(model).__name__}")
    if X is None:
        raise ValueError(f"exporting a {type(model).__name__} needs X=, a sample of its input "
                         "(X[:1] is enough), from which skl2onnx takes the graph's input "
                         "names and types")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    target = None if path is None else check_output(path, "path")
    onx = pipeline_to_onnx(model, X, opset=opset, options=options, name=name)
    if target is not None:
        data = onx.SerializeToString()
        write_output(target, lambda fh: fh.write(data))
    return onx


def _fastnn_exports(model):
    """Whether fastnn's own exporter takes `model` (onnx_export.to_onnx)."""
    from fastnn.ensemble import MLPEnsemble
    from fastnn.nn.model import MLP
    return isinstance(model, (MLP, MLPEnsemble)) or \
        type(model).__module__ == "fastnn.interop.sklearn"


def _import_skl2onnx():
    try:
        import skl2onnx
    except ImportError as exc:
        raise ImportError(f"exporting a scikit-learn Pipeline needs skl2onnx ({exc}): "
                          'pip install "fastnn[onnx]" (onnx, onnxruntime and skl2onnx)') \
            from None
    return skl2onnx


def register():
    """Register fastnn's estimators with skl2onnx (idempotent; replaces an older
    registration): afterwards ``skl2onnx.to_onnx`` converts Pipelines and ColumnTransformers
    that contain them.  Returns the skl2onnx module.

    Raises
    ------
    ImportError
        skl2onnx (or scikit-learn) is missing: ``pip install "fastnn[onnx]"``.
    """
    skl2onnx = _import_skl2onnx()
    from fastnn.interop.sklearn import MLPClassifier, MLPRegressor
    from fastnn.interop.sklearn_ensemble import EnsembleClassifier, EnsembleRegressor
    # "zipmap" makes skl2onnx parse it as a classifier, with its ZipMap; "nocl": labels are
    # the class indices (skl2onnx's ZipMap asks every classifier for it)
    classifier_options = {"zipmap": [True, False, "columns"], "nocl": [False, True]}
    regressor_options = {"return_std": [False, True]}
    for cls, convert in ((MLPClassifier, _convert_classifier),
                         (EnsembleClassifier, _convert_ensemble_classifier)):
        skl2onnx.update_registered_converter(
            cls, ALIASES[cls.__module__, cls.__name__], _classifier_shapes, convert,
            options=classifier_options)
    for cls, convert in ((MLPRegressor, _convert_regressor),
                         (EnsembleRegressor, _convert_ensemble_regressor)):
        alias = ALIASES[cls.__module__, cls.__name__]
        skl2onnx.update_registered_converter(
            cls, alias, _regressor_shapes, convert, options=regressor_options,
            parser=_regressor_parser(alias))
    return skl2onnx


def pipeline_to_onnx(pipeline, X, *, opset=DEFAULT_OPSET, options=None, name=None):
    """``skl2onnx.to_onnx(pipeline, X, ...)`` after ``register()``, checked.

    Parameters
    ----------
    pipeline : a fitted scikit-learn estimator (Pipeline, ColumnTransformer, or a fastnn
        estimator alone) that skl2onnx can convert once fastnn's estimators are registered
    X : array-like or DataFrame
        A sample of the input (``X[:1]`` is enough): skl2onnx takes the graph's input names
        and types from it (a DataFrame gives one input per column).
    opset : int, default 17
        The default domain's opset (skl2onnx picks the matching ``ai.onnx.ml`` one).
    options : dict, optional
        skl2onnx's converter options, e.g. ``{id(clf): {"zipmap": False}}`` or
        ``{id(reg): {"return_std": True}}``.
    name : str, optional
        The graph's name.

    Returns
    -------
    onnx.ModelProto
        Passed ``onnx.checker.check_model``.
    """
    skl2onnx = register()
    import onnx
    onx = skl2onnx.to_onnx(pipeline, X, target_opset=opset, options=options, name=name)
    onnx.checker.check_model(onx)
    return onx


# ---------------------------------------------------------------------------- shapes


def _single_input(operator):
    if len(operator.inputs) != 1:
        raise RuntimeError(
            f"{type(operator.raw_operator).__name__} takes one input tensor (N, n_features); "
            f"skl2onnx gives it {len(operator.inputs)} ({[v.onnx_name for v in operator.inputs]}"
            "): put a ColumnTransformer in front to turn a table's columns into one matrix")
    return operator.inputs[0]


def _float_type(operator):
    """skl2onnx's convention for a model's real outputs: double after a double input, float
    otherwise (an integer input included)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    return DoubleTensorType if isinstance(_single_input(operator).type, DoubleTensorType) \
        else FloatTensorType


def _labels(est):
    """classes_ as skl2onnx presents labels: int64 or strings (an integer-valued float label
    becomes int64, as skl2onnx's ZipMap requires)."""
    labels = _label_tensor(est.classes_)
    if labels.dtype == np.float64:
        if not np.all(labels == np.round(labels)) or np.abs(labels).max() >= 2.0 ** 63:
            raise ValueError(f"classes_ {est.classes_!r} are floating-point values that are "
                             "not integers; skl2onnx's classifiers give int64 or string "
                             "labels: encode the classes as integers or strings")
        labels = labels.astype(np.int64)
    return labels


def _is_multilabel(est):
    return getattr(est, "_kind", None) == "multilabel"


def _no_class_labels(scope, est):
    """skl2onnx's option nocl: labels are the class indices 0 .. n_classes - 1."""
    nocl = scope.get_options(est, dict(nocl=False))["nocl"]
    if nocl and _is_multilabel(est):
        raise RuntimeError("option nocl=True is not implemented for a multi-label classifier "
                           "(its labels are already 0/1 columns)")
    return nocl


def _classifier_shapes(operator):
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType
    est = operator.raw_operator
    n = _single_input(operator).get_first_dimension()
    labels = _labels(est)
    if _no_class_labels(operator.scope_inst, est):
        labels = np.arange(len(labels))
    if _is_multilabel(est):
        label = Int64TensorType([n, len(labels)])
    else:
        label = (StringTensorType if labels.dtype == object else Int64TensorType)([n])
    operator.outputs[0].type = label
    operator.outputs[1].type = _float_type(operator)([n, len(labels)])
    zipmap = operator.scope_inst.get_options(est, dict(zipmap=True))["zipmap"]
    if zipmap is True and _float_type(operator).__name__ == "DoubleTensorType":
        # skl2onnx would write a graph that no runtime loads (as for its own classifiers)
        raise RuntimeError(
            f"{type(est).__name__} receives double values here, and skl2onnx's ZipMap (its "
            "default classifier output, a list of dicts) takes float probabilities only: pass a "
            "float32 sample (X[:1].astype(numpy.float32)), or the option "
            "{id(classifier): {'zipmap': False}} for label and probabilities tensors")


def _n_targets(est):
    if hasattr(est, "estimators_"):
        est = est.estimators_[0]
    return est.n_outputs_


def _regressor_shapes(operator):
    est = operator.raw_operator
    n = _single_input(operator).get_first_dimension()
    for out in operator.outputs:
        out.type = _float_type(operator)([n, _n_targets(est)])


def _regressor_parser(alias):
    """skl2onnx's parser for a regressor with an optional second output ``std`` (as its own
    BayesianRidge parser does)."""
    def parse(scope, model, inputs, custom_parsers=None):
        from skl2onnx.common.data_types import guess_tensor_type
        options = scope.get_options(model, dict(return_std=False))
        op = scope.declare_local_operator(alias, model)
        op.inputs = inputs
        names = ("variable", "std") if options["return_std"] else ("variable",)
        for out in names:
            op.outputs.append(scope.declare_local_variable(out, guess_tensor_type(
                inputs[0].type)))
        return op.outputs
    return parse


# ---------------------------------------------------------------------------- converters


def _elem(onnx_type):
    """The TensorProto element type of a skl2onnx tensor type."""
    from skl2onnx.common.data_types import guess_proto_type
    return guess_proto_type(onnx_type)


def _embed(scope, container, graph, x, outputs):
    """Copy the nodes and initializers of a fastnn ONNX graph (one input "X") into skl2onnx's
    container: its input reads tensor `x` (cast to the graph's element type when it has
    another), every other name becomes a fresh one, and each graph output named in
    `outputs` ({name: (target name, target element type or None)}) is written to its target
    (through a Cast where the element types differ)."""
    import onnx
    from skl2onnx.common.data_types import guess_proto_type
    (inp,) = graph.graph.input
    x_name, x_type = x
    rename = {}
    if guess_proto_type(x_type) != inp.type.tensor_type.elem_type:
        rename[inp.name] = scope.get_unique_variable_name("fastnn_input")
        container.add_node("Cast", [x_name], [rename[inp.name]],
                           name=scope.get_unique_operator_name("Cast"),
                           to=inp.type.tensor_type.elem_type)
    else:
        rename[inp.name] = x_name
    casts = []
    for out in graph.graph.output:
        if out.name not in outputs:
            continue
        target, elem = outputs[out.name]
        if elem is None or elem == out.type.tensor_type.elem_type:
            rename[out.name] = target
        else:
            rename[out.name] = scope.get_unique_variable_name(f"fastnn_{out.name}")
            casts.append((rename[out.name], target, elem))

    def fresh(name):
        if name not in rename:
            rename[name] = scope.get_unique_variable_name(f"fastnn_{name}")
        return rename[name]

    for init in graph.graph.initializer:
        content = list(init.string_data) if init.data_type == onnx.TensorProto.STRING else init
        container.add_initializer(fresh(init.name), init.data_type, list(init.dims), content)
    for node in graph.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        container.add_node(node.op_type, [fresh(n) for n in node.input],
                           [fresh(n) for n in node.output], op_domain=node.domain,
                           name=scope.get_unique_operator_name(node.op_type), **attrs)
    for source, target, elem in casts:
        container.add_node("Cast", [source], [target],
                           name=scope.get_unique_operator_name("Cast"), to=elem)


def _fastnn_graph(est, container):
    """fastnn's own export of the estimator, at the container's opset of the default domain."""
    opset = container.target_opset
    if isinstance(opset, dict):  # pragma: no cover - skl2onnx passes an int
        opset = opset.get("", DEFAULT_OPSET)
    return _export(est, opset=int(opset))


def _check_return_std(est, wanted):
    model = getattr(est, "model_", None)
    if wanted and model is not None and model._link_name() != "gaussian":
        raise ValueError("option return_std=True needs an MLPRegressor fitted with "
                         "loss='gaussian_nll' (the network's std); this one has "
                         f"loss={est.loss!r}")


def _convert_classifier(scope, operator, container):
    est = operator.raw_operator
    label, proba = operator.outputs
    x = _single_input(operator)
    graph = _fastnn_graph(est, container)
    if _no_class_labels(scope, est):   # the index of the largest probability
        _embed(scope, container, graph, (x.full_name, x.type),
               {"probabilities": (proba.full_name, _elem(proba.type))})
        _node(scope, container, "ArgMax", [proba.full_name], label.full_name, axis=1,
              keepdims=0)
        return
    label_elem = None
    if _labels(est).dtype != _label_tensor(est.classes_).dtype:
        label_elem = _elem(label.type)   # integer-valued float labels: int64, as skl2onnx
    _embed(scope, container, graph, (x.full_name, x.type),
           {"label": (label.full_name, label_elem),
            "probabilities": (proba.full_name, _elem(proba.type))})


def _convert_regressor(scope, operator, container):
    est = operator.raw_operator
    x = _single_input(operator)
    _check_return_std(est, len(operator.outputs) == 2)
    graph = _fastnn_graph(est, container)
    targets = {"variable": (operator.outputs[0].full_name, _elem(operator.outputs[0].type))}
    if len(operator.outputs) == 2:
        targets["std"] = (operator.outputs[1].full_name, _elem(operator.outputs[1].type))
    _embed(scope, container, graph, (x.full_name, x.type), targets)


def _member_outputs(scope, container, est, x, names):
    """Each member's graph embedded on input x; {name: [the members' tensors, as double]}."""
    import onnx
    double = onnx.TensorProto.DOUBLE
    out = {name: [] for name in names}
    for member in est.estimators_:
        targets = {name: (scope.get_unique_variable_name(f"member_{name}"), double)
                   for name in names}
        _embed(scope, container, _fastnn_graph(member, container), (x.full_name, x.type),
               targets)
        for name in names:
            out[name].append(targets[name][0])
    return out


def _node(scope, container, op, inputs, output=None, **attrs):
    output = output or scope.get_unique_variable_name(op.lower())
    container.add_node(op, list(inputs), [output], name=scope.get_unique_operator_name(op),
                       **attrs)
    return output


def _mean(scope, container, names, output=None):
    """The element-wise mean of double tensors, summed in member order then divided by the
    count (onnxruntime's Mean has no double kernel)."""
    total = names[0]
    for name in names[1:]:
        total = _node(scope, container, "Add", [total, name])
    count = scope.get_unique_variable_name("count")
    container.add_initializer(count, _double(), [], [float(len(names))])
    return _node(scope, container, "Div", [total, count], output)


def _double():
    import onnx
    return onnx.TensorProto.DOUBLE


def _cast(scope, container, name, target, elem):
    if elem == _double():
        return _node(scope, container, "Identity", [name], target)
    return _node(scope, container, "Cast", [name], target, to=elem)


def _convert_ensemble_classifier(scope, operator, container):
    """EnsembleClassifier: the mean of the members' probabilities (in double, as its
    predict_proba), its ArgMax's class (as its predict)."""
    est = operator.raw_operator
    label, proba = operator.outputs
    x = _single_input(operator)
    members = _member_outputs(scope, container, est, x, ["probabilities"])
    mean = _mean(scope, container, members["probabilities"])
    _cast(scope, container, mean, proba.full_name, _elem(proba.type))
    index = _node(scope, container, "ArgMax", [mean], axis=1, keepdims=0)
    if _no_class_labels(scope, est):
        _node(scope, container, "Identity", [index], label.full_name)
        return
    labels = _labels(est)
    classes = scope.get_unique_variable_name("classes")
    if labels.dtype == object:
        import onnx
        container.add_initializer(classes, onnx.TensorProto.STRING, [len(labels)],
                                  [s.encode("utf-8") for s in labels])
    else:
        import onnx
        container.add_initializer(classes, onnx.TensorProto.INT64, [len(labels)],
                                  labels.tolist())
    _node(scope, container, "Gather", [classes, index], label.full_name, axis=0)


def _convert_ensemble_regressor(scope, operator, container):
    """EnsembleRegressor: the mean of the members' predictions (in double, as its predict);
    with return_std, sqrt(mean sigma_k^2 + mean (mu_k - mu*)^2) for gaussian_nll members,
    the spread of the means otherwise."""
    est = operator.raw_operator
    x = _single_input(operator)
    want_std = len(operator.outputs) == 2
    learned = getattr(est.estimators_[0], "loss", None) == "gaussian_nll"
    names = ["variable", "std"] if want_std and learned else ["variable"]
    members = _member_outputs(scope, container, est, x, names)
    mean = _mean(scope, container, members["variable"])
    _cast(scope, container, mean, operator.outputs[0].full_name, _elem(operator.outputs[0].type))
    if not want_std:
        return
    squares = [_node(scope, container, "Mul", [d, d]) for d in
               (_node(scope, container, "Sub", [mu, mean]) for mu in members["variable"])]
    variance = _mean(scope, container, squares)
    if learned:
        aleatoric = _mean(scope, container, [_node(scope, container, "Mul", [s, s])
                                             for s in members["std"]])
        variance = _node(scope, container, "Add", [aleatoric, variance])
    std = _node(scope, container, "Sqrt", [variance])
    _cast(scope, container, std, operator.outputs[1].full_name, _elem(operator.outputs[1].type))
