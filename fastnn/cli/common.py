"""What the subcommands of ``fastnn`` share: the two error kinds, reading the data file,
the optimizer from the flags, the one fit every run goes through, saving the model (or
rescuing it) and the learning-curve plot."""
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time

import numpy as np

import fastnn
from fastnn.nn.losses import get_loss
from fastnn.optim.optimizers import OPTIMIZERS
from fastnn.io.tabular import read_table
from fastnn.io.writer import write_output

#: loss names -> the task they model, to pick the task when only --loss is given
_CLASSIFICATION_LOSSES = ("cross_entropy", "bce")
_REGRESSION_LOSSES = ("mse", "gaussian_nll", "poisson")


class UsageError(Exception):
    """A problem with the user's input: printed without a traceback."""


def _optimizer(args):
    # (the optimizer refuses it too, naming lr and the schedule, which the command has not)
    tiny = float(np.finfo(getattr(args, "dtype", None) or "float32").tiny)
    if not args.lr >= tiny:
        raise UsageError(f"--lr {args.lr:g} is below {tiny:.3g}, the smallest normal "
                         f"{args.dtype} number: every step would be flushed to zero; expected "
                         "a larger rate")
    decay = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
    if args.optimizer == "sgd":
        return fastnn.SGD(lr=args.lr, momentum=args.momentum, **decay)
    return OPTIMIZERS[args.optimizer](lr=args.lr, **decay)


def _verbosity(args):
    if args.quiet:
        return 0
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return 1
    return 2 if sys.stderr.isatty() else 1  # a bar in a terminal, lines in a log


class RunFailed(Exception):
    """The training ran, but an output failed (or the run itself stopped): status 1 (130
    after Ctrl-C), not the usage status 2; the message says what was kept and where."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (``timeout``, a batch system, a closed terminal) during a command:
    it stops a run as Ctrl-C does, with the status a shell gives that signal."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: the signals that stop a run as Ctrl-C does (and that a rescue's write ignores)
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                      if hasattr(signal, name))


def stop_status(exc):
    """The exit status of a command stopped by `exc` (KeyboardInterrupt or Stopped):
    128 + the signal's number, as a shell reports it (130 for Ctrl-C)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def stop_text(exc):
    """What stopped a command, for its message: Ctrl-C, or the signal's name."""
    return ("interrupted (Ctrl-C)" if not isinstance(exc, Stopped) else
            f"stopped by {signal.Signals(exc.signum).name}")


def _raise_stopped(signum, frame):
    raise Stopped(signum)


@contextlib.contextmanager
def keeping_the_run(args):
    """The one place a ``fastnn train`` run is kept, from its first step to the command's
    end.  SIGTERM and SIGHUP stop it as Ctrl-C does (``Stopped``).  A stop during training
    is ``_fit_and_report``'s to handle; one after it (while saving, scoring the held-out
    rows or plotting) keeps the trained model: at --save when it was written there, else
    in a rescue file, and the error (RunFailed, status 128 + the signal) says where."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in _STOP_SIGNALS} \
        if main_thread else {}
    try:
        yield
    except KeyboardInterrupt as exc:
        model = getattr(args, "trained_model", None)
        if model is None:  # before training: nothing to keep
            raise
        kept = getattr(args, "saved_to", None) or _rescue(model)
        raise RunFailed(f"{stop_text(exc)} after training; the trained model was saved to "
                        f"{kept}", stop_status(exc)) from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fit_and_report(model, X, y, loss, args, **kwargs):
    """Train `model` as the flags say; the one place every `fastnn train` run passes through.

    A run that stops before its end (divergence, Ctrl-C, SIGTERM or SIGHUP under
    ``keeping_the_run``) keeps what it reached: the model's parameters (the last good ones
    after a divergence, the last completed epoch's after a stop) are saved to a new file
    beside --save, never over it, and the error says where.  Once trained, the model is
    ``args.trained_model`` (for ``keeping_the_run``).
    """
    start = time.perf_counter()
    try:
        history = model.fit(X, y, loss, _optimizer(args), epochs=args.epochs,
                            batch_size=args.batch_size, seed=args.seed,
                            verbose=_verbosity(args), n_threads=args.threads, **kwargs)
    except ValueError as exc:
        # the loss's check of its targets speaks of fit's argument y: name the column
        text = str(exc)
        if text.startswith("y ") and getattr(args, "target", None) is not None:
            raise UsageError(f"{args.data}: the target column {args.target!r} "
                             f"{text[2:]}") from exc
        raise
    except (fastnn.TrainingDiverged, KeyboardInterrupt) as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        what = stop_text(exc) if interrupted else f"training diverged: {exc}"
        # kept beside, never over --save: a file there may be an earlier, good model
        kept = _rescue(model)
        left = ""
        if getattr(args, "save", None):
            target = args.targets["--save"].path
            left = (f"; --save {target} was left as it was" if os.path.exists(target) else
                    f"; nothing was written to --save {target}")
        raise RunFailed(f"{what}; the model's parameters at the stop were saved to "
                        f"{kept}{left}", stop_status(exc) if interrupted else 1) from exc
    args.trained_model = model
    print(f"trained {model.n_params:,} parameters for {len(history)} epochs in "
          f"{time.perf_counter() - start:.2f} s")
    return history


def _is_table(path):
    return not str(path).lower().endswith(".npz")


def _read(args, path):
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    try:
        return read_table(path, delimiter=args.delimiter, index_col=args.index_col,
                          encoding=args.encoding,
                          na_values=[v for v in args.na_values.split(",") if v.strip()])
    except LookupError:
        raise UsageError(f"--encoding {args.encoding!r}: unknown encoding") from None


def load_npz(path, target=None, need_target=True):
    """(X, y) from a .npz holding arrays X and y (or the array named by --target)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data:
                raise UsageError(f"{path}: no array named 'X' (found {sorted(data.files)})")
            X = data["X"]
            key = target or "y"
            if not need_target:
                return X, None
            if key not in data:
                raise UsageError(f"{path}: no target array named {key!r} (found "
                                 f"{sorted(data.files)}); name it with --target")
            return X, data[key]
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read it as .npz ({exc})") from None


