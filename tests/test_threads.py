"""fastnn.runtime.threads: the BLAS thread count of fastnn's products, and deterministic results."""
import os
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn.runtime import threads
from fastnn.datasets import make_spirals
from fastnn.nn.losses import CrossEntropy
from fastnn.nn.model import MLP
from fastnn.optim.optimizers import Adam
from fastnn.runtime.threads import blas_threads, get_num_threads, set_num_threads
from fastnn.training.trainer import fit
from tests._helpers import check_error, classification_data


def test_set_and_get_num_threads_round_trip():
    before = threads.get_num_threads()
    assert before is not None and before >= 1  # scipy's wheels ship OpenBLAS
    try:
        assert threads.set_num_threads(1) == before
        assert threads.get_num_threads() == 1
        with threads.blas_threads(2):
            assert threads.get_num_threads() == 2
        assert threads.get_num_threads() == 1
    finally:
        threads.set_num_threads(before)
    with pytest.raises(ValueError, match="n_threads=0; expected n_threads >= 1"):
        threads.set_num_threads(0)


def test_fit_with_n_threads_restores_the_setting_and_is_deterministic():
    X, y = make_spirals(400, seed=0)
    before = threads.get_num_threads()
    results = {}
    for n in (1, 2, 1, 2):
        model = fastnn.MLP([2, 256, 256, 3], seed=0)
        fastnn.fit(model, X, y, "cross_entropy", fastnn.Adam(lr=0.01), epochs=2,
                   batch_size=128, seed=0, n_threads=n)
        assert threads.get_num_threads() == before
        if n in results:  # the same thread count gives the same bits
            np.testing.assert_array_equal(model.params, results[n])
        results[n] = model.params.copy()
    with pytest.raises(ValueError, match="n_threads=0; expected n_threads >= 1"):
        fastnn.fit(fastnn.MLP([2, 3]), X, y, "cross_entropy", n_threads=0)


def _child_after_fork(queue, inside):
    # runs in a forked child: the parent's other threads (and their blocks) do not exist here
    from fastnn.runtime.threads import blas_threads, get_num_threads, set_num_threads
    try:
        if inside is not None:
            inside.__exit__(None, None, None)     # the forking thread's own block ends here
        restored = get_num_threads()
        with blas_threads(2):
            two = get_num_threads()
        set_num_threads(restored)
        queue.put(("ok", restored, two))
    except BaseException as exc:                  # noqa: BLE001 (reported to the parent)
        queue.put(("error", repr(exc)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
@pytest.mark.parametrize("forker_inside", [False, True])
def test_a_forked_child_is_not_held_by_the_parents_other_threads_blocks(forker_inside):
    # a fit in another thread holds a blas_threads(1) block while this thread forks (as a
    # multiprocessing pool started beside a running fit does): the child has none of that
    # thread, so the block must not own the child's BLAS count (a block of another count
    # waited for ever, set_num_threads raised)
    if get_num_threads() is None:
        pytest.skip("scipy's BLAS is not an OpenBLAS fastnn controls")
    import multiprocessing
    before = set_num_threads(3)
    entered, release = threading.Event(), threading.Event()

    def hold():
        with blas_threads(1):
            entered.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    inside = None
    try:
        assert entered.wait(30)
        if forker_inside:
            inside = blas_threads(1)
            inside.__enter__()
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_after_fork, args=(queue, inside))
        child.start()
        try:
            result = queue.get(timeout=30)
        finally:
            child.join(10)
            if child.exitcode is None:
                child.kill()
        # the count the first block found (3), restored in the child once no block is open
        assert result == ("ok", 3, 2)
    finally:
        if inside is not None:
            inside.__exit__(None, None, None)
        release.set()
        holder.join(30)
    assert set_num_threads(before) == 3


@pytest.mark.parametrize("variable", ["MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"])
def test_mpi_ranks_on_one_node_share_its_cores_by_default(monkeypatch, variable):
    for name in threads._LOCAL_RANKS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)
    monkeypatch.setattr(threads, "_quota_cache", (None, 0.0, None))
    affinity = set(range(8))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: affinity,
                        raising=False)
    assert threads.default_threads() == 8 == threads.resolve_threads(None)
    monkeypatch.setenv(variable, "3")             # 3 unbound ranks on 8 cores
    assert threads.default_threads() == 2 == threads.resolve_threads(None)
    affinity = {0, 1, 2, 3}                       # bound by the launcher
    assert threads.default_threads() == 4
    # unbound ranks share a container's CPU quota: 3 ranks under 6 CPUs take 2 each (they
    # took 6 each: the quota made every rank look bound)
    affinity = set(range(8))
    monkeypatch.setattr(threads, "cpu_quota", lambda: 6)
    monkeypatch.setattr(threads, "_quota_cache", (None, 0.0, None))
    assert threads.default_threads() == 2
    affinity = {0, 1, 2, 3}                       # bound, within the quota: its cores
    assert threads.default_threads() == 4
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)
    monkeypatch.setattr(threads, "_quota_cache", (None, 0.0, None))
    affinity = set(range(8))
    monkeypatch.setenv(variable, "16")            # more ranks than cores: one thread each
    assert threads.default_threads() == 1
    monkeypatch.setenv(variable, "garbage")
    assert threads.default_threads() == 8
    assert threads.resolve_threads(5) == 5        # an explicit count always wins


