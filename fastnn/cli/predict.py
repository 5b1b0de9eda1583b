"""``fastnn predict``: a saved model on a table or a .npz, predictions as CSV or .npy."""
import csv
import io
import sys

import numpy as np

import fastnn
from fastnn.io.tabular import check_representable, feature_matrix
from fastnn.io.writer import write_output
from fastnn.cli.common import UsageError, _is_table, _read, load_npz, unseen_notes

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
            X, ignored, unseen = pre.transform_table(
                table, hint="fill them in (the model was trained without --impute)")
            check_representable(table, pre.input_columns(), X, model.dtype,
                                "a model trained with --dtype float64 takes such values")
            # notes on stderr: stdout may carry the predictions
            if ignored:
                print(f"fastnn predict: note: ignoring columns the model was not trained on: "
                      f"{', '.join(map(repr, ignored))}", file=sys.stderr)
            for note in unseen_notes(unseen, args.data):
                print(f"fastnn predict: note: {note}", file=sys.stderr)
        else:
            X = feature_matrix(table, table.columns)
    else:
        X, _ = load_npz(args.data, need_target=False)
        if pre is not None:
            encoded = [c.name for c in pre.columns if c.kind != "number"]
            if encoded:
                raise UsageError(f"{args.data}: the model encodes the columns "
                                 f"{', '.join(map(repr, encoded))} (categories or dates), "
                                 "which an array cannot hold; predict from a table with its "
                                 f"columns named ({', '.join(pre.feature_names)})")
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
