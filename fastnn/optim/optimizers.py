"""Optimizers (SGD with momentum/Nesterov, Adam, AdamW) and learning-rate schedules.

An optimizer holds its hyperparameters and its state (velocity, or Adam's two moments), each
ONE array over the model's whole parameter vector, allocated once and updated in place by a
single compiled pass (fastnn/_core/_sgd.pyx).  Weight decay applies to weight matrices only, not to
biases, as scikit-learn's ``alpha`` does: as an L2 term of the gradient (SGD, Adam) or
decoupled from it (AdamW).

Schedules give the learning rate of each epoch (the rate is constant within an epoch) and
compose with any optimizer: ``SGD(lr=0.1, schedule=Cosine(total_epochs=50))``.

Continuing is the default.  A schedule is a function of a counter the optimizer owns and
saves, ``optimizer.completed_epochs`` (as Keras computes rates from ``optimizer.iterations``
and PyTorch keeps ``last_epoch`` in a scheduler's state), and the optimizer also keeps its step
count ``t``, its state vectors and a ReduceOnPlateau's progress.  So a second ``fit`` with the
same optimizer, a ``load(..., with_optimizer=True)`` or an unpickled optimizer runs epoch 4
at the rate an uninterrupted run would.  ``optimizer.reset()`` starts afresh.
"""
import math
import sys

import numpy as np

from fastnn.runtime import boundary
from fastnn._validation import check_choice, check_number, check_writeable
from fastnn.nn.network import Network

# ---------------------------------------------------------------- schedules


#: epochs of a user-defined schedule evaluated before a fit (the built-in ones, monotone in
#: the epoch, need their first and last planned epochs only)
PLANNED_RATES_CHECKED = 10_000
#: the most epochs a run can count: the compiled epoch takes its index as a 32-bit unsigned
#: integer (the seed of the epoch's dropout masks)
MAX_EPOCHS = 2**32 - 1
#: the most optimizer steps a run can count (also the model file's bound): far below the
#: compiled loop's 64-bit counter, which adds an epoch's steps to it
MAX_STEPS = 2**62


class Schedule:
    """Base class: ``lr(epoch, base_lr)``; stateless unless noted.

    `epoch` is the number of epochs the optimizer completed before this one (0 for the first
    epoch of a run, 3 for the first epoch of a fit that continues a 3-epoch run): the
    optimizer's ``completed_epochs``.  User-visible epoch numbers are 1-based (epoch
    ``completed_epochs + 1``).
    """

    #: True when the class's own lr(epoch) is monotone in epoch (the built-in schedules), so
    #: that its first and last values bound every value between
    _monotone = False

    def lr(self, epoch, base_lr):
        """The learning rate of an epoch.

        Parameters
        ----------
        epoch : int >= 0
            0-based epoch index (the optimizer's ``completed_epochs`` before it; the epoch
            numbered ``epoch + 1`` in History and messages).
        base_lr : float > 0
            The optimizer's ``lr``: the step size per optimizer step (per minibatch).

        Returns
        -------
        float
            The rate used for every step (minibatch) of that epoch.
        """
        raise NotImplementedError

    def on_epoch_end(self, epoch, value):
        """Called with the monitored value after each epoch (only ReduceOnPlateau uses it).

        Parameters
        ----------
        epoch : int >= 0
            0-based index of the epoch that ended (History numbers it ``epoch + 1``).
        value : float
            The validation loss when there is validation data, else the training loss (each
            the weighted mean of the per-sample losses).
        """

    def reset(self):
        """Forget any progress (called by ``Optimizer.reset``, to start afresh)."""

    def get_config(self):
        return {"name": type(self).__name__, **{k: v for k, v in vars(self).items()
                                                 if not k.startswith("_")}}

    def check(self):
        """Check the settings again as the constructor does (they are plain attributes, which
        a callback may have set since: ``step_size = 0`` is a ValueError naming step_size,
        not a ZeroDivisionError inside ``lr``).  A no-op for user-defined schedules."""
        cls = type(self)
        if cls in SCHEDULES.values() and "__init__" in vars(cls):
            config = {k: v for k, v in vars(self).items() if not k.startswith("_")}
            checked = cls(**config)
            for k in config:  # the normalised values (floats as floats)
                setattr(self, k, getattr(checked, k))