@pytest.mark.parametrize("version", ["v2", "v1"])
@pytest.mark.parametrize("limit, expected", [
    (("150000", "100000"), 2),        # 1.5 CPUs: 2 threads
    (("50000", "100000"), 1),         # half a CPU: 1
    (("800000", "100000"), 4),        # more than the cores: the cores
    (("max", "100000"), 4),           # v2's "no limit"
    (("-1", "100000"), 4),            # v1's "no limit"
    (("garbage", "100000"), 4),       # unreadable: ignored
    (None, 4),                        # no such files
])
def test_the_default_thread_count_keeps_within_the_cpu_quota(tmp_path, monkeypatch, version,
                                                             limit, expected):
    # a container limited to 1.5 CPUs sees all the host's cores; its threads' polls would
    # spend the quota (README: idle workers poll about 2 ms)
    v2, quota, period = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    monkeypatch.setattr(threads, "_CGROUP_V2_MAX", str(v2))
    monkeypatch.setattr(threads, "_CGROUP_V1_QUOTA", str(quota))
    monkeypatch.setattr(threads, "_CGROUP_V1_PERIOD", str(period))
    if limit is not None:
        if version == "v2":
            v2.write_text(" ".join(limit) + "\n")
        else:
            quota.write_text(limit[0] + "\n")
            period.write_text(limit[1] + "\n")
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3},
                        raising=False)
    for name in threads._LOCAL_RANKS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert threads.available_cores() == expected == threads.default_threads()


def _cgroup_files(tmp_path, monkeypatch):
    v2, quota, period = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    monkeypatch.setattr(threads, "_CGROUP_V2_MAX", str(v2))
    monkeypatch.setattr(threads, "_CGROUP_V1_QUOTA", str(quota))
    monkeypatch.setattr(threads, "_CGROUP_V1_PERIOD", str(period))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3},
                        raising=False)
    for name in threads._LOCAL_RANKS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return v2, quota, period


def _write(path, content):
    if content is None:
        return
    if content == "<dir>":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


BAD = "malformed"       # not a limit: v1 decides


