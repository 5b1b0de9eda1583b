"""Deep ensembles: K networks of one architecture, trained from different seeds on every core.

A deep ensemble (Lakshminarayanan, Pritzel & Blundell 2017, "Simple and scalable predictive
uncertainty estimation using deep ensembles", NeurIPS) trains K copies of one network from
different random initializations (and shuffling orders, optionally on bootstrap resamples of
the data) and averages their predictions.  Where the data pins the function down the members
agree; away from the data they disagree, and that spread measures the model's own
(epistemic) uncertainty.

Where the parts live: the members' lockstep epochs in fastnn/training/lockstep.py, bootstrap
resamples in fastnn/training/resample.py, the predictions and intervals (the mixture's
formulas) in fastnn/ensemble_prediction.py, the file format in fastnn/io/ensemble_file.py.

How the members are trained
---------------------------
Each member is an ordinary ``fastnn.MLP`` with its own ``fastnn.fit`` run, and the runs
advance in lockstep epochs (``train_in_lockstep``): one compiled job per round runs every
active member's epoch as a task on fastnn's pool (``n_threads`` threads, BLAS at one), each
member's epoch whole on one thread, so member k is bitwise equal to ``MLP(...,
seed=s_k).fit(X_k, y_k, ..., n_threads=1)`` (whose fit seed is the model's, s_k) with its
seed ``s_k = member_seeds[k]``, its data ``X_k`` (all of X, or the bootstrap resample
``X[ensemble.bootstrap_indices(k, n)]``) and the fit's arguments (early stopping included,
as "Honest intervals" below resolves it).  ``fit(..., seed=s)`` gives member k the fit seed
``member_fit_seeds(s)[k]`` instead (the ensemble's seed rule, applied to s).  The members'
resamples all exist during the fit (K copies of X with bootstrap).

With ``comm`` (MPI data-parallel, see fastnn.training.distributed) each round runs its
members' epochs one after another, in member order, on the calling thread of every rank:
each epoch issues its collectives in the same order on every rank, so no two interleave and
nothing can deadlock.

Honest intervals
----------------
A member trained with ``GaussianNLL("learned")`` predicts its own noise level, and on the
rows it trains on it learns to shrink it: the longer it trains, the more its sigma fits the
noise of those rows and the narrower the intervals on new rows.  bench/coverage.py measures
the 90% interval of 5 members on scikit-learn's diabetes data (442 rows) and friedman1
(1000 rows), 5 splits x 2 seeds each, 25% of the rows held out: trained without early
stopping it covered 71% (diabetes) and 80% (friedman1) of the held-out rows after 50 epochs,
55% and 66% after 200.  So ``fit``'s ``early_stopping="auto"`` (the default) stops
learned-variance members on the Gaussian NLL of rows they do not train on:
``EarlyStopping(patience=20)`` (best weights restored) on the caller's ``validation_data``
or ``validation_split`` if given, else, with bootstrap, the rows the member's resample
missed (its out-of-bag rows, about 37%, which no copy of a training row enters), else each
member's own random 10% of the rows (``validation_split=0.1`` drawn from the member's fit
seed: the members hold out different rows, so the ensemble as a whole learns from every
row).  Measured the same way, the default covered 93% (diabetes, +-2.5 over the runs) and
96% (friedman1, +-1.0); out-of-bag rows 94% and 97%.  That errs wide, never narrow: each
member alone covers about 80-84% on friedman1, and the members' disagreement (the epistemic
part) adds more width than the averaged mean needs.  A held-out share of 20% was wider
still; a patience of 10 gave the same coverage with a worse test NLL.  ``early_stopping=None``
or ``False`` trains every epoch asked for and warns for learned-variance members; other
losses do not stop early unless asked.
"""
import contextlib
import copy
import inspect
import threading
import warnings

import numpy as np

from fastnn.runtime import fpmode
from fastnn.runtime.state import consistent
from fastnn._validation import MAX_DIM, check_bool, check_number
from fastnn.ensemble_prediction import (EnsemblePrediction, EnsemblePredictor,  # noqa: F401
                                        mixture_quantiles)
from fastnn.io.ensemble_file import (ENSEMBLE_FORMAT, ENSEMBLE_FORMAT_VERSION, MAX_MEMBERS,
                                     read_ensemble, write_ensemble)
