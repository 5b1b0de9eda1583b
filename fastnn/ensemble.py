"""Deep ensembles: K networks of one architecture, trained from different seeds on every core.

A deep ensemble (Lakshminarayanan, Pritzel & Blundell 2017, "Simple and scalable predictive
uncertainty estimation using deep ensembles", NeurIPS) trains K copies of one network from
different random initializations (and shuffling orders, optionally on bootstrap resamples of
the data) and averages their predictions.  Where the data pins the function down the members
agree; away from the data they disagree, and that spread measures the model's own
(epistemic) uncertainty.

How the members are trained
---------------------------
Each member is an ordinary ``fastnn.MLP`` with its own ``fastnn.fit`` run (a TrainingRun,
fastnn/training/engine.py), and the runs advance in lockstep epochs.  Each round, every active
member's run prepares its epoch (the schedule's rate, the sample order, the snapshot a
divergence falls back to), then ONE compiled job runs all those epochs without the GIL as the
tasks of fastnn's thread pool (``boundary.run_epochs``, ``n_threads`` threads), then each
member's run records its epoch, in member order, on the calling thread (loss, validation,
schedule, early stopping, callbacks).  A member whose run stops (its epochs done, early
stopping, a callback) or fails (divergence) leaves; the others go on.  BLAS is held at ONE
thread meanwhile, so fastnn's threads and BLAS's never oversubscribe the cores.  A task is a
member's whole epoch on one thread, so a member's arithmetic does not depend on which thread
runs it or on how many threads there are: member k is bitwise equal to ``MLP(...,
seed=s_k).fit(X_k, y_k, ..., n_threads=1)`` (whose fit seed is the model's, s_k) with its
seed ``s_k = member_seeds[k]`` and its data ``X_k`` (all of X, or the bootstrap resample
``X[ensemble.bootstrap_indices(k, n)]``).  ``fit(..., seed=s)`` gives member k the fit seed
``member_fit_seeds(s)[k]`` instead (the ensemble's seed rule, applied to s).  The members'
resamples all exist during the fit (K copies of X with bootstrap).

With ``comm`` (MPI data-parallel, see fastnn.training.distributed) each round runs its members' epochs
one after another, in member order, on the calling thread of every rank: each epoch issues its
collectives in the same order on every rank, so no two interleave and nothing can deadlock.

Combining the members
---------------------
With member predictions p_k(x), k = 1..K:

* classification (sigmoid or softmax link): the mean probability ``mean_k p_k(x)``;
* regression trained with ``GaussianNLL("learned")``: member k predicts N(mu_k, sigma_k^2);
  the ensemble is the uniform mixture of those Gaussians, whose mean and variance are ::

      mu*(x)      = mean_k mu_k(x)
      sigma*^2(x) = mean_k sigma_k^2(x)            aleatoric: the noise the members predict
                  + mean_k (mu_k(x) - mu*(x))^2    epistemic: the members' disagreement

  (the population variance over members, as the mixture has).  ``predict_interval``
  approximates the mixture by the Gaussian N(mu*, sigma*^2), as Lakshminarayanan et al. do:
  ``mu* +- z sigma*`` with z the standard normal quantile at (1 + level) / 2.  The mixture
  itself may be skewed or multimodal where the members disagree strongly;
* regression with a fixed scalar ``GaussianNLL(sigma)``: the same with sigma_k = sigma;
  with MSE (or a per-sample sigma, unknown at new inputs) the only variance the ensemble
  knows is the epistemic one (``predict_std`` returns it); intervals need a learned variance
  and raise otherwise;
* Poisson (exp link): the mean rate; the mixture of Poissons has variance
  mean_k lambda_k (aleatoric) + mean_k (lambda_k - lambda*)^2 (epistemic).

Saving
------
``MLPEnsemble.save(path)`` writes one ``.npz`` archive (``numpy.savez_compressed``, no pickle)
(deflate-compressed) holding ``description``, a 0-d unicode array of strict JSON ::

    {"format": "fastnn-ensemble", "format_version": 1, "fastnn_version": ...,
     "n_members": K, "member_seeds": [...], "bootstrap": bool}

and ``member_<k>`` for k = 0..K-1, a uint8 array holding member k's complete model file as
``MLP.save`` writes it (``fastnn.io.saving``), optimizer included when the member has one.
``load_ensemble`` reads the archive as ``fastnn.load`` reads a model file (each entry's
declared sizes checked against the file, each ``.npy`` header before its data, nothing
unpickled, members copied out in chunks one at a time) and each member with ``fastnn.load``,
so every check fastnn.io.saving makes applies to every member; any problem raises
``fastnn.io.saving.ModelFileError`` naming the file (and the member), fast and with memory bounded
by the file's size.  ``save`` writes as ``MLP.save`` does (atomically, keeping an existing
file's permission bits, following a symbolic link, cleaning up after any interrupt).
"""
import contextlib
import copy
import io
import json
import numbers
import os
import struct
import tempfile
import threading
import zipfile
import zlib
from typing import NamedTuple

