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
import math
import numbers
import sys

import numpy as np

from fastnn._validation import (FLOAT_DTYPES, MAX_DIM, check_choice, check_number,
                                check_random_state)

__all__ = [
    "Initializer", "VarianceScaling", "NAMES", "TRUNCATED_NORMAL_STD",
    "zeros", "constant", "normal", "variance_scaling",
    "glorot_uniform", "xavier_uniform", "xavier_normal", "glorot_normal",
    "he_uniform", "kaiming_uniform", "kaiming_normal", "he_normal",
    "lecun_uniform", "lecun_normal",
    "get_initializer", "from_config", "default_initializer", "is_symmetric",
]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "uniform", "truncated_normal")
# The activations of fastnn.nn.layers.ACTIVATIONS (repeated, not imported, so that this module
# stays pure Python; a test checks that the two lists agree).
_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu",
                "gelu_tanh", "silu", "swish", "softplus")
# ReLU-like activations (identity for z -> +inf, bounded for z -> -inf): He et al. (2015)
_HE_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "swish")

# Truncated normal: draws of N(0, s^2) outside [-2 s, +2 s] are redrawn.  Cutting the tails
# shrinks the standard deviation: for a standard normal truncated to [-a, a],
#     Var = 1 - 2 a phi(a) / (Phi(a) - Phi(-a)),  phi(a) = exp(-a^2 / 2) / sqrt(2 pi),
#     Phi(a) - Phi(-a) = erf(a / sqrt(2)),
# and a = 2 gives std 0.87962566103423978 (the constant in TensorFlow/Keras' VarianceScaling).
# s = sqrt(variance) / TRUNCATED_NORMAL_STD therefore makes the variance of the truncated draws
# the stated one, and every draw lies within +-2 s = +-2.27 sqrt(variance).
TRUNCATION = 2.0
TRUNCATED_NORMAL_STD = math.sqrt(
    1.0 - 2.0 * TRUNCATION * math.exp(-TRUNCATION ** 2 / 2) / math.sqrt(2 * math.pi)
    / math.erf(TRUNCATION / math.sqrt(2.0)))


# ------------------------------------------------------------------------------ validation

def _check_rng(rng):
    """int seed -> default_rng(seed); Generator -> itself (advanced by the draw); None -> fresh."""
    return check_random_state(rng, "rng")


def _check_dtype(dtype):
    # Not _validation.float_dtype: numpy.dtype(None) is float64, and numpy.dtype(float64) ==
    # None is True, so both None and an unparseable name would pass as float64 there.
    dt = None
    if dtype is not None:
        try:
            dt = np.dtype(dtype)
        except (TypeError, ValueError):
            pass
    if dt is None or dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype is {dtype!r}; expected numpy.float32 or numpy.float64")
    return dt


def _check_shape(shape, ndims, who):
    if ndims == (2,):
        expected = "a 2-D shape (fan_in, fan_out)"
    else:
        expected = "a shape (n_in, n_out) for weights or (n_out,) for biases"
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"shape is {shape!r} ({type(shape).__name__}); {who} needs "
                        f"{expected}, as a tuple of positive integers")
    if len(shape) not in ndims:
        hint = ("; initialize biases with zeros or constant(c)" if ndims == (2,) and
                len(shape) == 1 else "")
        raise ValueError(f"shape is {tuple(shape)!r}; {who} needs {expected}{hint}")
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"shape is {tuple(shape)!r}; expected integer dimensions, got "
                            f"{n!r} ({type(n).__name__})")
        if n <= 0:
            raise ValueError(f"shape is {tuple(shape)!r}; expected positive dimensions")
        if n > MAX_DIM:
            raise ValueError(f"shape is {tuple(shape)!r}; dimensions above {MAX_DIM} are not "
                             "supported by the 32-bit BLAS interface")
    return tuple(int(n) for n in shape)


def _check_hyper(value, name, factory, **bounds):
    if isinstance(value, (tuple, list)):
        # the commonest slip: calling a factory as if it were an initializer
        raise TypeError(f"{name} is {value!r}; {factory} takes hyperparameters, not a shape: "
                        f"build the initializer first, e.g. {factory}(...)(shape, rng=0)")
    return float(check_number(value, name, **bounds))