class Constant(Schedule):
    """lr_e = lr."""

    _monotone = True

    def lr(self, epoch, base_lr):
        return base_lr

    def __repr__(self):
        return "Constant()"


class StepDecay(Schedule):
    """lr_e = lr * gamma ** (e // step_size): multiply by gamma every step_size epochs.

    Parameters
    ----------
    step_size : int >= 1, default 10
        Epochs between two decays.
    gamma : float in (0, 1], default 0.1
        Factor applied at each decay.
    """

    _monotone = True

    def __init__(self, step_size=10, gamma=0.1):
        self.step_size = check_number(step_size, "step_size", low=1, integer=True)
        self.gamma = float(check_number(gamma, "gamma", low=0.0, high=1.0, low_open=True))

    def lr(self, epoch, base_lr):
        k = epoch // self.step_size
        decay = self.gamma ** k
        if decay < _TINY and self.gamma < 1:
            # gamma ** k alone underflows where lr * gamma ** k need not (lr > 1)
            return _times_power(base_lr, self.gamma, k)
        return base_lr * decay

    def __repr__(self):
        return f"StepDecay(step_size={self.step_size}, gamma={self.gamma})"


class InverseScaling(Schedule):
    """lr_e = lr / t ** power with t = e + 1 (scikit-learn's "invscaling", per epoch).

    Parameters
    ----------
    power : float >= 0, default 0.5
        Exponent of the decay (scikit-learn's ``power_t``).
    """

    _monotone = True

    def __init__(self, power=0.5):
        self.power = float(check_number(power, "power", low=0.0))

    def lr(self, epoch, base_lr):
        try:
            return base_lr / (epoch + 1) ** self.power
        except OverflowError:
            # t ** power alone overflows (power 400 at epoch 10) where lr / t ** power is a
            # number (0 when it underflows): raised mid-training before
            return _times_power(base_lr, epoch + 1, -self.power)

    def __repr__(self):
        return f"InverseScaling(power={self.power})"


class Cosine(Schedule):
    """lr_e = min_lr + (lr - min_lr) (1 + cos(pi e / total_epochs)) / 2, then min_lr.

    Parameters
    ----------
    total_epochs : int >= 1
        Epochs of the half cosine period; later epochs use min_lr.
    min_lr : float >= 0, default 0.0
        The final rate (per step, as ``lr``).

    References
    ----------
    Loshchilov, I. and Hutter, F. (2017). SGDR: Stochastic Gradient Descent with Warm
    Restarts. ICLR (without the restarts).
    """

    _monotone = True

    def __init__(self, total_epochs, min_lr=0.0):
        self.total_epochs = check_number(total_epochs, "total_epochs", low=1, integer=True)
        self.min_lr = float(check_number(min_lr, "min_lr", low=0.0))

    def lr(self, epoch, base_lr):
        if epoch >= self.total_epochs:
            return self.min_lr
        angle = math.pi * epoch / self.total_epochs
        # the factor in [0, 1] before the product, which overflowed for a base near 1e308;
        # near the last epoch 1 + cos cancels (0 for total_epochs >= 1e8): cos^2 of the
        # half angle instead, the same number without the cancellation
        half = (1 + math.cos(angle)) / 2
        if half < 0.01:
            half = math.cos(angle / 2) ** 2
        return self.min_lr + (base_lr - self.min_lr) * half

    def __repr__(self):
        return f"Cosine(total_epochs={self.total_epochs}, min_lr={self.min_lr})"


