"""The ``fastnn`` command: ``demo``, ``train`` and ``predict``.

    fastnn demo [--dataset spirals|digits] [--epochs N]
    fastnn train data.csv --target y [--layers 64] [--save model.npz]
    fastnn predict model.npz data.csv --output predictions.csv

``train`` reads a table (.csv, .tsv, .txt; see fastnn.io.tabular) or a .npz with arrays X and y.
From a table it infers the task from the target column (text, bool or few whole numbers:
classification with cross-entropy; other numbers: regression with MSE) and prints it,
standardises the inputs and a regression target, holds out a validation part, reports the
held-out accuracy or R^2 at the end, and stores the feature names, the classes and the
statistics in the model file, so that ``predict`` applies the same preprocessing, selects the
columns by name and gives back class labels and values in the target's units.

Every file the command writes is named by a flag marked as an output (``--save``,
``--plot``, ``--output``) and every file it reads by an argument marked as an input; before
any work starts, ``_run`` hands them all to ``fastnn.io.writer.check_outputs``, which refuses an
output that is an input or another output (links resolved), an existing directory, or a
place that cannot be written.  Files are written exactly at the path given, atomically,
and that path is the one reported.  ``train`` saves the model before the optional outputs
(the held-out metric, the plot), so nothing after the save can lose the run.

Errors in the user's input are reported as one line on stderr with exit status 2 (no
traceback); a run that diverges or runs out of memory as one line with exit status 1;
anything else is a bug and keeps its traceback.  A closed output pipe (``fastnn train ... |
head``) silences the rest of the output and the command runs to its end, model saved, then
exits with status 141 (128 + SIGPIPE).
"""
import argparse
import contextlib
import csv
import io
import os
import signal
import sys
import tempfile
import threading
import time
import types

import numpy as np

import fastnn
from fastnn.datasets import make_spirals, train_test_split
from fastnn.nn.layers import ACTIVATIONS
from fastnn.nn.losses import LOSS_NAMES, get_loss
from fastnn.optim.optimizers import OPTIMIZERS
from fastnn.io.tabular import (Preprocessor, check_complete, check_representable,
                               feature_matrix, read_table)
from fastnn.io.writer import check_outputs, write_output

_TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")
#: loss names -> the task they model, to pick the task when only --loss is given
_CLASSIFICATION_LOSSES = ("cross_entropy", "bce")
_REGRESSION_LOSSES = ("mse", "gaussian_nll", "poisson")


class UsageError(Exception):
    """A problem with the user's input: printed without a traceback."""


# ---------------------------------------------------------------------- argument types
# argparse reports a failed type with the flag's name ("argument --epochs: ..."), so every
# range is checked here rather than by the Python function that would name its own argument

def _layer_list(text):
    """Hidden-layer widths "64,64"; an empty string is no hidden layer (a linear model)."""
    if not text.strip():
        return []
    try:
        sizes = [int(part) for part in text.split(",")]  # "64,,64" and "," are refused
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64; "
                                          f"got {text!r}") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be >= 1; got {text!r}")
    return sizes


def _int_at_least(low, high=2**31 - 1):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}]; got "
                                              f"{value}")
        return value
    parse.__name__ = f"int >= {low}"
    return parse


def _initializer(text):
    try:
        fastnn.nn.init.get_initializer(text)
    except (TypeError, ValueError) as exc:
        # the message names get_initializer's argument; say it of the flag's value instead
        message = str(exc).replace(f"initializer={text!r} is not supported",
                                   f"{text!r} is not an initializer name")
        raise argparse.ArgumentTypeError(message) from None
    return text


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {text}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0; got {text}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {text}")
    return value


