"""The ``fastnn`` command: ``demo``, ``train``, ``predict`` and ``export``.

    fastnn demo [--dataset spirals|digits] [--epochs N]
    fastnn train data.csv --target y [--drop id] [--layers 64] [--save model.npz]
    fastnn predict model.npz data.csv --output predictions.csv
    fastnn export model.npz --output model.onnx

``train`` reads a table (.csv, .tsv, .txt; see fastnn.io.tabular) or a .npz with arrays X and y.
From a table it infers the task from the target column (text, bool or few whole numbers:
classification with cross-entropy; other numbers: regression with MSE) and prints it,
encodes text and boolean columns one-hot and ISO dates as days (fastnn.io.columns; a line per
column says what was done), standardises the numbers and a regression target, holds out a
validation part, reports the
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
import io
import os
import sys

import fastnn
from fastnn.nn.layers import ACTIVATIONS
from fastnn.nn.losses import LOSS_NAMES
from fastnn.optim.optimizers import OPTIMIZERS
from fastnn.io.writer import check_outputs
from fastnn.interop.onnx_export import DEFAULT_OPSET
# the subcommands live in their modules (train, predict); _optimizer, load_npz and
# _prediction_columns are named here too, where callers found them before the split
from fastnn.cli.common import (RunFailed, UsageError, _optimizer, load_npz,  # noqa: F401
                               stop_status, stop_text)
from fastnn.cli.pipes import _PIPE_CLOSED_STATUS, _closed_pipes_tolerated
from fastnn.cli.predict import _prediction_columns, run_predict  # noqa: F401
from fastnn.cli.export import run_export
from fastnn.cli.train import run_demo, run_train

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
    train.add_argument("--drop", default=None, metavar="COL,COL",
                       help="comma-separated columns to leave out (identifiers, free text, "
                            "leaks of the target); `fastnn predict` ignores them")
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

    export = sub.add_parser(
        "export", formatter_class=_Formatter, help="write a saved model as an ONNX graph",
        description="Write a saved model as an ONNX graph (needs the onnx package).  A model "
                    "trained on a table\napplies its preprocessing in the graph; one trained "
                    "on categories or dates takes one\ninput per column (listed when "
                    "written).")
    export.add_argument("model", type=input_path,
                        help="a model saved by `fastnn train --save` or MLP.save")
    export.add_argument("--output", type=output_path, default=None, metavar="MODEL.onnx",
                        help="write the graph to exactly this path (required)")
    export.add_argument("--opset", type=_int_at_least(1), default=DEFAULT_OPSET,
                        help="the ONNX opset of the graph")
    _add_quiet_flag(export)
    return parser


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
    commands = {"demo": run_demo, "train": run_train, "predict": run_predict,
                "export": run_export}
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
        # a write that failed (a full disk) is not the input's fault: status 1, as for stdout
        return 1 if getattr(exc, "_fastnn_named", False) else 2
    except (RunFailed, fastnn.TrainingDiverged, MemoryError) as exc:  # not the call's fault
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "status", 1)
    except KeyboardInterrupt as exc:  # (a fit's Ctrl-C is RunFailed above, after saving)
        print(f"fastnn {args.command}: {stop_text(exc)}", file=sys.stderr)
        return stop_status(exc)


def _error_stream(exc):
    """stderr, unless the error is that stderr is one of the inputs (``2>> data.csv``): then
    stdout, or nowhere (the exit status says it) when stdout is one too."""
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
    command's product (predict's CSV).  When an output is stdout itself (``--save
    /dev/stdout``), the report goes to stderr instead, so that it does not corrupt it."""
    args.stdout = sys.stdout
    if not getattr(args, "quiet", False):
        if any(t.is_stdout() for t in args.targets.values()):
            with contextlib.redirect_stdout(sys.stderr):
                yield
            return
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as devnull, \
            contextlib.redirect_stdout(devnull):
        yield


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
