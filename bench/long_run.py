"""Question 7: does training keep its speed to the end?  (subnormal floats)

Once a model fits its data, Adam's moments, momentum buffers and the gradients of well-fitted
samples fall below the smallest normal float (1.2e-38 in float32); on x86 every operation on
such a subnormal takes a slow path.  fastnn flushes them to zero inside its compiled calls by
default (fastnn.runtime.fpmode).  This script trains each workload until its loss is small and
compares the epoch rate early and late:

    early = median samples/s of epochs 2-6,  late = median of the last 10 epochs

The rate is samples per CPU second of the process (time.process_time between two epoch
callbacks, all its threads): on a 2-core machine shared with other jobs, wall-clock rates
move with their load far more than with subnormals, while CPU time only counts our work.
The wall-clock rate of the compiled loop (History.samples_per_s) is reported beside it.

for flush_denormals=True (the default) and False (IEEE subnormals, fastnn before the switch),
interleaved (on, off, on, off, ...) from identical starting points; each figure is the median
over the repeats.  Target: late/early >= 0.9 with flushing on, everywhere.

Workloads: the README demo (spirals, [2, 64, 64, 3], batch 32, 40 epochs, as `fastnn demo`),
and A, B, C of bench/_common.py (A at batch 64 on its first 1024 rows, so that it fits them
within the time budget; B at 32 and C at 64 on their full data), each with Adam and
SGD + momentum 0.9, in float32 and float64, on 1 and 2 BLAS threads.

Second table: the BLAS worker threads.  The flush bits are per thread, and OpenBLAS's worker
threads do not inherit the caller's.  With flushing on, everything fastnn's own loops write
(weights, activations, deltas, optimizer state) is normal or zero, so what a worker can still
meet is an underflowing product inside a GEMM, or subnormal user data.  The table times the
largest GEMM of workload A (dW = X^T D, 784 x 256 x 64, float32) with normal, underflowing and
subnormal inputs, the caller's flush bits on and off, on 1 and 2 threads.

    python bench/long_run.py [--quick] [--workloads demo,A] [--repeats 2] [--threads 1,2]
                             [--batches 16,256]   # a subset of each workload's batch sizes
                             [--no-gemm]          # ~4 minutes on a quiet machine
"""
import argparse
import statistics
import time

import numpy as np

import _common as C

import fastnn
from fastnn.datasets import make_spirals, train_test_split

#: name -> (batch sizes, epochs, rows (None: all), Adam lr, SGD lr)
LONG = {
    "demo": dict(batches=(32,), epochs=40, n=None, adam_lr=0.01, sgd_lr=0.05),
    "A": dict(batches=(16, 64, 256, 1024), epochs=75, n=1024, adam_lr=1e-3, sgd_lr=0.01,
              # larger batches take fewer steps per epoch: enough epochs to fit the rows
              epochs_by_batch={256: 300, 1024: 500}),
    "B": dict(batches=(32,), epochs=100, n=None, adam_lr=0.01, sgd_lr=0.05),
    "C": dict(batches=(64,), epochs=30, n=None, adam_lr=3e-3, sgd_lr=0.01),
}
QUICK = {"demo": dict(epochs=25), "A": dict(epochs=20, n=512, batches=(64,)),
         "B": dict(epochs=30), "C": dict(epochs=20, n=5000)}
EARLY = slice(1, 6)   # epochs 2-6 (the first one warms caches and pages the workspace in)
LATE = 10             # the last 10 epochs


def workload(name, quick=False):
    """(definition, X, y) of a long-run workload."""
    w = dict(LONG[name])
    if quick:
        w.update(QUICK[name])
    if name == "demo":
        X, y = make_spirals(3000, n_classes=3, seed=0)
        X, _, y, _ = train_test_split(X, y, 0.25, seed=0)   # what `fastnn demo` trains on
        w.update(title="README demo: spirals (2250 rows), 2-64-64-3 ReLU, softmax CE",
                 sizes=[2, 64, 64, 3], activation="relu", loss="cross_entropy")
        return w, X, y
    base = C.workloads()[name]
    rows = w["n"] or base["n"]
    base["n"] = rows
    X, y = C.make_data(base)
    w.update(title=base["title"] + (f", first {rows} rows" if w["n"] else ""),
             sizes=base["sizes"], activation=base["activation"], loss=base["loss"])
    return w, X, y