from fastnn.io.saving import ModelFileError, model_arrays
from fastnn.io.writer import check_output
from fastnn.nn.losses import GaussianNLL, get_loss
from fastnn.nn.model import MLP
from fastnn.nn.sparse import CSRInput
from fastnn.optim.optimizers import Optimizer, get_optimizer
from fastnn.runtime.threads import available_cores, compiled_threads, resolve_threads  # (re-exported)
from fastnn.training.engine import EarlyStopping
from fastnn.training.distributed import MPIContext, agreed
from fastnn.training.lockstep import train_in_lockstep  # (re-exported)
from fastnn.training.resample import bootstrap_draw, out_of_bag  # (re-exported)
from fastnn.training.trainer import check_callbacks, check_comm_seed, prepare_run

__all__ = ["MLPEnsemble", "EnsemblePrediction", "load_ensemble", "available_cores",
           "ENSEMBLE_FORMAT", "ENSEMBLE_FORMAT_VERSION", "mixture_quantiles"]

_MAX_MEMBERS = MAX_MEMBERS
# fixed second word of a member's bootstrap stream, so it differs from its init/shuffle stream
_BOOTSTRAP_STREAM = 0xB007

#: early_stopping="auto" with learned-variance members: the patience (epochs) and, without a
#: bootstrap's out-of-bag rows or the caller's validation data, each member's held-out share
AUTO_PATIENCE = 20
AUTO_VALIDATION_SPLIT = 0.1
#: what fit warns when learned-variance members train without early stopping
NARROW_INTERVALS_WARNING = (
    "learned-variance members (GaussianNLL('learned')) trained without early stopping fit "
    "their noise to the training rows, and intervals tend to be too narrow: 90% intervals "
    "covered 55% to 80% of held-out rows on scikit-learn's diabetes and friedman1 data after "
    "50 to 200 epochs, against 93% to 96% with early stopping (bench/coverage.py). "
    "early_stopping='auto' (the default) stops each member on the loss of rows it does not "
    "train on")


#: guards the check-and-set of MLPEnsemble._fitting across threads
_FIT_GUARD = threading.Lock()

#: what ``fit`` hands each member's ``prepare_run`` from its **fit_kwargs
_MEMBER_FIT_KEYWORDS = frozenset(inspect.signature(prepare_run).parameters) - {
    "model", "X", "y", "loss", "optimizer", "seed", "sample_weight", "callbacks", "comm",
    "n_threads"}


