"""The fastnn command: demo, train --save and predict, their output and exit codes."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn.cli.command import main
from fastnn.datasets import make_regression, make_spirals
from tests._helpers import classification_data


@pytest.fixture
def spirals_npz(tmp_path):
    X, y = make_spirals(300, n_classes=3, seed=0)
    path = tmp_path / "spirals.npz"
    np.savez(path, X=X, y=y)
    return path, X, y


def _train(path, model, *extra):
    return main(["train", str(path), "--layers", "16", "--epochs", "3",
                 "--save", str(model), *extra])


def test_demo_trains_and_reports_accuracy(capsys):
    assert main(["demo", "--epochs", "2", "--layers", "16"]) == 0
    out = capsys.readouterr().out
    assert "fastnn 0." in out and "trained" in out and "test accuracy" in out


def test_train_save_then_predict_reproduces_the_model(tmp_path, spirals_npz, capsys):
    data, X, _ = spirals_npz
    model_path = tmp_path / "model.npz"
    assert _train(data, model_path) == 0
    assert f"saved the model to {model_path}" in capsys.readouterr().out
    model = fastnn.load(model_path)
    assert model.layer_sizes == [2, 16, 3] and model._link_name() == "softmax"

    out_path = tmp_path / "pred.npy"
    assert main(["predict", str(model_path), str(data), "--output", str(out_path)]) == 0
    assert "shape (300, 3)" in capsys.readouterr().out
    assert np.array_equal(np.load(out_path), model.predict(X))

    assert main(["predict", str(model_path), str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # a CSV with a header: the predicted label, then the probability of each class
    assert lines[0] == "predicted,0,1,2"
    printed = np.loadtxt(lines[1:], delimiter=",")
    assert np.array_equal(printed[:, 0], model.predict(X).argmax(axis=1))
    np.testing.assert_allclose(printed[:, 1:], model.predict(X), rtol=1e-5, atol=1e-6)


def test_train_and_predict_from_csv(tmp_path, capsys):
    X, y = make_regression(200, n_features=3, seed=0)
    table = np.column_stack([X, y])
    csv = tmp_path / "data.csv"
    np.savetxt(csv, table, delimiter=",", header="a,b,c,target", comments="")
    model_path = tmp_path / "reg.npz"
    assert _train(csv, model_path, "--target", "target", "--loss", "mse") == 0
    features = tmp_path / "features.csv"
    np.savetxt(features, X, delimiter=",", header="a,b,c", comments="")
    capsys.readouterr()
    assert main(["predict", str(model_path), str(features)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "target"
    # the model file carries the standardisation: undo it by hand as the reference
    model = fastnn.load(model_path)
    pre = model.preprocessor_
    expected = model.predict((X - pre.x_mean) / pre.x_scale)[:, 0] * pre.y_scale + pre.y_mean
    np.testing.assert_allclose(np.loadtxt(lines[1:]), expected, rtol=1e-5, atol=1e-5)


def _error(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured


def test_predict_reports_bad_model_files_without_a_traceback(tmp_path, spirals_npz, capsys):
    data, _, _ = spirals_npz
    missing = tmp_path / "missing.npz"
    assert str(missing) in _error(["predict", str(missing), str(data)], capsys).err
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really")
    err = _error(["predict", str(broken), str(data)], capsys).err
    assert err.startswith("fastnn predict: error:") and str(broken) in err
    assert "truncated or corrupted" in err
    # a data set is not a model
    assert "no 'description' entry" in _error(["predict", str(data), str(data)], capsys).err


def test_predict_rejects_data_of_the_wrong_width(tmp_path, spirals_npz, capsys):
    data, _, _ = spirals_npz
    model_path = tmp_path / "model.npz"
    assert _train(data, model_path) == 0
    wide = tmp_path / "wide.npz"
    np.savez(wide, X=np.zeros((4, 5)))
    assert "5 features" in _error(["predict", str(model_path), str(wide)], capsys).err


def test_train_checks_the_save_directory_before_training(tmp_path, spirals_npz, capsys):
    data, _, _ = spirals_npz
    captured = _error(["train", str(data), "--save", str(tmp_path / "no" / "m.npz")], capsys)
    assert "does not exist" in captured.err and "trained" not in captured.out


def test_train_reports_a_missing_target(tmp_path, capsys):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((5, 2)), labels=np.zeros(5))
    assert "--target" in _error(["train", str(path)], capsys).err


def test_bad_arguments_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert fastnn.__version__ in capsys.readouterr().out


def test_python_dash_m_fastnn_runs_the_demo(tmp_path):
    # from a directory outside the repository, importing the same fastnn as these tests
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    result = subprocess.run([sys.executable, "-m", "fastnn", "demo", "--epochs", "2"],
                            cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout


def test_threads_defaults_to_every_core_as_fit_does(tmp_path, spirals_npz, capsys, monkeypatch):
    # `--threads` not given: fit's own default (None, every core available), not one thread;
    # and the saved weights are the same bits as with --threads 1
    from fastnn.cli.command import build_parser
    for command in (["train", "d.npz"], ["demo"]):
        assert build_parser().parse_args(command).threads is None
    seen = []
    fit = fastnn.MLP.fit

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("n_threads"))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(fastnn.MLP, "fit", spy)
    saved = []
    for extra in ([], ["--threads", "1"], ["--threads", "3"]):
        path = tmp_path / f"m{len(saved)}.npz"
        assert main(["train", str(spirals_npz[0]), "--layers", "160,160", "--epochs", "2",
                     "--batch-size", "256", "--quiet", "--save", str(path), *extra]) == 0
        saved.append(fastnn.load(path).params)
    assert seen == [None, 1, 3]
    assert all(np.array_equal(saved[0], p) for p in saved[1:])


def test_outputs_never_replace_inputs_and_a_directory_is_refused_before_training(
        tmp_path, spirals_npz, capsys):
    # `predict m.npz d --output m.npz` once replaced the model and exited 0, `--save DIR`
    # trained to the end before failing; every case is in tests/test_outputs.py
    data, _, _ = spirals_npz
    model_path = tmp_path / "model.npz"
    assert _train(data, model_path) == 0
    capsys.readouterr()
    before = model_path.read_bytes(), data.read_bytes()
    for victim, name in ((model_path, "model"), (data, "data")):
        err = _error(["predict", str(model_path), str(data), "--output", str(victim)],
                     capsys).err
        assert f"--output {str(victim)!r} is the same file as the input {name}" in err
    err = _error(["train", str(data), "--save", str(data)], capsys).err
    assert "--save" in err and "same file as the input data" in err
    (tmp_path / "adir").mkdir()
    captured = _error(["train", str(data), "--layers", "16", "--epochs", "3", "--quiet",
                       "--save", str(tmp_path / "adir")], capsys)
    assert "trained" not in captured.out and "is an existing directory" in captured.err
    assert (model_path.read_bytes(), data.read_bytes()) == before
    assert sorted(os.listdir(tmp_path)) == ["adir", "model.npz", "spirals.npz"]


# ------------------------------------------------- a run is never lost after it trained
#
# Every way a `fastnn train` run can end after (or while) training -- divergence, Ctrl-C, a
# --save that fails, a --plot that fails -- on both the table and the .npz paths: the model
# is kept (at --save, or in the temporary directory when --save cannot be written), the
# status is 1 (130 after Ctrl-C), and the error names where the model is.

def _regression_csv(tmp_path):
    X, y = make_regression(200, 3, seed=0)
    path = tmp_path / "d.csv"
    rows = ["a,b,c,y"] + [",".join(f"{v:.6g}" for v in (*x, t)) for x, t in zip(X, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _train_inputs(tmp_path, spirals_npz):
    return {"table": [str(_regression_csv(tmp_path)), "--target", "y"],
            "npz": [str(spirals_npz[0])]}


@pytest.fixture(params=["table", "npz"])
def train_input(request, tmp_path, spirals_npz):
    return _train_inputs(tmp_path, spirals_npz)[request.param]


@pytest.mark.parametrize("stop", ["diverged", "interrupted"])
@pytest.mark.parametrize("with_save", [True, False], ids=["save", "no-save"])
def test_a_run_that_stops_keeps_its_model_beside_save_never_over_it(
        tmp_path, train_input, capsys, monkeypatch, stop, with_save):
    # the stopped run's parameters go to a new file the error names; an existing --save (an
    # earlier, good model) is left as it was: a diverging run overwrote it
    real_fit = fastnn.MLP.fit

    def stopping_fit(self, *args, **kwargs):
        real_fit(self, *args, **{**kwargs, "epochs": 1})
        if stop == "diverged":
            raise fastnn.TrainingDiverged("the loss became inf at epoch 2")
        raise KeyboardInterrupt
    monkeypatch.setattr(fastnn.MLP, "fit", stopping_fit)
    save = tmp_path / "m.npz"
    save.write_bytes(b"an earlier model")
    argv = ["train", *train_input, "--layers", "4", "--epochs", "3"]
    status = main([*argv, "--save", str(save)] if with_save else argv)
    err = capsys.readouterr().err
    assert status == (1 if stop == "diverged" else 130), err
    assert "Traceback" not in err
    kept = err.split("were saved to ")[1].split(";")[0].strip()
    try:
        assert fastnn.load(kept).n_params > 0
    finally:
        os.unlink(kept)
    assert save.read_bytes() == b"an earlier model"
    assert ("was left as it was" in err) == with_save


def _stop(how):
    from fastnn.cli.common import Stopped
    if how == "Ctrl-C":
        return KeyboardInterrupt()
    return Stopped(getattr(signal, how))


@pytest.mark.parametrize("how, status", [("Ctrl-C", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
@pytest.mark.parametrize("when", ["saving", "scoring", "plotting"])
def test_a_stop_after_training_keeps_the_trained_model(tmp_path, spirals_npz, capsys,
                                                       monkeypatch, how, status, when):
    # a Ctrl-C (or SIGTERM, SIGHUP) after fit returned, while --save was written or the
    # held-out rows scored or the curve drawn, lost the finished run: the model is now at
    # --save when it got there, else in a rescue file the message names
    import fastnn.cli.train as train_module
    save = tmp_path / "m.npz"
    argv = ["train", str(_regression_csv(tmp_path)), "--target", "y", "--layers", "4",
            "--epochs", "2", "--validation-split", "0.2"]
    if when == "saving":
        real_save = fastnn.MLP.save

        def save_or_stop(self, path, *args, **kwargs):
            if str(getattr(path, "path", path)) == str(save):
                raise _stop(how)
            return real_save(self, path, *args, **kwargs)
        monkeypatch.setattr(fastnn.MLP, "save", save_or_stop)
        argv += ["--save", str(save)]
    elif when == "scoring":
        def stop(*args, **kwargs):
            raise _stop(how)
        monkeypatch.setattr(train_module, "_held_out_metric", stop)
    else:
        pytest.importorskip("matplotlib")

        def stop(*args, **kwargs):
            raise _stop(how)
        monkeypatch.setattr(train_module, "_plot", stop)
        argv += ["--plot", str(tmp_path / "c.png"), "--save", str(save)]
    result = main(argv)
    err = capsys.readouterr().err
    assert result == status and "Traceback" not in err, err
    assert "after training; the trained model was saved to " in err, err
    kept = err.split("the trained model was saved to ")[1].strip()
    if when == "plotting":
        assert kept == str(save)
    else:
        assert "fastnn-rescued-" in kept
    try:
        assert fastnn.load(kept).n_params > 0
    finally:
        if kept != str(save):
            os.unlink(kept)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_termination_signal_during_training_keeps_the_model_as_ctrl_c_does(tmp_path, sig):
    # `timeout`, a batch system's SIGTERM or a closed terminal's SIGHUP killed a run and
    # kept nothing; now the parameters of the last completed epoch go to a rescue file
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(20000, 20)),
             y=rng.integers(0, 2, size=20000))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)),
               PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "train", "d.npz", "--layers",
                             "256,256", "--epochs", "100000", "--threads", "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:   # the first epoch ran: there is something to keep
            if line.startswith("epoch 1/"):
                break
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert f"stopped by {sig}" in err and "Traceback" not in err, err
    kept = err.split("were saved to ")[1].split(";")[0].strip()
    try:
        assert fastnn.load(kept).n_params > 0
    finally:
        os.unlink(kept)


def test_a_plot_that_fails_without_save_keeps_the_model(tmp_path, train_input, capsys,
                                                        monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        raise RuntimeError("the renderer failed")
    monkeypatch.setattr(Figure, "savefig", broken)
    status = main(["train", *train_input, "--layers", "4", "--epochs", "2", "--plot",
                   str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert status == 1 and "--plot" in err and "the renderer failed" in err, err
    kept = err.split("the model was saved to ")[1].strip()
    try:
        assert fastnn.load(kept).n_params > 0
    finally:
        os.unlink(kept)


def test_a_save_that_fails_after_training_keeps_the_model_elsewhere(tmp_path, train_input,
                                                                     capsys, monkeypatch):
    save = tmp_path / "m.npz"
    real_save = fastnn.MLP.save

    def full_disk(self, path, *args, **kwargs):
        if str(getattr(path, "path", path)) == str(save):
            raise OSError(28, "No space left on device")
        return real_save(self, path, *args, **kwargs)
    monkeypatch.setattr(fastnn.MLP, "save", full_disk)
    status = main(["train", *train_input, "--layers", "4", "--epochs", "2", "--save",
                   str(save)])
    err = capsys.readouterr().err
    assert status == 1, err
    rescued = err.split("the trained model was saved to ")[1].split(" instead")[0]
    try:
        assert fastnn.load(rescued).n_params > 0
    finally:
        os.unlink(rescued)


def test_a_plot_that_fails_after_training_says_the_model_was_saved(tmp_path, train_input,
                                                                   capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        raise RuntimeError("the renderer failed")
    monkeypatch.setattr(Figure, "savefig", broken)
    save = tmp_path / "m.npz"
    status = main(["train", *train_input, "--layers", "4", "--epochs", "2", "--save",
                   str(save), "--plot", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err, err
    assert "the renderer failed" in err and f"the model was saved to {save}" in err
    assert fastnn.load(save).n_params > 0


def test_plot_formats_that_need_latex_are_refused_before_training(tmp_path, spirals_npz,
                                                                  capsys):
    pytest.importorskip("matplotlib")
    status = main(["train", str(spirals_npz[0]), "--epochs", "1", "--plot",
                   str(tmp_path / "c.pgf")])
    assert status == 2 and "cannot write a .pgf image" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "predict"])
def test_a_cell_beyond_the_models_dtype_names_file_line_and_column(tmp_path, capsys, command):
    # was "X has values too large for the model's dtype float32 (first at row 1, column 1:
    # ...)": an internal name, a 0-based row, a column index and the standardized value
    rng = np.random.default_rng(0)
    rows = ["a,b,y"] + [f"{rng.normal():.4f},{rng.normal():.4f},{rng.normal():.4f}"
                        for _ in range(40)]
    if command == "train":
        rows[5] = "0.1,5e38,0.3"   # line 6 of the file
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    argv = ["train", str(tmp_path / "d.csv"), "--target", "y", "--epochs", "1",
            "--no-standardize"]
    if command == "predict":
        assert main([*argv, "--save", str(tmp_path / "m.npz")]) == 0
        (tmp_path / "p.csv").write_text("a,b\n0.1,0.2\n0.3,1e300\n")
        argv = ["predict", str(tmp_path / "m.npz"), str(tmp_path / "p.csv")]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    line = "line 6" if command == "train" else "line 3"
    assert f"{line}: column 'b' holds" in err and "float32 model" in err, err
    assert "--dtype float64" in err and "X has" not in err


def test_input_errors_name_the_argument(tmp_path, capsys):
    # was "[Errno 2] No such file or directory: 'x.npz'", naming no argument
    err = _error(["predict", str(tmp_path / "x.npz"), str(tmp_path / "d.csv")], capsys).err
    assert f"model {str(tmp_path / 'x.npz')!r}: no such file" in err
    err = _error(["train", str(tmp_path), "--target", "y"], capsys).err
    assert "data" in err and "is a directory; expected a file" in err


def test_predict_on_a_header_only_table_says_so(tmp_path, capsys):
    rows = ["a,y"] + [f"{i},{i % 2}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    assert main(["train", str(tmp_path / "d.csv"), "--target", "y", "--epochs", "1",
                 "--save", str(tmp_path / "m.npz")]) == 0
    (tmp_path / "p.csv").write_text("a\n")
    err = _error(["predict", str(tmp_path / "m.npz"), str(tmp_path / "p.csv")], capsys).err
    assert "no data rows (only a header)" in err and "0 samples" not in err


def test_an_undefined_held_out_r2_is_not_printed_as_minus_infinity(tmp_path, capsys):
    rows = ["a,y"] + [f"{i},{i * 0.5}" for i in range(10)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    assert main(["train", str(tmp_path / "d.csv"), "--target", "y", "--epochs", "1",
                 "--validation-split", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "held-out R^2: undefined" in out and "-inf" not in out


def test_a_text_target_under_a_regression_loss_names_what_asked_for_a_regression(tmp_path,
                                                                                  capsys):
    rows = ["a,label"] + [f"{i},{'yes' if i % 2 else 'no'}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    err = _error(["train", str(tmp_path / "d.csv"), "--target", "label", "--loss", "mse",
                  "--epochs", "1"], capsys).err
    # was "--task regression: ...", a flag the user never passed
    assert "'label' is not numeric" in err and "a regression --loss" in err
    assert not err.split("error:")[1].strip().startswith("--task")


def test_target_errors_name_the_column_and_the_training_part(tmp_path, capsys):
    rows = ["a,count"] + [f"{i},{i - 5}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    err = _error(["train", str(tmp_path / "d.csv"), "--target", "count", "--loss",
                  "poisson", "--epochs", "1"], capsys).err
    # was "y has negative values": fit's argument, not the user's column
    assert "the target column 'count' has negative values" in err, err
    rows = ["a,y"] + [f"{i},{1.0 if i else 2.0}" for i in range(10)]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    err = _error(["train", str(tmp_path / "c.csv"), "--target", "y", "--validation-split",
                  "0.9", "--epochs", "1", "--seed", "1"], capsys).err
    assert "in the 1 rows used for training (after --validation-split)" in err, err


@pytest.mark.parametrize("layers", [",", "64,,64", "8,"])
def test_layer_lists_with_empty_widths_are_refused(tmp_path, spirals_npz, layers, capsys):
    # "64,,64" was taken as 64,64 and "," as a linear model, silently
    with pytest.raises(SystemExit) as info:
        main(["train", str(spirals_npz[0]), "--layers", layers, "--epochs", "1"])
    assert info.value.code == 2
    assert "expected comma-separated integers" in capsys.readouterr().err


def test_early_stopping_without_a_split_watches_the_training_loss(tmp_path, spirals_npz,
                                                                  capsys, monkeypatch):
    # with --validation-split 0 the patience was ignored silently on .npz data
    made = []
    real = fastnn.EarlyStopping

    def recording(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(fastnn, "EarlyStopping", recording)
    assert main(["train", str(spirals_npz[0]), "--layers", "4", "--epochs", "2",
                 "--early-stopping", "3", "--validation-split", "0"]) == 0
    assert made == [{"patience": 3, "monitor": "loss"}]


def test_predict_on_an_ensemble_file_speaks_to_a_command_line_user(tmp_path, spirals_npz,
                                                                   capsys):
    fastnn.MLPEnsemble([2, 4, 3], 2, seed=0).save(tmp_path / "e.npz")
    err = _error(["predict", str(tmp_path / "e.npz"), str(spirals_npz[0])], capsys).err
    assert "is an ensemble file" in err and "`fastnn predict` takes one model's file" in err


def test_a_huge_validation_metric_prints_in_significant_digits():
    from fastnn.training.engine import _epoch_line
    logs = {"epoch": 1, "loss": 1.0, "lr": 0.1, "samples_per_s": 10.0, "val_loss": 2.0,
            "val_metric": -1.2345e39}
    assert _epoch_line(logs, 3, "r2").endswith("val_r2 -1.234e+39")
    assert _epoch_line({**logs, "val_metric": 0.57}, 3, "accuracy").endswith("0.5700")


def test_a_rate_below_the_normal_range_names_the_flag(tmp_path, spirals_npz, capsys):
    status = main(["train", str(spirals_npz[0]), "--layers", "4", "--epochs", "1", "--lr",
                   "1e-40"])
    err = capsys.readouterr().err
    assert status == 2 and "--lr 1e-40 is below 1.18e-38" in err, err
    assert "schedule" not in err


def test_a_prediction_file_that_cannot_be_written_is_status_1(tmp_path, spirals_npz,
                                                               capsys):
    # the input was fine: a full disk is a failed run (1), not a usage error (2)
    model = tmp_path / "m.npz"
    assert main(["train", str(spirals_npz[0]), "--layers", "4", "--epochs", "1", "--save",
                 str(model), "--quiet"]) == 0
    status = main(["predict", str(model), str(spirals_npz[0]), "--output", "/dev/full"])
    err = capsys.readouterr().err
    assert status == 1 and "cannot write --output '/dev/full'" in err, err


def test_the_predict_hint_quotes_a_path_with_blanks(tmp_path, spirals_npz, capsys):
    path = tmp_path / "my model.npz"
    assert main(["train", str(_regression_csv(tmp_path)), "--target", "y", "--layers", "4",
                 "--epochs", "1", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"fastnn predict '{path}' FILE" in out, out


@pytest.mark.parametrize("bad, fragments", [
    ({"X": np.zeros(5), "y": np.zeros(5)}, ["X has shape (5,)", "expected (n_samples"]),
    ({"X": np.zeros((5, 2), complex), "y": np.zeros(5)}, ["X has dtype complex128"]),
    ({"X": np.array([[0.0, np.nan]] * 5), "y": np.zeros(5)}, ["X contains NaN or infinity"]),
    ({"X": np.zeros((5, 2)), "y": np.array(list("abcde"))}, ["y has dtype <U1"]),
    ({"X": np.zeros((0, 2)), "y": np.zeros(0)}, ["y is empty"]),
    ({"X": np.zeros((5, 2)), "y": np.array([0, 1, -1, 0, 1])},
     ["negative class labels (min -1)"]),
    ({"X": np.zeros((5, 2)), "y": np.zeros(4)}, ["X has 5 samples but y has 4"]),
], ids=["1-d", "complex", "nan", "string-labels", "empty", "negative-label", "short-y"])
def test_the_command_line_reports_bad_data_in_one_line(tmp_path, capsys, bad, fragments):
    from fastnn.cli.command import main
    path = tmp_path / "data.npz"
    np.savez(path, **bad)
    assert main(["train", str(path), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastnn train: error:") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_the_command_line_reports_a_diverged_run_in_one_line(tmp_path, capsys):
    from fastnn.cli.command import main
    X, y = classification_data(n=50)
    path = tmp_path / "data.npz"
    np.savez(path, X=X * 100, y=y)
    assert main(["train", str(path), "--optimizer", "sgd", "--lr", "1e30", "--epochs", "5",
                 "--quiet", "--save", str(tmp_path / "m.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastnn train: error: training diverged: the training loss became "
                          "NaN")
    # one line; the run's last good parameters are kept in a new file it names, and the
    # --save target (which may hold an earlier, good model) is not written
    assert err.count("\n") == 1 and not (tmp_path / "m.npz").exists()
    kept = err.split("were saved to ")[1].split(";")[0].strip()
    try:
        assert np.isfinite(fastnn.load(kept).params).all()
    finally:
        os.unlink(kept)
