"""The network: ``Dense`` layers stacked into an ``MLP`` over one contiguous parameter vector.

Every weight and bias lives in ``MLP.params``, a single 1-D array; each layer's ``W`` and ``b``
are NumPy views into it, and the gradient vector ``MLP.grads`` has the same layout.  So an
optimizer updates all parameters in one compiled pass, and a data-parallel run all-reduces one
buffer.  Layout, for layer k with n_in inputs and n_out units::

    params = [ W_1 (n_0*n_1, row-major) | b_1 (n_1) | W_2 (n_1*n_2) | b_2 (n_2) | ... ]

The last layer computes logits (identity activation); the output link (sigmoid, softmax, exp)
belongs to the loss, which fuses it with its gradient.  ``output="auto"`` takes the link of the
last loss the model was trained or evaluated with.
"""
import copy
import numbers
import warnings

import numpy as np
from scipy import sparse as _scipy_sparse

from fastnn.runtime import boundary
from fastnn.nn import init as _init
from fastnn.runtime.state import StateLock, consistent
from fastnn._validation import (all_finite, as_ndarray, check_choice, check_number,
                                check_random_state, check_values, check_writeable, float_dtype,
                                MAX_DIM)
from fastnn.nn.layers import (activation_code, activation_parameter, canonical_activation,
                           dense_kwargs, parameter_kwargs, parameter_name,
                           resolve_activation_parameters)
from fastnn.nn.losses import get_loss

#: output link name -> the loss code whose link it is (see fastnn/_core/_losses.pxd)
OUTPUT_LINKS = {"identity": 0, "sigmoid": 3, "softmax": 4, "exp": 6}
_LEARNED_GAUSSIAN = 2
# rows per chunk when predicting: the workspace stays in cache and its size is bounded
PREDICT_CHUNK_ROWS = 1024
# inputs up to this many elements are checked for NaN/inf with one isfinite pass (a small
# temporary) rather than all_finite's sum, whose floating-point-error context costs ~1.3 us
_SMALL_INPUT = 1 << 14
# rows per chunk of input_gradient's loss gradient: its delta buffers (rows x the widest
# layer) stay in L2 for layers up to ~1000 wide in float32
SENSITIVITY_CHUNK_ROWS = 256
# FLOPs below which fastnn's compiled products run on one thread whatever the count
# (_thread_min_flops of fastnn/_core/_network.pyx): a forward pass this small takes n_threads=1
ONE_THREAD_FLOPS = 1e6
# rows of the stacked batch of jacobian (columns x rows of a chunk): one product per layer
# for all columns; 2048 was fastest for the 784-256-128-10 network's 10 columns
JACOBIAN_STACKED_ROWS = 2048


def as_input(X, name, dtype, n_features=None):
    """Convert X once to a C-contiguous 2-D array of `dtype` and check it.

    The documented conversion rule: real numeric input (bool, integers, float16/32/64) is
    cast to the model's dtype; complex, object and string arrays are rejected.  A 1-D X is an
    error (reshape it: one sample is X[None, :], one feature is X[:, None]).
    """
    if (type(X) is np.ndarray and X.dtype == dtype and X.ndim == 2 and X.flags.c_contiguous
            and 0 < X.shape[0] <= MAX_DIM and (n_features is None or X.shape[1] == n_features)
            and _finite_fast(X)):
        # fast path, the same checks: already the model's dtype and layout, nothing to
        # convert (a one-row predict spent most of its time below otherwise)
        return X
    X = as_ndarray(X, name)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {X.dtype}; expected a real numeric array "
                        "(float32 or float64; bool and integers are converted)")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_features); got shape "
                         f"{X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples (shape {X.shape}); expected at least one")
    if X.shape[0] > MAX_DIM:
        raise ValueError(f"{name} has {X.shape[0]} rows; at most {MAX_DIM} are supported")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features (shape {X.shape}); the model "
                         f"expects {n_features}")
    with np.errstate(over="ignore"):  # overflow is reported below, with the argument's name
        converted = np.ascontiguousarray(X, dtype=dtype)
    if not all_finite(converted):
        bad = np.argwhere(~np.isfinite(converted))[0]
        where = f"row {bad[0]}, column {bad[1]}"
        if np.isfinite(X[tuple(bad)]):
            raise ValueError(f"{name} has values too large for the model's dtype "
                             f"{np.dtype(dtype)} (first at {where}: {float(X[tuple(bad)]):g}); "
                             "scale the inputs or use a float64 model")
        raise ValueError(f"{name} contains NaN or infinity (first at {where})")
    return converted


def _finite_fast(X):
    """all_finite(X) for a float array, without its errstate context for small arrays."""
    if X.size <= _SMALL_INPUT:
        return bool(np.isfinite(X).all())   # a temporary of at most _SMALL_INPUT bools
    return all_finite(X)


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


