"""Question: how fast does a deep ensemble train on 2 cores?

K = 8 members of workload C (8-64-64-1 tanh, MSE, batch 64, float32, plain SGD lr 0.01),
each trained for the same epochs on the same arrays, timed interleaved:

  sequential   the 8 members one after another with fastnn.fit at 1 BLAS thread
  ensemble     fastnn.ensemble.MLPEnsemble(K=8).fit(n_threads=T): T worker threads, each
               member's BLAS single-threaded
  torch bmm    PyTorch training the same 8 members as ONE batched model: weights stacked
               (K, n_in, n_out), torch.bmm per layer, each member its own shuffled minibatch
               per step (gathered), loss = sum of the members' means (so each member's
               gradient is its own), torch.optim.SGD; torch.set_num_threads(T)

member-samples/s = K * n * epochs / wall seconds.  Targets (issue 16): ensemble at 2 threads
>= 1.8x sequential, and ahead of torch bmm at 2 threads.

    python bench/ensemble_throughput.py [--quick] [--repeats 3] [--out FILE]
"""
import argparse
import os
import time

import _common as C

import fastnn
from fastnn.ensemble import MLPEnsemble

K = 8
HERE = os.path.dirname(os.path.abspath(__file__))


def sequential(w, X, y, epochs):
    for k in range(K):
        model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=w["dtype"], seed=k)
        fastnn.fit(model, X, y, "mse", fastnn.SGD(lr=w["lr"]), epochs=epochs, batch_size=64,
                   seed=k, n_threads=1)


def ensemble(w, X, y, epochs, threads):
    ens = MLPEnsemble(w["sizes"], K, activation=w["activation"], dtype=w["dtype"], seed=0)
    ens.fit(X, y, "mse", fastnn.SGD(lr=w["lr"]), epochs=epochs, batch_size=64,
            n_threads=threads)


def torch_bmm(w, X, y, epochs, threads):
    import torch
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    sizes = w["sizes"]
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = (6.0 / (n_in + n_out)) ** 0.5
        params.append((torch.rand(K, n_in, n_out, generator=g) * 2 - 1).mul_(bound)
                      .requires_grad_())
        params.append(torch.zeros(K, 1, n_out, requires_grad=True))
    opt = torch.optim.SGD(params, lr=w["lr"])
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n, batch = X.shape[0], 64
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n, generator=g) for _ in range(K)])  # (K, n)
        for start in range(0, n, batch):
            idx = order[:, start:start + batch]                                  # (K, B)
            A, target = Xt[idx], yt[idx]                                         # (K, B, .)
            for layer in range(len(sizes) - 1):
                A = torch.baddbmm(params[2 * layer + 1], A, params[2 * layer])
                if layer < len(sizes) - 2:
                    A = torch.tanh(A)
            loss = ((A - target) ** 2).mean(dim=(1, 2)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def timed_with_cpu(runs, repeats):
    """Like _common.interleaved, also recording the process's CPU seconds of each run: CPU
    seconds / wall seconds is the number of cores a run kept busy (2.0 = both, on 2 cores)."""
    for fn in runs.values():
        fn()
    wall, cpu = {name: [] for name in runs}, {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    w = C.workloads(args.quick, only=["C"])["C"]
    X, y = C.make_data(w)
    n, epochs = X.shape[0], w["epochs"]
    has_torch = C.import_peer("torch") is not None
    rows = []
    for threads in (1, 2):
        runs = {"sequential (1 thread)": lambda: sequential(w, X, y, epochs),
                f"ensemble ({threads} threads)": lambda t=threads: ensemble(w, X, y, epochs, t)}
        if has_torch:
            runs[f"torch bmm ({threads} threads)"] = lambda t=threads: torch_bmm(w, X, y,
                                                                                epochs, t)
        with C.blas_threads(threads):
            times, cpu = timed_with_cpu(runs, args.repeats)
        base = C.summary(times["sequential (1 thread)"])["median"]
        for name, ts in times.items():
            s = C.summary(ts)
            rate = K * n * epochs / s["median"]
            rows.append((threads, name, rate, base / s["median"], C.spread(s),
                         C.summary(cpu[name])["median"] / s["median"]))
    lines = ["# Deep-ensemble training throughput (bench/ensemble_throughput.py)", "",
             f"K = {K} members of workload C ({w['title']}; n = {n}, {epochs} epochs, batch "
             f"64, float32, SGD lr {w['lr']}).  Medians of {args.repeats} interleaved repeats "
             "after a warm-up; the machine is shared with other developers' builds and tests "
             "and noisy right now, so expect +-10-20% between runs.", "",
             f"Load average when the run ended: {os.getloadavg()[0]:.1f} on "
             f"{C.environment()['usable_cores']} cores.  'cores busy' is the process's CPU "
             "seconds / wall seconds: on an idle 2-core machine a 2-thread run that scales "
             "shows ~2.", "",
             "| pool threads | run | member-samples/s | vs sequential | spread | cores busy |",
             "|---|---|---|---|---|---|"]
    for threads, name, rate, ratio, sp, busy in rows:
        lines.append(f"| {threads} | {name} | {C.fmt_rate(rate)} | {ratio:.2f}x | "
                     f"+-{sp:.0f}% | {busy:.2f} |")
    lines += ["", "## Machine", "", C.environment_markdown(C.environment()), ""]
    text = "\n".join(lines)
    print(text)
    out = args.out or os.path.join(HERE, "RESULTS-ensemble-quick.md" if args.quick
                                   else "RESULTS-ensemble.md")
    with open(out, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
