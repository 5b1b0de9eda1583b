"""Question: on a sparse, text-like problem, is fastnn faster than scikit-learn on the same
sparse data (sgd, adam and lbfgs), and does its memory stay far below the dense matrix's size?

Data: a synthetic bag-of-words matrix, n_samples x n_features at each density (CSR, float64;
a fixed number of stored values per row, column ids skewed towards the frequent words as in
text, values are counts 1, 2, ...), two classes from a sparse linear rule.  Each fit runs in
its own child process (so peak RSS is its own): MLPClassifier(hidden_layer_sizes=(h,)) from the
same random_state, tol=0 (no early stop), 1 BLAS thread; sgd/adam for `epochs` epochs at
batch_size 200 (scikit-learn's "auto"), lbfgs for `iters` iterations.  Reported: the time of
fit in CPU seconds of the child (1 BLAS thread: the wall time on an idle core, not inflated
when the shared machine preempts the child; the wall-time ratio beside it), median of
--repeats, fastnn and scikit-learn children interleaved; the peak RSS growth of
the fit over the process's RSS after the data was built (Linux's VmHWM, reset before the fit),
the final loss (loss_), and the machine's load average over the run.

    python bench/sparse.py [--quick] [--repeats 3]

``run()`` and ``markdown()`` are what bench/run.py calls for its section 10.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: (solver, density, epochs or lbfgs iterations); 20000 x 20000, hidden (64,)
CASES = [("adam", 0.001, 3), ("adam", 0.002, 3), ("adam", 0.005, 3), ("sgd", 0.002, 3),
         ("lbfgs", 0.002, 30)]
SHAPE, HIDDEN = (20000, 20000), 64
QUICK_SHAPE = (5000, 5000)


def make(n, d, density, seed=0):
    """The bag-of-words matrix (CSR float64, canonical) and binary labels."""
    import numpy as np
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    per_row = max(1, int(round(density * d)))
    # word ids skewed towards the frequent ones (a power law, as in text); duplicates within a
    # row are summed into counts
    cols = np.minimum((d * rng.random((n, per_row)) ** 2).astype(np.int64), d - 1)
    X = sp.csr_array((rng.poisson(1.0, n * per_row) + 1.0, np.sort(cols, axis=1).ravel(),
                      np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    X.sum_duplicates()
    w = np.where(rng.random(d) < 0.05, rng.normal(size=d), 0.0)
    score = X @ w
    y = (score > np.median(score)).astype(int)
    return X, y


def _peak_rss_kib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss():
    """Reset the kernel's peak-RSS mark to the current RSS (Linux: clear_refs 5), so that
    the peak after fit is the fit's own; returns the RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _peak_rss_kib()


def child(which, solver, n, d, density, hidden, iters):
    """Run one fit in this process; print a JSON line with seconds, peak RSS growth, loss."""
    import warnings

    from threadpoolctl import threadpool_limits
    if which == "fastnn":
        sys.path.insert(0, ROOT)
        from fastnn.interop.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    X, y = make(n, d, density)
    before = _reset_peak_rss()  # after the imports and the data: the fit's own growth
    warnings.simplefilter("ignore")
    params = dict(solver=solver, hidden_layer_sizes=(hidden,), max_iter=iters, tol=0.0,
                  random_state=0)
    if solver != "lbfgs":
        params.update(batch_size=200, n_iter_no_change=iters + 1, learning_rate_init=1e-3)
    with threadpool_limits(1):
        t0, c0 = time.perf_counter(), time.process_time()
        clf = MLPClassifier(**params).fit(X, y)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_rss_kib()
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_growth_mb": max(peak - before, 0) / 1024,
                      "loss": clf.loss_, "n_iter": clf.n_iter_, "nnz": int(X.nnz)}))


def run(quick=False, repeats=3, log=print):
    """Every case, fastnn's and scikit-learn's children interleaved; returns the records."""
    n, d = QUICK_SHAPE if quick else SHAPE
    records = []
    load_before = os.getloadavg()[0]
    for solver, density, iters in CASES:
        if quick:
            iters = 1 if solver != "lbfgs" else 10
        results = {"fastnn": [], "sklearn": []}
        for _ in range(repeats):
            for which in results:
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--child", which, solver,
                     str(n), str(d), str(density), str(HIDDEN), str(iters)],
                    capture_output=True, text=True, check=True)
                results[which].append(json.loads(out.stdout.strip().splitlines()[-1]))
        rec = {"solver": solver, "density": density, "iters": iters, "n": n, "d": d,
               "nnz": results["fastnn"][0]["nnz"], "results": results,
               "load": os.getloadavg()[0]}
        records.append(rec)
        log(f"  {solver} density {density}: fastnn "
            f"{statistics.median(r['cpu'] for r in results['fastnn']):.2f} CPU s, sklearn "
            f"{statistics.median(r['cpu'] for r in results['sklearn']):.2f} CPU s")
    for rec in records:
        rec["load_before"] = load_before
    return records


def markdown(records):
    """The table of section 10 of RESULTS.md."""
    if not records:
        return ""
    n, d, reps = records[0]["n"], records[0]["d"], len(records[0]["results"]["fastnn"])
    loads = ", ".join(f"{r['load']:.1f}" for r in records)
    lines = [f"{n} x {d} synthetic bag-of-words (CSR float64), hidden ({HIDDEN},), 1 BLAS "
             f"thread, batch 200 for sgd/adam, median [min-max] of {reps} fits, each in its "
             f"own process, fastnn and scikit-learn interleaved.  Load average (1 min) during "
             f"the run: {records[0]['load_before']:.1f} at the start, "
             f"{loads} after each case (2 vCPUs).",
             "", "| solver | density (stored values) | epochs / iterations | fastnn fit CPU s | "
             "scikit-learn fit CPU s | speed-up CPU (wall) | peak RSS growth MB fastnn / scikit-learn "
             "(dense X: MB) | final loss fastnn / scikit-learn |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        f, s = r["results"]["fastnn"], r["results"]["sklearn"]
        tf, ts = [x["cpu"] for x in f], [x["cpu"] for x in s]
        wf, ws = [x["seconds"] for x in f], [x["seconds"] for x in s]
        mf = statistics.median(x["rss_growth_mb"] for x in f)
        ms = statistics.median(x["rss_growth_mb"] for x in s)
        lines.append(
            f"| {r['solver']} | {r['density']} ({r['nnz']}) | {r['iters']} | "
            f"{statistics.median(tf):.2f} [{min(tf):.2f}-{max(tf):.2f}] | "
            f"{statistics.median(ts):.2f} [{min(ts):.2f}-{max(ts):.2f}] | "
            f"{statistics.median(ts) / statistics.median(tf):.2f}x "
            f"({statistics.median(ws) / statistics.median(wf):.2f}x) | {mf:.0f} / {ms:.0f} "
            f"({r['n'] * r['d'] * 8 / 2**20:.0f}) | {f[0]['loss']:.5g} / {s[0]['loss']:.5g} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        which, solver, n, d, density, hidden, iters = args.child
        child(which, solver, int(n), int(d), float(density), int(hidden), int(iters))
        return
    print(markdown(run(args.quick, args.repeats)))


if __name__ == "__main__":
    main()