class ReduceOnPlateau(Schedule):
    """Divide the rate by 1/factor when the monitored loss stops improving.

    After ``patience`` consecutive epochs whose value does not improve on the best so far by
    more than ``min_delta``, the rate is multiplied by ``factor`` (never below ``min_lr``).
    With factor=0.2, patience=2, min_delta=tol this is scikit-learn's "adaptive" rate.  The
    value is the validation loss when there is validation data, else the training loss.

    Parameters
    ----------
    factor : float in (0, 1), default 0.2
        Multiplies the rate at each reduction.
    patience : int >= 1, default 2
        Epochs without improvement before a reduction.
    min_delta : float >= 0, default 1e-4
        Smallest decrease of the monitored loss that counts as an improvement (its units).
    min_lr : float >= 0, default 0.0
        The rate (per step, as ``lr``) never goes below this.
    """

    _monotone = True

    def __init__(self, factor=0.2, patience=2, min_delta=1e-4, min_lr=0.0):
        self.factor = float(check_number(factor, "factor", low=0.0, high=1.0, low_open=True,
                                         high_open=True))
        self.patience = check_number(patience, "patience", low=1, integer=True)
        self.min_delta = float(check_number(min_delta, "min_delta", low=0.0))
        self.min_lr = float(check_number(min_lr, "min_lr", low=0.0))
        self.reset()

    def reset(self):
        self._best = math.inf
        self._bad_epochs = 0
        self._scale = 1.0

    def lr(self, epoch, base_lr):
        return max(base_lr * self._scale, self.min_lr)

    def on_epoch_end(self, epoch, value):
        if value < self._best - self.min_delta:
            self._best = value
            self._bad_epochs = 0
        else:
            self._bad_epochs += 1
            if self._bad_epochs >= self.patience:
                self._scale *= self.factor
                self._bad_epochs = 0
        # a new best is measured from the current value, as scikit-learn does
        self._best = min(self._best, value)

    def __repr__(self):
        return (f"ReduceOnPlateau(factor={self.factor}, patience={self.patience}, "
                f"min_delta={self.min_delta}, min_lr={self.min_lr})")


#: the smallest normal float64: a power below it has lost bits (or is 0)
_TINY = sys.float_info.min


def _times_power(base, t, power):
    """base * t ** power (base > 0, t > 0) in log space, exp(log(base) + power log(t)): for
    when t ** power alone overflows or underflows although the product need not.  Every
    built-in schedule computes its plain form first and uses this only then, so its rates
    are the same bits wherever the plain form is finite and normal."""
    exponent = math.log(base) + power * math.log(t)   # (an overflow here is +-inf)
    return math.inf if exponent > _LOG_MAX else math.exp(exponent)


_LOG_MAX = math.log(sys.float_info.max)


SCHEDULES = {"constant": Constant, "step": StepDecay, "invscaling": InverseScaling,
             "cosine": Cosine, "plateau": ReduceOnPlateau}


def get_schedule(schedule):
    """A Schedule instance from None (constant), a name, or an instance.

    Parameters
    ----------
    schedule : None, {"constant", "step", "invscaling", "cosine", "plateau"} or Schedule
    """
    if schedule is None:
        return Constant()
    if isinstance(schedule, Schedule):
        return schedule
    return SCHEDULES[check_choice(schedule, "schedule", tuple(SCHEDULES))]()


# ---------------------------------------------------------------- optimizers


