"""Question 6: what dropout costs a training step, in fastnn and in PyTorch.

Workload A (784-256-128-10, ReLU, cross-entropy, float32, plain SGD) at batch 256, one epoch
of fit per timed unit, with and without dropout 0.2 on both hidden layers; PyTorch trains the
same network with nn.Dropout(0.2) after each hidden ReLU (a hand-written loop as in
throughput.py).  All four runs interleaved, medians of the repeats, on 1 BLAS thread.

    python bench/dropout.py [--quick] [--threads 1]
"""
import argparse
import sys

import numpy as np

import _common as C
import fastnn


def fastnn_epoch(X, y, dropout, lr, batch):
    model = fastnn.MLP([X.shape[1], 256, 128, 10], dropout=dropout, seed=0)
    return lambda: model.fit(X, y, "cross_entropy", fastnn.SGD(lr=lr), epochs=1,
                             batch_size=batch, seed=0)


def torch_epoch(torch, X, y, dropout, lr, batch):
    nn = torch.nn
    torch.manual_seed(0)
    layers = [nn.Linear(X.shape[1], 256), nn.ReLU()]
    layers += [nn.Dropout(dropout)] if dropout else []
    layers += [nn.Linear(256, 128), nn.ReLU()]
    layers += [nn.Dropout(dropout)] if dropout else []
    model = nn.Sequential(*layers, nn.Linear(128, 10))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)

    def epoch():
        perm = torch.randperm(Xt.shape[0], generator=gen)
        for start in range(0, Xt.shape[0], batch):
            idx = perm[start:start + batch]
            opt.zero_grad()
            loss_fn(model(Xt[idx]), yt[idx]).backward()
            opt.step()
    return epoch


def run(quick=False, threads=1, log=print):
    n, repeats, batch, rate = (4096, 3, 256, 0.2) if quick else (16384, 7, 256, 0.2)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 784)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    torch = C.import_peer("torch")
    with C.blas_threads(threads):
        runs = {"fastnn": fastnn_epoch(X, y, 0.0, 0.01, batch),
                "fastnn dropout": fastnn_epoch(X, y, rate, 0.01, batch)}
        if torch is not None:
            runs["torch"] = torch_epoch(torch, X, y, 0.0, 0.01, batch)
            runs["torch dropout"] = torch_epoch(torch, X, y, rate, 0.01, batch)
        times = C.interleaved(runs, repeats=repeats)
    steps = -(-n // batch)
    out = {"threads": threads, "n": n, "batch": batch, "rate": rate, "repeats": repeats,
           "step_us": {k: C.summary(v)["median"] / steps * 1e6 for k, v in times.items()},
           "spread": {k: C.spread(C.summary(v)) for k, v in times.items()}}
    for k, v in out["step_us"].items():
        log(f"{k}: {v:.0f} us per step (+-{out['spread'][k]:.0f}%)")
    return out


def markdown(out):
    s = out["step_us"]
    lines = [f"Workload A, batch {out['batch']}, float32, plain SGD, {out['threads']} BLAS "
             f"thread, {out['n']} samples per epoch; us per training step, medians of "
             f"{out['repeats']} interleaved repeats; dropout {out['rate']} after both hidden "
             "layers:", "",
             "| | no dropout | dropout | dropout / no dropout |", "|---|---|---|---|"]
    for who in ("fastnn", "torch"):
        if who in s:
            lines.append(f"| {who} | {s[who]:.0f} (+-{out['spread'][who]:.0f}%) | "
                         f"{s[who + ' dropout']:.0f} (+-{out['spread'][who + ' dropout']:.0f}%)"
                         f" | {s[who + ' dropout'] / s[who]:.3f} |")
    if "torch" in s:
        lines.append(f"| fastnn / torch | {s['fastnn'] / s['torch']:.3f} | "
                     f"{s['fastnn dropout'] / s['torch dropout']:.3f} | |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    out = run(args.quick, args.threads)
    print()
    print(markdown(out))


if __name__ == "__main__":
    sys.exit(main())
