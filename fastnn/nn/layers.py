"""The fused dense layer, validated: ``dense_forward``, ``dense_backward`` and ``Dense``.

Samples are rows: ``X`` is ``(B, n_in)``, ``W`` is ``(n_in, n_out)``, ``b`` is ``(n_out,)`` and
the layer computes ``A = act(X @ W + b)``.  Textbooks that store samples as columns write
``Z = W X + b`` with ``W`` of shape ``(n_out, n_in)``: the same arithmetic, transposed.

The compiled kernels (``fastnn._core._layers``) run one GEMM through scipy's BLAS and then ONE pass
over the output for bias + activation; the backward pass forms the activation derivative from
the stored output ``A`` (sigmoid' = a(1-a), tanh' = 1-a^2, relu' = [a > 0], elu' = a + alpha
for a <= 0, softplus' = 1 - exp(-a), ...).  GELU, its tanh form and SiLU are not invertible,
so for them the backward pass reads the pre-activation ``Z = X @ W + b`` instead (the network
keeps it in its workspace; ``src_c/fastnn_kernels.h`` gives the measured reasons).

Activations (z is the pre-activation):

==============  ==========================================================================
identity        z
sigmoid         1 / (1 + exp(-z))
tanh            tanh(z)
relu            max(z, 0)
leaky_relu      z for z > 0, negative_slope z otherwise (negative_slope default 0.01)
elu             z for z > 0, alpha (exp(z) - 1) otherwise (alpha default 1.0; Clevert et
                al., 2016)
selu            lambda elu(z) with alpha = 1.6732632423543772, lambda = 1.0507009873554805
                (Klambauer et al., 2017); ``alpha`` is ignored
gelu            z Phi(z), Phi the standard normal CDF, with erf (Hendrycks & Gimpel, 2016)
gelu_tanh       z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) / 2, the tanh approximation
silu            z sigmoid(z) (Elfwing et al., 2018; Ramachandran et al.'s "swish", an alias)
softplus        log(1 + exp(z))
==============  ==========================================================================

All are computed without overflow for any finite z, in float32 and float64.
"""
import numpy as np

from fastnn.runtime import boundary
from fastnn._validation import check_array, check_choice, check_number, check_out

#: name -> code of src_c/fastnn_kernels.h
ACTIVATIONS = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 4, "elu": 5,
               "selu": 6, "gelu": 7, "gelu_tanh": 8, "silu": 9, "softplus": 10}
#: other accepted names -> the canonical one
ACTIVATION_ALIASES = {"swish": "silu"}
#: activations whose backward pass reads the pre-activation Z, not the output
KEEPS_PREACTIVATION = ("gelu", "gelu_tanh", "silu")
#: leaky_relu's ``negative_slope`` and elu's ``alpha`` when None is given (PyTorch's defaults)
DEFAULT_LEAKY_SLOPE = 0.01
DEFAULT_ELU_ALPHA = 1.0


def canonical_activation(activation, name="activation"):
    """The canonical name of an activation ("swish" -> "silu"); ValueError if unknown."""
    activation = check_choice(activation, name, tuple(ACTIVATIONS) + tuple(ACTIVATION_ALIASES))
    return ACTIVATION_ALIASES.get(activation, activation)


def activation_code(activation, name="activation"):
    return ACTIVATIONS[canonical_activation(activation, name)]


def _check_slope(negative_slope):
    return float(check_number(negative_slope, "negative_slope", low=0.0))


def _check_elu_alpha(alpha):
    return float(check_number(alpha, "alpha", low=0.0))


def _check_alpha_fits(alpha, dtype, name="alpha"):
    """alpha is applied in the arrays' dtype: one that overflows it (1e39 in float32) would
    turn every negative unit into -inf or NaN."""
    with np.errstate(over="ignore"):
        if not np.isfinite(np.asarray(alpha, dtype=dtype)):
            raise ValueError(f"{name}={alpha:g} overflows the dtype {np.dtype(dtype).name} of "
                             f"X (at most {np.finfo(dtype).max:g})")