# --------------------------------------------------------------------------------- classes

class Initializer:
    """Base class of every initializer: a callable ``init(shape, *, rng=None, dtype=float32)``.

    Attributes
    ----------
    name : str
        Canonical name, the ``"name"`` of :meth:`get_config`.
    symmetric : bool
        True when every unit of a layer gets identical incoming weights (``zeros``,
        ``constant``).  Such units compute the same function, receive the same gradient and stay
        identical through training (the symmetry problem), so a model should warn when a weight
        matrix (not a bias) uses one.  See :func:`is_symmetric`.

    Subclasses set ``name``, ``symmetric``, ``_ndims`` (accepted ``len(shape)``),
    ``_param_names`` / ``_required`` (constructor hyperparameters) and implement
    ``_sample(shape, rng)`` returning float64.  Instances are immutable, compare equal when
    their type and configuration are equal, and are hashable.
    """
    __slots__ = ()
    name = None
    symmetric = False
    _ndims = (2,)
    _param_names = ()
    _required = ()

    def __call__(self, shape, *, rng=None, dtype=np.float32):
        """Return a new array of initial values.

        Parameters
        ----------
        shape : tuple of int
            ``(n_in, n_out)`` for a weight matrix (``(fan_in, fan_out)``); ``(n_out,)`` for a
            bias, accepted by ``zeros`` and ``constant`` only.
        rng : int, numpy.random.Generator or None, default None
            Seed (>= 0, same seed -> same values), a Generator (used and advanced) or None
            (fresh OS entropy).
        dtype : numpy.float32 or numpy.float64, default numpy.float32

        Returns
        -------
        ndarray of shape ``shape`` and dtype ``dtype``, C-contiguous, newly allocated
            Drawn in float64 and cast once: for the same seed, the float32 result is the
            float64 result rounded to float32.

        Raises
        ------
        MemoryError
            The float64 draw of that shape cannot be allocated; the message gives its size.
        ValueError
            The values do not fit ``dtype`` (e.g. ``constant(1e300)`` in float32).
        """
        shape = _check_shape(shape, self._ndims, self.name)
        dtype = _check_dtype(dtype)
        rng = _check_rng(rng)
        n_bytes = math.prod(shape) * 8  # the float64 draw
        try:
            if n_bytes > sys.maxsize:  # NumPy would say "array is too big" (a ValueError)
                raise MemoryError
            with np.errstate(over="ignore"):  # reported below, with the initializer's name
                values = self._sample(shape, rng).astype(dtype, copy=False)
        except MemoryError:
            raise MemoryError(f"{self!r} cannot allocate its values for shape {shape} "
                              f"({n_bytes} bytes as float64)") from None
        except OverflowError:  # NumPy's uniform(-inf, inf)
            values = None
        if values is None or not np.isfinite(values).all():
            raise ValueError(f"{self!r} gives values too large for {dtype} at shape {shape}; "
                             "expected a smaller scale")
        return values

    def _sample(self, shape, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def _params(self):
        return {}

    def get_config(self):
        """``{"name": self.name, **hyperparameters}``: JSON-serializable (str and float values).

        :func:`from_config` (or :func:`get_initializer`) rebuilds an equal initializer.
        """
        return {"name": self.name, **self._params()}

    def __repr__(self):
        # an expression that rebuilds the initializer in the fastnn.nn.init namespace
        if not self._param_names:
            return self.name
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{self.name}({args})"

    def __eq__(self, other):
        return type(other) is type(self) and other._params() == self._params()

    def __hash__(self):
        return hash((type(self), tuple(self._params().items())))


class Zeros(Initializer):
    """``zeros``: every value is 0 (mean 0, standard deviation 0, variance 0).

    Use for biases (shape ``(n_out,)``; a constant 0.1 before ReLU is the other common
    choice).  For a weight matrix it only demonstrates the symmetry problem: all units of the
    layer compute the same function, get the same gradient and stay identical forever (with
    zero weights in every layer, the hidden gradients are zero too).  ``symmetric`` is True.
    """
    __slots__ = ()
    name = "zeros"
    symmetric = True
    _ndims = (1, 2)

    def _sample(self, shape, rng):
        return np.zeros(shape)


class Constant(Initializer):
    """What :func:`constant` returns: every value is ``value``.  See :func:`constant`."""
    __slots__ = ("_value",)
    name = "constant"
    symmetric = True
    _ndims = (1, 2)
    _param_names = ("value",)
    _required = ("value",)

    def __init__(self, value):
        self._value = _check_hyper(value, "value", "constant")

    @property
    def value(self):
        return self._value

    def _params(self):
        return {"value": self._value}

    def _sample(self, shape, rng):
        return np.full(shape, self._value)


class Normal(Initializer):
    """What :func:`normal` returns: ``w ~ N(0, std^2)`` for a fixed ``std``.  See :func:`normal`."""
    __slots__ = ("_std",)
    name = "normal"
    _param_names = ("std",)

    def __init__(self, std=0.01):
        self._std = _check_hyper(std, "std", "normal", low=0.0, low_open=True)

    @property
    def std(self):
        return self._std

    def _params(self):
        return {"std": self._std}

    def _sample(self, shape, rng):
        return self._std * rng.standard_normal(shape)


class VarianceScaling(Initializer):
    """What :func:`variance_scaling` returns; every fan-based scheme is one of its settings.

    ``variance = scale / fan``; see :func:`variance_scaling` for the three distributions.
    ``scale``, ``mode`` and ``distribution`` are read-only attributes (also on the named
    presets such as ``he_normal``, whose ``scale`` is 2.0).

    Parameters
    ----------
    scale : float > 0, default 1.0
        The variance times the fan (2.0 for He, 1.0 for LeCun and Glorot).
    mode : {"fan_in", "fan_out", "fan_avg"}, default "fan_in"
        Which fan divides the scale (fan_avg = (n_in + n_out) / 2, Glorot).
    distribution : {"normal", "uniform", "truncated_normal"}, default "normal"
        See :func:`variance_scaling`; every distribution has the stated variance.
    """
    __slots__ = ("_scale", "_mode", "_distribution")
    name = "variance_scaling"
    _param_names = ("scale", "mode", "distribution")

    def __init__(self, scale=1.0, mode="fan_in", distribution="normal"):
        self._scale = _check_hyper(scale, "scale", "variance_scaling", low=0.0, low_open=True)
        self._mode = check_choice(mode, "mode", MODES)
        self._distribution = check_choice(distribution, "distribution", DISTRIBUTIONS)

    scale = property(lambda self: self._scale)
    mode = property(lambda self: self._mode)
    distribution = property(lambda self: self._distribution)

    def _params(self):
        return {"scale": self._scale, "mode": self._mode, "distribution": self._distribution}

    def _sample(self, shape, rng):
        fan_in, fan_out = shape
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self._mode]
        variance = self._scale / fan
        if self._distribution == "normal":
            return math.sqrt(variance) * rng.standard_normal(shape)
        if self._distribution == "uniform":
            # U(-L, L) has variance L^2 / 3
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        return (math.sqrt(variance) / TRUNCATED_NORMAL_STD) * _truncated_standard_normal(rng, shape)


