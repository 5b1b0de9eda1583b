"""The initializer classes behind fastnn.nn.init: ``Initializer`` (the interface: draw,
configuration, equality, pickling), ``Zeros``, ``Constant``, ``Normal``, ``VarianceScaling``
and its named presets (``GlorotUniform``, ``KaimingNormal``, ...).  The names users pass
(``"he_normal"``, ``init.kaiming_normal``), the lookup and the defaults per activation are
fastnn/nn/init.py's, which re-exports these classes.
"""
import math
import numbers
import sys

import numpy as np

from fastnn._validation import (FLOAT_DTYPES, MAX_DIM, all_finite, check_choice, check_number,
                                check_random_state)

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "uniform", "truncated_normal")

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
        if values is None or not all_finite(values):
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


#: names fastnn no longer accepts, because a peer means something else by them -> why
_RETIRED = {
    "uniform": "fastnn's former 'uniform', U(+-1/sqrt(n_in)) (PyTorch nn.Linear's default), "
               "is variance_scaling(1/3, 'fan_in', 'uniform'); Keras' 'uniform' is "
               "U(-0.05, 0.05) and PyTorch's uniform_ is U(0, 1)",
}
