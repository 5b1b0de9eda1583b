"""Question 6: prediction latency, fastnn's predict against onnxruntime and PyTorch, one thread.

For the trained-size networks of workloads A, B and C (float32, random weights: latency does
not depend on their values), the time of ONE call that takes a NumPy array and returns a
NumPy array, for a single row and for 1,000 rows, interleaved in one process:
  fastnn        model.predict(X)
  onnxruntime   session.run(None, {"X": X}) on model.save_onnx(...) (CPU provider, 1 intra-op
                and 1 inter-op thread, sequential execution, all graph optimizations)
  torch         with torch.inference_mode(): model.to_torch()(torch.from_numpy(X)).numpy()
Each figure is the median over repeats of (wall time of `calls` consecutive calls) / calls,
after a warm-up; min-max across repeats in brackets.  Every peer computes the same outputs
(checked before timing).  --cpu-time times the calling thread's CPU time instead of the wall
clock: steadier on a machine shared with other jobs (every peer here computes on the calling
thread at 1 thread), but not the figure a quiet machine's table quotes.

    python bench/latency.py [--quick] [--repeats 7] [--cpu-time]
"""
import argparse
import os
import sys
import tempfile

import numpy as np

import _common as C

import fastnn

ROWS = (1, 1000)
PEERS = ("fastnn", "onnxruntime", "torch")


def _models():
    out = {}
    for name, w in C.workloads(only=["A", "B", "C"]).items():
        link = "softmax" if w["loss"] == "cross_entropy" else "identity"
        out[name] = (w, fastnn.MLP(w["sizes"], activation=w["activation"], output=link,
                                   dtype=np.float32, seed=0))
    return out


def _ort_session(ort, model, tmp):
    path = os.path.join(tmp, "model.onnx")
    model.save_onnx(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _calls(rows, quick):
    return (200 if quick else 2000) if rows == 1 else (20 if quick else 100)


def run(quick=False, repeats=7, clock="wall"):
    ort = C.import_peer("onnxruntime")
    torch = C.import_peer("torch")
    results = []
    with tempfile.TemporaryDirectory() as tmp, C.blas_threads(1):
        for name, (w, model) in _models().items():
            runs_for = {}
            sess = _ort_session(ort, model, tmp) if ort else None
            seq = model.to_torch().eval() if torch else None
            for rows in ROWS:
                X = np.random.default_rng(rows).random((rows, w["sizes"][0]), np.float32)
                fns = {"fastnn": lambda X=X: model.predict(X)}
                if sess is not None:
                    fns["onnxruntime"] = lambda X=X: sess.run(None, {"X": X})[0]
                if seq is not None:
                    def torch_predict(X=X):
                        with torch.inference_mode():
                            return seq(torch.from_numpy(X)).numpy()
                    fns["torch"] = torch_predict
                ref = model.predict(X)
                for peer, fn in fns.items():   # same outputs before any timing
                    np.testing.assert_allclose(fn(), ref, rtol=1e-5,
                                               atol=1e-5 * float(np.abs(ref).max()))
                n_calls = _calls(rows, quick)

                def loop(fn, n_calls=n_calls):
                    return lambda: [fn() for _ in range(n_calls)]

                times = C.interleaved({p: loop(fn) for p, fn in fns.items()},
                                      repeats=max(3, repeats), clock=clock)
                runs_for[rows] = {p: C.summary([t / n_calls for t in ts])
                                  for p, ts in times.items()}
                results.append({"workload": name, "title": w["title"], "sizes": w["sizes"],
                                "rows": rows, "calls": n_calls, "times": runs_for[rows]})
                print(f"{name} rows={rows}: " + ", ".join(
                    f"{p} {_us(s['median'])}" for p, s in runs_for[rows].items()),
                    file=sys.stderr)
    return {"results": results, "clock": clock,
            "missing": [p for p, m in (("onnxruntime", ort), ("torch", torch)) if m is None],
            "versions": {"onnxruntime": getattr(ort, "__version__", "MISSING"),
                         "torch": getattr(torch, "__version__", "MISSING")}}


def _us(seconds):
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def markdown(out):
    lines = ["| network | rows | fastnn predict | onnxruntime run | torch inference_mode | "
             "onnxruntime / fastnn | torch / fastnn |",
             "|---|---|---|---|---|---|---|"]
    for r in out["results"]:
        t = r["times"]
        cells = []
        for p in PEERS:
            s = t.get(p)
            cells.append("missing" if s is None else
                         f"{_us(s['median'])} ({_us(s['min'])}-{_us(s['max'])})")
        ratios = [f"{t[p]['median'] / t['fastnn']['median']:.2f}x" if p in t else "n/a"
                  for p in ("onnxruntime", "torch")]
        net = "-".join(str(n) for n in r["sizes"])
        lines.append(f"| {r['workload']}: {net} | {r['rows']} | " + " | ".join(cells) + " | "
                     + " | ".join(ratios) + " |")
    lines.append("")
    clock = "thread CPU time" if out.get("clock") == "thread" else "wall time"
    lines.append(f"float32, 1 thread for every library; per call ({clock}), median over repeats of "
                 f"(time of {_calls(1, False)} single-row or {_calls(1000, False)} 1,000-row "
                 f"calls) / calls, min-max in brackets.  Ratios above 1 mean fastnn is faster. "
                 f"onnxruntime {out['versions']['onnxruntime']}, torch "
                 f"{out['versions']['torch']}.")
    if out["missing"]:
        lines.append(f"Not installed, so not measured: {', '.join(out['missing'])}.")
    return "\n".join(lines)


def targets(out):
    """Rows (target, measured, verdict, note) for run.py's table: the latency targets (one
    row in at most half onnxruntime's time on B and C, at most its time on A; 1,000 rows no
    slower than onnxruntime)."""
    rows = []
    for r in out["results"]:
        t = r["times"]
        if "onnxruntime" not in t:
            continue
        ratio = t["onnxruntime"]["median"] / t["fastnn"]["median"]
        need = 2.0 if r["rows"] == 1 and r["workload"] in ("B", "C") else 1.0
        what = "one row" if r["rows"] == 1 else f"{r['rows']} rows"
        rows.append((f"{r['workload']} {what}: fastnn predict at least {need:g}x as fast as "
                     "onnxruntime's run", f"{ratio:.2f}x",
                     "met" if ratio >= need else "**missed**",
                     f"{_us(t['fastnn']['median'])} vs {_us(t['onnxruntime']['median'])}"))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the calling thread's CPU time (a shared machine)")
    args = ap.parse_args(argv)
    out = run(args.quick, args.repeats, "thread" if args.cpu_time else "wall")
    print(markdown(out))


if __name__ == "__main__":
    sys.exit(main())