def resolve_activation_parameters(negative_slope, alpha, activations, where):
    """``(negative_slope, alpha)`` from the user's arguments, with PyTorch's names.

    ``negative_slope`` is leaky_relu's slope (``torch.nn.LeakyReLU``, default 0.01) and
    ``alpha`` ELU's alpha (``torch.nn.ELU``, default 1.0; selu uses its fixed published
    constants).  Every scikit-learn user reads ``alpha`` as the L2 penalty, so it never
    silently means anything else: given while no layer in `activations` is elu it is a
    TypeError naming ``weight_decay`` and ``negative_slope`` -- except for a model with
    leaky_relu layers, where ``alpha`` was fastnn's former name of the slope and still sets
    it, with a FutureWarning, until removal.

    Parameters
    ----------
    negative_slope, alpha : float >= 0 or None
        As given by the user; None for "not given".
    activations : sequence of str
        The canonical activation names of the layers concerned.
    where : str
        The caller's name, for the messages.

    Returns
    -------
    negative_slope, alpha : float

    Raises
    ------
    TypeError
        `alpha` without an elu layer (and without a leaky_relu layer), or `alpha` and
        `negative_slope` both given for a leaky_relu-only model.
    ValueError
        A negative or non-finite value.
    """
    acts = set(activations)
    if alpha is not None and "elu" not in acts:
        hint = ("scikit-learn's alpha (an L2 penalty) is weight_decay of the optimizer "
                "(fastnn.SGD / fastnn.Adam, or fastnn.interop.sklearn's alpha=); leaky_relu's slope "
                "is negative_slope")
        if "leaky_relu" not in acts:
            raise TypeError(f"{where} got alpha={alpha!r}, but alpha is ELU's parameter here "
                            f"(as in torch.nn.ELU) and no layer uses elu: {hint}")
        if negative_slope is not None:
            raise TypeError(f"{where} got both negative_slope and alpha; alpha is the "
                            "deprecated name of the leaky_relu slope: pass only negative_slope")
        import warnings
        warnings.warn(f"{where}: alpha as the leaky-ReLU slope is deprecated (alpha is ELU's "
                      f"parameter, as in PyTorch); pass negative_slope={alpha!r} instead. "
                      f"{hint}.", FutureWarning, stacklevel=3)
        negative_slope, alpha = alpha, None
    slope = DEFAULT_LEAKY_SLOPE if negative_slope is None else _check_slope(negative_slope)
    alpha = DEFAULT_ELU_ALPHA if alpha is None else _check_elu_alpha(alpha)
    return slope, alpha


def dense_kwargs(activation, negative_slope, alpha):
    """``negative_slope=`` and ``alpha=`` that rebuild a layer of `activation` (alpha only for
    elu, where it is not a TypeError)."""
    return {"negative_slope": negative_slope,
            "alpha": alpha if canonical_activation(activation) == "elu" else None}


def parameter_kwargs(activation, parameter):
    """The same, from the activation's one parameter (the leaky_relu slope, or elu's alpha;
    else unused): what files and pickles written before the rename call ``alpha``, and what
    an imported torch/ONNX activation module holds."""
    activation = canonical_activation(activation)
    return {"negative_slope": parameter if activation == "leaky_relu" else None,
            "alpha": parameter if activation == "elu" else None}


def parameter_name(activation):
    """The name of the activation's one parameter in messages: "negative_slope" for
    leaky_relu, "alpha" otherwise (elu's; unused by the rest)."""
    return "negative_slope" if canonical_activation(activation) == "leaky_relu" else "alpha"


def activation_parameter(activation, negative_slope, alpha):
    """The one scalar the compiled kernels take: the slope for leaky_relu, alpha for elu."""
    activation = canonical_activation(activation)
    return negative_slope if activation == "leaky_relu" else (
        alpha if activation == "elu" else DEFAULT_LEAKY_SLOPE)


def _check_layer_arrays(X, W, b):
    X = check_array(X, "X", ndim=2)
    W = check_array(W, "W", ndim=2, dtype=X.dtype)
    b = check_array(b, "b", ndim=1, dtype=X.dtype)
    if W.shape[0] != X.shape[1]:
        raise ValueError(f"W has shape {W.shape}; expected ({X.shape[1]}, n_out) to match "
                         f"X of shape {X.shape}")
    if b.shape[0] != W.shape[1]:
        raise ValueError(f"b has shape {b.shape}; expected ({W.shape[1]},) to match "
                         f"W of shape {W.shape}")
    return X, W, b


def dense_forward(X, W, b, activation="relu", *, negative_slope=None, alpha=None, out=None):
    """Forward pass of a dense layer: ``act(X @ W + b)``.

    Parameters
    ----------
    X : ndarray of shape (B, n_in), float32 or float64
        Inputs, one sample per row.  A non-contiguous X (slice, Fortran order) is copied
        once to C order; W and b likewise.
    W : ndarray of shape (n_in, n_out), same dtype as X
    b : ndarray of shape (n_out,), same dtype as X
    activation : str
        One of ``ACTIVATIONS`` (see the module docstring) or "swish" (= "silu").
    negative_slope : float >= 0, optional
        leaky_relu's slope for negative inputs (default 0.01), as ``torch.nn.LeakyReLU``.
    alpha : float >= 0, optional
        elu's alpha (default 1.0), as ``torch.nn.ELU``.  With leaky_relu: the deprecated
        name of `negative_slope` (FutureWarning); with another activation a TypeError
        (scikit-learn's alpha, the L2 penalty, is the optimizer's ``weight_decay``).
    out : ndarray of shape (B, n_out), same dtype, C-contiguous and writeable, optional
        Written in place and returned, so that a loop need not allocate.

    Returns
    -------
    A : ndarray of shape (B, n_out), same dtype as X
    """
    activation = canonical_activation(activation)
    code = ACTIVATIONS[activation]
    param = activation_parameter(activation, *resolve_activation_parameters(
        negative_slope, alpha, [activation], "dense_forward"))
    X, W, b = _check_layer_arrays(X, W, b)
    _check_alpha_fits(param, X.dtype, parameter_name(activation))
    shape = (X.shape[0], W.shape[1])
    out = np.empty(shape, X.dtype) if out is None else check_out(
        out, "out", shape, X.dtype, (("X", X), ("W", W), ("b", b)))
    boundary.layer_forward(X, W, b, out, code, param)
    return out


