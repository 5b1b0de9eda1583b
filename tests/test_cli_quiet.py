"""--quiet means nothing on stdout for every subcommand (errors and warnings still go to
stderr; predict's predictions, when they are written to stdout, are the command's product);
and a whole-number target is ambiguous, with a warning, whenever it has more than two
values."""
import contextlib
import io

import numpy as np
import pytest

from fastnn.cli.command import main


def run(tmp_path, monkeypatch, *argv):
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    assert code == 0, err.getvalue()
    return out.getvalue(), err.getvalue()


def _table(tmp_path, y, name="t.csv"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(y), 2))
    lines = ["a,b,y"] + [f"{a:.6f},{b:.6f},{t}" for (a, b), t in zip(X, y)]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return name


def test_every_subcommand_prints_nothing_on_stdout_with_quiet(tmp_path, monkeypatch):
    table = _table(tmp_path, np.arange(60) % 2)
    np.savez(tmp_path / "d.npz", X=np.random.default_rng(1).normal(size=(60, 2)),
             y=np.arange(60) % 2)
    quick = ["--epochs", "2", "--layers", "4"]
    runs = {
        "demo": ["demo", *quick],
        "train table": ["train", table, "--target", "y", "--save", "m.npz", "--plot",
                        "curve.png", *quick],
        "train npz": ["train", "d.npz", "--validation-split", "0.2", "--save", "n.npz",
                      *quick],
        "predict to a file": ["predict", "m.npz", table, "--output", "p.csv"],
        "predict to .npy": ["predict", "n.npz", "d.npz", "--output", "p.npy"],
    }
    pytest.importorskip("matplotlib")
    for name, argv in runs.items():
        loud, _ = run(tmp_path, monkeypatch, *argv)
        assert loud.strip(), name                  # the summary, without --quiet
        out, err = run(tmp_path, monkeypatch, *argv, "--quiet")
        assert out == "", (name, out)
        assert "error" not in err
    # predictions written to stdout are the output itself, not a message
    csv, _ = run(tmp_path, monkeypatch, "predict", "m.npz", table, "--quiet")
    assert csv.splitlines()[0] == "y,0,1" and len(csv.splitlines()) == 61


def test_quiet_keeps_warnings_on_stderr(tmp_path, monkeypatch):
    table = _table(tmp_path, np.arange(60) % 7)
    out, err = run(tmp_path, monkeypatch, "train", table, "--target", "y", "--epochs", "1",
                   "--layers", "4", "--quiet")
    assert out == "" and "7 distinct whole numbers" in err


@pytest.mark.parametrize("n_values, warns", [(2, False), (3, True), (7, True), (20, True),
                                             (21, True)])
def test_whole_number_targets_warn_whenever_they_are_ambiguous(tmp_path, monkeypatch,
                                                               n_values, warns):
    table = _table(tmp_path, np.arange(84) % n_values + 1)
    out, err = run(tmp_path, monkeypatch, "train", table, "--target", "y", "--epochs", "1",
                   "--layers", "4", "--validation-split", "0")
    task = "classification" if n_values <= 20 else "regression"
    assert f"task: {task}" in out
    if warns:
        other = "regression" if task == "classification" else "classification"
        assert f"{n_values} distinct whole numbers" in err and f"--task {other}" in err
    else:
        assert err == ""
