"""ONNX export: run a fastnn model where Python is not (C++, C#, Java, the browser, a server).

``to_onnx(model, path)`` (or ``model.save_onnx(path)``) writes an ONNX graph that computes what
``predict`` computes, built with the ``onnx`` package's helpers and checked with
``onnx.checker.check_model`` before it is returned or written.  It needs the ``onnx`` package
(``pip install "fastnn[onnx]"``, which also brings onnxruntime to run the result); ``import
fastnn`` does not.

What the graph holds
--------------------
* Input ``X``: shape ``(N, n_inputs)`` with a symbolic batch dimension ``N``, element type the
  model's dtype (float32 -> ``tensor(float)``, float64 -> ``tensor(double)``).  Runtimes check
  the type: convert inputs to the model's dtype first (fastnn's ``predict`` converts for you).
* Each dense layer is one ``Gemm(H, W, b)``: fastnn's ``W`` already has the layout
  ``(n_in, n_out)`` that ``Gemm`` multiplies from the right, so the weights are stored as they
  are (bitwise), with no transpose.  Hidden activations: ``Relu``, ``Sigmoid``, ``Tanh``,
  the smooth ones composed from Exp/Log/Erf/Tanh/Sigmoid/Where (``_smooth_activation``; gelu
  in float32 only: onnxruntime has no float64 Erf)
  (identity adds no node) and leaky_relu as ``LeakyRelu(alpha=slope)`` in float32, but as
  ``PRelu(H, slope)`` with a float64 slope tensor in float64 (LeakyRelu's ``alpha`` attribute
  is a 32-bit float, which would round the slope).
* The output link, as ``MLP.predict`` applies it:

  ================  ===========================================  ===========================
  link              nodes                                        outputs
  ================  ===========================================  ===========================
  identity          none                                         ``predictions`` (N, k)
  exp (Poisson)     ``Exp``                                      ``predictions`` (N, k)
  sigmoid           ``Sigmoid``                                  ``probabilities`` (N, k)
  softmax           ``Softmax(axis=1)``                          ``probabilities`` (N, k)
  gaussian          ``Slice`` into mean and log-variance s,      ``mean`` (N, k),
  (learned sigma)   ``std = Exp(0.5 s)``                         ``std`` (N, k)
  ================  ===========================================  ===========================

* The estimators of ``fastnn.sklearn``, as scikit-learn's ONNX converter (skl2onnx) presents
  its ``MLPClassifier``/``MLPRegressor`` with ``zipmap=False``:

  - ``MLPClassifier``: ``label`` (N,) holding the values of ``classes_`` (int64 for integer or
    bool labels, double for floating-point labels, string for strings) from ``ArgMax`` over
    the probabilities, exactly as ``predict`` takes ``argmax`` of ``predict_proba``; and
    ``probabilities`` (N, n_classes), columns in the order of ``classes_`` (a binary classifier
    gives ``[1 - p, p]`` as ``[Sigmoid(-z), Sigmoid(z)]``).  A multi-label classifier gives
    ``label`` (N, n_labels) int64 0/1 (``p > 0.5``) and ``probabilities`` (N, n_labels).
    ``probabilities`` is a plain tensor, not skl2onnx's default ZipMap (a sequence of maps,
    slower, and only needed to carry the class names, which ``label`` already does).
  - ``MLPRegressor``: ``variable`` (N, n_targets) (skl2onnx's name and shape; ``predict``
    returns (N,) for one target), plus ``std`` (N, n_targets) for ``loss="gaussian_nll"``.

  The probabilities and predictions are in the model's dtype (the estimators' ``predict``
  returns float64 copies of the same float32 values).
* ``metadata_props``: ``layer_sizes``, ``activations`` (hidden layers), ``output_link`` and
  ``dtype`` of the network, for the code that deploys it.
* Standardization of the inputs is not part of a fastnn model yet: scale inputs outside the
  graph as you did for training (a scikit-learn ``StandardScaler`` in front of the estimator is
  not exported).

Opset 17 (ONNX 1.12, onnxruntime >= 1.13) and IR version 8 by default, so that older runtimes
load the file; every operator used runs in float32 and float64 in onnxruntime's CPU provider.
"""
import os

import numpy as np

from fastnn.io import _atomic_write
from fastnn.model import MLP

__all__ = ["to_onnx", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17
#: the oldest opset whose Softmax normalizes along one axis and whose Slice takes inputs
MIN_OPSET = 13
_ACTIVATION_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def _import_onnx():
    try:
        import onnx
        from onnx import checker, helper, numpy_helper  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the onnx package ({exc}): "
                          'pip install "fastnn[onnx]" (onnx, and onnxruntime to run the '
                          "exported model)") from None
    return onnx


