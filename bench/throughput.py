"""Question 3: end-to-end training throughput, fastnn against its peers, in one process.

For each workload, batch size and BLAS thread count, on the same arrays, interleaved:
  fastnn        fastnn.MLP(...).fit(X, y, loss, SGD(lr), shuffle=True): the whole fit call
  numpy         bench/numpy_mlp.py, the same algorithm in plain NumPy
  torch         a hand-written PyTorch CPU loop: randperm + index, zero_grad, forward, loss,
                backward, step (torch.optim.SGD)
  sklearn       MLPClassifier / MLPRegressor(solver="sgd", momentum=0, alpha=0), float32 in
  GEMM floor    only the GEMMs of fastnn's steps (bench/_bench.pyx), for the same number of samples
Every peer trains the same epochs at the same batch size and learning rate from a fresh model
(plain SGD, shuffling on).  samples/s = samples trained / wall seconds of the fit.  fastnn's
epoch-only rate (History.time, the compiled loop without fit's one-off validation) is reported
beside its fit rate; "step / floor" compares it with the floor.

    python bench/throughput.py [--quick] [--workloads A,B] [--repeats 3]
"""
import argparse
import math
import sys
import warnings

import numpy as np

import _common as C
from numpy_mlp import NumpyMLP

import fastnn
from _compiled import load_bench

_bench = load_bench()  # bench/_bench.pyx, built on first use

PEERS = ("fastnn", "numpy", "torch", "sklearn")


# ------------------------------------------------------------------ one fit per peer


def fastnn_fit(w, X, y, batch, epochs, seed=0, record=None):
    model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=w["dtype"], seed=seed)
    hist = model.fit(X, y, w["loss"], fastnn.SGD(lr=w["lr"]), epochs=epochs, batch_size=batch,
                     shuffle=True, seed=seed)
    if record is not None:
        record.append(sum(hist.time))
    return model


def numpy_fit(w, X, y, batch, epochs, seed=0):
    model = NumpyMLP(w["sizes"], w["activation"], w["loss"], w["dtype"], seed)
    model.fit(X, y, epochs=epochs, batch_size=batch, lr=w["lr"], seed=seed)
    return model


def torch_fit(torch, w, Xt, yt, batch, epochs, seed=0):
    nn = torch.nn
    torch.manual_seed(seed)
    sizes, layers = w["sizes"], []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(nn.ReLU() if w["activation"] == "relu" else nn.Tanh())
    model = nn.Sequential(*layers).to(Xt.dtype)
    opt = torch.optim.SGD(model.parameters(), lr=w["lr"])
    loss_fn = nn.CrossEntropyLoss() if w["loss"] == "cross_entropy" else nn.MSELoss()
    gen = torch.Generator().manual_seed(seed)
    n = Xt.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            xb, yb = Xt[idx], yt[idx]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
    return model


def sklearn_fit(neural_network, w, X, y, batch, epochs, seed=0):
    kwargs = dict(hidden_layer_sizes=tuple(w["sizes"][1:-1]), activation=w["activation"],
                  solver="sgd", alpha=0.0, batch_size=batch, learning_rate="constant",
                  learning_rate_init=w["lr"], momentum=0.0, nesterovs_momentum=False,
                  max_iter=epochs, shuffle=True, random_state=seed, tol=0.0,
                  early_stopping=False, n_iter_no_change=epochs + 1)
    if w["loss"] == "cross_entropy":
        est = neural_network.MLPClassifier(**kwargs)
        target = y
    else:
        est = neural_network.MLPRegressor(**kwargs)
        target = y.ravel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is the point here
        est.fit(X, target)
    return est


# ------------------------------------------------------------------ one configuration


