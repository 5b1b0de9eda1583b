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

member-samples/s = K * n * epochs / wall seconds.  Targets: ensemble at 2 threads
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


def serial_share(w, X, y, epochs, repeats):
    """The share of a 1-thread ensemble fit's CPU time spent outside the compiled jobs
    (_epoch.train_epochs): the per-epoch Python of every member (sample order, schedule,
    records, callbacks), which runs on one thread while the other cores wait.  Amdahl's bound
    on T threads is then 1 / (s + (1 - s) / T).  CPU seconds, so the share holds under load."""
    from fastnn._core import _epoch
    real, in_jobs = _epoch.train_epochs, [0.0]

    def timed_job(calls, n_threads):
        c0 = time.process_time()
        try:
            return real(calls, n_threads)
        finally:
            in_jobs[0] += time.process_time() - c0

    shares = []
    _epoch.train_epochs = timed_job
    try:
        for _ in range(repeats):
            in_jobs[0] = 0.0
            c0 = time.process_time()
            with C.blas_threads(1):
                ensemble(w, X, y, epochs, 1)
            shares.append(1.0 - in_jobs[0] / (time.process_time() - c0))
    finally:
        _epoch.train_epochs = real
    return C.summary(shares)["median"]


def member_threads(w, X, y, epochs, threads):
    """The ensemble's driver before lockstep epochs (kept here to measure the change): each
    member's whole fit in its own Python thread, BLAS at one thread."""
    from concurrent.futures import ThreadPoolExecutor

    def one(k):
        model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=w["dtype"], seed=k)
        fastnn.fit(model, X, y, "mse", fastnn.SGD(lr=w["lr"]), epochs=epochs, batch_size=64,
                   seed=k)

    with C.blas_threads(1), ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(K)))


def _process_worker(w, X, y, epochs, members, go, times, slot):
    """In a forked child: warm up, wait for `go`, train `members` one after another at 1
    thread, store (start, end, CPU seconds) in times[3 slot ..]."""
    model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=w["dtype"], seed=0)
    fastnn.fit(model, X[:256], y[:256], "mse", fastnn.SGD(lr=w["lr"]), epochs=1,
               batch_size=64, seed=0, n_threads=1)
    go.wait()
    c0, t0 = time.process_time(), time.perf_counter()
    for k in members:
        model = fastnn.MLP(w["sizes"], activation=w["activation"], dtype=w["dtype"], seed=k)
        fastnn.fit(model, X, y, "mse", fastnn.SGD(lr=w["lr"]), epochs=epochs, batch_size=64,
                   seed=k, n_threads=1)
    times[3 * slot: 3 * slot + 3] = [t0, time.perf_counter(), time.process_time() - c0]


