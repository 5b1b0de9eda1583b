"""PyTorch interchange: ``to_torch(model)`` and ``from_torch(module)`` (``MLP.to_torch``,
``MLP.from_torch``), for teams that train or serve with PyTorch.

Needs PyTorch (``pip install "fastnn[torch]"``); ``import fastnn`` does not import it, and this
module is imported only by the two methods.

The correspondence
------------------
A fastnn ``MLP`` with L layers is the ``torch.nn.Sequential``::

    Linear_0, act_0, Linear_1, act_1, ..., Linear_{L-1}, link

module ``2k`` is layer k's ``nn.Linear`` and ``2k + 1`` its hidden activation (``nn.Identity``,
``nn.Sigmoid``, ``nn.Tanh``, ``nn.ReLU``, ``nn.LeakyReLU(negative_slope=slope)``, ``nn.ELU``,
``nn.SELU``, ``nn.GELU`` (``approximate="tanh"`` for gelu_tanh), ``nn.SiLU`` or
``nn.Softplus(threshold=40)``: PyTorch's default threshold 20 would return z itself above 20,
1e-10 relative short of the exact softplus, visible in float64), followed by
``nn.Dropout(p)`` for a layer with dropout, and preceded by ``nn.LayerNorm(n, eps=1e-5)``
(weight = gain, bias = shift) for a layer with normalization="layer" (both shift the indices
after them); the last
module is the output link that ``MLP.predict`` applies, kept explicit so that the Sequential
computes ``predict``:

===============  ===============================================================
fastnn link      final module
===============  ===============================================================
identity         ``nn.Identity()``
sigmoid          ``nn.Sigmoid()``
softmax          ``nn.Softmax(dim=1)``
exp (Poisson)    ``fastnn.interop.torch_interop.Exp()``
gaussian         ``fastnn.interop.torch_interop.GaussianMeanStd()``: columns ``[mean | std]``
(learned sigma)  with ``std = exp(s / 2)`` of the log-variance columns s, so the first
                 half is ``predict`` and the second ``predict_std``
===============  ===============================================================

Weight layout: fastnn computes ``X @ W + b`` with ``W`` of shape ``(n_in, n_out)`` (samples as
rows); ``nn.Linear`` computes ``x @ weight.T + bias`` with ``weight`` of shape
``(n_out, n_in)``.  So ``weight = W.T`` and ``W = weight.T``, copied element for element: the
round trip ``from_torch(to_torch(m))`` reproduces ``m.params`` bitwise.  The dtype follows the
source: float32 <-> ``torch.float32``, float64 <-> ``torch.float64``.

To train in PyTorch with one of its losses on logits (``nn.CrossEntropyLoss``,
``nn.BCEWithLogitsLoss``, ``nn.PoissonNLLLoss(log_input=True)``), drop the link: ``seq[:-1]``.
``from_torch`` accepts a Sequential that ends with its last ``Linear`` (the model's link then
follows the loss it is trained with, ``output="auto"``) or with one of the link modules above.
Nested ``nn.Sequential`` modules are read as their modules in order; errors name a module by
its path (``module [1][0]`` is ``seq[1][0]``).
"""
import numpy as np

from fastnn._validation import all_finite
from fastnn.nn.layers import parameter_kwargs
from fastnn.nn.losses import GaussianNLL
from fastnn.nn.model import MLP, Dense

try:
    import torch
    from torch import nn
except ImportError as exc:  # the functions below say which extra to install
    torch = nn = None
    _TORCH_IMPORT_ERROR = str(exc)

__all__ = ["to_torch", "from_torch", "Exp", "GaussianMeanStd"]


def _require_torch():
    if torch is None:
        raise ImportError(f"PyTorch interchange needs torch ({_TORCH_IMPORT_ERROR}): "
                          'pip install "fastnn[torch]"')


if torch is not None:
    class Exp(nn.Module):
        """``exp(z)``: the Poisson rate from log-rate logits (fastnn's "exp" output link)."""

        def forward(self, z):
            return torch.exp(z)

    class GaussianMeanStd(nn.Module):
        """``[mean | std]`` from ``[mean | log-variance]`` logits of shape (N, 2k):
        ``std = exp(s / 2)`` (fastnn's learned-sigma Gaussian output)."""

        def forward(self, z):
            k = z.shape[1] // 2
            return torch.cat([z[:, :k], torch.exp(0.5 * z[:, k:])], dim=1)