def _truncated_standard_normal(rng, shape):
    """N(0, 1) conditioned on |z| <= TRUNCATION, by redrawing the values outside."""
    z = rng.standard_normal(shape)
    flat = z.reshape(-1)  # a view: z is freshly allocated and contiguous
    redraw = np.flatnonzero(np.abs(flat) > TRUNCATION)
    while redraw.size:  # 4.6% of the draws, then 4.6% of those: a few rounds
        flat[redraw] = rng.standard_normal(redraw.size)
        redraw = redraw[np.abs(flat[redraw]) > TRUNCATION]
    return z


class _Preset(VarianceScaling):
    """A named setting of VarianceScaling, with no hyperparameters of its own."""
    __slots__ = ()
    _param_names = ()
    _setting = None  # (scale, mode, distribution)

    def __init__(self):
        super().__init__(*self._setting)

    def _params(self):
        return {}

    def __setstate__(self, state):
        # Pickles store the class and the three slots.  A class whose name changed meaning
        # (he_normal was a plain normal before it became Keras' truncated one) must not
        # relabel an old pickle's draws: an object whose stored setting is not its class's
        # becomes the preset of that setting, or the general VarianceScaling.
        for key, value in (state[1] if isinstance(state, tuple) else state).items():
            object.__setattr__(self, key, value)
        cls = _PRESET_BY_SETTING.get((self._scale, self._mode, self._distribution),
                                     VarianceScaling)
        if cls is not type(self):
            self.__class__ = cls