def optimizer(kind, w):
    if kind == "Adam":
        return fastnn.Adam(lr=w["adam_lr"])
    return fastnn.SGD(lr=w["sgd_lr"], momentum=0.9)


def one_fit(w, X, y, batch, kind, dtype, threads, flush, epochs):
    """(samples per CPU second per epoch, wall samples/s per epoch, final training loss) of
    one fit from seed 0."""
    model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=dtype, seed=0)
    marks = [time.process_time()]
    hist = model.fit(X, y, w["loss"], optimizer(kind, w), epochs=epochs, batch_size=batch,
                     seed=0, n_threads=threads, flush_denormals=flush,
                     callbacks=[lambda epoch, logs: marks.append(time.process_time())])
    cpu = [X.shape[0] / max(b - a, 1e-9) for a, b in zip(marks[:-1], marks[1:])]
    return cpu, hist.samples_per_s, hist.loss[-1]


def run(quick=False, only=None, repeats=2, log=print, threads=None, batches=None):
    rows = []
    threads = threads or C.thread_counts(quick)
    for name in LONG:
        if only and name not in only:
            continue
        w, X, y = workload(name, quick)
        log(f"[long_run] {name}: {w['title']}, {w['epochs']} epochs")
        for batch in w["batches"]:
            if batches and batch not in batches:
                continue
            epochs = w.get("epochs_by_batch", {}).get(batch, w["epochs"])
            for kind in ("Adam", "SGD+momentum"):
                for dtype in ("float32", "float64"):
                    for th in threads:
                        row = {"workload": name, "batch": batch, "optimizer": kind,
                               "dtype": dtype, "threads": th, "epochs": epochs}
                        per = {True: [], False: []}
                        t0 = time.perf_counter()
                        for _ in range(repeats):
                            for flush in (True, False):
                                per[flush].append(one_fit(w, X, y, batch, kind, dtype, th,
                                                          flush, epochs))
                        for flush, fits in per.items():
                            early = [statistics.median(r[EARLY]) for r, _, _ in fits]
                            late = [statistics.median(r[-LATE:]) for r, _, _ in fits]
                            wall = [statistics.median(r[-LATE:]) / statistics.median(r[EARLY])
                                    for _, r, _ in fits]
                            row[flush] = {
                                "early": statistics.median(early),
                                "late": statistics.median(late),
                                "ratio": C.summary([b / a for a, b in zip(early, late)]),
                                "wall_ratio": statistics.median(wall),
                                "loss": fits[0][2]}
                        rows.append(row)
                        log(line(row) + f"  ({time.perf_counter() - t0:.1f} s)")
    return rows


def worker_gemm(repeats=5, log=print):
    """ns per GEMM: {(threads, flush, case): summary} (see the module docstring)."""
    from fastnn._core import _network
    from _compiled import load_bench
    _bench = load_bench()
    from fastnn.runtime.threads import blas_threads
    m, n, k = 784, 256, 64
    rng = np.random.default_rng(0)
    A = rng.standard_normal(k * m).astype(np.float32)
    D = rng.standard_normal(k * n)
    cases = {"normal": D.astype(np.float32),
             "products underflow (D ~ 1e-38)": (D * 1e-38).astype(np.float32),
             "subnormal D (~ 1e-41)": (D * 1e-41).astype(np.float32)}
    C_out = np.zeros(m * n, np.float32)
    caller = _network._get_fpmode()
    flushing = caller | 0x8040          # what fastnn's entry points set on x86-64
    out = {}
    for th in (1, 2):
        with blas_threads(th):
            for flush in (True, False):
                ns = {name: [] for name in cases}
                for _ in range(repeats):            # the cases interleaved: A B C A B C ...
                    for name, Dc in cases.items():
                        _network._set_fpmode(flushing if flush else caller)
                        try:
                            ns[name].append(_bench._loop_gemm(A, Dc, C_out, True, False,
                                                              m, n, k, 20))
                        finally:
                            _network._set_fpmode(caller)
                for name in cases:
                    out[th, flush, name] = C.summary(ns[name])
                log(f"[long_run] GEMM {th} thread(s), flush {flush}: " + ", ".join(
                    f"{name} {out[th, flush, name]['median'] / 1e3:.0f} us" for name in cases))
    return out


