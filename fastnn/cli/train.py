"""``fastnn demo`` and ``fastnn train`` (a table, or a .npz of arrays)."""
import shlex
import sys

import numpy as np

import fastnn
from fastnn.datasets import make_spirals, train_test_split
from fastnn.nn.losses import get_loss
from fastnn.io.tabular import Preprocessor, check_complete, check_representable
from fastnn.cli.common import (UsageError, _fit_and_report, _is_table, _plot, _plot_format,
                               _read, _save, _task_and_loss, keeping_the_run, load_npz,
                               unseen_notes)

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


# ---------------------------------------------------------------------- train

def run_train(args):
    # the output paths were checked by _run; what else can fail after training is checked
    # here, before it
    if args.plot:
        _plot_format(args.plot)
    with keeping_the_run(args):
        return _train(args)


def _train(args):
    if not _is_table(args.data):
        args.activation = args.activation or "relu"
        return _train_npz(args)
    args.activation = args.activation or "tanh"
    if args.target is None:
        table = _read(args, args.data)
        raise UsageError(f"{args.data}: name the target column with --target (columns: "
                         f"{', '.join(table.columns)})")
    task, loss_name = _task_and_loss(args)
    table, dropped = _drop_columns(_read(args, args.data), args)
    if table.n_rows < 2:
        raise UsageError(f"{args.data}: {table.n_rows} data rows; expected at least 2")
    # each column's kind from the whole file (the levels come from the training rows alone),
    # and the first gap in the file, before the split puts it on either side
    kinds, identifiers = check_complete(table, args.target, features=args.impute is None)
    # split before learning any statistic, so the held-out rows stay unseen
    rng = np.random.default_rng(args.seed)
    n_val = _n_held_out(args, table.n_rows)
    perm = rng.permutation(table.n_rows)
    train_rows, val_rows = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    train_table = table.take(train_rows)
    standardize_target = args.standardize and loss_name in (None, "mse", "gaussian_nll")
    pre, X, y = Preprocessor.fit(train_table, args.target, task=task,
                                 standardize=args.standardize,
                                 standardize_target=standardize_target, impute=args.impute,
                                 kinds=kinds)
    remedy = ("train with --dtype float64" if np.dtype(args.dtype) != np.float64 else
              "scale the column")
    check_representable(train_table, pre.input_columns(), X, args.dtype, remedy)
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
          f"{len(pre.feature_names)} feature columns, {pre.n_inputs} inputs")
    # one line per column of the file (but the target), in the file's order
    lines = dict(line.split(": ", 1) for line in pre.report)
    lines.update({name: f"left out: {why}" for name, why in identifiers.items()})
    lines.update({name: "left out (--drop)" for name in dropped})
    print("columns:")
    for name in dropped + table.columns:
        if name in lines:
            print(f"  {name}: {lines[name]}")
    validation = None
    if n_val:
        val_table = table.take(val_rows)
        X_val, _, unseen_levels = pre.transform_table(val_table, hint=None)
        for note in unseen_notes(unseen_levels, "held-out rows"):
            print(f"note: {note}")
        check_representable(val_table, pre.input_columns(), X_val, args.dtype, remedy)
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
        print(f"saved the model to {saved} (predict with `fastnn predict {shlex.quote(saved)} "
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


def _drop_columns(table, args):
    """(the table without the --drop columns, their names): unknown names and the target
    are refused, naming them and the table's columns."""
    names = [n.strip() for n in (args.drop or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in table.data]
    if unknown:
        raise UsageError(f"--drop {args.drop!r}: no column{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))} in {table.path} (columns: "
                         f"{', '.join(table.columns)})")
    if args.target in names:
        raise UsageError(f"--drop {args.drop!r} names the target column {args.target!r}")
    names = list(dict.fromkeys(names))
    kept = [c for c in table.columns if c not in names]
    return table.keep(kept), names


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
    X = pre.transform_table(table)[0]
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