class Optimizer:
    """Base class.  Subclasses set ``kind`` and the hyperparameters the compiled update reads.

    Parameters
    ----------
    lr : float > 0
        Base learning rate: the step size of each optimizer step (one per minibatch).
    weight_decay : float >= 0
        L2 penalty coefficient on weight matrices (see ``SGD``).
    clip_norm : float > 0 or None
        Euclidean norm the whole gradient vector is clipped to.
    schedule : Schedule, str or None
        The learning rate per epoch, a function of ``completed_epochs``.
    """

    kind = None
    momentum = 0.0
    nesterov = False
    beta1 = beta2 = eps = 0.0
    completed_epochs = 0  # also the value for an optimizer pickled before it was counted
    _early_stopping = None

    def __init__(self, lr, weight_decay, clip_norm, schedule):
        self.lr, self.weight_decay, self.clip_norm = lr, weight_decay, clip_norm
        self.schedule = get_schedule(schedule)
        self._reset_state()
        self.completed_epochs = 0  # a schedule passed in keeps its own progress
        self._early_stopping = None  # the run's early-stopping record (fastnn.training.engine)
        self._check()

    def _check(self):
        """Validate (and normalise) the hyperparameters, as the constructor does.

        Run again before every compiled update, so that a hyperparameter changed after
        construction (by a callback, between or during fits) is checked like one passed to
        the constructor.  O(1).
        """
        self.lr = float(check_number(self.lr, "lr", low=0.0, low_open=True))
        self.weight_decay = float(check_number(self.weight_decay, "weight_decay", low=0.0))
        if self.clip_norm is not None:
            self.clip_norm = float(check_number(self.clip_norm, "clip_norm", low=0.0,
                                                low_open=True))
        if not isinstance(self.schedule, Schedule):
            raise TypeError(f"schedule must be a fastnn.optim.optimizers.Schedule; got "
                            f"{type(self.schedule).__name__}")
        self.t = int(check_number(self.t, "t (the optimizer's step count)", low=0,
                                  high=MAX_STEPS, integer=True))

    def __setattr__(self, name, value):
        # any hyperparameter set after construction is checked again before the next
        # compiled update; the counts fit sets every epoch (the step count, the epoch count)
        # are checked on their own (_recheck, _check_progress), and private state is not a
        # hyperparameter (the split get_config makes)
        object.__setattr__(self, name, value)
        if name not in ("t", "completed_epochs") and not name.startswith("_"):
            object.__setattr__(self, "_changed", True)

    def _recheck(self):
        """_check, unless nothing was set since the last one (a callback may set any)."""
        if self.__dict__.get("_changed", True) or type(self.t) is not int or \
                not 0 <= self.t <= MAX_STEPS:
            self._check()
            object.__setattr__(self, "_changed", False)

    def reset(self):
        """Start afresh: forget the state (velocity / moments), the step count ``t``, the epoch
        count ``completed_epochs``, the schedule's progress and the run's early-stopping
        record.

        Nothing else resets them: a second fit with the same optimizer continues the run.
        """
        self._reset_state()
        self.completed_epochs = 0
        self.schedule.reset()
        self._early_stopping = None  # the run's early-stopping record (fastnn.training.engine)

    def _reset_state(self):
        # the moments and the step count belong together (Adam's bias correction reads t)
        self.state = (None, None)
        self.t = 0

    @property
    def state(self):
        """(state1, state2): velocity, or Adam's two moments; (None, None) before any step.

        Each is a 1-D float32/float64 C-contiguous writeable array, of the model's length
        (or empty when this optimizer keeps none).  Assignment checks that form; the length
        is checked against the model before every update (``init_state``).
        """
        return self._state

    @state.setter
    def state(self, value):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"state must be a pair (state1, state2) of arrays or (None, None); "
                            f"got {type(value).__name__}")
        s1, s2 = value
        if (s1 is None) != (s2 is None):
            raise ValueError("state must be two arrays or (None, None); got one of each")
        for i, s in enumerate((s1, s2)):
            if s is None:
                continue
            name = f"state[{i}]"
            if not isinstance(s, np.ndarray):
                raise TypeError(f"{name} must be a numpy.ndarray; got {type(s).__name__}")
            if s.ndim != 1 or s.dtype not in (np.float32, np.float64) or s.dtype != s1.dtype:
                raise ValueError(f"{name} is a {s.dtype} array of shape {s.shape}; expected a "
                                 "1-D float32 or float64 vector (both of one dtype)")
            if not s.flags.c_contiguous:
                raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
            check_writeable(s, name)
        if s1 is not None and s1.size and s2.size and np.may_share_memory(s1, s2):
            # Adam would write both moments into one buffer: wrong numbers, silently
            raise ValueError("state[0] and state[1] share memory; expected separate arrays")
        self._state = (s1, s2)

    def _n_state(self):
        raise NotImplementedError

    def init_state(self, n_params, dtype):
        """The state for a parameter vector of n_params in `dtype`, allocated unless it fits.

        Parameters
        ----------
        n_params : int
            Length of the model's parameter vector.
        dtype : numpy.float32 or numpy.float64
            The model's dtype.

        It fits when every vector this optimizer's update reads (with its hyperparameters
        now) has n_params entries of `dtype` (a warm start keeps it); otherwise fresh zeros
        replace it and the step count restarts.  Called before every compiled update, so a
        hyperparameter changed between epochs (momentum raised from 0) gets its state.
        """
        n_state = self._n_state()
        dtype = np.dtype(dtype)
        state = self._state
        # a vector the update reads must have n_params entries; one it does not read may
        # also be empty
        s1, s2 = state
        fits = s1 is not None and s1.dtype == dtype and s2.dtype == dtype and \
            s1.shape[0] in ((n_params,) if n_state >= 1 else (0, n_params)) and \
            s2.shape[0] in ((n_params,) if n_state >= 2 else (0, n_params))
        if not fits:
            empty = np.zeros(0, dtype=dtype)
            self.state = tuple(np.zeros(n_params, dtype=dtype) if i < n_state else empty
                               for i in range(2))
            self.t = 0
        return self._state

    def lr_at(self, epoch):
        """The learning rate of the epoch that follows `epoch` completed ones.

        Parameters
        ----------
        epoch : int >= 0
            Completed epochs (counted from 0: the rate of the run's first epoch is
            ``lr_at(0)``).

        Returns
        -------
        float
            The step size per optimizer step during that epoch.
        """
        self._check_progress()
        return self._rate(epoch)

    def _rate(self, epoch):
        """lr_at(epoch) for a caller that ran _check_progress since anything could set the
        schedule or the epoch count (the training engine, once per epoch)."""
        return float(self.schedule.lr(epoch, self.lr))

    def _check_progress(self):
        """The schedule's settings and the epoch count, checked as the constructors check
        them (both are plain attributes a callback may set between epochs).  O(1)."""
        if not isinstance(self.schedule, Schedule):
            raise TypeError(f"schedule must be a fastnn.optim.optimizers.Schedule; got "
                            f"{type(self.schedule).__name__}")
        self.schedule.check()
        if type(self.completed_epochs) is not int or \
                not 0 <= self.completed_epochs <= MAX_EPOCHS:
            self.completed_epochs = int(check_number(
                self.completed_epochs, "completed_epochs (the optimizer's epoch count)",
                low=0, high=MAX_EPOCHS, integer=True))

    def check_planned_rates(self, epochs, tiny=0.0):
        """Raise ValueError, before any step, if the schedule gives a rate that is not a finite
        positive number for one of the next `epochs` epochs (numbered from 1 in the message).

        Parameters
        ----------
        epochs : int >= 0
            Epochs the coming fit plans, after the ``completed_epochs`` already run.
        tiny : float >= 0, default 0.0
            The smallest rate allowed besides: the model dtype's smallest normal number
            (``numpy.finfo(dtype).tiny``), below which every step is flushed to zero.
        """
        self._check_progress()
        start, stop = self.completed_epochs, self.completed_epochs + epochs
        if stop > MAX_EPOCHS:
            raise ValueError(f"epochs={epochs} after completed_epochs={start} (the optimizer's "
                             f"epoch count) would count past {MAX_EPOCHS}, the most epochs a "
                             "run can count; call optimizer.reset() to start afresh")
        def bad(e):
            lr = self.lr_at(e)
            return not (math.isfinite(lr) and lr > 0 and lr >= tiny)

        # the class whose lr is used says whether it is monotone (a subclass overriding lr
        # is a user's schedule)
        owner = next(k for k in type(self.schedule).__mro__ if "lr" in vars(k))
        if vars(owner).get("_monotone", False):
            # the first and last epochs bound the rest; a rate that falls to 0 does so from
            # some epoch on: find the first by bisection
            first = None
            if bad(start):
                first = start
            elif bad(stop - 1):
                low, high = start, stop - 1  # bad(high), not bad(low)
                while high - low > 1:
                    mid = (low + high) // 2
                    low, high = (low, mid) if bad(mid) else (mid, high)
                first = high
        else:  # a user's schedule: every epoch, up to a bound that keeps this O(1) per fit
            first = next((e for e in range(start, min(stop, start + PLANNED_RATES_CHECKED))
                          if bad(e)), None)
        if first is not None:
            raise ValueError(
                f"the schedule {self.schedule!r} gives lr={self.lr_at(first)!r} for epoch "
                f"{first + 1} of this run (the fit would train epochs {start + 1} to {stop}); "
                "expected a finite rate > 0" + (
                    f" and >= {tiny:.3g}, the smallest normal number of the model's dtype "
                    "(a smaller rate's steps are flushed to zero)" if tiny else "") +
                ". Cover every epoch with the schedule (e.g. "
                "Cosine's total_epochs), set min_lr > 0, or call optimizer.reset() to start "
                "the schedule afresh")

    def compiled_args(self, lr):
        """(kind, lr, momentum, nesterov, weight_decay, clip_norm, beta1, beta2, eps).

        Checks the hyperparameters again first (see ``_check``).

        Parameters
        ----------
        lr : float >= 0
            The rate of this step or epoch (per optimizer step), finite (a schedule may end
            at 0).
        """
        self._check_progress()
        return self._compiled_args(lr)

    def _compiled_args(self, lr):
        """compiled_args(lr) for a caller that ran _check_progress since anything could set
        the schedule or the epoch count (the training engine, once per epoch)."""
        self._recheck()
        if type(lr) is not float or not 0.0 <= lr < math.inf:  # (the common case is cheap)
            lr = float(check_number(lr, "lr (the scheduled learning rate)", low=0.0))
        return (self.kind, lr, self.momentum, self.nesterov, self.weight_decay,
                self.clip_norm if self.clip_norm is not None else 0.0,
                self.beta1, self.beta2, self.eps)

    def step(self, model, lr=None):
        """Apply one update from ``model.grads`` to ``model.params`` (for hand-written loops).

        Parameters
        ----------
        model : fastnn.MLP
            Its ``grads`` must hold the gradient (e.g. from ``model.loss_and_grad``).
        lr : float, optional
            Overrides the base learning rate for this step (> 0): the step size of this one
            update.
        """
        if not isinstance(model, Network):
            raise TypeError(f"model must be a fastnn.MLP; got {type(model).__name__}")
        if lr is not None:
            lr = float(check_number(lr, "lr", low=0.0, low_open=True))
        args = self.compiled_args(self.lr if lr is None else lr)
        with model._lock:  # a save in another thread copies the parameters before or after
            check_writeable(model.params, "model.params")
            s1, s2 = self.init_state(model.n_params, model.dtype)
            boundary.update_params(model._spec, model.params, model.grads, s1, s2, *args,
                                   self.t + 1)
            self.t += 1

    def get_config(self):
        config = {k: v for k, v in vars(self).items()
                  if k not in ("t", "schedule", "completed_epochs") and not k.startswith("_")}
        config["schedule"] = self.schedule.get_config()
        return {"name": type(self).__name__, **config}


