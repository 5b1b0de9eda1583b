"""Question 5: data-parallel scaling over MPI, measured here, and a model of it on a cluster.

    python bench/mpi_scaling.py            # ~2-3 minutes; writes bench/RESULTS-mpi.md
    python bench/mpi_scaling.py --quick    # 1 and 2 ranks, small; writes bench/RESULTS-mpi-quick.md
    python bench/mpi_scaling.py --out FILE
    python bench/mpi_scaling.py --save raw.json   # also keep the raw measurements;
    python bench/mpi_scaling.py --load raw.json   # rewrite the report from them, no measuring

The driver (this script) launches itself as a worker under ``mpiexec -n R`` for R = 1, 2 and
4, twice, in the order 1 2 4 1 2 4 (separate launches cannot be interleaved more finely), with
``OPENBLAS_NUM_THREADS=1`` (and OMP/MKL = 1) in every rank: 2 ranks x 2 BLAS threads would put 4
busy threads on this machine's 2 cores.  R = 4 is OVERSUBSCRIBED (4 ranks, 2 cores) and is
labelled so wherever it appears.

Every worker, on every rank:
* trains ``fastnn.fit(model, X[shard(n)], y[shard(n)], ..., comm=MPI.COMM_WORLD)`` with the
  GLOBAL batch size fixed (the same global minibatches as one process; each rank computes its
  B/R rows of each) on workload B (64-32-10, 1797 rows, batch 32) and workload A
  (784-256-128-10, a 16384-row subset of the 60000 x 784 set, batch 64 and 256); plain SGD,
  shuffling on.  Per fit, 1 warm-up epoch then timed epochs; an epoch's time is the slowest
  rank's ``History.time`` (the compiled loop, MPI_Allreduce calls included), its rate the
  global rows / that time;
* after the fits, times one ``MPI_Allreduce`` (in place, float32, MPI_SUM) of vectors of
  1 .. 2^20 floats, the two gradient sizes among them (n_params + 2: fit also reduces the
  loss and the weight sum), through fastnn's own C call
  (``MPIContext(comm).reducer.sum_inplace``, what the training loop calls) and through
  mpi4py's ``comm.Allreduce`` for reference, interleaved; a barrier before each sample, the
  slowest rank's time;
* interleaved with the distributed fits, the same fit without ``comm`` on the whole data
  set, on every rank at once: at R = 1 the plain single-process baseline, at R > 1 a control
  (R independent processes, no MPI calls) that measures what the cores give R processes now;
* with R = 1 only: the compiled single-process step alone (``bench/_bench.pyx.step_cases``)
  at every local batch size B/R that a cluster of R = 1 .. 64 ranks would give each rank,
  and the separate update pass alone (the MPI path runs it; it is not divided among ranks).

Then it writes a markdown file: what was measured, scaling efficiency
throughput(R) / (R x throughput(1)), the allreduce's share of a step, and the model's predicted
efficiency on a cluster (see the text `MODEL` below), clearly separated.
"""
import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import _common as C

HERE = os.path.dirname(os.path.abspath(__file__))
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

#: (workload, global batch, rows used, timed epochs per fit)
CONFIGS = [("B", 32, 1797, 40), ("A", 64, 16384, 4), ("A", 256, 16384, 4)]
QUICK_CONFIGS = [("B", 32, 1797, 10), ("A", 256, 4096, 3)]
FITS = 2                       # fits per config per launch (each: 1 warm-up + timed epochs)
RANKS, QUICK_RANKS = (1, 2, 4), (1, 2)
ROUNDS, QUICK_ROUNDS = 2, 1
AR_SIZES = [1, 16, 256, 4096, 16384, 65536, 262144, 1048576]   # floats; + the gradient sizes
AR_SIZES_QUICK = [1, 4096, 262144]
#: cluster sizes of the model, and its networks: (label, bytes/s, latency s)
MODEL_RANKS = (2, 4, 8, 16, 32, 64)
#: (and whether to show the tree algorithm's latency too)
NETWORKS = [("10 Gb/s, 20 us", 10e9 / 8, 20e-6, True), ("10 Gb/s, 5 us", 10e9 / 8, 5e-6, False),
            ("100 Gb/s, 20 us", 100e9 / 8, 20e-6, False),
            ("100 Gb/s, 5 us", 100e9 / 8, 5e-6, True)]
THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def n_params(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def configs(quick):
    out = []
    for name, batch, n, epochs in (QUICK_CONFIGS if quick else CONFIGS):
        w = dict(C.WORKLOADS[name], n=n)
        out.append({"key": f"{name} B={batch}", "workload": name, "batch": batch, "n": n,
                    "epochs": epochs, "w": w, "P": n_params(w["sizes"])})
    return out


def label_ranks(r):
    return f"{r} (oversubscribed: {r} ranks on {CORES} cores)" if r > CORES else str(r)


# ================================================================== worker (under mpiexec)


def _slowest(comm, MPI, values):
    """Element-wise max over ranks of a float64 vector."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    out = np.empty_like(values)
    comm.Allreduce(values, out, op=MPI.MAX)
    return out


def _time_allreduce(comm, MPI, ctx, n, repeats, min_time):
    """Seconds per call of the two allreduce paths (slowest rank), `repeats` samples each."""
    buf = np.ones(n, np.float32)

    def fastnn_loop(reps):
        for _ in range(reps):
            ctx.reducer.sum_inplace(buf)

    def mpi4py_loop(reps):
        for _ in range(reps):
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    loops = {"fastnn": fastnn_loop, "mpi4py": mpi4py_loop}
    for fn in loops.values():                   # warm-up, and the calibration of reps
        fn(2)
    comm.Barrier()
    t0 = time.perf_counter()
    fastnn_loop(3)
    one = _slowest(comm, MPI, [(time.perf_counter() - t0) / 3])[0]
    reps = int(comm.bcast(max(3, min(20000, round(min_time / max(one, 1e-7)))), root=0))
    out = {name: [] for name in loops}
    for _ in range(repeats):
        for name, fn in loops.items():
            buf[...] = 1                        # keep the values finite (x R per call)
            comm.Barrier()
            t0 = time.perf_counter()
            fn(reps)
            out[name].append(float(_slowest(comm, MPI, [(time.perf_counter() - t0) / reps])[0]))
    return {"n": n, "reps": reps, **out}


def _fit_epochs(cfg, X, y, comm, MPI, epochs):
    """Per-epoch seconds (slowest rank) of the timed epochs of one fit, its last loss, and the
    wall seconds of the whole fit call on this rank."""
    import fastnn
    w = cfg["w"]
    model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=w["dtype"], seed=0)
    t0 = time.perf_counter()
    hist = fastnn.fit(model, X, y, w["loss"], fastnn.SGD(lr=w["lr"]), epochs=1 + epochs,
                      batch_size=cfg["batch"], shuffle=True, seed=0, comm=comm)
    wall = time.perf_counter() - t0
    times = np.asarray(hist.time[1:])
    if comm is not None and MPI is not None:
        times = _slowest(comm, MPI, times)
    return [float(t) for t in times], float(hist.loss[-1]), wall


def _step_times(cfg, quick):
    """R = 1 only: the compiled step and the update pass at every local batch B/R, in ns."""
    from _compiled import load_bench
    _bench = load_bench()
    w, B = cfg["w"], cfg["batch"]
    locals_ = sorted({max(1, B // r) for r in (1,) + MODEL_RANKS}, reverse=True)
    out = []
    for b in locals_:
        cases, _ = _bench.step_cases(w["sizes"], w["activation"], w["loss"], b, w["dtype"],
                                     n_rows=max(4 * b, 4096))
        res = _bench.sample_cases({"step": cases["step"], "update": cases["part:update"]},
                                  repeats=3 if quick else 5, min_time=0.005 if quick else 0.015)
        out.append({"local_batch": b, "step_ns": res["step"]["ns"],
                    "update_ns": res["update"]["ns"]})
    return out


def worker(args):
    from mpi4py import MPI
    from threadpoolctl import threadpool_info

    from fastnn.training.distributed import MPIContext, shard
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    out = {"ranks": size, "load_before": os.getloadavg(), "fits": [], "allreduce": [],
           "steps": [], "mpi": MPI.Get_library_version().splitlines()[0].strip(),
           "mpi4py": __import__("mpi4py").__version__,
           "blas_threads": sorted({i.get("num_threads") for i in threadpool_info()
                                   if i.get("internal_api") == "openblas"})}
    t_start = time.perf_counter()
    for cfg in configs(args.quick):
        X, y = C.make_data(cfg["w"])
        mine = shard(len(X), comm)
        Xs, ys = np.ascontiguousarray(X[mine]).copy(), np.ascontiguousarray(y[mine]).copy()
        rec = {"key": cfg["key"], "comm": [], "nocomm": [], "nocomm_wall": [], "loss": []}
        for _ in range(FITS):
            times, loss, _ = _fit_epochs(cfg, Xs, ys, comm, MPI, cfg["epochs"])
            rec["comm"] += times
            rec["loss"].append(loss)
            # the plain path on the whole data, interleaved with the distributed one: at
            # R = 1 the single-process baseline; at R > 1 the control (R independent
            # processes at once, no MPI calls), which measures the cores' share alone
            comm.Barrier()
            times, _, wall = _fit_epochs(cfg, X, y, None, None, cfg["epochs"])
            rec["nocomm"] += times
            # the control's time: the slowest rank's whole fit (epoch medians would miss the
            # time a rank spends descheduled between short epochs)
            rec["nocomm_wall"].append(float(_slowest(comm, MPI, [wall])[0]))
        del X, y
        out["fits"].append(rec)
    ctx = MPIContext(comm)
    sizes = sorted(set(AR_SIZES_QUICK if args.quick else AR_SIZES) |
                   {c["P"] + 2 for c in configs(args.quick)})
    for n in sizes:
        out["allreduce"].append(_time_allreduce(comm, MPI, ctx, n, 3 if args.quick else 5,
                                                0.01 if args.quick else 0.03))
    if size == 1:
        for cfg in configs(args.quick):
            out["steps"].append({"key": cfg["key"], "rows": _step_times(cfg, args.quick)})
    out["seconds"] = time.perf_counter() - t_start
    out["load_after"] = os.getloadavg()
    if rank == 0:
        with open(args.worker, "w") as f:
            json.dump(out, f)


# ================================================================== driver


def mpiexec():
    """mpiexec beside this interpreter (the mpich wheel puts it there), else on PATH."""
    here = os.path.dirname(sys.executable)
    return shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))


def available():
    """None when the benchmark can run, else the reason it cannot."""
    if C.import_peer("mpi4py") is None:
        return "mpi4py is not installed (pip install \"fastnn[mpi]\")"
    if mpiexec() is None:
        return "mpiexec is not on PATH"
    return None


def launch(ranks, quick, log, timeout=600):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.json")
        env = dict(os.environ, **THREAD_ENV,
                   PYTHONPATH=os.pathsep.join([C.ROOT] + [p for p in os.environ.get(
                       "PYTHONPATH", "").split(os.pathsep) if p]))
        cmd = [mpiexec(), "-n", str(ranks), sys.executable, os.path.abspath(__file__),
               "--worker", path] + (["--quick"] if quick else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n"
                               f"{proc.stderr}")
        with open(path) as f:
            res = json.load(f)
    res["wall"] = time.perf_counter() - t0
    log(f"mpiexec -n {ranks}: {res['wall']:.1f} s, load average "
        f"{res['load_before'][0]:.2f} -> {res['load_after'][0]:.2f}")
    return res


def collect(quick=False, log=print):
    """Launch every rank count, ROUNDS times in turn; the raw results of every launch."""
    ranks = QUICK_RANKS if quick else RANKS
    return [launch(r, quick, log) for _ in range(QUICK_ROUNDS if quick else ROUNDS)
            for r in ranks]


def run(quick=False, log=print):
    """Measure and analyse (what bench/run.py calls)."""
    return analyse(collect(quick, log), quick)


# ------------------------------------------------------------------ analysis


def _med(xs):
    return statistics.median(xs)


def ring_allreduce(n_bytes, ranks, bandwidth, latency):
    """Ring allreduce: reduce-scatter + allgather, 2 (R-1) messages of n/R bytes each."""
    if ranks <= 1:
        return 0.0
    return 2.0 * (ranks - 1) / ranks * n_bytes / bandwidth + 2.0 * (ranks - 1) * latency


def tree_allreduce(n_bytes, ranks, bandwidth, latency):
    """Rabenseifner (recursive halving + doubling): the same bytes, 2 log2 R latencies."""
    if ranks <= 1:
        return 0.0
    return 2.0 * (ranks - 1) / ranks * n_bytes / bandwidth + 2.0 * math.log2(ranks) * latency


def analyse(launches, quick):
    cfgs = configs(quick)
    ranks = sorted({L["ranks"] for L in launches})
    res = {"quick": quick, "ranks": ranks, "configs": [], "allreduce": {}, "launches": [
        {k: L[k] for k in ("ranks", "wall", "seconds", "load_before", "load_after",
                           "blas_threads")} for L in launches],
           "mpi": launches[0]["mpi"], "mpi4py": launches[0]["mpi4py"]}
    for cfg in cfgs:
        key = cfg["key"]
        steps = math.ceil(cfg["n"] / cfg["batch"])
        row = {"key": key, "workload": cfg["workload"], "batch": cfg["batch"], "n": cfg["n"],
               "P": cfg["P"], "steps": steps, "by_ranks": {}}
        for r in ranks:
            times = [t for L in launches if L["ranks"] == r
                     for f in L["fits"] if f["key"] == key for t in f["comm"]]
            losses = [x for L in launches if L["ranks"] == r
                      for f in L["fits"] if f["key"] == key for x in f["loss"]]
            rates = [cfg["n"] / t for t in times]
            row["by_ranks"][r] = {"rate": C.summary(rates), "step_s": _med(times) / steps,
                                  "loss": losses[0], "epochs": len(times)}
        nocomm = [t for L in launches if L["ranks"] == 1
                  for f in L["fits"] if f["key"] == key for t in f["nocomm"]]
        row["nocomm"] = C.summary([cfg["n"] / t for t in nocomm])
        row["nocomm_step_s"] = _med(nocomm) / steps
        # d, the distributed path's own cost per step at 1 rank: a small difference of two
        # large times, so per PAIR of fits run back to back (comm, then plain: slow drifts of
        # the machine's load cancel), median epoch minus median epoch; then the median over
        # the pairs of every 1-rank launch (a pair hit by another job's burst is rejected)
        E, pairs = cfg["epochs"], []
        for L in launches:
            if L["ranks"] != 1:
                continue
            for f in L["fits"]:
                if f["key"] != key:
                    continue
                for i in range(0, len(f["comm"]), E):
                    pairs.append(_med(f["comm"][i:i + E]) - _med(f["nocomm"][i:i + E]))
        row["d"] = max(0.0, _med(pairs) / steps)
        for r in ranks:
            # the control: R x the rows of a whole fit / the slowest rank's fit wall time
            walls = [t for L in launches if L["ranks"] == r
                     for f in L["fits"] if f["key"] == key for t in f["nocomm_wall"]]
            row["by_ranks"][r]["control_rate"] = r * cfg["n"] * (1 + cfg["epochs"]) / _med(walls)
        base = row["by_ranks"][1]["rate"]["median"]
        for r in ranks:
            br = row["by_ranks"][r]
            br["speedup"] = br["rate"]["median"] / base
            br["efficiency"] = br["speedup"] / r
            br["efficiency_plain"] = br["rate"]["median"] / (r * row["nocomm"]["median"])
            br["control_eff"] = br["control_rate"] / (r * row["by_ranks"][1]["control_rate"])
        # the compiled step alone (R = 1 launches), per local batch: median over launches
        per_b = {}
        for L in launches:
            for s in L["steps"]:
                if s["key"] != key:
                    continue
                for rr in s["rows"]:
                    d = per_b.setdefault(rr["local_batch"], {"step": [], "update": []})
                    d["step"] += rr["step_ns"]
                    d["update"] += rr["update_ns"]
        row["step_ns"] = {b: _med(d["step"]) for b, d in per_b.items()}
        row["update_ns"] = {b: _med(d["update"]) for b, d in per_b.items()}
        res["configs"].append(row)
    # allreduce: per rank count and size, the median over samples of every launch
    for r in ranks:
        table = {}
        for L in launches:
            if L["ranks"] != r:
                continue
            for a in L["allreduce"]:
                d = table.setdefault(a["n"], {"fastnn": [], "mpi4py": []})
                d["fastnn"] += a["fastnn"]
                d["mpi4py"] += a["mpi4py"]
        res["allreduce"][r] = {n: {k: C.summary(v) for k, v in d.items()}
                               for n, d in sorted(table.items())}
    for row in res["configs"]:
        for r in ranks:
            ar = res["allreduce"][r].get(row["P"] + 2)
            br = row["by_ranks"][r]
            br["allreduce_s"] = ar["fastnn"]["median"] if ar else float("nan")
            br["allreduce_share"] = br["allreduce_s"] / br["step_s"]
    # this machine's shared-memory alpha and bandwidth at 2 ranks (ring model with R = 2:
    # t = n bytes / bw + 2 alpha), from the smallest and the largest vector
    if 2 in res["allreduce"]:
        t = res["allreduce"][2]
        n_small, n_big = min(t), max(t)
        a = t[n_small]["fastnn"]["median"] / 2
        bw = 4 * (n_big - n_small) / (t[n_big]["fastnn"]["median"] - t[n_small]["fastnn"]["median"])
        res["shm"] = {"latency": a, "bandwidth": bw}
    res["model"] = model(res)
    return res


def model(res):
    """Predicted efficiency on a cluster (one rank per node, each as fast as one core here).

    T(1) = t_step(B)                       (the plain single-process step, measured here)
    T(R) = t_step(B/R) + d + t_allreduce(4 (P + 2) bytes, R)
    E(R) = T(1) / (R T(R))
    d: the distributed path's own per-step cost (scaling the gradient by 1 / weight sum, the
    partial-sum bookkeeping), measured here as 1-rank fit with comm minus fit without comm.
    """
    out = []
    for row in res["configs"]:
        B, P = row["batch"], row["P"]
        steps_ns = row["step_ns"]
        if not steps_ns:
            continue
        d = row["d"]
        t1 = steps_ns[B] * 1e-9
        nets = list(NETWORKS) + [("no network cost (t_allreduce = 0)", float("inf"), 0.0,
                                  False)]
        if "shm" in res:
            nets.append(("this VM's shared memory (fitted at R = 2)", res["shm"]["bandwidth"],
                         res["shm"]["latency"], False))
        for label, bw, lat, tree in nets:
            for algo, fn in (("ring", ring_allreduce), ("tree", tree_allreduce)):
                if algo == "tree" and not tree:
                    continue
                effs = {}
                for r in MODEL_RANKS:
                    b = max(1, B // r)
                    t_r = steps_ns[b] * 1e-9 + d + (0.0 if bw == float("inf") else
                                                     fn(4 * (P + 2), r, bw, lat))
                    effs[r] = t1 / (r * t_r)
                out.append({"key": row["key"], "network": label, "algo": algo if bw !=
                            float("inf") else "-", "eff": effs, "d": d, "t1": t1})
    return out


# ------------------------------------------------------------------ report


def fmt_us(s):
    if s != s:
        return "n/a"
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def fmt_bytes(n):
    for unit, k in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n} B"


def markdown_summary(res):
    """The measured table alone (what bench/run.py puts in RESULTS.md)."""
    lines = ["| workload | ranks | samples/s (median, min-max) | speedup | efficiency | "
             "efficiency vs plain fit | control: R independent plain fits, efficiency | step | "
             "allreduce of the gradient | allreduce share of a step | final loss |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in res["configs"]:
        for r in res["ranks"]:
            br = row["by_ranks"][r]
            s = br["rate"]
            lines.append(
                f"| {row['key']} ({row['n']} rows, P = {row['P']:,}) | {label_ranks(r)} | "
                f"{C.fmt_rate(s['median'])} ({C.fmt_rate(s['min'])}-{C.fmt_rate(s['max'])}) | "
                f"{br['speedup']:.2f}x | {br['efficiency']:.2f} | {br['efficiency_plain']:.2f} | "
                f"{br['control_eff']:.2f} | {fmt_us(br['step_s'])} | "
                f"{fmt_us(br['allreduce_s'])} | {br['allreduce_share']:.0%}"
                f"{' (see note)' if r > CORES else ''} | {br['loss']:.6f} |")
        n = row["nocomm"]
        lines.append(f"| {row['key']}, no comm (plain fit) | 1 | {C.fmt_rate(n['median'])} "
                     f"({C.fmt_rate(n['min'])}-{C.fmt_rate(n['max'])}) | | | | | "
                     f"{fmt_us(row['nocomm_step_s'])} | | | |")
    if any(r > CORES for r in res["ranks"]):
        lines += ["", "Note: oversubscribed, one allreduce timed alone swings by up to 10x "
                  "between samples and launches (the allreduce table), so its share of a step "
                  "is only indicative there and can exceed 100%."]
    return "\n".join(lines)


MODEL = """\
Per step of a global batch B on R ranks (synchronous data parallelism, the same global
minibatches as one process):

    T(R) = t_step(B/R) + d + t_allreduce(P, R)
    E(R) = throughput(R) / (R x throughput(1)) = t_step(B) / (R x T(R))

