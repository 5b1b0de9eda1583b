"""Question: on a sparse, text-like problem, is fastnn's lbfgs faster than scikit-learn's on the
same sparse data, and does its memory stay far below the dense matrix's size?

Data: a synthetic bag-of-words matrix, n_samples x n_features at the given density (CSR,
float64), two classes from a sparse linear rule.  Each estimator runs in its own child
process (so peak RSS is its own): MLPClassifier(solver="lbfgs", hidden_layer_sizes=(h,),
max_iter=iters, tol=0) from the same random_state, 1 BLAS thread.  Reported: wall seconds of
fit (median of --repeats, one child per repeat), the peak RSS growth of the fit over the
process's RSS after the data was built (Linux's VmHWM, reset before the fit), and the final
loss.

    python bench/sparse.py [--quick] [--repeats 3]
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


def make(n, d, density, seed=0):
    import numpy as np
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=seed,
                  data_rvs=lambda k: rng.poisson(2.0, k) + 1.0)
    w = sp.random(d, 1, density=0.05, random_state=seed + 1).toarray().ravel()
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


def child(which, n, d, density, hidden, iters):
    """Run one fit in this process; print a JSON line with seconds, peak RSS growth, loss."""
    import warnings

    from threadpoolctl import threadpool_limits
    X, y = make(n, d, density)
    before = _reset_peak_rss()
    if which == "fastnn":
        sys.path.insert(0, ROOT)
        from fastnn.sklearn import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    warnings.simplefilter("ignore")
    with threadpool_limits(1):
        t0 = time.perf_counter()
        clf = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(hidden,), max_iter=iters,
                            tol=0.0, random_state=0).fit(X, y)
        seconds = time.perf_counter() - t0
    peak = _peak_rss_kib()
    print(json.dumps({"seconds": seconds, "rss_growth_mb": max(peak - before, 0) / 1024,
                      "loss": clf.loss_, "n_iter": clf.n_iter_, "nnz": X.nnz}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        which, n, d, density, hidden, iters = args.child
        child(which, int(n), int(d), float(density), int(hidden), int(iters))
        return
    n, d, density, hidden, iters = (20000, 20000, 0.002, 64, 30)
    if args.quick:
        n, d, iters = 5000, 5000, 10
    dense_mb = n * d * 8 / 2**20
    results = {"fastnn": [], "sklearn": []}
    for _ in range(args.repeats):
        for which in results:  # interleaved
            out = subprocess.run([sys.executable, __file__, "--child", which, str(n), str(d),
                                  str(density), str(hidden), str(iters)],
                                 capture_output=True, text=True, check=True)
            results[which].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{n} x {d} at density {density} ({results['fastnn'][0]['nnz']} stored values; "
          f"dense float64 would be {dense_mb:.0f} MB), hidden ({hidden},), {iters} lbfgs "
          f"iterations, 1 BLAS thread, median of {args.repeats}")
    print("| estimator | fit s (median [min-max]) | peak RSS growth MB | final loss |")
    print("|---|---|---|---|")
    for which, runs in results.items():
        s = [r["seconds"] for r in runs]
        m = statistics.median(r["rss_growth_mb"] for r in runs)
        print(f"| {which} | {statistics.median(s):.2f} [{min(s):.2f}-{max(s):.2f}] | {m:.0f} | "
              f"{runs[0]['loss']:.6g} (n_iter {runs[0]['n_iter']}) |")
    ratio = statistics.median(r["seconds"] for r in results["sklearn"]) / \
        statistics.median(r["seconds"] for r in results["fastnn"])
    print(f"\nspeed-up fastnn / scikit-learn: {ratio:.2f}x")


if __name__ == "__main__":
    main()