def _momentum(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {text!r}")
    return value


def input_path(text):
    """argparse type of an argument naming a file the command reads."""
    return text


def output_path(text):
    """argparse type of an argument naming a file the command writes.

    ``_run`` checks every argument of this type before the command starts, against every
    argument of type ``input_path`` (``fastnn.io.writer.check_outputs``): a new output flag only
    needs ``type=output_path`` to be checked, and tests/test_outputs.py finds it the same way.
    """
    return text


input_path.__name__, output_path.__name__ = "input path", "output path"


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every --help line, and the description's line breaks kept.

    A help text that states its default itself ("default: ...") is left as it is, rather than
    followed by "(default: None)"; so is a switch (its default is "off").
    """

    def _get_help_string(self, action):
        if "default:" in (action.help or "") or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def _add_training_flags(p, *, epochs, lr, batch_size, layers, activation="relu"):
    p.add_argument("--layers", type=_layer_list, default=",".join(map(str, layers)),
                   help="hidden layer widths, comma-separated (an empty string: no hidden "
                        "layer, a linear model)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default=activation,
                   help="hidden activation" + ("; default: tanh for a table, relu for a .npz"
                                               if activation is None else ""))
    p.add_argument("--init", type=_initializer, default=None,
                   help="weight initializer name (fastnn.nn.init; PyTorch's and Keras' names "
                        "and meanings); default: kaiming_normal for the ReLU family, "
                        "glorot_uniform otherwise")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adam",
                   help="optimizer (adamw: decoupled weight decay, --weight-decay)")
    p.add_argument("--weight-decay", type=_non_negative_float, default=None,
                   help="weight decay of the weight matrices: L2 in the gradient for sgd and "
                        "adam, decoupled for adamw; default: 0, and 0.01 for adamw "
                        "(torch.optim.AdamW's)")
    p.add_argument("--lr", "--learning-rate", type=_positive_float, default=lr,
                   help="learning rate")
    p.add_argument("--momentum", type=_momentum, default=0.9, help="SGD momentum")
    p.add_argument("--epochs", type=_int_at_least(1), default=epochs,
                   help="passes over the training data (at most, with early stopping)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=batch_size,
                   help="samples per minibatch")
    p.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="initial weights, shuffling and the validation split")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="precision of the model")
    # default None: fit's default (fastnn.runtime.threads.default_threads: FASTNN_NUM_THREADS,
    # OMP_NUM_THREADS, else every core available)
    p.add_argument("--threads", type=_int_at_least(1), default=None,
                   help="fastnn's threads while training (the weights are the same "
                        "bits for any count; see fastnn.runtime.threads); default: "
                        "FASTNN_NUM_THREADS or OMP_NUM_THREADS, else every core available")
    _add_quiet_flag(p)


def _add_quiet_flag(p):
    p.add_argument("--quiet", action="store_true",
                   help="nothing on stdout: no summary, per-epoch lines or progress bar (a bar "
                        "shows otherwise when tqdm is installed and stderr is a terminal); "
                        "errors and warnings still go to stderr")


def _add_table_flags(p):
    p.add_argument("--delimiter", default=None,
                   help="field delimiter of a table (\\t for tab); default: from the suffix "
                        "(.csv comma, .tsv tab, .txt sniffed)")
    p.add_argument("--index-col", default=None,
                   help="a column of row labels to ignore (name or 0-based position); "
                        "default: an unnamed first column, as DataFrame.to_csv writes it")
    p.add_argument("--encoding", default="utf-8",
                   help="text encoding of a table (a UTF-8 byte-order mark is skipped)")
    p.add_argument("--na-values", default="", metavar="TEXT,TEXT",
                   help="comma-separated cell texts that mean a missing value, such as ?,-999; "
                        "default: only pandas' spellings (empty, NA, NaN, null, N/A, ...)")


def build_parser():
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__,
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"fastnn {fastnn.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train a classifier on a built-in data set",
                          formatter_class=_Formatter)
    demo.add_argument("--dataset", choices=["spirals", "digits"], default="spirals",
                      help="spirals: generated, needs only numpy; digits: scikit-learn's "
                           "bundled handwritten digits (needs scikit-learn)")
    _add_training_flags(demo, epochs=40, lr=0.01, batch_size=32, layers=[64, 64])

    train = sub.add_parser(
        "train", formatter_class=_Formatter,
        help="train on a table (.csv/.tsv/.txt) or a .npz (arrays X, y)",
        description="Train on a table with a header row (.csv, .tsv, .txt) or a .npz with "
                    "arrays X and y.\nThe task (classification or regression) is inferred "
                    "from the target and printed;\n--task or --loss override it.")
    train.add_argument("data", type=input_path,
                       help="a table with a header row, or a .npz with arrays X and y")
    train.add_argument("--target", default=None,
                       help="table: the target column (required); .npz: the target array, "
                            "default: y")
    train.add_argument("--task", choices=["classification", "regression"], default=None,
                       help="default: inferred from the target (text, bool or at most 20 "
                            "distinct whole numbers: classification; a warning when more "
                            "than two whole numbers could be either)")
    train.add_argument("--loss", choices=sorted(LOSS_NAMES), default=None, metavar="NAME",
                       help="cross_entropy, bce, mse, gaussian_nll or poisson (Keras and "
                            "PyTorch names with the same meaning are accepted); default: "
                            "cross_entropy for classification, mse for regression; "
                            "gaussian_nll learns a standard deviation per row (predict writes "
                            "it as a std column)")
    train.add_argument("--impute", choices=["mean", "median"], default=None,
                       help="fill missing inputs with the training column's mean or median "
                            "(default: a missing value is an error naming its line and column)")
    train.add_argument("--no-standardize", dest="standardize", action="store_false",
                       help="use inputs (and a regression target) as they are instead of "
                            "scaling them to mean 0 and standard deviation 1")
    train.add_argument("--validation-split", type=_fraction, default=0.2,
                       help="fraction held out to report a final metric (and for early "
                            "stopping); 0 trains on everything")
    train.add_argument("--early-stopping", type=_int_at_least(0), default=10, metavar="PATIENCE",
                       help="stop after this many epochs without a better validation loss and "
                            "keep the best weights; 0 turns it off")
    train.add_argument("--plot", type=output_path, default=None, metavar="FILE.png",
                       help="save the learning curve to exactly this image path, in the "
                            "format its suffix names (.png, .pdf, .svg, ...; PNG without "
                            "one; needs matplotlib); default: no plot")
    train.add_argument("--save", type=output_path, default=None,
                       help="write the trained model to exactly this path (a .npz archive, "
                            "saved before the plot); default: not saved")
    _add_table_flags(train)
    # tanh for tables: on small standardised tables (breast cancer, wine, diabetes) it matched
    # or beat relu and varied less over seeds (tests/test_cli_reference.py)
    _add_training_flags(train, epochs=200, lr=1e-3, batch_size=32, layers=[64],
                        activation=None)

    predict = sub.add_parser(
        "predict", formatter_class=_Formatter, help="predict with a saved model",
        description="Predict with a saved model.  A table's columns are selected by the "
                    "names the model was\ntrained on (the target column, if present, is "
                    "ignored).")
    predict.add_argument("model", type=input_path,
                         help="a model saved by `fastnn train --save` or MLP.save")
    predict.add_argument("data", type=input_path,
                         help="a table with a header row, or a .npz with an array X")
    predict.add_argument("--output", type=output_path, default=None,
                         help="write predictions to exactly this path: CSV with a header, or "
                              "a NumPy array if it ends in .npy (default: CSV on stdout)")
    _add_table_flags(predict)
    _add_quiet_flag(predict)   # (the predictions themselves still go to stdout)
    return parser


# ---------------------------------------------------------------------- shared

def _optimizer(args):
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


def _fit_and_report(model, X, y, loss, args, **kwargs):
    """Train `model` as the flags say; the one place every `fastnn train` run passes through.

    A run that stops before its end (divergence, Ctrl-C) keeps what it reached: with --save,
    the model's parameters (the last good ones after a divergence, the last completed
    epoch's after Ctrl-C) are saved, and the error says where.
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
        what = "interrupted (Ctrl-C)" if interrupted else f"training diverged: {exc}"
        # kept beside, never over --save: a file there may be an earlier, good model
        kept = _rescue(model)
        left = (f"; --save {args.targets['--save'].path} was left as it was"
                if getattr(args, "save", None) else "")
        raise RunFailed(f"{what}; the model's parameters at the stop were saved to "
                        f"{kept}{left}", 130 if interrupted else 1) from exc
    print(f"trained {model.n_params:,} parameters for {len(history)} epochs in "
          f"{time.perf_counter() - start:.2f} s")
    return history


def run_demo(args):
    if args.dataset == "spirals":
        X, y = make_spirals(3000, n_classes=3, seed=args.seed)
        name = "3 interleaved spirals (3000 points, 2 features)"
    else:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise UsageError("--dataset digits needs scikit-learn: pip install scikit-learn "
                             "(or fastnn[test])") from None
        digits = load_digits()
        X, y = digits.data / 16.0, digits.target
        name = "scikit-learn digits (1797 images, 64 pixels)"
    X_train, X_test, y_train, y_test = train_test_split(X, y, 0.25, seed=args.seed)
    n_classes = int(y.max()) + 1
    model = fastnn.MLP([X.shape[1], *args.layers, n_classes], activation=args.activation,
                       init=args.init, dtype=args.dtype, seed=args.seed)
    print(f"fastnn {fastnn.__version__} demo: {name}")
    print(model.summary())
    _fit_and_report(model, X_train, y_train, "cross_entropy", args)
    train_acc = np.mean(model.predict(X_train).argmax(axis=1) == y_train)
    test_acc = np.mean(model.predict(X_test).argmax(axis=1) == y_test)
    print(f"train accuracy {train_acc:.4f}   test accuracy {test_acc:.4f}")
    return 0


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


# ---------------------------------------------------------------------- train

def run_train(args):
    # the output paths were checked by _run; what else can fail after training is checked
    # here, before it
    if args.plot:
        _plot_format(args.plot)
    if not _is_table(args.data):
        args.activation = args.activation or "relu"
        return _train_npz(args)
    args.activation = args.activation or "tanh"
    if args.target is None:
        table = _read(args, args.data)
        raise UsageError(f"{args.data}: name the target column with --target (columns: "
                         f"{', '.join(table.columns)})")
    task, loss_name = _task_and_loss(args)
    table = _read(args, args.data)
    if table.n_rows < 2:
        raise UsageError(f"{args.data}: {table.n_rows} data rows; expected at least 2")
    # report the first gap in the file, before the split puts it on either side
    check_complete(table, args.target, features=args.impute is None)
    # split before learning any statistic, so the held-out rows stay unseen
    rng = np.random.default_rng(args.seed)
    n_val = _n_held_out(args, table.n_rows)
    perm = rng.permutation(table.n_rows)
    train_rows, val_rows = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    train_table = table.take(train_rows)
    standardize_target = args.standardize and loss_name in (None, "mse", "gaussian_nll")
    pre, X, y = Preprocessor.fit(train_table, args.target, task=task,
                                 standardize=args.standardize,
                                 standardize_target=standardize_target, impute=args.impute)
    remedy = ("train with --dtype float64" if np.dtype(args.dtype) != np.float64 else
              "scale the column")
    check_representable(train_table, pre.feature_names, X, args.dtype, remedy)
    if pre.warning:
        print(f"fastnn train: warning: {pre.warning}", file=sys.stderr)
    if loss_name is None:
        loss_name = "cross_entropy" if pre.task == "classification" else "mse"
    loss = get_loss(loss_name)
    n_classes = len(pre.classes) if pre.classes else 0
    if loss.name == "bce":
        if n_classes != 2:
            raise UsageError(f"--loss bce needs two classes; the target has {n_classes} "
                             "(use cross_entropy)")
        n_out = 1
    elif loss.name == "gaussian_nll":
        # a fixed sigma would be MSE rescaled; on the command line the Gaussian model predicts
        # its own standard deviation per row (mean and log-variance outputs)
        loss = fastnn.GaussianNLL(sigma="learned")
        n_out = 2
    else:
        n_out = n_classes or 1
    origin = "--task" if args.task else "--loss" if args.loss else "inferred from the target"
    what = (f"classification into {n_classes} classes "
            f"({', '.join(map(repr, pre.classes[:10]))}{', ...' if n_classes > 10 else ''})"
            if pre.task == "classification" else "regression")
    print(f"task: {what} ({origin}); loss: {loss.name}")
    print(f"{table.n_rows} rows: {len(train_rows)} for training, {len(val_rows)} held out; "
          f"{len(pre.feature_names)} features"
          f"{', standardised' if args.standardize else ''}")
    validation = None
    if n_val:
        val_table = table.take(val_rows)
        X_val, _ = pre.transform_table(val_table, hint=None)
        check_representable(val_table, pre.feature_names, X_val, args.dtype, remedy)
        y_val = pre.encode_target(val_table)
        unseen = y_val < 0 if pre.task == "classification" else np.zeros(n_val, bool)
        if unseen.any():  # a class that only the held-out rows have: cannot be scored
            print(f"fastnn train: warning: {int(unseen.sum())} held-out rows have a class the "
                  "training rows lack; they are left out of the validation", file=sys.stderr)
            val_rows = val_rows[~unseen]
            X_val, y_val = X_val[~unseen], y_val[~unseen]
        validation = (X_val, y_val) if len(val_rows) else None
    model = fastnn.MLP([X.shape[1], *args.layers, n_out], activation=args.activation,
                       init=args.init, dtype=args.dtype, seed=args.seed)
    model.preprocessor_ = pre
    print(model.summary())
    early = None
    if args.early_stopping:
        early = fastnn.EarlyStopping(patience=args.early_stopping,
                                     monitor="val_loss" if validation else "loss")
    history = _fit_and_report(model, X, y, loss, args, validation_data=validation,
                              early_stopping=early)
    if history.stopped_early:
        # epochs are numbered from 1, as in the per-epoch lines
        print(f"stopped early after {len(history)} epochs: no better {early.monitor} for "
              f"{early.patience} epochs; kept the weights of epoch {history.best_epoch}, "
              f"the best {early.monitor}")
    print(f"final training loss {history.loss[-1]:.6g}")
    # the run is saved first: nothing optional after it (the metric, the plot) can lose it
    if args.save:
        saved = _save(model, args)
        print(f"saved the model to {saved} (predict with `fastnn predict {saved} "
              "FILE --output OUT.csv`)")
    if validation is not None:
        name, value = _held_out_metric(model, pre, table.take(val_rows))
        # R^2 of held-out targets that do not vary (one row, say) is undefined, not -inf
        shown = f"{value:.4f}" if np.isfinite(value) else "undefined (the held-out targets " \
            "do not vary)"
        print(f"held-out {name}: {shown} on {len(val_rows)} rows (--validation-split "
              f"{args.validation_split}{', also used for early stopping' if early else ''})")
    if args.plot:
        _plot(history, args, model)
    return 0


def _n_held_out(args, n_rows):
    """Rows --validation-split holds out of n_rows, checked here so the error names the flag."""
    n_val = int(round(args.validation_split * n_rows))
    if args.validation_split > 0 and not 1 <= n_val < n_rows:
        raise UsageError(f"--validation-split {args.validation_split} leaves {n_val} of "
                         f"{n_rows} rows for validation; expected at least 1 and fewer than "
                         "all (0 turns it off)")
    return n_val


def _held_out_metric(model, pre, table):
    """Accuracy or R^2 on held-out rows, in the target's own labels and units."""
    X, _ = pre.transform_table(table)
    raw = table.data[pre.target]
    if pre.task == "classification":
        labels = _labels_from_output(model, pre, model.predict(X))
        truth = table.labels(pre.target)
        return "accuracy", float(np.mean([a == b for a, b in zip(labels, truth)]))
    pred = pre.inverse_target(model.predict(X)[:, 0])
    return "R^2", _r_squared(raw.astype(np.float64), pred)


def _r_squared(y, pred):
    """1 - sum (y - pred)^2 / sum (y - mean y)^2; when a sum of squares overflows (targets
    near 1e200, whose R^2 is an ordinary number), the same ratio of y and pred scaled by the
    largest |y| (R^2 does not change when both are scaled)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
        scale = np.max(np.abs(y))
        if not np.isfinite(r2) and np.isfinite(scale) and scale > 0:
            y, pred = y / scale, pred / scale
            r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    return float(r2)


def _labels_from_output(model, pre, P):
    if P.shape[1] == 1:  # a sigmoid output: P(classes[1])
        return [pre.classes[int(p >= 0.5)] for p in P[:, 0]]
    return [pre.classes[i] for i in P.argmax(axis=1)]


def _train_npz(args):
    X, y = load_npz(args.data, args.target)
    loss = get_loss(args.loss or "cross_entropy")
    # target_width validates y (dtype, emptiness, labels) before anything is built from it
    n_out = loss.n_outputs(loss.target_width(y))
    if X.ndim != 2:
        raise UsageError(f"{args.data}: X has shape {X.shape}; expected (n_samples, "
                         "n_features)")
    _n_held_out(args, X.shape[0])
    model = fastnn.MLP([X.shape[1], *args.layers, n_out], activation=args.activation,
                       init=args.init, dtype=args.dtype, seed=args.seed)
    print(model.summary())
    early = None
    if args.early_stopping:  # on the held-out loss, or the training loss without a split
        early = fastnn.EarlyStopping(patience=args.early_stopping,
                                     monitor="val_loss" if args.validation_split else "loss")
    history = _fit_and_report(model, X, y, loss, args, validation_split=args.validation_split,
                              early_stopping=early)
    print(f"final training loss {history.loss[-1]:.6g}")
    if args.save:  # first, as for a table
        print(f"saved the model to {_save(model, args)} (load it with fastnn.load or "
              "`fastnn predict`)")
    if history.val_metric and history.val_metric[-1] is not None:
        print(f"held-out {history.metric_name}: {history.val_metric[-1]:.4f}")
    if args.plot:
        _plot(history, args, model)
    return 0


def _save(model, args):
    """Save the trained model to --save (checked by _run); the path written.

    A write that fails after training (a full disk, the folder removed meanwhile) does not
    lose the run: the model goes to a file in the temporary directory instead, and the error
    (RunFailed, status 1) names both.
    """
    try:
        model.save(args.targets["--save"])
        return args.targets["--save"].path
    except OSError as exc:
        failure = exc
    raise RunFailed(f"{failure}; the trained model was saved to {_rescue(model, failure)} "
                    "instead") from failure


def _rescue(model, failure=None):
    """Save `model` to a new file in the temporary directory, Ctrl-C ignored meanwhile (a
    second Ctrl-C lost the run); the path written, or RunFailed when even that fails."""
    fd, rescue = tempfile.mkstemp(prefix="fastnn-rescued-", suffix=".npz")
    os.close(fd)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        model.save(rescue)
        return rescue
    except OSError as exc:
        os.unlink(rescue)
        first = f"{failure}; " if failure is not None else ""
        raise RunFailed(f"{first}saving the trained model to {rescue} failed too ({exc}): "
                        "the run is lost") from exc
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)


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


# ---------------------------------------------------------------------- predict

def run_predict(args):
    try:
        model = fastnn.load(args.model)
    except fastnn.io.ModelFileError as exc:
        if "ensemble file" not in str(exc):
            raise
        raise UsageError(f"model {args.model!r} is an ensemble file (MLPEnsemble.save); "
                         "`fastnn predict` takes one model's file: predict an ensemble from "
                         "Python, fastnn.load_ensemble(path).predict(X)") from None
    pre = getattr(model, "preprocessor_", None)
    if _is_table(args.data):
        table = _read(args, args.data)
        if table.n_rows == 0:
            raise UsageError(f"{args.data}: no data rows (only a header); expected at least "
                             "one row to predict")
        if pre is not None:
            X, ignored = pre.transform_table(table, hint="fill them in (the model was trained "
                                                         "without --impute)")
            check_representable(table, pre.feature_names, X, model.dtype,
                                "a model trained with --dtype float64 takes such values")
            if ignored:
                print(f"fastnn predict: note: ignoring columns the model was not trained on: "
                      f"{', '.join(map(repr, ignored))}", file=sys.stderr)
        else:
            X = feature_matrix(table, table.columns)
    else:
        X, _ = load_npz(args.data, need_target=False)
        if pre is not None:
            if X.ndim != 2 or X.shape[1] != len(pre.feature_names):
                raise UsageError(f"{args.data}: X has shape {X.shape}; the model expects "
                                 f"{len(pre.feature_names)} columns "
                                 f"({', '.join(pre.feature_names)})")
            X = pre.transform(X)
    predictions = model.predict(X)
    header, columns = _prediction_columns(model, pre, X, predictions)
    if args.output and args.output.lower().endswith(".npy"):
        array = (predictions if pre is None or pre.task == "classification"
                 else np.column_stack(columns))
        # through a handle: np.save given a name would append ".npy" to "P.NPY"
        written = write_output(args.targets["--output"], lambda fh: np.save(fh, array)).path
        print(f"wrote predictions of shape {predictions.shape} to {written}")
        return 0
    if args.output:
        written = write_output(args.targets["--output"],
                               lambda fh: _write_csv_bytes(fh, header, columns)).path
        print(f"wrote {len(columns[0])} predictions (columns {', '.join(map(repr, header))}) to "
              f"{written}")
    else:  # the command's product: on stdout also with --quiet (see _run)
        stream = getattr(args, "stdout", None) or sys.stdout
        _write_csv(stream, header, columns)
        stream.flush()
    return 0


def _prediction_columns(model, pre, X, P):
    """(header, list of columns) of the prediction table."""
    link = model._link_name()
    if link == "sigmoid" and P.shape[1] > 1:
        # independent Bernoulli outputs (multi-label): one probability per output, no argmax
        return [f"p{j}" for j in range(P.shape[1])], [P[:, j] for j in range(P.shape[1])]
    if link in ("softmax", "sigmoid"):
        if pre is not None and pre.classes is not None:
            classes = list(pre.classes)
        else:
            classes = list(range(P.shape[1] if link == "softmax" else 2))
        if P.shape[1] == 1 and len(classes) == 2:  # sigmoid: P(classes[1])
            P = np.column_stack([1 - P[:, 0], P[:, 0]])
        label_name = pre.target if pre is not None and pre.target else "predicted"
        if P.shape[1] == len(classes):
            labels = [classes[i] for i in P.argmax(axis=1)]
            return ([label_name] + [str(c) for c in classes],
                    [labels] + [P[:, j] for j in range(P.shape[1])])
        return [f"p{j}" for j in range(P.shape[1])], [P[:, j] for j in range(P.shape[1])]
    names = ([pre.target or "prediction"] if pre is not None else ["prediction"]
             if P.shape[1] == 1 else [f"prediction_{j}" for j in range(P.shape[1])])
    cols = [P[:, j].astype(np.float64) for j in range(P.shape[1])]
    if pre is not None:
        cols = [pre.inverse_target(c) for c in cols]
    if link == "gaussian":
        std = model.predict_std(X).astype(np.float64)
        for j in range(std.shape[1]):
            names.append("std" if std.shape[1] == 1 else f"std_{j}")
            cols.append(std[:, j] if pre is None else pre.inverse_target(std[:, j], "std"))
    return names, cols


def _write_csv_bytes(fh, header, columns):
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    _write_csv(text, header, columns)
    text.flush()
    text.detach()  # the binary handle stays the writer's to close


def _write_csv(fh, header, columns):
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(header)
    for row in zip(*columns):
        writer.writerow([f"{v:.9g}" if isinstance(v, (float, np.floating)) else v for v in row])


# ---------------------------------------------------------------------- entry point

def main(argv=None):
    """Run the ``fastnn`` command with `argv` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success; 2 for an error in the user's input; 1 for a run that
        failed (diverged, out of memory), or for output that could not be written (a full
        disk: the rest of it is dropped, the command finishes its work and says so on
        stderr); 141 (128 + SIGPIPE, what a shell reports for a process whose reader left,
        as ``cat big | head`` gives) when stdout or stderr was closed early, the command
        having finished its work all the same.
    """
    with _closed_pipes_tolerated() as pipes:
        try:
            status = _run(argv)
        except BrokenPipeError:
            pipes.closed, status = True, 0
        except SystemExit as exc:  # argparse: --help, --version, a bad flag
            if pipes.failed is not None and exc.code in (0, None):
                raise SystemExit(1) from None
            if pipes.closed and exc.code in (0, None):
                raise SystemExit(_PIPE_CLOSED_STATUS) from None
            raise
    if pipes.failed is not None and status == 0:
        # output lost to a write error (a full disk), not to a reader that left: an error,
        # reported once the command's work (the saved model) is done
        stream, exc = pipes.failed
        if sys.stderr is not None:
            print(f"fastnn: error: could not write to {stream} ({exc}); its output from then "
                  "on was dropped and the command ran to the end", file=sys.stderr)
        return 1
    return _PIPE_CLOSED_STATUS if pipes.closed and status == 0 else status


def _run(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"demo": run_demo, "train": run_train, "predict": run_predict}
    try:
        # every output checked before any work: not an input, not another output, not a
        # directory, writable (fastnn.io.writer); the commands write through these targets
        inputs, outputs = _file_arguments(parser, args)
        for name, path in inputs:  # the argument named, not only the operating system's text
            if not os.path.exists(path):
                raise UsageError(f"{name} {path!r}: no such file")
            if os.path.isdir(path):
                raise UsageError(f"{name} {path!r} is a directory; expected a file")
        # predict without --output writes its product to stdout, and every command its
        # report unless --quiet: `>> input.csv` is refused
        to_stdout = (args.command == "predict" and args.output is None) or \
            not getattr(args, "quiet", False)
        args.targets = check_outputs(outputs, inputs, stdout=to_stdout, stderr=True)
        with _quiet(args):
            return commands[args.command](args)
    except BrokenPipeError:
        # a pipe fastnn opened itself (--output /dev/stdout, a FIFO) whose reader left: as a
        # closed stdout, not an input error (main makes it status 141)
        raise
    except (UsageError, ValueError, TypeError, OSError) as exc:  # OSError: unreadable paths
        print(f"fastnn {args.command}: error: {exc}", file=_error_stream(exc))
        return 2
    except (RunFailed, fastnn.TrainingDiverged, MemoryError) as exc:  # not the call's fault
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "status", 1)
    except KeyboardInterrupt:  # (a fit's Ctrl-C is RunFailed above, after saving)
        print(f"fastnn {args.command}: interrupted", file=sys.stderr)
        return 130


def _error_stream(exc):
    """stderr, unless the error is that stderr is one of the inputs (``2>> data.csv``): then
    stdout, or nowhere (devnull: the exit status says it) when stdout is one too."""
    streams = getattr(exc, "streams", ())
    if "stderr" not in streams:
        return sys.stderr
    return sys.stdout if "stdout" not in streams else io.StringIO()


def _file_arguments(parser, args):
    """([(name, path)] of inputs, [(flag, path)] of outputs) of the parsed command.

    Found by the arguments' types (input_path, output_path), so every file argument of every
    subcommand is covered without a list to keep up to date.
    """
    inputs, outputs = [], []
    for action in _subcommand(parser, args.command)._actions:
        value = getattr(args, action.dest, None)
        if value is None or action.type not in (input_path, output_path):
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        (inputs if action.type is input_path else outputs).append((name, value))
    return inputs, outputs


def _subcommand(parser, command):
    """The parser of one subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise KeyError(command)  # pragma: no cover - build_parser always adds them


@contextlib.contextmanager
def _quiet(args):
    """--quiet: whatever the command prints to stdout (summaries, notes, the epoch lines of
    fit) goes nowhere, in one place for every subcommand and every message added later;
    stderr (errors, warnings) is left alone.  ``args.stdout`` keeps the real stdout for a
    command's product (predict's CSV)."""
    args.stdout = sys.stdout
    if not getattr(args, "quiet", False):
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as devnull, \
            contextlib.redirect_stdout(devnull):
        yield


# ------------------------------------------------------------ a reader that leaves early
#
# `fastnn train data.csv | head -1` closes stdout after the first line.  The next write
# anywhere (an epoch line printed inside fit, the summary, tqdm's bar on stderr) would raise
# BrokenPipeError and abandon the run before the model is saved.  So for the whole command
# stdout and stderr are wrapped: the first BrokenPipeError points that descriptor at devnull
# (Python's recipe, so that no later flush, the interpreter's last one included, fails
# again), later writes are dropped, and the command carries on to the end, model saved.
# Any other write error (ENOSPC: stdout redirected to a full disk) is handled alike, so the
# run is not lost either, and makes the exit status 1 with a message at the end.

_PIPE_CLOSED_STATUS = 128 + getattr(signal, "SIGPIPE", 13)  # 13 where it is not defined


class _PipeGuard:
    """A text stream that turns a closed reader into silence instead of an exception."""

    def __init__(self, stream, state, label):
        self._stream = stream
        self._state = state
        self._label = label
        self._closed = False

    def _lost(self, exc):
        self._closed = True
        if isinstance(exc, BrokenPipeError):
            self._state.closed = True
        elif self._state.failed is None:
            self._state.failed = (self._label, exc)
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a real descriptor (a test's)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def write(self, text):
        if self._closed:
            return len(text)
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._lost(exc)
            return len(text)

    def flush(self):
        if self._closed:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self._lost(exc)

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


@contextlib.contextmanager
def _closed_pipes_tolerated():
    state = types.SimpleNamespace(closed=False, failed=None)
    saved = sys.stdout, sys.stderr
    # None: Python started with that descriptor closed, and print() already does nothing
    sys.stdout, sys.stderr = (None if s is None else _PipeGuard(s, state, label)
                              for s, label in zip(saved, ("stdout", "stderr")))
    try:
        yield state
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()  # what is still buffered, while a closed pipe is still caught
    finally:
        sys.stdout, sys.stderr = saved


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
