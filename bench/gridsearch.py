"""Question 13: fastnn's estimators inside joblib workers (GridSearchCV's n_jobs).

scikit-learn's GridSearchCV(n_jobs=2) runs its fits in loky worker processes, which set
OMP_NUM_THREADS to their share of the cores; fastnn's default thread count follows it (and
threadpoolctl limits), so each worker fits on its share instead of every worker taking every
core.  Timed interleaved, the same grid and data each time:

  n_jobs=1            one process, fastnn's default threads (every core)
  n_jobs=2            two loky workers, fastnn's default threads (their share: 1 each here)
  n_jobs=2 manual     two loky workers, n_threads=1 set by hand (the old advice)

The default should be as fast as the manual setting and faster than n_jobs=1.  The workers are
started once before the clock (loky reuses them), so start-up is not in the figures.

    python bench/gridsearch.py [--repeats 5] [--rows 6000]
"""
import argparse
import os
import warnings

import numpy as np

import _common as C


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=6000)
    args = parser.parse_args(argv)
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV
    from fastnn.sklearn import MLPClassifier

    X, y = make_classification(args.rows, 40, n_informative=20, n_classes=4, random_state=0)
    X = X.astype(np.float32)
    grid = {"hidden_layer_sizes": [(128, 64), (256,)], "alpha": [1e-4, 1e-3]}

    def search(n_jobs, **kwargs):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                GridSearchCV(MLPClassifier(max_iter=15, random_state=0, **kwargs), grid, cv=3,
                             n_jobs=n_jobs).fit(X, y)
        return run

    runs = {"n_jobs=1": search(1), "n_jobs=2": search(2),
            "n_jobs=2 manual": search(2, n_threads=1)}
    print(C.environment_markdown(C.environment()))
    print(f"\n{os.cpu_count()} logical cores; {args.rows} x 40, 4 classes, grid of 4, cv=3, "
          f"{args.repeats} interleaved repeats\n")
    times = C.interleaved(runs, repeats=args.repeats)
    med = {k: C.summary(v)["median"] for k, v in times.items()}
    print("| configuration | median s | spread | vs n_jobs=1 |")
    print("|---|---|---|---|")
    for k, v in times.items():
        s = C.summary(v)
        print(f"| {k} | {s['median']:.2f} | +-{C.spread(s):.0f}% | "
              f"{med['n_jobs=1'] / s['median']:.2f}x |")


if __name__ == "__main__":
    main()