else:  # pragma: no cover - exercised by the tests that simulate a missing torch
    Exp = GaussianMeanStd = None

_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
#: fastnn's layer normalization epsilon (src_c/fastnn_layernorm.h), PyTorch's default too
LAYERNORM_EPS = 1e-5
#: nn.Softplus threshold that to_torch uses: exp(-40) = 4e-18 is below half an ulp of 40 in
#: float64, so torch's "z above the threshold" equals z + log1p(exp(-z)) once rounded
TORCH_SOFTPLUS_THRESHOLD = 40.0
#: the smallest nn.Softplus threshold from_torch accepts (PyTorch's default): above it torch
#: returns z, within log1p(exp(-20)) = 2e-9 (1e-10 relative) of fastnn's exact softplus
MIN_TORCH_SOFTPLUS_THRESHOLD = 20.0


def _slope(layer):
    """The leaky_relu slope of a ``fastnn.Dense`` (one place reads the attribute)."""
    return float(layer.negative_slope)


def _elu_alpha(layer):
    """elu's alpha of a ``fastnn.Dense`` (one place reads the attribute)."""
    return float(layer.alpha)


def _dense(n_in, n_out, activation, parameter, dropout=0.0, norm=None):
    """A Dense from the activation's one parameter (LeakyReLU's slope or ELU's alpha)."""
    return Dense(n_in, n_out, activation, dropout=dropout,
                 normalization="layer" if norm is not None else None,
                 **parameter_kwargs(activation, parameter))


def _activation_module(layer):
    if layer.activation == "leaky_relu":
        return nn.LeakyReLU(negative_slope=_slope(layer))
    if layer.activation == "elu":
        return nn.ELU(alpha=_elu_alpha(layer))
    if layer.activation == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if layer.activation == "softplus":
        # PyTorch returns z itself above `threshold` (default 20), 2e-9 short of softplus(z)
        # = z + log1p(exp(-z)) at z = 20: 1e-10 relative, visible in float64.  Above
        # TORCH_SOFTPLUS_THRESHOLD that term is below half an ulp of z in float64 too, so the
        # Sequential computes fastnn's exact softplus.
        return nn.Softplus(beta=1.0, threshold=TORCH_SOFTPLUS_THRESHOLD)
    return {"identity": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
            "relu": nn.ReLU, "selu": nn.SELU, "gelu": nn.GELU, "silu": nn.SiLU}[
                layer.activation]()


def _link_module(model):
    link = model._link_name()
    if link == "softmax":
        return nn.Softmax(dim=1)
    return {"identity": nn.Identity, "sigmoid": nn.Sigmoid, "exp": Exp,
            "gaussian": GaussianMeanStd}[link]()


