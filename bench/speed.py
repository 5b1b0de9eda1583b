"""Every row of the speed issue's table in one command: training against the compiled peers
and the FLOP peak (bench/peers.py) at 1 and at 2 threads, then one-row and 1,000-row
prediction against onnxruntime and PyTorch (bench/latency.py).

Each peers run is its own process (it pins its CPU affinity before JAX and PyTorch start
their pools); the latency run is this process, at 1 thread.  The markdown of each part is
printed as it ends, under a heading; nothing is written to bench/RESULTS.md (paste the table
under a dated heading after a run on a quiet machine).

    python bench/speed.py [--quick] [--repeats 5] [--threads 1,2] [--cpu-time]

--cpu-time times prediction on the calling thread's CPU time (bench/latency.py) for a
machine shared with other jobs; the training rows always use the wall clock.
"""
import argparse
import os
import subprocess
import sys

import _common as C

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--cpu-time", action="store_true")
    args = ap.parse_args(argv)
    status = 0
    for n in [int(t) for t in args.threads.split(",") if t]:
        print(f"## Training against the compiled peers, {n} thread{'s' * (n > 1)} "
              "(bench/peers.py)\n", flush=True)
        cmd = [sys.executable, os.path.join(HERE, "peers.py"), "--threads", str(n),
               "--repeats", str(args.repeats)] + (["--quick"] if args.quick else [])
        status |= subprocess.call(cmd)
        print(flush=True)
    import latency
    print("## Prediction latency, 1 thread (bench/latency.py)\n", flush=True)
    out = latency.run(args.quick, max(3, args.repeats), "thread" if args.cpu_time else "wall")
    print(latency.markdown(out))
    print()
    for target, measured, verdict, note in latency.targets(out):
        print(f"- {target}: {measured} ({verdict}; {note})")
    return status


if __name__ == "__main__":
    sys.exit(main())
