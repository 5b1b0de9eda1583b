"""Every file fastnn writes goes through fastnn.io.writer: nothing lost, the path reported written.

The command's outputs are found as ``_run`` finds them, by the argparse type of each argument
of each subcommand (``output_path``, ``input_path``), so a new output flag is attacked here
without being named.  Each output flag is tried against every way of pointing it at something
it must not replace (an input by its name, by another spelling, through a symbolic link,
through a hard link; another output; an existing directory; a folder that is missing or is a
regular file; a place that cannot be written); each refusal must come before any work (no
"trained" line), exit with status 2, name the flag and the path, and leave every file as it
was.  The tests run as root too, where permission bits do not stop a write: an unwritable
place is then a read-only mount (/sys) or /proc, and a read-only directory or file is a
place root may write (that case checks the write succeeds and is reported).
"""
import argparse
import os
import re
import shutil
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import fastnn
from fastnn.io import writer
from fastnn.cli.command import build_parser, input_path, output_path
from tests._helpers import run_cli

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
FAST = ["--epochs", "2", "--layers", "4", "--validation-split", "0.25"]

#: a valid command line for each subcommand that has file arguments; {name} fields are
#: filled per test.  A subcommand with an output but no entry here fails
#: test_every_output_flag_is_covered, so a new one cannot slip past these tests.
COMMANDS = {
    "train": ["train", "d.csv", "--target", "y", *FAST],
    "predict": ["predict", "m.npz", "d.csv"],
    "export": ["export", "m.npz"],
}
#: the file each output flag gets in a successful run (its suffix decides the format)
GOOD_NAME = {"--save": "out.npz", "--plot": "curve.png", "--output": "p.csv"}
#: more names whose suffix changes what is written
OTHER_NAMES = {"--output": ["p.npy"]}


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _arguments(kind):
    """[(command, flag or positional name)] of every argument of type `kind`."""
    found = []
    for command, parser in _subparsers().items():
        for action in parser._actions:
            if action.type is kind:
                found.append((command, action.option_strings[0] if action.option_strings
                              else action.dest))
    return found


OUTPUTS = _arguments(output_path)
INPUTS = _arguments(input_path)


