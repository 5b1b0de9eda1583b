"""Fingerprints of a fixed set of fits: refactors must keep results bit for bit.

    python bench/fingerprints.py                  # print {case: sha256 of the parameters}
    python bench/fingerprints.py --write F.json   # record them
    python bench/fingerprints.py --check F.json   # compare; exit 1 on any difference

bench/fingerprints.json holds the current reference: recorded before the layout move and
updated only for explained changes since (the estimators' early-stopping split became
scikit-learn's; the 2-rank MPI run scales by the global batch weight before its reduction,
1.1e-16 from one process instead of 2.2e-16; training's large products moved from OpenBLAS to
the kernel _network._product_kernel chooses per shape, changing A sgd batch16, A adam batch256
and D float64 adam at 1 and 2 threads alike; the softmax losses' exp(z - max) became the
vectorized exp of the prediction softmax, a few ulp of double instead of glibc's, changing
the float64 cross-entropy cases D float64 adam t1 and t2, B sgd float64 sparse, B lbfgs,
MLPClassifier adam, lbfgs and early stopping, and the 2-rank MPI run, while every float32
case kept its bits; float32 X W with k > 256 moved from OpenBLAS to the packed kernel at any
batch, changing A adam batch256 at 1 and 2 threads alike).  A change of results updates it
in a commit that says which entries changed and why.

Each case trains a small network for a few epochs from one seed and hashes the bytes of its
final parameters (and, for the estimators and ensembles, every member's).  The cases cover the
workload shapes of bench/ (A, B, C, D), every optimizer and schedule, dense and sparse input,
dropout and layer normalization, ensembles, the scikit-learn estimators with each solver, 1
and 2 threads, and a 2-rank MPI run (skipped with a note when mpi4py or mpiexec is missing).
A case whose fit raises records the exception's type and message instead, so a change of
error is a change of fingerprint too.

The L-BFGS and sparse-input cases run scipy's OpenBLAS, whose bits follow the kernel it picks
for the CPU: the reference was recorded with its Haswell (AVX2) kernels, and on a CPU where it
picks others (SkylakeX on a Zen 4, for one) those five cases differ while the other 28 hold.
Check them there with `OPENBLAS_CORETYPE=Haswell python bench/fingerprints.py --check ...`.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import fastnn


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _data(n, n_in, n_out, task, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(dtype)
    if task == "classify":
        y = rng.integers(0, n_out, n)
    else:
        y = (np.tanh(X[:, :n_out]) + 0.1 * rng.standard_normal((n, n_out))).astype(dtype)
    return X, y


def _fit(sizes, task, *, optimizer, n=512, epochs=2, batch_size=32, n_threads=1,
         dtype=np.float32, sparse=False, activation="relu", **model_kwargs):
    X, y = _data(n, sizes[0], sizes[-1], task)
    if sparse:
        import scipy.sparse
        X = scipy.sparse.csr_matrix(np.where(np.abs(X) > 1.0, X, 0.0))
    model = fastnn.MLP(sizes, activation=activation, dtype=dtype, seed=0, **model_kwargs)
    loss = "cross_entropy" if task == "classify" else "mse"
    model.fit(X, y, loss, optimizer, epochs=epochs, batch_size=batch_size, seed=0,
              n_threads=n_threads)
    return _digest(model.params)


def _cases():
    A, B, C, D = [784, 256, 128, 10], [64, 32, 10], [8, 64, 64, 1], [256, 512, 512, 10]
    cases = {}
    for threads in (1, 2):
        cases[f"A sgd batch16 t{threads}"] = lambda t=threads: _fit(
            A, "classify", optimizer=fastnn.SGD(lr=0.05), n=256, batch_size=16, n_threads=t)
        cases[f"A adam batch256 t{threads}"] = lambda t=threads: _fit(
            A, "classify", optimizer=fastnn.Adam(lr=1e-3), n=512, batch_size=256, n_threads=t)
        cases[f"B momentum t{threads}"] = lambda t=threads: _fit(
            B, "classify", optimizer=fastnn.SGD(lr=0.05, momentum=0.9), n_threads=t)
        cases[f"C tanh nesterov t{threads}"] = lambda t=threads: _fit(
            C, "regress", activation="tanh", n_threads=t,
            optimizer=fastnn.SGD(lr=0.02, momentum=0.9, nesterov=True))
        cases[f"D float64 adam t{threads}"] = lambda t=threads: _fit(
            D, "classify", optimizer=fastnn.Adam(lr=1e-3), n=256, batch_size=64,
            dtype=np.float64, n_threads=t)
        cases[f"B sparse adam t{threads}"] = lambda t=threads: _fit(
            B, "classify", optimizer=fastnn.Adam(lr=1e-2), sparse=True, n_threads=t)
    schedules = {"constant": fastnn.Constant(), "step": fastnn.StepDecay(1, 0.5),
                 "invscaling": fastnn.InverseScaling(0.5), "cosine": fastnn.Cosine(3),
                 "plateau": fastnn.ReduceOnPlateau(patience=1)}
    for name, schedule in schedules.items():
        cases[f"B sgd {name}"] = lambda s=schedule: _fit(
            B, "classify", epochs=3, optimizer=fastnn.SGD(lr=0.05, momentum=0.5, schedule=s))
    cases["B adam weight decay clip"] = lambda: _fit(
        B, "classify", optimizer=fastnn.Adam(lr=1e-2, weight_decay=1e-3, clip_norm=0.5))
    cases["B sgd float64 sparse"] = lambda: _fit(
        B, "classify", optimizer=fastnn.SGD(lr=0.05), sparse=True, dtype=np.float64)
    cases["C dropout"] = lambda: _fit(C, "regress", optimizer=fastnn.Adam(lr=1e-2),
                                      dropout=0.2)
    cases["C layer norm"] = lambda: _fit(C, "regress", optimizer=fastnn.Adam(lr=1e-2),
                                         normalization="layer")
    cases["C dropout t2"] = lambda: _fit(C, "regress", optimizer=fastnn.Adam(lr=1e-2),
                                         dropout=0.2, n_threads=2)
    cases["B lbfgs"] = _lbfgs
    cases["ensemble gaussian t2"] = _ensemble
    cases.update(_estimators())
    return cases


def _lbfgs():
    X, y = _data(256, 64, 10, "classify")
    model = fastnn.MLP([64, 32, 10], dtype=np.float64, seed=0)
    fastnn.LBFGS(max_iter=30).fit(model, X, y, "cross_entropy")
    return _digest(model.params)


def _ensemble():
    X, y = _data(300, 3, 1, "regress")
    ens = fastnn.MLPEnsemble([3, 16, 2], n_members=3, seed=0)
    ens.fit(X, y, fastnn.GaussianNLL("learned"), "adam", epochs=3, n_threads=2)
    return _digest(*[m.params for m in ens.members])


def _estimators():
    try:
        from fastnn.interop.sklearn import MLPClassifier, MLPRegressor
    except ImportError:
        return {}
    cases = {}
    X, y = _data(300, 6, 3, "classify")
    Xr, yr = _data(300, 6, 1, "regress")
    for solver in ("sgd", "adam", "lbfgs"):
        def classify(solver=solver):
            est = MLPClassifier((16,), solver=solver, max_iter=5, random_state=0).fit(X, y)
            return _digest(*est.coefs_, *est.intercepts_)

        def regress(solver=solver):
            est = MLPRegressor(hidden_layer_sizes=(16,), solver=solver, max_iter=5,
                               random_state=0).fit(Xr, yr.ravel())
            return _digest(*est.coefs_, *est.intercepts_)
        cases[f"MLPClassifier {solver}"] = classify
        cases[f"MLPRegressor {solver}"] = regress

    def early_stopping():
        est = MLPClassifier((16,), early_stopping=True, max_iter=8, random_state=0).fit(X, y)
        return _digest(*est.coefs_, *est.intercepts_)

    def bagged():
        from fastnn.interop.sklearn_ensemble import EnsembleRegressor
        est = EnsembleRegressor(MLPRegressor(hidden_layer_sizes=(8,), max_iter=4),
                                n_estimators=3, bootstrap=True, random_state=0)
        est.fit(Xr, yr.ravel())
        return _digest(*[c for m in est.estimators_ for c in (*m.coefs_, *m.intercepts_)])
    cases["MLPClassifier early stopping"] = early_stopping
    cases["EnsembleRegressor bootstrap"] = bagged
    return cases


_MPI_SCRIPT = """
import hashlib, numpy as np, fastnn
from mpi4py import MPI
comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
X = rng.standard_normal((101, 5)); y = rng.integers(0, 3, 101); w = rng.uniform(0, 2, 101)
lo, hi = (0, 60) if comm.Get_rank() == 0 else (60, 101)
model = fastnn.MLP([5, 16, 3], dtype=np.float64, seed=0)
model.fit(X[lo:hi], y[lo:hi], "cross_entropy", fastnn.Adam(lr=1e-2), epochs=3, seed=0,
          sample_weight=w[lo:hi], comm=comm)
