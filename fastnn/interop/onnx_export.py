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
  are (bitwise), with no transpose.  Hidden activations: ``Relu``, ``Tanh``, sigmoid as
  ``_sigmoid`` composes it (onnxruntime's ``Sigmoid`` loses the relative accuracy of small
  values), the smooth ones composed from Exp/Log/Where and arithmetic
  (``_smooth_activation``; gelu's normal CDF by Cody's erfc approximations as in the kernel:
  onnxruntime has no float64 Erf)
  (identity adds no node) and leaky_relu as ``LeakyRelu(alpha=slope)`` in float32, but as
  ``Where(H < 0, slope H, H)`` with a float64 slope tensor in float64 (LeakyRelu's ``alpha``
  attribute is a 32-bit float, which would round the slope, and onnxruntime has a float64
  ``PRelu`` at opsets 16-18 only).
* The output link, as ``MLP.predict`` applies it:

  ================  ===========================================  ===========================
  link              nodes                                        outputs
  ================  ===========================================  ===========================
  identity          none                                         ``predictions`` (N, k)
  exp (Poisson)     ``Exp``                                      ``predictions`` (N, k)
  sigmoid           ``_sigmoid`` (Exp, Where)                    ``probabilities`` (N, k)
  softmax           ``Softmax(axis=1)``                          ``probabilities`` (N, k)
  gaussian          ``Slice`` into mean and log-variance s,      ``mean`` (N, k),
  (learned sigma)   ``std = Exp(0.5 s)``                         ``std`` (N, k)
  ================  ===========================================  ===========================

* The estimators of ``fastnn.interop.sklearn``, as scikit-learn's ONNX converter (skl2onnx) presents
  its ``MLPClassifier``/``MLPRegressor`` with ``zipmap=False``:

  - ``MLPClassifier``: ``label`` (N,) holding the values of ``classes_`` (int64 for integer or
    bool labels, double for floating-point labels, string for strings) from ``ArgMax`` over
    the probabilities, exactly as ``predict`` takes ``argmax`` of ``predict_proba``; and
    ``probabilities`` (N, n_classes), columns in the order of ``classes_`` (a binary classifier
    gives ``[1 - p, p]`` as ``[sigmoid(-z), sigmoid(z)]``).  A multi-label classifier gives
    ``label`` (N, n_labels) int64 0/1 (``p > 0.5``) and ``probabilities`` (N, n_labels).
    ``probabilities`` is a plain tensor, not skl2onnx's default ZipMap (a sequence of maps,
    slower, and only needed to carry the class names, which ``label`` already does).
  - ``MLPRegressor``: ``variable`` (N, n_targets) (skl2onnx's name and shape; ``predict``
    returns (N,) for one target), plus ``std`` (N, n_targets) for ``loss="gaussian_nll"``.

  The probabilities and predictions are in the model's dtype (the estimators' ``predict``
  returns float64 copies of the same float32 values).
* ``metadata_props``: ``layer_sizes``, ``activations`` (hidden layers), ``output_link`` and
  ``dtype`` of the network, for the code that deploys it.
