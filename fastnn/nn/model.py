"""The ``MLP``: ``Dense`` layers over one contiguous parameter vector, with prediction, input
derivatives and training.

The class is assembled from one module per concern, each a base class of ``MLP``:

====================================  ==================================================
fastnn/nn/dense.py                    ``Dense``: one layer's description and views
fastnn/nn/network.py                  ``Network``: the parameter vector and its layout,
                                      construction, owned state, copies, pickling
fastnn/nn/forward.py                  ``Forward``: ``forward``, ``predict``, ...; ``as_input``
fastnn/nn/derivatives.py              ``InputDerivatives``: ``input_gradient``, ``jacobian``
fastnn/training/data.py               ``DataPreparation``: ``prepare_data``, ...
fastnn/training/trainer.py            ``Trainer``: ``fit``, ``evaluate``, ``score``,
                                      ``loss_and_grad``
====================================  ==================================================

Imports run one way (no module imports one above it).
As Keras' ``Model`` inherits its ``Trainer``, the MLP
inherits the training methods from fastnn.training, which sits below this module and imports
nothing above it.  The file format and the interchange formats sit above the model: ``save``,
``save_onnx``, ``to_torch`` and ``from_torch`` call the functions that fastnn/__init__.py
registers here (``provide``), fastnn.io.saving's and fastnn.interop's, so that this module
imports neither.  ``MLP.__module__`` stays ``fastnn.nn.model``: pickles name this module.
"""
# the public names this module held before the split, re-exported (fastnn.nn.model.X); the
# tuning constants are read where they are used, so patch them there
from fastnn.nn.dense import Dense  # noqa: F401
from fastnn.nn.derivatives import (JACOBIAN_STACKED_ROWS, SENSITIVITY_CHUNK_ROWS,  # noqa: F401
                                   InputDerivatives)
from fastnn.nn.forward import ONE_THREAD_FLOPS, PREDICT_CHUNK_ROWS, Forward, as_input  # noqa: F401
from fastnn.nn.network import OUTPUT_LINKS, Network  # noqa: F401
from fastnn.training.trainer import Trainer

#: name of an MLP method -> the function of a higher layer it calls, registered by
#: fastnn/__init__.py (``provide``): "save" (fastnn.io.saving.save_model), "save_onnx"
#: (fastnn.interop.onnx_export.to_onnx), "to_torch" and "from_torch"
#: (fastnn.interop.torch_interop)
_PROVIDED = {}


def provide(name, function):
    """Register `function`, of a layer above the model, as what ``MLP.<name>`` calls.

    Parameters
    ----------
    name : {"save", "save_onnx", "to_torch", "from_torch"}
    function : callable
        Called with the method's arguments (the model first; ``from_torch``: the module).
    """
    if name not in ("save", "save_onnx", "to_torch", "from_torch"):
        raise ValueError(f"name must be one of 'save', 'save_onnx', 'to_torch', "
                         f"'from_torch'; got {name!r}")
    _PROVIDED[name] = function


def _provided(name):
    try:
        return _PROVIDED[name]
    except KeyError:  # only while fastnn/__init__.py itself runs
        raise RuntimeError(f"MLP.{name} is provided by a layer that import fastnn "
                           "registers; import fastnn first") from None


class MLP(Network, Forward, InputDerivatives, Trainer):
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
        _provided("save")(self, path, optimizer)

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
        return _provided("save_onnx")(self, path, **kwargs)

    def to_torch(self):
        """An equivalent ``torch.nn.Sequential`` (weights copied, output link explicit as its
        last module); needs ``fastnn[torch]``.  See ``fastnn.interop.torch_interop.to_torch``.
        """
        return _provided("to_torch")(self)

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
        return _provided("from_torch")(module)