class SGD(Optimizer):
    """Minibatch stochastic gradient descent, with optional (Nesterov) momentum.

    ``v <- momentum v - lr (g + weight_decay w)``, ``w <- w + v``;  Nesterov:
    ``w <- w + momentum v - lr (g + weight_decay w)`` with the new v.  momentum=0 is plain SGD.

    Parameters
    ----------
    lr : float > 0, default 0.01
        Base learning rate: each optimizer step (one per minibatch) moves the weights by
        ``lr`` times the (momentum-averaged) mean gradient of the minibatch; the schedule
        scales it per epoch.
    momentum : float in [0, 1), default 0.0
    nesterov : bool, default False
    weight_decay : float >= 0, default 0.0
        L2 penalty coefficient on weight matrices (biases are not decayed): the gradient gets
        ``weight_decay * w``, i.e. the loss ``weight_decay / 2 * ||W||^2``.
    clip_norm : float > 0 or None
        Rescale the whole gradient vector to this Euclidean norm when it is longer.
    schedule : Schedule, str or None
        Learning rate per epoch (see ``Constant``, ``StepDecay``, ...); None: constant.
    learning_rate : float > 0, optional
        Keras' name of `lr` (keyword only); giving both is a TypeError.

    Raises
    ------
    ValueError
        A hyperparameter out of its range (named in the message).
    TypeError
        Both lr and learning_rate given.
    """

    kind = boundary.OPT_SGD

    def __init__(self, lr=None, momentum=0.0, nesterov=False, weight_decay=0.0,
                 clip_norm=None, schedule=None, *, learning_rate=None):
        lr = _lr_alias(lr, learning_rate, 0.01)
        self.momentum, self.nesterov = momentum, nesterov
        super().__init__(lr, weight_decay, clip_norm, schedule)

    def _check(self):
        super()._check()
        self.momentum = float(check_number(self.momentum, "momentum", low=0.0, high=1.0,
                                           high_open=True))
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False; got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(self.nesterov)

    def _n_state(self):
        return 1 if self.momentum > 0 else 0

    def __repr__(self):
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay}, clip_norm={self.clip_norm}, "
                f"schedule={self.schedule!r})")