import numpy as np
from scipy.special import ndtri

from fastnn.runtime import boundary, fpmode
from fastnn.runtime.state import consistent, hold, let_readers_in
from fastnn._version import __version__  # not the package, which imports this module
from fastnn._validation import MAX_DIM, check_bool, check_number
from fastnn.io.saving import (ModelFileError, load as _load_model, model_arrays,
                              _check_path, _description_header, _entries, _read_npy, _shown,
                              _unique_keys, _write_npz)
from fastnn.nn.losses import GaussianNLL, get_loss
from fastnn.nn.model import MLP, as_input
from fastnn.nn.sparse import CSRInput, as_csr, issparse
from fastnn.optim.optimizers import Optimizer, get_optimizer
from fastnn.runtime.threads import available_cores, compiled_threads, resolve_threads  # (re-exported)
from fastnn.training.trainer import prepare_run
from fastnn.training.engine import EarlyStopping
from fastnn.io.writer import check_output, write_output

__all__ = ["MLPEnsemble", "EnsemblePrediction", "load_ensemble", "available_cores",
           "ENSEMBLE_FORMAT", "ENSEMBLE_FORMAT_VERSION"]

ENSEMBLE_FORMAT = "fastnn-ensemble"
ENSEMBLE_FORMAT_VERSION = 1
_CLASSIFIER_LINKS = ("sigmoid", "softmax")
_MAX_MEMBERS = 10_000
# fixed second word of a member's bootstrap stream, so it differs from its init/shuffle stream
_BOOTSTRAP_STREAM = 0xB007


class EnsemblePrediction(NamedTuple):
    """The ensemble's Gaussian predictive distribution per sample and target.

    Parameters
    ----------
    mean, aleatoric, epistemic : ndarray of shape (n_samples, n_targets)
        As the attributes below (a named tuple: built by ``predict_distribution``).

    Attributes
    ----------
    mean : ndarray of shape (n_samples, n_targets)
        mu* = mean_k mu_k.
    aleatoric : ndarray of shape (n_samples, n_targets)
        mean_k sigma_k^2, the noise variance the members predict (zeros without a learned
        variance).
    epistemic : ndarray of shape (n_samples, n_targets)
        mean_k (mu_k - mu*)^2, the variance of the members' means.
    """
    mean: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray

    @property
    def variance(self):
        """The mixture's variance: aleatoric + epistemic."""
        return self.aleatoric + self.epistemic

    @property
    def std(self):
        """The mixture's standard deviation sqrt(aleatoric + epistemic)."""
        return np.sqrt(self.variance)


#: guards the check-and-set of MLPEnsemble._fitting across threads
_FIT_GUARD = threading.Lock()