class GlorotUniform(_Preset):
    """``glorot_uniform`` (alias ``xavier_uniform``): ``w ~ U(-L, +L)``, L = sqrt(6/(n_in + n_out)).

    Standard deviation ``sqrt(2/(n_in + n_out))``; variance ``2/(n_in + n_out)``.  Same as
    ``variance_scaling(1.0, "fan_avg", "uniform")``, Keras' ``glorot_uniform`` and PyTorch's
    ``xavier_uniform_`` (gain 1).  Glorot & Bengio (2010): keeps the variance of activations
    (forward) and of gradients (backward) roughly constant across layers.  Use with tanh,
    sigmoid or identity; the default for those activations.
    """
    __slots__ = ()
    name = "glorot_uniform"
    _setting = (1.0, "fan_avg", "uniform")


class XavierNormal(_Preset):
    """``xavier_normal``: ``w ~ N(0, 2/(n_in + n_out))``, a plain (not truncated) normal.

    Standard deviation ``sqrt(2/(n_in + n_out))``; variance ``2/(n_in + n_out)``.  Same as
    ``variance_scaling(1.0, "fan_avg", "normal")`` and PyTorch's ``xavier_normal_`` (gain 1).
    The normal twin of ``glorot_uniform``; use with tanh or sigmoid.

    .. versionchanged:: 0.1.0
       Was LeCun's ``N(0, 1/n_in)`` (now ``variance_scaling(1.0, "fan_in", "normal")``).
    """
    __slots__ = ()
    name = "xavier_normal"
    _setting = (1.0, "fan_avg", "normal")


class GlorotNormal(_Preset):
    """``glorot_normal``: Keras' Glorot normal, a truncated normal of variance ``2/(n_in + n_out)``.

    ``variance_scaling(1.0, "fan_avg", "truncated_normal")``: ``N(0, s^2)`` redrawn outside
    ``+-2 s``, ``s = sqrt(2/(n_in + n_out)) / 0.8796``, so the draws have variance
    ``2/(n_in + n_out)`` and lie within ``+-2.27 sqrt(2/(n_in + n_out))``.  As
    ``keras.initializers.GlorotNormal`` and ``jax.nn.initializers.glorot_normal``.
    Standard deviation ``sqrt(2/(n_in + n_out))`` (that of the draws; the underlying normal's is
    1/0.8796 times larger).  Use with tanh or sigmoid.

    .. versionchanged:: 0.1.0
       Was the plain normal, now ``xavier_normal`` (PyTorch's).
    """
    __slots__ = ()
    name = "glorot_normal"
    _setting = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_Preset):
    """``he_uniform`` (alias ``kaiming_uniform``): ``w ~ U(-sqrt(6/n_in), +sqrt(6/n_in))``.

    Standard deviation ``sqrt(2/n_in)``; variance ``2/n_in``.  Same as
    ``variance_scaling(2.0, "fan_in", "uniform")``, Keras' ``he_uniform`` and PyTorch's
    ``kaiming_uniform_`` with its defaults (``a=0``, fan_in, gain sqrt(2)).  Use before ReLU and
    leaky ReLU.
    """
    __slots__ = ()
    name = "he_uniform"
    _setting = (2.0, "fan_in", "uniform")


class KaimingNormal(_Preset):
    """``kaiming_normal``: ``w ~ N(0, 2/n_in)``, a plain (not truncated) normal.

    Standard deviation ``sqrt(2/n_in)``; variance ``2/n_in``.  Same as
    ``variance_scaling(2.0, "fan_in", "normal")`` and PyTorch's ``kaiming_normal_`` with its
    defaults (``a=0``, fan_in, gain sqrt(2)).  He et al. (2015): ReLU zeroes half of its
    inputs, halving their second moment; the factor 2 makes up for it.  Use before ReLU and
    leaky ReLU; the default for the ReLU family.

    .. versionadded:: 0.1.0
       The formula ``he_normal`` drew before it became Keras' truncated one.
    """
    __slots__ = ()
    name = "kaiming_normal"
    _setting = (2.0, "fan_in", "normal")


