"""Run under mpiexec by tests/test_distributed.py: one scenario per first argument.

    equal OUT OPT   train float64 on uneven shards with sample weights; rank 0 writes every
                    rank's final parameters and the history to OUT (.npz)
    bad-input       rank 1's shard contains NaN: every rank must raise the same ValueError
    callback-fails  rank 1's callback raises after epoch 1: the job must abort, not hang
    mixed-dtype     rank 0 builds the model in float32, rank 1 in float64: every rank raises
    activation-differs  the ranks build different activations: every rank raises
    val-one-rank    only rank 0 passes validation_data: every rank raises
    loss-differs    the ranks pass different loss parameters: every rank raises
    es-differs      the ranks pass different early stopping: every rank raises
    schedule-differs  the ranks' ReduceOnPlateau have made different progress: every rank
                    raises
    continue        fit 3 epochs, then 3 more with the same optimizer: equal to fit 6 on each rank
    diverge         an absurd rate: every rank raises the same TrainingDiverged
    callback-stops  rank 1's callback asks to stop after epoch 2: every rank stops there, with
                    the same parameters (printed as a checksum)
    weights OUT CASE DTYPE  train on the weights of WEIGHT_CASES[CASE] (a shard of zero
                    weights, float32 weights near 1e37, weights on one rank only); rank 0
                    writes the parameters and the history to OUT
    zero-weights    every shard's weights are 0: every rank raises the same ValueError

A rank that raises prints "rank R raised: <message> |end|" and exits with status 3.
"""
import sys

import numpy as np
from mpi4py import MPI

import fastnn

comm = MPI.COMM_WORLD
rank = comm.Get_rank()


def global_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((101, 5))
    labels = rng.integers(0, 3, 101)
    sw = rng.uniform(0.0, 2.0, 101)
    return X, labels, sw


def optimizer(name):
    return {"sgd": fastnn.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
            "adam": fastnn.Adam(lr=0.01)}[name]


def model(dropout=0.0, normalization=None):
    return fastnn.MLP([5, 8, 6, 3], activation=["tanh", "relu"], dtype=np.float64, seed=1,
                      bias_init=0.1, dropout=dropout, normalization=normalization)


def weight_case(case, n=101):
    """(sample weights of the global rows, whether rank 1 passes none): inputs that one
    process trains on, which 2 ranks must train on alike."""
    sw = np.random.default_rng(1).uniform(0.5, 2.0, n)
    if case == "zero-shard-0":
        sw[:30] = 0.0      # rank 0's whole shard
    elif case == "zero-shard-1":
        sw[30:] = 0.0      # rank 1's whole shard
    elif case == "near-float32-max":
        sw *= 1e37         # valid float32 weights whose sums overflow float32
    elif case != "one-rank-only":
        raise SystemExit(f"unknown weight case {case!r}")
    return sw, case == "one-rank-only"


def weight_fit(case, dtype, comm=None):
    """The fit of the `weights` scenario; without comm, one process on the global data
    (the rows rank 1 passes without weights weigh 1)."""
    X, labels, _ = global_data()
    sw, rank1_unweighted = weight_case(case)
    if rank1_unweighted:
        sw[30:] = 1.0
    net = fastnn.MLP([5, 8, 6, 3], activation=["tanh", "relu"], dtype=dtype, seed=1,
                     bias_init=0.1)
    rows = slice(None) if comm is None else uneven_shard()
    w = sw[rows] if comm is None or not (rank1_unweighted and rank == 1) else None
    history = fastnn.fit(net, X[rows], labels[rows], "cross_entropy",
                         fastnn.SGD(lr=0.05, momentum=0.9), epochs=3, batch_size=16, seed=3,
                         sample_weight=w, comm=comm)
    return net.params.copy(), np.array(history.loss)


def split_fit(fraction, n0, comm=None):
    """A fit holding out `fraction` of the rows for early stopping (validation_split);
    under comm rank 0 holds rows 0..n0-1 and rank 1 the rest, else one process all of them."""
    X, labels, sw = global_data()
    rows = slice(None) if comm is None else (slice(0, n0) if rank == 0 else slice(n0, 101))
    net = model()
    history = fastnn.fit(net, X[rows], labels[rows], "cross_entropy", optimizer("adam"),
                         epochs=6, batch_size=16, seed=3, sample_weight=sw[rows],
                         validation_split=fraction,
                         early_stopping=fastnn.EarlyStopping(patience=2, min_delta=1e-3),
                         comm=comm)
    return net.params.copy(), np.array(history.loss), np.array(history.val_loss)


def uneven_shard():
    # rank 0: rows 0..29, rank 1: rows 30..100 (30 and 71 rows)
    return slice(0, 30) if rank == 0 else slice(30, 101)