def _leaky_slope(layer):
    """The leaky_relu slope of a ``fastnn.Dense`` layer (one place reads the attribute)."""
    return float(layer.alpha)


class _Graph:
    """Nodes and initializers of one graph, with unique names."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.elem_type = onnx.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes = []
        self.initializers = []
        self._count = 0

    def name(self, stem):
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem, array):
        name = self.name(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, output=None, stem=None, **attrs):
        output = output or self.name(stem or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [output],
                                                     name=self.name(op), **attrs))
        return output


def _mlp_logits(g, model, x):
    """Gemm + activation per layer; returns the name of the logits (N, n_outputs).

    Dropout is the identity at inference, so it adds no node.
    """
    h = x
    for k, layer in enumerate(model.layers):
        if layer.normalization:
            raise ValueError(f"layer {k} has normalization={layer.normalization!r}; to_onnx "
                             "does not export layer normalization yet")
        # W (n_in, n_out) is Gemm's B as it is: H @ W + b, fastnn's own row-major layout
        w = g.const(f"W{k}", np.array(layer.W, dtype=g.dtype, copy=True))
        b = g.const(f"b{k}", np.array(layer.b, dtype=g.dtype, copy=True))
        h = g.node("Gemm", [h, w, b], stem=f"z{k}")
        if layer.activation == "identity":
            continue
        if layer.activation in _SMOOTH:
            h = _smooth_activation(g, layer, h, k)
        elif layer.activation != "leaky_relu":
            h = g.node(_ACTIVATION_OPS[layer.activation], [h], stem=f"a{k}")
        elif g.dtype == np.float32:
            # the kernels multiply by the slope rounded to the model's dtype: in float32 that
            # is exactly LeakyRelu's 32-bit float attribute
            h = g.node("LeakyRelu", [h], stem=f"a{k}", alpha=_leaky_slope(layer))
        else:
            # LeakyRelu's alpha is a 32-bit attribute (0.01 would become 0.009999999776);
            # PRelu takes the slope as a float64 tensor and computes the same x < 0 ? s x : x
            slope = g.const(f"slope{k}", np.array(_leaky_slope(layer), np.float64))
            h = g.node("PRelu", [h, slope], stem=f"a{k}")
    return h


_SMOOTH = ("elu", "selu", "gelu", "gelu_tanh", "silu", "softplus")


def _smooth_activation(g, layer, h, k):
    """The smooth activations from opset-13 operators, constants in the model's dtype.

    ONNX's own Elu/Selu take 32-bit float attributes (inexact for a float64 model) and Gelu
    needs opset 20, so they are composed: elu = Where(h > 0, h, alpha (Exp(h) - 1)), selu its
    multiple, gelu = h (1 + Erf(h / sqrt 2)) / 2, gelu_tanh = h (1 + Tanh(c (h + 0.044715
    h^3))) / 2, silu = h Sigmoid(h), softplus = Relu(h) + Log(1 + Exp(-|h|)) (onnxruntime
    has no float64 Softplus or Erf: gelu is exported for float32 models only).
    """
    c = lambda stem, v: g.const(f"{stem}{k}", np.array(v, dtype=g.dtype))  # noqa: E731
    act = layer.activation
    if act == "softplus":   # max(h, 0) + log(1 + exp(-|h|)): onnxruntime has no double Softplus
        e = g.node("Exp", [g.node("Neg", [g.node("Abs", [h])])])
        tail = g.node("Log", [g.node("Add", [c("one", 1.0), e])])
        return g.node("Add", [g.node("Relu", [h]), tail], stem=f"a{k}")
    if act == "silu":
        return g.node("Mul", [h, g.node("Sigmoid", [h])], stem=f"a{k}")
    if act in ("elu", "selu"):
        alpha = float(layer.alpha) if act == "elu" else 1.6732632423543772848170429916717
        neg = g.node("Mul", [c("alpha", alpha),
                             g.node("Sub", [g.node("Exp", [h]), c("one", 1.0)])])
        out = g.node("Where", [g.node("Greater", [h, c("zero", 0.0)]), h, neg])
        if act == "selu":
            out = g.node("Mul", [c("scale", 1.0507009873554804934193349852946), out])
        return out
    if act == "gelu":
        if g.dtype == np.float64:
            raise ValueError(f"layer {k} is gelu in a float64 model: onnxruntime has no "
                             "float64 Erf, so the graph could not run; export a float32 model "
                             "(model.astype(numpy.float32)) or use gelu_tanh")
        inner = g.node("Erf", [g.node("Mul", [h, c("rsqrt2", 0.7071067811865476)])])
    else:
        cube = g.node("Mul", [h, g.node("Mul", [h, h])])
        u = g.node("Mul", [c("k", 0.7978845608028654),
                           g.node("Add", [h, g.node("Mul", [c("c3", 0.044715), cube])])])
        inner = g.node("Tanh", [u])
    half = g.node("Mul", [c("half", 0.5), h])
    return g.node("Mul", [half, g.node("Add", [c("one", 1.0), inner])], stem=f"a{k}")


def _gaussian_split(g, z, n_out, mean_name, std_name):
    """Mean columns [0, k) and std = exp(s / 2) from the log-variance columns [k, 2k)."""
    k = n_out // 2
    axes = g.const("axes", np.array([1], np.int64))
    mean = g.node("Slice", [z, g.const("starts", np.array([0], np.int64)),
                            g.const("ends", np.array([k], np.int64)), axes], mean_name)
    s = g.node("Slice", [z, g.const("starts", np.array([k], np.int64)),
                         g.const("ends", np.array([2 * k], np.int64)), axes], stem="logvar")
    half = g.node("Mul", [s, g.const("half", np.array(0.5, g.dtype))], stem="half_logvar")
    std = g.node("Exp", [half], std_name)
    return mean, std


def _mlp_outputs(g, model, z):
    """The output link of ``MLP.predict``; returns [(name, width)] of the graph outputs."""
    link, n_out = model._link_name(), model.n_outputs
    if link == "identity":
        return [(g.node("Identity", [z], "predictions"), n_out)]
    if link == "exp":
        return [(g.node("Exp", [z], "predictions"), n_out)]
    if link == "sigmoid":
        return [(g.node("Sigmoid", [z], "probabilities"), n_out)]
    if link == "softmax":
        return [(g.node("Softmax", [z], "probabilities", axis=1), n_out)]
    if link == "gaussian":
        mean, std = _gaussian_split(g, z, n_out, "mean", "std")
        return [(mean, n_out // 2), (std, n_out // 2)]
    raise ValueError(f"output link {link!r} has no ONNX export")  # pragma: no cover


def _label_tensor(classes):
    """classes_ as a constant that Gather can index: int64, double or string."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biu":
        if classes.dtype.kind == "u" and classes.size and classes.max() > np.iinfo(np.int64).max:
            raise ValueError(f"classes_ has labels above the int64 range (max "
                             f"{classes.max()}); ONNX labels are int64")
        return classes.astype(np.int64)
    if classes.dtype.kind == "f":
        return classes.astype(np.float64)
    if classes.dtype.kind in "US" or (classes.dtype.kind == "O" and
                                      all(isinstance(c, str) for c in classes)):
        return np.array([str(c) for c in classes], dtype=object)
    raise TypeError(f"classes_ has dtype {classes.dtype} (first label {classes[0]!r}); ONNX "
                    "export supports integer, bool, floating-point and string labels")


