"""fastnn's own worker threads (fastnn._pool): every task runs once, whatever the thread count,
with the caller's floating-point mode, after fork and from many threads at once."""
import os
import platform
import threading

import numpy as np
import pytest

from fastnn import _network, _pool, fpmode

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