def run(tmp_path, *argv):
    """fastnn.cli.command.main(argv) in tmp_path: (status, stdout, stderr), any status."""
    return run_cli(tmp_path, *argv, check=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A table d.csv and a model m.npz trained on it (made once, copied per test)."""
    base = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40),
                  "y": np.where(rng.normal(size=40) > 0, "yes", "no")}).to_csv(
        base / "d.csv", index=False)
    result = run(base, "train", "d.csv", "--target", "y", *FAST, "--save", "m.npz")
    assert result.returncode == 0, result.stderr
    return {name: (base / name).read_bytes() for name in ("d.csv", "m.npz")}


@pytest.fixture
def work(tmp_path, files):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    yield tmp_path
    for path in tmp_path.rglob("*"):  # undo the read-only cases so pytest can clean up
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _snapshot(directory):
    """{relative name: bytes or 'dir' or link target} of everything under directory."""
    seen = {}
    for path in sorted(directory.rglob("*")):
        name = str(path.relative_to(directory))
        if path.is_symlink():
            seen[name] = "-> " + os.readlink(path)
        elif path.is_dir():
            seen[name] = "dir"
        else:
            seen[name] = path.read_bytes()
    return seen


def _refused(work, argv, flag, shown):
    """Run argv; check it was refused before any work with a message naming flag and path,
    and that nothing under work changed (no file replaced, no temporary file left)."""
    before = _snapshot(work)
    result = run(work, *argv)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "trained" not in result.stdout and "wrote" not in result.stdout
    assert flag in result.stderr and repr(shown) in result.stderr, result.stderr
    assert _snapshot(work) == before
    return result.stderr


def _unwritable_folder():
    """A directory in which even root cannot create a file, or None."""
    for folder in ("/sys", "/proc"):
        try:
            writer._probe_directory(folder, "probe", folder)
        except OSError:
            return folder
    return None  # pragma: no cover - no such place on this machine


# ------------------------------------------------------------------------------ coverage

def test_every_output_flag_is_covered():
    assert OUTPUTS, "no argument of type output_path: the CLI checks nothing"
    for command, _ in OUTPUTS:
        assert command in COMMANDS, f"add a command line for {command!r} to COMMANDS"
    for command, flag in OUTPUTS:
        assert flag in GOOD_NAME, f"add a file name for {command} {flag} to GOOD_NAME"
    # an option whose help says it writes or saves something to a path must be typed
    # output_path, and every positional argument (all name files the command reads)
    # input_path
    for command, parser in _subparsers().items():
        for action in parser._actions:
            if not action.option_strings and action.dest != "help":
                assert action.type is input_path, (command, action.dest)
            elif re.search(r"\b(write|save)s?\b[^.;()]*\bto\b", action.help or "") and \
                    action.nargs != 0:
                assert action.type is output_path, (command, action.option_strings)


# ------------------------------------------------------------ an output aliasing an input

ALIASES = ["same name", "other spelling", "symlink", "hard link"]
#: (command, output flag, input argument) for every output and input of one command
PAIRS = [(command, flag, name) for command, flag in OUTPUTS
         for c, name in INPUTS if c == command]


def _alias(work, target, how):
    if how == "same name":
        return target
    if how == "other spelling":
        (work / "sub").mkdir()
        return os.path.join(".", "sub", "..", target)
    if how == "symlink":
        os.symlink(target, work / "link")
        return "link"
    os.link(work / target, work / "hard")
    return "hard"


@pytest.mark.parametrize("how", ALIASES)
@pytest.mark.parametrize("command, flag, name", PAIRS, ids=[" ".join(p) for p in PAIRS])
def test_an_output_is_never_one_of_the_inputs(work, command, flag, name, how):
    argv = COMMANDS[command]
    victim = getattr(build_parser().parse_args(argv), name)
    path = _alias(work, victim, how)
    message = _refused(work, [*argv, flag, path], flag, path)
    assert f"same file as the input {name} {victim!r}" in message


def test_two_outputs_of_one_command_are_never_the_same_file(work):
    multi = {}
    for command, flag in OUTPUTS:
        multi.setdefault(command, []).append(flag)
    pairs = [(c, flags) for c, flags in multi.items() if len(flags) > 1]
    assert pairs  # train: --save and --plot
    for command, flags in pairs:
        first, second = flags[:2]
        os.symlink("x.png", work / "alias.png")
        message = _refused(work, [*COMMANDS[command], first, "x.png", second, "alias.png"],
                           second, "alias.png")
        assert "are the same file" in message and first in message
        (work / "alias.png").unlink()


# ------------------------------------------------------------------ places that cannot be

PLACES = ["existing directory", "trailing separator", "missing folder", "parent is a file",
          "unwritable folder", "read-only folder", "read-only file"]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("command, flag", OUTPUTS, ids=[f"{c} {f}" for c, f in OUTPUTS])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(work, command, flag,
                                                                    place):
    name = GOOD_NAME[flag]
    argv = COMMANDS[command]
    if place == "existing directory":
        (work / "adir").mkdir()
        message = _refused(work, [*argv, flag, "adir"], flag, "adir")
        assert "is an existing directory; expected a file path" in message
    elif place == "trailing separator":  # "new/" means a directory; a file "new" is not it
        path = "new" + os.sep
        assert "ends in a path separator" in _refused(work, [*argv, flag, path], flag, path)
    elif place == "missing folder":
        path = os.path.join("missing", name)
        assert "does not exist" in _refused(work, [*argv, flag, path], flag, path)
    elif place == "parent is a file":
        path = os.path.join("d.csv", name)
        assert "is not a directory" in _refused(work, [*argv, flag, path], flag, path)
    elif place == "unwritable folder":
        folder = _unwritable_folder()
        if folder is None:  # pragma: no cover
            pytest.skip("no folder here that refuses even root")
        path = os.path.join(folder, name)
        assert "no file can be created" in _refused(work, [*argv, flag, path], flag, path)
    elif place == "read-only folder":
        (work / "ro").mkdir()
        path = os.path.join("ro", name)
        os.chmod(work / "ro", 0o555)
        if ROOT:  # root may write there: the write must then succeed and be reported
            result = run(work, *argv, flag, path)
            assert result.returncode == 0, result.stderr
            assert path in result.stdout and (work / path).stat().st_size > 0
        else:
            assert "no file can be created" in _refused(work, [*argv, flag, path], flag,
                                                        path)
    else:  # read-only file
        (work / name).write_bytes(b"keep me")
        os.chmod(work / name, 0o444)
        if ROOT:
            result = run(work, *argv, flag, name)
            assert result.returncode == 0, result.stderr
            assert (work / name).read_bytes() != b"keep me"
        else:
            assert "not writable" in _refused(work, [*argv, flag, name], flag, name)


# ------------------------------------------------------------ the path reported is written

NAMED = [(command, flag, name) for command, flag in OUTPUTS
         for name in [GOOD_NAME[flag], *OTHER_NAMES.get(flag, [])]]


@pytest.mark.parametrize("command, flag, name", NAMED, ids=[" ".join(n) for n in NAMED])
@pytest.mark.parametrize("spelling", ["plain", "upper-case suffix", "no suffix", "via link"])
def test_the_path_reported_is_the_path_written(work, command, flag, name, spelling):
    good = name
    stem, suffix = os.path.splitext(name)
    if spelling == "upper-case suffix":
        name = stem + suffix.upper()
    elif spelling == "no suffix":
        name = stem
    elif spelling == "via link":
        (work / "real").mkdir()
        os.symlink("real", work / "via")
        name = os.path.join("via", name)
    before = {n: (work / n).read_bytes() for n in ("d.csv", "m.npz")}
    result = run(work, *COMMANDS[command], flag, name)
    assert result.returncode == 0, result.stderr
    reported = re.findall(r" to (\S+?)(?: \(|$)", result.stdout, re.MULTILINE)
    assert name in reported, result.stdout
    assert (work / name).is_file() and (work / name).stat().st_size > 0
    # nothing else appeared: no suffix appended, no temporary file left
    expected = {"d.csv", "m.npz", name.split(os.sep)[0]}
    if spelling == "via link":
        expected |= {"real", os.path.join("real", good)}
    assert {str(p.relative_to(work)) for p in work.rglob("*")} == expected
    assert {n: (work / n).read_bytes() for n in ("d.csv", "m.npz")} == before
    if flag == "--plot":
        assert (work / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # PNG without suffix
    if flag == "--save":
        assert fastnn.load(work / name).n_params > 0
    if command == "predict" and name.lower().endswith(".npy"):
        assert np.load(work / name).shape[0] == 40
    if command == "export":   # an ONNX graph whatever the suffix
        assert b"fastnn" in (work / name).read_bytes()[:200]


def test_an_unknown_image_suffix_is_refused_before_training(work):
    before = _snapshot(work)
    result = run(work, *COMMANDS["train"], "--plot", "curve.pngx", "--save", "out.npz")
    assert result.returncode == 2 and "trained" not in result.stdout
    assert "--plot 'curve.pngx'" in result.stderr and ".png" in result.stderr
    assert _snapshot(work) == before


def test_the_model_is_saved_before_the_plot_can_fail(work, monkeypatch):
    def broken(self, ax=None):
        raise OSError("the plot failed")
    monkeypatch.setattr(fastnn.History, "plot", broken)
    result = run(work, *COMMANDS["train"], "--plot", "curve.png", "--save", "out.npz")
    # status 1: the run failed after training, not the call (2 is for bad input)
    assert result.returncode == 1 and "the plot failed" in result.stderr
    assert "the model was saved to out.npz" in result.stderr
    assert "saved the model to out.npz" in result.stdout
    assert fastnn.load(work / "out.npz").n_params > 0
    assert not (work / "curve.png").exists()


def test_an_output_to_a_pipe_is_written_in_place(work):
    if not hasattr(os, "mkfifo"):  # pragma: no cover
        pytest.skip("no FIFOs here")
    os.mkfifo(work / "fifo")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "predict", "m.npz", "d.csv",
                             "--output", "fifo"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(work / "fifo", "rb") as fh:
        data = fh.read()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert data.startswith(b"y,") and data.count(b"\n") == 41
    assert stat.S_ISFIFO(os.lstat(work / "fifo").st_mode)  # not replaced by a file


# --------------------------------------------------------------------- the library saves

def _savers():
    model = fastnn.MLP([3, 4, 2], seed=0)
    ensemble = fastnn.MLPEnsemble([3, 4, 2], 2, seed=0)
    savers = [("MLP.save", model.save), ("MLPEnsemble.save", ensemble.save),
              ("fastnn.io.saving.save_model", lambda p: fastnn.io.saving.save_model(model, p))]
    try:
        import onnx  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    else:  # noqa
        savers += [("to_onnx", lambda p: fastnn.to_onnx(model, p)),
                   ("MLP.save_onnx", model.save_onnx),
                   ("to_onnx(ensemble)", lambda p: fastnn.to_onnx(ensemble, p))]
    return savers


SAVERS = _savers()


@pytest.mark.parametrize("name, save", SAVERS, ids=[s[0] for s in SAVERS])
def test_library_saves_refuse_what_cannot_be_written(tmp_path, name, save):
    (tmp_path / "adir").mkdir()
    (tmp_path / "file").write_bytes(b"keep me")
    cases = [(tmp_path / "adir", IsADirectoryError, "is an existing directory"),
             (tmp_path / "missing" / "x", FileNotFoundError, "does not exist"),
             (tmp_path / "file" / "x", NotADirectoryError, "is not a directory"),
             (str(tmp_path / "new") + os.sep, IsADirectoryError, "ends in a path separator"),
             ("", ValueError, "empty")]
    folder = _unwritable_folder()
    if folder is not None:
        cases.append((os.path.join(folder, "x"), PermissionError, "no file can be created"))
    for path, error, text in cases:
        with pytest.raises(error, match=text) as info:
            save(path)
        assert "path" in str(info.value) and str(path) in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["adir", "file"]
    assert os.listdir(tmp_path / "adir") == []
    assert (tmp_path / "file").read_bytes() == b"keep me"
    save(tmp_path / "ok")  # and a good path is written exactly as given
    assert sorted(os.listdir(tmp_path)) == ["adir", "file", "ok"]


def test_the_writer_checks_before_the_work(tmp_path, monkeypatch):
    # to_onnx builds no graph and MLPEnsemble.save serialises no member for a directory
    pytest.importorskip("onnx")
    model = fastnn.MLP([3, 4, 2], seed=0)
    calls = []
    monkeypatch.setattr(fastnn.MLP, "copy", lambda self: calls.append("copy"))
    with pytest.raises(IsADirectoryError):
        fastnn.to_onnx(model, tmp_path)
    monkeypatch.setattr(fastnn.io.saving, "save_model", lambda *a: calls.append("member"))
    with pytest.raises(IsADirectoryError):
        fastnn.MLPEnsemble([3, 4, 2], 2, seed=0).save(tmp_path)
    assert calls == []


def test_a_special_file_is_written_in_place_and_checked(tmp_path):
    target = writer.write_output(os.devnull, lambda fh: fh.write(b"x"))
    assert target.special and os.path.exists(os.devnull)
    with pytest.raises(FileNotFoundError, match="names no open descriptor"):
        writer.check_output("/dev/fd/999", "--output")


# --------------------------------------------------- one writer: no other write in the package

#: write calls outside fastnn/io/writer.py, each reviewed: (module, the call's text, why)
REVIEWED = {
    ("io/saving.py", "np.savez(fh"): "the archive writer handed to write_output",
    ("io/ensemble_file.py", "np.savez_compressed(fh"): "inside write_output's callback",
    ("io/ensemble_file.py", 'open(member_path, "wb"'): "read_ensemble's scratch copy of a "
                                                         "member, in its own TemporaryDirectory",
    ("cli/common.py", ".savefig(fh"): "inside write_output's callback",
    ("cli/predict.py", "np.save(fh"): "inside write_output's callback",
    ("cli/pipes.py", "os.open(os.devnull"): "points a closed pipe's descriptor at devnull",
    ("cli/command.py", 'open(os.devnull, "w"'): "--quiet sends stdout to devnull",
}
_WRITE_CALL = re.compile(r"""(?:\bnp\.(?:save|savez|savez_compressed|savetxt)\(\w*|"""
                         r"""\.savefig\(\w*|\.tofile\(|\bopen\([^)]*["'][wax]b?\+?["']|"""
                         r"""\bos\.open\(\w*(?:\.\w+)?|\bos\.(?:replace|rename)\(|"""
                         r"""\bshutil\.(?:copy\w*|move)\(|\.write_(?:bytes|text)\()""")


def test_every_write_in_the_package_goes_through_the_writer():
    package = os.path.dirname(fastnn.__file__)
    found = set()
    for name in sorted(os.path.relpath(os.path.join(folder, f), package)
                       for folder, _, files in os.walk(package) for f in files):
        if not name.endswith((".py", ".pyx")) or name == os.path.join("io", "writer.py"):
            continue
        with open(os.path.join(package, name), encoding="utf-8") as fh:
            for line in fh:
                code = line.split("#")[0]
                for match in _WRITE_CALL.finditer(code):
                    found.add((name, match.group(0)))
    assert found == set(REVIEWED), (
        "a file write outside fastnn.io.writer: route it through write_output, or review it "
        "and add it to REVIEWED with the reason")


# ------------------------------------------------------------ limits of the file system

def _name_max(folder):
    return os.pathconf(folder, "PC_NAME_MAX")


def _path_max(folder):
    return os.pathconf(folder, "PC_PATH_MAX")


@pytest.mark.parametrize("command, flag", OUTPUTS, ids=[f"{c} {f}" for c, f in OUTPUTS])
def test_a_name_longer_than_the_file_system_allows_is_refused_before_any_work(work, command,
                                                                              flag):
    name = "x" * (_name_max(work) + 1)
    message = _refused(work, [*COMMANDS[command], flag, name], flag, name)
    assert "PC_NAME_MAX" in message


@pytest.mark.parametrize("command, flag", OUTPUTS, ids=[f"{c} {f}" for c, f in OUTPUTS])
def test_a_path_longer_than_the_file_system_allows_is_refused_before_any_work(work, command,
                                                                              flag):
    # real folders, so the path is long but every component is legal
    step = "d" * min(200, _name_max(work))
    depth = _path_max(work) // (len(step) + 1) + 1
    fd = os.open(work, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir(step, dir_fd=fd)
            inner = os.open(step, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(fd)
        fd = None
        path = os.path.join(*[step] * depth, GOOD_NAME[flag])
        # (pathlib cannot walk this deep: compare the top level, then the deepest folder)
        before = sorted(os.listdir(work))
        result = run(work, *COMMANDS[command], flag, path)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert "trained" not in result.stdout
        assert flag in result.stderr and repr(path) in result.stderr, result.stderr
        assert "PC_PATH_MAX" in result.stderr
        assert sorted(os.listdir(work)) == before
        fd = os.open(work, os.O_RDONLY)
        for _ in range(depth):
            inner = os.open(step, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        assert os.listdir(fd) == []
    finally:
        if fd is not None:
            os.close(fd)
        shutil.rmtree(work / step)  # before the fixture's pathlib walk


def test_the_temporary_name_fits_when_the_target_name_uses_the_limit(tmp_path):
    # 4-byte characters: a name within NAME_MAX in bytes whose first 64 characters are not
    limit = _name_max(tmp_path)
    name = "\U0001F600" * (limit // 4)
    writer.write_output(tmp_path / name, lambda fh: fh.write(b"data"))
    assert (tmp_path / name).read_bytes() == b"data"
    assert os.listdir(tmp_path) == [name]
    # and a name one byte over the limit is refused by the check, not by the write
    with pytest.raises(OSError, match="PC_NAME_MAX") as info:
        writer.check_output(tmp_path / ("x" * (limit + 1)), "--save")
    assert "--save" in str(info.value)
    import errno
    assert info.value.errno == errno.ENAMETOOLONG


# ------------------------------------------------------------ errors while writing

def test_a_folder_removed_before_the_write_is_named_in_the_error(tmp_path):
    (tmp_path / "out").mkdir()
    path = os.path.join(str(tmp_path), "out", "m.npz")
    target = writer.check_output(path, "--save")

    def write(fh):  # the folder goes while the file is written
        fh.write(b"data")
        shutil.rmtree(tmp_path / "out")
    with pytest.raises(FileNotFoundError) as info:
        writer.write_output(target, write)
    assert str(info.value).startswith(f"cannot write --save {path!r}: ")
    assert "No such file or directory" in str(info.value)
    import errno
    assert info.value.errno == errno.ENOENT


def test_a_full_disk_is_named_in_the_error_and_leaves_the_previous_file(tmp_path):
    import errno
    folder = tmp_path / "tiny"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        path = os.path.join(str(folder), "m.npz")
        writer.write_output(path, lambda fh: fh.write(b"old"))
        with pytest.raises(OSError) as info:
            writer.write_output(writer.check_output(path, "--save"),
                                lambda fh: fh.write(b"x" * (1 << 20)))
        assert info.value.errno == errno.ENOSPC
        assert str(info.value) == f"cannot write --save {path!r}: No space left on device"
        assert os.listdir(folder) == ["m.npz"]
        with open(path, "rb") as fh:
            assert fh.read() == b"old"
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_an_error_of_the_writing_callback_keeps_its_class_and_is_named(tmp_path):
    def broken(fh):
        raise PermissionError(13, "Permission denied")
    with pytest.raises(PermissionError, match=r"^cannot write --plot '.*p\.png': "
                                              r"Permission denied$"):
        writer.write_output(writer.check_output(tmp_path / "p.png", "--plot"), broken)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------ a replaced file's owner

@pytest.mark.skipif(not ROOT, reason="only root can give a file to another user")
def test_a_replaced_file_keeps_its_owner_and_group(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"old")
    os.chown(path, 12345, 23456)
    os.chmod(path, 0o640)
    writer.write_output(path, lambda fh: fh.write(b"new"))
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, 0o640)
    assert path.read_bytes() == b"new"


# ------------------------------------------------------------ stdout as an output

def _cli(work, argv, stdout):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    return subprocess.run([sys.executable, "-m", "fastnn", *argv], cwd=work, env=env,
                          stdout=stdout, stderr=subprocess.PIPE, timeout=120)


@pytest.mark.parametrize("how", ["append", "hard link"])
def test_stdout_appending_to_an_input_is_refused_before_any_work(work, how):
    victim = "d.csv"
    if how == "hard link":
        os.link(work / victim, work / "hard")
    before = _snapshot(work)
    with open(work / (victim if how == "append" else "hard"), "ab") as out:
        result = _cli(work, ["predict", "m.npz", "d.csv"], out)
    assert result.returncode == 2, result.stderr
    err = result.stderr.decode()
    assert "stdout" in err and f"same file as the input data {victim!r}" in err, err
    assert _snapshot(work) == before


COMMANDS_READING_INPUTS = {
    "predict": ["predict", "m.npz", "d.csv", "--output", "p.csv"],
    "train": ["train", "d.csv", "--target", "y", *FAST, "--save", "new.npz"],
}


@pytest.mark.parametrize("command, victim", [("predict", "d.csv"), ("predict", "m.npz"),
                                             ("train", "d.csv")])
def test_stderr_appending_to_an_input_is_refused_without_writing_it(work, command, victim):
    # `2>> d.csv`: errors, warnings and the progress bar would be appended to an input;
    # refused before any work, and the refusal itself is said on stdout, not on stderr
    argv = COMMANDS_READING_INPUTS[command]
    before = _snapshot(work)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    with open(work / victim, "ab") as err:
        result = subprocess.run([sys.executable, "-m", "fastnn", *argv], cwd=work, env=env,
                                stdout=subprocess.PIPE, stderr=err, timeout=120)
    assert result.returncode == 2
    out = result.stdout.decode()
    assert "stderr" in out and "same file as the input" in out and victim in out, out
    assert _snapshot(work) == before


@pytest.mark.parametrize("argv", [
    ["predict", "m.npz", "d.csv"],
    ["predict", "m.npz", "d.csv", "--quiet", "--output", "o.csv"],   # stdout unused
    ["train", "d.csv", "--target", "y", *FAST, "--quiet"],
], ids=["predict", "predict-quiet-output", "train-quiet"])
def test_stdout_and_stderr_both_onto_an_input_exit_2_and_write_nothing(work, argv):
    # the refusal itself must not land in the input: with --quiet stdout is not written,
    # yet it was where the refusal went when stderr was the input
    before = _snapshot(work)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    with open(work / "d.csv", "ab") as both:
        result = subprocess.run([sys.executable, "-m", "fastnn", *argv],
                                cwd=work, env=env, stdout=both, stderr=both, timeout=120)
    assert result.returncode == 2
    assert _snapshot(work) == before


def test_an_output_that_is_stdout_gets_only_its_own_bytes(work):
    # --save /dev/stdout > s.npz mixed the report into the model file (a bad CRC on load);
    # --output /dev/stdout > p.csv put "wrote 40 predictions ..." into the table.  The report
    # goes to stderr when an output is stdout itself
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    with open(work / "s.npz", "wb") as out:
        result = subprocess.run([sys.executable, "-m", "fastnn", "train", "d.csv", "--target",
                                 "y", *FAST, "--save", "/dev/stdout"], cwd=work, env=env,
                                stdout=out, stderr=subprocess.PIPE, timeout=120)
    assert result.returncode == 0, result.stderr
    assert b"saved the model to /dev/stdout" in result.stderr
    model = fastnn.load(work / "s.npz")
    with open(work / "p.csv", "wb") as out:
        result = subprocess.run([sys.executable, "-m", "fastnn", "predict", "s.npz", "d.csv",
                                 "--output", "/dev/stdout"], cwd=work, env=env, stdout=out,
                                stderr=subprocess.PIPE, timeout=120)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(work / "p.csv")
    assert len(table) == 40 and list(table.columns) == ["y", "no", "yes"], table.columns
    X = pd.read_csv(work / "d.csv")[["a", "b"]].to_numpy()
    np.testing.assert_allclose(table[["no", "yes"]].to_numpy(),
                               model.predict(model.preprocessor_.transform(X)), rtol=1e-6)


def test_stdout_to_another_file_still_gets_the_predictions(work):
    with open(work / "p.csv", "wb") as out:
        result = _cli(work, ["predict", "m.npz", "d.csv"], out)
    assert result.returncode == 0, result.stderr
    assert (work / "p.csv").read_bytes().count(b"\n") == 41
    # with --output, stdout is not the product: a log appended anywhere is not refused
    with open(work / "log", "ab") as out:
        result = _cli(work, ["predict", "m.npz", "d.csv", "--output", "q.csv"], out)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------ kill -9 during a save

def test_a_kill_during_a_save_leaves_the_target_and_at_most_the_documented_leftover(tmp_path):
    import signal
    import time
    (tmp_path / "m.npz").write_bytes(b"old")
    code = ("import sys, time\n"
            "from fastnn.io import writer\n"
            "def write(fh):\n"
            "    fh.write(b'partial'); fh.flush(); print('writing', flush=True)\n"
            "    time.sleep(60)\n"
            "writer.write_output('m.npz', write)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"writing\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:  # pragma: no cover
            proc.kill()
        proc.stdout.close()
    assert (tmp_path / "m.npz").read_bytes() == b"old"
    left = sorted(set(os.listdir(tmp_path)) - {"m.npz"})
    assert len(left) == 1 and re.fullmatch(r"\.m\.npz\.[0-9a-f]{12}\.tmp", left[0]), left
    # and the documentation says so, rather than promising the file is removed
    page = os.path.join(os.path.dirname(os.path.dirname(fastnn.__file__)), "docs", "guide",
                        "errors.md")
    if not os.path.exists(page):  # pragma: no cover - an installed package
        return
    with open(page, encoding="utf-8") as fh:
        text = " ".join(fh.read().split())
    assert "kill -9) leave the previous file intact and remove their temporary" not in text
    assert "`.NAME.<hex>.tmp`" in text and "safe to delete" in text


def test_a_symlink_loop_is_named_a_loop_not_an_unwritable_file(tmp_path):
    loop = tmp_path / "loop.npz"
    os.symlink(loop, loop)  # a link to itself
    with pytest.raises(OSError, match="links form a loop") as info:
        writer.check_output(str(loop), "--save")
    assert "not writable" not in str(info.value)


@pytest.mark.parametrize("path", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_a_descriptor_path_output_appends_where_stdout_was_opened_for_appending(work, path):
    # `--output /dev/stdout >> log.txt` re-opened the path with truncation: the log's earlier
    # lines were lost.  The descriptor itself is written, at its offset
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastnn.__file__)))
    (work / "log.txt").write_bytes(b"EARLIER\n")
    with open(work / "log.txt", "ab") as out:
        result = subprocess.run([sys.executable, "-m", "fastnn", "predict", "m.npz", "d.csv",
                                 "--output", path], cwd=work, env=env, stdout=out,
                                stderr=subprocess.PIPE, timeout=120)
    assert result.returncode == 0, result.stderr
    text = (work / "log.txt").read_text()
    assert text.startswith("EARLIER\ny,no,yes\n") and len(text.splitlines()) == 42, text[:200]