* A model trained by ``fastnn train`` on a table carries its preprocessing
  (``model.preprocessor_``): the graph applies it as ``fastnn predict`` does, its nodes built
  from the same definition (``Preprocessor.input_steps``/``output_steps``) in the same
  precision, float64.  X is then ``tensor(double)`` whatever the model's dtype and holds the
  feature columns in ``preprocessor_.feature_names`` order, in the table's units; NaN cells
  take the stored fill values when the model was trained with ``--impute``; then
  ``(x - x_mean) / x_scale`` and a Cast to the model's dtype; a regression's
  ``predictions``/``mean`` come back (Cast to float64) as ``y * y_scale + y_mean`` and its
  ``std`` as ``std * y_scale``, float64 outputs as ``fastnn predict`` writes them (in the
  model's float32 a column of 1e8 +- 3 standardised to noise).  A model whose table had
  text, boolean or date columns takes one input per column instead of X, named as the
  column, (N, 1): ``tensor(string)`` for a category (one-hot through
  ``ai.onnx.ml.LabelEncoder``; an unseen level or missing cell gives zeros) and
  ``tensor(double)`` for a number or a date (days since 1970-01-01)
  (fastnn.interop.onnx_tables, whose ``onnx_feeds`` builds them from a table).  Other
  models have no stored standardization: scale inputs outside the graph as you did for
  training, or export the scikit-learn Pipeline around the estimator
  (``fastnn.to_onnx(pipeline, path, X=...)``, fastnn.interop.onnx_pipeline: skl2onnx with
  this module's graphs).

Opset 17 (ONNX 1.12, onnxruntime >= 1.13) and IR version 8 by default, so that older runtimes
load the file; every operator used runs in float32 and float64 in onnxruntime's CPU provider.
"""
import os

import numpy as np

from fastnn.runtime.state import consistent
from fastnn._validation import all_finite
from fastnn.nn.model import MLP
from fastnn.io.tabular import PRECISION
from fastnn.interop.onnx_tables import ML_DOMAIN, ML_OPSET, encoded_columns, encodes_columns
from fastnn.io.writer import check_output, write_output

__all__ = ["to_onnx", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17
#: the oldest opset whose Softmax normalizes along one axis and whose Slice takes inputs
MIN_OPSET = 13
_ACTIVATION_OPS = {"tanh": "Tanh", "relu": "Relu"}   # sigmoid: _sigmoid


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
    return float(layer.negative_slope)


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

    Dropout is the identity at inference, so it adds no node; a layer with normalization="layer"
    normalizes Gemm's output (``_layer_norm``) before its activation.
    """
    h = x
    for k, layer in enumerate(model.layers):
        # W (n_in, n_out) is Gemm's B as it is: H @ W + b, fastnn's own row-major layout
        w = g.const(f"W{k}", np.array(layer.W, dtype=g.dtype, copy=True))
        b = g.const(f"b{k}", np.array(layer.b, dtype=g.dtype, copy=True))
        h = g.node("Gemm", [h, w, b], stem=f"z{k}")
        if layer.normalization:
            h = _layer_norm(g, h, layer, k)
        if layer.activation == "identity":
            continue
        if layer.activation in _SMOOTH:
            h = _smooth_activation(g, layer, h, k)
        elif layer.activation == "sigmoid":
            h = _sigmoid(g, h, stem=f"a{k}")
        elif layer.activation != "leaky_relu":
            h = g.node(_ACTIVATION_OPS[layer.activation], [h], stem=f"a{k}")
        elif g.dtype == np.float32:
            # the kernels multiply by the slope rounded to the model's dtype: in float32 that
            # is exactly LeakyRelu's 32-bit float attribute
            h = g.node("LeakyRelu", [h], stem=f"a{k}", alpha=_leaky_slope(layer))
        else:
            # LeakyRelu's alpha is a 32-bit attribute (0.01 would become 0.009999999776), and
            # onnxruntime runs a float64 PRelu only at opsets 16-18 (not 13-15 nor 19+): the
            # kernel's own h < 0 ? s h : h, with a float64 slope
            slope = g.const(f"slope{k}", np.array(_leaky_slope(layer), np.float64))
            negative = g.node("Less", [h, g.const("zero", np.zeros((), np.float64))])
            h = g.node("Where", [negative, g.node("Mul", [slope, h]), h], stem=f"a{k}")
    return h


_SMOOTH = ("elu", "selu", "gelu", "gelu_tanh", "silu", "softplus")


def _reduce(g, op, x):
    """ReduceSum or ReduceMax over axis 1, kept as (N, 1): the axes became an input in opset
    13 for ReduceSum, in opset 18 for the others."""
    if op == "ReduceSum" or g.opset >= 18:
        return g.node(op, [x, g.const("axes", np.array([1], np.int64))], keepdims=1)
    return g.node(op, [x], axes=[1], keepdims=1)


def _cast(g, x, source, target):
    """x, a tensor of dtype `source`, as `target` (no node when they are the same)."""
    if np.dtype(source) == np.dtype(target):
        return x
    return g.node("Cast", [x], to=g.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(target)))


#: src_c/fastnn_layernorm.h: FNN_LAYERNORM_EPS and FNN_LN_BIG
_LAYERNORM_EPS = 1e-5


def _layer_norm(g, z, layer, k):
    """fastnn's layer normalization (src_c/fastnn_layernorm.h) of the pre-activation z:
    gain (z - mu) / sqrt(var + 1e-5) + shift, mu and var (the biased variance, two-pass) per
    sample over the layer's units, in the kernel's form: sums over the units divided by
    their count, the square root in double; and its overflow guard: a row whose sum of
    squared deviations is not <= the dtype's largest value (|z - mu| > 1.8e19 in float32)
    is normalized as z / s, s = max_j |z_j|, with the reciprocal standard deviation
    1 / (s sqrt(var(z/s) + eps / s^2)) in double (``layernorm_row_scaled``).  Without the
    guard such a row came out of the graph as NaN or as the shift alone, where predict gives
    the normalized row.  Both forms are computed, a Where picks each row's, as the kernel
    branches.  Composed from reductions and arithmetic rather than LayerNormalization
    (opset 17), whose float64 support varies between runtimes."""
    cols = g.const("units", np.array(layer.n_out, g.dtype))
    eps = g.const("eps", np.array(_LAYERNORM_EPS, np.float64))
    mu = g.node("Div", [_reduce(g, "ReduceSum", z), cols])
    centered = g.node("Sub", [z, mu])
    sum_sq = _reduce(g, "ReduceSum", g.node("Mul", [centered, centered]))
    var = _cast(g, g.node("Div", [sum_sq, cols]), g.dtype, np.float64)
    rstd = g.node("Reciprocal", [_cast(g, g.node("Sqrt", [g.node("Add", [var, eps])]),
                                       np.float64, g.dtype)])
    plain = g.node("Mul", [centered, rstd])
    # the guarded form, for the rows whose sum of squares overflowed (or is NaN)
    big = g.node("Not", [g.node("LessOrEqual", [sum_sq, g.const(
        "big", np.array(np.finfo(g.dtype).max, g.dtype))])], stem="overflowed")
    s = _reduce(g, "ReduceMax", g.node("Abs", [z]))
    zs = g.node("Div", [z, s])
    cs = g.node("Sub", [zs, g.node("Div", [_reduce(g, "ReduceSum", zs), cols])])
    m2 = _cast(g, g.node("Div", [_reduce(g, "ReduceSum", g.node("Mul", [cs, cs])), cols]),
               g.dtype, np.float64)
    sd = _cast(g, s, g.dtype, np.float64)
    r = g.node("Reciprocal", [g.node("Mul", [sd, g.node("Sqrt", [g.node("Add", [
        m2, g.node("Div", [eps, g.node("Mul", [sd, sd])])])])])])
    scaled = g.node("Mul", [cs, _cast(g, g.node("Mul", [sd, r]), np.float64, g.dtype)])
    xhat = g.node("Where", [big, scaled, plain], stem=f"xhat{k}")
    gain = g.const(f"gain{k}", np.array(layer.gain, dtype=g.dtype, copy=True))
    shift = g.const(f"shift{k}", np.array(layer.shift, dtype=g.dtype, copy=True))
    return g.node("Add", [g.node("Mul", [xhat, gain]), shift], stem=f"y{k}")


def _smooth_activation(g, layer, h, k):
    """The smooth activations from opset-13 operators, constants in the model's dtype.

    ONNX's own Elu/Selu take 32-bit float attributes (inexact for a float64 model) and Gelu
    needs opset 20, so they are composed, mirroring the kernels of src_c/fastnn_kernels.h:
    gelu = h Phi(h) (``_ndtr``: erfc by Cody's approximations; onnxruntime has no float64
    Erf), elu = Where(h > 0, h, alpha expm1(h)), selu its multiple, gelu_tanh =
    h sigmoid(2 c (h + 0.044715 h^3)) (= h (1 + tanh(c (...))) / 2 without its cancellation
    for h << 0), silu = h sigmoid(h) (``_sigmoid``), softplus = Relu(h) + log1p(Exp(-|h|))
    (``_expm1``, ``_log1p``: accurate near 0, where the plain forms cancel; onnxruntime has
    no float64 Softplus).
    """
    c = lambda stem, v: g.const(f"{stem}{k}", np.array(v, dtype=g.dtype))  # noqa: E731
    act = layer.activation
    if act == "softplus":   # max(h, 0) + log1p(exp(-|h|)): onnxruntime has no double Softplus
        e = g.node("Exp", [g.node("Neg", [g.node("Abs", [h])])])
        return g.node("Add", [g.node("Relu", [h]), _log1p(g, e, c("one", 1.0))], stem=f"a{k}")
    if act == "silu":
        return g.node("Mul", [h, _sigmoid(g, h)], stem=f"a{k}")
    if act in ("elu", "selu"):
        alpha = float(layer.alpha) if act == "elu" else 1.6732632423543772848170429916717
        neg = g.node("Mul", [c("alpha", alpha), _expm1(g, h, c("one", 1.0))])
        out = g.node("Where", [g.node("Greater", [h, c("zero", 0.0)]), h, neg])
        if act == "selu":
            out = g.node("Mul", [c("scale", 1.0507009873554804934193349852946), out])
        return out
    if act == "gelu":
        return g.node("Mul", [h, _ndtr(g, h)], stem=f"a{k}")
    else:
        # (1 + tanh u) / 2 = sigmoid(2u), as the kernel computes it: 1 + Tanh(u) cancels to 0
        # for h << 0 (gave 0 for gelu_tanh(-5.5) = -5.6e-9 in float32)
        # 0.044715 h h h in the kernel's order: exp(2u) amplifies a rounding difference in
        # the cubic term by 2u (a relative error of 8e-6 at gelu_tanh(-9) in another order)
        cubic = g.node("Mul", [g.node("Mul", [g.node("Mul", [c("c3", 0.044715), h]), h]), h])
        u2 = g.node("Mul", [c("k2", 1.5957691216057307117), g.node("Add", [h, cubic])])
        return g.node("Mul", [h, _sigmoid(g, u2)], stem=f"a{k}")


def _log1p(g, x, one):
    """log(1 + x) without losing x where 1 + x rounds (ONNX has no Log1p): u = 1 + x, then
    x where u == 1, else Log(u) x / (u - 1), which cancels u's rounding error (Goldberg,
    "What every computer scientist should know about floating-point arithmetic", thm. 4).
    Log(1 + x) alone gave 0 for softplus(-20) = 2e-9 in float32."""
    u = g.node("Add", [one, x])
    um1 = g.node("Sub", [u, one])
    ratio = g.node("Div", [g.node("Mul", [g.node("Log", [u]), x]), um1])
    return g.node("Where", [g.node("Equal", [um1, g.const("zero", np.zeros((), g.dtype))]),
                            x, ratio])


def _expm1(g, x, one):
    """exp(x) - 1 without cancellation near 0 (ONNX has no Expm1), by Kahan's trick: u =
    Exp(x); x where u == 1, -1 where u - 1 == -1 (Log of a subnormal u is inexact), else
    (u - 1) x / Log(u).  Exp(x) - 1 alone was 0 for elu(-1e-8) in float32.  (A large x > 0
    gives NaN here; the callers select x there.)"""
    u = g.node("Exp", [x])
    um1 = g.node("Sub", [u, one])
    ratio = g.node("Div", [g.node("Mul", [um1, x]), g.node("Log", [u])])
    zero = g.const("zero", np.zeros((), g.dtype))
    minus_one = g.const("minus_one", np.array(-1.0, g.dtype))
    inner = g.node("Where", [g.node("Equal", [um1, minus_one]), minus_one, ratio])
    return g.node("Where", [g.node("Equal", [um1, zero]), x, inner])


# W. J. Cody's rational approximations of erf/erfc (CALERF), as src_c/fastnn_kernels.h
# evaluates them: (numerator coefficients, denominator coefficients), highest power first
_CODY_ERF = ((1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
              3.77485237685302021e02, 3.20937758913846947e03),
             (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
              2.84423683343917062e03))
_CODY_ERFC_MID = ((2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
                   6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
                   1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03),
                  (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
                   1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
                   3.43936767414372164e03, 1.23033935480374942e03))
_CODY_ERFC_TAIL = ((1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
                    1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4),
                   (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
                    6.05183413124413191e-2, 2.33520497626869185e-3))


def _ratio(g, x, coefs):
    """num(x) / den(x) in the kernel's Horner order: num = c0 x; num = (num + c_i) x ...;
    the last numerator coefficient is added without a product; den is monic likewise."""
    num_c, den_c = coefs
    cst = lambda v: g.const("c", np.array(v, g.dtype))  # noqa: E731
    num = g.node("Mul", [cst(num_c[0]), x])
    den = x
    for i in range(1, len(num_c) - 1):
        num = g.node("Mul", [g.node("Add", [num, cst(num_c[i])]), x])
        den = g.node("Mul", [g.node("Add", [den, cst(den_c[i - 1])]), x])
    return g.node("Div", [g.node("Add", [num, cst(num_c[-1])]),
                          g.node("Add", [den, cst(den_c[-1])])])


def _ndtr(g, h):
    """Phi(h), the standard normal CDF, as the kernel computes it (src_c/fastnn_kernels.h):
    erfc(a), a = |h| / sqrt 2, by Cody's three rational approximations, selected with Where,
    and Phi = 1 - erfc(a) / 2 for h > 0.  Composed: onnxruntime has no float64 Erf, and
    because 1 + Erf(h / sqrt 2) cancels to 0 for h << 0 (gelu(-6) = -6.8e-9 came out 0)."""
    cst = lambda v: g.const("c", np.array(v, g.dtype))  # noqa: E731
    a = g.node("Mul", [g.node("Abs", [h]), cst(0.70710678118654752440)])
    a2 = g.node("Mul", [a, a])
    e = g.node("Exp", [g.node("Neg", [a2])])
    one = cst(1.0)
    c1 = g.node("Sub", [one, g.node("Mul", [a, _ratio(g, a2, _CODY_ERF)])])
    c2 = g.node("Mul", [e, _ratio(g, a, _CODY_ERFC_MID)])
    a3 = g.node("Max", [a, cst(4.0)])
    y = g.node("Reciprocal", [g.node("Mul", [a3, a3])])
    tail = g.node("Mul", [y, _ratio(g, y, _CODY_ERFC_TAIL)])
    c3 = g.node("Mul", [e, g.node("Div", [g.node("Sub", [cst(0.56418958354775628695), tail]),
                                          a3])])
    c = g.node("Where", [g.node("LessOrEqual", [a, cst(0.46875)]), c1,
                         g.node("Where", [g.node("LessOrEqual", [a, cst(4.0)]), c2, c3])])
    half = g.node("Mul", [cst(0.5), c])
    return g.node("Where", [g.node("Greater", [h, cst(0.0)]), g.node("Sub", [one, half]), half])


def _sigmoid(g, h, output=None, stem=None):
    """sigmoid(h) = Where(h < 0, e / (1 + e), 1 / (1 + e)), e = Exp(-|h|): as fastnn's kernel
    (and scipy's expit) computes it.  onnxruntime's own Sigmoid is accurate only to about one
    ulp of 1 in absolute terms: 1.2e-7 where the true value is 2e-8 (float32, h = -17.8),
    0 for 1e-16 (float64, h = -37), so tail probabilities lost their relative accuracy."""
    e = g.node("Exp", [g.node("Neg", [g.node("Abs", [h])])], stem="exp_neg_abs")
    r = g.node("Reciprocal", [g.node("Add", [g.const("one", np.array(1.0, g.dtype)), e])])
    neg = g.node("Mul", [e, r])
    return g.node("Where", [g.node("Less", [h, g.const("zero", np.array(0.0, g.dtype))]),
                            neg, r], output, stem=stem)


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
        return [(_sigmoid(g, z, "probabilities"), n_out)]
    if link == "softmax":
        return [(g.node("Softmax", [z], "probabilities", axis=1), n_out)]
    if link == "gaussian":
        mean, std = _gaussian_split(g, z, n_out, "mean", "std")
        return [(mean, n_out // 2), (std, n_out // 2)]
    raise ValueError(f"output link {link!r} has no ONNX export")  # pragma: no cover


#: the nodes of the element-wise steps of a Preprocessor (fastnn.io.tabular.STEP_OPS)
_STEP_NODES = {"multiply": "Mul", "add": "Add"}


def _finite(g, v):
    """Not(IsInf(v) or IsNaN(v)): ONNX has no IsFinite."""
    return g.node("Not", [g.node("Or", [g.node("IsInf", [v]), g.node("IsNaN", [v])])])


def _standardize(g, x, mean, scale, stem):
    """The "standardize" step as ``fastnn.io.tabular._standardized`` computes it:
    (x - mean) / scale, and x / scale - mean / scale where that overflows although x is
    finite (values near +-1e308 on both sides of the mean)."""
    m = g.const(f"{stem}_mean", np.asarray(mean, dtype=PRECISION))
    s = g.const(f"{stem}_scale", np.asarray(scale, dtype=PRECISION))
    plain = g.node("Div", [g.node("Sub", [x, m]), s], stem=f"{stem}_standardized")
    guarded = g.node("Sub", [g.node("Div", [x, s]), g.node("Div", [m, s])])
    redo = g.node("And", [g.node("Not", [_finite(g, plain)]), _finite(g, x)])
    return g.node("Where", [redo, guarded, plain], stem=f"{stem}_standardized")


def _steps(g, x, steps, stem):
    """The nodes of a step list of ``fastnn.io.tabular.Preprocessor`` (``input_steps``,
    ``output_steps``) applied to x, a float64 tensor: the list ``fastnn predict`` evaluates
    with ``apply_steps``, in its precision (float64) and order."""
    for op, constant in steps:
        if op != "standardize":
            c = g.const(f"{stem}_{op}", np.asarray(constant, dtype=PRECISION))
        if op == "fill_missing":
            x = g.node("Where", [g.node("IsNaN", [x], stem="missing"), c, x], stem="imputed")
        elif op == "standardize":
            x = _standardize(g, x, *constant, stem=stem)
        elif op in _STEP_NODES:
            x = g.node(_STEP_NODES[op], [x, c], stem=f"{stem}_{op}")
        else:  # pragma: no cover - a step the Preprocessor defines but the export does not
            raise ValueError(f"the preprocessing step {op!r} has no ONNX export")
    return x


def _preprocessed_input(g, pre):
    """What ``fastnn predict`` does to a table's feature columns, as graph nodes built from
    the same definition (``Preprocessor.input_steps``): missing values (NaN) replaced by the
    stored fill values when the model was trained with ``--impute``, then
    ``(x - x_mean) / x_scale``, in float64, then a Cast to the model's dtype, as predict
    converts the standardized values.  The graph's input X is float64 and holds the features
    in ``pre.feature_names`` order, in the table's units (selecting columns by name stays the
    caller's job).  A model that encodes columns (categories, dates) takes one input per
    column instead (fastnn.interop.onnx_tables), encoded first by nodes built from its
    ``Preprocessor.columns``."""
    x = "X"
    if encodes_columns(pre):
        x, g.inputs = encoded_columns(g, pre)
    return _cast(g, _steps(g, x, pre.input_steps(), "x"), PRECISION, g.dtype)


def _target_units(g, pre, outputs):
    """A regression model predicts standardized targets: give the graph's outputs back in
    the target's units as ``fastnn predict`` does, from the same definition
    (``Preprocessor.output_steps``): Cast to float64, then ``y * y_scale + y_mean`` for a
    prediction or mean, ``std * y_scale`` for a std, in float64.  Renames the producing
    nodes' outputs and appends the steps under the original output names, which become
    float64 (``fastnn predict`` writes float64).  Returns the (name, width, element type)
    list of outputs."""
    if pre.task != "regression":
        return outputs
    double = g.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(PRECISION))
    result = []
    for out, width, elem in outputs:
        if out not in ("predictions", "mean", "std"):
            result.append((out, width, elem))
            continue
        for node in g.nodes:
            for i, name in enumerate(node.output):
                if name == out:
                    node.output[i] = out + "_standardized"
        y = _cast(g, out + "_standardized", g.dtype, PRECISION)
        y = _steps(g, y, pre.output_steps("std" if out == "std" else "mean"), out)
        g.node("Identity", [y], out)
        result.append((out, width, double))
    return result


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
        p0 = _sigmoid(g, g.node("Neg", [z], stem="neg_logit"), stem="p0")
        p1 = _sigmoid(g, z, stem="p1")
        proba = g.node("Concat", [p0, p1], "probabilities", axis=1)
    elif n_out == len(classes):  # multi-label: one independent probability per label
        proba = _sigmoid(g, z, "probabilities")
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


def _mean(g, names, output=None):
    """The element-wise mean of same-shape tensors: a sum divided by their count (ONNX's
    Mean has no float64 kernel in onnxruntime)."""
    total = names[0]
    for name in names[1:]:
        total = g.node("Add", [total, name])
    return g.node("Div", [total, g.const("count", np.array(len(names), g.dtype))], output)


def _ensemble_outputs(g, ensemble):
    """``MLPEnsemble.predict`` (and the mixture's std for learned-sigma members): each
    member's graph on the same input, its link applied, then their mean."""
    link = ensemble.members[0]._link_name()
    per_member = []
    for member in ensemble.members:
        z = _mlp_logits(g, member, "X")
        if link == "gaussian":
            per_member.append(_gaussian_split(g, z, member.n_outputs, None, None))
        elif link == "sigmoid":
            per_member.append((_sigmoid(g, z),))
        elif link == "softmax":
            per_member.append((g.node("Softmax", [z], axis=1),))
        elif link == "exp":
            per_member.append((g.node("Exp", [z]),))
        else:
            per_member.append((z,))
    width = ensemble.members[0].n_outputs
    if link != "gaussian":
        name = "probabilities" if link in ("sigmoid", "softmax") else "predictions"
        return [(_mean(g, [out for out, in per_member], name), width)]
    # the uniform mixture of N(mu_k, sigma_k^2): mean mu*, variance mean sigma_k^2 (aleatoric)
    # + mean (mu_k - mu*)^2 (epistemic), as predict_distribution computes them
    mean = _mean(g, [mu for mu, _ in per_member], "mean")
    aleatoric = _mean(g, [g.node("Mul", [sd, sd]) for _, sd in per_member])
    diffs = [g.node("Sub", [mu, mean]) for mu, _ in per_member]
    epistemic = _mean(g, [g.node("Mul", [d, d]) for d in diffs])
    std = g.node("Sqrt", [g.node("Add", [aleatoric, epistemic])], "std")
    return [(mean, width // 2), (std, width // 2)]


def _resolve(obj):
    """(the MLP, the estimator or None) for a model or a fitted fastnn.interop.sklearn estimator; for
    an MLPEnsemble (its first member, the ensemble)."""
    from fastnn.ensemble import MLPEnsemble   # on use, like the onnx package itself
    if isinstance(obj, MLP):
        return obj, None
    if isinstance(obj, MLPEnsemble):
        return obj.members[0], obj
    if type(obj).__module__ == "fastnn.interop.sklearn" and hasattr(obj, "fit"):
        model = getattr(obj, "model_", None)
        if not isinstance(model, MLP):
            raise ValueError(f"this {type(obj).__name__} is not fitted yet; call fit before "
                             "exporting it")
        return model, obj
    raise TypeError(f"model must be a fastnn.MLP, a fastnn.MLPEnsemble or a fitted "
                    f"fastnn.interop.sklearn estimator; got "
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
    """Export a fastnn model or a fitted fastnn.interop.sklearn estimator to ONNX.

    Parameters
    ----------
    model : fastnn.MLP, fastnn.MLPEnsemble, fastnn.interop.sklearn.MLPClassifier or MLPRegressor
        A fitted estimator (its network is ``model_``).  The graph computes ``predict`` (and
        ``predict_std`` / ``predict_proba`` where the model has them): see the module
        docstring for the inputs, nodes and outputs.  An ``MLPEnsemble`` gives every
        member's graph and their mean: ``predictions`` or ``probabilities`` as
        ``MLPEnsemble.predict``; ``mean`` and ``std`` (the mixture's, ``predict_std``) for
        members trained with ``GaussianNLL("learned")``.
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
        `model` is neither an MLP nor a fastnn.interop.sklearn estimator; `path`, `opset` or `name` of
        the wrong type.
    ValueError
        An unfitted estimator; an opset out of range; parameters that are NaN or infinite
        (as ``MLP.save``, the export refuses them; an existing file is left as it was).
    OSError
        `path` cannot be written (checked before the graph is built, by
        ``fastnn.io.writer.check_output``): IsADirectoryError for an existing directory,
        FileNotFoundError naming a missing directory, NotADirectoryError, PermissionError;
        an existing file at `path` is then left as it was.

    Examples
    --------
    >>> model.save_onnx("model.onnx")                          # doctest: +SKIP
    >>> import onnxruntime as ort                              # doctest: +SKIP
    >>> sess = ort.InferenceSession("model.onnx")              # doctest: +SKIP
    >>> proba, = sess.run(None, {"X": X.astype(np.float32)})   # doctest: +SKIP
    """
    _resolve(model)  # a TypeError or ValueError before anything else
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}")
    onnx = _import_onnx()
    opset = _check_opset(opset, onnx)
    # a directory, a missing folder, an unwritable place: refused before the graph is built
    target = None if path is None else check_output(path, "path")
    helper = onnx.helper

    # one snapshot: the graph is built inside consistent(model) (fastnn/runtime/state.py), so an
    # export from another thread during a fit is one epoch boundary of every network in it
    # (an ensemble's members all at the same one), never one layer from each of two epochs
    with consistent(model):
        mlp, estimator = _resolve(model)
        mlp = mlp.copy()
        if not all_finite(mlp.params):
            raise ValueError("the model's parameters contain NaN or infinity; not exporting a "
                             "graph that predicts NaN (MLP.save refuses them too)")
        g = _Graph(onnx, mlp.dtype)
        g.opset = opset
        g.inputs = None   # one input X (n_inputs wide), unless _preprocessed_input says
        x_elem = g.elem_type
        if estimator is None:
            # a `fastnn train` model's table handling
            pre = getattr(mlp, "preprocessor_", None)
            z = _mlp_logits(g, mlp, "X" if pre is None else _preprocessed_input(g, pre))
            outputs = [(out, width, g.elem_type) for out, width in _mlp_outputs(g, mlp, z)]
            if pre is not None:
                outputs = _target_units(g, pre, outputs)
                x_elem = g.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(PRECISION))
        elif hasattr(estimator, "members"):     # MLPEnsemble
            outputs = [(out, width, g.elem_type)
                       for out, width in _ensemble_outputs(g, estimator)]
        elif hasattr(estimator, "classes_"):
            outputs = _classifier_outputs(g, estimator, _mlp_logits(g, mlp, "X"))
        else:
            z = _mlp_logits(g, mlp, "X")
            outputs = [(out, width, g.elem_type)
                       for out, width in _regressor_outputs(g, estimator, z)]

        inputs = g.inputs or [("X", x_elem, ["N", mlp.n_inputs])]
        _check_input_names(g, [i[0] for i in inputs], [o[0] for o in outputs])
        opsets = [helper.make_opsetid("", opset)]
        if any(node.domain == ML_DOMAIN for node in g.nodes):
            opsets.append(helper.make_opsetid(ML_DOMAIN, ML_OPSET))
        graph = helper.make_graph(
            g.nodes, name or type(model).__name__,
            [helper.make_tensor_value_info(*i) for i in inputs],
            [helper.make_tensor_value_info(out, elem,
                                           ["N"] if width is None else ["N", width])
             for out, width, elem in outputs],
            initializer=g.initializers)
        onnx_model = helper.make_model(graph, opset_imports=opsets,
                                       producer_name="fastnn", producer_version=_version(),
                                       ir_version=_ir_for(onnx, opset))
        onnx_model.doc_string = repr(model)
        helper.set_model_props(onnx_model, {
            "layer_sizes": ",".join(map(str, mlp.layer_sizes)),
            "activations": ",".join(layer.activation for layer in mlp.layers[:-1]),
            "output_link": mlp._link_name(), "dtype": mlp.dtype.name})
    onnx.checker.check_model(onnx_model, full_check=True)
    if path is not None:
        # written like MLP.save: a temporary file beside the target, fsynced, then renamed
        # over it, so a failed or interrupted export never leaves a partial file
        data = onnx_model.SerializeToString()
        write_output(target, lambda fh: fh.write(data))
    return onnx_model


def _check_input_names(g, inputs, outputs):
    """A column named like an output or an inner tensor of the graph cannot be an input."""
    inner = {name for node in g.nodes for name in node.output} | set(outputs) | {
        t.name for t in g.initializers}
    clash = [name for name in inputs if name in inner]
    if clash:
        raise ValueError(f"the columns {', '.join(map(repr, clash))} would be graph inputs "
                         "named like the graph's outputs or inner tensors; rename them in "
                         "the table and train again")


def _ir_for(onnx, opset):
    """The IR version of the onnx release that introduced `opset` (8 for opset 17)."""
    for row in onnx.helper.VERSION_TABLE:  # (release, IR version, ai.onnx opset, ...)
        if row[2] == opset:
            return row[1]
    return onnx.IR_VERSION  # pragma: no cover - every opset is in the table


def _version():
    from fastnn._version import __version__  # not the package's __init__, which imports us
    return __version__
