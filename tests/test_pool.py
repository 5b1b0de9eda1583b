"""fastnn's own worker threads (fastnn._core._pool): every task runs once, whatever the thread count,
with the caller's floating-point mode, after fork and from many threads at once."""
import os
import platform
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastnn
from fastnn._core import _network, _pool
from fastnn.runtime import fpmode

FLUSH_BITS = 0x8040      # x86-64 MXCSR: FTZ | DAZ


def serial(n_tasks):
    return np.array([sum(i % (t + 3) for i in range(1000 * (t % 7 + 1)))
                     for t in range(n_tasks)], dtype=np.int64)


@pytest.mark.parametrize("n_threads", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("n_tasks", [0, 1, 2, 5, 64])
def test_every_task_runs_once_whatever_the_thread_count(n_threads, n_tasks):
    values, _, used = _pool._probe(n_tasks, n_threads)
    np.testing.assert_array_equal(values, serial(n_tasks))
    assert used == (0 if n_tasks == 0 else min(n_threads, n_tasks))


@pytest.mark.skipif(not fpmode.supported() or not platform.machine().lower() in
                    ("x86_64", "amd64"), reason="checks x86-64's MXCSR bits")
@pytest.mark.parametrize("flush", [True, False])
def test_workers_run_with_the_callers_floating_point_mode(flush):
    before = _network._get_fpmode()
    _, modes, used = _pool._probe(64, 4, flush=flush)
    assert used == 4
    expected = (before | FLUSH_BITS) if flush else before
    assert set(int(m) for m in modes) == {expected}
    assert _network._get_fpmode() == before


def test_callers_in_many_threads_at_once_each_get_all_their_tasks():
    errors = []

    def work():
        for n in (7, 33, 64):
            values, _, _ = _pool._probe(n, 3)
            if not np.array_equal(values, serial(n)):
                errors.append(n)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_its_own_workers():
    _pool._probe(16, 3)                       # the parent's workers exist
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                              # the child: the parent's workers are gone
        try:
            values, _, used = _pool._probe(40, 3)
            ok = np.array_equal(values, serial(40)) and used == 3
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1" and status == 0


def _run_child(code, timeout):
    """Run `code` in a fresh interpreter importing this fastnn; its stdout, or a failure
    naming what it printed (a hang is killed after `timeout` s and fails)."""
    # (run from fastnn's own parent directory: `python -c` puts the working directory first
    # on sys.path, and from a source checkout that is the uncompiled tree, not the fastnn
    # that `pip install .` put in site-packages)
    home = os.path.dirname(os.path.dirname(fastnn.__file__))
    env = dict(os.environ, PYTHONPATH=home)
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=home,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child hung for {timeout} s (a lost wake-up?); it printed "
                    f"{exc.stdout!r} {exc.stderr!r}")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_jobs_that_come_as_the_workers_fall_asleep_never_hang():
    """Idle workers poll for about 2 ms, then sleep on a condition variable: jobs spaced
    around that boundary, with a helper count that changes every job (workers that sat out
    jobs, oversubscribed counts up to past the pool's maximum), from 4 callers at once, each
    run every task once and return (a worker asleep while its ticket changed would hang)."""
    out = _run_child("""
        import threading, time
        import numpy as np
        from fastnn._core import _pool
        def serial(n):
            return np.array([sum(i % (t + 3) for i in range(1000 * (t % 7 + 1)))
                             for t in range(n)], dtype=np.int64)
        sizes = (2, 3, 17, 64, 300)
        want = {n: serial(n) for n in sizes}
        bad = []
        def work(seed):
            rng = np.random.default_rng(seed)
            for _ in range(150):
                n = int(rng.choice(sizes))
                k = int(rng.choice([2, 3, 8, 64, 256, 1000]))
                values, _, used = _pool._probe(n, k)
                if not np.array_equal(values, want[n]):
                    bad.append((n, k))
                pause = rng.choice([0.0, 1.9e-3, 2.0e-3, 2.1e-3, 3e-3])
                if pause:
                    time.sleep(pause)
        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("bad", bad, "workers", _pool.pool_size())
        """, timeout=180)
    assert "bad [] workers" in out, out
    assert int(out.split()[-1]) == _pool.MAX_THREADS - 1      # the counts were capped


def test_idle_workers_stop_using_the_cpu_after_a_job():
    """The workers poll only briefly after a job (about 2 ms), then sleep: a process that
    has trained and then waits uses no CPU (measured over 0.5 s of sleep, in a child so that
    no other test's threads are counted)."""
    out = _run_child("""
        import time
        import numpy as np
        import fastnn
        from fastnn._core import _pool
        rng = np.random.default_rng(0)
        X = rng.standard_normal((512, 256)).astype(np.float32)
        y = rng.integers(0, 10, 512)
        model = fastnn.MLP([256, 512, 512, 10], seed=0)
        model.fit(X, y, "cross_entropy", epochs=1, batch_size=256, seed=0, n_threads=8)
        _pool._probe(64, 8)
        assert _pool.pool_size() >= 3, _pool.pool_size()
        time.sleep(0.1)
        cpu = time.process_time()
        time.sleep(0.5)
        print(time.process_time() - cpu)
        """, timeout=120)
    assert float(out) < 0.05, f"{out} s of CPU while idle for 0.5 s"


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts the threads' "
                    "context switches in Linux's /proc")
def test_a_job_wakes_only_the_workers_it_hands_tasks_to():
    """After a job on 64 threads (as a prediction on every core of a large machine), the 62
    workers that a 2-thread job leaves out stay asleep: jobs spaced so that worker 0 falls
    asleep between them switch ~2 contexts each.  With one condition variable broadcast to
    every sleeping worker, each job woke all 62 (~130 switches per job, 4 -> 18 us per
    back-to-back job with 255 idle workers)."""
    out = _run_child("""
        import os, time
        from fastnn._core import _pool
        _pool._probe(300, 64)
        time.sleep(0.1)                     # every worker asleep
        def switches():
            total = 0
            for tid in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{tid}/status") as f:
                        total += sum(int(line.split()[1]) for line in f
                                     if line.startswith(("voluntary_ctxt_switches",
                                                         "nonvoluntary_ctxt_switches")))
                except FileNotFoundError:
                    pass
            return total
        before = switches()
        for _ in range(200):
            _pool._probe(2, 2)
            time.sleep(0.003)               # worker 0 falls asleep again
        print(_pool.pool_size(), (switches() - before) / 200)
        """, timeout=120)
    workers, per_job = out.split()
    assert int(workers) == 63
    assert float(per_job) < 10, f"{per_job} context switches per 2-thread job"
