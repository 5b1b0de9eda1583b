"""Weight and bias initializers (pure Python + NumPy): ``fastnn.nn.init``.

One API, three kinds of names
-----------------------------
Every initializer is a small callable object, ``init(shape, *, rng=None, dtype=numpy.float32)``,
with a ``name``, a ``repr`` that rebuilds it, ``get_config()`` and a ``symmetric`` flag.

* **Ready initializers** (no hyperparameters; use them directly)::

      zeros
      glorot_uniform (= xavier_uniform)   xavier_normal    glorot_normal
      he_uniform (= kaiming_uniform)      kaiming_normal   he_normal
      lecun_uniform                                        lecun_normal

      W = fastnn.nn.init.kaiming_normal((784, 256), rng=0, dtype=np.float32)

* **Factories** (take hyperparameters and return an initializer)::

      constant(value)   normal(std=0.01)
      variance_scaling(scale=1.0, mode="fan_in", distribution="normal")

      W = fastnn.nn.init.normal(std=0.1)((784, 256), rng=0)
      b = fastnn.nn.init.constant(0.1)((256,))

* **Selection and persistence**: ``get_initializer(name | config | initializer)``,
  ``from_config(config)``, ``NAMES`` (the names accepted as a bare string),
  ``default_initializer(activation)`` and ``is_symmetric(initializer)``.

The fan-based random schemes are all settings of ONE :class:`VarianceScaling` (variance
``scale / fan``): for the same seed, ``he_normal`` draws exactly the same bits as
``variance_scaling(2.0, "fan_in", "normal")``.

Conventions
-----------
* ``shape`` is ``(n_in, n_out)`` = ``(fan_in, fan_out)``, the shape of a :mod:`fastnn.nn.layers` weight
  (the layer computes ``X @ W``).  PyTorch stores ``(n_out, n_in)``; its fan_in is our ``shape[0]``.
  Biases are 1-D ``(n_out,)`` and only ``zeros``/``constant`` accept them.
* ``rng``: an ``int`` seed >= 0 means ``numpy.random.default_rng(seed)`` (the same seed gives the
  same weights); a ``numpy.random.Generator`` is used and advanced (two calls give different
  weights); ``None`` draws fresh OS entropy (not reproducible).  ``zeros``/``constant`` accept
  and check ``rng`` but draw nothing from it.
* ``dtype``: ``numpy.float32`` (default) or ``numpy.float64`` (or anything ``numpy.dtype`` turns
  into one of them, e.g. ``"float32"``); anything else, ``None`` included, is a TypeError.  Values
  are always drawn in float64 and cast once, so with the same seed the float32 result equals the
  float64 result cast to float32, bit for bit.

Config format (JSON-serializable; what a saved model stores)
------------------------------------------------------------
``{"name": <canonical name>, **hyperparameters}``, e.g. ``{"name": "he_normal"}``,
``{"name": "normal", "std": 0.1}``, ``{"name": "constant", "value": 0.1}``,
``{"name": "variance_scaling", "scale": 2.0, "mode": "fan_in", "distribution": "normal"}``.
Aliases are accepted on input and written as the canonical name (``xavier_uniform`` ->
``glorot_uniform``, ``kaiming_uniform`` -> ``he_uniform``).

Names: what PyTorch and Keras mean by them
------------------------------------------
Each name means what the library that uses it means (``torch.nn.init`` with its default
arguments, ``keras.initializers``; JAX's ``jax.nn.initializers`` agree with Keras), and a
formula no peer names has no name here but its ``variance_scaling`` setting.  PyTorch draws
*plain* normals, Keras and JAX *truncated* ones (cut at 2 standard deviations and rescaled to
the same variance), hence two names for each normal scheme:

================  ==================================  =================================  =======
fastnn name       formula, shape = (n_in, n_out)      variance_scaling(...)              peer
================  ==================================  =================================  =======
glorot_uniform    U(+-sqrt(6/(n_in + n_out)))         1, "fan_avg", "uniform"            both
xavier_uniform    (the same object)                                                      PyTorch
xavier_normal     N(0, 2/(n_in + n_out))              1, "fan_avg", "normal"             PyTorch
glorot_normal     truncated, var 2/(n_in + n_out)     1, "fan_avg", "truncated_normal"   Keras
he_uniform        U(+-sqrt(6/n_in))                   2, "fan_in", "uniform"             Keras
kaiming_uniform   (the same object)                                                      PyTorch
kaiming_normal    N(0, 2/n_in)                        2, "fan_in", "normal"              PyTorch
he_normal         truncated, var 2/n_in               2, "fan_in", "truncated_normal"    Keras
lecun_uniform     U(+-sqrt(3/n_in))                   1, "fan_in", "uniform"             Keras
lecun_normal      truncated, var 1/n_in               1, "fan_in", "truncated_normal"    Keras
================  ==================================  =================================  =======

PyTorch's ``kaiming_*_`` defaults (``a=0, mode="fan_in", nonlinearity="leaky_relu"``) give the
gain sqrt(2) of these rows; ``xavier_*_`` use gain 1.  ``normal(std)`` is ``N(0, std^2)`` as
``torch.nn.init.normal_`` and Keras' ``RandomNormal`` are, but the three default stds differ
(fastnn 0.01, Keras 0.05, PyTorch 1.0): give ``std`` when it matters.

.. versionchanged:: 0.1.0 (format version 2 of saved models)
   ``xavier_normal`` was LeCun's ``N(0, 1/n_in)``; it is now Glorot's ``N(0, 2/(n_in +
   n_out))``, PyTorch's ``xavier_normal_``.  ``glorot_normal``, ``he_normal`` and
   ``lecun_normal`` drew plain normals; they now draw Keras' truncated normals (same
   variance).  The plain ones are ``xavier_normal``, ``kaiming_normal`` and
   ``variance_scaling(1.0, "fan_in", "normal")``.  ``uniform`` (``U(+-1/sqrt(n_in))``; Keras'
   ``"uniform"`` is ``U(-0.05, 0.05)`` and PyTorch's ``uniform_`` ``U(0, 1)``) is no longer a
   name: it is ``variance_scaling(1/3, "fan_in", "uniform")``, the default of PyTorch's
   ``nn.Linear``.  The defaults of ``default_initializer`` draw exactly what they drew before
   (``kaiming_normal``, formerly named he_normal; ``glorot_uniform``; and for selu
   ``variance_scaling(1.0, "fan_in", "normal")``, formerly named lecun_normal), and model
   files of format version 1 load with the old meanings (``fastnn.io.saving``).
"""
from fastnn._validation import check_choice
# the classes, defined in fastnn/nn/initializers.py; all re-exported (fastnn.nn.init.X, and the
# class path of pickled initializers)
from fastnn.nn.initializers import (DISTRIBUTIONS, MODES, TRUNCATED_NORMAL_STD,  # noqa: F401
                                    TRUNCATION, Constant, GlorotNormal, GlorotUniform, HeNormal,
                                    HeUniform, Initializer, KaimingNormal, LecunNormal,
                                    LecunUniform, Normal, Uniform, VarianceScaling,
                                    XavierNormal, Zeros, _RETIRED, _Preset)