def dense_backward(X, W, A, dA, activation="relu", *, negative_slope=None, alpha=None, Z=None,
                   compute_dX=True, out_dW=None, out_db=None, out_dX=None):
    """Backward pass of a dense layer, from its stored output (or pre-activation).

    With ``D = dA * act'(Z)`` (the gradient with respect to the pre-activation Z), formed
    from A, or from Z for "gelu", "gelu_tanh" and "silu":
    ``dW = X^T @ D``, ``db = D.sum(axis=0)``, ``dX = D @ W^T``.

    Parameters
    ----------
    X : ndarray of shape (B, n_in), float32 or float64
        The layer's input in the forward pass.
    W : ndarray of shape (n_in, n_out), same dtype
    A : ndarray of shape (B, n_out), same dtype
        The layer's forward output ``act(X @ W + b)``.
    dA : ndarray of shape (B, n_out), same dtype
        Gradient of the loss with respect to A.  Not modified.
    activation : str
        As for ``dense_forward``.
    negative_slope, alpha : float >= 0, optional
        As for ``dense_forward``.
    Z : ndarray of shape (B, n_out), same dtype, optional
        The pre-activation ``X @ W + b``.  Required for "gelu", "gelu_tanh" and "silu",
        whose derivative is not a function of the output; ignored otherwise.
    compute_dX : bool, default True
        False skips the dX product (the first layer of a network needs no dX).
    out_dW, out_db, out_dX : ndarray, optional
        Buffers of shapes (n_in, n_out), (n_out,), (B, n_in) written in place.

    Returns
    -------
    dW : ndarray of shape (n_in, n_out)
    db : ndarray of shape (n_out,)
    dX : ndarray of shape (B, n_in), or None when compute_dX is False
    """
    activation = canonical_activation(activation)
    code = ACTIVATIONS[activation]
    param = activation_parameter(activation, *resolve_activation_parameters(
        negative_slope, alpha, [activation], "dense_backward"))
    X = check_array(X, "X", ndim=2)
    _check_alpha_fits(param, X.dtype, parameter_name(activation))
    W = check_array(W, "W", ndim=2, dtype=X.dtype)
    A = check_array(A, "A", ndim=2, dtype=X.dtype)
    dA = check_array(dA, "dA", ndim=2, dtype=X.dtype)
    kept = A
    if activation in KEEPS_PREACTIVATION:
        if Z is None:
            raise ValueError(f"activation={activation!r} needs Z, the pre-activation X @ W + b "
                             "(its derivative is not a function of the output A); pass Z=")
        kept = Z = check_array(Z, "Z", ndim=2, dtype=X.dtype)
    n_samples, n_in = X.shape
    if W.shape[0] != n_in:
        raise ValueError(f"W has shape {W.shape}; expected ({n_in}, n_out) to match "
                         f"X of shape {X.shape}")
    n_out = W.shape[1]
    for arr, name in ((A, "A"), (dA, "dA"), (kept, "Z")):
        if arr.shape != (n_samples, n_out):
            raise ValueError(f"{name} has shape {arr.shape}; expected {(n_samples, n_out)} "
                             f"(rows of X, columns of W)")
    dt = X.dtype
    reads = (("X", X), ("W", W), ("A", A), ("dA", dA))
    # each output is written while the others hold results: they must not overlap either
    dW = np.empty((n_in, n_out), dt) if out_dW is None else check_out(
        out_dW, "out_dW", (n_in, n_out), dt, reads)
    db = np.empty(n_out, dt) if out_db is None else check_out(
        out_db, "out_db", (n_out,), dt, reads + (("out_dW", dW),))
    dX = None
    if compute_dX:
        dX = np.empty((n_samples, n_in), dt) if out_dX is None else check_out(
            out_dX, "out_dX", (n_samples, n_in), dt, reads + (("out_dW", dW), ("out_db", db)))
    elif out_dX is not None:
        raise ValueError("out_dX was given but compute_dX is False")
    D = np.empty((n_samples, n_out), dt)
    boundary.layer_backward(X, W, kept, dA, D, dW, db, dX, code, param)
    return dW, db, dX
