"""How often do the ensembles' 90% intervals cover held-out targets on real data?

One question: the coverage of ``MLPEnsemble.predict_interval`` (members trained with
``GaussianNLL("learned")``) and of ``EnsembleRegressor(MLPRegressor(loss="gaussian_nll"))``'s
``mean -+ z std``, on scikit-learn's diabetes data (442 rows) and friedman1 (1000 rows,
noise 1), over several random train/test splits and seeds, for the defaults and the
alternatives.  Each split holds out 25% of the rows as the test set; X and y are standardized
with the training rows' mean and standard deviation (as a user would).  Reported: the mean
coverage over the runs, its standard deviation, and the mean Gaussian NLL per test point (in
the standardized units).

    python bench/coverage.py            # every configuration, 5 splits x 2 seeds (~10 min)
    python bench/coverage.py --quick    # 2 splits x 1 seed

No timing is measured; the figures do not depend on the machine's load.
"""
import argparse
import sys
import time
import warnings

import numpy as np
from scipy.special import ndtri

from _common import fastnn  # noqa: F401  (an installed fastnn, else the built source tree)
from fastnn.ensemble import MLPEnsemble

LEVEL = 0.9


def datasets():
    from sklearn.datasets import load_diabetes, make_friedman1
    X, y = load_diabetes(return_X_y=True)
    yield "diabetes", X, y
    X, y = make_friedman1(n_samples=1000, noise=1.0, random_state=0)
    yield "friedman1", X, y


def split(X, y, seed):
    """75/25 train/test split drawn from seed, standardized with the training rows."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    n_test = len(y) // 4
    test, train = perm[:n_test], perm[n_test:]
    mx, sx = X[train].mean(0), X[train].std(0)
    my, sy = y[train].mean(), y[train].std()
    return ((X[train] - mx) / sx, (y[train] - my) / sy,
            (X[test] - mx) / sx, (y[test] - my) / sy)


def scores(mean, std, y, lower=None, upper=None):
    """(coverage of the 90% interval, mean Gaussian NLL) on the test rows."""
    if lower is None:
        half = float(ndtri(0.5 + LEVEL / 2)) * std
        lower, upper = mean - half, mean + half
    cover = float(np.mean((y >= lower) & (y <= upper)))
    nll = float(np.mean(0.5 * np.log(2 * np.pi * std ** 2) + 0.5 * ((y - mean) / std) ** 2))
    return cover, nll


# ------------------------------------------------------------------ MLPEnsemble

def ensemble_configs():
    """name -> (constructor kwargs, fit kwargs)."""
    adam = lambda lr=3e-3: fastnn.Adam(lr=lr)  # noqa: E731
    out = {}
    for epochs in (50, 200):
        out[f"early_stopping=False, {epochs} epochs"] = (
            {}, dict(epochs=epochs, early_stopping=False, optimizer=adam()))
    out["default: early stopping, own 10% split, patience 20"] = (
        {}, dict(epochs=1000, optimizer=adam()))
    out["default, Adam(lr=1e-3)"] = ({}, dict(epochs=1000, optimizer=adam(1e-3)))
    out["early stopping, own 10% split, patience 10"] = (
        {}, dict(epochs=1000, validation_split=0.1, early_stopping=fastnn.EarlyStopping(10),
                 optimizer=adam()))
    out["early stopping, own 20% split, patience 20"] = (
        {}, dict(epochs=1000, validation_split=0.2, early_stopping=fastnn.EarlyStopping(20),
                 optimizer=adam()))
    out["bootstrap, default: out-of-bag early stopping"] = (
        dict(bootstrap=True), dict(epochs=1000, optimizer=adam()))
    out["bootstrap, early_stopping=False, 200 epochs"] = (
        dict(bootstrap=True), dict(epochs=200, early_stopping=False, optimizer=adam()))
    return out


def run_ensemble(Xtr, ytr, Xte, yte, seed, ctor, fit_kwargs):
    ens = MLPEnsemble([Xtr.shape[1], 64, 64, 2], 5, activation="relu", seed=seed, **ctor)
    kwargs = dict(fit_kwargs)
    optimizer = kwargs.pop("optimizer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens.fit(Xtr, ytr[:, None], fastnn.GaussianNLL("learned"), optimizer, batch_size=32,
                **kwargs)
    d = ens.predict_distribution(Xte)
    mean, std = d.mean[:, 0], d.std[:, 0]
    gauss = scores(mean, std, yte)
    lo, hi = ens.predict_interval(Xte, LEVEL, method="mixture")
    mix = scores(mean, std, yte, lo[:, 0], hi[:, 0])
    epochs = np.mean([len(h.loss) for h in ens.histories_])
    return gauss[0], mix[0], gauss[1], epochs


# ------------------------------------------------------------------ EnsembleRegressor

def regressor_configs():
    return {
        "default (early_stopping='auto')": ({}, {}),
        "early_stopping=False (members as given)": (dict(early_stopping=False), {}),
        "members early_stopping=True, monitor score": (
            dict(early_stopping=False), dict(early_stopping=True)),
    }


def run_regressor(Xtr, ytr, Xte, yte, seed, ens_kwargs, est_kwargs):
    from fastnn.interop.sklearn import MLPRegressor
    from fastnn.interop.sklearn_ensemble import EnsembleRegressor
    est = MLPRegressor(hidden_layer_sizes=(64, 64), loss="gaussian_nll", **est_kwargs)
    reg = EnsembleRegressor(est, n_estimators=5, random_state=seed, **ens_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(Xtr, ytr)
    mean, std = reg.predict(Xte, return_std=True)
    cover, nll = scores(mean, std, yte)
    epochs = np.mean([m.n_iter_ for m in reg.estimators_])
    return cover, np.nan, nll, epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("ensemble", "regressor"))
    args = parser.parse_args(argv)
    splits, seeds = ((0, 1), (0,)) if args.quick else ((0, 1, 2, 3, 4), (0, 1))
    print(f"# Coverage of 90% intervals (mean +- standard deviation over {len(splits)} splits "
          f"x {len(seeds)} seeds; 5 members)\n")
    print("| data | estimator | configuration | coverage (Gaussian) | coverage (mixture) "
          "| test NLL | epochs |")
    print("|---|---|---|---|---|---|---|")
    jobs = []
    if args.only != "regressor":
        jobs += [("MLPEnsemble", name, run_ensemble, cfg)
                 for name, cfg in ensemble_configs().items()]
    if args.only != "ensemble":
        jobs += [("EnsembleRegressor", name, run_regressor, cfg)
                 for name, cfg in regressor_configs().items()]
    for data_name, X, y in datasets():
        for est_name, name, runner, (a, b) in jobs:
            rows = []
            start = time.perf_counter()
            for s in splits:
                Xtr, ytr, Xte, yte = split(X, y, 100 + s)
                for seed in seeds:
                    rows.append(runner(Xtr, ytr, Xte, yte, seed, a, b))
            r = np.array(rows)
            mix = ("" if np.isnan(r[:, 1]).all() else
                   f"{100 * r[:, 1].mean():.1f} +- {100 * r[:, 1].std():.1f}%")
            print(f"| {data_name} | {est_name} | {name} | {100 * r[:, 0].mean():.1f} +- "
                  f"{100 * r[:, 0].std():.1f}% | {mix} | {r[:, 2].mean():.2f} | "
                  f"{r[:, 3].mean():.0f} |", flush=True)
            print(f"  ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