def _task_and_loss(args):
    """(task or None, loss name or None) from --task and --loss, checked for agreement."""
    loss = get_loss(args.loss).name if args.loss else None
    task = args.task
    if loss is not None:
        implied = ("classification" if loss in _CLASSIFICATION_LOSSES else
                   "regression" if loss in _REGRESSION_LOSSES else None)
        if implied is None:
            raise UsageError(f"--loss {args.loss}: tables support "
                             f"{', '.join(_CLASSIFICATION_LOSSES + _REGRESSION_LOSSES)}; "
                             "use the Python API for the others")
        if task is not None and task != implied:
            raise UsageError(f"--loss {args.loss} is a {implied} loss but --task is {task}")
        task = implied
    return task, loss


def _save(model, args):
    """Save the trained model to --save (checked by _run); the path written.

    A write that fails after training (a full disk, the folder removed meanwhile) does not
    lose the run: the model goes to a file in the temporary directory instead, and the error
    (RunFailed, status 1) names both.
    """
    try:
        model.save(args.targets["--save"])
        args.saved_to = args.targets["--save"].path
        return args.saved_to
    except OSError as exc:
        failure = exc
    raise RunFailed(f"{failure}; the trained model was saved to {_rescue(model, failure)} "
                    "instead") from failure


def _rescue(model, failure=None):
    """Save `model` to a new file in the temporary directory, Ctrl-C, SIGTERM and SIGHUP
    ignored meanwhile (a second Ctrl-C lost the run); the path written, or RunFailed when
    even that fails."""
    fd, rescue = tempfile.mkstemp(prefix="fastnn-rescued-", suffix=".npz")
    os.close(fd)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, signal.SIG_IGN)
                for sig in (signal.SIGINT, *_STOP_SIGNALS)} if main_thread else {}
    try:
        model.save(rescue)
        return rescue
    except OSError as exc:
        os.unlink(rescue)
        first = f"{failure}; " if failure is not None else ""
        raise RunFailed(f"{first}saving the trained model to {rescue} failed too ({exc}): "
                        "the run is lost") from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _plot_format(path):
    """The image format --plot's suffix names, checked before training (PNG without one).

    The image is written exactly at `path`: matplotlib, given a name, would append ".png" to a
    name without a suffix, and fail after training on a suffix it does not know.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib (or "
                         "fastnn[plot])") from None
    suffix = os.path.splitext(os.path.basename(path))[1][1:].lower()
    # pgf needs a LaTeX installation, found only when the figure is drawn: after training
    formats = {k: v for k, v in FigureCanvasAgg.get_supported_filetypes().items()
               if k != "pgf"}
    if suffix and suffix not in formats:
        raise UsageError(f"--plot {path!r}: matplotlib cannot write a .{suffix} image; "
                         f"expected one of {', '.join('.' + f for f in sorted(formats))} "
                         "(or no suffix for PNG)")
    return suffix or "png"


def _plot(history, args, model):
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    try:
        history.plot(ax=ax)
        fmt = _plot_format(args.plot)
        written = write_output(args.targets["--plot"],
                               lambda fh: fig.savefig(fh, format=fmt)).path
    except Exception as exc:  # optional, after the model was saved: say so, no traceback
        kept = (args.targets["--save"].path if getattr(args, "save", None) else
                _rescue(model))
        text = str(exc) if "--plot" in str(exc) else f"--plot {args.plot!r}: {exc}"
        raise RunFailed(f"{text}; the model was saved to {kept}") from exc
    finally:
        plt.close(fig)
    print(f"saved the learning curve to {written}")


def unseen_notes(unseen, where):
    """Lines for the category cells of `where` encoded as all zeros (``Preprocessor.select``'s
    ``unseen``: {column: (rows with a new level, rows missing, example levels)})."""
    notes = []
    for name, (n_new, n_missing, examples) in unseen.items():
        parts = []
        if n_new:
            shown = ", ".join(map(repr, examples)) + (", ..." if n_new > len(examples) else "")
            parts.append(f"{n_new} row{'s' if n_new > 1 else ''} with a level the training "
                         f"rows lacked ({shown})")
        if n_missing:
            parts.append(f"{n_missing} row{'s' if n_missing > 1 else ''} missing")
        notes.append(f"{where}: column {name!r}: {' and '.join(parts)}, encoded as all-zero "
                     "indicators")
    return notes