def to_torch(model):
    """The ``torch.nn.Sequential`` that computes ``model.predict``.

    Parameters
    ----------
    model : fastnn.MLP

    Returns
    -------
    torch.nn.Sequential
        ``Linear, activation`` per hidden layer, the last ``Linear``, then the output link
        (see the module docstring), on the CPU, in the model's dtype, in evaluation mode
        (``.eval()``), so that it computes ``predict``: in training mode its ``nn.Dropout``
        modules would drop units (call ``.train()`` before training it with PyTorch).  Its
        parameters are copies (``weight = W.T``, ``bias = b``): training one does not change
        the other.

    Raises
    ------
    ImportError
        When PyTorch is missing (``pip install "fastnn[torch]"``).
    TypeError
        `model` is not a fastnn.MLP.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a fastnn.MLP; got {type(model).__name__}")
    _require_torch()
    # one snapshot of the weights, copied under the model's lock: a fit in another thread
    # writes params under it epoch by epoch, so the module never mixes two epochs' layers
    model = model.copy()
    dtype = getattr(torch, _DTYPES[model.dtype])
    modules = []
    for k, layer in enumerate(model.layers):
        linear = nn.Linear(layer.n_in, layer.n_out, dtype=dtype)
        with torch.no_grad():
            # nn.Linear's weight is (n_out, n_in): fastnn's W (n_in, n_out) transposed
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.W.T)))
            linear.bias.copy_(torch.from_numpy(np.array(layer.b, copy=True)))
        modules.append(linear)
        if layer.normalization:
            # fastnn normalizes the pre-activation with eps 1e-5, gain and shift learned
            norm = nn.LayerNorm(layer.n_out, eps=LAYERNORM_EPS, dtype=dtype)
            with torch.no_grad():
                norm.weight.copy_(torch.from_numpy(np.array(layer.gain, copy=True)))
                norm.bias.copy_(torch.from_numpy(np.array(layer.shift, copy=True)))
            modules.append(norm)
        if k < model.n_layers - 1:
            modules.append(_activation_module(layer))
            if layer.dropout:
                modules.append(nn.Dropout(layer.dropout))
    modules.append(_link_module(model))
    # evaluation mode: a new module is in training mode, where nn.Dropout drops units, and
    # this Sequential is documented to compute predict (it gave 0.06 off for dropout=0.5)
    return nn.Sequential(*modules).eval()


def _hidden_activation(m):
    """(fastnn name, slope) of a supported hidden activation module, or None."""
    kind = type(m)
    if kind is nn.LeakyReLU:
        return "leaky_relu", float(m.negative_slope)
    if kind is nn.ELU:
        return "elu", float(m.alpha)
    if kind is nn.GELU:
        return {"none": "gelu", "tanh": "gelu_tanh"}[m.approximate], None
    if kind is nn.Softplus:   # fastnn's softplus is exact: PyTorch's with beta 1, whose
        # threshold (z returned above it) is high enough not to change the function
        return (("softplus", None) if m.beta == 1
                and m.threshold >= MIN_TORCH_SOFTPLUS_THRESHOLD else None)
    name = {nn.Identity: "identity", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh",
            nn.ReLU: "relu", nn.SELU: "selu", nn.SiLU: "silu"}.get(kind)
    return None if name is None else (name, None)


def _output_link(m):
    """The fastnn link of a supported final module, or None."""
    kind = type(m)
    if kind is nn.Softmax:
        return "softmax" if m.dim in (1, -1) else None
    return {nn.Identity: "identity", nn.Sigmoid: "sigmoid", Exp: "exp",
            GaussianMeanStd: "gaussian"}.get(kind)


_SUPPORTED = ("an nn.Sequential of nn.Linear layers, each but the last followed by "
              "optionally nn.LayerNorm(out_features, eps=1e-5), then at most one of "
              "nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU(alpha >= 0), "
              "nn.SELU, nn.GELU, nn.SiLU, nn.Softplus(beta=1, threshold >= 20) (then "
              "optionally nn.Dropout(p < 1)), and optionally, last, one output link: "
              "nn.Identity, nn.Sigmoid, nn.Softmax(dim=1), fastnn.interop.torch_interop.Exp or "
              "GaussianMeanStd")


def _unsupported(i, m, why=""):
    return ValueError(f"module {i} ({type(m).__name__}: {m!r}) is not supported{why}; "
                      f"from_torch takes {_SUPPORTED}")


def _flatten(seq, prefix=""):
    """[(path, module)] of a Sequential, nested Sequentials expanded in order: the path of
    module 2 inside module 1 is "[1][2]" (what ``seq[1][2]`` returns)."""
    out = []
    for i, m in enumerate(seq):
        path = f"{prefix}[{i}]"
        if type(m) is nn.Sequential:
            out.extend(_flatten(m, path))
        else:
            out.append((path, m))
    return out


def _linear_arrays(i, m, dtype):
    """(W (n_in, n_out), b (n_out,)) as NumPy copies of an nn.Linear, checked."""
    weight = m.weight.detach()
    if weight.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"module {i} ({m!r}) has dtype {weight.dtype}; expected "
                        "torch.float32 or torch.float64")
    if dtype is not None and weight.dtype != dtype:
        raise TypeError(f"module {i} ({m!r}) has dtype {weight.dtype} but the earlier "
                        f"layers have {dtype}; convert the module with .to(dtype) first")
    # the tensors are the truth (in_features/out_features are plain attributes), checked as
    # fastnn checks its own: a 2-D weight, a bias of the same dtype and (n_out,) entries
    if weight.ndim != 2 or 0 in weight.shape:
        raise ValueError(f"module {i} ({m!r}) has a weight of shape {tuple(weight.shape)}; "
                         "expected (out_features, in_features), both >= 1")
    bias = None if m.bias is None else m.bias.detach()
    if bias is not None and (bias.dtype != weight.dtype or
                             tuple(bias.shape) != (weight.shape[0],)):
        raise ValueError(f"module {i} ({m!r}) has a {bias.dtype} bias of shape "
                         f"{tuple(bias.shape)}; expected a {weight.dtype} bias of shape "
                         f"({weight.shape[0]},), one per output of its weight")
    if weight.is_meta or (bias is not None and bias.is_meta):
        raise ValueError(f"module {i} ({m!r}) is on the meta device: it has no weights to "
                         "copy (materialize it first, e.g. module.to_empty(device='cpu') and "
                         "load its state)")
    W = weight.cpu().numpy().T  # nn.Linear's (n_out, n_in) -> fastnn's (n_in, n_out)
    b = np.zeros(W.shape[1], W.dtype) if bias is None else bias.cpu().numpy()
    return W, b, weight.dtype


def _layer_norm_arrays(i, m, n_out, dtype):
    """(gain, shift) of an nn.LayerNorm that fastnn's layer normalization computes exactly."""
    if tuple(m.normalized_shape) != (n_out,):
        raise _unsupported(i, m, f": normalized_shape={tuple(m.normalized_shape)}; expected "
                           f"({n_out},), the preceding Linear's out_features")
    if m.eps != LAYERNORM_EPS:
        raise _unsupported(i, m, f": eps={m.eps}; fastnn's layer normalization uses "
                           f"eps={LAYERNORM_EPS}")
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    gain, shift = np.ones(n_out, np_dtype), np.zeros(n_out, np_dtype)
    for name, out in (("weight", gain), ("bias", shift)):
        value = getattr(m, name, None)
        if value is not None:
            if value.dtype != dtype:
                raise TypeError(f"module {i} ({m!r}) has {name} of dtype {value.dtype}; "
                                f"expected {dtype} like the Linear layers")
            out[...] = value.detach().cpu().numpy()
    return gain, shift


