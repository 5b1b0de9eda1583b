"""``Dense``: one fully connected layer's description, and its views once part of an ``MLP``.

A layer holds what its compiled network is built from (widths, activation and its parameter,
dropout rate, normalization, initializers); the weights themselves live in the model's one
parameter vector (fastnn/nn/network.py), of which ``W``, ``b``, ``dW`` and ``db`` are views.
"""
import numbers
import warnings

import numpy as np

from fastnn.nn import init as _init
from fastnn._validation import check_choice, check_number, check_values, check_writeable, MAX_DIM
from fastnn.nn.layers import (activation_parameter, canonical_activation, dense_kwargs,
                              resolve_activation_parameters)


class Dense:
    """One fully connected layer: ``A = act(X @ W + b)`` with samples as rows.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths; ``W`` has shape (n_in, n_out), ``b`` shape (n_out,).
    activation : str, default "relu"
        One of fastnn.nn.layers.ACTIVATIONS: "identity", "sigmoid", "tanh", "relu",
        "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "silu" (alias "swish"),
        "softplus".  Ignored for the last layer of an MLP, which outputs logits.
    init : str or initializer, optional
        Weight initializer (see fastnn.nn.init).  Default from the activation
        (``fastnn.nn.init.default_initializer``): N(0, 1/n_in) for selu, ``kaiming_normal``
        (N(0, 2/n_in)) for the ReLU family (relu, leaky_relu, elu, gelu, gelu_tanh, silu),
        ``glorot_uniform`` otherwise.  Names mean what PyTorch or Keras mean by them.
    bias_init : float or initializer, default 0.0
        0.1 before a ReLU is a common choice, so that few units start inactive.
    negative_slope : float >= 0, optional
        leaky_relu's slope for negative inputs (default 0.01), as ``torch.nn.LeakyReLU``.
    alpha : float >= 0, optional
        elu's alpha (default 1.0), as ``torch.nn.ELU`` (selu uses its fixed published
        constants).  Given to a layer that is not elu: a TypeError, since scikit-learn users
        mean an L2 penalty by alpha (the optimizer's ``weight_decay``) -- except for a
        leaky_relu layer, where it is the deprecated name of `negative_slope`
        (FutureWarning).
    dropout : float in [0, 1), default 0.0
        Inverted dropout on this layer's output while training: each unit is zeroed with
        probability ``dropout`` and the kept ones are scaled by ``1 / (1 - dropout)``;
        prediction uses every unit unscaled.  Hidden layers only.
    normalization : {None, "layer"}, default None
        "layer": layer normalization of the pre-activation (Ba et al., 2016), per sample
        over the layer's units, ``y = gain * (z - mean) / sqrt(var + 1e-5) + shift``, then
        the activation.  ``gain`` (init 1) and ``shift`` (init 0) are learned and live in
        the parameter vector after ``b``.  Hidden layers only.

    Raises
    ------
    TypeError, ValueError
        A width out of range, an unknown activation or initializer, a negative slope or
        alpha, `alpha` for a layer that is not elu (see above).

    Once the layer is part of an MLP, ``W`` and ``b`` are views into the model's parameter
    vector, and ``dW``/``db`` views into its gradient vector.  Assigning to them
    (``layer.W = new``) checks shape, dtype and finiteness and copies into the model's vector,
    so the views stay the model's; ``n_in`` and ``n_out`` are read-only, and ``activation``,
    ``negative_slope``, ``alpha``, ``dropout`` and ``normalization`` are fixed once the layer
    belongs to a model (its compiled network was built from them).
    """

    def __init__(self, n_in, n_out, activation="relu", *, init=None, bias_init=0.0,
                 negative_slope=None, alpha=None, dropout=0.0, normalization=None):
        # (W, b, dW, db, the model's lock, gain, shift, dgain, dshift) once part of an MLP
        self._views = None
        self._n_in = int(check_number(n_in, "n_in", low=1, high=MAX_DIM, integer=True))
        self._n_out = int(check_number(n_out, "n_out", low=1, high=MAX_DIM, integer=True))
        self.activation = activation
        self.init = _init.get_initializer(
            init if init is not None else _init.default_initializer(activation))
        if isinstance(bias_init, numbers.Real) and not isinstance(bias_init, (bool, np.bool_)):
            value = float(check_number(bias_init, "bias_init"))
            bias_init = _init.zeros if value == 0 else _init.constant(value)
        self.bias_init = _init.get_initializer(bias_init)
        self._negative_slope, self._alpha = resolve_activation_parameters(
            negative_slope, alpha, [self.activation], "Dense")
        self.dropout = dropout
        self.normalization = normalization

    def __repr__(self):
        drop = f", dropout={self.dropout:g}" if self.dropout else ""
        drop += f", normalization={self.normalization!r}" if self.normalization else ""
        return (f"Dense({self.n_in} -> {self.n_out}, {self.activation}, "
                f"init={self.init!r}, bias_init={self.bias_init!r}{drop})")

    def _clone(self):
        """A new, unbound layer with the same settings."""
        return Dense(self.n_in, self.n_out, self.activation, init=self.init,
                     bias_init=self.bias_init, dropout=self.dropout,
                     normalization=self.normalization,
                     **dense_kwargs(self.activation, self.negative_slope, self.alpha))

    def _activation_parameter(self):
        """The one scalar the compiled network takes for this layer's activation."""
        return activation_parameter(self.activation, self.negative_slope, self.alpha)

    @property
    def n_params(self):
        """W, b, and the layer norm's gain and shift."""
        return self.n_in * self.n_out + self.n_out * (3 if self.normalization else 1)

    def __getstate__(self):
        # a copy of a layer is a new, unbound layer (its views belong to one model)
        return dict(self.__dict__, _views=None)

    # The attributes compiled code depends on: read-only, or checked and copied on assignment.
    n_in = property(lambda self: self._n_in, doc="Input width (read-only).")
    n_out = property(lambda self: self._n_out, doc="Output width (read-only).")

    def _fixed(self, name):
        if self._views is not None:
            raise AttributeError(f"the layer's {name} cannot change once it belongs to a model "
                                 "(the compiled network was built from it); build a new model")

    @property
    def activation(self):
        return self._activation

    @activation.setter
    def activation(self, value):
        self._fixed("activation")
        self._activation = canonical_activation(value)

    @property
    def dropout(self):
        """Dropout rate of the layer's output while training (0: none)."""
        return self._dropout

    @dropout.setter
    def dropout(self, value):
        self._fixed("dropout")
        self._dropout = _check_dropout(value)

    @property
    def normalization(self):
        """None or "layer" (layer normalization before the activation)."""
        return self._normalization

    @normalization.setter
    def normalization(self, value):
        self._fixed("normalization")
        self._normalization = _check_normalization(value)

    @property
    def negative_slope(self):
        """leaky_relu slope for negative inputs (>= 0)."""
        return self._negative_slope

    @negative_slope.setter
    def negative_slope(self, value):
        self._fixed("negative_slope")
        self._negative_slope = float(check_number(value, "negative_slope", low=0.0))

    @property
    def alpha(self):
        """elu's alpha (as ``torch.nn.ELU``); unused by the other activations."""
        return self._alpha

    @alpha.setter
    def alpha(self, value):
        self._fixed("alpha")
        if self.activation == "leaky_relu":
            warnings.warn("Dense.alpha as the leaky-ReLU slope is deprecated: it is now "
                          "negative_slope (alpha is ELU's parameter, as in PyTorch; "
                          "scikit-learn's alpha is an L2 penalty: weight_decay)",
                          FutureWarning, stacklevel=2)
            self.negative_slope = value
            return
        if self.activation != "elu":
            raise TypeError(f"alpha is ELU's parameter (as in torch.nn.ELU) and this layer is "
                            f"{self.activation}: scikit-learn's alpha (an L2 penalty) is "
                            "weight_decay of the optimizer; leaky_relu's slope is "
                            "negative_slope")
        self._alpha = float(check_number(value, "alpha", low=0.0))

    def _view(self, i):
        return None if self._views is None or i >= len(self._views) else self._views[i]

    def _assign(self, i, values, name):
        if self._views is None:
            raise AttributeError(f"{name} exists once the layer is part of an MLP (it is a view "
                                 "of the model's vectors); set it after building the model")
        if i >= len(self._views):
            raise AttributeError(f"{name} exists only in a layer with normalization='layer'")
        view = self._views[i]
        converted = check_values(values, name, view.shape, view.dtype)
        with self._views[4]:
            check_writeable(view, name)
            view[...] = converted

    W = property(lambda self: self._view(0), lambda self, v: self._assign(0, v, "W"),
                 doc="Weights, shape (n_in, n_out): a view of the model's params.")
    b = property(lambda self: self._view(1), lambda self, v: self._assign(1, v, "b"),
                 doc="Biases, shape (n_out,): a view of the model's params.")
    dW = property(lambda self: self._view(2), lambda self, v: self._assign(2, v, "dW"),
                  doc="Weight gradient, shape (n_in, n_out): a view of the model's grads.")
    db = property(lambda self: self._view(3), lambda self, v: self._assign(3, v, "db"),
                  doc="Bias gradient, shape (n_out,): a view of the model's grads.")
    gain = property(lambda self: self._view(5), lambda self, v: self._assign(5, v, "gain"),
                    doc="Layer norm gain, shape (n_out,), or None: a view of the params.")
    shift = property(lambda self: self._view(6), lambda self, v: self._assign(6, v, "shift"),
                     doc="Layer norm shift, shape (n_out,), or None: a view of the params.")
    dgain = property(lambda self: self._view(7), lambda self, v: self._assign(7, v, "dgain"),
                     doc="Gradient of gain, or None: a view of the model's grads.")
    dshift = property(lambda self: self._view(8), lambda self, v: self._assign(8, v, "dshift"),
                      doc="Gradient of shift, or None: a view of the model's grads.")


def _check_alpha_fits(alpha, dtype, name="alpha"):
    """The kernels compute in the model's dtype: an alpha (leaky_relu slope, elu alpha) that
    overflows it (1e39 in float32) would turn every negative unit into -inf or NaN."""
    with np.errstate(over="ignore"):
        if not np.isfinite(np.asarray(alpha, dtype=dtype)):
            raise ValueError(f"{name}={alpha:g} overflows the model's dtype "
                             f"{np.dtype(dtype).name} (at most {np.finfo(dtype).max:g})")


def _check_dropout(rate, name="dropout"):
    return float(check_number(rate, name, low=0.0, high=1.0, high_open=True))


def _check_normalization(normalization):
    if normalization is None:
        return None
    return check_choice(normalization, "normalization", ("layer",))
