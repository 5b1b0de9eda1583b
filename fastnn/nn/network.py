"""The network's state: ``Dense`` layers over one contiguous parameter vector.

Every weight and bias lives in ``params``, a single 1-D array; each layer's ``W`` and ``b``
are NumPy views into it, and the gradient vector ``grads`` has the same layout.  So an
optimizer updates all parameters in one compiled pass, and a data-parallel run all-reduces one
buffer.  Layout, for layer k with n_in inputs and n_out units::

    params = [ W_1 (n_0*n_1, row-major) | b_1 (n_1) | W_2 (n_1*n_2) | b_2 (n_2) | ... ]

The last layer computes logits (identity activation); the output link (sigmoid, softmax, exp)
belongs to the loss, which fuses it with its gradient.  ``output="auto"`` takes the link of the
last loss the model was trained or evaluated with.

``Network`` owns that state: construction, the owned vectors and their checked setters, the
layers, the loss and output link, copies and pickling.  ``fastnn.MLP`` (fastnn/nn/model.py) is
``Network`` plus prediction, input derivatives and training; the optimizers and the training
engine, which sit below the MLP, accept any ``Network``.
"""
import copy
import warnings

import numpy as np

from fastnn.runtime import boundary
from fastnn.nn import init as _init
from fastnn.runtime.state import StateLock, consistent
from fastnn._validation import (check_choice, check_number, check_random_state, check_values,
                                check_writeable, float_dtype, MAX_DIM)
from fastnn.nn.dense import Dense, _check_alpha_fits
from fastnn.nn.layers import (activation_code, canonical_activation, dense_kwargs,
                              parameter_kwargs, parameter_name, resolve_activation_parameters)
from fastnn.nn.losses import get_loss

#: output link name -> the loss code whose link it is (see fastnn/_core/_losses.pxd)
OUTPUT_LINKS = {"identity": 0, "sigmoid": 3, "softmax": 4, "exp": 6}
_LEARNED_GAUSSIAN = 2


class Network:
    """The parameter vector, its layers and its loss; see ``fastnn.MLP`` for the arguments.

    ``fastnn.MLP`` is the one subclass users build; this base is what the layers below it
    (optimizers, the training engine, the file writer) need of a model.
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
    # copied into the owned buffers on assignment (a public attribute must never point
    # compiled code at the wrong memory)

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
        other = type(self).from_layers([layer._clone() for layer in self.layers],
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
        other = type(self).from_layers([layer._clone() for layer in self.layers],
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


def _per_layer(value, n, name):
    """One value for all n layers, or a list/tuple of exactly n values."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries; expected {n} (one per layer) "
                             "or a single value")
        return list(value)
    return [value] * n