def from_torch(module):
    """A fastnn ``MLP`` with the structure and (bitwise) the weights of a PyTorch Sequential.

    Parameters
    ----------
    module : torch.nn.Sequential
        ``nn.Linear`` layers (with or without bias; all float32 or all float64, on any device),
        each but the last followed by optionally ``nn.LayerNorm(out_features, eps=1e-5)``
        (fastnn's layer normalization: gain = weight, shift = bias) and at most one of
        ``nn.Identity``, ``nn.Sigmoid``, ``nn.Tanh``, ``nn.ReLU``, ``nn.LeakyReLU`` (slope
        >= 0), ``nn.ELU`` (alpha >= 0), ``nn.SELU``, ``nn.GELU`` (exact or tanh),
        ``nn.SiLU``, ``nn.Softplus(beta=1)`` with ``threshold >= 20`` (PyTorch's default; a
        lower threshold makes it a different function), each optionally followed by ``nn.Dropout``
        (p < 1: the rate of the layer), and optionally, last, one
        output link: ``nn.Identity``, ``nn.Sigmoid``, ``nn.Softmax(dim=1)`` (or ``dim=-1``),
        ``fastnn.interop.torch_interop.Exp`` or ``GaussianMeanStd``.  Exactly these classes, not
        subclasses (a subclass may compute something else).

    Returns
    -------
    fastnn.MLP
        dtype float32 or float64 as the Linear layers; ``W_k = weight_k.T``, ``b_k = bias_k``
        (zeros without bias); ``output`` the link of the final module ("auto" when the
        Sequential ends with a Linear: the link then follows the loss it is trained with;
        for ``GaussianMeanStd`` the model gets ``loss_ = GaussianNLL("learned")``).

    Raises
    ------
    ImportError
        When PyTorch is missing (``pip install "fastnn[torch]"``).
    TypeError
        `module` is not an nn.Sequential; a Linear layer of another dtype (float16, or a
        different dtype from the earlier layers).
    ValueError
        The first module that is not supported, with its index; an empty Sequential; widths
        that do not chain; a negative LeakyReLU slope; non-finite weights.
    """
    _require_torch()
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"module must be a torch.nn.Sequential; got {type(module).__name__}")
    paths, mods = zip(*_flatten(module)) if len(module) else ((), ())
    if not mods:
        raise ValueError(f"module is an empty nn.Sequential; from_torch takes {_SUPPORTED}")
    specs = []           # per layer: [W, b, activation, slope, dropout, (gain, shift) or None]
    pending = False      # the last Linear has no activation yet
    link, dtype = "auto", None
    for n, (i, m) in enumerate(zip(paths, mods)):
        last = n == len(mods) - 1
        if type(m) is nn.Linear:
            W, b, dtype = _linear_arrays(i, m, dtype)
            if specs and specs[-1][0].shape[1] != W.shape[0]:
                raise ValueError(f"module {i} ({m!r}) has in_features={W.shape[0]}; "
                                 f"expected {specs[-1][0].shape[1]}, the previous Linear's "
                                 "out_features")
            specs.append([W, b, "identity", None, 0.0, None])
            pending = True
        elif type(m) is nn.LayerNorm and pending and specs[-1][5] is None:
            specs[-1][5] = _layer_norm_arrays(i, m, specs[-1][0].shape[1], dtype)
            if last:
                raise _unsupported(i, m, " after the last Linear: fastnn normalizes hidden "
                                   "layers only")
        elif last and _output_link(m) is not None:
            if not pending:
                raise _unsupported(i, m, " here: an output link must follow the last Linear "
                                   "directly")
            link = _output_link(m)
        elif not last and _hidden_activation(m) is not None:
            if not pending:
                raise _unsupported(i, m, " here: each activation must follow a Linear")
            if type(m) is nn.ELU and not m.alpha >= 0:
                raise _unsupported(i, m, f": alpha={m.alpha}, and fastnn's elu needs "
                                   "alpha >= 0")
            specs[-1][2:4] = _hidden_activation(m)
            pending = False
        elif not last and type(m) is nn.Dropout and specs and not pending \
                and specs[-1][4] == 0.0:
            if not 0 <= m.p < 1:
                raise _unsupported(i, m, f": p={m.p}, and fastnn's dropout rate must be in "
                                   "[0, 1) (p = 1 drops every unit)")
            specs[-1][4] = float(m.p)
        elif last and _hidden_activation(m) is not None:
            raise _unsupported(i, m, " as the final module: fastnn's last layer outputs "
                               "logits (identity) and predict applies an output link")
        else:
            raise _unsupported(i, m)
    if not pending:  # the Sequential ends with a hidden activation after the last Linear
        raise _unsupported(paths[-1], mods[-1])

    if specs[-1][5] is not None:   # a LayerNorm after the last Linear (before a link)
        raise ValueError("the last Linear is followed by an nn.LayerNorm; fastnn normalizes "
                         f"hidden layers only; from_torch takes {_SUPPORTED}")
    for i, (W, b, activation, slope, _, _) in enumerate(specs):
        if activation == "leaky_relu" and not slope >= 0:
            raise ValueError(f"layer {i} has a LeakyReLU slope of {slope}; fastnn's "
                             "leaky_relu needs a slope >= 0")
    layers = [_dense(W.shape[0], W.shape[1], activation, slope, rate, norm)
              for W, b, activation, slope, rate, norm in specs]
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    explicit = link if link in ("identity", "sigmoid", "softmax", "exp") else "auto"
    model = MLP.from_layers(layers, output=explicit, dtype=np_dtype, seed=0,
                            warn_symmetric=False)
    for k, (layer, (W, b, _, _, _, norm)) in enumerate(zip(model.layers, specs)):
        if not (all_finite(W) and all_finite(b)):
            raise ValueError(f"the Linear of layer {k} has NaN or infinite weights")
        layer.W[...] = W
        layer.b[...] = b
        if norm is not None:
            if not (all_finite(norm[0]) and all_finite(norm[1])):
                raise ValueError(f"the LayerNorm of layer {k} has NaN or infinite weights")
            layer.gain[...], layer.shift[...] = norm
    if link == "gaussian":
        model.loss_ = model._use_loss(GaussianNLL(sigma="learned"))
    return model
