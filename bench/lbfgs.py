"""Question: how much faster is fastnn's solver="lbfgs" than scikit-learn's, on the same problems
for the same number of L-BFGS iterations, and does it reach an equal or lower final loss?

Both estimators start from the same weights (fastnn.sklearn draws scikit-learn's initialisation
from the same random_state) and run scipy's L-BFGS-B for exactly `iters` iterations (tol=0, so
neither stops early); both objectives are the mean loss plus 0.5 * alpha * ||W||^2 / n.  Timed
interleaved (ours, theirs, ours, ...), median of --repeats after a warm-up, 1 BLAS thread, data
in float64 (the dtype both then compute in).

    python bench/lbfgs.py [--quick] [--repeats 3]
"""
import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import blas_threads, interleaved, summary  # noqa: E402

PROBLEMS = {
    # name: (n_samples, n_features, hidden, n_classes or 0 for regression, iterations[,
    # activation])
    "iris-like 150x4, (10,), 3 classes": (150, 4, (10,), 3, 200),
    "1000x20, (32,) tanh, 2 classes": (1000, 20, (32,), 2, 200, "tanh"),
    "digits-like 1797x64, (64,), 10 classes": (1797, 64, (64,), 10, 100),
    "5000x20, (100,), 2 classes": (5000, 20, (100,), 2, 100),
    "10000x50, (128, 64), 5 classes": (10000, 50, (128, 64), 5, 50),
    "5000x10, (64, 64), regression": (5000, 10, (64, 64), 0, 100),
}


def make(n, d, k, seed=0):
    from sklearn.datasets import make_classification, make_regression
    if k:
        X, y = make_classification(n, d, n_informative=min(d, 10), n_redundant=0, n_classes=k,
                                   n_clusters_per_class=1, random_state=seed)
    else:
        X, y = make_regression(n, d, noise=5.0, random_state=seed)
        y = (y - y.mean()) / y.std()
    return X.astype(np.float64), y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and iterations")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from sklearn import neural_network as sk
    from sklearn.exceptions import ConvergenceWarning

    from fastnn import sklearn as fs
    warnings.simplefilter("ignore", ConvergenceWarning)
    print("| problem | iterations | fastnn s | scikit-learn s | speed-up | fastnn loss | "
          "scikit-learn loss |")
    print("|---|---|---|---|---|---|---|")
    with blas_threads(1):
        for name, (n, d, hidden, k, iters, *act) in PROBLEMS.items():
            if args.quick:
                n, iters = n // 4, iters // 4
            X, y = make(n, d, k)
            params = dict(solver="lbfgs", hidden_layer_sizes=hidden, max_iter=iters, tol=0.0,
                          alpha=1e-4, random_state=0, activation=act[0] if act else "relu")
            ours_cls = fs.MLPClassifier if k else fs.MLPRegressor
            theirs_cls = sk.MLPClassifier if k else sk.MLPRegressor
            fitted = {}

            def run(label, cls):
                def fit():
                    fitted[label] = cls(**params).fit(X, y)
                return fit
            times = interleaved({"fastnn": run("fastnn", ours_cls),
                                 "sklearn": run("sklearn", theirs_cls)}, repeats=args.repeats)
            ours, theirs = summary(times["fastnn"]), summary(times["sklearn"])
            loss_ours, loss_theirs = fitted["fastnn"].loss_, fitted["sklearn"].loss_
            print(f"| {name}{' (quick)' if args.quick else ''} | {iters} "
                  f"(ours {fitted['fastnn'].n_iter_}, theirs {fitted['sklearn'].n_iter_}) | "
                  f"{ours['median']:.3f} [{ours['min']:.3f}-{ours['max']:.3f}] | "
                  f"{theirs['median']:.3f} [{theirs['min']:.3f}-{theirs['max']:.3f}] | "
                  f"{theirs['median'] / ours['median']:.2f}x | {loss_ours:.6g} | "
                  f"{loss_theirs:.6g} |", flush=True)


if __name__ == "__main__":
    main()