def _classifier_outputs(g, est, z):
    model, classes = est.model_, np.asarray(est.classes_)
    n_out = model.n_outputs
    if est.out_activation_ == "softmax":
        proba = g.node("Softmax", [z], "probabilities", axis=1)
    elif n_out == 1 and len(classes) == 2:  # binary: one logit, columns [1 - p, p]
        p0 = g.node("Sigmoid", [g.node("Neg", [z], stem="neg_logit")], stem="p0")
        p1 = g.node("Sigmoid", [z], stem="p1")
        proba = g.node("Concat", [p0, p1], "probabilities", axis=1)
    elif n_out == len(classes):  # multi-label: one independent probability per label
        proba = g.node("Sigmoid", [z], "probabilities")
        above = g.node("Greater", [proba, g.const("threshold", np.array(0.5, g.dtype))],
                       stem="above")
        label = g.node("Cast", [above], "label", to=g.onnx.TensorProto.INT64)
        return [(label, n_out, g.onnx.TensorProto.INT64), (proba, n_out, g.elem_type)]
    else:
        raise ValueError(f"the classifier has {n_out} network outputs, {len(classes)} classes "
                         f"and out_activation_={est.out_activation_!r}; expected softmax, a "
                         "binary or a multi-label classifier")
    labels = _label_tensor(classes)
    index = g.node("ArgMax", [proba], stem="class_index", axis=1, keepdims=0)
    label = g.node("Gather", [g.const("classes", labels), index], "label", axis=0)
    elem = g.onnx.helper.np_dtype_to_tensor_dtype(labels.dtype) \
        if labels.dtype != object else g.onnx.TensorProto.STRING
    return [(label, None, elem), (proba, len(classes), g.elem_type)]