__all__ = [
    "Initializer", "VarianceScaling", "NAMES", "TRUNCATED_NORMAL_STD",
    "zeros", "constant", "normal", "variance_scaling",
    "glorot_uniform", "xavier_uniform", "xavier_normal", "glorot_normal",
    "he_uniform", "kaiming_uniform", "kaiming_normal", "he_normal",
    "lecun_uniform", "lecun_normal",
    "get_initializer", "from_config", "default_initializer", "is_symmetric",
]

# The activations of fastnn.nn.layers.ACTIVATIONS (repeated, not imported, so that this module
# stays pure Python; a test checks that the two lists agree).
_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu",
                "gelu_tanh", "silu", "swish", "softplus")
# ReLU-like activations (identity for z -> +inf, bounded for z -> -inf): He et al. (2015)
_HE_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "swish")


# ------------------------------------------------------------------ the public lowercase API


def constant(value):
    """Initializer filling every entry with ``value``: mean ``value``, standard deviation 0,
    variance 0.

    Parameters
    ----------
    value : float
        Any finite real number.

    Returns
    -------
    Constant
        ``constant(value)(shape, rng=None, dtype=numpy.float32)`` with ``shape`` ``(n_out,)``
        or ``(n_in, n_out)``.

    Notes
    -----
    Use for biases: ``constant(0.1)`` before ReLU makes few units start inactive
    (docs/theory.md, section 3).
    For weights it only demonstrates the symmetry problem (all units stay identical through
    training); ``symmetric`` is True so that a model can warn.
    """
    return Constant(value)