class Adam(Optimizer):
    """Adam (Kingma & Ba), as in PyTorch.

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``w <- w - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`` with g including
    ``weight_decay w`` for weight matrices (L2, not decoupled).

    Parameters
    ----------
    lr : float > 0, default 1e-3
        Base learning rate: each optimizer step (one per minibatch) moves a parameter by at
        most about ``lr``; the schedule scales it per epoch.
    beta1 : float in [0, 1), default 0.9
        Decay of the first-moment (mean) estimate; PyTorch's ``betas[0]``, Keras' ``beta_1``.
    beta2 : float in [0, 1), default 0.999
        Decay of the second-moment estimate; PyTorch's ``betas[1]``, Keras' ``beta_2``.
    eps : float > 0, default 1e-8
        Added to the denominator (in the units of the gradient).
    weight_decay : float >= 0, default 0.0
        L2 penalty on weight matrices, added to the gradient (as PyTorch's Adam, not AdamW).
    clip_norm : float > 0 or None
        Rescale the whole gradient vector to this Euclidean norm when it is longer.
    schedule : Schedule, str or None
        Learning rate per epoch; None: constant.
    learning_rate : float > 0, optional
        Keras' name of `lr` (keyword only); giving both is a TypeError.

    Raises
    ------
    ValueError
        A hyperparameter out of its range (named in the message).
    TypeError
        Both lr and learning_rate given.

    References
    ----------
    Kingma, D. P. and Ba, J. (2015). Adam: A Method for Stochastic Optimization. ICLR.
    """

    kind = boundary.OPT_ADAM

    def __init__(self, lr=None, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 clip_norm=None, schedule=None, *, learning_rate=None):
        lr = _lr_alias(lr, learning_rate, 1e-3)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        super().__init__(lr, weight_decay, clip_norm, schedule)

    def _check(self):
        super()._check()
        self.beta1 = float(check_number(self.beta1, "beta1", low=0.0, high=1.0,
                                        high_open=True))
        self.beta2 = float(check_number(self.beta2, "beta2", low=0.0, high=1.0,
                                        high_open=True))
        self.eps = float(check_number(self.eps, "eps", low=0.0, low_open=True))

    def _n_state(self):
        return 2

    def __repr__(self):
        return (f"Adam(lr={self.lr}, beta1={self.beta1}, beta2={self.beta2}, eps={self.eps}, "
                f"weight_decay={self.weight_decay}, clip_norm={self.clip_norm}, "
                f"schedule={self.schedule!r})")


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    Each step first shrinks the weight matrices, ``w <- (1 - lr weight_decay) w``, then takes
    Adam's step from the gradient alone (no L2 term in it): ``m <- b1 m + (1-b1) g``,
    ``v <- b2 v + (1-b2) g^2``, ``w <- w - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    ``lr`` is the scheduled rate of the epoch, in the shrink too, as in PyTorch with a
    scheduler.  Biases (and layer normalization's gain and shift) are not decayed: PyTorch
    code that puts them in a parameter group with ``weight_decay=0``, the usual recipe, is
    ported as it is; code decaying every parameter differs on the biases.  (PyTorch's
    ``amsgrad`` has no counterpart, as in ``Adam``.)

    Parameters
    ----------
    lr : float > 0, default 1e-3
        Base learning rate (per optimizer step, one per minibatch); the schedule scales it
        per epoch.
    beta1, beta2 : float in [0, 1), default 0.9, 0.999
        PyTorch's ``betas``.
    eps : float > 0, default 1e-8
    weight_decay : float >= 0, default 1e-2
        The decoupled decay coefficient (PyTorch's AdamW default): each step multiplies the
        weight matrices by ``1 - lr * weight_decay``.
    clip_norm : float > 0 or None
        Rescale the whole gradient vector to this Euclidean norm when it is longer (the
        decay does not enter the gradient, so it is not clipped).
    schedule : Schedule, str or None
        Learning rate per epoch; None: constant.
    learning_rate : float > 0, optional
        Keras' name of `lr` (keyword only); giving both is a TypeError.

    Raises
    ------
    ValueError
        A hyperparameter out of its range (named in the message).
    TypeError
        Both lr and learning_rate given.

    References
    ----------
    Loshchilov, I. and Hutter, F. (2019). Decoupled Weight Decay Regularization. ICLR.
    """

    kind = boundary.OPT_ADAMW

    def __init__(self, lr=None, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2,
                 clip_norm=None, schedule=None, *, learning_rate=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, clip_norm, schedule,
                         learning_rate=learning_rate)

    def __repr__(self):
        return "AdamW" + super().__repr__()[len("Adam"):]


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def _lr_alias(lr, learning_rate, default):
    """`lr`, or Keras' `learning_rate` naming the same thing; never both."""
    if learning_rate is not None:
        if lr is not None:
            raise TypeError(f"got lr={lr!r} and learning_rate={learning_rate!r}; they are the "
                            "same parameter (learning_rate is Keras' name for lr): pass one")
        return learning_rate
    return default if lr is None else lr


def get_optimizer(optimizer):
    """An Optimizer from None (SGD()), a name ("sgd", "adam", "adamw") or an instance.

    Parameters
    ----------
    optimizer : None, {"sgd", "adam", "adamw"} or Optimizer
    """
    if optimizer is None:
        return SGD()
    if isinstance(optimizer, Optimizer):
        return optimizer
    return OPTIMIZERS[check_choice(optimizer, "optimizer", tuple(OPTIMIZERS))]()
