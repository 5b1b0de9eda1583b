"""The `fastnn` command when its reader leaves early (`fastnn train ... | head -1`).

A closed stdout (or stderr) must never lose the user's work: every subcommand runs to its end
(the model saved), says nothing more, prints no traceback and exits with 141 (128 + SIGPIPE,
what a shell reports for `yes | head -1`).  Tested with real pipes: a subprocess whose pipe's
read end is closed before it writes (deterministic), and a shell pipeline into `head -1`.
"""
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import fastnn
from fastnn.cli.command import main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and SIGPIPE")

TRAIN = ["--epochs", "15", "--layers", "8", "--seed", "3", "--threads", "1"]


def _env():
    return dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=X[:, 0] - X[:, 1] > 0).to_csv(
        tmp_path / "d.csv", index=False)
    return tmp_path / "d.csv"


def _spawn_into_closed_pipe(tmp_path, *argv, stderr_too=False):
    """Run `python -m fastnn argv` with stdout (and stderr) a pipe nobody reads: the read end
    is closed before the child writes anything, so its first write fails with EPIPE."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "fastnn", *map(str, argv)],
                                cwd=tmp_path, env=_env(), stdout=w,
                                stderr=w if stderr_too else subprocess.PIPE)
    finally:
        os.close(w)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, (err or b"").decode()


def _reference_params(tmp_path, *argv):
    """The parameters the same command saves with its output read to the end."""
    path = tmp_path / "reference.npz"
    code = main([*map(str, argv), "--save", str(path)])
    assert code == 0
    return fastnn.load(path).params


@pytest.mark.parametrize("stderr_too", [False, True], ids=["stdout", "stdout+stderr"])
def test_train_into_a_closed_pipe_saves_the_model(tmp_path, table, stderr_too, capsys):
    argv = ["train", table, "--target", "y", *TRAIN]
    code, err = _spawn_into_closed_pipe(tmp_path, *argv, "--save", "m.npz",
                                        stderr_too=stderr_too)
    assert code == 141 and "Traceback" not in err and err == "", err
    # the model the run saved is the one an undisturbed run saves
    np.testing.assert_array_equal(fastnn.load(tmp_path / "m.npz").params,
                                  _reference_params(tmp_path, *argv), strict=True)
    capsys.readouterr()


def test_train_npz_into_a_closed_pipe_saves_the_model(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(200, 3)), y=rng.integers(0, 2, 200))
    code, err = _spawn_into_closed_pipe(tmp_path, "train", "d.npz", *TRAIN, "--save", "m.npz")
    assert code == 141 and err == "", err
    assert fastnn.load(tmp_path / "m.npz").n_params > 0


def test_predict_and_demo_into_a_closed_pipe(tmp_path, table, capsys):
    assert main(["train", str(table), "--target", "y", *TRAIN, "--quiet", "--save",
                 str(tmp_path / "m.npz")]) == 0
    capsys.readouterr()
    code, err = _spawn_into_closed_pipe(tmp_path, "predict", "m.npz", table)
    assert code == 141 and err == "", err
    code, err = _spawn_into_closed_pipe(tmp_path, "predict", "m.npz", table, "--output",
                                        "p.csv")
    assert code == 141 and err == "", err
    assert len(pd.read_csv(tmp_path / "p.csv")) == 300  # the file is written all the same
    if os.path.exists("/dev/stdout"):
        # --output naming the pipe itself: fastnn's own file handle meets the closed reader
        # (it was "error: [Errno 32] Broken pipe", status 2)
        code, err = _spawn_into_closed_pipe(tmp_path, "predict", "m.npz", table, "--output",
                                            "/dev/stdout")
        assert code == 141 and err == "", err
    code, err = _spawn_into_closed_pipe(tmp_path, "demo", "--epochs", "1")
    assert code == 141 and err == "", err
    code, err = _spawn_into_closed_pipe(tmp_path, "--help")
    assert code == 141 and err == "", err


def test_an_error_keeps_its_status_when_the_pipe_is_closed(tmp_path, table):
    # the status says what happened; a closed pipe replaces only a success's 0
    code, err = _spawn_into_closed_pipe(tmp_path, "train", table, "--target", "nope", *TRAIN)
    assert code == 2 and "nope" in err
    code, _ = _spawn_into_closed_pipe(tmp_path, "train", table, "--target", "nope", *TRAIN,
                                      stderr_too=True)
    assert code == 2


@pytest.mark.skipif(shutil.which("head") is None or shutil.which("bash") is None,
                    reason="needs bash and head")
def test_train_piped_into_head(tmp_path, table):
    # the user's own command line: per-epoch lines on stdout, `| head -1` leaves after one
    cmd = (f"'{sys.executable}' -m fastnn train d.csv --target y {' '.join(TRAIN)} "
           "--epochs 200 --save m.npz 2>err.txt | head -1; echo \"${PIPESTATUS[0]}\" > status")
    out = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert out.stdout.startswith("task: classification"), out.stdout
    status = int((tmp_path / "status").read_text())
    # 141 when a line came after head left (the usual case), 0 if every line was written
    # into the pipe's buffer before head exited
    assert status in (0, 141), status
    assert (tmp_path / "err.txt").read_text() == ""
    assert fastnn.load(tmp_path / "m.npz").n_params > 0


class _ClosedReader(io.StringIO):
    """A stream whose reader has left after `keep` writes."""

    def __init__(self, keep=1):
        super().__init__()
        self.keep = keep

    def write(self, text):
        if self.keep <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.keep -= 1
        return super().write(text)


def test_in_process_a_broken_stdout_mid_fit_still_saves(tmp_path, table, monkeypatch):
    # the write that fails is an epoch line printed inside fit
    monkeypatch.setattr(sys, "stdout", _ClosedReader(keep=4))
    code = main(["train", str(table), "--target", "y", *TRAIN, "--save",
                 str(tmp_path / "m.npz")])
    assert code == 141
    assert isinstance(sys.stdout, _ClosedReader)  # the guard is removed afterwards
    assert fastnn.load(tmp_path / "m.npz").n_params > 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_train_with_stdout_on_a_full_disk_saves_the_model_and_says_so(tmp_path, table):
    """A write error other than a closed pipe (ENOSPC) used to abandon the run before the
    save, with exit status 2 (an input error); now the run ends, the model is saved, the
    error is named on stderr and the status is 1."""
    argv = ["train", table, "--target", "y", *TRAIN]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "fastnn", *map(str, argv), "--save",
                               "m.npz"], cwd=tmp_path, env=_env(), stdout=full,
                              stderr=subprocess.PIPE, timeout=300)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert "could not write to stdout" in err and "No space left on device" in err, err
    np.testing.assert_array_equal(fastnn.load(tmp_path / "m.npz").params,
                                  _reference_params(tmp_path, *argv), strict=True)