def normal(std=0.01):
    """Initializer drawing ``w ~ N(0, std^2)``: standard deviation ``std``, variance ``std^2``.

    Parameters
    ----------
    std : float > 0, default 0.01
        Standard deviation (so the default has variance 1e-4).  Independent of the layer's
        size.

    Returns
    -------
    Normal
        ``normal(std)(shape, rng=None, dtype=numpy.float32)`` with ``shape`` ``(n_in, n_out)``.

    Notes
    -----
    The textbook "small random numbers".  Because ``std`` ignores the fan, activations shrink
    layer after layer when it is too small (vanishing gradients, slow training) and grow when
    it is too large (exploding gradients, unstable training).  Prefer ``he_normal`` (ReLU) or
    ``glorot_uniform``/``lecun_normal`` (tanh, sigmoid), which scale with the fan.
    """
    return Normal(std)


def variance_scaling(scale=1.0, mode="fan_in", distribution="normal"):
    """The general fan-based initializer: ``Var[w] = scale / fan``.

    Parameters
    ----------
    scale : float > 0, default 1.0
    mode : {"fan_in", "fan_out", "fan_avg"}, default "fan_in"
        ``fan`` is ``n_in``, ``n_out`` or ``(n_in + n_out) / 2`` of ``shape = (n_in, n_out)``.
    distribution : {"normal", "uniform", "truncated_normal"}, default "normal"
        With ``variance = scale / fan``:

        * ``"normal"``: ``w ~ N(0, variance)``, standard deviation ``sqrt(variance)``.
        * ``"uniform"``: ``w ~ U(-L, +L)`` with ``L = sqrt(3 * variance)`` (since the variance of
          ``U(-L, L)`` is ``L^2 / 3``).
        * ``"truncated_normal"``: ``N(0, s^2)`` with values outside ``[-2 s, +2 s]`` redrawn,
          ``s = sqrt(variance) / 0.87962566103423978`` (``TRUNCATED_NORMAL_STD``, the standard
          deviation of a standard normal truncated to ``[-2, 2]``), so that the truncated draws
          have exactly ``variance``; all values lie within ``+-2 s``.

    Returns
    -------
    VarianceScaling
        ``variance_scaling(...)(shape, rng=None, dtype=numpy.float32)`` with ``shape``
        ``(n_in, n_out)``.

    Notes
    -----
    The named schemes are settings of this one and draw identical values for the same seed:

    ===============  =====  ========  ================  ================================
    name             scale  mode      distribution      formula
    ===============  =====  ========  ================  ================================
    glorot_uniform   1      fan_avg   uniform           U(+-sqrt(6/(n_in + n_out)))
    xavier_normal    1      fan_avg   normal            N(0, 2/(n_in + n_out))
    glorot_normal    1      fan_avg   truncated_normal  variance 2/(n_in + n_out)
    he_uniform       2      fan_in    uniform           U(+-sqrt(6/n_in))
    kaiming_normal   2      fan_in    normal            N(0, 2/n_in)
    he_normal        2      fan_in    truncated_normal  variance 2/n_in
    lecun_uniform    1      fan_in    uniform           U(+-sqrt(3/n_in))
    lecun_normal     1      fan_in    truncated_normal  variance 1/n_in
    ===============  =====  ========  ================  ================================

    ``distribution="normal"`` is the plain normal, as in JAX's ``variance_scaling``
    (TensorFlow 1 / Keras 2 read "normal" as the truncated one; Keras 3 calls the plain one
    "untruncated_normal").
    (N(0, v) means variance v.)  Scale 2 suits ReLU; scale 1 suits tanh, sigmoid, identity.
    """
    return VarianceScaling(scale, mode, distribution)