def worker_markdown(g):
    names = list(dict.fromkeys(name for _, _, name in g))
    out = ["| BLAS threads | caller's flush bits | " + " | ".join(names) + " |",
           "|---|---|" + "---|" * len(names)]
    for th in (1, 2):
        for flush in (True, False):
            cells = []
            for name in names:
                s = g[th, flush, name]
                base = g[th, flush, names[0]]["median"]
                cells.append(f"{s['median'] / 1e3:.0f} us ({s['median'] / base:.2f}x)")
            out.append(f"| {th} | {'on' if flush else 'off'} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def line(r):
    on, off = r[True], r[False]
    return (f"{r['workload']:>4} B={r['batch']:<4} {r['optimizer']:<12} {r['dtype']} "
            f"{r['threads']}t  on: {C.fmt_rate(on['early'])} -> {C.fmt_rate(on['late'])} "
            f"= {on['ratio']['median']:.2f} (wall {on['wall_ratio']:.2f})   off: "
            f"{C.fmt_rate(off['early'])} -> {C.fmt_rate(off['late'])} = "
            f"{off['ratio']['median']:.2f} (wall {off['wall_ratio']:.2f})   "
            f"loss {on['loss']:.3g} / {off['loss']:.3g}")


def markdown(rows, target=0.9):
    out = ["| workload | batch | optimizer | dtype | threads | epochs | early | late | "
           "late/early (min-max) | wall late/early | without flushing: early | late | "
           "late/early | wall late/early | final loss (on / off) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        on, off = r[True], r[False]
        mark = "" if on["ratio"]["median"] >= target else " **missed**"
        out.append(
            f"| {r['workload']} | {r['batch']} | {r['optimizer']} | {r['dtype']} | "
            f"{r['threads']} | {r['epochs']} | {C.fmt_rate(on['early'])} | "
            f"{C.fmt_rate(on['late'])} | {on['ratio']['median']:.2f} "
            f"({on['ratio']['min']:.2f}-{on['ratio']['max']:.2f}){mark} | "
            f"{on['wall_ratio']:.2f} | {C.fmt_rate(off['early'])} | "
            f"{C.fmt_rate(off['late'])} | {off['ratio']['median']:.2f} | "
            f"{off['wall_ratio']:.2f} | {on['loss']:.3g} / {off['loss']:.3g} |")
    met = sum(r[True]["ratio"]["median"] >= target for r in rows)
    out.append("")
    out.append(f"Target late/early >= {target} (per CPU second) with flushing on (the "
               f"default): met in {met} of {len(rows)} rows.")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workloads", default="", help="comma-separated subset of demo,A,B,C")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", default="", help="comma-separated BLAS thread counts "
                    "(default 1,2; 1 with --quick)")
    ap.add_argument("--batches", default="", help="comma-separated subset of batch sizes")
    ap.add_argument("--no-gemm", action="store_true", help="skip the BLAS worker table")
    args = ap.parse_args(argv)
    only = [s for s in args.workloads.split(",") if s]
    threads = tuple(int(t) for t in args.threads.split(",") if t) or None
    t0 = time.perf_counter()
    batches = tuple(int(b) for b in args.batches.split(",") if b) or None
    rows = run(args.quick, only, args.repeats, threads=threads, batches=batches)
    import fastnn.runtime.fpmode
    gemm = (worker_gemm() if fastnn.runtime.fpmode.supported() and not (args.quick or args.no_gemm)
            else None)
    print()
    print(C.environment_markdown(C.environment()))
    print()
    print(markdown(rows))
    if gemm is not None:
        print()
        print(worker_markdown(gemm))
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