def _regressor_outputs(g, est, z):
    model = est.model_
    if model._link_name() == "gaussian":
        mean, std = _gaussian_split(g, z, model.n_outputs, "variable", "std")
        return [(mean, model.n_outputs // 2), (std, model.n_outputs // 2)]
    (out, width), = _mlp_outputs(g, model, z)
    return [(g.node("Identity", [out], "variable"), width)]


def _resolve(obj):
    """(the MLP, the estimator or None) for a model or a fitted fastnn.sklearn estimator."""
    if isinstance(obj, MLP):
        return obj, None
    if type(obj).__module__ == "fastnn.sklearn" and hasattr(obj, "fit"):
        model = getattr(obj, "model_", None)
        if not isinstance(model, MLP):
            raise ValueError(f"this {type(obj).__name__} is not fitted yet; call fit before "
                             "exporting it")
        return model, obj
    raise TypeError(f"model must be a fastnn.MLP or a fitted fastnn.sklearn estimator; got "
                    f"{type(obj).__name__}")


def _check_opset(opset, onnx):
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an int; got {type(opset).__name__}")
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset={opset}; expected {MIN_OPSET} <= opset <= {newest} (the "
                         f"newest the installed onnx {onnx.__version__} knows)")
    return int(opset)


def to_onnx(model, path=None, *, opset=DEFAULT_OPSET, name=None):
    """Export a fastnn model or a fitted fastnn.sklearn estimator to ONNX.

    Parameters
    ----------
    model : fastnn.MLP, fastnn.sklearn.MLPClassifier or fastnn.sklearn.MLPRegressor
        A fitted estimator (its network is ``model_``).  The graph computes ``predict`` (and
        ``predict_std`` / ``predict_proba`` where the model has them): see the module
        docstring for the inputs, nodes and outputs.
    path : str or os.PathLike, optional
        Where to write the model (``.onnx`` by convention; written as given, atomically as
        ``MLP.save`` writes).  Without it, nothing is written.
    opset : int, default 17
        ONNX operator set of the default domain, between 13 and the newest one the installed
        onnx package knows.
    name : str, optional
        The graph's name (default: the model's class name).

    Returns
    -------
    onnx.ModelProto
        The checked model (``onnx.checker.check_model`` passed).

    Raises
    ------
    ImportError
        When the onnx package is missing (``pip install "fastnn[onnx]"``).
    TypeError
        `model` is neither an MLP nor a fastnn.sklearn estimator; `path`, `opset` or `name` of
        the wrong type.
    ValueError
        An unfitted estimator; an opset out of range.
    OSError
        `path` cannot be written: FileNotFoundError naming a missing directory,
        PermissionError; an existing file at `path` is then left as it was.

    Examples
    --------
    >>> model.save_onnx("model.onnx")                          # doctest: +SKIP
    >>> import onnxruntime as ort                              # doctest: +SKIP
    >>> sess = ort.InferenceSession("model.onnx")              # doctest: +SKIP
    >>> proba, = sess.run(None, {"X": X.astype(np.float32)})   # doctest: +SKIP
    """
    mlp, estimator = _resolve(model)
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}")
    onnx = _import_onnx()
    opset = _check_opset(opset, onnx)
    helper = onnx.helper

    g = _Graph(onnx, mlp.dtype)
    z = _mlp_logits(g, mlp, "X")
    if estimator is None:
        outputs = [(out, width, g.elem_type) for out, width in _mlp_outputs(g, mlp, z)]
    elif hasattr(estimator, "classes_"):
        outputs = _classifier_outputs(g, estimator, z)
    else:
        outputs = [(out, width, g.elem_type) for out, width in _regressor_outputs(g, estimator, z)]

    graph = helper.make_graph(
        g.nodes, name or type(model).__name__,
        [helper.make_tensor_value_info("X", g.elem_type, ["N", mlp.n_inputs])],
        [helper.make_tensor_value_info(out, elem, ["N"] if width is None else ["N", width])
         for out, width, elem in outputs],
        initializer=g.initializers)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                   producer_name="fastnn", producer_version=_version(),
                                   ir_version=_ir_for(onnx, opset))
    onnx_model.doc_string = repr(mlp)
    helper.set_model_props(onnx_model, {
        "layer_sizes": ",".join(map(str, mlp.layer_sizes)),
        "activations": ",".join(layer.activation for layer in mlp.layers[:-1]),
        "output_link": mlp._link_name(), "dtype": mlp.dtype.name})
    onnx.checker.check_model(onnx_model, full_check=True)
    if path is not None:
        # written like MLP.save: a temporary file beside the target, fsynced, then renamed
        # over it, so a failed or interrupted export never leaves a partial file
        data = onnx_model.SerializeToString()
        _atomic_write(path, lambda fh: fh.write(data))
    return onnx_model


def _ir_for(onnx, opset):
    """The IR version of the onnx release that introduced `opset` (8 for opset 17)."""
    for row in onnx.helper.VERSION_TABLE:  # (release, IR version, ai.onnx opset, ...)
        if row[2] == opset:
            return row[1]
    return onnx.IR_VERSION  # pragma: no cover - every opset is in the table


def _version():
    from fastnn._version import __version__  # not the package's __init__, which imports us
    return __version__