zeros = Zeros()
glorot_uniform = xavier_uniform = GlorotUniform()
xavier_normal = XavierNormal()
glorot_normal = GlorotNormal()
he_uniform = kaiming_uniform = HeUniform()
kaiming_normal = KaimingNormal()
he_normal = HeNormal()
lecun_uniform = LecunUniform()
lecun_normal = LecunNormal()

# names that need no hyperparameter -> the ready object (aliases included)
_READY = {
    "zeros": zeros,
    "glorot_uniform": glorot_uniform, "xavier_uniform": glorot_uniform,
    "xavier_normal": xavier_normal, "glorot_normal": glorot_normal,
    "he_uniform": he_uniform, "kaiming_uniform": he_uniform,
    "kaiming_normal": kaiming_normal, "he_normal": he_normal,
    "lecun_uniform": lecun_uniform, "lecun_normal": lecun_normal,
}
# the plain normal N(0, 1/n_in) that SELU's default draws (LeCun's variance; no peer names the
# untruncated form)
_LECUN_PLAIN = VarianceScaling(1.0, "fan_in", "normal")
_FACTORIES = {"constant": Constant, "normal": Normal, "variance_scaling": VarianceScaling}
#: Every name :func:`get_initializer` accepts as a bare string (hyperparameters at their
#: defaults).  ``"constant"`` has no default value, so it is selected by a config instead.
NAMES = tuple(_READY) + ("normal", "variance_scaling")
_CONFIG_NAMES = NAMES + ("constant",)


def from_config(config):
    """Rebuild an initializer from ``get_config()`` output.

    Parameters
    ----------
    config : dict
        ``{"name": name, **hyperparameters}``; ``name`` is one of ``NAMES`` or
        ``"constant"``, hyperparameters are those of its factory (none for the ready ones).

    Returns
    -------
    Initializer
        Equal to the one that produced ``config``; for a name without hyperparameters, the
        module's object itself (``from_config({"name": "he_normal"}) is he_normal``).
    """
    if not isinstance(config, dict):
        raise TypeError(f"config is {config!r} ({type(config).__name__}); expected a dict "
                        "such as {'name': 'he_normal'} or {'name': 'normal', 'std': 0.1}")
    if "name" not in config:
        raise ValueError(f"config {config!r} has no 'name'; expected a dict such as "
                         "{'name': 'he_normal'}")
    if config["name"] in _RETIRED:
        raise ValueError(f"config['name']={config['name']!r} is no longer supported: "
                         f"{_RETIRED[config['name']]}")
    name = check_choice(config["name"], "config['name']", _CONFIG_NAMES)
    params = {k: v for k, v in config.items() if k != "name"}
    if name in _READY:
        if params:
            raise ValueError(f"config for {name!r} has keys {sorted(params)}; expected none "
                             f"({name} has no hyperparameters)")
        return _READY[name]
    cls = _FACTORIES[name]
    unexpected = sorted(set(params) - set(cls._param_names))
    if unexpected:
        raise ValueError(f"config for {name!r} has unexpected keys {unexpected}; expected "
                         f"only {list(cls._param_names)}")
    missing = [k for k in cls._required if k not in params]
    if missing:
        raise ValueError(f"config for {name!r} is missing {missing}; expected e.g. "
                         f"{{'name': {name!r}, 'value': 0.1}}")
    return cls(**params)


