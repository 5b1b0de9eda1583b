"""The ``fastnn`` command: ``demo``, ``train`` and ``predict``.

    fastnn demo [--dataset spirals|digits] [--epochs N]
    fastnn train data.npz [--target y] --layers 64,64 --loss cross_entropy --save model.npz
    fastnn predict model.npz data.npz [--output predictions.npy]

Errors in the user's input are reported as one line on stderr with exit status 2 (no
traceback); a run that diverges or runs out of memory as one line with exit status 1;
anything else is a bug and keeps its traceback.
"""
import argparse
import os
import sys
import time

import numpy as np

import fastnn
from fastnn.datasets import make_spirals, train_test_split
from fastnn.layers import ACTIVATIONS
from fastnn.losses import LOSS_NAMES
from fastnn.optim import OPTIMIZERS


class UsageError(Exception):
    """A problem with the user's input: printed without a traceback."""


def _layer_list(text):
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64; "
                                          f"got {text!r}") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be >= 1; got {text!r}")
    return sizes


def _add_training_flags(p, *, epochs, lr, batch_size, layers):
    p.add_argument("--layers", type=_layer_list, default=layers,
                   help="hidden layer widths, comma-separated (default: %(default)s)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default="relu")
    p.add_argument("--init", default=None, help="weight initializer name (fastnn.init)")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adam")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads while training (default: %(default)s, usually fastest "
                        "for small networks; see fastnn.threads)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def build_parser():
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"fastnn {fastnn.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train a classifier on a built-in data set")
    demo.add_argument("--dataset", choices=["spirals", "digits"], default="spirals",
                      help="spirals: generated, needs only numpy; digits: scikit-learn's "
                           "bundled handwritten digits (needs scikit-learn)")
    _add_training_flags(demo, epochs=40, lr=0.01, batch_size=32, layers=[64, 64])

    train = sub.add_parser("train", help="train on a .npz (arrays X, y) or .csv file")
    train.add_argument("data", help="a .npz file with arrays X and y, or a .csv file")
    train.add_argument("--target", default=None,
                       help="CSV: name of the target column (header row required); NPZ: name "
                            "of the target array (default y)")
    train.add_argument("--loss", choices=LOSS_NAMES, default="cross_entropy")
    train.add_argument("--validation-split", type=float, default=0.0)
    train.add_argument("--save", default=None, help="write the trained model to this .npz")
    _add_training_flags(train, epochs=20, lr=1e-3, batch_size=32, layers=[64])

    predict = sub.add_parser("predict", help="predict with a saved model")
    predict.add_argument("model", help="a model saved by `fastnn train --save` or MLP.save")
    predict.add_argument("data", help="a .npz with an array X, or a .csv of features")
    predict.add_argument("--output", default=None,
                         help="write predictions to this .npy (default: print them)")
    return parser


def _optimizer(args):
    if args.optimizer == "sgd":
        return fastnn.SGD(lr=args.lr, momentum=args.momentum)
    return fastnn.Adam(lr=args.lr)


def _fit_and_report(model, X, y, loss, args, **kwargs):
    start = time.perf_counter()
    history = model.fit(X, y, loss, _optimizer(args), epochs=args.epochs,
                        batch_size=args.batch_size, seed=args.seed,
                        verbose=0 if args.quiet else 1, n_threads=args.threads, **kwargs)
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


def load_table(path, target=None, need_target=True):
    """(X, y) from a .npz (arrays X and y / --target) or a .csv with a header row."""
    if path.endswith(".npz"):
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
    if path.endswith(".csv"):
        try:
            with open(path, encoding="utf-8") as fh:
                header = fh.readline().strip().split(",")
            table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: cannot read it as a numeric CSV with a header row "
                             f"({exc})") from None
        if table.shape[1] != len(header):
            raise UsageError(f"{path}: header has {len(header)} columns but the rows have "
                             f"{table.shape[1]}")
        if not need_target:
            return table, None
        if target is None or target not in header:
            raise UsageError(f"{path}: name the target column with --target (columns: "
                             f"{', '.join(header)})")
        col = header.index(target)
        return np.delete(table, col, axis=1), table[:, col]
    raise UsageError(f"{path}: expected a .npz or .csv file")


def run_train(args):
    if args.save:  # fail before training, not after it
        directory = os.path.dirname(os.path.abspath(args.save))
        if not os.path.isdir(directory):
            raise UsageError(f"--save {args.save}: the directory {directory} does not exist")
    X, y = load_table(args.data, args.target)
    loss = fastnn.losses.get_loss(args.loss)
    # target_width validates y (dtype, emptiness, labels) before anything is built from it
    n_out = loss.n_outputs(loss.target_width(y))
    if X.ndim != 2:
        raise UsageError(f"{args.data}: X has shape {X.shape}; expected (n_samples, "
                         "n_features)")
    model = fastnn.MLP([X.shape[1], *args.layers, n_out], activation=args.activation,
                       init=args.init, dtype=args.dtype, seed=args.seed)
    print(model.summary())
    history = _fit_and_report(model, X, y, loss, args, validation_split=args.validation_split)
    print(f"final training loss {history.loss[-1]:.6g}")
    if args.save:
        model.save(args.save)
        print(f"saved the model to {args.save} (load it with fastnn.load or `fastnn predict`)")
    return 0


def run_predict(args):
    model = fastnn.load(args.model)
    X, _ = load_table(args.data, need_target=False)
    predictions = model.predict(X)
    if args.output:
        np.save(args.output, predictions)
        print(f"wrote predictions of shape {predictions.shape} to {args.output}")
    else:
        np.savetxt(sys.stdout, predictions, fmt="%.6g", delimiter=",")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    commands = {"demo": run_demo, "train": run_train, "predict": run_predict}
    try:
        return commands[args.command](args)
    except (UsageError, ValueError, TypeError, OSError) as exc:  # OSError: unreadable paths
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (fastnn.TrainingDiverged, MemoryError) as exc:  # the run failed, not the call
        print(f"fastnn {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
