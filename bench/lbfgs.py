"""Question: how much faster is fastnn's solver="lbfgs" than scikit-learn's, on the same problems
for the same number of L-BFGS iterations, and does it reach an equal or lower final loss?

Both estimators start from the same weights (fastnn.interop.sklearn draws scikit-learn's initialisation
from the same random_state) and run scipy's L-BFGS-B for exactly `iters` iterations (tol=0, so
neither stops early); both objectives are the mean loss plus 0.5 * alpha * ||W||^2 / n.  Timed
interleaved (ours, theirs, ours, ...), median of --repeats after a warm-up, 1 BLAS thread, data
in float64 (the dtype both then compute in).

    python bench/lbfgs.py [--quick] [--repeats 3] [--no-profile]

Then, per problem, where the time of one L-BFGS iteration goes (``profile``): each fit is run
once more with its objective timed call by call, and the sequence of (value, gradient) that
scipy received is replayed to ``scipy.optimize.minimize`` from the same start through an
objective that only hands back the recorded pair: the same iterations and line searches, so
that time is scipy's own L-BFGS-B cost (its Fortran/C update and its Python driver), the part
no objective can remove.  ``bound`` = scikit-learn's fit time / (scipy's own time + fastnn's
compiled evaluations): the speed-up fastnn would reach if everything else it does per call
cost nothing.  The profile's times are CPU seconds of the process (``time.process_time``):
with one BLAS thread that is the wall time the fit would take on an idle core, and it is not
inflated when the shared machine preempts the process (the wall-time table above is).

``run()`` and ``markdown()`` are what bench/run.py calls for its section 9.
"""
import argparse
import os
import sys
import time
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


def _params(hidden, iters, act):
    return dict(solver="lbfgs", hidden_layer_sizes=hidden, max_iter=iters, tol=0.0,
                alpha=1e-4, random_state=0, activation=act[0] if act else "relu")


def run(quick=False, repeats=3, log=print, profile_too=True):
    """Time both estimators on every problem (interleaved), and profile one fit of each."""
    from sklearn import neural_network as sk
    from sklearn.exceptions import ConvergenceWarning

    from fastnn.interop import sklearn as fs
    warnings.simplefilter("ignore", ConvergenceWarning)
    records = []
    with blas_threads(1):
        for name, (n, d, hidden, k, iters, *act) in PROBLEMS.items():
            if quick:
                n, iters = n // 4, iters // 4
            X, y = make(n, d, k)
            params = _params(hidden, iters, act)
            ours_cls = fs.MLPClassifier if k else fs.MLPRegressor
            theirs_cls = sk.MLPClassifier if k else sk.MLPRegressor
            fitted = {}

            def fit_with(label, cls):
                def fit():
                    fitted[label] = cls(**params).fit(X, y)
                return fit
            load = os.getloadavg()[0]
            times = interleaved({"fastnn": fit_with("fastnn", ours_cls),
                                 "sklearn": fit_with("sklearn", theirs_cls)}, repeats=repeats)
            rec = {"name": name + (" (quick)" if quick else ""), "iters": iters,
                   "n_iter": (fitted["fastnn"].n_iter_, fitted["sklearn"].n_iter_),
                   "fastnn": summary(times["fastnn"]), "sklearn": summary(times["sklearn"]),
                   "loss": (fitted["fastnn"].loss_, fitted["sklearn"].loss_),
                   "load": (load, os.getloadavg()[0])}
            if profile_too:
                rec["profile"] = profile(X, y, params, ours_cls, theirs_cls)
            records.append(rec)
            log(f"  {name}: {rec['sklearn']['median'] / rec['fastnn']['median']:.2f}x")
    return records


def _timed_objective(cls, attr):
    """Patch cls.attr (an objective method) to record (seconds, value, gradient) per call."""
    calls = []
    original = getattr(cls, attr)

    def timed(self, *args):
        t0 = time.process_time()
        out = original(self, *args)
        seconds = time.process_time() - t0
        value, grad = out
        calls.append((seconds, float(value), np.array(grad, dtype=np.float64),
                      np.array(args[0], dtype=np.float64)))
        return out
    setattr(cls, attr, timed)
    return calls, lambda: setattr(cls, attr, original)