def get_initializer(identifier):
    """Return the initializer an identifier denotes.

    Parameters
    ----------
    identifier : str, dict or Initializer
        A name from ``NAMES`` (``"kaiming_normal"``, ``"xavier_uniform"``, ``"normal"`` with
        std 0.01, ...; each means what PyTorch or Keras means by it, see the module docstring), a config dict (see :func:`from_config`; the only way to name
        ``constant``), or an initializer, returned unchanged.

    Returns
    -------
    Initializer
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return from_config(identifier)
    if isinstance(identifier, str):
        if identifier == "constant":
            raise ValueError("initializer 'constant' needs a value; use constant(c) or the "
                             "config {'name': 'constant', 'value': c}")
        if identifier in _RETIRED:
            raise ValueError(f"initializer={identifier!r} is no longer supported: "
                             f"{_RETIRED[identifier]}")
        if identifier not in NAMES:
            valid = ", ".join(repr(n) for n in NAMES)
            raise ValueError(f"initializer={identifier!r} is not supported; expected one of "
                             f"{valid} (or a config dict such as {{'name': 'constant', "
                             f"'value': 0.1}})")
        return from_config({"name": identifier})
    raise TypeError(f"initializer is {identifier!r} ({type(identifier).__name__}); expected a "
                    "name (str), a config (dict) or a fastnn.nn.init initializer")


def default_initializer(activation):
    """The weight initializer suited to the activation that follows the layer.

    Parameters
    ----------
    activation : {"identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", \
"gelu", "gelu_tanh", "silu", "swish", "softplus"}

    Returns
    -------
    Initializer
        * ``variance_scaling(1.0, "fan_in", "normal")`` (``N(0, 1/n_in)``, LeCun's variance
          as a plain normal) for ``"selu"``: the variance its self-normalizing fixed point
          assumes (Klambauer et al., "Self-Normalizing Neural Networks", 2017).
        * ``kaiming_normal`` (``N(0, 2/n_in)``) for the ReLU family: ``"relu"``,
          ``"leaky_relu"`` (He et al., 2015), ``"elu"`` (Clevert et al., 2016, train with He's
          initialization), ``"gelu"``, ``"gelu_tanh"`` and ``"silu"``/``"swish"``.  The last
          three are smooth ReLUs (z for z -> +inf, 0 for z -> -inf); He's argument keeps the
          second moment E[act(z)^2] of a unit-variance pre-activation about constant through
          depth when it is about 1/2, and it is 1/2 for ReLU, 0.43 for GELU, 0.36 for SiLU
          and 0.64 for ELU (numerical integration against N(0, 1)).
        * ``glorot_uniform`` (``U(+-sqrt(6/(n_in + n_out)))``) otherwise: ``"tanh"``,
          ``"sigmoid"``, ``"identity"``, ``"softplus"`` (Glorot & Bengio, 2010).

        (Biases: ``zeros``, or ``constant(0.1)`` before ReLU.)

        .. versionchanged:: 0.1.0
           The same draws as before under their new names: the ReLU family's was called
           ``he_normal`` and selu's ``lecun_normal``, names that mean Keras' truncated
           normals now.
    """
    activation = check_choice(activation, "activation", _ACTIVATIONS)
    if activation == "selu":
        return _LECUN_PLAIN
    return kaiming_normal if activation in _HE_FAMILY else glorot_uniform


def is_symmetric(initializer):
    """Whether ``initializer`` gives every unit of a layer identical incoming weights.

    True for ``zeros`` and ``constant(c)``: the units then compute the same function, receive
    the same gradient and remain identical however long the network trains (the symmetry
    problem), so a model should warn when a weight matrix (biases are fine) uses one.

    Parameters
    ----------
    initializer : str, dict or Initializer
        Anything :func:`get_initializer` accepts.

    Returns
    -------
    bool
        ``get_initializer(initializer).symmetric``.
    """
    return get_initializer(initializer).symmetric


def __getattr__(name):
    # fastnn.nn.init.uniform and its class's meaning are retired (see _RETIRED)
    if name in _RETIRED:
        raise AttributeError(f"fastnn.nn.init.{name} is no longer provided: {_RETIRED[name]}")
    raise AttributeError(f"module 'fastnn.nn.init' has no attribute {name!r}")