class MLPEnsemble(EnsemblePredictor):
    """A deep ensemble: K ``fastnn.MLP`` members of one architecture with different seeds.

    Parameters
    ----------
    layer_sizes : sequence of int
        The members' widths ``[n_0, ..., n_L]`` (see ``fastnn.MLP``).
    n_members : int, default 5
        K >= 1.  Lakshminarayanan et al. find 5 members enough for most of the benefit.
    activation, output, init, bias_init, dtype, negative_slope, alpha
        As for ``fastnn.MLP``, the same for every member.
    warn_symmetric, dropout, normalization
        As for ``fastnn.MLP``, the same for every member.
    seed : int, numpy.random.Generator or None
        Draws the members' seeds ``member_seeds`` (K ints, ``member_fit_seeds(seed)``):
        member k is ``MLP(..., seed=member_seeds[k])`` and a fit without a seed shuffles
        (and splits, and drops units) with that seed too, as ``MLP.fit`` uses its model's
        seed.  The same int seed gives the same ensemble, fit after fit.
    bootstrap : bool, default False
        Train each member on a bootstrap resample (n rows drawn with replacement, see
        ``bootstrap_indices``) instead of on all rows; with sample_weight, a resample that
        misses every row of positive weight is drawn again.  Random initialization alone
        usually gives the better ensemble (Lakshminarayanan et al., section 2.4);
        bootstrapping adds diversity when members are large compared to the data.

    Attributes
    ----------
    members : list of fastnn.MLP
    member_seeds : list of int
    optimizers_ : list of optimizers or None
        Each member's optimizer after ``fit`` (its state continues in the next fit).
    histories_ : list of fastnn.History
        Each member's history of the last ``fit``.
    """

    _fitting = False    # a fit is running (set by fit: a second one would share its runs)

    def __getstate__(self):
        # one epoch boundary of a fit in another thread (fastnn/runtime/state.py): the members, their
        # optimizers and histories copied together, inside consistent(self)
        with consistent(self):
            state = copy.deepcopy(self.__dict__)
        # a copy or pickle taken during a fit (a callback's checkpoint) is not itself fitting
        state.pop("_fitting", None)
        return state

    def _state_parts(self):
        """The members, whose state is part of the ensemble's (fastnn/runtime/state.py)."""
        members = self.members
        return [m for m in members if isinstance(m, MLP)] if isinstance(members, list) else []

    def __init__(self, layer_sizes, n_members=5, *, activation="relu", output="auto",
                 init=None, bias_init=0.0, dtype=np.float32, seed=None,
                 negative_slope=None, alpha=None, bootstrap=False, warn_symmetric=True,
                 dropout=0.0, normalization=None):
        n_members = int(check_number(n_members, "n_members", low=1, high=_MAX_MEMBERS,
                                     integer=True))
        if seed is not None and not isinstance(seed, np.random.Generator):
            check_number(seed, "seed", low=0, integer=True)
        seeds = _draw_member_seeds(seed, n_members)
        members = [MLP(layer_sizes, activation=activation, output=output, init=init,
                       bias_init=bias_init, dtype=dtype, seed=s,
                       negative_slope=negative_slope, alpha=alpha,
                       warn_symmetric=warn_symmetric, dropout=dropout,
                       normalization=normalization)
                   for s in seeds]
        self._setup(members, seeds, bootstrap)

    @classmethod
    def from_models(cls, models, member_seeds=None, bootstrap=False):
        """An ensemble of existing models (kept, not copied) of one architecture and dtype.

        Parameters
        ----------
        models : sequence of fastnn.MLP
            K >= 1 models with the same layer sizes, activations and dtype.
        member_seeds : sequence of int >= 0, optional
            K seeds later fits shuffle with; default 0..K-1.
        bootstrap : bool, default False
            As for ``MLPEnsemble``.

        Returns
        -------
        MLPEnsemble
        """
        models, member_seeds = _check_members(models, member_seeds, "models")
        self = cls.__new__(cls)
        self._setup(models, member_seeds, bootstrap)
        return self

    def _setup(self, members, seeds, bootstrap):
        self.members = members
        self.member_seeds = seeds
        self.bootstrap = check_bool(bootstrap, "bootstrap")
        self.optimizers_ = [None] * len(members)
        self._optimizer_given = None
        self.histories_ = [None] * len(members)

    def _check_state(self):
        """Check the public attributes as from_models checks its arguments, before they are
        used: ``members``, ``member_seeds``, ``bootstrap`` and ``optimizers_`` are plain
        attributes a user can rebind or edit (a member of another architecture or dtype, a
        member twice, a seed or optimizer list of another length), and training, saving or
        predicting with them would mix architectures, train one model from two threads, or
        write a file that load_ensemble rejects."""
        self.members, self.member_seeds = _check_members(self.members, self.member_seeds,
                                                         "members")
        self.bootstrap = check_bool(self.bootstrap, "bootstrap")
        optimizers = self.optimizers_
        if not isinstance(optimizers, list) or len(optimizers) != len(self.members):
            raise ValueError(f"optimizers_ is {optimizers!r}; expected a list of "
                             f"{len(self.members)} optimizers or None (one per member)")
        for k, opt in enumerate(optimizers):
            if opt is not None and not isinstance(opt, Optimizer):
                raise TypeError(f"optimizers_[{k}] is a {type(opt).__name__}; expected a "
                                "fastnn optimizer or None")
        for k, opt in enumerate(optimizers):
            if opt is not None and any(opt is other for other in optimizers[:k]):
                raise ValueError(f"optimizers_[{k}] is the same object as an earlier entry; "
                                 "each member needs its own optimizer (copy.deepcopy)")

    # ------------------------------------------------------------------ structure

    @property
    def n_members(self):
        return len(self.members)

    @property
    def layer_sizes(self):
        return list(self.members[0].layer_sizes)

    @property
    def dtype(self):
        return self.members[0].dtype

    @property
    def n_inputs(self):
        return self.members[0].n_inputs

    @property
    def loss_(self):
        """The members' loss (that of member 0; all are trained with the same)."""
        return self.members[0].loss_

    def __repr__(self):
        m = self.members[0]
        acts = [layer.activation for layer in m.layers[:-1]]
        return (f"MLPEnsemble({m.layer_sizes}, n_members={self.n_members}, activation={acts}, "
                f"output={m._link_name()!r}, dtype={m.dtype.name}, "
                f"bootstrap={self.bootstrap})")

    def member_fit_seeds(self, seed):
        """The members' fit seeds for ``fit(..., seed=seed)``: K ints drawn as the
        constructor draws ``member_seeds`` from its seed.

        So ``fit(seed=s)`` on ``MLPEnsemble(..., seed=s)`` is its fit without a seed, and a
        member refitted alone as ``MLP.fit(..., seed=member_fit_seeds(s)[k])`` gives its
        bits.

        Parameters
        ----------
        seed : int >= 0, numpy.random.Generator or None
            None: ``member_seeds`` (the fit without a seed).  A Generator is advanced.

        Returns
        -------
        list of int
            One seed per member, in ``[0, 2**31 - 1)``.
        """
        if seed is None:
            return list(self.member_seeds)
        return _draw_member_seeds(seed, self.n_members)

    def bootstrap_indices(self, k, n_samples, sample_weight=None):
        """Rows of member k's bootstrap resample: n_samples indices drawn with replacement.

        Drawn from ``numpy.random.default_rng([member_seeds[k], 0xB007])``, a stream apart
        from the member's initialization and shuffling.  Used by ``fit`` when bootstrap=True.

        Parameters
        ----------
        k : int in [0, n_members)
            The member.
        n_samples : int >= 1
            Rows of the training data.
        sample_weight : array-like of shape (n_samples,), optional
            The fit's weights (of the weighted mean loss sum_i w_i l_i / sum_i w_i).  A
            resample that holds no row of positive weight (when the data has one) would leave
            the member nothing to train on: it is drawn again, from the same stream, until it
            holds one (see ``bootstrap_draw``).  The first draw is kept whenever it is
            valid, so without zero weights the rows are those of the first.

        Returns
        -------
        ndarray of shape (n_samples,), int64, ascending (``bootstrap_draw``)
        """
        k = check_number(k, "k", low=0, high=self.n_members - 1, integer=True)
        n_samples = check_number(n_samples, "n_samples", low=1, high=MAX_DIM, integer=True)
        rng = np.random.default_rng([self.member_seeds[k], _BOOTSTRAP_STREAM])
        return bootstrap_draw(rng, n_samples, sample_weight, f"member {k}")

    # ------------------------------------------------------------------ training

    def fit(self, X, y, loss, optimizer=None, *, n_threads=None, comm=None,
            sample_weight=None, callbacks=(), seed=None, early_stopping="auto", **fit_kwargs):
        """Train every member (``fastnn.fit`` each), in lockstep epochs over threads.

        A scipy.sparse X (not with comm) is converted once to CSR for all members and kept
        sparse; the members' sparse epochs (the compiled sparse loop) run one after another
        on the calling thread.

        Parameters
        ----------
        X, y, loss, sample_weight
            As for ``fastnn.fit`` (with comm: this rank's shard).
        seed : int >= 0, numpy.random.Generator or None
            The members' shuffling, validation splits and dropout: member k fits with seed
            ``member_fit_seeds(seed)[k]``.  None (default): ``member_seeds[k]``, the seed
            its weights were drawn from, as ``MLP.fit`` without a seed uses its model's.
            Each epoch's order is a function of that seed and the member's epoch count, so
            a fit continued with the same optimizers (and seed) equals one long fit.
            Bootstrap resamples always come from ``member_seeds``.  With comm: an int or
            None.
        optimizer : fastnn.SGD, fastnn.Adam, fastnn.AdamW, "sgd", "adam", "adamw" or None
            The settings every member trains with: member k gets its own deep copy (of the
            instance, schedule included), kept in ``optimizers_[k]``; a later fit continues
            each member from its own optimizer state.
        n_threads : int or None
            Threads running the members' epochs (fastnn's pool, the calling thread
            included), each member's epoch whole on one thread with single-threaded BLAS.
            Default: ``fastnn.runtime.threads.default_threads()`` (threadpoolctl limits, the
            FASTNN_NUM_THREADS / OMP_NUM_THREADS environment, else the cores available to
            this process), at most n_members.  Members' results do not depend on it.
            Ignored with comm.
        comm : mpi4py.MPI.Intracomm, optional
            Data-parallel over MPI: each epoch's members run one after another, in order, on
            every rank (see the module docstring); BLAS threads are left as they are.
        callbacks : sequence of callables ``cb(epoch, logs)``
            Called after every epoch of every member with ``logs["member"] = k`` added, on
            the calling thread: epoch by epoch, members in order within an epoch; returning
            True stops that member.
        early_stopping : "auto", None, False, int or fastnn.EarlyStopping, default "auto"
            Per member: an EarlyStopping instance (or an int, its patience) is the
            configuration, each member keeps its own record, in ``optimizers_[k]``, which a
            later fit continues.  "auto": with ``GaussianNLL("learned")``,
            ``EarlyStopping(patience=20)`` on held-out rows (validation_data or
            validation_split if given, else each member's out-of-bag rows with bootstrap,
            else each member's own 10% split; see "Honest intervals" in the module
            docstring); no early stopping with other losses.  None or False: none (a
            warning with ``GaussianNLL("learned")``: intervals tend to be too narrow).
        **fit_kwargs
            Every other argument of ``fastnn.fit`` (epochs, batch_size, shuffle,
            validation_data, validation_split, verbose, drop_last), the same for every
            member.

        Returns
        -------
        list of fastnn.History, one per member (also ``histories_``)

        Raises
        ------
        Whatever a member's fit raises, with a note naming the member: bad input before any
        member has trained (also: too few rows to hold out for early_stopping="auto"); an error during training (TrainingDiverged, a callback's) once
        the other members have finished, which keep their result.
        KeyboardInterrupt: Ctrl-C while the members' epochs run stops every member after its
        running minibatch (members whose epoch had not started do not start it), as a single
        fit stops; raised by a callback, every member records the epoch that ran, then all
        stop.  Either way each member's weights, optimizer (step and epoch counts, state) and
        history agree, and a later fit continues each member.
        """
        with _FIT_GUARD:
            if self._fitting:
                raise RuntimeError("this MLPEnsemble is already being fitted (a callback, or "
                                   "another thread, called fit while its fit runs); its "
                                   "members' runs and optimizers belong to that fit: return "
                                   "True from the callback to stop members, and fit again "
                                   "after it returns")
            self._fitting = True
        try:
            return self._fit(X, y, loss, optimizer, n_threads, comm, sample_weight, callbacks,
                             seed, dict(fit_kwargs, early_stopping=early_stopping))
        finally:
            self._fitting = False

    def _fit(self, X, y, loss, optimizer, n_threads, comm, sample_weight, callbacks, seed,
             fit_kwargs):
        with consistent(self):
            self._check_state()
        # with MPI, an argument refused on one rank is refused on every rank (the others would
        # wait in a collective): the checks run on every rank, then the ranks agree (as
        # fastnn.fit's prepare_run does)
        mpi = None
        if comm is not None:
                mpi = MPIContext(comm)
        with agreed(mpi):
            if comm is not None:
                check_comm_seed(seed)
            if not (optimizer is None or (self.optimizers_[0] is not None
                                          and optimizer is self._optimizer_given)):
                get_optimizer(optimizer)       # (a bad optimizer: refused here, on every rank)
            if seed is not None and not isinstance(seed, np.random.Generator):
                check_number(seed, "seed", low=0, integer=True)
            if "model" in fit_kwargs:
                raise TypeError("MLPEnsemble.fit trains its own members; do not pass model=")
            unknown = sorted(set(fit_kwargs) - _MEMBER_FIT_KEYWORDS)
            if unknown:   # before any member trains, naming this method, not prepare_run
                own = set(inspect.signature(type(self).fit).parameters) - {
                    "self", "X", "y", "loss", "optimizer", "fit_kwargs"}
                constructor = [k for k in unknown
                               if k in inspect.signature(type(self).__init__).parameters]
                hint = (f" ({', '.join(constructor)}: an argument of MLPEnsemble(...), not of "
                        "fit)" if constructor else "")
                raise TypeError(f"MLPEnsemble.fit() got unexpected keyword argument(s) "
                                f"{', '.join(map(repr, unknown))}{hint}; expected some of "
                                f"{', '.join(sorted(_MEMBER_FIT_KEYWORDS | own))}")
            if fit_kwargs.get("validation_split", 0.0) and self.bootstrap:
                raise ValueError("validation_split with bootstrap=True would put copies of "
                                 "training rows in the validation set; pass validation_data")
            callbacks = check_callbacks(callbacks)
            if n_threads is not None:
                n_threads = int(check_number(n_threads, "n_threads", low=1, high=MAX_DIM,
                                             integer=True))
            loss = get_loss(loss)
            held_out = self._resolve_early_stopping(loss, fit_kwargs)
        # the calling thread's setting (a fastnn.runtime.fpmode.flush_denormals block is per thread):
        # the members' epochs run on pool threads, each in the mode its run passes it
        fit_kwargs["flush_denormals"] = fpmode.resolve(fit_kwargs.get("flush_denormals"))
        if comm is None:
            # convert X once, so that members without bootstrap read it in place
            X = self._input(X)
            if held_out == "split" and int(round(AUTO_VALIDATION_SPLIT * X.shape[0])) < 1:
                raise ValueError(f"X has {X.shape[0]} rows: too few to hold out "
                                 f"{AUTO_VALIDATION_SPLIT:.0%} of them for the early stopping "
                                 "that learned-variance members get by default "
                                 "(early_stopping='auto'); pass validation_data, or "
                                 "early_stopping=False")
        else:
            # what decides how many fits (and so collectives) run, and on what data, must be
            # the same on every rank: a rank with one member more would wait alone in its
            # collectives; bootstrap on one rank only would mix resampled and plain shards
            continues = self.optimizers_[0] is not None and (
                optimizer is None or optimizer is self._optimizer_given)
            mpi.check_same({"n_members": self.n_members, "bootstrap": self.bootstrap,
                            "continues the previous fit's optimizers": continues},
                           "the ensemble's configuration")
            # the members' seeds (drawn from fresh entropy with seed=None) must agree on
            # every rank: fit requires one shuffling seed everywhere
            seeds = [int(s) for s in comm.bcast(self.member_seeds, root=0)]
            with consistent(self):
                self.member_seeds = seeds
            # fit agrees on bad input across ranks; so must this ensemble's own checks (a
            # rank raising alone would leave the others waiting in a collective): the same
            # error on every rank
            with agreed(mpi):
                if self.bootstrap:
                    self._bootstrap_inputs(X, y, sample_weight, loss)
        fit_seeds = self.member_fit_seeds(seed)  # (after the ranks agreed on member_seeds)
        # the same optimizer object (or None) as last time: every member continues from its
        # own optimizer's state, as a second fit of one model does; otherwise fresh copies
        if self.optimizers_[0] is not None and (optimizer is None
                                                or optimizer is self._optimizer_given):
            optimizers = list(self.optimizers_)
        else:
            template = get_optimizer(optimizer)
            optimizers = [copy.deepcopy(template) for _ in range(self.n_members)]
        histories = [None] * self.n_members
        errors = [None] * self.n_members
        # one step for a save or predict in another thread (fastnn/runtime/state.py): the
        # optimizers the members now train with (a save during the fit pairs each member's
        # weights with them; before, with the previous fit's, or none) and every member's
        # new loss, so that the members' output links change together (one at a time, a
        # reader saw members of two links: a file load_ensemble rejects, predictions that
        # raised).  Every member's run is checked first: a fit refused (a bad input, a
        # member's bad argument) leaves the ensemble as it was, its optimizers and histories
        # included, so a later fit still continues the previous one
        with consistent(self):
            runs = self._prepare_runs(X, y, loss, optimizers, sample_weight, comm,
                                      callbacks, fit_seeds, held_out, fit_kwargs)
            self._optimizer_given = optimizer
            self.optimizers_ = optimizers
            for run, _ in runs:
                run.model.loss_ = run.loss
        try:
            workers = 1 if comm is not None else min(self.n_members,
                                                     resolve_threads(n_threads))
            # one BLAS thread per worker: the members' arithmetic does not depend on the
            # worker count, and workers x BLAS threads never exceed the cores asked for
            # (compiled_threads: inside a caller's blas_threads(n) block too, where a
            # blas_threads(1) block raised)
            with compiled_threads(1) if comm is None else contextlib.nullcontext():
                train_in_lockstep(runs, workers, histories, errors)
        finally:
            # whatever happened, the optimizers match the members' weights: a later fit
            # continues from where each member stopped
            with consistent(self):
                self.optimizers_ = optimizers
                self.histories_ = histories
        interrupt = next((exc for exc in errors if isinstance(exc, KeyboardInterrupt)), None)
        if interrupt is not None:
            raise interrupt
        for k, exc in enumerate(errors):
            if exc is not None:
                raise _with_member_note(exc, k, self.member_seeds[k])
        return histories

    def _prepare_runs(self, X, y, loss, optimizers, sample_weight, comm, callbacks, fit_seeds,
                      held_out, fit_kwargs):
        """Every member's checked TrainingRun and epoch count (fastnn.fit's checks and data
        preparation, in member order: with comm, in the same order on every rank).  Raises
        the first member's error, with a note naming it, before any member has trained."""
        runs = []
        for k in range(self.n_members):
            def forward(epoch, logs, k=k):
                logs = dict(logs, member=k)
                return any([bool(cb(epoch, logs)) for cb in callbacks])

            member_kwargs = dict(fit_kwargs)
            es = fit_kwargs.get("early_stopping")
            if isinstance(es, EarlyStopping):
                # a record of its own per member: one instance shared by the members mixed
                # their records (and could restore another member's weights); the member's
                # record continues through its optimizer
                member_kwargs["early_stopping"] = copy.copy(es)
                member_kwargs["early_stopping"].reset()
            try:
                Xk, yk, swk, lossk, oob = self._member_data(k, X, y, sample_weight, loss,
                                                            comm)
                if held_out == "out-of-bag":
                    member_kwargs["validation_data"] = oob
                runs.append(prepare_run(self.members[k], Xk, yk, lossk, optimizers[k],
                                        seed=fit_seeds[k], sample_weight=swk,
                                        comm=comm, callbacks=[forward], **member_kwargs))
            except Exception as exc:
                for run, _ in runs:   # the members checked before: as they were
                    run.abandon()
                raise _with_member_note(exc, k, self.member_seeds[k])
        return runs

    def _resolve_early_stopping(self, loss, fit_kwargs):
        """Put the fit's early stopping into fit_kwargs["early_stopping"] and return where
        its held-out rows come from: "given" (the caller's validation_data or
        validation_split, or no early stopping), "split" (each member's own random
        ``AUTO_VALIDATION_SPLIT`` of the rows) or "out-of-bag" (the rows each member's
        bootstrap resample missed).

        "auto" with learned-variance members is ``EarlyStopping(AUTO_PATIENCE)`` on held-out
        rows (see the module docstring, "Honest intervals"), nothing otherwise; None or
        False is no early stopping, with a warning for learned-variance members."""
        es = fit_kwargs.get("early_stopping", "auto")
        learned = getattr(loss, "learned", False)
        if isinstance(es, str) and es == "auto":
            es = EarlyStopping(patience=AUTO_PATIENCE) if learned else None
            given = (fit_kwargs.get("validation_data") is not None
                     or fit_kwargs.get("validation_split", 0.0))
            if es is not None and not given:
                fit_kwargs["early_stopping"] = es
                if self.bootstrap:
                    return "out-of-bag"
                fit_kwargs["validation_split"] = AUTO_VALIDATION_SPLIT
                return "split"
        elif es is None or es is False:
            es = None
            if learned:
                warnings.warn(NARROW_INTERVALS_WARNING, UserWarning, stacklevel=4)
        elif isinstance(es, str):
            raise ValueError(f"early_stopping={es!r}; expected 'auto', None, False, an int "
                             "(the patience) or fastnn.EarlyStopping")
        fit_kwargs["early_stopping"] = es
        return "given"

    def _member_data(self, k, X, y, sample_weight, loss, comm):
        """(X, y, sample_weight, loss, out_of_bag) of member k: the data itself or its
        bootstrap rows; out_of_bag is (X, y, sample_weight) of the rows its resample missed
        (None without bootstrap).

        Under MPI (comm) every rank draws the resample one process would draw over the global
        rows (the shards concatenated in rank order) and keeps its own rows of it: the
        resample is ascending, so they form one contiguous part of it, and the ranks together
        train each member on one process's resample.  The positive-weight check of the draw
        (``bootstrap_draw``) sees every rank's weights: one all-gather of them."""
        if not self.bootstrap:
            return X, y, sample_weight, loss, None
        X, y, sample_weight = self._bootstrap_inputs(X, y, sample_weight, loss)
        n = X.shape[0]
        if comm is None:
            idx = self.bootstrap_indices(k, n, sample_weight)
            oob = out_of_bag(n, idx)
        else:
            sizes = comm.allgather(n)
            offset, n_global = sum(sizes[:comm.Get_rank()]), sum(sizes)
            weights = comm.allgather(sample_weight)
            if all(w is None for w in weights):
                everyone = None
            else:  # (a rank passing no weights weighs its rows 1, as fit does)
                everyone = np.concatenate([np.ones(m) if w is None else
                                           np.asarray(w, dtype=np.float64)
                                           for m, w in zip(sizes, weights)])
            rows = self.bootstrap_indices(k, n_global, everyone)
            lo, hi = np.searchsorted(rows, [offset, offset + n])
            idx = rows[lo:hi] - offset
            missed = out_of_bag(n_global, rows)
            lo, hi = np.searchsorted(missed, [offset, offset + n])
            oob = missed[lo:hi] - offset
        take = (lambda A, rows: A.take(rows)) if isinstance(X, CSRInput) else \
            (lambda A, rows: A[rows])
        missed = (take(X, oob), y[oob], None if sample_weight is None else sample_weight[oob])
        if sample_weight is not None:
            sample_weight = sample_weight[idx]
        if loss.sample_sigma is not None:
            loss = GaussianNLL(loss.sample_sigma[idx], full=loss.full)
        return take(X, idx), y[idx], sample_weight, loss, missed

    def _bootstrap_inputs(self, X, y, sample_weight, loss):
        """X (converted), y and sample_weight as arrays, their shapes checked against X's
        rows (and a per-sample sigma's): the checks of this rank's own data, before any
        collective call (under MPI the ranks agree on them first)."""
        X = self._input(X)   # no copy when already converted
        n = X.shape[0]
        y = np.asarray(y)
        if y.shape[:1] != (n,):
            raise ValueError(f"X has {n} samples but y has shape {y.shape}; expected one "
                             "target row per sample")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)
            if sample_weight.shape != (n,):
                raise ValueError(f"sample_weight has shape {sample_weight.shape}; expected "
                                 f"({n},)")
        if loss.sample_sigma is not None and loss.sample_sigma.shape != (n,):
            raise ValueError(f"the loss's sigma has {loss.sample_sigma.shape[0]} entries; "
                             f"expected {n} (one per sample)")
        return X, y, sample_weight

    # ------------------------------------------------------------------ persistence

    def save(self, path):
        """Write the ensemble to one ``.npz`` file, atomically (format: fastnn.io.ensemble_file).

        Parameters
        ----------
        path : str or os.PathLike
            The file written (replaced atomically if it exists).  An existing directory, a
            missing folder or an unwritable place is refused before anything is written
            (IsADirectoryError, FileNotFoundError, NotADirectoryError, PermissionError;
            ``fastnn.io.writer``).
        """
        target = check_output(path, "path")  # a directory, a missing folder: refused first
        # one epoch boundary of a fit in another thread, every member at the same one: each
        # member's file contents copied inside consistent(self) (fastnn/runtime/state.py), the
        # files written after (before, each member was copied under its own lock, one after
        # another, while the members' links could differ mid-fit)
        with consistent(self):
            self._check_state()
            members = [model_arrays(member, optimizer) for member, optimizer in
                       zip(self.members, self.optimizers_)]
            seeds, bootstrap = list(self.member_seeds), self.bootstrap
        write_ensemble(target, members, seeds, bootstrap)