@pytest.mark.parametrize("v2_text, expected_v2", [
    ("", BAD), ("150000", BAD), ("max", BAD), ("150000 100000 7\n", BAD),
    ("150000\n100000\n", 2), ("  200000\t100000  ", 2), ("max 100000\n", None),
    ("0 100000", None), ("150000 0", None), ("-5 100000", None), ("150000 -100000", None),
    ("1.5 1", BAD), ("1e5 1e5", BAD), ("\u0661\u0665 \u0661", BAD),   # Arabic-Indic digits
    (b"\xff\xfe 1", BAD), ("\x00 1", BAD), ("9" * 40 + " 1", 10**40 - 1),
    ("1 " + "9" * 40, 1), ("9" * 5000 + " 1", BAD), ("<dir>", BAD),
    ("150000 100000" + " " * 1000, BAD),
])
@pytest.mark.parametrize("v1", [None, ("300000", "100000")])
def test_any_cgroup_file_gives_a_sensible_count_and_never_raises(tmp_path, monkeypatch,
                                                                  v2_text, expected_v2, v1):
    # crafted cgroup files: the count stays in 1 .. the cores; a v2 file that is not a limit
    # (malformed, a directory, not ASCII, too long) does not hide a valid v1 limit
    v2, quota, period = _cgroup_files(tmp_path, monkeypatch)
    _write(v2, v2_text)
    if v1 is not None:
        quota.write_text(v1[0] + "\n")
        period.write_text(v1[1] + "\n")
    expected = expected_v2 if expected_v2 != BAD else (3 if v1 else None)
    assert threads.cpu_quota() == expected
    cores = threads.available_cores()
    assert cores == (4 if expected is None else min(4, expected)) == threads.default_threads()


@pytest.mark.parametrize("quota_text, period_text", [
    ("", ""), ("-1", "100000"), ("150000 1", "100000"), ("<dir>", "100000"),
    ("150000", "<dir>"), ("150000", None), (None, "100000"), (b"\xc3\xa9", "100000"),
    ("\u0661", "1"), ("0", "100000"), ("150000", "0"), ("15e4", "1e5"),
])
def test_a_malformed_v1_limit_is_no_limit(tmp_path, monkeypatch, quota_text, period_text):
    _, quota, period = _cgroup_files(tmp_path, monkeypatch)
    _write(quota, quota_text)
    _write(period, period_text)
    assert threads.cpu_quota() is None
    assert threads.available_cores() == 4 == threads.default_threads()