* t_step(b): the single-process compiled step (gather, forward, loss, backward, plain SGD
  update fused into the dW GEMMs) at local batch b on one core, measured here with
  `bench/_bench.pyx.step_cases` (the table above). It does not fall as fast as B/R: small GEMMs
  run below peak, and below a few rows the step costs about one pass over the weights.
* d: the distributed path's own per-step work besides the allreduce, measured here as
  (1-rank fit with comm) - (plain fit) per step (median over back-to-back pairs). The MPI
  path cannot fuse the update into the GEMMs (the gradient must be summed over ranks
  first): it writes the P-float gradient, scales it by 1 / (global weight sum) in a
  separate pass, then runs the separate update pass over all P parameters, which every rank
  repeats whatever R. d does not shrink with R.
* t_allreduce(P, R) of the 4 (P + 2) bytes of float32 gradient (plus loss and weight sum):
  ring:  2 (R-1)/R x 4(P+2) / bandwidth + 2 (R-1) x latency  (bandwidth-optimal; latency
  grows linearly with R); tree: the same bytes with 2 log2(R) latencies (Rabenseifner's
  recursive halving/doubling, which MPICH and Open MPI pick for mid-sized vectors). The
  reduction's own arithmetic (one add per float, at memory speed) is left out.

How it grows. For a dense MLP both the GEMM work and the gradient are proportional to P: a
rank's step costs ~6 P B/R flops at F flop/s, the allreduce moves ~8 P (R-1)/R bytes per rank at
bw bytes/s, so

    communication / computation  ~=  (8 P / bw) / (6 P (B/R) / F)  =  4 R F / (3 B bw)