def two_processes(w, X, y, epochs):
    """(wall, CPU) seconds of two independent processes, started at once, each training 4 of
    the 8 members one after another at 1 thread: what two cores give to two jobs that share
    nothing but the hardware (caches, memory bandwidth, the VM's scheduling).  Wall time runs
    from the earlier start to the later end (CLOCK_MONOTONIC is system-wide)."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    go, times = ctx.Event(), ctx.Array("d", 6)
    procs = [ctx.Process(target=_process_worker,
                         args=(w, X, y, epochs, range(i * K // 2, (i + 1) * K // 2), go, times, i))
             for i in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.5)    # both warmed up and waiting
    go.set()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a worker process exited with code {p.exitcode}")
    t = list(times)
    return max(t[1], t[4]) - min(t[0], t[3]), t[2] + t[5]


def timed_with_cpu(runs, repeats):
    """Like _common.interleaved, also recording CPU seconds of each run: CPU seconds / wall
    seconds is the number of cores a run kept busy (2.0 = both, on 2 cores).  A run may return
    its own (wall, CPU) pair (the two-process run, whose CPU time is its children's)."""
    for fn in runs.values():
        fn()
    wall, cpu = {name: [] for name in runs}, {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            own = fn()
            w1, c1 = time.perf_counter() - w0, time.process_time() - c0
            if own is not None:
                w1, c1 = own
            wall[name].append(w1)
            cpu[name].append(c1)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    parser.add_argument("--no-before", action="store_true",
                        help="leave out the per-member-thread driver (the pre-lockstep one)")
    parser.add_argument("--no-torch", action="store_true", help="leave out PyTorch")
    parser.add_argument("--two-threads-only", action="store_true",
                        help="leave out the 1-thread rows but (a) (a short run for a quiet "
                             "moment of a shared machine)")
    args = parser.parse_args()
    w = C.workloads(args.quick, only=["C"])["C"]
    X, y = C.make_data(w)
    n, epochs = X.shape[0], w["epochs"]
    has_torch = not args.no_torch and C.import_peer("torch") is not None
    load_before = os.getloadavg()

    def pinned(n_threads, fn):
        def run():
            with C.blas_threads(n_threads):
                return fn()
        return run

    seq = "(a) sequential: 8 fits one after another, 1 thread"
    runs = {seq: pinned(1, lambda: sequential(w, X, y, epochs)),
            "(b) two processes at once, 4 fits each, 1 thread each":
                lambda: two_processes(w, X, y, epochs)}
    for threads in (1, 2):
        if threads == 1 and args.two_threads_only:
            continue
        if not args.no_before:
            runs[f"ensemble, member per Python thread (before), {threads} threads"] = \
                pinned(threads, lambda t=threads: member_threads(w, X, y, epochs, t))
        runs[f"ensemble, lockstep epochs on the pool, {threads} threads"] = \
            pinned(threads, lambda t=threads: ensemble(w, X, y, epochs, t))
        if has_torch:
            runs[f"torch bmm, {threads} threads"] = \
                pinned(threads, lambda t=threads: torch_bmm(w, X, y, epochs, t))
    wall, cpu = timed_with_cpu(runs, args.repeats)
    base_wall = C.summary(wall[seq])["median"]
    base_cpu_rate = K * n * epochs / C.summary(cpu[seq])["median"]
    rows = []
    for name in runs:
        s, c = C.summary(wall[name]), C.summary(cpu[name])["median"]
        rate = K * n * epochs / s["median"]
        rows.append((name, rate, base_wall / s["median"], C.spread(s), c / s["median"],
                     K * n * epochs / c / base_cpu_rate))
    share = serial_share(w, X, y, epochs, args.repeats)
    load_after = os.getloadavg()
    lines = ["# Deep-ensemble training throughput (bench/ensemble_throughput.py)", "",
             f"K = {K} members of workload C ({w['title']}; n = {n}, {epochs} epochs, batch "
             f"64, float32, SGD lr {w['lr']}).  Medians of {args.repeats} interleaved repeats "
             "after a warm-up, all rows in one run.", "",
             f"Load average (1, 5, 15 min) at the start: "
             f"{', '.join(f'{v:.1f}' for v in load_before)}; at the end: "
             f"{', '.join(f'{v:.1f}' for v in load_after)}, on "
             f"{C.environment()['usable_cores']} cores (shared with other developers).", "",
             "- 'vs (a)' is the wall-time throughput ratio to the sequential run (a).",
             "- 'cores busy' is CPU seconds / wall seconds (2.0 = both cores the whole time).",
             "- 'per CPU-s vs (a)' is member-samples per CPU-second relative to (a): below 1 "
             "means each core did less per second than in the sequential run (shared caches, "
             "memory bandwidth, the VM, or overhead).",
             "- Row (b) is the hardware bound: two processes that share nothing but the "
             "machine.  No threading of one process can beat it by more than noise.", "",
             "| run | member-samples/s | vs (a) | spread | cores busy | per CPU-s vs (a) |",
             "|---|---|---|---|---|---|"]
    for name, rate, ratio, sp, busy, per_cpu in rows:
        lines.append(f"| {name} | {C.fmt_rate(rate)} | {ratio:.2f}x | +-{sp:.0f}% | "
                     f"{busy:.2f} | {per_cpu:.2f} |")
    lines += ["", f"Serial share of the lockstep ensemble at 1 thread (CPU time outside the "
              f"compiled jobs: each member's per-epoch Python, run while the other threads "
              f"wait): {100 * share:.1f}%, so Amdahl's bound at 2 threads is "
              f"{1 / (share + (1 - share) / 2):.2f}x.", ""]
    lines += ["", "## Machine", "", C.environment_markdown(C.environment()), ""]
    text = "\n".join(lines)
    print(text)
    out = args.out or os.path.join(HERE, "RESULTS-ensemble-quick.md" if args.quick
                                   else "RESULTS-ensemble.md")
    with open(out, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