def test_unreadable_cgroup_files_are_no_limit(tmp_path, monkeypatch):
    v2, quota, period = _cgroup_files(tmp_path, monkeypatch)
    v2.write_text("100000 100000\n")
    real_open = open

    def refusing_open(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", refusing_open)
    assert threads.cpu_quota() is None
    assert threads.available_cores() == 4


def test_the_quota_is_not_read_on_every_call(tmp_path, monkeypatch):
    # reading the files cost ~25 us on each call without n_threads: a one-row predict took
    # 39 us instead of 11.  It is re-read after _QUOTA_MAX_AGE seconds (docker update --cpus)
    v2, _, _ = _cgroup_files(tmp_path, monkeypatch)
    v2.write_text("100000 100000\n")
    reads = []
    real = threads.cpu_quota
    monkeypatch.setattr(threads, "cpu_quota", lambda: reads.append(1) or real())
    assert threads.default_threads() == 1
    v2.write_text("300000 100000\n")
    for _ in range(100):
        assert threads.default_threads() == 1
    assert len(reads) == 1
    monkeypatch.setattr(threads, "_QUOTA_MAX_AGE", 0.0)
    assert threads.default_threads() == 3 and len(reads) == 2


def test_a_fit_and_predict_run_under_broken_cgroup_files(tmp_path, monkeypatch):
    import fastnn
    v2, quota, period = _cgroup_files(tmp_path, monkeypatch)
    v2.write_text("garbage")
    quota.write_text("\u0661")
    period.mkdir()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = fastnn.MLP([5, 8, 3])
    model.fit(X, y, "cross_entropy", epochs=2, batch_size=16)
    assert np.isfinite(model.predict_proba(X)).all()


# ======================================================================================
# Threads and the GIL
# ======================================================================================

def _train(seed, results, key, times=None):
    X, y = fastnn.datasets.make_spirals(3000, seed=seed)
    model = MLP([2, 64, 64, 3], seed=seed)
    start = time.perf_counter()
    fit(model, X, y, "cross_entropy", Adam(lr=0.01), epochs=4, batch_size=16, seed=seed)
    if times is not None:
        times[key] = (start, time.perf_counter())
    results[key] = model.params.copy()


def test_two_models_trained_at_once_equal_the_same_trained_one_after_another():
    sequential, concurrent, times = {}, {}, {}
    for seed in (1, 2):
        _train(seed, sequential, seed)
    threads = [threading.Thread(target=_train, args=(seed, concurrent, seed, times))
               for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # they did run at the same time: each started before the other finished
    assert times[1][0] < times[2][1] and times[2][0] < times[1][1]
    for seed in (1, 2):
        np.testing.assert_array_equal(concurrent[seed], sequential[seed])


def test_concurrent_predict_calls_on_one_model_are_safe():
    # predict allocates its workspace per call: threads share only the read-only parameters
    model = MLP([16, 128, 128, 10], seed=0)
    # 1500 rows: two chunks of PREDICT_CHUNK_ROWS, so each call reuses its workspace
    inputs = [np.random.default_rng(i).standard_normal((1500, 16)) for i in range(8)]
    expected = [model.predict(X) for X in inputs]
    failures = []

    def worker(k):
        for _ in range(3):
            for i in range(k, k + 8):
                if not np.array_equal(model.predict(inputs[i % 8]), expected[i % 8]):
                    failures.append(i)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_kernels_and_predict_release_the_gil():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 512)).astype(np.float32)
    W = rng.standard_normal((512, 512)).astype(np.float32)
    b = np.zeros(512, np.float32)
    Z = rng.standard_normal((200000, 40))
    labels = rng.integers(0, 40, 200000)
    model = MLP([512, 512, 512, 10], seed=0)
    calls = [lambda: fastnn.dense_forward(X, W, b, "tanh"),
             lambda: fastnn.dense_backward(X, W, X, X, "tanh"),
             lambda: CrossEntropy().loss_and_grad(Z, labels),
             lambda: model.predict(X)]
    for call in calls:
        done = threading.Event()
        ticks = 0

        def work():
            for _ in range(3):
                call()
            done.set()

        worker = threading.Thread(target=work)
        start = time.perf_counter()
        worker.start()
        while not done.is_set():  # needs the GIL: ticks only while the worker releases it
            ticks += 1
            time.sleep(0.001)
        worker.join()
        # three calls of tens of ms each; a held GIL would leave a tick or two per call
        # three calls of 20-100 ms each (measured); a held GIL would leave a tick or two per
        # call, a released one about one per millisecond
        assert ticks > 10, (call, ticks, time.perf_counter() - start)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_results_are_deterministic_for_a_given_blas_thread_count(n_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    # batches of 256 rows through 256-wide layers: large enough for OpenBLAS to use threads
    X, y = fastnn.datasets.make_spirals(512, seed=0)
    X = np.hstack([X, np.random.default_rng(0).standard_normal((512, 62))])
    runs = []
    with threadpoolctl.threadpool_limits(limits=n_threads, user_api="blas"):
        for _ in range(2):
            model = MLP([64, 256, 256, 3], seed=0)
            fit(model, X, y, "cross_entropy", Adam(lr=1e-3), epochs=1, batch_size=256, seed=0)
            runs.append((model.params.copy(), model.predict(X)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_blas_thread_counts_are_validated_not_wrapped():
    from fastnn.runtime import threads
    check_error(lambda: threads.set_num_threads(2**40), ValueError,
                "n_threads=1099511627776", "<= 2147483647")
    check_error(lambda: threads.set_num_threads(0), ValueError, "n_threads=0", ">= 1")
    X, y = classification_data()
    check_error(lambda: fit(MLP([3, 3]), X, y, "cross_entropy", n_threads=2**40), ValueError,
                "n_threads=1099511627776")
    check_error(lambda: fit(MLP([3, 3]), X, y, "cross_entropy", n_threads=1.5), TypeError,
                "n_threads must be an integer")