def _replay(calls, options):
    """scipy's L-BFGS-B fed the recorded (value, gradient) pairs: its own cost, in seconds."""
    from scipy.optimize import minimize
    pairs = iter(calls)

    def recorded(theta):
        _, value, grad, _ = next(pairs)
        return value, grad
    t0 = time.process_time()
    minimize(recorded, calls[0][3], method="L-BFGS-B", jac=True, options=options,
             callback=lambda intermediate_result: None)
    return time.process_time() - t0


def profile(X, y, params, ours_cls, theirs_cls):
    """Seconds per fit: total, objective calls (and for fastnn, the compiled evaluation alone),
    scipy's own L-BFGS-B (replayed); plus the number of evaluations."""
    import fastnn.optim.lbfgs as fl
    from sklearn.neural_network import _multilayer_perceptron as skm
    out = {}
    options = {"maxfun": 15000, "maxiter": params["max_iter"], "gtol": 0.0, "maxcor": 10}
    for label, cls, owner, attr in (("fastnn", ours_cls, fl.LBFGSObjective, "__call__"),
                                    ("sklearn", theirs_cls, skm.BaseMultilayerPerceptron,
                                     "_loss_grad_lbfgs")):
        total = float("inf")
        for _ in range(3):  # the least disturbed of 3 profiled fits (a shared machine)
            attempt, restore = _timed_objective(owner, attr)
            try:
                t0 = time.process_time()
                est = cls(**params).fit(X, y)
                seconds = time.process_time() - t0
            finally:
                restore()
            if seconds < total:
                total, calls = seconds, attempt
        rec = {"total": total, "nfev": len(calls), "objective": sum(c[0] for c in calls),
               "scipy": min(_replay(calls, options) for _ in range(3)),
               "n_iter": est.n_iter_}
        if label == "fastnn":
            # the compiled loss + gradient alone, as often as the fit called it
            rec["compiled"], rec["gemm"] = _compiled_time(est, X, y, len(calls))
        out[label] = rec
    return out


def _compiled_time(est, X, y, n_calls):
    """Seconds of n_calls compiled loss+gradient evaluations (_network.loss_grad_into) on the
    fitted model and the estimator's data, as LBFGSObjective makes them."""
    import fastnn.optim.lbfgs as fl
    from fastnn._core import _network
    captured = {}
    original = fl.LBFGSObjective.__init__

    def capture(self, *args, **kwargs):
        original(self, *args, **kwargs)
        captured["objective"] = self
    fl.LBFGSObjective.__init__ = capture
    try:
        type(est)(**{**est.get_params(), "max_iter": 1}).fit(X, y)
    finally:
        fl.LBFGSObjective.__init__ = original
    obj = captured["objective"]
    model = obj.model
    best = float("inf")
    for _ in range(3):   # the least disturbed of 3 (a shared machine)
        t0 = time.process_time()
        for _ in range(n_calls):
            _network.loss_grad_into(model._spec, model.params, model.grads, obj.X,
                                    obj.loss.kind, int(obj.loss.full), obj.loss.scalar_sigma,
                                    obj.Y, obj.labels, obj.sw, obj.sigma, 1.0 / obj.weight_sum,
                                    workspace=obj.workspace)
        best = min(best, time.process_time() - t0)
    return best, n_calls * _gemm_floor(obj.X, model.layer_sizes)