independent of P once the bandwidth term dominates the latency term (P >> latency x bw / 4
with the tree, R x latency x bw / 4 with the ring: ~6k parameters at 10 Gb/s and 20 us, ~16k
at 100 Gb/s and 5 us, for R = 2); it grows linearly with R and
falls with the global batch B and with a faster network. Small P (workload B: 2.4k
parameters, a 9.4 KiB gradient, a step of a few microseconds) is latency-bound instead: every
allreduce costs at least 2 log2 R (tree) or 2 (R-1) (ring) network latencies of 5-20 us, far
more than the step, so data parallelism cannot pay at any R (run independent jobs per rank,
e.g. a hyperparameter search). Two costs do not shrink with R at all and cap the efficiency
even on an infinitely fast network: the SGD update over all P parameters, which every rank
repeats (40 us per step on A), and the GEMMs' fixed costs at a small local batch (OpenBLAS
packs the whole weight matrix whatever the batch). Growing the global batch with R ("weak
scaling", B/R fixed) is the usual way out, at a cost in optimisation steps."""


def step_flops(sizes, batch):
    """GEMM flops of one step: (6 W - 2 n_in n_1) x batch (no dX for the first layer)."""
    w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return (6 * w - 2 * sizes[0] * sizes[1]) * batch


def _measured_ratio(res):
    """The communication / computation ratio with this machine's measured step rate."""
    lines = []
    for row in res["configs"]:
        if row["workload"] != "A" or row["batch"] not in row["step_ns"]:
            continue
        B = row["batch"]
        F = step_flops(C.WORKLOADS["A"]["sizes"], B) / (row["step_ns"][B] * 1e-9)
        ratios = ", ".join(f"{4 * F / (3 * B * bw):.2g} R at {label.split(',')[0]}"
                           for label, bw in (("10 Gb/s", 10e9 / 8), ("100 Gb/s", 100e9 / 8)))
        lines.append(f"- measured here, {row['key']}: the 1-rank step runs at F = "
                     f"{F / 1e9:.0f} GFLOP/s, so communication / computation ~= {ratios} "
                     "(bandwidth term only, before small-batch GEMM losses).")
    return lines + [""] if lines else []


def reading(res):
    """Bullets that state what the figures above show, with their numbers."""
    out = []
    for row in res["configs"]:
        if row["workload"] != "A" or row["batch"] not in row["step_ns"]:
            continue
        B = row["batch"]
        d = row["d"]
        line = (f"- {row['key']}: the distributed path costs d = {fmt_us(d)} per step more "
                f"than the plain fit at 1 rank ({d / row['nocomm_step_s']:.0%} of its step; "
                "median over back-to-back pairs of fits), median 1-rank fit "
                f"{C.fmt_rate(row['by_ranks'][1]['rate']['median'])} vs plain "
                f"{C.fmt_rate(row['nocomm']['median'])} samples/s.")
        if 2 in row["by_ranks"] and B // 2 in row["step_ns"]:
            br = row["by_ranks"][2]
            own = row["step_ns"][B // 2] * 1e-9 + d + br["allreduce_s"]
            line += (f" At 2 ranks a step took {fmt_us(br['step_s'])}; its parts alone add up "
                     f"to {fmt_us(own)} (t_step(B/2) {fmt_us(row['step_ns'][B // 2] * 1e-9)} + "
                     f"d + allreduce {fmt_us(br['allreduce_s'])})" +
                     (f": the other {fmt_us(br['step_s'] - own)} is contention (control "
                      f"efficiency {br['control_eff']:.2f} for independent processes at the "
                      "same time; a synchronous job loses more, as every step waits for the "
                      "rank that was last descheduled, and MPICH polls, holding its core, "
                      "while it waits)." if br["step_s"] > 1.05 * own
                      else ": the model's sum holds here."))
        out.append(line)
    if out:
        out.append("- d is the part of the MPI path's cost that fastnn itself controls (the "
                   "allreduce is MPI's and the network's), and it does not shrink with R: with "
                   "the small-batch step it caps E(R) even on an infinitely fast network (the "
                   "*no network cost* rows). Folding the 1 / weight-sum scaling into the "
                   "update pass (`_update_block` already scales the gradient for clipping) "
                   "would remove one of its passes over the P floats.")
    for row in res["configs"]:
        if row["workload"] == "B" and 2 in row["by_ranks"]:
            br = row["by_ranks"][2]
            t1 = row["step_ns"].get(row["batch"], float("nan")) * 1e-9
            out.append(f"- {row['key']}: one allreduce of its {fmt_bytes(4 * (row['P'] + 2))} "
                       f"gradient ({fmt_us(br['allreduce_s'])} here at 2 ranks, 10-40 us on a "
                       f"network) costs about as much as the whole 1-rank step ({fmt_us(t1)}) "
                       "or more: "
                       "a model this small should not be trained data-parallel; use the ranks "
                       "for independent fits.")
    over = [r for r in res["ranks"] if r > CORES]
    if over:
        r = over[0]
        effs = ", ".join(f"{row['key']} {row['by_ranks'][r]['efficiency']:.2f}"
                         for row in res["configs"])
        out.append(f"- {r} ranks (oversubscribed) measure what oversubscription costs, not "
                   f"scaling: efficiency {effs}, below the 2/{r} = {2 / r:.2f} that sharing "
                   "alone allows, because a rank waiting in MPI_Allreduce spins on a core that a "
                   "working rank needs (see the allreduce times at R = 4).")
    return out


def markdown(res, command, seconds, started, note=""):
    ranks = res["ranks"]
    loads = [L["load_before"][0] for L in res["launches"]] + \
        [L["load_after"][0] for L in res["launches"]]
    threads = sorted({t for L in res["launches"] for t in L["blas_threads"]})
    over = [r for r in ranks if r > CORES]
    parts = [
        "# fastnn data-parallel (MPI) scaling" + (" (--quick: small, not the reference "
                                                    "figures)" if res["quick"] else ""), "",
        "Written by `bench/mpi_scaling.py`; every number in \"Measured\" comes from the run "
        "described at the end. The \"Model\" section is a prediction from those measurements and "
        "stated network figures, not a measurement.", "",
        "## Machine and setup", "",
        f"- {C._cpu_model()}, {CORES} usable cores; {res['mpi']}; mpi4py {res['mpi4py']}; "
        "shared memory between ranks (one node).",
        f"- Every rank: `OPENBLAS_NUM_THREADS=1` (OpenBLAS threads seen in the ranks: "
        f"{threads}). 2 ranks x 2 BLAS threads would oversubscribe the {CORES} cores.",
        f"- Ranks: {', '.join(label_ranks(r) for r in ranks)}. "
        + (f"**{', '.join(map(str, over))} ranks are oversubscribed**: more ranks than cores, "
           "so ranks take turns on a core and spin in MPI while waiting; the figures show the "
           "cost of that, not of scaling. " if over else "")
        + f"Each rank count was launched {len(res['launches']) // len(ranks)} times "
        f"(order {' '.join(str(L['ranks']) for L in res['launches'])}); figures pool the "
        "launches.",
        f"- Load average (1 min) at the launches' start/end: {min(loads):.2f} - "
        f"{max(loads):.2f} (the benchmark's own ranks included; "
        f"{res['launches'][0]['load_before'][0]:.2f} before the first launch): **other jobs "
        f"share these {CORES} cores**, so even 2 ranks do not get a core each all the time.",
        "",
        "**What the measured efficiency means here.** This VM has 2 cores, so R ranks share "
        "them: at R = 2 the efficiency is bounded by whatever share of the second core the "
        "other jobs leave, and at R = 4 by 2/4 = 0.5 before any communication. The measured "
        "figures are mostly a measurement of core sharing and of MPI's shared-memory "
        "allreduce under contention; they are NOT cluster figures. The model below uses "
        "only the 1-rank step times measured here and stated network figures.", "",
        "## Measured", "",
        "### Training throughput: `fastnn.fit(..., comm=MPI.COMM_WORLD)`", "",
        "Global batch fixed (every R trains the same global minibatches), data sharded with "
        "`fastnn.training.distributed.shard`; plain SGD, shuffling on. samples/s = global rows / "
        "epoch time of the slowest rank (History.time: the compiled loop with its "
        "allreduces), median over the timed epochs of every fit after each fit's warm-up "
        "epoch. efficiency = throughput(R) / (R x throughput(1 rank)). *step* = median epoch "
        "time / steps per epoch; *allreduce of the gradient* = one MPI_Allreduce of "
        "P + 2 floats timed alone (next table) at that R; *share* = their ratio. "
        "*efficiency vs plain fit* divides by R x the plain single-process fit's rate (the "
        "*no comm* row) instead of the 1-rank distributed fit's. *control*: in the same "
        "launch, interleaved with the distributed fits, every rank also trains the whole data "
        "set alone (plain fit, no MPI calls); R x its rows / the slowest rank's wall time of "
        "the whole fit call, divided by R x the same figure for 1 process, is what these R "
        "processes get from the cores with no communication "
        "at all: the core sharing alone, for independent work (a synchronous job suffers "
        "more from it; see Reading). *final loss* is the last "
        "epoch's training loss of the first fit: the same training at every R, to float32 "
        "rounding (the ranks' partial sums are added in another order, and the difference "
        "grows over the steps).", "",
        markdown_summary(res), "",
        "### One MPI_Allreduce (in place, float32, SUM), time per call", "",
        "Median over samples (each a loop of calls after a barrier; the slowest rank's "
        "time); fastnn = `MPIContext(comm).reducer.sum_inplace(buf)` (the C call the training "
        "loop makes), mpi4py = `comm.Allreduce(MPI.IN_PLACE, buf)`. *bus bandwidth* = "
        "2 (R-1)/R x bytes / time (the ring's per-rank traffic; NCCL's convention). Rows marked "
        "with a workload are its gradient (P + 2 floats).", ""]
    grad_sizes = {row["P"] + 2: row["workload"] for row in res["configs"]}
    head = "| floats | bytes |" + "".join(
        f" R={r}{' (oversub.)' if r > CORES else ''} fastnn | R={r} mpi4py | R={r} bus bw |"
        for r in ranks if r > 1)
    parts += [head, "|---|---|" + "---|---|---|" * len([r for r in ranks if r > 1])]
    sizes = sorted(res["allreduce"][ranks[-1]])
    for n in sizes:
        cells = ""
        for r in ranks:
            if r == 1:
                continue
            a = res["allreduce"][r].get(n)
            if a is None:
                cells += " | | |"
                continue
            f, m = a["fastnn"]["median"], a["mpi4py"]["median"]
            bus = 2 * (r - 1) / r * 4 * n / f
            cells += f" {fmt_us(f)} | {fmt_us(m)} | {bus / 1e9:.2f} GB/s |"
        tag = f" (gradient of {grad_sizes[n]})" if n in grad_sizes else ""
        parts.append(f"| {n:,}{tag} | {fmt_bytes(4 * n)} |{cells}")
    if 1 in res["allreduce"]:
        one = [a["fastnn"]["median"] for a in res["allreduce"][1].values()]
        parts += ["", f"With 1 rank the call is a no-op for MPI: {fmt_us(min(one))} - "
                  f"{fmt_us(max(one))} per call at every size."]
    if "shm" in res:
        parts += ["", f"Fitted to the ring model at R = 2 (t = bytes / bw + 2 latency, from the "
                  f"smallest and largest vectors): latency ~{fmt_us(res['shm']['latency'])}, "
                  f"bandwidth ~{res['shm']['bandwidth'] / 1e9:.2f} GB/s, both with the ranks "
                  "sharing the cores with other jobs (they vary between runs: latency 1-3 us, "
                  "bandwidth 3-4.5 GB/s in the runs made while writing this benchmark)."]
    parts += ["", "### The compiled step alone, 1 rank (the model's t_step)", "",
              "`bench/_bench.pyx.step_cases` \"step\": one single-process plain-SGD step on a "
              "full local batch (gather, forward, loss, backward, with the update fused into "
              "each layer's dW GEMM), and \"part:update\": the separate update pass over all "
              "P parameters that the MPI path, momentum and Adam run instead. Median per step, "
              "at each local batch B/R of a cluster of R ranks.", "",
              "| workload | local batch b | = B/R for R | step t_step(b) | separate update "
              "pass | samples/s of one rank at b |", "|---|---|---|---|---|---|"]
    for row in res["configs"]:
        for b in sorted(row["step_ns"], reverse=True):
            rs = [r for r in (1,) + MODEL_RANKS if max(1, row["batch"] // r) == b]
            parts.append(f"| {row['key']} | {b} | {', '.join(map(str, rs)) or '-'} | "
                         f"{fmt_us(row['step_ns'][b] * 1e-9)} | "
                         f"{fmt_us(row['update_ns'][b] * 1e-9)} | "
                         f"{C.fmt_rate(b / (row['step_ns'][b] * 1e-9))} |")
    parts += ["", "## Model: expected efficiency on a cluster (a prediction, not a measurement)",
              "", MODEL, ""] + _measured_ratio(res) + [
              "### Predicted efficiency E(R)", "",
              "Assumptions: one rank per node, each node's core as fast as one core here (the "
              "1-rank t_step above, 1 BLAS thread), nominal link bandwidth fully usable, d as "
              "measured here; *no network cost* is the ceiling set by the step alone (the "
              "update pass and small-batch GEMMs). R > the global batch gives each rank 1 row "
              "(and idle rows are not modelled).", ""]
    parts += ["| workload | network | allreduce | d | " + " | ".join(
        f"R={r}" for r in MODEL_RANKS) + " | largest R with E >= 0.5 |",
        "|---|---|---|---|" + "---|" * len(MODEL_RANKS) + "---|"]
    for m in res["model"]:
        ok = [r for r in MODEL_RANKS if m["eff"][r] >= 0.5]
        parts.append(f"| {m['key']} | {m['network']} | {m['algo']} | {fmt_us(m['d'])} | " +
                     " | ".join(f"{m['eff'][r]:.2f}" for r in MODEL_RANKS) +
                     f" | {max(ok) if ok else 'none (< 2)'} |")
    model_check = [m for m in res["model"] if m["network"].startswith("this VM") and
                   m["algo"] == "ring"]
    if model_check:
        parts += ["", "Model check on this machine: with its own fitted shared-memory figures "
                  "the model predicts E(2) = " + ", ".join(
                      f"{m['key']} {m['eff'][2]:.2f}" for m in model_check) +
                  "; measured: " + ", ".join(
                      f"{row['key']} {row['by_ranks'][2]['efficiency']:.2f}"
                      for row in res["configs"] if 2 in row["by_ranks"]) +
                  ". The model assumes each rank owns a core and nothing else runs on it; "
                  "here neither holds (see the control column and Reading)."]
    parts += ["", "## Reading (generated from the figures above)", ""] + reading(res)
    parts += ["", "## Command", "", "```", command, "```", "",
              f"Took {seconds / 60:.1f} minutes, started {started}." + note]
    return "\n".join(parts) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--save", metavar="JSON", help="also save the raw measurements")
    ap.add_argument("--load", metavar="JSON", help="write the report from saved measurements "
                    "instead of measuring")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: json path
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    why = available()
    if why:
        print(f"skipped: {why}")
        return 0
    out = args.out or os.path.join(HERE, "RESULTS-mpi-quick.md" if args.quick
                                   else "RESULTS-mpi.md")
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(
        os.path.abspath(sys.argv[0]), os.path.dirname(HERE))] +
        (argv if argv is not None else sys.argv[1:]))
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M %Z")

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", flush=True)

    if args.load:
        with open(args.load) as f:
            saved = json.load(f)
        res = analyse(saved["launches"], saved["quick"])
        command, started = saved["command"], saved["started"]
        seconds = saved["seconds"]
    else:
        launches = collect(args.quick, log)
        res = analyse(launches, args.quick)
        seconds = time.perf_counter() - t0
        if args.save:
            with open(args.save, "w") as f:
                json.dump({"launches": launches, "quick": args.quick, "command": command,
                           "started": started, "seconds": seconds}, f)
    with open(out, "w") as f:
        f.write(markdown(res, command, seconds, started, note=(
            f" This report was then rewritten from the saved measurements by "
            f"`python bench/mpi_scaling.py --load {args.load}` (no new measurement)."
            if args.load else "")))
    log(f"wrote {out}")
    print(markdown_summary(res))


if __name__ == "__main__":
    sys.exit(main())