if comm.Get_rank() == 0:
    print(hashlib.sha256(np.ascontiguousarray(model.params).tobytes()).hexdigest()[:16])
"""


def _mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "skipped: no mpi4py"
    here = os.path.dirname(sys.executable)
    mpiexec = shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))
    if mpiexec is None:
        return "skipped: no mpiexec"
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "rank.py")
        with open(script, "w") as fh:
            fh.write(_MPI_SCRIPT)
        env = dict(os.environ,
                   PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
        out = subprocess.run([mpiexec, "-n", "2", sys.executable, script], env=env,
                             capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return f"failed: {out.stderr.strip()[-200:]}"
    return out.stdout.strip()


def fingerprints():
    """{case name: fingerprint} for every case, in a fixed order."""
    import warnings
    warnings.simplefilter("ignore")  # short fits: convergence warnings are expected
    found = {}
    for name, run in _cases().items():
        try:
            found[name] = run()
        except Exception as exc:  # a changed error is a changed result too
            found[name] = f"raised {type(exc).__name__}: {exc}"
    found["mpi 2 ranks adam float64"] = _mpi()
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE")
    group.add_argument("--check", metavar="FILE")
    args = parser.parse_args(argv)
    found = fingerprints()
    if args.check:
        with open(args.check) as fh:
            expected = json.load(fh)
        differ = sorted(k for k in expected.keys() | found.keys()
                        if expected.get(k) != found.get(k))
        for k in differ:
            print(f"DIFFERS {k}: recorded {expected.get(k)}, now {found.get(k)}")
        print(f"{len(found) - len(differ)} of {len(found)} fingerprints equal")
        return 1 if differ else 0
    text = json.dumps(found, indent=1)
    if args.write:
        with open(args.write, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