def run_config(w, X, y, batch, threads, repeats, torch=None, neural_network=None):
    """Interleaved repeats of every peer for one (workload, batch, threads); a result dict."""
    epochs = w["epochs"]
    n = X.shape[0]
    samples = n * epochs
    warm_rows = min(n, max(8 * batch, 512))
    Xw, yw = X[:warm_rows], y[:warm_rows]
    runs, warm, epoch_times = {}, {}, []
    runs["fastnn"] = lambda: fastnn_fit(w, X, y, batch, epochs, record=epoch_times)
    warm["fastnn"] = lambda: fastnn_fit(w, Xw, yw, batch, 1)
    runs["numpy"] = lambda: numpy_fit(w, X, y, batch, epochs)
    warm["numpy"] = lambda: numpy_fit(w, Xw, yw, batch, 1)
    if torch is not None:
        Xt = torch.from_numpy(X)
        yt = torch.from_numpy(y)
        runs["torch"] = lambda: torch_fit(torch, w, Xt, yt, batch, epochs)
        warm["torch"] = lambda: torch_fit(torch, w, Xt[:warm_rows], yt[:warm_rows], batch, 1)
    if neural_network is not None:
        runs["sklearn"] = lambda: sklearn_fit(neural_network, w, X, y, batch, epochs)
        warm["sklearn"] = lambda: sklearn_fit(neural_network, w, Xw, yw, batch, 1)
    # the floor: the GEMMs of the same number of full-batch steps, timed the same way
    cases, info = _bench.step_cases(w["sizes"], w["activation"], w["loss"], batch, w["dtype"],
                                    n_rows=max(batch, 1024))
    floor, floor_reps = cases["floor"], max(1, round(samples / batch))
    runs["floor"] = lambda: floor(floor_reps)
    warm["floor"] = lambda: floor(max(1, floor_reps // 20))

    with C.blas_threads(threads):
        times = C.interleaved(runs, repeats=repeats, warmups=warm)
    epoch_times = epoch_times[-repeats:]   # drop the warm-up's
    res = {"workload": w["name"], "batch": batch, "threads": threads, "dtype": np.dtype(
        w["dtype"]).name, "samples": samples, "rates": {}, "missing": []}
    for peer in PEERS + ("floor",):
        if peer not in times:
            res["missing"].append(peer)
            continue
        rates = [samples / t for t in times[peer]]
        res["rates"][peer] = C.summary(rates)
    res["rates"]["fastnn_epochs"] = C.summary([samples / t for t in epoch_times])
    med = {k: v["median"] for k, v in res["rates"].items()}
    res["ratios"] = {f"fastnn/{p}": med["fastnn"] / med[p] for p in ("numpy", "torch", "sklearn")
                     if p in med}
    res["step_over_floor"] = med["floor"] / med["fastnn_epochs"]
    res["floor_gflops"] = info["flops"] * med["floor"] / batch / 1e9
    return res


def run(quick=False, only=None, repeats=3, log=print):
    torch = C.import_peer("torch")
    sk = C.import_peer("sklearn")
    neural_network = None
    if sk is not None:
        from sklearn import neural_network
    results = []
    for name, w in C.workloads(quick, only).items():
        w["name"] = name
        X, y = C.make_data(w)
        for batch in w["batches"]:
            for threads in C.thread_counts(quick):
                res = run_config(w, X, y, batch, threads, repeats, torch, neural_network)
                results.append(res)
                log(line(res))
    return results


def line(res):
    r = res["rates"]
    parts = [f"{res['workload']} {res['dtype']} B={res['batch']} {res['threads']}T:"]
    for p in PEERS + ("floor",):
        parts.append(f"{p} {C.fmt_rate(r[p]['median'])}" if p in r else f"{p} MISSING")
    parts.append("| " + " ".join(f"{k} {v:.2f}x" for k, v in res["ratios"].items()))
    parts.append(f"step/floor {res['step_over_floor']:.3f}")
    return " ".join(parts)


def markdown(results):
    """Two tables: samples/s (median, with min-max), and ratios."""
    out = ["| workload | batch | threads | fastnn fit | fastnn epochs | NumPy | PyTorch | "
           "scikit-learn | GEMM floor |", "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        r = res["rates"]

        def cell(p):
            if p not in r:
                return "MISSING"
            s = r[p]
            return (f"{C.fmt_rate(s['median'])} ({C.fmt_rate(s['min'])}-"
                    f"{C.fmt_rate(s['max'])})")
        out.append(f"| {res['workload']} {res['dtype']} | {res['batch']} | {res['threads']} | "
                   + " | ".join(cell(p) for p in ("fastnn", "fastnn_epochs", "numpy", "torch",
                                                  "sklearn", "floor")) + " |")
    out += ["", "| workload | batch | threads | fastnn/NumPy | fastnn/PyTorch | "
            "fastnn/scikit-learn | fastnn step / GEMM floor | floor GFLOP/s |",
            "|---|---|---|---|---|---|---|---|"]
    for res in results:
        q = res["ratios"]

        def ratio(p):
            v = q.get(f"fastnn/{p}")
            return "MISSING" if v is None else f"{v:.2f}x"
        out.append(f"| {res['workload']} {res['dtype']} | {res['batch']} | {res['threads']} | "
                   f"{ratio('numpy')} | {ratio('torch')} | {ratio('sklearn')} | "
                   f"{res['step_over_floor']:.3f} | {res['floor_gflops']:.1f} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workloads", default="", help="comma-separated subset of A,B,C,D")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    only = [s for s in args.workloads.split(",") if s]
    results = run(args.quick, only, max(3, args.repeats))
    print()
    print(markdown(results))


if __name__ == "__main__":
    sys.exit(main())