class MLP:
    """A multilayer perceptron: dense layers over one contiguous parameter vector.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths ``[n_0, n_1, ..., n_L]``: n_0 inputs, L layers.  At least two entries.
    activation : str or sequence of str, default "relu"
        Hidden activation, one name for all hidden layers or one per hidden layer (L-1).
    output : {"auto", "identity", "sigmoid", "softmax", "exp"}, default "auto"
        Link applied by ``predict``.  "auto" follows the loss the model was last trained or
        evaluated with (identity before that).  An explicit link must agree with the loss.
    init : str, initializer or sequence, optional
        Weight initializer(s); default per layer from its activation (He for ReLU, Glorot
        uniform otherwise).
    bias_init : float, initializer or sequence, default 0.0
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        Precision of parameters and computation.  Inputs of another real dtype are converted
        once per call (see ``as_input``).
    seed : int, numpy.random.Generator or None
        Source of the initial weights; the same seed gives the same weights.  An int seed is
        kept (``seed`` attribute) and is also the seed of every ``fit`` called without one:
        ``MLP(..., seed=0).fit(X, y, ...)`` run twice gives the same bits.
    negative_slope : float >= 0, optional
        leaky_relu's slope for negative inputs (default 0.01), as ``torch.nn.LeakyReLU``,
        for every leaky_relu layer.
    alpha : float >= 0, optional
        elu's alpha (default 1.0), as ``torch.nn.ELU``, for every elu layer (selu uses its
        fixed published constants).  NOT scikit-learn's L2 penalty, which is
        ``weight_decay`` of the optimizer: given while no layer is elu, alpha is a
        TypeError saying so -- except for a leaky_relu model, where it is the deprecated
        name of `negative_slope` (FutureWarning).
    dropout : float or sequence of float, default 0.0
        Inverted dropout rate in [0, 1) after every hidden layer, or one rate per hidden
        layer (L-1), applied by ``fit`` only.  The mask of a unit is a function of (the fit's
        seed, epoch, sample index, layer, unit) (Philox-4x32-10, src_c/fastnn_dropout.h), so
        training stays bitwise reproducible whatever the batching, thread count or MPI ranks.
    normalization : {None, "layer"} or sequence, default None
        "layer": layer normalization before the activation of every hidden layer (or one
        setting per hidden layer); see ``Dense``.
    warn_symmetric : bool, default True
        Warn when a hidden layer starts with all weights equal (zeros/constant init): its units
        would compute the same function forever (the symmetry problem).  Set False when that
        is what you want to demonstrate.

    Raises
    ------
    TypeError, ValueError
        Malformed ``layer_sizes``, unknown names, a dtype other than float32/float64, or the
        parameter vectors do not fit in memory (MemoryError).

    See Also
    --------
    fastnn.fit : the training loop ``MLP.fit`` calls.
    fastnn.MLPEnsemble : K models of one architecture, for predictive uncertainty.

    Notes
    -----
    docs/theory.md derives what the network computes: backpropagation over layers and
    samples, initialization, the losses as likelihoods.

    Attributes
    ----------
    params : ndarray of shape (n_params,), dtype
        All weights and biases (see the module docstring for the layout).  The model owns
        this buffer: assigning ``model.params = values`` checks and copies into it (like
        ``set_params``), so the compiled code and the layers' views never see other memory.
    grads : ndarray of shape (n_params,), dtype
        Gradient of the last ``loss_and_grad``, same layout.  ``fit`` uses it as scratch
        (plain SGD updates each layer inside its weight-gradient product and never forms
        the whole vector), so read it only after ``loss_and_grad``.  Owned like ``params``.
    layers : tuple of Dense
        With ``W``, ``b``, ``dW``, ``db`` views into params/grads.
    layer_sizes : list of int, dtype : numpy.dtype
        Read-only: fixed when the model is built.
    loss_ : fastnn.nn.losses.Loss or None
        The loss of the last fit or ``loss_and_grad``; assigning checks it like ``fit`` does.
    seed : int or None
        The int seed the weights were drawn from (the constructor's, or the last
        ``init_params``'s), None when they came from a Generator, fresh entropy or a file.
        ``fit`` without a seed uses it, so its shuffling, validation split and dropout follow
        from this one number (and each epoch's index within the run): the same script gives
        the same bits, and a run continued with the same optimizer equals one long run.
        With None such a fit draws fresh entropy.  Copies and pickles keep it.

    Every write of ``params`` (fit's epochs, ``set_flat_params``, ``set_weights``, the setters,
    ``Optimizer.step``) holds the model's lock, which ``save`` also takes while it copies the
    parameters: a save from another thread during ``fit`` writes the weights between two
    epochs, never a mix.
    """

    #: (a model whose weights came from a file or an old pickle, not from init_params)
    seed = None

    def __init__(self, layer_sizes, activation="relu", output="auto", init=None,
                 bias_init=0.0, dtype=np.float32, seed=None, negative_slope=None,
                 warn_symmetric=True, dropout=0.0, normalization=None, *, alpha=None):
        sizes = _check_sizes(layer_sizes)
        n_layers = len(sizes) - 1
        acts = [canonical_activation(a) for a in
                _per_layer(activation, n_layers - 1, "activation")] + ["identity"]
        drops = _per_layer(dropout, n_layers - 1, "dropout") + [0.0]
        norms = _per_layer(normalization, n_layers - 1, "normalization") + [None]
        inits = _per_layer(init, n_layers, "init")
        biases = _per_layer(bias_init, n_layers, "bias_init")
        slope, elu_alpha = resolve_activation_parameters(negative_slope, alpha, acts, "MLP")
        layers = [Dense(sizes[k], sizes[k + 1], acts[k], init=inits[k], bias_init=biases[k],
                        dropout=drops[k], normalization=norms[k],
                        **dense_kwargs(acts[k], slope, elu_alpha))
                  for k in range(n_layers)]
        self._build(layers, output, dtype, seed, warn_symmetric)

    @classmethod
    def from_layers(cls, layers, output="auto", dtype=np.float32, seed=None,
                    warn_symmetric=True):
        """Build from explicit ``Dense`` layers (per-layer init, activation, slope).

        The last layer's activation is replaced by identity (logits): the output link comes
        from ``output`` / the loss.

        Parameters
        ----------
        layers : sequence of Dense
            New layers (not part of another model) whose widths chain: ``layers[k].n_in ==
            layers[k - 1].n_out``.
        output, dtype, seed, warn_symmetric
            As for ``MLP``.

        Returns
        -------
        MLP

        Raises
        ------
        TypeError, ValueError
            Not Dense layers, widths that do not chain, or a layer already in a model.
        """
        layers = list(layers)
        if not layers or not all(isinstance(layer, Dense) for layer in layers):
            raise TypeError("layers must be a non-empty sequence of fastnn.Dense")
        for k in range(1, len(layers)):
            if layers[k].n_in != layers[k - 1].n_out:
                raise ValueError(f"layers[{k}] has n_in={layers[k].n_in}; expected "
                                 f"{layers[k - 1].n_out} (n_out of layers[{k - 1}])")
        if any(layer.W is not None for layer in layers):
            raise ValueError("a Dense layer already belongs to a model; create new layers")
        layers[-1].activation = "identity"
        if layers[-1].dropout:
            raise ValueError(f"the last layer has dropout={layers[-1].dropout}; dropout "
                             "applies to hidden layers only (the last one outputs logits)")
        if layers[-1].normalization:
            raise ValueError(f"the last layer has normalization="
                             f"{layers[-1].normalization!r}; normalization applies to hidden "
                             "layers only (the last one outputs logits)")
        self = cls.__new__(cls)
        self._build(layers, output, dtype, seed, warn_symmetric)
        return self

    # ------------------------------------------------------------------ construction

    def _build(self, layers, output, dtype, seed, warn_symmetric, initialize=True):
        """Own the vectors and bind the views; initialize=False leaves zeros (fastnn.load
        fills the parameters from the file, so a large network is never initialised)."""
        dtype = float_dtype(dtype)
        for k, layer in enumerate(layers):
            _check_alpha_fits(layer._activation_parameter(), dtype,
                              f"layer {k}'s {parameter_name(layer.activation)}")
        self._dtype = np.dtype(dtype)
        # the state lock (fastnn/runtime/state.py): every write of the parameters, the loss and the
        # output link holds it, and save, predict and export read under it
        self._lock = StateLock()
        self._loss = None
        self.preprocessor_ = None  # fastnn.io.tabular.Preprocessor of a `fastnn train` model
        self.output = output
        self._layers = tuple(layers)
        sizes = [layers[0].n_in] + [layer.n_out for layer in layers]
        self._spec = boundary.NetSpec(
            sizes, [activation_code(layer.activation) for layer in layers],
            [layer._activation_parameter() for layer in layers],
            [layer.dropout for layer in layers],
            [int(bool(layer.normalization)) for layer in layers])
        try:
            self._params = np.zeros(self._spec.n_params, dtype=dtype)
            self._grads = np.zeros(self._spec.n_params, dtype=dtype)
        except MemoryError:
            n_bytes = 2 * self._spec.n_params * dtype.itemsize
            raise MemoryError(f"an MLP {sizes} has {self._spec.n_params} parameters: "
                              f"its parameter and gradient vectors need {n_bytes} bytes") from None
        self._bind_views()
        if initialize:
            self.init_params(seed, warn_symmetric=warn_symmetric)

    def _bind_views(self):
        w_off, b_off = self._spec.w_offsets, self._spec.b_offsets
        for k, layer in enumerate(self._layers):
            n_w = layer.n_in * layer.n_out
            shape = (layer.n_in, layer.n_out)
            norm = ()
            if layer.normalization:       # [b | gain | shift]
                n, o = layer.n_out, b_off[k]
                norm = (self._params[o + n:o + 2 * n], self._params[o + 2 * n:o + 3 * n],
                        self._grads[o + n:o + 2 * n], self._grads[o + 2 * n:o + 3 * n])
            layer._views = (self._params[w_off[k]:w_off[k] + n_w].reshape(shape),
                            self._params[b_off[k]:b_off[k] + layer.n_out],
                            self._grads[w_off[k]:w_off[k] + n_w].reshape(shape),
                            self._grads[b_off[k]:b_off[k] + layer.n_out],
                            self._lock) + norm

    # ------------------------------------------------------------------ owned state
    # What compiled code reads or writes through is owned here: read-only, or checked and
    # copied into the owned buffers on assignment (a public attribute must never point compiled code at the wrong memory).

    @property
    def params(self):
        return self._owned(self._params, "params")

    @params.setter
    def params(self, values):
        self.set_flat_params(values)

    @property
    def grads(self):
        return self._owned(self._grads, "grads")

    def _owned(self, vector, name):
        """An owned vector, checked against the network (O(1)): numpy lets a user change an
        array's dtype, shape or strides in place (``model.params.dtype = np.float32``), and
        compiled code must not see such a vector, nor report it as a Cython signature error."""
        if vector.dtype != self._dtype or vector.shape != (self._spec.n_params,) or \
                not vector.flags.c_contiguous:
            raise ValueError(
                f"model.{name} was changed in place: it is a {vector.dtype} array of shape "
                f"{vector.shape} (C-contiguous: {vector.flags.c_contiguous}); the network "
                f"expects a C-contiguous {self._dtype.name} vector of {self._spec.n_params} "
                f"entries. Set the array's dtype/shape/strides back (or build the model "
                "again); to change values, assign model.params = values")
        return vector

    @grads.setter
    def grads(self, values):
        converted = check_values(values, "grads", (self.n_params,), self.dtype)
        with self._lock:
            check_writeable(self.grads, "model.grads")
            self.grads[...] = converted

    @property
    def dtype(self):
        """numpy.float32 or numpy.float64 (read-only)."""
        return self._dtype

    @property
    def layer_sizes(self):
        """Widths [n_0, ..., n_L] (a new list; read-only)."""
        return [int(n) for n in self._spec.sizes]

    @property
    def layers(self):
        return self._layers

    @property
    def output(self):
        return self._output

    @output.setter
    def output(self, value):
        value = check_choice(value, "output", ("auto",) + tuple(OUTPUT_LINKS))
        with self._lock:  # the link a concurrent predict or save reads
            if value != "auto" and self._loss is not None and \
                    value != self._loss.output_name:
                raise ValueError(f"output={value!r} does not match the model's loss "
                                 f"{type(self._loss).__name__}, whose link is "
                                 f"{self._loss.output_name!r}")
            self._output = value

    @property
    def loss_(self):
        return self._loss

    @loss_.setter
    def loss_(self, loss):
        loss = None if loss is None else self._use_loss(loss)
        with self._lock:  # the link a concurrent predict or save reads
            self._loss = loss

    def set_weights(self, coefs=None, intercepts=None):
        """Copy weight matrices and bias vectors into the model, all checked before any is written.

        The validated entry point for code that holds per-layer arrays (the scikit-learn
        estimators' ``coefs_`` / ``intercepts_`` setters).

        Parameters
        ----------
        coefs : list or tuple of array-like, one per layer, or None
            ``coefs[k]`` of shape (n_k, n_{k+1}), real and finite, representable in the
            model's dtype (cast to it).  None keeps the current weights.
        intercepts : list or tuple of array-like, one per layer, or None
            ``intercepts[k]`` of shape (n_{k+1},).  None keeps the current biases.

        Raises
        ------
        TypeError, ValueError
            Naming the entry (``coefs[1] has shape (3, 4); expected (4, 2)``); the model is
            unchanged then.
        """
        return self._set_weights(coefs, intercepts, ("coefs", "intercepts"))

    def _set_weights(self, coefs, intercepts, names):
        """set_weights, its messages naming the lists `names` (the estimators' "coefs_")."""
        coefs = self.coefs if coefs is None else coefs
        intercepts = self.intercepts if intercepts is None else intercepts
        for name, values in zip(names, (coefs, intercepts)):
            if not isinstance(values, (list, tuple)):
                raise TypeError(f"{name} must be a list or tuple of arrays, one per layer; "
                                f"got {type(values).__name__}")
            if len(values) != self.n_layers:
                raise ValueError(f"{name} has {len(values)} entries; expected {self.n_layers} "
                                 "(one per layer)")
        W = [check_values(c, f"{names[0]}[{k}]", (layer.n_in, layer.n_out), self.dtype)
             for k, (c, layer) in enumerate(zip(coefs, self._layers))]
        b = [check_values(c, f"{names[1]}[{k}]", (layer.n_out,), self.dtype)
             for k, (c, layer) in enumerate(zip(intercepts, self._layers))]
        with self._lock:
            check_writeable(self.params, "model.params")
            for layer, w, bias in zip(self._layers, W, b):
                layer.W[...] = w
                layer.b[...] = bias
        return self

    def init_params(self, seed=None, warn_symmetric=True):
        """(Re)draw all weights and biases from the layers' initializers.

        One generator serves all layers in order, so layers get different draws and the same
        seed gives the same parameters.

        Parameters
        ----------
        seed : int, numpy.random.Generator or None
            None draws fresh entropy.  Kept as ``self.seed`` when an int (None otherwise): the
            seed of later fits called without one.
        warn_symmetric : bool, default True
            Warn when a hidden layer starts with identical weights (see ``MLP``).

        Returns
        -------
        self
        """
        rng = check_random_state(seed)
        self.seed = None if seed is None or isinstance(seed, np.random.Generator) else \
            int(seed)
        drawn = [(layer.init((layer.n_in, layer.n_out), rng=rng, dtype=self.dtype),
                  layer.bias_init((layer.n_out,), rng=rng, dtype=self.dtype))
                 for layer in self.layers]
        with self._lock:  # every layer in one step for a reader in another thread
            for layer, (W, b) in zip(self.layers, drawn):
                layer.W[...] = W
                layer.b[...] = b
                if layer.normalization:   # the identity map at the start
                    layer.gain[...] = 1
                    layer.shift[...] = 0
            self.grads[...] = 0
        for k, layer in enumerate(self.layers):
            hidden = k < len(self.layers) - 1
            if warn_symmetric and hidden and layer.n_out > 1 and _init.is_symmetric(layer.init):
                warnings.warn(
                    f"layer {k} ({layer!r}) starts with identical weights for all its "
                    f"{layer.n_out} units: they get identical gradients and stay identical "
                    "(the symmetry problem). Use a random initializer, or pass "
                    "warn_symmetric=False to demonstrate it.", UserWarning, stacklevel=3)
        return self

    # ------------------------------------------------------------------ structure

    @property
    def n_params(self):
        """Number of weights and biases."""
        return self._spec.n_params

    @property
    def n_layers(self):
        return len(self.layers)

    @property
    def n_inputs(self):
        return self._spec.n_inputs

    @property
    def n_outputs(self):
        """Width of the last layer (for a learned-variance loss: 2 per target)."""
        return self._spec.n_outputs

    @property
    def coefs(self):
        """The weight matrices W_k, views of shape (n_{k-1}, n_k)."""
        return [layer.W for layer in self.layers]

    @property
    def intercepts(self):
        """The bias vectors b_k, views of shape (n_k,)."""
        return [layer.b for layer in self.layers]

    def __repr__(self):
        acts = [layer.activation for layer in self.layers[:-1]]
        drops = [layer.dropout for layer in self.layers[:-1]]
        drop = f", dropout={drops}" if any(drops) else ""
        return (f"MLP({self.layer_sizes}, activation={acts}, output={self._link_name()!r}, "
                f"dtype={self.dtype.name}, n_params={self.n_params}{drop})")

    def summary(self):
        """A printable table: layers, shapes, activations, initializers, parameter counts."""
        rows = [("layer", "W shape", "b shape", "activation", "init", "bias init", "params")]
        for k, layer in enumerate(self.layers):
            rows.append((str(k), f"({layer.n_in}, {layer.n_out})", f"({layer.n_out},)",
                         layer.activation, repr(layer.init), repr(layer.bias_init),
                         f"{layer.n_params:,}"))
        if any(layer.normalization for layer in self.layers):
            rows = [rows[0] + ("norm",)] + [
                row + (layer.normalization or "-",) for row, layer in zip(rows[1:], self.layers)]
        if any(layer.dropout for layer in self.layers):
            rows = [rows[0] + ("dropout",)] + [
                row + (f"{layer.dropout:g}" if layer.dropout else "-",)
                for row, layer in zip(rows[1:], self.layers)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                 for row in rows]
        rule = "-" * max(len(line) for line in lines)
        return "\n".join([f"MLP {self.layer_sizes}, {self.dtype.name}", rule, lines[0], rule,
                          *lines[1:], rule,
                          f"output link: {self._summary_link()}, "
                          f"total parameters: {self.n_params:,}"])

    def _summary_link(self):
        # before the first fit an "auto" output has no link yet: saying "identity" would
        # mislead whoever is about to train a classifier
        if self.output == "auto" and self.loss_ is None:
            return "set by the loss at fit"
        return self._link_name()

    # ------------------------------------------------------------------ parameters

    def get_flat_params(self):
        """A copy of the flat parameter vector.

        Returns
        -------
        ndarray of shape (n_params,), the model's dtype
            Every weight and bias in the layout of the module docstring (one epoch boundary
            of a fit running in another thread).
        """
        with consistent(self):
            return self.params.copy()

    def set_flat_params(self, params):
        """Copy a flat parameter vector into the model (cast to its dtype).

        Parameters
        ----------
        params : array-like of shape (n_params,), real
            In the layout of ``get_flat_params``.

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            Another shape, a non-real dtype, NaN/inf, values too large for the model's dtype,
            or read-only params; the model is unchanged then.
        """
        converted = check_values(params, "params", (self.n_params,), self.dtype)
        with self._lock:
            check_writeable(self.params, "model.params")
            self.params[...] = converted
        return self

    def get_params(self):
        """Deprecated: use ``get_flat_params``.

        scikit-learn's ``get_params`` returns hyperparameters; this one returned the weights,
        so it warns (FutureWarning) and will be removed.
        """
        warnings.warn("MLP.get_params() returns the flat weight vector, not hyperparameters "
                      "as in scikit-learn; it is renamed get_flat_params() and will be removed",
                      FutureWarning, stacklevel=2)
        return self.get_flat_params()

    def set_params(self, params):
        """Deprecated: use ``set_flat_params`` (see ``get_params``).

        Parameters
        ----------
        params : array-like of shape (n_params,)
        """
        warnings.warn("MLP.set_params(params) sets the flat weight vector, not hyperparameters "
                      "as in scikit-learn; it is renamed set_flat_params() and will be removed",
                      FutureWarning, stacklevel=2)
        return self.set_flat_params(params)


    def copy(self):
        """An independent model with the same structure, parameters and loss (one epoch
        boundary of a fit running in another thread)."""
        other = MLP.from_layers([layer._clone() for layer in self.layers],
                                output="auto", dtype=self.dtype, warn_symmetric=False)
        with consistent(self):
            other.params[...] = self.params
            other.grads[...] = self.grads
            other.loss_ = self.loss_
            other.output = self.output
            other.preprocessor_ = self.preprocessor_
            other.seed = self.seed
        return other

    def astype(self, dtype):
        """A copy computing in another dtype (parameters cast).

        Parameters
        ----------
        dtype : numpy.float32 or numpy.float64

        Returns
        -------
        MLP
        """
        other = MLP.from_layers([layer._clone() for layer in self.layers],
                                output="auto", dtype=dtype, warn_symmetric=False)
        with consistent(self):
            other.params[...] = self.params
            other.loss_ = self.loss_
            other.output = self.output
            other.seed = self.seed
        return other

    # ------------------------------------------------------------------ computation

    def _link_kind(self):
        if self.output != "auto":
            return OUTPUT_LINKS[self.output]
        return self.loss_.kind if self.loss_ is not None else OUTPUT_LINKS["identity"]

    def _link_name(self):
        if self.output != "auto":
            return self.output
        return self.loss_.output_name if self.loss_ is not None else "identity"

    def _use_loss(self, loss):
        loss = get_loss(loss)
        if self.output != "auto" and self.output != loss.output_name:
            raise ValueError(f"the model's output link is {self.output!r} but "
                             f"{type(loss).__name__} uses {loss.output_name!r}; build the "
                             "model with output='auto' or the matching link")
        n_expected = loss.n_outputs(1) if loss.kind == _LEARNED_GAUSSIAN else None
        if n_expected is not None and self.n_outputs % 2:
            raise ValueError(f"{type(loss).__name__} with learned variance needs an even "
                             f"number of outputs (mean and log-variance per target); the "
                             f"model has {self.n_outputs}")
        return loss

    def _forward_flops_per_row(self):
        """2 W: the FLOPs of one sample's forward pass (the layers are fixed at construction,
        so this is computed once)."""
        flops = self.__dict__.get("_flops_per_row")
        if flops is None:
            sizes = [layer.n_in for layer in self.layers] + [self.layers[-1].n_out]
            flops = self.__dict__["_flops_per_row"] = 2.0 * sum(
                a * b for a, b in zip(sizes[:-1], sizes[1:]))
        return flops

    def _input(self, X):
        """X converted once for _forward: a checked C-contiguous array of the model's dtype,
        or a scipy.sparse X as-is (fastnn.nn.sparse converts it)."""
        from fastnn.nn.sparse import CSRInput
        if _scipy_sparse.issparse(X) or isinstance(X, CSRInput):
            return X
        return as_input(X, "X", self.dtype, self.n_inputs)

    def _forward(self, X, kind=None):
        """The logits (kind: identity) or the output of link `kind` (None: the model's
        link, read with the parameters) for an X converted by _input; computed inside
        ``consistent(self)``, so a fit in another thread is seen at one epoch boundary (its
        running epoch ends first).  Returns (out, kind)."""
        from fastnn.nn.sparse import CSRInput, forward_kind
        with consistent(self):
            if kind is None:
                kind = self._link_kind()
            # the compiled sparse first layer, X kept sparse (a CSRInput: converted once
            # already, e.g. by an ensemble for all its members)
            if _scipy_sparse.issparse(X) or isinstance(X, CSRInput):
                return forward_kind(self, X, kind, kind != OUTPUT_LINKS["identity"],
                                    PREDICT_CHUNK_ROWS), kind
            out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
            # every core (the same bits for any count), this thread's floating-point mode;
            # a forward pass below one thread's share of a product has nothing to share out,
            # so a small predict skips resolving the default count (environment, affinity,
            # CPU quota: most of a one-row predict's time)
            flops = X.shape[0] * self._forward_flops_per_row()
            boundary.net_forward(self._spec, self.params, X, out, kind, PREDICT_CHUNK_ROWS,
                                 n_threads=1 if flops < ONE_THREAD_FLOPS else None)
        return out, kind

    def forward(self, X):
        """Logits of the last layer (before the output link).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
            Converted once to the model's dtype (see ``as_input``); a sparse X is kept
            sparse (fastnn.nn.sparse: the first layer over its stored entries).

        Returns
        -------
        Z : ndarray of shape (n_samples, n_outputs), the model's dtype
            Logits (not probabilities): the losses take these.
        """
        return self._forward(self._input(X), OUTPUT_LINKS["identity"])[0]

    def predict(self, X):
        """The model's prediction: the output link applied to the logits.

        Identity output: the regression mean; sigmoid/softmax: class probabilities; exp: the
        Poisson rate; a learned-variance Gaussian: the mean columns only (see
        ``predict_std``).  Computed in chunks of PREDICT_CHUNK_ROWS rows through a workspace
        allocated per call, so concurrent calls on one model are safe.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), real
            Converted once to the model's dtype (see ``as_input``).

        Raises
        ------
        TypeError, ValueError
            X is not real, not 2-D, has the wrong width, or holds NaN/inf.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs) (n_outputs // 2 for learned variance)
            The model's dtype.  Probabilities in [0, 1] (sigmoid, softmax; not logits, see
            ``forward``), or the mean / rate in the units of y.
        """
        out, kind = self._forward(self._input(X))
        if kind == _LEARNED_GAUSSIAN:
            return np.ascontiguousarray(out[:, : self.n_outputs // 2])
        return out

    def predict_proba(self, X):
        """Class probabilities (sigmoid or softmax output link), shape (n_samples, n_outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), real

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), the model's dtype
            Probabilities in [0, 1] (not logits): rows sum to 1 for softmax; one independent
            probability per output for sigmoid.

        Raises
        ------
        ValueError
            The model's output link is not sigmoid or softmax.
        """
        X = self._input(X)
        with consistent(self):  # the link checked is the link predicted with
            if self._link_name() not in ("sigmoid", "softmax"):
                raise ValueError(f"predict_proba needs a sigmoid or softmax output; this "
                                 f"model's output link is {self._link_name()!r}")
            return self.predict(X)

    def predict_std(self, X):
        """Predicted standard deviation exp(s/2) of a learned-variance Gaussian model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), real

        Raises
        ------
        ValueError
            The model was not trained with ``GaussianNLL(sigma="learned")``.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs // 2), the model's dtype
            Standard deviations (not variances), in the units of y.
        """
        X = self._input(X)
        with consistent(self):  # the link checked is the link predicted with
            if self._link_kind() != _LEARNED_GAUSSIAN:
                raise ValueError("predict_std needs a model trained with "
                                 "GaussianNLL(sigma='learned')")
            out = self._forward(X, _LEARNED_GAUSSIAN)[0]
        return np.ascontiguousarray(out[:, self.n_outputs // 2:])

    # ------------------------------------------------------------------ input derivatives

    def input_gradient(self, X, y=None, loss=None, output=None, *, of="output",
                       reduction="none", sample_weight=None):
        """Gradient with respect to the inputs, by the compiled backward pass run down to X.

        Exactly one of `y` (the gradient of the loss given targets) and `output` (the gradient
        of one output column) is given.  No finite differences: one forward and one backward
        pass per chunk of rows (a bounded workspace), in the model's dtype, without the GIL.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
            Converted once to the model's dtype (see ``as_input``); a sparse X is kept
            sparse (fastnn.nn.sparse: the first layer over its stored entries).
        y : array-like, optional
            Targets as `loss` accepts them: return the loss gradient.
        loss : str or fastnn.nn.losses.Loss, optional
            The loss for `y`; default: the loss the model was last trained with.
        output : int, optional
            Return d y_j / dX for output column j in [0, n_outputs) (see `of`).
        of : {"output", "logits"}, default "output"
            With `output`: "output" differentiates what the output link gives (probabilities
            for sigmoid/softmax, the rate for exp; for ``GaussianNLL("learned")`` columns
            0..k-1 are the means and k..2k-1 the standard deviations exp(s/2)); "logits" the
            last layer before the link.
        reduction : {"none", "mean"}, default "none"
            With `y`: "none" gives row i = w_i dl_i/dx_i, the per-sample loss gradient (what
            a sensitivity analysis wants); "mean" gives the gradient of the (weighted) mean
            loss sum_i w_i l_i / sum_i w_i with respect to X, i.e. the same rows divided by
            sum_i w_i.
        sample_weight : array-like of shape (n_samples,), optional
            Weights w_i (default 1), with `y` only: the loss is the weighted mean
            sum_i w_i l_i / sum_i w_i.

        Returns
        -------
        ndarray of shape (n_samples, n_inputs), the model's dtype

        Raises
        ------
        ValueError, TypeError
            Both or neither of `y` and `output`; `output` out of range; `y` without a loss
            when the model has never been trained; bad X, y or sample_weight.
        """
        if (y is None) == (output is None):
            raise ValueError("input_gradient needs exactly one of y (the gradient of the loss "
                             "given targets) and output (the gradient of one output column); "
                             f"got {'both' if y is not None else 'neither'}")
        check_choice(of, "of", ("output", "logits"))
        check_choice(reduction, "reduction", ("none", "mean"))
        if y is None:
            if loss is not None or sample_weight is not None or reduction != "none":
                raise ValueError("loss, sample_weight and reduction apply to the loss "
                                 "gradient; pass y with them, or output alone")
            j = check_number(output, "output", low=0, high=self.n_outputs - 1, integer=True)
            return self._jacobian(X, of, int(j), int(j) + 1)[:, 0, :]
        if of != "output":
            raise ValueError(f"of={of!r} applies to output=; the loss gradient is always "
                             "taken through the loss's own output link")
        if loss is None:
            if self.loss_ is None:
                raise ValueError("the model has not been trained, so it has no loss: pass "
                                 "loss= with y")
            loss = self.loss_
        loss, X, Y, labels, sw, sigma = self.prepare_data(X, y, loss, sample_weight)
        scale = 1.0
        if reduction == "mean":
            weight_sum = float(X.shape[0]) if sw is None else float(sw.sum(dtype=np.float64))
            if not weight_sum > 0:
                raise ValueError("sample_weight sums to 0: the mean loss is undefined")
            scale = 1.0 / weight_sum
        out = np.empty((X.shape[0], self.n_inputs), dtype=self.dtype)
        with consistent(self):  # one epoch boundary of a fit in another thread
            boundary.input_loss_grad(
                self._spec, self.params, X, loss.kind, int(loss.full), loss.scalar_sigma, Y,
                labels, sw, sigma, scale, out, SENSITIVITY_CHUNK_ROWS)
        return out

    def jacobian(self, X, of="output"):
        """The Jacobian of the outputs with respect to the inputs, per sample.

        ``J[i, j, c] = d y_ij / d x_ic`` by the compiled backward pass run down to X, without
        the GIL, in the model's dtype: per chunk of JACOBIAN_STACKED_ROWS // n_outputs rows,
        one forward pass, then the n_outputs unit seeds stacked into one batch that is pulled
        back with one matrix product per layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
        of : {"output", "logits"}, default "output"
            "output": y is what the output link gives (``predict``/``predict_proba``; for
            ``GaussianNLL("learned")`` the k means then the k standard deviations exp(s/2));
            "logits": y is the last layer before the link (``forward``).

        Returns
        -------
        ndarray of shape (n_samples, n_outputs, n_inputs), the model's dtype
            Units of y (probability, mean, ...; logits with of="logits") per unit of x.
        """
        return self._jacobian(X, of, 0, self.n_outputs)

    def _jacobian(self, X, of, first, stop):
        """Columns [first, stop) of the Jacobian, shape (n_samples, stop - first, n_inputs)."""
        check_choice(of, "of", ("output", "logits"))
        X = as_input(X, "X", self.dtype, self.n_inputs)
        out = np.empty((X.shape[0], stop - first, self.n_inputs), dtype=self.dtype)
        with consistent(self):  # the link and parameters of one epoch boundary
            # the link by name (KL's softmax, a fixed-sigma Gaussian's identity), as a loss code
            link = self._link_name()
            kind = _LEARNED_GAUSSIAN if link == "gaussian" else OUTPUT_LINKS[link]
            boundary.input_jacobian(self._spec, self.params, X, int(of == "output"), kind,
                                    first, stop, out, JACOBIAN_STACKED_ROWS)
        return out

    def prepare_data(self, X, y, loss, sample_weight=None, *, whole=True):
        """Validate and convert (X, y, sample_weight, per-sample sigma) once for compiled code.

        Returns (loss, X, Y, labels, sample_weight, sigma) with every array C-contiguous in the
        model's dtype (labels: intp), ready for the compiled kernels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs), real
        y : array-like
            Targets in the form the loss accepts, one row per sample.
        loss : str or fastnn.nn.losses.Loss
        sample_weight : array-like of shape (n_samples,), optional
            One weight per sample (default 1): the loss is the weighted mean
            sum_i w_i l_i / sum_i w_i (only the ratios matter).
        whole : bool, default True
            As for ``prepare_targets``.

        Raises
        ------
        TypeError, ValueError
            Malformed X, y or sample_weight, or a loss that does not fit the model.
        """
        loss = self._use_loss(loss)  # a bad loss is reported before a bad X
        X = as_input(X, "X", self.dtype, self.n_inputs)
        loss, Y, labels, sw, sigma = self.prepare_targets(X.shape[0], y, loss, sample_weight,
                                                          whole=whole)
        return loss, X, Y, labels, sw, sigma

    def _prepare_any(self, X, y, loss, sample_weight, name="X", *, whole=True):
        """prepare_data, or for a scipy.sparse X its checked CSR form (fastnn.nn.sparse.as_csr,
        X kept sparse: the compiled sparse kernels of fastnn/_core/_sparse.pyx) with
        prepare_targets.  name: X's name in errors about a sparse X; whole: as for
        prepare_targets."""
        from fastnn.nn.sparse import CSRInput, as_csr, check_model
        if not _scipy_sparse.issparse(X) and not isinstance(X, CSRInput):
            return self.prepare_data(X, y, loss, sample_weight, whole=whole)
        loss = self._use_loss(loss)  # a bad loss is reported before a bad X, as for dense X
        check_model(self, name)
        if not isinstance(X, CSRInput):
            X = as_csr(X, name, self.dtype, self.n_inputs)
        elif X.data.dtype != self.dtype or X.shape[1] != self.n_inputs:
            # already converted (fastnn.ensemble converts once for all its members)
            raise ValueError(f"{name} is a CSRInput of dtype {X.data.dtype} and shape "
                             f"{X.shape}; the model expects {self.dtype} and {self.n_inputs} "
                             "columns")
        return (loss, X) + self.prepare_targets(X.shape[0], y, loss, sample_weight,
                                                whole=whole)[1:]

    def prepare_targets(self, n, y, loss, sample_weight=None, *, whole=True):
        """The part of ``prepare_data`` that does not touch X, for n samples.

        Parameters
        ----------
        n : int
            Number of samples (rows of X, which may be sparse).
        y : array-like
            Targets in the form the loss accepts (see fastnn.nn.losses), one row per sample.
        loss : str or fastnn.nn.losses.Loss
        sample_weight : array-like of shape (n,), optional
            One weight per sample (default 1): the loss is the weighted mean
            sum_i w_i l_i / sum_i w_i (only the ratios matter).
        whole : bool, default True
            False: the n samples are an MPI rank's shard, whose weights may all be zero
            (``Loss.prepare_sample_weight``).

        Returns
        -------
        (loss, Y, labels, sample_weight, sigma), each array C-contiguous in the model's dtype
        (labels: intp) or None.

        Raises
        ------
        ValueError
            y missing or not one row per sample, or targets/weights the loss rejects.
        """
        loss = self._use_loss(loss)
        if _scipy_sparse.issparse(y):
            as_ndarray(y, "y")  # the TypeError that says so (len() of it would be scipy's)
        if y is None or not hasattr(y, "__len__") or getattr(y, "ndim", 1) == 0:
            raise ValueError(f"y is {y!r}; expected an array of targets with one row per "
                             f"sample ({n} here)")
        y_len = len(y)
        if y_len != n:
            raise ValueError(f"X has {n} samples but y has {y_len}; expected one target row "
                             "per sample")
        Y, labels = loss.prepare_targets(y, self.n_outputs, self.dtype)
        sw = None
        if sample_weight is not None:
            sw = loss.prepare_sample_weight(sample_weight, n, self.dtype, whole=whole)
        sigma = loss.prepare_sigma(n, self.dtype)
        return loss, Y, labels, sw, sigma

    def loss_and_grad(self, X, y, loss, sample_weight=None):
        """Mean loss over the samples, and its gradient into ``self.grads``.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
            A sparse X is kept sparse (fastnn.nn.sparse: the first layer over its stored
            entries).
        y : array-like
            Targets in the form the loss accepts (see fastnn.nn.losses).
        loss : str or fastnn.nn.losses.Loss
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights; the loss is then sum_i w_i l_i / sum_i w_i.

        Returns
        -------
        loss : float
            The (weighted) mean loss.  ``self.grads`` holds its gradient w.r.t. ``params``.
        """
        check_writeable(self.grads, "model.grads")
        loss, X, Y, labels, sw, sigma = self._prepare_any(X, y, loss, sample_weight)
        weight_sum = float(X.shape[0]) if sw is None else float(sw.sum(dtype=np.float64))
        with self._lock:  # fit uses grads meanwhile
            if isinstance(X, np.ndarray):
                total = boundary.net_loss_grad(
                    self._spec, self.params, self.grads, X, loss.kind, int(loss.full),
                    loss.scalar_sigma, Y, labels, sw, sigma, 1.0 / weight_sum)
            else:  # a fastnn.nn.sparse.CSRInput: the compiled sparse first layer
                total = boundary.csr_loss_grad(
                    self._spec, self.params, self.grads, X.data, X.indices, X.indptr,
                    X.shape[1], loss.kind, int(loss.full), loss.scalar_sigma, Y, labels, sw,
                    sigma, 1.0 / weight_sum)
        self.loss_ = loss
        return total / weight_sum

    def fit(self, X, y, loss=None, optimizer=None, **kwargs):
        """Train with minibatch SGD; see ``fastnn.fit`` for every argument.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
        y : array-like
            Targets in the form the loss accepts.
        loss : str or fastnn.nn.losses.Loss, optional
            Any name of ``fastnn.nn.losses.LOSS_NAMES`` (Keras and PyTorch spellings included).
            Omitted: the loss of the previous fit (or of a loaded model), else the loss that
            an explicit ``output`` link implies; otherwise a TypeError that names the
            candidates, since guessing between classification and regression from y alone
            would be a guess.
        optimizer : fastnn.SGD, fastnn.Adam, fastnn.AdamW, "sgd", "adam", "adamw" or None
        **kwargs
            epochs, batch_size, validation_split, early_stopping, callbacks, verbose, ...:
            see ``fastnn.fit``.

        Returns
        -------
        fastnn.History
        """
        from fastnn.training.trainer import fit
        return fit(self, X, y, self._default_loss(loss, y), optimizer, **kwargs)

    def _default_loss(self, loss, y):
        if loss is not None:
            return loss
        if self.loss_ is not None:
            return self.loss_
        by_link = {"softmax": "cross_entropy", "sigmoid": "bce", "exp": "poisson",
                   "identity": "mse"}
        if self.output != "auto":
            return by_link[self.output]
        raise TypeError("fit() needs a loss; fastnn does not guess classification versus "
                        f"regression from y.{_loss_hint(y, self.n_outputs)} Pass e.g. "
                        "loss=\"cross_entropy\" (class labels 0..k-1 or one-hot rows, softmax "
                        "output), loss=\"bce\" (0/1 targets, sigmoid), loss=\"mse\" "
                        "(regression); fastnn.nn.losses.LOSS_NAMES lists every name, including "
                        "the Keras and PyTorch spellings (\"sparse_categorical_crossentropy\", "
                        "\"mean_squared_error\", \"CrossEntropyLoss\", ...)")

    def evaluate(self, X, y, loss=None, sample_weight=None):
        """The mean loss and the metric on (X, y), as ``fit`` reports them for validation.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
            A sparse X is kept sparse (fastnn.nn.sparse).
        y : array-like
            Targets in the form the loss accepts.
        loss : str or fastnn.nn.losses.Loss, optional
            Default: the loss the model was trained with (see ``fit``).
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the weighted mean loss (sum_i w_i l_i / sum_i w_i) and of the metric.

        Returns
        -------
        loss : float
            The (weighted) mean loss, in the units of the loss (nats per sample for the
            likelihood losses).
        metric : float
            Accuracy (sigmoid or softmax output: the fraction of correct predictions) or the
            coefficient of determination R^2 (averaged over outputs) otherwise.

        Raises
        ------
        TypeError, ValueError
            As ``fit`` for malformed X, y or sample_weight, or no loss known.
        """
        from fastnn.training.trainer import evaluate  # the same code that scores validation data
        loss, X, Y, labels, sw, sigma = self._prepare_any(X, y, self._default_loss(loss, y),
                                                          sample_weight)
        self.loss_ = loss
        return evaluate(self, loss, X, Y, labels, sw, sigma)

    def score(self, X, y, sample_weight=None):
        """The metric of ``evaluate``: accuracy for classifiers, R^2 otherwise (as scikit-learn).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix/array of shape (n_samples, n_inputs)
        y : array-like
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the weighted mean (as ``evaluate``).

        Returns
        -------
        float
            Accuracy as a fraction in [0, 1] (not a percentage), or R^2 (at most 1).
        """
        return self.evaluate(X, y, sample_weight=sample_weight)[1]

    # ------------------------------------------------------------------ persistence

    def save(self, path, optimizer=None):
        """Write the model (and optionally its optimizer) to one ``.npz`` file, atomically.

        The file holds the parameter vector and a JSON description; nothing in it is pickled.
        ``fastnn.load(path)`` rebuilds a model whose predictions are bitwise identical.  See
        ``fastnn.io.saving.save_model`` for the format.

        Parameters
        ----------
        path : str or os.PathLike
            Written exactly as given (no suffix is added); an existing file is replaced only
            once the new one is complete.
        optimizer : fastnn.SGD, fastnn.Adam, fastnn.AdamW or None
            Also store its hyperparameters, schedule and state (velocity / moments, step
            count), so that training can resume: ``fastnn.load(path, with_optimizer=True)``.
        """
        from fastnn.io.saving import save_model
        save_model(self, path, optimizer)

    # ------------------------------------------------------------------ interchange

    def save_onnx(self, path, **kwargs):
        """Write the model as an ONNX graph computing ``predict``; needs ``fastnn[onnx]``.

        See ``fastnn.interop.onnx_export.to_onnx`` for the graph, its inputs and outputs, and the
        keyword arguments (``opset``, ``name``).  Returns the checked ``onnx.ModelProto``.

        Parameters
        ----------
        path : str or os.PathLike
            The ``.onnx`` file to write.
        **kwargs
            ``opset``, ``name``: see ``fastnn.interop.onnx_export.to_onnx``.
        """
        from fastnn.interop.onnx_export import to_onnx
        return to_onnx(self, path, **kwargs)

    def to_torch(self):
        """An equivalent ``torch.nn.Sequential`` (weights copied, output link explicit as its
        last module); needs ``fastnn[torch]``.  See ``fastnn.interop.torch_interop.to_torch``.
        """
        from fastnn.interop.torch_interop import to_torch
        return to_torch(self)

    @classmethod
    def from_torch(cls, module):
        """An MLP from a ``torch.nn.Sequential`` of ``nn.Linear`` and activations (weights
        copied bitwise, ``W = weight.T``); needs ``fastnn[torch]``.  See
        ``fastnn.interop.torch_interop.from_torch``.

        Parameters
        ----------
        module : torch.nn.Sequential
            ``nn.Linear`` layers with supported activations between them (an unsupported
            module is an error naming it and its index).
        """
        from fastnn.interop.torch_interop import from_torch
        return from_torch(module)

    def __getstate__(self):
        # The compiled NetSpec and the lock cannot be pickled, and the layers' W/b/dW/db are
        # views that pickle would store as separate copies: keep the vectors and a
        # description of each layer, and rebuild the rest in __setstate__.
        owned = ("_spec", "_layers", "_lock", "_params", "_grads", "_output", "_loss",
                 "_dtype")
        with consistent(self):  # one epoch boundary of a fit in another thread
            state = {k: v for k, v in self.__dict__.items() if k not in owned}
            if "history_" in state:  # appended to by a running fit
                state["history_"] = copy.deepcopy(state["history_"])
            state.update(params=self._params.copy(), grads=self._grads.copy(),
                         dtype=self.dtype, layer_sizes=self.layer_sizes, output=self._output,
                         loss_=self._loss)
        state["layers"] = [
            {"n_in": layer.n_in, "n_out": layer.n_out, "activation": layer.activation,
             "init": layer.init, "bias_init": layer.bias_init,
             "negative_slope": layer.negative_slope, "alpha": layer.alpha,
             "dropout": layer.dropout, "normalization": layer.normalization}
            for layer in self.layers]
        return state

    def __setstate__(self, state):
        state = dict(state)
        layers = [Dense(d["n_in"], d["n_out"], d["activation"], init=d["init"],
                        bias_init=d["bias_init"],
                        # pickles from before the rename hold one alpha: the activation's
                        # parameter (the leaky_relu slope, or elu's alpha)
                        **(dense_kwargs(d["activation"], d["negative_slope"], d["alpha"])
                           if "negative_slope" in d else
                           parameter_kwargs(d["activation"], d["alpha"])),
                        dropout=d.get("dropout", 0.0),
                        normalization=d.get("normalization"))
                  for d in state.pop("layers")]
        params, grads = np.asarray(state.pop("params")), np.asarray(state.pop("grads"))
        output, loss = state.pop("output", "auto"), state.pop("loss_", None)
        state.pop("dtype", None)
        state.pop("layer_sizes", None)
        self._build(layers, output, params.dtype, None, False, initialize=False)
        if params.shape != (self.n_params,) or grads.shape != params.shape:
            raise ValueError(f"pickled MLP has {params.shape[0]} parameters; its layer "
                             f"sizes {self.layer_sizes} need {self.n_params}")
        self._params[...] = params
        self._grads[...] = grads
        self.__dict__.update(state)
        self.loss_ = loss


def _loss_hint(y, n_outputs):
    """A sentence on what y looks like, to help choose a loss (never used to choose it)."""
    try:
        y = np.asarray(y)
    except Exception:  # noqa: BLE001 - a hint only; the loss reports bad y itself
        return ""
    if y.ndim == 1 and y.dtype.kind in "biu" and y.size:
        return (f" y holds integers {y.min()}..{y.max()} and the model has {n_outputs} "
                "outputs: for class labels that is loss=\"cross_entropy\".")
    if y.dtype.kind == "f":
        return " y holds floating-point values: for a regression that is loss=\"mse\"."
    return ""


def _check_sizes(layer_sizes):
    try:
        sizes = list(layer_sizes)
    except TypeError:
        raise TypeError(f"layer_sizes must be a sequence of ints; got {layer_sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes={sizes}; expected at least 2 entries "
                         "(inputs and outputs)")
    for i, n in enumerate(sizes):
        check_number(n, f"layer_sizes[{i}]", low=1, high=MAX_DIM, integer=True)
    return [int(n) for n in sizes]


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


def _per_layer(value, n, name):
    """One value for all n layers, or a list/tuple of exactly n values."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries; expected {n} (one per layer) "
                             "or a single value")
        return list(value)
    return [value] * n