def _gemm_floor(X, sizes):
    """Seconds of one evaluation's GEMMs alone (forward X W_k, weight gradients A^T D_k,
    input gradients D_k W_k^T for k >= 2) through scipy's BLAS (fastnn's), least of 5."""
    from scipy.linalg.blas import dgemm
    n = X.shape[0]
    rng = np.random.default_rng(0)
    acts = [np.ascontiguousarray(X, dtype=np.float64)] + [rng.random((n, m)) for m in sizes[1:]]
    Ws = [rng.random((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for k, W in enumerate(Ws):
            A, D = acts[k], acts[k + 1]
            dgemm(1.0, W.T, A.T)                    # Z^T = W^T A^T
            dgemm(1.0, D.T, A.T, trans_b=True)      # dW^T = D^T A
            if k > 0:
                dgemm(1.0, W.T, D.T, trans_a=True)  # dA^T = W D^T
        best = min(best, time.process_time() - t0)
    return best


def markdown(records):
    """The tables of section 9 of RESULTS.md."""
    lines = ["| problem | iterations | fastnn s | scikit-learn s | speed-up (wall) | speed-up "
             "(CPU, profiled fits) | fastnn loss | scikit-learn loss | load avg (start, end) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        o, t = r["fastnn"], r["sklearn"]
        cpu = "" if "profile" not in r else \
            f"{r['profile']['sklearn']['total'] / r['profile']['fastnn']['total']:.2f}x"
        lines.append(f"| {r['name']} | {r['iters']} (ours {r['n_iter'][0]}, theirs "
                     f"{r['n_iter'][1]}) | {o['median']:.3f} [{o['min']:.3f}-{o['max']:.3f}] | "
                     f"{t['median']:.3f} [{t['min']:.3f}-{t['max']:.3f}] | "
                     f"{t['median'] / o['median']:.2f}x | {cpu} | {r['loss'][0]:.6g} | "
                     f"{r['loss'][1]:.6g} | {r['load'][0]:.1f}, {r['load'][1]:.1f} |")
    if any("profile" in r for r in records):
        lines += ["", "Where one fit's time goes (CPU ms per L-BFGS iteration, the least of 3 "
                  "profiled fits; *objective* = all the objective calls, *compiled* = fastnn's "
                  "compiled loss+gradient alone, *scipy* = L-BFGS-B's own cost, replayed; "
                  "*other* = total - objective - scipy: the estimator's fixed cost per fit and "
                  "scipy's work that the replay does not repeat; "
                  "*GEMMs alone* = the evaluations' matrix products through the same BLAS, no "
                  "element-wise work; *bound* = scikit-learn's total / (fastnn's compiled + "
                  "scipy): the speed-up if fastnn's wrapper and fixed costs were free):", "",
                  "| problem | evals/iter (ours, theirs) | fastnn: total = compiled + wrapper "
                  "+ scipy + other | GEMMs alone | scikit-learn: total = objective + scipy + "
                  "other | bound |", "|---|---|---|---|---|---|"]
        for r in records:
            if "profile" not in r:
                continue
            f, s = r["profile"]["fastnn"], r["profile"]["sklearn"]
            per = lambda rec, key: 1e3 * rec[key] / max(rec["n_iter"], 1)  # noqa: E731
            f_other = f["total"] - f["objective"] - f["scipy"]
            s_other = s["total"] - s["objective"] - s["scipy"]
            bound = s["total"] / (f["scipy"] + f["compiled"])
            lines.append(
                f"| {r['name']} | {f['nfev'] / max(f['n_iter'], 1):.2f}, "
                f"{s['nfev'] / max(s['n_iter'], 1):.2f} | {per(f, 'total'):.3f} = "
                f"{per(f, 'compiled'):.3f} + {1e3 * (f['objective'] - f['compiled']) / max(f['n_iter'], 1):.3f}"
                f" + {per(f, 'scipy'):.3f} + {1e3 * f_other / max(f['n_iter'], 1):.3f} | "
                f"{per(f, 'gemm'):.3f} | {per(s, 'total'):.3f} = {per(s, 'objective'):.3f} + {per(s, 'scipy'):.3f} + "
                f"{1e3 * s_other / max(s['n_iter'], 1):.3f} | {bound:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and iterations")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    print(markdown(run(args.quick, args.repeats, profile_too=not args.no_profile)))


if __name__ == "__main__":
    main()
