"""Data-parallel training over MPI, each scenario run under `mpiexec -n 2` (mpi_worker.py)."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn.nn.model import MLP
from fastnn.training.trainer import fit
from tests._helpers import check_error, classification_data

MPI = pytest.importorskip("mpi4py.MPI", reason="distributed training needs the mpi extra")
WORKER = os.path.join(os.path.dirname(__file__), "mpi_worker.py")
TIMEOUT = 120  # seconds: a hang fails the test instead of blocking CI


def _mpiexec():
    # the mpich wheel installs mpiexec beside the interpreter of the virtual environment
    here = os.path.dirname(sys.executable)
    found = shutil.which("mpiexec", path=here + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        pytest.fail("mpi4py is installed but mpiexec is not on PATH")
    return found


def _run(*args):
    # the ranks import the same fastnn as this process (installed, or a development build)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    return subprocess.run([_mpiexec(), "-n", "2", sys.executable, WORKER, *args],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)


def _single_process(opt, dropout=0.0, normalization=None):
    sys.path.insert(0, os.path.dirname(__file__))
    try:
        import mpi_worker
    finally:
        sys.path.pop(0)
    X, labels, sw = mpi_worker.global_data()
    model = mpi_worker.model(dropout, normalization)
    history = fastnn.fit(model, X, labels, "cross_entropy", mpi_worker.optimizer(opt),
                         epochs=4, batch_size=16, seed=3, sample_weight=sw)
    return model.params, history.loss


@pytest.mark.parametrize("opt, dropout, normalization",
                         [("sgd", 0.0, None), ("adam", 0.0, None), ("sgd", 0.3, None),
                          ("adam", 0.3, "layer")],
                         ids=["sgd", "adam", "sgd-dropout", "adam-dropout-layernorm"])
def test_two_ranks_train_exactly_like_one_process(tmp_path, opt, dropout, normalization):
    out = tmp_path / "result.npz"
    result = _run("equal", str(out), opt, str(dropout), *([normalization] if normalization
                                                          else []))
    assert result.returncode == 0, result.stderr
    with np.load(out) as data:
        params, loss = data["params"], data["loss"]
    # uneven shards (30 and 71 rows) and sample weights, the same global minibatches; with
    # dropout, the masks of a sample are the same whichever rank holds it
    want, want_loss = _single_process(opt, dropout, normalization)
    np.testing.assert_allclose(params[0], want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-10)
    np.testing.assert_array_equal(params[0], params[1])  # every rank: the same bits


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["zero-shard-0", "zero-shard-1", "near-float32-max",
                                  "one-rank-only"])
def test_two_ranks_train_like_one_process_on_every_valid_weighting(tmp_path, case, dtype):
    # a shard whose weights are all 0 was refused on every rank (one process trains on the
    # same rows); float32 weights near 1e37 made each rank's unscaled gradient sum overflow,
    # ending 0.3 away from one process; a rank passing no weights weighs its rows 1
    out = tmp_path / "result.npz"
    result = _run("weights", str(out), case, dtype)
    assert result.returncode == 0, result.stdout + result.stderr
    with np.load(out) as data:
        params, loss = data["params"], data["loss"]
    sys.path.insert(0, os.path.dirname(__file__))
    try:
        import mpi_worker
    finally:
        sys.path.pop(0)
    want, want_loss = mpi_worker.weight_fit(case, np.dtype(dtype))
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-5, 1e-6)
    np.testing.assert_allclose(params[0], want, rtol=rtol, atol=atol)
    np.testing.assert_allclose(loss, want_loss, rtol=rtol)
    np.testing.assert_array_equal(params[0], params[1])  # every rank: the same bits


@pytest.mark.parametrize("fraction, n0", [(0.2, 30), (0.5, 2), (0.1, 1)])
def test_two_ranks_hold_out_the_rows_one_process_holds_out(tmp_path, fraction, n0):
    # validation_split is drawn over the global rows from the fit's seed, every rank keeping
    # its own of them (each rank used to split its shard from its own stream, rounding per
    # shard); a shard of 1 or 2 rows may end with no training or no held-out row
    out = tmp_path / "result.npz"
    result = _run("split", str(out), str(fraction), str(n0))
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, os.path.dirname(__file__))
    try:
        import mpi_worker
    finally:
        sys.path.pop(0)
    want, want_loss, want_val = mpi_worker.split_fit(fraction, n0)
    with np.load(out) as data:
        np.testing.assert_allclose(data["params"][0], want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(data["loss"], want_loss, rtol=1e-10)
        np.testing.assert_allclose(data["val_loss"], want_val, rtol=1e-10)
        np.testing.assert_array_equal(data["params"][0], data["params"][1])


@pytest.mark.parametrize("scenario", ["sigint-one-rank", "sigint-ensemble"])
def test_ctrl_c_on_one_rank_aborts_every_rank(scenario):
    # the interrupted rank's run was closed without the abort that every other error gets
    result = _run(scenario)
    assert result.returncode != 0
    assert "rank 1 of 2 failed during distributed training; aborting all ranks" in \
        result.stderr, result.stdout + result.stderr
    assert "KeyboardInterrupt" in result.stderr
    assert "finished" not in result.stdout


def test_bad_input_on_one_rank_fails_every_rank_with_a_clear_error():
    result = _run("bad-input")
    assert result.returncode != 0
    for rank in (0, 1):  # the same message on every rank
        assert f"rank {rank} raised: invalid input on 1 of 2 ranks (rank 1: ValueError: X " \
            "contains NaN" in result.stdout, result.stdout + result.stderr


def test_an_exception_during_training_aborts_instead_of_hanging():
    result = _run("callback-fails")  # would hang (timeout) without MPI_Abort
    assert result.returncode != 0
    assert "callback failed on rank 1" in result.stderr
    assert "aborting all ranks" in result.stderr


@pytest.mark.parametrize("scenario, fragment", [
    ("mixed-dtype", "dtype: rank 0 'float32', rank 1 'float64'"),
    ("activation-differs", "activations: rank 0"),
    ("val-one-rank", "validation data: rank 0 True, rank 1 False"),
    ("loss-differs", "loss: rank 0"),
    ("es-differs", 'early_stopping: rank 0 "EarlyStopping(patience=2'),
    ("schedule-differs", "schedule progress: rank 0"),
    # the weights of every shard sum to 0: the total over the ranks is what fit checks
    ("zero-weights", "the sample weights of the training rows sum to 0"),
    # an argument refused by one rank's own checks: the other ranks waited in a collective
    ("lbfgs-one-rank", "rank 1: TypeError: epochs=3 does not apply to L-BFGS"),
    ("batch-size-one-rank", "rank 1: ValueError: batch_size=0"),
])
def test_ranks_that_disagree_all_raise_the_same_error_before_training(scenario, fragment):
    # each of these used to hang (mixed dtype, validation on one rank) or train a silent mix
    result = _run(scenario)  # a hang fails by the subprocess timeout
    assert result.returncode != 0
    # the ranks' lines may interleave: each ends with a marker
    raised = re.findall(r"rank (\d) raised: (.*?) \|end\|", result.stdout, re.S)
    assert sorted(rank for rank, _ in raised) == ["0", "1"], result.stdout + result.stderr
    messages = {message for _, message in raised}
    assert len(messages) == 1, messages  # the same error on every rank
    assert fragment in messages.pop()


def test_divergence_raises_the_same_error_on_every_rank():
    result = _run("diverge")
    assert result.returncode != 0
    found = re.findall(r"rank (\d) diverged: (.*?) \|end\|", result.stdout, re.S)
    assert sorted(rank for rank, _ in found) == ["0", "1"], result.stdout + result.stderr
    assert len({message for _, message in found}) == 1  # message and parameters alike
    assert "became NaN or infinite at epoch 1" in found[0][1]


def test_a_distributed_run_continues_bitwise():
    result = _run("continue")
    assert result.returncode == 0, result.stdout + result.stderr
    for rank in (0, 1):
        assert f"rank {rank} continued bitwise: True |end|" in result.stdout, result.stdout


def test_a_stop_requested_on_one_rank_stops_every_rank_after_the_same_epoch():
    result = _run("callback-stops")
    assert result.returncode == 0, result.stdout + result.stderr
    found = sorted(re.findall(r"rank (\d) stopped after epochs (\[.*?\]) params (\S+) \|end\|",
                              result.stdout))
    assert [rank for rank, _, _ in found] == ["0", "1"], result.stdout + result.stderr
    assert all(epochs == "[1, 2]" for _, epochs, _ in found), found
    assert found[0][2] == found[1][2]  # the same weights on both ranks


def test_one_rank_in_process_matches_plain_fit():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 3)), rng.standard_normal(50)
    runs = []
    for comm in (None, MPI.COMM_WORLD):
        model = fastnn.MLP([3, 4, 1], dtype=np.float64, seed=0)
        history = fastnn.fit(model, X, y, "mse", fastnn.SGD(lr=0.05, momentum=0.5), epochs=3,
                             batch_size=8, seed=1, comm=comm, validation_data=(X, y))
        runs.append((model.params.copy(), history.val_metric))
    # the distributed path adds the ranks' scaled gradients in the all-reduce: equal to rounding
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-10)  # R^2 from combined stats


def test_float32_loss_and_weight_sums_are_reduced_in_float64():
    # weights of 1e30 and squared errors of about 1e10: each batch's sum of w_i l_i (~1e41)
    # overflows float32 although the gradient (~1e36) does not.  The plain fit adds it in
    # double; the distributed one must too, instead of reporting a divergence.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 3))
    y = 1e5 * (1 + rng.random(32))
    sw = np.full(32, 1e30)
    runs = []
    for comm in (None, MPI.COMM_WORLD):
        model = fastnn.MLP([3, 1], dtype=np.float32, seed=0)
        history = fastnn.fit(model, X, y, "mse", fastnn.SGD(lr=1e-6), epochs=2, batch_size=16,
                             seed=0, sample_weight=sw, comm=comm)
        runs.append((model.params.copy(), history.loss))
    assert np.isfinite(runs[1][1]).all() and np.isfinite(runs[1][0]).all()
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-5)
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-4, atol=1e-6)


def test_the_compiled_allreduce_sums_in_place():
    from fastnn.training.distributed import MPIContext
    ctx = MPIContext(MPI.COMM_WORLD)
    for dtype in (np.float32, np.float64):
        buf = np.arange(5, dtype=dtype)
        ctx.reducer.sum_inplace(buf)
        np.testing.assert_array_equal(buf, np.arange(5) * MPI.COMM_WORLD.Get_size())


def test_comm_must_be_an_mpi_communicator():
    model = fastnn.MLP([3, 1], seed=0)
    with pytest.raises(TypeError, match="comm must be an mpi4py.MPI.Intracomm"):
        fastnn.fit(model, np.zeros((4, 3)), np.zeros(4), "mse", comm="world")
    with pytest.raises(TypeError, match="with comm, seed must be an int or None"):
        fastnn.fit(model, np.zeros((4, 3)), np.zeros(4), "mse", comm=MPI.COMM_WORLD,
                   seed=np.random.default_rng(0))


def test_distributed_helpers_name_bad_arguments():
    pytest.importorskip("mpi4py")
    from fastnn.training.distributed import is_root, shard
    check_error(lambda: shard(-1), ValueError, "n_samples=-1", "expected n_samples >= 0")
    check_error(lambda: shard(2.5), TypeError, "n_samples must be an integer", "2.5")
    check_error(lambda: shard(10, comm=3), TypeError, "comm must be an mpi4py.MPI.Intracomm",
                "int")
    check_error(lambda: is_root("world"), TypeError, "comm must be an mpi4py.MPI.Intracomm")
    X, y = classification_data()
    check_error(lambda: fit(MLP([3, 3]), X, y, "cross_entropy", comm="world"), TypeError,
                "comm must be an mpi4py.MPI.Intracomm", "str")
