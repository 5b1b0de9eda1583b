"""fastnn's default thread count follows the limits the ecosystem sets, as scikit-learn's
compiled code does (sklearn/utils/_openmp_helpers.pyx, _openmp_effective_n_threads):
FASTNN_NUM_THREADS, OMP_NUM_THREADS (which joblib's loky workers set to their share of the
cores) and threadpoolctl's threadpool_limits (fastnn's pool is a threadpoolctl library)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn._core import _pool
from fastnn.runtime import threads

FASTNN_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
CORES = threads.available_cores()

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture
def clean_env(monkeypatch):
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert _pool.thread_limit() == 0
    yield monkeypatch
    assert _pool.thread_limit() == 0      # no test leaves a limit behind


@pytest.mark.parametrize("env, expected", [
    ({}, CORES),
    ({"OMP_NUM_THREADS": "1"}, 1),
    ({"OMP_NUM_THREADS": "3"}, 3),          # an explicit request may exceed the cores
    ({"OMP_NUM_THREADS": "4,2"}, 4),        # OpenMP's per-level list: the outer level
    ({"OMP_NUM_THREADS": ""}, CORES),       # empty: unset
    ({"OMP_NUM_THREADS": "many"}, CORES),   # OpenMP's variable, OpenMP's rule: ignored
    ({"OMP_NUM_THREADS": "0"}, CORES),
    ({"FASTNN_NUM_THREADS": "1"}, 1),
    ({"FASTNN_NUM_THREADS": " 5 "}, 5),
    ({"FASTNN_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}, 2),   # fastnn's own wins
], ids=lambda v: str(v))
def test_the_environment_sets_the_default(clean_env, env, expected):
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert threads.default_threads() == expected
    assert threads.resolve_threads(None) == expected
    assert threads.resolve_threads(2) == 2          # an explicit count is the caller's


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_fastnn_num_threads_is_an_error_naming_it(clean_env, value):
    clean_env.setenv("FASTNN_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"FASTNN_NUM_THREADS is {value!r}; expected an "
                                         "integer from 1"):
        threads.default_threads()
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match="FASTNN_NUM_THREADS"):
        fastnn.MLP([2, 2], seed=0).fit(X, [0, 1, 0], "cross_entropy", epochs=1)


def test_threadpool_limits_limits_the_default(clean_env):
    info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "fastnn"]
    assert len(info) == 1 and info[0]["num_threads"] == CORES
    assert os.path.samefile(info[0]["filepath"], _pool.__file__)
    with threadpoolctl.threadpool_limits(1):
        assert threads.default_threads() == 1 and threads.resolve_threads(None) == 1
        assert threads.resolve_threads(3) == 3      # an explicit count is not limited
        with threadpoolctl.threadpool_limits(2, user_api="fastnn"):   # nested
            assert threads.default_threads() == min(2, CORES)
        assert threads.default_threads() == 1
    assert threads.default_threads() == CORES and _pool.thread_limit() == 0
    with threadpoolctl.threadpool_limits(1, user_api="blas"):   # another library's limit
        assert threads.default_threads() == CORES
    with threadpoolctl.threadpool_limits({"fastnn": 1}):
        assert threads.default_threads() == 1
    with threadpoolctl.threadpool_limits(CORES + 3):            # capped at the cores ...
        assert threads.default_threads() == CORES
    clean_env.setenv("OMP_NUM_THREADS", "1")
    with threadpoolctl.threadpool_limits(3):                    # ... unless the env asks
        assert threads.default_threads() == 3                   # (omp_set_num_threads)
    assert threads.default_threads() == 1


def test_the_limit_is_released_when_the_block_raises(clean_env):
    with pytest.raises(KeyError):
        with threadpoolctl.threadpool_limits(1):
            raise KeyError
    assert threads.default_threads() == CORES


def test_fits_in_a_limited_block_are_the_same_bits(clean_env):
    X = np.random.default_rng(0).standard_normal((300, 6))
    y = (X[:, 0] > 0).astype(int)
    def run():
        model = fastnn.MLP([6, 32, 2], seed=0)
        model.fit(X, y, "cross_entropy", "adam", epochs=2, batch_size=64)
        return model.params.tobytes()
    outside = run()
    with threadpoolctl.threadpool_limits(1):
        assert run() == outside


# one process per setting: a predict big enough to be cut into tiles (0.5 GFLOP), then the
# count of pool workers started (0: it ran on the caller alone) and the default
POOL_SCRIPT = """
import sys, numpy as np, fastnn
from fastnn._core import _pool
from fastnn.runtime import threads
model = fastnn.MLP([256, 512, 10], seed=0)
X = np.ones((2000, 256), np.float32)
if sys.argv[1] == "limit":
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        model.predict(X)
        print(_pool.pool_size(), threads.default_threads())
else:
    model.predict(X)
    print(_pool.pool_size(), threads.default_threads())
"""


def _child(mode, **env):
    full = {k: v for k, v in os.environ.items() if k not in threads.THREAD_VARIABLES}
    full.update(env, PYTHONPATH=FASTNN_PARENT)
    out = subprocess.run([sys.executable, "-c", POOL_SCRIPT, mode], env=full, cwd=FASTNN_PARENT,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return tuple(int(v) for v in out.split())


@pytest.mark.skipif(CORES < 2, reason="needs two cores to see a worker start")
def test_a_process_started_with_a_limit_runs_on_its_caller_alone():
    assert _child("plain") == (CORES - 1, CORES)            # every core: workers start
    assert _child("plain", OMP_NUM_THREADS="1") == (0, 1)
    assert _child("plain", FASTNN_NUM_THREADS="1") == (0, 1)
    assert _child("limit") == (0, 1)


@pytest.mark.skipif(CORES < 2, reason="needs two cores for two workers")
def test_lokys_workers_get_their_share_of_the_cores():
    joblib = pytest.importorskip("joblib")
    # loky's workers run with OMP_NUM_THREADS = cores // n_jobs (joblib sets it): fastnn's
    # default follows, so GridSearchCV(n_jobs=2) does not run 2 x cores threads
    env = {k: os.environ.pop(k) for k in threads.THREAD_VARIABLES if k in os.environ}
    try:
        with joblib.parallel_config(backend="loky", n_jobs=2):
            counts = joblib.Parallel()(joblib.delayed(threads.default_threads)()
                                       for _ in range(4))
            omp = joblib.Parallel()(joblib.delayed(os.getenv)("OMP_NUM_THREADS")
                                    for _ in range(4))
    finally:
        os.environ.update(env)
    share = max(joblib.cpu_count() // 2, 1)
    assert omp == [str(share)] * 4
    assert counts == [share] * 4