def _check_members(models, member_seeds, name):
    """(models as a list, member_seeds as a list of ints): K distinct MLPs of one
    architecture, dtype and output link, and K seeds >= 0 (default 0..K-1); TypeError or
    ValueError naming `name` otherwise."""
    models = list(models) if hasattr(models, "__iter__") else models
    if not isinstance(models, list) or not models or not all(
            isinstance(m, MLP) for m in models):
        raise TypeError(f"{name} must be a non-empty sequence of fastnn.MLP; got "
                        f"{models!r}")
    if len(models) > _MAX_MEMBERS:
        raise ValueError(f"{len(models)} models; at most {_MAX_MEMBERS} are supported")
    if len({id(m) for m in models}) != len(models):
        raise ValueError(f"{name} contains the same MLP object twice; members must be "
                         "independent (use model.copy())")
    ref = models[0]
    for k, m in enumerate(models[1:], 1):
        if (m.layer_sizes != ref.layer_sizes or m.dtype != ref.dtype
                or [la.activation for la in m.layers] != [la.activation for la in ref.layers]
                or [la.normalization for la in m.layers]
                != [la.normalization for la in ref.layers]
                or m._link_name() != ref._link_name()):
            raise ValueError(f"{name}[{k}] is {m!r}; expected the architecture, dtype and "
                             f"output link of {name}[0], {ref!r}")
    if member_seeds is None:
        member_seeds = list(range(len(models)))
    member_seeds = list(member_seeds)
    if len(member_seeds) != len(models):
        raise ValueError(f"member_seeds has {len(member_seeds)} entries; expected "
                         f"{len(models)} (one per member)")
    for k, s in enumerate(member_seeds):
        check_number(s, f"member_seeds[{k}]", low=0, integer=True)
    return models, [int(s) for s in member_seeds]