class HeNormal(_Preset):
    """``he_normal``: Keras' He normal, a truncated normal of variance ``2/n_in``.

    ``variance_scaling(2.0, "fan_in", "truncated_normal")``: ``N(0, s^2)`` redrawn outside
    ``+-2 s``, ``s = sqrt(2/n_in) / 0.8796``, so the draws have variance ``2/n_in``.  As
    ``keras.initializers.HeNormal`` and ``jax.nn.initializers.he_normal``.
    Standard deviation ``sqrt(2/n_in)`` (of the draws).  Use before ReLU and leaky ReLU.

    .. versionchanged:: 0.1.0
       Was the plain normal, now ``kaiming_normal`` (PyTorch's).
    """
    __slots__ = ()
    name = "he_normal"
    _setting = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    """``lecun_uniform``: ``w ~ U(-sqrt(3/n_in), +sqrt(3/n_in))``.

    Standard deviation ``1/sqrt(n_in)``; variance ``1/n_in``.  Same as
    ``variance_scaling(1.0, "fan_in", "uniform")`` and Keras' ``lecun_uniform``.  Use with
    tanh or SELU.  (Standard deviation and variance as above.)
    """
    __slots__ = ()
    name = "lecun_uniform"
    _setting = (1.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    """``lecun_normal``: Keras' LeCun normal, a truncated normal of variance ``1/n_in``.

    ``variance_scaling(1.0, "fan_in", "truncated_normal")``: ``N(0, s^2)`` redrawn outside
    ``+-2 s``, ``s = sqrt(1/n_in) / 0.8796``, so the draws have variance ``1/n_in``: with
    inputs of unit variance each pre-activation ``sum_i x_i w_i`` has variance 1.  As
    ``keras.initializers.LecunNormal`` and ``jax.nn.initializers.lecun_normal``.
    Standard deviation ``1/sqrt(n_in)`` (of the draws).  Use with tanh; Keras recommends it for SELU.

    .. versionchanged:: 0.1.0
       Was the plain normal ``N(0, 1/n_in)``, now ``variance_scaling(1.0, "fan_in",
       "normal")`` (no peer names it).
    """
    __slots__ = ()
    name = "lecun_normal"
    _setting = (1.0, "fan_in", "truncated_normal")


class Uniform(_Preset):
    """The former ``uniform``, ``U(+-1/sqrt(n_in))``: kept only so that old pickles load.

    Unpickled objects become ``variance_scaling(1/3, "fan_in", "uniform")`` (see
    ``_Preset.__setstate__``); the name ``uniform`` is no longer accepted, because Keras'
    ``"uniform"`` is ``U(-0.05, 0.05)`` and PyTorch's ``uniform_`` is ``U(0, 1)``.
    """
    __slots__ = ()
    name = "uniform"
    _setting = (1.0 / 3.0, "fan_in", "uniform")

    def __init__(self):
        raise TypeError(f"fastnn.nn.init.Uniform is no longer an initializer: {_RETIRED['uniform']}")


#: (scale, mode, distribution) -> the preset class of that setting (an unpickled object whose
#: stored setting no longer matches its class's becomes this class)
_PRESET_BY_SETTING = {cls._setting: cls for cls in (
    GlorotUniform, XavierNormal, GlorotNormal, HeUniform, KaimingNormal, HeNormal,
    LecunUniform, LecunNormal)}


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
#: names fastnn no longer accepts, because a peer means something else by them -> why
_RETIRED = {
    "uniform": "fastnn's former 'uniform', U(+-1/sqrt(n_in)) (PyTorch nn.Linear's default), "
               "is variance_scaling(1/3, 'fan_in', 'uniform'); Keras' 'uniform' is "
               "U(-0.05, 0.05) and PyTorch's uniform_ is U(0, 1)",
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