def main(scenario, *args):
    X, labels, sw = global_data()
    mine = uneven_shard()
    if scenario == "equal":
        out, opt, *extra = args
        net = model(float(extra[0]) if extra else 0.0, extra[1] if len(extra) > 1 else None)
        if rank == 1:
            net.params[:] = 0.0  # fit must broadcast rank 0's parameters
        history = fastnn.fit(net, X[mine], labels[mine], "cross_entropy", optimizer(opt),
                             epochs=4, batch_size=16, seed=3, sample_weight=sw[mine],
                             comm=comm)
        every = comm.gather(net.params.copy(), root=0)
        if rank == 0:
            np.savez(out, params=np.array(every), loss=np.array(history.loss))
    elif scenario == "bad-input":
        if rank == 1:
            X = X.copy()
            X[40, 2] = np.nan
        try:
            fastnn.fit(model(), X[mine], labels[mine], "cross_entropy", epochs=2, comm=comm)
        except ValueError as exc:
            print(f"rank {rank} raised: {exc} |end|", flush=True)
            sys.exit(3)
    elif scenario == "callback-fails":
        def callback(epoch, logs):
            if rank == 1 and epoch == 1:
                raise RuntimeError("callback failed on rank 1")

        fastnn.fit(model(), X[mine], labels[mine], "cross_entropy", epochs=50, comm=comm,
                   callbacks=[callback])
    elif scenario == "continue":
        # 3 + 3 epochs with the same optimizer equal 6, distributed too
        runs = []
        for parts in ((6,), (3, 3)):
            net, opt = model(), fastnn.SGD(lr=0.1, momentum=0.9,
                                           schedule=fastnn.StepDecay(step_size=2, gamma=0.5))
            for epochs in parts:
                fastnn.fit(net, X[mine], labels[mine], "cross_entropy", opt, epochs=epochs,
                           batch_size=16, seed=5, sample_weight=sw[mine], comm=comm)
            runs.append(net.params.tobytes())
        print(f"rank {rank} continued bitwise: {runs[0] == runs[1]} |end|", flush=True)
    elif scenario == "diverge":
        # a rate that overflows: decided on summed values, so every rank raises the same
        # TrainingDiverged (no abort, no hang) and keeps the same parameters
        net = model()
        try:
            fastnn.fit(net, X[mine] * 1e3, labels[mine], "cross_entropy",
                       fastnn.SGD(lr=1e30), epochs=5, batch_size=16, seed=0, comm=comm)
        except fastnn.TrainingDiverged as exc:
            print(f"rank {rank} diverged: {exc} params {net.params.sum():.17g} |end|",
                  flush=True)
            sys.exit(4)
    elif scenario == "weights":
        out, case, dtype = args
        params, loss = weight_fit(case, np.dtype(dtype), comm)
        every = comm.gather(params, root=0)
        if rank == 0:
            np.savez(out, params=np.array(every), loss=loss)
    elif scenario == "split":
        out, fraction, n0 = args
        params, loss, val_loss = split_fit(float(fraction), int(n0), comm)
        every = comm.gather(params, root=0)
        if rank == 0:
            np.savez(out, params=np.array(every), loss=loss, val_loss=val_loss)
    elif scenario in ("sigint-one-rank", "sigint-ensemble"):
        # Ctrl-C on rank 1 alone, mid-fit: rank 0 waited forever in the next all-reduce
        import os
        import signal
        import threading
        if rank == 1:
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        rng = np.random.default_rng(0)
        Xb, yb = rng.normal(size=(4000, 50)), rng.integers(0, 3, 4000)
        rows = slice(0, 2000) if rank == 0 else slice(2000, 4000)
        if scenario == "sigint-ensemble":
            fastnn.MLPEnsemble([50, 64, 3], 2, seed=0).fit(
                Xb[rows], yb[rows], "cross_entropy", epochs=500, batch_size=8, comm=comm)
        else:
            fastnn.fit(fastnn.MLP([50, 64, 3], seed=0), Xb[rows], yb[rows], "cross_entropy",
                       epochs=500, batch_size=8, comm=comm)
        print(f"rank {rank} finished |end|", flush=True)
    elif scenario == "callback-stops":
        net = model()
        history = fastnn.fit(net, X[mine], labels[mine], "cross_entropy", epochs=50, seed=0,
                             comm=comm, callbacks=[lambda epoch, logs: rank == 1 and epoch == 2])
        print(f"rank {rank} stopped after epochs {history.epoch} params "
              f"{net.params.sum():.17g} |end|", flush=True)
    else:
        net, kwargs, loss, y = model(), {}, "cross_entropy", labels[mine]
        if scenario == "mixed-dtype":
            net = net.astype(np.float32) if rank == 0 else net
        elif scenario == "activation-differs":
            net = fastnn.MLP([5, 8, 6, 3], activation=["tanh", "relu" if rank == 0 else "sigmoid"],
                             dtype=np.float64, seed=1)
        elif scenario == "val-one-rank":
            kwargs = {"validation_data": (X[:10], labels[:10])} if rank == 0 else {}
        elif scenario == "loss-differs":
            loss, y = fastnn.GaussianNLL(sigma=1.0 + rank), X[mine][:, :3]
        elif scenario == "es-differs":
            kwargs = {"early_stopping": fastnn.EarlyStopping(patience=2 + rank,
                                                             monitor="loss")}
        elif scenario == "zero-weights":
            kwargs = {"sample_weight": np.zeros(y.shape[0])}
        elif scenario == "lbfgs-one-rank":
            kwargs = {"optimizer": fastnn.LBFGS(max_iter=3)} if rank == 1 else {}
        elif scenario == "batch-size-one-rank":
            kwargs = {"batch_size": 0} if rank == 1 else {}
        elif scenario == "schedule-differs":  # same hyperparameters, other progress
            schedule = fastnn.ReduceOnPlateau()
            if rank == 1:
                schedule._scale = 0.2
            kwargs = {"optimizer": fastnn.SGD(lr=0.01, schedule=schedule)}
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
        start = net.params.copy()
        try:
            fastnn.fit(net, X[mine], y, loss, epochs=3, seed=0, comm=comm, **kwargs)
        except ValueError as exc:
            assert np.array_equal(net.params, start)  # nothing trained
            print(f"rank {rank} raised: {exc} |end|", flush=True)
            sys.exit(3)


if __name__ == "__main__":
    main(*sys.argv[1:])