def _draw_member_seeds(seed, n_members):
    """K member seeds from an ensemble's seed (int, Generator or None: fresh entropy)."""
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, n_members)]


def _with_member_note(exc, k, seed):
    """`exc` with a note naming the member of the ensemble it came from (Python >= 3.11)."""
    if hasattr(exc, "add_note"):
        exc.add_note(f"(raised while training member {k} of the ensemble, seed {seed})")
    return exc


def load_ensemble(path):
    """Load an ensemble written by ``MLPEnsemble.save``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    MLPEnsemble
        Members bitwise equal to the saved ones (parameters, loss, optimizer state).

    Raises
    ------
    FileNotFoundError
        No such file.
    fastnn.io.saving.ModelFileError (a ValueError)
        Not an ensemble file, truncated or corrupted, a newer format version, a description
        key or an archive entry that no format version writes (as ``fastnn.load`` refuses
        an unknown key), a member that ``fastnn.load`` rejects, or members of different
        architectures.  The archive is read
        as ``fastnn.load`` reads a model file: each entry's declared sizes are checked against
        the file and each ``.npy`` header before its data, so a crafted file fails fast with
        memory bounded by its own size (one member at a time).
    """
    path, description, models, optimizers = read_ensemble(path)
    try:
        ensemble = MLPEnsemble.from_models(models, description["member_seeds"],
                                           description["bootstrap"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"its members do not form an ensemble ({exc})") from exc
    ensemble.optimizers_ = optimizers
    return ensemble