class MLPEnsemble:
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
        ndarray of shape (n_samples,), int64
        """
        k = check_number(k, "k", low=0, high=self.n_members - 1, integer=True)
        n_samples = check_number(n_samples, "n_samples", low=1, high=MAX_DIM, integer=True)
        rng = np.random.default_rng([self.member_seeds[k], _BOOTSTRAP_STREAM])
        return bootstrap_draw(rng, n_samples, sample_weight, f"member {k}")

    # ------------------------------------------------------------------ training

    def fit(self, X, y, loss, optimizer=None, *, n_threads=None, comm=None,
            sample_weight=None, callbacks=(), seed=None, **fit_kwargs):
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
        **fit_kwargs
            Every other argument of ``fastnn.fit`` (epochs, batch_size, shuffle,
            validation_data, validation_split, early_stopping (per member: an EarlyStopping
            instance is the configuration, each member keeps its own record, in
            ``optimizers_[k]``, which a later fit continues), verbose,
            drop_last), the same for every member.

        Returns
        -------
        list of fastnn.History, one per member (also ``histories_``)

        Raises
        ------
        Whatever a member's fit raises, with a note naming the member: bad input before any
        member has trained; an error during training (TrainingDiverged, a callback's) once
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
                             seed, fit_kwargs)
        finally:
            self._fitting = False

    def _fit(self, X, y, loss, optimizer, n_threads, comm, sample_weight, callbacks, seed,
             fit_kwargs):
        with consistent(self):
            self._check_state()
        if comm is not None and seed is not None and not isinstance(seed, numbers.Integral):
            raise TypeError(f"with comm, seed must be an int or None (the same on every rank) "
                            f"so that all ranks draw the same minibatches; got {seed!r}")
        if seed is not None and not isinstance(seed, np.random.Generator):
            check_number(seed, "seed", low=0, integer=True)
        if "model" in fit_kwargs:
            raise TypeError("MLPEnsemble.fit trains its own members; do not pass model=")
        if fit_kwargs.get("validation_split", 0.0) and self.bootstrap:
            raise ValueError("validation_split with bootstrap=True would put copies of "
                             "training rows in the validation set; pass validation_data")
        if callable(callbacks) or not hasattr(callbacks, "__iter__"):
            raise TypeError(f"callbacks must be a sequence of callables cb(epoch, logs); got "
                            f"{callbacks!r} (put a single callback in a list)")
        callbacks = list(callbacks)
        for cb in callbacks:
            if not callable(cb):
                raise TypeError(f"callbacks must be callables cb(epoch, logs); got {cb!r}")
        if n_threads is not None:
            n_threads = int(check_number(n_threads, "n_threads", low=1, high=MAX_DIM,
                                         integer=True))
        loss = get_loss(loss)
        # the calling thread's setting (a fastnn.runtime.fpmode.flush_denormals block is per thread):
        # the members' epochs run on pool threads, each in the mode its run passes it
        fit_kwargs["flush_denormals"] = fpmode.resolve(fit_kwargs.get("flush_denormals"))
        if comm is None:
            # convert X once, so that members without bootstrap read it in place
            X = self._input(X)
        else:
            from fastnn.training.distributed import MPIContext
            mpi = MPIContext(comm)
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
            error = None
            try:
                if self.bootstrap:
                    self._member_data(0, self._input(X), y,
                                      sample_weight, loss, comm)
            except (ValueError, TypeError) as exc:
                error = exc
            mpi.agree(error)
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
        try:
            # one step for a save or predict in another thread (fastnn/runtime/state.py): the
            # optimizers the members now train with (a save during the fit pairs each
            # member's weights with them; before, with the previous fit's, or none) and
            # every member's new loss, so that the members' output links change together
            # (one at a time, a reader saw members of two links: a file load_ensemble
            # rejects, predictions that raised)
            with consistent(self):
                self._optimizer_given = optimizer
                self.optimizers_ = optimizers
                runs = self._prepare_runs(X, y, loss, optimizers, sample_weight, comm,
                                          callbacks, fit_seeds, fit_kwargs)
                for run, _ in runs:
                    run.model.loss_ = run.loss
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
                      fit_kwargs):
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
                Xk, yk, swk, lossk = self._member_data(k, X, y, sample_weight, loss, comm)
                runs.append(prepare_run(self.members[k], Xk, yk, lossk, optimizers[k],
                                        seed=fit_seeds[k], sample_weight=swk,
                                        comm=comm, callbacks=[forward], **member_kwargs))
            except Exception as exc:
                raise _with_member_note(exc, k, self.member_seeds[k])
        return runs

    def _member_data(self, k, X, y, sample_weight, loss, comm):
        """(X, y, sample_weight, loss) of member k: the data itself or its bootstrap rows."""
        if not self.bootstrap:
            return X, y, sample_weight, loss
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
        if comm is None:
            idx = self.bootstrap_indices(k, n, sample_weight)
        else:  # each rank resamples its own shard, from its own stream
            idx = bootstrap_draw(np.random.default_rng([self.member_seeds[k],
                                                        _BOOTSTRAP_STREAM, comm.Get_rank()]),
                                 n, sample_weight, f"member {k} (rank {comm.Get_rank()})")
        if sample_weight is not None:
            sample_weight = sample_weight[idx]
        if loss.sample_sigma is not None:
            if loss.sample_sigma.shape != (n,):
                raise ValueError(f"the loss's sigma has {loss.sample_sigma.shape[0]} entries; "
                                 f"expected {n} (one per sample)")
            loss = GaussianNLL(loss.sample_sigma[idx], full=loss.full)
        return (X.take(idx) if isinstance(X, CSRInput) else X[idx]), y[idx], sample_weight, loss

    def _input(self, X, dense_for=None):
        """X converted once to the members' dtype: a C-contiguous array, or for a
        scipy.sparse X (kept sparse) a CSRInput the members read in place.  `dense_for`
        names a method that needs a dense X (TypeError for a sparse one)."""
        if isinstance(X, CSRInput):
            return X
        if issparse(X):
            if dense_for is not None:
                raise TypeError(f"X is a scipy.sparse {type(X).__name__}; {dense_for} needs a "
                                "dense X (X.toarray())")
            return as_csr(X, "X", self.dtype, self.n_inputs)
        return as_input(X, "X", self.dtype, self.n_inputs)

    # ------------------------------------------------------------------ prediction

    def _link(self):
        return self.members[0]._link_name()

    def predict_members(self, X):
        """Every member's ``predict``, stacked: shape (n_members, n_samples, n_outputs').

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        ndarray of shape (n_members, n_samples, n_outputs'), the members' dtype
            What each member's ``predict`` gives: probabilities (not logits) or means.
        """
        with consistent(self):  # every member at one epoch boundary of a running fit
            self._check_state()
            X = self._input(X)
            return np.stack([m.predict(X) for m in self.members])

    def predict(self, X):
        """The ensemble's prediction: the mean of the members' predictions.

        Classification: the mean of the members' probabilities; regression: the mixture's
        mean mu*; Poisson: the mean rate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs) (n_outputs // 2 with a learned variance),
        the members' dtype
            Mean probabilities (not logits), or the mean in the units of y.
        """
        return self.predict_members(X).mean(axis=0, dtype=np.float64).astype(self.dtype)

    def predict_proba(self, X):
        """The mean of the members' class probabilities (sigmoid or softmax link).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), the members' dtype
            Probabilities in [0, 1] (the members' mean; not logits).

        Raises
        ------
        ValueError
            The members' output link is not sigmoid or softmax.
        """
        with consistent(self):  # the link checked is the link predicted with
            if self._link() not in _CLASSIFIER_LINKS:
                raise ValueError(f"predict_proba needs a sigmoid or softmax output; the "
                                 f"members' output link is {self._link()!r}")
            return self.predict(X)

    def predict_distribution(self, X):
        """The mixture's mean and its variance split into aleatoric and epistemic parts.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        EnsemblePrediction
            (mean, aleatoric, epistemic), each of shape (n_samples, n_targets), float64; see
            the module docstring for the formulas.  The aleatoric part is the members' mean
            predicted sigma^2 with ``GaussianNLL("learned")``, sigma^2 with a fixed scalar
            ``GaussianNLL(sigma)``, the mean rate with ``PoissonNLL`` (a Poisson's variance),
            and zero with MSE or a per-sample sigma (unknown at new inputs).

        Raises
        ------
        ValueError
            For classifiers (their uncertainty is in the probabilities: ``predict_proba``).
        """
        with consistent(self):  # every member at one epoch boundary of a running fit
            self._check_state()
            link = self._link()
            if link in _CLASSIFIER_LINKS:
                raise ValueError(f"predict_distribution is for regression; the members' output "
                                 f"link is {link!r} (use predict_proba)")
            X = self._input(X)
            means = np.stack([m.predict(X) for m in self.members]).astype(np.float64)
            mean = means.mean(axis=0)
            epistemic = ((means - mean) ** 2).mean(axis=0)   # two passes: no cancellation
            if link == "gaussian":
                stds = np.stack([m.predict_std(X) for m in self.members]).astype(np.float64)
                aleatoric = (stds ** 2).mean(axis=0)
            elif link == "exp":
                aleatoric = mean.copy()         # a Poisson's variance is its rate
            else:
                # each member's own noise variance: sigma^2 of a fixed scalar
                # GaussianNLL(sigma), none known for MSE or a per-sample sigma (unknown at
                # new X); members built apart (from_models) may have been trained with
                # different sigmas
                aleatoric = np.full_like(mean, np.mean([_fixed_noise_variance(m.loss_)
                                                        for m in self.members]))
        return EnsemblePrediction(mean, aleatoric, epistemic)

    def predict_std(self, X):
        """sqrt(aleatoric + epistemic), shape (n_samples, n_targets), float64.

        With MSE this is the epistemic part alone: the members' disagreement, not the noise
        in y (see ``predict_distribution``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
            Converted once to the members' dtype.

        Returns
        -------
        ndarray of shape (n_samples, n_targets), float64
            Standard deviations (not variances), in the units of y.
        """
        return self.predict_distribution(X).std

    def predict_interval(self, X, level=0.95):
        """A central predictive interval at `level` (Gaussian approximation of the mixture).

        ``mu* -+ z sigma*`` with ``z = Phi^-1((1 + level) / 2)`` (1.96 at 95%): exact for a
        Gaussian predictive distribution, an approximation of the members' mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_inputs)
        level : float in (0, 1), default 0.95

        Returns
        -------
        lower, upper : ndarrays of shape (n_samples, n_targets), float64

        Raises
        ------
        ValueError
            Unless the members were trained with ``GaussianNLL("learned")``: without a
            predicted noise level the interval would leave out the noise in y.
        """
        level = float(check_number(level, "level", low=0.0, high=1.0, low_open=True,
                                   high_open=True))
        with consistent(self):  # the link checked is the link predicted with
            if self._link() != "gaussian":
                raise ValueError(f"predict_interval needs members trained with "
                                 f"GaussianNLL('learned') (a predicted noise level); their "
                                 f"output link is {self._link()!r}")
            dist = self.predict_distribution(X)
        half = float(ndtri(0.5 + level / 2)) * dist.std
        return dist.mean - half, dist.mean + half

    # ------------------------------------------------------------------ input derivatives

    def input_gradient(self, X, y=None, loss=None, output=None, *, of="output",
                       reduction="none", sample_weight=None, return_std=False):
        """The members' ``MLP.input_gradient``: their mean (and standard deviation).

        The mean of the members' output gradients is the gradient of the ensemble's mean
        prediction.

        Parameters
        ----------
        X, y, loss, output, of, reduction, sample_weight
            As for ``MLP.input_gradient``.
        return_std : bool, default False
            Also return the members' standard deviation.

        Returns
        -------
        mean : ndarray of shape (n_samples, n_inputs), float64
        std : ndarray of shape (n_samples, n_inputs), float64
            Only with return_std: the population standard deviation over members.
        """
        with consistent(self):  # every member at one epoch boundary of a running fit
            self._check_state()
            X = self._input(X, dense_for="input_gradient")
            grads = np.stack([m.input_gradient(X, y, loss, output, of=of,
                                               reduction=reduction,
                                               sample_weight=sample_weight)
                              for m in self.members]).astype(np.float64)
        return _mean_std(grads, return_std)

    def jacobian(self, X, of="output", *, return_std=False):
        """The members' ``MLP.jacobian``: their mean (and standard deviation).

        Parameters
        ----------
        X, of
            As for ``MLP.jacobian``.
        return_std : bool, default False
            Also return the members' standard deviation.

        Returns
        -------
        mean : ndarray of shape (n_samples, n_outputs, n_inputs), float64
            The Jacobian of the ensemble's mean output.
        std : ndarray of the same shape, float64
            Only with return_std: the population standard deviation over members.
        """
        with consistent(self):  # every member at one epoch boundary of a running fit
            self._check_state()
            X = self._input(X, dense_for="jacobian")
            jacs = np.stack([m.jacobian(X, of=of) for m in self.members]).astype(np.float64)
        return _mean_std(jacs, return_std)

    # ------------------------------------------------------------------ persistence

    def save(self, path):
        """Write the ensemble to one ``.npz`` file, atomically (format: module docstring).

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
            description = {"format": ENSEMBLE_FORMAT,
                           "format_version": ENSEMBLE_FORMAT_VERSION,
                           "fastnn_version": __version__, "n_members": self.n_members,
                           "member_seeds": list(self.member_seeds),
                           "bootstrap": self.bootstrap}
        arrays = {}
        for k, member in enumerate(members):  # each member's complete model file
            buffer = io.BytesIO()
            _write_npz(buffer, member)
            arrays[f"member_{k}"] = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
        arrays["description"] = np.array(json.dumps(description))
        # fastnn.io.writer's atomic write: a temporary file beside the target, fsynced and renamed
        # over it; an existing target keeps its permission bits, a symbolic link is followed,
        # and any exception (KeyboardInterrupt too) removes the temporary file and descriptor.
        # Compressed: besides the size, no member's own zip records appear verbatim in the
        # archive, where a reader of a truncated file could mistake them for the outer
        # archive's.
        write_output(target, lambda fh: np.savez_compressed(fh, **arrays))


def train_in_lockstep(runs, workers, histories, errors):
    """Train fastnn training runs (the members of an ensemble) in lockstep epochs.

    runs: [(TrainingRun, epochs)] (``fastnn.training.trainer.prepare_run``), each of its own model;
    workers: threads of the pool; histories, errors: lists of len(runs) this fills.
    Used by MLPEnsemble.fit and fastnn.interop.sklearn_ensemble.

    Each round: every active member's run prepares its epoch (TrainingRun.epochs: rate,
    sample order, snapshot), ONE compiled job runs those epochs as tasks on fastnn's
    pool (boundary.run_epochs, `workers` threads) and each run commits its epoch
    (TrainingRun.commit: loss, checks, validation, schedule, early stopping), all with
    every member's lock held, so that a reader sees every member at the same epoch boundary
    (fastnn/runtime/state.py); then, the locks released and a waiting reader let in, each member's
    run calls its callbacks, in member order.  A member that stops (its epochs done, early
    stopping, a callback) or fails (divergence: kept in errors[k]) leaves; the others go on.  On
    KeyboardInterrupt every member records the epoch that ran, then all stop.
    """
    steps = {k: run.epochs(epochs) for k, (run, epochs) in enumerate(runs)}
    calls = {}       # member -> its prepared epoch
    interrupted = False

    def advance(k):
        """Resume member k: record the epoch that ran (if any), prepare the next."""
        nonlocal interrupted
        try:
            calls[k] = next(steps[k])
            return
        except StopIteration as end:
            histories[k] = end.value
        except BaseException as exc:  # kept, raised once every member has stopped
            errors[k] = exc
            histories[k] = getattr(runs[k][0], "history", None)
            interrupted = interrupted or isinstance(exc, KeyboardInterrupt)
        calls.pop(k, None)
        del steps[k]

    try:   # (an exception from here itself, e.g. Ctrl-C between two jobs, propagates)
        with hold([run.model for run, _ in runs]):  # every run starts in one step
            for k in list(steps):
                advance(k)
        while calls and not interrupted:
            members = list(calls)
            models = [runs[k][0].model for k in members]
            # the round's epochs and their records, one step for a save or predict in
            # another thread (fastnn/runtime/state.py): every member at the same epoch
            # boundary.  The dense epochs run as one job on the pool, then a sparse X's
            # epochs (fastnn/_core/_sparse.pyx, not pool tasks) one after another on this
            # thread (boundary.run_epochs)
            with hold(models):
                try:
                    boundary.run_epochs([calls[k] for k in members], workers)
                finally:  # a Ctrl-C landing as the job returns: the epochs that ran are
                    for k in members:  # recorded, so the records match the weights
                        if calls[k].ran:
                            runs[k][0].commit(calls[k])
            let_readers_in(models)   # a reader waits for one round at most
            for k in members:
                if calls[k].ran:
                    advance(k)
                else:       # Ctrl-C came before its epoch: it ends after its last one
                    interrupted = True
    finally:
        # runs still open: end each after its last recorded epoch (GeneratorExit; a
        # prepared epoch that did not run is dropped, see TrainingRun.epochs)
        for k, gen in steps.items():
            try:
                gen.close()
            except Exception as exc:
                errors[k] = errors[k] or exc
            histories[k] = getattr(runs[k][0], "history", None)



#: resamples drawn for one member at most, looking for one with a row of positive weight
_MAX_DRAWS = 200


def bootstrap_draw(rng, n, sample_weight=None, who="the member"):
    """n row indices drawn with replacement from `rng`, holding a row of positive weight.

    A bootstrap resample of weighted data can miss every row of positive weight (one such
    row in n is missed with probability (1 - 1/n)^n, about 0.37): the member would have
    nothing to train on, and its fit failed with "sample_weight is all zeros" although the
    data is valid.  Such a resample is drawn again from the same stream, as often as it
    takes (at most _MAX_DRAWS times: for one positive row the chance of needing more is
    below 1e-86); the first valid draw is the one kept, so data without zero weights gets
    the first draw.  Without a positive weight in the data itself the first draw is returned
    (the fit's own check names the problem).  Used by MLPEnsemble and
    fastnn.interop.sklearn_ensemble.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int >= 1
    sample_weight : array-like of shape (n,) or None
    who : str
        Names the member in the error.

    Returns
    -------
    ndarray of shape (n,), int64

    Raises
    ------
    ValueError
        Every one of the _MAX_DRAWS resamples missed the rows of positive weight.
    """
    idx = rng.integers(0, n, n)
    if sample_weight is None:
        return idx
    with np.errstate(invalid="ignore"):
        positive = np.asarray(sample_weight, dtype=np.float64) > 0
    if positive.shape != (n,) or not positive.any():
        return idx
    for _ in range(_MAX_DRAWS - 1):
        if positive[idx].any():
            return idx
        idx = rng.integers(0, n, n)
    if positive[idx].any():
        return idx
    raise ValueError(f"{_MAX_DRAWS} bootstrap resamples of the {n} rows for {who} all missed "
                     f"the {int(positive.sum())} rows of positive sample_weight; give more "
                     "rows a positive weight, or fit with bootstrap=False")


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


def _fixed_noise_variance(loss):
    """sigma^2 of a fixed scalar GaussianNLL(sigma), else 0 (MSE, per-sample sigma, none)."""
    if loss is not None and loss.kind == 1 and loss.sample_sigma is None:
        return float(loss.scalar_sigma) ** 2
    return 0.0


def _mean_std(values, return_std):
    mean = values.mean(axis=0)
    if not return_std:
        return mean
    return mean, np.sqrt(((values - mean) ** 2).mean(axis=0))


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
    path = _check_path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if not head.startswith(b"PK\x03\x04"):
            raise ModelFileError(path, "it is not a zip archive (.npz), so not an ensemble "
                                       "saved by fastnn")
        file_size = fh.seek(0, os.SEEK_END)
        fh.seek(0)
        models, optimizers = [], []
        with tempfile.TemporaryDirectory(prefix="fastnn-ensemble-") as tmp:
            try:
                with zipfile.ZipFile(fh) as archive:
                    entries = _entries(path, archive, file_size)
                    if "description" not in entries:
                        raise ModelFileError(path, f"it has no 'description' entry (entries: "
                                                   f"{sorted(entries)}); it is not an "
                                                   "ensemble saved by fastnn")
                    text = _read_npy(path, archive, entries["description"], "description",
                                     _description_header)
                    description = _parse_description(path, text)
                    K = description["n_members"]
                    for k in range(K):  # all present before any is read
                        if f"member_{k}" not in entries:
                            raise ModelFileError(path, f"it has no 'member_{k}' entry for its "
                                                       f"{K} members")
                    extra = sorted(set(entries) - {"description"}
                                   - {f"member_{k}" for k in range(K)})
                    if extra:
                        raise ModelFileError(path, f"it has the entries {extra[:5]}, which no "
                                                   f"ensemble of {K} members writes")
                    for k in range(K):
                        name = f"member_{k}"
                        member_path = os.path.join(tmp, f"{name}.npz")
                        _copy_member(path, archive, entries[name], name, member_path)
                        try:
                            model, optimizer = _load_model(member_path, with_optimizer=True)
                        except ModelFileError as exc:
                            raise ModelFileError(path, f"member {k}: {exc.problem}") from exc
                        finally:
                            os.unlink(member_path)
                        models.append(model)
                        optimizers.append(optimizer)
            except ModelFileError:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
                    OverflowError, struct.error, NotImplementedError, RuntimeError) as exc:
                raise ModelFileError(path, f"the file is truncated or corrupted "
                                           f"({type(exc).__name__}: {exc})") from exc
    try:
        ensemble = MLPEnsemble.from_models(models, description["member_seeds"],
                                           description["bootstrap"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"its members do not form an ensemble ({exc})") from exc
    ensemble.optimizers_ = optimizers
    return ensemble


def _copy_member(path, archive, info, name, member_path):
    """Copy the bytes of a member entry (a 1-D uint8 .npy holding a model file) to
    member_path in chunks, its header checked first: memory stays bounded whatever the entry
    declares, and bytes that do not start as a zip archive are rejected before the rest is
    read."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ModelFileError(path, f"its {name!r} entry has .npy format version "
                                       f"{version}; expected (1, 0) or (2, 0)")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                       np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(fh)
        if dtype != np.uint8 or len(shape) != 1:
            raise ModelFileError(path, f"its {name!r} entry is a {dtype} array of shape "
                                       f"{shape}; expected 1-D uint8 bytes (a member's model "
                                       "file)")
        n_bytes = int(shape[0])
        if n_bytes > info.file_size:
            raise ModelFileError(path, f"its {name!r} entry declares {n_bytes} bytes of data "
                                       f"but holds at most {info.file_size}: the file is "
                                       "truncated or corrupted")
        left = n_bytes
        with open(member_path, "wb") as out:
            while left:
                chunk = fh.read(min(left, _COPY_CHUNK))
                if not chunk:
                    break
                if left == n_bytes and not chunk.startswith(b"PK\x03\x04"):
                    raise ModelFileError(path, f"member {name[7:]}: it is not a model file "
                                               "(its bytes do not start a zip archive)")
                out.write(chunk)
                left -= len(chunk)
        if left or fh.read(1):  # reading to the end checks the zip CRC
            raise ModelFileError(path, f"its {name!r} entry does not hold the {n_bytes} bytes "
                                       "its header declares: the file is truncated or "
                                       "corrupted")


#: the chunk in which a member's bytes are copied out of the archive
_COPY_CHUNK = 1 << 20


# every key any ensemble format version wrote in its description
_ENSEMBLE_KEYS = ("format", "format_version", "fastnn_version", "n_members", "member_seeds",
                  "bootstrap")


def _parse_description(path, raw):
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ModelFileError(path, f"its description has dtype {raw.dtype} and shape "
                                   f"{raw.shape}; expected a 0-d unicode array")
    try:
        d = json.loads(str(raw), parse_constant=_reject_constant,
                       object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise ModelFileError(path, f"its description is not valid JSON ({exc})") from exc
    if not isinstance(d, dict):
        raise ModelFileError(path, "its description is not a JSON object; it is not an "
                                   "ensemble saved by fastnn")
    if d.get("format") != ENSEMBLE_FORMAT:
        hint = " (a single model: use fastnn.load)" if d.get("format") == "fastnn-model" else ""
        raise ModelFileError(path, f"its format is {_shown(d, 'format')}; expected "
                                   f"{ENSEMBLE_FORMAT!r}{hint}")
    version = d.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(path, f"format_version is {_shown(d, 'format_version')}; "
                                   "expected an int >= 1")
    if version > ENSEMBLE_FORMAT_VERSION:
        raise ModelFileError(path, f"it was written in ensemble format version {version}; this "
                                   f"fastnn reads up to {ENSEMBLE_FORMAT_VERSION} (upgrade "
                                   "fastnn)")
    # as fastnn.load does: a key no version wrote means a layout this reader does not know
    unknown = sorted(set(d) - set(_ENSEMBLE_KEYS))
    if unknown:
        raise ModelFileError(path, f"its description has the keys {unknown[:5]}, which this "
                                   f"fastnn (ensemble format version "
                                   f"{ENSEMBLE_FORMAT_VERSION}) does not know: the file was "
                                   "written by a newer fastnn (upgrade fastnn to load it) or "
                                   "edited")
    K = d.get("n_members")
    if not isinstance(K, int) or isinstance(K, bool) or not 1 <= K <= _MAX_MEMBERS:
        raise ModelFileError(path, f"n_members is {_shown(d, 'n_members')}; expected an int "
                                   f"in [1, {_MAX_MEMBERS}]")
    seeds = d.get("member_seeds")
    if (not isinstance(seeds, list) or len(seeds) != K
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                       for s in seeds)):
        raise ModelFileError(path, f"member_seeds is {_shown(d, 'member_seeds')}; expected {K} "
                                   "ints >= 0")
    if not isinstance(d.get("bootstrap"), bool):
        raise ModelFileError(path, f"bootstrap is {_shown(d, 'bootstrap')}; expected true or "
                                   "false")
    return d


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")
